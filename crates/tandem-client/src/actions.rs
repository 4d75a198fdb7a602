//! Builders for every action of the intake workflow.

use tandem_core::crypto::Domain;
use tandem_core::message::{Action, ItemCount};
use tandem_core::model::{Manifest, ManifestLine, Priority};
use tandem_core::{PublicKey, SecretKey};

/// `register`: the supplier signs `lines` as the manifest of `package`.
pub fn register(chain_id: &str, supplier: &SecretKey, package: &str, delivery_note: &str, lines: Vec<ManifestLine>) -> Action {
    let manifest = Manifest { chain_id: chain_id.into(), package_id: package.into(), delivery_note_id: delivery_note.into(), lines };
    let manifest_signature = supplier.sign(Domain::Manifest, &manifest);
    Action::Register { manifest, manifest_signature }
}

/// A manifest line.
pub fn line(item_id: &str, description: &str, quantity: u32) -> ManifestLine {
    ManifestLine { item_id: item_id.into(), description: description.into(), quantity }
}

/// `scan` at a station.
pub fn scan(station: &str) -> Action {
    Action::Scan { station: station.into() }
}

/// `validate`, counting exactly the manifest's lines.
pub fn validate_as_declared(lines: &[ManifestLine]) -> Action {
    Action::Validate { counts: lines.iter().map(|l| ItemCount { item_id: l.item_id.clone(), quantity: l.quantity }).collect() }
}

/// `qc` with a verdict (a failed check needs at least one issue).
pub fn qc(passed: bool, issues: &[&str]) -> Action {
    Action::Qc { passed, issues: issues.iter().map(|s| s.to_string()).collect() }
}

/// `label` for a courier.
pub fn label(label_id: &str, destination: &str, priority: Priority, courier: PublicKey) -> Action {
    Action::Label { label_id: label_id.into(), destination: destination.into(), priority, courier }
}

/// `handover` to the courier on the label.
pub fn handover(courier: PublicKey) -> Action {
    Action::Handover { courier }
}

/// `deliver`.
pub fn deliver(recipient: &str) -> Action {
    Action::Deliver { recipient: recipient.into() }
}
