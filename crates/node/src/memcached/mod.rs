//! The memcached front end: text and binary protocol clients served from the same store, router
//! and cluster as the RESP front end.
//!
//! A connection's first byte picks its protocol (`memcache::detect_protocol`), and from then on
//! one parser of the `memcache` codec turns its bytes into requests. Each request becomes one
//! store [`Op`](store::Op) per key, run through the [`Router`](crate::router::Router) — never on
//! the store directly, so a relayed or replicated op answers later and its reply is queued in
//! order (`conn.rs`). memcached keys live in database 0: `set k` here and `GET k` through RESP on
//! database 0 read the same value; the client flags are kept for memcached and invisible to RESP.
//!
//! Where scd differs from memcached, on purpose:
//!
//! - `flush_all` empties database 0 (the memcached keyspace), not the RESP databases 1-15. With a
//!   delay it answers `OK` at once and flushes when the node's clock reaches the deadline; a later
//!   `flush_all` replaces a pending one, as memcached's does (`flush.rs`).
//! - With `--requirepass`, binary clients authenticate with SASL `PLAIN` (any user name; only the
//!   password is checked), and text clients with memcached's own convention for `-Y`: a first
//!   `set <any key> <flags> <exptime> <bytes>` whose data is `<user> <password>`, answered
//!   `STORED`; before that every text command but `quit` gets `CLIENT_ERROR unauthenticated`
//!   (`auth.rs`). Without a password every SASL exchange succeeds.
//! - Meta commands: `mg` reports `h0` and `l0` (scd does not track accesses); the anti-stampede
//!   flags that need per-item state scd does not keep (`mg R`, `ms I`, `md I`, and `E` everywhere)
//!   are refused with a `CLIENT_ERROR` naming the flag (`meta.rs`).
//! - `stats` counts connections, bytes read and written for the whole node (RESP included);
//!   `limit_maxbytes` is `--max-memory`, 0 when memory is not bounded; nothing is ever evicted.
//! - A touch (`touch`, `gat`, TOUCH, `mg ... T`) gives the item a new CAS: it is a write that
//!   replicates like any other, so it gets a new version.
//! - A store refused for its size leaves the old value (memcached unlinks it): nothing is lost
//!   because a write was refused.
//!
//! The README lists these and the smaller differences a differential run against memcached
//! 1.6.18 found (the 256-key text get, control characters in keys, number edges, stats).

mod auth;
mod binary;
mod conn;
mod flush;
mod meta;
mod ops;
mod stats;
mod text;

pub(crate) use conn::serve;
pub(crate) use stats::{COMMAND_NAMES, NodeMemcached};

/// The version clients see: a memcached version first, because libmemcached parses
/// `major.minor.micro` from the front of it (and reads a binary VERSION answer into a 32-byte
/// buffer, a `stats` version into a 24-byte one), then what the server really is.
const VERSION: &str = concat!("1.6.21 scd ", env!("CARGO_PKG_VERSION"));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_fits_the_buffers_libmemcached_reads_it_into() {
        assert!(VERSION.starts_with("1.6.21 scd "));
        assert!(VERSION.len() < 24, "{VERSION} is too long for libmemcached");
    }
}
