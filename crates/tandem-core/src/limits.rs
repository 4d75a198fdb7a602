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

/// Largest encoded `SignedStep` a gateway takes in, in bytes. Every step the
/// workflow can accept is smaller ([`SIGNED_STEP_BYTES_MAX`], checked below),
/// so a step above it can never be accepted, and a batch always has room for
/// one more step of any accepted size.
pub const STEP_BYTES_MAX: usize = 24 * 1024;
/// Encoded size a gateway fills a batch transaction up to. Below
/// [`TX_BYTES_MAX`] with 64 KiB to spare, and its base64 form inside a
/// JSON-RPC request stays under [`L1_RPC_BODY_BYTES_MIN`] (checked below). A
/// session with more steps than fit is sent as several consecutive batches.
pub const BATCH_BYTES_MAX: usize = TX_BYTES_MAX - 64 * 1024;
/// The smallest request body a validator's RPC must accept
/// (`rpc.max_body_bytes`; CometBFT's default, which the devnet writes
/// explicitly). `broadcast_tx_sync` carries the transaction base64-encoded
/// in a JSON-RPC request, so the body is about 4/3 of the transaction.
pub const L1_RPC_BODY_BYTES_MIN: usize = 1_000_000;
/// The smallest `mempool.max_tx_bytes` a validator must allow (CometBFT's
/// default, which the devnet writes explicitly).
pub const L1_MEMPOOL_TX_BYTES_MIN: usize = 1024 * 1024;
/// Room for the JSON-RPC envelope around the base64 transaction
/// (`{"jsonrpc":"2.0","id":N,"method":"broadcast_tx_sync","params":{"tx":"…"}}`).
pub const JSON_RPC_ENVELOPE_BYTES_MAX: usize = 256;

/// Borsh size of a string of at most `max` bytes (u32 length prefix).
const fn string_bytes(max: usize) -> usize {
    4 + max
}
/// Public key, hash and signature sizes in their borsh encoding.
const KEY_BYTES: usize = 32;
const HASH_BYTES: usize = 32;
const SIGNATURE_BYTES: usize = 64;

/// Largest borsh encoding of an `Action` the workflow accepts (tag byte
/// included): a `register` with a full manifest, the other actions are
/// listed to show they are smaller.
pub const ACTION_BYTES_MAX: usize = {
    let line = string_bytes(ID_BYTES_MAX) + string_bytes(TEXT_BYTES_MAX) + 4;
    let manifest = string_bytes(CHAIN_ID_BYTES_MAX) + 2 * string_bytes(ID_BYTES_MAX) + 4 + MANIFEST_LINES_MAX * line;
    let register = manifest + SIGNATURE_BYTES;
    let scan = string_bytes(ID_BYTES_MAX);
    let validate = 4 + MANIFEST_LINES_MAX * (string_bytes(ID_BYTES_MAX) + 4);
    let qc = 1 + 4 + QC_ISSUES_MAX * string_bytes(TEXT_BYTES_MAX);
    let label = string_bytes(ID_BYTES_MAX) + string_bytes(TEXT_BYTES_MAX) + 1 + KEY_BYTES;
    let handover = KEY_BYTES;
    let deliver = string_bytes(TEXT_BYTES_MAX);
    let others = [scan, validate, qc, label, handover, deliver];
    let mut i = 0;
    while i < others.len() {
        assert!(others[i] < register);
        i += 1;
    }
    1 + register
};
/// Largest borsh encoding of a `SignedStep` the workflow accepts: chain id,
/// session, seq, actor, package id, action, client time, signature.
pub const SIGNED_STEP_BYTES_MAX: usize =
    string_bytes(CHAIN_ID_BYTES_MAX) + HASH_BYTES + 8 + KEY_BYTES + string_bytes(ID_BYTES_MAX) + ACTION_BYTES_MAX + 8 + SIGNATURE_BYTES;
/// Largest borsh encoding of a `Tx::SessionBatch` around its steps and
/// claims: tag, chain id, session, the optional open request, the two list
/// lengths, the gateway's key, the optional owner's close (chain id,
/// session, owner, last seq, signature) and the gateway's signature.
pub const BATCH_OVERHEAD_BYTES_MAX: usize = {
    let open = string_bytes(CHAIN_ID_BYTES_MAX) + KEY_BYTES + 1 + KEY_BYTES + 8 + 8 + SIGNATURE_BYTES;
    let close = string_bytes(CHAIN_ID_BYTES_MAX) + HASH_BYTES + KEY_BYTES + 8 + SIGNATURE_BYTES;
    1 + string_bytes(CHAIN_ID_BYTES_MAX) + HASH_BYTES + 1 + open + 4 + 4 + KEY_BYTES + 1 + close + SIGNATURE_BYTES
};
/// What one step adds to a batch: the signed step and its outcome claim.
pub const fn batch_step_bytes(signed_step_bytes: usize) -> usize {
    signed_step_bytes + HASH_BYTES
}

/// A full manifest's text must fit a transaction with room to spare.
const _: () = assert!(MANIFEST_LINES_MAX * (ID_BYTES_MAX + TEXT_BYTES_MAX + 16) < TX_BYTES_MAX / 4);
/// A batch of small steps must fit a transaction.
const _: () = assert!(BATCH_STEPS_MAX * 1024 <= TX_BYTES_MAX);
/// Every step the workflow accepts is under the intake bound.
const _: () = assert!(SIGNED_STEP_BYTES_MAX <= STEP_BYTES_MAX);
/// A batch always has room for one step of the largest size the gateway
/// takes in, so cutting by bytes never yields an empty batch.
const _: () = assert!(BATCH_OVERHEAD_BYTES_MAX + batch_step_bytes(STEP_BYTES_MAX) <= BATCH_BYTES_MAX);
/// A filled batch is a valid transaction.
const _: () = assert!(BATCH_BYTES_MAX <= TX_BYTES_MAX);
/// Any valid transaction passes a validator's mempool and, base64-encoded in
/// a JSON-RPC request, its RPC body limit.
const _: () = assert!(TX_BYTES_MAX <= L1_MEMPOOL_TX_BYTES_MIN);
const _: () = assert!(TX_BYTES_MAX.div_ceil(3) * 4 + JSON_RPC_ENVELOPE_BYTES_MAX <= L1_RPC_BODY_BYTES_MIN);
/// A session can always hold at least one full batch.
const _: () = assert!(BATCH_STEPS_MAX as u64 <= SESSION_STEPS_MAX);
