//! Development entry point for the benchmark until `tandem bench` is wired
//! into the `tandem` binary: runs [`tandem_bench::run`] with the `tandem`
//! binary built next to this one (build it with
//! `cargo build --release -p tandem-cli`), or `$TANDEM_BIN`.

use anyhow::Context as _;
use clap::Parser;

/// Runs the Tandem benchmark (see `tandem_bench::BenchArgs`).
#[derive(Parser)]
#[command(name = "tandem-bench")]
struct Cli {
    #[command(flatten)]
    bench: tandem_bench::BenchArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Warnings only: the progress bar owns the terminal.
    let filter = tracing_subscriber::EnvFilter::try_from_env("TANDEM_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let tandem = match std::env::var_os("TANDEM_BIN") {
        Some(p) => std::path::PathBuf::from(p),
        None => std::env::current_exe().context("locating this binary")?.parent().context("this binary has no folder")?.join("tandem"),
    };
    anyhow::ensure!(
        tandem.exists(),
        "{} not found: build it with `cargo build --release -p tandem-cli` (or set TANDEM_BIN)",
        tandem.display()
    );
    tandem_bench::run(cli.bench, &tandem).await
}
