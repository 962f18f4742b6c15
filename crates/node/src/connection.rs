//! What a client connection does the same whatever its protocol (RESP or memcached): the sizes of
//! its buffers, the ordering rule for pipelined requests, reading, writing and giving memory back.

use std::time::Instant;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::state::{ByteTally, NodeState, ShutdownSignal};

/// Room kept free in the input buffer before each read.
pub(crate) const READ_CHUNK_BYTES: usize = 16 * 1024;
/// Replies are written once this many bytes are waiting, even mid-pipeline, so a long pipeline
/// of large values does not pile up in memory.
pub(crate) const OUTPUT_FLUSH_BYTES: usize = 256 * 1024;
/// A buffer that grew past this for one large request is replaced by a small one when empty, so
/// idle connections do not each keep megabytes.
const BUFFER_KEEP_BYTES: usize = 64 * 1024;

/// The partitions a request touches, for the ordering rule (PROTOCOL.md §12).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Footprint {
    /// None: it runs on this node alone (connection and server commands, memcached's `version`,
    /// `stats`, NOOP, SASL).
    None,
    /// The partition of its one key: almost every request, so no vector is allocated for it.
    One(u32),
    /// The partitions of its keys, when it has several.
    Partitions(Vec<u32>),
    /// Every partition (SCAN, KEYS, DBSIZE, FLUSHDB, FLUSHALL, `flush_all`).
    All,
}

impl Footprint {
    /// The partitions of `keys`.
    pub(crate) fn of_keys<K: AsRef<[u8]>>(
        state: &NodeState,
        keys: impl IntoIterator<Item = K>,
    ) -> Footprint {
        let mut keys = keys.into_iter();
        let Some(first) = keys.next() else {
            return Footprint::None;
        };
        let first = state.router.partition_of(first.as_ref());
        let Some(second) = keys.next() else {
            return Footprint::One(first);
        };
        let mut partitions = vec![first, state.router.partition_of(second.as_ref())];
        partitions.extend(keys.map(|key| state.router.partition_of(key.as_ref())));
        Footprint::Partitions(partitions)
    }
}

/// The partitions of a connection's pending replies: a request that touches one of them waits for
/// the replies before it runs, so it never overtakes an earlier request of the same partition.
#[derive(Debug, Default)]
pub(crate) struct InFlight {
    all: bool,
    partitions: Vec<u32>,
}

impl InFlight {
    /// Beyond this many pending partitions every new keyed request waits: keeps the check cheap
    /// for long pipelines.
    pub(crate) const PARTITIONS_MAX: usize = 64;

    pub(crate) fn conflicts_with(&self, footprint: &Footprint) -> bool {
        match footprint {
            Footprint::None => false,
            _ if self.all => true,
            Footprint::All => !self.partitions.is_empty(),
            Footprint::One(partition) => self.partitions.contains(partition),
            Footprint::Partitions(partitions) => partitions
                .iter()
                .any(|partition| self.partitions.contains(partition)),
        }
    }

    pub(crate) fn add(&mut self, footprint: Footprint) {
        match footprint {
            Footprint::None => return,
            Footprint::All => self.all = true,
            Footprint::One(partition) => self.partitions.push(partition),
            Footprint::Partitions(partitions) => self.partitions.extend(partitions),
        }
        if self.partitions.len() > Self::PARTITIONS_MAX {
            self.all = true;
        }
    }

    /// Nothing pending any more (the replies were waited for); keeps the vector's memory.
    pub(crate) fn clear(&mut self) {
        self.all = false;
        self.partitions.clear();
    }
}

/// Reads what the client sent next, with room for at least `wanted` bytes. `Err` when the client
/// left, the read failed, or the node is shutting down.
pub(crate) async fn read_more(
    shutdown: &mut ShutdownSignal,
    tally: &mut ByteTally<'_>,
    stream: &mut TcpStream,
    input: &mut BytesMut,
    wanted: usize,
) -> Result<(), ()> {
    if input.capacity() - input.len() < wanted / 2 {
        input.reserve(wanted);
    }
    let read = tokio::select! {
        // Input first: when it is ready the shutdown signal is not polled (a mutex per
        // poll); it still is whenever the connection waits for input.
        biased;
        read = stream.read_buf(input) => read,
        () = shutdown.wait() => return Err(()),
    };
    match read {
        Ok(0) | Err(_) => Err(()),
        Ok(bytes) => {
            tally.read(bytes);
            Ok(())
        }
    }
}

/// Most bytes read ahead of the commands being run while a reply waits (see `client_gone`).
const READ_AHEAD_MAX_BYTES: usize = 64 * 1024;

/// Reads what the client sends while one of its replies waits, and resolves when the client
/// closed the connection (or its sending half) or the read failed. A command that may wait
/// minutes (`SCD.LOCK … WAIT`) is watched with it, so that a client that went away is noticed
/// then and not when the wait ends: the connection's task ends, its queued acquisition leaves
/// the queue and its `SESSION` locks are released. What is read is kept in `input` for the
/// commands that follow; past `READ_AHEAD_MAX_BYTES` nothing more is read until they run, but
/// a close is still seen: epoll reports the peer's hang-up (`EPOLLRDHUP`) with data unread.
pub(crate) async fn client_gone(
    tally: &mut ByteTally<'_>,
    stream: &mut TcpStream,
    input: &mut BytesMut,
) {
    loop {
        if input.len() >= READ_AHEAD_MAX_BYTES {
            return closed_with_input_unread(stream).await;
        }
        if input.capacity() - input.len() < READ_CHUNK_BYTES / 2 {
            input.reserve(READ_CHUNK_BYTES);
        }
        match stream.read_buf(input).await {
            Ok(0) | Err(_) => return,
            Ok(bytes) => tally.read(bytes),
        }
    }
}

/// How often a connection that stopped reading ahead looks whether its client closed.
const CLOSE_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

/// Resolves when the client closes (or shuts its sending half), without reading what it sent:
/// the socket's readiness shows the close (`EPOLLRDHUP`) beside the unread input. Readable
/// without a close, it looks again after `CLOSE_CHECK_INTERVAL`. Readiness is left as it is:
/// clearing it by hand would hide the unread input from the reads that follow (epoll reports
/// edges), and the connection would hang once its wait ended.
async fn closed_with_input_unread(stream: &TcpStream) {
    loop {
        match stream.ready(tokio::io::Interest::READABLE).await {
            Ok(ready) if ready.is_read_closed() => return,
            Ok(_) => tokio::time::sleep(CLOSE_CHECK_INTERVAL).await,
            Err(_) => return,
        }
    }
}

/// Writes and empties `output`.
pub(crate) async fn write_output(
    tally: &mut ByteTally<'_>,
    stream: &mut TcpStream,
    output: &mut BytesMut,
) -> std::io::Result<()> {
    if output.is_empty() {
        return Ok(());
    }
    stream.write_all(output).await?;
    tally.wrote(output.len());
    output.clear();
    Ok(())
}

/// Gives back the memory of a buffer that grew for one large request.
pub(crate) fn shrink(buffer: &mut BytesMut) {
    if buffer.is_empty() && buffer.capacity() > BUFFER_KEEP_BYTES {
        *buffer = BytesMut::with_capacity(READ_CHUNK_BYTES);
    }
}

/// Nanoseconds since `started`, for the command statistics.
pub(crate) fn elapsed_ns(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_waits_only_for_pending_replies_of_its_partitions() {
        let mut in_flight = InFlight::default();
        let partitions = |list: &[u32]| Footprint::Partitions(list.to_vec());
        assert!(!in_flight.conflicts_with(&partitions(&[1])));
        assert!(!in_flight.conflicts_with(&Footprint::One(1)));
        assert!(!in_flight.conflicts_with(&Footprint::All));
        in_flight.add(partitions(&[1, 2]));
        assert!(in_flight.conflicts_with(&partitions(&[2])));
        assert!(in_flight.conflicts_with(&Footprint::One(1)));
        assert!(!in_flight.conflicts_with(&partitions(&[3])));
        assert!(!in_flight.conflicts_with(&Footprint::One(3)));
        assert!(!in_flight.conflicts_with(&Footprint::None));
        assert!(in_flight.conflicts_with(&Footprint::All));
        in_flight.add(Footprint::One(3));
        assert!(in_flight.conflicts_with(&Footprint::One(3)));
        in_flight.add(Footprint::All);
        assert!(in_flight.conflicts_with(&partitions(&[4])));
        assert!(!in_flight.conflicts_with(&Footprint::None));
        in_flight.clear();
        assert!(!in_flight.conflicts_with(&Footprint::One(1)));
        assert!(!in_flight.conflicts_with(&Footprint::All));

        let mut long_pipeline = InFlight::default();
        for partition in 0..=InFlight::PARTITIONS_MAX as u32 {
            long_pipeline.add(Footprint::One(partition));
        }
        assert!(long_pipeline.conflicts_with(&Footprint::One(100_000)));
    }
}
