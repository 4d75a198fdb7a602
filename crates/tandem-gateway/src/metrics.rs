//! Prometheus metrics of the gateway: step latency, WAL fsync time, L1
//! finality latency, sessions by state, backlog, prediction mismatches,
//! batches under this gateway's key it never built;
//! batches L1 refused (by code) and work put off by a full WAL queue.

use prometheus::{Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};

/// Every metric, registered in one registry.
pub struct Metrics {
    registry: Registry,
    /// Time from a step's arrival to its durable acknowledgement.
    pub step_seconds: Histogram,
    /// Duration of each WAL fsync (one per group commit).
    pub wal_fsync_seconds: Histogram,
    /// Time from a session's commit request to its finality seen on L1.
    pub finality_seconds: Histogram,
    /// Time of a direct L1 step, from arrival to its block.
    pub l1_direct_seconds: Histogram,
    /// Sessions by state.
    pub sessions: IntGaugeVec,
    /// Steps accepted and not yet final.
    pub pending_steps: IntGauge,
    /// Sessions L1 (or a block) overturned after the gateway accepted them.
    pub mismatches: IntGauge,
    /// Batches signed with this gateway's key that it never built, seen on L1.
    pub foreign_batches: IntGauge,
    /// Last replayed L1 height.
    pub l1_height: IntGauge,
    /// Batches L1 or its RPC refused, by refusal code.
    pub l1_refused_batches: IntCounterVec,
    /// Requests (and automatic commits or compactions) put off because the
    /// WAL's queue was full.
    pub wal_backpressure: IntCounter,
}

fn buckets() -> Vec<f64> {
    // 50 µs to 10 s: the step path lives at the bottom, finality at the top.
    vec![0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]
}

impl Metrics {
    /// Create and register everything.
    pub fn new() -> Metrics {
        let registry = Registry::new_custom(Some("tandem_gateway".into()), None).expect("valid prefix");
        let h = |name: &str, help: &str| {
            let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets())).expect("valid histogram");
            registry.register(Box::new(h.clone())).expect("unique name");
            h
        };
        let g = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid gauge");
            registry.register(Box::new(g.clone())).expect("unique name");
            g
        };
        let sessions = IntGaugeVec::new(Opts::new("sessions", "Sessions by state"), &["state"]).expect("valid gauge");
        registry.register(Box::new(sessions.clone())).expect("unique name");
        let l1_refused_batches =
            IntCounterVec::new(Opts::new("l1_refused_batches_total", "Batches L1 or its RPC refused, by code"), &["code"])
                .expect("valid counter");
        registry.register(Box::new(l1_refused_batches.clone())).expect("unique name");
        let wal_backpressure =
            IntCounter::new("wal_backpressure_total", "Work put off because the WAL queue was full").expect("valid counter");
        registry.register(Box::new(wal_backpressure.clone())).expect("unique name");
        Metrics {
            l1_refused_batches,
            wal_backpressure,
            step_seconds: h("step_seconds", "Step latency: arrival to durable acknowledgement"),
            wal_fsync_seconds: h("wal_fsync_seconds", "WAL fsync duration per group commit"),
            finality_seconds: h("finality_seconds", "Session finality latency: commit request to L1 finality"),
            l1_direct_seconds: h("l1_direct_seconds", "Direct L1 step latency: arrival to inclusion"),
            sessions,
            pending_steps: g("pending_steps", "Accepted steps not yet final on L1"),
            mismatches: g("prediction_mismatches", "Sessions overturned after acceptance (L1 rejection or conflict)"),
            foreign_batches: g("foreign_batches", "Batches signed with this gateway's key that it never built, seen on L1"),
            l1_height: g("l1_height", "Last L1 height replayed by the gateway"),
            registry,
        }
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut out).expect("encoding to a Vec cannot fail");
        String::from_utf8(out).expect("prometheus text is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
