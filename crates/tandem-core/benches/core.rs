//! Micro-benchmarks of the step path's CPU work: `apply` for each action of
//! the intake workflow (signature check included, as the gateway and L1 run
//! it) and one Ed25519 verification, so the two can be told apart.
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
    g.finish();
}

criterion_group!(benches, bench_apply);
criterion_main!(benches);
