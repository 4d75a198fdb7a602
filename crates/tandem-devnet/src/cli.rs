//! Glue for the `tandem up` / `tandem down` subcommands; the `tandem` binary (another crate)
//! embeds these argument structs and calls [`run_up`] / [`run_down`].

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};

use crate::devnet::{pid_alive, pid_matches, terminate_pids, ProcInfo, STOP_GRACE};
use crate::layout::LAYOUT_FILE;
use crate::{default_tools_dir, ensure_cometbft, generate, timeouts, Devnet, DevnetSpec, Layout};
use crate::{Profile, DEMO_IDENTITIES};

/// File (in the devnet dir) listing the pids of a running devnet, for `down`.
pub const PIDS_FILE: &str = "pids.json";

/// How long `up` waits for every node to reach height 2.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(90);

/// `tandem up`: generate (if needed) and run a local devnet.
#[derive(Debug, Clone, clap::Args)]
pub struct UpArgs {
    /// Number of validators.
    #[arg(long, default_value_t = 4)]
    pub validators: usize,
    /// Devnet directory (homes, keys, logs, devnet.json).
    #[arg(long, default_value = ".devnet")]
    pub dir: PathBuf,
    /// Timing profile: `default` (CometBFT's own) or `tuned` (for one host).
    #[arg(long, value_enum, default_value_t = Profile::Default)]
    pub profile: Profile,
    /// Address of node 0; node i gets this plus i.
    #[arg(long, default_value = "127.0.0.1")]
    pub base_ip: Ipv4Addr,
    /// Chain id written into the genesis.
    #[arg(long, default_value = "tandem-devnet")]
    pub chain_id: String,
    /// Wipe the directory and generate a new devnet even if one exists.
    #[arg(long)]
    pub fresh: bool,
    /// Start, write the pids to DIR/pids.json and return, leaving the nodes running
    /// (stop them with `tandem down`).
    #[arg(long)]
    pub detach: bool,
}

/// `tandem down`: stop a detached devnet.
#[derive(Debug, Clone, clap::Args)]
pub struct DownArgs {
    /// Devnet directory.
    #[arg(long, default_value = ".devnet")]
    pub dir: PathBuf,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct PidsFile {
    processes: Vec<ProcInfo>,
}

fn read_pids(dir: &Path) -> anyhow::Result<Option<Vec<ProcInfo>>> {
    let path = dir.join(PIDS_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let f: PidsFile = serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
            Ok(Some(f.processes))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Writes `DIR/pids.json` (what `down` reads).
pub fn write_pids(dir: &Path, processes: Vec<ProcInfo>) -> anyhow::Result<()> {
    let path = dir.join(PIDS_FILE);
    let text = serde_json::to_string_pretty(&PidsFile { processes })?;
    std::fs::write(&path, text + "\n").with_context(|| format!("writing {}", path.display()))
}

/// Removes `dir` if it holds nothing but what a devnet generates; refuses otherwise, so that
/// a mistyped `--dir` can never wipe unrelated files.
fn wipe_devnet_dir(dir: &Path) -> anyhow::Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        let ours = name.starts_with("node") || name == "keys" || name == LAYOUT_FILE || name == PIDS_FILE;
        if !ours {
            bail!("refusing to wipe {}: it contains {name:?}, which a devnet does not create", dir.display());
        }
    }
    std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))
}

/// Generates the devnet if needed, starts it, waits until every node is at
/// height 2 and prints where everything is. The caller owns the running
/// network (dropping it stops every process).
pub async fn bring_up(args: &UpArgs, tandem_bin: &Path) -> anyhow::Result<(Layout, Devnet)> {
    let cometbft = ensure_cometbft(&default_tools_dir())?;

    if let Some(procs) = read_pids(&args.dir)? {
        if procs.iter().any(|p| pid_alive(p.pid) && pid_matches(p.pid, &p.home)) {
            bail!("a devnet from {} is still running; stop it with `tandem devnet down --dir {}`", args.dir.display(), args.dir.display());
        }
    }

    let layout = if args.fresh || !args.dir.join(LAYOUT_FILE).exists() {
        wipe_devnet_dir(&args.dir)?;
        let spec = DevnetSpec {
            validators: args.validators,
            dir: args.dir.clone(),
            profile: args.profile,
            base_ip: args.base_ip,
            chain_id: args.chain_id.clone(),
        };
        println!("generating a {}-validator devnet in {}", spec.validators, spec.dir.display());
        generate(&spec, &cometbft)?
    } else {
        let layout = Layout::load(&args.dir)?;
        let same = layout.nodes.len() == args.validators
            && layout.profile == args.profile
            && layout.base_ip == args.base_ip
            && layout.chain_id == args.chain_id;
        if !same {
            bail!(
                "{} holds a devnet with {} validators, profile {}, base ip {}, chain id {:?}, \
                 which differs from the arguments; pass --fresh to regenerate it (this wipes \
                 its chain data) or matching arguments to resume it",
                args.dir.display(),
                layout.nodes.len(),
                layout.profile,
                layout.base_ip,
                layout.chain_id
            );
        }
        println!("resuming the devnet in {}", layout.dir.display());
        layout
    };

    let devnet = Devnet::start(&layout, &cometbft, tandem_bin)?;
    write_pids(&layout.dir, devnet.pids())?;
    println!("waiting for all {} nodes to reach height 2 ...", layout.nodes.len());
    if let Err(e) = devnet.wait_for_height(2, STARTUP_TIMEOUT).await {
        drop(devnet);
        let _ = std::fs::remove_file(layout.dir.join(PIDS_FILE));
        return Err(e.context("the devnet did not start"));
    }
    print_summary(&layout);
    Ok((layout, devnet))
}

/// Generates the devnet if needed, starts it, waits until every node is at height 2, prints
/// where everything is, then either returns (`--detach`) or runs until Ctrl-C and stops it.
pub async fn run_up(args: UpArgs, tandem_bin: &Path) -> anyhow::Result<()> {
    let (layout, devnet) = bring_up(&args, tandem_bin).await?;

    if args.detach {
        let procs = devnet.detach();
        write_pids(&layout.dir, procs)?;
        println!("detached; stop it with `tandem devnet down --dir {}`", args.dir.display());
        return Ok(());
    }

    println!("running; press Ctrl-C to stop");
    shutdown_signal().await?;
    println!("stopping ...");
    devnet.stop()?;
    std::fs::remove_file(layout.dir.join(PIDS_FILE)).ok();
    println!("stopped");
    Ok(())
}

fn print_summary(layout: &Layout) {
    println!("devnet {:?} is up: {} validators, profile {}", layout.chain_id, layout.nodes.len(), layout.profile);
    for n in &layout.nodes {
        println!("  node{} ({}): rpc {}  abci {}", n.index, n.moniker, n.rpc_url, n.abci_addr);
        println!("      logs: {}  {}", n.cometbft_log.display(), n.app_log.display());
        println!("      app home: {}", n.app_home.display());
    }
    let names: Vec<&str> = DEMO_IDENTITIES.iter().map(|(n, _)| *n).collect();
    println!("  keys: {} ({})", layout.keys_dir.display(), names.join(", "));
    let t: Vec<String> = timeouts(layout.profile, layout.nodes.len()).into_iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!("  timing: {}", t.join(" "));
}

/// Stops the devnet recorded in `DIR/pids.json`: SIGTERM, then SIGKILL after a grace period
/// for any still alive; then removes pids.json.
pub fn run_down(args: DownArgs) -> anyhow::Result<()> {
    let Some(procs) = read_pids(&args.dir)? else {
        println!("no {} in {}; nothing to stop", PIDS_FILE, args.dir.display());
        return Ok(());
    };
    let n = terminate_pids(&procs, STOP_GRACE)?;
    std::fs::remove_file(args.dir.join(PIDS_FILE)).with_context(|| format!("removing {}", args.dir.join(PIDS_FILE).display()))?;
    println!("stopped {n} process(es) of the devnet in {}", args.dir.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wipe_refuses_directories_that_are_not_devnets() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("d");
        std::fs::create_dir_all(dir.join("node0/config")).expect("mkdir");
        std::fs::write(dir.join("important.txt"), "keep me").expect("write");
        assert!(wipe_devnet_dir(&dir).is_err());
        assert!(dir.join("important.txt").exists());

        std::fs::remove_file(dir.join("important.txt")).expect("rm");
        std::fs::write(dir.join(LAYOUT_FILE), "{}").expect("write");
        wipe_devnet_dir(&dir).expect("wipe");
        assert!(!dir.exists());
        wipe_devnet_dir(&dir).expect("missing dir is fine");
    }

    #[test]
    fn down_without_pids_file_is_a_no_op() {
        let tmp = tempfile::tempdir().expect("tempdir");
        run_down(DownArgs { dir: tmp.path().to_owned() }).expect("down");
    }

    #[test]
    fn up_args_defaults() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            up: UpArgs,
        }
        let cli = Cli::try_parse_from(["up"]).expect("parse");
        assert_eq!(cli.up.validators, 4);
        assert_eq!(cli.up.dir, PathBuf::from(".devnet"));
        assert_eq!(cli.up.profile, Profile::Default);
        assert_eq!(cli.up.base_ip, Ipv4Addr::new(127, 0, 0, 1));
        assert_eq!(cli.up.chain_id, "tandem-devnet");
        assert!(!cli.up.detach && !cli.up.fresh);
        let cli = Cli::try_parse_from(["up", "--profile", "tuned", "--base-ip", "127.0.9.1"]).expect("parse");
        assert_eq!(cli.up.profile, Profile::Tuned);
        assert_eq!(cli.up.base_ip, Ipv4Addr::new(127, 0, 9, 1));
    }
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM: a launcher stopped either way
/// must stop the processes it started, since they live in their own process
/// groups and would otherwise outlive it.
pub async fn shutdown_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).context("installing the SIGTERM handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("waiting for Ctrl-C")?,
        _ = term.recv() => {}
    }
    Ok(())
}
