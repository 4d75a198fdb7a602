//! # tandem-l1
//!
//! The application every validator runs under CometBFT (ABCI 2.0, CometBFT
//! v0.38). The only crate that knows ABCI. Every decision is delegated to
//! `tandem_core`; every byte of state to `tandem_state`.
//!
//! Layout:
//! - [`app`]: the ABCI calls as plain methods (init, check, propose, finalize,
//!   commit, query), with crash points for fault-injection tests.
//! - [`server`]: the four tower services and the socket listener.

pub mod app;
pub mod server;

pub use app::{App, CrashPoint};
pub use server::serve;
