//! The API on the plugin's Unix socket (SocketFile) against a real
//! collectd: connections served on threads of their own (an event stream
//! keeps flowing, a body that comes late is read, idle and slow clients are
//! closed after ClientTimeout, more connections than threads are served
//! too), and a prompt shutdown with connections open.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{wait_for, Collectd, Setup};

/// The connection threads the plugin has at most (conn_thread::MAX_THREADS).
const MAX_THREADS: usize = 16;

fn start(extra: &str) -> (Collectd, PathBuf, PathBuf) {
    let dir = common::temp_dir("unix-socket");
    let sock = dir.join("api.sock");
    let c = Collectd::start(
        Setup::default().rest(&format!("SocketFile \"{}\"\n{extra}", sock.display())),
    );
    (c, sock, dir)
}

fn connect(sock: &Path) -> UnixStream {
    let s = UnixStream::connect(sock).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    s
}

/// Reads until `needle` is in what arrived (or the connection ends, or 10 s
/// pass); returns all of it.
fn read_until(s: &mut impl Read, seen: &mut String, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 4096];
    while !seen.contains(needle) {
        assert!(Instant::now() < deadline, "no {needle:?} in {seen:?}");
        match s.read(&mut buf) {
            Ok(0) => panic!("closed before {needle:?}: {seen:?}"),
            Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("{e}"),
        }
    }
}

/// One GET on an open keep-alive connection; the status and the body.
fn get<S: Read + Write>(s: &mut S, path: &str) -> (u16, String) {
    // In one write, as HTTP clients send a head: pieces would meet Nagle's
    // algorithm on TCP.
    let head = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    s.write_all(head.as_bytes()).unwrap();
    let mut seen = String::new();
    read_until(s, &mut seen, "\r\n\r\n");
    let head_end = seen.find("\r\n\r\n").unwrap() + 4;
    let length: usize = seen[..head_end]
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .expect("Content-Length");
    while seen.len() < head_end + length {
        let mut buf = [0u8; 4096];
        match s.read(&mut buf) {
            Ok(0) => panic!("closed in the body: {seen:?}"),
            Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("{e}"),
        }
    }
    let status = seen[9..12].parse().unwrap();
    (status, seen[head_end..].to_string())
}

/// The thread ids of collectd's threads named `name`.
fn tids_named(pid: u32, name: &str) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|t| {
            let t = t.ok()?;
            let comm = std::fs::read_to_string(t.path().join("comm")).ok()?;
            (comm.trim() == name).then(|| t.file_name().to_string_lossy().into_owned())
        })
        .collect()
}

/// How many threads of collectd are named `name`.
fn threads_named(pid: u32, name: &str) -> usize {
    tids_named(pid, name).len()
}

/// Whether the server has closed `s` (a read sees the end or an error).
fn closed(s: &mut UnixStream) -> bool {
    let mut buf = [0u8; 256];
    match s.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

#[test]
fn an_event_stream_flows_while_its_thread_waits_for_nothing_else() {
    let (c, sock, dir) = start("");
    let mut s = connect(&sock);
    write!(
        s,
        "GET /v1/notifications/stream HTTP/1.1\r\nHost: localhost\r\n\r\n"
    )
    .unwrap();
    let mut seen = String::new();
    read_until(&mut s, &mut seen, ": collectd-rest notifications");
    assert!(seen.starts_with("HTTP/1.1 200"), "{seen}");
    for i in 0..3 {
        let msg = format!("unix stream event {i}");
        let r = c.post_json(
            "/v1/notifications",
            &format!(r#"{{"severity": "warning", "message": "{msg}"}}"#),
        );
        assert_eq!(r.status, 202, "{}", r.text());
        read_until(&mut s, &mut seen, &msg);
    }
    drop(c);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn requests_that_wait_on_the_runtime_are_answered() {
    // A full read (the runtime's blocking pool), a control-thread job
    // (capabilities asks collectd) and a plugin listing, on one connection
    // whose thread waits for them with the runtime's handle.
    let (c, sock, dir) = start("");
    let mut s = connect(&sock);
    for path in ["/v1/values", "/v1/capabilities", "/v1/plugins", "/metrics"] {
        let (status, body) = get(&mut s, path);
        assert_eq!(status, 200, "{path}: {body}");
        let tcp = c.get(path);
        assert_eq!(tcp.status, 200);
        if path != "/metrics" {
            let a: serde_json::Value = serde_json::from_str(&body).unwrap();
            // Same keys as over TCP (values may move on meanwhile).
            let keys = |v: &serde_json::Value| -> Vec<String> {
                v.as_object().unwrap().keys().cloned().collect()
            };
            assert_eq!(keys(&a), keys(&tcp.json()), "{path}");
        }
    }
    drop(c);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_body_that_comes_after_its_head_is_read() {
    let (c, sock, dir) = start("");
    let mut s = connect(&sock);
    let body = r#"{"type": "gauge", "warning_max": 5}"#;
    write!(
        s,
        "PUT /v1/thresholds/late-body HTTP/1.1\r\nHost: localhost\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    // The answer cannot come before the body: the head alone is on its
    // way, and the thread must read the rest without blocking for good.
    let mut seen = String::new();
    let mut buf = [0u8; 256];
    let t = Instant::now();
    while t.elapsed() < Duration::from_millis(300) {
        if let Ok(n) = s.read(&mut buf) {
            assert_eq!(n, 0, "an answer before the body was sent");
        }
    }
    s.write_all(body.as_bytes()).unwrap();
    read_until(&mut s, &mut seen, "\r\n\r\n");
    assert!(seen.starts_with("HTTP/1.1 201"), "{seen}");
    // The same connection serves the next request.
    let (status, text) = get(&mut s, "/v1/thresholds");
    assert_eq!(status, 200);
    assert!(text.contains("late-body"), "{text}");
    drop(c);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn idle_and_slow_clients_are_closed_after_client_timeout() {
    let (c, sock, dir) = start("ClientTimeout 0.5");
    // Idle: nothing sent.
    let mut idle = connect(&sock);
    let t = Instant::now();
    wait_for("the idle connection closed", Duration::from_secs(5), || {
        closed(&mut idle).then_some(())
    });
    let idle_took = t.elapsed();
    // Idle after an answer (keep-alive).
    let mut kept = connect(&sock);
    assert_eq!(get(&mut kept, "/v1/health").0, 200);
    let t = Instant::now();
    wait_for("the kept connection closed", Duration::from_secs(5), || {
        closed(&mut kept).then_some(())
    });
    let kept_took = t.elapsed();
    // Slow: a head one byte every 100 ms, never complete in time.
    let mut slow = connect(&sock);
    slow.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let head = b"GET /v1/health HTTP/1.1\r\nHost: localhost\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let t = Instant::now();
    let mut cut = false;
    for b in head {
        if slow.write_all(&[*b]).is_err() || closed(&mut slow) {
            cut = true;
            break;
        }
    }
    let slow_took = t.elapsed();
    assert!(cut, "a head trickling in over {slow_took:?} was served");
    for (what, took) in [
        ("idle", idle_took),
        ("kept", kept_took),
        ("slow", slow_took),
    ] {
        // ClientTimeout once, at most twice for a head that trickles.
        assert!(
            took >= Duration::from_millis(400) && took < Duration::from_millis(1500),
            "{what} connection closed after {took:?} (ClientTimeout 0.5 s)"
        );
    }
    // The server still answers.
    let mut s = connect(&sock);
    assert_eq!(get(&mut s, "/v1/health").0, 200);
    drop(c);
    let _ = std::fs::remove_dir_all(dir);
}

/// MAX_THREADS + 4 connections made by `connect` are all served (two
/// requests each), MAX_THREADS of them on threads of their own; idle
/// threads end 5 s after their connections, and a new connection gets one
/// again.
fn more_connections_than_threads<S: Read + Write>(pid: u32, connect: impl Fn() -> S) {
    let mut conns: Vec<S> = (0..MAX_THREADS + 4).map(|_| connect()).collect();
    // Twice each, so every connection is past its first request.
    for _ in 0..2 {
        for s in &mut conns {
            assert_eq!(get(s, "/v1/health").0, 200);
        }
    }
    assert_eq!(threads_named(pid, "rest-conn"), MAX_THREADS);
    drop(conns);
    wait_for(
        "the connection threads to end",
        Duration::from_secs(15),
        || (threads_named(pid, "rest-conn") == 0).then_some(()),
    );
    let mut s = connect();
    assert_eq!(get(&mut s, "/v1/health").0, 200);
    assert_eq!(threads_named(pid, "rest-conn"), 1);
}

#[test]
fn more_connections_than_threads_are_all_served() {
    let (c, sock, dir) = start("");
    more_connections_than_threads(c.pid(), || connect(&sock));
    drop(c);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_connection_per_request_reuses_threads() {
    let (c, sock, dir) = start("");
    let pid = c.pid();
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..50 {
        let r = common::unix_request(&sock, "GET", "/v1/health").unwrap();
        assert_eq!(r.status, 200);
        seen.extend(tids_named(pid, "rest-conn"));
    }
    // A thread per request would be 50 threads.
    assert!(
        seen.len() <= 4,
        "{} connection threads for 50 one-shot requests: {seen:?}",
        seen.len()
    );
    drop(c);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn sigterm_with_unix_connections_open_exits_promptly() {
    let (mut c, sock, dir) = start("");
    let mut idle: Vec<UnixStream> = (0..3).map(|_| connect(&sock)).collect();
    for s in &mut idle {
        assert_eq!(get(s, "/v1/health").0, 200);
    }
    let mut stream = connect(&sock);
    write!(
        stream,
        "GET /v1/notifications/stream HTTP/1.1\r\nHost: localhost\r\n\r\n"
    )
    .unwrap();
    let mut seen = String::new();
    read_until(&mut stream, &mut seen, ": collectd-rest notifications");
    let t = Instant::now();
    let status = c.terminate(Duration::from_secs(10));
    let took = t.elapsed();
    assert!(status.success(), "exit status {status}\n{}", c.all_output());
    assert!(took < Duration::from_secs(5), "shutdown took {took:?}");
    let log = c.log();
    assert!(
        log.contains("rest: REST API stopped; no thread of ours is left"),
        "{log}"
    );
    assert!(!sock.exists(), "the socket file is left after a clean stop");
    for s in &mut idle {
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        assert!(closed(s));
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn tokens_are_checked_on_the_unix_socket_too() {
    let (c, sock, dir) = start("AuthToken \"reader\" \"unix-reader-token\"");
    let mut s = connect(&sock);
    let (status, body) = get(&mut s, "/v1/values");
    assert_eq!(status, 401, "{body}");
    write!(
        s,
        "GET /v1/values HTTP/1.1\r\nHost: localhost\r\n\
         Authorization: Bearer unix-reader-token\r\n\r\n"
    )
    .unwrap();
    let mut seen = String::new();
    read_until(&mut s, &mut seen, "\r\n\r\n");
    assert!(seen.starts_with("HTTP/1.1 200"), "{seen}");
    // The health check needs no credentials, as over TCP.
    let mut s = connect(&sock);
    assert_eq!(get(&mut s, "/v1/health").0, 200);
    drop(c);
    let _ = std::fs::remove_dir_all(dir);
}

/// Plain TCP connections get threads of their own too (the same pool of
/// MAX_THREADS), and connections beyond it are served by the runtime.
#[test]
fn tcp_connections_share_the_threads_and_more_are_served() {
    let c = Collectd::start(Setup::default());
    more_connections_than_threads(c.pid(), || {
        let s = std::net::TcpStream::connect(("127.0.0.1", c.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        s
    });
}

/// A /proc/PID/task/TID figure of one thread: `field` of its status file
/// (voluntary_ctxt_switches), or its CPU time in ns (schedstat).
fn thread_figure(pid: u32, tid: &str, field: &str) -> u64 {
    let dir = format!("/proc/{pid}/task/{tid}");
    if field == "cpu_ns" {
        let s = std::fs::read_to_string(format!("{dir}/schedstat")).unwrap();
        return s.split_whitespace().next().unwrap().parse().unwrap();
    }
    let s = std::fs::read_to_string(format!("{dir}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {field} in {s}"))
        .trim()
        .parse()
        .unwrap()
}

/// BusyPoll on `s` (the only connection, so on the only connection
/// thread): a client that asks again at once finds the thread polling
/// (it sleeps for far fewer requests than it answers); a client that waits
/// 5 ms between requests is waited for in read(2) at once (no 1 ms of
/// polling after each answer).
fn busy_poll_follows_the_client<S: Read + Write>(pid: u32, mut s: S) {
    const N: u64 = 300;
    assert_eq!(get(&mut s, "/v1/health").0, 200);
    let tids = tids_named(pid, "rest-conn");
    assert_eq!(tids.len(), 1, "{tids:?}");
    let tid = &tids[0];
    let switches = || thread_figure(pid, tid, "voluntary_ctxt_switches");
    let before = switches();
    for _ in 0..N {
        assert_eq!(get(&mut s, "/v1/health").0, 200);
    }
    let slept = switches() - before;
    assert!(
        slept < N / 2,
        "the thread slept {slept} times for {N} back-to-back requests"
    );
    // A slow client: the first slow gap ends the polling.
    assert_eq!(get(&mut s, "/v1/health").0, 200);
    std::thread::sleep(Duration::from_millis(5));
    let cpu = thread_figure(pid, tid, "cpu_ns");
    const SLOW: u64 = 40;
    for _ in 0..SLOW {
        assert_eq!(get(&mut s, "/v1/health").0, 200);
        std::thread::sleep(Duration::from_millis(5));
    }
    let used = Duration::from_nanos(thread_figure(pid, tid, "cpu_ns") - cpu);
    // Polling 1 ms after each answer would be 40 ms.
    assert!(
        used < Duration::from_millis(SLOW / 2),
        "the thread used {used:?} of CPU for {SLOW} requests 5 ms apart"
    );
}

#[test]
fn busy_poll_follows_the_client_on_the_unix_socket() {
    let (c, sock, dir) = start("BusyPoll 1000");
    busy_poll_follows_the_client(c.pid(), connect(&sock));
    drop(c);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn busy_poll_follows_the_client_on_tcp() {
    let c = Collectd::start(Setup::default().rest("BusyPoll 1000"));
    let s = std::net::TcpStream::connect(("127.0.0.1", c.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    busy_poll_follows_the_client(c.pid(), s);
}
