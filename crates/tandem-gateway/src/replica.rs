//! The gateway's own copy of L1's state: a non-voting replica that replays
//! every finalized block with the same `tandem_core` code the validators run,
//! into the same authenticated storage, and checks that it reaches the app
//! hash the validators signed. Its view of L1 is exact, costs no query per
//! step, and doubles as an audit of the chain.

use std::path::Path;
use std::sync::Arc;

use tandem_core::apply::Ctx;
use tandem_core::block::execute_block;
use tandem_core::crypto::Domain;
use tandem_core::genesis::Genesis;
use tandem_core::kv::{Overlay, WriteSet};
use tandem_core::message::{SessionBatch, Tx};
use tandem_core::workflow::INTAKE;
use tandem_core::{PublicKey, SigMemo};
use tandem_rpc::L1Block;
use tandem_state::{Snapshot, Storage};

use crate::finality::{entries, FinalityIndex, IndexError};
use crate::ledger::{tx_hash, ReplayedBlock};

/// Why a block could not be replayed.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    /// The store failed.
    #[error("replica storage: {0}")]
    Storage(#[from] tandem_state::StorageError),
    /// Not the next block.
    #[error("expected block {expected}, got {got}")]
    OutOfOrder {
        /// The next height.
        expected: u64,
        /// What was given.
        got: u64,
    },
    /// Our state differs from the validators': a bug, or a chain that runs
    /// other code. The gateway stops predicting rather than predict wrong.
    #[error("replayed state diverges from L1 at height {height}: ours {ours}, validators' {theirs}")]
    Diverged {
        /// The height whose result differs.
        height: u64,
        /// Our app hash.
        ours: String,
        /// The app hash in the next block's header.
        theirs: String,
    },
    /// The block is for another chain.
    #[error("block is for chain {0:?}")]
    WrongChain(String),
    /// The finality index failed.
    #[error(transparent)]
    Index(#[from] IndexError),
}

/// The replica.
pub struct Replica {
    storage: Storage,
    chain_id: String,
    genesis: WriteSet,
    /// Signatures the gateway verified at intake: its own batches replay
    /// without verifying them again.
    sigs: Arc<SigMemo>,
    /// Where each replayed step became final, written before the block is
    /// committed here (see [`crate::finality`]).
    index: FinalityIndex,
}

impl Replica {
    /// Open (or create) the replica's store under `dir` for the chain with
    /// this genesis, replaying with the signature memo `sigs`.
    pub fn open(dir: &Path, chain_id: &str, genesis: &Genesis, sigs: Arc<SigMemo>) -> anyhow::Result<Replica> {
        std::fs::create_dir_all(dir)?;
        let storage = Storage::open(&dir.join("replica.redb"))?;
        let index = FinalityIndex::open(&dir.join("finality.redb"))?;
        let mut overlay = Overlay::new(std::collections::BTreeMap::<Vec<u8>, Vec<u8>>::new());
        genesis.apply(chain_id, &mut overlay)?;
        Ok(Replica { storage, chain_id: chain_id.to_string(), genesis: overlay.into_writes(), sigs, index })
    }

    /// Last replayed height.
    pub fn height(&self) -> u64 {
        self.storage.height()
    }

    /// The replayed state at [`Replica::height`].
    pub fn snapshot(&self) -> Snapshot {
        self.storage.snapshot()
    }

    /// The finality index of every step replayed so far.
    pub fn index(&self) -> &FinalityIndex {
        &self.index
    }

    /// Replay the next block. Checks the app hash the block's header carries
    /// for the previous height against ours before applying. The finalized
    /// steps go into the finality index before the block is committed, so
    /// the index never lags the replica; `now_ms` is the gateway's clock.
    pub fn apply(&self, block: &L1Block, now_ms: u64) -> Result<ReplayedBlock, ReplicaError> {
        let expected = self.storage.height() + 1;
        if block.height != expected {
            return Err(ReplicaError::OutOfOrder { expected, got: block.height });
        }
        if block.chain_id != self.chain_id {
            return Err(ReplicaError::WrongChain(block.chain_id.clone()));
        }
        // Height 1's header carries the genesis app hash (empty).
        if block.height > 1 && block.app_hash_before != self.storage.app_hash() {
            return Err(ReplicaError::Diverged {
                height: block.height - 1,
                ours: hex::encode_upper(self.storage.app_hash()),
                theirs: hex::encode_upper(&block.app_hash_before),
            });
        }
        let ctx = Ctx { chain_id: &self.chain_id, time_ms: block.time_ms, workflow: &INTAKE, sigs: Some(&self.sigs) };
        let preload = if block.height == 1 { self.genesis.clone() } else { WriteSet::new() };
        let snapshot = self.storage.snapshot();
        let result = execute_block(&snapshot, &ctx, preload, &block.txs);
        let pending = self.storage.prepare(block.height, &result.writes)?;
        let results: Vec<_> = block.txs.iter().map(|t| tx_hash(t)).zip(result.results).collect();
        self.index.record(&entries(block.height, now_ms, &block.txs, &results))?;
        self.storage.commit(pending)?;
        Ok(ReplayedBlock { height: block.height, results })
    }

    /// The session batches in `block` whose signature verifies under `key`,
    /// with their transaction hashes: what the gateway holding `key` audits
    /// against the batches it built. Run after [`Replica::apply`], the
    /// signatures are found in the memo.
    pub fn batches_signed_by(&self, block: &L1Block, key: &PublicKey) -> Vec<(String, SessionBatch)> {
        block
            .txs
            .iter()
            .filter_map(|bytes| match Tx::decode(bytes) {
                Ok(Tx::SessionBatch(b)) if b.body.gateway == *key => Some((tx_hash(bytes), b)),
                _ => None,
            })
            .filter(|(_, b)| key.verify_memo(Domain::Batch, &b.body, &b.signature, Some(&self.sigs)))
            .collect()
    }
}
