//! The ownership rules (PROTOCOL.md §5): adopting records (deposition), claims, promotions,
//! dropping data, merges out, and the relayed-request path with its deferred queues.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use store::{ExportCursor, Op};

use super::link::{Confirmation, PeerLink};
use super::state::{
    Deferred, Following, HandoffPhase, MergeOut, PartitionState, PrimaryState, Resync, StreamMember,
};
use super::{Ctx, Engine, Execution, Host, PendingReply, WaitReason, WriteMode};
use crate::table::{Epoch, Member, Record};
use crate::wire::{PeerMessage, RelayResult, SmallList, UnavailableReason};

/// What an evaluation decided for a partition that this node is not primary of.
enum Action {
    Nothing,
    Claim,
    Promote,
}

impl<H: Host> Engine<H> {
    /// Adopts `record` for `partition` if it is higher than the one held, and acts on the change
    /// at once (a deposed primary stops accepting writes before this returns). Returns whether
    /// it was adopted.
    pub(super) fn adopt_record(
        &self,
        partition: u32,
        state: &mut PartitionState,
        record: Record,
        ctx: &Ctx,
    ) -> bool {
        if state.record.as_ref().is_some_and(|held| *held >= record) {
            return false;
        }
        let old = state.record.replace(record);
        self.update_digest(partition, old.as_ref(), state.record.as_ref());
        self.stats.records_adopted.fetch_add(1, Ordering::Relaxed);
        // The primary this record replaces may not know yet, and it may be linked to this node
        // (tables exchanged) while the new primary is not: tell it, so that within a group that
        // exchanged tables it stops before anyone acts on the new record through this node.
        if let (Some(old), Some(new)) = (&old, &state.record)
            && old.primary != new.primary
            && old.primary != self.config.me
        {
            let message = PeerMessage::Record {
                partition,
                record: new.clone(),
            };
            self.send(old.primary, &message, ctx.now_ms);
        }
        self.on_record_changed(partition, state, ctx);
        true
    }

    /// The record of `partition` changed to one this node did not author: role transitions.
    fn on_record_changed(&self, partition: u32, state: &mut PartitionState, ctx: &Ctx) {
        let me = self.config.me;
        let Some(new) = state.record.clone() else {
            return;
        };
        state.needs_evaluation = true;
        state.primary_in_view = self.is_alive(ctx, new.primary);
        self.host.partition_changed(partition);
        if new.primary == me {
            if state.primary.is_none() {
                // Only the handoff path makes this node primary through a record it did not
                // author, and it sets the primary state itself. Should a record name it anyway,
                // it acts as a primary without backups; the rules re-replicate.
                self.become_primary(state, PrimaryState::new());
            }
            return;
        }
        let handoff_sent = Self::handoff_sent(state);
        if let Some(primary) = state.primary.take() {
            self.abandon_snapshots(&primary);
            if let Some(handoff) = &primary.handoff
                && let Some(handoff_record) = handoff.phase.record()
                && new.epoch >= handoff_record.epoch
            {
                let duration_ms = ctx.now_ms.saturating_sub(handoff.started_ms);
                self.stats
                    .handoffs_completed
                    .fetch_add(1, Ordering::Relaxed);
                self.stats
                    .handoff_duration_ms_total
                    .fetch_add(duration_ms, Ordering::Relaxed);
                self.stats
                    .handoff_duration_ms_max
                    .fetch_max(duration_ms, Ordering::Relaxed);
                self.handoff_durations.push(duration_ms);
            }
            if handoff_sent {
                // Every backup acknowledged everything before the handoff was sent, so the new
                // primary holds all this node had: no merge. It follows the new primary's
                // tenure from its first frame.
                if new.is_backup(me) {
                    state.following = Some(Following {
                        primary: new.primary,
                        next_seq: 1,
                        receiving: false,
                        listed_epoch: Some(new.epoch),
                        lost_step: false,
                        in_place: false,
                        refreshed: None,
                    });
                }
            } else {
                // Deposed by a record this node did not cause (§5 rule 4): whatever it
                // accepted may be missing on the new primary.
                self.stats.depositions.fetch_add(1, Ordering::Relaxed);
                self.start_merge(state);
            }
            return;
        }
        match state.following.take() {
            Some(mut following) if following.primary == new.primary => {
                if new.is_backup(me) {
                    following.listed_epoch.get_or_insert(new.epoch);
                    state.following = Some(following);
                } else if following
                    .listed_epoch
                    .is_some_and(|listed| new.epoch > listed)
                {
                    // Its primary listed it before and no longer does: removed. A copy that
                    // lost step with a link reset is kept for now (`drop_unowned_data`): the
                    // primary snapshots it again on top of it, and should the primary die
                    // first, it is all that is left.
                    if following.lost_step {
                        state.following = Some(following);
                    }
                } else {
                    state.following = Some(following);
                }
            }
            Some(following) => {
                // A copy being brought up to date in place is a whole copy (the kept one, with
                // whatever of the snapshot arrived).
                let synced = !following.receiving || following.in_place;
                // A handoff keeps the old primary among the owners, and the old primary made
                // sure every backup had everything first; any other change of primary
                // (promotion, claim, a split's winner) may leave this node with writes the new
                // primary lacks.
                let handoff = new.is_owner(following.primary);
                if synced && !handoff {
                    self.start_merge(state);
                }
                if synced && new.is_backup(me) {
                    state.following = Some(Following {
                        primary: new.primary,
                        next_seq: 1,
                        receiving: false,
                        listed_epoch: Some(new.epoch),
                        lost_step: following.lost_step,
                        in_place: false,
                        refreshed: None,
                    });
                }
            }
            None => {}
        }
        let in_step = state.following.as_ref().is_some_and(|following| {
            following.primary == new.primary && !following.receiving && !following.lost_step
        });
        if new.is_backup(me) && !in_step {
            // Listed as a synced backup, but not in step with that primary (its link dropped,
            // or it took another primary's snapshot meanwhile): it must send a snapshot.
            self.send_resync(new.primary, partition, ctx.now_ms);
        }
    }

    /// Whether `member` is alive for the ownership rules: in the view, or linked to this node.
    /// Membership admits a member only on a heartbeat from it, which can come after its link is
    /// up and tables are exchanged; a linked member is evidently alive, and promoting over it
    /// would make two primaries that know each other (links close when membership declares a
    /// member down).
    pub(super) fn is_alive(&self, ctx: &Ctx, member: Member) -> bool {
        member == self.config.me || ctx.view.contains(member) || self.link(member).is_some()
    }

    /// Evaluates the ownership rules of `partition` (PROTOCOL.md §5).
    pub(super) fn evaluate(&self, partition: u32, state: &mut PartitionState, ctx: &Ctx) {
        state.needs_evaluation = false;
        let me = self.config.me;
        state.primary_in_view = state
            .record
            .as_ref()
            .is_some_and(|record| self.is_alive(ctx, record.primary));
        if !self.is_fenced() {
            let mut ownerless = false;
            let action = match &state.record {
                None => {
                    if self.may_claim(ctx)
                        && ctx.view.placement.target_primary(partition) == Some(me)
                    {
                        Action::Claim
                    } else {
                        Action::Nothing
                    }
                }
                Some(record) if record.primary == me => {
                    self.primary_duties(partition, state, ctx);
                    Action::Nothing
                }
                Some(_) if state.primary_in_view => Action::Nothing,
                // Not alive, but not known dead either (a joining node has not heard from it
                // yet): those that know it act.
                Some(record) if !self.is_dead(ctx, record.primary) => Action::Nothing,
                Some(record) => {
                    // The first backup that may be alive promotes itself; the others wait.
                    match record
                        .backups
                        .iter()
                        .copied()
                        .find(|backup| !self.is_dead(ctx, *backup))
                    {
                        Some(first) if first == me => Action::Promote,
                        Some(_) => Action::Nothing,
                        None => {
                            ownerless = true;
                            let since_ms = *state.ownerless_since_ms.get_or_insert(ctx.now_ms);
                            let target = ctx.view.placement.target_primary(partition) == Some(me);
                            // The target may never have seen those owners and wait out the
                            // grace; a node that saw them die takes over after a while.
                            let knows = record.owners().all(|owner| {
                                self.death_knowledge(ctx, owner) == super::Death::Known
                            });
                            let fallback = knows
                                && ctx.now_ms
                                    >= since_ms.saturating_add(self.config.claim_fallback_ms);
                            if self.may_claim(ctx) && (target || fallback) {
                                Action::Claim
                            } else {
                                Action::Nothing
                            }
                        }
                    }
                }
            };
            if !ownerless || !matches!(action, Action::Nothing) {
                state.ownerless_since_ms = None;
            }
            match action {
                Action::Nothing => {}
                Action::Claim => self.claim(partition, state, ctx),
                Action::Promote => self.promote(partition, state, ctx),
            }
        }
        self.refresh_merge(state, ctx);
        self.drop_unowned_data(partition, state, ctx);
    }

    /// Whether this node's view is complete as far as it can tell: every peer it is linked to is
    /// in it, and every member reports the same view. Decisions that trust the view's targets to
    /// be the cluster's wait for it (§5 rules 2 and 3, §8): in a partial view a node is the target
    /// of partitions it is not, and the nodes it does not see yet are targets of nothing.
    pub(super) fn view_settled(&self) -> bool {
        self.links_in_view.load(Ordering::Acquire) && self.view_agreed.load(Ordering::Acquire)
    }

    /// Whether this node may claim partitions (§5 rule 2): its gate is open (tables exchanged
    /// with its view), its view is settled ([`Engine::view_settled`]), and it exchanged tables
    /// with someone or waited out the join time. Without the view conditions a joining node that had exchanged tables
    /// only with another newcomer claimed, as target primary of its partial view, partitions
    /// the founding node already owned and served (sim seeds 648, 867, 1512, 1638).
    fn may_claim(&self, ctx: &Ctx) -> bool {
        self.gate_open.load(Ordering::Acquire)
            && self.view_settled()
            && (self.exchanged_with_any.load(Ordering::Acquire)
                || ctx.now_ms >= self.started_ms.saturating_add(self.config.join_wait_ms))
    }

    /// Rule 2: the target primary takes a partition nobody (alive) owns, with whatever it holds.
    fn claim(&self, partition: u32, state: &mut PartitionState, ctx: &Ctx) {
        let me = self.config.me;
        let mut suspect_before_hlc = state
            .record
            .as_ref()
            .map_or(0, |record| record.suspect_before_hlc);
        if state.record.is_some() {
            // Every owner is gone: more nodes failed than there are backups.
            self.stats.lost_partitions.fetch_add(1, Ordering::Relaxed);
            // Whatever this node still holds (a copy it kept after losing step, a snapshot
            // cut short), and whatever copies are merged into it later, may lack the owners'
            // last writes: every key older than the claim is possibly stale (§9.2), as after a
            // delayed-write promotion.
            let held = self.store.partition(partition).num_keys();
            self.stats
                .failover_marked_keys
                .fetch_add(held, Ordering::Relaxed);
            suspect_before_hlc = self.store.hlc().now(ctx.now_ms).hlc.max(suspect_before_hlc);
        }
        self.stats.claims.fetch_add(1, Ordering::Relaxed);
        // Peers holding a whole copy (a backup's kept after its link reset) say so before they
        // acknowledge the claim, and it serves once their merges are in.
        self.become_primary(
            state,
            PrimaryState {
                claim_open: true,
                ..PrimaryState::new()
            },
        );
        self.author_record(
            partition,
            state,
            me,
            Vec::new(),
            suspect_before_hlc,
            ctx.now_ms,
        );
    }

    /// Rule 1: the first live backup of a record whose primary left becomes primary.
    fn promote(&self, partition: u32, state: &mut PartitionState, ctx: &Ctx) {
        let me = self.config.me;
        let Some(record) = state.record.clone() else {
            return;
        };
        // Out of step because the dead primary's link reset is expected here: only frames in
        // flight at its death can be missing (none acknowledged, in write-through).
        let synced = state
            .following
            .as_ref()
            .is_some_and(|following| following.primary == record.primary && !following.receiving);
        if !synced {
            self.stats
                .promotions_unsynced
                .fetch_add(1, Ordering::Relaxed);
        }
        self.stats.promotions.fetch_add(1, Ordering::Relaxed);
        let suspect_before_hlc = match self.config.write_mode {
            WriteMode::Through => record.suspect_before_hlc,
            WriteMode::Delayed => {
                // The dead primary's last writes may not have arrived; which keys they touched
                // cannot be known, so every key older than now is possibly stale (§9.2).
                let marked = self.store.partition(partition).num_keys();
                self.stats
                    .failover_marked_keys
                    .fetch_add(marked, Ordering::Relaxed);
                self.store
                    .hlc()
                    .now(ctx.now_ms)
                    .hlc
                    .max(record.suspect_before_hlc)
            }
        };
        let mut primary = PrimaryState::new();
        for backup in record.backups.iter().copied() {
            if backup == me || !self.is_alive(ctx, backup) {
                continue;
            }
            if let Some(link) = self.link(backup) {
                // They switch to this node's tenure, from its first frame, when they adopt the
                // record, which is queued before any frame.
                primary.stream.push(StreamMember::synced(backup, link));
            }
        }
        let backups: Vec<Member> = primary.stream.iter().map(|member| member.member).collect();
        self.become_primary(state, primary);
        self.author_record(
            partition,
            state,
            me,
            backups,
            suspect_before_hlc,
            ctx.now_ms,
        );
    }

    /// Authors a new record of `partition` (epoch: the held term + 1, this node), holds it and
    /// pushes it to every linked peer. The primary then serves only once every peer
    /// acknowledged it (`announce`): a peer holding a competing record between the old epoch
    /// and the new one (a split that just healed) learns it is deposed before this node acts
    /// under the new epoch.
    pub(super) fn author_record(
        &self,
        partition: u32,
        state: &mut PartitionState,
        primary: Member,
        backups: Vec<Member>,
        suspect_before_hlc: u64,
        now_ms: u64,
    ) {
        let term = state.record.as_ref().map_or(0, |record| record.epoch.term) + 1;
        let record = Record {
            epoch: Epoch {
                term,
                node: self.config.me.id,
            },
            primary,
            backups,
            suspect_before_hlc,
        };
        let old = state.record.replace(record.clone());
        self.update_digest(partition, old.as_ref(), Some(&record));
        self.stats.records_authored.fetch_add(1, Ordering::Relaxed);
        state.primary_in_view = true;
        let dropped: Vec<Member> = old
            .iter()
            .flat_map(|old| old.backups.iter().copied())
            .filter(|backup| {
                *backup != self.config.me
                    && *backup != record.primary
                    && !record.backups.contains(backup)
            })
            .collect();
        let pushed = self.push_record(partition, record, now_ms);
        // Those the record reached learn it before this node acts under it (`announce`).
        let unreached: Vec<Member> = dropped
            .into_iter()
            .filter(|backup| !pushed.iter().any(|(member, _, _)| member == backup))
            .collect();
        self.announce(partition, state, pushed);
        if !unreached.is_empty() {
            self.await_confirmation(partition, state, &unreached, now_ms);
        }
        self.host.partition_changed(partition);
    }

    /// Authors a record of `partition` without `backup`, when the held record lists it as one.
    /// Returns whether it did.
    pub(super) fn drop_backup(
        &self,
        partition: u32,
        state: &mut PartitionState,
        backup: Member,
        now_ms: u64,
    ) -> bool {
        self.drop_backups(partition, state, |listed| listed == backup, now_ms)
    }

    /// Authors a record of `partition` without the backups `dropped` picks, when the held record
    /// lists any. Returns whether it did.
    pub(super) fn drop_backups(
        &self,
        partition: u32,
        state: &mut PartitionState,
        dropped: impl Fn(Member) -> bool,
        now_ms: u64,
    ) -> bool {
        let Some(record) = state
            .record
            .clone()
            .filter(|record| record.backups.iter().any(|backup| dropped(*backup)))
        else {
            return false;
        };
        let backups: Vec<Member> = record
            .backups
            .iter()
            .copied()
            .filter(|backup| !dropped(*backup))
            .collect();
        self.author_record(
            partition,
            state,
            record.primary,
            backups,
            record.suspect_before_hlc,
            now_ms,
        );
        true
    }

    /// Makes this node the partition's primary with `primary`'s stream. Data it still had to
    /// merge into the previous primary may be missing on its backups: it streams the whole
    /// partition to them once (`PrimaryState::catch_up`).
    pub(super) fn become_primary(&self, state: &mut PartitionState, mut primary: PrimaryState) {
        if state.merge.take().is_some() {
            self.stats.catch_ups.fetch_add(1, Ordering::Relaxed);
            primary.catch_up = Some(ExportCursor::new());
        }
        state.following = None;
        state.primary = Some(primary);
    }

    /// Sends `record` to every linked peer; returns those it was queued to, with the frame each
    /// got.
    pub(super) fn push_record(
        &self,
        partition: u32,
        record: Record,
        now_ms: u64,
    ) -> Vec<(Member, Arc<PeerLink>, u64)> {
        let message = PeerMessage::Record { partition, record };
        let links: Vec<(Member, Arc<PeerLink>)> = self
            .peers
            .lock()
            .iter()
            .filter_map(|(member, peer)| Some((*member, peer.link.clone()?)))
            .collect();
        let mut frames = Vec::with_capacity(links.len());
        for (member, link) in links {
            if let Some(frame) = self.host.send(member, &message) {
                link.note_sent(frame, now_ms);
                frames.push((member, link, frame));
            }
        }
        frames
    }

    /// This node is primary of `partition` under the record `pushed` carried: it acts once
    /// they are acknowledged.
    pub(super) fn announce(
        &self,
        partition: u32,
        state: &mut PartitionState,
        pushed: Vec<(Member, Arc<PeerLink>, u64)>,
    ) {
        if let Some(primary) = &mut state.primary {
            // Acknowledgements of an earlier record still count: they are older frames.
            primary
                .announce
                .retain(|(link, frame)| !link.is_satisfied(*frame));
            primary
                .announce
                .extend(pushed.into_iter().map(|(_, link, frame)| (link, frame)));
            if !primary.is_announced() {
                self.announcing.lock().insert(partition);
            } else {
                primary.announce.clear();
                primary.claim_open = false;
            }
        }
    }

    pub(super) fn send_resync(&self, to: Member, partition: u32, now_ms: u64) {
        self.stats.resyncs_sent.fetch_add(1, Ordering::Relaxed);
        self.send(to, &PeerMessage::Resync { partition }, now_ms);
    }

    /// Starts merging this node's data of the partition into its primary (sent by the tick).
    pub(super) fn start_merge(&self, state: &mut PartitionState) {
        if state.merge.is_some() {
            return;
        }
        self.stats.merges_started.fetch_add(1, Ordering::Relaxed);
        state.merge = Some(MergeOut {
            target: None,
            cursor: ExportCursor::new(),
            last_frame: None,
            retry_after_ms: 0,
        });
    }

    /// Points a merge at the record's primary when it is alive and linked; a new target starts
    /// the merge over.
    fn refresh_merge(&self, state: &mut PartitionState, ctx: &Ctx) {
        let me = self.config.me;
        let Some(merge) = &mut state.merge else {
            return;
        };
        let wanted = state
            .record
            .as_ref()
            .map(|record| record.primary)
            .filter(|primary| *primary != me && self.is_alive(ctx, *primary));
        let current = merge
            .target
            .as_ref()
            .filter(|(_, link)| !link.is_released())
            .map(|(member, _)| *member);
        if current.is_some() && current == wanted {
            return;
        }
        merge.target = wanted.and_then(|member| Some((member, self.ready_link(member)?)));
        merge.cursor = ExportCursor::new();
        merge.last_frame = None;
    }

    /// Rule 5: data of a partition this node neither owns, follows nor merges is dropped.
    fn drop_unowned_data(&self, partition: u32, state: &mut PartitionState, ctx: &Ctx) {
        let me = self.config.me;
        if state.primary.is_some() || state.merge.is_some() {
            return;
        }
        if let Some(following) = &state.following {
            if !following.lost_step {
                return;
            }
            // Out of step since its link to the primary dropped: the data may be the only copy
            // (the primary may be dead, or may have listed this node in a record that never
            // arrived). Dropped only once that primary is reachable and does not list it, this
            // node is not one of the partition's targets, and the primary's record lists as
            // many backups as it should: until then the primary brings this copy up to date in
            // place (`PrimaryState::resyncing`, whether or not it is a target) and counts it as
            // the partition's second copy.
            let targets = ctx.view.placement.targets(partition);
            let (listed, replicated) = state.record.as_ref().map_or((false, false), |record| {
                let same = record.primary == following.primary;
                (
                    same && record.is_backup(me),
                    same && record.backups.len() >= targets.len().saturating_sub(1),
                )
            });
            let target = targets.contains(&me);
            if listed || target || !replicated || self.ready_link(following.primary).is_none() {
                return;
            }
            state.following = None;
        }
        if state
            .record
            .as_ref()
            .is_some_and(|record| record.is_backup(me))
        {
            return;
        }
        let mut data = self.store.partition(partition);
        if data.num_keys() > 0 || data.num_tombstones() > 0 {
            data.clear();
            self.stats
                .partitions_dropped
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The link to `peer` went down: what `partition` was doing with it ends.
    pub(super) fn forget_link(
        &self,
        partition: u32,
        state: &mut PartitionState,
        peer: Member,
        ctx: &Ctx,
    ) {
        let before = state.deferred.len();
        state.deferred.retain(|deferred| deferred.from != peer);
        self.deferred_total
            .fetch_sub(before - state.deferred.len(), Ordering::AcqRel);
        if let Some(following) = &mut state.following
            && following.primary == peer
        {
            // Frames may have been lost with the link: this node is no longer in step. A partial
            // snapshot is worthless, unless it was applied on top of a kept copy; a complete copy
            // is kept (see `Following::lost_step`).
            if following.receiving && !following.in_place {
                state.following = None;
            } else {
                // An in-place snapshot cut short leaves the kept copy, partly brought up to
                // date: a copy like any other kept one (it may be merged into a new primary).
                following.lost_step = true;
                following.receiving = false;
                following.in_place = false;
                following.refreshed = None;
            }
            state.needs_evaluation = true;
        }
        if let Some(merge) = &mut state.merge
            && merge
                .target
                .as_ref()
                .is_some_and(|(member, _)| *member == peer)
        {
            merge.target = None;
            merge.cursor = ExportCursor::new();
            merge.last_frame = None;
            state.needs_evaluation = true;
        }
        let Some(primary) = &mut state.primary else {
            return;
        };
        let mut handoff_unresolved = false;
        if let Some(handoff) = &mut primary.handoff {
            if handoff.to == peer {
                match std::mem::replace(&mut handoff.phase, HandoffPhase::Draining) {
                    HandoffPhase::Draining => {
                        primary.handoff = None;
                        self.stats.handoffs_aborted.fetch_add(1, Ordering::Relaxed);
                        self.host.partition_changed(partition);
                    }
                    HandoffPhase::Sent { record } | HandoffPhase::Uncertain { record } => {
                        handoff.phase = HandoffPhase::Uncertain { record };
                        handoff_unresolved = true;
                    }
                }
            } else {
                handoff_unresolved = !matches!(handoff.phase, HandoffPhase::Draining);
            }
        }
        let had_member = primary.stream.iter().any(|member| member.member == peer);
        let mut lost_frames = false;
        let mut in_place_cut = false;
        if had_member {
            let removed: Vec<StreamMember> = primary
                .stream
                .extract_if(.., |member| member.member == peer)
                .collect();
            for member in &removed {
                self.stream_member_removed(member);
                // Writes waited for the frames it had not acknowledged, and are released when
                // it confirms: first it must hold them, by a new snapshot.
                lost_frames |= member.lost_waited_frames();
                in_place_cut |= member.in_place;
            }
            primary.left_stream(peer, ctx.now_ms);
        }
        state.needs_evaluation = true;
        // A backup reached through this link may have missed frames: it is no longer synced.
        // While a handoff may have taken effect, this node must not author records (the new
        // primary's record would compete with its own); the new primary, or this node once the
        // handoff is resolved, removes it.
        if !handoff_unresolved {
            self.drop_backup(partition, state, peer, ctx.now_ms);
        }
        if in_place_cut && !handoff_unresolved {
            // Not in the record, but writes waited for it: the partition waits for its next
            // link, and its acknowledgements are held, as a removed backup's are.
            self.await_confirmation(partition, state, &[peer], ctx.now_ms);
        }
        if lost_frames {
            self.note_lost_frames(partition, peer);
        }
    }

    /// `member`, whose confirmation is awaited, lost frames of `partition` that writes wait
    /// for (its link ended before acknowledging them, or a send to it failed). Those writes are
    /// released when the confirmation ends, so it ends only once `member` holds them: when
    /// this partition's in-place snapshot to it is done (`link::Confirmation::missed`).
    pub(super) fn note_lost_frames(&self, partition: u32, member: Member) {
        if let Some(confirmation) = self
            .peers
            .lock()
            .get_mut(&member)
            .and_then(|peer| peer.confirmation.as_mut())
        {
            confirmation.generation += 1;
            if !confirmation.missed.contains(&partition) {
                confirmation.missed.push(partition);
            }
        }
    }

    /// `removed` were just taken out of `partition`'s record, this node its primary, and the
    /// new record could not be sent to them (no link, or a link that is closing). Those still
    /// in the view may be alive and believe they are backups (lock operations wait for backups
    /// in either write mode): the partition executes nothing until each confirms or leaves the
    /// view (`link::Confirmation`).
    pub(super) fn await_confirmation(
        &self,
        partition: u32,
        state: &mut PartitionState,
        removed: &[Member],
        now_ms: u64,
    ) {
        let Some(primary) = &mut state.primary else {
            return;
        };
        let mut peers = self.peers.lock();
        // The view is read under `peers`: `handle_view` swaps it before it takes `peers` to end
        // the confirmations of the members it removed, so a confirmation made here for a member
        // it removes is either seen and ended there, or not made.
        let view = self.view.read().clone();
        for &member in removed {
            if !view.contains(member) {
                continue;
            }
            let confirmation = peers
                .entry(member)
                .or_default()
                .confirmation
                .get_or_insert_with(|| Confirmation::new(now_ms));
            confirmation.generation += 1;
            if !confirmation.partitions.contains(&partition) {
                confirmation.partitions.push(partition);
            }
            if !primary.awaiting.contains(&member) {
                primary.awaiting.push(member);
            }
            // A new drop: it has its own time to come back.
            primary.resyncing.retain(|resync| resync.member != member);
            primary.resyncing.push(Resync {
                member,
                out_since_ms: now_ms,
            });
        }
        drop(peers);
        if !primary.awaiting.is_empty() {
            self.announcing.lock().insert(partition);
        }
    }

    /// A pushed record arrived.
    pub(super) fn handle_record(&self, from: Member, partition: u32, record: Record, ctx: &Ctx) {
        let mut state = self.partitions[partition as usize].lock();
        let epoch = record.epoch;
        if self.adopt_record(partition, &mut state, record.clone(), ctx) {
            self.evaluate(partition, &mut state, ctx);
            self.run_deferred(partition, &mut state, ctx);
        }
        if from == record.primary
            && state
                .merge
                .as_ref()
                .is_some_and(|merge| merge.last_frame.is_none())
            && state
                .record
                .as_ref()
                .is_some_and(|held| held.epoch == epoch)
        {
            // Said before this frame is acknowledged (acknowledgements go at the end of the
            // batch): a claim does not serve before this copy is in (§5 rule 2). A merge whose
            // last frame already left is not announced again: that frame came first.
            self.send(
                from,
                &PeerMessage::MergeIntent { partition, epoch },
                ctx.now_ms,
            );
        } else if let Some(held) = &state.record
            && *held > record
        {
            // The sender is behind: tell it.
            let message = PeerMessage::Record {
                partition,
                record: held.clone(),
            };
            self.send(from, &message, ctx.now_ms);
        }
        self.finish(partition, &state);
    }

    /// A whole table arrived: adopt what is newer, then count the exchange as done (in that
    /// order, so this node never counts as synced with a peer whose newer records it has not
    /// adopted yet).
    pub(super) fn handle_table(&self, from: Member, records: Vec<(u32, Record)>, ctx: &Ctx) {
        for (partition, record) in records {
            let Some(slot) = self.partitions.get(partition as usize) else {
                self.stats
                    .invalid_partitions
                    .fetch_add(1, Ordering::Relaxed);
                continue;
            };
            let mut state = slot.lock();
            if self.adopt_record(partition, &mut state, record, ctx) {
                self.evaluate(partition, &mut state, ctx);
                self.run_deferred(partition, &mut state, ctx);
            }
            self.finish(partition, &state);
        }
        {
            let mut peers = self.peers.lock();
            if let Some(peer) = peers.get_mut(&from) {
                if let Some(link) = &peer.link {
                    link.set_exchanged(true);
                }
                peer.exchanged_since_admission = true;
                peer.digest_mismatches = 0;
            }
        }
        self.exchanged_with_any.store(true, Ordering::Release);
        // A handoff to `from` whose outcome was unknown: its table says whether it took over.
        for partition in 0..self.config.num_partitions {
            let mut state = self.partitions[partition as usize].lock();
            let unresolved = state
                .primary
                .as_ref()
                .and_then(|primary| primary.handoff.as_ref())
                .is_some_and(|handoff| {
                    handoff.to == from && matches!(handoff.phase, HandoffPhase::Uncertain { .. })
                });
            if unresolved {
                // Still primary under the old record after adopting `from`'s table: the
                // handoff never took effect.
                if let Some(primary) = &mut state.primary {
                    primary.handoff = None;
                }
                self.stats.handoffs_aborted.fetch_add(1, Ordering::Relaxed);
                self.host.partition_changed(partition);
                self.evaluate(partition, &mut state, ctx);
                self.run_deferred(partition, &mut state, ctx);
                self.finish(partition, &state);
            }
        }
        self.recompute_gate();
    }

    // ----------------------------------------------------------------------------------------
    // Relayed requests

    /// Why an operation of this partition cannot execute here now, if it cannot.
    pub(super) fn refusal(&self, state: &PartitionState, now_ms: u64) -> Option<Execution> {
        let Some(primary) = &state.primary else {
            return Some(match &state.record {
                None => Execution::Wait {
                    reason: WaitReason::NoRecord,
                },
                // Forward only over a link: a primary in the view but unlinked is joining, or
                // dying (its link reset); either way the answer is to wait a little.
                Some(record)
                    if state.primary_in_view
                        && record.primary != self.config.me
                        && self.link(record.primary).is_some() =>
                {
                    Execution::Forward(record.primary)
                }
                Some(_) => Execution::Wait {
                    reason: WaitReason::NoLivePrimary,
                },
            });
        };
        if primary.handoff.is_some() {
            return Some(Execution::Wait {
                reason: WaitReason::Handoff,
            });
        }
        if !primary.awaiting.is_empty() || primary.resync_pending() {
            return Some(Execution::Wait {
                reason: WaitReason::BackupUnconfirmed,
            });
        }
        if !primary.is_announced() {
            return Some(Execution::Wait {
                reason: WaitReason::Announcing,
            });
        }
        self.gate_reason(now_ms, true)
            .map(|reason| Execution::Wait { reason })
    }

    pub(super) fn handle_request(
        &self,
        from: Member,
        id: u64,
        partition: u32,
        db: u8,
        op: Op,
        ctx: &Ctx,
    ) {
        let mut state = self.partitions[partition as usize].lock();
        if !state.deferred.is_empty() {
            // Earlier requests of this partition wait: this one queues behind them.
            self.defer(&mut state, from, id, db, op, ctx.now_ms);
        } else {
            match self.refusal(&state, ctx.now_ms) {
                None => self.serve_request(partition, &mut state, from, id, db, op, ctx.now_ms),
                Some(Execution::Wait {
                    reason:
                        WaitReason::Handoff
                        | WaitReason::Announcing
                        | WaitReason::BackupUnconfirmed
                        | WaitReason::Fenced
                        | WaitReason::TableExchange,
                }) => self.defer(&mut state, from, id, db, op, ctx.now_ms),
                Some(_) => self.send_response(
                    from,
                    id,
                    RelayResult::NotPrimary {
                        record: state.record.clone(),
                    },
                ),
            }
        }
        self.finish(partition, &state);
    }

    /// Executes a relayed request (the caller checked it may) and answers, now or after the
    /// write-through acknowledgements of the backups other than the requester.
    ///
    /// The requester's own acknowledgement is not waited for: the `Response` follows the
    /// write's `Replicate` on the same link, and a node reads a link's frames in order, so the
    /// requester has processed the frame (what its acknowledgement would have said) before it
    /// reads the answer. A relayed write whose requester is a backup takes one round trip.
    #[allow(clippy::too_many_arguments)]
    fn serve_request(
        &self,
        partition: u32,
        state: &mut PartitionState,
        from: Member,
        id: u64,
        db: u8,
        op: Op,
        now_ms: u64,
    ) {
        if self.pending_replies.lock().len() >= self.config.pending_replies_max {
            self.send_response(
                from,
                id,
                RelayResult::Unavailable {
                    reason: UnavailableReason::TooManyPendingReplies,
                },
            );
            return;
        }
        let (reply, mut waits) = self.execute_unchecked(partition, state, db, op, now_ms);
        waits.retain(|(member, _)| *member != from);
        if waits.is_empty() {
            self.send_response(from, id, RelayResult::Reply(reply));
            return;
        }
        let Some(primary) = &state.primary else {
            self.send_response(from, id, RelayResult::Reply(reply));
            return;
        };
        let links: SmallList<_> = waits
            .iter()
            .filter_map(|(member, frame)| {
                if let Some(entry) = primary.stream_member(*member) {
                    return Some((entry.link.clone(), *frame));
                }
                // A member a send just failed to has left the stream, and must confirm it was
                // removed: the reply waits on a link of its own that nothing acknowledges and
                // the end of that confirmation releases (`link::Confirmation::ended`). Without
                // a confirmation it has left the view: nothing to wait for.
                let mut peers = self.peers.lock();
                let confirmation = peers.get_mut(member)?.confirmation.as_mut()?;
                let held = Arc::new(PeerLink::new());
                confirmation.ended.push(Arc::clone(&held));
                Some((held, 1))
            })
            .collect();
        self.pending_replies.lock().push(PendingReply {
            to: from,
            id,
            reply,
            waits: links,
        });
        // An acknowledgement may have arrived in between.
        self.complete_pending_replies();
    }

    fn defer(
        &self,
        state: &mut PartitionState,
        from: Member,
        id: u64,
        db: u8,
        op: Op,
        now_ms: u64,
    ) {
        if state.deferred.len() >= self.config.deferred_per_partition_max {
            self.stats.deferred_rejected.fetch_add(1, Ordering::Relaxed);
            self.send_response(
                from,
                id,
                RelayResult::Unavailable {
                    reason: UnavailableReason::DeferredQueueFull,
                },
            );
            return;
        }
        self.stats.deferred_requests.fetch_add(1, Ordering::Relaxed);
        self.deferred_total.fetch_add(1, Ordering::AcqRel);
        state.deferred.push_back(Deferred {
            from,
            id,
            db,
            op,
            since_ms: now_ms,
        });
    }

    /// Runs the deferred requests of a partition that can run now, in order.
    pub(super) fn run_deferred(&self, partition: u32, state: &mut PartitionState, ctx: &Ctx) {
        while let Some(front) = state.deferred.front() {
            if ctx.now_ms.saturating_sub(front.since_ms) > self.config.deferred_wait_ms_max {
                if let Some(expired) = state.deferred.pop_front() {
                    self.deferred_total.fetch_sub(1, Ordering::AcqRel);
                    self.stats
                        .deferred_timed_out
                        .fetch_add(1, Ordering::Relaxed);
                    self.send_response(
                        expired.from,
                        expired.id,
                        RelayResult::Unavailable {
                            reason: UnavailableReason::WaitTimedOut,
                        },
                    );
                }
                continue;
            }
            let refusal = self.refusal(state, ctx.now_ms);
            if matches!(
                refusal,
                Some(Execution::Wait {
                    reason: WaitReason::Handoff
                        | WaitReason::Announcing
                        | WaitReason::BackupUnconfirmed
                        | WaitReason::Fenced
                        | WaitReason::TableExchange,
                })
            ) {
                break;
            }
            let Some(deferred) = state.deferred.pop_front() else {
                break;
            };
            self.deferred_total.fetch_sub(1, Ordering::AcqRel);
            match refusal {
                None => self.serve_request(
                    partition,
                    state,
                    deferred.from,
                    deferred.id,
                    deferred.db,
                    deferred.op,
                    ctx.now_ms,
                ),
                Some(_) => self.send_response(
                    deferred.from,
                    deferred.id,
                    RelayResult::NotPrimary {
                        record: state.record.clone(),
                    },
                ),
            }
        }
    }
}
