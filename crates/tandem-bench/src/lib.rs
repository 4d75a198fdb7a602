//! # tandem-bench
//!
//! `tandem bench`: measures Tandem the way the source paper measured its
//! system, on real devnets of CometBFT validators started for the purpose,
//! and writes the results (JSON, CSV, Markdown, SVG) under `--out`.
//!
//! For each (validator count, timing profile) point it generates a devnet in
//! a temporary folder on a loopback range of its own (`--base-ip`, so it never
//! meets a developer's devnet on 127.0.0.x), starts a gateway in this process
//! on a free port, warms up, and then measures:
//!
//! - the paper's workflow through L2 with one sequential client (per-step
//!   latency, session finality, whole-workflow time), plus extra sequential
//!   steps so that the p99 rests on ≥1,000 samples;
//! - the same steps on the direct L1 path (`POST /v1/l1/steps`);
//! - a ramp of concurrent clients (steps/s acknowledged and finalized,
//!   latency at each load, the knee);
//! - CPU time and peak RSS of this process and of every validator process.
//!
//! The `tandem` binary embeds [`BenchArgs`] and calls [`run`]; the
//! `tandem-bench` example binary does the same for development.
//!
//! Layout: [`workload`] (what is sent), [`stats`] (percentiles), [`sys`]
//! (`/proc`), [`report`] (files), [`svg`] (charts).

pub mod report;
pub mod stats;
pub mod svg;
pub mod sys;
pub mod workload;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use tandem_core::SecretKey;
use tandem_devnet::{default_tools_dir, ensure_cometbft, generate, Devnet, DevnetSpec, ProcKind, Profile};

use crate::stats::{pcts, Pcts};
use crate::sys::ProcSample;
use crate::workload::{FinalityWatch, Keys, Packages, PendingFn, RampLevel, Sample};

/// Which timing profiles to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProfileChoice {
    /// The `tuned` profile only (for one host).
    Tuned,
    /// CometBFT's default timeouts only (the paper's setting).
    Default,
    /// Both, one after the other for each validator count.
    Both,
}

/// `tandem bench`: the paper's workflow on devnets of N validators; L2 vs
/// direct L1 latency, session finality, a throughput ramp, resource use.
///
/// Example: tandem bench --validators 4,16 --profile both --out docs/benchmarks
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Validator counts to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "4,7,10,13,16")]
    pub validators: Vec<usize>,
    /// CometBFT timing profile(s).
    #[arg(long, value_enum, default_value_t = ProfileChoice::Both)]
    pub profile: ProfileChoice,
    /// Sequential L2 workflows measured per point [default: 30, --quick: 3].
    #[arg(long)]
    pub iterations: Option<usize>,
    /// Extra sequential L2 steps per point, for the p99 [default: 1000, --quick: 100].
    #[arg(long)]
    pub l2_steps: Option<usize>,
    /// Direct-L1 workflows (5 steps each) per point [default: 8, --quick: 2].
    #[arg(long)]
    pub l1_iterations: Option<usize>,
    /// Independent sequential clients sharing the direct-L1 workflows, so a
    /// point with ~1 s blocks does not take minutes [default: 4, --quick: 2].
    #[arg(long)]
    pub l1_parallel: Option<usize>,
    /// Highest number of concurrent clients in the throughput ramp
    /// (levels 1, 4, 16, 64, ... up to it) [default: 64, --quick: 4].
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Seconds of load at each ramp level [default: 4, --quick: 1.5].
    #[arg(long)]
    pub ramp_secs: Option<f64>,
    /// Output folder.
    #[arg(long, default_value = "docs/benchmarks")]
    pub out: PathBuf,
    /// A short run (4 validators, tuned, few iterations, short ramp), for CI.
    #[arg(long)]
    pub quick: bool,
    /// Address of node 0 of each devnet; node i gets this plus i (a point may
    /// shift the last octet to stay clear of the previous point's sockets).
    #[arg(long, default_value = "127.0.40.1")]
    pub base_ip: Ipv4Addr,
}

/// Resolved settings of one run (defaults filled in), printed with the results.
#[derive(Clone, Debug, Serialize)]
pub struct Settings {
    pub validators: Vec<usize>,
    pub profiles: Vec<String>,
    pub iterations: usize,
    pub warmup_iterations: usize,
    pub l2_extra_steps: usize,
    pub l1_iterations: usize,
    pub l1_parallel: usize,
    pub ramp_levels: Vec<usize>,
    pub ramp_secs: f64,
    pub quick: bool,
    pub base_ip: String,
    pub command: String,
    /// Niceness of every devnet process (`TANDEM_DEVNET_NICE`), if lowered.
    pub devnet_nice: Option<u8>,
}

impl Settings {
    fn from_args(a: &BenchArgs) -> Settings {
        let q = a.quick;
        let validators = if q { vec![4] } else { a.validators.clone() };
        let profiles = match (q, a.profile) {
            (true, _) | (false, ProfileChoice::Tuned) => vec!["tuned".to_string()],
            (false, ProfileChoice::Default) => vec!["default".to_string()],
            (false, ProfileChoice::Both) => vec!["tuned".to_string(), "default".to_string()],
        };
        let max_c = a.concurrency.unwrap_or(if q { 4 } else { 64 }).max(1);
        let mut ramp_levels: Vec<usize> = std::iter::successors(Some(1usize), |c| Some(c * 4)).take_while(|c| *c <= max_c).collect();
        if ramp_levels.last() != Some(&max_c) {
            ramp_levels.push(max_c);
        }
        Settings {
            validators,
            profiles,
            iterations: a.iterations.unwrap_or(if q { 3 } else { 30 }).max(1),
            warmup_iterations: if q { 1 } else { 3 },
            l2_extra_steps: a.l2_steps.unwrap_or(if q { 100 } else { 1000 }),
            l1_iterations: a.l1_iterations.unwrap_or(if q { 2 } else { 8 }).max(1),
            l1_parallel: a.l1_parallel.unwrap_or(if q { 2 } else { 4 }).max(1),
            ramp_levels,
            ramp_secs: a.ramp_secs.unwrap_or(if q { 1.5 } else { 4.0 }),
            quick: q,
            base_ip: a.base_ip.to_string(),
            command: std::env::args().collect::<Vec<_>>().join(" "),
            devnet_nice: tandem_devnet::devnet_niceness(),
        }
    }
}

/// CPU and peak RSS of one process over a point's measured phases.
#[derive(Clone, Debug, Serialize)]
pub struct ProcUse {
    /// `gateway+clients` (this process), `app` or `cometbft`.
    pub kind: String,
    pub node: Option<usize>,
    pub pid: u32,
    /// CPU seconds spent during the measured phases.
    pub cpu_s: f64,
    /// CPU seconds per wall second (1.0 = one core busy).
    pub cpu_cores: f64,
    /// Peak RSS since the process started, MiB.
    pub peak_rss_mb: f64,
}

/// One (validators, profile) point: the row of `results.json`.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub validators: usize,
    pub profile: String,
    /// The CometBFT settings the nodes ran with (`section.key` → value).
    pub timeouts: BTreeMap<String, String>,
    /// Every sequential L2 answer that is a step or a session open.
    pub l2_step_ms: Pcts,
    pub l2_step_by_kind_ms: BTreeMap<String, Pcts>,
    /// `POST .../commit` answered (durable), not final.
    pub commit_ack_ms: Pcts,
    /// Commit request → `session_finalized` seen on the SSE stream.
    pub session_finality_ms: Pcts,
    pub l1_direct_step_ms: Pcts,
    pub l1_direct_by_kind_ms: BTreeMap<String, Pcts>,
    /// Supplier session open → both sessions final.
    pub workflow_ms: Pcts,
    pub ratio_l1_over_l2_p50: f64,
    pub l2_steps_per_s_max: f64,
    pub l1_steps_per_s_max: f64,
    /// Lowest concurrency past which acknowledged steps/s grew < 10 %.
    pub knee_concurrency: Option<usize>,
    pub ramp: Vec<RampLevel>,
    pub resources: Vec<ProcUse>,
    /// Finalities that came from the fallback poll rather than the stream.
    pub finality_by_poll: u64,
    pub wall_s: f64,
    /// What went wrong, if a phase failed (its figures are then null).
    pub errors: Vec<String>,
}

/// Everything one run produced (`results.json`).
#[derive(Clone, Debug, Serialize)]
pub struct Results {
    pub date: String,
    pub machine: sys::Machine,
    pub cometbft_version: String,
    pub settings: Settings,
    pub rows: Vec<Row>,
}

/// Runs the benchmark and writes its outputs under `args.out`. `tandem_bin`
/// is the `tandem` binary whose `node` subcommand is the L1 app.
pub async fn run(args: BenchArgs, tandem_bin: &Path) -> anyhow::Result<()> {
    anyhow::ensure!(tandem_bin.exists(), "no tandem binary at {}", tandem_bin.display());
    let settings = Settings::from_args(&args);
    let cometbft = ensure_cometbft(&default_tools_dir())?;
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let points: Vec<(usize, Profile)> = settings
        .validators
        .iter()
        .flat_map(|v| settings.profiles.iter().map(move |p| (*v, if p == "tuned" { Profile::Tuned } else { Profile::Default })))
        .collect();
    let per_point = 3 + settings.warmup_iterations + settings.iterations + settings.l1_iterations + settings.ramp_levels.len();
    let pb = ProgressBar::new((per_point * points.len()) as u64);
    pb.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let mut results = Results {
        date: sys::utc_now(),
        machine: sys::machine(),
        cometbft_version: tandem_devnet::COMETBFT_VERSION.to_string(),
        settings: settings.clone(),
        rows: Vec::new(),
    };
    let mut samples: Vec<(usize, String, Sample)> = Vec::new();
    for (k, (v, profile)) in points.iter().enumerate() {
        let ip = point_ip(args.base_ip, k, *v);
        let (row, s) = run_point(&settings, *v, *profile, ip, &cometbft, tandem_bin, &pb).await;
        if !row.errors.is_empty() {
            pb.println(format!("{v} validators, {profile}: {}", row.errors.join("; ")));
        }
        samples.extend(s.into_iter().map(|s| (*v, profile.to_string(), s)));
        results.rows.push(row);
        // After every point, so a long run that dies keeps what it measured.
        report::write_all(&args.out, &results, &samples)?;
    }
    pb.finish_with_message("done");
    println!("{}", report::summary_table(&results));
    println!("results written to {}", args.out.display());
    Ok(())
}

/// The base address of point `k`: shifted by 17 per point while it fits, so
/// that consecutive devnets never bind the same sockets (TIME_WAIT).
fn point_ip(base: Ipv4Addr, k: usize, validators: usize) -> Ipv4Addr {
    let o = base.octets();
    let last = usize::from(o[3]) + 17 * k;
    if last + validators <= 240 {
        Ipv4Addr::new(o[0], o[1], o[2], last as u8)
    } else {
        base
    }
}

fn secret(hex_seed: &str) -> anyhow::Result<SecretKey> {
    let mut seed = [0u8; 32];
    for (i, b) in seed.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex_seed.get(2 * i..2 * i + 2).context("short key")?, 16)?;
    }
    Ok(SecretKey::from_seed(seed))
}

fn by_kind(samples: &[Sample], phases: &[&str]) -> BTreeMap<String, Pcts> {
    let mut m: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for s in samples.iter().filter(|s| phases.contains(&s.phase)) {
        m.entry(s.kind.to_string()).or_default().push(s.ms);
    }
    m.into_iter().map(|(k, v)| (k, pcts(&v))).collect()
}

fn of(samples: &[Sample], phases: &[&str]) -> Vec<f64> {
    samples.iter().filter(|s| phases.contains(&s.phase)).map(|s| s.ms).collect()
}

/// The knee: the lowest level past which one more step of load adds less
/// than 10 % throughput.
fn knee(ramp: &[RampLevel]) -> Option<usize> {
    ramp.windows(2).find(|w| w[1].l2_steps_per_s < 1.1 * w[0].l2_steps_per_s).map(|w| w[0].concurrency)
}

async fn run_point(
    st: &Settings,
    validators: usize,
    profile: Profile,
    ip: Ipv4Addr,
    cometbft: &Path,
    tandem_bin: &Path,
    pb: &ProgressBar,
) -> (Row, Vec<Sample>) {
    let started = Instant::now();
    let mut row = Row {
        validators,
        profile: profile.to_string(),
        timeouts: tandem_devnet::timeouts(profile, validators).into_iter().collect(),
        l2_step_ms: Pcts::default(),
        l2_step_by_kind_ms: BTreeMap::new(),
        commit_ack_ms: Pcts::default(),
        session_finality_ms: Pcts::default(),
        l1_direct_step_ms: Pcts::default(),
        l1_direct_by_kind_ms: BTreeMap::new(),
        workflow_ms: Pcts::default(),
        ratio_l1_over_l2_p50: f64::NAN,
        l2_steps_per_s_max: f64::NAN,
        l1_steps_per_s_max: f64::NAN,
        knee_concurrency: None,
        ramp: Vec::new(),
        resources: Vec::new(),
        finality_by_poll: 0,
        wall_s: 0.0,
        errors: Vec::new(),
    };
    let mut samples = Vec::new();
    if let Err(e) = measure_point(st, &mut row, &mut samples, ip, cometbft, tandem_bin, pb).await {
        row.errors.push(format!("{e:#}"));
    }
    row.l2_step_ms = pcts(&of(&samples, &["l2", "l2_extra"]));
    row.l2_step_by_kind_ms = by_kind(&samples, &["l2"]);
    row.commit_ack_ms = pcts(&of(&samples, &["commit_ack"]));
    row.session_finality_ms = pcts(&of(&samples, &["finality"]));
    row.l1_direct_step_ms = pcts(&of(&samples, &["l1_direct"]));
    row.l1_direct_by_kind_ms = by_kind(&samples, &["l1_direct"]);
    row.workflow_ms = pcts(&of(&samples, &["workflow"]));
    row.ratio_l1_over_l2_p50 = row.l1_direct_step_ms.p50 / row.l2_step_ms.p50;
    row.l2_steps_per_s_max = row.ramp.iter().map(|r| r.l2_steps_per_s).fold(f64::NAN, f64::max);
    row.l1_steps_per_s_max = row.ramp.iter().map(|r| r.l1_steps_per_s).fold(f64::NAN, f64::max);
    row.knee_concurrency = knee(&row.ramp);
    row.wall_s = started.elapsed().as_secs_f64();
    (row, samples)
}

fn proc_samples(devnet: &Devnet) -> Vec<(String, Option<usize>, u32, Option<ProcSample>)> {
    let mut v = vec![("gateway+clients".to_string(), None, std::process::id(), sys::sample("self"))];
    for p in devnet.pids() {
        let kind = match p.kind {
            ProcKind::App => "app",
            ProcKind::Cometbft => "cometbft",
        };
        v.push((kind.to_string(), Some(p.node), p.pid, sys::sample(&p.pid.to_string())));
    }
    v
}

async fn measure_point(
    st: &Settings,
    row: &mut Row,
    samples: &mut Vec<Sample>,
    ip: Ipv4Addr,
    cometbft: &Path,
    tandem_bin: &Path,
    pb: &ProgressBar,
) -> anyhow::Result<()> {
    let label = format!("{} validators, {}", row.validators, row.profile);
    pb.set_message(format!("{label}: starting the devnet"));
    let tmp = tempfile::Builder::new().prefix("tandem-bench-").tempdir()?;
    let profile = if row.profile == "tuned" { Profile::Tuned } else { Profile::Default };
    let spec = DevnetSpec {
        validators: row.validators,
        dir: tmp.path().join("net"),
        profile,
        base_ip: ip,
        chain_id: format!("tandem-bench-{}-{}", row.validators, row.profile),
    };
    let layout = generate(&spec, cometbft)?;
    let devnet = Devnet::start(&layout, cometbft, tandem_bin)?;
    devnet.wait_for_height(2, Duration::from_secs(180)).await?;
    pb.inc(1);

    let mut key_of = BTreeMap::new();
    for k in tandem_devnet::load_keys(&layout.keys_dir)? {
        key_of.insert(k.name.clone(), secret(&k.secret_key)?);
    }
    let key = |n: &str| key_of.get(n).cloned().with_context(|| format!("no demo key {n}"));
    let keys =
        Keys { suppliers: [key("supplier-1")?, key("supplier-2")?], operator: key("operator-1")?, courier: key("courier-1")?.public() };

    // The gateway, in this process, on a free port of this point's range.
    let mut config = tandem_gateway::service::GatewayConfig::new(tmp.path().join("gateway"), key("gateway-1")?);
    // The request-rate limit protects a public gateway; here it would only
    // cap the ramp, so it is lifted (the backlog limit stays as configured).
    config.rate_per_s = 10_000_000;
    config.rate_burst = 10_000_000;
    let l1 = Arc::new(tandem_rpc::CometRpc::new(layout.rpc_urls())?);
    let gw = tandem_gateway::service::Gateway::start(config, l1).await?;
    let o = ip.octets();
    let listener = tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::new(o[0], o[1], o[2], 250), 0))).await?;
    let addr = listener.local_addr()?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let router = tandem_gateway::api::router(gw.shared.clone());
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(async {
                let _ = stop_rx.await;
            })
            .await;
    });
    let base = format!("http://{addr}");
    let client = tandem_client::Client::connect(&base).await?;
    let (fin, fin_task) = FinalityWatch::start(&base);
    let shared = gw.shared.clone();
    let pending: PendingFn = Arc::new(move || shared.ledger().ledger.pending_steps());
    let pkgs = Arc::new(Packages::new());

    let result = async {
        pb.set_message(format!("{label}: warm-up"));
        let mut scratch = Vec::new();
        for i in 0..st.warmup_iterations {
            workload::l2_workflow(&client, &keys, &fin, &pkgs, i, &mut scratch).await?;
            pb.inc(1);
        }
        workload::l2_extra_steps(&client, &keys, &pkgs, 50, &mut scratch).await?;
        pb.inc(1);

        let before = proc_samples(&devnet);
        let measured = Instant::now();
        for i in 0..st.iterations {
            pb.set_message(format!("{label}: L2 workflow {}/{}", i + 1, st.iterations));
            workload::l2_workflow(&client, &keys, &fin, &pkgs, i, samples).await?;
            pb.inc(1);
        }
        pb.set_message(format!("{label}: {} sequential L2 steps", st.l2_extra_steps));
        workload::l2_extra_steps(&client, &keys, &pkgs, st.l2_extra_steps, samples).await?;
        pb.inc(1);

        pb.set_message(format!("{label}: direct L1 path"));
        let mut tasks = Vec::new();
        for p in 0..st.l1_parallel.min(st.l1_iterations) {
            let (client, keys, pkgs, pb) = (client.clone(), keys.clone(), pkgs.clone(), pb.clone());
            let its: Vec<usize> = (0..st.l1_iterations).filter(|i| i % st.l1_parallel == p).collect();
            tasks.push(tokio::spawn(async move {
                let mut out = Vec::new();
                for i in its {
                    workload::l1_direct_workflow(&client, &keys, &pkgs, i, &mut out).await?;
                    pb.inc(1);
                }
                anyhow::Ok(out)
            }));
        }
        for t in tasks {
            samples.extend(t.await??);
        }

        for c in &st.ramp_levels {
            pb.set_message(format!("{label}: ramp, {c} concurrent clients"));
            let level = workload::ramp_level(&client, &keys, &pkgs, *c, Duration::from_secs_f64(st.ramp_secs), &pending).await?;
            row.ramp.push(level);
            pb.inc(1);
        }

        let wall = measured.elapsed().as_secs_f64();
        let after = proc_samples(&devnet);
        for (a, b) in after.iter().zip(before.iter()) {
            if let (Some(x), Some(y)) = (a.3, b.3) {
                let cpu = x.cpu_s - y.cpu_s;
                row.resources.push(ProcUse {
                    kind: a.0.clone(),
                    node: a.1,
                    pid: a.2,
                    cpu_s: cpu,
                    cpu_cores: cpu / wall,
                    peak_rss_mb: x.peak_rss_mb,
                });
            }
        }
        anyhow::Ok(())
    }
    .await;
    row.finality_by_poll = fin.by_poll.load(std::sync::atomic::Ordering::Relaxed);

    pb.set_message(format!("{label}: stopping"));
    let _ = stop_tx.send(());
    fin_task.abort();
    server.abort();
    drop(gw);
    devnet.stop()?;
    drop(devnet);
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    #[test]
    fn defaults_and_quick_mode() {
        let c = Cli::try_parse_from(["bench"]).expect("parse");
        let s = Settings::from_args(&c.bench);
        assert_eq!(s.validators, vec![4, 7, 10, 13, 16]);
        assert_eq!(s.profiles, vec!["tuned", "default"]);
        assert_eq!(s.ramp_levels, vec![1, 4, 16, 64]);
        assert_eq!(c.bench.base_ip, Ipv4Addr::new(127, 0, 40, 1));
        let c = Cli::try_parse_from(["bench", "--quick", "--iterations", "1", "--concurrency", "10"]).expect("parse");
        let s = Settings::from_args(&c.bench);
        assert_eq!((s.validators.clone(), s.iterations), (vec![4], 1));
        assert_eq!(s.ramp_levels, vec![1, 4, 10]);
    }

    #[test]
    fn points_shift_their_range_while_it_fits() {
        let b = Ipv4Addr::new(127, 0, 40, 1);
        assert_eq!(point_ip(b, 0, 4), b);
        assert_eq!(point_ip(b, 2, 16), Ipv4Addr::new(127, 0, 40, 35));
        assert_eq!(point_ip(b, 20, 16), b);
    }
}
