//! Long simulation runs: `sim --seeds N [--seed START]` runs N random scenarios from START,
//! `sim --seed N --trace` replays one, printing every step and event.

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut seeds: u64 = 100;
    let mut start: Option<u64> = None;
    let mut trace = false;
    let mut arguments = std::env::args().skip(1);
    while let Some(argument) = arguments.next() {
        let mut value = || arguments.next().and_then(|text| text.parse::<u64>().ok());
        match argument.as_str() {
            "--seeds" => match value() {
                Some(count) => seeds = count,
                None => return usage("--seeds takes a number"),
            },
            "--seed" => match value() {
                Some(seed) => start = Some(seed),
                None => return usage("--seed takes a number"),
            },
            "--trace" => trace = true,
            "--help" | "-h" => return usage(""),
            other => return usage(&format!("unknown argument {other}")),
        }
    }
    // `--seed N` alone replays that one seed.
    let (first, count) = match start {
        Some(seed) if seeds == 100 => (seed, 1),
        Some(seed) => (seed, seeds),
        None => (1, seeds),
    };
    let mut failures = 0u64;
    let began = std::time::Instant::now();
    for seed in first..first.saturating_add(count) {
        match sim::run_random(seed, trace) {
            Ok(stats) => {
                if trace || count == 1 {
                    println!("seed {seed}: ok {stats:?}");
                }
            }
            Err(failure) => {
                failures += 1;
                println!("{failure}");
            }
        }
        if count > 1 && (seed - first + 1) % 100 == 0 {
            println!(
                "{} seeds, {failures} failed, {:.1} s",
                seed - first + 1,
                began.elapsed().as_secs_f64()
            );
        }
    }
    println!(
        "{count} seeds from {first}: {failures} failed in {:.1} s",
        began.elapsed().as_secs_f64()
    );
    if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn usage(problem: &str) -> ExitCode {
    if !problem.is_empty() {
        eprintln!("sim: {problem}");
    }
    eprintln!("usage: sim [--seeds N] [--seed START] [--trace]");
    if problem.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    }
}
