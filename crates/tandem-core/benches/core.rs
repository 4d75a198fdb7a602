//! Micro-benchmarks of the step path's CPU work: `apply` for each action of
//! the intake workflow (signature check included, as the gateway and L1 run
//! it) and one Ed25519 verification, so the two can be told apart; a memo
//! hit; and 64 verifications one by one against one batch.
//! Run: `cargo bench -p tandem-core --features testkit --bench core`.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use tandem_core::apply::{apply, open_session};
use tandem_core::crypto::Domain;
use tandem_core::message::Action;
use tandem_core::testkit::{self, ctx, Cast};

fn bench_apply(c: &mut Criterion) {
    let cast = Cast::new();
    let mut state = cast.state();
    let sup = open_session(&mut state, &ctx(), &testkit::open(&cast.supplier, None, 1)).expect("open").id;
    let op = open_session(&mut state, &ctx(), &testkit::open(&cast.operator, None, 1)).expect("open").id;
    let plan: Vec<(&str, &tandem_core::SecretKey, tandem_core::Hash, u64, Action)> = vec![
        ("register", &cast.supplier, sup, 1, testkit::register(&cast.supplier, "P-1")),
        ("scan", &cast.operator, op, 1, testkit::scan()),
        ("validate", &cast.operator, op, 2, testkit::validate()),
        ("qc", &cast.operator, op, 3, testkit::qc(true)),
        ("label", &cast.operator, op, 4, testkit::label(cast.courier.public())),
    ];
    let mut g = c.benchmark_group("apply");
    g.measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_millis(500));
    for (name, key, session, seq, action) in plan {
        let signed = testkit::step(key, session, seq, "P-1", action);
        // Each iteration decides the step on a fresh copy of the state just
        // before it; the copy is made outside the timed part.
        let before = state.clone();
        g.bench_function(name, |b| {
            b.iter_batched(|| before.clone(), |mut s| apply(&mut s, &ctx(), &signed).expect("step applies"), BatchSize::SmallInput)
        });
        apply(&mut state, &ctx(), &signed).expect("step applies");
    }
    g.finish();

    let signed = testkit::step(&cast.operator, op, 5, "P-1", testkit::scan());
    let mut g = c.benchmark_group("ed25519");
    g.measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_millis(500));
    g.bench_function("verify_step", |b| b.iter(|| assert!(signed.step.actor.verify(Domain::Step, &signed.step, &signed.signature))));
    let memo = tandem_core::SigMemo::default();
    assert!(signed.step.actor.verify_memo(Domain::Step, &signed.step, &signed.signature, Some(&memo)));
    g.bench_function("verify_step_memo_hit", |b| {
        b.iter(|| assert!(signed.step.actor.verify_memo(Domain::Step, &signed.step, &signed.signature, Some(&memo))))
    });
    g.finish();

    // 64 signatures by 8 keys over distinct 200-byte messages: one by one
    // (strict, as L1 decides) against ed25519-dalek's batch equation.
    use ed25519_dalek::{Signer, Verifier};
    let keys: Vec<ed25519_dalek::SigningKey> = (0..8u8).map(|i| ed25519_dalek::SigningKey::from_bytes(&[i + 1; 32])).collect();
    let msgs: Vec<Vec<u8>> = (0..64u8).map(|i| vec![i; 200]).collect();
    let sigs: Vec<ed25519_dalek::Signature> = msgs.iter().enumerate().map(|(i, m)| keys[i % 8].sign(m)).collect();
    let vks: Vec<ed25519_dalek::VerifyingKey> = (0..64).map(|i| keys[i % 8].verifying_key()).collect();
    let refs: Vec<&[u8]> = msgs.iter().map(Vec::as_slice).collect();
    let mut g = c.benchmark_group("ed25519_64");
    g.measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_millis(500));
    g.bench_function("single_strict", |b| {
        b.iter(|| {
            for i in 0..64 {
                assert!(vks[i].verify_strict(refs[i], &sigs[i]).is_ok());
            }
        })
    });
    g.bench_function("single_plain", |b| {
        b.iter(|| {
            for i in 0..64 {
                assert!(vks[i].verify(refs[i], &sigs[i]).is_ok());
            }
        })
    });
    g.bench_function("batch", |b| b.iter(|| assert!(ed25519_dalek::verify_batch(&refs, &sigs, &vks).is_ok())));
    g.finish();
}

criterion_group!(benches, bench_apply);
criterion_main!(benches);
