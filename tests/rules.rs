//! Blacklist and threshold rules inside a real collectd: what they drop
//! never reaches collectd's cache (unixsock LISTVAL), what they trip
//! reaches collectd's notification consumers, and both survive restarts.

mod common;

use std::time::Duration;

use common::{wait_for, Collectd, Response, Setup, HOSTNAME};
use serde_json::{json, Value};

fn put(c: &Collectd, path: &str, body: Value) -> Response {
    c.request(
        "PUT",
        path,
        &[("Content-Type", "application/json")],
        body.to_string().as_bytes(),
    )
}

fn ours(c: &Collectd) -> Vec<String> {
    c.get("/v1/metrics").json()["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["identifier"].as_str().unwrap().to_string())
        .collect()
}

/// Waits until collectd's `load` plugin has read `n` more times.
fn let_collectd_run(c: &Collectd, n: usize) {
    let id = format!("/v1/values/{HOSTNAME}/load/load");
    let mut last = c.get(&id).json()["time"].as_f64().unwrap_or(0.0);
    for _ in 0..n {
        last = wait_for("a read of load", Duration::from_secs(10), || {
            let t = c.get(&id).json()["time"].as_f64()?;
            (t > last).then_some(t)
        });
    }
}

fn blacklisted(id: &str) -> bool {
    id.contains("/cpu-") && id.ends_with("/cpu-idle") || id.contains("/memory/")
}

#[test]
fn blacklist_drops_values_before_collectds_cache() {
    let c = Collectd::start(Setup::default().load(&["cpu", "memory", "load"]));
    wait_for(
        "cpu idle and memory in collectd's cache",
        Duration::from_secs(15),
        || {
            let l = c.listval();
            (l.iter().any(|i| i.ends_with("/cpu-idle")) && l.iter().any(|i| i.contains("/memory/")))
                .then_some(())
        },
    );

    let r = put(
        &c,
        "/v1/blacklist/no-idle",
        json!({"plugin": "cpu", "type_instance": "idle"}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(
        r.json(),
        json!({"id": "no-idle", "plugin": "cpu", "type_instance": "idle"})
    );
    let r = put(&c, "/v1/blacklist/memory", json!({"plugin": "/^mem/"}));
    assert_eq!(r.status, 201, "{}", r.text());

    // Gone from collectd's own cache (after its Timeout) and from ours.
    wait_for(
        "blacklisted metrics to leave collectd's cache",
        Duration::from_secs(15),
        || (!c.listval().iter().any(|i| blacklisted(i))).then_some(()),
    );
    wait_for("and ours", Duration::from_secs(15), || {
        (!ours(&c).iter().any(|i| blacklisted(i))).then_some(())
    });
    // And they stay gone while collectd reads on; the rest still flows.
    let_collectd_run(&c, 3);
    assert!(!c.listval().iter().any(|i| blacklisted(i)));
    assert!(c.listval().iter().any(|i| i.ends_with("/cpu-user")));

    let list = c.get("/v1/blacklist").json();
    assert_eq!(list["blacklist"].as_array().unwrap().len(), 2);
    // Replacing a rule answers 200; deleting one lets values back.
    let r = put(
        &c,
        "/v1/blacklist/memory",
        json!({"plugin": "memory", "type_instance": "free"}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    wait_for("memory used back", Duration::from_secs(15), || {
        c.listval()
            .iter()
            .any(|i| i.ends_with("/memory/memory-used"))
            .then_some(())
    });
    assert_eq!(
        c.request("DELETE", "/v1/blacklist/memory", &[], b"").status,
        204
    );
    wait_for("memory free back", Duration::from_secs(15), || {
        c.listval()
            .iter()
            .any(|i| i.ends_with("/memory/memory-free"))
            .then_some(())
    });

    // Bad rules change nothing.
    put(&c, "/v1/blacklist/bad", json!({"plugin": "/(unclosed/"}))
        .assert_error(400, "invalid_rule");
    put(&c, "/v1/blacklist/bad", json!({})).assert_error(400, "invalid_rule");
    put(&c, "/v1/blacklist/bad", json!({"plugin": 5})).assert_error(400, "invalid_body");
    put(&c, "/v1/blacklist/bad", json!({"plugin": "x", "bogus": 1}))
        .assert_error(400, "invalid_body");
    put(
        &c,
        "/v1/blacklist/bad",
        json!({"id": "other", "plugin": "x"}),
    )
    .assert_error(400, "invalid_body");
    put(&c, "/v1/blacklist/a%2Fb", json!({"plugin": "x"})).assert_error(400, "invalid_id");
    c.request("DELETE", "/v1/blacklist/nosuch", &[], b"")
        .assert_error(404, "not_found");
    assert_eq!(
        c.get("/v1/blacklist").json()["blacklist"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // The rule survives a restart: cpu idle never comes back.
    let c = c.restart();
    assert_eq!(
        c.get("/v1/blacklist").json()["blacklist"],
        json!([{"id": "no-idle", "plugin": "cpu", "type_instance": "idle"}])
    );
    wait_for(
        "cpu user after the restart",
        Duration::from_secs(15),
        || {
            c.listval()
                .iter()
                .any(|i| i.ends_with("/cpu-user"))
                .then_some(())
        },
    );
    let_collectd_run(&c, 2);
    assert!(!c.listval().iter().any(|i| i.ends_with("/cpu-idle")));
    assert!(!ours(&c).iter().any(|i| i.ends_with("/cpu-idle")));
}

fn notifications(c: &Collectd, plugin: &str) -> Vec<Value> {
    c.get(&format!("/v1/notifications?plugin={plugin}")).json()["notifications"]
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn thresholds_notify_collectd_and_survive_a_restart() {
    let c = Collectd::start(Setup::default());
    let r = put(
        &c,
        "/v1/thresholds/test-gauge",
        json!({"plugin": "test", "type": "gauge", "warning_max": 10, "failure_max": 20}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(
        r.json(),
        json!({"id": "test-gauge", "plugin": "test", "type": "gauge", "warning_max": 10.0,
               "failure_max": 20.0, "invert": false, "percentage": false, "persist": false,
               "persist_ok": false, "hits": 1, "hysteresis": 0.0})
    );
    let id = format!("{HOSTNAME}/test/gauge-x");
    let t0 = common::unix_now() - 100;
    // One value at a time: collectd's write threads may otherwise take two
    // values of one metric out of order (its cache then drops the older).
    for (i, v) in [5, 15, 25, 25, 5].iter().enumerate() {
        let t = t0 + i as u64;
        let r = c.unixsock(&format!("PUTVAL \"{id}\" interval=10 {t}:{v}"));
        assert!(r[0].starts_with("0 "), "{r:?}");
        wait_for("the value in the store", Duration::from_secs(10), || {
            let v = c.get(&format!("/v1/values/{id}")).json();
            (v["time"] == t as f64).then_some(())
        });
    }
    // Four state changes (the first value reports okay, as collectd's
    // threshold plugin does), each through collectd to its consumers.
    let ns = wait_for("4 threshold notifications", Duration::from_secs(10), || {
        let ns = notifications(&c, "test");
        (ns.len() >= 4).then_some(ns)
    });
    let sev: Vec<&str> = ns.iter().map(|n| n["severity"].as_str().unwrap()).collect();
    assert_eq!(sev, ["okay", "warning", "failure", "okay"]);
    assert_eq!(
        ns[2]["message"],
        format!(
            "Host {HOSTNAME}, plugin test type gauge (instance x): Data source \"value\" is \
             currently 25.000000. That is above the failure threshold of 20.000000."
        )
    );
    assert_eq!(ns[2]["meta"]["DataSource"], "value");
    assert_eq!(ns[2]["meta"]["CurrentValue"], 25.0);
    assert_eq!(ns[2]["meta"]["FailureMax"], 20.0);
    assert_eq!(ns[2]["time"], (t0 + 2) as f64);
    assert_eq!(ns[2]["type_instance"], "x");
    let line = c.wait_log("That is above the failure threshold of 20.000000");
    assert!(line.contains("severity = FAILURE"), "{line}");

    // Bad bounds change nothing.
    let bad = |body: Value| put(&c, "/v1/thresholds/bad", body).assert_error(400, "invalid_rule");
    bad(json!({"type": "gauge"}));
    bad(json!({"type": "gauge", "warning_min": 5, "warning_max": 1}));
    bad(json!({"type": "gauge", "failure_max": 1, "plugin_instance": "0"}));
    bad(json!({"type": "gauge", "failure_max": 1, "hits": 0}));
    bad(json!({"type": "", "failure_max": 1}));
    put(
        &c,
        "/v1/thresholds/bad",
        json!({"type": "gauge", "failure_max": "high"}),
    )
    .assert_error(400, "invalid_body");
    put(&c, "/v1/thresholds/bad", json!({"failure_max": 1})).assert_error(400, "invalid_body");
    assert_eq!(
        c.get("/v1/thresholds").json()["thresholds"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // After a restart of collectd the threshold is still there and works.
    let c = c.restart();
    assert_eq!(
        c.get("/v1/thresholds").json()["thresholds"][0]["id"],
        "test-gauge"
    );
    let r = c.unixsock(&format!(
        "PUTVAL \"{id}\" interval=10 {}:30",
        common::unix_now()
    ));
    assert!(r[0].starts_with("0 "), "{r:?}");
    let ns = wait_for(
        "a failure after the restart",
        Duration::from_secs(10),
        || {
            let ns = notifications(&c, "test");
            (!ns.is_empty()).then_some(ns)
        },
    );
    assert_eq!(ns[0]["severity"], "failure");

    // Deleted: no more notifications.
    assert_eq!(
        c.request("DELETE", "/v1/thresholds/test-gauge", &[], b"")
            .status,
        204
    );
    c.request("DELETE", "/v1/thresholds/test-gauge", &[], b"")
        .assert_error(404, "not_found");
    let r = c.unixsock(&format!(
        "PUTVAL \"{id}\" interval=10 {}:1",
        common::unix_now() + 1
    ));
    assert!(r[0].starts_with("0 "), "{r:?}");
    wait_for("the value", Duration::from_secs(10), || {
        let v = c.get(&format!("/v1/values/{id}")).json();
        (v["values"] == json!([1.0])).then_some(())
    });
    assert_eq!(notifications(&c, "test").len(), 1);
}
