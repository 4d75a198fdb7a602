//! What the benchmark does to one running devnet + gateway: the paper's
//! workflow through L2 with one sequential client, the same steps on the
//! direct L1 path, and a ramp of concurrent clients.
//!
//! Finality is observed the way a client would: through the gateway's SSE
//! stream (`GET /v1/events`), with a slow poll of `GET /v1/sessions/{id}` as
//! a fallback in case the stream dropped an event (the gateway's broadcast
//! channel drops events for subscribers that lag).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::Serialize;
use tandem_client::actions::{label, line, qc, register, scan, validate_as_declared};
use tandem_client::{Client, ClientError};
use tandem_core::model::Priority;
use tandem_core::{Hash, PublicKey, SecretKey};
use tokio::sync::watch;

use crate::stats::{pcts, Pcts};

/// The demo identities the workload signs with.
#[derive(Clone)]
pub struct Keys {
    pub suppliers: [SecretKey; 2],
    pub operator: SecretKey,
    pub courier: PublicKey,
}

/// One latency sample of the sequential phases.
#[derive(Clone, Debug)]
pub struct Sample {
    /// `l2`, `l2_extra`, `l1_direct`, `finality`, `workflow`, `commit_ack`.
    pub phase: &'static str,
    /// Step kind (`register`, `open`, `scan`, ...), or the phase again.
    pub kind: &'static str,
    pub iteration: usize,
    pub ms: f64,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// When each session was seen finalized, fed by the SSE stream.
pub struct FinalityWatch {
    seen: Mutex<HashMap<String, Instant>>,
    tick: watch::Sender<u64>,
    /// Sessions whose finality was found by the fallback poll, not the stream.
    pub by_poll: AtomicU64,
}

impl FinalityWatch {
    /// Starts listening to `base/v1/events`; the task reconnects until aborted.
    pub fn start(base: &str) -> (Arc<FinalityWatch>, tokio::task::JoinHandle<()>) {
        let w = Arc::new(FinalityWatch { seen: Mutex::new(HashMap::new()), tick: watch::channel(0).0, by_poll: AtomicU64::new(0) });
        let task = tokio::spawn(listen(format!("{base}/v1/events"), w.clone()));
        (w, task)
    }

    fn record(&self, session: String, at: Instant) {
        self.seen.lock().expect("lock").entry(session).or_insert(at);
        self.tick.send_modify(|n| *n += 1);
    }

    fn get(&self, session: &str) -> Option<Instant> {
        self.seen.lock().expect("lock").get(session).copied()
    }

    /// Waits until `id` is finalized; returns when it was first seen so.
    pub async fn wait(&self, client: &Client, id: &Hash, timeout: Duration) -> anyhow::Result<Instant> {
        let key = id.to_string();
        let deadline = Instant::now() + timeout;
        let mut rx = self.tick.subscribe();
        let mut last_poll = Instant::now();
        loop {
            if let Some(t) = self.get(&key) {
                return Ok(t);
            }
            anyhow::ensure!(Instant::now() < deadline, "session {id} not finalized within {timeout:?}");
            let _ = tokio::time::timeout(Duration::from_millis(50), rx.changed()).await;
            // The stream is the primary signal; poll only if it has been
            // quiet for a while (it may have dropped our event).
            if self.get(&key).is_none() && last_poll.elapsed() > Duration::from_secs(2) {
                last_poll = Instant::now();
                let s = client.session(id).await?;
                match s["status"]["state"].as_str() {
                    Some("finalized") => {
                        self.by_poll.fetch_add(1, Ordering::Relaxed);
                        self.record(key.clone(), Instant::now());
                    }
                    Some("rejected") => anyhow::bail!("session {id} was rejected: {}", s["status"]),
                    _ => {}
                }
            }
        }
    }
}

/// Reads the SSE stream, recording every `session_finalized` with
/// `complete: true` at the moment its frame arrives.
async fn listen(url: String, w: Arc<FinalityWatch>) {
    let http = reqwest::Client::new();
    loop {
        if let Ok(mut resp) = http.get(&url).send().await {
            let mut buf = String::new();
            while let Ok(Some(chunk)) = resp.chunk().await {
                let now = Instant::now();
                buf.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = buf.find("\n\n") {
                    let frame: String = buf.drain(..end + 2).collect();
                    for data in frame.lines().filter_map(|l| l.strip_prefix("data:")) {
                        let Ok(v) = serde_json::from_str::<serde_json::Value>(data.trim()) else {
                            continue;
                        };
                        if v["type"] == "session_finalized" && v["complete"] == true {
                            if let Some(s) = v["session"].as_str() {
                                w.record(s.to_string(), now);
                            }
                        }
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Hands out package ids unique within one devnet.
pub struct Packages(AtomicU64);

impl Packages {
    pub fn new() -> Self {
        Packages(AtomicU64::new(0))
    }
    pub fn next(&self) -> String {
        format!("BP-{}", self.0.fetch_add(1, Ordering::Relaxed))
    }
}

impl Default for Packages {
    fn default() -> Self {
        Self::new()
    }
}

/// One iteration of the paper's workflow through the gateway:
/// register (supplier session) → open (operator session) → scan → validate
/// → QC → label → commit, then wait for both sessions to be final.
pub async fn l2_workflow(
    client: &Client,
    keys: &Keys,
    fin: &FinalityWatch,
    pkgs: &Packages,
    iteration: usize,
    out: &mut Vec<Sample>,
) -> anyhow::Result<()> {
    let pkg = pkgs.next();
    let lines = vec![line("SKU-1", "valves", 12)];
    let supplier = &keys.suppliers[0];
    let mut push = |kind: &'static str, phase: &'static str, d: Duration| out.push(Sample { phase, kind, iteration, ms: ms(d) });

    let start = Instant::now();
    let t = Instant::now();
    let mut s1 = client.open_session(supplier).await.context("open supplier session")?;
    push("open_supplier", "l2", t.elapsed());
    let t = Instant::now();
    s1.step(&pkg, register(&client.chain_id, supplier, &pkg, &format!("DN-{pkg}"), lines.clone())).await.context("register")?;
    push("register", "l2", t.elapsed());
    let t = Instant::now();
    s1.commit().await.context("commit supplier session")?;
    push("commit_ack", "commit_ack", t.elapsed());
    let c1 = t;

    let t = Instant::now();
    let mut s2 = client.open_session(&keys.operator).await.context("open operator session")?;
    push("open", "l2", t.elapsed());
    let steps: [(&'static str, tandem_core::message::Action); 4] = [
        ("scan", scan("DOCK-1")),
        ("validate", validate_as_declared(&lines)),
        ("qc", qc(true, &[])),
        ("label", label(&format!("LBL-{pkg}"), "Depot 7", Priority::Normal, keys.courier)),
    ];
    for (kind, action) in steps {
        let t = Instant::now();
        s2.step(&pkg, action).await.with_context(|| format!("{kind} of {pkg}"))?;
        push(kind, "l2", t.elapsed());
    }
    let t = Instant::now();
    s2.commit().await.context("commit operator session")?;
    push("commit_ack", "commit_ack", t.elapsed());
    let c2 = t;

    let f2 = fin.wait(client, &s2.id, Duration::from_secs(120)).await?;
    let f1 = fin.wait(client, &s1.id, Duration::from_secs(120)).await?;
    push("finality", "finality", f2.saturating_duration_since(c2));
    push("finality", "finality", f1.saturating_duration_since(c1));
    push("workflow", "workflow", f1.max(f2).saturating_duration_since(start));
    Ok(())
}

/// `n` more L2 step samples from one sequential client: supplier sessions of
/// 32 `register` steps (the heaviest action: two signatures to verify), each
/// committed without waiting, so that p99 rests on ≥1,000 samples.
pub async fn l2_extra_steps(client: &Client, keys: &Keys, pkgs: &Packages, n: usize, out: &mut Vec<Sample>) -> anyhow::Result<()> {
    let supplier = &keys.suppliers[1];
    let mut done = 0;
    while done < n {
        let mut s = client.open_session(supplier).await?;
        for _ in 0..32.min(n - done) {
            let pkg = pkgs.next();
            let action = register(&client.chain_id, supplier, &pkg, &format!("DN-{pkg}"), vec![line("SKU-1", "valves", 12)]);
            let t = Instant::now();
            s.step(&pkg, action).await.context("extra register step")?;
            out.push(Sample { phase: "l2_extra", kind: "register", iteration: done, ms: ms(t.elapsed()) });
            done += 1;
        }
        s.commit().await?;
    }
    Ok(())
}

/// The same five steps as the L2 workflow, each its own transaction through
/// `POST /v1/l1/steps` (answered once it is in a committed block).
pub async fn l1_direct_workflow(
    client: &Client,
    keys: &Keys,
    pkgs: &Packages,
    iteration: usize,
    out: &mut Vec<Sample>,
) -> anyhow::Result<()> {
    let pkg = pkgs.next();
    let lines = vec![line("SKU-1", "valves", 12)];
    let supplier = &keys.suppliers[iteration % 2];
    let steps: [(&'static str, &SecretKey, tandem_core::message::Action); 5] = [
        ("register", supplier, register(&client.chain_id, supplier, &pkg, &format!("DN-{pkg}"), lines.clone())),
        ("scan", &keys.operator, scan("DOCK-1")),
        ("validate", &keys.operator, validate_as_declared(&lines)),
        ("qc", &keys.operator, qc(true, &[])),
        ("label", &keys.operator, label(&format!("LBL-{pkg}"), "Depot 7", Priority::Normal, keys.courier)),
    ];
    for (kind, key, action) in steps {
        let t = Instant::now();
        client.direct_step(key, &pkg, action).await.with_context(|| format!("direct {kind} of {pkg}"))?;
        out.push(Sample { phase: "l1_direct", kind, iteration, ms: ms(t.elapsed()) });
    }
    Ok(())
}

/// One level of the throughput ramp.
#[derive(Clone, Debug, Serialize)]
pub struct RampLevel {
    /// Concurrent clients (the offered load: each sends its next step as
    /// soon as the previous one is answered).
    pub concurrency: usize,
    pub window_s: f64,
    /// Steps acknowledged (durable) by the gateway in the window.
    pub steps_ok: u64,
    /// Refusals and failures, by code.
    pub errors: HashMap<String, u64>,
    /// Steps acknowledged per second.
    pub l2_steps_per_s: f64,
    /// Steps of this window finalized on L1 per second, from the window's
    /// start until the backlog was drained (includes the last blocks' delay).
    pub l1_steps_per_s: f64,
    /// Seconds after the window until every step of it was final.
    pub drain_s: f64,
    /// Step latency at this load.
    pub latency_ms: Pcts,
}

/// Pending (acknowledged, not yet final) steps at the in-process gateway.
pub type PendingFn = Arc<dyn Fn() -> usize + Send + Sync>;

/// Runs `concurrency` clients for `window`, each doing supplier sessions of
/// 32 `register` steps on fresh packages (committed without waiting), then
/// waits for the gateway's backlog to drain.
pub async fn ramp_level(
    client: &Client,
    keys: &Keys,
    pkgs: &Arc<Packages>,
    concurrency: usize,
    window: Duration,
    pending: &PendingFn,
) -> anyhow::Result<RampLevel> {
    let start = Instant::now();
    let deadline = start + window;
    let mut tasks = Vec::new();
    for c in 0..concurrency {
        let (client, keys, pkgs) = (client.clone(), keys.clone(), pkgs.clone());
        tasks.push(tokio::spawn(async move {
            let supplier = keys.suppliers[c % 2].clone();
            let mut lat = Vec::new();
            let mut errors: HashMap<String, u64> = HashMap::new();
            let mut note = |e: &ClientError| *errors.entry(e.code().unwrap_or("transport").to_string()).or_default() += 1;
            'outer: while Instant::now() < deadline {
                let mut s = match client.open_session(&supplier).await {
                    Ok(s) => s,
                    Err(e) => {
                        note(&e);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                };
                let mut n = 0;
                while n < 32 {
                    if Instant::now() >= deadline {
                        if n > 0 {
                            let _ = s.commit().await;
                        }
                        break 'outer;
                    }
                    let pkg = pkgs.next();
                    let action = register(&client.chain_id, &supplier, &pkg, &format!("DN-{pkg}"), vec![line("SKU-1", "valves", 12)]);
                    let t = Instant::now();
                    match s.step(&pkg, action).await {
                        Ok(_) => {
                            lat.push(ms(t.elapsed()));
                            n += 1;
                        }
                        Err(e) => {
                            note(&e);
                            // Backpressure (backlog_full, rate_limited): back off briefly.
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
                if let Err(e) = s.commit().await {
                    note(&e);
                }
            }
            (lat, errors)
        }));
    }
    let mut lat = Vec::new();
    let mut errors: HashMap<String, u64> = HashMap::new();
    for t in tasks {
        let (l, e) = t.await.context("ramp client panicked")?;
        lat.extend(l);
        for (k, v) in e {
            *errors.entry(k).or_default() += v;
        }
    }
    let window_s = start.elapsed().as_secs_f64();
    let steps_ok = lat.len() as u64;
    // Drain: wait until nothing acknowledged is still waiting for L1.
    let drain_deadline = Instant::now() + Duration::from_secs(180);
    while pending() > 0 && Instant::now() < drain_deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let left = pending();
    anyhow::ensure!(left == 0, "{left} acknowledged steps were still not final on L1 3 minutes after the ramp window");
    let total_s = start.elapsed().as_secs_f64();
    Ok(RampLevel {
        concurrency,
        window_s,
        steps_ok,
        errors,
        l2_steps_per_s: steps_ok as f64 / window_s,
        l1_steps_per_s: steps_ok as f64 / total_s,
        drain_s: total_s - window_s,
        latency_ms: pcts(&lat),
    })
}
