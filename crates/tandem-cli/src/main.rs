//! The `tandem` binary: parses the command line and hands each subcommand to
//! the crate that owns it. No logic of its own beyond wiring.
//!
//! - `tandem node`: one validator's L1 application (ABCI server for CometBFT).
//! - `tandem devnet up|down`: a local multi-validator network.
//! - `tandem gateway`: the L2 gateway in front of a network.
//! - `tandem up`: a 4-validator network and a gateway, in one command.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};

/// Tandem: a Byzantine-fault-tolerant service that answers in a millisecond
/// and finalizes on CometBFT.
#[derive(Parser)]
#[command(name = "tandem", version, about, long_about = None)]
struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "TANDEM_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run one validator's L1 application: an ABCI server for its CometBFT node.
    ///
    /// Example: tandem node --home .devnet/node0/app --abci tcp://127.0.0.1:26658
    Node(NodeArgs),
    /// Start or stop a local multi-validator network.
    #[command(subcommand)]
    Devnet(DevnetCommand),
    /// Run the L2 gateway: instant, durable steps, finalized on L1.
    ///
    /// Example: tandem gateway --l1 http://127.0.0.1:26657 --l1 http://127.0.0.2:26657 --key .devnet/keys/gateway-1.json
    Gateway(GatewayArgs),
    /// Start a local 4-validator network (tuned profile) and a gateway at http://127.0.0.1:8080; Ctrl-C stops all.
    ///
    /// Example: tandem up
    Up(UpArgs),
}

#[derive(clap::Args)]
struct GatewayArgs {
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
    /// Commit a session by itself after this many steps.
    #[arg(long, default_value_t = 64)]
    auto_commit_steps: usize,
    /// Commit a session by itself after this many idle milliseconds.
    #[arg(long, default_value_t = 5000)]
    auto_commit_idle_ms: u64,
    /// Steps accepted but not yet final that the gateway holds before it
    /// answers 503 backlog_full.
    #[arg(long, default_value_t = 50_000)]
    backlog_max: usize,
}

#[derive(clap::Args)]
struct UpArgs {
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
    /// Regenerate the network (wipes its chain data).
    #[arg(long)]
    fresh: bool,
}

#[derive(clap::Args)]
struct NodeArgs {
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

#[derive(Subcommand)]
enum DevnetCommand {
    /// Generate (if needed) and start N validators on loopback; Ctrl-C stops them.
    ///
    /// Example: tandem devnet up --validators 4 --dir .devnet --profile tuned
    Up(tandem_devnet::cli::UpArgs),
    /// Stop a network started with `devnet up --detach`.
    ///
    /// Example: tandem devnet down --dir .devnet
    Down(tandem_devnet::cli::DownArgs),
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TANDEM_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn run_node(args: NodeArgs) -> anyhow::Result<()> {
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
    let text = std::fs::read_to_string(path).with_context(|| format!("reading key file {}", path.display()))?;
    let doc: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let hex_seed = doc["secret_key"].as_str().with_context(|| format!("{} has no secret_key", path.display()))?;
    let mut seed = [0u8; 32];
    hex::decode_to_slice(hex_seed, &mut seed).with_context(|| format!("{}: secret_key is not 64 hex digits", path.display()))?;
    let key = tandem_core::SecretKey::from_seed(seed);
    if let Some(public) = doc["public_key"].as_str() {
        anyhow::ensure!(public == key.public().to_hex(), "{}: public_key does not match secret_key", path.display());
    }
    Ok(key)
}

async fn serve_gateway(
    urls: Vec<String>,
    data: PathBuf,
    key: tandem_core::SecretKey,
    listen: &str,
    ledger: tandem_gateway::ledger::LedgerConfig,
) -> anyhow::Result<()> {
    let l1 = std::sync::Arc::new(tandem_rpc::CometRpc::new(urls)?);
    let mut config = tandem_gateway::service::GatewayConfig::new(data, key);
    config.ledger = ledger;
    let gateway = tandem_gateway::service::Gateway::start(config, l1).await?;
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("binding {listen}"))?;
    println!("gateway {} serving on http://{listen} (chain {})", gateway.shared.config.key.public(), gateway.shared.chain_id);
    axum::serve(listener, tandem_gateway::api::router(gateway.shared.clone()))
        .with_graceful_shutdown(async {
            let _ = tandem_devnet::shutdown_signal().await;
        })
        .await?;
    Ok(())
}

async fn run_up(args: UpArgs) -> anyhow::Result<()> {
    let me = std::env::current_exe().context("locating the tandem binary")?;
    let devnet_args = tandem_devnet::UpArgs {
        validators: args.validators,
        dir: args.dir.clone(),
        profile: args.profile,
        base_ip: std::net::Ipv4Addr::new(127, 0, 0, 1),
        chain_id: "tandem-devnet".into(),
        fresh: args.fresh,
        detach: false,
    };
    let (layout, devnet) = tandem_devnet::bring_up(&devnet_args, &me).await?;
    let key = load_key(&layout.key_path("gateway-1"))?;
    println!("gateway: http://{} (dashboard /, API /v1, OpenAPI /openapi.json, metrics /metrics)", args.listen);
    println!("demo keys: {}", layout.keys_dir.display());
    println!("press Ctrl-C to stop everything");
    let result = serve_gateway(
        layout.rpc_urls(),
        layout.dir.join("gateway"),
        key,
        &args.listen,
        tandem_gateway::ledger::LedgerConfig::default(),
    )
    .await;
    println!("stopping the devnet ...");
    devnet.stop()?;
    result
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    match cli.command {
        Command::Node(args) => run_node(args).await,
        Command::Devnet(DevnetCommand::Up(args)) => {
            let me = std::env::current_exe().context("locating the tandem binary")?;
            tandem_devnet::cli::run_up(args, &me).await
        }
        Command::Devnet(DevnetCommand::Down(args)) => tandem_devnet::cli::run_down(args),
        Command::Gateway(args) => {
            let key = load_key(&args.key)?;
            let ledger = tandem_gateway::ledger::LedgerConfig {
                auto_commit_steps: args.auto_commit_steps,
                auto_commit_idle_ms: args.auto_commit_idle_ms,
                pending_steps_max: args.backlog_max,
                ..Default::default()
            };
            serve_gateway(args.l1, args.data, key, &args.listen, ledger).await
        }
        Command::Up(args) => run_up(args).await,
    }
}
