//! Tests of what a refused session batch holds against its gateway: every
//! fault the gateway's signature proves raises its count under the right
//! code; refusals an honest gateway can earn through a race never do; and no
//! key that cannot sign enters state, by an administrator or a genesis.

use std::collections::BTreeMap;

use crate::apply::{apply, execute, open_session, Ctx, TxResult};
use crate::crypto::{Domain, Hash, PublicKey, SecretKey, Signature};
use crate::genesis::{GenesisActor, GenesisError, GenesisGateway};
use crate::kv::Overlay;
use crate::limits::STEP_TIME_WINDOW_MS;
use crate::message::{Action, AdminBody, AdminOp, DirectStep, SessionBatch, SignedSessionOpen, SignedStep, Tx};
use crate::model::Role;
use crate::reject::Code;
use crate::state::StateRead;
use crate::testkit::*;

type Mem = Overlay<BTreeMap<Vec<u8>, Vec<u8>>>;

/// State where the supplier registered `P` directly on L1.
fn registered(cast: &Cast) -> Mem {
    let mut state = cast.state();
    let sup = open(&cast.supplier, None, 7);
    let reg = step(&cast.supplier, sup.open.session_id(), 1, "P", register(&cast.supplier, "P"));
    let tx = Tx::DirectStep(DirectStep { open: Some(sup), step: reg }).encode();
    assert!(matches!(execute(&mut state, &ctx(), &tx), TxResult::Direct { .. }));
    state
}

/// The claims an honest gateway would make for `steps` on `state`: each
/// step's replayed outcome, as far as the steps apply (zeros after that).
fn claims(state: &Mem, open: Option<&SignedSessionOpen>, steps: &[SignedStep]) -> Vec<Hash> {
    let mut scratch = Overlay::new(state);
    if let Some(o) = open {
        let _ = open_session(&mut scratch, &ctx(), o);
    }
    steps.iter().map(|s| apply(&mut scratch, &ctx(), s).map_or(Hash([0; 32]), |o| o.hash())).collect()
}

/// A gateway-signed batch of `steps` with honest claims.
fn signed_batch(cast: &Cast, state: &Mem, session: Hash, open: Option<SignedSessionOpen>, steps: Vec<SignedStep>) -> SessionBatch {
    let c = claims(state, open.as_ref(), &steps);
    batch(&cast.gateway, session, open, steps, c)
}

/// Execute `b`, return (code, index) of its refusal.
fn refuse(state: &mut Mem, ctx: &Ctx<'_>, b: &SessionBatch) -> (Code, Option<u32>) {
    match execute(state, ctx, &Tx::SessionBatch(b.clone()).encode()) {
        TxResult::Rejected { rejection, index, .. } => (rejection.code, index),
        other => panic!("expected a refusal: {other:?}"),
    }
}

fn faults(state: &Mem, cast: &Cast) -> (u64, BTreeMap<Code, u64>) {
    let g = state.gateway(&cast.gateway.public()).expect("gateway");
    (g.misbehaviours, g.faults)
}

/// The operator's gateway session and its honest first steps on `P`.
fn operator_session(cast: &Cast) -> (SignedSessionOpen, Hash) {
    let o = open(&cast.operator, Some(cast.gateway.public()), 1);
    let id = o.open.session_id();
    (o, id)
}

#[test]
fn every_provable_fault_is_counted_under_its_code() {
    let cast = Cast::new();
    let (o, id) = operator_session(&cast);
    let s = |seq, action| step(&cast.operator, id, seq, "P", action);
    let other = open(&cast.operator, Some(cast.gateway.public()), 2).open.session_id();
    let mut forged_step = s(2, validate());
    forged_step.signature = cast.courier.sign(Domain::Step, &forged_step.step);
    let mut forged_open = o.clone();
    forged_open.signature = Signature([7; 64]);
    let direct_open = open(&cast.operator, None, 3);

    type Build<'a> = Box<dyn Fn(&Mem) -> SessionBatch + 'a>;
    let cases: Vec<(&str, Build<'_>, Code, Option<u32>)> = vec![
        (
            "a step whose signature does not verify",
            Box::new(|st| signed_batch(&cast, st, id, Some(o.clone()), vec![s(1, scan()), forged_step.clone()])),
            Code::BadSignature,
            Some(1),
        ),
        (
            "a step of another session",
            Box::new(|st| {
                signed_batch(&cast, st, id, Some(o.clone()), vec![s(1, scan()), step(&cast.operator, other, 2, "P", validate())])
            }),
            Code::WrongSession,
            Some(1),
        ),
        (
            "a dropped step",
            Box::new(|st| signed_batch(&cast, st, id, Some(o.clone()), vec![s(1, scan()), s(3, validate())])),
            Code::BadSequence,
            Some(1),
        ),
        (
            "reordered steps",
            Box::new(|st| signed_batch(&cast, st, id, Some(o.clone()), vec![s(2, validate()), s(1, scan())])),
            Code::BadSequence,
            Some(0),
        ),
        (
            "a claim the replay contradicts",
            Box::new(|st| {
                let mut b = signed_batch(&cast, st, id, Some(o.clone()), vec![s(1, scan()), s(2, validate())]);
                b.body.claims[1] = Hash([0xAB; 32]);
                b.body.sign(&cast.gateway)
            }),
            Code::OutcomeMismatch,
            Some(1),
        ),
        (
            "a step by someone else than the session's owner",
            Box::new(|st| signed_batch(&cast, st, id, Some(o.clone()), vec![s(1, scan()), step(&cast.operator2, id, 2, "P", validate())])),
            Code::NotSessionOwner,
            Some(1),
        ),
        (
            "an action the owner's role may never take",
            Box::new(|st| signed_batch(&cast, st, id, Some(o.clone()), vec![s(1, register(&cast.supplier, "Q"))])),
            Code::RoleDenied,
            Some(0),
        ),
        (
            "a payload the workflow refuses in any state",
            Box::new(|st| signed_batch(&cast, st, id, Some(o.clone()), vec![s(1, Action::Scan { station: "S 1".into() })])),
            Code::InvalidPayload,
            Some(0),
        ),
        (
            "a forged open request",
            Box::new(|st| signed_batch(&cast, st, id, Some(forged_open.clone()), vec![s(1, scan())])),
            Code::BadSignature,
            None,
        ),
        (
            "a new session without its open request",
            Box::new(|st| signed_batch(&cast, st, id, None, vec![s(1, scan())])),
            Code::UnknownSession,
            None,
        ),
        (
            "a session that is not the gateway's",
            Box::new(|st| {
                let did = direct_open.open.session_id();
                signed_batch(&cast, st, did, Some(direct_open.clone()), vec![step(&cast.operator, did, 1, "P", scan())])
            }),
            Code::GatewayMismatch,
            None,
        ),
        (
            "claims that do not pair with the steps",
            Box::new(|st| {
                let mut b = signed_batch(&cast, st, id, Some(o.clone()), vec![s(1, scan())]);
                b.body.claims.push(Hash([1; 32]));
                b.body.sign(&cast.gateway)
            }),
            Code::BadBatch,
            None,
        ),
    ];
    for (name, build, code, index) in cases {
        let mut state = registered(&cast);
        let b = build(&state);
        let package = state.package("P");
        assert_eq!(refuse(&mut state, &ctx(), &b), (code, index), "{name}");
        assert_eq!(faults(&state, &cast), (1, BTreeMap::from([(code, 1)])), "{name}: counted once, under its code");
        assert_eq!(state.package("P"), package, "{name}: the batch changed nothing else");
        assert!(state.session(&id).is_none(), "{name}: the batch opened nothing");
    }
}

#[test]
fn faults_accumulate_per_code_and_show_in_the_json_record() {
    let cast = Cast::new();
    let mut state = registered(&cast);
    let (o, id) = operator_session(&cast);
    let s = |seq, action| step(&cast.operator, id, seq, "P", action);
    for steps in [vec![s(1, scan()), s(3, validate())], vec![s(2, scan())], vec![s(1, Action::Scan { station: String::new() })]] {
        let b = signed_batch(&cast, &state, id, Some(o.clone()), steps);
        refuse(&mut state, &ctx(), &b);
    }
    let (total, by_code) = faults(&state, &cast);
    assert_eq!(total, 3);
    assert_eq!(by_code, BTreeMap::from([(Code::BadSequence, 2), (Code::InvalidPayload, 1)]));
    let json = serde_json::to_value(state.gateway(&cast.gateway.public()).expect("gateway")).expect("json");
    assert_eq!(json["misbehaviours"], 3);
    assert_eq!(json["faults"], serde_json::json!({ "bad_sequence": 2, "invalid_payload": 1 }));
    let back: crate::model::Gateway = serde_json::from_value(json).expect("parses back");
    assert_eq!(back.faults, by_code);
}

#[test]
fn innocent_refusals_are_not_counted() {
    let cast = Cast::new();
    let (o, id) = operator_session(&cast);
    let s = |seq, action| step(&cast.operator, id, seq, "P", action);

    // A re-send after finality is a duplicate.
    let mut state = registered(&cast);
    let b = signed_batch(&cast, &state, id, Some(o.clone()), vec![s(1, scan()), s(2, validate())]);
    assert!(matches!(execute(&mut state, &ctx(), &Tx::SessionBatch(b.clone()).encode()), TxResult::Committed { .. }));
    assert_eq!(refuse(&mut state, &ctx(), &b), (Code::Duplicate, None));
    // A later, overlapping batch the gateway built from a stale view of L1.
    let stale = signed_batch(&cast, &state, id, None, vec![s(2, validate()), s(3, qc(true))]);
    assert_eq!(refuse(&mut state, &ctx(), &stale).0, Code::Duplicate);
    assert_eq!(faults(&state, &cast), (0, BTreeMap::new()));

    // A dependent batch that lands before the batch it builds on: the
    // supplier's gateway session registers Q, the operator's scans it.
    let mut state = cast.state();
    let so = open(&cast.supplier, Some(cast.gateway.public()), 5);
    let sid = so.open.session_id();
    let reg = vec![step(&cast.supplier, sid, 1, "Q", register(&cast.supplier, "Q"))];
    let dependency = signed_batch(&cast, &state, sid, Some(so.clone()), reg.clone());
    let mut ahead = Overlay::new(&state);
    open_session(&mut ahead, &ctx(), &so).expect("open");
    apply(&mut ahead, &ctx(), &reg[0]).expect("register");
    let scan_q = vec![step(&cast.operator, id, 1, "Q", scan())];
    let c = {
        let mut scratch = Overlay::new(&ahead);
        open_session(&mut scratch, &ctx(), &o).expect("open");
        vec![apply(&mut scratch, &ctx(), &scan_q[0]).expect("scan").hash()]
    };
    let dependent = batch(&cast.gateway, id, Some(o.clone()), scan_q, c);
    assert_eq!(refuse(&mut state, &ctx(), &dependent), (Code::UnknownPackage, Some(0)));
    assert!(matches!(execute(&mut state, &ctx(), &Tx::SessionBatch(dependency).encode()), TxResult::Committed { .. }));
    assert!(matches!(execute(&mut state, &ctx(), &Tx::SessionBatch(dependent).encode()), TxResult::Committed { .. }));
    assert_eq!(faults(&state, &cast), (0, BTreeMap::new()));

    // A batch delayed past the time window; a step a concurrent change made
    // invalid (here: one the package's stage no longer allows).
    let mut state = registered(&cast);
    let b = signed_batch(&cast, &state, id, Some(o.clone()), vec![s(1, scan())]);
    let late = Ctx { time_ms: TIME_MS + STEP_TIME_WINDOW_MS + 1, ..ctx() };
    assert_eq!(refuse(&mut state, &late, &b), (Code::StaleTime, None));
    let b = signed_batch(&cast, &state, id, Some(o.clone()), vec![s(1, validate())]);
    assert_eq!(refuse(&mut state, &ctx(), &b), (Code::WrongStage, Some(0)));
    assert_eq!(faults(&state, &cast), (0, BTreeMap::new()));

    // Bytes that name the gateway without its signature prove nothing
    // against it, whatever else is wrong with them.
    let mut state = registered(&cast);
    let mut b = signed_batch(&cast, &state, id, Some(o.clone()), vec![s(1, scan()), s(3, validate())]);
    b.signature = cast.stranger.sign(Domain::Batch, &b.body);
    assert_eq!(refuse(&mut state, &ctx(), &b), (Code::BadSignature, None));
    // A batch signed for another chain is refused before anything else.
    let mut body = signed_batch(&cast, &state, id, Some(o.clone()), vec![s(1, scan())]).body;
    body.chain_id = "other-chain".into();
    assert_eq!(refuse(&mut state, &ctx(), &body.sign(&cast.gateway)), (Code::WrongChain, None));
    assert_eq!(faults(&state, &cast), (0, BTreeMap::new()));
}

/// The identity point: of small order, under which lax verifiers accept
/// anything.
fn weak_key() -> PublicKey {
    let mut identity = [0u8; 32];
    identity[0] = 1;
    PublicKey(identity)
}

#[test]
fn an_administrator_cannot_register_a_weak_key() {
    let cast = Cast::new();
    let mut state = cast.state();
    let admin =
        |nonce, op| Tx::Admin(AdminBody { chain_id: CHAIN_ID.into(), admin: cast.admin.public(), nonce, op }.sign(&cast.admin)).encode();
    let off_curve = {
        let mut y = [0u8; 32];
        y[0] = 2;
        PublicKey(y)
    };
    for (nonce, op) in [
        (1, AdminOp::RegisterActor { key: weak_key(), name: "weak".into(), role: Role::Operator }),
        (1, AdminOp::RegisterGateway { key: weak_key(), name: "weak".into() }),
        (1, AdminOp::RegisterActor { key: off_curve, name: "off".into(), role: Role::Courier }),
    ] {
        match execute(&mut state, &ctx(), &admin(nonce, op)) {
            TxResult::Rejected { rejection, .. } => assert_eq!(rejection.code, Code::WeakKey),
            other => panic!("a weak key was registered: {other:?}"),
        }
    }
    assert!(state.actor(&weak_key()).is_none() && state.gateway(&weak_key()).is_none() && state.actor(&off_curve).is_none());
    assert_eq!(state.admin_nonce(&cast.admin.public()), 0, "a refused transaction does not use its nonce");
    let good = SecretKey::from_seed([88; 32]).public();
    let ok = execute(&mut state, &ctx(), &admin(1, AdminOp::RegisterGateway { key: good, name: "gw-2".into() }));
    assert_eq!(ok, TxResult::Admin);
    assert_eq!(state.gateway(&good).expect("registered").faults, BTreeMap::new());
}

#[test]
fn a_genesis_with_a_weak_key_cannot_start_a_chain() {
    let cast = Cast::new();
    let mut with_actor = cast.genesis();
    with_actor.actors.push(GenesisActor { name: "weak".into(), role: Role::Supplier, public_key: weak_key() });
    let mut with_gateway = cast.genesis();
    with_gateway.gateways.push(GenesisGateway { name: "weak".into(), public_key: weak_key() });
    for genesis in [with_actor, with_gateway] {
        let mut state = Overlay::new(BTreeMap::<Vec<u8>, Vec<u8>>::new());
        match genesis.apply(CHAIN_ID, &mut state) {
            Err(GenesisError::WeakKey(k, _)) => assert_eq!(k, weak_key()),
            other => panic!("a genesis with a weak key was accepted: {other:?}"),
        }
    }
}
