//! What the fuzz targets share: a stand-in for the collectd daemon (the
//! `Collectd` trait the control thread drives), an in-process `App` that
//! serves requests through the real router, a model of collectd's config
//! parser (oconfig is C inside the daemon; it is not linked here), and small
//! reference implementations the targets compare the plugin's parsers with.

pub mod oconfig;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{HeaderMap, Method, Uri};

use rest::app::{AgentInfo, App};
use rest::config::{Config, Role, Tokens};
use rest::control::{Collectd, Control};
use rest::http::ApiRequest;
use rest::model::{
    secs_to_cdtime, CdTime, ConfigItem, ConfigValue, DataSet, DataSource, DsType, MetaRef,
    Notification, RawValue, Severity, ValueListRef,
};

/// Static tokens of the in-process App (`Authorization: Bearer ...`).
pub const ADMIN_TOKEN: &str = "fuzz-admin-token";
pub const READER_TOKEN: &str = "fuzz-reader-token";

/// The .so files of the App's PluginDir.
pub const INSTALLED: [&str; 6] = ["cpu", "df", "interface", "load", "memory", "rest"];
/// The plugins collectd.conf "loaded".
pub const LOADED: [&str; 3] = ["cpu", "load", "rest"];
/// A plugin whose init fails (so the 422 path runs).
pub const FAILING: &str = "df";

const SCRATCH_PREFIX: &str = "collectd-rest-fuzz-";

/// A directory for this process's files: on tmpfs when there is one (state
/// files are fsync'ed on every change), emptied first. libFuzzer ends the
/// process with exit(), so nothing removes it then: the directories of
/// processes that are gone are removed here instead.
pub fn scratch_dir(tag: &str) -> PathBuf {
    let base = Path::new("/dev/shm");
    let base = if base.is_dir() {
        base.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    if let Ok(entries) = std::fs::read_dir(&base) {
        for e in entries.flatten() {
            let name = e.file_name();
            let pid = name
                .to_str()
                .and_then(|n| n.strip_prefix(SCRATCH_PREFIX))
                .and_then(|n| n.split('-').next())
                .and_then(|p| p.parse::<u32>().ok());
            if pid.is_some_and(|p| !Path::new(&format!("/proc/{p}")).exists()) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    let dir = base.join(format!("{SCRATCH_PREFIX}{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch directory");
    dir
}

/// A PluginDir holding empty `INSTALLED` .so files.
pub fn plugin_dir(tag: &str) -> PathBuf {
    let dir = scratch_dir(tag);
    for p in INSTALLED {
        std::fs::write(dir.join(format!("{p}.so")), b"").expect("plugin file");
    }
    dir
}

/// Empties `dir` (the App's StateDir between inputs).
pub fn clear_dir(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// A stand-in for the daemon. Config text goes through the oconfig model;
/// `read_config` asserts that it is only ever handed a runtime file of the
/// shape `runtime_config::runtime_file` promises (TypesDB, at most one
/// LoadPlugin block, at most one Plugin block, no Include anywhere).
pub struct StubCollectd {
    loaded: Mutex<BTreeSet<String>>,
}

impl Default for StubCollectd {
    fn default() -> Self {
        StubCollectd {
            loaded: Mutex::new(LOADED.iter().map(|s| s.to_string()).collect()),
        }
    }
}

/// True if `key` is Include or LoadPlugin anywhere below `items`
/// (iteratively: an oracle independent of `runtime_config::check_tree`).
pub fn holds_forbidden(items: &[ConfigItem]) -> bool {
    let mut todo: Vec<&ConfigItem> = items.iter().collect();
    while let Some(i) = todo.pop() {
        if i.key.eq_ignore_ascii_case("include") || i.key.eq_ignore_ascii_case("loadplugin") {
            return true;
        }
        todo.extend(i.children.iter());
    }
    false
}

/// Panics unless `text` is a runtime file as `runtime_file` builds them.
pub fn assert_runtime_file(text: &str) {
    let root = oconfig::parse(text)
        .unwrap_or_else(|e| panic!("a runtime file does not parse ({e}):\n{text}"));
    let keys: Vec<&str> = root.children.iter().map(|c| c.key.as_str()).collect();
    let shape_ok = matches!(
        keys.as_slice(),
        ["TypesDB"]
            | ["TypesDB", "LoadPlugin"]
            | ["TypesDB", "Plugin"]
            | ["TypesDB", "LoadPlugin", "Plugin"]
    );
    assert!(shape_ok, "runtime file items {keys:?}:\n{text}");
    if let Some(block) = root.children.iter().find(|c| c.key == "Plugin") {
        assert!(
            matches!(block.values.as_slice(), [ConfigValue::String(_)]),
            "Plugin block values {:?}",
            block.values
        );
        assert!(
            !holds_forbidden(&block.children),
            "Include/LoadPlugin in a runtime file:\n{text}"
        );
    }
}

impl Collectd for StubCollectd {
    fn dispatch_notification(&self, n: &Notification) -> Result<(), String> {
        assert!(!n.message.is_empty() && n.message.len() <= rest::model::MAX_MESSAGE_LEN);
        assert!(!n.host.is_empty());
        for f in [&n.message, &n.host, &n.plugin, &n.type_, &n.type_instance] {
            assert!(!f.contains('\0'), "NUL in a dispatched notification");
        }
        Ok(())
    }
    fn flush(&self, plugin: Option<&str>, _timeout: CdTime, identifier: Option<&str>) -> i32 {
        if let Some(p) = plugin {
            assert!(rest::model::valid_plugin_name(p), "flush of plugin {p:?}");
        }
        if let Some(id) = identifier {
            assert!(
                rest::model::parse_identifier(id).is_some(),
                "flush of {id:?}"
            );
        }
        0
    }
    fn is_loaded(&self, plugin: &str) -> bool {
        self.loaded.lock().unwrap().contains(plugin)
    }
    fn parse_config(&self, text: &str) -> Result<ConfigItem, String> {
        oconfig::parse(text)
    }
    fn read_config(&self, text: &str) -> Result<(), String> {
        assert_runtime_file(text);
        // cf_read of a <LoadPlugin> block loads the plugin.
        let root = oconfig::parse(text)?;
        for item in root.children.iter().filter(|i| i.key == "LoadPlugin") {
            if let [ConfigValue::String(name)] = item.values.as_slice() {
                self.loaded.lock().unwrap().insert(name.clone());
            }
        }
        Ok(())
    }
    fn register(&self, plugin: &str, _interval: Option<f64>) -> Result<(), String> {
        assert!(rest::plugins::valid_name(plugin), "register {plugin:?}");
        self.loaded.lock().unwrap().insert(plugin.to_string());
        Ok(())
    }
    fn init(&self, plugin: &str) -> Result<(), String> {
        if plugin == FAILING {
            Err(format!("the init callback of {plugin} failed"))
        } else {
            Ok(())
        }
    }
    fn unregister(&self, _plugin: &str, _force: bool) -> Result<(), String> {
        Ok(())
    }
    fn discard(&self, _plugin: &str) {}
    fn wait_reads_done(&self) -> Result<(), String> {
        Ok(())
    }
}

/// An `App` as collectd's init builds it (static tokens, a PluginDir, a
/// StateDir, a few metrics and notifications), with its control thread
/// running against `StubCollectd`.
pub struct Harness {
    pub app: Arc<App>,
    control_thread: Option<std::thread::JoinHandle<()>>,
}

fn gauge_set(type_name: &str, names: &[&str]) -> DataSet {
    DataSet {
        type_name: type_name.into(),
        sources: names
            .iter()
            .map(|n| DataSource {
                name: (*n).into(),
                ds_type: DsType::Gauge,
                min: 0.0,
                max: f64::NAN,
            })
            .collect(),
    }
}

impl Harness {
    pub fn new(plugin_dir: &Path, state_dir: &Path) -> Harness {
        let config = Config {
            tokens: Tokens(vec![
                (Role::Admin, ADMIN_TOKEN.to_string()),
                (Role::Reader, READER_TOKEN.to_string()),
            ]),
            state_dir: Some(state_dir.to_path_buf()),
            history_size: 4,
            notification_buffer_size: 8,
            ..Config::default()
        };
        let info = AgentInfo {
            hostname: "fuzz-host".into(),
            interval: 10.0,
            timeout_factor: 2,
            plugin_dir: Some(plugin_dir.to_path_buf()),
            collectd_version: "5.12.0".into(),
            fault_plugin: None,
            clock: || None,
        };
        let auth = rest::auth::Authenticator::new(&config).expect("authenticator");
        let (control, worker) = Control::new();
        let app = Arc::new(App::new(config, info, control, auth));

        let now = secs_to_cdtime(rest::app::now_secs());
        let load = gauge_set("load", &["shortterm", "midterm", "longterm"]);
        let cpu = gauge_set("cpu", &["value"]);
        for (i, t) in [now - (20 << 30), now - (10 << 30), now]
            .into_iter()
            .enumerate()
        {
            let v = [RawValue::gauge(0.5 * i as f64); 3];
            for (ds, f, values) in [
                (&load, ["fuzz-host", "load", "", "load", ""], &v[..]),
                (&cpu, ["fuzz-host", "cpu", "0", "cpu", "idle"], &v[..1]),
                (&cpu, ["web-1", "cpu", "1", "cpu", "user"], &v[..1]),
            ] {
                app.values.update(
                    ds,
                    ValueListRef {
                        host: f[0].as_bytes(),
                        plugin: f[1].as_bytes(),
                        plugin_instance: f[2].as_bytes(),
                        type_: f[3].as_bytes(),
                        type_instance: f[4].as_bytes(),
                        values,
                        time: t,
                        interval: 10 << 30,
                        meta: MetaRef::Absent,
                    },
                );
            }
        }
        for (severity, plugin) in [(Severity::Warning, "df"), (Severity::Okay, "cpu")] {
            app.notifications.push(Notification {
                severity,
                time: now,
                message: format!("{plugin} says hello"),
                host: "fuzz-host".into(),
                plugin: plugin.into(),
                plugin_instance: String::new(),
                type_: String::new(),
                type_instance: String::new(),
                meta: Vec::new(),
            });
        }

        let a = app.clone();
        let control_thread = std::thread::spawn(move || {
            let stub = StubCollectd::default();
            a.plugins.startup(&stub);
            worker.run(&a.control, &stub);
        });
        app.control.mark_ready();
        Harness {
            app,
            control_thread: Some(control_thread),
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.app.control.close();
        if let Some(t) = self.control_thread.take() {
            // A panic on the control thread was already reported (and
            // aborted the fuzzer); nothing to add here.
            let _ = t.join();
        }
    }
}

/// A request as text, HTTP/1.1 style without the version:
///
/// ```text
/// PUT /v1/blacklist/no-lo?x=1
/// authorization: Bearer fuzz-admin-token
/// content-type: application/json
///
/// {"plugin": "interface"}
/// ```
///
/// Returns None for what hyper would refuse before our code sees it (a bad
/// method, target or header).
pub fn parse_request_text(data: &[u8]) -> Option<ApiRequest> {
    let (head, body) = match find(data, b"\n\n") {
        Some(i) => (&data[..i], &data[i + 2..]),
        None => (data, &b""[..]),
    };
    let mut lines = head.split(|&b| b == b'\n');
    let first = lines.next()?;
    let sp = first.iter().position(|&b| b == b' ')?;
    let method = Method::from_bytes(&first[..sp]).ok()?;
    let uri = Uri::try_from(&first[sp + 1..]).ok()?;
    // The server hands the router origin-form targets only.
    if uri.scheme().is_some() || uri.authority().is_some() || !uri.path().starts_with('/') {
        return None;
    }
    let mut headers = HeaderMap::new();
    for line in lines {
        let colon = line.iter().position(|&b| b == b':')?;
        let name = HeaderName::from_bytes(&line[..colon]).ok()?;
        let value = HeaderValue::from_bytes(line[colon + 1..].trim_ascii()).ok()?;
        headers.append(name, value);
    }
    Some(ApiRequest {
        method,
        uri,
        headers,
        body: Bytes::copy_from_slice(body),
        received: Some(rest::app::now_secs()),
    })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// An `ApiRequest` carrying a JSON body, as the server builds it.
pub fn json_request(method: Method, uri: &str, body: &[u8]) -> ApiRequest {
    let mut r = ApiRequest::new(method, uri);
    r.headers.insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r.body = Bytes::copy_from_slice(body);
    r
}

/// RFC 3986 percent-decoding, strictly: `%` must be followed by two hex
/// digits; with `plus`, `+` is a space. None if malformed or not UTF-8.
pub fn reference_percent_decode(s: &str, plus: bool) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hi = (*b.get(i + 1)? as char).to_digit(16)?;
                let lo = (*b.get(i + 2)? as char).to_digit(16)?;
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            b'+' if plus => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The query keys each route allows (the `req.query(...)` calls of the
/// handlers), for the query-string target.
pub const ROUTE_QUERY_KEYS: &[&[&str]] = &[
    &[],
    &["host", "plugin", "plugin_instance", "type", "type_instance"],
    &[
        "host",
        "plugin",
        "plugin_instance",
        "type",
        "type_instance",
        "since",
        "limit",
    ],
    &["since", "severity", "plugin", "limit"],
    &["since", "severity", "plugin"],
    &["state"],
    &["t0"],
];

/// Whether serde_json parses floats exactly (its `float_roundtrip`
/// feature). Without it, "45e99" is parsed one ULP low, and the number it
/// writes back for that value is parsed one ULP off again: a number can
/// move by one ULP through StateDir. Until the plugin turns the feature on,
/// the round-trip checks allow that ULP; once it is on, they are exact.
pub fn exact_floats() -> bool {
    serde_json::from_str::<f64>("45e99").is_ok_and(|v| v == 45e99)
}

/// Equal JSON, numbers within one ULP unless `exact_floats()`.
pub fn json_close(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            x == y
                || (!exact_floats()
                    && x.signum() == y.signum()
                    && x.to_bits().abs_diff(y.to_bits()) <= 1)
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_close(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_close(v, w)))
        }
        _ => a == b,
    }
}

/// `a` and `b` serialize to `json_close` JSON.
pub fn assert_same_json<T: serde::Serialize + std::fmt::Debug>(a: &T, b: &T, what: &str) {
    let (x, y) = (
        serde_json::to_value(a).expect("serializes"),
        serde_json::to_value(b).expect("serializes"),
    );
    assert!(json_close(&x, &y), "{what}: {a:?} became {b:?}");
}
