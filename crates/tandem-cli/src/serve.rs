//! The long-running commands: `tandem node` (a validator's ABCI app),
//! `tandem gateway` (the L2 gateway over HTTP) and `tandem up` (a devnet and
//! a gateway in one process, optionally with the demo workload).

use std::future::Future;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use anyhow::Context as _;

use crate::demo::{self, Rate};
use crate::fail::Failure;

#[derive(clap::Args)]
pub struct NodeArgs {
    /// Folder for the application's database (created if missing).
    #[arg(long)]
    home: PathBuf,
    /// Address to serve ABCI on: tcp://HOST:PORT or unix:///PATH.
    #[arg(long, default_value = "tcp://127.0.0.1:26658")]
    abci: String,
    /// Fault injection for tests: abort at `before-commit:<height>` or
    /// `after-commit:<height>`.
    #[arg(long, env = "TANDEM_CRASH_AT", hide = true)]
    crash_at: Option<String>,
}

#[derive(clap::Args)]
pub struct GatewayArgs {
    /// CometBFT RPC URL of a validator (repeat for failover).
    #[arg(long = "l1", required = true, env = "TANDEM_L1")]
    l1: Vec<String>,
    /// Address to serve HTTP on.
    #[arg(long, default_value = "127.0.0.1:8080", env = "TANDEM_LISTEN")]
    listen: String,
    /// Folder for the WAL and the replica of L1.
    #[arg(long, default_value = ".tandem-gateway", env = "TANDEM_DATA")]
    data: PathBuf,
    /// The gateway's key file (JSON with `secret_key` as 64 hex digits).
    #[arg(long, env = "TANDEM_GATEWAY_KEY")]
    key: PathBuf,
    /// Checkpoint an open session (send its steps to L1 without closing it)
    /// after this many unsent steps.
    #[arg(long, default_value_t = 64)]
    auto_commit_steps: usize,
    /// Checkpoint an open session after this many idle milliseconds.
    #[arg(long, default_value_t = 5000)]
    auto_commit_idle_ms: u64,
    /// An open session this many milliseconds without a step expires: an
    /// empty one is dropped, one with steps is finalized without a close and
    /// takes no more steps.
    #[arg(long, default_value_t = 600_000)]
    session_idle_expire_ms: u64,
    /// Open sessions one owner may hold at once (past it, 429
    /// too_many_owner_sessions).
    #[arg(long, default_value_t = 64)]
    owner_sessions_max: usize,
    /// Live sessions over all owners (past it, 503 too_many_sessions).
    #[arg(long, default_value_t = 10_000)]
    sessions_max: usize,
    /// Steps accepted but not yet final that the gateway holds before it
    /// answers 503 backlog_full.
    #[arg(long, default_value_t = 50_000)]
    backlog_max: usize,
}

#[derive(clap::Args)]
pub struct UpArgs {
    /// Folder of the network and the gateway's data.
    #[arg(long, default_value = ".devnet")]
    dir: PathBuf,
    /// Number of validators.
    #[arg(long, default_value_t = 4)]
    validators: usize,
    /// CometBFT timeouts: `tuned` for one host, `default` for CometBFT's own.
    #[arg(long, value_enum, default_value_t = tandem_devnet::Profile::Tuned)]
    profile: tandem_devnet::Profile,
    /// Address the gateway serves HTTP on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
    /// First validator's loopback address; validator i gets base + i.
    #[arg(long, default_value = "127.0.0.1")]
    base_ip: Ipv4Addr,
    /// Regenerate the network (wipes its chain data).
    #[arg(long)]
    fresh: bool,
    /// Also drive a demo workload through the gateway and print a summary on exit.
    #[arg(long)]
    demo: bool,
    /// Demo pace: `slow` (a step every ~300 ms), `max`, or steps per second.
    #[arg(long, default_value = "slow", requires = "demo")]
    rate: Rate,
    /// Stop the demo (and everything) after this many seconds [default: until Ctrl-C].
    #[arg(long, value_name = "SECONDS", requires = "demo")]
    duration: Option<f64>,
}

pub async fn run_node(args: NodeArgs) -> anyhow::Result<()> {
    let crash = match args.crash_at.as_deref() {
        None | Some("") => None,
        Some(s) => Some(tandem_l1::CrashPoint::parse(s).with_context(|| format!("bad crash point {s:?}"))?),
    };
    std::fs::create_dir_all(&args.home).with_context(|| format!("creating {}", args.home.display()))?;
    let db = args.home.join("state.redb");
    let storage = tandem_state::Storage::open(&db).with_context(|| format!("opening {}", db.display()))?;
    tracing::info!(height = storage.height(), abci = %args.abci, db = %db.display(), "L1 application starting");
    let app = tandem_l1::App::new(storage, crash);
    tandem_l1::serve(app, &args.abci).await
}

/// Read a key file written by `devnet up` (or `keys new`).
fn load_key(path: &std::path::Path) -> anyhow::Result<tandem_core::SecretKey> {
    let file = tandem_client::KeyFile::load(path)?;
    file.secret().map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

pub async fn run_gateway(args: GatewayArgs) -> anyhow::Result<()> {
    let key = load_key(&args.key)?;
    let ledger = tandem_gateway::ledger::LedgerConfig {
        auto_commit_steps: args.auto_commit_steps,
        auto_commit_idle_ms: args.auto_commit_idle_ms,
        session_idle_expire_ms: args.session_idle_expire_ms,
        owner_sessions_max: args.owner_sessions_max,
        sessions_max: args.sessions_max,
        pending_steps_max: args.backlog_max,
        ..Default::default()
    };
    let shutdown = async {
        let _ = tandem_devnet::shutdown_signal().await;
    };
    serve_gateway(args.l1, args.data, key, &args.listen, ledger, None, shutdown).await
}

/// Serve a gateway until `shutdown` completes.
async fn serve_gateway(
    urls: Vec<String>,
    data: PathBuf,
    key: tandem_core::SecretKey,
    listen: &str,
    ledger: tandem_gateway::ledger::LedgerConfig,
    demo_keys: Option<PathBuf>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let l1 = std::sync::Arc::new(tandem_rpc::CometRpc::new(urls)?);
    let mut config = tandem_gateway::service::GatewayConfig::new(data, key);
    config.ledger = ledger;
    config.demo_keys = demo_keys;
    let gateway = tandem_gateway::service::Gateway::start(config, l1).await?;
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("binding {listen}"))?;
    println!("gateway {} serving on http://{listen} (chain {})", gateway.shared.config.key.public(), gateway.shared.chain_id);
    // The peer's address keys the rate limit of unsigned requests.
    let app = tandem_gateway::api::router(gateway.shared.clone()).into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await?;
    Ok(())
}

/// The URL a local client uses for a listen address (`0.0.0.0` → loopback).
fn local_url(listen: &str) -> String {
    let (host, port) = listen.rsplit_once(':').unwrap_or((listen, "8080"));
    let host = if host == "0.0.0.0" || host == "[::]" { "127.0.0.1" } else { host };
    format!("http://{host}:{port}")
}

pub async fn run_up(args: UpArgs, json: bool) -> Result<(), Failure> {
    let me = std::env::current_exe().context("locating the tandem binary").map_err(Failure::local)?;
    let devnet_args = tandem_devnet::UpArgs {
        validators: args.validators,
        dir: args.dir.clone(),
        profile: args.profile,
        base_ip: args.base_ip,
        chain_id: "tandem-devnet".into(),
        fresh: args.fresh,
        detach: false,
    };
    let (layout, devnet) = tandem_devnet::bring_up(&devnet_args, &me).await.map_err(Failure::local)?;
    // From here on the devnet is stopped on every path (also when dropped).
    let result = up_with_devnet(&args, &layout, json).await;
    println!("stopping the devnet ...");
    if let Err(e) = devnet.stop() {
        eprintln!("stopping the devnet: {e:#}");
    }
    std::fs::remove_file(layout.dir.join(tandem_devnet::cli::PIDS_FILE)).ok();
    println!("stopped");
    result
}

async fn up_with_devnet(args: &UpArgs, layout: &tandem_devnet::Layout, json: bool) -> Result<(), Failure> {
    let key = load_key(&layout.key_path("gateway-1")).map_err(Failure::local)?;
    println!("gateway: http://{} (dashboard /, API /v1, OpenAPI /openapi.json, metrics /metrics)", args.listen);
    println!("demo keys: {}", layout.keys_dir.display());
    println!("press Ctrl-C to stop everything");

    let (stop_server, server_stopped) = tokio::sync::oneshot::channel::<()>();
    let mut server = tokio::spawn({
        let (urls, data, listen) = (layout.rpc_urls(), layout.dir.join("gateway"), args.listen.clone());
        // A local devnet's demo keys are offered to the dashboard's console.
        let demo_keys = Some(layout.keys_dir.clone());
        async move {
            let shutdown = async {
                let _ = server_stopped.await;
            };
            serve_gateway(urls, data, key, &listen, tandem_gateway::ledger::LedgerConfig::default(), demo_keys, shutdown).await
        }
    });

    // The gateway may fail (port taken): then its error ends everything.
    let mut server_result = None;
    let outcome = if args.demo {
        let stop = demo::StopSignal::new();
        let signals = tokio::spawn(demo::forward_signals(stop.clone()));
        if let Some(secs) = args.duration {
            let stop = stop.clone();
            tokio::spawn(async move {
                tokio::time::sleep(std::time::Duration::from_secs_f64(secs.max(0.0))).await;
                stop.stop("duration reached");
            });
        }
        let opts = demo::Options { url: local_url(&args.listen), keys_dir: layout.keys_dir.clone(), rate: args.rate, json };
        let r = tokio::select! {
            r = demo::run(opts, stop.clone()) => r,
            r = &mut server => { server_result = Some(r); Ok(()) }
        };
        signals.abort();
        r
    } else {
        tokio::select! {
            _ = tandem_devnet::shutdown_signal() => {}
            r = &mut server => server_result = Some(r),
        }
        Ok(())
    };
    let _ = stop_server.send(());
    let server_result = match server_result {
        Some(r) => r,
        None => match tokio::time::timeout(std::time::Duration::from_secs(10), server).await {
            Ok(r) => r,
            Err(_) => {
                eprintln!("the gateway did not stop within 10 s");
                Ok(Ok(()))
            }
        },
    };
    match server_result {
        Ok(Ok(())) => outcome,
        Ok(Err(e)) => Err(Failure::local(e.context("the gateway failed"))),
        Err(e) => Err(Failure::local(anyhow::anyhow!("the gateway task failed: {e}"))),
    }
}
