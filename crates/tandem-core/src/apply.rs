//! The only place a step is decided.
//!
//! [`apply`] runs one signed step: session binding and sequence, signature,
//! time window, then the workflow table's role, stage and payload checks, then
//! the effect. It reads everything first and writes only once every check has
//! passed, so a rejected step leaves the state untouched. [`apply_batch`],
//! [`apply_direct`] and [`apply_admin`] build on it for the three transaction
//! kinds, and [`execute`] dispatches raw transaction bytes: L1 validators call
//! it in `FinalizeBlock`, and the gateway's replica calls it on every finalized
//! transaction, so both hold the same state.

use crate::crypto::{Domain, Hash, PublicKey};
use crate::kv::{KvRead, KvWrite, Overlay};
use crate::limits::*;
use crate::memo::SigMemo;
use crate::message::{
    Action, AdminOp, DirectStep, Outcome, SessionBatch, SignedAdmin, SignedSessionClose, SignedSessionOpen, SignedStep, Tx,
};
use crate::model::{Actor, Gateway, HistoryEntry, Label, Package, QcRecord, Role, SessionRecord};
use crate::reject::{Code, Rejection};
use crate::state::{StateRead, StateWrite};
use crate::workflow::{Check, Effect, From, Next, Workflow};

/// What a step is decided against besides state: the chain, the time and the
/// workflow. On L1 the time is the block's; on L2 it is the gateway's estimate.
#[derive(Clone, Copy, Debug)]
pub struct Ctx<'a> {
    /// The chain id.
    pub chain_id: &'a str,
    /// Milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// The workflow in force.
    pub workflow: &'a Workflow,
    /// Signatures this node has already found valid (see [`SigMemo`]); a
    /// lookup there answers exactly what verification would, so it changes
    /// cost, never a decision.
    pub sigs: Option<&'a SigMemo>,
}

fn reject<T>(code: Code, detail: impl Into<String>) -> Result<T, Rejection> {
    Err(Rejection::new(code, detail))
}

fn check_text(field: &str, value: &str, max: usize, allow_empty: bool) -> Result<(), Rejection> {
    if value.len() > max {
        return reject(Code::InvalidPayload, format!("{field} is longer than {max} bytes"));
    }
    if !allow_empty && value.is_empty() {
        return reject(Code::InvalidPayload, format!("{field} is empty"));
    }
    if value.chars().any(char::is_control) {
        return reject(Code::InvalidPayload, format!("{field} contains control characters"));
    }
    Ok(())
}

/// Identifiers are printable ASCII without spaces, so they survive barcodes,
/// URLs and logs unchanged.
fn check_id(field: &str, value: &str) -> Result<(), Rejection> {
    check_text(field, value, ID_BYTES_MAX, false)?;
    if !value.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b)) {
        return reject(Code::InvalidPayload, format!("{field} may hold only ASCII letters, digits and - _ . :"));
    }
    Ok(())
}

fn check_time(ctx: &Ctx<'_>, client_time_ms: u64) -> Result<(), Rejection> {
    if client_time_ms.abs_diff(ctx.time_ms) > STEP_TIME_WINDOW_MS {
        return reject(Code::StaleTime, format!("client time {client_time_ms} is more than {STEP_TIME_WINDOW_MS} ms from {}", ctx.time_ms));
    }
    Ok(())
}

/// The signer must be a registered, active actor.
fn active_actor(state: &impl KvRead, key: &PublicKey) -> Result<Actor, Rejection> {
    match state.actor(key) {
        None => reject(Code::UnknownActor, format!("{key} is not a registered actor")),
        Some(a) if !a.active => reject(Code::ActorRevoked, format!("{key} was revoked")),
        Some(a) => Ok(a),
    }
}

/// Stateless checks on a step's payload: sizes and shapes only.
fn check_payload_shape(action: &Action) -> Result<(), Rejection> {
    match action {
        Action::Register { manifest, .. } => {
            check_id("manifest.package_id", &manifest.package_id)?;
            check_id("manifest.delivery_note_id", &manifest.delivery_note_id)?;
            if manifest.lines.is_empty() || manifest.lines.len() > MANIFEST_LINES_MAX {
                return reject(Code::InvalidPayload, format!("a manifest has 1 to {MANIFEST_LINES_MAX} lines"));
            }
            for line in &manifest.lines {
                check_id("manifest line item_id", &line.item_id)?;
                check_text("manifest line description", &line.description, TEXT_BYTES_MAX, true)?;
                if line.quantity == 0 || line.quantity > QUANTITY_MAX {
                    return reject(Code::InvalidPayload, format!("a quantity is 1 to {QUANTITY_MAX}"));
                }
            }
        }
        Action::Scan { station } => check_id("station", station)?,
        Action::Validate { counts } => {
            if counts.len() > MANIFEST_LINES_MAX {
                return reject(Code::InvalidPayload, format!("at most {MANIFEST_LINES_MAX} counts"));
            }
            for c in counts {
                check_id("count item_id", &c.item_id)?;
            }
        }
        Action::Qc { issues, .. } => {
            if issues.len() > QC_ISSUES_MAX {
                return reject(Code::InvalidPayload, format!("at most {QC_ISSUES_MAX} issues"));
            }
            for i in issues {
                check_text("issue", i, TEXT_BYTES_MAX, false)?;
            }
        }
        Action::Label { label_id, destination, .. } => {
            check_id("label_id", label_id)?;
            check_text("destination", destination, TEXT_BYTES_MAX, false)?;
        }
        Action::Handover { .. } => {}
        Action::Deliver { recipient } => check_text("recipient", recipient, TEXT_BYTES_MAX, false)?,
    }
    Ok(())
}

/// Apply one payload check of the workflow table.
fn run_check(
    state: &impl KvRead,
    ctx: &Ctx<'_>,
    check: Check,
    step: &crate::message::Step,
    package: Option<&Package>,
) -> Result<(), Rejection> {
    let need_package = || package.ok_or_else(|| Rejection::new(Code::UnknownPackage, "the check needs a package"));
    match (check, &step.action) {
        (Check::ManifestMatchesStep, Action::Register { manifest, .. }) => {
            if manifest.chain_id != ctx.chain_id {
                return reject(Code::WrongChain, "the manifest names another chain");
            }
            if manifest.package_id != step.package_id {
                return reject(Code::InvalidPayload, "the manifest describes another package");
            }
            Ok(())
        }
        (Check::ManifestSignature, _) => {
            let p = need_package()?;
            if p.supplier.verify_memo(Domain::Manifest, &p.manifest, &p.manifest_signature, ctx.sigs) {
                Ok(())
            } else {
                reject(Code::ManifestSignatureInvalid, "the manifest signature does not verify under the supplier's key")
            }
        }
        (Check::CountsMatchManifest, Action::Validate { counts }) => {
            let p = need_package()?;
            let matches = counts.len() == p.manifest.lines.len()
                && counts.iter().zip(&p.manifest.lines).all(|(c, l)| c.item_id == l.item_id && c.quantity == l.quantity);
            if matches {
                Ok(())
            } else {
                reject(Code::ManifestMismatch, "the counted contents differ from the manifest")
            }
        }
        (Check::IssuesWhenFailed, Action::Qc { passed, issues }) => {
            if !passed && issues.is_empty() {
                reject(Code::QcIssuesRequired, "a failed quality check must name its issues")
            } else {
                Ok(())
            }
        }
        (Check::CourierRegistered, Action::Label { courier, .. }) => match state.actor(courier) {
            Some(a) if a.active && a.role == Role::Courier => Ok(()),
            _ => reject(Code::UnknownCourier, format!("{courier} is not an active courier")),
        },
        (Check::CourierOnLabel, Action::Handover { courier }) => {
            let p = need_package()?;
            match &p.label {
                Some(l) if l.courier == *courier => Ok(()),
                _ => reject(Code::NotAssignedCourier, "the courier is not the one on the label"),
            }
        }
        (Check::ActorIsLabelCourier, _) => {
            let p = need_package()?;
            match &p.label {
                Some(l) if l.courier == step.actor => Ok(()),
                _ => reject(Code::NotAssignedCourier, "only the courier on the label may deliver"),
            }
        }
        // A table that pairs a check with an action whose payload it cannot
        // read is a programming error in the table, caught by the tests.
        (check, action) => reject(Code::UnknownAction, format!("check {check:?} does not apply to {}", action.kind().name())),
    }
}

/// A step whose actor signature has been checked. Only [`VerifiedStep::check`]
/// makes one, so holding it is proof of the check: a gateway verifies
/// signatures before taking its state lock and decides with
/// [`apply_verified`] inside it.
#[derive(Clone, Copy, Debug)]
pub struct VerifiedStep<'a>(&'a SignedStep);

impl<'a> VerifiedStep<'a> {
    /// Check the step's signature under its actor key.
    pub fn check(signed: &'a SignedStep) -> Option<VerifiedStep<'a>> {
        Self::check_memo(signed, None)
    }
    /// [`VerifiedStep::check`] through a [`SigMemo`].
    pub fn check_memo(signed: &'a SignedStep, memo: Option<&SigMemo>) -> Option<VerifiedStep<'a>> {
        signed.step.actor.verify_memo(Domain::Step, &signed.step, &signed.signature, memo).then_some(VerifiedStep(signed))
    }
    /// The step.
    pub fn signed(&self) -> &'a SignedStep {
        self.0
    }
}

/// Verify into `memo` the signatures that deciding `signed` checks besides
/// its own: a registration's manifest, signed by its supplier (the step's
/// actor). A gateway calls this before taking its lock; the decision then
/// finds them in the memo, or, if one is invalid, fails on it again with the
/// workflow's own code and order of checks.
pub fn precheck_signatures(signed: &SignedStep, memo: &SigMemo) {
    if let Action::Register { manifest, manifest_signature } = &signed.step.action {
        signed.step.actor.verify_memo(Domain::Manifest, manifest, manifest_signature, Some(memo));
    }
}

/// Decide one signed step against `state`, and on success write its effects.
/// On rejection nothing is written.
pub fn apply(state: &mut impl KvWrite, ctx: &Ctx<'_>, signed: &SignedStep) -> Result<Outcome, Rejection> {
    decide(state, ctx, signed, None)
}

/// [`apply`] for a step whose signature was already checked.
pub fn apply_verified(state: &mut impl KvWrite, ctx: &Ctx<'_>, step: VerifiedStep<'_>) -> Result<Outcome, Rejection> {
    decide(state, ctx, step.0, Some(step))
}

fn decide(state: &mut impl KvWrite, ctx: &Ctx<'_>, signed: &SignedStep, verified: Option<VerifiedStep<'_>>) -> Result<Outcome, Rejection> {
    let step = &signed.step;
    // 1. Binding: chain, session, owner, sequence.
    if step.chain_id != ctx.chain_id {
        return reject(Code::WrongChain, format!("step is for chain {:?}", step.chain_id));
    }
    let Some(mut session) = state.session(&step.session) else {
        return reject(Code::UnknownSession, format!("session {} is not open", step.session));
    };
    if session.closed {
        return reject(Code::SessionClosed, format!("session {} was closed by its owner", step.session));
    }
    if session.owner != step.actor {
        return reject(Code::NotSessionOwner, "the step's actor does not own the session");
    }
    if step.seq != session.last_seq + 1 {
        return reject(Code::BadSequence, format!("expected seq {}, got {}", session.last_seq + 1, step.seq));
    }
    if step.seq > SESSION_STEPS_MAX {
        return reject(Code::SessionFull, format!("a session holds at most {SESSION_STEPS_MAX} steps"));
    }
    // 2. Who signed it, and when.
    let actor = active_actor(state, &step.actor)?;
    // The signature is checked at the same point whether or not it was
    // checked before, so both paths reject with the same code.
    if verified.is_none() && VerifiedStep::check_memo(signed, ctx.sigs).is_none() {
        return reject(Code::BadSignature, "the step's signature does not verify");
    }
    check_time(ctx, step.client_time_ms)?;
    // 3. The workflow table.
    check_id("package_id", &step.package_id)?;
    check_payload_shape(&step.action)?;
    let kind = step.action.kind();
    let Some(rule) = ctx.workflow.rule(kind) else {
        return reject(Code::UnknownAction, format!("{} is not part of workflow {}", kind.name(), ctx.workflow.name));
    };
    if !rule.roles.contains(&actor.role) {
        return reject(Code::RoleDenied, format!("a {} may not {}", actor.role.name(), kind.name()));
    }
    let existing = state.package(&step.package_id);
    match (rule.from, &existing) {
        (From::Nothing, Some(_)) => return reject(Code::PackageExists, format!("package {} exists already", step.package_id)),
        (From::Stages(_), None) => return reject(Code::UnknownPackage, format!("no package {}", step.package_id)),
        (From::Stages(stages), Some(p)) if !stages.contains(&p.stage) => {
            return reject(
                Code::WrongStage,
                format!(
                    "{} needs stage {:?}, package is {}",
                    kind.name(),
                    stages.iter().map(|s| s.name()).collect::<Vec<_>>(),
                    p.stage.name()
                ),
            )
        }
        _ => {}
    }
    for &check in rule.checks {
        run_check(state, ctx, check, step, existing.as_ref())?;
    }
    let stage_after = match (rule.next, &step.action) {
        (Next::To(s), _) => s,
        (Next::ByVerdict { passed, failed }, Action::Qc { passed: verdict, .. }) => {
            if *verdict {
                passed
            } else {
                failed
            }
        }
        (Next::ByVerdict { .. }, action) => return reject(Code::UnknownAction, format!("{} carries no verdict", action.kind().name())),
    };
    // 4. The effect, built in full before anything is written.
    let stage_before = existing.as_ref().map(|p| p.stage);
    let mut package = match (rule.effect, existing) {
        (Effect::CreatePackage, None) => match &step.action {
            Action::Register { manifest, manifest_signature } => Package {
                id: step.package_id.clone(),
                supplier: step.actor,
                delivery_note_id: manifest.delivery_note_id.clone(),
                manifest: manifest.clone(),
                manifest_signature: *manifest_signature,
                stage: stage_after,
                qc: Vec::new(),
                label: None,
                history: Vec::new(),
            },
            other => return reject(Code::UnknownAction, format!("{} cannot create a package", other.kind().name())),
        },
        (_, Some(p)) => p,
        (_, None) => return reject(Code::UnknownPackage, format!("no package {}", step.package_id)),
    };
    if package.history.len() >= PACKAGE_HISTORY_MAX {
        return reject(Code::HistoryFull, format!("package {} has {PACKAGE_HISTORY_MAX} steps already", package.id));
    }
    match (rule.effect, &step.action) {
        (Effect::RecordQc, Action::Qc { passed, issues }) => {
            package.qc.push(QcRecord { passed: *passed, issues: issues.clone(), inspector: step.actor })
        }
        (Effect::SetLabel, Action::Label { label_id, destination, priority, courier }) => {
            package.label =
                Some(Label { label_id: label_id.clone(), destination: destination.clone(), priority: *priority, courier: *courier })
        }
        (Effect::RecordQc | Effect::SetLabel, action) => {
            return reject(Code::UnknownAction, format!("{} has no payload for its effect", action.kind().name()))
        }
        (Effect::CreatePackage | Effect::None, _) => {}
    }
    package.stage = stage_after;
    package.history.push(HistoryEntry {
        action: kind,
        actor: step.actor,
        session: step.session,
        seq: step.seq,
        client_time_ms: step.client_time_ms,
        stage: stage_after,
    });
    let outcome = Outcome {
        step: step.hash(),
        package_id: package.id.clone(),
        action: kind,
        stage_before,
        stage_after,
        package_digest: package.digest(),
    };
    session.last_seq = step.seq;
    state.put_package(&package);
    state.put_session(&session);
    Ok(outcome)
}

/// Open a session from its signed request, for `gateway` (or for direct
/// steps when `None`). Returns the new session record.
pub fn open_session(state: &mut impl KvWrite, ctx: &Ctx<'_>, signed: &SignedSessionOpen) -> Result<SessionRecord, Rejection> {
    let open = &signed.open;
    if open.chain_id != ctx.chain_id {
        return reject(Code::WrongChain, format!("open is for chain {:?}", open.chain_id));
    }
    let owner = active_actor(state, &open.owner)?;
    if !open.owner.verify_memo(Domain::SessionOpen, open, &signed.signature, ctx.sigs) {
        return reject(Code::BadSignature, "the open request's signature does not verify");
    }
    check_time(ctx, open.client_time_ms)?;
    if !ctx.workflow.session_roles.contains(&owner.role) {
        return reject(Code::RoleDenied, format!("a {} may not own a session", owner.role.name()));
    }
    let id = open.session_id();
    if state.session(&id).is_some() {
        return reject(Code::SessionExists, format!("session {id} exists already"));
    }
    let record = SessionRecord { id, owner: open.owner, gateway: open.gateway, last_seq: 0, closed: false };
    state.put_session(&record);
    Ok(record)
}

/// Where in a batch a rejection happened: `None` for the batch as a whole
/// (its gateway, signature, header), `Some(i)` for its i-th step.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BatchRejection {
    /// Index of the failing step, if a step failed.
    pub index: Option<u32>,
    /// Why.
    pub rejection: Rejection,
}

fn whole(code: Code, detail: impl Into<String>) -> BatchRejection {
    BatchRejection { index: None, rejection: Rejection::new(code, detail) }
}

/// Check an owner's close against the session it names: same chain and
/// session, signed by the session's owner, and ending exactly at `last_seq`,
/// the session's last step once the batch carrying it is applied.
fn check_close(ctx: &Ctx<'_>, close: &SignedSessionClose, session: &SessionRecord, last_seq: u64) -> Result<(), BatchRejection> {
    let c = &close.close;
    if c.chain_id != ctx.chain_id {
        return Err(whole(Code::WrongChain, format!("close is for chain {:?}", c.chain_id)));
    }
    if c.session != session.id {
        return Err(whole(Code::WrongSession, "the close is for another session"));
    }
    if c.owner != session.owner {
        return Err(whole(Code::NotSessionOwner, "the close is not signed by the session's owner"));
    }
    if !close.verify(ctx.sigs) {
        return Err(whole(Code::BadSignature, "the owner's close signature does not verify"));
    }
    if c.last_seq != last_seq {
        return Err(whole(Code::BadSequence, format!("the close ends at seq {}, the batch at seq {last_seq}", c.last_seq)));
    }
    Ok(())
}

/// Decide a session batch: every step valid and every claimed outcome equal to
/// the replayed one, and its owner's close (if any) valid and ending at its
/// last step, or nothing is written.
pub fn apply_batch(state: &mut impl KvWrite, ctx: &Ctx<'_>, batch: &SessionBatch) -> Result<Vec<Outcome>, BatchRejection> {
    let body = &batch.body;
    if body.chain_id != ctx.chain_id {
        return Err(whole(Code::WrongChain, format!("batch is for chain {:?}", body.chain_id)));
    }
    match state.gateway(&body.gateway) {
        None => return Err(whole(Code::UnknownGateway, format!("{} is not a registered gateway", body.gateway))),
        Some(g) if !g.active => return Err(whole(Code::GatewayRevoked, format!("{} was revoked", body.gateway))),
        Some(_) => {}
    }
    if !body.gateway.verify_memo(Domain::Batch, body, &batch.signature, ctx.sigs) {
        return Err(whole(Code::BadSignature, "the gateway's batch signature does not verify"));
    }
    let too_few = body.steps.is_empty() && body.close.is_none();
    if too_few || body.steps.len() > BATCH_STEPS_MAX || body.claims.len() != body.steps.len() {
        return Err(whole(
            Code::BadBatch,
            format!("a batch has 1 to {BATCH_STEPS_MAX} steps (0 only with a close) and one claim per step"),
        ));
    }
    let first_seq = body.steps.first().map(|s| s.step.seq);
    let mut overlay = Overlay::new(&*state);
    match (&body.open, overlay.session(&body.session)) {
        (_, Some(existing)) if existing.closed => {
            return Err(whole(Code::SessionClosed, format!("session {} was closed at seq {}", body.session, existing.last_seq)))
        }
        (_, Some(existing)) if first_seq.is_some_and(|f| f <= existing.last_seq) => {
            return Err(whole(Code::Duplicate, format!("session {} is final up to seq {}", body.session, existing.last_seq)))
        }
        (Some(_), Some(_)) => return Err(whole(Code::SessionExists, "the open request was finalized before")),
        (None, None) => return Err(whole(Code::UnknownSession, format!("session {} is not open", body.session))),
        (Some(open), None) => {
            if open.open.session_id() != body.session {
                return Err(whole(Code::WrongSession, "the open request is for another session"));
            }
            open_session(&mut overlay, ctx, open).map_err(|rejection| BatchRejection { index: None, rejection })?;
        }
        (None, Some(_)) => {}
    }
    let session = overlay.session(&body.session).expect("opened or found above");
    if session.gateway != Some(body.gateway) {
        return Err(whole(Code::GatewayMismatch, "the session belongs to another gateway"));
    }
    if let Some(close) = &body.close {
        // Steps apply only in sequence, so a batch that commits ends at its
        // last step's seq.
        let last_seq = body.steps.last().map_or(session.last_seq, |s| s.step.seq);
        check_close(ctx, close, &session, last_seq)?;
    }
    let mut outcomes = Vec::with_capacity(body.steps.len());
    for (i, (signed, claim)) in body.steps.iter().zip(&body.claims).enumerate() {
        let at = |rejection| BatchRejection { index: Some(i as u32), rejection };
        if signed.step.session != body.session {
            return Err(at(Rejection::new(Code::WrongSession, "the step belongs to another session")));
        }
        let outcome = apply(&mut overlay, ctx, signed).map_err(at)?;
        if outcome.hash() != *claim {
            return Err(at(Rejection::new(Code::OutcomeMismatch, format!("claimed outcome {claim}, replayed {}", outcome.hash()))));
        }
        outcomes.push(outcome);
    }
    if body.close.is_some() {
        let mut closed = overlay.session(&body.session).expect("found above");
        closed.closed = true;
        overlay.put_session(&closed);
    }
    let writes = overlay.into_writes();
    write_back(state, writes);
    Ok(outcomes)
}

/// Apply an inner overlay's writes to the state beneath it.
fn write_back(state: &mut impl KvWrite, writes: crate::kv::WriteSet) {
    for (k, v) in writes {
        match v {
            Some(v) => state.put(k, v),
            None => state.delete(k),
        }
    }
}

/// Decide one step sent straight to L1. The session must have no gateway.
pub fn apply_direct(state: &mut impl KvWrite, ctx: &Ctx<'_>, direct: &DirectStep) -> Result<Outcome, Rejection> {
    let mut overlay = Overlay::new(&*state);
    let id = direct.step.step.session;
    if let Some(open) = &direct.open {
        if open.open.session_id() != id {
            return reject(Code::WrongSession, "the open request is for another session");
        }
        if let Some(existing) = overlay.session(&id) {
            if direct.step.step.seq <= existing.last_seq {
                return reject(Code::Duplicate, format!("session {id} is final up to seq {}", existing.last_seq));
            }
            return reject(Code::SessionExists, "the open request was finalized before");
        }
        open_session(&mut overlay, ctx, open)?;
    }
    match overlay.session(&id) {
        Some(s) if s.gateway.is_some() => return reject(Code::GatewayMismatch, "the session belongs to a gateway"),
        Some(s) if direct.step.step.seq <= s.last_seq && s.owner == direct.step.step.actor => {
            return reject(Code::Duplicate, format!("session {id} is final up to seq {}", s.last_seq))
        }
        _ => {}
    }
    let outcome = apply(&mut overlay, ctx, &direct.step)?;
    let writes = overlay.into_writes();
    write_back(state, writes);
    Ok(outcome)
}

/// A key about to be registered must be able to sign.
fn check_key(key: &PublicKey) -> Result<(), Rejection> {
    match key.weakness() {
        Some(why) => reject(Code::WeakKey, format!("key {key} {why}")),
        None => Ok(()),
    }
}

/// Decide an administrator's transaction.
pub fn apply_admin(state: &mut impl KvWrite, ctx: &Ctx<'_>, signed: &SignedAdmin) -> Result<(), Rejection> {
    let body = &signed.body;
    if body.chain_id != ctx.chain_id {
        return reject(Code::WrongChain, format!("admin transaction is for chain {:?}", body.chain_id));
    }
    match state.actor(&body.admin) {
        Some(a) if a.active && a.role == Role::Admin => {}
        _ => return reject(Code::NotAdmin, format!("{} is not an active administrator", body.admin)),
    }
    if !body.admin.verify_memo(Domain::Admin, body, &signed.signature, ctx.sigs) {
        return reject(Code::BadSignature, "the administrator's signature does not verify");
    }
    let expected = state.admin_nonce(&body.admin) + 1;
    if body.nonce != expected {
        return reject(Code::BadNonce, format!("expected nonce {expected}, got {}", body.nonce));
    }
    match &body.op {
        AdminOp::RegisterActor { key, name, role } => {
            check_text("name", name, NAME_BYTES_MAX, false)?;
            check_key(key)?;
            if state.actor(key).is_some() || state.gateway(key).is_some() {
                return reject(Code::KeyExists, format!("{key} is registered already"));
            }
            state.put_actor(&Actor { key: *key, name: name.clone(), role: *role, active: true });
        }
        AdminOp::RevokeActor { key } => {
            let Some(mut actor) = state.actor(key) else {
                return reject(Code::UnknownActor, format!("{key} is not a registered actor"));
            };
            actor.active = false;
            state.put_actor(&actor);
        }
        AdminOp::RegisterGateway { key, name } => {
            check_text("name", name, NAME_BYTES_MAX, false)?;
            check_key(key)?;
            if state.actor(key).is_some() || state.gateway(key).is_some() {
                return reject(Code::KeyExists, format!("{key} is registered already"));
            }
            state.put_gateway(&Gateway::new(*key, name.clone()));
        }
        AdminOp::RevokeGateway { key } => {
            let Some(mut gateway) = state.gateway(key) else {
                return reject(Code::UnknownGateway, format!("{key} is not a registered gateway"));
            };
            gateway.active = false;
            state.put_gateway(&gateway);
        }
    }
    state.put_admin_nonce(&body.admin, body.nonce);
    Ok(())
}

/// The result of executing one transaction.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum TxResult {
    /// A session batch committed whole.
    Committed {
        /// The session.
        session: Hash,
        /// The first sequence number in this batch (one more than
        /// `last_seq` when the batch carries no step, only a close).
        first_seq: u64,
        /// The session's last sequence number after this batch.
        last_seq: u64,
        /// One outcome per step.
        outcomes: Vec<Outcome>,
        /// The batch carried the owner's close: the session is closed.
        closed: bool,
    },
    /// A direct step committed.
    Direct {
        /// The session.
        session: Hash,
        /// The step's sequence number.
        seq: u64,
        /// Its outcome.
        outcome: Outcome,
    },
    /// An administrator's change committed.
    Admin,
    /// Refused; nothing changed (except the misbehaviour count of a gateway
    /// whose batch proves a fault, see [`gateway_fault`]).
    Rejected {
        /// The session, when the transaction named one.
        session: Option<Hash>,
        /// The failing step's index in its batch, when a step failed.
        index: Option<u32>,
        /// Why.
        rejection: Rejection,
    },
}

impl TxResult {
    /// The ABCI result code: 0 for success, the rejection's number otherwise.
    pub fn code(&self) -> u32 {
        match self {
            TxResult::Rejected { rejection, .. } => rejection.code.number(),
            _ => 0,
        }
    }
}

/// The rejection for bytes that are not a transaction.
fn decode_rejection(e: crate::message::DecodeError) -> Rejection {
    let code = match e {
        crate::message::DecodeError::TooLarge(_) => Code::TooLarge,
        crate::message::DecodeError::Malformed(_) => Code::Malformed,
    };
    Rejection::new(code, e.to_string())
}

/// Check a transaction's bytes without state: size, encoding, and every
/// signature in it. What L1's `CheckTx` runs before admitting to the mempool.
/// Valid signatures are remembered in `memo`, so that executing the same
/// transaction later does not verify them again.
pub fn check_stateless(bytes: &[u8], memo: Option<&SigMemo>) -> Result<Tx, Rejection> {
    let tx = Tx::decode(bytes).map_err(decode_rejection)?;
    let bad = |what: &str| Rejection::new(Code::BadSignature, format!("the {what} signature does not verify"));
    let check_open = |o: &Option<SignedSessionOpen>| match o {
        Some(o) if !o.open.owner.verify_memo(Domain::SessionOpen, &o.open, &o.signature, memo) => Err(bad("open request's")),
        _ => Ok(()),
    };
    match &tx {
        Tx::SessionBatch(b) => {
            if !b.body.gateway.verify_memo(Domain::Batch, &b.body, &b.signature, memo) {
                return Err(bad("gateway's batch"));
            }
            check_open(&b.body.open)?;
            if b.body.close.as_ref().is_some_and(|c| !c.verify(memo)) {
                return Err(bad("owner's close"));
            }
            for s in &b.body.steps {
                if !s.step.actor.verify_memo(Domain::Step, &s.step, &s.signature, memo) {
                    return Err(bad("step's"));
                }
            }
        }
        Tx::DirectStep(d) => {
            check_open(&d.open)?;
            if !d.step.step.actor.verify_memo(Domain::Step, &d.step.step, &d.step.signature, memo) {
                return Err(bad("step's"));
            }
        }
        Tx::Admin(a) => {
            if !a.body.admin.verify_memo(Domain::Admin, &a.body, &a.signature, memo) {
                return Err(bad("administrator's"));
            }
        }
    }
    Ok(tx)
}

/// The misbehaviour a refused batch proves against its gateway, if any.
///
/// Only what the gateway's signature binds it to counts, decided from the
/// batch and facts of the committed state that never change once written (an
/// actor's registration and role, a session's owner and gateway, how far a
/// session is final), never from what a concurrent transaction may have
/// changed since the gateway decided. So a fault is counted only when:
///
/// - the batch is for this chain and its signature verifies under its
///   gateway's key (anyone can send bytes naming a gateway; only the gateway
///   can sign them), and
/// - its code is one an honest gateway, which runs this same engine on a
///   state that differs from L1's only by transactions that came later, can
///   never earn: a step that does not verify or belongs to another session
///   or chain (forged, misrouted), a seq that is not the next one after a
///   non-duplicate start (steps dropped or reordered: an honest gateway
///   starts where L1's state is final and never goes past it), an actor who
///   does not own the session, is not registered or has a role the workflow
///   refuses, a payload the workflow refuses whatever the state, a
///   malformed batch, an open request that is forged, misaddressed or
///   already used, a session of another gateway, and a claimed outcome
///   replaying contradicts.
///
/// Innocent refusals are never counted: `duplicate` (a re-send after
/// finality), `stale_time` (a batch delayed past the time window),
/// `actor_revoked`, `gateway_revoked`, and every code that depends on a
/// package's state (`unknown_package`, `wrong_stage`, …), which a direct step
/// or a dependent batch landing before its dependency can earn.
pub fn gateway_fault(ctx: &Ctx<'_>, batch: &SessionBatch, refused: &BatchRejection) -> Option<Code> {
    let code = refused.rejection.code;
    let provable = match refused.index {
        // The batch as a whole, or its open request.
        None => matches!(
            code,
            Code::BadBatch
                | Code::WrongChain
                | Code::BadSignature
                | Code::UnknownActor
                | Code::RoleDenied
                | Code::WrongSession
                | Code::SessionExists
                | Code::UnknownSession
                | Code::GatewayMismatch
        ),
        // One of its steps.
        Some(_) => matches!(
            code,
            Code::WrongSession
                | Code::WrongChain
                | Code::NotSessionOwner
                | Code::BadSequence
                | Code::SessionFull
                | Code::UnknownActor
                | Code::BadSignature
                | Code::InvalidPayload
                | Code::UnknownAction
                | Code::RoleDenied
                | Code::QcIssuesRequired
                | Code::OutcomeMismatch
        ),
    };
    // The chain and signature checks also tell a refusal of the batch's own
    // chain or signature (not the gateway's doing) from one of its open
    // request's (the gateway's, as it signed the batch that carries it).
    let body = &batch.body;
    let signed = provable && body.chain_id == ctx.chain_id && body.gateway.verify_memo(Domain::Batch, body, &batch.signature, ctx.sigs);
    signed.then_some(code)
}

/// Execute transaction bytes against `state`: decode, dispatch, and account
/// gateway misbehaviour. Deterministic in (state, ctx, bytes).
pub fn execute(state: &mut impl KvWrite, ctx: &Ctx<'_>, bytes: &[u8]) -> TxResult {
    let tx = match Tx::decode(bytes) {
        Ok(tx) => tx,
        Err(e) => return TxResult::Rejected { session: None, index: None, rejection: decode_rejection(e) },
    };
    match tx {
        Tx::SessionBatch(batch) => match apply_batch(state, ctx, &batch) {
            Ok(outcomes) => {
                // A committed batch without steps carries a close, which
                // names the session's last seq.
                let last_seq = batch.body.steps.last().map(|s| s.step.seq).or(batch.body.close.as_ref().map(|c| c.close.last_seq));
                let last_seq = last_seq.unwrap_or(0);
                TxResult::Committed {
                    session: batch.body.session,
                    first_seq: batch.body.steps.first().map_or(last_seq + 1, |s| s.step.seq),
                    last_seq,
                    outcomes,
                    closed: batch.body.close.is_some(),
                }
            }
            Err(refused) => {
                if let Some(code) = gateway_fault(ctx, &batch, &refused) {
                    // Evidence against the gateway, kept on chain: it signed
                    // a batch that no honest gateway builds.
                    if let Some(mut g) = state.gateway(&batch.body.gateway) {
                        g.record_fault(code);
                        state.put_gateway(&g);
                    }
                }
                let BatchRejection { index, rejection } = refused;
                TxResult::Rejected { session: Some(batch.body.session), index, rejection }
            }
        },
        Tx::DirectStep(direct) => match apply_direct(state, ctx, &direct) {
            Ok(outcome) => TxResult::Direct { session: direct.step.step.session, seq: direct.step.step.seq, outcome },
            Err(rejection) => TxResult::Rejected { session: Some(direct.step.step.session), index: None, rejection },
        },
        Tx::Admin(admin) => match apply_admin(state, ctx, &admin) {
            Ok(()) => TxResult::Admin,
            Err(rejection) => TxResult::Rejected { session: None, index: None, rejection },
        },
    }
}
