//! Blacklist rules: resources or meters that must not be collected. A value
//! whose identifier matches every field a rule specifies is dropped before
//! collectd's value cache and every write plugin (by the pre-cache filter
//! match in `host`). A field is an exact string or `/regex/` (an unanchored
//! search, as collectd's match_regex does).
//!
//! The write path asks `matches` for every value: the rule set is an
//! immutable compiled snapshot, swapped as a whole on change; exact-only rules
//! are found by hash lookups (one per combination of fields used), regex rules
//! test their exact fields before their patterns.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use regex::{Regex, RegexBuilder};
use serde::{Deserialize, Serialize};

use super::set::{Compile, RuleSet};

/// The identifier fields, in order.
pub const FIELDS: [&str; 5] = ["host", "plugin", "plugin_instance", "type", "type_instance"];

/// Longest pattern or exact value accepted.
const MAX_FIELD_LEN: usize = 1024;
/// Compiled size limit per regex (bounds memory and build time).
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// A rule as the API reads and writes it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin_instance: Option<String>,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub type_instance: Option<String>,
}

impl Rule {
    fn fields(&self) -> [Option<&str>; 5] {
        [
            self.host.as_deref(),
            self.plugin.as_deref(),
            self.plugin_instance.as_deref(),
            self.type_.as_deref(),
            self.type_instance.as_deref(),
        ]
    }
}

enum FieldMatch {
    Any,
    Exact(String),
    Regex(Regex),
}

impl FieldMatch {
    fn parse(name: &str, v: Option<&str>) -> Result<FieldMatch, String> {
        let Some(v) = v else {
            return Ok(FieldMatch::Any);
        };
        if v.len() > MAX_FIELD_LEN {
            return Err(format!("{name} is longer than {MAX_FIELD_LEN} bytes"));
        }
        match v.strip_prefix('/').and_then(|r| r.strip_suffix('/')) {
            Some(pattern) if v.len() >= 2 => RegexBuilder::new(pattern)
                .size_limit(REGEX_SIZE_LIMIT)
                .build()
                .map(FieldMatch::Regex)
                .map_err(|e| format!("{name}: invalid regex: {e}")),
            _ => Ok(FieldMatch::Exact(v.to_string())),
        }
    }
}

/// The compiled rule set the write path reads.
#[derive(Default)]
pub struct Compiled {
    /// Exact-only rules: for each combination of fields (bit i = FIELDS[i]),
    /// the set of their values joined with '\0'.
    exact: Vec<(u8, HashSet<String>)>,
    /// Rules with at least one regex field.
    patterns: Vec<[FieldMatch; 5]>,
}

impl Compiled {
    fn build(rules: &BTreeMap<String, Rule>) -> Result<Compiled, String> {
        let mut c = Compiled::default();
        for rule in rules.values() {
            let fields = rule.fields();
            let matchers: Vec<FieldMatch> = fields
                .iter()
                .zip(FIELDS)
                .map(|(v, name)| FieldMatch::parse(name, *v))
                .collect::<Result<_, _>>()?;
            if matchers.iter().any(|m| matches!(m, FieldMatch::Regex(_))) {
                let m: [FieldMatch; 5] =
                    matchers.try_into().map_err(|_| "five fields".to_string())?;
                c.patterns.push(m);
                continue;
            }
            let mut mask = 0u8;
            let mut key = String::new();
            for (i, v) in fields.iter().enumerate() {
                if let Some(v) = v {
                    mask |= 1 << i;
                    key.push_str(v);
                    key.push('\0');
                }
            }
            match c.exact.iter_mut().find(|(m, _)| *m == mask) {
                Some((_, set)) => {
                    set.insert(key);
                }
                None => c.exact.push((mask, HashSet::from([key]))),
            }
        }
        Ok(c)
    }

    fn matches(&self, f: [&str; 5], key: &mut String) -> bool {
        for (mask, set) in &self.exact {
            key.clear();
            for (i, v) in f.iter().enumerate() {
                if mask & (1 << i) != 0 {
                    key.push_str(v);
                    key.push('\0');
                }
            }
            if set.contains(key.as_str()) {
                return true;
            }
        }
        self.patterns.iter().any(|rule| {
            let exact_ok = rule.iter().zip(f).all(|(m, v)| match m {
                FieldMatch::Exact(e) => e == v,
                _ => true,
            });
            exact_ok
                && rule.iter().zip(f).all(|(m, v)| match m {
                    FieldMatch::Regex(r) => r.is_match(v),
                    _ => true,
                })
        })
    }
}

/// Whether `id` may name a rule (or a threshold).
pub fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

impl Compile for Rule {
    type Compiled = Compiled;

    fn check(&self) -> Result<(), String> {
        if self.fields().iter().all(Option::is_none) {
            return Err(
                "a rule needs at least one of host, plugin, plugin_instance, type, type_instance"
                    .into(),
            );
        }
        for (v, name) in self.fields().iter().zip(FIELDS) {
            FieldMatch::parse(name, *v)?;
        }
        Ok(())
    }

    fn compile(rules: &BTreeMap<String, Rule>) -> Result<Compiled, String> {
        Compiled::build(rules)
    }
}

/// The blacklist: rules by id, read by the write path.
pub type Blacklist = RuleSet<Rule>;

thread_local! {
    /// Per write thread: the compiled set it last used, and a key buffer.
    static CACHE: RefCell<(u64, Arc<Compiled>, String)> =
        RefCell::new((0, Arc::new(Compiled::default()), String::new()));
}

/// The write path: does any rule of `set` match these identifier fields?
pub fn matches(set: &Blacklist, f: [&str; 5]) -> bool {
    if set.is_empty() {
        return false;
    }
    let version = set.version();
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.0 != version {
            c.1 = set.compiled();
            c.0 = version;
        }
        let (_, compiled, key) = &mut *c;
        compiled.matches(f, key)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::set::PutError;

    fn rule(f: [Option<&str>; 5]) -> Rule {
        Rule {
            id: None,
            host: f[0].map(String::from),
            plugin: f[1].map(String::from),
            plugin_instance: f[2].map(String::from),
            type_: f[3].map(String::from),
            type_instance: f[4].map(String::from),
        }
    }

    fn ok(_: &BTreeMap<String, Rule>) -> Result<(), String> {
        Ok(())
    }

    #[test]
    fn two_sets_on_one_thread_never_share_a_cached_snapshot() {
        let (a, b) = (Blacklist::default(), Blacklist::default());
        a.put("x", rule([None, Some("cpu"), None, None, None]), ok)
            .unwrap();
        b.put("x", rule([None, Some("load"), None, None, None]), ok)
            .unwrap();
        for _ in 0..2 {
            assert!(matches(&a, ["h", "cpu", "", "cpu", ""]));
            assert!(!matches(&a, ["h", "load", "", "load", ""]));
            assert!(matches(&b, ["h", "load", "", "load", ""]));
            assert!(!matches(&b, ["h", "cpu", "", "cpu", ""]));
        }
    }

    #[test]
    fn exact_and_regex_rules() {
        let b = Blacklist::default();
        assert!(!matches(&b, ["h", "cpu", "0", "cpu", "idle"]));
        assert!(b
            .put("a", rule([None, Some("cpu"), None, None, Some("idle")]), ok)
            .unwrap());
        assert!(matches(&b, ["h", "cpu", "0", "cpu", "idle"]));
        assert!(matches(&b, ["other", "cpu", "7", "cpu", "idle"]));
        assert!(!matches(&b, ["h", "cpu", "0", "cpu", "user"]));
        assert!(b
            .put(
                "b",
                rule([None, Some("interface"), Some("/^(eth|ens)/"), None, None]),
                ok
            )
            .unwrap());
        assert!(matches(&b, ["h", "interface", "eth0", "if_octets", ""]));
        assert!(matches(&b, ["h", "interface", "ens3", "if_octets", ""]));
        assert!(!matches(&b, ["h", "interface", "lo", "if_octets", ""]));
        assert!(
            !matches(&b, ["h", "disk", "eth0", "x", ""]),
            "the exact field must match too"
        );
        // unanchored, as collectd's match_regex
        b.put("c", rule([Some("/web/"), None, None, None, None]), ok)
            .unwrap();
        assert!(matches(&b, ["my-web-1", "load", "", "load", ""]));
        // replace and delete
        assert!(!b
            .put("a", rule([None, Some("memory"), None, None, None]), ok)
            .unwrap());
        assert!(!matches(&b, ["h", "cpu", "0", "cpu", "idle"]));
        assert!(matches(&b, ["h", "memory", "", "memory", "used"]));
        assert!(b.delete("a", ok).unwrap());
        assert!(!b.delete("a", ok).unwrap());
        assert!(!matches(&b, ["h", "memory", "", "memory", "used"]));
        b.delete("b", ok).unwrap();
        b.delete("c", ok).unwrap();
        assert!(b.is_empty(), "no rules: the write path does nothing");
        assert!(b.list().is_empty());
        // a new rule after all were deleted is seen by a thread that cached
        // an earlier set
        b.put("d", rule([None, Some("swap"), None, None, None]), ok)
            .unwrap();
        assert!(matches(&b, ["h", "swap", "", "swap", "used"]));
        assert!(!matches(&b, ["my-web-1", "load", "", "load", ""]));
    }

    #[test]
    fn bad_rules_change_nothing() {
        let b = Blacklist::default();
        b.put("keep", rule([None, Some("cpu"), None, None, None]), ok)
            .unwrap();
        let e = b
            .put("x", rule([None, None, None, Some("/(unclosed/"), None]), ok)
            .unwrap_err();
        assert!(
            matches!(&e, PutError::Invalid(m) if m.starts_with("type: invalid regex")),
            "{e:?}"
        );
        assert!(b.put("x", rule([None; 5]), ok).is_err());
        let long = "a".repeat(MAX_FIELD_LEN + 1);
        assert!(b
            .put("x", rule([Some(&long), None, None, None, None]), ok)
            .is_err());
        // a failed persist changes nothing either
        let fail = |_: &BTreeMap<String, Rule>| Err("disk full".to_string());
        assert!(b
            .put("y", rule([None, Some("memory"), None, None, None]), fail)
            .is_err());
        assert_eq!(b.list().len(), 1);
        assert!(!matches(&b, ["h", "memory", "", "memory", "used"]));
        assert!(matches(&b, ["h", "cpu", "0", "cpu", "idle"]));
        // "/" alone and "//" are exact strings and an empty regex
        b.put("s", rule([None, Some("/"), None, None, None]), ok)
            .unwrap();
        assert!(matches(&b, ["h", "/", "", "t", ""]));
    }

    #[test]
    fn ids() {
        assert!(valid_id("no-eth.1_x"));
        assert!(!valid_id(""));
        assert!(!valid_id("a/b"));
        assert!(!valid_id(&"a".repeat(65)));
    }
}
