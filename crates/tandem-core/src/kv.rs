//! The byte-level key-value view the state machine reads and writes, and the
//! copy-on-write overlay that L1 (per-transaction rollback) and L2 (speculative
//! state) both execute on.
//!
//! The core never touches storage: it sees a [`KvRead`] base and records its
//! writes in an [`Overlay`]. Dropping an overlay discards everything it wrote;
//! [`Overlay::into_writes`] hands the ordered write set to whoever persists it.

use std::collections::BTreeMap;

/// Read access to committed (or otherwise frozen) state.
pub trait KvRead {
    /// The value stored under `key`, if any.
    fn get(&self, key: &[u8]) -> Option<Vec<u8>>;
}

/// Write access on top of [`KvRead`]. Only overlays implement it: the core
/// never writes to a base directly.
pub trait KvWrite: KvRead {
    /// Store `value` under `key`.
    fn put(&mut self, key: Vec<u8>, value: Vec<u8>);
    /// Remove `key`.
    fn delete(&mut self, key: Vec<u8>);
}

/// An ordered set of writes: `Some(value)` puts, `None` deletes. A `BTreeMap`
/// so that iteration order (and anything derived from it) is deterministic.
pub type WriteSet = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

impl<T: KvRead + ?Sized> KvRead for &T {
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        (**self).get(key)
    }
}

impl<T: KvRead + ?Sized> KvRead for &mut T {
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        (**self).get(key)
    }
}

impl<T: KvWrite + ?Sized> KvWrite for &mut T {
    fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        (**self).put(key, value)
    }
    fn delete(&mut self, key: Vec<u8>) {
        (**self).delete(key)
    }
}

/// A plain in-memory map, used as a base in tests and by replicas that keep
/// everything in memory.
impl KvRead for BTreeMap<Vec<u8>, Vec<u8>> {
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        BTreeMap::get(self, key).cloned()
    }
}

/// Copy-on-write layer over a base. Reads see this layer's writes first.
#[derive(Debug, Clone)]
pub struct Overlay<B> {
    base: B,
    writes: WriteSet,
}

impl<B: KvRead> Overlay<B> {
    /// An empty overlay over `base`.
    pub fn new(base: B) -> Self {
        Self { base, writes: WriteSet::new() }
    }

    /// An overlay over `base` that already holds `writes` (no copy).
    pub fn with_writes(base: B, writes: WriteSet) -> Self {
        Self { base, writes }
    }

    /// The writes recorded so far, in key order.
    pub fn writes(&self) -> &WriteSet {
        &self.writes
    }

    /// Consume the overlay, returning its writes in key order.
    pub fn into_writes(self) -> WriteSet {
        self.writes
    }

    /// Consume the overlay, returning its base and its writes.
    pub fn into_parts(self) -> (B, WriteSet) {
        (self.base, self.writes)
    }

    /// Fold another write set into this overlay (later writes win).
    pub fn absorb(&mut self, writes: WriteSet) {
        self.writes.extend(writes);
    }

    /// The base this overlay reads through to.
    pub fn base(&self) -> &B {
        &self.base
    }
}

impl<B: KvRead> KvRead for Overlay<B> {
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        match self.writes.get(key) {
            Some(Some(v)) => Some(v.clone()),
            Some(None) => None,
            None => self.base.get(key),
        }
    }
}

impl<B: KvRead> KvWrite for Overlay<B> {
    fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.writes.insert(key, Some(value));
    }
    fn delete(&mut self, key: Vec<u8>) {
        self.writes.insert(key, None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_overlay_reads_its_own_writes_before_the_base() {
        let mut base = BTreeMap::new();
        base.insert(b"a".to_vec(), b"1".to_vec());
        base.insert(b"b".to_vec(), b"2".to_vec());
        let mut o = Overlay::new(&base);
        o.put(b"a".to_vec(), b"9".to_vec());
        o.delete(b"b".to_vec());
        assert_eq!(o.get(b"a"), Some(b"9".to_vec()));
        assert_eq!(o.get(b"b"), None);
        assert_eq!(base.get(b"a".as_slice()), Some(&b"1".to_vec()));
        let w = o.into_writes();
        assert_eq!(w.len(), 2);
    }

    #[test]
    fn nested_overlays_drop_the_inner_layer_on_rejection() {
        let base = BTreeMap::new();
        let mut block = Overlay::new(&base);
        block.put(b"k".to_vec(), b"v".to_vec());
        {
            let mut tx = Overlay::new(&block);
            tx.put(b"k".to_vec(), b"w".to_vec());
            assert_eq!(tx.get(b"k"), Some(b"w".to_vec()));
            // dropped: rejected
        }
        assert_eq!(block.get(b"k"), Some(b"v".to_vec()));
    }
}
