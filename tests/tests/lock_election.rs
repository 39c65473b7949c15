//! The v3lock and v3election services against etcd 3.5.1: one scripted scenario (locks
//! taken in turn, a lock lost with its lease, an election with a waiting candidate, a
//! proclamation, an observer, a resignation, and every error the services give) runs on
//! both, and every response must be the same once the cluster id, member id and raft term
//! are taken out of the headers. Leases are granted with chosen ids, so keys agree.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use cairn_proto::etcdserverpb::{
    kv_client::KvClient, lease_client::LeaseClient, LeaseGrantRequest, LeaseRevokeRequest,
    RangeRequest, ResponseHeader,
};
use cairn_proto::v3electionpb::{
    election_client::ElectionClient, CampaignRequest, LeaderKey, LeaderRequest, ProclaimRequest,
    ResignRequest,
};
use cairn_proto::v3lockpb::{lock_client::LockClient, LockRequest, UnlockRequest};
use cairn_tests::{Kind, ServerProc};
use tonic::transport::Channel;

fn strip(h: &mut Option<ResponseHeader>) {
    if let Some(h) = h.as_mut() {
        h.cluster_id = 0;
        h.member_id = 0;
        h.raft_term = 0;
    }
}

fn err(s: tonic::Status) -> String {
    format!("ERR {:?} {}", s.code(), s.message())
}

/// Formats a response with its header stripped, or the error.
macro_rules! shown {
    ($call:expr) => {
        match $call.await {
            Ok(r) => {
                let mut r = r.into_inner();
                strip(&mut r.header);
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
    let ch = Channel::from_shared(server.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    Clients {
        kv: KvClient::new(ch.clone()),
        lease: LeaseClient::new(ch.clone()),
        lock: LockClient::new(ch.clone()),
        election: ElectionClient::new(ch),
    }
}

/// Whether `task` is still waiting after a moment (it must be, while someone else holds
/// what it asked for).
async fn still_waiting<T>(task: &tokio::task::JoinHandle<T>) -> bool {
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
        strip(&mut r.header);
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
    out.push(format!("second waits: {}", still_waiting(&second).await));
    out.push(shown!(c.lock.unlock(UnlockRequest { key: first.key })));
    out.push(second.await.unwrap());
    // A third waits behind the second, and gets the lock when the second's lease goes.
    let mut waiter = c.lock.clone();
    let third = tokio::spawn(async move { shown!(waiter.lock(lock(0x3000))) });
    out.push(format!("third waits: {}", still_waiting(&third).await));
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
    strip(&mut a_shown.header);
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
    out.push(format!("b waits: {}", still_waiting(&b).await));
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
    strip(&mut b_shown.header);
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
