//! Threshold semantics, checked against what collectd 5.12's threshold
//! plugin does with the same configuration.

use super::*;
use crate::model::{DataSource, DsType};

fn t(type_: &str) -> Threshold {
    serde_json::from_value(serde_json::json!({ "type": type_ })).unwrap()
}

fn gauge() -> DataSet {
    DataSet {
        type_name: "gauge".into(),
        sources: vec![DataSource {
            name: "value".into(),
            ds_type: DsType::Gauge,
            min: f64::NAN,
            max: f64::NAN,
        }]
        .into(),
    }
}

fn set(rules: &[(&str, Threshold)]) -> Thresholds {
    let s = Thresholds::default();
    for (id, r) in rules {
        s.put(id, r.clone(), |_| Ok(())).unwrap();
    }
    s
}

/// Feeds `values` to one metric; returns (severity, message) per value.
fn run(
    s: &Thresholds,
    name: &MetricName,
    ds: &DataSet,
    values: &[f64],
) -> Vec<Option<(Severity, String)>> {
    let mut st = MetricState::default();
    values
        .iter()
        .map(|v| evaluate(s, &mut st, name, ds, &[*v], 1 << 30).map(|n| (n.severity, n.message)))
        .collect()
}

fn sev(r: &[Option<(Severity, String)>]) -> Vec<Option<Severity>> {
    r.iter().map(|x| x.as_ref().map(|(s, _)| *s)).collect()
}

#[test]
fn like_collectd_warning_failure_okay() {
    // collectd: <Type "gauge"> WarningMax 10 FailureMax 20 </Type>, values
    // 5 15 25 25 5 gave OKAY, WARNING, FAILURE, (nothing), OKAY.
    let mut th = t("gauge");
    th.warning_max = Some(10.0);
    th.failure_max = Some(20.0);
    let s = set(&[("a", th)]);
    let n = MetricName::new(["tryhost", "test", "", "gauge", "x"]);
    let r = run(&s, &n, &gauge(), &[5.0, 15.0, 25.0, 25.0, 5.0]);
    use Severity::*;
    assert_eq!(
        sev(&r),
        [Some(Okay), Some(Warning), Some(Failure), None, Some(Okay)]
    );
    assert_eq!(
        r[1].as_ref().unwrap().1,
        "Host tryhost, plugin test type gauge (instance x): Data source \"value\" is currently \
         15.000000. That is above the warning threshold of 10.000000."
    );
    assert_eq!(
        r[2].as_ref().unwrap().1,
        "Host tryhost, plugin test type gauge (instance x): Data source \"value\" is currently \
         25.000000. That is above the failure threshold of 20.000000."
    );
    assert_eq!(
        r[4].as_ref().unwrap().1,
        "Host tryhost, plugin test type gauge (instance x): All data sources are within range \
         again. Current value of \"value\" is 5.000000."
    );
}

#[test]
fn hits_persist_invert_percentage_hysteresis() {
    use Severity::*;
    let n = MetricName::new(["h", "p", "", "gauge", ""]);
    let ds = gauge();
    // hits 3: reported at the third consecutive value out of range
    let mut th = t("gauge");
    th.failure_max = Some(20.0);
    th.hits = 3;
    let r = run(&set(&[("a", th)]), &n, &ds, &[25.0, 25.0, 25.0, 25.0, 5.0]);
    assert_eq!(sev(&r), [None, None, Some(Failure), None, Some(Okay)]);
    // persist: every value out of range is reported
    let mut th = t("gauge");
    th.failure_max = Some(20.0);
    th.persist = true;
    let r = run(&set(&[("a", th)]), &n, &ds, &[5.0, 25.0, 25.0, 5.0, 5.0]);
    assert_eq!(
        sev(&r),
        [Some(Okay), Some(Failure), Some(Failure), Some(Okay), None]
    );
    // invert: the range itself is the problem
    let mut th = t("gauge");
    th.warning_min = Some(10.0);
    th.warning_max = Some(20.0);
    th.failure_min = Some(12.0);
    th.failure_max = Some(18.0);
    th.invert = true;
    let r = run(&set(&[("a", th)]), &n, &ds, &[5.0, 11.0, 15.0]);
    assert_eq!(sev(&r), [Some(Okay), Some(Warning), Some(Failure)]);
    assert!(r[2]
        .as_ref()
        .unwrap()
        .1
        .contains("within the failure region of 12.000000 and 18.000000"));
    // As in collectd, an inverted threshold without warning bounds is in
    // the warning state whenever it is not failing.
    let mut th = t("gauge");
    th.failure_min = Some(10.0);
    th.failure_max = Some(20.0);
    th.invert = true;
    let r = run(&set(&[("a", th)]), &n, &ds, &[5.0, 15.0]);
    assert_eq!(sev(&r), [Some(Warning), Some(Failure)]);
    // hysteresis: leaving the failure state needs the value below max - h
    let mut th = t("gauge");
    th.failure_max = Some(20.0);
    th.hysteresis = 2.0;
    let r = run(&set(&[("a", th)]), &n, &ds, &[25.0, 19.0, 17.0]);
    assert_eq!(sev(&r), [Some(Failure), None, Some(Okay)]);
}

#[test]
fn percentage_of_the_sum() {
    let ds = DataSet {
        type_name: "df".into(),
        sources: ["used", "free"]
            .iter()
            .map(|n| DataSource {
                name: (*n).into(),
                ds_type: DsType::Gauge,
                min: f64::NAN,
                max: f64::NAN,
            })
            .collect(),
    };
    let mut th = t("df");
    th.data_source = Some("used".into());
    th.warning_max = Some(80.0);
    th.percentage = true;
    let s = set(&[("a", th)]);
    let n = MetricName::new(["h", "df", "root", "df", ""]);
    let mut st = MetricState::default();
    let ok = evaluate(&s, &mut st, &n, &ds, &[50.0, 50.0], 1).unwrap();
    assert_eq!(ok.severity, Severity::Okay);
    let w = evaluate(&s, &mut st, &n, &ds, &[90.0, 10.0], 1).unwrap();
    assert_eq!(w.severity, Severity::Warning);
    assert!(
        w.message
            .contains("is currently 90 (90.00%). That is above the warning threshold of 80.00%."),
        "{}",
        w.message
    );
    assert_eq!(
        w.meta[0],
        ("DataSource".to_string(), MetaValue::String("used".into()))
    );
    assert_eq!(
        w.meta[1],
        ("CurrentValue".to_string(), MetaValue::Double(90.0))
    );
}

#[test]
fn most_specific_key_wins_like_collectd() {
    use Severity::*;
    let mut any = t("gauge");
    any.failure_max = Some(100.0);
    let mut for_host = t("gauge");
    for_host.host = Some("h".into());
    for_host.failure_max = Some(10.0);
    let mut for_plugin = t("gauge");
    for_plugin.plugin = Some("p".into());
    for_plugin.failure_max = Some(50.0);
    let s = set(&[("any", any), ("host", for_host), ("plugin", for_plugin)]);
    let ds = gauge();
    // host-specific beats plugin-specific beats type-only
    assert_eq!(
        sev(&run(
            &s,
            &MetricName::new(["h", "p", "", "gauge", ""]),
            &ds,
            &[5.0, 20.0]
        )),
        [Some(Okay), Some(Failure)]
    );
    assert_eq!(
        sev(&run(
            &s,
            &MetricName::new(["x", "p", "", "gauge", ""]),
            &ds,
            &[20.0, 60.0]
        )),
        [Some(Okay), Some(Failure)]
    );
    assert_eq!(
        sev(&run(
            &s,
            &MetricName::new(["x", "q", "", "gauge", ""]),
            &ds,
            &[60.0, 110.0]
        )),
        [Some(Okay), Some(Failure)]
    );
    // another type: no threshold at all
    let other = MetricName::new(["h", "p", "", "load", ""]);
    assert_eq!(sev(&run(&s, &other, &ds, &[1e9])), [None]);
}

#[test]
fn rule_changes_apply_and_bad_rules_are_refused() {
    let mut th = t("gauge");
    th.failure_max = Some(10.0);
    let s = set(&[("a", th.clone())]);
    let n = MetricName::new(["h", "p", "", "gauge", ""]);
    let ds = gauge();
    let mut st = MetricState::default();
    assert!(evaluate(&s, &mut st, &n, &ds, &[5.0], 1).is_some());
    th.failure_max = Some(1.0);
    s.put("a", th, |_| Ok(())).unwrap();
    let f = evaluate(&s, &mut st, &n, &ds, &[5.0], 2).unwrap();
    assert_eq!(
        f.severity,
        Severity::Failure,
        "the new bound applies at once"
    );
    s.delete("a", |_| Ok(())).unwrap();
    assert!(evaluate(&s, &mut st, &n, &ds, &[500.0], 3).is_none());

    let bad = |f: &dyn Fn(&mut Threshold)| {
        let mut th = t("gauge");
        th.failure_max = Some(10.0);
        f(&mut th);
        th.check()
    };
    assert!(bad(&|_| {}).is_ok());
    assert!(bad(&|t| t.failure_max = None)
        .unwrap_err()
        .contains("at least one"));
    assert!(bad(&|t| t.warning_min = Some(f64::INFINITY))
        .unwrap_err()
        .contains("finite"));
    assert!(bad(&|t| {
        t.warning_min = Some(5.0);
        t.warning_max = Some(1.0)
    })
    .unwrap_err()
    .contains("above"));
    assert!(bad(&|t| t.plugin_instance = Some("0".into()))
        .unwrap_err()
        .contains("needs plugin"));
    assert!(bad(&|t| t.hits = 0).is_err());
    assert!(bad(&|t| t.hysteresis = -1.0).is_err());
    assert!(bad(&|t| t.type_ = String::new()).is_err());
}
