//! WAL append + fsync with group commit: the time for N concurrent appends
//! (1, 16, 128) to all be durable. One fsync serves a whole group, so the
//! time per record should fall as N grows.
//! Run: `cargo bench -p tandem-wal --bench wal`.

use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tandem_wal::{Wal, WalConfig};

fn bench_append(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let (wal, _) = Wal::open(dir.path(), WalConfig::default()).expect("open wal");
    let wal = Arc::new(wal);
    // About the size of a step record (a signed step and its outcome hash).
    let record = vec![7u8; 300];
    let mut g = c.benchmark_group("wal_append_fsync");
    g.measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_millis(500));
    for n in [1usize, 16, 128] {
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
            b.iter(|| {
                rt.block_on(async {
                    let tasks: Vec<_> = (0..n)
                        .map(|_| {
                            let (wal, rec) = (wal.clone(), record.clone());
                            tokio::spawn(async move { wal.append(rec).await.expect("append") })
                        })
                        .collect();
                    for t in tasks {
                        t.await.expect("task");
                    }
                })
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench_append);
criterion_main!(benches);
