//! The plugin-management calls into collectd, in the sequences that worked
//! inside collectd 5.12 (shared/notes/collectd-runtime.md). Only the control
//! thread calls these, one at a time: plugin_load and the loaded-plugins tree
//! take no lock.

use std::collections::HashMap;
use std::ffi::{c_char, c_void, CStr, CString};
use std::path::{Path, PathBuf};
use std::time::Duration;

use parking_lot::Mutex;

use super::convert;
use crate::ffi;
use crate::model::{secs_to_cdtime, ConfigItem};
use crate::readers::{self, Quiet};
use crate::writers;

/// Plugins whose read callbacks are registered in a read group named after
/// the plugin (collectd 5.12 sources): unregistering the group stops all
/// their instances. For other plugins the group call would only log a
/// warning.
const READ_GROUP_PLUGINS: &[&str] = &[
    "curl_xml",
    "ipmi",
    "lua",
    "memcached",
    "nut",
    "openvpn",
    "perl",
    "postgresql",
    "python",
    "redis",
    "varnish",
];

/// How long to wait for the read threads before giving up.
const READS_TIMEOUT: Duration = Duration::from_secs(10);
/// The wait when /proc cannot tell what the read threads do.
const READS_FALLBACK: Duration = Duration::from_secs(1);
/// How long to wait for collectd's write threads to park on a fence.
const FENCE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long to wait for collectd's main thread to be seen asleep, and for
/// how much of that the read threads are waited for too.
const MAIN_TIMEOUT: Duration = Duration::from_secs(2);
const READERS_FOR: Duration = Duration::from_millis(500);

pub struct Loader {
    plugin_dir: PathBuf,
    /// Where runtime config files are written for cf_read (StateDir).
    work_dir: PathBuf,
    /// Plugin context names: every callback registered under a context
    /// keeps its name pointer, so each is allocated once and never freed.
    ctx_names: Mutex<HashMap<String, &'static CStr>>,
    /// Per plugin: which of collectd's threads may run its callbacks (see
    /// `sides`).
    sides: Mutex<HashMap<String, writers::Sides>>,
    /// True once collectd is shutting down: waits give up.
    stopping: Box<dyn Fn() -> bool + Send + Sync>,
}

impl Loader {
    pub fn new(
        plugin_dir: PathBuf,
        work_dir: PathBuf,
        stopping: Box<dyn Fn() -> bool + Send + Sync>,
    ) -> Loader {
        Loader {
            plugin_dir,
            work_dir,
            ctx_names: Mutex::new(HashMap::new()),
            sides: Mutex::new(HashMap::new()),
            stopping,
        }
    }

    fn ctx_name(&self, plugin: &str) -> &'static CStr {
        self.ctx_names
            .lock()
            .entry(plugin.to_string())
            .or_insert_with(|| Box::leak(c_string(plugin).into_boxed_c_str()))
    }

    /// A plugin context named `plugin` with `interval` (None: collectd's
    /// default interval).
    fn ctx(&self, plugin: &str, interval: Option<f64>) -> ffi::plugin_ctx_t {
        let interval = match interval.map(secs_to_cdtime) {
            Some(i) if i > 0 => i,
            // SAFETY: reads collectd's configured default interval.
            _ => unsafe { ffi::cf_get_default_interval() },
        };
        ffi::plugin_ctx_t {
            name: self.ctx_name(plugin).as_ptr() as *mut c_char,
            interval,
            flush_interval: 0,
            flush_timeout: 0,
        }
    }

    /// Writes `text` to a file of ours and runs `f` with its path.
    fn with_file<R>(
        &self,
        name: &str,
        text: &str,
        f: impl FnOnce(&CStr) -> R,
    ) -> Result<R, String> {
        let path = self.work_dir.join(name);
        std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        let c = path_c_string(&path);
        let r = f(&c);
        let _ = std::fs::remove_file(&path);
        Ok(r)
    }

    pub fn parse_config(&self, text: &str) -> Result<ConfigItem, String> {
        self.with_file("parse.conf", text, |path| {
            // SAFETY: a valid path; the parser returns a tree we own (or
            // NULL), which we copy and free.
            let root = unsafe { ffi::oconfig_parse_file(path.as_ptr()) };
            if root.is_null() {
                return Err("the config does not parse as collectd configuration \
                            (collectd's parser wrote the details to its standard error)"
                    .to_string());
            }
            // SAFETY: a valid tree from oconfig_parse_file, freed once.
            let item = unsafe { convert::config_item(&*root) };
            // SAFETY: as above.
            unsafe { ffi::oconfig_free(root) };
            Ok(item)
        })?
    }

    pub fn read_config(&self, text: &str) -> Result<(), String> {
        let status = self.with_file("runtime.conf", text, |path| {
            // SAFETY: a valid path to a file holding only TypesDB
            // "/dev/null", a <LoadPlugin> block and a <Plugin> block
            // (checked by crate::plugins::runtime_config).
            unsafe { ffi::cf_read(path.as_ptr()) }
        })?;
        if status == 0 {
            Ok(())
        } else {
            Err("collectd could not apply the configuration".into())
        }
    }

    pub fn register(&self, plugin: &str, interval: Option<f64>) -> Result<(), String> {
        let path = path_c_string(&self.plugin_dir.join(format!("{plugin}.so")));
        // SAFETY: RTLD_NOLOAD only returns a handle if the object is already
        // loaded (collectd loaded it); it loads nothing.
        let handle = unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_NOW | libc::RTLD_NOLOAD) };
        if handle.is_null() {
            return Err(format!("{plugin}.so is not loaded in collectd"));
        }
        // SAFETY: a valid handle and symbol name.
        let sym = unsafe { libc::dlsym(handle, c"module_register".as_ptr()) };
        if sym.is_null() {
            // SAFETY: drops the reference our dlopen added.
            unsafe { libc::dlclose(handle) };
            return Err(format!("{plugin}.so has no module_register"));
        }
        let name = self.ctx_name(plugin);
        // SAFETY: module_register appends a complex config callback (the
        // first match wins) and re-registers shutdown (logging "overwriting"
        // otherwise): remove the old ones first. Then module_register runs
        // in the plugin's own context, so its read callback gets the
        // interval; the previous context is restored.
        unsafe {
            ffi::plugin_unregister_complex_config(name.as_ptr());
            ffi::plugin_unregister_shutdown(name.as_ptr());
            let old = ffi::plugin_set_ctx(self.ctx(plugin, interval));
            let module_register: extern "C" fn() = std::mem::transmute::<*mut c_void, _>(sym);
            module_register();
            ffi::plugin_set_ctx(old);
            // Drops only the reference our dlopen added: the object stays.
            libc::dlclose(handle);
        }
        Ok(())
    }

    /// Runs `plugin`'s init alone: every other loaded plugin's init callback
    /// is unregistered first (plugin_init_all would run them all again),
    /// and `plugin`'s own afterwards.
    pub fn init(&self, plugin: &str) -> Result<(), String> {
        // Learn now, while starting it, what stopping it will need.
        self.sides(plugin);
        for other in crate::plugins::installed(&self.plugin_dir) {
            if other == plugin {
                continue;
            }
            let c = c_string(&other);
            // SAFETY: valid C strings; on the control thread only.
            unsafe {
                if ffi::plugin_is_loaded(c.as_ptr()) {
                    ffi::plugin_unregister_init(c.as_ptr());
                }
            }
        }
        let name = self.ctx_name(plugin);
        // SAFETY: collectd is running (start-up finished) and not shutting
        // down (the control thread checks); only `plugin`'s init is
        // registered now.
        let status = unsafe { ffi::plugin_init_all() };
        // SAFETY: a valid C string.
        unsafe { ffi::plugin_unregister_init(name.as_ptr()) };
        if status == 0 {
            Ok(())
        } else {
            Err(format!("the init callback of {plugin} failed"))
        }
    }

    /// Unregisters `plugin`'s callbacks. If its shared object can register
    /// callbacks that collectd's write threads call, that happens behind a
    /// fence (crate::writers); if it can register callbacks that collectd's
    /// main thread or read threads call, at a moment when those are parked
    /// (crate::readers::parked_moment). Err if the threads did not all
    /// park in time, and then nothing was unregistered, unless `force`:
    /// then it is done anyway, with a warning.
    pub fn unregister(&self, plugin: &str, force: bool) -> Result<(), String> {
        let sides = self.sides(plugin);
        let run = || -> Result<(), String> {
            if !sides.other_threads {
                self.unregister_now(plugin);
                return Ok(());
            }
            let parked = readers::parked_moment(MAIN_TIMEOUT, READERS_FOR).map_err(|e| {
                format!(
                    "{e}; {plugin} may have callbacks that collectd calls without a lock \
                     (missing values, notifications), so nothing was changed; try again"
                )
            })?;
            self.unregister_now(plugin);
            if !parked.still() {
                log::warn!(
                    "plugin {plugin}: one of collectd's main or read threads ran while its \
                     missing and notification callbacks were unregistered; collectd walks \
                     those lists without a lock"
                );
            }
            Ok(())
        };
        let result = if sides.write_threads {
            self.fenced(plugin, run)
        } else {
            run()
        };
        match result {
            Err(e) if force => {
                log::warn!("plugin {plugin}: {e}; unregistering its callbacks anyway");
                self.unregister_now(plugin);
                Ok(())
            }
            r => r,
        }
    }

    /// Which of collectd's threads may run `plugin`'s callbacks. Read once
    /// per plugin: the object collectd has loaded does not change while it
    /// runs.
    fn sides(&self, plugin: &str) -> writers::Sides {
        if let Some(&known) = self.sides.lock().get(plugin) {
            return known;
        }
        let path = self.plugin_dir.join(format!("{plugin}.so"));
        let known =
            std::fs::read(&path).map_or(writers::Sides::ALL, |so| writers::callback_sides(&so));
        self.sides.lock().insert(plugin.to_string(), known);
        known
    }

    /// Runs `f` while every collectd write thread is parked (see
    /// crate::writers).
    fn fenced(&self, plugin: &str, f: impl FnOnce() -> Result<(), String>) -> Result<(), String> {
        let n = writers::writer_threads()
            .map_err(|e| format!("cannot see collectd's write threads (/proc/self/task: {e})"))?
            .len();
        if n == 0 {
            return Err("found no collectd write thread (\"writer#N\") to fence".into());
        }
        // SAFETY: a valid C string; collectd returns its own data set or NULL.
        let ds = unsafe { ffi::plugin_get_ds(c"gauge".as_ptr()) };
        // SAFETY: a non-NULL data set of collectd's, which lives as long as
        // the daemon (runtime files keep TypesDB to /dev/null).
        if ds.is_null() || unsafe { (*ds).ds_num } != 1 {
            return Err(
                "the fence's marker values need the type \"gauge\" (one data \
                        source) in collectd's types.db"
                    .into(),
            );
        }
        let token = writers::FENCE.close();
        // Opens the fence however this function returns.
        struct Open;
        impl Drop for Open {
            fn drop(&mut self) {
                writers::FENCE.open();
            }
        }
        let _open = Open;
        let mut value = ffi::value_t { gauge: 0.0 };
        // SAFETY: value_list_t is plain data; all-zero is its empty value.
        let mut vl: ffi::value_list_t = unsafe { std::mem::zeroed() };
        vl.values = &mut value;
        vl.values_len = 1;
        convert::fill(&mut vl.plugin, writers::MARKER_PLUGIN);
        convert::fill(&mut vl.plugin_instance, writers::MARKER_INSTANCE);
        convert::fill(&mut vl.type_, "gauge");
        convert::fill(&mut vl.type_instance, &token.to_string());
        for _ in 0..n {
            // SAFETY: a complete value list that outlives the call; collectd
            // copies it onto its write queue (empty host, time and interval
            // are filled in from hostname, now and our context).
            unsafe { ffi::plugin_dispatch_values(&vl) };
        }
        match writers::FENCE.wait_parked(n, FENCE_TIMEOUT, &*self.stopping) {
            Ok(()) => f(),
            Err(_) if (self.stopping)() => Err("collectd is shutting down".into()),
            Err(parked) => Err(format!(
                "collectd's write threads did not all pause within {} s ({parked} of {n} \
                 did): one is inside a write callback that blocks, or the write queue is \
                 long. Unregistering {plugin}'s callbacks while a write thread may be \
                 inside them could crash collectd, so nothing was changed; try again",
                FENCE_TIMEOUT.as_secs()
            )),
        }
    }

    fn unregister_now(&self, plugin: &str) {
        let name = self.ctx_name(plugin);
        let n = name.as_ptr();
        // SAFETY: valid C strings. Done in the plugin's own context, which
        // plugin_unregister_flush reads. Unregistering while a read runs is
        // safe: the read entry is only marked and freed by a read thread.
        unsafe {
            let old = ffi::plugin_set_ctx(self.ctx(plugin, None));
            ffi::plugin_unregister_read(n);
            if READ_GROUP_PLUGINS.contains(&plugin) {
                ffi::plugin_unregister_read_group(n);
            }
            ffi::plugin_unregister_write(n);
            ffi::plugin_unregister_flush(n);
            ffi::plugin_unregister_missing(n);
            ffi::plugin_unregister_notification(n);
            ffi::plugin_unregister_cache_event(n);
            ffi::plugin_unregister_init(n);
            ffi::plugin_unregister_log(n);
            ffi::plugin_set_ctx(old);
        }
    }

    pub fn unregister_shutdown(&self, plugin: &str) {
        // SAFETY: a valid C string; on the control thread only.
        unsafe { ffi::plugin_unregister_shutdown(self.ctx_name(plugin).as_ptr()) };
    }

    pub fn wait_reads_done(&self) -> Result<(), String> {
        match readers::wait_until_between_reads(READS_TIMEOUT, READS_FALLBACK, &*self.stopping) {
            Quiet::Yes => Ok(()),
            Quiet::Busy(_) if (self.stopping)() => Err("collectd is shutting down".into()),
            Quiet::Busy(tids) => {
                let names: Vec<String> = tids.into_iter().map(readers::thread_name).collect();
                Err(format!(
                    "a read callback was still running after {} s (never seen between \
                     reads: {}; a read that blocks, or an interval shorter than the \
                     read takes, keeps a read thread busy)",
                    READS_TIMEOUT.as_secs(),
                    names.join(", ")
                ))
            }
            Quiet::Unknown(why) => {
                log::warn!(
                    "cannot see collectd's read threads ({why}); waited {} s instead",
                    READS_FALLBACK.as_secs()
                );
                Ok(())
            }
        }
    }
}

fn c_string(s: &str) -> CString {
    CString::new(s.replace('\0', "")).unwrap_or_default()
}

fn path_c_string(p: &Path) -> CString {
    use std::os::unix::ffi::OsStrExt;
    CString::new(p.as_os_str().as_bytes().to_vec()).unwrap_or_default()
}

/// The name collectd logs a severity with.
pub fn severity_name(level: i32) -> &'static str {
    match level as u32 {
        ffi::LOG_ERR => "error",
        ffi::LOG_WARNING => "warning",
        ffi::LOG_NOTICE => "notice",
        ffi::LOG_INFO => "info",
        _ => "debug",
    }
}
