//! Harness for the HTTP API tests: a gateway over a `FakeL1`, driven
//! in-process through its axum router with `tower::ServiceExt::oneshot`.
//!
//! The gateway decides with its real clock, so every open request and step
//! here is signed with the current time (the testkit builders use a fixed
//! time, which the gateway would refuse as stale).

#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt as _;
use serde_json::Value;
use tandem_core::message::{Action, SessionClose, SessionOpen, SignedSessionClose, SignedSessionOpen, SignedStep, Step};
use tandem_core::testkit::{Cast, CHAIN_ID};
use tandem_core::{Hash, PublicKey, SecretKey};
use tandem_gateway::api;
use tandem_gateway::service::{now_ms, Gateway, GatewayConfig};
use tandem_rpc::FakeL1;
use tower::ServiceExt as _;

/// How long any single wait in a test may take before it fails.
pub const WAIT: Duration = Duration::from_secs(10);

/// A running gateway, its L1 and its router.
pub struct Harness {
    pub cast: Cast,
    pub l1: Arc<FakeL1>,
    pub gw: Gateway,
    pub app: Router,
    pub config: GatewayConfig,
    last_block_ms: AtomicU64,
    _dir: tempfile::TempDir,
}

/// A JSON answer: status, parsed body (`Null` when not JSON) and raw text.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub json: Value,
    pub text: String,
    pub content_type: String,
    /// The `Retry-After` header, when there is one.
    pub retry_after: Option<String>,
}

impl Answer {
    /// Assert an error answer: status and stable code, and a message.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status.as_u16(), status, "{self:?}");
        assert_eq!(self.json["code"], code, "{self:?}");
        assert!(self.json["message"].as_str().is_some_and(|m| !m.is_empty()), "an error carries a message: {self:?}");
        assert!(self.content_type.starts_with("application/json"), "{self:?}");
    }
}

impl Harness {
    /// A gateway with a 5 ms tick and the given changes to its config, over
    /// a fake L1 that has committed block 1 (the genesis).
    pub async fn start(configure: impl FnOnce(&mut GatewayConfig)) -> Harness {
        let cast = Cast::new();
        let l1 = Arc::new(FakeL1::new(CHAIN_ID, cast.genesis()).expect("fake L1"));
        // The genesis writes are committed with block 1, as on CometBFT:
        // before it, nobody is registered.
        let first = now_ms();
        l1.produce_block(first);
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = GatewayConfig::new(dir.path().to_path_buf(), cast.gateway.clone());
        config.tick = Duration::from_millis(5);
        configure(&mut config);
        let gw = Gateway::start(config.clone(), l1.clone()).await.expect("gateway starts");
        assert_eq!(gw.shared.replica.height(), 1, "the gateway caught up with block 1 at start");
        let app = api::router(gw.shared.clone());
        Harness { cast, l1, gw, app, config, last_block_ms: AtomicU64::new(first), _dir: dir }
    }

    /// Stop the gateway (waiting until its tasks let go of its state, so the
    /// WAL's writer has finished and the replica is closed) and start a new
    /// one on the same data folder and L1, as after a crash of the process.
    pub async fn restart(self) -> Harness {
        let Harness { cast, l1, gw, app, config, last_block_ms, _dir } = self;
        let shared = Arc::downgrade(&gw.shared);
        drop((gw, app));
        let deadline = tokio::time::Instant::now() + WAIT;
        while shared.upgrade().is_some() {
            assert!(tokio::time::Instant::now() < deadline, "the gateway's tasks did not stop");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // The last holder may still be dropping the state on another thread
        // (the WAL's writer finishes its queue before the replica closes).
        let gw = loop {
            match Gateway::start(config.clone(), l1.clone()).await {
                Ok(gw) => break gw,
                Err(e) if format!("{e:#}").contains("already open") && tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(e) => panic!("the gateway does not restart: {e:#}"),
            }
        };
        let app = api::router(gw.shared.clone());
        Harness { cast, l1, gw, app, config, last_block_ms, _dir }
    }

    /// Produce one L1 block with a strictly increasing block time.
    pub fn block(&self) -> u64 {
        let t = now_ms().max(self.last_block_ms.load(Ordering::SeqCst) + 1);
        self.last_block_ms.store(t, Ordering::SeqCst);
        self.l1.produce_block(t).height
    }

    pub async fn request(&self, method: &str, uri: &str, content_type: Option<&str>, body: Vec<u8>) -> Answer {
        self.request_from(None, method, uri, content_type, body).await
    }

    /// A request from the peer address `peer` (as `axum::serve` with connect
    /// info passes it), or from no known address.
    pub async fn request_from(
        &self,
        peer: Option<SocketAddr>,
        method: &str,
        uri: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Answer {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(ct) = content_type {
            req = req.header(header::CONTENT_TYPE, ct);
        }
        let mut req = req.body(Body::from(body)).expect("request");
        if let Some(peer) = peer {
            req.extensions_mut().insert(ConnectInfo(peer));
        }
        let resp = self.app.clone().oneshot(req).await.expect("infallible");
        let status = resp.status();
        let content_type = resp.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        let retry_after = resp.headers().get(header::RETRY_AFTER).and_then(|v| v.to_str().ok()).map(str::to_string);
        let bytes =
            tokio::time::timeout(WAIT, resp.into_body().collect()).await.expect("the body arrives in time").expect("body").to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Answer { status, json, text, content_type, retry_after }
    }

    /// POST JSON from the peer address `peer`.
    pub async fn post_from(&self, peer: SocketAddr, uri: &str, body: &impl serde::Serialize) -> Answer {
        self.request_from(Some(peer), "POST", uri, Some("application/json"), serde_json::to_vec(body).expect("json")).await
    }

    pub async fn get(&self, uri: &str) -> Answer {
        self.request("GET", uri, None, Vec::new()).await
    }

    pub async fn post(&self, uri: &str, body: &impl serde::Serialize) -> Answer {
        self.request("POST", uri, Some("application/json"), serde_json::to_vec(body).expect("json")).await
    }

    pub async fn post_raw(&self, uri: &str, body: &str) -> Answer {
        self.request("POST", uri, Some("application/json"), body.as_bytes().to_vec()).await
    }

    /// Open a session at this gateway; asserts 201.
    pub async fn open(&self, owner: &SecretKey, nonce: u64) -> Hash {
        let open = self.open_req(owner, nonce);
        let a = self.post("/v1/sessions", &open).await;
        assert_eq!(a.status, StatusCode::CREATED, "{a:?}");
        let id = open.open.session_id();
        assert_eq!(a.json["session_id"], id.to_hex());
        id
    }

    /// A signed open request for this gateway, timed now.
    pub fn open_req(&self, owner: &SecretKey, nonce: u64) -> SignedSessionOpen {
        open_req(owner, Some(self.cast.gateway.public()), nonce)
    }

    pub async fn step(&self, signed: &SignedStep) -> Answer {
        self.post(&format!("/v1/sessions/{}/steps", signed.step.session), signed).await
    }

    /// Post a step that must be accepted; returns the reply.
    pub async fn ok_step(&self, signed: &SignedStep) -> Value {
        let a = self.step(signed).await;
        assert_eq!(a.status, StatusCode::OK, "{a:?}");
        a.json
    }

    /// The owner's signed close of `session` after its last step at the
    /// gateway (0 when the gateway does not know it), posted as a commit.
    pub async fn commit(&self, owner: &SecretKey, session: Hash) -> Answer {
        let known = self.get(&format!("/v1/sessions/{session}")).await;
        let last_seq = known.json["last_seq"].as_u64().unwrap_or(0);
        self.post(&format!("/v1/sessions/{session}/commit"), &close(owner, session, last_seq)).await
    }

    pub async fn session(&self, session: Hash) -> Value {
        let a = self.get(&format!("/v1/sessions/{session}")).await;
        assert_eq!(a.status, StatusCode::OK, "{a:?}");
        a.json
    }

    /// Poll the session until its state is `state`, producing a block
    /// between polls when `blocks` is set. Bounded by [`WAIT`].
    pub async fn wait_state(&self, session: Hash, state: &str, blocks: bool) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let s = self.session(session).await;
            if s["status"]["state"] == state {
                return s;
            }
            assert!(tokio::time::Instant::now() < deadline, "session {session} never became {state}: {s}");
            if blocks {
                self.block();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Poll `GET /v1/status` until `pred` holds. Bounded by [`WAIT`].
    pub async fn wait_status(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let s = self.get("/v1/status").await;
            assert_eq!(s.status, StatusCode::OK, "{s:?}");
            if pred(&s.json) {
                return s.json;
            }
            assert!(tokio::time::Instant::now() < deadline, "status never showed {what}: {}", s.json);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A signed open request timed now (`gateway: None` for direct L1 steps).
pub fn open_req(owner: &SecretKey, gateway: Option<PublicKey>, nonce: u64) -> SignedSessionOpen {
    SessionOpen { chain_id: CHAIN_ID.into(), owner: owner.public(), gateway, nonce, client_time_ms: now_ms() }.sign(owner)
}

/// An owner's signed close of `session` after step `last_seq`.
pub fn close(owner: &SecretKey, session: Hash, last_seq: u64) -> SignedSessionClose {
    SessionClose { chain_id: CHAIN_ID.into(), session, owner: owner.public(), last_seq }.sign(owner)
}

/// A signed step timed now.
pub fn step(actor: &SecretKey, session: Hash, seq: u64, package: &str, action: Action) -> SignedStep {
    Step { chain_id: CHAIN_ID.into(), session, seq, actor: actor.public(), package_id: package.into(), action, client_time_ms: now_ms() }
        .sign(actor)
}
