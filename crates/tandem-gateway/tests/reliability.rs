//! The gateway under load and at its limits, in-process over a `FakeL1`:
//! sessions of maximum-size steps are cut into batches by encoded size and
//! finalize whole; a batch L1's RPC refuses is reported (log, metric, status)
//! and not re-sent unchanged forever; a full WAL queue answers 503
//! `backlog_full` with `Retry-After` and the gateway keeps serving, with
//! every acknowledged step in its log after a restart; compaction is
//! relative to the size after the last one.

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::http::StatusCode;
use serde_json::Value;
use support::{step, Harness, WAIT};
use tandem_core::limits::{BATCH_BYTES_MAX, STEP_BYTES_MAX, TEXT_BYTES_MAX};
use tandem_core::message::{Action, Tx};
use tandem_core::state::StateRead as _;
use tandem_core::testkit::{max_package_id, max_register, register, CHAIN_ID};
use tandem_core::Hash;
use tandem_gateway::service::GatewayConfig;

/// Sessions are committed by the test, never by the ticker.
fn manual_commits(c: &mut GatewayConfig) {
    c.ledger.auto_commit_steps = 10_000;
    c.ledger.auto_commit_idle_ms = 3_600_000;
}

/// Open a session of the supplier and post `n` maximum-size `register` steps.
async fn session_of_max_steps(h: &Harness, nonce: u64, n: u64) -> Hash {
    let sup = &h.cast.supplier;
    let s = h.open(sup, nonce).await;
    for i in 1..=n {
        let p = max_package_id(&format!("N{nonce}-"), i);
        h.ok_step(&step(sup, s, i, &p, max_register(CHAIN_ID, sup, &p))).await;
    }
    s
}

/// Every batch transaction L1 has in its blocks, as (height, bytes, steps).
async fn batches_on_l1(h: &Harness) -> Vec<(u64, usize, usize)> {
    use tandem_rpc::L1 as _;
    let mut out = Vec::new();
    for height in 1..=h.l1.height() {
        for tx in h.l1.block(height).await.unwrap().txs {
            if let Ok(Tx::SessionBatch(b)) = Tx::decode(&tx) {
                out.push((height, tx.len(), b.body.steps.len()));
            }
        }
    }
    out
}

/// Wait until `pred` holds for the gateway's shared state. Bounded by [`WAIT`].
async fn wait_for(what: &str, mut pred: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !pred() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_of_200_maximum_size_steps_is_sent_in_batches_under_the_limit_and_finalizes_whole() {
    let h = Harness::start(manual_commits).await;
    let s = session_of_max_steps(&h, 1, 200).await;
    assert_eq!(h.commit(&h.cast.supplier, s).await.status, StatusCode::ACCEPTED);
    h.wait_state(s, "finalized", true).await;

    assert_eq!(h.l1.snapshot().session(&s).map(|r| r.last_seq), Some(200), "L1 holds every step");
    let batches = batches_on_l1(&h).await;
    assert!(batches.len() >= 200 * 21_000 / BATCH_BYTES_MAX, "{batches:?}");
    assert_eq!(batches.iter().map(|b| b.2).sum::<usize>(), 200, "{batches:?}");
    assert!(batches.iter().all(|b| b.1 <= BATCH_BYTES_MAX), "{batches:?}");
    let st = h.get("/v1/status").await.json;
    assert_eq!(st["l1_refused_batches"]["total"], 0, "{st}");
    assert_eq!(st["prediction_mismatches"], 0, "{st}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_larger_than_any_batch_can_carry_is_refused_at_intake() {
    let h = Harness::start(|_| {}).await;
    let sup = &h.cast.supplier;
    let s = h.open(sup, 1).await;
    let mut action = max_register(CHAIN_ID, sup, "BIG-1");
    if let Action::Register { manifest, manifest_signature } = &mut action {
        for line in &mut manifest.lines {
            line.description = "d".repeat(TEXT_BYTES_MAX * 2);
        }
        *manifest_signature = sup.sign(tandem_core::crypto::Domain::Manifest, manifest);
    }
    let big = step(sup, s, 1, "BIG-1", action);
    assert!(borsh::to_vec(&big).unwrap().len() > STEP_BYTES_MAX);
    h.step(&big).await.assert_error(413, "step_too_large");
    // Nothing changed: the same seq is still free.
    h.ok_step(&step(sup, s, 1, "SMALL-1", register(sup, "SMALL-1"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_the_l1_rpc_refuses_for_its_size_is_reported_and_sent_smaller() {
    let h = Harness::start(manual_commits).await;
    // A validator whose RPC body limit is far below the one `limits.rs`
    // assumes: full batches are refused before CheckTx.
    h.l1.set_rpc_body_bytes_max(200_000);
    let s = session_of_max_steps(&h, 1, 40).await;
    assert_eq!(h.commit(&h.cast.supplier, s).await.status, StatusCode::ACCEPTED);
    h.wait_state(s, "finalized", true).await;
    assert_eq!(h.l1.snapshot().session(&s).map(|r| r.last_seq), Some(40));

    let st = h.get("/v1/status").await.json;
    let refused = &st["l1_refused_batches"];
    assert!(refused["total"].as_u64().unwrap() >= 1, "{st}");
    assert_eq!(refused["last"]["code"], "tx_too_large", "{st}");
    assert!(refused["last"]["detail"].as_str().unwrap().contains("request body too large"), "{st}");
    assert_eq!(refused["last"]["session"], s.to_hex());
    let metrics = h.get("/metrics").await.text;
    assert!(metrics.contains("tandem_gateway_l1_refused_batches_total{code=\"tx_too_large\"}"), "{metrics}");

    // One step alone is over the limit: no smaller batch can carry it, so
    // the session is rejected with that code instead of being re-sent forever.
    h.l1.set_rpc_body_bytes_max(10_000);
    let s2 = session_of_max_steps(&h, 2, 1).await;
    assert_eq!(h.commit(&h.cast.supplier, s2).await.status, StatusCode::ACCEPTED);
    let done = h.wait_state(s2, "rejected", false).await;
    assert_eq!(done["status"]["code"], "tx_too_large", "{done}");
}

/// Posts a step and returns its status and `Retry-After`, for the burst.
async fn post_step(h: &Harness, signed: &tandem_core::message::SignedStep) -> (u16, Option<String>, Value) {
    let a = h.step(signed).await;
    (a.status.as_u16(), a.retry_after, a.json)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_wal_queue_answers_503_with_retry_after_and_every_acknowledged_step_survives_a_restart() {
    const QUEUE: usize = 2;
    let h = Harness::start(|c| {
        manual_commits(c);
        c.wal_queue_max = QUEUE;
        // One owner opens the burst's 200 sessions.
        c.ledger.owner_sessions_max = 1_000;
    })
    .await;
    let sup = h.cast.supplier.clone();
    let s = h.open(&sup, 1).await;

    // Every place in the WAL's queue taken: new work is refused before it is
    // decided, and the gateway goes on answering.
    let held: Vec<_> = (0..QUEUE).map(|_| h.gw.shared.wal.reserve().unwrap()).collect();
    let a = h.step(&step(&sup, s, 1, "Q-1", register(&sup, "Q-1"))).await;
    a.assert_error(503, "backlog_full");
    assert_eq!(a.retry_after.as_deref(), Some("1"), "{a:?}");
    h.post("/v1/sessions", &h.open_req(&sup, 2)).await.assert_error(503, "backlog_full");
    h.commit(&sup, s).await.assert_error(503, "backlog_full");
    assert_eq!(h.session(s).await["status"]["state"], "open", "nothing was decided");
    assert_eq!(h.get("/healthz").await.status, StatusCode::OK);
    assert!(h.get("/metrics").await.text.contains("tandem_gateway_wal_backpressure_total 3"));
    drop(held);
    // The refused step's seq is still free.
    h.ok_step(&step(&sup, s, 1, "Q-1", register(&sup, "Q-1"))).await;

    // A burst far past the queue: 200 sessions' first steps at once. Each
    // answer is 200, or 503 `backlog_full` with `Retry-After`.
    const BURST: u64 = 200;
    let mut sessions = Vec::new();
    for n in 0..BURST {
        let id = loop {
            let open = h.open_req(&sup, 100 + n);
            let a = h.post("/v1/sessions", &open).await;
            if a.status == StatusCode::CREATED {
                break open.open.session_id();
            }
            a.assert_error(503, "backlog_full");
        };
        sessions.push((n, id));
    }
    let h = std::sync::Arc::new(h);
    let mut tasks = Vec::new();
    for &(n, id) in &sessions {
        let h = h.clone();
        let sup = sup.clone();
        tasks.push(tokio::spawn(async move {
            let p = format!("B-{n}");
            (id, post_step(&h, &step(&sup, id, 1, &p, register(&sup, &p))).await)
        }));
    }
    let mut acked = Vec::new();
    let mut refused = 0;
    for t in tasks {
        let (id, (status, retry_after, body)) = t.await.unwrap();
        match status {
            200 => acked.push(id),
            503 => {
                assert_eq!(body["code"], "backlog_full", "{body}");
                assert_eq!(retry_after.as_deref(), Some("1"));
                refused += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(acked.len() + refused, BURST as usize);
    println!("burst: {} acknowledged, {refused} refused with 503", acked.len());
    // Still serving.
    assert_eq!(h.get("/v1/status").await.status, StatusCode::OK);

    // Every acknowledged step is in the log: after a restart the gateway
    // holds it again.
    let h = std::sync::Arc::into_inner(h).expect("the burst's tasks are done").restart().await;
    assert_eq!(h.session(s).await["steps"].as_array().unwrap().len(), 1);
    for id in &acked {
        let got = h.session(*id).await;
        assert_eq!(got["steps"].as_array().unwrap().len(), 1, "{got}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_set_above_the_compaction_threshold_is_not_rewritten_on_every_tick() {
    let h = Harness::start(|c| {
        manual_commits(c);
        c.wal_compact_bytes = 16 * 1024;
    })
    .await;
    let shared = &h.gw.shared;
    let rewrites = || shared.wal.stats().rewrites;
    let ticks = || shared.ticks.load(Ordering::Relaxed);
    // A live set of ~66 KiB, over the threshold: compacted once.
    let r0 = rewrites();
    let s = session_of_max_steps(&h, 1, 3).await;
    wait_for("a compaction past the threshold", || rewrites() > r0).await;
    let r1 = rewrites();
    let t1 = ticks();
    wait_for("30 ticks", || ticks() >= t1 + 30).await;
    assert!(rewrites() <= r1 + 1, "rewritten on every tick: {} rewrites in 30 ticks", rewrites() - r1);
    let r2 = rewrites();

    // Grown past twice the compacted size: compacted again.
    let sup = &h.cast.supplier;
    for i in 4..=7 {
        let p = max_package_id("N1-", i);
        h.ok_step(&step(sup, s, i, &p, max_register(CHAIN_ID, sup, &p))).await;
    }
    wait_for("a compaction past twice the last size", || rewrites() > r2).await;
    // Nothing live was lost by compacting.
    let h = h.restart().await;
    assert_eq!(h.session(s).await["steps"].as_array().unwrap().len(), 7);
}
