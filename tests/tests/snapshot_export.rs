//! cairn's `Maintenance.Snapshot` in etcd's own format, judged by etcd's own tools: the
//! real `etcdctl snapshot save` (3.4 and 3.5) saves it from a member of a cairn cluster,
//! `etcdctl snapshot status` (3.4) and `etcdutl snapshot status` (3.5) read it, and etcd
//! 3.5 and 3.4, started on what `etcdutl`/`etcdctl` restored from it, serve the same keys,
//! revisions, compaction point, leases, users, roles and auth as the cairn cluster.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

use cairn_bbolt::Reader;
use cairn_proto::etcdserverpb::{
    kv_client::KvClient, maintenance_client::MaintenanceClient, PutRequest, SnapshotRequest,
};
use cairn_tests::{
    block_on, cairnctl, channel, etcdctl35, etcdutl35, free_port, run_client, tool, Cluster, Kind,
    Run, ServerProc,
};
use sha2::{Digest, Sha256};

fn ok(run: Run) -> String {
    assert_eq!(run.code, 0, "{run:?}");
    run.stdout
}

/// Runs etcdctl of `version` ("3.4" or "3.5") against `ep` as root.
fn root(version: &str, ep: &str, args: &[&str]) -> Run {
    let mut all = vec!["--user=root:pw"];
    all.extend_from_slice(args);
    run_client(&tool(&format!("etcdctl-{version}")), ep, &all, None)
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// What `snapshot status -w json` reports: hash, revision, total keys.
fn status_figures(v: &serde_json::Value) -> (u64, i64, u64) {
    (
        v["hash"].as_u64().unwrap(),
        v["revision"].as_i64().unwrap(),
        v["totalKey"].as_u64().unwrap(),
    )
}

/// Fills the cluster: keys over several revisions, a transaction and a range delete that
/// write several changes in one revision each, a compaction, leases with keys, users and
/// roles with permissions, and auth turned on. Returns the lease ids that carry keys.
///
/// Revisions: 2..=41 put k00..k39; 42..=51 put k00..k09 again; compaction at 45;
/// 52 a transaction putting t1 and t2; 53 deletes k10..k14; 54 deletes k20; 55 and 56
/// put lk1 and lk2 on one lease; 57 puts lk3 on another; 58 puts after-auth.
fn fill(ep: &str) -> Vec<String> {
    for i in 0..40 {
        ok(etcdctl35(
            ep,
            &["put", &format!("k{i:02}"), &format!("v{i}")],
        ));
    }
    for i in 0..10 {
        ok(etcdctl35(
            ep,
            &["put", &format!("k{i:02}"), &format!("again{i}")],
        ));
    }
    ok(etcdctl35(ep, &["compact", "45", "--physical"]));
    let txn = run_client(
        &tool("etcdctl-3.5"),
        ep,
        &["txn"],
        Some("\nput t1 a\nput t2 b\n\n\n"),
    );
    assert!(ok(txn).starts_with("SUCCESS"));
    ok(etcdctl35(ep, &["del", "k10", "k15"]));
    ok(etcdctl35(ep, &["del", "k20"]));
    let grant = |ttl: &str| {
        let out = ok(etcdctl35(ep, &["lease", "grant", ttl]));
        out.split_whitespace().nth(1).unwrap().to_string()
    };
    let (l1, l2, _empty) = (grant("3600"), grant("7200"), grant("5000"));
    ok(etcdctl35(
        ep,
        &["put", "lk1", "x", &format!("--lease={l1}")],
    ));
    ok(etcdctl35(
        ep,
        &["put", "lk2", "y", &format!("--lease={l1}")],
    ));
    ok(etcdctl35(
        ep,
        &["put", "lk3", "z", &format!("--lease={l2}")],
    ));
    for args in [
        &["user", "add", "root:pw"][..],
        &["role", "add", "r1"],
        &["role", "add", "r2"],
        &["role", "grant-permission", "r1", "readwrite", "foo", "fop"],
        &["role", "grant-permission", "r2", "read", "k01"],
        &["role", "grant-permission", "r2", "write", "--prefix", "w/"],
        &["user", "add", "alice:apw"],
        &["user", "add", "bob:bpw"],
        &["user", "grant-role", "alice", "r1"],
        &["user", "grant-role", "bob", "r1"],
        &["user", "grant-role", "bob", "r2"],
        &["auth", "enable"],
    ] {
        ok(etcdctl35(ep, args));
    }
    ok(root("3.5", ep, &["put", "after-auth", "1"]));
    vec![l1, l2]
}

/// Everything a client can see of the data, compared between cairn and a restored etcd:
/// every key with its revisions, version, value and lease; the current revision; the hash
/// and compaction point at `rev`; a read below the compaction; the leases with their keys;
/// users, roles and permissions; and that auth is on.
fn assert_serves_the_same(version: &str, cairn: &str, etcd: &str, rev: i64, leases: &[String]) {
    let all = ["get", "", "--from-key", "-w", "json"];
    let (c, e) = (
        json(&ok(root(version, cairn, &all))),
        json(&ok(root(version, etcd, &all))),
    );
    assert_eq!(c["kvs"], e["kvs"], "keys differ");
    assert_eq!(c["header"]["revision"], e["header"]["revision"]);
    assert_eq!(e["header"]["revision"].as_i64().unwrap(), rev);
    let rev_arg = rev.to_string();
    let hash = ["endpoint", "hashkv", "--rev", &rev_arg, "-w", "json"];
    let (c, e) = (
        json(&ok(root(version, cairn, &hash))),
        json(&ok(root(version, etcd, &hash))),
    );
    assert_eq!(
        c[0]["HashKV"]["hash"], e[0]["HashKV"]["hash"],
        "HashKV differs"
    );
    assert_eq!(e[0]["HashKV"]["compact_revision"].as_i64(), Some(45));
    for (args, same) in [
        (&["get", "k00", "--rev=44"][..], false),
        (&["get", "k05", "--rev=45", "-w", "json"], true),
        (&["lease", "list"], true),
        (&["user", "list"], true),
        (&["user", "get", "alice"], true),
        (&["user", "get", "bob"], true),
        (&["role", "list"], true),
        (&["role", "get", "r1"], true),
        (&["role", "get", "r2"], true),
    ] {
        let (c, e) = (root(version, cairn, args), root(version, etcd, args));
        assert_eq!(c.code, e.code, "{args:?}: {c:?} {e:?}");
        if same {
            let (mut c, mut e) = (c.stdout, e.stdout);
            if args[0] == "lease" {
                // Leases are listed in no particular order.
                let sorted = |s: &str| {
                    let mut l: Vec<String> = s.lines().map(str::to_string).collect();
                    l.sort();
                    l.join("\n")
                };
                (c, e) = (sorted(&c), sorted(&e));
            }
            if args.contains(&"json") {
                let (mut cj, mut ej) = (json(&c), json(&e));
                cj["header"] = serde_json::Value::Null;
                ej["header"] = serde_json::Value::Null;
                (c, e) = (cj.to_string(), ej.to_string());
            }
            assert_eq!(c, e, "{args:?}");
        } else {
            assert!(
                e.stderr.contains("required revision has been compacted"),
                "{e:?}"
            );
        }
    }
    for id in leases {
        let args = ["lease", "timetolive", id, "--keys", "-w", "json"];
        let (c, e) = (
            json(&ok(root(version, cairn, &args))),
            json(&ok(root(version, etcd, &args))),
        );
        assert_eq!(c["granted-ttl"], e["granted-ttl"], "lease {id}");
        // A lease's keys come in no particular order.
        let keys = |v: &serde_json::Value| {
            let mut k: Vec<String> = v["keys"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| k.as_str().unwrap().to_string())
                .collect();
            k.sort();
            k
        };
        assert_eq!(keys(&c), keys(&e), "lease {id}");
        assert!(!keys(&e).is_empty());
        let left = e["ttl"].as_i64().unwrap();
        assert!(
            left > 0 && left <= e["granted-ttl"].as_i64().unwrap(),
            "{e}"
        );
    }
    // Auth is on: no user, no read; alice's password (its bcrypt hash) carried over.
    let anonymous = run_client(
        &tool(&format!("etcdctl-{version}")),
        etcd,
        &["get", "foo1"],
        None,
    );
    assert_ne!(anonymous.code, 0, "{anonymous:?}");
    let alice = run_client(
        &tool(&format!("etcdctl-{version}")),
        etcd,
        &["--user=alice:apw", "put", "foo1", "by-alice"],
        None,
    );
    assert_eq!(alice.code, 0, "{alice:?}");
}

/// Restores `snapshot` with `restore` (etcdutl 3.5 or etcdctl 3.4) into a new member of
/// `kind` and starts it.
fn restored(kind: Kind, snapshot: &Path) -> ServerProc {
    let mut etcd = ServerProc::new(kind, "restored", free_port(), &[]);
    let peer = etcd.peer_url();
    let args = [
        "snapshot".to_string(),
        "restore".into(),
        snapshot.display().to_string(),
        "--name=restored".into(),
        format!("--data-dir={}", etcd.data_dir().display()),
        format!("--initial-cluster=restored={peer}"),
        format!("--initial-advertise-peer-urls={peer}"),
    ];
    let bin = match kind {
        Kind::Etcd34 => tool("etcdctl-3.4"),
        _ => tool("etcdutl-3.5"),
    };
    let run: Run = Command::new(bin).args(&args).output().unwrap().into();
    assert_eq!(run.code, 0, "{run:?}");
    etcd.spawn();
    etcd
}

#[test]
fn etcd_tools_read_cairns_snapshot_and_etcd_serves_it_restored() {
    let cluster = Cluster::start(3, &[]);
    let ep = cluster.members[0].endpoint();
    let leases = fill(&ep);
    let rev = json(&ok(root("3.5", &ep, &["get", "k", "-w", "json"])))["header"]["revision"]
        .as_i64()
        .unwrap();
    assert_eq!(rev, 58);

    // A linearizable read on each member returns once that member has applied everything
    // committed before it, so each has revision 58 in its backend.
    for m in &cluster.members {
        let read = json(&ok(root("3.5", &m.endpoint(), &["get", "k", "-w", "json"])));
        assert_eq!(read["header"]["revision"].as_i64(), Some(rev));
    }

    // The real etcdctl 3.5 and 3.4 save a snapshot from two different members.
    let dir = tempfile::tempdir().unwrap();
    let s35 = dir.path().join("s35.db");
    let s34 = dir.path().join("s34.db");
    let saved = ok(root(
        "3.5",
        &cluster.members[1].endpoint(),
        &["snapshot", "save", s35.to_str().unwrap()],
    ));
    assert!(saved.contains("Snapshot saved at"), "{saved}");
    ok(root(
        "3.4",
        &cluster.members[2].endpoint(),
        &["snapshot", "save", s34.to_str().unwrap()],
    ));

    // Both status commands agree with each other and with the cluster. The buckets hold:
    // key 58 revisions (k00..k03 at 42..45 once each, k04..k09 twice, k10..k39 once, t1
    // and t2, five tombstones at 53, one at 54, lk1..lk3, after-auth); meta 5 (confState,
    // consistent_index, finishedCompactRev, scheduledCompactRev, term); lease 3; members
    // 3; cluster 1; auth 2; authUsers 3; authRoles 3 (r1, r2, root).
    let total = 4 + 12 + 30 + 2 + 5 + 1 + 3 + 1 + 5 + 3 + 3 + 1 + 2 + 3 + 3;
    for file in [&s35, &s34] {
        let f = file.to_str().unwrap();
        let utl = json(&ok(etcdutl35(&["snapshot", "status", f, "-w", "json"])));
        let ctl34 = ok(run_client(
            &tool("etcdctl-3.4"),
            "127.0.0.1:1",
            &["snapshot", "status", f, "-w", "json"],
            None,
        ));
        assert_eq!(status_figures(&json(&ctl34)), status_figures(&utl));
        let (_, revision, total_key) = status_figures(&utl);
        assert_eq!((revision, total_key), (rev, total), "{}", file.display());
    }

    // The members bucket lists the cluster's members under their ids, in etcd's JSON.
    let bytes = std::fs::read(&s35).unwrap();
    let body = dir.path().join("body.db");
    std::fs::write(&body, &bytes[..bytes.len() - 32]).unwrap();
    let reader = Reader::open(&body).unwrap();
    let members = reader.bucket(b"members").unwrap();
    let mut in_file: Vec<(String, u64, String)> = reader
        .entries(&members)
        .map(|e| {
            let e = e.unwrap();
            let v = json(std::str::from_utf8(&e.value).unwrap());
            let name = v["name"].as_str().unwrap().to_string();
            (
                String::from_utf8(e.key).unwrap(),
                v["id"].as_u64().unwrap(),
                name,
            )
        })
        .collect();
    in_file.sort_by(|a, b| a.2.cmp(&b.2));
    let mut listed: Vec<(String, u64, String)> =
        json(&ok(root("3.5", &ep, &["member", "list", "-w", "json"])))["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                let id = m["ID"].as_u64().unwrap();
                (
                    format!("{id:x}"),
                    id,
                    m["name"].as_str().unwrap().to_string(),
                )
            })
            .collect();
    listed.sort_by(|a, b| a.2.cmp(&b.2));
    assert_eq!(in_file, listed);

    // etcd 3.5 restored by etcdutl, and etcd 3.4 restored by etcdctl 3.4, serve it all.
    let etcd35 = restored(Kind::Etcd35, &s35);
    assert_serves_the_same("3.5", &ep, &etcd35.endpoint(), rev, &leases);
    assert_eq!(
        ok(root("3.5", &ep, &["auth", "status"])).lines().next(),
        ok(root("3.5", &etcd35.endpoint(), &["auth", "status"]))
            .lines()
            .next()
    );
    drop(etcd35);
    let etcd34 = restored(Kind::Etcd34, &s34);
    assert_serves_the_same("3.4", &ep, &etcd34.endpoint(), rev, &leases);
    drop(etcd34);

    // cairnctl saves the same format from the cluster and reads it as etcdctl does.
    let ours = dir.path().join("ours.db");
    let saved = cairnctl(
        &cluster.endpoints(),
        &["--user=root:pw", "snapshot", "save", ours.to_str().unwrap()],
    );
    assert_eq!(saved.code, 0, "{saved:?}");
    let f = ours.to_str().unwrap();
    let mine = cairnctl("127.0.0.1:1", &["snapshot", "status", f, "-w", "json"]);
    let theirs = etcdctl35("127.0.0.1:1", &["snapshot", "status", f, "-w", "json"]);
    assert_eq!(mine, theirs);
    let (_, revision, total_key) = status_figures(&json(&mine.stdout));
    assert_eq!((revision, total_key), (rev, total));
}

/// A snapshot of several megabytes arrives in etcd's 32 KiB messages, the size left
/// counting down to zero, the first carrying the header and version, and a last message
/// holding the SHA-256 of everything before it; the bytes are a bbolt file etcdutl reads.
#[test]
fn a_large_snapshot_streams_in_chunks_with_its_digest() {
    let cairn = ServerProc::start(Kind::Cairn, &[]);
    let url = cairn.url();
    let (messages, rev) = block_on(async {
        let mut kv = KvClient::new(channel(&url));
        let mut rev = 0;
        for i in 0..400u32 {
            let r = kv
                .put(PutRequest {
                    key: format!("big/{i:04}").into_bytes(),
                    value: vec![(i % 251) as u8; 20_000],
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            rev = r.header.unwrap().revision;
        }
        let mut mc = MaintenanceClient::new(channel(&url));
        let mut stream = mc.snapshot(SnapshotRequest {}).await.unwrap().into_inner();
        let mut messages = Vec::new();
        while let Some(m) = stream.message().await.unwrap() {
            messages.push(m);
        }
        (messages, rev)
    });
    let (digest, chunks) = messages.split_last().unwrap();
    assert!(chunks.len() > 200, "{} chunks", chunks.len());
    let total: usize = chunks.iter().map(|m| m.blob.len()).sum();
    let mut left = total as u64;
    let mut sha = Sha256::new();
    for (i, m) in chunks.iter().enumerate() {
        assert!(m.blob.len() <= 32 * 1024 && !m.blob.is_empty());
        assert_eq!(m.header.is_some(), i == 0);
        assert_eq!(m.version.is_empty(), i != 0);
        left -= m.blob.len() as u64;
        assert_eq!(m.remaining_bytes, left);
        sha.update(&m.blob);
    }
    assert_eq!(digest.remaining_bytes, 0);
    assert_eq!(digest.blob, sha.finalize().to_vec());

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.db");
    let mut bytes: Vec<u8> = chunks.iter().flat_map(|m| m.blob.iter().copied()).collect();
    bytes.extend_from_slice(&digest.blob);
    std::fs::write(&file, &bytes).unwrap();
    let status = json(&ok(etcdutl35(&[
        "snapshot",
        "status",
        file.to_str().unwrap(),
        "-w",
        "json",
    ])));
    assert_eq!(status["revision"].as_i64(), Some(rev));
    assert_eq!(status["totalSize"].as_u64(), Some(total as u64));
}
