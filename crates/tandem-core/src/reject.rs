//! Why a step, session or transaction was refused: stable machine codes that
//! clients, the gateway's HTTP API and L1's result codes all share.

use serde::{Deserialize, Serialize};

macro_rules! codes {
    ($($(#[$doc:meta])* $variant:ident = $num:literal, $name:literal;)*) => {
        /// A stable rejection code. The string is what APIs show; the number
        /// is L1's ABCI result code. Neither ever changes meaning.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum Code {
            $($(#[$doc])* $variant,)*
        }

        impl Code {
            /// Every code.
            pub const ALL: &'static [Code] = &[$(Code::$variant,)*];

            /// The stable snake_case name.
            pub fn name(self) -> &'static str {
                match self { $(Code::$variant => $name,)* }
            }

            /// The ABCI result code (never 0, which means success).
            pub fn number(self) -> u32 {
                match self { $(Code::$variant => $num,)* }
            }

            /// The code for an ABCI result code.
            pub fn from_number(n: u32) -> Option<Code> {
                match n { $($num => Some(Code::$variant),)* _ => None }
            }

            /// The code for a name.
            pub fn from_name(s: &str) -> Option<Code> {
                match s { $($name => Some(Code::$variant),)* _ => None }
            }
        }
    };
}

codes! {
    /// The bytes are not a canonical transaction.
    Malformed = 1, "malformed";
    /// Larger than a limit allows.
    TooLarge = 2, "too_large";
    /// Signed for another chain.
    WrongChain = 3, "wrong_chain";
    /// A signature does not verify.
    BadSignature = 4, "bad_signature";
    /// The signer is not a registered actor.
    UnknownActor = 5, "unknown_actor";
    /// The signer was revoked.
    ActorRevoked = 6, "actor_revoked";
    /// The signer's role may not do this.
    RoleDenied = 7, "role_denied";
    /// No such session.
    UnknownSession = 8, "unknown_session";
    /// The session already exists.
    SessionExists = 9, "session_exists";
    /// The step's actor is not the session's owner.
    NotSessionOwner = 10, "not_session_owner";
    /// The sequence number is not the next one.
    BadSequence = 11, "bad_sequence";
    /// The session reached its step limit.
    SessionFull = 12, "session_full";
    /// The client timestamp is too far from the block time.
    StaleTime = 13, "stale_time";
    /// No such package.
    UnknownPackage = 14, "unknown_package";
    /// The package already exists.
    PackageExists = 15, "package_exists";
    /// The package is not in a stage this action starts from.
    WrongStage = 16, "wrong_stage";
    /// A field is empty, too long or out of range.
    InvalidPayload = 17, "invalid_payload";
    /// The manifest's signature does not verify under the supplier's key.
    ManifestSignatureInvalid = 18, "manifest_signature_invalid";
    /// The counted contents differ from the manifest.
    ManifestMismatch = 19, "manifest_mismatch";
    /// A failed quality check must name its issues.
    QcIssuesRequired = 20, "qc_issues_required";
    /// The named courier is not a registered, active courier.
    UnknownCourier = 21, "unknown_courier";
    /// The courier is not the one on the label.
    NotAssignedCourier = 22, "not_assigned_courier";
    /// The package's history is full.
    HistoryFull = 23, "history_full";
    /// The submitting gateway is not registered.
    UnknownGateway = 24, "unknown_gateway";
    /// The submitting gateway was revoked.
    GatewayRevoked = 25, "gateway_revoked";
    /// The session belongs to another gateway (or to none).
    GatewayMismatch = 26, "gateway_mismatch";
    /// This batch (or an overlapping one) was already finalized.
    Duplicate = 27, "duplicate";
    /// The gateway's claimed outcome differs from the replayed one.
    OutcomeMismatch = 28, "outcome_mismatch";
    /// A batch with no steps, or claims that do not pair with its steps.
    BadBatch = 29, "bad_batch";
    /// The administrator's nonce is not the next one.
    BadNonce = 30, "bad_nonce";
    /// The signer is not an active administrator.
    NotAdmin = 31, "not_admin";
    /// An actor or gateway with this key exists already.
    KeyExists = 32, "key_exists";
    /// The step belongs to another session than the batch.
    WrongSession = 33, "wrong_session";
    /// This action is not part of the workflow.
    UnknownAction = 34, "unknown_action";
    /// A key that cannot verify signatures (of small order, or not a curve
    /// point) may not be registered.
    WeakKey = 35, "weak_key";
    /// The session was closed by its owner and takes nothing more.
    SessionClosed = 36, "session_closed";
}

/// In state (a gateway's fault counts) a code is its ABCI number, a `u32`.
impl borsh::BorshSerialize for Code {
    fn serialize<W: std::io::Write>(&self, writer: &mut W) -> std::io::Result<()> {
        borsh::BorshSerialize::serialize(&self.number(), writer)
    }
}

impl borsh::BorshDeserialize for Code {
    fn deserialize_reader<R: std::io::Read>(reader: &mut R) -> std::io::Result<Self> {
        let n = u32::deserialize_reader(reader)?;
        Code::from_number(n).ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("no rejection code {n}")))
    }
}

/// A refusal: a stable code and a human-readable detail. Both are
/// deterministic (built from the input only), so L1 validators agree on them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{}: {detail}", code.name())]
pub struct Rejection {
    /// The stable code.
    pub code: Code,
    /// What exactly was wrong.
    pub detail: String,
}

impl Rejection {
    /// A rejection with a detail.
    pub fn new(code: Code, detail: impl Into<String>) -> Self {
        Self { code, detail: detail.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_round_trip() {
        let mut numbers: Vec<u32> = Code::ALL.iter().map(|c| c.number()).collect();
        numbers.sort_unstable();
        numbers.dedup();
        assert_eq!(numbers.len(), Code::ALL.len());
        for &c in Code::ALL {
            assert_ne!(c.number(), 0);
            assert_eq!(Code::from_number(c.number()), Some(c));
            assert_eq!(Code::from_name(c.name()), Some(c));
            assert_eq!(serde_json::to_string(&c).unwrap(), format!("\"{}\"", c.name()));
            assert_eq!(borsh::to_vec(&c).expect("encodes"), c.number().to_le_bytes());
            assert_eq!(borsh::from_slice::<Code>(&c.number().to_le_bytes()).expect("decodes"), c);
        }
    }
}
