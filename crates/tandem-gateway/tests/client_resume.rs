//! The Rust client resumes after a lost answer: a gateway over a `FakeL1`,
//! served on loopback behind a proxy that lets the gateway take a step and
//! then loses its answer (a 502, a connection cut mid-answer). The client
//! sends the same bytes again and gets the original receipt; its session
//! keeps its sequence numbers.

#![allow(clippy::unwrap_used)]

mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use http_body_util::BodyExt as _;
use support::Harness;
use tandem_client::{Client, Retry};
use tandem_core::message::Receipt;
use tandem_core::testkit::register;
use tower::ServiceExt as _;

/// How the proxy loses the answer to the n-th step POST (0-based).
#[derive(Clone, Copy, Debug)]
enum Loss {
    /// Answer 502 after the gateway answered.
    BadGateway,
    /// Start a 200 answer and cut the connection inside its body.
    Cut,
}

/// Bodies of every step POST the proxy forwarded, in order.
type Seen = Arc<Mutex<Vec<Bytes>>>;

/// Serve `app` on 127.0.75.1 behind a proxy that loses the answers `losses`
/// names (by the index of the step POST), and answers 502 to reading a step
/// back while `reads_fail` is set; returns its base URL.
async fn serve_lossy(app: Router, losses: Vec<(usize, Loss)>) -> (String, Seen, Arc<AtomicBool>, tokio::task::JoinHandle<()>) {
    let seen: Seen = Arc::default();
    let reads_fail = Arc::new(AtomicBool::new(false));
    let (seen_in, reads_fail_in) = (seen.clone(), reads_fail.clone());
    let proxy = Router::new().fallback(move |req: Request| {
        let (app, seen, losses, reads_fail) = (app.clone(), seen_in.clone(), losses.clone(), reads_fail_in.clone());
        async move {
            let is_step = req.method() == Method::POST && req.uri().path().ends_with("/steps");
            let is_read_back = req.method() == Method::GET && req.uri().path().contains("/steps/");
            if is_read_back && reads_fail.load(Ordering::SeqCst) {
                return (StatusCode::BAD_GATEWAY, "upstream went away").into_response();
            }
            if !is_step {
                return app.oneshot(req).await.into_response();
            }
            let (parts, body) = req.into_parts();
            let bytes = body.collect().await.unwrap().to_bytes();
            let n = {
                let mut seen = seen.lock().unwrap();
                seen.push(bytes.clone());
                seen.len() - 1
            };
            // The gateway takes the step (durable) whatever happens to its answer.
            let answer = app.oneshot(Request::from_parts(parts, Body::from(bytes))).await.into_response();
            match losses.iter().find(|(i, _)| *i == n).map(|(_, l)| *l) {
                None => answer,
                Some(Loss::BadGateway) => (StatusCode::BAD_GATEWAY, "upstream went away").into_response(),
                Some(Loss::Cut) => {
                    let cut =
                        futures::stream::iter([Ok(Bytes::from_static(b"{\"session\":")), Err(std::io::Error::other("connection lost"))]);
                    Response::builder()
                        .status(StatusCode::OK)
                        .header("content-type", "application/json")
                        .body(Body::from_stream(cut))
                        .unwrap()
                }
            }
        }
    });
    let listener = tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::new(127, 0, 75, 1), 0))).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, proxy).await;
    });
    (format!("http://{addr}"), seen, reads_fail, server)
}

#[tokio::test]
async fn a_session_resends_a_step_whose_answer_was_lost_and_keeps_its_seqs() {
    let h = Harness::start(|_| {}).await;
    let sup = h.cast.supplier.clone();
    let (base, seen, _, server) = serve_lossy(h.app.clone(), vec![(0, Loss::BadGateway), (2, Loss::Cut)]).await;
    let mut client = Client::connect(&base).await.unwrap();
    client.retry = Retry { attempts: 4, backoff: std::time::Duration::from_millis(5), backoff_max: std::time::Duration::from_millis(20) };
    let mut session = client.open_session(&sup).await.unwrap();

    let first = session.step("P", register(&sup, "P")).await.expect("answered on the re-send");
    assert_eq!(first.seq, 1);
    let second = session.step("Q", register(&sup, "Q")).await.expect("answered on the re-send");
    assert_eq!(second.seq, 2);
    assert_eq!(session.next_seq, 3);
    assert!(session.unanswered.is_none());

    // Each step was sent twice, byte for byte; the gateway holds each once.
    let bodies = seen.lock().unwrap().clone();
    assert_eq!(bodies.len(), 4, "two steps, each sent again once");
    assert_eq!(bodies[0], bodies[1]);
    assert_eq!(bodies[2], bodies[3]);
    let view = client.session(&session.id).await.unwrap();
    assert_eq!(view["steps"].as_array().unwrap().len(), 2, "{view}");
    // The receipts are the ones the gateway holds for the steps.
    for (reply, seq) in [(&first, 1), (&second, 2)] {
        assert!(reply.receipt.verify());
        let held = client.step_view(&session.id, seq).await.unwrap().expect("held");
        let receipt: Receipt = serde_json::from_value(held["receipt"].clone()).unwrap();
        assert_eq!(receipt, reply.receipt);
    }
    assert!(client.step_view(&session.id, 3).await.unwrap().is_none());
    server.abort();
}

#[tokio::test]
async fn when_every_answer_is_lost_the_step_is_read_back_and_its_seq_never_reused() {
    let h = Harness::start(|_| {}).await;
    let sup = h.cast.supplier.clone();
    // Every answer to the first step is lost; the gateway took it the first time.
    let losses = (0..3).map(|i| (i, Loss::BadGateway)).collect();
    let (base, seen, _, server) = serve_lossy(h.app.clone(), losses).await;
    let mut client = Client::connect(&base).await.unwrap();
    client.retry = Retry { attempts: 3, backoff: std::time::Duration::from_millis(5), backoff_max: std::time::Duration::from_millis(20) };
    let mut session = client.open_session(&sup).await.unwrap();
    let reply = session.step("P", register(&sup, "P")).await.expect("read back");
    assert_eq!(reply.seq, 1);
    assert_eq!(reply.package.id, "P");
    let held = client.step_view(&session.id, 1).await.unwrap().unwrap();
    assert_eq!(serde_json::to_value(&reply.receipt).unwrap(), held["receipt"]);
    assert_eq!(session.next_seq, 2);
    let next = session.step("Q", register(&sup, "Q")).await.unwrap();
    assert_eq!(next.seq, 2);
    assert_eq!(seen.lock().unwrap().len(), 4);
    server.abort();
}

#[tokio::test]
async fn a_step_whose_fate_is_unknown_is_settled_with_the_same_bytes_before_the_next_seq_is_signed() {
    let h = Harness::start(|_| {}).await;
    let sup = h.cast.supplier.clone();
    // Every answer to step 1 is lost (the gateway took it), and so is reading it back.
    let losses = (0..3).map(|i| (i, Loss::Cut)).collect();
    let (base, seen, reads_fail, server) = serve_lossy(h.app.clone(), losses).await;
    reads_fail.store(true, Ordering::SeqCst);
    let mut client = Client::connect(&base).await.unwrap();
    client.retry = Retry { attempts: 3, backoff: std::time::Duration::from_millis(5), backoff_max: std::time::Duration::from_millis(20) };
    let mut session = client.open_session(&sup).await.unwrap();
    let e = session.step("P", register(&sup, "P")).await.expect_err("no answer came");
    assert!(e.retriable(), "{e}");
    assert_eq!(session.next_seq, 1);
    let unanswered = session.unanswered.clone().expect("kept");
    assert_eq!(unanswered.step.seq, 1);

    // The gateway is reachable again: the next step first settles step 1
    // with the same bytes, then signs seq 2.
    reads_fail.store(false, Ordering::SeqCst);
    let next = session.step("Q", register(&sup, "Q")).await.unwrap();
    assert_eq!(next.seq, 2);
    assert_eq!(next.package.id, "Q");
    assert!(session.unanswered.is_none());
    assert_eq!(session.next_seq, 3);
    let bodies = seen.lock().unwrap().clone();
    assert_eq!(bodies.len(), 5, "three lost attempts, the settling re-send, step 2");
    assert!(bodies[..4].iter().all(|b| *b == bodies[0]), "seq 1 was only ever sent as the same bytes");
    let view = client.session(&session.id).await.unwrap();
    let steps = view["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2, "{view}");
    assert_eq!(steps[0]["package_id"], "P");
    server.abort();
}
