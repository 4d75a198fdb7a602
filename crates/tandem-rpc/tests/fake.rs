//! `FakeL1` behaves like the L1 the gateway will meet: CheckTx codes, mempool
//! duplicates, blocks that carry the transactions, app hashes that a replica
//! replaying the blocks into its own `tandem_state::Storage` reproduces, and
//! unavailability on demand. Used through `Arc<dyn L1>`, as the gateway will.

use std::sync::Arc;
use std::time::Duration;

use tandem_core::apply::{Ctx, TxResult};
use tandem_core::block::execute_block;
use tandem_core::genesis::Genesis;
use tandem_core::kv::{KvRead as _, Overlay, WriteSet};
use tandem_core::message::{DirectStep, Tx};
use tandem_core::testkit::{self, Cast, CHAIN_ID, TIME_MS};
use tandem_core::workflow::INTAKE;
use tandem_core::Code;
use tandem_rpc::{FakeL1, L1Error, L1};
use tandem_state::Storage;

fn register_tx(cast: &Cast, package: &str, nonce: u64) -> Vec<u8> {
    let open = testkit::open(&cast.supplier, None, nonce);
    let step = testkit::step(&cast.supplier, open.open.session_id(), 1, package, testkit::register(&cast.supplier, package));
    Tx::DirectStep(DirectStep { open: Some(open), step }).encode()
}

fn fake() -> (Cast, Arc<FakeL1>) {
    let cast = Cast::new();
    let l1 = FakeL1::new(CHAIN_ID, cast.genesis()).expect("fake chain");
    (cast, Arc::new(l1))
}

#[tokio::test]
async fn broadcast_then_block_carries_the_tx() {
    let (cast, fake) = fake();
    let l1: Arc<dyn L1> = fake.clone();
    let mut heights = l1.subscribe_heights();
    assert_eq!(l1.latest_height().await, Ok(0));

    let tx = register_tx(&cast, "PKG-1", 1);
    let b = l1.broadcast_tx_sync(tx.clone()).await.expect("broadcast");
    assert_eq!(b.code, 0, "{}", b.log);
    assert_eq!(b.hash.len(), 64);
    assert_eq!(b.hash, b.hash.to_ascii_uppercase());
    assert_eq!(fake.mempool_len(), 1);

    let produced = fake.produce_block(TIME_MS);
    assert!(heights.has_changed().expect("sender alive"));
    assert_eq!(*heights.borrow_and_update(), 1);
    let block = l1.block(1).await.expect("block 1");
    assert_eq!(block, produced);
    assert_eq!((block.height, block.time_ms, block.chain_id.as_str()), (1, TIME_MS, CHAIN_ID));
    assert_eq!(block.txs, vec![tx]);
    assert!(block.app_hash_before.is_empty(), "block 1 carries the genesis app hash");
    assert_eq!(fake.mempool_len(), 0);
    assert!(matches!(fake.tx_results(1).as_deref(), Some([TxResult::Direct { .. }])));
    assert!(fake.snapshot().get(&tandem_core::state::package_key("PKG-1")).is_some());

    // Empty blocks too, each with the previous block's app hash.
    let second = fake.produce_block(TIME_MS + 1000);
    assert!(second.txs.is_empty());
    assert_eq!(second.app_hash_before, fake.app_hash(), "an empty block keeps the root");
    assert_ne!(second.block_hash, block.block_hash);
    assert_eq!(l1.latest_height().await, Ok(2));
    assert!(matches!(l1.block(3).await, Err(L1Error::Rpc(_))));
    assert!(matches!(l1.block(0).await, Err(L1Error::Rpc(_))));

    let (chain_id, app_state) = l1.genesis().await.expect("genesis");
    assert_eq!(chain_id, CHAIN_ID);
    assert_eq!(Genesis::from_json(&app_state).expect("app_state parses"), cast.genesis());
    assert_eq!(l1.validators().await, vec![("fake://l1".to_string(), Some(2))]);
}

/// A replica that knows only what the trait reports (genesis and blocks)
/// reaches the app hash every next header carries.
#[tokio::test]
async fn app_hashes_match_a_storage_replay() {
    let (cast, fake) = fake();
    let l1: Arc<dyn L1> = fake.clone();
    for (i, package) in ["PKG-1", "PKG-2", "PKG-3"].iter().enumerate() {
        let b = l1.broadcast_tx_sync(register_tx(&cast, package, i as u64 + 1)).await.expect("broadcast");
        assert_eq!(b.code, 0);
        fake.produce_block(TIME_MS + i as u64 * 1000);
        fake.produce_block(TIME_MS + i as u64 * 1000 + 500);
    }
    // A transaction rejected in execution (registering a package twice)
    // still lands in the block and changes nothing but is hashed the same way.
    l1.broadcast_tx_sync(register_tx(&cast, "PKG-1", 9)).await.expect("broadcast");
    fake.produce_block(TIME_MS + 10_000);
    assert!(matches!(fake.tx_results(7).as_deref(), Some([TxResult::Rejected { .. }])));

    let (chain_id, app_state) = l1.genesis().await.expect("genesis");
    let genesis = Genesis::from_json(&app_state).expect("genesis");
    let mut overlay = Overlay::new(std::collections::BTreeMap::<Vec<u8>, Vec<u8>>::new());
    genesis.apply(&chain_id, &mut overlay).expect("genesis applies");
    let genesis_writes = overlay.into_writes();

    let dir = tempfile::tempdir().expect("tempdir");
    let replica = Storage::open(&dir.path().join("replica.redb")).expect("store");
    let latest = l1.latest_height().await.expect("height");
    assert_eq!(latest, 7);
    for h in 1..=latest {
        let block = l1.block(h).await.expect("block");
        let expected_before = if h == 1 { Vec::new() } else { replica.app_hash().to_vec() };
        assert_eq!(block.app_hash_before, expected_before, "header app hash at height {h}");
        let ctx = Ctx { chain_id: &block.chain_id, time_ms: block.time_ms, workflow: &INTAKE, sigs: None };
        let preload = if h == 1 { genesis_writes.clone() } else { WriteSet::new() };
        let executed = execute_block(&replica.snapshot(), &ctx, preload, &block.txs);
        assert_eq!(Some(executed.results), fake.tx_results(h), "results at height {h}");
        replica.commit(replica.prepare(h, &executed.writes).expect("prepare")).expect("commit");
    }
    assert_eq!(replica.app_hash().to_vec(), fake.app_hash());
    assert_eq!(replica.height(), fake.height());
}

#[tokio::test]
async fn duplicates_and_bad_transactions() {
    let (cast, fake) = fake();
    let tx = register_tx(&cast, "PKG-1", 1);
    assert_eq!(fake.broadcast_tx_sync(tx.clone()).await.expect("first").code, 0);
    assert_eq!(fake.broadcast_tx_sync(tx.clone()).await, Err(L1Error::AlreadyInMempool));
    assert_eq!(fake.mempool_len(), 1);

    let garbage = fake.broadcast_tx_sync(vec![0xff, 0x00, 0x13]).await.expect("answered");
    assert_eq!(garbage.code, Code::Malformed.number());
    assert!(!garbage.log.is_empty());

    // A valid encoding with a broken signature: CheckTx's signature check.
    let mut forged = Tx::decode(&tx).expect("decodes");
    if let Tx::DirectStep(d) = &mut forged {
        d.step.step.seq = 2;
    }
    let forged = fake.broadcast_tx_sync(forged.encode()).await.expect("answered");
    assert_eq!(forged.code, Code::BadSignature.number());
    assert_eq!(fake.mempool_len(), 1, "refused transactions are not queued");

    // Once included, the same bytes can be queued again (like CometBFT
    // without its cache; L1 then rejects the replay in execution).
    fake.produce_block(TIME_MS);
    assert_eq!(fake.broadcast_tx_sync(tx).await.expect("again").code, 0);
}

fn unavailable<T>(r: &Result<T, L1Error>) -> bool {
    matches!(r, Err(L1Error::Unavailable(_)))
}

#[tokio::test]
async fn unavailable_fails_every_call_and_freezes_heights() {
    let (cast, fake) = fake();
    fake.produce_block(TIME_MS);
    let mut heights = fake.subscribe_heights();
    heights.borrow_and_update();

    fake.set_available(false);
    assert!(unavailable(&fake.broadcast_tx_sync(register_tx(&cast, "PKG-1", 1)).await));
    assert!(unavailable(&fake.latest_height().await));
    assert!(unavailable(&fake.block(1).await));
    assert!(unavailable(&fake.genesis().await));
    assert_eq!(fake.validators().await, vec![("fake://l1".to_string(), None)]);
    // The chain goes on; the gateway cannot tell.
    fake.produce_block(TIME_MS + 1000);
    assert!(!heights.has_changed().expect("sender alive"));

    fake.set_available(true);
    assert!(heights.has_changed().expect("sender alive"));
    assert_eq!(*heights.borrow_and_update(), 2);
    assert_eq!(fake.latest_height().await, Ok(2));
    assert_eq!(fake.block(2).await.expect("block").height, 2);
}

#[tokio::test]
async fn auto_blocks_advance_the_watch() {
    let (cast, fake) = fake();
    let mut heights = fake.subscribe_heights();
    fake.broadcast_tx_sync(register_tx(&cast, "PKG-1", 1)).await.expect("broadcast");
    fake.auto_blocks(Duration::from_millis(20));
    tokio::time::timeout(Duration::from_secs(5), heights.wait_for(|h| *h >= 3)).await.expect("blocks").expect("alive");
    fake.stop_auto_blocks();
    let b1 = fake.block(1).await.expect("block 1");
    let b2 = fake.block(2).await.expect("block 2");
    assert_eq!(b1.txs.len(), 1);
    assert!(b2.time_ms > b1.time_ms, "block times increase");
    let h = fake.height();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(fake.height(), h, "stopped");
}
