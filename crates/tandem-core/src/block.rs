//! A block's worth of execution: the genesis writes (first block only) and
//! every transaction in order, each through [`crate::apply::execute`], on one
//! overlay whose write set is what the block commits. L1 validators run it in
//! `FinalizeBlock`; the gateway's replica runs it on every finalized block.

use crate::apply::{execute, Ctx, TxResult};
use crate::kv::{KvRead, Overlay, WriteSet};

/// What a block did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockResult {
    /// One result per transaction, in block order.
    pub results: Vec<TxResult>,
    /// Every write of the block, in key order.
    pub writes: WriteSet,
}

/// Execute `txs` on top of `base`. `preload` is written first (the genesis
/// writes when this is the chain's first block, empty otherwise).
pub fn execute_block<T: AsRef<[u8]>>(base: &impl KvRead, ctx: &Ctx<'_>, preload: WriteSet, txs: &[T]) -> BlockResult {
    let mut overlay = Overlay::new(base);
    overlay.absorb(preload);
    let results = txs.iter().map(|tx| execute(&mut overlay, ctx, tx.as_ref())).collect();
    BlockResult { results, writes: overlay.into_writes() }
}
