//! The on-disk description of a generated devnet (`DIR/devnet.json`), so that `down`,
//! benchmarks and tests can find every node, address and log without re-deriving them.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::Profile;

/// File name of the persisted layout inside the devnet directory.
pub const LAYOUT_FILE: &str = "devnet.json";

/// Everything about one generated devnet. All paths are absolute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layout {
    pub dir: PathBuf,
    pub chain_id: String,
    pub profile: Profile,
    pub base_ip: Ipv4Addr,
    /// Demo key files, `<name>.json`.
    pub keys_dir: PathBuf,
    pub nodes: Vec<NodeLayout>,
}

/// One validator: its CometBFT home, its app's home, addresses and logs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeLayout {
    pub index: usize,
    pub moniker: String,
    /// CometBFT home (`DIR/node{i}`).
    pub home: PathBuf,
    pub ip: Ipv4Addr,
    /// `http://<ip>:26657`
    pub rpc_url: String,
    /// `tcp://<ip>:26656`
    pub p2p_laddr: String,
    /// `tcp://<ip>:26658`, where CometBFT dials the app.
    pub abci_addr: String,
    /// The L1 app's home (`DIR/node{i}/app`), where it keeps its database.
    pub app_home: PathBuf,
    pub cometbft_log: PathBuf,
    pub app_log: PathBuf,
}

impl Layout {
    /// Reads `dir/devnet.json`.
    pub fn load(dir: &Path) -> anyhow::Result<Layout> {
        let path = dir.join(LAYOUT_FILE);
        let text =
            std::fs::read_to_string(&path).with_context(|| format!("reading {} (is there a generated devnet here?)", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    /// Writes `self.dir/devnet.json`.
    pub fn save(&self) -> anyhow::Result<()> {
        let path = self.dir.join(LAYOUT_FILE);
        let mut text = serde_json::to_string_pretty(self)?;
        text.push('\n');
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
    }

    /// Path of a demo key file by identity name, e.g. `key_path("admin")`.
    pub fn key_path(&self, name: &str) -> PathBuf {
        self.keys_dir.join(format!("{name}.json"))
    }

    /// RPC URLs of all nodes, in node order.
    pub fn rpc_urls(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.rpc_url.clone()).collect()
    }
}
