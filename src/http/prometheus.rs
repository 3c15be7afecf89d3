//! `GET /metrics`: the latest values in the Prometheus text format, named
//! and labelled exactly as collectd's write_prometheus plugin does, so that
//! dashboards built on write_prometheus (or collectd_exporter) work unchanged:
//!
//! - family: `collectd_<plugin>_<type>[_<dsname>][_total]`, the plugin part
//!   left out when it equals the type, the dsname part when it is `value`,
//!   `_total` for counter and derive data sources;
//! - labels: `<plugin>="<plugin_instance>"` (if any), `type="<type_instance>"`
//!   (named `<plugin>` when there is no plugin instance), `instance="<host>"`;
//! - gauges as is, counters and derives as their raw count, with the value's
//!   time in milliseconds when its interval is at most 5 minutes (as
//!   write_prometheus's default StalenessDelta).
//!
//! Families are sorted by name and series by label values, as
//! write_prometheus sorts them. Characters Prometheus does not allow in names
//! become `_`.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::model::{cdtime_to_secs, DsType, MetricName, RawValue};
use crate::store::Snapshot;

/// write_prometheus's default StalenessDelta: values with a longer interval
/// are sent without a timestamp.
const STALENESS_DELTA_S: f64 = 300.0;

fn push_name_part(out: &mut String, s: &str) {
    for (i, c) in s.chars().enumerate() {
        let ok = c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit());
        out.push(if ok || c.is_ascii_digit() { c } else { '_' });
    }
}

/// A label name: [a-zA-Z_][a-zA-Z0-9_]*.
fn push_label_name(out: &mut String, s: &str) {
    if s.chars().next().is_none_or(|c| c.is_ascii_digit()) {
        out.push('_');
    }
    out.extend(s.chars().map(|c| {
        if c.is_ascii_alphanumeric() || c == '_' {
            c
        } else {
            '_'
        }
    }));
}

fn push_label_value(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// One sample line: data source `ds` of snapshot entry `entry`, in family
/// `family` (an index into the interned family names).
struct Series {
    family: u32,
    entry: u32,
    ds: u8,
}

/// The family name of a data source.
fn family_name(plugin: &str, type_: &str, ds_name: &str, total: bool) -> String {
    let mut family = String::from("collectd_");
    if plugin != type_ {
        push_name_part(&mut family, plugin);
        family.push('_');
    }
    push_name_part(&mut family, type_);
    if ds_name != "value" {
        family.push('_');
        push_name_part(&mut family, ds_name);
    }
    if total {
        family.push_str("_total");
    }
    family
}

/// write_prometheus's order of series within a family: by label count, then
/// by the label values (plugin instance, type instance, host).
fn label_order(n: &MetricName) -> (u8, &str, &str, &str) {
    let (pi, ti) = (n.plugin_instance(), n.type_instance());
    let labels = 1 + u8::from(!pi.is_empty()) + u8::from(!ti.is_empty());
    let (first, second) = if pi.is_empty() { (ti, "") } else { (pi, ti) };
    (labels, first, second, n.host())
}

/// The families and the order of the series of a snapshot.
struct Layout {
    families: Vec<String>,
    series: Vec<Series>,
}

/// The layout of the last full scrape and the snapshot order it was
/// computed for (`Snapshot::order`): while no metric comes or goes, full
/// reads keep that order, and so the layout; a data set cannot change
/// without its metric being replaced.
static LAST_LAYOUT: Mutex<Option<(u64, Arc<Layout>)>> = Mutex::new(None);

fn cached_layout(snap: &Snapshot, order: u64) -> Arc<Layout> {
    if let Some((o, layout)) = LAST_LAYOUT.lock().as_ref() {
        if *o == order {
            return layout.clone();
        }
    }
    let layout = Arc::new(layout(snap));
    *LAST_LAYOUT.lock() = Some((order, layout.clone()));
    layout
}

fn layout(snap: &Snapshot) -> Layout {
    // Family names are interned: a few per plugin and type, not one string
    // per series. Consecutive entries (sorted by identifier) mostly share
    // plugin and type, so the last lookup is remembered.
    type FamilyKey<'a> = (&'a str, &'a str, &'a str, bool);
    let mut ids: HashMap<FamilyKey<'_>, u32> = HashMap::new();
    let mut families: Vec<String> = Vec::new();
    let mut last: Option<(FamilyKey<'_>, u32)> = None;
    let mut series: Vec<Series> = Vec::with_capacity(snap.entries.len());
    for (i, e) in snap.entries.iter().enumerate() {
        let n = &e.name;
        for (d, src) in e.ds.sources.iter().enumerate() {
            let total = matches!(src.ds_type, DsType::Counter | DsType::Derive);
            let key = (n.plugin(), n.type_(), &*src.name, total);
            let family = match last {
                Some((k, id)) if k == key => id,
                _ => {
                    let id = *ids.entry(key).or_insert_with(|| {
                        families.push(family_name(key.0, key.1, key.2, total));
                        (families.len() - 1) as u32
                    });
                    last = Some((key, id));
                    id
                }
            };
            series.push(Series {
                family,
                entry: i as u32,
                ds: d as u8,
            });
        }
    }
    // Different plugins can give the same family name (characters
    // Prometheus does not allow become `_`): such families share a rank,
    // so their series are sorted together under one HELP and TYPE.
    let mut by_name: Vec<u32> = (0..families.len() as u32).collect();
    by_name.sort_unstable_by(|&a, &b| families[a as usize].cmp(&families[b as usize]));
    let mut rank = vec![0u32; families.len()];
    for (r, w) in by_name.iter().enumerate() {
        rank[*w as usize] = match r {
            0 => 0,
            _ if families[*w as usize] == families[by_name[r - 1] as usize] => {
                rank[by_name[r - 1] as usize]
            }
            _ => r as u32,
        };
    }
    series.sort_unstable_by(|a, b| {
        rank[a.family as usize]
            .cmp(&rank[b.family as usize])
            .then_with(|| {
                let (ea, eb) = (
                    &snap.entries[a.entry as usize],
                    &snap.entries[b.entry as usize],
                );
                label_order(&ea.name).cmp(&label_order(&eb.name))
            })
    });
    Layout { families, series }
}

/// Renders the snapshot in the Prometheus text format (version 0.0.4). The
/// layout of a full read is remembered for the next scrape.
pub fn render(snap: &Snapshot, hostname: &str) -> String {
    let layout = match snap.order {
        Some(order) => cached_layout(snap, order),
        None => Arc::new(layout(snap)),
    };
    let (families, series) = (&layout.families, &layout.series);
    let mut out = String::with_capacity(series.len() * 96 + families.len() * 160);
    let mut last_family: Option<&str> = None;
    // The label name made of the plugin, for the last plugin seen.
    let mut last_plugin: Option<&str> = None;
    let mut plugin_label = String::new();
    for (i, s) in series.iter().enumerate() {
        // Series are in family order, their entries and names anywhere in
        // memory: load them ahead.
        if let Some(ahead) = series.get(i + 32) {
            crate::hint::prefetch(&snap.entries[ahead.entry as usize]);
        }
        if let Some(ahead) = series.get(i + 12) {
            crate::hint::prefetch(snap.entries[ahead.entry as usize].name.as_ptr());
        }
        let e = &snap.entries[s.entry as usize];
        let src = &e.ds.sources[s.ds as usize];
        let n = &e.name;
        let [host, plugin, plugin_instance, type_, type_instance] = n.fields();
        let family = families[s.family as usize].as_str();
        if last_family != Some(family) {
            let _ = writeln!(
                out,
                "# HELP {} collectd plugin '{}' type '{}', dstype '{}', dsname '{}'",
                family,
                plugin,
                type_,
                src.ds_type.as_str(),
                src.name
            );
            let kind = if src.ds_type == DsType::Gauge {
                "gauge"
            } else {
                "counter"
            };
            let _ = writeln!(out, "# TYPE {family} {kind}");
            last_family = Some(family);
        }
        // A name with nothing to escape in JSON has nothing to escape in a
        // label value either (quote, backslash, newline).
        let plain = n.is_json_plain();
        let label_value = |out: &mut String, v: &str| {
            if plain {
                out.push_str(v);
            } else {
                push_label_value(out, v);
            }
        };
        out.push_str(family);
        out.push('{');
        if (!plugin_instance.is_empty() || !type_instance.is_empty()) && last_plugin != Some(plugin)
        {
            plugin_label.clear();
            push_label_name(&mut plugin_label, plugin);
            last_plugin = Some(plugin);
        }
        if !plugin_instance.is_empty() {
            out.push_str(&plugin_label);
            out.push_str("=\"");
            label_value(&mut out, plugin_instance);
            out.push_str("\",");
        }
        if !type_instance.is_empty() {
            if plugin_instance.is_empty() {
                out.push_str(&plugin_label);
            } else {
                out.push_str("type");
            }
            out.push_str("=\"");
            label_value(&mut out, type_instance);
            out.push_str("\",");
        }
        out.push_str("instance=\"");
        label_value(&mut out, host);
        out.push_str("\"} ");
        let v: RawValue = snap.values(e)[s.ds as usize];
        match src.ds_type {
            DsType::Gauge => {
                let g = v.as_gauge();
                if g.is_nan() {
                    out.push_str("NaN");
                } else if g.is_infinite() {
                    out.push_str(if g > 0.0 { "+Inf" } else { "-Inf" });
                } else {
                    let _ = write!(out, "{g}");
                }
            }
            DsType::Derive => {
                let _ = write!(out, "{}", v.as_derive());
            }
            DsType::Counter | DsType::Absolute => {
                let _ = write!(out, "{}", v.0);
            }
        }
        if cdtime_to_secs(e.interval) <= STALENESS_DELTA_S {
            let _ = write!(out, " {}", (cdtime_to_secs(e.time) * 1000.0) as i64);
        }
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "\n# collectd-rest {} at {}",
        env!("CARGO_PKG_VERSION"),
        hostname
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{DataSet, DataSource, MetaRef, ValueListRef};
    use crate::store::{Filter, ValueStore};

    fn ds(type_name: &str, sources: &[(&str, DsType)]) -> DataSet {
        DataSet {
            type_name: type_name.into(),
            sources: sources
                .iter()
                .map(|(n, t)| DataSource {
                    name: (*n).into(),
                    ds_type: *t,
                    min: f64::NAN,
                    max: f64::NAN,
                })
                .collect(),
        }
    }

    fn put(s: &ValueStore, d: &DataSet, f: [&str; 5], values: &[RawValue]) {
        s.update(
            d,
            ValueListRef {
                host: f[0].as_bytes(),
                plugin: f[1].as_bytes(),
                plugin_instance: f[2].as_bytes(),
                type_: f[3].as_bytes(),
                type_instance: f[4].as_bytes(),
                values,
                time: 1000 << 30,
                interval: 10 << 30,
                meta: MetaRef::Absent,
            },
        );
    }

    #[test]
    fn names_and_labels_like_write_prometheus() {
        let s = ValueStore::new(1_000_000, 10);
        let cpu = ds("cpu", &[("value", DsType::Derive)]);
        let load = ds(
            "load",
            &[
                ("shortterm", DsType::Gauge),
                ("midterm", DsType::Gauge),
                ("longterm", DsType::Gauge),
            ],
        );
        let octets = ds(
            "if_octets",
            &[("rx", DsType::Derive), ("tx", DsType::Derive)],
        );
        let df = ds("df_complex", &[("value", DsType::Gauge)]);
        put(
            &s,
            &cpu,
            ["h", "cpu", "1", "cpu", "idle"],
            &[RawValue::derive(20)],
        );
        put(
            &s,
            &cpu,
            ["h", "cpu", "0", "cpu", "idle"],
            &[RawValue::derive(10)],
        );
        let l = [
            RawValue::gauge(0.5),
            RawValue::gauge(0.25),
            RawValue::gauge(f64::NAN),
        ];
        put(&s, &load, ["h", "load", "", "load", ""], &l);
        put(
            &s,
            &octets,
            ["h", "interface", "lo", "if_octets", ""],
            &[RawValue::derive(1), RawValue::derive(2)],
        );
        put(
            &s,
            &df,
            ["h", "df", "", "df_complex", "a\"b"],
            &[RawValue::gauge(3.0)],
        );
        let text = render(&s.snapshot(&Filter::default(), true), "h");
        for _ in 0..2 {
            let again = render(&s.snapshot(&Filter::default(), true), "h");
            assert_eq!(text, again, "the remembered layout");
        }
        let expected = "\
# HELP collectd_cpu_total collectd plugin 'cpu' type 'cpu', dstype 'derive', dsname 'value'
# TYPE collectd_cpu_total counter
collectd_cpu_total{cpu=\"0\",type=\"idle\",instance=\"h\"} 10 1000000
collectd_cpu_total{cpu=\"1\",type=\"idle\",instance=\"h\"} 20 1000000
# HELP collectd_df_df_complex collectd plugin 'df' type 'df_complex', dstype 'gauge', dsname 'value'
# TYPE collectd_df_df_complex gauge
collectd_df_df_complex{df=\"a\\\"b\",instance=\"h\"} 3 1000000
# HELP collectd_interface_if_octets_rx_total collectd plugin 'interface' type 'if_octets', dstype 'derive', dsname 'rx'
# TYPE collectd_interface_if_octets_rx_total counter
collectd_interface_if_octets_rx_total{interface=\"lo\",instance=\"h\"} 1 1000000
# HELP collectd_interface_if_octets_tx_total collectd plugin 'interface' type 'if_octets', dstype 'derive', dsname 'tx'
# TYPE collectd_interface_if_octets_tx_total counter
collectd_interface_if_octets_tx_total{interface=\"lo\",instance=\"h\"} 2 1000000
# HELP collectd_load_longterm collectd plugin 'load' type 'load', dstype 'gauge', dsname 'longterm'
# TYPE collectd_load_longterm gauge
collectd_load_longterm{instance=\"h\"} NaN 1000000
# HELP collectd_load_midterm collectd plugin 'load' type 'load', dstype 'gauge', dsname 'midterm'
# TYPE collectd_load_midterm gauge
collectd_load_midterm{instance=\"h\"} 0.25 1000000
# HELP collectd_load_shortterm collectd plugin 'load' type 'load', dstype 'gauge', dsname 'shortterm'
# TYPE collectd_load_shortterm gauge
collectd_load_shortterm{instance=\"h\"} 0.5 1000000
";
        assert!(text.starts_with(expected), "{text}");
        assert!(text.ends_with(&format!(
            "\n# collectd-rest {} at h\n",
            env!("CARGO_PKG_VERSION")
        )));
    }

    #[test]
    fn names_are_sanitized() {
        let label_name = |s: &str| {
            let mut out = String::new();
            push_label_name(&mut out, s);
            out
        };
        assert_eq!(label_name("python.foo"), "python_foo");
        assert_eq!(label_name("9x"), "_9x");
        let mut n = String::new();
        push_name_part(&mut n, "a-b.c");
        assert_eq!(n, "a_b_c");
    }
}
