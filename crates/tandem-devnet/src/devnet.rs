//! Running a generated devnet: one CometBFT process and (normally) one L1 app process per
//! node, supervised by index so that tests can kill and restart either side.
//!
//! Processes are signalled by pid only (never by name), so that several devnets, or other
//! people's processes, on the same machine are never touched. Each child runs in a process
//! group of its own: a Ctrl-C in the launcher's terminal then reaches only the launcher, which
//! stops the children in order, and `--detach`ed children survive the terminal.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::Layout;

/// How long a process gets to exit after SIGTERM before it is SIGKILLed.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// What ABCI app the CometBFT nodes talk to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppMode {
    /// The Tandem L1 app: `<tandem_bin> node --home <app home> --abci <addr>` per node.
    Tandem(PathBuf),
    /// CometBFT's in-process `kvstore` example app (`--proxy_app kvstore`): no app process.
    /// For testing the network itself before, or without, the real app.
    BuiltinKvstore,
}

/// Which of a node's two processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProcKind {
    Cometbft,
    App,
}

/// A running process of the devnet, as recorded in `pids.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcInfo {
    pub node: usize,
    pub kind: ProcKind,
    pub pid: u32,
    /// The home directory passed on its command line; `down` checks it is still there
    /// before signalling, so a recycled pid is never killed.
    pub home: PathBuf,
}

#[derive(Default)]
struct NodeProcs {
    cometbft: Option<Child>,
    app: Option<Child>,
    /// Why a process is gone when it exited on its own; used in error messages.
    cometbft_exit: Option<ExitStatus>,
}

/// A running devnet. Dropping it stops every process it started (unless [`Devnet::detach`]ed),
/// so a panicking test still cleans up.
pub struct Devnet {
    layout: Layout,
    cometbft: PathBuf,
    app: AppMode,
    procs: Mutex<Vec<NodeProcs>>,
}

impl Devnet {
    /// Starts every node with the Tandem L1 app: for each node, the app first (CometBFT
    /// re-dials it every 3 s otherwise), then CometBFT.
    pub fn start(layout: &Layout, cometbft: &Path, tandem_bin: &Path) -> anyhow::Result<Devnet> {
        Self::start_with(layout, cometbft, AppMode::Tandem(tandem_bin.to_owned()))
    }

    /// Starts every node with the given app mode. Fails before starting anything if another
    /// process already listens on one of the devnet's addresses (see [`crate::ensure_free`]).
    pub fn start_with(layout: &Layout, cometbft: &Path, app: AppMode) -> anyhow::Result<Devnet> {
        // Only here, at the first start: a node or app restarted after a kill gets its own
        // sockets back (SO_REUSEADDR), and its peers' sockets are theirs.
        crate::ports::ensure_free(&crate::ports::listen_addrs(layout, &app)?)?;
        let devnet = Devnet {
            layout: layout.clone(),
            cometbft: cometbft.to_owned(),
            app,
            procs: Mutex::new((0..layout.nodes.len()).map(|_| NodeProcs::default()).collect()),
        };
        // On an error half way, dropping `devnet` stops what was already started.
        for i in 0..layout.nodes.len() {
            if matches!(devnet.app, AppMode::Tandem(_)) {
                devnet.start_app(i)?;
            }
            devnet.start_node(i)?;
        }
        Ok(devnet)
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.layout.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.layout.nodes.is_empty()
    }

    /// `http://<ip>:26657` of node `i`.
    pub fn rpc_url(&self, i: usize) -> &str {
        &self.layout.nodes[i].rpc_url
    }

    fn procs(&self) -> MutexGuard<'_, Vec<NodeProcs>> {
        // A panic while holding the lock leaves the children valid; keep going so that
        // Drop can still stop them.
        self.procs.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn check_index(&self, i: usize) -> anyhow::Result<()> {
        if i >= self.len() {
            bail!("no node {i}: the devnet has {} nodes", self.len());
        }
        Ok(())
    }

    /// Starts node `i`'s CometBFT process (again).
    pub fn start_node(&self, i: usize) -> anyhow::Result<()> {
        self.check_index(i)?;
        let mut procs = self.procs();
        if running(&mut procs[i].cometbft).is_some() {
            bail!("node {i}: CometBFT is already running");
        }
        let node = &self.layout.nodes[i];
        let mut cmd = Command::new(&self.cometbft);
        cmd.arg("start").arg("--home").arg(&node.home);
        if self.app == AppMode::BuiltinKvstore {
            cmd.arg("--proxy_app").arg("kvstore");
        }
        let threads = go_threads(self.layout.nodes.len());
        let child = spawn_logged(cmd, &node.cometbft_log, &[("GOMAXPROCS", threads.as_str())])
            .with_context(|| format!("starting CometBFT for node {i}"))?;
        tracing::debug!(node = i, pid = child.id(), "started cometbft");
        procs[i].cometbft = Some(child);
        procs[i].cometbft_exit = None;
        Ok(())
    }

    /// SIGKILLs node `i`'s CometBFT process (a crash, not a clean shutdown).
    pub fn kill_node(&self, i: usize) -> anyhow::Result<()> {
        self.check_index(i)?;
        let mut procs = self.procs();
        match procs[i].cometbft.take() {
            Some(mut c) => kill_child(&mut c).with_context(|| format!("killing node {i}")),
            None => bail!("node {i}: CometBFT is not running"),
        }
    }

    /// Whether node `i`'s CometBFT process is alive (reaping it if it exited).
    pub fn is_node_running(&self, i: usize) -> bool {
        let mut procs = self.procs();
        procs.get_mut(i).is_some_and(|p| running(&mut p.cometbft).is_some())
    }

    /// Starts node `i`'s app process (again).
    pub fn start_app(&self, i: usize) -> anyhow::Result<()> {
        self.start_app_with_env(i, &[])
    }

    /// Starts node `i`'s app with extra environment variables, e.g. for fault injection.
    pub fn start_app_with_env(&self, i: usize, env: &[(&str, &str)]) -> anyhow::Result<()> {
        self.check_index(i)?;
        let AppMode::Tandem(bin) = &self.app else {
            bail!("this devnet runs CometBFT's built-in kvstore app; there is no app process");
        };
        let mut procs = self.procs();
        if running(&mut procs[i].app).is_some() {
            bail!("node {i}: the app is already running");
        }
        let node = &self.layout.nodes[i];
        let mut cmd = Command::new(bin);
        cmd.arg("node").arg("--home").arg(&node.app_home).arg("--abci").arg(&node.abci_addr);
        let child = spawn_logged(cmd, &node.app_log, env).with_context(|| format!("starting the app for node {i}"))?;
        tracing::debug!(node = i, pid = child.id(), "started app");
        procs[i].app = Some(child);
        Ok(())
    }

    /// SIGKILLs node `i`'s app process.
    pub fn kill_app(&self, i: usize) -> anyhow::Result<()> {
        self.check_index(i)?;
        let mut procs = self.procs();
        match procs[i].app.take() {
            Some(mut c) => kill_child(&mut c).with_context(|| format!("killing app {i}")),
            None => bail!("node {i}: the app is not running"),
        }
    }

    /// Whether node `i`'s app process is alive (reaping it if it exited).
    pub fn is_app_running(&self, i: usize) -> bool {
        let mut procs = self.procs();
        procs.get_mut(i).is_some_and(|p| running(&mut p.app).is_some())
    }

    /// Every process currently supervised.
    pub fn pids(&self) -> Vec<ProcInfo> {
        let procs = self.procs();
        let mut out = Vec::new();
        for (i, p) in procs.iter().enumerate() {
            let node = &self.layout.nodes[i];
            if let Some(c) = &p.app {
                out.push(ProcInfo { node: i, kind: ProcKind::App, pid: c.id(), home: node.app_home.clone() });
            }
            if let Some(c) = &p.cometbft {
                out.push(ProcInfo { node: i, kind: ProcKind::Cometbft, pid: c.id(), home: node.home.clone() });
            }
        }
        out
    }

    /// Stops every process: SIGTERM to all CometBFT processes, then to all apps (so that no
    /// node is left running without its app), SIGKILL to whatever is still alive after
    /// [`STOP_GRACE`]. Every child is reaped.
    pub fn stop(&self) -> anyhow::Result<()> {
        let mut procs = self.procs();
        let mut children: Vec<Child> = Vec::new();
        for p in procs.iter_mut() {
            children.extend(p.cometbft.take());
        }
        for p in procs.iter_mut() {
            children.extend(p.app.take());
        }
        drop(procs);
        terminate_children(children, STOP_GRACE)
    }

    /// Lets go of the processes without stopping them (for `up --detach`), returning them.
    pub fn detach(self) -> Vec<ProcInfo> {
        let pids = self.pids();
        // Dropping a `Child` neither kills nor waits; once the launcher exits, init reaps them.
        self.procs().clear();
        pids
    }

    /// Latest height of each node (`None` where the RPC does not answer).
    pub async fn heights(&self) -> Vec<Option<u64>> {
        let client = crate::rpc::client();
        let mut out = Vec::with_capacity(self.len());
        for node in &self.layout.nodes {
            out.push(crate::rpc::latest_height(&client, &node.rpc_url).await.ok());
        }
        out
    }

    /// Waits until every node reports a height of at least `h`.
    pub async fn wait_for_height(&self, h: u64, timeout: Duration) -> anyhow::Result<()> {
        let all: Vec<usize> = (0..self.len()).collect();
        self.wait_for_height_on(&all, h, timeout).await
    }

    /// Waits until each of `nodes` reports a height of at least `h`. Fails early, with the
    /// tail of its log, if one of their CometBFT processes exits.
    pub async fn wait_for_height_on(&self, nodes: &[usize], h: u64, timeout: Duration) -> anyhow::Result<()> {
        for &i in nodes {
            self.check_index(i)?;
        }
        let client = crate::rpc::client();
        let deadline = Instant::now() + timeout;
        loop {
            self.check_exits(nodes)?;
            let mut status = Vec::with_capacity(nodes.len());
            let mut done = true;
            for &i in nodes {
                match crate::rpc::latest_height(&client, self.rpc_url(i)).await {
                    Ok(got) => {
                        done &= got >= h;
                        status.push(format!("node{i}: height {got}"));
                    }
                    Err(e) => {
                        done = false;
                        status.push(format!("node{i}: {e:#}"));
                    }
                }
            }
            if done {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let logs: Vec<String> = nodes.iter().map(|&i| self.layout.nodes[i].cometbft_log.display().to_string()).collect();
                bail!("nodes {nodes:?} did not reach height {h} within {timeout:?}: {}; logs: {}", status.join("; "), logs.join(", "));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Errors if a CometBFT process we expect to be running has exited.
    fn check_exits(&self, nodes: &[usize]) -> anyhow::Result<()> {
        let mut procs = self.procs();
        for &i in nodes {
            let p = &mut procs[i];
            if let Some(c) = &mut p.cometbft {
                if let Ok(Some(st)) = c.try_wait() {
                    p.cometbft = None;
                    p.cometbft_exit = Some(st);
                }
            }
            if let Some(st) = p.cometbft_exit {
                let log = &self.layout.nodes[i].cometbft_log;
                bail!("node {i}: CometBFT exited ({st}); last lines of {}:\n{}", log.display(), tail(log, 20));
            }
        }
        Ok(())
    }
}

impl Drop for Devnet {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("stopping the devnet: {e:#}");
        }
    }
}

/// `Some(())` if the slot holds a live child; reaps and clears it if the child exited.
fn running(slot: &mut Option<Child>) -> Option<()> {
    let child = slot.as_mut()?;
    match child.try_wait() {
        Ok(None) => Some(()),
        _ => {
            *slot = None;
            None
        }
    }
}

fn kill_child(child: &mut Child) -> anyhow::Result<()> {
    // `kill` fails only if the child was already reaped, which cannot happen here; an
    // already-exited (zombie) child accepts the signal.
    child.kill()?;
    child.wait()?;
    Ok(())
}

/// Opens `log` for appending, marks the start, and spawns `cmd` with stdout and stderr
/// appended to it, in a process group of its own.
fn spawn_logged(cmd: Command, log: &Path, env: &[(&str, &str)]) -> anyhow::Result<Child> {
    let mut cmd = with_niceness(cmd);
    let mut file: File = OpenOptions::new().create(true).append(true).open(log).with_context(|| format!("opening {}", log.display()))?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    writeln!(file, "\n=== devnet: starting {cmd:?} (unix time {now}) ===")?;
    cmd.envs(env.iter().copied()).stdin(Stdio::null()).stdout(file.try_clone()?).stderr(file).process_group(0);
    cmd.spawn().with_context(|| format!("spawning {:?}", cmd.get_program()))
}

/// SIGTERM to each child, wait up to `grace` for all, SIGKILL the rest; reaps all.
fn terminate_children(mut children: Vec<Child>, grace: Duration) -> anyhow::Result<()> {
    for c in &children {
        // An error means the process is already gone (exited, not yet reaped is fine).
        let _ = kill(pid_of(c.id())?, Signal::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    while !children.is_empty() {
        children.retain_mut(|c| matches!(c.try_wait(), Ok(None)));
        if children.is_empty() || Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for mut c in children {
        eprintln!("process {} ignored SIGTERM for {grace:?}; sending SIGKILL", c.id());
        kill_child(&mut c)?;
    }
    Ok(())
}

fn pid_of(pid: u32) -> anyhow::Result<Pid> {
    Ok(Pid::from_raw(i32::try_from(pid).context("pid out of range")?))
}

/// Whether `pid` names a live process (not a zombie).
pub(crate) fn pid_alive(pid: u32) -> bool {
    let Ok(p) = pid_of(pid) else { return false };
    if kill(p, None).is_err() {
        return false;
    }
    // A zombie still "exists" for kill(2); on Linux, /proc tells them apart.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit_once(')').map(|(_, rest)| !rest.trim_start().starts_with('Z')).unwrap_or(true),
        Err(_) => true,
    }
}

/// Whether the command line of `pid` mentions `home` (true where /proc is unavailable).
pub(crate) fn pid_matches(pid: u32, home: &Path) -> bool {
    match std::fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(cmdline) => {
            let home = home.as_os_str().as_encoded_bytes();
            cmdline.split(|b| *b == 0).any(|arg| arg == home)
        }
        Err(_) => true,
    }
}

/// SIGTERM to each live, matching process; SIGKILL to those still alive after `grace`.
/// For processes that are not our children (`down` in another invocation).
pub(crate) fn terminate_pids(procs: &[ProcInfo], grace: Duration) -> anyhow::Result<usize> {
    let live: Vec<&ProcInfo> = procs.iter().filter(|p| pid_alive(p.pid) && pid_matches(p.pid, &p.home)).collect();
    for p in &live {
        let _ = kill(pid_of(p.pid)?, Signal::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    while live.iter().any(|p| pid_alive(p.pid)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    for p in &live {
        if pid_alive(p.pid) {
            eprintln!("pid {} ignored SIGTERM for {grace:?}; sending SIGKILL", p.pid);
            let _ = kill(pid_of(p.pid)?, Signal::SIGKILL);
        }
    }
    Ok(live.len())
}

/// The last `n` lines of a log file (best effort, for error messages).
pub(crate) fn tail(path: &Path, n: usize) -> String {
    let Ok(text) = std::fs::read_to_string(path) else {
        return format!("(cannot read {})", path.display());
    };
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// `GOMAXPROCS` for each of `nodes` CometBFT processes sharing this machine:
/// its share of the cores, at least one. Go sizes its scheduler for the whole
/// machine otherwise, and N nodes each waking threads on every core spend a
/// good part of their CPU in futex wake-ups (measured on 2 cores: 16 idle
/// tuned nodes used 0.9-1.2 cores with 2 threads each, 0.7 with 1). A value
/// the caller set in the environment wins.
fn go_threads(nodes: usize) -> String {
    if let Ok(v) = std::env::var("GOMAXPROCS") {
        return v;
    }
    (crate::profile::cores() / nodes.max(1)).max(1).to_string()
}

/// The environment variable that lowers the scheduling priority of every devnet process.
pub const NICE_ENV: &str = "TANDEM_DEVNET_NICE";

/// The niceness (1-19) `TANDEM_DEVNET_NICE` asks for, if any.
pub fn devnet_niceness() -> Option<u8> {
    std::env::var(NICE_ENV).ok()?.trim().parse::<u8>().ok().filter(|n| (1..=19).contains(n))
}

/// `cmd` run through `nice -n N` when [`NICE_ENV`] asks for it (`nice` execs the program, so
/// the process id stays the child's). For experiments on one host: it lets a gateway on the
/// same cores be scheduled ahead of the validators, as if they ran on other machines.
fn with_niceness(cmd: Command) -> Command {
    let Some(n) = devnet_niceness() else {
        return cmd;
    };
    let mut wrapped = Command::new("nice");
    wrapped.arg("-n").arg(n.to_string()).arg(cmd.get_program()).args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => wrapped.env(k, v),
            None => wrapped.env_remove(k),
        };
    }
    if let Some(dir) = cmd.get_current_dir() {
        wrapped.current_dir(dir);
    }
    wrapped
}
