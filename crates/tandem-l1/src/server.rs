//! The ABCI transport: the four tower services CometBFT's connections talk
//! to, each a thin adapter over [`App`].
//!
//! - consensus: the only connection that changes state. Every request is
//!   handled synchronously inside `call`, so requests are answered strictly
//!   in the order CometBFT sent them (no buffer, no reordering).
//! - mempool: `CheckTx` is stateless, so it never waits for a block. A
//!   recheck (after each block, for transactions still in the mempool) is
//!   answered OK at once: the verdict on the same bytes cannot have changed.
//! - info: `Info` and `Query` read committed storage, never the block in
//!   progress.
//! - snapshot: state sync is not offered; every request gets an empty answer.
//!
//! No service ever returns an error for a request: an error closes the
//! connection and stops CometBFT.

use std::future::{ready, Ready};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tandem_core::SigMemo;
use tandem_state::Storage;
use tendermint::abci::request::CheckTxKind;
use tendermint::abci::response;
use tendermint::v0_38::abci::request::{ConsensusRequest, InfoRequest, MempoolRequest, SnapshotRequest};
use tendermint::v0_38::abci::response::{ConsensusResponse, InfoResponse, MempoolResponse, SnapshotResponse};
use tower::Service;
use tower_abci::BoxError;

use crate::app::App;

/// The consensus connection.
#[derive(Clone)]
pub struct Consensus(Arc<Mutex<App>>);

impl Service<ConsensusRequest> for Consensus {
    type Response = ConsensusResponse;
    type Error = BoxError;
    type Future = Ready<Result<ConsensusResponse, BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: ConsensusRequest) -> Self::Future {
        // A poisoned lock means an earlier call panicked mid-block: the
        // process must not go on deciding anything.
        let mut app = self.0.lock().expect("the app lock is never poisoned");
        let rsp = match req {
            ConsensusRequest::InitChain(r) => ConsensusResponse::InitChain(app.init_chain(r)),
            ConsensusRequest::PrepareProposal(r) => ConsensusResponse::PrepareProposal(App::prepare_proposal(r)),
            ConsensusRequest::ProcessProposal(r) => ConsensusResponse::ProcessProposal(App::process_proposal(&r)),
            ConsensusRequest::FinalizeBlock(r) => ConsensusResponse::FinalizeBlock(app.finalize_block(r)),
            ConsensusRequest::Commit => ConsensusResponse::Commit(app.commit()),
            ConsensusRequest::ExtendVote(_) => ConsensusResponse::ExtendVote(response::ExtendVote { vote_extension: Default::default() }),
            ConsensusRequest::VerifyVoteExtension(_) => ConsensusResponse::VerifyVoteExtension(response::VerifyVoteExtension::Accept),
        };
        ready(Ok(rsp))
    }
}

/// The mempool connection, sharing the app's signature memo.
#[derive(Clone)]
pub struct Mempool(Arc<SigMemo>);

impl Mempool {
    /// The mempool connection over `sigs` (the consensus side's memo).
    pub fn new(sigs: Arc<SigMemo>) -> Mempool {
        Mempool(sigs)
    }
}

impl Service<MempoolRequest> for Mempool {
    type Response = MempoolResponse;
    type Error = BoxError;
    type Future = Ready<Result<MempoolResponse, BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: MempoolRequest) -> Self::Future {
        let MempoolRequest::CheckTx(r) = req;
        let rsp = match r.kind {
            CheckTxKind::Recheck => response::CheckTx::default(),
            CheckTxKind::New => App::check_tx(&r.tx, &self.0),
        };
        ready(Ok(MempoolResponse::CheckTx(rsp)))
    }
}

/// The info connection.
#[derive(Clone)]
pub struct Info(Storage);

impl Service<InfoRequest> for Info {
    type Response = InfoResponse;
    type Error = BoxError;
    type Future = Ready<Result<InfoResponse, BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: InfoRequest) -> Self::Future {
        let rsp = match req {
            InfoRequest::Info(_) => InfoResponse::Info(App::info(&self.0)),
            InfoRequest::Query(q) => InfoResponse::Query(App::query(&self.0, &q)),
            InfoRequest::Echo(e) => InfoResponse::Echo(response::Echo { message: e.message }),
        };
        ready(Ok(rsp))
    }
}

/// The snapshot connection: state sync is not offered.
#[derive(Clone, Copy, Default)]
pub struct Snapshot;

impl Service<SnapshotRequest> for Snapshot {
    type Response = SnapshotResponse;
    type Error = BoxError;
    type Future = Ready<Result<SnapshotResponse, BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: SnapshotRequest) -> Self::Future {
        let rsp = match req {
            SnapshotRequest::ListSnapshots => SnapshotResponse::ListSnapshots(Default::default()),
            SnapshotRequest::OfferSnapshot(_) => SnapshotResponse::OfferSnapshot(Default::default()),
            SnapshotRequest::LoadSnapshotChunk(_) => SnapshotResponse::LoadSnapshotChunk(Default::default()),
            SnapshotRequest::ApplySnapshotChunk(_) => SnapshotResponse::ApplySnapshotChunk(Default::default()),
        };
        ready(Ok(rsp))
    }
}

/// The four services over one application.
pub fn services(app: App) -> (Consensus, Mempool, Info, Snapshot) {
    let storage = app.storage().clone();
    let sigs = app.sigs();
    (Consensus(Arc::new(Mutex::new(app))), Mempool(sigs), Info(storage), Snapshot)
}

/// Serve ABCI on `addr` (`tcp://host:port`, `host:port` or `unix:///path`)
/// until the listener fails.
pub async fn serve(app: App, addr: &str) -> anyhow::Result<()> {
    let (consensus, mempool, info, snapshot) = services(app);
    let server = tower_abci::v038::Server::builder()
        .consensus(consensus)
        .mempool(mempool)
        .info(info)
        .snapshot(snapshot)
        .finish()
        .expect("all four services are set");
    if let Some(path) = addr.strip_prefix("unix://") {
        clear_stale_socket(std::path::Path::new(path))?;
        server.listen_unix(path).await.map_err(|e| anyhow::anyhow!("ABCI server on {addr}: {e}"))
    } else {
        let hostport = addr.strip_prefix("tcp://").unwrap_or(addr);
        server.listen_tcp(hostport).await.map_err(|e| anyhow::anyhow!("ABCI server on {addr}: {e}"))
    }
}

/// A socket file left by an app that was killed would make the bind fail:
/// remove it, unless some process still accepts connections on it.
fn clear_stale_socket(path: &std::path::Path) -> anyhow::Result<()> {
    if !path.exists() {
        return Ok(());
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        anyhow::bail!("another process serves ABCI on {}", path.display());
    }
    std::fs::remove_file(path).map_err(|e| anyhow::anyhow!("removing the stale socket {}: {e}", path.display()))
}
