//! Deterministic multi-node simulation of scd clusters over the sans-IO cores.

#![deny(missing_docs, unreachable_pub)]
