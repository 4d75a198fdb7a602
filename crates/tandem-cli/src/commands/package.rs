//! `tandem package register|show`: a supplier registers a package with a
//! signed manifest (through a one-step gateway session, or straight to L1 with
//! `--direct`); anyone looks at a package's state and history.

use std::time::Duration;

use serde_json::{json, Value};
use tandem_client::actions;
use tandem_core::model::ManifestLine;

use super::{print_json, short, text};
use crate::fail::Failure;
use crate::settings::{GlobalArgs, KeyArg};

#[derive(clap::Subcommand)]
pub enum PackageCommand {
    /// Register a package with a manifest signed by the supplier's key.
    ///
    /// By default through a one-step gateway session that is committed and
    /// waited for until final on L1; with --direct as one transaction straight
    /// to L1 (answered once it is in a block).
    ///
    /// Example: tandem package register --key .devnet/keys/supplier-1.json --id PKG-1 --line SKU-1:valves:12 --line SKU-2:gaskets:40
    Register {
        #[command(flatten)]
        key: KeyArg,
        /// Package id (letters, digits and - _ . :).
        #[arg(long)]
        id: String,
        /// A manifest line as ITEM:DESCRIPTION:QTY (repeat, or list several).
        #[arg(long = "line", value_name = "ITEM:DESCRIPTION:QTY", required = true, num_args = 1..)]
        lines: Vec<String>,
        /// The supplier's delivery-note id [default: DN-<id>].
        #[arg(long, value_name = "DN")]
        delivery_note: Option<String>,
        /// Send the step straight to L1 instead of through a gateway session.
        #[arg(long)]
        direct: bool,
        /// How long to wait for finality, in seconds.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
    /// Show a package: stage (tentative and final), manifest, QC, label, history.
    ///
    /// Example: tandem package show PKG-1
    Show {
        /// Package id.
        id: String,
    },
}

/// Parse `ITEM:DESCRIPTION:QTY` (the description may itself hold colons).
pub fn parse_line(s: &str) -> Result<ManifestLine, Failure> {
    let bad = || Failure::usage(format!("bad --line {s:?}: expected ITEM:DESCRIPTION:QTY, e.g. SKU-1:valves:12"));
    let (item, rest) = s.split_once(':').ok_or_else(bad)?;
    let (description, qty) = rest.rsplit_once(':').ok_or_else(bad)?;
    let quantity: u32 = qty.trim().parse().map_err(|_| bad())?;
    if item.is_empty() {
        return Err(bad());
    }
    Ok(actions::line(item, description, quantity))
}

pub async fn run(cmd: PackageCommand, g: &GlobalArgs) -> Result<(), Failure> {
    match cmd {
        PackageCommand::Register { key, id, lines, delivery_note, direct, timeout } => {
            let lines = lines.iter().map(|l| parse_line(l)).collect::<Result<Vec<_>, _>>()?;
            let (_, secret) = g.load_key(&key)?;
            let client = g.connect().await?;
            let dn = delivery_note.unwrap_or_else(|| format!("DN-{id}"));
            let n_lines = lines.len();
            let action = actions::register(&client.chain_id, &secret, &id, &dn, lines);
            if direct {
                let r = client.direct_step(&secret, &id, action).await?;
                if g.json {
                    print_json(&r);
                } else {
                    println!("registered {id} ({n_lines} lines, delivery note {dn}) directly on L1");
                    println!("final at L1 height {} (tx {})", text(&r["l1_height"]), text(&r["tx_hash"]));
                }
                return Ok(());
            }
            let mut session = client.open_session(&secret).await?;
            let reply = match session.step(&id, action).await {
                Ok(r) => r,
                Err(e) => {
                    // Nothing was accepted: close the empty session.
                    let _ = session.commit().await;
                    return Err(e.into());
                }
            };
            if !g.json {
                println!("registered {id} ({n_lines} lines, delivery note {dn}): {} (tentative)", reply.package.stage.name());
                println!("session {} committed; waiting for L1 ...", session.id);
            }
            let done = session.commit_and_wait(Duration::from_secs(timeout)).await?;
            let fin = &done["steps"][0]["finality"];
            if g.json {
                print_json(&json!({
                    "package_id": id,
                    "session_id": session.id,
                    "stage": reply.package.stage,
                    "outcome_hash": reply.outcome_hash,
                    "l1_height": fin["height"],
                    "tx_hash": fin["tx_hash"],
                }));
            } else {
                println!("final at L1 height {} (tx {})", text(&fin["height"]), text(&fin["tx_hash"]));
            }
            Ok(())
        }
        PackageCommand::Show { id } => {
            let client = g.connect().await?;
            let p = client.package(&id).await?;
            if g.json {
                print_json(&p);
            } else {
                print_package(&p);
            }
            Ok(())
        }
    }
}

fn print_package(p: &Value) {
    let view = if p["tentative"].is_null() { &p["final"] } else { &p["tentative"] };
    let fin_stage = &p["final"]["stage"];
    let stage = text(&view["stage"]);
    let note = if fin_stage.is_null() {
        "tentative; not yet on L1".to_string()
    } else if *fin_stage == view["stage"] {
        "final".to_string()
    } else {
        format!("tentative; final on L1: {}", text(fin_stage))
    };
    println!("package {}: {stage} ({note})", text(&p["package_id"]));
    println!("  supplier:      {}", text(&view["supplier"]));
    println!("  delivery note: {}", text(&view["delivery_note_id"]));
    for l in view["manifest"]["lines"].as_array().into_iter().flatten() {
        println!("  manifest:      {} x{} {}", text(&l["item_id"]), text(&l["quantity"]), text(&l["description"]));
    }
    for q in view["qc"].as_array().into_iter().flatten() {
        let verdict = if q["passed"] == true { "passed".to_string() } else { "failed".to_string() };
        let issues: Vec<String> = q["issues"].as_array().into_iter().flatten().map(text).collect();
        let issues = if issues.is_empty() { String::new() } else { format!(": {}", issues.join("; ")) };
        println!("  qc:            {verdict}{issues} (inspector {})", short(&text(&q["inspector"])));
    }
    if !view["label"].is_null() {
        let l = &view["label"];
        println!(
            "  label:         {} to {} ({}), courier {}",
            text(&l["label_id"]),
            text(&l["destination"]),
            text(&l["priority"]),
            short(&text(&l["courier"]))
        );
    }
    println!("  history (gateway's L1 height {}):", text(&p["l1_height"]));
    for h in p["history"].as_array().into_iter().flatten() {
        let fin = if h["state"] == "final" { format!("final at height {}", text(&h["l1_height"])) } else { "tentative".into() };
        println!(
            "    {:<9} -> {:<12} by {}  session {}#{}  {fin}",
            text(&h["action"]),
            text(&h["stage"]),
            short(&text(&h["actor"])),
            short(&text(&h["session"])),
            text(&h["seq"]),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_lines_parse_with_colons_in_the_description() {
        let l = parse_line("SKU-1:valves: 1/2\" brass:12").expect("parse");
        assert_eq!((l.item_id.as_str(), l.description.as_str(), l.quantity), ("SKU-1", "valves: 1/2\" brass", 12));
        assert!(parse_line("SKU-1:12").is_err());
        assert!(parse_line("SKU-1:valves:many").is_err());
        assert!(parse_line(":valves:1").is_err());
    }
}
