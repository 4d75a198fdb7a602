//! The HTTP API (axum): routes, JSON shapes, errors, and the limits on body
//! size and request rate. The OpenAPI document served at `/openapi.json`
//! (`openapi.json` beside this file) describes every route.
//!
//! Every error is `{"code": "...", "message": "..."}` with a stable code and
//! the status of [`crate::error::Kind`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, Path, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::StreamExt as _;
use serde::Serialize;
use serde_json::{json, Value};
use tandem_core::apply::{TxResult, VerifiedStep};
use tandem_core::message::{DirectStep, SignedSessionClose, SignedSessionOpen, SignedStep, Tx};
use tandem_core::state::StateRead;
use tandem_core::{Code, Hash};
use tandem_rpc::L1Error;

use crate::error::{kind_of, GwError, Kind};
use crate::ledger::{tx_hash, Event, SessionStatus, WalRecord};
use crate::service::{fatal_wal, now_ms, Shared};

/// The OpenAPI document.
pub const OPENAPI: &str = include_str!("openapi.json");

/// An error response.
pub struct ApiError(pub GwError);

impl From<GwError> for ApiError {
    fn from(e: GwError) -> Self {
        ApiError(e)
    }
}

impl From<tandem_core::Rejection> for ApiError {
    fn from(r: tandem_core::Rejection) -> Self {
        ApiError(r.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.kind.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(json!({ "code": self.0.code, "message": self.0.message }))).into_response()
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// JSON body extractor whose failures are API errors: 413 past the body
/// limit, 400 for anything that is not the expected JSON.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Body(v)),
            Err(JsonRejection::BytesRejection(e)) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(GwError::new(Kind::TooLarge, "body_too_large", e.body_text()).into())
            }
            Err(e) => Err(GwError::new(Kind::BadRequest, "malformed", e.body_text()).into()),
        }
    }
}

/// A token bucket: `rate` tokens a second, up to `burst`.
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: u32, burst: u32) -> Self {
        TokenBucket { rate: f64::from(rate), burst: f64::from(burst.max(1)), tokens: f64::from(burst.max(1)), last: Instant::now() }
    }
    /// Take one token if there is one.
    pub fn take(&mut self) -> bool {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

async fn rate_limit(State(gw): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    if !gw.limiter.lock().expect("lock").take() {
        return ApiError(GwError::new(
            Kind::RateLimited,
            "rate_limited",
            format!("more than {} requests a second; slow down", gw.config.rate_per_s),
        ))
        .into_response();
    }
    next.run(req).await
}

/// The router.
pub fn router(gw: Arc<Shared>) -> Router {
    let limited = Router::new()
        .route("/v1/sessions", post(open_session))
        .route("/v1/sessions/{id}/steps", post(post_step))
        .route("/v1/sessions/{id}/commit", post(commit))
        .route("/v1/sessions/{id}", get(get_session))
        .route("/v1/packages/{id}", get(get_package))
        .route("/v1/l1/steps", post(direct_step))
        .route("/v1/events", get(events))
        .route("/v1/status", get(status))
        .route("/v1/network", get(network))
        .route("/v1/demo/keys", get(demo_keys))
        .layer(middleware::from_fn_with_state(gw.clone(), rate_limit));
    Router::new()
        .merge(limited)
        .route("/", get(|| async { asset("index.html") }))
        .route("/assets/{file}", get(|Path(file): Path<String>| async move { asset(&file) }))
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI) }))
        .fallback(|| async { ApiError(GwError::new(Kind::NotFound, "not_found", "no such route")) })
        .method_not_allowed_fallback(|| async {
            ApiError(GwError::new(Kind::MethodNotAllowed, "method_not_allowed", "this route does not take that method"))
        })
        .layer(DefaultBodyLimit::max(gw.config.body_bytes_max))
        .with_state(gw)
}

/// The dashboard (`assets/` beside `src/`), embedded at build time: name,
/// content type, bytes. The protocol module and its test vectors are served
/// from their one copy in the repository.
const ASSETS: &[(&str, &str, &[u8])] = &[
    ("index.html", "text/html; charset=utf-8", include_bytes!("../assets/index.html")),
    ("style.css", "text/css; charset=utf-8", include_bytes!("../assets/style.css")),
    ("app.mjs", "text/javascript; charset=utf-8", include_bytes!("../assets/app.mjs")),
    ("console.mjs", "text/javascript; charset=utf-8", include_bytes!("../assets/console.mjs")),
    ("chart.mjs", "text/javascript; charset=utf-8", include_bytes!("../assets/chart.mjs")),
    ("selftest.mjs", "text/javascript; charset=utf-8", include_bytes!("../assets/selftest.mjs")),
    ("dom.mjs", "text/javascript; charset=utf-8", include_bytes!("../assets/dom.mjs")),
    ("favicon.svg", "image/svg+xml", include_bytes!("../assets/favicon.svg")),
    ("tandem-protocol.mjs", "text/javascript; charset=utf-8", include_bytes!("../../../clients/js/tandem-protocol.mjs")),
    ("protocol-vectors.json", "application/json", include_bytes!("../../../docs/protocol-vectors.json")),
];

/// Everything the dashboard loads comes from this origin: no CDN, no fonts,
/// no inline script.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn asset(name: &str) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, content_type, bytes)) => (
            [
                (header::CONTENT_TYPE, *content_type),
                (header::CONTENT_SECURITY_POLICY, CSP),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            *bytes,
        )
            .into_response(),
        None => ApiError(GwError::new(Kind::NotFound, "not_found", format!("no asset {name:?}"))).into_response(),
    }
}

/// The demo key files of a local devnet (roles a console acts as: never the
/// admin's or a gateway's), when the gateway was started with `demo_keys`.
async fn demo_keys(State(gw): State<Arc<Shared>>) -> ApiResult<Json<Value>> {
    let Some(dir) = gw.config.demo_keys.clone() else {
        return Err(GwError::new(Kind::NotFound, "not_found", "this gateway serves no demo keys (only a local devnet does)").into());
    };
    let entries =
        std::fs::read_dir(&dir).map_err(|e| GwError::new(Kind::Internal, "internal", format!("reading {}: {e}", dir.display())))?;
    let mut keys: Vec<Value> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .filter_map(|p| serde_json::from_slice::<Value>(&std::fs::read(p).ok()?).ok())
        .filter(|k| matches!(k["role"].as_str(), Some("supplier" | "operator" | "inspector" | "courier")))
        .filter(|k| k["public_key"].is_string() && k["secret_key"].is_string())
        .map(|k| json!({ "name": k["name"], "role": k["role"], "public_key": k["public_key"], "secret_key": k["secret_key"] }))
        .collect();
    keys.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    Ok(Json(json!({
        "note": "demo keys of a local devnet, in clear: for trying the console, never for a real deployment",
        "keys": keys,
    })))
}

/// Each validator's height (or unreachable) and whether their app hashes
/// agree at the highest height every reachable validator has.
async fn network(State(gw): State<Arc<Shared>>) -> Json<Value> {
    let validators = gw.l1.validators().await;
    let common = validators.iter().filter_map(|(_, h)| *h).min();
    let hashes = match common {
        Some(h) => gw.l1.app_hashes(h).await,
        None => Vec::new(),
    };
    let hash_of = |url: &str| hashes.iter().find(|(u, _)| u == url).and_then(|(_, h)| h.clone());
    let reachable: Vec<Option<String>> = validators.iter().filter(|(_, h)| h.is_some()).map(|(url, _)| hash_of(url)).collect();
    let agree = !reachable.is_empty() && reachable.iter().all(|h| h.is_some() && *h == reachable[0]);
    let l1_height = gw.ledger().base.height();
    Json(json!({
        "common_height": common,
        "app_hash": if agree { reachable[0].clone() } else { None },
        "agree": agree,
        "note": "app_hash is the one in the header of block common_height: the state after common_height - 1",
        "gateway_l1_height": l1_height,
        "validators": validators.iter().map(|(url, h)| json!({
            "rpc": url,
            "height": h,
            "reachable": h.is_some(),
            "app_hash": h.and(hash_of(url)),
        })).collect::<Vec<_>>(),
    }))
}

fn parse_id(s: &str) -> ApiResult<Hash> {
    Hash::from_hex(s).map_err(|_| GwError::new(Kind::BadRequest, "malformed", "a session id is 64 hex digits").into())
}

fn refuse_if_unhealthy(gw: &Shared) -> ApiResult<()> {
    if gw.diverged.load(std::sync::atomic::Ordering::Relaxed) {
        return Err(GwError::new(Kind::Unavailable, "replica_diverged", "this gateway's copy of L1 diverged; it accepts nothing").into());
    }
    Ok(())
}

async fn open_session(State(gw): State<Arc<Shared>>, Body(open): Body<SignedSessionOpen>) -> ApiResult<impl IntoResponse> {
    refuse_if_unhealthy(&gw)?;
    if !open.open.owner.verify_memo(tandem_core::crypto::Domain::SessionOpen, &open.open, &open.signature, Some(&gw.sigs)) {
        return Err(tandem_core::Rejection::new(Code::BadSignature, "the open request's signature does not verify").into());
    }
    let record = borsh::to_vec(&WalRecord::Opened(open.clone())).expect("encoding");
    let (id, wait) = {
        let mut st = gw.ledger();
        let st = &mut *st;
        let id = st.ledger.open_session(&st.base, now_ms(), open.clone())?;
        (id, gw.wal.enqueue(vec![record]).unwrap_or_else(|e| fatal_wal(&e)))
    };
    wait.await.unwrap_or_else(|e| fatal_wal(&e));
    let _ = gw.events.send(Event::SessionOpened { session: id, owner: open.open.owner.to_hex() });
    Ok((StatusCode::CREATED, Json(json!({ "session_id": id, "status": SessionStatus::Open }))))
}

#[derive(Serialize)]
struct StepReply {
    session: Hash,
    seq: u64,
    outcome: tandem_core::Outcome,
    outcome_hash: Hash,
    package: tandem_core::model::Package,
    receipt: tandem_core::message::Receipt,
}

async fn post_step(State(gw): State<Arc<Shared>>, Path(id): Path<String>, Body(signed): Body<SignedStep>) -> ApiResult<Json<StepReply>> {
    let started = Instant::now();
    refuse_if_unhealthy(&gw)?;
    let id = parse_id(&id)?;
    if signed.step.session != id {
        return Err(GwError::new(Kind::BadRequest, "session_mismatch", "the step names another session than the URL").into());
    }
    let Some(verified) = VerifiedStep::check_memo(&signed, Some(&gw.sigs)) else {
        return Err(tandem_core::Rejection::new(Code::BadSignature, "the step's signature does not verify").into());
    };
    // Outside the lock: the decision under it then finds them in the memo.
    tandem_core::apply::precheck_signatures(&signed, &gw.sigs);
    let (accepted, wait) = {
        let mut st = gw.ledger();
        let st = &mut *st;
        let accepted = st.ledger.accept_step(&st.base, now_ms(), verified)?;
        let record = borsh::to_vec(&WalRecord::Step { step: signed.clone(), outcome: accepted.outcome_hash }).expect("encoding");
        // Queued under the lock: the log keeps the order of decisions.
        (accepted, gw.wal.enqueue(vec![record]).unwrap_or_else(|e| fatal_wal(&e)))
    };
    // Acked means durable: no answer before the fsync.
    wait.await.unwrap_or_else(|e| fatal_wal(&e));
    gw.metrics.step_seconds.observe(started.elapsed().as_secs_f64());
    let _ = gw.events.send(Event::StepAccepted {
        session: id,
        seq: signed.step.seq,
        package_id: signed.step.package_id.clone(),
        action: accepted.outcome.action.name().into(),
        stage: accepted.outcome.stage_after.name().into(),
    });
    Ok(Json(StepReply {
        session: id,
        seq: signed.step.seq,
        outcome_hash: accepted.outcome_hash,
        outcome: accepted.outcome,
        package: accepted.package,
        receipt: accepted.receipt,
    }))
}

/// The owner's signed close from a commit request's body. A body without a
/// signature (empty, `{}`, anything unsigned) is refused as unauthenticated:
/// only the session's owner may close it.
fn parse_close(body: &[u8]) -> ApiResult<SignedSessionClose> {
    let value: Value = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        serde_json::from_slice(body).map_err(|e| GwError::new(Kind::BadRequest, "malformed", format!("the body is not JSON: {e}")))?
    };
    if value.get("signature").is_none_or(Value::is_null) {
        return Err(GwError::new(
            Kind::Unauthorized,
            "signature_required",
            "a commit is the session owner's signed close: {\"close\": {chain_id, session, owner, last_seq}, \"signature\"}",
        )
        .into());
    }
    serde_json::from_value(value).map_err(|e| GwError::new(Kind::BadRequest, "malformed", format!("not a signed close: {e}")).into())
}

async fn commit(State(gw): State<Arc<Shared>>, Path(id): Path<String>, body: axum::body::Bytes) -> ApiResult<impl IntoResponse> {
    let id = parse_id(&id)?;
    let close = parse_close(&body)?;
    if close.close.session != id {
        return Err(GwError::new(Kind::BadRequest, "session_mismatch", "the close names another session than the URL").into());
    }
    // Outside the lock: the ledger's own check then finds it in the memo.
    if !close.verify(Some(&gw.sigs)) {
        return Err(GwError::new(Kind::Unauthorized, "bad_signature", "the close's signature does not verify").into());
    }
    let (status, wait) = {
        let mut st = gw.ledger();
        let Some(was) = st.ledger.session(&id).map(|s| s.status.clone()) else {
            // Forgotten here: closed on L1 (a repeat), or not this gateway's
            // business any more.
            return match st.base.session(&id) {
                Some(rec) if rec.owner != close.close.owner => {
                    Err(GwError::new(Kind::Forbidden, "not_session_owner", "only the session's owner may close it").into())
                }
                Some(rec) if rec.closed => {
                    Ok((StatusCode::ACCEPTED, Json(json!({ "session_id": id, "status": SessionStatus::Finalized }))))
                }
                Some(_) => Err(GwError::new(Kind::Conflict, "session_not_open", format!("session {id} is no longer held here")).into()),
                None => Err(GwError::unknown_session(id).into()),
            };
        };
        st.ledger.request_close(&id, close.clone(), now_ms())?;
        let status = st.ledger.session(&id).map(|s| s.status.clone()).unwrap_or(SessionStatus::Finalized);
        let wait = (was == SessionStatus::Open).then(|| {
            let record = borsh::to_vec(&WalRecord::Closed(close)).expect("encoding");
            gw.wal.enqueue(vec![record]).unwrap_or_else(|e| fatal_wal(&e))
        });
        (status, wait)
    };
    if let Some(w) = wait {
        w.await.unwrap_or_else(|e| fatal_wal(&e));
        let _ = gw.events.send(Event::SessionCommitting { session: id });
        // Send the batch now rather than at the next tick.
        gw.wake.notify_one();
    }
    Ok((StatusCode::ACCEPTED, Json(json!({ "session_id": id, "status": status }))))
}

async fn get_session(State(gw): State<Arc<Shared>>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let id = parse_id(&id)?;
    let st = gw.ledger();
    if let Some(s) = st.ledger.session(&id) {
        let steps: Vec<Value> = s
            .steps
            .iter()
            .map(|r| {
                json!({
                    "seq": r.signed.step.seq,
                    "package_id": r.signed.step.package_id,
                    "action": r.outcome.action,
                    "stage": r.outcome.stage_after,
                    "outcome_hash": r.outcome.hash(),
                    "accepted_ms": r.accepted_ms,
                    "state": if r.finality.is_some() { "final" } else { "tentative" },
                    "finality": r.finality,
                })
            })
            .collect();
        return Ok(Json(json!({
            "session_id": id,
            "owner": s.open.open.owner,
            "status": s.status,
            "final_seq": s.chain_seq,
            "last_seq": s.steps.last().map_or(s.chain_seq, |r| r.signed.step.seq),
            "opened_ms": s.opened_ms,
            "commit_ms": s.commit_ms,
            "steps": steps,
        })));
    }
    match st.base.session(&id) {
        Some(rec) => Ok(Json(json!({
            "session_id": id,
            "owner": rec.owner,
            "status": { "state": "finalized" },
            "closed": rec.closed,
            "final_seq": rec.last_seq,
            "last_seq": rec.last_seq,
            "steps": [],
            "note": "known from L1 only; this gateway holds no steps of it (closed: whether its owner closed it on L1)",
        }))),
        None => Err(GwError::unknown_session(id).into()),
    }
}

async fn get_package(State(gw): State<Arc<Shared>>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let st = gw.ledger();
    let tentative = st.ledger.tentative(&st.base).package(&id);
    let fin = st.base.package(&id);
    let Some(view) = tentative.clone().or_else(|| fin.clone()) else {
        return Err(GwError::new(Kind::NotFound, "unknown_package", format!("no package {id}")).into());
    };
    let final_len = fin.as_ref().map_or(0, |p| p.history.len());
    let history: Vec<Value> = view
        .history
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let finality = st.ledger.finality_of(&h.session, h.seq);
            json!({
                "action": h.action,
                "actor": h.actor,
                "session": h.session,
                "seq": h.seq,
                "stage": h.stage,
                "client_time_ms": h.client_time_ms,
                "state": if i < final_len { "final" } else { "tentative" },
                "l1_height": finality.map(|f| f.height),
                "tx_hash": finality.map(|f| f.tx_hash.clone()),
            })
        })
        .collect();
    Ok(Json(json!({
        "package_id": id,
        "tentative": tentative,
        "final": fin,
        "l1_height": st.base.height(),
        "history": history,
    })))
}

async fn direct_step(State(gw): State<Arc<Shared>>, Body(direct): Body<DirectStep>) -> ApiResult<Json<Value>> {
    let started = Instant::now();
    let tx = Tx::DirectStep(direct).encode();
    let hash = tx_hash(&tx);
    let mut blocks = gw.blocks.subscribe();
    match gw.l1.broadcast_tx_sync(tx).await {
        Ok(b) if b.code == 0 => {}
        Ok(b) => {
            let code = Code::from_number(b.code);
            return Err(GwError {
                kind: code.map_or(Kind::BadRequest, kind_of),
                code: code.map_or("l1_refused", |c| c.name()),
                message: b.log,
            }
            .into());
        }
        Err(L1Error::AlreadyInMempool) => {}
        Err(e) => return Err(GwError::new(Kind::Unavailable, "l1_unavailable", e.to_string()).into()),
    }
    let deadline = tokio::time::Instant::now() + gw.config.l1_step_timeout;
    loop {
        let block = match tokio::time::timeout_at(deadline, blocks.recv()).await {
            Err(_) => return Err(GwError::new(Kind::Unavailable, "l1_timeout", "L1 did not include the step in time").into()),
            Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => continue,
            Ok(Err(_)) => return Err(GwError::new(Kind::Internal, "internal", "block stream closed").into()),
            Ok(Ok(b)) => b,
        };
        if let Some((_, result)) = block.results.iter().find(|(h, _)| *h == hash) {
            gw.metrics.l1_direct_seconds.observe(started.elapsed().as_secs_f64());
            return match result {
                TxResult::Direct { session, seq, outcome } => Ok(Json(json!({
                    "session": session,
                    "seq": seq,
                    "outcome": outcome,
                    "outcome_hash": outcome.hash(),
                    "l1_height": block.height,
                    "tx_hash": hash,
                }))),
                TxResult::Rejected { rejection, .. } => Err(rejection.clone().into()),
                other => Err(GwError::new(Kind::Internal, "internal", format!("unexpected result {other:?}")).into()),
            };
        }
    }
}

async fn events(
    State(gw): State<Arc<Shared>>,
) -> Sse<impl futures::Stream<Item = Result<axum::response::sse::Event, std::convert::Infallible>>> {
    let rx = gw.events.subscribe();
    let stream = tokio_stream::wrappers::BroadcastStream::new(rx).filter_map(|e| async move {
        let e = e.ok()?;
        let value = serde_json::to_value(&e).ok()?;
        let kind = value["type"].as_str().unwrap_or("event").to_string();
        Some(Ok(axum::response::sse::Event::default().event(kind).data(value.to_string())))
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(10)))
}

async fn status(State(gw): State<Arc<Shared>>) -> Json<Value> {
    let validators = gw.l1.validators().await;
    let st = gw.ledger();
    let counts = st.ledger.counts();
    Json(json!({
        "gateway": gw.config.key.public(),
        "chain_id": gw.chain_id,
        "l1_height": st.base.height(),
        "l1_reachable": !gw.l1_down.load(std::sync::atomic::Ordering::Relaxed),
        "replica_diverged": gw.diverged.load(std::sync::atomic::Ordering::Relaxed),
        "validators": validators.into_iter().map(|(url, h)| json!({ "rpc": url, "height": h, "reachable": h.is_some() })).collect::<Vec<_>>(),
        "sessions": counts,
        "pending_steps": st.ledger.pending_steps(),
        "prediction_mismatches": st.ledger.mismatches(),
        "uptime_s": gw.started.elapsed().as_secs(),
    }))
}

async fn metrics(State(gw): State<Arc<Shared>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], gw.metrics.render())
}
