//! Tests of the engine against an independent statement of the intake rules:
//! the whole authorization matrix, every rejection code a step can earn,
//! session batches, admin transactions, and randomized sequences that must
//! keep the invariants.

use std::collections::BTreeMap;

use proptest::prelude::*;

use crate::apply::{apply, apply_batch, execute, open_session, BatchRejection, TxResult};
use crate::crypto::{Domain, Hash, SecretKey};
use crate::kv::{KvRead, Overlay};
use crate::message::{Action, AdminBody, AdminOp, DirectStep, SessionBatch, Tx};
use crate::model::{Role, Stage};
use crate::reject::Code;
use crate::state::StateRead;
use crate::testkit::*;

type Mem = Overlay<BTreeMap<Vec<u8>, Vec<u8>>>;

/// A cast, its state, and one direct session per session-owning role.
struct Fixture {
    cast: Cast,
    state: Mem,
    sessions: BTreeMap<Role, (Hash, u64)>,
}

impl Fixture {
    fn new() -> Self {
        let cast = Cast::new();
        let mut state = cast.state();
        let mut sessions = BTreeMap::new();
        for (role, key) in [
            (Role::Supplier, &cast.supplier),
            (Role::Operator, &cast.operator),
            (Role::Inspector, &cast.inspector),
            (Role::Courier, &cast.courier),
        ] {
            let record = open_session(&mut state, &ctx(), &open(key, None, 1)).expect("open");
            sessions.insert(role, (record.id, 1));
        }
        Fixture { cast, state, sessions }
    }

    fn key(&self, role: Role) -> &SecretKey {
        match role {
            Role::Supplier => &self.cast.supplier,
            Role::Operator => &self.cast.operator,
            Role::Inspector => &self.cast.inspector,
            Role::Courier => &self.cast.courier,
            Role::Admin => &self.cast.admin,
        }
    }

    /// Sign `action` as `role`'s actor in its session and apply it.
    fn run(&mut self, role: Role, package: &str, action: Action) -> Result<crate::Outcome, crate::Rejection> {
        let (session, seq) = self.sessions[&role];
        let signed = step(self.key(role), session, seq, package, action);
        let before = self.state.writes().clone();
        let result = apply(&mut self.state, &ctx(), &signed);
        match &result {
            Ok(_) => self.sessions.get_mut(&role).expect("session").1 += 1,
            Err(_) => assert_eq!(&before, self.state.writes(), "a rejected step wrote to state"),
        }
        result
    }

    /// Bring `package` to `stage` along the happy path (or quarantine).
    fn bring_to(&mut self, package: &str, stage: Stage) {
        let courier = self.cast.courier.public();
        let path: Vec<(Role, Action)> = vec![
            (Role::Supplier, register(&self.cast.supplier, package)),
            (Role::Operator, scan()),
            (Role::Operator, validate()),
            (Role::Inspector, qc(stage != Stage::Quarantined)),
            (Role::Operator, label(courier)),
            (Role::Operator, handover(courier)),
            (Role::Courier, deliver()),
        ];
        let depth = match stage {
            Stage::Registered => 1,
            Stage::Scanned => 2,
            Stage::Validated => 3,
            Stage::Inspected | Stage::Quarantined => 4,
            Stage::Labeled => 5,
            Stage::HandedOver => 6,
            Stage::Delivered => 7,
        };
        for (role, action) in path.into_iter().take(depth) {
            self.run(role, package, action).expect("happy path");
        }
        assert_eq!(self.state.package(package).expect("package").stage, stage);
    }
}

/// The intake rules written out independently of the engine's table.
/// (action name, roles allowed, stages it starts from (empty = creates), stage after)
fn spec() -> Vec<(&'static str, Vec<Role>, Vec<Stage>, Stage)> {
    use Role::*;
    use Stage::*;
    vec![
        ("register", vec![Supplier], vec![], Registered),
        ("scan", vec![Operator], vec![Registered], Scanned),
        ("validate", vec![Operator], vec![Scanned], Validated),
        ("qc-pass", vec![Inspector, Operator], vec![Validated], Inspected),
        ("qc-fail", vec![Inspector, Operator], vec![Validated], Quarantined),
        ("label", vec![Operator], vec![Inspected], Labeled),
        ("handover", vec![Operator], vec![Labeled], HandedOver),
        ("deliver", vec![Courier], vec![HandedOver], Delivered),
    ]
}

fn action_named(name: &str, f: &Fixture, role: Role) -> Action {
    let courier = f.cast.courier.public();
    match name {
        "register" => register(f.key(role), "P"),
        "scan" => scan(),
        "validate" => validate(),
        "qc-pass" => qc(true),
        "qc-fail" => qc(false),
        "label" => label(courier),
        "handover" => handover(courier),
        "deliver" => deliver(),
        other => unreachable!("{other}"),
    }
}

#[test]
fn every_role_action_and_stage_is_allowed_or_denied_exactly_as_the_rules_say() {
    let roles = [Role::Supplier, Role::Operator, Role::Inspector, Role::Courier];
    let mut states: Vec<Option<Stage>> = vec![None];
    states.extend(Stage::ALL.into_iter().map(Some));
    let mut cases = 0;
    for (name, allowed_roles, from, to) in spec() {
        for role in roles {
            for &at in &states {
                let mut f = Fixture::new();
                if let Some(stage) = at {
                    f.bring_to("P", stage);
                }
                let action = action_named(name, &f, role);
                let expected: Result<Stage, Code> = if !allowed_roles.contains(&role) {
                    Err(Code::RoleDenied)
                } else if from.is_empty() {
                    if at.is_none() {
                        Ok(to)
                    } else {
                        Err(Code::PackageExists)
                    }
                } else {
                    match at {
                        None => Err(Code::UnknownPackage),
                        Some(s) if from.contains(&s) => Ok(to),
                        Some(_) => Err(Code::WrongStage),
                    }
                };
                let got = f.run(role, "P", action).map(|o| o.stage_after).map_err(|r| r.code);
                assert_eq!(got, expected, "{} by {role:?} at {at:?}", name);
                cases += 1;
            }
        }
    }
    assert_eq!(cases, 8 * 4 * 9);
}

#[test]
fn the_whole_workflow_reaches_delivery_and_records_history() {
    let mut f = Fixture::new();
    f.bring_to("P", Stage::Delivered);
    let p = f.state.package("P").expect("package");
    let actions: Vec<&str> = p.history.iter().map(|h| h.action.name()).collect();
    assert_eq!(actions, ["register", "scan", "validate", "qc", "label", "handover", "deliver"]);
    assert_eq!(p.qc.len(), 1);
    assert!(p.qc[0].passed);
    assert_eq!(p.label.as_ref().expect("label").courier, f.cast.courier.public());
    assert_eq!(p.supplier, f.cast.supplier.public());
}

fn code_of(r: Result<crate::Outcome, crate::Rejection>) -> Code {
    r.expect_err("should be rejected").code
}

#[test]
fn a_forged_or_mutated_step_is_rejected_with_bad_signature() {
    let mut f = Fixture::new();
    let (session, seq) = f.sessions[&Role::Supplier];
    let mut signed = step(&f.cast.supplier, session, seq, "P", register(&f.cast.supplier, "P"));
    signed.step.package_id = "Q".into();
    assert_eq!(code_of(apply(&mut f.state, &ctx(), &signed)), Code::BadSignature);
    // Signed by someone else in the supplier's name.
    let mut forged = step(&f.cast.operator, session, seq, "P", register(&f.cast.supplier, "P"));
    forged.step.actor = f.cast.supplier.public();
    assert_eq!(code_of(apply(&mut f.state, &ctx(), &forged)), Code::BadSignature);
}

#[test]
fn sequence_numbers_must_continue_exactly() {
    let mut f = Fixture::new();
    let (session, _) = f.sessions[&Role::Supplier];
    let s = &f.cast.supplier;
    let skip = step(s, session, 2, "P", register(s, "P"));
    assert_eq!(code_of(apply(&mut f.state, &ctx(), &skip)), Code::BadSequence);
    let first = step(s, session, 1, "P", register(s, "P"));
    apply(&mut f.state, &ctx(), &first).expect("first");
    // Replaying the same signed step is refused.
    assert_eq!(code_of(apply(&mut f.state, &ctx(), &first)), Code::BadSequence);
}

#[test]
fn session_binding_chain_and_time_are_checked() {
    let mut f = Fixture::new();
    let (session, seq) = f.sessions[&Role::Supplier];
    let s = f.cast.supplier.clone();
    // Unknown session.
    let stray = step(&s, Hash([7; 32]), 1, "P", register(&s, "P"));
    assert_eq!(code_of(apply(&mut f.state, &ctx(), &stray)), Code::UnknownSession);
    // Someone else's session.
    let (op_session, op_seq) = f.sessions[&Role::Operator];
    let intruder = step(&s, op_session, op_seq, "P", register(&s, "P"));
    assert_eq!(code_of(apply(&mut f.state, &ctx(), &intruder)), Code::NotSessionOwner);
    // Wrong chain.
    let mut other = step(&s, session, seq, "P", register(&s, "P")).step;
    other.chain_id = "elsewhere".into();
    assert_eq!(code_of(apply(&mut f.state, &ctx(), &other.sign(&s))), Code::WrongChain);
    // Stale time.
    let mut old = step(&s, session, seq, "P", register(&s, "P")).step;
    old.client_time_ms = TIME_MS - crate::limits::STEP_TIME_WINDOW_MS - 1;
    assert_eq!(code_of(apply(&mut f.state, &ctx(), &old.clone().sign(&s))), Code::StaleTime);
    old.client_time_ms = TIME_MS - crate::limits::STEP_TIME_WINDOW_MS;
    assert!(apply(&mut f.state, &ctx(), &old.sign(&s)).is_ok(), "the window's edge is inside");
}

#[test]
fn unknown_and_revoked_actors_cannot_open_or_act() {
    let mut f = Fixture::new();
    let stranger = f.cast.stranger.clone();
    let r = open_session(&mut f.state, &ctx(), &open(&stranger, None, 1));
    assert_eq!(r.expect_err("stranger").code, Code::UnknownActor);
    let r = open_session(&mut f.state, &ctx(), &open(&f.cast.admin.clone(), None, 1));
    assert_eq!(r.expect_err("admin owns no session").code, Code::RoleDenied);
    let revoke = AdminBody {
        chain_id: CHAIN_ID.into(),
        admin: f.cast.admin.public(),
        nonce: 1,
        op: AdminOp::RevokeActor { key: f.cast.supplier.public() },
    }
    .sign(&f.cast.admin);
    crate::apply::apply_admin(&mut f.state, &ctx(), &revoke).expect("revoke");
    let s = f.cast.supplier.clone();
    assert_eq!(code_of(f.run(Role::Supplier, "P", register(&s, "P"))), Code::ActorRevoked);
}

#[test]
fn payload_checks_have_their_own_codes() {
    // A manifest signed by someone else passes registration but fails validation.
    let mut f = Fixture::new();
    let mut bad = register(&f.cast.supplier, "P");
    if let Action::Register { manifest_signature, manifest } = &mut bad {
        *manifest_signature = f.cast.supplier2.sign(Domain::Manifest, manifest);
    }
    f.run(Role::Supplier, "P", bad).expect("registration does not check the signature");
    f.run(Role::Operator, "P", scan()).expect("scan");
    assert_eq!(code_of(f.run(Role::Operator, "P", validate())), Code::ManifestSignatureInvalid);

    let mut f = Fixture::new();
    f.bring_to("P", Stage::Scanned);
    let wrong = Action::Validate { counts: vec![crate::message::ItemCount { item_id: "SKU-1".into(), quantity: 99 }] };
    assert_eq!(code_of(f.run(Role::Operator, "P", wrong)), Code::ManifestMismatch);

    f.run(Role::Operator, "P", validate()).expect("validate");
    let silent = Action::Qc { passed: false, issues: vec![] };
    assert_eq!(code_of(f.run(Role::Inspector, "P", silent)), Code::QcIssuesRequired);
    f.run(Role::Inspector, "P", qc(true)).expect("qc");
    let stranger = f.cast.stranger.public();
    assert_eq!(code_of(f.run(Role::Operator, "P", label(stranger))), Code::UnknownCourier);
    let inspector = f.cast.inspector.public();
    assert_eq!(code_of(f.run(Role::Operator, "P", label(inspector))), Code::UnknownCourier);
    let courier = f.cast.courier.public();
    f.run(Role::Operator, "P", label(courier)).expect("label");
    let other = f.cast.courier2.public();
    assert_eq!(code_of(f.run(Role::Operator, "P", handover(other))), Code::NotAssignedCourier);
    f.run(Role::Operator, "P", handover(courier)).expect("handover");
    // courier-2 may deliver nothing that is not theirs.
    let c2 = f.cast.courier2.clone();
    let rec = open_session(&mut f.state, &ctx(), &open(&c2, None, 1)).expect("open");
    let signed = step(&c2, rec.id, 1, "P", deliver());
    assert_eq!(code_of(apply(&mut f.state, &ctx(), &signed)), Code::NotAssignedCourier);
}

#[test]
fn oversized_and_malformed_fields_are_invalid_payload() {
    let mut f = Fixture::new();
    f.bring_to("P", Stage::Registered);
    let long = "x".repeat(crate::limits::ID_BYTES_MAX + 1);
    assert_eq!(code_of(f.run(Role::Operator, "P", Action::Scan { station: long })), Code::InvalidPayload);
    assert_eq!(code_of(f.run(Role::Operator, "P", Action::Scan { station: "a b".into() })), Code::InvalidPayload);
    assert_eq!(code_of(f.run(Role::Operator, "P", Action::Scan { station: String::new() })), Code::InvalidPayload);
    let s = f.cast.supplier.clone();
    assert_eq!(code_of(f.run(Role::Supplier, "bad id!", register(&s, "bad id!"))), Code::InvalidPayload);
    // The manifest must describe the package it registers.
    assert_eq!(code_of(f.run(Role::Supplier, "Q", register(&s, "R"))), Code::InvalidPayload);
}

/// The size bounds in `limits.rs` are computed, not measured: the largest
/// step the workflow accepts (a full manifest, every field at its limit, on a
/// chain id of the longest length) encodes to exactly `SIGNED_STEP_BYTES_MAX`
/// and is accepted, and a batch of one such step with its open request fits
/// the overhead bound.
#[test]
fn the_largest_accepted_step_is_exactly_the_computed_bound() {
    use crate::apply::apply_batch;
    use crate::limits::{batch_step_bytes, BATCH_OVERHEAD_BYTES_MAX, CHAIN_ID_BYTES_MAX, SIGNED_STEP_BYTES_MAX, STEP_BYTES_MAX};
    use crate::message::{SessionOpen, Step};
    let cast = Cast::new();
    let chain = "c".repeat(CHAIN_ID_BYTES_MAX);
    let mut state = Overlay::new(BTreeMap::new());
    cast.genesis().apply(&chain, &mut state).expect("genesis");
    let ctx = crate::apply::Ctx { chain_id: &chain, ..ctx() };
    let open = SessionOpen {
        chain_id: chain.clone(),
        owner: cast.supplier.public(),
        gateway: Some(cast.gateway.public()),
        nonce: 1,
        client_time_ms: TIME_MS,
    }
    .sign(&cast.supplier);
    let session = open.open.session_id();
    let package = max_package_id("P-", 1);
    let signed = Step {
        chain_id: chain.clone(),
        session,
        seq: 1,
        actor: cast.supplier.public(),
        package_id: package.clone(),
        action: max_register(&chain, &cast.supplier, &package),
        client_time_ms: TIME_MS,
    }
    .sign(&cast.supplier);
    let len = borsh::to_vec(&signed).expect("encodes").len();
    assert_eq!(len, SIGNED_STEP_BYTES_MAX);
    assert!(len <= STEP_BYTES_MAX);

    let mut probe = Overlay::new(&state);
    open_session(&mut probe, &ctx, &open).expect("open");
    let outcome = apply(&mut probe, &ctx, &signed).expect("the largest step is accepted");
    let batch = crate::message::BatchBody {
        chain_id: chain.clone(),
        session,
        open: Some(open.clone()),
        steps: vec![signed.clone()],
        claims: vec![outcome.hash()],
        gateway: cast.gateway.public(),
        close: Some(
            crate::message::SessionClose { chain_id: chain.clone(), session, owner: cast.supplier.public(), last_seq: 1 }
                .sign(&cast.supplier),
        ),
    }
    .sign(&cast.gateway);
    let tx = Tx::SessionBatch(batch.clone()).encode();
    assert!(tx.len() <= BATCH_OVERHEAD_BYTES_MAX + batch_step_bytes(SIGNED_STEP_BYTES_MAX), "{}", tx.len());
    assert!(apply_batch(&mut Overlay::new(&state), &ctx, &batch).is_ok());

    // One byte more anywhere is refused by the workflow.
    let mut longer = signed.step.clone();
    if let Action::Register { manifest, .. } = &mut longer.action {
        manifest.lines[0].description.push('d');
    }
    let mut probe = Overlay::new(&state);
    open_session(&mut probe, &ctx, &open).expect("open");
    let longer = longer.sign(&cast.supplier);
    assert_eq!(borsh::to_vec(&longer).expect("encodes").len(), SIGNED_STEP_BYTES_MAX + 1);
    assert_eq!(code_of(apply(&mut probe, &ctx, &longer)), Code::InvalidPayload);
}

fn full_session(cast: &Cast, state: &mut Mem, package: &str) -> SessionBatch {
    // The supplier registers directly on L1, then an operator's gateway session
    // scans, validates, checks and labels.
    let sup = open(&cast.supplier, None, 7);
    let reg = step(&cast.supplier, sup.open.session_id(), 1, package, register(&cast.supplier, package));
    let tx = Tx::DirectStep(DirectStep { open: Some(sup), step: reg }).encode();
    assert!(matches!(execute(state, &ctx(), &tx), TxResult::Direct { .. }));
    let o = open(&cast.operator, Some(cast.gateway.public()), 1);
    let id = o.open.session_id();
    let actions = [scan(), validate(), qc(true), label(cast.courier.public())];
    let steps: Vec<_> = actions.into_iter().enumerate().map(|(i, a)| step(&cast.operator, id, i as u64 + 1, package, a)).collect();
    // Predict the outcomes on a throwaway overlay, as the gateway does.
    let mut scratch = Overlay::new(&*state);
    open_session(&mut scratch, &ctx(), &o).expect("open");
    let claims = steps.iter().map(|s| apply(&mut scratch, &ctx(), s).expect("step").hash()).collect();
    batch(&cast.gateway, id, Some(o), steps, claims)
}

#[test]
fn a_session_batch_commits_whole_with_the_predicted_state() {
    let cast = Cast::new();
    let mut state = cast.state();
    let b = full_session(&cast, &mut state, "P");
    let mut predicted = Overlay::new(&state);
    let predicted_outcomes = apply_batch(&mut predicted, &ctx(), &b).expect("prediction");
    let predicted_writes = predicted.into_writes();
    match execute(&mut state, &ctx(), &Tx::SessionBatch(b.clone()).encode()) {
        TxResult::Committed { outcomes, first_seq, last_seq, .. } => {
            assert_eq!(outcomes, predicted_outcomes);
            assert_eq!((first_seq, last_seq), (1, 4));
        }
        other => panic!("not committed: {other:?}"),
    }
    for (k, v) in predicted_writes {
        assert_eq!(state.get(&k), v, "state differs from the prediction");
    }
    assert_eq!(state.package("P").expect("package").stage, Stage::Labeled);
    // The same batch again is a duplicate, and changes nothing.
    let before = state.writes().clone();
    match execute(&mut state, &ctx(), &Tx::SessionBatch(b).encode()) {
        TxResult::Rejected { rejection, index: None, .. } => assert_eq!(rejection.code, Code::Duplicate),
        other => panic!("not a duplicate: {other:?}"),
    }
    assert_eq!(&before, state.writes());
}

#[test]
fn a_wrong_claim_rejects_the_whole_batch_and_is_held_against_the_gateway() {
    let cast = Cast::new();
    let mut state = cast.state();
    let mut b = full_session(&cast, &mut state, "P");
    b.body.claims[2] = Hash([0xAB; 32]);
    let b = b.body.sign(&cast.gateway);
    let before = state.package("P");
    match execute(&mut state, &ctx(), &Tx::SessionBatch(b).encode()) {
        TxResult::Rejected { index: Some(2), rejection, .. } => assert_eq!(rejection.code, Code::OutcomeMismatch),
        other => panic!("expected a mismatch at step 2: {other:?}"),
    }
    assert_eq!(state.package("P"), before, "no step of a rejected batch may stick");
    assert_eq!(state.gateway(&cast.gateway.public()).expect("gateway").misbehaviours, 1);
}

#[test]
fn a_failing_step_rejects_the_batch_at_its_index() {
    let cast = Cast::new();
    let mut state = cast.state();
    let o = open(&cast.operator, Some(cast.gateway.public()), 1);
    let id = o.open.session_id();
    // Scanning a package that does not exist fails at step 0.
    let steps = vec![step(&cast.operator, id, 1, "NOPE", scan())];
    let b = batch(&cast.gateway, id, Some(o), steps, vec![Hash([0; 32])]);
    let mut overlay = Overlay::new(&state);
    let r = apply_batch(&mut overlay, &ctx(), &b).expect_err("rejected");
    assert_eq!(r.index, Some(0));
    assert_eq!(r.rejection.code, Code::UnknownPackage);
    assert!(overlay.writes().is_empty(), "nothing written, not even the session");
    let _ = &mut state;
}

#[test]
fn batch_headers_are_checked() {
    let cast = Cast::new();
    let mut state = cast.state();
    let b = full_session(&cast, &mut state, "P");
    let check = |b: &SessionBatch, state: &Mem| -> BatchRejection {
        let mut o = Overlay::new(state);
        apply_batch(&mut o, &ctx(), b).expect_err("rejected")
    };
    // A stranger gateway.
    let forged = b.body.clone().sign(&cast.stranger);
    let mut by_stranger = forged.clone();
    by_stranger.body.gateway = cast.stranger.public();
    let by_stranger = by_stranger.body.sign(&cast.stranger);
    assert_eq!(check(&by_stranger, &state).rejection.code, Code::UnknownGateway);
    // A valid gateway key but a signature by someone else.
    assert_eq!(check(&forged, &state).rejection.code, Code::BadSignature);
    // Claims that do not pair with steps.
    let mut short = b.body.clone();
    short.claims.pop();
    assert_eq!(check(&short.sign(&cast.gateway), &state).rejection.code, Code::BadBatch);
    // A session opened for direct steps cannot be submitted by a gateway.
    let d = open(&cast.operator2, None, 1);
    let did = d.open.session_id();
    let mut wrong_gw = b.body.clone();
    wrong_gw.session = did;
    wrong_gw.open = Some(d);
    for s in &mut wrong_gw.steps {
        s.step.session = did;
    }
    assert_eq!(check(&wrong_gw.sign(&cast.gateway), &state).rejection.code, Code::GatewayMismatch);
}

/// Re-sign `b` with a close (and optionally other steps), as a gateway would.
fn with_close(cast: &Cast, b: &SessionBatch, close: Option<crate::message::SignedSessionClose>) -> SessionBatch {
    let mut body = b.body.clone();
    body.close = close;
    body.sign(&cast.gateway)
}

#[test]
fn an_owner_signed_close_closes_the_session_and_l1_refuses_anything_later() {
    let cast = Cast::new();
    let mut state = cast.state();
    let b = full_session(&cast, &mut state, "P");
    let id = b.body.session;
    let closing = with_close(&cast, &b, Some(close(&cast.operator, id, 4)));
    assert!(crate::apply::check_stateless(&Tx::SessionBatch(closing.clone()).encode(), None).is_ok());
    match execute(&mut state, &ctx(), &Tx::SessionBatch(closing).encode()) {
        TxResult::Committed { first_seq, last_seq, closed, .. } => assert_eq!((first_seq, last_seq, closed), (1, 4, true)),
        other => panic!("not committed: {other:?}"),
    }
    let record = state.session(&id).expect("session");
    assert!(record.closed);
    assert_eq!(record.last_seq, 4);
    // A later step, in a batch or as a checkpoint with or without a close,
    // is refused, and changes nothing.
    let before = state.writes().clone();
    let next = step(&cast.operator, id, 5, "P", handover(cast.courier.public()));
    let mut scratch = Overlay::new(&state);
    let later = batch(&cast.gateway, id, None, vec![next.clone()], vec![Hash([0; 32])]);
    assert_eq!(apply_batch(&mut scratch, &ctx(), &later).expect_err("closed").rejection.code, Code::SessionClosed);
    let reclose = batch_closing(&cast.gateway, id, None, vec![], vec![], close(&cast.operator, id, 4));
    assert_eq!(apply_batch(&mut scratch, &ctx(), &reclose).expect_err("closed").rejection.code, Code::SessionClosed);
    assert!(scratch.writes().is_empty());
    assert_eq!(crate::apply::apply(&mut scratch, &ctx(), &next).expect_err("closed").code, Code::SessionClosed);
    assert_eq!(&before, state.writes());
}

#[test]
fn a_close_not_signed_by_the_owner_or_not_at_the_last_step_is_refused_whole() {
    let cast = Cast::new();
    let mut state = cast.state();
    let b = full_session(&cast, &mut state, "P");
    let id = b.body.session;
    let refused = |close: crate::message::SignedSessionClose| -> Code {
        let batch = with_close(&cast, &b, Some(close));
        let mut o = Overlay::new(&state);
        let r = apply_batch(&mut o, &ctx(), &batch).expect_err("refused");
        assert_eq!(r.index, None, "the close is refused as a whole");
        assert!(o.writes().is_empty(), "nothing written, not even the steps");
        r.rejection.code
    };
    // Someone else closing the operator's session: by their own key ...
    assert_eq!(refused(close(&cast.operator2, id, 4)), Code::NotSessionOwner);
    assert_eq!(refused(close(&cast.gateway, id, 4)), Code::NotSessionOwner);
    // ... or naming the owner without the owner's key.
    let mut forged = close(&cast.operator2, id, 4);
    forged.close.owner = cast.operator.public();
    assert_eq!(refused(forged.clone()), Code::BadSignature);
    let tx = Tx::SessionBatch(with_close(&cast, &b, Some(forged))).encode();
    assert_eq!(crate::apply::check_stateless(&tx, None).expect_err("stateless").code, Code::BadSignature);
    // Not at the batch's last step, for another session or chain.
    assert_eq!(refused(close(&cast.operator, id, 3)), Code::BadSequence);
    assert_eq!(refused(close(&cast.operator, id, 5)), Code::BadSequence);
    assert_eq!(refused(close(&cast.operator, Hash([3; 32]), 4)), Code::WrongSession);
    let mut other_chain = close(&cast.operator, id, 4).close;
    other_chain.chain_id = "another-chain".into();
    assert_eq!(refused(other_chain.sign(&cast.operator)), Code::WrongChain);
    // The replayed refusal leaves the session unknown on L1.
    match execute(&mut state, &ctx(), &Tx::SessionBatch(with_close(&cast, &b, Some(close(&cast.operator2, id, 4)))).encode()) {
        TxResult::Rejected { rejection, .. } => assert_eq!(rejection.code, Code::NotSessionOwner),
        other => panic!("accepted: {other:?}"),
    }
    assert!(state.session(&id).is_none());
}

#[test]
fn checkpoints_leave_the_session_open_and_a_close_alone_ends_it() {
    let cast = Cast::new();
    let mut state = cast.state();
    let b = full_session(&cast, &mut state, "P");
    let id = b.body.session;
    let (open_req, steps, claims) = (b.body.open.clone(), b.body.steps.clone(), b.body.claims.clone());
    let first = batch(&cast.gateway, id, open_req, steps[..2].to_vec(), claims[..2].to_vec());
    let second = batch(&cast.gateway, id, None, steps[2..].to_vec(), claims[2..].to_vec());
    for (b, range) in [(first, (1, 2)), (second, (3, 4))] {
        match execute(&mut state, &ctx(), &Tx::SessionBatch(b).encode()) {
            TxResult::Committed { first_seq, last_seq, closed: false, .. } => assert_eq!((first_seq, last_seq), range),
            other => panic!("checkpoint not committed: {other:?}"),
        }
        assert!(!state.session(&id).expect("session").closed);
    }
    // A batch with no step and no close is malformed.
    let empty = batch(&cast.gateway, id, None, vec![], vec![]);
    assert_eq!(apply_batch(&mut Overlay::new(&state), &ctx(), &empty).expect_err("empty").rejection.code, Code::BadBatch);
    // The close alone, at the last finalized step.
    let at_three = batch_closing(&cast.gateway, id, None, vec![], vec![], close(&cast.operator, id, 3));
    assert_eq!(apply_batch(&mut Overlay::new(&state), &ctx(), &at_three).expect_err("seq").rejection.code, Code::BadSequence);
    let closing = batch_closing(&cast.gateway, id, None, vec![], vec![], close(&cast.operator, id, 4));
    match execute(&mut state, &ctx(), &Tx::SessionBatch(closing).encode()) {
        TxResult::Committed { first_seq, last_seq, outcomes, closed: true, .. } => {
            assert_eq!((first_seq, last_seq), (5, 4));
            assert!(outcomes.is_empty());
        }
        other => panic!("close not committed: {other:?}"),
    }
    assert!(state.session(&id).expect("session").closed);
}

#[test]
fn admin_transactions_need_the_next_nonce_and_an_admin() {
    let cast = Cast::new();
    let mut state = cast.state();
    let newbie = SecretKey::from_seed([77; 32]);
    let op = |nonce, key: &SecretKey| {
        AdminBody {
            chain_id: CHAIN_ID.into(),
            admin: key.public(),
            nonce,
            op: AdminOp::RegisterActor { key: newbie.public(), name: "operator-3".into(), role: Role::Operator },
        }
        .sign(key)
    };
    let run = |state: &mut Mem, tx| execute(state, &ctx(), &Tx::Admin(tx).encode());
    let code = |r: TxResult| match r {
        TxResult::Rejected { rejection, .. } => rejection.code,
        other => panic!("{other:?}"),
    };
    assert_eq!(code(run(&mut state, op(1, &cast.operator))), Code::NotAdmin);
    assert_eq!(code(run(&mut state, op(2, &cast.admin))), Code::BadNonce);
    assert_eq!(run(&mut state, op(1, &cast.admin)), TxResult::Admin);
    assert_eq!(code(run(&mut state, op(1, &cast.admin))), Code::BadNonce, "replay");
    assert_eq!(code(run(&mut state, op(2, &cast.admin))), Code::KeyExists);
    assert_eq!(state.actor(&newbie.public()).expect("registered").role, Role::Operator);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Random steps by random roles on three packages: rejections write
    /// nothing, history grows by exactly the accepted steps, every transition
    /// is one the rules allow, and replaying the accepted steps on fresh
    /// state gives the same state.
    #[test]
    fn random_step_sequences_keep_the_invariants(
        moves in proptest::collection::vec((0usize..4, 0usize..8, 0usize..3), 1..60)
    ) {
        let roles = [Role::Supplier, Role::Operator, Role::Inspector, Role::Courier];
        let names = ["register", "scan", "validate", "qc-pass", "qc-fail", "label", "handover", "deliver"];
        let packages = ["A", "B", "C"];
        let rules = spec();
        let mut f = Fixture::new();
        let mut accepted = Vec::new();
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for (r, a, p) in moves {
            let (role, name, pkg) = (roles[r], names[a], packages[p]);
            let mut action = action_named(name, &f, role);
            if let Action::Register { .. } = action {
                action = register(f.key(role), pkg);
            }
            let (session, seq) = f.sessions[&role];
            let signed = step(f.key(role), session, seq, pkg, action.clone());
            if let Ok(o) = f.run(role, pkg, action) {
                let (_, allowed, from, to) = rules.iter().find(|r| r.0 == name).expect("rule");
                prop_assert!(allowed.contains(&role));
                prop_assert_eq!(o.stage_after, *to);
                match o.stage_before {
                    None => prop_assert!(from.is_empty()),
                    Some(s) => prop_assert!(from.contains(&s)),
                }
                *counts.entry(pkg).or_default() += 1;
                accepted.push(signed);
            }
        }
        for pkg in packages {
            let n = counts.get(pkg).copied().unwrap_or(0);
            match f.state.package(pkg) {
                None => prop_assert_eq!(n, 0),
                Some(p) => {
                    prop_assert_eq!(p.history.len(), n);
                    prop_assert_eq!(p.history.last().map(|h| h.stage), Some(p.stage));
                }
            }
        }
        let mut replay = Fixture::new();
        for s in &accepted {
            apply(&mut replay.state, &ctx(), s).expect("replay of an accepted step");
        }
        prop_assert_eq!(replay.state.writes(), f.state.writes());
    }

    /// No byte string makes `execute` panic, and a rejected transaction
    /// changes nothing.
    #[test]
    fn arbitrary_bytes_never_panic_and_change_nothing(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let cast = Cast::new();
        let mut state = cast.state();
        let before = state.writes().clone();
        let result = execute(&mut state, &ctx(), &bytes);
        prop_assert!(result.code() != 0);
        prop_assert_eq!(&before, state.writes());
    }

    /// Flipping any byte of a valid batch never yields an accepted forgery
    /// that differs from the original.
    #[test]
    fn a_mutated_batch_is_never_accepted(pos in any::<proptest::sample::Index>(), bit in 0u8..8) {
        let cast = Cast::new();
        let mut state = cast.state();
        let b = full_session(&cast, &mut state, "P");
        let mut bytes = Tx::SessionBatch(b).encode();
        let i = pos.index(bytes.len());
        bytes[i] ^= 1 << bit;
        let result = execute(&mut state, &ctx(), &bytes);
        prop_assert!(result.code() != 0, "mutated batch accepted: {:?}", result);
    }
}
