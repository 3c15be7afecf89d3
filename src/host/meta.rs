//! Reading a value list's meta data on the write path.
//!
//! collectd's meta data API (meta_data.h) costs more than write_prometheus's
//! whole write callback: `meta_data_toc` strdup()s every key into a new
//! array, and each getter takes the lock, searches the list and strdup()s
//! string values. The write callback reads the meta data of every value, so
//! it walks collectd's list directly instead, comparing it with what the
//! metric holds; it converts only a list that differs (a new metric, or a
//! metric whose meta data changed).
//!
//! The comparison, done for every value, reads the list without taking the
//! object's lock (57 instructions of the write path, a quarter of the
//! comparison, measured with callgrind): the object belongs to the thread
//! that runs the write callback, so the lock would exclude nobody. In
//! collectd 5.12 (plugin.c) a dispatched value list reaches the write callbacks as the
//! write queue's own copy (`plugin_value_list_clone` in plugin.c clones the
//! meta data too), which one write thread dequeues, runs through the filter
//! chains and every write callback in turn, and frees afterwards; a direct
//! `plugin_write()` (the filter chain's write target, the language
//! bindings) passes its caller's value list, which lives on the caller's
//! thread. Converting a list (rare) still takes the lock.
//!
//! The list's layout is private to collectd (src/utils/metadata/meta_data.c;
//! unchanged since collectd 5.0, 2010); it is not in the installed headers,
//! so bindgen cannot give it. It is declared here (the object and its lock)
//! and in `meta_list` (the entries, with the comparison and conversion,
//! unit-tested there), and *checked* on the running collectd at start-up:
//! `check_layout_now` builds a meta data object through the public API, walks it with this layout, and compares
//! the result with what the public API reads back. If they differ (another
//! collectd, another layout), the public API is used for every value, as
//! before, and the log says so.

use std::cell::RefCell;
use std::ffi::CString;
use std::sync::Arc;

use once_cell::sync::Lazy;

use super::convert;
use crate::ffi;
use crate::meta_list::{self, convert_list, equals, key, Entry};
use crate::model::{Meta, MetaSource};

// meta_list's type codes are collectd's (checked when the plugin is built).
const _: () = {
    assert!(meta_list::MD_TYPE_STRING == ffi::MD_TYPE_STRING);
    assert!(meta_list::MD_TYPE_SIGNED_INT == ffi::MD_TYPE_SIGNED_INT);
    assert!(meta_list::MD_TYPE_UNSIGNED_INT == ffi::MD_TYPE_UNSIGNED_INT);
    assert!(meta_list::MD_TYPE_DOUBLE == ffi::MD_TYPE_DOUBLE);
    assert!(meta_list::MD_TYPE_BOOLEAN == ffi::MD_TYPE_BOOLEAN);
};

/// collectd's `struct meta_data_s`.
#[repr(C)]
struct MetaData {
    head: *mut Entry,
    lock: libc::pthread_mutex_t,
}

/// Whether the layout above matches the running collectd (checked once).
static LAYOUT_OK: Lazy<bool> = Lazy::new(|| {
    let ok = check_layout();
    if ok {
        log::info!("meta data: reading collectd's list directly (layout checked)");
    } else {
        log::warn!(
            "meta data: collectd's list does not have the layout this plugin knows; \
             reading it through meta_data_toc and the getters (slower write path)"
        );
    }
    ok
});

/// Runs the layout check (once; later calls do nothing).
pub fn check_layout_now() {
    Lazy::force(&LAYOUT_OK);
}

thread_local! {
    /// The meta data this write thread converted last.
    static LAST: RefCell<Option<Arc<Meta>>> = const { RefCell::new(None) };
}

/// The meta data of a value list that collectd passed to a write callback,
/// compared and read in place (see model::MetaRef).
pub struct InCollectd(*mut ffi::meta_data_t);

impl InCollectd {
    /// # Safety
    /// `md` is the valid meta_data_t of a value list collectd passed to a
    /// write callback that is still running on this thread (see the module
    /// notes: no other thread holds it meanwhile), and the result is
    /// dropped before the callback returns.
    pub unsafe fn new(md: *mut ffi::meta_data_t) -> InCollectd {
        InCollectd(md)
    }
}

impl InCollectd {
    /// The list, converted; None if it equals `same_as`: walked in place
    /// when the layout checked out, else through collectd's API.
    fn read(&self, same_as: Option<&Meta>) -> Option<Meta> {
        if *LAYOUT_OK {
            // SAFETY: valid (InCollectd::new's contract), checked layout.
            unsafe { walk(self.0.cast::<MetaData>(), same_as) }
        } else {
            // SAFETY: valid per InCollectd::new's contract.
            unsafe { convert::meta_data(self.0, same_as) }
        }
    }
}

impl MetaSource for InCollectd {
    /// The write path's question for every value of a known metric: one
    /// pass over collectd's list, converting nothing.
    fn equals(&self, m: &Meta) -> bool {
        if *LAYOUT_OK {
            // SAFETY: valid, and held by no other thread for the call
            // (InCollectd::new's contract), checked layout.
            unsafe { owned_equals(self.0.cast::<MetaData>(), m) }
        } else {
            // SAFETY: valid per InCollectd::new's contract.
            unsafe { convert::meta_data(self.0, Some(m)) }.is_none()
        }
    }

    /// Shared with the meta data this thread converted last when equal:
    /// the values of one network peer all carry the same
    /// `network:received` and `network:ip_address`, so its new metrics
    /// share one copy.
    fn to_shared(&self) -> Arc<Meta> {
        LAST.with(|last| {
            let mut last = last.borrow_mut();
            match (self.read(last.as_deref()), last.as_ref()) {
                (None, Some(same)) => same.clone(),
                (Some(m), _) => {
                    let m = Arc::new(m);
                    *last = Some(m.clone());
                    m
                }
                // `read` returns None only when the list equals `last`.
                (None, None) => Arc::new(Vec::new()),
            }
        })
    }
}

/// Holds collectd's lock of one meta data object.
struct Locked(*mut MetaData);

impl Locked {
    /// # Safety
    /// `md` is a valid meta data object with the checked layout.
    unsafe fn new(md: *mut MetaData) -> Locked {
        // SAFETY: the mutex collectd initialised in meta_data_create; its
        // functions take the same lock around every access.
        unsafe { libc::pthread_mutex_lock(&raw mut (*md).lock) };
        Locked(md)
    }
}

impl Drop for Locked {
    fn drop(&mut self) {
        // SAFETY: locked by `new` on this thread.
        unsafe { libc::pthread_mutex_unlock(&raw mut (*self.0).lock) };
    }
}

/// Whether the list equals `same`, read without collectd's lock.
///
/// # Safety
/// `md` is a valid meta data object with the checked layout, which no
/// other thread uses during the call (so no entry is added, changed or
/// freed meanwhile).
#[inline(always)]
unsafe fn owned_equals(md: *const MetaData, same: &Meta) -> bool {
    // SAFETY: per this function's contract.
    unsafe { equals((*md).head, same) }
}

/// Reads the list; None if it equals `same_as` (then nothing is converted).
///
/// # Safety
/// `md` is a valid meta data object with the checked layout.
unsafe fn walk(md: *mut MetaData, same_as: Option<&Meta>) -> Option<Meta> {
    // SAFETY: md is valid per this function's contract.
    let _lock = unsafe { Locked::new(md) };
    // SAFETY: the lock is held, so no entry is added, changed or freed.
    let head = unsafe { (*md).head };
    if let Some(same) = same_as {
        // SAFETY: as above.
        if unsafe { equals(head, same) } {
            return None;
        }
    }
    // SAFETY: as above.
    Some(unsafe { convert_list(head) })
}

/// Builds a meta data object through collectd's API, then reads it both
/// ways; true if the direct walk reads exactly what the API reads.
fn check_layout() -> bool {
    // SAFETY: collectd's meta_data_create allocates an empty object (or
    // returns NULL), destroyed below.
    let md = unsafe { ffi::meta_data_create() };
    if md.is_null() {
        return false;
    }
    let name = |k: &str| CString::new(format!("rest:layout-check:{k}")).unwrap_or_default();
    let (ks, ki, ku, kd, kb) = (name("s"), name("i"), name("u"), name("d"), name("b"));
    let value = CString::new("a string of more than eight bytes").unwrap_or_default();
    // SAFETY: md is valid; keys and values are valid C strings that
    // collectd copies.
    let added = unsafe {
        ffi::meta_data_add_string(md, ks.as_ptr(), value.as_ptr()) == 0
            && ffi::meta_data_add_signed_int(md, ki.as_ptr(), -1_234_567_890_123) == 0
            && ffi::meta_data_add_unsigned_int(md, ku.as_ptr(), 0xfeed_beef_cafe) == 0
            && ffi::meta_data_add_double(md, kd.as_ptr(), -0.15625) == 0
            && ffi::meta_data_add_boolean(md, kb.as_ptr(), true) == 0
    };
    let ok = added && {
        // SAFETY: md is valid.
        let by_api = unsafe { convert::meta_data(md, None) }.unwrap_or_default();
        // A wrong layout must not be walked far: the first word must be a
        // pointer to an entry whose key pointer is the first key's text.
        // SAFETY: md is at least a pointer wide (meta_data_s begins with
        // one in every layout this could be); the remaining reads happen
        // only once it is shown to point at an entry with the right key.
        let head = unsafe { (*md.cast::<MetaData>()).head };
        // SAFETY: as above.
        let plausible = !head.is_null() && unsafe { key(&*head) } == ks.as_bytes();
        by_api.len() == 5
            && plausible
            // SAFETY: the head entry was shown to be laid out as declared;
            // md is valid and unlocked.
            && unsafe { walk(md.cast::<MetaData>(), None) }.as_ref() == Some(&by_api)
            // SAFETY: as above.
            && unsafe { walk(md.cast::<MetaData>(), Some(&by_api)) }.is_none()
    };
    // SAFETY: created above, not used after this.
    unsafe { ffi::meta_data_destroy(md) };
    ok
}
