//! The body of `PUT /v1/blacklist/{id}`: `ApiRequest::json::<Rule>` (the
//! server's body parser: UTF-8, strict JSON, no unknown fields), then
//! `RuleSet::put` (`Rule::check`: a field is required, each at most 1024
//! bytes, `/regex/` fields compile within the size limit; then the whole
//! set is compiled), then the write path's `blacklist::matches`.
//!
//! Invariants: no panic; an accepted rule survives what StateDir does with
//! it (serialized, parsed back equal, and loaded again without error at the
//! next start); a rule of exact fields only matches the identifier made of
//! its fields; once deleted, nothing matches.
#![no_main]

use std::collections::BTreeMap;
use std::sync::LazyLock;

use fuzz_support::json_request;
use hyper::Method;
use libfuzzer_sys::fuzz_target;
use rest::rules::blacklist::{matches, valid_id, Blacklist, Rule};

fn fields(r: &Rule) -> [Option<&str>; 5] {
    [
        r.host.as_deref(),
        r.plugin.as_deref(),
        r.plugin_instance.as_deref(),
        r.type_.as_deref(),
        r.type_instance.as_deref(),
    ]
}

fn is_regex(v: &str) -> bool {
    v.len() >= 2 && v.starts_with('/') && v.ends_with('/')
}

fn persist(rules: &BTreeMap<String, Rule>) -> Result<(), String> {
    let text = serde_json::to_vec_pretty(rules).expect("rules serialize");
    let back: BTreeMap<String, Rule> = serde_json::from_slice(&text).expect("rules parse back");
    assert_eq!(&back, rules, "rules changed through JSON");
    let errors = Blacklist::default().load(back);
    assert!(errors.is_empty(), "saved rules do not load: {errors:?}");
    Ok(())
}

/// One set for the whole run, emptied after every input: the write path
/// caches the compiled set per thread by version number, and versions are
/// only unique within one set (as in the plugin, which has one blacklist).
static SET: LazyLock<Blacklist> = LazyLock::new(Blacklist::default);

fuzz_target!(|data: &[u8]| {
    let req = json_request(Method::PUT, "/v1/blacklist/fuzz", data);
    let Ok(mut rule) = req.json::<Rule>(false) else {
        return;
    };
    // The handler: the path's id; a body id must be the same.
    let id = rule
        .id
        .take()
        .filter(|i| valid_id(i))
        .unwrap_or("fuzz".into());

    let set = &*SET;
    if set.put(&id, rule.clone(), persist).is_err() {
        assert!(
            set.is_empty() && set.list().is_empty(),
            "a refused rule stayed"
        );
        return;
    }
    serde_json::to_vec(&rule).expect("the answer serializes");
    let f = fields(&rule);
    assert!(f.iter().any(Option::is_some));

    let exact_only = f.iter().flatten().all(|v| !is_regex(v));
    let subject: [&str; 5] = std::array::from_fn(|i| f[i].unwrap_or("x"));
    if exact_only {
        assert!(
            matches(set, subject),
            "{rule:?} does not match its own fields"
        );
    } else {
        // Run the patterns over a few subjects: no panic, no hang.
        let raw: [&str; 5] = std::array::from_fn(|i| f[i].map_or("", |v| v.trim_matches('/')));
        for s in [subject, raw, ["h", "cpu", "0", "cpu", "idle"], [""; 5]] {
            matches(set, s);
        }
    }
    assert!(set.delete(&id, persist).unwrap());
    assert!(!matches(set, subject));
});
