//! End to end on a real 4-validator devnet: a session of 200 maximum-size
//! `register` steps (each ~21 KiB, ~4.3 MB in all) is cut into batches that
//! CometBFT's RPC, mempool and CheckTx all take, and finalizes whole on L1.
//!
//! Owns the loopback range 127.0.60.x.

mod support;

use std::time::Duration;

use support::gateway::{self, Client, GatewayProc};
use support::Net;
use tandem_core::testkit::{max_package_id, max_register};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_of_200_maximum_size_register_steps_finalizes_whole_on_l1() {
    let net = Net::start(4, 60).await;
    let dir = tempfile::tempdir().expect("tempdir");
    // The session is committed by the test, never automatically.
    let gw = GatewayProc::start(&net, dir.path(), "127.0.60.100:8080", &["--auto-commit-idle-ms", "600000", "--auto-commit-steps", "1000"]);
    gw.wait_ready(&net.http).await;
    let c = Client { http: &net.http, url: gw.url.clone(), chain: net.layout.chain_id.clone(), gateway: net.key("gateway-1").clone() };
    let sup = net.key("supplier-1").clone();

    let s = c.open(&sup, 1).await;
    for i in 1..=200u64 {
        let p = max_package_id("MAX-", i);
        let (status, body) = c.step(&sup, s, i, &p, max_register(&c.chain, &sup, &p)).await;
        assert_eq!(status, 200, "step {i}: {body}");
    }
    assert_eq!(c.commit(&sup, s, 200).await.0, 202);
    let done = c.wait_state(s, "finalized", Duration::from_secs(180)).await;
    assert_eq!(done["steps"].as_array().expect("steps").len(), 200);

    // L1 holds every step, on every validator.
    for i in 0..4 {
        let on_l1 = net.query(i, &format!("/session/{s}")).await.expect("session on L1");
        assert_eq!(on_l1["last_seq"], 200, "validator {i}");
    }
    assert!(net.query(1, &format!("/package/{}", max_package_id("MAX-", 200))).await.is_some());
    // Several batches, none refused.
    let heights: std::collections::BTreeSet<u64> =
        done["steps"].as_array().expect("steps").iter().map(|st| st["finality"]["height"].as_u64().expect("final height")).collect();
    assert!(heights.len() >= 9, "200 steps of ~21 KiB need at least 9 batches: {heights:?}");
    let (_, status) = gateway::get(&net.http, &format!("{}/v1/status", gw.url)).await;
    assert_eq!(status["l1_refused_batches"]["total"], 0, "{status}");
    assert_eq!(status["prediction_mismatches"], 0, "{status}");
}
