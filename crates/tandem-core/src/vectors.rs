//! The protocol test vectors of `docs/protocol-vectors.json`: fixed keys,
//! fixed messages, and the exact bytes every implementation must produce for
//! them. The test checks that the committed file matches this crate; a client
//! in another language checks itself against the same file.
//!
//! To regenerate after an intended change of the encoding:
//! `TANDEM_BLESS=1 cargo test -p tandem-core vectors`.

use serde_json::{json, Value};

use crate::crypto::{domain_bytes, Domain, Hash};
use crate::message::{Outcome, Receipt, ReceiptBody, Tx};
use crate::testkit::*;
use crate::workflow::ActionKind;

fn entry<T: borsh::BorshSerialize + serde::Serialize>(
    name: &str,
    domain: Domain,
    message: &T,
    signer: Option<&crate::crypto::SecretKey>,
) -> Value {
    let signing = domain_bytes(domain, message);
    let mut v = json!({
        "name": name,
        "domain": String::from_utf8_lossy(domain.tag()),
        "json": message,
        "borsh_hex": hex::encode(borsh::to_vec(message).expect("vec")),
        "signing_bytes_hex": hex::encode(&signing),
        "sha256_hex": crate::crypto::hash(domain, message).to_hex(),
    });
    if let Some(k) = signer {
        v["signer_seed_hex"] = json!(hex::encode(k.seed()));
        v["signer_public_key_hex"] = json!(k.public().to_hex());
        v["signature_hex"] = json!(k.sign(domain, message).to_hex());
    }
    v
}

/// Every vector.
pub fn vectors() -> Value {
    let cast = Cast::new();
    let open_req = open(&cast.operator, Some(cast.gateway.public()), 1);
    let session = open_req.open.session_id();
    let manifest = manifest("PKG-1");
    let register_step = step(&cast.supplier, Hash([0x11; 32]), 1, "PKG-1", register(&cast.supplier, "PKG-1"));
    let scan_step = step(&cast.operator, session, 1, "PKG-1", scan());
    let outcome = Outcome {
        step: scan_step.step.hash(),
        package_id: "PKG-1".into(),
        action: ActionKind::Scan,
        stage_before: Some(crate::model::Stage::Registered),
        stage_after: crate::model::Stage::Scanned,
        package_digest: Hash([0x22; 32]),
    };
    let b = batch(&cast.gateway, session, Some(open_req.clone()), vec![scan_step.clone()], vec![outcome.hash()]);
    let receipt = Receipt::issue(
        ReceiptBody { chain_id: CHAIN_ID.into(), session, seq: 1, step: scan_step.step.hash(), outcome: outcome.hash() },
        &cast.gateway,
    );
    let mut session_id = entry("session_id", Domain::SessionId, &open_req.open, None);
    session_id["note"] = json!("the session id is sha256_hex of this entry");
    let tx = Tx::SessionBatch(b.clone());
    // The owner closes the session after its scan step, in a batch of its own.
    let owner_close = close(&cast.operator, session, 1);
    let closing = batch_closing(&cast.gateway, session, None, vec![], vec![], owner_close.clone());
    let closing_tx = Tx::SessionBatch(closing.clone());
    let list = vec![
        entry("session_open", Domain::SessionOpen, &open_req.open, Some(&cast.operator)),
        session_id,
        entry("manifest", Domain::Manifest, &manifest, Some(&cast.supplier)),
        entry("step_register", Domain::Step, &register_step.step, Some(&cast.supplier)),
        entry("step_scan", Domain::Step, &scan_step.step, Some(&cast.operator)),
        entry("outcome", Domain::Outcome, &outcome, None),
        entry("batch_body", Domain::Batch, &b.body, Some(&cast.gateway)),
        entry("receipt", Domain::Receipt, &receipt.body, Some(&cast.gateway)),
        json!({ "name": "tx_session_batch", "json": tx, "tx_hex": hex::encode(tx.encode()) }),
        entry("session_close", Domain::SessionClose, &owner_close.close, Some(&cast.operator)),
        entry("batch_body_close", Domain::Batch, &closing.body, Some(&cast.gateway)),
        json!({ "name": "tx_session_batch_close", "json": closing_tx, "tx_hex": hex::encode(closing_tx.encode()) }),
    ];
    json!({
        "about": "Tandem protocol test vectors. Keys are Ed25519 from the given 32-byte seeds; signatures are deterministic (RFC 8032). signing_bytes = domain tag || 0x00 || borsh(message); sha256 is over signing_bytes.",
        "chain_id": CHAIN_ID,
        "vectors": list,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/protocol-vectors.json");

    #[test]
    fn the_committed_vectors_match_this_implementation() {
        let fresh = serde_json::to_string_pretty(&vectors()).expect("json") + "\n";
        if std::env::var_os("TANDEM_BLESS").is_some() {
            std::fs::write(PATH, &fresh).expect("write vectors");
        }
        let committed = std::fs::read_to_string(PATH).expect("docs/protocol-vectors.json exists");
        assert_eq!(committed, fresh, "encoding changed: review, then regenerate with TANDEM_BLESS=1");
    }

    #[test]
    fn the_vectors_decode_back_and_verify() {
        let v = vectors();
        for e in v["vectors"].as_array().expect("array") {
            if let (Some(sig), Some(pk), Some(bytes)) =
                (e["signature_hex"].as_str(), e["signer_public_key_hex"].as_str(), e["signing_bytes_hex"].as_str())
            {
                let key = ed25519_dalek::VerifyingKey::from_bytes(&crate::crypto::PublicKey::from_hex(pk).expect("pk").0).expect("key");
                let sig = ed25519_dalek::Signature::from_bytes(&crate::crypto::Signature::from_hex(sig).expect("sig").0);
                key.verify_strict(&hex::decode(bytes).expect("hex"), &sig).expect("verifies");
            }
        }
        for i in [8, 11] {
            let tx_hex = v["vectors"][i]["tx_hex"].as_str().expect("tx");
            let tx = Tx::decode(&hex::decode(tx_hex).expect("hex")).expect("decodes");
            let json_back: Tx = serde_json::from_value(v["vectors"][i]["json"].clone()).expect("json");
            assert_eq!(tx, json_back);
        }
    }
}
