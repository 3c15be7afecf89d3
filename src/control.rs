//! The control thread: every call into collectd that changes or drives the
//! daemon (dispatching a notification, flushing, and later loading and
//! unloading plugins) runs here, one at a time, off collectd's read and write
//! threads. HTTP handlers send a job and await its reply.
//!
//! `host` starts the thread with collectd's plugin_thread_create (so it runs
//! in the rest plugin's context) and provides the `Collectd` implementation;
//! tests use a fake.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;

use parking_lot::Mutex;

use crate::model::{CdTime, Notification};

/// What the control thread may ask of the collectd daemon.
pub trait Collectd {
    /// plugin_dispatch_notification.
    fn dispatch_notification(&self, n: &Notification) -> Result<(), String>;
    /// plugin_flush; `plugin` None flushes every plugin with a flush callback.
    fn flush(&self, plugin: Option<&str>, timeout: CdTime, identifier: Option<&str>) -> i32;
    /// plugin_is_loaded: whether `plugin` (the name of a .so) is loaded.
    fn is_loaded(&self, plugin: &str) -> bool;
}

type Job = Box<dyn FnOnce(&dyn Collectd) + Send>;

/// Why a job did not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlError {
    /// collectd is shutting down (or the control thread has stopped).
    ShuttingDown,
    /// The job panicked; the panic was logged.
    Panicked,
}

pub struct Control {
    tx: Mutex<Option<mpsc::Sender<Job>>>,
    /// Set when collectd starts shutting down (from the signal handler):
    /// no job starts after that.
    stopping: AtomicBool,
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
            },
            Worker { rx },
        )
    }

    /// Async-signal-safe: only an atomic store.
    pub fn begin_shutdown(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Stops taking jobs; the worker loop ends once the queue is drained.
    pub fn close(&self) {
        self.begin_shutdown();
        self.tx.lock().take();
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
        while let Ok(job) = self.rx.recv() {
            if control.is_stopping() {
                // Dropping the job drops its reply sender: the caller gets
                // ShuttingDown.
                continue;
            }
            if catch_unwind(AssertUnwindSafe(|| job(collectd))).is_err() {
                log::error!("a control job panicked; it was abandoned");
            }
        }
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use std::sync::Arc;

    /// plugin, timeout, identifier of a flush call.
    pub type FlushCall = (Option<String>, CdTime, Option<String>);

    /// A stand-in for the daemon, recording what was asked of it.
    #[derive(Default)]
    pub struct FakeCollectd {
        pub notifications: Mutex<Vec<Notification>>,
        pub flushes: Mutex<Vec<FlushCall>>,
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
            matches!(plugin, "rest" | "cpu" | "memory")
        }
    }

    /// A control thread on a plain std thread, for tests.
    pub fn spawn(fake: Arc<FakeCollectd>) -> (Arc<Control>, std::thread::JoinHandle<()>) {
        let (control, worker) = Control::new();
        let control = Arc::new(control);
        let c2 = control.clone();
        let t = std::thread::spawn(move || worker.run(&c2, &*fake));
        (control, t)
    }

    #[tokio::test]
    async fn runs_jobs_in_order_and_stops() {
        let fake = Arc::new(FakeCollectd::default());
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
