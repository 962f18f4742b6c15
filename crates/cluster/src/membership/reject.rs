//! Why a heartbeat datagram was not believed, and the per-reason counters.

use crate::node_id::{Incarnation, NodeId};

/// What is wrong with a datagram whose framing or content breaks the format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    /// Shorter than a header and a MAC.
    #[error("{len} bytes is shorter than a header and a mac")]
    TooShort {
        /// Bytes received.
        len: usize,
    },
    /// Longer than the datagram limit.
    #[error("{len} bytes is longer than the datagram limit")]
    TooLong {
        /// Bytes received.
        len: usize,
    },
    /// The header's payload size is not the number of bytes between header and MAC.
    #[error("payload size field says {declared} bytes, the datagram holds {actual}")]
    PayloadSizeMismatch {
        /// The header's payload size.
        declared: u32,
        /// The bytes between header and MAC.
        actual: usize,
    },
    /// The message id is neither heartbeat (1) nor leave (2).
    #[error("unknown message id {message_id}")]
    UnknownMessageId {
        /// The message id received.
        message_id: u32,
    },
    /// The payload does not decode.
    #[error("payload does not decode")]
    Payload,
    /// Bytes are left after the payload.
    #[error("{len} bytes after the payload")]
    TrailingPayloadBytes {
        /// Number of bytes left over.
        len: usize,
    },
    /// A name is empty, too long or has control characters.
    #[error("a name is empty, too long or has control characters")]
    InvalidName,
    /// More gossip entries than allowed.
    #[error("{len} gossip entries is more than allowed")]
    TooManyGossipEntries {
        /// Entries received.
        len: usize,
    },
    /// More recently-dead entries than allowed.
    #[error("{len} recently-dead entries is more than allowed")]
    TooManyDeadEntries {
        /// Entries received.
        len: usize,
    },
    /// A gossip entry's id is not the id of its name.
    #[error("a gossip entry's id is not the id of its name")]
    GossipIdMismatch,
    /// The header's sender id is not the id of the payload's node name.
    #[error("sender id does not match the node name")]
    SenderIdMismatch,
    /// The header's sender port is not the port of the payload's peer address.
    #[error("sender port does not match the peer address")]
    SenderPortMismatch,
    /// The header's sender load is not the payload's session count.
    #[error("sender load does not match the session count")]
    SenderLoadMismatch,
}

/// Why a datagram was rejected. A rejected datagram is counted by [`RejectReason`] and otherwise
/// ignored: it changes no member, no view and produces no event. The caller logs it, rate-limited.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Reject {
    /// The datagram breaks the format. Only the counter changed.
    #[error("malformed heartbeat: {0}")]
    Malformed(Malformed),
    /// The MAC does not verify: another secret, or a corrupted or forged datagram. Only the
    /// counter changed.
    #[error("heartbeat mac does not verify (a node with another secret?)")]
    BadMac,
    /// The datagram comes from a node of another cluster. Only the counter changed.
    #[error("heartbeat from cluster {theirs:?}, this node is in cluster {ours:?}")]
    OtherCluster {
        /// This node's cluster name.
        ours: String,
        /// The cluster name in the datagram (unauthenticated).
        theirs: String,
    },
    /// The sender speaks another protocol version. Only the counter changed.
    #[error("heartbeat speaks protocol version {theirs}, this node speaks {ours}")]
    ProtocolMismatch {
        /// This node's protocol version.
        ours: u32,
        /// The datagram's protocol id.
        theirs: u32,
    },
    /// The sender has another partition count; it must be the same on every node. Only the
    /// counter changed.
    #[error("node {name:?} has {theirs} partitions, this node has {ours}")]
    PartitionCountMismatch {
        /// The sender's name.
        name: String,
        /// This node's partition count.
        ours: u32,
        /// The sender's partition count.
        theirs: u32,
    },
    /// A datagram of this sender and incarnation with this sequence number was already accepted,
    /// or is too old to tell. Only the counter changed.
    #[error(
        "replayed or old heartbeat from {name:?}: sequence {sequence}, newest seen {newest_sequence}"
    )]
    Replayed {
        /// The sender's name.
        name: String,
        /// The datagram's sequence number.
        sequence: u64,
        /// The newest sequence number accepted from this incarnation.
        newest_sequence: u64,
    },
    /// The sender's incarnation is older than one already seen for its name. Only the counter
    /// changed.
    #[error("heartbeat from an old incarnation {theirs} of {name:?}, newest seen is {newest}")]
    StaleIncarnation {
        /// The sender's name.
        name: String,
        /// The datagram's incarnation.
        theirs: Incarnation,
        /// The newest incarnation seen for the name.
        newest: Incarnation,
    },
    /// The sender claims an id already taken: this node's own id from another incarnation (two
    /// processes with one name), or an id that another name hashes to. Only the counter changed.
    #[error(
        "node {name:?} (incarnation {incarnation}) claims id {id}, already taken by {holder:?}"
    )]
    NameClash {
        /// The sender's name.
        name: String,
        /// The sender's incarnation.
        incarnation: Incarnation,
        /// The id in question.
        id: NodeId,
        /// The name that holds the id here.
        holder: String,
    },
    /// The member table is full. Only the counter changed.
    #[error("member table is full ({members_max} members); not adding {name:?}")]
    MemberLimit {
        /// The sender's name.
        name: String,
        /// The configured limit.
        members_max: usize,
    },
}

/// The reason of a [`Reject`], without its details: the key of the rejection counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RejectReason {
    /// See [`Reject::Malformed`].
    Malformed,
    /// See [`Reject::BadMac`].
    BadMac,
    /// See [`Reject::OtherCluster`].
    OtherCluster,
    /// See [`Reject::ProtocolMismatch`].
    ProtocolMismatch,
    /// See [`Reject::PartitionCountMismatch`].
    PartitionCountMismatch,
    /// See [`Reject::Replayed`].
    Replayed,
    /// See [`Reject::StaleIncarnation`].
    StaleIncarnation,
    /// See [`Reject::NameClash`].
    NameClash,
    /// See [`Reject::MemberLimit`].
    MemberLimit,
}

impl RejectReason {
    /// Every reason, in a fixed order (for metrics).
    pub const ALL: [RejectReason; 9] = [
        RejectReason::Malformed,
        RejectReason::BadMac,
        RejectReason::OtherCluster,
        RejectReason::ProtocolMismatch,
        RejectReason::PartitionCountMismatch,
        RejectReason::Replayed,
        RejectReason::StaleIncarnation,
        RejectReason::NameClash,
        RejectReason::MemberLimit,
    ];

    /// A short snake_case name, for metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::Malformed => "malformed",
            RejectReason::BadMac => "bad_mac",
            RejectReason::OtherCluster => "other_cluster",
            RejectReason::ProtocolMismatch => "protocol_mismatch",
            RejectReason::PartitionCountMismatch => "partition_count_mismatch",
            RejectReason::Replayed => "replayed",
            RejectReason::StaleIncarnation => "stale_incarnation",
            RejectReason::NameClash => "name_clash",
            RejectReason::MemberLimit => "member_limit",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl Reject {
    /// The counter this rejection goes to.
    pub fn reason(&self) -> RejectReason {
        match self {
            Reject::Malformed(_) => RejectReason::Malformed,
            Reject::BadMac => RejectReason::BadMac,
            Reject::OtherCluster { .. } => RejectReason::OtherCluster,
            Reject::ProtocolMismatch { .. } => RejectReason::ProtocolMismatch,
            Reject::PartitionCountMismatch { .. } => RejectReason::PartitionCountMismatch,
            Reject::Replayed { .. } => RejectReason::Replayed,
            Reject::StaleIncarnation { .. } => RejectReason::StaleIncarnation,
            Reject::NameClash { .. } => RejectReason::NameClash,
            Reject::MemberLimit { .. } => RejectReason::MemberLimit,
        }
    }
}

/// Rejected datagrams counted by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RejectCounts {
    counts: [u64; RejectReason::ALL.len()],
}

impl RejectCounts {
    /// Datagrams rejected for `reason`.
    pub fn get(&self, reason: RejectReason) -> u64 {
        self.counts[reason.index()]
    }

    /// Datagrams rejected for any reason.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    pub(crate) fn increment(&mut self, reason: RejectReason) {
        let count = &mut self.counts[reason.index()];
        *count = count.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_its_own_counter() {
        let mut counts = RejectCounts::default();
        for (index, reason) in RejectReason::ALL.into_iter().enumerate() {
            for _ in 0..=index {
                counts.increment(reason);
            }
        }
        for (index, reason) in RejectReason::ALL.into_iter().enumerate() {
            assert_eq!(counts.get(reason), index as u64 + 1, "{}", reason.as_str());
        }
        assert_eq!(counts.total(), (1..=9).sum::<u64>());
    }
}
