//! Start-up, configuration errors and shutdown of the plugin inside collectd.

mod common;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use common::{free_port, Collectd, Setup};

#[test]
fn sigterm_stops_collectd_promptly_with_status_zero() {
    let mut c = Collectd::start(Setup::default().load(&["load"]).rest("HeartbeatInterval 1"));
    // Some traffic in flight first.
    assert_eq!(c.get("/v1/values").status, 200);
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
    assert!(!log.contains("panic"), "{log}");
    // The port is closed.
    assert!(common::try_request(c.port, "GET", "/v1/health", &[], b"").is_err());
}

/// A config the plugin refuses: collectd must not start, and the log must
/// name the offending key.
fn assert_refused(rest_block: &str, key: &str, why: &str) {
    let setup = Setup {
        listen: false,
        ..Setup::default()
    }
    .rest(rest_block);
    let mut c = Collectd::spawn(setup, free_port());
    let status = c.wait_exit(Duration::from_secs(15));
    assert!(!status.success(), "collectd accepted {rest_block:?}");
    let out = c.all_output();
    let line = out
        .lines()
        .find(|l| l.contains("rest: configuration error"))
        .unwrap_or_else(|| panic!("no configuration error logged for {rest_block:?}:\n{out}"));
    assert!(line.contains(key), "{line} should name {key}");
    assert!(line.contains(why), "{line} should say {why}");
}

#[test]
fn config_errors_refuse_to_start_and_name_the_key() {
    let port = free_port();
    assert_refused("Bogus 1", "Bogus", "unknown option");
    assert_refused(
        &format!("Listen \"127.0.0.1\" \"{port}\"\nHistorySize \"ten\""),
        "HistorySize",
        "expected a number",
    );
    assert_refused("HistorySize 0", "HistorySize", "expected an integer");
    assert_refused(
        "Listen \"no.such.address\" \"9196\"",
        "Listen",
        "bad address",
    );
    assert_refused("Listen \"127.0.0.1\" \"70000\"", "Listen", "bad port");
    assert_refused(
        "Listen \"0.0.0.0\" \"9196\"",
        "Listen",
        "not a loopback address",
    );
    assert_refused("StateDir \"relative\"", "StateDir", "absolute");
    assert_refused("SocketPerms \"0600\"", "SocketPerms", "needs SocketFile");
    assert_refused(
        "MaxRequestBytes 10",
        "MaxRequestBytes",
        "expected an integer",
    );
    assert_refused("AuthToken \"admin\" \"x\"", "AuthToken", "8 to 4096");
    assert_refused(
        "AuthToken \"root\" \"s3cret-admin\"",
        "AuthToken",
        "reader or admin",
    );
    assert_refused(
        "TLSCertFile \"/nonexistent/cert.pem\"\nTLSKeyFile \"/nonexistent/key.pem\"",
        "TLSCertFile",
        "/nonexistent/cert.pem",
    );
}

#[test]
fn busy_port_fails_init_with_a_clear_log_line() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let c = Collectd::spawn(Setup::default(), port);
    let line = c.wait_log("rest: not starting");
    assert!(line.contains(&format!("Listen 127.0.0.1:{port}")), "{line}");
    assert!(line.contains("in use"), "{line}");
    // collectd itself keeps running without the plugin.
    c.wait_log("Initialization complete");
    assert!(!c.exited());
}

#[test]
fn serves_every_listen_address_including_ipv6() {
    let v4 = free_port();
    let v6 = free_port();
    let setup = Setup {
        listen: false,
        ..Setup::default()
    }
    .rest(&format!(
        "Listen \"127.0.0.1\" \"{v4}\"\nListen \"::1\" {v6}"
    ));
    let c = Collectd::spawn(setup, v4);
    common::wait_for("both listeners", Duration::from_secs(15), || {
        let a = common::try_request(v4, "GET", "/v1/health", &[], b"").ok()?;
        let s = std::net::TcpStream::connect(("::1", v6)).ok()?;
        drop(s);
        (a.status == 200).then_some(())
    });
    // A request over IPv6.
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("::1", v6)).unwrap();
    s.write_all(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let r = common::parse_response(&raw).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["status"], "ok");
    let line = c.wait_log("REST API v1 listening on");
    assert!(line.contains(&format!("[::1]:{v6}")), "{line}");
    drop(c);
}

#[test]
fn serves_http_on_a_unix_socket() {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let sockets = common::temp_dir("unix-api");
    let sock = sockets.join("api.sock");
    let setup = Setup::default().rest(&format!(
        "SocketFile \"{}\"\nSocketPerms \"0600\"",
        sock.display()
    ));
    let c = Collectd::start(setup);
    let meta = std::fs::symlink_metadata(&sock).expect("the socket file exists");
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let line = c.wait_log("REST API v1 listening on");
    assert!(
        line.contains(&format!("http on unix:{}", sock.display())),
        "{line}"
    );

    // The same answers as over TCP.
    let now = common::unix_now();
    c.putval("unixapi/gauge-x", "interval=3600", now, "2.5");
    let id = "/v1/values/testhost/unixapi/gauge-x";
    let tcp = c.get(id);
    let unix = common::unix_request(&sock, "GET", id).unwrap();
    assert_eq!(unix.status, 200);
    assert_eq!(unix.json(), tcp.json());
    assert_eq!(unix.header("content-type"), Some("application/json"));
    common::unix_request(&sock, "GET", "/v1/nope")
        .unwrap()
        .assert_error(404, "not_found");

    // Keep-alive: several requests on one connection.
    let s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    for _ in 0..3 {
        w.write_all(format!("GET {id} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())
            .unwrap();
        let mut length = None;
        let mut status = String::new();
        r.read_line(&mut status).unwrap();
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        loop {
            let mut h = String::new();
            r.read_line(&mut h).unwrap();
            if h.trim().is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse::<usize>().ok();
                }
            }
        }
        let mut body = vec![0; length.expect("Content-Length")];
        r.read_exact(&mut body).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v, tcp.json());
    }

    // SIGKILL leaves the socket file behind; the next start replaces it.
    let c = c.respawn();
    assert_eq!(
        common::unix_request(&sock, "GET", "/v1/health")
            .unwrap()
            .status,
        200
    );
    // A clean stop removes it.
    let mut c = c;
    assert!(c.terminate(Duration::from_secs(10)).success());
    assert!(
        std::fs::symlink_metadata(&sock).is_err(),
        "the socket file is left after a clean stop"
    );

    // A file that is not a socket is never deleted: the plugin does not
    // start, and says why.
    std::fs::write(&sock, "not a socket").unwrap();
    let setup = Setup::default().rest(&format!("SocketFile \"{}\"", sock.display()));
    let c = Collectd::spawn(setup, free_port());
    let line = c.wait_log("rest: not starting");
    assert!(line.contains("is not a socket"), "{line}");
    assert_eq!(std::fs::read_to_string(&sock).unwrap(), "not a socket");
    drop(c);
    let _ = std::fs::remove_dir_all(&sockets);
}

#[test]
fn state_dir_is_created_private() {
    let c = Collectd::start(Setup::default());
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(c.dir.join("rest")).expect("default StateDir <BaseDir>/rest");
    assert!(meta.is_dir());
    assert_eq!(meta.permissions().mode() & 0o777, 0o700);
}

/// examples/collectd.conf runs as examples/run.sh runs it (a private
/// PluginDir and BaseDir around an Include of the example), on a free port.
#[test]
fn the_example_config_works() {
    common::require_tools();
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let example = std::fs::read_to_string(repo.join("examples/collectd.conf")).unwrap();
    let port = free_port();
    assert!(
        example.contains("Listen \"127.0.0.1\" \"9196\""),
        "the example serves 9196"
    );
    let example = example.replace("\"9196\"", &format!("\"{port}\""));
    let mut c = common::launch_example(&example, port, common::temp_dir("example"));
    if let Err(out) = c.wait_ready() {
        panic!("the example did not start:\n{out}");
    }
    let cap = c.get("/v1/capabilities").json();
    let loaded = cap["plugins"]["loaded"].as_array().unwrap();
    for p in [
        "cpu",
        "load",
        "memory",
        "interface",
        "unixsock",
        "logfile",
        "rest",
    ] {
        assert!(loaded.iter().any(|x| x == p), "{p} not loaded: {cap}");
    }
    common::wait_for("interface lo values", Duration::from_secs(30), || {
        let v = c
            .get("/v1/values?plugin=interface&plugin_instance=lo")
            .json();
        (!v["values"].as_array()?.is_empty()).then_some(())
    });
    let status = c.terminate(Duration::from_secs(10));
    assert!(status.success(), "{}", c.all_output());
}
