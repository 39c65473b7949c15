//! Multi-member scenarios on the in-process cluster: apply, propose, linearizable reads,
//! membership changes under strict reconfiguration, and leases across a leader change.
//! Each runs in well under a second: no sockets, no processes, Raft on ticks.

use std::time::Duration;

use cairn_proto::cairnpb::internal_request::Request;
use cairn_proto::cairnpb::LeaseRecord;
use cairn_proto::etcdserverpb::{LeaseGrantRequest, LeaseTimeToLiveRequest, PutRequest};
use cairn_proto::EtcdError;
use prost::Message;

use super::{TestCluster, MAX_WAIT};
use crate::proposal::ApplyResult;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_through_any_member_apply_everywhere_in_the_same_order() {
    let c = TestCluster::start(3).await;
    let mut revisions = Vec::new();
    for round in 0..3 {
        for i in c.running() {
            revisions.push(
                c.put(i, &format!("k{round}-{i}"), &format!("v{round}"))
                    .await,
            );
        }
    }
    // One revision per put, in the order they were acknowledged.
    assert!(
        revisions.windows(2).all(|w| w[0] + 1 == w[1]),
        "{revisions:?}"
    );
    let last = *revisions.last().unwrap_or(&0);
    for i in c.running() {
        assert_eq!(c.get(i, "k2-1").await.as_deref(), Some("v2"), "m{i}");
        assert_eq!(c.server(i).store().current_revision(), last, "m{i}");
    }
    c.assert_same_data();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_linearizable_read_waits_for_writes_its_member_has_not_seen() {
    let c = TestCluster::start(3).await;
    let leader = c.leader();
    let cut = c.follower();
    let other = c
        .running()
        .into_iter()
        .find(|&i| i != leader && i != cut)
        .unwrap_or_else(|| unreachable!());
    c.net.partition(&[
        &[c.members[leader].id, c.members[other].id],
        &[c.members[cut].id],
    ]);
    c.put(leader, "k", "new").await;
    // The cut-off member has not seen the write: a serializable read misses it...
    assert_eq!(c.get_local(cut, "k"), None);
    // ...and a linearizable read there waits rather than answer without it.
    let server = c.server(cut).clone();
    let read = tokio::spawn(async move { server.linearizable_read().await });
    c.advance(3);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        !read.is_finished(),
        "a read answered without reaching the leader"
    );
    c.heal();
    c.tick_until("the read is answered", || read.is_finished());
    let answered = tokio::time::timeout(MAX_WAIT, read).await;
    assert!(matches!(answered, Ok(Ok(Ok(())))), "{answered:?}");
    assert_eq!(c.get_local(cut, "k").as_deref(), Some("new"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learner_joins_by_snapshot_is_promoted_and_a_voter_removed() {
    let mut c = TestCluster::start(3).await;
    for n in 0..20 {
        c.put(c.leader(), &format!("before-{n}"), "x").await;
    }
    let leader = c.leader();
    let url = super::peer_url(3);
    let (added, members) = c
        .server(leader)
        .add_member(vec![url.clone()], true)
        .await
        .unwrap_or_else(|e| panic!("add learner: {e}"));
    assert!(added.is_learner && members.len() == 4, "{members:?}");
    // A second learner is refused while one is there, as etcd allows one.
    let second = c
        .server(leader)
        .add_member(vec![super::peer_url(4)], true)
        .await;
    assert_eq!(second.err(), Some(EtcdError::TooManyLearners));

    let new = c.join(3).await;
    assert_eq!(c.members[new].id, added.id);
    assert!(c.server(new).is_learner());
    assert_eq!(c.get_local(new, "before-19").as_deref(), Some("x"));

    let members = c
        .server(c.leader())
        .promote_member(added.id)
        .await
        .unwrap_or_else(|e| panic!("promote: {e}"));
    assert!(members.iter().all(|m| !m.is_learner), "{members:?}");
    c.put(new, "through-new", "y").await;

    let leader = c.leader();
    let gone = c.follower();
    let gone_id = c.members[gone].id;
    let members = c
        .server(leader)
        .remove_member(gone_id)
        .await
        .unwrap_or_else(|e| panic!("remove: {e}"));
    assert!(!members.iter().any(|m| m.id == gone_id), "{members:?}");
    c.stop(gone);
    c.put(new, "after-removal", "z").await;
    for i in c.running() {
        let ids: Vec<u64> = c.server(i).member_list().iter().map(|m| m.id).collect();
        assert_eq!(ids.len(), 3, "m{i}: {ids:?}");
        assert_eq!(c.get(i, "after-removal").await.as_deref(), Some("z"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_reconfiguration_refuses_changes_that_risk_the_quorum() {
    let c = TestCluster::start(3).await;
    let leader = c.leader();
    let down = c.follower();
    let up = c
        .running()
        .into_iter()
        .find(|&i| i != leader && i != down)
        .unwrap_or_else(|| unreachable!());
    c.isolate(down);
    let s = c.server(leader);
    // Adding a voter while one is unreachable: refused.
    let add = s.add_member(vec![super::peer_url(7)], false).await;
    assert_eq!(add.err(), Some(EtcdError::Unhealthy));
    // Removing a reachable voter would leave one of two reachable: refused.
    let remove_up = s.remove_member(c.members[up].id).await;
    assert_eq!(remove_up.err(), Some(EtcdError::Unhealthy));
    // The unreachable one may go.
    let members = s
        .remove_member(c.members[down].id)
        .await
        .unwrap_or_else(|e| panic!("remove the unreachable member: {e}"));
    assert_eq!(members.len(), 2);

    // Without the check, etcd's operator may do as they please.
    let lax = TestCluster::start_with(3, &["--strict-reconfig-check=false"]).await;
    let (l, f) = (lax.leader(), lax.follower());
    lax.isolate(f);
    let added = lax
        .server(l)
        .add_member(vec![super::peer_url(8)], false)
        .await;
    assert!(added.is_ok(), "{added:?}");
}

/// Grants lease `id` for `ttl` seconds through member `i`.
async fn grant(c: &TestCluster, i: usize, id: i64, ttl: i64) {
    let req = Request::LeaseGrant(LeaseGrantRequest { ttl, id });
    match tokio::time::timeout(MAX_WAIT, c.server(i).propose(req)).await {
        Ok(Ok(ApplyResult::LeaseGrant(r))) => assert_eq!(r.id, id),
        other => panic!("grant: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_lease_is_revoked_with_its_keys_on_every_member() {
    let c = TestCluster::start(3).await;
    let leader = c.leader();
    grant(&c, leader, 7, 10).await;
    let put = Request::Put(PutRequest {
        key: b"leased".to_vec(),
        value: b"v".to_vec(),
        lease: 7,
        ..Default::default()
    });
    assert!(c.server(c.follower()).propose(put).await.is_ok());
    // Not yet: the clock has not passed the TTL.
    c.advance_lease_clock(Duration::from_secs(5));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(c.get_local(leader, "leased").as_deref(), Some("v"));

    c.advance_lease_clock(Duration::from_secs(10));
    let deadline = tokio::time::Instant::now() + MAX_WAIT;
    while c
        .running()
        .iter()
        .any(|&i| c.get_local(i, "leased").is_some())
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the lease never expired"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for i in c.running() {
        assert!(!c.server(i).leases().leases().lessor.exists(7), "m{i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpointed_lease_keeps_its_remaining_ttl_across_a_leader_change() {
    let c = TestCluster::start_with(
        3,
        &[
            "--experimental-enable-lease-checkpoint=true",
            "--experimental-lease-checkpoint-interval=1s",
        ],
    )
    .await;
    let leader = c.leader();
    grant(&c, leader, 9, 60).await;
    // 30 s pass on the leader, which checkpoints the remaining TTL through Raft.
    c.advance_lease_clock(Duration::from_secs(30));
    let follower = c.follower();
    let deadline = tokio::time::Instant::now() + MAX_WAIT;
    loop {
        // The follower's record of the lease, as the checkpoint left it.
        let records = c.server(follower).store().leases().unwrap_or_default();
        let remaining = records
            .iter()
            .filter_map(|(_, r)| LeaseRecord::decode(r.as_slice()).ok())
            .find(|r| r.id == 9)
            .map(|r| r.remaining_ttl);
        if remaining.is_some_and(|r| r > 0 && r <= 31) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no checkpoint reached m{follower}: {remaining:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let target = c.members[follower].id;
    let moved = c.server(leader).move_leader(target).await;
    assert!(moved.is_ok(), "{moved:?}");
    let new = c.server(follower);
    let deadline = tokio::time::Instant::now() + MAX_WAIT;
    while !new.leases().leases().lessor.is_primary() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new leader never promoted"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let ttl = new
        .leases()
        .time_to_live(LeaseTimeToLiveRequest { id: 9, keys: false })
        .await
        .unwrap_or_else(|e| panic!("time to live: {e}"));
    // The checkpointed 30 s plus the promotion's one election timeout; without the
    // checkpoint the new leader would start the lease over at 60 s.
    assert!((29..=32).contains(&ttl.ttl), "remaining TTL {}", ttl.ttl);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_committed_entry_is_skipped_by_every_member() {
    // Before: every member failed on such an entry, and again at every restart, since it
    // is in their logs (a forged proposal on the peer port crash-looped the cluster).
    let c = TestCluster::start(3).await;
    let (leader, follower) = (c.leader(), c.follower());
    for i in [follower, leader] {
        c.server(i)
            .raft()
            .propose(vec![0xff, 0xff, 0xff])
            .unwrap_or_else(|e| panic!("{e}"));
    }
    c.put(follower, "after", "v").await;
    for i in c.running() {
        assert_eq!(c.get(i, "after").await.as_deref(), Some("v"), "m{i}");
        assert_eq!(c.server(i).metrics().undecodable_entries.get(), 2, "m{i}");
        assert!(c.server(i).has_leader(), "m{i}");
    }
    c.assert_same_data();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_expire_on_time_never_early_and_are_counted() {
    // The leader's clock alone decides: a lease is there until its TTL (plus nothing) has
    // passed on it, and gone soon after, with its key; both expiries count as revokes and
    // as expiries in etcd's metrics.
    let c = TestCluster::start(1).await;
    let s = c.server(0);
    for (id, ttl, key) in [(2, 2, "two"), (3, 3, "three")] {
        grant(&c, 0, id, ttl).await;
        let put = Request::Put(PutRequest {
            key: key.as_bytes().to_vec(),
            value: b"v".to_vec(),
            lease: id,
            ..Default::default()
        });
        assert!(s.propose(put).await.is_ok());
        // Just short of the TTL, through several turns of the leader's loop: still there.
        c.advance_lease_clock(Duration::from_secs(ttl as u64) - Duration::from_millis(50));
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(
            c.get_local(0, key).as_deref(),
            Some("v"),
            "{key} expired early"
        );
        c.advance_lease_clock(Duration::from_millis(100));
        let deadline = tokio::time::Instant::now() + MAX_WAIT;
        while c.get_local(0, key).is_some() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{key} never expired"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    // The expiry counts once the revoke's proposer has its answer, just after the key went.
    let m = &s.metrics().lease;
    let deadline = tokio::time::Instant::now() + MAX_WAIT;
    while m.expired.get() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "expiries not counted"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        (m.granted.get(), m.revoked.get(), m.expired.get()),
        (2, 2, 2)
    );
    assert!(s.leases().leases().lessor.leases().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_and_mutated_entries_are_applied_or_skipped_alike_by_every_member() {
    // Property test of the committed-entry decoder, seeded and bounded in count: the payload
    // of every committed entry is what a peer proposed, so random bytes and valid requests
    // with bytes flipped, cut or inserted are proposed raw, through a follower and the
    // leader. Every member applies or skips each alike: none stops, and their data agree.
    use cairn_proto::cairnpb::InternalRequest;
    use cairn_proto::etcdserverpb::{
        request_op, CompactionRequest, DeleteRangeRequest, LeaseRevokeRequest, RequestOp,
        TxnRequest,
    };
    use rand::{Rng, RngCore, SeedableRng};
    let c = TestCluster::start(3).await;
    let (leader, follower) = (c.leader(), c.follower());
    let mut rng = rand::rngs::StdRng::seed_from_u64(0xe7_7e1e);
    let before = c.server(leader).raft_status().commit_index;
    const ROUNDS: u64 = 400;
    let key = |rng: &mut rand::rngs::StdRng| format!("k{}", rng.random_range(0..20)).into_bytes();
    for round in 0..ROUNDS {
        let put = |rng: &mut rand::rngs::StdRng| PutRequest {
            key: key(rng),
            value: vec![rng.random(); rng.random_range(0..40)],
            ..Default::default()
        };
        let request = match rng.random_range(0..6) {
            0 => Request::Put(put(&mut rng)),
            1 => Request::DeleteRange(DeleteRangeRequest {
                key: key(&mut rng),
                range_end: key(&mut rng),
                ..Default::default()
            }),
            2 => Request::Txn(TxnRequest {
                success: vec![RequestOp {
                    request: Some(request_op::Request::RequestPut(put(&mut rng))),
                }],
                ..Default::default()
            }),
            3 => Request::Compaction(CompactionRequest {
                revision: rng.random_range(0..50),
                ..Default::default()
            }),
            4 => Request::LeaseGrant(LeaseGrantRequest {
                id: rng.random_range(1..1000),
                ttl: rng.random_range(1..1000),
            }),
            _ => Request::LeaseRevoke(LeaseRevokeRequest {
                id: rng.random_range(1..1000),
            }),
        };
        let mut data = InternalRequest {
            id: 0,
            request: Some(request),
            auth: None,
        }
        .encode_to_vec();
        match round % 3 {
            0 => {}
            1 => {
                for _ in 0..rng.random_range(1..6) {
                    let at = rng.random_range(0..data.len().max(1));
                    match rng.random_range(0..3) {
                        0 if at < data.len() => data[at] ^= 1 << rng.random_range(0..8),
                        1 => data.truncate(at),
                        _ => data.insert(at.min(data.len()), rng.random()),
                    }
                }
            }
            _ => {
                data = vec![0u8; rng.random_range(1..200)];
                rng.fill_bytes(&mut data);
            }
        }
        let through = if round % 2 == 0 { leader } else { follower };
        c.server(through)
            .raft()
            .propose(data)
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
    }
    // Each proposal is one entry of its own.
    c.tick_until("every member applies every entry", || {
        c.running()
            .into_iter()
            .all(|i| c.server(i).applied_index() >= before + ROUNDS)
    });
    for i in c.running() {
        assert!(!c.server(i).raft().is_stopped(), "m{i} stopped");
        assert!(c.server(i).has_leader(), "m{i}");
    }
    let skipped = c.server(leader).metrics().undecodable_entries.get();
    assert!(skipped > 50, "only {skipped} undecodable entries");
    for i in c.running() {
        assert_eq!(
            c.server(i).metrics().undecodable_entries.get(),
            skipped,
            "m{i}"
        );
    }
    c.assert_same_data();
}

/// Auth changes are applied by every member, and reach one that joins by snapshot; a write
/// checked before a permission was revoked is refused when applied, on every member alike
/// (etcd's auth applier: "auth: revision in header is old").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_changes_apply_everywhere_and_a_revocation_beats_a_stale_check() {
    use cairn_auth::AuthInfo;
    use cairn_proto::authpb::{permission::Type, Permission};
    use cairn_proto::etcdserverpb::{
        AuthEnableRequest, AuthRoleAddRequest, AuthRoleGrantPermissionRequest,
        AuthRoleRevokePermissionRequest, AuthUserAddRequest, AuthUserGrantRoleRequest,
    };

    let mut c = TestCluster::start(3).await;
    let s = c.server(c.leader()).clone();
    let user = |name: &str| {
        Request::UserAdd(AuthUserAddRequest {
            name: name.into(),
            hashed_password: "not a real hash".into(),
            ..Default::default()
        })
    };
    let grant = |u: &str, r: &str| {
        Request::UserGrantRole(AuthUserGrantRoleRequest {
            user: u.into(),
            role: r.into(),
        })
    };
    for req in [
        user("root"),
        grant("root", "root"),
        user("alice"),
        Request::RoleAdd(AuthRoleAddRequest { name: "w".into() }),
        Request::RoleGrantPermission(AuthRoleGrantPermissionRequest {
            name: "w".into(),
            perm: Some(Permission {
                perm_type: Type::Readwrite as i32,
                key: b"k/".to_vec(),
                range_end: b"k0".to_vec(),
            }),
        }),
        grant("alice", "w"),
        Request::AuthEnable(AuthEnableRequest {}),
    ] {
        let r = s.propose(req).await;
        assert!(matches!(r, Ok(ApplyResult::AuthDone)), "{r:?}");
    }
    let now = |name: &str| AuthInfo {
        user: name.into(),
        revision: s.auth().revision(),
    };
    let put = |key: &str| {
        Request::Put(PutRequest {
            key: key.into(),
            value: b"v".to_vec(),
            ..Default::default()
        })
    };
    // Allowed, then denied, then nobody.
    let r = s.propose_as(put("k/1"), Some(&now("alice"))).await;
    assert!(matches!(r, Ok(ApplyResult::Put(_))), "{r:?}");
    let r = s.propose_as(put("other"), Some(&now("alice"))).await;
    assert_eq!(r.err(), Some(EtcdError::PermissionDenied));
    assert_eq!(
        s.propose_as(put("k/1"), None).await.err(),
        Some(EtcdError::UserEmpty)
    );
    // Alice's request was checked (at this revision), then the permission was revoked
    // before it was applied.
    let stale = now("alice");
    let root = now("root");
    let r = s
        .propose_as(
            Request::RoleRevokePermission(AuthRoleRevokePermissionRequest {
                role: "w".into(),
                key: b"k/".to_vec(),
                range_end: b"k0".to_vec(),
            }),
            Some(&root),
        )
        .await;
    assert!(matches!(r, Ok(ApplyResult::AuthDone)), "{r:?}");
    assert_eq!(
        s.propose_as(put("k/2"), Some(&stale)).await.err(),
        Some(EtcdError::AuthRevisionInHeaderOld)
    );
    // Not an admin: refused.
    assert_eq!(
        s.propose_as(user("mallory"), Some(&now("alice")))
            .await
            .err(),
        Some(EtcdError::PermissionDenied)
    );
    let r = s.propose_as(put("sync"), Some(&now("root"))).await;
    assert!(matches!(r, Ok(ApplyResult::Put(_))), "{r:?}");
    for i in c.running() {
        assert_eq!(c.get(i, "sync").await.as_deref(), Some("v"));
        let a = c.server(i).auth();
        assert!(a.is_enabled(), "m{i}");
        assert_eq!(a.revision(), s.auth().revision(), "m{i}");
        assert_eq!(a.user_list(), vec!["alice".to_string(), "root".to_string()]);
        assert_eq!(c.get_local(i, "k/1").as_deref(), Some("v"), "m{i}");
        assert_eq!(c.get_local(i, "k/2"), None, "m{i}");
    }

    // Who is asking: a token, the loopback client, a verified certificate's CN, nobody.
    // (The users' hashes are not real: the token is proposed as a member does after the
    // password check.)
    let alice_token = match s
        .propose(Request::Authenticate(
            cairn_proto::cairnpb::InternalAuthenticateRequest {
                name: "alice".into(),
                simple_token: "abcdefghijklmnop".into(),
            },
        ))
        .await
    {
        Ok(ApplyResult::AuthToken(t)) => t,
        other => panic!("authenticate: {other:?}"),
    };
    assert!(
        alice_token.starts_with("abcdefghijklmnop."),
        "{alice_token}"
    );
    let mut md = tonic::metadata::MetadataMap::new();
    md.insert(
        "token",
        alice_token.parse().unwrap_or_else(|_| unreachable!()),
    );
    let who = s.caller(&md, None).await;
    assert_eq!(
        who.map(|w| w.map(|w| w.user)),
        Ok(Some("alice".to_string()))
    );
    let mut md = tonic::metadata::MetadataMap::new();
    md.insert(
        "authorization",
        alice_token.parse().unwrap_or_else(|_| unreachable!()),
    );
    let who = s.caller(&md, None).await;
    assert_eq!(
        who.map(|w| w.map(|w| w.user)),
        Ok(Some("alice".to_string()))
    );
    let mut md = tonic::metadata::MetadataMap::new();
    md.insert("token", "nope.1".parse().unwrap_or_else(|_| unreachable!()));
    assert_eq!(s.caller(&md, None).await, Err(EtcdError::InvalidAuthToken));
    let empty = tonic::metadata::MetadataMap::new();
    let cert = crate::identity::ConnIdentity {
        cert_common_name: Some("alice".into()),
        loopback: false,
    };
    // Without --client-cert-auth a certificate names nobody, as in etcd.
    assert_eq!(s.caller(&empty, Some(&cert)).await, Ok(None));
    let loopback = crate::identity::ConnIdentity {
        cert_common_name: None,
        loopback: true,
    };
    let who = s.caller(&empty, Some(&loopback)).await;
    assert_eq!(who.map(|w| w.map(|w| w.user)), Ok(Some("root".to_string())));
    assert_eq!(s.caller(&empty, None).await, Ok(None));

    // With auth on, the leader still revokes an expired lease (as root), keys and all.
    let r = s
        .propose(Request::LeaseGrant(LeaseGrantRequest { ttl: 10, id: 9 }))
        .await;
    assert!(matches!(r, Ok(ApplyResult::LeaseGrant(_))), "{r:?}");
    let leased = Request::Put(PutRequest {
        key: b"leased".to_vec(),
        value: b"v".to_vec(),
        lease: 9,
        ..Default::default()
    });
    let r = s.propose_as(leased, Some(&now("root"))).await;
    assert!(matches!(r, Ok(ApplyResult::Put(_))), "{r:?}");
    c.advance_lease_clock(Duration::from_secs(20));
    let deadline = tokio::time::Instant::now() + MAX_WAIT;
    while c
        .running()
        .iter()
        .any(|&i| c.get_local(i, "leased").is_some())
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the lease never expired with auth on"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // A member that joins gets it all by snapshot.
    let leader = c.leader();
    c.server(leader)
        .add_member(vec![super::peer_url(3)], true)
        .await
        .unwrap_or_else(|e| panic!("add learner: {e}"));
    let new = c.join(3).await;
    let a = c.server(new).auth();
    assert!(a.is_enabled());
    assert_eq!(a.revision(), s.auth().revision());
    assert_eq!(a.user_list(), vec!["alice".to_string(), "root".to_string()]);
    assert_eq!(a.role_get("w"), Ok(vec![]));
    assert!(a.check_admin(Some(&now("root"))).is_ok());
}
