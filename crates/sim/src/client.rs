//! Simulated clients: each attached to a node, issuing one operation at a time through
//! `Engine::execute` and following `Forward`/`Wait`/`AwaitAcks` as the node's relay does
//! (relaying `Request`s over the simulated links, retrying on `NotPrimary`, bounded by 8 retries
//! and a 5 s deadline). Every outcome updates the model of what is acknowledged.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;
use cluster::engine::Execution;
use cluster::table::Member;
use cluster::wire::RelayResult;
use store::{CounterDirection, CounterInitial, Op, Reply, SetCondition, SetExpiry};

use crate::world::{Sim, Status};

/// Relay retries before a client gives up (PROTOCOL.md §14).
pub(crate) const RELAY_RETRIES_MAX: u32 = 8;
/// Relay deadline (PROTOCOL.md §14).
pub(crate) const RELAY_DEADLINE_MS: u64 = 5_000;

/// What a key is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KeyKind {
    /// A string only its owner writes (SET, DEL) and reads.
    Owned,
    /// A counter only its owner increments.
    Counter,
    /// A string every client SETs (splits make both sides write it).
    Shared,
    /// A lock key: lock clients take its lock and write it guarded by their token (the lock
    /// checks in `locks` follow it, not the model).
    Locked,
}

/// A key's state as a client sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum State {
    Absent,
    Value(Bytes),
}

/// What is known about one key.
#[derive(Clone, Debug)]
pub(crate) struct KeyModel {
    pub(crate) key: Bytes,
    pub(crate) partition: u32,
    pub(crate) kind: KeyKind,
    /// Owned: the state after the last acknowledged write.
    pub(crate) acked: State,
    /// Owned: the version clock of that write, when its reply carried one (SET's CAS).
    pub(crate) acked_hlc: Option<u64>,
    /// Owned: states of writes whose outcome is unknown (they may take effect, even late), with
    /// when they ended.
    pub(crate) unknown: Vec<(State, u64)>,
    /// Counter: the highest acknowledged value.
    pub(crate) counter_acked: i64,
    /// Counter: increments that may have been applied (acknowledged, unknown, and retries of
    /// attempts that may have executed: the relay retries at least once).
    pub(crate) counter_issued: i64,
    /// Counter: the version clock of the last acknowledged increment.
    pub(crate) counter_acked_hlc: u64,
    /// Shared: the highest acknowledged version clock.
    pub(crate) shared_acked_hlc: u64,
}

impl KeyModel {
    /// A key nobody has written yet.
    pub(crate) fn new(key: Bytes, num_partitions: u32, kind: KeyKind) -> KeyModel {
        KeyModel {
            partition: store::partition_of(&key, num_partitions),
            key,
            kind,
            acked: State::Absent,
            acked_hlc: None,
            unknown: Vec::new(),
            counter_acked: 0,
            counter_issued: 0,
            counter_acked_hlc: 0,
            shared_acked_hlc: 0,
        }
    }

    /// The states a read may return now.
    pub(crate) fn allows(&self, state: &State) -> bool {
        *state == self.acked || self.unknown.iter().any(|(unknown, _)| unknown == state)
    }
}

/// Every key the clients use.
#[derive(Debug, Default)]
pub(crate) struct Model {
    pub(crate) keys: Vec<KeyModel>,
}

/// What an in-flight operation does.
#[derive(Clone, Debug)]
pub(crate) enum OpKind {
    Set(Bytes),
    Get,
    Delete,
    Increment,
    SharedSet,
    /// `era`: the network era when the client asked (see `locks::Lineage`).
    LockAcquire {
        lock_key: usize,
        lease_ms: u64,
        era: u64,
    },
    /// `hold`: the index of the hold whose token guards the write; `era` as for `LockAcquire`.
    GuardedSet {
        lock_key: usize,
        hold: usize,
        value: Bytes,
        era: u64,
    },
    LockRelease {
        lock_key: usize,
        hold: usize,
    },
    LockRenew {
        lock_key: usize,
        hold: usize,
        lease_ms: u64,
    },
}

impl OpKind {
    fn is_lock_op(&self) -> bool {
        matches!(
            self,
            OpKind::LockAcquire { .. }
                | OpKind::GuardedSet { .. }
                | OpKind::LockRelease { .. }
                | OpKind::LockRenew { .. }
        )
    }
}

#[derive(Clone, Debug)]
enum Phase {
    /// Try (again) now.
    Ready,
    /// Retry at this time, or when the partition changes.
    Waiting { until_ms: u64 },
    /// Executed on the client's node; the reply waits for these acknowledgements.
    AwaitAcks {
        reply: Reply,
        waits: Vec<(Member, u64)>,
    },
    /// Relayed to `to` as request `id`; the response comes back to the client's node.
    Relayed { to: Member, id: u64 },
}

#[derive(Clone, Debug)]
struct Flight {
    key: usize,
    op: Op,
    kind: OpKind,
    started_ms: u64,
    attempts: u32,
    /// An earlier attempt may have executed (a relay lost with its link).
    earlier_maybe_executed: bool,
    /// The current attempt may have executed.
    maybe_executed: bool,
    phase: Phase,
    probe: bool,
    /// The client's node went away: the operation ended with its connection.
    connection_lost: bool,
    /// Attempts that may have executed (executed here, or relayed).
    executions: u32,
}

/// One simulated client.
#[derive(Debug)]
pub(crate) struct Client {
    pub(crate) node: usize,
    owned: Vec<usize>,
    counters: Vec<usize>,
    shared: Vec<usize>,
    flight: Option<Flight>,
    pub(crate) next_op_ms: u64,
    sequence: u64,
    /// A lock client (`locks`) instead of a data client.
    pub(crate) lock: Option<crate::locks::LockClient>,
    /// Keys to read for `AssertServed`.
    pub(crate) probes: VecDeque<usize>,
    /// Probe reads that failed (gave up), for the report.
    pub(crate) probe_failures: Vec<String>,
}

impl Client {
    /// A client of node `node` owning no keys (a lock client brings `lock`).
    pub(crate) fn new(node: usize, lock: Option<crate::locks::LockClient>, now_ms: u64) -> Client {
        Client {
            node,
            owned: Vec::new(),
            counters: Vec::new(),
            shared: Vec::new(),
            flight: None,
            next_op_ms: now_ms,
            sequence: 0,
            lock,
            probes: VecDeque::new(),
            probe_failures: Vec::new(),
        }
    }

    /// Whether it has a regular (not probe) operation in flight.
    pub(crate) fn has_op(&self) -> bool {
        self.flight.as_ref().is_some_and(|flight| !flight.probe)
    }
}

impl Sim {
    /// Creates the configured clients (once nodes exist), with their keys.
    pub(crate) fn ensure_clients(&mut self) {
        if !self.clients.is_empty() || (self.config.clients == 0 && self.config.lock_clients == 0) {
            return;
        }
        let running = self.running_nodes();
        if running.is_empty() {
            return;
        }
        let partitions = self.config.num_partitions;
        let add_key = |model: &mut crate::client::Model, key: String, kind: KeyKind| {
            model
                .keys
                .push(KeyModel::new(Bytes::from(key), partitions, kind));
            model.keys.len() - 1
        };
        let shared: Vec<usize> = (0..self.config.shared_keys)
            .map(|index| add_key(&mut self.model, format!("shared:{index}"), KeyKind::Shared))
            .collect();
        for client in 0..self.config.clients {
            let owned = (0..self.config.keys_per_client)
                .map(|index| {
                    add_key(
                        &mut self.model,
                        format!("session:{client}:{index}"),
                        KeyKind::Owned,
                    )
                })
                .collect();
            let counters = (0..self.config.counters_per_client)
                .map(|index| {
                    add_key(
                        &mut self.model,
                        format!("counter:{client}:{index}"),
                        KeyKind::Counter,
                    )
                })
                .collect();
            let node = *self.rng.pick(&running).unwrap_or(&0);
            self.clients.push(Client {
                node,
                owned,
                counters,
                shared: shared.clone(),
                flight: None,
                next_op_ms: self.now_ms,
                sequence: 0,
                lock: None,
                probes: VecDeque::new(),
                probe_failures: Vec::new(),
            });
            let at_ms = self.now_ms + self.rng.up_to(10);
            self.schedule_client(client, at_ms);
        }
        self.add_lock_clients();
    }

    /// Node `index` is gone: its clients' connections break, so their operations end (outcome
    /// unknown when they may have executed), and the clients reconnect elsewhere.
    pub(crate) fn detach_clients(&mut self, index: usize) {
        for client in 0..self.clients.len() {
            if self.clients[client].node != index {
                continue;
            }
            if let Some(mut flight) = self.clients[client].flight.take() {
                flight.connection_lost = true;
                self.clients[client].flight = Some(flight);
                self.end_flight(client, None);
            }
            self.reattach(client);
        }
    }

    fn reattach(&mut self, client: usize) {
        let running = self.running_nodes();
        if let Some(&node) = self.rng.pick(&running) {
            self.clients[client].node = node;
        }
    }

    /// Partitions of node `index` changed: its clients waiting on them retry now.
    pub(crate) fn partitions_changed(&mut self, index: usize, changed: &BTreeSet<u32>) {
        for client in 0..self.clients.len() {
            if self.clients[client].node != index {
                continue;
            }
            let Some(flight) = &mut self.clients[client].flight else {
                continue;
            };
            let partition = self.model.keys[flight.key].partition;
            if matches!(flight.phase, Phase::Waiting { .. }) && changed.contains(&partition) {
                flight.phase = Phase::Ready;
                let now_ms = self.now_ms;
                self.schedule_client(client, now_ms);
            }
        }
    }

    /// The link from `index` to `peer` went down: relayed requests on it are lost (they may have
    /// executed) and retried.
    pub(crate) fn relay_link_down(&mut self, index: usize, peer: Member) {
        let lost: Vec<(usize, u64)> = self
            .relays
            .iter()
            .filter(|((node, _), client)| {
                *node == index
                    && self.clients[**client].flight.as_ref().is_some_and(
                        |flight| matches!(flight.phase, Phase::Relayed { to, .. } if to == peer),
                    )
            })
            .map(|(key, _)| *key)
            .collect();
        for key in lost {
            if let Some(client) = self.relays.remove(&key)
                && let Some(flight) = &mut self.clients[client].flight
            {
                flight.earlier_maybe_executed |= flight.maybe_executed;
                flight.maybe_executed = false;
                flight.phase = Phase::Waiting {
                    until_ms: self.now_ms + 5,
                };
                let at_ms = self.now_ms + 5;
                self.schedule_client(client, at_ms);
            }
        }
    }

    pub(crate) fn client_tick(&mut self, client: usize) {
        if self.failure.is_some() {
            return;
        }
        let node = self.clients[client].node;
        if !self.nodes[node].is_up() {
            self.reattach(client);
            let at_ms = self.now_ms + 20;
            self.schedule_client(client, at_ms);
            return;
        }
        let now_ms = self.now_ms;
        let Some(flight) = self.clients[client].flight.clone() else {
            if now_ms < self.clients[client].next_op_ms {
                let at_ms = self.clients[client].next_op_ms;
                self.schedule_client(client, at_ms);
                return;
            }
            if self.nodes[node].status == Status::Paused {
                // A client of a stopped server waits with it.
                self.schedule_client(client, now_ms + 10);
                return;
            }
            if self.start_op(client) {
                self.attempt(client);
            } else {
                self.schedule_client(client, now_ms + 50);
            }
            return;
        };
        if now_ms.saturating_sub(flight.started_ms) > RELAY_DEADLINE_MS {
            self.end_flight(client, None);
            self.schedule_client(client, now_ms + 1);
            return;
        }
        if self.nodes[node].status == Status::Paused {
            self.schedule_client(client, now_ms + 10);
            return;
        }
        match flight.phase {
            Phase::Ready => self.attempt(client),
            Phase::Waiting { until_ms } => {
                if now_ms >= until_ms {
                    self.attempt(client);
                } else {
                    self.schedule_client(client, until_ms);
                }
            }
            Phase::AwaitAcks { reply, waits } => {
                let host = &self.nodes[node].host;
                if waits
                    .iter()
                    .all(|(member, frame)| host.is_acked(*member, *frame))
                {
                    self.end_flight(client, Some(reply));
                } else {
                    self.schedule_client(client, now_ms + 1);
                }
            }
            Phase::Relayed { .. } => self.schedule_client(client, now_ms + 10),
        }
    }

    /// Picks the client's next operation. Returns false when it has nothing to do.
    fn start_op(&mut self, client: usize) -> bool {
        let now_ms = self.now_ms;
        if let Some(key) = self.clients[client].probes.pop_front() {
            // Each probe reads through a random running node.
            self.reattach(client);
            let op = Op::Get {
                key: self.model.keys[key].key.clone(),
            };
            self.clients[client].flight = Some(new_flight(key, op, OpKind::Get, now_ms, true));
            return true;
        }
        if self.probing() || self.quiesce {
            return false;
        }
        if self.clients[client].lock.is_some() {
            let Some((key, op, kind)) = self.start_lock_op(client) else {
                return false;
            };
            self.clients[client].flight = Some(new_flight(key, op, kind, now_ms, false));
            return true;
        }
        self.clients[client].sequence += 1;
        let value = Bytes::from(format!("c{client}-{}", self.clients[client].sequence));
        let roll = self.rng.up_to(99);
        let (key, op, kind) = if roll < 15 && !self.clients[client].shared.is_empty() {
            let key = *self.rng.pick(&self.clients[client].shared).unwrap_or(&0);
            (
                key,
                set_op(&self.model.keys[key].key, &value),
                OpKind::SharedSet,
            )
        } else if roll < 35 && !self.clients[client].counters.is_empty() {
            let key = *self.rng.pick(&self.clients[client].counters).unwrap_or(&0);
            self.model.keys[key].counter_issued += 1;
            // memcached incr, creating the counter at 1: its reply carries the version (CAS).
            let op = Op::Counter {
                key: self.model.keys[key].key.clone(),
                delta: 1,
                direction: CounterDirection::Increment,
                cas_opt: None,
                initial_opt: Some(CounterInitial {
                    value: 1,
                    expire_at_ms: 0,
                }),
            };
            (key, op, OpKind::Increment)
        } else if !self.clients[client].owned.is_empty() {
            let key = *self.rng.pick(&self.clients[client].owned).unwrap_or(&0);
            let name = self.model.keys[key].key.clone();
            let roll = self.rng.up_to(99);
            if roll < 50 {
                (key, set_op(&name, &value), OpKind::Set(value))
            } else if roll < 85 {
                (key, Op::Get { key: name }, OpKind::Get)
            } else {
                (
                    key,
                    Op::Delete {
                        key: name,
                        cas_opt: None,
                    },
                    OpKind::Delete,
                )
            }
        } else {
            return false;
        };
        self.clients[client].flight = Some(new_flight(key, op, kind, now_ms, false));
        true
    }

    fn attempt(&mut self, client: usize) {
        let node = self.clients[client].node;
        let now_ms = self.now_ms;
        let Some(flight) = self.clients[client].flight.clone() else {
            return;
        };
        let partition = self.model.keys[flight.key].partition;
        self.nodes[node].host.set_now(now_ms);
        let execution = self.nodes[node]
            .engine
            .execute(partition, 0, flight.op.clone(), now_ms);
        self.flush(node);
        if matches!(
            execution,
            Execution::Done(_) | Execution::AwaitAcks { .. } | Execution::Forward(_)
        ) {
            self.count_execution(client);
        }
        if self.config.trace {
            let key = String::from_utf8_lossy(&self.model.keys[flight.key].key).into_owned();
            if std::env::var("SIM_TRACE_KEY").is_ok_and(|traced| traced == key) {
                let name = self.nodes[node].name.clone();
                self.trace(|| {
                    format!(
                        "client {client} on {name}: {:?} {key} → {execution:?}",
                        flight.kind
                    )
                });
            }
        }
        match execution {
            Execution::Done(reply) => self.end_flight(client, Some(reply)),
            Execution::AwaitAcks { reply, waits } => {
                if let Some(flight) = &mut self.clients[client].flight {
                    flight.maybe_executed = true;
                    flight.phase = Phase::AwaitAcks {
                        reply,
                        waits: waits.iter().copied().collect(),
                    };
                }
                self.schedule_client(client, now_ms + 1);
            }
            Execution::Forward(primary) => {
                // A link failure waits for the table to change; only answers count as retries
                // (PROTOCOL.md §12), the deadline bounds the rest.
                match self.send_request(node, primary, partition, flight.op.clone()) {
                    Some(id) => {
                        self.relays.insert((node, id), client);
                        if let Some(flight) = &mut self.clients[client].flight {
                            flight.maybe_executed = true;
                            flight.phase = Phase::Relayed { to: primary, id };
                        }
                        self.schedule_client(client, now_ms + 10);
                    }
                    None => self.wait(client, 10),
                }
            }
            Execution::Wait { .. } => self.wait(client, 20),
        }
    }

    /// An attempt that may execute: a retry of an increment may apply it once more.
    fn count_execution(&mut self, client: usize) {
        let Some(flight) = &mut self.clients[client].flight else {
            return;
        };
        flight.executions += 1;
        if flight.executions > 1 && matches!(flight.kind, OpKind::Increment) {
            self.model.keys[flight.key].counter_issued += 1;
        }
    }

    fn wait(&mut self, client: usize, delay_ms: u64) {
        let until_ms = self.now_ms + delay_ms;
        if let Some(flight) = &mut self.clients[client].flight {
            flight.phase = Phase::Waiting { until_ms };
        }
        self.schedule_client(client, until_ms);
    }

    /// Counts a relay answer that was not a reply; gives up (returns false) past the bound.
    fn count_retry(&mut self, client: usize) -> bool {
        let Some(flight) = &mut self.clients[client].flight else {
            return false;
        };
        flight.attempts += 1;
        if flight.attempts > RELAY_RETRIES_MAX {
            self.end_flight(client, None);
            let at_ms = self.now_ms + 1;
            self.schedule_client(client, at_ms);
            return false;
        }
        true
    }

    pub(crate) fn client_response(
        &mut self,
        client: usize,
        node: usize,
        id: u64,
        result: RelayResult,
    ) {
        let Some(flight) = &mut self.clients[client].flight else {
            return;
        };
        if !matches!(flight.phase, Phase::Relayed { id: waiting, .. } if waiting == id) {
            // The answer to an attempt the client gave up on.
            return;
        }
        let partition = self.model.keys[flight.key].partition;
        match result {
            RelayResult::Reply(reply) => self.end_flight(client, Some(reply)),
            RelayResult::NotPrimary { record } => {
                // Not executed there.
                flight.maybe_executed = false;
                let held = self.nodes[node].engine.record(partition);
                self.trace(|| {
                    format!(
                        "client {client} on {}: NotPrimary for partition {partition}: {record:?}; node holds {held:?}",
                        self.nodes[node].name
                    )
                });
                if let Some(record) = record {
                    let now_ms = self.now_ms;
                    self.nodes[node].host.set_now(now_ms);
                    self.nodes[node]
                        .engine
                        .learn_record(partition, record, now_ms);
                    self.flush(node);
                }
                if self.count_retry(client) {
                    self.wait(client, 1);
                }
            }
            RelayResult::Unavailable { .. } => {
                flight.maybe_executed = false;
                if self.count_retry(client) {
                    self.wait(client, 20);
                }
            }
        }
    }

    /// Ends the client's operation with `reply` (acknowledged) or without (gave up).
    fn end_flight(&mut self, client: usize, reply: Option<Reply>) {
        let Some(flight) = self.clients[client].flight.take() else {
            return;
        };
        let now_ms = self.now_ms;
        let interval = self.config.op_interval_ms;
        let next_op_ms = now_ms + self.rng.between(interval.0, interval.1);
        self.clients[client].next_op_ms = next_op_ms;
        self.schedule_client(client, next_op_ms);
        match reply {
            Some(reply) => self.acknowledged(client, flight, reply),
            None => self.gave_up(client, flight),
        }
    }

    fn acknowledged(&mut self, client: usize, flight: Flight, reply: Reply) {
        self.stats.ops_completed += 1;
        if self.config.trace {
            let key = String::from_utf8_lossy(&self.model.keys[flight.key].key).into_owned();
            if std::env::var("SIM_TRACE_KEY").is_ok_and(|traced| traced == key) {
                let node = self.nodes[self.clients[client].node].name.clone();
                self.trace(|| {
                    format!(
                        "client {client} via {node}: {:?} {key} → {reply:?}",
                        flight.kind
                    )
                });
            }
        }
        if flight.kind.is_lock_op() {
            let retried = flight.earlier_maybe_executed;
            self.lock_acknowledged(client, &flight.kind, reply, flight.started_ms, retried);
            return;
        }
        let strict = self.window.reads_are_strict(&self.config);
        let model = &mut self.model.keys[flight.key];
        let name = format!(
            "{} (partition {})",
            String::from_utf8_lossy(&model.key),
            model.partition
        );
        match (&flight.kind, reply) {
            (OpKind::Set(value), Reply::Written { cas }) => {
                self.stats.writes_acked += 1;
                model.acked = State::Value(value.clone());
                model.acked_hlc = Some(cas);
            }
            (OpKind::SharedSet, Reply::Written { cas }) => {
                self.stats.writes_acked += 1;
                model.shared_acked_hlc = model.shared_acked_hlc.max(cas);
            }
            (OpKind::Delete, Reply::Integer(deleted)) => {
                // DEL of an absent key deletes nothing and leaves no tombstone: it is no write.
                let present_allowed = std::iter::once(&model.acked)
                    .chain(model.unknown.iter().map(|(state, _)| state))
                    .any(|state| matches!(state, State::Value(_)));
                let absent_allowed = model.allows(&State::Absent);
                // An earlier attempt lost with its link may have deleted it already (the relay
                // retries: at least once).
                let retried = flight.earlier_maybe_executed;
                if strict
                    && !retried
                    && ((deleted == 1 && !present_allowed) || (deleted == 0 && !absent_allowed))
                {
                    let detail = format!(
                        "DEL {name} (client {client}) answered {deleted}; acknowledged {:?}, unknown {:?}",
                        model.acked, model.unknown
                    );
                    self.fail("invariant 4: never a wrong answer", detail);
                    return;
                }
                if deleted == 1 {
                    self.stats.writes_acked += 1;
                    model.acked = State::Absent;
                    model.acked_hlc = None;
                } else if retried {
                    // 0 after a retry: an earlier attempt deleted it, or nothing happened (the
                    // retry found nothing where it ran): either may hold.
                    let now_ms = self.now_ms;
                    model.unknown.push((State::Absent, now_ms));
                }
            }
            (OpKind::Increment, Reply::Counter { value, cas }) => {
                self.stats.writes_acked += 1;
                let value = i64::try_from(value).unwrap_or(i64::MAX);
                model.counter_acked_hlc = model.counter_acked_hlc.max(cas);
                if strict && value <= model.counter_acked {
                    let previous = model.counter_acked;
                    self.fail(
                        "invariant 4: never a wrong answer",
                        format!("INCR {name} answered {value} after {previous} was acknowledged"),
                    );
                    return;
                }
                model.counter_acked = model.counter_acked.max(value);
            }
            (OpKind::Get, reply) => {
                let state = match reply {
                    Reply::Bulk(value) => State::Value(value),
                    Reply::Nil => State::Absent,
                    other => {
                        self.fail(
                            "invariant 4: never a wrong answer",
                            format!("GET {name} answered {other:?}"),
                        );
                        return;
                    }
                };
                match model.kind {
                    KeyKind::Owned if strict || flight.probe => {
                        self.stats.reads_checked += 1;
                        if !model.allows(&state) {
                            let detail = format!(
                                "GET {name} (client {client}) answered {state:?}; acknowledged {:?}, unknown {:?}",
                                model.acked, model.unknown
                            );
                            self.fail("invariant 4: never a wrong answer", detail);
                        }
                    }
                    KeyKind::Counter if strict || flight.probe => {
                        self.stats.reads_checked += 1;
                        let value = match &state {
                            State::Absent => 0,
                            State::Value(bytes) => std::str::from_utf8(bytes)
                                .ok()
                                .and_then(|text| text.parse::<i64>().ok())
                                .unwrap_or(-1),
                        };
                        if value < model.counter_acked || value > model.counter_issued {
                            let detail = format!(
                                "GET {name} answered {value}; acknowledged {}, issued {}",
                                model.counter_acked, model.counter_issued
                            );
                            self.fail("invariant 4: never a wrong answer", detail);
                        }
                    }
                    _ => {}
                }
            }
            (kind, reply) => {
                self.fail(
                    "client: a write is answered as written",
                    format!("{kind:?} on {name} answered {reply:?}"),
                );
            }
        }
    }

    fn gave_up(&mut self, client: usize, flight: Flight) {
        let now_ms = self.now_ms;
        if flight.kind.is_lock_op() {
            self.lock_gave_up(client, &flight.kind);
        }
        if flight.probe {
            let name = String::from_utf8_lossy(&self.model.keys[flight.key].key).into_owned();
            self.clients[client].probe_failures.push(name);
        }
        self.trace(|| {
            format!(
                "client {client} gives up on {:?} (partition {}) in phase {:?}",
                flight.kind, self.model.keys[flight.key].partition, flight.phase
            )
        });
        let unknown = flight.earlier_maybe_executed
            || flight.maybe_executed
            || matches!(
                flight.phase,
                Phase::AwaitAcks { .. } | Phase::Relayed { .. }
            );
        let model = &mut self.model.keys[flight.key];
        if unknown {
            self.stats.ops_unknown += 1;
            match &flight.kind {
                OpKind::Set(value) => model.unknown.push((State::Value(value.clone()), now_ms)),
                OpKind::Delete => model.unknown.push((State::Absent, now_ms)),
                _ => {}
            }
        } else if let OpKind::Increment = flight.kind {
            // Never executed: it does not count as issued.
            model.counter_issued -= 1;
        }
        let name = String::from_utf8_lossy(&model.key).into_owned();
        // Invariant 4: without a split or a pause, every operation completes in bounded time
        // (unless the client's own node went away with its connection).
        if flight.connection_lost {
            self.stats.connections_lost += 1;
        } else if self.window.partitions == 0 && self.window.pauses == 0 {
            self.fail(
                "invariant 4: every operation completes",
                format!(
                    "client {client} gave up on {:?} {name} after {} attempts and {} ms",
                    flight.kind,
                    flight.attempts,
                    now_ms.saturating_sub(flight.started_ms)
                ),
            );
        } else {
            self.stats.tryagain_excused += 1;
        }
    }

    /// Whether `AssertServed` probes are still queued or running.
    pub(crate) fn probing(&self) -> bool {
        self.clients.iter().any(|client| {
            !client.probes.is_empty() || client.flight.as_ref().is_some_and(|flight| flight.probe)
        })
    }

    /// Queues a read of every key, spread over the clients.
    pub(crate) fn queue_probes(&mut self) {
        let count = self.clients.len();
        if count == 0 {
            return;
        }
        for key in 0..self.model.keys.len() {
            let client = key % count;
            self.clients[client].probes.push_back(key);
        }
        for client in 0..count {
            let at_ms = self.now_ms;
            self.schedule_client(client, at_ms);
        }
    }

    /// Forgets unknown outcomes old enough that they can no longer take effect (a deferred
    /// request waits at most 5 s on its primary).
    pub(crate) fn prune_unknown(&mut self) {
        let horizon = self.now_ms.saturating_sub(2 * RELAY_DEADLINE_MS);
        for key in &mut self.model.keys {
            key.unknown.retain(|(_, ended_ms)| *ended_ms >= horizon);
        }
    }

    /// Per client, whether it is busy: for traces.
    pub(crate) fn busy_clients(&self) -> BTreeMap<usize, String> {
        self.clients
            .iter()
            .enumerate()
            .filter_map(|(index, client)| {
                client
                    .flight
                    .as_ref()
                    .map(|flight| (index, format!("{:?} {:?}", flight.kind, flight.phase)))
            })
            .collect()
    }
}

fn new_flight(key: usize, op: Op, kind: OpKind, now_ms: u64, probe: bool) -> Flight {
    Flight {
        key,
        op,
        kind,
        started_ms: now_ms,
        attempts: 0,
        earlier_maybe_executed: false,
        maybe_executed: false,
        phase: Phase::Ready,
        probe,
        connection_lost: false,
        executions: 0,
    }
}

fn set_op(key: &Bytes, value: &Bytes) -> Op {
    Op::Set {
        key: key.clone(),
        value: value.clone(),
        expiry: SetExpiry::Never,
        condition: SetCondition::Always,
        return_old: false,
        flags: 0,
    }
}
