//! `tandem up --demo` end to end: a 4-validator devnet on 127.0.27.1–4, the
//! in-process gateway on 127.0.27.100:8080, the demo workload at full speed
//! for 15 s. The process must end by itself with status 0 and a summary that
//! shows finalized sessions and no unexplained rejection. Every process is
//! stopped even when the test fails (see `cli_support::UpProc`).

mod cli_support;

use std::time::Duration;

use cli_support::UpProc;

/// The number after `label` in `line` (e.g. "12 finalized" with label "finalized").
fn count_before(line: &str, label: &str) -> Option<u64> {
    let words: Vec<&str> = line.split([' ', ',', '(', ')']).filter(|w| !w.is_empty()).collect();
    words.windows(2).find(|w| w[1] == label).and_then(|w| w[0].parse().ok())
}

#[test]
fn the_demo_runs_for_its_duration_finalizes_sessions_and_explains_every_rejection() {
    let home = tempfile::tempdir().expect("tempdir");
    let dir = home.path().join("net");
    let mut up = UpProc::start(
        home.path(),
        &dir,
        &["--demo", "--rate", "max", "--duration", "15", "--listen", "127.0.27.100:8080", "--base-ip", "127.0.27.1"],
    );
    let status = up.wait(Duration::from_secs(55));
    let out = up.output();
    let status = status.unwrap_or_else(|| panic!("tandem up --demo did not end by itself within 55 s; output:\n{out}"));
    assert!(status.success(), "tandem up --demo failed ({status}); output:\n{out}");

    let summary = out.split("== demo summary ==").nth(1).unwrap_or_else(|| panic!("no summary; output:\n{out}"));
    let line = |prefix: &str| {
        summary.lines().find(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("no {prefix:?} line in:\n{summary}")).to_string()
    };
    let sessions = line("sessions:");
    let finalized = count_before(&sessions, "finalized").expect("finalized count");
    let committed = count_before(&sessions, "committed").expect("committed count");
    assert!(finalized > 0, "no session finalized: {sessions}");
    assert_eq!(count_before(&sessions, "rejected"), Some(0), "{sessions}");
    assert!(finalized <= committed, "{sessions}");
    assert_eq!(line("unexplained rejections:").trim(), "unexplained rejections: 0", "{summary}");
    let steps = line("steps:");
    assert!(steps.contains("p50") && steps.contains("p95") && steps.contains("p99"), "{steps}");
    assert!(line("session finality").contains("p95"), "{summary}");
    assert!(line("packages:").contains("delivered"), "{summary}");
    // Everything was stopped by the process itself.
    assert!(out.contains("stopped"), "{out}");
    assert!(!dir.join("pids.json").exists(), "the devnet's pid file is left behind");
}
