//! Every bound the state machine enforces, in one place. Each limit has a reason;
//! the compile-time checks at the bottom keep them consistent with each other.

/// Longest package, item, label or delivery-note identifier, in bytes. Ids are
/// printed on labels and scanned from barcodes; 64 is far above any real code.
pub const ID_BYTES_MAX: usize = 64;
/// Longest free-text field (description, destination, issue, station,
/// recipient), in bytes. Enough for a sentence, small enough to keep a package
/// record bounded.
pub const TEXT_BYTES_MAX: usize = 256;
/// Longest actor or gateway display name, in bytes.
pub const NAME_BYTES_MAX: usize = 64;
/// Lines in one manifest. A pallet-sized delivery note; bigger deliveries are
/// split into several packages.
pub const MANIFEST_LINES_MAX: usize = 64;
/// Issues recorded by one quality check.
pub const QC_ISSUES_MAX: usize = 16;
/// Quantity of one manifest line. Keeps sums far from overflow.
pub const QUANTITY_MAX: u32 = 1_000_000;
/// Entries in a package's history. The intake workflow has 7 steps; a package
/// that has seen this many is stuck and must be investigated, not extended.
pub const PACKAGE_HISTORY_MAX: usize = 32;
/// Steps in one session over its whole life (all checkpoints together).
pub const SESSION_STEPS_MAX: u64 = 10_000;
/// Steps in one batch transaction (one checkpoint of a session). A longer
/// session is sent as several consecutive checkpoints.
pub const BATCH_STEPS_MAX: usize = 256;
/// Largest transaction accepted, in bytes. Below CometBFT's default
/// `max_tx_bytes` (1 MiB) so that a full batch always fits a block.
pub const TX_BYTES_MAX: usize = 512 * 1024;
/// How far a step's client timestamp may be from the block time, in
/// milliseconds, either way. Generous (10 minutes) so that a prediction made at
/// L2 is not overturned by clock skew while the session is in flight; the
/// gateway's auto-commit timer keeps sessions far inside it.
pub const STEP_TIME_WINDOW_MS: u64 = 10 * 60 * 1000;
/// Longest chain id, in bytes (CometBFT's own limit is 50).
pub const CHAIN_ID_BYTES_MAX: usize = 50;

/// A full manifest's text must fit a transaction with room to spare.
const _: () = assert!(MANIFEST_LINES_MAX * (ID_BYTES_MAX + TEXT_BYTES_MAX + 16) < TX_BYTES_MAX / 4);
/// A batch of small steps must fit a transaction.
const _: () = assert!(BATCH_STEPS_MAX * 1024 <= TX_BYTES_MAX);
/// A session can always hold at least one full batch.
const _: () = assert!(BATCH_STEPS_MAX as u64 <= SESSION_STEPS_MAX);
