//! The body of `PUT /v1/plugins/{name}`: `ApiRequest::json::<PutRequest>`
//! (an empty body is `{}`), then `plugins::Manager::put`, which checks the
//! name, the interval and the config text (`runtime_config::check_text`,
//! collectd's parser, `runtime_config::check_tree`) and runs the operation
//! against a stand-in collectd whose parser is a model of oconfig, and
//! which asserts that every runtime file it is handed has the promised
//! shape (TypesDB, LoadPlugin, one Plugin block, no Include).
//!
//! Input: one byte choosing the plugin, then the body.
//! Invariants: no panic; a bad interval or config text is a 400; an
//! accepted change is what the answer shows, and what a restart of
//! collectd (a new Manager reading StateDir) brings back.
#![no_main]

use std::path::PathBuf;
use std::sync::LazyLock;

use fuzz_support::{
    assert_same_json, clear_dir, json_request, plugin_dir, scratch_dir, StubCollectd, INSTALLED,
};
use hyper::Method;
use libfuzzer_sys::fuzz_target;
use rest::plugins::runtime_config::check_text;
use rest::plugins::{Manager, OpError, PluginState, PutRequest, MIN_INTERVAL};

static DIRS: LazyLock<(PathBuf, PathBuf)> =
    LazyLock::new(|| (plugin_dir("put-plugins"), scratch_dir("put-state")));

fn manager(stub: &StubCollectd) -> Manager {
    let m = Manager::new(Some(DIRS.0.clone()), &DIRS.1);
    m.startup(stub);
    m
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    let names: Vec<&str> = INSTALLED.iter().copied().chain(["nope", "a/b"]).collect();
    let name = names[usize::from(sel) % names.len()];
    let req = json_request(Method::PUT, &format!("/v1/plugins/{name}"), body);
    let Ok(put) = req.json::<PutRequest>(true) else {
        return;
    };

    clear_dir(&DIRS.1);
    let stub = StubCollectd::default();
    let m = manager(&stub);
    let result = m.put(&stub, name, put.clone(), Some(10.0));

    let bad_interval = put
        .interval
        .is_some_and(|i| !(i.is_finite() && (MIN_INTERVAL..=86_400.0).contains(&i)));
    let bad_text = put
        .config
        .as_deref()
        .is_some_and(|c| check_text(c).is_err());
    if bad_interval || bad_text {
        assert!(
            matches!(
                result,
                Err(OpError::Invalid(..)) | Err(OpError::NotFound(_))
            ) || (name == "rest" && matches!(result, Err(OpError::Conflict(_)))),
            "{put:?} -> {result:?}"
        );
    }
    let Ok(view) = result else {
        return;
    };
    assert_eq!(view.name, name);
    if put.config.is_some() {
        assert_eq!(view.config, put.config);
    }
    if put.interval.is_some() {
        assert_eq!(view.interval, put.interval);
    }
    let expected = if put.enabled == Some(false) {
        PluginState::Disabled
    } else {
        PluginState::Enabled
    };
    assert_eq!(view.state, expected);

    // collectd restarts: only collectd.conf's plugins are loaded; StateDir
    // brings the change back.
    let stub = StubCollectd::default();
    let again = manager(&stub)
        .get(name)
        .expect("the plugin after a restart");
    assert_eq!(again.config, view.config);
    assert_same_json(&again.interval, &view.interval, "interval through StateDir");
});
