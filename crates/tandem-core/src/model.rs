//! The domain's state: actors, gateways, packages and sessions, as stored by
//! both layers. Every type has one canonical (borsh) encoding, and a JSON form
//! for the HTTP API.

use std::collections::BTreeMap;

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

use crate::crypto::{Hash, PublicKey};
use crate::reject::Code;

/// What an actor is allowed to do. The workflow table says which role may
/// perform which action.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[borsh(use_discriminant = true)]
pub enum Role {
    /// Registers and revokes actors and gateways.
    Admin = 0,
    /// Registers packages with signed manifests.
    Supplier = 1,
    /// Scans, validates, labels and hands over packages at a station.
    Operator = 2,
    /// Records quality checks.
    Inspector = 3,
    /// Takes over labelled packages and delivers them.
    Courier = 4,
}

impl Role {
    /// Every role, in encoding order.
    pub const ALL: [Role; 5] = [Role::Admin, Role::Supplier, Role::Operator, Role::Inspector, Role::Courier];

    /// The stable lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Supplier => "supplier",
            Role::Operator => "operator",
            Role::Inspector => "inspector",
            Role::Courier => "courier",
        }
    }

    /// Parse a lowercase name.
    pub fn from_name(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.name() == s)
    }
}

/// A registered participant.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Actor {
    /// The key that signs this actor's steps.
    pub key: PublicKey,
    /// Display name.
    pub name: String,
    /// What the actor may do.
    pub role: Role,
    /// Revoked actors can sign nothing.
    pub active: bool,
}

/// A registered L2 gateway: it may submit session batches it signed.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Gateway {
    /// The key that signs batches and receipts.
    pub key: PublicKey,
    /// Display name.
    pub name: String,
    /// Revoked gateways can submit nothing.
    pub active: bool,
    /// Batches this gateway signed that L1 refused for a fault its signature
    /// alone proves, which an honest gateway never commits (see
    /// [`crate::apply::gateway_fault`]).
    pub misbehaviours: u64,
    /// The same batches by the code they were refused with. Ordered by code
    /// (its number in the encoding); codes never seen are absent.
    pub faults: BTreeMap<Code, u64>,
}

impl Gateway {
    /// A newly registered, active gateway with a clean record.
    pub fn new(key: PublicKey, name: String) -> Gateway {
        Gateway { key, name, active: true, misbehaviours: 0, faults: BTreeMap::new() }
    }

    /// Count one misbehaviour of kind `code`.
    pub fn record_fault(&mut self, code: Code) {
        self.misbehaviours += 1;
        *self.faults.entry(code).or_insert(0) += 1;
    }
}

/// Where a package is in the intake workflow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[borsh(use_discriminant = true)]
pub enum Stage {
    /// The supplier registered it with a signed manifest.
    Registered = 0,
    /// An operator scanned it at a station.
    Scanned = 1,
    /// The manifest signature and contents were checked.
    Validated = 2,
    /// Quality check passed.
    Inspected = 3,
    /// Quality check failed; the package goes no further.
    Quarantined = 4,
    /// Labelled for a courier.
    Labeled = 5,
    /// Handed over to its courier.
    HandedOver = 6,
    /// Delivered by its courier.
    Delivered = 7,
}

impl Stage {
    /// Every stage, in workflow order.
    pub const ALL: [Stage; 8] = [
        Stage::Registered,
        Stage::Scanned,
        Stage::Validated,
        Stage::Inspected,
        Stage::Quarantined,
        Stage::Labeled,
        Stage::HandedOver,
        Stage::Delivered,
    ];

    /// The stable lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Registered => "registered",
            Stage::Scanned => "scanned",
            Stage::Validated => "validated",
            Stage::Inspected => "inspected",
            Stage::Quarantined => "quarantined",
            Stage::Labeled => "labeled",
            Stage::HandedOver => "handed_over",
            Stage::Delivered => "delivered",
        }
    }
}

/// One line of a supplier's manifest.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct ManifestLine {
    /// The supplier's item id.
    pub item_id: String,
    /// What the item is.
    pub description: String,
    /// How many are in the package.
    pub quantity: u32,
}

/// What the supplier declares is in a package. The supplier signs it
/// ([`crate::crypto::Domain::Manifest`]) and the operator's `validate` step
/// checks that signature against the registered supplier key.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Manifest {
    /// The chain the manifest is meant for.
    pub chain_id: String,
    /// The package it describes.
    pub package_id: String,
    /// The supplier's delivery-note id.
    pub delivery_note_id: String,
    /// The lines.
    pub lines: Vec<ManifestLine>,
}

/// A quality check's result.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct QcRecord {
    /// Did the package pass?
    pub passed: bool,
    /// What was found (required when it failed).
    pub issues: Vec<String>,
    /// Who checked.
    pub inspector: PublicKey,
}

/// Delivery priority printed on the label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[borsh(use_discriminant = true)]
pub enum Priority {
    /// Whenever convenient.
    Low = 0,
    /// The usual.
    Normal = 1,
    /// Before normal packages.
    High = 2,
    /// Same day.
    Urgent = 3,
}

/// A courier label.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Label {
    /// The label's id.
    pub label_id: String,
    /// Where the package goes.
    pub destination: String,
    /// How urgent it is.
    pub priority: Priority,
    /// The courier assigned to it.
    pub courier: PublicKey,
}

/// One step in a package's history. L1 height and transaction hash are not
/// part of state (an outcome must not depend on where it lands); they are
/// attached by whoever follows finality.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// What was done.
    pub action: crate::workflow::ActionKind,
    /// Who did it.
    pub actor: PublicKey,
    /// In which session.
    pub session: Hash,
    /// At which position of that session.
    pub seq: u64,
    /// The signed client timestamp (ms since the Unix epoch).
    pub client_time_ms: u64,
    /// The stage it left the package in.
    pub stage: Stage,
}

/// A package and everything that happened to it.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Package {
    /// Its id.
    pub id: String,
    /// The supplier that registered it.
    pub supplier: PublicKey,
    /// The supplier's delivery-note id.
    pub delivery_note_id: String,
    /// What the supplier declared.
    pub manifest: Manifest,
    /// The supplier's signature over the manifest.
    pub manifest_signature: crate::crypto::Signature,
    /// Where it is now.
    pub stage: Stage,
    /// Quality checks, oldest first.
    pub qc: Vec<QcRecord>,
    /// Its label, once labelled.
    pub label: Option<Label>,
    /// Every step, oldest first.
    pub history: Vec<HistoryEntry>,
}

impl Package {
    /// The digest an outcome carries: a commitment to the whole record.
    pub fn digest(&self) -> Hash {
        crate::crypto::hash(crate::crypto::Domain::Package, self)
    }
}

/// A session as L1 (and the gateway's replica of it) remembers it.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct SessionRecord {
    /// Its id (derived from the open request).
    pub id: Hash,
    /// The actor whose steps it holds.
    pub owner: PublicKey,
    /// The gateway allowed to submit its batches; `None` for a session whose
    /// steps go to L1 directly, one transaction each.
    pub gateway: Option<PublicKey>,
    /// The sequence number of its last finalized step (0 before the first).
    pub last_seq: u64,
    /// Closed by its owner's signed close: it takes no more steps or
    /// batches.
    pub closed: bool,
}
