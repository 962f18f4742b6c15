//! Membership, partition table and replication of scd as sans-IO state machines.

#![deny(missing_docs, unreachable_pub)]
