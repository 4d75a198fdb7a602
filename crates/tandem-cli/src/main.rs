//! The `tandem` binary: parses the command line and hands each subcommand to
//! the crate that owns it. No logic of its own beyond wiring.
//!
//! - `tandem node`: one validator's L1 application (ABCI server for CometBFT).
//! - `tandem devnet up|down`: a local multi-validator network.

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
    }
}
