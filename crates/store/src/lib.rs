//! The in-memory partitioned session store of scd: values, versions, expiry, locks; no tokio.

#![deny(missing_docs, unreachable_pub)]
