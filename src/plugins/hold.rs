//! Two small mechanisms the plugin operations need from the write path and
//! the log:
//!
//! - `Hold`: values of a plugin that is being loaded or re-enabled are
//!   dropped before collectd's cache (by a pre-cache filter-chain match in
//!   `host`) until its config and init have been applied; collectd runs a
//!   newly registered read at once, possibly before either.
//! - `LogCapture`: the log lines an operation produced on the control thread,
//!   returned to the client when the operation fails.

use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::ThreadId;

use parking_lot::{Mutex, RwLock};

use crate::model::CdTime;

/// How long a released hold keeps dropping late values read before the
/// release (a read that began before init can finish after it).
const LINGER: CdTime = 10 << 30;

struct HoldEntry {
    plugin: String,
    /// None: drop every value. Some(t): drop values with time < t.
    before: Option<CdTime>,
}

#[derive(Default)]
pub struct Hold {
    /// Cheap test for the write path: false when nothing is held.
    active: AtomicBool,
    entries: RwLock<Vec<HoldEntry>>,
}

impl Hold {
    /// Whether anything is held at all (one atomic load).
    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    /// Called for every value when a hold exists: drop this value?
    pub fn should_drop(&self, plugin: &str, time: CdTime) -> bool {
        if !self.active.load(Ordering::Acquire) {
            return false;
        }
        self.entries
            .read()
            .iter()
            .any(|e| e.plugin == plugin && e.before.is_none_or(|t| time < t))
    }

    fn update(&self, f: impl FnOnce(&mut Vec<HoldEntry>)) {
        let mut entries = self.entries.write();
        f(&mut entries);
        self.active.store(!entries.is_empty(), Ordering::Release);
    }

    /// Drops every value of `plugin` from now on.
    pub fn hold(&self, plugin: &str) {
        self.update(|es| {
            es.retain(|e| e.plugin != plugin);
            es.push(HoldEntry {
                plugin: plugin.to_string(),
                before: None,
            });
        });
    }

    /// Lets values of `plugin` read from `now` on pass; values read before
    /// keep being dropped for a while. Expired releases are pruned.
    pub fn release(&self, plugin: &str, now: CdTime) {
        self.update(|es| {
            es.retain(|e| e.plugin != plugin && e.before.is_none_or(|t| t + LINGER > now));
            es.push(HoldEntry {
                plugin: plugin.to_string(),
                before: Some(now),
            });
        });
    }

    /// Stops holding `plugin` at all.
    pub fn forget(&self, plugin: &str) {
        self.update(|es| es.retain(|e| e.plugin != plugin));
    }
}

/// Log lines kept per capture at most.
const MAX_CAPTURED: usize = 200;

#[derive(Default)]
pub struct LogCapture {
    active: AtomicBool,
    thread: Mutex<Option<ThreadId>>,
    lines: Mutex<Vec<String>>,
}

impl LogCapture {
    /// Starts capturing the lines logged by the calling thread.
    pub fn start(&self) {
        *self.thread.lock() = Some(std::thread::current().id());
        self.lines.lock().clear();
        self.active.store(true, Ordering::Release);
    }

    /// From collectd's log callback: keeps the line if it was logged by the
    /// capturing thread. Our own lines ("rest: ...") are left out.
    pub fn record(&self, severity: &str, message: &str) {
        if !self.active.load(Ordering::Acquire) || message.starts_with("rest: ") {
            return;
        }
        if *self.thread.lock() != Some(std::thread::current().id()) {
            return;
        }
        let mut lines = self.lines.lock();
        if lines.len() < MAX_CAPTURED {
            lines.push(format!("[{severity}] {}", message.trim_end()));
        }
    }

    /// Stops capturing; returns the lines.
    pub fn stop(&self) -> Vec<String> {
        self.active.store(false, Ordering::Release);
        *self.thread.lock() = None;
        std::mem::take(&mut *self.lines.lock())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hold_release_forget() {
        let h = Hold::default();
        assert!(!h.should_drop("cpu", 5));
        h.hold("cpu");
        assert!(h.should_drop("cpu", 5));
        assert!(!h.should_drop("memory", 5));
        h.release("cpu", 100 << 30);
        assert!(h.should_drop("cpu", 99 << 30), "read before the release");
        assert!(!h.should_drop("cpu", 100 << 30));
        // a later release of another plugin prunes the expired one
        h.release("load", (100 << 30) + LINGER + 1);
        assert!(!h.should_drop("cpu", 1));
        h.forget("load");
        assert!(!h.active.load(Ordering::Acquire));
    }

    #[test]
    fn capture_only_the_capturing_thread() {
        let c = LogCapture::default();
        c.record("error", "before start");
        c.start();
        c.record("error", "plugin_load: could not find plugin \"nope\"");
        c.record("info", "rest: our own line");
        std::thread::scope(|s| {
            s.spawn(|| c.record("error", "from another thread"));
        });
        assert_eq!(
            c.stop(),
            ["[error] plugin_load: could not find plugin \"nope\""]
        );
        c.record("error", "after stop");
        assert!(c.stop().is_empty());
    }
}
