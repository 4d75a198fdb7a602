//! Helpers for the tests of the `tandem` client commands and the demo: run
//! the binary with a clean environment and a deadline, and a guard that stops
//! a `tandem up` process and its devnet whatever happens.
#![allow(dead_code)]

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// What a finished `tandem` run printed.
#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    /// Parse stdout as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }
}

/// `tandem` with no TANDEM_* settings leaking in from the developer's shell,
/// and HOME pointing at `home` (so no ~/.config/tandem/config.toml is read).
pub fn command(home: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tandem"));
    for (k, _) in std::env::vars() {
        if k.starts_with("TANDEM_") {
            c.env_remove(k);
        }
    }
    c.env("HOME", home).env("NO_COLOR", "1").stdin(Stdio::null());
    c
}

fn wait_deadline(child: &mut Child, deadline: Instant) -> Option<ExitStatus> {
    loop {
        if let Some(s) = child.try_wait().expect("wait") {
            return Some(s);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Run `tandem args...` to completion (killed after 45 s).
pub fn run(home: &Path, args: &[&str], env: &[(&str, &str)]) -> Out {
    let mut c = command(home);
    c.args(args).envs(env.iter().copied()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c.spawn().expect("spawn tandem");
    // Drain the pipes while waiting, so a chatty command never blocks.
    let mut so = child.stdout.take().expect("stdout");
    let mut se = child.stderr.take().expect("stderr");
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = so.read_to_string(&mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = se.read_to_string(&mut s);
        s
    });
    let status = wait_deadline(&mut child, Instant::now() + Duration::from_secs(45));
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let out =
        Out { code: status.and_then(|s| s.code()).unwrap_or(-1), stdout: t_out.join().expect("join"), stderr: t_err.join().expect("join") };
    assert!(status.is_some(), "tandem {args:?} did not finish within 45 s: {out:?}");
    out
}

/// A `tandem up` process writing to `log`. Dropping it (also when a test
/// fails) sends SIGTERM, then SIGKILL, and stops any devnet process left in
/// `dir` with `tandem devnet down`.
pub struct UpProc {
    pub child: Option<Child>,
    pub dir: PathBuf,
    pub log: PathBuf,
}

impl UpProc {
    pub fn start(home: &Path, dir: &Path, args: &[&str]) -> UpProc {
        let log = home.join("up.log");
        let file = std::fs::File::create(&log).expect("log");
        let child = command(home)
            .arg("up")
            .arg("--dir")
            .arg(dir)
            .args(args)
            .stdout(file.try_clone().expect("log"))
            .stderr(file)
            .spawn()
            .expect("spawn tandem up");
        UpProc { child: Some(child), dir: dir.to_path_buf(), log }
    }

    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Wait for the process to end by itself; `None` past the deadline.
    pub fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let s = wait_deadline(child, Instant::now() + timeout);
        if s.is_some() {
            self.child = None;
        }
        s
    }
}

impl Drop for UpProc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
            if wait_deadline(&mut child, Instant::now() + Duration::from_secs(20)).is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if self.dir.join("pids.json").exists() {
            let _ = Command::new(env!("CARGO_BIN_EXE_tandem"))
                .args(["devnet", "down", "--dir"])
                .arg(&self.dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}
