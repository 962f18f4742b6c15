//! RESP2/RESP3 frames and commands for scd; no I/O.

#![deny(missing_docs, unreachable_pub)]
