//! Checks, before a devnet starts, that nothing else already listens where its processes are
//! about to listen.
//!
//! Leftover processes of an earlier devnet on the same addresses are otherwise silently
//! joined: the new CometBFT nodes dial the old apps, and the failures surface much later and
//! far from their cause (unknown actors, handshake panics). The check binds a
//! [`TcpListener`] on each address and drops it at once. Like std's listeners, CometBFT's and
//! the app's set `SO_REUSEADDR`, so connections of a stopped process lingering in TIME_WAIT
//! do not count as busy; a socket someone listens on does.

use std::io::ErrorKind;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};

use anyhow::{bail, Context};
use toml_edit::DocumentMut;

use crate::{AppMode, Layout};

/// Fails, naming every such address, if any of `addrs` cannot be listened on because another
/// process (another devnet, a leftover one) already does. Kills nothing.
pub fn ensure_free(addrs: &[SocketAddr]) -> anyhow::Result<()> {
    let mut busy: Vec<SocketAddr> = Vec::new();
    let mut failed: Vec<String> = Vec::new();
    for addr in addrs {
        match TcpListener::bind(addr) {
            Ok(listener) => drop(listener),
            Err(e) if e.kind() == ErrorKind::AddrInUse => {
                if !busy.contains(addr) {
                    busy.push(*addr);
                }
            }
            Err(e) => failed.push(format!("{addr} ({e})")),
        }
    }
    let mut problems = Vec::new();
    if !busy.is_empty() {
        let list: Vec<String> = busy.iter().map(ToString::to_string).collect();
        problems.push(format!(
            "{} already in use: another devnet or process still listens there; stop it \
             (e.g. `tandem devnet down --dir <its dir>`) or choose another --base-ip",
            list.join(", ")
        ));
    }
    if !failed.is_empty() {
        problems.push(format!("cannot listen on {}", failed.join(", ")));
    }
    if !problems.is_empty() {
        bail!("the devnet cannot start: {}", problems.join("; "));
    }
    Ok(())
}

/// Every address the devnet's processes will listen on: each node's CometBFT listeners as its
/// `config.toml` sets them (p2p, rpc, and gRPC, pprof and Prometheus where enabled), and, with
/// the Tandem app, each app's ABCI address.
pub(crate) fn listen_addrs(layout: &Layout, app: &AppMode) -> anyhow::Result<Vec<SocketAddr>> {
    let mut out = Vec::new();
    for node in &layout.nodes {
        let path = node.home.join("config").join("config.toml");
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        out.extend(cometbft_listen_addrs(&text).with_context(|| format!("in {}", path.display()))?);
        if matches!(app, AppMode::Tandem(_)) {
            out.extend(parse_laddr(&node.abci_addr).with_context(|| format!("node {}: ABCI address", node.index))?);
        }
    }
    Ok(out)
}

/// The addresses a CometBFT node with this `config.toml` listens on.
fn cometbft_listen_addrs(config: &str) -> anyhow::Result<Vec<SocketAddr>> {
    let doc: DocumentMut = config.parse().context("parsing config.toml")?;
    let mut keys = vec![("p2p", "laddr"), ("rpc", "laddr"), ("rpc", "grpc_laddr"), ("rpc", "pprof_laddr")];
    let get = |section: &str, key: &str| doc.get(section).and_then(|t| t.get(key));
    if get("instrumentation", "prometheus").and_then(|v| v.as_bool()) == Some(true) {
        keys.push(("instrumentation", "prometheus_listen_addr"));
    }
    let mut out = Vec::new();
    for (section, key) in keys {
        if let Some(laddr) = get(section, key).and_then(|v| v.as_str()) {
            out.extend(parse_laddr(laddr).with_context(|| format!("{section}.{key}"))?);
        }
    }
    Ok(out)
}

/// The socket addresses of a listen address as CometBFT writes them: `tcp://ip:port`,
/// `ip:port` or `:port` (every interface). Empty (disabled) and `unix://` give none.
fn parse_laddr(laddr: &str) -> anyhow::Result<Vec<SocketAddr>> {
    let laddr = laddr.trim();
    if laddr.is_empty() || laddr.starts_with("unix://") {
        return Ok(Vec::new());
    }
    let hostport = laddr.strip_prefix("tcp://").unwrap_or(laddr);
    let hostport = match hostport.strip_prefix(':') {
        Some(port) => format!("0.0.0.0:{port}"),
        None => hostport.to_owned(),
    };
    let addrs: Vec<SocketAddr> = hostport.to_socket_addrs().with_context(|| format!("bad listen address {laddr:?}"))?.collect();
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_free_address_passes() {
        let addr: SocketAddr = "127.0.99.1:26656".parse().expect("addr");
        ensure_free(&[addr]).expect("free");
        // The check leaves it free.
        ensure_free(&[addr]).expect("still free");
    }

    #[test]
    fn a_held_address_fails_and_is_named() {
        let held = TcpListener::bind("127.0.99.2:0").expect("bind");
        let busy = held.local_addr().expect("addr");
        let free: SocketAddr = "127.0.99.3:26657".parse().expect("addr");
        let err = ensure_free(&[free, busy]).expect_err("busy").to_string();
        assert!(err.contains(&busy.to_string()), "{err}");
        assert!(!err.contains(&free.to_string()), "{err}");
        assert!(err.contains("another devnet or process"), "{err}");
        assert!(err.contains("tandem devnet down"), "{err}");
    }

    #[test]
    fn every_busy_address_is_named() {
        let a = TcpListener::bind("127.0.99.4:0").expect("bind");
        let b = TcpListener::bind("127.0.99.5:0").expect("bind");
        let (a, b) = (a.local_addr().expect("a"), b.local_addr().expect("b"));
        let err = ensure_free(&[a, b]).expect_err("busy").to_string();
        assert!(err.contains(&a.to_string()) && err.contains(&b.to_string()), "{err}");
    }

    #[test]
    fn listen_addresses_as_cometbft_writes_them() {
        let a = |s: &str| -> SocketAddr { s.parse().expect("addr") };
        assert_eq!(parse_laddr("tcp://127.0.99.6:26656").expect("tcp"), [a("127.0.99.6:26656")]);
        assert_eq!(parse_laddr("127.0.99.6:6060").expect("plain"), [a("127.0.99.6:6060")]);
        assert_eq!(parse_laddr(":26660").expect("any"), [a("0.0.0.0:26660")]);
        assert!(parse_laddr("").expect("empty").is_empty());
        assert!(parse_laddr("unix:///tmp/x.sock").expect("unix").is_empty());
        assert!(parse_laddr("tcp://nonsense").is_err());
    }

    #[test]
    fn config_listeners_include_pprof_and_prometheus_only_when_set() {
        let config = |pprof: &str, prometheus: bool| {
            format!(
                "moniker = \"x\"\n\
                 [rpc]\nladdr = \"tcp://127.0.99.7:26657\"\ngrpc_laddr = \"\"\n\
                 pprof_laddr = \"{pprof}\"\n\
                 [p2p]\nladdr = \"tcp://127.0.99.7:26656\"\n\
                 [instrumentation]\nprometheus = {prometheus}\n\
                 prometheus_listen_addr = \":26660\"\n"
            )
        };
        let a = |s: &str| -> SocketAddr { s.parse().expect("addr") };
        assert_eq!(cometbft_listen_addrs(&config("", false)).expect("parse"), [a("127.0.99.7:26656"), a("127.0.99.7:26657")]);
        assert_eq!(
            cometbft_listen_addrs(&config("127.0.99.7:6060", true)).expect("parse"),
            [a("127.0.99.7:26656"), a("127.0.99.7:26657"), a("127.0.99.7:6060"), a("0.0.0.0:26660")]
        );
    }
}
