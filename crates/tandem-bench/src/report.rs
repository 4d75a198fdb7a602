//! The files a run writes: `results.json` (one row per point), raw samples
//! (`samples.csv`, `ramp.csv`), a Markdown `README.md` that sets our figures
//! beside the paper's and the targets, and SVG charts.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context as _;

use crate::svg::{Chart, Series};
use crate::workload::Sample;
use crate::{Results, Row};

/// The paper's table (mean ms, one L2 node, CometBFT default timeouts):
/// validators, create, start, scan, validate, QC, label, L1 commit, workflow.
pub const PAPER: [(usize, [f64; 8]); 5] = [
    (4, [59.5, 62.4, 62.0, 57.7, 54.4, 53.9, 240.4, 590.2]),
    (7, [74.4, 93.7, 86.2, 73.8, 70.3, 66.8, 304.8, 770.1]),
    (10, [144.9, 195.2, 178.1, 144.6, 145.8, 138.1, 414.3, 1360.9]),
    (13, [145.2, 236.7, 244.1, 150.6, 145.2, 139.4, 424.8, 1486.0]),
    (16, [158.5, 241.2, 210.7, 171.3, 163.0, 154.4, 449.8, 1548.8]),
];

fn f(v: f64) -> String {
    if !v.is_finite() {
        "–".into()
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// Writes every output file into `out`.
pub fn write_all(out: &Path, results: &Results, samples: &[(usize, String, Sample)]) -> anyhow::Result<()> {
    let w =
        |name: &str, text: String| std::fs::write(out.join(name), text).with_context(|| format!("writing {}", out.join(name).display()));
    w("results.json", serde_json::to_string_pretty(results)? + "\n")?;
    let mut csv = String::from("validators,profile,phase,kind,iteration,latency_ms\n");
    for (v, p, s) in samples {
        let _ = writeln!(csv, "{v},{p},{},{},{},{:.4}", s.phase, s.kind, s.iteration, s.ms);
    }
    w("samples.csv", csv)?;
    let mut csv = String::from(
        "validators,profile,concurrency,window_s,steps_ok,errors,l2_steps_per_s,l1_steps_per_s,drain_s,p50_ms,p95_ms,p99_ms,max_ms\n",
    );
    for r in &results.rows {
        for l in &r.ramp {
            let errs: u64 = l.errors.values().sum();
            let m = &l.latency_ms;
            let _ = writeln!(
                csv,
                "{},{},{},{:.3},{},{errs},{:.1},{:.1},{:.3},{:.4},{:.4},{:.4},{:.4}",
                r.validators,
                r.profile,
                l.concurrency,
                l.window_s,
                l.steps_ok,
                l.l2_steps_per_s,
                l.l1_steps_per_s,
                l.drain_s,
                m.p50,
                m.p95,
                m.p99,
                m.max
            );
        }
    }
    w("ramp.csv", csv)?;
    for (name, chart) in charts(results) {
        w(name, chart.render())?;
    }
    w("README.md", readme(results))?;
    Ok(())
}

/// Reads one figure of a row, for a chart series.
type Metric = fn(&Row) -> f64;

const COLORS: [&str; 6] = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"];

fn charts(r: &Results) -> Vec<(&'static str, Chart)> {
    let mut lat = Vec::new();
    for (pi, prof) in r.settings.profiles.iter().enumerate() {
        let rows: Vec<&Row> = r.rows.iter().filter(|x| &x.profile == prof).collect();
        let metrics: [(&str, Metric); 3] = [
            ("L2 step p50", |x| x.l2_step_ms.p50),
            ("direct L1 step p50", |x| x.l1_direct_step_ms.p50),
            ("session finality p50", |x| x.session_finality_ms.p50),
        ];
        for (mi, (name, get)) in metrics.iter().enumerate() {
            lat.push(Series {
                label: format!("{name} ({prof})"),
                color: COLORS[mi],
                dashed: pi > 0,
                points: rows.iter().map(|x| (x.validators as f64, get(x))).collect(),
            });
        }
    }
    lat.push(Series {
        label: "paper L2 step (mean)".into(),
        color: "#7f7f7f",
        dashed: true,
        points: PAPER.iter().map(|(v, a)| (*v as f64, a[..6].iter().sum::<f64>() / 6.0)).collect(),
    });
    let mut load_lat = Vec::new();
    let mut load_thr = Vec::new();
    for (i, row) in r.rows.iter().enumerate() {
        let name = format!("{} val, {}", row.validators, row.profile);
        let color = COLORS[i % COLORS.len()];
        let dashed = i >= COLORS.len();
        load_lat.push(Series {
            label: format!("{name} p50"),
            color,
            dashed,
            points: row.ramp.iter().map(|l| (l.concurrency as f64, l.latency_ms.p50)).collect(),
        });
        load_thr.push(Series {
            label: format!("{name} L2"),
            color,
            dashed: false,
            points: row.ramp.iter().map(|l| (l.concurrency as f64, l.l2_steps_per_s)).collect(),
        });
        load_thr.push(Series {
            label: format!("{name} L1"),
            color,
            dashed: true,
            points: row.ramp.iter().map(|l| (l.concurrency as f64, l.l1_steps_per_s)).collect(),
        });
    }
    vec![
        (
            "latency_vs_validators.svg",
            Chart {
                title: "Latency vs validator count (p50; dashed = CometBFT defaults)".into(),
                x_label: "validators".into(),
                y_label: "ms (log)".into(),
                log_x: false,
                log_y: true,
                series: lat,
            },
        ),
        (
            "latency_vs_load.svg",
            Chart {
                title: "L2 step latency vs offered load".into(),
                x_label: "concurrent clients (log)".into(),
                y_label: "p50 ms (log)".into(),
                log_x: true,
                log_y: true,
                series: load_lat,
            },
        ),
        (
            "throughput_vs_load.svg",
            Chart {
                title: "Steps/s vs offered load (solid L2 acked, dashed L1 final)".into(),
                x_label: "concurrent clients (log)".into(),
                y_label: "steps/s (log)".into(),
                log_x: true,
                log_y: true,
                series: load_thr,
            },
        ),
    ]
}

fn row<'a>(r: &'a Results, v: usize, p: &str) -> Option<&'a Row> {
    r.rows.iter().find(|x| x.validators == v && x.profile == p && x.l2_step_ms.n > 0)
}

/// (figure, paper, target, ours, verdict) for each target of BENCHMARKS.md.
fn targets(r: &Results) -> Vec<[String; 5]> {
    let mut t = Vec::new();
    let measured: Vec<&Row> = r.rows.iter().filter(|x| x.l2_step_ms.n > 0).collect();
    let verdict = |ok: bool, miss: String| {
        if ok {
            "**met**".to_string()
        } else {
            format!("**missed** ({miss})")
        }
    };
    let nm = || "not measured in this run".to_string();
    // 1. L2 latency.
    if measured.is_empty() {
        t.push(["L2 step p50 / p99".into(), "54–241 ms mean".into(), "≤ 1 / ≤ 5 ms".into(), "–".into(), nm()]);
    } else {
        let p50 = measured.iter().map(|x| x.l2_step_ms.p50).fold(0.0, f64::max);
        let p99 = measured.iter().map(|x| x.l2_step_ms.p99).fold(0.0, f64::max);
        let ok = p50 <= 1.0 && p99 <= 5.0;
        t.push([
            "L2 step p50 / p99, worst point".into(),
            "54–241 ms mean".into(),
            "≤ 1 / ≤ 5 ms".into(),
            format!("{} / {} ms", f(p50), f(p99)),
            verdict(ok, format!("p50 {}×, p99 {}× the target", f(p50 / 1.0), f(p99 / 5.0))),
        ]);
    }
    // 2. Finality, tuned.
    for (v, paper, target) in [(4, 240.0, 150.0), (16, 450.0, 400.0)] {
        let ours = row(r, v, "tuned").map(|x| x.session_finality_ms.p50);
        t.push([
            format!("session finality p50, {v} validators, tuned"),
            format!("{paper:.0} ms"),
            format!("≤ {target:.0} ms"),
            ours.map_or("–".into(), |o| format!("{} ms", f(o))),
            ours.map_or(nm(), |o| verdict(o <= target, format!("+{} ms, {}× the target", f(o - target), f(o / target)))),
        ]);
    }
    // 3. Ratio at default timeouts.
    let paper_ratio = |v: usize| match v {
        4 => "4.1×",
        16 => "2.4×",
        _ => "–",
    };
    for v in &r.settings.validators {
        let ours = row(r, *v, "default").map(|x| x.ratio_l1_over_l2_p50);
        t.push([
            format!("L1-path ÷ L2-path p50, {v} validators, default timeouts"),
            paper_ratio(*v).into(),
            "≥ 100×".into(),
            ours.map_or("–".into(), |o| format!("{}×", f(o))),
            ours.map_or(nm(), |o| verdict(o >= 100.0, format!("{}% of the target", f(o)))),
        ]);
    }
    // 4. Workflow at 16.
    for p in &r.settings.profiles {
        let ours = row(r, 16, p).map(|x| x.workflow_ms.p50);
        t.push([
            format!("whole workflow p50, 16 validators, {p}"),
            "1549 ms".into(),
            "≤ 450 ms".into(),
            ours.map_or("–".into(), |o| format!("{} ms", f(o))),
            ours.map_or(nm(), |o| verdict(o <= 450.0, format!("+{} ms, {}× the target", f(o - 450.0), f(o / 450.0)))),
        ]);
    }
    // 5. Gateway throughput.
    let l2max = measured.iter().map(|x| x.l2_steps_per_s_max).filter(|x| x.is_finite()).fold(f64::NAN, f64::max);
    t.push([
        "steps/s acknowledged by one gateway (durable), best point".into(),
        "~17".into(),
        "≥ 10,000".into(),
        f(l2max),
        if l2max.is_finite() { verdict(l2max >= 10_000.0, format!("{}% of the target", f(l2max / 100.0))) } else { nm() },
    ]);
    // 6. L1 throughput.
    for (v, target) in [(4, 5000.0), (16, 1000.0)] {
        for p in &r.settings.profiles {
            let ours = row(r, v, p).map(|x| x.l1_steps_per_s_max);
            t.push([
                format!("steps/s finalized on L1, {v} validators, {p}"),
                "–".into(),
                format!("≥ {target:.0}"),
                ours.map_or("–".into(), f),
                ours.map_or(nm(), |o| verdict(o >= target, format!("{}% of the target", f(o / target * 100.0)))),
            ]);
        }
    }
    t
}

fn readme(r: &Results) -> String {
    let mut s = String::new();
    let st = &r.settings;
    let _ = writeln!(s, "# Benchmark results\n");
    let _ = writeln!(
        s,
        "Generated by `tandem bench` on {} — {} cores ({}), {} MiB RAM, Linux {}, CometBFT v{}. \
         All validators, their apps, the gateway and the load generator share this one machine, \
         which is shared and noisy: compare ratios within this run, not absolute times across runs.\n",
        r.date, r.machine.cores, r.machine.cpu_model, r.machine.memory_mb, r.machine.kernel, r.cometbft_version
    );
    let nice = st.devnet_nice.map(|n| format!("{}={n} ", tandem_devnet::NICE_ENV)).unwrap_or_default();
    let _ = writeln!(s, "Reproduce with:\n\n```\n{nice}{}\n```\n", st.command);
    if let Some(n) = st.devnet_nice {
        let _ = writeln!(
            s,
            "**Every validator process ran at nice {n}** (scheduled after the gateway and the load generator, as if on other machines): an experiment, not the reference setting.\n"
        );
    }
    let _ = writeln!(
        s,
        "Per point: {} warm-up workflow(s) (not counted), then {} sequential L2 workflows \
         (register → open → scan → validate → QC → label → commit, waiting for finality each time), \
         {} extra sequential L2 `register` steps (for the p99), {} direct-L1 workflows of 5 steps \
         (spread over {} independent sequential clients), and a ramp of {:?} concurrent clients for \
         {} s each. Percentiles are exact (nearest rank over all samples). Raw samples: \
         [`samples.csv`](samples.csv), [`ramp.csv`](ramp.csv), everything: [`results.json`](results.json).\n",
        st.warmup_iterations, st.iterations, st.l2_extra_steps, st.l1_iterations, st.l1_parallel, st.ramp_levels, st.ramp_secs
    );

    let _ = writeln!(s, "## Targets\n\n| figure | paper | target | ours | verdict |\n|---|---|---|---|---|");
    for t in targets(r) {
        let _ = writeln!(s, "| {} |", t.join(" | "));
    }

    let _ = writeln!(s, "\n## Latency (ms)\n");
    let _ = writeln!(s, "| validators | profile | L2 step p50 | p95 | p99 | max | n | commit ack p50 | finality p50 | p95 | p99 | direct L1 p50 | p95 | p99 | workflow p50 | L1 ÷ L2 (p50) |");
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for x in &r.rows {
        let (a, fi, d) = (&x.l2_step_ms, &x.session_finality_ms, &x.l1_direct_step_ms);
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {}× |",
            x.validators,
            x.profile,
            f(a.p50),
            f(a.p95),
            f(a.p99),
            f(a.max),
            a.n,
            f(x.commit_ack_ms.p50),
            f(fi.p50),
            f(fi.p95),
            f(fi.p99),
            f(d.p50),
            f(d.p95),
            f(d.p99),
            f(x.workflow_ms.p50),
            f(x.ratio_l1_over_l2_p50)
        );
    }
    let _ = writeln!(s, "\n![latency vs validators](latency_vs_validators.svg)\n");

    let _ = writeln!(s, "## Next to the paper's table\n");
    let _ = writeln!(
        s,
        "The paper (Akmal et al., MetaCom 2025) reports means over 100 iterations, one sequential client, \
         CometBFT default timeouts, its L2 being a 1-node CometBFT chain. Its \"L1 commit\" column is the \
         session's commit on L1, which corresponds to our session finality. Ours below: mean of each step kind \
         through L2 and of session finality, for the same validator counts.\n"
    );
    let _ = writeln!(s, "| validators | source | create | start | scan | validate | QC | label | L1 commit | whole workflow |\n|---|---|---|---|---|---|---|---|---|---|");
    for (v, a) in PAPER {
        let _ = writeln!(s, "| {v} | paper | {} |", a.iter().map(|x| format!("{x:.1}")).collect::<Vec<_>>().join(" | "));
        for x in r.rows.iter().filter(|x| x.validators == v) {
            let k = |n: &str| x.l2_step_by_kind_ms.get(n).map_or(f64::NAN, |p| p.mean);
            let _ = writeln!(
                s,
                "| {v} | ours, {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                x.profile,
                f(k("register")),
                f(k("open")),
                f(k("scan")),
                f(k("validate")),
                f(k("qc")),
                f(k("label")),
                f(x.session_finality_ms.mean),
                f(x.workflow_ms.mean)
            );
        }
    }
    let _ = writeln!(s, "\nDirect L1 path (each step its own transaction, answered after its block), mean ms:\n");
    let _ = writeln!(s, "| validators | profile | register | scan | validate | QC | label |\n|---|---|---|---|---|---|---|");
    for x in &r.rows {
        let k = |n: &str| x.l1_direct_by_kind_ms.get(n).map_or(f64::NAN, |p| p.mean);
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} |",
            x.validators,
            x.profile,
            f(k("register")),
            f(k("scan")),
            f(k("validate")),
            f(k("qc")),
            f(k("label"))
        );
    }

    let _ = writeln!(s, "\n## Throughput ramp\n");
    let _ = writeln!(
        s,
        "Each client runs supplier sessions of 32 `register` steps on fresh packages (committed without waiting) \
         and sends its next step as soon as the previous one is acknowledged. L2 = steps acknowledged (durable) per \
         second of the window; L1 = the window's steps divided by the time until every one of them was final \
         (window + drain). Knee = lowest load past which L2 steps/s grew less than 10 %.\n"
    );
    let _ = writeln!(s, "| validators | profile | clients | L2 steps/s | L1 steps/s | drain s | p50 ms | p99 ms | refusals |\n|---|---|---|---|---|---|---|---|---|");
    for x in &r.rows {
        for l in &x.ramp {
            let errs: Vec<String> = l.errors.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {:.2} | {} | {} | {} |",
                x.validators,
                x.profile,
                l.concurrency,
                f(l.l2_steps_per_s),
                f(l.l1_steps_per_s),
                l.drain_s,
                f(l.latency_ms.p50),
                f(l.latency_ms.p99),
                if errs.is_empty() { "0".into() } else { errs.join(", ") }
            );
        }
        let _ = writeln!(
            s,
            "| {} | {} | knee: {} | | | | | | |",
            x.validators,
            x.profile,
            x.knee_concurrency.map_or("not reached".into(), |k| k.to_string())
        );
    }
    let _ = writeln!(s, "\n![latency vs load](latency_vs_load.svg)\n\n![throughput vs load](throughput_vs_load.svg)\n");

    let _ = writeln!(s, "## Resource use (measured phases of each point)\n");
    let _ = writeln!(
        s,
        "`gateway+clients` is this process: the gateway and the load generator run in it, so its CPU includes \
         signing every step. Peak RSS is VmHWM since the process started (for this process, since the run started).\n"
    );
    let _ = writeln!(s, "| validators | profile | wall s | gateway+clients CPU s | peak RSS MiB | apps CPU s (sum) | app peak RSS MiB (max) | cometbft CPU s (sum) | cometbft peak RSS MiB (max) |\n|---|---|---|---|---|---|---|---|---|");
    for x in &r.rows {
        let sum = |k: &str| x.resources.iter().filter(|p| p.kind == k).map(|p| p.cpu_s).sum::<f64>();
        let max = |k: &str| x.resources.iter().filter(|p| p.kind == k).map(|p| p.peak_rss_mb).fold(0.0, f64::max);
        let _ = writeln!(
            s,
            "| {} | {} | {:.0} | {} | {} | {} | {} | {} | {} |",
            x.validators,
            x.profile,
            x.wall_s,
            f(sum("gateway+clients")),
            f(max("gateway+clients")),
            f(sum("app")),
            f(max("app")),
            f(sum("cometbft")),
            f(max("cometbft"))
        );
    }

    let _ = writeln!(s, "\n## CometBFT settings\n");
    for p in &st.profiles {
        let rows: Vec<&Row> = r.rows.iter().filter(|x| &x.profile == p).collect();
        let Some(first) = rows.first() else { continue };
        // A value that depends on the validator count is listed per size.
        let kv: Vec<String> = first
            .timeouts
            .iter()
            .map(|(k, v)| {
                if rows.iter().all(|x| x.timeouts.get(k) == Some(v)) {
                    format!("`{k}={v}`")
                } else {
                    let per: Vec<String> =
                        rows.iter().map(|x| format!("{} at {}", x.timeouts.get(k).map_or("-", String::as_str), x.validators)).collect();
                    format!("`{k}` = {}", per.join(", "))
                }
            })
            .collect();
        let _ = writeln!(s, "- **{p}**: {}", kv.join(", "));
    }
    let errs: Vec<String> =
        r.rows.iter().flat_map(|x| x.errors.iter().map(move |e| format!("- {} validators, {}: {e}", x.validators, x.profile))).collect();
    if !errs.is_empty() {
        let _ = writeln!(s, "\n## Failures\n\n{}", errs.join("\n"));
    }
    s
}

/// A plain-text table for the terminal.
pub fn summary_table(r: &Results) -> String {
    let mut s = format!(
        "{:>4} {:>8} | {:>8} {:>8} | {:>9} | {:>9} | {:>9} | {:>8} | {:>9} {:>9}\n",
        "val", "profile", "L2 p50", "L2 p99", "final p50", "L1 p50", "wf p50", "L1/L2", "L2 st/s", "L1 st/s"
    );
    for x in &r.rows {
        let _ = writeln!(
            s,
            "{:>4} {:>8} | {:>8} {:>8} | {:>9} | {:>9} | {:>9} | {:>7}× | {:>9} {:>9}",
            x.validators,
            x.profile,
            f(x.l2_step_ms.p50),
            f(x.l2_step_ms.p99),
            f(x.session_finality_ms.p50),
            f(x.l1_direct_step_ms.p50),
            f(x.workflow_ms.p50),
            f(x.ratio_l1_over_l2_p50),
            f(x.l2_steps_per_s_max),
            f(x.l1_steps_per_s_max)
        );
    }
    s
}
