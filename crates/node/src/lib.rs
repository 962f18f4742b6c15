//! The tokio wiring of an scd node: listeners, connections, peer links, relay, timers.

#![deny(missing_docs, unreachable_pub)]
