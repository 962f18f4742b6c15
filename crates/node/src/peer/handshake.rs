//! The peer link handshake over TCP (`cluster::auth`, PROTOCOL.md §3): each message is framed with a
//! big-endian `u16` length; after the mutual proof each side sends its incarnation (`u64`), then
//! frames follow.

use std::time::Duration;

use cluster::auth::{
    AuthenticatedPeer, ClusterKeys, HANDSHAKE_MESSAGE_LEN_MAX, HandshakeError, HandshakeMessage,
    Initiator, LocalPeer, NONCE_LEN, Nonce, Responder,
};
use cluster::node_id::{Incarnation, NodeId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A handshake that takes longer than this is abandoned: the peer is slow or not a peer.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);

/// Why a handshake failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LinkHandshakeError {
    #[error("peer handshake refused: {0}")]
    Refused(#[from] HandshakeError),
    #[error("peer handshake i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("peer handshake timed out after {HANDSHAKE_TIMEOUT:?}")]
    TimedOut,
    #[error("peer sent {0} where the handshake expected {1}")]
    Unexpected(&'static str, &'static str),
    #[error("peer sent a handshake message of {0} bytes (at most {HANDSHAKE_MESSAGE_LEN_MAX})")]
    TooLong(usize),
}

/// Who the other end turned out to be.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PeerIdentity {
    pub(crate) node_id: NodeId,
    pub(crate) incarnation: Incarnation,
}

fn fresh_nonce() -> Nonce {
    let mut nonce = [0u8; NONCE_LEN];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce)
        .expect("the operating system's random source is available");
    nonce
}

async fn send(
    stream: &mut TcpStream,
    message: &HandshakeMessage,
) -> Result<(), LinkHandshakeError> {
    let bytes = message.encode();
    let length =
        u16::try_from(bytes.len()).map_err(|_| LinkHandshakeError::TooLong(bytes.len()))?;
    let mut framed = Vec::with_capacity(2 + bytes.len());
    framed.extend_from_slice(&length.to_be_bytes());
    framed.extend_from_slice(&bytes);
    stream.write_all(&framed).await?;
    Ok(())
}

async fn receive(stream: &mut TcpStream) -> Result<HandshakeMessage, LinkHandshakeError> {
    let length = usize::from(stream.read_u16().await?);
    if length > HANDSHAKE_MESSAGE_LEN_MAX {
        return Err(LinkHandshakeError::TooLong(length));
    }
    let mut bytes = vec![0u8; length];
    stream.read_exact(&mut bytes).await?;
    Ok(HandshakeMessage::decode(&bytes)?)
}

async fn exchange_incarnations(
    stream: &mut TcpStream,
    ours: Incarnation,
    peer: AuthenticatedPeer,
) -> Result<PeerIdentity, LinkHandshakeError> {
    stream.write_all(&ours.0.to_be_bytes()).await?;
    let incarnation = Incarnation(stream.read_u64().await?);
    Ok(PeerIdentity {
        node_id: peer.node_id,
        incarnation,
    })
}

/// The dialling side: proves itself to `expected_peer` and checks its proof.
pub(crate) async fn initiate(
    stream: &mut TcpStream,
    keys: &ClusterKeys,
    local: LocalPeer,
    incarnation: Incarnation,
    expected_peer: NodeId,
) -> Result<PeerIdentity, LinkHandshakeError> {
    let exchange = async {
        let (initiator, hello) = Initiator::start(keys, local, Some(expected_peer), fresh_nonce())?;
        send(stream, &HandshakeMessage::Hello(hello)).await?;
        let challenge = match receive(stream).await? {
            HandshakeMessage::Challenge(challenge) => challenge,
            _ => {
                return Err(LinkHandshakeError::Unexpected(
                    "another message",
                    "a challenge",
                ));
            }
        };
        let (proof, peer) = initiator.handle_challenge(&challenge)?;
        send(stream, &HandshakeMessage::Proof(proof)).await?;
        exchange_incarnations(stream, incarnation, peer).await
    };
    tokio::time::timeout(HANDSHAKE_TIMEOUT, exchange)
        .await
        .map_err(|_| LinkHandshakeError::TimedOut)?
}

/// The accepting side: answers the hello, checks compatibility and the peer's proof.
pub(crate) async fn respond(
    stream: &mut TcpStream,
    keys: &ClusterKeys,
    local: LocalPeer,
    incarnation: Incarnation,
) -> Result<PeerIdentity, LinkHandshakeError> {
    let exchange = async {
        let hello = match receive(stream).await? {
            HandshakeMessage::Hello(hello) => hello,
            _ => return Err(LinkHandshakeError::Unexpected("another message", "a hello")),
        };
        let (responder, challenge) = Responder::handle_hello(keys, local, hello, fresh_nonce())?;
        // Every well-formed hello gets its challenge, so an incompatible peer learns what differs.
        send(stream, &HandshakeMessage::Challenge(challenge)).await?;
        responder.check_compatible()?;
        let proof = match receive(stream).await? {
            HandshakeMessage::Proof(proof) => proof,
            _ => return Err(LinkHandshakeError::Unexpected("another message", "a proof")),
        };
        let peer = responder.handle_proof(&proof)?;
        exchange_incarnations(stream, incarnation, peer).await
    };
    tokio::time::timeout(HANDSHAKE_TIMEOUT, exchange)
        .await
        .map_err(|_| LinkHandshakeError::TimedOut)?
}
