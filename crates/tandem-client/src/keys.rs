//! Key files: one Ed25519 identity per JSON file, readable only by its owner.

use std::path::Path;

use serde::{Deserialize, Serialize};
use tandem_core::SecretKey;

/// A key file's contents.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KeyFile {
    /// Display name.
    pub name: String,
    /// Role (admin, supplier, operator, inspector, courier, gateway).
    pub role: String,
    /// Public key, 64 hex digits.
    pub public_key: String,
    /// The 32-byte seed, 64 hex digits.
    pub secret_key: String,
}

/// Why a key file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// The content is not a key file.
    #[error("{path}: {reason}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

impl KeyFile {
    /// A fresh random identity.
    pub fn generate(name: &str, role: &str) -> KeyFile {
        let mut seed = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut seed);
        let key = SecretKey::from_seed(seed);
        KeyFile { name: name.into(), role: role.into(), public_key: key.public().to_hex(), secret_key: hex::encode(seed) }
    }

    /// Read and check a key file.
    pub fn load(path: &Path) -> Result<KeyFile, KeyError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::Io { path: p.clone(), source })?;
        let file: KeyFile = serde_json::from_str(&text).map_err(|e| KeyError::Invalid { path: p.clone(), reason: e.to_string() })?;
        let key = file.secret().map_err(|reason| KeyError::Invalid { path: p.clone(), reason })?;
        if key.public().to_hex() != file.public_key.to_lowercase() {
            return Err(KeyError::Invalid { path: p, reason: "public_key does not match secret_key".into() });
        }
        Ok(file)
    }

    /// Write the file, readable by its owner only; refuses to overwrite.
    pub fn save(&self, path: &Path) -> Result<(), KeyError> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let p = path.display().to_string();
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|source| KeyError::Io { path: p.clone(), source })?;
        let text = serde_json::to_string_pretty(self).expect("a key file serializes");
        f.write_all(text.as_bytes()).map_err(|source| KeyError::Io { path: p, source })
    }

    /// The signing key.
    pub fn secret(&self) -> Result<SecretKey, String> {
        let mut seed = [0u8; 32];
        hex::decode_to_slice(&self.secret_key, &mut seed).map_err(|_| "secret_key is not 64 hex digits".to_string())?;
        Ok(SecretKey::from_seed(seed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_file_round_trips_and_is_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k.json");
        let k = KeyFile::generate("operator-9", "operator");
        k.save(&path).expect("save");
        let back = KeyFile::load(&path).expect("load");
        assert_eq!(back.public_key, k.public_key);
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777, 0o600);
        assert!(k.save(&path).is_err(), "no overwrite");
    }

    #[test]
    fn a_mismatched_key_file_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k.json");
        let mut k = KeyFile::generate("x", "operator");
        k.public_key = KeyFile::generate("y", "operator").public_key;
        k.save(&path).expect("save");
        assert!(matches!(KeyFile::load(&path), Err(KeyError::Invalid { .. })));
    }
}
