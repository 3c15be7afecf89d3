//! Keystone authentication inside a real collectd, against a real Keystone
//! on loopback (tests/keystone-setup.sh must have built its venv: these
//! tests fail, never skip, without it).

mod common;

use std::time::Duration;

use common::keystone::Keystone;
use common::{wait_for, Collectd, Response, Setup};
use serde_json::json;

const SVC_USER: &str = "collectd-rest";
const SVC_PASSWORD: &str = "svc-password-1";

/// The plugin's service user: role `service` on project `service`, what an
/// OpenStack deployment gives its services.
fn service_user(ks: &Keystone) -> String {
    let id = ks.create_user(SVC_USER, SVC_PASSWORD);
    ks.grant(&id, "service", "service");
    id
}

fn keystone_block(ks: &Keystone, password: &str, cache_ttl: u32) -> String {
    format!(
        "<Keystone>\n  URL \"{}\"\n  Username \"{SVC_USER}\"\n  Password \"{password}\"\n  \
         ProjectName \"service\"\n  CacheTTL {cache_ttl}\n</Keystone>\n",
        ks.url
    )
}

fn get(c: &Collectd, path: &str, token: &str) -> Response {
    c.request("GET", path, &[("X-Auth-Token", token)], b"")
}

fn flush(c: &Collectd, token: &str) -> Response {
    c.request(
        "POST",
        "/v1/flush",
        &[
            ("Authorization", &format!("Bearer {token}")),
            ("Content-Type", "application/json"),
        ],
        b"{}",
    )
}

#[test]
fn keystone_roles_revocation_and_service_token_renewal() {
    let ks = Keystone::start();
    let svc = service_user(&ks);
    let reader = ks.create_user("ops-reader", "reader-pw");
    ks.grant(&reader, "demo", "reader");
    let admin = ks.create_user("ops-admin", "admin-pw");
    ks.grant(&admin, "demo", "admin");
    let other = ks.create_user("ops-other", "other-pw");
    ks.grant(&other, "demo", "observer");

    let c = Collectd::start(Setup::default().rest(&format!(
        "AuthToken \"admin\" \"static-admin-token\"\n{}",
        keystone_block(&ks, SVC_PASSWORD, 2)
    )));
    c.wait_log(&format!(
        "listening on http://127.0.0.1:{} (auth: token and keystone;",
        c.port
    ));

    let reader_token = ks.token("ops-reader", "reader-pw", "demo");
    let admin_token = ks.token("ops-admin", "admin-pw", "demo");
    let other_token = ks.token("ops-other", "other-pw", "demo");
    let unscoped = ks.unscoped_token("ops-reader", "reader-pw");

    // Capabilities name both credential kinds.
    let caps = get(&c, "/v1/capabilities", &reader_token);
    assert_eq!(caps.status, 200, "{}", caps.text());
    assert_eq!(caps.json()["auth"], json!(["token", "keystone"]));

    // No token, a token Keystone never issued: 401.
    c.request("GET", "/v1/values", &[], b"")
        .assert_error(401, "unauthorized");
    get(&c, "/v1/values", "gAAAAA-not-a-keystone-token").assert_error(401, "unauthorized");

    // Reader: every GET, no change (either header).
    assert_eq!(get(&c, "/v1/values", &reader_token).status, 200);
    assert_eq!(get(&c, "/metrics", &reader_token).status, 200);
    flush(&c, &reader_token).assert_error(403, "forbidden");
    // Admin (Keystone's admin implies member and reader: admin wins).
    assert_eq!(flush(&c, &admin_token).status, 200);
    // Valid tokens without our roles: 403, not 401.
    get(&c, "/v1/values", &other_token).assert_error(403, "forbidden");
    get(&c, "/v1/values", &unscoped).assert_error(403, "forbidden");
    // Static tokens still work next to Keystone.
    assert_eq!(flush(&c, "static-admin-token").status, 200);

    // A revoked token stops working once its cache entry (CacheTTL 2 s)
    // expires.
    ks.revoke(&reader_token);
    wait_for("the revoked token refused", Duration::from_secs(15), || {
        (get(&c, "/v1/values", &reader_token).status == 401).then_some(())
    });

    // Disabling the service user revokes the plugin's own token; after it
    // is enabled again, the plugin notices Keystone's 401 and renews.
    let patch = |enabled: bool| {
        let admin = ks.admin_token();
        let r = ks.request(
            "PATCH",
            &format!("/v3/users/{svc}"),
            &[("X-Auth-Token", &admin)],
            Some(&json!({"user": {"enabled": enabled}})),
        );
        assert_eq!(r.status, 200, "{}", r.text());
    };
    patch(false);
    patch(true);
    // Keystone refuses tokens issued in the same second as a revocation
    // event: wait until the service user's new tokens validate.
    wait_for("a valid service token", Duration::from_secs(10), || {
        (ks.validate(&ks.token(SVC_USER, SVC_PASSWORD, "service")) == 200).then_some(())
    });
    let fresh = ks.token("ops-reader", "reader-pw", "demo");
    let r = get(&c, "/v1/values", &fresh);
    assert_eq!(r.status, 200, "{}\n{}", r.text(), c.log());
    c.wait_log("Keystone no longer accepts the plugin's service token");

    // Tokens never reach the log.
    let log = c.log();
    for t in [&reader_token, &admin_token, &other_token, &fresh] {
        assert!(!log.contains(t.as_str()), "a token in the log:\n{log}");
    }
    assert!(
        !log.contains(SVC_PASSWORD),
        "the service password in the log"
    );
}

#[test]
fn keystone_outage_fails_closed_and_bad_service_credentials_are_logged() {
    let mut ks = Keystone::start();
    service_user(&ks);
    let reader = ks.create_user("ops-reader", "reader-pw");
    ks.grant(&reader, "demo", "reader");
    let seen = ks.token("ops-reader", "reader-pw", "demo");
    let unseen = ks.token("ops-reader", "reader-pw", "demo");

    // Wrong service password: requests get 503 and the log says why.
    let wrong =
        Collectd::start(Setup::default().rest(&keystone_block(&ks, "not-the-password", 60)));
    let r = get(&wrong, "/v1/values", &seen);
    r.assert_error(503, "unavailable");
    let log = wrong.wait_log("Keystone refused the plugin's own credentials");
    assert!(log.contains(SVC_USER), "{log}");
    assert!(!log.contains("not-the-password"), "the password in the log");
    drop(wrong);

    let c = Collectd::start(Setup::default().rest(&keystone_block(&ks, SVC_PASSWORD, 60)));
    assert_eq!(get(&c, "/v1/values", &seen).status, 200);

    ks.stop();
    // Validated within CacheTTL: still served. Never validated: refused,
    // never passed.
    assert_eq!(get(&c, "/v1/values", &seen).status, 200);
    get(&c, "/v1/values", &unseen).assert_error(503, "unavailable");
    get(&c, "/v1/values", "gAAAAA-garbage").assert_error(503, "unavailable");
    c.wait_log("cannot validate a token: cannot connect to Keystone");
    // The heartbeat needs no identity service.
    assert_eq!(c.request("GET", "/v1/health", &[], b"").status, 200);
}

#[test]
fn keystone_over_https_trusts_only_the_configured_ca() {
    let ks = Keystone::start();
    service_user(&ks);
    let reader = ks.create_user("ops-reader", "reader-pw");
    ks.grant(&reader, "demo", "reader");
    let token = ks.token("ops-reader", "reader-pw", "demo");
    let dir = common::temp_dir("keystone-tls");
    let certs = common::certs::make(&dir);
    let https = common::certs::tls_proxy(&certs, ks.port);
    let block = |ca: &str| {
        format!(
            "<Keystone>\n  URL \"https://127.0.0.1:{https}/v3\"\n  Username \"{SVC_USER}\"\n  \
             Password \"{SVC_PASSWORD}\"\n  ProjectName \"service\"\n{ca}</Keystone>\n"
        )
    };

    // CACertFile names the CA that signed Keystone's certificate.
    let c = Collectd::start(Setup::default().rest(&block(&format!(
        "  CACertFile \"{}\"\n",
        certs.ca.display()
    ))));
    let r = get(&c, "/v1/values", &token);
    assert_eq!(r.status, 200, "{}\n{}", r.text(), c.log());
    drop(c);

    // Without it, the system roots do not know that CA: refused (503),
    // and the log says why.
    let c = Collectd::start(Setup::default().rest(&block("")));
    get(&c, "/v1/values", &token).assert_error(503, "unavailable");
    let log = c.wait_log("TLS to Keystone");
    assert!(log.contains("UnknownIssuer"), "{log}");
}
