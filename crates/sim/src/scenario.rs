//! Scenarios: scripts of steps (`AddNode`, `Kill`, `Partition`, `Heal`, `AssertConverged`…),
//! and a random scenario generator that builds one from a seed as it runs.

use std::collections::BTreeSet;
use std::fmt;

use cluster::engine::WriteMode;

use crate::rng::Rng;
use crate::world::{CheckFailure, RunStats, Sim, SimConfig, Status};

/// One step of a scenario. Node numbers are slots: `node-N`, reused by a restart.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// A new node starts and joins through the nodes that are up.
    AddNode,
    /// These nodes are killed at once (state gone).
    Kill(Vec<usize>),
    /// A killed (or departed) node starts again: a new incarnation with no data.
    Restart(usize),
    /// The node stops (SIGSTOP): its clock and inputs stop.
    Pause(usize),
    /// The paused node continues; time has jumped.
    Resume(usize),
    /// The network splits into these groups (nodes not listed join the first group).
    Partition(Vec<Vec<usize>>),
    /// The split is over.
    Heal,
    /// The link between two nodes resets.
    LinkReset(usize, usize),
    /// The node leaves on purpose (SIGTERM).
    Leave(usize),
    /// Heartbeat datagrams are lost with this probability from now on.
    DatagramLoss(f64),
    /// Time passes, in ms.
    Run(u64),
    /// The cluster settles within the timeout, and the settle checks pass.
    AssertConverged,
    /// Every key is read through a random node and comes back right.
    AssertServed,
}

impl fmt::Display for Step {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::AddNode => write!(formatter, "AddNode"),
            Step::Kill(nodes) => write!(formatter, "Kill{nodes:?}"),
            Step::Restart(node) => write!(formatter, "Restart({node})"),
            Step::Pause(node) => write!(formatter, "Pause({node})"),
            Step::Resume(node) => write!(formatter, "Resume({node})"),
            Step::Partition(groups) => write!(formatter, "Partition{groups:?}"),
            Step::Heal => write!(formatter, "Heal"),
            Step::LinkReset(a, b) => write!(formatter, "LinkReset({a}, {b})"),
            Step::Leave(node) => write!(formatter, "Leave({node})"),
            Step::DatagramLoss(loss) => write!(formatter, "DatagramLoss({loss})"),
            Step::Run(ms) => write!(formatter, "Run({ms} ms)"),
            Step::AssertConverged => write!(formatter, "AssertConverged"),
            Step::AssertServed => write!(formatter, "AssertServed"),
        }
    }
}

impl Sim {
    /// Runs one step; a failed check stops the run and is returned.
    pub fn step(&mut self, step: &Step) -> Result<(), CheckFailure> {
        self.step_index += 1;
        self.step_label = step.to_string();
        self.stats.steps += 1;
        self.trace(|| format!("step {}: {step}", self.step_index));
        match step {
            Step::AddNode => {
                let index = self.nodes.len();
                self.start_node(index);
                self.ensure_clients();
            }
            Step::Kill(nodes) => {
                let eligible = (0..self.nodes.len())
                    .filter(|&node| {
                        self.nodes[node].status == Status::Running && !self.nodes[node].leaving
                    })
                    .count();
                self.window.fewest_eligible = Some(
                    self.window
                        .fewest_eligible
                        .map_or(eligible, |fewest| fewest.min(eligible)),
                );
                for &node in nodes {
                    if node < self.nodes.len() && self.nodes[node].is_up() {
                        self.window.kills += 1;
                        self.kill_node(node);
                    }
                }
            }
            Step::Restart(node) => {
                if *node < self.nodes.len() && !self.nodes[*node].is_up() {
                    self.start_node(*node);
                }
            }
            Step::Pause(node) => {
                if *node < self.nodes.len() && self.nodes[*node].status == Status::Running {
                    self.window.pauses += 1;
                    // For the lock checks a pause is a split (the node is cut off, the others
                    // promote or, past the backups, claim its partitions empty)...
                    self.locks.network_era += 1;
                    self.pause_node(*node);
                }
            }
            Step::Resume(node) => {
                if *node < self.nodes.len() && self.nodes[*node].status == Status::Paused {
                    // ...and its resumption a heal: until the next settle both histories act.
                    self.locks.network_era += 1;
                    self.locks.healing = true;
                    self.resume_node(*node);
                }
            }
            Step::Partition(groups) => {
                self.window.partitions += 1;
                // A side of a split that held no copy of a partition claims it empty (after
                // `claim_fallback_ms`) and starts a history of its own: a new era.
                self.locks.network_era += 1;
                if self.groups.is_some() {
                    // A regrouping also joins some nodes that were apart, like a heal.
                    self.locks.healing = true;
                }
                let mut sets: Vec<BTreeSet<usize>> = groups
                    .iter()
                    .map(|group| group.iter().copied().collect())
                    .collect();
                if sets.is_empty() {
                    sets.push(BTreeSet::new());
                }
                for node in 0..self.nodes.len() {
                    if !sets.iter().any(|set| set.contains(&node)) {
                        sets[0].insert(node);
                    }
                }
                self.groups = Some(sets);
                for a in 0..self.nodes.len() {
                    for b in a + 1..self.nodes.len() {
                        if !self.reachable(a, b) {
                            self.close_link(a, b);
                        }
                    }
                }
            }
            Step::Heal => {
                if self.groups.take().is_some() {
                    self.locks.network_era += 1;
                    self.locks.healing = true;
                }
            }
            Step::LinkReset(a, b) => {
                if *a < self.nodes.len() && *b < self.nodes.len() && self.has_link(*a, *b) {
                    self.window.link_resets += 1;
                    self.close_link(*a, *b);
                }
            }
            Step::Leave(node) => {
                if *node < self.nodes.len() {
                    self.leave_node(*node);
                }
            }
            Step::DatagramLoss(loss) => self.config.datagram_loss = *loss,
            Step::Run(duration_ms) => self.run_for(*duration_ms),
            Step::AssertConverged => self.assert_converged(),
            Step::AssertServed => self.assert_served(),
        }
        // Whatever just happened is followed by at least one event round.
        self.run_for(1);
        match self.failure.clone() {
            Some(failure) => Err(failure),
            None => Ok(()),
        }
    }

    /// Runs `steps` in order.
    pub fn run_steps(&mut self, steps: &[Step]) -> Result<(), CheckFailure> {
        for step in steps {
            self.step(step)?;
        }
        Ok(())
    }
}

/// Runs a scripted scenario from `seed`; returns what it did, or the first failed check.
pub fn run_scenario(
    seed: u64,
    config: SimConfig,
    steps: &[Step],
) -> Result<RunStats, CheckFailure> {
    let mut sim = Sim::new(seed, config);
    sim.run_steps(steps)?;
    Ok(sim.stats())
}

/// Streams drawn from one seed, apart from the world's: a random run's configuration and its
/// fault schedule.
const CONFIG_STREAM: u64 = 0x5eed_c0ff_ee00_0001;
const SCHEDULE_STREAM: u64 = 0x5eed_c0ff_ee00_0002;
/// Whether a random run settles at once after a kill (see `run_random`).
const KILL_SETTLE_STREAM: u64 = 0x5eed_c0ff_ee00_0004;

/// The configuration a random scenario uses for `seed` (drawn from the seed).
pub fn random_config(seed: u64) -> SimConfig {
    let mut rng = Rng::new(seed ^ CONFIG_STREAM);
    SimConfig {
        num_partitions: if rng.chance(0.5) { 32 } else { 64 },
        backups: if rng.chance(0.7) { 1 } else { 2 },
        write_mode: if rng.chance(0.75) {
            WriteMode::Through
        } else {
            WriteMode::Delayed
        },
        jitter_ms: rng.up_to(5),
        datagram_loss: if rng.chance(0.3) { 0.02 } else { 0.0 },
        clients: 3 + rng.index(3),
        keys_per_client: 12,
        counters_per_client: 3,
        shared_keys: if rng.chance(0.5) { 6 } else { 0 },
        // Lock clients in every run: a few workers on a few keys, so they contend.
        lock_clients: 2 + rng.index(3),
        lock_keys: 1 + rng.index(3),
        // Drawn last, so the draws above are those of the runs before link jitter existed;
        // half the runs keep links of one latency, as those runs had.
        link_jitter_ms: if rng.chance(0.5) { 1 + rng.up_to(7) } else { 0 },
        ..SimConfig::default()
    }
}

/// Runs a random scenario from `seed`: a cluster of 3–5 nodes, then 6–12 random faults with
/// time passing between them, settling now and then, and finally a heal, a settle and a read
/// of every key. The steps are drawn as the run goes (they depend on who is alive), so the seed
/// alone replays the run.
///
/// The schedule draws from a generator of its own, apart from the world's (network delays,
/// losses, client operations), which the nodes' behaviour consumes. So a change to the engine
/// leaves a seed's faults, their order and the time between them as they were, and a seed that
/// found a bug exercises the same schedule once the bug is fixed. The one exception is a planned
/// leave: it ends when the engine has handed everything off, and the nodes it leaves running
/// shape the draws that follow.
pub fn run_random(seed: u64, trace: bool) -> Result<RunStats, CheckFailure> {
    let mut config = random_config(seed);
    config.trace = trace;
    let mut sim = Sim::new(seed, config);
    // Half the runs settle right after a kill when no split or pause is under way, before a
    // newer write can hide an acknowledged write the kill lost; the other half run their
    // schedule exactly as runs did before this choice existed.
    let settle_after_kills = Rng::new(seed ^ KILL_SETTLE_STREAM).chance(0.5);
    if trace {
        println!(
            "seed {seed}: {:?}, settle after kills: {settle_after_kills}",
            sim.config
        );
    }
    let mut rng = Rng::new(seed ^ SCHEDULE_STREAM);
    let initial = 3 + rng.index(3);
    for _ in 0..initial {
        sim.step(&Step::AddNode)?;
    }
    sim.step(&Step::AssertConverged)?;
    let faults = 6 + rng.index(7);
    for _ in 0..faults {
        let step = next_random_step(&sim, &mut rng);
        sim.step(&step)?;
        if settle_after_kills && matches!(step, Step::Kill(_)) && sim.has_no_split_or_pause() {
            sim.step(&Step::AssertConverged)?;
        }
        let pause_ms = rng.between(100, 1_500);
        sim.step(&Step::Run(pause_ms))?;
        // Faults that must end soon end now, after a while.
        let paused: Vec<usize> = (0..sim.nodes.len())
            .filter(|&node| sim.nodes[node].status == Status::Paused)
            .collect();
        for node in paused {
            if rng.chance(0.6) {
                sim.step(&Step::Resume(node))?;
            }
        }
        if sim.groups.is_some() && rng.chance(0.5) {
            sim.step(&Step::Heal)?;
        }
        if rng.chance(0.3) {
            finish_faults(&mut sim)?;
            sim.step(&Step::AssertConverged)?;
        }
    }
    finish_faults(&mut sim)?;
    sim.step(&Step::AssertConverged)?;
    sim.step(&Step::AssertServed)?;
    Ok(sim.stats())
}

/// Resumes paused nodes and heals the network.
fn finish_faults(sim: &mut Sim) -> Result<(), CheckFailure> {
    let paused: Vec<usize> = (0..sim.nodes.len())
        .filter(|&node| sim.nodes[node].status == Status::Paused)
        .collect();
    for node in paused {
        sim.step(&Step::Resume(node))?;
    }
    if sim.groups.is_some() {
        sim.step(&Step::Heal)?;
    }
    Ok(())
}

fn next_random_step(sim: &Sim, rng: &mut Rng) -> Step {
    let running = sim.running_nodes();
    let up = sim.up_nodes();
    let down: Vec<usize> = (0..sim.nodes.len())
        .filter(|&node| !sim.nodes[node].is_up())
        .collect();
    let backups = sim.config.backups;
    loop {
        match rng.up_to(9) {
            0 if sim.nodes.len() < 7 => return Step::AddNode,
            1 | 2 if running.len() > 2 => {
                // Usually what the backups cover; sometimes more.
                let most = if rng.chance(0.8) {
                    backups
                } else {
                    backups + 1
                };
                let count = 1 + rng.index(most.min(running.len() - 1));
                let mut victims = running.clone();
                let mut chosen = Vec::new();
                for _ in 0..count {
                    let position = rng.index(victims.len());
                    chosen.push(victims.remove(position));
                }
                chosen.sort_unstable();
                return Step::Kill(chosen);
            }
            3 if !down.is_empty() => {
                return Step::Restart(*rng.pick(&down).unwrap_or(&0));
            }
            4 if running.len() > 2 => return Step::Pause(*rng.pick(&running).unwrap_or(&0)),
            5 if up.len() > 1 && sim.groups.is_none() => {
                let mut first = Vec::new();
                let mut second = Vec::new();
                for &node in &up {
                    if rng.chance(0.5) {
                        first.push(node);
                    } else {
                        second.push(node);
                    }
                }
                if first.is_empty() || second.is_empty() {
                    continue;
                }
                return Step::Partition(vec![first, second]);
            }
            6 if running.len() > 1 => {
                let a = *rng.pick(&running).unwrap_or(&0);
                let b = *rng.pick(&running).unwrap_or(&0);
                // Drawn whether or not the link is up (a reset of no link does nothing), so
                // the schedule does not depend on the engine's connections.
                if a != b {
                    return Step::LinkReset(a, b);
                }
            }
            7 if running.len() > 2 => return Step::Leave(*rng.pick(&running).unwrap_or(&0)),
            8 => return Step::Run(rng.between(200, 2_000)),
            9 => return Step::DatagramLoss(if rng.chance(0.5) { 0.0 } else { 0.05 }),
            _ => {}
        }
    }
}
