//! Whole requests through the plugin's router, as the server hands them
//! over after reading the body: `router::handle` on an `App` built as
//! collectd's init builds it (static tokens, PluginDir, StateDir, a few
//! metrics and notifications) whose control thread drives a stand-in
//! collectd. This runs every parser on its real path: the route match and
//! percent-decoding of path segments, the credentials headers, each route's
//! query string and value parsers, `Last-Event-ID`, the content type, every
//! JSON body with the validation its handler applies after deserializing
//! (notifications, flush, plugin PUT, blacklist and threshold rules).
//!
//! Input: a request as text (`fuzz_support::parse_request_text`):
//! `METHOD TARGET`, header lines, an empty line, the body.
//! Invariants: no panic anywhere (handlers, control thread, stand-in
//! collectd's checks of what it is asked to do); never a 500 or 503; every
//! JSON answer parses, errors as {"error": {"code": snake_case, "message"}};
//! 405 has Allow, 401 has WWW-Authenticate. Each input starts from a fresh
//! App and an empty StateDir, so a crash reproduces on its own.
#![no_main]

use std::path::PathBuf;
use std::sync::LazyLock;

use fuzz_support::{clear_dir, parse_request_text, plugin_dir, scratch_dir, Harness};
use http_body_util::BodyExt;
use hyper::header::{ALLOW, CONTENT_TYPE, WWW_AUTHENTICATE};
use hyper::StatusCode;
use libfuzzer_sys::fuzz_target;

static DIRS: LazyLock<(PathBuf, PathBuf)> =
    LazyLock::new(|| (plugin_dir("http-plugins"), scratch_dir("http-state")));

fn check_error(status: StatusCode, body: &serde_json::Value) {
    let code = body["error"]["code"].as_str();
    assert!(
        code.is_some_and(|c| !c.is_empty()
            && c.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')),
        "{status} without an error code: {body}"
    );
    assert!(body["error"]["message"].is_string(), "{status}: {body}");
}

fuzz_target!(|data: &[u8]| {
    let Some(req) = parse_request_text(data) else {
        return;
    };
    clear_dir(&DIRS.1);
    let harness = Harness::new(&DIRS.0, &DIRS.1);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (status, headers, body) = rt.block_on(async {
        let resp = rest::http::handle(&harness.app, req).await;
        let (parts, mut body) = resp.into_parts();
        let sse = parts
            .headers
            .get(CONTENT_TYPE)
            .is_some_and(|v| v == "text/event-stream");
        let bytes = if sse {
            // A stream does not end: its first event (the opening comment).
            let frame = body.frame().await.expect("a first event").unwrap();
            frame.into_data().unwrap_or_default().to_vec()
        } else {
            body.collect().await.unwrap().to_bytes().to_vec()
        };
        (parts.status, parts.headers, bytes)
    });
    drop(rt);
    drop(harness);

    assert!(
        status != StatusCode::INTERNAL_SERVER_ERROR && status != StatusCode::SERVICE_UNAVAILABLE,
        "{status}: {}",
        String::from_utf8_lossy(&body)
    );
    let ct = headers
        .get(CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    if ct == "application/json" {
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_else(|e| {
            panic!(
                "{status}: not JSON ({e}): {:?}",
                String::from_utf8_lossy(&body)
            )
        });
        if status.as_u16() >= 400 {
            check_error(status, &v);
        }
    } else if ct == "text/event-stream" {
        assert!(body.starts_with(b": collectd-rest"), "{body:?}");
    } else if status == StatusCode::NO_CONTENT {
        assert!(body.is_empty());
    } else {
        assert!(
            ct.starts_with("text/plain"),
            "{status} with content type {ct:?}"
        );
        assert!(std::str::from_utf8(&body).is_ok());
    }
    if status == StatusCode::METHOD_NOT_ALLOWED {
        assert!(headers.contains_key(ALLOW));
    }
    if status == StatusCode::UNAUTHORIZED {
        assert!(headers.contains_key(WWW_AUTHENTICATE));
    }
});
