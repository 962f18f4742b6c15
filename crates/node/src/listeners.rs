//! The sockets a node listens on, bound before the node starts so that a port in use is reported at
//! once and names the flag that chose it. Tests bind port 0 and read the addresses back.

use std::net::{SocketAddr, TcpListener, UdpSocket};

use socket2::{Domain, Protocol, Socket, Type};

use crate::config::NodeConfig;

/// Listen backlog for TCP listeners: a burst of web workers connecting at once must not be refused.
const LISTEN_BACKLOG: i32 = 1024;

/// Receive buffer of the heartbeat socket: room for a burst from a large cluster while the
/// membership thread is busy.
const HEARTBEAT_RECEIVE_BUFFER_BYTES: usize = 1 << 20;

/// A socket that could not be bound. The operating system's reason is the error's `source`, not
/// part of its message: printed as a chain (`{:#}` of anyhow, as the binary does) it would
/// otherwise appear twice.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {address} ({flag}){hint}")]
pub struct BindError {
    /// The command-line flag that chose the address.
    pub flag: &'static str,
    /// The address.
    pub address: SocketAddr,
    /// What the operating system said.
    #[source]
    pub source: std::io::Error,
    /// A hint for the common cases.
    pub hint: std::borrow::Cow<'static, str>,
}

/// The bound sockets of a node. All are non-blocking, ready for tokio (the heartbeat socket is
/// switched back to blocking by the membership thread that owns it).
#[derive(Debug)]
pub struct Listeners {
    /// RESP listener.
    pub client: TcpListener,
    /// memcached listener, when configured.
    pub memcached_opt: Option<TcpListener>,
    /// Peer link listener.
    pub peer: TcpListener,
    /// Heartbeat socket, on the peer address.
    pub heartbeat: UdpSocket,
    /// Admin HTTP listener, when configured.
    pub admin_opt: Option<TcpListener>,
}

impl Listeners {
    /// Binds every address of `config`. The heartbeat socket takes the port the peer listener got,
    /// so a peer address with port 0 (tests) yields one port for both.
    pub fn bind(config: &NodeConfig) -> Result<Listeners, BindError> {
        check_distinct(config)?;
        let client = bind_tcp("--client", config.client_addr)?;
        let memcached_opt = config
            .memcached_addr_opt
            .map(|address| bind_tcp("--memcached", address))
            .transpose()?;
        let peer = bind_tcp("--peer", config.peer_addr)?;
        let peer_address = peer.local_addr().map_err(|source| BindError {
            flag: "--peer",
            address: config.peer_addr,
            source,
            hint: "".into(),
        })?;
        let heartbeat = bind_udp("--peer", peer_address)?;
        let admin_opt = config
            .admin_addr_opt
            .map(|address| bind_tcp("--admin", address))
            .transpose()?;
        Ok(Listeners {
            client,
            memcached_opt,
            peer,
            heartbeat,
            admin_opt,
        })
    }

    /// The address the RESP listener actually got.
    pub fn client_addr(&self) -> SocketAddr {
        self.client
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The address the peer listener (and heartbeat socket) actually got.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The address the memcached listener actually got, when there is one.
    pub fn memcached_addr(&self) -> Option<SocketAddr> {
        self.memcached_opt
            .as_ref()
            .map(|listener| listener.local_addr().expect("bound"))
    }

    /// The address the admin listener actually got, when there is one.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_opt
            .as_ref()
            .map(|listener| listener.local_addr().expect("bound"))
    }
}

/// Refuses two flags that name the same TCP port on overlapping addresses: the second bind would
/// fail with "address in use", and the hint would blame another program.
fn check_distinct(config: &NodeConfig) -> Result<(), BindError> {
    let named: Vec<(&'static str, SocketAddr)> = [
        Some(("--client", config.client_addr)),
        config
            .memcached_addr_opt
            .map(|address| ("--memcached", address)),
        Some(("--peer", config.peer_addr)),
        config.admin_addr_opt.map(|address| ("--admin", address)),
    ]
    .into_iter()
    .flatten()
    .collect();
    // Whether binding both would collide: the same address (a v4-mapped v6 one counts as its v4
    // address), or a wildcard of the other's family, or `[::]`, which takes v4 too (the
    // listeners do not set IPV6_V6ONLY).
    let overlapping = |a: std::net::IpAddr, b: std::net::IpAddr| {
        let (a, b) = (a.to_canonical(), b.to_canonical());
        let v6_wildcard = |ip: std::net::IpAddr| ip.is_ipv6() && ip.is_unspecified();
        a == b
            || v6_wildcard(a)
            || v6_wildcard(b)
            || (a.is_ipv4() == b.is_ipv4() && (a.is_unspecified() || b.is_unspecified()))
    };
    for (index, &(flag, address)) in named.iter().enumerate() {
        for &(earlier_flag, earlier) in &named[..index] {
            if address.port() != 0
                && address.port() == earlier.port()
                && overlapping(address.ip(), earlier.ip())
            {
                return Err(BindError {
                    flag,
                    address,
                    source: std::io::ErrorKind::AddrInUse.into(),
                    hint: format!(
                        " ({earlier_flag} is {earlier}: each listener needs a port of its own)"
                    )
                    .into(),
                });
            }
        }
    }
    Ok(())
}

fn hint_for(error: &std::io::Error) -> &'static str {
    match error.kind() {
        std::io::ErrorKind::AddrInUse => {
            " (another program, perhaps another scd or a redis-server, already listens there; \
             choose another port)"
        }
        std::io::ErrorKind::AddrNotAvailable => " (no local interface has that address)",
        std::io::ErrorKind::PermissionDenied => " (ports below 1024 need privileges)",
        _ => "",
    }
}

fn bind_tcp(flag: &'static str, address: SocketAddr) -> Result<TcpListener, BindError> {
    let attempt = || -> std::io::Result<TcpListener> {
        let socket = Socket::new(
            Domain::for_address(address),
            Type::STREAM,
            Some(Protocol::TCP),
        )?;
        // A restarted node must get its port back while old connections sit in TIME_WAIT.
        socket.set_reuse_address(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&address.into())?;
        socket.listen(LISTEN_BACKLOG)?;
        Ok(socket.into())
    };
    attempt().map_err(|source| BindError {
        flag,
        address,
        hint: hint_for(&source).into(),
        source,
    })
}

fn bind_udp(flag: &'static str, address: SocketAddr) -> Result<UdpSocket, BindError> {
    let attempt = || -> std::io::Result<UdpSocket> {
        let socket = Socket::new(
            Domain::for_address(address),
            Type::DGRAM,
            Some(Protocol::UDP),
        )?;
        socket.set_reuse_address(true)?;
        // Best effort: the kernel may cap it, which only matters for very large clusters.
        let _ = socket.set_recv_buffer_size(HEARTBEAT_RECEIVE_BUFFER_BYTES);
        socket.bind(&address.into())?;
        Ok(socket.into())
    };
    attempt().map_err(|source| BindError {
        flag,
        address,
        hint: hint_for(&source).into(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loopback_config() -> NodeConfig {
        let mut config = NodeConfig::with_name("bind-test");
        config.client_addr = "127.0.0.1:0".parse().unwrap();
        config.peer_addr = "127.0.0.1:0".parse().unwrap();
        config.admin_addr_opt = Some("127.0.0.1:0".parse().unwrap());
        config.memcached_addr_opt = Some("127.0.0.1:0".parse().unwrap());
        config
    }

    #[test]
    fn heartbeat_socket_shares_the_peer_port() {
        let listeners = Listeners::bind(&loopback_config()).unwrap();
        assert_eq!(
            listeners.heartbeat.local_addr().unwrap(),
            listeners.peer_addr()
        );
        assert!(listeners.memcached_addr().is_some());
        assert!(listeners.admin_addr().is_some());
    }

    #[test]
    fn two_flags_on_one_port_are_refused_naming_both() {
        let mut config = loopback_config();
        config.client_addr = "127.0.0.1:41951".parse().unwrap();
        config.peer_addr = "127.0.0.1:41951".parse().unwrap();
        let error = Listeners::bind(&config).unwrap_err().to_string();
        assert!(error.contains("(--peer)"), "{error}");
        assert!(
            error.contains("--client is 127.0.0.1:41951: each listener needs a port of its own"),
            "{error}"
        );
        assert!(!error.contains("another program"), "{error}");
        // A v4 wildcard and a v6 address on one port do not collide on Linux.
        config.client_addr = "0.0.0.0:41951".parse().unwrap();
        config.peer_addr = "[::1]:41951".parse().unwrap();
        assert!(check_distinct(&config).is_ok());
        config.peer_addr = "[::ffff:127.0.0.1]:41951".parse().unwrap();
        assert!(check_distinct(&config).is_err());
    }

    #[test]
    fn a_port_in_use_names_its_flag() {
        let first = Listeners::bind(&loopback_config()).unwrap();
        let mut config = loopback_config();
        config.client_addr = first.client_addr();
        let error = Listeners::bind(&config).unwrap_err().to_string();
        assert!(error.contains("(--client)"), "{error}");
        assert!(error.contains("already listens there"), "{error}");
    }

    #[test]
    fn the_reason_of_a_bind_error_is_printed_once_in_its_chain() {
        let first = Listeners::bind(&loopback_config()).unwrap();
        let mut config = loopback_config();
        config.client_addr = first.client_addr();
        let error = Listeners::bind(&config).unwrap_err();
        let mut chain = error.to_string();
        let mut source_opt = std::error::Error::source(&error);
        while let Some(source) = source_opt {
            chain.push_str(&format!(": {source}"));
            source_opt = source.source();
        }
        assert_eq!(
            chain.matches("Address already in use").count(),
            1,
            "{chain}"
        );
    }
}
