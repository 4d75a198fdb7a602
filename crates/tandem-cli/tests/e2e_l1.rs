//! End to end on real 4-validator devnets started by the tests: direct steps
//! and whole session batches finalize with identical app hashes everywhere,
//! bad transactions are refused with codes while the chain goes on, and
//! validators survive SIGKILL and a crash between FinalizeBlock and Commit.
//!
//! Each test owns a loopback range (127.0.N.x) so they can run in parallel.

mod support;

use std::time::Duration;

use support::{now_ms, Net};
use tandem_core::crypto::{Domain, Hash};
use tandem_core::message::*;
use tandem_core::model::{Manifest, ManifestLine, Priority};
use tandem_core::{Code, SecretKey};

fn manifest(chain: &str, package: &str) -> Manifest {
    Manifest {
        chain_id: chain.into(),
        package_id: package.into(),
        delivery_note_id: format!("DN-{package}"),
        lines: vec![ManifestLine { item_id: "SKU-1".into(), description: "valves".into(), quantity: 12 }],
    }
}

fn signed_step(chain: &str, key: &SecretKey, session: Hash, seq: u64, package: &str, action: Action) -> SignedStep {
    Step { chain_id: chain.into(), session, seq, actor: key.public(), package_id: package.into(), action, client_time_ms: now_ms() }
        .sign(key)
}

fn open(chain: &str, owner: &SecretKey, gateway: Option<&SecretKey>, nonce: u64) -> SignedSessionOpen {
    SessionOpen { chain_id: chain.into(), owner: owner.public(), gateway: gateway.map(|g| g.public()), nonce, client_time_ms: now_ms() }
        .sign(owner)
}

/// The supplier registers `package` as a direct L1 step.
fn register_tx(net: &Net, package: &str, nonce: u64) -> Vec<u8> {
    let chain = &net.layout.chain_id;
    let supplier = net.key("supplier-1");
    let m = manifest(chain, package);
    let sig = supplier.sign(Domain::Manifest, &m);
    let o = open(chain, supplier, None, nonce);
    let s = signed_step(chain, supplier, o.open.session_id(), 1, package, Action::Register { manifest: m, manifest_signature: sig });
    Tx::DirectStep(DirectStep { open: Some(o), step: s }).encode()
}

/// The operator's gateway session: scan, validate, QC, label — with the
/// claims given by `claims` (None = predict them from the outcomes L1 reports).
fn operator_steps(net: &Net, session: Hash, package: &str) -> Vec<SignedStep> {
    let chain = &net.layout.chain_id;
    let op = net.key("operator-1");
    let courier = net.key("courier-1").public();
    let actions = vec![
        Action::Scan { station: "DOCK-1".into() },
        Action::Validate { counts: vec![ItemCount { item_id: "SKU-1".into(), quantity: 12 }] },
        Action::Qc { passed: true, issues: vec![] },
        Action::Label { label_id: format!("LBL-{package}"), destination: "Depot 7".into(), priority: Priority::Normal, courier },
    ];
    actions.into_iter().enumerate().map(|(i, a)| signed_step(chain, op, session, i as u64 + 1, package, a)).collect()
}

fn batch_tx(net: &Net, session: Hash, open: Option<SignedSessionOpen>, steps: Vec<SignedStep>, claims: Vec<Hash>) -> Vec<u8> {
    let gw = net.key("gateway-1");
    let body = BatchBody { chain_id: net.layout.chain_id.clone(), session, open, steps, claims, gateway: gw.public(), close: None };
    Tx::SessionBatch(body.sign(gw)).encode()
}

/// Predict claims the way the gateway does: replay the steps on a copy of
/// L1's state. Here the copy is rebuilt from what L1 reports: we compute the
/// outcomes by executing against an in-memory replica fed the same txs.
struct Replica {
    state: tandem_core::kv::Overlay<std::collections::BTreeMap<Vec<u8>, Vec<u8>>>,
    chain: String,
}

impl Replica {
    fn new(net: &Net) -> Replica {
        let genesis_json = std::fs::read(net.layout.nodes[0].home.join("config/genesis.json")).expect("genesis");
        let doc: serde_json::Value = serde_json::from_slice(&genesis_json).expect("json");
        let genesis: tandem_core::genesis::Genesis = serde_json::from_value(doc["app_state"].clone()).expect("app_state");
        let mut state = tandem_core::kv::Overlay::new(Default::default());
        genesis.apply(&net.layout.chain_id, &mut state).expect("genesis");
        Replica { state, chain: net.layout.chain_id.clone() }
    }
    fn ctx(&self) -> tandem_core::Ctx<'_> {
        tandem_core::Ctx { chain_id: &self.chain, time_ms: now_ms(), workflow: &tandem_core::workflow::INTAKE, sigs: None }
    }
    fn execute(&mut self, tx: &[u8]) -> tandem_core::TxResult {
        let ctx =
            tandem_core::Ctx { chain_id: &self.chain.clone(), time_ms: now_ms(), workflow: &tandem_core::workflow::INTAKE, sigs: None };
        tandem_core::execute(&mut self.state, &ctx, tx)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_devnet_finalizes_direct_steps_and_session_batches_and_refuses_bad_input() {
    let net = Net::start(4, 21).await;
    let mut replica = Replica::new(&net);

    // A direct step: the supplier registers a package on L1.
    let reg = register_tx(&net, "PKG-1", 1);
    let (h, code, data, log) = net.submit(0, &reg).await;
    assert_eq!(code, 0, "{log}");
    assert_eq!(data["status"], "direct");
    assert!(matches!(replica.execute(&reg), tandem_core::TxResult::Direct { .. }));
    assert!(h >= 1);
    for i in 0..4 {
        let p = net.query(i, "/package/PKG-1").await.expect("package on every validator");
        assert_eq!(p["stage"], "registered");
    }

    // A whole session batch, with claims predicted on the replica.
    let o = open(&net.layout.chain_id, net.key("operator-1"), Some(net.key("gateway-1")), 1);
    let session = o.open.session_id();
    let steps = operator_steps(&net, session, "PKG-1");
    let mut scratch = tandem_core::kv::Overlay::new(&replica.state);
    let ctx = replica.ctx();
    tandem_core::apply::open_session(&mut scratch, &ctx, &o).expect("open");
    let claims: Vec<Hash> = steps.iter().map(|s| tandem_core::apply(&mut scratch, &ctx, s).expect("predict").hash()).collect();
    drop(scratch);
    let tx = batch_tx(&net, session, Some(o.clone()), steps.clone(), claims.clone());
    let (height, code, data, log) = net.submit(1, &tx).await;
    assert_eq!(code, 0, "{log}");
    assert_eq!(data["status"], "committed");
    assert_eq!(data["last_seq"], 4);
    // Every node has the block before it is asked (node 1 answered first).
    net.wait_height(&[0, 1, 2, 3], height, Duration::from_secs(30)).await;
    replica.execute(&tx);
    let expected_digest = tandem_core::state::StateRead::package(&replica.state, "PKG-1").expect("pkg").digest();
    let reported: Vec<String> =
        data["outcomes"].as_array().expect("outcomes").iter().map(|o| o["package_digest"].as_str().expect("d").to_string()).collect();
    assert_eq!(reported.last().expect("last"), &expected_digest.to_hex(), "L1 state equals the predicted state");
    for i in 0..4 {
        let p = net.query(i, "/package/PKG-1").await.expect("package");
        assert_eq!(p["stage"], "labeled");
        let s = net.query(i, &format!("/session/{session}")).await.expect("session");
        assert_eq!(s["last_seq"], 4);
    }

    // An overlapping checkpoint of the same session is a duplicate.
    let mut more = steps.clone();
    more.push(signed_step(
        &net.layout.chain_id,
        net.key("operator-1"),
        session,
        5,
        "PKG-1",
        Action::Handover { courier: net.key("courier-1").public() },
    ));
    let mut more_claims = claims.clone();
    more_claims.push(Hash([0; 32]));
    let (_, code, data, _) = net.submit(2, &batch_tx(&net, session, None, more, more_claims)).await;
    assert_eq!(code, Code::Duplicate.number());
    assert_eq!(data["rejection"]["code"], "duplicate");

    // A batch with a wrong claim passes CheckTx (signatures are fine) and is
    // rejected whole in the block, at the step whose claim is wrong.
    replica.execute(&register_tx(&net, "PKG-2", 2));
    net.submit(0, &register_tx(&net, "PKG-2", 2)).await;
    let o2 = open(&net.layout.chain_id, net.key("operator-1"), Some(net.key("gateway-1")), 2);
    let s2 = o2.open.session_id();
    let steps2 = operator_steps(&net, s2, "PKG-2");
    let lies = vec![Hash([1; 32]); steps2.len()];
    let (_, code, data, log) = net.submit(3, &batch_tx(&net, s2, Some(o2), steps2, lies)).await;
    assert_eq!(code, Code::OutcomeMismatch.number(), "{log}");
    assert_eq!(data["index"], 0);
    let p2 = net.query(0, "/package/PKG-2").await.expect("pkg2");
    assert_eq!(p2["stage"], "registered", "nothing of the rejected batch stuck");
    let gw = net.query(0, &format!("/gateway/{}", net.key("gateway-1").public())).await.expect("gateway");
    assert_eq!(gw["misbehaviours"], 1);

    // Forged signature and garbage: refused by CheckTx with codes.
    let mut forged = register_tx(&net, "PKG-3", 3);
    let n = forged.len();
    forged[n - 1] ^= 0x01;
    let (code, log, _) = net.broadcast(0, &forged).await;
    assert_eq!(code, Code::BadSignature.number(), "{log}");
    let (code, _, _) = net.broadcast(0, b"\xff\x00garbage").await;
    assert_eq!(code, Code::Malformed.number());

    // The chain keeps going, and every validator agrees at every height.
    let h = net.height(0).await.expect("height");
    net.wait_height(&[0, 1, 2, 3], h + 2, Duration::from_secs(30)).await;
    let compared = net.assert_agreement(&[0, 1, 2, 3], h + 1).await;
    assert!(compared >= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validators_survive_sigkill_and_a_crash_between_finalize_and_commit() {
    let net = Net::start(4, 22).await;
    let all = [0usize, 1, 2, 3];

    // SIGKILL validator 3 (node and app); the other three keep finalizing.
    net.devnet.kill_node(3).expect("kill node");
    net.devnet.kill_app(3).expect("kill app");
    let (h1, code, _, log) = net.submit(0, &register_tx(&net, "K-1", 1)).await;
    assert_eq!(code, 0, "{log}");
    net.wait_height(&[0, 1, 2], h1 + 2, Duration::from_secs(30)).await;
    // Restart it: it catches up to the same chain and app hashes.
    net.devnet.start_app(3).expect("start app");
    net.devnet.start_node(3).expect("start node");
    let target = net.height(0).await.expect("height");
    net.wait_height(&all, target, Duration::from_secs(60)).await;
    assert!(net.query(3, "/package/K-1").await.is_some(), "the restarted validator has the step it missed");

    // Crash validator 2's app between FinalizeBlock and Commit.
    let at = net.height(2).await.expect("height") + 3;
    net.devnet.kill_app(2).expect("kill app");
    // CometBFT stops itself when its app connection breaks.
    net.wait_until("node 2 exits after losing its app", Duration::from_secs(20), || !net.devnet.is_node_running(2)).await;
    let crash = format!("before-commit:{at}");
    net.devnet.start_app_with_env(2, &[("TANDEM_CRASH_AT", crash.as_str())]).expect("start app with crash point");
    net.devnet.start_node(2).expect("start node");
    net.submit(0, &register_tx(&net, "K-2", 2)).await;
    net.wait_until("app 2 reaches its crash point", Duration::from_secs(60), || !net.devnet.is_app_running(2)).await;
    let log = std::fs::read_to_string(&net.layout.nodes[2].app_log).expect("app log");
    assert!(log.contains(&format!("crash point before-commit:{at} reached")), "the app crashed where asked");
    net.wait_until("node 2 exits after its app crashed", Duration::from_secs(20), || !net.devnet.is_node_running(2)).await;
    // Restart without the crash point: replay brings it to the same app hash.
    net.devnet.start_app(2).expect("restart app");
    net.devnet.start_node(2).expect("restart node");

    // Crash validator 1's app right after Commit persisted (before CometBFT
    // recorded it): on restart the app is one block ahead of CometBFT's
    // state store, and the handshake must reconcile without replaying it twice.
    let at = net.height(1).await.expect("height") + 3;
    net.devnet.kill_app(1).expect("kill app");
    net.wait_until("node 1 exits after losing its app", Duration::from_secs(20), || !net.devnet.is_node_running(1)).await;
    let crash = format!("after-commit:{at}");
    net.devnet.start_app_with_env(1, &[("TANDEM_CRASH_AT", crash.as_str())]).expect("start app with crash point");
    net.devnet.start_node(1).expect("start node");
    net.submit(0, &register_tx(&net, "K-4", 4)).await;
    net.wait_until("app 1 reaches its crash point", Duration::from_secs(60), || !net.devnet.is_app_running(1)).await;
    let log = std::fs::read_to_string(&net.layout.nodes[1].app_log).expect("app log");
    assert!(log.contains(&format!("crash point after-commit:{at} reached")), "the app crashed where asked");
    net.wait_until("node 1 exits after its app crashed", Duration::from_secs(20), || !net.devnet.is_node_running(1)).await;
    net.devnet.start_app(1).expect("restart app");
    net.devnet.start_node(1).expect("restart node");
    net.submit(0, &register_tx(&net, "K-3", 3)).await;
    let target = net.height(0).await.expect("height");
    net.wait_height(&all, target, Duration::from_secs(60)).await;
    net.assert_agreement(&all, target).await;
    for i in all {
        assert!(net.query(i, "/package/K-3").await.is_some());
    }
}
