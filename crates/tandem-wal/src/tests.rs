//! Unit tests that need the crate's internals: the pure recovery rules on
//! hand-made byte strings, and fsync-failure handling through the test-only
//! fault injection in the writer.

use std::sync::atomic::Ordering;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::recovery::recover;
use crate::{encode_log, encode_record, Wal, WalConfig, WalError, HEADER_LEN};

fn payloads(n: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| format!("record {i}").into_bytes()).collect()
}

#[test]
fn empty_input_is_an_empty_log() {
    let d = recover(&[]).expect("empty is valid");
    assert!(d.records.is_empty());
    assert_eq!((d.good_len, d.last_seq), (0, 0));
}

#[test]
fn first_record_must_have_seq_one() {
    let mut data = Vec::new();
    encode_record(&mut data, 2, b"x");
    // A lone intact record with seq 2 means record 1 is missing: corrupt.
    assert!(matches!(recover(&data), Err(WalError::Corrupt { offset: 0, .. })));
}

#[test]
fn sequence_gap_with_intact_record_is_corrupt() {
    let mut data = encode_log(&payloads(3));
    let good = data.len();
    encode_record(&mut data, 5, b"skipped four");
    match recover(&data) {
        Err(WalError::Corrupt { offset, reason }) => {
            assert_eq!(offset, good as u64);
            assert!(reason.contains("sequence"), "{reason}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn stale_record_at_tail_is_torn() {
    // A record whose seq is not above the last good one cannot have been
    // written after it, so it is tail debris, not evidence of lost records.
    let mut data = encode_log(&payloads(3));
    let good = data.len();
    encode_record(&mut data, 2, b"stale");
    let d = recover(&data).expect("torn tail");
    assert_eq!(d.records, payloads(3));
    assert_eq!(d.good_len, good);
}

#[test]
fn record_len_points_past_end_is_torn() {
    let mut data = encode_log(&payloads(2));
    let good = data.len();
    let mut rec = Vec::new();
    encode_record(&mut rec, 3, &[7u8; 100]);
    // Header claims 100 bytes, only 10 are there.
    data.extend_from_slice(&rec[..HEADER_LEN + 10]);
    let d = recover(&data).expect("torn tail");
    assert_eq!(d.records.len(), 2);
    assert_eq!(d.good_len, good);
}

#[test]
fn arbitrary_bytes_never_panic() {
    let seed = 0x5EED_0001;
    println!("seed {seed:#x}");
    let mut rng = StdRng::seed_from_u64(seed);
    let base = encode_log(&payloads(5));
    for _ in 0..2000 {
        // Random bytes, and valid logs with random bytes overwritten, cut or
        // appended: recovery must return, never panic, and never return more
        // records than were written.
        let mut data = if rng.gen_bool(0.3) {
            let len = rng.gen_range(0..200);
            (0..len).map(|_| rng.gen()).collect::<Vec<u8>>()
        } else {
            base.clone()
        };
        for _ in 0..rng.gen_range(0..4) {
            if data.is_empty() {
                break;
            }
            let i = rng.gen_range(0..data.len());
            data[i] = rng.gen();
        }
        if rng.gen_bool(0.3) {
            let cut = rng.gen_range(0..=data.len());
            data.truncate(cut);
        }
        if let Ok(d) = recover(&data) {
            assert!(d.records.len() <= 5);
            assert!(d.good_len <= data.len());
        }
    }
}

#[tokio::test]
async fn failed_fsync_fails_the_group_and_poisons_the_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (wal, _) = Wal::open(dir.path(), WalConfig::default()).expect("open");
    wal.append(b"durable".to_vec()).await.expect("first append");

    wal.inner.shared.fail_next_sync.store(true, Ordering::SeqCst);
    let err = wal.append(b"doomed".to_vec()).await.expect_err("fsync fails");
    assert!(matches!(err, WalError::Io(_)), "{err:?}");

    // Every later request is refused, appends and rewrites alike.
    let err = wal.append(b"after".to_vec()).await.expect_err("poisoned");
    assert!(matches!(err, WalError::Poisoned(_)), "{err:?}");
    let err = wal.rewrite(vec![]).await.expect_err("poisoned");
    assert!(matches!(err, WalError::Poisoned(_)), "{err:?}");
    assert_eq!(wal.stats().fsyncs, 1);
    drop(wal);

    // The acknowledged record is still there on reopen. (The failed one may
    // or may not be: it was never acknowledged.)
    let (_wal, rec) = Wal::open(dir.path(), WalConfig::default()).expect("reopen");
    assert_eq!(rec.records.first().map(Vec::as_slice), Some(&b"durable"[..]));
}

#[test]
fn handle_is_send_sync_clone() {
    fn check<T: Send + Sync + Clone + 'static>() {}
    check::<Wal>();
}
