//! `scd run`: binds the listeners, runs the node until SIGTERM or SIGINT, then leaves the cluster
//! cleanly (hands partitions off) and exits 0.

use anyhow::Context;
use node::config::NodeConfig;

pub(crate) fn run(config: NodeConfig) -> anyhow::Result<()> {
    // One thread runs the peer links, timers, admin API and the first client thread's connections
    // (node::run starts the other client threads): a relay or a replicated write then crosses no
    // thread on its way to the peer and back (crates/node/src/shards.rs).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(async move {
        // Bind before anything else so a port already in use is reported at once and names its flag.
        let listeners = node::Listeners::bind(&config)?;
        node::run(config, listeners, shutdown_signal()).await?;
        Ok(())
    })
}

/// Resolves on the first SIGTERM or SIGINT: both mean a planned leave.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut terminate), Ok(mut interrupt)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; the node stops only when killed");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = terminate.recv() => tracing::info!("SIGTERM received: leaving the cluster"),
        _ = interrupt.recv() => tracing::info!("SIGINT received: leaving the cluster"),
    }
}
