//! The body of `PUT /v1/thresholds/{id}`: `ApiRequest::json::<Threshold>`,
//! then `RuleSet::put` (`Threshold::check`: type required, field lengths,
//! finite and ordered bounds, hysteresis, hits; then the set compiler), then
//! the write path: `ValueStore::record` of values of a metric the threshold
//! applies to, which evaluates it and returns the notification to dispatch.
//!
//! Invariants: no panic or overflow; an accepted threshold survives
//! StateDir (serialized, parsed back equal, loaded again without error;
//! bounds within one ULP until serde_json's float_roundtrip is on, see
//! `fuzz_support::exact_floats`);
//! every notification is one collectd accepts (message 1-255 bytes, the
//! metric's fields, the six meta entries).
#![no_main]

use std::collections::BTreeMap;

use fuzz_support::{assert_same_json, json_request};
use hyper::Method;
use libfuzzer_sys::fuzz_target;
use rest::model::{
    secs_to_cdtime, DataSet, DataSource, DsType, MetaRef, RawValue, ValueListRef, MAX_MESSAGE_LEN,
};
use rest::rules::blacklist::valid_id;
use rest::rules::thresholds::{Threshold, Thresholds};
use rest::store::ValueStore;

fn persist(rules: &BTreeMap<String, Threshold>) -> Result<(), String> {
    let text = serde_json::to_vec_pretty(rules).expect("thresholds serialize");
    let back: BTreeMap<String, Threshold> =
        serde_json::from_slice(&text).expect("thresholds parse back");
    assert_same_json(rules, &back, "thresholds through StateDir");
    let errors = Thresholds::default().load(back);
    assert!(
        errors.is_empty(),
        "saved thresholds do not load: {errors:?}"
    );
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let req = json_request(Method::PUT, "/v1/thresholds/fuzz", data);
    let Ok(mut t) = req.json::<Threshold>(false) else {
        return;
    };
    let id = t.id.take().filter(|i| valid_id(i)).unwrap_or("fuzz".into());
    let store = ValueStore::new(2, 4);
    if store.thresholds.put(&id, t.clone(), persist).is_err() {
        assert!(store.thresholds.is_empty());
        return;
    }
    serde_json::to_vec(&t).expect("the answer serializes");

    // A metric the threshold applies to, with its data source and another.
    let f = [
        t.host.clone().unwrap_or("h".into()),
        t.plugin.clone().unwrap_or("p".into()),
        t.plugin_instance.clone().unwrap_or_default(),
        t.type_.clone(),
        t.type_instance.clone().unwrap_or_default(),
    ];
    let ds_name = t.data_source.clone().unwrap_or("value".into());
    let other = if ds_name == "other" { "value" } else { "other" };
    let ds = DataSet {
        type_name: t.type_.as_str().into(),
        sources: [ds_name.as_str(), other]
            .iter()
            .map(|n| DataSource {
                name: (*n).into(),
                ds_type: DsType::Gauge,
                min: f64::NAN,
                max: f64::NAN,
            })
            .collect(),
    };
    let mut values = vec![
        0.0,
        f64::NAN,
        f64::INFINITY,
        -f64::INFINITY,
        f64::MAX,
        -f64::MAX,
    ];
    for b in [t.warning_min, t.warning_max, t.failure_min, t.failure_max]
        .into_iter()
        .flatten()
    {
        values.extend([b - 1.0, b, b + 1.0, b - t.hysteresis, b + t.hysteresis]);
    }
    values.extend([0.0, 0.0]);
    let start = secs_to_cdtime(rest::app::now_secs());
    for (i, v) in values.iter().enumerate() {
        let raw = [RawValue::gauge(*v), RawValue::gauge(1.0)];
        let (_, notification) = store.record(
            &ds,
            &ValueListRef {
                host: f[0].as_bytes(),
                plugin: f[1].as_bytes(),
                plugin_instance: f[2].as_bytes(),
                type_: f[3].as_bytes(),
                type_instance: f[4].as_bytes(),
                values: &raw,
                time: start + ((i as u64 + 1) << 30),
                interval: 1 << 30,
                meta: MetaRef::Absent,
            },
        );
        if let Some(n) = notification {
            assert!(!n.message.is_empty() && n.message.len() <= MAX_MESSAGE_LEN);
            let got = [
                &n.host,
                &n.plugin,
                &n.plugin_instance,
                &n.type_,
                &n.type_instance,
            ];
            assert_eq!(got, [&f[0], &f[1], &f[2], &f[3], &f[4]]);
            assert_eq!(n.meta.len(), 6);
        }
    }
});
