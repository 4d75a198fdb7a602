//! The torn write-ahead log: a gateway log of real records (session opens
//! and signed steps, as the gateway writes them, each appended and fsynced
//! through `tandem_wal`), then damaged on purpose, case after case, and
//! reopened.
//!
//! - A cut at any offset (what a crash mid-write leaves) must recover exactly
//!   the records that end before the cut: every record fsynced before the
//!   torn one is kept, nothing is invented.
//! - A flipped byte (media damage) must never come back as a record: inside
//!   the last record it reads as a torn tail (that record is dropped, the
//!   rest kept); anywhere before, the log refuses to open (`Corrupt`) rather
//!   than silently drop records written after the damage.
//!
//! Every recovered record must still decode as a gateway record.

use std::path::PathBuf;

use rand::{Rng as _, SeedableRng as _};
use serde_json::{json, Value};
use tandem_core::message::{Action, SessionOpen, Step};
use tandem_core::SecretKey;
use tandem_gateway::ledger::WalRecord;
use tandem_wal::{Wal, WalConfig, WalError};

/// Arguments of `tandem chaos torn-wal`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Damaged copies to reopen (half cut, half with a flipped byte).
    #[arg(long, default_value_t = 200)]
    pub cases: usize,
    /// Records in the log before it is damaged.
    #[arg(long, default_value_t = 48)]
    pub records: usize,
    /// Seed of offsets and bytes [default: random, printed].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Where `torn-wal.json` is written.
    #[arg(long, default_value = "docs/reliability")]
    pub out: PathBuf,
}

/// The records a gateway would log for `n` steps of a few sessions.
fn gateway_records(n: usize) -> Vec<Vec<u8>> {
    let owner = SecretKey::from_seed([7; 32]);
    let gateway = SecretKey::from_seed([9; 32]).public();
    let mut out = Vec::new();
    let mut seq = 0;
    let mut session = None;
    while out.len() < n {
        if seq == 0 || seq == 5 {
            let open = SessionOpen {
                chain_id: "tandem-chaos".into(),
                owner: owner.public(),
                gateway: Some(gateway),
                nonce: out.len() as u64,
                client_time_ms: 1,
            }
            .sign(&owner);
            session = Some(open.open.session_id());
            out.push(WalRecord::Opened(open));
            seq = 0;
            continue;
        }
        let Some(id) = session else { continue };
        seq += 1;
        let step = Step {
            chain_id: "tandem-chaos".into(),
            session: id,
            seq,
            actor: owner.public(),
            package_id: format!("PKG-{}", out.len()),
            action: Action::Scan { station: format!("DOCK-{seq}") },
            client_time_ms: 1,
        }
        .sign(&owner);
        out.push(WalRecord::Step { step, outcome: tandem_core::Hash([seq as u8; 32]) });
    }
    out.iter().map(|r| borsh::to_vec(r).expect("encoding to a Vec")).collect()
}

/// What one damaged copy gave back.
enum Verdict {
    Exact,
    Refused,
    Failed(String),
}

/// Run the scenario; returns (and writes) its figures.
pub async fn run(args: Args) -> anyhow::Result<Value> {
    let seed = crate::seed_or_random(args.seed);
    println!("torn-wal: seed {seed}, {} cases over a log of {} records", args.cases, args.records);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let tmp = tempfile::Builder::new().prefix("tandem-torn-wal-").tempdir()?;
    let payloads = gateway_records(args.records.max(2));
    // The pristine log, written as the gateway writes it: each record
    // appended and fsynced; the file length after each is where it ends.
    let pristine = tmp.path().join("pristine");
    let mut ends = Vec::new();
    {
        let (wal, _) = Wal::open(&pristine, WalConfig::default())?;
        for p in &payloads {
            wal.append(p.clone()).await?;
            ends.push(wal.stats().file_len);
        }
    }
    let bytes = std::fs::read(pristine.join("wal.log"))?;
    anyhow::ensure!(ends.last() == Some(&(bytes.len() as u64)), "the log's length is not the last record's end");

    let (mut cuts, mut cuts_exact, mut flips, mut flips_refused, mut flips_tail, mut kept) = (0u64, 0u64, 0u64, 0u64, 0u64, 0u64);
    let mut failures = Vec::new();
    for case in 0..args.cases {
        let dir = tmp.path().join(format!("case-{case}"));
        std::fs::create_dir_all(&dir)?;
        let mut damaged = bytes.clone();
        let cut = case % 2 == 0;
        let at = rng.gen_range(0..bytes.len());
        if cut {
            damaged.truncate(at);
        } else {
            damaged[at] ^= rng.gen_range(1..=255u8);
        }
        std::fs::write(dir.join("wal.log"), &damaged)?;
        // Records wholly before the damage.
        let intact = ends.iter().take_while(|&&e| e as usize <= at).count();
        let damaged_is_last = intact == payloads.len() - 1;
        let verdict = match Wal::open(&dir, WalConfig::default()) {
            Ok((_, recovered)) => {
                let decodes = recovered.records.iter().all(|r| borsh::from_slice::<WalRecord>(r).is_ok());
                if !decodes {
                    Verdict::Failed("a recovered record does not decode".into())
                } else if recovered.records == payloads[..intact] && (cut || damaged_is_last) {
                    kept += intact as u64;
                    Verdict::Exact
                } else {
                    Verdict::Failed(format!(
                        "{} at byte {at}: recovered {} records, {intact} lie wholly before the damage",
                        if cut { "cut" } else { "flip" },
                        recovered.records.len()
                    ))
                }
            }
            Err(WalError::Corrupt { .. }) if !cut && !damaged_is_last => Verdict::Refused,
            Err(e) => Verdict::Failed(format!("{} at byte {at}: {e}", if cut { "cut" } else { "flip" })),
        };
        match (cut, verdict) {
            (true, Verdict::Exact) => {
                cuts += 1;
                cuts_exact += 1;
            }
            (false, Verdict::Exact) => {
                flips += 1;
                flips_tail += 1;
            }
            (false, Verdict::Refused) => {
                flips += 1;
                flips_refused += 1;
            }
            (true, Verdict::Refused) => unreachable!("a cut is never refused by the match above"),
            (c, Verdict::Failed(why)) => {
                if c {
                    cuts += 1;
                } else {
                    flips += 1;
                }
                failures.push(why);
            }
        }
        std::fs::remove_dir_all(&dir)?;
    }
    let figures = json!({
        "scenario": "torn-wal",
        "holds": failures.is_empty(),
        "seed": seed,
        "records": payloads.len(),
        "log_bytes": bytes.len(),
        "cases": args.cases,
        "cuts": cuts,
        "cuts_recovered_exactly": cuts_exact,
        "records_kept_after_cuts": kept,
        "flips": flips,
        "flips_refused_as_corrupt": flips_refused,
        "flips_in_last_record_dropped_as_tail": flips_tail,
        "failures": failures.len(),
        "failure_examples": failures.iter().take(5).collect::<Vec<_>>(),
        "command": format!("tandem chaos torn-wal --cases {} --records {} --seed {seed}", args.cases, args.records),
    });
    let path = crate::write_figures(&args.out, "torn-wal", &figures)?;
    println!("wrote {}", path.display());
    println!(
        "torn-wal: cuts recovered {cuts_exact}/{cuts}, flips detected {}/{flips} ({flips_refused} refused, {flips_tail} tail), failures {}",
        flips_refused + flips_tail,
        failures.len()
    );
    Ok(figures)
}
