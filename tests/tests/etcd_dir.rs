//! cairn started on a data directory etcd wrote: a stopped etcd 3.4 member's (killed with
//! writes only in its WAL), the output of etcd 3.5's `etcdutl snapshot restore`, and a
//! 3-member etcd 3.4 cluster migrated in place. cairn serves what etcd served (keys with
//! their revisions and versions, the current revision, the compaction point, leases and
//! their keys, users, roles and auth, the member and cluster ids, HashKV), writes go on and
//! survive a restart, and etcd's files are never changed. What cannot be imported (a WAL
//! etcd still holds, a damaged WAL, a v2 store with data) is refused with a clear message
//! and nothing written.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_tests::{
    etcdctl35, etcdctl35_as_root as root, free_port, ok, tool, wait_until, Cluster, Kind, Run,
    ServerProc,
};

/// The last line of what a failed command printed.
fn error_line(r: &Run) -> String {
    r.stderr.lines().last().unwrap_or_default().to_string()
}

/// Every file under `dir` with its contents' hash, by path.
fn file_hashes(dir: &Path) -> BTreeMap<PathBuf, String> {
    use sha2::{Digest, Sha256};
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                let bytes = std::fs::read(e.path()).unwrap();
                out.insert(e.path(), format!("{:x}", Sha256::digest(&bytes)));
            }
        }
    }
    out
}

/// What a member answers to the reads a user compares (every key now, at the compaction and
/// at revision 10), as etcdctl prints them (JSON
/// headers left out: terms and raft indexes differ by design), captured while it runs.
#[derive(Debug, PartialEq)]
struct Served {
    /// (command, output) of each read.
    reads: Vec<(String, String)>,
    revision: i64,
    hashkv: (u64, i64),
    ids: (u64, u64),
    /// id, name, peer URLs of each member.
    members: Vec<String>,
    /// Each lease with its granted TTL and its keys, sorted.
    leases: Vec<String>,
}

fn without_header(text: &str) -> String {
    let mut v: serde_json::Value =
        serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"));
    if let Some(o) = v.as_object_mut() {
        o.remove("header");
    }
    v.to_string()
}

fn hashkv(ep: &str, rev: i64) -> (u64, i64) {
    let out = ok(root(
        ep,
        &["endpoint", "hashkv", &format!("--rev={rev}"), "-w", "json"],
    ));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let h = &v[0]["HashKV"];
    (
        h["hash"].as_u64().unwrap_or(0),
        h["compact_revision"].as_i64().unwrap_or(0),
    )
}

fn served(ep: &str, compacted: i64) -> Served {
    let mid = 10;
    let status = ok(root(ep, &["endpoint", "status", "-w", "json"]));
    let v: serde_json::Value = serde_json::from_str(&status).unwrap();
    let h = &v[0]["Status"]["header"];
    let revision = h["revision"].as_i64().unwrap();
    let ids = (
        h["cluster_id"].as_u64().unwrap(),
        h["member_id"].as_u64().unwrap(),
    );
    let mut reads = Vec::new();
    for rev in [0, compacted, mid] {
        let args = ["get", "", "--prefix", "-w", "json", &format!("--rev={rev}")];
        // etcd 3.4, once restarted, refuses a read at the compaction revision itself.
        let r = root(ep, &args);
        let out = match r.code {
            0 => without_header(&r.stdout),
            _ => error_line(&r),
        };
        reads.push((format!("{args:?}"), out));
    }
    let below = root(ep, &["get", "k1", &format!("--rev={}", compacted - 1)]);
    reads.push((
        "below compaction".into(),
        format!("{} {}", below.code, error_line(&below)),
    ));
    for args in [
        &["user", "list"][..],
        &["role", "list"],
        &["user", "get", "root"],
        &["user", "get", "alice"],
        &["role", "get", "reader"],
    ] {
        reads.push((format!("{args:?}"), ok(root(ep, args))));
    }
    // Auth on: alice reads what her role lets her, and nothing else; a wrong password fails.
    for (user, args) in [
        ("alice:alicepw", &["get", "foo/", "--prefix"][..]),
        ("alice:alicepw", &["get", "k2"]),
        ("alice:wrong", &["get", "foo/a"]),
        ("bob:bobpw", &["get", "foo/a"]),
    ] {
        let user = format!("--user={user}");
        let mut full = vec![user.as_str()];
        full.extend_from_slice(args);
        let r = etcdctl35(ep, &full);
        reads.push((
            format!("{full:?}"),
            format!("{} {} {}", r.code, r.stdout, error_line(&r)),
        ));
    }
    let list = ok(root(ep, &["member", "list", "-w", "json"]));
    let v: serde_json::Value = serde_json::from_str(&list).unwrap();
    let mut members: Vec<String> = v["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| format!("{} {} {}", m["ID"], m["name"], m["peerURLs"]))
        .collect();
    members.sort();
    let mut leases = Vec::new();
    for line in ok(root(ep, &["lease", "list"])).lines().skip(1) {
        let out = ok(root(
            ep,
            &["lease", "timetolive", line, "--keys", "-w", "json"],
        ));
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let mut keys: Vec<String> = v["keys"]
            .as_array()
            .map(|a| a.iter().map(|x| x.to_string()).collect())
            .unwrap_or_default();
        keys.sort();
        leases.push(format!("{line} {} {keys:?}", v["granted-ttl"]));
    }
    leases.sort();
    Served {
        reads,
        revision,
        hashkv: hashkv(ep, revision),
        ids,
        members,
        leases,
    }
}

/// Keys over several revisions, a compaction at 5, a lease with two keys, users and roles:
/// what etcd's backend holds once the member restarted. Revisions: 2, 3 `k1`; 4 `k2`; 5
/// `k2` deleted; 6, 7 `lk1`, `lk2` on the lease; compaction at 5; 8 `foo/a`.
fn populate_backend(ep: &str) {
    let ctl = |args: &[&str]| ok(etcdctl35(ep, args));
    ctl(&["put", "k1", "a"]);
    ctl(&["put", "k1", "b"]);
    ctl(&["put", "k2", "x"]);
    ctl(&["del", "k2"]);
    let grant = ctl(&["lease", "grant", "900"]);
    let lease = grant.split_whitespace().nth(1).unwrap().to_string();
    ctl(&["put", "lk1", "on lease", &format!("--lease={lease}")]);
    ctl(&["put", "lk2", "on lease", &format!("--lease={lease}")]);
    ctl(&["compact", "5"]);
    ctl(&["put", "foo/a", "1"]);
    ctl(&["user", "add", "root:rootpw"]);
    ctl(&["user", "grant-role", "root", "root"]);
}

/// Writes that stay in the WAL only (the member runs with a backend batch interval of an
/// hour and is killed; a compaction would commit the backend): puts, a txn, a delete, a
/// second lease with a key, users with a role (etcd 3.4 logs the password itself), auth
/// on, and writes as root. Revisions: 9 `k2`; 10 `foo/b` (txn); 11 `k1` deleted; 12
/// `lk3`; 13, 14 `foo/c`, `k3` as root.
fn populate_wal(ep: &str) {
    let ctl = |args: &[&str]| ok(etcdctl35(ep, args));
    ctl(&["put", "k2", "y"]);
    let txn = Command::new(tool("etcdctl-3.5"))
        .args([&format!("--endpoints={ep}"), "txn"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin
                .take()
                .unwrap()
                .write_all(b"value(\"k2\") = \"y\"\n\nput foo/b 2\n\nput foo/b no\n\n")?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(txn.status.success(), "{txn:?}");
    assert!(
        String::from_utf8_lossy(&txn.stdout).starts_with("SUCCESS"),
        "{txn:?}"
    );
    ctl(&["del", "k1"]);
    let grant = ctl(&["lease", "grant", "600"]);
    let lease = grant.split_whitespace().nth(1).unwrap().to_string();
    ctl(&[
        "put",
        "lk3",
        "on the second lease",
        &format!("--lease={lease}"),
    ]);
    for step in [
        &["role", "add", "reader"][..],
        &[
            "role",
            "grant-permission",
            "reader",
            "read",
            "foo/",
            "--prefix",
        ],
        &["user", "add", "alice:alicepw"],
        &["user", "grant-role", "alice", "reader"],
        &["user", "add", "bob:bobpw"],
        &["auth", "enable"],
    ] {
        ctl(step);
    }
    ok(root(ep, &["put", "foo/c", "3"]));
    ok(root(ep, &["put", "k3", "z"]));
}

/// Turns `m` (an etcd member, stopped) into a cairn member on the same directory, names,
/// URLs and `--initial-cluster` flags, and starts it; etcd's own flags are dropped.
fn as_cairn(m: &mut ServerProc, extra: &[&str]) {
    m.kind = Kind::Cairn;
    m.extra.retain(|f| f.starts_with("--initial-cluster="));
    m.extra.extend(extra.iter().map(|s| s.to_string()));
}

/// The value of the first field `name` of the log line that says "imported etcd data
/// directory".
fn imported_field(m: &ServerProc, name: &str) -> serde_json::Value {
    let log = m.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("\"imported etcd data directory\""))
        .unwrap_or_else(|| panic!("no import logged:\n{log}"));
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    v[name].clone()
}

#[test]
fn a_stopped_etcd_34_member_with_writes_only_in_its_wal_serves_the_same_under_cairn() {
    stopped_member_serves_the_same(Kind::Etcd34);
}

/// etcd 3.5 logs a new user's bcrypt hash (in base64) rather than the password.
#[test]
fn a_stopped_etcd_35_member_with_writes_only_in_its_wal_serves_the_same_under_cairn() {
    stopped_member_serves_the_same(Kind::Etcd35);
}

/// A member of `kind` with data in its backend, restarted and killed with more writes in
/// its WAL only, then started as cairn: it serves what etcd served, keeps etcd's files
/// as they were, takes writes, and keeps everything over a restart.
fn stopped_member_serves_the_same(kind: Kind) {
    let mut m = ServerProc::new(kind, "m1", free_port(), &[]);
    m.spawn();
    let ep = m.endpoint();
    populate_backend(&ep);
    // A clean stop commits the backend; the rest goes to the WAL only.
    m.stop();
    m.extra.push("--backend-batch-interval=1h".into());
    m.spawn();
    populate_wal(&ep);
    let before = served(&ep, 5);
    assert_eq!(before.revision, 14);
    assert_eq!(before.leases.len(), 2, "{before:?}");
    m.kill9();

    let member_dir = m.data_dir().join("member");
    let etcd_files = file_hashes(&member_dir);
    // The leftovers of an import a crash interrupted are removed, not taken for data.
    let leftover = m.data_dir().join(".cairn-import");
    std::fs::create_dir_all(leftover.join("raft")).unwrap();
    std::fs::write(leftover.join("backend.redb"), b"half written").unwrap();

    as_cairn(&mut m, &[]);
    m.spawn();
    assert!(!leftover.exists());
    // The writes after the restart were in etcd's WAL only, and cairn applied them.
    let replayed = imported_field(&m, "entries-to-apply").as_u64().unwrap();
    assert!(replayed >= 5, "only {replayed} entries past the backend");
    assert_eq!(imported_field(&m, "compact-revision").as_i64(), Some(5));
    assert_eq!(served(&ep, 5), before);
    assert_eq!(file_hashes(&member_dir), etcd_files, "etcd's files changed");

    // Writes go on, and everything survives a restart.
    ok(root(&ep, &["put", "after", "migration"]));
    m.stop();
    m.spawn();
    let imports = m
        .log_text()
        .matches("\"imported etcd data directory\"")
        .count();
    assert_eq!(imports, 1, "imported again on the restart");
    let out = ok(root(&ep, &["get", "after", "--print-value-only"]));
    assert_eq!(out, "migration\n");
    ok(root(&ep, &["del", "after"]));
    let again = served(&ep, 5);
    assert_eq!(again.reads, before.reads);
    assert_eq!(
        (again.ids, again.members.clone()),
        (before.ids, before.members.clone())
    );
    assert_eq!(file_hashes(&member_dir), etcd_files, "etcd's files changed");
}

#[test]
fn an_etcdutl_35_restore_output_serves_the_snapshot_under_cairn() {
    let mut src = ServerProc::new(Kind::Etcd35, "src", free_port(), &[]);
    src.spawn();
    let ep = src.endpoint();
    populate_backend(&ep);
    populate_wal(&ep);
    let expected = served(&ep, 5);
    let dir = tempfile::tempdir().unwrap();
    let snapshot = dir.path().join("snap.db");
    ok(root(&ep, &["snapshot", "save", snapshot.to_str().unwrap()]));

    // The member etcdutl restores, with its WAL in a --wal-dir of its own; a copy of both
    // is kept for etcd.
    let mut m = ServerProc::new(Kind::Cairn, "m1", free_port(), &[]);
    let cluster = format!("m1={}", m.peer_url());
    let wal_dir = m.dir.path().join("wal");
    let restored = Command::new(tool("etcdutl-3.5"))
        .args([
            "snapshot",
            "restore",
            snapshot.to_str().unwrap(),
            "--name=m1",
            &format!("--data-dir={}", m.data_dir().display()),
            &format!("--wal-dir={}", wal_dir.display()),
            &format!("--initial-cluster={cluster}"),
            &format!("--initial-advertise-peer-urls={}", m.peer_url()),
            "--initial-cluster-token=restored",
        ])
        .output()
        .unwrap();
    assert!(restored.status.success(), "{restored:?}");
    let copy = tempfile::tempdir().unwrap();
    let cp = Command::new("cp")
        .arg("-a")
        .arg(m.data_dir())
        .arg(&wal_dir)
        .arg(copy.path())
        .status()
        .unwrap();
    assert!(cp.success());
    let etcd_files = file_hashes(&m.data_dir().join("member"));
    let etcd_wal = file_hashes(&wal_dir);
    // What an import killed midway leaves in a --wal-dir (raft-engine's files) is removed
    // before the import starts again.
    std::fs::write(wal_dir.join("0000000000000001.raftlog"), b"half written").unwrap();

    let wal_flag = format!("--wal-dir={}", wal_dir.display());
    m.extra.push(wal_flag.clone());
    m.spawn();
    let got = served(&m.endpoint(), 5);
    assert_eq!(got.reads, expected.reads);
    assert_eq!(
        (got.revision, got.hashkv),
        (expected.revision, expected.hashkv)
    );
    assert_eq!(got.leases, expected.leases);
    assert_eq!(file_hashes(&m.data_dir().join("member")), etcd_files);
    let first_log = std::fs::read(wal_dir.join("0000000000000001.raftlog")).unwrap_or_default();
    assert_ne!(
        first_log, b"half written",
        "the leftover was taken for cairn's log"
    );
    let mut wal_now = file_hashes(&wal_dir);
    wal_now.retain(|p, _| etcd_wal.contains_key(p));
    assert_eq!(wal_now, etcd_wal, "etcd's WAL files changed");
    ok(root(&m.endpoint(), &["put", "after", "restore"]));
    m.stop();
    m.spawn();
    assert_eq!(
        ok(root(&m.endpoint(), &["get", "after", "--print-value-only"])),
        "restore\n"
    );
    m.stop();

    // etcd started on the untouched copy reports the same ids and members.
    let mut etcd = ServerProc::new(Kind::Etcd35, "m1", m.peer_port, &[]);
    etcd.client_port = m.client_port;
    etcd.dir = copy;
    etcd.extra.push(format!(
        "--wal-dir={}",
        etcd.dir.path().join("wal").display()
    ));
    etcd.spawn();
    let from_etcd = served(&etcd.endpoint(), 5);
    assert_eq!((got.ids, &got.members), (from_etcd.ids, &from_etcd.members));
    assert_eq!(got.reads, from_etcd.reads);
}

/// Puts `load/<n>` through the members in turn until `stop` is set (at most 5000 puts and
/// 60 s), and returns the keys etcd acknowledged with their values.
fn load(endpoints: Vec<String>, stop: Arc<AtomicBool>) -> Vec<(String, String)> {
    let mut acked = Vec::new();
    let started = Instant::now();
    for n in 0..5000 {
        if stop.load(Ordering::Relaxed) || started.elapsed() > Duration::from_secs(60) {
            break;
        }
        let ep = &endpoints[n % endpoints.len()];
        let (key, value) = (format!("load/{n:05}"), format!("value {n}"));
        let r = etcdctl35(ep, &["put", &key, &value, "--command-timeout=2s"]);
        if r.code == 0 {
            acked.push((key, value));
        }
    }
    acked
}

#[test]
fn a_three_member_etcd_34_cluster_migrates_in_place() {
    // The backend commits only on a compaction: the load stays in the WALs.
    let mut cluster = Cluster::start_kind(Kind::Etcd34, 3, &["--backend-batch-interval=1h"]);
    let endpoints: Vec<String> = cluster.members.iter().map(|m| m.endpoint()).collect();
    populate_backend(&endpoints[0]);
    let ids: Vec<_> = cluster.members.iter().map(|m| m.ids()).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (endpoints, stop) = (endpoints.clone(), stop.clone());
        std::thread::spawn(move || load(endpoints, stop))
    };
    // Every member stops abruptly while the load runs, once some of it is in.
    wait_until(Duration::from_secs(30), "100 loaded keys", || {
        let r = etcdctl35(&endpoints[0], &["get", "load/", "--prefix", "--keys-only"]);
        match r.stdout.lines().filter(|l| !l.is_empty()).count() {
            n if n >= 100 => Ok(()),
            n => Err(n),
        }
    });
    for m in cluster.members.iter_mut() {
        m.kill9();
    }
    stop.store(true, Ordering::Relaxed);
    let acked = writer.join().unwrap();
    assert!(acked.len() >= 100, "{}", acked.len());

    let etcd_files: Vec<_> = cluster
        .members
        .iter()
        .map(|m| file_hashes(&m.data_dir().join("member")))
        .collect();
    for m in cluster.members.iter_mut() {
        as_cairn(m, &[]);
    }
    let waits: Vec<_> = cluster
        .members
        .iter_mut()
        .map(|m| m.spawn_nowait())
        .collect();
    for (m, w) in cluster.members.iter_mut().zip(waits) {
        m.wait_ready(w);
    }
    for m in &cluster.members {
        let replayed = imported_field(m, "entries-to-apply").as_u64().unwrap();
        assert!(
            replayed >= 100,
            "{}: {replayed} entries past the backend",
            m.name
        );
    }
    let now: Vec<_> = cluster.members.iter().map(|m| m.ids()).collect();
    assert_eq!(now, ids, "member and cluster ids");
    // Every member names the same leader.
    cairn_tests::leader(&cluster.members);
    // Every acknowledged write is there.
    let all = ok(etcdctl35(&endpoints[1], &["get", "load/", "--prefix"]));
    let lines: Vec<&str> = all.lines().collect();
    let have: BTreeMap<&str, &str> = lines.chunks(2).map(|kv| (kv[0], kv[1])).collect();
    for (k, val) in &acked {
        assert_eq!(
            have.get(k.as_str()),
            Some(&val.as_str()),
            "acknowledged {k} lost"
        );
    }
    // Writes go on through every member, and the members end equal.
    for (i, ep) in endpoints.iter().enumerate() {
        ok(etcdctl35(ep, &["put", &format!("after/{i}"), "x"]));
    }
    let rev = {
        let out = ok(etcdctl35(&endpoints[0], &["get", "after/2", "-w", "json"]));
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v["header"]["revision"].as_i64().unwrap()
    };
    let hashes: Vec<(u64, i64)> = endpoints
        .iter()
        .map(|ep| {
            wait_until(
                Duration::from_secs(10),
                format!("{ep} at revision {rev}"),
                || {
                    let r = etcdctl35(
                        ep,
                        &["endpoint", "hashkv", &format!("--rev={rev}"), "-w", "json"],
                    );
                    let v: serde_json::Value =
                        serde_json::from_str(&r.stdout).map_err(|_| r.clone())?;
                    v[0]["HashKV"]["hash"].as_u64().map(|h| (h, rev)).ok_or(r)
                },
            )
        })
        .collect();
    assert!(hashes.windows(2).all(|w| w[0] == w[1]), "{hashes:?}");
    let members = ok(etcdctl35(&endpoints[2], &["member", "list"]));
    assert_eq!(members.lines().count(), 3, "{members}");
    for (m, files) in cluster.members.iter().zip(&etcd_files) {
        assert_eq!(&file_hashes(&m.data_dir().join("member")), files);
    }
}

/// Starts cairn on `m`'s directory, expects it to refuse, and returns what it logged.
fn refused(m: &mut ServerProc) -> String {
    as_cairn(m, &[]);
    let from = m.log_len();
    let ready = m.spawn_nowait();
    let code = m.wait_exit(Duration::from_secs(30));
    assert!(ready.try_recv().is_err(), "cairn served: {}", m.log_text());
    assert_ne!(code, 0, "{}", m.log_text());
    m.log.lock().unwrap()[from..].join("\n")
}

/// Asserts that nothing of cairn's is in `dir` (an etcd data directory).
fn assert_nothing_written(dir: &Path) {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["member"], "{}", dir.display());
}

#[test]
fn what_cannot_be_imported_is_refused_and_nothing_is_written() {
    // A WAL etcd still holds (etcd takes the last --data-dir flag: the cairn member's).
    let mut cairn = ServerProc::new(Kind::Cairn, "m1", free_port(), &[]);
    let dir = cairn.data_dir();
    let mut etcd = ServerProc::new(
        Kind::Etcd34,
        "m1",
        free_port(),
        &[&format!("--data-dir={}", dir.display())],
    );
    etcd.spawn();
    ok(etcdctl35(&etcd.endpoint(), &["put", "k", "v"]));
    let log = refused(&mut cairn);
    assert!(
        log.contains("is locked by another process: is etcd still running on this directory?")
            && log.contains("nothing was written"),
        "{log}"
    );
    assert_nothing_written(&dir);
    ok(etcdctl35(&etcd.endpoint(), &["get", "k"]));
    etcd.stop();

    // A WAL damaged in the middle (a byte flipped halfway through what etcd wrote), and one
    // cut short there: each refused, the directory as it was.
    let seg = std::fs::read_dir(dir.join("member/wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "wal"))
        .unwrap();
    let good = std::fs::read(&seg).unwrap();
    // etcd preallocates its segments with zeros.
    let written = good.iter().rposition(|b| *b != 0).unwrap();
    let mut flipped = good.clone();
    flipped[written / 2] ^= 0xff;
    for (damage, bytes) in [("flipped", flipped), ("cut", good[..written / 2].to_vec())] {
        std::fs::write(&seg, &bytes).unwrap();
        let damaged = file_hashes(&dir);
        let log = refused(&mut cairn);
        let said = log
            .lines()
            .find(|l| l.contains("cannot import etcd data directory"))
            .unwrap_or_else(|| panic!("{damage}: {log}"));
        assert!(
            said.contains(": wal: ") || said.contains("past the WAL's last entry"),
            "{damage}: {said}"
        );
        assert!(said.contains("nothing was written"), "{said}");
        assert_nothing_written(&dir);
        assert_eq!(file_hashes(&dir), damaged, "{damage}");
    }

    // A v2 store with data.
    let mut v2 = ServerProc::new(Kind::Etcd34, "m1", free_port(), &["--enable-v2"]);
    v2.spawn();
    let set = Command::new(tool("etcdctl-3.4"))
        .args([
            &format!("--endpoints={}", v2.url()),
            "set",
            "/v2key",
            "v2value",
        ])
        .env("ETCDCTL_API", "2")
        .output()
        .unwrap();
    assert!(set.status.success(), "{set:?}");
    v2.stop();
    let before = file_hashes(&v2.data_dir());
    let log = refused(&mut v2);
    assert!(log.contains("a v2 store with data"), "{log}");
    assert_nothing_written(&v2.data_dir());
    assert_eq!(file_hashes(&v2.data_dir()), before);
}
