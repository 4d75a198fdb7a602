//! # tandem-gateway
//!
//! The L2 gateway: answers each signed step in about a millisecond with the
//! outcome L1 will compute, makes it durable, and finalizes whole sessions on
//! L1.
//!
//! Layout:
//! - [`ledger`]: sessions, locks and the tentative state (sans I/O).
//! - [`error`]: stable error codes and HTTP statuses.

pub mod error;
pub mod ledger;

#[cfg(test)]
mod ledger_tests;
