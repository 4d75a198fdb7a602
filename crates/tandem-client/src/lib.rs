//! # tandem-client
//!
//! The typed client every Rust caller uses (the CLI, the demo, the
//! benchmarks, the tests): key files, action builders, and an HTTP client
//! for the gateway that signs what it sends.
//!
//! Layout:
//! - [`keys`]: key files (`{"name", "role", "public_key", "secret_key"}`).
//! - [`actions`]: builders for every workflow action.
//! - [`http`]: [`Client`] for the gateway API and [`Session`], which keeps a
//!   session's sequence numbers and re-sends a step whose answer was lost.

pub mod actions;
pub mod http;
pub mod keys;

pub use http::{Client, ClientError, EventStream, Retry, Session, StepReply};
pub use keys::KeyFile;
