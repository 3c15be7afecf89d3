//! GET /v1/notifications/stream against a real collectd: live events from
//! the API and from collectd (unixsock PUTNOTIF), resumption with
//! Last-Event-ID, and a prompt shutdown with subscribers connected.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{unix_now, Collectd, Setup};

/// An open event stream: raw bytes as they come (each event is one chunk,
/// so its text stays in one piece).
struct Stream {
    sock: TcpStream,
    seen: String,
}

impl Stream {
    fn open(c: &Collectd, query: &str, headers: &str) -> Stream {
        let mut sock = TcpStream::connect(("127.0.0.1", c.port)).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        write!(
            sock,
            "GET /v1/notifications/stream{query} HTTP/1.1\r\nHost: x\r\n{headers}\r\n"
        )
        .unwrap();
        let mut s = Stream {
            sock,
            seen: String::new(),
        };
        s.wait_for(": collectd-rest notifications");
        assert!(s.seen.starts_with("HTTP/1.1 200"), "{}", s.seen);
        assert!(s
            .seen
            .to_ascii_lowercase()
            .contains("content-type: text/event-stream"));
        s
    }

    /// Reads until `needle` has arrived.
    fn wait_for(&mut self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut buf = [0u8; 4096];
        while !self.seen.contains(needle) {
            assert!(
                Instant::now() < deadline,
                "no {needle:?} in {:?}",
                self.seen
            );
            match self.sock.read(&mut buf) {
                Ok(0) => panic!("stream closed before {needle:?}: {:?}", self.seen),
                Ok(n) => self.seen.push_str(&String::from_utf8_lossy(&buf[..n])),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(e) => panic!("{e}"),
            }
        }
    }
}

#[test]
fn live_events_resume_and_shutdown() {
    let mut c = Collectd::start(Setup::default());
    let mut s = Stream::open(&c, "", "");
    let r = c.post_json(
        "/v1/notifications",
        r#"{"severity":"warning","message":"from the API","plugin":"stream-test"}"#,
    );
    assert_eq!(r.status, 202);
    s.wait_for("id: 1\nevent: notification\ndata: {");
    s.wait_for("\"message\":\"from the API\"");
    let r = c.unixsock(&format!(
        "PUTNOTIF severity=failure time={} plugin=disk message=\"from collectd\"",
        unix_now()
    ));
    assert!(r[0].starts_with("0 "), "{r:?}");
    s.wait_for("id: 2\nevent: notification");
    s.wait_for("\"message\":\"from collectd\"");
    // The event's data is the notification object.
    let data = s
        .seen
        .lines()
        .find(|l| l.starts_with("data: ") && l.contains("from collectd"))
        .unwrap()
        .strip_prefix("data: ")
        .unwrap();
    let n: serde_json::Value = serde_json::from_str(data).unwrap();
    assert_eq!(n["seq"], 2);
    assert_eq!(n["severity"], "failure");
    assert_eq!(n["plugin"], "disk");

    // A reconnecting client resumes after the last event it saw.
    let mut again = Stream::open(&c, "", "Last-Event-ID: 1\r\n");
    again.wait_for("id: 2\nevent: notification");
    assert!(!again.seen.contains("id: 1\n"), "{}", again.seen);
    // A filtered stream from the start of the buffer.
    let mut failures = Stream::open(&c, "?since=0&severity=failure", "");
    failures.wait_for("id: 2\nevent: notification");
    assert!(!failures.seen.contains("id: 1\n"));
    // A subscriber that reads nothing more.
    let idle = Stream::open(&c, "", "");
    c.get("/v1/notifications/stream?severity=bad")
        .assert_error(400, "invalid_parameter");
    let r = c.request(
        "GET",
        "/v1/notifications/stream",
        &[("Last-Event-ID", "abc")],
        b"",
    );
    r.assert_error(400, "invalid_header");

    // SIGTERM with four subscribers connected: collectd exits 0 promptly.
    let t = Instant::now();
    let status = c.terminate(Duration::from_secs(10));
    assert!(status.success(), "{}", c.all_output());
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "took {:?}",
        t.elapsed()
    );
    drop((s, again, failures, idle));
}
