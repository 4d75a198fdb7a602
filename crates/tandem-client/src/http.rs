//! The gateway's HTTP API, typed. Errors keep the API's stable code.
//!
//! Signed requests survive a lost answer: the gateway answers a
//! byte-identical re-send of a step or open request it accepted with the
//! original answer and receipt. So after a transport error, a 5xx or a 429
//! the client sends the very same bytes again (with backoff, see [`Retry`]);
//! when no attempt is answered it reads the step back
//! (`GET /v1/sessions/{id}/steps/{seq}`). A [`Session`] never signs another
//! step for a seq whose first step's fate is unknown.

use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{json, Value};
use tandem_core::message::{Action, DirectStep, Receipt, SessionClose, SessionOpen, SignedSessionOpen, SignedStep, Step};
use tandem_core::model::Package;
use tandem_core::{Hash, Outcome, PublicKey, SecretKey};

/// A failed call.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The gateway answered with an error.
    #[error("{status} {code}: {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// Stable code.
        code: String,
        /// Message.
        message: String,
    },
    /// The gateway could not be reached.
    #[error("cannot reach the gateway at {url}: {reason}")]
    Unreachable {
        /// Where.
        url: String,
        /// Why.
        reason: String,
    },
    /// The answer was not what the API promises.
    #[error("unexpected answer: {0}")]
    Decode(String),
    /// Waited too long.
    #[error("timed out: {0}")]
    Timeout(String),
}

impl ClientError {
    /// The stable code, for API errors.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// Whether sending the same bytes again may succeed: the request may
    /// not have arrived, or its answer was lost, or the gateway was busy.
    pub fn retriable(&self) -> bool {
        match self {
            ClientError::Unreachable { .. } => true,
            ClientError::Api { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }
}

/// How often a signed request is sent again after a retriable failure
/// ([`ClientError::retriable`]): `attempts` in all, waiting `backoff`,
/// doubled each time up to `backoff_max` (or the gateway's `Retry-After`
/// for a 429).
#[derive(Clone, Copy, Debug)]
pub struct Retry {
    /// Attempts in all (at least 1).
    pub attempts: u32,
    /// The first wait.
    pub backoff: Duration,
    /// The longest wait.
    pub backoff_max: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry { attempts: 6, backoff: Duration::from_millis(100), backoff_max: Duration::from_secs(2) }
    }
}

/// What the gateway answers for a step.
#[derive(Clone, Debug, Deserialize)]
pub struct StepReply {
    /// Session.
    pub session: Hash,
    /// Seq.
    pub seq: u64,
    /// Predicted outcome.
    pub outcome: Outcome,
    /// Its hash.
    pub outcome_hash: Hash,
    /// Predicted package.
    pub package: Package,
    /// The gateway's receipt.
    pub receipt: Receipt,
}

/// A client of one gateway.
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    /// The chain the gateway serves.
    pub chain_id: String,
    /// The gateway's key (sessions name it).
    pub gateway: PublicKey,
    /// How signed requests are sent again after a lost answer.
    pub retry: Retry,
}

/// Milliseconds since the Unix epoch (steps carry the signer's clock).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl Client {
    /// Connect: reads the gateway's chain id and key from `/v1/status`.
    pub async fn connect(base: &str) -> Result<Client, ClientError> {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| ClientError::Unreachable { url: base.into(), reason: e.to_string() })?;
        let mut c = Client {
            http,
            base: base.trim_end_matches('/').to_string(),
            chain_id: String::new(),
            gateway: PublicKey([0; 32]),
            retry: Retry::default(),
        };
        let status = c.status().await?;
        c.chain_id = status["chain_id"].as_str().ok_or_else(|| ClientError::Decode("status has no chain_id".into()))?.into();
        c.gateway = status["gateway"]
            .as_str()
            .and_then(|s| PublicKey::from_hex(s).ok())
            .ok_or_else(|| ClientError::Decode("status has no gateway key".into()))?;
        Ok(c)
    }

    /// The base URL.
    pub fn url(&self) -> &str {
        &self.base
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<Value, ClientError> {
        self.send_for(req).await.map_err(|(e, _)| e)
    }

    /// POST the JSON bytes `body` to `path`, the same bytes again after each
    /// retriable failure, as [`Client::retry`] says.
    async fn post_same(&self, path: &str, body: Vec<u8>) -> Result<Value, ClientError> {
        let url = format!("{}{path}", self.base);
        let attempts = self.retry.attempts.max(1);
        let mut wait = self.retry.backoff;
        let mut attempt = 1;
        loop {
            let req = self.http.post(&url).header("content-type", "application/json").body(body.clone());
            match self.send_for(req).await {
                Ok(v) => return Ok(v),
                Err((e, retry_after)) if e.retriable() && attempt < attempts => {
                    tokio::time::sleep(retry_after.unwrap_or(wait)).await;
                    wait = (wait * 2).min(self.retry.backoff_max);
                    attempt += 1;
                }
                Err((e, _)) => return Err(e),
            }
        }
    }

    /// Send; on failure also the `Retry-After` the gateway gave.
    async fn send_for(&self, req: reqwest::RequestBuilder) -> Result<Value, (ClientError, Option<Duration>)> {
        let unreachable = |e: reqwest::Error| (ClientError::Unreachable { url: self.base.clone(), reason: e.to_string() }, None);
        let r = req.timeout(Duration::from_secs(60)).send().await.map_err(unreachable)?;
        let status = r.status().as_u16();
        let retry_after = r
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let bytes = r.bytes().await.map_err(unreachable)?;
        let body: Value = match serde_json::from_slice(&bytes) {
            Ok(v) => v,
            // A proxy or a crashed server may answer an error in plain text.
            Err(_) if status >= 400 => {
                return Err((
                    ClientError::Api {
                        status,
                        code: format!("http_{status}"),
                        message: String::from_utf8_lossy(&bytes).chars().take(200).collect(),
                    },
                    retry_after,
                ))
            }
            Err(e) => return Err((ClientError::Decode(e.to_string()), None)),
        };
        if status >= 400 {
            return Err((
                ClientError::Api {
                    status,
                    code: body["code"].as_str().unwrap_or("unknown").into(),
                    message: body["message"].as_str().unwrap_or_default().into(),
                },
                retry_after,
            ));
        }
        Ok(body)
    }

    /// `GET /v1/sessions/{id}/steps/{seq}`: the step, its outcome, receipt
    /// and finality; `None` when the gateway holds no such step (it was never
    /// accepted).
    pub async fn step_view(&self, id: &Hash, seq: u64) -> Result<Option<Value>, ClientError> {
        match self.send(self.http.get(format!("{}/v1/sessions/{id}/steps/{seq}", self.base))).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.code() == Some("unknown_step") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Send a signed step until its answer arrives (the same bytes each
    /// time). When no attempt is answered, reads the step back: if the
    /// gateway holds exactly this step, its original reply is rebuilt from
    /// it (outcome, outcome hash and receipt as first answered; `package`
    /// read now). Otherwise the last error.
    pub async fn send_step(&self, signed: &SignedStep) -> Result<StepReply, ClientError> {
        let s = &signed.step;
        let body = serde_json::to_vec(signed).map_err(|e| ClientError::Decode(e.to_string()))?;
        let err = match self.post_same(&format!("/v1/sessions/{}/steps", s.session), body).await {
            Ok(v) => return serde_json::from_value(v).map_err(|e| ClientError::Decode(e.to_string())),
            Err(e) if e.retriable() => e,
            Err(e) => return Err(e),
        };
        let Ok(Some(view)) = self.step_view(&s.session, s.seq).await else {
            return Err(err);
        };
        let held: SignedStep = serde_json::from_value(view["step"].clone()).map_err(|e| ClientError::Decode(e.to_string()))?;
        if held != *signed {
            return Err(err);
        }
        let package = self.package(&s.package_id).await?;
        let package = package.get("tentative").filter(|p| !p.is_null()).unwrap_or(&package["final"]).clone();
        serde_json::from_value(json!({
            "session": s.session,
            "seq": s.seq,
            "outcome": view["outcome"],
            "outcome_hash": view["outcome_hash"],
            "package": package,
            "receipt": view["receipt"],
        }))
        .map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// `GET /v1/status`.
    pub async fn status(&self) -> Result<Value, ClientError> {
        self.send(self.http.get(format!("{}/v1/status", self.base))).await
    }

    /// `GET /v1/sessions/{id}`.
    pub async fn session(&self, id: &Hash) -> Result<Value, ClientError> {
        self.send(self.http.get(format!("{}/v1/sessions/{id}", self.base))).await
    }

    /// `GET /v1/packages/{id}`.
    pub async fn package(&self, id: &str) -> Result<Value, ClientError> {
        self.send(self.http.get(format!("{}/v1/packages/{id}", self.base))).await
    }

    /// Open a session owned by `owner` at this gateway.
    pub async fn open_session(&self, owner: &SecretKey) -> Result<Session, ClientError> {
        let nonce = rand::random::<u64>() >> 11; // stays exact in JSON numbers
        let open = SessionOpen {
            chain_id: self.chain_id.clone(),
            owner: owner.public(),
            gateway: Some(self.gateway),
            nonce,
            client_time_ms: now_ms(),
        }
        .sign(owner);
        let body = serde_json::to_vec(&open).map_err(|e| ClientError::Decode(e.to_string()))?;
        // A re-sent open is answered 201 like the first.
        self.post_same("/v1/sessions", body).await?;
        Ok(Session { client: self.clone(), key: owner.clone(), id: open.open.session_id(), next_seq: 1, unanswered: None })
    }

    /// Continue a session opened earlier (possibly by another process):
    /// the next sequence number is the number of steps the gateway holds + 1.
    pub async fn resume_session(&self, owner: &SecretKey, id: Hash) -> Result<Session, ClientError> {
        let s = self.session(&id).await?;
        let held = s["steps"].as_array().map_or(0, |a| a.len() as u64);
        // A session known from L1 only reports its last final seq.
        let next_seq = held.max(s["final_seq"].as_u64().unwrap_or(0)) + 1;
        Ok(Session { client: self.clone(), key: owner.clone(), id, next_seq, unanswered: None })
    }

    /// `GET /v1/events`: the gateway's server-sent events, from now on.
    pub async fn events(&self) -> Result<EventStream, ClientError> {
        let r = self
            .http
            .get(format!("{}/v1/events", self.base))
            .header("accept", "text/event-stream")
            .send()
            .await
            .map_err(|e| ClientError::Unreachable { url: self.base.clone(), reason: e.to_string() })?;
        if !r.status().is_success() {
            let status = r.status().as_u16();
            return Err(ClientError::Api { status, code: format!("http_{status}"), message: "cannot subscribe to events".into() });
        }
        Ok(EventStream { response: r, buf: Vec::new() })
    }

    /// `POST /v1/sessions/{id}/commit`: close the session after step
    /// `last_seq`, signed by its `owner` (only the owner may close it).
    pub async fn commit(&self, owner: &SecretKey, id: &Hash, last_seq: u64) -> Result<Value, ClientError> {
        let close = SessionClose { chain_id: self.chain_id.clone(), session: *id, owner: owner.public(), last_seq }.sign(owner);
        self.send(self.http.post(format!("{}/v1/sessions/{id}/commit", self.base)).json(&close)).await
    }

    /// The seq of a session's last step at the gateway (what a close names).
    pub async fn last_seq(&self, id: &Hash) -> Result<u64, ClientError> {
        let s = self.session(id).await?;
        let held = s["steps"].as_array().into_iter().flatten().filter_map(|st| st["seq"].as_u64()).max();
        Ok(s["last_seq"].as_u64().or(held).unwrap_or(0).max(s["final_seq"].as_u64().unwrap_or(0)))
    }

    /// Wait until a session is finalized (or fail when it is rejected).
    pub async fn wait_final(&self, id: &Hash, timeout: Duration) -> Result<Value, ClientError> {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.session(id).await?;
            match s["status"]["state"].as_str() {
                Some("finalized") => return Ok(s),
                Some("rejected") => {
                    return Err(ClientError::Api {
                        status: 422,
                        code: s["status"]["code"].as_str().unwrap_or("rejected").into(),
                        message: s["status"]["detail"].as_str().unwrap_or_default().into(),
                    })
                }
                _ => {}
            }
            if Instant::now() >= deadline {
                return Err(ClientError::Timeout(format!("session {id} not final after {timeout:?}")));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// One step straight to L1 (the direct path): answered after its block.
    pub async fn direct_step(&self, key: &SecretKey, package: &str, action: Action) -> Result<Value, ClientError> {
        let nonce = rand::random::<u64>() >> 11;
        let open =
            SessionOpen { chain_id: self.chain_id.clone(), owner: key.public(), gateway: None, nonce, client_time_ms: now_ms() }.sign(key);
        let step = self.step_for(key, open.open.session_id(), 1, package, action);
        self.direct(Some(open), step).await
    }

    /// `POST /v1/l1/steps`.
    pub async fn direct(&self, open: Option<SignedSessionOpen>, step: SignedStep) -> Result<Value, ClientError> {
        self.send(self.http.post(format!("{}/v1/l1/steps", self.base)).json(&DirectStep { open, step })).await
    }

    fn step_for(&self, key: &SecretKey, session: Hash, seq: u64, package: &str, action: Action) -> SignedStep {
        Step {
            chain_id: self.chain_id.clone(),
            session,
            seq,
            actor: key.public(),
            package_id: package.into(),
            action,
            client_time_ms: now_ms(),
        }
        .sign(key)
    }
}

/// An open session: signs each step with the owner's key and the next
/// sequence number.
#[derive(Clone, Debug)]
pub struct Session {
    client: Client,
    key: SecretKey,
    /// The session id.
    pub id: Hash,
    /// The sequence number the next step gets.
    pub next_seq: u64,
    /// A step sent whose answer never came (every attempt failed): it may
    /// have been accepted, so its seq is not signed again with other
    /// content; [`Session::settle`] sends it again.
    pub unanswered: Option<SignedStep>,
}

impl Session {
    /// Sign and send the next step. An earlier step left unanswered is
    /// settled first (sent again; see [`Session::settle`]).
    pub async fn step(&mut self, package: &str, action: Action) -> Result<StepReply, ClientError> {
        if let Err(e) = self.settle().await {
            if self.unanswered.is_some() {
                return Err(e);
            }
        }
        let signed = self.client.step_for(&self.key, self.id, self.next_seq, package, action);
        self.deliver(signed).await
    }

    /// Send the unanswered step again, the same bytes: its reply once the
    /// gateway answers (`None` when there is none). An error answer means
    /// the gateway did not take it, which frees its seq.
    pub async fn settle(&mut self) -> Result<Option<StepReply>, ClientError> {
        match self.unanswered.take() {
            None => Ok(None),
            Some(signed) => self.deliver(signed).await.map(Some),
        }
    }

    async fn deliver(&mut self, signed: SignedStep) -> Result<StepReply, ClientError> {
        match self.client.send_step(&signed).await {
            Ok(reply) => {
                self.next_seq = signed.step.seq + 1;
                Ok(reply)
            }
            Err(e) => {
                if e.retriable() {
                    self.unanswered = Some(signed);
                }
                Err(e)
            }
        }
    }

    /// Close the session after its last step (signed with the owner's key)
    /// and have the gateway finalize it.
    pub async fn commit(&self) -> Result<Value, ClientError> {
        self.client.commit(&self.key, &self.id, self.next_seq - 1).await
    }

    /// Commit and wait for finality.
    pub async fn commit_and_wait(&self, timeout: Duration) -> Result<Value, ClientError> {
        self.commit().await?;
        self.client.wait_final(&self.id, timeout).await
    }
}

/// A subscription to `GET /v1/events`: each event is its JSON data (whose
/// `type` names it: `step_accepted`, `session_finalized`, ...).
#[derive(Debug)]
pub struct EventStream {
    response: reqwest::Response,
    buf: Vec<u8>,
}

impl EventStream {
    /// The next event; `None` when the gateway closed the stream.
    pub async fn next(&mut self) -> Option<Result<Value, ClientError>> {
        loop {
            if let Some(end) = find_event_end(&self.buf) {
                let raw: Vec<u8> = self.buf.drain(..end).collect();
                let text = String::from_utf8_lossy(&raw);
                let data: Vec<&str> =
                    text.lines().filter_map(|l| l.strip_prefix("data:")).map(|d| d.strip_prefix(' ').unwrap_or(d)).collect();
                if data.is_empty() {
                    continue; // a keep-alive comment
                }
                return Some(serde_json::from_str(&data.join("\n")).map_err(|e| ClientError::Decode(e.to_string())));
            }
            match self.response.chunk().await {
                Ok(Some(bytes)) => self.buf.extend_from_slice(&bytes),
                Ok(None) => return None,
                Err(e) => return Some(Err(ClientError::Unreachable { url: "events".into(), reason: e.to_string() })),
            }
        }
    }
}

/// Where the first complete event (ended by a blank line) ends, blank line included.
fn find_event_end(buf: &[u8]) -> Option<usize> {
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}
