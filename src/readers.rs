//! Knowing when no read callback of a plugin can still be running.
//!
//! collectd 5.12 exports no way to ask. After a plugin's read callback is
//! unregistered, it is never started again, but a read already in progress
//! goes on. A collectd read thread ("reader#N") that is seen waiting on
//! collectd's own read condition variable is between reads; once every read
//! thread has been seen so after the unregistration, no read of the plugin
//! can be running.
//!
//! "Waiting on collectd's read condition" is read from /proc: the thread is
//! in the futex syscall with FUTEX_WAIT_BITSET (glibc's condition variable
//! wait; a contended mutex waits with FUTEX_WAIT) on an address inside the
//! collectd executable's own writable data (`read_cond` is a static there;
//! a plugin's read cannot wait on a static condition variable of the
//! daemon's).

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use once_cell::sync::OnceCell;

const FUTEX_WAIT_BITSET: u64 = 9;
const FUTEX_CMD_MASK: u64 = 0x7f;

/// Address ranges of the executable's writable mappings (data and bss),
/// from /proc/self/maps text and the executable's path.
pub fn exe_data_ranges(maps: &str, exe: &str) -> Vec<(u64, u64)> {
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    let mut last_exe_rw_end = None;
    for line in maps.lines() {
        let mut f = line.split_whitespace();
        let (Some(range), Some(perms)) = (f.next(), f.next()) else {
            continue;
        };
        let path = f.nth(3).unwrap_or("");
        let Some((a, b)) = range.split_once('-') else {
            continue;
        };
        let (Ok(a), Ok(b)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) else {
            continue;
        };
        if path == exe && perms.starts_with("rw") {
            ranges.push((a, b));
            last_exe_rw_end = Some(b);
        } else if path.is_empty() && perms.starts_with("rw") && last_exe_rw_end == Some(a) {
            // the bss right after the data segment
            ranges.push((a, b));
            last_exe_rw_end = None;
        } else {
            last_exe_rw_end = None;
        }
    }
    ranges
}

/// Whether a /proc/<tid>/syscall line shows a condition-variable wait on an
/// address inside `ranges`.
pub fn idle_in(syscall_line: &str, futex_nr: u64, ranges: &[(u64, u64)]) -> bool {
    let mut f = syscall_line.split_whitespace();
    let Some(Ok(nr)) = f.next().map(|n| n.parse::<u64>()) else {
        return false;
    };
    if nr != futex_nr {
        return false;
    }
    let hex = |s: Option<&str>| {
        s.and_then(|s| s.strip_prefix("0x"))
            .and_then(|s| u64::from_str_radix(s, 16).ok())
    };
    let (Some(addr), Some(op)) = (hex(f.next()), hex(f.next())) else {
        return false;
    };
    op & FUTEX_CMD_MASK == FUTEX_WAIT_BITSET && ranges.iter().any(|&(a, b)| addr >= a && addr < b)
}

/// The executable's data ranges and the read threads' ids.
type Found = (Vec<(u64, u64)>, Vec<u32>);

/// The outcome of waiting for the read threads.
#[derive(Debug, PartialEq, Eq)]
pub enum Quiet {
    /// Every read thread was seen between reads.
    Yes,
    /// Some read threads (their ids) stayed busy for the whole timeout.
    Busy(Vec<u32>),
    /// /proc could not tell; the caller waited `Duration` instead.
    Unknown(String),
}

/// The executable's data ranges and collectd's read threads. They do not
/// change while collectd runs: found once.
fn found() -> &'static Result<Found, String> {
    static FOUND: OnceCell<Result<Found, String>> = OnceCell::new();
    FOUND.get_or_init(|| {
        let exe = fs::read_link("/proc/self/exe")
            .map_err(|e| format!("/proc/self/exe: {e}"))?
            .to_string_lossy()
            .into_owned();
        let maps =
            fs::read_to_string("/proc/self/maps").map_err(|e| format!("/proc/self/maps: {e}"))?;
        let ranges = exe_data_ranges(&maps, &exe);
        if ranges.is_empty() {
            return Err(format!("no data mapping of {exe}"));
        }
        let tids = threads_named(Path::new("/proc/self/task"), "reader#")
            .map_err(|e| format!("/proc/self/task: {e}"))?;
        Ok((ranges, tids))
    })
}

/// Waits until every collectd read thread has been seen between reads, or
/// `abort()` (collectd is shutting down: Busy).
pub fn wait_until_between_reads(
    timeout: Duration,
    fallback: Duration,
    abort: &dyn Fn() -> bool,
) -> Quiet {
    let (ranges, mut pending) = match found() {
        Ok((r, t)) => (r, t.clone()),
        Err(e) => return fallback_wait(fallback, e.clone()),
    };
    let futex = libc::SYS_futex as u64;
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_micros(200);
    loop {
        let mut unreadable = None;
        pending.retain(|tid| {
            match fs::read_to_string(format!("/proc/self/task/{tid}/syscall")) {
                Ok(line) => !idle_in(&line, futex, ranges),
                // The thread is gone: it runs no read.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
                Err(e) => {
                    unreadable = Some(e.to_string());
                    true
                }
            }
        });
        if let Some(e) = unreadable {
            return fallback_wait(fallback, format!("/proc/self/task/*/syscall: {e}"));
        }
        if pending.is_empty() {
            return Quiet::Yes;
        }
        if Instant::now() >= deadline || abort() {
            return Quiet::Busy(pending);
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// Whether a /proc/<tid>/syscall line shows the thread in nanosleep or
/// clock_nanosleep (collectd's main thread between its rounds).
pub fn asleep(syscall_line: &str) -> bool {
    let nr = syscall_line
        .split_whitespace()
        .next()
        .and_then(|n| n.parse::<i64>().ok());
    nr == Some(libc::SYS_clock_nanosleep) || nr == Some(libc::SYS_nanosleep)
}

/// The number of times a thread gave up the CPU, from /proc/<tid>/status
/// text (voluntary plus involuntary context switches).
pub fn switches(status: &str) -> Option<u64> {
    let mut total = 0;
    let mut found = 0;
    for l in status.lines() {
        if let Some(n) = l
            .strip_prefix("voluntary_ctxt_switches:")
            .or_else(|| l.strip_prefix("nonvoluntary_ctxt_switches:"))
        {
            total += n.trim().parse::<u64>().ok()?;
            found += 1;
        }
    }
    (found == 2).then_some(total)
}

/// collectd's main thread and read threads, each seen parked (the main
/// thread asleep between its rounds, a read thread on collectd's read
/// condition) with its context-switch count. The main thread runs the
/// "missing" and cache-expiry callbacks, and read threads may dispatch
/// notifications, walking those lists without a lock.
pub struct Parked(Vec<(u32, u64)>);

impl Parked {
    /// Whether none of these threads has run since the snapshot: each is
    /// still parked and has not given up the CPU since (a thread that woke
    /// and went back to sleep would have).
    pub fn still(&self) -> bool {
        let (ranges, _) = match found() {
            Ok(f) => f,
            Err(_) => return false,
        };
        self.0
            .iter()
            .all(|&(tid, count)| parked(tid, ranges) && snapshot_switches(tid) == Some(count))
    }
}

fn snapshot_switches(tid: u32) -> Option<u64> {
    switches(&fs::read_to_string(format!("/proc/self/task/{tid}/status")).ok()?)
}

/// Whether `tid` is parked: the main thread (tid == pid) asleep, another
/// thread waiting on a condition variable of the executable's.
fn parked(tid: u32, ranges: &[(u64, u64)]) -> bool {
    let Ok(line) = fs::read_to_string(format!("/proc/self/task/{tid}/syscall")) else {
        return false;
    };
    if tid == std::process::id() {
        asleep(&line)
    } else {
        idle_in(&line, libc::SYS_futex as u64, ranges)
    }
}

/// Waits for a moment when collectd's main thread is asleep and, if that
/// comes within `readers_for`, every read thread is between reads too;
/// returns the snapshot (switch counts read before the states). Err after
/// `timeout` without the main thread asleep, or if /proc cannot tell.
pub fn parked_moment(timeout: Duration, readers_for: Duration) -> Result<Parked, String> {
    let (ranges, readers) = found().as_ref().map_err(|e| e.clone())?;
    let main = std::process::id();
    let start = Instant::now();
    let mut pause = Duration::from_micros(100);
    loop {
        let with_readers = start.elapsed() < readers_for;
        let tids: Vec<u32> = std::iter::once(main)
            .chain(readers.iter().copied().filter(|_| with_readers))
            .collect();
        let counts: Vec<(u32, Option<u64>)> =
            tids.iter().map(|&t| (t, snapshot_switches(t))).collect();
        if counts
            .iter()
            .all(|&(t, c)| c.is_some() && parked(t, ranges))
        {
            return Ok(Parked(
                counts
                    .into_iter()
                    .map(|(t, c)| (t, c.unwrap_or(0)))
                    .collect(),
            ));
        }
        if start.elapsed() >= timeout {
            return Err(format!(
                "collectd's main thread was never seen asleep within {} s",
                timeout.as_secs_f64()
            ));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(5));
    }
}

fn fallback_wait(d: Duration, why: String) -> Quiet {
    std::thread::sleep(d);
    Quiet::Unknown(why)
}

/// A thread's name ("reader#N"), or its id when it has none.
pub fn thread_name(tid: u32) -> String {
    fs::read_to_string(format!("/proc/self/task/{tid}/comm"))
        .map(|c| c.trim_end().to_string())
        .unwrap_or_else(|_| format!("thread {tid}"))
}

/// Ids of the threads whose name starts with `prefix` (collectd's read
/// threads are "reader#N", its write threads "writer#N").
pub fn threads_named(task_dir: &Path, prefix: &str) -> std::io::Result<Vec<u32>> {
    let mut tids = Vec::new();
    for e in fs::read_dir(task_dir)? {
        let e = e?;
        let Some(tid) = e.file_name().to_str().and_then(|t| t.parse::<u32>().ok()) else {
            continue;
        };
        let comm = fs::read_to_string(e.path().join("comm")).unwrap_or_default();
        if comm.starts_with(prefix) {
            tids.push(tid);
        }
    }
    Ok(tids)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPS: &str = "\
5654b75b7000-5654b75be000 r--p 00000000 fe:00 9125889                    /usr/sbin/collectd
5654b75be000-5654b75d5000 r-xp 00007000 fe:00 9125889                    /usr/sbin/collectd
5654b75ed000-5654b75ee000 r--p 00035000 fe:00 9125889                    /usr/sbin/collectd
5654b75ee000-5654b75ef000 rw-p 00036000 fe:00 9125889                    /usr/sbin/collectd
5654b75ef000-5654b75f1000 rw-p 00000000 00:00 0 
5654b8000000-5654b8100000 rw-p 00000000 00:00 0                          [heap]
7f9971000000-7f9971100000 rw-p 00000000 00:00 0 
";

    #[test]
    fn sleep_and_switch_counts_from_proc() {
        assert!(asleep("230 0x1 0x0 0x7ffc 0x7ffc 0x0 0x0 0x7ffc 0x7f"));
        assert!(asleep("35 0x7ffc 0x7ffc 0x0 0x0 0x0 0x0 0x7ffc 0x7f"));
        assert!(!asleep("202 0x5654b75ee488 0x189 0x0"));
        assert!(!asleep("running"));
        let status =
            "Name:\tcollectd\nvoluntary_ctxt_switches:\t12\nnonvoluntary_ctxt_switches:\t3\n";
        assert_eq!(switches(status), Some(15));
        assert_eq!(switches("Name:\tx\nvoluntary_ctxt_switches:\t12\n"), None);
    }

    #[test]
    fn finds_data_and_bss_of_the_executable() {
        let r = exe_data_ranges(MAPS, "/usr/sbin/collectd");
        assert_eq!(
            r,
            [
                (0x5654b75ee000, 0x5654b75ef000),
                (0x5654b75ef000, 0x5654b75f1000)
            ]
        );
        assert!(exe_data_ranges(MAPS, "/other").is_empty());
    }

    #[test]
    fn tells_a_waiting_reader_from_a_busy_one() {
        let r = exe_data_ranges(MAPS, "/usr/sbin/collectd");
        // pthread_cond_timedwait on collectd's read_cond
        let idle = "202 0x5654b75ee488 0x189 0x0 0x7f9971ffae60 0x0 0xffffffff 0x7f 0x7f";
        assert!(idle_in(idle, 202, &r));
        // an untimed wait on a static in the bss
        assert!(idle_in(
            "202 0x5654b75f0010 0x89 0x0 0x0 0x0 0x0 0x0 0x0",
            202,
            &r
        ));
        // a contended mutex of collectd's (inside a plugin's dispatch)
        assert!(!idle_in(
            "202 0x5654b75ee400 0x80 0x2 0x0 0x0 0x0 0x0 0x0",
            202,
            &r
        ));
        // a condition variable of a plugin's own (heap)
        assert!(!idle_in(
            "202 0x5654b8000100 0x189 0x0 0x0 0x0 0x0 0x0 0x0",
            202,
            &r
        ));
        // another syscall, running, or nothing readable
        assert!(!idle_in("7 0x5654b75ee488 0x189 0x0", 202, &r));
        assert!(!idle_in("running", 202, &r));
        assert!(!idle_in("", 202, &r));
    }
}
