//! The v3lock and v3election services against etcd 3.5.1: one scripted scenario (locks
//! taken in turn, a lock lost with its lease, an election with a waiting candidate, a
//! proclamation, an observer, a resignation, and every error the services give) runs on
//! both, and every response must be the same once the cluster id, member id and raft term
//! are taken out of the headers. Leases are granted with chosen ids, so keys agree.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use cairn_proto::etcdserverpb::{
    kv_client::KvClient, lease_client::LeaseClient, LeaseGrantRequest, LeaseRevokeRequest,
    RangeRequest,
};
use cairn_proto::v3electionpb::{
    election_client::ElectionClient, CampaignRequest, LeaderKey, LeaderRequest, ProclaimRequest,
    ResignRequest,
};
use cairn_proto::v3lockpb::{lock_client::LockClient, LockRequest, UnlockRequest};
use cairn_tests::{channel, strip_header, wait_until, wait_until_async, Kind, ServerProc};
use tonic::transport::Channel;

fn err(s: tonic::Status) -> String {
    format!("ERR {:?} {}", s.code(), s.message())
}

/// Formats a response with its header stripped, or the error.
macro_rules! shown {
    ($call:expr) => {
        match $call.await {
            Ok(r) => {
                let mut r = r.into_inner();
                strip_header(&mut r.header);
                format!("{r:?}")
            }
            Err(s) => err(s),
        }
    };
}

struct Clients {
    kv: KvClient<Channel>,
    lease: LeaseClient<Channel>,
    lock: LockClient<Channel>,
    election: ElectionClient<Channel>,
}

async fn clients(server: &ServerProc) -> Clients {
    let ch = channel(&server.url());
    Clients {
        kv: KvClient::new(ch.clone()),
        lease: LeaseClient::new(ch.clone()),
        lock: LockClient::new(ch.clone()),
        election: ElectionClient::new(ch),
    }
}

/// Whether `task` is still waiting a moment after its key made `n` under `prefix` (it must
/// be, while someone else holds what it asked for).
async fn still_waiting<T>(
    kv: &KvClient<Channel>,
    prefix: &[u8],
    n: i64,
    task: &tokio::task::JoinHandle<T>,
) -> bool {
    let what = format!("{n} keys under {:?}", String::from_utf8_lossy(prefix));
    let mut end = prefix.to_vec();
    *end.last_mut().unwrap() += 1;
    wait_until_async(Duration::from_secs(10), what, || {
        let mut kv = kv.clone();
        let req = RangeRequest {
            key: prefix.to_vec(),
            range_end: end.clone(),
            count_only: true,
            ..Default::default()
        };
        async move {
            match kv.range(req).await.map(|r| r.into_inner().count) {
                Ok(count) if count == n => Ok(()),
                other => Err(other),
            }
        }
    })
    .await;
    // A call that waits shows nothing: only the lack of an answer for a while tells.
    tokio::time::sleep(Duration::from_millis(500)).await;
    !task.is_finished()
}

/// The next `n` messages of an Observe stream.
async fn observed(
    stream: &mut tonic::Streaming<cairn_proto::v3electionpb::LeaderResponse>,
    n: usize,
) -> Vec<String> {
    let mut got = Vec::new();
    for _ in 0..n {
        let mut r = stream.message().await.unwrap().unwrap();
        strip_header(&mut r.header);
        got.push(format!("observed {r:?}"));
    }
    got
}

async fn scenario(server: &ServerProc) -> Vec<String> {
    let mut c = clients(server).await;
    let mut out = Vec::new();
    for id in [0x1000, 0x2000, 0x3000] {
        out.push(shown!(c
            .lease
            .lease_grant(LeaseGrantRequest { ttl: 60, id })));
    }

    // Locks: the first asker holds it; the second waits until it is released.
    let lock = |lease: i64| LockRequest {
        name: b"L".to_vec(),
        lease,
    };
    let first = c.lock.lock(lock(0x1000)).await.unwrap().into_inner();
    out.push(format!("{:?}", String::from_utf8_lossy(&first.key)));
    let mut waiter = c.lock.clone();
    let second = tokio::spawn(async move { shown!(waiter.lock(lock(0x2000))) });
    let waits = still_waiting(&c.kv, b"L/", 2, &second).await;
    out.push(format!("second waits: {waits}"));
    out.push(shown!(c.lock.unlock(UnlockRequest { key: first.key })));
    out.push(second.await.unwrap());
    // A third waits behind the second, and gets the lock when the second's lease goes.
    let mut waiter = c.lock.clone();
    let third = tokio::spawn(async move { shown!(waiter.lock(lock(0x3000))) });
    let waits = still_waiting(&c.kv, b"L/", 2, &third).await;
    out.push(format!("third waits: {waits}"));
    out.push(shown!(c
        .lease
        .lease_revoke(LeaseRevokeRequest { id: 0x2000 })));
    out.push(third.await.unwrap());
    out.push(shown!(c.kv.range(RangeRequest {
        key: b"L/".to_vec(),
        range_end: b"L0".to_vec(),
        keys_only: true,
        ..Default::default()
    })));
    // A lease that does not exist.
    out.push(shown!(c.lock.lock(LockRequest {
        name: b"M".to_vec(),
        lease: 0x9999,
    })));
    out.push(shown!(c.lock.unlock(UnlockRequest {
        key: b"M/none".to_vec()
    })));

    // Elections.
    out.push(shown!(c.election.leader(LeaderRequest {
        name: b"E".to_vec()
    })));
    let campaign = |lease: i64, value: &[u8]| CampaignRequest {
        name: b"E".to_vec(),
        lease,
        value: value.to_vec(),
    };
    let a = c
        .election
        .campaign(campaign(0x1000, b"a"))
        .await
        .unwrap()
        .into_inner();
    let mut a_shown = a.clone();
    strip_header(&mut a_shown.header);
    out.push(format!("{a_shown:?}"));
    let leader_a: LeaderKey = a.leader.unwrap();
    let mut observer = c
        .election
        .observe(LeaderRequest {
            name: b"E".to_vec(),
        })
        .await
        .unwrap()
        .into_inner();
    out.extend(observed(&mut observer, 1).await);
    let mut candidate = c.election.clone();
    let b = tokio::spawn(async move {
        let r = candidate.campaign(campaign(0x3000, b"b")).await;
        r.map(|r| r.into_inner())
    });
    let waits = still_waiting(&c.kv, b"E/", 2, &b).await;
    out.push(format!("b waits: {waits}"));
    out.push(shown!(c.election.proclaim(ProclaimRequest {
        leader: Some(leader_a.clone()),
        value: b"a2".to_vec(),
    })));
    out.push(shown!(c.election.leader(LeaderRequest {
        name: b"E".to_vec()
    })));
    out.push(shown!(c.election.proclaim(ProclaimRequest {
        leader: None,
        value: b"x".to_vec(),
    })));
    out.push(shown!(c.election.resign(ResignRequest {
        leader: Some(leader_a.clone()),
    })));
    let b = b.await.unwrap().unwrap();
    let mut b_shown = b.clone();
    strip_header(&mut b_shown.header);
    out.push(format!("{b_shown:?}"));
    // The observer saw the proclamation, the old leader's key go, and the new leader.
    out.extend(observed(&mut observer, 2).await);
    // The old leader can no longer proclaim; resigning again is harmless.
    out.push(shown!(c.election.proclaim(ProclaimRequest {
        leader: Some(leader_a.clone()),
        value: b"a3".to_vec(),
    })));
    out.push(shown!(c.election.resign(ResignRequest {
        leader: Some(leader_a),
    })));
    out.push(shown!(c.election.leader(LeaderRequest {
        name: b"E".to_vec()
    })));
    out
}

#[test]
fn lock_and_election_services_answer_as_etcd() {
    let etcd = ServerProc::start(Kind::Etcd35, &[]);
    let cairn = ServerProc::start(Kind::Cairn, &[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let want = rt.block_on(scenario(&etcd));
    let got = rt.block_on(scenario(&cairn));
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g, w, "step {i} differs");
    }
    assert_eq!(got.len(), want.len());
    // The scenario saw what it was built to see.
    assert!(
        want.contains(&"second waits: true".to_string()),
        "{want:#?}"
    );
    assert!(want.contains(&"b waits: true".to_string()), "{want:#?}");
}

/// A long-running etcdctl (lock, elect) whose stdout lines arrive on a channel.
struct Running {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Running {
    fn start(etcdctl: &str, endpoints: &str, args: &[&str]) -> Running {
        use std::io::BufRead;
        let mut child = std::process::Command::new(cairn_tests::tool(etcdctl))
            .arg(format!("--endpoints={endpoints}"))
            .args(args)
            .env_remove("ETCDCTL_API")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        Running { child, lines }
    }

    /// The next line, within 10 s.
    fn line(&self) -> String {
        self.lines
            .recv_timeout(Duration::from_secs(10))
            .expect("no line within 10 s")
    }

    /// Nothing printed for a while after its key made `n` under `prefix` on `endpoints`: it
    /// is waiting (a call that waits shows nothing but the lack of an answer).
    fn waits(&self, endpoints: &str, prefix: &str, n: usize) -> bool {
        cairn_tests::wait_keys(endpoints, prefix, n);
        self.lines.recv_timeout(Duration::from_millis(800)).is_err()
    }

    /// SIGINT, then its exit code (within 10 s).
    fn interrupt(mut self) -> i32 {
        let _ = std::process::Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let status = wait_until(Duration::from_secs(10), "etcdctl to exit on SIGINT", || {
            self.child.try_wait().unwrap().ok_or("running")
        });
        status.code().unwrap_or(-1)
    }
}

/// etcdctl's lock and elect (which run etcd's recipes client-side over KV, Lease and Watch)
/// against `endpoints`.
fn etcdctl_locks_and_elects(etcdctl: &str, endpoints: &str) {
    let first = Running::start(etcdctl, endpoints, &["lock", "L"]);
    let key = first.line();
    assert!(key.starts_with("L/"), "{etcdctl}: {key}");
    let second = Running::start(etcdctl, endpoints, &["lock", "L"]);
    assert!(
        second.waits(endpoints, "L/", 2),
        "{etcdctl}: the second lock did not wait"
    );
    assert_eq!(first.interrupt(), 0);
    let key2 = second.line();
    assert!(key2.starts_with("L/") && key2 != key, "{etcdctl}: {key2}");
    assert_eq!(second.interrupt(), 0);
    let with_command = cairn_tests::run_client(
        &cairn_tests::tool(etcdctl),
        endpoints,
        &[
            "lock",
            "L",
            "--",
            "sh",
            "-c",
            "echo $ETCD_LOCK_KEY $ETCD_LOCK_REV",
        ],
        None,
    );
    assert_eq!(with_command.code, 0, "{with_command:?}");
    assert!(with_command.stdout.starts_with("L/"), "{with_command:?}");

    let leader = Running::start(etcdctl, endpoints, &["elect", "E", "v1"]);
    let leader_key = leader.line();
    assert!(leader_key.starts_with("E/"), "{etcdctl}: {leader_key}");
    assert_eq!(leader.line(), "v1");
    let observer = Running::start(etcdctl, endpoints, &["elect", "-l", "E"]);
    assert_eq!(observer.line(), leader_key);
    assert_eq!(observer.line(), "v1");
    let candidate = Running::start(etcdctl, endpoints, &["elect", "E", "v2"]);
    assert!(
        candidate.waits(endpoints, "E/", 2),
        "{etcdctl}: the second candidate did not wait"
    );
    // The leader resigns on SIGINT; the candidate leads and the observer sees it.
    assert_eq!(leader.interrupt(), 0);
    let next_key = candidate.line();
    assert_eq!(candidate.line(), "v2");
    assert_eq!(observer.line(), next_key);
    assert_eq!(observer.line(), "v2");
    assert_eq!(candidate.interrupt(), 0);
    observer.interrupt();
}

#[test]
fn real_etcdctl_locks_and_elects_on_cairn_single_and_three_members() {
    let single = ServerProc::start(Kind::Cairn, &[]);
    let cluster = cairn_tests::Cluster::start(3, &[]);
    for etcdctl in ["etcdctl-3.5", "etcdctl-3.4"] {
        etcdctl_locks_and_elects(etcdctl, &single.endpoint());
        etcdctl_locks_and_elects(etcdctl, &cluster.endpoints());
    }
}

#[test]
fn the_etcd_client_crate_locks_and_campaigns_through_every_member() {
    let cluster = cairn_tests::Cluster::start(3, &[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // Each call through a different member: the services run the recipes on the member
        // the client reaches.
        let mut clients = Vec::new();
        for m in &cluster.members {
            clients.push(etcd_client::Client::connect([m.url()], None).await.unwrap());
        }
        let lease = clients[0].lease_grant(30, None).await.unwrap().id();
        let opts = etcd_client::LockOptions::new().with_lease(lease);
        let lock = clients[1].lock("crate-lock", Some(opts)).await.unwrap();
        let key = lock.key().to_vec();
        assert!(key.starts_with(b"crate-lock/"));
        let got = clients[2].get(key.clone(), None).await.unwrap();
        assert_eq!(got.kvs()[0].lease(), lease);
        clients[2].unlock(key.clone()).await.unwrap();
        assert!(clients[0].get(key, None).await.unwrap().kvs().is_empty());

        let c = clients[1]
            .campaign("crate-elect", "me", lease)
            .await
            .unwrap();
        let leader_key = c.leader().unwrap().clone();
        let seen = clients[2].leader("crate-elect").await.unwrap();
        assert_eq!(seen.kv().unwrap().value(), b"me");
        let opts = etcd_client::ResignOptions::new().with_leader(leader_key);
        clients[0].resign(Some(opts)).await.unwrap();
        let err = clients[2].leader("crate-elect").await.unwrap_err();
        assert!(err.to_string().contains("election: no leader"), "{err}");
    });
}
