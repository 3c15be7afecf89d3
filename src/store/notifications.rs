//! The notification ring: the last N notifications collectd delivered, each
//! with a sequence number (1, 2, ...). Readers keep a cursor (the last seq
//! they saw) and learn how many were evicted before they could read them.

use std::collections::VecDeque;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::model::{Notification, Severity};

/// A notification with its sequence number.
#[derive(Clone, Debug, PartialEq)]
pub struct Sequenced {
    pub seq: u64,
    pub notification: Notification,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct NotificationFilter {
    pub severity: Option<Severity>,
    pub plugin: Option<String>,
}

impl NotificationFilter {
    fn matches(&self, n: &Notification) -> bool {
        self.severity.is_none_or(|s| s == n.severity)
            && self.plugin.as_deref().is_none_or(|p| p == n.plugin)
    }
}

/// The answer to a poll.
#[derive(Debug, Default)]
pub struct Page {
    pub items: Vec<Arc<Sequenced>>,
    /// The seq to pass as `since` next time.
    pub cursor: u64,
    /// Notifications after `since` that were evicted before this read.
    pub lost: u64,
}

struct Ring {
    buf: VecDeque<Arc<Sequenced>>,
    /// The seq the next notification gets.
    next_seq: u64,
}

pub struct NotificationRing {
    ring: Mutex<Ring>,
    capacity: usize,
    /// Wakes stream readers when a notification arrives.
    pub arrived: tokio::sync::Notify,
}

impl NotificationRing {
    pub fn new(capacity: usize) -> Self {
        NotificationRing {
            ring: Mutex::new(Ring {
                buf: VecDeque::with_capacity(capacity.min(4096)),
                next_seq: 1,
            }),
            capacity: capacity.max(1),
            arrived: tokio::sync::Notify::new(),
        }
    }

    /// Appends a notification; returns its seq.
    pub fn push(&self, notification: Notification) -> u64 {
        let seq = {
            let mut r = self.ring.lock();
            let seq = r.next_seq;
            r.next_seq += 1;
            if r.buf.len() == self.capacity {
                r.buf.pop_front();
            }
            r.buf.push_back(Arc::new(Sequenced { seq, notification }));
            seq
        };
        self.arrived.notify_waiters();
        seq
    }

    /// The seq of the newest notification (0 when none arrived yet).
    pub fn last_seq(&self) -> u64 {
        self.ring.lock().next_seq - 1
    }

    /// Notifications with seq > `since` that match `filter`, oldest first,
    /// at most `limit`.
    pub fn read(&self, since: u64, filter: &NotificationFilter, limit: usize) -> Page {
        let r = self.ring.lock();
        let newest = r.next_seq - 1;
        // A cursor ahead of the newest seq comes from an earlier run of
        // collectd (seqs restart at 1): read from the start.
        let since = if since > newest { 0 } else { since };
        let oldest = r.buf.front().map_or(r.next_seq, |n| n.seq);
        let mut page = Page {
            items: Vec::new(),
            cursor: since,
            lost: oldest.saturating_sub(since + 1),
        };
        let start = (since + 1).saturating_sub(oldest) as usize;
        for n in r.buf.iter().skip(start) {
            if page.items.len() == limit {
                break;
            }
            page.cursor = n.seq;
            if filter.matches(&n.notification) {
                page.items.push(n.clone());
            }
        }
        page
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(sev: Severity, plugin: &str, msg: &str) -> Notification {
        Notification {
            severity: sev,
            time: 1 << 30,
            message: msg.into(),
            host: "h".into(),
            plugin: plugin.into(),
            plugin_instance: String::new(),
            type_: String::new(),
            type_instance: String::new(),
            meta: vec![],
        }
    }

    fn seqs(p: &Page) -> Vec<u64> {
        p.items.iter().map(|i| i.seq).collect()
    }

    #[test]
    fn cursor_and_lost() {
        let r = NotificationRing::new(3);
        let all = NotificationFilter::default();
        let p = r.read(0, &all, 100);
        assert_eq!((seqs(&p), p.cursor, p.lost), (vec![], 0, 0));
        for i in 1..=5 {
            assert_eq!(r.push(n(Severity::Okay, "p", &format!("m{i}"))), i);
        }
        assert_eq!(r.last_seq(), 5);
        // buffer holds 3, 4, 5; 1 and 2 were evicted
        let p = r.read(0, &all, 100);
        assert_eq!((seqs(&p), p.cursor, p.lost), (vec![3, 4, 5], 5, 2));
        let p = r.read(3, &all, 100);
        assert_eq!((seqs(&p), p.cursor, p.lost), (vec![4, 5], 5, 0));
        let p = r.read(5, &all, 100);
        assert_eq!((seqs(&p), p.cursor, p.lost), (vec![], 5, 0));
        let p = r.read(1, &all, 100);
        assert_eq!((seqs(&p), p.lost), (vec![3, 4, 5], 1));
        // a cursor from an earlier run of collectd reads from the start
        let p = r.read(99, &all, 100);
        assert_eq!((seqs(&p), p.cursor, p.lost), (vec![3, 4, 5], 5, 2));
    }

    #[test]
    fn limit_moves_cursor_to_last_returned() {
        let r = NotificationRing::new(10);
        for i in 0..6 {
            r.push(n(Severity::Okay, "p", &i.to_string()));
        }
        let all = NotificationFilter::default();
        let p = r.read(0, &all, 2);
        assert_eq!((seqs(&p), p.cursor), (vec![1, 2], 2));
        let p = r.read(p.cursor, &all, 2);
        assert_eq!((seqs(&p), p.cursor), (vec![3, 4], 4));
        let p = r.read(p.cursor, &all, 2);
        assert_eq!((seqs(&p), p.cursor), (vec![5, 6], 6));
        let p = r.read(p.cursor, &all, 2);
        assert_eq!((seqs(&p), p.cursor), (vec![], 6));
    }

    #[test]
    fn filters_skip_but_cursor_advances() {
        let r = NotificationRing::new(10);
        r.push(n(Severity::Failure, "a", "1"));
        r.push(n(Severity::Okay, "b", "2"));
        r.push(n(Severity::Warning, "a", "3"));
        r.push(n(Severity::Okay, "c", "4"));
        let f = NotificationFilter {
            plugin: Some("a".into()),
            ..Default::default()
        };
        let p = r.read(0, &f, 100);
        assert_eq!((seqs(&p), p.cursor), (vec![1, 3], 4));
        let f = NotificationFilter {
            severity: Some(Severity::Okay),
            ..Default::default()
        };
        let p = r.read(0, &f, 1);
        assert_eq!((seqs(&p), p.cursor), (vec![2], 2));
        let p = r.read(2, &f, 1);
        assert_eq!((seqs(&p), p.cursor), (vec![4], 4));
    }
}
