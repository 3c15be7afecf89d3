//! collectd's meta data list as laid out in collectd 5.x
//! (src/utils/metadata/meta_data.c, private to collectd), and the two
//! things the write path does with a list: compare it with the meta data a
//! metric holds, and convert it. Nothing here calls collectd, so unit-test
//! builds compile it too (from lib.rs); `host::meta` declares the object
//! around the list with its lock, and checks this layout against the
//! running collectd at start-up.

use std::ffi::{c_char, c_int, CStr};

use crate::model::{Meta, MetaValue};

/// collectd's `meta_value_t` type codes (meta_data.h); `host::meta` checks
/// them against the generated bindings when the plugin is built.
pub const MD_TYPE_STRING: u32 = 1;
pub const MD_TYPE_SIGNED_INT: u32 = 2;
pub const MD_TYPE_UNSIGNED_INT: u32 = 3;
pub const MD_TYPE_DOUBLE: u32 = 4;
pub const MD_TYPE_BOOLEAN: u32 = 5;

/// collectd's `meta_value_t`.
#[repr(C)]
#[derive(Clone, Copy)]
pub union RawValue {
    pub string: *mut c_char,
    pub signed: i64,
    pub unsigned: u64,
    pub double: f64,
    /// `bool mv_boolean`: its one byte, read as a byte (a C bool written by
    /// collectd is 0 or 1, but reading it as u8 needs no such promise).
    pub boolean: u8,
}

/// collectd's `meta_entry_t`.
#[repr(C)]
pub struct Entry {
    pub key: *mut c_char,
    pub value: RawValue,
    pub type_: c_int,
    pub next: *mut Entry,
}

// The declared layout has C's offsets on this target (checked when the
// plugin is built; the check against collectd itself runs at start-up).
const _: () = {
    assert!(std::mem::size_of::<RawValue>() == 8);
    assert!(std::mem::offset_of!(Entry, value) == 8);
    assert!(std::mem::offset_of!(Entry, type_) == 16);
    assert!(std::mem::offset_of!(Entry, next) == 24);
};

/// The entries from `e` on, one at a time.
///
/// # Safety
/// `e` is NULL or an entry of a list whose lock is held for `'a`.
unsafe fn entries<'a>(mut e: *const Entry) -> impl Iterator<Item = &'a Entry> {
    std::iter::from_fn(move || {
        // SAFETY: NULL or a valid entry per this function's contract; its
        // `next` is NULL or the next valid entry.
        let entry = unsafe { e.as_ref::<'a>() }?;
        e = entry.next;
        Some(entry)
    })
}

/// # Safety
/// `e` is a valid entry of a locked list.
pub unsafe fn key(e: &Entry) -> &[u8] {
    if e.key.is_null() {
        return b"";
    }
    // SAFETY: collectd's keys are NUL-terminated strings owned by the entry.
    unsafe { CStr::from_ptr(e.key) }.to_bytes()
}

/// Whether the C string `p` (NULL: never equal) is exactly `s`, read in
/// one pass (strncmp, then the byte after), with no strlen first.
///
/// # Safety
/// `p` is NULL or a NUL-terminated string.
#[inline(always)]
unsafe fn c_str_is(p: *const c_char, s: &[u8]) -> bool {
    if p.is_null() {
        return false;
    }
    // SAFETY: strncmp reads `p` up to its NUL or s.len() bytes, and `s` for
    // s.len() bytes (it stops early at a NUL in either). Equal means `p`
    // has s.len() bytes before its NUL (`s`, text from a C string, has no
    // NUL), so p[s.len()] is inside the string: its NUL if it ends there.
    unsafe { libc::strncmp(p, s.as_ptr().cast::<c_char>(), s.len()) == 0 && *p.add(s.len()) == 0 }
}

/// Whether the list from `head` on is `same`: as many entries, in the same
/// order, each of the same type, key and value (a double by its bits). One
/// pass over both: the type and a number are a load and a compare each; a
/// key or a string value is read once, bounded by the stored text's length
/// (`c_str_is`). An entry `convert_list` would skip (a type collectd does
/// not create, a NULL string) makes the lists differ: such a list is
/// converted again each time, which is slower, never wrong.
///
/// # Safety
/// `head` is NULL or the first entry of a list that is not changed or freed
/// during the call (collectd's lock held, or a list that only this thread
/// reaches: see `host::meta`).
#[inline(always)]
pub unsafe fn equals(head: *const Entry, same: &[(String, MetaValue)]) -> bool {
    let mut e = head;
    for (k, v) in same {
        // SAFETY: NULL or a valid entry per this function's contract (and
        // then its `next` is NULL or the next valid entry).
        let Some(entry) = (unsafe { e.as_ref() }) else {
            return false;
        };
        let t = entry.type_ as u32;
        // SAFETY: each arm reads the union member that `type_` names, after
        // checking that it names it; a string member is NULL or a
        // NUL-terminated string owned by the entry, and so is the key.
        let same_entry = unsafe {
            (match v {
                MetaValue::String(s) => {
                    t == MD_TYPE_STRING && c_str_is(entry.value.string, s.as_bytes())
                }
                MetaValue::Signed(s) => t == MD_TYPE_SIGNED_INT && entry.value.signed == *s,
                MetaValue::Unsigned(u) => t == MD_TYPE_UNSIGNED_INT && entry.value.unsigned == *u,
                MetaValue::Double(d) => {
                    t == MD_TYPE_DOUBLE && entry.value.double.to_bits() == d.to_bits()
                }
                MetaValue::Boolean(b) => t == MD_TYPE_BOOLEAN && (entry.value.boolean != 0) == *b,
            }) && c_str_is(entry.key, k.as_bytes())
        };
        if !same_entry {
            return false;
        }
        e = entry.next;
    }
    e.is_null()
}

/// # Safety
/// `head` is NULL or the first entry of a locked list.
pub unsafe fn convert_list(head: *const Entry) -> Meta {
    let mut out = Meta::new();
    // SAFETY: per this function's contract.
    for e in unsafe { entries(head) } {
        // SAFETY: as in `equals`.
        let value = unsafe {
            match e.type_ as u32 {
                MD_TYPE_STRING if !e.value.string.is_null() => MetaValue::String(
                    CStr::from_ptr(e.value.string)
                        .to_string_lossy()
                        .into_owned(),
                ),
                MD_TYPE_SIGNED_INT => MetaValue::Signed(e.value.signed),
                MD_TYPE_UNSIGNED_INT => MetaValue::Unsigned(e.value.unsigned),
                MD_TYPE_DOUBLE => MetaValue::Double(e.value.double),
                MD_TYPE_BOOLEAN => MetaValue::Boolean(e.value.boolean != 0),
                // What the public API skips too (see convert::meta_data).
                _ => continue,
            }
        };
        // SAFETY: e is an entry of the locked list.
        let k = unsafe { key(e) };
        out.push((String::from_utf8_lossy(k).into_owned(), value));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;

    /// A list laid out as collectd's, built in Rust (no collectd needed):
    /// the entries point at each other and at `texts`, which outlive them.
    struct List {
        _texts: Vec<CString>,
        entries: Box<[Entry]>,
    }

    enum V {
        S(&'static str),
        I(i64),
        U(u64),
        D(f64),
        B(bool),
        /// A NULL string member.
        NullString,
        /// A type collectd does not create.
        Unknown,
    }

    fn list(items: &[(Option<&str>, V)]) -> List {
        let mut texts = Vec::new();
        let mut text = |s: &str| {
            let c = CString::new(s).unwrap();
            let p = c.as_ptr().cast_mut();
            texts.push(c);
            p
        };
        let mut entries: Box<[Entry]> = items
            .iter()
            .map(|(k, v)| {
                let key = k.map_or(std::ptr::null_mut(), &mut text);
                let (value, t) = match v {
                    V::S(s) => (RawValue { string: text(s) }, MD_TYPE_STRING),
                    V::I(i) => (RawValue { signed: *i }, MD_TYPE_SIGNED_INT),
                    V::U(u) => (RawValue { unsigned: *u }, MD_TYPE_UNSIGNED_INT),
                    V::D(d) => (RawValue { double: *d }, MD_TYPE_DOUBLE),
                    V::B(b) => (
                        RawValue {
                            unsigned: u64::from(*b),
                        },
                        MD_TYPE_BOOLEAN,
                    ),
                    V::NullString => (
                        RawValue {
                            string: std::ptr::null_mut(),
                        },
                        MD_TYPE_STRING,
                    ),
                    V::Unknown => (RawValue { unsigned: 0 }, 99),
                };
                Entry {
                    key,
                    value,
                    type_: t as c_int,
                    next: std::ptr::null_mut(),
                }
            })
            .collect();
        // The boxed slice does not move from here on.
        let base = entries.as_mut_ptr();
        for i in 1..entries.len() {
            // SAFETY: i is in bounds.
            entries[i - 1].next = unsafe { base.add(i) };
        }
        List {
            _texts: texts,
            entries,
        }
    }

    fn head(l: &List) -> *const Entry {
        l.entries
            .first()
            .map_or(std::ptr::null(), |e| e as *const Entry)
    }

    fn meta(items: &[(&str, MetaValue)]) -> Meta {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    fn s(v: &str) -> MetaValue {
        MetaValue::String(v.into())
    }

    fn eq(l: &List, m: &Meta) -> bool {
        // SAFETY: the list is valid and nothing else touches it.
        unsafe { equals(head(l), m) }
    }

    fn network() -> List {
        list(&[
            (Some("network:received"), V::B(true)),
            (Some("network:ip_address"), V::S("127.0.0.1")),
        ])
    }

    #[test]
    fn equal_lists() {
        let m = meta(&[
            ("network:received", MetaValue::Boolean(true)),
            ("network:ip_address", s("127.0.0.1")),
        ]);
        assert!(eq(&network(), &m));
        assert!(eq(&list(&[]), &meta(&[])));
        let all = list(&[
            (Some("s"), V::S("")),
            (Some(""), V::I(-5)),
            (Some("u"), V::U(u64::MAX)),
            (Some("d"), V::D(f64::NAN)),
            (Some("b"), V::B(false)),
        ]);
        let m = meta(&[
            ("s", s("")),
            ("", MetaValue::Signed(-5)),
            ("u", MetaValue::Unsigned(u64::MAX)),
            ("d", MetaValue::Double(f64::NAN)),
            ("b", MetaValue::Boolean(false)),
        ]);
        assert!(eq(&all, &m), "a NaN equals itself by its bits");
    }

    #[test]
    fn different_lengths() {
        let m = meta(&[("network:received", MetaValue::Boolean(true))]);
        assert!(!eq(&network(), &m), "one entry more in collectd's list");
        let m = meta(&[
            ("network:received", MetaValue::Boolean(true)),
            ("network:ip_address", s("127.0.0.1")),
            ("x", MetaValue::Signed(1)),
        ]);
        assert!(!eq(&network(), &m), "one entry fewer");
        assert!(!eq(&list(&[]), &meta(&[("x", MetaValue::Signed(1))])));
        assert!(!eq(&network(), &meta(&[])));
    }

    #[test]
    fn different_keys() {
        let v = || MetaValue::Boolean(true);
        let l = list(&[(Some("network:received"), V::B(true))]);
        assert!(eq(&l, &meta(&[("network:received", v())])));
        for k in [
            "network:receivee",
            "network:receive",
            "network:received:",
            "",
            "Network:received",
        ] {
            assert!(!eq(&l, &meta(&[(k, v())])), "{k:?}");
        }
        let null_key = list(&[(None, V::B(true))]);
        assert!(!eq(&null_key, &meta(&[("", v())])), "a NULL key");
    }

    #[test]
    fn different_values() {
        let l = network();
        let with = |b: MetaValue, ip: MetaValue| {
            meta(&[("network:received", b), ("network:ip_address", ip)])
        };
        let t = || MetaValue::Boolean(true);
        assert!(!eq(&l, &with(MetaValue::Boolean(false), s("127.0.0.1"))));
        for ip in ["127.0.0.2", "127.0.0.", "127.0.0.10", ""] {
            assert!(!eq(&l, &with(t(), s(ip))), "{ip:?}");
        }
        // The same number under another type.
        let n = list(&[(Some("n"), V::U(1))]);
        assert!(eq(&n, &meta(&[("n", MetaValue::Unsigned(1))])));
        assert!(!eq(&n, &meta(&[("n", MetaValue::Signed(1))])));
        assert!(!eq(&n, &meta(&[("n", MetaValue::Boolean(true))])));
        assert!(!eq(&n, &meta(&[("n", s("1"))])));
        let d = list(&[(Some("d"), V::D(0.0))]);
        assert!(eq(&d, &meta(&[("d", MetaValue::Double(0.0))])));
        assert!(!eq(&d, &meta(&[("d", MetaValue::Double(-0.0))])));
        assert!(!eq(&d, &meta(&[("d", MetaValue::Unsigned(0))])));
        let i = list(&[(Some("i"), V::I(-1))]);
        assert!(!eq(&i, &meta(&[("i", MetaValue::Signed(1))])));
        assert!(!eq(&i, &meta(&[("i", MetaValue::Unsigned(u64::MAX))])));
    }

    #[test]
    fn order_matters() {
        let m = meta(&[
            ("network:ip_address", s("127.0.0.1")),
            ("network:received", MetaValue::Boolean(true)),
        ]);
        assert!(!eq(&network(), &m));
    }

    #[test]
    fn entries_convert_list_skips_never_equal() {
        let l = list(&[(Some("s"), V::NullString)]);
        assert!(!eq(&l, &meta(&[("s", s(""))])));
        assert!(!eq(&l, &meta(&[])));
        let l = list(&[(Some("x"), V::Unknown)]);
        assert!(!eq(&l, &meta(&[("x", MetaValue::Unsigned(0))])));
        assert!(!eq(&l, &meta(&[])));
    }

    #[test]
    fn converted_list_equals_itself() {
        let l = list(&[
            (Some("network:received"), V::B(true)),
            (Some("network:ip_address"), V::S("::1")),
            (Some("i"), V::I(i64::MIN)),
            (Some("d"), V::D(-0.15625)),
        ]);
        // SAFETY: the list is valid and nothing else touches it.
        let m = unsafe { convert_list(head(&l)) };
        assert_eq!(m.len(), 4);
        assert!(eq(&l, &m));
    }

    #[test]
    fn c_str_is_reads_to_the_nul() {
        let c = CString::new("abc").unwrap();
        // SAFETY: a valid C string, or NULL.
        unsafe {
            assert!(c_str_is(c.as_ptr(), b"abc"));
            assert!(!c_str_is(c.as_ptr(), b"ab"));
            assert!(!c_str_is(c.as_ptr(), b"abcd"));
            assert!(!c_str_is(c.as_ptr(), b"abd"));
            assert!(!c_str_is(c.as_ptr(), b""));
            assert!(!c_str_is(std::ptr::null(), b""));
        }
    }
}
