//! The control thread: every call into collectd that changes or drives the
//! daemon (dispatching a notification, flushing, and later loading and
//! unloading plugins) runs here, one at a time, off collectd's read and write
//! threads. HTTP handlers send a job and await its reply.
//!
//! `host` starts the thread with collectd's plugin_thread_create (so it runs
//! in the rest plugin's context) and provides the `Collectd` implementation;
//! tests use a fake.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::mpsc;

use parking_lot::Mutex;

use crate::model::{CdTime, ConfigItem, Notification};

/// What the control thread may ask of the collectd daemon. The plugin
/// operations (`crate::plugins`) are built from the last group of calls;
/// `host` implements them with collectd's exported functions, in the
/// sequences recorded in shared/notes/collectd-runtime.md.
pub trait Collectd {
    /// plugin_dispatch_notification.
    fn dispatch_notification(&self, n: &Notification) -> Result<(), String>;
    /// plugin_flush; `plugin` None flushes every plugin with a flush callback.
    fn flush(&self, plugin: Option<&str>, timeout: CdTime, identifier: Option<&str>) -> i32;
    /// plugin_is_loaded: whether `plugin` (the name of a .so) is loaded.
    fn is_loaded(&self, plugin: &str) -> bool;

    /// Parses configuration text with collectd's own parser (oconfig),
    /// without following includes or applying anything.
    fn parse_config(&self, text: &str) -> Result<ConfigItem, String>;
    /// Applies a runtime configuration file (cf_read).
    fn read_config(&self, text: &str) -> Result<(), String>;
    /// Calls the module_register of an already loaded plugin again, in a
    /// plugin context with `interval` (None: collectd's default).
    fn register(&self, plugin: &str, interval: Option<f64>) -> Result<(), String>;
    /// Runs the init callback of `plugin` and of no other plugin.
    fn init(&self, plugin: &str) -> Result<(), String>;
    /// Unregisters every callback of `plugin` that collectd lets us
    /// unregister (read, write, flush, missing, notification, cache event,
    /// init, log); config and shutdown callbacks stay. A plugin that can
    /// have callbacks on collectd's write threads is unregistered while
    /// those are parked (crate::writers); Err if they did not all park in
    /// time: then nothing changed, unless `force` (it is done anyway).
    fn unregister(&self, plugin: &str, force: bool) -> Result<(), String>;
    /// After a failed load or start: `unregister`, and the shutdown callback
    /// too (the plugin never ran; its shutdown would fail at exit).
    fn discard(&self, plugin: &str);
    /// Returns once no read callback that was unregistered before the call
    /// can still be running; Err if the read threads stayed busy.
    fn wait_reads_done(&self) -> Result<(), String>;
}

type Job = Box<dyn FnOnce(&dyn Collectd) + Send>;

/// How long the control thread waits for collectd's start-up to finish.
const READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Why a job did not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlError {
    /// collectd is shutting down (or the control thread has stopped).
    ShuttingDown,
    /// The job panicked; the panic was logged.
    Panicked,
}

/// `Control::phase`: whether a job runs, and whether jobs may still start.
const IDLE: u8 = 0;
const BUSY: u8 = 1;
const STOPPED: u8 = 2;

pub struct Control {
    tx: Mutex<Option<mpsc::Sender<Job>>>,
    /// Set when collectd starts shutting down (from the signal handler):
    /// jobs that wait (for collectd's read threads) give up.
    stopping: AtomicBool,
    /// IDLE, BUSY (a job runs) or STOPPED (no job will start again).
    phase: AtomicU8,
    /// Set when collectd has finished starting: no job runs before, since
    /// collectd's start-up (plugin_init_all) must not race with ours.
    ready: (std::sync::Mutex<bool>, std::sync::Condvar),
}

/// The receiving end, handed to the thread that runs `worker_loop`.
pub struct Worker {
    rx: mpsc::Receiver<Job>,
}

impl Control {
    pub fn new() -> (Control, Worker) {
        let (tx, rx) = mpsc::channel();
        (
            Control {
                tx: Mutex::new(Some(tx)),
                stopping: AtomicBool::new(false),
                phase: AtomicU8::new(IDLE),
                ready: Default::default(),
            },
            Worker { rx },
        )
    }

    /// Async-signal-safe (atomic stores): asks jobs to stop waiting and
    /// refuses new ones.
    pub fn begin_shutdown(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Async-signal-safe (one atomic compare-exchange): true once no job
    /// runs and none will start again; false while a job runs. collectd's
    /// signal handler chain calls it until true, so that collectd's teardown
    /// never races with a job calling into collectd.
    pub fn try_stop(&self) -> bool {
        match self
            .phase
            .compare_exchange(IDLE, STOPPED, Ordering::SeqCst, Ordering::SeqCst)
        {
            Ok(_) => true,
            Err(p) => p == STOPPED,
        }
    }

    /// collectd has finished starting: jobs may run.
    pub fn mark_ready(&self) {
        let (lock, cv) = &self.ready;
        *lock.lock().unwrap_or_else(|e| e.into_inner()) = true;
        cv.notify_all();
    }

    /// Waits for `mark_ready`; false on timeout.
    fn wait_ready(&self, timeout: std::time::Duration) -> bool {
        let (lock, cv) = &self.ready;
        let guard = lock.lock().unwrap_or_else(|e| e.into_inner());
        let (guard, _) = cv
            .wait_timeout_while(guard, timeout, |ready| !*ready)
            .unwrap_or_else(|e| e.into_inner());
        *guard
    }

    /// Queues `f` without waiting for it (from non-async code).
    pub fn submit<F>(&self, f: F) -> Result<(), ControlError>
    where
        F: FnOnce(&dyn Collectd) + Send + 'static,
    {
        let tx = self.tx.lock();
        let tx = tx.as_ref().ok_or(ControlError::ShuttingDown)?;
        tx.send(Box::new(f)).map_err(|_| ControlError::ShuttingDown)
    }

    /// Stops taking jobs; the worker loop ends once the queue is drained.
    pub fn close(&self) {
        self.begin_shutdown();
        self.tx.lock().take();
        // A worker still waiting for collectd's start-up must not wait on.
        self.mark_ready();
    }

    /// Runs `f` on the control thread and returns its result.
    pub async fn run<R, F>(&self, f: F) -> Result<R, ControlError>
    where
        R: Send + 'static,
        F: FnOnce(&dyn Collectd) -> R + Send + 'static,
    {
        if self.is_stopping() {
            return Err(ControlError::ShuttingDown);
        }
        let (reply_tx, reply_rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |c: &dyn Collectd| {
            let _ = reply_tx.send(f(c));
        });
        {
            let tx = self.tx.lock();
            let Some(tx) = tx.as_ref() else {
                return Err(ControlError::ShuttingDown);
            };
            tx.send(job).map_err(|_| ControlError::ShuttingDown)?;
        }
        // A dropped reply sender means the job panicked or was discarded.
        reply_rx.await.map_err(|_| {
            if self.is_stopping() {
                ControlError::ShuttingDown
            } else {
                ControlError::Panicked
            }
        })
    }
}

impl Worker {
    /// The control thread's body: runs jobs in order until `Control::close`.
    /// A job that panics is logged and dropped; the thread goes on.
    pub fn run(self, control: &Control, collectd: &dyn Collectd) {
        if !control.wait_ready(READY_TIMEOUT) {
            log::warn!(
                "collectd did not report the end of its start-up within {} s; \
                 running control operations anyway",
                READY_TIMEOUT.as_secs()
            );
        }
        while let Ok(job) = self.rx.recv() {
            let skip = control.is_stopping()
                || control
                    .phase
                    .compare_exchange(IDLE, BUSY, Ordering::SeqCst, Ordering::SeqCst)
                    .is_err();
            if skip {
                // Shutting down: dropping the job drops its reply sender,
                // the caller gets ShuttingDown.
                continue;
            }
            if catch_unwind(AssertUnwindSafe(|| job(collectd))).is_err() {
                log::error!("a control job panicked; it was abandoned");
            }
            control.phase.store(IDLE, Ordering::SeqCst);
        }
        control.phase.store(STOPPED, Ordering::SeqCst);
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::sync::Arc;

    /// plugin, timeout, identifier of a flush call.
    pub type FlushCall = (Option<String>, CdTime, Option<String>);

    /// A stand-in for the daemon: it keeps which plugins are loaded and
    /// which have callbacks, can be told to fail a plugin's init, and
    /// records every call in order.
    #[derive(Default)]
    pub struct FakeCollectd {
        pub notifications: Mutex<Vec<Notification>>,
        pub flushes: Mutex<Vec<FlushCall>>,
        /// Plugins whose .so exists (loadable).
        pub installed: Mutex<BTreeSet<String>>,
        pub loaded: Mutex<BTreeSet<String>>,
        /// Plugins with their callbacks registered.
        pub running: Mutex<BTreeSet<String>>,
        pub fail_init: Mutex<BTreeSet<String>>,
        /// Plugins whose unregistering finds the write threads busy.
        pub busy_writers: Mutex<BTreeSet<String>>,
        pub calls: Mutex<Vec<String>>,
    }

    impl FakeCollectd {
        pub fn with_plugins(installed: &[&str], loaded: &[&str]) -> Self {
            let f = FakeCollectd::default();
            f.installed
                .lock()
                .extend(installed.iter().map(|s| s.to_string()));
            f.loaded.lock().extend(loaded.iter().map(|s| s.to_string()));
            f.running
                .lock()
                .extend(loaded.iter().map(|s| s.to_string()));
            f
        }
        fn call(&self, c: String) {
            self.calls.lock().push(c);
        }
        pub fn take_calls(&self) -> Vec<String> {
            std::mem::take(&mut *self.calls.lock())
        }
    }

    /// A minimal reader of collectd's config syntax, enough for tests:
    /// `<Key "v">`, `</Key>` and `Key v...` lines.
    pub fn parse_config_text(text: &str) -> Result<ConfigItem, String> {
        let mut stack = vec![ConfigItem::default()];
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            if let Some(close) = line.strip_prefix("</") {
                let key = close.trim_end_matches('>');
                let item = stack.pop().ok_or("unbalanced")?;
                if !item.key.eq_ignore_ascii_case(key) || stack.is_empty() {
                    return Err(format!("unexpected </{key}>"));
                }
                stack.last_mut().unwrap().children.push(item);
            } else if let Some(open) = line.strip_prefix('<') {
                let open = open.strip_suffix('>').ok_or("bad block")?;
                let (key, rest) = open.split_once(' ').unwrap_or((open, ""));
                stack.push(ConfigItem {
                    key: key.into(),
                    values: values(rest),
                    children: vec![],
                });
            } else {
                let (key, rest) = line.split_once(' ').unwrap_or((line, ""));
                stack.last_mut().unwrap().children.push(ConfigItem {
                    key: key.into(),
                    values: values(rest),
                    children: vec![],
                });
            }
        }
        if stack.len() != 1 {
            return Err("unclosed block".into());
        }
        Ok(stack.pop().unwrap())
    }

    fn values(s: &str) -> Vec<crate::model::ConfigValue> {
        s.split_whitespace()
            .map(|v| match v.parse::<f64>() {
                Ok(n) => crate::model::ConfigValue::Number(n),
                Err(_) => crate::model::ConfigValue::String(v.trim_matches('"').to_string()),
            })
            .collect()
    }

    impl Collectd for FakeCollectd {
        fn dispatch_notification(&self, n: &Notification) -> Result<(), String> {
            self.notifications.lock().push(n.clone());
            Ok(())
        }
        fn flush(&self, plugin: Option<&str>, timeout: CdTime, identifier: Option<&str>) -> i32 {
            self.flushes.lock().push((
                plugin.map(String::from),
                timeout,
                identifier.map(String::from),
            ));
            0
        }
        fn is_loaded(&self, plugin: &str) -> bool {
            self.loaded.lock().contains(plugin)
        }
        fn parse_config(&self, text: &str) -> Result<ConfigItem, String> {
            parse_config_text(text)
        }
        fn read_config(&self, text: &str) -> Result<(), String> {
            let tree = parse_config_text(text)?;
            for item in &tree.children {
                let name = match item.values.first() {
                    Some(crate::model::ConfigValue::String(s)) => s.clone(),
                    _ => continue,
                };
                if item.key == "LoadPlugin" {
                    let interval = item.children.first().map(|i| format!("{:?}", i.values));
                    self.call(format!("load {name} {}", interval.unwrap_or_default()));
                    if self.installed.lock().contains(&name) {
                        self.loaded.lock().insert(name.clone());
                        self.running.lock().insert(name);
                    }
                } else if item.key == "Plugin" {
                    self.call(format!("config {name} {}", item.children.len()));
                }
            }
            Ok(())
        }
        fn register(&self, plugin: &str, interval: Option<f64>) -> Result<(), String> {
            self.call(format!("register {plugin} {interval:?}"));
            self.running.lock().insert(plugin.to_string());
            Ok(())
        }
        fn init(&self, plugin: &str) -> Result<(), String> {
            self.call(format!("init {plugin}"));
            if self.fail_init.lock().contains(plugin) {
                return Err(format!("init of {plugin} failed"));
            }
            Ok(())
        }
        fn unregister(&self, plugin: &str, force: bool) -> Result<(), String> {
            if !force && self.busy_writers.lock().contains(plugin) {
                self.call(format!("unregister {plugin} refused"));
                return Err("collectd's write threads did not all pause".into());
            }
            self.call(format!("unregister {plugin}"));
            self.running.lock().remove(plugin);
            Ok(())
        }
        fn discard(&self, plugin: &str) {
            self.call(format!("discard {plugin}"));
            self.running.lock().remove(plugin);
        }
        fn wait_reads_done(&self) -> Result<(), String> {
            self.call("wait".into());
            Ok(())
        }
    }

    /// A control thread on a plain std thread, for tests.
    pub fn spawn(fake: Arc<FakeCollectd>) -> (Arc<Control>, std::thread::JoinHandle<()>) {
        let (control, worker) = Control::new();
        control.mark_ready();
        let control = Arc::new(control);
        let c2 = control.clone();
        let t = std::thread::spawn(move || worker.run(&c2, &*fake));
        (control, t)
    }

    #[tokio::test]
    async fn runs_jobs_in_order_and_stops() {
        let fake = Arc::new(FakeCollectd::with_plugins(&["cpu"], &["cpu"]));
        let (control, t) = spawn(fake.clone());
        let r = control.run(|c| c.is_loaded("cpu")).await;
        assert_eq!(r, Ok(true));
        let r = control.run(|c| c.flush(Some("x"), 0, None)).await;
        assert_eq!(r, Ok(0));
        assert_eq!(fake.flushes.lock().len(), 1);
        let r: Result<(), _> = control.run(|_| panic!("boom")).await;
        assert_eq!(r, Err(ControlError::Panicked));
        // still alive after a panic
        assert_eq!(control.run(|c| c.is_loaded("nope")).await, Ok(false));
        control.close();
        t.join().unwrap();
        assert_eq!(
            control.run(|c| c.is_loaded("cpu")).await,
            Err(ControlError::ShuttingDown)
        );
    }

    /// The signal handler's wait: try_stop is false while a job runs, true
    /// once it is done, and no job starts after that.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn try_stop_waits_for_the_running_job() {
        let fake = Arc::new(FakeCollectd::default());
        let (control, t) = spawn(fake);
        let (in_job_tx, in_job_rx) = std::sync::mpsc::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let c2 = control.clone();
        let running = tokio::spawn(async move {
            c2.run(move |_| {
                in_job_tx.send(()).unwrap();
                release_rx.recv().unwrap();
                7
            })
            .await
        });
        in_job_rx.recv().unwrap();
        control.begin_shutdown();
        assert!(!control.try_stop(), "a job is running");
        release_tx.send(()).unwrap();
        assert_eq!(running.await.unwrap(), Ok(7));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !control.try_stop() {
            assert!(std::time::Instant::now() < deadline);
            std::thread::yield_now();
        }
        assert!(control.try_stop(), "stays stopped");
        assert_eq!(control.run(|_| 1).await, Err(ControlError::ShuttingDown));
        control.close();
        t.join().unwrap();
    }

    #[tokio::test]
    async fn no_job_starts_after_shutdown_begins() {
        let fake = Arc::new(FakeCollectd::default());
        let (control, t) = spawn(fake);
        control.begin_shutdown();
        assert_eq!(control.run(|_| ()).await, Err(ControlError::ShuttingDown));
        control.close();
        t.join().unwrap();
    }
}
