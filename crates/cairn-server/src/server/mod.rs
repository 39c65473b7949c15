//! The server core: one running member, and the operations the RPC layer, the HTTP
//! endpoints and `run` are built from.
//!
//! [`Server`] holds the member's parts behind private fields and offers: proposing through
//! Raft and waiting for the result, linearizable reads, response headers, the backend
//! quota, membership changes under etcd's policy, leadership transfer, and the handles the
//! peer port serves.
//!
//! # Layout
//!
//! - This file: [`Server`], its accessors, headers, reads, leadership.
//! - `start.rs`: start-up (data directory, identity, Raft and the applier).
//! - `data_dir.rs`: the data directory's marker and what is refused.
//! - `etcd_import.rs`: a directory etcd 3.4/3.5 wrote, imported at start (backend, and
//!   the Raft log seeded with etcd's tail); `etcd_entry.rs`: etcd's entries converted.
//! - `read_barrier.rs`: linearizable reads sharing ReadIndex rounds.
//! - `membership.rs`: member add, remove, promote and update, checked by
//!   [`crate::cluster::policy`].
//! - `quota.rs`: the backend quota and the NOSPACE alarm.
//! - `auth.rs`: who is asking (token, loopback, certificate), proposing as them, and
//!   password hashing and checks on a bounded pool off the async workers.
//! - `corrupt.rs`: the corruption checks (HashKV compared with the peers') and the
//!   CORRUPT alarm.
//! - `etcd_snapshot.rs`: the member's state written as etcd 3.5's backend (a bbolt file),
//!   what `Maintenance.Snapshot` streams; its doc has the table of buckets.
//!
//! Depends on every room below it (proposal, apply, lease, peer, cluster, watch); the RPC
//! layer, `http` and `run` depend on it, never the other way round.

mod auth;
mod corrupt;
mod data_dir;
mod defrag;
mod etcd_entry;
mod etcd_import;
mod etcd_snapshot;
mod membership;
mod passwords;
mod peer_rtt;
mod quota;
mod read_barrier;
mod start;

pub use auth::request_token;
pub(crate) use data_dir::SNAPSHOT_COPY_PREFIX;
pub(crate) use defrag::defragment;
pub(crate) use etcd_snapshot::ExportError;
#[cfg(test)]
pub(crate) use start::{Peering, Wiring};

use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_mvcc::Store;
use cairn_proto::cairnpb::internal_request::Request;
use cairn_proto::etcdserverpb::ResponseHeader;
use cairn_proto::EtcdError;
use cairn_raft::{RaftError, RaftHandle, RaftStatus};

use crate::apply::alarm::Alarms;
use crate::cluster::{Members, PeerDirectory};
use crate::config::Config;
use crate::lease::{LeaseKeeper, LeasePeerService};
use crate::metrics::Metrics;
use crate::peer::PeerService;
use crate::proposal::{ApplyResult, Proposer};
use crate::watch::WatchHub;
pub use corrupt::CorruptError;
use read_barrier::{ReadBarrier, ReadFailure};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    DataDir(String),
    #[error("backend: {0}")]
    Backend(#[from] cairn_mvcc::MvccError),
    #[error("raft: {0}")]
    Raft(#[from] RaftError),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// `--auth-token`'s keys or method, in etcd's words.
    #[error("failed to create token provider: {0}")]
    TokenProvider(String),
}

/// Facts about this member, as MemberList reports them.
#[derive(Debug, Clone)]
pub struct MemberInfo {
    pub id: u64,
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
}

/// One running member.
pub struct Server {
    cfg: Config,
    store: Arc<Store>,
    raft: RaftHandle,
    member: MemberInfo,
    cluster_id: u64,
    proposer: Proposer,
    alarms: Arc<Alarms>,
    members: Arc<Members>,
    /// Where the other members are reached, and which of them answer.
    peers: Arc<dyn PeerDirectory>,
    metrics: Arc<Metrics>,
    leases: LeaseKeeper,
    /// The watchers of this member.
    watch: Arc<WatchHub>,
    /// Linearizable readers waiting for a ReadIndex round.
    reads: Arc<ReadBarrier>,
    /// Raft snapshots being received from a peer (one at a time), shared by every peer
    /// listener.
    snapshot_receiving: Arc<tokio::sync::Semaphore>,
    /// Users, roles, tokens; shared with the applier.
    auth: Arc<cairn_auth::AuthStore>,
    /// Where bcrypt runs.
    passwords: passwords::PasswordPool,
}

/// What the peer URLs serve: Raft snapshots and the member list, raft streams, and the
/// leader's answers to forwarded keep-alives.
pub(crate) struct PeerEndpoints {
    pub service: PeerService,
    pub streams: crate::peer::stream::Receiver,
    pub leases: LeasePeerService,
}

impl Server {
    /// The configuration it was started with.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The MVCC store.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Writes the member's committed state as etcd 3.5's backend (a bbolt file) to `out`,
    /// an empty file, and returns its length. Blocks: call it off the async workers.
    pub(crate) fn write_etcd_snapshot(&self, out: std::fs::File) -> Result<u64, ExportError> {
        etcd_snapshot::write(&self.store, self.raft_status().term, out)
    }

    /// This member's identity.
    pub fn member(&self) -> &MemberInfo {
        &self.member
    }

    pub fn cluster_id(&self) -> u64 {
        self.cluster_id
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The active alarms.
    pub fn alarms(&self) -> &Alarms {
        &self.alarms
    }

    /// Keep-alives, time-to-live queries and the lease list.
    pub fn leases(&self) -> &LeaseKeeper {
        &self.leases
    }

    /// The watch hub all Watch streams share.
    pub fn watch_hub(&self) -> &Arc<WatchHub> {
        &self.watch
    }

    /// The member's Raft state now.
    pub fn raft_status(&self) -> RaftStatus {
        self.raft.status()
    }

    /// The Raft handle, for tests that reach under the server.
    #[cfg(test)]
    pub(crate) fn raft(&self) -> &RaftHandle {
        &self.raft
    }

    /// Whether this member knows a leader.
    pub fn has_leader(&self) -> bool {
        self.raft.status().leader_id != 0
    }

    /// Resolves when Raft stops: `Ok` after [`Self::stop`], or the failure that stopped it.
    pub async fn raft_stopped(&self) -> Result<(), RaftError> {
        self.raft.stopped().await
    }

    /// What the peer URLs serve for this member.
    pub(crate) fn peer_endpoints(&self) -> PeerEndpoints {
        let limit = crate::peer::message_limit(self.cfg.max_request_bytes);
        let gate = crate::cluster::gate::PeerGate {
            cluster_id: self.cluster_id,
            member_id: self.member.id,
            members: self.members.clone(),
            refused: self.metrics.peer_refused.clone(),
        };
        PeerEndpoints {
            service: PeerService {
                raft: self.raft.clone(),
                gate: gate.clone(),
                // A snapshot is the backend file, which writes stop growing at the quota;
                // twice that (and at least 1 GiB) leaves room for what deletes and
                // compactions add above it, and for a leader with a larger quota.
                max_snapshot_bytes: self.cfg.quota_backend_bytes.saturating_mul(2).max(1 << 30),
                store: self.store.clone(),
                hashing: Arc::new(tokio::sync::Semaphore::new(1)),
                data_dir: self.cfg.data_dir.clone(),
                receiving: self.snapshot_receiving.clone(),
                snapshot_received: self.metrics.more.snapshot_received.clone(),
            },
            streams: crate::peer::stream::Receiver {
                raft: self.raft.clone(),
                gate: gate.clone(),
                message_limit: limit,
                received: self.metrics.more.peer_received.clone(),
            },
            leases: LeasePeerService {
                keeper: self.leases.clone(),
                gate,
            },
        }
    }

    /// Waits until this member knows a leader and has applied what it committed at start.
    pub async fn wait_ready(&self, limit: Duration) -> bool {
        let ready = async {
            let mut leadership = self.raft.leadership();
            if leadership.wait_for(|l| l.leader_id != 0).await.is_err() {
                return false;
            }
            let commit = self.raft.status().commit_index;
            let mut applied = self.raft.applied_index();
            let reached = applied.wait_for(|&a| a >= commit).await.is_ok();
            reached
        };
        matches!(tokio::time::timeout(limit, ready).await, Ok(true))
    }

    /// The Raft index the store has applied.
    pub fn applied_index(&self) -> u64 {
        self.raft.status().applied_index
    }

    /// How long a proposal may wait for its result, as etcd computes it.
    pub fn request_timeout(&self) -> Duration {
        self.proposer.request_timeout()
    }

    /// A response header at the given revision.
    pub fn header(&self, revision: i64) -> ResponseHeader {
        ResponseHeader {
            cluster_id: self.cluster_id,
            member_id: self.member.id,
            revision,
            raft_term: self.raft.status().term,
        }
    }

    /// Fills the cluster, member and term fields of a header the store produced, and its
    /// revision when the store left it zero.
    pub fn fill(&self, header: &mut Option<ResponseHeader>) {
        let h = header.get_or_insert_with(ResponseHeader::default);
        h.cluster_id = self.cluster_id;
        h.member_id = self.member.id;
        h.raft_term = self.raft.status().term;
        if h.revision == 0 {
            h.revision = self.store.current_revision();
        }
    }

    /// Proposes a request through Raft and waits for the applier's answer.
    pub async fn propose(&self, request: Request) -> Result<ApplyResult, EtcdError> {
        self.proposer.propose(request).await
    }

    /// Waits until a read started now may be served locally and see every write
    /// acknowledged before it (ReadIndex, shared with the reads around it, then wait for
    /// the applier to catch up).
    pub async fn linearizable_read(&self) -> Result<(), EtcdError> {
        let timeout = self.request_timeout();
        let deadline = Instant::now() + timeout;
        let index = loop {
            match self.reads.index(deadline).await {
                Ok(i) => break i,
                // As etcd, the read waits for a leader until its time is up.
                Err(ReadFailure::Raft(RaftError::NoLeader))
                    if self.proposer.wait_for_leader(deadline).await => {}
                Err(ReadFailure::Raft(RaftError::NoLeader) | ReadFailure::TimedOut) => {
                    return Err(EtcdError::Timeout)
                }
                Err(ReadFailure::Raft(_)) => return Err(EtcdError::Stopped),
            }
        };
        if self.applied_index() >= index {
            return Ok(());
        }
        let mut rx = self.raft.applied_index();
        let reached = tokio::time::timeout(timeout, async move {
            rx.wait_for(|&a| a >= index).await.is_ok()
        })
        .await;
        match reached {
            Ok(true) => Ok(()),
            Ok(false) => Err(EtcdError::Stopped),
            Err(_) => Err(EtcdError::TimeoutWaitAppliedIndex),
        }
    }

    /// Whether this member is a learner now.
    pub fn is_learner(&self) -> bool {
        self.members
            .get(self.member.id)
            .is_some_and(|m| m.is_learner)
    }

    /// Refuses a request a learner cannot serve (everything but Status and serializable
    /// ranges), as etcd does.
    pub fn refuse_on_learner(&self) -> Result<(), EtcdError> {
        if self.is_learner() {
            return Err(EtcdError::NotSupportedForLearner);
        }
        Ok(())
    }

    /// Hands leadership to `target` and waits until it leads (etcd's MoveLeader).
    pub async fn move_leader(&self, target: u64) -> Result<(), EtcdError> {
        let st = self.raft.status();
        if !st.is_leader {
            return Err(EtcdError::NotLeader);
        }
        if !self
            .members
            .list()
            .iter()
            .any(|m| m.id == target && !m.is_learner)
        {
            return Err(EtcdError::BadLeaderTransferee);
        }
        if target == self.member.id {
            return Ok(());
        }
        let mut leadership = self.raft.leadership();
        self.raft
            .transfer_leader(target)
            .map_err(|_| EtcdError::Stopped)?;
        let moved = async move { leadership.wait_for(|l| l.leader_id == target).await.is_ok() };
        match tokio::time::timeout(self.request_timeout(), moved).await {
            Ok(true) => {
                tracing::info!(
                    from = %format!("{:x}", self.member.id),
                    to = %format!("{target:x}"),
                    "leadership transferred"
                );
                Ok(())
            }
            Ok(false) => Err(EtcdError::Stopped),
            Err(_) => Err(EtcdError::TimeoutLeaderTransfer),
        }
    }

    /// Before stopping: if this member leads a larger cluster, hands leadership to another
    /// voter so the cluster does not wait an election timeout (a rolling restart's step).
    pub async fn transfer_leadership_for_stop(&self) {
        let st = self.raft.status();
        let others: Vec<u64> = self
            .members
            .list()
            .iter()
            .filter(|m| m.id != self.member.id && !m.is_learner)
            .map(|m| m.id)
            .collect();
        if !st.is_leader || others.is_empty() {
            return;
        }
        for target in others {
            match tokio::time::timeout(2 * self.cfg.election_timeout, self.move_leader(target))
                .await
            {
                Ok(Ok(())) => return,
                _ => {
                    tracing::warn!(to = %format!("{target:x}"), "leadership transfer failed; trying another member")
                }
            }
        }
    }

    /// Publishes this member's name and client URLs through Raft, as etcd does at start.
    pub async fn publish(&self) -> Result<(), EtcdError> {
        let attrs = cairn_proto::cairnpb::MemberAttributes {
            id: self.member.id,
            name: self.member.name.clone(),
            client_urls: self.member.client_urls.clone(),
        };
        self.propose(Request::Publish(attrs)).await.map(|_| ())
    }

    /// Refreshes the gauges that sample state rather than count events.
    pub fn refresh_metrics(&self) {
        let st = self.raft.status();
        self.metrics.has_leader.set(i64::from(st.leader_id != 0));
        self.metrics.is_leader.set(i64::from(st.is_leader));
        self.metrics.proposals_committed.set(st.commit_index as i64);
        self.metrics
            .proposals_applied
            .set(self.applied_index() as i64);
        self.metrics.db_total_size.set(self.store.db_size() as i64);
        self.metrics
            .db_total_size_in_use
            .set(self.store.db_size_in_use() as i64);
        let w = self.watch.stats();
        self.metrics.watch_streams.set(w.streams as i64);
        self.metrics.watchers.set(w.watchers as i64);
        self.metrics.slow_watchers.set(w.unsynced as i64);
        self.metrics.pending_events.set(w.pending_events as i64);
        let more = &self.metrics.more;
        more.current_revision.set(self.store.current_revision());
        more.compact_revision.set(self.store.compact_revision());
        more.keys_total.set(self.store.keys_total());
        more.open_read_transactions
            .set(self.store.open_read_transactions());
        more.auth_revision.set(self.auth.revision() as i64);
        self.metrics
            .sample(self.member.id, self.is_learner(), &self.raft.stats());
        let me = format!("{:x}", self.member.id);
        for m in self.members.list() {
            if m.id != self.member.id {
                // Listed from the start, as the peers' other families are.
                more.peer_round_trip
                    .with_label_values(&[&format!("{:x}", m.id)]);
                let active = self.peers.active_since(m.id).is_some();
                more.active_peers
                    .with_label_values(&[&me, &format!("{:x}", m.id)])
                    .set(i64::from(active));
            }
        }
        for (id, bytes) in self.peers.sent_bytes() {
            let counter = more.peer_sent.with_label_values(&[&format!("{id:x}")]);
            let seen = counter.get();
            if bytes > seen {
                counter.inc_by(bytes - seen);
            }
        }
    }

    /// Stops Raft and the applier.
    pub fn stop(&self) {
        self.raft.stop();
    }
}
