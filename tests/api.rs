//! The read side of the API and its write-backs (notifications, flush),
//! checked against what a real collectd holds (unixsock LISTVAL/GETVAL,
//! collectd's log).

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{unix_now, wait_for, Collectd, Setup, HOSTNAME};
use serde_json::Value;

fn values_of(c: &Collectd, query: &str) -> Vec<Value> {
    let r = c.get(&format!("/v1/values{query}"));
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["values"].as_array().unwrap().clone()
}

fn value(c: &Collectd, id: &str) -> Option<Value> {
    let r = c.get(&format!("/v1/values/{id}"));
    match r.status {
        200 => Some(r.json()),
        404 => None,
        s => panic!("GET /v1/values/{id}: {s} {}", r.text()),
    }
}

/// GETVAL through unixsock: name -> value (rates, as collectd reports them).
fn getval(c: &Collectd, id: &str) -> Vec<(String, f64)> {
    let lines = c.unixsock(&format!("GETVAL \"{id}\""));
    assert!(!lines[0].starts_with('-'), "GETVAL {id}: {lines:?}");
    lines[1..]
        .iter()
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap();
            (k.to_string(), v.parse::<f64>().unwrap_or(f64::NAN))
        })
        .collect()
}

#[test]
fn health_and_capabilities_describe_the_daemon() {
    let c = Collectd::start(Setup::default().load(&["load", "memory"]));
    let h = c.get("/v1/health");
    assert_eq!(h.status, 200);
    let h = h.json();
    assert_eq!(h["status"], "ok");
    assert_eq!(h["hostname"], HOSTNAME);
    assert!(h["collectd_version"].as_str().unwrap().starts_with("5."));
    assert_eq!(h["version"], env!("CARGO_PKG_VERSION"));
    assert!((h["time"].as_f64().unwrap() - unix_now() as f64).abs() < 60.0);
    assert!(h["uptime"].as_f64().unwrap() >= 0.0);
    // values flow in from load and memory
    let h = wait_for("values to arrive", Duration::from_secs(10), || {
        let h = c.get("/v1/health").json();
        (h["values_received"].as_u64().unwrap() > 0).then_some(h)
    });
    let last = h["last_value_time"].as_f64().expect("last_value_time set");
    assert!((last - unix_now() as f64).abs() < 60.0);
    let age = h["last_value_age"].as_f64().expect("last_value_age set");
    assert!((0.0..60.0).contains(&age), "{age}");

    let cap = c.get("/v1/capabilities");
    assert_eq!(cap.status, 200, "{}", cap.text());
    let cap = cap.json();
    assert_eq!(cap["api_version"], "v1");
    assert_eq!(cap["hostname"], HOSTNAME);
    assert_eq!(cap["interval"], 1.0);
    assert_eq!(
        cap["plugin_dir"].as_str().unwrap(),
        c.dir.join("plugins").to_str().unwrap()
    );
    let names = |k: &str| -> BTreeSet<String> {
        cap["plugins"][k]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    };
    let expected: BTreeSet<String> = ["load", "logfile", "memory", "rest", "unixsock"]
        .map(String::from)
        .into();
    assert_eq!(names("available"), expected);
    assert_eq!(names("loaded"), expected);
    for f in ["values", "metrics", "notifications", "flush"] {
        assert!(
            cap["features"].as_array().unwrap().iter().any(|x| x == f),
            "{f}"
        );
    }
    assert_eq!(cap["limits"]["max_request_bytes"], 1048576);
}

#[test]
fn metrics_match_collectds_own_cache() {
    let c = Collectd::start(Setup::default().load(&["load", "memory"]));
    let ours = |c: &Collectd| -> BTreeSet<String> {
        c.get("/v1/metrics").json()["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["identifier"].as_str().unwrap().to_string())
            .collect()
    };
    let theirs = |c: &Collectd| -> BTreeSet<String> {
        c.listval()
            .iter()
            .filter_map(|l| l.split_whitespace().last())
            .map(String::from)
            .collect()
    };
    // Both sides see the same metrics once the first reads are in.
    let (a, b) = wait_for(
        "both caches to hold load and memory",
        Duration::from_secs(15),
        || {
            let (a, b) = (ours(&c), theirs(&c));
            let full = |s: &BTreeSet<String>| {
                s.contains(&format!("{HOSTNAME}/load/load"))
                    && s.iter().filter(|i| i.contains("/memory/")).count() >= 4
            };
            (full(&a) && full(&b) && a == b).then_some((a, b))
        },
    );
    assert_eq!(a, b);
    // Each metric's fields agree with its identifier, and DS names agree
    // with what GETVAL reports.
    let metrics = c.get("/v1/metrics?plugin=memory").json();
    for m in metrics["metrics"].as_array().unwrap() {
        assert_eq!(m["plugin"], "memory");
        assert_eq!(m["host"], HOSTNAME);
        assert_eq!(m["interval"], 1.0);
        let id = format!(
            "{}/{}/{}-{}",
            m["host"].as_str().unwrap(),
            m["plugin"].as_str().unwrap(),
            m["type"].as_str().unwrap(),
            m["type_instance"].as_str().unwrap()
        );
        assert_eq!(m["identifier"], id.as_str());
    }
    let load = value(&c, &format!("{HOSTNAME}/load/load")).unwrap();
    let names: Vec<String> = getval(&c, &format!("{HOSTNAME}/load/load"))
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(load["dsnames"], serde_json::json!(names));
    assert_eq!(
        load["dstypes"],
        serde_json::json!(["gauge", "gauge", "gauge"])
    );
}

#[test]
fn putval_values_and_rates_agree_with_collectd() {
    let c = Collectd::start(Setup::default());
    let t0 = unix_now() - 20;
    let t1 = t0 + 5;
    let put = |id: &str, opts: &str, t: u64, v: &str| {
        c.putval(id, &format!("interval=10 {opts}"), t, v);
    };
    // PUTVAL takes string meta data quoted twice: the option parser
    // strips the outer quotes, the meta parser wants the inner ones.
    put(
        "test-a/gauge-g",
        r#"meta:origin="\"unit-test\"""#,
        t0,
        "1.5",
    );
    put("test-a/derive-d", "", t0, "1000");
    put("test-a/derive-d", "", t1, "1500");
    put("test-a/counter-c", "", t0, "4294967290");
    put("test-a/counter-c", "", t1, "4");
    put("test-a/absolute-x", "", t0, "30");
    put("test-a/absolute-x", "", t1, "50");
    put("test-b/if_octets-eth0", "", t0, "100:200");
    put("test-b/if_octets-eth0", "", t1, "600:1200");

    let g = wait_for("the gauge", Duration::from_secs(10), || {
        value(&c, &format!("{HOSTNAME}/test-a/gauge-g"))
    });
    assert_eq!(g["values"], serde_json::json!([1.5]));
    assert_eq!(g["rates"], serde_json::json!([1.5]));
    assert_eq!(g["dstypes"], serde_json::json!(["gauge"]));
    assert_eq!(g["dsnames"], serde_json::json!(["value"]));
    assert_eq!(g["time"], t0 as f64);
    assert_eq!(g["interval"], 10.0);
    assert_eq!(g["host"], HOSTNAME);
    assert_eq!(g["plugin"], "test");
    assert_eq!(g["plugin_instance"], "a");
    assert_eq!(g["type"], "gauge");
    assert_eq!(g["type_instance"], "g");
    assert_eq!(g["meta"], serde_json::json!({"origin": "unit-test"}));
    // Meta data equal to the previous value's is shared, different meta
    // data is not (the write threads compare collectd's bytes).
    for (tag, meta, want) in [
        (
            "h",
            r#"meta:origin="\"unit-test\"""#,
            serde_json::json!({"origin": "unit-test"}),
        ),
        (
            "i",
            r#"meta:origin="\"unit-tess\"""#,
            serde_json::json!({"origin": "unit-tess"}),
        ),
        (
            "j",
            r#"meta:origin="\"unit-test\"" meta:more="\"x\"""#,
            serde_json::json!({"origin": "unit-test", "more": "x"}),
        ),
        ("k", "", serde_json::json!({})),
    ] {
        put(&format!("meta-a/gauge-{tag}"), meta, t0, "1");
        let v = value(&c, &format!("{HOSTNAME}/meta-a/gauge-{tag}")).unwrap();
        assert_eq!(v["meta"], want, "gauge-{tag}: {v}");
    }
    // A known metric whose meta data changes serves the newest: the write
    // path compares collectd's list with what the metric holds, and stores
    // one that differs in a value, a key or the number of entries.
    let h = format!("{HOSTNAME}/meta-a/gauge-h");
    for (i, (meta, want)) in [
        (
            r#"meta:origin="\"unit-tesx\"""#,
            serde_json::json!({"origin": "unit-tesx"}),
        ),
        (
            r#"meta:origin="\"unit-tesx\"""#,
            serde_json::json!({"origin": "unit-tesx"}),
        ),
        (
            r#"meta:origin="\"unit-tesx\"" meta:more="\"y\"""#,
            serde_json::json!({"origin": "unit-tesx", "more": "y"}),
        ),
        (
            r#"meta:origim="\"unit-tesx\"" meta:more="\"y\"""#,
            serde_json::json!({"origim": "unit-tesx", "more": "y"}),
        ),
        (
            r#"meta:origim="\"unit-tesx\"""#,
            serde_json::json!({"origim": "unit-tesx"}),
        ),
        ("", serde_json::json!({})),
        (
            r#"meta:origin="\"unit-test\"""#,
            serde_json::json!({"origin": "unit-test"}),
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let t = t0 + 1 + i as u64;
        put("meta-a/gauge-h", meta, t, "2");
        let v = wait_for("the newer value", Duration::from_secs(10), || {
            value(&c, &h).filter(|v| v["time"] == t as f64)
        });
        assert_eq!(v["meta"], want, "value {i}: {v}");
    }
    // The write path read all of that by walking collectd's meta data list
    // directly, once its layout was checked against collectd's own API.
    let log = c.log();
    assert!(
        log.contains("meta data: reading collectd's list directly (layout checked)"),
        "{log}"
    );

    let id = |s: &str| format!("{HOSTNAME}/{s}");
    let wait_value = |s: &str, n: usize| {
        wait_for(s, Duration::from_secs(10), || {
            value(&c, &id(s))
                .filter(|v| v["time"] == t1 as f64 && v["values"].as_array().unwrap().len() == n)
        })
    };
    let d = wait_value("test-a/derive-d", 1);
    assert_eq!(d["values"], serde_json::json!([1500]));
    assert_eq!(d["rates"], serde_json::json!([100.0]));
    let cn = wait_value("test-a/counter-c", 1);
    assert_eq!(cn["values"], serde_json::json!([4]));
    assert_eq!(
        cn["rates"],
        serde_json::json!([2.0]),
        "32-bit wrap: 10 over 5 s"
    );
    let a = wait_value("test-a/absolute-x", 1);
    assert_eq!(a["rates"], serde_json::json!([10.0]));
    let o = wait_value("test-b/if_octets-eth0", 2);
    assert_eq!(o["dsnames"], serde_json::json!(["rx", "tx"]));
    assert_eq!(o["dstypes"], serde_json::json!(["derive", "derive"]));
    assert_eq!(o["values"], serde_json::json!([600, 1200]));
    assert_eq!(o["rates"], serde_json::json!([100.0, 200.0]));

    // collectd's own cache computes the same rates.
    for s in [
        "test-a/derive-d",
        "test-a/counter-c",
        "test-a/absolute-x",
        "test-b/if_octets-eth0",
    ] {
        let ours = value(&c, &id(s)).unwrap();
        let theirs: Vec<f64> = getval(&c, &id(s)).into_iter().map(|(_, v)| v).collect();
        let ours: Vec<f64> = ours["rates"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_f64().unwrap())
            .collect();
        assert_eq!(ours.len(), theirs.len(), "{s}");
        for (o, t) in ours.iter().zip(&theirs) {
            assert!(
                (o - t).abs() < 1e-6 * t.abs().max(1.0),
                "{s}: ours {o}, GETVAL {t}"
            );
        }
    }

    // Filters are exact matches on each field.
    let test_values = values_of(&c, "?plugin=test");
    assert_eq!(test_values.len(), 5);
    assert_eq!(values_of(&c, "?plugin=test&plugin_instance=b").len(), 1);
    assert_eq!(values_of(&c, "?type=derive").len(), 1);
    assert_eq!(values_of(&c, "?type_instance=eth0&type=if_octets").len(), 1);
    assert_eq!(values_of(&c, "?host=nohost").len(), 0);
    assert_eq!(values_of(&c, "?plugin=tes").len(), 0);
    // Sorted by identifier.
    let ids: Vec<String> = test_values
        .iter()
        .map(|v| {
            format!(
                "{}/{}-{}/{}-{}",
                v["host"].as_str().unwrap(),
                v["plugin"].as_str().unwrap(),
                v["plugin_instance"].as_str().unwrap(),
                v["type"].as_str().unwrap(),
                v["type_instance"].as_str().unwrap()
            )
        })
        .collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted);

    // An older value than the cached one is ignored, as collectd does.
    let r = c.unixsock(&format!(
        "PUTVAL \"{HOSTNAME}/test-a/derive-d\" interval=10 {}:5",
        t0 + 1
    ));
    assert!(r[0].starts_with("0 "), "{r:?}");
    // collectd's cache saw it (and refused it, logging so) before the write
    // callbacks run; ours ignores it too.
    c.wait_log("Value too old: name = testhost/test-a/derive-d");
    // The 9 values before it and this one reached our write callback.
    wait_for(
        "our write callback to see it",
        Duration::from_secs(10),
        || {
            let h = c.get("/v1/health").json();
            (h["values_received"].as_u64()? >= 10).then_some(())
        },
    );
    assert_eq!(
        value(&c, &id("test-a/derive-d")).unwrap()["values"],
        serde_json::json!([1500])
    );

    // Unknown and malformed identifiers.
    c.get(&format!("/v1/values/{HOSTNAME}/test-a/nothing"))
        .assert_error(404, "not_found");
    c.get(&format!("/v1/values/{HOSTNAME}/test-a%2Fx/gauge"))
        .assert_error(400, "invalid_identifier");
    c.get(&format!("/v1/values/{HOSTNAME}/test-a/gauge-g?x=1"))
        .assert_error(400, "unknown_parameter");
}

#[test]
fn values_expire_like_collectds_cache() {
    let c = Collectd::start(Setup::default());
    let id = format!("{HOSTNAME}/test-e/gauge-once");
    let r = c.unixsock(&format!("PUTVAL \"{id}\" interval=1 N:42"));
    assert!(r[0].starts_with("0 "), "{r:?}");
    wait_for("the value to appear", Duration::from_secs(10), || {
        value(&c, &id)
    });
    assert!(c.listval().iter().any(|l| l.ends_with(&id)));
    // Timeout 2 x interval 1 s with no update: gone from both caches.
    wait_for("our value to expire", Duration::from_secs(10), || {
        value(&c, &id).is_none().then_some(())
    });
    assert!(c.get("/v1/metrics").json()["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .all(|m| m["identifier"] != id.as_str()));
    wait_for(
        "collectd's cache to drop it",
        Duration::from_secs(10),
        || (!c.listval().iter().any(|l| l.ends_with(&id))).then_some(()),
    );
}

#[test]
fn notifications_from_collectd_and_into_collectd() {
    let c = Collectd::start(Setup::default());
    let r = c.unixsock(&format!(
        "PUTNOTIF severity=failure time={} host=h1 plugin=disk plugin_instance=sda type=disk_ops \
         type_instance=read s:mount=/srv message=\"disk is failing\"",
        unix_now()
    ));
    assert!(r[0].starts_with("0 "), "{r:?}");
    let page = wait_for("the PUTNOTIF notification", Duration::from_secs(10), || {
        let p = c.get("/v1/notifications").json();
        (!p["notifications"].as_array().unwrap().is_empty()).then_some(p)
    });
    let n = &page["notifications"][0];
    assert_eq!(n["seq"], 1);
    assert_eq!(n["severity"], "failure");
    assert_eq!(n["message"], "disk is failing");
    assert_eq!(n["host"], "h1");
    assert_eq!(n["plugin"], "disk");
    assert_eq!(n["plugin_instance"], "sda");
    assert_eq!(n["type"], "disk_ops");
    assert_eq!(n["type_instance"], "read");
    assert_eq!(n["meta"], serde_json::json!({"mount": "/srv"}));
    assert_eq!(page["cursor"], 1);
    assert_eq!(page["lost"], 0);

    // POST dispatches into collectd: the logfile plugin logs it, and our
    // own notification callback sees it too.
    let r = c.post_json(
        "/v1/notifications",
        r#"{"severity":"warning","message":"posted through the API","plugin":"api-test","type_instance":"x"}"#,
    );
    assert_eq!(r.status, 202, "{}", r.text());
    let posted = &r.json()["notification"];
    assert_eq!(
        posted["host"], HOSTNAME,
        "host defaults to collectd's hostname"
    );
    assert_eq!(posted["severity"], "warning");
    let line = c.wait_log("message = posted through the API");
    assert!(line.contains("severity = WARNING"), "{line}");
    assert!(line.contains("plugin = api-test"), "{line}");
    let page = c.get("/v1/notifications?since=1").json();
    let ns = page["notifications"].as_array().unwrap();
    assert_eq!(ns.len(), 1);
    assert_eq!(ns[0]["seq"], 2);
    assert_eq!(ns[0]["message"], "posted through the API");
    assert_eq!(ns[0]["host"], HOSTNAME);
    assert_eq!(page["cursor"], 2);

    // Filters and limits.
    let p = c.get("/v1/notifications?severity=failure").json();
    assert_eq!(p["notifications"].as_array().unwrap().len(), 1);
    let p = c.get("/v1/notifications?plugin=api-test").json();
    assert_eq!(p["notifications"][0]["seq"], 2);
    let p = c.get("/v1/notifications?limit=1").json();
    assert_eq!(p["notifications"].as_array().unwrap().len(), 1);
    assert_eq!(p["cursor"], 1);
    let p = c.get("/v1/notifications?since=2").json();
    assert!(p["notifications"].as_array().unwrap().is_empty());
    assert_eq!(p["cursor"], 2);
    c.get("/v1/notifications?severity=bad")
        .assert_error(400, "invalid_parameter");
    c.get("/v1/notifications?limit=0")
        .assert_error(400, "invalid_parameter");
    c.get("/v1/notifications?since=-1")
        .assert_error(400, "invalid_parameter");
}

#[test]
fn notification_ring_evicts_and_counts_lost() {
    let c = Collectd::start(Setup::default().rest("NotificationBufferSize 3"));
    for i in 1..=5 {
        let r = c.post_json(
            "/v1/notifications",
            &format!(r#"{{"severity":"okay","message":"n{i}"}}"#),
        );
        assert_eq!(r.status, 202);
    }
    let p = c.get("/v1/notifications").json();
    let msgs: Vec<&str> = p["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["message"].as_str().unwrap())
        .collect();
    assert_eq!(msgs, ["n3", "n4", "n5"]);
    assert_eq!(p["lost"], 2);
    assert_eq!(p["cursor"], 5);
    let p = c.get("/v1/notifications?since=3").json();
    assert_eq!(p["lost"], 0);
    assert_eq!(p["notifications"].as_array().unwrap().len(), 2);
}

#[test]
fn flush_reaches_collectds_flush_callbacks() {
    let c = Collectd::start(Setup::default().load(&["rrdtool"]).extra(
        "<Plugin rrdtool>\n  DataDir \"rrd\"\n  CacheTimeout 3600\n  CacheFlush 7200\n</Plugin>",
    ));
    let id = format!("{HOSTNAME}/test-f/gauge-x");
    let t0 = unix_now() - 30;
    for (i, t) in [t0, t0 + 10, t0 + 20].iter().enumerate() {
        let r = c.unixsock(&format!("PUTVAL \"{id}\" interval=10 {t}:{i}"));
        assert!(r[0].starts_with("0 "), "{r:?}");
    }
    // rrdtool creates the file at once but caches the updates (CacheTimeout).
    let file = c.dir.join(format!("rrd/{id}.rrd"));
    let created = wait_for("the RRD file", Duration::from_secs(10), || {
        std::fs::metadata(&file)
            .ok()
            .and_then(|m| m.modified().ok())
    });
    let r = c.post_json(
        "/v1/flush",
        &format!(r#"{{"plugins":["rrdtool"],"identifiers":["{id}"],"timeout":0}}"#),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["flushed"],
        serde_json::json!([{"plugin": "rrdtool", "status": 0, "identifier": id}])
    );
    // The flush made rrdtool write its cached updates.
    wait_for(
        "rrdtool to write the flushed values",
        Duration::from_secs(10),
        || {
            let m = std::fs::metadata(&file).ok()?.modified().ok()?;
            (m > created).then_some(())
        },
    );

    // Every plugin, and plugins that are not loaded.
    let r = c.request("POST", "/v1/flush", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["flushed"],
        serde_json::json!([{"plugin": null, "status": 0}])
    );
    let r = c.post_json("/v1/flush", r#"{"plugins":["nosuchplugin"]}"#);
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["flushed"][0]["status"], -1);
    assert_eq!(r.json()["flushed"][0]["error"], "plugin is not loaded");
    c.post_json("/v1/flush", r#"{"plugins":["../etc"]}"#)
        .assert_error(400, "invalid_body");
    c.post_json("/v1/flush", r#"{"identifiers":["nohost"]}"#)
        .assert_error(400, "invalid_body");
    c.post_json("/v1/flush", r#"{"timeout":-1}"#)
        .assert_error(400, "invalid_body");
    c.post_json("/v1/flush", r#"{"timeout":"soon"}"#)
        .assert_error(400, "invalid_body");
}

#[test]
fn heartbeat_notifications_reach_collectd() {
    let c = Collectd::start(Setup::default().rest("HeartbeatInterval 0.5"));
    let line = c.wait_log("rest heartbeat");
    assert!(line.contains("severity = OKAY"), "{line}");
    assert!(line.contains("plugin = rest"), "{line}");
    let p = c.get("/v1/notifications?plugin=rest").json();
    let n = &p["notifications"][0];
    assert_eq!(n["type_instance"], "heartbeat");
    assert_eq!(n["severity"], "okay");
    assert_eq!(n["host"], HOSTNAME);
}

#[test]
fn openapi_document_is_served_as_is() {
    let c = Collectd::start(Setup::default());
    let r = c.get("/v1/openapi.json");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let file =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json")).unwrap();
    assert!(
        r.text() == file,
        "the served document differs from docs/openapi.json"
    );
}

/// The NTP-style time exchange: t1 and t2 from our clock around t0, and the
/// kernel's clock state.
#[test]
fn time_exchange() {
    let c = Collectd::start(Setup::default());
    let t0 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let r = c.get(&format!("/v1/time?t0={t0}"));
    let t3 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    // (serde_json's float parsing may be off by one unit in the last place)
    assert!((j["t0"].as_f64().unwrap() - t0).abs() < 1e-6, "{}", j["t0"]);
    let (t1, t2) = (j["t1"].as_f64().unwrap(), j["t2"].as_f64().unwrap());
    // Same host, same clock: t0 <= t1 <= t2 <= t3, and the offset the
    // client computes is within the round trip.
    assert!(t0 <= t1 && t1 <= t2 && t2 <= t3, "{t0} {t1} {t2} {t3}");
    let offset = ((t1 - t0) + (t2 - t3)) / 2.0;
    let delay = (t3 - t0) - (t2 - t1);
    assert!(offset.abs() <= delay, "offset {offset}, delay {delay}");
    assert_eq!(j["interval"], 1.0);
    let clock = &j["clock"];
    assert!(clock["synchronized"].is_boolean(), "{j}");
    assert!(clock["max_error_us"].as_i64().unwrap() >= 0);
    assert!(clock["est_error_us"].as_i64().unwrap() >= 0);
    // t0 is optional; a bad one is refused.
    assert_eq!(c.get("/v1/time").json()["t0"], serde_json::Value::Null);
    c.get("/v1/time?t0=soon")
        .assert_error(400, "invalid_parameter");
    c.get("/v1/time?t0=nan")
        .assert_error(400, "invalid_parameter");
}

/// The buffered history: every sample after a cursor, in arrival order,
/// with what the reader lost when it fell behind.
#[test]
fn history_with_cursors_and_overflow() {
    let c = Collectd::start(Setup::default().rest("HistorySize 4"));
    let t0 = unix_now() - 1000;
    let put = |id: &str, t: u64, v: u64| c.putval(id, "interval=10", t, &v.to_string());
    let read = |query: &str| -> Value {
        let r = c.get(&format!("/v1/history{query}"));
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()
    };
    let ids_values = |page: &Value| -> Vec<(String, f64)> {
        page["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| {
                (
                    format!(
                        "{}-{}",
                        v["plugin"].as_str().unwrap(),
                        v["type_instance"].as_str().unwrap()
                    ),
                    v["values"][0].as_f64().unwrap(),
                )
            })
            .collect()
    };
    put("hist/gauge-a", t0, 1);
    put("hist/gauge-b", t0, 2);
    put("hist/gauge-a", t0 + 10, 3);
    let page = wait_for("3 samples", Duration::from_secs(10), || {
        let p = read("?plugin=hist");
        (p["values"].as_array().unwrap().len() == 3).then_some(p)
    });
    assert_eq!(
        ids_values(&page),
        [
            ("hist-a".into(), 1.0),
            ("hist-b".into(), 2.0),
            ("hist-a".into(), 3.0)
        ]
    );
    assert_eq!(page["lost"], 0);
    let cursor = page["cursor"]
        .as_str()
        .expect("an opaque string cursor")
        .to_string();
    assert_eq!(page["values"][2]["time"], (t0 + 10) as f64);
    assert_eq!(page["values"][2]["dsnames"], serde_json::json!(["value"]));

    // Only what came after the cursor; nothing twice, nothing missed.
    put("hist/gauge-b", t0 + 10, 4);
    let page = wait_for("the 4th sample", Duration::from_secs(10), || {
        let p = read(&format!("?plugin=hist&since={cursor}"));
        (!p["values"].as_array().unwrap().is_empty()).then_some(p)
    });
    assert_eq!(ids_values(&page), [("hist-b".into(), 4.0)]);
    let cursor = page["cursor"].as_str().unwrap().to_string();

    // A reader that falls behind: metric a gets 6 more samples, its ring
    // keeps 4, so 3 of the 7 it had since the first read are gone.
    for k in 2..8 {
        put("hist/gauge-a", t0 + 10 * k, 10 + k);
    }
    let page = wait_for("a's samples", Duration::from_secs(10), || {
        let p = read(&format!("?plugin=hist&since={cursor}"));
        (p["values"].as_array().unwrap().len() == 4).then_some(p)
    });
    let got: Vec<f64> = ids_values(&page).into_iter().map(|x| x.1).collect();
    assert_eq!(got, [14.0, 15.0, 16.0, 17.0]);
    assert_eq!(page["lost"], 2, "samples 12 and 13 were evicted unread");
    // From the start: everything buffered, every eviction counted.
    let all = read("?plugin=hist");
    assert_eq!(all["values"].as_array().unwrap().len(), 6, "4 of a, 2 of b");
    assert_eq!(all["lost"], 4);
    // Pages: the cursor goes on exactly where a page stopped.
    let p1 = read("?plugin=hist&limit=4");
    let c1 = p1["cursor"].as_str().unwrap();
    let p2 = read(&format!("?plugin=hist&limit=4&since={c1}"));
    assert_eq!(
        p1["values"].as_array().unwrap().len() + p2["values"].as_array().unwrap().len(),
        6
    );
    assert_eq!(p2["lost"], 0, "the lost were counted on the first page");
    c.get("/v1/history?since=abc")
        .assert_error(400, "invalid_parameter");
    c.get("/v1/history?limit=0")
        .assert_error(400, "invalid_parameter");
    c.get("/v1/history?cursor=1")
        .assert_error(400, "unknown_parameter");
}
