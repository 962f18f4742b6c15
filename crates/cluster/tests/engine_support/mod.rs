//! A hand-driven harness for engine tests: a few engines, a recording `Host`, links that
//! deliver frames in order (through the real wire encoding) and acknowledge them, and a clock.
//! Nothing random: each test says what happens when.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use cluster::engine::{Engine, EngineConfig, Execution, Host, WriteMode};
use cluster::node_id::{Incarnation, NodeId};
use cluster::table::{Member, ViewMember};
use cluster::wire::{PeerMessage, decode_frame, encode_frame};
use parking_lot::Mutex;
use store::{Op, Reply, SetCondition, SetExpiry, Store, StoreConfig};

pub const PARTITIONS: u32 = 16;

#[derive(Default)]
struct HostState {
    /// Peers with a link, and the next frame number toward each (continues across links).
    links: BTreeSet<Member>,
    next_frame: BTreeMap<Member, u64>,
    /// Encoded frames not yet delivered, per destination, with their numbers.
    outbox: BTreeMap<Member, VecDeque<(u64, Bytes)>>,
    changed: BTreeSet<u32>,
    acked: BTreeMap<Member, u64>,
    backlog_bytes: usize,
    /// Number frames without encoding or queueing them (to measure the engine alone).
    discard: bool,
    /// Peers whose link the engine asked to reset.
    resets: Vec<Member>,
}

/// The recording host of one test node.
#[derive(Clone, Default)]
pub struct TestHost(Arc<Mutex<HostState>>);

impl Host for TestHost {
    fn send(&self, to: Member, message: &PeerMessage) -> Option<u64> {
        let mut state = self.0.lock();
        if !state.links.contains(&to) {
            return None;
        }
        if state.discard {
            let next = state.next_frame.entry(to).or_insert(1);
            *next += 1;
            return Some(*next - 1);
        }
        let mut buf = BytesMut::new();
        encode_frame(message, &mut buf).expect("every engine message encodes");
        let frame = {
            let next = state.next_frame.entry(to).or_insert(1);
            let frame = *next;
            *next += 1;
            frame
        };
        state
            .outbox
            .entry(to)
            .or_default()
            .push_back((frame, buf.freeze()));
        Some(frame)
    }

    fn backlog_bytes(&self, _to: Member) -> usize {
        self.0.lock().backlog_bytes
    }

    fn partition_changed(&self, partition: u32) {
        self.0.lock().changed.insert(partition);
    }

    fn acked(&self, from: Member, frames: u64) {
        let mut state = self.0.lock();
        let acked = state.acked.entry(from).or_insert(0);
        *acked = (*acked).max(frames);
    }

    fn reset_link(&self, to: Member) {
        self.0.lock().resets.push(to);
    }

    fn frames_sent(&self, to: Member) -> u64 {
        self.0.lock().next_frame.get(&to).map_or(0, |next| next - 1)
    }
}

impl TestHost {
    /// The peers whose link the engine asked to reset since the last call.
    pub fn take_resets(&self) -> Vec<Member> {
        std::mem::take(&mut self.0.lock().resets)
    }

    /// From now on frames are numbered but neither encoded nor delivered.
    pub fn discard_frames(&self) {
        self.0.lock().discard = true;
    }

    /// The highest acknowledgement the engine reported for `from`.
    pub fn acked(&self, from: Member) -> u64 {
        self.0.lock().acked.get(&from).copied().unwrap_or(0)
    }

    /// The kinds of the messages queued to `to` and not delivered yet, oldest first.
    pub fn queued_kinds(&self, to: Member) -> Vec<&'static str> {
        self.queued(to)
            .iter()
            .map(|message| message.kind())
            .collect()
    }

    /// The messages queued to `to` and not delivered yet, oldest first.
    pub fn queued(&self, to: Member) -> Vec<PeerMessage> {
        let state = self.0.lock();
        state
            .outbox
            .get(&to)
            .into_iter()
            .flatten()
            .filter_map(|(_, bytes)| {
                let mut buf = BytesMut::from(&bytes[..]);
                decode_frame(&mut buf).ok().flatten()
            })
            .collect()
    }

    /// The last message queued to `to` and not delivered yet.
    pub fn last_queued(&self, to: Member) -> Option<PeerMessage> {
        let state = self.0.lock();
        let (_, bytes) = state.outbox.get(&to)?.back()?;
        let mut buf = BytesMut::from(&bytes[..]);
        decode_frame(&mut buf).ok().flatten()
    }
}

pub struct TestNode {
    pub name: String,
    pub member: Member,
    pub engine: Engine<TestHost>,
    pub host: TestHost,
    pub store: Arc<Store>,
}

pub struct Cluster {
    pub nodes: Vec<TestNode>,
    pub now_ms: u64,
    /// Messages delivered, as (from, to, kind), for assertions about the protocol.
    pub log: Vec<(usize, usize, &'static str)>,
    /// Messages of these kinds are dropped instead of delivered (only for what TCP can lose:
    /// nothing, unless the link resets; tests use it to model a peer that ignores a kind).
    pub drop_kinds: BTreeSet<&'static str>,
    /// A link stops delivering at the first frame of one of these kinds, keeping it and what
    /// follows queued in order (a slow link), until the kind is removed.
    pub hold_kinds: BTreeSet<&'static str>,
    /// Links (from, to) that deliver nothing, keeping their frames queued in order (a link
    /// slow in one direction), until removed.
    pub hold_links: BTreeSet<(usize, usize)>,
}

pub fn member_of(name: &str, incarnation: u64) -> Member {
    Member {
        id: NodeId::from_name(name),
        incarnation: Incarnation(incarnation),
    }
}

impl Cluster {
    pub fn new() -> Cluster {
        Cluster {
            nodes: Vec::new(),
            now_ms: 1_000_000,
            log: Vec::new(),
            drop_kinds: BTreeSet::new(),
            hold_kinds: BTreeSet::new(),
            hold_links: BTreeSet::new(),
        }
    }

    /// Two nodes at their defaults, "a" (index 0) and "b" (index 1, joining: it claims
    /// nothing), formed and run until b took its share.
    pub fn formed_pair() -> Cluster {
        let mut cluster = Cluster::new();
        let a = cluster.add("a", |_| {});
        let b = cluster.add("b", |config| config.join_wait_ms = 10_000);
        cluster.run(20);
        cluster.form(&[a, b]);
        cluster.run(500);
        cluster
    }

    /// Adds a node; `configure` adjusts its engine configuration.
    pub fn add(&mut self, name: &str, configure: impl FnOnce(&mut EngineConfig)) -> usize {
        let member = member_of(name, 1 + self.nodes.len() as u64);
        let mut config = EngineConfig::new(member, name, PARTITIONS);
        config.join_wait_ms = 0;
        config.write_mode = WriteMode::Through;
        configure(&mut config);
        let store = Arc::new(
            Store::new(StoreConfig {
                num_partitions: PARTITIONS,
                node_id: member.id.0,
                ..StoreConfig::default()
            })
            .expect("valid store"),
        );
        let host = TestHost::default();
        let engine =
            Engine::new(config, store.clone(), host.clone(), self.now_ms).expect("valid engine");
        self.nodes.push(TestNode {
            name: name.to_string(),
            member,
            engine,
            host,
            store,
        });
        self.nodes.len() - 1
    }

    pub fn index_of(&self, member: Member) -> Option<usize> {
        self.nodes.iter().position(|node| node.member == member)
    }

    /// Sets the view of each listed node to the listed nodes.
    pub fn set_view(&mut self, nodes: &[usize]) {
        let view: Vec<ViewMember> = nodes
            .iter()
            .map(|&index| ViewMember {
                member: self.nodes[index].member,
                name: self.nodes[index].name.clone(),
                leaving: false,
            })
            .collect();
        for &index in nodes {
            self.nodes[index]
                .engine
                .handle_view(view.clone(), self.now_ms);
        }
    }

    pub fn link_up(&mut self, a: usize, b: usize) {
        let (member_a, member_b) = (self.nodes[a].member, self.nodes[b].member);
        self.nodes[a].host.0.lock().links.insert(member_b);
        self.nodes[b].host.0.lock().links.insert(member_a);
        self.nodes[a].engine.handle_link_up(member_b, self.now_ms);
        self.nodes[b].engine.handle_link_up(member_a, self.now_ms);
    }

    /// Cuts the link in the hosts only, as a link closes before its end is reported: sends on
    /// it fail, the engines do not know yet. `link_down` reports it.
    pub fn sever(&mut self, a: usize, b: usize) {
        let (member_a, member_b) = (self.nodes[a].member, self.nodes[b].member);
        for (from, to) in [(a, member_b), (b, member_a)] {
            let mut state = self.nodes[from].host.0.lock();
            state.links.remove(&to);
            state.outbox.remove(&to);
        }
    }

    /// Cuts the link: frames not yet delivered are lost.
    pub fn link_down(&mut self, a: usize, b: usize) {
        let (member_a, member_b) = (self.nodes[a].member, self.nodes[b].member);
        self.sever(a, b);
        self.nodes[a].engine.handle_link_down(member_b, self.now_ms);
        self.nodes[b].engine.handle_link_down(member_a, self.now_ms);
    }

    /// Connects every pair of the listed nodes and gives them the same view.
    pub fn form(&mut self, nodes: &[usize]) {
        self.set_view(nodes);
        for (position, &a) in nodes.iter().enumerate() {
            for &b in &nodes[position + 1..] {
                self.link_up(a, b);
            }
        }
    }

    /// Delivers every queued frame, in order per link, acknowledging each batch, until nothing
    /// is left. Returns how many frames were delivered.
    pub fn deliver(&mut self) -> usize {
        let mut delivered = 0;
        for _round in 0..10_000 {
            let mut any = false;
            for from in 0..self.nodes.len() {
                let batches: Vec<(Member, VecDeque<(u64, Bytes)>)> = {
                    let mut state = self.nodes[from].host.0.lock();
                    std::mem::take(&mut state.outbox).into_iter().collect()
                };
                for (to_member, frames) in batches {
                    let Some(to) = self.index_of(to_member) else {
                        continue;
                    };
                    if self.hold_links.contains(&(from, to)) {
                        let mut state = self.nodes[from].host.0.lock();
                        let queue = state.outbox.entry(to_member).or_default();
                        for held in frames.into_iter().rev() {
                            queue.push_front(held);
                        }
                        continue;
                    }
                    let mut last = 0;
                    let mut frames = frames;
                    while let Some((frame, bytes)) = frames.pop_front() {
                        let mut buf = BytesMut::from(&bytes[..]);
                        let message = decode_frame(&mut buf)
                            .expect("valid frame")
                            .expect("complete frame");
                        if self.hold_kinds.contains(message.kind()) {
                            frames.push_front((frame, bytes));
                            let mut state = self.nodes[from].host.0.lock();
                            let queue = state.outbox.entry(to_member).or_default();
                            while let Some(held) = frames.pop_back() {
                                queue.push_front(held);
                            }
                            break;
                        }
                        any = true;
                        delivered += 1;
                        last = frame;
                        self.log.push((from, to, message.kind()));
                        if self.drop_kinds.contains(message.kind()) {
                            continue;
                        }
                        let from_member = self.nodes[from].member;
                        self.nodes[to]
                            .engine
                            .handle_message(from_member, message, self.now_ms);
                        let reset = self.nodes[to].host.take_resets();
                        if reset.contains(&from_member) {
                            // The receiver reset the link: the rest is lost, nothing acknowledged.
                            self.link_down(from, to);
                            last = 0;
                            break;
                        }
                    }
                    if last > 0 {
                        let to_self = self.nodes[to].member;
                        self.nodes[from].engine.handle_ack(to_self, last);
                    }
                }
            }
            if !any {
                return delivered;
            }
        }
        panic!("messages never stop flowing");
    }

    /// Advances the clock in 10 ms steps, ticking every engine and delivering.
    pub fn run(&mut self, duration_ms: u64) {
        let end = self.now_ms + duration_ms;
        while self.now_ms < end {
            self.now_ms += 10;
            for node in &self.nodes {
                node.engine.handle_membership_alive(self.now_ms);
                node.engine.handle_tick(self.now_ms);
            }
            self.deliver();
        }
    }

    /// Like `run`, but only the listed nodes are alive (the others are stopped).
    pub fn run_only(&mut self, alive: &[usize], duration_ms: u64) {
        let end = self.now_ms + duration_ms;
        while self.now_ms < end {
            self.now_ms += 10;
            for &index in alive {
                self.nodes[index]
                    .engine
                    .handle_membership_alive(self.now_ms);
                self.nodes[index].engine.handle_tick(self.now_ms);
            }
            self.deliver();
        }
    }

    /// Executes `op` on `node` the way the node's relay would: locally, or forwarded to the
    /// primary, waiting for acknowledgements. Panics if it cannot complete.
    pub fn op(&mut self, node: usize, partition: u32, op: Op) -> Reply {
        for _attempt in 0..50 {
            let execution = self.nodes[node]
                .engine
                .execute(partition, 0, op.clone(), self.now_ms);
            match execution {
                Execution::Done(reply) => return reply,
                Execution::AwaitAcks { reply, waits } => {
                    self.deliver();
                    for (member, frame) in waits.iter() {
                        let acked = self.nodes[node].host.acked(*member);
                        assert!(acked >= *frame, "wait for {member} frame {frame} not over");
                    }
                    return reply;
                }
                Execution::Forward(primary) => {
                    let target = self.index_of(primary).expect("forward to a known node");
                    return self.op(target, partition, op);
                }
                Execution::Wait { .. } => self.run(10),
            }
        }
        panic!("operation on partition {partition} never completed");
    }

    pub fn set(&mut self, node: usize, key: &str, value: &str) -> Reply {
        let partition = store::partition_of(key.as_bytes(), PARTITIONS);
        self.op(node, partition, set_op(key, value))
    }

    pub fn get(&mut self, node: usize, key: &str) -> Reply {
        let partition = store::partition_of(key.as_bytes(), PARTITIONS);
        self.op(
            node,
            partition,
            Op::Get {
                key: Bytes::copy_from_slice(key.as_bytes()),
            },
        )
    }

    /// The value `node`'s store holds for `key` (white box, no engine involved).
    pub fn stored(&self, node: usize, key: &str) -> Option<Bytes> {
        let partition = store::partition_of(key.as_bytes(), PARTITIONS);
        let reply = self.nodes[node].store.partition(partition).execute(
            0,
            Op::Get {
                key: Bytes::copy_from_slice(key.as_bytes()),
            },
            self.now_ms,
        );
        match reply.reply {
            Reply::Bulk(value) => Some(value),
            _ => None,
        }
    }

    /// Checks every partition has the same record everywhere among `nodes`, with its primary
    /// on the target primary and `backups` synced target backups; panics otherwise.
    pub fn assert_balanced(&self, nodes: &[usize], backups: usize) {
        let view: Vec<ViewMember> = nodes
            .iter()
            .map(|&index| ViewMember {
                member: self.nodes[index].member,
                name: self.nodes[index].name.clone(),
                leaving: false,
            })
            .collect();
        for partition in 0..PARTITIONS {
            let records: Vec<_> = nodes
                .iter()
                .map(|&index| self.nodes[index].engine.record(partition))
                .collect();
            let record = records[0].clone().expect("every partition has a record");
            assert!(
                records.iter().all(|other| other.as_ref() == Some(&record)),
                "partition {partition}: tables differ: {records:?}"
            );
            let targets = cluster::table::target_owners(partition, &view, backups);
            assert_eq!(record.primary, targets[0], "partition {partition}");
            let mut expected_backups = targets[1..].to_vec();
            expected_backups.sort();
            let mut actual = record.backups.clone();
            actual.sort();
            assert_eq!(actual, expected_backups, "partition {partition} backups");
        }
    }
}

pub fn set_op(key: &str, value: &str) -> Op {
    expiring_set_op(key, value, SetExpiry::Never)
}

/// `SET key value` with `expiry`.
pub fn expiring_set_op(key: &str, value: &str, expiry: SetExpiry) -> Op {
    Op::Set {
        key: Bytes::copy_from_slice(key.as_bytes()),
        value: Bytes::copy_from_slice(value.as_bytes()),
        expiry,
        condition: SetCondition::Always,
        return_old: false,
        flags: 0,
    }
}

/// Keys spread over every partition.
pub fn keys(count: usize) -> Vec<String> {
    (0..count).map(|index| format!("session:{index}")).collect()
}

/// The first key `salt:N` that maps to `partition`.
pub fn key_in(partition: u32, salt: &str) -> String {
    (0..)
        .map(|index| format!("{salt}:{index}"))
        .find(|key| store::partition_of(key.as_bytes(), PARTITIONS) == partition)
        .expect("some key maps to every partition")
}
