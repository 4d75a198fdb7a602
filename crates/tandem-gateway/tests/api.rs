//! The HTTP API, route by route and error by error, driven in-process over a
//! gateway that follows a `FakeL1` (real execution, real app hashes).
//!
//! Every error is checked for its status and its stable `code`; every
//! success for its content. Every wait is bounded.

#![allow(clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use axum::http::StatusCode;
use http_body_util::BodyExt as _;
use serde_json::{json, Value};
use support::{open_req, step, Harness, WAIT};
use tandem_core::message::{DirectStep, Receipt, Tx};
use tandem_core::model::Package;
use tandem_core::state::StateRead as _;
use tandem_core::testkit::{label, qc, register, scan, validate, CHAIN_ID};
use tandem_core::{Hash, Outcome};
use tandem_gateway::limit::{FakeRelativeClock, RateClock};
use tandem_rpc::L1 as _;
use tower::ServiceExt as _;

/// Every path the router serves (as written in `api::router`).
const ROUTES: &[&str] = &[
    "/v1/sessions",
    "/v1/sessions/{id}/steps",
    "/v1/sessions/{id}/commit",
    "/v1/sessions/{id}",
    "/v1/sessions/{id}/steps/{seq}",
    "/v1/packages/{id}",
    "/v1/l1/steps",
    "/v1/events",
    "/v1/status",
    "/healthz",
    "/metrics",
    "/openapi.json",
    "/v1/network",
    "/v1/demo/keys",
    "/",
    "/assets/{file}",
];

fn is_upper_hex64(v: &Value) -> bool {
    v.as_str().is_some_and(|s| s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b)))
}

// ---------------------------------------------------------------- sessions

#[tokio::test]
async fn open_session_answers_201_and_every_refusal_with_its_code() {
    let h = Harness::start(|_| {}).await;
    let c = &h.cast;

    let open = h.open_req(&c.operator, 1);
    let a = h.post("/v1/sessions", &open).await;
    assert_eq!(a.status, StatusCode::CREATED, "{a:?}");
    assert_eq!(a.json, json!({ "session_id": open.open.session_id().to_hex(), "status": { "state": "open" } }));

    let s = h.session(open.open.session_id()).await;
    assert_eq!(s["owner"], c.operator.public().to_hex());
    assert_eq!(s["status"]["state"], "open");
    assert_eq!(s["final_seq"], 0);
    assert_eq!(s["steps"], json!([]));

    // The same request again (its answer was lost): the original answer.
    let again = h.post("/v1/sessions", &open).await;
    assert_eq!(again.status, StatusCode::CREATED, "{again:?}");
    assert_eq!(again.json, a.json);

    // Signed, then changed.
    let mut forged = h.open_req(&c.operator, 2);
    forged.open.nonce = 3;
    h.post("/v1/sessions", &forged).await.assert_error(401, "bad_signature");

    // Another gateway, or none: not this gateway's session.
    let other = open_req(&c.operator, Some(c.stranger.public()), 4);
    h.post("/v1/sessions", &other).await.assert_error(403, "wrong_gateway");
    let direct = open_req(&c.operator, None, 5);
    h.post("/v1/sessions", &direct).await.assert_error(403, "wrong_gateway");

    // Core refusals keep the core's codes.
    h.post("/v1/sessions", &h.open_req(&c.stranger, 6)).await.assert_error(403, "unknown_actor");
    h.post("/v1/sessions", &h.open_req(&c.admin, 7)).await.assert_error(403, "role_denied");
    let mut wrong_chain = h.open_req(&c.operator, 8).open;
    wrong_chain.chain_id = "another-chain".into();
    h.post("/v1/sessions", &wrong_chain.sign(&c.operator)).await.assert_error(400, "wrong_chain");
    let mut stale = h.open_req(&c.operator, 9).open;
    stale.client_time_ms -= 3_600_000;
    h.post("/v1/sessions", &stale.sign(&c.operator)).await.assert_error(422, "stale_time");

    // Not the expected JSON.
    h.post_raw("/v1/sessions", "{\"open\": ").await.assert_error(400, "malformed");
    h.post_raw("/v1/sessions", "{\"foo\": 1}").await.assert_error(400, "malformed");
    let mut bad_hex = serde_json::to_value(h.open_req(&c.operator, 10)).unwrap();
    bad_hex["signature"] = json!("zz");
    h.post("/v1/sessions", &bad_hex).await.assert_error(400, "malformed");
    h.request("POST", "/v1/sessions", None, serde_json::to_vec(&h.open_req(&c.operator, 11)).unwrap()).await.assert_error(400, "malformed");

    // Only the first open was taken.
    let st = h.get("/v1/status").await.json;
    assert_eq!(st["sessions"], json!({ "open": 1, "committing": 0, "finalized": 0, "rejected": 0, "expired": 0 }));
}

#[tokio::test]
async fn get_and_commit_refuse_bad_and_unknown_ids() {
    let h = Harness::start(|_| {}).await;
    let unknown = Hash([7; 32]);
    h.get(&format!("/v1/sessions/{unknown}")).await.assert_error(404, "unknown_session");
    h.get("/v1/sessions/not-a-session").await.assert_error(400, "malformed");
    h.commit(&h.cast.operator, unknown).await.assert_error(404, "unknown_session");
    h.request("POST", "/v1/sessions/abc/commit", None, Vec::new()).await.assert_error(400, "malformed");

    // An empty session is final as soon as it is committed; a second commit
    // is idempotent.
    let s = h.open(&h.cast.operator, 1).await;
    let a = h.commit(&h.cast.operator, s).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{a:?}");
    assert_eq!(a.json, json!({ "session_id": s.to_hex(), "status": { "state": "finalized" } }));
    let a = h.commit(&h.cast.operator, s).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{a:?}");
    assert_eq!(h.session(s).await["status"]["state"], "finalized");
}

#[tokio::test]
async fn only_the_owner_can_commit_and_a_checkpoint_does_not_close() {
    // Every step is checkpointed at once: the session's steps reach L1
    // while it stays open.
    let h = Harness::start(|c| c.ledger.auto_commit_steps = 1).await;
    let c = &h.cast;
    let sup = h.open(&c.supplier, 1).await;
    h.ok_step(&step(&c.supplier, sup, 1, "P", register(&c.supplier, "P"))).await;
    assert_eq!(h.commit(&c.supplier, sup).await.status, StatusCode::ACCEPTED);
    let op = h.open(&c.operator, 1).await;
    h.ok_step(&step(&c.operator, op, 1, "P", scan())).await;
    let uri = format!("/v1/sessions/{op}/commit");

    // Anyone who saw the session id tries to close it.
    h.request("POST", &uri, None, Vec::new()).await.assert_error(401, "signature_required");
    h.post_raw(&uri, "{}").await.assert_error(401, "signature_required");
    let unsigned = json!({ "close": support::close(&c.operator, op, 1).close });
    h.post(&uri, &unsigned).await.assert_error(401, "signature_required");
    h.post(&uri, &support::close(&c.operator2, op, 1)).await.assert_error(403, "not_session_owner");
    h.post(&uri, &support::close(&c.supplier, op, 1)).await.assert_error(403, "not_session_owner");
    let mut forged = support::close(&c.operator2, op, 1);
    forged.close.owner = c.operator.public();
    h.post(&uri, &forged).await.assert_error(401, "bad_signature");
    h.post(&uri, &support::close(&c.operator, sup, 1)).await.assert_error(400, "session_mismatch");
    h.post_raw(&uri, "{\"signature\": ").await.assert_error(400, "malformed");
    h.post(&uri, &support::close(&c.operator, op, 7)).await.assert_error(409, "bad_sequence");

    // Nothing changed: the session is open, its step reaches L1 as a
    // checkpoint, and the owner's next step is taken.
    let deadline = tokio::time::Instant::now() + WAIT;
    while h.session(op).await["final_seq"] != 1 {
        assert!(tokio::time::Instant::now() < deadline, "the checkpoint never became final");
        h.block();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let v = h.session(op).await;
    assert_eq!(v["status"]["state"], "open", "a checkpoint does not close: {v}");
    let on_l1 = h.l1.snapshot().session(&op).expect("the checkpoint opened it on L1");
    assert_eq!((on_l1.last_seq, on_l1.closed), (1, false));
    h.ok_step(&step(&c.operator, op, 2, "P", validate())).await;

    // The owner's signed close ends it, on L1 too.
    let a = h.commit(&c.operator, op).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{a:?}");
    h.wait_state(op, "finalized", true).await;
    let on_l1 = h.l1.snapshot().session(&op).expect("on L1");
    assert_eq!((on_l1.last_seq, on_l1.closed), (2, true));
    h.step(&step(&c.operator, op, 3, "P", qc(true))).await.assert_error(409, "session_not_open");
    // Repeating the close is a no-op.
    assert_eq!(h.commit(&c.operator, op).await.status, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn one_owner_cannot_hold_more_than_its_open_sessions() {
    let h = Harness::start(|c| c.ledger.owner_sessions_max = 2).await;
    let c = &h.cast;
    let first = h.open(&c.operator, 1).await;
    h.open(&c.operator, 2).await;
    h.post("/v1/sessions", &h.open_req(&c.operator, 3)).await.assert_error(429, "too_many_owner_sessions");
    // Other owners still open sessions.
    h.open(&c.operator2, 1).await;
    h.open(&c.supplier, 1).await;
    assert_eq!(h.commit(&c.operator, first).await.json["status"]["state"], "finalized");
    h.open(&c.operator, 3).await;
}

#[tokio::test]
async fn an_idle_session_expires_and_its_steps_are_still_finalized() {
    let h = Harness::start(|c| {
        c.ledger.owner_sessions_max = 1;
        c.ledger.session_idle_expire_ms = 200;
        c.ledger.auto_commit_idle_ms = 60_000;
    })
    .await;
    let c = &h.cast;
    let s = h.open(&c.supplier, 1).await;
    h.ok_step(&step(&c.supplier, s, 1, "P", register(&c.supplier, "P"))).await;
    // Without a step for 200 ms it expires, and its step is finalized.
    let v = h.wait_state(s, "expired", false).await;
    assert_eq!(v["steps"].as_array().unwrap().len(), 1);
    h.step(&step(&c.supplier, s, 2, "Q", register(&c.supplier, "Q"))).await.assert_error(409, "session_expired");
    h.commit(&c.supplier, s).await.assert_error(409, "session_expired");
    // It no longer counts against the owner's limit.
    let e = h.open(&c.supplier, 2).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while h.session(s).await["steps"][0]["state"] != "final" {
        assert!(tokio::time::Instant::now() < deadline, "the expired session's step never became final");
        h.block();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(h.l1.snapshot().package("P").unwrap().supplier, c.supplier.public());
    // An empty one expires too.
    h.wait_state(e, "expired", false).await;
    assert_eq!(h.get("/v1/status").await.json["sessions"]["expired"], 2);
    h.open(&c.supplier, 3).await;
}

// ------------------------------------------------------------------- steps

#[tokio::test]
async fn an_accepted_step_carries_outcome_package_and_a_verifiable_receipt() {
    let h = Harness::start(|_| {}).await;
    let c = &h.cast;
    let s = h.open(&c.supplier, 1).await;
    let signed = step(&c.supplier, s, 1, "P-1", register(&c.supplier, "P-1"));
    let r = h.ok_step(&signed).await;

    assert_eq!(r["session"], s.to_hex());
    assert_eq!(r["seq"], 1);
    let outcome: Outcome = serde_json::from_value(r["outcome"].clone()).unwrap();
    assert_eq!(outcome.step, signed.step.hash());
    assert_eq!(outcome.package_id, "P-1");
    assert_eq!(r["outcome"]["action"], "register");
    assert_eq!(r["outcome"]["stage_before"], Value::Null);
    assert_eq!(r["outcome"]["stage_after"], "registered");
    assert_eq!(r["outcome_hash"], outcome.hash().to_hex());

    let package: Package = serde_json::from_value(r["package"].clone()).unwrap();
    assert_eq!(package.id, "P-1");
    assert_eq!(package.supplier, c.supplier.public());
    assert_eq!(package.history.len(), 1);
    assert_eq!(package.digest(), outcome.package_digest);

    let receipt: Receipt = serde_json::from_value(r["receipt"].clone()).unwrap();
    assert!(receipt.verify(), "the receipt's signature verifies");
    assert_eq!(receipt.gateway, c.gateway.public());
    assert_eq!(receipt.body.outcome, outcome.hash());
    assert_eq!(receipt.body.outcome.to_hex(), r["outcome_hash"]);
    assert_eq!(receipt.body.chain_id, CHAIN_ID);
    assert_eq!(receipt.body.session, s);
    assert_eq!(receipt.body.seq, 1);
    assert_eq!(receipt.body.step, signed.step.hash());
    let mut altered = receipt.clone();
    altered.body.seq = 2;
    assert!(!altered.verify(), "the receipt signs its body");

    // The session shows the step, tentative.
    let v = h.session(s).await;
    assert_eq!(v["steps"].as_array().unwrap().len(), 1);
    assert_eq!(v["steps"][0]["seq"], 1);
    assert_eq!(v["steps"][0]["action"], "register");
    assert_eq!(v["steps"][0]["stage"], "registered");
    assert_eq!(v["steps"][0]["outcome_hash"], outcome.hash().to_hex());
    assert_eq!(v["steps"][0]["state"], "tentative");
    assert_eq!(v["steps"][0]["finality"], Value::Null);
    assert_eq!(h.get("/v1/status").await.json["pending_steps"], 1);
}

#[tokio::test]
async fn steps_are_refused_with_the_gateway_and_core_codes() {
    let h = Harness::start(|_| {}).await;
    let c = &h.cast;
    let sup = h.open(&c.supplier, 1).await;
    let op = h.open(&c.operator, 1).await;
    h.ok_step(&step(&c.supplier, sup, 1, "P", register(&c.supplier, "P"))).await;

    // Sequence: the next is 2.
    h.step(&step(&c.supplier, sup, 3, "Q", register(&c.supplier, "Q"))).await.assert_error(409, "bad_sequence");
    h.step(&step(&c.supplier, sup, 1, "Q", register(&c.supplier, "Q"))).await.assert_error(409, "bad_sequence");

    // Signed, then changed.
    let mut forged = step(&c.supplier, sup, 2, "Q", register(&c.supplier, "Q"));
    forged.step.package_id = "R".into();
    h.step(&forged).await.assert_error(401, "bad_signature");

    // The URL names another session than the step.
    let s = step(&c.supplier, sup, 2, "Q", register(&c.supplier, "Q"));
    h.post(&format!("/v1/sessions/{op}/steps"), &s).await.assert_error(400, "session_mismatch");

    // A session this gateway does not know.
    let ghost = Hash([9; 32]);
    h.step(&step(&c.supplier, ghost, 1, "Q", register(&c.supplier, "Q"))).await.assert_error(404, "unknown_session");

    // Not a session id.
    h.post("/v1/sessions/xyz/steps", &s).await.assert_error(400, "malformed");
    h.post(&format!("/v1/sessions/{}/steps", "ab".repeat(31)), &s).await.assert_error(400, "malformed");

    // Not a step.
    h.post_raw(&format!("/v1/sessions/{sup}/steps"), "[1, 2]").await.assert_error(400, "malformed");
    h.post_raw(&format!("/v1/sessions/{sup}/steps"), "{").await.assert_error(400, "malformed");

    // The operator may not register; may not touch P while the supplier's
    // open session holds it.
    h.step(&step(&c.operator, op, 1, "Q", register(&c.operator, "Q"))).await.assert_error(403, "role_denied");
    h.step(&step(&c.operator, op, 1, "P", scan())).await.assert_error(409, "package_locked");

    // Another actor's step in the operator's session.
    h.step(&step(&c.inspector, op, 1, "Z", scan())).await.assert_error(403, "not_session_owner");

    // A client clock far from the gateway's.
    let mut stale = step(&c.supplier, sup, 2, "Q", register(&c.supplier, "Q")).step;
    stale.client_time_ms -= 3_600_000;
    h.step(&stale.sign(&c.supplier)).await.assert_error(422, "stale_time");

    // Committing releases the lock and closes the session for steps.
    assert_eq!(h.commit(&c.supplier, sup).await.status, StatusCode::ACCEPTED);
    h.step(&step(&c.supplier, sup, 2, "Q", register(&c.supplier, "Q"))).await.assert_error(409, "session_not_open");

    // The operator builds on the committing session's tentative state:
    // validate needs a scanned package.
    h.step(&step(&c.operator, op, 1, "P", validate())).await.assert_error(422, "wrong_stage");
    h.step(&step(&c.operator, op, 1, "NOPE", scan())).await.assert_error(422, "unknown_package");
    let r = h.ok_step(&step(&c.operator, op, 1, "P", scan())).await;
    assert_eq!(r["outcome"]["stage_before"], "registered");
    assert_eq!(r["outcome"]["stage_after"], "scanned");

    // Nothing refused was counted.
    let st = h.get("/v1/status").await.json;
    assert_eq!(st["pending_steps"], 2, "{st}");
}

// ------------------------------------------------------------ finalization

#[tokio::test]
async fn a_committed_session_finalizes_on_l1_exactly_as_predicted() {
    let h = Harness::start(|_| {}).await;
    let c = &h.cast;

    // The supplier registers P and commits; the operator works on P on top
    // of that tentative state and commits too.
    let sup = h.open(&c.supplier, 1).await;
    h.ok_step(&step(&c.supplier, sup, 1, "P", register(&c.supplier, "P"))).await;
    let a = h.commit(&c.supplier, sup).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{a:?}");
    assert_eq!(a.json, json!({ "session_id": sup.to_hex(), "status": { "state": "committing" } }));

    let op = h.open(&c.operator, 1).await;
    let mut last = Value::Null;
    for (i, action) in [scan(), validate(), qc(true), label(c.courier.public())].into_iter().enumerate() {
        last = h.ok_step(&step(&c.operator, op, i as u64 + 1, "P", action)).await;
    }
    let predicted: Package = serde_json::from_value(last["package"].clone()).unwrap();
    assert_eq!(last["outcome"]["stage_after"], "labeled");
    assert_eq!(last["outcome"]["package_digest"], predicted.digest().to_hex());

    // Before finality: the tentative view only.
    let p = h.get("/v1/packages/P").await;
    assert_eq!(p.status, StatusCode::OK, "{p:?}");
    assert_eq!(p.json["package_id"], "P");
    assert_eq!(p.json["tentative"], last["package"]);
    assert_eq!(p.json["final"], Value::Null);
    assert_eq!(p.json["l1_height"], 1);
    let history = p.json["history"].as_array().unwrap();
    assert_eq!(history.len(), 5);
    for e in history {
        assert_eq!(e["state"], "tentative", "{e}");
        assert_eq!(e["l1_height"], Value::Null);
        assert_eq!(e["tx_hash"], Value::Null);
    }
    assert_eq!(history[0]["session"], sup.to_hex());
    assert_eq!(history[4]["action"], "label");

    let a = h.commit(&c.operator, op).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{a:?}");
    assert_eq!(a.json["status"]["state"], "committing");

    // Blocks: the supplier's batch first, then the operator's (it depends
    // on the supplier's), possibly in the same block.
    let fin = h.wait_state(op, "finalized", true).await;
    assert_eq!(fin["final_seq"], 4);
    let steps = fin["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 4);
    let op_height = steps[0]["finality"]["height"].as_u64().unwrap();
    for st in steps {
        assert_eq!(st["state"], "final", "{st}");
        assert_eq!(st["finality"]["height"], op_height, "one batch, one block");
        assert!(is_upper_hex64(&st["finality"]["tx_hash"]), "{st}");
    }
    let sup_view = h.session(sup).await;
    assert_eq!(sup_view["status"]["state"], "finalized");
    let sup_height = sup_view["steps"][0]["finality"]["height"].as_u64().unwrap();
    // The operator's batch depends on the supplier's: it goes out once that
    // one is in flight, so it lands in the same block (after it) or a later one.
    assert!(sup_height >= 2 && sup_height <= op_height, "{sup_height} then {op_height}");

    // Prediction equals finality: L1's committed package is the one the
    // last step's answer predicted.
    let on_l1 = h.l1.snapshot().package("P").expect("P is on L1");
    assert_eq!(on_l1, predicted);
    assert_eq!(on_l1.digest(), predicted.digest());

    // The package view, now final, with where each step landed.
    let p = h.get("/v1/packages/P").await.json;
    assert_eq!(p["final"], last["package"]);
    assert_eq!(p["tentative"], last["package"]);
    assert!(p["l1_height"].as_u64().unwrap() >= op_height);
    let history = p["history"].as_array().unwrap();
    assert_eq!(history.len(), 5);
    for (i, e) in history.iter().enumerate() {
        assert_eq!(e["state"], "final", "{e}");
        let want = if i == 0 { sup_height } else { op_height };
        assert_eq!(e["l1_height"], want, "{e}");
        assert!(is_upper_hex64(&e["tx_hash"]), "{e}");
    }
    assert_eq!(history[1]["tx_hash"], steps[0]["finality"]["tx_hash"]);

    let st = h.get("/v1/status").await.json;
    assert_eq!(st["sessions"], json!({ "open": 0, "committing": 0, "finalized": 2, "rejected": 0, "expired": 0 }));
    assert_eq!(st["pending_steps"], 0);
    assert_eq!(st["prediction_mismatches"], 0);
}

#[tokio::test]
async fn a_session_this_gateway_forgot_is_answered_from_l1() {
    let h = Harness::start(|c| c.ledger.finished_kept = 1).await;
    let c = &h.cast;
    let a = h.open(&c.supplier, 1).await;
    h.ok_step(&step(&c.supplier, a, 1, "A", register(&c.supplier, "A"))).await;
    assert_eq!(h.commit(&c.supplier, a).await.status, StatusCode::ACCEPTED);
    h.wait_state(a, "finalized", true).await;
    let b = h.open(&c.supplier, 2).await;
    h.ok_step(&step(&c.supplier, b, 1, "B", register(&c.supplier, "B"))).await;
    assert_eq!(h.commit(&c.supplier, b).await.status, StatusCode::ACCEPTED);
    h.wait_state(b, "finalized", true).await;

    // Only one finished session is kept: `a` is known from L1 and the
    // finality index alone now.
    let v = h.session(a).await;
    assert_eq!(v["status"]["state"], "finalized");
    assert_eq!(v["owner"], c.supplier.public().to_hex());
    assert_eq!(v["final_seq"], 1);
    let steps = v["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 1, "{v}");
    assert_eq!(steps[0]["state"], "final");
    assert!(steps[0]["finality"]["height"].is_u64(), "{v}");
    assert!(steps[0]["receipt"]["signature"].is_string(), "this gateway's batch carried it: {v}");
    assert!(v["note"].is_string(), "{v}");
    assert_eq!(v["closed"], true, "{v}");
    assert_eq!(h.session(b).await["steps"].as_array().unwrap().len(), 1);
    // Committing it again is a no-op that says it is final.
    let again = h.commit(&c.supplier, a).await;
    assert_eq!(again.status.as_u16(), 202, "{again:?}");
    assert_eq!(again.json["status"]["state"], "finalized");
    h.commit(&c.supplier, tandem_core::Hash([0x5a; 32])).await.assert_error(404, "unknown_session");
}

/// Steps finalized before a restart keep where they became final: the
/// finality index is durable.
#[tokio::test]
async fn steps_finalized_before_a_restart_keep_their_height_and_tx_hash() {
    let h = Harness::start(|_| {}).await;
    let c = &h.cast;
    let s = h.open(&c.supplier, 1).await;
    h.ok_step(&step(&c.supplier, s, 1, "P", register(&c.supplier, "P"))).await;
    h.ok_step(&step(&c.supplier, s, 2, "Q", register(&c.supplier, "Q"))).await;
    assert_eq!(h.commit(&c.supplier, s).await.status, StatusCode::ACCEPTED);
    let before = h.wait_state(s, "finalized", true).await;
    let package_before = h.get("/v1/packages/P").await.json;
    assert!(package_before["history"][0]["l1_height"].is_u64(), "{package_before}");

    let h = h.restart().await;
    let after = h.session(s).await;
    assert_eq!(after["status"]["state"], "finalized");
    let (b, a) = (before["steps"].as_array().unwrap(), after["steps"].as_array().unwrap());
    assert_eq!(a.len(), 2, "{after}");
    for (b, a) in b.iter().zip(a) {
        assert_eq!(a["seq"], b["seq"]);
        assert_eq!(a["state"], "final", "{a}");
        assert_eq!(a["finality"]["height"], b["finality"]["height"], "{a}");
        assert_eq!(a["finality"]["tx_hash"], b["finality"]["tx_hash"], "{a}");
        assert_eq!(a["outcome_hash"], b["outcome_hash"]);
        assert_eq!(a["receipt"], b["receipt"], "the receipt, issued again, is the same bytes");
    }
    let package_after = h.get("/v1/packages/P").await.json;
    assert_eq!(package_after["history"], package_before["history"]);
    assert_eq!(package_after["history"][0]["state"], "final");
}

/// A client whose answer was lost re-sends the very same signed step (or
/// open): it gets the original answer and receipt while the step is
/// pending, once final, once the session is forgotten, and after a restart;
/// another step at a taken seq stays `bad_sequence`.
#[tokio::test]
async fn a_resent_step_gets_its_original_answer_and_receipt_until_after_a_restart() {
    let h = Harness::start(|c| c.ledger.finished_kept = 1).await;
    let c = &h.cast;
    let open = h.open_req(&c.supplier, 1);
    let s = open.open.session_id();
    assert_eq!(h.post("/v1/sessions", &open).await.status, StatusCode::CREATED);
    let first = step(&c.supplier, s, 1, "P", register(&c.supplier, "P"));
    let original = h.ok_step(&first).await;
    let receipt: Receipt = serde_json::from_value(original["receipt"].clone()).unwrap();
    assert!(receipt.verify());
    let other = step(&c.supplier, s, 1, "Q", register(&c.supplier, "Q"));
    let same_answer = |a: &Value, when: &str| {
        for field in ["session", "seq", "outcome", "outcome_hash", "receipt"] {
            assert_eq!(a[field], original[field], "{field} {when}: {a}");
        }
    };
    let step1 = format!("/v1/sessions/{s}/steps/1");

    // Pending.
    same_answer(&h.ok_step(&first).await, "while pending");
    assert_eq!(h.ok_step(&first).await["package"], original["package"]);
    h.step(&other).await.assert_error(409, "bad_sequence");
    let a = h.post("/v1/sessions", &open).await;
    assert_eq!(a.status, StatusCode::CREATED, "a re-sent open: {a:?}");
    assert_eq!(a.json["session_id"], s.to_hex());
    let got = h.get(&step1).await;
    assert_eq!(got.status, StatusCode::OK, "{got:?}");
    assert_eq!(got.json["receipt"], original["receipt"]);
    assert_eq!(got.json["step"], serde_json::to_value(&first).unwrap());
    assert_eq!(got.json["state"], "tentative");
    assert_eq!(h.session(s).await["steps"][0]["receipt"], original["receipt"]);

    // Final.
    assert_eq!(h.commit(&c.supplier, s).await.status, StatusCode::ACCEPTED);
    h.wait_state(s, "finalized", true).await;
    same_answer(&h.ok_step(&first).await, "once final");
    h.step(&other).await.assert_error(409, "bad_sequence");
    let got = h.get(&step1).await.json;
    assert_eq!(got["state"], "final");
    assert!(got["finality"]["height"].is_u64(), "{got}");

    // Forgotten: another finished session pushes it out of memory.
    let b = h.open(&c.supplier, 2).await;
    h.ok_step(&step(&c.supplier, b, 1, "B", register(&c.supplier, "B"))).await;
    assert_eq!(h.commit(&c.supplier, b).await.status, StatusCode::ACCEPTED);
    h.wait_state(b, "finalized", true).await;
    assert!(h.session(s).await["note"].is_string(), "the session left memory");
    same_answer(&h.ok_step(&first).await, "once forgotten");
    h.step(&other).await.assert_error(409, "bad_sequence");
    assert_eq!(h.post("/v1/sessions", &open).await.status, StatusCode::CREATED);

    // A session still open across the restart, with a pending step.
    let open_c = h.open_req(&c.supplier, 3);
    let live = open_c.open.session_id();
    assert_eq!(h.post("/v1/sessions", &open_c).await.status, StatusCode::CREATED);
    let pending = step(&c.supplier, live, 1, "C", register(&c.supplier, "C"));
    let pending_answer = h.ok_step(&pending).await;

    let h = h.restart().await;
    same_answer(&h.ok_step(&first).await, "after a restart");
    h.step(&other).await.assert_error(409, "bad_sequence");
    let got = h.get(&step1).await;
    assert_eq!(got.status, StatusCode::OK, "{got:?}");
    assert_eq!(got.json["receipt"], original["receipt"]);
    assert_eq!(got.json["state"], "final");
    assert_eq!(h.session(s).await["steps"][0]["receipt"], original["receipt"]);
    let again = h.ok_step(&pending).await;
    assert_eq!(again["receipt"], pending_answer["receipt"], "a step pending across the restart");
    assert_eq!(again["outcome_hash"], pending_answer["outcome_hash"]);
    assert_eq!(h.post("/v1/sessions", &open_c).await.status, StatusCode::CREATED);

    // Unknown steps.
    h.get(&format!("/v1/sessions/{s}/steps/9")).await.assert_error(404, "unknown_step");
    h.get(&format!("/v1/sessions/{s}/steps/x")).await.assert_error(400, "malformed");
}

#[tokio::test]
async fn get_package_refuses_an_unknown_package() {
    let h = Harness::start(|_| {}).await;
    h.get("/v1/packages/NOPE").await.assert_error(404, "unknown_package");
}

#[tokio::test]
async fn a_conflicting_l1_step_rejects_the_session_and_its_commit() {
    let h = Harness::start(|_| {}).await;
    let c = &h.cast;
    let s = h.open(&c.supplier, 1).await;
    h.ok_step(&step(&c.supplier, s, 1, "P", register(&c.supplier, "P"))).await;

    // Meanwhile, P is registered on L1 directly, behind the gateway's back.
    let o = open_req(&c.supplier2, None, 1);
    let d = step(&c.supplier2, o.open.session_id(), 1, "P", register(&c.supplier2, "P"));
    let b = h.l1.broadcast_tx_sync(Tx::DirectStep(DirectStep { open: Some(o), step: d }).encode()).await.unwrap();
    assert_eq!(b.code, 0, "{b:?}");
    h.block();

    let v = h.wait_state(s, "rejected", false).await;
    assert_eq!(v["status"]["code"], "conflict", "{v}");
    assert_eq!(v["status"]["seq"], 1, "{v}");
    h.commit(&c.supplier, s).await.assert_error(409, "session_rejected");
    h.step(&step(&c.supplier, s, 2, "Q", register(&c.supplier, "Q"))).await.assert_error(409, "session_not_open");
    let st = h.get("/v1/status").await.json;
    assert_eq!(st["prediction_mismatches"], 1, "{st}");
    assert_eq!(st["sessions"]["rejected"], 1, "{st}");
    assert_eq!(st["pending_steps"], 0, "{st}");
    // The package is supplier-2's.
    let p = h.get("/v1/packages/P").await.json;
    assert_eq!(p["final"]["supplier"], c.supplier2.public().to_hex());
}

// ------------------------------------------------------------------ limits

#[tokio::test]
async fn session_full_at_exactly_the_step_limit() {
    let h = Harness::start(|c| c.ledger.session_steps_max = 3).await;
    let c = &h.cast;
    let s = h.open(&c.supplier, 1).await;
    for seq in 1..=3 {
        let p = format!("P-{seq}");
        h.ok_step(&step(&c.supplier, s, seq, &p, register(&c.supplier, &p))).await;
    }
    h.step(&step(&c.supplier, s, 4, "P-4", register(&c.supplier, "P-4"))).await.assert_error(409, "session_full");
    assert_eq!(h.session(s).await["steps"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn backlog_full_at_the_pending_step_limit_and_free_again_after_finality() {
    let h = Harness::start(|c| c.ledger.pending_steps_max = 2).await;
    let c = &h.cast;
    let s1 = h.open(&c.supplier, 1).await;
    let s2 = h.open(&c.supplier2, 1).await;
    h.ok_step(&step(&c.supplier, s1, 1, "A", register(&c.supplier, "A"))).await;
    h.ok_step(&step(&c.supplier, s1, 2, "B", register(&c.supplier, "B"))).await;
    // The backlog is over all sessions.
    h.step(&step(&c.supplier, s1, 3, "C", register(&c.supplier, "C"))).await.assert_error(503, "backlog_full");
    h.step(&step(&c.supplier2, s2, 1, "D", register(&c.supplier2, "D"))).await.assert_error(503, "backlog_full");
    assert_eq!(h.get("/v1/status").await.json["pending_steps"], 2);

    // Once L1 has them, there is room again.
    assert_eq!(h.commit(&c.supplier, s1).await.status, StatusCode::ACCEPTED);
    h.wait_state(s1, "finalized", true).await;
    h.ok_step(&step(&c.supplier2, s2, 1, "D", register(&c.supplier2, "D"))).await;
}

#[tokio::test]
async fn too_many_sessions_at_the_live_session_limit() {
    let h = Harness::start(|c| c.ledger.sessions_max = 2).await;
    let c = &h.cast;
    let s1 = h.open(&c.supplier, 1).await;
    h.open(&c.operator, 1).await;
    h.post("/v1/sessions", &h.open_req(&c.inspector, 1)).await.assert_error(503, "too_many_sessions");
    // A finished session no longer counts.
    assert_eq!(h.commit(&c.supplier, s1).await.json["status"]["state"], "finalized");
    h.open(&c.inspector, 1).await;
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_and_one_at_the_limit_is_taken() {
    const MAX: usize = 2048;
    let h = Harness::start(|c| c.body_bytes_max = MAX).await;
    let c = &h.cast;
    let padded = |nonce: u64, len: usize| {
        let mut body = serde_json::to_vec(&h.open_req(&c.operator, nonce)).unwrap();
        assert!(body.len() < len);
        body.resize(len, b' '); // trailing whitespace: still the same JSON
        body
    };
    let a = h.request("POST", "/v1/sessions", Some("application/json"), padded(1, MAX)).await;
    assert_eq!(a.status, StatusCode::CREATED, "{a:?}");
    let a = h.request("POST", "/v1/sessions", Some("application/json"), padded(2, MAX - 1)).await;
    assert_eq!(a.status, StatusCode::CREATED, "{a:?}");
    h.request("POST", "/v1/sessions", Some("application/json"), padded(3, MAX + 1)).await.assert_error(413, "body_too_large");

    // The same limit holds for steps.
    let s = h.open(&c.supplier, 1).await;
    let mut body = serde_json::to_vec(&step(&c.supplier, s, 1, "P", register(&c.supplier, "P"))).unwrap();
    body.resize(MAX + 1, b' ');
    h.request("POST", &format!("/v1/sessions/{s}/steps"), Some("application/json"), body).await.assert_error(413, "body_too_large");
}

#[tokio::test]
async fn the_rate_limit_answers_429_past_the_burst() {
    let h = Harness::start(|c| {
        c.rate_per_s = 1;
        c.rate_burst = 3;
        c.rate_clock = RateClock::Manual(FakeRelativeClock::default());
    })
    .await;
    for _ in 0..3 {
        assert_eq!(h.get("/v1/status").await.status, StatusCode::OK);
    }
    let a = h.get("/v1/status").await;
    a.assert_error(429, "rate_limited");
    assert_eq!(a.retry_after.as_deref(), Some("1"), "{a:?}");
    // Every unsigned /v1 route is limited; health, metrics and the document
    // are not.
    h.commit(&h.cast.supplier, Hash([1; 32])).await.assert_error(429, "rate_limited");
    assert_eq!(h.get("/healthz").await.status, StatusCode::OK);
    assert_eq!(h.get("/metrics").await.status, StatusCode::OK);
    assert_eq!(h.get("/openapi.json").await.status, StatusCode::OK);
}

/// One noisy client is refused while the others are served: unsigned
/// requests count per peer address, signed ones per signing key.
#[tokio::test]
async fn one_noisy_client_gets_429_with_retry_after_while_another_is_served() {
    let time = FakeRelativeClock::default();
    let h = Harness::start(|c| {
        c.rate_per_s = 2;
        c.rate_burst = 4;
        c.rate_clock = RateClock::Manual(time.clone());
    })
    .await;
    let c = &h.cast;
    let noisy: SocketAddr = "127.0.75.1:40000".parse().unwrap();
    let quiet: SocketAddr = "127.0.75.2:40000".parse().unwrap();
    let get = |peer| h.request_from(Some(peer), "GET", "/v1/status", None, Vec::new());

    for _ in 0..4 {
        assert_eq!(get(noisy).await.status, StatusCode::OK);
    }
    let refused = get(noisy).await;
    refused.assert_error(429, "rate_limited");
    assert_eq!(refused.retry_after.as_deref(), Some("1"), "half a second, rounded up: {refused:?}");
    // The same address on another port is the same client.
    let other_port: SocketAddr = "127.0.75.1:40001".parse().unwrap();
    get(other_port).await.assert_error(429, "rate_limited");
    assert_eq!(get(quiet).await.status, StatusCode::OK, "another peer is served");

    // Signed requests count against their signer, whatever the address: the
    // noisy peer's steps are taken, until the supplier's own allowance is spent.
    let open = h.open_req(&c.supplier, 1);
    let s = open.open.session_id();
    let a = h.post_from(noisy, "/v1/sessions", &open).await;
    assert_eq!(a.status, StatusCode::CREATED, "{a:?}");
    for seq in 1..=3 {
        let st = step(&c.supplier, s, seq, &format!("P{seq}"), register(&c.supplier, &format!("P{seq}")));
        let a = h.post_from(noisy, &format!("/v1/sessions/{s}/steps"), &st).await;
        assert_eq!(a.status, StatusCode::OK, "{a:?}");
    }
    let st = step(&c.supplier, s, 4, "P4", register(&c.supplier, "P4"));
    let refused = h.post_from(quiet, &format!("/v1/sessions/{s}/steps"), &st).await;
    refused.assert_error(429, "rate_limited");
    assert!(refused.retry_after.is_some(), "{refused:?}");
    // The operator, from the same noisy address, is served.
    let op = h.open_req(&c.operator, 1);
    let a = h.post_from(noisy, "/v1/sessions", &op).await;
    assert_eq!(a.status, StatusCode::CREATED, "{a:?}");

    // A forged signature counts against the address it came from.
    let mut forged = step(&c.operator, op.open.session_id(), 1, "P1", scan());
    forged.step.package_id = "P2".into();
    h.post_from(noisy, &format!("/v1/sessions/{}/steps", op.open.session_id()), &forged).await.assert_error(429, "rate_limited");
    h.post_from(quiet, &format!("/v1/sessions/{}/steps", op.open.session_id()), &forged).await.assert_error(401, "bad_signature");

    // Half a second later the noisy peer has one request again.
    time.advance(Duration::from_millis(500));
    assert_eq!(get(noisy).await.status, StatusCode::OK);
    get(noisy).await.assert_error(429, "rate_limited");
    let a = h.post_from(noisy, &format!("/v1/sessions/{s}/steps"), &st).await;
    assert_eq!(a.status, StatusCode::OK, "the supplier has one request again: {a:?}");
}

// --------------------------------------------------------- direct L1 steps

#[tokio::test]
async fn direct_l1_steps_are_answered_from_their_block() {
    let h = Harness::start(|_| {}).await;
    let c = &h.cast;
    h.l1.auto_blocks(Duration::from_millis(20));

    let o = open_req(&c.supplier, None, 1);
    let sid = o.open.session_id();
    let d = DirectStep { open: Some(o), step: step(&c.supplier, sid, 1, "D", register(&c.supplier, "D")) };
    let a = h.post("/v1/l1/steps", &d).await;
    assert_eq!(a.status, StatusCode::OK, "{a:?}");
    assert_eq!(a.json["session"], sid.to_hex());
    assert_eq!(a.json["seq"], 1);
    let outcome: Outcome = serde_json::from_value(a.json["outcome"].clone()).unwrap();
    assert_eq!(a.json["outcome_hash"], outcome.hash().to_hex());
    assert_eq!(outcome.stage_after.name(), "registered");
    let height = a.json["l1_height"].as_u64().unwrap();
    assert!(height >= 2, "{a:?}");
    let tx = Tx::DirectStep(d.clone()).encode();
    assert_eq!(a.json["tx_hash"], tandem_gateway::ledger::tx_hash(&tx));
    assert!(is_upper_hex64(&a.json["tx_hash"]));
    assert_eq!(h.l1.snapshot().package("D").unwrap().digest(), outcome.package_digest);

    // The next step of the same direct session, without the open request.
    let d2 = DirectStep { open: None, step: step(&c.supplier, sid, 2, "E", register(&c.supplier, "E")) };
    let a = h.post("/v1/l1/steps", &d2).await;
    assert_eq!(a.status, StatusCode::OK, "{a:?}");
    assert_eq!(a.json["seq"], 2);

    // Refused in the block: the package exists already.
    let o = open_req(&c.supplier2, None, 1);
    let again = DirectStep { step: step(&c.supplier2, o.open.session_id(), 1, "D", register(&c.supplier2, "D")), open: Some(o) };
    h.post("/v1/l1/steps", &again).await.assert_error(422, "package_exists");

    // A session that belongs to a gateway cannot take direct steps.
    let o = h.open_req(&c.supplier2, 2);
    let gw_session = DirectStep { step: step(&c.supplier2, o.open.session_id(), 1, "F", register(&c.supplier2, "F")), open: Some(o) };
    h.post("/v1/l1/steps", &gw_session).await.assert_error(403, "gateway_mismatch");

    // Forged: refused by L1's CheckTx.
    let mut forged = d2.clone();
    forged.step.step.seq = 3;
    h.post("/v1/l1/steps", &forged).await.assert_error(401, "bad_signature");

    h.post_raw("/v1/l1/steps", "{\"step\": null}").await.assert_error(400, "malformed");

    // The gateway's replica sees the direct steps too.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let p = h.get("/v1/packages/D").await;
        if p.status == StatusCode::OK && p.json["final"] != Value::Null {
            assert_eq!(p.json["history"][0]["state"], "final");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the replica never saw D: {p:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // L1 away.
    h.l1.set_available(false);
    let o = open_req(&c.supplier2, None, 3);
    let down = DirectStep { step: step(&c.supplier2, o.open.session_id(), 1, "G", register(&c.supplier2, "G")), open: Some(o) };
    h.post("/v1/l1/steps", &down).await.assert_error(503, "l1_unavailable");
    h.l1.set_available(true);
    h.l1.stop_auto_blocks();
}

#[tokio::test]
async fn a_direct_step_without_a_block_in_time_is_l1_timeout() {
    let h = Harness::start(|c| c.l1_step_timeout = Duration::from_millis(200)).await;
    let c = &h.cast;
    let o = open_req(&c.supplier, None, 1);
    let d = DirectStep { step: step(&c.supplier, o.open.session_id(), 1, "D", register(&c.supplier, "D")), open: Some(o) };
    h.post("/v1/l1/steps", &d).await.assert_error(503, "l1_timeout");
    assert_eq!(h.l1.mempool_len(), 1, "it was submitted, just not included");
}

// ------------------------------------------------------------ L1 away

#[tokio::test]
async fn while_l1_is_away_steps_are_answered_and_the_session_finalizes_when_it_returns() {
    let h = Harness::start(|_| {}).await;
    let c = &h.cast;
    h.l1.set_available(false);

    let s = h.open(&c.supplier, 1).await;
    let r = h.ok_step(&step(&c.supplier, s, 1, "P", register(&c.supplier, "P"))).await;
    let r2 = h.ok_step(&step(&c.supplier, s, 2, "Q", register(&c.supplier, "Q"))).await;
    let receipt: Receipt = serde_json::from_value(r2["receipt"].clone()).unwrap();
    assert!(receipt.verify());
    assert_eq!(h.commit(&c.supplier, s).await.status, StatusCode::ACCEPTED);

    let st = h.wait_status("l1_reachable = false", |s| s["l1_reachable"] == false).await;
    assert_eq!(st["validators"][0]["reachable"], false, "{st}");
    let v = h.session(s).await;
    assert_eq!(v["status"]["state"], "committing");
    assert!(v["steps"].as_array().unwrap().iter().all(|st| st["state"] == "tentative"));
    assert_eq!(h.l1.mempool_len(), 0, "nothing reached L1");

    // L1 is back; nobody touches the session again.
    h.l1.set_available(true);
    h.l1.auto_blocks(Duration::from_millis(20));
    let v = h.wait_state(s, "finalized", false).await;
    h.l1.stop_auto_blocks();
    assert!(v["steps"].as_array().unwrap().iter().all(|st| st["state"] == "final" && st["finality"]["height"].as_u64().is_some()));
    let on_l1 = h.l1.snapshot();
    assert_eq!(on_l1.package("P").unwrap().digest().to_hex(), r["outcome"]["package_digest"]);
    assert_eq!(on_l1.package("Q").unwrap(), serde_json::from_value::<Package>(r2["package"].clone()).unwrap());
    h.wait_status("l1_reachable = true", |s| s["l1_reachable"] == true).await;
}

// ------------------------------------------------------------------ events

#[tokio::test]
async fn the_event_stream_reports_steps_commits_and_finality() {
    let h = Harness::start(|_| {}).await;
    let c = &h.cast;
    let resp = h.app.clone().oneshot(axum::http::Request::get("/v1/events").body(axum::body::Body::empty()).unwrap()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers()[axum::http::header::CONTENT_TYPE].to_str().unwrap().starts_with("text/event-stream"));
    let body = resp.into_body();

    let s = h.open(&c.supplier, 1).await;
    h.ok_step(&step(&c.supplier, s, 1, "P", register(&c.supplier, "P"))).await;

    let mut events = SseReader { body, seen: String::new() };

    let e = events.next("session_opened").await;
    assert_eq!(e, json!({ "type": "session_opened", "session": s.to_hex(), "owner": c.supplier.public().to_hex() }));
    let e = events.next("step_accepted").await;
    assert_eq!(
        e,
        json!({ "type": "step_accepted", "session": s.to_hex(), "seq": 1, "package_id": "P", "action": "register", "stage": "registered" })
    );
    assert_eq!(h.commit(&c.supplier, s).await.status, StatusCode::ACCEPTED);
    let e = events.next("session_committing").await;
    assert_eq!(e, json!({ "type": "session_committing", "session": s.to_hex() }));
    h.wait_state(s, "finalized", true).await;
    let e = events.next("session_finalized").await;
    assert_eq!(e["session"], s.to_hex());
    assert_eq!(e["last_seq"], 1);
    assert_eq!(e["complete"], true);
    assert!(e["height"].as_u64().unwrap() >= 2);
    assert!(is_upper_hex64(&e["tx_hash"]));
}

/// Reads a server-sent event stream frame by frame.
struct SseReader {
    body: axum::body::Body,
    seen: String,
}

impl SseReader {
    /// Read until an event of `kind` arrives (skipping others); its data.
    async fn next(&mut self, kind: &str) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(at) = self.seen.find(&format!("event: {kind}\n")) {
                let rest = &self.seen[at..];
                if let Some(end) = rest.find("\n\n") {
                    let frame = rest[..end].to_string();
                    self.seen.replace_range(..at + end + 2, "");
                    let data = frame.lines().find_map(|l| l.strip_prefix("data: ")).expect("data line");
                    return serde_json::from_str::<Value>(data).expect("data is JSON");
                }
            }
            let frame = tokio::time::timeout_at(deadline, self.body.frame())
                .await
                .unwrap_or_else(|_| panic!("no {kind} event in time; got {:?}", self.seen))
                .expect("the stream stays open")
                .expect("frame");
            if let Ok(data) = frame.into_data() {
                self.seen.push_str(&String::from_utf8_lossy(&data));
            }
        }
    }
}

// ------------------------------------------------------- status and friends

#[tokio::test]
async fn status_health_metrics_and_unknown_routes() {
    let h = Harness::start(|_| {}).await;
    let st = h.get("/v1/status").await;
    assert_eq!(st.status, StatusCode::OK);
    assert_eq!(st.json["gateway"], h.cast.gateway.public().to_hex());
    assert_eq!(st.json["chain_id"], CHAIN_ID);
    assert_eq!(st.json["l1_height"], 1);
    assert_eq!(st.json["l1_reachable"], true);
    assert_eq!(st.json["replica_diverged"], false);
    assert_eq!(st.json["validators"], json!([{ "rpc": "fake://l1", "height": 1, "reachable": true }]));
    assert_eq!(st.json["sessions"], json!({ "open": 0, "committing": 0, "finalized": 0, "rejected": 0, "expired": 0 }));
    assert_eq!(st.json["pending_steps"], 0);
    assert_eq!(st.json["prediction_mismatches"], 0);
    assert!(st.json["uptime_s"].is_u64());

    let hz = h.get("/healthz").await;
    assert_eq!((hz.status, hz.text.as_str()), (StatusCode::OK, "ok"));

    let s = h.open(&h.cast.supplier, 1).await;
    h.ok_step(&step(&h.cast.supplier, s, 1, "P", register(&h.cast.supplier, "P"))).await;
    let m = h.get("/metrics").await;
    assert_eq!(m.status, StatusCode::OK);
    assert!(m.content_type.starts_with("text/plain"), "{m:?}");
    assert!(m.text.contains("tandem_gateway_step_seconds_count 1"), "{}", m.text);
    assert!(m.text.contains("tandem_gateway_wal_fsync_seconds"), "{}", m.text);
    assert!(m.text.contains("tandem_gateway_sessions"), "{}", m.text);

    h.get("/v1/nothing-here").await.assert_error(404, "not_found");
    // A known path with another method: 405 in the Error shape.
    h.get("/v1/sessions").await.assert_error(405, "method_not_allowed");
    h.post_raw("/healthz", "{}").await.assert_error(405, "method_not_allowed");
    h.post_raw("/v1/sessions/x/y/z", "{}").await.assert_error(404, "not_found");
}

#[tokio::test]
async fn the_openapi_document_describes_every_route() {
    let h = Harness::start(|_| {}).await;
    let a = h.get("/openapi.json").await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.content_type.starts_with("application/json"));
    let doc = a.json;
    assert!(doc.is_object(), "the document is JSON: {}", a.text);
    assert_eq!(doc["openapi"], "3.0.3");
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
    let paths = doc["paths"].as_object().expect("paths");
    for route in ROUTES {
        assert!(paths.contains_key(*route), "{route} is not in the document");
    }
    assert_eq!(paths.len(), ROUTES.len(), "the document lists exactly the router's routes");

    // Every operation documents its answers, every error answer uses the
    // Error schema, and every $ref resolves.
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    for r in &refs {
        let ptr = r.strip_prefix('#').unwrap_or_else(|| panic!("external ref {r}"));
        assert!(doc.pointer(ptr).is_some(), "dangling $ref {r}");
    }
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            if method == "parameters" {
                continue;
            }
            let responses = op["responses"].as_object().unwrap_or_else(|| panic!("{method} {path} has no responses"));
            assert!(op["operationId"].is_string(), "{method} {path}");
            for (status, resp) in responses {
                if status.starts_with('4') || status.starts_with('5') {
                    let resp = resolve(&doc, resp);
                    let schema = &resp["content"]["application/json"]["schema"];
                    assert_eq!(schema["$ref"], "#/components/schemas/Error", "{method} {path} {status}");
                }
            }
        }
    }
    // The codes this suite meets are all documented.
    let codes = doc["components"]["schemas"]["Error"]["properties"]["code"]["enum"].as_array().expect("code enum");
    for code in [
        "package_locked",
        "session_not_open",
        "session_full",
        "too_many_sessions",
        "backlog_full",
        "wrong_gateway",
        "session_mismatch",
        "session_exists",
        "session_rejected",
        "unknown_session",
        "unknown_package",
        "unknown_step",
        "malformed",
        "body_too_large",
        "rate_limited",
        "not_found",
        "l1_unavailable",
        "l1_timeout",
        "replica_diverged",
        "bad_signature",
        "bad_sequence",
        "wrong_stage",
        "role_denied",
        "unknown_actor",
        "not_session_owner",
        "stale_time",
        "wrong_chain",
        "package_exists",
        "gateway_mismatch",
        "signature_required",
        "too_many_owner_sessions",
        "session_expired",
        "session_closed",
    ] {
        assert!(codes.contains(&json!(code)), "{code} is not documented");
    }
}

fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                if k == "$ref" {
                    out.push(v.as_str().expect("a $ref is a string").to_string());
                } else {
                    collect_refs(v, out);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v["$ref"].as_str() {
        Some(r) => resolve(doc, doc.pointer(r.trim_start_matches('#')).expect("resolves")),
        None => v,
    }
}

/// A data folder outlives its chain when a devnet is re-created with the same
/// chain id: a gateway restarted on it must refuse to serve the dead chain's
/// replica and log, and say why; on its own chain it starts again.
#[tokio::test]
async fn a_data_folder_of_another_chain_is_refused_at_start() {
    use std::sync::Arc;
    use tandem_core::testkit::Cast;
    use tandem_gateway::service::{now_ms, Gateway, GatewayConfig};
    use tandem_rpc::FakeL1;

    let dir = tempfile::tempdir().expect("tempdir");
    let cast = Cast::new();
    let config = GatewayConfig::new(dir.path().to_path_buf(), cast.gateway.clone());
    let l1 = Arc::new(FakeL1::new(CHAIN_ID, cast.genesis()).expect("fake L1"));
    l1.produce_block(now_ms());
    let stop = |gw: Gateway| async move {
        let shared = Arc::downgrade(&gw.shared);
        drop(gw);
        // The aborted tasks drop their handles on the next polls.
        let deadline = std::time::Instant::now() + WAIT;
        while shared.upgrade().is_some() {
            assert!(std::time::Instant::now() < deadline, "the gateway's tasks did not stop");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    stop(Gateway::start(config.clone(), l1.clone()).await.expect("first start")).await;
    // Same chain: it starts again.
    stop(Gateway::start(config.clone(), l1.clone()).await.expect("restart on its own chain")).await;

    // The same chain id, re-created with another genesis (one actor fewer).
    let mut other = cast.genesis();
    other.actors.pop();
    let recreated = Arc::new(FakeL1::new(CHAIN_ID, other).expect("fake L1"));
    recreated.produce_block(now_ms());
    let err = match Gateway::start(config.clone(), recreated).await {
        Ok(_) => panic!("started on another chain's data folder"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("belongs to another chain") && err.contains("with another genesis"), "{err}");

    // Another chain id altogether.
    let renamed = Arc::new(FakeL1::new("tandem-other", cast.genesis()).expect("fake L1"));
    let err = match Gateway::start(config, renamed).await {
        Ok(_) => panic!("started on another chain's data folder"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("belongs to another chain") && err.contains("tandem-other"), "{err}");
}

/// A batch signed with this gateway's key that it never built is reported in
/// `/v1/status` and `/metrics` once finalized, and L1's record of the fault
/// it proves shows there too; the gateway's own batches are not reported.
#[tokio::test]
async fn a_batch_under_our_key_that_we_never_built_is_reported() {
    let h = Harness::start(|_| {}).await;
    let st = h.get("/v1/status").await.json;
    assert_eq!(st["foreign_batches"], 0);
    assert_eq!(st["l1_record"]["misbehaviours"], 0);
    assert_eq!(st["l1_record"]["faults"], json!({}));

    // An honest session, finalized through this gateway.
    let sup = h.cast.supplier.clone();
    let s = h.open(&sup, 1).await;
    h.ok_step(&step(&sup, s, 1, "OURS", register(&sup, "OURS"))).await;
    assert_eq!(h.commit(&sup, s).await.status, StatusCode::ACCEPTED);
    h.wait_state(s, "finalized", true).await;

    // Someone holding the key signs a batch with a false claim.
    let o = open_req(&sup, Some(h.cast.gateway.public()), 2);
    let id = o.open.session_id();
    let forged = tandem_core::testkit::batch(
        &h.cast.gateway,
        id,
        Some(o),
        vec![step(&sup, id, 1, "THEIRS", register(&sup, "THEIRS"))],
        vec![Hash([0; 32])],
    );
    h.l1.broadcast_tx_sync(Tx::SessionBatch(forged).encode()).await.unwrap();
    h.block();
    let st = h.wait_status("the foreign batch", |s| s["foreign_batches"] == 1).await;
    assert_eq!(st["l1_record"]["misbehaviours"], 1, "{st}");
    assert_eq!(st["l1_record"]["faults"], json!({ "outcome_mismatch": 1 }));
    let metrics = h.get("/metrics").await.text;
    assert!(metrics.lines().any(|l| l == "tandem_gateway_foreign_batches 1"), "{metrics}");
}
