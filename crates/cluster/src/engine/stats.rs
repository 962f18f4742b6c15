//! Engine counters (cheap atomics, read without locks) and the status summary.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use crate::table::Member;

macro_rules! counters {
    ($( $(#[$doc:meta])* $name:ident ),* $(,)?) => {
        /// Engine counters since start, for metrics and the status page.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct EngineStats {
            $( $(#[$doc])* pub $name: u64, )*
        }

        /// The live counters. Relaxed atomics: statistics, never used to order memory.
        #[derive(Debug, Default)]
        pub(crate) struct Counters {
            $( pub(crate) $name: AtomicU64, )*
        }

        impl EngineStats {
            /// Adds `other`'s counters to these (the longest handoff is the longer of the two):
            /// totals over several nodes or runs.
            pub fn accumulate(&mut self, other: &EngineStats) {
                let longest = self.handoff_duration_ms_max.max(other.handoff_duration_ms_max);
                $( self.$name = self.$name.saturating_add(other.$name); )*
                self.handoff_duration_ms_max = longest;
            }
        }

        impl Counters {
            pub(crate) fn snapshot(&self) -> EngineStats {
                EngineStats {
                    $( $name: self.$name.load(Ordering::Relaxed), )*
                }
            }
        }
    };
}

counters! {
    /// Backups that promoted themselves (rule 1).
    promotions,
    /// Promotions by a backup that was not following the dead primary with a complete copy
    /// (it promoted anyway, being the first live backup of the record).
    promotions_unsynced,
    /// Partitions claimed by this node (rule 2).
    claims,
    /// Claims of partitions that had a record whose owners were all gone: data loss.
    lost_partitions,
    /// Handoffs this node started as the old primary.
    handoffs_started,
    /// Handoffs that took effect (this node adopted the handoff record).
    handoffs_completed,
    /// Handoffs abandoned (target gone, refused, or draining timed out).
    handoffs_aborted,
    /// Sum of the durations of completed handoffs, in ms.
    handoff_duration_ms_total,
    /// Longest completed handoff, in ms.
    handoff_duration_ms_max,
    /// Handoffs this node accepted as the new primary.
    handoffs_taken,
    /// Snapshots started as a primary.
    snapshots_sent,
    /// Snapshots whose receiver reported `SnapshotDone`.
    snapshots_completed,
    /// Snapshots abandoned (link down, resync, lost primaryship).
    snapshots_abandoned,
    /// Snapshot bytes queued (estimated).
    snapshot_bytes_sent,
    /// Snapshots received completely.
    snapshots_received,
    /// Snapshot bytes received (estimated).
    snapshot_bytes_received,
    /// `Resync` requests sent.
    resyncs_sent,
    /// `Resync` requests received.
    resyncs_received,
    /// Replicated entries whose checksum did not match.
    checksum_mismatches,
    /// Replicated frames from a member this node does not follow, or with a gap.
    stale_frames,
    /// Merges started (as a deposed owner).
    merges_started,
    /// Merges whose last frame the primary acknowledged.
    merges_completed,
    /// Merge frames received.
    merge_frames_received,
    /// Keys applied from merges (the image was newer).
    merged_keys,
    /// Partitions streamed whole to their backups because this node became primary with data
    /// still to merge.
    catch_ups,
    /// Times this node stopped being primary because of a record it did not cause.
    depositions,
    /// Relayed requests that had to wait in a partition queue.
    deferred_requests,
    /// Relayed requests refused because a queue was full.
    deferred_rejected,
    /// Relayed requests that waited too long.
    deferred_timed_out,
    /// Keys marked possibly stale by delayed-write promotions and by claims of partitions whose
    /// owners were all lost.
    failover_marked_keys,
    /// Records this node authored.
    records_authored,
    /// Records adopted from others.
    records_adopted,
    /// Partitions whose data this node dropped (not an owner any more).
    partitions_dropped,
    /// Times this node fenced itself.
    fences,
    /// Table requests sent.
    table_requests_sent,
    /// Backups removed while alive (their link went down) that confirmed it over a new link.
    removals_confirmed,
    /// Such backups given up on while still in the view: one that did not confirm within
    /// `confirm_timeout_ms`, or whose snapshots of the partitions that lost frames did not end
    /// within `snapshot_done_timeout_ms` (`link::Confirmation`). Counted per backup.
    removals_unconfirmed,
    /// Partitions that stopped waiting for a backup being brought up to date in place, because
    /// it did not receive their stream again within `confirm_timeout_ms`
    /// (`PrimaryState::resyncing`). Counted per partition.
    resyncs_given_up,
    /// Merges of kept copies that a claim waited for before serving (§5 rule 2).
    claim_merges_awaited,
    /// Such merges given up on: their holder is neither in the view nor linked, or it made no
    /// progress for `confirm_timeout_ms`.
    claim_merges_given_up,
    /// Links this node reset because the stream on them had a gap or a corrupt entry.
    stream_link_resets,
    /// Messages ignored because they named a partition out of range.
    invalid_partitions,
}

/// Most completed handoff durations kept until the node drains them
/// (`Engine::drain_handoff_durations_ms`): the node drains every second, and a whole table
/// moving at once is at most a few thousand handoffs.
pub const HANDOFF_DURATIONS_KEPT_MAX: usize = 4_096;

/// The durations of completed handoffs not yet drained, oldest first, for a histogram.
///
/// A `parking_lot` mutex taken last (after a partition lock), held only to push or swap.
#[derive(Debug, Default)]
pub(crate) struct HandoffDurations {
    durations_ms: Mutex<VecDeque<u64>>,
}

impl HandoffDurations {
    /// Records one completed handoff; past `HANDOFF_DURATIONS_KEPT_MAX` undrained ones the oldest
    /// is dropped (the totals in `EngineStats` still count it).
    pub(crate) fn push(&self, duration_ms: u64) {
        let mut durations_ms = self.durations_ms.lock();
        if durations_ms.len() >= HANDOFF_DURATIONS_KEPT_MAX {
            durations_ms.pop_front();
        }
        durations_ms.push_back(duration_ms);
    }

    /// Takes every duration recorded since the last drain, oldest first.
    pub(crate) fn drain(&self) -> Vec<u64> {
        let mut durations_ms = self.durations_ms.lock();
        std::mem::take(&mut *durations_ms).into()
    }
}

/// What one member owns, as this node's table says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemberOwnership {
    /// Partitions it is primary of.
    pub primaries: u32,
    /// Partitions it is a backup of.
    pub backups: u32,
}

/// The cluster as this node sees it, for status pages, metrics and the simulation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Per member named in the table.
    pub ownership: BTreeMap<Member, MemberOwnership>,
    /// Partitions with fewer synced backups than `min(backups, live nodes - 1)`: copies still to
    /// be made.
    pub under_replicated: u32,
    /// Partitions with fewer live backups than `backups`, whatever the live nodes: also those
    /// a cluster too small cannot copy (a node left alone holds the only copy of everything).
    pub short_of_backups: u32,
    /// The first under-replicated partitions (at most `UNDER_REPLICATED_PARTITIONS_SHOWN`), in
    /// ascending order, for status pages.
    pub under_replicated_partitions: Vec<u32>,
    /// Partitions whose primary or backups are not the targets of this node's view: a
    /// rebalance (snapshot, handoff, or shedding a backup) is still to come.
    pub to_move: u32,
    /// Partitions without a record.
    pub without_record: u32,
    /// Partitions whose primary is not in this node's view.
    pub without_live_primary: u32,
    /// Handoffs this node has in progress as the old primary.
    pub handoffs_in_progress: u32,
    /// Snapshots this node is sending.
    pub snapshots_in_progress: u32,
    /// Snapshots this node is receiving.
    pub snapshots_receiving: u32,
    /// Merges this node is sending (and catch-ups to its backups).
    pub merges_in_progress: u32,
    /// Relayed requests waiting in partition queues.
    pub deferred_requests: u32,
    /// Relayed replies waiting for write-through acknowledgements.
    pub pending_replies: u32,
    /// Replication lag per linked peer: age of the oldest unacknowledged frame, in ms.
    pub lag_ms: BTreeMap<Member, u64>,
    /// Whether this node accepts operations now (not fenced, tables exchanged).
    pub gate_open: bool,
    /// Some partitions with a handoff, snapshot, merge or catch-up in progress (at most
    /// `BUSY_PARTITIONS_SHOWN`), for status pages.
    pub busy_partitions: Vec<u32>,
}

/// Most partitions `Summary::busy_partitions` lists.
pub const BUSY_PARTITIONS_SHOWN: usize = 16;

/// Most partitions `Summary::under_replicated_partitions` lists.
pub const UNDER_REPLICATED_PARTITIONS_SHOWN: usize = 16;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handoff_durations_are_drained_oldest_first_and_once() {
        let durations = HandoffDurations::default();
        durations.push(7);
        durations.push(3);
        assert_eq!(durations.drain(), vec![7, 3]);
        assert_eq!(durations.drain(), Vec::<u64>::new());
    }

    #[test]
    fn undrained_handoff_durations_keep_only_the_newest() {
        let durations = HandoffDurations::default();
        let pushed = HANDOFF_DURATIONS_KEPT_MAX as u64 + 5;
        for duration_ms in 0..pushed {
            durations.push(duration_ms);
        }
        let drained = durations.drain();
        assert_eq!(drained.len(), HANDOFF_DURATIONS_KEPT_MAX);
        assert_eq!(drained.first(), Some(&5));
        assert_eq!(drained.last(), Some(&(pushed - 1)));
    }
}
