//! The running collectd as the rest of the plugin sees it: facts read at
//! init (`agent_info`) and the calls the control thread makes (`Daemon`).

use std::ffi::{c_void, CString};
use std::path::{Path, PathBuf};

use super::convert::{cstr, fill, severity_to_c};
use crate::app::AgentInfo;
use crate::control::Collectd;
use crate::ffi;
use crate::model::{CdTime, ConfigItem, MetaValue, Notification};

/// The directory rest.so was loaded from: collectd's PluginDir (collectd
/// has no getter for it, but it loads every plugin from there).
fn plugin_dir() -> Option<PathBuf> {
    // SAFETY: Dl_info is plain data; zero is a valid initial value.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    let addr = super::module_register as *const c_void;
    // SAFETY: `addr` is an address inside this shared object; dladdr only
    // fills `info`, whose dli_fname stays valid while the object is loaded.
    let found = unsafe { libc::dladdr(addr, &mut info) } != 0;
    if !found || info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: dli_fname is a NUL-terminated path owned by the loader.
    let file = unsafe { cstr(info.dli_fname) }.into_owned();
    Path::new(&file).parent().map(Path::to_path_buf)
}

/// The id of the group `name` (through NSS, as `ls -l` would resolve it),
/// for `SocketGroup`.
pub fn group_id(name: &str) -> Result<u32, String> {
    let c_name = CString::new(name).map_err(|_| format!("group {name:?} contains a NUL byte"))?;
    let mut buf = vec![0 as libc::c_char; 4096];
    loop {
        // SAFETY: group is plain data; zero is a valid initial value.
        let mut grp: libc::group = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::group = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call: the NUL-terminated
        // name, our `grp`, `buf` with its true length, and `found`.
        // getgrnam_r writes only into these and is thread-safe.
        let rc = unsafe {
            libc::getgrnam_r(
                c_name.as_ptr(),
                &mut grp,
                buf.as_mut_ptr(),
                buf.len(),
                &mut found,
            )
        };
        match rc {
            0 if found.is_null() => return Err(format!("no group named {name:?}")),
            0 => return Ok(grp.gr_gid),
            libc::ERANGE if buf.len() < 1 << 20 => buf.resize(buf.len() * 4, 0),
            e => {
                return Err(format!(
                    "cannot look up group {name:?}: {}",
                    std::io::Error::from_raw_os_error(e)
                ))
            }
        }
    }
}

/// Reads the daemon's global settings. Called from the init callback, after
/// collectd has read its configuration.
pub fn agent_info() -> AgentInfo {
    // SAFETY: collectd sets these globals while reading its config, before
    // any init callback runs, and does not change them afterwards; we copy
    // the values (and the hostname string) out.
    let (hostname, interval, timeout) = unsafe {
        (
            cstr(ffi::hostname_g).into_owned(),
            ffi::interval_g,
            ffi::timeout_g,
        )
    };
    AgentInfo {
        hostname,
        interval: crate::model::cdtime_to_secs(interval),
        timeout_factor: timeout.max(1) as u32,
        plugin_dir: plugin_dir(),
        collectd_version: env!("COLLECTD_HEADERS_VERSION").to_string(),
        fault_plugin: std::env::var("COLLECTD_REST_FAULT_PLUGIN")
            .ok()
            .filter(|p| !p.is_empty()),
        clock: kernel_clock,
    }
}

/// The kernel's clock state, read-only (adjtimex with no mode bits set).
fn kernel_clock() -> Option<crate::app::ClockState> {
    // SAFETY: timex is plain data; zero (modes 0) asks only to read.
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    // SAFETY: a valid timex on our stack; modes 0 changes nothing.
    let state = unsafe { libc::adjtimex(&mut tx) };
    if state < 0 {
        return None;
    }
    Some(crate::app::ClockState {
        synchronized: state != libc::TIME_ERROR && tx.status & libc::STA_UNSYNC == 0,
        max_error_us: tx.maxerror,
        est_error_us: tx.esterror,
    })
}

/// collectd's BaseDir (global option), if set.
pub fn base_dir() -> Option<PathBuf> {
    // SAFETY: global_option_get takes a valid C string and returns a pointer
    // to the option's value owned by collectd (or NULL).
    let p = unsafe { ffi::global_option_get(c"BaseDir".as_ptr()) };
    // SAFETY: p is NULL or a valid C string owned by collectd.
    let dir = unsafe { cstr(p) }.into_owned();
    (!dir.is_empty()).then(|| PathBuf::from(dir))
}

/// plugin_dispatch_notification of `n`, meta data included. Any thread may
/// call it (collectd's threshold plugin does from its write callback).
pub fn dispatch(n: &Notification) -> Result<(), String> {
    // SAFETY: notification_t is plain data (arrays, numbers, a NULL meta
    // pointer); all-zero is its initial state (NOTIFICATION_INIT).
    let mut c: ffi::notification_t = unsafe { std::mem::zeroed() };
    c.severity = severity_to_c(n.severity);
    c.time = n.time;
    fill(&mut c.message, &n.message);
    fill(&mut c.host, &n.host);
    fill(&mut c.plugin, &n.plugin);
    fill(&mut c.plugin_instance, &n.plugin_instance);
    fill(&mut c.type_, &n.type_);
    fill(&mut c.type_instance, &n.type_instance);
    for (key, value) in &n.meta {
        let k = c_string(key);
        // SAFETY: `c` is a valid notification; collectd copies the key
        // and the string value into the meta list it allocates.
        unsafe {
            match value {
                MetaValue::String(s) => {
                    let v = c_string(s);
                    ffi::plugin_notification_meta_add_string(&mut c, k.as_ptr(), v.as_ptr())
                }
                MetaValue::Signed(v) => {
                    ffi::plugin_notification_meta_add_signed_int(&mut c, k.as_ptr(), *v)
                }
                MetaValue::Unsigned(v) => {
                    ffi::plugin_notification_meta_add_unsigned_int(&mut c, k.as_ptr(), *v)
                }
                MetaValue::Double(v) => {
                    ffi::plugin_notification_meta_add_double(&mut c, k.as_ptr(), *v)
                }
                MetaValue::Boolean(v) => {
                    ffi::plugin_notification_meta_add_boolean(&mut c, k.as_ptr(), *v)
                }
            };
        }
    }
    // SAFETY: `c` is a complete notification on our stack; collectd only
    // reads it during the call. The meta list it allocated is freed after.
    let status = unsafe {
        let status = ffi::plugin_dispatch_notification(&c);
        if !c.meta.is_null() {
            ffi::plugin_notification_meta_free(c.meta);
        }
        status
    };
    if status == 0 {
        Ok(())
    } else {
        Err(format!("plugin_dispatch_notification returned {status}"))
    }
}

fn c_string(s: &str) -> CString {
    CString::new(s.replace('\0', "")).unwrap_or_default()
}

/// The daemon, for the control thread.
pub struct Daemon {
    pub loader: super::loader::Loader,
}

impl Collectd for Daemon {
    fn dispatch_notification(&self, n: &Notification) -> Result<(), String> {
        dispatch(n)
    }

    fn flush(&self, plugin: Option<&str>, timeout: CdTime, identifier: Option<&str>) -> i32 {
        let plugin = plugin.map(c_string);
        let identifier = identifier.map(c_string);
        // SAFETY: each pointer is NULL or a C string alive across the call.
        unsafe {
            ffi::plugin_flush(
                plugin.as_ref().map_or(std::ptr::null(), |p| p.as_ptr()),
                timeout,
                identifier.as_ref().map_or(std::ptr::null(), |i| i.as_ptr()),
            )
        }
    }

    fn is_loaded(&self, plugin: &str) -> bool {
        let name = c_string(plugin);
        // SAFETY: a valid C string; called only on the control thread, the
        // one thread of ours that touches collectd's plugin tree.
        unsafe { ffi::plugin_is_loaded(name.as_ptr()) }
    }

    fn parse_config(&self, text: &str) -> Result<ConfigItem, String> {
        self.loader.parse_config(text)
    }

    fn read_config(&self, text: &str) -> Result<(), String> {
        self.loader.read_config(text)
    }

    fn register(&self, plugin: &str, interval: Option<f64>) -> Result<(), String> {
        self.loader.register(plugin, interval)
    }

    fn init(&self, plugin: &str) -> Result<(), String> {
        self.loader.init(plugin)
    }

    fn unregister(&self, plugin: &str, force: bool) -> Result<(), String> {
        self.loader.unregister(plugin, force)
    }

    fn discard(&self, plugin: &str) {
        let _ = self.loader.unregister(plugin, true);
        self.loader.unregister_shutdown(plugin);
    }

    fn wait_reads_done(&self) -> Result<(), String> {
        self.loader.wait_reads_done()
    }
}
