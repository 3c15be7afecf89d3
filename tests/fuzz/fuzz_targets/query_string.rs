//! Query strings (`Query::parse`, `percent_decode`) with the key sets of the
//! routes, and the value parsers the handlers apply to them (`Query::u64`,
//! `Severity::parse`, `PluginState::parse`).
//!
//! Input: one byte choosing the route's allowed keys, then the query string.
//! Invariants: percent_decode agrees with a strict RFC 3986 decoder (both
//! with and without `+` as space) and round-trips through an encoder;
//! `Query::parse` accepts exactly what a reference parser accepts, with the
//! same values; a parsed query re-encoded parses to the same values.
#![no_main]

use fuzz_support::{percent_encode, reference_percent_decode, ROUTE_QUERY_KEYS};
use libfuzzer_sys::fuzz_target;
use rest::http::request::{percent_decode, Query};
use rest::model::Severity;
use rest::plugins::PluginState;

/// What `Query::parse` should do: the pairs, or None for an error.
fn reference_query(q: &str, allowed: &[&str]) -> Option<Vec<(String, String)>> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for part in q.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        let (k, v) = (
            reference_percent_decode(k, true)?,
            reference_percent_decode(v, true)?,
        );
        if !allowed.contains(&k.as_str()) || pairs.iter().any(|(pk, _)| *pk == k) {
            return None;
        }
        pairs.push((k, v));
    }
    Some(pairs)
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let Ok(q) = std::str::from_utf8(rest) else {
        return;
    };

    for plus in [false, true] {
        let ours = percent_decode(q, plus).ok();
        assert_eq!(
            ours,
            reference_percent_decode(q, plus),
            "percent_decode({q:?}, plus={plus})"
        );
        if let Some(d) = ours {
            let again = percent_decode(&percent_encode(&d), plus).ok();
            assert_eq!(again.as_deref(), Some(d.as_str()), "round trip of {d:?}");
        }
    }

    let allowed = ROUTE_QUERY_KEYS[usize::from(sel) % ROUTE_QUERY_KEYS.len()];
    let parsed = Query::parse(q, allowed);
    let expected = reference_query(q, allowed);
    assert_eq!(
        parsed.is_ok(),
        expected.is_some(),
        "Query::parse({q:?}, {allowed:?}) = {parsed:?}"
    );
    let (Ok(parsed), Some(expected)) = (parsed, expected) else {
        return;
    };
    for k in allowed {
        let want = expected
            .iter()
            .find(|(ek, _)| ek == k)
            .map(|(_, v)| v.as_str());
        assert_eq!(parsed.get(k), want, "value of {k:?} in {q:?}");
    }
    let reencoded: Vec<String> = expected
        .iter()
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect();
    let again = Query::parse(&reencoded.join("&"), allowed).expect("re-encoded query");
    for k in allowed {
        assert_eq!(again.get(k), parsed.get(k), "re-encoded {k:?}");
    }

    // What the handlers do with the values.
    for (key, min, max) in [("limit", 1, 1_000_000), ("since", 0, u64::MAX - 1)] {
        if let Ok(Some(n)) = parsed.u64(key, min, max) {
            assert!((min..=max).contains(&n));
            assert_eq!(parsed.get(key).map(str::parse::<u64>), Some(Ok(n)));
        }
    }
    if let Some(s) = parsed.get("severity") {
        if let Some(sev) = Severity::parse(s) {
            assert_eq!(sev.as_str(), s);
        }
    }
    if let Some(s) = parsed.get("state") {
        if let Some(state) = PluginState::parse(s) {
            assert_eq!(serde_json::to_string(&state).unwrap(), format!("\"{s}\""));
        }
    }
});
