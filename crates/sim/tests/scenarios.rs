//! The required scenarios, each a script of steps run from a fixed seed (override with
//! `SCD_SIM_SEED` to explore). A failure names the seed, the step and the check.

use sim::{SimConfig, Step, run_scenario};

fn seed(default: u64) -> u64 {
    std::env::var("SCD_SIM_SEED")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(default)
}

fn run(default_seed: u64, config: SimConfig, steps: &[Step]) {
    let seed = seed(default_seed);
    match run_scenario(seed, config, steps) {
        Ok(stats) => println!("seed {seed}: {stats:?}"),
        Err(failure) => panic!("{failure}"),
    }
}

#[test]
fn three_nodes_form_and_balance() {
    run(
        1,
        SimConfig::default(),
        &[
            Step::AddNode,
            Step::AddNode,
            Step::AddNode,
            Step::AssertConverged,
            Step::Run(2_000),
            Step::AssertConverged,
            Step::AssertServed,
        ],
    );
}
