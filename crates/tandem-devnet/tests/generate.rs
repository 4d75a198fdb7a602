//! Tests of devnet generation against the real `cometbft` binary: config values, identical
//! genesis files with the demo identities, and key files.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;

use tandem_devnet::{
    default_tools_dir, ensure_cometbft, generate, load_keys, timeouts, DemoKey, DevnetSpec, Layout, Profile, DEMO_IDENTITIES,
};
use toml_edit::DocumentMut;

fn config(layout: &Layout, i: usize) -> DocumentMut {
    let path = layout.nodes[i].home.join("config/config.toml");
    std::fs::read_to_string(path).expect("read config").parse().expect("parse config")
}

fn str_at<'a>(doc: &'a DocumentMut, section: &str, key: &str) -> &'a str {
    let item = if section.is_empty() { &doc[key] } else { &doc[section][key] };
    item.as_str().unwrap_or_else(|| panic!("{section}.{key} is not a string: {item:?}"))
}

#[test]
fn generates_a_four_node_tuned_devnet() {
    let cometbft = ensure_cometbft(&default_tools_dir()).expect("cometbft");
    let tmp = tempfile::tempdir().expect("tempdir");
    let spec = DevnetSpec {
        validators: 4,
        dir: tmp.path().join("net"),
        profile: Profile::Tuned,
        base_ip: Ipv4Addr::new(127, 0, 250, 1),
        chain_id: "tandem-test-250".into(),
    };
    let layout = generate(&spec, &cometbft).expect("generate");

    // The persisted layout round-trips.
    assert_eq!(Layout::load(&spec.dir).expect("load layout"), layout);
    assert_eq!(layout.nodes.len(), 4);

    for (i, node) in layout.nodes.iter().enumerate() {
        let ip = Ipv4Addr::new(127, 0, 250, 1 + i as u8);
        assert_eq!(node.ip, ip);
        assert_eq!(node.rpc_url, format!("http://{ip}:26657"));
        // ABCI over a Unix socket in the node's folder (TCP would add ~40 ms per call).
        assert_eq!(node.abci_addr, format!("unix://{}", node.home.join("abci.sock").display()));
        assert_eq!(node.home, layout.dir.join(format!("node{i}")));
        assert_eq!(node.app_home, node.home.join("app"));
        assert!(node.app_home.is_dir());
        assert_eq!(node.cometbft_log, node.home.join("cometbft.log"));
        assert_eq!(node.app_log, node.home.join("app.log"));

        let doc = config(&layout, i);
        assert_eq!(str_at(&doc, "", "moniker"), format!("validator-{i}"));
        assert_eq!(str_at(&doc, "", "proxy_app"), node.abci_addr);
        assert_eq!(doc["mempool"]["recheck"].as_bool(), Some(false));
        // The sizes batches are cut to fit are written out, not left to defaults.
        assert_eq!(doc["rpc"]["max_body_bytes"].as_integer(), Some(tandem_core::limits::L1_RPC_BODY_BYTES_MIN as i64));
        assert_eq!(doc["mempool"]["max_tx_bytes"].as_integer(), Some(tandem_core::limits::L1_MEMPOOL_TX_BYTES_MIN as i64));
        assert_eq!(str_at(&doc, "rpc", "laddr"), format!("tcp://{ip}:26657"));
        assert_eq!(str_at(&doc, "p2p", "laddr"), format!("tcp://{ip}:26656"));
        assert_eq!(doc["p2p"]["allow_duplicate_ip"].as_bool(), Some(true));
        assert_eq!(doc["p2p"]["addr_book_strict"].as_bool(), Some(false));
        assert_eq!(doc["p2p"]["pex"].as_bool(), Some(false));
        assert_eq!(str_at(&doc, "tx_index", "indexer"), "kv");
        assert!(doc["rpc"]["max_subscription_clients"].as_integer() > Some(100));
        assert!(doc["rpc"]["max_subscriptions_per_client"].as_integer() > Some(5));
        for (key, want) in timeouts(Profile::Tuned, layout.nodes.len()) {
            let (section, k) = key.split_once('.').expect("dotted key");
            let got = &doc[section][k];
            let got = got
                .as_str()
                .map(str::to_owned)
                .or_else(|| got.as_integer().map(|n| n.to_string()))
                .or_else(|| got.as_bool().map(|b| b.to_string()))
                .unwrap_or_else(|| panic!("{key} missing"));
            assert_eq!(got, want, "node {i} {key}");
        }
        // Peers: every other node, at its own address.
        let peers = str_at(&doc, "p2p", "persistent_peers");
        for j in 0..4u8 {
            assert!(peers.contains(&format!("@127.0.250.{}:26656", 1 + j)), "{peers}");
        }
    }

    // One genesis, byte for byte, with our chain id and app state.
    let genesis: Vec<Vec<u8>> = layout.nodes.iter().map(|n| std::fs::read(n.home.join("config/genesis.json")).expect("genesis")).collect();
    assert!(genesis.iter().all(|g| g == &genesis[0]));
    let g: serde_json::Value = serde_json::from_slice(&genesis[0]).expect("genesis json");
    assert_eq!(g["chain_id"], "tandem-test-250");
    assert_eq!(g["validators"].as_array().map(Vec::len), Some(4));

    // Keys: all present, 0600, consistent, and exactly what the genesis lists.
    let keys = load_keys(&layout.keys_dir).expect("keys");
    assert_eq!(keys.len(), DEMO_IDENTITIES.len());
    let mut pubkeys = BTreeSet::new();
    for ((name, role), key) in DEMO_IDENTITIES.iter().zip(&keys) {
        assert_eq!((key.name.as_str(), key.role.as_str()), (*name, *role));
        assert_eq!(key.public_key.len(), 64);
        assert_eq!(key.secret_key.len(), 64);
        assert_eq!(key.public_key, key.public_key.to_lowercase());
        let sk = key.signing_key().expect("signing key");
        assert_eq!(hex::encode(sk.verifying_key().to_bytes()), key.public_key);
        pubkeys.insert(key.public_key.clone());
        let mode = std::fs::metadata(layout.key_path(name)).expect("key metadata").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{name}");
    }
    assert_eq!(pubkeys.len(), keys.len(), "keys are distinct");

    let actors: Vec<serde_json::Value> = keys
        .iter()
        .filter(|k| k.role != "gateway")
        .map(|k| serde_json::json!({"name": k.name, "role": k.role, "public_key": k.public_key}))
        .collect();
    let expected = serde_json::json!({
        "actors": actors,
        "gateways": [{"name": "gateway-1", "public_key": keys[8].public_key}],
    });
    assert_eq!(g["app_state"], expected);
    assert_eq!(g["app_state"]["actors"].as_array().map(Vec::len), Some(8));

    // Generating over an existing devnet is refused rather than mixing two networks.
    assert!(generate(&spec, &cometbft).is_err());
}

#[test]
fn default_profile_keeps_cometbft_defaults() {
    let cometbft = ensure_cometbft(&default_tools_dir()).expect("cometbft");
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut spec = DevnetSpec::new(1, tmp.path().join("net"));
    spec.base_ip = Ipv4Addr::new(127, 0, 250, 101);
    let layout = generate(&spec, &cometbft).expect("generate");
    let doc = config(&layout, 0);
    assert_eq!(str_at(&doc, "consensus", "timeout_propose"), "3s");
    assert_eq!(str_at(&doc, "consensus", "timeout_prevote"), "1s");
    assert_eq!(str_at(&doc, "consensus", "timeout_precommit"), "1s");
    assert_eq!(str_at(&doc, "consensus", "timeout_commit"), "1s");
    assert_eq!(str_at(&doc, "", "proxy_app"), layout.nodes[0].abci_addr);
    assert_eq!(doc["consensus"]["skip_timeout_commit"].as_bool(), Some(false));
    let g: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.nodes[0].home.join("config/genesis.json")).expect("genesis")).expect("json");
    assert_eq!(g["chain_id"], "tandem-devnet");
}

#[test]
fn rejects_bad_specs() {
    let cometbft = ensure_cometbft(&default_tools_dir()).expect("cometbft");
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut spec = DevnetSpec::new(4, tmp.path().join("a"));
    spec.base_ip = Ipv4Addr::new(127, 0, 250, 252); // node 3 would be .255
    assert!(generate(&spec, &cometbft).is_err());
    let spec = DevnetSpec::new(0, tmp.path().join("b"));
    assert!(generate(&spec, &cometbft).is_err());
}

#[test]
fn key_with_mismatched_public_key_is_rejected() {
    let mut a = DemoKey::generate("a", "admin");
    let b = DemoKey::generate("b", "admin");
    assert!(a.signing_key().is_ok());
    a.public_key = b.public_key;
    assert!(a.signing_key().is_err());
}

#[test]
fn tuned_is_faster_than_default() {
    let get = |p, k: &str| timeouts(p, 4).into_iter().find(|(key, _)| key == k).map(|(_, v)| v).expect("key");
    assert_eq!(get(Profile::Default, "consensus.timeout_commit"), "1s");
    assert_eq!(get(Profile::Tuned, "consensus.timeout_commit"), "100ms");
    assert_eq!(get(Profile::Tuned, "consensus.timeout_propose"), "500ms");
}

#[test]
fn finds_the_installed_cometbft() {
    let bin = ensure_cometbft(&default_tools_dir()).expect("cometbft");
    assert_eq!(tandem_devnet::cometbft_version(&bin).expect("version"), tandem_devnet::COMETBFT_VERSION);
}
