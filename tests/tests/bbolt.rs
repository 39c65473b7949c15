//! cairn-bbolt judged by the real bbolt, through etcd 3.5's own tools: it reads what
//! `etcdctl snapshot save` wrote, and `etcdutl snapshot status|restore` and etcd itself
//! read what it writes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs::File;
use std::path::Path;

use cairn_bbolt::{Reader, Writer};
use cairn_tests::{
    etcdctl34, etcdctl35, etcdutl35, free_port, run_client, tool, workspace_bin, Kind, Run,
    ServerProc,
};
use prost::Message;

/// CRC-32C (Castagnoli), the checksum etcdutl's snapshot status reports as its hash.
fn crc32c(mut crc: u32, bytes: &[u8]) -> u32 {
    crc = !crc;
    for b in bytes {
        crc ^= u32::from(*b);
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

/// What `etcdutl snapshot status` computes, computed from our reader: the hash over every
/// bucket's name, keys and values, the last revision in `key`, the number of keys in all
/// buckets and the database size.
#[derive(Debug, PartialEq, Eq)]
struct Status {
    hash: u32,
    revision: i64,
    total_key: u64,
    total_size: u64,
}

fn status_of(path: &Path) -> Status {
    let r = Reader::open(path).unwrap();
    let mut s = Status {
        hash: 0,
        revision: 0,
        total_key: 0,
        total_size: r.size(),
    };
    for b in r.buckets().unwrap() {
        s.hash = crc32c(s.hash, &b.name);
        for e in r.entries(&b) {
            let e = e.unwrap();
            s.hash = crc32c(s.hash, &e.key);
            s.hash = crc32c(s.hash, &e.value);
            if b.name == b"key" {
                s.revision = i64::from_be_bytes(e.key[..8].try_into().unwrap());
            }
            s.total_key += 1;
        }
    }
    s
}

fn etcdutl_status(path: &Path) -> Status {
    let run = etcdutl35(&["snapshot", "status", path.to_str().unwrap(), "-w", "json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let v: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
    Status {
        hash: v["hash"].as_u64().unwrap() as u32,
        revision: v["revision"].as_i64().unwrap(),
        total_key: v["totalKey"].as_u64().unwrap(),
        total_size: v["totalSize"].as_u64().unwrap(),
    }
}

fn ok(run: Run) -> String {
    assert_eq!(run.code, 0, "{run:?}");
    run.stdout
}

/// A revision as etcd's `key` bucket spells it: main, `_`, sub (big-endian).
fn rev_key(main: i64, sub: i64) -> Vec<u8> {
    let mut k = main.to_be_bytes().to_vec();
    k.push(b'_');
    k.extend_from_slice(&sub.to_be_bytes());
    k
}

#[test]
fn reads_every_bucket_of_a_real_etcd_snapshot() {
    read_a_real_snapshot(Kind::Etcd35, etcdctl35);
}

#[test]
fn reads_every_bucket_of_a_real_etcd_34_snapshot() {
    read_a_real_snapshot(Kind::Etcd34, etcdctl34);
}

/// Takes a snapshot of an etcd of `kind` holding keys, a compaction, a lease, a user and a
/// role with its `ctl`, and reads it back bucket by bucket.
fn read_a_real_snapshot(kind: Kind, ctl: fn(&str, &[&str]) -> Run) {
    let etcd = ServerProc::start(kind, &[]);
    let ep = etcd.endpoint();
    // Revisions 2..=21: k00..k19; 22..=26: k00..k04 again; 27: k05 deleted after the
    // compaction at 26; 28: a key on a lease.
    for i in 0..20 {
        ok(ctl(&ep, &["put", &format!("k{i:02}"), &format!("v{i}")]));
    }
    for i in 0..5 {
        ok(ctl(&ep, &["put", &format!("k{i:02}"), "again"]));
    }
    ok(ctl(&ep, &["compact", "26", "--physical"]));
    ok(ctl(&ep, &["del", "k05"]));
    let grant = ok(ctl(&ep, &["lease", "grant", "600"]));
    let lease = grant.split_whitespace().nth(1).unwrap().to_string();
    ok(ctl(&ep, &["put", "lk", "x", &format!("--lease={lease}")]));
    ok(ctl(&ep, &["role", "add", "reader"]));
    ok(ctl(&ep, &["user", "add", "alice:pw"]));

    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("saved.db");
    ok(ctl(&ep, &["snapshot", "save", saved.to_str().unwrap()]));
    // etcd appends a SHA-256 of the database; the bbolt file is what comes before it.
    let bytes = std::fs::read(&saved).unwrap();
    assert_eq!(bytes.len() % 4096, 32);
    let db = dir.path().join("db");
    std::fs::write(&db, &bytes[..bytes.len() - 32]).unwrap();

    let r = Reader::open(&db).unwrap();
    let names: Vec<String> = r
        .buckets()
        .unwrap()
        .iter()
        .map(|b| String::from_utf8(b.name.clone()).unwrap())
        .collect();
    for want in [
        "alarm",
        "auth",
        "authRoles",
        "authUsers",
        "cluster",
        "key",
        "lease",
        "members",
        "members_removed",
        "meta",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} missing: {names:?}");
    }
    let entries = |name: &[u8]| -> Vec<cairn_bbolt::Entry> {
        let b = r.bucket(name).unwrap();
        r.entries(&b).map(|e| e.unwrap()).collect()
    };

    // After the compaction at 26: k00..k04 once each (22..26), k05's put (7) and its
    // tombstone (27), k06..k19 once each, and lk (28).
    let keys = entries(b"key");
    assert_eq!(keys.len(), 5 + 2 + 14 + 1);
    let mains: Vec<i64> = keys
        .iter()
        .map(|e| i64::from_be_bytes(e.key[..8].try_into().unwrap()))
        .collect();
    let mut want: Vec<i64> = (7..=21).chain(22..=28).collect();
    want.sort();
    assert_eq!(mains, want);
    let last =
        cairn_proto::mvccpb::KeyValue::decode(keys[keys.len() - 1].value.as_slice()).unwrap();
    assert_eq!(
        (last.key.as_slice(), last.value.as_slice()),
        (&b"lk"[..], &b"x"[..])
    );
    // etcdctl prints lease ids as 16 hex digits.
    assert_eq!(format!("{:016x}", last.lease), lease);
    // The tombstone's key is the revision with a `t`.
    assert!(keys.iter().any(|e| e.key.len() == 18 && e.key[17] == b't'));

    let meta = entries(b"meta");
    let meta_keys: Vec<&[u8]> = meta.iter().map(|e| e.key.as_slice()).collect();
    assert!(
        meta_keys.contains(&&b"consistent_index"[..]),
        "{meta_keys:?}"
    );
    let finished = meta
        .iter()
        .find(|e| e.key == b"finishedCompactRev")
        .unwrap();
    assert_eq!(finished.value, rev_key(26, 0));
    assert_eq!(entries(b"lease").len(), 1);
    assert_eq!(entries(b"members").len(), 1);
    let users: Vec<Vec<u8>> = entries(b"authUsers").into_iter().map(|e| e.key).collect();
    assert_eq!(users, vec![b"alice".to_vec()]);
    let roles: Vec<Vec<u8>> = entries(b"authRoles").into_iter().map(|e| e.key).collect();
    assert_eq!(roles, vec![b"reader".to_vec()]);
    assert!(r
        .buckets()
        .unwrap()
        .iter()
        .all(|b| r.entries(b).all(|e| !e.unwrap().is_bucket)));

    // Our reading gives etcdutl's figures, on the file with and without its trailer.
    assert_eq!(status_of(&db), etcdutl_status(&saved));
    cairnctl_status_is_etcdctls(&saved);
    cairnctl_status_is_etcdctls(&db);
    assert_eq!(status_of(&db).revision, 28);
}

/// Writes an etcd-shaped database: keys `key-00000`.. at revisions 2.. (every 97th value
/// larger than a page), a consistent index, and etcd's other buckets empty.
fn write_etcd_shaped(path: &Path, n: i64) {
    let file = File::create(path).unwrap();
    let mut w = Writer::new(file).unwrap();
    let mut names = [
        "alarm",
        "auth",
        "authRoles",
        "authUsers",
        "cluster",
        "lease",
        "members",
        "members_removed",
    ]
    .to_vec();
    names.reverse();
    for name in names {
        w.bucket(name.as_bytes()).unwrap().finish().unwrap();
    }
    let mut key = w.bucket(b"key").unwrap();
    for i in 0..n {
        let rev = i + 2;
        let value = if i % 97 == 0 {
            vec![b'v'; 10_000 + i as usize]
        } else {
            format!("value-{i}").into_bytes()
        };
        let kv = cairn_proto::mvccpb::KeyValue {
            key: format!("key-{i:05}").into_bytes(),
            create_revision: rev,
            mod_revision: rev,
            version: 1,
            value,
            lease: 0,
        };
        key.put(&rev_key(rev, 0), &kv.encode_to_vec()).unwrap();
    }
    key.finish().unwrap();
    let mut meta = w.bucket(b"meta").unwrap();
    meta.put(b"consistent_index", &(n as u64 + 10).to_be_bytes())
        .unwrap();
    meta.finish().unwrap();
    w.finish().unwrap();
}

#[test]
fn etcdutl_reads_our_file_and_etcd_serves_it_after_restore() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ours.db");
    let n = 3000;
    write_etcd_shaped(&db, n);
    // 3000 keys of 17 bytes with their values need several leaves under branch pages.
    assert!(std::fs::metadata(&db).unwrap().len() > 100 * 4096);

    let ours = status_of(&db);
    assert_eq!(ours.revision, n + 1);
    assert_eq!(ours.total_key, n as u64 + 1);
    assert_eq!(etcdutl_status(&db), ours);

    cairnctl_status_is_etcdctls(&db);

    // With etcd's SHA-256 trailer, restore checks the file's integrity itself.
    let snapshot = dir.path().join("ours.snapshot");
    let mut bytes = std::fs::read(&db).unwrap();
    let digest = <sha2::Sha256 as sha2::Digest>::digest(&bytes);
    bytes.extend_from_slice(&digest);
    std::fs::write(&snapshot, &bytes).unwrap();
    assert_eq!(etcdutl_status(&snapshot), ours);
    // The trailer is checked: a wrong one makes etcdutl refuse the file.
    let wrong = dir.path().join("wrong.snapshot");
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&wrong, &bytes).unwrap();
    let refused = etcdutl35(&[
        "snapshot",
        "restore",
        wrong.to_str().unwrap(),
        &format!("--data-dir={}", dir.path().join("refused").display()),
    ]);
    assert_ne!(refused.code, 0, "{refused:?}");
    assert!(refused.stderr.contains("sha256"), "{refused:?}");

    let peer_port = free_port();
    let mut etcd = ServerProc::new(Kind::Etcd35, "restored", peer_port, &[]);
    let peer = etcd.peer_url();
    let data = etcd.data_dir();
    let restore = etcdutl35(&[
        "snapshot",
        "restore",
        snapshot.to_str().unwrap(),
        "--name=restored",
        &format!("--data-dir={}", data.display()),
        &format!("--initial-cluster=restored={peer}"),
        &format!("--initial-advertise-peer-urls={peer}"),
    ]);
    assert_eq!(restore.code, 0, "{restore:?}");
    etcd.spawn();
    let ep = etcd.endpoint();
    assert_eq!(
        ok(etcdctl35(&ep, &["get", "key-00042", "--print-value-only"])),
        "value-42\n"
    );
    let big = ok(etcdctl35(&ep, &["get", "key-00097", "--print-value-only"]));
    assert_eq!(big, format!("{}\n", "v".repeat(10_097)));
    let fields = ok(etcdctl35(
        &ep,
        &["get", "key-", "--prefix", "--count-only", "-w", "fields"],
    ));
    assert!(fields.contains(&format!("\"Count\" : {n}\n")), "{fields}");
    assert!(
        fields.contains(&format!("\"Revision\" : {}\n", n + 1)),
        "{fields}"
    );
}

/// `snapshot status FILE` with cairnctl and with etcdctl 3.5, in every `-w` format.
fn snapshot_status(bin: &Path, file: &Path, format: &str) -> Run {
    let file = file.to_str().unwrap();
    run_client(
        bin,
        "127.0.0.1:1",
        &["snapshot", "status", file, "-w", format],
        None,
    )
}

fn cairnctl_status_is_etcdctls(file: &Path) {
    for format in ["simple", "table", "json", "fields", "protobuf"] {
        let etcdctl = snapshot_status(&tool("etcdctl-3.5"), file, format);
        let cairnctl = snapshot_status(&workspace_bin("cairnctl"), file, format);
        assert_eq!(cairnctl, etcdctl, "-w {format}");
        assert_eq!(etcdctl.code == 0, format != "protobuf", "{etcdctl:?}");
    }
}

#[test]
fn snapshot_status_refuses_bad_files_as_etcdctl_does() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.db");
    write_etcd_shaped(&good, 50);
    let bytes = std::fs::read(&good).unwrap();
    let not_bbolt = dir.path().join("text");
    std::fs::write(&not_bbolt, "not a database\n".repeat(1000)).unwrap();
    let short = dir.path().join("short.db");
    std::fs::write(&short, &bytes[..100]).unwrap();
    // A byte of the root page id flipped in both meta pages: no meta is left to trust.
    let flipped = dir.path().join("flipped.db");
    let mut b = bytes.clone();
    b[32] ^= 1;
    b[4096 + 32] ^= 1;
    std::fs::write(&flipped, &b).unwrap();
    let missing = dir.path().join("missing.db");
    let cases = [
        (&not_bbolt, "Error: invalid database\n"),
        (&short, "Error: invalid database\n"),
        (&flipped, "Error: checksum error\n"),
    ];
    for (file, want) in cases {
        let etcdctl = snapshot_status(&tool("etcdctl-3.5"), file, "json");
        let cairnctl = snapshot_status(&workspace_bin("cairnctl"), file, "json");
        assert_eq!(cairnctl, etcdctl, "{}", file.display());
        assert!(cairnctl.stderr.ends_with(want), "{cairnctl:?}");
        assert_eq!(cairnctl.code, 1);
    }
    let etcdctl = snapshot_status(&tool("etcdctl-3.5"), &missing, "simple");
    let cairnctl = snapshot_status(&workspace_bin("cairnctl"), &missing, "simple");
    assert_eq!(cairnctl, etcdctl);
    assert!(
        cairnctl.stderr.contains("no such file or directory"),
        "{cairnctl:?}"
    );

    // Help and argument errors.
    for args in [
        &["snapshot", "status", "--help"][..],
        &["snapshot", "status"],
        &["snapshot", "status", "a", "b"],
        &["snapshot", "--help"],
    ] {
        let etcdctl = run_client(&tool("etcdctl-3.5"), "127.0.0.1:1", args, None);
        let cairnctl = run_client(&workspace_bin("cairnctl"), "127.0.0.1:1", args, None);
        assert_eq!(cairnctl, etcdctl, "{args:?}");
    }

    // A truncated file makes etcdctl 3.5 panic; cairnctl says what is wrong.
    let truncated = dir.path().join("truncated.db");
    std::fs::write(&truncated, &bytes[..bytes.len() - 4096]).unwrap();
    let cairnctl = snapshot_status(&workspace_bin("cairnctl"), &truncated, "simple");
    let need = bytes.len();
    let len = need - 4096;
    assert_eq!(cairnctl.code, 1);
    assert!(
        cairnctl.stderr.ends_with(&format!(
            "Error: file size too small: {len} bytes, the database needs {need}\n"
        )),
        "{cairnctl:?}"
    );
}

/// Keys too large for two to share a branch page, values over several pages, and a
/// bucket two branch levels deep: etcdutl (bbolt's `tx.Check` first, then its hash)
/// agrees with our figures.
#[test]
fn etcdutl_checks_a_file_of_large_keys_and_deep_trees() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("large.db");
    let mut w = Writer::new(File::create(&db).unwrap()).unwrap();
    let mut big = w.bucket(b"big").unwrap();
    for i in 0..300u32 {
        let mut key = format!("{i:05}").into_bytes();
        key.resize(3000 + (i as usize * 7) % 2500, b'k');
        let value = vec![(i % 251) as u8; (i as usize * 331) % 50_000];
        big.put(&key, &value).unwrap();
    }
    big.finish().unwrap();
    let mut deep = w.bucket(b"deep").unwrap();
    for i in 0..40_000u32 {
        deep.put(format!("{i:030}").as_bytes(), b"").unwrap();
    }
    deep.finish().unwrap();
    w.finish().unwrap();
    let ours = status_of(&db);
    assert_eq!(ours.total_key, 40_300);
    assert_eq!(etcdutl_status(&db), ours);
    cairnctl_status_is_etcdctls(&db);
}
