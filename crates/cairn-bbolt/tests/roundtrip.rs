//! Files written by the writer read back equal; bad files are refused with the right error.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;

use cairn_bbolt::{Error, Reader, Writer, PAGE_SIZE};
use rand::{Rng, SeedableRng};

type Db = BTreeMap<Vec<u8>, BTreeMap<Vec<u8>, Vec<u8>>>;

fn write(db: &Db) -> tempfile::NamedTempFile {
    let f = tempfile::NamedTempFile::new().unwrap();
    let mut w = Writer::new(f.reopen().unwrap()).unwrap();
    // Buckets in reverse name order: the writer sorts the root bucket itself.
    for (name, kvs) in db.iter().rev() {
        let mut b = w.bucket(name).unwrap();
        for (k, v) in kvs {
            b.put(k, v).unwrap();
        }
        b.finish().unwrap();
    }
    w.finish().unwrap();
    f
}

fn read(path: &std::path::Path) -> Db {
    let r = Reader::open(path).unwrap();
    let mut db = Db::new();
    for b in r.buckets().unwrap() {
        let mut kvs = BTreeMap::new();
        for e in r.entries(&b) {
            let e = e.unwrap();
            assert!(!e.is_bucket);
            kvs.insert(e.key, e.value);
        }
        db.insert(b.name, kvs);
    }
    db
}

#[test]
fn random_buckets_read_back_equal() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x00bb_0170);
    for round in 0..40 {
        let mut db = Db::new();
        for _ in 0..rng.random_range(0..6) {
            let name: Vec<u8> = (0..rng.random_range(1..12)).map(|_| rng.random()).collect();
            let mut kvs = BTreeMap::new();
            let n = if round % 5 == 0 {
                3000
            } else {
                rng.random_range(0..200)
            };
            for _ in 0..n {
                let klen = if rng.random_ratio(1, 100) {
                    rng.random_range(1..6000)
                } else {
                    rng.random_range(1..40)
                };
                let vlen = if rng.random_ratio(1, 50) {
                    rng.random_range(0..20_000)
                } else {
                    rng.random_range(0..100)
                };
                let k: Vec<u8> = (0..klen).map(|_| rng.random()).collect();
                let v: Vec<u8> = (0..vlen).map(|_| rng.random()).collect();
                kvs.insert(k, v);
            }
            db.insert(name, kvs);
        }
        let f = write(&db);
        let len = f.as_file().metadata().unwrap().len();
        assert_eq!(len % PAGE_SIZE as u64, 0);
        assert_eq!(Reader::open(f.path()).unwrap().size(), len);
        assert_eq!(read(f.path()), db, "round {round}");
    }
}

#[test]
fn many_top_level_buckets_need_a_branch_page_in_the_root() {
    let mut db = Db::new();
    for i in 0..2000u32 {
        let mut kvs = BTreeMap::new();
        kvs.insert(b"k".to_vec(), i.to_be_bytes().to_vec());
        db.insert(format!("bucket-{i:05}").into_bytes(), kvs);
    }
    let f = write(&db);
    assert_eq!(read(f.path()), db);
}

#[test]
fn keys_out_of_order_and_bad_names_are_refused() {
    let f = tempfile::tempfile().unwrap();
    let mut w = Writer::new(f).unwrap();
    let mut b = w.bucket(b"a").unwrap();
    b.put(b"2", b"").unwrap();
    assert!(matches!(b.put(b"1", b""), Err(Error::BadInput(_))));
    assert!(matches!(b.put(b"2", b""), Err(Error::BadInput(_))));
    assert!(matches!(
        b.put(b"", b""),
        Err(Error::BadInput("key required"))
    ));
    b.finish().unwrap();
    assert!(matches!(w.bucket(b"a"), Err(Error::BadInput(_))));
    assert!(matches!(w.bucket(b""), Err(Error::BadInput(_))));
}

fn sample() -> tempfile::NamedTempFile {
    let mut db = Db::new();
    let kvs = (0..500u32)
        .map(|i| (i.to_be_bytes().to_vec(), vec![7u8; 30]))
        .collect();
    db.insert(b"key".to_vec(), kvs);
    write(&db)
}

fn flip(path: &std::path::Path, at: u64) {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).unwrap();
    b[0] ^= 0x40;
    f.write_all_at(&b, at).unwrap();
}

#[test]
fn a_flipped_byte_in_one_meta_falls_back_to_the_other_and_in_both_is_a_checksum_error() {
    let f = sample();
    // The root page id inside meta page 1 (txid 1, the newer).
    flip(f.path(), PAGE_SIZE as u64 + 16 + 16);
    let r = Reader::open(f.path()).unwrap();
    assert_eq!(r.txid(), 0);
    assert_eq!(r.entries(&r.bucket(b"key").unwrap()).count(), 500);
    flip(f.path(), 16 + 16);
    assert!(matches!(Reader::open(f.path()), Err(Error::Checksum)));
}

#[test]
fn a_truncated_file_is_refused() {
    let f = sample();
    let len = f.as_file().metadata().unwrap().len();
    f.as_file().set_len(len - 1).unwrap();
    match Reader::open(f.path()) {
        Err(Error::Truncated { len: l, need }) => {
            assert_eq!((l, need), (len - 1, len));
        }
        other => panic!("{:?}", other.err()),
    }
    // A file shorter than one page is not a database at all, as bbolt says.
    f.as_file().set_len(100).unwrap();
    assert!(matches!(Reader::open(f.path()), Err(Error::Invalid)));
}

#[test]
fn a_file_that_is_not_bbolt_is_invalid() {
    let f = tempfile::NamedTempFile::new().unwrap();
    f.as_file().write_all_at(&[0x5a; 3 * PAGE_SIZE], 0).unwrap();
    assert!(matches!(Reader::open(f.path()), Err(Error::Invalid)));
    let empty = tempfile::NamedTempFile::new().unwrap();
    assert!(matches!(Reader::open(empty.path()), Err(Error::Invalid)));
    assert_eq!(Error::Invalid.to_string(), "invalid database");
}

#[test]
fn a_damaged_leaf_is_a_corrupt_error_not_a_panic() {
    let f = sample();
    // Page 2 is the bucket's first leaf: point its first element far outside the page.
    f.as_file()
        .write_all_at(&u32::MAX.to_le_bytes(), 2 * PAGE_SIZE as u64 + 16 + 4)
        .unwrap();
    let r = Reader::open(f.path()).unwrap();
    let b = r.bucket(b"key").unwrap();
    let first = r.entries(&b).next().unwrap();
    assert!(matches!(first, Err(Error::Corrupt(_))));
    let _ = File::open(f.path()).unwrap();
}

#[test]
fn a_bucket_deep_enough_for_two_branch_levels_reads_back_in_order() {
    // 30000 keys of 30 bytes fill about 340 leaves: more than one branch page can name.
    let mut db = Db::new();
    let kvs = (0..30_000u32)
        .map(|i| (format!("{i:030}").into_bytes(), Vec::new()))
        .collect();
    db.insert(b"key".to_vec(), kvs);
    let f = write(&db);
    assert!(f.as_file().metadata().unwrap().len() > 300 * PAGE_SIZE as u64);
    assert_eq!(read(f.path()), db);
}

#[test]
fn a_small_file_is_two_metas_a_leaf_the_root_and_the_freelist() {
    // The layout the crate's documentation walks through.
    let mut db = Db::new();
    let kvs = [
        (b"a".to_vec(), b"1".to_vec()),
        (b"b".to_vec(), b"2".to_vec()),
    ];
    db.insert(b"key".to_vec(), kvs.into_iter().collect());
    let f = write(&db);
    assert_eq!(f.as_file().metadata().unwrap().len(), 5 * PAGE_SIZE as u64);
    let r = Reader::open(f.path()).unwrap();
    assert_eq!((r.txid(), r.size()), (1, 5 * PAGE_SIZE as u64));
    assert_eq!(r.bucket(b"key").unwrap().root, 2);
    let bytes = std::fs::read(f.path()).unwrap();
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
    // Meta page 1: root 3, freelist 4, pgid 5, txid 1.
    let meta = PAGE_SIZE + 16;
    assert_eq!(
        [
            u64_at(meta + 16),
            u64_at(meta + 32),
            u64_at(meta + 40),
            u64_at(meta + 48)
        ],
        [3, 4, 5, 1]
    );
}
