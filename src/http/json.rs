//! JSON views of store data, serialized straight from snapshots (no
//! intermediate `serde_json::Value`).

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

use crate::model::{cdtime_to_secs, DataSource, DsType, MetaValue, Notification, RawValue};
use crate::store::values::SnapEntry;
use crate::store::{Sequenced, Snapshot};

/// A value list object: what write_http's JSON format writes, plus rates.
pub struct ValueListJson<'a> {
    pub snap: &'a Snapshot,
    pub entry: &'a SnapEntry,
}

impl Serialize for ValueListJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let e = self.entry;
        let sources = &e.ds.sources;
        let values = self.snap.values(e);
        let mut m = s.serialize_map(Some(12))?;
        m.serialize_entry("values", &Values(values, sources))?;
        m.serialize_entry("dstypes", &DsTypes(sources))?;
        m.serialize_entry("dsnames", &DsNames(sources))?;
        m.serialize_entry("rates", self.snap.rates(e))?;
        m.serialize_entry("time", &cdtime_to_secs(e.time))?;
        m.serialize_entry("interval", &cdtime_to_secs(e.interval))?;
        m.serialize_entry("host", e.name.host())?;
        m.serialize_entry("plugin", e.name.plugin())?;
        m.serialize_entry("plugin_instance", e.name.plugin_instance())?;
        m.serialize_entry("type", e.name.type_())?;
        m.serialize_entry("type_instance", e.name.type_instance())?;
        m.serialize_entry(
            "meta",
            &MetaJson(e.meta.as_deref().map_or(&[][..], |m| m.as_slice())),
        )?;
        m.end()
    }
}

/// A metric entry of `GET /v1/metrics`.
pub struct MetricJson<'a>(pub &'a SnapEntry);

impl Serialize for MetricJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let e = self.0;
        let mut m = s.serialize_map(Some(8))?;
        m.serialize_entry("identifier", e.name.identifier())?;
        m.serialize_entry("host", e.name.host())?;
        m.serialize_entry("plugin", e.name.plugin())?;
        m.serialize_entry("plugin_instance", e.name.plugin_instance())?;
        m.serialize_entry("type", e.name.type_())?;
        m.serialize_entry("type_instance", e.name.type_instance())?;
        m.serialize_entry("time", &cdtime_to_secs(e.time))?;
        m.serialize_entry("interval", &cdtime_to_secs(e.interval))?;
        m.end()
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

/// A number as its data source type wants it; non-finite gauges are null.
enum Num {
    F(f64),
    I(i64),
    U(u64),
}

impl Serialize for Num {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match *self {
            Num::F(v) => s.serialize_f64(v),
            Num::I(v) => s.serialize_i64(v),
            Num::U(v) => s.serialize_u64(v),
        }
    }
}

struct Values<'a>(&'a [RawValue], &'a [DataSource]);

impl Serialize for Values<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().zip(self.1).map(|(v, src)| match src.ds_type {
            DsType::Gauge => Num::F(v.as_gauge()),
            DsType::Derive => Num::I(v.as_derive()),
            DsType::Counter | DsType::Absolute => Num::U(v.0),
        }))
    }
}

struct DsTypes<'a>(&'a [DataSource]);

impl Serialize for DsTypes<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|d| d.ds_type.as_str()))
    }
}

struct DsNames<'a>(&'a [DataSource]);

impl Serialize for DsNames<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|d| &*d.name))
    }
}
