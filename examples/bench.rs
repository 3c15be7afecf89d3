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
//! `--part a|b|c|w|s|all` (default all; `w`: only part B's write-path,
//! ingest and sampling figures, about 160 s; `s`: only the sampling
//! figures, B-sample, about 75 s). The report goes to stdout; progress
//! lines go to stderr. The default run takes about 5 minutes: Part A
//! about 50 s, Part C under 10 s, Part B the rest (waiting for collectd-tg
//! to fill collectd, about 10-25 s per size, 4 s of single-value requests
//! per size, then about 160 s for the write-path, ingest and sampling
//! figures, which run once, at 10000 metrics, whatever `--sizes` says). On a
//! loaded machine the fill of 100000 metrics takes longer (53 s at a load
//! average of 5, as dropped datagrams leave metrics to the next interval):
//! then over 5 minutes.
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
//!    updated round-robin with increasing times for about 1 s. Then
//!    **A2r**, the same in a random order (a new shuffle each round; the
//!    benchmark's copies of the names laid out in that order, so that its
//!    own reads stay sequential): a metric's memory is then seldom in
//!    cache, as on collectd's write path; best of 3 runs of about 1 s.
//! 3. **writers vs a full read**: 100000 metrics; 2 writer threads update
//!    them in a loop and time every single `update` with `Instant` (so the
//!    ~20-40 ns of two clock reads are included). First 1.5 s with no
//!    reader (baseline), then 1.5 s while the main thread does what
//!    `GET /v1/values` does over and over: a full `snapshot(.., true)` and
//!    its serialization to JSON with `JsonOut::value_list`.
//!    A third 1.5 s phase is a control: the main thread keeps a CPU busy
//!    without touching the store, so stalls it shows are scheduling or
//!    machine noise, not lock waits.
//!    Reported: writer max / p99.9 / p99.99 latency in µs, the number of
//!    updates over 100 µs and over 1 ms, and the number of updates that
//!    found their shard locked (`Update::Deferred`: the value was left to
//!    the lock's holder, the writer did not wait), per phase; the reader's
//!    snapshot ms, serialize ms and JSON bytes, and the longest hold of one
//!    shard lock. Design target: a full read never blocks a writer for more
//!    than 1 ms; reported as met when the updates that met a locked shard
//!    during full reads all took at most 1 ms (no update waits for a lock).
//!    On a machine with fewer than 3 CPUs, 2 writers + 1 reader cannot all
//!    run at once, so a writer's latency then also contains time slices
//!    lost to the scheduler (the control phase shows how many); the three
//!    phases are then repeated with 1 writer.
//! 4. **memory**: VmRSS of this process before and after filling a fresh
//!    store with 100000 metrics (names prepared beforehand), per metric.
//!
//! # Part B: inside a real collectd, side by side with collectd's peers
//!
//! For each size N, one fresh `collectd -f` (built by tests/common) loads
//! network, write_prometheus, unixsock and rest, with Interval 10 and
//! Timeout 2. `collectd-tg -n N -i 10` (package collectd-utils) sends N
//! value lists (1 gauge or derive each) over UDP, each once per 10 s, for
//! the whole measurement (under `timeout`, like every collectd-tg here, so
//! that none outlives a killed benchmark for long). Once GET /v1/metrics
//! lists N collectd-tg metrics and write_prometheus's /metrics has N
//! collectd-tg samples, one warm-up round and then 7 rounds of these
//! requests run, interleaved:
//!
//! - ours: `GET /v1/values` and `GET /v1/metrics` (full, no filter);
//! - ours: `GET /metrics` (our Prometheus text, on the rest port, no
//!   credentials, as no auth is configured here - the same as every other
//!   request of the benchmark), full;
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
//! ours/peer of the medians: our /metrics vs write_prometheus's /metrics
//! (goal <= 0.5), /v1/values vs write_prometheus's /metrics, /v1/metrics vs
//! LISTVAL (above 1 means ours is slower).
//!
//! Then, on the same collectd, **one value over one connection**: the first
//! collectd-tg metric `GET /v1/metrics` lists (host/plugin/type-instance).
//! `GET /v1/values/{host}/{plugin}/{type}` with that identifier on ONE
//! HTTP/1.1 keep-alive connection (TCP_NODELAY; each answer read to the end
//! of its body, by Content-Length or chunked, before the next request), and
//! `GETVAL "identifier"` on ONE unixsock connection (status line and its
//! value lines read before the next), and the same GET on ONE keep-alive
//! connection to the plugin's Unix socket (`SocketFile`, the transport
//! GETVAL uses), 2 s each, in 8 slices of 0.25 s each, interleaved
//! A-B-C-C-B-A... so that all see the same machine conditions (the
//! connections stay open throughout). Reported: requests/s of each,
//! ours/GETVAL on each transport (goal >= 1), and collectd's CPU µs per
//! request (as above, background subtracted; it includes collectd's side
//! only, not the client's).
//!
//! Before the sizes, the **transport floor**: threads of the benchmark
//! itself answer every request with one fixed HTTP response (the size of a
//! value list) on TCP loopback and on a Unix socket, doing nothing else
//! and sleeping in read(2) between requests, and the same client asks on
//! one connection each (2 s each, interleaved slices). TCP / Unix of that
//! do-nothing server bounds what a server that sleeps between requests
//! (as unixsock does) can reach on TCP against GETVAL on this machine; the
//! plugin's connection threads poll for a quick client's next request
//! instead (`BusyPoll`), so they are not bound by it.
//!
//! # Part B, write path (B-write): collectd CPU per value, one size
//!
//! Three collectds of their own (not tests/common's Setup, which always
//! loads rest), each with logfile, unixsock and network (`ReportStats
//! true`) and ONLY the writer under test: (1) baseline, no writer - a
//! post-cache chain whose target is `stop`, so that values still go through
//! collectd's cache but no write is attempted (with no writer loaded at
//! all, collectd would log complaints many times a second); (2)
//! write_prometheus; (3) rest. All with Interval 1, `Timeout 10000` (no
//! metric expires during the figure), `CollectInternalStats true` and a
//! write queue bounded at 1000000 values. After 2 s idle (each collectd's
//! idle CPU rate, subtracted below), each gets its own `collectd-tg -n
//! 10000 -H 100 -p 20 -i 0.25` (40000 values/s requested, in one burst of
//! 10000 every 0.25 s; well below the ceiling of about 100000 values/s of
//! the network plugin's one dispatch thread, see B-ingest), under
//! `timeout`, on a UDP port of its own. The three are loaded AT THE SAME
//! TIME, so that they share the machine's conditions (the machine is
//! shared, and measured one after the other their figures drifted by more
//! than the differences sought). Once each cache holds 99 % of the 10000
//! metrics and 2.5 s have passed since collectd-tg started, 8 back-to-back
//! chunks of 3 s: each collectd's utime+stime from /proc/PID/stat (clock
//! ticks), the CPU time of its write threads alone (`writer#N`, from
//! /proc/PID/task/TID/schedstat, in ns: they run collectd's cache update,
//! the filter chains and every write callback, but not the network plugin's
//! receive and dispatch threads, whose cost is the same with any writer and
//! only adds noise), and the values it received, counted by collectd's own
//! network plugin counter (`network/total_values-dispatch-accepted`, read
//! with unixsock GETVAL as a rate over collectd's last 1 s; the mean of the
//! readings made during the chunk, times the chunk; minus values the write
//! queue dropped, `collectd-write_queue/derive-dropped`, none so far). Not
//! the sender's rate: bursts of 10000 overflow the UDP socket buffer (208 KB
//! by default; the network plugin does not set SO_RCVBUF), so the kernel
//! drops part of the datagrams and collectd receives fewer values than sent
//! (20000-30000 values/s, here). Reported per writer: values/s received,
//! CPU %, idle %, drops/s, µs of CPU per value over the 24 s for the
//! process and for the write threads, and the process's µs per value of each
//! chunk (to show the noise). Then, for the process and for the write
//! threads: µs per value of each writer, the marginal µs per value of
//! write_prometheus and rest (minus the baseline; mean over the chunks ±
//! its standard error), and (rest - baseline) / (write_prometheus -
//! baseline), goal <= 0.5, from the whole window, ± its standard error
//! propagated from the marginals'. The verdict says "inconclusive" when
//! write_prometheus's marginal cost is not above twice its standard error,
//! and notes when the ratio is within one standard error of 0.5.
//!
//! # Part B, ingest ceiling (B-ingest): one size
//!
//! The same kind of collectd without a writer (baseline) and with rest, a
//! fresh one for each of 10 windows of 3 s, in the order B-R-R-B-B-R-R-B-B-R
//! (so that a drift of the machine's load weighs on both alike).
//! `collectd-tg -n 10000 -H 100 -p 20 -i 0.001` asks for 10 million values/s,
//! i.e. it sends as fast as it can (most of a CPU; its CPU % is reported).
//! collectd's network plugin queues what its receive thread reads faster than
//! its one dispatch thread can hand over, so that queue (reported, in
//! packets, at the start and end of the window) grows and collectd's memory
//! with it (hundreds of MB; each collectd is killed after its window). After
//! the cache holds the metrics and 2.5 s, the window measures values/s
//! processed = the dispatch-accepted rate minus the write-queue drop rate
//! (both collectd's own counters, as in B-write), collectd's CPU % and the
//! values processed per CPU second of collectd. With collectd-tg flat out on
//! 2 CPUs the machine is saturated, so the ceiling is also a matter of how
//! much CPU collectd gets. Reported per window, then the means (with their
//! ranges), rest/baseline of the means (goal >= 0.95, i.e. within 5 %), and
//! the mean ± standard error of rest/baseline over the 5 pairs of
//! neighbouring windows (the verdict notes when the goal is within one
//! standard error). A window whose receive queue did not grow is flagged:
//! there collectd kept up with collectd-tg, so it did not measure a
//! ceiling. The windows vary by ±15 % on a shared 2-CPU machine, more than
//! the effect sought, so a second figure predicts the ratio from CPU per
//! value: collectd saturated is CPU-bound, so its ceiling goes as 1 / (its
//! CPU per value); with c = the baseline windows' collectd CPU per value
//! processed and m = rest's marginal CPU per value on the write threads
//! (B-write, ± its standard error), the predicted ratio is c / (c + m). It
//! assumes that rest's cost per value is the same flat out as at B-write's
//! rate, and that the CPU rest takes is the CPU collectd loses.
//!
//! # Part B, sampling (B-sample): one size, perf
//!
//! CPU time per value differences between collectds are close to the noise
//! of a shared machine (B-write, B-ingest); a sampling profiler splits ONE
//! collectd's CPU between plugins instead, so both writers see the same
//! values at the same moments. `perf record -e cpu-clock -F 999
//! --call-graph dwarf,16384 -p PID -- sleep 20` (package linux-perf; a
//! software clock, as virtual machines often lack hardware counters; DWARF
//! call chains, as collectd and its plugins are built without frame
//! pointers), then `perf script`: each sample goes to rest or to
//! write_prometheus by the innermost frame of its call chain that is in
//! rest.so or write_prometheus.so, so that what a plugin calls (libc, the
//! allocator, the kernel for a futex) counts as the plugin's; the rest is
//! collectd's own. Standard errors are over 10 slices of the 20 s.
//!
//! 1. **write path**: one collectd (network, unixsock, logfile) with BOTH
//!    rest and write_prometheus, `collectd-tg -n 10000 -H 100 -p 20 -i
//!    0.25` as in B-write, then a fresh one with `-n 1000 -H 10 -i 0.025`
//!    (40000 values/s requested each); rest's samples / write_prometheus's,
//!    goal <= 0.5.
//! 2. **ingest ceiling**: one collectd with rest only, collectd-tg flat out
//!    as in B-ingest; rest's share s of collectd's samples. Flat out,
//!    collectd is CPU-bound, so its ceiling goes as 1 / its CPU per value,
//!    and with rest it is 1 - s of what it would be without (the CPU per
//!    value c + m against c, s = m / (c + m)): goal 1 - s >= 0.95. It
//!    assumes that what rest's samples cost would not be spent anyway; part
//!    of it would: reading collectd's freshly copied meta data brings into
//!    the write thread's cache what collectd's own meta_data_destroy fetches
//!    after the write callbacks.
//!
//! Without perf (or if it fails), B-sample says why and reports nothing.
//! `BENCH_PERF_KEEP=DIR` keeps the recordings in DIR, for `perf report -i`.
//!
//! # Part B, summary
//!
//! One row per figure (our /metrics, write_prometheus /metrics, their
//! ratio; /v1/values and its ratio; /v1/metrics, LISTVAL and their ratio;
//! the single-value requests/s and CPU µs/req of both and their ratio), one
//! column per size, and the growth per 10x metrics ((last/first)^(1/decades)
//! of the sizes run; 10 means linear in N). Then the B-write, B-ingest and
//! B-sample results (10000 metrics only) and the machine's load average. The machine
//! is shared: compare the load averages printed at the start and end of
//! Part B, B-write and B-ingest before trusting small differences.
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

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rest::http::json::JsonOut;
use rest::model::{DataSet, DataSource, DsType, MetaRef, RawValue, ValueListRef};
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

/// A2r: updates of N metrics in a random order (fixed seed), as collectd
/// delivers values from many sources: the metric's memory is seldom in
/// cache, so this is the update's cost when each one waits for memory (the
/// write path flat out, B-sample). The names are copied in that order
/// first, so that the benchmark's own reads of them are sequential and
/// stay out of the figure. Best of 3 runs of about 1 s each (fewer
/// updates per run at 100000 metrics: a run is whole rounds).
fn update_random(ds: &DataSet, sizes: &[usize], all: &[Name]) {
    println!("A2r. update in a random order: N metrics present, each round a new order, ~1 s");
    println!("  {:>8}  {:>12}  {:>12}", "N", "ns/update", "updates");
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for &n in sizes {
        progress(&format!("A2r: update {n} in a random order"));
        let store = ValueStore::new(2, HISTORY);
        fill(&store, ds, &all[..n]);
        // Rounds of the same length, each a shuffle of all N names.
        let rounds: Vec<Vec<Name>> = (0..4)
            .map(|_| {
                let mut order: Vec<usize> = (0..n).collect();
                for i in (1..n).rev() {
                    order.swap(i, rnd() as usize % (i + 1));
                }
                order
                    .iter()
                    .map(|&i| Name {
                        host: all[i].host.clone(),
                        plugin: all[i].plugin.clone(),
                        type_instance: all[i].type_instance.clone(),
                    })
                    .collect()
            })
            .collect();
        let v = [RawValue::gauge(2.0)];
        let mut time = 1u64;
        let mut best = f64::MAX;
        let mut total = 0u64;
        for _ in 0..3 {
            let (mut count, t0) = (0u64, Instant::now());
            while t0.elapsed() < Duration::from_secs(1) {
                for round in &rounds {
                    time += 1;
                    for name in round {
                        let up = store.update(ds, vl(name, &v, time * INTERVAL));
                        assert_eq!(up, Update::Updated, "A2r: not an update");
                    }
                    count += n as u64;
                }
            }
            best = best.min(t0.elapsed().as_nanos() as f64 / count as f64);
            total += count;
        }
        println!("  {n:>8}  {best:>12.0}  {total:>12}");
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Part {
    A,
    B,
    C,
    /// Only part B's write-path and ingest figures (B-write, B-ingest,
    /// B-sample).
    W,
    /// Only B-sample.
    S,
    All,
}

fn usage() -> ! {
    eprintln!(
        "usage: cargo run --release --example bench -- [--sizes N,N,...] [--part a|b|c|w|s|all]"
    );
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
                    "w" => Part::W,
                    "s" => Part::S,
                    "all" => Part::All,
                    other => {
                        eprintln!("--part: {other:?} is not a, b, c, w, s or all");
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
            Part::W => "w",
            Part::S => "s",
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
    if part == Part::W {
        require_part_b_tools();
        let write = write_path();
        ingest_ceiling(&write);
        sampled();
    }
    if part == Part::S {
        require_part_b_tools();
        sampled();
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
        host: n.host.as_bytes(),
        plugin: n.plugin.as_bytes(),
        plugin_instance: b"",
        type_: b"gauge",
        type_instance: n.type_instance.as_bytes(),
        values,
        time,
        interval: INTERVAL,
        meta: MetaRef::Absent,
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
    update_random(&ds, sizes, &all);

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
            "    {:<18} {:>10} {:>9} {:>9} {:>9} {:>9} {:>8} {:>8}",
            "", "updates", "p99.9 µs", "p99.99µs", "max µs", ">100 µs", ">1 ms", "deferred"
        );
        for (label, h) in [
            ("no reader", &base),
            ("with full reads", &loaded),
            ("control: CPU only", &control),
        ] {
            println!(
                "    {:<18} {:>10} {:>9.1} {:>9.1} {:>9.1} {:>9} {:>8} {:>8}",
                label,
                h.total,
                h.quantile(0.999) as f64 / 1e3,
                h.quantile(0.9999) as f64 / 1e3,
                h.max as f64 / 1e3,
                h.over_100us,
                h.over_1ms,
                h.deferred
            );
        }
        worst.push((
            writers,
            base.max.max(control.max),
            base.over_1ms + control.over_1ms,
            loaded.max,
            loaded.deferred,
            loaded.deferred_max,
        ));
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
            "  a full read copies at most {READ_BATCH} entries per hold of a shard lock; a \
             writer that finds a shard locked (by the reader or the other writer) does not wait: \
             it leaves its value to the lock's holder (column deferred), even when the scheduler \
             preempts the reader inside a hold"
        );
    }
    for (writers, quiet, quiet_over_1ms, loaded, deferred, deferred_max) in worst {
        println!(
            "  design target (a full read blocks a writer <= 1 ms), {writers} writer(s): {}; \
             {deferred} updates met a locked shard during full reads and took at most {:.3} ms; \
             worst update {:.3} ms with full reads, {:.3} ms without the store being read",
            if deferred_max <= 1_000_000 {
                "met (no update waits for a lock)".to_string()
            } else if quiet_over_1ms > 0 {
                format!(
                    "not shown here: no update waits for a lock, but writers lose their CPU for \
                     over 1 ms as often with nothing reading ({quiet_over_1ms} updates)"
                )
            } else {
                "NOT met".to_string()
            },
            deferred_max as f64 / 1e6,
            loaded as f64 / 1e6,
            quiet as f64 / 1e6,
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
            match r {
                Update::Updated => {}
                Update::Deferred => {
                    h.deferred += 1;
                    h.deferred_max = h.deferred_max.max(ns);
                }
                _ => not_updated += 1,
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
    /// Updates that found their shard locked and were left to the lock's
    /// holder (`Update::Deferred`).
    deferred: u64,
    /// The longest of those, ns.
    deferred_max: u64,
}

impl Hist {
    fn new() -> Self {
        Hist {
            counts: vec![0; 128 + 64 * 64],
            total: 0,
            max: 0,
            over_100us: 0,
            over_1ms: 0,
            deferred: 0,
            deferred_max: 0,
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
        self.deferred += o.deferred;
        self.deferred_max = self.deferred_max.max(o.deferred_max);
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

/// collectd-tg, run under `timeout` so that it cannot outlive a benchmark
/// that dies (collectd-tg has no count limit); stopped with SIGTERM, which
/// timeout passes on to it, when dropped.
struct LoadGen(Child);

impl LoadGen {
    /// `collectd-tg args` for at most `secs`, its stderr into `stderr`.
    fn start(args: &[String], secs: u64, stderr: &Path) -> LoadGen {
        let child = Command::new("timeout")
            .arg(secs.to_string())
            .arg(COLLECTD_TG)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(stderr)
                    .unwrap_or_else(|e| panic!("create {}: {e}", stderr.display())),
            ))
            .spawn()
            .unwrap_or_else(|e| panic!("start timeout {COLLECTD_TG}: {e}"));
        LoadGen(child)
    }

    /// collectd-tg's own pid (timeout's child), once it runs.
    fn tg_pid(&self) -> Option<u32> {
        let p = self.0.id();
        std::fs::read_to_string(format!("/proc/{p}/task/{p}/children"))
            .ok()?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }
}

impl Drop for LoadGen {
    fn drop(&mut self) {
        // SAFETY: kill only sends a signal, to our own child.
        unsafe {
            libc::kill(self.0.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if !matches!(self.0.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
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
    try_cpu_ticks(pid).unwrap_or_else(|| panic!("no CPU times in /proc/{pid}/stat"))
}

/// utime + stime of `pid` in clock ticks, if it still runs.
fn try_cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.get(stat.rfind(')')? + 2..)?;
    let f: Vec<&str> = after.split_whitespace().collect();
    // after ") ": field 3 (state) is f[0], so utime (14) is f[11], stime f[12].
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
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

/// One HTTP/1.1 keep-alive connection (TCP_NODELAY) that sends the same GET
/// again and again and reads each answer completely (status line, headers,
/// then the body by Content-Length or chunked) before the next.
struct KeepAlive {
    r: BufReader<Box<dyn Read>>,
    w: Box<dyn Write>,
    req: Vec<u8>,
    line: String,
    body: Vec<u8>,
}

impl KeepAlive {
    fn new(port: u16, path: &str) -> KeepAlive {
        let s = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port)))
            .unwrap_or_else(|e| panic!("connect to 127.0.0.1:{port}: {e}"));
        s.set_nodelay(true).expect("TCP_NODELAY");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let w = s.try_clone().expect("clone socket");
        KeepAlive::with(Box::new(s), Box::new(w), path)
    }

    /// The same over a Unix socket (the plugin's `SocketFile`).
    fn new_unix(sock: &Path, path: &str) -> KeepAlive {
        let s = UnixStream::connect(sock)
            .unwrap_or_else(|e| panic!("connect to {}: {e}", sock.display()));
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let w = s.try_clone().expect("clone socket");
        KeepAlive::with(Box::new(s), Box::new(w), path)
    }

    fn with(r: Box<dyn Read>, w: Box<dyn Write>, path: &str) -> KeepAlive {
        KeepAlive {
            w,
            r: BufReader::with_capacity(1 << 16, r),
            req: format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").into_bytes(),
            line: String::new(),
            body: Vec::new(),
        }
    }

    /// One request; the status code, the body in `self.body`.
    fn get(&mut self) -> u16 {
        self.w.write_all(&self.req).expect("send keep-alive GET");
        self.line.clear();
        self.r.read_line(&mut self.line).expect("read status line");
        let status: u16 = self
            .line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {:?}", self.line));
        let (mut length, mut chunked, mut close) = (None, false, false);
        loop {
            self.line.clear();
            self.r.read_line(&mut self.line).expect("read header");
            let h = self.line.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                let (k, v) = (k.trim(), v.trim());
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.parse::<usize>().ok();
                } else if k.eq_ignore_ascii_case("transfer-encoding") {
                    chunked = v.to_ascii_lowercase().contains("chunked");
                } else if k.eq_ignore_ascii_case("connection") {
                    close = v.eq_ignore_ascii_case("close");
                }
            }
        }
        assert!(!close, "the server closes the keep-alive connection");
        self.body.clear();
        if chunked {
            loop {
                self.line.clear();
                self.r.read_line(&mut self.line).expect("read chunk size");
                let size = usize::from_str_radix(
                    self.line.trim_end().split(';').next().unwrap_or("").trim(),
                    16,
                )
                .unwrap_or_else(|_| panic!("bad chunk size {:?}", self.line));
                let at = self.body.len();
                self.body.resize(at + size + 2, 0);
                self.r.read_exact(&mut self.body[at..]).expect("read chunk");
                self.body.truncate(at + size);
                if size == 0 {
                    break;
                }
            }
        } else {
            let n = length.expect("a response with neither Content-Length nor chunked");
            self.body.resize(n, 0);
            self.r.read_exact(&mut self.body).expect("read body");
        }
        status
    }
}

/// One unixsock connection that sends the same command again and again and
/// reads each answer completely (status line and the lines it announces).
struct UnixSession {
    r: BufReader<UnixStream>,
    w: UnixStream,
    cmd: Vec<u8>,
    line: Vec<u8>,
}

impl UnixSession {
    fn new(sock: &Path, command: &str) -> UnixSession {
        let s = UnixStream::connect(sock)
            .unwrap_or_else(|e| panic!("connect unixsock {}: {e}", sock.display()));
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        UnixSession {
            w: s.try_clone().expect("clone socket"),
            r: BufReader::with_capacity(1 << 16, s),
            cmd: format!("{command}\n").into_bytes(),
            line: Vec::with_capacity(256),
        }
    }

    /// One command; the status (the number of lines that followed, or the
    /// negative error code), the last line read in `self.line`.
    fn run(&mut self) -> i64 {
        self.w.write_all(&self.cmd).expect("send unixsock command");
        self.line.clear();
        self.r
            .read_until(b'\n', &mut self.line)
            .expect("read unixsock status");
        let n: i64 = std::str::from_utf8(&self.line)
            .ok()
            .and_then(|l| l.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(-1);
        for _ in 0..n.max(0) {
            self.line.clear();
            self.r
                .read_until(b'\n', &mut self.line)
                .expect("read unixsock line");
        }
        n
    }
}

/// Requests made back to back on one connection, over one or more slices
/// of time: how many, in how long, and collectd's CPU ticks meanwhile.
#[derive(Default)]
struct Rate {
    count: u64,
    secs: f64,
    ticks: u64,
}

impl Rate {
    /// Runs `one` (one request, answer read) again and again for `dur`.
    fn run(&mut self, pid: u32, dur: Duration, mut one: impl FnMut()) {
        let k0 = cpu_ticks(pid);
        let t0 = Instant::now();
        while t0.elapsed() < dur {
            one();
            self.count += 1;
        }
        self.secs += t0.elapsed().as_secs_f64();
        self.ticks += cpu_ticks(pid) - k0;
    }

    /// Requests/s, collectd CPU µs per request (the background rate `bg`
    /// of CPU seconds per second subtracted) and the number of requests.
    fn result(&self, bg: f64) -> (f64, f64, u64) {
        let cpu = (self.ticks as f64 / clk_tck() - bg * self.secs).max(0.0);
        let n = self.count.max(1) as f64;
        (self.count as f64 / self.secs, cpu / n * 1e6, self.count)
    }
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
    OurProm,
    Prom,
    Listval,
}

const EPS: [(Ep, &str); 5] = [
    (Ep::Values, "ours  GET /v1/values"),
    (Ep::Metrics, "ours  GET /v1/metrics"),
    (Ep::OurProm, "ours  GET /metrics (Prometheus text)"),
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

/// Part B's figures for one size N.
struct SizeResult {
    n: usize,
    /// (min, median) ms of each of EPS, in that order.
    ms: [(f64, f64); 5],
    /// Single value on one connection: requests/s and collectd CPU µs per
    /// request, ours (keep-alive HTTP on TCP), unixsock GETVAL, ours
    /// (keep-alive HTTP on the Unix socket, SocketFile).
    single: (f64, f64, f64),
    single_cpu: (f64, f64, f64),
}

impl SizeResult {
    fn med(&self, ep: Ep) -> f64 {
        self.ms[EPS.iter().position(|(e, _)| *e == ep).expect("endpoint")].1
    }
}

/// Seconds each side of the single-value comparison runs.
const SINGLE: Duration = Duration::from_secs(2);
/// ... in this many slices, interleaved with the other side's.
const SINGLE_SLICES: usize = 8;

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
    println!("  machine load at the start: {}", load_avg());
    let floor = transport_floor();
    let mut results = Vec::new();
    for &n in sizes {
        results.push(run_size(n));
    }
    let write = write_path();
    let ingest = ingest_ceiling(&write);
    let sample = sampled();
    summary(&results, &write, &ingest, &sample);
    println!(
        "  transport floor (a do-nothing responder that sleeps in read(2), one connection): \
         {:.0} req/s on TCP loopback, {:.0} on a Unix socket: TCP / Unix = {:.2}",
        floor.0,
        floor.1,
        floor.0 / floor.1
    );
}

/// What one connection can do on each transport with a server that does
/// nothing: threads of this process answer every request with the same
/// fixed HTTP response (about the size of one value list), one on TCP
/// loopback and one on a Unix socket, and the same client as the
/// single-value figures asks again and again, in interleaved slices. The
/// ratio bounds what a server that sleeps in read(2) between requests can
/// reach on TCP against GETVAL, which runs on a Unix socket (and sleeps
/// so). Requests/s on (TCP, Unix).
fn transport_floor() -> (f64, f64) {
    use std::os::unix::net::UnixListener;
    const BODY: &str = "{\"values\":[0.5],\"dstypes\":[\"gauge\"],\"dsnames\":[\"value\"],\
        \"rates\":[0.5],\"time\":1796400000.0,\"interval\":10.0,\"host\":\"host0001\",\
        \"plugin\":\"plugin001\",\"plugin_instance\":\"\",\"type\":\"gauge\",\
        \"type_instance\":\"ti0\",\"meta\":{}}";
    fn answer(mut s: impl Read + Write) {
        let resp = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
             date: Fri, 04 Dec 2026 00:00:00 GMT\r\n\r\n{BODY}",
            BODY.len()
        );
        let mut buf = [0u8; 4096];
        // One request per read: the client sends the next only after the
        // answer.
        while matches!(s.read(&mut buf), Ok(n) if n > 0) {
            if s.write_all(resp.as_bytes()).is_err() {
                return;
            }
        }
    }
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").expect("bind TCP");
    let port = tcp.local_addr().unwrap().port();
    let dir = common::temp_dir("bench-floor");
    let sock = dir.join("floor.sock");
    let unix = UnixListener::bind(&sock).expect("bind Unix socket");
    std::thread::spawn(move || {
        if let Ok((s, _)) = tcp.accept() {
            let _ = s.set_nodelay(true);
            answer(s);
        }
    });
    std::thread::spawn(move || {
        if let Ok((s, _)) = unix.accept() {
            answer(s);
        }
    });
    let mut t = KeepAlive::new(port, "/");
    let mut u = KeepAlive::new_unix(&sock, "/");
    let (mut tn, mut tt, mut un, mut ut) = (0u64, 0.0, 0u64, 0.0);
    let slice = SINGLE / SINGLE_SLICES as u32;
    for i in 0..SINGLE_SLICES * 2 {
        let tcp_turn = i % 4 == 0 || i % 4 == 3;
        let ka = if tcp_turn { &mut t } else { &mut u };
        let t0 = Instant::now();
        let mut k = 0;
        while t0.elapsed() < slice {
            assert_eq!(ka.get(), 200);
            k += 1;
        }
        let dt = t0.elapsed().as_secs_f64();
        if tcp_turn {
            (tn, tt) = (tn + k, tt + dt);
        } else {
            (un, ut) = (un + k, ut + dt);
        }
    }
    drop((t, u));
    let _ = std::fs::remove_dir_all(&dir);
    let r = (tn as f64 / tt, un as f64 / ut);
    println!(
        "  transport floor: a do-nothing responder that sleeps in read(2) answers {:.0} req/s \
         on TCP loopback and {:.0} on a Unix socket (one connection each; TCP / Unix = {:.2})",
        r.0,
        r.1,
        r.0 / r.1
    );
    r
}

/// /proc/loadavg's three load averages.
fn load_avg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// The final table: every per-size figure of Part B across the sizes, with
/// its growth per 10x metrics (10 = linear in N), then the write-path and
/// ingest figures (one size).
fn summary(
    results: &[SizeResult],
    write: &WriteResult,
    ingest: &IngestResult,
    sample: &SampleResult,
) {
    println!();
    println!("Summary (medians; ratio = ours / peer; growth = factor per 10x N, 10 = linear)");
    let mut head = format!("  {:<44}", "figure");
    for r in results {
        head.push_str(&format!(" {:>10}", format!("N={}", r.n)));
    }
    head.push_str(&format!(" {:>8}", "growth"));
    println!("{head}");
    type Row<'a> = (&'a str, Box<dyn Fn(&SizeResult) -> f64>, bool);
    let rows: Vec<Row> = vec![
        (
            "ms  ours GET /metrics",
            Box::new(|r| r.med(Ep::OurProm)),
            true,
        ),
        (
            "ms  write_prometheus GET /metrics",
            Box::new(|r| r.med(Ep::Prom)),
            true,
        ),
        (
            "    ratio (goal <= 0.5)",
            Box::new(|r| r.med(Ep::OurProm) / r.med(Ep::Prom)),
            false,
        ),
        (
            "ms  ours GET /v1/values",
            Box::new(|r| r.med(Ep::Values)),
            true,
        ),
        (
            "    ratio vs write_prometheus /metrics",
            Box::new(|r| r.med(Ep::Values) / r.med(Ep::Prom)),
            false,
        ),
        (
            "ms  ours GET /v1/metrics",
            Box::new(|r| r.med(Ep::Metrics)),
            true,
        ),
        (
            "ms  unixsock LISTVAL",
            Box::new(|r| r.med(Ep::Listval)),
            true,
        ),
        (
            "    ratio",
            Box::new(|r| r.med(Ep::Metrics) / r.med(Ep::Listval)),
            false,
        ),
        (
            "req/s ours keep-alive GET /v1/values/{id}",
            Box::new(|r| r.single.0),
            true,
        ),
        ("req/s unixsock GETVAL", Box::new(|r| r.single.1), true),
        (
            "    ratio (goal >= 1)",
            Box::new(|r| r.single.0 / r.single.1),
            false,
        ),
        (
            "req/s ours the same on SocketFile",
            Box::new(|r| r.single.2),
            true,
        ),
        (
            "    ratio (goal >= 1)",
            Box::new(|r| r.single.2 / r.single.1),
            false,
        ),
        (
            "CPU µs/req ours keep-alive GET one value",
            Box::new(|r| r.single_cpu.0),
            true,
        ),
        (
            "CPU µs/req ours the same on SocketFile",
            Box::new(|r| r.single_cpu.2),
            true,
        ),
        (
            "CPU µs/req unixsock GETVAL",
            Box::new(|r| r.single_cpu.1),
            true,
        ),
    ];
    let (first, last) = match (results.first(), results.last()) {
        (Some(f), Some(l)) => (f, l),
        _ => return,
    };
    let decades = (last.n as f64 / first.n as f64).log10();
    for (label, f, growth) in &rows {
        let mut line = format!("  {label:<44}");
        for r in results {
            let v = f(r);
            line.push_str(&if v >= 1000.0 {
                format!(" {v:>10.0}")
            } else {
                format!(" {v:>10.2}")
            });
        }
        if *growth && decades > 0.0 {
            let g = (f(last) / f(first)).powf(1.0 / decades);
            line.push_str(&format!(" {g:>8.2}"));
        }
        println!("{line}");
    }
    for (label, m) in [
        ("process", &write.process),
        ("write threads", &write.write_threads),
    ] {
        println!(
            "  write path at N={WRITE_N}, collectd CPU, {label}: {}",
            m.line()
        );
    }
    println!(
        "  ingest ceiling at N={WRITE_N} (collectd-tg flat out): {:.0} values/s without rest, \
         {:.0} with rest: {:.3}x, pairs {:.3} ± {:.3} (goal within 5 %: {})",
        ingest.base,
        ingest.rest,
        ingest.rest / ingest.base,
        ingest.pairs.0,
        ingest.pairs.1,
        ingest.verdict()
    );
    if let Some((p, sp)) = ingest.predicted {
        println!(
            "  ingest ceiling predicted from CPU per value (rest's marginal CPU on the write \
             threads): {p:.3} ± {sp:.3}x"
        );
    }
    for (n, r) in &sample.ratio {
        match r {
            Ok((r, se)) => println!(
                "  write path by sampling at {n} metrics (perf, rest and write_prometheus in one \
                 collectd): rest / write_prometheus {r:.3} ± {se:.3} (goal <= 0.5)"
            ),
            Err(e) => println!("  write path by sampling at {n} metrics: not measured ({e})"),
        }
    }
    match &sample.ceiling {
        Ok((c, se)) => println!(
            "  ingest ceiling by sampling (1 - rest's share of collectd's CPU, flat out): \
             {c:.3} ± {se:.3}x (goal >= 0.95)"
        ),
        Err(e) => println!("  ingest ceiling by sampling: not measured ({e})"),
    }
    println!("  machine load at the end: {}", load_avg());
}

fn run_size(n: usize) -> SizeResult {
    let udp = free_udp_port();
    let prom = common::free_port();
    let extra = format!(
        "<Plugin network>\n  Listen \"127.0.0.1\" \"{udp}\"\n</Plugin>\n\
         <Plugin write_prometheus>\n  Host \"127.0.0.1\"\n  Port \"{prom}\"\n</Plugin>"
    );
    progress(&format!("B: N={n}: starting collectd"));
    let sock_dir = common::temp_dir("bench-api-sock");
    let api_sock = sock_dir.join("api.sock");
    let c = Collectd::start(
        Setup::default()
            .load(&["network", "write_prometheus"])
            .extra(&extra)
            .rest(&format!("SocketFile \"{}\"", api_sock.display()))
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
    let _tg = LoadGen::start(&tg_args, 900, &tg_err);

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
    // A collectd-tg metric for the single-value figures (from /v1/metrics).
    let mut one_id = String::new();
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
                        let j = r.json();
                        let list = j["metrics"].as_array().cloned().unwrap_or_default();
                        one_id = list
                            .iter()
                            .filter_map(|m| m["identifier"].as_str())
                            .find(|id| {
                                let mut p = id.split('/');
                                is_tg(p.next().unwrap_or(""), p.next().unwrap_or(""))
                            })
                            .unwrap_or_default()
                            .to_string();
                        list.len()
                    } else {
                        res[k].items
                    };
                    (dt, r.body.len(), items)
                }
                Ep::OurProm => {
                    let (dt, r) = timed_get(c.port, "/metrics", cap);
                    (dt, r.body.len(), count_prom(&r.body))
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

    // One value, asked for again and again on one connection: ours over
    // HTTP/1.1 keep-alive, collectd's unixsock GETVAL.
    assert!(
        !one_id.is_empty(),
        "no collectd-tg metric in GET /v1/metrics"
    );
    progress(&format!("B: N={n}: single value {one_id}"));
    let path = format!("/v1/values/{one_id}");
    let mut http = KeepAlive::new(c.port, &path);
    assert_eq!(
        http.get(),
        200,
        "GET {path}: {}",
        String::from_utf8_lossy(&http.body)
    );
    let first: serde_json::Value = serde_json::from_slice(&http.body).expect("JSON value list");
    assert!(
        first["values"].as_array().is_some_and(|v| !v.is_empty()),
        "GET {path}: no values in {first}"
    );
    let one_bytes = http.body.len();
    let mut us = UnixSession::new(&sock, &format!("GETVAL \"{one_id}\""));
    assert!(
        us.run() >= 1,
        "GETVAL {one_id}: {}",
        String::from_utf8_lossy(&us.line)
    );
    let getval_line = String::from_utf8_lossy(&us.line).trim_end().to_string();
    let mut uhttp = KeepAlive::new_unix(&api_sock, &path);
    assert_eq!(uhttp.get(), 200, "GET {path} on {}", api_sock.display());
    // Slices of each, interleaved A-B-C-C-B-A..., so that all see the same
    // machine conditions; the connections stay open throughout.
    let (mut http_rate, mut getval_rate, mut unix_rate) =
        (Rate::default(), Rate::default(), Rate::default());
    let slice = SINGLE / SINGLE_SLICES as u32;
    for i in 0..SINGLE_SLICES * 3 {
        let k = if (i / 3) % 2 == 0 { i % 3 } else { 2 - i % 3 };
        match k {
            0 => http_rate.run(pid, slice, || {
                let status = http.get();
                if status != 200 {
                    panic!("GET {path}: {status}");
                }
            }),
            1 => getval_rate.run(pid, slice, || {
                if us.run() < 1 {
                    panic!("GETVAL {one_id}: {}", String::from_utf8_lossy(&us.line));
                }
            }),
            _ => unix_rate.run(pid, slice, || {
                let status = uhttp.get();
                if status != 200 {
                    panic!("GET {path} on the Unix socket: {status}");
                }
            }),
        }
    }
    drop((http, us, uhttp));
    let (unix_rps, unix_cpu, unix_n) = unix_rate.result(bg_rate);
    let (ours_rps, ours_cpu, ours_n) = http_rate.result(bg_rate);
    let (getval_rps, getval_cpu, getval_n) = getval_rate.result(bg_rate);

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
    let mut medians = [(0.0, 0.0); 5];
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
        "  ours GET /metrics vs write_prometheus /metrics: {} (goal <= 0.5x) ; {} vs {} bytes",
        ratio(medians[2].1, medians[3].1),
        res[2].bytes,
        res[3].bytes
    );
    println!(
        "  ours GET /v1/values vs write_prometheus /metrics: {} ; {} vs {} bytes",
        ratio(medians[0].1, medians[3].1),
        res[0].bytes,
        res[3].bytes
    );
    println!(
        "  ours GET /v1/metrics vs unixsock LISTVAL: {} ; {} vs {} bytes",
        ratio(medians[1].1, medians[4].1),
        res[1].bytes,
        res[4].bytes
    );
    println!(
        "  single value {one_id}, one connection each, {:.0} s each in {SINGLE_SLICES} \
         interleaved slices:",
        SINGLE.as_secs_f64()
    );
    println!(
        "    ours  keep-alive GET {path}: {ours_rps:>8.0} req/s ({ours_n} requests, \
         {one_bytes} body bytes), collectd CPU {ours_cpu:.1} µs/req"
    );
    println!(
        "    peer  unixsock GETVAL:{:>w$} {getval_rps:>8.0} req/s ({getval_n} requests, \
         answer {getval_line:?}), collectd CPU {getval_cpu:.1} µs/req",
        "",
        w = path.len().saturating_sub(6)
    );
    println!(
        "    ours  on SocketFile:{:>w$} {unix_rps:>8.0} req/s ({unix_n} requests), \
         collectd CPU {unix_cpu:.1} µs/req",
        "",
        w = path.len().saturating_sub(4)
    );
    println!(
        "    ours / GETVAL: {:.2}x the request rate on TCP, {:.2}x on the Unix socket \
         (goal >= 1)",
        ours_rps / getval_rps,
        unix_rps / getval_rps
    );
    drop(c);
    let _ = std::fs::remove_dir_all(&sock_dir);
    SizeResult {
        n,
        ms: medians,
        single: (ours_rps, getval_rps, unix_rps),
        single_cpu: (ours_cpu, getval_cpu, unix_cpu),
    }
}

// ------------------------------------------- Part B: write path, ingest --

/// Metrics collectd-tg sends in the write-path and ingest figures (one size
/// only: each figure needs collectds of its own).
const WRITE_N: usize = 10_000;
/// Hosts among them (as run_size picks for 10000).
const WRITE_HOSTS: usize = 100;
/// collectd-tg's interval in the write-path figure: 10000 value lists every
/// 0.25 s, 40000 values/s requested, well below the ingest ceiling.
const WRITE_INTERVAL: &str = "0.25";
/// collectd-tg's interval in the ingest figure: 10 million values/s
/// requested, i.e. as fast as collectd-tg can send.
const FLAT_INTERVAL: &str = "0.001";
/// The write-path window: WRITE_CHUNKS back-to-back chunks of WRITE_CHUNK.
const WRITE_CHUNK: Duration = Duration::from_secs(3);
const WRITE_CHUNKS: usize = 8;
/// Idle time of the write-path collectds before the load.
const WRITE_IDLE: Duration = Duration::from_secs(2);
const INGEST_WINDOW: Duration = Duration::from_secs(3);
/// The ingest windows, each on a fresh collectd: baseline (no writer) and
/// rest, balanced (B-R-R-B-B-R-R-B-B-R) against a drift of the machine's
/// load.
const INGEST_ORDER: [Writer; 10] = [
    Writer::None,
    Writer::Rest,
    Writer::Rest,
    Writer::None,
    Writer::None,
    Writer::Rest,
    Writer::Rest,
    Writer::None,
    Writer::None,
    Writer::Rest,
];
/// From the start of collectd-tg to the start of a window: collectd-tg
/// sends its first values 1 s after it starts, and the network plugin's
/// counters are rates over the last 1 s.
const WARM_UP: Duration = Duration::from_millis(2500);

#[derive(Clone, Copy, PartialEq, Debug)]
enum Writer {
    None,
    Prom,
    Rest,
    /// write_prometheus and rest in the same collectd (B-sample).
    Both,
}

impl Writer {
    fn name(self) -> &'static str {
        match self {
            Writer::None => "baseline (no writer)",
            Writer::Prom => "write_prometheus",
            Writer::Rest => "rest",
            Writer::Both => "rest + write_prometheus",
        }
    }

    fn prom(self) -> bool {
        matches!(self, Writer::Prom | Writer::Both)
    }

    fn rest(self) -> bool {
        matches!(self, Writer::Rest | Writer::Both)
    }
}

/// A collectd for the write-path and ingest figures: network (with
/// ReportStats), unixsock, logfile and at most one writer; Interval 1 (the
/// network plugin's and collectd's own counters every second), Timeout
/// 10000 (no metric expires between windows, so a later window creates none),
/// CollectInternalStats and a write queue bounded at 1000000 values.
struct Lab {
    c: Collectd,
    udp: u16,
    writer: Writer,
    /// The metrics collectd-tg sends it.
    metrics: usize,
}

/// A lab for WRITE_N metrics.
fn start_lab(writer: Writer) -> Lab {
    start_lab_n(writer, WRITE_N)
}

/// A lab for collectd-tg's `metrics` metrics.
fn start_lab_n(writer: Writer, metrics: usize) -> Lab {
    let dir = common::temp_dir("bench-write");
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).expect("create plugin dir");
    let mut load = vec!["logfile", "unixsock", "network"];
    if writer.prom() {
        load.push("write_prometheus");
    }
    for p in &load {
        let src = Path::new(common::SYSTEM_PLUGIN_DIR).join(format!("{p}.so"));
        std::fs::copy(&src, plugins.join(format!("{p}.so")))
            .unwrap_or_else(|e| panic!("copy {}: {e}", src.display()));
    }
    if writer.rest() {
        std::fs::copy(common::plugin_so(), plugins.join("rest.so")).expect("copy rest.so");
    }
    let udp = free_udp_port();
    let port = common::free_port();
    // write_prometheus's port when rest has `port` too.
    let prom_port = if writer == Writer::Both {
        common::free_port()
    } else {
        port
    };
    let d = dir.display();
    let mut conf = format!(
        "Hostname \"{host}\"\nFQDNLookup false\nBaseDir \"{d}\"\nPIDFile \"{d}/collectd.pid\"\n\
         PluginDir \"{d}/plugins\"\nTypesDB \"{types}\"\nInterval 1\nTimeout 10000\n\
         CollectInternalStats true\nWriteQueueLimitHigh 1000000\nWriteQueueLimitLow 1000000\n\
         LoadPlugin logfile\n<Plugin logfile>\n  LogLevel info\n  File \"{d}/collectd.log\"\n  \
         PrintSeverity true\n</Plugin>\n\
         LoadPlugin unixsock\n<Plugin unixsock>\n  SocketFile \"{d}/sock\"\n</Plugin>\n\
         LoadPlugin network\n<Plugin network>\n  Listen \"127.0.0.1\" \"{udp}\"\n  \
         ReportStats true\n</Plugin>\n",
        host = common::HOSTNAME,
        types = common::TYPES_DB,
    );
    if writer == Writer::None {
        // No writer at all would make collectd complain about every value;
        // a post-cache chain that stops instead keeps the cache update and
        // skips only the writing.
        conf.push_str(
            "PostCacheChain \"PostCache\"\n<Chain \"PostCache\">\n  Target \"stop\"\n</Chain>\n",
        );
    }
    if writer.prom() {
        conf.push_str(&format!(
            "LoadPlugin write_prometheus\n<Plugin write_prometheus>\n  Host \"127.0.0.1\"\n  \
             Port \"{prom_port}\"\n</Plugin>\n"
        ));
    }
    if writer.rest() {
        conf.push_str(&format!(
            "LoadPlugin rest\n<Plugin rest>\n  Listen \"127.0.0.1\" \"{port}\"\n</Plugin>\n"
        ));
    }
    let path = dir.join("collectd.conf");
    std::fs::write(&path, conf).expect("write collectd.conf");
    let c = Collectd::launch(Setup::default(), port, dir, &path);
    let sock = c.socket();
    common::wait_for(
        &format!("collectd ({}) to report network stats", writer.name()),
        Duration::from_secs(20),
        || {
            if c.exited() {
                panic!("collectd ({}) exited:\n{}", writer.name(), c.all_output());
            }
            getval(&sock, "network/total_values-dispatch-accepted")
        },
    );
    let mut http = Vec::new();
    if writer.rest() {
        http.push((port, "/v1/health"));
    }
    if writer.prom() {
        http.push((prom_port, "/metrics"));
    }
    for (port, path) in http {
        common::wait_for(
            &format!("{} to answer {path}", writer.name()),
            Duration::from_secs(20),
            || {
                common::try_request(port, "GET", path, &[], b"")
                    .ok()
                    .filter(|r| r.status == 200)
            },
        );
    }
    Lab {
        c,
        udp,
        writer,
        metrics,
    }
}

/// The first value GETVAL "testhost/`id`" answers (counters and derives as
/// rates per second), if collectd has the metric.
fn getval(sock: &Path, id: &str) -> Option<f64> {
    let s = UnixStream::connect(sock).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    (&s).write_all(format!("GETVAL \"{}/{id}\"\n", common::HOSTNAME).as_bytes())
        .ok()?;
    let mut r = BufReader::new(&s);
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let n: i64 = line.split_whitespace().next()?.parse().ok()?;
    if n < 1 {
        return None;
    }
    line.clear();
    r.read_line(&mut line).ok()?;
    line.trim_end().split_once('=')?.1.parse().ok()
}

/// collectd-tg's arguments for `n` metrics over n / 100 hosts (as
/// run_size picks), sent to UDP port `udp` every `interval`.
fn tg_args(udp: u16, interval: &str, n: usize) -> Vec<String> {
    [
        "-n",
        &n.to_string(),
        "-H",
        &(n / 100).max(1).to_string(),
        "-p",
        "20",
        "-i",
        interval,
        "-d",
        "127.0.0.1",
        "-D",
        &udp.to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// One measuring window on a loaded lab collectd.
struct Window {
    secs: f64,
    /// collectd's CPU seconds (utime + stime) in the window.
    cpu: f64,
    /// The CPU seconds of collectd's write threads (`writer#N`) alone (from
    /// schedstat), which run the cache, the filter chains and every write
    /// callback.
    write_cpu: f64,
    /// collectd-tg's CPU seconds, if known.
    tg_cpu: Option<f64>,
    /// Mean of the network plugin's dispatch-accepted rate (values/s), over
    /// the readings collectd made during the window.
    accepted: f64,
    /// Mean rate of values collectd's write queue dropped, same readings.
    dropped: f64,
    /// The network plugin's receive queue (packets) at the start and end.
    backlog: (f64, f64),
}

impl Window {
    fn processed(&self) -> f64 {
        self.accepted - self.dropped
    }

    /// Values processed in the window.
    fn values(&self) -> f64 {
        self.processed() * self.secs
    }
}

/// CPU time in ns of the threads of `pid` named `writer#N` (collectd's
/// write threads), from /proc/PID/task/TID/schedstat (ns, where utime and
/// stime come in 10 ms ticks per thread).
fn write_thread_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(|t| t.ok())
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.starts_with("writer#"))
        })
        .filter_map(|t| {
            std::fs::read_to_string(t.path().join("schedstat"))
                .ok()?
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

/// Measures the loaded `labs` (with their collectd-tg pids) for `dur`, all
/// in the same window: collectd's CPU ticks around it, and the network
/// plugin's dispatch-accepted rate and collectd's write-queue drop rate as
/// GETVAL answers them (each a rate over collectd's last 1 s interval).
/// Only readings that change during the window count, so each covers a
/// second that ended inside it.
fn measure(labs: &[(&Lab, Option<u32>)], dur: Duration) -> Vec<Window> {
    let tck = clk_tck();
    let accepted_id = "network/total_values-dispatch-accepted";
    let dropped_id = "collectd-write_queue/derive-dropped";
    struct State {
        backlog0: f64,
        last: Option<f64>,
        k0: u64,
        w0: u64,
        g0: Option<u64>,
        acc: Vec<f64>,
        dropped: Vec<f64>,
    }
    let mut st: Vec<State> = labs
        .iter()
        .map(|(lab, tg)| {
            let sock = lab.c.socket();
            State {
                backlog0: getval(&sock, "network/queue_length").unwrap_or(f64::NAN),
                last: getval(&sock, accepted_id),
                k0: cpu_ticks(lab.c.pid()),
                w0: write_thread_ns(lab.c.pid()),
                g0: tg.and_then(try_cpu_ticks),
                acc: Vec::new(),
                dropped: Vec::new(),
            }
        })
        .collect();
    let t0 = Instant::now();
    while t0.elapsed() < dur {
        std::thread::sleep(Duration::from_millis(200));
        for ((lab, _), s) in labs.iter().zip(st.iter_mut()) {
            let sock = lab.c.socket();
            let a = getval(&sock, accepted_id);
            if a.is_some() && a != s.last {
                s.acc.push(a.unwrap_or(0.0));
                s.dropped.push(getval(&sock, dropped_id).unwrap_or(0.0));
                s.last = a;
            }
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    labs.iter()
        .zip(st)
        .map(|((lab, tg), s)| {
            let pid = lab.c.pid();
            let cpu = (cpu_ticks(pid) - s.k0) as f64 / tck;
            let write_cpu = write_thread_ns(pid).saturating_sub(s.w0) as f64 / 1e9;
            if lab.c.exited() {
                panic!(
                    "collectd ({}) exited while measured:\n{}",
                    lab.writer.name(),
                    lab.c.all_output()
                );
            }
            assert!(
                !s.acc.is_empty(),
                "collectd ({}) reported no network counters in {secs:.1} s",
                lab.writer.name()
            );
            let tg_cpu = match (s.g0, tg.and_then(try_cpu_ticks)) {
                (Some(a), Some(b)) => Some((b - a) as f64 / tck),
                _ => None,
            };
            Window {
                secs,
                cpu,
                write_cpu,
                tg_cpu,
                accepted: mean(&s.acc),
                dropped: mean(&s.dropped),
                backlog: (
                    s.backlog0,
                    getval(&lab.c.socket(), "network/queue_length").unwrap_or(f64::NAN),
                ),
            }
        })
        .collect()
}

/// Starts collectd-tg at `interval` against `lab`.
fn start_tg(lab: &Lab, interval: &str) -> LoadGen {
    LoadGen::start(
        &tg_args(lab.udp, interval, lab.metrics),
        120,
        &lab.c.dir.join("collectd-tg.stderr"),
    )
}

/// Waits until the cache of each of `labs` holds (nearly) all the metrics
/// collectd-tg sends it and WARM_UP has passed since `t0` (when
/// collectd-tg started).
fn warm_up(labs: &[&Lab], t0: Instant, what: &str) {
    for lab in labs {
        let sock = lab.c.socket();
        // collectd-tg draws type instances at random: a rare duplicate
        // identifier leaves fewer distinct metrics.
        let want = lab.metrics as f64 * 0.99;
        common::wait_for(
            &format!(
                "{what}: collectd ({}) to hold {} metrics",
                lab.writer.name(),
                lab.metrics
            ),
            Duration::from_secs(60),
            || getval(&sock, "collectd-cache/cache_size").filter(|n| *n >= want),
        );
    }
    if let Some(rest) = WARM_UP.checked_sub(t0.elapsed()) {
        std::thread::sleep(rest);
    }
}

/// One way of counting the write path's CPU: µs per value of the
/// baseline, write_prometheus and rest over the whole window, and the
/// marginal costs (minus the baseline) with their standard errors from the
/// chunks.
struct Marginal {
    per_value: [f64; 3],
    /// write_prometheus - baseline: (mean over the chunks, standard error).
    prom: (f64, f64),
    /// rest - baseline: (mean over the chunks, standard error).
    rest: (f64, f64),
}

impl Marginal {
    /// `chunks[c][k]`: µs per value of writer k in chunk c.
    fn new(per_value: [f64; 3], chunks: &[[f64; 3]]) -> Marginal {
        let stat = |f: &dyn Fn(&[f64; 3]) -> f64| {
            let v: Vec<f64> = chunks.iter().map(f).collect();
            let n = v.len() as f64;
            let mean = v.iter().sum::<f64>() / n;
            let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
            (mean, (var / n).sqrt())
        };
        Marginal {
            per_value,
            prom: stat(&|c| c[1] - c[0]),
            rest: stat(&|c| c[2] - c[0]),
        }
    }

    /// (rest - baseline) / (write_prometheus - baseline), over the window.
    fn ratio(&self) -> f64 {
        let v = &self.per_value;
        (v[2] - v[0]) / (v[1] - v[0])
    }

    /// The ratio's standard error, propagated from the marginals' (r = b/a:
    /// sigma_r^2 = (sigma_b/a)^2 + (b sigma_a/a^2)^2).
    fn sigma(&self) -> f64 {
        let ((a, sa), (b, sb)) = (self.prom, self.rest);
        ((sb / a).powi(2) + (b * sa / (a * a)).powi(2)).sqrt()
    }

    /// Whether the ratio meets "<= 0.5", and how firmly.
    fn verdict(&self) -> String {
        let (a, sa) = self.prom;
        if a <= 2.0 * sa {
            return "inconclusive: write_prometheus's marginal cost is within the noise".into();
        }
        let (r, s) = (self.ratio(), self.sigma());
        let v = if r <= 0.5 { "met" } else { "NOT met" };
        if (r - 0.5).abs() < s {
            format!("{v}, but within one standard error of 0.5")
        } else {
            v.into()
        }
    }

    fn line(&self) -> String {
        let v = &self.per_value;
        format!(
            "baseline {:.2}, write_prometheus {:.2}, rest {:.2} µs per value; marginal \
             write_prometheus {:.2} ± {:.2}, rest {:.2} ± {:.2}; (rest - baseline) / \
             (write_prometheus - baseline) = {:.2} ± {:.2} (goal <= 0.5: {})",
            v[0],
            v[1],
            v[2],
            self.prom.0,
            self.prom.1,
            self.rest.0,
            self.rest.1,
            self.ratio(),
            self.sigma(),
            self.verdict()
        )
    }
}

/// Write path, per value: collectd's CPU per value received with each
/// writer, for the whole process and for its write threads.
struct WriteResult {
    process: Marginal,
    write_threads: Marginal,
}

fn write_path() -> WriteResult {
    let writers = [Writer::None, Writer::Prom, Writer::Rest];
    progress(&format!(
        "B-write: 3 collectds, each with collectd-tg -n {WRITE_N} -i {WRITE_INTERVAL}"
    ));
    let labs: Vec<Lab> = writers.iter().map(|w| start_lab(*w)).collect();
    let tck = clk_tck();
    let load0 = load_avg();
    // Each collectd's own idle CPU rate (reading its plugins' counters,
    // rest's chores), before the load.
    let idle0: Vec<u64> = labs.iter().map(|l| cpu_ticks(l.c.pid())).collect();
    let it = Instant::now();
    std::thread::sleep(WRITE_IDLE);
    let idle: Vec<f64> = labs
        .iter()
        .zip(&idle0)
        .map(|(l, k)| (cpu_ticks(l.c.pid()) - k) as f64 / tck / it.elapsed().as_secs_f64())
        .collect();
    let t0 = Instant::now();
    let tgs: Vec<LoadGen> = labs.iter().map(|l| start_tg(l, WRITE_INTERVAL)).collect();
    let refs: Vec<&Lab> = labs.iter().collect();
    warm_up(&refs, t0, "write path");
    progress("B-write: measuring");
    let with_tg: Vec<(&Lab, Option<u32>)> = labs
        .iter()
        .zip(&tgs)
        .map(|(l, g)| (l, g.tg_pid()))
        .collect();
    // chunks[c][k]: chunk c of writer k.
    let chunks: Vec<Vec<Window>> = (0..WRITE_CHUNKS)
        .map(|_| measure(&with_tg, WRITE_CHUNK))
        .collect();
    drop(tgs);

    let per = |w: &Window, k: usize| (w.cpu - idle[k] * w.secs) / w.values() * 1e6;
    let per_wt = |w: &Window| w.write_cpu / w.values() * 1e6;
    let mut per_value = [0.0; 3];
    let mut per_value_wt = [0.0; 3];
    println!();
    println!(
        "B-write. write path: collectd CPU per value received (N={WRITE_N} metrics, \
         collectd-tg -n {WRITE_N} -H {WRITE_HOSTS} -p 20 -i {WRITE_INTERVAL}, {} values/s \
         requested per collectd)",
        (WRITE_N as f64 / WRITE_INTERVAL.parse::<f64>().unwrap_or(1.0)) as u64
    );
    println!(
        "  3 collectds (network + unixsock + one writer), all loaded at once for {} x {:.0} s, \
         so that they share the machine's conditions; values = the network plugin's \
         dispatch-accepted rate x window; CPU = utime+stime minus that collectd's idle rate \
         ({:.0} s before the load); \"all\" = the process (/proc/PID/stat), \"wt\" = its \
         write threads only (schedstat), which run collectd's cache, the filter chains and the \
         write callbacks",
        WRITE_CHUNKS,
        WRITE_CHUNK.as_secs_f64(),
        WRITE_IDLE.as_secs_f64()
    );
    let mut head = format!(
        "  {:<22} {:>9} {:>7} {:>7} {:>7} {:>10} {:>9}",
        "writer", "values/s", "CPU %", "idle %", "drop/s", "µs/v all", "µs/v wt"
    );
    for c in 0..WRITE_CHUNKS {
        head.push_str(&format!(" {:>6}", format!("all{}", c + 1)));
    }
    println!("{head}");
    for (k, lab) in labs.iter().enumerate() {
        let ws: Vec<&Window> = chunks.iter().map(|c| &c[k]).collect();
        let secs: f64 = ws.iter().map(|w| w.secs).sum();
        let values: f64 = ws.iter().map(|w| w.values()).sum();
        let cpu: f64 = ws.iter().map(|w| w.cpu - idle[k] * w.secs).sum();
        per_value[k] = cpu / values * 1e6;
        per_value_wt[k] = ws.iter().map(|w| w.write_cpu).sum::<f64>() / values * 1e6;
        let mut line = format!(
            "  {:<22} {:>9.0} {:>7.1} {:>7.2} {:>7.0} {:>10.2} {:>9.2}",
            lab.writer.name(),
            values / secs,
            ws.iter().map(|w| w.cpu).sum::<f64>() / secs * 100.0,
            idle[k] * 100.0,
            ws.iter().map(|w| w.dropped * w.secs).sum::<f64>() / secs,
            per_value[k],
            per_value_wt[k]
        );
        for w in &ws {
            line.push_str(&format!(" {:>6.2}", per(w, k)));
        }
        println!("{line}");
    }
    let r = WriteResult {
        process: Marginal::new(
            per_value,
            &chunks
                .iter()
                .map(|c| [per(&c[0], 0), per(&c[1], 1), per(&c[2], 2)])
                .collect::<Vec<_>>(),
        ),
        write_threads: Marginal::new(
            per_value_wt,
            &chunks
                .iter()
                .map(|c| [per_wt(&c[0]), per_wt(&c[1]), per_wt(&c[2])])
                .collect::<Vec<_>>(),
        ),
    };
    println!(
        "  process:       {}\n  write threads: {}",
        r.process.line(),
        r.write_threads.line()
    );
    println!(
        "  (± = standard error over the {WRITE_CHUNKS} chunks of {:.0} s); machine load {load0} \
         -> {}",
        WRITE_CHUNK.as_secs_f64(),
        load_avg()
    );
    r
}

/// Ingest ceiling: values/s collectd works off with collectd-tg flat out.
struct IngestResult {
    base: f64,
    rest: f64,
    /// rest/baseline of neighbouring windows: (mean, standard error).
    pairs: (f64, f64),
    /// The ratio predicted from CPU per value: (ratio, standard error).
    predicted: Option<(f64, f64)>,
}

impl IngestResult {
    /// Whether rest keeps the ceiling within 5 % (by the means), and how
    /// firmly (by the pairs).
    fn verdict(&self) -> String {
        let ratio = self.rest / self.base;
        let v = if ratio >= 0.95 { "met" } else { "NOT met" };
        if (ratio - 0.95).abs() < self.pairs.1.max(0.0) {
            format!("{v}, but within one standard error of 0.95")
        } else {
            v.into()
        }
    }
}

/// `write`: B-write's result, for the ceiling predicted from CPU per value.
fn ingest_ceiling(write: &WriteResult) -> IngestResult {
    progress(&format!(
        "B-ingest: collectd-tg -n {WRITE_N} -i {FLAT_INTERVAL} (flat out)"
    ));
    println!();
    println!(
        "B-ingest. ingest ceiling: collectd-tg flat out (-n {WRITE_N} -H {WRITE_HOSTS} -p 20 \
         -i {FLAT_INTERVAL}), network + unixsock, without and with rest (no other writer); \
         a fresh collectd per {:.0} s window, {} windows in the order {}",
        INGEST_WINDOW.as_secs_f64(),
        INGEST_ORDER.len(),
        INGEST_ORDER
            .iter()
            .map(|w| if *w == Writer::Rest { "R" } else { "B" })
            .collect::<Vec<_>>()
            .join("-")
    );
    println!(
        "  {:<22} {:>12} {:>9} {:>8} {:>11} {:>10} {:>9} {:>17} {:>9}",
        "collectd",
        "processed/s",
        "accept/s",
        "drop/s",
        "collectd %",
        "per CPU-s",
        "tg %",
        "backlog packets",
        "VmRSS MiB"
    );
    let (mut base, mut rest) = (Vec::new(), Vec::new());
    let mut all = Vec::new();
    // The baseline windows' collectd CPU seconds and values processed.
    let (mut base_cpu, mut base_values) = (0.0, 0.0);
    for writer in INGEST_ORDER {
        progress(&format!("B-ingest: {}", writer.name()));
        let lab = start_lab(writer);
        let t0 = Instant::now();
        let tg = start_tg(&lab, FLAT_INTERVAL);
        warm_up(&[&lab], t0, "ingest");
        let w = measure(&[(&lab, tg.tg_pid())], INGEST_WINDOW).remove(0);
        let rss = vm_rss_kb(&lab.c.pid().to_string()) as f64 / 1024.0;
        drop(tg);
        drop(lab);
        println!(
            "  {:<22} {:>12.0} {:>9.0} {:>8.0} {:>11.1} {:>10.0} {:>9} {:>17} {:>9.0}",
            writer.name(),
            w.processed(),
            w.accepted,
            w.dropped,
            w.cpu / w.secs * 100.0,
            w.processed() * w.secs / w.cpu.max(1e-9),
            w.tg_cpu
                .map_or("?".into(), |c| format!("{:.1}", c / w.secs * 100.0)),
            format!("{:.0} -> {:.0}", w.backlog.0, w.backlog.1),
            rss
        );
        if w.backlog.1 <= w.backlog.0 {
            println!(
                "    (the receive backlog did not grow: collectd kept up, so this is not its \
                 ceiling)"
            );
        }
        match writer {
            Writer::Rest => rest.push(w.processed()),
            _ => {
                base.push(w.processed());
                base_cpu += w.cpu;
                base_values += w.processed() * w.secs;
            }
        }
        all.push((writer, w.processed()));
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let range = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        format!("{:.0} .. {:.0}", v[0], v[v.len() - 1])
    };
    // rest / baseline of each pair of neighbouring windows (B-R, R-B, ...).
    let pairs: Vec<f64> = all
        .chunks(2)
        .filter_map(|p| match p {
            [(Writer::Rest, r), (_, b)] | [(_, b), (Writer::Rest, r)] => Some(r / b),
            _ => None,
        })
        .collect();
    let pm = mean(&pairs);
    let pse = (pairs.iter().map(|x| (x - pm).powi(2)).sum::<f64>()
        / (pairs.len() as f64 - 1.0).max(1.0)
        / pairs.len() as f64)
        .sqrt();
    // With collectd CPU-bound, its ceiling is inversely proportional to its
    // CPU per value: c / (c + m), c the baseline's µs per value here, m
    // rest's marginal µs per value on the write threads (B-write).
    let c = base_cpu / base_values.max(1.0) * 1e6;
    let (m, sm) = write.write_threads.rest;
    let predicted = (c > 0.0).then(|| (c / (c + m), c * sm / (c + m).powi(2)));
    let r = IngestResult {
        base: mean(&base),
        rest: mean(&rest),
        pairs: (pm, pse),
        predicted,
    };
    println!(
        "  mean: {:.0} values/s without rest ({}), {:.0} with rest ({}): {:.3}x; pairs of \
         neighbouring windows: rest/baseline {:.3} ± {:.3} (standard error); goal within 5 %: \
         {}; machine load {}",
        r.base,
        range(&mut base),
        r.rest,
        range(&mut rest),
        r.rest / r.base,
        pm,
        pse,
        r.verdict(),
        load_avg()
    );
    if let Some((p, sp)) = r.predicted {
        println!(
            "  predicted from CPU per value (collectd CPU-bound, so its ceiling goes as 1 / CPU \
             per value): {c:.2} µs of collectd CPU per value in the baseline windows, rest's \
             marginal {m:.2} ± {sm:.2} µs per value (B-write, write threads): {p:.3} ± {sp:.3}"
        );
    }
    r
}

/// B-sample's write-path figures: (metrics, collectd-tg's interval), each
/// 40000 values/s requested.
const SAMPLE_WRITE: [(usize, &str); 2] = [(WRITE_N, WRITE_INTERVAL), (1000, "0.025")];
/// B-sample: how long perf samples one collectd.
const SAMPLE_TIME: Duration = Duration::from_secs(20);
/// perf's sampling frequency (per CPU-second of collectd).
const SAMPLE_FREQ: u32 = 999;
/// Time slices of a recording, for the standard errors.
const SAMPLE_SLICES: usize = 10;
/// The shared objects whose code B-sample attributes samples to, as
/// start_lab copies them into the lab's plugin directory.
const SAMPLE_DSOS: [&str; 2] = ["/rest.so)", "/write_prometheus.so)"];

/// One perf recording of a lab collectd, per time slice: samples of the
/// whole process, and samples whose innermost frame in one of SAMPLE_DSOS
/// is in rest.so (`rest`) or write_prometheus.so (`prom`).
#[derive(Clone, Copy, Default)]
struct Slice {
    all: u64,
    rest: u64,
    prom: u64,
}

/// perf's sampling of `lab` for SAMPLE_TIME: `perf record -e cpu-clock`
/// (a software clock, as virtual machines often have no hardware counters)
/// with DWARF call chains (collectd and its plugins have no frame pointers),
/// then `perf script`, each sample attributed by the innermost frame whose
/// shared object is rest.so or write_prometheus.so: all the CPU a plugin's
/// calls take, in the libraries it calls too (libc, the allocator, the
/// kernel for a futex), counts as that plugin's. Err with the reason if perf
/// is missing or fails.
fn perf_slices(lab: &Lab) -> Result<Vec<Slice>, String> {
    let data = lab.c.dir.join("perf.data");
    let out = Command::new("perf")
        .args(["record", "-q", "-e", "cpu-clock", "-F"])
        .arg(SAMPLE_FREQ.to_string())
        .args(["--call-graph", "dwarf,16384", "-p"])
        .arg(lab.c.pid().to_string())
        .arg("-o")
        .arg(&data)
        .args(["--", "sleep"])
        .arg(SAMPLE_TIME.as_secs().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run perf ({e}); apt-get install linux-perf"))?;
    if !out.status.success() || !data.exists() {
        return Err(format!(
            "perf record failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let mut child = Command::new("perf")
        .args(["script", "--no-inline", "-F", "time,ip,dso", "-i"])
        .arg(&data)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run perf script: {e}"))?;
    let stdout = child.stdout.take().ok_or("perf script: no stdout")?;
    // (time, whose) of each sample: whose = Some(k) for SAMPLE_DSOS[k].
    let mut samples: Vec<(f64, Option<usize>)> = Vec::new();
    let mut open = false;
    for line in BufReader::new(stdout).lines() {
        let line = line.map_err(|e| format!("reading perf script: {e}"))?;
        if line.starts_with('\t') {
            // A frame of the current sample's chain, innermost first.
            if open {
                let l = line.trim_end();
                if let Some(k) = SAMPLE_DSOS.iter().position(|d| l.ends_with(d)) {
                    if let Some(s) = samples.last_mut() {
                        s.1 = Some(k);
                    }
                    open = false;
                }
            }
        } else if let Some(t) = line.trim().strip_suffix(':') {
            if let Ok(t) = t.trim().parse::<f64>() {
                samples.push((t, None));
                open = true;
            }
        }
    }
    let status = child.wait().map_err(|e| format!("perf script: {e}"))?;
    // BENCH_PERF_KEEP=DIR keeps the recordings there, for perf report.
    match std::env::var_os("BENCH_PERF_KEEP") {
        Some(keep) => {
            let to =
                Path::new(&keep).join(format!("{}.perf.data", lab.writer.name().replace(' ', "")));
            std::fs::rename(&data, &to)
                .or_else(|_| std::fs::copy(&data, &to).map(|_| ()))
                .map_err(|e| format!("keep {}: {e}", to.display()))?;
            progress(&format!("perf recording kept in {}", to.display()));
        }
        None => {
            let _ = std::fs::remove_file(&data);
        }
    }
    if !status.success() {
        return Err(format!("perf script failed ({status})"));
    }
    let (Some(first), Some(last)) = (samples.first(), samples.last()) else {
        return Err("perf recorded no samples".into());
    };
    let (t0, span) = (first.0, (last.0 - first.0).max(1e-9));
    let mut slices = vec![Slice::default(); SAMPLE_SLICES];
    for (t, whose) in &samples {
        let i = (((t - t0) / span * SAMPLE_SLICES as f64) as usize).min(SAMPLE_SLICES - 1);
        let s = &mut slices[i];
        s.all += 1;
        match whose {
            Some(0) => s.rest += 1,
            Some(_) => s.prom += 1,
            None => {}
        }
    }
    Ok(slices)
}

/// Mean and standard error of `v`.
fn mean_se(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n.max(1.0);
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (mean, (var / n.max(1.0)).sqrt())
}

/// A mean and its standard error, or why it was not measured.
type Measured = Result<(f64, f64), String>;

/// B-sample's figures, each Err with the reason it was not measured.
struct SampleResult {
    /// Per number of metrics: rest's samples / write_prometheus's, same
    /// collectd: (mean over the slices, standard error).
    ratio: Vec<(usize, Measured)>,
    /// 1 - rest's share of collectd's samples flat out: (mean, standard
    /// error).
    ceiling: Result<(f64, f64), String>,
}

/// Write path and ingest ceiling by sampling (see the header: B-sample).
fn sampled() -> SampleResult {
    println!();
    println!(
        "B-sample. perf record -e cpu-clock -F {SAMPLE_FREQ} --call-graph dwarf of one \
         collectd for {:.0} s, each sample attributed by its innermost frame in rest.so or \
         write_prometheus.so (what they call, libc, the allocator, the kernel, counts as \
         theirs); ± = standard error over {SAMPLE_SLICES} slices of the recording",
        SAMPLE_TIME.as_secs_f64()
    );
    let mut ratio = Vec::new();
    for (n, interval) in SAMPLE_WRITE {
        let r = sample_lab(
            Writer::Both,
            interval,
            n,
            &format!(
                "rest and write_prometheus in ONE collectd (network + unixsock), collectd-tg -n \
                 {n} -H {} -p 20 -i {interval}",
                (n / 100).max(1)
            ),
            |s| (s.prom > 0).then(|| s.rest as f64 / s.prom as f64),
        );
        match &r {
            Ok((r, se)) => println!(
                "  write path at {n} metrics: rest's CPU / write_prometheus's, same values, same \
                 collectd: {r:.3} ± {se:.3} (goal <= 0.5: {})",
                if *r <= 0.5 { "met" } else { "NOT met" }
            ),
            Err(e) => println!("  write path at {n} metrics by sampling not measured: {e}"),
        }
        ratio.push((n, r));
    }
    let ceiling = sample_lab(
        Writer::Rest,
        FLAT_INTERVAL,
        WRITE_N,
        &format!("rest alone (network + unixsock), collectd-tg flat out (-i {FLAT_INTERVAL})"),
        |s| (s.all > 0).then(|| 1.0 - s.rest as f64 / s.all as f64),
    );
    match &ceiling {
        Ok((c, se)) => println!(
            "  ingest ceiling: collectd flat out is CPU-bound, so its ceiling with rest is 1 - \
             rest's share of what it would be without: {c:.3} ± {se:.3} (goal >= 0.95: {})",
            if *c >= 0.95 { "met" } else { "NOT met" }
        ),
        Err(e) => println!("  ingest ceiling by sampling not measured: {e}"),
    }
    SampleResult { ratio, ceiling }
}

/// A lab collectd with `writer` under collectd-tg at `interval`, sampled
/// by perf (`perf_slices`) once warm; prints what the samples went to and
/// returns the mean and standard error of `figure` over the slices.
fn sample_lab(
    writer: Writer,
    interval: &str,
    metrics: usize,
    what: &str,
    figure: impl Fn(&Slice) -> Option<f64>,
) -> Result<(f64, f64), String> {
    progress(&format!(
        "B-sample: collectd with {}, collectd-tg -i {interval}, perf for {:.0} s",
        writer.name(),
        SAMPLE_TIME.as_secs_f64()
    ));
    let lab = start_lab_n(writer, metrics);
    let t0 = Instant::now();
    let _tg = start_tg(&lab, interval);
    warm_up(&[&lab], t0, "sample");
    let s = perf_slices(&lab)?;
    let sum = |f: fn(&Slice) -> u64| s.iter().map(f).sum::<u64>();
    let (all, rest, prom) = (sum(|s| s.all), sum(|s| s.rest), sum(|s| s.prom));
    let pct = |x: u64| x as f64 / all.max(1) as f64 * 100.0;
    println!(
        "  {what}: {all} samples of collectd, rest {rest} ({:.2} %), write_prometheus {prom} \
         ({:.2} %)",
        pct(rest),
        pct(prom)
    );
    let per: Vec<f64> = s.iter().filter_map(figure).collect();
    if per.len() < 2 {
        return Err(format!("too few samples in the slices ({all} in all)"));
    }
    Ok(mean_se(&per))
}
