//! The tokio wiring of an scd node: listeners, client connections, routing, background tasks.
//!
//! [`run`] takes a [`NodeConfig`](config::NodeConfig), already-bound [`Listeners`] and a shutdown
//! future, and serves until the future resolves. Tests start nodes in-process this way (with a
//! [`ManualClock`](clock::ManualClock) to move time without sleeping); the `scd` binary does the same
//! with the system clock and the SIGTERM/SIGINT handler.

#![deny(missing_docs, unreachable_pub)]

mod admin_source;
pub mod alloc;
pub mod clock;
mod cluster_io;
mod cluster_setup;
pub mod config;
mod connection;
mod expiry;
mod listeners;
mod locks;
mod log;
mod membership;
mod memcached;
mod peer;
mod pending;
mod resp;
mod router;
mod shards;
mod state;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use cluster::node_id::NodeId;
pub use listeners::{BindError, Listeners};
use store::{Store, StoreConfig};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::clock::{Clock, SystemClock};
use crate::config::NodeConfig;
use crate::state::{BoundAddresses, NodeCounters, NodeState};

/// Why a node could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The configuration was refused by the store (nothing was started).
    #[error("invalid configuration: {0}")]
    Config(#[from] store::StoreError),
    /// A listener could not be handed to the runtime (nothing was started).
    #[error("cannot use the {what} listener: {source}")]
    Listener {
        /// Which listener.
        what: &'static str,
        /// What the runtime said.
        #[source]
        source: std::io::Error,
    },
    /// The cluster side could not start (nothing was started).
    #[error("cannot start the cluster side: {0}")]
    Cluster(String),
}

/// Runs a node with the system clock until `shutdown` resolves.
pub async fn run(
    config: NodeConfig,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), NodeError> {
    run_with_clock(config, listeners, Arc::new(SystemClock), shutdown).await
}

/// Runs a node with the given clock until `shutdown` resolves, then leaves the cluster (hands its
/// partitions off, PROTOCOL.md §11), closes every client connection and returns.
pub async fn run_with_clock(
    config: NodeConfig,
    listeners: Listeners,
    clock: Arc<dyn Clock>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), NodeError> {
    let node_id = NodeId::from_name(&config.name);
    let store = Arc::new(Store::new(StoreConfig {
        num_partitions: config.num_partitions,
        max_memory_bytes: config.max_memory_bytes,
        max_value_bytes: config.max_value_bytes,
        tombstone_ttl_ms: config.tombstone_ttl_ms,
        node_id: node_id.0,
        ..StoreConfig::default()
    })?);
    let addresses = BoundAddresses {
        client: listeners.client_addr(),
        memcached_opt: listeners.memcached_addr(),
        peer: listeners.peer_addr(),
        admin_opt: listeners.admin_addr(),
    };
    let command_stats = Arc::new(admin::CommandStats::new(state::command_stat_names()));
    let metrics = Arc::new(admin::Metrics::new(Arc::clone(&command_stats)));
    let shutdown_token = CancellationToken::new();
    let tasks = TaskTracker::new();

    let to_tokio = |what: &'static str, listener: std::net::TcpListener| {
        tokio::net::TcpListener::from_std(listener)
            .map_err(|source| NodeError::Listener { what, source })
    };
    let client_listener = to_tokio("client", listeners.client)?;
    let memcached_listener_opt = listeners
        .memcached_opt
        .map(|listener| to_tokio("memcached", listener))
        .transpose()?;
    let admin_listener_opt = listeners
        .admin_opt
        .map(|listener| to_tokio("admin", listener))
        .transpose()?;
    let peer_listener = to_tokio("peer", listeners.peer)?;

    let io = cluster_setup::start(
        &config,
        &addresses,
        Arc::clone(&store),
        Arc::clone(&clock),
        Arc::clone(&metrics),
        listeners.heartbeat,
        peer_listener,
        &tasks,
        &shutdown_token,
    )?;
    let run_id = state::new_run_id();
    let locks = locks::LockManager::new(
        Arc::clone(&io),
        Arc::clone(&clock),
        Arc::clone(&metrics),
        locks::LockLimits {
            waiters_per_key_max: config.max_lock_waiters_per_key,
            waiters_max: config.max_lock_waiters,
        },
        config.num_partitions,
        &run_id,
        shutdown_token.clone(),
    );
    // Relayed lock operations reach the manager before the engine.
    io.host().install_lock_manager(&locks);
    tasks.spawn(Arc::clone(&locks).run(io.host().lock_signals()));
    let node = Arc::new(NodeState {
        router: router::Router::new(Arc::clone(&io), Arc::clone(&clock), config.num_partitions),
        io,
        locks,
        memcached: Arc::default(),
        scripts: Default::default(),
        config,
        addresses,
        clock,
        store,
        metrics,
        command_stats,
        counters: NodeCounters::default(),
        next_client_id: AtomicU64::new(1),
        started_at: Instant::now(),
        run_id,
        shutdown: shutdown_token,
        stopping: AtomicBool::new(false),
    });

    let shards = shards::ClientShards::start(node.config.client_threads)
        .map_err(|error| NodeError::Cluster(format!("cannot start the client threads: {error}")))?;
    tasks.spawn(accept_clients(
        Arc::clone(&node),
        client_listener,
        ClientProtocol::Resp,
        tasks.clone(),
        Arc::clone(&shards),
    ));
    if let Some(listener) = memcached_listener_opt {
        tasks.spawn(accept_clients(
            Arc::clone(&node),
            listener,
            ClientProtocol::Memcached,
            tasks.clone(),
            Arc::clone(&shards),
        ));
    }
    tasks.spawn(expiry::sweep_forever(Arc::clone(&node)));
    tasks.spawn(cluster_setup::tick_forever(Arc::clone(&node)));
    if let Some(listener) = admin_listener_opt {
        let admin_state = admin_source::admin_state(&node);
        let stop = node.shutdown.clone();
        tasks.spawn(async move {
            if let Err(error) =
                admin::serve(listener, admin_state, async move { stop.cancelled().await }).await
            {
                tracing::error!(%error, "admin server stopped");
            }
        });
    }
    tracing::info!(
        name = %node.config.name,
        client = %node.addresses.client,
        peer = %node.addresses.peer,
        memcached = ?node.addresses.memcached_opt,
        admin = ?node.addresses.admin_opt,
        "scd node serving"
    );

    shutdown.await;
    cluster_setup::leave(&node).await;
    node.stopping.store(true, Ordering::SeqCst);
    node.shutdown.cancel();
    if let Some(membership) = node.io.membership.get() {
        membership.stop(membership::MembershipCommand::Stop);
    }
    tasks.close();
    tasks.wait().await;
    shards.stop();
    tracing::info!(name = %node.config.name, "scd node stopped");
    Ok(())
}

#[derive(Clone, Copy, Debug)]
enum ClientProtocol {
    Resp,
    Memcached,
}

/// Accepts client connections until shutdown: refuses hosts outside `--allow` (closing at once and
/// logging why) and connections beyond `--max-clients` (with an error line, as Redis does).
async fn accept_clients(
    node: Arc<NodeState>,
    listener: tokio::net::TcpListener,
    protocol: ClientProtocol,
    tasks: TaskTracker,
    shards: Arc<shards::ClientShards>,
) {
    let not_allowed_log = log::RateLimited::new();
    let accept_error_log = log::RateLimited::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = node.shutdown.cancelled() => return,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: wait a little instead of spinning.
                if accept_error_log.allow() {
                    tracing::warn!(%error, ?protocol, "accepting a client connection failed");
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        if !node.config.is_allowed(peer.ip()) {
            NodeCounters::add(&node.counters.connections_rejected_not_allowed, 1);
            node.metrics
                .client_connections_rejected
                .inc(admin::ConnectionRejectReason::NotAllowed);
            if not_allowed_log.allow() {
                tracing::warn!(%peer, ?protocol, "refused a connection from a host outside --allow");
            }
            drop(stream);
            continue;
        }
        let current = node
            .counters
            .connections_current
            .fetch_add(1, Ordering::SeqCst);
        if current >= node.config.max_clients as u64 {
            node.counters
                .connections_current
                .fetch_sub(1, Ordering::SeqCst);
            NodeCounters::add(&node.counters.connections_rejected_max_clients, 1);
            node.metrics
                .client_connections_rejected
                .inc(admin::ConnectionRejectReason::MaxClients);
            let refusal: &'static [u8] = match protocol {
                ClientProtocol::Resp => b"-ERR max number of clients reached\r\n",
                ClientProtocol::Memcached => b"SERVER_ERROR max number of clients reached\r\n",
            };
            tasks.spawn(async move {
                use tokio::io::AsyncWriteExt;
                let mut stream = stream;
                let _ = stream.write_all(refusal).await;
            });
            continue;
        }
        NodeCounters::add(&node.counters.connections_received, 1);
        node.metrics.client_connections_accepted.inc();
        let _ = stream.set_nodelay(true);
        let local = stream.local_addr().unwrap_or(node.addresses.client);
        let connection_node = Arc::clone(&node);
        // The connection moves to a client thread: deregistered from this runtime's reactor
        // here, registered with the client thread's when it starts there.
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(error) => {
                connection_node
                    .counters
                    .connections_current
                    .fetch_sub(1, Ordering::SeqCst);
                tracing::debug!(%peer, %error, "lost a client connection while handing it over");
                continue;
            }
        };
        tasks.spawn_on(
            async move {
                let _guard = ConnectionGuard(Arc::clone(&connection_node));
                let Ok(stream) = tokio::net::TcpStream::from_std(stream) else {
                    return;
                };
                match protocol {
                    ClientProtocol::Resp => {
                        let session = resp::session::Session::new(
                            connection_node.next_client_id(),
                            peer,
                            local,
                            &connection_node.config,
                        );
                        resp::conn::serve(connection_node, stream, session).await;
                    }
                    ClientProtocol::Memcached => {
                        memcached::serve(connection_node, stream, peer).await
                    }
                }
            },
            shards.next(),
        );
    }
}

/// Counts a connection out when its task ends, however it ends.
struct ConnectionGuard(Arc<NodeState>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0
            .counters
            .connections_current
            .fetch_sub(1, Ordering::SeqCst);
    }
}
