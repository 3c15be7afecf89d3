//! Runtime plugin management: which plugins exist, their state, the
//! operations on them (load, enable, disable, restart, reconfigure, delete),
//! and their persistence in StateDir.
//!
//! Every operation runs on the control thread and drives collectd through
//! the `Collectd` trait; this module holds the bookkeeping and the order of
//! the steps, `host` the calls into collectd. A plugin's state:
//! - `available`: a `.so` in PluginDir that is not running;
//! - `enabled`: loaded, with its callbacks registered;
//! - `disabled`: its callbacks unregistered (collectd 5.12 cannot unload a
//!   plugin); config and shutdown callbacks stay;
//! - `failed`: the last attempt to load or start it failed; its callbacks
//!   are unregistered.

pub mod hold;
pub mod runtime_config;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::control::Collectd;
use crate::model::{secs_to_cdtime, CdTime};
use crate::state::{self, Loaded};
pub use hold::{Hold, LogCapture};

/// The plugin that serves this API: it cannot be disabled, restarted,
/// reconfigured or deleted through it.
pub const SELF_NAME: &str = "rest";

const STATE_FILE: &str = "plugins.json";
const STATE_VERSION: u32 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PluginState {
    Available,
    Enabled,
    Disabled,
    Failed,
}

impl PluginState {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "available" => Some(Self::Available),
            "enabled" => Some(Self::Enabled),
            "disabled" => Some(Self::Disabled),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// Loaded by collectd.conf.
    Config,
    /// Loaded through the API.
    Api,
}

/// Why the last attempt failed, with the log lines it produced.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PluginError {
    pub message: String,
    pub log: Vec<String>,
}

/// The plugin object of the API.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PluginView {
    pub name: String,
    pub state: PluginState,
    pub origin: Option<Origin>,
    pub interval: Option<f64>,
    pub config: Option<String>,
    pub error: Option<PluginError>,
}

/// What StateDir keeps of a plugin: the last accepted change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Persisted {
    pub origin: Origin,
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFile {
    version: u32,
    plugins: BTreeMap<String, Persisted>,
}

#[derive(Clone, Debug)]
struct Record {
    state: PluginState,
    origin: Option<Origin>,
    /// Set through the API.
    interval: Option<f64>,
    config: Option<String>,
    error: Option<PluginError>,
    /// What StateDir holds for it (None: nothing).
    persisted: Option<Persisted>,
}

impl Record {
    fn new(state: PluginState, origin: Option<Origin>) -> Self {
        Record {
            state,
            origin,
            interval: None,
            config: None,
            error: None,
            persisted: None,
        }
    }
}

/// The shortest interval a PUT accepts, 10 ms. collectd itself takes any
/// positive interval, but a read due again before the last one has ended
/// keeps a read thread busy without pause: schemathesis set cpu to 2^-30 s,
/// which saturated both cores, flooded collectd's write queue and left no
/// moment at which that read thread was between reads (so every later
/// plugin operation waited 10 s and failed).
pub const MIN_INTERVAL: f64 = 0.01;

/// What a PUT asks for; omitted fields keep their current value.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutRequest {
    pub config: Option<String>,
    pub interval: Option<f64>,
    pub enabled: Option<bool>,
}

/// Why an operation was refused or failed.
#[derive(Clone, Debug, PartialEq)]
pub enum OpError {
    /// 400: the request is malformed (code, message).
    Invalid(&'static str, String),
    /// 404.
    NotFound(String),
    /// 409.
    Conflict(String),
    /// 422: collectd refused; the plugin is now failed.
    Failed(PluginError),
    /// 500: the change happened but could not be persisted, or similar.
    Internal(String),
}

type OpResult<T> = Result<T, OpError>;

/// Plugins of collectd 5.12 that register callbacks under names of their
/// own making ("write_http/<node>", "python.<module>", "apache/<instance>",
/// from their configuration; collectd 5.12 sources). Unregistering by the
/// plugin's name would leave those running, and collectd cannot list them,
/// so these plugins are not stopped at runtime. Plugins whose instance
/// reads share a read group named after the plugin (and that name nothing
/// else their own way) are not here: the group is unregistered.
pub const INSTANCE_NAMED: &[&str] = &[
    "amqp",
    "amqp1",
    "apache",
    "curl",
    "curl_jolokia",
    "curl_json",
    "dbi",
    "java",
    "lua",
    "modbus",
    "mqtt",
    "mysql",
    "netapp",
    "openldap",
    "perl",
    "postgresql",
    "python",
    "routeros",
    "snmp",
    "tail",
    "tail_csv",
    "virt",
    "write_graphite",
    "write_http",
    "write_kafka",
    "write_mongodb",
    "write_redis",
    "write_riemann",
    "write_sensu",
    "write_syslog",
    "write_tsdb",
];

pub fn instance_named(name: &str) -> bool {
    INSTANCE_NAMED.contains(&name)
}

fn instance_named_reason(name: &str) -> String {
    let how = match name {
        "python" | "perl" | "java" | "lua" => {
            "its scripts register callbacks under names of their own"
        }
        _ => "it registers a callback per configured instance, under names of its own",
    };
    format!(
        "{how}, which collectd 5.12 cannot list, so unregistering {name} would leave \
         them running"
    )
}

/// A plugin name as PluginDir file names use them.
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The plugins in a plugin directory: the names of its `*.so` files, sorted.
pub fn installed(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".so"))
                .filter(|n| valid_name(n))
                .map(String::from)
        })
        .collect();
    names.sort();
    names
}

pub struct Manager {
    plugin_dir: Option<PathBuf>,
    state_path: PathBuf,
    records: Mutex<BTreeMap<String, Record>>,
    /// Read from StateDir at start, applied once collectd has started.
    pending: Mutex<Option<BTreeMap<String, Persisted>>>,
    pub hold: Hold,
    pub capture: LogCapture,
}

impl Manager {
    /// Reads StateDir. Config-loaded plugins that StateDir keeps disabled or
    /// deleted are held (their values dropped) from now on, until the
    /// control thread disables them once collectd has started.
    pub fn new(plugin_dir: Option<PathBuf>, state_dir: &Path) -> Manager {
        let state_path = state_dir.join(STATE_FILE);
        let pending = match state::load_json::<StateFile>(&state_path) {
            Ok(Loaded::Ok(f)) if f.version == STATE_VERSION => f.plugins,
            Ok(Loaded::Ok(f)) => {
                log::error!(
                    "{}: unknown version {}; starting without persisted plugin changes",
                    state_path.display(),
                    f.version
                );
                BTreeMap::new()
            }
            Ok(Loaded::Missing) => BTreeMap::new(),
            Ok(Loaded::Corrupt { error, kept_at }) => {
                log::error!(
                    "{} does not parse ({error}); kept it as {} and started without \
                     persisted plugin changes",
                    state_path.display(),
                    kept_at.display()
                );
                BTreeMap::new()
            }
            Err(e) => {
                log::error!(
                    "cannot read {}: {e}; starting without persisted plugin changes",
                    state_path.display()
                );
                BTreeMap::new()
            }
        };
        let m = Manager {
            plugin_dir,
            state_path,
            records: Mutex::new(BTreeMap::new()),
            pending: Mutex::new(None),
            hold: Hold::default(),
            capture: LogCapture::default(),
        };
        for (name, p) in &pending {
            if p.origin == Origin::Config && (p.deleted || !p.enabled) {
                m.hold.hold(name);
            }
        }
        *m.pending.lock() = Some(pending);
        m
    }

    fn installed(&self) -> Vec<String> {
        self.plugin_dir
            .as_deref()
            .map(installed)
            .unwrap_or_default()
    }

    fn is_installed(&self, name: &str) -> bool {
        self.plugin_dir
            .as_ref()
            .is_some_and(|d| d.join(format!("{name}.so")).is_file())
    }

    fn view(name: &str, r: Option<&Record>) -> PluginView {
        match r {
            Some(r) => PluginView {
                name: name.to_string(),
                state: r.state,
                origin: r.origin,
                interval: r.interval,
                config: r.config.clone(),
                error: r.error.clone(),
            },
            None => PluginView {
                name: name.to_string(),
                state: PluginState::Available,
                origin: None,
                interval: None,
                config: None,
                error: None,
            },
        }
    }

    /// Every plugin: the `.so` files in PluginDir and the plugins known here.
    pub fn list(&self, state: Option<PluginState>) -> Vec<PluginView> {
        let records = self.records.lock();
        let mut names = self.installed();
        names.extend(records.keys().cloned());
        names.sort();
        names.dedup();
        names
            .iter()
            .map(|n| Self::view(n, records.get(n)))
            .filter(|v| state.is_none_or(|s| v.state == s))
            .collect()
    }

    pub fn get(&self, name: &str) -> OpResult<PluginView> {
        let records = self.records.lock();
        let r = records.get(name);
        if r.is_none() && !self.is_installed(name) {
            return Err(OpError::NotFound(format!("no plugin {name} in PluginDir")));
        }
        Ok(Self::view(name, r))
    }

    fn check_name(&self, name: &str) -> OpResult<()> {
        if !valid_name(name) {
            return Err(OpError::Invalid(
                "invalid_name",
                format!("{name:?} is not a plugin name (letters, digits, _ and -)"),
            ));
        }
        if !self.is_installed(name) && !self.records.lock().contains_key(name) {
            return Err(OpError::NotFound(format!("no plugin {name} in PluginDir")));
        }
        Ok(())
    }

    fn refuse_self(name: &str, what: &str) -> OpResult<()> {
        if name == SELF_NAME {
            return Err(OpError::Conflict(format!(
                "the {SELF_NAME} plugin serves this API: it cannot be {what} through it"
            )));
        }
        Ok(())
    }

    /// A running plugin whose callbacks carry names of its own making
    /// cannot be stopped at runtime (409).
    fn refuse_instance_named(name: &str, what: &str) -> OpResult<()> {
        if instance_named(name) {
            return Err(OpError::Conflict(format!(
                "plugin {name} cannot be {what} at runtime: {}; change collectd.conf and \
                 restart collectd instead",
                instance_named_reason(name)
            )));
        }
        Ok(())
    }

    /// Unregisters a running plugin's callbacks; 409 (and nothing changed)
    /// if collectd's write threads could not be paused for it.
    fn stop(c: &dyn Collectd, name: &str) -> OpResult<()> {
        c.unregister(name, false).map_err(OpError::Conflict)
    }

    fn record(&self, name: &str) -> Option<Record> {
        self.records.lock().get(name).cloned()
    }

    fn set(&self, name: &str, r: Record) {
        self.records.lock().insert(name.to_string(), r);
    }

    /// Writes every record's persisted form to StateDir.
    fn persist(&self) -> OpResult<()> {
        let file = StateFile {
            version: STATE_VERSION,
            plugins: self
                .records
                .lock()
                .iter()
                .filter_map(|(n, r)| r.persisted.clone().map(|p| (n.clone(), p)))
                .collect(),
        };
        state::save_json(&self.state_path, &file).map_err(|e| {
            log::error!("cannot write {}: {e}", self.state_path.display());
            OpError::Internal(format!(
                "the change was made but could not be saved in StateDir: {e}"
            ))
        })
    }

    // ---- the steps, in the orders collectd 5.12 needs ----

    /// Loads a plugin collectd has not loaded: cf_read of a `<LoadPlugin>`
    /// block (and the plugin's block), then its init alone. Its values are
    /// held until then. On failure every callback of it is unregistered.
    fn load_fresh(
        &self,
        c: &dyn Collectd,
        name: &str,
        interval: Option<f64>,
        config: Option<&str>,
    ) -> Result<(), PluginError> {
        self.hold.hold(name);
        self.capture.start();
        let text = runtime_config::runtime_file(name, true, interval, config);
        let result = c
            .read_config(&text)
            .and_then(|()| {
                if c.is_loaded(name) {
                    Ok(())
                } else {
                    Err(format!("collectd could not load the plugin {name}"))
                }
            })
            .and_then(|()| c.init(name));
        self.finish(c, name, result)
    }

    /// Starts a plugin that is loaded but has no callbacks (disabled or
    /// failed): applies `config` if given, registers its callbacks again,
    /// runs its init alone.
    fn start_loaded(
        &self,
        c: &dyn Collectd,
        name: &str,
        interval: Option<f64>,
        config: Option<&str>,
    ) -> Result<(), PluginError> {
        self.hold.hold(name);
        self.capture.start();
        let result = c
            .wait_reads_done()
            .and_then(|()| match config {
                Some(cfg) => {
                    c.read_config(&runtime_config::runtime_file(name, false, None, Some(cfg)))
                }
                None => Ok(()),
            })
            .and_then(|()| c.register(name, interval))
            .and_then(|()| c.init(name));
        self.finish(c, name, result)
    }

    fn finish(
        &self,
        c: &dyn Collectd,
        name: &str,
        result: Result<(), String>,
    ) -> Result<(), PluginError> {
        let mut log = self.capture.stop();
        // Noise of our own unregistering, not the plugin's failure.
        log.retain(|l| !l.contains("No such read function"));
        match result {
            Ok(()) => {
                // A read that began before the config or init was applied
                // may still be dispatching: wait it out, then let through
                // only what is read from now on.
                if let Err(e) = c.wait_reads_done() {
                    log::warn!("plugin {name}: {e}; releasing its values anyway");
                }
                self.hold.release(name, now_cdtime());
                Ok(())
            }
            Err(message) => {
                if c.is_loaded(name) {
                    c.discard(name);
                }
                self.hold.forget(name);
                log::warn!("plugin {name}: {message}");
                Err(PluginError { message, log })
            }
        }
    }

    /// The interval to register a plugin with: the API's, else the one its
    /// values were seen with (collectd.conf may have set one), else None.
    fn interval_for(r: &Record, observed: Option<f64>) -> Option<f64> {
        r.interval.or(observed)
    }

    // ---- the operations ----

    /// At start (on the control thread, once collectd has started): takes
    /// stock of the plugins collectd.conf loaded, then re-applies what
    /// StateDir holds.
    pub fn startup(&self, c: &dyn Collectd) {
        for name in self.installed() {
            if c.is_loaded(&name) {
                self.set(
                    &name,
                    Record::new(PluginState::Enabled, Some(Origin::Config)),
                );
            }
        }
        let pending = self.pending.lock().take().unwrap_or_default();
        let mut changed = false;
        for (name, p) in pending {
            let loaded = c.is_loaded(&name);
            let mut r = Record::new(PluginState::Available, Some(p.origin));
            r.interval = p.interval;
            r.config = p.config.clone();
            r.persisted = Some(p.clone());
            match p.origin {
                Origin::Config if !loaded => {
                    log::info!(
                        "plugin {name}: collectd.conf no longer loads it; forgetting its \
                         persisted state"
                    );
                    changed = true;
                    self.hold.forget(&name);
                    continue;
                }
                Origin::Config
                    if (p.deleted || !p.enabled || p.config.is_some() || p.interval.is_some())
                        && instance_named(&name) =>
                {
                    log::warn!(
                        "plugin {name}: {}; it runs as collectd.conf says, and its persisted \
                         state is forgotten",
                        instance_named_reason(&name)
                    );
                    r.persisted = None;
                    r.config = None;
                    r.interval = None;
                    r.state = PluginState::Enabled;
                    changed = true;
                }
                Origin::Config if p.deleted || !p.enabled => {
                    let _ = c.unregister(&name, true);
                    self.hold.forget(&name);
                    if p.deleted {
                        r.origin = None;
                        r.config = None;
                        r.interval = None;
                    } else {
                        r.state = PluginState::Disabled;
                    }
                }
                Origin::Config if p.config.is_some() || p.interval.is_some() => {
                    let _ = c.unregister(&name, true);
                    r.state = match self.start_loaded(c, &name, p.interval, p.config.as_deref()) {
                        Ok(()) => PluginState::Enabled,
                        Err(e) => {
                            r.error = Some(e);
                            PluginState::Failed
                        }
                    };
                }
                Origin::Config => r.state = PluginState::Enabled,
                Origin::Api if loaded => {
                    log::info!(
                        "plugin {name}: collectd.conf loads it now; its API configuration \
                         is not applied"
                    );
                    changed = true;
                    continue;
                }
                Origin::Api if p.enabled => {
                    r.state = match self.load_fresh(c, &name, p.interval, p.config.as_deref()) {
                        Ok(()) => PluginState::Enabled,
                        Err(e) => {
                            log::error!("plugin {name}: could not be loaded again: {}", e.message);
                            r.error = Some(e);
                            PluginState::Failed
                        }
                    };
                }
                Origin::Api => r.state = PluginState::Disabled,
            }
            self.set(&name, r);
        }
        if changed {
            let _ = self.persist();
        }
    }

    /// PUT: loads if needed, (re)configures, enables (or keeps disabled with
    /// `enabled: false`).
    pub fn put(
        &self,
        c: &dyn Collectd,
        name: &str,
        req: PutRequest,
        observed_interval: Option<f64>,
    ) -> OpResult<PluginView> {
        self.check_name(name)?;
        Self::refuse_self(name, "reconfigured")?;
        if let Some(i) = req.interval {
            if !(MIN_INTERVAL..=86_400.0).contains(&i) {
                return Err(OpError::Invalid(
                    "invalid_body",
                    "interval must be a number of seconds from 0.01 to 86400".into(),
                ));
            }
        }
        if let Some(cfg) = &req.config {
            runtime_config::check_text(cfg).map_err(|e| OpError::Invalid("invalid_config", e))?;
            let tree = c
                .parse_config(&runtime_config::block_file(name, cfg))
                .map_err(|e| OpError::Invalid("invalid_config", e))?;
            runtime_config::check_tree(name, &tree)
                .map_err(|e| OpError::Invalid("invalid_config", e))?;
        }
        let loaded = c.is_loaded(name);
        let old = self
            .record(name)
            .unwrap_or_else(|| Record::new(PluginState::Available, None));
        let enable = req.enabled.unwrap_or(true);
        let config_changed = req.config.is_some() && req.config != old.config;
        let interval_changed = req.interval.is_some() && req.interval != old.interval;
        let mut r = old.clone();
        r.config = req.config.clone().or(old.config.clone());
        r.interval = req.interval.or(old.interval);
        r.origin = Some(origin_of(&old));
        r.error = None;
        let interval = Self::interval_for(&r, observed_interval);
        let new_config = config_changed.then(|| r.config.clone()).flatten();

        let outcome = match (loaded, old.state, enable) {
            // Not loaded: keep it that way, or load it.
            (false, _, false) => {
                r.state = PluginState::Disabled;
                Ok(())
            }
            (false, _, true) => self.load_fresh(c, name, r.interval, r.config.as_deref()),
            // Running.
            (true, PluginState::Enabled, true) if config_changed || interval_changed => {
                Self::refuse_instance_named(name, "reconfigured")?;
                Self::stop(c, name)?;
                self.start_loaded(c, name, interval, new_config.as_deref())
            }
            (true, PluginState::Enabled, true) => Ok(()),
            (true, PluginState::Enabled, false) => {
                Self::refuse_instance_named(name, "disabled")?;
                Self::stop(c, name)?;
                r.state = PluginState::Disabled;
                self.apply_config_while_stopped(c, name, new_config.as_deref())
            }
            // Loaded without callbacks (disabled, failed, deleted).
            (true, _, true) => self.start_loaded(c, name, interval, new_config.as_deref()),
            (true, _, false) => {
                r.state = PluginState::Disabled;
                self.apply_config_while_stopped(c, name, new_config.as_deref())
            }
        };
        self.settle(name, r, enable, outcome)
    }

    fn apply_config_while_stopped(
        &self,
        c: &dyn Collectd,
        name: &str,
        config: Option<&str>,
    ) -> Result<(), PluginError> {
        let Some(cfg) = config else { return Ok(()) };
        self.capture.start();
        let result = c.wait_reads_done().and_then(|()| {
            c.read_config(&runtime_config::runtime_file(name, false, None, Some(cfg)))
        });
        let log = self.capture.stop();
        result.map_err(|message| PluginError { message, log })
    }

    /// Records the outcome of an operation: success persists the change,
    /// failure marks the plugin failed (and persists nothing).
    fn settle(
        &self,
        name: &str,
        mut r: Record,
        enabled: bool,
        outcome: Result<(), PluginError>,
    ) -> OpResult<PluginView> {
        match outcome {
            Ok(()) => {
                if enabled {
                    r.state = PluginState::Enabled;
                }
                r.persisted = Some(Persisted {
                    origin: r.origin.unwrap_or(Origin::Api),
                    enabled,
                    deleted: false,
                    interval: r.interval,
                    config: r.config.clone(),
                });
                self.set(name, r.clone());
                self.persist()?;
                Ok(Self::view(name, Some(&r)))
            }
            Err(e) => {
                // A refused change is not kept: the plugin keeps the config
                // and interval of its last accepted change (what StateDir
                // holds), which a later enable or restart runs it with.
                let kept = r.persisted.as_ref();
                r.config = kept.and_then(|p| p.config.clone());
                r.interval = kept.and_then(|p| p.interval);
                r.state = PluginState::Failed;
                r.error = Some(e.clone());
                self.set(name, r);
                Err(OpError::Failed(e))
            }
        }
    }

    pub fn enable(
        &self,
        c: &dyn Collectd,
        name: &str,
        observed_interval: Option<f64>,
    ) -> OpResult<PluginView> {
        self.check_name(name)?;
        let old = self
            .record(name)
            .unwrap_or_else(|| Record::new(PluginState::Available, None));
        if old.state == PluginState::Enabled {
            return Ok(Self::view(name, Some(&old)));
        }
        let mut r = old.clone();
        r.origin = Some(origin_of(&old));
        r.error = None;
        let outcome = if c.is_loaded(name) {
            let interval = Self::interval_for(&r, observed_interval);
            self.start_loaded(c, name, interval, None)
        } else {
            self.load_fresh(c, name, r.interval, r.config.as_deref())
        };
        self.settle(name, r, true, outcome)
    }

    pub fn disable(&self, c: &dyn Collectd, name: &str) -> OpResult<PluginView> {
        self.check_name(name)?;
        Self::refuse_self(name, "disabled")?;
        let old = self
            .record(name)
            .unwrap_or_else(|| Record::new(PluginState::Available, None));
        match old.state {
            PluginState::Available => {
                return Err(OpError::Conflict(format!("plugin {name} is not running")))
            }
            PluginState::Disabled => return Ok(Self::view(name, Some(&old))),
            PluginState::Enabled => {
                Self::refuse_instance_named(name, "disabled")?;
                Self::stop(c, name)?;
            }
            // Its callbacks were unregistered when it failed.
            PluginState::Failed => {}
        }
        let mut r = old;
        r.state = PluginState::Disabled;
        r.error = None;
        self.settle(name, r, false, Ok(()))
    }

    pub fn restart(
        &self,
        c: &dyn Collectd,
        name: &str,
        observed_interval: Option<f64>,
    ) -> OpResult<PluginView> {
        self.check_name(name)?;
        Self::refuse_self(name, "restarted")?;
        let old = self
            .record(name)
            .unwrap_or_else(|| Record::new(PluginState::Available, None));
        if old.state != PluginState::Enabled {
            return Err(OpError::Conflict(format!(
                "plugin {name} is not enabled; enable it instead"
            )));
        }
        Self::refuse_instance_named(name, "restarted")?;
        Self::stop(c, name)?;
        let interval = Self::interval_for(&old, observed_interval);
        let outcome = self.start_loaded(c, name, interval, None);
        let mut r = old;
        r.error = None;
        self.settle(name, r, true, outcome)
    }

    /// Disables the plugin and forgets what the API set for it. A plugin of
    /// collectd.conf stays gone after a restart of collectd.
    pub fn delete(&self, c: &dyn Collectd, name: &str) -> OpResult<()> {
        self.check_name(name)?;
        Self::refuse_self(name, "deleted")?;
        let old = self
            .record(name)
            .unwrap_or_else(|| Record::new(PluginState::Available, None));
        if old.state == PluginState::Enabled {
            Self::refuse_instance_named(name, "deleted")?;
            Self::stop(c, name)?;
        }
        let was_config = old.origin == Some(Origin::Config)
            || old
                .persisted
                .as_ref()
                .is_some_and(|p| p.origin == Origin::Config);
        let mut r = Record::new(PluginState::Available, None);
        if was_config {
            r.persisted = Some(Persisted {
                origin: Origin::Config,
                enabled: false,
                deleted: true,
                interval: None,
                config: None,
            });
        }
        self.set(name, r);
        self.persist()
    }
}

/// The origin a plugin keeps when the API starts it: collectd.conf's if it
/// came from there (even after a DELETE), else the API's.
fn origin_of(r: &Record) -> Origin {
    r.origin
        .or(r.persisted.as_ref().map(|p| p.origin))
        .unwrap_or(Origin::Api)
}

fn now_cdtime() -> CdTime {
    secs_to_cdtime(crate::app::now_secs())
}

#[cfg(test)]
mod tests;
