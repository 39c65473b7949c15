//! Leases in the server: the lessor writes into the applier's batch, lease entries are
//! applied, key attachments are rebuilt from the store, the leader promotes its lessor and
//! then expires and checkpoints leases, and keep-alives and time-to-live queries reach the
//! leader (over the peer URLs, never through the Raft log).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cairn_lease::{LeaseBackend, LeaseError, Lessor};
use cairn_mvcc::{ApplyBatch, LeaseLookup, MvccError, Store};
use cairn_proto::cairnpb::internal_request::Request;
use cairn_proto::cairnpb::lease_peer_client::LeasePeerClient;
use cairn_proto::cairnpb::lease_peer_server::LeasePeer;
use cairn_proto::cairnpb::{LeaseRenewRequest, LeaseRenewResponse};
use cairn_proto::etcdserverpb::{
    LeaseCheckpoint, LeaseCheckpointRequest, LeaseGrantRequest, LeaseGrantResponse,
    LeaseRevokeRequest, LeaseRevokeResponse, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
    RangeRequest, ResponseHeader,
};
use cairn_proto::EtcdError;
use parking_lot::Mutex;
use tonic::transport::Channel;

use crate::metrics::LeaseMetrics;
use crate::server::Server;
use crate::waiters::ApplyResult;

/// How often the leader looks for expired leases and due checkpoints.
const TICK: Duration = Duration::from_millis(100);
/// Revocations proposed and not yet answered, at most (etcd's `maxPendingRevokes`).
const MAX_PENDING_REVOKES: usize = 16;
/// Pause between attempts to reach the leader.
const RETRY_PAUSE: Duration = Duration::from_millis(50);
/// Keys read per page when rebuilding attachments.
const REBUILD_PAGE: i64 = 1000;
/// What a lease grant costs against the backend quota (etcd's `leaseOverhead`).
pub const GRANT_COST: u64 = 64;

/// The applier's open batch as the lessor's backend.
struct BatchBackend<'b, 'a>(&'b mut ApplyBatch<'a>);

impl LeaseBackend for BatchBackend<'_, '_> {
    type Error = MvccError;

    fn delete_keys(&mut self, keys: &[Vec<u8>]) -> Result<(), MvccError> {
        self.0.delete_keys(keys)
    }

    fn put_lease(&mut self, id: i64, record: Vec<u8>) -> Result<(), MvccError> {
        self.0.put_lease(id, record);
        Ok(())
    }

    fn delete_lease(&mut self, id: i64) -> Result<(), MvccError> {
        self.0.delete_lease(id);
        Ok(())
    }
}

/// The lessor as the store's lease lookup, so puts refuse unknown leases.
pub struct Lookup<'l>(&'l Lessor);

impl LeaseLookup for Lookup<'_> {
    fn exists(&self, id: i64) -> bool {
        self.0.exists(id)
    }
}

/// etcd's error for a refused lease operation.
pub fn etcd_error(e: LeaseError) -> EtcdError {
    match e {
        LeaseError::NotFound | LeaseError::Expired => EtcdError::LeaseNotFound,
        LeaseError::Exists => EtcdError::LeaseExist,
        LeaseError::TtlTooLarge => EtcdError::LeaseTtlTooLarge,
        LeaseError::NotPrimary => EtcdError::NotLeader,
    }
}

type Outcome = Result<ApplyResult, EtcdError>;

/// etcd's request id generator, used for server-chosen lease ids: the member id's low 16
/// bits, then the start time in milliseconds (40 bits) and a counter (8 bits), counting up;
/// positive.
struct IdGen {
    prefix: u64,
    suffix: AtomicU64,
}

impl IdGen {
    fn new(member_id: u64) -> IdGen {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        IdGen {
            prefix: member_id << 48,
            suffix: AtomicU64::new((ms & ((1 << 40) - 1)) << 8),
        }
    }

    fn next(&self) -> i64 {
        let suffix = self.suffix.fetch_add(1, Ordering::Relaxed) + 1;
        ((self.prefix | (suffix & ((1 << 48) - 1))) & (i64::MAX as u64)) as i64
    }
}

/// A member's leases: the lessor and what the server needs around it.
pub struct Leases {
    pub lessor: Lessor,
    /// Term of the last entry the applier applied; the leader promotes its lessor once it
    /// has applied an entry of its own term (its first, empty entry), so every grant and
    /// revoke of earlier terms is in.
    applied_term: AtomicU64,
    /// The term the lessor was last promoted in.
    promoted_term: AtomicU64,
    /// How far promotion extends every lease: one election timeout, as etcd.
    promote_extend: Duration,
    ids: IdGen,
    /// The leader's lease peer client, cached by leader id. Protects only the value.
    leader: Mutex<Option<(u64, LeasePeerClient<Channel>)>>,
    pub metrics: LeaseMetrics,
}

impl Leases {
    pub fn new(
        lessor: Lessor,
        member_id: u64,
        promote_extend: Duration,
        metrics: LeaseMetrics,
    ) -> Leases {
        Leases {
            lessor,
            applied_term: AtomicU64::new(0),
            promoted_term: AtomicU64::new(0),
            promote_extend,
            ids: IdGen::new(member_id),
            leader: Mutex::new(None),
            metrics,
        }
    }

    /// A fresh lease id for a grant that did not choose one.
    pub fn next_id(&self) -> i64 {
        loop {
            let id = self.ids.next();
            if id != 0 {
                return id;
            }
        }
    }

    pub fn lookup(&self) -> Lookup<'_> {
        Lookup(&self.lessor)
    }

    /// Notes the term of an entry being applied.
    pub fn applying(&self, term: u64) {
        self.applied_term.store(term, Ordering::Release);
    }

    /// Attaches each key written in `batch` since `mark` to the lease it carries now.
    pub fn attach_since(&self, batch: &ApplyBatch<'_>, mark: usize) {
        for (key, lease) in batch.key_leases_since(mark) {
            self.lessor.attach_key(key, lease);
        }
    }

    pub fn grant(
        &self,
        batch: &mut ApplyBatch<'_>,
        req: &LeaseGrantRequest,
    ) -> Result<Outcome, MvccError> {
        let granted = self
            .lessor
            .grant(req.id, req.ttl, &mut BatchBackend(batch))?;
        Ok(granted.map_err(etcd_error).map(|g| {
            self.metrics.granted.inc();
            self.metrics.ttl.observe(g.ttl as f64);
            ApplyResult::LeaseGrant(LeaseGrantResponse {
                header: Some(ResponseHeader {
                    revision: batch.revision(),
                    ..Default::default()
                }),
                id: g.id,
                ttl: g.ttl,
                error: String::new(),
            })
        }))
    }

    pub fn revoke(
        &self,
        batch: &mut ApplyBatch<'_>,
        req: &LeaseRevokeRequest,
    ) -> Result<Outcome, MvccError> {
        let revoked = self.lessor.revoke(req.id, &mut BatchBackend(batch))?;
        Ok(revoked.map_err(etcd_error).map(|()| {
            self.metrics.revoked.inc();
            ApplyResult::LeaseRevoke(LeaseRevokeResponse {
                header: Some(ResponseHeader {
                    revision: batch.revision(),
                    ..Default::default()
                }),
            })
        }))
    }

    pub fn checkpoint(
        &self,
        batch: &mut ApplyBatch<'_>,
        req: &LeaseCheckpointRequest,
    ) -> Result<Outcome, MvccError> {
        self.lessor
            .checkpoint(&req.checkpoints, &mut BatchBackend(batch))?;
        Ok(Ok(ApplyResult::LeaseCheckpoint))
    }

    /// Loads every lease from the store and attaches each live key to its lease (at start,
    /// and after a snapshot replaced the store).
    pub fn reload(&self, store: &Store) -> Result<(), MvccError> {
        let records = store.leases()?;
        self.lessor
            .recover(&records)
            .map_err(|e| MvccError::Corrupt(format!("undecodable lease record: {e}")))?;
        if records.is_empty() {
            return Ok(());
        }
        let mut from = vec![0u8];
        loop {
            let resp = store.range(&RangeRequest {
                key: from.clone(),
                range_end: vec![0],
                limit: REBUILD_PAGE,
                ..Default::default()
            })?;
            for kv in &resp.kvs {
                if kv.lease != 0 {
                    self.lessor.attach_key(&kv.key, kv.lease);
                }
            }
            match resp.kvs.last() {
                Some(last) if resp.more => {
                    from = last.key.clone();
                    from.push(0);
                }
                _ => return Ok(()),
            }
        }
    }

    /// A client for the current leader's lease peer service; `None` without a leader.
    fn leader_client(&self, server: &Server) -> Option<LeasePeerClient<Channel>> {
        let leader = server.raft.status().leader_id;
        if leader == 0 {
            return None;
        }
        let mut cached = self.leader.lock();
        if let Some((id, client)) = cached.as_ref() {
            if *id == leader {
                return Some(client.clone());
            }
        }
        let url = server.members.get(leader)?.peer_ur_ls.first()?.clone();
        let endpoint = tonic::transport::Endpoint::from_shared(url)
            .ok()?
            .connect_timeout(Duration::from_secs(1));
        let connector = tower::service_fn(cairn_client::coalesce::dial);
        let client = LeasePeerClient::new(endpoint.connect_with_connector_lazy(connector));
        *cached = Some((leader, client.clone()));
        Some(client)
    }

    fn forget_leader(&self) {
        *self.leader.lock() = None;
    }
}

/// Waits until the leader has applied everything it committed, as etcd does before it
/// answers a renewal or a time-to-live query from its lessor.
async fn wait_applied(server: &Server) -> Result<(), EtcdError> {
    let commit = server.raft.status().commit_index;
    let deadline = Instant::now() + server.request_timeout();
    while server.applied_index() < commit {
        if Instant::now() >= deadline {
            return Err(EtcdError::TimeoutWaitAppliedIndex);
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(())
}

/// Renews lease `id` in this member's lessor, if it is primary. An expired lease waits for
/// its revocation (then: not found) or for the lessor's demotion (then: not primary).
async fn renew_local(server: &Arc<Server>, id: i64) -> Result<i64, LeaseError> {
    let deadline = Instant::now() + server.request_timeout();
    loop {
        match server.leases.lessor.renew(id) {
            Ok(r) => {
                server.leases.metrics.renewed.inc();
                if r.clear_checkpoint {
                    propose_checkpoints(
                        server,
                        vec![LeaseCheckpoint {
                            id,
                            remaining_ttl: 0,
                        }],
                    );
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
fn propose_checkpoints(server: &Arc<Server>, checkpoints: Vec<LeaseCheckpoint>) {
    let server = server.clone();
    tokio::spawn(async move {
        let req = Request::LeaseCheckpoint(LeaseCheckpointRequest { checkpoints });
        if let Err(e) = server.propose(req).await {
            tracing::warn!(error = %e, "failed to checkpoint leases");
        }
    });
}

/// Demotes the lessor if Raft says this member no longer leads. True if it leads.
fn check_leadership(server: &Server) -> bool {
    let leads = server.raft.status().is_leader;
    if !leads && server.leases.lessor.is_primary() {
        server.leases.lessor.demote();
    }
    leads
}

/// Renews lease `id` wherever the primary lessor is: here, or on the leader over the peer
/// URLs. Returns the lease's TTL, or 0 if it does not exist (as a keep-alive reports it).
pub async fn renew(server: &Arc<Server>, id: i64) -> Result<i64, EtcdError> {
    let deadline = Instant::now() + server.request_timeout();
    loop {
        if check_leadership(server) {
            wait_applied(server).await?;
            match renew_local(server, id).await {
                Ok(ttl) => return Ok(ttl),
                Err(LeaseError::NotFound) => return Ok(0),
                Err(_) => {}
            }
        } else if let Some(mut client) = server.leases.leader_client(server) {
            let call = client.renew(LeaseRenewRequest { id });
            match tokio::time::timeout(server.request_timeout(), call).await {
                Ok(Ok(r)) => {
                    let r = r.into_inner();
                    return Ok(if r.found { r.ttl } else { 0 });
                }
                Ok(Err(s)) if s.code() == tonic::Code::FailedPrecondition => {}
                _ => server.leases.forget_leader(),
            }
        }
        if Instant::now() >= deadline {
            return Err(EtcdError::Timeout);
        }
        tokio::time::sleep(RETRY_PAUSE).await;
    }
}

/// The leader's answer to a time-to-live query.
fn time_to_live_local(server: &Server, req: &LeaseTimeToLiveRequest) -> LeaseTimeToLiveResponse {
    match server.leases.lessor.time_to_live(req.id, req.keys) {
        Some(t) => LeaseTimeToLiveResponse {
            header: Some(ResponseHeader::default()),
            id: req.id,
            ttl: t.remaining,
            granted_ttl: t.granted,
            keys: t.keys,
        },
        None => not_found_ttl(req.id),
    }
}

/// etcd's answer for a lease that does not exist: TTL -1.
fn not_found_ttl(id: i64) -> LeaseTimeToLiveResponse {
    LeaseTimeToLiveResponse {
        header: Some(ResponseHeader::default()),
        id,
        ttl: -1,
        granted_ttl: 0,
        keys: vec![],
    }
}

/// Answers a time-to-live query from the leader's lessor, here or over the peer URLs.
pub async fn time_to_live(
    server: &Server,
    req: LeaseTimeToLiveRequest,
) -> Result<LeaseTimeToLiveResponse, EtcdError> {
    let deadline = Instant::now() + server.request_timeout();
    loop {
        if check_leadership(server) {
            wait_applied(server).await?;
            return Ok(time_to_live_local(server, &req));
        }
        if let Some(mut client) = server.leases.leader_client(server) {
            let call = client.time_to_live(req);
            match tokio::time::timeout(server.request_timeout(), call).await {
                Ok(Ok(r)) => return Ok(r.into_inner()),
                Ok(Err(s)) if s.code() == tonic::Code::FailedPrecondition => {}
                _ => server.leases.forget_leader(),
            }
        }
        if Instant::now() >= deadline {
            return Err(EtcdError::Timeout);
        }
        tokio::time::sleep(RETRY_PAUSE).await;
    }
}

/// Promotes the lessor if this member leads, has applied an entry of its term, and has not
/// promoted in this term yet.
pub fn promote_if_due(server: &Server) {
    let leases = &server.leases;
    let st = server.raft.status();
    if !st.is_leader || leases.promoted_term.load(Ordering::Acquire) == st.term {
        return;
    }
    if leases.applied_term.load(Ordering::Acquire) == st.term {
        leases.lessor.promote(leases.promote_extend);
        leases.promoted_term.store(st.term, Ordering::Release);
        tracing::debug!(term = st.term, "lessor promoted");
    }
}

/// The leader's loop: promotes the lessor once the leader has applied an entry of its
/// term, demotes it when leadership is lost, proposes the revocation of expired leases
/// (at most etcd's revoke rate, [`MAX_PENDING_REVOKES`] at a time) and proposes due
/// checkpoints.
pub async fn run(server: Arc<Server>) {
    let pending = Arc::new(tokio::sync::Semaphore::new(MAX_PENDING_REVOKES));
    let leases = &server.leases;
    let per_tick = |rate: usize| (rate as u128 * TICK.as_millis() / 1000).max(1) as usize;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if !check_leadership(&server) {
            continue;
        }
        promote_if_due(&server);
        for id in leases.lessor.expired(per_tick(cairn_lease::REVOKE_RATE)) {
            let Ok(permit) = pending.clone().acquire_owned().await else {
                return;
            };
            let server = server.clone();
            tokio::spawn(async move {
                let req = Request::LeaseRevoke(LeaseRevokeRequest { id });
                match server.propose(req).await {
                    Ok(_) => server.leases.metrics.expired.inc(),
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
                propose_checkpoints(&server, due);
            }
            if !full {
                break;
            }
        }
    }
}

/// Answers followers' keep-alives and time-to-live queries on the peer URLs.
pub struct LeasePeerService {
    pub server: Arc<Server>,
}

fn not_primary() -> tonic::Status {
    tonic::Status::failed_precondition("not primary")
}

#[tonic::async_trait]
impl LeasePeer for LeasePeerService {
    async fn renew(
        &self,
        r: tonic::Request<LeaseRenewRequest>,
    ) -> Result<tonic::Response<LeaseRenewResponse>, tonic::Status> {
        let id = r.into_inner().id;
        if !check_leadership(&self.server) {
            return Err(not_primary());
        }
        wait_applied(&self.server).await?;
        let resp = match renew_local(&self.server, id).await {
            Ok(ttl) => LeaseRenewResponse { found: true, ttl },
            Err(LeaseError::NotFound) => LeaseRenewResponse {
                found: false,
                ttl: 0,
            },
            Err(_) => return Err(not_primary()),
        };
        Ok(tonic::Response::new(resp))
    }

    async fn time_to_live(
        &self,
        r: tonic::Request<LeaseTimeToLiveRequest>,
    ) -> Result<tonic::Response<LeaseTimeToLiveResponse>, tonic::Status> {
        if !check_leadership(&self.server) {
            return Err(not_primary());
        }
        wait_applied(&self.server).await?;
        Ok(tonic::Response::new(time_to_live_local(
            &self.server,
            &r.into_inner(),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_etcds_shape() {
        let g = IdGen::new(0x8e9e05c52164694d);
        let a = g.next();
        let b = g.next();
        assert!(a > 0 && b == a + 1);
        assert_eq!((a as u64) >> 48, 0x694d);
    }
}
