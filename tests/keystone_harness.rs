//! The Keystone test harness (tests/common/keystone.rs) against the real
//! Keystone: users, role grants, project-scoped tokens, validation as a
//! service does it, revocation and stopping the server. Fails (never skips)
//! when tests/keystone-setup.sh has not been run.

mod common;

use common::keystone::Keystone;
use common::try_request;

#[test]
fn keystone_issues_validates_and_revokes_tokens() {
    let mut ks = Keystone::start();
    assert_eq!(ks.url, format!("http://127.0.0.1:{}/v3", ks.port));

    let user = ks.create_user("harness-reader", "reader-secret");
    ks.grant(&user, "admin", "reader");
    let token = ks.token("harness-reader", "reader-secret", "admin");
    assert!(!token.is_empty());

    // What a service sees when it validates the token: the user, the project
    // and only the role granted.
    assert_eq!(ks.validate(&token), 200);
    let admin = ks.admin_token();
    let r = ks.request(
        "GET",
        "/v3/auth/tokens",
        &[("X-Auth-Token", &admin), ("X-Subject-Token", &token)],
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let t = &r.json()["token"];
    assert_eq!(t["user"]["id"], user.as_str());
    assert_eq!(t["project"]["name"], "admin");
    let roles: Vec<&str> = t["roles"]
        .as_array()
        .expect("roles in a project-scoped token")
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert_eq!(roles, ["reader"], "{t}");

    // A wrong password gets no token; a garbage token does not validate.
    assert_eq!(
        ks.auth("harness-reader", "wrong", Some("admin")).status,
        401
    );
    assert_eq!(ks.validate("not-a-token"), 404);

    ks.revoke(&token);
    assert_eq!(ks.validate(&token), 404);

    let port = ks.port;
    ks.stop();
    assert!(
        try_request(port, "GET", "/v3", &[], b"").is_err(),
        "Keystone still answers on port {port} after stop()"
    );
}
