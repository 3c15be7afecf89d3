//! The boundary with collectd: `module_register`, the callback trampolines,
//! user_data ownership and the plugin's life cycle (config -> init ->
//! shutdown). Every trampoline catches panics; nothing unwinds into C.
//!
//! Life cycle:
//! - `module_register` (while collectd reads its config): install the log
//!   bridge and panic hook; register config, init and shutdown callbacks.
//! - config callback: parse `<Plugin rest>`; an error refuses the whole
//!   config (collectd then exits).
//! - init callback (after config, after daemonizing): create the App, register
//!   write/notification/flush callbacks with the App as user_data, start the
//!   control thread (plugin_thread_create) and the HTTP server, chain signals.
//! - shutdown callback: stop the HTTP server, close the control queue, join
//!   both.

mod convert;
mod daemon;
mod filter;
mod loader;
mod logging;
mod meta;
mod signals;

use std::ffi::{c_char, c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::app::App;
use crate::config::{Config, STATE_SUBDIR};
use crate::control::{Control, Worker};
use crate::ffi;
use crate::http::server::{self, Server};
use crate::model::Notification;

const NAME: &std::ffi::CStr = c"rest";

/// What the plugin holds between callbacks.
enum Phase {
    /// module_register ran; `config` is what the config callback parsed.
    Configured(Option<Box<Config>>),
    /// The config callback refused the configuration.
    ConfigFailed,
    Running {
        app: Arc<App>,
        server: Server,
        control_thread: libc::pthread_t,
        notifier: Notifier,
    },
    Stopped,
}

static STATE: Mutex<Phase> = Mutex::new(Phase::Configured(None));

/// The running App, for callbacks that carry no user_data of ours.
static APP: once_cell::sync::OnceCell<Arc<App>> = once_cell::sync::OnceCell::new();

/// Runs a callback body; a panic is logged (by the hook) and becomes -1.
fn guard(what: &str, f: impl FnOnce() -> c_int) -> c_int {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(status) => status,
        Err(_) => {
            log::error!("the {what} callback panicked; returning an error to collectd");
            -1
        }
    }
}

/// Called by collectd when it loads rest.so.
#[no_mangle]
pub extern "C" fn module_register() {
    let _ = catch_unwind(|| {
        logging::install();
        // SAFETY: NAME is a static C string; the callbacks are extern "C"
        // functions of this object, which collectd never unloads.
        unsafe {
            ffi::plugin_register_complex_config(NAME.as_ptr(), Some(config_cb));
            ffi::plugin_register_init(NAME.as_ptr(), Some(init_cb));
            ffi::plugin_register_shutdown(NAME.as_ptr(), Some(shutdown_cb));
        }
        // The pre-cache rule must exist before collectd's start-up looks
        // the chain up, i.e. while the config is read.
        filter::install();
    });
}

unsafe extern "C" fn config_cb(ci: *mut ffi::oconfig_item_t) -> c_int {
    guard("config", || {
        if ci.is_null() {
            return -1;
        }
        // SAFETY: collectd passes a valid config tree for this call.
        let item = unsafe { convert::config_item(&*ci) };
        let mut state = STATE.lock();
        // The files the config names (TokenFile, TLS, Keystone CA) are read
        // now, so that a bad one refuses the config, naming its key.
        let parsed = Config::from_item(&item).and_then(|cfg| {
            check_files(&cfg)?;
            Ok(cfg)
        });
        match (&*state, parsed) {
            (Phase::Configured(None), Ok(cfg)) => {
                *state = Phase::Configured(Some(Box::new(cfg)));
                0
            }
            (Phase::Configured(Some(_)), _) => {
                log::error!("<Plugin rest> appears more than once; write one block");
                *state = Phase::ConfigFailed;
                -1
            }
            (_, Err(e)) => {
                log::error!("configuration error: {e}");
                *state = Phase::ConfigFailed;
                -1
            }
            (_, Ok(_)) => -1,
        }
    })
}

fn check_files(cfg: &Config) -> Result<(), crate::config::ConfigError> {
    let named = |(key, message): (&str, String)| crate::config::ConfigError {
        key: key.to_string(),
        message,
    };
    crate::auth::Authenticator::new(cfg).map_err(named)?;
    if let (Some(cert), Some(key)) = (&cfg.tls_cert_file, &cfg.tls_key_file) {
        crate::tls::server_config(cert, key).map_err(named)?;
    }
    Ok(())
}

unsafe extern "C" fn init_cb() -> c_int {
    guard("init", || {
        let mut state = STATE.lock();
        let config = match &*state {
            Phase::Configured(c) => c.as_deref().cloned().unwrap_or_default(),
            Phase::ConfigFailed => {
                log::error!("not starting: the <Plugin rest> block has errors (logged above)");
                return -1;
            }
            // init callbacks may run again when collectd re-initializes
            // plugins: we are already running.
            Phase::Running { .. } => return 0,
            Phase::Stopped => return -1,
        };
        match start(config) {
            Ok(running) => {
                *state = running;
                0
            }
            Err(e) => {
                log::error!("not starting: {e}");
                -1
            }
        }
    })
}

fn start(mut config: Config) -> Result<Phase, String> {
    // Before any value arrives: the check calls collectd's meta data
    // functions and logs, which the write path (under a shard lock) should
    // not be the first to do.
    meta::check_layout_now();
    let info = daemon::agent_info();
    let state_dir = match (&config.state_dir, daemon::base_dir()) {
        (Some(d), _) => d.clone(),
        (None, Some(base)) => base.join(STATE_SUBDIR),
        (None, None) => return Err("StateDir is not set and collectd has no BaseDir".into()),
    };
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&state_dir)
            .map_err(|e| format!("StateDir {}: {e}", state_dir.display()))?;
    }
    config.state_dir = Some(state_dir);
    let listeners = server::bind(&config.listen)?;
    let unix = match &config.socket_file {
        Some(path) => {
            let gid = match &config.socket_group {
                Some(g) => Some(daemon::group_id(g).map_err(|e| format!("SocketGroup: {e}"))?),
                None => None,
            };
            Some(server::bind_unix(path, config.socket_perms, gid)?)
        }
        None => None,
    };
    let auth = crate::auth::Authenticator::new(&config).map_err(|(k, e)| format!("{k}: {e}"))?;
    let tls = match (&config.tls_cert_file, &config.tls_key_file) {
        (Some(cert), Some(key)) => {
            Some(crate::tls::server_config(cert, key).map_err(|(k, e)| format!("{k}: {e}"))?)
        }
        _ => None,
    };
    let (control, worker) = Control::new();
    let app = Arc::new(App::new(config, info, control, auth));
    // Threshold notifications, whether a write thread applied their value
    // or a shard lock's holder did (often an HTTP thread): queued in the
    // order the values were applied, and dispatched in that order on a
    // thread of their own, where a slow notification plugin holds up
    // neither a write thread nor a request.
    let notifier = Notifier::start()?;
    let queue = notifier.queue.clone();
    app.values.set_event_sink(Box::new(move |n| {
        let unsent = match &*queue.lock() {
            Some(tx) => tx.send(n).err().map(|e| e.0),
            None => Some(n),
        };
        if let Some(n) = unsent {
            log::warn!(
                "threshold notification for {}: not dispatched, the plugin is stopping",
                n.plugin
            );
        }
    }));

    let control_thread =
        match register_callbacks(&app).and_then(|()| start_control_thread(app.clone(), worker)) {
            Ok(t) => t,
            Err(e) => {
                notifier.stop();
                return Err(e);
            }
        };
    // For the signal handler and the filter-chain match, which get no
    // user_data of ours.
    let _ = APP.set(app.clone());
    signals::install();
    // Once collectd has started: take stock of its plugins and re-apply
    // what StateDir holds.
    let a = app.clone();
    if app.control.submit(move |c| a.plugins.startup(c)).is_err() {
        log::error!("cannot queue the re-application of persisted plugin changes");
    }
    let server = match Server::start(
        app.clone(),
        listeners,
        unix,
        tls,
        signals::block_in_this_thread,
    ) {
        Ok(s) => s,
        Err(e) => {
            stop_control_thread(&app, control_thread);
            notifier.stop();
            return Err(format!("cannot start the HTTP server: {e}"));
        }
    };
    let scheme = if app.config.tls_cert_file.is_some() {
        "https"
    } else {
        "http"
    };
    let mut addrs: Vec<String> = server
        .addrs
        .iter()
        .map(|a| format!("{scheme}://{a}"))
        .collect();
    if let Some((path, _)) = &server.socket {
        addrs.push(format!("http on unix:{}", path.display()));
    }
    log::info!(
        "REST API v1 listening on {} (auth: {}; collectd {}, host {})",
        addrs.join(", "),
        if app.auth.is_open() {
            "none, loopback and Unix socket only".to_string()
        } else {
            app.auth.kinds().join(" and ")
        },
        app.info.collectd_version,
        app.info.hostname
    );
    Ok(Phase::Running {
        app,
        server,
        control_thread,
        notifier,
    })
}

/// A user_data that owns one reference to the App; collectd calls the free
/// function when it drops the callback.
fn user_data(app: &Arc<App>) -> ffi::user_data_t {
    ffi::user_data_t {
        data: Arc::into_raw(app.clone()) as *mut c_void,
        free_func: Some(free_app),
    }
}

unsafe extern "C" fn free_app(p: *mut c_void) {
    if !p.is_null() {
        // SAFETY: `p` came from Arc::into_raw in `user_data` and collectd
        // frees each user_data exactly once.
        drop(unsafe { Arc::from_raw(p as *const App) });
    }
}

/// The App behind a callback's user_data.
///
/// # Safety
/// `ud` is a user_data built by `user_data`, still registered.
unsafe fn app_of<'a>(ud: *mut ffi::user_data_t) -> Option<&'a App> {
    if ud.is_null() {
        return None;
    }
    // SAFETY: per the contract, `data` is a live Arc<App> pointer that
    // collectd keeps until it calls `free_app`, after the last callback.
    unsafe { ((*ud).data as *const App).as_ref() }
}

fn register_callbacks(app: &Arc<App>) -> Result<(), String> {
    let check = |what: &str, status: c_int| {
        if status == 0 {
            Ok(())
        } else {
            Err(format!("registering the {what} callback failed ({status})"))
        }
    };
    let ud = user_data(app);
    // SAFETY: collectd copies the user_data struct and owns the App
    // reference in it (freeing it with free_app); the callback is ours.
    let s = unsafe { ffi::plugin_register_write(NAME.as_ptr(), Some(write_cb), &ud) };
    check("write", s)?;
    let ud = user_data(app);
    // SAFETY: as above.
    let s = unsafe { ffi::plugin_register_notification(NAME.as_ptr(), Some(notification_cb), &ud) };
    check("notification", s)?;
    let ud = user_data(app);
    // SAFETY: as above.
    let s = unsafe { ffi::plugin_register_flush(NAME.as_ptr(), Some(flush_cb), &ud) };
    check("flush", s)?;
    let ud = user_data(app);
    // SAFETY: as above.
    let s = unsafe { ffi::plugin_register_log(NAME.as_ptr(), Some(log_cb), &ud) };
    check("log", s)
}

thread_local! {
    /// Set while this thread runs log_cb: a log line written from inside it
    /// (a panic message, say) must not come back in.
    static IN_LOG_CB: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Every line collectd logs: marks the end of collectd's start-up, and feeds
/// the capture of a plugin operation. Never logs itself.
unsafe extern "C" fn log_cb(severity: c_int, message: *const c_char, ud: *mut ffi::user_data_t) {
    if IN_LOG_CB.with(|f| f.replace(true)) {
        return;
    }
    let _ = catch_unwind(|| {
        // SAFETY: collectd passes a registered user_data of ours.
        let Some(app) = (unsafe { app_of(ud) }) else {
            return;
        };
        // SAFETY: collectd passes a valid message for this call.
        let message = unsafe { convert::cstr(message) };
        if message.starts_with("Initialization complete") {
            app.control.mark_ready();
        }
        app.plugins
            .capture
            .record(loader::severity_name(severity), &message);
    });
    IN_LOG_CB.with(|f| f.set(false));
}

/// The write path: every value list collectd dispatches.
unsafe extern "C" fn write_cb(
    ds: *const ffi::data_set_t,
    vl: *const ffi::value_list_t,
    ud: *mut ffi::user_data_t,
) -> c_int {
    guard("write", || {
        // SAFETY: collectd passes a registered user_data of ours.
        let Some(app) = (unsafe { app_of(ud) }) else {
            return -1;
        };
        if ds.is_null() || vl.is_null() {
            return -1;
        }
        let mut id = convert::IdBuf::new();
        // SAFETY: collectd passes a valid data set and value list that stay
        // alive and unchanged for the duration of this call; `meta` is
        // dropped before it returns.
        let (ds, vl) = unsafe { (&*ds, &*vl) };
        // SAFETY: as above.
        let meta = (!vl.meta.is_null()).then(|| unsafe { meta::InCollectd::new(vl.meta) });
        // SAFETY: as above.
        let (vl, id) = unsafe { convert::value_list(vl, &mut id, meta.as_ref()) };
        if app.info.fault_plugin.is_some() {
            app.info.fault_check(&String::from_utf8_lossy(vl.plugin));
        }
        // Threshold notifications go to the notifier: start() sets the
        // store's event sink before it registers this callback, so none
        // comes back here.
        app.values.record_id(&convert::HostDataSet(ds), &vl, id);
        0
    })
}

unsafe extern "C" fn notification_cb(
    n: *const ffi::notification_t,
    ud: *mut ffi::user_data_t,
) -> c_int {
    guard("notification", || {
        // SAFETY: collectd passes a registered user_data of ours.
        let Some(app) = (unsafe { app_of(ud) }) else {
            return -1;
        };
        if n.is_null() {
            return -1;
        }
        // SAFETY: a valid notification for the duration of this call.
        let n = unsafe { convert::notification(&*n) };
        app.info.fault_check(&n.plugin);
        app.notifications.push(n);
        0
    })
}

/// Our "flush": we hold no buffered output, so flushing drops expired
/// values from memory at once.
unsafe extern "C" fn flush_cb(
    _timeout: ffi::cdtime_t,
    _identifier: *const c_char,
    ud: *mut ffi::user_data_t,
) -> c_int {
    guard("flush", || {
        // SAFETY: collectd passes a registered user_data of ours.
        if let Some(app) = unsafe { app_of(ud) } {
            app.values.purge_expired();
        }
        0
    })
}

/// The control thread's entry point (started by plugin_thread_create).
unsafe extern "C" fn control_main(arg: *mut c_void) -> *mut c_void {
    signals::block_in_this_thread();
    let _ = catch_unwind(|| {
        // SAFETY: `arg` is the Box created in start_control_thread, handed
        // to exactly this thread.
        let boxed = unsafe { Box::from_raw(arg as *mut (Arc<App>, Worker)) };
        let (app, worker) = *boxed;
        let a = app.clone();
        let daemon = daemon::Daemon {
            loader: loader::Loader::new(
                app.info.plugin_dir.clone().unwrap_or_default(),
                app.config.state_dir.clone().unwrap_or_default(),
                Box::new(move || a.control.is_stopping()),
            ),
        };
        worker.run(&app.control, &daemon);
    });
    std::ptr::null_mut()
}

fn start_control_thread(app: Arc<App>, worker: Worker) -> Result<libc::pthread_t, String> {
    // SAFETY: control_main takes its argument as Box<(Arc<App>, Worker)>.
    unsafe { start_thread(c"rest control", control_main, Box::new((app, worker))) }
        .map_err(|status| format!("cannot start the control thread ({status})"))
}

/// Starts `main` on a joinable thread named `name` through collectd's
/// plugin_thread_create, in the current plugin context (rest's, during
/// init); Err(status) if the thread could not be started.
///
/// # Safety
/// `main` takes ownership of its argument as a `Box<T>` (Box::from_raw).
unsafe fn start_thread<T>(
    name: &std::ffi::CStr,
    main: unsafe extern "C" fn(*mut c_void) -> *mut c_void,
    arg: Box<T>,
) -> Result<libc::pthread_t, c_int> {
    let arg = Box::into_raw(arg);
    let mut tid: ffi::pthread_t = 0;
    // SAFETY: `main` takes ownership of `arg` (this function's contract);
    // `name` is a valid C string that collectd copies.
    let status = unsafe {
        ffi::plugin_thread_create(&mut tid, Some(main), arg.cast::<c_void>(), name.as_ptr())
    };
    if status != 0 {
        // SAFETY: the thread was not created, so `arg` is still ours.
        drop(unsafe { Box::from_raw(arg) });
        return Err(status);
    }
    Ok(tid as libc::pthread_t)
}

/// Threshold notifications queued for the thread that dispatches them
/// ("rest notify"), in order.
struct Notifier {
    /// None once stopping: the thread ends when the queue is empty.
    queue: Arc<Mutex<Option<std::sync::mpsc::Sender<Notification>>>>,
    tid: libc::pthread_t,
}

impl Notifier {
    fn start() -> Result<Notifier, String> {
        let (tx, rx) = std::sync::mpsc::channel::<Notification>();
        // The notifications carry the plugin context it starts in.
        // SAFETY: notifier_main takes its argument as Box<Receiver<_>>.
        let tid = unsafe { start_thread(c"rest notify", notifier_main, Box::new(rx)) }
            .map_err(|status| format!("cannot start the notification thread ({status})"))?;
        Ok(Notifier {
            queue: Arc::new(Mutex::new(Some(tx))),
            tid,
        })
    }

    /// Closes the queue; the thread dispatches what it holds, then ends
    /// and is joined.
    fn stop(self) {
        drop(self.queue.lock().take());
        // SAFETY: `tid` is our joinable notifier thread, joined exactly
        // once (this consumes the Notifier).
        let status = unsafe { libc::pthread_join(self.tid, std::ptr::null_mut()) };
        if status != 0 {
            log::warn!("joining the notification thread failed ({status})");
        }
    }
}

/// The notifier's entry point (started by plugin_thread_create).
unsafe extern "C" fn notifier_main(arg: *mut c_void) -> *mut c_void {
    signals::block_in_this_thread();
    // SAFETY: `arg` is the Box created in Notifier::start, handed to
    // exactly this thread.
    let rx = unsafe { Box::from_raw(arg.cast::<std::sync::mpsc::Receiver<Notification>>()) };
    for n in rx.iter() {
        match catch_unwind(AssertUnwindSafe(|| daemon::dispatch(&n))) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => log::warn!("threshold notification for {}: {e}", n.plugin),
            Err(_) => log::error!("threshold notification for {}: panicked", n.plugin),
        }
    }
    std::ptr::null_mut()
}

fn stop_control_thread(app: &App, tid: libc::pthread_t) {
    app.control.close();
    // SAFETY: `tid` is our joinable control thread, joined exactly once.
    let status = unsafe { libc::pthread_join(tid, std::ptr::null_mut()) };
    if status != 0 {
        log::warn!("joining the control thread failed ({status})");
    }
}

/// Waits (up to `timeout`) until no thread of ours is left in the process:
/// the control thread, the notifier, the server thread, the HTTP runtime's
/// threads and the connection threads,
/// found by name in /proc/self/task. Err(names) if some are still there.
fn threads_left(timeout: std::time::Duration) -> Result<(), Vec<String>> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let mut left = Vec::new();
        for prefix in [
            "rest-http",
            "rest-server",
            "rest-conn",
            "rest control",
            "rest notify",
        ] {
            match crate::readers::threads_named(std::path::Path::new("/proc/self/task"), prefix) {
                Ok(tids) => left.extend(tids.into_iter().map(crate::readers::thread_name)),
                Err(e) => return Err(vec![format!("(cannot read /proc/self/task: {e})")]),
            }
        }
        if left.is_empty() {
            return Ok(());
        }
        if std::time::Instant::now() >= deadline {
            return Err(left);
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

unsafe extern "C" fn shutdown_cb() -> c_int {
    guard("shutdown", || {
        let phase = std::mem::replace(&mut *STATE.lock(), Phase::Stopped);
        if let Phase::Running {
            app,
            server,
            control_thread,
            notifier,
        } = phase
        {
            app.control.begin_shutdown();
            server.stop();
            stop_control_thread(&app, control_thread);
            // Write threads may still raise notifications: those after
            // this are logged as not dispatched.
            notifier.stop();
            match threads_left(std::time::Duration::from_secs(2)) {
                Ok(()) => log::info!("REST API stopped; no thread of ours is left"),
                Err(left) => log::warn!(
                    "REST API stopped, but threads of ours are still running: {}",
                    left.join(", ")
                ),
            }
        }
        0
    })
}
