//! `Version` and `Hlc`: the hybrid logical clock that orders every write of the cluster.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

/// Bits of an HLC value that hold the logical counter; the physical milliseconds are above them.
pub const HLC_LOGICAL_BITS: u32 = 16;

/// The largest wall-clock millisecond an HLC can hold (48 bits: the year 10889).
pub const HLC_MAX_WALL_MS: u64 = (1 << (64 - HLC_LOGICAL_BITS)) - 1;

/// The version of a stored value or tombstone: a hybrid logical clock reading and the writer's node.
///
/// Ordered by `hlc`, then `node`, so two nodes that write the same key at the same clock reading
/// still agree which write wins (invariant 5: merges keep the larger version).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Version {
    /// Physical milliseconds in the top 48 bits, logical counter in the low 16.
    pub hlc: u64,
    /// The node that made the write.
    pub node: u32,
}

impl Version {
    /// The wall-clock millisecond part of `hlc`.
    pub fn wall_ms(self) -> u64 {
        self.hlc >> HLC_LOGICAL_BITS
    }
}

/// A hybrid logical clock shared by all partitions of a node.
///
/// Lock-free: one `AtomicU64` holding the last value handed out, so partitions running on
/// different threads never wait on each other to version a write.
#[derive(Debug)]
pub struct Hlc {
    node: u32,
    /// The last HLC value handed out or observed; readings are always above it.
    last: AtomicU64,
}

impl Hlc {
    /// A clock for `node` that has not handed out any version yet.
    pub fn new(node: u32) -> Hlc {
        Hlc {
            node,
            last: AtomicU64::new(0),
        }
    }

    /// The node id stamped into every version this clock hands out.
    pub fn node(&self) -> u32 {
        self.node
    }

    /// A fresh version, strictly greater than every version this clock handed out or observed.
    ///
    /// `wall_ms` is the caller's wall clock (the crate never reads one). When the wall clock stands
    /// still or goes backwards, the logical counter advances instead; when the counter is full it
    /// carries into the physical part, which stays correct (still strictly increasing).
    pub fn now(&self, wall_ms: u64) -> Version {
        let physical = wall_ms.min(HLC_MAX_WALL_MS) << HLC_LOGICAL_BITS;
        let next = |last: u64| last.saturating_add(1).max(physical);
        let (Ok(last) | Err(last)) =
            self.last
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |last| Some(next(last)));
        Version {
            hlc: next(last),
            node: self.node,
        }
    }

    /// Records a version received from another node, so that later local versions exceed it.
    pub fn observe(&self, hlc: u64) {
        self.last.fetch_max(hlc, Ordering::AcqRel);
    }

    /// A fresh version that is also greater than `replaced` (the version of the value a write
    /// replaces), even if `replaced` came from a node whose clock runs ahead and was not observed.
    pub fn now_after(&self, wall_ms: u64, replaced: Option<Version>) -> Version {
        let version = self.now(wall_ms);
        match replaced {
            Some(replaced) if version <= replaced => {
                self.observe(replaced.hlc);
                let version = self.now(wall_ms);
                debug_assert!(version > replaced);
                version
            }
            _ => version,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_order_by_clock_then_node() {
        let older = Version { hlc: 5, node: 9 };
        let newer = Version { hlc: 6, node: 1 };
        assert!(older < newer);
        assert!(Version { hlc: 6, node: 2 } > newer);
    }

    #[test]
    fn readings_strictly_increase_when_the_wall_clock_stands_still_or_goes_back() {
        let hlc = Hlc::new(3);
        let first = hlc.now(1_000);
        let second = hlc.now(1_000);
        let third = hlc.now(999);
        assert!(first < second && second < third);
        assert_eq!(first.wall_ms(), 1_000);
        assert_eq!(third.wall_ms(), 1_000);
        assert_eq!(third.node, 3);
        let later = hlc.now(2_000);
        assert_eq!(later.hlc, 2_000 << HLC_LOGICAL_BITS);
    }

    #[test]
    fn readings_exceed_an_observed_remote_version() {
        let hlc = Hlc::new(1);
        let remote = (50_000u64 << HLC_LOGICAL_BITS) + 7;
        hlc.observe(remote);
        assert!(hlc.now(10).hlc > remote);
        hlc.observe(3);
        assert!(hlc.now(10).hlc > remote + 1);
    }

    #[test]
    fn a_new_version_exceeds_the_unobserved_version_it_replaces() {
        let hlc = Hlc::new(1);
        let replaced = Version {
            hlc: 90_000 << HLC_LOGICAL_BITS,
            node: 7,
        };
        assert!(hlc.now_after(10, Some(replaced)) > replaced);
        assert!(hlc.now_after(10, None).hlc > replaced.hlc);
    }

    #[test]
    fn the_first_reading_of_a_stopped_clock_is_not_zero() {
        // memcached treats a CAS of zero as "no CAS", so the CAS derived from a version never is.
        assert!(Hlc::new(0).now(0).hlc >= 1);
    }

    #[test]
    fn concurrent_readings_are_all_distinct() {
        let hlc = std::sync::Arc::new(Hlc::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let hlc = hlc.clone();
                std::thread::spawn(move || (0..10_000).map(|_| hlc.now(1).hlc).collect::<Vec<_>>())
            })
            .collect();
        let mut all: Vec<u64> = threads
            .into_iter()
            .flat_map(|thread| thread.join().expect("thread panicked"))
            .collect();
        let count = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), count);
    }
}
