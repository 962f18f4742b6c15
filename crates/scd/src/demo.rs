//! `scd demo`: a local cluster on loopback for a first look. Starts the nodes as child processes of
//! this same binary (so a node can be killed with `kill -9` to watch a failover), prefixes their log
//! lines with their names, and on Ctrl-C (or SIGTERM) lets each of them leave and waits for them.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use anyhow::Context;

use crate::cli::DemoArgs;

struct DemoNode {
    name: String,
    client_port: u16,
    memcached_port: u16,
    peer_port: u16,
    admin_port: u16,
}

impl DemoNode {
    fn new(args: &DemoArgs, index: u16) -> anyhow::Result<DemoNode> {
        let port = |offset: u16| {
            args.base_port
                .checked_add(offset + index)
                .context("--base-port is too high for the demo's ports")
        };
        Ok(DemoNode {
            name: format!("demo-{}", index + 1),
            client_port: port(0)?,
            memcached_port: port(10)?,
            peer_port: port(100)?,
            admin_port: port(200)?,
        })
    }
}

pub(crate) fn demo(args: &DemoArgs) -> anyhow::Result<()> {
    let executable = std::env::current_exe().context("cannot find the scd executable")?;
    let nodes: Vec<DemoNode> = (0..u16::from(args.nodes))
        .map(|index| DemoNode::new(args, index))
        .collect::<anyhow::Result<_>>()?;
    for node in &nodes {
        check_ports_free(node)?;
    }
    let first_peer = format!("127.0.0.1:{}", nodes[0].peer_port);
    let mut children: Vec<(String, Child)> = Vec::new();
    for node in &nodes {
        let mut command = Command::new(&executable);
        command
            .arg("run")
            .args(["--name", &node.name])
            .args(["--client", &format!("127.0.0.1:{}", node.client_port)])
            .args(["--memcached", &format!("127.0.0.1:{}", node.memcached_port)])
            .args(["--peer", &format!("127.0.0.1:{}", node.peer_port)])
            .args(["--admin", &format!("127.0.0.1:{}", node.admin_port)])
            .args(["--log-level", "info"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if node.peer_port != nodes[0].peer_port {
            command.args(["--join", &first_peer]);
        }
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(error) => {
                stop_all(&mut children);
                return Err(error).context("cannot start a demo node");
            }
        };
        if let Some(stderr) = child.stderr.take() {
            let name = node.name.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    eprintln!("[{name}] {line}");
                }
            });
        }
        children.push((node.name.clone(), child));
    }
    print_welcome(&nodes, &children);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the signal handler")?;
    runtime.block_on(wait_for_stop_or_exit(&mut children));
    stop_all(&mut children);
    Ok(())
}

/// Refuses a port something already listens on (another demo, a Redis): the node would fail to
/// start while the banner told the user to use the port.
fn check_ports_free(node: &DemoNode) -> anyhow::Result<()> {
    let tcp = [
        node.client_port,
        node.memcached_port,
        node.peer_port,
        node.admin_port,
    ];
    for port in tcp {
        std::net::TcpListener::bind(("127.0.0.1", port)).with_context(|| {
            format!(
                "port 127.0.0.1:{port} of {} is in use; choose another --base-port",
                node.name
            )
        })?;
    }
    // Heartbeats use UDP on the peer port.
    std::net::UdpSocket::bind(("127.0.0.1", node.peer_port)).with_context(|| {
        format!(
            "UDP port 127.0.0.1:{} of {} is in use; choose another --base-port",
            node.peer_port, node.name
        )
    })?;
    Ok(())
}

fn print_welcome(nodes: &[DemoNode], children: &[(String, Child)]) {
    let count = match nodes.len() {
        1 => "1 node".to_string(),
        count => format!("{count} nodes"),
    };
    println!("scd demo: {count} on loopback\n");
    for (node, (_, child)) in nodes.iter().zip(children) {
        println!(
            "  {:<7} pid {:<7} redis 127.0.0.1:{}  memcached 127.0.0.1:{}  admin http://127.0.0.1:{}/",
            node.name,
            child.id(),
            node.client_port,
            node.memcached_port,
            node.admin_port
        );
    }
    let (first, last) = (&nodes[0], &nodes[nodes.len() - 1]);
    // The binary as it was started (`cargo run` puts none on the PATH).
    let scd = std::env::current_exe()
        .ok()
        .and_then(|path| {
            let relative = std::env::current_dir().ok().and_then(|dir| {
                path.strip_prefix(dir)
                    .ok()
                    .map(std::path::Path::to_path_buf)
            });
            relative.or(Some(path))
        })
        .map_or_else(|| "scd".to_string(), |path| path.display().to_string());
    println!(
        "\nTry it:\n\
         \x20 redis-cli -p {} set greeting hello      # write through one node\n\
         \x20 redis-cli -p {} get greeting            # read through another\n\
         \x20 {scd} status --admin 127.0.0.1:{}         # the cluster as a node sees it\n\
         \x20 open http://127.0.0.1:{}/               # the dashboard\n\
         \x20 kill -9 <pid of a node>                   # and watch the others take over\n\n\
         PHP sessions on this cluster (phpredis):\n\
         \x20 session.save_handler = redis\n\
         \x20 session.save_path    = \"tcp://127.0.0.1:{}\"\n\
         \x20 redis.session.locking_enabled = 1\n\n\
         Ctrl-C stops all nodes.\n",
        first.client_port, last.client_port, first.admin_port, first.admin_port, first.client_port
    );
}

/// Waits for SIGINT/SIGTERM. A node that exits on its own (killed by the user) is reported, and the
/// demo keeps running with the others.
async fn wait_for_stop_or_exit(children: &mut [(String, Child)]) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut terminate), Ok(mut interrupt)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        eprintln!("scd demo: cannot install signal handlers; stopping");
        return;
    };
    let mut reported = vec![false; children.len()];
    let mut poll = tokio::time::interval(std::time::Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = terminate.recv() => return,
            _ = interrupt.recv() => return,
            _ = poll.tick() => {
                for ((name, child), reported) in children.iter_mut().zip(reported.iter_mut()) {
                    if !*reported && let Ok(Some(status)) = child.try_wait() {
                        eprintln!("scd demo: {name} exited ({status}); the others carry on");
                        *reported = true;
                    }
                }
            }
        }
    }
}

/// Asks every node still running to leave (SIGTERM), then waits for each.
fn stop_all(children: &mut Vec<(String, Child)>) {
    for (_, child) in children.iter_mut() {
        if let Ok(None) = child.try_wait() {
            // SAFETY: kill(2) on the id of a child we spawned and have not yet reaped.
            unsafe {
                libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
            }
        }
    }
    for (name, mut child) in children.drain(..) {
        match child.wait() {
            Ok(status) if status.success() => println!("scd demo: {name} left"),
            Ok(status) => println!("scd demo: {name} ended ({status})"),
            Err(error) => println!("scd demo: waiting for {name}: {error}"),
        }
    }
}
