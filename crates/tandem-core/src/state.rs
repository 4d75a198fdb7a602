//! The layout of state in the key-value store, and typed access to it.
//!
//! Keys are a one-word prefix, a slash, and the entity's id bytes. Values are
//! canonical borsh. A value that does not decode means the store is corrupt:
//! that is an infrastructure failure, and the process stops rather than decide
//! anything on broken state.

use borsh::{BorshDeserialize, BorshSerialize};

use crate::crypto::{Hash, PublicKey};
use crate::kv::{KvRead, KvWrite};
use crate::model::{Actor, Gateway, Package, SessionRecord};

/// Key of an actor.
pub fn actor_key(key: &PublicKey) -> Vec<u8> {
    [b"actor/".as_slice(), key.as_bytes()].concat()
}
/// Key of a gateway.
pub fn gateway_key(key: &PublicKey) -> Vec<u8> {
    [b"gateway/".as_slice(), key.as_bytes()].concat()
}
/// Key of a package.
pub fn package_key(id: &str) -> Vec<u8> {
    [b"package/".as_slice(), id.as_bytes()].concat()
}
/// Key of a session.
pub fn session_key(id: &Hash) -> Vec<u8> {
    [b"session/".as_slice(), id.as_bytes()].concat()
}
/// Key of an administrator's last nonce.
pub fn admin_nonce_key(key: &PublicKey) -> Vec<u8> {
    [b"admin-nonce/".as_slice(), key.as_bytes()].concat()
}
/// Key of the chain id, written at genesis.
pub const CHAIN_ID_KEY: &[u8] = b"meta/chain-id";

fn read<T: BorshDeserialize, K: KvRead + ?Sized>(kv: &K, key: &[u8]) -> Option<T> {
    let bytes = kv.get(key)?;
    match borsh::from_slice(&bytes) {
        Ok(v) => Some(v),
        Err(e) => panic!("corrupt state under key {}: {e}", String::from_utf8_lossy(key)),
    }
}

fn write<T: BorshSerialize, K: KvWrite + ?Sized>(kv: &mut K, key: Vec<u8>, value: &T) {
    kv.put(key, borsh::to_vec(value).expect("writing to a Vec cannot fail"));
}

/// Typed reads of the state.
pub trait StateRead: KvRead {
    /// An actor.
    fn actor(&self, key: &PublicKey) -> Option<Actor> {
        read(self, &actor_key(key))
    }
    /// A gateway.
    fn gateway(&self, key: &PublicKey) -> Option<Gateway> {
        read(self, &gateway_key(key))
    }
    /// A package.
    fn package(&self, id: &str) -> Option<Package> {
        read(self, &package_key(id))
    }
    /// A session.
    fn session(&self, id: &Hash) -> Option<SessionRecord> {
        read(self, &session_key(id))
    }
    /// An administrator's last nonce (0 before the first).
    fn admin_nonce(&self, key: &PublicKey) -> u64 {
        read(self, &admin_nonce_key(key)).unwrap_or(0)
    }
    /// The chain id set at genesis.
    fn chain_id(&self) -> Option<String> {
        read(self, CHAIN_ID_KEY)
    }
}

impl<T: KvRead + ?Sized> StateRead for T {}

/// Typed writes of the state.
pub trait StateWrite: KvWrite {
    /// Store an actor.
    fn put_actor(&mut self, actor: &Actor) {
        write(self, actor_key(&actor.key), actor)
    }
    /// Store a gateway.
    fn put_gateway(&mut self, gateway: &Gateway) {
        write(self, gateway_key(&gateway.key), gateway)
    }
    /// Store a package.
    fn put_package(&mut self, package: &Package) {
        write(self, package_key(&package.id), package)
    }
    /// Store a session.
    fn put_session(&mut self, session: &SessionRecord) {
        write(self, session_key(&session.id), session)
    }
    /// Store an administrator's nonce.
    fn put_admin_nonce(&mut self, key: &PublicKey, nonce: u64) {
        write(self, admin_nonce_key(key), &nonce)
    }
    /// Store the chain id.
    fn put_chain_id(&mut self, chain_id: &str) {
        write(self, CHAIN_ID_KEY.to_vec(), &chain_id.to_string())
    }
}

impl<T: KvWrite + ?Sized> StateWrite for T {}
