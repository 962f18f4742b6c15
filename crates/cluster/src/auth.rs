//! Cluster keys and the mutual challenge–response that authenticates a peer TCP link.
//!
//! # Keys
//!
//! Every key is derived from the cluster secret and the cluster name with HMAC-SHA256, so two
//! clusters that share a secret but not a name still have different keys:
//!
//! ```text
//! cluster_key   = HMAC-SHA256(key = secret (empty without one),
//!                             "scd cluster key v1" || u32_be(len(cluster_name)) || cluster_name)
//! heartbeat_key = HMAC-SHA256(key = cluster_key, "scd heartbeat v1")
//! handshake_key = HMAC-SHA256(key = cluster_key, "scd peer handshake v1")
//! ```
//!
//! Without a secret the keys depend on the cluster name alone: nodes on loopback still cluster
//! and datagrams of other clusters are still told apart, but anybody who knows the cluster name can
//! forge heartbeats. The node layer logs a warning then ([`ClusterKeys::has_secret`]).
//!
//! # Peer handshake
//!
//! The node that opens the TCP connection is the *initiator* (I), the one that accepted it the
//! *responder* (R). Nonces are 32 random bytes, fresh for every connection, passed in by the
//! caller. The secret never crosses the wire; each side proves it knows the handshake key by a MAC
//! over a transcript that binds both nonces, both node ids, the cluster name, the protocol version,
//! the partition count and an optional channel binding (for example a TLS exporter value; empty on
//! plain TCP).
//!
//! 1. I → R [`Hello`]: I's protocol version, partition count, cluster name, node id and nonce
//!    `nonce_i` ([`Initiator::start`]).
//! 2. R → I [`Challenge`]: R's protocol version, partition count, cluster name, node id, nonce
//!    `nonce_r` and `proof_r = HMAC(handshake_key, "scd handshake responder v1" || transcript)`
//!    ([`Responder::handle_hello`]). R answers every well-formed hello, so that an incompatible
//!    initiator learns what differs; R then checks compatibility itself
//!    ([`Responder::check_compatible`]) and closes the link if it fails.
//! 3. I checks cluster name, protocol version and partition count (a typed error says what
//!    differs), that R is not I itself and did not echo I's nonce, and verifies `proof_r`. Only
//!    then does I send [`Proof`]:
//!    `proof_i = HMAC(handshake_key, "scd handshake initiator v1" || transcript)`
//!    ([`Initiator::handle_challenge`]).
//! 4. R verifies `proof_i` ([`Responder::handle_proof`]). Both sides now know the other holds the
//!    key.
//!
//! The transcript is, all integers big-endian:
//!
//! ```text
//! u32 protocol_version || u32 partition_count || u32 len(cluster_name) || cluster_name
//! || u32 initiator_id || u32 responder_id || nonce_i (32) || nonce_r (32)
//! || u32 len(channel_binding) || channel_binding
//! ```
//!
//! The role labels differ, so a proof cannot be reflected back to its sender; both nonces are in
//! the transcript, so a recorded handshake replayed to either side fails against the fresh nonce
//! of that side. What this does not do: authenticate the bytes that follow on the link. A
//! man-in-the-middle can relay a handshake between two real nodes; on untrusted networks run the
//! link over TLS and pass the TLS exporter as the channel binding.

use std::fmt;

use ring::hmac;
use serde::{Deserialize, Serialize};

use crate::node_id::{NODE_NAME_LEN_MAX, NodeId};

/// Length of a handshake nonce in bytes.
pub const NONCE_LEN: usize = 32;

/// Length of a handshake proof (an HMAC-SHA256 tag) in bytes.
pub const PROOF_LEN: usize = 32;

/// Longest encoded handshake message accepted by [`HandshakeMessage::decode`], in bytes.
pub const HANDSHAKE_MESSAGE_LEN_MAX: usize = 256;

/// Longest channel binding accepted, in bytes (a TLS exporter value is 32 to 64 bytes).
pub const CHANNEL_BINDING_LEN_MAX: usize = 128;

/// A handshake nonce: 32 random bytes, fresh for every connection.
pub type Nonce = [u8; NONCE_LEN];

/// The cluster secret, as read from `--secret-file`. Its `Debug` does not show the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterSecret(pub Vec<u8>);

impl fmt::Debug for ClusterSecret {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "ClusterSecret(<{} bytes redacted>)",
            self.0.len()
        )
    }
}

/// The keys of one cluster, derived from its secret and name (see the module docs).
#[derive(Clone)]
pub struct ClusterKeys {
    heartbeat_key: hmac::Key,
    handshake_key: hmac::Key,
    has_secret: bool,
}

impl fmt::Debug for ClusterKeys {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("ClusterKeys")
            .field("has_secret", &self.has_secret)
            .finish_non_exhaustive()
    }
}

impl ClusterKeys {
    /// Derives the keys of the cluster `cluster_name` from `secret_opt` (none: from the name alone).
    pub fn derive(secret_opt: Option<&ClusterSecret>, cluster_name: &str) -> ClusterKeys {
        let secret: &[u8] = secret_opt.map(|secret| secret.0.as_slice()).unwrap_or(&[]);
        let root_key = hmac::Key::new(hmac::HMAC_SHA256, secret);
        let mut context = hmac::Context::with_key(&root_key);
        context.update(b"scd cluster key v1");
        update_with_len_prefixed(&mut context, cluster_name.as_bytes());
        let cluster_key_bytes = context.sign();
        let cluster_key = hmac::Key::new(hmac::HMAC_SHA256, cluster_key_bytes.as_ref());
        let derive = |label: &[u8]| {
            let tag = hmac::sign(&cluster_key, label);
            hmac::Key::new(hmac::HMAC_SHA256, tag.as_ref())
        };
        ClusterKeys {
            heartbeat_key: derive(b"scd heartbeat v1"),
            handshake_key: derive(b"scd peer handshake v1"),
            has_secret: secret_opt.is_some(),
        }
    }

    /// Whether the keys come from a configured secret. Without one, anybody who knows the cluster
    /// name can join or forge heartbeats; the node logs a warning.
    pub fn has_secret(&self) -> bool {
        self.has_secret
    }

    /// The key of heartbeat MACs.
    pub fn heartbeat_key(&self) -> &hmac::Key {
        &self.heartbeat_key
    }

    fn handshake_key(&self) -> &hmac::Key {
        &self.handshake_key
    }
}

fn update_with_len_prefixed(context: &mut hmac::Context, bytes: &[u8]) {
    // Lengths are bounded far below u32::MAX by the callers (names, channel bindings).
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    context.update(&len.to_be_bytes());
    context.update(bytes);
}

/// What one side of a handshake says about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalPeer {
    /// The cluster this node belongs to.
    pub cluster_name: String,
    /// This node's id.
    pub node_id: NodeId,
    /// The peer protocol version this node speaks.
    pub protocol_version: u32,
    /// The number of partitions this node was configured with.
    pub partition_count: u32,
    /// Bytes that identify the underlying channel on both ends (a TLS exporter value), or empty.
    pub channel_binding: Vec<u8>,
}

/// Step 1, initiator to responder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The initiator's peer protocol version.
    pub protocol_version: u32,
    /// The initiator's partition count.
    pub partition_count: u32,
    /// The initiator's cluster name.
    pub cluster_name: String,
    /// The initiator's node id.
    pub node_id: NodeId,
    /// The initiator's fresh nonce.
    pub nonce: Nonce,
}

/// Step 2, responder to initiator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Challenge {
    /// The responder's peer protocol version.
    pub protocol_version: u32,
    /// The responder's partition count.
    pub partition_count: u32,
    /// The responder's cluster name.
    pub cluster_name: String,
    /// The responder's node id.
    pub node_id: NodeId,
    /// The responder's fresh nonce.
    pub nonce: Nonce,
    /// The responder's MAC over the transcript.
    pub proof: [u8; PROOF_LEN],
}

/// Step 3, initiator to responder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proof {
    /// The initiator's MAC over the transcript.
    pub proof: [u8; PROOF_LEN],
}

/// The three handshake messages, for framing on the peer link.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HandshakeMessage {
    /// Step 1.
    Hello(Hello),
    /// Step 2.
    Challenge(Challenge),
    /// Step 3.
    Proof(Proof),
}

impl HandshakeMessage {
    /// Encodes the message with postcard.
    pub fn encode(&self) -> Vec<u8> {
        // Serialising plain structs of strings, integers and arrays into a Vec cannot fail.
        postcard::to_stdvec(self).unwrap_or_default()
    }

    /// Decodes a message, bounding its size and its names.
    pub fn decode(bytes: &[u8]) -> Result<HandshakeMessage, HandshakeError> {
        if bytes.len() > HANDSHAKE_MESSAGE_LEN_MAX {
            return Err(HandshakeError::Malformed("message is too long"));
        }
        let (message, rest) = postcard::take_from_bytes::<HandshakeMessage>(bytes)
            .map_err(|_| HandshakeError::Malformed("message does not decode"))?;
        if !rest.is_empty() {
            return Err(HandshakeError::Malformed(
                "trailing bytes after the message",
            ));
        }
        let cluster_name_len = match &message {
            HandshakeMessage::Hello(hello) => hello.cluster_name.len(),
            HandshakeMessage::Challenge(challenge) => challenge.cluster_name.len(),
            HandshakeMessage::Proof(_) => 0,
        };
        if cluster_name_len > NODE_NAME_LEN_MAX {
            return Err(HandshakeError::Malformed("cluster name is too long"));
        }
        Ok(message)
    }
}

/// The peer a finished handshake authenticated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuthenticatedPeer {
    /// The peer's node id, as proven by its MAC.
    pub node_id: NodeId,
}

/// Why a handshake failed. A failed handshake changes nothing: the caller closes the link.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// The peer belongs to another cluster. No state changed.
    #[error("peer belongs to cluster {theirs:?}, this node to {ours:?}")]
    OtherCluster {
        /// This node's cluster name.
        ours: String,
        /// The peer's cluster name.
        theirs: String,
    },
    /// The peer speaks another peer protocol version. No state changed.
    #[error("peer speaks protocol version {theirs}, this node speaks {ours}")]
    ProtocolMismatch {
        /// This node's version.
        ours: u32,
        /// The peer's version.
        theirs: u32,
    },
    /// The peer was configured with another partition count. No state changed.
    #[error("peer has {theirs} partitions, this node has {ours}; every node needs the same count")]
    PartitionCountMismatch {
        /// This node's partition count.
        ours: u32,
        /// The peer's partition count.
        theirs: u32,
    },
    /// The peer's proof does not verify: another secret, a replayed or tampered transcript.
    /// No state changed.
    #[error("peer failed to prove the cluster secret (different secret, or a replayed handshake)")]
    BadProof,
    /// The peer has this node's own id: the link loops back to this node or a name is reused.
    /// No state changed.
    #[error("peer has this node's own id {node_id}")]
    ConnectedToSelf {
        /// The id both sides claim.
        node_id: NodeId,
    },
    /// The peer echoed this side's nonce, as a reflection attack would. No state changed.
    #[error("peer echoed this node's nonce")]
    ReflectedNonce,
    /// The peer is not the node the initiator meant to reach. No state changed.
    #[error("expected peer {expected}, got {actual}")]
    UnexpectedPeer {
        /// The node the initiator dialled.
        expected: NodeId,
        /// The node that answered.
        actual: NodeId,
    },
    /// The channel binding is longer than [`CHANNEL_BINDING_LEN_MAX`]. No state changed.
    #[error("channel binding is longer than {CHANNEL_BINDING_LEN_MAX} bytes")]
    ChannelBindingTooLong,
    /// A handshake message does not decode or exceeds a limit. No state changed.
    #[error("malformed handshake message: {0}")]
    Malformed(&'static str),
}

const RESPONDER_LABEL: &[u8] = b"scd handshake responder v1";
const INITIATOR_LABEL: &[u8] = b"scd handshake initiator v1";

struct Transcript<'a> {
    protocol_version: u32,
    partition_count: u32,
    cluster_name: &'a str,
    initiator_id: NodeId,
    responder_id: NodeId,
    initiator_nonce: &'a Nonce,
    responder_nonce: &'a Nonce,
    channel_binding: &'a [u8],
}

impl Transcript<'_> {
    /// The signed bytes: the role label, then the transcript laid out in the module docs.
    fn bytes(&self, label: &[u8]) -> Vec<u8> {
        let mut data = Vec::with_capacity(
            label.len() + 128 + self.cluster_name.len() + self.channel_binding.len(),
        );
        data.extend_from_slice(label);
        data.extend_from_slice(&self.protocol_version.to_be_bytes());
        data.extend_from_slice(&self.partition_count.to_be_bytes());
        push_len_prefixed(&mut data, self.cluster_name.as_bytes());
        data.extend_from_slice(&self.initiator_id.0.to_be_bytes());
        data.extend_from_slice(&self.responder_id.0.to_be_bytes());
        data.extend_from_slice(self.initiator_nonce);
        data.extend_from_slice(self.responder_nonce);
        push_len_prefixed(&mut data, self.channel_binding);
        data
    }

    fn sign(&self, key: &hmac::Key, label: &[u8]) -> [u8; PROOF_LEN] {
        let tag = hmac::sign(key, &self.bytes(label));
        let mut proof = [0u8; PROOF_LEN];
        proof.copy_from_slice(tag.as_ref());
        proof
    }

    /// Compares in constant time (ring's `verify`), so timing does not leak the expected proof.
    fn verify(&self, key: &hmac::Key, label: &[u8], proof: &[u8; PROOF_LEN]) -> bool {
        hmac::verify(key, &self.bytes(label), proof).is_ok()
    }
}

fn push_len_prefixed(data: &mut Vec<u8>, bytes: &[u8]) {
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    data.extend_from_slice(&len.to_be_bytes());
    data.extend_from_slice(bytes);
}

fn check_compatible(
    local: &LocalPeer,
    cluster_name: &str,
    protocol_version: u32,
    partition_count: u32,
) -> Result<(), HandshakeError> {
    if cluster_name != local.cluster_name {
        return Err(HandshakeError::OtherCluster {
            ours: local.cluster_name.clone(),
            theirs: cluster_name.to_owned(),
        });
    }
    if protocol_version != local.protocol_version {
        return Err(HandshakeError::ProtocolMismatch {
            ours: local.protocol_version,
            theirs: protocol_version,
        });
    }
    if partition_count != local.partition_count {
        return Err(HandshakeError::PartitionCountMismatch {
            ours: local.partition_count,
            theirs: partition_count,
        });
    }
    Ok(())
}

/// The dialling side of a handshake, between steps 1 and 3.
#[derive(Debug)]
pub struct Initiator {
    keys: ClusterKeys,
    local: LocalPeer,
    expected_peer_opt: Option<NodeId>,
    nonce: Nonce,
}

impl Initiator {
    /// Step 1: starts a handshake with a fresh `nonce`; send the returned [`Hello`].
    /// `expected_peer_opt` is the node the caller meant to reach, when it knows it.
    pub fn start(
        keys: &ClusterKeys,
        local: LocalPeer,
        expected_peer_opt: Option<NodeId>,
        nonce: Nonce,
    ) -> Result<(Initiator, Hello), HandshakeError> {
        if local.channel_binding.len() > CHANNEL_BINDING_LEN_MAX {
            return Err(HandshakeError::ChannelBindingTooLong);
        }
        let hello = Hello {
            protocol_version: local.protocol_version,
            partition_count: local.partition_count,
            cluster_name: local.cluster_name.clone(),
            node_id: local.node_id,
            nonce,
        };
        Ok((
            Initiator {
                keys: keys.clone(),
                local,
                expected_peer_opt,
                nonce,
            },
            hello,
        ))
    }

    /// Step 3: checks the responder's [`Challenge`]; on success send the returned [`Proof`]
    /// and treat the link as authenticated.
    pub fn handle_challenge(
        self,
        challenge: &Challenge,
    ) -> Result<(Proof, AuthenticatedPeer), HandshakeError> {
        check_compatible(
            &self.local,
            &challenge.cluster_name,
            challenge.protocol_version,
            challenge.partition_count,
        )?;
        if challenge.node_id == self.local.node_id {
            return Err(HandshakeError::ConnectedToSelf {
                node_id: challenge.node_id,
            });
        }
        if challenge.nonce == self.nonce {
            return Err(HandshakeError::ReflectedNonce);
        }
        let transcript = Transcript {
            protocol_version: self.local.protocol_version,
            partition_count: self.local.partition_count,
            cluster_name: &self.local.cluster_name,
            initiator_id: self.local.node_id,
            responder_id: challenge.node_id,
            initiator_nonce: &self.nonce,
            responder_nonce: &challenge.nonce,
            channel_binding: &self.local.channel_binding,
        };
        if !transcript.verify(self.keys.handshake_key(), RESPONDER_LABEL, &challenge.proof) {
            return Err(HandshakeError::BadProof);
        }
        // Checked after the proof, so that the error names an authenticated peer.
        if let Some(expected) = self.expected_peer_opt
            && expected != challenge.node_id
        {
            return Err(HandshakeError::UnexpectedPeer {
                expected,
                actual: challenge.node_id,
            });
        }
        let proof = Proof {
            proof: transcript.sign(self.keys.handshake_key(), INITIATOR_LABEL),
        };
        Ok((
            proof,
            AuthenticatedPeer {
                node_id: challenge.node_id,
            },
        ))
    }
}

/// The accepting side of a handshake, between steps 2 and 4.
#[derive(Debug)]
pub struct Responder {
    keys: ClusterKeys,
    local: LocalPeer,
    hello: Hello,
    nonce: Nonce,
}

impl Responder {
    /// Step 2: answers a [`Hello`] with a fresh `nonce`; send the returned [`Challenge`], then call
    /// [`Responder::check_compatible`] and close the link if it fails.
    pub fn handle_hello(
        keys: &ClusterKeys,
        local: LocalPeer,
        hello: Hello,
        nonce: Nonce,
    ) -> Result<(Responder, Challenge), HandshakeError> {
        if local.channel_binding.len() > CHANNEL_BINDING_LEN_MAX {
            return Err(HandshakeError::ChannelBindingTooLong);
        }
        let transcript = Transcript {
            protocol_version: local.protocol_version,
            partition_count: local.partition_count,
            cluster_name: &local.cluster_name,
            initiator_id: hello.node_id,
            responder_id: local.node_id,
            initiator_nonce: &hello.nonce,
            responder_nonce: &nonce,
            channel_binding: &local.channel_binding,
        };
        let challenge = Challenge {
            protocol_version: local.protocol_version,
            partition_count: local.partition_count,
            cluster_name: local.cluster_name.clone(),
            node_id: local.node_id,
            nonce,
            proof: transcript.sign(keys.handshake_key(), RESPONDER_LABEL),
        };
        Ok((
            Responder {
                keys: keys.clone(),
                local,
                hello,
                nonce,
            },
            challenge,
        ))
    }

    /// Whether the initiator's cluster name, protocol version and partition count match this
    /// node's, and it is neither this node nor echoing this node's nonce.
    pub fn check_compatible(&self) -> Result<(), HandshakeError> {
        check_compatible(
            &self.local,
            &self.hello.cluster_name,
            self.hello.protocol_version,
            self.hello.partition_count,
        )?;
        if self.hello.node_id == self.local.node_id {
            return Err(HandshakeError::ConnectedToSelf {
                node_id: self.hello.node_id,
            });
        }
        if self.hello.nonce == self.nonce {
            return Err(HandshakeError::ReflectedNonce);
        }
        Ok(())
    }

    /// Step 4: verifies the initiator's [`Proof`]; on success the link is authenticated.
    pub fn handle_proof(self, proof: &Proof) -> Result<AuthenticatedPeer, HandshakeError> {
        self.check_compatible()?;
        let transcript = Transcript {
            protocol_version: self.local.protocol_version,
            partition_count: self.local.partition_count,
            cluster_name: &self.local.cluster_name,
            initiator_id: self.hello.node_id,
            responder_id: self.local.node_id,
            initiator_nonce: &self.hello.nonce,
            responder_nonce: &self.nonce,
            channel_binding: &self.local.channel_binding,
        };
        if !transcript.verify(self.keys.handshake_key(), INITIATOR_LABEL, &proof.proof) {
            return Err(HandshakeError::BadProof);
        }
        Ok(AuthenticatedPeer {
            node_id: self.hello.node_id,
        })
    }
}
