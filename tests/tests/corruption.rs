//! The data corruption checks as an operator meets them, with real processes: one member's
//! backend is changed in place while it is stopped (a value rewritten with no new revision,
//! as a bad disk or a bug could leave it, through `cairn_mvcc::overwrite_value_in_place`),
//! and the checks must find it:
//!
//! - `--experimental-initial-corrupt-check`: the member refuses to start, with etcd's
//!   message, and exits non-zero.
//! - `--experimental-corrupt-check-time`: the leader raises the CORRUPT alarm for it.
//! - `--experimental-compact-hash-check-enabled`: after a compaction, the leader finds the
//!   member's compaction hash differs and raises the CORRUPT alarm.
//!
//! And the alarm does to cairn what it does to etcd 3.5.1 (compared side by side): writes
//! fail with "etcdserver: corrupt cluster", reads are served, `alarm disarm` clears it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use cairn_proto::cairnpb::{raft_peer_client::RaftPeerClient, PeerHashRequest};
use cairn_proto::etcdserverpb::{
    alarm_request::AlarmAction, kv_client::KvClient, maintenance_client::MaintenanceClient,
    AlarmRequest, AlarmType, CompactionRequest, PutRequest,
};
use cairn_tests::{
    block_on, channel, etcdctl35, leader, run_client, status, tool, wait_until, Cluster, Kind,
    ServerProc,
};

const CORRUPT: &str = "etcdserver: corrupt cluster";

/// A follower of `c` (not the leader), once it has applied everything the leader has.
fn caught_up_follower(c: &Cluster) -> usize {
    let l = leader(&c.members);
    let f = (l + 1) % c.members.len();
    let (leader_url, follower_url) = (c.members[l].url(), c.members[f].url());
    wait_until(Duration::from_secs(10), "the follower to catch up", || {
        let rev = |url: &str| {
            block_on(status(url))
                .and_then(|s| s.header)
                .map(|h| h.revision)
        };
        let (lr, fr) = (rev(&leader_url), rev(&follower_url));
        if lr.is_some() && lr == fr {
            Ok(())
        } else {
            Err((lr, fr))
        }
    });
    f
}

/// Stops member `f`, having made all it applied durable first (defragmenting commits it),
/// and rewrites `key`'s value in its backend.
fn stop_and_corrupt(c: &mut Cluster, f: usize, key: &str) {
    let r = etcdctl35(&c.members[f].endpoint(), &["defrag"]);
    assert_eq!(r.code, 0, "{r:?}");
    c.members[f].stop();
    let backend = c.members[f].data_dir().join("backend.redb");
    let found = cairn_mvcc::overwrite_value_in_place(&backend, key.as_bytes(), b"rotten").unwrap();
    assert!(found, "{key} is not in {}", backend.display());
}

/// Waits until `alarm list` on `endpoints` prints exactly `want`.
fn wait_alarm_list(endpoints: &str, want: &str) {
    wait_until(
        Duration::from_secs(20),
        format!("alarm list {want:?}"),
        || {
            let r = etcdctl35(endpoints, &["alarm", "list"]);
            if r.stdout == want && r.code == 0 {
                Ok(())
            } else {
                Err(r)
            }
        },
    );
}

#[test]
fn a_member_corrupted_while_stopped_refuses_to_start_and_the_leader_raises_corrupt() {
    let mut c = Cluster::start(3, &["--experimental-corrupt-check-time=1s"]);
    let eps = c.endpoints();
    for i in 0..5 {
        let r = etcdctl35(&eps, &["put", &format!("k{i}"), &format!("v{i}")]);
        assert_eq!(r.code, 0, "{r:?}");
    }
    let f = caught_up_follower(&c);
    // Healthy members pass the leader's checks: it logs them, and raises nothing.
    let l = leader(&c.members);
    c.members[l].wait_logged(0, Duration::from_secs(10), "a corruption check", |l| {
        l.contains("finished peer corruption check") && l.contains("\"number-of-peers-checked\":2")
    });
    assert_eq!(etcdctl35(&eps, &["alarm", "list"]).stdout, "");

    // A healthy member that restarts behind its peers passes the initial check.
    c.members[f].stop();
    let others: Vec<String> = (0..3)
        .filter(|&i| i != f)
        .map(|i| c.members[i].endpoint())
        .collect();
    let r = etcdctl35(&others.join(","), &["put", "while-down", "x"]);
    assert_eq!(r.code, 0, "{r:?}");
    c.members[f]
        .extra
        .push("--experimental-initial-corrupt-check".into());
    let from = c.members[f].log_len();
    c.members[f].spawn();
    c.members[f].wait_logged(from, Duration::from_secs(5), "the passed check", |l| {
        l.contains("initial corruption checking passed; no corruption")
    });
    let f = caught_up_follower(&c);
    let f_id = c.members[f].ids().member;

    stop_and_corrupt(&mut c, f, "k1");

    // With the initial check, the member compares its hash with its peers' and refuses.
    let m = &mut c.members[f];
    if !m
        .extra
        .iter()
        .any(|a| a == "--experimental-initial-corrupt-check")
    {
        m.extra.push("--experimental-initial-corrupt-check".into());
    }
    let from = m.log_len();
    let _ready = m.spawn_nowait();
    let code = m.wait_exit(Duration::from_secs(30));
    assert_eq!(code, 1, "{}", m.log_text());
    m.wait_logged(from, Duration::from_secs(5), "the refusal", |l| {
        l.contains(&format!("{f_id:x} found data inconsistency with peers"))
    });
    m.wait_logged(from, Duration::from_secs(5), "the mismatch", |l| {
        l.contains("found different hash values from remote peer")
    });
    let after = m.log.lock().unwrap()[from..].to_vec();
    assert!(
        !after
            .iter()
            .any(|l| l.contains("ready to serve client requests")),
        "{after:?}"
    );

    // Without it, the member starts, and the leader's periodic check raises CORRUPT for it.
    m.extra
        .retain(|a| a != "--experimental-initial-corrupt-check");
    m.spawn();
    wait_alarm_list(&eps, &format!("memberID:{f_id} alarm:CORRUPT \n"));
    let l = leader(&c.members);
    c.members[l].wait_logged(0, Duration::from_secs(5), "the mismatch", |l| {
        l.contains("same compact revision then hashes must match")
            && l.contains(&format!("\"follower-peer-id\":\"{f_id:x}\""))
    });

    // Writes fail on every member with etcd's error; reads are served.
    for m in &c.members {
        let r = etcdctl35(&m.endpoint(), &["put", "after", "x"]);
        assert_eq!(r.code, 1, "{r:?}");
        assert!(r.stderr.contains(&format!("Error: {CORRUPT}")), "{r:?}");
    }
    let r = etcdctl35(
        &c.members[l].endpoint(),
        &["get", "k1", "--print-value-only"],
    );
    assert_eq!(r.stdout, "v1\n", "{r:?}");
    let health = etcdctl35(&eps, &["endpoint", "health"]);
    assert_ne!(health.code, 0, "{health:?}");

    // Disarming does not hide damage that is still there: the next check raises it again.
    let from = c.members[l].log_len();
    let r = etcdctl35(&eps, &["alarm", "disarm"]);
    assert_eq!(
        r.stdout,
        format!("memberID:{f_id} alarm:CORRUPT \n"),
        "{r:?}"
    );
    c.members[l].wait_logged(
        from,
        Duration::from_secs(10),
        "the alarm raised again",
        |l| l.contains("\"alarm raised\"") && l.contains("\"alarm\":\"CORRUPT\""),
    );
    wait_alarm_list(&eps, &format!("memberID:{f_id} alarm:CORRUPT \n"));
}

#[test]
fn the_compaction_hash_check_finds_a_member_that_compacted_other_data() {
    let mut c = Cluster::start(
        3,
        &[
            "--experimental-compact-hash-check-enabled",
            "--experimental-compact-hash-check-time=1s",
        ],
    );
    let eps = c.endpoints();
    for i in 0..5 {
        let r = etcdctl35(&eps, &["put", &format!("k{i}"), &format!("v{i}")]);
        assert_eq!(r.code, 0, "{r:?}");
    }
    // A compaction on healthy members: every follower's hash agrees with the leader's.
    let r = etcdctl35(&eps, &["compaction", "3"]);
    assert_eq!(r.code, 0, "{r:?}");
    let l = leader(&c.members);
    c.members[l].wait_logged(0, Duration::from_secs(10), "a passed check", |l| {
        l.contains("successfully checked hash on whole cluster") && l.contains("\"revision\":3")
    });
    assert_eq!(etcdctl35(&eps, &["alarm", "list"]).stdout, "");

    let f = caught_up_follower(&c);
    let f_id = c.members[f].ids().member;
    stop_and_corrupt(&mut c, f, "k4");
    c.members[f].spawn();
    // The member serves as before: only a compaction's hash shows the damage.
    let r = etcdctl35(&eps, &["put", "k5", "v5"]);
    assert_eq!(r.code, 0, "{r:?}");
    caught_up_follower(&c);
    let r = etcdctl35(&eps, &["compaction", "7"]);
    assert_eq!(r.code, 0, "{r:?}");
    wait_alarm_list(&eps, &format!("memberID:{f_id} alarm:CORRUPT \n"));
    let l = leader(&c.members);
    c.members[l].wait_logged(0, Duration::from_secs(5), "the failed check", |l| {
        l.contains("failed compaction hash check")
            && l.contains(&format!("\"follower-peer-id\":\"{f_id:x}\""))
    });
    let r = etcdctl35(&eps, &["put", "after", "x"]);
    assert!(r.stderr.contains(&format!("Error: {CORRUPT}")), "{r:?}");
}

/// Raises CORRUPT for the member at `url` through the Maintenance API, as the leader's check
/// would, and returns the member's id.
fn raise_corrupt(url: &str) -> u64 {
    block_on(async {
        let id = status(url).await.unwrap().header.unwrap().member_id;
        let mut mc = MaintenanceClient::new(channel(url));
        mc.alarm(AlarmRequest {
            action: AlarmAction::Activate as i32,
            member_id: id,
            alarm: AlarmType::Corrupt as i32,
        })
        .await
        .unwrap();
        id
    })
}

/// Runs etcdctl 3.5 and returns what an operator reads: its output and exit code, with the
/// client library's retry warnings (JSON lines with timestamps) left out and the member id
/// named.
fn operator_sees(endpoint: &str, id: u64, args: &[&str], stdin: Option<&str>) -> String {
    let r = run_client(&tool("etcdctl-3.5"), endpoint, args, stdin);
    let stderr: Vec<&str> = r.stderr.lines().filter(|l| !l.starts_with('{')).collect();
    let stdout = r
        .stdout
        .lines()
        .map(|l| match l.split(", ").collect::<Vec<_>>().as_slice() {
            // `endpoint status`'s line: only the alarm column is compared.
            [_, _, _, _, _, _, _, _, _, errors] => errors.to_string(),
            _ => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    format!("{args:?} -> {}\n{stdout}\n{}", r.code, stderr.join("\n"))
        .replace(&id.to_string(), "ID")
        .replace(&format!("{id:x}"), "ID")
        .replace(endpoint, "ENDPOINT")
}

#[test]
fn the_corrupt_alarm_does_what_it_does_in_etcd() {
    let script: &[(&[&str], Option<&str>)] = &[
        (&["alarm", "list"], None),
        (&["put", "b", "2"], None),
        (&["get", "a"], None),
        (&["get", "a", "--consistency=s"], None),
        (&["del", "a"], None),
        (&["txn"], Some("\n\nput x y\n\n")),
        (&["txn"], Some("\n\nget a\n\n")),
        (&["compaction", "1"], None),
        (&["lease", "grant", "10"], None),
        (&["endpoint", "status"], None),
        (&["endpoint", "health"], None),
        (&["alarm", "disarm"], None),
        (&["alarm", "list"], None),
        (&["put", "b", "2"], None),
    ];
    let mut seen = Vec::new();
    for kind in [Kind::Etcd35, Kind::Cairn] {
        let server = ServerProc::start(kind, &[]);
        let ep = server.endpoint();
        assert_eq!(etcdctl35(&ep, &["put", "a", "1"]).code, 0);
        let id = raise_corrupt(&server.url());
        let out: Vec<String> = script
            .iter()
            .map(|(args, stdin)| operator_sees(&ep, id, args, *stdin))
            .collect();
        seen.push(out);
    }
    for (etcd, cairn) in seen[0].iter().zip(&seen[1]) {
        assert_eq!(cairn, etcd);
    }
}

#[test]
fn a_members_hash_is_only_told_to_the_other_members() {
    // The peer port answers anyone who connects; a hash tells what the store holds, so
    // only a current member of the same cluster gets it.
    let m = ServerProc::start(Kind::Cairn, &[]);
    let ids = m.ids();
    let codes = block_on(async {
        let mut client = RaftPeerClient::new(channel(&m.peer_url()));
        let mut codes = Vec::new();
        for (cluster_id, from, to) in [
            (ids.cluster, 0x1234, ids.member),
            (ids.cluster, ids.member, ids.member),
            (ids.cluster + 1, ids.member, ids.member),
            (ids.cluster, 0x1234, ids.member + 1),
        ] {
            let req = PeerHashRequest {
                cluster_id,
                from,
                to,
                revision: 0,
            };
            codes.push(client.hash_kv(req).await.unwrap_err().code());
        }
        codes
    });
    use tonic::Code;
    assert_eq!(
        codes,
        [
            Code::PermissionDenied,
            Code::PermissionDenied,
            Code::FailedPrecondition,
            Code::FailedPrecondition
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_members_under_writes_and_compactions_raise_no_alarm() {
    // A false CORRUPT alarm stops a cluster's writes: the checks must tell members that
    // are merely behind, ahead or compacting from members that hold other data.
    let c = Cluster::start(
        3,
        &[
            "--experimental-corrupt-check-time=1s",
            "--experimental-compact-hash-check-enabled",
            "--experimental-compact-hash-check-time=1s",
        ],
    );
    let l = leader(&c.members);
    let from = c.members[l].log_len();
    let mut kvs: Vec<_> = c
        .members
        .iter()
        .map(|m| KvClient::new(channel(&m.url())))
        .collect();
    // Checks the leader made since the load began: periodic ones that reached both
    // followers, and compaction checks every follower passed.
    let checks_seen = || {
        let log = c.members[l].log.lock().unwrap();
        let since = log.get(from..).unwrap_or_default();
        let periodic = since
            .iter()
            .filter(|l| {
                l.contains("finished peer corruption check")
                    && l.contains("\"number-of-peers-checked\":2")
            })
            .count();
        let compacted = since
            .iter()
            .filter(|l| l.contains("successfully checked hash on whole cluster"))
            .count();
        (periodic, compacted)
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = (0, 0);
    for i in 0..20_000 {
        let kv = &mut kvs[i % 3];
        let put = PutRequest {
            key: format!("k{}", i % 50).into_bytes(),
            value: i.to_string().into_bytes(),
            ..Default::default()
        };
        let rev = kv
            .put(put)
            .await
            .unwrap()
            .into_inner()
            .header
            .unwrap()
            .revision;
        if i % 200 == 199 {
            let compact = CompactionRequest {
                revision: rev - 20,
                physical: false,
            };
            kv.compact(compact).await.unwrap();
        }
        if i % 50 == 0 {
            seen = checks_seen();
            if seen.0 >= 2 && seen.1 >= 1 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "checks seen (periodic, compaction): {seen:?}"
            );
        }
    }
    assert!(seen.0 >= 2 && seen.1 >= 1, "{seen:?}");
    let mut mc = MaintenanceClient::new(channel(&c.members[l].url()));
    let alarms = mc
        .alarm(AlarmRequest {
            action: AlarmAction::Get as i32,
            member_id: 0,
            alarm: AlarmType::None as i32,
        })
        .await
        .unwrap()
        .into_inner()
        .alarms;
    assert!(alarms.is_empty(), "{alarms:?}\n{}", c.members[l].log_text());
}
