//! `tandem bench --quick` end to end on a real 4-validator devnet (range
//! 127.0.41.x), with tiny iteration counts: checks that every output exists
//! and is well-formed. It asserts shape, not speed: benchmarks report numbers.

use std::path::PathBuf;

use clap::Parser;

#[derive(clap::Parser)]
struct Cli {
    #[command(flatten)]
    bench: tandem_bench::BenchArgs,
}

/// The `tandem` binary `cargo test --workspace` builds next to this test's
/// folder (target/<profile>/tandem), or `$TANDEM_BIN`.
fn tandem_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("TANDEM_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test exe");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target/<profile>");
    let bin = dir.join("tandem");
    assert!(bin.exists(), "{} missing: build it first (cargo build -p tandem-cli) or set TANDEM_BIN", bin.display());
    bin
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quick_mode_writes_well_formed_results() {
    let out = tempfile::tempdir().expect("tempdir");
    let o = out.path().to_str().expect("utf-8 path");
    let cli = Cli::try_parse_from([
        "bench",
        "--quick",
        "--iterations",
        "1",
        "--l2-steps",
        "20",
        "--l1-iterations",
        "1",
        "--concurrency",
        "4",
        "--ramp-secs",
        "0.5",
        "--base-ip",
        "127.0.41.1",
        "--out",
        o,
    ])
    .expect("arguments");
    tandem_bench::run(cli.bench, &tandem_bin()).await.expect("bench --quick");

    let text = std::fs::read_to_string(out.path().join("results.json")).expect("results.json");
    let v: serde_json::Value = serde_json::from_str(&text).expect("results.json is JSON");
    assert!(v["machine"]["cores"].as_u64().is_some() && v["date"].is_string(), "{v}");
    let rows = v["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 1);
    let r = &rows[0];
    assert!(r["errors"].as_array().is_some_and(|e| e.is_empty()), "a phase failed: {}", r["errors"]);
    assert_eq!((r["validators"].as_u64(), r["profile"].as_str()), (Some(4), Some("tuned")));
    for (field, subs) in [
        ("l2_step_ms", &["p50", "p95", "p99", "max"][..]),
        ("session_finality_ms", &["p50", "p95", "p99"][..]),
        ("l1_direct_step_ms", &["p50", "p95", "p99"][..]),
        ("workflow_ms", &["p50"][..]),
    ] {
        for s in subs {
            assert!(r[field][s].as_f64().is_some_and(|x| x > 0.0), "{field}.{s} missing: {r}");
        }
    }
    for field in ["ratio_l1_over_l2_p50", "l2_steps_per_s_max", "l1_steps_per_s_max"] {
        assert!(r[field].as_f64().is_some_and(|x| x > 0.0), "{field} missing: {r}");
    }
    assert!(r["timeouts"]["consensus.timeout_commit"].is_string());
    assert!(!r["resources"].as_array().expect("resources").is_empty());

    let csv = std::fs::read_to_string(out.path().join("samples.csv")).expect("samples.csv");
    assert!(csv.starts_with("validators,profile,phase,kind,iteration,latency_ms\n"));
    assert!(csv.lines().count() > 20, "samples.csv has too few rows");
    assert!(std::fs::read_to_string(out.path().join("ramp.csv")).expect("ramp.csv").lines().count() >= 2);
    let md = std::fs::read_to_string(out.path().join("README.md")).expect("README.md");
    assert!(md.contains("## Targets") && md.contains("| 16 | paper |"));
    for svg in ["latency_vs_validators.svg", "latency_vs_load.svg", "throughput_vs_load.svg"] {
        let s = std::fs::read_to_string(out.path().join(svg)).expect(svg);
        assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"), "{svg} is not an SVG document");
    }
}
