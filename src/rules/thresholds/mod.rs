//! Thresholds, evaluated on every value with the semantics of collectd's
//! threshold plugin (collectd.conf(5), "THRESHOLD CONFIGURATION"; checked
//! against collectd 5.12's behaviour):
//!
//! - a threshold names a type and optionally a host, plugin (and plugin
//!   instance), type instance and data source; for a value, the most
//!   specific thresholds apply, in collectd's order (host, then plugin, then
//!   plugin instance, then type instance); all thresholds with that same key
//!   are checked and the worst state is reported;
//! - the checked values are the rates collectd's cache computes (gauges as
//!   is), or with `percentage` each data source's share of their sum;
//! - `warning_min/max`, `failure_min/max` bound the normal range; `invert`
//!   makes the range itself the problem; `hysteresis` widens the range of a
//!   non-okay state so that a value oscillating around a bound does not flap;
//! - a state change dispatches a notification (okay, warning or failure)
//!   whose message names the data source, its value and the bound crossed,
//!   with meta data DataSource, CurrentValue, WarningMin/Max, FailureMin/Max;
//!   `persist` repeats a non-okay notification for every value, `persist_ok`
//!   an okay one too; as in collectd, a metric's first value reports okay;
//! - `hits` N: a non-okay state is reported once it has held for N
//!   consecutive values (1: at once). collectd's own plugin, given Hits N,
//!   reports at the N+2nd value; ours follows its documentation.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::set::{Compile, RuleSet};
use crate::model::{CdTime, DataSet, MetaValue, MetricName, Notification, Severity, MAX_NAME_LEN};

fn one() -> u32 {
    1
}

/// A threshold as the API reads and writes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Threshold {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin_instance: Option<String>,
    #[serde(rename = "type")]
    pub type_: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub type_instance: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning_min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning_max: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_max: Option<f64>,
    #[serde(default)]
    pub invert: bool,
    #[serde(default)]
    pub percentage: bool,
    #[serde(default)]
    pub persist: bool,
    #[serde(default)]
    pub persist_ok: bool,
    #[serde(default = "one")]
    pub hits: u32,
    #[serde(default)]
    pub hysteresis: f64,
}

/// The states, ordered as collectd orders them (worst last).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum State {
    #[default]
    Unknown,
    Okay,
    Warning,
    Failure,
}

fn bound(v: Option<f64>) -> f64 {
    v.unwrap_or(f64::NAN)
}

impl Compile for Threshold {
    type Compiled = Compiled;

    fn check(&self) -> Result<(), String> {
        if self.type_.is_empty() {
            return Err("type is required".into());
        }
        for (name, v) in [
            ("host", &self.host),
            ("plugin", &self.plugin),
            ("plugin_instance", &self.plugin_instance),
            ("type_instance", &self.type_instance),
            ("data_source", &self.data_source),
        ] {
            if let Some(v) = v {
                if v.is_empty() || v.len() > MAX_NAME_LEN {
                    return Err(format!("{name} must be 1 to {MAX_NAME_LEN} bytes"));
                }
            }
        }
        if self.type_.len() > MAX_NAME_LEN {
            return Err(format!("type must be at most {MAX_NAME_LEN} bytes"));
        }
        if self.plugin_instance.is_some() && self.plugin.is_none() {
            return Err("plugin_instance needs plugin".into());
        }
        let bounds = [
            ("warning_min", self.warning_min),
            ("warning_max", self.warning_max),
            ("failure_min", self.failure_min),
            ("failure_max", self.failure_max),
        ];
        if bounds.iter().all(|(_, b)| b.is_none()) {
            return Err(
                "set at least one of warning_min, warning_max, failure_min, failure_max".into(),
            );
        }
        if let Some((name, _)) = bounds
            .iter()
            .find(|(_, b)| b.is_some_and(|b| !b.is_finite()))
        {
            return Err(format!("{name} must be a finite number"));
        }
        for (lo, hi, what) in [
            (self.warning_min, self.warning_max, "warning"),
            (self.failure_min, self.failure_max, "failure"),
        ] {
            if let (Some(lo), Some(hi)) = (lo, hi) {
                if lo > hi {
                    return Err(format!("{what}_min ({lo}) is above {what}_max ({hi})"));
                }
            }
        }
        if !(self.hysteresis.is_finite() && self.hysteresis >= 0.0) {
            return Err("hysteresis must be a number >= 0".into());
        }
        if !(1..=1_000_000).contains(&self.hits) {
            return Err("hits must be from 1 to 1000000".into());
        }
        Ok(())
    }

    fn compile(rules: &BTreeMap<String, Threshold>) -> Result<Compiled, String> {
        let mut by_type: HashMap<String, Vec<Group>> = HashMap::new();
        for t in rules.values() {
            let groups = by_type.entry(t.type_.clone()).or_default();
            let key = Key::of(t);
            match groups.iter_mut().find(|g| g.key == key) {
                Some(g) => Arc::make_mut(&mut g.members).push(t.clone()),
                None => groups.push(Group {
                    key,
                    members: Arc::new(vec![t.clone()]),
                }),
            }
        }
        for groups in by_type.values_mut() {
            groups.sort_by_key(|g| g.key.rank());
        }
        Ok(Compiled { by_type })
    }
}

/// What a threshold is keyed by, besides its type.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Key {
    host: Option<String>,
    plugin: Option<String>,
    plugin_instance: Option<String>,
    type_instance: Option<String>,
}

impl Key {
    fn of(t: &Threshold) -> Key {
        Key {
            host: t.host.clone(),
            plugin: t.plugin.clone(),
            plugin_instance: t.plugin_instance.clone(),
            type_instance: t.type_instance.clone(),
        }
    }

    /// collectd's search order (utils_threshold.c): host before plugin
    /// before plugin instance before type instance; lower ranks first.
    fn rank(&self) -> u8 {
        let bit = |o: &Option<String>, b: u8| if o.is_some() { b } else { 0 };
        15 - (bit(&self.host, 8)
            | bit(&self.plugin, 4)
            | bit(&self.plugin_instance, 2)
            | bit(&self.type_instance, 1))
    }

    fn matches(&self, n: &MetricName) -> bool {
        let ok = |f: &Option<String>, v: &str| f.as_deref().is_none_or(|f| f == v);
        ok(&self.host, n.host())
            && ok(&self.plugin, n.plugin())
            && ok(&self.plugin_instance, n.plugin_instance())
            && ok(&self.type_instance, n.type_instance())
    }
}

#[derive(Clone, Debug)]
pub struct Group {
    key: Key,
    members: Arc<Vec<Threshold>>,
}

/// Thresholds by type, each type's groups most specific first.
#[derive(Default)]
pub struct Compiled {
    by_type: HashMap<String, Vec<Group>>,
}

impl Compiled {
    /// The thresholds that apply to metric `n`: those of the most specific
    /// matching key.
    fn resolve(&self, n: &MetricName) -> Option<Arc<Vec<Threshold>>> {
        self.by_type
            .get(n.type_())?
            .iter()
            .find(|g| g.key.matches(n))
            .map(|g| g.members.clone())
    }
}

pub type Thresholds = RuleSet<Threshold>;

/// A metric's threshold state, kept with its latest value.
#[derive(Clone, Debug, Default)]
pub struct MetricState {
    /// The rule set version `applies` was resolved for (0: never).
    version: u64,
    applies: Option<Arc<Vec<Threshold>>>,
    state: State,
    hits: u32,
}

/// One data source checked against one threshold (collectd's
/// ut_check_one_data_source).
fn check_one(t: &Threshold, value: f64, prev: State) -> State {
    let (mut failure, mut warning) = if t.invert { (-1, -1) } else { (0, 0) };
    let (hf, hw) = match prev {
        State::Failure => (t.hysteresis, 0.0),
        State::Warning => (0.0, t.hysteresis),
        _ => (0.0, 0.0),
    };
    let outside = |min: Option<f64>, max: Option<f64>, h: f64| {
        min.is_some_and(|m| m + h > value) || max.is_some_and(|m| m - h < value)
    };
    if outside(t.failure_min, t.failure_max, hf) {
        failure += 1;
    }
    if outside(t.warning_min, t.warning_max, hw) {
        warning += 1;
    }
    if failure != 0 {
        State::Failure
    } else if warning != 0 {
        State::Warning
    } else {
        State::Okay
    }
}

/// The value a threshold sees for data source `i`: its rate, or with
/// `percentage` its share of the sum of the rates (NaN when that is 0).
fn checked_value(t: &Threshold, rates: &[f64], i: usize) -> f64 {
    if !t.percentage {
        return rates[i];
    }
    let sum: f64 = rates.iter().filter(|v| !v.is_nan()).sum();
    if sum == 0.0 || rates.iter().all(|v| v.is_nan()) {
        f64::NAN
    } else {
        100.0 * rates[i] / sum
    }
}

fn fmt_bound(v: f64, pct: bool) -> String {
    if pct {
        format!("{v:.2}%")
    } else {
        format!("{v:.6}")
    }
}

/// Evaluates the thresholds that apply to a metric's new value; returns the
/// notification to dispatch, if any. Cheap when no threshold applies (the
/// resolution is cached per metric and rule set version).
#[inline]
pub fn evaluate(
    set: &Thresholds,
    st: &mut MetricState,
    name: &MetricName,
    ds: &DataSet,
    rates: &[f64],
    time: CdTime,
) -> Option<Box<Notification>> {
    // Inlined into the write path: no thresholds, nothing to forget.
    if set.is_empty() && st.version == 0 {
        return None;
    }
    evaluate_rules(set, st, name, ds, rates, time)
}

#[inline(never)]
fn evaluate_rules(
    set: &Thresholds,
    st: &mut MetricState,
    name: &MetricName,
    ds: &DataSet,
    rates: &[f64],
    time: CdTime,
) -> Option<Box<Notification>> {
    if set.is_empty() {
        if st.version != 0 {
            *st = MetricState::default();
        }
        return None;
    }
    let version = set.version();
    if st.version != version {
        st.applies = set.compiled().resolve(name);
        st.version = version;
    }
    // Borrowed out of the state (no reference count touched per value).
    let thresholds = st.applies.take()?;
    let result = check(&thresholds, st, name, ds, rates, time);
    st.applies = Some(thresholds);
    result
}

/// The check itself (no allocation unless a notification is due).
fn check(
    thresholds: &[Threshold],
    st: &mut MetricState,
    name: &MetricName,
    ds: &DataSet,
    rates: &[f64],
    time: CdTime,
) -> Option<Box<Notification>> {
    // The worst state over every threshold and data source.
    let mut worst: Option<(State, &Threshold, usize)> = None;
    for t in thresholds {
        for (i, src) in ds.sources.iter().enumerate() {
            if t.data_source.as_deref().is_some_and(|d| d != &*src.name) {
                continue;
            }
            let s = check_one(t, checked_value(t, rates, i), st.state);
            if worst.as_ref().is_none_or(|(w, ..)| s > *w) {
                worst = Some((s, t, i));
            }
        }
    }
    let (state, t, i) = worst?;

    // hits: a non-okay state must hold for `hits` values before it counts.
    if t.hits > 1 {
        if state == State::Okay && !t.persist_ok {
            st.hits = 0;
        } else {
            st.hits += 1;
            if st.hits < t.hits {
                return None;
            }
            st.hits = 0;
        }
    }
    let old = st.state;
    if state == old {
        let repeat = match state {
            State::Unknown => false,
            State::Okay => t.persist && t.persist_ok,
            _ => t.persist,
        };
        if !repeat {
            return None;
        }
    }
    st.state = state;
    Some(Box::new(notification(t, name, ds, i, rates, state, time)))
}

fn notification(
    t: &Threshold,
    n: &MetricName,
    ds: &DataSet,
    i: usize,
    rates: &[f64],
    state: State,
    time: CdTime,
) -> Notification {
    let src = &ds.sources[i].name;
    let mut message = format!("Host {}, plugin {}", n.host(), n.plugin());
    if !n.plugin_instance().is_empty() {
        message.push_str(&format!(" (instance {})", n.plugin_instance()));
    }
    message.push_str(&format!(" type {}", n.type_()));
    if !n.type_instance().is_empty() {
        message.push_str(&format!(" (instance {})", n.type_instance()));
    }
    let (min, max, region) = match state {
        State::Failure => (t.failure_min, t.failure_max, "failure"),
        _ => (t.warning_min, t.warning_max, "warning"),
    };
    let value = checked_value(t, rates, i);
    let rate = rates[i];
    let detail = match state {
        State::Okay | State::Unknown => format!(
            ": All data sources are within range again. Current value of \"{src}\" is {rate:.6}."
        ),
        _ if t.invert => match (min, max) {
            (Some(lo), Some(hi)) => format!(
                ": Data source \"{src}\" is currently {rate:.6}. That is within the {region} \
                 region of {} and {}.",
                fmt_bound(lo, t.percentage),
                fmt_bound(hi, t.percentage)
            ),
            _ => format!(
                ": Data source \"{src}\" is currently {rate:.6}. That is {} the {region} \
                 threshold of {}.",
                if min.is_none() { "below" } else { "above" },
                fmt_bound(min.or(max).unwrap_or(f64::NAN), t.percentage)
            ),
        },
        _ => {
            let below = min.is_some_and(|m| value < m);
            let b = if below { min } else { max }.unwrap_or(f64::NAN);
            let dir = if below { "below" } else { "above" };
            if t.percentage {
                format!(
                    ": Data source \"{src}\" is currently {rate} ({value:.2}%). That is {dir} \
                     the {region} threshold of {b:.2}%."
                )
            } else {
                format!(
                    ": Data source \"{src}\" is currently {value:.6}. That is {dir} the \
                     {region} threshold of {b:.6}."
                )
            }
        }
    };
    message.push_str(&detail);
    Notification {
        severity: match state {
            State::Failure => Severity::Failure,
            State::Warning => Severity::Warning,
            _ => Severity::Okay,
        },
        time,
        message: crate::model::truncate(&message, crate::model::MAX_MESSAGE_LEN).to_string(),
        host: n.host().to_string(),
        plugin: n.plugin().to_string(),
        plugin_instance: n.plugin_instance().to_string(),
        type_: n.type_().to_string(),
        type_instance: n.type_instance().to_string(),
        meta: vec![
            ("DataSource".into(), MetaValue::String(src.to_string())),
            ("CurrentValue".into(), MetaValue::Double(rate)),
            ("WarningMin".into(), MetaValue::Double(bound(t.warning_min))),
            ("WarningMax".into(), MetaValue::Double(bound(t.warning_max))),
            ("FailureMin".into(), MetaValue::Double(bound(t.failure_min))),
            ("FailureMax".into(), MetaValue::Double(bound(t.failure_max))),
        ],
    }
}

#[cfg(test)]
mod tests;
