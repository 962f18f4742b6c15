//! One known member: what the status page shows ([`MemberInfo`]) and what membership keeps
//! ([`Member`]), including the anti-replay window.

use std::net::SocketAddr;

use crate::membership::phi::{PhiDetector, PhiParams};
use crate::membership::wire::{HeartbeatPayload, NodeAddresses, NodeLoad};
use crate::node_id::{Incarnation, NodeId};

/// The highest phi shown: past it the value only says "silent for very long", and a finite
/// number keeps status pages and JSON encoders out of trouble (phi itself reaches infinity).
pub const PHI_DISPLAY_MAX: f64 = 1_000.0;

/// What this node believes about a member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberState {
    /// Heard from recently; in the view.
    Alive,
    /// Its peer link was reset and no heartbeat came since; still in the view until the grace
    /// period ends.
    Suspect,
    /// Declared down; not in the view. Still probed at the slow rate, so a healed split rejoins.
    Down,
}

/// Why a member was declared down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DownReason {
    /// Its heartbeats stopped: phi reached the threshold.
    FailureDetected,
    /// Its peer link was reset and no heartbeat came within the grace period.
    PeerReset,
    /// It sent a leave datagram.
    Left,
    /// A new incarnation of its name appeared, so this one is over.
    Restarted,
}

/// A member as shown on status pages ([`crate::membership::Membership::members`]).
#[derive(Clone, Debug, PartialEq)]
pub struct MemberInfo {
    /// The member's configured name.
    pub name: String,
    /// The member's id.
    pub id: NodeId,
    /// The member's current incarnation.
    pub incarnation: Incarnation,
    /// The member's listeners, as it advertised them.
    pub addresses: NodeAddresses,
    /// Where this node sends it heartbeats: the advertised heartbeat address, with the source IP
    /// of its datagrams when it advertised an unspecified IP.
    pub heartbeat_send_address: SocketAddr,
    /// Alive, suspect or down.
    pub state: MemberState,
    /// Why it is down, when it is.
    pub down_reason_opt: Option<DownReason>,
    /// Current suspicion level, at most [`PHI_DISPLAY_MAX`] (0 for this node itself).
    pub phi: f64,
    /// When its last heartbeat arrived (now for this node itself), in the caller's ms.
    pub last_heard_ms: u64,
    /// Its load.
    pub load: NodeLoad,
    /// The digest of its view, as it last said.
    pub view_digest: u64,
    /// Its opaque table digest.
    pub table_digest: u64,
    /// Its opaque HA role.
    pub role: u8,
    /// Whether this is the node itself.
    pub is_self: bool,
}

/// Where a sequence number stands against the ones already accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SequenceStatus {
    /// Newer than all accepted: news.
    Newest,
    /// Older than the newest but inside the window and never seen: reordered in the network.
    Late,
    /// Seen before, or older than the window: a replay or too old to tell.
    Replayed,
}

/// The last 64 sequence numbers accepted from one incarnation (the IPsec anti-replay window),
/// so that a datagram reordered by jitter is not mistaken for a replay and a replay is never
/// mistaken for news.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SequenceWindow {
    newest: u64,
    /// Bit `i` set: `newest - i` was accepted.
    seen_bits: u64,
}

impl SequenceWindow {
    pub(crate) fn new(first: u64) -> SequenceWindow {
        SequenceWindow {
            newest: first,
            seen_bits: 1,
        }
    }

    pub(crate) fn newest(&self) -> u64 {
        self.newest
    }

    pub(crate) fn status(&self, sequence: u64) -> SequenceStatus {
        if sequence > self.newest {
            return SequenceStatus::Newest;
        }
        let age = self.newest - sequence;
        if age >= 64 || self.seen_bits & (1 << age) != 0 {
            SequenceStatus::Replayed
        } else {
            SequenceStatus::Late
        }
    }

    /// Marks `sequence` accepted; call only after [`SequenceWindow::status`] said it is not replayed.
    pub(crate) fn accept(&mut self, sequence: u64) {
        if sequence > self.newest {
            let shift = sequence - self.newest;
            self.seen_bits = if shift >= 64 {
                0
            } else {
                self.seen_bits << shift
            };
            self.seen_bits |= 1;
            self.newest = sequence;
        } else {
            let age = self.newest - sequence;
            if age < 64 {
                self.seen_bits |= 1 << age;
            }
        }
    }
}

/// A member as membership keeps it.
#[derive(Clone, Debug)]
pub(crate) struct Member {
    pub(crate) name: String,
    pub(crate) id: NodeId,
    pub(crate) incarnation: Incarnation,
    pub(crate) addresses: NodeAddresses,
    pub(crate) heartbeat_send_address: SocketAddr,
    /// The source address of its last accepted datagram.
    pub(crate) last_from_address: SocketAddr,
    pub(crate) state: MemberState,
    pub(crate) down_reason_opt: Option<DownReason>,
    /// When it was declared down; drives the retention of down members.
    pub(crate) down_since_ms: u64,
    pub(crate) detector: PhiDetector,
    pub(crate) sequences: SequenceWindow,
    /// When its peer link was reset, while no heartbeat has arrived since (state `Suspect`).
    pub(crate) peer_reset_at_ms_opt: Option<u64>,
    pub(crate) load: NodeLoad,
    pub(crate) view_digest: u64,
    pub(crate) table_digest: u64,
    pub(crate) role: u8,
}

/// Where to send heartbeats to the sender of `payload`: its advertised heartbeat address, with
/// the datagram's source IP when it advertised an unspecified one (a socket bound to 0.0.0.0).
pub(crate) fn heartbeat_send_address(payload: &HeartbeatPayload, from: SocketAddr) -> SocketAddr {
    let advertised = payload.addresses.heartbeat;
    if advertised.ip().is_unspecified() {
        SocketAddr::new(from.ip(), advertised.port())
    } else {
        advertised
    }
}

impl Member {
    /// A member first heard from at `now_ms` by a direct, authenticated heartbeat.
    pub(crate) fn new(
        params: &PhiParams,
        payload: &HeartbeatPayload,
        from: SocketAddr,
        now_ms: u64,
    ) -> Member {
        Member {
            name: payload.node_name.clone(),
            id: NodeId::from_name(&payload.node_name),
            incarnation: payload.incarnation,
            addresses: payload.addresses,
            heartbeat_send_address: heartbeat_send_address(payload, from),
            last_from_address: from,
            state: MemberState::Alive,
            down_reason_opt: None,
            down_since_ms: 0,
            detector: PhiDetector::new(params, now_ms),
            sequences: SequenceWindow::new(payload.sequence),
            peer_reset_at_ms_opt: None,
            load: payload.load,
            view_digest: payload.view_digest,
            table_digest: payload.table_digest,
            role: payload.role,
        }
    }

    /// Takes the sender's latest self-description from a heartbeat that is news.
    pub(crate) fn update_from(&mut self, payload: &HeartbeatPayload, from: SocketAddr) {
        self.addresses = payload.addresses;
        self.heartbeat_send_address = heartbeat_send_address(payload, from);
        self.last_from_address = from;
        self.load = payload.load;
        self.view_digest = payload.view_digest;
        self.table_digest = payload.table_digest;
        self.role = payload.role;
    }

    pub(crate) fn is_in_view(&self) -> bool {
        matches!(self.state, MemberState::Alive | MemberState::Suspect)
    }

    pub(crate) fn info(&self, params: &PhiParams, now_ms: u64) -> MemberInfo {
        MemberInfo {
            name: self.name.clone(),
            id: self.id,
            incarnation: self.incarnation,
            addresses: self.addresses,
            heartbeat_send_address: self.heartbeat_send_address,
            state: self.state,
            down_reason_opt: self.down_reason_opt,
            phi: self.detector.phi(params, now_ms).min(PHI_DISPLAY_MAX),
            last_heard_ms: self.detector.last_arrival_ms(),
            load: self.load,
            view_digest: self.view_digest,
            table_digest: self.table_digest,
            role: self.role,
            is_self: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sequence_window_tells_news_from_reordering_from_replays() {
        let mut window = SequenceWindow::new(10);
        let mut check = |sequence: u64, expect: SequenceStatus| {
            assert_eq!(window.status(sequence), expect, "sequence {sequence}");
            if expect != SequenceStatus::Replayed {
                window.accept(sequence);
            }
        };
        check(10, SequenceStatus::Replayed);
        check(12, SequenceStatus::Newest);
        check(11, SequenceStatus::Late);
        check(11, SequenceStatus::Replayed);
        check(9, SequenceStatus::Late);
        check(100, SequenceStatus::Newest);
        check(37, SequenceStatus::Late);
        check(36, SequenceStatus::Replayed);
        check(12, SequenceStatus::Replayed);
        check(100, SequenceStatus::Replayed);
        check(1000, SequenceStatus::Newest);
        check(999, SequenceStatus::Late);
        assert_eq!(window.newest(), 1000);
    }
}
