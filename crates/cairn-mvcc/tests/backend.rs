//! The backend file: reopening, crashes, hashes, snapshots, defragmentation, concurrency.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use cairn_mvcc::{MvccError, NoLeases, Store};
use cairn_proto::etcdserverpb::request_op::Request;
use cairn_proto::etcdserverpb::{PutRequest, RangeRequest, RequestOp, TxnRequest};
use cairn_proto::mvccpb::KeyValue;
use common::*;
use prost::Message;

fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn rev_bytes(main: i64, sub: i64, tombstone: bool) -> Vec<u8> {
    let mut b = main.to_be_bytes().to_vec();
    b.push(b'_');
    b.extend_from_slice(&sub.to_be_bytes());
    if tombstone {
        b.push(b't');
    }
    b
}

#[test]
fn hash_kv_covers_etcd_key_table_bytes() {
    let (_d, s) = open();
    put_now(&s, "a", "1");
    apply(&s, |b| b.delete_range(&del("a", "")).unwrap());
    let mut data = b"key".to_vec();
    data.extend(rev_bytes(2, 0, false));
    data.extend(kv("a", "1", 2, 2, 1).encode_to_vec());
    data.extend(rev_bytes(3, 0, true));
    data.extend(
        KeyValue {
            key: b"a".to_vec(),
            ..Default::default()
        }
        .encode_to_vec(),
    );
    let h = s.hash_kv(0).unwrap();
    assert_eq!(h.hash, crc32c(&data));
    assert_eq!(
        (h.current_revision, h.compact_revision, h.hash_revision),
        (3, -1, 3)
    );
    let h2 = s.hash_kv(2).unwrap();
    assert_eq!(
        h2.hash,
        crc32c(&data[..3 + 17 + kv("a", "1", 2, 2, 1).encoded_len()])
    );
    assert!(matches!(s.hash_kv(4), Err(MvccError::FutureRev)));
}

#[test]
fn hash_kv_is_stable_across_compaction_of_kept_keys_and_reopen() {
    let (d, s) = open();
    for (k, v) in [("a", "1"), ("b", "2"), ("c", "3")] {
        put_now(&s, k, v);
    }
    put_now(&s, "a", "4"); // rev 5
    let before = s.hash_kv(5).unwrap();
    // Everything at or below 3 is still each key's newest revision at 5... except a@2,
    // which etcd's hash skips once compacted; compact at 1 keeps all of it.
    apply(&s, |b| b.compact(1).unwrap());
    let after = s.hash_kv(5).unwrap();
    assert_eq!(after.hash, before.hash);
    assert_eq!(after.compact_revision, 1);
    let s = reopen(&d, s);
    assert_eq!(s.hash_kv(5).unwrap(), after);
    // Compacting at 4 drops a@2 from the file; the hash at 5 skipped it already.
    apply(&s, |b| b.compact(4).unwrap());
    let c4 = s.hash_kv(5).unwrap();
    let s = reopen(&d, s);
    assert_eq!(s.hash_kv(5).unwrap(), c4);
    assert!(matches!(s.hash_kv(3), Err(MvccError::Compacted)));
    assert_eq!(s.hash_kv(4).unwrap().hash_revision, 4);
}

#[test]
fn non_durable_commits_after_a_crash_leave_a_consistent_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let s = Store::open(&path).unwrap();
    let mut b = s.begin_apply().unwrap();
    b.put(&put("a", "1"), &NoLeases).unwrap();
    b.set_applied_index(1);
    b.commit(true).unwrap();
    let mut b = s.begin_apply().unwrap();
    b.put(&put("b", "2"), &NoLeases).unwrap();
    b.set_applied_index(2);
    b.commit(false).unwrap();
    // Copying the file while the store is open is what a crash leaves behind.
    let crashed = dir.path().join("crashed");
    std::fs::copy(&path, &crashed).unwrap();
    drop(s);
    let c = Store::open(&crashed).unwrap();
    let n = c.range(&get("a", "\0")).unwrap().count;
    match c.applied_index() {
        1 => assert_eq!((n, c.current_revision()), (1, 2)),
        2 => assert_eq!((n, c.current_revision()), (2, 3)),
        other => panic!("applied index {other}"),
    }
    // A clean close keeps everything.
    let s = Store::open(&path).unwrap();
    assert_eq!((s.applied_index(), s.current_revision()), (2, 3));
}

#[test]
fn garbage_file_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    std::fs::write(&path, vec![0xAB; 10_000]).unwrap();
    assert!(matches!(Store::open(&path), Err(MvccError::NotCairn(_))));
    assert_eq!(std::fs::read(&path).unwrap(), vec![0xAB; 10_000]);
}

#[test]
fn snapshot_and_defragment_keep_everything() {
    let (d, s) = open();
    for i in 0..300 {
        put_now(&s, &format!("k{}", i % 50), &"x".repeat(200));
    }
    apply(&s, |b| {
        b.put_meta("m", b"v").unwrap();
        b.compact(250).unwrap();
    });
    let all = get("\0", "\0");
    let before = s.range(&all).unwrap();
    let hash = s.hash_kv(0).unwrap();
    let in_use = s.measure_in_use().unwrap();
    assert!(in_use > 50 * 200, "{in_use}");
    assert_eq!(s.db_size_in_use(), in_use);
    assert!(in_use <= s.db_size(), "{in_use} > {}", s.db_size());

    let snap = d.path().join("snap");
    s.snapshot_to(&snap).unwrap();
    assert!(s.snapshot_to(&snap).is_err());
    let copy = Store::open(&snap).unwrap();
    assert_eq!(copy.range(&all).unwrap(), before);
    assert_eq!(copy.hash_kv(0).unwrap(), hash);
    assert_eq!(copy.hash().unwrap(), s.hash().unwrap());
    assert_eq!(copy.meta("m").unwrap(), Some(b"v".to_vec()));

    s.defragment().unwrap();
    assert_eq!(s.range(&all).unwrap(), before);
    assert_eq!(s.hash_kv(0).unwrap(), hash);
    put_now(&s, "after", "defrag");
    let s = reopen(&d, s);
    assert_eq!(s.range(&all).unwrap().count, 51);
}

#[test]
fn readers_never_see_half_a_transaction() {
    let (_d, s) = open();
    let s = Arc::new(s);
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let (s, done) = (s.clone(), done.clone());
            std::thread::spawn(move || {
                let mut last = 0;
                while !done.load(Ordering::Relaxed) {
                    let r = s.range(&get("x", "z")).unwrap();
                    let rev = r.header.unwrap().revision;
                    assert!(rev >= last);
                    last = rev;
                    if let [a, b] = r.kvs.as_slice() {
                        assert_eq!(a.value, b.value);
                        assert_eq!(a.mod_revision, b.mod_revision);
                    } else {
                        assert!(r.kvs.is_empty());
                    }
                    let old = RangeRequest {
                        revision: rev - 1,
                        ..get("x", "z")
                    };
                    match s.range(&old) {
                        Ok(_) | Err(MvccError::Compacted) => {}
                        Err(e) => panic!("{e}"),
                    }
                }
            })
        })
        .collect();
    for i in 0..200 {
        let v = format!("{i}");
        let txn = TxnRequest {
            compare: vec![],
            success: vec![
                RequestOp {
                    request: Some(Request::RequestPut(put("x", &v))),
                },
                RequestOp {
                    request: Some(Request::RequestPut(put("y", &v))),
                },
            ],
            failure: vec![],
        };
        let mut b = s.begin_apply().unwrap();
        b.txn(&txn, &NoLeases).unwrap();
        if i % 10 == 9 {
            let cur = b.range(&get("x", "")).unwrap().header.unwrap().revision;
            b.compact(cur - 1).unwrap();
        }
        b.commit(false).unwrap();
    }
    done.store(true, Ordering::Relaxed);
    for r in readers {
        r.join().unwrap();
    }
}

#[test]
fn restore_from_a_snapshot_replaces_everything() {
    let (d, leader) = open();
    for i in 0..200 {
        put_now(&leader, &format!("k{}", i % 40), &format!("v{i}"));
    }
    apply(&leader, |b| {
        b.put_meta("member", b"leader").unwrap();
        b.compact(150).unwrap();
        b.set_applied_index(777);
    });
    let snap = d.path().join("snap");
    leader.snapshot_to(&snap).unwrap();

    // A member with a different, shorter history takes the snapshot.
    let (d2, follower) = open();
    put_now(&follower, "stale", "x");
    put_now(&follower, "k1", "old");
    apply(&follower, |b| b.compact(2).unwrap());
    assert_eq!(follower.compact_hashes().len(), 1);
    follower.restore_from(&snap).unwrap();
    // The hash its own compaction took was of the data now replaced.
    assert!(follower.compact_hashes().is_empty());
    let all = get("\0", "\0");
    assert_eq!(follower.range(&all).unwrap(), leader.range(&all).unwrap());
    assert_eq!(follower.hash_kv(0).unwrap(), leader.hash_kv(0).unwrap());
    assert_eq!(follower.current_revision(), leader.current_revision());
    assert_eq!(follower.compact_revision(), leader.compact_revision());
    assert_eq!(follower.applied_index(), 777);
    assert_eq!(follower.meta("member").unwrap(), Some(b"leader".to_vec()));
    // It goes on from there, and survives a reopen.
    let rev = put_now(&follower, "after", "restore");
    assert_eq!(rev, leader.current_revision() + 1);
    let follower = reopen(&d2, follower);
    assert_eq!(follower.range(&get("after", "")).unwrap().count, 1);
    assert_eq!(follower.range(&get("stale", "")).unwrap().count, 0);

    // A file that is not a cairn backend is refused and changes nothing.
    let junk = d.path().join("junk");
    std::fs::write(&junk, b"not a database").unwrap();
    let before = follower.range(&all).unwrap();
    assert!(matches!(
        follower.restore_from(&junk),
        Err(MvccError::NotCairn(_))
    ));
    assert_eq!(follower.range(&all).unwrap(), before);
    // Restoring while keeping some of its own records writes them in the same commit: the
    // state after a reopen has the snapshot's data with the member's own id.
    follower
        .restore_keeping(&snap, &[("member", b"follower")], Some(900))
        .unwrap();
    assert_eq!(follower.meta("member").unwrap(), Some(b"follower".to_vec()));
    assert_eq!(follower.applied_index(), 900);
    let follower = reopen(&d2, follower);
    assert_eq!(follower.meta("member").unwrap(), Some(b"follower".to_vec()));
    assert_eq!(follower.applied_index(), 900);
    assert_eq!(follower.hash_kv(0).unwrap(), leader.hash_kv(0).unwrap());
}

#[test]
fn lease_records_persist_and_travel_in_snapshots() {
    let (d, store) = open();
    apply(&store, |b| {
        b.put_lease(7, b"seven".to_vec());
        b.put_lease(-1, b"minus one".to_vec());
        b.put_lease(9, b"nine".to_vec());
    });
    apply(&store, |b| {
        b.delete_lease(9);
        b.put_lease(7, b"seven again".to_vec());
    });
    let want = vec![(7, b"seven again".to_vec()), (-1, b"minus one".to_vec())];
    assert_eq!(store.leases().unwrap(), want);
    let hash = store.hash().unwrap();
    let store = reopen(&d, store);
    assert_eq!(store.leases().unwrap(), want);
    assert_eq!(store.hash().unwrap(), hash);
    let snap = d.path().join("snap");
    store.snapshot_to(&snap).unwrap();
    let (_d2, other) = open();
    apply(&other, |b| b.put_lease(1, b"stale".to_vec()));
    other.restore_from(&snap).unwrap();
    assert_eq!(other.leases().unwrap(), want);
}

#[test]
fn record_tables_persist_replace_on_restore_and_travel_in_snapshots() {
    use cairn_mvcc::RecordTable;
    let (d, store) = open();
    let empty_hash = store.hash().unwrap();
    apply(&store, |b| {
        b.put_record(RecordTable::AuthUsers, b"root", b"r1");
        b.put_record(RecordTable::AuthUsers, b"alice", b"a1");
        b.put_record(RecordTable::Auth, b"authEnabled", &[1]);
    });
    apply(&store, |b| {
        b.delete_record(RecordTable::AuthUsers, b"alice");
        b.put_record(RecordTable::AuthRoles, b"r", b"perms");
    });
    let users = vec![(b"root".to_vec(), b"r1".to_vec())];
    assert_eq!(store.records(RecordTable::AuthUsers).unwrap(), users);
    let hash = store.hash().unwrap();
    assert_ne!(hash, empty_hash, "records are part of the hash");
    let store = reopen(&d, store);
    assert_eq!(store.records(RecordTable::AuthUsers).unwrap(), users);
    assert_eq!(store.hash().unwrap(), hash);
    let snap = d.path().join("snap");
    store.snapshot_to(&snap).unwrap();
    // A member with records of its own takes the snapshot: only the snapshot's remain.
    let (_d2, other) = open();
    apply(&other, |b| {
        b.put_record(RecordTable::AuthUsers, b"stale", b"x");
        b.put_record(RecordTable::AuthRoles, b"stale", b"x");
    });
    other.restore_from(&snap).unwrap();
    for t in RecordTable::ALL {
        assert_eq!(
            other.records(t).unwrap(),
            store.records(t).unwrap(),
            "{t:?}"
        );
    }
    assert_eq!(other.hash().unwrap(), hash);
}

#[test]
fn delete_keys_takes_one_revision_and_reports_key_leases() {
    let (_d, store) = open();
    let leases = Leases(vec![5]);
    let with_lease = |k: &str| PutRequest {
        lease: 5,
        ..put(k, "v")
    };
    let ((), _) = apply(&store, |b| {
        let mark = b.change_mark();
        for k in ["a", "b", "c"] {
            b.put(&with_lease(k), &leases).unwrap();
        }
        b.put(&put("plain", "v"), &leases).unwrap();
        let seen: Vec<(Vec<u8>, i64)> = b
            .key_leases_since(mark)
            .map(|(k, l)| (k.to_vec(), l))
            .collect();
        assert_eq!(
            seen,
            vec![
                (b"a".to_vec(), 5),
                (b"b".to_vec(), 5),
                (b"c".to_vec(), 5),
                (b"plain".to_vec(), 0)
            ]
        );
    });
    let before = store.current_revision();
    let (_, events) = apply(&store, |b| {
        let mark = b.change_mark();
        // "gone" is not live: nothing to delete for it.
        let keys = [b"a".to_vec(), b"c".to_vec(), b"gone".to_vec()];
        b.delete_keys(&keys).unwrap();
        assert_eq!(b.revision(), before + 1);
        let seen: Vec<i64> = b.key_leases_since(mark).map(|(_, l)| l).collect();
        assert_eq!(seen, vec![0, 0]);
        // Nothing live: no revision.
        b.delete_keys(&[b"gone".to_vec()]).unwrap();
        assert_eq!(b.revision(), before + 1);
    });
    let revs: Vec<i64> = events
        .iter()
        .map(|e| e.kv.as_ref().unwrap().mod_revision)
        .collect();
    assert_eq!(revs, vec![before + 1, before + 1]);
    assert_eq!(store.range(&get("a", "d")).unwrap().count, 1);
}

/// redb extends its file ahead of need, sparsely: the size Status reports and the quota
/// checks is what was written (etcd's high-water mark), not the file's length, so the same
/// data fills a quota no faster than it fills etcd's.
#[test]
fn db_size_is_what_the_file_holds_not_its_length() {
    let (d, s) = open();
    let path = d.path().join("db");
    assert_eq!(s.path(), path);
    let mut widest = 1.0f64;
    for round in 0..40 {
        for i in 0..50 {
            put_now(&s, &format!("r{round:02}/{i:02}"), &"v".repeat(20_000));
        }
        // As the server does at least every 500 ms: until a durable commit the pages are in
        // redb's write buffer, not on the file.
        s.begin_apply().unwrap().commit(true).unwrap();
        let len = std::fs::metadata(&path).unwrap().len();
        let size = s.db_size();
        let in_use = s.measure_in_use().unwrap();
        assert!(size <= len, "{size} > {len}");
        assert!(
            in_use <= size,
            "round {round}: in use {in_use} > size {size}"
        );
        assert!(
            size >= (round + 1) as u64 * 50 * 20_000,
            "round {round}: {size}"
        );
        widest = widest.max(len as f64 / size as f64);
    }
    // Otherwise this test shows nothing: the file was extended beyond what it holds.
    assert!(widest > 1.3, "the file never outgrew its content: {widest}");
}

#[test]
fn keys_total_counts_live_keys_through_reopen_restore_defrag_and_compaction() {
    let (d, s) = open();
    assert_eq!(s.keys_total(), 0);
    for i in 0..10 {
        put_now(&s, &format!("k{i}"), "v");
    }
    put_now(&s, "k0", "again");
    assert_eq!(s.keys_total(), 10, "overwriting a key adds none");
    apply(&s, |b| b.delete_range(&del("k0", "k3")).unwrap());
    apply(&s, |b| b.delete_range(&del("k0", "")).unwrap());
    assert_eq!(s.keys_total(), 7, "deleting a deleted key takes none");
    put_now(&s, "k0", "back");
    assert_eq!(s.keys_total(), 8);
    // A batch whose operation fails leaves the count as it was.
    let leased = PutRequest {
        lease: 5,
        ..put("leased", "v")
    };
    let (failed, _) = apply(&s, |b| b.put(&leased, &Leases(vec![])));
    assert!(failed.is_err());
    assert_eq!(s.keys_total(), 8);
    let rev = s.current_revision();
    apply(&s, |b| b.compact(rev).unwrap());
    assert_eq!(s.keys_total(), 8);
    s.defragment().unwrap();
    assert_eq!(s.keys_total(), 8);
    let s = reopen(&d, s);
    assert_eq!(s.keys_total(), 8);
    let all = get("\0", "\0");
    assert_eq!(s.range(&all).unwrap().count, 8);

    let snap = d.path().join("snap");
    s.snapshot_to(&snap).unwrap();
    let (_d2, other) = open();
    for i in 0..3 {
        put_now(&other, &format!("o{i}"), "v");
    }
    other.restore_from(&snap).unwrap();
    assert_eq!(other.keys_total(), 8);
}
