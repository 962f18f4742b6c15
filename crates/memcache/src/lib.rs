//! memcached text and binary protocol codec for scd; no I/O.

#![deny(missing_docs, unreachable_pub)]
