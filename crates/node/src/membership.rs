//! The membership thread: runs `cluster::membership::Membership` on a plain OS thread that owns the
//! heartbeat UDP socket. A dedicated thread keeps heartbeats on time when every tokio worker is busy
//! with clients: the kernel schedules a thread that slept on a socket promptly, whereas a tokio timer
//! waits for a worker to come back to it. Failure detection depends on that rhythm.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use cluster::membership::{
    MemberInfo, Membership, MembershipConfig, MembershipEvent, MembershipStats, NodeLoad,
    SelfIdentity,
};
use cluster::node_id::NodeId;

/// The longest the thread sleeps on the socket: bounds how late a command from another thread
/// (a peer link reset, leave) is handled.
const POLL_INTERVAL: Duration = Duration::from_millis(10);
/// A heartbeat datagram is never larger (`cluster::membership::wire`); a slightly larger buffer
/// lets an oversized one be seen and rejected whole.
const RECEIVE_BUFFER_BYTES: usize = 8 * 1024;

/// Requests from the rest of the node to the membership thread.
#[derive(Debug)]
pub(crate) enum MembershipCommand {
    /// The peer link to this node was reset or closed.
    PeerReset(NodeId),
    /// This node's load, for heartbeats.
    SetLoad(NodeLoad),
    /// This node's partition-table digest, for heartbeats.
    SetTableDigest(u64),
    /// This node's role flags (bit 0: leaving), for heartbeats.
    SetRole(u8),
    /// Send leave datagrams and stop.
    Leave,
    /// Stop without a word (the node is shutting down for good, or a test ends).
    Stop,
}

/// What other threads may read about membership without asking the thread.
#[derive(Debug, Default)]
pub(crate) struct MembershipSnapshot {
    pub(crate) members: Vec<MemberInfo>,
    pub(crate) stats: MembershipStats,
    /// Datagrams dropped before membership saw them: the sender is outside `--allow`.
    pub(crate) not_allowed: u64,
}

/// Handle on the running thread.
pub(crate) struct MembershipHandle {
    commands: Sender<MembershipCommand>,
    snapshot: Arc<ArcSwap<MembershipSnapshot>>,
    thread_opt: parking_lot::Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// What the thread calls, on the thread itself; must not block.
pub(crate) trait MembershipObserver: Send + 'static {
    /// Membership reported an event.
    fn on_event(&mut self, event: MembershipEvent);
    /// The loop ran at `now_ms` (the node's clock), after handling its inputs: the place to
    /// read the members (the engine's stall fence is fed from here too).
    fn on_tick(&mut self, membership: &Membership, now_ms: u64);
}

impl MembershipHandle {
    /// Starts the thread. `socket` is the bound heartbeat socket; `wall_clock_ms` gives the time the
    /// observer's `on_alive` receives (the node's clock).
    pub(crate) fn start(
        socket: UdpSocket,
        allow: Vec<ipnet::IpNet>,
        config: MembershipConfig,
        identity: SelfIdentity,
        observer: impl MembershipObserver,
        wall_clock_ms: impl Fn() -> u64 + Send + 'static,
    ) -> Result<MembershipHandle, String> {
        socket
            .set_nonblocking(false)
            .and_then(|()| socket.set_read_timeout(Some(POLL_INTERVAL)))
            .map_err(|error| format!("cannot configure the heartbeat socket: {error}"))?;
        let started = Instant::now();
        let monotonic_ms = move || started.elapsed().as_millis() as u64;
        let seeds = config.seed_addresses.clone();
        let membership = Membership::new(config, identity, monotonic_ms())
            .map_err(|error| format!("invalid membership configuration: {error}"))?;
        let (commands, command_rx) = std::sync::mpsc::channel();
        let snapshot = Arc::new(ArcSwap::from_pointee(MembershipSnapshot {
            members: membership.members(),
            stats: membership.stats(),
            not_allowed: 0,
        }));
        let thread_snapshot = Arc::clone(&snapshot);
        let thread = std::thread::Builder::new()
            .name("scd-membership".to_string())
            .spawn(move || {
                run(
                    socket,
                    &allow,
                    &seeds,
                    membership,
                    command_rx,
                    observer,
                    thread_snapshot,
                    monotonic_ms,
                    wall_clock_ms,
                )
            })
            .map_err(|error| format!("cannot start the membership thread: {error}"))?;
        Ok(MembershipHandle {
            commands,
            snapshot,
            thread_opt: parking_lot::Mutex::new(Some(thread)),
        })
    }

    /// Sends a command; ignored once the thread has stopped.
    pub(crate) fn send(&self, command: MembershipCommand) {
        let _ = self.commands.send(command);
    }

    /// The latest members and counters.
    pub(crate) fn snapshot(&self) -> Arc<MembershipSnapshot> {
        self.snapshot.load_full()
    }

    /// Stops the thread (after `Leave` or with `Stop`) and waits for it.
    pub(crate) fn stop(&self, command: MembershipCommand) {
        self.send(command);
        if let Some(thread) = self.thread_opt.lock().take() {
            let _ = thread.join();
        }
    }
}

impl Drop for MembershipHandle {
    fn drop(&mut self) {
        self.stop(MembershipCommand::Stop);
    }
}

#[allow(clippy::too_many_arguments)]
fn run(
    socket: UdpSocket,
    allow: &[ipnet::IpNet],
    seeds: &[SocketAddr],
    mut membership: Membership,
    commands: Receiver<MembershipCommand>,
    mut observer: impl MembershipObserver,
    snapshot: Arc<ArcSwap<MembershipSnapshot>>,
    monotonic_ms: impl Fn() -> u64,
    wall_clock_ms: impl Fn() -> u64,
) {
    let mut buffer = vec![0u8; RECEIVE_BUFFER_BYTES];
    let reject_log = crate::log::RateLimited::new();
    let not_allowed_log = crate::log::RateLimited::new();
    let mut not_allowed: u64 = 0;
    let mut last_snapshot_ms = 0;
    // Until some other node is seen: when to say that no --join address answered.
    let mut alone_warning_at_opt = (!seeds.is_empty()).then_some(ALONE_WARNING_AFTER_MS);
    loop {
        // Commands from other threads.
        loop {
            match commands.try_recv() {
                Ok(MembershipCommand::PeerReset(node)) => {
                    membership.handle_peer_reset(node, monotonic_ms())
                }
                Ok(MembershipCommand::SetLoad(load)) => membership.set_local_load(load),
                Ok(MembershipCommand::SetTableDigest(digest)) => {
                    membership.set_table_digest(digest)
                }
                Ok(MembershipCommand::SetRole(role)) => membership.set_role(role),
                Ok(MembershipCommand::Leave) => {
                    membership.leave(monotonic_ms());
                    flush_transmits(&socket, &mut membership);
                    return;
                }
                Ok(MembershipCommand::Stop) | Err(TryRecvError::Disconnected) => return,
                Err(TryRecvError::Empty) => break,
            }
        }
        // Datagrams, for at most one poll interval.
        match socket.recv_from(&mut buffer) {
            Ok((length, from)) => {
                // `--allow` covers the heartbeat port too: others are not even decoded.
                if !crate::config::is_allowed(allow, from.ip()) {
                    not_allowed += 1;
                    if not_allowed_log.allow() {
                        tracing::warn!(%from, "dropped a heartbeat from a host outside --allow");
                    }
                } else if let Err(reject) =
                    membership.handle_datagram(from, &buffer[..length], monotonic_ms())
                    && reject_log.allow()
                {
                    tracing::warn!(%from, %reject, "rejected a heartbeat");
                }
            }
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(error) => {
                // ICMP port unreachable from a dead peer surfaces here on Linux; it is not ours.
                if error.kind() != std::io::ErrorKind::ConnectionRefused && reject_log.allow() {
                    tracing::warn!(%error, "heartbeat socket error");
                }
            }
        }
        let now_ms = monotonic_ms();
        if membership
            .next_timeout_ms()
            .is_some_and(|deadline| deadline <= now_ms)
        {
            membership.handle_tick(now_ms);
        }
        flush_transmits(&socket, &mut membership);
        while let Some(event) = membership.poll_event() {
            observer.on_event(event);
        }
        observer.on_tick(&membership, wall_clock_ms());
        if now_ms >= last_snapshot_ms + 50 {
            last_snapshot_ms = now_ms;
            let members = membership.members();
            if let Some(warning_at) = alone_warning_at_opt {
                if members.iter().any(|member| !member.is_self) {
                    alone_warning_at_opt = None;
                } else if now_ms >= warning_at {
                    tracing::warn!(
                        join = ?seeds,
                        "no --join address has answered yet; this node runs alone until one does \
                         (check the addresses, the cluster name and secret, and --allow)"
                    );
                    alone_warning_at_opt = Some(now_ms + ALONE_WARNING_INTERVAL_MS);
                }
            }
            snapshot.store(Arc::new(MembershipSnapshot {
                members,
                stats: membership.stats(),
                not_allowed,
            }));
        }
    }
}

fn flush_transmits(socket: &UdpSocket, membership: &mut Membership) {
    while let Some(transmit) = membership.poll_transmit() {
        // A lost heartbeat is what the failure detector is built for; errors are not fatal.
        let _ = socket.send_to(&transmit.bytes, transmit.to);
    }
}

/// How long a node started with `--join` may see no other node before it warns, and how often it
/// warns again while that lasts.
const ALONE_WARNING_AFTER_MS: u64 = 5_000;
const ALONE_WARNING_INTERVAL_MS: u64 = 60_000;

/// The heartbeat address of a `--join` peer address: the same address (PROTOCOL.md §2).
pub(crate) fn seed_heartbeat_address(peer_address: SocketAddr) -> SocketAddr {
    peer_address
}
