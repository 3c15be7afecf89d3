//! collectd-rest: a collectd plugin (rest.so) that serves a REST API from
//! inside a running collectd.
//!
//! Layout (see docs/ARCHITECTURE.md):
//! - `ffi`: bindings generated from the installed collectd headers;
//! - `host`: the only code that calls into collectd (callbacks, conversions,
//!   log bridge, control thread, signals);
//! - `model`, `config`, `store`, `control`, `app`: FFI-free logic;
//! - `http`: the server, router and handlers (no unsafe code).
//!
//! `ffi` and `host` are left out of unit-test builds: a test binary is not
//! loaded by collectd, so collectd's symbols are not there to link against.
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod app;
pub mod auth;
/// The write path's coarse monotonic clock, in unit-test builds too.
#[path = "host/clock.rs"]
pub mod clock;
pub mod config;
pub mod control;
#[cfg(not(test))]
pub mod ffi;
/// CPU hints (prefetch), in unit-test builds too.
#[path = "host/hint.rs"]
mod hint;
#[cfg(not(test))]
mod host;
pub mod http;
/// collectd's meta data list read in place (layout, comparison,
/// conversion), in unit-test builds too.
#[path = "host/meta_list.rs"]
mod meta_list;
pub mod model;
/// recv(2) without waiting, for the connection threads' busy poll; in
/// unit-test builds too.
#[path = "host/nowait.rs"]
mod nowait;
pub mod plugins;
pub mod readers;
pub mod rules;
pub mod state;
pub mod store;
pub mod tls;
pub mod writers;
