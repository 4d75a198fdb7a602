//! Demo identities: Ed25519 key pairs written as JSON files and listed in the genesis.
//!
//! These keys exist so that a fresh devnet can be driven at once (demo clients, benchmarks,
//! tests) without a registration step; the L1 app learns who is who from the genesis
//! `app_state`. They are demo keys: the secret is stored in clear, readable by the owner only.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{bail, Context};
use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};

/// (name, role) of every demo identity. Role `gateway` goes to the genesis `gateways` list,
/// every other role to `actors`.
pub const DEMO_IDENTITIES: &[(&str, &str)] = &[
    ("admin", "admin"),
    ("supplier-1", "supplier"),
    ("supplier-2", "supplier"),
    ("operator-1", "operator"),
    ("operator-2", "operator"),
    ("inspector-1", "inspector"),
    ("courier-1", "courier"),
    ("courier-2", "courier"),
    ("gateway-1", "gateway"),
];

/// One demo key file, `keys/<name>.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DemoKey {
    pub name: String,
    pub role: String,
    /// 32-byte Ed25519 public key, lowercase hex.
    pub public_key: String,
    /// 32-byte Ed25519 seed (what `SigningKey::from_bytes` takes), lowercase hex.
    pub secret_key: String,
}

impl DemoKey {
    /// A fresh key pair from the OS random source.
    pub fn generate(name: &str, role: &str) -> Self {
        let sk = SigningKey::generate(&mut rand::rngs::OsRng);
        DemoKey {
            name: name.to_owned(),
            role: role.to_owned(),
            public_key: hex::encode(sk.verifying_key().to_bytes()),
            secret_key: hex::encode(sk.to_bytes()),
        }
    }

    /// Reads a key file and checks that its public key matches its secret key.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let key: DemoKey = serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        key.signing_key().with_context(|| format!("checking {}", path.display()))?;
        Ok(key)
    }

    /// The signing key, after checking that it derives the recorded public key.
    pub fn signing_key(&self) -> anyhow::Result<SigningKey> {
        let seed: [u8; 32] = hex::decode(&self.secret_key)
            .context("secret_key is not hex")?
            .try_into()
            .map_err(|_| anyhow::anyhow!("secret_key is not 32 bytes"))?;
        let sk = SigningKey::from_bytes(&seed);
        if hex::encode(sk.verifying_key().to_bytes()) != self.public_key {
            bail!("public_key of {:?} does not match its secret_key", self.name);
        }
        Ok(sk)
    }

    /// Writes the key to `path`, which must not exist yet, with mode 0600 from the moment it
    /// is created (not chmod-ed afterwards, which would leave a window where it is readable).
    pub fn write_new(&self, path: &Path) -> anyhow::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("creating {}", path.display()))?;
        let mut text = serde_json::to_string_pretty(self)?;
        text.push('\n');
        f.write_all(text.as_bytes())?;
        Ok(())
    }
}

/// Loads `<dir>/<name>.json` for every demo identity, in [`DEMO_IDENTITIES`] order.
pub fn load_keys(dir: &Path) -> anyhow::Result<Vec<DemoKey>> {
    DEMO_IDENTITIES.iter().map(|(name, _)| DemoKey::load(&dir.join(format!("{name}.json")))).collect()
}

/// The genesis `app_state` the L1 app reads in InitChain:
/// `{"actors":[{"name","role","public_key"}...],"gateways":[{"name","public_key"}...]}`.
pub(crate) fn app_state(keys: &[DemoKey]) -> serde_json::Value {
    let actors: Vec<_> = keys
        .iter()
        .filter(|k| k.role != "gateway")
        .map(|k| serde_json::json!({"name": k.name, "role": k.role, "public_key": k.public_key}))
        .collect();
    let gateways: Vec<_> =
        keys.iter().filter(|k| k.role == "gateway").map(|k| serde_json::json!({"name": k.name, "public_key": k.public_key})).collect();
    serde_json::json!({"actors": actors, "gateways": gateways})
}
