//! How many steps one gateway acknowledges per second when it has the
//! machine's cores to itself (no validators beside it): its whole step path
//! (routing, JSON, the step and manifest signature checks, `apply`, the WAL's
//! group-committed fdatasync before the answer, the signed receipt), driven
//! in-process through the axum router with every step signed beforehand, and
//! L1 away so that no block replay competes. No sockets: a real client adds
//! the loopback round trip. Sessions of 32 `register` steps (the heaviest
//! action: two signatures to check).
//!
//! Run: `cargo bench -p tandem-gateway --bench intake` (env `INTAKE_CLIENTS`,
//! default 64, and `INTAKE_SESSIONS`, default 8 per client). Prints the figures
//! and writes them to `docs/benchmarks/gateway-intake.json`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use support::{step, Harness};
use tandem_core::testkit::register;
use tower::ServiceExt as _;

const STEPS_PER_SESSION: u64 = 32;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(run());
}

async fn run() {
    let clients = env_usize("INTAKE_CLIENTS", 64).max(1);
    let sessions = env_usize("INTAKE_SESSIONS", 8).max(1);
    let h = Harness::start(|c| {
        c.ledger.pending_steps_max = 10_000_000;
        c.ledger.sessions_max = 1_000_000;
        c.ledger.auto_commit_steps = 1_000;
        c.ledger.auto_commit_idle_ms = 3_600_000;
        c.rate_per_s = 10_000_000;
        c.rate_burst = 10_000_000;
    })
    .await;
    h.l1.set_available(false);

    // Not timed: open every session and sign every step.
    let supplier = h.cast.supplier.clone();
    let mut work: Vec<Vec<(String, Vec<u8>)>> = Vec::with_capacity(clients);
    let mut nonce = 0;
    for c in 0..clients {
        let mut mine = Vec::new();
        for s in 0..sessions {
            nonce += 1;
            let id = h.open(&supplier, nonce).await;
            for seq in 1..=STEPS_PER_SESSION {
                let pkg = format!("IN-{c}-{s}-{seq}");
                let signed = step(&supplier, id, seq, &pkg, register(&supplier, &pkg));
                mine.push((format!("/v1/sessions/{id}/steps"), serde_json::to_vec(&signed).expect("json")));
            }
        }
        work.push(mine);
    }
    let total: usize = work.iter().map(Vec::len).sum();

    let started = Instant::now();
    let tasks: Vec<_> = work
        .into_iter()
        .map(|mine| {
            let app = h.app.clone();
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(mine.len());
                let mut refused = 0usize;
                for (uri, body) in mine {
                    let req = Request::builder()
                        .method("POST")
                        .uri(uri)
                        .header(header::CONTENT_TYPE, "application/json")
                        .body(Body::from(body))
                        .expect("request");
                    let t = Instant::now();
                    let resp = app.clone().oneshot(req).await.expect("infallible");
                    let ok = resp.status() == StatusCode::OK;
                    // The answer is complete once its body is read.
                    let _ = http_body_util::BodyExt::collect(resp.into_body()).await;
                    if ok {
                        lat.push(t.elapsed());
                    } else {
                        refused += 1;
                    }
                }
                (lat, refused)
            })
        })
        .collect();
    let mut lat: Vec<Duration> = Vec::with_capacity(total);
    let mut refused = 0;
    for t in tasks {
        let (l, r) = t.await.expect("client task");
        lat.extend(l);
        refused += r;
    }
    let secs = started.elapsed().as_secs_f64();
    lat.sort();
    let pct = |q: f64| lat.get(((lat.len() as f64 * q).ceil() as usize).saturating_sub(1)).map_or(0.0, |d| d.as_secs_f64() * 1e3);
    let per_s = lat.len() as f64 / secs;
    println!(
        "gateway intake: {} steps acknowledged in {secs:.2} s = {per_s:.0} steps/s ({clients} clients, {} refused); latency p50 {:.2} ms, p99 {:.2} ms",
        lat.len(),
        refused,
        pct(0.50),
        pct(0.99)
    );
    let report = serde_json::json!({
        "what": "one gateway's step path in-process (router, JSON, 2 signature checks, apply, WAL fdatasync, receipt), steps pre-signed, L1 away, register steps",
        "command": format!("INTAKE_CLIENTS={clients} INTAKE_SESSIONS={sessions} cargo bench -p tandem-gateway --bench intake"),
        "cores": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "clients": clients,
        "sessions_per_client": sessions,
        "steps": lat.len(),
        "refused": refused,
        "seconds": secs,
        "steps_per_s": per_s,
        "latency_ms": { "p50": pct(0.50), "p99": pct(0.99), "max": pct(1.0) },
    });
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/benchmarks/gateway-intake.json");
    std::fs::write(&out, serde_json::to_string_pretty(&report).expect("json") + "\n").expect("write the report");
    println!("written to {}", out.display());
    assert_eq!(refused, 0, "every pre-signed step is accepted");
}
