//! Tests that run real processes: 4 CometBFT validators with CometBFT's built-in `kvstore`
//! app under both profiles, and app-process supervision with a stand-in `tandem` script.
//!
//! Each test uses its own loopback range (127.0.251.x, 127.0.252.x, 127.0.253.x, 127.0.99.x)
//! so they can run in parallel; every `Devnet` stops its processes on drop, also when an
//! assertion panics.

use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use tandem_devnet::{default_tools_dir, ensure_cometbft, generate, AppMode, Devnet, DevnetSpec, Layout, ProcKind, Profile};

fn gen(dir: &Path, profile: Profile, base: Ipv4Addr) -> (Layout, std::path::PathBuf) {
    let cometbft = ensure_cometbft(&default_tools_dir()).expect("cometbft");
    let spec = DevnetSpec { validators: 4, dir: dir.join("net"), profile, base_ip: base, chain_id: format!("tandem-{profile}") };
    (generate(&spec, &cometbft).expect("generate"), cometbft)
}

/// True while the process exists and is not a zombie.
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Sends kvstore transactions (`key=value`) to node 0 for `dur`, one every `every`, and
/// returns (blocks produced, elapsed) measured on node 0.
async fn measure_under_load(devnet: &Devnet, dur: Duration, every: Duration) -> (u64, Duration) {
    let client = tandem_devnet::rpc::client();
    let h0 = tandem_devnet::rpc::latest_height(&client, devnet.rpc_url(0)).await.expect("height");
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < dur {
        let url = format!("{}/broadcast_tx_sync", devnet.rpc_url(0));
        let tx = format!("\"load-{n}=v{n}\"");
        let resp = client.get(&url).query(&[("tx", tx)]).send().await.expect("broadcast");
        assert!(resp.status().is_success());
        n += 1;
        tokio::time::sleep(every).await;
    }
    let h1 = tandem_devnet::rpc::latest_height(&client, devnet.rpc_url(0)).await.expect("height");
    (h1 - h0, start.elapsed())
}

#[tokio::test]
async fn four_kvstore_nodes_reach_height_3_with_default_profile() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (layout, cometbft) = gen(tmp.path(), Profile::Default, Ipv4Addr::new(127, 0, 251, 1));
    let devnet = Devnet::start_with(&layout, &cometbft, AppMode::BuiltinKvstore).expect("start");
    assert_eq!(devnet.pids().len(), 4, "kvstore mode has no app processes");
    let t = Instant::now();
    devnet.wait_for_height(3, Duration::from_secs(60)).await.expect("height 3");
    eprintln!("default profile: 4 nodes at height 3 after {:?}", t.elapsed());
}

#[tokio::test]
async fn four_kvstore_nodes_with_tuned_profile_are_fast_and_survive_a_crash() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (layout, cometbft) = gen(tmp.path(), Profile::Tuned, Ipv4Addr::new(127, 0, 252, 1));
    let devnet = Devnet::start_with(&layout, &cometbft, AppMode::BuiltinKvstore).expect("start");
    let pids: Vec<u32> = devnet.pids().iter().map(|p| p.pid).collect();
    let t = Instant::now();
    devnet.wait_for_height(3, Duration::from_secs(60)).await.expect("height 3");
    eprintln!("tuned profile: 4 nodes at height 3 after {:?}", t.elapsed());

    // With transactions flowing, blocks follow each other at about timeout_commit plus a
    // round of votes; allow a wide margin for a loaded 2-core CI machine (the default
    // profile needs > 1 s per block).
    let (blocks, elapsed) = measure_under_load(&devnet, Duration::from_secs(4), Duration::from_millis(20)).await;
    let interval = elapsed / u32::try_from(blocks.max(1)).expect("small");
    eprintln!("tuned profile under load: {blocks} blocks in {elapsed:?}, ~{interval:?} per block");
    assert!(blocks >= 8, "only {blocks} blocks in {elapsed:?} under load");

    // Idle: empty blocks only every create_empty_blocks_interval (1 s), not every 100 ms.
    let client = tandem_devnet::rpc::client();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let h0 = tandem_devnet::rpc::latest_height(&client, devnet.rpc_url(0)).await.expect("height");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let h1 = tandem_devnet::rpc::latest_height(&client, devnet.rpc_url(0)).await.expect("height");
    eprintln!("tuned profile idle: {} blocks in 3 s", h1 - h0);
    assert!(h1 - h0 <= 6, "idle devnet made {} blocks in 3 s", h1 - h0);

    // A crashed validator: the other three (> 2/3) keep going; it catches up on restart.
    devnet.kill_node(3).expect("kill node 3");
    assert!(!devnet.is_node_running(3));
    let heights = devnet.heights().await;
    let target = heights[0].expect("node 0 height") + 3;
    devnet.wait_for_height_on(&[0, 1, 2], target, Duration::from_secs(60)).await.expect("3 of 4 make progress");
    devnet.start_node(3).expect("restart node 3");
    devnet.wait_for_height(target + 1, Duration::from_secs(60)).await.expect("node 3 catches up");

    drop(devnet);
    for pid in pids {
        assert!(!alive(pid), "pid {pid} survived the devnet's drop");
    }
}

#[test]
fn refuses_to_start_where_another_process_listens() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (layout, cometbft) = gen(tmp.path(), Profile::Tuned, Ipv4Addr::new(127, 0, 99, 11));
    let app = stand_in_app(tmp.path());
    // A leftover of an earlier run: something still listens on node 2's P2P address and
    // node 3's RPC address.
    let p2p = std::net::TcpListener::bind("127.0.99.13:26656").expect("bind p2p");
    let rpc = std::net::TcpListener::bind("127.0.99.14:26657").expect("bind rpc");
    for mode in [AppMode::Tandem(app.clone()), AppMode::BuiltinKvstore] {
        let err = match Devnet::start_with(&layout, &cometbft, mode) {
            Ok(_) => panic!("started on busy addresses"),
            Err(e) => format!("{e:#}"),
        };
        assert!(err.contains("127.0.99.13:26656"), "{err}");
        assert!(err.contains("127.0.99.14:26657"), "{err}");
        assert!(err.contains("another devnet or process"), "{err}");
        assert!(!err.contains("127.0.99.11:"), "free addresses are not named: {err}");
        // Nothing was started, so no node wrote a log.
        assert!(!layout.nodes[0].cometbft_log.exists());
        assert!(!layout.nodes[0].app_log.exists());
    }
    drop((p2p, rpc));
}

/// A stand-in for the `tandem` binary: logs its arguments and one env var, then idles until
/// SIGTERM.
fn stand_in_app(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("fake-tandem");
    std::fs::write(
        &path,
        // No `exec sleep`: the process must keep its command line (with the home path),
        // which `down` checks before signalling; short sleeps so a SIGKILLed script leaves
        // no long-lived orphan.
        "#!/bin/sh\necho \"fake app: $* fault=${TANDEM_FAULT:-none}\"\n\
         trap 'exit 0' TERM\nwhile :; do sleep 1; done\n",
    )
    .expect("write script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

async fn wait_for_log(path: &Path, needle: &str) -> String {
    for _ in 0..100 {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{} never contained {needle:?}", path.display());
}

#[tokio::test]
async fn supervises_app_processes_and_down_stops_a_detached_devnet() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (layout, cometbft) = gen(tmp.path(), Profile::Tuned, Ipv4Addr::new(127, 0, 253, 1));
    let app = stand_in_app(tmp.path());
    let devnet = Devnet::start(&layout, &cometbft, &app).expect("start");

    let procs = devnet.pids();
    assert_eq!(procs.len(), 8);
    assert_eq!(procs.iter().filter(|p| p.kind == ProcKind::App).count(), 4);
    for i in 0..4 {
        assert!(devnet.is_app_running(i));
        assert!(devnet.is_node_running(i));
    }

    // The app is started with its home and ABCI address, output going to app.log.
    let n1 = &layout.nodes[1];
    let log = wait_for_log(&n1.app_log, "fake app:").await;
    assert!(log.contains(&format!("node --home {} --abci {}", n1.app_home.display(), n1.abci_addr)));

    // Kill and restart with fault-injection env.
    devnet.kill_app(1).expect("kill app");
    assert!(!devnet.is_app_running(1));
    assert!(devnet.kill_app(1).is_err(), "already dead");
    devnet.start_app_with_env(1, &[("TANDEM_FAULT", "crash-after-commit")]).expect("restart app");
    assert!(devnet.is_app_running(1));
    assert!(devnet.start_app(1).is_err(), "already running");
    wait_for_log(&n1.app_log, "fault=crash-after-commit").await;

    // Detach, then stop everything the way `tandem down` does, from pids.json.
    let procs = devnet.detach();
    assert_eq!(procs.len(), 8);
    assert!(procs.iter().all(|p| alive(p.pid)), "detach must not stop anything");
    tandem_devnet::cli::write_pids(&layout.dir, procs.clone()).expect("pids.json");
    tandem_devnet::run_down(tandem_devnet::DownArgs { dir: layout.dir.clone() }).expect("down");
    for p in &procs {
        assert!(!alive(p.pid), "{p:?} survived down");
    }
    assert!(!layout.dir.join("pids.json").exists());
}
