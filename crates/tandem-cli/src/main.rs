//! The `tandem` binary: parses the command line and hands each subcommand to
//! the module or crate that owns it.
//!
//! - `tandem node`: one validator's L1 application (ABCI server for CometBFT).
//! - `tandem devnet up|down`: a local multi-validator network.
//! - `tandem gateway`: the L2 gateway in front of a network.
//! - `tandem up [--demo]`: a 4-validator network and a gateway in one command,
//!   optionally driving a demo workload ([`demo`]).
//! - `tandem bench`: the benchmark (crate `tandem-bench`).
//! - `tandem chaos <scenario>`: fault scenarios (crate `tandem-chaos`).
//! - `tandem keys|package|session|status`: client commands against a gateway
//!   ([`commands`]), with settings from flags, env and a config file
//!   ([`settings`]), and failures mapped to exit codes ([`fail`]).
//!
//! Adding a subcommand: a variant in [`Command`] with its args struct, and one
//! arm in [`run`].

mod commands;
mod demo;
mod fail;
mod serve;
mod settings;

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::fail::Failure;

/// Tandem: a Byzantine-fault-tolerant service that answers in a millisecond
/// and finalizes on CometBFT.
#[derive(Parser)]
#[command(name = "tandem", version, about, long_about = None)]
struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "TANDEM_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(flatten)]
    global: settings::GlobalArgs,
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
    Node(serve::NodeArgs),
    /// Start or stop a local multi-validator network.
    #[command(subcommand)]
    Devnet(DevnetCommand),
    /// Run the L2 gateway: instant, durable steps, finalized on L1.
    ///
    /// Example: tandem gateway --l1 http://127.0.0.1:26657 --l1 http://127.0.0.2:26657 --key .devnet/keys/gateway-1.json
    Gateway(serve::GatewayArgs),
    /// Start a local 4-validator network (tuned profile) and a gateway at http://127.0.0.1:8080; Ctrl-C stops all.
    ///
    /// With --demo it also drives a workload of suppliers, operators, an
    /// inspector and couriers through the gateway and prints a summary on exit.
    ///
    /// Example: tandem up --demo --rate slow --duration 60
    Up(serve::UpArgs),
    /// Create or inspect key files.
    #[command(subcommand)]
    Keys(commands::keys::KeysCommand),
    /// Register packages and look at them.
    #[command(subcommand)]
    Package(commands::package::PackageCommand),
    /// Open sessions, send signed steps, commit them.
    #[command(subcommand)]
    Session(commands::session::SessionCommand),
    /// The gateway's view: L1 height, validators, sessions, backlog.
    ///
    /// Example: tandem status --gateway http://127.0.0.1:8080
    Status,
    /// Measure L2 and L1 latency and throughput on devnets it starts itself,
    /// and write results, samples, a summary and charts.
    ///
    /// Example: tandem bench --quick --out /tmp/bench
    Bench(tandem_bench::BenchArgs),
    /// Run a fault scenario on this machine, print its figures and write
    /// them to docs/reliability/<scenario>.json; exits 1 if the promise did
    /// not hold.
    ///
    /// Example: tandem chaos gateway-kill --kills 100 --seed 7
    #[command(subcommand)]
    Chaos(tandem_chaos::Scenario),
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

impl Command {
    /// Client commands log quietly by default: their output is the answer.
    fn is_client(&self) -> bool {
        matches!(self, Command::Keys(_) | Command::Package(_) | Command::Session(_) | Command::Status)
    }
}

fn init_tracing(format: LogFormat, default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TANDEM_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn run(cli: Cli) -> Result<(), Failure> {
    let g = cli.global;
    match cli.command {
        Command::Node(args) => serve::run_node(args).await.map_err(Failure::local),
        Command::Devnet(DevnetCommand::Up(args)) => {
            let me = std::env::current_exe().map_err(|e| Failure::local(e.into()))?;
            tandem_devnet::cli::run_up(args, &me).await.map_err(Failure::local)
        }
        Command::Devnet(DevnetCommand::Down(args)) => tandem_devnet::cli::run_down(args).map_err(Failure::local),
        Command::Gateway(args) => serve::run_gateway(args).await.map_err(Failure::local),
        Command::Up(args) => serve::run_up(args, g.json).await,
        Command::Keys(c) => commands::keys::run(c, &g),
        Command::Package(c) => commands::package::run(c, &g).await,
        Command::Session(c) => commands::session::run(c, &g).await,
        Command::Status => commands::status::run(&g).await,
        Command::Bench(args) => {
            let me = std::env::current_exe().map_err(|e| Failure::local(e.into()))?;
            tandem_bench::run(args, &me).await.map_err(Failure::local)
        }
        Command::Chaos(scenario) => {
            let me = std::env::current_exe().map_err(|e| Failure::local(e.into()))?;
            let figures = tandem_chaos::run(scenario, &me).await.map_err(Failure::local)?;
            if figures["holds"] == true {
                Ok(())
            } else {
                Err(Failure::local(anyhow::anyhow!("the scenario's promise did not hold: {figures}")))
            }
        }
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return fail::clap_error(e),
    };
    init_tracing(cli.log_format, if cli.command.is_client() { "warn" } else { "info" });
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => return Failure::local(e.into()).report(),
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => f.report(),
    }
}
