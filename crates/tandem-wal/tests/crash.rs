//! Crash tests of compaction ([`Wal::rewrite`]) in a child process: this
//! test binary runs itself as the child (selected by environment variables),
//! which appends and rewrites while reporting on stdout what the log
//! acknowledged; the parent kills it and checks that reopening the log
//! recovers exactly what the acknowledgements allow.
//!
//! - At each crash point inside a rewrite (temporary file written, fsynced,
//!   renamed, directory fsynced) the child aborts itself
//!   ([`WalConfig::crash_in_rewrite`]): the log is the old one before the
//!   rename and the new one after it, whole either way.
//! - The child appends and compacts in a loop and the parent SIGKILLs it at
//!   random instants: every acknowledged record that was live is recovered,
//!   in order, and nothing else but the one request in flight.

use std::io::{BufRead as _, Write as _};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rand::Rng as _;
use tandem_wal::{RewriteCrash, Wal, WalConfig};

const CHILD_DIR: &str = "TANDEM_WAL_CRASH_CHILD_DIR";
const CHILD_CRASH_AT: &str = "TANDEM_WAL_CRASH_AT";

/// A record's payload: its id, then filler of a size that varies with it.
fn payload(id: u64) -> Vec<u8> {
    let mut p = id.to_le_bytes().to_vec();
    p.resize(8 + (id as usize * 37) % 3000, (id % 251) as u8);
    p
}

fn id_of(p: &[u8]) -> u64 {
    let id = u64::from_le_bytes(p[..8].try_into().expect("8 bytes"));
    assert_eq!(p, payload(id), "record {id} came back altered");
    id
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").expect("stdout");
    out.flush().expect("stdout");
}

/// The child: `crash_at` set, append 20 records then rewrite to the even
/// ones (which aborts at that point); unset, append and compact forever.
fn child(dir: &Path, crash_at: Option<RewriteCrash>) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let (wal, recovered) = Wal::open(dir, WalConfig { crash_in_rewrite: crash_at, ..WalConfig::default() }).expect("open");
        assert!(recovered.records.is_empty());
        say("ready");
        if crash_at.is_some() {
            for id in 1..=20 {
                wal.append(payload(id)).await.expect("append");
                say(&format!("a {id}"));
            }
            let even: Vec<u64> = (1..=20).filter(|i| i % 2 == 0).collect();
            wal.rewrite(even.iter().map(|&i| payload(i)).collect()).await.expect("rewrite");
            say("r");
            return;
        }
        let mut live: Vec<u64> = Vec::new();
        for id in 1.. {
            say(&format!("A {id}"));
            wal.append(payload(id)).await.expect("append");
            say(&format!("a {id}"));
            live.push(id);
            if id % 5 == 0 {
                // Keep the last 300: a rewrite of ~450 KB.
                let keep = live.len().saturating_sub(300);
                live.drain(..keep);
                let list: Vec<String> = live.iter().map(u64::to_string).collect();
                say(&format!("R {}", list.join(",")));
                wal.rewrite(live.iter().map(|&i| payload(i)).collect()).await.expect("rewrite");
                say("r");
            }
        }
    });
}

/// What the child's report allows the log to hold after it died: the state
/// after the last acknowledged request, or that state with the request in
/// flight applied. Also whether a rewrite was in flight.
fn allowed(report: &str) -> (Vec<Vec<u64>>, bool) {
    let mut state: Vec<u64> = Vec::new();
    let mut append: Option<u64> = None;
    let mut rewrite: Option<Vec<u64>> = None;
    for line in report.lines() {
        match line.split_once(' ').unwrap_or((line, "")) {
            ("A", id) => append = Some(id.parse().expect("id")),
            ("a", id) => {
                state.push(id.parse().expect("id"));
                append = None;
            }
            ("R", list) => rewrite = Some(list.split(',').filter(|s| !s.is_empty()).map(|s| s.parse().expect("id")).collect()),
            ("r", _) => state = rewrite.take().expect("a rewrite was begun"),
            ("ready", _) => {}
            other => panic!("unexpected report line {other:?}"),
        }
    }
    let mut out = vec![state.clone()];
    if let Some(id) = append {
        out.push([state.clone(), vec![id]].concat());
    }
    let mid_rewrite = rewrite.is_some();
    if let Some(list) = rewrite {
        out.push(list);
    }
    (out, mid_rewrite)
}

fn recovered_ids(dir: &Path) -> Vec<u64> {
    let (_wal, rec) = Wal::open(dir, WalConfig::default()).expect("a killed log reopens");
    assert!(!dir.join("wal.log.tmp").exists(), "reopening removes an interrupted rewrite's file");
    rec.records.iter().map(|p| id_of(p)).collect()
}

fn spawn_child(dir: &Path, crash_at: Option<RewriteCrash>) -> std::process::Child {
    let mut cmd = Command::new(std::env::current_exe().expect("own path"));
    cmd.env(CHILD_DIR, dir).stdout(Stdio::piped()).stderr(Stdio::null()).stdin(Stdio::null());
    if let Some(c) = crash_at {
        cmd.env(CHILD_CRASH_AT, c.name());
    }
    cmd.spawn().expect("spawn the child")
}

/// The child aborts at each crash point of a rewrite; the log is whole, old
/// before the rename and new after it.
fn every_crash_point_leaves_the_old_or_the_new_log_whole() {
    for point in RewriteCrash::ALL {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = spawn_child(dir.path(), Some(point)).wait_with_output().expect("child");
        assert!(!out.status.success(), "the child must die at {}", point.name());
        let report = String::from_utf8(out.stdout).expect("utf-8");
        assert!(report.lines().any(|l| l == "a 20") && !report.lines().any(|l| l == "r"), "{}: {report}", point.name());
        let got = recovered_ids(dir.path());
        let want: Vec<u64> = match point {
            RewriteCrash::AfterTmpWrite | RewriteCrash::AfterTmpSync => (1..=20).collect(),
            RewriteCrash::AfterRename | RewriteCrash::AfterDirSync => (1..=20).filter(|i| i % 2 == 0).collect(),
        };
        assert_eq!(got, want, "crash {}", point.name());
        println!("crash point {}: {} records recovered", point.name(), got.len());
    }
}

/// SIGKILL at random instants of an append-and-compact loop.
fn a_sigkill_at_any_instant_loses_no_acknowledged_record() {
    let mut rng = rand::thread_rng();
    let (mut rounds, mut mid_rewrite) = (0, 0);
    let started = Instant::now();
    while rounds < 20 || (mid_rewrite < 3 && rounds < 80) {
        rounds += 1;
        let dir = tempfile::tempdir().expect("tempdir");
        let mut child = spawn_child(dir.path(), None);
        let mut stdout = std::io::BufReader::new(child.stdout.take().expect("piped"));
        let mut first = String::new();
        stdout.read_line(&mut first).expect("the child reports");
        assert_eq!(first.trim(), "ready");
        std::thread::sleep(Duration::from_millis(rng.gen_range(5..120)));
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        let mut report = first;
        std::io::Read::read_to_string(&mut stdout, &mut report).expect("report");
        let (allowed, in_rewrite) = allowed(&report);
        mid_rewrite += usize::from(in_rewrite);
        let got = recovered_ids(dir.path());
        assert!(allowed.contains(&got), "round {rounds}: recovered {got:?}, allowed {allowed:?}");
    }
    println!("{rounds} kills, {mid_rewrite} during a rewrite, in {:?}", started.elapsed());
    assert!(mid_rewrite >= 1, "no kill landed during a rewrite in {rounds} rounds");
}

fn main() {
    if let Some(dir) = std::env::var_os(CHILD_DIR) {
        let crash_at = std::env::var(CHILD_CRASH_AT).ok().map(|s| RewriteCrash::parse(&s).expect("a crash point"));
        child(Path::new(&dir), crash_at);
        return;
    }
    every_crash_point_leaves_the_old_or_the_new_log_whole();
    a_sigkill_at_any_instant_loses_no_acknowledged_record();
    println!("crash tests passed");
}
