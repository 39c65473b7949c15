//! Hostile input thrown at running members: raft streams from strangers and in other
//! members' names, every Raft message type with a wrong sender or addressee, messages no
//! correct peer sends, an undecodable entry, forged snapshots on both paths, oversized and
//! truncated frames, forged lease requests, and random bytes and HTTP/1 and HTTP/2 garbage
//! on the client and peer ports. Afterwards every member still answers etcdctl and the
//! members' stores hash alike.
//!
//! Before: six bytes on the peer port stopped a member's writes for good (an opening naming
//! the member, then an empty `MsgPropose`), and one frame crash-looped a whole cluster (a
//! proposal whose entry is not a cairn request). Both are here, with the rest.
//!
//! Every loop is bounded: a fixed count of connections, each read under a timeout.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use cairn_proto::cairnpb::lease_peer_client::LeasePeerClient;
use cairn_proto::cairnpb::raft_peer_client::RaftPeerClient;
use cairn_proto::cairnpb::{LeaseRenewRequest, MemberSet, SnapshotChunk, SnapshotHeader};
use cairn_proto::etcdserverpb::kv_client::KvClient;
use cairn_proto::etcdserverpb::{request_op, Member, PutRequest, RequestOp, TxnRequest};
use cairn_raft::testing::eraftpb::{Entry, Message, MessageType};
use cairn_raft::PeerMessage;
use cairn_tests::{block_on, etcdctl35, wait_until, Cluster, Kind, ServerProc};
use prost::Message as _;
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};

/// A member under attack, and the names an attacker uses against it.
#[derive(Debug, Clone, Copy)]
struct Target {
    peer_port: u16,
    cluster: u64,
    me: u64,
    /// Another member of the cluster, whose name the attacker takes.
    other: u64,
    /// An id no member has.
    stranger: u64,
}

/// The raft stream opening from `from` to `to` in `cluster`.
fn hello(cluster: u64, from: u64, to: u64) -> Vec<u8> {
    let mut h = b"cairn-raft/1".to_vec();
    for w in [cluster, from, to] {
        h.extend_from_slice(&w.to_be_bytes());
    }
    h
}

fn frame(m: Message) -> Vec<u8> {
    let bytes = PeerMessage::from(m).encode().unwrap();
    let mut f = (bytes.len() as u32).to_be_bytes().to_vec();
    f.extend_from_slice(&bytes);
    f
}

fn msg(t: MessageType, from: u64, to: u64, term: u64) -> Message {
    let mut m = Message::default();
    m.set_msg_type(t);
    (m.from, m.to, m.term) = (from, to, term);
    m
}

fn connect(port: u16) -> TcpStream {
    let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    tcp.set_write_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    tcp
}

/// Opens a raft stream to `t` as `from` and returns it with the answer's first byte.
fn open(t: &Target, cluster: u64, from: u64, to: u64) -> (TcpStream, u8) {
    let mut tcp = connect(t.peer_port);
    tcp.write_all(&hello(cluster, from, to)).unwrap();
    let mut answer = [0u8];
    tcp.read_exact(&mut answer).unwrap();
    (tcp, answer[0])
}

/// Reads until the member closes `tcp` (within the read timeout), and returns what came.
fn read_until_closed(mut tcp: TcpStream, what: &str) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tcp.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return got,
            Err(e) => panic!("{what}: the member did not close the connection: {e}"),
        }
    }
}

/// Sends `bytes` on a stream the member took, and checks that it closes it, having sent
/// nothing but alive bytes.
fn closes_stream(t: &Target, bytes: &[u8], what: &str) {
    let (mut tcp, answer) = open(t, t.cluster, t.other, t.me);
    assert_eq!(answer, b'+', "{what}: stream not taken");
    // The member may close before it has read everything; that is fine.
    let _ = tcp.write_all(bytes);
    let _ = tcp.shutdown(std::net::Shutdown::Write);
    let rest = read_until_closed(tcp, what);
    assert!(rest.iter().all(|&b| b == b'.'), "{what}: {rest:?}");
}

/// Raft streams at `t`: openings from strangers, messages of every type in wrong names,
/// snapshots, oversized and truncated frames, undecodable frames.
fn attack_streams(t: &Target) {
    // Finding 1's six bytes come after an opening; only another member's is taken.
    for (cluster, from, to, why) in [
        (
            t.cluster,
            t.stranger,
            t.me,
            "is not another member of this cluster",
        ),
        (
            t.cluster,
            t.me,
            t.me,
            "is not another member of this cluster",
        ),
        (t.cluster, 0, t.me, "is not another member of this cluster"),
        (t.cluster ^ 1, t.other, t.me, "request cluster ID mismatch"),
        (t.cluster, t.other, t.stranger, "this is member"),
    ] {
        let (mut tcp, answer) = open(t, cluster, from, to);
        let _ = tcp.write_all(&[0, 0, 0, 2, 0x08, 0x02]);
        assert_eq!(answer, b'-', "opening {cluster:x} {from:x} {to:x}");
        let rest = read_until_closed(tcp, "a refused opening");
        assert!(
            String::from_utf8_lossy(&rest).contains(why),
            "{why}: {rest:?}"
        );
    }
    // Every message type, in a stranger's name, from this member itself, and to another.
    for t_ in cairn_raft::testing::ALL_MESSAGE_TYPES {
        for (from, to) in [(t.stranger, t.me), (t.me, t.me), (t.other, t.stranger)] {
            let m = msg(t_, from, to, 1);
            closes_stream(t, &frame(m), &format!("{t_:?} from {from:x} to {to:x}"));
        }
    }
    // A snapshot never travels on a stream, even in the right names.
    let mut snap = msg(MessageType::MsgSnapshot, t.other, t.me, 1 << 20);
    snap.mut_snapshot().mut_metadata().index = 1 << 20;
    snap.mut_snapshot().mut_metadata().term = 1;
    snap.mut_snapshot().mut_metadata().mut_conf_state().voters = vec![t.me, t.other];
    snap.mut_snapshot().data = vec![7u8; 1000].into();
    closes_stream(t, &frame(snap), "a snapshot on a stream");
    // Oversized, undecodable and truncated frames.
    closes_stream(t, &[0xff, 0xff, 0xff, 0xff, 1, 2, 3], "a 4 GiB frame");
    closes_stream(
        t,
        &[0, 0, 0, 4, 0xff, 0xff, 0xff, 0xff],
        "an undecodable frame",
    );
    closes_stream(t, &[0, 0, 0, 100, 1, 2, 3], "a truncated frame");
    closes_stream(t, &[0, 0], "a truncated length");
}

/// Messages in another member's right names that no correct member sends: the Raft thread
/// drops each (they made raft-rs panic), and the stream stays open.
fn hostile_contents(t: &Target) -> Vec<Message> {
    let (from, to) = (t.other, t.me);
    let later = |k: MessageType| msg(k, from, to, 1 << 20);
    let entry = |index: u64, term: u64| Entry {
        index,
        term,
        ..Default::default()
    };
    let mut heartbeat = later(MessageType::MsgHeartbeat);
    heartbeat.commit = 1 << 40;
    let mut past_end = later(MessageType::MsgAppend);
    (past_end.index, past_end.commit) = (1 << 30, 1 << 30);
    let mut scattered = later(MessageType::MsgAppend);
    scattered.entries = vec![entry(5, 1), entry(1, 1)].into();
    let mut rewrite = later(MessageType::MsgAppend);
    rewrite.entries = vec![entry(1, 99)].into();
    let snapshot = |voters: Vec<u64>, learners: Vec<u64>, term: u64| {
        let mut m = later(MessageType::MsgSnapshot);
        let meta = m.mut_snapshot().mut_metadata();
        (meta.index, meta.term) = (1 << 30, term);
        meta.mut_conf_state().voters = voters;
        meta.mut_conf_state().learners = learners;
        m
    };
    let mut vote = msg(MessageType::MsgRequestVote, from, to, 0);
    (vote.index, vote.log_term) = (1 << 30, 1 << 20);
    let mut read_answer = msg(MessageType::MsgReadIndexResp, from, to, 0);
    read_answer.index = 1 << 30;
    read_answer.entries = vec![Entry::default()].into();
    let mut proposal_with_term = later(MessageType::MsgPropose);
    proposal_with_term.entries = vec![Entry::default()].into();
    let mut ack = msg(MessageType::MsgAppendResponse, from, to, 1);
    ack.index = 1 << 30;
    vec![
        msg(MessageType::MsgPropose, from, to, 0),
        msg(MessageType::MsgHup, from, to, 0),
        msg(MessageType::MsgBeat, from, to, 0),
        msg(MessageType::MsgCheckQuorum, from, to, 0),
        msg(MessageType::MsgReadIndex, from, to, 0),
        heartbeat,
        past_end,
        scattered,
        rewrite,
        snapshot(vec![to], vec![], 0),
        snapshot(vec![], vec![to], 1),
        snapshot(vec![to, to], vec![], 1),
        vote,
        read_answer,
        proposal_with_term,
        ack,
    ]
}

/// Random bytes, HTTP/1 and HTTP/2 garbage on `port`.
fn attack_with_garbage(port: u16, rng: &mut StdRng) {
    let h2_preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    let mut garbage: Vec<Vec<u8>> = vec![
        b"BREW /pot HTCPCP/1.0\r\n\r\n".to_vec(),
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n".to_vec(),
        b"GET /health HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".to_vec(),
        b"POST /etcdserverpb.KV/Put HTTP/1.1\r\n\r\n".to_vec(),
        [&h2_preface[..], &[0xff; 64]].concat(),
        // A SETTINGS frame of a wrong length, then a DATA frame announcing 16 MiB on a
        // stream never opened.
        [&h2_preface[..], &[0, 0, 5, 4, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5]].concat(),
        [&h2_preface[..], &[0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 1, 9, 9]].concat(),
        // HEADERS whose block is not HPACK.
        [
            &h2_preface[..],
            &[0, 0, 0, 4, 0, 0, 0, 0, 0],
            &[0, 0, 8, 1, 5, 0, 0, 0, 1],
            &[0xff; 8],
        ]
        .concat(),
        h2_preface[..10].to_vec(),
        b"cairn-raft/".to_vec(),
    ];
    for _ in 0..24 {
        let len = rng.random_range(1..4096);
        let mut b = vec![0u8; len];
        rng.fill_bytes(&mut b);
        garbage.push(b);
    }
    for g in garbage {
        let mut tcp = connect(port);
        let _ = tcp.write_all(&g);
        let _ = tcp.shutdown(std::net::Shutdown::Write);
        // Whatever the member answers, it must end the connection.
        let _ = read_until_closed(tcp, &format!("garbage {:?}", &g[..g.len().min(16)]));
    }
}

/// A backend file as a snapshot carries one: applied up to `applied`, with `members`.
fn backend_bytes(applied: u64, members: &[u64]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let store = cairn_mvcc::Store::open(&dir.path().join("b.redb")).unwrap();
    let set = MemberSet {
        members: members
            .iter()
            .map(|&id| Member {
                id,
                ..Default::default()
            })
            .collect(),
    };
    let mut batch = store.begin_apply().unwrap();
    batch.put_meta("members", &set.encode_to_vec()).unwrap();
    let put = PutRequest {
        key: b"planted".to_vec(),
        value: b"by a stranger".to_vec(),
        ..Default::default()
    };
    batch.put(&put, &cairn_mvcc::NoLeases).unwrap();
    batch.set_applied_index(applied);
    batch.commit(true).unwrap();
    let out = dir.path().join("snap.redb");
    store.snapshot_to(&out).unwrap();
    std::fs::read(out).unwrap()
}

/// Forged snapshots through `RaftPeer.SendSnapshot` at `t`, each refused with what it gets.
/// Without another member (`t.other` is a stranger too), every one in a member's name is
/// refused for its sender.
fn attack_send_snapshot(t: &Target, peer_url: &str, members: &[u64]) {
    let other_is_member = members.contains(&t.other);
    let snapshot_msg = |from: u64, to: u64, index: u64, voters: Vec<u64>| {
        let mut m = msg(MessageType::MsgSnapshot, from, to, 1 << 20);
        let meta = m.mut_snapshot().mut_metadata();
        (meta.index, meta.term) = (index, 1);
        meta.mut_conf_state().voters = voters;
        PeerMessage::from(m).encode().unwrap()
    };
    let header = |cluster: u64, from: u64, message: Vec<u8>, data_len: u64| SnapshotChunk {
        header: Some(SnapshotHeader {
            cluster_id: cluster,
            from,
            to: t.me,
            message,
            data_len,
        }),
        data: Default::default(),
    };
    let data = |d: Vec<u8>| SnapshotChunk {
        header: None,
        data: d.into(),
    };
    let good = || snapshot_msg(t.other, t.me, 1 << 20, members.to_vec());
    let backend = backend_bytes(1 << 20, members);
    let len = backend.len() as u64;
    let append = PeerMessage::from(msg(MessageType::MsgAppend, t.other, t.me, 1))
        .encode()
        .unwrap();
    let cases: Vec<(&str, Vec<SnapshotChunk>, tonic::Code, String)> = vec![
        (
            "from a stranger",
            vec![header(t.cluster, t.stranger, good(), 0)],
            tonic::Code::PermissionDenied,
            "is not another member of this cluster".into(),
        ),
        (
            "for another cluster",
            vec![header(t.cluster ^ 1, t.other, good(), 0)],
            tonic::Code::FailedPrecondition,
            "request cluster ID mismatch".into(),
        ),
        (
            "without a header",
            vec![data(vec![1, 2, 3])],
            tonic::Code::InvalidArgument,
            "does not start with a header".into(),
        ),
        (
            "an undecodable message",
            vec![header(t.cluster, t.other, vec![0xff; 7], 0)],
            tonic::Code::InvalidArgument,
            "undecodable raft message".into(),
        ),
        (
            "not a snapshot",
            vec![header(t.cluster, t.other, append, 0)],
            tonic::Code::InvalidArgument,
            "not a MsgSnapshot".into(),
        ),
        (
            "a message in another sender's name",
            vec![header(
                t.cluster,
                t.other,
                snapshot_msg(t.stranger, t.me, 9, vec![]),
                0,
            )],
            tonic::Code::InvalidArgument,
            "does not match its header".into(),
        ),
        (
            "a petabyte announced",
            vec![
                header(t.cluster, t.other, good(), 1 << 50),
                data(vec![0; 10]),
            ],
            tonic::Code::InvalidArgument,
            "exceeds the limit".into(),
        ),
        (
            "half a gigabyte announced, ten bytes sent",
            vec![
                header(t.cluster, t.other, good(), 500 << 20),
                data(vec![0; 10]),
            ],
            tonic::Code::InvalidArgument,
            format!("ended after 10 of {} bytes", 500u64 << 20),
        ),
        (
            "a chunk over the service's message limit",
            vec![
                header(t.cluster, t.other, good(), 3 << 20),
                data(vec![0; 3 << 20]),
            ],
            tonic::Code::ResourceExhausted,
            "grpc: received message larger than max".into(),
        ),
        (
            "bytes that are no backend",
            vec![
                header(t.cluster, t.other, good(), 4096),
                data(vec![0x5a; 4096]),
            ],
            tonic::Code::InvalidArgument,
            "does not open as a backend".into(),
        ),
        (
            "a truncated backend",
            vec![
                header(t.cluster, t.other, good(), len / 2),
                data(backend[..(len / 2) as usize].to_vec()),
            ],
            tonic::Code::InvalidArgument,
            "does not open as a backend".into(),
        ),
        (
            "a backend applied elsewhere than the snapshot's index",
            vec![
                header(
                    t.cluster,
                    t.other,
                    snapshot_msg(t.other, t.me, 77, members.to_vec()),
                    len,
                ),
                data(backend.clone()),
            ],
            tonic::Code::InvalidArgument,
            format!(
                "snapshot at index 77 holds a backend applied up to {}",
                1u64 << 20
            ),
        ),
        (
            "a backend whose members are not the snapshot's",
            vec![
                header(
                    t.cluster,
                    t.other,
                    snapshot_msg(t.other, t.me, 1 << 20, vec![t.me]),
                    len,
                ),
                data(backend.clone()),
            ],
            tonic::Code::InvalidArgument,
            "are not its configuration's".into(),
        ),
    ];
    block_on(async {
        for (name, chunks, code, want) in cases {
            let in_a_members_name = !matches!(name, "without a header" | "for another cluster");
            let (code, want) = if !other_is_member && in_a_members_name {
                (
                    tonic::Code::PermissionDenied,
                    "is not another member of this cluster".to_string(),
                )
            } else {
                (code, want)
            };
            let mut client = RaftPeerClient::new(cairn_tests::channel(peer_url));
            let call = client.send_snapshot(futures::stream::iter(chunks));
            let r = tokio::time::timeout(Duration::from_secs(30), call)
                .await
                .unwrap_or_else(|_| panic!("{name}: no answer"));
            let s = r.expect_err(name);
            assert_eq!(s.code(), code, "{name}: {s:?}");
            assert!(s.message().contains(&want), "{name}: {s:?}");
        }
    });
}

/// Lease requests to `t`'s `LeasePeer` that do not come from another member.
fn attack_lease_peer(t: &Target, peer_url: &str) {
    block_on(async {
        let named = |cluster: u64, from: u64| {
            let mut r = tonic::Request::new(LeaseRenewRequest { id: 1 });
            for (k, v) in [
                ("cairn-cluster-id", cluster),
                ("cairn-from", from),
                ("cairn-to", t.me),
            ] {
                r.metadata_mut()
                    .insert(k, format!("{v:x}").parse().unwrap());
            }
            r
        };
        let cases = [
            (
                tonic::Request::new(LeaseRenewRequest { id: 1 }),
                tonic::Code::PermissionDenied,
            ),
            (named(t.cluster, t.stranger), tonic::Code::PermissionDenied),
            (named(t.cluster, t.me), tonic::Code::PermissionDenied),
            (
                named(t.cluster ^ 1, t.other),
                tonic::Code::FailedPrecondition,
            ),
        ];
        for (req, code) in cases {
            let mut client = LeasePeerClient::new(cairn_tests::channel(peer_url));
            let s = tokio::time::timeout(Duration::from_secs(10), client.renew(req))
                .await
                .unwrap()
                .unwrap_err();
            assert_eq!(s.code(), code, "{s:?}");
        }
    });
}

/// Refusals member `m` counted on `path`.
fn refused(m: &ServerProc, path: &str) -> f64 {
    m.metric(&format!(
        "cairn_server_peer_refused_total{{path=\"{path}\"}}"
    ))
    .unwrap_or(0.0)
}

/// Every member answers put, get, member list, endpoint status and endpoint health, and
/// all hash their stores alike at the same revision.
fn assert_members_serve(members: &[&ServerProc], n: usize) {
    for (i, m) in members.iter().enumerate() {
        let ep = m.endpoint();
        let key = format!("after-{i}");
        let put = etcdctl35(&ep, &["put", &key, "still here"]);
        assert_eq!(put.stdout, "OK\n", "{put:?}");
        let get = etcdctl35(&ep, &["get", &key, "--print-value-only"]);
        assert_eq!(get.stdout, "still here\n", "{get:?}");
        let list = etcdctl35(&ep, &["member", "list"]);
        assert_eq!(list.stdout.lines().count(), n, "{list:?}");
        let status = etcdctl35(&ep, &["endpoint", "status"]);
        assert_eq!(status.code, 0, "{status:?}");
        let health = etcdctl35(&ep, &["endpoint", "health"]);
        assert!(
            health.stderr.contains("is healthy") || health.stdout.contains("is healthy"),
            "{health:?}"
        );
    }
    // The revision of the last put, which every member reaches.
    let last = etcdctl35(&members[0].endpoint(), &["get", "after-0", "-w", "json"]);
    let v: serde_json::Value = serde_json::from_str(&last.stdout).unwrap();
    let rev = v["header"]["revision"].as_i64().unwrap().to_string();
    let hashes: Vec<u64> = members
        .iter()
        .map(|m| {
            wait_until(
                Duration::from_secs(10),
                format!("{} to hash revision {rev}", m.name),
                || {
                    let r = etcdctl35(
                        &m.endpoint(),
                        &["endpoint", "hashkv", "--rev", &rev, "-w", "json"],
                    );
                    let v: serde_json::Value =
                        serde_json::from_str(&r.stdout).map_err(|_| r.clone())?;
                    v[0]["HashKV"]["hash"].as_u64().ok_or(r)
                },
            )
        })
        .collect();
    assert!(hashes.iter().all(|&h| h == hashes[0]), "{hashes:?}");
}

#[test]
fn three_members_shrug_off_hostile_peers_and_clients() {
    let c = Cluster::start(3, &[]);
    let ids: Vec<u64> = c.members.iter().map(|m| m.ids().member).collect();
    let cluster = c.members[0].ids().cluster;
    let stranger = ids.iter().fold(0x5eed, |a, &b| a ^ b) | 1;
    let mut rng = StdRng::seed_from_u64(10);
    for (i, m) in c.members.iter().enumerate() {
        let t = Target {
            peer_port: m.peer_port,
            cluster,
            me: ids[i],
            other: ids[(i + 1) % 3],
            stranger,
        };
        attack_streams(&t);
        // In the right names, what no correct member sends: dropped by the Raft thread, on
        // a stream that stays open.
        let (mut tcp, answer) = open(&t, cluster, t.other, t.me);
        assert_eq!(answer, b'+');
        for h in hostile_contents(&t) {
            tcp.write_all(&frame(h)).unwrap();
        }
        attack_send_snapshot(&t, &m.peer_url(), &ids);
        attack_lease_peer(&t, &m.peer_url());
        attack_with_garbage(m.peer_port, &mut rng);
        attack_with_garbage(m.client_port, &mut rng);
        assert!(
            refused(m, "stream") >= 5.0 + 3.0 * cairn_raft::testing::ALL_MESSAGE_TYPES.len() as f64
        );
        // All but the oversized chunk, which tonic refuses before cairn sees it.
        assert!(refused(m, "snapshot") >= 12.0);
        assert!(refused(m, "lease") >= 4.0);
    }
    // Finding 2: a proposal whose entry is not a cairn request, sent to the leader in a
    // follower's name. It is committed; every member skips it, counts it and goes on.
    let l = cairn_tests::leader(&c.members);
    let t = Target {
        peer_port: c.members[l].peer_port,
        cluster,
        me: ids[l],
        other: ids[(l + 1) % 3],
        stranger,
    };
    let (mut tcp, answer) = open(&t, cluster, t.other, t.me);
    assert_eq!(answer, b'+');
    let mut poison = msg(MessageType::MsgPropose, t.other, t.me, 0);
    poison.entries = vec![Entry {
        data: vec![0xff; 40].into(),
        ..Default::default()
    }]
    .into();
    tcp.write_all(&frame(poison)).unwrap();
    for m in &c.members {
        wait_until(
            Duration::from_secs(10),
            format!("{} to skip the entry", m.name),
            || match m.metric("cairn_server_undecodable_entries_total") {
                Some(v) if v >= 1.0 => Ok(()),
                seen => Err(seen),
            },
        );
    }
    drop(tcp);
    let members: Vec<&ServerProc> = c.members.iter().collect();
    assert_members_serve(&members, 3);
}

#[test]
fn a_single_member_shrugs_off_hostile_peers_and_clients() {
    let m = ServerProc::start(Kind::Cairn, &[]);
    let ids = m.ids();
    let stranger = ids.member ^ 0x5eed;
    let t = Target {
        peer_port: m.peer_port,
        cluster: ids.cluster,
        me: ids.member,
        other: stranger,
        stranger,
    };
    // Finding 1: the six bytes after an opening in any name. A single member has no other
    // member, so no opening is taken.
    for from in [stranger, ids.member, 0] {
        let (mut tcp, answer) = open(&t, ids.cluster, from, ids.member);
        let _ = tcp.write_all(&[0, 0, 0, 2, 0x08, 0x02]);
        assert_eq!(answer, b'-');
    }
    attack_send_snapshot(&t, &m.peer_url(), &[ids.member]);
    attack_lease_peer(&t, &m.peer_url());
    let mut rng = StdRng::seed_from_u64(1);
    attack_with_garbage(m.peer_port, &mut rng);
    attack_with_garbage(m.client_port, &mut rng);
    assert_eq!(refused(&m, "stream"), 3.0);
    assert_members_serve(&[&m], 1);
}

/// A txn of `shape[0]` txns of `shape[1]` txns ... of `shape[last]` puts, on distinct
/// 8-byte keys with empty values.
fn nested_txn(shape: &[usize], next: &mut u64) -> Vec<RequestOp> {
    let Some((&n, rest)) = shape.split_first() else {
        return Vec::new();
    };
    (0..n)
        .map(|_| {
            let request = if rest.is_empty() {
                *next += 1;
                request_op::Request::RequestPut(PutRequest {
                    key: format!("{:08}", *next).into_bytes(),
                    ..Default::default()
                })
            } else {
                request_op::Request::RequestTxn(TxnRequest {
                    success: nested_txn(rest, next),
                    ..Default::default()
                })
            };
            RequestOp {
                request: Some(request),
            }
        })
        .collect()
}

/// Finding 3: a txn of 43 txns of 43 txns of 42 puts on distinct keys (within
/// --max-txn-ops and --max-request-bytes) once took seconds of an async worker in
/// its duplicate-key check. Now it is one request like another: other clients' writes go
/// on while it is checked and applied, every member applies all 77658 puts, and the
/// members hash alike. (What it costs against etcd: `BENCH_WORKLOADS=nested-txn
/// scripts/bench-vs-etcd`.)
#[test]
fn a_wide_nested_txn_is_one_request_like_another() {
    let c = Cluster::start(3, &[]);
    let l = cairn_tests::leader(&c.members);
    let txn = TxnRequest {
        success: nested_txn(&[43, 43, 42], &mut 0),
        ..Default::default()
    };
    // 1.1 MB with 8-byte keys (the issue's had shorter ones): under --max-request-bytes.
    assert!((700_000..1_572_864).contains(&txn.encoded_len()));
    let (big, small) = (c.members[l].url(), c.members[(l + 1) % 3].url());
    block_on(async move {
        let mut kv = KvClient::new(cairn_tests::channel(&big)).max_decoding_message_size(64 << 20);
        let big = tokio::spawn(async move { kv.txn(txn).await });
        let mut other = KvClient::new(cairn_tests::channel(&small));
        for i in 0..50 {
            let put = PutRequest {
                key: format!("other/{i}").into_bytes(),
                value: b"v".to_vec(),
                ..Default::default()
            };
            other.put(put).await.unwrap();
        }
        let resp = big.await.unwrap().unwrap().into_inner();
        assert!(resp.succeeded);
        assert_eq!(resp.responses.len(), 43);
    });
    // Each member's own copy (a serializable read), once it has applied the txn: a
    // follower may apply it a moment after the leader answered.
    let want = format!("\"Count\" : {}\n", 43 * 43 * 42);
    for m in &c.members {
        wait_until(
            Duration::from_secs(10),
            format!("{} to hold the txn's {want}", m.name),
            || {
                let count = etcdctl35(
                    &m.endpoint(),
                    &[
                        "get",
                        "0",
                        "9",
                        "--count-only",
                        "-w",
                        "fields",
                        "--consistency=s",
                    ],
                );
                if count.stdout.contains(&want) {
                    Ok(())
                } else {
                    Err(count)
                }
            },
        );
    }
    let members: Vec<&ServerProc> = c.members.iter().collect();
    assert_members_serve(&members, 3);
}

/// The TLS ports: garbage where a ClientHello should be, on an https client port and an
/// https peer port that requires member certificates, and a connection that opens a
/// handshake and then says nothing. Each is closed (the silent one at the handshake
/// timeout), and the member then serves a TLS client as before.
#[test]
fn tls_ports_shrug_off_garbage_and_silent_handshakes() {
    use cairn_tests::certs::{Pki, Use};
    let pki = Pki::new("hostile CA");
    let member = pki.issue("member", "member", 1, Use::Server);
    let path = |p: &std::path::Path| p.display().to_string();
    let flags = [
        format!("--cert-file={}", path(&member.cert)),
        format!("--key-file={}", path(&member.key)),
        format!("--peer-cert-file={}", path(&member.cert)),
        format!("--peer-key-file={}", path(&member.key)),
        format!("--peer-trusted-ca-file={}", path(&pki.ca())),
        "--peer-client-cert-auth".to_string(),
        "--cairn-handshake-timeout=1s".to_string(),
    ];
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let mut m = ServerProc::new(Kind::Cairn, "m1", cairn_tests::free_port(), &flags);
    m.client_scheme = "https";
    m.peer_scheme = "https";
    m.spawn();

    let mut rng = StdRng::seed_from_u64(3);
    attack_with_garbage(m.peer_port, &mut rng);
    attack_with_garbage(m.client_port, &mut rng);
    // The first bytes of a TLS 1.2 ClientHello record, then silence: closed by the member.
    for port in [m.client_port, m.peer_port] {
        let mut tcp = connect(port);
        tcp.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
            .unwrap();
        read_until_closed(tcp, "a handshake that stalls");
    }

    let ca = format!("--cacert={}", path(&pki.ca()));
    let put = cairn_tests::run_client(
        &cairn_tests::tool("etcdctl-3.5"),
        &m.url(),
        &[&ca, "put", "after-tls-garbage", "ok"],
        None,
    );
    assert_eq!((put.code, put.stdout.as_str()), (0, "OK\n"), "{put:?}");
    let get = cairn_tests::run_client(
        &cairn_tests::tool("etcdctl-3.5"),
        &m.url(),
        &[&ca, "get", "after-tls-garbage", "--print-value-only"],
        None,
    );
    assert_eq!(get.stdout, "ok\n", "{get:?}");
}
