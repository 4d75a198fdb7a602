//! `tandem chaos <scenario>`: the fault scenarios of the reliability suite
//! that run as commands on one Linux machine. Each is bounded in time, stops
//! every process it started (also when it fails), prints its figures last,
//! and writes them as plain numbers to `<out>/<scenario>.json`.
//!
//! - `gateway-kill`: SIGKILL the gateway at random instants under concurrent
//!   load on a real 4-validator devnet; every acknowledged step must end up
//!   final on L1 exactly once ([`gateway_kill`]).
//! - `torn-wal`: cut the gateway's write-ahead log at random offsets and flip
//!   random bytes; recovery must keep every record before the damage and
//!   never hand back a damaged one ([`torn_wal`]).

pub mod gateway_kill;
pub mod torn_wal;

use std::path::{Path, PathBuf};

/// The scenarios.
#[derive(clap::Subcommand, Debug)]
pub enum Scenario {
    /// SIGKILL the gateway at random instants under load; count acknowledged steps lost or finalized twice.
    ///
    /// Example: tandem chaos gateway-kill --kills 100 --seed 7
    GatewayKill(gateway_kill::Args),
    /// Truncate the WAL at random offsets and flip random bytes; check what recovery keeps.
    ///
    /// Example: tandem chaos torn-wal --cases 200 --seed 7
    TornWal(torn_wal::Args),
}

/// Run a scenario; `tandem_bin` is the `tandem` executable (validators' apps
/// and the gateway run as its subcommands).
pub async fn run(scenario: Scenario, tandem_bin: &Path) -> anyhow::Result<serde_json::Value> {
    match scenario {
        Scenario::GatewayKill(a) => gateway_kill::run(a, tandem_bin).await,
        Scenario::TornWal(a) => torn_wal::run(a).await,
    }
}

/// A seed from the arguments, or a fresh one (printed, so the run can be
/// repeated).
pub fn seed_or_random(seed: Option<u64>) -> u64 {
    seed.unwrap_or_else(rand::random)
}

/// Write `figures` to `<out>/<name>.json` (creating `out`).
pub fn write_figures(out: &Path, name: &str, figures: &serde_json::Value) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(out)?;
    let path = out.join(format!("{name}.json"));
    let mut bytes = serde_json::to_vec_pretty(figures)?;
    bytes.push(b'\n');
    std::fs::write(&path, bytes)?;
    Ok(path)
}
