//! Identifiers and names from the client: `parse_identifier` (the path of
//! `GET /v1/values/{host}/{plugin}/{type}` and flush's `identifiers`),
//! `MetricName`, and the name checks `valid_plugin_name` (flush's
//! `plugins`), `plugins::valid_name` (the `{name}` of the plugin routes)
//! and `blacklist::valid_id` (the `{id}` of the rule routes).
//!
//! Invariants: a parsed identifier has non-empty host, plugin and type, no
//! `/` in any field, no `-` in plugin or type, fields of at most 127 bytes,
//! and parse -> format -> parse is a fixed point; `MetricName` gives back
//! the (truncated) fields it was built from, and its identifier is the one
//! the write path builds from the raw fields; a valid name is a safe file
//! and config name (ASCII, no `/`, NUL, quote or backslash, not `.`/`..`),
//! an id is plain ASCII, and a valid plugin-route name is valid for flush
//! and as an id too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rest::model::{
    parse_identifier, truncate, valid_plugin_name, MetaRef, MetricName, ValueListRef, MAX_NAME_LEN,
};
use rest::plugins::valid_name;
use rest::rules::blacklist::valid_id;

/// The identifier the write path builds from a value list's fields.
fn raw_identifier(f: [&str; 5]) -> Vec<u8> {
    let vl = ValueListRef {
        host: f[0].as_bytes(),
        plugin: f[1].as_bytes(),
        plugin_instance: f[2].as_bytes(),
        type_: f[3].as_bytes(),
        type_instance: f[4].as_bytes(),
        values: &[],
        time: 0,
        interval: 0,
        meta: MetaRef::Absent,
    };
    let mut id = vec![0; vl.raw_identifier_len()];
    vl.write_raw_identifier(&mut id);
    id
}

fn safe_name(s: &str) {
    assert!(!s.is_empty() && s.is_ascii(), "{s:?}");
    assert!(s != "." && s != "..", "{s:?}");
    assert!(!s.contains(['/', '\0', '"', '\\', ' ', '\n']), "{s:?}");
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };

    if let Some(f) = parse_identifier(s) {
        assert!(
            !f[0].is_empty() && !f[1].is_empty() && !f[3].is_empty(),
            "{s:?}"
        );
        assert!(f
            .iter()
            .all(|x| !x.contains('/') && x.len() <= MAX_NAME_LEN));
        assert!(!f[1].contains('-') && !f[3].contains('-'), "{s:?} -> {f:?}");
        let id = String::from_utf8(raw_identifier([&f[0], &f[1], &f[2], &f[3], &f[4]])).unwrap();
        assert!(id.len() <= s.len());
        assert_eq!(parse_identifier(&id).as_ref(), Some(&f), "{s:?} -> {id:?}");
        let name = MetricName::new([&f[0], &f[1], &f[2], &f[3], &f[4]]);
        assert_eq!(name.identifier(), id);
        assert_eq!(name.fields(), [&f[0], &f[1], &f[2], &f[3], &f[4]]);
    }

    // Any five strings (NUL-separated) make a name that gives them back,
    // each cut to 127 bytes at a character boundary.
    let mut parts = s.splitn(5, '\0');
    let f: [&str; 5] = std::array::from_fn(|_| parts.next().unwrap_or(""));
    let name = MetricName::new(f);
    assert_eq!(name.fields(), f.map(|x| truncate(x, MAX_NAME_LEN)), "{f:?}");
    // The write path finds a known metric by the identifier it builds from
    // collectd's bytes: the same bytes as the stored name's identifier.
    if f.iter().all(|x| x.len() <= MAX_NAME_LEN) {
        assert_eq!(raw_identifier(f), name.identifier().as_bytes(), "{f:?}");
    }

    let plugin_route = valid_name(s);
    let flush_plugin = valid_plugin_name(s);
    let id = valid_id(s);
    // Plugin names become file names ({name}.so) and config strings.
    if plugin_route || flush_plugin {
        safe_name(s);
    }
    // Ids are keys of a JSON map in StateDir, never file names.
    if id {
        assert!(
            s.is_ascii() && !s.contains(['/', '\0', '"', '\\', ' ']),
            "{s:?}"
        );
    }
    if plugin_route {
        assert!(flush_plugin && id, "{s:?}");
        assert!(s.len() <= 64);
    }
    if flush_plugin {
        assert!(s.len() <= MAX_NAME_LEN && !s.starts_with(['.', '-']));
    }
});
