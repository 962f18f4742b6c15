//! The simulated node's side of the engine's `Host`: it numbers and encodes frames into an
//! outbox the simulation drains into the network, models each link's send backlog, and records
//! acknowledgements and partition changes for the simulated clients.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use cluster::engine::Host;
use cluster::table::Member;
use cluster::wire::{PeerMessage, encode_frame};
use parking_lot::Mutex;

/// A frame the engine (or the relay) queued, not yet handed to the network.
#[derive(Clone, Debug)]
pub(crate) struct Outgoing {
    pub(crate) to: Member,
    pub(crate) frame: u64,
    pub(crate) bytes: Bytes,
}

#[derive(Debug, Default)]
struct HostState {
    now_ms: u64,
    /// Peers with an open link, and the link's id.
    links: BTreeMap<Member, u64>,
    /// The last frame number used toward each peer member (numbering continues across links).
    last_frame: BTreeMap<Member, u64>,
    outbox: Vec<Outgoing>,
    /// Per peer: (when the frame has been written to the wire, its size), oldest first.
    written_at: BTreeMap<Member, VecDeque<(u64, usize)>>,
    changed: BTreeSet<u32>,
    acked: BTreeMap<Member, u64>,
    encode_failures: u64,
    largest_backlog_bytes: usize,
    /// Peers whose link the engine asked to reset, for the world to close.
    resets: Vec<Member>,
}

/// The `Host` of one simulated node; cheap to clone (shared state).
#[derive(Clone, Debug, Default)]
pub struct SimHost(Arc<Mutex<HostState>>);

impl SimHost {
    pub(crate) fn set_now(&self, now_ms: u64) {
        self.0.lock().now_ms = now_ms;
    }

    pub(crate) fn open_link(&self, peer: Member, link_id: u64) {
        self.0.lock().links.insert(peer, link_id);
    }

    pub(crate) fn close_link(&self, peer: Member) {
        let mut state = self.0.lock();
        state.links.remove(&peer);
        state.written_at.remove(&peer);
        state.outbox.retain(|outgoing| outgoing.to != peer);
    }

    pub(crate) fn link_id(&self, peer: Member) -> Option<u64> {
        self.0.lock().links.get(&peer).copied()
    }

    /// The links the engine asked to reset since the last call.
    pub(crate) fn take_resets(&self) -> Vec<Member> {
        std::mem::take(&mut self.0.lock().resets)
    }

    pub(crate) fn take_outbox(&self) -> Vec<Outgoing> {
        std::mem::take(&mut self.0.lock().outbox)
    }

    /// The network scheduled a frame of `size` bytes toward `to`, fully written at `at_ms`.
    pub(crate) fn note_written_at(&self, to: Member, at_ms: u64, size: usize) {
        self.0
            .lock()
            .written_at
            .entry(to)
            .or_default()
            .push_back((at_ms, size));
    }

    pub(crate) fn take_changed(&self) -> BTreeSet<u32> {
        std::mem::take(&mut self.0.lock().changed)
    }

    /// Whether acknowledgements from `from` cover frame `frame`.
    pub(crate) fn is_acked(&self, from: Member, frame: u64) -> bool {
        self.0
            .lock()
            .acked
            .get(&from)
            .is_some_and(|acked| *acked >= frame)
    }

    /// Frame numbers sent and acknowledged per peer, for failure reports.
    pub(crate) fn describe(&self) -> String {
        let state = self.0.lock();
        format!(
            "sent {:?} acked {:?} links {:?}",
            state.last_frame, state.acked, state.links
        )
    }

    pub(crate) fn encode_failures(&self) -> u64 {
        self.0.lock().encode_failures
    }

    /// The largest backlog any link of this host reached, in bytes.
    pub(crate) fn largest_backlog_bytes(&self) -> usize {
        self.0.lock().largest_backlog_bytes
    }

    /// Queues a relay frame (the node's relay uses the link directly, like the engine).
    pub(crate) fn send_relay(&self, to: Member, message: &PeerMessage) -> Option<u64> {
        self.send(to, message)
    }
}

impl HostState {
    fn backlog_bytes(&mut self, to: Member) -> usize {
        let now_ms = self.now_ms;
        let unscheduled: usize = self
            .outbox
            .iter()
            .filter(|outgoing| outgoing.to == to)
            .map(|outgoing| outgoing.bytes.len())
            .sum();
        let scheduled = match self.written_at.get_mut(&to) {
            Some(queue) => {
                while queue.front().is_some_and(|&(at_ms, _)| at_ms <= now_ms) {
                    queue.pop_front();
                }
                queue.iter().map(|&(_, size)| size).sum()
            }
            None => 0,
        };
        unscheduled + scheduled
    }
}

impl Host for SimHost {
    fn send(&self, to: Member, message: &PeerMessage) -> Option<u64> {
        let mut state = self.0.lock();
        if !state.links.contains_key(&to) {
            return None;
        }
        let mut buf = BytesMut::new();
        if encode_frame(message, &mut buf).is_err() {
            state.encode_failures += 1;
            return None;
        }
        let frame = {
            let last = state.last_frame.entry(to).or_insert(0);
            *last += 1;
            *last
        };
        state.outbox.push(Outgoing {
            to,
            frame,
            bytes: buf.freeze(),
        });
        let backlog = state.backlog_bytes(to);
        state.largest_backlog_bytes = state.largest_backlog_bytes.max(backlog);
        Some(frame)
    }

    fn backlog_bytes(&self, to: Member) -> usize {
        self.0.lock().backlog_bytes(to)
    }

    fn partition_changed(&self, partition: u32) {
        self.0.lock().changed.insert(partition);
    }

    fn reset_link(&self, to: Member) {
        self.0.lock().resets.push(to);
    }

    fn frames_sent(&self, to: Member) -> u64 {
        self.0.lock().last_frame.get(&to).copied().unwrap_or(0)
    }

    fn acked(&self, from: Member, frames: u64) {
        let mut state = self.0.lock();
        // A release (`u64::MAX`) covers the frames sent so far, not the ones a later link
        // will carry under the continued numbering.
        let last = state.last_frame.get(&from).copied().unwrap_or(0);
        let covered = frames.min(last);
        let acked = state.acked.entry(from).or_insert(0);
        *acked = (*acked).max(covered);
    }
}
