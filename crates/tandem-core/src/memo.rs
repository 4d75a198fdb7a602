//! A bounded memory of signatures already found valid.
//!
//! Every signature in a transaction is checked more than once on its way to a
//! block: a validator checks it in `CheckTx` and again when it executes the
//! block; a gateway checks a step when it accepts it and again when its replica
//! replays the block that carries it. [`SigMemo`] lets the second check be a
//! lookup. It remembers only successes of a pure function of the bytes (key,
//! domain-separated message, signature), so a hit answers exactly what
//! verification would: execution stays deterministic whether or not, and
//! whatever, a node remembers. Failures are never remembered.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

use sha2::{Digest, Sha256};

/// Remembered `(key, message, signature)` triples, oldest forgotten first.
pub struct SigMemo {
    inner: Mutex<Inner>,
    capacity: usize,
}

struct Inner {
    known: HashSet<[u8; 32]>,
    order: VecDeque<[u8; 32]>,
}

impl SigMemo {
    /// A memo of at most `capacity` signatures (32 bytes each, about 80 bytes
    /// with bookkeeping).
    pub fn new(capacity: usize) -> SigMemo {
        SigMemo { inner: Mutex::new(Inner { known: HashSet::new(), order: VecDeque::new() }), capacity: capacity.max(1) }
    }

    /// The digest that stands for one verification.
    pub(crate) fn key(public: &[u8; 32], signed_bytes: &[u8], signature: &[u8; 64]) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(public);
        h.update(signature);
        h.update(signed_bytes);
        h.finalize().into()
    }

    pub(crate) fn contains(&self, key: &[u8; 32]) -> bool {
        self.inner.lock().expect("memo lock").known.contains(key)
    }

    pub(crate) fn remember(&self, key: [u8; 32]) {
        let mut inner = self.inner.lock().expect("memo lock");
        if !inner.known.insert(key) {
            return;
        }
        inner.order.push_back(key);
        while inner.order.len() > self.capacity {
            if let Some(old) = inner.order.pop_front() {
                inner.known.remove(&old);
            }
        }
    }

    /// How many signatures are remembered.
    pub fn len(&self) -> usize {
        self.inner.lock().expect("memo lock").order.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for SigMemo {
    /// Room for 262,144 signatures (about 20 MiB): several blocks' worth at
    /// the largest batch sizes.
    fn default() -> Self {
        SigMemo::new(1 << 18)
    }
}

impl std::fmt::Debug for SigMemo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigMemo").field("len", &self.len()).field("capacity", &self.capacity).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::SigMemo;
    use crate::crypto::{Domain, SecretKey};

    #[test]
    fn remembers_only_exact_valid_triples() {
        let key = SecretKey::from_seed([7; 32]);
        let other = SecretKey::from_seed([8; 32]);
        let memo = SigMemo::new(16);
        let msg = "ship 12 valves".to_string();
        let sig = key.sign(Domain::Step, &msg);
        assert!(key.public().verify_memo(Domain::Step, &msg, &sig, Some(&memo)));
        assert_eq!(memo.len(), 1);
        // A hit, not a second entry.
        assert!(key.public().verify_memo(Domain::Step, &msg, &sig, Some(&memo)));
        assert_eq!(memo.len(), 1);
        // Any change to the key, the domain, the message or the signature misses
        // the memo and fails verification; failures are not remembered.
        assert!(!other.public().verify_memo(Domain::Step, &msg, &sig, Some(&memo)));
        assert!(!key.public().verify_memo(Domain::Batch, &msg, &sig, Some(&memo)));
        assert!(!key.public().verify_memo(Domain::Step, &"ship 13 valves".to_string(), &sig, Some(&memo)));
        let mut bent = sig;
        bent.0[5] ^= 1;
        assert!(!key.public().verify_memo(Domain::Step, &msg, &bent, Some(&memo)));
        assert_eq!(memo.len(), 1);
    }

    #[test]
    fn forgets_the_oldest_beyond_capacity() {
        let key = SecretKey::from_seed([9; 32]);
        let memo = SigMemo::new(3);
        for i in 0..10u32 {
            let sig = key.sign(Domain::Step, &i);
            assert!(key.public().verify_memo(Domain::Step, &i, &sig, Some(&memo)));
        }
        assert_eq!(memo.len(), 3);
    }
}
