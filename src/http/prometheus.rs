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

use std::fmt::Write;

use crate::model::{cdtime_to_secs, DsType, RawValue};
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
fn label_name(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 1);
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
    out
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

struct Series {
    family: String,
    /// Label values in label order, for sorting as write_prometheus does.
    sort_key: String,
    entry: u32,
    ds: u8,
}

/// Renders the snapshot in the Prometheus text format (version 0.0.4).
pub fn render(snap: &Snapshot, hostname: &str) -> String {
    let mut series: Vec<Series> = Vec::with_capacity(snap.entries.len());
    for (i, e) in snap.entries.iter().enumerate() {
        let n = &e.name;
        for (d, src) in e.ds.sources.iter().enumerate() {
            let mut family = String::from("collectd_");
            if n.plugin() != n.type_() {
                push_name_part(&mut family, n.plugin());
                family.push('_');
            }
            push_name_part(&mut family, n.type_());
            if &*src.name != "value" {
                family.push('_');
                push_name_part(&mut family, &src.name);
            }
            if matches!(src.ds_type, DsType::Counter | DsType::Derive) {
                family.push_str("_total");
            }
            // write_prometheus sorts by label count, then label values.
            let labels = 1
                + usize::from(!n.plugin_instance().is_empty())
                + usize::from(!n.type_instance().is_empty());
            let mut sort_key = String::from(char::from(b'0' + labels as u8));
            for part in [n.plugin_instance(), n.type_instance()] {
                if !part.is_empty() {
                    sort_key.push_str(part);
                    sort_key.push('\0');
                }
            }
            sort_key.push_str(n.host());
            series.push(Series {
                family,
                sort_key,
                entry: i as u32,
                ds: d as u8,
            });
        }
    }
    series.sort_unstable_by(|a, b| (&a.family, &a.sort_key).cmp(&(&b.family, &b.sort_key)));

    let mut out = String::with_capacity(series.len() * 96);
    let mut last_family: Option<&str> = None;
    for s in &series {
        let e = &snap.entries[s.entry as usize];
        let src = &e.ds.sources[s.ds as usize];
        let n = &e.name;
        if last_family != Some(s.family.as_str()) {
            let _ = writeln!(
                out,
                "# HELP {} collectd plugin '{}' type '{}', dstype '{}', dsname '{}'",
                s.family,
                n.plugin(),
                n.type_(),
                src.ds_type.as_str(),
                src.name
            );
            let kind = if src.ds_type == DsType::Gauge {
                "gauge"
            } else {
                "counter"
            };
            let _ = writeln!(out, "# TYPE {} {kind}", s.family);
            last_family = Some(&s.family);
        }
        out.push_str(&s.family);
        out.push('{');
        if !n.plugin_instance().is_empty() {
            out.push_str(&label_name(n.plugin()));
            out.push_str("=\"");
            push_label_value(&mut out, n.plugin_instance());
            out.push_str("\",");
        }
        if !n.type_instance().is_empty() {
            if n.plugin_instance().is_empty() {
                out.push_str(&label_name(n.plugin()));
            } else {
                out.push_str("type");
            }
            out.push_str("=\"");
            push_label_value(&mut out, n.type_instance());
            out.push_str("\",");
        }
        out.push_str("instance=\"");
        push_label_value(&mut out, n.host());
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
    use crate::model::{DataSet, DataSource, ValueListRef};
    use crate::store::{Filter, ValueStore};
    use std::borrow::Cow;

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
                host: Cow::Borrowed(f[0]),
                plugin: Cow::Borrowed(f[1]),
                plugin_instance: Cow::Borrowed(f[2]),
                type_: Cow::Borrowed(f[3]),
                type_instance: Cow::Borrowed(f[4]),
                values,
                time: 1000 << 30,
                interval: 10 << 30,
                meta: None,
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
        assert_eq!(label_name("python.foo"), "python_foo");
        assert_eq!(label_name("9x"), "_9x");
        let mut n = String::new();
        push_name_part(&mut n, "a-b.c");
        assert_eq!(n, "a_b_c");
    }
}
