//! Deterministic multi-node simulation of scd clusters over the sans-IO cores.
//!
//! Whole clusters run in one process, deterministic from a `u64` seed: each node is a real
//! `Membership`, a real `Engine` and a real `Store`, connected by a simulated network of
//! heartbeat datagrams (delay, jitter, loss) and per-pair ordered links (latency, bandwidth,
//! resets, partitions between groups). Frames cross the links through the real wire encoding.
//! Simulated clients issue operations through `Engine::execute` and follow its answers as the
//! node's relay does, and every acknowledged outcome feeds a model the checks compare against.
//! Lock clients (`locks`) take session locks with leases and waits, write guarded by their
//! fencing token and release, crash or stall; the lock invariants are checked as they run.
//!
//! Faults are steps ([`Step`]): add a node, kill (state gone; a restart is a new incarnation),
//! pause and resume (the node's clock and inputs stop, then jump), split the network into groups
//! and heal it, reset a link, leave on purpose, lose datagrams. A scenario is a script of steps
//! ([`run_scenario`]) or is drawn from a seed as it runs ([`run_random`]). The invariants of
//! DESIGN.md are checked while it runs and whenever the cluster settles (see `checks`); the first
//! failure stops the run and prints the seed and step ([`CheckFailure`]). A seed replays exactly.

#![deny(missing_docs, unreachable_pub)]

mod checks;
mod client;
mod host;
mod locks;
mod rng;
mod scenario;
mod world;

pub use host::SimHost;
pub use rng::Rng;
pub use scenario::{Step, random_config, run_random, run_scenario};
pub use world::{CheckFailure, RunStats, Sim, SimConfig};
