//! cairn-etcdwal judged on data directories real etcd 3.4 and 3.5 wrote: a member runs a
//! scripted set of requests over gRPC, stops (cleanly, or with kill -9), and what the
//! reader finds in its WAL and snapshots must be those requests, with the ids etcd
//! reported and a hard state that covers every acknowledged write. Then copies of the
//! directory are damaged, and each damage is refused (or, for a torn tail, read as etcd
//! would read it).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use cairn_etcdwal::{ConfChangeKind, EtcdWal, Op, Payload};
use cairn_proto::etcdserverpb::{
    auth_client::AuthClient, cluster_client::ClusterClient, compare, kv_client::KvClient,
    lease_client::LeaseClient, request_op, AuthEnableRequest, AuthRoleAddRequest,
    AuthUserAddRequest, AuthUserGrantRoleRequest, AuthenticateRequest, CompactionRequest, Compare,
    DeleteRangeRequest, LeaseGrantRequest, LeaseRevokeRequest, MemberAddRequest,
    MemberRemoveRequest, MemberUpdateRequest, PutRequest, RequestOp, TxnRequest,
};
use cairn_proto::{authpb, etcdserverpb::AuthDisableRequest};
use cairn_tests::{block_on, channel, etcdctl35, free_port, wait_until, Cluster, Kind, ServerProc};

/// What the workload did, in order, as the reader should find it.
struct Made {
    /// The client requests that go through Raft, as sent.
    ops: Vec<Op>,
    /// The learner added, given a new peer URL, and removed.
    learner_id: u64,
    /// Its peer URL after the update.
    learner_peer_url: String,
}

const LEASE: i64 = 0x1234;
/// A value size and count that take the WAL past one 64 MB segment.
const BIG: usize = 1_000_000;
const BIG_PUTS: usize = 72;

fn put(key: &str, value: &[u8], lease: i64) -> PutRequest {
    PutRequest {
        key: key.as_bytes().to_vec(),
        value: value.to_vec(),
        lease,
        ..Default::default()
    }
}

/// Runs the workload against `url`: a learner added, updated and removed, keys, a txn, a
/// lease, a compaction, `big` puts of 1 MB, users and roles, auth on, a write as root with
/// a token, auth off, a lease revoked, and a last put.
fn workload(url: &str, big: usize) -> Made {
    block_on(answered(async {
        let ch = channel(url);
        let mut kv = KvClient::new(ch.clone());
        let mut lease = LeaseClient::new(ch.clone());
        let mut cluster = ClusterClient::new(ch.clone());
        let mut auth = AuthClient::new(ch);
        let mut ops = Vec::new();

        // Two writes before each membership change: raft drops a conf change proposed
        // while it has not yet marked the previous one (or the leader's first entry)
        // applied, which etcd may not have told it when it answers, and etcd then waits
        // for the dropped change for good. A write answered after another one was
        // answered means raft has marked everything before the first applied.
        let settle = async |kv: &mut KvClient<tonic::transport::Channel>, ops: &mut Vec<Op>| {
            for key in ["settle/1", "settle/2"] {
                let p = put(key, b"", 0);
                kv.put(p.clone()).await.unwrap();
                ops.push(Op::Put(p));
            }
        };
        settle(&mut kv, &mut ops).await;
        let added = cluster
            .member_add(MemberAddRequest {
                peer_ur_ls: vec![format!("http://127.0.0.1:{}", free_port())],
                is_learner: true,
            })
            .await
            .unwrap()
            .into_inner();
        let learner_id = added.member.unwrap().id;
        settle(&mut kv, &mut ops).await;
        let learner_peer_url = format!("http://127.0.0.1:{}", free_port());
        cluster
            .member_update(MemberUpdateRequest {
                id: learner_id,
                peer_ur_ls: vec![learner_peer_url.clone()],
            })
            .await
            .unwrap();
        settle(&mut kv, &mut ops).await;
        cluster
            .member_remove(MemberRemoveRequest { id: learner_id })
            .await
            .unwrap();
        for p in [put("k1", b"v1", 0), put("k2", b"v2", 0)] {
            kv.put(p.clone()).await.unwrap();
            ops.push(Op::Put(p));
        }
        let del = DeleteRangeRequest {
            key: b"k1".to_vec(),
            ..Default::default()
        };
        kv.delete_range(del.clone()).await.unwrap();
        ops.push(Op::DeleteRange(del.clone()));
        let txn = TxnRequest {
            compare: vec![Compare {
                result: compare::CompareResult::Equal as i32,
                target: compare::CompareTarget::Value as i32,
                key: b"k2".to_vec(),
                range_end: Vec::new(),
                target_union: Some(compare::TargetUnion::Value(b"v2".to_vec())),
            }],
            success: vec![RequestOp {
                request: Some(request_op::Request::RequestPut(put("k3", b"v3", 0))),
            }],
            failure: vec![RequestOp {
                request: Some(request_op::Request::RequestDeleteRange(del)),
            }],
        };
        assert!(kv.txn(txn.clone()).await.unwrap().into_inner().succeeded);
        ops.push(Op::Txn(txn));
        let grant = LeaseGrantRequest {
            ttl: 600,
            id: LEASE,
        };
        lease.lease_grant(grant).await.unwrap();
        ops.push(Op::LeaseGrant(grant));
        let leased = put("k4", b"v4", LEASE);
        kv.put(leased.clone()).await.unwrap();
        ops.push(Op::Put(leased));
        let compact = CompactionRequest {
            revision: 3,
            physical: false,
        };
        kv.compact(compact).await.unwrap();
        ops.push(Op::Compaction(compact));
        let value = vec![b'x'; BIG];
        for i in 0..big {
            let p = put(&format!("big/{i:03}"), &value, 0);
            kv.put(p.clone()).await.unwrap();
            ops.push(Op::Put(p));
        }

        let user = AuthUserAddRequest {
            name: "root".into(),
            password: "pw".into(),
            options: Some(authpb::UserAddOptions { no_password: false }),
            ..Default::default()
        };
        auth.user_add(user.clone()).await.unwrap();
        ops.push(Op::UserAdd(user));
        let role = AuthRoleAddRequest {
            name: "root".into(),
        };
        auth.role_add(role.clone()).await.unwrap();
        ops.push(Op::RoleAdd(role));
        let grant_role = AuthUserGrantRoleRequest {
            user: "root".into(),
            role: "root".into(),
        };
        auth.user_grant_role(grant_role.clone()).await.unwrap();
        ops.push(Op::UserGrantRole(grant_role));
        auth.auth_enable(AuthEnableRequest {}).await.unwrap();
        ops.push(Op::AuthEnable);

        let token = auth
            .authenticate(AuthenticateRequest {
                name: "root".into(),
                password: "pw".into(),
            })
            .await
            .unwrap()
            .into_inner()
            .token;
        let as_root = put("k5", b"v5", 0);
        kv.put(with_token(&token, as_root.clone())).await.unwrap();
        ops.push(Op::Put(as_root));
        auth.auth_disable(with_token(&token, AuthDisableRequest {}))
            .await
            .unwrap();
        ops.push(Op::AuthDisable);

        let revoke = LeaseRevokeRequest { id: LEASE };
        lease.lease_revoke(revoke).await.unwrap();
        ops.push(Op::LeaseRevoke(revoke));
        let last = put("last", b"written last", 0);
        kv.put(last.clone()).await.unwrap();
        ops.push(Op::Put(last));
        Made {
            ops,
            learner_id,
            learner_peer_url,
        }
    }))
}

/// Awaits `calls`, failing the test if etcd leaves one unanswered: they carry no deadline
/// of their own.
async fn answered<T>(calls: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(std::time::Duration::from_secs(120), calls)
        .await
        .unwrap_or_else(|_| panic!("etcd left a request of the workload unanswered for 120 s"))
}

/// `body` with the auth token in its metadata.
fn with_token<T>(token: &str, body: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(body);
    r.metadata_mut().insert("token", token.parse().unwrap());
    r
}

/// The member and cluster ids and the raft index `etcdctl endpoint status -w json` reports.
fn endpoint_status(endpoint: &str) -> (u64, u64, u64) {
    let r = etcdctl35(endpoint, &["endpoint", "status", "-w", "json"]);
    assert!(r.stderr.is_empty() || r.code == 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let s = &v[0]["Status"];
    (
        s["header"]["member_id"].as_u64().unwrap(),
        s["header"]["cluster_id"].as_u64().unwrap(),
        s["raftIndex"].as_u64().unwrap(),
    )
}

/// The member ids `etcdctl member list -w json` reports.
fn member_list(endpoint: &str) -> Vec<u64> {
    let r = etcdctl35(endpoint, &["member", "list", "-w", "json"]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    v["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["ID"].as_u64().unwrap())
        .collect()
}

/// The client requests among the entries past `after`: what etcd adds by itself (tokens,
/// member attributes, the cluster version) left out. A user added by etcd 3.4 carries
/// its password, by etcd 3.5 the bcrypt hash (base64): both are checked and then cleared
/// so the request compares with the one sent.
fn client_ops(kind: Kind, wal: &EtcdWal, after: u64) -> Vec<Op> {
    let mut ops = Vec::new();
    for e in wal.entries.iter().filter(|e| e.index > after) {
        let Payload::Request(r) = &e.payload else {
            continue;
        };
        let mut op = r.op.clone();
        match &mut op {
            Op::Authenticate { .. }
            | Op::ClusterVersionSet { .. }
            | Op::ClusterMemberAttrSet { .. }
            | Op::DowngradeInfoSet { .. }
            | Op::LeaseCheckpoint(_) => continue,
            Op::UserAdd(u) => {
                match kind {
                    Kind::Etcd34 => assert_eq!(u.password, "pw"),
                    _ => {
                        assert!(u.password.is_empty(), "etcd 3.5 sends the hash only");
                        assert!(!u.hashed_password.is_empty());
                    }
                }
                u.hashed_password.clear();
                u.password = "pw".into();
            }
            Op::Put(p) if p.key == b"k5" => assert_eq!(r.username, "root", "{e:?}"),
            _ => {}
        }
        ops.push(op);
    }
    ops
}

/// Asserts that `got` is the last `got.len()` of `made`, and not empty.
fn assert_suffix(got: &[Op], made: &[Op], what: &str) {
    assert!(!got.is_empty(), "{what}: no client request found");
    assert!(
        got.len() <= made.len(),
        "{what}: more requests than were made"
    );
    let want = &made[made.len() - got.len()..];
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g, w, "{what}: request {i} of the last {}", got.len());
    }
}

/// The backend's consistent index (`meta` bucket), read with cairn-bbolt.
fn consistent_index(data_dir: &Path) -> u64 {
    let db = cairn_bbolt::Reader::open(data_dir.join("member/snap/db")).unwrap();
    let meta = db.bucket(b"meta").unwrap();
    let e = db
        .entries(&meta)
        .map(|e| e.unwrap())
        .find(|e| e.key == b"consistent_index")
        .unwrap();
    u64::from_be_bytes(e.value.as_slice().try_into().unwrap())
}

/// Every file under `dir` with its length and modification time.
fn listing(dir: &Path) -> Vec<(PathBuf, u64, std::time::SystemTime)> {
    let mut out = Vec::new();
    for sub in ["member/wal", "member/snap"] {
        for e in std::fs::read_dir(dir.join(sub)).unwrap() {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            out.push((e.path(), m.len(), m.modified().unwrap()));
        }
    }
    out.sort();
    out
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join("member/wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    v.sort();
    v
}

/// Copies the WAL and snap files of `from` into a new directory, each segment's zero tail
/// left as a hole (the copy reads the same, at a fraction of the disk).
fn copy_member(from: &Path) -> tempfile::TempDir {
    let to = tempfile::tempdir().unwrap();
    for sub in ["member/wal", "member/snap"] {
        std::fs::create_dir_all(to.path().join(sub)).unwrap();
        for e in std::fs::read_dir(from.join(sub)).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if name == "db" {
                continue;
            }
            let bytes = std::fs::read(&p).unwrap();
            let used = bytes.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
            let dest = to.path().join(sub).join(&name);
            std::fs::write(&dest, &bytes[..used]).unwrap();
            let f = std::fs::OpenOptions::new().write(true).open(&dest).unwrap();
            f.set_len(bytes.len() as u64).unwrap();
        }
    }
    to
}

/// The frames of a segment: (offset, record length, padding), up to its zero tail.
fn frames(bytes: &[u8]) -> Vec<(usize, usize, usize)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 8 <= bytes.len() {
        let word = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
        if word == 0 {
            break;
        }
        let len = (word & 0x00FF_FFFF_FFFF_FFFF) as usize;
        let pad = if word >> 63 == 1 {
            ((word >> 56) & 7) as usize
        } else {
            0
        };
        out.push((at, len, pad));
        at += 8 + len + pad;
    }
    out
}

fn flip(path: &Path, at: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at] ^= 0x20;
    std::fs::write(path, bytes).unwrap();
}

/// Starts etcd of `kind`, runs the workload with enough 1 MB puts for two segments and
/// snapshots every 20 entries, stops it cleanly, and checks what the reader finds, then
/// damaged copies.
fn clean_stop_with_snapshots_and_two_segments(kind: Kind) {
    let mut etcd = ServerProc::start(kind, &["--snapshot-count=20"]);
    let made = workload(&etcd.url(), BIG_PUTS);
    let (member_id, cluster_id, raft_index) = endpoint_status(&etcd.endpoint());
    assert_eq!(member_list(&etcd.endpoint()), [member_id]);
    etcd.stop();
    let dir = etcd.data_dir();

    let before = listing(&dir);
    let wal = cairn_etcdwal::open(&dir).unwrap();
    assert_eq!(listing(&dir), before, "the reader changed etcd's files");

    assert_eq!((wal.member_id, wal.cluster_id), (member_id, cluster_id));
    assert!(wal.hard_state.commit >= raft_index, "{:?}", wal.hard_state);
    assert_eq!(wal.hard_state.vote, member_id);
    assert!(segments(&dir).len() >= 2, "{:?}", segments(&dir));
    let snap = wal.snapshot.clone().expect("no snapshot read");
    assert!(snap.index <= wal.hard_state.commit);
    assert_eq!(snap.conf_state.voters, [member_id]);
    assert!(
        !snap.data.is_empty(),
        "etcd 3.4/3.5 put their v2 store in the snapshot"
    );
    assert_eq!(wal.entries.first().map(|e| e.index), Some(snap.index + 1));
    assert!(wal.torn_tail.is_none() && wal.passed_over.is_empty());

    // Past the snapshot: the requests made, in order, to the last one.
    let got = client_ops(kind, &wal, snap.index);
    assert_suffix(&got, &made.ops, "entries past the snapshot");
    assert_eq!(got.last(), made.ops.last());
    // What a restart would apply: the committed entries past the backend's index.
    let ci = consistent_index(&dir);
    assert!(ci <= wal.hard_state.commit);
    let after_ci: Vec<&cairn_etcdwal::Entry> = wal.committed_after(ci).collect();
    assert!(after_ci
        .iter()
        .all(|e| e.index > ci && e.index <= wal.hard_state.commit));
    assert!(cairn_etcdwal::is_etcd_data_dir(&dir));

    damaged_copies_are_refused(&dir, &wal);
}

/// Damages copies of the two-segment directory `dir` (read as `whole`) one way each.
fn damaged_copies_are_refused(dir: &Path, whole: &EtcdWal) {
    let copy = copy_member(dir);
    let read = |d: &Path| cairn_etcdwal::open(d);
    let same = read(copy.path()).unwrap();
    assert_eq!(same.entries, whole.entries, "the copy reads differently");

    // A flipped byte in the first segment's metadata record.
    let segs = segments(copy.path());
    let first = std::fs::read(&segs[0]).unwrap();
    let (off, len, _) = frames(&first)[1];
    flip(&segs[0], off + 8 + len - 1);
    match read(copy.path()) {
        Err(cairn_etcdwal::Error::CrcMismatch { path, offset }) => {
            assert_eq!((path, offset), (segs[0].clone(), off as u64))
        }
        other => panic!("{other:?}"),
    }
    flip(&segs[0], off + 8 + len - 1);

    // A flipped byte in a record in the middle of the last segment (one inside a sector,
    // so it cannot pass for a torn write).
    let last = segs.last().unwrap();
    let bytes = std::fs::read(last).unwrap();
    let fr = frames(&bytes);
    let (off, len, _) = fr[fr.len() / 2..]
        .iter()
        .copied()
        .find(|(o, l, p)| (o + 8) / 512 == (o + 8 + l + p - 1) / 512 && *l > 2)
        .unwrap();
    flip(last, off + 8 + len - 1);
    let err = read(copy.path()).unwrap_err();
    assert!(
        matches!(
            &err,
            cairn_etcdwal::Error::CrcMismatch { .. } | cairn_etcdwal::Error::BadRecord { .. }
        ),
        "{err}"
    );
    flip(last, off + 8 + len - 1);

    // The last segment cut inside its last record: read as etcd repairs it.
    let (off, len, _) = *fr.last().unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(last).unwrap();
    f.set_len((off + 8 + len / 2) as u64).unwrap();
    let cut = read(copy.path()).unwrap();
    assert_eq!(cut.torn_tail, Some((last.clone(), off as u64)));
    assert!(cut.entries.len() <= whole.entries.len());
    assert_eq!(cut.entries[..], whole.entries[..cut.entries.len()]);
    f.set_len(bytes.len() as u64).unwrap();
    std::fs::write(last, &bytes).unwrap();

    // A garbage file named as the next segment.
    let name = last.file_name().unwrap().to_string_lossy().into_owned();
    let seq = u64::from_str_radix(&name[..16], 16).unwrap();
    let next =
        copy.path()
            .join("member/wal")
            .join(format!("{:016x}-{:016x}.wal", seq + 1, u64::MAX / 2));
    let garbage: Vec<u8> = (0..8192u32).map(|i| (i * 7919 % 251) as u8 + 1).collect();
    std::fs::write(&next, &garbage).unwrap();
    let err = read(copy.path()).unwrap_err();
    assert!(
        matches!(
            &err,
            cairn_etcdwal::Error::TruncatedSegment { offset: 0, .. }
                | cairn_etcdwal::Error::BadRecord { offset: 0, .. }
        ),
        "{err}"
    );
    std::fs::remove_file(&next).unwrap();

    // Garbage under a name that is not a segment's is ignored, as etcd ignores it.
    std::fs::write(copy.path().join("member/wal/garbage.wal"), &garbage).unwrap();
    let with_garbage = read(copy.path()).unwrap();
    assert_eq!(with_garbage.ignored, ["garbage.wal"]);
    assert_eq!(with_garbage.entries, whole.entries);

    // The newest .snap file damaged: set aside, and the one before it used.
    let newest = whole.snapshot.as_ref().unwrap();
    let snap_copy = copy
        .path()
        .join("member/snap")
        .join(newest.path.file_name().unwrap());
    let len = std::fs::metadata(&snap_copy).unwrap().len() as usize;
    flip(&snap_copy, len / 2);
    let older = read(copy.path()).unwrap();
    assert_eq!(older.passed_over.len(), 1);
    assert_eq!(older.passed_over[0].0, snap_copy);
    let prev = older.snapshot.as_ref().expect("an older snapshot");
    assert!(prev.index < newest.index);
    assert_eq!(older.entries.first().map(|e| e.index), Some(prev.index + 1));
    assert_eq!(older.entries.last(), whole.entries.last());

    // Without any .snap file the log is read from its first entry.
    for e in std::fs::read_dir(copy.path().join("member/snap")).unwrap() {
        std::fs::remove_file(e.unwrap().path()).unwrap();
    }
    let from_start = read(copy.path()).unwrap();
    assert!(from_start.snapshot.is_none());
    assert_eq!(from_start.entries.first().map(|e| e.index), Some(1));
    assert_eq!(from_start.entries.last(), whole.entries.last());

    // A missing segment: the last one renamed past a gap in the sequence, which reading
    // from the first entry runs into.
    let renamed = copy
        .path()
        .join("member/wal")
        .join(format!("{:016x}{}", seq + 1, &name[16..]));
    std::fs::rename(last, &renamed).unwrap();
    assert!(matches!(
        read(copy.path()),
        Err(cairn_etcdwal::Error::SegmentGap { .. })
    ));
    std::fs::rename(&renamed, last).unwrap();
}

/// Starts etcd of `kind` with a backend that commits only when forced, runs the workload,
/// kills it with SIGKILL, and checks that the entries past the backend's consistent index
/// are the last requests made, up to the last acknowledged one.
fn killed_with_writes_past_the_backend(kind: Kind) {
    let mut etcd = ServerProc::start(
        kind,
        &[
            "--snapshot-count=100000",
            "--backend-batch-interval=1h",
            "--backend-batch-limit=100000",
        ],
    );
    let made = workload(&etcd.url(), 0);
    let (member_id, cluster_id, raft_index) = endpoint_status(&etcd.endpoint());
    let dir = etcd.data_dir();
    // etcd holds its WAL locked while it runs.
    match cairn_etcdwal::open(&dir) {
        Err(cairn_etcdwal::Error::InUse { .. }) => {}
        other => panic!("a running etcd's WAL was read: {other:?}"),
    }
    etcd.kill9();

    let wal = cairn_etcdwal::open(&dir).unwrap();
    assert_eq!((wal.member_id, wal.cluster_id), (member_id, cluster_id));
    assert!(wal.hard_state.commit >= raft_index, "{:?}", wal.hard_state);
    assert!(
        wal.snapshot.is_none(),
        "no snapshot at --snapshot-count=100000"
    );
    let ci = consistent_index(&dir);
    assert!(ci < raft_index, "the backend committed everything: {ci}");
    let pending: Vec<cairn_etcdwal::Entry> = wal.committed_after(ci).cloned().collect();
    let pending_wal = EtcdWal {
        entries: pending,
        ..wal.clone()
    };
    let got = client_ops(kind, &pending_wal, ci);
    assert_suffix(&got, &made.ops, "entries past the consistent index");
    assert_eq!(got.last(), made.ops.last(), "the last acknowledged put");
    // And from the first entry on, everything made is there, in order.
    assert_eq!(client_ops(kind, &wal, 0), made.ops);
    let first = wal.entries.first().unwrap();
    assert_eq!(first.index, 1);
    assert!(
        matches!(&first.payload, Payload::ConfChange(c) if c.kind == ConfChangeKind::AddNode
            && c.member.as_ref().is_some_and(|m| m.id == member_id && m.name == "m1")),
        "{first:?}"
    );
    // The learner's changes, in order, with etcd's member JSON.
    let changes: Vec<&cairn_etcdwal::ConfChange> = wal
        .entries
        .iter()
        .filter_map(|e| match &e.payload {
            Payload::ConfChange(c) if c.node_id == made.learner_id => Some(c),
            _ => None,
        })
        .collect();
    let kinds: Vec<ConfChangeKind> = changes.iter().map(|c| c.kind).collect();
    assert_eq!(
        kinds,
        [
            ConfChangeKind::AddLearnerNode,
            ConfChangeKind::UpdateNode,
            ConfChangeKind::RemoveNode
        ]
    );
    let added = changes[0].member.as_ref().unwrap();
    assert_eq!((added.id, added.is_learner), (made.learner_id, true));
    let updated = changes[1].member.as_ref().unwrap();
    assert_eq!(updated.id, made.learner_id);
    assert_eq!(
        updated.peer_urls,
        std::slice::from_ref(&made.learner_peer_url)
    );
    // etcd publishes its name and client URLs at start as a v2 request.
    assert!(wal.entries.iter().any(|e| matches!(&e.payload,
    Payload::V2(v) if v.effect == cairn_etcdwal::V2Effect::MemberAttributes {
        member_id,
        name: "m1".into(),
        client_urls: vec![etcd.url()],
    })));
}

#[test]
fn etcd34_stopped_cleanly_after_two_segments_and_snapshots() {
    clean_stop_with_snapshots_and_two_segments(Kind::Etcd34);
}

#[test]
fn etcd35_stopped_cleanly_after_two_segments_and_snapshots() {
    clean_stop_with_snapshots_and_two_segments(Kind::Etcd35);
}

#[test]
fn etcd34_killed_with_writes_past_the_backend() {
    killed_with_writes_past_the_backend(Kind::Etcd34);
}

#[test]
fn etcd35_killed_with_writes_past_the_backend() {
    killed_with_writes_past_the_backend(Kind::Etcd35);
}

/// Three etcd 3.4 members (the in-place migration's starting point): each member's WAL has
/// its own id, the cluster's id, the three initial members' conf changes, and the same
/// entries as the others up to the lowest commit, the puts made among them.
#[test]
fn etcd34_three_members_hold_the_same_log() {
    let mut cluster = Cluster::start_kind(Kind::Etcd34, 3, &[]);
    let puts: Vec<PutRequest> = (0..20)
        .map(|i| put(&format!("k{i:02}"), format!("v{i}").as_bytes(), 0))
        .collect();
    block_on(answered(async {
        // Through each member in turn: followers forward to the leader.
        for (i, p) in puts.iter().enumerate() {
            let url = cluster.members[i % 3].url();
            KvClient::new(channel(&url)).put(p.clone()).await.unwrap();
        }
    }));
    let statuses: Vec<(u64, u64, u64)> = wait_until(
        std::time::Duration::from_secs(10),
        "every member to have applied the last put",
        || {
            let s: Vec<(u64, u64, u64)> = cluster
                .members
                .iter()
                .map(|m| endpoint_status(&m.endpoint()))
                .collect();
            if s.iter().all(|x| x.2 == s[0].2) {
                Ok(s)
            } else {
                Err(s)
            }
        },
    );
    for m in &mut cluster.members {
        m.stop();
    }

    let wals: Vec<EtcdWal> = cluster
        .members
        .iter()
        .map(|m| cairn_etcdwal::open(m.data_dir()).unwrap())
        .collect();
    let mut ids = Vec::new();
    for (wal, (member_id, cluster_id, raft_index)) in wals.iter().zip(&statuses) {
        assert_eq!((wal.member_id, wal.cluster_id), (*member_id, *cluster_id));
        assert!(wal.hard_state.commit >= *raft_index, "{:?}", wal.hard_state);
        ids.push(*member_id);
        let made: Vec<Op> = puts.iter().cloned().map(Op::Put).collect();
        assert_eq!(client_ops(Kind::Etcd34, wal, 0), made);
    }
    // The initial members' conf changes, with their names.
    let mut initial: Vec<(u64, String)> = wals[0].entries[..3]
        .iter()
        .map(|e| match &e.payload {
            Payload::ConfChange(c) if c.kind == ConfChangeKind::AddNode => {
                let m = c.member.as_ref().unwrap();
                assert_eq!((e.term, m.id), (1, c.node_id));
                (m.id, m.name.clone())
            }
            other => panic!("{other:?}"),
        })
        .collect();
    initial.sort();
    let mut want: Vec<(u64, String)> = ids
        .iter()
        .zip(["m0", "m1", "m2"])
        .map(|(id, name)| (*id, name.to_string()))
        .collect();
    want.sort();
    assert_eq!(initial, want);
    // The same log on every member up to the lowest commit.
    let common = wals.iter().map(|w| w.hard_state.commit).min().unwrap();
    for w in &wals[1..] {
        let upto = |w: &EtcdWal| -> Vec<cairn_etcdwal::Entry> {
            w.entries
                .iter()
                .filter(|e| e.index <= common)
                .cloned()
                .collect()
        };
        assert_eq!(upto(w), upto(&wals[0]));
    }
}

#[test]
fn a_directory_without_a_wal_is_not_etcds() {
    let dir = tempfile::tempdir().unwrap();
    assert!(!cairn_etcdwal::is_etcd_data_dir(dir.path()));
    let err = cairn_etcdwal::open(dir.path()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{} is not an etcd data directory: member/wal is missing",
            dir.path().display()
        )
    );
}
