//! Cluster membership as a sans-IO state machine: heartbeats, phi-accrual failure detection,
//! gossip of addresses, and the events that tell the upper layers who is alive.
//!
//! # How it works
//!
//! Every [`MembershipConfig::heartbeat_interval_ms`] this node sends one authenticated UDP
//! heartbeat ([`wire`]) to every member in its view and to every address it was told about but has
//! not heard from yet. Members it declared down, and `--join` seeds that are not in the view, are
//! probed at the slow rate ([`MembershipConfig::slow_probe_interval_ms`]), or at the full rate while
//! this node is alone, so that joining is fast and a healed split or a restarted seed rejoins.
//!
//! A node enters the view only when a heartbeat *from it* arrives and authenticates. Gossip (up to
//! eight members per heartbeat, rotating) only gives addresses to contact; a (name, incarnation)
//! this node declared down is never brought back by gossip, only by its own heartbeat, and then
//! the upper layers hear [`MembershipEvent::NodeRejoined`], so they treat its data as stale. A
//! higher incarnation of a known name replaces the old one ([`MembershipEvent::NodeDown`] for the
//! old, [`MembershipEvent::NodeRestarted`], then [`MembershipEvent::NodeUp`] for the new).
//!
//! Each member has a phi-accrual detector ([`phi`]); it is declared down when phi reaches the
//! threshold, or when its peer link was reset ([`Membership::handle_peer_reset`]) and no
//! heartbeat came within the grace period. Each node judges from its own observations only: the
//! list of members a sender declared down is used to tell *this* node that it was declared dead
//! ([`MembershipEvent::SelfDeclaredDead`]), and to keep gossip from resurrecting those members.
//!
//! # Driving it
//!
//! The caller owns the socket and the clock. It passes every received datagram to
//! [`Membership::handle_datagram`], calls [`Membership::handle_tick`] at
//! [`Membership::next_timeout_ms`], and after every call drains [`Membership::poll_transmit`] (to
//! the socket) and [`Membership::poll_event`] (to the upper layers). Times are milliseconds of a
//! monotonic clock; a time earlier than one already seen is taken as that one. The next timeout is
//! never more than one heartbeat interval away, so a gap between inputs longer than the
//! failure-detection time can only mean this node was not running: it is reported as
//! [`MembershipEvent::SelfStalled`].
//!
//! Incarnations of one name must increase across restarts (wall-clock ms at start, raised above
//! any persisted one): a lower incarnation than one already seen is rejected as stale.

mod config;
mod member;
mod phi;
mod reject;
pub mod wire;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;

use bytes::Bytes;

pub use self::config::{ConfigError, MembershipConfig};
pub use self::member::{DownReason, MemberInfo, MemberState, PHI_DISPLAY_MAX};
pub use self::reject::{Malformed, Reject, RejectCounts, RejectReason};
pub use self::wire::{NodeAddresses, NodeLoad};

use self::member::{Member, SequenceStatus};
use self::phi::PhiParams;
use self::wire::{
    DEAD_ENTRIES_MAX, DeadEntry, GossipEntry, HeartbeatPayload, MessageKind, decode_datagram,
    encode_datagram,
};
use crate::auth::ClusterKeys;
use crate::node_id::{Incarnation, NodeId, is_valid_name};

/// Who this node is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SelfIdentity {
    /// The configured, stable node name.
    pub name: String,
    /// This run's incarnation; must be higher than the previous run's.
    pub incarnation: Incarnation,
    /// The addresses this node serves on, as other nodes should reach them.
    pub addresses: NodeAddresses,
}

/// A datagram to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// The destination heartbeat address.
    pub to: SocketAddr,
    /// The datagram.
    pub bytes: Bytes,
}

/// What membership tells the upper layers.
#[derive(Clone, Debug, PartialEq)]
pub enum MembershipEvent {
    /// A member entered the view: its first authenticated heartbeat arrived.
    NodeUp(MemberInfo),
    /// A member this node had declared down sent a heartbeat of the same incarnation: it is back
    /// in the view, but whatever it holds may be stale.
    NodeRejoined(MemberInfo),
    /// A member left the view.
    NodeDown {
        /// The member's id.
        id: NodeId,
        /// The member's name.
        name: String,
        /// The incarnation that is down.
        incarnation: Incarnation,
        /// Why.
        reason: DownReason,
    },
    /// A known name came back with a new incarnation. The old incarnation was reported down
    /// before this event (if it was still up) and the new one is reported up after it.
    NodeRestarted {
        /// The member's id.
        id: NodeId,
        /// The member's name.
        name: String,
        /// The incarnation that is gone.
        old: Incarnation,
        /// The incarnation now running.
        new: Incarnation,
    },
    /// This node itself did not run for `gap_ms`, longer than the failure-detection time (SIGSTOP,
    /// a VM pause): the others have probably declared it down, so the upper layer fences itself.
    SelfStalled {
        /// How long nothing was handled, in ms.
        gap_ms: u64,
    },
    /// A member's heartbeat lists this node's incarnation among those it declared down.
    SelfDeclaredDead {
        /// The member that declared this node down.
        by: NodeId,
    },
}

/// Counters for metrics and the status page.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MembershipStats {
    /// Heartbeat datagrams queued for sending.
    pub heartbeats_sent: u64,
    /// Heartbeats accepted as news.
    pub heartbeats_received: u64,
    /// Heartbeats accepted but older than one already received (reordered by the network).
    pub heartbeats_late: u64,
    /// This node's own heartbeats that came back (a seed that is this node).
    pub own_heartbeats_received: u64,
    /// Leave datagrams queued for sending.
    pub leaves_sent: u64,
    /// Leave datagrams accepted.
    pub leaves_received: u64,
    /// Rejected datagrams by reason.
    pub rejected: RejectCounts,
    /// Members that became suspect (their peer link was reset).
    pub suspicions: u64,
    /// Members declared down, for any reason.
    pub downs: u64,
    /// Members back from down with the same incarnation.
    pub rejoins: u64,
    /// Members replaced by a new incarnation.
    pub restarts: u64,
    /// Peer link resets reported.
    pub peer_resets: u64,
    /// Times this node found itself stalled.
    pub self_stalls: u64,
    /// Members that said they declared this node down.
    pub self_declared_dead: u64,
    /// Heartbeats that could not be encoded (a bug: the configuration bounds prevent it).
    pub encode_failures: u64,
    /// Datagrams dropped because the transmit queue was full.
    pub transmits_dropped: u64,
    /// Events dropped because the event queue was full.
    pub events_dropped: u64,
}

/// An address learned from gossip, contacted until its node answers or nobody mentions it.
#[derive(Clone, Debug)]
struct Contact {
    incarnation: Incarnation,
    heartbeat_address: SocketAddr,
    last_mentioned_ms: u64,
}

/// A member this node declared down.
#[derive(Clone, Debug)]
struct DeadRecord {
    name: String,
    id: NodeId,
    incarnation: Incarnation,
    declared_at_ms: u64,
}

/// The membership state machine of one node (see the module docs).
#[derive(Debug)]
pub struct Membership {
    config: MembershipConfig,
    params: PhiParams,
    keys: ClusterKeys,
    identity: SelfIdentity,
    id: NodeId,
    stall_threshold_ms: u64,
    /// A BTreeMap, not a hash map: iteration order decides the order of transmits and events, and
    /// the simulation must replay exactly.
    members: BTreeMap<NodeId, Member>,
    contacts: BTreeMap<NodeId, Contact>,
    /// Addresses where this node's own heartbeats came back from, never probed.
    own_addresses: BTreeSet<SocketAddr>,
    /// Most recent last; at most `config.dead_list_len_max`.
    dead_list: VecDeque<DeadRecord>,
    /// Members whose latest heartbeat lists this node as declared down (one event per episode).
    declared_dead_by: BTreeSet<NodeId>,
    /// The sequence number of the last datagram built.
    sequence: u64,
    next_heartbeat_ms: u64,
    next_slow_probe_ms: u64,
    last_input_ms: u64,
    /// The last member gossiped; the next heartbeat continues after it.
    gossip_cursor: NodeId,
    load: NodeLoad,
    table_digest: u64,
    role: u8,
    left: bool,
    transmits: VecDeque<Transmit>,
    events: VecDeque<MembershipEvent>,
    stats: MembershipStats,
}

impl Membership {
    /// A node that knows nobody yet; its first tick heartbeats the seeds.
    pub fn new(
        config: MembershipConfig,
        identity: SelfIdentity,
        now_ms: u64,
    ) -> Result<Membership, ConfigError> {
        config.validate()?;
        if !is_valid_name(&identity.name) {
            return Err(ConfigError::InvalidName {
                field: "name",
                name: identity.name.clone(),
            });
        }
        let keys = ClusterKeys::derive(config.secret_opt.as_ref(), &config.cluster_name);
        let id = NodeId::from_name(&identity.name);
        let mut own_addresses = BTreeSet::new();
        own_addresses.insert(identity.addresses.heartbeat);
        Ok(Membership {
            params: config.phi_params(),
            stall_threshold_ms: config.self_stall_threshold_ms(),
            keys,
            id,
            identity,
            members: BTreeMap::new(),
            contacts: BTreeMap::new(),
            own_addresses,
            dead_list: VecDeque::new(),
            declared_dead_by: BTreeSet::new(),
            sequence: 0,
            next_heartbeat_ms: now_ms,
            next_slow_probe_ms: now_ms,
            last_input_ms: now_ms,
            gossip_cursor: id,
            load: NodeLoad::default(),
            table_digest: 0,
            role: 0,
            left: false,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: MembershipStats::default(),
            config,
        })
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// This node's identity.
    pub fn identity(&self) -> &SelfIdentity {
        &self.identity
    }

    /// The configuration in force.
    pub fn config(&self) -> &MembershipConfig {
        &self.config
    }

    /// The cluster keys (the node layer uses them for the peer handshake too).
    pub fn keys(&self) -> &ClusterKeys {
        &self.keys
    }

    /// Whether [`Membership::leave`] was called.
    pub fn has_left(&self) -> bool {
        self.left
    }

    /// Counters.
    pub fn stats(&self) -> MembershipStats {
        self.stats
    }

    /// Sets the load this node advertises in its next heartbeats.
    pub fn set_local_load(&mut self, load: NodeLoad) {
        self.load = load;
    }

    /// Sets the opaque partition-table digest this node advertises.
    pub fn set_table_digest(&mut self, table_digest: u64) {
        self.table_digest = table_digest;
    }

    /// Sets the opaque HA role this node advertises.
    pub fn set_role(&mut self, role: u8) {
        self.role = role;
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event for the upper layers.
    pub fn poll_event(&mut self) -> Option<MembershipEvent> {
        self.events.pop_front()
    }

    /// When [`Membership::handle_tick`] must be called next (it may be in the past: call it at
    /// once). `None` after [`Membership::leave`].
    pub fn next_timeout_ms(&self) -> Option<u64> {
        if self.left {
            return None;
        }
        let mut timeout_ms = self.next_heartbeat_ms;
        for member in self.members.values().filter(|member| member.is_in_view()) {
            timeout_ms = timeout_ms.min(self.member_deadline_ms(member));
        }
        Some(timeout_ms)
    }

    /// The ids in this node's view, itself included, sorted.
    pub fn view(&self) -> Vec<NodeId> {
        let mut view: Vec<NodeId> = self
            .members
            .values()
            .filter(|member| member.is_in_view())
            .map(|member| member.id)
            .collect();
        view.push(self.id);
        view.sort_unstable();
        view
    }

    /// Whether every other member of the view last reported this node's view digest: the
    /// cluster, as far as this node hears, agrees on who is in it.
    pub fn view_agreed(&self) -> bool {
        let own = self.view_digest();
        self.members
            .values()
            .filter(|member| member.is_in_view())
            .all(|member| member.view_digest == own)
    }

    /// `xxh3_64` over the view's (id u32, incarnation u64) pairs, big-endian, sorted by id: equal
    /// digests mean equal views, so the upper layers can tell when the cluster agrees.
    pub fn view_digest(&self) -> u64 {
        let mut pairs: Vec<(NodeId, Incarnation)> = self
            .members
            .values()
            .filter(|member| member.is_in_view())
            .map(|member| (member.id, member.incarnation))
            .collect();
        pairs.push((self.id, self.identity.incarnation));
        pairs.sort_unstable();
        let mut bytes = Vec::with_capacity(pairs.len() * 12);
        for (id, incarnation) in pairs {
            bytes.extend_from_slice(&id.0.to_be_bytes());
            bytes.extend_from_slice(&incarnation.0.to_be_bytes());
        }
        xxhash_rust::xxh3::xxh3_64(&bytes)
    }

    /// Every member, this node first, then by id; down members included.
    pub fn members(&self) -> Vec<MemberInfo> {
        let now_ms = self.last_input_ms;
        let mut members = Vec::with_capacity(self.members.len() + 1);
        members.push(MemberInfo {
            name: self.identity.name.clone(),
            id: self.id,
            incarnation: self.identity.incarnation,
            addresses: self.identity.addresses,
            heartbeat_send_address: self.identity.addresses.heartbeat,
            state: MemberState::Alive,
            down_reason_opt: None,
            phi: 0.0,
            last_heard_ms: now_ms,
            load: self.load,
            view_digest: self.view_digest(),
            table_digest: self.table_digest,
            role: self.role,
            is_self: true,
        });
        members.extend(
            self.members
                .values()
                .map(|member| member.info(&self.params, now_ms)),
        );
        members
    }

    /// Time passes: declares members down, forgets what expired, and sends heartbeats when due.
    pub fn handle_tick(&mut self, now_ms: u64) {
        let now_ms = self.observe_clock(now_ms);
        if self.left {
            return;
        }
        let ids: Vec<NodeId> = self.members.keys().copied().collect();
        for id in ids {
            self.check_member(id, now_ms);
        }
        self.expire(now_ms);
        if now_ms >= self.next_heartbeat_ms {
            self.send_heartbeats(now_ms);
            self.next_heartbeat_ms += self.config.heartbeat_interval_ms;
            if self.next_heartbeat_ms <= now_ms {
                // Late (a slow caller): send at the normal pace from now on rather than in a burst.
                self.next_heartbeat_ms = now_ms + self.config.heartbeat_interval_ms;
            }
        }
    }

    /// The peer TCP link to `node` was reset or closed: unless a heartbeat from it arrives within
    /// [`MembershipConfig::peer_reset_grace_ms`], it is declared down then, without waiting for
    /// the failure detector.
    ///
    /// A heartbeat goes to `node` at once. When it is alive it saw the same reset (both ends of a
    /// TCP connection do) and does the same, so its heartbeat arrives a round trip later: one
    /// more within the grace than the two periodic ones, and a single lost datagram no longer
    /// declares a live node down.
    pub fn handle_peer_reset(&mut self, node: NodeId, now_ms: u64) {
        let now_ms = self.observe_clock(now_ms);
        if self.left {
            return;
        }
        self.stats.peer_resets += 1;
        let Some(member) = self.members.get_mut(&node) else {
            return;
        };
        if member.state == MemberState::Alive {
            member.state = MemberState::Suspect;
            member.peer_reset_at_ms_opt = Some(now_ms);
            self.stats.suspicions += 1;
        }
        if member.is_in_view() {
            let to = member.heartbeat_send_address;
            if let Some(bytes) = self.build_datagram(MessageKind::Heartbeat) {
                self.stats.heartbeats_sent += 1;
                self.push_transmit(Transmit { to, bytes });
            }
        }
    }

    /// A datagram arrived on the heartbeat socket from `from`. A rejected datagram is counted and
    /// changes nothing else; the caller logs the [`Reject`], rate-limited.
    pub fn handle_datagram(
        &mut self,
        from: SocketAddr,
        bytes: &[u8],
        now_ms: u64,
    ) -> Result<(), Reject> {
        let now_ms = self.observe_clock(now_ms);
        if self.left {
            return Ok(());
        }
        let result = self.accept_datagram(from, bytes, now_ms);
        if let Err(reject) = &result {
            self.stats.rejected.increment(reject.reason());
        }
        result
    }

    /// Leaves the cluster on purpose: queues a leave datagram to every member in the view and stops
    /// heartbeating. The members report this node down at once instead of after the detection time.
    pub fn leave(&mut self, now_ms: u64) {
        self.observe_clock(now_ms);
        if self.left {
            return;
        }
        let destinations: BTreeSet<SocketAddr> = self
            .members
            .values()
            .filter(|member| member.is_in_view())
            .map(|member| member.heartbeat_send_address)
            .collect();
        if let Some(bytes) = self.build_datagram(MessageKind::Leave) {
            for to in destinations {
                self.stats.leaves_sent += 1;
                self.push_transmit(Transmit {
                    to,
                    bytes: bytes.clone(),
                });
            }
        }
        self.left = true;
    }

    /// Notes the time of an input; a gap longer than the failure-detection time means this node was
    /// not running, so it reports [`MembershipEvent::SelfStalled`] and restarts every member's
    /// clock (it cannot tell whether they were late or it was).
    fn observe_clock(&mut self, now_ms: u64) -> u64 {
        let now_ms = now_ms.max(self.last_input_ms);
        let gap_ms = now_ms - self.last_input_ms;
        self.last_input_ms = now_ms;
        if gap_ms > self.stall_threshold_ms && !self.left {
            self.stats.self_stalls += 1;
            self.push_event(MembershipEvent::SelfStalled { gap_ms });
            for member in self
                .members
                .values_mut()
                .filter(|member| member.is_in_view())
            {
                member.detector.restart_clock(now_ms);
                if let Some(reset_at_ms) = &mut member.peer_reset_at_ms_opt {
                    *reset_at_ms = now_ms;
                }
            }
            self.next_heartbeat_ms = self.next_heartbeat_ms.min(now_ms);
        }
        now_ms
    }

    fn member_deadline_ms(&self, member: &Member) -> u64 {
        let phi_deadline_ms = member.detector.down_deadline_ms(&self.params);
        match member.peer_reset_at_ms_opt {
            Some(reset_at_ms) => {
                phi_deadline_ms.min(reset_at_ms.saturating_add(self.config.peer_reset_grace_ms))
            }
            None => phi_deadline_ms,
        }
    }

    /// Declares member `id` down if its deadline passed.
    fn check_member(&mut self, id: NodeId, now_ms: u64) {
        let Some(member) = self.members.get(&id) else {
            return;
        };
        if !member.is_in_view() || now_ms < self.member_deadline_ms(member) {
            return;
        }
        let reason = match member.peer_reset_at_ms_opt {
            Some(reset_at_ms)
                if now_ms >= reset_at_ms.saturating_add(self.config.peer_reset_grace_ms) =>
            {
                DownReason::PeerReset
            }
            _ => DownReason::FailureDetected,
        };
        self.declare_down(id, reason, now_ms);
    }

    fn declare_down(&mut self, id: NodeId, reason: DownReason, now_ms: u64) {
        let Some(member) = self.members.get_mut(&id) else {
            return;
        };
        if !member.is_in_view() {
            return;
        }
        member.state = MemberState::Down;
        member.down_reason_opt = Some(reason);
        member.down_since_ms = now_ms;
        member.peer_reset_at_ms_opt = None;
        let (name, incarnation) = (member.name.clone(), member.incarnation);
        self.stats.downs += 1;
        self.record_dead(&name, id, incarnation, now_ms);
        self.push_event(MembershipEvent::NodeDown {
            id,
            name,
            incarnation,
            reason,
        });
    }

    fn record_dead(&mut self, name: &str, id: NodeId, incarnation: Incarnation, now_ms: u64) {
        self.dead_list
            .retain(|record| !(record.id == id && record.incarnation == incarnation));
        if self.dead_list.len() >= self.config.dead_list_len_max {
            self.dead_list.pop_front();
        }
        self.dead_list.push_back(DeadRecord {
            name: name.to_owned(),
            id,
            incarnation,
            declared_at_ms: now_ms,
        });
    }

    /// Forgets contacts nobody mentions, old dead records, and long-down members.
    fn expire(&mut self, now_ms: u64) {
        let contact_expiry_ms = self.config.contact_expiry_ms;
        self.contacts.retain(|_, contact| {
            now_ms.saturating_sub(contact.last_mentioned_ms) < contact_expiry_ms
        });
        let dead_retention_ms = self.config.dead_retention_ms;
        self.dead_list
            .retain(|record| now_ms.saturating_sub(record.declared_at_ms) < dead_retention_ms);
        let down_retention_ms = self.config.down_member_retention_ms;
        let forgotten: Vec<NodeId> = self
            .members
            .values()
            .filter(|member| {
                member.state == MemberState::Down
                    && now_ms.saturating_sub(member.down_since_ms) >= down_retention_ms
            })
            .map(|member| member.id)
            .collect();
        for id in forgotten {
            self.members.remove(&id);
            self.declared_dead_by.remove(&id);
        }
    }

    /// Whether `address` reaches this node itself or a member in the view.
    fn is_covered(&self, address: SocketAddr) -> bool {
        self.own_addresses.contains(&address)
            || self.members.values().any(|member| {
                member.is_in_view()
                    && (member.heartbeat_send_address == address
                        || member.last_from_address == address)
            })
    }

    fn send_heartbeats(&mut self, now_ms: u64) {
        let slow_probe_due = now_ms >= self.next_slow_probe_ms;
        if slow_probe_due {
            self.next_slow_probe_ms = now_ms + self.config.slow_probe_interval_ms;
        }
        let alone = !self.members.values().any(Member::is_in_view);
        let mut destinations = BTreeSet::new();
        for member in self.members.values() {
            if member.is_in_view() || slow_probe_due {
                destinations.insert(member.heartbeat_send_address);
            }
        }
        destinations.extend(
            self.contacts
                .values()
                .map(|contact| contact.heartbeat_address),
        );
        if alone || slow_probe_due {
            for &seed in &self.config.seed_addresses {
                if !self.is_covered(seed) {
                    destinations.insert(seed);
                }
            }
        }
        for own in &self.own_addresses {
            destinations.remove(own);
        }
        if destinations.is_empty() {
            return;
        }
        if let Some(bytes) = self.build_datagram(MessageKind::Heartbeat) {
            for to in destinations {
                self.stats.heartbeats_sent += 1;
                self.push_transmit(Transmit {
                    to,
                    bytes: bytes.clone(),
                });
            }
        }
    }

    /// The next gossip entries: members in the view, continuing after the last one gossiped.
    fn next_gossip(&mut self) -> Vec<GossipEntry> {
        let in_view: Vec<&Member> = self
            .members
            .values()
            .filter(|member| member.is_in_view())
            .collect();
        let count = self.config.gossip_entries_max.min(in_view.len());
        if count == 0 {
            return Vec::new();
        }
        let start = in_view
            .iter()
            .position(|member| member.id > self.gossip_cursor)
            .unwrap_or(0);
        let entries: Vec<GossipEntry> = (0..count)
            .map(|offset| in_view[(start + offset) % in_view.len()])
            .map(|member| GossipEntry {
                name: member.name.clone(),
                id: member.id,
                incarnation: member.incarnation,
                heartbeat_address: member.heartbeat_send_address,
                peer_address: member.addresses.peer,
            })
            .collect();
        if let Some(last) = entries.last() {
            self.gossip_cursor = last.id;
        }
        entries
    }

    fn build_datagram(&mut self, kind: MessageKind) -> Option<Bytes> {
        self.sequence += 1;
        let recently_dead = self
            .dead_list
            .iter()
            .rev()
            .take(DEAD_ENTRIES_MAX)
            .map(|record| DeadEntry {
                name: record.name.clone(),
                incarnation: record.incarnation,
            })
            .collect();
        let payload = HeartbeatPayload {
            cluster_name: self.config.cluster_name.clone(),
            node_name: self.identity.name.clone(),
            incarnation: self.identity.incarnation,
            sequence: self.sequence,
            addresses: self.identity.addresses,
            load: self.load,
            view_digest: self.view_digest(),
            partition_count: self.config.partition_count,
            table_digest: self.table_digest,
            role: self.role,
            gossip: self.next_gossip(),
            recently_dead,
        };
        match encode_datagram(kind, &payload, &self.keys) {
            Ok(bytes) => Some(bytes),
            Err(error) => {
                debug_assert!(
                    false,
                    "validated configuration produced an unencodable heartbeat: {error}"
                );
                self.stats.encode_failures += 1;
                None
            }
        }
    }

    fn push_transmit(&mut self, transmit: Transmit) {
        if self.transmits.len() >= self.config.transmit_queue_len_max {
            self.transmits.pop_front();
            self.stats.transmits_dropped += 1;
        }
        self.transmits.push_back(transmit);
    }

    fn push_event(&mut self, event: MembershipEvent) {
        if self.events.len() >= self.config.event_queue_len_max {
            self.events.pop_front();
            self.stats.events_dropped += 1;
        }
        self.events.push_back(event);
    }

    fn member_info(&self, id: NodeId) -> Option<MemberInfo> {
        self.members
            .get(&id)
            .map(|member| member.info(&self.params, self.last_input_ms))
    }

    fn accept_datagram(
        &mut self,
        from: SocketAddr,
        bytes: &[u8],
        now_ms: u64,
    ) -> Result<(), Reject> {
        let datagram = decode_datagram(bytes, &self.keys, &self.config.cluster_name)?;
        let payload = datagram.payload;
        if payload.partition_count != self.config.partition_count {
            return Err(Reject::PartitionCountMismatch {
                name: payload.node_name,
                ours: self.config.partition_count,
                theirs: payload.partition_count,
            });
        }
        let id = NodeId(datagram.header.sender_id);
        if id == self.id {
            if payload.node_name == self.identity.name
                && payload.incarnation == self.identity.incarnation
            {
                // This node's own heartbeat came back: the address it was sent to is this node.
                self.own_addresses.insert(from);
                self.stats.own_heartbeats_received += 1;
                return Ok(());
            }
            return Err(Reject::NameClash {
                name: payload.node_name,
                incarnation: payload.incarnation,
                id,
                holder: self.identity.name.clone(),
            });
        }
        // The failure detector's verdict comes first: a heartbeat after the deadline is a rejoin.
        self.check_member(id, now_ms);
        let is_news = match self.members.get(&id) {
            Some(member) if member.name != payload.node_name => {
                return Err(Reject::NameClash {
                    name: payload.node_name,
                    incarnation: payload.incarnation,
                    id,
                    holder: member.name.clone(),
                });
            }
            Some(member) if payload.incarnation < member.incarnation => {
                return Err(Reject::StaleIncarnation {
                    name: payload.node_name,
                    theirs: payload.incarnation,
                    newest: member.incarnation,
                });
            }
            Some(member) if payload.incarnation > member.incarnation => {
                self.replace_incarnation(id, datagram.kind, &payload, from, now_ms);
                true
            }
            Some(_) => self.handle_known(id, datagram.kind, &payload, from, now_ms)?,
            None => {
                if datagram.kind == MessageKind::Leave {
                    // Leaving before it was ever heard from: nothing to update.
                    return Ok(());
                }
                self.add_member(&payload, from, now_ms)?;
                true
            }
        };
        if is_news && datagram.kind == MessageKind::Heartbeat {
            self.learn_gossip(&payload.gossip, now_ms);
            self.learn_declared_dead(id, &payload.recently_dead);
        }
        Ok(())
    }

    fn add_member(
        &mut self,
        payload: &HeartbeatPayload,
        from: SocketAddr,
        now_ms: u64,
    ) -> Result<(), Reject> {
        if self.members.len() >= self.config.members_max {
            // Make room by forgetting the member that has been down the longest.
            let oldest_down = self
                .members
                .values()
                .filter(|member| member.state == MemberState::Down)
                .min_by_key(|member| member.down_since_ms)
                .map(|member| member.id);
            match oldest_down {
                Some(id) => {
                    self.members.remove(&id);
                    self.declared_dead_by.remove(&id);
                }
                None => {
                    return Err(Reject::MemberLimit {
                        name: payload.node_name.clone(),
                        members_max: self.config.members_max,
                    });
                }
            }
        }
        let member = Member::new(&self.params, payload, from, now_ms);
        let id = member.id;
        self.contacts.remove(&id);
        self.members.insert(id, member);
        self.stats.heartbeats_received += 1;
        if let Some(info) = self.member_info(id) {
            self.push_event(MembershipEvent::NodeUp(info));
        }
        Ok(())
    }

    /// A new incarnation of a known name: the old one is over.
    fn replace_incarnation(
        &mut self,
        id: NodeId,
        kind: MessageKind,
        payload: &HeartbeatPayload,
        from: SocketAddr,
        now_ms: u64,
    ) {
        let Some(old) = self.members.get(&id) else {
            return;
        };
        let old_incarnation = old.incarnation;
        if old.is_in_view() {
            self.declare_down(id, DownReason::Restarted, now_ms);
        } else {
            let name = old.name.clone();
            self.record_dead(&name, id, old_incarnation, now_ms);
        }
        self.stats.restarts += 1;
        self.push_event(MembershipEvent::NodeRestarted {
            id,
            name: payload.node_name.clone(),
            old: old_incarnation,
            new: payload.incarnation,
        });
        self.members.remove(&id);
        self.declared_dead_by.remove(&id);
        if kind == MessageKind::Leave {
            return;
        }
        self.contacts.remove(&id);
        self.members
            .insert(id, Member::new(&self.params, payload, from, now_ms));
        self.stats.heartbeats_received += 1;
        if let Some(info) = self.member_info(id) {
            self.push_event(MembershipEvent::NodeUp(info));
        }
    }

    /// A datagram of the incarnation already known. Returns whether it is news.
    fn handle_known(
        &mut self,
        id: NodeId,
        kind: MessageKind,
        payload: &HeartbeatPayload,
        from: SocketAddr,
        now_ms: u64,
    ) -> Result<bool, Reject> {
        let Some(member) = self.members.get_mut(&id) else {
            return Ok(false);
        };
        match member.sequences.status(payload.sequence) {
            SequenceStatus::Replayed => {
                return Err(Reject::Replayed {
                    name: payload.node_name.clone(),
                    sequence: payload.sequence,
                    newest_sequence: member.sequences.newest(),
                });
            }
            SequenceStatus::Late => {
                // Reordered by the network: accepted (it is authentic and unseen) but not news.
                member.sequences.accept(payload.sequence);
                self.stats.heartbeats_late += 1;
                return Ok(false);
            }
            SequenceStatus::Newest => member.sequences.accept(payload.sequence),
        }
        if kind == MessageKind::Leave {
            self.stats.leaves_received += 1;
            member.update_from(payload, from);
            self.declare_down(id, DownReason::Left, now_ms);
            return Ok(true);
        }
        self.stats.heartbeats_received += 1;
        member.update_from(payload, from);
        if member.state == MemberState::Down {
            // Only its own heartbeat brings a member back, and its data may be stale.
            member.state = MemberState::Alive;
            member.down_reason_opt = None;
            member.detector = phi::PhiDetector::new(&self.params, now_ms);
            let incarnation = member.incarnation;
            self.dead_list
                .retain(|record| !(record.id == id && record.incarnation == incarnation));
            self.stats.rejoins += 1;
            if let Some(info) = self.member_info(id) {
                self.push_event(MembershipEvent::NodeRejoined(info));
            }
            return Ok(true);
        }
        member.detector.record_arrival(&self.params, now_ms);
        if let Some(reset_at_ms) = member.peer_reset_at_ms_opt
            && now_ms > reset_at_ms
        {
            member.state = MemberState::Alive;
            member.peer_reset_at_ms_opt = None;
        }
        Ok(true)
    }

    /// Gossip gives addresses to contact, never membership.
    fn learn_gossip(&mut self, gossip: &[GossipEntry], now_ms: u64) {
        for entry in gossip {
            if entry.id == self.id || self.own_addresses.contains(&entry.heartbeat_address) {
                continue;
            }
            if let Some(member) = self.members.get(&entry.id)
                && (entry.incarnation <= member.incarnation || member.name != entry.name)
            {
                // Known already; and a member this node declared down stays down until it speaks.
                continue;
            }
            if self
                .dead_list
                .iter()
                .any(|record| record.id == entry.id && record.incarnation >= entry.incarnation)
            {
                continue;
            }
            let has_room = self.contacts.len() < self.config.contacts_max;
            match self.contacts.get_mut(&entry.id) {
                Some(contact) if entry.incarnation >= contact.incarnation => {
                    contact.incarnation = entry.incarnation;
                    contact.heartbeat_address = entry.heartbeat_address;
                    contact.last_mentioned_ms = now_ms;
                }
                Some(_) => {}
                None if has_room => {
                    self.contacts.insert(
                        entry.id,
                        Contact {
                            incarnation: entry.incarnation,
                            heartbeat_address: entry.heartbeat_address,
                            last_mentioned_ms: now_ms,
                        },
                    );
                }
                None => {}
            }
        }
    }

    /// Tells the upper layers, once per episode, that `sender` declared this node down.
    fn learn_declared_dead(&mut self, sender: NodeId, recently_dead: &[DeadEntry]) {
        let listed = recently_dead.iter().any(|entry| {
            entry.name == self.identity.name && entry.incarnation == self.identity.incarnation
        });
        if !listed {
            self.declared_dead_by.remove(&sender);
        } else if self.declared_dead_by.insert(sender) {
            self.stats.self_declared_dead += 1;
            self.push_event(MembershipEvent::SelfDeclaredDead { by: sender });
        }
    }
}
