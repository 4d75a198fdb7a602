//! Timing profiles: which consensus and P2P timeouts a devnet runs with.
//!
//! Both profiles are written into every node's `config.toml` explicitly, so a benchmark can
//! print exactly what it ran with (see [`timeouts`]) instead of relying on a binary's defaults.

use serde::{Deserialize, Serialize};

/// Which timing settings the nodes use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// CometBFT v0.38's own defaults, as a production network spread over the internet would
    /// run: propose 3 s, prevote/precommit 1 s, commit 1 s (about one block per second).
    #[default]
    Default,
    /// Settings for N validators sharing one host over loopback; see [`TUNED`] for each value
    /// and why.
    Tuned,
}

impl std::fmt::Display for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Profile::Default => "default",
            Profile::Tuned => "tuned",
        })
    }
}

/// CometBFT v0.38.25's defaults for the keys that [`TUNED`] changes.
const DEFAULT: &[(&str, &str)] = &[
    ("consensus.timeout_propose", "3s"),
    ("consensus.timeout_propose_delta", "500ms"),
    ("consensus.timeout_prevote", "1s"),
    ("consensus.timeout_prevote_delta", "500ms"),
    ("consensus.timeout_precommit", "1s"),
    ("consensus.timeout_precommit_delta", "500ms"),
    ("consensus.timeout_commit", "1s"),
    ("consensus.skip_timeout_commit", "false"),
    ("consensus.create_empty_blocks", "true"),
    ("consensus.create_empty_blocks_interval", "0s"),
    ("consensus.peer_gossip_sleep_duration", "100ms"),
    ("p2p.flush_throttle_timeout", "100ms"),
    ("p2p.send_rate", "5120000"),
    ("p2p.recv_rate", "5120000"),
];

/// The `tuned` profile. Loopback delivers a message in tens of microseconds, so CometBFT's
/// defaults (sized for internet latency) mostly add idle waiting; what is scarce on one host is
/// CPU, shared by all N nodes and apps on two cores. Hence:
///
/// - `timeout_propose = 500ms` (+100 ms per round): only waited out when the proposal does
///   not arrive, i.e. the proposer is down (fault tests kill nodes) or starved of CPU. A
///   proposal, even a multi-MB block, arrives in milliseconds here; 500 ms leaves ample
///   headroom for a busy machine while a dead proposer costs half a second, not three.
/// - `timeout_prevote`/`timeout_precommit = 100ms` (+50 ms per round): these start only once
///   +2/3 of *some* votes are in but not +2/3 for one value, i.e. while waiting for
///   stragglers; on loopback a straggler is late by scheduling delays, not the network.
/// - `timeout_commit = 100ms`: the pause after a commit before the next height. It lets the
///   mempool collect a batch (bigger, fewer blocks amortise per-block costs: ABCI round
///   trips, fsyncs, app-hash computation) and lets the slowest node finish the previous block.
///   Tried and measured (while ABCI still ran over TCP and each call cost ~40 ms, see
///   `generate.rs`): 20 ms with 2 ms gossip and flush cut the 4-validator session finality
///   p50 by ~15 %, but at 13-16 validators it starved the two cores (L2 p99 up to 350 ms,
///   L1 throughput halved), so the profile keeps 100 ms. Measured again over the Unix
///   socket: 50 ms gave session finality p50 95 ms at 4 validators (113 ms at 100 ms) but
///   615 ms at 16 (476-536 ms at 100 ms). `skip_timeout_commit` stays
///   off, measured: with it on, the block after a state change (a proof block) is proposed
///   at once, empty, and the next session's batch waits for the block after it; with it off,
///   that batch arrives during the 100 ms pause and rides in the proof block. Session
///   finality p50 with it on / off: 144 / 115 ms at 4 validators, 257 / 142 ms at 10,
///   539 / 476 ms at 16, and at 13-16 validators it also raised the L2 step p50 from 0.8-0.9
///   to 3.5-4.5 ms by keeping the cores saturated.
/// - `create_empty_blocks_interval = 1s`: with no transactions, a node proposes an empty
///   block only after 1 s, instead of every ~100 ms; an idle 4-node devnet would otherwise
///   burn CPU (and disk) producing ~10 empty blocks a second. A transaction in the mempool
///   (or an app-hash change, which needs a proof block) still triggers a block at once.
/// - `peer_gossip_sleep_duration` and `p2p.flush_throttle_timeout`: how long a gossip
///   routine sleeps when it has nothing new for a peer, and how long a connection buffers
///   small messages before flushing. Each consensus message waits up to both per hop, so at
///   CometBFT's 100 ms a round of proposal, prevotes and precommits takes hundreds of ms.
///   Lower is faster but costs CPU that grows with N²: every node polls every peer. The
///   table says 10 ms; [`timeouts`] replaces both with [`gossip_ms`] of the validator count
///   and the cores (2 ms at 4 validators on 2 cores, 16 ms at 16). Measured on 2 cores (with
///   `skip_timeout_commit` on at the time): 2 ms for everyone cut 4-validator session
///   finality from 189 to 156 ms and the L2 p99 from 7 to 4 ms, but at 16 validators it
///   raised the L2 p50 from 0.8 to 4 ms (the cores saturated) without speeding finality.
/// - `p2p.send_rate`/`recv_rate = 20 MB/s` (from 5 MB/s): per-connection rate limits; at
///   5 MB/s gossiping one full 1 MB block to each peer alone takes ~200 ms.
pub const TUNED: &[(&str, &str)] = &[
    ("consensus.timeout_propose", "500ms"),
    ("consensus.timeout_propose_delta", "100ms"),
    ("consensus.timeout_prevote", "100ms"),
    ("consensus.timeout_prevote_delta", "50ms"),
    ("consensus.timeout_precommit", "100ms"),
    ("consensus.timeout_precommit_delta", "50ms"),
    ("consensus.timeout_commit", "100ms"),
    ("consensus.skip_timeout_commit", "false"),
    ("consensus.create_empty_blocks", "true"),
    ("consensus.create_empty_blocks_interval", "1s"),
    ("consensus.peer_gossip_sleep_duration", "10ms"),
    ("p2p.flush_throttle_timeout", "10ms"),
    ("p2p.send_rate", "20971520"),
    ("p2p.recv_rate", "20971520"),
];

/// The timing settings of `profile` for a devnet of `validators` nodes on this machine, as
/// (`section.key`, value) pairs in the form they take in `config.toml` (durations as
/// CometBFT duration strings), e.g. for benchmarks to print.
pub fn timeouts(profile: Profile, validators: usize) -> Vec<(String, String)> {
    let table = match profile {
        Profile::Default => DEFAULT,
        Profile::Tuned => TUNED,
    };
    let gossip = format!("{}ms", gossip_ms(validators, cores()));
    table
        .iter()
        .map(|(k, v)| {
            let v = match (profile, *k) {
                (Profile::Tuned, "consensus.peer_gossip_sleep_duration" | "p2p.flush_throttle_timeout") => gossip.clone(),
                _ => (*v).to_owned(),
            };
            ((*k).to_owned(), v)
        })
        .collect()
}

/// The tuned gossip sleep and flush throttle (ms) for `validators` nodes sharing `cores`:
/// N² / (8 × cores), between 2 and 20 ms. Keeps the polling of all N(N-1) peer links to a
/// similar share of the machine at every size.
pub fn gossip_ms(validators: usize, cores: usize) -> usize {
    (validators * validators / (8 * cores.max(1))).clamp(2, 20)
}

/// The machine's cores, as the OS offers them to this process.
pub(crate) fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gossip_grows_with_the_square_of_the_validators_per_core() {
        assert_eq!(gossip_ms(1, 2), 2);
        assert_eq!(gossip_ms(4, 2), 2);
        assert_eq!(gossip_ms(10, 2), 6);
        assert_eq!(gossip_ms(16, 2), 16);
        assert_eq!(gossip_ms(16, 8), 4);
        assert_eq!(gossip_ms(64, 2), 20);
        let t = timeouts(Profile::Tuned, 16);
        let get = |k: &str| t.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone()).expect("key");
        assert_eq!(get("consensus.peer_gossip_sleep_duration"), format!("{}ms", gossip_ms(16, cores())));
        assert_eq!(get("p2p.flush_throttle_timeout"), get("consensus.peer_gossip_sleep_duration"));
        // The default profile is CometBFT's, whatever the size.
        let d = timeouts(Profile::Default, 16);
        assert!(d.contains(&("consensus.peer_gossip_sleep_duration".to_string(), "100ms".to_string())));
    }
}
