//! Node identity: the [`NodeId`] derived from a node's configured name and the [`Incarnation`]
//! that tells one run of a node from the next.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The longest node name accepted, in bytes. Names travel in every heartbeat and gossip entry, so
/// the bound keeps a heartbeat with a full gossip list well under the datagram limit.
pub const NODE_NAME_LEN_MAX: usize = 64;

/// A node's id: the low 32 bits of `xxh3_64(name)`.
///
/// It is what the heartbeat header carries as the sender id and what value versions carry. Two
/// names can collide; membership rejects the second name it sees with an id already taken, so a
/// collision shows up as a loud rejection instead of two nodes silently merged into one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NodeId(pub u32);

impl NodeId {
    /// The id of the node configured with `name`.
    pub fn from_name(name: &str) -> NodeId {
        // Truncation to 32 bits is the definition of the id (the header field is a u32).
        NodeId(xxhash_rust::xxh3::xxh3_64(name.as_bytes()) as u32)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{:08x}", self.0)
    }
}

/// One run of a node: new at every start, passed in by the caller.
///
/// Incarnations of one name must increase from one start to the next (the node layer uses the
/// wall clock in milliseconds at start, raised above any incarnation it persisted): membership
/// lets a higher incarnation replace a lower one and rejects a lower one as stale, which is what
/// keeps a delayed datagram of a previous run from flipping a restarted node back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Incarnation(pub u64);

impl fmt::Display for Incarnation {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}", self.0)
    }
}

/// Whether `name` is acceptable as a node or cluster name: 1 to [`NODE_NAME_LEN_MAX`] bytes and no
/// control characters (names end up in logs and on status pages).
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= NODE_NAME_LEN_MAX && !name.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_id_is_the_low_half_of_xxh3_of_the_name() {
        let name = "web-1";
        let expected = xxhash_rust::xxh3::xxh3_64(name.as_bytes()) & 0xffff_ffff;
        assert_eq!(NodeId::from_name(name).0 as u64, expected);
        assert_eq!(NodeId::from_name(name), NodeId::from_name("web-1"));
        assert_ne!(NodeId::from_name(name), NodeId::from_name("web-2"));
    }

    #[test]
    fn names_are_bounded_and_printable() {
        fn check(name: &str, expect: bool) {
            assert_eq!(is_valid_name(name), expect, "{name:?}");
        }
        check("web-1", true);
        check("", false);
        check(&"a".repeat(NODE_NAME_LEN_MAX), true);
        check(&"a".repeat(NODE_NAME_LEN_MAX + 1), false);
        check("web\n1", false);
        check("nœud-été", true);
    }

    #[test]
    fn node_id_displays_as_eight_hex_digits() {
        assert_eq!(NodeId(0xab).to_string(), "000000ab");
    }
}
