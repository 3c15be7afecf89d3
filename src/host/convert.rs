//! Conversions between collectd's C structures and our owned types.

use std::borrow::Cow;
use std::ffi::{c_char, c_void, CStr};
use std::mem::MaybeUninit;

use super::meta::InCollectd;
use crate::ffi;
use crate::model::{
    CdTime, ConfigItem, ConfigValue, DataSetLike, DataSource, DsType, Meta, MetaRef, MetaValue,
    Notification, RawValue, Severity, ValueListRef, MAX_NAME_LEN,
};

/// A fixed-size C char array (NUL-terminated within it, or full) as text.
/// Invalid UTF-8 is replaced (allocating only then).
pub fn field(buf: &[c_char]) -> Cow<'_, str> {
    // SAFETY: c_char and u8 have the same size and alignment; the slice
    // covers the same memory.
    let bytes: &[u8] = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast(), buf.len()) };
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    let bytes = &bytes[..end];
    // from_utf8's fast path first: from_utf8_lossy walks its chunk iterator
    // even for plain ASCII, and five fields are read for every value.
    match std::str::from_utf8(bytes) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

/// A C string pointer as text; NULL is "".
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string valid for `'a`.
pub unsafe fn cstr<'a>(p: *const c_char) -> Cow<'a, str> {
    if p.is_null() {
        Cow::Borrowed("")
    } else {
        // SAFETY: non-NULL and NUL-terminated per this function's contract.
        unsafe { CStr::from_ptr(p) }.to_string_lossy()
    }
}

fn ds_type(t: i32) -> DsType {
    match t as u32 {
        ffi::DS_TYPE_COUNTER => DsType::Counter,
        ffi::DS_TYPE_DERIVE => DsType::Derive,
        ffi::DS_TYPE_ABSOLUTE => DsType::Absolute,
        _ => DsType::Gauge,
    }
}

/// A data set as collectd passes it to a write callback.
pub struct HostDataSet<'a>(pub &'a ffi::data_set_t);

impl HostDataSet<'_> {
    fn sources(&self) -> &[ffi::data_source_t] {
        if self.0.ds.is_null() || self.0.ds_num == 0 {
            return &[];
        }
        // SAFETY: collectd's data_set_t holds `ds_num` data sources at `ds`,
        // alive at least as long as the data set we borrow.
        unsafe { std::slice::from_raw_parts(self.0.ds, self.0.ds_num) }
    }
}

impl DataSetLike for HostDataSet<'_> {
    fn type_name(&self) -> Cow<'_, str> {
        field(&self.0.type_)
    }
    fn len(&self) -> usize {
        self.sources().len()
    }
    fn ds_type(&self, i: usize) -> DsType {
        ds_type(self.sources()[i].type_)
    }
    fn source(&self, i: usize) -> DataSource {
        let s = &self.sources()[i];
        DataSource {
            name: field(&s.name).into(),
            ds_type: ds_type(s.type_),
            min: s.min,
            max: s.max,
        }
    }
}

/// The bytes of a fixed-size C char array, up to its NUL (or all of it).
#[cfg(not(target_arch = "x86_64"))]
fn field_bytes(buf: &[c_char]) -> &[u8] {
    // SAFETY: the array is readable for its length; strnlen reads no
    // further than that.
    let len = unsafe { libc::strnlen(buf.as_ptr(), buf.len()) };
    // SAFETY: c_char and u8 have the same size and alignment; `len` is at
    // most the array's length.
    unsafe { std::slice::from_raw_parts(buf.as_ptr().cast(), len) }
}

/// The size of collectd's name fields (DATA_MAX_NAME_LEN).
const FIELD: usize = 128;

/// Room for the longest identifier (five fields cut at MAX_NAME_LEN, four
/// separators) and for the 16-byte chunks `copy_field` stores past a
/// field's end.
const ID_BUF: usize = 5 * MAX_NAME_LEN + 4 + FIELD;

/// Where the write callback builds an identifier: on the stack, and not
/// cleared first (only the bytes written are read).
pub struct IdBuf(MaybeUninit<[u8; ID_BUF]>);

impl IdBuf {
    pub fn new() -> IdBuf {
        IdBuf(MaybeUninit::uninit())
    }
}

/// Copies the text of a name field (up to its NUL, or all 128 bytes) to
/// `out`, 16 bytes at a time, and returns its length: finding the end and
/// copying in one pass, where strnlen and then a copy would read it twice.
/// It may store up to a chunk past the text; later writes overwrite that.
///
/// # Safety
/// `out` is valid for writes of FIELD bytes.
#[inline(always)]
unsafe fn copy_field(field: &[c_char; FIELD], out: *mut u8) -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{
            __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_setzero_si128,
            _mm_storeu_si128,
        };
        let src = field.as_ptr().cast::<u8>();
        let mut off = 0;
        while off < FIELD {
            // SAFETY: off + 16 <= FIELD, so the load stays inside the field
            // and the store inside `out` (valid for FIELD bytes); unaligned
            // loads and stores are what loadu/storeu are for; SSE2 is part
            // of x86_64's baseline.
            let nul = unsafe {
                let chunk = _mm_loadu_si128(src.add(off).cast::<__m128i>());
                _mm_storeu_si128(out.add(off).cast::<__m128i>(), chunk);
                _mm_movemask_epi8(_mm_cmpeq_epi8(chunk, _mm_setzero_si128())) as u32
            };
            if nul != 0 {
                return off + nul.trailing_zeros() as usize;
            }
            off += 16;
        }
        FIELD
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let text = field_bytes(field);
        // SAFETY: `out` is valid for FIELD bytes, text.len() <= FIELD, and
        // `out` (our buffer) does not overlap collectd's value list.
        unsafe { std::ptr::copy_nonoverlapping(text.as_ptr(), out, text.len()) };
        text.len()
    }
}

/// Borrows a value list (with `meta`, its meta data if it has any), and
/// writes its identifier (as `ValueListRef::write_raw_identifier` would)
/// into `buf`; returns both.
///
/// # Safety
/// `vl` is a value list collectd passed to a callback that is still running.
#[inline(always)]
pub unsafe fn value_list<'a>(
    vl: &'a ffi::value_list_t,
    buf: &'a mut IdBuf,
    meta: Option<&'a InCollectd>,
) -> (ValueListRef<'a>, &'a [u8]) {
    let values: &[RawValue] = if vl.values.is_null() || vl.values_len == 0 {
        &[]
    } else {
        // SAFETY: value_t is an 8-byte union of 8-byte integers/doubles and
        // RawValue is a transparent u64; collectd guarantees `values_len`
        // values at `values` for the duration of the callback.
        unsafe { std::slice::from_raw_parts(vl.values.cast::<RawValue>(), vl.values_len) }
    };
    let out = buf.0.as_mut_ptr().cast::<u8>();
    let mut lens = [0usize; 5];
    // SAFETY: the buffer has ID_BUF >= FIELD bytes.
    lens[0] = unsafe { copy_field(&vl.host, out) };
    let mut pos = lens[0].min(MAX_NAME_LEN);
    // "/plugin", "-plugin_instance" if any, "/type", "-type_instance" if any.
    let rest = [
        (&vl.plugin, b'/', false),
        (&vl.plugin_instance, b'-', true),
        (&vl.type_, b'/', false),
        (&vl.type_instance, b'-', true),
    ];
    for (i, (field, sep, optional)) in rest.into_iter().enumerate() {
        // SAFETY: pos <= 4 * (MAX_NAME_LEN + 1), so `out + pos + 1` has at
        // least FIELD bytes of the buffer left (ID_BUF).
        let len = unsafe { copy_field(field, out.add(pos + 1)) };
        lens[i + 1] = len;
        let len = len.min(MAX_NAME_LEN);
        if len > 0 || !optional {
            // SAFETY: inside the buffer, as above.
            unsafe { out.add(pos).write(sep) };
            pos += 1 + len;
        }
    }
    // SAFETY: bytes 0..pos were all written above (each field's text and
    // the separators between them) and the buffer outlives 'a.
    let id = unsafe { std::slice::from_raw_parts(out.cast_const(), pos) };
    // SAFETY: c_char and u8 have the same size and alignment; each length
    // is at most the field's size.
    let text = |f: &'a [c_char; FIELD], len: usize| unsafe {
        std::slice::from_raw_parts(f.as_ptr().cast::<u8>(), len)
    };
    let vlr = ValueListRef {
        host: text(&vl.host, lens[0]),
        plugin: text(&vl.plugin, lens[1]),
        plugin_instance: text(&vl.plugin_instance, lens[2]),
        type_: text(&vl.type_, lens[3]),
        type_instance: text(&vl.type_instance, lens[4]),
        values,
        time: vl.time,
        interval: vl.interval,
        meta: match meta {
            Some(m) => MetaRef::InCollectd(m),
            None => MetaRef::Absent,
        },
    };
    (vlr, id)
}

/// Reads every key of a meta_data_t through collectd's API, in collectd's
/// order; None if it equals `same_as` (then nothing is converted). The write
/// path uses it only where host::meta cannot walk the list directly.
///
/// # Safety
/// `md` is a valid meta_data_t for the duration of the call.
pub(super) unsafe fn meta_data(md: *mut ffi::meta_data_t, same_as: Option<&Meta>) -> Option<Meta> {
    let mut toc: *mut *mut c_char = std::ptr::null_mut();
    // SAFETY: md is valid; meta_data_toc allocates `toc` and each key with
    // malloc/strdup and returns how many there are (or < 0 on error).
    let n = unsafe { ffi::meta_data_toc(md, &mut toc) };
    if n <= 0 || toc.is_null() {
        return match same_as {
            Some(m) if m.is_empty() => None,
            _ => Some(Vec::new()),
        };
    }
    // SAFETY: toc is an array of n key pointers (each NULL or a strdup'ed
    // string) that stays allocated until it is freed below.
    let keys: &[*mut c_char] = unsafe { std::slice::from_raw_parts(toc, n as usize) };
    // `built` stays None while every key so far equals `same_as`'s in turn;
    // the comparison reads collectd's bytes, so an equal value list
    // allocates and converts nothing.
    let mut built: Option<Meta> = None;
    let mut matched = 0;
    for &key in keys.iter().filter(|k| !k.is_null()) {
        // SAFETY: key is a valid C string from meta_data_toc; md is valid.
        let Some(value) = (unsafe { raw_meta_value(md, key) }) else {
            continue;
        };
        // SAFETY: as above.
        let name = unsafe { CStr::from_ptr(key) }.to_bytes();
        if built.is_none() {
            let equal = same_as
                .and_then(|m| m.get(matched))
                .is_some_and(|(k, v)| k.as_bytes() == name && value.equals(v));
            if equal {
                matched += 1;
                continue;
            }
            built = Some(same_as.map_or_else(Vec::new, |m| m[..matched].to_vec()));
        }
        if let Some(b) = built.as_mut() {
            b.push((String::from_utf8_lossy(name).into_owned(), value.to_value()));
        }
    }
    let out = match (built, same_as) {
        (Some(b), _) => Some(b),
        (None, Some(m)) if m.len() == matched => None,
        (None, m) => Some(m.map_or_else(Vec::new, |m| m[..matched].to_vec())),
    };
    for &key in keys {
        // SAFETY: each key was allocated by strdup in meta_data_toc (free
        // accepts NULL).
        unsafe { libc::free(key.cast::<c_void>()) };
    }
    // SAFETY: the array was allocated by meta_data_toc with calloc.
    unsafe { libc::free(toc.cast::<c_void>()) };
    out
}

/// A meta value as collectd returned it: a string stays in the copy
/// meta_data_get_string made (freed on drop) until it is compared or
/// converted.
enum RawMeta {
    String(*mut c_char),
    Signed(i64),
    Unsigned(u64),
    Double(f64),
    Boolean(bool),
}

impl RawMeta {
    /// The bytes of a string value.
    fn str_bytes(&self) -> &[u8] {
        match *self {
            // SAFETY: a non-NULL string from meta_data_get_string, alive
            // (and unchanged) until this RawMeta is dropped.
            RawMeta::String(p) => unsafe { CStr::from_ptr(p) }.to_bytes(),
            _ => &[],
        }
    }

    fn equals(&self, v: &MetaValue) -> bool {
        match (self, v) {
            (RawMeta::String(_), MetaValue::String(s)) => self.str_bytes() == s.as_bytes(),
            (RawMeta::Signed(a), MetaValue::Signed(b)) => a == b,
            (RawMeta::Unsigned(a), MetaValue::Unsigned(b)) => a == b,
            (RawMeta::Double(a), MetaValue::Double(b)) => a == b,
            (RawMeta::Boolean(a), MetaValue::Boolean(b)) => a == b,
            _ => false,
        }
    }

    fn to_value(&self) -> MetaValue {
        match *self {
            RawMeta::String(_) => {
                MetaValue::String(String::from_utf8_lossy(self.str_bytes()).into_owned())
            }
            RawMeta::Signed(v) => MetaValue::Signed(v),
            RawMeta::Unsigned(v) => MetaValue::Unsigned(v),
            RawMeta::Double(v) => MetaValue::Double(v),
            RawMeta::Boolean(v) => MetaValue::Boolean(v),
        }
    }
}

impl Drop for RawMeta {
    fn drop(&mut self) {
        if let RawMeta::String(p) = *self {
            // SAFETY: meta_data_get_string returned a strdup'ed copy that
            // only this RawMeta holds.
            unsafe { libc::free(p.cast::<c_void>()) };
        }
    }
}

/// # Safety
/// `md` is a valid meta_data_t and `key` a valid C string.
unsafe fn raw_meta_value(md: *mut ffi::meta_data_t, key: *const c_char) -> Option<RawMeta> {
    // SAFETY: md and key are valid per this function's contract; each
    // getter writes to a local of the matching type; a string getter's
    // result is a strdup'ed copy (or NULL) that RawMeta frees.
    unsafe {
        match ffi::meta_data_type(md, key) as u32 {
            ffi::MD_TYPE_STRING => {
                let mut s: *mut c_char = std::ptr::null_mut();
                if ffi::meta_data_get_string(md, key, &mut s) != 0 || s.is_null() {
                    return None;
                }
                Some(RawMeta::String(s))
            }
            ffi::MD_TYPE_SIGNED_INT => {
                let mut v = 0i64;
                (ffi::meta_data_get_signed_int(md, key, &mut v) == 0).then_some(RawMeta::Signed(v))
            }
            ffi::MD_TYPE_UNSIGNED_INT => {
                let mut v = 0u64;
                (ffi::meta_data_get_unsigned_int(md, key, &mut v) == 0)
                    .then_some(RawMeta::Unsigned(v))
            }
            ffi::MD_TYPE_DOUBLE => {
                let mut v = 0f64;
                (ffi::meta_data_get_double(md, key, &mut v) == 0).then_some(RawMeta::Double(v))
            }
            ffi::MD_TYPE_BOOLEAN => {
                let mut v = false;
                (ffi::meta_data_get_boolean(md, key, &mut v) == 0).then_some(RawMeta::Boolean(v))
            }
            _ => None,
        }
    }
}

fn severity(s: i32) -> Severity {
    match s as u32 {
        ffi::NOTIF_FAILURE => Severity::Failure,
        ffi::NOTIF_WARNING => Severity::Warning,
        _ => Severity::Okay,
    }
}

pub fn severity_to_c(s: Severity) -> i32 {
    (match s {
        Severity::Failure => ffi::NOTIF_FAILURE,
        Severity::Warning => ffi::NOTIF_WARNING,
        Severity::Okay => ffi::NOTIF_OKAY,
    }) as i32
}

/// Copies a notification and its meta list.
///
/// # Safety
/// `n` is a notification collectd passed to a callback that is still running.
pub unsafe fn notification(n: &ffi::notification_t) -> Notification {
    let mut meta = Vec::new();
    let mut m = n.meta;
    while !m.is_null() {
        // SAFETY: a non-NULL node of the notification's meta list, which
        // lives as long as the notification.
        let node = unsafe { &*m };
        // SAFETY: the union member read in each arm is the one `type_`
        // names; a string member is a valid C string owned by the node.
        let value = unsafe {
            match node.type_ {
                ffi::notification_meta_type_e_NM_TYPE_STRING => {
                    MetaValue::String(cstr(node.nm_value.nm_string).into_owned())
                }
                ffi::notification_meta_type_e_NM_TYPE_SIGNED_INT => {
                    MetaValue::Signed(node.nm_value.nm_signed_int)
                }
                ffi::notification_meta_type_e_NM_TYPE_UNSIGNED_INT => {
                    MetaValue::Unsigned(node.nm_value.nm_unsigned_int)
                }
                ffi::notification_meta_type_e_NM_TYPE_DOUBLE => {
                    MetaValue::Double(node.nm_value.nm_double)
                }
                _ => MetaValue::Boolean(node.nm_value.nm_boolean),
            }
        };
        meta.push((field(&node.name).into_owned(), value));
        m = node.next;
    }
    Notification {
        severity: severity(n.severity),
        time: n.time as CdTime,
        message: field(&n.message).into_owned(),
        host: field(&n.host).into_owned(),
        plugin: field(&n.plugin).into_owned(),
        plugin_instance: field(&n.plugin_instance).into_owned(),
        type_: field(&n.type_).into_owned(),
        type_instance: field(&n.type_instance).into_owned(),
        meta,
    }
}

/// Copies `s` into a C char array, cut to fit with a terminating NUL.
pub fn fill(dst: &mut [c_char], s: &str) {
    let n = s.len().min(dst.len().saturating_sub(1));
    for (d, b) in dst.iter_mut().zip(s.as_bytes()[..n].iter()) {
        *d = *b as c_char;
    }
    if let Some(d) = dst.get_mut(n) {
        *d = 0;
    }
}

/// Copies a configuration tree.
///
/// # Safety
/// `ci` is a valid oconfig_item_t (as passed to a config callback).
pub unsafe fn config_item(ci: &ffi::oconfig_item_t) -> ConfigItem {
    let values: &[ffi::oconfig_value_t] = if ci.values.is_null() || ci.values_num <= 0 {
        &[]
    } else {
        // SAFETY: the item holds `values_num` values at `values`.
        unsafe { std::slice::from_raw_parts(ci.values, ci.values_num as usize) }
    };
    let children: &[ffi::oconfig_item_t] = if ci.children.is_null() || ci.children_num <= 0 {
        &[]
    } else {
        // SAFETY: the item holds `children_num` children at `children`.
        unsafe { std::slice::from_raw_parts(ci.children, ci.children_num as usize) }
    };
    ConfigItem {
        // SAFETY: the key is a valid C string owned by the item.
        key: unsafe { cstr(ci.key) }.into_owned(),
        values: values
            .iter()
            .map(|v| {
                // SAFETY: the union member read in each arm is the one the
                // value's type names; strings are owned by the tree.
                unsafe {
                    match v.type_ as u32 {
                        ffi::OCONFIG_TYPE_STRING => {
                            ConfigValue::String(cstr(v.value.string).into_owned())
                        }
                        ffi::OCONFIG_TYPE_NUMBER => ConfigValue::Number(v.value.number),
                        _ => ConfigValue::Boolean(v.value.boolean != 0),
                    }
                }
            })
            .collect(),
        // SAFETY: each child is a valid item of the same tree.
        children: children.iter().map(|c| unsafe { config_item(c) }).collect(),
    }
}

/// Builds collectd's C form of a configuration tree and passes it to `f`;
/// the tree (strings and arrays) lives exactly for the call.
pub fn with_c_config<R>(item: &ConfigItem, f: impl FnOnce(*const ffi::oconfig_item_t) -> R) -> R {
    #[derive(Default)]
    struct Keep {
        strings: Vec<std::ffi::CString>,
        values: Vec<Vec<ffi::oconfig_value_t>>,
        items: Vec<Vec<ffi::oconfig_item_t>>,
    }
    fn c_str(keep: &mut Keep, s: &str) -> *mut c_char {
        let c = std::ffi::CString::new(s.replace('\0', "")).unwrap_or_default();
        // The CString's buffer does not move when the CString is moved.
        let p = c.as_ptr() as *mut c_char;
        keep.strings.push(c);
        p
    }
    fn build(keep: &mut Keep, item: &ConfigItem) -> ffi::oconfig_item_t {
        let children: Vec<ffi::oconfig_item_t> =
            item.children.iter().map(|c| build(keep, c)).collect();
        let values: Vec<ffi::oconfig_value_t> = item
            .values
            .iter()
            .map(|v| match v {
                ConfigValue::String(s) => ffi::oconfig_value_t {
                    value: ffi::oconfig_value_s__bindgen_ty_1 {
                        string: c_str(keep, s),
                    },
                    type_: ffi::OCONFIG_TYPE_STRING as i32,
                },
                ConfigValue::Number(n) => ffi::oconfig_value_t {
                    value: ffi::oconfig_value_s__bindgen_ty_1 { number: *n },
                    type_: ffi::OCONFIG_TYPE_NUMBER as i32,
                },
                ConfigValue::Boolean(b) => ffi::oconfig_value_t {
                    value: ffi::oconfig_value_s__bindgen_ty_1 {
                        boolean: i32::from(*b),
                    },
                    type_: ffi::OCONFIG_TYPE_BOOLEAN as i32,
                },
            })
            .collect();
        let node = ffi::oconfig_item_t {
            key: c_str(keep, &item.key),
            values: values.as_ptr() as *mut _,
            values_num: values.len() as i32,
            parent: std::ptr::null_mut(),
            children: children.as_ptr() as *mut _,
            children_num: children.len() as i32,
        };
        // Moving the Vecs keeps their buffers where the pointers point.
        keep.values.push(values);
        keep.items.push(children);
        node
    }
    let mut keep = Keep::default();
    let root = build(&mut keep, item);
    f(&root)
}
