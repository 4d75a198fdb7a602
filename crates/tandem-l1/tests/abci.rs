//! The L1 application driven in-process, with no CometBFT: the same calls a
//! node makes (InitChain, FinalizeBlock, Commit, Info, Query, CheckTx), on a
//! real redb store in a temporary folder.

use bytes::Bytes;
use tandem_core::message::{DirectStep, Tx};
use tandem_core::testkit::*;
use tandem_core::{Code, SigMemo};
use tandem_l1::App;
use tandem_state::Storage;
use tendermint::v0_38::abci::request;

fn init_chain(app: &mut App, cast: &Cast) {
    let genesis = serde_json::to_vec(&cast.genesis()).expect("json");
    app.init_chain(request::InitChain {
        time: tendermint::Time::from_unix_timestamp(1_767_225_600, 0).expect("time"),
        chain_id: CHAIN_ID.into(),
        consensus_params: serde_json::from_str(CONSENSUS_PARAMS).expect("params"),
        validators: vec![],
        app_state_bytes: genesis.into(),
        initial_height: 1u32.into(),
    });
}

const CONSENSUS_PARAMS: &str = r#"{
  "block": {"max_bytes": "22020096", "max_gas": "-1", "time_iota_ms": "1000"},
  "evidence": {"max_age_num_blocks": "100000", "max_age_duration": "172800000000000", "max_bytes": "1048576"},
  "validator": {"pub_key_types": ["ed25519"]},
  "version": {"app": "0"}
}"#;

fn block(height: u32, txs: Vec<Vec<u8>>) -> request::FinalizeBlock {
    request::FinalizeBlock {
        txs: txs.into_iter().map(Bytes::from).collect(),
        decided_last_commit: tendermint::abci::types::CommitInfo { round: 0u8.into(), votes: vec![] },
        misbehavior: vec![],
        hash: tendermint::Hash::None,
        height: height.into(),
        time: tendermint::Time::from_unix_timestamp(1_767_225_600 + i64::from(height), 0).expect("time"),
        next_validators_hash: tendermint::Hash::None,
        proposer_address: tendermint::account::Id::new([0; 20]),
    }
}

/// A direct registration of `package` by the supplier (opening its session).
fn register_tx(cast: &Cast, package: &str, nonce: u64) -> Vec<u8> {
    let o = open(&cast.supplier, None, nonce);
    let s = step(&cast.supplier, o.open.session_id(), 1, package, register(&cast.supplier, package));
    Tx::DirectStep(DirectStep { open: Some(o), step: s }).encode()
}

fn query(storage: &Storage, path: &str) -> (u32, serde_json::Value) {
    let r = App::query(storage, &request::Query { data: Bytes::new(), path: path.into(), height: 0u32.into(), prove: false });
    let v = if r.value.is_empty() { serde_json::Value::Null } else { serde_json::from_slice(&r.value).expect("json") };
    (r.code.value(), v)
}

#[test]
fn init_finalize_commit_then_query_and_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cast = Cast::new();
    let storage = Storage::open(&dir.path().join("db")).expect("open");
    let mut app = App::new(storage.clone(), None);
    assert_eq!(App::info(&storage).last_block_height.value(), 0);
    assert!(App::info(&storage).last_block_app_hash.as_bytes().is_empty(), "genesis app hash is empty");
    init_chain(&mut app, &cast);
    let r1 = app.finalize_block(block(1, vec![register_tx(&cast, "P1", 1), b"garbage".to_vec()]));
    assert_eq!(r1.tx_results.len(), 2);
    assert_eq!(r1.tx_results[0].code.value(), 0, "{}", r1.tx_results[0].log);
    assert_eq!(r1.tx_results[1].code.value(), Code::Malformed.number());
    let event = &r1.tx_results[0].events[0];
    assert_eq!(event.kind, "tandem");
    // Nothing is durable before Commit.
    assert_eq!(storage.height(), 0);
    assert_eq!(query(&storage, "/package/P1").0, 2);
    app.commit();
    assert_eq!(storage.height(), 1);
    assert_eq!(App::info(&storage).last_block_app_hash.as_bytes(), r1.app_hash.as_bytes());
    let (code, pkg) = query(&storage, "/package/P1");
    assert_eq!(code, 0);
    assert_eq!(pkg["stage"], "registered");
    assert_eq!(query(&storage, "/nonsense/1").0, 1);
    assert_eq!(query(&storage, "/session/zz").0, 1);
    // An empty block keeps the app hash and advances the height.
    let r2 = app.finalize_block(block(2, vec![]));
    app.commit();
    assert_eq!(r2.app_hash, r1.app_hash);
    drop(app);
    drop(storage);
    let storage = Storage::open(&dir.path().join("db")).expect("reopen");
    assert_eq!(App::info(&storage).last_block_height.value(), 2);
    let mut app = App::new(storage.clone(), None);
    // The chain id survives a restart (it lives in state), so blocks go on.
    let r3 = app.finalize_block(block(3, vec![register_tx(&cast, "P2", 2)]));
    assert_eq!(r3.tx_results[0].code.value(), 0, "{}", r3.tx_results[0].log);
}

#[test]
fn a_crash_between_finalize_and_commit_replays_to_the_same_app_hash() {
    let cast = Cast::new();
    let txs = |n: u64| vec![register_tx(&cast, &format!("P{n}"), n)];
    // Reference run without crash.
    let ref_dir = tempfile::tempdir().expect("tempdir");
    let reference = {
        let storage = Storage::open(&ref_dir.path().join("db")).expect("open");
        let mut app = App::new(storage, None);
        init_chain(&mut app, &cast);
        (1..=3)
            .map(|h| {
                let r = app.finalize_block(block(h, txs(u64::from(h))));
                app.commit();
                r.app_hash
            })
            .collect::<Vec<_>>()
    };
    // Crash after finalizing block 1 (genesis pending) and again at block 3.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("db");
    {
        let mut app = App::new(Storage::open(&path).expect("open"), None);
        init_chain(&mut app, &cast);
        let r = app.finalize_block(block(1, txs(1)));
        assert_eq!(r.app_hash, reference[0]);
        // dropped: no Commit
    }
    {
        let storage = Storage::open(&path).expect("reopen");
        assert_eq!(storage.height(), 0);
        let mut app = App::new(storage, None);
        // CometBFT calls InitChain again when the app reports height 0.
        init_chain(&mut app, &cast);
        for h in 1..=2u32 {
            let r = app.finalize_block(block(h, txs(u64::from(h))));
            assert_eq!(r.app_hash, reference[h as usize - 1]);
            app.commit();
        }
        let r = app.finalize_block(block(3, txs(3)));
        assert_eq!(r.app_hash, reference[2]);
    }
    let storage = Storage::open(&path).expect("reopen");
    assert_eq!(storage.height(), 2);
    let mut app = App::new(storage.clone(), None);
    let r = app.finalize_block(block(3, txs(3)));
    assert_eq!(r.app_hash, reference[2]);
    app.commit();
    assert_eq!(storage.app_hash().as_slice(), reference[2].as_bytes());
}

#[test]
fn check_tx_rejects_with_codes_and_never_errors() {
    let cast = Cast::new();
    let sigs = SigMemo::default();
    let good = register_tx(&cast, "P1", 1);
    assert_eq!(App::check_tx(&good, &sigs).code.value(), 0);
    assert_eq!(sigs.len(), 2, "the open request's and the step's signatures are remembered");
    assert_eq!(App::check_tx(b"", &sigs).code.value(), Code::Malformed.number());
    assert_eq!(App::check_tx(&vec![0u8; tandem_core::limits::TX_BYTES_MAX + 1], &sigs).code.value(), Code::TooLarge.number());
    let mut forged = good.clone();
    let last = forged.len() - 1;
    forged[last] ^= 1; // inside the step signature
    assert_eq!(App::check_tx(&forged, &sigs).code.value(), Code::BadSignature.number());
    assert_eq!(sigs.len(), 2, "a failed check is never remembered");
}

/// Blocks decide the same whether or not `CheckTx` saw their transactions
/// first: one app is fed every transaction through `CheckTx` (filling its
/// signature memo), the other never is, and a forged twin of a remembered
/// transaction is still refused by both.
#[tokio::test]
async fn check_tx_memo_never_changes_a_block() {
    use tower::{Service, ServiceExt};
    let cast = Cast::new();
    let good = register_tx(&cast, "P1", 1);
    let mut forged = register_tx(&cast, "P2", 2);
    let last = forged.len() - 1;
    forged[last] ^= 1;
    let txs = vec![good.clone(), forged.clone(), register_tx(&cast, "P3", 3)];

    let mut hashes = Vec::new();
    let mut codes = Vec::new();
    for via_check_tx in [true, false] {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut app = App::new(Storage::open(&dir.path().join("db")).expect("open"), None);
        init_chain(&mut app, &cast);
        if via_check_tx {
            let sigs = app.sigs();
            for tx in &txs {
                App::check_tx(tx, &sigs);
            }
            assert!(!sigs.is_empty());
            let mut mempool = tandem_l1::server::Mempool::new(sigs.clone());
            // A recheck is answered OK without work: the verdict on the same
            // bytes was given at admission.
            let recheck = request::CheckTx { tx: Bytes::from_static(b"junk"), kind: request::CheckTxKind::Recheck };
            let rsp = mempool
                .ready()
                .await
                .expect("ready")
                .call(tendermint::v0_38::abci::request::MempoolRequest::CheckTx(recheck))
                .await
                .expect("answer");
            let tendermint::v0_38::abci::response::MempoolResponse::CheckTx(rsp) = rsp;
            assert_eq!(rsp.code.value(), 0);
        }
        let r = app.finalize_block(block(1, txs.clone()));
        codes.push(r.tx_results.iter().map(|t| t.code.value()).collect::<Vec<_>>());
        hashes.push(r.app_hash);
        app.commit();
    }
    assert_eq!(codes[0], vec![0, Code::BadSignature.number(), 0]);
    assert_eq!(codes[0], codes[1]);
    assert_eq!(hashes[0], hashes[1]);
}

#[test]
fn proposals_with_undecodable_bytes_are_refused_and_never_proposed() {
    let cast = Cast::new();
    let good = Bytes::from(register_tx(&cast, "P1", 1));
    let p = App::prepare_proposal(request::PrepareProposal {
        max_tx_bytes: 1_000_000,
        txs: vec![Bytes::from_static(b"junk"), good.clone()],
        local_last_commit: None,
        misbehavior: vec![],
        height: 1u32.into(),
        time: tendermint::Time::from_unix_timestamp(1_767_225_600, 0).expect("time"),
        next_validators_hash: tendermint::Hash::None,
        proposer_address: tendermint::account::Id::new([0; 20]),
    });
    assert_eq!(p.txs, vec![good.clone()]);
    let proposal = |txs| request::ProcessProposal {
        txs,
        proposed_last_commit: None,
        misbehavior: vec![],
        hash: tendermint::Hash::None,
        height: 1u32.into(),
        time: tendermint::Time::from_unix_timestamp(1_767_225_600, 0).expect("time"),
        next_validators_hash: tendermint::Hash::None,
        proposer_address: tendermint::account::Id::new([0; 20]),
    };
    use tendermint::abci::response::ProcessProposal;
    assert_eq!(App::process_proposal(&proposal(vec![good.clone()])), ProcessProposal::Accept);
    assert_eq!(App::process_proposal(&proposal(vec![good, Bytes::from_static(b"junk")])), ProcessProposal::Reject);
}

/// Every fault a gateway-signed batch proves is counted in the gateway's
/// record, by code, and the `/gateway/<hex>` query shows it; a duplicate
/// re-send is not held against it. A weak key cannot be registered.
#[test]
fn gateway_faults_are_recorded_by_code_and_queryable() {
    use tandem_core::apply::{apply, execute, open_session};
    use tandem_core::crypto::Domain;
    use tandem_core::kv::Overlay;
    use tandem_core::message::{AdminBody, AdminOp, SessionBatch};

    let dir = tempfile::tempdir().expect("tempdir");
    let cast = Cast::new();
    let storage = Storage::open(&dir.path().join("db")).expect("open");
    let mut app = App::new(storage.clone(), None);
    init_chain(&mut app, &cast);

    // Predict honest claims on a copy of the state the block will build.
    let reg = register_tx(&cast, "P1", 1);
    let mut model = cast.state();
    execute(&mut model, &ctx(), &reg);
    let o = open(&cast.operator, Some(cast.gateway.public()), 1);
    let id = o.open.session_id();
    let s = |seq, action| step(&cast.operator, id, seq, "P1", action);
    let honest_claims = |steps: &[tandem_core::message::SignedStep]| {
        let mut scratch = Overlay::new(&model);
        open_session(&mut scratch, &ctx(), &o).expect("open");
        steps.iter().map(|st| apply(&mut scratch, &ctx(), st).map_or(tandem_core::Hash([0; 32]), |x| x.hash())).collect::<Vec<_>>()
    };
    let signed = |steps: Vec<tandem_core::message::SignedStep>| -> SessionBatch {
        let claims = honest_claims(&steps);
        batch(&cast.gateway, id, Some(o.clone()), steps, claims)
    };
    let mut forged_step = s(2, validate());
    forged_step.signature = cast.courier.sign(Domain::Step, &forged_step.step);
    let forged = signed(vec![s(1, scan()), forged_step]);
    let dropped = signed(vec![s(1, scan()), s(3, validate())]);
    let honest = signed(vec![s(1, scan()), s(2, validate())]);
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let weak = AdminBody {
        chain_id: CHAIN_ID.into(),
        admin: cast.admin.public(),
        nonce: 1,
        op: AdminOp::RegisterActor { key: tandem_core::PublicKey(identity), name: "weak".into(), role: tandem_core::model::Role::Operator },
    }
    .sign(&cast.admin);
    let as_tx = |b: &SessionBatch| Tx::SessionBatch(b.clone()).encode();
    let r =
        app.finalize_block(block(1, vec![reg, Tx::Admin(weak).encode(), as_tx(&forged), as_tx(&dropped), as_tx(&honest), as_tx(&honest)]));
    let codes: Vec<u32> = r.tx_results.iter().map(|t| t.code.value()).collect();
    assert_eq!(
        codes,
        vec![0, Code::WeakKey.number(), Code::BadSignature.number(), Code::BadSequence.number(), 0, Code::Duplicate.number()],
        "{:?}",
        r.tx_results.iter().map(|t| &t.log).collect::<Vec<_>>()
    );
    app.commit();
    let (code, gw) = query(&storage, &format!("/gateway/{}", cast.gateway.public()));
    assert_eq!(code, 0);
    assert_eq!(gw["misbehaviours"], 2);
    assert_eq!(gw["faults"], serde_json::json!({ "bad_signature": 1, "bad_sequence": 1 }));
    assert_eq!(query(&storage, &format!("/actor/{}", hex::encode(identity))).0, 2, "the weak key was not registered");
}
