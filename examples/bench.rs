//! Benchmark of collectd-rest: the value store alone, then the plugin inside
//! a real collectd next to collectd's own ways of reading every value.
//!
//! Run it from the repository (release build; Part B needs the built
//! librest.so in target/release/deps, or `$REST_PLUGIN_SO`):
//!
//! ```text
//! cargo build --release && cargo run --release --example bench
//! cargo run --release --example bench -- --sizes 1000,10000,100000 --part all
//! ```
//!
//! Options: `--sizes N,N,...` (default 1000,10000,100000) and
//! `--part a|b|c|all` (default all). The report goes to stdout; progress
//! lines go to stderr. The default run takes 1-2 minutes (most of it is
//! waiting for collectd-tg to fill collectd, about 10-25 s per size).
//!
//! # Part A: the store alone, in this process
//!
//! Metrics are gauges named like collectd-tg's (`hostNNNN/pluginNNN/gauge-tiN`),
//! built with borrowed fields, as collectd's write callback hands them over.
//!
//! 1. **new metric**: ns per `ValueStore::update` of a metric the store has
//!    not seen, inserting N distinct metrics into an empty store (median and
//!    best of several repetitions, a fresh store each time).
//! 2. **update**: ns per `update` of a metric already present, N metrics
//!    updated round-robin with increasing times for about 1 s.
//! 3. **writers vs a full read**: 100000 metrics; 2 writer threads update
//!    them in a loop and time every single `update` with `Instant` (so the
//!    ~20-40 ns of two clock reads are included). First 1.5 s with no
//!    reader (baseline), then 1.5 s while the main thread does what
//!    `GET /v1/values` does over and over: a full `snapshot(.., true)` and
//!    its serialization to JSON with `JsonOut::value_list`.
//!    A third 1.5 s phase is a control: the main thread keeps a CPU busy
//!    without touching the store, so stalls it shows are scheduling or
//!    machine noise, not lock waits.
//!    Reported: writer max / p99.9 / p99.99 latency in µs and the number of
//!    updates over 100 µs and over 1 ms, per phase; the reader's snapshot
//!    ms, serialize ms and JSON bytes, and the snapshot time divided by the
//!    64 shards (an upper bound on the average time the reader holds one
//!    shard lock, which is what a writer can wait for). Design target: a
//!    full read never blocks a writer for more than 1 ms. On a machine with
//!    fewer than 3 CPUs, 2 writers + 1 reader cannot all run at once, so a
//!    writer's latency then also contains time slices lost to the
//!    scheduler; the three phases are then repeated with 1 writer, which
//!    leaves lock waits as the main difference between the phases.
//! 4. **memory**: VmRSS of this process before and after filling a fresh
//!    store with 100000 metrics (names prepared beforehand), per metric.
//!
//! # Part B: inside a real collectd, side by side with collectd's peers
//!
//! For each size N, one fresh `collectd -f` (built by tests/common) loads
//! network, write_prometheus, unixsock and rest, with Interval 10 and
//! Timeout 2. `collectd-tg -n N -i 10` (package collectd-utils) sends N
//! value lists (1 gauge or derive each) over UDP, each once per 10 s, for
//! the whole measurement. Once GET /v1/metrics lists N collectd-tg metrics
//! and write_prometheus's /metrics has N collectd-tg samples, one warm-up
//! round and then 7 rounds of these requests run, interleaved:
//!
//! - ours: `GET /v1/values` and `GET /v1/metrics` (full, no filter);
//! - peer: write_prometheus `GET /metrics` (full);
//! - peer: unixsock `LISTVAL` (raw socket, status line and N lines).
//!
//! Each is timed from connect to the last byte of the body (HTTP/1.1,
//! `Connection: close`); parsing happens after the clock stops. Reported:
//! min and median ms, body bytes, items (metrics, samples or lines);
//! collectd's CPU ms per request (utime+stime of the collectd process
//! around each request, minus the background rate of receiving collectd-tg's
//! traffic measured in an idle 3 s window before; 10 ms clock ticks, so
//! small values are noise); collectd's VmRSS before and after the fill;
//! collectd's CPU seconds over the whole request window; and the ratios
//! ours/peer of the medians: /v1/values vs /metrics, /v1/metrics vs LISTVAL
//! (above 1 means ours is slower).
//!
//! Part B panics with the reason if collectd, collectd-tg or
//! write_prometheus.so is missing, or if the fill does not complete.
//!
//! # Part C: plugin operations
//!
//! One collectd with `load` from collectd.conf (interval 1 s); 8 plugins are
//! loaded through the API (PUT), then 1000 rounds of disable, enable and
//! restart run back to back. Reported: p50/p99/max latency of each kind of
//! operation from request to 200, and the largest gap between two reads of
//! `load` meanwhile (1 s means the churn delayed no read).

#[path = "../tests/common/mod.rs"]
mod common;

use std::borrow::Cow;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rest::http::json::JsonOut;
use rest::model::{DataSet, DataSource, DsType, RawValue, ValueListRef};
use rest::store::{Filter, Update, ValueStore};

use common::{Collectd, Setup};

const DEFAULT_SIZES: [usize; 3] = [1000, 10_000, 100_000];
/// HistorySize of the stores measured (the plugin's default).
const HISTORY: usize = 120;
/// cdtime_t of 10 s: the interval of every value list here.
const INTERVAL: u64 = 10 << 30;
/// Metrics in the concurrency and memory figures.
const BIG: usize = 100_000;
/// ValueStore's shard count (SHARDS in src/store/values.rs).
/// Entries a full read copies per hold of a shard lock (store/values.rs).
const READ_BATCH: usize = 128;
const PHASE: Duration = Duration::from_millis(1500);
const RUNS: usize = 7;

const COLLECTD_TG: &str = "/usr/bin/collectd-tg";
const WRITE_PROMETHEUS_SO: &str = "/usr/lib/collectd/write_prometheus.so";
const NETWORK_SO: &str = "/usr/lib/collectd/network.so";

#[derive(Clone, Copy, PartialEq)]
enum Part {
    A,
    B,
    C,
    All,
}

fn usage() -> ! {
    eprintln!("usage: cargo run --release --example bench -- [--sizes N,N,...] [--part a|b|c|all]");
    std::process::exit(2)
}

fn parse_args() -> (Vec<usize>, Part) {
    let mut sizes = DEFAULT_SIZES.to_vec();
    let mut part = Part::All;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let (key, inline) = match a.split_once('=') {
            Some((k, v)) => (k.to_string(), Some(v.to_string())),
            None => (a.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .unwrap_or_else(|| usage())
        };
        match key.as_str() {
            "--sizes" => {
                sizes = value()
                    .split(',')
                    .filter(|s| !s.trim().is_empty())
                    .map(|s| match s.trim().parse::<usize>() {
                        Ok(n) if n > 0 => n,
                        _ => {
                            eprintln!("--sizes: {s:?} is not a positive number");
                            usage()
                        }
                    })
                    .collect();
                if sizes.is_empty() {
                    usage();
                }
            }
            "--part" => {
                part = match value().to_ascii_lowercase().as_str() {
                    "a" => Part::A,
                    "b" => Part::B,
                    "c" => Part::C,
                    "all" => Part::All,
                    other => {
                        eprintln!("--part: {other:?} is not a, b, c or all");
                        usage()
                    }
                }
            }
            "-h" | "--help" => usage(),
            other => {
                eprintln!("unknown argument {other:?}");
                usage()
            }
        }
    }
    (sizes, part)
}

fn main() {
    let (sizes, part) = parse_args();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("collectd-rest benchmark");
    println!(
        "sizes {:?}, part {}, {} CPUs, {}",
        sizes,
        match part {
            Part::A => "a",
            Part::B => "b",
            Part::C => "c",
            Part::All => "all",
        },
        cpus,
        cpu_model()
    );
    if matches!(part, Part::A | Part::All) {
        part_a(&sizes, cpus);
    }
    if matches!(part, Part::B | Part::All) {
        part_b(&sizes);
    }
    if matches!(part, Part::C | Part::All) {
        part_c();
    }
}

/// PART C: plugin operations inside a real collectd (8 plugins loaded
/// through the API, then 1000 rounds of disable/enable/restart). Latency of each
/// operation from request to 200 (HTTP, control thread, collectd's calls,
/// the plugin's own init, and the wait for collectd's read threads to be
/// between reads), and whether a churn of operations delays the reads of
/// another plugin (`load`, from collectd.conf, every 1 s).
fn part_c() {
    println!();
    println!("PART C: plugin operations inside one real collectd");
    let fresh = [
        "cpu",
        "memory",
        "uptime",
        "processes",
        "interface",
        "df",
        "entropy",
        "contextswitch",
    ];
    let mut setup = common::Setup::default().load(&["load"]);
    setup.copy = fresh.iter().map(|s| s.to_string()).collect();
    let c = common::Collectd::start(setup);
    let json = [("Content-Type", "application/json")];
    let timed = |method: &str, path: &str, body: &str| -> f64 {
        let t = Instant::now();
        let r = c.request(method, path, &json, body.as_bytes());
        let ms = t.elapsed().as_secs_f64() * 1e3;
        assert_eq!(r.status, 200, "{method} {path}: {}", r.text());
        ms
    };
    // The first load of each plugin (a plugin is loaded once per process).
    let mut load: Vec<f64> = fresh
        .iter()
        .map(|p| timed("PUT", &format!("/v1/plugins/{p}"), "{\"interval\": 1}"))
        .collect();
    // Read pacing of `load` while operations churn, watched from a thread.
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let port = c.port;
    let watcher = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut times: Vec<f64> = Vec::new();
            let id = format!("/v1/values/{}/load/load", common::HOSTNAME);
            while !stop.load(Ordering::Relaxed) {
                let r = common::request(port, "GET", &id, &[], b"");
                if r.status == 200 {
                    let t = r.json()["time"].as_f64().unwrap_or(0.0);
                    if times.last() != Some(&t) {
                        times.push(t);
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            times
        })
    };
    let (mut disable, mut enable, mut restart) = (Vec::new(), Vec::new(), Vec::new());
    let started = Instant::now();
    for round in 0..1000 {
        let p = fresh[round % fresh.len()];
        disable.push(timed("POST", &format!("/v1/plugins/{p}/disable"), ""));
        enable.push(timed("POST", &format!("/v1/plugins/{p}/enable"), ""));
        restart.push(timed("POST", &format!("/v1/plugins/{p}/restart"), ""));
    }
    let churn_s = started.elapsed().as_secs_f64();
    // Let load read a few more times after the churn.
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    let times = watcher.join().expect("watcher");
    println!(
        "  {} plugins loaded, then 1000 rounds of disable/enable/restart in {churn_s:.1} s",
        fresh.len()
    );
    println!("  operation          n    p50 ms    p99 ms    max ms");
    for (name, v) in [
        ("load (PUT)", &mut load),
        ("disable", &mut disable),
        ("enable", &mut enable),
        ("restart", &mut restart),
    ] {
        v.sort_by(f64::total_cmp);
        let pct = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
        println!(
            "  {name:<14} {:>5} {:>9.2} {:>9.2} {:>9.2}",
            v.len(),
            pct(0.5),
            pct(0.99),
            v[v.len() - 1]
        );
    }
    let gaps: Vec<f64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    let max_gap = gaps.iter().copied().fold(0.0, f64::max);
    println!(
        "  load (interval 1 s) during the churn: {} reads, largest gap between two reads {:.3} s",
        times.len(),
        max_gap
    );
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

fn progress(msg: &str) {
    eprintln!("[bench] {msg}");
}

// ---------------------------------------------------------------- Part A --

/// The identifier fields of one metric (type "gauge", no plugin instance).
struct Name {
    host: String,
    plugin: String,
    type_instance: String,
}

fn names(n: usize) -> Vec<Name> {
    (0..n)
        .map(|i| Name {
            host: format!("host{:04}", i % 1000),
            plugin: format!("plugin{:03}", (i / 1000) % 20),
            type_instance: format!("ti{i}"),
        })
        .collect()
}

fn gauge_set() -> DataSet {
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

fn vl<'a>(n: &'a Name, values: &'a [RawValue], time: u64) -> ValueListRef<'a> {
    ValueListRef {
        host: Cow::Borrowed(&n.host),
        plugin: Cow::Borrowed(&n.plugin),
        plugin_instance: Cow::Borrowed(""),
        type_: Cow::Borrowed("gauge"),
        type_instance: Cow::Borrowed(&n.type_instance),
        values,
        time,
        interval: INTERVAL,
        meta: None,
    }
}

fn fill(store: &ValueStore, ds: &DataSet, names: &[Name]) {
    let v = [RawValue::gauge(1.0)];
    for n in names {
        assert_eq!(store.update(ds, vl(n, &v, INTERVAL)), Update::New);
    }
}

fn part_a(sizes: &[usize], cpus: usize) {
    let ds = gauge_set();
    let all = names(sizes.iter().copied().max().unwrap_or(0).max(BIG));

    // Memory first, while the heap has not yet been grown (and freed) by
    // the other figures: freed memory that malloc keeps would hide growth.
    progress("A4: memory of 100000 metrics");
    let mem = {
        trim_heap();
        let before = vm_rss_kb("self");
        // The latest-value cache alone: a history of one sample.
        let store = ValueStore::new(2, 1);
        fill(&store, &ds, &all[..BIG]);
        let after = vm_rss_kb("self");
        assert_eq!(store.len(), BIG);
        (before, after)
    };

    println!();
    println!("PART A: the store alone (in-process, gauge metrics, 1 value each)");

    println!();
    println!("A1. new metric: insert N distinct metrics into an empty store");
    println!(
        "  {:>8}  {:>12}  {:>12}  {:>5}",
        "N", "median ns", "best ns", "reps"
    );
    for &n in sizes {
        progress(&format!("A1: insert {n}"));
        let reps = (300_000 / n).clamp(3, 100);
        let mut per = Vec::with_capacity(reps);
        for _ in 0..reps {
            let store = ValueStore::new(2, HISTORY);
            let v = [RawValue::gauge(1.0)];
            let mut not_new = 0usize;
            let t0 = Instant::now();
            for name in &all[..n] {
                if store.update(&ds, vl(name, &v, INTERVAL)) != Update::New {
                    not_new += 1;
                }
            }
            let dt = t0.elapsed();
            assert_eq!(not_new, 0, "inserts that were not new");
            assert_eq!(store.len(), n);
            per.push(dt.as_nanos() as f64 / n as f64);
        }
        let (min, med) = min_median(&mut per);
        println!("  {n:>8}  {med:>12.0}  {min:>12.0}  {reps:>5}");
    }

    println!();
    println!("A2. update: N metrics present, updated round-robin with increasing times for ~1 s");
    println!("  {:>8}  {:>12}  {:>12}", "N", "ns/update", "updates");
    for &n in sizes {
        progress(&format!("A2: update {n}"));
        let store = ValueStore::new(2, HISTORY);
        fill(&store, &ds, &all[..n]);
        let v = [RawValue::gauge(2.0)];
        let mut count = 0u64;
        let mut round = 1u64;
        let mut not_updated = 0u64;
        let t0 = Instant::now();
        let elapsed = 'run: loop {
            round += 1;
            for (i, name) in all[..n].iter().enumerate() {
                if store.update(&ds, vl(name, &v, round * INTERVAL)) != Update::Updated {
                    not_updated += 1;
                }
                count += 1;
                if i % 4096 == 4095 && t0.elapsed() >= Duration::from_secs(1) {
                    break 'run t0.elapsed();
                }
            }
            if t0.elapsed() >= Duration::from_secs(1) {
                break t0.elapsed();
            }
        };
        assert_eq!(not_updated, 0, "updates that did not update");
        let ns = elapsed.as_nanos() as f64 / count as f64;
        println!("  {n:>8}  {ns:>12.0}  {count:>12}");
    }

    println!();
    println!(
        "A3. writers vs a full read ({BIG} metrics; every update timed; {:.1} s per phase)",
        PHASE.as_secs_f64()
    );
    let store = ValueStore::new(2, HISTORY);
    fill(&store, &ds, &all[..BIG]);
    let big = &all[..BIG];
    let mut variants = vec![2usize];
    if cpus < 3 {
        variants.push(1);
    }
    let mut worst = Vec::new();
    let mut reader_stats = None;
    // Times must keep increasing across phases and variants.
    let mut next_round = 1u64;
    for writers in variants {
        let mut rounds = vec![next_round; writers];
        progress(&format!("A3: {writers} writer(s), no reader"));
        let (base, _) = phase(&store, &ds, big, &mut rounds, Reader::None);
        progress(&format!("A3: {writers} writer(s), full reads"));
        let (loaded, reader) = phase(&store, &ds, big, &mut rounds, Reader::Full);
        progress(&format!("A3: {writers} writer(s), control"));
        let (control, _) = phase(&store, &ds, big, &mut rounds, Reader::Spin);
        next_round = rounds.iter().copied().max().unwrap_or(0) + 1;
        println!(
            "  {writers} writer thread(s){}:",
            if writers == 2 && cpus < 3 {
                format!(" (only {cpus} CPUs: writers also wait for a CPU)")
            } else if writers == 1 {
                " (fits beside the reader on 2 CPUs)".into()
            } else {
                String::new()
            }
        );
        println!(
            "    {:<18} {:>10} {:>9} {:>9} {:>9} {:>9} {:>8}",
            "", "updates", "p99.9 µs", "p99.99µs", "max µs", ">100 µs", ">1 ms"
        );
        for (label, h) in [
            ("no reader", &base),
            ("with full reads", &loaded),
            ("control: CPU only", &control),
        ] {
            println!(
                "    {:<18} {:>10} {:>9.1} {:>9.1} {:>9.1} {:>9} {:>8}",
                label,
                h.total,
                h.quantile(0.999) as f64 / 1e3,
                h.quantile(0.9999) as f64 / 1e3,
                h.max as f64 / 1e3,
                h.over_100us,
                h.over_1ms
            );
        }
        worst.push((writers, base.max.max(control.max), loaded.max));
        println!(
            "    longest hold of one shard lock by a full read: {:.0} µs",
            reader.max_lock_hold_us
        );
        reader_stats.get_or_insert(reader);
    }
    if let Some(r) = reader_stats {
        let mut snap = r.snapshot_ms.clone();
        let mut ser = r.serialize_ms.clone();
        let (smin, smed) = min_median(&mut snap);
        let (zmin, zmed) = min_median(&mut ser);
        println!(
            "  reader (2-writer run): {} full reads; snapshot {smed:.1} ms median ({smin:.1} best), \
             serialize {zmed:.1} ms median ({zmin:.1} best), {} JSON bytes ({:.0} per metric)",
            r.reads,
            r.bytes,
            r.bytes as f64 / BIG as f64
        );
        println!(
            "  a full read copies at most {READ_BATCH} entries per hold of a shard lock: a writer \
             waits at most one hold for it, unless the scheduler preempts the reader while it \
             holds it (with 2 writers on 2 CPUs it will: compare the 1-writer run)"
        );
    }
    for (writers, quiet, loaded) in worst {
        println!(
            "  design target (a full read blocks a writer <= 1 ms), {writers} writer(s): \
             worst update {:.3} ms with full reads, {:.3} ms without the store being read: {}",
            loaded as f64 / 1e6,
            quiet as f64 / 1e6,
            if loaded <= 1_000_000 {
                "met"
            } else if quiet > 1_000_000 {
                "NOT met here, but stalls > 1 ms also happen when nothing reads the store \
                 (scheduling / machine noise, not only locks)"
            } else {
                "NOT met"
            }
        );
    }

    println!();
    println!("A4. memory (VmRSS of this process around filling a fresh store)");
    let (before, after) = mem;
    println!(
        "  {BIG} metrics, latest values only (HistorySize 1): {before} kB before, {after} kB \
         after, {:.0} bytes per metric",
        (after.saturating_sub(before) * 1024) as f64 / BIG as f64
    );
    history_memory(&ds, &all);
    rule_costs(&ds, &all[..BIG]);
}

/// A5: what the history costs per stored sample, full rings.
fn history_memory(ds: &DataSet, all: &[Name]) {
    const METRICS: usize = 10_000;
    progress("A5: history memory");
    let store = ValueStore::new(2, HISTORY);
    let v = [RawValue::gauge(1.0)];
    for round in 1..=HISTORY as u64 {
        for n in &all[..METRICS] {
            store.update(ds, vl(n, &v, round * INTERVAL));
        }
    }
    let (bytes, samples) = store.history_bytes();
    println!();
    println!("A5. history: {METRICS} metrics x {HISTORY} samples (one gauge each)");
    println!(
        "  {samples} samples in {} kB of rings: {:.1} bytes per stored sample",
        bytes / 1024,
        bytes as f64 / samples as f64
    );
}

/// A6: the write path's cost per value with 1000 thresholds and 100
/// blacklist rules (none of which drops these values), against none: the
/// blacklist match the pre-cache filter runs, then the store's update with
/// its threshold check.
fn rule_costs(ds: &DataSet, names: &[Name]) {
    use rest::rules::blacklist::{self, Blacklist, Rule};
    use rest::rules::thresholds::Threshold;
    progress("A6: rule costs");
    let run = |store: &ValueStore, bl: &Blacklist| -> f64 {
        fill(store, ds, names);
        let v = [RawValue::gauge(2.0)];
        let mut count = 0u64;
        let t0 = Instant::now();
        for round in 2u64.. {
            for n in names {
                let f = [&*n.host, &*n.plugin, "", "gauge", &*n.type_instance];
                if !blacklist::matches(bl, f) {
                    store.update(ds, vl(n, &v, round * INTERVAL));
                }
                count += 1;
            }
            if t0.elapsed() >= Duration::from_secs(2) {
                break;
            }
        }
        t0.elapsed().as_nanos() as f64 / count as f64
    };
    let plain = run(&ValueStore::new(2, HISTORY), &Blacklist::default());

    let store = ValueStore::new(2, HISTORY);
    for h in 0..1000 {
        let t: Threshold = serde_json::from_value(serde_json::json!({
            "host": format!("host{h:04}"), "type": "gauge", "warning_max": 1e12, "failure_max": 1e15
        }))
        .expect("threshold");
        store
            .thresholds
            .put(&format!("t{h}"), t, |_| Ok(()))
            .expect("put");
    }
    let bl = Blacklist::default();
    for i in 0..100 {
        let rule = if i < 90 {
            Rule {
                plugin: Some(format!("other{i}")),
                type_instance: Some("x".into()),
                ..Rule::default()
            }
        } else {
            Rule {
                host: Some(format!("/^web-{i}-[0-9]+$/")),
                ..Rule::default()
            }
        };
        bl.put(&format!("b{i}"), rule, |_| Ok(())).expect("put");
    }
    let ruled = run(&store, &bl);
    println!();
    println!(
        "A6. write path with 1000 thresholds and 100 blacklist rules ({} metrics)",
        names.len()
    );
    println!("  no rules:   {plain:>7.0} ns per value");
    println!(
        "  with rules: {ruled:>7.0} ns per value ({:.2}x; the target is at most 2x)",
        ruled / plain
    );
}

/// What the main thread does during a phase of A3.
#[derive(Clone, Copy, PartialEq)]
enum Reader {
    /// Sleeps: the writers' baseline.
    None,
    /// What GET /v1/values does, over and over.
    Full,
    /// Control: keeps a CPU busy without touching the store, to tell lock
    /// waits from CPU contention and machine noise.
    Spin,
}

#[derive(Default)]
struct ReaderStats {
    reads: usize,
    snapshot_ms: Vec<f64>,
    serialize_ms: Vec<f64>,
    bytes: usize,
    /// The longest single hold of a shard lock over all full reads.
    max_lock_hold_us: f64,
}

/// One phase of A3: `rounds.len()` writers for PHASE while this thread does
/// what `reader` says. Returns the writers' merged latencies.
fn phase(
    store: &ValueStore,
    ds: &DataSet,
    names: &[Name],
    rounds: &mut [u64],
    reader: Reader,
) -> (Hist, ReaderStats) {
    let writers = rounds.len();
    let stop = AtomicBool::new(false);
    let mut stats = ReaderStats::default();
    let hists: Vec<Hist> = std::thread::scope(|s| {
        let handles: Vec<_> = rounds
            .iter_mut()
            .enumerate()
            .map(|(w, round)| {
                let stop = &stop;
                s.spawn(move || writer(store, ds, names, w, writers, round, stop))
            })
            .collect();
        let t0 = Instant::now();
        if reader == Reader::Full {
            while t0.elapsed() < PHASE {
                let a = Instant::now();
                let snap = store.snapshot(&Filter::default(), true);
                let b = Instant::now();
                // What handlers::values writes.
                let mut out = JsonOut::with_capacity(snap.entries.len() * 320 + 16);
                out.raw("{\"values\":");
                out.entries(&snap, |o, e| o.value_list(&snap, e));
                out.raw("}");
                let body = out.buf;
                let c = Instant::now();
                assert_eq!(snap.entries.len(), names.len());
                stats.reads += 1;
                stats.snapshot_ms.push((b - a).as_secs_f64() * 1e3);
                stats.serialize_ms.push((c - b).as_secs_f64() * 1e3);
                stats.bytes = body.len();
                stats.max_lock_hold_us = stats
                    .max_lock_hold_us
                    .max(snap.max_lock_hold.as_secs_f64() * 1e6);
            }
        } else if reader == Reader::Spin {
            let mut x = 0u64;
            while t0.elapsed() < PHASE {
                for i in 0..10_000u64 {
                    x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(i);
                }
                std::hint::black_box(x);
            }
        } else {
            std::thread::sleep(PHASE);
        }
        stop.store(true, Ordering::Relaxed);
        handles
            .into_iter()
            .map(|h| h.join().expect("writer thread"))
            .collect()
    });
    let mut all = Hist::new();
    for h in &hists {
        all.merge(h);
    }
    (all, stats)
}

/// A writer of A3: updates its share of `names` (every `writers`-th one,
/// from `w`) round after round until `stop`, timing each update.
fn writer(
    store: &ValueStore,
    ds: &DataSet,
    names: &[Name],
    w: usize,
    writers: usize,
    round: &mut u64,
    stop: &AtomicBool,
) -> Hist {
    let mine: Vec<&Name> = names.iter().skip(w).step_by(writers).collect();
    let mut h = Hist::new();
    let v = [RawValue::gauge(0.5)];
    let mut not_updated = 0u64;
    'run: loop {
        *round += 1;
        let t = *round * INTERVAL;
        for (i, name) in mine.iter().enumerate() {
            if i % 256 == 0 && stop.load(Ordering::Relaxed) {
                break 'run;
            }
            let t0 = Instant::now();
            let r = store.update(ds, vl(name, &v, t));
            let ns = t0.elapsed().as_nanos() as u64;
            h.record(ns);
            if r != Update::Updated {
                not_updated += 1;
            }
        }
    }
    assert_eq!(not_updated, 0, "writer {w}: updates that did not update");
    h
}

/// A latency histogram in ns: exact below 128 ns, then 64 buckets per power
/// of two (under 1.6 % error); the maximum is kept exactly.
struct Hist {
    counts: Vec<u64>,
    total: u64,
    max: u64,
    over_100us: u64,
    over_1ms: u64,
}

impl Hist {
    fn new() -> Self {
        Hist {
            counts: vec![0; 128 + 64 * 64],
            total: 0,
            max: 0,
            over_100us: 0,
            over_1ms: 0,
        }
    }

    fn index(v: u64) -> usize {
        if v < 128 {
            return v as usize;
        }
        let shift = 63 - v.leading_zeros() - 6; // >= 1
        let top = (v >> shift) as usize; // 64..=127
        128 + (shift as usize - 1) * 64 + (top - 64)
    }

    /// The largest value that falls in bucket `i`.
    fn upper(i: usize) -> u64 {
        if i < 128 {
            return i as u64;
        }
        let shift = (i - 128) / 64 + 1;
        let top = ((i - 128) % 64 + 64) as u64;
        ((top + 1) << shift) - 1
    }

    fn record(&mut self, ns: u64) {
        let i = Self::index(ns).min(self.counts.len() - 1);
        self.counts[i] += 1;
        self.total += 1;
        self.max = self.max.max(ns);
        if ns > 100_000 {
            self.over_100us += 1;
        }
        if ns > 1_000_000 {
            self.over_1ms += 1;
        }
    }

    fn merge(&mut self, o: &Hist) {
        for (a, b) in self.counts.iter_mut().zip(&o.counts) {
            *a += b;
        }
        self.total += o.total;
        self.max = self.max.max(o.max);
        self.over_100us += o.over_100us;
        self.over_1ms += o.over_1ms;
    }

    /// The value at quantile `q` (bucket upper bound, capped by the max).
    fn quantile(&self, q: f64) -> u64 {
        let want = ((self.total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= want {
                return Self::upper(i).min(self.max);
            }
        }
        self.max
    }
}

fn min_median(v: &mut [f64]) -> (f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    let med = if v.len() % 2 == 1 {
        v[v.len() / 2]
    } else {
        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
    };
    (v[0], med)
}

/// VmRSS in kB of `pid` ("self" for this process).
fn vm_rss_kb(pid: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"))
}

/// Gives freed heap memory back to the system, so that RSS growth shows
/// what a new allocation costs.
fn trim_heap() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim has no preconditions; it only releases free memory.
    unsafe {
        libc::malloc_trim(0);
    }
}

// ---------------------------------------------------------------- Part B --

fn require_part_b_tools() {
    common::require_tools();
    for (file, package) in [
        (COLLECTD_TG, "collectd-utils"),
        (WRITE_PROMETHEUS_SO, "collectd-core"),
        (NETWORK_SO, "collectd-core"),
    ] {
        assert!(
            Path::new(file).exists(),
            "{file} is missing: Part B needs it (apt-get install {package})"
        );
    }
}

/// A port free for both TCP and UDP on 127.0.0.1 (the network plugin binds
/// UDP with SO_REUSEADDR, so a port someone else uses would be shared).
fn free_udp_port() -> u16 {
    loop {
        let p = common::free_port();
        if UdpSocket::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
}

/// collectd-tg, killed when dropped.
struct LoadGen(Child);

impl Drop for LoadGen {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn clk_tck() -> f64 {
    // SAFETY: sysconf only reads a configuration value.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/stat: {e}"));
    let after = &stat[stat.rfind(')').expect("comm in stat") + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // after ") ": field 3 (state) is f[0], so utime (14) is f[11], stime f[12].
    f[11].parse::<u64>().expect("utime") + f[12].parse::<u64>().expect("stime")
}

/// GET `path`, timed from connect to the last byte; parsed afterwards.
fn timed_get(port: u16, path: &str, capacity: usize) -> (Duration, common::Response) {
    let t0 = Instant::now();
    let mut s = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port)))
        .unwrap_or_else(|e| panic!("connect to 127.0.0.1:{port} for {path}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .unwrap_or_else(|e| panic!("send GET {path}: {e}"));
    let mut raw = Vec::with_capacity(capacity);
    s.read_to_end(&mut raw)
        .unwrap_or_else(|e| panic!("read GET {path} from port {port}: {e}"));
    let dt = t0.elapsed();
    let r = common::parse_response(&raw)
        .unwrap_or_else(|e| panic!("GET {path} on port {port}: bad response: {e}"));
    assert_eq!(r.status, 200, "GET {path} on port {port}: {}", r.text());
    (dt, r)
}

/// unixsock LISTVAL: (time, bytes read, identifiers listed).
fn timed_listval(sock: &Path) -> (Duration, usize, usize) {
    let t0 = Instant::now();
    let mut s = UnixStream::connect(sock)
        .unwrap_or_else(|e| panic!("connect unixsock {}: {e}", sock.display()));
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.write_all(b"LISTVAL\n").expect("send LISTVAL");
    let mut r = BufReader::with_capacity(1 << 16, s);
    let mut line = Vec::with_capacity(256);
    let mut bytes = r.read_until(b'\n', &mut line).expect("read LISTVAL status");
    let status = String::from_utf8_lossy(&line).trim_end().to_string();
    let n: i64 = status
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(-1);
    assert!(n >= 0, "LISTVAL failed: {status:?}");
    for i in 0..n {
        line.clear();
        let k = r.read_until(b'\n', &mut line).expect("read LISTVAL line");
        assert!(k > 0, "LISTVAL ended after {i} of {n} lines");
        bytes += k;
    }
    (t0.elapsed(), bytes, n as usize)
}

fn is_tg(host: &str, plugin: &str) -> bool {
    host.starts_with("host") && plugin.starts_with("plugin")
}

/// collectd-tg metrics that GET /v1/metrics lists.
/// Scans the body's identifiers instead of parsing it: the poll must cost
/// as little as possible next to a collectd that is receiving the load.
fn count_ours(port: u16) -> usize {
    const KEY: &[u8] = b"\"identifier\":\"";
    let (_, r) = timed_get(port, "/v1/metrics", 0);
    let body = &r.body[..];
    let mut count = 0;
    let mut i = 0;
    while let Some(p) = body[i..].windows(KEY.len()).position(|w| w == KEY) {
        let start = i + p + KEY.len();
        let len = body[start..].iter().position(|b| *b == b'"').unwrap_or(0);
        let id = String::from_utf8_lossy(&body[start..start + len]);
        let mut parts = id.split('/');
        if is_tg(parts.next().unwrap_or(""), parts.next().unwrap_or("")) {
            count += 1;
        }
        i = start + len;
    }
    count
}

/// values_received of GET /v1/health.
fn values_received(port: u16) -> u64 {
    let (_, r) = timed_get(port, "/v1/health", 0);
    r.json()["values_received"].as_u64().unwrap_or(0)
}

/// The system's UDP receive-buffer drops (/proc/net/snmp RcvbufErrors).
fn udp_rcvbuf_errors() -> Option<u64> {
    let snmp = std::fs::read_to_string("/proc/net/snmp").ok()?;
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (names, values) = (udp.next()?, udp.next()?);
    let i = names.split_whitespace().position(|n| n == "RcvbufErrors")?;
    values.split_whitespace().nth(i)?.parse().ok()
}

/// collectd-tg samples in write_prometheus's exposition text (the host is
/// the `instance` label).
fn count_prom(body: &[u8]) -> usize {
    const NEEDLE: &[u8] = b"instance=\"host";
    body.split(|b| *b == b'\n')
        .filter(|l| !l.starts_with(b"#") && l.windows(NEEDLE.len()).any(|w| w == NEEDLE))
        .count()
}

#[derive(Clone, Copy, PartialEq)]
enum Ep {
    Values,
    Metrics,
    Prom,
    Listval,
}

const EPS: [(Ep, &str); 4] = [
    (Ep::Values, "ours  GET /v1/values"),
    (Ep::Metrics, "ours  GET /v1/metrics"),
    (Ep::Prom, "peer  write_prometheus GET /metrics"),
    (Ep::Listval, "peer  unixsock LISTVAL"),
];

#[derive(Default)]
struct EpResult {
    ms: Vec<f64>,
    bytes: usize,
    items: usize,
    cpu_ticks: u64,
    wall: f64,
}

struct SizeResult {
    n: usize,
    values: (f64, f64),
    metrics: (f64, f64),
    prom: (f64, f64),
    listval: (f64, f64),
}

fn part_b(sizes: &[usize]) {
    require_part_b_tools();
    let plugin = common::plugin_so();
    println!();
    println!("PART B: inside one real collectd (network + write_prometheus + unixsock + rest)");
    println!("  plugin {}", plugin.display());
    println!(
        "  load: collectd-tg -i 10 over UDP to the network plugin; Interval 10, Timeout 2; \
         {RUNS} runs per request after 1 warm-up, interleaved"
    );
    let mut results = Vec::new();
    for &n in sizes {
        results.push(run_size(n));
    }
    println!();
    println!("Summary (median ms; ratio = ours / peer, above 1 = ours slower)");
    println!(
        "  {:>8}  {:>10} {:>10} {:>7}   {:>11} {:>9} {:>7}",
        "N", "/v1/values", "/metrics", "ratio", "/v1/metrics", "LISTVAL", "ratio"
    );
    for r in &results {
        println!(
            "  {:>8}  {:>10.2} {:>10.2} {:>7.2}   {:>11.2} {:>9.2} {:>7.2}",
            r.n,
            r.values.1,
            r.prom.1,
            r.values.1 / r.prom.1,
            r.metrics.1,
            r.listval.1,
            r.metrics.1 / r.listval.1
        );
    }
}

fn run_size(n: usize) -> SizeResult {
    let udp = free_udp_port();
    let prom = common::free_port();
    let extra = format!(
        "<Plugin network>\n  Listen \"127.0.0.1\" \"{udp}\"\n</Plugin>\n\
         <Plugin write_prometheus>\n  Host \"127.0.0.1\"\n  Port \"{prom}\"\n</Plugin>"
    );
    progress(&format!("B: N={n}: starting collectd"));
    let c = Collectd::start(
        Setup::default()
            .load(&["network", "write_prometheus"])
            .extra(&extra)
            .interval(10.0),
    );
    assert_ne!(c.port, prom, "rest and write_prometheus got the same port");
    let pid = c.pid();
    // write_prometheus must answer before the load starts.
    common::wait_for(
        "write_prometheus to answer /metrics",
        Duration::from_secs(20),
        || common::try_request(prom, "GET", "/metrics", &[], b"").ok(),
    );
    let rss_before = vm_rss_kb(&pid.to_string());

    let hosts = (n / 100).clamp(10, 1000);
    let plugins = 20;
    let tg_args = [
        "-n".to_string(),
        n.to_string(),
        "-H".into(),
        hosts.to_string(),
        "-p".into(),
        plugins.to_string(),
        "-i".into(),
        "10".into(),
        "-d".into(),
        "127.0.0.1".into(),
        "-D".into(),
        udp.to_string(),
    ];
    let tg_cmd = format!("collectd-tg {}", tg_args.join(" "));
    progress(&format!("B: N={n}: {tg_cmd}"));
    let tg_err = c.dir.join("collectd-tg.stderr");
    let _tg = LoadGen(
        Command::new(COLLECTD_TG)
            .args(&tg_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(&tg_err).expect("create collectd-tg.stderr"),
            ))
            .spawn()
            .unwrap_or_else(|e| panic!("start {COLLECTD_TG}: {e}")),
    );

    // Fill: poll until both our API and write_prometheus hold N metrics.
    // First the cheap /v1/health, until N values have arrived at all.
    let t_fill = Instant::now();
    let drops0 = udp_rcvbuf_errors();
    let timeout = Duration::from_secs(120);
    while values_received(c.port) < n as u64 && t_fill.elapsed() < timeout {
        if c.exited() {
            panic!("collectd exited during the fill:\n{}", c.all_output());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let mut ours;
    let mut proms = 0;
    let mut last_change = (Instant::now(), 0usize);
    let mut note = String::new();
    loop {
        if c.exited() {
            panic!("collectd exited during the fill:\n{}", c.all_output());
        }
        ours = count_ours(c.port);
        if ours != last_change.1 {
            last_change = (Instant::now(), ours);
        }
        if ours * 1000 >= n * 999 {
            let (_, r) = timed_get(prom, "/metrics", 0);
            proms = count_prom(&r.body);
        }
        if ours >= n && proms >= n {
            break;
        }
        // collectd-tg draws type instances at random: a rare duplicate
        // identifier leaves fewer than N distinct metrics. Accept a count
        // within 0.1 % that has not moved for two intervals (20 s).
        if ours * 1000 >= n * 999
            && proms >= ours
            && last_change.0.elapsed() > Duration::from_secs(21)
        {
            note = format!(" (settled at {ours}: collectd-tg drew duplicate identifiers)");
            break;
        }
        if t_fill.elapsed() > timeout {
            panic!(
                "N={n}: fill timed out after {timeout:?}: GET /v1/metrics lists {ours} \
                 collectd-tg metrics, write_prometheus {proms} samples, want {n}.\n\
                 collectd-tg stderr: {}\n{}",
                std::fs::read_to_string(&tg_err).unwrap_or_default(),
                c.all_output()
            );
        }
        std::thread::sleep(Duration::from_millis(1000));
    }
    let fill_s = t_fill.elapsed().as_secs_f64();
    let drops = match (drops0, udp_rcvbuf_errors()) {
        (Some(a), Some(b)) => format!("{}", b.saturating_sub(a)),
        _ => "?".into(),
    };
    let rss_after = vm_rss_kb(&pid.to_string());
    let tck = clk_tck();

    // Background: what receiving collectd-tg's traffic costs, no requests.
    progress(&format!("B: N={n}: idle CPU window"));
    let idle = Duration::from_secs(3);
    let (i0, it0) = (cpu_ticks(pid), Instant::now());
    std::thread::sleep(idle);
    let bg_rate = (cpu_ticks(pid) - i0) as f64 / tck / it0.elapsed().as_secs_f64();

    progress(&format!("B: N={n}: requests"));
    let sock = c.socket();
    let mut res: Vec<EpResult> = EPS.iter().map(|_| EpResult::default()).collect();
    let w0 = Instant::now();
    let c0 = cpu_ticks(pid);
    for run in 0..=RUNS {
        for (k, (ep, _)) in EPS.iter().enumerate() {
            let cap = res[k].bytes + (1 << 16);
            let before = cpu_ticks(pid);
            let (dt, bytes, items) = match ep {
                Ep::Values => {
                    let (dt, r) = timed_get(c.port, "/v1/values", cap);
                    let items = if run == 0 {
                        r.json()["values"].as_array().map_or(0, |a| a.len())
                    } else {
                        res[k].items
                    };
                    (dt, r.body.len(), items)
                }
                Ep::Metrics => {
                    let (dt, r) = timed_get(c.port, "/v1/metrics", cap);
                    let items = if run == 0 {
                        r.json()["metrics"].as_array().map_or(0, |a| a.len())
                    } else {
                        res[k].items
                    };
                    (dt, r.body.len(), items)
                }
                Ep::Prom => {
                    let (dt, r) = timed_get(prom, "/metrics", cap);
                    (dt, r.body.len(), count_prom(&r.body))
                }
                Ep::Listval => timed_listval(&sock),
            };
            let used = cpu_ticks(pid) - before;
            let e = &mut res[k];
            e.bytes = bytes;
            e.items = items;
            if run > 0 {
                e.ms.push(dt.as_secs_f64() * 1e3);
                e.cpu_ticks += used;
                e.wall += dt.as_secs_f64();
            }
        }
    }
    let window = w0.elapsed().as_secs_f64();
    let window_cpu = (cpu_ticks(pid) - c0) as f64 / tck;
    if c.exited() {
        panic!("collectd exited during the requests:\n{}", c.all_output());
    }

    println!();
    println!("== N = {n}: {tg_cmd} ==");
    println!(
        "  fill: {fill_s:.1} s until GET /v1/metrics listed {ours} collectd-tg metrics \
         and write_prometheus {proms} samples{note}; {drops} UDP datagrams dropped \
         (system RcvbufErrors) meanwhile"
    );
    println!(
        "  collectd VmRSS: {:.1} MiB before the fill, {:.1} MiB after \
         ({:.0} bytes per metric for collectd's cache + write_prometheus + rest + network)",
        rss_before as f64 / 1024.0,
        rss_after as f64 / 1024.0,
        (rss_after.saturating_sub(rss_before) * 1024) as f64 / ours.max(1) as f64
    );
    println!(
        "  {:<36} {:>9} {:>9} {:>12} {:>8} {:>13}",
        "request", "min ms", "median ms", "bytes", "items", "CPU ms/req"
    );
    let mut medians = [(0.0, 0.0); 4];
    for (k, (_, label)) in EPS.iter().enumerate() {
        let e = &mut res[k];
        let (min, med) = min_median(&mut e.ms);
        medians[k] = (min, med);
        let cpu_ms = ((e.cpu_ticks as f64 / tck - bg_rate * e.wall) / RUNS as f64 * 1e3).max(0.0);
        println!(
            "  {label:<36} {min:>9.2} {med:>9.2} {:>12} {:>8} {cpu_ms:>13.1}",
            e.bytes, e.items
        );
    }
    println!(
        "  collectd CPU: {window_cpu:.2} s in the {window:.1} s request window \
         (background from collectd-tg's traffic: {:.1} % of a CPU, {} values/s)",
        bg_rate * 100.0,
        n / 10
    );
    let ratio = |a: f64, b: f64| {
        format!(
            "{:.2}x ({})",
            a / b,
            if a > b { "ours slower" } else { "ours faster" }
        )
    };
    println!(
        "  ours GET /v1/values vs write_prometheus /metrics: {} ; {} vs {} bytes",
        ratio(medians[0].1, medians[2].1),
        res[0].bytes,
        res[2].bytes
    );
    println!(
        "  ours GET /v1/metrics vs unixsock LISTVAL: {} ; {} vs {} bytes",
        ratio(medians[1].1, medians[3].1),
        res[1].bytes,
        res[3].bytes
    );
    SizeResult {
        n,
        values: medians[0],
        metrics: medians[1],
        prom: medians[2],
        listval: medians[3],
    }
}
