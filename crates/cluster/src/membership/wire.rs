//! The heartbeat datagram: encoding, decoding and authentication.
//!
//! # Layout
//!
//! One UDP datagram, at most [`DATAGRAM_LEN_MAX`] (4096) bytes:
//!
//! ```text
//! offset     size  field
//! 0          4     message id    u32 big-endian: 1 = heartbeat, 2 = leave
//! 4          4     protocol id   u32 big-endian: the peer protocol version, PROTOCOL_VERSION (1)
//! 8          4     sender id     u32 big-endian: NodeId of the sender, low 32 bits of xxh3_64(name)
//! 12         4     sender port   u32 big-endian: the sender's peer TCP port
//! 16         4     sender load   u32 big-endian: the sender's session count, saturating at 2^32-1
//! 20         4     payload size  u32 big-endian: n, the number of payload bytes
//! 24         n     payload       postcard encoding of HeartbeatPayload (below)
//! 24+n       32    MAC           HMAC-SHA256(heartbeat_key, bytes 0 .. 24+n)
//! ```
//!
//! The header is the one of the original Session Clustering daemon, so tools that parse those
//! datagrams keep working; everything else is in the payload. The heartbeat key comes from the
//! cluster secret and name (see `auth`). The payload, in postcard's encoding (varint integers,
//! length-prefixed strings and lists, a one-byte tag for `Option` and for the IPv4/IPv6 variant of
//! an address), is these fields in this order:
//!
//! ```text
//! cluster_name      string, 1..=64 bytes
//! node_name         string, 1..=64 bytes; xxh3_64(node_name) as u32 must equal the sender id
//! incarnation       u64, new at every start of the sender, increasing
//! sequence          u64, +1 for every datagram the sender sends in this incarnation
//! addresses         peer (TCP, its port must equal the header's sender port), heartbeat (UDP),
//!                   client (RESP), memcached (Option), admin (HTTP): socket addresses
//! load              num_sessions u64 (the header's sender load, unsaturated), num_connections u64
//! view_digest       u64, xxh3_64 of the sender's view (see Membership::view_digest)
//! partition_count   u32, must equal the receiver's
//! table_digest      u64, opaque, filled in by the partition table
//! role              u8, opaque, filled in by the HA layer
//! gossip            list of at most 8 { name, id u32, incarnation u64, heartbeat address,
//!                   peer address }: members the sender heard from directly and believes alive
//! recently_dead     list of at most 8 { name, incarnation }: members the sender declared down
//! ```
//!
//! A leave (message id 2) carries the same payload; it says the sender is leaving on purpose.
//!
//! # Checks, in order
//!
//! Size (at least 24 + 32 bytes, at most 4096, payload size matching), then the protocol id, the
//! message id, the MAC, the payload (it must decode with no bytes left over and respect every bound
//! above), the cluster name, and the header fields against the payload. When the MAC fails the
//! receiver still reads the payload's first field to tell "another cluster" from "bad MAC" for the
//! counters; nothing of such a datagram is believed.

use std::net::SocketAddr;

use bytes::{BufMut, Bytes, BytesMut};
use ring::hmac;
use serde::{Deserialize, Serialize};

use crate::auth::ClusterKeys;
use crate::membership::reject::{Malformed, Reject};
use crate::node_id::{Incarnation, NodeId, is_valid_name};

/// Length of the fixed header in bytes.
pub const HEADER_LEN: usize = 24;
/// Length of the MAC trailer in bytes.
pub const MAC_LEN: usize = 32;
/// Longest datagram accepted or sent, in bytes.
pub const DATAGRAM_LEN_MAX: usize = 4096;
/// The peer protocol version carried in the protocol id field.
pub const PROTOCOL_VERSION: u32 = 1;
/// Most gossip entries in one heartbeat.
pub const GOSSIP_ENTRIES_MAX: usize = 8;
/// Most recently-dead entries in one heartbeat.
pub const DEAD_ENTRIES_MAX: usize = 8;

/// The message id of a datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageKind {
    /// Message id 1: the periodic heartbeat.
    Heartbeat,
    /// Message id 2: the sender leaves the cluster on purpose.
    Leave,
}

impl MessageKind {
    /// The number on the wire.
    pub fn message_id(self) -> u32 {
        match self {
            MessageKind::Heartbeat => 1,
            MessageKind::Leave => 2,
        }
    }

    fn from_message_id(message_id: u32) -> Option<MessageKind> {
        match message_id {
            1 => Some(MessageKind::Heartbeat),
            2 => Some(MessageKind::Leave),
            _ => None,
        }
    }
}

/// The six header fields, as read from the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// The message type, see [`MessageKind`].
    pub message_id: u32,
    /// The sender's protocol version.
    pub protocol_id: u32,
    /// The sender's [`NodeId`].
    pub sender_id: u32,
    /// The sender's peer TCP port.
    pub sender_port: u32,
    /// The sender's session count, saturating.
    pub sender_load: u32,
    /// Number of payload bytes.
    pub payload_len: u32,
}

impl Header {
    fn read(bytes: &[u8; HEADER_LEN]) -> Header {
        let field = |index: usize| {
            let start = index * 4;
            u32::from_be_bytes([
                bytes[start],
                bytes[start + 1],
                bytes[start + 2],
                bytes[start + 3],
            ])
        };
        Header {
            message_id: field(0),
            protocol_id: field(1),
            sender_id: field(2),
            sender_port: field(3),
            sender_load: field(4),
            payload_len: field(5),
        }
    }

    fn write(&self, buffer: &mut BytesMut) {
        for field in [
            self.message_id,
            self.protocol_id,
            self.sender_id,
            self.sender_port,
            self.sender_load,
            self.payload_len,
        ] {
            buffer.put_u32(field);
        }
    }
}

/// The addresses a node serves on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeAddresses {
    /// The peer TCP listener.
    pub peer: SocketAddr,
    /// The heartbeat UDP socket.
    pub heartbeat: SocketAddr,
    /// The RESP client listener.
    pub client: SocketAddr,
    /// The memcached listener, when enabled.
    pub memcached_opt: Option<SocketAddr>,
    /// The HTTP admin listener.
    pub admin: SocketAddr,
}

/// How busy a node is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeLoad {
    /// Sessions stored on the node.
    pub num_sessions: u64,
    /// Open client connections.
    pub num_connections: u64,
}

/// A member the sender believes alive, so the receiver can contact it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GossipEntry {
    /// The member's name.
    pub name: String,
    /// The member's id (must be the id of `name`).
    pub id: NodeId,
    /// The member's incarnation.
    pub incarnation: Incarnation,
    /// Where the member receives heartbeats.
    pub heartbeat_address: SocketAddr,
    /// Where the member accepts peer links.
    pub peer_address: SocketAddr,
}

/// A member the sender declared down recently.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadEntry {
    /// The member's name.
    pub name: String,
    /// The incarnation that was declared down.
    pub incarnation: Incarnation,
}

/// Everything after the header (see the module docs for the bounds).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatPayload {
    /// The sender's cluster.
    pub cluster_name: String,
    /// The sender's name.
    pub node_name: String,
    /// The sender's incarnation.
    pub incarnation: Incarnation,
    /// The sender's datagram counter within the incarnation.
    pub sequence: u64,
    /// The sender's listeners.
    pub addresses: NodeAddresses,
    /// The sender's load.
    pub load: NodeLoad,
    /// The digest of the sender's view.
    pub view_digest: u64,
    /// The sender's partition count.
    pub partition_count: u32,
    /// Opaque digest of the sender's partition table.
    pub table_digest: u64,
    /// Opaque HA role of the sender.
    pub role: u8,
    /// Members the sender believes alive, at most [`GOSSIP_ENTRIES_MAX`].
    pub gossip: Vec<GossipEntry>,
    /// Members the sender declared down recently, at most [`DEAD_ENTRIES_MAX`].
    pub recently_dead: Vec<DeadEntry>,
}

impl HeartbeatPayload {
    /// The first bound this payload breaks, if any.
    fn check_bounds(&self) -> Result<(), Malformed> {
        if !is_valid_name(&self.cluster_name) {
            return Err(Malformed::InvalidName);
        }
        if !is_valid_name(&self.node_name) {
            return Err(Malformed::InvalidName);
        }
        if self.gossip.len() > GOSSIP_ENTRIES_MAX {
            return Err(Malformed::TooManyGossipEntries {
                len: self.gossip.len(),
            });
        }
        if self.recently_dead.len() > DEAD_ENTRIES_MAX {
            return Err(Malformed::TooManyDeadEntries {
                len: self.recently_dead.len(),
            });
        }
        for entry in &self.gossip {
            if !is_valid_name(&entry.name) {
                return Err(Malformed::InvalidName);
            }
            if entry.id != NodeId::from_name(&entry.name) {
                return Err(Malformed::GossipIdMismatch);
            }
        }
        if self
            .recently_dead
            .iter()
            .any(|entry| !is_valid_name(&entry.name))
        {
            return Err(Malformed::InvalidName);
        }
        Ok(())
    }

    /// The header's sender load: the session count, saturating.
    fn header_load(&self) -> u32 {
        u32::try_from(self.load.num_sessions).unwrap_or(u32::MAX)
    }
}

/// A datagram that passed every check of [`decode_datagram`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Datagram {
    /// Heartbeat or leave.
    pub kind: MessageKind,
    /// The header as received.
    pub header: Header,
    /// The payload.
    pub payload: HeartbeatPayload,
}

/// Why a payload could not be encoded. Nothing was sent.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The payload breaks a bound a receiver enforces. Nothing was sent.
    #[error("payload would be rejected: {0}")]
    InvalidPayload(Malformed),
    /// The datagram would be longer than [`DATAGRAM_LEN_MAX`]. Nothing was sent.
    #[error("datagram would be {len} bytes, more than {DATAGRAM_LEN_MAX}")]
    TooLong {
        /// The length it would have.
        len: usize,
    },
}

/// Encodes and authenticates one datagram.
pub fn encode_datagram(
    kind: MessageKind,
    payload: &HeartbeatPayload,
    keys: &ClusterKeys,
) -> Result<Bytes, EncodeError> {
    payload
        .check_bounds()
        .map_err(EncodeError::InvalidPayload)?;
    let payload_bytes = postcard::to_stdvec(payload)
        .map_err(|_| EncodeError::InvalidPayload(Malformed::Payload))?;
    let len = HEADER_LEN + payload_bytes.len() + MAC_LEN;
    if len > DATAGRAM_LEN_MAX {
        return Err(EncodeError::TooLong { len });
    }
    let header = Header {
        message_id: kind.message_id(),
        protocol_id: PROTOCOL_VERSION,
        sender_id: NodeId::from_name(&payload.node_name).0,
        sender_port: u32::from(payload.addresses.peer.port()),
        sender_load: payload.header_load(),
        // Bounded by DATAGRAM_LEN_MAX just above.
        payload_len: payload_bytes.len() as u32,
    };
    let mut buffer = BytesMut::with_capacity(len);
    header.write(&mut buffer);
    buffer.put_slice(&payload_bytes);
    let tag = hmac::sign(keys.heartbeat_key(), &buffer);
    buffer.put_slice(tag.as_ref());
    debug_assert_eq!(buffer.len(), len);
    Ok(buffer.freeze())
}

/// The first field of the payload, readable without the rest.
#[derive(Deserialize)]
struct PayloadPrefix {
    cluster_name: String,
}

/// Checks and decodes one datagram received by a node of `cluster_name` (see the module docs for
/// the order of the checks). Never panics, whatever the bytes.
pub fn decode_datagram(
    bytes: &[u8],
    keys: &ClusterKeys,
    cluster_name: &str,
) -> Result<Datagram, Reject> {
    if bytes.len() < HEADER_LEN + MAC_LEN {
        return Err(Reject::Malformed(Malformed::TooShort { len: bytes.len() }));
    }
    if bytes.len() > DATAGRAM_LEN_MAX {
        return Err(Reject::Malformed(Malformed::TooLong { len: bytes.len() }));
    }
    let (header_bytes, rest) = bytes.split_at(HEADER_LEN);
    let header_array: &[u8; HEADER_LEN] = header_bytes
        .try_into()
        .map_err(|_| Reject::Malformed(Malformed::TooShort { len: bytes.len() }))?;
    let header = Header::read(header_array);
    let payload_len_actual = rest.len() - MAC_LEN;
    if header.payload_len as usize != payload_len_actual {
        return Err(Reject::Malformed(Malformed::PayloadSizeMismatch {
            declared: header.payload_len,
            actual: payload_len_actual,
        }));
    }
    if header.protocol_id != PROTOCOL_VERSION {
        return Err(Reject::ProtocolMismatch {
            ours: PROTOCOL_VERSION,
            theirs: header.protocol_id,
        });
    }
    let kind = MessageKind::from_message_id(header.message_id).ok_or(Reject::Malformed(
        Malformed::UnknownMessageId {
            message_id: header.message_id,
        },
    ))?;
    let (signed, tag) = bytes.split_at(HEADER_LEN + payload_len_actual);
    let payload_bytes = &signed[HEADER_LEN..];
    if hmac::verify(keys.heartbeat_key(), signed, tag).is_err() {
        // Only to count the reason right: a readable, different cluster name is another cluster.
        if let Ok((prefix, _)) = postcard::take_from_bytes::<PayloadPrefix>(payload_bytes)
            && prefix.cluster_name != cluster_name
            && is_valid_name(&prefix.cluster_name)
        {
            return Err(Reject::OtherCluster {
                ours: cluster_name.to_owned(),
                theirs: prefix.cluster_name,
            });
        }
        return Err(Reject::BadMac);
    }
    let (payload, trailing) = postcard::take_from_bytes::<HeartbeatPayload>(payload_bytes)
        .map_err(|_| Reject::Malformed(Malformed::Payload))?;
    if !trailing.is_empty() {
        return Err(Reject::Malformed(Malformed::TrailingPayloadBytes {
            len: trailing.len(),
        }));
    }
    payload.check_bounds().map_err(Reject::Malformed)?;
    if payload.cluster_name != cluster_name {
        // Unreachable with derived keys (the key depends on the name), kept as a guard.
        return Err(Reject::OtherCluster {
            ours: cluster_name.to_owned(),
            theirs: payload.cluster_name,
        });
    }
    if header.sender_id != NodeId::from_name(&payload.node_name).0 {
        return Err(Reject::Malformed(Malformed::SenderIdMismatch));
    }
    if header.sender_port != u32::from(payload.addresses.peer.port()) {
        return Err(Reject::Malformed(Malformed::SenderPortMismatch));
    }
    if header.sender_load != payload.header_load() {
        return Err(Reject::Malformed(Malformed::SenderLoadMismatch));
    }
    Ok(Datagram {
        kind,
        header,
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::ClusterSecret;
    use crate::membership::reject::RejectReason;

    fn keys() -> ClusterKeys {
        ClusterKeys::derive(Some(&ClusterSecret(b"correct horse".to_vec())), "prod")
    }

    fn address(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn payload() -> HeartbeatPayload {
        HeartbeatPayload {
            cluster_name: "prod".to_owned(),
            node_name: "web-1".to_owned(),
            incarnation: Incarnation(1_700_000_000_000),
            sequence: 42,
            addresses: NodeAddresses {
                peer: address(34567),
                heartbeat: address(34567),
                client: address(6379),
                memcached_opt: None,
                admin: address(34580),
            },
            load: NodeLoad {
                num_sessions: 1234,
                num_connections: 7,
            },
            view_digest: 0xdead_beef,
            partition_count: 1024,
            table_digest: 99,
            role: 1,
            gossip: vec![],
            recently_dead: vec![],
        }
    }

    fn largest_payload() -> HeartbeatPayload {
        let name = |index: usize| format!("{index}{}", "n".repeat(63));
        let v6 = |port: u16| SocketAddr::from(([0xffff; 8], port));
        let mut payload = payload();
        payload.cluster_name = "c".repeat(64);
        payload.node_name = name(9);
        payload.incarnation = Incarnation(u64::MAX);
        payload.sequence = u64::MAX;
        payload.addresses = NodeAddresses {
            peer: v6(u16::MAX),
            heartbeat: v6(u16::MAX),
            client: v6(u16::MAX),
            memcached_opt: Some(v6(u16::MAX)),
            admin: v6(u16::MAX),
        };
        payload.load = NodeLoad {
            num_sessions: u64::MAX,
            num_connections: u64::MAX,
        };
        payload.view_digest = u64::MAX;
        payload.partition_count = u32::MAX;
        payload.table_digest = u64::MAX;
        payload.role = u8::MAX;
        payload.gossip = (0..GOSSIP_ENTRIES_MAX)
            .map(|index| GossipEntry {
                name: name(index),
                id: NodeId::from_name(&name(index)),
                incarnation: Incarnation(u64::MAX),
                heartbeat_address: v6(u16::MAX),
                peer_address: v6(u16::MAX),
            })
            .collect();
        payload.recently_dead = (0..DEAD_ENTRIES_MAX)
            .map(|index| DeadEntry {
                name: name(index),
                incarnation: Incarnation(u64::MAX),
            })
            .collect();
        payload
    }

    /// Re-signs `bytes` (after a test tampered with them) so that only the tampering is wrong.
    fn resign(mut bytes: Vec<u8>) -> Vec<u8> {
        let signed_len = bytes.len() - MAC_LEN;
        let tag = hmac::sign(keys().heartbeat_key(), &bytes[..signed_len]);
        bytes[signed_len..].copy_from_slice(tag.as_ref());
        bytes
    }

    fn encoded() -> Vec<u8> {
        encode_datagram(MessageKind::Heartbeat, &payload(), &keys())
            .map(|bytes| bytes.to_vec())
            .unwrap_or_default()
    }

    fn check(bytes: &[u8], expect: Result<MessageKind, RejectReason>) {
        let actual = decode_datagram(bytes, &keys(), "prod");
        match (&actual, expect) {
            (Ok(datagram), Ok(kind)) => assert_eq!(datagram.kind, kind),
            (Err(reject), Err(reason)) => assert_eq!(reject.reason(), reason, "{reject}"),
            _ => panic!("decoded {actual:?}, expected {expect:?}"),
        }
    }

    #[test]
    fn heartbeat_and_leave_round_trip() {
        for kind in [MessageKind::Heartbeat, MessageKind::Leave] {
            for payload in [payload(), largest_payload()] {
                let bytes = encode_datagram(kind, &payload, &keys()).expect("encodes");
                let datagram =
                    decode_datagram(&bytes, &keys(), &payload.cluster_name).expect("decodes");
                assert_eq!(datagram.kind, kind);
                assert_eq!(datagram.payload, payload);
                assert_eq!(datagram.header.message_id, kind.message_id());
                assert_eq!(
                    datagram.header.sender_id,
                    NodeId::from_name(&payload.node_name).0
                );
                assert_eq!(
                    datagram.header.sender_port,
                    u32::from(payload.addresses.peer.port())
                );
            }
        }
    }

    #[test]
    fn header_is_six_big_endian_words_before_the_payload() {
        let bytes = encoded();
        let word = |index: usize| {
            u32::from_be_bytes(
                bytes[index * 4..index * 4 + 4]
                    .try_into()
                    .unwrap_or_default(),
            )
        };
        assert_eq!(word(0), 1);
        assert_eq!(word(1), PROTOCOL_VERSION);
        assert_eq!(word(2), NodeId::from_name("web-1").0);
        assert_eq!(word(3), 34567);
        assert_eq!(word(4), 1234);
        assert_eq!(word(5) as usize, bytes.len() - HEADER_LEN - MAC_LEN);
    }

    #[test]
    fn sender_load_saturates_at_u32_max() {
        let mut payload = payload();
        payload.load.num_sessions = u64::from(u32::MAX) + 5;
        let bytes = encode_datagram(MessageKind::Heartbeat, &payload, &keys()).expect("encodes");
        assert_eq!(&bytes[16..20], &u32::MAX.to_be_bytes());
        check(&bytes, Ok(MessageKind::Heartbeat));
    }

    #[test]
    fn the_largest_heartbeat_fits_in_a_datagram_with_room_to_spare() {
        let bytes =
            encode_datagram(MessageKind::Heartbeat, &largest_payload(), &keys()).expect("encodes");
        assert!(bytes.len() <= DATAGRAM_LEN_MAX / 2, "{} bytes", bytes.len());
    }

    #[test]
    fn payloads_breaking_a_bound_are_not_encoded() {
        let mut too_much_gossip = largest_payload();
        too_much_gossip
            .gossip
            .push(too_much_gossip.gossip[0].clone());
        let mut long_name = payload();
        long_name.node_name = "x".repeat(65);
        for payload in [too_much_gossip, long_name] {
            assert!(matches!(
                encode_datagram(MessageKind::Heartbeat, &payload, &keys()),
                Err(EncodeError::InvalidPayload(_))
            ));
        }
    }

    #[test]
    fn malformed_datagrams_are_rejected_with_the_right_reason() {
        let good = encoded();
        check(&good, Ok(MessageKind::Heartbeat));
        check(&[], Err(RejectReason::Malformed));
        check(
            &good[..HEADER_LEN + MAC_LEN - 1],
            Err(RejectReason::Malformed),
        );
        // Truncated MAC: the payload size no longer matches.
        check(&good[..good.len() - 1], Err(RejectReason::Malformed));
        // One byte too many.
        let mut longer = good.clone();
        longer.push(0);
        check(&longer, Err(RejectReason::Malformed));
        // Oversize.
        check(
            &vec![0u8; DATAGRAM_LEN_MAX + 1],
            Err(RejectReason::Malformed),
        );
        // Payload size field lies.
        let mut wrong_size = good.clone();
        wrong_size[23] ^= 1;
        check(&wrong_size, Err(RejectReason::Malformed));
        // A flipped payload bit: the MAC fails.
        let mut flipped = good.clone();
        flipped[HEADER_LEN + 10] ^= 0x40;
        check(&flipped, Err(RejectReason::BadMac));
        // A flipped MAC bit.
        let mut bad_mac = good.clone();
        let last = bad_mac.len() - 1;
        bad_mac[last] ^= 1;
        check(&bad_mac, Err(RejectReason::BadMac));
        // Another protocol version.
        let mut other_version = good.clone();
        other_version[7] = 2;
        check(&other_version, Err(RejectReason::ProtocolMismatch));
        // An unknown message id, even with a valid MAC.
        let mut unknown_message = good.clone();
        unknown_message[3] = 9;
        check(&resign(unknown_message), Err(RejectReason::Malformed));
        // Header fields that contradict the payload, even with a valid MAC.
        for offset in [11, 15, 19] {
            let mut contradicting = good.clone();
            contradicting[offset] ^= 1;
            check(&resign(contradicting), Err(RejectReason::Malformed));
        }
        // Authenticated garbage after a valid payload.
        let mut trailing = good[..good.len() - MAC_LEN].to_vec();
        trailing.push(0);
        let payload_len = (trailing.len() - HEADER_LEN) as u32;
        trailing[20..24].copy_from_slice(&payload_len.to_be_bytes());
        trailing.extend_from_slice(&[0u8; MAC_LEN]);
        check(&resign(trailing), Err(RejectReason::Malformed));
    }

    #[test]
    fn another_cluster_or_secret_is_told_apart_from_a_bad_mac() {
        let other_cluster_keys =
            ClusterKeys::derive(Some(&ClusterSecret(b"correct horse".to_vec())), "staging");
        let mut other_cluster_payload = payload();
        other_cluster_payload.cluster_name = "staging".to_owned();
        let other_cluster = encode_datagram(
            MessageKind::Heartbeat,
            &other_cluster_payload,
            &other_cluster_keys,
        )
        .expect("encodes");
        check(&other_cluster, Err(RejectReason::OtherCluster));
        let other_secret_keys =
            ClusterKeys::derive(Some(&ClusterSecret(b"wrong".to_vec())), "prod");
        let other_secret = encode_datagram(MessageKind::Heartbeat, &payload(), &other_secret_keys)
            .expect("encodes");
        check(&other_secret, Err(RejectReason::BadMac));
        let no_secret_keys = ClusterKeys::derive(None, "prod");
        let no_secret =
            encode_datagram(MessageKind::Heartbeat, &payload(), &no_secret_keys).expect("encodes");
        check(&no_secret, Err(RejectReason::BadMac));
    }
}
