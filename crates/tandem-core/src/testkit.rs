//! Fixtures for tests of this crate and of the crates above it: a cast of
//! actors with fixed keys, their genesis, and builders for every action.
//! Compiled only with the `testkit` feature (or in this crate's own tests).

use std::collections::BTreeMap;

use crate::apply::Ctx;
use crate::crypto::{Domain, Hash, PublicKey, SecretKey};
use crate::genesis::{Genesis, GenesisActor, GenesisGateway};
use crate::kv::Overlay;
use crate::limits::{ID_BYTES_MAX, MANIFEST_LINES_MAX, QUANTITY_MAX, TEXT_BYTES_MAX};
use crate::message::{
    Action, BatchBody, ItemCount, SessionBatch, SessionClose, SessionOpen, SignedSessionClose, SignedSessionOpen, SignedStep, Step,
};
use crate::model::{Manifest, ManifestLine, Priority, Role};
use crate::workflow::INTAKE;

/// The chain id the fixtures sign for.
pub const CHAIN_ID: &str = "tandem-test";
/// The block time the fixtures assume (2026-01-01T00:00:00Z).
pub const TIME_MS: u64 = 1_767_225_600_000;

/// A fixed cast of actors and one gateway, with keys from fixed seeds.
#[derive(Debug, Clone)]
pub struct Cast {
    /// Administrator.
    pub admin: SecretKey,
    /// A supplier.
    pub supplier: SecretKey,
    /// A second supplier.
    pub supplier2: SecretKey,
    /// An operator.
    pub operator: SecretKey,
    /// A second operator.
    pub operator2: SecretKey,
    /// An inspector.
    pub inspector: SecretKey,
    /// A courier.
    pub courier: SecretKey,
    /// A second courier.
    pub courier2: SecretKey,
    /// A registered gateway.
    pub gateway: SecretKey,
    /// A key nobody registered.
    pub stranger: SecretKey,
}

impl Default for Cast {
    fn default() -> Self {
        Self::new()
    }
}

impl Cast {
    /// The cast.
    pub fn new() -> Self {
        let k = |n: u8| SecretKey::from_seed([n; 32]);
        Cast {
            admin: k(1),
            supplier: k(2),
            supplier2: k(3),
            operator: k(4),
            operator2: k(5),
            inspector: k(6),
            courier: k(7),
            courier2: k(8),
            gateway: k(9),
            stranger: k(10),
        }
    }

    /// The genesis that registers everyone but the stranger.
    pub fn genesis(&self) -> Genesis {
        let a = |name: &str, role, k: &SecretKey| GenesisActor { name: name.into(), role, public_key: k.public() };
        Genesis {
            actors: vec![
                a("admin", Role::Admin, &self.admin),
                a("supplier-1", Role::Supplier, &self.supplier),
                a("supplier-2", Role::Supplier, &self.supplier2),
                a("operator-1", Role::Operator, &self.operator),
                a("operator-2", Role::Operator, &self.operator2),
                a("inspector-1", Role::Inspector, &self.inspector),
                a("courier-1", Role::Courier, &self.courier),
                a("courier-2", Role::Courier, &self.courier2),
            ],
            gateways: vec![GenesisGateway { name: "gateway-1".into(), public_key: self.gateway.public() }],
        }
    }

    /// Fresh in-memory state holding the genesis.
    pub fn state(&self) -> Overlay<BTreeMap<Vec<u8>, Vec<u8>>> {
        let mut state = Overlay::new(BTreeMap::new());
        self.genesis().apply(CHAIN_ID, &mut state).expect("the fixture genesis is valid");
        state
    }
}

/// The context the fixtures decide in.
pub fn ctx() -> Ctx<'static> {
    Ctx { chain_id: CHAIN_ID, time_ms: TIME_MS, workflow: &INTAKE, sigs: None }
}

/// A signed open request.
pub fn open(owner: &SecretKey, gateway: Option<PublicKey>, nonce: u64) -> SignedSessionOpen {
    SessionOpen { chain_id: CHAIN_ID.into(), owner: owner.public(), gateway, nonce, client_time_ms: TIME_MS }.sign(owner)
}

/// A signed step.
pub fn step(actor: &SecretKey, session: Hash, seq: u64, package: &str, action: Action) -> SignedStep {
    Step { chain_id: CHAIN_ID.into(), session, seq, actor: actor.public(), package_id: package.into(), action, client_time_ms: TIME_MS }
        .sign(actor)
}

/// A two-line manifest for `package`.
pub fn manifest(package: &str) -> Manifest {
    Manifest {
        chain_id: CHAIN_ID.into(),
        package_id: package.into(),
        delivery_note_id: format!("DN-{package}"),
        lines: vec![
            ManifestLine { item_id: "SKU-1".into(), description: "bolts".into(), quantity: 100 },
            ManifestLine { item_id: "SKU-2".into(), description: "nuts".into(), quantity: 250 },
        ],
    }
}

/// `register`, with the manifest signed by `supplier`.
pub fn register(supplier: &SecretKey, package: &str) -> Action {
    let manifest = manifest(package);
    let manifest_signature = supplier.sign(Domain::Manifest, &manifest);
    Action::Register { manifest, manifest_signature }
}

/// A package id of exactly [`ID_BYTES_MAX`] bytes: `prefix`, then `n`
/// zero-padded to the full length (so ids sort in `n` order).
pub fn max_package_id(prefix: &str, n: u64) -> String {
    let digits = ID_BYTES_MAX - prefix.len();
    format!("{prefix}{n:0digits$}")
}

/// The largest manifest the workflow accepts for `package` on `chain_id`:
/// [`MANIFEST_LINES_MAX`] lines, every id [`ID_BYTES_MAX`] bytes, every
/// description [`TEXT_BYTES_MAX`] bytes.
pub fn max_manifest(chain_id: &str, package: &str) -> Manifest {
    let id = |prefix: &str, n: usize| format!("{prefix}{n:0width$}", width = ID_BYTES_MAX - prefix.len());
    Manifest {
        chain_id: chain_id.into(),
        package_id: package.into(),
        delivery_note_id: id("DN-", 0),
        lines: (0..MANIFEST_LINES_MAX)
            .map(|i| ManifestLine { item_id: id("SKU-", i), description: "d".repeat(TEXT_BYTES_MAX), quantity: QUANTITY_MAX })
            .collect(),
    }
}

/// `register` of maximum size ([`max_manifest`], signed by `supplier`). With a
/// [`max_package_id`] and a chain id of [`CHAIN_ID_BYTES_MAX`] bytes its
/// signed step is exactly [`SIGNED_STEP_BYTES_MAX`] bytes, the largest step
/// the workflow accepts.
///
/// [`CHAIN_ID_BYTES_MAX`]: crate::limits::CHAIN_ID_BYTES_MAX
/// [`SIGNED_STEP_BYTES_MAX`]: crate::limits::SIGNED_STEP_BYTES_MAX
pub fn max_register(chain_id: &str, supplier: &SecretKey, package: &str) -> Action {
    let manifest = max_manifest(chain_id, package);
    let manifest_signature = supplier.sign(Domain::Manifest, &manifest);
    Action::Register { manifest, manifest_signature }
}

/// `scan` at station S1.
pub fn scan() -> Action {
    Action::Scan { station: "S1".into() }
}

/// `validate` with counts equal to [`manifest`].
pub fn validate() -> Action {
    Action::Validate {
        counts: vec![ItemCount { item_id: "SKU-1".into(), quantity: 100 }, ItemCount { item_id: "SKU-2".into(), quantity: 250 }],
    }
}

/// `qc` with a verdict.
pub fn qc(passed: bool) -> Action {
    Action::Qc { passed, issues: if passed { vec![] } else { vec!["crushed corner".into()] } }
}

/// `label` for `courier`.
pub fn label(courier: PublicKey) -> Action {
    Action::Label { label_id: "L-1".into(), destination: "Dock 4".into(), priority: Priority::High, courier }
}

/// `handover` to `courier`.
pub fn handover(courier: PublicKey) -> Action {
    Action::Handover { courier }
}

/// `deliver`.
pub fn deliver() -> Action {
    Action::Deliver { recipient: "Receiving desk".into() }
}

/// A gateway-signed batch of `steps` with the given claims.
pub fn batch(
    gateway: &SecretKey,
    session: Hash,
    open: Option<SignedSessionOpen>,
    steps: Vec<SignedStep>,
    claims: Vec<Hash>,
) -> SessionBatch {
    BatchBody { chain_id: CHAIN_ID.into(), session, open, steps, claims, gateway: gateway.public(), close: None }.sign(gateway)
}

/// An owner's signed close of `session` after step `last_seq`.
pub fn close(owner: &SecretKey, session: Hash, last_seq: u64) -> SignedSessionClose {
    SessionClose { chain_id: CHAIN_ID.into(), session, owner: owner.public(), last_seq }.sign(owner)
}

/// [`batch`] carrying the owner's `close`.
pub fn batch_closing(
    gateway: &SecretKey,
    session: Hash,
    open: Option<SignedSessionOpen>,
    steps: Vec<SignedStep>,
    claims: Vec<Hash>,
    close: SignedSessionClose,
) -> SessionBatch {
    BatchBody { chain_id: CHAIN_ID.into(), session, open, steps, claims, gateway: gateway.public(), close: Some(close) }.sign(gateway)
}
