//! Authenticated, durable storage for the L1 application.
//!
//! redb holds the data; a Jellyfish Merkle tree (SHA-256, one tree version per
//! block height) over it gives the app hash of every height. A block goes
//! through two steps:
//!
//! 1. [`Storage::prepare`] computes the next tree version from the committed
//!    state plus a [`WriteSet`], entirely in memory, and returns a
//!    [`PendingCommit`] carrying the new app hash. Nothing durable happens, so
//!    dropping it (or crashing) loses nothing that was committed.
//! 2. [`Storage::commit`] writes the latest values, the tree nodes, the value
//!    history, the height and the app hash in one redb write transaction with
//!    immediate durability: after a crash the store is at the old height or
//!    the new one, never in between.
//!
//! Tree keys are `KeyHash::with::<Sha256>(raw_key)`. The app hash of a fresh
//! store (height 0) is [`EMPTY_APP_HASH`], the root of jmt's empty tree.

mod error;
mod snapshot;
mod tables;

use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock};

use jmt::storage::{NibblePath, Node, NodeKey, TreeUpdateBatch};
use jmt::{KeyHash, Sha256Jmt};
use redb::{Database, Durability, ReadableDatabase, ReadableTable};
use sha2::Sha256;
use tandem_core::kv::WriteSet;

pub use error::StorageError;
pub use snapshot::{Proof, Snapshot};

use snapshot::Hex;
use tables::{LATEST, META, NODES, STALE, VALUES};

/// App hash at height 0: the hash jmt gives an empty tree (its
/// `SPARSE_MERKLE_PLACEHOLDER_HASH`, which it does not export). A test checks
/// that jmt agrees.
pub const EMPTY_APP_HASH: [u8; 32] = *b"SPARSE_MERKLE_PLACEHOLDER_HASH__";

/// Handle to one store. Clones share the same database.
#[derive(Clone)]
pub struct Storage {
    inner: Arc<Inner>,
}

struct Inner {
    db: Database,
    /// Cache of the committed height and hash so that `height()` and
    /// `app_hash()` need no transaction (and cannot fail).
    committed: RwLock<Committed>,
}

#[derive(Clone, Copy)]
struct Committed {
    height: u64,
    app_hash: [u8; 32],
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = self.committed();
        f.debug_struct("Storage").field("height", &c.height).field("app_hash", &Hex(&c.app_hash)).finish()
    }
}

/// The next height, computed but not yet durable. Produced by
/// [`Storage::prepare`], consumed by [`Storage::commit`]; dropping it discards
/// the block.
pub struct PendingCommit {
    height: u64,
    base_app_hash: [u8; 32],
    app_hash: [u8; 32],
    writes: WriteSet,
    batch: TreeUpdateBatch,
}

impl std::fmt::Debug for PendingCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingCommit")
            .field("height", &self.height)
            .field("app_hash", &Hex(&self.app_hash))
            .field("writes", &self.writes.len())
            .field("nodes", &self.batch.node_batch.nodes().len())
            .finish()
    }
}

impl PendingCommit {
    /// The app hash the store will have once this is committed.
    pub fn app_hash(&self) -> [u8; 32] {
        self.app_hash
    }

    /// The height this commit is for.
    pub fn height(&self) -> u64 {
        self.height
    }
}

impl Storage {
    /// Open the store at `path`, creating the file (as an empty store at
    /// height 0) if it does not exist.
    pub fn open(path: &Path) -> Result<Storage, StorageError> {
        let db = Database::create(path).map_err(StorageError::db)?;
        init(&db)?;
        let snap = Snapshot::from_txn(db.begin_read().map_err(StorageError::db)?)?;
        let committed = Committed { height: snap.height(), app_hash: snap.app_hash() };
        drop(snap);
        Ok(Storage { inner: Arc::new(Inner { db, committed: RwLock::new(committed) }) })
    }

    fn committed(&self) -> Committed {
        // The guarded value is a plain Copy pair written in one assignment, so
        // a poisoned lock still holds a consistent value.
        *self.inner.committed.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Last committed height, 0 for a fresh store.
    pub fn height(&self) -> u64 {
        self.committed().height
    }

    /// App hash committed at [`Storage::height`]; [`EMPTY_APP_HASH`] at 0.
    pub fn app_hash(&self) -> [u8; 32] {
        self.committed().app_hash
    }

    /// Read view of the latest committed state.
    ///
    /// # Panics
    /// If the database cannot start a read transaction (disk failure or a
    /// damaged file): the state machine has no way to go on without its
    /// state. Use [`Storage::try_snapshot`] to get the error instead.
    pub fn snapshot(&self) -> Snapshot {
        match self.try_snapshot() {
            Ok(s) => s,
            Err(e) => panic!("tandem-state: cannot open a read view: {e}"),
        }
    }

    /// Read view of the latest committed state, or why it cannot be had.
    pub fn try_snapshot(&self) -> Result<Snapshot, StorageError> {
        Snapshot::from_txn(self.inner.db.begin_read().map_err(StorageError::db)?)
    }

    /// Compute tree version `height` = committed state + `writes` (`Some`
    /// puts, `None` deletes), without writing anything durable. `height` must
    /// be `self.height() + 1`. An empty write set still yields a new version,
    /// whose root equals the previous one.
    pub fn prepare(&self, height: u64, writes: &WriteSet) -> Result<PendingCommit, StorageError> {
        let snap = self.try_snapshot()?;
        let expected = snap.height().checked_add(1).ok_or(StorageError::HeightMismatch { expected: u64::MAX, got: height })?;
        if height != expected {
            return Err(StorageError::HeightMismatch { expected, got: height });
        }
        let tree = Sha256Jmt::new(snap.tables());
        let value_set = writes.iter().map(|(k, v)| (KeyHash::with::<Sha256>(k), v.clone()));
        let (root, batch) = tree.put_value_set(value_set, height).map_err(StorageError::tree)?;
        // Every version must have its own root node, or proofs and the next
        // prepare at this height would find nothing. jmt guarantees this for
        // versions > 0 given a root at the previous version, which `init`
        // provides for version 0; check rather than trust.
        let root_key = root_node_key(height);
        if batch.node_batch.get_node(&root_key).is_none() {
            return Err(StorageError::Corrupt(format!("tree update for height {height} has no root node")));
        }
        Ok(PendingCommit { height, base_app_hash: snap.app_hash(), app_hash: root.0, writes: writes.clone(), batch })
    }

    /// Make `pending` durable: one redb write transaction, fsynced before this
    /// returns. Rejects a commit that is not for `self.height() + 1` or that
    /// was prepared on a different state.
    pub fn commit(&self, pending: PendingCommit) -> Result<(), StorageError> {
        let mut txn = self.inner.db.begin_write().map_err(StorageError::db)?;
        // The default already, but this is the property the chain relies on:
        // a committed block must survive power loss.
        txn.set_durability(Durability::Immediate).map_err(StorageError::db)?;
        {
            let mut meta = txn.open_table(META).map_err(StorageError::db)?;
            // Check against the transaction's own view, not the cache: only
            // one write transaction runs at a time, so this is authoritative.
            let (height, app_hash) = tables::read_meta(&meta)?;
            if height.checked_add(1) != Some(pending.height) {
                return Err(StorageError::HeightMismatch { expected: height.saturating_add(1), got: pending.height });
            }
            if app_hash != pending.base_app_hash {
                return Err(StorageError::BaseMismatch);
            }

            let mut latest = txn.open_table(LATEST).map_err(StorageError::db)?;
            for (key, value) in &pending.writes {
                match value {
                    Some(v) => {
                        latest.insert(key.as_slice(), v.as_slice()).map_err(StorageError::db)?;
                    }
                    None => {
                        latest.remove(key.as_slice()).map_err(StorageError::db)?;
                    }
                }
            }

            let mut nodes = txn.open_table(NODES).map_err(StorageError::db)?;
            for (key, node) in pending.batch.node_batch.nodes() {
                let k = tables::encode_node_key(key)?;
                let v = tables::encode_node(node)?;
                nodes.insert(k.as_slice(), v.as_slice()).map_err(StorageError::db)?;
            }

            let mut values = txn.open_table(VALUES).map_err(StorageError::db)?;
            for ((version, key_hash), value) in pending.batch.node_batch.values() {
                let k = tables::encode_value_key(*key_hash, *version);
                let v = tables::encode_value(value.as_deref());
                values.insert(k.as_slice(), v.as_slice()).map_err(StorageError::db)?;
            }

            let mut stale = txn.open_table(STALE).map_err(StorageError::db)?;
            for idx in &pending.batch.stale_node_index_batch {
                let k = tables::encode_stale_key(idx.stale_since_version, &idx.node_key)?;
                stale.insert(k.as_slice(), ()).map_err(StorageError::db)?;
            }

            meta.insert(tables::META_HEIGHT, pending.height.to_be_bytes().as_slice()).map_err(StorageError::db)?;
            meta.insert(tables::META_APP_HASH, pending.app_hash.as_slice()).map_err(StorageError::db)?;
        }
        txn.commit().map_err(StorageError::db)?;

        let mut c = self.inner.committed.write().unwrap_or_else(PoisonError::into_inner);
        // Commits are serialized by redb, but the cache updates after the
        // transaction; never let a late update move it backwards.
        if pending.height > c.height {
            *c = Committed { height: pending.height, app_hash: pending.app_hash };
        }
        Ok(())
    }

    /// The value under `key` at the latest committed height, with a proof of
    /// it (or of its absence) against that height's app hash. Use
    /// [`Snapshot::get_with_proof`] to pin the height alongside the proof.
    pub fn get_with_proof(&self, key: &[u8]) -> Result<(Option<Vec<u8>>, Proof), StorageError> {
        self.try_snapshot()?.get_with_proof(key)
    }
}

/// The key of a version's root node: that version, empty nibble path.
/// (jmt keeps its own constructor for this crate-private; an empty iterator
/// of nibbles is the public way to an empty path.)
fn root_node_key(version: u64) -> NodeKey {
    NodeKey::new(version, std::iter::empty().collect::<NibblePath>())
}

/// Create the tables and, in a fresh file, the height-0 state: an empty tree
/// whose root is a `Null` node at version 0. jmt builds version `v` on the
/// root of version `v - 1`; without a stored version-0 root, an empty first
/// block would leave version 1 with no root at all (jmt then writes its Null
/// root under version 0 instead).
fn init(db: &Database) -> Result<(), StorageError> {
    let txn = db.begin_write().map_err(StorageError::db)?;
    {
        txn.open_table(LATEST).map_err(StorageError::db)?;
        txn.open_table(VALUES).map_err(StorageError::db)?;
        txn.open_table(STALE).map_err(StorageError::db)?;
        let mut nodes = txn.open_table(NODES).map_err(StorageError::db)?;
        let mut meta = txn.open_table(META).map_err(StorageError::db)?;
        let format = meta.get(tables::META_FORMAT).map_err(StorageError::db)?.map(|v| v.value().to_vec());
        match format {
            Some(f) => {
                let found =
                    u32::from_be_bytes(f.as_slice().try_into().map_err(|_| StorageError::Corrupt("format record is not 4 bytes".into()))?);
                if found != tables::FORMAT_VERSION {
                    return Err(StorageError::Corrupt(format!("store format {found}, this build reads {}", tables::FORMAT_VERSION)));
                }
            }
            None => {
                let root = root_node_key(0);
                let k = tables::encode_node_key(&root)?;
                let v = tables::encode_node(&Node::Null)?;
                nodes.insert(k.as_slice(), v.as_slice()).map_err(StorageError::db)?;
                meta.insert(tables::META_HEIGHT, 0u64.to_be_bytes().as_slice()).map_err(StorageError::db)?;
                meta.insert(tables::META_APP_HASH, EMPTY_APP_HASH.as_slice()).map_err(StorageError::db)?;
                meta.insert(tables::META_FORMAT, tables::FORMAT_VERSION.to_be_bytes().as_slice()).map_err(StorageError::db)?;
            }
        }
    }
    txn.commit().map_err(StorageError::db)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn handles_are_send_and_sync() {
        assert_send_sync::<Storage>();
        assert_send_sync::<Snapshot>();
        assert_send_sync::<PendingCommit>();
    }

    #[test]
    fn jmt_agrees_on_the_empty_root() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Storage::open(&dir.path().join("db")).expect("open");
        let snap = s.snapshot();
        let root = Sha256Jmt::new(snap.tables()).get_root_hash(0).expect("root at 0");
        assert_eq!(root.0, EMPTY_APP_HASH);
        assert_eq!(s.app_hash(), EMPTY_APP_HASH);
    }
}
