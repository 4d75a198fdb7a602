//! The gateway's view of L1, behind the [`L1`] trait so that the gateway can be
//! tested against an in-memory chain instead of a devnet.
//!
//! - [`CometRpc`] talks to one or more CometBFT validators over their JSON-RPC
//!   (HTTP for requests, a websocket for new-block notifications), failing over
//!   between them in order.
//! - `FakeL1` (feature `fake`) is an in-memory chain that executes blocks with
//!   the real state machine and computes real app hashes, so a gateway under
//!   test sees exactly what it would see from CometBFT.
//!
//! Heights are a wake-up signal only ([`L1::subscribe_heights`]): consumers
//! fetch the blocks themselves with [`L1::block`], so a skipped notification
//! never loses a block.

mod comet;
#[cfg(feature = "fake")]
mod fake;

pub use comet::{CometRpc, CometRpcConfig, ConfigError};
#[cfg(feature = "fake")]
pub use fake::{FakeError, FakeL1};

/// One finalized block as the gateway needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct L1Block {
    /// The block's height (≥ 1).
    pub height: u64,
    /// Header time in milliseconds since the Unix epoch, converted exactly as
    /// the validators convert it for `Ctx::time_ms`, so a replica decides
    /// with the same clock.
    pub time_ms: u64,
    /// The chain id in the header.
    pub chain_id: String,
    /// The transactions, in block order.
    pub txs: Vec<Vec<u8>>,
    /// `header.app_hash`: the app state after block `height - 1` (empty for
    /// height 1, the genesis app hash).
    pub app_hash_before: Vec<u8>,
    /// The block hash, uppercase hex as CometBFT prints it.
    pub block_hash: String,
}

/// The answer of `broadcast_tx_sync`: the result of CheckTx.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Broadcast {
    /// 0 when admitted to the mempool, the rejection code otherwise.
    pub code: u32,
    /// Why it was refused (empty when admitted).
    pub log: String,
    /// The transaction hash (SHA-256 of the bytes), uppercase hex.
    pub hash: String,
}

/// Why a call to L1 failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum L1Error {
    /// No validator answered (connection refused, timeout, …).
    #[error("L1 unavailable: {0}")]
    Unavailable(String),
    /// The mempool already holds (or its cache remembers) these exact bytes.
    #[error("transaction already in the mempool")]
    AlreadyInMempool,
    /// A validator refused the transaction for its size before CheckTx: the
    /// RPC request body is over `rpc.max_body_bytes` (the transaction travels
    /// base64-encoded) or the transaction over `mempool.max_tx_bytes`.
    /// Sending the same bytes again cannot succeed.
    #[error("L1 refused the transaction for its size: {0}")]
    TooLarge(String),
    /// A validator answered, but with an error or with content we cannot read.
    #[error("L1 RPC error: {0}")]
    Rpc(String),
}

/// The gateway's view of L1. Object-safe: the gateway holds an `Arc<dyn L1>`.
#[async_trait::async_trait]
pub trait L1: Send + Sync + 'static {
    /// Submit a transaction and return the CheckTx result.
    async fn broadcast_tx_sync(&self, tx: Vec<u8>) -> Result<Broadcast, L1Error>;
    /// The latest committed height.
    async fn latest_height(&self) -> Result<u64, L1Error>;
    /// The finalized block at `height`.
    async fn block(&self, height: u64) -> Result<L1Block, L1Error>;
    /// The chain id and the `app_state` of the genesis document, as JSON bytes.
    async fn genesis(&self) -> Result<(String, Vec<u8>), L1Error>;
    /// Heights of new blocks as they are committed: a wake-up signal that may
    /// skip heights; consumers fetch blocks by height.
    fn subscribe_heights(&self) -> tokio::sync::watch::Receiver<u64>;
    /// For `/v1/status`: each configured validator RPC URL with its latest
    /// height, or `None` if it did not answer.
    async fn validators(&self) -> Vec<(String, Option<u64>)>;
    /// For `/v1/network`: each configured validator RPC URL with the app hash
    /// (uppercase hex) in the header of its block `height`, which is the state
    /// after `height - 1`, or `None` if it did not answer. The default knows
    /// no validators (an L1 without per-validator views).
    async fn app_hashes(&self, _height: u64) -> Vec<(String, Option<String>)> {
        Vec::new()
    }
}

/// Block time as milliseconds since the Unix epoch, 0 for times before it.
/// The same arithmetic as `tandem_l1::app::time_ms` (restated rather than
/// imported so the gateway does not link the ABCI application): a replica that
/// rounded differently would decide time windows differently from L1.
pub(crate) fn time_ms(t: tendermint::Time) -> u64 {
    u64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}
