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

#[cfg(test)]
mod tests {
    use super::*;

    const PARTITIONS: u32 = 1024;

    fn keys(secret: &[u8]) -> ClusterKeys {
        ClusterKeys::derive(Some(&ClusterSecret(secret.to_vec())), "prod")
    }

    fn local(name: &str) -> LocalPeer {
        LocalPeer {
            cluster_name: "prod".to_owned(),
            node_id: NodeId::from_name(name),
            protocol_version: 1,
            partition_count: PARTITIONS,
            channel_binding: Vec::new(),
        }
    }

    /// Runs a whole handshake between `initiator` (with `initiator_keys`) and `responder`; returns
    /// what each side concluded. Every message goes through its wire encoding.
    fn handshake(
        initiator_keys: &ClusterKeys,
        initiator: LocalPeer,
        responder_keys: &ClusterKeys,
        responder: LocalPeer,
    ) -> (
        Result<AuthenticatedPeer, HandshakeError>,
        Result<AuthenticatedPeer, HandshakeError>,
    ) {
        let (initiator_state, hello) =
            Initiator::start(initiator_keys, initiator, None, [1; NONCE_LEN]).expect("starts");
        let hello = match HandshakeMessage::decode(&HandshakeMessage::Hello(hello).encode()) {
            Ok(HandshakeMessage::Hello(hello)) => hello,
            other => panic!("hello decoded as {other:?}"),
        };
        let (responder_state, challenge) =
            Responder::handle_hello(responder_keys, responder, hello, [2; NONCE_LEN])
                .expect("answers");
        let challenge =
            match HandshakeMessage::decode(&HandshakeMessage::Challenge(challenge).encode()) {
                Ok(HandshakeMessage::Challenge(challenge)) => challenge,
                other => panic!("challenge decoded as {other:?}"),
            };
        match initiator_state.handle_challenge(&challenge) {
            Ok((proof, peer)) => (Ok(peer), responder_state.handle_proof(&proof)),
            Err(error) => {
                // The responder never gets a proof; what it knows on its own is the compatibility.
                let responder_result = responder_state
                    .check_compatible()
                    .and(Err(HandshakeError::BadProof));
                (Err(error), responder_result)
            }
        }
    }

    #[test]
    fn both_sides_succeed_with_the_same_secret() {
        let (initiator, responder) =
            handshake(&keys(b"s3cret"), local("a"), &keys(b"s3cret"), local("b"));
        assert_eq!(
            initiator,
            Ok(AuthenticatedPeer {
                node_id: NodeId::from_name("b")
            })
        );
        assert_eq!(
            responder,
            Ok(AuthenticatedPeer {
                node_id: NodeId::from_name("a")
            })
        );
    }

    #[test]
    fn both_sides_succeed_without_a_secret_when_neither_has_one() {
        let no_secret = ClusterKeys::derive(None, "prod");
        assert!(!no_secret.has_secret());
        let (initiator, responder) = handshake(&no_secret, local("a"), &no_secret, local("b"));
        assert!(initiator.is_ok() && responder.is_ok());
    }

    #[test]
    fn a_wrong_secret_fails_on_both_sides() {
        // The initiator detects it first and sends no proof.
        let (initiator, responder) =
            handshake(&keys(b"right"), local("a"), &keys(b"wrong"), local("b"));
        assert_eq!(initiator, Err(HandshakeError::BadProof));
        assert_eq!(responder, Err(HandshakeError::BadProof));
        // A responder that meets a forged proof (an initiator without the secret) rejects it too.
        let (_initiator, hello) =
            Initiator::start(&keys(b"wrong"), local("a"), None, [1; NONCE_LEN]).expect("starts");
        let (responder, _challenge) =
            Responder::handle_hello(&keys(b"right"), local("b"), hello, [2; NONCE_LEN])
                .expect("answers");
        assert_eq!(
            responder.handle_proof(&Proof {
                proof: [0; PROOF_LEN]
            }),
            Err(HandshakeError::BadProof)
        );
    }

    #[test]
    fn a_proof_made_with_the_wrong_secret_fails_at_the_responder() {
        // An attacker that saw the challenge computes a proof with a guessed secret.
        let right = keys(b"right");
        let (_initiator, hello) =
            Initiator::start(&right, local("a"), None, [1; NONCE_LEN]).expect("starts");
        let (responder, challenge) =
            Responder::handle_hello(&right, local("b"), hello.clone(), [2; NONCE_LEN])
                .expect("answers");
        let (forger, _) =
            Initiator::start(&keys(b"guess"), local("a"), None, hello.nonce).expect("starts");
        // The forger cannot even verify the responder, and a proof it signs anyway is refused.
        assert_eq!(
            forger.handle_challenge(&challenge).map(|_| ()),
            Err(HandshakeError::BadProof)
        );
        let transcript = Transcript {
            protocol_version: 1,
            partition_count: PARTITIONS,
            cluster_name: "prod",
            initiator_id: NodeId::from_name("a"),
            responder_id: NodeId::from_name("b"),
            initiator_nonce: &hello.nonce,
            responder_nonce: &challenge.nonce,
            channel_binding: &[],
        };
        let forged = Proof {
            proof: transcript.sign(keys(b"guess").handshake_key(), INITIATOR_LABEL),
        };
        assert_eq!(
            responder.handle_proof(&forged),
            Err(HandshakeError::BadProof)
        );
    }

    #[test]
    fn replayed_transcripts_fail() {
        let key = keys(b"s3cret");
        // Record a complete, successful handshake.
        let (initiator, hello) =
            Initiator::start(&key, local("a"), None, [1; NONCE_LEN]).expect("starts");
        let (responder, challenge) =
            Responder::handle_hello(&key, local("b"), hello.clone(), [2; NONCE_LEN])
                .expect("answers");
        let (recorded_proof, _) = initiator
            .handle_challenge(&challenge)
            .expect("authenticates");
        assert!(responder.handle_proof(&recorded_proof).is_ok());
        // Replaying the initiator's messages to a responder with a fresh nonce fails.
        let (fresh_responder, _) =
            Responder::handle_hello(&key, local("b"), hello, [3; NONCE_LEN]).expect("answers");
        assert_eq!(
            fresh_responder.handle_proof(&recorded_proof),
            Err(HandshakeError::BadProof)
        );
        // Replaying the responder's challenge to an initiator with a fresh nonce fails.
        let (fresh_initiator, _) =
            Initiator::start(&key, local("a"), None, [4; NONCE_LEN]).expect("starts");
        assert_eq!(
            fresh_initiator.handle_challenge(&challenge).map(|_| ()),
            Err(HandshakeError::BadProof)
        );
    }

    #[test]
    fn a_proof_cannot_be_reflected_or_moved_to_another_channel() {
        let key = keys(b"s3cret");
        // The responder's own proof sent back as the initiator's proof fails (role labels differ).
        let (_initiator, hello) =
            Initiator::start(&key, local("a"), None, [1; NONCE_LEN]).expect("starts");
        let (responder, challenge) =
            Responder::handle_hello(&key, local("b"), hello, [2; NONCE_LEN]).expect("answers");
        assert_eq!(
            responder.handle_proof(&Proof {
                proof: challenge.proof
            }),
            Err(HandshakeError::BadProof)
        );
        // A challenge made for another channel binding fails.
        let mut bound = local("a");
        bound.channel_binding = b"tls exporter of connection 1".to_vec();
        let (initiator, hello) =
            Initiator::start(&key, bound, None, [1; NONCE_LEN]).expect("starts");
        let mut other_channel = local("b");
        other_channel.channel_binding = b"tls exporter of connection 2".to_vec();
        let (_, challenge) =
            Responder::handle_hello(&key, other_channel, hello, [2; NONCE_LEN]).expect("answers");
        assert_eq!(
            initiator.handle_challenge(&challenge).map(|_| ()),
            Err(HandshakeError::BadProof)
        );
        // An echoed nonce is refused before any MAC is looked at.
        let (initiator, hello) =
            Initiator::start(&key, local("a"), None, [7; NONCE_LEN]).expect("starts");
        let (_, challenge) =
            Responder::handle_hello(&key, local("b"), hello, [7; NONCE_LEN]).expect("answers");
        assert_eq!(
            initiator.handle_challenge(&challenge).map(|_| ()),
            Err(HandshakeError::ReflectedNonce)
        );
    }

    #[test]
    fn version_and_partition_count_mismatches_give_typed_errors_on_both_sides() {
        fn check(
            change: impl Fn(&mut LocalPeer),
            expect_initiator: HandshakeError,
            expect_responder: HandshakeError,
        ) {
            let key = keys(b"s3cret");
            let mut responder = local("b");
            change(&mut responder);
            let (initiator, responder) = handshake(&key, local("a"), &key, responder);
            assert_eq!(initiator, Err(expect_initiator));
            assert_eq!(responder, Err(expect_responder));
        }
        check(
            |peer| peer.protocol_version = 2,
            HandshakeError::ProtocolMismatch { ours: 1, theirs: 2 },
            HandshakeError::ProtocolMismatch { ours: 2, theirs: 1 },
        );
        check(
            |peer| peer.partition_count = 256,
            HandshakeError::PartitionCountMismatch {
                ours: PARTITIONS,
                theirs: 256,
            },
            HandshakeError::PartitionCountMismatch {
                ours: 256,
                theirs: PARTITIONS,
            },
        );
        check(
            |peer| peer.cluster_name = "staging".to_owned(),
            HandshakeError::OtherCluster {
                ours: "prod".to_owned(),
                theirs: "staging".to_owned(),
            },
            HandshakeError::OtherCluster {
                ours: "staging".to_owned(),
                theirs: "prod".to_owned(),
            },
        );
    }

    #[test]
    fn connecting_to_itself_or_to_an_unexpected_node_is_refused() {
        let key = keys(b"s3cret");
        let (initiator, hello) =
            Initiator::start(&key, local("a"), None, [1; NONCE_LEN]).expect("starts");
        let (responder, challenge) =
            Responder::handle_hello(&key, local("a"), hello, [2; NONCE_LEN]).expect("answers");
        let self_id = NodeId::from_name("a");
        assert_eq!(
            initiator.handle_challenge(&challenge).map(|_| ()),
            Err(HandshakeError::ConnectedToSelf { node_id: self_id })
        );
        assert_eq!(
            responder.check_compatible(),
            Err(HandshakeError::ConnectedToSelf { node_id: self_id })
        );
        let expected = NodeId::from_name("c");
        let (initiator, hello) =
            Initiator::start(&key, local("a"), Some(expected), [1; NONCE_LEN]).expect("starts");
        let (_, challenge) =
            Responder::handle_hello(&key, local("b"), hello, [2; NONCE_LEN]).expect("answers");
        assert_eq!(
            initiator.handle_challenge(&challenge).map(|_| ()),
            Err(HandshakeError::UnexpectedPeer {
                expected,
                actual: NodeId::from_name("b")
            })
        );
    }

    #[test]
    fn keys_depend_on_secret_and_cluster_name() {
        let tag = |keys: &ClusterKeys| hmac::sign(keys.heartbeat_key(), b"x").as_ref().to_vec();
        let base = tag(&keys(b"s3cret"));
        assert_eq!(base, tag(&keys(b"s3cret")));
        assert_ne!(base, tag(&keys(b"other")));
        assert_ne!(
            base,
            tag(&ClusterKeys::derive(
                Some(&ClusterSecret(b"s3cret".to_vec())),
                "staging"
            ))
        );
        assert_ne!(base, tag(&ClusterKeys::derive(None, "prod")));
        assert_ne!(
            tag(&ClusterKeys::derive(None, "prod")),
            tag(&ClusterKeys::derive(None, "staging"))
        );
        assert!(!format!("{:?}", ClusterSecret(b"s3cret".to_vec())).contains("s3cret"));
    }

    #[test]
    fn malformed_handshake_messages_are_rejected() {
        fn check(bytes: &[u8]) {
            assert!(
                matches!(
                    HandshakeMessage::decode(bytes),
                    Err(HandshakeError::Malformed(_))
                ),
                "{bytes:?}"
            );
        }
        check(&[]);
        check(&[9]);
        check(&vec![0; HANDSHAKE_MESSAGE_LEN_MAX + 1]);
        let mut trailing = HandshakeMessage::Proof(Proof {
            proof: [0; PROOF_LEN],
        })
        .encode();
        trailing.push(0);
        check(&trailing);
        let long_name = Hello {
            protocol_version: 1,
            partition_count: 1,
            cluster_name: "c".repeat(65),
            node_id: NodeId(1),
            nonce: [0; NONCE_LEN],
        };
        check(&HandshakeMessage::Hello(long_name).encode());
    }
}
