//! `tandem up --demo`: a realistic workload driven through the typed client
//! against the gateway `tandem up` serves.
//!
//! Each package runs one pipeline, end to end, in its own sessions:
//!
//! 1. a supplier (supplier-1 or -2) registers it with a signed manifest;
//! 2. the operator of the same lane (operator-1 at DOCK-1, operator-2 at
//!    DOCK-2) scans it, validates the counts as declared, and either runs the
//!    quality check itself or leaves it to inspector-1 (then the operator
//!    commits, the inspector checks in a session of its own, and the operator
//!    labels in a new one); about one in eight fails QC and is quarantined;
//!    for those the operator tries to label anyway, which the gateway refuses
//!    with `wrong_stage` (a refusal provoked on purpose);
//! 3. the package is labelled for courier-1 or -2 and handed over, and that
//!    courier delivers it.
//!
//! Every session is committed as soon as its steps are done; later sessions
//! build on the tentative state. A package is only ever in one pipeline, so
//! sessions never conflict: a rejection is a bug, and the summary counts it
//! as unexplained.
//!
//! Pace: a global pacer spaces steps (`slow`: one every 300 ms; a number: that
//! many a second; `max`: no spacing, 16 pipelines in flight, and no new
//! package while 32 committed sessions wait for L1, so that finality measures
//! L1 rather than an ever-growing queue). Finality is
//! measured from each commit request to the gateway's `session_finalized`
//! event (`GET /v1/events`), with a poll for sessions whose event was missed.

pub mod stats;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::seq::SliceRandom as _;
use rand::Rng as _;
use tandem_client::{actions, Client, ClientError, KeyFile, Session};
use tandem_core::message::Action;
use tandem_core::model::{ManifestLine, Priority, Stage};
use tandem_core::{Hash, SecretKey};
use tokio::sync::watch;

use self::stats::{End, Stats};
use crate::fail::Failure;

/// How fast the demo goes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Rate {
    /// A step every ~300 ms: watchable.
    Slow,
    /// As fast as the gateway answers.
    Max,
    /// This many steps a second.
    PerSecond(f64),
}

impl std::str::FromStr for Rate {
    type Err = String;
    fn from_str(s: &str) -> Result<Rate, String> {
        match s {
            "slow" => Ok(Rate::Slow),
            "max" => Ok(Rate::Max),
            n => match n.parse::<f64>() {
                Ok(v) if v > 0.0 && v.is_finite() => Ok(Rate::PerSecond(v)),
                _ => Err(format!("{s:?} is not slow, max, or a positive number of steps per second")),
            },
        }
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rate::Slow => f.write_str("slow"),
            Rate::Max => f.write_str("max"),
            Rate::PerSecond(v) => write!(f, "{v} steps/s"),
        }
    }
}

impl Rate {
    fn interval(self) -> Option<Duration> {
        match self {
            Rate::Slow => Some(Duration::from_millis(300)),
            Rate::Max => None,
            Rate::PerSecond(v) => Some(Duration::from_secs_f64(1.0 / v)),
        }
    }
    fn pipelines(self) -> usize {
        match self {
            Rate::Slow => 4,
            Rate::Max => 16,
            Rate::PerSecond(v) => ((v / 10.0) as usize).clamp(4, 32),
        }
    }
    /// Print a line per step (only when a human can read them).
    fn verbose(self) -> bool {
        self.interval().is_some_and(|i| i >= Duration::from_millis(50))
    }
}

/// Stop requests: the first (duration, Ctrl-C) lets open work finish and
/// waits for finality; the second gives up waiting.
#[derive(Clone)]
pub struct StopSignal {
    level: Arc<watch::Sender<u8>>,
}

impl Default for StopSignal {
    fn default() -> Self {
        StopSignal::new()
    }
}

impl StopSignal {
    pub fn new() -> StopSignal {
        StopSignal { level: Arc::new(watch::channel(0).0) }
    }
    /// Ask to stop; returns whether this was the first request.
    pub fn stop(&self, why: &str) -> bool {
        let first = self.level.send_if_modified(|l| {
            if *l == 0 {
                *l = 1;
                true
            } else {
                false
            }
        });
        if first {
            println!("stopping ({why}): finishing open sessions and waiting for L1 (Ctrl-C again to skip)");
        }
        first
    }
    /// Stop waiting.
    pub fn abort(&self) {
        self.level.send_if_modified(|l| {
            let changed = *l < 2;
            *l = 2;
            changed
        });
    }
    pub fn is_stopping(&self) -> bool {
        *self.level.borrow() >= 1
    }
    async fn reached(&self, level: u8) {
        let mut rx = self.level.subscribe();
        let _ = rx.wait_for(|l| *l >= level).await;
    }
    /// Resolves once a stop was requested.
    pub async fn stopped(&self) {
        self.reached(1).await
    }
    /// Resolves once waiting was given up.
    pub async fn aborted(&self) {
        self.reached(2).await
    }
}

/// Ctrl-C / SIGTERM: the first stops, the second aborts.
pub async fn forward_signals(stop: StopSignal) {
    loop {
        if tandem_devnet::shutdown_signal().await.is_err() {
            return;
        }
        if !stop.stop("signal") {
            println!("not waiting any longer");
            stop.abort();
        }
    }
}

/// What the demo needs from `tandem up`.
pub struct Options {
    /// The gateway.
    pub url: String,
    /// The devnet's demo keys.
    pub keys_dir: PathBuf,
    pub rate: Rate,
    /// Print the summary as JSON.
    pub json: bool,
}

struct Actor {
    name: String,
    key: SecretKey,
}

struct Cast {
    suppliers: [Actor; 2],
    operators: [Actor; 2],
    inspector: Actor,
    couriers: [Actor; 2],
}

fn load_actor(dir: &std::path::Path, name: &str) -> Result<Actor, Failure> {
    let file = KeyFile::load(&dir.join(format!("{name}.json")))?;
    let key = file.secret().map_err(|e| Failure::new(crate::fail::EXIT_LOCAL, "bad_key", format!("{name}: {e}")))?;
    Ok(Actor { name: name.to_string(), key })
}

impl Cast {
    fn load(dir: &std::path::Path) -> Result<Cast, Failure> {
        Ok(Cast {
            suppliers: [load_actor(dir, "supplier-1")?, load_actor(dir, "supplier-2")?],
            operators: [load_actor(dir, "operator-1")?, load_actor(dir, "operator-2")?],
            inspector: load_actor(dir, "inspector-1")?,
            couriers: [load_actor(dir, "courier-1")?, load_actor(dir, "courier-2")?],
        })
    }
}

const ITEMS: &[(&str, &str)] = &[
    ("SKU-1001", "hex bolts M8"),
    ("SKU-1002", "ball valves 1/2in"),
    ("SKU-1003", "gaskets DN50"),
    ("SKU-2001", "pressure gauges"),
    ("SKU-2002", "cable glands M20"),
    ("SKU-3001", "bearing 6204-2RS"),
    ("SKU-3002", "v-belts A42"),
    ("SKU-4001", "safety gloves L"),
];
const DESTINATIONS: &[&str] = &["Depot 7", "Rotterdam hub", "Plant 2 stores", "Lyon cross-dock", "Site office B"];
const RECIPIENTS: &[&str] = &["front desk", "stores clerk", "site manager", "goods-in bay 3"];
const ISSUES: &[&str] = &["crushed corner", "water damage", "seal broken", "label unreadable"];

/// Spaces steps evenly across all pipelines; nothing once stopping.
struct Pacer {
    interval: Option<Duration>,
    next: tokio::sync::Mutex<tokio::time::Instant>,
}

impl Pacer {
    async fn wait(&self, stop: &StopSignal) {
        let Some(iv) = self.interval else { return };
        if stop.is_stopping() {
            return;
        }
        let at = {
            let mut next = self.next.lock().await;
            let at = (*next).max(tokio::time::Instant::now());
            *next = at + iv;
            at
        };
        tokio::select! {
            _ = tokio::time::sleep_until(at) => {}
            _ = stop.stopped() => {}
        }
    }
}

struct Demo {
    client: Client,
    cast: Cast,
    stats: Stats,
    pacer: Pacer,
    stop: StopSignal,
    started: Instant,
    tag: String,
    verbose: bool,
    next_package: AtomicU64,
    /// Committed sessions not yet final past which no new package starts.
    backlog_max: usize,
}

/// The pipeline gave up (the reason is already counted and printed).
struct GaveUp;

/// One open session of one actor.
struct Open<'a> {
    demo: &'a Demo,
    actor: &'a Actor,
    session: Session,
    steps: usize,
}

impl Demo {
    fn log(&self, line: std::fmt::Arguments<'_>) {
        println!("[{:6.1}s] {line}", self.started.elapsed().as_secs_f64());
    }

    async fn open<'a>(&'a self, actor: &'a Actor) -> Result<Open<'a>, GaveUp> {
        match self.client.open_session(&actor.key).await {
            Ok(session) => Ok(Open { demo: self, actor, session, steps: 0 }),
            Err(e) => {
                self.failed(&actor.name, "open", &e);
                Err(GaveUp)
            }
        }
    }

    fn failed(&self, who: &str, what: &str, e: &ClientError) {
        match e {
            ClientError::Api { status, code, .. } if *status < 500 => self.stats.refused(code, false),
            ClientError::Api { code, .. } => self.stats.error(code),
            ClientError::Unreachable { .. } => self.stats.error("unreachable"),
            ClientError::Decode(_) => self.stats.error("bad_answer"),
            ClientError::Timeout(_) => self.stats.error("timeout"),
        }
        self.log(format_args!("UNEXPECTED: {who} {what}: {e}"));
    }

    fn ended(&self, id: &Hash, end: End) {
        if let Some((p, took)) = self.stats.end(id, &end) {
            match end {
                End::Final(h) if self.verbose => {
                    let at = h.map_or(String::new(), |h| format!(" at L1 height {h}"));
                    self.log(format_args!(
                        "final: {}'s session ({} step{}){at}, {} ms after commit",
                        p.owner,
                        p.steps,
                        if p.steps == 1 { "" } else { "s" },
                        took.as_millis()
                    ));
                }
                End::Final(_) => {}
                End::Rejected(code) => self.log(format_args!("UNEXPECTED: {}'s session {} was rejected: {code}", p.owner, id)),
            }
        }
    }

    /// One package, registered to delivered (or quarantined).
    async fn pipeline(&self, n: u64) -> Result<(), GaveUp> {
        let lane = (n % 2) as usize;
        let (supplier, operator) = (&self.cast.suppliers[lane], &self.cast.operators[lane]);
        let station = format!("DOCK-{}", lane + 1);
        let pkg = format!("PKG-{}-{n:04}", self.tag);
        let (lines, courier, passed, issue, by_inspector, destination, recipient) = {
            let mut rng = rand::thread_rng();
            let k = rng.gen_range(1..=3);
            let lines: Vec<ManifestLine> =
                ITEMS.choose_multiple(&mut rng, k).map(|(id, d)| actions::line(id, d, rng.gen_range(1..=48))).collect();
            (
                lines,
                &self.cast.couriers[rng.gen_range(0..2)],
                !rng.gen_bool(0.125),
                *ISSUES.choose(&mut rng).unwrap_or(&"damaged"),
                n % 3 == 2,
                *DESTINATIONS.choose(&mut rng).unwrap_or(&"Depot 7"),
                *RECIPIENTS.choose(&mut rng).unwrap_or(&"front desk"),
            )
        };
        let qc = || {
            if passed {
                actions::qc(true, &[])
            } else {
                actions::qc(false, &[issue])
            }
        };
        let label = || actions::label(&format!("LBL-{}-{n:04}", self.tag), destination, Priority::Normal, courier.key.public());

        // Start a new package only in a paced slot, and not once stopping.
        self.pacer.wait(&self.stop).await;
        if self.stop.is_stopping() {
            return Ok(());
        }
        let mut s = self.open(supplier).await?;
        let register = actions::register(&self.client.chain_id, &supplier.key, &pkg, &format!("DN-{}-{n:04}", self.tag), lines.clone());
        s.send(&pkg, register).await?;
        s.commit().await;
        if self.stop.is_stopping() {
            return Ok(());
        }

        let mut s = self.open(operator).await?;
        s.step(&pkg, actions::scan(&station)).await?;
        s.step(&pkg, actions::validate_as_declared(&lines)).await?;
        if by_inspector {
            s.commit().await;
            if self.stop.is_stopping() {
                return Ok(());
            }
            let mut i = self.open(&self.cast.inspector).await?;
            i.step(&pkg, qc()).await?;
            i.commit().await;
            if !passed || self.stop.is_stopping() {
                return Ok(());
            }
            s = self.open(operator).await?;
        } else {
            s.step(&pkg, qc()).await?;
            if !passed {
                s.expect_refusal(&pkg, label(), "wrong_stage").await;
                s.commit().await;
                return Ok(());
            }
        }
        s.step(&pkg, label()).await?;
        s.step(&pkg, actions::handover(courier.key.public())).await?;
        s.commit().await;
        if self.stop.is_stopping() {
            return Ok(());
        }

        let mut c = self.open(courier).await?;
        c.step(&pkg, actions::deliver(&format!("{destination}, {recipient}"))).await?;
        c.commit().await;
        Ok(())
    }

    async fn worker(self: Arc<Self>) {
        while !self.stop.is_stopping() {
            // Backpressure: L2 answers far faster than L1 finalizes; past a
            // bound, new packages wait for the backlog to shrink, so that
            // finality times measure L1 and not an ever-growing queue.
            while self.stats.pending_count() >= self.backlog_max && !self.stop.is_stopping() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let n = self.next_package.fetch_add(1, Ordering::Relaxed) + 1;
            let _ = self.pipeline(n).await;
        }
    }

    /// Follow `session_finalized` / `session_rejected` events.
    async fn follow_events(self: Arc<Self>) {
        loop {
            if let Ok(mut events) = self.client.events().await {
                while let Some(Ok(e)) = events.next().await {
                    let Some(id) = e["session"].as_str().and_then(|s| Hash::from_hex(s).ok()) else {
                        continue;
                    };
                    match e["type"].as_str() {
                        Some("session_finalized") if e["complete"] == true => self.ended(&id, End::Final(e["height"].as_u64())),
                        Some("session_rejected") => self.ended(&id, End::Rejected(e["code"].as_str().unwrap_or("rejected").to_string())),
                        _ => {}
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Ask about committed sessions whose end was not heard of in a while
    /// (events can be dropped when a subscriber lags).
    async fn sweep(self: Arc<Self>) {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            for id in self.stats.stale_pending(Duration::from_secs(3), 64) {
                let Ok(s) = self.client.session(&id).await else {
                    continue;
                };
                match s["status"]["state"].as_str() {
                    Some("finalized") => {
                        let h = s["steps"].as_array().and_then(|a| a.last()).and_then(|st| st["finality"]["height"].as_u64());
                        self.ended(&id, End::Final(h));
                    }
                    Some("rejected") => self.ended(&id, End::Rejected(s["status"]["code"].as_str().unwrap_or("rejected").into())),
                    _ => {}
                }
            }
        }
    }
}

impl Open<'_> {
    /// Wait for a paced slot, then send a step.
    async fn step(&mut self, pkg: &str, action: Action) -> Result<Stage, GaveUp> {
        self.demo.pacer.wait(&self.demo.stop).await;
        self.send(pkg, action).await
    }

    /// Send a step now.
    async fn send(&mut self, pkg: &str, action: Action) -> Result<Stage, GaveUp> {
        let kind = action.kind().name();
        let t = Instant::now();
        match self.session.step(pkg, action).await {
            Ok(r) => {
                let took = t.elapsed();
                self.steps += 1;
                let stage = r.package.stage;
                self.demo.stats.step(pkg, stage, took);
                if self.demo.verbose {
                    self.demo.log(format_args!(
                        "{:<11} {pkg:<16} {kind:<9} -> {:<12} {:.1} ms",
                        self.actor.name,
                        stage.name(),
                        took.as_secs_f64() * 1e3
                    ));
                }
                Ok(stage)
            }
            Err(e) => {
                self.demo.failed(&self.actor.name, &format!("{kind} {pkg}"), &e);
                self.commit().await;
                Err(GaveUp)
            }
        }
    }

    /// A step the gateway must refuse with `code`.
    async fn expect_refusal(&mut self, pkg: &str, action: Action, code: &str) {
        self.demo.pacer.wait(&self.demo.stop).await;
        let kind = action.kind().name();
        match self.session.step(pkg, action).await {
            Err(ClientError::Api { code: got, .. }) if got == code => {
                self.demo.stats.refused(code, true);
                if self.demo.verbose {
                    self.demo.log(format_args!("{:<11} {pkg:<16} {kind:<9} refused: {code} (on purpose)", self.actor.name));
                }
            }
            Ok(_) => {
                self.steps += 1;
                self.demo.stats.refused("accepted_unexpectedly", false);
                self.demo.log(format_args!("UNEXPECTED: {kind} {pkg} was accepted; expected {code}"));
            }
            Err(e) => self.demo.failed(&self.actor.name, &format!("{kind} {pkg}"), &e),
        }
    }

    /// Request the commit (finality is followed in the background).
    async fn commit(&mut self) {
        if self.steps == 0 {
            // Nothing to finalize; the gateway closes empty sessions at once.
            let _ = self.session.commit().await;
            return;
        }
        let id = self.session.id;
        self.demo.stats.committing(id, &self.actor.name, self.steps);
        match self.session.commit().await {
            Ok(r) if r["status"]["state"] == "finalized" => self.demo.ended(&id, End::Final(None)),
            Ok(_) => {}
            Err(e) => {
                self.demo.failed(&self.actor.name, "commit", &e);
                self.demo.stats.end(&id, &End::Rejected(e.code().unwrap_or("commit_failed").to_string()));
            }
        }
        self.steps = 0;
    }
}

async fn connect(url: &str, stop: &StopSignal) -> Result<Client, Failure> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match Client::connect(url).await {
            Ok(c) => return Ok(c),
            Err(e) if Instant::now() >= deadline || stop.is_stopping() => return Err(e.into()),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Run the demo until `stop`, then wait for finality and print the summary.
pub async fn run(opts: Options, stop: StopSignal) -> Result<(), Failure> {
    let cast = Cast::load(&opts.keys_dir)?;
    let client = connect(&opts.url, &stop).await?;
    let tag = format!("{:05x}", (tandem_client::http::now_ms() / 1000) & 0xf_ffff);
    let demo = Arc::new(Demo {
        client,
        cast,
        stats: Stats::default(),
        pacer: Pacer { interval: opts.rate.interval(), next: tokio::sync::Mutex::new(tokio::time::Instant::now()) },
        stop: stop.clone(),
        started: Instant::now(),
        tag,
        verbose: opts.rate.verbose(),
        next_package: AtomicU64::new(0),
        backlog_max: opts.rate.pipelines() * 2,
    });
    println!(
        "demo: rate {}, {} packages in flight, packages PKG-{}-NNNN; suppliers, operators at DOCK-1/2, inspector-1, couriers 1/2",
        opts.rate,
        opts.rate.pipelines(),
        demo.tag
    );
    let events = tokio::spawn(demo.clone().follow_events());
    let sweeper = tokio::spawn(demo.clone().sweep());
    let progress = tokio::spawn({
        let demo = demo.clone();
        let every = if demo.verbose { Duration::from_secs(10) } else { Duration::from_secs(1) };
        async move {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            loop {
                tick.tick().await;
                demo.log(format_args!("{}", demo.stats.progress(demo.started.elapsed())));
            }
        }
    });
    let workers: Vec<_> = (0..opts.rate.pipelines()).map(|_| tokio::spawn(demo.clone().worker())).collect();

    stop.stopped().await;
    let ran = demo.started.elapsed();
    // Let every pipeline finish the session it is in (steps go unpaced now).
    let finish = async {
        for w in workers {
            let _ = w.await;
        }
    };
    tokio::select! {
        _ = finish => {}
        _ = stop.aborted() => {}
        _ = tokio::time::sleep(Duration::from_secs(30)) => println!("some pipelines did not finish within 30 s"),
    }
    // Wait for what was committed to be final.
    let deadline = Instant::now() + Duration::from_secs(30);
    while demo.stats.pending_count() > 0 && Instant::now() < deadline {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = stop.aborted() => break,
        }
    }
    progress.abort();
    events.abort();
    sweeper.abort();
    let summary = demo.stats.summary(ran, &opts.rate.to_string());
    if opts.json {
        crate::commands::print_json(&summary.to_json());
    } else {
        print!("{}", summary.render());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse() {
        assert_eq!("slow".parse::<Rate>(), Ok(Rate::Slow));
        assert_eq!("max".parse::<Rate>(), Ok(Rate::Max));
        assert_eq!("25".parse::<Rate>(), Ok(Rate::PerSecond(25.0)));
        assert!("0".parse::<Rate>().is_err());
        assert!("fast".parse::<Rate>().is_err());
        assert!(Rate::Slow.verbose() && !Rate::Max.verbose() && !Rate::PerSecond(100.0).verbose());
    }
}
