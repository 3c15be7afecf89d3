//! Runtime plugin management inside a real collectd, over real plugins of
//! Debian's collectd: load, values (API and unixsock LISTVAL), disable,
//! enable (cadence and interval), restart, reconfigure, delete, and what
//! survives a restart of collectd.

mod common;

use std::time::Duration;

use common::{wait_for, Collectd, Response, Setup, HOSTNAME};
use serde_json::{json, Value};

/// Interval the API gives the plugins under test; collectd's global
/// Interval is 1 s and `load` (from collectd.conf) ticks with it.
const INTERVAL: f64 = 0.5;
/// The interval a reconfiguration sets.
const NEW_INTERVAL: f64 = 0.75;

fn setup(plugins: &[&str]) -> Setup {
    let mut s = Setup::default().load(&["load"]);
    s.copy = plugins.iter().map(|p| p.to_string()).collect();
    s
}

fn put(c: &Collectd, plugin: &str, body: Value) -> Response {
    c.request(
        "PUT",
        &format!("/v1/plugins/{plugin}"),
        &[("Content-Type", "application/json")],
        body.to_string().as_bytes(),
    )
}

fn post(c: &Collectd, plugin: &str, action: &str) -> Response {
    c.request("POST", &format!("/v1/plugins/{plugin}/{action}"), &[], b"")
}

fn ok(r: Response) -> Value {
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

fn plugin(c: &Collectd, name: &str) -> Value {
    ok(c.get(&format!("/v1/plugins/{name}")))
}

fn metrics(c: &Collectd, plugin: &str) -> Vec<Value> {
    c.get(&format!("/v1/metrics?plugin={plugin}")).json()["metrics"]
        .as_array()
        .unwrap()
        .clone()
}

/// The newest value time of any metric of `plugin`.
fn newest(c: &Collectd, plugin: &str) -> f64 {
    metrics(c, plugin)
        .iter()
        .map(|m| m["time"].as_f64().unwrap())
        .fold(0.0, f64::max)
}

fn in_listval(c: &Collectd, plugin: &str) -> bool {
    c.listval().iter().any(|id| {
        id.split('/')
            .nth(1)
            .is_some_and(|p| p == plugin || p.starts_with(&format!("{plugin}-")))
    })
}

/// Waits until collectd's own `load` plugin has read `n` more times: time
/// has passed inside collectd, and reads of other plugins had their turn.
fn let_collectd_run(c: &Collectd, n: usize) {
    let mut last = newest(c, "load");
    for i in 0..n {
        last = wait_for(&format!("load read {i}"), Duration::from_secs(10), || {
            let t = newest(c, "load");
            (t > last).then_some(t)
        });
    }
}

/// Values of `plugin` appear in the API and in collectd's own cache.
fn assert_values_flow(c: &Collectd, plugin: &str, after: f64) {
    wait_for(
        &format!("values of {plugin}"),
        Duration::from_secs(15),
        || (newest(c, plugin) > after && in_listval(c, plugin)).then_some(()),
    );
}

/// No value of `plugin` newer than `t` arrives while collectd runs on.
fn assert_values_stopped(c: &Collectd, plugin: &str, t: f64) {
    let_collectd_run(c, 3);
    let n = newest(c, plugin);
    assert!(n <= t, "{plugin} still produced values ({n} > {t})");
}

/// Successive value times of one metric: reads come every `interval`,
/// not twice as often (a read callback registered twice would).
fn assert_cadence(c: &Collectd, plugin: &str, interval: f64) {
    let id = wait_for("a metric", Duration::from_secs(10), || {
        metrics(c, plugin)
            .first()
            .map(|m| m["identifier"].as_str().unwrap().to_string())
    });
    let mut times: Vec<f64> = Vec::new();
    wait_for(
        &format!("5 values of {id}"),
        Duration::from_secs(20),
        || {
            let r = c.get(&format!("/v1/values/{id}"));
            if r.status == 200 {
                let v = r.json();
                // After a change of interval the last value read before it
                // may still be the latest for a moment; never after new ones.
                if v["interval"] != interval {
                    assert!(times.is_empty(), "{id}: interval {}", v["interval"]);
                    return None;
                }
                let t = v["time"].as_f64().unwrap();
                if times.last() != Some(&t) {
                    times.push(t);
                }
            }
            (times.len() >= 5).then_some(())
        },
    );
    // Not faster: over the window, at most one read more than the interval
    // allows. A second registration (or a shorter interval) reads twice as
    // often; one extra read is allowed, because after a late read (a loaded
    // machine) collectd reads again at once and then resumes its cadence.
    let times = &times[1..];
    let window = times[times.len() - 1] - times[0];
    assert!(
        times.len() as f64 <= window / interval + 2.0,
        "{id}: {} values in {window:.3} s, expected about one per {interval} s: {times:?}",
        times.len()
    );
    // Not slower: all gaps but the longest (one read may be late) about the
    // interval.
    let mut gaps: Vec<f64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    gaps.sort_by(f64::total_cmp);
    let second_longest = gaps[gaps.len() - 2];
    assert!(
        second_longest <= interval * 1.6,
        "{id}: values {second_longest:.3} s apart, expected about {interval} s: {times:?}"
    );
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// The whole life of a read plugin loaded through the API.
fn read_plugin_lifecycle(name: &str, config: Option<&str>, check: impl Fn(&[Value])) {
    let c = Collectd::start(setup(&[name]));
    let v = plugin(&c, name);
    assert_eq!(
        (v["state"].as_str(), v["origin"].as_str()),
        (Some("available"), None)
    );

    // Load, with a config block and an interval.
    eprintln!("{name}: load");
    let mut body = json!({ "interval": INTERVAL });
    if let Some(cfg) = config {
        body["config"] = json!(cfg);
    }
    let t = now();
    let v = ok(put(&c, name, body));
    assert_eq!(v["state"], "enabled");
    assert_eq!(v["origin"], "api");
    assert_eq!(v["interval"], INTERVAL);
    assert_eq!(v["config"], config.map_or(Value::Null, |s| json!(s)));
    assert_values_flow(&c, name, t);
    for m in metrics(&c, name) {
        assert_eq!(m["interval"], INTERVAL, "{m}");
    }
    check(&metrics(&c, name));

    // Disable: values stop.
    eprintln!("{name}: disable");
    let v = ok(post(&c, name, "disable"));
    assert_eq!(v["state"], "disabled");
    assert_values_stopped(&c, name, now() + 0.2);

    // Enable: values resume, once per interval.
    eprintln!("{name}: enable");
    let t = now();
    assert_eq!(ok(post(&c, name, "enable"))["state"], "enabled");
    assert_values_flow(&c, name, t);
    assert_cadence(&c, name, INTERVAL);

    // Restart.
    eprintln!("{name}: restart");
    let t = now();
    assert_eq!(ok(post(&c, name, "restart"))["state"], "enabled");
    assert_values_flow(&c, name, t);
    assert_cadence(&c, name, INTERVAL);
    check(&metrics(&c, name));

    // Reconfigure: a new interval (the config is kept).
    eprintln!("{name}: reconfigure");
    let v = ok(put(&c, name, json!({ "interval": NEW_INTERVAL })));
    assert_eq!(v["interval"], NEW_INTERVAL);
    assert_eq!(v["config"], config.map_or(Value::Null, |s| json!(s)));
    assert_cadence(&c, name, NEW_INTERVAL);
    check(&metrics(&c, name));

    // collectd restarts: the plugin comes back with its config and interval.
    eprintln!("{name}: collectd restarts");
    let c = c.restart();
    let v = plugin(&c, name);
    assert_eq!(v["state"], "enabled", "{v}");
    assert_eq!(v["origin"], "api");
    assert_eq!(v["interval"], NEW_INTERVAL);
    assert_eq!(v["config"], config.map_or(Value::Null, |s| json!(s)));
    assert_values_flow(&c, name, 0.0);
    assert_cadence(&c, name, NEW_INTERVAL);
    check(&metrics(&c, name));

    // Delete: values stop, and it stays gone after a restart.
    eprintln!("{name}: delete");
    let r = c.request("DELETE", &format!("/v1/plugins/{name}"), &[], b"");
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(plugin(&c, name)["state"], "available");
    assert_values_stopped(&c, name, now() + 0.2);
    let c = c.restart();
    let v = plugin(&c, name);
    assert_eq!(
        (v["state"].as_str(), v["origin"].as_str()),
        (Some("available"), None)
    );
    let_collectd_run(&c, 2);
    assert!(metrics(&c, name).is_empty());
    assert!(!in_listval(&c, name));
    assert!(!c.log().contains("panic"), "{}", c.log());
}

fn instances(ms: &[Value]) -> Vec<String> {
    let mut v: Vec<String> = ms
        .iter()
        .map(|m| m["plugin_instance"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v.dedup();
    v
}

#[test]
fn cpu() {
    read_plugin_lifecycle("cpu", None, |ms| {
        assert!(ms.iter().all(|m| m["type"] == "cpu"));
    });
}

#[test]
fn memory() {
    read_plugin_lifecycle("memory", None, |ms| {
        assert!(ms.iter().any(|m| m["type_instance"] == "used"));
    });
}

#[test]
fn uptime() {
    read_plugin_lifecycle("uptime", None, |ms| {
        assert_eq!(ms.len(), 1);
        assert_eq!(ms[0]["identifier"], format!("{HOSTNAME}/uptime/uptime"));
    });
}

#[test]
fn processes() {
    read_plugin_lifecycle("processes", None, |ms| {
        assert!(ms.iter().any(|m| m["type"] == "ps_state"));
    });
}

#[test]
fn interface_with_a_config_block() {
    // Only "lo": values read before the config was applied (all
    // interfaces) must not have leaked.
    read_plugin_lifecycle("interface", Some("Interface \"lo\""), |ms| {
        assert_eq!(instances(ms), ["lo"]);
    });
}

#[test]
fn df_with_a_mount_point() {
    read_plugin_lifecycle("df", Some("MountPoint \"/\""), |ms| {
        assert_eq!(instances(ms), ["root"]);
    });
}

#[test]
fn load_from_the_api() {
    // `load` is collectd.conf's in the other tests; here the API loads it.
    let c = Collectd::start(
        Setup {
            copy: vec!["load".into(), "uptime".into()],
            ..Setup::default()
        }
        .load(&["memory"]),
    );
    let loaded = |c: &Collectd| -> Vec<String> {
        serde_json::from_value(ok(c.get("/v1/capabilities"))["plugins"]["loaded"].clone()).unwrap()
    };
    assert!(!loaded(&c).contains(&"load".to_string()));
    let t = now();
    let v = ok(put(&c, "load", json!({ "interval": INTERVAL })));
    assert_eq!(v["state"], "enabled");
    assert!(loaded(&c).contains(&"load".to_string()));
    assert_values_flow(&c, "load", t);
    assert_cadence(&c, "load", INTERVAL);
    assert_eq!(ok(post(&c, "load", "disable"))["state"], "disabled");
    assert!(
        !loaded(&c).contains(&"load".to_string()),
        "disabled: not running"
    );
    let off = now() + 0.2;
    wait_for(
        "memory to read 3 more times",
        Duration::from_secs(10),
        || (newest(&c, "memory") > off + 2.0).then_some(()),
    );
    assert!(newest(&c, "load") <= off);
}

/// Reconfiguring: a plain option takes effect; a list option accumulates,
/// because collectd 5.12 cannot reset a loaded plugin's static state.
#[test]
fn reconfigure() {
    let c = Collectd::start(setup(&["cpu", "df"]));
    ok(put(
        &c,
        "cpu",
        json!({"interval": INTERVAL, "config": "ReportByCpu true"}),
    ));
    wait_for("per-CPU values", Duration::from_secs(10), || {
        instances(&metrics(&c, "cpu"))
            .contains(&"0".to_string())
            .then_some(())
    });
    let v = ok(put(&c, "cpu", json!({"config": "ReportByCpu false"})));
    assert_eq!(v["config"], "ReportByCpu false");
    assert_eq!(v["interval"], INTERVAL, "the interval is kept");
    // per-CPU metrics expire (Timeout 2 x 0.5 s); the total appears
    wait_for(
        "aggregated cpu values only",
        Duration::from_secs(15),
        || (instances(&metrics(&c, "cpu")) == [""]).then_some(()),
    );

    ok(put(
        &c,
        "df",
        json!({"interval": INTERVAL, "config": "MountPoint \"/\""}),
    ));
    wait_for("df root", Duration::from_secs(10), || {
        (instances(&metrics(&c, "df")) == ["root"]).then_some(())
    });
    ok(put(&c, "df", json!({"config": "MountPoint \"/dev\""})));
    wait_for("df of /dev", Duration::from_secs(10), || {
        instances(&metrics(&c, "df"))
            .contains(&"dev".to_string())
            .then_some(())
    });
    let_collectd_run(&c, 2);
    assert_eq!(
        instances(&metrics(&c, "df")),
        ["dev", "root"],
        "MountPoint accumulates"
    );
    assert!(!c.log().contains("panic"));
}

fn csv_lines(c: &Collectd) -> usize {
    lines_in(c, "csv")
}

fn csv2_lines(c: &Collectd) -> usize {
    lines_in(c, "csv2")
}

fn lines_in(c: &Collectd, data_dir: &str) -> usize {
    let dir = c.dir.join(format!("{data_dir}/{HOSTNAME}/load"));
    std::fs::read_dir(&dir)
        .map(|es| {
            es.filter_map(|e| e.ok())
                .filter_map(|e| std::fs::read_to_string(e.path()).ok())
                .map(|t| t.lines().count())
                .sum()
        })
        .unwrap_or(0)
}

fn write_log_json(c: &Collectd) -> usize {
    c.log().matches("\"plugin\":\"load\"").count()
}

fn write_log_graphite(c: &Collectd) -> usize {
    c.log()
        .matches(&format!("{HOSTNAME}.load.load.shortterm"))
        .count()
}

/// A write plugin's output grows while it is enabled and stops while it is
/// disabled.
/// `output` counts what the plugin wrote with `config`, `reconfigured`
/// what it writes after a reconfiguration to `new_config`.
fn write_plugin_lifecycle(
    name: &str,
    (config, output): (&str, fn(&Collectd) -> usize),
    (new_config, reconfigured): (&str, fn(&Collectd) -> usize),
) {
    let c = Collectd::start(setup(&[name]));
    ok(put(&c, name, json!({ "config": config })));
    let n = wait_for(&format!("{name} output"), Duration::from_secs(10), || {
        let n = output(&c);
        (n > 0).then_some(n)
    });
    wait_for("more output", Duration::from_secs(10), || {
        (output(&c) > n).then_some(())
    });

    ok(post(&c, name, "disable"));
    let_collectd_run(&c, 1);
    let n = output(&c);
    let_collectd_run(&c, 3);
    assert_eq!(output(&c), n, "{name} wrote while disabled");

    ok(post(&c, name, "enable"));
    wait_for("output again", Duration::from_secs(10), || {
        (output(&c) > n).then_some(())
    });
    ok(post(&c, name, "restart"));
    let n = output(&c);
    wait_for("output after restart", Duration::from_secs(10), || {
        (output(&c) > n).then_some(())
    });

    let v = ok(put(&c, name, json!({ "config": new_config })));
    assert_eq!(v["config"], new_config);
    wait_for("output as reconfigured", Duration::from_secs(10), || {
        (reconfigured(&c) > 0).then_some(())
    });
    let output = reconfigured;

    let c = c.restart();
    assert_eq!(plugin(&c, name)["state"], "enabled");
    let n = output(&c);
    wait_for(
        "output after collectd restarted",
        Duration::from_secs(10),
        || (output(&c) > n).then_some(()),
    );
    assert_eq!(
        c.request("DELETE", &format!("/v1/plugins/{name}"), &[], b"")
            .status,
        204
    );
    let_collectd_run(&c, 1);
    let n = output(&c);
    let_collectd_run(&c, 3);
    assert_eq!(output(&c), n, "{name} wrote after delete");
}

#[test]
fn csv() {
    write_plugin_lifecycle(
        "csv",
        ("DataDir \"csv\"", csv_lines),
        ("DataDir \"csv2\"", csv2_lines),
    );
}

#[test]
fn write_log() {
    write_plugin_lifecycle(
        "write_log",
        ("Format \"JSON\"", write_log_json),
        ("Format \"Graphite\"", write_log_graphite),
    );
}

#[test]
fn a_plugin_whose_init_fails() {
    let c = Collectd::start(setup(&["ping"]));
    let r = put(&c, "ping", json!({}));
    r.assert_error(422, "plugin_failed");
    let log: Vec<String> = serde_json::from_value(r.json()["error"]["log"].clone()).unwrap();
    assert!(
        log.iter()
            .any(|l| l.contains("No hosts have been configured")),
        "the collectd log lines of the attempt: {log:?}"
    );
    let v = plugin(&c, "ping");
    assert_eq!(v["state"], "failed");
    assert_eq!(v["error"]["log"], json!(log));
    assert!(metrics(&c, "ping").is_empty());
    // A failure is not a change to persist.
    let mut c = c.restart();
    assert_eq!(plugin(&c, "ping")["state"], "available");
    // The failed attempt leaves nothing behind that breaks shutdown.
    put(&c, "ping", json!({})).assert_error(422, "plugin_failed");
    let status = c.terminate(Duration::from_secs(10));
    assert!(status.success(), "{}", c.all_output());
}

#[test]
fn refusals_and_bad_input() {
    let c = Collectd::start(setup(&["cpu"]));
    for action in ["disable", "restart"] {
        post(&c, "rest", action).assert_error(409, "conflict");
    }
    c.request("DELETE", "/v1/plugins/rest", &[], b"")
        .assert_error(409, "conflict");
    put(&c, "rest", json!({})).assert_error(409, "conflict");
    assert_eq!(plugin(&c, "rest")["state"], "enabled");
    c.get("/v1/plugins/nosuchplugin")
        .assert_error(404, "not_found");
    post(&c, "nosuchplugin", "enable").assert_error(404, "not_found");
    c.get("/v1/plugins/..%2Fcpu")
        .assert_error(400, "invalid_name");
    c.get("/v1/plugins/cpu.so")
        .assert_error(400, "invalid_name");
    c.get("/v1/plugins/%00").assert_error(400, "invalid_name");
    c.get(&format!("/v1/plugins/{}", "a".repeat(65)))
        .assert_error(400, "invalid_name");
    c.get("/v1/plugins?state=bogus")
        .assert_error(400, "invalid_parameter");
    post(&c, "cpu", "disable").assert_error(409, "conflict");
    for config in [
        "</Plugin>\nWriteThreads 8\n<Plugin \"cpu\">",
        "</Plugin>\n<Plugin memory>\n</Plugin>\n<Plugin cpu>",
        "Include \"/etc/collectd/collectd.conf\"",
        "<Sub>\n  LoadPlugin memory\n</Sub>",
        "<Unclosed>",
    ] {
        put(&c, "cpu", json!({ "config": config })).assert_error(400, "invalid_config");
    }
    put(&c, "cpu", json!({"interval": 0})).assert_error(400, "invalid_body");
    put(&c, "cpu", json!({"interval": "fast"})).assert_error(400, "invalid_body");
    put(&c, "cpu", json!({"bogus": 1})).assert_error(400, "invalid_body");
    // None of it reached collectd.
    assert_eq!(plugin(&c, "cpu")["state"], "available");
    assert!(metrics(&c, "cpu").is_empty());
    let listed = ok(c.get("/v1/plugins?state=available"));
    assert!(listed["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == "cpu"));
    assert!(!c.log().contains("WriteThreads"));
}

/// Many disable/enable cycles while values flow: every operation succeeds,
/// other plugins' reads keep their pace, collectd stops cleanly.
#[test]
fn churn() {
    let mut c = Collectd::start(setup(&["cpu", "memory"]));
    ok(put(&c, "cpu", json!({"interval": INTERVAL})));
    ok(put(&c, "memory", json!({"interval": INTERVAL})));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let port = c.port;
    let watcher = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            // the times of load's values (collectd.conf, interval 1 s)
            let mut times: Vec<f64> = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let r = common::request(
                    port,
                    "GET",
                    &format!("/v1/values/{HOSTNAME}/load/load"),
                    &[],
                    b"",
                );
                if r.status == 200 {
                    let t = r.json()["time"].as_f64().unwrap();
                    if times.last() != Some(&t) {
                        times.push(t);
                    }
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            times
        })
    };
    for i in 0..200 {
        let p = if i % 2 == 0 { "cpu" } else { "memory" };
        assert_eq!(ok(post(&c, p, "disable"))["state"], "disabled");
        assert_eq!(ok(post(&c, p, "enable"))["state"], "enabled");
        if i % 10 == 0 {
            assert_eq!(ok(post(&c, p, "restart"))["state"], "enabled");
        }
    }
    let t = now();
    assert_values_flow(&c, "cpu", t);
    assert_values_flow(&c, "memory", t);
    let_collectd_run(&c, 3);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let times = watcher.join().unwrap();
    assert!(times.len() >= 3, "{times:?}");
    for w in times.windows(2) {
        assert!(w[1] - w[0] < 1.6, "load's reads were delayed: {times:?}");
    }
    let status = c.terminate(Duration::from_secs(10));
    assert!(status.success(), "{}", c.all_output());
    let log = c.log();
    assert!(!log.contains("panic"), "{log}");
    assert!(!log.contains("Value too old"), "duplicate reads: {log}");
}

/// SIGTERM while operations run back to back: collectd's teardown waits for
/// the operation in flight, no operation starts after it, collectd exits 0.
#[test]
fn sigterm_during_operations() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    for round in 1..=3 {
        let mut c = Collectd::start(setup(&["cpu"]));
        ok(put(&c, "cpu", json!({"interval": INTERVAL})));
        let answered = std::sync::Arc::new(AtomicUsize::new(0));
        let port = c.port;
        let counter = answered.clone();
        let hammer = std::thread::spawn(move || {
            for i in 0.. {
                let action = if i % 2 == 0 { "disable" } else { "enable" };
                let path = format!("/v1/plugins/cpu/{action}");
                match common::try_request(port, "POST", &path, &[], b"") {
                    Ok(r) if r.status == 200 => {
                        counter.fetch_add(1, Ordering::SeqCst);
                    }
                    // 503 once shutdown began; then the port closes
                    Ok(r) => assert_eq!(r.status, 503, "{}", r.text()),
                    Err(_) => return,
                }
            }
        });
        // SIGTERM after a different number of operations each round.
        wait_for("operations", Duration::from_secs(10), || {
            (answered.load(Ordering::SeqCst) >= 25 * round).then_some(())
        });
        let status = c.terminate(Duration::from_secs(10));
        hammer.join().unwrap();
        assert!(status.success(), "round {round}: {}", c.all_output());
        assert!(!c.log().contains("panic"), "{}", c.log());
    }
}

/// Bytes collectd has read with read(2) and friends (/proc/PID/io rchar).
fn bytes_read(pid: u32) -> u64 {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap();
    io.lines()
        .find_map(|l| l.strip_prefix("rchar: "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap()
}

/// Without a TypesDB line in collectd.conf, every cf_read would re-read
/// types.db (replacing data sets the write threads use without a lock). The
/// runtime files say `TypesDB "/dev/null"`: reconfiguring reads far fewer
/// bytes than types.db holds.
#[test]
fn runtime_config_does_not_reload_types_db() {
    let mut s = setup(&["df"]);
    s.types_db = false;
    let c = Collectd::start(s);
    let types_db = std::fs::metadata(common::TYPES_DB).unwrap().len();
    ok(put(
        &c,
        "df",
        json!({"interval": INTERVAL, "config": "MountPoint \"/\""}),
    ));
    for (i, mount) in ["/dev", "/", "/dev"].iter().enumerate() {
        let before = bytes_read(c.pid());
        let config = format!("MountPoint \"{mount}\"\n# {i}");
        ok(put(&c, "df", json!({ "config": config })));
        let read = bytes_read(c.pid()) - before;
        assert!(
            read < types_db / 2,
            "a reconfiguration read {read} bytes; types.db has {types_db}"
        );
    }
    assert_values_flow(&c, "df", now());
}
