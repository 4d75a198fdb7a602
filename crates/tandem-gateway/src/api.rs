//! The HTTP API (axum): routes, JSON shapes, errors, and the limits on body
//! size and request rate. The OpenAPI document served at `/openapi.json`
//! (`openapi.json` beside this file) describes every route.
//!
//! Every error is `{"code": "...", "message": "..."}` with a stable code and
//! the status of [`crate::error::Kind`].

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequest, FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
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
use tandem_core::{Code, Hash, PublicKey};
use tandem_rpc::L1Error;
use tower_http::catch_panic::CatchPanicLayer;

use crate::error::{kind_of, GwError, Kind};
use crate::finality::FinalStep;
use crate::ledger::{issue_receipt, tx_hash, Event, SessionStatus, StepRecord, WalRecord};
use crate::limit::Client;
use crate::service::{fatal_wal, now_ms, wal_refusal, Shared};

/// The OpenAPI document.
pub const OPENAPI: &str = include_str!("openapi.json");

/// An error response.
pub struct ApiError {
    /// What went wrong.
    pub error: GwError,
    /// For 429: how long until the client's next request is admitted
    /// (the `Retry-After` header, in whole seconds rounded up).
    pub retry_after: Option<Duration>,
}

impl From<GwError> for ApiError {
    fn from(error: GwError) -> Self {
        ApiError { error, retry_after: None }
    }
}

impl From<tandem_core::Rejection> for ApiError {
    fn from(r: tandem_core::Rejection) -> Self {
        GwError::from(r).into()
    }
}

/// Seconds a client is told to wait (`Retry-After`) before retrying a 503.
pub const RETRY_AFTER_S: u64 = 1;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.error.kind.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = (status, Json(json!({ "code": self.error.code, "message": self.error.message }))).into_response();
        // Every 503 says when to come back; a 429 says when its client is
        // admitted again.
        let secs = match self.retry_after {
            Some(wait) => Some(wait.as_secs() + u64::from(wait.subsec_nanos() > 0)),
            None => (self.error.kind == Kind::Unavailable).then_some(RETRY_AFTER_S),
        };
        if let Some(secs) = secs {
            resp.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from(secs.max(1)));
        }
        resp
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

/// The peer's IP address, when the server passes it (`ConnectInfo`).
pub struct Peer(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Peer(parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip())))
    }
}

/// Count one request of `client` (see [`crate::limit`]).
fn admit(gw: &Shared, client: Client) -> ApiResult<()> {
    gw.limits.check(&client).map_err(|wait| ApiError {
        error: GwError::new(
            Kind::RateLimited,
            "rate_limited",
            format!("more than {} requests a second from one client; retry after the Retry-After header's seconds", gw.limits.rate()),
        ),
        retry_after: Some(wait),
    })
}

/// A signed request counts against its signer once the signature holds;
/// a request whose signature fails, against its peer's address.
fn admit_signed(gw: &Shared, peer: &Peer, signer: PublicKey, verified: bool) -> ApiResult<()> {
    admit(gw, if verified { Client::Key(signer) } else { Client::Peer(peer.0) })
}

/// Unsigned requests count against their peer's address.
async fn rate_limit(State(gw): State<Arc<Shared>>, peer: Peer, req: Request, next: Next) -> Response {
    match admit(&gw, Client::Peer(peer.0)) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

/// The router.
pub fn router(gw: Arc<Shared>) -> Router {
    let (signed, limited) = routes();
    serve(signed, limited, gw)
}

/// Every route, before the layers and the state: the signed ones (limited
/// per signer in their handlers, after the body is parsed once) and the
/// others (limited per peer address by a middleware).
fn routes() -> (Router<Arc<Shared>>, Router<Arc<Shared>>) {
    let signed = Router::new()
        .route("/v1/sessions", post(open_session))
        .route("/v1/sessions/{id}/steps", post(post_step))
        .route("/v1/l1/steps", post(direct_step));
    let limited = Router::new()
        .route("/v1/sessions/{id}/commit", post(commit))
        .route("/v1/sessions/{id}", get(get_session))
        .route("/v1/sessions/{id}/steps/{seq}", get(get_step))
        .route("/v1/packages/{id}", get(get_package))
        .route("/v1/events", get(events))
        .route("/v1/status", get(status))
        .route("/v1/network", get(network))
        .route("/v1/demo/keys", get(demo_keys));
    (signed, limited)
}

/// `limited` routes behind the rate limit, the unlimited ones beside them,
/// the body limit, and a handler panic answered as a 500 `internal` error
/// (the connection and every other request carry on; the ledger's lock is
/// taken over by the next request, see [`Shared::ledger`]).
fn serve(signed: Router<Arc<Shared>>, limited: Router<Arc<Shared>>, gw: Arc<Shared>) -> Router {
    let limited = limited.layer(middleware::from_fn_with_state(gw.clone(), rate_limit));
    Router::new()
        .merge(signed)
        .merge(limited)
        .route("/", get(|| async { asset("index.html") }))
        .route("/assets/{file}", get(|Path(file): Path<String>| async move { asset(&file) }))
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI) }))
        .fallback(|| async { ApiError::from(GwError::new(Kind::NotFound, "not_found", "no such route")) })
        .method_not_allowed_fallback(|| async {
            ApiError::from(GwError::new(Kind::MethodNotAllowed, "method_not_allowed", "this route does not take that method"))
        })
        .layer(DefaultBodyLimit::max(gw.config.body_bytes_max))
        .layer(CatchPanicLayer::custom(panic_response))
        .with_state(gw)
}

/// The answer to a request whose handler panicked.
fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let what = panic.downcast_ref::<&str>().copied().or_else(|| panic.downcast_ref::<String>().map(String::as_str)).unwrap_or("");
    tracing::error!(panic = what, "a request handler panicked; answered 500");
    ApiError::from(GwError::new(Kind::Internal, "internal", "the gateway failed to handle this request; it keeps serving others"))
        .into_response()
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
        None => ApiError::from(GwError::new(Kind::NotFound, "not_found", format!("no asset {name:?}"))).into_response(),
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

async fn open_session(State(gw): State<Arc<Shared>>, peer: Peer, Body(open): Body<SignedSessionOpen>) -> ApiResult<impl IntoResponse> {
    refuse_if_unhealthy(&gw)?;
    let verified = open.open.owner.verify_memo(tandem_core::crypto::Domain::SessionOpen, &open.open, &open.signature, Some(&gw.sigs));
    admit_signed(&gw, &peer, open.open.owner, verified)?;
    if !verified {
        return Err(tandem_core::Rejection::new(Code::BadSignature, "the open request's signature does not verify").into());
    }
    let record = borsh::to_vec(&WalRecord::Opened(open.clone())).expect("borsh encoding into a Vec cannot fail");
    // The record's place in the log is taken before deciding (see
    // `service`): a full queue refuses here, with nothing decided.
    let reservation = gw.wal.reserve().map_err(|e| wal_refusal(&gw, e))?;
    let (id, wait, again) = {
        let mut st = gw.ledger();
        let st = &mut *st;
        match st.ledger.open_session(&st.base, now_ms(), open.clone()) {
            Ok(id) => (id, reservation.enqueue(vec![record]).unwrap_or_else(|e| fatal_wal(&e)), None),
            Err(e) if e.code == "session_exists" => {
                // A re-sent open (the session id is the hash of the request):
                // the original answer, with where the session is now.
                let id = open.open.session_id();
                let status = match st.ledger.session(&id) {
                    Some(s) if s.open == open => s.status.clone(),
                    Some(_) => return Err(e.into()),
                    None => SessionStatus::Finalized,
                };
                // Answered only once the first answer's record is durable.
                (id, reservation.enqueue(Vec::new()).unwrap_or_else(|e| fatal_wal(&e)), Some(status))
            }
            Err(e) => return Err(e.into()),
        }
    };
    wait.await.unwrap_or_else(|e| fatal_wal(&e));
    if again.is_none() {
        let _ = gw.events.send(Event::SessionOpened { session: id, owner: open.open.owner.to_hex() });
    }
    Ok((StatusCode::CREATED, Json(json!({ "session_id": id, "status": again.unwrap_or(SessionStatus::Open) }))))
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

async fn post_step(
    State(gw): State<Arc<Shared>>,
    peer: Peer,
    Path(id): Path<String>,
    Body(signed): Body<SignedStep>,
) -> ApiResult<Json<StepReply>> {
    let started = Instant::now();
    refuse_if_unhealthy(&gw)?;
    let verified = VerifiedStep::check_memo(&signed, Some(&gw.sigs));
    admit_signed(&gw, &peer, signed.step.actor, verified.is_some())?;
    let id = parse_id(&id)?;
    if signed.step.session != id {
        return Err(GwError::new(Kind::BadRequest, "session_mismatch", "the step names another session than the URL").into());
    }
    let Some(verified) = verified else {
        return Err(tandem_core::Rejection::new(Code::BadSignature, "the step's signature does not verify").into());
    };
    // Outside the lock: the decision under it then finds them in the memo.
    tandem_core::apply::precheck_signatures(&signed, &gw.sigs);
    let reservation = gw.wal.reserve().map_err(|e| wal_refusal(&gw, e))?;
    let decided = {
        let mut st = gw.ledger();
        let st = &mut *st;
        st.ledger.accept_step(&st.base, now_ms(), verified).map(|accepted| {
            let record = borsh::to_vec(&WalRecord::Step { step: signed.clone(), outcome: accepted.outcome_hash })
                .expect("borsh encoding into a Vec cannot fail");
            // Queued under the lock: the log keeps the order of decisions.
            (accepted, reservation.enqueue(vec![record]).unwrap_or_else(|e| fatal_wal(&e)))
        })
    };
    let (accepted, wait) = match decided {
        Ok(d) => d,
        Err(refusal) => return answer_again(&gw, &signed, refusal).await.map(Json),
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

/// A step the ledger refused may be a re-send of one this gateway accepted
/// (its answer was lost): a byte-identical step gets the original answer and
/// receipt, whether it is pending, final, forgotten or from before a restart.
/// Another step at a taken seq is `bad_sequence`; anything else keeps
/// `refusal`.
async fn answer_again(gw: &Shared, signed: &SignedStep, refusal: GwError) -> ApiResult<StepReply> {
    let s = &signed.step;
    let held = {
        let st = gw.ledger();
        match st.ledger.prior_step(signed) {
            Some(Ok(rec)) => {
                let package = st.ledger.tentative(&st.base).package(&s.package_id);
                // The first answer waited for its record's fsync; so does
                // this one (an empty barrier, which needs a place in the
                // queue like any request: a full queue answers 503).
                let place = gw.wal.reserve().map_err(|e| wal_refusal(gw, e))?;
                Some((rec.outcome.clone(), rec.receipt.clone(), package, place.enqueue(Vec::new()).unwrap_or_else(|e| fatal_wal(&e))))
            }
            Some(Err(e)) => return Err(e.into()),
            None => None,
        }
    };
    let (outcome, receipt, package) = match held {
        Some((outcome, receipt, package, wait)) => {
            wait.await.unwrap_or_else(|e| fatal_wal(&e));
            (outcome, receipt, package)
        }
        None => {
            let Some(fin) = final_step(gw, &s.session, s.seq)? else {
                return Err(refusal.into());
            };
            if fin.signed != *signed {
                return Err(GwError::seq_taken(s.session, s.seq).into());
            }
            if fin.gateway != Some(gw.config.key.public()) {
                // Final through another gateway or directly: never answered here.
                return Err(refusal.into());
            }
            let receipt = issue_receipt(&gw.chain_id, &gw.config.key, s.session, s.seq, &fin.outcome);
            let st = gw.ledger();
            (fin.outcome, receipt, st.ledger.tentative(&st.base).package(&s.package_id))
        }
    };
    let package =
        package.ok_or_else(|| GwError::new(Kind::Internal, "internal", format!("package {} of an accepted step is gone", s.package_id)))?;
    Ok(StepReply { session: s.session, seq: s.seq, outcome_hash: outcome.hash(), outcome, package, receipt })
}

fn index_error(e: crate::finality::IndexError) -> ApiError {
    GwError::new(Kind::Internal, "internal", e.to_string()).into()
}

/// A step from the finality index.
fn final_step(gw: &Shared, session: &Hash, seq: u64) -> ApiResult<Option<FinalStep>> {
    gw.replica.index().get(session, seq).map_err(index_error)
}

/// Steps a session listing shows at most from the finality index.
const INDEXED_STEPS_LISTED_MAX: usize = 10_000;

/// A held step as the API shows it.
fn held_step_json(r: &StepRecord, state: &str) -> Value {
    json!({
        "seq": r.signed.step.seq,
        "package_id": r.signed.step.package_id,
        "action": r.outcome.action,
        "stage": r.outcome.stage_after,
        "outcome_hash": r.outcome.hash(),
        "accepted_ms": r.accepted_ms,
        "state": if r.finality.is_some() { "final" } else { state },
        "finality": r.finality,
        "receipt": r.receipt,
    })
}

/// A step of the finality index as the API shows it: the receipt is this
/// gateway's when its batch carried the step, `null` otherwise.
fn final_step_json(gw: &Shared, f: &FinalStep) -> Value {
    let ours = f.gateway == Some(gw.config.key.public());
    let s = &f.signed.step;
    json!({
        "seq": s.seq,
        "package_id": s.package_id,
        "action": f.outcome.action,
        "stage": f.outcome.stage_after,
        "outcome_hash": f.outcome.hash(),
        "accepted_ms": null,
        "state": "final",
        "finality": f.finality(),
        "receipt": ours.then(|| issue_receipt(&gw.chain_id, &gw.config.key, s.session, s.seq, &f.outcome)),
    })
}

/// One step: the signed step, its outcome, this gateway's receipt and where
/// it is final. Held steps come from memory, older ones from the finality
/// index.
async fn get_step(State(gw): State<Arc<Shared>>, Path((id, seq)): Path<(String, String)>) -> ApiResult<Json<Value>> {
    let id = parse_id(&id)?;
    let seq: u64 = seq.parse().map_err(|_| GwError::new(Kind::BadRequest, "malformed", "a seq is a decimal number"))?;
    let held = {
        let st = gw.ledger();
        st.ledger.session(&id).and_then(|s| {
            let rec = s.step(seq)?;
            let state = if matches!(s.status, SessionStatus::Rejected { .. }) { "rejected" } else { "tentative" };
            let mut v = held_step_json(rec, state);
            v["step"] = json!(rec.signed);
            v["outcome"] = json!(rec.outcome);
            Some(v)
        })
    };
    let mut v = match held {
        Some(v) => v,
        None => match final_step(&gw, &id, seq)? {
            Some(f) => {
                let mut v = final_step_json(&gw, &f);
                v["step"] = json!(f.signed);
                v["outcome"] = json!(f.outcome);
                v
            }
            None => {
                return Err(GwError::new(Kind::NotFound, "unknown_step", format!("no step {seq} of session {id} at this gateway")).into())
            }
        },
    };
    v["session_id"] = json!(id);
    Ok(Json(v))
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
        // Closing an open session is a decision to log: its place first.
        let reservation = match was {
            SessionStatus::Open => Some(gw.wal.reserve().map_err(|e| wal_refusal(&gw, e))?),
            _ => None,
        };
        st.ledger.request_close(&id, close.clone(), now_ms())?;
        let status = st.ledger.session(&id).map(|s| s.status.clone()).unwrap_or(SessionStatus::Finalized);
        let wait = reservation.map(|r| {
            let record = borsh::to_vec(&WalRecord::Closed(close)).expect("borsh encoding into a Vec cannot fail");
            r.enqueue(vec![record]).unwrap_or_else(|e| fatal_wal(&e))
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
    // Under the lock: what memory holds. The finality index is read after.
    let (mut view, held_from) = {
        let st = gw.ledger();
        if let Some(s) = st.ledger.session(&id) {
            let state = if matches!(s.status, SessionStatus::Rejected { .. }) { "rejected" } else { "tentative" };
            let steps: Vec<Value> = s.steps.iter().map(|r| held_step_json(r, state)).collect();
            let held_from = s.steps.first().map_or(u64::MAX, |r| r.signed.step.seq);
            (
                json!({
                    "session_id": id,
                    "owner": s.open.open.owner,
                    "status": s.status,
                    "final_seq": s.chain_seq,
                    "last_seq": s.steps.last().map_or(s.chain_seq, |r| r.signed.step.seq),
                    "opened_ms": s.opened_ms,
                    "commit_ms": s.commit_ms,
                    "steps": steps,
                }),
                held_from,
            )
        } else {
            match st.base.session(&id) {
                Some(rec) => (
                    json!({
                        "session_id": id,
                        "owner": rec.owner,
                        "status": { "state": "finalized" },
                        "closed": rec.closed,
                        "final_seq": rec.last_seq,
                        "last_seq": rec.last_seq,
                        "steps": [],
                        "note": "known from L1 and this gateway's finality index; it holds no steps of it in memory (closed: whether its owner closed it on L1)",
                    }),
                    u64::MAX,
                ),
                None => return Err(GwError::unknown_session(id).into()),
            }
        }
    };
    // Steps final before the ones held (a restart, a forgotten session):
    // seqs 1 .. held_from - 1, read only when there are any.
    let before_held = usize::try_from(held_from.saturating_sub(1)).unwrap_or(usize::MAX).min(INDEXED_STEPS_LISTED_MAX);
    let older: Vec<Value> = if before_held == 0 {
        Vec::new()
    } else {
        gw.replica
            .index()
            .session(&id, 1, before_held)
            .map_err(index_error)?
            .iter()
            .filter(|f| f.signed.step.seq < held_from)
            .map(|f| final_step_json(&gw, f))
            .collect()
    };
    if !older.is_empty() {
        let held = view["steps"].as_array().cloned().unwrap_or_default();
        view["steps"] = Value::Array(older.into_iter().chain(held).collect());
    }
    Ok(Json(view))
}

async fn get_package(State(gw): State<Arc<Shared>>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let (tentative, fin, l1_height) = {
        let st = gw.ledger();
        (st.ledger.tentative(&st.base).package(&id), st.base.package(&id), st.base.height())
    };
    let Some(view) = tentative.clone().or_else(|| fin.clone()) else {
        return Err(GwError::new(Kind::NotFound, "unknown_package", format!("no package {id}")).into());
    };
    let final_len = fin.as_ref().map_or(0, |p| p.history.len());
    let keys: Vec<(Hash, u64)> = view.history.iter().take(final_len).map(|h| (h.session, h.seq)).collect();
    let finality = gw.replica.index().finality_of(&keys).map_err(index_error)?;
    let history: Vec<Value> = view
        .history
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let finality = finality.get(i).and_then(Option::as_ref);
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
        "l1_height": l1_height,
        "history": history,
    })))
}

async fn direct_step(State(gw): State<Arc<Shared>>, peer: Peer, Body(direct): Body<DirectStep>) -> ApiResult<Json<Value>> {
    let started = Instant::now();
    // L1 checks the signature; the gateway only counts the request.
    let verified = VerifiedStep::check_memo(&direct.step, Some(&gw.sigs)).is_some();
    admit_signed(&gw, &peer, direct.step.step.actor, verified)?;
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
        "foreign_batches": st.ledger.foreign_batches(),
        "l1_record": st.base.gateway(&gw.config.key.public()),
        "l1_refused_batches": gw.refusals.lock().map(|r| r.clone()).unwrap_or_else(|p| p.into_inner().clone()),
        "uptime_s": gw.started.elapsed().as_secs(),
    }))
}

async fn metrics(State(gw): State<Arc<Shared>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], gw.metrics.render())
}

#[cfg(test)]
mod tests {
    use axum::body::Body as HttpBody;
    use axum::http::Request as HttpRequest;
    use http_body_util::BodyExt as _;
    use tandem_core::message::SessionOpen;
    use tandem_core::testkit::{Cast, CHAIN_ID};
    use tandem_rpc::FakeL1;
    use tower::ServiceExt as _;

    use super::*;
    use crate::service::{Gateway, GatewayConfig};

    /// A handler with a bug: it panics while it holds the ledger's lock.
    async fn panics_holding_the_ledger(State(gw): State<Arc<Shared>>) -> &'static str {
        let _held = gw.ledger();
        panic!("a bug in a handler, with the ledger locked");
    }

    async fn call(app: &Router, req: HttpRequest<HttpBody>) -> (StatusCode, Value) {
        let rsp = app.clone().oneshot(req).await.expect("the router always answers");
        let status = rsp.status();
        let bytes = rsp.into_body().collect().await.expect("body").to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    #[tokio::test]
    async fn a_panicking_request_is_answered_500_and_later_requests_normally() {
        let cast = Cast::new();
        let l1 = Arc::new(FakeL1::new(CHAIN_ID, cast.genesis()).expect("fake L1"));
        l1.produce_block(now_ms());
        let dir = tempfile::tempdir().expect("tempdir");
        let gw = Gateway::start(GatewayConfig::new(dir.path().to_path_buf(), cast.gateway.clone()), l1).await.expect("starts");
        // The real routes and layers, plus one route with a bug.
        let (signed, limited) = routes();
        let app = serve(signed, limited.route("/v1/bug", get(panics_holding_the_ledger)), gw.shared.clone());

        let (status, body) = call(&app, HttpRequest::get("/v1/bug").body(HttpBody::empty()).expect("request")).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body["code"], "internal", "{body}");
        assert!(gw.shared.state.is_poisoned(), "the panic happened with the ledger locked");

        // Every later request is served, the ones that take the lock too.
        let (status, body) = call(&app, HttpRequest::get("/v1/status").body(HttpBody::empty()).expect("request")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["sessions"]["open"], 0);
        let open = SessionOpen {
            chain_id: CHAIN_ID.into(),
            owner: cast.operator.public(),
            gateway: Some(cast.gateway.public()),
            nonce: 1,
            client_time_ms: now_ms(),
        }
        .sign(&cast.operator);
        let req = HttpRequest::post("/v1/sessions")
            .header(header::CONTENT_TYPE, "application/json")
            .body(HttpBody::from(serde_json::to_vec(&open).expect("json")))
            .expect("request");
        let (status, body) = call(&app, req).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["session_id"], open.open.session_id().to_hex());
        let (status, body) = call(&app, HttpRequest::get("/v1/status").body(HttpBody::empty()).expect("request")).await;
        assert_eq!((status, body["sessions"]["open"].clone()), (StatusCode::OK, json!(1)));
    }
}
