//! What the plugin keeps of what collectd delivers: the latest values and
//! the notification ring.

pub mod history;
pub mod notifications;
pub mod values;

pub use notifications::{NotificationFilter, NotificationRing, Page, Sequenced};
pub use values::{Filter, Snapshot, StoreStats, Update, ValueStore};
