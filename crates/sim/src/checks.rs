//! The invariants, checked while the simulation runs and whenever the cluster settles.
//!
//! - periodically: invariant 2 (no two nodes mutually in view and table-synced both accept
//!   writes for a partition), invariant 7 (queues and backlogs stay within their bounds) and, in
//!   delayed-write without faults, the replication lag bound;
//! - when a record is delivered (in `world`): a node that learned a higher record adopted it;
//! - at every settle point: every partition has `min(backups, live - 1)` synced backups on its
//!   targets and its primary on the target primary (that is what settling means), replicas hold
//!   the same data (invariant 5), and every key holds an acknowledged (or possibly-applied) state
//!   no older than the last acknowledged one (invariants 1 and 5), unless the faults since the
//!   last settle excuse a loss (more kills than backups, delayed-write, kills combined with other
//!   faults); a loss in delayed-write must be marked possibly stale (§9.2);
//! - on `AssertServed`: every key is read through a random node and must come back right.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use cluster::engine::WriteMode;
use cluster::table::{Member, ViewMember, target_owners};
use store::{Change, ExportCursor, Mutation, ValueImage};

use crate::client::{KeyKind, State};
use crate::world::{Sim, Status};

/// A partition's content: (db, key) → state.
type Content = BTreeMap<(u8, Bytes), Change>;

/// A partition's content at `now_ms`: an entry whose deadline passed is the tombstone of its
/// version, as it becomes when something touches it or the sweeper runs. A replica does that by
/// its own clock and without replicating anything, so it may have happened on one replica and not
/// yet on another (lock leases are the entries that expire here).
fn export_all(store: &store::Store, partition: u32, now_ms: u64) -> Content {
    let data = store.partition(partition);
    let mut cursor = ExportCursor::new();
    let mut content = Content::new();
    loop {
        let chunk: Vec<Mutation> = data.export_chunk(&mut cursor, 256);
        if chunk.is_empty() {
            break;
        }
        for mutation in chunk {
            let change = match mutation.change {
                Change::Put(image) if image.expire_at_ms != 0 && now_ms > image.expire_at_ms => {
                    Change::Delete {
                        version: image.version,
                    }
                }
                change => change,
            };
            content.insert((mutation.db, mutation.key), change);
        }
    }
    content
}

impl Sim {
    /// Invariant 2 and the bounds, every `check_interval_ms`.
    pub(crate) fn periodic_checks(&mut self) {
        if self.failure.is_some() {
            return;
        }
        let now_ms = self.now_ms;
        let running = self.running_nodes();
        for partition in 0..self.config.num_partitions {
            let accepting: Vec<usize> = running
                .iter()
                .copied()
                .filter(|&index| self.nodes[index].engine.accepting_writes(partition, now_ms))
                .collect();
            if accepting.len() < 2 {
                continue;
            }
            for (position, &a) in accepting.iter().enumerate() {
                for &b in &accepting[position + 1..] {
                    let (member_a, member_b) = (self.nodes[a].member, self.nodes[b].member);
                    let mutual = self.nodes[a]
                        .engine_view
                        .iter()
                        .any(|m| m.member == member_b)
                        && self.nodes[b]
                            .engine_view
                            .iter()
                            .any(|m| m.member == member_a);
                    let synced = self.nodes[a].engine.table_synced_with(member_b)
                        && self.nodes[b].engine.table_synced_with(member_a);
                    if mutual && synced {
                        let detail = format!(
                            "{} ({:?}) and {} ({:?}) both accept writes for partition {partition}; hosts: {} / {}",
                            self.nodes[a].name,
                            self.nodes[a].engine.record(partition),
                            self.nodes[b].name,
                            self.nodes[b].engine.record(partition),
                            self.nodes[a].host.describe(),
                            self.nodes[b].host.describe()
                        );
                        self.fail("invariant 2: one primary accepts writes", detail);
                        return;
                    }
                }
            }
        }
        self.check_lock_primaries();
        // The bounds are cheaper to check less often.
        if (now_ms / self.config.check_interval_ms).is_multiple_of(10) {
            self.check_bounds(&running);
        }
    }

    /// Invariant 7 (and the delayed-write lag bound when nothing is failing).
    fn check_bounds(&mut self, running: &[usize]) {
        let now_ms = self.now_ms;
        let quiet = self.window.kills == 0
            && self.window.partitions == 0
            && self.window.pauses == 0
            && self.window.link_resets == 0;
        for &index in running {
            let node = &self.nodes[index];
            let config = node.engine.config();
            let summary = node.engine.summary(now_ms);
            let deferred_max =
                config.deferred_per_partition_max as u64 * u64::from(config.num_partitions);
            let backlog_max = config.link_backlog_limit_bytes
                + 2 * config.snapshot_chunk_bytes
                + cluster::wire::FRAME_LEN_MAX / 8;
            let problem = if u64::from(summary.deferred_requests) > deferred_max {
                Some(format!("{} deferred requests", summary.deferred_requests))
            } else if summary.pending_replies as usize > config.pending_replies_max {
                Some(format!("{} pending replies", summary.pending_replies))
            } else if node.host.largest_backlog_bytes() > backlog_max {
                Some(format!(
                    "a link backlog reached {} bytes",
                    node.host.largest_backlog_bytes()
                ))
            } else if node.host.encode_failures() > 0 {
                Some("a message could not be encoded".to_string())
            } else {
                None
            };
            if let Some(problem) = problem {
                let detail = format!("{}: {problem}", node.name);
                self.fail("invariant 7: bounds hold", detail);
                return;
            }
            if quiet && self.config.write_mode == WriteMode::Delayed {
                let lag_max_ms = self.config.max_lag_ms + 200;
                if let Some((peer, lag_ms)) =
                    summary.lag_ms.iter().find(|(_, lag)| **lag > lag_max_ms)
                {
                    let detail = format!(
                        "{}: replication lag to {peer} is {lag_ms} ms (bound {} ms)",
                        node.name, self.config.max_lag_ms
                    );
                    self.fail("invariant 6: delayed-write lag stays bounded", detail);
                    return;
                }
            }
        }
    }

    /// Why the cluster has not settled, or `Ok` when it has: every running node sees the same
    /// view, holds the same table with every partition on its targets, fully replicated, and
    /// has nothing in progress.
    pub(crate) fn settled(&self) -> Result<(), String> {
        if let Some(node) = self.nodes.iter().find(|node| node.status == Status::Paused) {
            return Err(format!("{} is paused", node.name));
        }
        let running = self.running_nodes();
        let Some(&first) = running.first() else {
            return Ok(());
        };
        if let Some(&index) = running.iter().find(|&&index| self.nodes[index].leaving) {
            return Err(format!("{} is still leaving", self.nodes[index].name));
        }
        let live: BTreeSet<Member> = running
            .iter()
            .map(|&index| self.nodes[index].member)
            .collect();
        let now_ms = self.now_ms;
        for &index in &running {
            let node = &self.nodes[index];
            let view: BTreeSet<Member> = node.engine.view().into_iter().map(|m| m.member).collect();
            if view != live {
                return Err(format!(
                    "{} sees {} members of {}",
                    node.name,
                    view.len(),
                    live.len()
                ));
            }
            let summary = node.engine.summary(now_ms);
            if !summary.gate_open
                || summary.handoffs_in_progress > 0
                || summary.snapshots_in_progress > 0
                || summary.snapshots_receiving > 0
                || summary.merges_in_progress > 0
                || summary.deferred_requests > 0
                || summary.to_move > 0
            {
                return Err(format!("{} is busy: {summary:?}", node.name));
            }
            if node.engine.table_digest() != self.nodes[first].engine.table_digest() {
                return Err(format!("{} holds another table", node.name));
            }
        }
        let view: Vec<ViewMember> = running
            .iter()
            .map(|&index| ViewMember {
                member: self.nodes[index].member,
                name: self.nodes[index].name.clone(),
                leaving: false,
            })
            .collect();
        let engine = &self.nodes[first].engine;
        for partition in 0..self.config.num_partitions {
            let Some(record) = engine.record(partition) else {
                return Err(format!("partition {partition} has no record"));
            };
            let targets = target_owners(partition, &view, self.config.backups);
            if !record.has_owners(&targets) {
                return Err(format!(
                    "partition {partition} has primary {:?} and backups {:?}, targets {targets:?}",
                    record.primary, record.backups
                ));
            }
        }
        Ok(())
    }

    /// Runs until the cluster settles (then checks it) or the timeout passes (a failure).
    pub(crate) fn assert_converged(&mut self) {
        let deadline = self.now_ms + self.config.settle_timeout_ms;
        loop {
            if self.failure.is_some() {
                return;
            }
            if let Err(reason) = self.settled() {
                if self.now_ms >= deadline {
                    let detail = format!(
                        "not settled after {} ms: {reason}; busy clients {:?}",
                        self.config.settle_timeout_ms,
                        self.busy_clients()
                    );
                    self.fail("settle: the cluster converges", detail);
                    return;
                }
                self.run_for(50);
                continue;
            }
            // Quiet: no new operations, every operation and frame finished, then still settled.
            self.quiesce = true;
            while (self.clients.iter().any(|client| client.has_op()) || self.links_busy())
                && self.failure.is_none()
                && self.now_ms < deadline
            {
                self.run_for(5);
            }
            let quiet = !self.clients.iter().any(|client| client.has_op()) && !self.links_busy();
            let outcome = self.settled();
            self.quiesce = false;
            let now_ms = self.now_ms;
            for client in 0..self.clients.len() {
                self.schedule_client(client, now_ms);
            }
            match outcome {
                Ok(()) if quiet => {
                    // Checked while still quiet: the clients start again at the next event.
                    self.settle_checks();
                    return;
                }
                Ok(()) | Err(_) if self.now_ms < deadline => {
                    // Quieting down moved something; settle again.
                    continue;
                }
                Ok(()) | Err(_) => {
                    let detail = format!(
                        "never quiet and settled before the timeout: {outcome:?}; busy clients {:?}",
                        self.busy_clients()
                    );
                    self.fail("settle: the cluster converges", detail);
                    return;
                }
            }
        }
    }

    /// The checks that hold whenever the cluster has settled.
    fn settle_checks(&mut self) {
        self.stats.settles += 1;
        let running = self.running_nodes();
        let Some(&first) = running.first() else {
            return;
        };
        let mut primary_content: Vec<Content> = Vec::new();
        for partition in 0..self.config.num_partitions {
            let Some(record) = self.nodes[first].engine.record(partition) else {
                primary_content.push(Content::new());
                continue;
            };
            let Some(primary) = self.index_of_member(record.primary) else {
                primary_content.push(Content::new());
                continue;
            };
            let content = export_all(&self.nodes[primary].store, partition, self.now_ms);
            for backup in &record.backups {
                let Some(index) = self.index_of_member(*backup) else {
                    continue;
                };
                let replica = export_all(&self.nodes[index].store, partition, self.now_ms);
                if replica != content {
                    let differing: Vec<String> = content
                        .iter()
                        .filter(|(key, change)| replica.get(*key) != Some(*change))
                        .chain(
                            replica
                                .iter()
                                .filter(|(key, _)| !content.contains_key(*key)),
                        )
                        .take(3)
                        .map(|((db, key), _)| {
                            let entry = |content: &Content| {
                                content.get(&(*db, key.clone())).map(|change| match change {
                                    Change::Put(image) => {
                                        format!(
                                            "{:?} expiring at {}",
                                            image.version, image.expire_at_ms
                                        )
                                    }
                                    Change::Delete { version } => format!("tombstone {version:?}"),
                                })
                            };
                            format!(
                                "db {db} {}: primary {:?} backup {:?}",
                                String::from_utf8_lossy(key),
                                entry(&content),
                                entry(&replica)
                            )
                        })
                        .collect();
                    let detail = format!(
                        "partition {partition}: {} and {} differ ({} vs {} entries): {differing:?}",
                        self.nodes[primary].name,
                        self.nodes[index].name,
                        content.len(),
                        replica.len()
                    );
                    self.fail("invariant 5: replicas hold the same versions", detail);
                    return;
                }
            }
            primary_content.push(content);
        }
        self.check_model(&primary_content, first);
        self.close_lock_window();
        // The window starts with the replication the cluster has now; nodes that join later add
        // copies only once they have them (the next settle).
        let eligible = self
            .running_nodes()
            .into_iter()
            .filter(|&node| !self.nodes[node].leaving)
            .count();
        self.window = crate::world::Window {
            fewest_eligible: Some(eligible),
            ..crate::world::Window::default()
        };
        self.prune_unknown();
    }

    /// Invariants 1 and 5 on every key the clients used.
    fn check_model(&mut self, content: &[Content], observer: usize) {
        let excused = self.window.excuses_loss(&self.config);
        // In delayed-write with no more kills than backups and no other fault, a loss can only
        // come from the lag, and must be marked possibly stale.
        let only_lag = self.config.write_mode == WriteMode::Delayed
            && self.window.kills <= self.config.backups
            && self.window.partitions == 0
            && self.window.pauses == 0
            && self.window.link_resets == 0;
        let split = self.window.partitions > 0 || self.window.pauses > 0;
        for index in 0..self.model.keys.len() {
            let model = &self.model.keys[index];
            let name = String::from_utf8_lossy(&model.key).into_owned();
            let held = content[model.partition as usize].get(&(0, model.key.clone()));
            let (state, version_hlc) = match held {
                Some(Change::Put(image)) => match &image.value {
                    ValueImage::String(bytes) => (State::Value(bytes.clone()), image.version.hlc),
                    ValueImage::Hash(_) => (
                        State::Value(Bytes::from_static(b"<hash>")),
                        image.version.hlc,
                    ),
                },
                Some(Change::Delete { version }) => (State::Absent, version.hlc),
                None => (State::Absent, 0),
            };
            let mut adopt_held = false;
            let problem = match model.kind {
                KeyKind::Owned => {
                    let rolled_back = model.acked_hlc.is_some_and(|acked| version_hlc < acked)
                        && !model.unknown.iter().any(|(unknown, _)| *unknown == state);
                    if !model.allows(&state) {
                        Some(format!(
                            "{name} holds {state:?} (version {version_hlc}); acknowledged {:?}, unknown {:?}",
                            model.acked, model.unknown
                        ))
                    } else if rolled_back {
                        Some(format!(
                            "{name} holds version {version_hlc}, older than the acknowledged {:?}",
                            model.acked_hlc
                        ))
                    } else {
                        // A held state other than the acknowledged one is explained by an
                        // operation whose outcome is unknown (a DEL retried after its link
                        // died, say): it is what reads must return from now on. Kept as
                        // acknowledged once the unknown outcome was pruned (after this check),
                        // a later read of the held state looked wrong (sim seed 703628: a DEL
                        // answered 0 where an earlier one's retry had left `Absent` possible,
                        // and a double kill took the newer SET).
                        adopt_held = state != model.acked;
                        None
                    }
                }
                KeyKind::Counter => {
                    let value = match &state {
                        State::Absent => 0,
                        State::Value(bytes) => std::str::from_utf8(bytes)
                            .ok()
                            .and_then(|text| text.parse::<i64>().ok())
                            .unwrap_or(-1),
                    };
                    if version_hlc < model.counter_acked_hlc {
                        Some(format!(
                            "{name} holds version {version_hlc}, older than the acknowledged {}",
                            model.counter_acked_hlc
                        ))
                    } else if value < model.counter_acked || value > model.counter_issued {
                        let detail = format!(
                            "{name} holds {value}; acknowledged {}, issued {}",
                            model.counter_acked, model.counter_issued
                        );
                        if split {
                            // Both sides of a split serve; a side that held no copy claimed the
                            // partition empty, and its increments (newer versions) win the
                            // merge: read-modify-write values regress across a split by design
                            // (last writer wins), versions do not.
                            self.stats.counter_regressions_after_split += 1;
                            self.trace(|| format!("counter reset by a split: {detail}"));
                            let model = &mut self.model.keys[index];
                            model.counter_acked = value;
                            model.counter_issued = model.counter_issued.max(value);
                            None
                        } else {
                            Some(detail)
                        }
                    } else {
                        None
                    }
                }
                // The lock checks follow these (`locks`).
                KeyKind::Locked => None,
                KeyKind::Shared => (version_hlc < model.shared_acked_hlc).then(|| {
                    format!(
                        "{name} holds version {version_hlc}, older than the acknowledged {}",
                        model.shared_acked_hlc
                    )
                }),
            };
            if adopt_held {
                let model = &mut self.model.keys[index];
                model.acked = state;
                model.acked_hlc = (version_hlc > 0).then_some(version_hlc);
                continue;
            }
            let Some(problem) = problem else {
                continue;
            };
            let problem = format!("{problem} (partition {})", self.model.keys[index].partition);
            if !excused {
                self.fail("invariant 1: acknowledged writes survive", problem);
                return;
            }
            self.stats.losses_excused += 1;
            let partition = self.model.keys[index].partition;
            if only_lag {
                // §9.2: the promoted primary marks what it may lack.
                let primary = self.nodes[observer]
                    .engine
                    .record(partition)
                    .and_then(|record| self.index_of_member(record.primary));
                let marked = primary.is_some_and(|primary| {
                    self.nodes[primary]
                        .engine
                        .is_possibly_stale(partition, version_hlc)
                });
                if !marked {
                    self.fail(
                        "invariant 6: a delayed-write loss is marked possibly stale",
                        problem,
                    );
                    return;
                }
                self.stats.losses_marked_stale += 1;
            }
            self.trace(|| format!("excused loss: {problem}"));
            // The model follows what survived.
            let model = &mut self.model.keys[index];
            model.acked = state.clone();
            model.acked_hlc = (version_hlc > 0).then_some(version_hlc);
            model.unknown.clear();
            if let State::Value(bytes) = &state
                && let Some(value) = std::str::from_utf8(bytes)
                    .ok()
                    .and_then(|t| t.parse::<i64>().ok())
            {
                model.counter_acked = value;
                model.counter_issued = model.counter_issued.max(value);
            } else if model.kind == KeyKind::Counter {
                model.counter_acked = 0;
            }
            model.shared_acked_hlc = version_hlc;
            model.counter_acked_hlc = version_hlc;
        }
    }

    /// Invariant 4: every key is read through a random node and comes back right.
    pub(crate) fn assert_served(&mut self) {
        if self.clients.is_empty() || self.running_nodes().is_empty() {
            return;
        }
        // The owners' own operations would race the probes: let them finish first.
        self.quiesce = true;
        let deadline = self.now_ms + 2 * self.config.settle_timeout_ms;
        while self.clients.iter().any(|client| client.has_op()) && self.failure.is_none() {
            if self.now_ms >= deadline {
                self.fail(
                    "invariant 4: every key is served",
                    format!("operations still running: {:?}", self.busy_clients()),
                );
                self.quiesce = false;
                return;
            }
            self.run_for(5);
        }
        self.queue_probes();
        while self.probing() && self.failure.is_none() {
            if self.now_ms >= deadline {
                self.fail(
                    "invariant 4: every key is served",
                    format!(
                        "reads still pending after {} ms: busy {:?}, queued {:?}",
                        2 * self.config.settle_timeout_ms,
                        self.busy_clients(),
                        self.clients
                            .iter()
                            .map(|client| client.probes.len())
                            .collect::<Vec<_>>()
                    ),
                );
                return;
            }
            self.run_for(20);
        }
        self.quiesce = false;
        let now_ms = self.now_ms;
        for client in 0..self.clients.len() {
            self.schedule_client(client, now_ms);
        }
        let failures: Vec<String> = self
            .clients
            .iter_mut()
            .flat_map(|client| std::mem::take(&mut client.probe_failures))
            .collect();
        if !failures.is_empty() && self.failure.is_none() {
            self.fail(
                "invariant 4: every key is served",
                format!("reads gave up: {failures:?}"),
            );
        }
    }
}
