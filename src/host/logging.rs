//! Logging into collectd: a `log` backend that calls plugin_log with a fixed
//! "%s" format (a message is never a format string), and a panic hook that
//! reports the panic's location through the same path.

use std::ffi::{c_int, CString};

use crate::ffi;

/// Sends one line to collectd's log at `level` (LOG_ERR, LOG_WARNING, ...).
pub fn plugin_log(level: u32, msg: &str) {
    let line = format!("rest: {msg}");
    // Interior NULs would cut the message short: replace them.
    let c = CString::new(line.replace('\0', "\\0")).unwrap_or_default();
    // SAFETY: both pointers are valid NUL-terminated strings for the call;
    // the format is a literal "%s" consuming exactly one `char *` argument.
    unsafe { ffi::plugin_log(level as c_int, c"%s".as_ptr(), c.as_ptr()) };
}

struct CollectdLogger;

impl log::Log for CollectdLogger {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &log::Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let level = match r.level() {
            log::Level::Error => ffi::LOG_ERR,
            log::Level::Warn => ffi::LOG_WARNING,
            log::Level::Info => ffi::LOG_INFO,
            log::Level::Debug | log::Level::Trace => ffi::LOG_DEBUG,
        };
        plugin_log(level, &r.args().to_string());
    }

    fn flush(&self) {}
}

static LOGGER: CollectdLogger = CollectdLogger;

/// Installs the log backend and the panic hook (once per process).
pub fn install() {
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(log::LevelFilter::Info);
    }
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| info.payload().downcast_ref::<String>().map(|s| s.as_str()))
            .unwrap_or("(no message)");
        let place = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_else(|| "unknown place".into());
        plugin_log(
            ffi::LOG_ERR,
            &format!("panic at {place}: {msg} (caught; collectd goes on)"),
        );
    }));
}
