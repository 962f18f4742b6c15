//! Logging helpers: a repeated warning (a scanner hammering the port) is logged at most once a
//! second, so logs stay readable and cannot be used to fill the disk.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Allows one log line per second.
#[derive(Debug, Default)]
pub(crate) struct RateLimited {
    last_second: AtomicU64,
}

impl RateLimited {
    pub(crate) const fn new() -> RateLimited {
        RateLimited {
            last_second: AtomicU64::new(0),
        }
    }

    /// Whether to log now: true at most once per wall-clock second.
    pub(crate) fn allow(&self) -> bool {
        let second = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|elapsed| elapsed.as_secs())
            .unwrap_or(0);
        let last = self.last_second.load(Ordering::Relaxed);
        last != second
            && self
                .last_second
                .compare_exchange(last, second, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}
