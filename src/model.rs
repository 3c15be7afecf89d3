//! Owned, FFI-free forms of what collectd hands us: data sets, value lists,
//! meta data, notifications and configuration trees. `host` converts the C
//! structures into these; everything else works on these.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

/// collectd's time unit: 2^-30 seconds (cdtime_t).
pub type CdTime = u64;

const CDTIME_PER_SEC: f64 = 1_073_741_824.0;

pub fn cdtime_to_secs(t: CdTime) -> f64 {
    t as f64 / CDTIME_PER_SEC
}

/// Seconds to cdtime_t; negative and non-finite inputs give 0.
pub fn secs_to_cdtime(s: f64) -> CdTime {
    if s.is_finite() && s > 0.0 {
        (s * CDTIME_PER_SEC) as CdTime
    } else {
        0
    }
}

/// The longest host/plugin/type field collectd stores (DATA_MAX_NAME_LEN - 1).
pub const MAX_NAME_LEN: usize = 127;
/// The longest notification message collectd stores (NOTIF_MAX_MSG_LEN - 1).
pub const MAX_MESSAGE_LEN: usize = 255;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DsType {
    Counter,
    Gauge,
    Derive,
    Absolute,
}

impl DsType {
    pub fn as_str(self) -> &'static str {
        match self {
            DsType::Counter => "counter",
            DsType::Gauge => "gauge",
            DsType::Derive => "derive",
            DsType::Absolute => "absolute",
        }
    }
}

/// One data source of a data set (a line of types.db).
#[derive(Clone, Debug, PartialEq)]
pub struct DataSource {
    pub name: Box<str>,
    pub ds_type: DsType,
    pub min: f64,
    pub max: f64,
}

/// A data set: the type name and its data sources.
#[derive(Clone, Debug, PartialEq)]
pub struct DataSet {
    pub type_name: Box<str>,
    pub sources: Box<[DataSource]>,
}

/// Read access to a data set, so that the write path can compare collectd's
/// data set with the one a cached metric was created with, without copying it.
pub trait DataSetLike {
    fn type_name(&self) -> Cow<'_, str>;
    fn len(&self) -> usize;
    fn ds_type(&self, i: usize) -> DsType;
    fn source(&self, i: usize) -> DataSource;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn to_owned_set(&self) -> DataSet {
        DataSet {
            type_name: self.type_name().into(),
            sources: (0..self.len()).map(|i| self.source(i)).collect(),
        }
    }

    /// True when `other` has the same shape (number and types of sources).
    fn same_types(&self, other: &DataSet) -> bool {
        self.len() == other.sources.len()
            && (0..self.len()).all(|i| self.ds_type(i) == other.sources[i].ds_type)
    }
}

impl DataSetLike for DataSet {
    fn type_name(&self) -> Cow<'_, str> {
        Cow::Borrowed(&self.type_name)
    }
    fn len(&self) -> usize {
        self.sources.len()
    }
    fn ds_type(&self, i: usize) -> DsType {
        self.sources[i].ds_type
    }
    fn source(&self, i: usize) -> DataSource {
        self.sources[i].clone()
    }
}

/// A raw collectd value (value_t): 8 bytes whose meaning the data source type
/// gives. Gauges are stored as f64 bits, derives as i64 bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[repr(transparent)]
pub struct RawValue(pub u64);

impl RawValue {
    pub fn gauge(v: f64) -> Self {
        RawValue(v.to_bits())
    }
    pub fn derive(v: i64) -> Self {
        RawValue(v as u64)
    }
    pub fn as_gauge(self) -> f64 {
        f64::from_bits(self.0)
    }
    pub fn as_derive(self) -> i64 {
        self.0 as i64
    }
}

/// A typed meta data value (collectd's meta_data_t / notification meta).
#[derive(Clone, Debug, PartialEq)]
pub enum MetaValue {
    String(String),
    Signed(i64),
    Unsigned(u64),
    Double(f64),
    Boolean(bool),
}

/// Meta data in collectd's order.
pub type Meta = Vec<(String, MetaValue)>;

/// A value list as the write callback sees it, borrowing collectd's memory.
/// The name fields are collectd's bytes (up to their NUL), not yet checked
/// for UTF-8: the write path compares them with a known metric's name as
/// they are, and converts them only for a metric it has not seen.
#[derive(Debug)]
pub struct ValueListRef<'a> {
    pub host: &'a [u8],
    pub plugin: &'a [u8],
    pub plugin_instance: &'a [u8],
    pub type_: &'a [u8],
    pub type_instance: &'a [u8],
    pub values: &'a [RawValue],
    pub time: CdTime,
    pub interval: CdTime,
    pub meta: MetaRef<'a>,
}

/// A value list's meta data, as the write path gets it.
#[derive(Clone)]
pub enum MetaRef<'a> {
    /// No meta data attached.
    Absent,
    /// Already converted (tests, benchmarks).
    Converted(Arc<Meta>),
    /// Still in collectd's memory: the store compares it there with what the
    /// metric holds, and has it converted only when it differs.
    InCollectd(&'a dyn MetaSource),
}

/// Meta data that can be compared without converting it.
pub trait MetaSource {
    /// Whether it equals `m`.
    fn equals(&self, m: &Meta) -> bool;
    /// It, converted (shared with an equal copy where one is at hand).
    fn to_shared(&self) -> Arc<Meta>;
}

impl MetaRef<'_> {
    /// What a metric that held `current` holds after this value: None if
    /// unchanged (nothing converted, no reference count touched). Inlined
    /// into the store's update, which asks it for every value (a call
    /// costs some 14 instructions per value, callgrind).
    #[inline(always)]
    pub fn replacing(&self, current: Option<&Arc<Meta>>) -> Option<Option<Arc<Meta>>> {
        match (self, current) {
            (MetaRef::Absent, None) => None,
            (MetaRef::Absent, Some(_)) => Some(None),
            (MetaRef::Converted(new), Some(old)) if Arc::ptr_eq(new, old) => None,
            (MetaRef::Converted(new), _) => Some(Some(new.clone())),
            (MetaRef::InCollectd(src), Some(old)) if src.equals(old) => None,
            (MetaRef::InCollectd(src), _) => Some(Some(src.to_shared())),
        }
    }

    /// It, converted, for a new metric.
    pub fn to_option(&self) -> Option<Arc<Meta>> {
        self.replacing(None).flatten()
    }
}

impl std::fmt::Debug for MetaRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MetaRef::Absent => f.write_str("Absent"),
            MetaRef::Converted(m) => f.debug_tuple("Converted").field(m).finish(),
            MetaRef::InCollectd(_) => f.write_str("InCollectd"),
        }
    }
}

impl<'a> ValueListRef<'a> {
    /// The five name fields, in identifier order.
    pub fn fields(&self) -> [&'a [u8]; 5] {
        [
            self.host,
            self.plugin,
            self.plugin_instance,
            self.type_,
            self.type_instance,
        ]
    }

    /// The fields as the store's probe uses them: each cut at MAX_NAME_LEN
    /// bytes.
    fn cut_fields(&self) -> [&'a [u8]; 5] {
        self.fields().map(|f| &f[..f.len().min(MAX_NAME_LEN)])
    }

    /// The byte length of `write_raw_identifier`'s output.
    pub fn raw_identifier_len(&self) -> usize {
        identifier_layout(self.cut_fields())
            .map(|(sep, f)| usize::from(sep.is_some()) + f.len())
            .sum()
    }

    /// Writes the collectd identifier (host/plugin[-pi]/type[-ti]) of the
    /// raw fields, each cut at MAX_NAME_LEN bytes, into `out`, which is
    /// `raw_identifier_len()` bytes long.
    pub fn write_raw_identifier(&self, out: &mut [u8]) {
        let mut len = 0;
        for (sep, f) in identifier_layout(self.cut_fields()) {
            if let Some(sep) = sep {
                out[len] = sep;
                len += 1;
            }
            out[len..len + f.len()].copy_from_slice(f);
            len += f.len();
        }
    }

    /// The metric's name, with invalid UTF-8 in a field replaced.
    pub fn name(&self) -> MetricName {
        let f = self.fields().map(String::from_utf8_lossy);
        MetricName::new([&f[0], &f[1], &f[2], &f[3], &f[4]])
    }
}

/// collectd's identifier format (FORMAT_VL), in one place: each field in
/// order with the separator that goes before it; an empty plugin or type
/// instance is left out with its separator.
fn identifier_layout<T: AsRef<[u8]>>(f: [T; 5]) -> impl Iterator<Item = (Option<u8>, T)> {
    let [host, plugin, plugin_instance, type_, type_instance] = f;
    [
        (None, host),
        (Some(b'/'), plugin),
        (Some(b'-'), plugin_instance),
        (Some(b'/'), type_),
        (Some(b'-'), type_instance),
    ]
    .into_iter()
    .filter(|(sep, f)| *sep != Some(b'-') || !f.as_ref().is_empty())
}

/// Appends the identifier of the five fields to `out`.
fn push_identifier(out: &mut String, f: [&str; 5]) {
    for (sep, f) in identifier_layout(f) {
        if let Some(sep) = sep {
            out.push(char::from(sep));
        }
        out.push_str(f);
    }
}

/// A metric's name: the identifier string and where each field lies in it,
/// in one shared allocation (cloning is a reference count). The string
/// starts with a header of 6 ASCII bytes: the byte lengths of host, plugin,
/// plugin_instance, type and type_instance (each at most 127), then b'1' if
/// no byte of the identifier needs an escape in a JSON string (no quote,
/// backslash or control character), else b'0'. One allocation instead of
/// two: a full read touches every name, and each allocation is a cache miss.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct MetricName(Arc<str>);

const NAME_HEADER: usize = 6;

impl MetricName {
    /// Builds a name from the five fields; each must be at most 127 bytes
    /// (collectd's limit), longer fields are cut at a character boundary.
    pub fn new(fields: [&str; 5]) -> Self {
        let fields = fields.map(|f| truncate(f, MAX_NAME_LEN));
        let mut s =
            String::with_capacity(NAME_HEADER + fields.iter().map(|f| f.len() + 1).sum::<usize>());
        for f in fields {
            // at most 127: one ASCII byte
            s.push(char::from(f.len() as u8));
        }
        // The separators ('/', '-') need no escape.
        let plain = fields
            .iter()
            .all(|f| f.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\'));
        s.push(if plain { '1' } else { '0' });
        push_identifier(&mut s, fields);
        MetricName(s.into())
    }

    pub fn identifier(&self) -> &str {
        &self.0[NAME_HEADER..]
    }

    /// Whether every field can be written in a JSON string as is.
    pub fn is_json_plain(&self) -> bool {
        self.0.as_bytes()[NAME_HEADER - 1] == b'1'
    }

    /// Where the name lies in memory (for prefetching).
    pub fn as_ptr(&self) -> *const u8 {
        self.0.as_ptr()
    }

    /// Whether both are the same object (not only equal).
    pub fn same_object(&self, other: &MetricName) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// host, plugin, plugin_instance, type and type_instance.
    pub fn fields(&self) -> [&str; 5] {
        // `field` of each, in one pass over the lengths.
        let lens = self.0.as_bytes();
        let id = self.identifier();
        let mut out = [""; 5];
        let mut start = 0;
        for (i, f) in out.iter_mut().enumerate() {
            let len = usize::from(lens[i]);
            if len > 0 {
                *f = &id[start..start + len];
            }
            start += len + usize::from(i != 2 || len > 0);
        }
        out
    }

    fn field(&self, index: usize) -> &str {
        let mut start = 0;
        for (i, &len) in self.0.as_bytes()[..index].iter().enumerate() {
            // the field and its separator: none after an empty plugin
            // instance (the type follows the plugin's '/')
            start += usize::from(len) + usize::from(i != 2 || len > 0);
        }
        let len = usize::from(self.0.as_bytes()[index]);
        if len == 0 {
            ""
        } else {
            &self.identifier()[start..start + len]
        }
    }

    pub fn host(&self) -> &str {
        self.field(0)
    }
    pub fn plugin(&self) -> &str {
        self.field(1)
    }
    pub fn plugin_instance(&self) -> &str {
        self.field(2)
    }
    pub fn type_(&self) -> &str {
        self.field(3)
    }
    pub fn type_instance(&self) -> &str {
        self.field(4)
    }
}

impl fmt::Debug for MetricName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("MetricName")
            .field(&self.identifier())
            .finish()
    }
}

impl fmt::Display for MetricName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.identifier())
    }
}

/// Cuts `s` to at most `max` bytes at a character boundary.
pub fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Parses `host/plugin[-pi]/type[-ti]` as collectd's parse_identifier does:
/// the first '-' of the plugin and type parts separates the instance.
pub fn parse_identifier(s: &str) -> Option<[String; 5]> {
    identifier_fields(s).map(|f| f.map(String::from))
}

/// `parse_identifier`, borrowing the fields from `s` (no allocation).
pub fn identifier_fields(s: &str) -> Option<[&str; 5]> {
    let (host, rest) = split_at_byte(s, b'/')?;
    let (plugin, type_) = split_at_byte(rest, b'/')?;
    if host.is_empty() || plugin.is_empty() || type_.is_empty() || type_.contains('/') {
        return None;
    }
    let (plugin, plugin_instance) = split_at_byte(plugin, b'-').unwrap_or((plugin, ""));
    let (type_, type_instance) = split_at_byte(type_, b'-').unwrap_or((type_, ""));
    if plugin.is_empty() || type_.is_empty() {
        return None;
    }
    let fields = [host, plugin, plugin_instance, type_, type_instance];
    if fields.iter().any(|f| f.len() > MAX_NAME_LEN) {
        return None;
    }
    Some(fields)
}

/// `s.split_once(c)` for an ASCII `c`, as a plain byte loop: cheaper than
/// the general pattern search on strings as short as a name's parts.
fn split_at_byte(s: &str, c: u8) -> Option<(&str, &str)> {
    let i = s.bytes().position(|b| b == c)?;
    // `c` is ASCII, so both sides are on character boundaries.
    Some((&s[..i], &s[i + 1..]))
}

/// A plugin name as collectd uses them for callbacks: 1-127 bytes of ASCII
/// letters, digits, `_`, `-` and `.` (script plugins register `python.x`),
/// not starting with `.` or `-`. No path separator, no NUL.
pub fn valid_plugin_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && !name.starts_with(['.', '-'])
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Failure,
    Warning,
    Okay,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Failure => "failure",
            Severity::Warning => "warning",
            Severity::Okay => "okay",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "failure" => Some(Severity::Failure),
            "warning" => Some(Severity::Warning),
            "okay" => Some(Severity::Okay),
            _ => None,
        }
    }
}

/// A notification as collectd delivered it (or as we dispatch it).
#[derive(Clone, Debug, PartialEq)]
pub struct Notification {
    pub severity: Severity,
    pub time: CdTime,
    pub message: String,
    pub host: String,
    pub plugin: String,
    pub plugin_instance: String,
    pub type_: String,
    pub type_instance: String,
    pub meta: Meta,
}

/// One value of a configuration item (oconfig_value_t).
#[derive(Clone, Debug, PartialEq)]
pub enum ConfigValue {
    String(String),
    Number(f64),
    Boolean(bool),
}

impl fmt::Display for ConfigValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigValue::String(s) => write!(f, "{s:?}"),
            ConfigValue::Number(n) => write!(f, "{n}"),
            ConfigValue::Boolean(b) => write!(f, "{b}"),
        }
    }
}

/// A configuration item (oconfig_item_t) and its children.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct ConfigItem {
    pub key: String,
    pub values: Vec<ConfigValue>,
    pub children: Vec<ConfigItem>,
}

/// Shared pointer to a data set; metrics of one type share one.
pub type DataSetRef = Arc<DataSet>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_name_fields() {
        let n = MetricName::new(["h", "cpu", "0", "cpu", "idle"]);
        assert_eq!(n.identifier(), "h/cpu-0/cpu-idle");
        assert_eq!(
            [
                n.host(),
                n.plugin(),
                n.plugin_instance(),
                n.type_(),
                n.type_instance()
            ],
            ["h", "cpu", "0", "cpu", "idle"]
        );
        let n = MetricName::new(["host.example", "load", "", "load", ""]);
        assert_eq!(n.identifier(), "host.example/load/load");
        assert_eq!(n.plugin_instance(), "");
        assert_eq!(n.type_(), "load");
        assert_eq!(n.type_instance(), "");
        // dashes inside fields stay unambiguous
        let n = MetricName::new(["a-b", "p-q", "", "t", "x-y"]);
        assert_eq!(n.identifier(), "a-b/p-q/t-x-y");
        assert_eq!(n.plugin(), "p-q");
        assert_eq!(n.plugin_instance(), "");
        assert_eq!(n.type_instance(), "x-y");
        let n = MetricName::new(["h", "p", "", "t", "ti"]);
        assert_eq!(n.type_(), "t");
        assert_eq!(n.type_instance(), "ti");
        // fields() is each field, however the fields are empty or not
        for f in [
            ["h", "p", "", "t", ""],
            ["h", "p", "i", "t", ""],
            ["h", "p", "", "t", "x"],
            ["é", "p-q", "i-j", "t", "x-y"],
        ] {
            let n = MetricName::new(f);
            assert_eq!(n.fields(), [0, 1, 2, 3, 4].map(|i| n.field(i)), "{f:?}");
            assert_eq!(n.fields(), f);
        }
    }

    #[test]
    fn metric_name_truncates_long_fields() {
        let long = "é".repeat(100); // 200 bytes
        let n = MetricName::new([&long, "p", "", "t", ""]);
        assert!(n.host().len() <= MAX_NAME_LEN);
        assert!(n.host().chars().all(|c| c == 'é'));
        assert_eq!(n.plugin(), "p");
    }

    #[test]
    fn parse_identifier_like_collectd() {
        assert_eq!(
            parse_identifier("h/cpu-0/cpu-idle").unwrap(),
            ["h", "cpu", "0", "cpu", "idle"].map(String::from)
        );
        assert_eq!(
            parse_identifier("h/df-root-fs/df_complex-free").unwrap(),
            ["h", "df", "root-fs", "df_complex", "free"].map(String::from)
        );
        assert_eq!(
            parse_identifier("h/load/load").unwrap(),
            ["h", "load", "", "load", ""].map(String::from)
        );
        for bad in ["", "h", "h/p", "h//t", "/p/t", "h/p/", "h/p/t/x", "h/-x/t"] {
            assert!(parse_identifier(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn split_at_byte_is_split_once() {
        for s in ["", "/", "a", "a/", "/b", "a/b/c", "é/ü-x", "--", "a-b-c"] {
            for c in [b'/', b'-'] {
                assert_eq!(split_at_byte(s, c), s.split_once(char::from(c)), "{s}");
            }
        }
    }

    #[test]
    fn plugin_names() {
        for ok in ["cpu", "write_prometheus", "python.foo", "a-b", "x1"] {
            assert!(valid_plugin_name(ok), "{ok}");
        }
        let long = "a".repeat(128);
        for bad in [
            "", ".", "..", "../cpu", "a/b", "a\0b", "-x", "a b", "é", &long,
        ] {
            assert!(!valid_plugin_name(bad), "{bad}");
        }
    }

    #[test]
    fn cdtime_conversions() {
        assert_eq!(cdtime_to_secs(1 << 30), 1.0);
        assert_eq!(secs_to_cdtime(10.0), 10 << 30);
        assert_eq!(secs_to_cdtime(-1.0), 0);
        assert_eq!(secs_to_cdtime(f64::NAN), 0);
    }
}
