//! `tandem status`: what the gateway reports about itself and L1.

use super::{print_json, text};
use crate::fail::Failure;
use crate::settings::GlobalArgs;

pub async fn run(g: &GlobalArgs) -> Result<(), Failure> {
    let client = g.connect().await?;
    let s = client.status().await?;
    if g.json {
        print_json(&s);
        return Ok(());
    }
    println!("gateway:   {} at {}", text(&s["gateway"]), client.url());
    println!("chain:     {}", text(&s["chain_id"]));
    let reach = if s["l1_reachable"] == true { "reachable" } else { "UNREACHABLE" };
    println!("L1 height: {} ({reach})", text(&s["l1_height"]));
    for v in s["validators"].as_array().into_iter().flatten() {
        let h = if v["reachable"] == true { format!("height {}", text(&v["height"])) } else { "unreachable".into() };
        println!("  validator {}: {h}", text(&v["rpc"]));
    }
    let ss = &s["sessions"];
    println!(
        "sessions:  {} open, {} committing, {} finalized, {} rejected",
        text(&ss["open"]),
        text(&ss["committing"]),
        text(&ss["finalized"]),
        text(&ss["rejected"])
    );
    println!("pending:   {} steps not yet final", text(&s["pending_steps"]));
    println!("prediction mismatches: {}", text(&s["prediction_mismatches"]));
    if s["replica_diverged"] == true {
        println!("WARNING: this gateway's replica diverged from L1; it accepts nothing");
    }
    println!("uptime:    {} s", text(&s["uptime_s"]));
    Ok(())
}
