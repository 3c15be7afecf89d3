//! The plugin's shared state: configuration, what we learned about the
//! daemon at init, the stores, and the control queue. One `App` lives from
//! collectd's init callback to its shutdown callback.

use std::path::PathBuf;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::config::Config;
use crate::control::Control;
use crate::plugins::Manager;
use crate::rules::blacklist::Blacklist;
use crate::store::{NotificationRing, ValueStore};

/// Facts about the running daemon, read once at init.
#[derive(Clone, Debug)]
pub struct AgentInfo {
    pub hostname: String,
    /// collectd's global Interval, seconds.
    pub interval: f64,
    /// collectd's global Timeout (a metric expires after Timeout x interval).
    pub timeout_factor: u32,
    /// The directory collectd loads plugins from (where rest.so is).
    pub plugin_dir: Option<PathBuf>,
    /// The version of the collectd headers the plugin was built against.
    pub collectd_version: String,
    /// Fault injection for tests (env COLLECTD_REST_FAULT_PLUGIN): values
    /// and notifications of this plugin make our callbacks panic, and so
    /// does a request filtering on it, to prove that panics are contained.
    pub fault_plugin: Option<String>,
    /// Reads the kernel's clock discipline state (adjtimex), if it can.
    pub clock: fn() -> Option<ClockState>,
}

/// The system clock's synchronization state, as the kernel reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ClockState {
    /// The kernel considers the clock synchronized (not TIME_ERROR, no
    /// STA_UNSYNC): an NTP or PTP daemon disciplines it.
    pub synchronized: bool,
    /// Maximum error, microseconds.
    pub max_error_us: i64,
    /// Estimated error, microseconds.
    pub est_error_us: i64,
}

impl AgentInfo {
    /// Panics if `plugin` is the fault-injection plugin (tests only).
    pub fn fault_check(&self, plugin: &str) {
        if self.fault_plugin.as_deref() == Some(plugin) {
            panic!("injected fault for plugin {plugin:?}");
        }
    }
}

impl AgentInfo {
    /// The plugins collectd could load: every `*.so` in the plugin directory.
    pub fn available_plugins(&self) -> Vec<String> {
        self.plugin_dir
            .as_deref()
            .map(crate::plugins::installed)
            .unwrap_or_default()
    }
}

/// StateDir file of the blacklist rules.
pub const BLACKLIST_FILE: &str = "blacklist.json";
/// StateDir file of the thresholds.
pub const THRESHOLDS_FILE: &str = "thresholds.json";

pub struct App {
    pub config: Config,
    pub auth: crate::auth::Authenticator,
    pub info: AgentInfo,
    pub values: ValueStore,
    pub notifications: NotificationRing,
    pub control: Control,
    pub plugins: Manager,
    pub blacklist: Blacklist,
    /// Set to true when the HTTP server stops: open streams end.
    pub closing: tokio::sync::watch::Sender<bool>,
    started: Instant,
}

impl App {
    /// `config.state_dir` must be resolved (Some) by now.
    pub fn new(
        config: Config,
        info: AgentInfo,
        control: Control,
        auth: crate::auth::Authenticator,
    ) -> App {
        let state_dir = config.state_dir.clone().unwrap_or_default();
        let blacklist = Blacklist::default();
        let rules = crate::state::load_map(&state_dir.join(BLACKLIST_FILE));
        for e in blacklist.load(rules) {
            log::error!("{BLACKLIST_FILE}: {e}; rule left out");
        }
        let values = ValueStore::new(info.timeout_factor, config.history_size);
        let thresholds = crate::state::load_map(&state_dir.join(THRESHOLDS_FILE));
        for e in values.thresholds.load(thresholds) {
            log::error!("{THRESHOLDS_FILE}: {e}; threshold left out");
        }
        App {
            auth,
            blacklist,
            values,
            notifications: NotificationRing::new(config.notification_buffer_size),
            plugins: Manager::new(info.plugin_dir.clone(), &state_dir),
            closing: tokio::sync::watch::channel(false).0,
            config,
            info,
            control,
            started: Instant::now(),
        }
    }

    pub fn state_path(&self, file: &str) -> std::path::PathBuf {
        self.config.state_dir.clone().unwrap_or_default().join(file)
    }

    pub fn uptime(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }
}

/// Wall-clock time as UNIX epoch seconds.
pub fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
