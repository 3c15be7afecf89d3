//! Blacklist `/regex/` fields: the pattern compilation of `Rule::check` and
//! the set compiler (regex crate, 1 MiB compiled size limit per pattern),
//! and matching on the write path (`blacklist::matches`, an unanchored
//! search). The JSON target reaches patterns too, but through escaping;
//! this one hands the raw pattern over.
//!
//! Input: the pattern, a NUL, the subject (a type_instance).
//! Invariants: no panic, no hang (libFuzzer's -timeout), no huge allocation
//! (-rss_limit_mb / -malloc_limit_mb); an accepted pattern matches exactly
//! what the same pattern in an unlimited `Regex` matches.
#![no_main]

use std::collections::BTreeMap;
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use rest::rules::blacklist::{matches, Blacklist, Rule};

static SET: LazyLock<Blacklist> = LazyLock::new(Blacklist::default);

fn no_persist(_: &BTreeMap<String, Rule>) -> Result<(), String> {
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let (pattern, subject) = s.split_once('\0').unwrap_or((s, ""));
    let rule = Rule {
        plugin: Some("cpu".into()),
        type_instance: Some(format!("/{pattern}/")),
        ..Rule::default()
    };
    let set = &*SET;
    match set.put("re", rule, no_persist) {
        Ok(created) => assert!(created),
        Err(_) => {
            assert!(set.is_empty());
            return;
        }
    }
    let got = matches(set, ["h", "cpu", "0", "cpu", subject]);
    let want = regex::Regex::new(pattern).is_ok_and(|r| r.is_match(subject));
    assert_eq!(got, want, "/{pattern}/ on {subject:?}");
    assert!(!matches(set, ["h", "memory", "", "memory", subject]));
    assert!(set.delete("re", no_persist).unwrap());
});
