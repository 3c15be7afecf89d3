//! Authentication, TLS and the limits on hostile clients, inside a real
//! collectd.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{free_port, wait_for, Collectd, Setup};

const ADMIN: &str = "s3cret-admin-token";
const READER: &str = "s3cret-reader-token";

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[test]
fn role_tokens() {
    let c = Collectd::start(Setup::default().rest(&format!(
        "AuthToken \"admin\" \"{ADMIN}\"\nAuthToken \"reader\" \"{READER}\""
    )));
    let get = |path: &str, auth: Option<&str>| {
        let h = auth.map(bearer);
        let headers: Vec<(&str, &str)> = h.iter().map(|v| ("Authorization", v.as_str())).collect();
        c.request("GET", path, &headers, b"")
    };
    // The heartbeat needs no credentials; everything else does.
    assert_eq!(get("/v1/health", None).status, 200);
    let r = get("/v1/values", None);
    r.assert_error(401, "unauthorized");
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    get("/v1/values", Some("wrong-token-123")).assert_error(401, "unauthorized");
    get("/metrics", Some("wrong-token-123")).assert_error(401, "unauthorized");
    assert_eq!(get("/v1/values", Some(READER)).status, 200);
    assert_eq!(get("/v1/values", Some(ADMIN)).status, 200);
    assert_eq!(get("/metrics", Some(READER)).status, 200);
    // X-Auth-Token works too.
    let r = c.request("GET", "/v1/metrics", &[("X-Auth-Token", READER)], b"");
    assert_eq!(r.status, 200);
    // Readers read; only admins change things.
    let post = |auth: &str| {
        c.request(
            "POST",
            "/v1/flush",
            &[
                ("Authorization", &bearer(auth)),
                ("Content-Type", "application/json"),
            ],
            b"{}",
        )
    };
    post(READER).assert_error(403, "forbidden");
    assert_eq!(post(ADMIN).status, 200);
    let r = c.request(
        "POST",
        "/v1/plugins/cpu/disable",
        &[("Authorization", &bearer(READER))],
        b"",
    );
    r.assert_error(403, "forbidden");
    // Capabilities say what is configured; no token appears anywhere.
    let cap = get("/v1/capabilities", Some(READER)).json();
    assert_eq!(cap["auth"], serde_json::json!(["token"]));
    let log = c.log();
    assert!(!log.contains(ADMIN) && !log.contains(READER), "{log}");
    assert!(log.contains("auth: token"), "{log}");
}

fn write_private(path: &Path, text: &str, mode: u32) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn token_file_and_wider_listen() {
    let dir = common::temp_dir("tokens");
    let file = dir.join("rest.tokens");
    write_private(
        &file,
        &format!("# role token\nadmin {ADMIN}\nreader {READER}\n"),
        0o600,
    );
    // With credentials configured, a non-loopback address is allowed.
    let port = free_port();
    let setup = Setup {
        listen: false,
        ..Setup::default()
    }
    .rest(&format!(
        "TokenFile \"{}\"\nListen \"0.0.0.0\" \"{port}\"",
        file.display()
    ));
    let c = Collectd::spawn(setup.clone(), port);
    c.wait_ready().unwrap_or_else(|log| panic!("{log}"));
    assert_eq!(
        c.request(
            "GET",
            "/v1/values",
            &[("Authorization", &bearer(READER))],
            b""
        )
        .status,
        200
    );
    c.get("/v1/values").assert_error(401, "unauthorized");
    drop(c);

    // A token file other users can read refuses the config, naming the key.
    write_private(&file, &format!("admin {ADMIN}\n"), 0o644);
    let mut c = Collectd::spawn(setup, free_port());
    assert!(!c.wait_exit(Duration::from_secs(15)).success());
    let out = c.all_output();
    let line = out
        .lines()
        .find(|l| l.contains("configuration error"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        line.contains("TokenFile") && line.contains("readable or writable by every user"),
        "{line}"
    );
    assert!(!out.contains(ADMIN));
}

/// GET over HTTPS, trusting `ca`.
fn https_get(port: u16, ca: &Path, path: &str) -> common::Response {
    common::certs::https_request(port, ca, "GET", path, &[]).expect("an HTTPS answer")
}

#[test]
fn tls_only_when_configured() {
    let dir = common::temp_dir("tls");
    let certs = common::certs::make(&dir);
    let (cert, key, other) = (&certs.cert, &certs.key, &certs.other_key);
    // (start() polls plain HTTP; a TLS listener is polled over HTTPS here)
    let c = Collectd::spawn(
        Setup::default().rest(&format!(
            "TLSCertFile \"{}\"\nTLSKeyFile \"{}\"",
            cert.display(),
            key.display()
        )),
        free_port(),
    );
    wait_for("the HTTPS listener", Duration::from_secs(15), || {
        assert!(!c.exited(), "{}", c.all_output());
        TcpStream::connect(("127.0.0.1", c.port)).ok()
    });
    let r = https_get(c.port, &certs.ca, "/v1/health");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["status"], "ok");
    // Plain HTTP is not served on the TLS port.
    assert!(common::try_request(c.port, "GET", "/v1/health", &[], b"")
        .map(|r| r.status != 200)
        .unwrap_or(true));
    assert!(
        c.log().contains(&format!(
            "listening on https://127.0.0.1:{} (auth: none",
            c.port
        )),
        "{}",
        c.log()
    );
    drop(c);

    // A key that does not match the certificate: the config is refused.
    let mut bad = Collectd::spawn(
        Setup::default().rest(&format!(
            "TLSCertFile \"{}\"\nTLSKeyFile \"{}\"",
            cert.display(),
            other.display()
        )),
        free_port(),
    );
    assert!(!bad.wait_exit(Duration::from_secs(15)).success());
    let out = bad.all_output();
    assert!(
        out.lines()
            .any(|l| l.contains("configuration error") && l.contains("TLSKeyFile")),
        "{out}"
    );
}

/// Opens a connection and reports whether the server closed it within
/// `within` (reading EOF) without us sending anything.
fn closed_by_server(port: u16, within: Duration) -> bool {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 64];
    matches!(s.read(&mut buf), Ok(0))
}

#[test]
fn limits_on_hostile_clients() {
    let c =
        Collectd::start(Setup::default().rest("MaxConnections 8\nClientTimeout 1\nRateLimit 20"));
    // Slow clients time out: an idle connection, and a body that stalls.
    let t = Instant::now();
    assert!(closed_by_server(c.port, Duration::from_secs(5)));
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "{:?}",
        t.elapsed()
    );
    let mut s = TcpStream::connect(("127.0.0.1", c.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(
        b"POST /v1/notifications HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"sev",
    )
    .unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    common::parse_response(&raw)
        .unwrap()
        .assert_error(408, "request_timeout");
    // Oversized heads and targets.
    let long = format!("/v1/values?host={}", "a".repeat(9000));
    c.get(&long).assert_error(414, "uri_too_long");
    let big_header = "x".repeat(20_000);
    let r = common::try_request(c.port, "GET", "/v1/health", &[("X-Big", &big_header)], b"");
    assert!(
        r.map(|r| r.status == 431).unwrap_or(true),
        "an oversized head is refused"
    );
    // More connections than MaxConnections: the extra ones are closed.
    let held: Vec<TcpStream> = (0..8)
        .map(|_| TcpStream::connect(("127.0.0.1", c.port)).unwrap())
        .collect();
    wait_for(
        "the 9th connection to be refused",
        Duration::from_secs(5),
        || closed_by_server(c.port, Duration::from_millis(300)).then_some(()),
    );
    drop(held);
    wait_for("connections again", Duration::from_secs(5), || {
        common::try_request(c.port, "GET", "/v1/health", &[], b"")
            .ok()
            .filter(|r| r.status == 200)
    });
    // RateLimit: a burst on one keep-alive connection gets 429s.
    let mut s = TcpStream::connect(("127.0.0.1", c.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let burst = "GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n".repeat(60);
    s.write_all(burst.as_bytes()).unwrap();
    s.write_all(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw);
    let ok = text.matches("HTTP/1.1 200").count();
    let limited = text.matches("HTTP/1.1 429").count();
    assert_eq!(ok + limited, 61, "{text}");
    assert!(limited > 0 && ok >= 20, "{ok} answered, {limited} limited");
    assert!(text.contains("too_many_requests"));
    assert!(
        text.to_ascii_lowercase().contains("retry-after: 1\r\n"),
        "{text}"
    );
    assert!(!c.exited());
}

/// examples/collectd-secure.conf runs as documented: HTTPS on every
/// address (IPv4 and IPv6 on one port), tokens from a private file.
#[test]
fn the_secure_example_config_works() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let example = std::fs::read_to_string(repo.join("examples/collectd-secure.conf")).unwrap();
    let dir = common::temp_dir("secure-example");
    let etc = dir.join("etc");
    std::fs::create_dir_all(&etc).unwrap();
    common::certs::make(&etc);
    write_private(
        &etc.join("tokens"),
        &format!("admin {ADMIN}\nreader {READER}\n"),
        0o600,
    );
    let port = free_port();
    assert!(example.contains("\"/etc/collectd/rest/tokens\""));
    let example = example
        .replace("/etc/collectd/rest/", &format!("{}/", etc.display()))
        .replace("\"9196\"", &format!("\"{port}\""));
    let mut c = common::launch_example(&example, port, dir);
    let ca = etc.join("ca.pem");
    let health = wait_for("the HTTPS API", Duration::from_secs(20), || {
        assert!(!c.exited(), "{}", c.all_output());
        common::certs::https_request(port, &ca, "GET", "/v1/health", &[])
            .ok()
            .filter(|r| r.status == 200)
    });
    assert_eq!(health.json()["status"], "ok");
    let auth = bearer(READER);
    let r = common::certs::https_request(
        port,
        &ca,
        "GET",
        "/v1/capabilities",
        &[("Authorization", &auth)],
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["auth"], serde_json::json!(["token"]));
    let r = common::certs::https_request(port, &ca, "GET", "/v1/values", &[]).unwrap();
    r.assert_error(401, "unauthorized");
    // IPv6 on the same port, beside IPv4.
    let v6 = TcpStream::connect(("::1", port));
    assert!(v6.is_ok(), "[::1]:{port}: {v6:?}");
    // (the example logs to stdout)
    assert!(
        c.all_output().contains(&format!(
            "listening on https://0.0.0.0:{port}, https://[::]:{port} (auth: token;"
        )),
        "{}",
        c.all_output()
    );
    assert!(!c.all_output().contains(READER));
    let status = c.terminate(Duration::from_secs(10));
    assert!(status.success(), "{}", c.all_output());
}
