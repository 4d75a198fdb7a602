//! # tandem-core
//!
//! The one deterministic state machine that both layers run: the L2 gateway to
//! predict, every L1 validator to decide. Pure: no I/O, no clock, no
//! randomness, no hash-map iteration, no floats.
//!
//! Layout:
//! - [`kv`]: the key-value view and the copy-on-write overlay execution runs on.

pub mod kv;
