//! The primary's side: executing operations and streaming their effects (§6), snapshots (§7),
//! handoffs (§8), applying merges (§10), and the tick's pacing of snapshots and merges.

use std::sync::atomic::Ordering;

use store::{ExportCursor, Mutation, Op, Reply};

use super::state::{
    AwaitedMerge, HandoffOut, HandoffPhase, PartitionState, PrimaryState, Resync, StreamMember,
    StreamPhase,
};
use super::{Ctx, Engine, Execution, Host, WriteMode};
use crate::table::{Epoch, Member, Record};
use crate::wire::{PeerMessage, ReplicatedMutation, SmallList};

impl<H: Host> Engine<H> {
    /// The client path under the partition lock.
    pub(super) fn execute_locked(
        &self,
        partition: u32,
        state: &mut PartitionState,
        db: u8,
        op: Op,
        now_ms: u64,
    ) -> Execution {
        if let Some(refusal) = self.refusal(state, now_ms) {
            return refusal;
        }
        let (reply, waits) = self.execute_unchecked(partition, state, db, op, now_ms);
        if waits.is_empty() {
            Execution::Done(reply)
        } else {
            Execution::AwaitAcks { reply, waits }
        }
    }

    /// Executes `op` as the primary (the caller checked it may) and streams its mutations to
    /// the stream members; returns the reply and the acknowledgements it must wait for.
    pub(super) fn execute_unchecked(
        &self,
        partition: u32,
        state: &mut PartitionState,
        db: u8,
        op: Op,
        now_ms: u64,
    ) -> (Reply, SmallList<(Member, u64)>) {
        // Locks (and the compatibility locks) wait for the backups even in delayed-write: a
        // lock acknowledged before a backup has it could be lost by a failover, letting a second
        // holder in.
        let write_mode = if op.requires_write_through() {
            WriteMode::Through
        } else {
            self.config.write_mode
        };
        // Mutations are only built when a stream member will receive them: on a partition
        // without backups they would be built and dropped on every write.
        let record_mutations = state
            .primary
            .as_ref()
            .is_some_and(|primary| !primary.stream.is_empty());
        let outcome = {
            let mut store_partition = self.store.partition(partition);
            store_partition.set_record_mutations(record_mutations);
            store_partition.execute(db, op, now_ms)
        };
        let PartitionState {
            record, primary, ..
        } = state;
        let (Some(record), Some(primary)) = (record.as_ref(), primary.as_mut()) else {
            return (outcome.reply, SmallList::new());
        };
        if outcome.mutations.is_empty() || primary.stream.is_empty() {
            return (outcome.reply, SmallList::new());
        }
        let failed = self.replicate(partition, record.epoch, primary, outcome.mutations, now_ms);
        let waits = self.waits(primary, write_mode, now_ms);
        if failed {
            self.drop_unreachable(partition, state, now_ms);
        }
        (outcome.reply, waits)
    }

    /// Queues `mutations` to every stream member as `Replicate` frames (one, unless they are
    /// large). Returns whether a send failed (a member without a link).
    pub(super) fn replicate(
        &self,
        partition: u32,
        epoch: Epoch,
        primary: &mut PrimaryState,
        mutations: impl IntoIterator<Item = Mutation>,
        now_ms: u64,
    ) -> bool {
        let mut batch = SmallList::new();
        let mut batch_bytes = 0;
        let mut failed = false;
        for mutation in mutations {
            let replicated = ReplicatedMutation::new(mutation);
            batch_bytes += replicated.wire_size_estimate();
            batch.push(replicated);
            if batch_bytes >= self.config.replicate_frame_bytes_max {
                let full = std::mem::take(&mut batch);
                failed |= self.send_replicate(partition, epoch, primary, full, now_ms);
                batch_bytes = 0;
            }
        }
        if !batch.is_empty() {
            failed |= self.send_replicate(partition, epoch, primary, batch, now_ms);
        }
        failed
    }

    fn send_replicate(
        &self,
        partition: u32,
        epoch: Epoch,
        primary: &mut PrimaryState,
        mutations: SmallList<ReplicatedMutation>,
        now_ms: u64,
    ) -> bool {
        let message = PeerMessage::Replicate {
            partition,
            epoch,
            seq: primary.next_seq,
            mutations,
        };
        primary.next_seq += 1;
        let mut failed = false;
        for member in &mut primary.stream {
            if member.unreachable {
                continue;
            }
            match self.host.send(member.member, &message) {
                Some(frame) => {
                    member.last_frame = frame;
                    member.link.note_sent(frame, now_ms);
                }
                None => {
                    member.unreachable = true;
                    member.link_lost = true;
                    // Write-through waits for it (`waits`) only while it is counted.
                    member.lost_frames =
                        matches!(member.phase, StreamPhase::Synced) || member.in_place;
                    failed = true;
                }
            }
        }
        failed
    }

    /// The acknowledgements a write just streamed must wait for: every synced backup's frame
    /// in write-through; in delayed-write, only links lagging more than `max_lag_ms`, on the
    /// newest frame queued more than `max_lag_ms` ago (writers slow down until the lag is back
    /// within the bound).
    fn waits(
        &self,
        primary: &mut PrimaryState,
        write_mode: WriteMode,
        now_ms: u64,
    ) -> SmallList<(Member, u64)> {
        let mut waits = SmallList::new();
        for member in &mut primary.stream {
            // A backup brought up to date in place holds, with its kept copy, every write
            // acknowledged since it confirmed only if those writes waited for it too.
            let counted = matches!(member.phase, StreamPhase::Synced)
                || (member.in_place && write_mode == WriteMode::Through);
            if !counted {
                continue;
            }
            if member.unreachable {
                // The send to it failed (its link is closing): the write is not acknowledged
                // until it confirmed it was removed (`link::Confirmation`: its acknowledgements
                // are held until then), left the view, or was given up on. The wait is for a
                // number past every frame sent to it so far.
                if write_mode == WriteMode::Through {
                    waits.push((member.member, self.host.frames_sent(member.member) + 1));
                }
                continue;
            }
            match write_mode {
                WriteMode::Through => {
                    if !member.link.is_satisfied(member.last_frame) {
                        waits.push((member.member, member.last_frame));
                        member.waited_frame = member.last_frame;
                    }
                }
                WriteMode::Delayed => {
                    // Waiting for the oldest late frame only would let every held writer go
                    // once it is in, with the frames queued after it still late: the lag would
                    // stay over the bound for as long as writers keep up the rate.
                    let cutoff_ms = now_ms.saturating_sub(self.config.max_lag_ms);
                    if let Some(frame) = member.link.newest_unacked_before(cutoff_ms)
                        && !member.link.is_satisfied(frame)
                    {
                        waits.push((member.member, frame));
                    }
                }
            }
        }
        waits
    }

    /// Removes stream members a send failed to, and takes them out of the record.
    fn drop_unreachable(&self, partition: u32, state: &mut PartitionState, now_ms: u64) {
        let handoff_sent = Self::handoff_sent(state);
        let Some(primary) = &mut state.primary else {
            return;
        };
        let removed: Vec<StreamMember> = primary
            .stream
            .extract_if(.., |member| member.unreachable)
            .collect();
        for member in &removed {
            self.stream_member_removed(member);
            primary.left_stream(member.member, now_ms);
        }
        state.needs_evaluation = true;
        if handoff_sent {
            return;
        }
        self.drop_backups(
            partition,
            state,
            |backup| removed.iter().any(|member| member.member == backup),
            now_ms,
        );
        // Its link is closing: as when it ends (`forget_link`).
        for member in removed.iter().filter(|member| member.link_lost) {
            if member.in_place {
                // Not in the record, but writes waited for it.
                self.await_confirmation(partition, state, &[member.member], now_ms);
            }
            if member.lost_waited_frames() {
                self.note_lost_frames(partition, member.member);
            }
        }
    }

    /// A snapshot stopped occupying a sending slot (`ended`: every chunk was queued).
    pub(super) fn snapshot_finished(&self, ended: bool) {
        self.snapshots_in_progress.fetch_sub(1, Ordering::AcqRel);
        if !ended {
            self.stats
                .snapshots_abandoned
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(super) fn abandon_snapshots(&self, primary: &PrimaryState) {
        for member in &primary.stream {
            self.stream_member_removed(member);
        }
    }

    /// A member left the stream: a snapshot to it, if any, is abandoned.
    pub(super) fn stream_member_removed(&self, member: &StreamMember) {
        match member.phase {
            StreamPhase::Snapshot { .. } => self.snapshot_finished(false),
            StreamPhase::SnapshotEnded { .. } => {
                self.stats
                    .snapshots_abandoned
                    .fetch_add(1, Ordering::Relaxed);
            }
            StreamPhase::Synced => {}
        }
    }

    /// Rule 3: the primary's duties (§5).
    pub(super) fn primary_duties(&self, partition: u32, state: &mut PartitionState, ctx: &Ctx) {
        let me = self.config.me;
        let Some(record) = state.record.clone() else {
            return;
        };
        let Some(primary) = state.primary.as_mut() else {
            return;
        };
        if let Some(handoff) = &primary.handoff {
            if !self.is_alive(ctx, handoff.to) {
                // The new primary left before this node learned it took over: keep the
                // partition (if it had taken over, its first backup's promotion will depose
                // this node with a higher epoch).
                self.abort_handoff(partition, state);
                state.needs_evaluation = true;
            }
            return;
        }
        let removed: Vec<StreamMember> = primary
            .stream
            .extract_if(.., |member| {
                member.unreachable
                    || member.link.is_released()
                    || !self.is_alive(ctx, member.member)
            })
            .collect();
        for member in &removed {
            self.stream_member_removed(member);
            primary.left_stream(member.member, ctx.now_ms);
        }
        let targets = ctx.view.placement.targets(partition);
        self.prune_resyncing(partition, primary, ctx);
        let mut backups: Vec<Member> = record
            .backups
            .iter()
            .copied()
            .filter(|backup| primary.is_synced(*backup))
            .collect();
        // A kept copy is brought up to date at once, whatever the other snapshots (the
        // partition executes nothing until it receives the stream again), and whether or not
        // it is still a target: writes that waited for frames it lost are released once its
        // snapshot is done; it leaves as any backup that is no longer a target (below).
        let resyncing: Vec<Member> = primary
            .resyncing
            .iter()
            .map(|resync| resync.member)
            .filter(|member| primary.stream_member(*member).is_none())
            .collect();
        for member in resyncing {
            if let Some(link) = self.ready_link(member) {
                self.start_snapshot(partition, record.epoch, primary, member, link, ctx.now_ms);
                self.host.partition_changed(partition);
            }
        }
        for &target in targets {
            if target == me || primary.stream_member(target).is_some() {
                continue;
            }
            if self.snapshots_in_progress.load(Ordering::Acquire)
                >= self.config.max_concurrent_snapshots
            {
                break;
            }
            if let Some(link) = self.ready_link(target) {
                self.start_snapshot(partition, record.epoch, primary, target, link, ctx.now_ms);
            }
        }
        // A target that became synced recently holds every acknowledged write only once it
        // acknowledged the frames queued to it by then: writes acknowledged before did not wait
        // for it. Until then the backups that are no longer targets still have to stay.
        let all_targets_synced = targets.iter().all(|target| {
            *target == me
                || (backups.contains(target)
                    && primary
                        .stream_member(*target)
                        .is_some_and(|member| member.link.is_satisfied(member.synced_frame)))
        });
        if all_targets_synced
            && self.view_settled()
            && backups.iter().any(|backup| !targets.contains(backup))
        {
            // Every target holds the data: backups that are no longer targets can go. Only in a
            // settled view: in a partial one the targets are too few, and all of them being
            // synced says nothing about the copies the others hold.
            backups.retain(|backup| targets.contains(backup));
            primary.stream.retain(|member| {
                !matches!(member.phase, StreamPhase::Synced) || backups.contains(&member.member)
            });
        }
        if backups != record.backups {
            self.author_record(
                partition,
                state,
                me,
                backups.clone(),
                record.suspect_before_hlc,
                ctx.now_ms,
            );
        }
        let Some(primary) = state.primary.as_mut() else {
            return;
        };
        if let Some(&target_primary) = targets.first()
            && primary.catch_up.is_none()
            && primary.awaiting.is_empty()
            && primary.resyncing.is_empty()
            && primary.merges_awaited.is_empty()
            && ctx.now_ms >= primary.handoff_not_before_ms
            && target_primary != me
            && backups.contains(&target_primary)
            && primary.is_synced(target_primary)
            && self.ready_link(target_primary).is_some()
            && self.view_settled()
        {
            self.stats.handoffs_started.fetch_add(1, Ordering::Relaxed);
            // Snapshots in progress are abandoned: the new primary starts its own.
            let receivers: Vec<StreamMember> = primary
                .stream
                .extract_if(.., |member| !matches!(member.phase, StreamPhase::Synced))
                .collect();
            for member in &receivers {
                self.stream_member_removed(member);
            }
            primary.handoff = Some(HandoffOut {
                to: target_primary,
                started_ms: ctx.now_ms,
                phase: HandoffPhase::Draining,
            });
            self.progress_handoff(partition, state, ctx);
        }
    }

    fn start_snapshot(
        &self,
        partition: u32,
        epoch: Epoch,
        primary: &mut PrimaryState,
        target: Member,
        link: std::sync::Arc<super::link::PeerLink>,
        now_ms: u64,
    ) {
        let begin = PeerMessage::SnapshotBegin {
            partition,
            epoch,
            next_seq: primary.next_seq,
        };
        let Some(frame) = self.host.send(target, &begin) else {
            return;
        };
        link.note_sent(frame, now_ms);
        self.snapshots_in_progress.fetch_add(1, Ordering::AcqRel);
        self.stats.snapshots_sent.fetch_add(1, Ordering::Relaxed);
        primary.stream.push(StreamMember {
            member: target,
            link,
            phase: StreamPhase::Snapshot {
                cursor: ExportCursor::new(),
            },
            last_frame: frame,
            waited_frame: 0,
            synced_frame: frame,
            unreachable: false,
            link_lost: false,
            lost_frames: false,
            in_place: primary.is_resyncing(target),
        });
    }

    /// Keeps `PrimaryState::resyncing` to the backups worth waiting for: alive, and receiving
    /// the stream, or out of it for less than `confirm_timeout_ms` (a backup in the view whose
    /// link does not come back is given up on, as an unconfirmed one is; `left_stream` starts
    /// that clock).
    fn prune_resyncing(&self, partition: u32, primary: &mut PrimaryState, ctx: &Ctx) {
        if primary.resyncing.is_empty() {
            return;
        }
        let in_stream: Vec<Member> = primary.stream.iter().map(|member| member.member).collect();
        let before = primary.resyncing.len();
        let mut given_up = 0;
        primary.resyncing.retain(|resync| {
            if !self.is_alive(ctx, resync.member) {
                return false;
            }
            if in_stream.contains(&resync.member) {
                return true;
            }
            let keep = ctx.now_ms
                < resync
                    .out_since_ms
                    .saturating_add(self.config.confirm_timeout_ms);
            given_up += usize::from(!keep);
            keep
        });
        if given_up > 0 {
            self.stats
                .resyncs_given_up
                .fetch_add(given_up as u64, Ordering::Relaxed);
        }
        if primary.resyncing.len() != before {
            self.host.partition_changed(partition);
        }
    }

    /// Gives up a handoff that has not taken effect; operations resume.
    fn abort_handoff(&self, partition: u32, state: &mut PartitionState) {
        if let Some(primary) = &mut state.primary
            && primary.handoff.take().is_some()
        {
            self.stats.handoffs_aborted.fetch_add(1, Ordering::Relaxed);
            self.host.partition_changed(partition);
        }
    }

    /// A draining handoff: once every stream member acknowledged this partition's last frame,
    /// `Handoff` goes to the new primary.
    fn progress_handoff(&self, partition: u32, state: &mut PartitionState, ctx: &Ctx) {
        let me = self.config.me;
        let Some(record) = state.record.clone() else {
            return;
        };
        let Some(primary) = state.primary.as_mut() else {
            return;
        };
        let Some(handoff) = &primary.handoff else {
            return;
        };
        if !matches!(handoff.phase, HandoffPhase::Draining) {
            return;
        }
        let to = handoff.to;
        let targets = ctx.view.placement.targets(partition);
        if targets.first() != Some(&to)
            || ctx.now_ms.saturating_sub(handoff.started_ms) > self.config.handoff_drain_timeout_ms
        {
            self.abort_handoff(partition, state);
            state.needs_evaluation = true;
            return;
        }
        let drained = primary
            .stream
            .iter()
            .all(|member| member.link.is_satisfied(member.last_frame));
        if !drained || !primary.is_synced(to) {
            return;
        }
        let mut backups: Vec<Member> = targets
            .iter()
            .copied()
            .skip(1)
            .filter(|target| *target != me && primary.is_synced(*target))
            .collect();
        // This node stays a backup: if the new primary dies right after taking over, it is
        // promoted with all the data.
        backups.push(me);
        let handoff_record = Record {
            epoch: Epoch {
                term: record.epoch.term + 1,
                node: to.id,
            },
            primary: to,
            backups,
            suspect_before_hlc: record.suspect_before_hlc,
        };
        let message = PeerMessage::Handoff {
            partition,
            record: handoff_record.clone(),
        };
        if self.send(to, &message, ctx.now_ms).is_none() {
            self.abort_handoff(partition, state);
            return;
        }
        if let Some(handoff) = &mut primary.handoff {
            handoff.phase = HandoffPhase::Sent {
                record: handoff_record,
            };
        }
    }

    /// The tick's work for one partition: handoff progress, snapshot and merge pacing.
    pub(super) fn tick_partition(
        &self,
        partition: u32,
        state: &mut PartitionState,
        ctx: &Ctx,
        chunk_budget: &mut usize,
    ) {
        self.progress_handoff(partition, state, ctx);
        if let (Some(record), Some(primary)) = (state.record.as_ref(), state.primary.as_mut()) {
            let epoch = record.epoch;
            for member in primary.stream.iter_mut() {
                self.pump_snapshot(partition, epoch, member, ctx.now_ms, chunk_budget);
                if let StreamPhase::SnapshotEnded { ended_ms } = member.phase
                    && ctx.now_ms.saturating_sub(ended_ms) > self.config.snapshot_done_timeout_ms
                {
                    // The receiver never confirmed (it cannot have lost the frames on a live
                    // link, but it may have dropped the snapshot): start over.
                    member.unreachable = true;
                }
            }
            self.pump_catch_up(partition, epoch, primary, ctx.now_ms, chunk_budget);
            if primary.resync_pending() {
                // Writes wait until the backup receives the stream again or is given up on.
                state.needs_evaluation = true;
            }
            if primary.stream.iter().any(|member| member.unreachable) {
                self.drop_unreachable(partition, state, ctx.now_ms);
            }
        }
        self.pump_merge(partition, state, ctx, chunk_budget);
    }

    /// Streams the next chunks of a catch-up (`PrimaryState::catch_up`) to the stream members,
    /// paced on their links.
    fn pump_catch_up(
        &self,
        partition: u32,
        epoch: Epoch,
        primary: &mut PrimaryState,
        now_ms: u64,
        chunk_budget: &mut usize,
    ) {
        let Some(mut cursor) = primary.catch_up.take() else {
            return;
        };
        while *chunk_budget > 0
            && primary.stream.iter().all(|member| {
                self.host.backlog_bytes(member.member) < self.config.link_backlog_limit_bytes
            })
        {
            let (chunk, _bytes) = self.export_chunk(partition, &mut cursor);
            if !chunk.is_empty() {
                *chunk_budget -= 1;
                let mutations = chunk.into_iter().map(|replicated| replicated.mutation);
                self.replicate(partition, epoch, primary, mutations, now_ms);
            }
            if cursor.is_finished() {
                return;
            }
        }
        primary.catch_up = Some(cursor);
    }

    fn pump_snapshot(
        &self,
        partition: u32,
        epoch: Epoch,
        member: &mut StreamMember,
        now_ms: u64,
        chunk_budget: &mut usize,
    ) {
        let StreamPhase::Snapshot { cursor } = &mut member.phase else {
            return;
        };
        let mut ended = false;
        while *chunk_budget > 0
            && self.host.backlog_bytes(member.member) < self.config.link_backlog_limit_bytes
        {
            let (mutations, bytes) = self.export_chunk(partition, cursor);
            if !mutations.is_empty() {
                *chunk_budget -= 1;
                let chunk = PeerMessage::SnapshotChunk {
                    partition,
                    epoch,
                    mutations,
                };
                let Some(frame) = self.host.send(member.member, &chunk) else {
                    member.unreachable = true;
                    member.link_lost = true;
                    return;
                };
                member.last_frame = frame;
                member.link.note_sent(frame, now_ms);
                self.stats
                    .snapshot_bytes_sent
                    .fetch_add(bytes as u64, Ordering::Relaxed);
            }
            if cursor.is_finished() {
                let end = PeerMessage::SnapshotEnd { partition, epoch };
                let Some(frame) = self.host.send(member.member, &end) else {
                    member.unreachable = true;
                    member.link_lost = true;
                    return;
                };
                member.last_frame = frame;
                member.link.note_sent(frame, now_ms);
                ended = true;
                break;
            }
        }
        if ended {
            member.phase = StreamPhase::SnapshotEnded { ended_ms: now_ms };
            self.snapshot_finished(true);
        }
    }

    /// The next chunk of a partition's export: at most `snapshot_chunk_items` entries and
    /// about `snapshot_chunk_bytes`, built under the store's partition lock.
    fn export_chunk(
        &self,
        partition: u32,
        cursor: &mut ExportCursor,
    ) -> (Vec<ReplicatedMutation>, usize) {
        let data = self.store.partition(partition);
        let mut chunk = Vec::new();
        let mut bytes = 0;
        while chunk.len() < self.config.snapshot_chunk_items
            && bytes < self.config.snapshot_chunk_bytes
        {
            let step = (self.config.snapshot_chunk_items - chunk.len()).min(64);
            let part = data.export_chunk(cursor, step);
            if part.is_empty() {
                break;
            }
            for mutation in part {
                let replicated = ReplicatedMutation::new(mutation);
                bytes += replicated.wire_size_estimate();
                chunk.push(replicated);
            }
        }
        (chunk, bytes)
    }

    fn pump_merge(
        &self,
        partition: u32,
        state: &mut PartitionState,
        ctx: &Ctx,
        chunk_budget: &mut usize,
    ) {
        let epoch = state
            .record
            .as_ref()
            .map(|record| record.epoch)
            .unwrap_or(Epoch {
                term: 0,
                node: self.config.me.id,
            });
        let Some(merge) = &mut state.merge else {
            return;
        };
        if ctx.now_ms < merge.retry_after_ms {
            return;
        }
        let Some((target, link)) = merge.target.clone() else {
            return;
        };
        if let Some(last_frame) = merge.last_frame {
            if !link.is_released() && link.acked_frames() >= last_frame {
                // The primary handled every merge frame without refusing one (a refusal is a
                // `Resync`, which arrives before the acknowledgement and starts over).
                state.merge = None;
                state.needs_evaluation = true;
                self.stats.merges_completed.fetch_add(1, Ordering::Relaxed);
            }
            return;
        }
        while *chunk_budget > 0
            && self.host.backlog_bytes(target) < self.config.link_backlog_limit_bytes
        {
            let (mutations, _bytes) = self.export_chunk(partition, &mut merge.cursor);
            let last = merge.cursor.is_finished();
            *chunk_budget -= 1;
            let message = PeerMessage::Merge {
                partition,
                epoch,
                mutations,
                last,
            };
            let Some(frame) = self.send(target, &message, ctx.now_ms) else {
                merge.target = None;
                merge.cursor = ExportCursor::new();
                return;
            };
            if last {
                merge.last_frame = Some(frame);
                return;
            }
        }
    }

    /// A backup finished its snapshot: it joins the record's backups.
    pub(super) fn handle_snapshot_done(&self, from: Member, partition: u32, ctx: &Ctx) {
        let mut state = self.partitions[partition as usize].lock();
        let Some(primary) = state.primary.as_mut() else {
            return;
        };
        if primary.handoff.is_some() {
            return;
        }
        let Some(member) = primary
            .stream
            .iter_mut()
            .find(|member| member.member == from)
        else {
            return;
        };
        if !matches!(member.phase, StreamPhase::SnapshotEnded { .. }) {
            return;
        }
        member.phase = StreamPhase::Synced;
        member.synced_frame = member.last_frame;
        member.in_place = false;
        primary.resyncing.retain(|resync| resync.member != from);
        self.stats
            .snapshots_completed
            .fetch_add(1, Ordering::Relaxed);
        if let Some(record) = state.record.clone()
            && !record.is_backup(from)
        {
            let mut backups = record.backups.clone();
            backups.push(from);
            self.author_record(
                partition,
                &mut state,
                record.primary,
                backups,
                record.suspect_before_hlc,
                ctx.now_ms,
            );
        }
        state.needs_evaluation = true;
        self.evaluate(partition, &mut state, ctx);
        self.finish(partition, &state);
    }

    /// A backup cannot follow (or refused a handoff), or the primary a merge goes to refused it.
    pub(super) fn handle_resync(&self, from: Member, partition: u32, ctx: &Ctx) {
        let mut state = self.partitions[partition as usize].lock();
        self.stats.resyncs_received.fetch_add(1, Ordering::Relaxed);
        if let Some(merge) = &mut state.merge
            && merge
                .target
                .as_ref()
                .is_some_and(|(member, _)| *member == from)
        {
            // The primary could not take the merge now (it is handing the partition off, or
            // no longer primary): start over a little later, toward whoever is primary then.
            merge.cursor = ExportCursor::new();
            merge.last_frame = None;
            merge.retry_after_ms = ctx.now_ms + self.config.reevaluate_interval_ms;
            state.needs_evaluation = true;
            self.finish(partition, &state);
            return;
        }
        let Some(primary) = state.primary.as_mut() else {
            return;
        };
        if primary.handoff.as_ref().is_some_and(|handoff| {
            handoff.to == from && matches!(handoff.phase, HandoffPhase::Draining)
        }) {
            // Not in step, so it cannot take over: the handoff is not sent. One already sent
            // may still take effect (this `Resync` may have left before the handoff arrived):
            // its answer, `HandoffDone` or `HandoffRefused`, settles it.
            self.abort_handoff(partition, &mut state);
        }
        let handoff_sent = Self::handoff_sent(&state);
        let Some(primary) = state.primary.as_mut() else {
            return;
        };
        let removed: Vec<StreamMember> = primary
            .stream
            .extract_if(.., |member| member.member == from)
            .collect();
        for member in &removed {
            self.stream_member_removed(member);
        }
        primary.left_stream(from, ctx.now_ms);
        if !handoff_sent && self.drop_backup(partition, &mut state, from, ctx.now_ms) {
            // A backup out of step (its link to the previous primary ended when that one died,
            // say) keeps its copy, short at most of writes nobody acknowledged: it is brought
            // up to date in place at once, and writes wait for it meanwhile, so that none is
            // acknowledged while this node alone holds it (PROTOCOL.md §6).
            if let Some(primary) = state.primary.as_mut()
                && !primary.is_resyncing(from)
            {
                primary.resyncing.push(Resync {
                    member: from,
                    out_since_ms: ctx.now_ms,
                });
            }
        }
        state.needs_evaluation = true;
        self.finish(partition, &state);
    }

    /// The record of the handoff to `from` that an answer of `from` about `epoch` settles:
    /// the handoff was sent, to it, with a record of that epoch.
    fn answered_handoff(state: &PartitionState, from: Member, epoch: Epoch) -> Option<&Record> {
        state
            .primary
            .as_ref()
            .and_then(|primary| primary.handoff.as_ref())
            .filter(|handoff| handoff.to == from)
            .and_then(|handoff| handoff.phase.record())
            .filter(|record| record.epoch == epoch)
    }

    /// The new primary took the partition over.
    pub(super) fn handle_handoff_done(
        &self,
        from: Member,
        partition: u32,
        epoch: Epoch,
        ctx: &Ctx,
    ) {
        let mut state = self.partitions[partition as usize].lock();
        if let Some(record) = Self::answered_handoff(&state, from, epoch).cloned() {
            self.adopt_record(partition, &mut state, record, ctx);
            self.evaluate(partition, &mut state, ctx);
            self.run_deferred(partition, &mut state, ctx);
        }
        self.finish(partition, &state);
    }

    /// The new primary will not take the partition now (its view differs): keep it, retry
    /// after a while.
    pub(super) fn handle_handoff_refused(
        &self,
        from: Member,
        partition: u32,
        epoch: Epoch,
        ctx: &Ctx,
    ) {
        let mut state = self.partitions[partition as usize].lock();
        if Self::answered_handoff(&state, from, epoch).is_some() {
            self.abort_handoff(partition, &mut state);
            if let Some(primary) = &mut state.primary {
                primary.handoff_not_before_ms = ctx.now_ms + self.config.reevaluate_interval_ms;
            }
            self.run_deferred(partition, &mut state, ctx);
        }
        self.finish(partition, &state);
    }

    /// Images from a deposed owner (or frames of a primary that does not know it was replaced):
    /// applied when newer, and streamed on to this node's backups. The `last` frame of a merge
    /// a claim waits for lets the claim serve.
    pub(super) fn handle_merge(
        &self,
        from: Member,
        partition: u32,
        mutations: Vec<ReplicatedMutation>,
        last: bool,
        ctx: &Ctx,
    ) {
        let mut state = self.partitions[partition as usize].lock();
        self.stats
            .merge_frames_received
            .fetch_add(1, Ordering::Relaxed);
        let applied = self.apply_as_primary(partition, &mut state, mutations, ctx);
        if applied && let Some(peer) = self.peers.lock().get_mut(&from) {
            peer.merge_progress_ms = ctx.now_ms;
        }
        let awaited_done = applied
            && last
            && state.primary.as_mut().is_some_and(|primary| {
                let before = primary.merges_awaited.len();
                primary
                    .merges_awaited
                    .retain(|awaited| awaited.member != from);
                primary.merges_awaited.len() != before
            });
        if !applied {
            // Not primary (or mid-handoff): refuse, and say who is.
            self.send_resync(from, partition, ctx.now_ms);
            if state.primary.is_none()
                && let Some(record) = state.record.clone()
            {
                self.send(from, &PeerMessage::Record { partition, record }, ctx.now_ms);
            }
        }
        self.finish(partition, &state);
        drop(state);
        if awaited_done {
            self.complete_announcements(Some(ctx.now_ms));
        }
    }

    /// `from` will merge its copy of the partition into this node, which claimed it: when the
    /// claim is still waiting for its peers' answers, it also waits for this merge (§5 rule 2).
    pub(super) fn handle_merge_intent(
        &self,
        from: Member,
        partition: u32,
        epoch: Epoch,
        ctx: &Ctx,
    ) {
        let mut state = self.partitions[partition as usize].lock();
        let current = state
            .record
            .as_ref()
            .is_some_and(|record| record.epoch == epoch && record.primary == self.config.me);
        if current
            && let Some(primary) = &mut state.primary
            && primary.claim_open
            && !primary
                .merges_awaited
                .iter()
                .any(|awaited| awaited.member == from)
        {
            self.stats
                .claim_merges_awaited
                .fetch_add(1, Ordering::Relaxed);
            primary.merges_awaited.push(AwaitedMerge {
                member: from,
                since_ms: ctx.now_ms,
            });
        }
        self.finish(partition, &state);
    }

    /// Stops waiting for the merges of copies whose holder is neither in the view nor linked,
    /// or that made no progress for `confirm_timeout_ms`: none since the intent arrived, and no
    /// `Merge` frame of that holder, for any partition, applied since (after a link reset it
    /// merges every partition it kept, one after another). Takes the peers' lock.
    pub(super) fn prune_awaited_merges(
        &self,
        partition: u32,
        primary: &mut PrimaryState,
        ctx: &Ctx,
    ) {
        if primary.merges_awaited.is_empty() {
            return;
        }
        let before = primary.merges_awaited.len();
        primary.merges_awaited.retain(|awaited| {
            let progress_ms = self
                .peers
                .lock()
                .get(&awaited.member)
                .map_or(0, |peer| peer.merge_progress_ms)
                .max(awaited.since_ms);
            self.is_alive(ctx, awaited.member)
                && ctx.now_ms < progress_ms.saturating_add(self.config.confirm_timeout_ms)
        });
        let given_up = before - primary.merges_awaited.len();
        if given_up > 0 {
            self.stats
                .claim_merges_given_up
                .fetch_add(given_up as u64, Ordering::Relaxed);
            self.host.partition_changed(partition);
        }
    }

    /// Applies images this node's stream did not produce, as the primary: each only if newer,
    /// streaming what was applied. Returns false (nothing applied) when this node is not a
    /// primary that can take them now.
    pub(super) fn apply_as_primary(
        &self,
        partition: u32,
        state: &mut PartitionState,
        mutations: impl IntoIterator<Item = ReplicatedMutation>,
        ctx: &Ctx,
    ) -> bool {
        let handoff_sent = Self::handoff_sent(state);
        let PartitionState {
            record, primary, ..
        } = state;
        let (Some(record), Some(primary)) = (record.as_ref(), primary.as_mut()) else {
            return false;
        };
        if handoff_sent {
            return false;
        }
        let mut applied = Vec::new();
        {
            let mut data = self.store.partition(partition);
            for replicated in mutations {
                if !replicated.is_intact() {
                    self.stats
                        .checksum_mismatches
                        .fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                if data.apply(replicated.mutation.clone(), ctx.now_ms) {
                    applied.push(replicated.mutation);
                }
            }
        }
        self.stats
            .merged_keys
            .fetch_add(applied.len() as u64, Ordering::Relaxed);
        if !applied.is_empty() && !primary.stream.is_empty() {
            let failed = self.replicate(partition, record.epoch, primary, applied, ctx.now_ms);
            if failed {
                self.drop_unreachable(partition, state, ctx.now_ms);
            }
        }
        true
    }
}
