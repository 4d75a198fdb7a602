//! `tandem session open|step|commit|show`: drive a gateway session by hand.
//!
//! The CLI keeps no local state: `step` asks the gateway how many steps the
//! session holds (`GET /v1/sessions/{id}`) and signs the next sequence number.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tandem_client::actions;
use tandem_core::message::Action;
use tandem_core::model::{Package, Priority};
use tandem_core::{Hash, PublicKey};

use super::{print_json, short, text};
use crate::fail::Failure;
use crate::settings::{load_key_file, GlobalArgs, KeyArg};

#[derive(clap::Subcommand)]
pub enum SessionCommand {
    /// Open a session owned by the key's actor; prints its id.
    ///
    /// Example: tandem session open --key .devnet/keys/operator-1.json
    Open {
        #[command(flatten)]
        key: KeyArg,
    },
    /// Sign and send the session's next step.
    ///
    /// Example: tandem session step --key .devnet/keys/operator-1.json --session 3fa2... --package PKG-1 scan --station DOCK-1
    Step(StepArgs),
    /// Close a session for steps and have the gateway finalize it on L1.
    /// Only the session's owner may: the close is signed with its key, and
    /// names the session's last step (asked from the gateway).
    ///
    /// Example: tandem session commit --key .devnet/keys/operator-1.json --session 3fa2... --wait
    Commit {
        #[command(flatten)]
        key: KeyArg,
        /// Session id (64 hex digits).
        #[arg(long, value_name = "ID")]
        session: String,
        /// Wait until every step is final on L1.
        #[arg(long)]
        wait: bool,
        /// How long to wait, in seconds.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
    /// Show a session: owner, state, and each step (tentative or final).
    ///
    /// Example: tandem session show 3fa2...
    Show {
        /// Session id (64 hex digits).
        id: String,
    },
}

#[derive(clap::Args)]
pub struct StepArgs {
    /// Key file of the session's owner [or TANDEM_KEY, or `key` in the config file].
    #[arg(long, global = true, env = "TANDEM_KEY", value_name = "FILE")]
    key: Option<PathBuf>,
    /// Session id (64 hex digits).
    #[arg(long, global = true, value_name = "ID")]
    session: Option<String>,
    /// The package the step acts on.
    #[arg(long, global = true, value_name = "ID")]
    package: Option<String>,
    #[command(subcommand)]
    action: StepAction,
}

#[derive(clap::Subcommand)]
pub enum StepAction {
    /// An operator scans the package at a station.
    ///
    /// Example: tandem session step --key op.json --session ID --package PKG-1 scan --station DOCK-1
    Scan {
        /// Station id.
        #[arg(long)]
        station: String,
    },
    /// An operator validates the contents: counts as declared in the
    /// package's manifest (fetched from the gateway).
    ///
    /// Example: tandem session step --key op.json --session ID --package PKG-1 validate
    Validate,
    /// A quality check by an inspector or operator.
    ///
    /// Example: tandem session step --key inspector.json --session ID --package PKG-1 qc --fail --issue "crushed corner"
    Qc {
        /// The package passed.
        #[arg(long, conflicts_with = "fail", required_unless_present = "fail")]
        pass: bool,
        /// The package failed (give at least one --issue).
        #[arg(long)]
        fail: bool,
        /// What was found (repeat for several).
        #[arg(long, value_name = "TEXT")]
        issue: Vec<String>,
    },
    /// An operator labels the package for a courier.
    ///
    /// Example: tandem session step --key op.json --session ID --package PKG-1 label --label-id LBL-1 --destination "Depot 7" --courier-key courier-1.json
    Label {
        /// Label id.
        #[arg(long)]
        label_id: String,
        /// Where the package goes.
        #[arg(long)]
        destination: String,
        /// low, normal, high or urgent.
        #[arg(long, value_enum, default_value_t = PriorityArg::Normal)]
        priority: PriorityArg,
        #[command(flatten)]
        courier: CourierArg,
    },
    /// An operator hands the package over to the courier on its label.
    ///
    /// Example: tandem session step --key op.json --session ID --package PKG-1 handover --courier-key courier-1.json
    Handover {
        #[command(flatten)]
        courier: CourierArg,
    },
    /// The courier delivers the package.
    ///
    /// Example: tandem session step --key courier-1.json --session ID --package PKG-1 deliver --recipient "Depot 7 front desk"
    Deliver {
        /// Who received it.
        #[arg(long)]
        recipient: String,
    },
}

#[derive(clap::ValueEnum, Clone, Copy)]
pub enum PriorityArg {
    Low,
    Normal,
    High,
    Urgent,
}

impl From<PriorityArg> for Priority {
    fn from(p: PriorityArg) -> Priority {
        match p {
            PriorityArg::Low => Priority::Low,
            PriorityArg::Normal => Priority::Normal,
            PriorityArg::High => Priority::High,
            PriorityArg::Urgent => Priority::Urgent,
        }
    }
}

/// The courier, by key file or public key.
#[derive(clap::Args)]
#[group(required = true, multiple = false)]
pub struct CourierArg {
    /// The courier's key file (only its public key is used).
    #[arg(long, value_name = "FILE")]
    courier_key: Option<PathBuf>,
    /// The courier's public key (64 hex digits).
    #[arg(long, value_name = "HEX")]
    courier: Option<String>,
}

impl CourierArg {
    fn public(&self) -> Result<PublicKey, Failure> {
        match (&self.courier_key, &self.courier) {
            (Some(path), _) => Ok(load_key_file(path)?.1.public()),
            (None, Some(hex)) => PublicKey::from_hex(hex).map_err(|_| Failure::usage(format!("--courier {hex:?} is not 64 hex digits"))),
            (None, None) => Err(Failure::usage("name the courier with --courier-key FILE or --courier HEX")),
        }
    }
}

/// Parse a session id.
pub fn parse_session(s: &str) -> Result<Hash, Failure> {
    Hash::from_hex(s.trim()).map_err(|_| Failure::usage(format!("session id {s:?} is not 64 hex digits")))
}

pub async fn run(cmd: SessionCommand, g: &GlobalArgs) -> Result<(), Failure> {
    match cmd {
        SessionCommand::Open { key } => {
            let (file, secret) = g.load_key(&key)?;
            let client = g.connect().await?;
            let s = client.open_session(&secret).await?;
            if g.json {
                print_json(&json!({ "session_id": s.id, "owner": secret.public(), "gateway": client.gateway }));
            } else {
                println!("{}", s.id);
                eprintln!("opened a session for {} ({}) at {}", file.name, file.role, client.url());
            }
            Ok(())
        }
        SessionCommand::Step(args) => step(args, g).await,
        SessionCommand::Commit { key, session, wait, timeout } => {
            let id = parse_session(&session)?;
            let (_, secret) = g.load_key(&key)?;
            let client = g.connect().await?;
            let last_seq = client.last_seq(&id).await?;
            let r = client.commit(&secret, &id, last_seq).await?;
            if !wait {
                if g.json {
                    print_json(&r);
                } else {
                    println!("session {id}: {}", text(&r["status"]["state"]));
                }
                return Ok(());
            }
            if !g.json {
                println!("session {id}: {}; waiting for L1 ...", text(&r["status"]["state"]));
            }
            let started = Instant::now();
            let done = client.wait_final(&id, Duration::from_secs(timeout)).await?;
            if g.json {
                print_json(&done);
            } else {
                let heights: Vec<u64> =
                    done["steps"].as_array().into_iter().flatten().filter_map(|s| s["finality"]["height"].as_u64()).collect();
                let n = done["steps"].as_array().map_or(0, Vec::len);
                match (heights.iter().min(), heights.iter().max()) {
                    (Some(lo), Some(hi)) if lo != hi => {
                        println!("finalized: {n} steps final at L1 heights {lo}..{hi} (waited {} ms)", started.elapsed().as_millis())
                    }
                    (Some(h), _) => {
                        println!("finalized: {n} steps final at L1 height {h} (waited {} ms)", started.elapsed().as_millis())
                    }
                    _ => println!("finalized ({n} steps)"),
                }
            }
            Ok(())
        }
        SessionCommand::Show { id } => {
            let id = parse_session(&id)?;
            let client = g.connect().await?;
            let s = client.session(&id).await?;
            if g.json {
                print_json(&s);
            } else {
                print_session(&s);
            }
            Ok(())
        }
    }
}

async fn step(args: StepArgs, g: &GlobalArgs) -> Result<(), Failure> {
    let session = args.session.as_deref().ok_or_else(|| Failure::usage("--session ID is required"))?;
    let id = parse_session(session)?;
    let package = args.package.clone().ok_or_else(|| Failure::usage("--package ID is required"))?;
    let (_, secret) = g.load_key(&KeyArg { key: args.key.clone() })?;
    // Resolve local inputs before any request.
    let local_action = match &args.action {
        StepAction::Scan { station } => Some(actions::scan(station)),
        StepAction::Validate => None,
        StepAction::Qc { pass, fail, issue } => {
            debug_assert!(*pass != *fail);
            let issues: Vec<&str> = issue.iter().map(String::as_str).collect();
            Some(actions::qc(*pass, &issues))
        }
        StepAction::Label { label_id, destination, priority, courier } => {
            Some(actions::label(label_id, destination, (*priority).into(), courier.public()?))
        }
        StepAction::Handover { courier } => Some(actions::handover(courier.public()?)),
        StepAction::Deliver { recipient } => Some(actions::deliver(recipient)),
    };
    let client = g.connect().await?;
    let action: Action = match local_action {
        Some(a) => a,
        None => {
            // Count as declared: the manifest the supplier signed.
            let p = client.package(&package).await?;
            let view = if p["tentative"].is_null() { p["final"].clone() } else { p["tentative"].clone() };
            let pkg: Package = serde_json::from_value(view)
                .map_err(|e| Failure::new(crate::fail::EXIT_UNAVAILABLE, "bad_answer", format!("package {package}: {e}")))?;
            actions::validate_as_declared(&pkg.manifest.lines)
        }
    };
    let mut session = client.resume_session(&secret, id).await?;
    let seq = session.next_seq;
    let kind = action.kind().name();
    tracing::debug!(%id, seq, kind, %package, "sending step");
    let started = Instant::now();
    let reply = session.step(&package, action).await?;
    let ms = started.elapsed().as_secs_f64() * 1e3;
    if g.json {
        print_json(&json!({
            "session": reply.session,
            "seq": reply.seq,
            "package_id": package,
            "action": kind,
            "stage": reply.package.stage,
            "outcome": reply.outcome,
            "outcome_hash": reply.outcome_hash,
            "receipt": reply.receipt,
            "latency_ms": ms,
        }));
    } else {
        println!("step {seq}: {kind} {package} -> {} (tentative, answered in {ms:.1} ms)", reply.package.stage.name());
        println!("receipt: gateway {} promises outcome {}", short(&reply.receipt.gateway.to_hex()), reply.outcome_hash);
    }
    Ok(())
}

fn print_session(s: &Value) {
    let st = &s["status"];
    let state = text(&st["state"]);
    let detail = if state == "rejected" {
        format!(" ({} at step {}: {})", text(&st["code"]), text(&st["seq"]), text(&st["detail"]))
    } else {
        String::new()
    };
    println!("session {}: {state}{detail}", text(&s["session_id"]));
    println!("  owner:     {}", text(&s["owner"]));
    println!("  final seq: {}", text(&s["final_seq"]));
    if let Some(note) = s["note"].as_str() {
        println!("  note:      {note}");
    }
    for step in s["steps"].as_array().into_iter().flatten() {
        let fin =
            if step["state"] == "final" { format!("final at height {}", text(&step["finality"]["height"])) } else { "tentative".into() };
        println!(
            "  #{:<3} {:<9} {:<16} -> {:<12} {fin}",
            text(&step["seq"]),
            text(&step["action"]),
            text(&step["package_id"]),
            text(&step["stage"])
        );
    }
}
