//! A frozen read view of one committed height: plain reads, proofs, and the
//! jmt `TreeReader` that `prepare` builds the next version on.
//!
//! Every table is opened from one redb read transaction, so a snapshot keeps
//! seeing the height it was taken at however many commits follow.

use std::sync::Arc;

use jmt::proof::SparseMerkleProof;
use jmt::storage::{LeafNode, Node, NodeKey, TreeReader};
use jmt::{KeyHash, OwnedValue, Sha256Jmt, Version};
use redb::{ReadOnlyTable, ReadTransaction, ReadableTable};
use sha2::Sha256;
use tandem_core::kv::KvRead;

use crate::tables::{self, LATEST, META, NODES, VALUES};
use crate::StorageError;

/// The proof type [`Snapshot::get_with_proof`] returns: jmt's sparse Merkle
/// proof over SHA-256, checked with `verify_existence` /
/// `verify_nonexistence` against the app hash.
pub type Proof = SparseMerkleProof<Sha256>;

/// Read view of the state committed at [`Snapshot::height`]. Cheap to clone
/// (an `Arc`); later commits do not change what it sees.
#[derive(Clone)]
pub struct Snapshot {
    inner: Arc<Tables>,
}

/// The tables of one read transaction. redb tables hold their own reference
/// to the transaction's pages, so the transaction itself need not be kept.
pub(crate) struct Tables {
    height: u64,
    app_hash: [u8; 32],
    latest: ReadOnlyTable<&'static [u8], &'static [u8]>,
    nodes: ReadOnlyTable<&'static [u8], &'static [u8]>,
    values: ReadOnlyTable<&'static [u8], &'static [u8]>,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot").field("height", &self.inner.height).field("app_hash", &Hex(&self.inner.app_hash)).finish()
    }
}

pub(crate) struct Hex<'a>(pub(crate) &'a [u8]);

impl std::fmt::Debug for Hex<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl Snapshot {
    pub(crate) fn from_txn(txn: ReadTransaction) -> Result<Self, StorageError> {
        let meta = txn.open_table(META).map_err(StorageError::db)?;
        let (height, app_hash) = tables::read_meta(&meta)?;
        let inner = Tables {
            height,
            app_hash,
            latest: txn.open_table(LATEST).map_err(StorageError::db)?,
            nodes: txn.open_table(NODES).map_err(StorageError::db)?,
            values: txn.open_table(VALUES).map_err(StorageError::db)?,
        };
        Ok(Snapshot { inner: Arc::new(inner) })
    }

    pub(crate) fn tables(&self) -> &Tables {
        &self.inner
    }

    /// The height this view was committed at.
    pub fn height(&self) -> u64 {
        self.inner.height
    }

    /// The app hash (JMT root) committed at [`Snapshot::height`].
    pub fn app_hash(&self) -> [u8; 32] {
        self.inner.app_hash
    }

    /// The value under `key`, or the database error that prevented reading it.
    pub fn try_get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.inner.latest.get(key).map_err(StorageError::db)?.map(|v| v.value().to_vec()))
    }

    /// The value under `key` with a proof of it (or of its absence) against
    /// [`Snapshot::app_hash`]. The value is read from the tree's own history,
    /// so it is exactly what the proof speaks for.
    pub fn get_with_proof(&self, key: &[u8]) -> Result<(Option<Vec<u8>>, Proof), StorageError> {
        let tree = Sha256Jmt::new(&*self.inner);
        tree.get_with_proof(KeyHash::with::<Sha256>(key), self.inner.height).map_err(StorageError::tree)
    }
}

/// The state machine's read interface. `KvRead::get` cannot return an error,
/// so a database failure here (disk error, damaged file) panics: answering
/// `None` instead would let this replica compute a different state than its
/// peers and sign it. Callers that can handle the error use
/// [`Snapshot::try_get`].
impl KvRead for Snapshot {
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        match self.try_get(key) {
            Ok(v) => v,
            Err(e) => panic!("tandem-state: reading committed state failed: {e}"),
        }
    }
}

fn io(err: impl Into<redb::Error>) -> anyhow::Error {
    anyhow::Error::new(err.into())
}

/// jmt reads committed nodes and values through this; `prepare` layers the
/// new version on top of it in memory.
impl TreeReader for Tables {
    fn get_node_option(&self, node_key: &NodeKey) -> anyhow::Result<Option<Node>> {
        let key = tables::encode_node_key(node_key)?;
        match self.nodes.get(key.as_slice()).map_err(io)? {
            Some(bytes) => Ok(Some(tables::decode_node(bytes.value())?)),
            None => Ok(None),
        }
    }

    fn get_value_option(&self, max_version: Version, key_hash: KeyHash) -> anyhow::Result<Option<OwnedValue>> {
        let lo = tables::encode_value_key(key_hash, 0);
        let hi = tables::encode_value_key(key_hash, max_version);
        let mut range = self.values.range(lo.as_slice()..=hi.as_slice()).map_err(io)?;
        match range.next_back() {
            Some(entry) => {
                let (_, value) = entry.map_err(io)?;
                Ok(tables::decode_value(value.value())?)
            }
            None => Ok(None),
        }
    }

    /// Only jmt's state restore asks for this. A full scan keeps it correct
    /// without an index that normal operation would have to maintain.
    fn get_rightmost_leaf(&self) -> anyhow::Result<Option<(NodeKey, LeafNode)>> {
        let mut best: Option<(NodeKey, LeafNode)> = None;
        for entry in self.nodes.iter().map_err(io)? {
            let (key, value) = entry.map_err(io)?;
            if let Node::Leaf(leaf) = tables::decode_node(value.value())? {
                if best.as_ref().is_none_or(|(_, b)| leaf.key_hash() > b.key_hash()) {
                    best = Some((tables::decode_node_key(key.value())?, leaf));
                }
            }
        }
        Ok(best)
    }
}
