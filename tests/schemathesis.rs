//! docs/openapi.json against the plugin inside a real collectd, checked by
//! schemathesis (the OpenAPI fuzzer, from PyPI; `tests/schemathesis-setup.sh`
//! installs it into target/schemathesis-venv). Every operation is called with
//! generated valid and invalid input, as admin, as reader, without
//! credentials and under RateLimit, and every check schemathesis has runs
//! (`--checks all`): no 5xx; every status code, Content-Type, header and body
//! documented; invalid input rejected, valid input accepted; 401 without
//! credentials; 405 with `Allow` for undocumented methods.
//!
//! schemathesis calls the state-changing operations too, with generated data:
//! it loads, reconfigures, disables, restarts and deletes plugins, dispatches
//! notifications, flushes, and writes thresholds and blacklist rules. That is
//! the point (bad input must get a JSON 4xx, never a 5xx or a crash), and it
//! stays inside this test's collectd: a temporary directory (BaseDir,
//! StateDir, and a PluginDir holding copies of only the plugins named below,
//! so nothing else can be loaded) and a loopback port.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::{Collectd, Setup, HOSTNAME};
use serde_json::Value;

const ADMIN: &str = "schemathesis-admin";
const READER: &str = "schemathesis-reader";
/// A fixed seed: the same requests on every run (up to what the answers
/// change in the stateful phase).
const SEED: &str = "20261124";
/// The longest one schemathesis run may take before the test gives up.
const RUN_LIMIT: Duration = Duration::from_secs(150);

/// schemathesis' configuration (written next to collectd's files). Nothing is
/// excluded: every operation and every check runs. What is adjusted, and why:
fn st_config() -> String {
    format!(
        r#"
# Real identifiers and plugin names, so that part of the requests reach
# existing objects instead of 404 (the rest are generated).
[dictionaries.hosts]
values = ["{HOSTNAME}"]
[dictionaries.plugins]
values = ["load", "memory"]
[dictionaries.types]
values = ["load", "memory-used"]
[dictionaries.plugin_names]
values = ["cpu", "load", "memory", "uptime", "users", "rest"]

[[operations]]
include-operation-id = "getValue"
parameters = {{ "path.host" = {{ dictionary = "hosts", probability = 0.8 }}, "path.plugin" = {{ dictionary = "plugins", probability = 0.8 }}, "path.type" = {{ dictionary = "types", probability = 0.8 }} }}

[[operations]]
include-operation-id = ["getPlugin", "putPlugin", "deletePlugin", "enablePlugin", "disablePlugin", "restartPlugin"]
parameters = {{ "path.name" = {{ dictionary = "plugin_names", probability = 0.7 }} }}

# positive_data_acceptance expects schema-valid requests to succeed (or
# 401/403/404/409). Some operations rightly refuse schema-valid input with
# 400 or 422, for rules the document states but JSON Schema cannot express;
# there those codes are accepted too (and still must be documented, with a
# JSON error body).
# - PUT blacklist/threshold: the body's id must equal the path's; a
#   threshold needs a bound and min <= max, plugin_instance needs plugin; a
#   rule needs a field to match and a valid regex (400).
[[operations]]
include-operation-id = ["putBlacklistRule", "putThreshold"]
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409", "429", "5xx"]

# - PUT plugin: the config text is parsed and checked by collectd's own
#   parser (400) and handed to the plugin, which may refuse it or fail its
#   init (422).
[[operations]]
include-operation-id = "putPlugin"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409", "422", "429", "5xx"]

# - enable, restart: the plugin's init may fail (422).
[[operations]]
include-operation-id = ["enablePlugin", "restartPlugin"]
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409", "422", "429", "5xx"]

# - identifiers and notification fields: collectd's limits are in bytes
#   (127 per name, 255 per message), JSON Schema's maxLength counts
#   characters; flush also allows at most 10000 plugin x identifier pairs.
[[operations]]
include-operation-id = ["getValue", "flush", "postNotification"]
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409", "429", "5xx"]

# The notification stream never ends: schemathesis reads it until its first
# event or for a quarter of a second, and validates the events it got.
# allow-extra-parameters = false: negative tests would otherwise add an
# unknown request header next to Last-Event-ID and expect a 4xx, but HTTP
# servers must ignore headers they do not know.
[[operations]]
include-operation-id = "streamNotifications"
request-timeout = 0.25
max-stream-events = 1
generation.allow-extra-parameters = false
"#
    )
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The `st` program of the venv that tests/schemathesis-setup.sh builds.
fn st() -> PathBuf {
    let st = repo().join("target/schemathesis-venv/bin/st");
    let works = Command::new(&st)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        works,
        "{} is missing or does not run: run tests/schemathesis-setup.sh first \
         (it installs schemathesis from PyPI into target/schemathesis-venv; \
         it needs python3 and python3-venv)",
        st.display()
    );
    st
}

/// The number of operations docs/openapi.json describes.
fn documented_operations() -> usize {
    let text = std::fs::read_to_string(repo().join("docs/openapi.json")).unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|item| item.as_object().unwrap().keys())
        .filter(|k| ["get", "put", "post", "delete", "patch"].contains(&k.as_str()))
        .count()
}

fn collectd() -> Collectd {
    collectd_with("")
}

/// `rest`: more lines for `<Plugin rest>`.
fn collectd_with(rest: &str) -> Collectd {
    // Fail fast, before starting collectd, when the venv is missing.
    st();
    let mut setup = Setup::default()
        .load(&["cpu", "load", "memory"])
        .interval(0.5)
        .rest(&format!("AuthToken \"admin\" \"{ADMIN}\""))
        .rest(&format!("AuthToken \"reader\" \"{READER}\""))
        .rest(rest);
    // Loadable through the API, not loaded by collectd.conf.
    setup.copy = vec!["uptime".into(), "users".into()];
    Collectd::start(setup)
}

/// Runs schemathesis against `c` with the given credential header (if any)
/// and up to `examples` generated test cases per operation and phase;
/// panics with its whole output unless every check passed.
fn run(c: &Collectd, name: &str, header: Option<(&str, &str)>, examples: u32) -> String {
    let st = st();
    let config = c.dir.join("schemathesis.toml");
    std::fs::write(&config, st_config()).unwrap();
    let out_path = c.dir.join(format!("schemathesis-{name}.txt"));
    let out = std::fs::File::create(&out_path).unwrap();
    let mut cmd = Command::new(st);
    cmd.arg("--config-file")
        .arg(&config)
        .arg("run")
        .arg(repo().join("docs/openapi.json"))
        .arg("--url")
        .arg(format!("http://127.0.0.1:{}", c.port))
        .args(["--checks", "all"])
        .args(["--seed", SEED])
        .args(["--max-examples", &examples.to_string()])
        .args(["--workers", "1"])
        .args(["--request-timeout", "10"])
        .args(["--generation-database", "none"])
        .arg("--no-color");
    if let Some((k, v)) = header {
        cmd.arg("--header").arg(format!("{k}: {v}"));
    }
    // Its working files (.hypothesis, .schemathesis) go with collectd's.
    let mut child = cmd
        .current_dir(&c.dir)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::from(out.try_clone().unwrap()))
        .stderr(Stdio::from(out))
        .spawn()
        .expect("start schemathesis");
    let start = Instant::now();
    let status: Option<ExitStatus> = loop {
        if let Some(s) = child.try_wait().expect("wait for schemathesis") {
            break Some(s);
        }
        if start.elapsed() > RUN_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = std::fs::read_to_string(&out_path).unwrap_or_default();
    let took = start.elapsed();
    match status {
        None => panic!(
            "schemathesis ({name}) did not finish within {RUN_LIMIT:?}:\n{output}\n{}",
            c.all_output()
        ),
        Some(s) if !s.success() => panic!(
            "schemathesis ({name}) failed ({s}) after {took:.1?}:\n{output}\n{}",
            c.all_output()
        ),
        Some(_) => {}
    }
    let ops = documented_operations();
    assert!(
        output.contains(&format!("Selected: {ops}/{ops}"))
            && output.contains(&format!("Tested: {ops}")),
        "schemathesis ({name}) did not test all {ops} operations:\n{output}"
    );
    // For the record (cargo test --nocapture): the summary of the run.
    let summary = output
        .lines()
        .skip_while(|l| !l.contains("SUMMARY"))
        .collect::<Vec<_>>()
        .join("\n");
    eprintln!("schemathesis ({name}) passed in {took:.1?}\n{summary}");
    output
}

/// Each plugin's name and state, as the API reports them.
fn plugin_states(c: &Collectd) -> Vec<String> {
    let r = c.request(
        "GET",
        "/v1/plugins",
        &[("Authorization", &format!("Bearer {ADMIN}"))],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| format!("{}: {} ({})", p["name"], p["state"], p["origin"]))
        .collect()
}

/// As admin: everything, with valid and invalid input, including the
/// stateful phase (sequences of calls linked by the ids they return).
#[test]
fn admin_requests_match_the_document() {
    let c = collectd();
    let before = plugin_states(&c);
    run(
        &c,
        "admin",
        Some(("Authorization", &format!("Bearer {ADMIN}"))),
        25,
    );
    // collectd and the plugin survived and still serve.
    assert!(!c.exited(), "collectd died:\n{}", c.all_output());
    assert_eq!(c.get("/v1/health").status, 200);
    // The panic hook logs "panic at <place>"; the fuzzing may disable
    // logfile, so look at stderr too.
    assert!(!c.all_output().contains("panic at "), "{}", c.all_output());
    // What the fuzzing did to collectd's plugins, for the record.
    eprintln!(
        "plugins before: {before:?}\nplugins after:  {:?}",
        plugin_states(&c)
    );
}

/// As reader, with the Keystone-style X-Auth-Token header: every GET
/// answers, every change is refused with a documented 403.
#[test]
fn reader_requests_match_the_document() {
    let c = collectd();
    let out = run(&c, "reader", Some(("X-Auth-Token", READER)), 10);
    assert!(out.contains("403 Forbidden"), "{out}");
    assert!(!c.exited(), "collectd died:\n{}", c.all_output());
}

/// Without credentials: a documented 401 (with `WWW-Authenticate: Bearer`)
/// everywhere except GET /v1/health.
#[test]
fn requests_without_credentials_match_the_document() {
    let c = collectd();
    let out = run(&c, "anonymous", None, 10);
    assert!(out.contains("401 Unauthorized"), "{out}");
    assert!(!c.exited(), "collectd died:\n{}", c.all_output());
}

/// With RateLimit: schemathesis sends faster than 20 requests per second on
/// its connection, so most answers are the documented 429 (JSON error body,
/// Retry-After).
#[test]
fn rate_limited_requests_match_the_document() {
    let c = collectd_with("RateLimit 20");
    let out = run(
        &c,
        "rate-limited",
        Some(("Authorization", &format!("Bearer {ADMIN}"))),
        5,
    );
    assert!(out.contains("429"), "no request was rate limited:\n{out}");
    assert!(!c.exited(), "collectd died:\n{}", c.all_output());
}
