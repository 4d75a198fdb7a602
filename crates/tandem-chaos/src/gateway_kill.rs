//! The gateway kill loop: a real 4-validator devnet, a gateway process, and
//! concurrent clients (suppliers registering packages; operators scanning
//! and validating them in sessions that build on the suppliers' tentative
//! state). The gateway is SIGKILLed at random instants and restarted at once.
//!
//! A client whose request dies with the gateway does what a careful client
//! does: it waits for the gateway to answer again and re-sends the very same
//! signed bytes. A step counts as acknowledged only when the client got a
//! 2xx answer with a receipt that verifies under the gateway's key.
//!
//! When the kills are done every client commits, the gateway drains its
//! backlog, and L1 is asked, through a validator's `abci_query`, about every
//! acknowledged step: the package's history must hold that (session, seq)
//! exactly once. Figures: kills, acknowledged, lost (acknowledged but not
//! final), duplicated (final more than once), and the time from each restart
//! to the gateway's first 2xx answer.

use std::collections::{BTreeMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use base64::Engine as _;
use rand::{Rng as _, SeedableRng as _};
use serde_json::{json, Value};
use tandem_core::message::{Action, Receipt, SessionClose, SessionOpen, Step};
use tandem_core::model::ManifestLine;
use tandem_core::{Hash, PublicKey, SecretKey};
use tandem_devnet::{Devnet, DevnetSpec, Profile};

/// Arguments of `tandem chaos gateway-kill`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// How many times the gateway is killed.
    #[arg(long, default_value_t = 100)]
    pub kills: usize,
    /// Seed of the kill instants and the workload [default: random, printed].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Shortest and longest time the gateway serves between kills (ms).
    #[arg(long, default_value_t = 150)]
    pub min_up_ms: u64,
    /// See --min-up-ms.
    #[arg(long, default_value_t = 1500)]
    pub max_up_ms: u64,
    /// Validators on 127.0.N.1..4 and the gateway on 127.0.N.100 (N from this address).
    #[arg(long, default_value = "127.0.61.1")]
    pub base_ip: Ipv4Addr,
    /// Stop killing after this many seconds even if fewer kills were made.
    #[arg(long, default_value_t = 1200)]
    pub max_secs: u64,
    /// Where `gateway-kill.json` is written.
    #[arg(long, default_value = "docs/reliability")]
    pub out: PathBuf,
}

/// One step the client got a verified receipt for.
#[derive(Clone, Debug)]
struct Acked {
    session: Hash,
    seq: u64,
    package: String,
}

/// What the clients share.
struct World {
    chain_id: String,
    gateway_key: PublicKey,
    url: String,
    http: reqwest::Client,
    stop: AtomicBool,
    acked: Mutex<Vec<Acked>>,
    /// Registered packages (and their manifest lines) waiting for an operator.
    registered: Mutex<VecDeque<(String, Vec<ManifestLine>)>>,
    retries: AtomicU64,
    refused: Mutex<BTreeMap<String, u64>>,
}

/// The answer to a request, or none because the connection died.
enum Reply {
    Answered(u16, Value),
    Lost,
}

impl World {
    async fn post(&self, path: &str, body: &Value) -> Reply {
        let r = self.http.post(format!("{}{path}", self.url)).json(body).timeout(Duration::from_secs(30)).send().await;
        match r {
            Ok(r) => {
                let status = r.status().as_u16();
                match r.json::<Value>().await {
                    Ok(v) => Reply::Answered(status, v),
                    Err(_) => Reply::Lost,
                }
            }
            Err(_) => Reply::Lost,
        }
    }

    /// POST until answered: a lost answer is retried with the same bytes
    /// once the gateway is back, and so are 429 and 503 after a pause.
    async fn post_until_answered(&self, path: &str, body: &Value) -> anyhow::Result<(u16, Value)> {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            match self.post(path, body).await {
                Reply::Answered(s, v) if s != 429 && s != 503 => return Ok((s, v)),
                Reply::Answered(..) | Reply::Lost => {
                    self.retries.fetch_add(1, Ordering::Relaxed);
                }
            }
            anyhow::ensure!(Instant::now() < deadline, "no answer to POST {path} within 120 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn refused(&self, code: &str) {
        *self.refused.lock().expect("lock").entry(code.to_string()).or_default() += 1;
    }

    /// Open a session; `None` once the scenario is stopping.
    async fn open(&self, key: &SecretKey, nonce: u64) -> anyhow::Result<Option<Hash>> {
        let open = SessionOpen {
            chain_id: self.chain_id.clone(),
            owner: key.public(),
            gateway: Some(self.gateway_key),
            nonce,
            client_time_ms: tandem_client::http::now_ms(),
        }
        .sign(key);
        let id = open.open.session_id();
        let (status, body) = self.post_until_answered("/v1/sessions", &json!(open)).await?;
        match status {
            201 => Ok(Some(id)),
            // The first attempt was logged before the gateway died.
            409 if body["code"] == "session_exists" => Ok(Some(id)),
            _ => {
                self.refused(body["code"].as_str().unwrap_or("unknown"));
                Ok(None)
            }
        }
    }

    /// Send one step until answered. `Ok(true)` when acknowledged with a
    /// verified receipt.
    async fn step(&self, key: &SecretKey, session: Hash, seq: u64, package: &str, action: Action) -> anyhow::Result<StepResult> {
        let step = Step {
            chain_id: self.chain_id.clone(),
            session,
            seq,
            actor: key.public(),
            package_id: package.to_string(),
            action,
            client_time_ms: tandem_client::http::now_ms(),
        }
        .sign(key);
        let (status, body) = self.post_until_answered(&format!("/v1/sessions/{session}/steps"), &json!(step)).await?;
        if status == 200 {
            let receipt: Receipt = serde_json::from_value(body["receipt"].clone()).context("a 200 step answer without a receipt")?;
            anyhow::ensure!(receipt.verify(), "a receipt that does not verify: {body}");
            anyhow::ensure!(receipt.gateway == self.gateway_key, "a receipt from another gateway");
            anyhow::ensure!(receipt.body.step == step.step.hash() && receipt.body.seq == seq, "a receipt for another step");
            self.acked.lock().expect("lock").push(Acked { session, seq, package: package.to_string() });
            return Ok(StepResult::Acked);
        }
        let code = body["code"].as_str().unwrap_or("unknown").to_string();
        self.refused(&code);
        Ok(match code.as_str() {
            // The session is gone (its open was never logged) or closed.
            "unknown_session" | "session_not_open" | "session_rejected" | "session_expired" => StepResult::SessionOver,
            // Our first attempt was logged before the gateway died, and this
            // gateway does not answer a re-send with the original receipt:
            // the step is in, but the client holds no receipt for it.
            "bad_sequence" => StepResult::InWithoutReceipt,
            _ => StepResult::Refused,
        })
    }

    /// The owner's signed close after its last step that went in.
    async fn commit(&self, key: &SecretKey, session: Hash, last_seq: u64) -> anyhow::Result<()> {
        let close = SessionClose { chain_id: self.chain_id.clone(), session, owner: key.public(), last_seq }.sign(key);
        let body = json!(close);
        let (status, body) = self.post_until_answered(&format!("/v1/sessions/{session}/commit"), &body).await?;
        if status >= 300 {
            self.refused(body["code"].as_str().unwrap_or("unknown"));
        }
        Ok(())
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum StepResult {
    Acked,
    InWithoutReceipt,
    SessionOver,
    Refused,
}

/// A supplier: sessions of 1–5 registrations, each committed.
async fn supplier(world: Arc<World>, key: SecretKey, name: String, seed: u64) -> anyhow::Result<()> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut nonce = rng.gen::<u32>() as u64 * 1_000;
    let mut n = 0u64;
    while !world.stop.load(Ordering::Relaxed) {
        nonce += 1;
        let Some(session) = world.open(&key, nonce).await? else { continue };
        let mut done = Vec::new();
        let mut last = 0;
        for seq in 1..=rng.gen_range(1..=5u64) {
            n += 1;
            let package = format!("{name}-{seed}-{n}");
            let lines = vec![tandem_client::actions::line("SKU-1", "valves", 1 + (n % 50) as u32)];
            let action = tandem_client::actions::register(&world.chain_id, &key, &package, &format!("DN-{package}"), lines.clone());
            match world.step(&key, session, seq, &package, action).await? {
                StepResult::Acked | StepResult::InWithoutReceipt => {
                    done.push((package, lines));
                    last = seq;
                }
                StepResult::SessionOver => break,
                StepResult::Refused => break,
            }
        }
        world.commit(&key, session, last).await?;
        world.registered.lock().expect("lock").extend(done);
    }
    Ok(())
}

/// An operator: sessions that scan and validate up to three registered
/// packages, often while the supplier's session is still being finalized
/// (a dependent session).
async fn operator(world: Arc<World>, key: SecretKey, seed: u64) -> anyhow::Result<()> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut nonce = rng.gen::<u32>() as u64 * 1_000;
    while !world.stop.load(Ordering::Relaxed) {
        let batch: Vec<(String, Vec<ManifestLine>)> = {
            let mut q = world.registered.lock().expect("lock");
            let n = q.len().min(3);
            q.drain(..n).collect()
        };
        if batch.is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        nonce += 1;
        let Some(session) = world.open(&key, nonce).await? else { continue };
        let mut seq = 0;
        'packages: for (package, lines) in &batch {
            for action in [tandem_client::actions::scan("DOCK-1"), tandem_client::actions::validate_as_declared(lines)] {
                seq += 1;
                match world.step(&key, session, seq, package, action).await? {
                    StepResult::Acked | StepResult::InWithoutReceipt => {}
                    StepResult::SessionOver => break 'packages,
                    StepResult::Refused => {
                        seq -= 1;
                        continue 'packages;
                    }
                }
            }
        }
        world.commit(&key, session, seq).await?;
    }
    Ok(())
}

/// The gateway as a child process, SIGKILLed when dropped.
struct GatewayProc {
    child: Option<Child>,
    args: Vec<String>,
    bin: PathBuf,
    log: PathBuf,
}

impl GatewayProc {
    fn spawn(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log)?;
        let child = Command::new(&self.bin)
            .args(&self.args)
            .stdout(log.try_clone()?)
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .context("starting the gateway")?;
        self.child = Some(child);
        Ok(())
    }
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for GatewayProc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Time until `GET /v1/status` answers 2xx.
async fn until_serving(http: &reqwest::Client, url: &str, limit: Duration) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        if let Ok(r) = http.get(format!("{url}/v1/status")).timeout(Duration::from_secs(2)).send().await {
            if r.status().is_success() {
                return Ok(started.elapsed());
            }
        }
        anyhow::ensure!(started.elapsed() < limit, "the gateway did not answer within {limit:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// `abci_query` on a validator: the JSON value at `path`, if any.
async fn query(http: &reqwest::Client, rpc: &str, path: &str) -> anyhow::Result<Option<Value>> {
    let url = format!("{rpc}/abci_query?path=%22{path}%22");
    let body: Value = http.get(&url).timeout(Duration::from_secs(10)).send().await?.json().await?;
    let resp = &body["result"]["response"];
    if resp["code"].as_u64().unwrap_or(0) != 0 {
        return Ok(None);
    }
    let Some(value) = resp["value"].as_str() else { return Ok(None) };
    let bytes = base64::engine::general_purpose::STANDARD.decode(value)?;
    Ok(Some(serde_json::from_slice(&bytes)?))
}

fn secret(hex_seed: &str) -> anyhow::Result<SecretKey> {
    let bytes = Hash::from_hex(hex_seed).map_err(|e| anyhow::anyhow!("a demo key seed: {e}"))?;
    Ok(SecretKey::from_seed(bytes.0))
}

/// Run the scenario; returns (and writes) its figures.
pub async fn run(args: Args, tandem_bin: &Path) -> anyhow::Result<Value> {
    anyhow::ensure!(args.min_up_ms <= args.max_up_ms, "--min-up-ms must not exceed --max-up-ms");
    let seed = crate::seed_or_random(args.seed);
    println!("gateway-kill: seed {seed}, {} kills", args.kills);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let cometbft = tandem_devnet::ensure_cometbft(&tandem_devnet::default_tools_dir())?;
    let tmp = tempfile::Builder::new().prefix("tandem-chaos-").tempdir()?;
    let spec = DevnetSpec {
        validators: 4,
        dir: tmp.path().join("net"),
        profile: Profile::Tuned,
        base_ip: args.base_ip,
        chain_id: "tandem-chaos".into(),
    };
    let layout = tandem_devnet::generate(&spec, &cometbft)?;
    let o = args.base_ip.octets();
    let listen = SocketAddr::from((Ipv4Addr::new(o[0], o[1], o[2], 100), 8080));
    tandem_devnet::ensure_free(&[listen])?;
    let devnet = Devnet::start(&layout, &cometbft, tandem_bin)?;
    let result = drive(&args, seed, &mut rng, &devnet, tmp.path(), listen, tandem_bin).await;
    devnet.stop()?;
    let figures = result?;
    let path = crate::write_figures(&args.out, "gateway-kill", &figures)?;
    println!("wrote {}", path.display());
    println!(
        "gateway-kill: kills {}, acked {}, lost {}, duplicated {}, restart to first 2xx p50 {:.0} ms, max {:.0} ms",
        figures["kills"],
        figures["acked"],
        figures["lost"],
        figures["duplicated"],
        figures["restart_to_first_2xx_ms"]["p50"].as_f64().unwrap_or(f64::NAN),
        figures["restart_to_first_2xx_ms"]["max"].as_f64().unwrap_or(f64::NAN),
    );
    Ok(figures)
}

async fn drive(
    args: &Args,
    seed: u64,
    rng: &mut rand::rngs::StdRng,
    devnet: &Devnet,
    dir: &Path,
    listen: SocketAddr,
    tandem_bin: &Path,
) -> anyhow::Result<Value> {
    let started = Instant::now();
    devnet.wait_for_height(2, Duration::from_secs(120)).await?;
    let layout = devnet.layout();
    let mut keys = BTreeMap::new();
    for k in tandem_devnet::load_keys(&layout.keys_dir)? {
        keys.insert(k.name.clone(), secret(&k.secret_key)?);
    }
    let key = |n: &str| keys.get(n).cloned().with_context(|| format!("no demo key {n}"));
    let mut gw_args = vec!["gateway".to_string()];
    for url in layout.rpc_urls() {
        gw_args.extend(["--l1".to_string(), url]);
    }
    gw_args.extend([
        "--data".into(),
        dir.join("gateway").display().to_string(),
        "--key".into(),
        layout.key_path("gateway-1").display().to_string(),
        "--listen".into(),
        listen.to_string(),
        // Frequent checkpoints, so kills land in every phase.
        "--auto-commit-idle-ms".into(),
        "300".into(),
    ]);
    std::fs::create_dir_all(dir.join("gateway"))?;
    let mut gw = GatewayProc { child: None, args: gw_args, bin: tandem_bin.to_path_buf(), log: dir.join("gateway.log") };
    gw.spawn()?;
    let http = reqwest::Client::builder().pool_max_idle_per_host(16).build()?;
    let url = format!("http://{listen}");
    until_serving(&http, &url, Duration::from_secs(60)).await?;
    let status: Value = http.get(format!("{url}/v1/status")).send().await?.json().await?;
    let world = Arc::new(World {
        chain_id: status["chain_id"].as_str().context("chain id")?.to_string(),
        gateway_key: PublicKey::from_hex(status["gateway"].as_str().context("gateway key")?)
            .map_err(|e| anyhow::anyhow!("gateway key: {e}"))?,
        url: url.clone(),
        http: http.clone(),
        stop: AtomicBool::new(false),
        acked: Mutex::new(Vec::new()),
        registered: Mutex::new(VecDeque::new()),
        retries: AtomicU64::new(0),
        refused: Mutex::new(BTreeMap::new()),
    });
    let mut clients = Vec::new();
    for (i, name) in ["supplier-1", "supplier-2"].into_iter().enumerate() {
        clients.push(tokio::spawn(supplier(world.clone(), key(name)?, name.to_string(), seed.wrapping_add(i as u64))));
    }
    for (i, name) in ["operator-1", "operator-2"].into_iter().enumerate() {
        clients.push(tokio::spawn(operator(world.clone(), key(name)?, seed.wrapping_add(10 + i as u64))));
    }

    let mut restarts: Vec<f64> = Vec::new();
    let mut kills = 0;
    let limit = Duration::from_secs(args.max_secs);
    while kills < args.kills && started.elapsed() < limit {
        tokio::time::sleep(Duration::from_millis(rng.gen_range(args.min_up_ms..=args.max_up_ms))).await;
        gw.kill();
        kills += 1;
        gw.spawn()?;
        let took = until_serving(&http, &url, Duration::from_secs(60)).await.with_context(|| format!("restart after kill {kills}"))?;
        restarts.push(took.as_secs_f64() * 1000.0);
    }

    // Stop the load: each client commits its session and ends.
    world.stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.context("a client task panicked")??;
    }
    // The backlog drains.
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let s: Value = http.get(format!("{url}/v1/status")).send().await?.json().await?;
        let busy = s["pending_steps"].as_u64().unwrap_or(1) + s["sessions"]["committing"].as_u64().unwrap_or(1);
        if busy == 0 {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "the gateway's backlog did not drain within 180 s: {s}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let status: Value = http.get(format!("{url}/v1/status")).send().await?.json().await?;
    gw.kill();

    // Ask L1 about every acknowledged step.
    let rpc = layout.rpc_urls()[0].clone();
    let acked = world.acked.lock().expect("lock").clone();
    let mut by_package: BTreeMap<&str, Vec<&Acked>> = BTreeMap::new();
    for a in &acked {
        by_package.entry(a.package.as_str()).or_default().push(a);
    }
    let (mut lost, mut duplicated) = (0u64, 0u64);
    let mut lost_examples = Vec::new();
    for (package, steps) in by_package {
        let history = query(&http, &rpc, &format!("/package/{package}")).await?.map(|p| p["history"].clone()).unwrap_or(Value::Null);
        let entries = history.as_array().cloned().unwrap_or_default();
        for a in steps {
            let n = entries.iter().filter(|e| e["session"] == json!(a.session) && e["seq"] == a.seq).count();
            match n {
                0 => {
                    lost += 1;
                    if lost_examples.len() < 5 {
                        lost_examples.push(format!("{}#{} {}", a.session, a.seq, a.package));
                    }
                }
                1 => {}
                _ => duplicated += 1,
            }
        }
    }
    let restart = tandem_bench::stats::pcts(&restarts);
    Ok(json!({
        "scenario": "gateway-kill",
        "holds": lost == 0 && duplicated == 0,
        "seed": seed,
        "kills": kills,
        "acked": acked.len(),
        "lost": lost,
        "duplicated": duplicated,
        "lost_examples": lost_examples,
        "restart_to_first_2xx_ms": { "p50": restart.p50, "p99": restart.p99, "max": restart.max },
        "client_retries": world.retries.load(Ordering::Relaxed),
        "refusals": *world.refused.lock().expect("lock"),
        "prediction_mismatches": status["prediction_mismatches"],
        "duration_s": started.elapsed().as_secs(),
        "command": format!("tandem chaos gateway-kill --kills {} --seed {seed}", args.kills),
    }))
}
