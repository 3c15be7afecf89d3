//! The plugin's shared state: configuration, what we learned about the
//! daemon at init, the stores, and the control queue. One `App` lives from
//! collectd's init callback to its shutdown callback.

use std::path::PathBuf;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::config::Config;
use crate::control::Control;
use crate::plugins::Manager;
use crate::store::{NotificationRing, ValueStore};

/// Facts about the running daemon, read once at init.
#[derive(Clone, Debug, PartialEq)]
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

pub struct App {
    pub config: Config,
    pub info: AgentInfo,
    pub values: ValueStore,
    pub notifications: NotificationRing,
    pub control: Control,
    pub plugins: Manager,
    started: Instant,
}

impl App {
    /// `config.state_dir` must be resolved (Some) by now.
    pub fn new(config: Config, info: AgentInfo, control: Control) -> App {
        let state_dir = config.state_dir.clone().unwrap_or_default();
        App {
            values: ValueStore::new(info.timeout_factor),
            notifications: NotificationRing::new(config.notification_buffer_size),
            plugins: Manager::new(info.plugin_dir.clone(), &state_dir),
            config,
            info,
            control,
            started: Instant::now(),
        }
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
