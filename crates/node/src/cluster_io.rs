//! The glue between the sans-IO engine and the world: the engine's [`Host`] (frames onto peer
//! links, wake-ups for waiting operations, write-through acknowledgements), the handler of frames
//! arriving on links, and the observer that turns membership into the engine's view and the links
//! this node keeps.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Instant;

use bytes::Bytes;
use cluster::engine::{Engine, FenceReason, Host};
use cluster::membership::{MemberState, MembershipEvent};
use cluster::table::{Member, ViewMember};
use cluster::wire::{self, PeerMessage, RelayResult, SmallList};
use parking_lot::Mutex;
use tokio::sync::{Notify, oneshot, watch};

use crate::clock::Clock;
use crate::locks::{LockManager, LockSignals};
use crate::membership::{MembershipCommand, MembershipHandle, MembershipObserver};
use crate::peer::{FrameHandler, Link, Peers};

/// The engine as this node runs it.
pub(crate) type NodeEngine = Engine<ClusterHost>;

/// Bit of the heartbeat role byte that says a node is leaving (PROTOCOL.md §2).
pub(crate) const ROLE_LEAVING: u8 = 1;

/// The engine's host: queues frames on links, wakes waiters.
pub(crate) struct ClusterHost {
    peers: Arc<Peers>,
    /// One per partition: woken when the partition changes, so waiting operations retry.
    partition_changed: Box<[Notify]>,
    /// Highest acknowledged frame per member (`u64::MAX`: released), for write-through waiters.
    acknowledged: Mutex<HashMap<Member, watch::Sender<u64>>>,
    // --- Locks (PROTOCOL.md §13) ---
    /// Partition changes for the lock manager, which re-serves its waiters there.
    lock_signals: Arc<LockSignals>,
    /// The lock manager relayed lock operations go to; weak, since the manager holds the
    /// cluster side (and so this host) strongly.
    lock_manager: OnceLock<Weak<LockManager>>,
}

impl ClusterHost {
    pub(crate) fn new(peers: Arc<Peers>, num_partitions: u32) -> ClusterHost {
        ClusterHost {
            peers,
            partition_changed: (0..num_partitions).map(|_| Notify::new()).collect(),
            acknowledged: Mutex::new(HashMap::new()),
            lock_signals: Arc::new(LockSignals::new(num_partitions)),
            lock_manager: OnceLock::new(),
        }
    }

    /// The partition-change flags the lock manager's task waits on.
    pub(crate) fn lock_signals(&self) -> Arc<LockSignals> {
        Arc::clone(&self.lock_signals)
    }

    /// Sends relayed lock operations to `manager` from now on.
    pub(crate) fn install_lock_manager(&self, manager: &Arc<LockManager>) {
        let _ = self.lock_manager.set(Arc::downgrade(manager));
    }

    /// The notifier of `partition`'s changes.
    pub(crate) fn partition_notify(&self, partition: u32) -> &Notify {
        &self.partition_changed[partition as usize % self.partition_changed.len()]
    }

    fn acknowledged_sender(&self, member: Member) -> watch::Sender<u64> {
        self.acknowledged
            .lock()
            .entry(member)
            .or_insert_with(|| watch::channel(0).0)
            .clone()
    }

    /// Resolves once every `(member, frame)` of `waits` was acknowledged (or its member
    /// released) and returns true, or returns false at `deadline`.
    pub(crate) async fn wait_all_acknowledged(
        &self,
        waits: &SmallList<(Member, u64)>,
        deadline: Instant,
    ) -> bool {
        let all = async {
            for (member, frame) in waits.iter() {
                self.wait_acknowledged(*member, *frame).await;
            }
        };
        tokio::select! {
            // The acknowledgements first: when they are in at the first poll (a write that
            // waited for none, or a retry), no timer is armed.
            biased;
            () = all => true,
            () = tokio::time::sleep_until(deadline.into()) => false,
        }
    }

    /// Resolves once `member` acknowledged frame `frame` or was released.
    async fn wait_acknowledged(&self, member: Member, frame: u64) {
        let mut receiver = self.acknowledged_sender(member).subscribe();
        // An error means the sender is gone, which only happens with the host: nothing to wait for.
        let _ = receiver
            .wait_for(|acknowledged| *acknowledged >= frame)
            .await;
    }

    /// A new link to `member` starts at `frame_base`: waits from now on are for frames after it,
    /// so a release (`u64::MAX`) of the old link must not satisfy them. Waits the engine holds
    /// over the change of link (a backup that must confirm its removal) are left waiting: the
    /// count is lowered only from a release.
    fn link_started(&self, member: Member, frame_base: u64) {
        self.acknowledged_sender(member)
            .send_if_modified(|acknowledged| {
                if *acknowledged == u64::MAX {
                    *acknowledged = frame_base;
                    true
                } else {
                    false
                }
            });
    }
}

impl Host for ClusterHost {
    fn send(&self, to: Member, message: &PeerMessage) -> Option<u64> {
        let link = self.peers.link_to(to)?;
        link.queue(true, |out| wire::encode_frame(message, out))
    }

    fn backlog_bytes(&self, to: Member) -> usize {
        self.peers
            .link_to(to)
            .map(|link| link.backlog_bytes())
            .unwrap_or(0)
    }

    fn partition_changed(&self, partition: u32) {
        self.partition_notify(partition).notify_waiters();
        self.lock_signals.mark(partition);
    }

    fn frames_sent(&self, to: Member) -> u64 {
        self.peers.frames_sent(to)
    }

    fn reset_link(&self, to: Member) {
        if let Some(link) = self.peers.link_to(to) {
            tracing::warn!(peer = ?to, "replication stream out of step; resetting the link");
            link.close();
        }
    }

    fn acked(&self, from: Member, frames: u64) {
        self.acknowledged_sender(from)
            .send_if_modified(|acknowledged| {
                if frames > *acknowledged {
                    *acknowledged = frames;
                    true
                } else {
                    false
                }
            });
    }
}

/// Relayed requests this node sent and waits answers for.
#[derive(Default)]
pub(crate) struct PendingRelays {
    next_id: std::sync::atomic::AtomicU64,
    waiting: Mutex<HashMap<u64, (Member, oneshot::Sender<RelayResult>)>>,
}

impl PendingRelays {
    /// Registers a request to `to`; the receiver gets the answer, or an error if the link to `to`
    /// closes first.
    pub(crate) fn register(&self, to: Member) -> (u64, oneshot::Receiver<RelayResult>) {
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (sender, receiver) = oneshot::channel();
        self.waiting.lock().insert(id, (to, sender));
        (id, receiver)
    }

    /// Forgets a request whose answer is no longer wanted (timed out).
    pub(crate) fn forget(&self, id: u64) {
        self.waiting.lock().remove(&id);
    }

    fn answer(&self, from: Member, id: u64, result: RelayResult) {
        let mut waiting = self.waiting.lock();
        if waiting.get(&id).is_some_and(|(to, _)| *to == from)
            && let Some((_, sender)) = waiting.remove(&id)
        {
            let _ = sender.send(result);
        }
    }

    /// The link to `member` closed: its requests will never be answered.
    fn fail_all_to(&self, member: Member) {
        self.waiting.lock().retain(|_, (to, _)| *to != member);
    }
}

/// Everything the cluster side of a node shares.
pub(crate) struct ClusterIo {
    pub(crate) engine: NodeEngine,
    pub(crate) peers: Arc<Peers>,
    pub(crate) relays: PendingRelays,
    pub(crate) clock: Arc<dyn Clock>,
    /// Set once the membership thread runs.
    pub(crate) membership: OnceLock<MembershipHandle>,
    pub(crate) metrics: Arc<admin::Metrics>,
    pub(crate) frame_errors_log: crate::log::RateLimited,
}

impl ClusterIo {
    pub(crate) fn host(&self) -> &ClusterHost {
        self.engine.host()
    }

    pub(crate) fn send_membership(&self, command: MembershipCommand) {
        if let Some(membership) = self.membership.get() {
            membership.send(command);
        }
    }
}

/// Receives the frames of every link; holds the cluster weakly (the cluster owns the links).
pub(crate) struct Frames(pub(crate) Weak<ClusterIo>);

impl FrameHandler for Frames {
    fn on_link_up(&self, link: &Arc<Link>) {
        let Some(io) = self.0.upgrade() else { return };
        io.host().link_started(link.member, link.frame_base);
        io.engine.handle_link_up(link.member, io.clock.now_ms());
        io.metrics.peer_connections_opened.inc();
        tracing::info!(peer = ?link.member, "peer link up");
    }

    fn on_frame(&self, link: &Arc<Link>, payload: Bytes) {
        let Some(io) = self.0.upgrade() else { return };
        let message = match wire::decode_body(&payload) {
            Ok(message) => message,
            Err(error) => {
                if io.frame_errors_log.allow() {
                    tracing::warn!(peer = ?link.member, %error, "malformed peer frame; closing the link");
                }
                link.close();
                return;
            }
        };
        match message {
            PeerMessage::Ack { frames } => {
                io.engine
                    .handle_ack(link.member, link.frame_base.saturating_add(frames));
            }
            PeerMessage::Response { id, result } => {
                link.count_answered_frame();
                io.relays.answer(link.member, id, result);
            }
            // --- Locks (PROTOCOL.md §13): relayed lock operations go to the lock manager,
            // which queues waiting acquisitions on the primary and answers when they are
            // granted (or answers `NotPrimary` as the engine would).
            PeerMessage::Request {
                id,
                partition,
                db,
                op,
            } if op.is_lock_op()
                && let Some(manager) = io.host().lock_manager.get().and_then(Weak::upgrade) =>
            {
                link.count_answered_frame();
                manager.handle_relayed(link.member, id, partition, db, op);
            }
            message @ PeerMessage::Request { .. } => {
                link.count_answered_frame();
                io.engine
                    .handle_message(link.member, message, io.clock.now_ms());
            }
            message => {
                link.count_numbered_frame();
                io.engine
                    .handle_message(link.member, message, io.clock.now_ms());
            }
        }
    }

    fn on_batch_end(&self, link: &Arc<Link>) {
        if let Some(frames) = link.take_acknowledgement() {
            link.queue(false, |out| {
                wire::encode_frame(&PeerMessage::Ack { frames }, out)
            });
        }
    }

    fn on_link_down(&self, link: &Arc<Link>) {
        let Some(io) = self.0.upgrade() else { return };
        io.metrics.peer_connections_closed.inc();
        tracing::info!(peer = ?link.member, "peer link down");
        io.relays.fail_all_to(link.member);
        if let Some(manager) = io.host().lock_manager.get().and_then(Weak::upgrade) {
            manager.link_down(link.member);
        }
        io.engine.handle_link_down(link.member, io.clock.now_ms());
        io.send_membership(MembershipCommand::PeerReset(link.member.id));
    }

    fn on_closed(&self, link: &Arc<Link>) {
        let Some(io) = self.0.upgrade() else { return };
        io.peers.link_closed(link);
    }
}

/// Runs on the membership thread: keeps the engine's view and the wanted links in step with
/// membership, and fences the engine when this node stalled or was declared dead.
pub(crate) struct Observer {
    pub(crate) io: Weak<ClusterIo>,
    /// The view last given to the engine, to give it only changes.
    pub(crate) last_view: Vec<ViewMember>,
    /// When peers' table digests were last compared, ms (monotonic enough: the node clock).
    pub(crate) last_digest_check_ms: u64,
    pub(crate) digest_check_interval_ms: u64,
    /// Whether the engine accepted operations at the last tick, to log when that changes.
    pub(crate) gate_was_open: bool,
}

impl MembershipObserver for Observer {
    fn on_event(&mut self, event: MembershipEvent) {
        let Some(io) = self.io.upgrade() else { return };
        match event {
            MembershipEvent::SelfStalled { gap_ms } => {
                tracing::warn!(
                    gap_ms,
                    "this node did not run for a while; fencing until tables are exchanged"
                );
                io.engine.fence_self(FenceReason::Stalled);
            }
            MembershipEvent::SelfDeclaredDead { by } => {
                tracing::warn!(
                    by = by.0,
                    "a peer declared this node dead; fencing until tables are exchanged"
                );
                io.engine.fence_self(FenceReason::DeclaredDead);
            }
            MembershipEvent::NodeUp(info) | MembershipEvent::NodeRejoined(info) => {
                tracing::info!(name = %info.name, incarnation = info.incarnation.0, "node joined the view");
            }
            MembershipEvent::NodeDown {
                name,
                incarnation,
                reason,
                ..
            } => {
                tracing::warn!(%name, incarnation = incarnation.0, ?reason, "node left the view");
            }
            MembershipEvent::NodeRestarted { name, old, new, .. } => {
                tracing::info!(%name, old = old.0, new = new.0, "node restarted");
            }
        }
    }

    fn on_tick(&mut self, membership: &cluster::membership::Membership, now_ms: u64) {
        let Some(io) = self.io.upgrade() else { return };
        io.engine.handle_membership_alive(now_ms);
        let members = membership.members();
        let mut view: Vec<ViewMember> = members
            .iter()
            .filter(|info| {
                info.is_self || matches!(info.state, MemberState::Alive | MemberState::Suspect)
            })
            .map(|info| ViewMember {
                member: Member {
                    id: info.id,
                    incarnation: info.incarnation,
                },
                name: info.name.clone(),
                leaving: info.role & ROLE_LEAVING != 0,
            })
            .collect();
        view.sort_by_key(|member| member.member);
        io.engine.handle_view_agreement(membership.view_agreed());
        if view != self.last_view {
            // The engine first: it releases what it holds for the members that left, and then
            // their links close. The other order would let a link that is installed in
            // between (a dial or an accept completing) be brought up in the engine and then
            // released by the view change while it stays open: its acknowledgements would
            // count for nothing until it closed.
            io.engine.handle_view(view.clone(), now_ms);
            for member in &self.last_view {
                if !view.iter().any(|current| current.member == member.member) {
                    io.peers.member_down(member.member);
                }
            }
            for info in members.iter().filter(|info| !info.is_self) {
                let member = Member {
                    id: info.id,
                    incarnation: info.incarnation,
                };
                if view.iter().any(|current| current.member == member)
                    && !self
                        .last_view
                        .iter()
                        .any(|previous| previous.member == member)
                {
                    io.peers.member_up(member, info.addresses.peer);
                }
            }
            self.last_view = view;
        }
        let gate_open = io.engine.accepts_operations();
        if gate_open != self.gate_was_open {
            self.gate_was_open = gate_open;
            if gate_open {
                tracing::info!("operations run: tables exchanged with every member of the view");
            } else {
                tracing::info!(
                    "operations wait: tables are being exchanged, or this node is fenced"
                );
            }
        }
        if now_ms >= self.last_digest_check_ms + self.digest_check_interval_ms {
            self.last_digest_check_ms = now_ms;
            for info in members
                .iter()
                .filter(|info| !info.is_self && info.state == MemberState::Alive)
            {
                let member = Member {
                    id: info.id,
                    incarnation: info.incarnation,
                };
                io.engine
                    .handle_peer_digest(member, info.table_digest, now_ms);
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use cluster::node_id::{Incarnation, NodeId};
    use std::time::Duration;

    /// Member `id` in its first incarnation.
    pub(crate) fn member_of(id: u32) -> Member {
        Member {
            id: NodeId(id),
            incarnation: Incarnation(1),
        }
    }

    #[tokio::test]
    async fn a_wait_for_acknowledgements_ends_at_its_deadline_or_when_they_are_in() {
        let host = ClusterHost::new(Peers::for_tests(member_of(1)), 8);
        let mut waits = SmallList::new();
        waits.push((member_of(2), 3));
        waits.push((member_of(3), 5));
        let soon = || Instant::now() + Duration::from_millis(50);
        assert!(!host.wait_all_acknowledged(&waits, soon()).await);
        host.acked(member_of(2), 3);
        host.acked(member_of(3), 4);
        assert!(
            !host.wait_all_acknowledged(&waits, soon()).await,
            "one member acknowledged one frame too few"
        );
        // A member released (it left the view) holds nobody back.
        host.acked(member_of(3), u64::MAX);
        assert!(host.wait_all_acknowledged(&waits, soon()).await);
        // Acknowledgements that arrive during the wait end it.
        waits.push((member_of(4), 1));
        let late = async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            host.acked(member_of(4), 1);
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        let (acknowledged, ()) = tokio::join!(host.wait_all_acknowledged(&waits, deadline), late);
        assert!(acknowledged);
    }
}
