//! Rules evaluated on every value: the blacklist (values dropped before
//! collectd's cache) and thresholds (notifications on state changes).

pub mod blacklist;
pub mod set;
pub mod thresholds;
