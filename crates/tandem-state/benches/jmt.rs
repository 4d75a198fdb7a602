//! One L1 block's state work: `prepare` (new JMT root over the writes) plus
//! `commit` (one redb transaction) for blocks of K = 1, 100, 1000 changed
//! keys, on a store that keeps growing as a chain's does.
//! Run: `cargo bench -p tandem-state --bench jmt`.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tandem_core::kv::WriteSet;
use tandem_state::Storage;

fn bench_blocks(c: &mut Criterion) {
    let mut g = c.benchmark_group("jmt_prepare_commit");
    g.measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_millis(500)).sample_size(10);
    for k in [1usize, 100, 1000] {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Storage::open(&dir.path().join("state.redb")).expect("open");
        let mut height = store.height();
        let mut next_key = 0u64;
        g.throughput(Throughput::Elements(k as u64));
        g.bench_with_input(BenchmarkId::from_parameter(k), &k, |b, &k| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    // Fresh keys each block, values about a package's size.
                    let writes: WriteSet = (0..k)
                        .map(|_| {
                            next_key += 1;
                            (format!("pkg/BENCH-{next_key}").into_bytes(), Some(vec![1u8; 200]))
                        })
                        .collect();
                    height += 1;
                    let t = Instant::now();
                    let pending = store.prepare(height, &writes).expect("prepare");
                    store.commit(pending).expect("commit");
                    spent += t.elapsed();
                }
                spent
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench_blocks);
criterion_main!(benches);
