//! The `tandem` client commands, run as a user would: the binary against a
//! real 4-validator devnet (127.0.26.1–4) and a gateway process
//! (127.0.26.100:8080). Checks output, `--json`, and exit codes: 0 ok,
//! 1 usage or local error, 2 refused by the gateway, 3 gateway unreachable.

mod cli_support;
mod support;

use std::path::Path;

use cli_support::{run, Out};
use support::gateway::GatewayProc;
use support::Net;

fn ok(out: Out) -> Out {
    assert_eq!(out.code, 0, "expected success: {out:?}");
    out
}

fn fails(out: Out, exit: i32, code: &str) -> Out {
    assert_eq!(out.code, exit, "expected exit {exit} ({code}): {out:?}");
    assert!(out.stderr.contains(&format!("error: {code}: ")), "expected `error: {code}: ` on stderr: {out:?}");
    out
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

#[test]
fn local_errors_keys_and_help_work_without_a_gateway() {
    let home = tempfile::tempdir().expect("tempdir");
    let h = home.path();
    let nowhere = ["--gateway", "http://127.0.0.1:1"];

    // Unreachable gateway: exit 3.
    fails(run(h, &["status", nowhere[0], nowhere[1]], &[]), 3, "unreachable");
    fails(run(h, &["package", "show", "PKG-1"], &[("TANDEM_GATEWAY", "http://127.0.0.1:1")]), 3, "unreachable");

    // keys new / show, no overwrite.
    let key = h.join("op9.json");
    let made = ok(run(h, &["keys", "new", "--name", "operator-9", "--role", "operator", "--out", p(&key), "--json"], &[]));
    let made = made.json();
    assert_eq!(made["role"], "operator");
    let shown = ok(run(h, &["keys", "show", "--key", p(&key), "--json"], &[])).json();
    assert_eq!(shown["public_key"], made["public_key"]);
    assert_eq!(shown["name"], "operator-9");
    let text = ok(run(h, &["keys", "show"], &[("TANDEM_KEY", p(&key))]));
    assert!(text.stdout.contains("role:       operator"), "{text:?}");
    assert!(!text.stdout.contains("secret"), "the secret is never shown");
    fails(run(h, &["keys", "new", "--name", "operator-9", "--role", "operator", "--out", p(&key)], &[]), 1, "exists");
    fails(run(h, &["keys", "new", "--name", "w", "--role", "wizard", "--out", p(&h.join("w.json"))], &[]), 1, "usage");

    // Bad key files: exit 1, before any request.
    let bad = h.join("bad.json");
    std::fs::write(&bad, "not a key").expect("write");
    fails(run(h, &["session", "open", "--key", p(&bad), nowhere[0], nowhere[1]], &[]), 1, "bad_key");
    fails(run(h, &["keys", "show", "--key", p(&h.join("missing.json"))], &[]), 1, "bad_key");
    fails(run(h, &["session", "open", nowhere[0], nowhere[1]], &[]), 1, "usage");

    // Usage errors: exit 1.
    fails(run(h, &["session", "step", "--session", "00", "scan"], &[]), 1, "usage");
    fails(run(h, &["package", "register", "--id", "X", "--line", "no-quantity", "--key", p(&key)], &[]), 1, "usage");
    fails(run(h, &["session", "show", "not-hex", nowhere[0], nowhere[1]], &[]), 1, "usage");
    fails(run(h, &["status", "--config", p(&h.join("missing.toml"))], &[]), 1, "bad_config");

    // A config file names the gateway (here: an unreachable one).
    let cfg = h.join("config.toml");
    std::fs::write(&cfg, "gateway = \"http://127.0.0.1:1\"\nkey = \"op9.json\"\n").expect("write");
    fails(run(h, &["status", "--config", p(&cfg)], &[]), 3, "unreachable");
    let via_cfg = ok(run(h, &["keys", "show", "--json"], &[("TANDEM_CONFIG", p(&cfg))])).json();
    assert_eq!(via_cfg["public_key"], made["public_key"], "relative key path resolved against the config file");

    // --help on every command, each with an example.
    for cmd in [
        &["keys", "new"][..],
        &["keys", "show"],
        &["package", "register"],
        &["package", "show"],
        &["session", "open"],
        &["session", "step"],
        &["session", "step", "scan"],
        &["session", "step", "validate"],
        &["session", "step", "qc"],
        &["session", "step", "label"],
        &["session", "step", "handover"],
        &["session", "step", "deliver"],
        &["session", "commit"],
        &["session", "show"],
        &["status"],
        &["up"],
    ] {
        let mut args = cmd.to_vec();
        args.push("--help");
        let out = ok(run(h, &args, &[]));
        assert!(out.stdout.contains("Example: tandem"), "`tandem {} --help` has no example:\n{}", cmd.join(" "), out.stdout);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_command_against_a_real_gateway() {
    let net = Net::start(4, 26).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = GatewayProc::start(&net, &dir.path().join("gw"), "127.0.26.100:8080", &[]);
    gw.wait_ready(&net.http).await;
    let url = gw.url.clone();
    let h = dir.path();
    let key = |name: &str| net.layout.key_path(name).display().to_string();
    let (sup, op, courier) = (key("supplier-1"), key("operator-1"), key("courier-1"));
    let env = [("TANDEM_GATEWAY", url.as_str())];
    // Blocking runs are fine here: devnet and gateway are other processes.
    let tandem = |args: &[&str]| run(h, args, &env);

    // status, text and JSON.
    let st = ok(tandem(&["status"]));
    assert!(st.stdout.contains("L1 height:") && st.stdout.contains("(reachable)"), "{st:?}");
    let st = ok(run(h, &["status", "--gateway", &url, "--json"], &[])).json();
    assert_eq!(st["chain_id"].as_str(), Some(net.layout.chain_id.as_str()));

    // A supplier registers through a gateway session, waited for until final.
    let reg = ok(tandem(&[
        "package",
        "register",
        "--key",
        &sup,
        "--id",
        "CLI-1",
        "--line",
        "SKU-1:valves:12",
        "--line",
        "SKU-2:gaskets: grey:3",
    ]));
    assert!(reg.stdout.contains("registered CLI-1 (2 lines") && reg.stdout.contains("final at L1 height"), "{reg:?}");
    fails(tandem(&["package", "register", "--key", &sup, "--id", "CLI-1", "--line", "SKU-1:valves:12"]), 2, "package_exists");
    // ... and directly on L1.
    let direct =
        ok(tandem(&["package", "register", "--key", &sup, "--id", "CLI-2", "--line", "SKU-9:pumps:1", "--direct", "--json"])).json();
    assert!(direct["l1_height"].as_u64().is_some(), "{direct}");

    // A supplier may not scan: refused by the gateway, exit 2.
    let s_sup = ok(tandem(&["session", "open", "--key", &sup])).stdout.trim().to_string();
    fails(
        tandem(&["session", "step", "--key", &sup, "--session", &s_sup, "--package", "CLI-1", "scan", "--station", "DOCK-1"]),
        2,
        "role_denied",
    );

    // The operator's session: the sequence comes from the gateway each time.
    let s_op = ok(tandem(&["session", "open", "--key", &op, "--json"])).json()["session_id"].as_str().expect("id").to_string();
    let step = |action: &[&str]| {
        let mut args = vec!["session", "step", "--key", op.as_str(), "--session", s_op.as_str(), "--package", "CLI-1"];
        args.extend_from_slice(action);
        tandem(&args)
    };
    let out = ok(step(&["scan", "--station", "DOCK-1"]));
    assert!(out.stdout.contains("step 1: scan CLI-1 -> scanned"), "{out:?}");
    // Options after the action work too.
    let out = ok(tandem(&["session", "step", "validate", "--key", &op, "--session", &s_op, "--package", "CLI-1"]));
    assert!(out.stdout.contains("step 2: validate CLI-1 -> validated"), "{out:?}");
    let out = ok(step(&["qc", "--pass", "--json"])).json();
    assert_eq!((out["seq"].as_u64(), out["stage"].as_str()), (Some(3), Some("inspected")), "{out}");
    // Handover before label: wrong stage, exit 2, and the session goes on.
    fails(step(&["handover", "--courier-key", &courier]), 2, "wrong_stage");
    ok(step(&["label", "--label-id", "LBL-CLI-1", "--destination", "Depot 7", "--priority", "normal", "--courier-key", &courier]));
    let courier_hex = net.key("courier-1").public().to_hex();
    let out = ok(step(&["handover", "--courier", &courier_hex]));
    assert!(out.stdout.contains("step 5: handover CLI-1 -> handed_over"), "{out:?}");
    let shown = ok(tandem(&["session", "show", &s_op, "--json"])).json();
    assert_eq!(shown["steps"].as_array().map(Vec::len), Some(5), "{shown}");
    assert_eq!(shown["status"]["state"], "open");
    let text = ok(tandem(&["session", "show", &s_op]));
    assert!(text.stdout.contains(": open") && text.stdout.contains("handover"), "{text:?}");
    // Only the owner may close it: another key is refused (exit 2), and
    // the session stays open.
    fails(tandem(&["session", "commit", "--key", &courier, "--session", &s_op]), 2, "not_session_owner");
    let done = ok(tandem(&["session", "commit", "--key", &op, "--session", &s_op, "--wait"]));
    assert!(done.stdout.contains("finalized: 5 steps final at L1 height"), "{done:?}");

    // The courier delivers; commit without waiting, then with --wait --json.
    let s_c = ok(tandem(&["session", "open", "--key", &courier])).stdout.trim().to_string();
    let out = ok(tandem(&[
        "session",
        "step",
        "--key",
        &courier,
        "--session",
        &s_c,
        "--package",
        "CLI-1",
        "deliver",
        "--recipient",
        "front desk",
    ]));
    assert!(out.stdout.contains("-> delivered"), "{out:?}");
    let c = ok(tandem(&["session", "commit", "--key", &courier, "--session", &s_c])).stdout;
    assert!(c.contains("committing") || c.contains("finalized"), "{c}");
    let fin = ok(tandem(&["session", "commit", "--key", &courier, "--session", &s_c, "--wait", "--json"])).json();
    assert_eq!(fin["status"]["state"], "finalized", "{fin}");
    // A committed session takes no more steps.
    assert_eq!(
        tandem(&["session", "step", "--key", &courier, "--session", &s_c, "--package", "CLI-1", "deliver", "--recipient", "x"]).code,
        2
    );

    // The package, text and JSON.
    let pkg = ok(tandem(&["package", "show", "CLI-1"]));
    assert!(pkg.stdout.contains("package CLI-1: delivered (final)"), "{pkg:?}");
    assert!(pkg.stdout.contains("SKU-2 x3 gaskets: grey"), "{pkg:?}");
    let pkg = ok(tandem(&["package", "show", "CLI-1", "--json"])).json();
    assert_eq!(pkg["final"]["stage"], "delivered", "{pkg}");
    assert_eq!(pkg["history"].as_array().map(Vec::len), Some(7), "{pkg}");
    fails(tandem(&["package", "show", "NO-SUCH"]), 2, "unknown_package");
    fails(tandem(&["session", "show", &"ab".repeat(32)]), 2, "unknown_session");

    // A config file gives gateway and key.
    let cfg = h.join("config.toml");
    std::fs::write(&cfg, format!("gateway = \"{url}\"\nkey = \"{op}\"\n")).expect("config");
    let id = ok(run(h, &["session", "open", "--config", p(&cfg)], &[])).stdout;
    assert_eq!(id.trim().len(), 64, "{id}");
}
