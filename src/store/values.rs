//! The latest value of every metric, with rates computed as collectd's value
//! cache computes them (utils_cache.c), and expiry like collectd's (Timeout x
//! interval without an update).
//!
//! The write callback runs on collectd's write threads for every value, so
//! `update` is built to be cheap: the identifier is formatted from collectd's
//! bytes into a thread-local buffer and hashed once (foldhash, keyed per
//! process); the hash picks a shard (a lock each) and probes its table; an
//! update of a known metric overwrites its values in place (no allocation,
//! no UTF-8 check, no syscall beyond the vDSO clock). A reader copies a shard at a time, a
//! batch per hold of its lock, into a flat snapshot. A write thread never
//! waits for a shard lock: when it is held, the value is left to the holder
//! (see `Shard`).

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use hashbrown::HashTable;
use parking_lot::{Mutex, MutexGuard};

use crate::model::{
    cdtime_to_secs, CdTime, DataSet, DataSetLike, DsType, Meta, MetaRef, MetricName, Notification,
    RawValue, ValueListRef,
};
use crate::rules::thresholds::{self, MetricState, Thresholds};
use crate::store::history::Ring;

const SHARDS: usize = 64;

/// Identifiers up to this many bytes are built on the stack.
const SHORT_ID: usize = 128;

/// Exact-match filters on the identifier fields; `None` matches anything.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Filter {
    pub host: Option<String>,
    pub plugin: Option<String>,
    pub plugin_instance: Option<String>,
    pub type_: Option<String>,
    pub type_instance: Option<String>,
}

impl Filter {
    pub fn matches(&self, n: &MetricName) -> bool {
        fn ok(f: &Option<String>, v: &str) -> bool {
            f.as_deref().is_none_or(|f| f == v)
        }
        ok(&self.host, n.host())
            && ok(&self.plugin, n.plugin())
            && ok(&self.plugin_instance, n.plugin_instance())
            && ok(&self.type_, n.type_())
            && ok(&self.type_instance, n.type_instance())
    }
}

struct Entry {
    name: MetricName,
    /// The hash of the identifier (see `ValueStore::hash`).
    hash: u64,
    ds: Arc<DataSet>,
    /// The values (as the bits of their 8 bytes) then the rates (see
    /// `values`, `rates`).
    data: EntryData,
    time: CdTime,
    interval: CdTime,
    /// Coarse monotonic nanoseconds (since the store's epoch) of the last
    /// update.
    updated: u64,
    meta: Option<Arc<Meta>>,
    /// Which thresholds apply and the metric's state against them.
    thresholds: MetricState,
    /// The last HistorySize samples.
    history: Ring,
}

/// A shard: entries in a slab (stable slot numbers, so that a reader can
/// copy them in short batches, releasing the lock in between) and an index
/// from identifier to slot. Metrics are told apart by their identifier, as
/// in collectd's own cache.
#[derive(Default)]
struct ShardInner {
    index: HashTable<u32>,
    slots: Vec<Option<Entry>>,
    free: Vec<u32>,
    received: u64,
    last_update: u64,
}

/// A snapshot's entry for a metric's latest value.
fn latest_entry(e: &Entry) -> SnapEntry {
    SnapEntry {
        name: e.name.clone(),
        ds: e.ds.clone(),
        time: e.time,
        interval: e.interval,
        meta: e.meta.clone(),
        seq: 0,
        offset: 0,
    }
}

impl Entry {
    fn width(&self) -> usize {
        self.data.len() / 2
    }

    /// The raw values, copied out of their f64 slots bit for bit.
    fn values(&self) -> impl ExactSizeIterator<Item = RawValue> + '_ {
        self.data[..self.width()]
            .iter()
            .map(|v| RawValue(v.to_bits()))
    }

    fn rates(&self) -> &[f64] {
        &self.data[self.width()..]
    }
}

/// A metric's values then its rates, in one buffer (a value's 8 bytes kept
/// as the bits of an f64: `f64::from_bits` and `to_bits` copy bits
/// unchanged). Inside the entry for one data source (most types), so that
/// an update finds them in the entry's own cache lines instead of missing
/// the cache once more for a separate allocation, and a new metric makes
/// one allocation fewer; one allocation for more.
enum EntryData {
    One([f64; 2]),
    Many(Box<[f64]>),
}

impl std::ops::Deref for EntryData {
    type Target = [f64];

    #[inline(always)]
    fn deref(&self) -> &[f64] {
        match self {
            EntryData::One(d) => d,
            EntryData::Many(d) => d,
        }
    }
}

impl std::ops::DerefMut for EntryData {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut [f64] {
        match self {
            EntryData::One(d) => d,
            EntryData::Many(d) => d,
        }
    }
}

/// `values` then `rates` (as many), see `EntryData`.
fn entry_data(values: &[RawValue], mut rates: impl Iterator<Item = f64>) -> EntryData {
    match values {
        [v] => EntryData::One([f64::from_bits(v.0), rates.next().unwrap_or(f64::NAN)]),
        _ => EntryData::Many(
            values
                .iter()
                .map(|v| f64::from_bits(v.0))
                .chain(rates)
                .collect(),
        ),
    }
}

impl ShardInner {
    /// The slot of the metric whose identifier is `id` (hashed to `hash`).
    #[inline(always)]
    fn find(&self, hash: u64, id: &[u8]) -> Option<u32> {
        let slots = &self.slots;
        self.index
            .find(hash, |&s| {
                slots[s as usize]
                    .as_ref()
                    .is_some_and(|e| e.name.identifier().as_bytes() == id)
            })
            .copied()
    }

    #[inline(always)]
    fn get(&self, hash: u64, id: &[u8]) -> Option<&Entry> {
        let slot = self.find(hash, id)?;
        self.slots[slot as usize].as_ref()
    }

    #[inline(always)]
    fn get_mut(&mut self, hash: u64, id: &[u8]) -> Option<&mut Entry> {
        let slot = self.find(hash, id)?;
        self.slots[slot as usize].as_mut()
    }

    /// Inserts or replaces the entry for `e.name`.
    fn insert(&mut self, e: Entry) {
        if let Some(slot) = self.find(e.hash, e.name.identifier().as_bytes()) {
            self.slots[slot as usize] = Some(e);
            return;
        }
        let hash = e.hash;
        let slot = match self.free.pop() {
            Some(s) => {
                self.slots[s as usize] = Some(e);
                s
            }
            None => {
                self.slots.push(Some(e));
                (self.slots.len() - 1) as u32
            }
        };
        let slots = &self.slots;
        self.index.insert_unique(hash, slot, |&s| {
            slots[s as usize].as_ref().map_or(0, |e| e.hash)
        });
    }

    fn remove_slot(&mut self, slot: usize) {
        if let Some(e) = self.slots[slot].take() {
            if let Ok(found) = self.index.find_entry(e.hash, |&s| s as usize == slot) {
                found.remove();
            }
            self.free.push(slot as u32);
        }
    }

    fn remove(&mut self, hash: u64, id: &[u8]) {
        if let Some(slot) = self.find(hash, id) {
            self.remove_slot(slot as usize);
        }
    }

    fn len(&self) -> usize {
        self.index.len()
    }
}

/// How many times a write thread that finds its shard locked checks again
/// (with a spin-loop hint between checks: 0.05 to 0.6 µs in all, by CPU)
/// before it leaves its value to the lock's holder: about another write
/// thread's update, far less than a reader's batch.
const SPINS: usize = 16;

/// Entries a reader copies per hold of a shard lock: bounds how long a full
/// read can keep a write thread waiting (a few tens of microseconds).
const READ_BATCH: usize = 128;

/// A shard's lock and what write threads left for its next holder, on
/// cache lines of their own, so that write threads on different shards do
/// not share lines.
///
/// A write thread never waits for a shard's lock: when the lock is held
/// (by a reader copying a batch, or by another write thread), the value is
/// copied into `pending` and applied by whoever holds the lock next, or
/// by the holder as soon as it unlocks (see `Locked`). So a full read can
/// delay when a value becomes visible, by at most one batch, but never
/// keeps a write thread waiting, even when the reader loses its CPU while
/// it holds the lock.
#[repr(align(64))]
#[derive(Default)]
struct Shard {
    inner: Mutex<ShardInner>,
    pending: Mutex<Vec<Deferred>>,
    /// `pending` is not empty (set and cleared under its lock).
    has_pending: AtomicBool,
}

/// A value a write thread found its shard locked for, copied out of
/// collectd's memory.
struct Deferred {
    name: MetricName,
    /// The hash of `name`'s identifier.
    hash: u64,
    ds: Arc<DataSet>,
    values: Box<[RawValue]>,
    time: CdTime,
    interval: CdTime,
    meta: Option<Arc<Meta>>,
    /// When it arrived (the store's clock).
    received: u64,
    /// Already counted in its shard's `received`.
    counted: bool,
}

impl Deferred {
    fn value_list(&self) -> ValueListRef<'_> {
        let n = &self.name;
        ValueListRef {
            host: n.host().as_bytes(),
            plugin: n.plugin().as_bytes(),
            plugin_instance: n.plugin_instance().as_bytes(),
            type_: n.type_().as_bytes(),
            type_instance: n.type_instance().as_bytes(),
            values: &self.values,
            time: self.time,
            interval: self.interval,
            meta: match &self.meta {
                Some(m) => MetaRef::Converted(m.clone()),
                None => MetaRef::Absent,
            },
        }
    }
}

/// A held shard lock. Taking it applies what write threads left pending;
/// dropping it unlocks, then applies what was left meanwhile if the lock is
/// free (else its new holder will; see `ValueStore::unlocked`).
struct Locked<'a> {
    store: &'a ValueStore,
    shard: &'a Shard,
    guard: Option<MutexGuard<'a, ShardInner>>,
}

impl Deref for Locked<'_> {
    type Target = ShardInner;
    #[inline(always)]
    fn deref(&self) -> &ShardInner {
        match &self.guard {
            Some(g) => g,
            None => unreachable!("a shard guard is only emptied when dropped"),
        }
    }
}

impl DerefMut for Locked<'_> {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut ShardInner {
        match &mut self.guard {
            Some(g) => g,
            None => unreachable!("a shard guard is only emptied when dropped"),
        }
    }
}

impl Drop for Locked<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        drop(self.guard.take());
        self.store.unlocked(self.shard);
    }
}

/// What `update` did with a value list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Update {
    /// A metric seen for the first time.
    New,
    /// A known metric got a newer value.
    Updated,
    /// Not newer than the cached value: ignored, as collectd's cache does.
    TooOld,
    /// The shard was locked: the value is applied by the lock's holder
    /// when it unlocks, or by its next holder.
    Deferred,
    /// The value count does not match the data set: ignored.
    Invalid,
}

pub struct ValueStore {
    shards: Box<[Shard]>,
    /// Samples kept per metric.
    history_size: usize,
    /// The sequence number the next sample gets (starts at 1); taken under
    /// the lock of the shard the sample goes into.
    next_seq: AtomicU64,
    /// The thresholds every value is checked against.
    pub thresholds: Thresholds,
    data_sets: Mutex<HashMap<Box<str>, Arc<DataSet>>>,
    /// collectd's Timeout (global option): a metric expires after
    /// `timeout * interval` without an update.
    timeout_factor: u64,
    /// The coarse monotonic clock's reading when the store was made.
    epoch: u64,
    /// Keyed per process: names come from the network, so a sender must
    /// not be able to make them collide on purpose.
    hasher: foldhash::fast::RandomState,
    /// The order of the last full read (see `sort_entries`).
    order: Mutex<Option<OrderCache>>,
    /// Where threshold notifications go (see `emit`).
    event_sink: OnceLock<EventSink>,
    /// Values write threads left pending (see `Shard`).
    deferred: AtomicU64,
}

/// Pending values taken off a shard's list to be applied; whatever is
/// left when this is dropped (a panic while applying) goes back on it.
struct PutBack<'a> {
    shard: &'a Shard,
    rest: std::vec::IntoIter<Deferred>,
}

impl Drop for PutBack<'_> {
    fn drop(&mut self) {
        if !self.rest.as_slice().is_empty() {
            let mut p = self.shard.pending.lock();
            p.extend(self.rest.by_ref());
            self.shard.has_pending.store(true, Ordering::Relaxed);
        }
    }
}

/// Takes threshold notifications, called with the shard lock held that
/// applied their value (see `ValueStore::emit`).
pub type EventSink = Box<dyn Fn(Notification) + Send + Sync>;

/// A full read's metrics in the order they were copied (shard by shard,
/// slot by slot), and the permutation that sorts them. While no metric is
/// added or removed, the next full read copies the same names in the same
/// order, and sorting it is one pass. The names are kept (not only their
/// addresses) so that an address cannot be reused by another name meanwhile.
struct OrderCache {
    names: Vec<MetricName>,
    sorted: Vec<u32>,
    /// Unique in the process (see `Snapshot::order`).
    generation: u64,
}

/// The generation the next order cache gets (process-wide, so that two
/// stores never hand out the same one).
static NEXT_ORDER_GENERATION: AtomicU64 = AtomicU64::new(1);

/// One metric in a snapshot; its values live in the snapshot's flat arrays.
#[derive(Clone, Debug)]
pub struct SnapEntry {
    pub name: MetricName,
    pub ds: Arc<DataSet>,
    pub time: CdTime,
    pub interval: CdTime,
    pub meta: Option<Arc<Meta>>,
    /// A history sample's sequence number (0 for latest values).
    pub seq: u64,
    offset: u32,
}

/// A consistent copy of (part of) the store, sorted by identifier.
#[derive(Default, Debug)]
pub struct Snapshot {
    pub entries: Vec<SnapEntry>,
    values: Vec<RawValue>,
    rates: Vec<f64>,
    /// The longest time this snapshot held one shard lock: what it may have
    /// made a write thread wait (measured, for the benchmark).
    pub max_lock_hold: std::time::Duration,
    /// For a full read (no filter): a number shared by every full read that
    /// copied the same metric objects in the same order, so that a reader
    /// can reuse what it derived from an earlier one (the Prometheus
    /// layout). None for filtered reads and history.
    pub order: Option<u64>,
}

impl Snapshot {
    pub fn values(&self, e: &SnapEntry) -> &[RawValue] {
        let o = e.offset as usize;
        &self.values[o..o + e.ds.sources.len()]
    }
    pub fn rates(&self, e: &SnapEntry) -> &[f64] {
        let o = e.offset as usize;
        &self.rates[o..o + e.ds.sources.len()]
    }
}

/// The most data sources whose values and rates `One` holds inline (most
/// types have one or two).
const ONE_INLINE: usize = 4;

/// The latest value of one metric (`ValueStore::get_one`).
pub struct One {
    pub entry: SnapEntry,
    width: usize,
    /// The values (as bits) then the rates, when they fit; else `boxed`.
    inline: [f64; 2 * ONE_INLINE],
    boxed: Option<Box<[f64]>>,
}

impl One {
    fn data(&self) -> &[f64] {
        match &self.boxed {
            Some(b) => b,
            None => &self.inline[..2 * self.width],
        }
    }

    pub fn values(&self) -> impl ExactSizeIterator<Item = RawValue> + '_ {
        self.data()[..self.width]
            .iter()
            .map(|v| RawValue(v.to_bits()))
    }

    pub fn rates(&self) -> &[f64] {
        &self.data()[self.width..]
    }
}

/// Counters for /v1/health.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StoreStats {
    pub values_received: u64,
    /// Seconds since the last value arrived, if any arrived.
    pub last_value_age: Option<f64>,
}

impl ValueStore {
    pub fn new(timeout_factor: u32, history_size: usize) -> Self {
        ValueStore {
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
            history_size: history_size.max(1),
            next_seq: AtomicU64::new(1),
            thresholds: Thresholds::default(),
            data_sets: Mutex::new(HashMap::new()),
            timeout_factor: u64::from(timeout_factor.max(1)),
            epoch: crate::clock::monotonic_coarse_ns(),
            hasher: foldhash::fast::RandomState::default(),
            order: Mutex::new(None),
            event_sink: OnceLock::new(),
            deferred: AtomicU64::new(0),
        }
    }

    /// Where threshold notifications go (set once). Without one, a
    /// write's notification is returned by `record`, and one raised by a
    /// value applied after its write thread returned is logged and dropped.
    pub fn set_event_sink(&self, sink: EventSink) {
        if self.event_sink.set(sink).is_err() {
            log::warn!("the value store's event sink was set twice; the first one stays");
        }
    }

    /// How many values write threads found their shard locked for (and
    /// left for the lock's holder) since the start.
    pub fn deferred_count(&self) -> u64 {
        self.deferred.load(Ordering::Relaxed)
    }

    /// A write's threshold notification goes to the event sink, if there
    /// is one, while the shard lock that applied the value is held: the
    /// sink sees one metric's notifications in the order its values were
    /// applied, whether by their write thread or by a lock's holder.
    /// Without a sink it is returned to the caller.
    #[inline(always)]
    fn emit(
        &self,
        (update, event): (Update, Option<Box<Notification>>),
    ) -> (Update, Option<Box<Notification>>) {
        match event {
            None => (update, None),
            Some(n) => (update, self.emit_now(n)),
        }
    }

    /// `emit` once there is a notification (rare: a threshold state
    /// changed), out of the write path's inlined code. Called with a shard
    /// lock held: the sink must not read or write the store, nor wait (the
    /// host's queues it for a thread of its own).
    #[cold]
    #[inline(never)]
    fn emit_now(&self, n: Box<Notification>) -> Option<Box<Notification>> {
        match self.event_sink.get() {
            Some(sink) => {
                sink(*n);
                None
            }
            None => Some(n),
        }
    }

    /// After a shard lock was released: applies what write threads left
    /// meanwhile, if the lock is free (else its new holder will). The fence
    /// pairs with the one in `defer`: either the write thread that left a
    /// value finds the lock free after leaving it (and applies it), or this
    /// finds the value.
    #[inline(always)]
    fn unlocked(&self, shard: &Shard) {
        fence(Ordering::SeqCst);
        if shard.has_pending.load(Ordering::Relaxed) {
            self.drain_unlocked(shard);
        }
    }

    /// Takes `shard`'s lock, waiting for it (readers), and applies what
    /// write threads left pending.
    fn lock<'a>(&'a self, shard: &'a Shard) -> Locked<'a> {
        self.locked(shard, shard.inner.lock())
    }

    /// Takes `shard`'s lock if it is free, or becomes free within a short
    /// spin (write threads: another write thread holds it for well under a
    /// microsecond, a reader for a batch of READ_BATCH entries).
    #[inline(always)]
    fn try_lock<'a>(&'a self, shard: &'a Shard) -> Option<Locked<'a>> {
        let guard = self.try_lock_raw(shard)?;
        Some(Locked {
            store: self,
            shard,
            guard: Some(guard),
        })
    }

    /// `try_lock` without the guard that calls `unlocked` when dropped
    /// (the write path's fast path calls it itself).
    #[inline(always)]
    fn try_lock_raw<'a>(&'a self, shard: &'a Shard) -> Option<MutexGuard<'a, ShardInner>> {
        let mut guard = match shard.inner.try_lock() {
            Some(g) => g,
            None => Self::spin_lock(shard)?,
        };
        if shard.has_pending.load(Ordering::Relaxed) {
            self.drain(shard, &mut guard);
        }
        Some(guard)
    }

    #[cold]
    fn spin_lock(shard: &Shard) -> Option<MutexGuard<'_, ShardInner>> {
        for _ in 0..SPINS {
            std::hint::spin_loop();
            if let Some(g) = shard.inner.try_lock() {
                return Some(g);
            }
        }
        None
    }

    #[inline(always)]
    fn locked<'a>(&'a self, shard: &'a Shard, mut guard: MutexGuard<'a, ShardInner>) -> Locked<'a> {
        if shard.has_pending.load(Ordering::Relaxed) {
            self.drain(shard, &mut guard);
        }
        Locked {
            store: self,
            shard,
            guard: Some(guard),
        }
    }

    /// Leaves `vl` for the holder of `shard`'s lock (see `Shard`).
    #[cold]
    fn defer<D: DataSetLike>(
        &self,
        ds: &D,
        vl: &ValueListRef<'_>,
        now: u64,
        counted: bool,
    ) -> Update {
        let name = vl.name();
        let hash = self.hash(name.identifier().as_bytes());
        let d = Deferred {
            name,
            hash,
            ds: self.data_set(ds),
            values: vl.values.into(),
            time: vl.time,
            interval: vl.interval,
            meta: vl.meta.to_option(),
            received: now,
            counted,
        };
        self.deferred.fetch_add(1, Ordering::Relaxed);
        let shard = self.shard(hash);
        {
            let mut p = shard.pending.lock();
            p.push(d);
            shard.has_pending.store(true, Ordering::Relaxed);
        }
        // Pairs with the fence in `unlocked`.
        fence(Ordering::SeqCst);
        self.drain_unlocked(shard);
        Update::Deferred
    }

    /// Applies what is pending in `shard` while its lock is free; stops
    /// when it is held (its holder applies the rest when it unlocks).
    #[cold]
    #[inline(never)]
    fn drain_unlocked(&self, shard: &Shard) {
        while shard.has_pending.load(Ordering::Relaxed) {
            let Some(mut g) = shard.inner.try_lock() else {
                return;
            };
            self.drain(shard, &mut g);
            drop(g);
            fence(Ordering::SeqCst);
        }
    }

    /// Applies the values pending in `shard`, whose lock is held (`inner`),
    /// in the order they were left.
    #[cold]
    #[inline(never)]
    fn drain(&self, shard: &Shard, inner: &mut ShardInner) {
        let items = {
            let mut p = shard.pending.lock();
            shard.has_pending.store(false, Ordering::Relaxed);
            std::mem::take(&mut *p)
        };
        // Should applying one panic, the rest go back to the list (for the
        // lock's next holder) instead of being lost with this frame.
        let mut items = PutBack {
            shard,
            rest: items.into_iter(),
        };
        for d in items.rest.by_ref() {
            let vl = d.value_list();
            let id = d.name.identifier().as_bytes();
            if !d.counted {
                inner.received += 1;
                inner.last_update = inner.last_update.max(d.received);
            }
            let event = match inner.get_mut(d.hash, id) {
                Some(e) if d.ds.same_types(&e.ds) => self.apply(e, &vl, d.received).1,
                found => {
                    if found.is_some() {
                        inner.remove(d.hash, id);
                    }
                    let (mut entry, event) =
                        self.new_entry(d.name.clone(), d.hash, d.ds.clone(), &vl, d.received);
                    let seq = self.next_seq.fetch_add(1, Ordering::SeqCst);
                    entry.history.push(seq, entry.time, vl.values);
                    inner.insert(entry);
                    event
                }
            };
            // Its write thread has returned: without a sink, nobody takes it.
            if let Some(n) = event.and_then(|n| self.emit_now(n)) {
                log::warn!(
                    "threshold notification for {} dropped: no event sink",
                    n.plugin
                );
            }
        }
    }

    fn now(&self) -> u64 {
        crate::clock::monotonic_coarse_ns().saturating_sub(self.epoch)
    }

    fn hash(&self, id: &[u8]) -> u64 {
        self.hasher.hash_one(id)
    }

    /// The shard of a hash: bits that hashbrown uses for neither the bucket
    /// (low bits) nor the tag (top 7 bits), so that the entries of one shard
    /// still spread over its table.
    fn shard(&self, hash: u64) -> &Shard {
        &self.shards[(hash >> 32) as usize % SHARDS]
    }

    /// Records `vl` as the latest value (see `record`).
    pub fn update<D: DataSetLike>(&self, ds: &D, vl: ValueListRef<'_>) -> Update {
        self.record(ds, &vl).0
    }

    /// The write path: records `vl` (described by `ds`) as the latest
    /// value, and checks it against the thresholds; returns what it did and
    /// the notification a threshold state change calls for (to dispatch
    /// with no lock held; boxed, so that the common answer, none, is two
    /// words to return rather than a whole notification to copy).
    pub fn record<D: DataSetLike>(
        &self,
        ds: &D,
        vl: &ValueListRef<'_>,
    ) -> (Update, Option<Box<Notification>>) {
        // On the stack when it fits (nearly always: collectd-tg's are about
        // 40 bytes), so that there is neither an allocation nor a large
        // buffer to clear.
        let len = vl.raw_identifier_len();
        let mut small = [0u8; SHORT_ID];
        let mut long = Vec::new();
        let id: &mut [u8] = if len <= SHORT_ID {
            &mut small[..len]
        } else {
            long.resize(len, 0);
            &mut long
        };
        vl.write_raw_identifier(id);
        self.record_id(ds, vl, id)
    }

    /// `record`, given `id`: what `vl.write_raw_identifier` writes (the
    /// write callback builds it while it reads collectd's fields). Inlined
    /// into the write callback: a call costs it some 25 instructions per
    /// value (callgrind).
    #[inline(always)]
    pub fn record_id<D: DataSetLike>(
        &self,
        ds: &D,
        vl: &ValueListRef<'_>,
        id: &[u8],
    ) -> (Update, Option<Box<Notification>>) {
        debug_assert!(
            id.len() == vl.raw_identifier_len() && {
                let mut built = vec![0; id.len()];
                vl.write_raw_identifier(&mut built);
                built == id
            }
        );
        if vl.values.len() != ds.len() || vl.values.is_empty() {
            return (Update::Invalid, None);
        }
        let now = self.now();
        // A known metric: found by collectd's bytes as they are.
        let hash = self.hash(id);
        let shard = self.shard(hash);
        let found = {
            let Some(mut inner) = self.try_lock_raw(shard) else {
                return (self.defer(ds, vl, now, false), None);
            };
            inner.received += 1;
            inner.last_update = now;
            match inner.get_mut(hash, id) {
                Some(e) if ds.same_types(&e.ds) => Some(self.emit(self.apply(e, vl, now))),
                Some(_) => {
                    // The type's data set changed (types.db reloaded): start over.
                    inner.remove(hash, id);
                    None
                }
                None => None,
            }
        };
        self.unlocked(shard);
        if let Some(done) = found {
            return done;
        }
        // A new metric (or one whose name needed converting): build it
        // outside the shard lock.
        let name = vl.name();
        let hash = self.hash(name.identifier().as_bytes());
        let shard = self.shard(hash);
        {
            let Some(mut inner) = self.try_lock(shard) else {
                return (self.defer(ds, vl, now, true), None);
            };
            if let Some(e) = inner.get_mut(hash, name.identifier().as_bytes()) {
                if ds.same_types(&e.ds) {
                    return self.emit(self.apply(e, vl, now));
                }
                inner.remove(hash, name.identifier().as_bytes());
            }
        }
        let (mut entry, event) = self.new_entry(name, hash, self.data_set(ds), vl, now);
        let Some(mut inner) = self.try_lock(shard) else {
            return (self.defer(ds, vl, now, true), None);
        };
        // Another write thread may have inserted it meanwhile; collectd
        // delivers one metric's values in order on the whole, keep newest.
        match inner.get(hash, entry.name.identifier().as_bytes()) {
            Some(e) if e.time >= entry.time => (Update::TooOld, None),
            _ => {
                let seq = self.next_seq.fetch_add(1, Ordering::SeqCst);
                entry.history.push(seq, entry.time, vl.values);
                inner.insert(entry);
                self.emit((Update::New, event))
            }
        }
    }

    /// A new metric's entry for its first value `vl`, and the notification
    /// its thresholds call for.
    fn new_entry(
        &self,
        name: MetricName,
        hash: u64,
        data_set: Arc<DataSet>,
        vl: &ValueListRef<'_>,
        now: u64,
    ) -> (Entry, Option<Box<Notification>>) {
        let rates = (0..vl.values.len()).map(|i| {
            let s = &data_set.sources[i];
            in_range(
                first_rate(s.ds_type, vl.values[i], vl.interval),
                s.min,
                s.max,
            )
        });
        let data = entry_data(vl.values, rates);
        let mut entry = Entry {
            name,
            hash,
            ds: data_set,
            data,
            time: vl.time,
            interval: vl.interval,
            updated: now,
            meta: vl.meta.to_option(),
            thresholds: MetricState::default(),
            history: Ring::new(self.history_size, vl.values.len(), vl.time),
        };
        let event = thresholds::evaluate(
            &self.thresholds,
            &mut entry.thresholds,
            &entry.name,
            &entry.ds,
            &entry.data[vl.values.len()..],
            entry.time,
        );
        (entry, event)
    }

    /// Updates a known metric `e` (of the same data set) with `vl`, under
    /// its shard's lock. Inlined into both callers: the write path pays no
    /// call for it.
    #[inline(always)]
    fn apply(
        &self,
        e: &mut Entry,
        vl: &ValueListRef<'_>,
        now: u64,
    ) -> (Update, Option<Box<Notification>>) {
        if vl.time <= e.time {
            return (Update::TooOld, None);
        }
        let dt = cdtime_to_secs(vl.time - e.time);
        let n = vl.values.len();
        for i in 0..n {
            let src = &e.ds.sources[i];
            let old = RawValue(e.data[i].to_bits());
            let r = next_rate(src.ds_type, old, vl.values[i], dt);
            e.data[n + i] = in_range(r, src.min, src.max);
            e.data[i] = f64::from_bits(vl.values[i].0);
        }
        e.time = vl.time;
        e.interval = vl.interval;
        e.updated = now;
        let seq = self.next_seq.fetch_add(1, Ordering::SeqCst);
        e.history.push(seq, vl.time, vl.values);
        // Under the shard lock: a walk of the value's own meta data list
        // (under collectd's per-list lock; collectd's getters instead if its
        // layout did not check out, which never call back into the plugin);
        // it allocates only when the meta data changed.
        if let Some(meta) = vl.meta.replacing(e.meta.as_ref()) {
            e.meta = meta;
        }
        let event = thresholds::evaluate(
            &self.thresholds,
            &mut e.thresholds,
            &e.name,
            &e.ds,
            &e.data[n..],
            e.time,
        );
        (Update::Updated, event)
    }

    /// The shared data set for `ds`'s type, (re)built when it changed.
    fn data_set<D: DataSetLike>(&self, ds: &D) -> Arc<DataSet> {
        let type_name = ds.type_name();
        let mut sets = self.data_sets.lock();
        if let Some(s) = sets.get(&*type_name) {
            if ds.same_types(s)
                && (0..ds.len()).all(|i| {
                    let o = ds.source(i);
                    o.name == s.sources[i].name
                        && o.min.to_bits() == s.sources[i].min.to_bits()
                        && o.max.to_bits() == s.sources[i].max.to_bits()
                })
            {
                return s.clone();
            }
        }
        let set = Arc::new(ds.to_owned_set());
        sets.insert(type_name.into(), set.clone());
        set
    }

    fn expired(&self, e: &Entry, now: u64) -> bool {
        let ttl_ns = (cdtime_to_secs(e.interval) * 1e9) as u64 * self.timeout_factor;
        now.saturating_sub(e.updated) >= ttl_ns
    }

    /// Copies the live metrics that match `filter`, sorted by identifier.
    /// `with_values` false copies only names and times (for /v1/metrics).
    pub fn snapshot(&self, filter: &Filter, with_values: bool) -> Snapshot {
        let mut snap = Snapshot::default();
        // Allocate before taking any lock: growing (and first touching) large
        // buffers under a shard lock is what would stall writers.
        let expected = self.len() + self.len() / 16 + 16;
        snap.entries.reserve(expected);
        if with_values {
            snap.values.reserve(expected * 2);
            snap.rates.reserve(expected * 2);
        }
        let now = self.now();
        let all = *filter == Filter::default();
        for shard in self.shards.iter() {
            let mut pos = 0;
            loop {
                let inner = self.lock(shard);
                let held = Instant::now();
                let end = (pos + READ_BATCH).min(inner.slots.len());
                for e in inner.slots[pos..end].iter().flatten() {
                    if self.expired(e, now) || !(all || filter.matches(&e.name)) {
                        continue;
                    }
                    snap.entries.push(SnapEntry {
                        name: e.name.clone(),
                        ds: e.ds.clone(),
                        time: e.time,
                        interval: e.interval,
                        meta: e.meta.clone(),
                        seq: 0,
                        offset: snap.values.len() as u32,
                    });
                    if with_values {
                        snap.values.extend(e.values());
                        snap.rates.extend_from_slice(e.rates());
                    }
                }
                let more = end < inner.slots.len();
                snap.max_lock_hold = snap.max_lock_hold.max(held.elapsed());
                drop(inner);
                if !more {
                    break;
                }
                pos = end;
            }
        }
        if all {
            snap.order = Some(self.sort_full_read(&mut snap.entries));
        } else {
            snap.entries
                .sort_unstable_by(|a, b| a.name.identifier().cmp(b.name.identifier()));
        }
        snap
    }

    /// Sorts the entries of a full read by identifier, reusing the last full
    /// read's order when the same metrics were copied in the same order
    /// (sorting 100k identifiers costs tens of milliseconds; checking and
    /// applying a known order, one pass). Returns the order's generation.
    fn sort_full_read(&self, entries: &mut Vec<SnapEntry>) -> u64 {
        let same = |c: &OrderCache| {
            c.names.len() == entries.len()
                && c.names
                    .iter()
                    .zip(entries.iter())
                    .all(|(a, b)| a.same_object(&b.name))
        };
        let cached = {
            let cache = self.order.lock();
            cache
                .as_ref()
                .filter(|c| same(c))
                .map(|c| (c.sorted.clone(), c.generation))
        };
        let (sorted, generation) = match cached {
            Some(hit) => hit,
            None => {
                let mut sorted: Vec<u32> = (0..entries.len() as u32).collect();
                sorted.sort_unstable_by(|&a, &b| {
                    let (a, b) = (&entries[a as usize].name, &entries[b as usize].name);
                    a.identifier().cmp(b.identifier())
                });
                let names = entries.iter().map(|e| e.name.clone()).collect();
                let generation = NEXT_ORDER_GENERATION.fetch_add(1, Ordering::Relaxed);
                *self.order.lock() = Some(OrderCache {
                    names,
                    sorted: sorted.clone(),
                    generation,
                });
                (sorted, generation)
            }
        };
        let mut slots: Vec<Option<SnapEntry>> = entries.drain(..).map(Some).collect();
        entries.extend(sorted.iter().filter_map(|&i| slots[i as usize].take()));
        generation
    }

    /// Every sample after `since` (a sequence number; 0: from the start) of
    /// the metrics `filter` selects, in arrival order, at most `limit`.
    /// Returns the samples (each a snapshot entry with its `seq`), the
    /// cursor to pass next time, and how many samples after `since` were
    /// evicted before this read (see `history::Ring::evicted_after`).
    pub fn history(&self, since: u64, limit: usize, filter: &Filter) -> (Snapshot, u64, u64) {
        // Every sample up to `hi` is in its ring by the time we lock its
        // shard: its number was taken under that lock, before this load.
        let hi = self.next_seq.load(Ordering::SeqCst) - 1;
        // A cursor from an earlier run of collectd (numbers restart).
        let since = if since > hi { 0 } else { since };
        let limit = limit.max(1);

        // Pass 1: the `limit` smallest sequence numbers after `since`.
        let mut smallest = std::collections::BinaryHeap::with_capacity(limit + 1);
        let mut candidates = 0usize;
        self.for_each_entry(|e| {
            if !filter.matches(&e.name) || e.history.newest_seq() <= since {
                return;
            }
            let n = e.history.count_after(since);
            for (seq, _, _) in e.history.iter().skip(e.history.len() - n) {
                if seq > hi {
                    break;
                }
                candidates += 1;
                smallest.push(seq);
                if smallest.len() > limit {
                    smallest.pop();
                }
            }
        });
        let truncated = candidates > limit;
        let cursor = if truncated {
            smallest.peek().copied().unwrap_or(hi)
        } else {
            hi
        };

        // Pass 2: copy those samples (and their rates) and count the lost.
        let mut snap = Snapshot::default();
        let mut lost = 0u64;
        self.for_each_entry(|e| {
            if !filter.matches(&e.name) {
                return;
            }
            lost += e.history.evicted_after(since) - e.history.evicted_after(cursor);
            if e.history.newest_seq() <= since {
                return;
            }
            let n = e.history.count_after(since);
            // Start one earlier, for the rate of the first sample returned.
            let skip = e.history.len() - n;
            let mut prev: Option<(CdTime, &[RawValue])> = None;
            for (seq, time, values) in e.history.iter().skip(skip.saturating_sub(1)) {
                if seq > since && seq <= cursor {
                    snap.entries.push(SnapEntry {
                        name: e.name.clone(),
                        ds: e.ds.clone(),
                        time,
                        interval: e.interval,
                        meta: None,
                        seq,
                        offset: snap.values.len() as u32,
                    });
                    snap.values.extend_from_slice(values);
                    for (i, src) in e.ds.sources.iter().enumerate() {
                        let r = match prev {
                            Some((pt, pv)) if time > pt => {
                                next_rate(src.ds_type, pv[i], values[i], cdtime_to_secs(time - pt))
                            }
                            _ => first_rate(src.ds_type, values[i], e.interval),
                        };
                        snap.rates.push(in_range(r, src.min, src.max));
                    }
                }
                prev = Some((time, values));
            }
        });
        snap.entries.sort_unstable_by_key(|e| e.seq);
        (snap, cursor, lost)
    }

    /// Visits every entry, holding each shard lock for one batch at a time.
    fn for_each_entry(&self, mut f: impl FnMut(&Entry)) {
        for shard in self.shards.iter() {
            let mut pos = 0;
            loop {
                let inner = self.lock(shard);
                let end = (pos + READ_BATCH).min(inner.slots.len());
                for e in inner.slots[pos..end].iter().flatten() {
                    f(e);
                }
                let more = end < inner.slots.len();
                drop(inner);
                if !more {
                    break;
                }
                pos = end;
            }
        }
    }

    /// Bytes the history rings hold (for the benchmark).
    pub fn history_bytes(&self) -> (usize, usize) {
        let (mut bytes, mut samples) = (0, 0);
        self.for_each_entry(|e| {
            bytes += e.history.heap_bytes();
            samples += e.history.len();
        });
        (bytes, samples)
    }

    /// The latest value of one metric, if it is live, as a Snapshot (the
    /// tests' view; the API answers with `get_one`).
    #[cfg(test)]
    pub fn get(&self, identifier: &str) -> Option<Snapshot> {
        let now = self.now();
        let hash = self.hash(identifier.as_bytes());
        let inner = self.lock(self.shard(hash));
        let e = inner.get(hash, identifier.as_bytes())?;
        if self.expired(e, now) {
            return None;
        }
        Some(Snapshot {
            entries: vec![latest_entry(e)],
            values: e.values().collect(),
            rates: e.rates().to_vec(),
            max_lock_hold: Default::default(),
            order: None,
        })
    }

    /// `get` for a single value's answer: the same copy, without a
    /// Snapshot's three buffers (a few data sources are copied inline).
    pub fn get_one(&self, identifier: &str) -> Option<One> {
        let now = self.now();
        let hash = self.hash(identifier.as_bytes());
        let inner = self.lock(self.shard(hash));
        let e = inner.get(hash, identifier.as_bytes())?;
        if self.expired(e, now) {
            return None;
        }
        let mut inline = [0.0; 2 * ONE_INLINE];
        let boxed = match inline.get_mut(..e.data.len()) {
            Some(slots) => {
                slots.copy_from_slice(&e.data);
                None
            }
            None => Some(Box::from(&e.data[..])),
        };
        Some(One {
            entry: latest_entry(e),
            width: e.width(),
            inline,
            boxed,
        })
    }

    /// The interval (seconds) of a live metric of `plugin`, if any: the
    /// interval the plugin runs with.
    pub fn plugin_interval(&self, plugin: &str) -> Option<f64> {
        let now = self.now();
        self.shards.iter().find_map(|shard| {
            let inner = self.lock(shard);
            inner
                .slots
                .iter()
                .flatten()
                .find(|e| e.name.plugin() == plugin && !self.expired(e, now))
                .map(|e| cdtime_to_secs(e.interval))
        })
    }

    /// Drops expired metrics; returns how many were dropped.
    pub fn purge_expired(&self) -> usize {
        let now = self.now();
        let mut dropped = 0;
        for shard in self.shards.iter() {
            let mut inner = self.lock(shard);
            for slot in 0..inner.slots.len() {
                if inner.slots[slot]
                    .as_ref()
                    .is_some_and(|e| self.expired(e, now))
                {
                    inner.remove_slot(slot);
                    dropped += 1;
                }
            }
        }
        dropped
    }

    /// Number of metrics held (including expired ones not yet purged).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| self.lock(s).len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn stats(&self) -> StoreStats {
        let now = self.now();
        let mut received = 0;
        let mut last = None::<u64>;
        for shard in self.shards.iter() {
            let inner = self.lock(shard);
            received += inner.received;
            if inner.received > 0 {
                last = Some(last.map_or(inner.last_update, |l| l.max(inner.last_update)));
            }
        }
        StoreStats {
            values_received: received,
            last_value_age: last.map(|l| now.saturating_sub(l) as f64 / 1e9),
        }
    }
}

/// collectd's counter_diff: a counter that went down wrapped at 32 or 64 bits.
pub fn counter_diff(old: u64, new: u64) -> u64 {
    if old > new {
        if old <= u64::from(u32::MAX) {
            (u64::from(u32::MAX) - old) + new + 1
        } else {
            (u64::MAX - old).wrapping_add(new).wrapping_add(1)
        }
    } else {
        new - old
    }
}

/// The rate of a metric's first value (uc_insert).
pub fn first_rate(t: DsType, v: RawValue, interval: CdTime) -> f64 {
    match t {
        DsType::Gauge => v.as_gauge(),
        DsType::Absolute if interval > 0 => v.0 as f64 / cdtime_to_secs(interval),
        _ => f64::NAN,
    }
}

/// The rate between two values `dt` seconds apart (uc_update).
pub fn next_rate(t: DsType, old: RawValue, new: RawValue, dt: f64) -> f64 {
    match t {
        DsType::Gauge => new.as_gauge(),
        DsType::Counter => counter_diff(old.0, new.0) as f64 / dt,
        DsType::Derive => new.as_derive().wrapping_sub(old.as_derive()) as f64 / dt,
        DsType::Absolute => new.0 as f64 / dt,
    }
}

/// uc_check_range: a rate outside the data source's min/max is NaN.
fn in_range(r: f64, min: f64, max: f64) -> f64 {
    if r < min || r > max {
        f64::NAN
    } else {
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{DataSource, MetaRef, MAX_NAME_LEN};

    fn ds(type_name: &str, sources: &[(&str, DsType)]) -> DataSet {
        DataSet {
            type_name: type_name.into(),
            sources: sources
                .iter()
                .map(|(n, t)| DataSource {
                    name: (*n).into(),
                    ds_type: *t,
                    min: if *t == DsType::Gauge { f64::NAN } else { 0.0 },
                    max: f64::NAN,
                })
                .collect(),
        }
    }

    fn vl<'a>(
        fields: [&'a str; 5],
        values: &'a [RawValue],
        time_s: u64,
        interval_s: u64,
    ) -> ValueListRef<'a> {
        ValueListRef {
            host: fields[0].as_bytes(),
            plugin: fields[1].as_bytes(),
            plugin_instance: fields[2].as_bytes(),
            type_: fields[3].as_bytes(),
            type_instance: fields[4].as_bytes(),
            values,
            time: time_s << 30,
            interval: interval_s << 30,
            meta: MetaRef::Absent,
        }
    }

    #[test]
    fn new_update_too_old() {
        let s = ValueStore::new(2, 10);
        let g = ds("gauge", &[("value", DsType::Gauge)]);
        let f = ["h", "p", "", "gauge", ""];
        let v1 = [RawValue::gauge(1.5)];
        assert_eq!(s.update(&g, vl(f, &v1, 100, 10)), Update::New);
        let v2 = [RawValue::gauge(2.5)];
        assert_eq!(s.update(&g, vl(f, &v2, 110, 10)), Update::Updated);
        assert_eq!(s.update(&g, vl(f, &v1, 110, 10)), Update::TooOld);
        assert_eq!(s.update(&g, vl(f, &v1, 105, 10)), Update::TooOld);
        let snap = s.get("h/p/gauge").unwrap();
        let e = &snap.entries[0];
        assert_eq!(snap.values(e), &v2);
        assert_eq!(snap.rates(e), &[2.5]);
        assert_eq!(e.time, 110 << 30);
        assert_eq!(s.stats().values_received, 4);
        assert!(s.stats().last_value_age.unwrap() < 10.0);
        assert_eq!(s.update(&g, vl(f, &[], 120, 10)), Update::Invalid);
    }

    /// Fields that are not UTF-8 are stored converted, and their next
    /// values still update that one metric (found by the converted name).
    #[test]
    fn fields_that_are_not_utf8_update_one_metric() {
        let s = ValueStore::new(2, 10);
        let g = ds("gauge", &[("value", DsType::Gauge)]);
        let raw = |v: &'static [RawValue], t: u64| ValueListRef {
            host: b"h\xff",
            plugin: b"p",
            plugin_instance: b"",
            type_: b"gauge",
            type_instance: b"",
            values: v,
            time: t << 30,
            interval: 10 << 30,
            meta: MetaRef::Absent,
        };
        assert_eq!(s.update(&g, raw(&[RawValue(1)], 100)), Update::New);
        assert_eq!(s.update(&g, raw(&[RawValue(2)], 110)), Update::Updated);
        assert_eq!(s.update(&g, raw(&[RawValue(3)], 105)), Update::TooOld);
        assert_eq!(s.len(), 1);
        assert!(s.get("h\u{fffd}/p/gauge").is_some());
    }

    /// `get_one` copies what `get` copies, inline or (past ONE_INLINE
    /// data sources) boxed.
    #[test]
    fn get_one_is_get() {
        let s = ValueStore::new(2, 10);
        for n in [1, ONE_INLINE, ONE_INLINE + 1] {
            let names: Vec<String> = (0..n).map(|i| format!("v{i}")).collect();
            let sources: Vec<(&str, DsType)> =
                names.iter().map(|n| (n.as_str(), DsType::Gauge)).collect();
            let d = ds("t", &sources);
            let v: Vec<RawValue> = (0..n).map(|i| RawValue::gauge(i as f64)).collect();
            let ty = format!("t{n}");
            s.update(&d, vl(["h", "p", "", &ty, ""], &v, 100, 10));
            let id = format!("h/p/t{n}");
            let (snap, one) = (s.get(&id).unwrap(), s.get_one(&id).unwrap());
            let e = &snap.entries[0];
            assert_eq!(one.values().collect::<Vec<_>>(), snap.values(e));
            assert_eq!(one.rates().len(), n);
            assert_eq!(one.entry.name, e.name);
            assert_eq!((one.entry.time, one.entry.interval), (e.time, e.interval));
        }
        assert!(s.get_one("h/p/nope").is_none());
    }

    /// As in collectd's cache, a metric is its identifier: plugin "a-b"
    /// and plugin "a" with instance "b" are one metric.
    #[test]
    fn one_identifier_is_one_metric() {
        let s = ValueStore::new(2, 10);
        let g = ds("gauge", &[("value", DsType::Gauge)]);
        let v = [RawValue::gauge(1.0)];
        assert_eq!(
            s.update(&g, vl(["h", "a-b", "", "gauge", ""], &v, 100, 10)),
            Update::New
        );
        assert_eq!(
            s.update(&g, vl(["h", "a", "b", "gauge", ""], &v, 110, 10)),
            Update::Updated
        );
        assert_eq!(s.len(), 1);
    }

    /// Identifiers longer than the stack buffer (up to 5 x 127 bytes).
    #[test]
    fn long_identifiers() {
        let s = ValueStore::new(2, 10);
        let g = ds("gauge", &[("value", DsType::Gauge)]);
        let long = "x".repeat(200);
        let f = [&long[..], &long[..], &long[..], "gauge", &long[..]];
        let v = [RawValue::gauge(1.0)];
        assert_eq!(s.update(&g, vl(f, &v, 100, 10)), Update::New);
        assert_eq!(s.update(&g, vl(f, &v, 110, 10)), Update::Updated);
        let x = "x".repeat(MAX_NAME_LEN);
        let id = format!("{x}/{x}-{x}/gauge-{x}");
        assert_eq!(s.get(&id).unwrap().entries[0].name.identifier(), id);
        assert_eq!(s.len(), 1);
    }

    /// One data source (its value and rate inside the entry, `EntryData`)
    /// behaves as several do (in an allocation of their own).
    #[test]
    fn rates_of_one_source() {
        let s = ValueStore::new(2, 10);
        let d = ds("d", &[("value", DsType::Derive)]);
        let f = ["h", "p", "", "d", ""];
        s.update(&d, vl(f, &[RawValue::derive(1000)], 100, 10));
        let snap = s.get("h/p/d").unwrap();
        assert!(snap.rates(&snap.entries[0])[0].is_nan());
        s.update(&d, vl(f, &[RawValue::derive(1250)], 110, 10));
        let snap = s.get("h/p/d").unwrap();
        assert_eq!(snap.values(&snap.entries[0]), &[RawValue::derive(1250)]);
        assert_eq!(snap.rates(&snap.entries[0]), &[25.0]);
        let one = s.get_one("h/p/d").unwrap();
        assert_eq!(one.rates(), &[25.0]);
        assert_eq!(one.values().collect::<Vec<_>>(), [RawValue::derive(1250)]);
    }

    #[test]
    fn rates_like_collectd() {
        let s = ValueStore::new(2, 10);
        let d = ds(
            "mixed",
            &[
                ("c", DsType::Counter),
                ("d", DsType::Derive),
                ("a", DsType::Absolute),
                ("g", DsType::Gauge),
            ],
        );
        let f = ["h", "p", "i", "mixed", "x"];
        let v1 = [
            RawValue(100),
            RawValue::derive(1000),
            RawValue(50),
            RawValue::gauge(7.0),
        ];
        s.update(&d, vl(f, &v1, 100, 10));
        let snap = s.get("h/p-i/mixed-x").unwrap();
        let r = snap.rates(&snap.entries[0]);
        assert!(r[0].is_nan() && r[1].is_nan());
        assert_eq!(r[2], 5.0); // absolute / interval
        assert_eq!(r[3], 7.0);

        let v2 = [
            RawValue(300),
            RawValue::derive(900),
            RawValue(20),
            RawValue::gauge(8.0),
        ];
        s.update(&d, vl(f, &v2, 110, 10));
        let snap = s.get("h/p-i/mixed-x").unwrap();
        let r = snap.rates(&snap.entries[0]);
        assert_eq!(r[0], 20.0);
        assert!(r[1].is_nan(), "negative derive rate is below min 0 -> NaN");
        assert_eq!(r[2], 2.0);
        assert_eq!(r[3], 8.0);
    }

    #[test]
    fn counter_wraps() {
        assert_eq!(counter_diff(10, 15), 5);
        assert_eq!(counter_diff(u64::from(u32::MAX) - 1, 3), 5);
        assert_eq!(counter_diff(u64::MAX - 1, 3), 5);
    }

    #[test]
    fn data_set_change_replaces_entry() {
        let s = ValueStore::new(2, 10);
        let f = ["h", "p", "", "t", ""];
        let one = ds("t", &[("value", DsType::Gauge)]);
        let two = ds("t", &[("rx", DsType::Derive), ("tx", DsType::Derive)]);
        s.update(&one, vl(f, &[RawValue::gauge(1.0)], 100, 10));
        let vals = [RawValue::derive(1), RawValue::derive(2)];
        assert_eq!(s.update(&two, vl(f, &vals, 110, 10)), Update::New);
        let snap = s.get("h/p/t").unwrap();
        assert_eq!(snap.entries[0].ds.sources.len(), 2);
        assert_eq!(snap.values(&snap.entries[0]), &vals);
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn snapshot_sorted_filtered() {
        let s = ValueStore::new(2, 10);
        let g = ds("gauge", &[("value", DsType::Gauge)]);
        for (i, host) in ["b", "a", "c"].iter().enumerate() {
            for p in ["x", "y"] {
                let v = [RawValue::gauge(i as f64)];
                s.update(&g, vl([host, p, "", "gauge", ""], &v, 100, 10));
            }
        }
        let all = s.snapshot(&Filter::default(), true);
        let ids: Vec<_> = all.entries.iter().map(|e| e.name.identifier()).collect();
        assert_eq!(
            ids,
            [
                "a/x/gauge",
                "a/y/gauge",
                "b/x/gauge",
                "b/y/gauge",
                "c/x/gauge",
                "c/y/gauge"
            ]
        );
        assert_eq!(all.values(&all.entries[0]), &[RawValue::gauge(1.0)]);
        let f = Filter {
            plugin: Some("y".into()),
            ..Default::default()
        };
        let ys = s.snapshot(&f, false);
        assert_eq!(ys.entries.len(), 3);
        assert!(ys.entries.iter().all(|e| e.name.plugin() == "y"));
    }

    #[test]
    fn full_reads_stay_sorted_as_metrics_come_and_go() {
        let s = ValueStore::new(2, 10);
        let g = ds("gauge", &[("value", DsType::Gauge)]);
        let one = ds("gauge", &[("a", DsType::Derive), ("b", DsType::Derive)]);
        let v = [RawValue::gauge(1.0)];
        let ids = |s: &ValueStore| -> Vec<String> {
            let snap = s.snapshot(&Filter::default(), true);
            snap.entries
                .iter()
                .map(|e| {
                    assert_eq!(snap.values(e).len(), e.ds.sources.len());
                    e.name.identifier().to_string()
                })
                .collect()
        };
        let mut expected: Vec<String> = Vec::new();
        for i in (0..300).rev() {
            let p = format!("p{i:03}");
            s.update(&g, vl(["h", &p, "", "gauge", ""], &v, 100, 10));
            expected.push(format!("h/{p}/gauge"));
        }
        expected.sort();
        assert_eq!(ids(&s), expected);
        assert_eq!(ids(&s), expected, "the cached order");
        s.update(&g, vl(["a", "new", "", "gauge", ""], &v, 100, 10));
        expected.insert(0, "a/new/gauge".into());
        assert_eq!(ids(&s), expected, "a new metric");
        // a data set change replaces the entry: same name, new object
        let two = [RawValue::derive(1), RawValue::derive(2)];
        s.update(&one, vl(["h", "p150", "", "gauge", ""], &two, 110, 10));
        assert_eq!(ids(&s), expected, "a replaced metric");
        let snap = s.snapshot(&Filter::default(), true);
        let e = snap
            .entries
            .iter()
            .find(|e| e.name.plugin() == "p150")
            .unwrap();
        assert_eq!(snap.values(e), &two);
    }

    #[test]
    fn expiry_follows_timeout_times_interval() {
        let s = ValueStore::new(2, 10);
        let g = ds("gauge", &[("value", DsType::Gauge)]);
        let one = [RawValue::gauge(1.0)];
        let mut v = vl(["h", "p", "", "gauge", ""], &one, 100, 0);
        v.interval = 1 << 20; // ~1 ms
        s.update(&g, v);
        let deadline = Instant::now() + std::time::Duration::from_secs(5);
        while s.get("h/p/gauge").is_some() {
            assert!(Instant::now() < deadline, "metric never expired");
            std::thread::yield_now();
        }
        assert!(s.snapshot(&Filter::default(), true).entries.is_empty());
        assert_eq!(s.purge_expired(), 1);
        assert!(s.is_empty());
    }

    #[test]
    fn batched_reads_see_every_metric_once() {
        // ~300 metrics per shard: every shard is read in several batches.
        let s = ValueStore::new(2, 10);
        let g = ds("gauge", &[("value", DsType::Gauge)]);
        let v = [RawValue::gauge(1.0)];
        let n = SHARDS * READ_BATCH * 2 + 7;
        let names: Vec<String> = (0..n).map(|i| format!("p{i}")).collect();
        for p in &names {
            s.update(&g, vl(["h", p, "", "gauge", ""], &v, 100, 10));
        }
        let snap = s.snapshot(&Filter::default(), true);
        assert_eq!(snap.entries.len(), n);
        let mut ids: Vec<_> = snap.entries.iter().map(|e| e.name.identifier()).collect();
        ids.dedup();
        assert_eq!(ids.len(), n, "no metric twice");
        assert!(snap.max_lock_hold > std::time::Duration::ZERO);
    }

    #[test]
    fn removed_slots_are_reused() {
        let s = ValueStore::new(2, 10);
        let g = ds("gauge", &[("value", DsType::Gauge)]);
        let one = ds("gauge", &[("a", DsType::Derive), ("b", DsType::Derive)]);
        let f = ["h", "p", "", "gauge", ""];
        s.update(&g, vl(f, &[RawValue::gauge(1.0)], 100, 10));
        // a data set change removes and re-inserts the metric
        let two = [RawValue::derive(1), RawValue::derive(2)];
        s.update(&one, vl(f, &two, 110, 10));
        s.update(&one, vl(["h", "q", "", "gauge", ""], &two, 110, 10));
        assert_eq!(s.len(), 2);
        let shard = s.shard(s.hash(b"h/p/gauge")).inner.lock();
        assert_eq!(shard.slots.len(), shard.len(), "the freed slot was reused");
        drop(shard);
        assert_eq!(s.snapshot(&Filter::default(), true).entries.len(), 2);
    }

    /// Runs `f` on another thread and returns its result, failing (not
    /// hanging) if it takes longer than 10 s: a write thread must not wait
    /// for a lock a reader holds.
    fn on_another_thread<R: Send>(f: impl FnOnce() -> R + Send) -> R {
        std::thread::scope(|t| {
            let (tx, rx) = std::sync::mpsc::channel();
            t.spawn(move || {
                let _ = tx.send(f());
            });
            rx.recv_timeout(std::time::Duration::from_secs(10))
                .expect("a write waited for the shard lock")
        })
    }

    #[test]
    fn a_write_never_waits_for_a_reader_and_is_applied_when_it_unlocks() {
        let s = ValueStore::new(2, 10);
        let g = ds("gauge", &[("value", DsType::Gauge)]);
        let f = ["h", "p", "", "gauge", ""];
        let new = ["h", "p", "", "gauge", "new"];
        assert_eq!(
            s.update(&g, vl(f, &[RawValue::gauge(1.0)], 100, 10)),
            Update::New
        );
        let shard = s.shard(s.hash(b"h/p/gauge"));
        let held = s.lock(shard);
        // A known metric and a new one of the same shard, while a reader
        // holds its lock (the new name is picked to land there).
        let n2 = (0..)
            .map(|i| format!("new{i}"))
            .find(|ti| std::ptr::eq(s.shard(s.hash(format!("h/p/gauge-{ti}").as_bytes())), shard))
            .unwrap();
        let new = [new[0], new[1], new[2], new[3], n2.as_str()];
        let (a, b) = on_another_thread(|| {
            (
                s.update(&g, vl(f, &[RawValue::gauge(2.0)], 110, 10)),
                s.update(&g, vl(new, &[RawValue::gauge(7.0)], 110, 10)),
            )
        });
        assert_eq!((a, b), (Update::Deferred, Update::Deferred));
        assert_eq!(s.deferred_count(), 2);
        assert!(held.get(s.hash(b"h/p/gauge"), b"h/p/gauge").unwrap().time == 100 << 30);
        drop(held);
        // Applied by the reader as it unlocked, before anything else read.
        assert!(!shard.has_pending.load(Ordering::SeqCst));
        let inner = shard.inner.lock();
        let e = inner.get(s.hash(b"h/p/gauge"), b"h/p/gauge").unwrap();
        assert_eq!(
            (e.time, e.values().next()),
            (110 << 30, Some(RawValue::gauge(2.0)))
        );
        let id = format!("h/p/gauge-{n2}");
        let e = inner.get(s.hash(id.as_bytes()), id.as_bytes()).unwrap();
        assert_eq!(e.values().next(), Some(RawValue::gauge(7.0)));
        drop(inner);
        assert_eq!(s.stats().values_received, 3);
        // Their history samples are there too, in the order applied.
        let (h, _, _) = s.history(0, 10, &Filter::default());
        assert_eq!(h.entries.len(), 3);
    }

    #[test]
    fn a_deferred_value_that_crosses_a_threshold_reaches_the_event_sink() {
        let s = ValueStore::new(2, 10);
        let mut th: crate::rules::thresholds::Threshold =
            serde_json::from_value(serde_json::json!({ "type": "gauge", "warning_max": 10.0 }))
                .unwrap();
        th.failure_max = None;
        s.thresholds.put("t", th, |_| Ok(())).unwrap();
        let sent = Arc::new(Mutex::new(Vec::new()));
        let to = sent.clone();
        s.set_event_sink(Box::new(move |n| to.lock().push(n)));
        let g = ds("gauge", &[("value", DsType::Gauge)]);
        let f = ["h", "p", "", "gauge", ""];
        let (_, event) = s.record(&g, &vl(f, &[RawValue::gauge(1.0)], 100, 10));
        assert!(event.is_none(), "with a sink, notifications go to it");
        let before = sent.lock().len();
        let held = s.lock(s.shard(s.hash(b"h/p/gauge")));
        let r = on_another_thread(|| s.record(&g, &vl(f, &[RawValue::gauge(50.0)], 110, 10)));
        assert!(matches!(r, (Update::Deferred, None)));
        assert_eq!(sent.lock().len(), before);
        drop(held);
        // Back to okay, applied by its own write thread: after the warning.
        let (_, event) = s.record(&g, &vl(f, &[RawValue::gauge(5.0)], 120, 10));
        assert!(event.is_none());
        let sent = sent.lock();
        let severities: Vec<_> = sent[before..].iter().map(|n| n.severity).collect();
        use crate::model::Severity::{Okay, Warning};
        assert_eq!(severities, [Warning, Okay], "{sent:?}");
        assert!(sent.iter().all(|n| n.plugin == "p"));
    }

    /// Write threads and a reader at once: once they are done, nothing is
    /// left pending and every metric holds its last value.
    #[test]
    fn nothing_is_left_pending_after_concurrent_writes_and_reads() {
        let s = ValueStore::new(2, 4);
        let g = ds("gauge", &[("value", DsType::Gauge)]);
        let names: Vec<String> = (0..2000).map(|i| format!("i{i}")).collect();
        const ROUNDS: u64 = 30;
        let stop = AtomicBool::new(false);
        std::thread::scope(|t| {
            let (s, stop) = (&s, &stop);
            t.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    s.snapshot(&Filter::default(), true);
                }
            });
            let writers: Vec<_> = (0..2)
                .map(|w| {
                    let (g, names) = (&g, &names);
                    t.spawn(move || {
                        for r in 1..=ROUNDS {
                            for n in names.iter().skip(w).step_by(2) {
                                let f = ["h", "p", "", "gauge", n.as_str()];
                                s.update(g, vl(f, &[RawValue::gauge(r as f64)], r, 10));
                            }
                        }
                    })
                })
                .collect();
            for w in writers {
                w.join().unwrap();
            }
            stop.store(true, Ordering::Relaxed);
        });
        assert_eq!(s.stats().values_received, 2000 * ROUNDS);
        assert!(
            s.deferred_count() > 0,
            "no write found a shard locked: nothing was tested"
        );
        for shard in s.shards.iter() {
            assert!(!shard.has_pending.load(Ordering::SeqCst));
        }
        let snap = s.snapshot(&Filter::default(), true);
        assert_eq!(snap.entries.len(), 2000);
        for e in &snap.entries {
            assert_eq!(
                snap.values(e),
                &[RawValue::gauge(ROUNDS as f64)],
                "{}",
                e.name.identifier()
            );
        }
    }

    /// (identifier, value) of each sample of a history read.
    fn samples(snap: &Snapshot) -> Vec<(String, f64)> {
        snap.entries
            .iter()
            .map(|e| {
                (
                    e.name.identifier().to_string(),
                    snap.values(e)[0].as_gauge(),
                )
            })
            .collect()
    }

    #[test]
    fn history_in_arrival_order_with_cursors() {
        let s = ValueStore::new(2, 10);
        let g = ds("gauge", &[("value", DsType::Gauge)]);
        let put = |p: &str, t: u64, v: f64| {
            s.update(
                &g,
                vl(["h", p, "", "gauge", ""], &[RawValue::gauge(v)], t, 10),
            );
        };
        put("a", 100, 1.0);
        put("b", 100, 2.0);
        put("a", 110, 3.0);
        let (snap, cursor, lost) = s.history(0, 100, &Filter::default());
        assert_eq!(
            samples(&snap),
            [
                ("h/a/gauge".into(), 1.0),
                ("h/b/gauge".into(), 2.0),
                ("h/a/gauge".into(), 3.0)
            ]
        );
        assert_eq!((cursor, lost), (3, 0));
        put("b", 110, 4.0);
        let (snap, cursor, _) = s.history(cursor, 100, &Filter::default());
        assert_eq!(samples(&snap), [("h/b/gauge".into(), 4.0)]);
        assert_eq!(cursor, 4);
        let (snap, cursor2, _) = s.history(cursor, 100, &Filter::default());
        assert!(snap.entries.is_empty());
        assert_eq!(cursor2, 4);
        // a limit: the cursor continues exactly where the page stopped
        let (p1, c1, _) = s.history(0, 3, &Filter::default());
        let (p2, c2, _) = s.history(c1, 3, &Filter::default());
        assert_eq!((p1.entries.len(), p2.entries.len(), c1, c2), (3, 1, 3, 4));
        // filters
        let f = Filter {
            plugin: Some("b".into()),
            ..Default::default()
        };
        let (snap, _, _) = s.history(0, 100, &f);
        assert_eq!(
            samples(&snap),
            [("h/b/gauge".into(), 2.0), ("h/b/gauge".into(), 4.0)]
        );
        // a cursor from an earlier run of collectd reads from the start
        let (snap, _, _) = s.history(1000, 100, &Filter::default());
        assert_eq!(snap.entries.len(), 4);
    }

    #[test]
    fn history_overflow_counts_lost() {
        let s = ValueStore::new(2, 3);
        let g = ds("gauge", &[("value", DsType::Gauge)]);
        let f = ["h", "p", "", "gauge", ""];
        for t in 1..=5u64 {
            s.update(&g, vl(f, &[RawValue::gauge(t as f64)], t, 10));
        }
        // samples 1..5; the ring keeps 3..5
        let (snap, cursor, lost) = s.history(0, 100, &Filter::default());
        assert_eq!(
            samples(&snap).iter().map(|x| x.1).collect::<Vec<_>>(),
            [3.0, 4.0, 5.0]
        );
        assert_eq!((cursor, lost), (5, 2));
        // a reader that had seen sample 1 lost sample 2
        let (snap, _, lost) = s.history(1, 100, &Filter::default());
        assert_eq!((snap.entries.len(), lost), (3, 1));
        // one that keeps up loses nothing
        let (_, _, lost) = s.history(4, 100, &Filter::default());
        assert_eq!(lost, 0);
        // with a limit, the lost are counted once, on the page they precede
        let (_, c, lost1) = s.history(0, 1, &Filter::default());
        let (_, _, lost2) = s.history(c, 100, &Filter::default());
        assert_eq!((lost1, lost2), (2, 0));
    }

    #[test]
    fn history_rates_per_sample() {
        let s = ValueStore::new(2, 10);
        let d = ds("derive", &[("value", DsType::Derive)]);
        let f = ["h", "p", "", "derive", ""];
        for (t, v) in [(100u64, 0i64), (110, 100), (120, 300)] {
            s.update(&d, vl(f, &[RawValue::derive(v)], t, 10));
        }
        let (snap, _, _) = s.history(0, 100, &Filter::default());
        let rates: Vec<f64> = snap.entries.iter().map(|e| snap.rates(e)[0]).collect();
        assert!(rates[0].is_nan());
        assert_eq!(&rates[1..], [10.0, 20.0]);
        // the rate of the first sample after a cursor uses the one before
        let (snap, _, _) = s.history(2, 100, &Filter::default());
        assert_eq!(snap.rates(&snap.entries[0]), [20.0]);
    }

    #[test]
    fn meta_is_kept_and_replaced() {
        let s = ValueStore::new(2, 10);
        let g = ds("gauge", &[("value", DsType::Gauge)]);
        let f = ["h", "p", "", "gauge", ""];
        let one = [RawValue::gauge(1.0)];
        let mut v = vl(f, &one, 100, 10);
        v.meta = MetaRef::Converted(Arc::new(vec![(
            "k".into(),
            crate::model::MetaValue::String("v".into()),
        )]));
        s.update(&g, v);
        let snap = s.get("h/p/gauge").unwrap();
        assert_eq!(snap.entries[0].meta.as_ref().unwrap()[0].0, "k");
        s.update(&g, vl(f, &[RawValue::gauge(1.0)], 110, 10));
        assert!(s.get("h/p/gauge").unwrap().entries[0].meta.is_none());
    }

    #[test]
    fn concurrent_writers_and_readers() {
        let s = Arc::new(ValueStore::new(2, 10));
        let g = Arc::new(ds("gauge", &[("value", DsType::Gauge)]));
        let writers: Vec<_> = (0..4)
            .map(|w| {
                let (s, g) = (s.clone(), g.clone());
                std::thread::spawn(move || {
                    for t in 1..50u64 {
                        for m in 0..100 {
                            let pi = format!("{w}-{m}");
                            let v = [RawValue::gauge(t as f64)];
                            s.update(&*g, vl(["h", "p", &pi, "gauge", ""], &v, t, 10));
                        }
                    }
                })
            })
            .collect();
        for _ in 0..20 {
            let snap = s.snapshot(&Filter::default(), true);
            assert!(snap.entries.len() <= 400);
        }
        for w in writers {
            w.join().unwrap();
        }
        let snap = s.snapshot(&Filter::default(), true);
        assert_eq!(snap.entries.len(), 400);
        for e in &snap.entries {
            assert_eq!(snap.values(e), &[RawValue::gauge(49.0)]);
        }
    }
}
