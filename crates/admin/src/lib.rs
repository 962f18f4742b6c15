//! HTTP admin API, Prometheus metrics and dashboard of scd.

#![deny(missing_docs, unreachable_pub)]
