//! What a RESP connection remembers between commands: protocol version, database, authentication,
//! client name, and when it last did something.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use resp::{Limits, ProtocolVersion};

use crate::config::NodeConfig;

/// Per-connection state of a RESP client.
pub(crate) struct Session {
    pub(crate) id: u64,
    pub(crate) peer: SocketAddr,
    pub(crate) local: SocketAddr,
    pub(crate) protocol: ProtocolVersion,
    pub(crate) db: u8,
    pub(crate) authenticated: bool,
    pub(crate) name_opt: Option<Bytes>,
    pub(crate) library_name_opt: Option<Bytes>,
    pub(crate) library_version_opt: Option<Bytes>,
    pub(crate) created_at: Instant,
    pub(crate) last_command_at: Instant,
    pub(crate) last_command: &'static str,
    /// Set by QUIT: close after the reply is written.
    pub(crate) closing: bool,
    /// The `SESSION` locks this connection holds, released when it closes; made by the first
    /// `SCD.LOCK … SESSION`.
    pub(crate) locks_opt: Option<crate::locks::SessionLocks>,
}

impl Session {
    pub(crate) fn new(
        id: u64,
        peer: SocketAddr,
        local: SocketAddr,
        config: &NodeConfig,
    ) -> Session {
        let now = Instant::now();
        Session {
            id,
            peer,
            local,
            protocol: ProtocolVersion::Resp2,
            db: 0,
            authenticated: config.requirepass_opt.is_none(),
            name_opt: None,
            library_name_opt: None,
            library_version_opt: None,
            created_at: now,
            last_command_at: now,
            last_command: "NULL",
            closing: false,
            locks_opt: None,
        }
    }

    /// RESET: back to the state of a new connection (keeping its id and addresses).
    pub(crate) fn reset(&mut self, config: &NodeConfig) {
        self.protocol = ProtocolVersion::Resp2;
        self.db = 0;
        self.authenticated = config.requirepass_opt.is_none();
        self.name_opt = None;
    }

    /// The request limits in force: small ones until the client has authenticated, so an
    /// unauthenticated connection cannot make the node buffer much.
    pub(crate) fn limits(&self, config: &NodeConfig) -> Limits {
        if self.authenticated {
            full_limits(config)
        } else {
            Limits::BEFORE_AUTH
        }
    }

    /// The line `CLIENT INFO` answers, in Redis' format.
    pub(crate) fn client_info_line(&self) -> String {
        let text = |bytes_opt: &Option<Bytes>| {
            bytes_opt
                .as_ref()
                .map(|bytes| String::from_utf8_lossy(bytes).into_owned())
                .unwrap_or_default()
        };
        format!(
            "id={} addr={} laddr={} fd=-1 name={} age={} idle={} flags=N db={} sub=0 psub=0 ssub=0 \
             multi=-1 watch=0 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 tot-mem=0 rbs=0 rbp=0 obl=0 \
             oll=0 omem=0 events=r cmd={} user=default redir=-1 resp={} lib-name={} lib-ver={}\n",
            self.id,
            self.peer,
            self.local,
            text(&self.name_opt),
            self.created_at.elapsed().as_secs(),
            self.last_command_at.elapsed().as_secs(),
            self.db,
            self.last_command,
            self.protocol.number(),
            text(&self.library_name_opt),
            text(&self.library_version_opt),
        )
    }
}

/// Request limits once authenticated: an argument up to `--max-value-bytes`, or up to the
/// store's key limit (64 KiB) when that is larger, so that a key gets the key limit's error
/// (and a value between the two the value limit's, from the store, on an open connection); a
/// request up to four values plus room for keys (MSET of several sessions), at least 64 MiB.
pub(crate) fn full_limits(config: &NodeConfig) -> Limits {
    Limits {
        max_request_bytes: (config.max_value_bytes.saturating_mul(4) + (1 << 20)).max(64 << 20),
        max_args: 1_000_000,
        max_bulk_bytes: config
            .max_value_bytes
            .max(store::StoreConfig::default().max_key_bytes),
        max_inline_bytes: 64 << 10,
    }
}
