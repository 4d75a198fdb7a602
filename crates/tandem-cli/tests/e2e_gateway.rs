//! End to end through the gateway on real 4-validator devnets: the paper's
//! whole workflow over HTTP finalized on L1 with the predicted state, the
//! direct L1 path, a conflicting session, a gateway SIGKILLed right after
//! acknowledging steps, L1 stopped and restarted under a backlog, and a
//! checkpointed session that only its owner closes.
//!
//! Each test owns a loopback range (127.0.N.x) for validators and gateway.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::gateway::{self, post, Client, GatewayProc};
use support::Net;
use tandem_core::message::{Action, DirectStep, ItemCount};
use tandem_core::model::{Package, Priority};

fn operator_actions(net: &Net, package: &str) -> Vec<Action> {
    vec![
        Action::Scan { station: "DOCK-1".into() },
        Action::Validate { counts: vec![ItemCount { item_id: "SKU-1".into(), quantity: 12 }] },
        Action::Qc { passed: true, issues: vec![] },
        Action::Label {
            label_id: format!("LBL-{package}"),
            destination: "Depot 7".into(),
            priority: Priority::Normal,
            courier: net.key("courier-1").public(),
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_workflow_through_the_gateway_is_finalized_with_the_predicted_state() {
    let net = Net::start(4, 23).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = GatewayProc::start(&net, dir.path(), "127.0.23.100:8080", &[]);
    gw.wait_ready(&net.http).await;
    let c = Client { http: &net.http, url: gw.url.clone(), chain: net.layout.chain_id.clone(), gateway: net.key("gateway-1").clone() };
    let (sup, op, op2) = (net.key("supplier-1").clone(), net.key("operator-1").clone(), net.key("operator-2").clone());

    // register → open → scan → validate → QC → label → commit
    let s1 = c.open(&sup, 1).await;
    let (status, body) = c.step(&sup, s1, 1, "PKG-1", gateway::register(&c.chain, &sup, "PKG-1")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(c.commit(&sup, s1, 1).await.0, 202);
    let s2 = c.open(&op, 1).await;
    let mut predicted: Option<Package> = None;
    for (i, a) in operator_actions(&net, "PKG-1").into_iter().enumerate() {
        let (status, body) = c.step(&op, s2, i as u64 + 1, "PKG-1", a).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["receipt"]["body"]["outcome"], body["outcome_hash"]);
        predicted = Some(serde_json::from_value(body["package"].clone()).expect("package"));
    }
    let predicted = predicted.expect("steps ran");
    assert_eq!(predicted.stage, tandem_core::model::Stage::Labeled);

    // A second operator cannot touch the package while the session is open.
    let s3 = c.open(&op2, 1).await;
    let (status, body) = c.step(&op2, s3, 1, "PKG-1", Action::Handover { courier: net.key("courier-1").public() }).await;
    assert_eq!((status, body["code"].as_str()), (409, Some("package_locked")), "{body}");

    // Only the owner closes it: an unsigned commit, or one signed by
    // another operator, is refused and changes nothing.
    let (status, body) = post(&net.http, &format!("{}/v1/sessions/{s2}/commit", gw.url), &json!({})).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("signature_required")), "{body}");
    let (status, body) = c.commit(&op2, s2, 4).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("not_session_owner")), "{body}");
    assert_eq!(c.session(s2).await["status"]["state"], "open");
    assert_eq!(c.commit(&op, s2, 4).await.0, 202);
    let done = c.wait_state(s2, "finalized", Duration::from_secs(30)).await;
    for st in done["steps"].as_array().expect("steps") {
        assert_eq!(st["state"], "final");
        assert!(st["finality"]["l1_height"].is_null() && st["finality"]["height"].as_u64().is_some(), "{st}");
    }
    c.wait_state(s1, "finalized", Duration::from_secs(30)).await;
    // Every validator holds exactly the predicted package.
    for i in 0..4 {
        let on_l1: Package = serde_json::from_value(net.query(i, "/package/PKG-1").await.expect("package on L1")).expect("json");
        assert_eq!(on_l1.digest(), predicted.digest(), "validator {i} differs from the prediction");
        let session = net.query(i, &format!("/session/{s2}")).await.expect("session on L1");
        assert_eq!((&session["last_seq"], &session["closed"]), (&json!(4), &json!(true)), "validator {i}");
    }
    // Now the package is free: the second operator hands it over.
    let (status, body) = c.step(&op2, s3, 1, "PKG-1", Action::Handover { courier: net.key("courier-1").public() }).await;
    assert_eq!(status, 200, "{body}");

    // The package view shows L1 finality per history entry.
    let (_, pkg) = gateway::get(&net.http, &format!("{}/v1/packages/PKG-1", gw.url)).await;
    let hist = pkg["history"].as_array().expect("history");
    assert_eq!(hist.len(), 6);
    assert!(hist[..5].iter().all(|h| h["state"] == "final" && h["l1_height"].as_u64().is_some()), "{pkg}");
    assert_eq!(hist[5]["state"], "tentative");

    // The direct L1 path: answered only once the step is in a block.
    let d = gateway::open(&c.chain, &sup, None, 2);
    let st = gateway::step(&c.chain, &sup, d.open.session_id(), 1, "PKG-2", gateway::register(&c.chain, &sup, "PKG-2"));
    let (status, body) = post(&net.http, &format!("{}/v1/l1/steps", gw.url), &json!(DirectStep { open: Some(d), step: st })).await;
    assert_eq!(status, 200, "{body}");
    let h = body["l1_height"].as_u64().expect("height");
    assert!(net.query(0, "/package/PKG-2").await.is_some());
    assert!(net.height(0).await.expect("height") >= h);

    let (_, status) = gateway::get(&net.http, &format!("{}/v1/status", gw.url)).await;
    assert_eq!(status["prediction_mismatches"], 0, "{status}");
    assert_eq!(status["validators"].as_array().expect("validators").len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_step_acknowledged_before_a_gateway_sigkill_is_finalized_exactly_once() {
    let net = Net::start(4, 24).await;
    let dir = tempfile::tempdir().expect("tempdir");
    // No automatic commits: what happens is driven by the test.
    let mut gw =
        GatewayProc::start(&net, dir.path(), "127.0.24.100:8080", &["--auto-commit-idle-ms", "600000", "--auto-commit-steps", "1000"]);
    gw.wait_ready(&net.http).await;
    let c = Client { http: &net.http, url: gw.url.clone(), chain: net.layout.chain_id.clone(), gateway: net.key("gateway-1").clone() };
    let (sup, sup2) = (net.key("supplier-1").clone(), net.key("supplier-2").clone());

    // Session A: steps acknowledged, then SIGKILL before any commit.
    let a = c.open(&sup, 1).await;
    for i in 1..=5u64 {
        let (status, body) = c.step(&sup, a, i, &format!("A-{i}"), gateway::register(&c.chain, &sup, &format!("A-{i}"))).await;
        assert_eq!(status, 200, "{body}");
    }
    // Session B: steps and the commit acknowledged, SIGKILL right after.
    let b = c.open(&sup2, 1).await;
    for i in 1..=3u64 {
        let (status, _) = c.step(&sup2, b, i, &format!("B-{i}"), gateway::register(&c.chain, &sup2, &format!("B-{i}"))).await;
        assert_eq!(status, 200);
    }
    assert_eq!(c.commit(&sup2, b, 3).await.0, 202);
    gw.kill();

    gw.restart();
    gw.wait_ready(&net.http).await;
    // B finalizes by itself; A is open again and commits when asked.
    c.wait_state(b, "finalized", Duration::from_secs(30)).await;
    let sa = c.session(a).await;
    assert_eq!(sa["status"]["state"], "open", "{sa}");
    assert_eq!(sa["steps"].as_array().expect("steps").len(), 5);
    assert_eq!(c.commit(&sup, a, 5).await.0, 202);
    // Kill again while A is committing, and restart once more.
    gw.kill();
    gw.restart();
    gw.wait_ready(&net.http).await;
    c.wait_state(a, "finalized", Duration::from_secs(30)).await;

    // On L1: each session final up to exactly its acknowledged steps, each
    // package registered once.
    for (id, n) in [(a, 5u64), (b, 3u64)] {
        let s = net.query(0, &format!("/session/{id}")).await.expect("session on L1");
        assert_eq!(s["last_seq"], n);
    }
    for p in ["A-1", "A-2", "A-3", "A-4", "A-5", "B-1", "B-2", "B-3"] {
        let pkg = net.query(1, &format!("/package/{p}")).await.unwrap_or_else(|| panic!("{p} on L1"));
        assert_eq!(pkg["history"].as_array().expect("history").len(), 1, "{p} finalized once");
    }
    let (_, status) = gateway::get(&net.http, &format!("{}/v1/status", gw.url)).await;
    assert_eq!(status["prediction_mismatches"], 0, "{status}");
}

/// A gateway SIGKILLed after answering: a client that lost the answers
/// re-sends the same signed steps and gets the original receipts, before and
/// after finality; steps final before the kill keep their L1 height and
/// transaction hash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_gateway_sigkill_resent_steps_get_their_receipts_and_final_steps_keep_their_height() {
    let net = Net::start(4, 75).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut gw = GatewayProc::start(&net, dir.path(), "127.0.75.100:8080", &["--auto-commit-idle-ms", "600000"]);
    gw.wait_ready(&net.http).await;
    let c = Client { http: &net.http, url: gw.url.clone(), chain: net.layout.chain_id.clone(), gateway: net.key("gateway-1").clone() };
    let sup = net.key("supplier-1").clone();
    let base = gw.url.clone();
    let steps_url = |s| format!("{base}/v1/sessions/{s}/steps");

    // Session F: final before the kill. Session P: pending at the kill.
    let f = c.open(&sup, 1).await;
    let f_step = gateway::step(&c.chain, &sup, f, 1, "F-1", gateway::register(&c.chain, &sup, "F-1"));
    let (status, f_answer) = post(&net.http, &steps_url(f), &json!(f_step)).await;
    assert_eq!(status, 200, "{f_answer}");
    assert_eq!(c.commit(&sup, f, 1).await.0, 202);
    let before = c.wait_state(f, "finalized", Duration::from_secs(30)).await;
    let height = before["steps"][0]["finality"]["height"].as_u64().expect("a height");
    let tx_hash = before["steps"][0]["finality"]["tx_hash"].clone();
    let p = c.open(&sup, 2).await;
    let p_step = gateway::step(&c.chain, &sup, p, 1, "P-1", gateway::register(&c.chain, &sup, "P-1"));
    let (status, p_answer) = post(&net.http, &steps_url(p), &json!(p_step)).await;
    assert_eq!(status, 200, "{p_answer}");

    gw.kill();
    gw.restart();
    gw.wait_ready(&net.http).await;

    for (s, step, answer) in [(f, &f_step, &f_answer), (p, &p_step, &p_answer)] {
        let (status, again) = post(&net.http, &steps_url(s), &json!(step)).await;
        assert_eq!(status, 200, "{again}");
        assert_eq!(again["receipt"], answer["receipt"], "the original receipt");
        assert_eq!(again["outcome_hash"], answer["outcome_hash"]);
        let (status, view) = gateway::get(&net.http, &format!("{base}/v1/sessions/{s}/steps/1")).await;
        assert_eq!(status, 200, "{view}");
        assert_eq!(view["receipt"], answer["receipt"]);
    }
    let after = c.session(f).await;
    assert_eq!(after["steps"][0]["finality"]["height"], height, "{after}");
    assert_eq!(after["steps"][0]["finality"]["tx_hash"], tx_hash, "{after}");
    let (_, pkg) = gateway::get(&net.http, &format!("{base}/v1/packages/F-1")).await;
    assert_eq!(pkg["history"][0]["l1_height"], height, "{pkg}");
    assert_eq!(pkg["history"][0]["tx_hash"], tx_hash, "{pkg}");
    // Another step at a taken seq is still refused.
    let other = gateway::step(&c.chain, &sup, f, 1, "F-2", gateway::register(&c.chain, &sup, "F-2"));
    let (status, body) = post(&net.http, &steps_url(f), &json!(other)).await;
    assert_eq!((status, body["code"].as_str()), (409, Some("bad_sequence")), "{body}");
    // The pending session still finalizes, once.
    assert_eq!(c.commit(&sup, p, 1).await.0, 202);
    c.wait_state(p, "finalized", Duration::from_secs(30)).await;
    let s = net.query(0, &format!("/session/{p}")).await.expect("session on L1");
    assert_eq!(s["last_seq"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_l1_stopped_steps_are_answered_tentatively_then_503_then_the_backlog_drains() {
    let net = Net::start(4, 25).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = GatewayProc::start(&net, dir.path(), "127.0.25.100:8080", &["--backlog-max", "4", "--auto-commit-idle-ms", "200"]);
    gw.wait_ready(&net.http).await;
    let c = Client { http: &net.http, url: gw.url.clone(), chain: net.layout.chain_id.clone(), gateway: net.key("gateway-1").clone() };
    let sup = net.key("supplier-1").clone();

    for i in 0..4 {
        net.devnet.kill_node(i).expect("kill node");
    }
    let s = c.open(&sup, 1).await;
    for i in 1..=4u64 {
        let (status, body) = c.step(&sup, s, i, &format!("L-{i}"), gateway::register(&c.chain, &sup, &format!("L-{i}"))).await;
        assert_eq!(status, 200, "tentative answer while L1 is down: {body}");
    }
    let (status, body) = c.step(&sup, s, 5, "L-5", gateway::register(&c.chain, &sup, "L-5")).await;
    assert_eq!((status, body["code"].as_str()), (503, Some("backlog_full")), "{body}");
    let (_, st) = gateway::get(&net.http, &format!("{}/v1/status", gw.url)).await;
    assert_eq!(st["pending_steps"], 4);

    for i in 0..4 {
        net.devnet.start_node(i).expect("restart node");
    }
    // The session was checkpointed while L1 was away; it drains by itself
    // and stays open.
    let done = c.wait_final_steps(s, 4, Duration::from_secs(60)).await;
    assert_eq!(done["status"]["state"], "open", "{done}");
    let h = done["steps"][3]["finality"]["height"].as_u64().expect("final height");
    net.wait_height(&[2], h, Duration::from_secs(30)).await;
    let s2 = c.open(&sup, 2).await;
    let (status, body) = c.step(&sup, s2, 1, "L-5", gateway::register(&c.chain, &sup, "L-5")).await;
    assert_eq!(status, 200, "the gateway accepts again once the backlog drained: {body}");
    let v: Value = net.query(2, &format!("/session/{s}")).await.expect("session on L1");
    assert_eq!(v["last_seq"], 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_keeps_the_session_open_and_only_the_owners_close_ends_it_on_every_validator() {
    let net = Net::start(4, 65).await;
    let dir = tempfile::tempdir().expect("tempdir");
    // Every step is checkpointed at once.
    let gw = GatewayProc::start(&net, dir.path(), "127.0.65.100:8080", &["--auto-commit-steps", "1"]);
    gw.wait_ready(&net.http).await;
    let c = Client { http: &net.http, url: gw.url.clone(), chain: net.layout.chain_id.clone(), gateway: net.key("gateway-1").clone() };
    let (sup, sup2) = (net.key("supplier-1").clone(), net.key("supplier-2").clone());

    let s = c.open(&sup, 1).await;
    let (status, body) = c.step(&sup, s, 1, "CK-1", gateway::register(&c.chain, &sup, "CK-1")).await;
    assert_eq!(status, 200, "{body}");
    let v = c.wait_final_steps(s, 1, Duration::from_secs(30)).await;
    assert_eq!(v["status"]["state"], "open", "a checkpoint does not close: {v}");
    let on_l1 = net.query(0, &format!("/session/{s}")).await.expect("the checkpoint is on L1");
    assert_eq!((&on_l1["last_seq"], &on_l1["closed"]), (&json!(1), &json!(false)));

    // Nobody but the owner closes it; the refused attempts change nothing.
    let (status, body) = post(&net.http, &format!("{}/v1/sessions/{s}/commit", gw.url), &json!({})).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("signature_required")), "{body}");
    let (status, body) = c.commit(&sup2, s, 1).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("not_session_owner")), "{body}");
    let (status, body) = c.step(&sup, s, 2, "CK-2", gateway::register(&c.chain, &sup, "CK-2")).await;
    assert_eq!(status, 200, "the owner goes on: {body}");

    assert_eq!(c.commit(&sup, s, 2).await.0, 202);
    c.wait_state(s, "finalized", Duration::from_secs(30)).await;
    for i in 0..4 {
        let on_l1 = net.query(i, &format!("/session/{s}")).await.expect("session on L1");
        assert_eq!((&on_l1["last_seq"], &on_l1["closed"]), (&json!(2), &json!(true)), "validator {i}");
    }
    let (status, body) = c.step(&sup, s, 3, "CK-3", gateway::register(&c.chain, &sup, "CK-3")).await;
    assert_eq!((status, body["code"].as_str()), (409, Some("session_not_open")), "{body}");
    let (_, st) = gateway::get(&net.http, &format!("{}/v1/status", gw.url)).await;
    assert_eq!(st["prediction_mismatches"], 0, "{st}");
}
