//! The L1 application's logic, free of transport: one method per ABCI call
//! that matters, on plain values. [`crate::server`] wires these to CometBFT's
//! four ABCI connections.
//!
//! Persistence follows CometBFT's contract: `FinalizeBlock` executes the block
//! and computes the app hash without writing anything durable; `Commit` writes
//! height, state and app hash in one transaction. After a crash anywhere the
//! store is at the last committed height, `Info` reports it, and CometBFT
//! replays the blocks after it, reproducing the same app hashes.

use std::sync::Arc;

use bytes::Bytes;
use tandem_core::apply::{check_stateless, Ctx, TxResult};
use tandem_core::block::execute_block;
use tandem_core::genesis::Genesis;
use tandem_core::kv::{Overlay, WriteSet};
use tandem_core::limits::TX_BYTES_MAX;
use tandem_core::state::StateRead;
use tandem_core::workflow::INTAKE;
use tandem_core::SigMemo;
use tandem_state::{PendingCommit, Storage};
use tendermint::abci::types::ExecTxResult;
use tendermint::abci::{response, Event, EventAttributeIndexExt};
use tendermint::v0_38::abci::request;

/// The version string `Info` reports.
pub const APP_VERSION: &str = concat!("tandem-l1 ", env!("CARGO_PKG_VERSION"));
/// The application protocol version; bump on any change to what L1 decides.
pub const PROTOCOL_VERSION: u64 = 1;

/// Where to crash on purpose, for fault-injection tests of crash recovery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashPoint {
    /// Abort in `Commit` of this height, after `FinalizeBlock` computed the
    /// block and before anything was persisted.
    BeforeCommit(u64),
    /// Abort in `Commit` of this height, right after persisting.
    AfterCommit(u64),
}

impl CrashPoint {
    /// Parse `before-commit:<height>` or `after-commit:<height>`.
    pub fn parse(s: &str) -> Option<CrashPoint> {
        let (what, h) = s.split_once(':')?;
        let h = h.parse().ok()?;
        match what {
            "before-commit" => Some(CrashPoint::BeforeCommit(h)),
            "after-commit" => Some(CrashPoint::AfterCommit(h)),
            _ => None,
        }
    }
}

/// The L1 application.
pub struct App {
    storage: Storage,
    chain_id: Option<String>,
    /// Genesis writes, held until the first block commits them.
    genesis: Option<WriteSet>,
    /// The executed, uncommitted block.
    pending: Option<PendingCommit>,
    crash: Option<CrashPoint>,
    /// Signatures found valid by `CheckTx` (or an earlier block), so that
    /// `FinalizeBlock` does not verify them a second time.
    sigs: Arc<SigMemo>,
}

/// Block time as milliseconds since the Unix epoch (0 for times before it).
pub fn time_ms(t: tendermint::Time) -> u64 {
    u64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}

impl App {
    /// The application over `storage`.
    pub fn new(storage: Storage, crash: Option<CrashPoint>) -> App {
        let chain_id = storage.snapshot().chain_id();
        App { storage, chain_id, genesis: None, pending: None, crash, sigs: Arc::new(SigMemo::default()) }
    }

    /// The signature memo `CheckTx` fills and `FinalizeBlock` reads.
    pub fn sigs(&self) -> Arc<SigMemo> {
        self.sigs.clone()
    }

    /// A handle on the storage (for queries on other connections).
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// `Info`: the last committed height and app hash.
    pub fn info(storage: &Storage) -> response::Info {
        let height = storage.height();
        // Before the first block the chain's app hash is the genesis one
        // (empty): report that, not the empty tree's root.
        let hash = if height == 0 { Vec::new() } else { storage.app_hash().to_vec() };
        response::Info {
            data: "tandem".into(),
            version: APP_VERSION.into(),
            app_version: PROTOCOL_VERSION,
            last_block_height: height.try_into().expect("height fits"),
            last_block_app_hash: hash.try_into().expect("any bytes are an app hash"),
        }
    }

    /// `InitChain`: read the actors and gateways from `app_state`. They are
    /// written with the first block.
    pub fn init_chain(&mut self, req: request::InitChain) -> response::InitChain {
        let genesis = Genesis::from_json(&req.app_state_bytes).unwrap_or_else(|e| panic!("cannot start the chain: {e}"));
        let mut overlay = Overlay::new(std::collections::BTreeMap::<Vec<u8>, Vec<u8>>::new());
        genesis.apply(&req.chain_id, &mut overlay).unwrap_or_else(|e| panic!("cannot start the chain: {e}"));
        tracing::info!(chain_id = %req.chain_id, actors = genesis.actors.len(), gateways = genesis.gateways.len(), "init chain");
        self.chain_id = Some(req.chain_id);
        self.genesis = Some(overlay.into_writes());
        response::InitChain { consensus_params: None, validators: vec![], app_hash: Default::default() }
    }

    /// `CheckTx`: stateless admission (size, encoding, every signature). Never
    /// an error: a bad transaction gets a non-zero code and a log. Valid
    /// signatures are remembered in `sigs`.
    pub fn check_tx(tx: &[u8], sigs: &SigMemo) -> response::CheckTx {
        match check_stateless(tx, Some(sigs)) {
            Ok(_) => response::CheckTx::default(),
            Err(r) => {
                response::CheckTx { code: r.code.number().into(), log: r.to_string(), codespace: "tandem".into(), ..Default::default() }
            }
        }
    }

    /// `PrepareProposal`: keep transactions that decode, in order, within the
    /// byte budget CometBFT gives.
    pub fn prepare_proposal(req: request::PrepareProposal) -> response::PrepareProposal {
        let budget = usize::try_from(req.max_tx_bytes).unwrap_or(0);
        let mut used = 0usize;
        let mut txs = Vec::with_capacity(req.txs.len());
        for tx in req.txs {
            if tandem_core::Tx::decode(&tx).is_err() {
                continue;
            }
            if used + tx.len() > budget {
                break;
            }
            used += tx.len();
            txs.push(tx);
        }
        response::PrepareProposal { txs }
    }

    /// `ProcessProposal`: refuse a block that carries bytes no honest
    /// proposer would include.
    pub fn process_proposal(req: &request::ProcessProposal) -> response::ProcessProposal {
        let ok = req.txs.iter().all(|tx| tx.len() <= TX_BYTES_MAX && tandem_core::Tx::decode(tx).is_ok());
        if ok {
            response::ProcessProposal::Accept
        } else {
            response::ProcessProposal::Reject
        }
    }

    /// `FinalizeBlock`: execute every transaction, compute the app hash,
    /// persist nothing yet.
    pub fn finalize_block(&mut self, req: request::FinalizeBlock) -> response::FinalizeBlock {
        let height = req.height.value();
        assert_eq!(height, self.storage.height() + 1, "CometBFT asked for a block the store is not ready for");
        let chain_id = self.chain_id.clone().expect("InitChain or a committed genesis sets the chain id");
        let ctx = Ctx { chain_id: &chain_id, time_ms: time_ms(req.time), workflow: &INTAKE, sigs: Some(&self.sigs) };
        let preload = if height == 1 { self.genesis.clone().unwrap_or_default() } else { WriteSet::new() };
        let snapshot = self.storage.snapshot();
        let block = execute_block(&snapshot, &ctx, preload, &req.txs);
        let pending = self.storage.prepare(height, &block.writes).expect("the store can compute the next version");
        let app_hash = pending.app_hash();
        self.pending = Some(pending);
        let tx_results = block.results.iter().map(exec_result).collect::<Vec<_>>();
        let rejected = block.results.iter().filter(|r| r.code() != 0).count();
        tracing::debug!(height, txs = req.txs.len(), rejected, app_hash = %hex::encode(app_hash), "finalized block");
        response::FinalizeBlock {
            events: vec![],
            tx_results,
            validator_updates: vec![],
            consensus_param_updates: None,
            app_hash: app_hash.to_vec().try_into().expect("any bytes are an app hash"),
        }
    }

    /// `Commit`: make the finalized block durable.
    pub fn commit(&mut self) -> response::Commit {
        let pending = self.pending.take().expect("Commit follows FinalizeBlock");
        let height = pending.height();
        if self.crash == Some(CrashPoint::BeforeCommit(height)) {
            eprintln!("crash point before-commit:{height} reached; aborting");
            std::process::abort();
        }
        self.storage.commit(pending).expect("the store can persist a block");
        if height == 1 {
            self.genesis = None;
        }
        if self.crash == Some(CrashPoint::AfterCommit(height)) {
            eprintln!("crash point after-commit:{height} reached; aborting");
            std::process::abort();
        }
        response::Commit { data: Bytes::new(), retain_height: 0u32.into() }
    }

    /// `Query` at the latest committed height. Paths: `/package/<id>`,
    /// `/session/<hex id>`, `/actor/<hex key>`, `/gateway/<hex key>`. The
    /// value is the record as JSON; code 0 found, 1 unknown path or bad
    /// argument, 2 not found.
    pub fn query(storage: &Storage, req: &request::Query) -> response::Query {
        let snapshot = storage.snapshot();
        let height = snapshot.height();
        let reply = |code: u32, log: String, value: Vec<u8>| response::Query {
            code: code.into(),
            log,
            value: value.into(),
            height: height.try_into().expect("height fits"),
            key: Bytes::copy_from_slice(req.path.as_bytes()),
            ..Default::default()
        };
        let found = |v: Option<serde_json::Value>| match v {
            Some(v) => reply(0, String::new(), serde_json::to_vec(&v).expect("json")),
            None => reply(2, format!("nothing at {}", req.path), vec![]),
        };
        let path = req.path.trim_start_matches('/');
        let (kind, arg) = path.split_once('/').unwrap_or((path, ""));
        match kind {
            "package" => found(snapshot.package(arg).map(to_json)),
            "session" | "actor" | "gateway" => {
                let Ok(bytes) = tandem_core::Hash::from_hex(arg) else {
                    return reply(1, format!("{kind} wants a 64-digit hex id"), vec![]);
                };
                match kind {
                    "session" => found(snapshot.session(&bytes).map(to_json)),
                    "actor" => found(snapshot.actor(&tandem_core::PublicKey(bytes.0)).map(to_json)),
                    _ => found(snapshot.gateway(&tandem_core::PublicKey(bytes.0)).map(to_json)),
                }
            }
            _ => reply(1, format!("unknown query path {:?}", req.path), vec![]),
        }
    }
}

fn to_json<T: serde::Serialize>(v: T) -> serde_json::Value {
    serde_json::to_value(v).expect("records serialize to JSON")
}

/// The result CometBFT records for one transaction: the code, the
/// `TxResult` as JSON in `data`, the rejection in `log`, and a `tandem`
/// event with indexed attributes so clients can follow a session's finality
/// over the websocket (`tandem.session='<hex>'`).
fn exec_result(result: &TxResult) -> ExecTxResult {
    let (kind, session, status) = match result {
        TxResult::Committed { session, .. } => ("session_batch", Some(*session), "finalized"),
        TxResult::Direct { session, .. } => ("direct_step", Some(*session), "finalized"),
        TxResult::Admin => ("admin", None, "finalized"),
        TxResult::Rejected { session, .. } => ("rejected", *session, "rejected"),
    };
    let mut attrs = vec![("kind", kind.to_string()).index(), ("status", status.to_string()).index()];
    if let Some(s) = session {
        attrs.push(("session", s.to_hex()).index());
    }
    match result {
        TxResult::Committed { first_seq, last_seq, closed, .. } => {
            attrs.push(("first_seq", first_seq.to_string()).no_index());
            attrs.push(("last_seq", last_seq.to_string()).no_index());
            attrs.push(("closed", closed.to_string()).no_index());
        }
        TxResult::Direct { seq, .. } => attrs.push(("last_seq", seq.to_string()).no_index()),
        TxResult::Rejected { index, rejection, .. } => {
            attrs.push(("reason", rejection.code.name().to_string()).index());
            if let Some(i) = index {
                attrs.push(("index", i.to_string()).no_index());
            }
        }
        TxResult::Admin => {}
    }
    let log = match result {
        TxResult::Rejected { rejection, .. } => rejection.to_string(),
        _ => String::new(),
    };
    ExecTxResult {
        code: result.code().into(),
        data: serde_json::to_vec(result).expect("json").into(),
        log,
        codespace: if result.code() == 0 { String::new() } else { "tandem".into() },
        events: vec![Event::new("tandem", attrs)],
        ..Default::default()
    }
}
