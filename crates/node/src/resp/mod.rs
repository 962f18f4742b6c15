//! The RESP2/RESP3 front end: connections, command dispatch, replies, INFO, native scripts.

pub(crate) mod conn;
mod dispatch;
mod info;
mod reply;
pub(crate) mod scripting;
pub(crate) mod session;

pub(crate) use info::{rss_bytes, used_memory_bytes};
