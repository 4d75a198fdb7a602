//! # tandem-gateway
//!
//! The L2 gateway: answers each signed step in about a millisecond with the
//! outcome L1 will compute, makes it durable, and finalizes whole sessions on
//! L1.
//!
//! Layout:
//! - [`ledger`]: sessions, locks and the tentative state (sans I/O).
//! - [`error`]: stable error codes and HTTP statuses.
//! - [`replica`]: the gateway's replay of L1 (exact committed state).
//! - [`finality`]: the durable index of finalized steps.
//! - [`service`]: the running gateway: lock, WAL, follower and ticker tasks.
//! - [`api`]: the HTTP routes, limits and JSON shapes (`openapi.json`).
//! - [`limit`]: the per-client request rate limit.
//! - [`metrics`]: Prometheus metrics.

pub mod api;
pub mod error;
pub mod finality;
pub mod ledger;
pub mod limit;
pub mod metrics;
pub mod replica;
pub mod service;

#[cfg(test)]
mod ledger_tests;
