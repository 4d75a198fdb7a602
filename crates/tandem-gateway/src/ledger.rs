//! The gateway's tentative world, sans I/O: open sessions, their accepted
//! steps, package locks, and the overlay of every pending step on top of L1's
//! committed state (the replica). The service around it feeds it requests,
//! finalized blocks and the time, and does the I/O (WAL, RPC, HTTP).
//!
//! How a step is decided here: [`Ledger::accept_step`] runs
//! `tandem_core::apply_verified` — the function every validator runs — on
//! `committed state + pending writes`, so the outcome it returns is the one L1
//! will compute, unless something the gateway cannot see happens first (a
//! direct L1 step on the same package, another gateway). Such conflicts are
//! detected when the block arrives: the pending steps are replayed on the new
//! committed state and a session whose outcomes change is rejected, never
//! submitted with a wrong claim.
//!
//! Closing and checkpoints: only a session's owner closes it, with a signed
//! close ([`SignedSessionClose`]) that travels in the session's last batch so
//! that L1 checks it too. Before that, the gateway checkpoints an open
//! session by itself (after `auto_commit_steps` unsent steps or
//! `auto_commit_idle_ms` without a step): it sends the steps so far in a
//! batch without a close, and the session stays open. An open session idle
//! for `session_idle_expire_ms` expires: an empty one is dropped, one with
//! steps has them all sent (without a close) and takes no more.
//!
//! Locks: a package touched by an open session is locked to it, checkpoints
//! or not. Once the session is closed (or expired) the lock is released and
//! later sessions may build on its tentative state; such a session depends on
//! it, is submitted only after its steps are in flight, and is rejected with
//! it if it fails.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use serde::Serialize;
use tandem_core::apply::{apply_verified, open_session, Ctx, TxResult, VerifiedStep};
use tandem_core::kv::{KvRead, Overlay, WriteSet};
use tandem_core::limits::{batch_step_bytes, BATCH_BYTES_MAX, BATCH_OVERHEAD_BYTES_MAX, BATCH_STEPS_MAX, STEP_BYTES_MAX};
use tandem_core::message::{BatchBody, Receipt, ReceiptBody, SessionBatch, SignedSessionClose, SignedSessionOpen, SignedStep, Tx};
use tandem_core::model::Package;
use tandem_core::state::StateRead;
use tandem_core::workflow::INTAKE;
use tandem_core::{Hash, Outcome, SecretKey, SigMemo};

use crate::error::{GwError, Kind};

#[path = "ledger_audit.rs"]
mod audit;

/// Limits and timers of the ledger.
#[derive(Clone, Debug)]
pub struct LedgerConfig {
    /// Checkpoint an open session (send its steps to L1 without closing it)
    /// once it holds this many unsent steps.
    pub auto_commit_steps: usize,
    /// Checkpoint an open session after this long without a new step (ms).
    pub auto_commit_idle_ms: u64,
    /// An open session this long without a step (ms) expires: an empty one
    /// is dropped, one with steps is sent whole and takes no more steps.
    pub session_idle_expire_ms: u64,
    /// Steps one session may hold at this gateway.
    pub session_steps_max: usize,
    /// Live sessions at once (open, closing, or expired with steps not yet
    /// final), over all owners.
    pub sessions_max: usize,
    /// Open sessions one owner may hold at once.
    pub owner_sessions_max: usize,
    /// Accepted steps not yet final on L1, over all sessions: the backlog
    /// that bounds how much tentative work can be outstanding when L1 is slow
    /// or away. Past it, new steps get 503 `backlog_full`.
    pub pending_steps_max: usize,
    /// Re-send a batch L1 has not included after this long (ms).
    pub resend_after_ms: u64,
    /// Finished sessions kept for queries.
    pub finished_kept: usize,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        LedgerConfig {
            auto_commit_steps: 64,
            auto_commit_idle_ms: 5_000,
            session_idle_expire_ms: 600_000,
            session_steps_max: 1_000,
            sessions_max: 10_000,
            owner_sessions_max: 64,
            pending_steps_max: 50_000,
            resend_after_ms: 5_000,
            finished_kept: 10_000,
        }
    }
}

/// Where a session is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum SessionStatus {
    /// Taking steps (checkpoints may have made some of them final already).
    Open,
    /// Closed by its owner; its remaining steps and the close are being
    /// finalized on L1.
    Committing,
    /// Every step and the owner's close final on L1.
    Finalized,
    /// Idle too long: takes no more steps. Its steps (if any) are sent to L1
    /// without a close; L1 keeps the session open, but this gateway, the only
    /// one that may submit it, sends nothing more.
    Expired,
    /// Refused, whole (by L1, or by the gateway after a conflict).
    Rejected {
        /// The sequence number of the failing step, when one failed.
        seq: Option<u64>,
        /// Stable code.
        code: String,
        /// Details.
        detail: String,
    },
}

/// Where a step became final.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finality {
    /// L1 block height.
    pub height: u64,
    /// Transaction hash (uppercase hex, as CometBFT prints it).
    pub tx_hash: String,
    /// Gateway clock when the gateway saw it (ms since the epoch).
    pub seen_ms: u64,
}

/// One accepted step.
#[derive(Clone, Debug, Serialize)]
pub struct StepRecord {
    /// The signed step.
    pub signed: SignedStep,
    /// Its predicted outcome.
    pub outcome: Outcome,
    /// Gateway clock when it was acknowledged.
    pub accepted_ms: u64,
    /// Its record's position in the write-ahead log, counted in records
    /// appended since the ledger started (0: recovered from the log, so
    /// durable). It may be sent to L1 only once the log has fsynced this
    /// many records.
    pub log_pos: u64,
    /// Set once final on L1.
    pub finality: Option<Finality>,
    /// The gateway's signed receipt, as answered.
    pub receipt: Receipt,
}

#[derive(Clone, Debug)]
struct InFlight {
    tx_hash: String,
    last_seq: u64,
    /// The batch carries the owner's close.
    closes: bool,
    sent_ms: u64,
    /// Sent while a session it depends on was in flight but not yet final.
    optimistic: bool,
}

/// A session at this gateway.
#[derive(Clone, Debug)]
pub struct Session {
    /// Its id.
    pub id: Hash,
    /// The owner's signed open request.
    pub open: SignedSessionOpen,
    /// Where it is.
    pub status: SessionStatus,
    /// Every step accepted, in order.
    pub steps: Vec<StepRecord>,
    /// Last sequence number final on L1.
    pub chain_seq: u64,
    /// Gateway clock at open.
    pub opened_ms: u64,
    /// Gateway clock at the commit request.
    pub commit_ms: Option<u64>,
    /// The owner's close, once asked for.
    pub close: Option<SignedSessionClose>,
    /// The close's record's position in the write-ahead log (see
    /// [`StepRecord::log_pos`]; 0 when recovered from the log).
    close_pos: u64,
    /// Steps up to this seq are to be sent even while the session is open
    /// (a checkpoint).
    checkpoint: u64,
    last_activity_ms: u64,
    locks: BTreeSet<String>,
    deps: BTreeSet<Hash>,
    inflight: Option<InFlight>,
    /// A batch of it sent while a dependency was only in flight failed: it
    /// is sent again only once every dependency is final, and a failure
    /// then is real.
    after_final_deps: bool,
    /// Encoded size its batches are filled up to: [`BATCH_BYTES_MAX`], or
    /// less after L1 refused one of its batches for its size.
    batch_bytes_max: usize,
}

impl Session {
    /// An open session with no steps here, final on L1 up to `chain_seq`.
    fn new(open: SignedSessionOpen, chain_seq: u64, now_ms: u64) -> Session {
        Session {
            id: open.open.session_id(),
            open,
            status: SessionStatus::Open,
            steps: Vec::new(),
            chain_seq,
            opened_ms: now_ms,
            commit_ms: None,
            close: None,
            close_pos: 0,
            checkpoint: 0,
            last_activity_ms: now_ms,
            locks: BTreeSet::new(),
            deps: BTreeSet::new(),
            inflight: None,
            after_final_deps: false,
            batch_bytes_max: BATCH_BYTES_MAX,
        }
    }

    /// The step with sequence number `seq`, if held here. Steps are held in
    /// consecutive seq order from the first one accepted here (intake and
    /// recovery both append only the next seq), so this is an index, not a
    /// search.
    pub fn step(&self, seq: u64) -> Option<&StepRecord> {
        let first = self.steps.first()?.signed.step.seq;
        let at = usize::try_from(seq.checked_sub(first)?).ok()?;
        self.steps.get(at).filter(|r| r.signed.step.seq == seq)
    }

    fn pending(&self) -> impl Iterator<Item = &StepRecord> {
        self.steps.iter().filter(|s| s.finality.is_none())
    }
    /// Still the gateway's business: open, closing, or expired with steps
    /// not yet final.
    fn live(&self) -> bool {
        match self.status {
            SessionStatus::Open | SessionStatus::Committing => true,
            SessionStatus::Expired => self.pending().next().is_some(),
            SessionStatus::Finalized | SessionStatus::Rejected { .. } => false,
        }
    }
    /// The seq of the last step accepted here, or final on L1.
    fn last_seq(&self) -> u64 {
        self.steps.last().map_or(self.chain_seq, |s| s.signed.step.seq)
    }
    /// Up to which seq steps may be sent now.
    fn sendable(&self) -> u64 {
        match self.status {
            SessionStatus::Open => self.checkpoint,
            SessionStatus::Committing | SessionStatus::Expired => self.last_seq(),
            SessionStatus::Finalized | SessionStatus::Rejected { .. } => 0,
        }
    }
    /// Released from its locks for good: closed by its owner or expired.
    fn done_taking_steps(&self) -> bool {
        matches!(self.status, SessionStatus::Committing | SessionStatus::Expired)
    }
}

/// What the gateway tells subscribers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// A session was opened.
    SessionOpened {
        /// Session.
        session: Hash,
        /// Owner key.
        owner: String,
    },
    /// A step was acknowledged.
    StepAccepted {
        /// Session.
        session: Hash,
        /// Seq.
        seq: u64,
        /// Package.
        package_id: String,
        /// Action.
        action: String,
        /// Predicted stage.
        stage: String,
    },
    /// A session stopped taking steps and is being finalized.
    SessionCommitting {
        /// Session.
        session: Hash,
    },
    /// A session was idle too long and takes no more steps.
    SessionExpired {
        /// Session.
        session: Hash,
        /// Steps it holds that are not final yet (they are still sent).
        pending: usize,
    },
    /// Steps of a session became final.
    SessionFinalized {
        /// Session.
        session: Hash,
        /// Up to this seq.
        last_seq: u64,
        /// L1 height.
        height: u64,
        /// Transaction.
        tx_hash: String,
        /// Whether the whole session is now final (closed, or expired with
        /// every step final).
        complete: bool,
    },
    /// A session was rejected.
    SessionRejected {
        /// Session.
        session: Hash,
        /// Failing step, if one.
        seq: Option<u64>,
        /// Code.
        code: String,
        /// Details.
        detail: String,
    },
}

/// What the gateway acknowledges for a step.
#[derive(Clone, Debug, Serialize)]
pub struct Accepted {
    /// The predicted outcome.
    pub outcome: Outcome,
    /// Its hash (what the batch will claim).
    pub outcome_hash: Hash,
    /// The package as predicted after the step.
    pub package: Package,
    /// The gateway's signed receipt.
    pub receipt: Receipt,
}

/// Sessions this gateway holds, by state (finished ones as far as kept).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SessionCounts {
    /// Taking steps.
    pub open: usize,
    /// Closed by their owner, not yet final.
    pub committing: usize,
    /// Closed and final.
    pub finalized: usize,
    /// Rejected.
    pub rejected: usize,
    /// Expired (idle too long).
    pub expired: usize,
}

/// How far a dependency is (see `Ledger::dependency`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dependency {
    /// Final on L1 (or forgotten, which only final sessions are).
    Final,
    /// Its last step is broadcast, not yet final.
    InFlight,
    /// Not yet sent whole.
    Pending,
}

/// A batch to broadcast.
#[derive(Clone, Debug)]
pub struct Outgoing {
    /// The session.
    pub session: Hash,
    /// Transaction bytes.
    pub tx: Vec<u8>,
    /// Its hash (uppercase hex).
    pub tx_hash: String,
    /// Last seq it carries.
    pub last_seq: u64,
}

/// A finalized block as replayed by the replica: each transaction's hash
/// and result.
#[derive(Clone, Debug)]
pub struct ReplayedBlock {
    /// Height.
    pub height: u64,
    /// (tx hash, result) per transaction.
    pub results: Vec<(String, TxResult)>,
}

/// Uppercase hex SHA-256 of transaction bytes (CometBFT's transaction hash).
pub fn tx_hash(tx: &[u8]) -> String {
    use sha2::Digest;
    hex::encode_upper(sha2::Sha256::digest(tx))
}

/// A read view of committed state plus pending writes.
pub struct Tentative<'a, B> {
    base: &'a B,
    writes: &'a WriteSet,
}

impl<B: KvRead> KvRead for Tentative<'_, B> {
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        match self.writes.get(key) {
            Some(v) => v.clone(),
            None => self.base.get(key),
        }
    }
}

/// The ledger.
pub struct Ledger {
    chain_id: String,
    key: SecretKey,
    config: LedgerConfig,
    /// Signatures found valid at intake, shared with the replica so that
    /// replaying this gateway's own batches does not verify them again.
    sigs: Arc<SigMemo>,
    sessions: BTreeMap<Hash, Session>,
    /// Order in which live sessions' steps were accepted: (session, seq).
    order: Vec<(Hash, u64)>,
    /// Sessions opened, in order (their open requests replay first).
    open_order: Vec<Hash>,
    writes: WriteSet,
    locks: BTreeMap<String, Hash>,
    /// Last pending writer of each package (for dependencies).
    writer: BTreeMap<String, Hash>,
    finished: VecDeque<Hash>,
    pending_steps: usize,
    mismatches: u64,
    /// Records this ledger asked to be logged since it started: every
    /// decision that changes what a restart must rebuild (an open, a step, a
    /// commit) is one record, appended in decision order.
    logged: u64,
    /// Hashes of the batches this gateway broadcast, newest last (bounded).
    sent: BTreeSet<String>,
    sent_order: VecDeque<String>,
    /// Set once [`Ledger::recover`] ran: from then on the ledger knows every
    /// batch it built, and can tell one it did not.
    recovered: bool,
    foreign_batches: u64,
}

impl Ledger {
    /// An empty ledger for `chain_id`, signing receipts and batches with `key`.
    pub fn new(chain_id: String, key: SecretKey, config: LedgerConfig) -> Ledger {
        Ledger {
            chain_id,
            key,
            config,
            sigs: Arc::new(SigMemo::default()),
            sessions: BTreeMap::new(),
            order: Vec::new(),
            open_order: Vec::new(),
            writes: WriteSet::new(),
            locks: BTreeMap::new(),
            writer: BTreeMap::new(),
            finished: VecDeque::new(),
            pending_steps: 0,
            mismatches: 0,
            logged: 0,
            sent: BTreeSet::new(),
            sent_order: VecDeque::new(),
            recovered: false,
            foreign_batches: 0,
        }
    }

    fn ctx(&self, now_ms: u64) -> Ctx<'_> {
        Ctx { chain_id: &self.chain_id, time_ms: now_ms, workflow: &INTAKE, sigs: Some(&self.sigs) }
    }

    /// The signature memo intake fills (see [`SigMemo`]).
    pub fn sigs(&self) -> Arc<SigMemo> {
        self.sigs.clone()
    }

    /// The chain id.
    pub fn chain_id(&self) -> &str {
        &self.chain_id
    }

    /// Committed state plus every pending step.
    pub fn tentative<'a, B: KvRead>(&'a self, base: &'a B) -> Tentative<'a, B> {
        Tentative { base, writes: &self.writes }
    }

    /// A session.
    pub fn session(&self, id: &Hash) -> Option<&Session> {
        self.sessions.get(id)
    }

    /// What this gateway already answered to a step at the same session and
    /// seq as `signed`, while it holds that session: `Ok` with the record
    /// when `signed` is byte-identical to the accepted step (a re-send gets
    /// the original answer), `Err(bad_sequence)` when another step took that
    /// seq, `None` when it holds no step there.
    pub fn prior_step(&self, signed: &SignedStep) -> Option<Result<&StepRecord, GwError>> {
        let s = &signed.step;
        let rec = self.sessions.get(&s.session)?.step(s.seq)?;
        Some(if rec.signed == *signed { Ok(rec) } else { Err(GwError::seq_taken(s.session, s.seq)) })
    }

    /// Steps accepted and not yet final.
    pub fn pending_steps(&self) -> usize {
        self.pending_steps
    }

    /// Sessions by state.
    pub fn counts(&self) -> SessionCounts {
        let mut c = SessionCounts::default();
        for s in self.sessions.values() {
            match s.status {
                SessionStatus::Open => c.open += 1,
                SessionStatus::Committing => c.committing += 1,
                SessionStatus::Finalized => c.finalized += 1,
                SessionStatus::Rejected { .. } => c.rejected += 1,
                SessionStatus::Expired => c.expired += 1,
            }
        }
        c
    }

    /// Sessions L1 rejected although the gateway had accepted them, or whose
    /// prediction a block overturned.
    pub fn mismatches(&self) -> u64 {
        self.mismatches
    }

    /// Batches signed with this gateway's key that it never built, seen
    /// finalized on L1 (see [`Ledger::audit_own_batches`]).
    pub fn foreign_batches(&self) -> u64 {
        self.foreign_batches
    }

    /// Open a session from its signed request.
    pub fn open_session(&mut self, base: &impl KvRead, now_ms: u64, open: SignedSessionOpen) -> Result<Hash, GwError> {
        if open.open.gateway != Some(self.key.public()) {
            return Err(GwError::new(Kind::Forbidden, "wrong_gateway", "the session names another gateway (or none)"));
        }
        let owner = open.open.owner;
        let owned = self.sessions.values().filter(|s| s.status == SessionStatus::Open && s.open.open.owner == owner).count();
        if owned >= self.config.owner_sessions_max {
            return Err(GwError::new(
                Kind::RateLimited,
                "too_many_owner_sessions",
                format!(
                    "{owner} holds {} open sessions here, the limit per owner; commit one (idle ones expire after {} ms)",
                    self.config.owner_sessions_max, self.config.session_idle_expire_ms
                ),
            ));
        }
        let live = self.sessions.values().filter(|s| s.live()).count();
        if live >= self.config.sessions_max {
            return Err(GwError::new(
                Kind::Unavailable,
                "too_many_sessions",
                format!("this gateway holds {} live sessions, its limit", self.config.sessions_max),
            ));
        }
        let id = open.open.session_id();
        if self.sessions.contains_key(&id) || base.session(&id).is_some() {
            return Err(GwError::new(Kind::Conflict, "session_exists", format!("session {id} exists already")));
        }
        let writes = std::mem::take(&mut self.writes);
        let mut overlay = Overlay::with_writes(base, writes);
        let ctx = Ctx { chain_id: &self.chain_id, time_ms: now_ms, workflow: &INTAKE, sigs: Some(&self.sigs) };
        let result = open_session(&mut overlay, &ctx, &open);
        self.writes = overlay.into_parts().1;
        result?;
        self.open_order.push(id);
        self.sessions.insert(id, Session::new(open, 0, now_ms));
        self.logged += 1;
        Ok(id)
    }

    /// Decide a step (signature already checked) and, if accepted, hold it.
    pub fn accept_step(&mut self, base: &impl KvRead, now_ms: u64, step: VerifiedStep<'_>) -> Result<Accepted, GwError> {
        let s = &step.signed().step;
        let session = self.sessions.get(&s.session).ok_or_else(|| GwError::unknown_session(s.session))?;
        if session.status == SessionStatus::Expired {
            return Err(GwError::new(
                Kind::Conflict,
                "session_expired",
                format!("session {} expired after {} ms without a step; open another", s.session, self.config.session_idle_expire_ms),
            ));
        }
        if session.status != SessionStatus::Open {
            return Err(GwError::new(Kind::Conflict, "session_not_open", format!("session {} is {:?}", s.session, session.status)));
        }
        if session.steps.len() >= self.config.session_steps_max {
            return Err(GwError::new(
                Kind::Conflict,
                "session_full",
                format!("a session holds at most {} steps at this gateway; commit and open another", self.config.session_steps_max),
            ));
        }
        if self.pending_steps >= self.config.pending_steps_max {
            return Err(GwError::new(
                Kind::Unavailable,
                "backlog_full",
                format!("{} steps await finality on L1; retry when the backlog drains", self.pending_steps),
            ));
        }
        if let Some(holder) = self.locks.get(&s.package_id) {
            if *holder != s.session {
                return Err(GwError::package_locked(&s.package_id));
            }
        }
        // Every step the workflow accepts fits this bound (a compile-time
        // check in `limits.rs`), so a batch always has room for it; a larger
        // one could never be sent and is refused before it is decided.
        let bytes = borsh::object_length(step.signed()).unwrap_or(usize::MAX);
        if bytes > STEP_BYTES_MAX {
            return Err(GwError::new(
                Kind::TooLarge,
                "step_too_large",
                format!("the step encodes to {bytes} bytes; a step is at most {STEP_BYTES_MAX} bytes"),
            ));
        }
        // Decided over the pending writes without touching them: they take
        // the step's writes only once everything below has succeeded.
        let ctx = self.ctx(now_ms);
        let mut overlay = Overlay::new(self.tentative(base));
        let outcome = apply_verified(&mut overlay, &ctx, step)?;
        let Some(package) = overlay.package(&s.package_id) else {
            return Err(GwError::new(Kind::Internal, "internal", "an accepted step left no package"));
        };
        let step_writes = overlay.into_writes();
        // Building on a committing session's tentative state makes this
        // session depend on it.
        let dep = self.writer.get(&s.package_id).copied().filter(|w| *w != s.session && self.is_live(w));
        let outcome_hash = outcome.hash();
        let receipt = issue_receipt(&self.chain_id, &self.key, s.session, s.seq, &outcome);
        // Decided: from here on nothing fails, so a step is held whole or
        // not at all.
        let Some(session) = self.sessions.get_mut(&s.session) else {
            return Err(GwError::unknown_session(s.session));
        };
        if let Some(d) = dep {
            session.deps.insert(d);
        }
        session.locks.insert(s.package_id.clone());
        session.last_activity_ms = now_ms;
        self.logged += 1;
        session.steps.push(StepRecord {
            signed: step.signed().clone(),
            outcome: outcome.clone(),
            accepted_ms: now_ms,
            finality: None,
            log_pos: self.logged,
            receipt: receipt.clone(),
        });
        self.writes.extend(step_writes);
        self.locks.insert(s.package_id.clone(), s.session);
        self.writer.insert(s.package_id.clone(), s.session);
        self.order.push((s.session, s.seq));
        self.pending_steps += 1;
        Ok(Accepted { outcome, outcome_hash, package, receipt })
    }

    /// Close a session with its owner's signed close, and start finalizing
    /// it: its remaining steps and the close go to L1, its packages are
    /// unlocked. The close must name this session and its last step, and be
    /// signed by its owner. Closing again with a valid close is a no-op.
    /// Closing an open session is a decision the caller logs (one
    /// `WalRecord::Closed`).
    pub fn request_close(&mut self, id: &Hash, close: SignedSessionClose, now_ms: u64) -> Result<(), GwError> {
        let was_open = self.sessions.get(id).is_some_and(|s| s.status == SessionStatus::Open);
        self.close_with(id, close, now_ms)?;
        if was_open {
            self.logged += 1;
            let logged = self.logged;
            if let Some(s) = self.sessions.get_mut(id) {
                s.close_pos = logged;
            }
        }
        Ok(())
    }

    /// Records the ledger has asked to be logged since it started. The
    /// caller appends exactly one log record per decision, in decision order,
    /// so the log's count of fsynced appends tells which decisions are
    /// durable (see [`Ledger::batches_to_send`]).
    pub fn logged(&self) -> u64 {
        self.logged
    }

    /// [`Ledger::request_close`] without logging (recovery replays a logged
    /// close).
    fn close_with(&mut self, id: &Hash, close: SignedSessionClose, now_ms: u64) -> Result<(), GwError> {
        let session = self.sessions.get(id).ok_or_else(|| GwError::unknown_session(id))?;
        let c = &close.close;
        if c.session != *id {
            return Err(GwError::new(Kind::BadRequest, "session_mismatch", "the close names another session than the URL"));
        }
        if c.chain_id != self.chain_id {
            return Err(GwError::new(Kind::BadRequest, "wrong_chain", format!("the close is for chain {:?}", c.chain_id)));
        }
        if c.owner != session.open.open.owner {
            return Err(GwError::new(Kind::Forbidden, "not_session_owner", "only the session's owner may close it"));
        }
        if !close.verify(Some(&self.sigs)) {
            return Err(GwError::new(Kind::Unauthorized, "bad_signature", "the close's signature does not verify"));
        }
        match &session.status {
            SessionStatus::Open => {}
            SessionStatus::Committing | SessionStatus::Finalized => return Ok(()),
            SessionStatus::Rejected { .. } => {
                return Err(GwError::new(Kind::Conflict, "session_rejected", format!("session {id} was rejected")))
            }
            SessionStatus::Expired => {
                return Err(GwError::new(Kind::Conflict, "session_expired", format!("session {id} expired; it takes no close")))
            }
        }
        let last = session.last_seq();
        if c.last_seq != last {
            return Err(GwError::new(
                Kind::Conflict,
                "bad_sequence",
                format!("the close ends at seq {}, the session's last step here is seq {last}", c.last_seq),
            ));
        }
        let session = self.sessions.get_mut(id).expect("found above");
        session.status = SessionStatus::Committing;
        session.commit_ms = Some(now_ms);
        session.close = Some(close);
        self.unlock(id);
        let session = &self.sessions[id];
        if session.steps.is_empty() && session.chain_seq == 0 {
            // Nothing ever reached L1: an empty session is final at once.
            self.sessions.get_mut(id).expect("found above").status = SessionStatus::Finalized;
            self.retire(*id);
        }
        Ok(())
    }

    /// Release the package locks a session holds.
    fn unlock(&mut self, id: &Hash) {
        let Some(session) = self.sessions.get_mut(id) else {
            return;
        };
        for p in std::mem::take(&mut session.locks) {
            if self.locks.get(&p) == Some(id) {
                self.locks.remove(&p);
            }
        }
    }

    /// Mark open sessions due for a checkpoint (step count or idle time):
    /// their steps so far are sent without a close, and they stay open with
    /// their locks. Returns how many were marked.
    pub fn mark_checkpoints(&mut self, now_ms: u64) -> usize {
        let (steps_due, idle_due) = (self.config.auto_commit_steps, self.config.auto_commit_idle_ms);
        let mut marked = 0;
        for s in self.sessions.values_mut().filter(|s| s.status == SessionStatus::Open) {
            let last = s.last_seq();
            let sent = s.checkpoint.max(s.chain_seq);
            if last <= sent {
                continue;
            }
            let unsent = (last - sent) as usize;
            if unsent >= steps_due || now_ms.saturating_sub(s.last_activity_ms) >= idle_due {
                s.checkpoint = last;
                marked += 1;
            }
        }
        marked
    }

    /// Open sessions idle for `session_idle_expire_ms`, due to expire.
    pub fn due_expiries(&self, now_ms: u64) -> Vec<Hash> {
        self.sessions
            .values()
            .filter(|s| s.status == SessionStatus::Open)
            .filter(|s| now_ms.saturating_sub(s.last_activity_ms) >= self.config.session_idle_expire_ms)
            .map(|s| s.id)
            .collect()
    }

    /// Expire an open session: it takes no more steps and no close, its
    /// packages are unlocked, and its steps not yet final are sent (without
    /// a close). One with nothing pending is finished at once.
    pub fn expire(&mut self, id: &Hash) -> Option<Event> {
        let session = self.sessions.get_mut(id).filter(|s| s.status == SessionStatus::Open)?;
        session.status = SessionStatus::Expired;
        let pending = session.pending().count();
        self.unlock(id);
        if pending == 0 {
            self.retire(*id);
        }
        // A decision the caller logs (one `WalRecord::Expired`).
        self.logged += 1;
        Some(Event::SessionExpired { session: *id, pending })
    }

    /// Batches ready to broadcast: for each live session with steps to send
    /// (closing, expired, or checkpointed) or a close to send, nothing in
    /// flight (or in flight too long), and every session it depends on at
    /// least in flight. A closing session's last batch carries the close.
    /// Each batch carries the session's next steps up to [`BATCH_BYTES_MAX`]
    /// encoded bytes (or the session's smaller budget) and
    /// [`BATCH_STEPS_MAX`] steps; the rest follow in later batches.
    ///
    /// `durable` is how many of this ledger's log records (see
    /// [`Ledger::logged`]) are fsynced. Only durable steps and closes are
    /// sent: a step that reached L1 before its record reached the disk would,
    /// after a crash, be final on L1 while the restarted gateway, not knowing
    /// it, acknowledges a different step at the same seq (and a close, take
    /// steps L1 then refuses).
    pub fn batches_to_send(&mut self, now_ms: u64, durable: u64) -> Vec<Outgoing> {
        self.mark_checkpoints(now_ms);
        let ready: Vec<Hash> = self
            .sessions
            .values()
            .filter(|s| s.live())
            .filter(|s| match &s.inflight {
                None => s.sendable() > s.chain_seq || s.status == SessionStatus::Committing,
                Some(f) => now_ms.saturating_sub(f.sent_ms) >= self.config.resend_after_ms,
            })
            .filter(|s| {
                s.deps.iter().all(|d| match self.dependency(d) {
                    Dependency::Final => true,
                    Dependency::InFlight => !s.after_final_deps,
                    Dependency::Pending => false,
                })
            })
            .map(|s| s.id)
            .collect();
        let mut out = Vec::new();
        for id in ready {
            let optimistic = self.sessions.get(&id).is_some_and(|s| s.deps.iter().any(|d| self.dependency(d) == Dependency::InFlight));
            let Some(session) = self.sessions.get_mut(&id) else { continue };
            if let Some(f) = &session.inflight {
                // Re-send the very same bytes: L1 recognises a repeat as a
                // duplicate, and the mempool as already known.
                // (The bytes differ when a block finalized part of the batch
                // meanwhile: the re-send then starts after it, and is the
                // one whose result counts.)
                let closes = f.closes;
                let (tx, last_seq) = build_batch(&self.chain_id, &self.key, session, f.last_seq, closes);
                session.inflight = Some(InFlight { tx_hash: tx_hash(&tx), last_seq, closes, sent_ms: now_ms, optimistic });
                out.push(Outgoing { session: id, tx_hash: tx_hash(&tx), tx, last_seq });
                continue;
            }
            if session.status == SessionStatus::Committing && session.close_pos > durable {
                // The owner's close is being fsynced (a matter of a
                // millisecond): wait for it rather than send the steps
                // alone and the close a block later.
                continue;
            }
            let first = session.chain_seq + 1;
            let upto = batch_end(session, session.sendable(), durable).unwrap_or(session.chain_seq);
            let closes = session.status == SessionStatus::Committing && upto >= session.last_seq() && session.close_pos <= durable;
            if upto < first && !closes {
                continue;
            }
            let (tx, last_seq) = build_batch(&self.chain_id, &self.key, session, upto, closes);
            let hash = tx_hash(&tx);
            session.inflight = Some(InFlight { tx_hash: hash.clone(), last_seq, closes, sent_ms: now_ms, optimistic });
            out.push(Outgoing { session: id, tx, tx_hash: hash, last_seq });
        }
        for o in &out {
            self.remember_sent(&o.tx_hash);
        }
        out
    }

    fn remember_sent(&mut self, hash: &str) {
        if !self.sent.insert(hash.to_string()) {
            return;
        }
        self.sent_order.push_back(hash.to_string());
        while self.sent_order.len() > self.config.finished_kept.max(1024) {
            if let Some(old) = self.sent_order.pop_front() {
                self.sent.remove(&old);
            }
        }
    }

    /// Whether `batch` is one this gateway built: it sent these bytes, or
    /// every step in it (and its open request) is one it holds, with the
    /// outcome it holds (the batch of a live session restored from the log
    /// after a restart, before it was sent again).
    fn built_here(&self, hash: &str, batch: &SessionBatch) -> bool {
        if self.sent.contains(hash) {
            return true;
        }
        let Some(session) = self.sessions.get(&batch.body.session) else {
            return false;
        };
        let open_matches = batch.body.open.as_ref().is_none_or(|o| *o == session.open);
        let steps_match = batch
            .body
            .steps
            .iter()
            .zip(&batch.body.claims)
            .all(|(signed, claim)| session.step(signed.step.seq).is_some_and(|r| r.signed == *signed && r.outcome.hash() == *claim));
        open_matches && batch.body.steps.len() == batch.body.claims.len() && steps_match
    }

    /// Find, among the finalized session batches whose signature verifies
    /// under this gateway's key (`own`, with their transaction hashes), those
    /// it never built: its key signs for someone else. Each is logged at
    /// error and counted ([`Ledger::foreign_batches`]); the hashes are
    /// returned. A batch refused as a duplicate changes nothing and may be a
    /// copy this gateway sent before a restart, so it is not judged; nor is
    /// anything before [`Ledger::recover`], when the ledger does not yet know
    /// what it built.
    pub fn audit_own_batches(&mut self, block: &ReplayedBlock, own: &[(String, SessionBatch)]) -> Vec<String> {
        if !self.recovered {
            return Vec::new();
        }
        let mut foreign = Vec::new();
        for (hash, batch) in own {
            if batch.body.gateway != self.key.public() || self.built_here(hash, batch) {
                continue;
            }
            let result = block.results.iter().find(|(h, _)| h == hash).map(|(_, r)| r);
            let (status, code) = match result {
                Some(TxResult::Rejected { rejection, .. }) if rejection.code == tandem_core::Code::Duplicate => continue,
                Some(TxResult::Rejected { rejection, .. }) => ("rejected", rejection.code.name()),
                Some(_) => ("committed", ""),
                None => ("seen", ""),
            };
            tracing::error!(height = block.height, tx_hash = %hash, session = %batch.body.session, status, code,
                "a batch signed with this gateway's key that this gateway never built was finalized on L1: the key signs for someone else");
            self.foreign_batches += 1;
            foreign.push(hash.clone());
        }
        foreign
    }

    /// How far a session another one built on is. A dependent batch may be
    /// sent once its dependency's last step is in flight: the dependency was
    /// broadcast first, to the same node, and CometBFT's mempool keeps that
    /// order into blocks. Should a block still carry them the other way
    /// round, the dependent batch fails there (its steps start from stages
    /// only the dependency creates), changes nothing, and is sent again —
    /// see [`Ledger::on_block`]. Only the steps matter: a close changes no
    /// package.
    fn dependency(&self, id: &Hash) -> Dependency {
        match self.sessions.get(id) {
            None => Dependency::Final,
            Some(d) if d.status == SessionStatus::Finalized || d.pending().next().is_none() => Dependency::Final,
            Some(d) => {
                let covered = d.inflight.as_ref().is_some_and(|f| f.last_seq == d.last_seq());
                if d.done_taking_steps() && covered {
                    Dependency::InFlight
                } else {
                    Dependency::Pending
                }
            }
        }
    }

    /// Forget that a batch was sent (the broadcast failed), so it is sent
    /// again on the next round.
    pub fn unsent(&mut self, session: &Hash) {
        if let Some(s) = self.sessions.get_mut(session) {
            s.inflight = None;
        }
    }

    /// L1's RPC or mempool refused the session's batch of `tx_bytes` for its
    /// size (a validator configured below the limits in `limits.rs`): its
    /// batches are cut to half that size from now on, and the next round
    /// sends the smaller one. Returns `false` when the refused batch held a
    /// single step, which no smaller batch can carry.
    pub fn shrink_batches(&mut self, id: &Hash, tx_bytes: usize) -> bool {
        let Some(s) = self.sessions.get_mut(id) else {
            return true;
        };
        let Some(f) = s.inflight.take() else {
            return true;
        };
        if f.last_seq <= s.chain_seq + 1 {
            return false;
        }
        s.batch_bytes_max = s.batch_bytes_max.min(tx_bytes / 2);
        true
    }

    /// Reject a live session locally (the broadcast was refused outright).
    pub fn reject(&mut self, id: &Hash, seq: Option<u64>, code: &str, detail: String) -> Vec<Event> {
        let mut events = Vec::new();
        self.reject_cascade(*id, seq, code, detail, &mut events);
        events
    }

    /// Take in a finalized block: mark what became final, reject what L1
    /// rejected (and what depended on it), then rebase the pending steps on
    /// the new committed state `base`.
    pub fn on_block(&mut self, base: &impl KvRead, block: &ReplayedBlock, now_ms: u64) -> Vec<Event> {
        let mut events = Vec::new();
        let mut foreign = false;
        for (hash, result) in &block.results {
            match result {
                TxResult::Committed { session, first_seq, last_seq, closed, .. } if self.sessions.contains_key(session) => {
                    let fin = Finality { height: block.height, tx_hash: hash.clone(), seen_ms: now_ms };
                    self.mark_final(session, *first_seq, *last_seq, *closed, &fin, &mut events);
                }
                TxResult::Rejected { session: Some(session), index, rejection } if self.is_live(session) => {
                    let Some(inflight) = self.sessions.get(session).and_then(|s| s.inflight.as_ref()).filter(|f| &f.tx_hash == hash) else {
                        // A stale copy of one of our batches: a rejection
                        // changes no state, so nothing to do.
                        continue;
                    };
                    let optimistic = inflight.optimistic;
                    if optimistic && rejection.code != tandem_core::Code::OutcomeMismatch {
                        // Sent while a session it builds on was in flight: it
                        // may have landed ahead of it. Whether the dependency
                        // is final now says nothing about where it stood in
                        // this block (a stale copy of its batch, read as a
                        // duplicate, marks it final from the state after the
                        // whole block), so the failure is not judged here:
                        // the batch goes again once every dependency is
                        // final, and a failure then is real.
                        tracing::debug!(session = %session, code = rejection.code.name(), "a batch sent ahead of its dependency failed; re-sending after it");
                        if let Some(s) = self.sessions.get_mut(session) {
                            s.inflight = None;
                            s.after_final_deps = true;
                        }
                        continue;
                    }
                    if matches!(rejection.code, tandem_core::Code::Duplicate | tandem_core::Code::SessionClosed) {
                        // Already final (a re-send after finality): the
                        // committed state tells how far, and whether closed.
                        let record = base.session(session);
                        let on_chain = record.as_ref().map_or(0, |s| s.last_seq);
                        let closed = record.is_some_and(|s| s.closed);
                        let fin = Finality { height: block.height, tx_hash: hash.clone(), seen_ms: now_ms };
                        let chain_seq = self.sessions.get(session).map_or(0, |s| s.chain_seq);
                        if on_chain > chain_seq || closed {
                            self.mark_final(session, chain_seq + 1, on_chain, closed, &fin, &mut events);
                        } else if let Some(s) = self.sessions.get_mut(session) {
                            s.inflight = None;
                        }
                        continue;
                    }
                    let chain_seq = self.sessions.get(session).map_or(0, |s| s.chain_seq);
                    let seq = index.map(|i| chain_seq + 1 + u64::from(i));
                    self.mismatches += 1;
                    tracing::warn!(session = %session, ?seq, code = rejection.code.name(), detail = %rejection.detail,
                        "L1 rejected a session this gateway had accepted");
                    self.reject_cascade(*session, seq, rejection.code.name(), rejection.detail.clone(), &mut events);
                }
                TxResult::Committed { .. } | TxResult::Direct { .. } | TxResult::Admin | TxResult::Rejected { .. } => {
                    // Another gateway's or a direct transaction: it may have
                    // changed what our pending steps read.
                    if result.code() == 0 {
                        foreign = true;
                    }
                }
            }
        }
        // When the block held only our own batches, committed as predicted,
        // the pending writes read the same over the new base (every key the
        // block wrote is among them), so the replay can be skipped. It runs
        // when anything else happened, when it is free (nothing pending), and
        // every 16 blocks to drop writes that are now in the base.
        let rejected = events.iter().any(|e| matches!(e, Event::SessionRejected { .. }));
        if foreign || rejected || self.pending_steps == 0 || block.height % 16 == 0 {
            self.rebase(base, now_ms, &mut events);
        }
        events
    }

    fn is_live(&self, id: &Hash) -> bool {
        self.sessions.get(id).is_some_and(|s| s.live())
    }

    /// Steps `first..=last` of a session are final at `fin`; `closed` when
    /// L1 has the session closed.
    fn mark_final(&mut self, id: &Hash, first: u64, last: u64, closed: bool, fin: &Finality, events: &mut Vec<Event>) {
        let Some(session) = self.sessions.get_mut(id) else {
            return;
        };
        let was_live = session.live();
        let mut newly = 0;
        for st in session.steps.iter_mut() {
            let seq = st.signed.step.seq;
            if seq >= first && seq <= last && st.finality.is_none() {
                st.finality = Some(fin.clone());
                newly += 1;
            }
        }
        session.chain_seq = session.chain_seq.max(last);
        if session.inflight.as_ref().is_some_and(|f| f.last_seq <= last) {
            session.inflight = None;
        }
        // A session that is no longer live (rejected earlier in this very
        // block, as a dependent, before L1 committed its batch after all)
        // holds no pending steps in the count any more.
        if was_live {
            self.pending_steps = self.pending_steps.saturating_sub(newly);
        }
        self.order.retain(|(s, seq)| !(s == id && *seq <= last));
        let drained = session.pending().next().is_none();
        let complete = match session.status {
            SessionStatus::Open | SessionStatus::Committing => closed && drained,
            SessionStatus::Expired => drained && was_live,
            SessionStatus::Finalized | SessionStatus::Rejected { .. } => false,
        };
        events.push(Event::SessionFinalized { session: *id, last_seq: last, height: fin.height, tx_hash: fin.tx_hash.clone(), complete });
        if complete {
            if session.status != SessionStatus::Expired {
                session.status = SessionStatus::Finalized;
            }
            self.unlock(id);
            self.retire(*id);
        } else if closed {
            // Closed on L1 before steps accepted here: they can never be
            // final.
            self.reject_cascade(*id, Some(last + 1), "session_closed", "L1 has the session closed before this step".into(), events);
        }
    }

    fn reject_cascade(&mut self, id: Hash, seq: Option<u64>, code: &str, detail: String, events: &mut Vec<Event>) {
        let mut queue = vec![(id, seq, code.to_string(), detail)];
        while let Some((id, seq, code, detail)) = queue.pop() {
            let Some(session) = self.sessions.get_mut(&id) else {
                continue;
            };
            if !session.live() {
                continue;
            }
            let pending = session.pending().count();
            session.status = SessionStatus::Rejected { seq, code: code.clone(), detail: detail.clone() };
            session.inflight = None;
            for p in std::mem::take(&mut session.locks) {
                if self.locks.get(&p) == Some(&id) {
                    self.locks.remove(&p);
                }
            }
            self.pending_steps = self.pending_steps.saturating_sub(pending);
            self.order.retain(|(s, _)| *s != id);
            events.push(Event::SessionRejected { session: id, seq, code, detail });
            self.retire(id);
            let dependents: Vec<Hash> = self.sessions.values().filter(|s| s.live() && s.deps.contains(&id)).map(|s| s.id).collect();
            for d in dependents {
                queue.push((d, None, "dependency_rejected".into(), format!("it built on session {id}, which was rejected")));
            }
        }
    }

    /// Rebuild the pending writes on a new committed state: open requests of
    /// sessions L1 has not seen, then every pending step in acceptance order.
    /// A step whose outcome changes dooms its session (and its dependents).
    fn rebase(&mut self, base: &impl KvRead, now_ms: u64, events: &mut Vec<Event>) {
        loop {
            let sessions = &self.sessions;
            self.open_order.retain(|id| sessions.get(id).is_some_and(|s| s.live()));
            let mut overlay = Overlay::new(base);
            let ctx = self.ctx(now_ms);
            let mut doomed: Option<(Hash, Option<u64>, String)> = None;
            for id in &self.open_order {
                let Some(session) = self.sessions.get(id) else { continue };
                if base.session(id).is_none() {
                    if let Err(r) = open_session(&mut overlay, &ctx, &session.open) {
                        doomed = Some((*id, None, r.to_string()));
                        break;
                    }
                }
            }
            if doomed.is_none() {
                for (id, seq) in &self.order {
                    let Some(rec) = self.sessions.get(id).and_then(|s| s.step(*seq)) else {
                        continue;
                    };
                    // Found valid at intake, so answered by the memo (a
                    // lookup) unless it was forgotten since.
                    let Some(verified) = VerifiedStep::check_memo(&rec.signed, Some(&self.sigs)) else {
                        doomed = Some((*id, Some(*seq), "an accepted step's signature no longer verifies".into()));
                        break;
                    };
                    match apply_verified(&mut overlay, &ctx, verified) {
                        Ok(o) if o == rec.outcome => {}
                        Ok(_) => {
                            doomed = Some((*id, Some(*seq), "a block changed this step's outcome".into()));
                            break;
                        }
                        Err(r) => {
                            doomed = Some((*id, Some(*seq), format!("a block made this step invalid: {r}")));
                            break;
                        }
                    }
                }
            }
            match doomed {
                None => {
                    self.writes = overlay.into_writes();
                    return;
                }
                Some((id, seq, detail)) => {
                    self.mismatches += 1;
                    self.reject_cascade(id, seq, "conflict", detail, events);
                }
            }
        }
    }

    fn retire(&mut self, id: Hash) {
        self.finished.push_back(id);
        while self.finished.len() > self.config.finished_kept {
            if let Some(old) = self.finished.pop_front() {
                self.sessions.remove(&old);
            }
        }
    }

    /// The records that rebuild exactly the live sessions (for WAL
    /// compaction): their open requests, their pending steps in acceptance
    /// order, and the owner's close of those that are closing or the expiry
    /// of those that expired.
    pub fn wal_records(&self) -> Vec<WalRecord> {
        let live = |id: &Hash| self.sessions.get(id).filter(|s| s.live());
        let mut out: Vec<WalRecord> = self.open_order.iter().filter_map(&live).map(|s| WalRecord::Opened(s.open.clone())).collect();
        for (id, seq) in &self.order {
            let Some(s) = live(id) else { continue };
            if let Some(rec) = s.step(*seq) {
                out.push(WalRecord::Step { step: rec.signed.clone(), outcome: rec.outcome.hash() });
            }
        }
        out.extend(self.open_order.iter().filter_map(live).filter_map(|s| match (&s.status, &s.close) {
            (SessionStatus::Committing, Some(close)) => Some(WalRecord::Closed(close.clone())),
            (SessionStatus::Expired, _) => Some(WalRecord::Expired(s.id)),
            _ => None,
        }));
        out
    }

    /// Rebuild the ledger from its write-ahead log after a restart, in log
    /// order (so a session that built on another's tentative state replays
    /// after it). Steps L1 already finalized are skipped; every other step is
    /// re-applied and must give the outcome it was acknowledged with, or its
    /// session is rejected as a conflict. Returns the number of sessions and
    /// steps restored.
    pub fn recover(&mut self, base: &impl KvRead, now_ms: u64, records: Vec<WalRecord>) -> (usize, usize) {
        // What is replayed from the log is logged already: it counts for
        // nothing in `logged` (every position it leaves is 0, durable).
        let logged = self.logged;
        let mut events = Vec::new();
        let mut failures: Vec<(Hash, Option<u64>, String)> = Vec::new();
        let writes = std::mem::take(&mut self.writes);
        let mut overlay = Overlay::with_writes(base, writes);
        let chain_id = self.chain_id.clone();
        let sigs = self.sigs.clone();
        let ctx = Ctx { chain_id: &chain_id, time_ms: now_ms, workflow: &INTAKE, sigs: Some(&sigs) };
        // Sessions the log cannot bring back, found first: replaying them
        // would let their steps stand in the way of later ones that were
        // decided after they had been rejected.
        failures.extend(doomed_sessions(base, &ctx, &records));
        let mut steps = 0;
        for record in records {
            match record {
                WalRecord::Opened(open) => {
                    let id = open.open.session_id();
                    if self.sessions.contains_key(&id) {
                        continue;
                    }
                    let chain_seq = base.session(&id).map_or(0, |s| s.last_seq);
                    if chain_seq == 0 && !failures.iter().any(|f| f.0 == id) {
                        if let Err(r) = open_session(&mut overlay, &ctx, &open) {
                            failures.push((id, None, format!("the logged session can no longer open: {r}")));
                        }
                    }
                    self.open_order.push(id);
                    self.sessions.insert(id, Session::new(open, chain_seq, now_ms));
                }
                WalRecord::Step { step, outcome } => {
                    let id = step.step.session;
                    let seq = step.step.seq;
                    let Some(session) = self.sessions.get(&id) else {
                        continue;
                    };
                    if seq <= session.chain_seq || failures.iter().any(|f| f.0 == id) {
                        continue;
                    }
                    // Through the memo: the rebases that follow then find it there.
                    let failure = match VerifiedStep::check_memo(&step, Some(&sigs)) {
                        None => Some("the logged step's signature does not verify".to_string()),
                        Some(v) => match apply_verified(&mut overlay, &ctx, v) {
                            Ok(o) if o.hash() == outcome => {
                                let p = step.step.package_id.clone();
                                let dep = self.writer.get(&p).copied().filter(|w| *w != id);
                                // Present: looked up above, and nothing removes sessions in this loop.
                                if let Some(session) = self.sessions.get_mut(&id) {
                                    if let Some(d) = dep {
                                        session.deps.insert(d);
                                    }
                                    session.locks.insert(p.clone());
                                    let receipt = issue_receipt(&chain_id, &self.key, id, seq, &o);
                                    session.steps.push(StepRecord {
                                        signed: step,
                                        outcome: o,
                                        accepted_ms: now_ms,
                                        finality: None,
                                        log_pos: 0,
                                        receipt,
                                    });
                                }
                                self.locks.insert(p.clone(), id);
                                self.writer.insert(p, id);
                                self.order.push((id, seq));
                                self.pending_steps += 1;
                                steps += 1;
                                None
                            }
                            Ok(_) => Some("replaying the logged step gave another outcome".to_string()),
                            Err(r) => Some(format!("the logged step is no longer valid: {r}")),
                        },
                    };
                    if let Some(detail) = failure {
                        failures.push((id, Some(seq), detail));
                    }
                }
                WalRecord::Closed(close) => {
                    let id = close.close.session;
                    if self.sessions.contains_key(&id) {
                        let _ = self.close_with(&id, close, now_ms);
                    }
                }
                WalRecord::Expired(id) => {
                    self.expire(&id);
                }
            }
        }
        self.logged = logged;
        self.writes = overlay.into_parts().1;
        // Sessions whose logged steps are final and which L1 has closed are
        // done (a close can reach L1 before its log record is durable).
        let done: Vec<Hash> = self
            .sessions
            .values()
            .filter(|s| matches!(s.status, SessionStatus::Open | SessionStatus::Committing) && s.pending().next().is_none())
            .filter(|s| base.session(&s.id).is_some_and(|r| r.closed))
            .map(|s| s.id)
            .collect();
        for id in done {
            if let Some(s) = self.sessions.get_mut(&id) {
                s.status = SessionStatus::Finalized;
            }
            self.unlock(&id);
            self.retire(id);
        }
        for (id, seq, detail) in failures {
            self.mismatches += 1;
            self.reject_cascade(id, seq, "conflict", detail, &mut events);
        }
        self.rebase(base, now_ms, &mut events);
        self.recovered = true;
        let live = self.sessions.values().filter(|s| s.live()).count();
        (live, steps)
    }
}

/// The sessions of a log that cannot be brought back on `base`, each with
/// the seq and reason of its failure: a fixed point over replays of the
/// log. A replay that fails first at some session's step (or open) proves
/// that session lost (everything before it in the log replayed as it was
/// acknowledged); it is taken out with every session that built on it, and
/// the log is replayed again without them, until a replay goes through.
/// A session that failed only because an earlier, doomed one still stood in
/// the replay is thus not lost.
fn doomed_sessions(base: &impl KvRead, ctx: &Ctx<'_>, records: &[WalRecord]) -> Vec<(Hash, Option<u64>, String)> {
    let mut doomed: Vec<(Hash, Option<u64>, String)> = Vec::new();
    loop {
        let out: BTreeSet<Hash> = doomed.iter().map(|d| d.0).collect();
        let mut overlay = Overlay::new(base);
        let mut writer: BTreeMap<String, Hash> = BTreeMap::new();
        let mut deps: BTreeMap<Hash, BTreeSet<Hash>> = BTreeMap::new();
        let mut chain_seq: BTreeMap<Hash, u64> = BTreeMap::new();
        let mut first: Option<(Hash, Option<u64>, String)> = None;
        for record in records {
            match record {
                WalRecord::Opened(open) => {
                    let id = open.open.session_id();
                    if out.contains(&id) || chain_seq.contains_key(&id) {
                        continue;
                    }
                    let on_chain = base.session(&id).map_or(0, |s| s.last_seq);
                    chain_seq.insert(id, on_chain);
                    if on_chain == 0 {
                        if let Err(r) = open_session(&mut overlay, ctx, open) {
                            first = Some((id, None, format!("the logged session can no longer open: {r}")));
                            break;
                        }
                    }
                }
                WalRecord::Step { step, outcome } => {
                    let id = step.step.session;
                    let Some(&final_seq) = chain_seq.get(&id) else { continue };
                    if out.contains(&id) || step.step.seq <= final_seq {
                        continue;
                    }
                    let failure = match VerifiedStep::check_memo(step, ctx.sigs) {
                        None => Some("the logged step's signature does not verify".to_string()),
                        Some(v) => match apply_verified(&mut overlay, ctx, v) {
                            Ok(o) if o.hash() == *outcome => None,
                            Ok(_) => Some("replaying the logged step gave another outcome".to_string()),
                            Err(r) => Some(format!("the logged step is no longer valid: {r}")),
                        },
                    };
                    if let Some(detail) = failure {
                        first = Some((id, Some(step.step.seq), detail));
                        break;
                    }
                    let p = &step.step.package_id;
                    if let Some(w) = writer.get(p).copied().filter(|w| *w != id) {
                        deps.entry(id).or_default().insert(w);
                    }
                    writer.insert(p.clone(), id);
                }
                WalRecord::Closed(_) | WalRecord::Expired(_) => {}
            }
        }
        let Some((root, seq, detail)) = first else { return doomed };
        // The failed session and, transitively, every session that built on
        // it (they go with it, as in a live rejection).
        let mut queue = vec![root];
        doomed.push((root, seq, detail));
        while let Some(d) = queue.pop() {
            for (id, on) in &deps {
                if on.contains(&d) && !doomed.iter().any(|x| x.0 == *id) {
                    doomed.push((*id, None, format!("it built on session {d}, which the log cannot bring back")));
                    queue.push(*id);
                }
            }
        }
    }
}

/// What the gateway writes ahead, in order: enough to rebuild every live
/// session after a crash. Finality is not logged: the replica's committed
/// state says how far each session is final.
#[derive(Clone, Debug, PartialEq, Eq, borsh::BorshSerialize, borsh::BorshDeserialize)]
#[allow(clippy::large_enum_variant)]
pub enum WalRecord {
    /// A session was opened.
    Opened(SignedSessionOpen),
    /// A step was accepted with this outcome hash.
    Step {
        /// The signed step.
        step: SignedStep,
        /// The outcome hash acknowledged in its receipt.
        outcome: Hash,
    },
    /// A session was closed by its owner.
    Closed(SignedSessionClose),
    /// A session expired (idle too long).
    Expired(Hash),
}

/// The gateway's receipt for an accepted step. Ed25519 signing is
/// deterministic, so issuing it again for the same step and outcome gives the
/// same bytes: what a re-sent step is answered with.
pub fn issue_receipt(chain_id: &str, key: &SecretKey, session: Hash, seq: u64, outcome: &Outcome) -> Receipt {
    Receipt::issue(ReceiptBody { chain_id: chain_id.to_string(), session, seq, step: outcome.step, outcome: outcome.hash() }, key)
}

/// The last seq of `session`'s next batch: the steps after its last final
/// one up to `limit`, as many as fit its byte budget and [`BATCH_STEPS_MAX`],
/// and always at least one (every step fits a batch: see `limits.rs`),
/// counting only steps whose log records are among the first `durable`
/// fsynced ones. `None` when there is no such step.
fn batch_end(session: &Session, limit: u64, durable: u64) -> Option<u64> {
    let first = session.chain_seq + 1;
    let mut bytes = BATCH_OVERHEAD_BYTES_MAX;
    let mut last = None;
    let unsent =
        session.steps.iter().filter(|s| s.signed.step.seq >= first && s.signed.step.seq <= limit).take_while(|s| s.log_pos <= durable);
    for (n, s) in unsent.enumerate() {
        let add = batch_step_bytes(borsh::object_length(&s.signed).unwrap_or(usize::MAX));
        if n >= BATCH_STEPS_MAX || (last.is_some() && bytes.saturating_add(add) > session.batch_bytes_max) {
            break;
        }
        bytes = bytes.saturating_add(add);
        last = Some(s.signed.step.seq);
    }
    last
}

/// The batch for `session`'s steps from its last final one up to `upto`,
/// with the owner's close when `closes`.
fn build_batch(chain_id: &str, key: &SecretKey, session: &Session, upto: u64, closes: bool) -> (Vec<u8>, u64) {
    let first = session.chain_seq + 1;
    let steps: Vec<&StepRecord> = session.steps.iter().filter(|s| s.signed.step.seq >= first && s.signed.step.seq <= upto).collect();
    let last = steps.last().map_or(session.chain_seq, |s| s.signed.step.seq);
    let body = BatchBody {
        chain_id: chain_id.to_string(),
        session: session.id,
        open: (session.chain_seq == 0).then(|| session.open.clone()),
        steps: steps.iter().map(|s| s.signed.clone()).collect(),
        claims: steps.iter().map(|s| s.outcome.hash()).collect(),
        gateway: key.public(),
        close: if closes { session.close.clone() } else { None },
    };
    (Tx::SessionBatch(body.sign(key)).encode(), last)
}
