//! Bad input gets a JSON error with the right status, changes nothing, and
//! leaves collectd alive; clients that misbehave cost nothing.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{Collectd, Setup, HOSTNAME};

fn notification_count(c: &Collectd) -> usize {
    c.get("/v1/notifications").json()["notifications"]
        .as_array()
        .unwrap()
        .len()
}

#[test]
fn bad_requests_get_json_errors_and_change_nothing() {
    let c = Collectd::start(Setup::default().rest("MaxRequestBytes 2048"));
    let json = [("Content-Type", "application/json")];
    let post = |body: &[u8]| c.request("POST", "/v1/notifications", &json, body);

    // Malformed JSON, wrong types, unknown and missing fields, bad values.
    post(b"{\"severity\":").assert_error(400, "malformed_json");
    post(b"{\"severity\" \"okay\"}").assert_error(400, "malformed_json");
    post(b"{\"severity\":\"okay\",\"message\":5}").assert_error(400, "invalid_body");
    post(b"{\"severity\":\"okay\",\"message\":\"m\",\"bogus\":1}")
        .assert_error(400, "invalid_body");
    post(b"{\"message\":\"m\"}").assert_error(400, "invalid_body");
    post(b"{\"severity\":\"fatal\",\"message\":\"m\"}").assert_error(400, "invalid_body");
    post(b"{\"severity\":\"okay\",\"message\":\"\"}").assert_error(400, "invalid_body");
    let long = format!(
        "{{\"severity\":\"okay\",\"message\":\"{}\"}}",
        "x".repeat(256)
    );
    post(long.as_bytes()).assert_error(400, "invalid_body");
    let long_host = format!(
        "{{\"severity\":\"okay\",\"message\":\"m\",\"host\":\"{}\"}}",
        "h".repeat(128)
    );
    post(long_host.as_bytes()).assert_error(400, "invalid_body");
    post(b"{\"severity\":\"okay\",\"message\":\"a\\u0000b\"}").assert_error(400, "invalid_body");
    post(b"").assert_error(400, "invalid_body");
    // Non-UTF-8 body.
    post(b"{\"severity\":\"okay\",\"message\":\"\xff\xfe\"}").assert_error(400, "invalid_utf8");
    // Not JSON at all.
    c.request(
        "POST",
        "/v1/notifications",
        &[("Content-Type", "text/plain")],
        b"hello",
    )
    .assert_error(415, "unsupported_media_type");
    c.request("POST", "/v1/notifications", &[], b"{}")
        .assert_error(415, "unsupported_media_type");
    // Too large: declared, and streamed without a length.
    let big = vec![b' '; 4096];
    post(&big).assert_error(413, "payload_too_large");
    let chunked = chunked_post(c.port, "/v1/notifications", &big);
    chunked.assert_error(413, "payload_too_large");
    // None of that reached collectd.
    assert_eq!(notification_count(&c), 0);
    assert!(!c.log().contains("Notification:"), "{}", c.log());

    // Routes, methods, queries, encodings.
    c.get("/v1/nothing").assert_error(404, "not_found");
    c.get("/").assert_error(404, "not_found");
    c.get("/v1/health/").assert_error(404, "not_found");
    let r = c.get("/v1/flush");
    r.assert_error(405, "method_not_allowed");
    assert_eq!(r.header("allow"), Some("POST"));
    let r = c.request("DELETE", "/v1/notifications", &[], b"");
    r.assert_error(405, "method_not_allowed");
    assert_eq!(r.header("allow"), Some("GET, POST"));
    c.request("PUT", "/v1/values", &json, b"{}")
        .assert_error(405, "method_not_allowed");
    c.get("/v1/values?plugn=cpu")
        .assert_error(400, "unknown_parameter");
    c.get("/v1/values?plugin=a&plugin=b")
        .assert_error(400, "invalid_parameter");
    c.get("/v1/values?plugin=%ff")
        .assert_error(400, "invalid_encoding");
    c.get("/v1/values?plugin=%zz")
        .assert_error(400, "invalid_encoding");
    c.get(&format!("/v1/values/{HOSTNAME}/%ff/x"))
        .assert_error(400, "invalid_encoding");
    c.get("/v1/health?verbose=1")
        .assert_error(400, "unknown_parameter");
    // A history cursor is decimal digits of any length (docs/openapi.json):
    // one beyond what this run has issued, even beyond u64, reads from the
    // start rather than being refused; anything else is refused.
    for since in ["", "99999999999999999999999"] {
        let r = c.get(&format!("/v1/history?since={since}"));
        assert_eq!(r.status, 200, "since={since}: {}", r.text());
        assert_eq!(r.json()["lost"], 0, "since={since}: {}", r.text());
    }
    for since in ["-1", "1.5", "%2B1"] {
        c.get(&format!("/v1/history?since={since}"))
            .assert_error(400, "invalid_parameter");
    }

    // The daemon is alive and still does its job.
    assert_eq!(c.get("/v1/health").status, 200);
    let r = c.post_json(
        "/v1/notifications",
        r#"{"severity":"okay","message":"still here"}"#,
    );
    assert_eq!(r.status, 202);
    assert_eq!(notification_count(&c), 1);
}

/// Sends a body with Transfer-Encoding: chunked (no Content-Length).
fn chunked_post(port: u16, path: &str, body: &[u8]) -> common::Response {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    s.write_all(head.as_bytes()).unwrap();
    for chunk in body.chunks(512) {
        let _ = s.write_all(format!("{:x}\r\n", chunk.len()).as_bytes());
        let _ = s.write_all(chunk);
        let _ = s.write_all(b"\r\n");
    }
    let _ = s.write_all(b"0\r\n\r\n");
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    common::parse_response(&raw).expect("a response")
}

#[test]
fn clients_that_vanish_or_stall_cost_nothing() {
    let c = Collectd::start(Setup::default());
    // A few thousand metrics, so that /v1/values is a large response.
    let sock = std::os::unix::net::UnixStream::connect(c.socket()).unwrap();
    let mut writer = sock.try_clone().unwrap();
    let feeder = std::thread::spawn(move || {
        for i in 0..3000 {
            let line = format!("PUTVAL \"{HOSTNAME}/bulk-{i}/gauge-v\" interval=60 N:{i}\n");
            writer.write_all(line.as_bytes()).unwrap();
        }
    });
    // unixsock answers every command; read the answers so it never blocks.
    let mut answers = std::io::BufReader::new(sock);
    for _ in 0..3000 {
        let mut l = String::new();
        std::io::BufRead::read_line(&mut answers, &mut l).unwrap();
        assert!(l.starts_with("0 "), "PUTVAL: {l}");
    }
    feeder.join().unwrap();
    common::wait_for("3000 metrics", Duration::from_secs(20), || {
        let n = c.get("/v1/metrics?plugin=bulk").json()["metrics"]
            .as_array()
            .unwrap()
            .len();
        (n == 3000).then_some(())
    });

    // Clients that hang up after the first bytes of a large response.
    for _ in 0..50 {
        let mut s = TcpStream::connect(("127.0.0.1", c.port)).unwrap();
        s.write_all(b"GET /v1/values HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut buf = [0u8; 64];
        let _ = s.read(&mut buf);
        drop(s);
    }
    // Clients that connect and send nothing, or half a request line.
    let idle: Vec<TcpStream> = (0..50)
        .map(|i| {
            let mut s = TcpStream::connect(("127.0.0.1", c.port)).unwrap();
            if i % 2 == 0 {
                s.write_all(b"GET /v1/val").unwrap();
            }
            s
        })
        .collect();
    // Others are served meanwhile, completely.
    let r = c.get("/v1/values?plugin=bulk");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["values"].as_array().unwrap().len(), 3000);
    assert_eq!(c.get("/v1/health").status, 200);
    drop(idle);
    assert!(!c.exited());
    assert!(!c.log().contains("panic"), "{}", c.log());
}

/// With fault injection on (COLLECTD_REST_FAULT_PLUGIN), values and
/// notifications of plugin "boom" make our callbacks panic, and so does a
/// request filtering on it: each panic is logged with its place, collectd gets
/// an error status or the client a 500, and everything else goes on.
#[test]
fn panics_are_contained() {
    let c = Collectd::start(Setup::default().env("COLLECTD_REST_FAULT_PLUGIN", "boom"));
    let r = c.unixsock(&format!("PUTVAL \"{HOSTNAME}/boom/gauge\" interval=10 N:1"));
    assert!(r[0].starts_with("0 "), "{r:?}");
    let line = c.wait_log("the write callback panicked");
    assert!(line.contains("rest:"), "{line}");
    let log = c.log();
    assert!(
        log.contains("panic at src/app.rs") && log.contains("injected fault"),
        "the panic's place and message are logged:\n{log}"
    );
    let r = c.unixsock(&format!(
        "PUTNOTIF severity=okay time={} plugin=boom message=x",
        common::unix_now()
    ));
    assert!(r[0].starts_with("0 "), "{r:?}");
    c.wait_log("the notification callback panicked");
    c.get("/v1/values?plugin=boom")
        .assert_error(500, "internal_error");
    // Still serving, still receiving.
    let r = c.unixsock(&format!("PUTVAL \"{HOSTNAME}/fine/gauge\" interval=10 N:2"));
    assert!(r[0].starts_with("0 "), "{r:?}");
    common::wait_for("a value after the panics", Duration::from_secs(10), || {
        let v = c.get("/v1/values?plugin=fine").json();
        (v["values"].as_array()?.len() == 1).then_some(())
    });
    assert!(c.get("/v1/values?plugin=boom").status == 500);
    assert!(!c.exited());
}
