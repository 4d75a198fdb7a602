//! The short versions of `tandem chaos` that CI runs, through the binary as
//! a user runs them: the torn-WAL scenario in full (200 cases, no network)
//! and the gateway kill loop with 5 kills on a real 4-validator devnet
//! (127.0.62.x). The long runs (≥ 100 kills) are on demand; their figures are
//! in docs/reliability/.

use std::process::Command;

fn chaos(args: &[&str]) -> serde_json::Value {
    let out = tempfile::tempdir().expect("tempdir");
    let o = out.path().to_str().expect("utf-8");
    let name = args[0];
    let mut full: Vec<&str> = vec!["chaos"];
    full.extend(args);
    full.extend(["--out", o]);
    let run = Command::new(env!("CARGO_BIN_EXE_tandem")).args(&full).output().expect("run tandem chaos");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "tandem chaos {name} failed:\n{stdout}\n{}", String::from_utf8_lossy(&run.stderr));
    let last = stdout.lines().last().unwrap_or_default();
    assert!(last.starts_with(&format!("{name}:")), "the figures come last: {stdout}");
    let text = std::fs::read_to_string(out.path().join(format!("{name}.json"))).expect("figures file");
    serde_json::from_str(&text).expect("figures are JSON")
}

#[test]
fn torn_wal_keeps_every_record_before_the_damage() {
    let f = chaos(&["torn-wal", "--cases", "200", "--seed", "11"]);
    assert_eq!(f["holds"], true, "{f}");
    assert_eq!(f["failures"], 0, "{f}");
    assert_eq!(f["cuts"].as_u64().unwrap_or(0) + f["flips"].as_u64().unwrap_or(0), 200, "{f}");
    assert_eq!(f["cuts"], f["cuts_recovered_exactly"], "{f}");
}

#[test]
fn gateway_kill_loop_loses_and_duplicates_nothing() {
    let f = chaos(&["gateway-kill", "--kills", "5", "--seed", "3", "--base-ip", "127.0.62.1", "--max-up-ms", "800"]);
    assert_eq!(f["kills"], 5, "{f}");
    assert!(f["acked"].as_u64().unwrap_or(0) > 0, "the load made progress: {f}");
    assert_eq!((f["lost"].as_u64(), f["duplicated"].as_u64()), (Some(0), Some(0)), "{f}");
    assert_eq!(f["holds"], true, "{f}");
}
