//! Learning about shutdown before collectd starts tearing itself down.
//!
//! collectd's shutdown callbacks run last, after its read and write machinery
//! is gone; a control operation racing with that touches freed lists. So we
//! chain collectd's SIGTERM and SIGINT handlers: ours marks the control queue
//! as stopping, waits (up to 5 s) until no control job runs any more, and
//! only then calls collectd's handler, which starts the teardown. Our own
//! threads block these signals, so the handler never runs on the control
//! thread it waits for.

use std::ffi::{c_int, c_void};

use once_cell::sync::OnceCell;

use super::APP;

/// How long the handler waits for a running control job, in milliseconds.
const STOP_WAIT_MS: u32 = 5000;

static PREV_TERM: OnceCell<libc::sigaction> = OnceCell::new();
static PREV_INT: OnceCell<libc::sigaction> = OnceCell::new();

extern "C" fn on_signal(sig: c_int, info: *mut libc::siginfo_t, ctx: *mut c_void) {
    // Only async-signal-safe work here: atomic loads and stores, and a call
    // to the handler that was installed before ours.
    if let Some(app) = APP.get() {
        app.control.begin_shutdown();
        let pause = libc::timespec {
            tv_sec: 0,
            tv_nsec: 1_000_000,
        };
        for _ in 0..STOP_WAIT_MS {
            if app.control.try_stop() {
                break;
            }
            // SAFETY: nanosleep is async-signal-safe; `pause` is valid.
            unsafe { libc::nanosleep(&pause, std::ptr::null_mut()) };
        }
    }
    let prev = match sig {
        libc::SIGTERM => PREV_TERM.get(),
        libc::SIGINT => PREV_INT.get(),
        _ => None,
    };
    let Some(prev) = prev else { return };
    let handler = prev.sa_sigaction;
    if handler == libc::SIG_IGN {
        return;
    }
    if handler == libc::SIG_DFL {
        // SAFETY: signal() and raise() are async-signal-safe; restoring the
        // default disposition and re-raising terminates as it would have.
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
            libc::raise(sig);
        }
        return;
    }
    if prev.sa_flags & libc::SA_SIGINFO != 0 {
        // SAFETY: with SA_SIGINFO the previous handler has this signature.
        let f: extern "C" fn(c_int, *mut libc::siginfo_t, *mut c_void) =
            unsafe { std::mem::transmute(handler) };
        f(sig, info, ctx);
    } else {
        // SAFETY: without SA_SIGINFO the previous handler is a plain
        // `void (*)(int)`.
        let f: extern "C" fn(c_int) = unsafe { std::mem::transmute(handler) };
        f(sig);
    }
}

/// Blocks SIGTERM and SIGINT in the calling thread (one of ours), so that
/// collectd's threads handle them.
pub fn block_in_this_thread() {
    // SAFETY: a sigset_t on our stack, filled by sigemptyset/sigaddset, and
    // pthread_sigmask on the calling thread only.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// Installs the chained handlers (once per process).
pub fn install() {
    if PREV_TERM.get().is_some() {
        return;
    }
    for (sig, slot) in [(libc::SIGTERM, &PREV_TERM), (libc::SIGINT, &PREV_INT)] {
        // SAFETY: sigaction is plain data; zero is a valid initial value.
        let mut new: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
        // Read the previous handler first, so that ours never runs without it.
        // SAFETY: a NULL new action only queries the current one into `old`.
        if unsafe { libc::sigaction(sig, std::ptr::null(), &mut old) } != 0 {
            log::warn!("cannot read the handler of signal {sig}; shutdown is not chained");
            continue;
        }
        let _ = slot.set(old);
        new.sa_sigaction = on_signal as *const () as usize;
        // Keep the previous handler's restart behaviour and mask.
        new.sa_flags = libc::SA_SIGINFO | (old.sa_flags & libc::SA_RESTART);
        new.sa_mask = old.sa_mask;
        // SAFETY: `new` is fully initialized and on_signal is async-signal-safe.
        if unsafe { libc::sigaction(sig, &new, std::ptr::null_mut()) } != 0 {
            log::warn!("cannot chain signal {sig}; shutdown is not chained");
        }
    }
}
