//! Multi-member clusters on loopback, driven with the real etcdctl: every member takes
//! writes and serves linearizable reads, the members agree (HashKV), a killed leader is
//! replaced and a restarted member catches up, and a majority is needed to write.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use cairn_tests::workload::bulk_put;
use cairn_tests::{etcdctl35, etcdctl35_membership, free_port, leader, Cluster, Kind, ServerProc};

/// Retries a put on `endpoint` until it succeeds (bounded), returning how long it took.
fn put_until_ok(endpoint: &str, key: &str, value: &str) -> Duration {
    let started = Instant::now();
    loop {
        let r = etcdctl35(endpoint, &["put", key, value, "--command-timeout=2s"]);
        if r.code == 0 {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "writes never resumed: {r:?}"
        );
    }
}

/// Every member reports the same KV hash at the same revision.
fn assert_converged(c: &Cluster) {
    assert_endpoints_converged(&c.endpoints(), c.members.len());
}

/// The `n` listed endpoints report the same KV hash at the same revision.
fn assert_endpoints_converged(endpoints: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = etcdctl35(endpoints, &["endpoint", "hashkv", "-w", "json"]);
        let v: serde_json::Value =
            serde_json::from_str(&r.stdout).unwrap_or(serde_json::Value::Null);
        let hashes: Vec<(u64, i64)> = v
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|e| {
                        (
                            e["HashKV"]["hash"].as_u64().unwrap_or(0),
                            e["HashKV"]["header"]["revision"].as_i64().unwrap_or(0),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        if hashes.len() == n && hashes.windows(2).all(|w| w[0] == w[1]) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "members never converged: {hashes:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn three_members_replicate_and_survive_a_leader_kill() {
    let mut c = Cluster::start(3, &[]);
    let r = etcdctl35(&c.endpoints(), &["member", "list"]);
    assert_eq!(r.stdout.lines().count(), 3, "{r:?}");
    for m in &c.members {
        assert!(
            r.stdout.contains(&format!(
                ", {}, http://127.0.0.1:{}, http://{}, false",
                m.name,
                m.peer_port,
                m.endpoint()
            )),
            "{r:?}"
        );
    }
    // Writes through every member; linearizable reads from every member see all of them.
    for (i, m) in c.members.iter().enumerate() {
        let r = etcdctl35(&m.endpoint(), &["put", &format!("via/{i}"), &m.name]);
        assert_eq!(r.stdout, "OK\n", "{r:?}");
        for other in &c.members {
            let r = etcdctl35(
                &other.endpoint(),
                &["get", &format!("via/{i}"), "--print-value-only"],
            );
            assert_eq!(
                r.stdout,
                format!("{}\n", m.name),
                "read on {} after write on {}",
                other.name,
                m.name
            );
        }
    }
    assert_converged(&c);

    // Kill the leader: the other two elect a new one and take writes.
    let leader = leader(&c.members);
    c.members[leader].kill9();
    let survivor = c.members[(leader + 1) % 3].endpoint();
    put_until_ok(&survivor, "after/kill", "1");
    for i in 0..20 {
        let r = etcdctl35(&survivor, &["put", &format!("after/{i}"), "v"]);
        assert_eq!(r.code, 0, "{r:?}");
    }
    // The killed member restarts, catches up, and serves the new writes.
    c.members[leader].spawn();
    let back = c.members[leader].endpoint();
    let r = etcdctl35(&back, &["get", "after/", "--prefix", "--keys-only"]);
    assert_eq!(
        r.stdout.lines().filter(|l| !l.is_empty()).count(),
        21,
        "{r:?}"
    );
    assert_converged(&c);
}

#[test]
fn five_members_need_a_majority() {
    let mut c = Cluster::start(5, &[]);
    put_until_ok(&c.members[0].endpoint(), "k", "0");
    // Two down: the other three still write.
    let leader = leader(&c.members);
    let down: Vec<usize> = [leader, (leader + 1) % 5].to_vec();
    for &i in &down {
        c.members[i].kill9();
    }
    let up: Vec<usize> = (0..5).filter(|i| !down.contains(i)).collect();
    put_until_ok(&c.members[up[0]].endpoint(), "k", "2-down");
    // Three down: no majority, no write is acknowledged.
    c.members[up[1]].kill9();
    let r = etcdctl35(
        &c.members[up[0]].endpoint(),
        &["put", "k", "3-down", "--command-timeout=3s"],
    );
    assert_ne!(r.code, 0, "a write succeeded without a majority: {r:?}");
    let r = etcdctl35(
        &c.members[up[2]].endpoint(),
        &["get", "k", "--print-value-only", "--consistency=s"],
    );
    assert_eq!(r.stdout, "2-down\n");
    // One comes back: a majority again.
    c.members[up[1]].spawn();
    put_until_ok(&c.members[up[0]].endpoint(), "k", "back");
    let r = etcdctl35(
        &c.members[up[2]].endpoint(),
        &["get", "k", "--print-value-only"],
    );
    assert_eq!(r.stdout, "back\n");
}

#[test]
fn move_leader_and_graceful_stop_hand_over_leadership() {
    let mut c = Cluster::start(3, &[]);
    let ids: Vec<u64> = c.members.iter().map(|m| m.ids().member).collect();
    let from = ids[leader(&c.members)];
    let target = ids.iter().copied().find(|id| *id != from).unwrap();
    let r = etcdctl35(&c.endpoints(), &["move-leader", &format!("{target:x}")]);
    assert_eq!(
        r.stdout,
        format!("Leadership transferred from {from:x} to {target:x}\n"),
        "{r:?}"
    );
    let now = leader(&c.members);
    assert_eq!(ids[now], target);
    // A follower refuses, as etcd does.
    let follower = (now + 1) % 3;
    let r = etcdctl35(
        &c.members[follower].endpoint(),
        &["move-leader", &format!("{target:x}")],
    );
    assert_ne!(r.code, 0, "{r:?}");

    // SIGTERM on the leader hands leadership over before it exits.
    c.members[now].stop();
    assert!(
        c.members[now].log_text().contains("leadership transferred"),
        "{}",
        c.members[now].log_text()
    );
    let rest: Vec<String> = (0..3)
        .filter(|i| *i != now)
        .map(|i| c.members[i].endpoint())
        .collect();
    let r = etcdctl35(&rest.join(","), &["put", "k", "v"]);
    assert_eq!(r.code, 0, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_behind_the_log_catches_up_by_snapshot() {
    use cairn_proto::etcdserverpb::kv_client::KvClient;
    let mut c = tokio::task::block_in_place(|| {
        Cluster::start(
            3,
            &[
                "--experimental-snapshot-catchup-entries=100",
                "--snapshot-count=100",
            ],
        )
    });
    let leader = leader(&c.members);
    let lagging = (leader + 1) % 3;
    c.members[lagging].kill9();
    // Far more entries than the log keeps while the member is away.
    let ch = cairn_tests::channel(&c.members[leader].url());
    bulk_put(&KvClient::new(ch), "bulk/", 8, 400, |_, _| b"v".to_vec()).await;
    // The leader purges its log only behind a durable backend commit, and the backend makes
    // a commit durable only once half a second has passed since the last one: let that time
    // pass, so that the next write is durable.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    tokio::task::block_in_place(|| {
        etcdctl35(&c.members[leader].endpoint(), &["put", "last", "1"]);
        c.members[lagging].spawn();
        assert_converged(&c);
        let r = etcdctl35(
            &c.members[lagging].endpoint(),
            &["get", "bulk/", "--prefix", "--keys-only", "--consistency=s"],
        );
        assert_eq!(r.stdout.lines().filter(|l| !l.is_empty()).count(), 3200);
        assert!(
            c.members[lagging]
                .log_text()
                .contains("applied snapshot from the leader"),
            "caught up without a snapshot: {}",
            c.members[lagging].log_text()
        );
    });
}

/// The `bytes` field of the first line of `log` whose message is `msg`.
fn logged_bytes(log: &str, msg: &str) -> Option<u64> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["msg"] == msg)
        .and_then(|v| v["bytes"].as_u64())
}

/// A member that was down while the others wrote several megabytes catches up by a
/// snapshot streamed in many chunks, and the cluster keeps taking writes while it is on
/// its way. (Before chunking, a snapshot was one gRPC message on the peer's only queue,
/// and that peer's heartbeats and appends waited behind it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_snapshot_streams_in_chunks_while_writes_go_on() {
    use cairn_proto::etcdserverpb::{kv_client::KvClient, PutRequest};
    let mut c = tokio::task::block_in_place(|| {
        Cluster::start(
            3,
            &[
                "--experimental-snapshot-catchup-entries=20",
                "--snapshot-count=50",
            ],
        )
    });
    let leader = leader(&c.members);
    let lagging = (leader + 1) % 3;
    c.members[lagging].kill9();
    let mark = c.members[leader].log_len();
    let ch = cairn_tests::channel(&c.members[leader].url());
    // 6 MiB of values while the member is away: 4 writers of 48 values of 32 KiB.
    let big = |w: usize, i: usize| vec![(w * 48 + i) as u8; 32 << 10];
    bulk_put(&KvClient::new(ch.clone()), "big/", 4, 48, big).await;
    // The leader compacts its log only behind a durable backend commit, and the backend
    // makes a commit durable only once half a second has passed since the last one: write
    // now and then until the leader has compacted its log past what the lagging member has,
    // so that it can only catch up by a snapshot.
    let deadline = Instant::now() + Duration::from_secs(30);
    let compacted = |log: &str| log.contains("compacted Raft logs");
    while !c.members[leader]
        .log_text()
        .lines()
        .skip(mark)
        .any(compacted)
    {
        assert!(
            Instant::now() < deadline,
            "the leader never compacted its log"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut kv = KvClient::new(ch.clone());
        let req = PutRequest {
            key: b"nudge".to_vec(),
            value: b"v".to_vec(),
            ..Default::default()
        };
        kv.put(req).await.unwrap();
    }

    // Small writes go on, each with a deadline, while the member restarts and catches up.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let mut kv = KvClient::new(ch.clone());
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut done = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Acquire) && done < 10_000 {
                let req = PutRequest {
                    key: format!("during/{done}").into_bytes(),
                    value: b"v".to_vec(),
                    ..Default::default()
                };
                let put = tokio::time::timeout(Duration::from_secs(5), kv.put(req)).await;
                assert!(
                    matches!(put, Ok(Ok(_))),
                    "write {done} failed during the transfer: {put:?}"
                );
                done += 1;
            }
            done
        })
    };
    tokio::task::block_in_place(|| c.members[lagging].spawn());
    stop.store(true, std::sync::atomic::Ordering::Release);
    let during = writer.await.unwrap();
    assert!(during > 0, "no write finished while the member caught up");

    tokio::task::block_in_place(|| {
        let r = etcdctl35(&c.members[leader].endpoint(), &["put", "last", "written"]);
        assert_eq!(r.code, 0, "{r:?}");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let r = etcdctl35(
                &c.members[lagging].endpoint(),
                &["get", "last", "--print-value-only", "--consistency=s"],
            );
            if r.stdout == "written\n" {
                break;
            }
            assert!(Instant::now() < deadline, "last write never served: {r:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_converged(&c);
        let r = etcdctl35(
            &c.members[lagging].endpoint(),
            &["get", "big/", "--prefix", "--keys-only", "--consistency=s"],
        );
        assert_eq!(r.stdout.lines().filter(|l| !l.is_empty()).count(), 192);

        // It came as a snapshot far larger than one chunk.
        let sent = logged_bytes(&c.members[leader].log_text(), "sent raft snapshot");
        let received = logged_bytes(&c.members[lagging].log_text(), "received raft snapshot");
        assert!(
            sent.is_some_and(|b| b >= 6 << 20),
            "leader sent {sent:?} bytes"
        );
        assert_eq!(received, sent);
    });
}

/// Runs `member add` and returns (new member id, the ETCD_INITIAL_CLUSTER it printed).
fn member_add(endpoints: &str, name: &str, peer_port: u16, learner: bool) -> (u64, String) {
    let url = format!("--peer-urls=http://127.0.0.1:{peer_port}");
    let mut args = vec!["member", "add", name, url.as_str()];
    if learner {
        args.push("--learner");
    }
    let r = etcdctl35_membership(endpoints, &args);
    assert_eq!(r.code, 0, "{r:?}");
    let first = r.stdout.lines().next().unwrap();
    assert!(
        first.starts_with("Member ") && first.contains(" added to cluster "),
        "{r:?}"
    );
    let id = u64::from_str_radix(first.split_whitespace().nth(1).unwrap(), 16).unwrap();
    let initial = r
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("ETCD_INITIAL_CLUSTER=\""))
        .unwrap()
        .trim_end_matches('"')
        .to_string();
    assert!(
        r.stdout.contains("ETCD_INITIAL_CLUSTER_STATE=\"existing\""),
        "{r:?}"
    );
    (id, initial)
}

/// Starts a member that joins with `--initial-cluster-state=existing`.
fn join(name: &str, peer_port: u16, initial: &str) -> ServerProc {
    let mut p = ServerProc::new(
        Kind::Cairn,
        name,
        peer_port,
        &[
            &format!("--initial-cluster={initial}"),
            "--initial-cluster-state=existing",
        ],
    );
    p.spawn();
    p
}

#[test]
fn members_join_get_promoted_and_leave() {
    let c = Cluster::start(3, &[]);
    let eps = c.endpoints();
    // A new voter joins through a snapshot and serves.
    let port = free_port();
    let (id, initial) = member_add(&eps, "m3", port, false);
    let m3 = join("m3", port, &initial);
    let all = format!("{eps},{}", m3.endpoint());
    let r = etcdctl35(&all, &["member", "list"]);
    assert_eq!(r.stdout.lines().count(), 4, "{r:?}");
    assert!(
        r.stdout.contains(&format!(
            "{id:x}, started, m3, http://127.0.0.1:{port}, {}, false",
            m3.url()
        )),
        "{r:?}"
    );
    let r = etcdctl35(&m3.endpoint(), &["put", "from/m3", "1"]);
    assert_eq!(r.stdout, "OK\n", "{r:?}");
    let r = etcdctl35(
        &c.members[0].endpoint(),
        &["get", "from/m3", "--print-value-only"],
    );
    assert_eq!(r.stdout, "1\n");
    assert_endpoints_converged(&all, 4);

    // Errors as etcd words them.
    let r = etcdctl35(
        &eps,
        &[
            "member",
            "add",
            "dup",
            &format!("--peer-urls=http://127.0.0.1:{port}"),
        ],
    );
    assert!(
        r.stderr.contains("etcdserver: Peer URLs already exists"),
        "{r:?}"
    );
    let r = etcdctl35(&eps, &["member", "promote", &format!("{id:x}")]);
    assert!(
        r.stderr
            .contains("etcdserver: can only promote a learner member"),
        "{r:?}"
    );
    let r = etcdctl35(&eps, &["member", "remove", "1234"]);
    assert!(r.stderr.contains("etcdserver: member not found"), "{r:?}");

    // It leaves again.
    let r = etcdctl35(&eps, &["member", "remove", &format!("{id:x}")]);
    assert!(
        r.stdout
            .contains(&format!("Member {id:16x} removed from cluster")),
        "{r:?}"
    );
    let r = etcdctl35(&eps, &["member", "list"]);
    assert_eq!(r.stdout.lines().count(), 3, "{r:?}");
    drop(m3);

    // A learner joins, catches up, and is promoted to a voter.
    let port = free_port();
    let (lid, initial) = member_add(&eps, "m4", port, true);
    let r = etcdctl35(
        &eps,
        &[
            "member",
            "add",
            "m5",
            &format!("--peer-urls=http://127.0.0.1:{}", free_port()),
            "--learner",
        ],
    );
    assert!(
        r.stderr
            .contains("etcdserver: too many learner members in cluster"),
        "{r:?}"
    );
    // Not started yet, so far behind: the leader refuses to promote it.
    let leader = c.members[leader(&c.members)].endpoint();
    let r = etcdctl35(&leader, &["member", "promote", &format!("{lid:x}")]);
    assert!(
        r.stderr
            .contains("etcdserver: can only promote a learner member which is in sync with leader"),
        "{r:?}"
    );
    let m4 = join("m4", port, &initial);
    // A learner serves serializable reads and Status only.
    let r = etcdctl35(&m4.endpoint(), &["put", "x", "y"]);
    assert!(
        r.stderr
            .contains("etcdserver: rpc not supported for learner"),
        "{r:?}"
    );
    let r = etcdctl35(
        &m4.endpoint(),
        &["get", "from/m3", "--consistency=s", "--print-value-only"],
    );
    assert_eq!(r.stdout, "1\n", "{r:?}");
    let r = etcdctl35(&m4.endpoint(), &["endpoint", "status", "-w", "json"]);
    assert!(r.stdout.contains("\"isLearner\":true"), "{r:?}");
    let r = etcdctl35(&eps, &["member", "list"]);
    assert!(
        r.stdout.contains(&format!(
            "{lid:x}, started, m4, http://127.0.0.1:{port}, {}, true",
            m4.url()
        )),
        "{r:?}"
    );
    let r = etcdctl35(&eps, &["member", "promote", &format!("{lid:x}")]);
    assert!(
        r.stdout
            .contains(&format!("Member {lid:16x} promoted in cluster")),
        "{r:?}"
    );
    let r = etcdctl35(&eps, &["member", "list"]);
    assert!(
        r.stdout.contains(&format!(
            "{lid:x}, started, m4, http://127.0.0.1:{port}, {}, false",
            m4.url()
        )),
        "{r:?}"
    );
    assert_endpoints_converged(&format!("{eps},{}", m4.endpoint()), 4);
}

#[test]
fn force_new_cluster_recovers_a_single_survivor() {
    let mut c = Cluster::start(3, &[]);
    for i in 0..20 {
        let r = etcdctl35(&c.endpoints(), &["put", &format!("keep/{i}"), "v"]);
        assert_eq!(r.code, 0, "{r:?}");
    }
    // The whole cluster is lost but one member's data directory.
    for m in &mut c.members {
        m.kill9();
    }
    let survivor = &mut c.members[0];
    survivor.extra.push("--force-new-cluster".into());
    survivor.spawn();
    let ep = survivor.endpoint();
    let r = etcdctl35(&ep, &["member", "list"]);
    assert_eq!(r.stdout.lines().count(), 1, "{r:?}");
    assert!(r.stdout.contains(", m0, "), "{r:?}");
    let r = etcdctl35(&ep, &["get", "keep/", "--prefix", "--keys-only"]);
    assert_eq!(
        r.stdout.lines().filter(|l| !l.is_empty()).count(),
        20,
        "{r:?}"
    );
    let r = etcdctl35(&ep, &["put", "after", "recovery"]);
    assert_eq!(r.stdout, "OK\n", "{r:?}");
    // It stays a one-member cluster across a normal restart.
    survivor.extra.retain(|f| f != "--force-new-cluster");
    survivor.stop();
    survivor.spawn();
    let r = etcdctl35(
        &survivor.endpoint(),
        &["get", "after", "--print-value-only"],
    );
    assert_eq!(r.stdout, "recovery\n", "{r:?}");
}

#[test]
fn cairnctl_fails_over_to_live_endpoints() {
    let mut c = Cluster::start(3, &[]);
    let eps = c.endpoints();
    let r = cairn_tests::cairnctl(&eps, &["put", "k", "v"]);
    assert_eq!(r.stdout, "OK\n", "{r:?}");
    // Any one member down, leader or not: every command still succeeds.
    let leader = leader(&c.members);
    c.members[leader].kill9();
    put_until_ok(&c.members[(leader + 1) % 3].endpoint(), "k", "v2");
    for i in 0..10 {
        let r = cairn_tests::cairnctl(&eps, &["get", "k", "--print-value-only"]);
        assert_eq!(r.stdout, "v2\n", "get {i} through {eps}: {r:?}");
        let r = cairn_tests::cairnctl(&eps, &["put", &format!("n{i}"), "x"]);
        assert_eq!(r.stdout, "OK\n", "put {i} through {eps}: {r:?}");
    }
}

/// Guards against a peer stream that outlives its peer. Each member keeps one long-lived
/// raft stream to every peer, and a paused member closes no socket: only the silence of a
/// stream whose receiver answers every second tells. If they did not, strict reconfiguration would let a member join while a
/// voter is gone, and a member that came back would not count again until reconnected.
#[test]
fn a_paused_member_stops_counting_as_connected_and_counts_again_when_resumed() {
    let c = Cluster::start(3, &[]);
    let m0 = c.members[0].endpoint();
    // Every member counts its peers as connected once they answered for 5 s: then it takes
    // a new member (a learner, removed again).
    let (id, _) = member_add(&m0, "probe", free_port(), true);
    let r = etcdctl35(&m0, &["member", "remove", &format!("{id:x}")]);
    assert_eq!(r.code, 0, "{r:?}");
    let paused = c.members[2].ids().member;
    let url = format!("--peer-urls=http://127.0.0.1:{}", free_port());
    let from = c.members[0].log_len();
    c.members[2].signal("STOP");
    // After three seconds without an alive byte from m2, m0 drops it (and if m2 led, the
    // others elect a new leader).
    c.members[0].wait_peer_lost(from, paused);
    let refused = etcdctl35(&m0, &["member", "add", "new", &url]);
    c.members[2].signal("CONT");
    assert!(
        refused.stderr.contains("etcdserver: unhealthy cluster"),
        "{refused:?}"
    );
    // Reconnected, and answering for 5 s again: the member is added.
    let added = etcdctl35_membership(&m0, &["member", "add", "new", &url]);
    assert_eq!(added.code, 0, "{added:?}");
}

/// The raft stream's opening names the cluster, the sender and the addressee, and a member
/// refuses a stream meant for another cluster or member, says why, and goes on serving.
#[test]
fn a_raft_stream_for_another_cluster_or_member_is_refused() {
    use std::io::{Read, Write};
    let m = ServerProc::start(Kind::Cairn, &[]);
    let r = etcdctl35(&m.endpoint(), &["endpoint", "status", "-w", "json"]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let header = &v[0]["Status"]["header"];
    let (cluster, me) = (
        header["cluster_id"].as_u64().unwrap(),
        header["member_id"].as_u64().unwrap(),
    );
    let other = me.wrapping_add(1);
    let cases = [
        (
            cluster ^ 1,
            me,
            format!(
                "request cluster ID mismatch (got {:x} want {cluster:x})",
                cluster ^ 1
            ),
        ),
        (
            cluster,
            other,
            format!("request sent to member {other:x}, this is member {me:x}"),
        ),
    ];
    for (cluster_id, to, want) in cases {
        let mut tcp = std::net::TcpStream::connect(("127.0.0.1", m.peer_port)).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut hello = b"cairn-raft/1".to_vec();
        for word in [cluster_id, 7, to] {
            hello.extend_from_slice(&word.to_be_bytes());
        }
        tcp.write_all(&hello).unwrap();
        let mut answer = Vec::new();
        tcp.read_to_end(&mut answer).unwrap();
        assert_eq!(answer.first(), Some(&b'-'), "{answer:?}");
        let len = u32::from_be_bytes(answer[1..5].try_into().unwrap()) as usize;
        assert_eq!(String::from_utf8_lossy(&answer[5..]), want);
        assert_eq!(answer.len(), 5 + len);
    }
    m.wait_logged(0, Duration::from_secs(10), "a refused stream", |l| {
        l.contains("refused peer traffic")
    });
    assert_eq!(
        m.metric("cairn_server_peer_refused_total{path=\"stream\"}"),
        Some(2.0)
    );
    let put = etcdctl35(&m.endpoint(), &["put", "k", "v"]);
    assert_eq!(put.stdout, "OK\n", "{put:?}");
}
