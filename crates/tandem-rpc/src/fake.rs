//! [`FakeL1`]: an in-memory chain for the gateway's unit tests.
//!
//! Not a mock: blocks run through `tandem_core::block::execute_block` and are
//! committed to a real `tandem_state::Storage`, in the same order and with the
//! same genesis handling as `tandem_l1::App::finalize_block` + `commit`, so the
//! app hashes a gateway's replica computes must match the ones reported here
//! exactly as they must match a real devnet's. What it leaves out is consensus:
//! the test decides when a block is made ([`FakeL1::produce_block`], or on a
//! timer with [`FakeL1::auto_blocks`]) and whether L1 is reachable
//! ([`FakeL1::set_available`]).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tandem_core::apply::{check_stateless, Ctx, TxResult};
use tandem_core::block::execute_block;
use tandem_core::genesis::{Genesis, GenesisError};
use tandem_core::kv::{Overlay, WriteSet};
use tandem_core::workflow::INTAKE;
use tandem_state::Storage;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::{Broadcast, L1Block, L1Error, L1};

/// Why a [`FakeL1`] cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum FakeError {
    /// The genesis does not start a chain (as `InitChain` would refuse it).
    #[error(transparent)]
    Genesis(#[from] GenesisError),
    /// The temporary store could not be created.
    #[error("cannot create the fake chain's store: {0}")]
    Storage(String),
}

/// An in-memory L1 that executes blocks for real. See the module docs.
pub struct FakeL1 {
    shared: Arc<Shared>,
    /// The `auto_blocks` timer, stopped when replaced or when the fake is dropped.
    auto: Mutex<Option<JoinHandle<()>>>,
}

struct Shared {
    chain: Mutex<Chain>,
    heights: watch::Sender<u64>,
    available: AtomicBool,
    /// The RPC request body limit `broadcast_tx_sync` is held to.
    rpc_body_bytes_max: AtomicUsize,
}

struct Chain {
    chain_id: String,
    /// The `app_state` bytes `genesis()` reports.
    app_state: Vec<u8>,
    /// Genesis writes, committed with block 1 as L1 does.
    genesis_writes: Option<WriteSet>,
    storage: Storage,
    blocks: Vec<L1Block>,
    results: Vec<Vec<TxResult>>,
    mempool: Vec<Vec<u8>>,
    /// Keeps the store's directory alive as long as the store.
    _dir: tempfile::TempDir,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A test that panicked while holding the lock leaves a consistent chain
    // (blocks are appended only after they are committed).
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl FakeL1 {
    /// A chain at height 0 with `genesis` as its `app_state`.
    pub fn new(chain_id: impl Into<String>, genesis: Genesis) -> Result<FakeL1, FakeError> {
        let chain_id = chain_id.into();
        // The same validation and writes as InitChain.
        let mut overlay = Overlay::new(std::collections::BTreeMap::<Vec<u8>, Vec<u8>>::new());
        genesis.apply(&chain_id, &mut overlay)?;
        let app_state = serde_json::to_vec(&genesis).map_err(|e| FakeError::Storage(e.to_string()))?;
        let dir = tempfile::tempdir().map_err(|e| FakeError::Storage(e.to_string()))?;
        let storage = Storage::open(&dir.path().join("state.redb")).map_err(|e| FakeError::Storage(e.to_string()))?;
        let chain = Chain {
            chain_id,
            app_state,
            genesis_writes: Some(overlay.into_writes()),
            storage,
            blocks: Vec::new(),
            results: Vec::new(),
            mempool: Vec::new(),
            _dir: dir,
        };
        let (heights, _) = watch::channel(0);
        Ok(FakeL1 {
            shared: Arc::new(Shared {
                chain: Mutex::new(chain),
                heights,
                available: AtomicBool::new(true),
                rpc_body_bytes_max: AtomicUsize::new(usize::MAX),
            }),
            auto: Mutex::new(None),
        })
    }

    /// Execute the queued transactions as the next block with block time
    /// `time_ms`, commit it, and announce its height (unless L1 is set
    /// unavailable: the chain goes on, the gateway just cannot see it).
    /// Works whether or not L1 is available.
    ///
    /// # Panics
    /// If the temporary store fails: a test cannot go on without it.
    pub fn produce_block(&self, time_ms: u64) -> L1Block {
        self.shared.produce_block(time_ms)
    }

    /// Produce a block every `interval` with the wall-clock time (kept
    /// strictly increasing, as CometBFT's block time is), until called again
    /// or the fake is dropped. Needs a Tokio runtime.
    pub fn auto_blocks(&self, interval: Duration) {
        let weak: Weak<Shared> = Arc::downgrade(&self.shared);
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(shared) = weak.upgrade() else { return };
                let last = lock(&shared.chain).blocks.last().map_or(0, |b| b.time_ms);
                shared.produce_block(wall_clock_ms().max(last + 1));
            }
        });
        if let Some(old) = lock(&self.auto).replace(task) {
            old.abort();
        }
    }

    /// Stop producing blocks on a timer.
    pub fn stop_auto_blocks(&self) {
        if let Some(task) = lock(&self.auto).take() {
            task.abort();
        }
    }

    /// While `false`, every [`L1`] call fails with [`L1Error::Unavailable`]
    /// and the height watch stands still; back to `true`, it catches up.
    pub fn set_available(&self, available: bool) {
        self.shared.available.store(available, Ordering::SeqCst);
        if available {
            let height = lock(&self.shared.chain).storage.height();
            self.shared.heights.send_replace(height);
        }
    }

    /// Refuse, as CometBFT's RPC server does past `rpc.max_body_bytes`, a
    /// broadcast whose JSON-RPC request (the transaction base64-encoded, plus
    /// [`JSON_RPC_ENVELOPE_BYTES_MAX`]) would be larger than `bytes`:
    /// [`L1Error::TooLarge`]. Unlimited by default.
    ///
    /// [`JSON_RPC_ENVELOPE_BYTES_MAX`]: tandem_core::limits::JSON_RPC_ENVELOPE_BYTES_MAX
    pub fn set_rpc_body_bytes_max(&self, bytes: usize) {
        self.shared.rpc_body_bytes_max.store(bytes, Ordering::SeqCst);
    }

    /// The committed height.
    pub fn height(&self) -> u64 {
        lock(&self.shared.chain).storage.height()
    }

    /// The app hash after the latest block (what the next block's header will
    /// carry); empty before the first block, like CometBFT's genesis app hash.
    pub fn app_hash(&self) -> Vec<u8> {
        let chain = lock(&self.shared.chain);
        if chain.storage.height() == 0 {
            Vec::new()
        } else {
            chain.storage.app_hash().to_vec()
        }
    }

    /// What L1 decided for each transaction of block `height`.
    pub fn tx_results(&self, height: u64) -> Option<Vec<TxResult>> {
        let i = usize::try_from(height.checked_sub(1)?).ok()?;
        lock(&self.shared.chain).results.get(i).cloned()
    }

    /// How many transactions wait for the next block.
    pub fn mempool_len(&self) -> usize {
        lock(&self.shared.chain).mempool.len()
    }

    /// A read view of the committed state, for assertions.
    pub fn snapshot(&self) -> tandem_state::Snapshot {
        lock(&self.shared.chain).storage.snapshot()
    }

    fn check_available(&self) -> Result<(), L1Error> {
        if self.shared.available.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(L1Error::Unavailable("FakeL1 is set unavailable".into()))
        }
    }
}

impl Drop for FakeL1 {
    fn drop(&mut self) {
        self.stop_auto_blocks();
    }
}

impl std::fmt::Debug for FakeL1 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let chain = lock(&self.shared.chain);
        f.debug_struct("FakeL1")
            .field("chain_id", &chain.chain_id)
            .field("height", &chain.storage.height())
            .field("mempool", &chain.mempool.len())
            .field("available", &self.shared.available.load(Ordering::SeqCst))
            .finish()
    }
}

impl Shared {
    fn produce_block(&self, time_ms: u64) -> L1Block {
        let mut chain = lock(&self.chain);
        let height = chain.storage.height() + 1;
        let txs = std::mem::take(&mut chain.mempool);
        // Exactly `App::finalize_block`: genesis writes preloaded into block 1,
        // every transaction through `execute_block` on the committed state.
        let ctx = Ctx { chain_id: &chain.chain_id, time_ms, workflow: &INTAKE, sigs: None };
        let preload = if height == 1 { chain.genesis_writes.clone().unwrap_or_default() } else { WriteSet::new() };
        let snapshot = chain.storage.snapshot();
        let executed = execute_block(&snapshot, &ctx, preload, &txs);
        drop(snapshot);
        let app_hash_before = if height == 1 { Vec::new() } else { chain.storage.app_hash().to_vec() };
        // And `App::commit`.
        let pending = chain.storage.prepare(height, &executed.writes).expect("the fake store computes the next version");
        chain.storage.commit(pending).expect("the fake store persists a block");
        if height == 1 {
            chain.genesis_writes = None;
        }
        let block = L1Block {
            height,
            time_ms,
            chain_id: chain.chain_id.clone(),
            block_hash: block_hash(height, time_ms, &app_hash_before, &txs),
            txs,
            app_hash_before,
        };
        chain.blocks.push(block.clone());
        chain.results.push(executed.results);
        drop(chain);
        if self.available.load(Ordering::SeqCst) {
            self.heights.send_replace(height);
        }
        block
    }
}

/// A stand-in for the block hash: unique per block content, uppercase hex
/// like CometBFT's, nothing more is promised.
fn block_hash(height: u64, time_ms: u64, app_hash_before: &[u8], txs: &[Vec<u8>]) -> String {
    let mut h = Sha256::new();
    h.update(b"tandem-fake-block");
    h.update(height.to_be_bytes());
    h.update(time_ms.to_be_bytes());
    h.update((app_hash_before.len() as u64).to_be_bytes());
    h.update(app_hash_before);
    for tx in txs {
        h.update(Sha256::digest(tx));
    }
    hex::encode_upper(h.finalize())
}

fn wall_clock_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[async_trait::async_trait]
impl L1 for FakeL1 {
    async fn broadcast_tx_sync(&self, tx: Vec<u8>) -> Result<Broadcast, L1Error> {
        self.check_available()?;
        let body = tx.len().div_ceil(3) * 4 + tandem_core::limits::JSON_RPC_ENVELOPE_BYTES_MAX;
        if body > self.shared.rpc_body_bytes_max.load(Ordering::SeqCst) {
            return Err(L1Error::TooLarge("error reading request body: http: request body too large".into()));
        }
        // CometBFT's tx hash: SHA-256 of the bytes.
        let hash = hex::encode_upper(Sha256::digest(&tx));
        // CheckTx as L1 runs it: stateless, a code rather than an error.
        if let Err(r) = check_stateless(&tx, None) {
            return Ok(Broadcast { code: r.code.number(), log: r.to_string(), hash });
        }
        let mut chain = lock(&self.shared.chain);
        if chain.mempool.contains(&tx) {
            return Err(L1Error::AlreadyInMempool);
        }
        chain.mempool.push(tx);
        Ok(Broadcast { code: 0, log: String::new(), hash })
    }

    async fn latest_height(&self) -> Result<u64, L1Error> {
        self.check_available()?;
        Ok(self.height())
    }

    async fn block(&self, height: u64) -> Result<L1Block, L1Error> {
        self.check_available()?;
        let chain = lock(&self.shared.chain);
        let current = chain.storage.height();
        height.checked_sub(1).and_then(|i| usize::try_from(i).ok()).and_then(|i| chain.blocks.get(i).cloned()).ok_or_else(|| {
            // Worded like CometBFT's answer for the same request.
            L1Error::Rpc(format!("height {height} must be less than or equal to the current blockchain height {current}"))
        })
    }

    async fn genesis(&self) -> Result<(String, Vec<u8>), L1Error> {
        self.check_available()?;
        let chain = lock(&self.shared.chain);
        Ok((chain.chain_id.clone(), chain.app_state.clone()))
    }

    fn subscribe_heights(&self) -> watch::Receiver<u64> {
        self.shared.heights.subscribe()
    }

    async fn validators(&self) -> Vec<(String, Option<u64>)> {
        let height = self.check_available().ok().map(|()| self.height());
        vec![("fake://l1".to_string(), height)]
    }
}
