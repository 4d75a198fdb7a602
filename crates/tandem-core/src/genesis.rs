//! The application part of the chain's genesis: who the first actors and
//! gateways are. CometBFT carries it as `app_state` in `genesis.json`; L1 reads
//! it in `InitChain`, the gateway's replica reads the same document.

use serde::{Deserialize, Serialize};

use crate::crypto::PublicKey;
use crate::kv::KvWrite;
use crate::limits::{CHAIN_ID_BYTES_MAX, NAME_BYTES_MAX};
use crate::model::{Actor, Gateway, Role};
use crate::state::{StateRead, StateWrite};

/// An actor known from the start.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisActor {
    /// Display name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Signing key.
    pub public_key: PublicKey,
}

/// A gateway known from the start.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisGateway {
    /// Display name.
    pub name: String,
    /// Signing key.
    pub public_key: PublicKey,
}

/// The `app_state` document.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Genesis {
    /// Actors.
    #[serde(default)]
    pub actors: Vec<GenesisActor>,
    /// Gateways.
    #[serde(default)]
    pub gateways: Vec<GenesisGateway>,
}

/// A genesis document that cannot start a chain.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GenesisError {
    /// Not valid JSON of the expected shape.
    #[error("app_state is not a valid genesis document: {0}")]
    Parse(String),
    /// A key appears twice.
    #[error("key {0} appears twice in the genesis")]
    DuplicateKey(PublicKey),
    /// A name is empty or too long.
    #[error("name {0:?} must be 1 to {NAME_BYTES_MAX} bytes")]
    BadName(String),
    /// A key can never sign (see [`PublicKey::weakness`]).
    #[error("key {0} {1}; it cannot be registered")]
    WeakKey(PublicKey, &'static str),
    /// The chain id is empty or too long.
    #[error("chain id {0:?} must be 1 to {CHAIN_ID_BYTES_MAX} bytes")]
    BadChainId(String),
}

impl Genesis {
    /// Parse the `app_state` bytes. Empty bytes mean an empty genesis.
    pub fn from_json(bytes: &[u8]) -> Result<Genesis, GenesisError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Genesis::default());
        }
        serde_json::from_slice(bytes).map_err(|e| GenesisError::Parse(e.to_string()))
    }

    /// Write the genesis into empty state.
    pub fn apply(&self, chain_id: &str, state: &mut impl KvWrite) -> Result<(), GenesisError> {
        if chain_id.is_empty() || chain_id.len() > CHAIN_ID_BYTES_MAX {
            return Err(GenesisError::BadChainId(chain_id.to_string()));
        }
        state.put_chain_id(chain_id);
        let bad_name = |n: &str| n.is_empty() || n.len() > NAME_BYTES_MAX;
        let weak = |k: &PublicKey| k.weakness().map_or(Ok(()), |why| Err(GenesisError::WeakKey(*k, why)));
        for a in &self.actors {
            if bad_name(&a.name) {
                return Err(GenesisError::BadName(a.name.clone()));
            }
            weak(&a.public_key)?;
            if state.actor(&a.public_key).is_some() {
                return Err(GenesisError::DuplicateKey(a.public_key));
            }
            state.put_actor(&Actor { key: a.public_key, name: a.name.clone(), role: a.role, active: true });
        }
        for g in &self.gateways {
            if bad_name(&g.name) {
                return Err(GenesisError::BadName(g.name.clone()));
            }
            weak(&g.public_key)?;
            if state.actor(&g.public_key).is_some() || state.gateway(&g.public_key).is_some() {
                return Err(GenesisError::DuplicateKey(g.public_key));
            }
            state.put_gateway(&Gateway::new(g.public_key, g.name.clone()));
        }
        Ok(())
    }
}
