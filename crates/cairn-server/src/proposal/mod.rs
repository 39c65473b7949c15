//! Proposals: a request goes into the Raft log, and whoever proposed it waits for the
//! applier's answer.
//!
//! [`Proposer`] gives each proposal an id, registers a waiter under it ([`Waiters`]), hands
//! the encoded request to Raft and waits, up to etcd's request timeout, for the applier to
//! fire the waiter with what applying produced ([`ApplyResult`]). Membership changes go the
//! same way, with the waiter's id in the change's context.
//!
//! Owns: request ids, the waiter table, the proposal metrics. Must not depend on the
//! applier, the RPC layer or the server core: they depend on it.

mod waiters;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cairn_proto::cairnpb::{internal_request::Request, AuthHeader, InternalRequest, MemberChange};
use cairn_proto::etcdserverpb::Member;
use cairn_proto::EtcdError;
use cairn_raft::{Change, RaftError, RaftHandle};
use prost::Message;
use tokio::sync::oneshot;

use crate::metrics::Metrics;
pub use waiters::{ApplyResult, Waiters};

/// Committed entries the applier may lag behind before new proposals are refused with
/// "too many requests", as etcd does.
const MAX_APPLY_GAP: u64 = 5000;

/// The identity the member's own proposals act as where the applier checks permissions
/// (the leader revoking an expired lease, whose keys need write permission): root, at
/// every auth revision, as etcd's `WithRoot`. While auth is enabled the root user exists
/// and holds the root role.
pub fn as_root() -> AuthHeader {
    AuthHeader {
        username: "root".to_string(),
        auth_revision: u64::MAX,
    }
}

/// Proposes requests through Raft and waits for their results. Cloning shares it.
#[derive(Clone)]
pub struct Proposer {
    inner: Arc<Inner>,
}

struct Inner {
    raft: RaftHandle,
    waiters: Arc<Waiters>,
    metrics: Arc<Metrics>,
    next_id: AtomicU64,
    /// `--max-request-bytes`: the largest encoded proposal.
    max_request_bytes: u64,
    /// How long a proposal may wait for its result, as etcd computes it.
    request_timeout: Duration,
}

impl Proposer {
    /// A proposer into `raft`, whose applier answers through `waiters`.
    pub fn new(
        raft: RaftHandle,
        waiters: Arc<Waiters>,
        metrics: Arc<Metrics>,
        max_request_bytes: u64,
        election_timeout: Duration,
    ) -> Proposer {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        Proposer {
            inner: Arc::new(Inner {
                raft,
                waiters,
                metrics,
                next_id: AtomicU64::new(seed),
                max_request_bytes,
                request_timeout: Duration::from_secs(5) + 2 * election_timeout,
            }),
        }
    }

    /// How long a proposal may wait for its result: 5 s plus two election timeouts, as
    /// etcd computes it.
    pub fn request_timeout(&self) -> Duration {
        self.inner.request_timeout
    }

    /// Proposes a request through Raft and waits for the applier's answer.
    pub async fn propose(&self, request: Request) -> Result<ApplyResult, EtcdError> {
        self.propose_as(request, None).await
    }

    /// Proposes a request on behalf of a caller (`auth`: who, at which auth revision), whom
    /// the applier checks again.
    pub async fn propose_as(
        &self,
        request: Request,
        auth: Option<AuthHeader>,
    ) -> Result<ApplyResult, EtcdError> {
        let i = &self.inner;
        let st = i.raft.status();
        if st.commit_index > st.applied_index + MAX_APPLY_GAP {
            return Err(EtcdError::TooManyRequests);
        }
        let id = i.next_id.fetch_add(1, Ordering::Relaxed);
        let data = InternalRequest {
            id,
            request: Some(request),
            auth,
        }
        .encode_to_vec();
        if data.len() as u64 > i.max_request_bytes {
            return Err(EtcdError::RequestTooLarge);
        }
        let deadline = Instant::now() + i.request_timeout;
        self.submit(id, deadline, || i.raft.propose(data)).await
    }

    /// Proposes `change` of `member` (add, promote or remove) and waits until it is
    /// applied; returns the members after it.
    pub async fn change_membership(
        &self,
        change: Change,
        member: Member,
    ) -> Result<Vec<Member>, EtcdError> {
        let i = &self.inner;
        let waiter = i.next_id.fetch_add(1, Ordering::Relaxed);
        let id = member.id;
        let context = MemberChange {
            waiter,
            member: Some(member),
        };
        let deadline = Instant::now() + i.request_timeout;
        let propose = || {
            i.raft
                .propose_membership(change, id, context.encode_to_vec())
        };
        match self.submit(waiter, deadline, propose).await? {
            ApplyResult::Members(list) => Ok(list),
            _ => Err(EtcdError::Stopped),
        }
    }

    /// Waits for a leader, proposes with `propose` and waits for the applier's answer to
    /// `waiter`, all by `deadline`. Counts the proposal as failed when it fails, and when
    /// its caller stops waiting first.
    async fn submit(
        &self,
        waiter: u64,
        deadline: Instant,
        propose: impl FnOnce() -> Result<(), RaftError>,
    ) -> Result<ApplyResult, EtcdError> {
        let i = &self.inner;
        let abandoned = Abandoned::arm(&i.metrics.proposals_failed);
        let outcome = async {
            // As etcd, a proposal waits for a leader for as long as it may wait at all.
            if !self.wait_for_leader(deadline).await {
                i.metrics.proposals_failed.inc();
                return Err(EtcdError::ProposalDeadline);
            }
            let rx = i.waiters.register(waiter);
            if let Err(e) = propose() {
                return Err(self.failed(waiter, e));
            }
            self.await_applied(waiter, rx, deadline).await
        }
        .await;
        abandoned.settle();
        outcome
    }

    /// Waits until some member leads, or `deadline` passes; says whether one does.
    pub async fn wait_for_leader(&self, deadline: Instant) -> bool {
        let raft = &self.inner.raft;
        if raft.status().leader_id != 0 {
            return true;
        }
        let mut leadership = raft.leadership();
        let found = async move { leadership.wait_for(|l| l.leader_id != 0).await.is_ok() };
        matches!(
            tokio::time::timeout_at(deadline.into(), found).await,
            Ok(true)
        )
    }

    fn failed(&self, id: u64, e: RaftError) -> EtcdError {
        self.inner.waiters.remove(id);
        self.inner.metrics.proposals_failed.inc();
        match e {
            RaftError::NoLeader => EtcdError::NoLeader,
            _ => EtcdError::Stopped,
        }
    }

    /// Waits for the applier's answer to proposal `id`, up to `deadline`.
    async fn await_applied(
        &self,
        id: u64,
        rx: oneshot::Receiver<Result<ApplyResult, EtcdError>>,
        deadline: Instant,
    ) -> Result<ApplyResult, EtcdError> {
        let i = &self.inner;
        // Held while waiting: a caller that gives up drops it, and the proposal is no
        // longer pending for it.
        let pending = Pending::new(&i.metrics.proposals_pending);
        let term_at_start = i.raft.status().term;
        let outcome = tokio::time::timeout_at(deadline.into(), rx).await;
        drop(pending);
        match outcome {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(EtcdError::Stopped),
            Err(_) => {
                i.waiters.remove(id);
                i.metrics.proposals_failed.inc();
                // The write may or may not have been applied; say why it is unknown, as
                // etcd does: a new term began while it waited, or nothing more is known.
                if i.raft.status().term != term_at_start {
                    Err(EtcdError::TimeoutDueToLeaderFail)
                } else {
                    Err(EtcdError::Timeout)
                }
            }
        }
    }
}

/// Counts a proposal as failed if its caller stops waiting (drops the future: its client
/// went away or gave up) before the proposal has an outcome, as etcd counts a proposal
/// whose context ends first.
struct Abandoned(Option<prometheus::IntCounter>);

impl Abandoned {
    fn arm(failed: &prometheus::IntCounter) -> Abandoned {
        Abandoned(Some(failed.clone()))
    }

    /// The proposal has its outcome (counted already if it failed).
    fn settle(mut self) {
        self.0 = None;
    }
}

impl Drop for Abandoned {
    fn drop(&mut self) {
        if let Some(failed) = self.0.take() {
            failed.inc();
        }
    }
}

/// One proposal in `etcd_server_proposals_pending` while it lives.
struct Pending(prometheus::IntGauge);

impl Pending {
    fn new(gauge: &prometheus::IntGauge) -> Pending {
        gauge.inc();
        Pending(gauge.clone())
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.0.dec();
    }
}
