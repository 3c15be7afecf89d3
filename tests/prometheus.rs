//! GET /metrics: Prometheus text, named and labelled as write_prometheus
//! names and labels the same values in the same collectd, and accepted by
//! promtool.

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{free_port, request, wait_for, Collectd, Setup};

/// Series names with their labels (no values, no timestamps).
fn series(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split_once('}').map_or(l, |(s, _)| s).to_string())
        .collect()
}

fn families(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(String::from)
        .collect()
}

#[test]
fn metrics_like_write_prometheus_and_promtool_accepts_them() {
    assert!(
        std::path::Path::new("/usr/bin/promtool").exists(),
        "promtool is missing: apt-get install prometheus"
    );
    let wp = free_port();
    let c = Collectd::start(
        Setup::default()
            .load(&[
                "cpu",
                "memory",
                "load",
                "interface",
                "df",
                "uptime",
                "write_prometheus",
            ])
            .extra(&format!(
                "<Plugin write_prometheus>\n  Port \"{wp}\"\n</Plugin>"
            )),
    );
    // Both have seen a full round of every plugin (cpu needs two reads).
    let (ours, theirs) = wait_for("both expositions", Duration::from_secs(20), || {
        let ours = c.get("/metrics");
        let theirs = request(wp, "GET", "/metrics", &[], b"");
        let (o, t) = (ours.text(), theirs.text());
        let full = |s: &str| s.contains("collectd_cpu_total{") && s.contains("collectd_uptime{");
        (full(&o) && full(&t) && series(&o) == series(&t)).then_some((ours, theirs))
    });
    assert_eq!(ours.status, 200);
    assert_eq!(
        ours.header("content-type"),
        Some("text/plain; version=0.0.4")
    );
    assert_eq!(
        families(&ours.text()),
        families(&theirs.text()),
        "same families, types, order"
    );
    assert!(series(&ours.text()).len() > 20);

    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(&ours.body)
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // Filters work as on /v1/values; unknown parameters are refused.
    let load = c.get("/metrics?plugin=load").text();
    assert_eq!(families(&load).len(), 3, "{load}");
    c.get("/metrics?bogus=1")
        .assert_error(400, "unknown_parameter");
}
