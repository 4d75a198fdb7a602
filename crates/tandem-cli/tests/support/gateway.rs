//! A gateway process for end-to-end tests: `tandem gateway` started by the
//! test against a devnet, killed (SIGKILL) and restarted at will, stopped when
//! dropped. Plus a small JSON client and signing helpers.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tandem_core::crypto::{Domain, Hash};
use tandem_core::message::{Action, SessionClose, SessionOpen, SignedSessionOpen, SignedStep, Step};
use tandem_core::model::{Manifest, ManifestLine};
use tandem_core::SecretKey;

use super::{now_ms, Net};

pub struct GatewayProc {
    child: Option<Child>,
    pub url: String,
    data: PathBuf,
    args: Vec<String>,
}

impl GatewayProc {
    pub fn start(net: &Net, data: &Path, listen: &str, extra: &[&str]) -> GatewayProc {
        let mut args = vec!["gateway".to_string()];
        for n in &net.layout.nodes {
            args.push("--l1".into());
            args.push(n.rpc_url.clone());
        }
        args.extend([
            "--data".into(),
            data.display().to_string(),
            "--key".into(),
            net.layout.key_path("gateway-1").display().to_string(),
            "--listen".into(),
            listen.into(),
        ]);
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut g = GatewayProc { child: None, url: format!("http://{listen}"), data: data.to_path_buf(), args };
        g.spawn();
        g
    }

    fn spawn(&mut self) {
        std::fs::create_dir_all(&self.data).expect("data dir");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.data.join("gateway.log")).expect("log");
        let child = Command::new(env!("CARGO_BIN_EXE_tandem"))
            .args(&self.args)
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("start gateway");
        self.child = Some(child);
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data.join("gateway.log")).unwrap_or_default()
    }

    pub async fn wait_ready(&self, http: &reqwest::Client) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = http.get(format!("{}/healthz", self.url)).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "gateway did not come up; log:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for GatewayProc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// POST JSON; returns (status, body).
pub async fn post(http: &reqwest::Client, url: &str, body: &Value) -> (u16, Value) {
    let r = http.post(url).json(body).timeout(Duration::from_secs(40)).send().await.expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// GET JSON; returns (status, body).
pub async fn get(http: &reqwest::Client, url: &str) -> (u16, Value) {
    let r = http.get(url).timeout(Duration::from_secs(10)).send().await.expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

pub fn open(chain: &str, owner: &SecretKey, gateway: Option<&SecretKey>, nonce: u64) -> SignedSessionOpen {
    SessionOpen { chain_id: chain.into(), owner: owner.public(), gateway: gateway.map(|g| g.public()), nonce, client_time_ms: now_ms() }
        .sign(owner)
}

pub fn step(chain: &str, key: &SecretKey, session: Hash, seq: u64, package: &str, action: Action) -> SignedStep {
    Step { chain_id: chain.into(), session, seq, actor: key.public(), package_id: package.into(), action, client_time_ms: now_ms() }
        .sign(key)
}

pub fn register(chain: &str, supplier: &SecretKey, package: &str) -> Action {
    let manifest = Manifest {
        chain_id: chain.into(),
        package_id: package.into(),
        delivery_note_id: format!("DN-{package}"),
        lines: vec![ManifestLine { item_id: "SKU-1".into(), description: "valves".into(), quantity: 12 }],
    };
    let manifest_signature = supplier.sign(Domain::Manifest, &manifest);
    Action::Register { manifest, manifest_signature }
}

/// A client of one gateway for one chain.
pub struct Client<'a> {
    pub http: &'a reqwest::Client,
    pub url: String,
    pub chain: String,
    pub gateway: SecretKey,
}

impl Client<'_> {
    pub async fn open(&self, owner: &SecretKey, nonce: u64) -> Hash {
        let o = open(&self.chain, owner, Some(&self.gateway), nonce);
        let (status, body) = post(self.http, &format!("{}/v1/sessions", self.url), &json!(o)).await;
        assert_eq!(status, 201, "{body}");
        o.open.session_id()
    }

    pub async fn step(&self, key: &SecretKey, session: Hash, seq: u64, package: &str, action: Action) -> (u16, Value) {
        let s = step(&self.chain, key, session, seq, package, action);
        post(self.http, &format!("{}/v1/sessions/{session}/steps", self.url), &json!(s)).await
    }

    /// The owner's signed close of `session` after step `last_seq`.
    pub async fn commit(&self, owner: &SecretKey, session: Hash, last_seq: u64) -> (u16, Value) {
        let close = SessionClose { chain_id: self.chain.clone(), session, owner: owner.public(), last_seq }.sign(owner);
        post(self.http, &format!("{}/v1/sessions/{session}/commit", self.url), &json!(close)).await
    }

    /// Wait until the session's first `n` steps are final (a checkpoint
    /// leaves the session open).
    pub async fn wait_final_steps(&self, session: Hash, n: usize, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.session(session).await;
            let steps = s["steps"].as_array().map(|a| a.iter().filter(|st| st["state"] == "final").count()).unwrap_or(0);
            if steps >= n {
                return s;
            }
            assert!(Instant::now() < deadline, "session {session}: {n} steps not final within {timeout:?}: {s}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn session(&self, session: Hash) -> Value {
        get(self.http, &format!("{}/v1/sessions/{session}", self.url)).await.1
    }

    /// Wait until the session reaches `state` (finalized / rejected).
    pub async fn wait_state(&self, session: Hash, state: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.session(session).await;
            if s["status"]["state"] == state {
                return s;
            }
            assert!(Instant::now() < deadline, "session {session} not {state} within {timeout:?}: {s}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
