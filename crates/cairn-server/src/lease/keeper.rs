//! [`LeaseKeeper`]: keep-alives and time-to-live queries, answered by the leader's lessor
//! wherever they arrive, and the leader's loop that expires and checkpoints leases.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_lease::LeaseError;
use cairn_proto::cairnpb::internal_request::Request;
use cairn_proto::cairnpb::lease_peer_client::LeasePeerClient;
use cairn_proto::cairnpb::LeaseRenewRequest;
use cairn_proto::etcdserverpb::{
    LeaseCheckpoint, LeaseCheckpointRequest, LeaseRevokeRequest, LeaseTimeToLiveRequest,
    LeaseTimeToLiveResponse, ResponseHeader,
};
use cairn_proto::EtcdError;
use cairn_raft::RaftHandle;
use parking_lot::Mutex;
use tonic::transport::Channel;

use super::Leases;
use crate::cluster::Members;
use crate::proposal::Proposer;

/// How often the leader looks for expired leases and due checkpoints.
const TICK: Duration = Duration::from_millis(100);
/// Revocations proposed and not yet answered, at most (etcd's `maxPendingRevokes`).
const MAX_PENDING_REVOKES: usize = 16;
/// Pause between attempts to reach the leader.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// Renews leases and answers time-to-live queries from the leader's lessor (this member's
/// when it leads, the leader's over its peer URLs otherwise), and on the leader expires
/// and checkpoints leases. Cloning shares it.
#[derive(Clone)]
pub struct LeaseKeeper {
    inner: Arc<Inner>,
}

struct Inner {
    leases: Arc<Leases>,
    raft: RaftHandle,
    proposer: Proposer,
    /// Where the leader's peer URLs are.
    members: Arc<Members>,
    /// The cluster and this member, named in every request to the leader.
    cluster_id: u64,
    member_id: u64,
    /// The leader's lease peer client, cached by leader id. Protects only the value.
    leader: Mutex<Option<(u64, LeasePeerClient<Channel>)>>,
}

impl LeaseKeeper {
    pub fn new(
        leases: Arc<Leases>,
        raft: RaftHandle,
        proposer: Proposer,
        members: Arc<Members>,
        cluster_id: u64,
        member_id: u64,
    ) -> LeaseKeeper {
        LeaseKeeper {
            inner: Arc::new(Inner {
                leases,
                raft,
                proposer,
                members,
                cluster_id,
                member_id,
                leader: Mutex::new(None),
            }),
        }
    }

    /// The member's leases.
    pub fn leases(&self) -> &Leases {
        &self.inner.leases
    }

    /// Demotes the lessor if Raft says this member no longer leads. True if it leads (so its
    /// lessor may answer).
    pub(super) fn check_leadership(&self) -> bool {
        let i = &self.inner;
        i.leases.check_leadership(&i.raft.status())
    }

    /// Promotes the lessor if this member leads, has applied an entry of its term, and
    /// has not promoted in this term yet.
    pub fn promote_if_due(&self) {
        let i = &self.inner;
        i.leases.promote_if_due(&i.raft.status());
    }

    /// A client for the current leader's lease peer service, with the leader's id; `None`
    /// without a leader.
    fn leader_client(&self) -> Option<(u64, LeasePeerClient<Channel>)> {
        let i = &self.inner;
        let leader = i.raft.status().leader_id;
        if leader == 0 {
            return None;
        }
        let mut cached = i.leader.lock();
        if let Some((id, client)) = cached.as_ref() {
            if *id == leader {
                return Some((leader, client.clone()));
            }
        }
        let url = i.members.get(leader)?.peer_ur_ls.first()?.clone();
        let (endpoint, tls) = crate::tls::dial::endpoint(&url)?;
        let endpoint = endpoint.connect_timeout(Duration::from_secs(1));
        let connector = tower::service_fn(move |uri| crate::tls::dial::dial(uri, tls));
        let client = LeasePeerClient::new(endpoint.connect_with_connector_lazy(connector));
        *cached = Some((leader, client.clone()));
        Some((leader, client))
    }

    /// `req` as a request to member `leader` that names this member as its sender, as the
    /// leader's lease peer service requires.
    fn to_leader<T>(&self, leader: u64, req: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(req);
        let i = &self.inner;
        crate::cluster::gate::identify(&mut r, i.cluster_id, i.member_id, leader);
        r
    }

    fn forget_leader(&self) {
        *self.inner.leader.lock() = None;
    }

    /// Waits until the leader has applied everything it committed, as etcd does before it
    /// answers a renewal or a time-to-live query from its lessor.
    pub(super) async fn wait_applied(&self) -> Result<(), EtcdError> {
        let raft = &self.inner.raft;
        let st = raft.status();
        let commit = st.commit_index;
        if st.applied_index >= commit {
            return Ok(());
        }
        let mut applied = raft.applied_index();
        let reached = async move { applied.wait_for(|&a| a >= commit).await.is_ok() };
        match tokio::time::timeout(self.inner.proposer.request_timeout(), reached).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(EtcdError::Stopped),
            Err(_) => Err(EtcdError::TimeoutWaitAppliedIndex),
        }
    }

    /// Renews lease `id` in this member's lessor, if it is primary. An expired lease waits
    /// for its revocation (then: not found) or for the lessor's demotion (then: not
    /// primary).
    pub(super) async fn renew_local(&self, id: i64) -> Result<i64, LeaseError> {
        let leases = &self.inner.leases;
        let deadline = Instant::now() + self.inner.proposer.request_timeout();
        loop {
            match leases.lessor.renew(id) {
                Ok(r) => {
                    leases.metrics.renewed.inc();
                    if r.clear_checkpoint {
                        self.propose_checkpoints(vec![LeaseCheckpoint {
                            id,
                            remaining_ttl: 0,
                        }]);
                    }
                    return Ok(r.ttl);
                }
                Err(LeaseError::Expired) if Instant::now() < deadline => {
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                Err(LeaseError::Expired) => return Err(LeaseError::NotPrimary),
                Err(e) => return Err(e),
            }
        }
    }

    /// Proposes checkpoints without waiting for them.
    fn propose_checkpoints(&self, checkpoints: Vec<LeaseCheckpoint>) {
        let proposer = self.inner.proposer.clone();
        tokio::spawn(async move {
            let req = Request::LeaseCheckpoint(LeaseCheckpointRequest { checkpoints });
            if let Err(e) = proposer.propose(req).await {
                tracing::warn!(error = %e, "failed to checkpoint leases");
            }
        });
    }

    /// Renews lease `id` wherever the primary lessor is: here, or on the leader over the
    /// peer URLs. Returns the lease's TTL, or 0 if it does not exist (as a keep-alive
    /// reports it).
    pub async fn renew(&self, id: i64) -> Result<i64, EtcdError> {
        let timeout = self.inner.proposer.request_timeout();
        let deadline = Instant::now() + timeout;
        loop {
            if self.check_leadership() {
                self.wait_applied().await?;
                match self.renew_local(id).await {
                    Ok(ttl) => return Ok(ttl),
                    Err(LeaseError::NotFound) => return Ok(0),
                    Err(_) => {}
                }
            } else if let Some((leader, mut client)) = self.leader_client() {
                let call = client.renew(self.to_leader(leader, LeaseRenewRequest { id }));
                match tokio::time::timeout(timeout, call).await {
                    Ok(Ok(r)) => {
                        let r = r.into_inner();
                        return Ok(if r.found { r.ttl } else { 0 });
                    }
                    Ok(Err(s)) if s.code() == tonic::Code::FailedPrecondition => {}
                    _ => self.forget_leader(),
                }
            }
            if Instant::now() >= deadline {
                return Err(EtcdError::Timeout);
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }

    /// The leader's answer to a time-to-live query.
    pub(super) fn time_to_live_local(
        &self,
        req: &LeaseTimeToLiveRequest,
    ) -> LeaseTimeToLiveResponse {
        match self.inner.leases.lessor.time_to_live(req.id, req.keys) {
            Some(t) => LeaseTimeToLiveResponse {
                header: Some(ResponseHeader::default()),
                id: req.id,
                ttl: t.remaining,
                granted_ttl: t.granted,
                keys: t.keys,
            },
            // etcd's answer for a lease that does not exist: TTL -1.
            None => LeaseTimeToLiveResponse {
                header: Some(ResponseHeader::default()),
                id: req.id,
                ttl: -1,
                granted_ttl: 0,
                keys: vec![],
            },
        }
    }

    /// Answers a time-to-live query from the leader's lessor, here or over the peer URLs.
    pub async fn time_to_live(
        &self,
        req: LeaseTimeToLiveRequest,
    ) -> Result<LeaseTimeToLiveResponse, EtcdError> {
        let timeout = self.inner.proposer.request_timeout();
        let deadline = Instant::now() + timeout;
        loop {
            if self.check_leadership() {
                self.wait_applied().await?;
                return Ok(self.time_to_live_local(&req));
            }
            if let Some((leader, mut client)) = self.leader_client() {
                let call = client.time_to_live(self.to_leader(leader, req));
                match tokio::time::timeout(timeout, call).await {
                    Ok(Ok(r)) => return Ok(r.into_inner()),
                    Ok(Err(s)) if s.code() == tonic::Code::FailedPrecondition => {}
                    _ => self.forget_leader(),
                }
            }
            if Instant::now() >= deadline {
                return Err(EtcdError::Timeout);
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }

    /// The leader's loop: promotes the lessor once the leader has applied an entry of its
    /// term, demotes it when leadership is lost, proposes the revocation of expired leases
    /// (at most etcd's revoke rate, [`MAX_PENDING_REVOKES`] at a time) and proposes due
    /// checkpoints. Runs until the task is dropped.
    pub async fn run(self) {
        let pending = Arc::new(tokio::sync::Semaphore::new(MAX_PENDING_REVOKES));
        let leases = self.inner.leases.clone();
        let per_tick = |rate: usize| (rate as u128 * TICK.as_millis() / 1000).max(1) as usize;
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if !self.check_leadership() {
                continue;
            }
            self.promote_if_due();
            for id in leases.lessor.expired(per_tick(cairn_lease::REVOKE_RATE)) {
                let Ok(permit) = pending.clone().acquire_owned().await else {
                    return;
                };
                let (proposer, leases) = (self.inner.proposer.clone(), leases.clone());
                tokio::spawn(async move {
                    let req = Request::LeaseRevoke(LeaseRevokeRequest { id });
                    // With auth on, the revocation is checked as its proposer: root.
                    let root = Some(crate::proposal::as_root());
                    match proposer.propose_as(req, root).await {
                        Ok(_) => leases.metrics.expired.inc(),
                        Err(EtcdError::LeaseNotFound) => {}
                        Err(e) => {
                            tracing::warn!(lease_id = %format!("{id:016x}"), error = %e, "failed to revoke an expired lease")
                        }
                    }
                    drop(permit);
                });
            }
            for _ in 0..per_tick(cairn_lease::CHECKPOINT_RATE) {
                let due = leases
                    .lessor
                    .due_checkpoints(cairn_lease::MAX_CHECKPOINT_BATCH);
                let full = due.len() == cairn_lease::MAX_CHECKPOINT_BATCH;
                if !due.is_empty() {
                    self.propose_checkpoints(due);
                }
                if !full {
                    break;
                }
            }
        }
    }
}
