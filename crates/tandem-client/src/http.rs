//! The gateway's HTTP API, typed. Errors keep the API's stable code.

use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::Value;
use tandem_core::message::{Action, DirectStep, Receipt, SessionClose, SessionOpen, SignedSessionOpen, Step};
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
        let mut c = Client { http, base: base.trim_end_matches('/').to_string(), chain_id: String::new(), gateway: PublicKey([0; 32]) };
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
        let r = req
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .map_err(|e| ClientError::Unreachable { url: self.base.clone(), reason: e.to_string() })?;
        let status = r.status().as_u16();
        let bytes = r.bytes().await.map_err(|e| ClientError::Unreachable { url: self.base.clone(), reason: e.to_string() })?;
        let body: Value = match serde_json::from_slice(&bytes) {
            Ok(v) => v,
            // A proxy or a crashed server may answer an error in plain text.
            Err(_) if status >= 400 => {
                return Err(ClientError::Api {
                    status,
                    code: format!("http_{status}"),
                    message: String::from_utf8_lossy(&bytes).chars().take(200).collect(),
                })
            }
            Err(e) => return Err(ClientError::Decode(e.to_string())),
        };
        if status >= 400 {
            return Err(ClientError::Api {
                status,
                code: body["code"].as_str().unwrap_or("unknown").into(),
                message: body["message"].as_str().unwrap_or_default().into(),
            });
        }
        Ok(body)
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
        self.send(self.http.post(format!("{}/v1/sessions", self.base)).json(&open)).await?;
        Ok(Session { client: self.clone(), key: owner.clone(), id: open.open.session_id(), next_seq: 1 })
    }

    /// Continue a session opened earlier (possibly by another process):
    /// the next sequence number is the number of steps the gateway holds + 1.
    pub async fn resume_session(&self, owner: &SecretKey, id: Hash) -> Result<Session, ClientError> {
        let s = self.session(&id).await?;
        let held = s["steps"].as_array().map_or(0, |a| a.len() as u64);
        // A session known from L1 only reports its last final seq.
        let next_seq = held.max(s["final_seq"].as_u64().unwrap_or(0)) + 1;
        Ok(Session { client: self.clone(), key: owner.clone(), id, next_seq })
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
    pub async fn direct(&self, open: Option<SignedSessionOpen>, step: tandem_core::message::SignedStep) -> Result<Value, ClientError> {
        self.send(self.http.post(format!("{}/v1/l1/steps", self.base)).json(&DirectStep { open, step })).await
    }

    fn step_for(&self, key: &SecretKey, session: Hash, seq: u64, package: &str, action: Action) -> tandem_core::message::SignedStep {
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
}

impl Session {
    /// Sign and send the next step.
    pub async fn step(&mut self, package: &str, action: Action) -> Result<StepReply, ClientError> {
        let signed = self.client.step_for(&self.key, self.id, self.next_seq, package, action);
        let body =
            self.client.send(self.client.http.post(format!("{}/v1/sessions/{}/steps", self.client.base, self.id)).json(&signed)).await?;
        self.next_seq += 1;
        serde_json::from_value(body).map_err(|e| ClientError::Decode(e.to_string()))
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
