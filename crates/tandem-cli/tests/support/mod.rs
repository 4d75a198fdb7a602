//! Shared harness for end-to-end tests: a real devnet of CometBFT nodes and
//! `tandem node` processes started by the test (stopped when the harness is
//! dropped, also on failure), the demo keys, and a small CometBFT RPC client.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::Value;
use tandem_core::SecretKey;
use tandem_devnet::{Devnet, DevnetSpec, Layout};

pub mod gateway;

/// A running devnet in a temporary folder.
pub struct Net {
    pub devnet: Devnet,
    pub layout: Layout,
    pub keys: BTreeMap<String, SecretKey>,
    pub http: reqwest::Client,
    _dir: tempfile::TempDir,
}

/// Milliseconds since the Unix epoch (tests sign with the real clock, as clients do).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as u64
}

impl Net {
    /// Start `n` validators (tuned profile) on 127.0.`range`.1…n.
    pub async fn start(n: usize, range: u8) -> Net {
        let dir = tempfile::tempdir().expect("tempdir");
        let cometbft = tandem_devnet::ensure_cometbft(&tandem_devnet::default_tools_dir()).expect("cometbft");
        let mut spec = DevnetSpec::new(n, dir.path().join("net"));
        spec.profile = tandem_devnet::Profile::Tuned;
        spec.base_ip = Ipv4Addr::new(127, 0, range, 1);
        spec.chain_id = format!("tandem-e2e-{range}");
        let layout = tandem_devnet::generate(&spec, &cometbft).expect("generate");
        let devnet = Devnet::start(&layout, &cometbft, env!("CARGO_BIN_EXE_tandem").as_ref()).expect("start");
        devnet.wait_for_height(2, Duration::from_secs(60)).await.expect("devnet reaches height 2");
        let keys = tandem_devnet::load_keys(&layout.keys_dir)
            .expect("keys")
            .into_iter()
            .map(|k| {
                let seed: [u8; 32] = hex::decode(&k.secret_key).expect("hex").try_into().expect("32 bytes");
                (k.name.clone(), SecretKey::from_seed(seed))
            })
            .collect();
        Net { devnet, layout, keys, http: reqwest::Client::new(), _dir: dir }
    }

    pub fn key(&self, name: &str) -> &SecretKey {
        &self.keys[name]
    }

    pub fn rpc(&self, i: usize) -> &str {
        &self.layout.nodes[i].rpc_url
    }

    /// A JSON-RPC call over GET; returns `result` or the error object.
    pub async fn call(&self, i: usize, method: &str, params: &[(&str, String)]) -> Result<Value, Value> {
        let url = format!("{}/{method}", self.rpc(i));
        let resp = self.http.get(url).query(params).timeout(Duration::from_secs(10)).send().await;
        let body: Value = match resp {
            Ok(r) => r.json().await.unwrap_or(Value::Null),
            Err(e) => return Err(Value::String(e.to_string())),
        };
        match body.get("result") {
            Some(r) => Ok(r.clone()),
            None => Err(body.get("error").cloned().unwrap_or(body)),
        }
    }

    /// `broadcast_tx_sync`: the CheckTx code and log, and the tx hash.
    pub async fn broadcast(&self, i: usize, tx: &[u8]) -> (u32, String, String) {
        let r = self.call(i, "broadcast_tx_sync", &[("tx", format!("0x{}", hex::encode(tx)))]).await.expect("broadcast");
        (
            r["code"].as_u64().expect("code") as u32,
            r["log"].as_str().unwrap_or_default().to_string(),
            r["hash"].as_str().expect("hash").to_string(),
        )
    }

    /// Wait until the transaction is in a block; returns (height, code, data as JSON, log).
    pub async fn wait_tx(&self, i: usize, hash: &str, timeout: Duration) -> (u64, u32, Value, String) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(r) = self.call(i, "tx", &[("hash", format!("0x{hash}"))]).await {
                let res = &r["tx_result"];
                let data = base64::engine::general_purpose::STANDARD.decode(res["data"].as_str().unwrap_or_default()).expect("base64");
                let data = if data.is_empty() { Value::Null } else { serde_json::from_slice(&data).expect("json") };
                return (
                    r["height"].as_str().expect("height").parse().expect("int"),
                    res["code"].as_u64().unwrap_or(0) as u32,
                    data,
                    res["log"].as_str().unwrap_or_default().to_string(),
                );
            }
            assert!(Instant::now() < deadline, "transaction {hash} not included within {timeout:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Broadcast and wait for inclusion; asserts CheckTx accepted it.
    pub async fn submit(&self, i: usize, tx: &[u8]) -> (u64, u32, Value, String) {
        let (code, log, hash) = self.broadcast(i, tx).await;
        assert_eq!(code, 0, "CheckTx refused: {log}");
        self.wait_tx(i, &hash, Duration::from_secs(30)).await
    }

    /// ABCI query on node i; returns the JSON value, or None when not found.
    pub async fn query(&self, i: usize, path: &str) -> Option<Value> {
        let r = self.call(i, "abci_query", &[("path", format!("\"{path}\""))]).await.expect("abci_query");
        let resp = &r["response"];
        if resp["code"].as_u64().unwrap_or(0) != 0 {
            return None;
        }
        let bytes = base64::engine::general_purpose::STANDARD.decode(resp["value"].as_str()?).expect("base64");
        Some(serde_json::from_slice(&bytes).expect("json"))
    }

    pub async fn height(&self, i: usize) -> Option<u64> {
        let r = self.call(i, "status", &[]).await.ok()?;
        r["sync_info"]["latest_block_height"].as_str()?.parse().ok()
    }

    /// (block hash, app hash) of block `h` on node i.
    pub async fn block_hashes(&self, i: usize, h: u64) -> (String, String) {
        let r = self.call(i, "block", &[("height", h.to_string())]).await.expect("block");
        (
            r["block_id"]["hash"].as_str().expect("hash").to_string(),
            r["block"]["header"]["app_hash"].as_str().expect("app hash").to_string(),
        )
    }

    /// Every node in `nodes` has identical block and app hashes at every
    /// height from 1 to `upto`. Returns the number of heights compared.
    pub async fn assert_agreement(&self, nodes: &[usize], upto: u64) -> u64 {
        for h in 1..=upto {
            let first = self.block_hashes(nodes[0], h).await;
            for &i in &nodes[1..] {
                assert_eq!(self.block_hashes(i, h).await, first, "node {i} disagrees with node {} at height {h}", nodes[0]);
            }
        }
        upto
    }

    /// Wait until every node in `nodes` is at height ≥ h.
    pub async fn wait_height(&self, nodes: &[usize], h: u64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let mut all = true;
            for &i in nodes {
                if self.height(i).await.unwrap_or(0) < h {
                    all = false;
                }
            }
            if all {
                return;
            }
            assert!(Instant::now() < deadline, "nodes {nodes:?} did not reach height {h} within {timeout:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Wait until a process check holds (e.g. a node exited by itself).
    pub async fn wait_until(&self, what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        while !check() {
            assert!(Instant::now() < deadline, "timed out waiting for: {what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
