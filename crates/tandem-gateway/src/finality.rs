//! The durable finality index: for every step the gateway saw finalized on
//! L1 — through its own batches, another gateway's, or a direct step — the
//! block height, the transaction hash, the signed step and its outcome.
//!
//! It answers what a client needs after the gateway forgot a session or was
//! restarted: where a step became final (`GET /v1/packages/{id}`,
//! `GET /v1/sessions/{id}`), and the original answer and receipt to a
//! byte-identical re-send of an accepted step.
//!
//! One small redb file in the data folder (`finality.redb`), written by the
//! follower while it replays a block, *before* the replica commits that
//! block: a crash in between replays the block again and rewrites the same
//! entries, so every block the replica has is indexed. The step path never
//! writes here.
//!
//! Size: one entry (a few hundred bytes) per finalized step, kept for as long
//! as the data folder lives. It grows with L1's history, as the replica's
//! store beside it does (which keeps every version of every value); a
//! gateway that must forget old steps is given a fresh data folder, as for
//! the replica.

use std::ops::Bound;
use std::path::Path;

use borsh::{BorshDeserialize, BorshSerialize};
use redb::{Database, Durability, ReadableDatabase, TableDefinition};
use tandem_core::apply::TxResult;
use tandem_core::message::{SignedStep, Tx};
use tandem_core::{Hash, Outcome, PublicKey};

use crate::ledger::Finality;

/// (session id, seq as 8 big-endian bytes) → borsh [`FinalStep`].
const STEPS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("final_steps");

/// A finalized step, as the index keeps it.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct FinalStep {
    /// L1 block height.
    pub height: u64,
    /// Transaction hash (uppercase hex).
    pub tx_hash: String,
    /// Gateway clock when the block was replayed (ms since the epoch).
    pub seen_ms: u64,
    /// The signed step, whole.
    pub signed: SignedStep,
    /// Its outcome as L1 computed it.
    pub outcome: Outcome,
    /// The gateway whose batch carried it; `None` for a direct L1 step.
    pub gateway: Option<PublicKey>,
}

impl FinalStep {
    /// Where it became final.
    pub fn finality(&self) -> Finality {
        Finality { height: self.height, tx_hash: self.tx_hash.clone(), seen_ms: self.seen_ms }
    }
}

/// Why the index could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("finality index: {0}")]
pub struct IndexError(String);

fn err(e: impl std::fmt::Display) -> IndexError {
    IndexError(e.to_string())
}

/// The index.
pub struct FinalityIndex {
    db: Database,
}

fn key(session: &Hash, seq: u64) -> [u8; 40] {
    let mut k = [0u8; 40];
    k[..32].copy_from_slice(&session.0);
    k[32..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// The entries a replayed block adds: one per step of each committed batch
/// and each committed direct step, in block order.
pub fn entries(height: u64, seen_ms: u64, txs: &[Vec<u8>], results: &[(String, TxResult)]) -> Vec<FinalStep> {
    let mut out = Vec::new();
    for (tx, (tx_hash, result)) in txs.iter().zip(results) {
        let entry = |signed: SignedStep, outcome: Outcome, gateway: Option<PublicKey>| FinalStep {
            height,
            tx_hash: tx_hash.clone(),
            seen_ms,
            signed,
            outcome,
            gateway,
        };
        match (result, Tx::decode(tx)) {
            (TxResult::Committed { outcomes, .. }, Ok(Tx::SessionBatch(batch))) => {
                let gateway = batch.body.gateway;
                for (signed, outcome) in batch.body.steps.into_iter().zip(outcomes.iter().cloned()) {
                    out.push(entry(signed, outcome, Some(gateway)));
                }
            }
            (TxResult::Direct { outcome, .. }, Ok(Tx::DirectStep(direct))) => out.push(entry(direct.step, outcome.clone(), None)),
            _ => {}
        }
    }
    out
}

impl FinalityIndex {
    /// Open (or create) the index file at `path`.
    pub fn open(path: &Path) -> Result<FinalityIndex, IndexError> {
        let db = Database::create(path).map_err(err)?;
        let txn = db.begin_write().map_err(err)?;
        txn.open_table(STEPS).map_err(err)?;
        txn.commit().map_err(err)?;
        Ok(FinalityIndex { db })
    }

    /// Record finalized steps, durably (one fsynced transaction). Writing an
    /// entry again replaces it: replaying a block twice is harmless.
    pub fn record(&self, steps: &[FinalStep]) -> Result<(), IndexError> {
        if steps.is_empty() {
            return Ok(());
        }
        let mut txn = self.db.begin_write().map_err(err)?;
        txn.set_durability(Durability::Immediate).map_err(err)?;
        {
            let mut table = txn.open_table(STEPS).map_err(err)?;
            for s in steps {
                let value = borsh::to_vec(s).map_err(err)?;
                table.insert(key(&s.signed.step.session, s.signed.step.seq).as_slice(), value.as_slice()).map_err(err)?;
            }
        }
        txn.commit().map_err(err)
    }

    /// A finalized step.
    pub fn get(&self, session: &Hash, seq: u64) -> Result<Option<FinalStep>, IndexError> {
        let txn = self.db.begin_read().map_err(err)?;
        let table = txn.open_table(STEPS).map_err(err)?;
        match table.get(key(session, seq).as_slice()).map_err(err)? {
            Some(v) => Ok(Some(FinalStep::try_from_slice(v.value()).map_err(err)?)),
            None => Ok(None),
        }
    }

    /// Where each of these steps became final (`None` where it is not in the
    /// index), read in one transaction.
    pub fn finality_of(&self, steps: &[(Hash, u64)]) -> Result<Vec<Option<Finality>>, IndexError> {
        let txn = self.db.begin_read().map_err(err)?;
        let table = txn.open_table(STEPS).map_err(err)?;
        steps
            .iter()
            .map(|(session, seq)| match table.get(key(session, *seq).as_slice()).map_err(err)? {
                Some(v) => Ok(Some(FinalStep::try_from_slice(v.value()).map_err(err)?.finality())),
                None => Ok(None),
            })
            .collect()
    }

    /// A session's finalized steps in order, from `from_seq` on, at most
    /// `limit` of them.
    pub fn session(&self, session: &Hash, from_seq: u64, limit: usize) -> Result<Vec<FinalStep>, IndexError> {
        let txn = self.db.begin_read().map_err(err)?;
        let table = txn.open_table(STEPS).map_err(err)?;
        let lo = key(session, from_seq);
        let hi = key(session, u64::MAX);
        let range = table.range::<&[u8]>((Bound::Included(lo.as_slice()), Bound::Included(hi.as_slice()))).map_err(err)?;
        let mut out = Vec::new();
        for item in range.take(limit) {
            let (_, v) = item.map_err(err)?;
            out.push(FinalStep::try_from_slice(v.value()).map_err(err)?);
        }
        Ok(out)
    }
}
