//! Keeping collectd's write threads away from the lists they walk while a
//! plugin's callbacks are taken out of them.
//!
//! collectd 5.12's write threads walk the write list (and, inside the value
//! cache, the cache-event list; the threshold plugin dispatches
//! notifications from there too) without a lock, while unregistering a
//! callback frees its list entry: a write thread that was inside the
//! plugin's callback then follows a freed pointer. So before such a
//! plugin's callbacks are unregistered, every write thread is parked at a
//! point where it walks no list: in the pre-cache chain, at our filter
//! match, which runs before the value cache and every write plugin.
//!
//! `host` dispatches one marker value per write thread ("rest/fence" with
//! the fence's token as type instance); each write thread that takes one
//! parks in `park` until the fence opens. A write thread holds one value at
//! a time, so once as many threads are parked as collectd has write
//! threads, none can be in any write callback. A thread idle on collectd's
//! write queue takes a marker as soon as it wakes. A thread stuck in a
//! write callback never arrives: `wait_parked` times out and the caller
//! unregisters nothing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

/// The plugin and plugin instance of a marker value.
pub const MARKER_PLUGIN: &str = "rest";
pub const MARKER_INSTANCE: &str = "fence";

/// The longest a write thread stays parked, whatever happens to the thread
/// that closed the fence.
pub const PARK_CAP: Duration = Duration::from_secs(15);

struct State {
    /// The token of the current (or last) fence; markers of older fences
    /// pass through.
    token: u64,
    /// Write threads parked on the current fence.
    parked: usize,
    open: bool,
}

pub struct Fence {
    active: AtomicBool,
    state: Mutex<State>,
    cv: Condvar,
}

impl Default for Fence {
    fn default() -> Self {
        Self::new()
    }
}

impl Fence {
    pub const fn new() -> Fence {
        Fence {
            active: AtomicBool::new(false),
            state: Mutex::new(State {
                token: 0,
                parked: 0,
                open: true,
            }),
            cv: Condvar::new(),
        }
    }

    /// Whether a fence is closed (one atomic load: the filter match asks
    /// for every value).
    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    /// Closes a new fence; returns its token, which the markers carry.
    pub fn close(&self) -> u64 {
        let mut s = self.state.lock();
        s.token += 1;
        s.parked = 0;
        s.open = false;
        self.active.store(true, Ordering::Release);
        s.token
    }

    /// On a write thread that took the marker `token`: waits until the
    /// fence opens (at most `cap`). A marker of a fence that is already
    /// open returns at once.
    pub fn park(&self, token: u64, cap: Duration) {
        let deadline = Instant::now() + cap;
        let mut s = self.state.lock();
        if s.open || s.token != token {
            return;
        }
        s.parked += 1;
        self.cv.notify_all();
        while !s.open && s.token == token {
            if self.cv.wait_until(&mut s, deadline).timed_out() {
                break;
            }
        }
    }

    /// Waits until `n` write threads are parked. Err(parked so far) after
    /// `timeout`, or as soon as `give_up()` (polled every 50 ms).
    pub fn wait_parked(
        &self,
        n: usize,
        timeout: Duration,
        give_up: &dyn Fn() -> bool,
    ) -> Result<(), usize> {
        let deadline = Instant::now() + timeout;
        let mut s = self.state.lock();
        loop {
            if s.parked >= n {
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline || give_up() {
                return Err(s.parked);
            }
            let step = (deadline - now).min(Duration::from_millis(50));
            self.cv.wait_for(&mut s, step);
        }
    }

    /// Opens the fence: every parked thread goes on.
    pub fn open(&self) {
        let mut s = self.state.lock();
        s.open = true;
        self.active.store(false, Ordering::Release);
        self.cv.notify_all();
    }
}

/// The fence the filter match and the plugin operations share.
pub static FENCE: Fence = Fence::new();

/// The token a marker's type instance carries, if the value is a marker.
pub fn marker_token(plugin: &str, plugin_instance: &str, type_instance: &str) -> Option<u64> {
    if plugin == MARKER_PLUGIN && plugin_instance == MARKER_INSTANCE {
        type_instance.parse().ok()
    } else {
        None
    }
}

/// Which of collectd's threads may be inside callbacks that a plugin's
/// shared object can register, from the names of the registration
/// functions it imports (they are in its dynamic string table).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sides {
    /// Write, cache-event or notification callbacks: the write threads
    /// call them (notifications from the threshold plugin's checks).
    pub write_threads: bool,
    /// Missing, cache-event or notification callbacks: collectd's main
    /// thread calls the first two for expired values, read threads may
    /// dispatch notifications.
    pub other_threads: bool,
}

impl Sides {
    /// What a file that cannot be read is taken to have: everything.
    pub const ALL: Sides = Sides {
        write_threads: true,
        other_threads: true,
    };
}

pub fn callback_sides(so: &[u8]) -> Sides {
    let has = |name: &str| {
        let n = format!("{name}\0");
        so.windows(n.len()).any(|w| w == n.as_bytes())
    };
    let write = has("plugin_register_write");
    let cache_event = has("plugin_register_cache_event");
    let notification = has("plugin_register_notification");
    let missing = has("plugin_register_missing");
    Sides {
        write_threads: write || cache_event || notification,
        other_threads: missing || cache_event || notification,
    }
}

/// Thread ids of collectd's write threads (named "writer#N").
pub fn writer_threads() -> std::io::Result<Vec<u32>> {
    crate::readers::threads_named(std::path::Path::new("/proc/self/task"), "writer#")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn parked_threads_wait_for_the_fence_to_open() {
        let f = Arc::new(Fence::new());
        assert!(!f.is_active());
        let token = f.close();
        assert!(f.is_active());
        let threads: Vec<_> = (0..3)
            .map(|_| {
                let f = f.clone();
                std::thread::spawn(move || f.park(token, Duration::from_secs(30)))
            })
            .collect();
        assert_eq!(f.wait_parked(3, Duration::from_secs(30), &|| false), Ok(()));
        assert!(threads.iter().all(|t| !t.is_finished()));
        f.open();
        for t in threads {
            t.join().unwrap();
        }
        assert!(!f.is_active());
    }

    #[test]
    fn a_missing_thread_times_out_and_stale_markers_pass() {
        let f = Fence::new();
        let old = f.close();
        f.open();
        let token = f.close();
        assert_ne!(old, token);
        // A marker of the earlier fence does not park.
        f.park(old, Duration::from_secs(30));
        assert_eq!(
            f.wait_parked(1, Duration::from_millis(30), &|| false),
            Err(0)
        );
        assert_eq!(f.wait_parked(1, Duration::from_secs(30), &|| true), Err(0));
        f.open();
        // A marker that arrives after the fence opened goes on at once.
        f.park(token, Duration::from_secs(30));
    }

    #[test]
    fn park_gives_up_after_its_cap() {
        let f = Fence::new();
        let token = f.close();
        let t0 = Instant::now();
        f.park(token, Duration::from_millis(20));
        assert!(t0.elapsed() >= Duration::from_millis(20));
        assert_eq!(f.wait_parked(1, Duration::from_secs(1), &|| false), Ok(()));
        f.open();
    }

    #[test]
    fn markers_and_write_side_imports() {
        assert_eq!(marker_token("rest", "fence", "42"), Some(42));
        assert_eq!(marker_token("rest", "fence", "x"), None);
        assert_eq!(marker_token("cpu", "fence", "42"), None);
        let sides = |w, o| Sides {
            write_threads: w,
            other_threads: o,
        };
        assert_eq!(
            callback_sides(b"\x7fELF..plugin_register_write\0plugin_log\0"),
            sides(true, false)
        );
        assert_eq!(
            callback_sides(b"plugin_register_missing\0"),
            sides(false, true)
        );
        assert_eq!(
            callback_sides(b"plugin_register_notification\0"),
            sides(true, true)
        );
        assert_eq!(
            callback_sides(b"plugin_register_read\0plugin_register_writer"),
            sides(false, false)
        );
    }
}
