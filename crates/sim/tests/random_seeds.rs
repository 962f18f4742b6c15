//! Random scenarios: `SCD_SIM_SEEDS` seeds (default 1000, about 40 s) from `SCD_SIM_SEED`
//! (default 1), each a cluster of 3–5 nodes put through 6–12 random faults (kills, restarts,
//! pauses, splits, link resets, planned leaves, datagram loss, joins) with settles in between,
//! and 2–4 lock clients contending for 1–3 locks, all invariants (the lock ones too) checked
//! throughout. A failure prints its seed; `cargo run -p sim --release -- --seed N --trace`
//! replays it exactly. Longer runs: `cargo run -p sim --release -- --seeds 10000`.

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(default)
}

#[test]
fn random_scenarios_keep_every_invariant() {
    let count = env_number("SCD_SIM_SEEDS", 1000);
    let first = env_number("SCD_SIM_SEED", 1);
    let started = std::time::Instant::now();
    let mut failures = Vec::new();
    for seed in first..first.saturating_add(count) {
        if let Err(failure) = sim::run_random(seed, false) {
            println!("{failure}");
            failures.push(seed);
        }
    }
    println!(
        "{count} random seeds from {first} in {:.1} s, {} failed",
        started.elapsed().as_secs_f64(),
        failures.len()
    );
    assert!(failures.is_empty(), "failing seeds: {failures:?}");
}

/// Seeds that once failed, kept as regressions whatever `SCD_SIM_SEEDS` says: 648, 867, 1512
/// and 1638 caught a joining node that had exchanged tables only with another newcomer claiming,
/// from its partial view, partitions the founding node already owned and served (PROTOCOL.md §5
/// rule 2 now waits for a complete, agreed view). 701771 caught a node that had just joined
/// taking a handoff in its partial view and dropping every backup from the record (§8 now waits
/// for a settled view); 703628 caught the checker keeping an acknowledged state that a double
/// kill had taken, where an unknown outcome explained what survived. Their schedules were drawn
/// from the world's generator, before the schedule got one of its own, so they no longer replay
/// what failed: they are cheap extra seeds, and the engine tests pin the fixes down. A seed that
/// fails from now on keeps its fault schedule across engine changes (`run_random`). 1910, the
/// first such, caught the lock checks comparing the two sides of a false suspicion (a link reset
/// and a lost heartbeat made one node declare a live peer down and claim its partitions) as if
/// they were one connected group; such a view split is now checked as a network split. 2535
/// caught a node claiming, after two kills, a partition with the copy it still held (a
/// snapshot it had just received) without marking it possibly stale in delayed-write (a claim
/// now marks what it holds, as a promotion does). 5994 caught, with two backups, a backup
/// out of step after its primary's death asking the promoted one for a snapshot, which then
/// acknowledged writes as the one copy until a second kill took them (a backup that asks is
/// now brought up to date in place at once, and writes wait for it meanwhile). 31331 caught
/// such a backup, out of step, taking a handoff from the promoted primary and serving without
/// a write the dead one had acknowledged (an out-of-step backup now refuses handoffs).
#[test]
fn seeds_that_once_failed_keep_every_invariant() {
    let failures: Vec<String> = [
        648, 867, 1512, 1638, 1910, 2535, 5994, 31_331, 701_771, 703_628,
    ]
    .into_iter()
    .filter_map(|seed| {
        sim::run_random(seed, false)
            .err()
            .map(|failure| failure.to_string())
    })
    .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
