//! The running gateway: the ledger behind one lock, the write-ahead log, the
//! replica, and the tasks that drive them.
//!
//! - Requests (see [`crate::api`]) check signatures before taking the lock,
//!   decide inside it, queue their WAL record inside it (so the log keeps
//!   the order decisions were made in), and wait for the fsync outside it.
//! - The follower task wakes on every new L1 height (CometBFT websocket),
//!   fetches each block once, replays it in the replica, and hands the
//!   results to the ledger: finality, rejections, conflicts.
//! - The ticker expires idle sessions, checkpoints open ones that are due,
//!   and broadcasts the batches the ledger has ready (`broadcast_tx_sync`;
//!   finality arrives through the follower, never by polling a
//!   transaction). Only steps and closes whose WAL records are fsynced go
//!   out (see `Ledger::batches_to_send`). A batch L1 or
//!   its RPC refuses is logged, counted (`l1_refused_batches_total{code}`)
//!   and shown in `/v1/status`; a refusal for size makes the session's
//!   batches smaller, a CheckTx refusal rejects the session.
//!
//! # Memory never ahead of the log
//!
//! Every decision that changes the ledger (open, step, close, expiry) first
//! takes a place in the WAL's queue ([`Wal::reserve`]), then
//! decides under the lock, then queues its record through that place under
//! the same lock. Queuing into a reserved place is never refused for
//! backpressure, so a decision is always logged; when the queue is full the
//! reservation fails *before* anything is decided and the request gets 503
//! `backlog_full` with `Retry-After` (an expiry waits for a later tick). Only a failure of the log itself (an I/O error, a poisoned or
//! closed log) stops the process ([`fatal_wal`]).
//!
//! # Compaction
//!
//! The ticker rewrites the WAL with exactly the live sessions' records when
//! the file is larger than both `wal_compact_bytes` and twice its size
//! right after the previous compaction, so a live set above the threshold
//! is not rewritten on every tick, and the cost of rewriting stays in
//! proportion to what was appended since.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::StreamExt as _;
use tandem_core::genesis::Genesis;
use tandem_core::SecretKey;
use tandem_rpc::{L1Error, L1};
use tandem_state::Snapshot;
use tandem_wal::{Reservation, Wal, WalConfig, WalError};
use tokio::sync::broadcast;

use crate::ledger::{Event, Ledger, LedgerConfig, ReplayedBlock, SessionStatus, WalRecord};
use crate::limit::{RateClock, RateLimits};
use crate::metrics::Metrics;
use crate::replica::{Replica, ReplicaError};

/// Everything the gateway is configured with.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// Folder for the WAL, the replica and the saved genesis.
    pub data_dir: PathBuf,
    /// The key that signs receipts and batches (a registered gateway).
    pub key: SecretKey,
    /// Ledger limits and timers.
    pub ledger: LedgerConfig,
    /// Largest request body, in bytes.
    pub body_bytes_max: usize,
    /// Sustained requests per second the gateway admits from one client
    /// (a signing key, or a peer address for unsigned requests).
    pub rate_per_s: u32,
    /// Burst one client may send above the sustained rate.
    pub rate_burst: u32,
    /// The rate limiter's clock (a manual one makes tests deterministic).
    pub rate_clock: RateClock,
    /// How often expiries, checkpoints and batch sends are considered.
    pub tick: Duration,
    /// How long a direct L1 step may wait for its block.
    pub l1_step_timeout: Duration,
    /// Compact the WAL when it grows past this many bytes and past twice
    /// its size after the previous compaction.
    pub wal_compact_bytes: u64,
    /// Requests the WAL queues at most before new work gets 503
    /// `backlog_full` (see [`tandem_wal::WalConfig::queue_max`]).
    pub wal_queue_max: usize,
    /// Folder of a local devnet's demo key files, served at `/v1/demo/keys`
    /// for the dashboard's operator console. `None` (the default) serves
    /// nothing: only a local devnet (`tandem up`) should set it.
    pub demo_keys: Option<PathBuf>,
}

impl GatewayConfig {
    /// Defaults for `data_dir` and `key`.
    pub fn new(data_dir: PathBuf, key: SecretKey) -> Self {
        GatewayConfig {
            data_dir,
            key,
            ledger: LedgerConfig::default(),
            body_bytes_max: 256 * 1024,
            rate_per_s: 20_000,
            rate_burst: 40_000,
            rate_clock: RateClock::default(),
            tick: Duration::from_millis(10),
            l1_step_timeout: Duration::from_secs(30),
            wal_compact_bytes: 64 * 1024 * 1024,
            wal_queue_max: tandem_wal::DEFAULT_QUEUE_MAX,
            demo_keys: None,
        }
    }
}

/// The ledger and the committed state it builds on, under one lock.
pub struct LedgerState {
    /// The ledger.
    pub ledger: Ledger,
    /// The replica's committed state.
    pub base: Snapshot,
}

/// Shared by the HTTP handlers and the tasks.
pub struct Shared {
    /// Configuration.
    pub config: GatewayConfig,
    /// Ledger + base.
    pub state: Mutex<LedgerState>,
    /// The write-ahead log.
    pub wal: Wal,
    /// L1.
    pub l1: Arc<dyn L1>,
    /// The replica.
    pub replica: Replica,
    /// Signatures verified at intake (shared by the ledger and the replica).
    pub sigs: Arc<tandem_core::SigMemo>,
    /// Wakes the ticker before its next tick: a session was committed, or a
    /// block may have made a dependent batch ready to send.
    pub wake: tokio::sync::Notify,
    /// Gateway events for subscribers.
    pub events: broadcast::Sender<Event>,
    /// Replayed blocks, for direct-step waiters.
    pub blocks: broadcast::Sender<Arc<ReplayedBlock>>,
    /// Metrics.
    pub metrics: Metrics,
    /// Set when the replica diverged from L1: the gateway stops accepting.
    pub diverged: AtomicBool,
    /// Set while L1 does not answer.
    pub l1_down: AtomicBool,
    /// Per-client request rate limits.
    pub limits: RateLimits,
    /// Chain id.
    pub chain_id: String,
    /// When the gateway started.
    pub started: Instant,
    /// Records written since the last compaction.
    pub wal_records: AtomicU64,
    /// Size of the WAL right after the last compaction, in bytes.
    pub wal_compacted_bytes: AtomicU64,
    /// Ticker rounds run (for tests that wait for a number of ticks).
    pub ticks: AtomicU64,
    /// Batches L1 or its RPC refused.
    pub refusals: Mutex<Refusals>,
}

/// Batches L1 or its RPC refused, for `/v1/status`.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Refusals {
    /// How many, since the gateway started.
    pub total: u64,
    /// The latest one.
    pub last: Option<Refusal>,
}

/// One refused batch.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Refusal {
    /// Stable code: a CheckTx code name (e.g. `too_large`), `tx_too_large`
    /// (the RPC body limit or the mempool's `max_tx_bytes`), or `rpc_error`
    /// (any other error a validator answered with).
    pub code: String,
    /// What L1 said.
    pub detail: String,
    /// The session whose batch it was.
    pub session: tandem_core::Hash,
    /// The batch's size in bytes.
    pub tx_bytes: usize,
    /// Gateway clock (ms since the epoch).
    pub at_ms: u64,
}

/// Batches broadcast at once by one ticker round. Enough to keep CometBFT's
/// mempool fed without opening a connection per session.
const BROADCASTS_IN_FLIGHT_MAX: usize = 16;

/// How often clients idle in the rate limiter are forgotten.
const LIMITS_SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Milliseconds since the Unix epoch: the gateway's estimate of block time.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// The chain's genesis: saved in the data folder on first contact, so a
/// restarted gateway can come up (and keep answering) while L1 is down.
async fn genesis(l1: &dyn L1, data_dir: &std::path::Path) -> anyhow::Result<(String, Genesis)> {
    let path = data_dir.join("genesis.json");
    if let Ok(bytes) = std::fs::read(&path) {
        let doc: serde_json::Value = serde_json::from_slice(&bytes).context("reading the saved genesis")?;
        let chain_id = doc["chain_id"].as_str().context("saved genesis has no chain_id")?.to_string();
        let genesis = serde_json::from_value(doc["app_state"].clone()).context("saved genesis app_state")?;
        // The folder may outlive its chain (a devnet re-created with the same
        // chain id): if L1 answers, its genesis must be the saved one, or the
        // replica and the log describe a chain that no longer exists.
        match tokio::time::timeout(Duration::from_secs(3), l1.genesis()).await {
            Ok(Ok((l1_chain, l1_state))) => {
                let l1_state: serde_json::Value = serde_json::from_slice(&l1_state).unwrap_or_default();
                if l1_chain != chain_id || l1_state != doc["app_state"] {
                    anyhow::bail!(
                        "the data folder {} belongs to another chain than the one L1 serves (saved: chain {chain_id:?}; L1: chain {l1_chain:?}{}); \
                         start this gateway with an empty data folder, or point it at the chain the folder was made for",
                        data_dir.display(),
                        if l1_chain == chain_id { " with another genesis" } else { "" }
                    );
                }
            }
            _ => tracing::warn!("L1 not reachable at start; trusting the saved genesis"),
        }
        return Ok((chain_id, genesis));
    }
    let mut delay = Duration::from_millis(200);
    let (chain_id, app_state) = loop {
        match l1.genesis().await {
            Ok(g) => break g,
            Err(e) => {
                tracing::warn!(error = %e, "waiting for L1 to read the genesis");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        }
    };
    let genesis = Genesis::from_json(&app_state)?;
    let doc = serde_json::json!({ "chain_id": chain_id, "app_state": serde_json::from_slice::<serde_json::Value>(&app_state).unwrap_or_default() });
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&doc)?)?;
    std::fs::rename(&tmp, &path)?;
    Ok((chain_id, genesis))
}

/// A started gateway.
pub struct Gateway {
    /// State shared with handlers.
    pub shared: Arc<Shared>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Gateway {
    /// Recover from the data folder, catch up with L1 as far as it answers,
    /// and start the follower and the ticker.
    pub async fn start(config: GatewayConfig, l1: Arc<dyn L1>) -> anyhow::Result<Gateway> {
        std::fs::create_dir_all(&config.data_dir).with_context(|| format!("creating {}", config.data_dir.display()))?;
        let (chain_id, genesis) = genesis(l1.as_ref(), &config.data_dir).await?;
        let ledger = Ledger::new(chain_id.clone(), config.key.clone(), config.ledger.clone());
        let sigs = ledger.sigs();
        let replica = Replica::open(&config.data_dir.join("replica"), &chain_id, &genesis, sigs.clone())?;
        let metrics = Metrics::new();
        let fsync_hist = metrics.wal_fsync_seconds.clone();
        let wal_config = WalConfig {
            on_fsync: Some(Arc::new(move |d: Duration, _n: usize| fsync_hist.observe(d.as_secs_f64()))),
            queue_max: config.wal_queue_max,
            ..WalConfig::default()
        };
        let (wal, recovered) = Wal::open(&config.data_dir.join("wal"), wal_config).context("opening the WAL")?;
        if recovered.torn_tail_bytes > 0 {
            tracing::warn!(bytes = recovered.torn_tail_bytes, at = ?recovered.truncated_at, "dropped a torn WAL tail");
        }
        let records = recovered
            .records
            .iter()
            .map(|r| borsh::from_slice::<WalRecord>(r))
            .collect::<Result<Vec<_>, _>>()
            .context("a checksummed WAL record does not decode")?;
        let (events, _) = broadcast::channel(4096);
        let (blocks, _) = broadcast::channel(256);
        let shared = Arc::new(Shared {
            limits: RateLimits::new(config.rate_per_s, config.rate_burst, config.rate_clock.clone()),
            state: Mutex::new(LedgerState { ledger, base: replica.snapshot() }),
            config,
            wal,
            l1,
            replica,
            sigs,
            wake: tokio::sync::Notify::new(),
            events,
            blocks,
            metrics,
            diverged: AtomicBool::new(false),
            l1_down: AtomicBool::new(false),
            chain_id,
            started: Instant::now(),
            wal_records: AtomicU64::new(0),
            wal_compacted_bytes: AtomicU64::new(0),
            ticks: AtomicU64::new(0),
            refusals: Mutex::new(Refusals::default()),
        });
        // Catch up before deciding what the log's sessions still need.
        if let Err(e) = catch_up(&shared).await {
            tracing::warn!(error = %e, "L1 not reachable at start; recovering against the replica's last state");
        }
        let n = records.len();
        let (sessions, steps) = {
            let mut st = shared.ledger();
            let st = &mut *st;
            st.ledger.recover(&st.base, now_ms(), records)
        };
        tracing::info!(records = n, sessions, steps, height = shared.replica.height(), "gateway recovered");
        let reservation = shared.wal.reserve().context("reserving the WAL for its first compaction")?;
        compact(&shared, reservation).await?;
        let tasks = vec![tokio::spawn(follow(shared.clone())), tokio::spawn(tick(shared.clone()))];
        Ok(Gateway { shared, tasks })
    }
}

/// Rewrite the WAL with exactly the live sessions' records, into a place
/// reserved in its queue.
async fn compact(shared: &Shared, reservation: Reservation) -> anyhow::Result<()> {
    let (wait, bytes) = {
        let st = shared.ledger();
        let records: Vec<Vec<u8>> = st.ledger.wal_records().iter().map(|r| borsh::to_vec(r).expect("encoding to a Vec")).collect();
        shared.wal_records.store(records.len() as u64, Ordering::Relaxed);
        let bytes: usize = records.iter().map(|r| tandem_wal::HEADER_LEN + r.len()).sum();
        (reservation.enqueue_rewrite(records)?, bytes as u64)
    };
    wait.await.context("compacting the WAL")?;
    shared.wal_compacted_bytes.store(bytes, Ordering::Relaxed);
    Ok(())
}

/// Whether a log of `file_len` bytes is due for compaction: larger than the
/// threshold and than twice its size after the last compaction.
pub fn compaction_due(file_len: u64, compacted_len: u64, threshold: u64) -> bool {
    file_len > threshold.max(compacted_len.saturating_mul(2))
}

/// Replay every block L1 has that the replica has not.
async fn catch_up(shared: &Arc<Shared>) -> Result<(), L1Error> {
    let latest = shared.l1.latest_height().await?;
    while shared.replica.height() < latest {
        if shared.diverged.load(Ordering::Relaxed) {
            return Ok(());
        }
        let next = shared.replica.height() + 1;
        let block = shared.l1.block(next).await?;
        let s = shared.clone();
        let replayed = tokio::task::spawn_blocking(move || {
            let replayed = s.replica.apply(&block, now_ms())?;
            let own = s.replica.batches_signed_by(&block, &s.config.key.public());
            Ok::<_, ReplicaError>((replayed, own))
        })
        .await
        .map_err(|e| L1Error::Rpc(format!("the replay task failed: {e}")))?;
        match replayed {
            Ok((replayed, own)) => take_block(shared, replayed, &own),
            Err(ReplicaError::Diverged { height, ours, theirs }) => {
                tracing::error!(height, ours, theirs, "the replica diverged from L1; refusing new steps");
                shared.diverged.store(true, Ordering::Relaxed);
                return Ok(());
            }
            Err(e) => return Err(L1Error::Rpc(e.to_string())),
        }
    }
    Ok(())
}

/// Hand a replayed block to the ledger and to subscribers. `own` are the
/// block's session batches signed with this gateway's key.
fn take_block(shared: &Arc<Shared>, replayed: ReplayedBlock, own: &[(String, tandem_core::message::SessionBatch)]) {
    let now = now_ms();
    let events = {
        let mut st = shared.ledger();
        let st = &mut *st;
        st.base = shared.replica.snapshot();
        st.ledger.audit_own_batches(&replayed, own);
        let events = st.ledger.on_block(&st.base, &replayed, now);
        for e in &events {
            if let Event::SessionFinalized { session, complete: true, .. } = e {
                if let Some(s) = st.ledger.session(session) {
                    if let Some(c) = s.commit_ms {
                        shared.metrics.finality_seconds.observe(now.saturating_sub(c) as f64 / 1000.0);
                    }
                }
            }
        }
        update_gauges(shared, &st.ledger);
        events
    };
    shared.metrics.l1_height.set(replayed.height as i64);
    let _ = shared.blocks.send(Arc::new(replayed));
    for e in events {
        let _ = shared.events.send(e);
    }
    shared.wake.notify_one();
}

fn update_gauges(shared: &Shared, ledger: &Ledger) {
    let c = ledger.counts();
    let m = &shared.metrics;
    m.sessions.with_label_values(&["open"]).set(c.open as i64);
    m.sessions.with_label_values(&["committing"]).set(c.committing as i64);
    m.sessions.with_label_values(&["finalized"]).set(c.finalized as i64);
    m.sessions.with_label_values(&["rejected"]).set(c.rejected as i64);
    m.sessions.with_label_values(&["expired"]).set(c.expired as i64);
    m.pending_steps.set(ledger.pending_steps() as i64);
    m.mismatches.set(ledger.mismatches() as i64);
    m.foreign_batches.set(ledger.foreign_batches() as i64);
}

/// The follower: wakes on each new height and replays up to it.
async fn follow(shared: Arc<Shared>) {
    let mut heights = shared.l1.subscribe_heights();
    loop {
        match catch_up(&shared).await {
            Ok(()) => shared.l1_down.store(false, Ordering::Relaxed),
            Err(e) => {
                if !shared.l1_down.swap(true, Ordering::Relaxed) {
                    tracing::warn!(error = %e, "L1 unreachable; answering tentatively until it returns");
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
                continue;
            }
        }
        // Wait for the next height, but re-check now and then in case a
        // notification was missed.
        let _ = tokio::time::timeout(Duration::from_secs(1), heights.changed()).await;
    }
}

/// The ticker: expiries, checkpoints, batch sends, WAL compaction.
async fn tick(shared: Arc<Shared>) {
    let mut interval = tokio::time::interval(shared.config.tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut backoff_until: Option<Instant> = None;
    let mut limits_swept = Instant::now();
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            () = shared.wake.notified() => {}
        }
        shared.ticks.fetch_add(1, Ordering::Relaxed);
        let now = now_ms();
        let (outgoing, expired, waits) = {
            let mut st = shared.ledger();
            // Idle sessions expire; the log keeps it, so that a restart does
            // not reopen them. A full WAL queue defers an expiry to a later
            // tick: nothing is decided without its place in the log.
            let mut expired = Vec::new();
            let mut waits = Vec::new();
            for id in st.ledger.due_expiries(now) {
                let reservation = match shared.wal.reserve() {
                    Ok(r) => r,
                    Err(WalError::Backpressure) => {
                        shared.metrics.wal_backpressure.inc();
                        break;
                    }
                    Err(e) => fatal_wal(&e),
                };
                if let Some(event) = st.ledger.expire(&id) {
                    let rec = borsh::to_vec(&WalRecord::Expired(id)).expect("borsh encoding into a Vec cannot fail");
                    waits.push(reservation.enqueue(vec![rec]).unwrap_or_else(|e| fatal_wal(&e)));
                    expired.push(event);
                }
            }
            let ready = backoff_until.is_none_or(|t| Instant::now() >= t);
            // Only what the log has fsynced goes to L1 (see `Ledger::batches_to_send`).
            let durable = shared.wal.stats().records_appended;
            let outgoing = if ready { st.ledger.batches_to_send(now, durable) } else { Vec::new() };
            if !expired.is_empty() {
                update_gauges(&shared, &st.ledger);
            }
            (outgoing, expired, waits)
        };
        for w in waits {
            if let Err(e) = w.await {
                fatal_wal(&e);
            }
        }
        for e in expired {
            let _ = shared.events.send(e);
        }
        // Batches go out concurrently: the ledger only offers a session whose
        // dependencies are final, so no two batches in one round depend on
        // each other's order.
        let results: Vec<(tandem_core::Hash, usize, Result<tandem_rpc::Broadcast, L1Error>)> = futures::stream::iter(outgoing)
            .map(|out| {
                let l1 = shared.l1.clone();
                async move { (out.session, out.tx.len(), l1.broadcast_tx_sync(out.tx).await) }
            })
            .buffer_unordered(BROADCASTS_IN_FLIGHT_MAX)
            .collect()
            .await;
        let mut failed = false;
        for (session, tx_bytes, result) in results {
            match result {
                Ok(b) if b.code == 0 => {}
                Ok(b) => {
                    // CheckTx is stateless: a refusal means the batch itself
                    // is broken, and re-sending cannot help.
                    let code = tandem_core::Code::from_number(b.code).map_or("l1_refused", |c| c.name());
                    refused(&shared, session, tx_bytes, code, &b.log);
                    let events = shared.ledger().ledger.reject(&session, None, code, b.log);
                    for e in events {
                        let _ = shared.events.send(e);
                    }
                }
                Err(L1Error::AlreadyInMempool) => {}
                Err(L1Error::TooLarge(detail)) => {
                    // A validator's RPC or mempool limit is below what
                    // `limits.rs` assumes: the same bytes would be refused
                    // forever, so the session's batches get smaller.
                    refused(&shared, session, tx_bytes, "tx_too_large", &detail);
                    let mut st = shared.ledger();
                    if !st.ledger.shrink_batches(&session, tx_bytes) {
                        let events = st.ledger.reject(&session, None, "tx_too_large", detail);
                        drop(st);
                        for e in events {
                            let _ = shared.events.send(e);
                        }
                    }
                }
                Err(L1Error::Rpc(detail)) => {
                    // A validator answered with an error (e.g. a full
                    // mempool): sent again after a pause, and never silently.
                    refused(&shared, session, tx_bytes, "rpc_error", &detail);
                    shared.ledger().ledger.unsent(&session);
                    failed = true;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "broadcast failed; will retry");
                    shared.ledger().ledger.unsent(&session);
                    failed = true;
                }
            }
        }
        backoff_until = failed.then(|| Instant::now() + Duration::from_millis(250));
        if limits_swept.elapsed() >= LIMITS_SWEEP_EVERY {
            // Bounds the limiter's memory (see `crate::limit`).
            shared.limits.forget_idle();
            limits_swept = Instant::now();
        }
        let compacted = shared.wal_compacted_bytes.load(Ordering::Relaxed);
        if compaction_due(shared.wal.stats().file_len, compacted, shared.config.wal_compact_bytes) {
            // A full queue defers compaction to a later tick.
            match shared.wal.reserve() {
                Ok(reservation) => {
                    if let Err(e) = compact(&shared, reservation).await {
                        tracing::error!(error = %e, "WAL compaction failed");
                    }
                }
                Err(WalError::Backpressure) => shared.metrics.wal_backpressure.inc(),
                Err(e) => fatal_wal(&e),
            }
        }
    }
}

/// Record a batch L1 or its RPC refused: an error in the log, a count per
/// code in the metrics, the latest in `/v1/status`.
fn refused(shared: &Shared, session: tandem_core::Hash, tx_bytes: usize, code: &str, detail: &str) {
    tracing::error!(session = %session, tx_bytes, code, detail, "L1 refused a batch");
    shared.metrics.l1_refused_batches.with_label_values(&[code]).inc();
    let mut r = shared.refusals.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    r.total += 1;
    r.last = Some(Refusal { code: code.to_string(), detail: detail.to_string(), session, tx_bytes, at_ms: now_ms() });
}

/// The answer to a request the WAL's queue has no room for: 503
/// `backlog_full` (the API adds `Retry-After`). Any other WAL failure is a
/// failure of the log and stops the process.
pub fn wal_refusal(shared: &Shared, e: WalError) -> crate::error::GwError {
    match e {
        WalError::Backpressure => {
            shared.metrics.wal_backpressure.inc();
            crate::error::GwError::new(
                crate::error::Kind::Unavailable,
                "backlog_full",
                "the write-ahead log's queue is full; retry shortly",
            )
        }
        e => fatal_wal(&e),
    }
}

/// A failure of the WAL itself (I/O, poisoned, closed) after a decision
/// leaves memory ahead of the disk: the only safe reaction is to stop, so
/// that nothing unlogged is ever submitted. A full queue is not such a
/// failure: see [`wal_refusal`].
pub fn fatal_wal(e: &tandem_wal::WalError) -> ! {
    tracing::error!(error = %e, "the write-ahead log failed; stopping the gateway");
    eprintln!("fatal: the write-ahead log failed: {e}");
    std::process::exit(70);
}

impl Shared {
    /// The ledger and its committed base, locked. A panic in one request
    /// while holding the lock must not wedge every later one: the ledger's
    /// methods decide before they mutate, so the state a panicking holder
    /// leaves is one a completed call could have left, and the lock is taken
    /// over rather than refused.
    pub fn ledger(&self) -> std::sync::MutexGuard<'_, LedgerState> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Status of a session for the API (None when unknown here).
    pub fn session_status(&self, id: &tandem_core::Hash) -> Option<SessionStatus> {
        self.ledger().ledger.session(id).map(|s| s.status.clone())
    }
}
