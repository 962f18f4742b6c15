//! Membership, partition table and replication of scd as sans-IO state machines.

#![deny(missing_docs, unreachable_pub)]

pub mod auth;
pub mod engine;
pub mod membership;
pub mod node_id;
pub mod table;
pub mod wire;
