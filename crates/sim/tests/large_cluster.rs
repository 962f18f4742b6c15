//! A 64-node cluster: nodes join in waves while clients write, five nodes are killed (in
//! batches the backups cover, settling in between), the cluster rebalances, and every key is
//! served at the end. `SCD_SIM_SEED` overrides the seed.

use sim::{Sim, SimConfig, Step};

#[test]
fn sixty_four_nodes_join_lose_five_rebalance_and_serve_every_key() {
    let seed = std::env::var("SCD_SIM_SEED")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(64);
    let config = SimConfig {
        num_partitions: 128,
        backups: 2,
        clients: 8,
        keys_per_client: 16,
        // Checking every pair of 64 nodes for every partition is the costly check: every
        // 20 ms of simulated time is plenty at this scale.
        check_interval_ms: 20,
        settle_timeout_ms: 60_000,
        ..SimConfig::default()
    };
    let mut steps = vec![Step::AddNode; 4];
    steps.push(Step::AssertConverged);
    for _wave in 0..6 {
        steps.extend(std::iter::repeat_n(Step::AddNode, 10));
        steps.push(Step::Run(300));
    }
    steps.push(Step::AssertConverged);
    steps.push(Step::Run(1_000));
    for victims in [vec![3, 40], vec![17, 55], vec![8]] {
        steps.push(Step::Kill(victims));
        steps.push(Step::Run(1_500));
        steps.push(Step::AssertConverged);
    }
    steps.push(Step::AssertServed);
    let started = std::time::Instant::now();
    let mut sim = Sim::new(seed, config);
    if let Err(failure) = sim.run_steps(&steps) {
        panic!("{failure}");
    }
    let stats = sim.stats();
    println!(
        "seed {seed}: 64 nodes in {:.1} s: {stats:?}",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(sim.node_count(), 64);
    assert!(stats.engine.promotions > 0);
    assert_eq!(stats.engine.lost_partitions, 0);
    assert_eq!(stats.losses_excused, 0);
    let with_primaries = (0..64).filter(|&node| sim.primary_count(node) > 0).count();
    assert!(
        with_primaries > 40,
        "only {with_primaries} nodes own a primary"
    );
}
