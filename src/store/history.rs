//! The history of one metric: a ring of its last HistorySize samples.
//!
//! Every sample the store records gets a global sequence number (its place
//! in arrival order); a reader asks for every sample after its cursor. A
//! sample of a metric with one data source takes 16 bytes: the low 32 bits
//! of its sequence number, its time as milliseconds after the ring's base
//! time, and its raw value (8 more bytes per further data source).
//!
//! What a reader missed (`lost`): samples evicted from a ring before the
//! reader read them. The ring knows how many samples it evicted, the
//! sequence numbers of the first sample it ever held and of the last one it
//! evicted: a reader that keeps up (cursor at or after the last eviction)
//! lost nothing, one that reads from before the metric's first sample lost
//! all evictions; in between (a reader that fell behind mid-way) the count
//! is interpolated along the sequence numbers, exact when the metric's
//! samples arrive evenly among the others.

use crate::model::{CdTime, RawValue};

const CDTIME_PER_MS: f64 = 1_073_741.824;

/// The ring of one metric.
#[derive(Debug, Clone)]
pub struct Ring {
    capacity: u32,
    /// Where the oldest sample is once the ring is full.
    head: u32,
    /// The samples, each `1 + width` words: first the low 32 bits of its
    /// sequence number and the milliseconds after `base` (packed, see
    /// `pack`), then its `width` values. One buffer, one allocation.
    slots: Vec<RawValue>,
    width: u8,
    base: CdTime,
    newest_seq: u64,
    first_seq: u64,
    last_evicted_seq: u64,
    evicted: u64,
}

impl Ring {
    /// A ring for `capacity` samples of `width` values; memory grows with
    /// the samples up to the capacity.
    pub fn new(capacity: usize, width: usize, first_time: CdTime) -> Ring {
        let start = capacity.min(8);
        let width = width.clamp(1, u8::MAX as usize);
        Ring {
            capacity: capacity.clamp(1, u32::MAX as usize) as u32,
            head: 0,
            slots: Vec::with_capacity(start * (1 + width)),
            width: width as u8,
            base: first_time,
            newest_seq: 0,
            first_seq: 0,
            last_evicted_seq: 0,
            evicted: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.slots.len() / self.stride()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Words per sample.
    fn stride(&self) -> usize {
        1 + usize::from(self.width)
    }

    /// (low 32 bits of the sequence number, milliseconds after `base`) of
    /// the sample in slot `i`.
    fn meta(&self, i: usize) -> (u32, u32) {
        let m = self.slots[i * self.stride()].0;
        ((m >> 32) as u32, m as u32)
    }

    fn pack(seq: u64, ms: u32) -> RawValue {
        RawValue((u64::from(seq as u32) << 32) | u64::from(ms))
    }

    fn values_at(&self, i: usize) -> &[RawValue] {
        let st = self.stride();
        &self.slots[i * st + 1..(i + 1) * st]
    }

    fn full_seq(&self, lo: u32) -> u64 {
        self.newest_seq - u64::from((self.newest_seq as u32).wrapping_sub(lo))
    }

    fn ms_after_base(&self, time: CdTime) -> Option<u32> {
        // d * 1000 / 2^30, rounded: integer arithmetic on the write path.
        let d = u128::from(time.saturating_sub(self.base));
        u32::try_from((d * 1000 + (1 << 29)) >> 30).ok()
    }

    /// Makes room in the millisecond range for `time`: samples more than
    /// 49 days older than `time` (a metric silent that long) are dropped,
    /// counted as evicted, and the base moves to the oldest one left.
    fn rebase(&mut self, time: CdTime) {
        let span = (f64::from(u32::MAX) * CDTIME_PER_MS) as CdTime;
        let w = usize::from(self.width);
        let kept: Vec<(u64, CdTime, Vec<RawValue>)> =
            self.iter().map(|(s, t, v)| (s, t, v.to_vec())).collect();
        let (old, kept): (Vec<_>, Vec<_>) = kept
            .into_iter()
            .partition(|(_, t, _)| time.saturating_sub(*t) > span);
        if let Some((last, _, _)) = old.last() {
            self.last_evicted_seq = *last;
        }
        self.evicted += old.len() as u64;
        self.base = kept.first().map_or(time, |k| k.1).min(time);
        self.slots.clear();
        self.head = 0;
        for (seq, t, v) in kept {
            let ms = ((t - self.base) as f64 / CDTIME_PER_MS).round() as u32;
            self.slots.push(Self::pack(seq, ms));
            self.slots.extend_from_slice(&v[..w]);
        }
    }

    /// Appends a sample; evicts the oldest once full. Inlined: it runs for
    /// every value on the write path.
    #[inline(always)]
    pub fn push(&mut self, seq: u64, time: CdTime, values: &[RawValue]) {
        if values.len() != usize::from(self.width) {
            return;
        }
        if self.first_seq == 0 {
            self.first_seq = seq;
        }
        let ms = match self.ms_after_base(time) {
            Some(ms) => ms,
            None => {
                self.rebase(time);
                self.ms_after_base(time).unwrap_or(u32::MAX)
            }
        };
        let st = self.stride();
        if self.slots.len() < self.capacity as usize * st {
            if self.slots.len() + st > self.slots.capacity() {
                // Grow by doubling, never past the capacity.
                let len = self.len();
                let more = len.max(1).min(self.capacity as usize - len);
                self.slots.reserve_exact(more * st);
            }
            self.slots.push(Self::pack(seq, ms));
            // One value (most types): a store, not a call to memcpy.
            match values {
                [v] => self.slots.push(*v),
                _ => self.slots.extend_from_slice(values),
            }
        } else {
            let i = self.head as usize;
            self.last_evicted_seq = self.full_seq(self.meta(i).0);
            self.evicted += 1;
            self.slots[i * st] = Self::pack(seq, ms);
            match values {
                [v] => self.slots[i * st + 1] = *v,
                _ => self.slots[i * st + 1..(i + 1) * st].copy_from_slice(values),
            }
            self.head = (self.head + 1) % self.capacity;
        }
        self.newest_seq = seq;
    }

    /// Slot indexes, oldest first.
    fn order(&self) -> impl Iterator<Item = usize> + '_ {
        let n = self.len();
        let head = if n < self.capacity as usize {
            0
        } else {
            self.head as usize
        };
        (0..n).map(move |k| (head + k) % n)
    }

    /// The newest sequence number (0: empty).
    pub fn newest_seq(&self) -> u64 {
        self.newest_seq
    }

    /// How many of the newest samples have a sequence number above `seq`.
    pub fn count_after(&self, seq: u64) -> usize {
        if self.newest_seq <= seq {
            return 0;
        }
        let n = self.len();
        let mut count = 0;
        // Newest first: stop at the first one not after `seq`.
        for k in (0..n).rev() {
            let i = self.order_at(k);
            if self.full_seq(self.meta(i).0) <= seq {
                break;
            }
            count += 1;
        }
        count
    }

    /// The slot of the k-th oldest sample.
    fn order_at(&self, k: usize) -> usize {
        let n = self.len();
        if n < self.capacity as usize {
            k
        } else {
            (self.head as usize + k) % n
        }
    }

    /// (sequence number, time, values), oldest first.
    pub fn iter(&self) -> impl Iterator<Item = (u64, CdTime, &[RawValue])> + '_ {
        self.order().map(move |i| {
            let (lo, ms) = self.meta(i);
            let time = self.base + (f64::from(ms) * CDTIME_PER_MS) as CdTime;
            (self.full_seq(lo), time, self.values_at(i))
        })
    }

    /// How many evicted samples have a sequence number above `cursor`.
    pub fn evicted_after(&self, cursor: u64) -> u64 {
        if self.evicted == 0 || cursor >= self.last_evicted_seq {
            0
        } else if cursor < self.first_seq {
            self.evicted
        } else {
            // Evicted samples with seq <= cursor, interpolated between the
            // first one (first_seq) and the last (last_evicted_seq).
            let span = (self.last_evicted_seq - self.first_seq) as f64;
            let at_or_before =
                1.0 + ((cursor - self.first_seq) as f64 / span) * (self.evicted - 1) as f64;
            self.evicted - (at_or_before.floor() as u64).min(self.evicted)
        }
    }

    /// Bytes this ring holds for its samples (for the benchmark).
    pub fn heap_bytes(&self) -> usize {
        self.slots.capacity() * 8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(x: u64) -> [RawValue; 1] {
        [RawValue(x)]
    }

    fn seqs(r: &Ring) -> Vec<u64> {
        r.iter().map(|(s, _, _)| s).collect()
    }

    #[test]
    fn keeps_the_last_samples_in_order() {
        let mut r = Ring::new(3, 1, 10 << 30);
        for (i, seq) in [5u64, 9, 12].iter().enumerate() {
            r.push(*seq, (10 + i as u64) << 30, &v(i as u64));
        }
        assert_eq!(seqs(&r), [5, 9, 12]);
        r.push(20, 13 << 30, &v(3));
        r.push(21, 14 << 30, &v(4));
        assert_eq!(seqs(&r), [12, 20, 21]);
        let times: Vec<CdTime> = r.iter().map(|(_, t, _)| t).collect();
        assert_eq!(times, [12 << 30, 13 << 30, 14 << 30]);
        let values: Vec<u64> = r.iter().map(|(_, _, v)| v[0].0).collect();
        assert_eq!(values, [2, 3, 4]);
        assert_eq!(r.len(), 3);
    }

    #[test]
    fn lost_counts() {
        let mut r = Ring::new(2, 1, 0);
        // seqs 10, 20, ..., 60: 10..40 evicted
        for i in 1..=6u64 {
            r.push(i * 10, i << 30, &v(i));
        }
        assert_eq!(seqs(&r), [50, 60]);
        assert_eq!(r.evicted_after(60), 0);
        assert_eq!(r.evicted_after(45), 0, "kept up: nothing lost");
        assert_eq!(r.evicted_after(40), 0);
        assert_eq!(r.evicted_after(0), 4, "from the start: every eviction");
        assert_eq!(r.evicted_after(9), 4);
        assert_eq!(r.evicted_after(10), 3, "even arrivals: exact");
        assert_eq!(r.evicted_after(25), 2);
        assert_eq!(r.evicted_after(39), 1);
    }

    #[test]
    fn sequence_numbers_past_32_bits() {
        let mut r = Ring::new(4, 2, 0);
        let start = u64::from(u32::MAX) - 1;
        for k in 0..6u64 {
            r.push(start + k, k << 30, &[RawValue(k), RawValue(k + 100)]);
        }
        assert_eq!(seqs(&r), (start + 2..start + 6).collect::<Vec<_>>());
        let last = r.iter().last().unwrap();
        assert_eq!(last.2, &[RawValue(5), RawValue(105)]);
    }

    #[test]
    fn times_beyond_49_days() {
        // The base moves up when the oldest sample allows it.
        let day = 86_400u64 << 30;
        let mut r = Ring::new(2, 1, 0);
        r.push(1, 0, &v(1));
        r.push(2, 40 * day, &v(2));
        r.push(3, 60 * day, &v(3));
        let times: Vec<CdTime> = r.iter().map(|(_, t, _)| t).collect();
        assert!(times[0].abs_diff(40 * day) < (1 << 30) / 1000, "{times:?}");
        assert!(times[1].abs_diff(60 * day) < (1 << 30) / 1000, "{times:?}");
        // A sample 50 days after the newest: the old ones are dropped.
        let mut r = Ring::new(3, 1, 0);
        r.push(1, 0, &v(1));
        r.push(2, 60 << 30, &v(2));
        r.push(3, 50 * day, &v(3));
        assert_eq!(seqs(&r), [3]);
        assert_eq!(r.evicted_after(0), 2);
        let t = r.iter().next().unwrap().1;
        assert!(t.abs_diff(50 * day) < (1 << 30) / 1000);
    }

    #[test]
    fn sixteen_bytes_per_single_value_sample() {
        let mut r = Ring::new(120, 1, 0);
        for i in 1..=120u64 {
            r.push(i, i << 30, &v(i));
        }
        assert_eq!(r.heap_bytes() / 120, 16);
    }
}
