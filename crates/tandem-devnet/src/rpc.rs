//! The little of CometBFT's RPC that supervising a devnet needs: the latest height.
//!
//! A plain HTTP GET of `/status` is enough here; the full `tendermint-rpc` client would pull
//! in version negotiation this crate does not need.

use std::time::Duration;

use anyhow::Context;

/// A client with short timeouts: a node that does not answer in time counts as not ready.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .connect_timeout(Duration::from_secs(1))
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

/// `latest_block_height` from `GET <rpc_url>/status`.
pub async fn latest_height(client: &reqwest::Client, rpc_url: &str) -> anyhow::Result<u64> {
    let url = format!("{}/status", rpc_url.trim_end_matches('/'));
    let body: serde_json::Value = client
        .get(&url)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?
        .error_for_status()?
        .json()
        .await
        .with_context(|| format!("decoding {url}"))?;
    // CometBFT encodes 64-bit integers as JSON strings.
    let h = body
        .pointer("/result/sync_info/latest_block_height")
        .and_then(|v| v.as_str())
        .with_context(|| format!("{url}: no result.sync_info.latest_block_height in {body}"))?;
    h.parse().with_context(|| format!("{url}: bad height {h:?}"))
}
