//! The `scd` binary: parses the command line, sets up logging and hands over to a subcommand.

mod cli;
mod demo;
mod lb;
mod run;
mod status;

use clap::Parser;

/// Counts allocated bytes so `INFO memory` reports what the process really holds.
#[global_allocator]
static ALLOCATOR: node::alloc::CountingAllocator = node::alloc::CountingAllocator;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    let result = match cli.command {
        cli::Command::Run(args) => args
            .merged_with_file()
            .and_then(|args| {
                init_logging(args.log_level.as_deref().unwrap_or("info"))?;
                args.into_node_config()
            })
            .and_then(run::run),
        cli::Command::Status(args) => status::status(&args),
        cli::Command::Demo(args) => init_logging("warn").and_then(|()| demo::demo(&args)),
        cli::Command::Lb(args) => lb::lb(&args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("scd: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Logs go to standard error, one line per event, with the level filter given by `--log-level`
/// (a level such as `debug`, or any `tracing` directive such as `node=debug,info`).
fn init_logging(filter: &str) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter).map_err(|error| {
        anyhow::anyhow!("--log-level '{filter}' is not a level or filter: {error}")
    })?;
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
    Ok(())
}
