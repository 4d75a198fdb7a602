//! [`CometRpc`]: the real [`L1`], over CometBFT's JSON-RPC.
//!
//! Plain JSON-RPC over `reqwest` (POST to the node's root) and a websocket
//! from `tokio-tungstenite`, rather than `tendermint-rpc`: we need five
//! methods and a handful of fields, and owning the transport gives what the
//! gateway depends on and `tendermint-rpc` 0.40 makes awkward: a bounded
//! timeout on every request, a clean split between "nobody answered" (fail
//! over, then [`L1Error::Unavailable`]) and "a node answered with an error"
//! (the mempool-cache case in particular), lenient decoding that turns odd
//! content into [`L1Error::Rpc`] instead of refusing a whole block type, and
//! no CometBFT version negotiation to pin.
//!
//! Fail-over: every request starts at the last URL that answered and tries the
//! others in order, so one dead validator costs one refused connection, once.
//!
//! Heights: one background task per client keeps a websocket subscription to
//! `tm.event='NewBlock'` and publishes each height into a watch channel. While
//! it has no subscription it polls `/status` every 250 ms and reconnects with
//! backoff (100 ms doubling to 2 s), so the channel keeps moving while any
//! validator answers. The task is aborted when the client is dropped.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use futures::{SinkExt as _, StreamExt as _};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::{time_ms, Broadcast, L1Block, L1Error, L1};

/// Timeouts and intervals of a [`CometRpc`]. The defaults suit a gateway next
/// to its validators.
#[derive(Clone, Debug)]
pub struct CometRpcConfig {
    /// Whole-request bound for one HTTP call to one validator.
    pub request_timeout: Duration,
    /// TCP connect bound (HTTP and websocket), so a black-holed host is
    /// skipped quickly.
    pub connect_timeout: Duration,
    /// `/status` polling interval while no websocket is connected.
    pub poll_interval: Duration,
    /// First reconnect delay of the websocket.
    pub backoff_min: Duration,
    /// Largest reconnect delay of the websocket.
    pub backoff_max: Duration,
    /// A subscription silent this long is presumed dead and replaced.
    /// CometBFT pings every ~27 s and a live chain makes blocks far more often.
    pub ws_idle_timeout: Duration,
}

impl Default for CometRpcConfig {
    fn default() -> Self {
        CometRpcConfig {
            request_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(1),
            poll_interval: Duration::from_millis(250),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(2),
            ws_idle_timeout: Duration::from_secs(60),
        }
    }
}

/// Why a [`CometRpc`] cannot be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("cannot build the CometBFT client: {0}")]
pub struct ConfigError(String);

/// The real [`L1`]: CometBFT validators' RPC, with fail-over between them.
pub struct CometRpc {
    inner: Arc<Inner>,
    /// Stops the height task when the client goes away.
    _watcher: AbortOnDrop,
}

impl std::fmt::Debug for CometRpc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CometRpc")
            .field("urls", &self.inner.urls)
            .field("preferred", &self.inner.preferred.load(Ordering::Relaxed))
            .finish()
    }
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

struct Inner {
    /// Base URLs without a trailing slash, in fail-over order.
    urls: Vec<String>,
    http: reqwest::Client,
    config: CometRpcConfig,
    /// Index of the last URL that answered: where the next request starts.
    preferred: AtomicUsize,
    next_id: AtomicU64,
    heights: watch::Sender<u64>,
    /// The last blocks the `NewBlock` subscription delivered whole, so that
    /// the follower's `block(h)` right after the notification needs no request.
    recent: std::sync::Mutex<std::collections::VecDeque<L1Block>>,
}

/// How many subscription-delivered blocks are kept for `block(h)`.
const RECENT_BLOCKS: usize = 32;

/// One validator's failure to give a JSON-RPC answer.
enum Miss {
    /// Could not connect, timed out, connection dropped.
    Transport(String),
    /// Answered, but not with a JSON-RPC response.
    BadContent(String),
}

/// Whether a JSON-RPC error from one validator is final or worth asking the
/// next: reads fail over (a lagging node may not have a block yet), a
/// broadcast does not (its error is CheckTx's verdict).
#[derive(Clone, Copy, PartialEq, Eq)]
enum OnError {
    Return,
    TryNext,
}

impl CometRpc {
    /// A client over `urls` (`http://host:port`) with default timeouts. Must
    /// be called inside a Tokio runtime: it starts the height task.
    pub fn new<S: Into<String>>(urls: impl IntoIterator<Item = S>) -> Result<CometRpc, ConfigError> {
        CometRpc::with_config(urls, CometRpcConfig::default())
    }

    /// A client over `urls` with the given timeouts.
    pub fn with_config<S: Into<String>>(urls: impl IntoIterator<Item = S>, config: CometRpcConfig) -> Result<CometRpc, ConfigError> {
        let urls: Vec<String> = urls.into_iter().map(|u| u.into().trim_end_matches('/').to_string()).collect();
        if urls.is_empty() {
            return Err(ConfigError("no validator RPC URL given".into()));
        }
        if let Some(bad) = urls.iter().find(|u| ws_url(u).is_none()) {
            return Err(ConfigError(format!("{bad:?} is not an http:// or https:// URL")));
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| ConfigError("must be created inside a Tokio runtime".into()))?;
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .connect_timeout(config.connect_timeout)
            .build()
            .map_err(|e| ConfigError(e.to_string()))?;
        let (heights, _) = watch::channel(0);
        let inner = Arc::new(Inner {
            urls,
            http,
            config,
            preferred: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
            heights,
            recent: std::sync::Mutex::new(std::collections::VecDeque::new()),
        });
        let watcher = AbortOnDrop(runtime.spawn(watch_heights(Arc::clone(&inner))));
        Ok(CometRpc { inner, _watcher: watcher })
    }

    /// Heights of the blocks kept from the `NewBlock` subscription, which
    /// [`L1::block`] answers without a request.
    pub fn recent_heights(&self) -> Vec<u64> {
        self.inner.recent.lock().expect("recent blocks lock").iter().map(|b| b.height).collect()
    }

    /// The configured validator RPC URLs.
    pub fn urls(&self) -> &[String] {
        &self.inner.urls
    }
}

#[async_trait::async_trait]
impl L1 for CometRpc {
    async fn broadcast_tx_sync(&self, tx: Vec<u8>) -> Result<Broadcast, L1Error> {
        let tx = base64::engine::general_purpose::STANDARD.encode(tx);
        let r = self.inner.call("broadcast_tx_sync", json!({ "tx": tx }), OnError::Return).await?;
        Ok(Broadcast {
            code: u32::try_from(int(&r, "/code")?).map_err(|_| bad("/code", &r))?,
            log: r.get("log").and_then(Value::as_str).unwrap_or_default().to_string(),
            hash: string(&r, "/hash")?.to_ascii_uppercase(),
        })
    }

    async fn latest_height(&self) -> Result<u64, L1Error> {
        self.inner.latest_height().await
    }

    async fn block(&self, height: u64) -> Result<L1Block, L1Error> {
        if let Some(b) = self.inner.recent_block(height) {
            return Ok(b);
        }
        let r = self.inner.call("block", json!({ "height": height.to_string() }), OnError::TryNext).await?;
        parse_block(&r, height)
    }

    async fn genesis(&self) -> Result<(String, Vec<u8>), L1Error> {
        let r = self.inner.call("genesis", json!({}), OnError::TryNext).await?;
        let chain_id = string(&r, "/genesis/chain_id")?.to_string();
        // A genesis without app_state is an empty one (`Genesis::from_json`
        // reads empty bytes as such).
        let app_state = match r.pointer("/genesis/app_state") {
            None | Some(Value::Null) => Vec::new(),
            Some(v) => serde_json::to_vec(v).map_err(|e| L1Error::Rpc(e.to_string()))?,
        };
        Ok((chain_id, app_state))
    }

    fn subscribe_heights(&self) -> watch::Receiver<u64> {
        self.inner.heights.subscribe()
    }

    async fn validators(&self) -> Vec<(String, Option<u64>)> {
        let asks = self.inner.urls.iter().map(|url| async move {
            let h = match self.inner.call_one(url, "status", json!({})).await {
                Ok(Ok(r)) => status_height(&r).ok(),
                _ => None,
            };
            (url.clone(), h)
        });
        futures::future::join_all(asks).await
    }

    async fn app_hashes(&self, height: u64) -> Vec<(String, Option<String>)> {
        let asks = self.inner.urls.iter().map(|url| async move {
            let hash = match self.inner.call_one(url, "commit", json!({ "height": height.to_string() })).await {
                Ok(Ok(r)) => string(&r, "/signed_header/header/app_hash").ok().map(str::to_ascii_uppercase),
                _ => None,
            };
            (url.clone(), hash)
        });
        futures::future::join_all(asks).await
    }
}

impl Inner {
    async fn latest_height(&self) -> Result<u64, L1Error> {
        let r = self.call("status", json!({}), OnError::TryNext).await?;
        status_height(&r)
    }

    /// A block the subscription delivered, if it is still kept.
    fn recent_block(&self, height: u64) -> Option<L1Block> {
        self.recent.lock().expect("recent blocks lock").iter().find(|b| b.height == height).cloned()
    }

    /// Keep a block the subscription delivered (the newest [`RECENT_BLOCKS`]).
    fn remember(&self, block: L1Block) {
        let mut recent = self.recent.lock().expect("recent blocks lock");
        if recent.iter().any(|b| b.height == block.height) {
            return;
        }
        recent.push_back(block);
        while recent.len() > RECENT_BLOCKS {
            recent.pop_front();
        }
    }

    /// Raise the published height; never lower it (another validator may lag).
    fn publish(&self, height: u64) {
        self.heights.send_if_modified(|h| {
            let newer = height > *h;
            if newer {
                *h = height;
            }
            newer
        });
    }

    /// Call `method` on the first validator that answers, starting at the
    /// last one that did.
    async fn call(&self, method: &str, params: Value, on_error: OnError) -> Result<Value, L1Error> {
        let n = self.urls.len();
        let start = self.preferred.load(Ordering::Relaxed) % n;
        let mut unreachable = Vec::new();
        let mut answered_badly = None;
        for k in 0..n {
            let i = (start + k) % n;
            match self.call_one(&self.urls[i], method, params.clone()).await {
                Ok(answer) => {
                    self.preferred.store(i, Ordering::Relaxed);
                    match answer {
                        Ok(result) => return Ok(result),
                        Err(error) => {
                            let error = rpc_error(&error);
                            if on_error == OnError::Return {
                                return Err(error);
                            }
                            answered_badly = Some(error);
                        }
                    }
                }
                Err(Miss::Transport(e)) => unreachable.push(e),
                Err(Miss::BadContent(e)) => answered_badly = Some(L1Error::Rpc(e)),
            }
        }
        Err(answered_badly.unwrap_or_else(|| L1Error::Unavailable(unreachable.join("; "))))
    }

    /// One JSON-RPC request to one validator: `Ok(Ok(result))`,
    /// `Ok(Err(error object))`, or why there was no answer.
    async fn call_one(&self, url: &str, method: &str, params: Value) -> Result<Result<Value, Value>, Miss> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let body = json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params });
        let resp = self.http.post(url).json(&body).send().await.map_err(|e| Miss::Transport(format!("{url}: {e}")))?;
        let status = resp.status();
        if status == reqwest::StatusCode::PAYLOAD_TOO_LARGE {
            // A proxy in front of the node refused the body outright.
            return Ok(Err(json!({ "message": format!("HTTP {status}"), "data": "request body too large" })));
        }
        let bytes = resp.bytes().await.map_err(|e| Miss::Transport(format!("{url}: {e}")))?;
        // CometBFT sends JSON-RPC errors with HTTP 500, so the status alone
        // says nothing: the body decides.
        let mut reply: Value =
            serde_json::from_slice(&bytes).map_err(|_| Miss::BadContent(format!("{url}: HTTP {status} without a JSON-RPC body")))?;
        if let Some(error) = reply.get_mut("error").filter(|e| !e.is_null()) {
            return Ok(Err(error.take()));
        }
        match reply.get_mut("result") {
            Some(result) => Ok(Ok(result.take())),
            None => Err(Miss::BadContent(format!("{url}: JSON-RPC reply to {method} has neither result nor error"))),
        }
    }
}

/// Map a JSON-RPC error object. CometBFT reports a transaction its mempool
/// cache has seen as an internal error whose data reads "tx already exists in
/// cache"; that one the gateway treats as success-so-far.
fn rpc_error(error: &Value) -> L1Error {
    let message = error.get("message").and_then(Value::as_str).unwrap_or_default();
    let data = error.get("data").and_then(Value::as_str).unwrap_or_default();
    if data.contains("already exists in cache") || message.contains("already exists in cache") {
        return L1Error::AlreadyInMempool;
    }
    // CometBFT's RPC server reads the body through Go's `MaxBytesReader`
    // ("http: request body too large"); its mempool refuses a transaction over
    // `max_tx_bytes` with "tx too large. Max size is …".
    let text = format!("{message} {data}");
    if text.contains("request body too large") || text.contains("tx too large") {
        return L1Error::TooLarge(text.trim().to_string());
    }
    match (message, data) {
        ("", "") => L1Error::Rpc(error.to_string()),
        (m, "") => L1Error::Rpc(m.to_string()),
        ("", d) => L1Error::Rpc(d.to_string()),
        (m, d) => L1Error::Rpc(format!("{m}: {d}")),
    }
}

fn bad(pointer: &str, v: &Value) -> L1Error {
    let mut shown = v.to_string();
    if shown.len() > 200 {
        let mut cut = 200;
        while !shown.is_char_boundary(cut) {
            cut -= 1;
        }
        shown.truncate(cut);
        shown.push('…');
    }
    L1Error::Rpc(format!("missing or malformed {pointer} in {shown}"))
}

fn string<'a>(v: &'a Value, pointer: &str) -> Result<&'a str, L1Error> {
    v.pointer(pointer).and_then(Value::as_str).ok_or_else(|| bad(pointer, v))
}

/// An integer that CometBFT may encode as a JSON number or (64-bit ones) as
/// a decimal string.
fn int(v: &Value, pointer: &str) -> Result<u64, L1Error> {
    match v.pointer(pointer) {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.parse().ok(),
        _ => None,
    }
    .ok_or_else(|| bad(pointer, v))
}

fn status_height(r: &Value) -> Result<u64, L1Error> {
    int(r, "/sync_info/latest_block_height")
}

fn parse_block(r: &Value, height: u64) -> Result<L1Block, L1Error> {
    let got = int(r, "/block/header/height")?;
    if got != height {
        return Err(L1Error::Rpc(format!("asked for block {height}, got block {got}")));
    }
    let time = string(r, "/block/header/time")?;
    let time =
        tendermint::Time::parse_from_rfc3339(time).map_err(|e| L1Error::Rpc(format!("block {height}: bad header time {time:?}: {e}")))?;
    let app_hash = string(r, "/block/header/app_hash")?;
    let app_hash_before = hex::decode(app_hash).map_err(|e| L1Error::Rpc(format!("block {height}: bad app hash {app_hash:?}: {e}")))?;
    // An empty block has `"txs": null` or no list at all.
    let txs = match r.pointer("/block/data/txs") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(txs)) => txs
            .iter()
            .map(|tx| {
                tx.as_str()
                    .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
                    .ok_or_else(|| L1Error::Rpc(format!("block {height}: a transaction is not base64")))
            })
            .collect::<Result<_, _>>()?,
        Some(other) => return Err(bad("/block/data/txs", other)),
    };
    Ok(L1Block {
        height,
        time_ms: time_ms(time),
        chain_id: string(r, "/block/header/chain_id")?.to_string(),
        txs,
        app_hash_before,
        block_hash: string(r, "/block_id/hash")?.to_ascii_uppercase(),
    })
}

/// `http://host:port` → `ws://host:port/websocket` (https → wss).
fn ws_url(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = match scheme {
        "http" => "ws",
        "https" => "wss",
        _ => return None,
    };
    (!rest.is_empty()).then(|| format!("{scheme}://{rest}/websocket"))
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The height task: subscribe, follow, and while that is impossible poll.
async fn watch_heights(inner: Arc<Inner>) {
    loop {
        // Disconnected: poll `/status` so the channel keeps moving, while
        // reconnecting with backoff; whichever finishes first is the connect.
        let poll = async {
            loop {
                if let Ok(h) = inner.latest_height().await {
                    inner.publish(h);
                }
                tokio::time::sleep(inner.config.poll_interval).await;
            }
        };
        let connect = async {
            let mut backoff = inner.config.backoff_min;
            loop {
                if let Some(ws) = subscribe_any(&inner).await {
                    return ws;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(inner.config.backoff_max);
            }
        };
        let (ws, url) = tokio::select! {
            connected = connect => connected,
            () = poll => continue,
        };
        tracing::debug!(%url, "following new blocks over the websocket");
        // Blocks committed between the last poll and the subscription would
        // otherwise go unannounced until the next one.
        if let Ok(h) = inner.latest_height().await {
            inner.publish(h);
        }
        follow(&inner, ws).await;
        tracing::debug!(%url, "new-block subscription lost; polling until it is back");
    }
}

/// Connect and subscribe to the first validator that accepts, starting at the
/// one requests currently prefer.
async fn subscribe_any(inner: &Inner) -> Option<(Ws, String)> {
    let n = inner.urls.len();
    let start = inner.preferred.load(Ordering::Relaxed) % n;
    for k in 0..n {
        let url = ws_url(&inner.urls[(start + k) % n])?;
        match subscribe(inner, &url).await {
            Ok(ws) => return Some((ws, url)),
            Err(e) => tracing::trace!(%url, error = %e, "cannot subscribe to new blocks"),
        }
    }
    None
}

async fn subscribe(inner: &Inner, url: &str) -> Result<Ws, String> {
    let bound = inner.config.connect_timeout + inner.config.request_timeout;
    let connect = async {
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await.map_err(|e| e.to_string())?;
        let request = json!({
            "jsonrpc": "2.0",
            "id": 0,
            "method": "subscribe",
            "params": { "query": "tm.event='NewBlock'" },
        });
        ws.send(Message::text(request.to_string())).await.map_err(|e| e.to_string())?;
        // Wait for the acknowledgement so a refused subscription (too many
        // clients, say) counts as a failure to connect.
        while let Some(msg) = ws.next().await {
            let Message::Text(text) = msg.map_err(|e| e.to_string())? else {
                continue;
            };
            let reply: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
            if let Some(error) = reply.get("error").filter(|e| !e.is_null()) {
                return Err(format!("subscription refused: {error}"));
            }
            if reply.get("result").is_some() {
                return Ok(ws);
            }
        }
        Err("closed before acknowledging the subscription".to_string())
    };
    tokio::time::timeout(bound, connect).await.map_err(|_| "timed out".to_string())?
}

/// Publish the height of every NewBlock event until the connection ends.
async fn follow(inner: &Inner, mut ws: Ws) {
    loop {
        let msg = match tokio::time::timeout(inner.config.ws_idle_timeout, ws.next()).await {
            Err(_) | Ok(None) | Ok(Some(Err(_))) => return,
            Ok(Some(Ok(msg))) => msg,
        };
        match msg {
            Message::Text(text) => {
                let Ok(event) = serde_json::from_str::<Value>(&text) else {
                    continue;
                };
                // CometBFT cancels a subscription with an error message (the
                // node shutting down, a client too slow): reconnect.
                if event.get("error").is_some_and(|e| !e.is_null()) {
                    return;
                }
                if let Ok(h) = int(&event, "/result/data/value/block/header/height") {
                    // The event carries the whole block (and its id): keep it,
                    // so the follower does not fetch it again.
                    if let Some(value) = event.pointer("/result/data/value") {
                        match parse_block(value, h) {
                            Ok(block) => inner.remember(block),
                            Err(e) => tracing::debug!(height = h, error = %e, "NewBlock event without a usable block; it will be fetched"),
                        }
                    }
                    inner.publish(h);
                }
            }
            Message::Close(_) => return,
            // Pings are answered by tungstenite as we read.
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn websocket_url_from_rpc_url() {
        assert_eq!(ws_url("http://127.0.0.1:26657").as_deref(), Some("ws://127.0.0.1:26657/websocket"));
        assert_eq!(ws_url("https://node.example:443").as_deref(), Some("wss://node.example:443/websocket"));
        assert_eq!(ws_url("tcp://127.0.0.1:26657"), None);
        assert_eq!(ws_url("127.0.0.1:26657"), None);
    }

    #[test]
    fn cache_error_is_already_in_mempool() {
        let e = json!({ "code": -32603, "message": "Internal error", "data": "tx already exists in cache" });
        assert_eq!(rpc_error(&e), L1Error::AlreadyInMempool);
        let e = json!({ "code": -32603, "message": "Internal error", "data": "mempool is full" });
        assert_eq!(rpc_error(&e), L1Error::Rpc("Internal error: mempool is full".into()));
    }

    #[test]
    fn size_refusals_are_too_large() {
        // The RPC body limit (Go's MaxBytesReader) and the mempool's max_tx_bytes.
        let e = json!({ "code": -32600, "message": "Invalid Request", "data": "error reading request body: http: request body too large" });
        assert!(matches!(rpc_error(&e), L1Error::TooLarge(m) if m.contains("request body too large")));
        let e = json!({ "code": -32603, "message": "Internal error", "data": "tx too large. Max size is 1048576, but got 1048577" });
        assert!(matches!(rpc_error(&e), L1Error::TooLarge(m) if m.contains("tx too large")));
    }

    #[test]
    fn block_parsing_is_total() {
        let good = json!({
            "block_id": { "hash": "ab12" },
            "block": {
                "header": { "height": "7", "time": "2026-01-01T00:00:00.123456789Z", "chain_id": "c", "app_hash": "0A0B" },
                "data": { "txs": ["AQID"] },
            },
        });
        let b = parse_block(&good, 7).expect("parses");
        assert_eq!(b.time_ms, 1_767_225_600_123);
        assert_eq!(b.txs, vec![vec![1, 2, 3]]);
        assert_eq!(b.app_hash_before, vec![10, 11]);
        assert_eq!(b.block_hash, "AB12");
        assert!(matches!(parse_block(&good, 8), Err(L1Error::Rpc(_))));
        let mut empty = good.clone();
        empty["block"]["data"]["txs"] = Value::Null;
        empty["block"]["header"]["app_hash"] = json!("");
        let b = parse_block(&empty, 7).expect("parses");
        assert!(b.txs.is_empty() && b.app_hash_before.is_empty());
        for (pointer, junk) in [
            ("/block/header/time", json!("yesterday")),
            ("/block/header/app_hash", json!("xyz")),
            ("/block/data/txs", json!(["not base64!"])),
            ("/block/header/height", json!(-1)),
            ("/block", json!(null)),
        ] {
            let mut v = good.clone();
            *v.pointer_mut(pointer).expect("pointer") = junk;
            assert!(matches!(parse_block(&v, 7), Err(L1Error::Rpc(_))), "{pointer}");
        }
    }

    #[tokio::test]
    async fn nobody_listening_is_unavailable() {
        // Port 9 on a loopback address nothing in the tests binds: refused at once.
        let rpc = CometRpc::new(["http://127.0.31.250:9", "http://127.0.31.251:9"]).expect("client");
        assert!(matches!(rpc.latest_height().await, Err(L1Error::Unavailable(_))));
        assert!(matches!(rpc.broadcast_tx_sync(vec![1]).await, Err(L1Error::Unavailable(_))));
        let v = rpc.validators().await;
        assert_eq!(v.len(), 2);
        assert!(v.iter().all(|(_, h)| h.is_none()));
        assert_eq!(*rpc.subscribe_heights().borrow(), 0);
    }

    #[test]
    fn config_errors() {
        assert!(CometRpc::new(Vec::<String>::new()).is_err());
        // Outside a runtime: an error, not a panic.
        assert!(CometRpc::new(["http://127.0.0.1:26657"]).is_err());
    }
}
