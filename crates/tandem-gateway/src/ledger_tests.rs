//! Tests of the ledger against a simulated L1: the same `execute` that
//! validators run, on an in-memory committed state.

use std::collections::BTreeMap;

use tandem_core::apply::{execute, TxResult, VerifiedStep};
use tandem_core::kv::Overlay;
use tandem_core::message::{Action, DirectStep, SignedStep, Tx};
use tandem_core::state::StateRead;
use tandem_core::testkit::*;
use tandem_core::{Hash, SecretKey};

use crate::error::Kind;
use crate::ledger::*;

type Mem = Overlay<BTreeMap<Vec<u8>, Vec<u8>>>;

struct World {
    cast: Cast,
    chain: Mem,
    ledger: Ledger,
    height: u64,
}

impl World {
    fn new(config: LedgerConfig) -> World {
        let cast = Cast::new();
        let chain = cast.state();
        let ledger = Ledger::new(CHAIN_ID.into(), cast.gateway.clone(), config);
        World { cast, chain, ledger, height: 1 }
    }

    fn open(&mut self, owner: &SecretKey, nonce: u64) -> Hash {
        let o = open(owner, Some(self.cast.gateway.public()), nonce);
        self.ledger.open_session(&self.chain, TIME_MS, o).expect("open")
    }

    fn step(&mut self, who: &SecretKey, session: Hash, seq: u64, pkg: &str, action: Action) -> Result<Accepted, crate::error::GwError> {
        let signed: SignedStep = step(who, session, seq, pkg, action);
        let v = VerifiedStep::check(&signed).expect("signed");
        self.ledger.accept_step(&self.chain, TIME_MS, v)
    }

    /// The owner's close of `session` after its last step here.
    fn close_of(&self, owner: &SecretKey, session: Hash) -> tandem_core::message::SignedSessionClose {
        let s = self.ledger.session(&session).expect("session");
        close(owner, session, s.steps.last().map_or(s.chain_seq, |r| r.signed.step.seq))
    }

    /// The owner closes `session` after its last step.
    fn commit(&mut self, owner: &SecretKey, session: Hash) -> Result<(), crate::error::GwError> {
        let c = self.close_of(owner, session);
        self.ledger.request_close(&session, c, TIME_MS)
    }

    /// Put a transaction straight on "L1" (not through the ledger).
    fn direct(&mut self, tx: &[u8]) -> (String, TxResult) {
        (tx_hash(tx), execute(&mut self.chain, &ctx(), tx))
    }

    /// Send what the ledger wants to send, execute it as one block, and feed
    /// the block back.
    fn round(&mut self, extra: Vec<Vec<u8>>) -> Vec<Event> {
        let out = self.ledger.batches_to_send(TIME_MS, u64::MAX);
        let mut results = Vec::new();
        for tx in extra.iter().chain(out.iter().map(|o| &o.tx)) {
            results.push(self.direct(tx));
        }
        self.height += 1;
        let block = ReplayedBlock { height: self.height, results };
        self.ledger.on_block(&self.chain, &block, TIME_MS)
    }

    /// The supplier registers `pkg` on L1 directly.
    fn registered(&mut self, pkg: &str, nonce: u64) {
        let o = open(&self.cast.supplier, None, nonce);
        let s = step(&self.cast.supplier, o.open.session_id(), 1, pkg, register(&self.cast.supplier, pkg));
        let (_, r) = self.direct(&Tx::DirectStep(DirectStep { open: Some(o), step: s }).encode());
        assert_eq!(r.code(), 0, "{r:?}");
    }
    /// Operator 1 scans `P` (registered on L1 directly) and commits; operator
    /// 2 then validates `P` on that tentative scan and commits: session `b`
    /// depends on session `a`.
    fn dependent_pair(&mut self) -> (Hash, Hash) {
        self.registered("P", 1);
        let (op, op2) = (self.cast.operator.clone(), self.cast.operator2.clone());
        let a = self.open(&op, 1);
        self.step(&op, a, 1, "P", scan()).expect("scan");
        self.commit(&op, a).expect("commit a");
        let b = self.open(&op2, 1);
        self.step(&op2, b, 1, "P", validate()).expect("b builds on a");
        self.commit(&op2, b).expect("commit b");
        (a, b)
    }
}

#[test]
fn a_committed_session_finalizes_with_exactly_the_predicted_state() {
    let mut w = World::new(LedgerConfig::default());
    w.registered("P", 1);
    let op = w.cast.operator.clone();
    let s = w.open(&op, 1);
    let mut predicted = None;
    for (i, a) in [scan(), validate(), qc(true), label(w.cast.courier.public())].into_iter().enumerate() {
        let acc = w.step(&op, s, i as u64 + 1, "P", a).expect("accepted");
        assert!(acc.receipt.verify());
        assert_eq!(acc.receipt.body.outcome, acc.outcome_hash);
        predicted = Some(acc.package);
    }
    assert!(w.ledger.batches_to_send(TIME_MS, u64::MAX).is_empty(), "an open session is not sent");
    w.commit(&op, s).expect("commit");
    let events = w.round(vec![]);
    assert!(events.iter().any(|e| matches!(e, Event::SessionFinalized { complete: true, last_seq: 4, .. })), "{events:?}");
    let session = w.ledger.session(&s).expect("session");
    assert_eq!(session.status, SessionStatus::Finalized);
    assert!(session.steps.iter().all(|st| st.finality.is_some()));
    let on_chain = w.chain.package("P").expect("package on chain");
    assert_eq!(Some(on_chain.clone()), predicted);
    assert_eq!(on_chain.digest(), predicted.expect("p").digest());
    assert_eq!(w.ledger.pending_steps(), 0);
}

#[test]
fn an_open_session_locks_its_packages_and_a_later_session_builds_on_a_committing_one() {
    let mut w = World::new(LedgerConfig::default());
    w.registered("P", 1);
    let (op, op2) = (w.cast.operator.clone(), w.cast.operator2.clone());
    let a = w.open(&op, 1);
    let b = w.open(&op2, 1);
    w.step(&op, a, 1, "P", scan()).expect("scan");
    let err = w.step(&op2, b, 1, "P", validate()).expect_err("locked");
    assert_eq!((err.kind, err.code), (Kind::Conflict, "package_locked"));
    w.commit(&op, a).expect("commit a");
    // Now b may build on a's tentative state, and depends on it.
    w.step(&op2, b, 1, "P", validate()).expect("validate on a's tentative scan");
    w.commit(&op2, b).expect("commit b");
    let sent = w.ledger.batches_to_send(TIME_MS, u64::MAX);
    assert_eq!(sent.len(), 1, "b waits for a to be final");
    assert_eq!(sent[0].session, a);
    w.ledger.unsent(&a);
    w.round(vec![]);
    assert_eq!(w.ledger.session(&a).expect("a").status, SessionStatus::Finalized);
    w.round(vec![]);
    assert_eq!(w.ledger.session(&b).expect("b").status, SessionStatus::Finalized);
    assert_eq!(w.chain.package("P").expect("P").stage, tandem_core::model::Stage::Validated);
}

#[test]
fn a_conflicting_l1_step_rejects_the_session_and_its_dependents_before_anything_is_sent() {
    let mut w = World::new(LedgerConfig::default());
    let (a, b) = w.dependent_pair();
    let op2 = w.cast.operator2.clone();
    // Meanwhile someone scans P directly on L1: a's scan can no longer happen.
    let d = open(&op2, None, 9);
    let direct = Tx::DirectStep(DirectStep { open: Some(d.clone()), step: step(&op2, d.open.session_id(), 1, "P", scan()) }).encode();
    let before = w.ledger.mismatches();
    let (hash, result) = w.direct(&direct);
    assert_eq!(result.code(), 0);
    let base = w.chain.clone();
    let events = w.ledger.on_block(&base, &ReplayedBlock { height: 2, results: vec![(hash, result)] }, TIME_MS);
    let rejected: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::SessionRejected { session, code, .. } => Some((*session, code.clone())),
            _ => None,
        })
        .collect();
    assert!(rejected.contains(&(a, "conflict".into())), "{events:?}");
    assert!(rejected.contains(&(b, "dependency_rejected".into())), "{events:?}");
    assert!(w.ledger.mismatches() > before);
    assert!(w.ledger.batches_to_send(TIME_MS, u64::MAX).is_empty(), "nothing doomed is sent");
    assert_eq!(w.ledger.pending_steps(), 0);
}

#[test]
fn a_session_l1_rejects_is_reported_with_the_failing_seq() {
    let mut w = World::new(LedgerConfig::default());
    w.registered("P", 1);
    let op = w.cast.operator.clone();
    let a = w.open(&op, 1);
    w.step(&op, a, 1, "P", scan()).expect("scan");
    w.step(&op, a, 2, "P", validate()).expect("validate");
    w.commit(&op, a).expect("commit");
    let out = w.ledger.batches_to_send(TIME_MS, u64::MAX);
    // L1 sees a forged claim for step 2 (as if the gateway mispredicted).
    let mut tx = Tx::decode(&out[0].tx).expect("tx");
    let Tx::SessionBatch(b) = &mut tx else { panic!() };
    b.body.claims[1] = Hash([9; 32]);
    let forged = b.body.clone().sign(&w.cast.gateway);
    let bytes = Tx::SessionBatch(forged).encode();
    let (_, result) = w.direct(&bytes);
    // Pretend the ledger had sent these bytes.
    let base = w.chain.clone();
    let events = w.ledger.on_block(&base, &ReplayedBlock { height: 2, results: vec![(out[0].tx_hash.clone(), result)] }, TIME_MS);
    assert!(
        events.iter().any(|e| matches!(e, Event::SessionRejected { seq: Some(2), code, .. } if code == "outcome_mismatch")),
        "{events:?}"
    );
    assert_eq!(w.ledger.mismatches(), 1);
}

#[test]
fn limits_are_enforced_with_their_codes() {
    let config = LedgerConfig { session_steps_max: 2, pending_steps_max: 3, sessions_max: 2, ..LedgerConfig::default() };
    let mut w = World::new(config);
    for (i, p) in ["P1", "P2", "P3"].iter().enumerate() {
        w.registered(p, i as u64 + 1);
    }
    let (op, op2) = (w.cast.operator.clone(), w.cast.operator2.clone());
    let a = w.open(&op, 1);
    w.step(&op, a, 1, "P1", scan()).expect("1");
    w.step(&op, a, 2, "P2", scan()).expect("2");
    assert_eq!(w.step(&op, a, 3, "P3", scan()).expect_err("full").code, "session_full");
    let b = w.open(&op2, 1);
    w.step(&op2, b, 1, "P3", scan()).expect("3");
    w.commit(&op2, b).expect("commit");
    assert_eq!(w.step(&op2, b, 2, "P3", validate()).expect_err("closed").code, "session_not_open");
    let err = w.ledger.open_session(&w.chain, TIME_MS, open(&w.cast.inspector, Some(w.cast.gateway.public()), 1)).expect_err("too many");
    assert_eq!((err.kind, err.code), (Kind::Unavailable, "too_many_sessions"));
    // Backlog: 3 pending steps is the limit.
    let config = LedgerConfig { pending_steps_max: 1, ..LedgerConfig::default() };
    let mut w = World::new(config);
    w.registered("P1", 1);
    w.registered("P2", 2);
    let a = w.open(&op, 1);
    w.step(&op, a, 1, "P1", scan()).expect("1");
    let err = w.step(&op, a, 2, "P2", scan()).expect_err("backlog");
    assert_eq!((err.kind, err.code), (Kind::Unavailable, "backlog_full"));
    let other_gw = open(&op2, Some(w.cast.stranger.public()), 1);
    assert_eq!(w.ledger.open_session(&w.chain, TIME_MS, other_gw).expect_err("gw").code, "wrong_gateway");
}

#[test]
fn workflow_rejections_keep_the_core_codes_and_change_nothing() {
    let mut w = World::new(LedgerConfig::default());
    let op = w.cast.operator.clone();
    let a = w.open(&op, 1);
    let err = w.step(&op, a, 1, "NOPE", scan()).expect_err("no package");
    assert_eq!((err.kind, err.code), (Kind::Rejected, "unknown_package"));
    let err = w.step(&op, a, 2, "NOPE", scan()).expect_err("seq");
    assert_eq!((err.kind, err.code), (Kind::Conflict, "bad_sequence"));
    assert_eq!(w.ledger.pending_steps(), 0);
    w.registered("P", 1);
    w.step(&op, a, 1, "P", scan()).expect("seq 1 is still free");
}

#[test]
fn a_recovered_session_resends_the_same_batch_or_is_final_if_l1_has_it() {
    let mut w = World::new(LedgerConfig::default());
    w.registered("P", 1);
    let op = w.cast.operator.clone();
    let o = open(&op, Some(w.cast.gateway.public()), 1);
    let a = w.ledger.open_session(&w.chain, TIME_MS, o.clone()).expect("open");
    let mut log = vec![WalRecord::Opened(o)];
    for (i, act) in [scan(), validate()].into_iter().enumerate() {
        let s = step(&op, a, i as u64 + 1, "P", act);
        let acc = w.ledger.accept_step(&w.chain, TIME_MS, VerifiedStep::check(&s).expect("v")).expect("acc");
        log.push(WalRecord::Step { step: s, outcome: acc.outcome_hash });
    }
    w.commit(&op, a).expect("commit");
    log.push(WalRecord::Closed(w.ledger.session(&a).expect("a").close.clone().expect("closed")));
    let first = w.ledger.batches_to_send(TIME_MS, u64::MAX).remove(0);

    // Recovered before L1 finalized it: the identical bytes are re-sent.
    let mut before = World::new(LedgerConfig::default());
    before.registered("P", 1);
    let mut again = Ledger::new(CHAIN_ID.into(), before.cast.gateway.clone(), LedgerConfig::default());
    assert_eq!(again.recover(&before.chain, TIME_MS, log.clone()), (1, 2));
    assert_eq!(again.pending_steps(), 2);
    let resent = again.batches_to_send(TIME_MS, u64::MAX).remove(0);
    assert_eq!(resent.tx, first.tx);

    // L1 finalized it, then the gateway crashed before seeing the block.
    let (_, r) = w.direct(&first.tx);
    assert_eq!(r.code(), 0);
    let mut fresh = Ledger::new(CHAIN_ID.into(), w.cast.gateway.clone(), LedgerConfig::default());
    assert_eq!(fresh.recover(&w.chain, TIME_MS, log.clone()), (0, 0));
    assert_eq!(fresh.session(&a).expect("a").status, SessionStatus::Finalized, "the chain says it is final");
    assert!(fresh.batches_to_send(TIME_MS, u64::MAX).is_empty(), "nothing is finalized twice");

    // A logged outcome that no longer replays (the log lies): rejected, never sent.
    let mut bad = log.clone();
    if let WalRecord::Step { outcome, .. } = &mut bad[2] {
        *outcome = Hash([3; 32]);
    }
    let mut third = World::new(LedgerConfig::default());
    third.registered("P", 1);
    let mut l = Ledger::new(CHAIN_ID.into(), third.cast.gateway.clone(), LedgerConfig::default());
    l.recover(&third.chain, TIME_MS, bad);
    assert!(matches!(l.session(&a).expect("a").status, SessionStatus::Rejected { .. }));
    assert!(l.batches_to_send(TIME_MS, u64::MAX).is_empty());
}

#[test]
fn a_dependent_batch_goes_out_once_its_dependency_is_in_flight_and_survives_landing_first() {
    let mut w = World::new(LedgerConfig::default());
    let (a, b) = w.dependent_pair();
    let first = w.ledger.batches_to_send(TIME_MS, u64::MAX);
    assert_eq!(first.iter().map(|o| o.session).collect::<Vec<_>>(), vec![a], "b waits until a is in flight");
    let second = w.ledger.batches_to_send(TIME_MS, u64::MAX);
    assert_eq!(second.iter().map(|o| o.session).collect::<Vec<_>>(), vec![b], "then b follows without waiting for a block");

    // The block carries them the wrong way round: b fails, a commits.
    let (hb, rb) = w.direct(&second[0].tx);
    assert_eq!(rb.code(), tandem_core::Code::WrongStage.number());
    let (ha, ra) = w.direct(&first[0].tx);
    assert_eq!(ra.code(), 0);
    let base = w.chain.clone();
    let events = w.ledger.on_block(&base, &ReplayedBlock { height: 2, results: vec![(hb, rb), (ha, ra)] }, TIME_MS);
    assert!(!events.iter().any(|e| matches!(e, Event::SessionRejected { .. })), "b is retried, not rejected: {events:?}");
    assert_eq!(w.ledger.session(&a).expect("a").status, SessionStatus::Finalized);
    assert_eq!(w.ledger.session(&b).expect("b").status, SessionStatus::Committing);
    assert_eq!(w.ledger.mismatches(), 0);
    // Sent again, it lands after a and finalizes.
    w.round(vec![]);
    assert_eq!(w.ledger.session(&b).expect("b").status, SessionStatus::Finalized);
    assert_eq!(w.chain.package("P").expect("P").stage, tandem_core::model::Stage::Validated);
}

#[test]
fn a_dependent_batch_that_fails_after_its_dependency_is_final_is_rejected() {
    let mut w = World::new(LedgerConfig::default());
    let (_, b) = w.dependent_pair();
    let first = w.ledger.batches_to_send(TIME_MS, u64::MAX);
    let second = w.ledger.batches_to_send(TIME_MS, u64::MAX);
    // a lands first, then b is made to fail by a forged claim: a real rejection.
    let (ha, ra) = w.direct(&first[0].tx);
    let mut tx = Tx::decode(&second[0].tx).expect("tx");
    let Tx::SessionBatch(batch) = &mut tx else { panic!("a batch") };
    batch.body.claims[0] = Hash([7; 32]);
    let forged = Tx::SessionBatch(batch.body.clone().sign(&w.cast.gateway)).encode();
    let (_, rb) = w.direct(&forged);
    let base = w.chain.clone();
    let events = w.ledger.on_block(&base, &ReplayedBlock { height: 2, results: vec![(ha, ra), (second[0].tx_hash.clone(), rb)] }, TIME_MS);
    assert!(events.iter().any(|e| matches!(e, Event::SessionRejected { session, .. } if *session == b)), "{events:?}");
}

/// An operator's session on registered `P` with two steps, of which only
/// the first one's log record is fsynced: (world, operator, session, how
/// many records are fsynced).
fn one_step_fsynced_one_queued(config: LedgerConfig) -> (World, SecretKey, Hash, u64) {
    let mut w = World::new(config);
    w.registered("P", 1);
    let op = w.cast.operator.clone();
    let a = w.open(&op, 1);
    w.step(&op, a, 1, "P", scan()).expect("scan");
    let fsynced = w.ledger.logged();
    w.step(&op, a, 2, "P", validate()).expect("validate");
    (w, op, a, fsynced)
}

#[test]
fn only_steps_whose_log_records_are_fsynced_are_sent() {
    let (mut w, op, a, fsynced) = one_step_fsynced_one_queued(LedgerConfig::default());
    w.commit(&op, a).expect("commit");
    assert_eq!(w.ledger.logged(), fsynced + 2, "one record per step and one for the close");
    // The second step's record and the close's are still in the log's
    // queue: a crash now would forget them, so L1 must not see them yet.
    assert!(w.ledger.batches_to_send(TIME_MS, fsynced).is_empty(), "a closing session waits for its close to be durable");
    assert!(w.ledger.batches_to_send(TIME_MS, fsynced + 1).is_empty(), "so does it while its last step is not");
    let out = w.ledger.batches_to_send(TIME_MS, fsynced + 2);
    assert_eq!(out.iter().map(|o| o.last_seq).collect::<Vec<_>>(), vec![2], "steps and close go together once durable");
    let Ok(Tx::SessionBatch(b)) = Tx::decode(&out[0].tx) else { panic!("a batch") };
    assert!(b.body.close.is_some(), "the close rides with the last steps");
}

#[test]
fn a_checkpoint_takes_only_the_steps_whose_records_are_fsynced() {
    let (mut w, _, _, fsynced) = one_step_fsynced_one_queued(LedgerConfig { auto_commit_steps: 1, ..LedgerConfig::default() });
    let out = w.ledger.batches_to_send(TIME_MS, fsynced);
    assert_eq!(out.iter().map(|o| o.last_seq).collect::<Vec<_>>(), vec![1], "only the durable step goes out");
    let Ok(Tx::SessionBatch(b)) = Tx::decode(&out[0].tx) else { panic!("a batch") };
    assert!(b.body.close.is_none(), "a checkpoint does not close");
}

#[test]
fn a_session_whose_steps_became_final_before_its_close_finalizes_with_the_close() {
    // The gateway checkpointed a session (its steps sent, no close),
    // crashed, and saw the batch finalized after recovering: the session is
    // open with every step final. Closing it must finish it (a batch with
    // the close alone), or the sessions that build on it would wait for it
    // forever.
    let mut w = World::new(LedgerConfig { auto_commit_steps: 1, ..LedgerConfig::default() });
    w.registered("P", 1);
    let op = w.cast.operator.clone();
    let o = open(&op, Some(w.cast.gateway.public()), 1);
    let a = w.ledger.open_session(&w.chain, TIME_MS, o.clone()).expect("open");
    let s = step(&op, a, 1, "P", scan());
    let acc = w.ledger.accept_step(&w.chain, TIME_MS, VerifiedStep::check(&s).expect("v")).expect("acc");
    let sent = w.ledger.batches_to_send(TIME_MS, u64::MAX).remove(0);

    let mut l = Ledger::new(CHAIN_ID.into(), w.cast.gateway.clone(), LedgerConfig::default());
    l.recover(&w.chain, TIME_MS, vec![WalRecord::Opened(o), WalRecord::Step { step: s, outcome: acc.outcome_hash }]);
    let (h, r) = w.direct(&sent.tx);
    assert_eq!(r.code(), 0);
    let base = w.chain.clone();
    l.on_block(&base, &ReplayedBlock { height: 2, results: vec![(h, r)] }, TIME_MS);
    assert_eq!(l.session(&a).expect("a").status, SessionStatus::Open);
    l.request_close(&a, close(&op, a, 1), TIME_MS).expect("close");
    let only_close = l.batches_to_send(TIME_MS, u64::MAX);
    assert_eq!(only_close.len(), 1, "the close goes alone");
    let (h, r) = w.direct(&only_close[0].tx);
    assert_eq!(r.code(), 0, "{r:?}");
    let base = w.chain.clone();
    l.on_block(&base, &ReplayedBlock { height: 3, results: vec![(h, r)] }, TIME_MS);
    assert_eq!(l.session(&a).expect("a").status, SessionStatus::Finalized);
    assert!(l.batches_to_send(TIME_MS, u64::MAX).is_empty(), "nothing left to send");
    l.audit().expect("consistent");
}

/// A re-sent step is answered with a receipt issued again; that is the
/// original only because Ed25519 signing is deterministic: the same body
/// and key give the same bytes.
#[test]
fn a_receipt_issued_again_is_byte_identical_and_a_resend_finds_the_original_step() {
    let mut w = World::new(LedgerConfig::default());
    let sup = w.cast.supplier.clone();
    let s = w.open(&sup, 1);
    let accepted = w.step(&sup, s, 1, "P", register(&sup, "P")).expect("register");
    let again = issue_receipt(CHAIN_ID, &w.cast.gateway, s, 1, &accepted.outcome);
    assert_eq!(borsh::to_vec(&again).expect("encode"), borsh::to_vec(&accepted.receipt).expect("encode"));
    assert!(again.verify());

    let same: SignedStep = step(&sup, s, 1, "P", register(&sup, "P"));
    let rec = w.ledger.prior_step(&same).expect("held").expect("the same step");
    assert_eq!(rec.receipt, accepted.receipt);
    let other: SignedStep = step(&sup, s, 1, "Q", register(&sup, "Q"));
    let e = w.ledger.prior_step(&other).expect("held").expect_err("another step at seq 1");
    assert_eq!((e.kind, e.code), (Kind::Conflict, "bad_sequence"));
    assert!(w.ledger.prior_step(&step(&sup, s, 2, "Q", register(&sup, "Q"))).is_none(), "nothing at seq 2");
}

/// A batch signed with the gateway's key that it never built is reported,
/// its own are not, whether it sent them or rebuilt them from its log after
/// a restart; nothing is judged before recovery.
#[test]
fn batches_under_our_key_that_we_never_built_are_reported() {
    let mut w = World::new(LedgerConfig::default());
    // Started: recovered from an empty log.
    w.ledger.recover(&w.chain, TIME_MS, Vec::new());
    let mut unrecovered = Ledger::new(CHAIN_ID.into(), w.cast.gateway.clone(), LedgerConfig::default());
    w.registered("P", 1);
    let op = w.cast.operator.clone();
    let s = w.open(&op, 1);
    w.step(&op, s, 1, "P", scan()).expect("scan");
    w.commit(&op, s).expect("commit");
    let ours = w.ledger.batches_to_send(TIME_MS, u64::MAX).remove(0);
    // The same ledger restarted from its log, before the batch it sent lands.
    let mut restarted = Ledger::new(CHAIN_ID.into(), w.cast.gateway.clone(), LedgerConfig::default());
    restarted.recover(&w.chain, TIME_MS, w.ledger.wal_records());
    // Someone holding the key signs a batch for a session of its own.
    let o2 = open(&w.cast.operator2, Some(w.cast.gateway.public()), 9);
    let id2 = o2.open.session_id();
    let foreign = batch(&w.cast.gateway, id2, Some(o2), vec![step(&w.cast.operator2, id2, 1, "P", scan())], vec![Hash([0; 32])]);
    let foreign_tx = Tx::SessionBatch(foreign.clone()).encode();
    let Ok(Tx::SessionBatch(ours_batch)) = Tx::decode(&ours.tx) else { panic!("a batch") };
    let results = vec![w.direct(&ours.tx), w.direct(&foreign_tx)];
    assert!(matches!(results[0].1, TxResult::Committed { .. }), "{results:?}");
    let block = ReplayedBlock { height: 2, results };
    let own = vec![(ours.tx_hash.clone(), ours_batch), (tx_hash(&foreign_tx), foreign)];

    assert!(unrecovered.audit_own_batches(&block, &own).is_empty(), "nothing is judged before recovery");
    assert_eq!(w.ledger.audit_own_batches(&block, &own), vec![tx_hash(&foreign_tx)]);
    assert_eq!(w.ledger.foreign_batches(), 1);
    assert_eq!(restarted.audit_own_batches(&block, &own), vec![tx_hash(&foreign_tx)], "the restarted ledger knows its batch by its steps");
    assert_eq!(restarted.foreign_batches(), 1);
    // The block is then taken in as usual: our session is final.
    w.ledger.on_block(&w.chain, &block, TIME_MS);
    assert_eq!(w.ledger.session(&s).expect("s").status, SessionStatus::Finalized);
}

#[test]
fn a_checkpoint_finalizes_steps_but_the_session_stays_open_with_its_locks() {
    let config = LedgerConfig { auto_commit_steps: 2, auto_commit_idle_ms: 60_000, ..LedgerConfig::default() };
    let mut w = World::new(config);
    w.registered("P", 1);
    let (op, op2) = (w.cast.operator.clone(), w.cast.operator2.clone());
    let a = w.open(&op, 1);
    w.step(&op, a, 1, "P", scan()).expect("scan");
    assert!(w.ledger.batches_to_send(TIME_MS, u64::MAX).is_empty(), "one unsent step is not due");
    w.step(&op, a, 2, "P", validate()).expect("validate");
    let events = w.round(vec![]);
    assert!(events.iter().any(|e| matches!(e, Event::SessionFinalized { last_seq: 2, complete: false, .. })), "{events:?}");
    let session = w.ledger.session(&a).expect("a");
    assert_eq!(session.status, SessionStatus::Open, "a checkpoint does not close");
    assert_eq!(session.chain_seq, 2);
    let on_chain = w.chain.session(&a).expect("on L1");
    assert_eq!((on_chain.last_seq, on_chain.closed), (2, false));
    // Still open, still holding P.
    let b = w.open(&op2, 1);
    assert_eq!(w.step(&op2, b, 1, "P", qc(true)).expect_err("locked").code, "package_locked");
    w.step(&op, a, 3, "P", qc(true)).expect("the owner goes on after the checkpoint");
    // Idle checkpoint: the third step goes out alone after the idle time.
    assert!(w.ledger.batches_to_send(TIME_MS + 59_999, u64::MAX).is_empty());
    let out = w.ledger.batches_to_send(TIME_MS + 60_000, u64::MAX);
    assert_eq!(out.len(), 1);
    let Tx::SessionBatch(batch) = Tx::decode(&out[0].tx).expect("tx") else { panic!("a batch") };
    assert_eq!(batch.body.steps.len(), 1);
    assert!(batch.body.close.is_none(), "a checkpoint carries no close");
    let (h, r) = w.direct(&out[0].tx);
    w.height += 1;
    let base = w.chain.clone();
    w.ledger.on_block(&base, &ReplayedBlock { height: w.height, results: vec![(h, r)] }, TIME_MS);
    assert_eq!(w.ledger.session(&a).expect("a").status, SessionStatus::Open);
    // The owner closes: only the close is left to send; then P is free.
    w.commit(&op, a).expect("close");
    let out = w.ledger.batches_to_send(TIME_MS, u64::MAX);
    let Tx::SessionBatch(batch) = Tx::decode(&out[0].tx).expect("tx") else { panic!("a batch") };
    assert!(batch.body.steps.is_empty() && batch.body.close.is_some(), "{batch:?}");
    w.ledger.unsent(&a);
    let events = w.round(vec![]);
    assert!(events.iter().any(|e| matches!(e, Event::SessionFinalized { complete: true, .. })), "{events:?}");
    assert_eq!(w.ledger.session(&a).expect("a").status, SessionStatus::Finalized);
    assert!(w.chain.session(&a).expect("on L1").closed);
    w.step(&op2, b, 1, "P", label(w.cast.courier.public())).expect("P is free once a is closed");
}

#[test]
fn only_the_owner_closes_a_session_and_a_refused_close_changes_nothing() {
    let mut w = World::new(LedgerConfig::default());
    w.registered("P", 1);
    let (op, op2) = (w.cast.operator.clone(), w.cast.operator2.clone());
    let a = w.open(&op, 1);
    w.step(&op, a, 1, "P", scan()).expect("scan");
    let refused = |w: &mut World, c| {
        let e = w.ledger.request_close(&a, c, TIME_MS).expect_err("refused");
        (e.kind, e.code)
    };
    assert_eq!(refused(&mut w, close(&op2, a, 1)), (Kind::Forbidden, "not_session_owner"));
    let gateway = w.cast.gateway.clone();
    assert_eq!(refused(&mut w, close(&gateway, a, 1)), (Kind::Forbidden, "not_session_owner"));
    let mut forged = close(&op2, a, 1);
    forged.close.owner = op.public();
    assert_eq!(refused(&mut w, forged), (Kind::Unauthorized, "bad_signature"));
    assert_eq!(refused(&mut w, close(&op, a, 0)), (Kind::Conflict, "bad_sequence"));
    assert_eq!(refused(&mut w, close(&op, Hash([4; 32]), 1)), (Kind::BadRequest, "session_mismatch"));
    assert_eq!(w.ledger.session(&a).expect("a").status, SessionStatus::Open);
    assert!(w.ledger.batches_to_send(TIME_MS, u64::MAX).is_empty(), "nothing is sent for a refused close");
    w.step(&op, a, 2, "P", validate()).expect("the owner's next step is taken");
    w.commit(&op, a).expect("the owner closes");
    assert_eq!(w.ledger.session(&a).expect("a").status, SessionStatus::Committing);
    assert_eq!(w.step(&op, a, 3, "P", qc(true)).expect_err("closed").code, "session_not_open");
}

#[test]
fn one_owner_cannot_hold_more_than_its_open_sessions_and_others_still_open() {
    let config = LedgerConfig { owner_sessions_max: 2, ..LedgerConfig::default() };
    let mut w = World::new(config);
    let (op, op2) = (w.cast.operator.clone(), w.cast.operator2.clone());
    let first = w.open(&op, 1);
    w.open(&op, 2);
    let err = w.ledger.open_session(&w.chain, TIME_MS, open(&op, Some(w.cast.gateway.public()), 3)).expect_err("over");
    assert_eq!((err.kind, err.code, err.kind.status()), (Kind::RateLimited, "too_many_owner_sessions", 429));
    w.open(&op2, 1);
    w.open(&op2, 2);
    // Closing one frees a place.
    w.commit(&op, first).expect("close the empty one");
    w.open(&op, 3);
}

#[test]
fn idle_sessions_expire_empty_ones_stop_counting_and_steps_are_still_finalized() {
    let config =
        LedgerConfig { owner_sessions_max: 2, session_idle_expire_ms: 1_000, auto_commit_idle_ms: 60_000, ..LedgerConfig::default() };
    let mut w = World::new(config);
    w.registered("P", 1);
    let (op, op2) = (w.cast.operator.clone(), w.cast.operator2.clone());
    let o = open(&op, Some(w.cast.gateway.public()), 1);
    let empty = w.ledger.open_session(&w.chain, TIME_MS, o.clone()).expect("open");
    let busy = w.open(&op, 2);
    w.step(&op, busy, 1, "P", scan()).expect("scan");
    w.step(&op, busy, 2, "P", validate()).expect("validate");
    assert!(w.ledger.due_expiries(TIME_MS + 999).is_empty());
    let due = w.ledger.due_expiries(TIME_MS + 1_000);
    assert_eq!(due.len(), 2);
    let events: Vec<Event> = due.iter().filter_map(|id| w.ledger.expire(id)).collect();
    assert!(events.contains(&Event::SessionExpired { session: empty, pending: 0 }), "{events:?}");
    assert!(events.contains(&Event::SessionExpired { session: busy, pending: 2 }), "{events:?}");
    // Neither counts against the owner's limit any more.
    w.open(&op, 3);
    w.open(&op, 4);
    // No more steps; its packages are free; its steps go out without a close.
    assert_eq!(w.step(&op, busy, 3, "P", qc(true)).expect_err("expired").code, "session_expired");
    assert_eq!(w.ledger.session(&busy).expect("busy").status, SessionStatus::Expired);
    let events = w.round(vec![]);
    assert!(events.iter().any(|e| matches!(e, Event::SessionFinalized { last_seq: 2, complete: true, .. })), "{events:?}");
    let on_chain = w.chain.session(&busy).expect("on L1");
    assert_eq!((on_chain.last_seq, on_chain.closed), (2, false));
    assert_eq!(w.ledger.pending_steps(), 0);
    let b = w.open(&op2, 1);
    w.step(&op2, b, 1, "P", qc(true)).expect("P is free");
    // The expiry is logged: a restart does not reopen the empty session.
    let mut again = World::new(LedgerConfig::default());
    let (live, _) = again.ledger.recover(&again.chain, TIME_MS, vec![WalRecord::Opened(o), WalRecord::Expired(empty)]);
    assert_eq!(live, 0);
    assert_eq!(again.ledger.session(&empty).expect("kept").status, SessionStatus::Expired);
}
