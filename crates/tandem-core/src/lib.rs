//! # tandem-core
//!
//! The one deterministic state machine that both layers run: the L2 gateway to
//! predict, every L1 validator to decide. Pure: no I/O, no clock, no
//! randomness, no hash-map iteration, no floats.
//!
//! Layout:
//! - [`crypto`]: keys, signatures, hashes, domain separation.
//! - [`limits`]: every bound, with its reason.
//! - [`model`]: actors, gateways, packages, sessions (the stored state).
//! - [`message`]: steps, session batches, direct steps, admin transactions,
//!   outcomes and receipts (what is signed and sent).
//! - [`workflow`]: the workflow as a table of rules.
//! - [`apply`]: the engine; [`apply::apply`] is the only place a step is
//!   decided, [`apply::execute`] runs a transaction's bytes.
//! - [`block`]: a whole block of transactions, as L1 and the replica run it.
//! - [`reject`]: stable rejection codes.
//! - [`state`]: key layout and typed access over [`kv`].
//! - [`kv`]: the key-value view and the copy-on-write overlay.
//! - [`genesis`]: the initial actors and gateways.
//! - `testkit` (feature `testkit`): fixtures for tests.

pub mod apply;
pub mod block;
pub mod crypto;
pub mod genesis;
pub mod kv;
pub mod limits;
pub mod memo;
pub mod message;
pub mod model;
pub mod reject;
pub mod state;
pub mod workflow;

#[cfg(test)]
mod engine_tests;
#[cfg(test)]
mod fault_tests;
#[cfg(test)]
mod vectors;

#[cfg(any(test, feature = "testkit"))]
pub mod testkit;

pub use apply::{apply, execute, Ctx, TxResult};
pub use crypto::{Hash, PublicKey, SecretKey, Signature};
pub use memo::SigMemo;
pub use message::{Outcome, Step, Tx};
pub use reject::{Code, Rejection};
