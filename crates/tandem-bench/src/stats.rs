//! Exact percentiles from sorted samples. Benchmarks keep every sample (a
//! few thousand per point), so there is no reason to approximate.

use serde::Serialize;

/// Summary of one set of latency samples, in milliseconds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Pcts {
    /// Number of samples.
    pub n: usize,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

/// Nearest-rank percentile of an ascending slice (`p` in 0..=100): the
/// smallest sample such that at least p% of the samples are ≤ it.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Percentiles of `samples` (any order). NaN fields when there are none,
/// which serialize as `null`: a missing measurement must not look like 0 ms.
pub fn pcts(samples: &[f64]) -> Pcts {
    let mut s: Vec<f64> = samples.iter().copied().filter(|x| x.is_finite()).collect();
    s.sort_by(f64::total_cmp);
    let mean = if s.is_empty() { f64::NAN } else { s.iter().sum::<f64>() / s.len() as f64 };
    Pcts {
        n: s.len(),
        p50: percentile(&s, 50.0),
        p95: percentile(&s, 95.0),
        p99: percentile(&s, 99.0),
        max: s.last().copied().unwrap_or(f64::NAN),
        mean,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles_are_exact() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        let p = pcts(&v);
        assert_eq!((p.p50, p.p95, p.p99, p.max, p.n), (50.0, 95.0, 99.0, 100.0, 100));
        assert_eq!(percentile(&[7.0], 99.0), 7.0);
        assert!(pcts(&[]).p50.is_nan());
    }
}
