//! The per-partition state of the engine: the record, and what this node is doing for the
//! partition as its primary, as a follower of its primary, or as a deposed owner merging.

use std::collections::VecDeque;
use std::sync::Arc;

use store::{ExportCursor, Op};

use super::link::PeerLink;
use crate::table::{Epoch, Member, Record};

/// Everything the engine holds for one partition, behind the partition's mutex (taken before
/// the store's partition lock, always in that order).
#[derive(Debug, Default)]
pub(crate) struct PartitionState {
    /// The highest record seen.
    pub(crate) record: Option<Record>,
    /// Present exactly when `record` names this node primary.
    pub(crate) primary: Option<PrimaryState>,
    /// The primary whose stream this node applies (as a backup, or receiving a snapshot).
    pub(crate) following: Option<Following>,
    /// Data this node holds that the current primary may lack, being sent to it (§10).
    pub(crate) merge: Option<MergeOut>,
    /// Relayed requests that must wait (handoff, fence), oldest first; bounded.
    pub(crate) deferred: VecDeque<Deferred>,
    /// The ownership rules must be evaluated again.
    pub(crate) needs_evaluation: bool,
    /// Cached from the last evaluation: the record's primary is in the view.
    pub(crate) primary_in_view: bool,
    /// Since when every owner of the record has been dead, as this node saw it.
    pub(crate) ownerless_since_ms: Option<u64>,
}

impl PartitionState {
    /// Whether the tick has work here: pacing, timeouts, deferred requests or an evaluation.
    pub(crate) fn needs_tick(&self) -> bool {
        self.needs_evaluation
            || !self.deferred.is_empty()
            || self.merge.is_some()
            || self.primary.as_ref().is_some_and(|primary| {
                primary.handoff.is_some()
                    || !primary.announce.is_empty()
                    || primary.catch_up.is_some()
                    || !primary.resyncing.is_empty()
                    || primary
                        .stream
                        .iter()
                        .any(|member| !matches!(member.phase, StreamPhase::Synced))
            })
    }
}

/// This node is the partition's primary.
#[derive(Debug)]
pub(crate) struct PrimaryState {
    /// The sequence number of the next `Replicate` of this tenure (tenures start at 1).
    pub(crate) next_seq: u64,
    /// Members receiving the stream: synced backups and snapshot receivers.
    pub(crate) stream: Vec<StreamMember>,
    /// A handoff of this partition in progress.
    pub(crate) handoff: Option<HandoffOut>,
    /// The frames that carried this node's latest record, per linked peer: it acts as primary
    /// only once each was acknowledged (or its link released), so that a peer that knows a
    /// higher record answers it, and a peer acting on a lower one is deposed, before this node
    /// accepts anything under it.
    pub(crate) announce: Vec<(Arc<PeerLink>, u64)>,
    /// Backups removed from the record without being told (their link went down) that may
    /// still be alive: nothing executes until each confirms (`link::Confirmation`).
    pub(crate) awaiting: Vec<Member>,
    /// Backups removed from the record without being told that may keep their copy (a backup
    /// that lost step keeps it, PROTOCOL.md §6): each is snapshotted again in place, and until
    /// that snapshot ends the partition executes nothing while it is not receiving the stream,
    /// and write-through writes wait for it as for a synced backup. So whatever happens to this
    /// node meanwhile, the kept copy plus what the backup received since hold every write
    /// acknowledged after it confirmed.
    pub(crate) resyncing: Vec<Resync>,
    /// This node became primary while it still had data to merge into the previous primary:
    /// its backups may lack some of it, so the whole partition is streamed to them once
    /// (applied by version), from this cursor. No handoff starts before it is done.
    pub(crate) catch_up: Option<ExportCursor>,
    /// A refused handoff is not retried before this time, in ms.
    pub(crate) handoff_not_before_ms: u64,
    /// This node claimed the partition (§5 rule 2) and not every peer has acknowledged the
    /// record yet: a peer that acknowledges it may first say it merges a copy in
    /// (`PeerMessage::MergeIntent`). Cleared once every pushed record frame is acknowledged.
    pub(crate) claim_open: bool,
    /// Copies whose merge the claim waits for before it serves: a write accepted before a kept
    /// copy arrives would win over the key's acknowledged state by version.
    pub(crate) merges_awaited: Vec<AwaitedMerge>,
}

/// A merge of `PrimaryState::merges_awaited`.
#[derive(Debug)]
pub(crate) struct AwaitedMerge {
    pub(crate) member: Member,
    /// When its intent arrived: given up on after `EngineConfig::confirm_timeout_ms` with no
    /// progress since (`link::PeerState::merge_progress_ms`).
    pub(crate) since_ms: u64,
}

impl PrimaryState {
    pub(crate) fn new() -> PrimaryState {
        PrimaryState {
            next_seq: 1,
            stream: Vec::new(),
            handoff: None,
            announce: Vec::new(),
            awaiting: Vec::new(),
            resyncing: Vec::new(),
            catch_up: None,
            handoff_not_before_ms: 0,
            claim_open: false,
            merges_awaited: Vec::new(),
        }
    }

    /// Whether every peer acknowledged the record that made this node primary, every backup
    /// removed without being told confirmed it knows, and every copy a claim waits for was
    /// merged in.
    pub(crate) fn is_announced(&self) -> bool {
        self.awaiting.is_empty() && self.merges_awaited.is_empty() && self.records_acknowledged()
    }

    /// Whether every peer acknowledged the frame that carried this node's latest record.
    pub(crate) fn records_acknowledged(&self) -> bool {
        self.announce
            .iter()
            .all(|(link, frame)| link.is_satisfied(*frame))
    }

    pub(crate) fn stream_member(&self, member: Member) -> Option<&StreamMember> {
        self.stream.iter().find(|entry| entry.member == member)
    }

    /// `member` left the stream: if it is being brought up to date in place, writes wait
    /// again from now until its next snapshot starts, or it is given up on.
    pub(crate) fn left_stream(&mut self, member: Member, now_ms: u64) {
        if let Some(resync) = self
            .resyncing
            .iter_mut()
            .find(|resync| resync.member == member)
        {
            resync.out_since_ms = now_ms;
        }
    }

    pub(crate) fn is_resyncing(&self, member: Member) -> bool {
        self.resyncing.iter().any(|resync| resync.member == member)
    }

    /// Whether a backup being brought up to date in place is not receiving the stream yet (or
    /// any more): writes acknowledged now would miss it.
    pub(crate) fn resync_pending(&self) -> bool {
        self.resyncing
            .iter()
            .any(|resync| self.stream_member(resync.member).is_none())
    }

    pub(crate) fn is_synced(&self, member: Member) -> bool {
        self.stream_member(member)
            .is_some_and(|entry| matches!(entry.phase, StreamPhase::Synced) && !entry.unreachable)
    }
}

/// One member of a primary's stream.
#[derive(Debug)]
pub(crate) struct StreamMember {
    pub(crate) member: Member,
    pub(crate) link: Arc<PeerLink>,
    pub(crate) phase: StreamPhase,
    /// The number of the last frame of this partition queued to it.
    pub(crate) last_frame: u64,
    /// The last of those a write-through write (or a lock) waits for: were it lost with the
    /// link, a write would be acknowledged that this member lacks.
    pub(crate) waited_frame: u64,
    /// `last_frame` when its snapshot was done (0 for a backup it already was): writes
    /// acknowledged before then did not wait for it, so it holds all of them only once it
    /// acknowledged this frame.
    pub(crate) synced_frame: u64,
    /// A send to it failed (no link): it is removed at the next chance.
    pub(crate) unreachable: bool,
    /// A send to it failed: its link is closing, and frames queued to it may be lost.
    pub(crate) link_lost: bool,
    /// A `Replicate` could not be sent to it: the writes waiting for that frame wait until it
    /// holds them by a new snapshot (`link::Confirmation::missed`).
    pub(crate) lost_frames: bool,
    /// Its snapshot applies on top of the copy it kept (`PrimaryState::resyncing`):
    /// write-through writes wait for it before it is synced.
    pub(crate) in_place: bool,
}

impl StreamMember {
    /// A backup that already holds the partition, following this node's tenure from its first
    /// frame.
    pub(crate) fn synced(member: Member, link: Arc<PeerLink>) -> StreamMember {
        StreamMember {
            member,
            link,
            phase: StreamPhase::Synced,
            last_frame: 0,
            waited_frame: 0,
            synced_frame: 0,
            unreachable: false,
            link_lost: false,
            lost_frames: false,
            in_place: false,
        }
    }

    /// Whether write-through writes (or locks) waited for frames to it that its ended link may
    /// have lost, or that could not be sent.
    pub(crate) fn lost_waited_frames(&self) -> bool {
        self.lost_frames || !self.link.is_satisfied(self.waited_frame)
    }
}

/// A backup of `PrimaryState::resyncing`.
#[derive(Debug)]
pub(crate) struct Resync {
    pub(crate) member: Member,
    /// Since when it has not been receiving the stream: given up on after
    /// `EngineConfig::confirm_timeout_ms`.
    pub(crate) out_since_ms: u64,
}

/// Where a stream member stands.
#[derive(Debug)]
pub(crate) enum StreamPhase {
    /// It holds the partition and is a backup in the record.
    Synced,
    /// A snapshot is being sent; the cursor says how far.
    Snapshot { cursor: ExportCursor },
    /// Every chunk was sent at `ended_ms`; waiting for `SnapshotDone`.
    SnapshotEnded { ended_ms: u64 },
}

/// A handoff of primaryship to `to` (PROTOCOL.md §8).
#[derive(Debug)]
pub(crate) struct HandoffOut {
    pub(crate) to: Member,
    pub(crate) started_ms: u64,
    pub(crate) phase: HandoffPhase,
}

/// Where a handoff stands.
#[derive(Debug)]
pub(crate) enum HandoffPhase {
    /// Operations stopped; waiting until every stream member acknowledged the last frame, so
    /// every backup holds everything before the new primary takes over.
    Draining,
    /// `Handoff` was queued to the new primary.
    Sent { record: Record },
    /// The link to the new primary dropped after `Handoff` was queued: it may or may not have
    /// taken over. Operations keep waiting until its table says which, or it leaves the view.
    Uncertain { record: Record },
}

impl HandoffPhase {
    pub(crate) fn record(&self) -> Option<&Record> {
        match self {
            HandoffPhase::Draining => None,
            HandoffPhase::Sent { record } | HandoffPhase::Uncertain { record } => Some(record),
        }
    }
}

/// This node applies `primary`'s stream for the partition.
#[derive(Debug)]
pub(crate) struct Following {
    pub(crate) primary: Member,
    /// The sequence number the next `Replicate` must have.
    pub(crate) next_seq: u64,
    /// Receiving a snapshot (false: the snapshot is complete, the node holds the partition).
    pub(crate) receiving: bool,
    /// The epoch of the first record of `primary` that listed this node as a backup: a later
    /// record of the same primary without it means it was removed.
    pub(crate) listed_epoch: Option<Epoch>,
    /// The link to `primary` dropped: frames may be missing. The data is kept (it may be the
    /// only copy if the primary died) until the primary is reachable again and does not list
    /// this node, a snapshot replaces it, or another primary receives it by merge.
    pub(crate) lost_step: bool,
    /// Receiving a snapshot on top of the copy it kept after losing step with the same
    /// primary (applied by version, not cleared first): if the primary dies meanwhile, that copy
    /// is still there to be claimed with, short only of what the link reset cost.
    pub(crate) in_place: bool,
    /// During an in-place snapshot, the keys the snapshot and the stream named: at its end the
    /// others, which the primary no longer has, are removed.
    pub(crate) refreshed: Option<std::collections::HashSet<(u8, bytes::Bytes)>>,
}

/// Data being merged into the partition's primary.
#[derive(Debug)]
pub(crate) struct MergeOut {
    /// The primary being merged into, once one is known, alive and linked.
    pub(crate) target: Option<(Member, Arc<PeerLink>)>,
    pub(crate) cursor: ExportCursor,
    /// The frame number of the last merge frame, once queued: the merge is over when the
    /// target acknowledged it.
    pub(crate) last_frame: Option<u64>,
    /// After a refusal, the merge starts over no sooner than this.
    pub(crate) retry_after_ms: u64,
}

/// A relayed request waiting for its partition.
#[derive(Debug)]
pub(crate) struct Deferred {
    pub(crate) from: Member,
    pub(crate) id: u64,
    pub(crate) db: u8,
    pub(crate) op: Op,
    pub(crate) since_ms: u64,
}
