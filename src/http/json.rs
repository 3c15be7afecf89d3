//! JSON views of store data, written straight from snapshots (no
//! intermediate `serde_json::Value`).

use std::collections::HashMap;
use std::sync::Arc;

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use serde_json::ser::{CompactFormatter, Formatter};

use crate::model::{
    cdtime_to_secs, DataSource, DsType, MetaValue, MetricName, Notification, RawValue,
};
use crate::store::values::{One, SnapEntry};
use crate::store::{Sequenced, Snapshot};

/// Non-negative whole numbers below this are written as an integer and
/// ".0": serde_json writes them so (from 1e16 on it writes "1e16").
const INTEGRAL_BELOW: f64 = 1e15;

/// A JSON document written straight into a byte buffer: the bulk routes
/// (every value, every metric, history pages) write hundreds of thousands
/// of objects, and this writes them at memory speed. Numbers and strings
/// come out byte for byte as serde_json writes them (its own formatter for
/// numbers; the same escapes for strings), so the two paths cannot differ.
pub struct JsonOut {
    pub buf: Vec<u8>,
    /// `"dstypes":[...],"dsnames":[...]` of each data set written so far,
    /// by the data set's address (the snapshot keeps every data set alive):
    /// a handful of data sets serve many thousands of metrics. None: not
    /// kept (`one`).
    data_sets: Option<HashMap<usize, Box<[u8]>>>,
}

impl JsonOut {
    pub fn with_capacity(n: usize) -> Self {
        JsonOut {
            buf: Vec::with_capacity(n),
            data_sets: Some(HashMap::new()),
        }
    }

    /// For a document of one value list: no data set is written twice, so
    /// none is kept for reuse.
    pub fn one(n: usize) -> Self {
        JsonOut {
            buf: Vec::with_capacity(n),
            data_sets: None,
        }
    }

    pub fn raw(&mut self, s: &str) {
        self.buf.extend_from_slice(s.as_bytes());
    }

    /// A JSON string: quote and backslash escaped, control characters as serde_json
    /// escapes them; everything else (UTF-8 included) as is.
    pub fn str(&mut self, s: &str) {
        let b = s.as_bytes();
        self.buf.reserve(b.len() + 2);
        self.buf.push(b'"');
        let mut start = 0;
        for (i, &c) in b.iter().enumerate() {
            if c >= 0x20 && c != b'"' && c != b'\\' {
                continue;
            }
            self.buf.extend_from_slice(&b[start..i]);
            start = i + 1;
            match c {
                b'"' => self.buf.extend_from_slice(b"\\\""),
                b'\\' => self.buf.extend_from_slice(b"\\\\"),
                b'\n' => self.buf.extend_from_slice(b"\\n"),
                b'\r' => self.buf.extend_from_slice(b"\\r"),
                b'\t' => self.buf.extend_from_slice(b"\\t"),
                0x08 => self.buf.extend_from_slice(b"\\b"),
                0x0c => self.buf.extend_from_slice(b"\\f"),
                _ => {
                    const HEX: &[u8; 16] = b"0123456789abcdef";
                    self.buf.extend_from_slice(b"\\u00");
                    self.buf.push(HEX[usize::from(c >> 4)]);
                    self.buf.push(HEX[usize::from(c & 0xf)]);
                }
            }
        }
        self.buf.extend_from_slice(&b[start..]);
        self.buf.push(b'"');
    }

    /// A number as serde_json writes it; NaN and infinities are `null`.
    pub fn f64(&mut self, v: f64) {
        if v.is_sign_positive() && v < INTEGRAL_BELOW && v.fract() == 0.0 {
            // A whole number (an interval, say), as serde_json writes it
            // ("10.0"), without the general float formatter.
            let _ = CompactFormatter.write_u64(&mut self.buf, v as u64);
            self.buf.extend_from_slice(b".0");
        } else if v.is_finite() {
            let _ = CompactFormatter.write_f64(&mut self.buf, v);
        } else {
            self.buf.extend_from_slice(b"null");
        }
    }

    pub fn i64(&mut self, v: i64) {
        let _ = CompactFormatter.write_i64(&mut self.buf, v);
    }

    pub fn u64(&mut self, v: u64) {
        let _ = CompactFormatter.write_u64(&mut self.buf, v);
    }

    /// A meta data object, as `MetaJson` serializes it (the network plugin
    /// puts `network:received` on every value it receives, so this is
    /// written for most values of a collectd that receives from others).
    fn meta(&mut self, meta: &[(String, MetaValue)]) {
        self.buf.push(b'{');
        for (i, (k, v)) in meta.iter().enumerate() {
            if i > 0 {
                self.buf.push(b',');
            }
            self.str(k);
            self.buf.push(b':');
            match v {
                MetaValue::String(v) => self.str(v),
                MetaValue::Signed(v) => self.i64(*v),
                MetaValue::Unsigned(v) => self.u64(*v),
                MetaValue::Double(v) => self.f64(*v),
                MetaValue::Boolean(v) => self.raw(if *v { "true" } else { "false" }),
            }
        }
        self.buf.push(b'}');
    }

    /// `[a,b,...]` of the items, each written by `f`.
    fn array<T>(&mut self, items: impl IntoIterator<Item = T>, mut f: impl FnMut(&mut Self, T)) {
        self.buf.push(b'[');
        for (i, item) in items.into_iter().enumerate() {
            if i > 0 {
                self.buf.push(b',');
            }
            f(self, item);
        }
        self.buf.push(b']');
    }

    /// A value list object: what write_http's JSON format writes, plus
    /// rates (`GET /v1/values`, `/v1/history`, `/v1/values/{id}`).
    pub fn value_list(&mut self, snap: &Snapshot, e: &SnapEntry) {
        self.value_list_of(e, snap.values(e).iter().copied(), snap.rates(e));
    }

    /// `value_list` of a single value (`ValueStore::get_one`).
    pub fn one_value_list(&mut self, one: &One) {
        self.value_list_of(&one.entry, one.values(), one.rates());
    }

    fn value_list_of(
        &mut self,
        e: &SnapEntry,
        values: impl Iterator<Item = RawValue>,
        rates: &[f64],
    ) {
        let sources = &e.ds.sources;
        self.raw("{\"values\":");
        self.array(values.zip(sources.iter()), |o, (v, src)| {
            match src.ds_type {
                DsType::Gauge => o.f64(v.as_gauge()),
                DsType::Derive => o.i64(v.as_derive()),
                DsType::Counter | DsType::Absolute => o.u64(v.0),
            }
        });
        self.buf.push(b',');
        match &mut self.data_sets {
            Some(kept) => {
                let key = Arc::as_ptr(&e.ds) as usize;
                let fragment = kept.entry(key).or_insert_with(|| {
                    let mut o = JsonOut::one(64);
                    o.data_set(sources);
                    o.buf.into_boxed_slice()
                });
                self.buf.extend_from_slice(fragment);
            }
            None => self.data_set(sources),
        }
        self.raw(",\"rates\":");
        self.array(rates.iter(), |o, r| o.f64(*r));
        self.raw(",\"time\":");
        self.f64(cdtime_to_secs(e.time));
        self.raw(",\"interval\":");
        self.f64(cdtime_to_secs(e.interval));
        self.name_fields(&e.name);
        self.raw(",\"meta\":");
        self.meta(e.meta.as_deref().map_or(&[][..], |m| m.as_slice()));
        self.buf.push(b'}');
    }

    /// `"dstypes":[...],"dsnames":[...]`.
    fn data_set(&mut self, sources: &[DataSource]) {
        self.raw("\"dstypes\":");
        self.array(sources.iter(), |o, src| o.plain_str(src.ds_type.as_str()));
        self.raw(",\"dsnames\":");
        self.array(sources.iter(), |o, src| o.str(&src.name));
    }

    /// `"s"` for a string known to need no escape.
    fn plain_str(&mut self, s: &str) {
        self.buf.push(b'"');
        self.buf.extend_from_slice(s.as_bytes());
        self.buf.push(b'"');
    }

    /// `,"host":...,"type_instance":...` of a metric name.
    fn name_fields(&mut self, n: &MetricName) {
        const KEYS: [&str; 5] = [
            ",\"host\":",
            ",\"plugin\":",
            ",\"plugin_instance\":",
            ",\"type\":",
            ",\"type_instance\":",
        ];
        let plain = n.is_json_plain();
        for (key, value) in KEYS.into_iter().zip(n.fields()) {
            self.raw(key);
            if plain {
                self.plain_str(value);
            } else {
                self.str(value);
            }
        }
    }

    /// A part of `n` (or all of it) as a JSON string: copied as is when
    /// the name needs no escape.
    fn name_str(&mut self, n: &MetricName, part: &str) {
        if n.is_json_plain() {
            self.plain_str(part);
        } else {
            self.str(part);
        }
    }

    /// A metric entry of `GET /v1/metrics`.
    pub fn metric(&mut self, e: &SnapEntry) {
        self.raw("{\"identifier\":");
        self.name_str(&e.name, e.name.identifier());
        self.name_fields(&e.name);
        self.raw(",\"time\":");
        self.f64(cdtime_to_secs(e.time));
        self.raw(",\"interval\":");
        self.f64(cdtime_to_secs(e.interval));
        self.buf.push(b'}');
    }

    /// `[` + each entry written by `f` + `]`.
    pub fn entries(&mut self, snap: &Snapshot, mut f: impl FnMut(&mut Self, &SnapEntry)) {
        let entries = &snap.entries;
        self.array(0..entries.len(), |o, i| {
            // Entries are in order, their names anywhere in memory: load
            // them ahead.
            if let Some(ahead) = entries.get(i + 12) {
                crate::hint::prefetch(ahead.name.as_ptr());
            }
            f(o, &entries[i])
        });
    }
}

/// A notification object; `seq` is omitted for one not yet in the ring.
pub struct NotificationJson<'a> {
    pub seq: Option<u64>,
    pub n: &'a Notification,
}

impl<'a> From<&'a Sequenced> for NotificationJson<'a> {
    fn from(s: &'a Sequenced) -> Self {
        NotificationJson {
            seq: Some(s.seq),
            n: &s.notification,
        }
    }
}

impl Serialize for NotificationJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let n = self.n;
        let mut m = s.serialize_map(None)?;
        if let Some(seq) = self.seq {
            m.serialize_entry("seq", &seq)?;
        }
        m.serialize_entry("time", &cdtime_to_secs(n.time))?;
        m.serialize_entry("severity", n.severity.as_str())?;
        m.serialize_entry("message", &n.message)?;
        m.serialize_entry("host", &n.host)?;
        m.serialize_entry("plugin", &n.plugin)?;
        m.serialize_entry("plugin_instance", &n.plugin_instance)?;
        m.serialize_entry("type", &n.type_)?;
        m.serialize_entry("type_instance", &n.type_instance)?;
        m.serialize_entry("meta", &MetaJson(&n.meta))?;
        m.end()
    }
}

struct MetaJson<'a>(&'a [(String, MetaValue)]);

impl Serialize for MetaJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (k, MetaValueJson(v))))
    }
}

struct MetaValueJson<'a>(&'a MetaValue);

impl Serialize for MetaValueJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            MetaValue::String(v) => s.serialize_str(v),
            MetaValue::Signed(v) => s.serialize_i64(*v),
            MetaValue::Unsigned(v) => s.serialize_u64(*v),
            MetaValue::Double(v) => s.serialize_f64(*v),
            MetaValue::Boolean(v) => s.serialize_bool(*v),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{DataSet, DataSource, MetaRef, RawValue, ValueListRef};
    use crate::store::{Filter, ValueStore};
    use serde_json::{json, Value};

    #[test]
    fn strings_and_numbers_as_serde_json_writes_them() {
        let mut all = String::new();
        for c in (0u8..0x80).map(char::from) {
            all.push(c);
        }
        for s in [
            "",
            "plain",
            "a\"b\\c/d",
            "\u{7f}\u{80}é€😀",
            "\u{1}\n\r\t\u{8}\u{c}",
            &all,
        ] {
            let mut o = JsonOut::with_capacity(0);
            o.str(s);
            assert_eq!(o.buf, serde_json::to_vec(s).unwrap(), "{s:?}");
        }
        for v in [
            0.0,
            -0.0,
            0.1,
            1.0,
            -2.5,
            1e300,
            1e-300,
            5e-324,
            f64::MAX,
            1_795_551_790.37,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ] {
            let mut o = JsonOut::with_capacity(0);
            o.f64(v);
            assert_eq!(o.buf, serde_json::to_vec(&v).unwrap(), "{v}");
        }
        let mut o = JsonOut::with_capacity(0);
        o.i64(i64::MIN);
        o.raw(" ");
        o.u64(u64::MAX);
        assert_eq!(o.buf, format!("{} {}", i64::MIN, u64::MAX).as_bytes());
    }

    #[test]
    fn meta_as_serde_writes_it() {
        let meta = [
            ("network:received".to_string(), MetaValue::Boolean(true)),
            ("s\"".to_string(), MetaValue::String("v\n".into())),
            ("i".to_string(), MetaValue::Signed(-3)),
            ("u".to_string(), MetaValue::Unsigned(u64::MAX)),
            ("d".to_string(), MetaValue::Double(0.25)),
            ("nan".to_string(), MetaValue::Double(f64::NAN)),
            ("f".to_string(), MetaValue::Boolean(false)),
        ];
        for m in [&meta[..], &[]] {
            let mut o = JsonOut::with_capacity(0);
            o.meta(m);
            assert_eq!(o.buf, serde_json::to_vec(&MetaJson(m)).unwrap());
        }
    }

    #[test]
    fn whole_numbers_as_serde_json_writes_them() {
        let mut xs = vec![0.0, -0.0, 1.0, 10.0, 3600.0, 1764867600.0, 0.5, -1.0, -10.0];
        let mut p = 1.0;
        while p < 1e17 {
            xs.extend([p, p - 1.0, p + 1.0, p * 3.0, p * 7.0 + 1.0]);
            p *= 10.0;
        }
        xs.extend([
            INTEGRAL_BELOW,
            INTEGRAL_BELOW - 1.0,
            2f64.powi(53),
            1e300,
            f64::MAX,
        ]);
        xs.extend([f64::MIN_POSITIVE, 4.9e-324, 1e15 - 0.5, 123456789.0]);
        for x in xs {
            let mut o = JsonOut::one(0);
            o.f64(x);
            assert_eq!(
                String::from_utf8(o.buf).unwrap(),
                serde_json::to_string(&x).unwrap(),
                "{x}"
            );
        }
    }

    #[test]
    fn value_list_and_metric_objects() {
        let s = ValueStore::new(2, 10);
        let src = |name: &str, ds_type| DataSource {
            name: name.into(),
            ds_type,
            min: 0.0,
            max: f64::NAN,
        };
        let ds = DataSet {
            type_name: "if_octets".into(),
            sources: vec![
                src("rx", DsType::Derive),
                src("tx", DsType::Counter),
                src("g\"", DsType::Gauge),
            ]
            .into(),
        };
        let values = [RawValue::derive(-5), RawValue(7), RawValue::gauge(f64::NAN)];
        s.update(
            &ds,
            ValueListRef {
                host: "h\"1".as_bytes(),
                plugin: "p".as_bytes(),
                plugin_instance: "i".as_bytes(),
                type_: "if_octets".as_bytes(),
                type_instance: "".as_bytes(),
                values: &values,
                time: 3 << 29,
                interval: 10 << 30,
                meta: MetaRef::Converted(Arc::new(vec![("k".into(), MetaValue::Signed(-1))])),
            },
        );
        let snap = s.snapshot(&Filter::default(), true);
        let mut o = JsonOut::with_capacity(0);
        o.entries(&snap, |o, e| o.value_list(&snap, e));
        let v: Value = serde_json::from_slice(&o.buf).unwrap();
        assert_eq!(
            v,
            json!([{
                "values": [-5, 7, null], "dstypes": ["derive", "counter", "gauge"],
                "dsnames": ["rx", "tx", "g\""], "rates": [null, null, null],
                "time": 1.5, "interval": 10.0, "host": "h\"1", "plugin": "p",
                "plugin_instance": "i", "type": "if_octets", "type_instance": "",
                "meta": {"k": -1}
            }])
        );
        let mut one = JsonOut::one(0);
        one.value_list(&snap, &snap.entries[0]);
        let mut got = JsonOut::one(0);
        got.one_value_list(&s.get_one("h\"1/p-i/if_octets").unwrap());
        assert_eq!(got.buf, one.buf);
        let mut kept = JsonOut::with_capacity(0);
        kept.value_list(&snap, &snap.entries[0]);
        kept.buf.push(b',');
        kept.value_list(&snap, &snap.entries[0]);
        assert_eq!(kept.buf, [&one.buf[..], b",", &one.buf[..]].concat());
        let mut o = JsonOut::with_capacity(0);
        o.entries(&snap, JsonOut::metric);
        let v: Value = serde_json::from_slice(&o.buf).unwrap();
        assert_eq!(
            v,
            json!([{
                "identifier": "h\"1/p-i/if_octets", "host": "h\"1", "plugin": "p",
                "plugin_instance": "i", "type": "if_octets", "type_instance": "",
                "time": 1.5, "interval": 10.0
            }])
        );
    }
}
