//! Signed messages and transactions: what clients sign, what gateways submit
//! and what L1 decodes. The wire format is the canonical borsh encoding of
//! [`Tx`]; `docs/protocol.md` specifies it byte by byte.

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

use crate::crypto::{hash, Domain, Hash, PublicKey, SecretKey, Signature};
use crate::limits::TX_BYTES_MAX;
use crate::model::{Manifest, Priority, Stage};
use crate::workflow::ActionKind;

/// A counted quantity, reported by the operator when validating contents.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct ItemCount {
    /// The manifest's item id.
    pub item_id: String,
    /// How many were counted.
    pub quantity: u32,
}

/// What a step does, with its payload.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Action {
    /// A supplier registers a package with its signed manifest.
    Register {
        /// What is in the package.
        manifest: Manifest,
        /// The supplier's signature over the manifest.
        manifest_signature: Signature,
    },
    /// An operator scans the package at a station.
    Scan {
        /// The station's id.
        station: String,
    },
    /// An operator checks the manifest's signature and counts the contents.
    Validate {
        /// What the operator counted, in manifest order.
        counts: Vec<ItemCount>,
    },
    /// A quality check.
    Qc {
        /// Did it pass?
        passed: bool,
        /// What was found.
        issues: Vec<String>,
    },
    /// An operator labels the package for a courier.
    Label {
        /// The label's id.
        label_id: String,
        /// Where it goes.
        destination: String,
        /// How urgent.
        priority: Priority,
        /// Which courier takes it.
        courier: PublicKey,
    },
    /// An operator hands the package to its courier.
    Handover {
        /// The courier taking it (must be the one on the label).
        courier: PublicKey,
    },
    /// The courier delivers it.
    Deliver {
        /// Who received it.
        recipient: String,
    },
}

impl Action {
    /// The payload-free kind the workflow table is keyed by.
    pub fn kind(&self) -> ActionKind {
        match self {
            Action::Register { .. } => ActionKind::Register,
            Action::Scan { .. } => ActionKind::Scan,
            Action::Validate { .. } => ActionKind::Validate,
            Action::Qc { .. } => ActionKind::Qc,
            Action::Label { .. } => ActionKind::Label,
            Action::Handover { .. } => ActionKind::Handover,
            Action::Deliver { .. } => ActionKind::Deliver,
        }
    }
}

/// One step of a session, as its actor signs it.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Step {
    /// The chain it is meant for.
    pub chain_id: String,
    /// The session it belongs to.
    pub session: Hash,
    /// Its position in the session, from 1.
    pub seq: u64,
    /// Who signs it.
    pub actor: PublicKey,
    /// The package it acts on.
    pub package_id: String,
    /// What it does.
    pub action: Action,
    /// The client's clock when signing (ms since the Unix epoch).
    pub client_time_ms: u64,
}

impl Step {
    /// The step's hash: what receipts and outcomes refer to.
    pub fn hash(&self) -> Hash {
        hash(Domain::Step, self)
    }
    /// Sign it.
    pub fn sign(self, key: &SecretKey) -> SignedStep {
        let signature = key.sign(Domain::Step, &self);
        SignedStep { step: self, signature }
    }
}

/// A step with its actor's signature.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct SignedStep {
    /// The step.
    pub step: Step,
    /// The actor's signature ([`Domain::Step`]).
    pub signature: Signature,
}

/// A request to open a session, signed by its owner.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct SessionOpen {
    /// The chain it is meant for.
    pub chain_id: String,
    /// The actor whose steps the session holds.
    pub owner: PublicKey,
    /// The gateway that will submit it, or `None` for steps sent to L1
    /// directly.
    pub gateway: Option<PublicKey>,
    /// Chosen by the client to make the id unique.
    pub nonce: u64,
    /// The client's clock when signing (ms since the Unix epoch).
    pub client_time_ms: u64,
}

impl SessionOpen {
    /// The session id: a hash of the whole request, so it is bound to owner,
    /// gateway and nonce.
    pub fn session_id(&self) -> Hash {
        hash(Domain::SessionId, self)
    }
    /// Sign it.
    pub fn sign(self, key: &SecretKey) -> SignedSessionOpen {
        let signature = key.sign(Domain::SessionOpen, &self);
        SignedSessionOpen { open: self, signature }
    }
}

/// A session-open request with its owner's signature.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct SignedSessionOpen {
    /// The request.
    pub open: SessionOpen,
    /// The owner's signature ([`Domain::SessionOpen`]).
    pub signature: Signature,
}

/// A session owner's close of its session after step `last_seq`: from then
/// on the session takes no more steps. Only the owner can close a session; a
/// gateway carries the signed close in the batch that ends at `last_seq`
/// (see [`BatchBody::close`]), so that L1 checks it too.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct SessionClose {
    /// The chain it is meant for.
    pub chain_id: String,
    /// The session closed.
    pub session: Hash,
    /// The owner, who signs (the session's owner on L1).
    pub owner: PublicKey,
    /// The sequence number of the session's last step (0 for none).
    pub last_seq: u64,
}

impl SessionClose {
    /// Sign it.
    pub fn sign(self, key: &SecretKey) -> SignedSessionClose {
        let signature = key.sign(Domain::SessionClose, &self);
        SignedSessionClose { close: self, signature }
    }
}

/// A close with its owner's signature.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct SignedSessionClose {
    /// The close.
    pub close: SessionClose,
    /// The owner's signature ([`Domain::SessionClose`]).
    pub signature: Signature,
}

impl SignedSessionClose {
    /// Does the owner's signature hold?
    pub fn verify(&self, memo: Option<&crate::memo::SigMemo>) -> bool {
        self.close.owner.verify_memo(Domain::SessionClose, &self.close, &self.signature, memo)
    }
}

/// What a gateway signs when it submits a checkpoint of a session.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct BatchBody {
    /// The chain it is meant for.
    pub chain_id: String,
    /// The session.
    pub session: Hash,
    /// The open request, in the session's first checkpoint only.
    pub open: Option<SignedSessionOpen>,
    /// The signed steps, consecutive, continuing from L1's last finalized one.
    pub steps: Vec<SignedStep>,
    /// The outcome hash the gateway predicted for each step.
    pub claims: Vec<Hash>,
    /// The submitting gateway.
    pub gateway: PublicKey,
    /// The owner's close, in the session's last batch only: the session is
    /// closed after this batch's last step. A batch without it is a
    /// checkpoint and leaves the session open.
    pub close: Option<SignedSessionClose>,
}

/// A checkpoint of a session, committed whole or rejected whole.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct SessionBatch {
    /// What the gateway signed.
    pub body: BatchBody,
    /// The gateway's signature ([`Domain::Batch`]).
    pub signature: Signature,
}

impl BatchBody {
    /// Sign it with the gateway's key.
    pub fn sign(self, key: &SecretKey) -> SessionBatch {
        let signature = key.sign(Domain::Batch, &self);
        SessionBatch { body: self, signature }
    }
}

/// One step as its own transaction: the L1-only path.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct DirectStep {
    /// The open request, with the session's first step only.
    pub open: Option<SignedSessionOpen>,
    /// The step.
    pub step: SignedStep,
}

/// What an administrator can change.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AdminOp {
    /// Register a new actor.
    RegisterActor {
        /// Its key.
        key: PublicKey,
        /// Its name.
        name: String,
        /// Its role.
        role: crate::model::Role,
    },
    /// Revoke an actor: it can sign nothing more.
    RevokeActor {
        /// Its key.
        key: PublicKey,
    },
    /// Register a new gateway.
    RegisterGateway {
        /// Its key.
        key: PublicKey,
        /// Its name.
        name: String,
    },
    /// Revoke a gateway: it can submit nothing more.
    RevokeGateway {
        /// Its key.
        key: PublicKey,
    },
}

/// What an administrator signs.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct AdminBody {
    /// The chain it is meant for.
    pub chain_id: String,
    /// The signing administrator.
    pub admin: PublicKey,
    /// Exactly one more than this administrator's previous nonce.
    pub nonce: u64,
    /// The change.
    pub op: AdminOp,
}

impl AdminBody {
    /// Sign it.
    pub fn sign(self, key: &SecretKey) -> SignedAdmin {
        let signature = key.sign(Domain::Admin, &self);
        SignedAdmin { body: self, signature }
    }
}

/// An administrator's transaction.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct SignedAdmin {
    /// The change.
    pub body: AdminBody,
    /// The administrator's signature ([`Domain::Admin`]).
    pub signature: Signature,
}

/// Every transaction L1 accepts.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[allow(clippy::large_enum_variant)]
pub enum Tx {
    /// A checkpoint of a gateway's session.
    SessionBatch(SessionBatch),
    /// One step straight to L1.
    DirectStep(DirectStep),
    /// An administrator's change.
    Admin(SignedAdmin),
}

/// Why transaction bytes could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Larger than [`TX_BYTES_MAX`].
    #[error("transaction of {0} bytes exceeds the limit of {TX_BYTES_MAX}")]
    TooLarge(usize),
    /// Not a canonical encoding of a [`Tx`] (including trailing bytes).
    #[error("not a valid transaction encoding: {0}")]
    Malformed(String),
}

impl Tx {
    /// The canonical encoding.
    pub fn encode(&self) -> Vec<u8> {
        borsh::to_vec(self).expect("writing to a Vec cannot fail")
    }

    /// Decode, refusing oversized input and anything that is not exactly one
    /// canonical encoding. Never panics, whatever the bytes.
    pub fn decode(bytes: &[u8]) -> Result<Tx, DecodeError> {
        if bytes.len() > TX_BYTES_MAX {
            return Err(DecodeError::TooLarge(bytes.len()));
        }
        borsh::from_slice(bytes).map_err(|e| DecodeError::Malformed(e.to_string()))
    }
}

/// What a step did, as far as anyone can know before it is finalized. The
/// gateway predicts it, L1 recomputes it, and the two must hash the same.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Outcome {
    /// The step's hash.
    pub step: Hash,
    /// The package it acted on.
    pub package_id: String,
    /// What it did.
    pub action: ActionKind,
    /// The package's stage before (`None` when it was registered by this step).
    pub stage_before: Option<Stage>,
    /// The package's stage after.
    pub stage_after: Stage,
    /// Digest of the whole package record after the step.
    pub package_digest: Hash,
}

impl Outcome {
    /// The hash a gateway claims in a batch.
    pub fn hash(&self) -> Hash {
        hash(Domain::Outcome, self)
    }
}

/// What a gateway signs when it acknowledges a step.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct ReceiptBody {
    /// The chain.
    pub chain_id: String,
    /// The session.
    pub session: Hash,
    /// The step's position.
    pub seq: u64,
    /// The step's hash.
    pub step: Hash,
    /// The predicted outcome's hash.
    pub outcome: Hash,
}

/// A gateway's signed promise: this step is durable and will be submitted with
/// this outcome.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Receipt {
    /// What is promised.
    pub body: ReceiptBody,
    /// The gateway.
    pub gateway: PublicKey,
    /// Its signature ([`Domain::Receipt`]).
    pub signature: Signature,
}

impl Receipt {
    /// Issue a receipt.
    pub fn issue(body: ReceiptBody, gateway: &SecretKey) -> Receipt {
        let signature = gateway.sign(Domain::Receipt, &body);
        Receipt { body, gateway: gateway.public(), signature }
    }
    /// Does the signature hold?
    pub fn verify(&self) -> bool {
        self.gateway.verify(Domain::Receipt, &self.body, &self.signature)
    }
}
