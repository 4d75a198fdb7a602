//! Behaviour of `Storage` through its public API only: reads across heights,
//! determinism of app hashes, empty blocks, durability across reopen, the
//! prepare/commit protocol, and proofs against the app hash.

use std::path::Path;

use jmt::{KeyHash, RootHash};
use sha2::Sha256;
use tandem_core::kv::{KvRead, WriteSet};
use tandem_state::{Storage, StorageError, EMPTY_APP_HASH};
use tempfile::TempDir;

fn fresh() -> (TempDir, Storage) {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Storage::open(&dir.path().join("state.redb")).expect("open");
    (dir, s)
}

fn ws(items: &[(&str, Option<&str>)]) -> WriteSet {
    items.iter().map(|(k, v)| (k.as_bytes().to_vec(), v.map(|v| v.as_bytes().to_vec()))).collect()
}

/// Prepare and commit the next height, returning its app hash.
fn apply(s: &Storage, writes: &WriteSet) -> [u8; 32] {
    let pending = s.prepare(s.height() + 1, writes).expect("prepare");
    let hash = pending.app_hash();
    s.commit(pending).expect("commit");
    assert_eq!(s.app_hash(), hash);
    hash
}

fn get(s: &Storage, key: &str) -> Option<String> {
    s.snapshot().get(key.as_bytes()).map(|v| String::from_utf8(v).expect("utf8"))
}

fn path_of(dir: &TempDir) -> std::path::PathBuf {
    dir.path().join("state.redb")
}

#[test]
fn a_fresh_store_is_at_height_zero_with_the_empty_root() {
    let (_dir, s) = fresh();
    assert_eq!(s.height(), 0);
    assert_eq!(s.app_hash(), EMPTY_APP_HASH);
    assert_eq!(s.snapshot().height(), 0);
    assert_eq!(get(&s, "anything"), None);
}

#[test]
fn puts_deletes_and_overwrites_across_heights() {
    let (_dir, s) = fresh();
    let h1 = apply(&s, &ws(&[("a", Some("1")), ("b", Some("2"))]));
    assert_eq!((get(&s, "a"), get(&s, "b")), (Some("1".into()), Some("2".into())));

    let h2 = apply(&s, &ws(&[("a", Some("10")), ("b", None), ("c", Some("3"))]));
    assert_eq!(s.height(), 2);
    assert_eq!(get(&s, "a"), Some("10".into()));
    assert_eq!(get(&s, "b"), None);
    assert_eq!(get(&s, "c"), Some("3".into()));

    // Re-creating a deleted key, and deleting a key that never existed.
    let h3 = apply(&s, &ws(&[("b", Some("again")), ("never", None)]));
    assert_eq!(get(&s, "b"), Some("again".into()));
    assert_eq!(get(&s, "never"), None);

    assert_ne!(h1, EMPTY_APP_HASH);
    assert_ne!(h1, h2);
    assert_ne!(h2, h3);
}

#[test]
fn snapshots_see_committed_values_only_and_stay_at_their_height() {
    let (_dir, s) = fresh();
    apply(&s, &ws(&[("k", Some("old"))]));
    let before = s.snapshot();

    let pending = s.prepare(2, &ws(&[("k", Some("new")), ("n", Some("x"))])).expect("prepare");
    // Prepared but not committed: invisible everywhere.
    assert_eq!(get(&s, "k"), Some("old".into()));
    assert_eq!(get(&s, "n"), None);
    assert_eq!(s.height(), 1);
    assert_ne!(pending.app_hash(), s.app_hash());

    s.commit(pending).expect("commit");
    assert_eq!(get(&s, "k"), Some("new".into()));
    assert_eq!(get(&s, "n"), Some("x".into()));

    // The snapshot taken before the commit still reads height 1.
    assert_eq!(before.height(), 1);
    assert_eq!(before.get(b"k"), Some(b"old".to_vec()));
    assert_eq!(before.get(b"n"), None);
    assert_ne!(before.app_hash(), s.app_hash());
    // ...and proves against its own hash.
    let (v, proof) = before.get_with_proof(b"k").expect("proof");
    assert_eq!(v, Some(b"old".to_vec()));
    proof
        .verify_existence(RootHash(before.app_hash()), KeyHash::with::<Sha256>(b"k"), b"old")
        .expect("old proof verifies against old root");
}

#[test]
fn app_hashes_are_deterministic_and_depend_on_values() {
    let blocks = [
        ws(&[("a", Some("1")), ("b", Some("2")), ("c", Some("3"))]),
        ws(&[]),
        ws(&[("b", None), ("d", Some("4"))]),
        ws(&[("a", Some("one"))]),
    ];
    let (_d1, s1) = fresh();
    let (_d2, s2) = fresh();
    for b in &blocks {
        assert_eq!(apply(&s1, b), apply(&s2, b));
    }
    assert_eq!(s1.height(), 4);

    // Same keys, one value differs by one byte.
    let (_d3, s3) = fresh();
    for b in &blocks[..3] {
        apply(&s3, b);
    }
    assert_eq!(s3.app_hash(), {
        // s1 and s3 agree up to here; check against a replay of the prefix.
        let (_d, r) = fresh();
        for b in &blocks[..3] {
            apply(&r, b);
        }
        r.app_hash()
    });
    let different = apply(&s3, &ws(&[("a", Some("onf"))]));
    assert_ne!(different, s1.app_hash());
}

#[test]
fn the_app_hash_depends_on_the_state_not_on_how_it_was_reached() {
    let (_d1, s1) = fresh();
    apply(&s1, &ws(&[("a", Some("1")), ("b", Some("2"))]));

    let (_d2, s2) = fresh();
    apply(&s2, &ws(&[("b", Some("stale")), ("z", Some("gone soon"))]));
    apply(&s2, &ws(&[("a", Some("1"))]));
    apply(&s2, &ws(&[("b", Some("2")), ("z", None)]));

    assert_eq!(s1.app_hash(), s2.app_hash());

    // Deleting everything returns to the empty root.
    apply(&s2, &ws(&[("a", None), ("b", None)]));
    assert_eq!(s2.app_hash(), EMPTY_APP_HASH);
    assert_eq!(s2.height(), 4);
}

#[test]
fn an_empty_block_keeps_the_root_and_advances_the_height() {
    let (_dir, s) = fresh();
    // First block empty: the subtle case (jmt needs a version-0 root).
    let h1 = apply(&s, &WriteSet::new());
    assert_eq!(h1, EMPTY_APP_HASH);
    assert_eq!(s.height(), 1);

    let h2 = apply(&s, &ws(&[("k", Some("v"))]));
    let h3 = apply(&s, &WriteSet::new());
    let h4 = apply(&s, &WriteSet::new());
    assert_eq!((h3, h4), (h2, h2));
    assert_eq!(s.height(), 4);

    // A block that only deletes an absent key changes nothing either.
    let h5 = apply(&s, &ws(&[("absent", None)]));
    assert_eq!(h5, h2);
    assert_eq!(s.height(), 5);

    // The copied root is a real tree version: proofs at height 5 work, and
    // the next non-empty block builds on it.
    let (v, proof) = s.get_with_proof(b"k").expect("proof");
    assert_eq!(v, Some(b"v".to_vec()));
    proof.verify_existence(RootHash(s.app_hash()), KeyHash::with::<Sha256>(b"k"), b"v").expect("verifies");
    let h6 = apply(&s, &ws(&[("k2", Some("v2"))]));
    assert_ne!(h6, h5);
}

#[test]
fn committed_state_survives_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (hash, keep) = {
        let s = Storage::open(&path_of(&dir)).expect("open");
        apply(&s, &ws(&[("a", Some("1")), ("b", Some("2"))]));
        apply(&s, &ws(&[("b", None)]));
        let keep = s.snapshot();
        (s.app_hash(), keep.height())
    };
    assert_eq!(keep, 2);

    let s = Storage::open(&path_of(&dir)).expect("reopen");
    assert_eq!(s.height(), 2);
    assert_eq!(s.app_hash(), hash);
    assert_eq!(get(&s, "a"), Some("1".into()));
    assert_eq!(get(&s, "b"), None);
    // The tree came back too, not just the flat table.
    let (v, proof) = s.get_with_proof(b"a").expect("proof");
    assert_eq!(v, Some(b"1".to_vec()));
    proof.verify_existence(RootHash(hash), KeyHash::with::<Sha256>(b"a"), b"1").expect("verifies after reopen");
    // And it keeps growing from there.
    apply(&s, &ws(&[("c", Some("3"))]));
    assert_eq!(s.height(), 3);
}

#[test]
fn a_crash_between_prepare_and_commit_leaves_the_old_height() {
    let dir = tempfile::tempdir().expect("tempdir");
    let block2 = ws(&[("a", Some("2")), ("new", Some("n"))]);
    let (h1, prepared_hash) = {
        let s = Storage::open(&path_of(&dir)).expect("open");
        let h1 = apply(&s, &ws(&[("a", Some("1"))]));
        let pending = s.prepare(2, &block2).expect("prepare");
        let prepared = pending.app_hash();
        drop(pending); // the "crash": never committed
        (h1, prepared)
    };

    let s = Storage::open(&path_of(&dir)).expect("reopen");
    assert_eq!(s.height(), 1);
    assert_eq!(s.app_hash(), h1);
    assert_eq!(get(&s, "a"), Some("1".into()));
    assert_eq!(get(&s, "new"), None);

    let again = s.prepare(2, &block2).expect("prepare again");
    assert_eq!(again.app_hash(), prepared_hash);
    s.commit(again).expect("commit");
    assert_eq!(s.height(), 2);
    assert_eq!(s.app_hash(), prepared_hash);
}

#[test]
fn prepare_rejects_any_height_but_the_next() {
    let (_dir, s) = fresh();
    for bad in [0, 2, u64::MAX] {
        assert!(
            matches!(
                s.prepare(bad, &WriteSet::new()),
                Err(StorageError::HeightMismatch { expected: 1, got }) if got == bad
            ),
            "height {bad} accepted"
        );
    }
    apply(&s, &ws(&[("k", Some("v"))]));
    for bad in [0, 1, 3] {
        assert!(matches!(s.prepare(bad, &WriteSet::new()), Err(StorageError::HeightMismatch { .. })), "height {bad} accepted at height 1");
    }
    assert!(s.prepare(2, &WriteSet::new()).is_ok());
}

#[test]
fn commit_rejects_a_pending_commit_that_no_longer_fits() {
    let (_dir, s) = fresh();
    let first = s.prepare(1, &ws(&[("k", Some("a"))])).expect("prepare");
    let rival = s.prepare(1, &ws(&[("k", Some("b"))])).expect("prepare");
    s.commit(first).expect("commit");
    // Height 1 is taken: the rival must not be written on top.
    assert!(matches!(s.commit(rival), Err(StorageError::HeightMismatch { expected: 2, got: 1 })));
    assert_eq!(get(&s, "k"), Some("a".into()));
    assert_eq!(s.height(), 1);

    // A pending commit from another store at the same height but a
    // different state is refused too.
    let (_d2, other) = fresh();
    apply(&other, &ws(&[("x", Some("y"))]));
    let foreign = other.prepare(2, &WriteSet::new()).expect("prepare");
    assert!(matches!(s.commit(foreign), Err(StorageError::BaseMismatch)));
    assert_eq!(s.height(), 1);
}

#[test]
fn proofs_verify_against_the_app_hash_for_present_and_absent_keys() {
    let (_dir, s) = fresh();
    let mut block = WriteSet::new();
    for i in 0..50u32 {
        block.insert(format!("key-{i}").into_bytes(), Some(format!("value-{i}").into_bytes()));
    }
    apply(&s, &block);
    apply(&s, &ws(&[("key-7", None)]));
    let root = RootHash(s.app_hash());

    // Present.
    let (v, proof) = s.get_with_proof(b"key-3").expect("proof");
    assert_eq!(v, Some(b"value-3".to_vec()));
    let kh = KeyHash::with::<Sha256>(b"key-3");
    proof.verify_existence(root, kh, b"value-3").expect("existence verifies");
    assert!(proof.verify_existence(root, kh, b"value-4").is_err(), "wrong value accepted");
    assert!(proof.verify_nonexistence(root, kh).is_err(), "present key proven absent");

    // Absent: never written, and deleted.
    for absent in [&b"nope"[..], b"key-7"] {
        let (v, proof) = s.get_with_proof(absent).expect("proof");
        assert_eq!(v, None);
        let kh = KeyHash::with::<Sha256>(absent);
        proof.verify_nonexistence(root, kh).expect("non-existence verifies");
        assert!(proof.verify_existence(root, kh, b"anything").is_err());
    }

    // A proof does not verify against another height's root.
    let old = {
        let (_d, r) = fresh();
        apply(&r, &block)
    };
    let (_, proof) = s.get_with_proof(b"key-3").expect("proof");
    assert!(proof.verify_existence(RootHash(old), kh, b"value-3").is_err());

    // Proof on an empty store: absence against the empty root.
    let (_d, empty) = fresh();
    let (v, proof) = empty.get_with_proof(b"k").expect("proof");
    assert_eq!(v, None);
    proof.verify_nonexistence(RootHash(EMPTY_APP_HASH), KeyHash::with::<Sha256>(b"k")).expect("absence in the empty tree");
}

#[test]
fn opening_a_file_that_is_not_a_store_fails_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p: &Path = &dir.path().join("garbage");
    std::fs::write(p, b"this is not a redb file at all, just text").expect("write");
    assert!(Storage::open(p).is_err());
}
