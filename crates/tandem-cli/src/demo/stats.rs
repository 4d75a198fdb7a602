//! What the demo measures, client-side: each step's round trip (L2 latency),
//! each session from its commit request to final on L1 (finality), package
//! stages, refusals and rejections by code; and the summary printed on exit.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tandem_core::model::Stage;
use tandem_core::Hash;

/// A committed session not yet final.
#[derive(Clone, Debug)]
pub struct Pending {
    /// When the commit was requested.
    pub committed_at: Instant,
    /// Who owns it (for progress lines).
    pub owner: String,
    /// How many steps it holds.
    pub steps: usize,
}

/// How a committed session ended.
#[derive(Clone, Debug)]
pub enum End {
    /// Final on L1 at this height (when known).
    Final(Option<u64>),
    /// Rejected with this code.
    Rejected(String),
}

#[derive(Default)]
struct Inner {
    steps_ok: u64,
    step_ms: Vec<f64>,
    stages: BTreeMap<String, Stage>,
    /// Refused steps the workload provoked on purpose, by code.
    expected: BTreeMap<String, u64>,
    /// Refused steps nobody meant, by code.
    unexpected: BTreeMap<String, u64>,
    /// Failures that are no answer at all (unreachable, timeouts), by code.
    errors: BTreeMap<String, u64>,
    committed: u64,
    pending: HashMap<Hash, Pending>,
    finalized: u64,
    finality_ms: Vec<f64>,
    rejected: BTreeMap<String, u64>,
}

/// Shared counters (a mutex held only for bookkeeping, never across I/O).
#[derive(Default)]
pub struct Stats {
    inner: Mutex<Inner>,
}

/// The nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    Some(sorted[rank.min(sorted.len()) - 1])
}

fn sorted(v: &[f64]) -> Vec<f64> {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v
}

impl Stats {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An accepted step.
    pub fn step(&self, package: &str, stage: Stage, latency: Duration) {
        let mut i = self.lock();
        i.steps_ok += 1;
        i.step_ms.push(latency.as_secs_f64() * 1e3);
        i.stages.insert(package.to_string(), stage);
    }

    /// A refused step; `expected` when the workload provoked it on purpose.
    pub fn refused(&self, code: &str, expected: bool) {
        let mut i = self.lock();
        let map = if expected { &mut i.expected } else { &mut i.unexpected };
        *map.entry(code.to_string()).or_default() += 1;
    }

    /// A request that got no answer.
    pub fn error(&self, code: &str) {
        *self.lock().errors.entry(code.to_string()).or_default() += 1;
    }

    /// A commit is about to be requested.
    pub fn committing(&self, id: Hash, owner: &str, steps: usize) {
        let mut i = self.lock();
        i.committed += 1;
        i.pending.insert(id, Pending { committed_at: Instant::now(), owner: owner.to_string(), steps });
    }

    /// A committed session ended; returns it and its finality time when it
    /// was still pending (each session is counted once).
    pub fn end(&self, id: &Hash, end: &End) -> Option<(Pending, Duration)> {
        let mut i = self.lock();
        let p = i.pending.remove(id)?;
        let took = p.committed_at.elapsed();
        match end {
            End::Final(_) => {
                i.finalized += 1;
                i.finality_ms.push(took.as_secs_f64() * 1e3);
            }
            End::Rejected(code) => *i.rejected.entry(code.clone()).or_default() += 1,
        }
        Some((p, took))
    }

    /// Committed sessions pending for longer than `age`.
    pub fn stale_pending(&self, age: Duration, max: usize) -> Vec<Hash> {
        let i = self.lock();
        i.pending.iter().filter(|(_, p)| p.committed_at.elapsed() >= age).map(|(id, _)| *id).take(max).collect()
    }

    /// How many committed sessions are not final yet.
    pub fn pending_count(&self) -> usize {
        self.lock().pending.len()
    }

    /// One progress line.
    pub fn progress(&self, elapsed: Duration) -> String {
        let i = self.lock();
        let p50 = percentile(&sorted(&i.step_ms), 50.0).map_or("-".into(), |v| format!("{v:.1} ms"));
        let secs = elapsed.as_secs_f64().max(0.001);
        let delivered = i.stages.values().filter(|s| **s == Stage::Delivered).count();
        format!(
            "{} steps ({:.0}/s, p50 {p50}) | {} packages, {delivered} delivered | sessions: {} committed, {} final, {} pending, {} rejected",
            i.steps_ok,
            i.steps_ok as f64 / secs,
            i.stages.len(),
            i.committed,
            i.finalized,
            i.pending.len(),
            i.rejected.values().sum::<u64>(),
        )
    }

    /// The summary.
    pub fn summary(&self, elapsed: Duration, rate: &str) -> Summary {
        let i = self.lock();
        let steps = sorted(&i.step_ms);
        let fin = sorted(&i.finality_ms);
        let mut by_stage: BTreeMap<Stage, u64> = Stage::ALL.iter().map(|s| (*s, 0)).collect();
        for s in i.stages.values() {
            *by_stage.entry(*s).or_default() += 1;
        }
        Summary {
            seconds: elapsed.as_secs_f64(),
            rate: rate.to_string(),
            packages: i.stages.len() as u64,
            by_stage: by_stage.into_iter().map(|(s, n)| (s.name().to_string(), n)).collect(),
            steps: i.steps_ok,
            step_p50: percentile(&steps, 50.0),
            step_p95: percentile(&steps, 95.0),
            step_p99: percentile(&steps, 99.0),
            committed: i.committed,
            finalized: i.finalized,
            rejected: i.rejected.clone(),
            not_final: i.pending.len() as u64,
            final_p50: percentile(&fin, 50.0),
            final_p95: percentile(&fin, 95.0),
            expected_refusals: i.expected.clone(),
            unexpected_refusals: i.unexpected.clone(),
            errors: i.errors.clone(),
        }
    }
}

/// The numbers printed when the demo ends.
#[derive(Clone, Debug)]
pub struct Summary {
    pub seconds: f64,
    pub rate: String,
    pub packages: u64,
    pub by_stage: Vec<(String, u64)>,
    pub steps: u64,
    pub step_p50: Option<f64>,
    pub step_p95: Option<f64>,
    pub step_p99: Option<f64>,
    pub committed: u64,
    pub finalized: u64,
    pub rejected: BTreeMap<String, u64>,
    pub not_final: u64,
    pub final_p50: Option<f64>,
    pub final_p95: Option<f64>,
    pub expected_refusals: BTreeMap<String, u64>,
    pub unexpected_refusals: BTreeMap<String, u64>,
    pub errors: BTreeMap<String, u64>,
}

fn ms(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| if v < 10.0 { format!("{v:.2} ms") } else { format!("{v:.0} ms") })
}

fn codes(m: &BTreeMap<String, u64>) -> String {
    m.iter().map(|(c, n)| format!("{c} {n}")).collect::<Vec<_>>().join(", ")
}

impl Summary {
    /// Rejections and failures nobody provoked on purpose: rejected
    /// sessions, unexpectedly refused steps, requests without an answer.
    pub fn unexplained(&self) -> u64 {
        self.rejected.values().sum::<u64>() + self.unexpected_refusals.values().sum::<u64>() + self.errors.values().sum::<u64>()
    }

    /// The human-readable form.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut line = |s: String| {
            out.push_str(&s);
            out.push('\n');
        };
        line("== demo summary ==".into());
        line(format!("ran {:.1} s at rate {}", self.seconds, self.rate));
        let stages: Vec<String> = self.by_stage.iter().map(|(s, n)| format!("{s} {n}")).collect();
        line(format!("packages: {} ({})", self.packages, stages.join(", ")));
        line(format!(
            "steps: {} accepted ({:.1}/s); L2 step latency p50 {}, p95 {}, p99 {}",
            self.steps,
            self.steps as f64 / self.seconds.max(0.001),
            ms(self.step_p50),
            ms(self.step_p95),
            ms(self.step_p99)
        ));
        let rejected: u64 = self.rejected.values().sum();
        let rej = if rejected == 0 { "0 rejected".to_string() } else { format!("{rejected} rejected ({})", codes(&self.rejected)) };
        line(format!("sessions: {} committed, {} finalized, {rej}, {} not final at exit", self.committed, self.finalized, self.not_final));
        line(format!("session finality (commit to final on L1): p50 {}, p95 {}", ms(self.final_p50), ms(self.final_p95)));
        let expected: u64 = self.expected_refusals.values().sum();
        if expected > 0 {
            line(format!("refused on purpose: {expected} ({}; labelling a quarantined package)", codes(&self.expected_refusals)));
        }
        if !self.unexpected_refusals.is_empty() {
            line(format!("refused steps: {}", codes(&self.unexpected_refusals)));
        }
        if !self.errors.is_empty() {
            line(format!("errors: {}", codes(&self.errors)));
        }
        line(format!("unexplained rejections: {}", self.unexplained()));
        out
    }

    /// The JSON form.
    pub fn to_json(&self) -> Value {
        json!({
            "seconds": self.seconds,
            "rate": self.rate,
            "packages": self.packages,
            "packages_by_stage": self.by_stage.iter().cloned().collect::<BTreeMap<String, u64>>(),
            "steps": self.steps,
            "step_latency_ms": { "p50": self.step_p50, "p95": self.step_p95, "p99": self.step_p99 },
            "sessions": {
                "committed": self.committed,
                "finalized": self.finalized,
                "rejected": self.rejected,
                "not_final": self.not_final,
            },
            "session_finality_ms": { "p50": self.final_p50, "p95": self.final_p95 },
            "refused_on_purpose": self.expected_refusals,
            "refused_unexpectedly": self.unexpected_refusals,
            "errors": self.errors,
            "unexplained_rejections": self.unexplained(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(percentile(&[7.0], 95.0), Some(7.0));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn a_session_ends_once_and_rejections_are_unexplained() {
        let s = Stats::default();
        let id = Hash([1; 32]);
        s.committing(id, "operator-1", 3);
        assert!(s.end(&id, &End::Final(Some(4))).is_some());
        assert!(s.end(&id, &End::Rejected("x".into())).is_none());
        s.refused("wrong_stage", true);
        let sum = s.summary(Duration::from_secs(1), "max");
        assert_eq!((sum.finalized, sum.unexplained()), (1, 0));
        s.committing(Hash([2; 32]), "operator-2", 1);
        s.end(&Hash([2; 32]), &End::Rejected("outcome_mismatch".into()));
        let sum = s.summary(Duration::from_secs(1), "max");
        assert_eq!(sum.unexplained(), 1);
        assert!(sum.render().contains("1 rejected (outcome_mismatch 1)"), "{}", sum.render());
    }
}
