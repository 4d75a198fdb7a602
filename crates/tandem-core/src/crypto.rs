//! Keys, signatures and hashes, with domain separation.
//!
//! Every signed or hashed message is prefixed by a [`Domain`] tag so that bytes
//! signed for one purpose (a step) can never be replayed as another (a batch, a
//! manifest). Signatures are checked with `verify_strict`, which refuses
//! small-order keys and non-canonical signatures, so a signature cannot be
//! mutated into a second valid one.

use std::fmt;

use borsh::{BorshDeserialize, BorshSerialize};
use ed25519_dalek::Signer;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

/// The purpose a byte string is signed or hashed for. The tag is written in
/// front of the canonical encoding of the message, followed by a zero byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Domain {
    /// A client's step.
    Step,
    /// A client's request to open a session.
    SessionOpen,
    /// A session owner's close of its session.
    SessionClose,
    /// A session id derived from its open request.
    SessionId,
    /// A supplier's manifest.
    Manifest,
    /// A gateway's session batch.
    Batch,
    /// An administrator's transaction.
    Admin,
    /// The outcome of one step, as predicted by L2 and checked by L1.
    Outcome,
    /// A package's state, summarised in an outcome.
    Package,
    /// A gateway's receipt for an acknowledged step.
    Receipt,
}

impl Domain {
    /// The tag bytes (ASCII, versioned).
    pub const fn tag(self) -> &'static [u8] {
        match self {
            Domain::Step => b"tandem/v1/step",
            Domain::SessionOpen => b"tandem/v1/session-open",
            Domain::SessionClose => b"tandem/v1/session-close",
            Domain::SessionId => b"tandem/v1/session-id",
            Domain::Manifest => b"tandem/v1/manifest",
            Domain::Batch => b"tandem/v1/batch",
            Domain::Admin => b"tandem/v1/admin",
            Domain::Outcome => b"tandem/v1/outcome",
            Domain::Package => b"tandem/v1/package",
            Domain::Receipt => b"tandem/v1/receipt",
        }
    }
}

/// `tag || 0x00 || borsh(message)`: the exact bytes that are signed or hashed.
pub fn domain_bytes<T: BorshSerialize>(domain: Domain, message: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(domain.tag());
    out.push(0);
    message.serialize(&mut out).expect("writing to a Vec cannot fail");
    out
}

/// SHA-256 of the domain-separated encoding of `message`.
pub fn hash<T: BorshSerialize>(domain: Domain, message: &T) -> Hash {
    Hash(Sha256::digest(domain_bytes(domain, message)).into())
}

macro_rules! hex_bytes {
    ($(#[$doc:meta])* $name:ident, $len:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize)]
        pub struct $name(pub [u8; $len]);

        impl $name {
            /// The raw bytes.
            pub fn as_bytes(&self) -> &[u8; $len] {
                &self.0
            }
            /// Lowercase hex.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }
            /// Parse lowercase or uppercase hex of exactly the right length.
            pub fn from_hex(s: &str) -> Result<Self, HexError> {
                let mut out = [0u8; $len];
                hex::decode_to_slice(s, &mut out).map_err(|_| HexError { expected: $len })?;
                Ok(Self(out))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.to_hex())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.to_hex())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s: std::borrow::Cow<'de, str> = Deserialize::deserialize(d)?;
                Self::from_hex(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

hex_bytes!(
    /// An Ed25519 public key (compressed point), identifying an actor or a gateway.
    PublicKey,
    32
);
hex_bytes!(
    /// An Ed25519 signature.
    Signature,
    64
);
hex_bytes!(
    /// A SHA-256 digest.
    Hash,
    32
);

/// Text that is not hex of the expected length.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected {expected} bytes as hex")]
pub struct HexError {
    /// The expected number of bytes.
    pub expected: usize,
}

impl PublicKey {
    /// Verify `signature` over the domain-separated encoding of `message`.
    /// Strict: small-order keys, non-canonical points and non-canonical `s`
    /// are refused.
    pub fn verify<T: BorshSerialize>(&self, domain: Domain, message: &T, signature: &Signature) -> bool {
        self.verify_bytes(&domain_bytes(domain, message), signature)
    }

    /// [`PublicKey::verify`], answered from `memo` when these exact bytes were
    /// found valid before, and remembered there when they are found valid now.
    pub fn verify_memo<T: BorshSerialize>(
        &self,
        domain: Domain,
        message: &T,
        signature: &Signature,
        memo: Option<&crate::memo::SigMemo>,
    ) -> bool {
        let bytes = domain_bytes(domain, message);
        let Some(memo) = memo else {
            return self.verify_bytes(&bytes, signature);
        };
        let key = crate::memo::SigMemo::key(&self.0, &bytes, &signature.0);
        if memo.contains(&key) {
            return true;
        }
        let ok = self.verify_bytes(&bytes, signature);
        if ok {
            memo.remember(key);
        }
        ok
    }

    /// Why this key can never be a signer, if it cannot: it is not a curve
    /// point, or it is of small order (ed25519-dalek's `is_weak`), under
    /// which [`PublicKey::verify`] refuses every signature. Such a key must
    /// not enter state: an actor or gateway registered with it could sign
    /// nothing, and a lax verifier elsewhere might accept anything from it.
    pub fn weakness(&self) -> Option<&'static str> {
        match ed25519_dalek::VerifyingKey::from_bytes(&self.0) {
            Err(_) => Some("is not a point on the curve"),
            Ok(key) if key.is_weak() => Some("is of small order"),
            Ok(_) => None,
        }
    }

    fn verify_bytes(&self, bytes: &[u8], signature: &Signature) -> bool {
        let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(&self.0) else {
            return false;
        };
        if key.is_weak() {
            return false;
        }
        let sig = ed25519_dalek::Signature::from_bytes(&signature.0);
        // `verify_strict` evaluates the same equation as `verify`, plus the
        // small-order checks on R and the key; checking both would pay twice.
        key.verify_strict(bytes, &sig).is_ok()
    }
}

/// A secret signing key. Kept out of `Debug` output.
#[derive(Clone)]
pub struct SecretKey(ed25519_dalek::SigningKey);

impl SecretKey {
    /// The key for a 32-byte seed.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self(ed25519_dalek::SigningKey::from_bytes(&seed))
    }
    /// The 32-byte seed.
    pub fn seed(&self) -> [u8; 32] {
        self.0.to_bytes()
    }
    /// The matching public key.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key().to_bytes())
    }
    /// Sign the domain-separated encoding of `message`.
    pub fn sign<T: BorshSerialize>(&self, domain: Domain, message: &T) -> Signature {
        Signature(self.0.sign(&domain_bytes(domain, message)).to_bytes())
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey(public={})", self.public())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_for_one_domain_does_not_verify_in_another() {
        let k = SecretKey::from_seed([7; 32]);
        let msg = 42u64;
        let sig = k.sign(Domain::Step, &msg);
        assert!(k.public().verify(Domain::Step, &msg, &sig));
        assert!(!k.public().verify(Domain::Batch, &msg, &sig));
        assert!(!k.public().verify(Domain::Step, &43u64, &sig));
    }

    #[test]
    fn a_malleated_signature_is_refused() {
        let k = SecretKey::from_seed([9; 32]);
        let sig = k.sign(Domain::Step, &1u8);
        // Add the group order L to s: same point equation, non-canonical s.
        const L: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            0, 0, 0, 0, 0, 0x10,
        ];
        let mut s = [0u8; 32];
        s.copy_from_slice(&sig.0[32..]);
        let mut carry = 0u16;
        for i in 0..32 {
            let v = s[i] as u16 + L[i] as u16 + carry;
            s[i] = v as u8;
            carry = v >> 8;
        }
        let mut bad = sig;
        bad.0[32..].copy_from_slice(&s);
        assert_ne!(bad, sig);
        assert!(!k.public().verify(Domain::Step, &1u8, &bad));
    }

    #[test]
    fn a_small_order_key_is_refused() {
        // The identity point: every signature "verifies" under the lax rules.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let sig = Signature([0; 64]);
        assert!(!PublicKey(identity).verify(Domain::Step, &1u8, &sig));
        assert_eq!(PublicKey(identity).weakness(), Some("is of small order"));
    }

    #[test]
    fn weakness_names_small_order_and_off_curve_keys_only() {
        assert_eq!(SecretKey::from_seed([3; 32]).public().weakness(), None);
        // All-zero bytes encode a point of order 4; so does its negation.
        assert_eq!(PublicKey([0; 32]).weakness(), Some("is of small order"));
        let mut negated = [0u8; 32];
        negated[31] = 0x80;
        assert_eq!(PublicKey(negated).weakness(), Some("is of small order"));
        // y = 2 is not the y coordinate of any curve point.
        let mut off_curve = [0u8; 32];
        off_curve[0] = 2;
        assert_eq!(PublicKey(off_curve).weakness(), Some("is not a point on the curve"));
    }

    #[test]
    fn hex_round_trips_and_rejects_wrong_lengths() {
        let k = SecretKey::from_seed([1; 32]).public();
        assert_eq!(PublicKey::from_hex(&k.to_hex()).unwrap(), k);
        assert!(PublicKey::from_hex("abcd").is_err());
        assert!(PublicKey::from_hex(&"zz".repeat(32)).is_err());
    }
}
