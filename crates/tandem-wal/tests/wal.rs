//! Behaviour of the write-ahead log through its public API on real files:
//! durability across reopen, group commit, torn-tail and mid-log corruption
//! handling, compaction, limits and backpressure.

use std::fs;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{mpsc, Arc, Mutex};
use std::task::{Context, Poll, Waker};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tandem_wal::{encode_log, Recovered, Wal, WalConfig, WalError, HEADER_LEN};

fn log_path(dir: &Path) -> PathBuf {
    dir.join("wal.log")
}

fn open(dir: &Path) -> (Wal, Recovered) {
    Wal::open(dir, WalConfig::default()).expect("open")
}

/// Payloads of varied sizes (including empty) with distinct contents.
fn payloads(rng: &mut StdRng, n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|_| {
            let len = rng.gen_range(0..300);
            (0..len).map(|_| rng.gen()).collect()
        })
        .collect()
}

/// Writes `records` through a fresh log in `dir` and returns the end offset of
/// every record in the file.
async fn write_log(dir: &Path, records: &[Vec<u8>]) -> Vec<u64> {
    let (wal, rec) = open(dir);
    assert!(rec.records.is_empty());
    let mut ends = Vec::new();
    let mut end = 0u64;
    for r in records {
        wal.append(r.clone()).await.expect("append");
        end += (HEADER_LEN + r.len()) as u64;
        ends.push(end);
    }
    assert_eq!(wal.stats().file_len, end);
    ends
}

#[tokio::test]
async fn append_then_reopen_returns_every_record_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rng = StdRng::seed_from_u64(1);
    let records = payloads(&mut rng, 50);
    {
        let (wal, rec) = open(dir.path());
        assert_eq!(rec, Recovered::default());
        for r in &records[..20] {
            wal.append(r.clone()).await.expect("append");
        }
        wal.append_many(records[20..].to_vec()).await.expect("append_many");
        let stats = wal.stats();
        assert_eq!(stats.records_appended, 50);
        assert_eq!(stats.fsyncs, 21);
    }
    let (wal, rec) = open(dir.path());
    assert_eq!(rec.records, records);
    assert_eq!(rec.torn_tail_bytes, 0);
    assert_eq!(rec.truncated_at, None);
    // The file is exactly the canonical encoding (seq 1..=50).
    assert_eq!(fs::read(log_path(dir.path())).expect("read"), encode_log(&records));

    // Appending after a reopen continues the sequence.
    wal.append(b"more".to_vec()).await.expect("append");
    drop(wal);
    let (_wal, rec) = open(dir.path());
    assert_eq!(rec.records.len(), 51);
    assert_eq!(rec.records[50], b"more");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_share_fsyncs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let groups = Arc::new(Mutex::new(Vec::new()));
    let hook_groups = Arc::clone(&groups);
    let config = WalConfig {
        on_fsync: Some(Arc::new(move |took, n| {
            hook_groups.lock().expect("lock").push((took, n));
        })),
        ..WalConfig::default()
    };
    let (wal, _) = Wal::open(dir.path(), config).expect("open");
    const N: usize = 200;
    let tasks: Vec<_> = (0..N)
        .map(|i| {
            let wal = wal.clone();
            tokio::spawn(async move { wal.append(format!("step {i}").into_bytes()).await })
        })
        .collect();
    for t in tasks {
        t.await.expect("join").expect("append");
    }
    let stats = wal.stats();
    let groups = groups.lock().expect("lock").clone();
    let micros: Vec<u128> = groups.iter().map(|(d, _)| d.as_micros()).collect();
    println!(
        "{N} concurrent appends: {} fsyncs, group sizes {:?}, fsync micros {:?}",
        stats.fsyncs,
        groups.iter().map(|(_, n)| n).collect::<Vec<_>>(),
        micros
    );
    assert_eq!(stats.records_appended, N as u64);
    assert_eq!(groups.len() as u64, stats.fsyncs);
    assert_eq!(groups.iter().map(|(_, n)| n).sum::<usize>(), N);
    assert!(stats.fsyncs < N as u64 / 2, "fsyncs {} for {N} records", stats.fsyncs);
    drop(wal);

    let (_wal, rec) = open(dir.path());
    let mut got: Vec<String> = rec.records.into_iter().map(|r| String::from_utf8(r).expect("utf8")).collect();
    got.sort();
    let mut want: Vec<String> = (0..N).map(|i| format!("step {i}")).collect();
    want.sort();
    assert_eq!(got, want);
}

#[tokio::test]
async fn torn_tail_at_random_cuts_is_truncated() {
    let seed: u64 = 0x7041_1E55;
    println!("seed {seed:#x}");
    let mut rng = StdRng::seed_from_u64(seed);
    let src = tempfile::tempdir().expect("tempdir");
    let records = payloads(&mut rng, 20);
    let ends = write_log(src.path(), &records).await;
    let full = fs::read(log_path(src.path())).expect("read");

    let mut cuts: Vec<u64> = (0..120).map(|_| rng.gen_range(0..=full.len() as u64)).collect();
    // Always include the edges: empty file, inside the first header, exact
    // record boundaries, one byte short of the end, the full file.
    cuts.extend([0, 1, HEADER_LEN as u64 - 1, ends[0], ends[9], full.len() as u64 - 1]);
    cuts.push(full.len() as u64);
    for (i, &cut) in cuts.iter().enumerate() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(log_path(dir.path()), &full[..cut as usize]).expect("write");
        let kept = ends.iter().take_while(|&&e| e <= cut).count();
        let good_len = if kept == 0 { 0 } else { ends[kept - 1] };

        let (wal, rec) = open(dir.path());
        assert_eq!(rec.records, records[..kept], "cut {cut}");
        assert_eq!(rec.torn_tail_bytes, cut - good_len, "cut {cut}");
        let expect_trunc = (cut != good_len).then_some(good_len);
        assert_eq!(rec.truncated_at, expect_trunc, "cut {cut}");
        assert_eq!(fs::metadata(log_path(dir.path())).expect("meta").len(), good_len);

        // The repaired log takes appends and reopens cleanly (on a subset of
        // cuts, to keep the fsync count and so the runtime small).
        if i % 4 == 0 {
            wal.append(b"after repair".to_vec()).await.expect("append");
            drop(wal);
            let (_wal, rec) = open(dir.path());
            assert_eq!(rec.records.len(), kept + 1, "cut {cut}");
            assert_eq!(rec.records[..kept], records[..kept]);
            assert_eq!(rec.records[kept], b"after repair");
            assert_eq!(rec.torn_tail_bytes, 0);
        }
    }
}

#[tokio::test]
async fn flipped_byte_in_last_record_is_a_torn_tail() {
    let mut rng = StdRng::seed_from_u64(2);
    let records = payloads(&mut rng, 10);
    let src = tempfile::tempdir().expect("tempdir");
    let ends = write_log(src.path(), &records).await;
    let full = fs::read(log_path(src.path())).expect("read");
    let last_start = ends[8] as usize;
    // Every byte of the last record: magic, length, seq, crc, payload.
    for at in last_start..full.len() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut data = full.clone();
        data[at] ^= 0x5A;
        fs::write(log_path(dir.path()), &data).expect("write");
        let (_wal, rec) = open(dir.path());
        assert_eq!(rec.records, records[..9], "flip at {at}");
        assert_eq!(rec.truncated_at, Some(last_start as u64));
        assert_eq!(rec.torn_tail_bytes, (full.len() - last_start) as u64);
    }
}

#[test]
fn flipped_byte_in_middle_record_is_corrupt_and_untouched() {
    let mut rng = StdRng::seed_from_u64(3);
    let records = payloads(&mut rng, 10);
    let full = encode_log(&records);
    let mut start = 0usize;
    let starts: Vec<usize> = records
        .iter()
        .map(|r| {
            let s = start;
            start += HEADER_LEN + r.len();
            s
        })
        .collect();
    // Record 4 (0-based): flip a byte in each header field and in the payload.
    let rec_start = starts[4];
    let rec_end = starts[5];
    let spots = [rec_start, rec_start + 5, rec_start + 9, rec_start + 17, rec_end - 1];
    for at in spots {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut data = full.clone();
        data[at] ^= 0x01;
        fs::write(log_path(dir.path()), &data).expect("write");
        match Wal::open(dir.path(), WalConfig::default()) {
            Err(WalError::Corrupt { offset, reason }) => {
                assert_eq!(offset, rec_start as u64, "flip at {at}: {reason}");
            }
            other => panic!("flip at {at}: expected Corrupt, got {other:?}"),
        }
        assert_eq!(fs::read(log_path(dir.path())).expect("read"), data, "flip at {at}");
    }
}

#[tokio::test]
async fn garbage_after_valid_records_is_a_torn_tail() {
    let seed: u64 = 0x6A4B_A6E0;
    println!("seed {seed:#x}");
    let mut rng = StdRng::seed_from_u64(seed);
    let records = payloads(&mut rng, 5);
    let valid = encode_log(&records);
    for round in 0..20 {
        let dir = tempfile::tempdir().expect("tempdir");
        let garbage_len = rng.gen_range(1..2000);
        let mut data = valid.clone();
        data.extend((0..garbage_len).map(|_| rng.gen::<u8>()));
        if round % 2 == 0 {
            // Also the look of a record: the magic and a plausible header,
            // but a checksum that cannot match.
            data.extend_from_slice(&0x4C41_5754u32.to_le_bytes());
            data.extend_from_slice(&[3, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 9, 9, 9]);
        }
        if round == 1 {
            // Zero-filled tail, as a preallocated or crashed extent leaves.
            data.truncate(valid.len());
            data.extend(std::iter::repeat_n(0u8, 4096));
        }
        fs::write(log_path(dir.path()), &data).expect("write");
        let (wal, rec) = open(dir.path());
        assert_eq!(rec.records, records, "round {round}");
        assert_eq!(rec.truncated_at, Some(valid.len() as u64));
        assert_eq!(rec.torn_tail_bytes, (data.len() - valid.len()) as u64);
        if round == 0 {
            wal.append(b"x".to_vec()).await.expect("append");
            drop(wal);
            let (_wal, rec) = open(dir.path());
            assert_eq!(rec.records.len(), 6);
        }
    }
}

#[tokio::test]
async fn rewrite_replaces_the_log_and_restarts_seq() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (wal, _) = open(dir.path());
    for i in 0..10u8 {
        wal.append(vec![i; 10]).await.expect("append");
    }
    let compacted = vec![b"snapshot".to_vec(), b"tail".to_vec()];
    wal.rewrite(compacted.clone()).await.expect("rewrite");
    // The file is exactly the new records with seq 1, 2 and no leftovers.
    assert_eq!(fs::read(log_path(dir.path())).expect("read"), encode_log(&compacted));
    assert!(!dir.path().join("wal.log.tmp").exists());
    assert_eq!(wal.stats().file_len, encode_log(&compacted).len() as u64);

    wal.append(b"after".to_vec()).await.expect("append");
    wal.append_many(vec![b"a2".to_vec(), b"a3".to_vec()]).await.expect("append_many");
    drop(wal);
    let (wal, rec) = open(dir.path());
    let mut want = compacted.clone();
    want.extend([b"after".to_vec(), b"a2".to_vec(), b"a3".to_vec()]);
    assert_eq!(rec.records, want);
    assert_eq!(fs::read(log_path(dir.path())).expect("read"), encode_log(&want));

    // A rewrite to nothing leaves an empty, valid log.
    wal.rewrite(Vec::new()).await.expect("rewrite");
    drop(wal);
    let (_wal, rec) = open(dir.path());
    assert_eq!(rec, Recovered::default());
}

#[tokio::test]
async fn rewrite_is_ordered_with_appends() {
    // Issue append, rewrite, append without awaiting in between: the first
    // append must be replaced, the second must survive.
    let dir = tempfile::tempdir().expect("tempdir");
    let (wal, _) = open(dir.path());
    let (a, r, b) = tokio::join!(wal.append(b"before".to_vec()), wal.rewrite(vec![b"base".to_vec()]), wal.append(b"after".to_vec()),);
    a.expect("a");
    r.expect("r");
    b.expect("b");
    drop(wal);
    let (_wal, rec) = open(dir.path());
    assert_eq!(rec.records, vec![b"base".to_vec(), b"after".to_vec()]);
}

#[test]
fn leftover_tmp_file_is_ignored_and_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let recs = vec![b"real".to_vec()];
    fs::write(log_path(dir.path()), encode_log(&recs)).expect("write");
    fs::write(dir.path().join("wal.log.tmp"), encode_log(&[b"half".to_vec()])).expect("write");
    let (_wal, rec) = open(dir.path());
    assert_eq!(rec.records, recs);
    assert!(!dir.path().join("wal.log.tmp").exists());
}

#[tokio::test]
async fn oversized_record_is_refused_and_nothing_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = WalConfig { record_bytes_max: 100, ..WalConfig::default() };
    let (wal, _) = Wal::open(dir.path(), config).expect("open");
    wal.append(vec![1; 100]).await.expect("at the limit");
    let len_before = fs::metadata(log_path(dir.path())).expect("meta").len();

    let err = wal.append(vec![2; 101]).await.expect_err("too large");
    assert!(matches!(err, WalError::TooLarge { len: 101, max: 100 }), "{err:?}");
    // One oversized record refuses the whole group.
    let err = wal.append_many(vec![vec![3; 5], vec![4; 500]]).await.expect_err("too large");
    assert!(matches!(err, WalError::TooLarge { len: 500, max: 100 }), "{err:?}");
    let err = wal.rewrite(vec![vec![5; 101]]).await.expect_err("too large");
    assert!(matches!(err, WalError::TooLarge { .. }), "{err:?}");

    assert_eq!(fs::metadata(log_path(dir.path())).expect("meta").len(), len_before);
    assert_eq!(wal.stats().records_appended, 1);
    drop(wal);
    let (_wal, rec) = open(dir.path());
    assert_eq!(rec.records, vec![vec![1; 100]]);
}

/// Polls a future once with a no-op waker: for a WAL request this runs the
/// synchronous part, i.e. queues the request (or refuses it).
fn poll_once<F: Future + Unpin>(f: &mut F) -> Poll<F::Output> {
    Pin::new(f).poll(&mut Context::from_waker(Waker::noop()))
}

/// A fresh log with `queue_max` places whose writer is held inside its first
/// group (the record `first`) until released: the metrics hook runs on the
/// writer thread, so blocking it holds the writer while a test fills the
/// queue. Returns the folder, the log, `first`'s durability and the sender
/// that releases the writer.
fn held_writer(queue_max: usize) -> (tempfile::TempDir, Wal, tandem_wal::Durable, mpsc::Sender<()>) {
    let (entered_tx, entered_rx) = mpsc::channel::<()>();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let gate = Mutex::new(Some((entered_tx, release_rx)));
    let config = WalConfig {
        queue_max,
        on_fsync: Some(Arc::new(move |_, _| {
            if let Some((entered, release)) = gate.lock().expect("lock").take() {
                let _ = entered.send(());
                let _ = release.recv();
            }
        })),
        ..WalConfig::default()
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let (wal, _) = Wal::open(dir.path(), config).expect("open");
    let first = wal.enqueue(vec![b"first".to_vec()]).expect("queued");
    entered_rx.recv().expect("writer reached the hook");
    (dir, wal, first, release_tx)
}

#[tokio::test]
async fn full_queue_gives_backpressure() {
    let (dir, wal, first, release_tx) = held_writer(2);
    // The writer is blocked and the queue (capacity 2) is empty.
    let mut q1 = Box::pin(wal.append(b"q1".to_vec()));
    let mut q2 = Box::pin(wal.append_many(vec![b"q2".to_vec(), b"q3".to_vec()]));
    assert!(poll_once(&mut q1).is_pending());
    assert!(poll_once(&mut q2).is_pending());
    let mut refused = Box::pin(wal.append(b"refused".to_vec()));
    match poll_once(&mut refused) {
        Poll::Ready(Err(WalError::Backpressure)) => {}
        other => panic!("expected Backpressure, got {other:?}"),
    }
    let mut refused_rw = Box::pin(wal.rewrite(vec![]));
    assert!(matches!(poll_once(&mut refused_rw), Poll::Ready(Err(WalError::Backpressure))));

    drop((refused, refused_rw));

    release_tx.send(()).expect("release");
    first.await.expect("first");
    q1.await.expect("q1");
    q2.await.expect("q2");
    // Room again once the writer drained the queue.
    wal.append(b"later".to_vec()).await.expect("later");
    drop(wal);
    let (_wal, rec) = open(dir.path());
    let want: Vec<Vec<u8>> = ["first", "q1", "q2", "q3", "later"].iter().map(|s| s.as_bytes().to_vec()).collect();
    assert_eq!(rec.records, want);
}

/// A reservation holds a place in the queue: queuing through it is never
/// refused for backpressure, and dropping it unused gives the place back.
#[tokio::test]
async fn a_reservation_is_never_refused_and_an_unused_one_gives_its_place_back() {
    let (dir, wal, first, release_tx) = held_writer(2);
    // The writer is blocked; both places are reserved.
    let r1 = wal.reserve().expect("a place");
    let r2 = wal.reserve().expect("a place");
    assert!(matches!(wal.reserve(), Err(WalError::Backpressure)));
    let mut refused = Box::pin(wal.append(b"refused".to_vec()));
    assert!(matches!(poll_once(&mut refused), Poll::Ready(Err(WalError::Backpressure))));
    drop(refused);
    // Queuing through a reservation needs no new place.
    let d1 = r1.enqueue(vec![b"reserved".to_vec()]).expect("never refused");
    assert!(matches!(wal.reserve(), Err(WalError::Backpressure)));
    // An unused reservation gives its place back.
    drop(r2);
    let r3 = wal.reserve().expect("the place r2 held");

    release_tx.send(()).expect("release");
    first.await.expect("first");
    d1.await.expect("reserved");
    drop(r3);
    // Every place is free again once the writer took the requests.
    let all: Vec<_> = (0..2).map(|_| wal.reserve().expect("free")).collect();
    drop(all);
    drop(wal);
    let (_wal, rec) = open(dir.path());
    assert_eq!(rec.records, vec![b"first".to_vec(), b"reserved".to_vec()]);
}

#[tokio::test]
async fn dropping_the_last_handle_finishes_pending_appends() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (wal, _) = open(dir.path());
    // Queue requests and drop their futures after the first poll: the
    // requests are already with the writer, which must still write them
    // before it stops.
    for i in 0..20u8 {
        let mut f = Box::pin(wal.append(vec![i]));
        assert!(!matches!(poll_once(&mut f), Poll::Ready(Err(_))));
    }
    let clone = wal.clone();
    drop(wal);
    clone.append(vec![99]).await.expect("clone still works");
    drop(clone); // joins the writer
    let (_wal, rec) = open(dir.path());
    let mut want: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i]).collect();
    want.push(vec![99]);
    assert_eq!(rec.records, want);
}

#[test]
fn missing_dir_and_empty_file_are_empty_logs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let nested = dir.path().join("a/b");
    let (wal, rec) = open(&nested);
    assert_eq!(rec, Recovered::default());
    assert!(log_path(&nested).exists());
    drop(wal);
    let (_wal, rec) = open(&nested);
    assert_eq!(rec, Recovered::default());
}
