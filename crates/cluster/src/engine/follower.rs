//! The follower's side: applying the stream (§6) and snapshots (§7), and taking a partition
//! over by handoff (§8).

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::state::{Following, PartitionState, PrimaryState, StreamMember};
use super::{Ctx, Engine, Host};
use crate::table::{Epoch, Member, Record};
use crate::wire::{PeerMessage, ReplicatedMutation};

/// How a batch of replicated entries went.
enum Applied {
    All,
    /// An entry's checksum did not match; the entries before it were applied.
    Corrupt,
}

impl<H: Host> Engine<H> {
    /// Applies entries of the stream or a snapshot to this node's copy of the partition. During
    /// an in-place snapshot the keys they name are noted in `refreshed`.
    fn apply_entries(
        &self,
        partition: u32,
        entries: impl IntoIterator<Item = ReplicatedMutation>,
        mut refreshed: Option<&mut HashSet<(u8, Bytes)>>,
        now_ms: u64,
    ) -> Applied {
        let mut data = self.store.partition(partition);
        for entry in entries {
            if !entry.is_intact() {
                self.stats
                    .checksum_mismatches
                    .fetch_add(1, Ordering::Relaxed);
                return Applied::Corrupt;
            }
            if let Some(refreshed) = refreshed.as_deref_mut() {
                refreshed.insert((entry.mutation.db, entry.mutation.key.clone()));
            }
            data.apply(entry.mutation, now_ms);
        }
        Applied::All
    }

    /// The sender is behind this node's record of the partition: tell it.
    fn answer_stale(&self, to: Member, partition: u32, state: &PartitionState, now_ms: u64) {
        if let Some(record) = state.record.clone() {
            self.send(to, &PeerMessage::Record { partition, record }, now_ms);
        }
    }

    /// The stream from `primary` is out of step (a gap, or an entry that failed its checksum)
    /// while this node is listed as its backup. Answering `Resync` on the same link would not
    /// do: the link layer acknowledges the frame, and the primary would count the writes this
    /// node skipped as held by a backup. The link is reset before it acknowledges anything
    /// more, and the primary removes this node as for any reset (PROTOCOL.md §6).
    fn reset_stream(&self, state: &mut PartitionState, primary: Member) {
        if let Some(following) = &mut state.following {
            following.lost_step = true;
        }
        state.needs_evaluation = true;
        self.stats
            .stream_link_resets
            .fetch_add(1, Ordering::Relaxed);
        self.host.reset_link(primary);
    }

    pub(super) fn handle_replicate(
        &self,
        from: Member,
        partition: u32,
        epoch: Epoch,
        seq: u64,
        mutations: crate::wire::SmallList<ReplicatedMutation>,
        ctx: &Ctx,
    ) {
        let mut state = self.partitions[partition as usize].lock();
        let in_step = match &state.following {
            Some(following) if following.primary == from => Some(following.next_seq == seq),
            _ => None,
        };
        match in_step {
            Some(true) => {
                if let Some(following) = &mut state.following {
                    following.next_seq += 1;
                }
                let refreshed = state
                    .following
                    .as_mut()
                    .and_then(|following| following.refreshed.as_mut());
                if let Applied::Corrupt =
                    self.apply_entries(partition, mutations, refreshed, ctx.now_ms)
                {
                    self.reset_stream(&mut state, from);
                }
            }
            Some(false) => {
                // A gap: frames were lost. This node no longer holds what the primary thinks.
                self.stats.stale_frames.fetch_add(1, Ordering::Relaxed);
                self.reset_stream(&mut state, from);
            }
            None => {
                self.stats.stale_frames.fetch_add(1, Ordering::Relaxed);
                let newer_here = state
                    .record
                    .as_ref()
                    .is_some_and(|record| record.epoch > epoch);
                // A primary that does not know it was replaced: its writes are not lost if the
                // current primary (this node, if it is) takes them like a merge.
                let taken =
                    newer_here && self.apply_as_primary(partition, &mut state, mutations, ctx);
                if newer_here {
                    self.answer_stale(from, partition, &state, ctx.now_ms);
                }
                if !taken {
                    // The sender believes this node follows its stream and it does not (any
                    // more): it must stop counting this node as synced, even if its record
                    // turns out to be the higher one.
                    self.send_resync(from, partition, ctx.now_ms);
                }
            }
        }
        self.finish(partition, &state);
    }

    pub(super) fn handle_snapshot_begin(
        &self,
        from: Member,
        partition: u32,
        epoch: Epoch,
        next_seq: u64,
        ctx: &Ctx,
    ) {
        let mut state = self.partitions[partition as usize].lock();
        let stale = state.primary.is_some()
            || state
                .record
                .as_ref()
                .is_some_and(|record| record.epoch > epoch && record.primary != from);
        if stale {
            // Refused: tell the sender who this node thinks is primary, and that this snapshot
            // did not take, so that it does not wait for a `SnapshotDone` forever (its own record
            // may well be the higher one).
            self.answer_stale(from, partition, &state, ctx.now_ms);
            self.send_resync(from, partition, ctx.now_ms);
            self.finish(partition, &state);
            return;
        }
        // The copy this node kept after losing step with the same primary (a link reset): the
        // snapshot applies on top of it by version (every key the primary still has, deletions
        // as tombstones), so that it stays a copy to claim with should the primary die before
        // the snapshot ends. It missed at most the frames in flight at the reset.
        let in_place = state.following.as_ref().is_some_and(|following| {
            following.primary == from && (following.lost_step || following.in_place)
        });
        if state.merge.is_none() && !in_place {
            // A fresh copy: what this node held may include keys the primary deleted long ago.
            // While a merge is still sending this node's data, it is kept, and the snapshot
            // applies on top by version.
            self.store.partition(partition).clear();
        }
        state.following = Some(Following {
            primary: from,
            next_seq,
            receiving: true,
            listed_epoch: None,
            lost_step: false,
            in_place,
            // Keys the snapshot does not name are removed at its end, unless a merge still has
            // to send them (then everything is kept, as the snapshot applies by version).
            refreshed: (in_place && state.merge.is_none()).then(HashSet::new),
        });
        self.finish(partition, &state);
    }

    pub(super) fn handle_snapshot_chunk(
        &self,
        from: Member,
        partition: u32,
        mutations: Vec<ReplicatedMutation>,
        ctx: &Ctx,
    ) {
        let mut state = self.partitions[partition as usize].lock();
        let receiving = state
            .following
            .as_ref()
            .is_some_and(|following| following.primary == from && following.receiving);
        if !receiving {
            self.stats.stale_frames.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let bytes: usize = mutations
            .iter()
            .map(ReplicatedMutation::wire_size_estimate)
            .sum();
        self.stats
            .snapshot_bytes_received
            .fetch_add(bytes as u64, Ordering::Relaxed);
        let refreshed = state
            .following
            .as_mut()
            .and_then(|following| following.refreshed.as_mut());
        if let Applied::Corrupt = self.apply_entries(partition, mutations, refreshed, ctx.now_ms) {
            // The primary may count this node's acknowledgements (a copy brought up to date in
            // place is waited for): the link is reset before it acknowledges anything more, as
            // for a corrupt stream frame. A partial fresh snapshot is then dropped, a kept copy
            // kept (`forget_link`).
            self.reset_stream(&mut state, from);
        }
        self.finish(partition, &state);
    }

    pub(super) fn handle_snapshot_end(
        &self,
        from: Member,
        partition: u32,
        epoch: Epoch,
        ctx: &Ctx,
    ) {
        let mut state = self.partitions[partition as usize].lock();
        match &mut state.following {
            Some(following) if following.primary == from && following.receiving => {
                following.receiving = false;
                following.in_place = false;
                if let Some(refreshed) = following.refreshed.take() {
                    // In place: the keys the snapshot and the stream did not name are gone on
                    // the primary (their tombstones purged while this copy was out of step).
                    self.store.partition(partition).retain_keys(
                        |db, key| refreshed.contains(&(db, Bytes::copy_from_slice(key))),
                        ctx.now_ms,
                    );
                }
                self.stats
                    .snapshots_received
                    .fetch_add(1, Ordering::Relaxed);
                self.send(
                    from,
                    &PeerMessage::SnapshotDone { partition, epoch },
                    ctx.now_ms,
                );
            }
            _ => {
                // Not receiving from it (refused or abandoned): the sender must not wait.
                self.stats.stale_frames.fetch_add(1, Ordering::Relaxed);
                if state
                    .record
                    .as_ref()
                    .is_some_and(|record| record.epoch > epoch)
                {
                    self.answer_stale(from, partition, &state, ctx.now_ms);
                }
                self.send_resync(from, partition, ctx.now_ms);
            }
        }
        self.finish(partition, &state);
    }

    /// This node is asked to become the partition's primary under `record` (§8 step 3).
    pub(super) fn handle_handoff(&self, from: Member, partition: u32, record: Record, ctx: &Ctx) {
        let me = self.config.me;
        let mut state = self.partitions[partition as usize].lock();
        if record.primary != me {
            return;
        }
        if let Some(held) = &state.record
            && *held >= record
        {
            if *held == record && state.primary.is_some() {
                // A repeated handoff that already took effect.
                self.send(
                    from,
                    &PeerMessage::HandoffDone {
                        partition,
                        epoch: record.epoch,
                    },
                    ctx.now_ms,
                );
            } else {
                self.answer_stale(from, partition, &state, ctx.now_ms);
            }
            self.finish(partition, &state);
            return;
        }
        // Out of step (`lost_step`: its link to an earlier primary ended, and frames of that
        // primary's acknowledged writes may be missing here) it may lack what the old primary
        // holds, although it applies the old primary's own stream (sim seed 31331).
        let in_step = state.following.as_ref().is_some_and(|following| {
            following.primary == from && !following.receiving && !following.lost_step
        });
        if !in_step {
            // This node does not hold the partition in step with the old primary: refuse, and
            // ask for a snapshot. The refusal is its own message: a `Resync` alone may also
            // have been sent before the handoff arrived, and does not tell whether it was.
            let message = PeerMessage::HandoffRefused {
                partition,
                epoch: record.epoch,
            };
            self.send(from, &message, ctx.now_ms);
            self.send_resync(from, partition, ctx.now_ms);
            self.finish(partition, &state);
            return;
        }
        if !self.view_settled() || ctx.view.placement.target_primary(partition) != Some(me) {
            // This node's view does not make it the target (the views differ for a moment):
            // taking over now would hand the partition straight back, again and again. A view
            // not settled yet (a node that just joined sees only some of its peers) cannot tell:
            // a node taking over with it dropped every backup it did not see from the record and
            // acknowledged writes that then died with it (sim seed 701771).
            let message = PeerMessage::HandoffRefused {
                partition,
                epoch: record.epoch,
            };
            self.send(from, &message, ctx.now_ms);
            self.finish(partition, &state);
            return;
        }
        let mut primary = PrimaryState::new();
        for backup in record.backups.iter().copied() {
            if backup == me {
                continue;
            }
            if let Some(link) = self.link(backup) {
                // The old primary drained every backup before handing off, so they hold what
                // this node holds; they follow this tenure from its first frame.
                primary.stream.push(StreamMember::synced(backup, link));
            }
        }
        self.become_primary(&mut state, primary);
        let old = state.record.replace(record.clone());
        self.update_digest(partition, old.as_ref(), Some(&record));
        self.stats.records_adopted.fetch_add(1, Ordering::Relaxed);
        self.stats.handoffs_taken.fetch_add(1, Ordering::Relaxed);
        state.primary_in_view = true;
        state.needs_evaluation = true;
        let epoch = record.epoch;
        let pushed = self.push_record(partition, record, ctx.now_ms);
        self.announce(partition, &mut state, pushed);
        self.send(
            from,
            &PeerMessage::HandoffDone { partition, epoch },
            ctx.now_ms,
        );
        self.host.partition_changed(partition);
        self.evaluate(partition, &mut state, ctx);
        self.run_deferred(partition, &mut state, ctx);
        self.finish(partition, &state);
    }
}
