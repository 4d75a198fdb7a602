//! Generation of a devnet directory: CometBFT homes via `cometbft testnet`, then per-node
//! config edits, demo keys, and one shared genesis carrying the demo identities.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, ensure, Context};
use tandem_core::limits::{L1_MEMPOOL_TX_BYTES_MIN, L1_RPC_BODY_BYTES_MIN};
use toml_edit::{value, DocumentMut, Item};

use crate::keys::{app_state, DemoKey, DEMO_IDENTITIES};
use crate::layout::{Layout, NodeLayout};
use crate::{timeouts, Profile};

/// What to generate.
#[derive(Debug, Clone)]
pub struct DevnetSpec {
    pub validators: usize,
    /// Output directory; must be missing or empty.
    pub dir: PathBuf,
    pub profile: Profile,
    /// Node i listens on `base_ip + i` (e.g. 127.0.3.1, 127.0.3.2, ...).
    pub base_ip: Ipv4Addr,
    pub chain_id: String,
}

impl DevnetSpec {
    /// A spec with the usual defaults (127.0.0.1, chain id `tandem-devnet`, default profile).
    pub fn new(validators: usize, dir: impl Into<PathBuf>) -> Self {
        DevnetSpec {
            validators,
            dir: dir.into(),
            profile: Profile::Default,
            base_ip: Ipv4Addr::new(127, 0, 0, 1),
            chain_id: "tandem-devnet".to_owned(),
        }
    }
}

/// Subscriptions are what `broadcast_tx_commit` and event watchers use; CometBFT's limits
/// (100 clients, 5 each) are easy to hit with a load generator plus a gateway.
const MAX_SUBSCRIPTION_CLIENTS: i64 = 500;
const MAX_SUBSCRIPTIONS_PER_CLIENT: i64 = 20;

/// The address of node `i`.
fn node_ip(base: Ipv4Addr, i: usize) -> anyhow::Result<Ipv4Addr> {
    let last = u32::from(base.octets()[3]) + u32::try_from(i)?;
    ensure!(
        last <= 254,
        "base ip {base} leaves no room for node {i}: node addresses must stay within {}.{}.{}.1-254",
        base.octets()[0],
        base.octets()[1],
        base.octets()[2]
    );
    Ok(Ipv4Addr::from(u32::from(base) + u32::try_from(i)?))
}

/// Longest Unix socket path the kernel accepts, less a margin (`sun_path` is 108 bytes).
const UNIX_PATH_MAX: usize = 100;

/// Where CometBFT dials node `home`'s app: a Unix socket in the node's folder.
///
/// Not TCP: the ABCI server answers each request with two small writes (the response, then the
/// flush response), and on a TCP socket without `TCP_NODELAY` Nagle's algorithm holds the
/// second until the first is acknowledged, which CometBFT's side delays by up to 40 ms. Every
/// ABCI call then costs ~40 ms (measured: 88 ms from "finalizing commit" to "committed state"
/// for an empty block over TCP, 3 ms over a Unix socket). A path too long for a socket falls
/// back to `tcp://ip:26658`, with a warning.
fn abci_addr(home: &Path, ip: Ipv4Addr) -> String {
    let socket = home.join("abci.sock");
    match socket.to_str() {
        Some(path) if path.len() <= UNIX_PATH_MAX => format!("unix://{path}"),
        _ => {
            tracing::warn!(path = %socket.display(), "devnet folder path too long for a Unix socket; ABCI over TCP (slower: ~40 ms per call)");
            format!("tcp://{ip}:26658")
        }
    }
}

/// Generates a devnet in `spec.dir` (which must be missing or empty), persists its
/// [`Layout`] as `devnet.json` and returns it.
pub fn generate(spec: &DevnetSpec, cometbft: &Path) -> anyhow::Result<Layout> {
    ensure!(spec.validators >= 1, "a devnet needs at least one validator");
    ensure!(!spec.chain_id.is_empty(), "chain id must not be empty");
    ensure!(spec.base_ip.octets()[3] != 0, "base ip {} ends in .0; start at .1", spec.base_ip);
    let ips = (0..spec.validators).map(|i| node_ip(spec.base_ip, i)).collect::<anyhow::Result<Vec<_>>>()?;

    if spec.dir.exists() && std::fs::read_dir(&spec.dir)?.next().is_some() {
        bail!("{} is not empty; generate into a missing or empty directory", spec.dir.display());
    }
    std::fs::create_dir_all(&spec.dir).with_context(|| format!("creating {}", spec.dir.display()))?;
    // Absolute and symlink-free, so the layout works from any working directory.
    let dir = spec.dir.canonicalize()?;

    let out = Command::new(cometbft)
        .arg("testnet")
        .arg("--v")
        .arg(spec.validators.to_string())
        .arg("--o")
        .arg(&dir)
        .arg("--starting-ip-address")
        .arg(spec.base_ip.to_string())
        .arg("--populate-persistent-peers")
        .output()
        .with_context(|| format!("running {} testnet", cometbft.display()))?;
    if !out.status.success() {
        bail!(
            "cometbft testnet failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let mut nodes = Vec::with_capacity(spec.validators);
    for (i, ip) in ips.iter().enumerate() {
        let home = dir.join(format!("node{i}"));
        let node = NodeLayout {
            index: i,
            moniker: format!("validator-{i}"),
            rpc_url: format!("http://{ip}:26657"),
            p2p_laddr: format!("tcp://{ip}:26656"),
            abci_addr: abci_addr(&home, *ip),
            app_home: home.join("app"),
            cometbft_log: home.join("cometbft.log"),
            app_log: home.join("app.log"),
            ip: *ip,
            home,
        };
        edit_config(&node, spec.profile, spec.validators)?;
        std::fs::create_dir_all(&node.app_home)?;
        nodes.push(node);
    }

    let keys_dir = dir.join("keys");
    std::fs::create_dir_all(&keys_dir)?;
    let keys: Vec<DemoKey> = DEMO_IDENTITIES.iter().map(|(name, role)| DemoKey::generate(name, role)).collect();
    for key in &keys {
        key.write_new(&keys_dir.join(format!("{}.json", key.name)))?;
    }

    write_genesis(&nodes, &spec.chain_id, app_state(&keys))?;

    let layout = Layout { dir, chain_id: spec.chain_id.clone(), profile: spec.profile, base_ip: spec.base_ip, keys_dir, nodes };
    layout.save()?;
    Ok(layout)
}

/// Sets `doc[section][key]` (or the top-level `key` when `section` is empty).
fn set(doc: &mut DocumentMut, dotted: &str, v: Item) -> anyhow::Result<()> {
    match dotted.split_once('.') {
        None => doc[dotted] = v,
        Some((section, key)) => {
            let table = doc[section].as_table_mut().with_context(|| format!("config.toml has no [{section}] table"))?;
            table[key] = v;
        }
    }
    Ok(())
}

/// A profile value in its TOML type: CometBFT rejects `"true"` where it wants a bool.
fn typed(v: &str) -> Item {
    if let Ok(b) = v.parse::<bool>() {
        value(b)
    } else if let Ok(n) = v.parse::<i64>() {
        value(n)
    } else {
        value(v)
    }
}

fn edit_config(node: &NodeLayout, profile: Profile, validators: usize) -> anyhow::Result<()> {
    let path = node.home.join("config").join("config.toml");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut doc: DocumentMut = text.parse().with_context(|| format!("parsing {}", path.display()))?;

    let ip = node.ip;
    let edits: Vec<(&str, Item)> = vec![
        ("moniker", value(node.moniker.as_str())),
        ("proxy_app", value(node.abci_addr.as_str())),
        ("rpc.laddr", value(format!("tcp://{ip}:26657"))),
        ("rpc.max_subscription_clients", value(MAX_SUBSCRIPTION_CLIENTS)),
        ("rpc.max_subscriptions_per_client", value(MAX_SUBSCRIPTIONS_PER_CLIENT)),
        ("p2p.laddr", value(node.p2p_laddr.as_str())),
        // All nodes share one host: CometBFT would otherwise refuse several peers from
        // "the same" machine and treat loopback addresses as unroutable.
        ("p2p.allow_duplicate_ip", value(true)),
        ("p2p.addr_book_strict", value(false)),
        // Every peer is a persistent peer already; peer exchange would only churn the
        // address book.
        ("p2p.pex", value(false)),
        // Lets clients look transactions up by hash and query by event attributes.
        ("tx_index.indexer", value("kv")),
        // The app's CheckTx is stateless: a block cannot change its verdict on
        // a transaction still in the mempool, so rechecking them all after
        // every block is pure overhead (the app would answer OK at once anyway).
        ("mempool.recheck", value(false)),
        // The sizes every batch is cut to fit (`tandem_core::limits`), written
        // out rather than left to CometBFT's defaults: a transaction travels
        // base64-encoded in the RPC request body.
        ("rpc.max_body_bytes", value(L1_RPC_BODY_BYTES_MIN as i64)),
        ("mempool.max_tx_bytes", value(L1_MEMPOOL_TX_BYTES_MIN as i64)),
    ];
    for (k, v) in edits {
        set(&mut doc, k, v)?;
    }
    for (k, v) in timeouts(profile, validators) {
        set(&mut doc, &k, typed(&v))?;
    }
    std::fs::write(&path, doc.to_string()).with_context(|| format!("writing {}", path.display()))
}

/// Writes one genesis, byte-identical for all nodes: node 0's (which `cometbft testnet`
/// made with every validator) with our chain id and app state.
fn write_genesis(nodes: &[NodeLayout], chain_id: &str, app_state: serde_json::Value) -> anyhow::Result<()> {
    let first = nodes[0].home.join("config").join("genesis.json");
    let text = std::fs::read_to_string(&first).with_context(|| format!("reading {}", first.display()))?;
    let mut genesis: serde_json::Value = serde_json::from_str(&text)?;
    let obj = genesis.as_object_mut().context("genesis.json is not a JSON object")?;
    obj.insert("chain_id".into(), chain_id.into());
    obj.insert("app_state".into(), app_state);
    let mut bytes = serde_json::to_vec_pretty(&genesis)?;
    bytes.push(b'\n');
    for node in nodes {
        let path = node.home.join("config").join("genesis.json");
        std::fs::write(&path, &bytes).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
