//! A filter-chain match, "rest", in a rule of collectd's pre-cache chain
//! with the target "stop": a value it matches is dropped before collectd's
//! value cache and before every write plugin. It matches values the plugin
//! operations hold back (`crate::plugins::Hold`: those a plugin read before
//! its config and init were applied) and values the blacklist names
//! (`crate::rules::blacklist`).
//!
//! The rule is created while collectd reads its config (from
//! module_register), because collectd looks the pre-cache chain up at the
//! start of plugin_init_all. A chain of that name that collectd.conf defines
//! gets its rules appended after ours.

use std::ffi::{c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};

use super::convert::{self, field};
use super::APP;
use crate::ffi;
use crate::model::{ConfigItem, ConfigValue};

const MATCH_NAME: &std::ffi::CStr = c"rest";

unsafe extern "C" fn create(_ci: *const ffi::oconfig_item_t, _ud: *mut *mut c_void) -> c_int {
    0
}

unsafe extern "C" fn destroy(_ud: *mut *mut c_void) -> c_int {
    0
}

/// For every value collectd dispatches, while a chain holds our rule.
unsafe extern "C" fn matches(
    _ds: *const ffi::data_set_t,
    vl: *const ffi::value_list_t,
    _meta: *mut *mut ffi::notification_meta_t,
    _ud: *mut *mut c_void,
) -> c_int {
    let no = ffi::FC_MATCH_NO_MATCH as c_int;
    catch_unwind(AssertUnwindSafe(|| {
        if vl.is_null() {
            return no;
        }
        // SAFETY: collectd passes a valid value list for this call.
        let vl = unsafe { &*vl };
        // Nearly every value: no fence, not a marker, nothing held or
        // listed; four loads, with the rest out of line so that this path
        // saves no registers (callgrind: 35 instructions per value before).
        let quiet = !crate::writers::FENCE.is_active()
            && !is_marker_plugin(&vl.plugin)
            && APP
                .get()
                .is_none_or(|app| !app.plugins.hold.is_active() && app.blacklist.is_empty());
        if quiet {
            no
        } else {
            check(vl)
        }
    }))
    .unwrap_or(no)
}

/// `matches` for a value while a fence is up, plugins are held or the
/// blacklist has rules.
#[cold]
#[inline(never)]
fn check(vl: &ffi::value_list_t) -> c_int {
    let no = ffi::FC_MATCH_NO_MATCH as c_int;
    // A fence's marker (crate::writers): park this write thread until
    // the fence opens, then drop the marker.
    if crate::writers::FENCE.is_active() || is_marker_plugin(&vl.plugin) {
        if let Some(token) = crate::writers::marker_token(
            &field(&vl.plugin),
            &field(&vl.plugin_instance),
            &field(&vl.type_instance),
        ) {
            crate::writers::FENCE.park(token, crate::writers::PARK_CAP);
            return ffi::FC_MATCH_MATCHES as c_int;
        }
    }
    let Some(app) = APP.get() else { return no };
    // Both checks are one atomic load when nothing is held or listed.
    let held =
        app.plugins.hold.is_active() && app.plugins.hold.should_drop(&field(&vl.plugin), vl.time);
    let drop = held
        || (!app.blacklist.is_empty()
            && crate::rules::blacklist::matches(
                &app.blacklist,
                [
                    &field(&vl.host),
                    &field(&vl.plugin),
                    &field(&vl.plugin_instance),
                    &field(&vl.type_),
                    &field(&vl.type_instance),
                ],
            ));
    if drop {
        ffi::FC_MATCH_MATCHES as c_int
    } else {
        no
    }
}

/// Whether a value's plugin field is the markers' ("rest"): a late marker
/// of a fence that has opened is dropped too.
fn is_marker_plugin(plugin: &[std::ffi::c_char]) -> bool {
    let m = crate::writers::MARKER_PLUGIN.as_bytes();
    plugin.len() > m.len()
        && plugin[m.len()] == 0
        && plugin[..m.len()].iter().zip(m).all(|(&c, &b)| c as u8 == b)
}

fn item(key: &str, value: &str, children: Vec<ConfigItem>) -> ConfigItem {
    ConfigItem {
        key: key.into(),
        values: vec![ConfigValue::String(value.into())],
        children,
    }
}

/// Registers the match and appends our rule to the pre-cache chain.
pub fn install() {
    let proc_ = ffi::match_proc_t {
        create: Some(create),
        destroy: Some(destroy),
        match_: Some(matches),
    };
    // SAFETY: a static name and functions of this object, never unloaded.
    if unsafe { ffi::fc_register_match(MATCH_NAME.as_ptr(), proc_) } != 0 {
        log::error!(
            "cannot register the filter-chain match; loading plugins may leak early values"
        );
        return;
    }
    // SAFETY: global_option_get returns collectd's value (or NULL).
    let chain =
        unsafe { convert::cstr(ffi::global_option_get(c"PreCacheChain".as_ptr())) }.into_owned();
    let chain = if chain.is_empty() {
        "PreCache".to_string()
    } else {
        chain
    };
    let tree = item(
        "Chain",
        &chain,
        vec![item(
            "Rule",
            "rest",
            vec![
                item("Match", "rest", vec![]),
                item("Target", "stop", vec![]),
            ],
        )],
    );
    let status = convert::with_c_config(&tree, |ci| {
        // SAFETY: a complete config tree that lives for the call; collectd
        // copies what it keeps.
        unsafe { ffi::fc_configure(ci) }
    });
    if status != 0 {
        log::error!("cannot add the rest rule to the {chain} chain ({status})");
    }
}
