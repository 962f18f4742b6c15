//! The peer link's messages ([`PeerMessage`], PROTOCOL.md §3) and their framing: a `u32`
//! big-endian length (at most [`FRAME_LEN_MAX`]) followed by the postcard encoding.
//!
//! Decoding never panics and never allocates more than the frame bound on any input: an
//! incomplete frame is `Ok(None)`, an oversized length or a malformed body is a typed
//! [`WireError`]. The only recursive type a peer could nest without bound, a relayed
//! `Reply::Array`, travels flattened ([`RelayResult`]) and is rebuilt with a depth limit, so a
//! hostile frame cannot exhaust the stack either.
//!
//! Every replicated image carries an xxh3 checksum ([`ReplicatedMutation`]); a receiver that
//! finds a mismatch counts it and asks for a resync instead of applying it.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use store::{
    Change, EntryImage, LockHolder, Mutation, Op, Reply, ScanPage, StoreError, ValueImage,
    ValueType,
};
use xxhash_rust::xxh3::Xxh3;

/// Lists on the replication path keep their first two items inline.
pub use store::SmallList;

use crate::table::{Epoch, Record};

/// The largest frame body, in bytes (PROTOCOL.md §14).
pub const FRAME_LEN_MAX: usize = 16 * 1024 * 1024;

/// Bytes of the length prefix.
pub const FRAME_HEADER_LEN: usize = 4;

/// The deepest nesting of relayed reply arrays accepted (Redis replies of the commands scd
/// implements nest at most twice).
pub const REPLY_DEPTH_MAX: usize = 8;

/// Why a frame could not be encoded or decoded. Decoding errors mean the peer is broken or
/// hostile: the link layer closes the link. Nothing else changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The length prefix (or, when encoding, the message) exceeds [`FRAME_LEN_MAX`]. Nothing was
    /// consumed or queued.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge {
        /// The frame body length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The frame body is not a valid message. The frame was consumed.
    #[error("malformed frame: {reason}")]
    Malformed {
        /// What the decoder found.
        reason: String,
    },
    /// The frame body holds a valid message followed by extra bytes. The frame was consumed.
    #[error("frame has {count} trailing bytes after the message")]
    TrailingBytes {
        /// How many bytes were left over.
        count: usize,
    },
    /// The message could not be serialized (a bug: every message type is serializable). Nothing
    /// was queued.
    #[error("message could not be encoded: {reason}")]
    Encode {
        /// The serializer's complaint.
        reason: String,
    },
}

/// A replicated key state with the checksum of its image, computed by the sender.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicatedMutation {
    /// The key's new state.
    pub mutation: Mutation,
    /// [`mutation_checksum`] of `mutation`.
    pub checksum: u64,
}

impl ReplicatedMutation {
    /// Wraps `mutation` with its checksum.
    pub fn new(mutation: Mutation) -> ReplicatedMutation {
        let checksum = mutation_checksum(&mutation);
        ReplicatedMutation { mutation, checksum }
    }

    /// Whether the checksum matches the mutation.
    pub fn is_intact(&self) -> bool {
        mutation_checksum(&self.mutation) == self.checksum
    }

    /// Roughly the bytes this entry takes on the wire (for chunk sizing).
    pub fn wire_size_estimate(&self) -> usize {
        let value_bytes = match &self.mutation.change {
            Change::Put(image) => match &image.value {
                ValueImage::String(bytes) => bytes.len(),
                ValueImage::Hash(pairs) => pairs
                    .iter()
                    .map(|(field, value)| field.len() + value.len() + 4)
                    .sum(),
            },
            Change::Delete { .. } => 0,
        };
        self.mutation.key.len() + value_bytes + 48
    }
}

/// The xxh3 checksum of a mutation: database, key, version, expiry, flags and value (each field
/// length-prefixed), so any corruption of the image is caught.
pub fn mutation_checksum(mutation: &Mutation) -> u64 {
    let mut hasher = Xxh3::new();
    hasher.update(&[mutation.db]);
    hasher.update(&(mutation.key.len() as u64).to_le_bytes());
    hasher.update(&mutation.key);
    match &mutation.change {
        Change::Delete { version } => {
            hasher.update(&[0]);
            hasher.update(&version.hlc.to_le_bytes());
            hasher.update(&version.node.to_le_bytes());
        }
        Change::Put(image) => {
            hasher.update(&[1]);
            hasher.update(&image.version.hlc.to_le_bytes());
            hasher.update(&image.version.node.to_le_bytes());
            hasher.update(&image.expire_at_ms.to_le_bytes());
            hasher.update(&image.flags.to_le_bytes());
            match &image.value {
                ValueImage::String(bytes) => {
                    hasher.update(&[0]);
                    hasher.update(&(bytes.len() as u64).to_le_bytes());
                    hasher.update(bytes);
                }
                ValueImage::Hash(pairs) => {
                    hasher.update(&[1]);
                    hasher.update(&(pairs.len() as u64).to_le_bytes());
                    for (field, value) in pairs {
                        hasher.update(&(field.len() as u64).to_le_bytes());
                        hasher.update(field);
                        hasher.update(&(value.len() as u64).to_le_bytes());
                        hasher.update(value);
                    }
                }
            }
        }
    }
    hasher.digest()
}

/// Why a relayed request could not be served by the node it reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum UnavailableReason {
    /// The partition index is not below the partition count.
    NoSuchPartition,
    /// Too many requests of the partition are already waiting there.
    DeferredQueueFull,
    /// The request waited longer than the node keeps requests.
    WaitTimedOut,
    /// Too many replies are already waiting for write-through acknowledgements.
    TooManyPendingReplies,
    /// The node is leaving or shutting down.
    ShuttingDown,
}

/// What a relayed request produced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RelayResult {
    /// Executed on the primary; this is its reply (flattened on the wire, see the module docs).
    Reply(#[serde(with = "flat_reply")] Reply),
    /// The node is not the partition's primary; its record, if it has one, so the requester can
    /// learn where to go.
    NotPrimary {
        /// The responder's record of the partition.
        record: Option<Record>,
    },
    /// The node could not serve the request; it did not execute it.
    Unavailable {
        /// Why.
        reason: UnavailableReason,
    },
}

/// A message on a peer link (PROTOCOL.md §3). Variants are only ever appended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerMessage {
    /// Relay of one store operation to the partition's primary (§12).
    Request {
        /// Chosen by the requester, unique among its requests in flight on this link.
        id: u64,
        /// The partition the key maps to.
        partition: u32,
        /// The database.
        db: u8,
        /// The operation.
        op: Op,
    },
    /// The answer to a `Request`.
    Response {
        /// The request's id.
        id: u64,
        /// What happened.
        result: RelayResult,
    },
    /// An ownership record, pushed by its author when it changes (§4).
    Record {
        /// The partition.
        partition: u32,
        /// The record.
        record: Record,
    },
    /// Asks for the peer's whole table.
    TableRequest,
    /// A whole table: every partition that has a record.
    Table {
        /// (partition, record) pairs.
        records: Vec<(u32, Record)>,
    },
    /// The write stream of a partition, primary to backup (§6).
    Replicate {
        /// The partition.
        partition: u32,
        /// The primary's current epoch.
        epoch: Epoch,
        /// Sequence number within the primary's tenure: 1, 2, 3… (a snapshot says where it
        /// starts).
        seq: u64,
        /// The resulting state of each key the write touched.
        mutations: SmallList<ReplicatedMutation>,
    },
    /// Cumulative count of frames the sender of the `Ack` has handled on this link (sent by the
    /// link layer itself, not numbered).
    Ack {
        /// Frames handled so far on this link direction.
        frames: u64,
    },
    /// A snapshot of a partition starts: the receiver clears what it held and follows the
    /// stream from `next_seq` (§7).
    SnapshotBegin {
        /// The partition.
        partition: u32,
        /// The primary's epoch.
        epoch: Epoch,
        /// The sequence number of the first `Replicate` that follows.
        next_seq: u64,
    },
    /// Current images of some of the partition's keys.
    SnapshotChunk {
        /// The partition.
        partition: u32,
        /// The primary's epoch.
        epoch: Epoch,
        /// The images (deletions included, so a backup learns recent deletes).
        mutations: Vec<ReplicatedMutation>,
    },
    /// Every key has been sent.
    SnapshotEnd {
        /// The partition.
        partition: u32,
        /// The primary's epoch.
        epoch: Epoch,
    },
    /// Backup to primary: it holds the partition and follows the stream.
    SnapshotDone {
        /// The partition.
        partition: u32,
        /// The epoch of the `SnapshotEnd` it answers.
        epoch: Epoch,
    },
    /// Backup to primary: it cannot follow the stream (a gap, a bad checksum, or a handoff it
    /// cannot take); send a snapshot.
    Resync {
        /// The partition.
        partition: u32,
    },
    /// Primary to new primary: take the partition under `record` (§8).
    Handoff {
        /// The partition.
        partition: u32,
        /// The record that makes the receiver primary.
        record: Record,
    },
    /// New primary to old: the handoff took effect.
    HandoffDone {
        /// The partition.
        partition: u32,
        /// The epoch of the handoff record.
        epoch: Epoch,
    },
    /// Deposed owner to the partition's primary: images to apply if newer (§10).
    Merge {
        /// The partition.
        partition: u32,
        /// The epoch of the record naming the receiver primary.
        epoch: Epoch,
        /// The images.
        mutations: Vec<ReplicatedMutation>,
        /// Whether this is the last merge frame of the partition.
        last: bool,
    },
    /// New primary to old: it will not take the partition now because its own view does not
    /// make it the target primary (the views differ for a moment); the old primary keeps it
    /// and retries later.
    HandoffRefused {
        /// The partition.
        partition: u32,
        /// The epoch of the refused handoff record.
        epoch: Epoch,
    },
    /// A node holding a whole copy of the partition (a backup's, kept after its link reset,
    /// or a deposed primary's) to the primary of a record that just reached it from that
    /// primary: it merges the copy in (`Merge` frames follow, the last one marked). Sent before
    /// the record's frame is acknowledged, so a primary that claimed the partition hears of
    /// every such copy before its claim is announced, and waits for them (§5 rule 2).
    MergeIntent {
        /// The partition.
        partition: u32,
        /// The epoch of the record naming the receiver primary.
        epoch: Epoch,
    },
}

impl PeerMessage {
    /// The partition the message is about, if any.
    pub fn partition(&self) -> Option<u32> {
        match self {
            PeerMessage::Request { partition, .. }
            | PeerMessage::Record { partition, .. }
            | PeerMessage::Replicate { partition, .. }
            | PeerMessage::SnapshotBegin { partition, .. }
            | PeerMessage::SnapshotChunk { partition, .. }
            | PeerMessage::SnapshotEnd { partition, .. }
            | PeerMessage::SnapshotDone { partition, .. }
            | PeerMessage::Resync { partition }
            | PeerMessage::Handoff { partition, .. }
            | PeerMessage::HandoffDone { partition, .. }
            | PeerMessage::Merge { partition, .. }
            | PeerMessage::HandoffRefused { partition, .. }
            | PeerMessage::MergeIntent { partition, .. } => Some(*partition),
            PeerMessage::Response { .. }
            | PeerMessage::TableRequest
            | PeerMessage::Table { .. }
            | PeerMessage::Ack { .. } => None,
        }
    }

    /// A short name for logs and counters.
    pub fn kind(&self) -> &'static str {
        match self {
            PeerMessage::Request { .. } => "request",
            PeerMessage::Response { .. } => "response",
            PeerMessage::Record { .. } => "record",
            PeerMessage::TableRequest => "table_request",
            PeerMessage::Table { .. } => "table",
            PeerMessage::Replicate { .. } => "replicate",
            PeerMessage::Ack { .. } => "ack",
            PeerMessage::SnapshotBegin { .. } => "snapshot_begin",
            PeerMessage::SnapshotChunk { .. } => "snapshot_chunk",
            PeerMessage::SnapshotEnd { .. } => "snapshot_end",
            PeerMessage::SnapshotDone { .. } => "snapshot_done",
            PeerMessage::Resync { .. } => "resync",
            PeerMessage::Handoff { .. } => "handoff",
            PeerMessage::HandoffDone { .. } => "handoff_done",
            PeerMessage::Merge { .. } => "merge",
            PeerMessage::HandoffRefused { .. } => "handoff_refused",
            PeerMessage::MergeIntent { .. } => "merge_intent",
        }
    }
}

/// A postcard output flavor that appends to a `BytesMut`, so a frame is encoded in place.
struct BytesMutFlavor<'a>(&'a mut BytesMut);

impl postcard::ser_flavors::Flavor for BytesMutFlavor<'_> {
    type Output = ();

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.put_u8(data);
        Ok(())
    }

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// Appends `message` as one frame to `out`. On error `out` is as it was.
pub fn encode_frame(message: &PeerMessage, out: &mut BytesMut) -> Result<(), WireError> {
    let start = out.len();
    out.put_u32(0);
    if let Err(error) = postcard::serialize_with_flavor(message, BytesMutFlavor(out)) {
        out.truncate(start);
        return Err(WireError::Encode {
            reason: error.to_string(),
        });
    }
    let len = out.len() - start - FRAME_HEADER_LEN;
    if len > FRAME_LEN_MAX {
        out.truncate(start);
        return Err(WireError::FrameTooLarge {
            len,
            max: FRAME_LEN_MAX,
        });
    }
    // The length fits in a u32: it is at most FRAME_LEN_MAX.
    out[start..start + FRAME_HEADER_LEN].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(())
}

/// `message` as one frame, in a buffer of its own.
pub fn encode_frame_to_bytes(message: &PeerMessage) -> Result<Bytes, WireError> {
    let mut out = BytesMut::new();
    encode_frame(message, &mut out)?;
    Ok(out.freeze())
}

/// Takes the next frame off the front of `buf`: `Ok(None)` when the frame is not complete yet
/// (nothing consumed), the message when it is (the frame consumed), an error when the length
/// exceeds [`FRAME_LEN_MAX`] (nothing consumed) or the body is malformed (the frame consumed).
pub fn decode_frame(buf: &mut BytesMut) -> Result<Option<PeerMessage>, WireError> {
    if buf.len() < FRAME_HEADER_LEN {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if len > FRAME_LEN_MAX {
        return Err(WireError::FrameTooLarge {
            len,
            max: FRAME_LEN_MAX,
        });
    }
    if buf.len() < FRAME_HEADER_LEN + len {
        // Reserve the rest now, so the reader does not grow the buffer step by step.
        buf.reserve(FRAME_HEADER_LEN + len - buf.len());
        return Ok(None);
    }
    buf.advance(FRAME_HEADER_LEN);
    let body = buf.split_to(len);
    decode_body(&body).map(Some)
}

/// Decodes one frame body (without its length prefix).
pub fn decode_body(body: &[u8]) -> Result<PeerMessage, WireError> {
    match postcard::take_from_bytes::<PeerMessage>(body) {
        Ok((message, [])) => Ok(message),
        Ok((_, rest)) => Err(WireError::TrailingBytes { count: rest.len() }),
        Err(error) => Err(WireError::Malformed {
            reason: error.to_string(),
        }),
    }
}

/// `store::Reply` on the wire as a flat list of nodes, arrays as a length node followed by
/// their items, so that decoding never recurses on input it has not checked.
mod flat_reply {
    use super::*;

    #[derive(Serialize, Deserialize)]
    enum FlatReply {
        Ok,
        Nil,
        Integer(i64),
        Bulk(Bytes),
        Value { value: Bytes, flags: u32, cas: u64 },
        Written { cas: u64 },
        Counter { value: u64, cas: u64 },
        ArrayStart(u32),
        Pairs(Vec<(Bytes, Bytes)>),
        Type(Option<ValueType>),
        Image(Box<EntryImage>),
        Scan(ScanPage),
        ConditionNotMet,
        CasMismatch,
        NotFound,
        Error(StoreError),
        LockGranted { token: u64, deadline_ms: u64 },
        LockHeld(Box<LockHolder>),
    }

    fn flatten(reply: &Reply, depth: usize, out: &mut Vec<FlatReply>) -> Result<(), String> {
        if depth > REPLY_DEPTH_MAX {
            return Err(format!("reply nests deeper than {REPLY_DEPTH_MAX} arrays"));
        }
        out.push(match reply {
            Reply::Ok => FlatReply::Ok,
            Reply::Nil => FlatReply::Nil,
            Reply::Integer(value) => FlatReply::Integer(*value),
            Reply::Bulk(bytes) => FlatReply::Bulk(bytes.clone()),
            Reply::Value { value, flags, cas } => FlatReply::Value {
                value: value.clone(),
                flags: *flags,
                cas: *cas,
            },
            Reply::Written { cas } => FlatReply::Written { cas: *cas },
            Reply::Counter { value, cas } => FlatReply::Counter {
                value: *value,
                cas: *cas,
            },
            Reply::Array(items) => {
                let len = u32::try_from(items.len()).map_err(|_| "reply array too long")?;
                out.push(FlatReply::ArrayStart(len));
                for item in items {
                    flatten(item, depth + 1, out)?;
                }
                return Ok(());
            }
            Reply::Pairs(pairs) => FlatReply::Pairs(pairs.clone()),
            Reply::Type(value_type) => FlatReply::Type(*value_type),
            Reply::Image(image) => FlatReply::Image(image.clone()),
            Reply::Scan(page) => FlatReply::Scan(page.clone()),
            Reply::ConditionNotMet => FlatReply::ConditionNotMet,
            Reply::CasMismatch => FlatReply::CasMismatch,
            Reply::NotFound => FlatReply::NotFound,
            Reply::Error(error) => FlatReply::Error(error.clone()),
            Reply::LockGranted { token, deadline_ms } => FlatReply::LockGranted {
                token: *token,
                deadline_ms: *deadline_ms,
            },
            Reply::LockHeld(holder) => FlatReply::LockHeld(holder.clone()),
        });
        Ok(())
    }

    fn rebuild(
        nodes: &mut std::vec::IntoIter<FlatReply>,
        depth: usize,
    ) -> Result<Reply, &'static str> {
        let node = nodes.next().ok_or("reply ends inside an array")?;
        Ok(match node {
            FlatReply::Ok => Reply::Ok,
            FlatReply::Nil => Reply::Nil,
            FlatReply::Integer(value) => Reply::Integer(value),
            FlatReply::Bulk(bytes) => Reply::Bulk(bytes),
            FlatReply::Value { value, flags, cas } => Reply::Value { value, flags, cas },
            FlatReply::Written { cas } => Reply::Written { cas },
            FlatReply::Counter { value, cas } => Reply::Counter { value, cas },
            FlatReply::ArrayStart(len) => {
                if depth >= REPLY_DEPTH_MAX {
                    return Err("reply arrays nest too deep");
                }
                let len = len as usize;
                if len > nodes.len() {
                    return Err("reply array longer than the reply");
                }
                let mut items = Vec::with_capacity(len);
                for _ in 0..len {
                    items.push(rebuild(nodes, depth + 1)?);
                }
                Reply::Array(items)
            }
            FlatReply::Pairs(pairs) => Reply::Pairs(pairs),
            FlatReply::Type(value_type) => Reply::Type(value_type),
            FlatReply::Image(image) => Reply::Image(image),
            FlatReply::Scan(page) => Reply::Scan(page),
            FlatReply::ConditionNotMet => Reply::ConditionNotMet,
            FlatReply::CasMismatch => Reply::CasMismatch,
            FlatReply::NotFound => Reply::NotFound,
            FlatReply::Error(error) => Reply::Error(error),
            FlatReply::LockGranted { token, deadline_ms } => {
                Reply::LockGranted { token, deadline_ms }
            }
            FlatReply::LockHeld(holder) => Reply::LockHeld(holder),
        })
    }

    pub(super) fn serialize<S: Serializer>(
        reply: &Reply,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let mut nodes = Vec::new();
        flatten(reply, 0, &mut nodes).map_err(serde::ser::Error::custom)?;
        nodes.serialize(serializer)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Reply, D::Error> {
        let nodes = Vec::<FlatReply>::deserialize(deserializer)?;
        let mut nodes = nodes.into_iter();
        let reply = rebuild(&mut nodes, 0).map_err(serde::de::Error::custom)?;
        if nodes.len() != 0 {
            return Err(serde::de::Error::custom("reply has nodes after its end"));
        }
        Ok(reply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node_id::{Incarnation, NodeId};
    use crate::table::Member;
    use store::{SetCondition, SetExpiry, Version};

    fn member(id: u32) -> Member {
        Member {
            id: NodeId(id),
            incarnation: Incarnation(7),
        }
    }

    fn epoch(term: u64) -> Epoch {
        Epoch {
            term,
            node: NodeId(3),
        }
    }

    fn record() -> Record {
        Record {
            epoch: epoch(4),
            primary: member(1),
            backups: vec![member(2), member(3)],
            suspect_before_hlc: 99,
        }
    }

    fn put(key: &'static [u8], value: &'static [u8]) -> Mutation {
        Mutation {
            db: 2,
            key: Bytes::from_static(key),
            change: Change::Put(EntryImage {
                value: ValueImage::String(Bytes::from_static(value)),
                version: Version {
                    hlc: 1 << 20,
                    node: 5,
                },
                expire_at_ms: 77,
                flags: 9,
            }),
        }
    }

    fn every_message() -> Vec<PeerMessage> {
        let replicated = ReplicatedMutation::new(put(b"k", b"v"));
        let hash = ReplicatedMutation::new(Mutation {
            db: 0,
            key: Bytes::from_static(b"h"),
            change: Change::Put(EntryImage {
                value: ValueImage::Hash(vec![(Bytes::from_static(b"f"), Bytes::from_static(b"x"))]),
                version: Version { hlc: 3, node: 1 },
                expire_at_ms: 0,
                flags: 0,
            }),
        });
        let delete = ReplicatedMutation::new(Mutation {
            db: 0,
            key: Bytes::from_static(b"gone"),
            change: Change::Delete {
                version: Version { hlc: 8, node: 2 },
            },
        });
        vec![
            PeerMessage::Request {
                id: 1,
                partition: 5,
                db: 0,
                op: Op::Set {
                    key: Bytes::from_static(b"k"),
                    value: Bytes::from_static(b"v"),
                    expiry: SetExpiry::Never,
                    condition: SetCondition::Always,
                    return_old: false,
                    flags: 0,
                },
            },
            PeerMessage::Response {
                id: 1,
                result: RelayResult::Reply(Reply::Array(vec![
                    Reply::Bulk(Bytes::from_static(b"a")),
                    Reply::Array(vec![Reply::Nil, Reply::Integer(-3)]),
                    Reply::Array(vec![]),
                    Reply::Error(StoreError::WrongType),
                ])),
            },
            PeerMessage::Response {
                id: 2,
                result: RelayResult::NotPrimary {
                    record: Some(record()),
                },
            },
            PeerMessage::Response {
                id: 4,
                result: RelayResult::Reply(Reply::Array(vec![
                    Reply::LockGranted {
                        token: 42,
                        deadline_ms: 1_000,
                    },
                    Reply::LockHeld(Box::new(store::LockHolder {
                        owner: Bytes::from_static(b"php-1"),
                        token: 41,
                        deadline_ms: 900,
                        mode: store::LockMode::Session,
                        num_waiters: 2,
                    })),
                ])),
            },
            PeerMessage::Response {
                id: 3,
                result: RelayResult::Unavailable {
                    reason: UnavailableReason::DeferredQueueFull,
                },
            },
            PeerMessage::Record {
                partition: 9,
                record: record(),
            },
            PeerMessage::TableRequest,
            PeerMessage::Table {
                records: vec![(0, record()), (1023, record())],
            },
            PeerMessage::Replicate {
                partition: 1,
                epoch: epoch(2),
                seq: 17,
                mutations: [replicated.clone(), hash.clone(), delete.clone()]
                    .into_iter()
                    .collect(),
            },
            PeerMessage::Ack { frames: u64::MAX },
            PeerMessage::SnapshotBegin {
                partition: 1,
                epoch: epoch(2),
                next_seq: 18,
            },
            PeerMessage::SnapshotChunk {
                partition: 1,
                epoch: epoch(2),
                mutations: vec![replicated.clone(), delete],
            },
            PeerMessage::SnapshotEnd {
                partition: 1,
                epoch: epoch(2),
            },
            PeerMessage::SnapshotDone {
                partition: 1,
                epoch: epoch(2),
            },
            PeerMessage::Resync { partition: 1 },
            PeerMessage::Handoff {
                partition: 1,
                record: record(),
            },
            PeerMessage::HandoffDone {
                partition: 1,
                epoch: epoch(5),
            },
            PeerMessage::Merge {
                partition: 1,
                epoch: epoch(5),
                mutations: vec![replicated, hash],
                last: true,
            },
            PeerMessage::HandoffRefused {
                partition: 1,
                epoch: epoch(6),
            },
            PeerMessage::MergeIntent {
                partition: 1,
                epoch: epoch(7),
            },
        ]
    }

    #[test]
    fn every_message_survives_a_round_trip_through_a_frame() {
        let mut buf = BytesMut::new();
        let messages = every_message();
        for message in &messages {
            encode_frame(message, &mut buf).expect("encodable");
        }
        for message in &messages {
            assert_eq!(
                decode_frame(&mut buf).expect("valid").as_ref(),
                Some(message)
            );
        }
        assert!(buf.is_empty());
        assert_eq!(decode_frame(&mut buf), Ok(None));
    }

    #[test]
    fn an_incomplete_frame_is_not_an_error_and_consumes_nothing() {
        let frame = encode_frame_to_bytes(&PeerMessage::TableRequest).expect("encodable");
        for cut in 0..frame.len() {
            let mut buf = BytesMut::from(&frame[..cut]);
            assert_eq!(decode_frame(&mut buf), Ok(None), "cut at {cut}");
            assert_eq!(buf.len(), cut);
        }
    }

    #[test]
    fn malformed_frames_are_typed_errors() {
        fn check(bytes: &[u8], expect: fn(&WireError) -> bool, consumed: bool) {
            let mut buf = BytesMut::from(bytes);
            let result = decode_frame(&mut buf);
            match &result {
                Err(error) => assert!(expect(error), "{bytes:?}: {error:?}"),
                Ok(message) => panic!("{bytes:?} decoded as {message:?}"),
            }
            assert_eq!(buf.is_empty(), consumed, "{bytes:?}");
        }
        let too_large = ((FRAME_LEN_MAX + 1) as u32).to_be_bytes();
        check(
            &too_large,
            |e| matches!(e, WireError::FrameTooLarge { .. }),
            false,
        );
        check(
            &[0xff, 0xff, 0xff, 0xff],
            |e| matches!(e, WireError::FrameTooLarge { .. }),
            false,
        );
        // An empty body, an unknown variant, a truncated body.
        check(
            &[0, 0, 0, 0],
            |e| matches!(e, WireError::Malformed { .. }),
            true,
        );
        check(
            &[0, 0, 0, 1, 200],
            |e| matches!(e, WireError::Malformed { .. }),
            true,
        );
        check(
            &[0, 0, 0, 2, 2, 1],
            |e| matches!(e, WireError::Malformed { .. }),
            true,
        );
        // TableRequest (variant 3) followed by a stray byte.
        check(
            &[0, 0, 0, 2, 3, 0],
            |e| matches!(e, WireError::TrailingBytes { count: 1 }),
            true,
        );
    }

    /// A `Response` frame body holding `depth` arrays of one item around a Nil, encoded by hand
    /// (the encoder refuses to produce deep ones).
    fn nested_response_body(depth: usize) -> Vec<u8> {
        let mut body = vec![1u8, 1, 0]; // PeerMessage::Response, id 1, RelayResult::Reply
        let mut nodes = (depth + 1) as u64;
        while nodes >= 0x80 {
            body.push((nodes as u8) | 0x80);
            nodes >>= 7;
        }
        body.push(nodes as u8);
        for _ in 0..depth {
            body.extend_from_slice(&[7, 1]); // FlatReply::ArrayStart(1)
        }
        body.push(1); // FlatReply::Nil
        body
    }

    #[test]
    fn a_deeply_nested_relayed_reply_is_refused_not_a_stack_overflow() {
        let mut reply = Reply::Nil;
        for _ in 0..REPLY_DEPTH_MAX {
            reply = Reply::Array(vec![reply]);
        }
        let message = PeerMessage::Response {
            id: 1,
            result: RelayResult::Reply(reply),
        };
        let frame = encode_frame_to_bytes(&message).expect("encodable");
        assert_eq!(
            &frame[FRAME_HEADER_LEN..],
            nested_response_body(REPLY_DEPTH_MAX)
        );
        assert_eq!(
            decode_body(&nested_response_body(REPLY_DEPTH_MAX)),
            Ok(message)
        );
        for depth in [REPLY_DEPTH_MAX + 1, 200_000] {
            let result = decode_body(&nested_response_body(depth));
            assert!(
                matches!(result, Err(WireError::Malformed { .. })),
                "{depth}: {result:?}"
            );
        }
    }

    #[test]
    fn a_reply_nested_too_deep_is_not_encoded() {
        let mut reply = Reply::Nil;
        for _ in 0..=REPLY_DEPTH_MAX + 1 {
            reply = Reply::Array(vec![reply]);
        }
        let message = PeerMessage::Response {
            id: 1,
            result: RelayResult::Reply(reply),
        };
        let mut buf = BytesMut::from(&b"xy"[..]);
        assert!(matches!(
            encode_frame(&message, &mut buf),
            Err(WireError::Encode { .. })
        ));
        assert_eq!(&buf[..], b"xy", "nothing appended on error");
    }

    #[test]
    fn an_oversized_message_is_refused_when_encoding() {
        let big = Bytes::from(vec![0u8; FRAME_LEN_MAX]);
        let message = PeerMessage::Request {
            id: 1,
            partition: 0,
            db: 0,
            op: Op::Get { key: big },
        };
        let mut buf = BytesMut::new();
        assert!(matches!(
            encode_frame(&message, &mut buf),
            Err(WireError::FrameTooLarge { .. })
        ));
        assert!(buf.is_empty());
    }

    #[test]
    fn checksums_catch_any_change_to_an_image() {
        let original = ReplicatedMutation::new(put(b"key", b"value"));
        assert!(original.is_intact());
        type Corruption = Box<dyn Fn(&mut Mutation)>;
        let mut changes: Vec<Corruption> = vec![
            Box::new(|m| m.db = 3),
            Box::new(|m| m.key = Bytes::from_static(b"kez")),
            Box::new(|m| {
                if let Change::Put(image) = &mut m.change {
                    image.value = ValueImage::String(Bytes::from_static(b"valuf"));
                }
            }),
            Box::new(|m| {
                if let Change::Put(image) = &mut m.change {
                    image.version.hlc += 1;
                }
            }),
            Box::new(|m| {
                if let Change::Put(image) = &mut m.change {
                    image.expire_at_ms = 0;
                }
            }),
            Box::new(|m| {
                if let Change::Put(image) = &mut m.change {
                    image.flags = 0;
                }
            }),
        ];
        changes.push(Box::new(|m| {
            m.change = Change::Delete {
                version: Version {
                    hlc: 1 << 20,
                    node: 5,
                },
            }
        }));
        for (index, change) in changes.iter().enumerate() {
            let mut corrupted = original.clone();
            change(&mut corrupted.mutation);
            assert!(!corrupted.is_intact(), "change {index} went unnoticed");
        }
    }

    #[test]
    fn a_small_list_keeps_order_inline_and_on_the_heap() {
        let mut list = SmallList::new();
        assert!(list.is_empty());
        for item in 0..5 {
            list.push(item);
            assert_eq!(list.len(), item + 1);
        }
        assert_eq!(
            list.iter().copied().collect::<Vec<_>>(),
            vec![0, 1, 2, 3, 4]
        );
        list.retain(|item| item % 2 == 0);
        assert_eq!(list.clone().into_iter().collect::<Vec<_>>(), vec![0, 2, 4]);
        let encoded = postcard::to_stdvec(&list).expect("encodable");
        assert_eq!(
            encoded,
            postcard::to_stdvec(&vec![0usize, 2, 4]).expect("encodable")
        );
        let decoded: SmallList<usize> = postcard::from_bytes(&encoded).expect("decodable");
        assert_eq!(decoded, list);
    }

    #[test]
    fn message_partition_and_kind_are_reported() {
        for message in every_message() {
            let expect_partition = !matches!(
                message,
                PeerMessage::Response { .. }
                    | PeerMessage::TableRequest
                    | PeerMessage::Table { .. }
                    | PeerMessage::Ack { .. }
            );
            assert_eq!(
                message.partition().is_some(),
                expect_partition,
                "{message:?}"
            );
            assert!(!message.kind().is_empty());
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_the_decoder(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let mut buf = BytesMut::from(&bytes[..]);
            // Whatever the outcome, it is a value, and a frame is never both kept and decoded.
            for _ in 0..8 {
                match decode_frame(&mut buf) {
                    Ok(Some(_)) => continue,
                    Ok(None) | Err(_) => break,
                }
            }
        }

        #[test]
        fn arbitrary_bodies_behind_a_valid_length_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let mut buf = BytesMut::new();
            buf.put_u32(bytes.len() as u32);
            buf.extend_from_slice(&bytes);
            let result = decode_frame(&mut buf);
            proptest::prop_assert!(!matches!(result, Ok(None)));
            proptest::prop_assert!(buf.is_empty());
        }

        #[test]
        fn corrupting_one_byte_of_a_valid_frame_never_panics(index in 0usize..4096, value in proptest::num::u8::ANY) {
            let mut frames = BytesMut::new();
            for message in every_message() {
                encode_frame(&message, &mut frames).expect("encodable");
            }
            let index = index % frames.len();
            frames[index] = value;
            for _ in 0..64 {
                match decode_frame(&mut frames) {
                    Ok(Some(_)) => continue,
                    Ok(None) | Err(_) => break,
                }
            }
        }
    }
}
