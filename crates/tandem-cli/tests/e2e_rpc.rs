//! `tandem_rpc::CometRpc` against a real 4-validator devnet (loopback range
//! 127.0.31.x): genesis, CheckTx codes, the mempool-cache duplicate, the
//! height watch, blocks that a local replica replays to the very app hashes
//! the headers carry (which also pins the block-time conversion), fail-over
//! when the first validator dies, and a quick `Unavailable` when all are dead.
//!
//! It lives here rather than in `tandem-rpc` because it needs the `tandem`
//! binary, which only this crate's tests can locate.

mod support;

use std::time::{Duration, Instant};

use support::{now_ms, Net};
use tandem_core::crypto::Domain;
use tandem_core::genesis::Genesis;
use tandem_core::kv::{Overlay, WriteSet};
use tandem_core::message::*;
use tandem_core::model::{Manifest, ManifestLine};
use tandem_core::Code;
use tandem_rpc::{CometRpc, CometRpcConfig, L1Block, L1Error, L1};

/// The supplier registers `package` as a direct L1 step (as in `e2e_l1.rs`).
fn register_tx(net: &Net, package: &str, nonce: u64) -> Vec<u8> {
    let chain = &net.layout.chain_id;
    let supplier = net.key("supplier-1");
    let manifest = Manifest {
        chain_id: chain.clone(),
        package_id: package.into(),
        delivery_note_id: format!("DN-{package}"),
        lines: vec![ManifestLine { item_id: "SKU-1".into(), description: "valves".into(), quantity: 12 }],
    };
    let manifest_signature = supplier.sign(Domain::Manifest, &manifest);
    let open =
        SessionOpen { chain_id: chain.clone(), owner: supplier.public(), gateway: None, nonce, client_time_ms: now_ms() }.sign(supplier);
    let step = Step {
        chain_id: chain.clone(),
        session: open.open.session_id(),
        seq: 1,
        actor: supplier.public(),
        package_id: package.into(),
        action: Action::Register { manifest, manifest_signature },
        client_time_ms: now_ms(),
    }
    .sign(supplier);
    Tx::DirectStep(DirectStep { open: Some(open), step }).encode()
}

/// Follow the height watch from `from` until a block holding `tx` shows up;
/// returns that block.
async fn wait_for_tx(rpc: &CometRpc, from: u64, tx: &[u8]) -> L1Block {
    let mut heights = rpc.subscribe_heights();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut next = from;
    loop {
        let latest = *heights.borrow_and_update();
        while next <= latest {
            let block = rpc.block(next).await.expect("a block the watch announced");
            if block.txs.iter().any(|t| t == tx) {
                return block;
            }
            next += 1;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "transaction not seen in blocks {from}..{next}");
        let _ = tokio::time::timeout(left, heights.changed()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn comet_rpc_on_a_real_devnet_fails_over_and_reports_unavailable() {
    let net = Net::start(4, 31).await;
    let rpc = CometRpc::new(net.layout.rpc_urls()).expect("client");
    let mut heights = rpc.subscribe_heights();
    // A second client that practically never polls: its watch can only move
    // through the websocket subscription (and the one catch-up on connect).
    let slow_poll = CometRpcConfig { poll_interval: Duration::from_secs(3600), ..CometRpcConfig::default() };
    let ws_only = CometRpc::with_config(net.layout.rpc_urls(), slow_poll).expect("client");
    let mut ws_heights = ws_only.subscribe_heights();

    // Genesis: the chain id and the app_state every validator started from.
    let (chain_id, app_state) = rpc.genesis().await.expect("genesis");
    assert_eq!(chain_id, net.layout.chain_id);
    let genesis = Genesis::from_json(&app_state).expect("app_state is a genesis");
    assert!(genesis.actors.iter().any(|a| a.public_key == net.key("supplier-1").public()));

    // The watch follows the chain.
    tokio::time::timeout(Duration::from_secs(10), heights.wait_for(|h| *h >= 2)).await.expect("heights").expect("alive");
    let seen = *ws_heights.wait_for(|h| *h >= 2).await.expect("alive");
    tokio::time::timeout(Duration::from_secs(10), ws_heights.wait_for(|h| *h >= seen + 3))
        .await
        .expect("NewBlock events move the watch")
        .expect("alive");
    let validators = rpc.validators().await;
    assert_eq!(validators.len(), 4);
    assert!(validators.iter().all(|(_, h)| h.is_some()), "{validators:?}");
    assert_eq!(validators.iter().map(|(u, _)| u.clone()).collect::<Vec<_>>(), net.layout.rpc_urls());

    // CheckTx verdicts come back as codes.
    let bad = rpc.broadcast_tx_sync(vec![0xff, 0x00, 0x13]).await.expect("answered");
    assert_eq!(bad.code, Code::Malformed.number(), "{}", bad.log);
    let tx = register_tx(&net, "PKG-RPC-1", 1);
    let from = rpc.latest_height().await.expect("height");
    let ok = rpc.broadcast_tx_sync(tx.clone()).await.expect("broadcast");
    assert_eq!(ok.code, 0, "{}", ok.log);
    assert_eq!(ok.hash.len(), 64);
    assert_eq!(rpc.broadcast_tx_sync(tx.clone()).await, Err(L1Error::AlreadyInMempool));

    let block = wait_for_tx(&rpc, from, &tx).await;
    assert_eq!(block.chain_id, net.layout.chain_id);
    assert_eq!(block.app_hash_before.len(), 32);
    assert_eq!(block.block_hash.len(), 64);
    assert!(block.time_ms.abs_diff(now_ms()) < 60_000, "block time {} is about now", block.time_ms);
    assert!(rpc.block(1).await.expect("block 1").app_hash_before.is_empty());

    // NewBlock events carry whole blocks: a client that received one over the
    // websocket answers `block(h)` from it, and it is the very block that a
    // client which never saw the event fetches with a request.
    let h = *ws_heights.borrow();
    assert!(ws_only.recent_heights().contains(&h), "block {h} kept from the subscription: {:?}", ws_only.recent_heights());
    let later = CometRpc::with_config(
        net.layout.rpc_urls(),
        CometRpcConfig { poll_interval: Duration::from_secs(3600), ..CometRpcConfig::default() },
    )
    .expect("client");
    assert!(!later.recent_heights().contains(&h));
    assert_eq!(ws_only.block(h).await.expect("kept block"), later.block(h).await.expect("fetched block"));

    // A replica fed only what CometRpc reports reproduces every header's app
    // hash: the transactions, their order and the block time are all right.
    let dir = tempfile::tempdir().expect("tempdir");
    let replica = tandem_state::Storage::open(&dir.path().join("replica.redb")).expect("store");
    let mut genesis_writes = Overlay::new(std::collections::BTreeMap::<Vec<u8>, Vec<u8>>::new());
    genesis.apply(&chain_id, &mut genesis_writes).expect("genesis applies");
    let genesis_writes = genesis_writes.into_writes();
    let mut package_seen = false;
    for h in 1..=block.height {
        let b = rpc.block(h).await.expect("block");
        let expected = if h == 1 { Vec::new() } else { replica.app_hash().to_vec() };
        assert_eq!(b.app_hash_before, expected, "app hash in the header of block {h}");
        let ctx = tandem_core::Ctx { chain_id: &b.chain_id, time_ms: b.time_ms, workflow: &tandem_core::workflow::INTAKE, sigs: None };
        let preload = if h == 1 { genesis_writes.clone() } else { WriteSet::new() };
        let executed = tandem_core::block::execute_block(&replica.snapshot(), &ctx, preload, &b.txs);
        package_seen |= executed.results.iter().any(|r| matches!(r, tandem_core::TxResult::Direct { .. }));
        replica.commit(replica.prepare(h, &executed.writes).expect("prepare")).expect("commit");
    }
    assert!(package_seen, "the replica executed the registration");
    let next = rpc.block(block.height + 1);
    let next = tokio::time::timeout(Duration::from_secs(10), async {
        let mut next = next.await;
        while next.is_err() {
            tokio::time::sleep(Duration::from_millis(100)).await;
            next = rpc.block(block.height + 1).await;
        }
        next
    })
    .await
    .expect("the next block")
    .expect("block");
    assert_eq!(next.app_hash_before, replica.app_hash().to_vec(), "the replica's root is L1's");

    // The first validator dies: requests and the watch move to another one.
    net.devnet.kill_node(0).expect("kill node 0");
    let before = rpc.latest_height().await.expect("fails over");
    rpc.block(before).await.expect("block via another validator");
    let tx2 = register_tx(&net, "PKG-RPC-2", 2);
    assert_eq!(rpc.broadcast_tx_sync(tx2.clone()).await.expect("broadcast via another validator").code, 0);
    wait_for_tx(&rpc, before, &tx2).await;
    tokio::time::timeout(Duration::from_secs(15), heights.wait_for(|h| *h >= before + 3))
        .await
        .expect("the watch keeps moving after the first validator died")
        .expect("alive");
    // The subscription was on node 0 (the first URL): it resubscribed elsewhere.
    let seen = *ws_heights.borrow_and_update();
    tokio::time::timeout(Duration::from_secs(15), ws_heights.wait_for(|h| *h >= seen.max(before) + 3))
        .await
        .expect("the subscription moves to another validator")
        .expect("alive");
    let validators = rpc.validators().await;
    assert_eq!(validators[0].1, None, "{validators:?}");
    assert!(validators[1..].iter().all(|(_, h)| h.is_some()), "{validators:?}");

    // Everyone dies: calls fail fast with Unavailable.
    for i in 1..4 {
        net.devnet.kill_node(i).expect("kill");
    }
    let started = Instant::now();
    assert!(matches!(rpc.latest_height().await, Err(L1Error::Unavailable(_))));
    assert!(matches!(rpc.broadcast_tx_sync(tx2).await, Err(L1Error::Unavailable(_))));
    assert!(matches!(rpc.block(1).await, Err(L1Error::Unavailable(_))));
    assert!(matches!(rpc.genesis().await, Err(L1Error::Unavailable(_))));
    assert!(rpc.validators().await.iter().all(|(_, h)| h.is_none()));
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
}
