//! The member: opens the data directory, starts Raft and the applier, and offers the
//! operations the RPC layer is built from (propose and wait, linearizable read barrier,
//! response headers).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cairn_mvcc::Store;
use cairn_proto::cairnpb::{internal_request::Request, InternalRequest};
use cairn_proto::etcdserverpb::{
    alarm_request::AlarmAction, AlarmRequest, AlarmType, ResponseHeader,
};
use cairn_proto::EtcdError;
use cairn_raft::{RaftConfig, RaftHandle};
use prost::Message;
use tokio::sync::watch;

use crate::alarm::Alarms;
use crate::config::Config;
use crate::membership::Members;
use crate::metrics::Metrics;
use crate::peer::PeerSet;
use crate::read_barrier::ReadFailure;
use crate::waiters::{ApplyResult, Waiters};

/// The first line of the marker file that makes a directory cairn's.
const DATA_DIR_MARKER: &str = "cairn-data-dir";
/// The data directory format this build writes and reads.
const DATA_DIR_FORMAT: u32 = 1;
const MARKER_FILE: &str = "cairn.version";
const BACKEND_FILE: &str = "backend.redb";
const RAFT_DIR: &str = "raft";

/// Extra room gRPC allows above `--max-request-bytes` for framing, as etcd does.
pub const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;

/// Committed entries the applier may lag behind before new proposals are refused with
/// "too many requests", as etcd does.
const MAX_APPLY_GAP: u64 = 5000;
/// How often a request waiting for a leader looks again.
const LEADER_POLL: Duration = Duration::from_millis(20);

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    DataDir(String),
    #[error("backend: {0}")]
    Backend(#[from] cairn_mvcc::MvccError),
    #[error("raft: {0}")]
    Raft(#[from] cairn_raft::RaftError),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
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
    pub cfg: Config,
    pub store: Arc<Store>,
    pub raft: RaftHandle,
    pub member: MemberInfo,
    pub cluster_id: u64,
    pub waiters: Arc<Waiters>,
    pub alarms: Arc<Alarms>,
    pub members: Arc<Members>,
    /// The transport to the other members, and which of them answer.
    pub peers: PeerSet,
    pub metrics: Arc<Metrics>,
    pub leases: Arc<crate::lease::Leases>,
    /// The watchers of this member.
    pub watch: Arc<crate::watch::WatchHub>,
    applied_rx: watch::Receiver<u64>,
    /// Linearizable readers waiting for a ReadIndex round.
    reads: Arc<crate::read_barrier::ReadBarrier>,
    next_id: AtomicU64,
    pub started: Instant,
}

/// Checks that `dir` is a cairn data directory, or empty, and makes it one.
///
/// A directory that etcd wrote (it has `member/`), or any other non-empty directory without
/// cairn's marker, is refused and left untouched.
fn prepare_data_dir(dir: &Path) -> Result<(), StartError> {
    let marker = dir.join(MARKER_FILE);
    if marker.exists() {
        let text = std::fs::read_to_string(&marker)?;
        let mut words = text.split_whitespace();
        let (Some(DATA_DIR_MARKER), Some(v)) = (words.next(), words.next()) else {
            return Err(StartError::DataDir(format!(
                "{} is not a cairn data directory marker; refusing to use {}",
                marker.display(),
                dir.display()
            )));
        };
        let version: u32 = v.parse().unwrap_or(u32::MAX);
        if version > DATA_DIR_FORMAT {
            return Err(StartError::DataDir(format!(
                "data directory {} has format {version}, newer than this cairn understands ({DATA_DIR_FORMAT}); refusing to touch it",
                dir.display()
            )));
        }
        return Ok(());
    }
    if dir.join("member").exists() {
        return Err(StartError::DataDir(format!(
            "data directory {} was written by etcd (it has member/); cairn does not read etcd data directories and left it untouched",
            dir.display()
        )));
    }
    if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
        return Err(StartError::DataDir(format!(
            "data directory {} is not empty and is not a cairn data directory; refusing to use it",
            dir.display()
        )));
    }
    std::fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    std::fs::write(&marker, format!("{DATA_DIR_MARKER} {DATA_DIR_FORMAT}\n"))?;
    Ok(())
}

fn meta_u64(store: &Store, key: &str) -> Result<Option<u64>, StartError> {
    Ok(store
        .meta(key)?
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes))
}

/// Asks the members named in `--initial-cluster` for the cluster's id and members, and
/// finds this member among them by its peer URLs (it must have been added with
/// `member add` first), as etcd does for `--initial-cluster-state=existing`.
fn join_existing(cfg: &Config) -> Result<(u64, u64, Members), StartError> {
    let others: Vec<String> = cfg
        .initial_cluster
        .iter()
        .filter(|(name, _)| *name != cfg.name)
        .flat_map(|(_, urls)| urls.clone())
        .collect();
    let runtime = tokio::runtime::Handle::current();
    let mut fetched = None;
    for _ in 0..10 {
        fetched = runtime.block_on(crate::peer::fetch_members(&others));
        if fetched.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    let resp = fetched.ok_or_else(|| {
        StartError::DataDir(format!(
            "cannot fetch cluster info from peer urls: could not retrieve cluster information from the given URLs {others:?}"
        ))
    })?;
    let mut mine = cfg.initial_advertise_peer_urls.clone();
    mine.sort();
    let me = resp.members.iter().find(|m| {
        let mut urls = m.peer_ur_ls.clone();
        urls.sort();
        urls == mine
    });
    let Some(me) = me else {
        return Err(StartError::DataDir(format!(
            "member with peer URLs {mine:?} is not in the cluster {:x}; add it with `member add` first",
            resp.cluster_id
        )));
    };
    tracing::info!(
        local_member_id = %format!("{:x}", me.id),
        cluster_id = %format!("{:x}", resp.cluster_id),
        "joining an existing cluster"
    );
    let id = me.id;
    let members = Members::decode(None);
    members.replace(resp.members.clone());
    Ok((id, resp.cluster_id, members))
}

impl Server {
    /// Opens the data directory, starts Raft and the applier, and waits until this member
    /// leads (a single member elects itself at once).
    pub fn start(cfg: Config) -> Result<Arc<Server>, StartError> {
        let started = Instant::now();
        let metrics = Arc::new(Metrics::new()?);
        prepare_data_dir(&cfg.data_dir)?;
        let store = Arc::new(Store::open(&cfg.data_dir.join(BACKEND_FILE))?);
        metrics.db_open_seconds.set(started.elapsed().as_secs_f64());
        tracing::info!(
            path = %cfg.data_dir.join(BACKEND_FILE).display(),
            took = ?started.elapsed(),
            "opened backend db"
        );

        let member_id =
            crate::ids::member_id(&cfg.initial_advertise_peer_urls, &cfg.initial_cluster_token);
        let stored = (
            meta_u64(&store, "member_id")?,
            meta_u64(&store, "cluster_id")?,
        );
        let (member_id, cluster_id, members) = match stored {
            (Some(m), Some(c)) => {
                let members = Members::decode(store.meta(crate::membership::META_KEY)?.as_deref());
                if cfg.force_new_cluster {
                    // Disaster recovery: keep this member alone, with its data.
                    let mut me = members.get(m).unwrap_or_default();
                    me.id = m;
                    me.is_learner = false;
                    members.replace(vec![me]);
                    let mut batch = store.begin_apply()?;
                    batch.put_meta(crate::membership::META_KEY, &members.encode())?;
                    batch.commit(true)?;
                    tracing::warn!(local_member_id = %format!("{m:x}"), "forcing a new one-member cluster from this member's data");
                }
                (m, c, members)
            }
            _ if !cfg.initial_cluster_state_new => {
                let (member_id, cluster_id, members) = join_existing(&cfg)?;
                let mut batch = store.begin_apply()?;
                batch.put_meta("member_id", &member_id.to_be_bytes())?;
                batch.put_meta("cluster_id", &cluster_id.to_be_bytes())?;
                batch.put_meta(crate::membership::META_KEY, &members.encode())?;
                batch.commit(true)?;
                (member_id, cluster_id, members)
            }
            _ => {
                let initial: Vec<(u64, String, Vec<String>)> = cfg
                    .initial_cluster
                    .iter()
                    .map(|(name, urls)| {
                        let id = crate::ids::member_id(urls, &cfg.initial_cluster_token);
                        (id, name.clone(), urls.clone())
                    })
                    .collect();
                let ids: Vec<u64> = initial.iter().map(|(id, _, _)| *id).collect();
                let cluster_id = crate::ids::cluster_id(&ids);
                let members = Members::initial(&initial);
                let mut batch = store.begin_apply()?;
                batch.put_meta("member_id", &member_id.to_be_bytes())?;
                batch.put_meta("cluster_id", &cluster_id.to_be_bytes())?;
                batch.put_meta(crate::membership::META_KEY, &members.encode())?;
                // Every founding member starts from the same point, as if it had installed
                // a snapshot at index 1; a member that joins later is sent a real snapshot
                // (with the voters in it) instead of a log that lacks them.
                batch.set_applied_index(1);
                batch.commit(true)?;
                (member_id, cluster_id, members)
            }
        };
        let joining = store.applied_index() == 0;
        let members = Arc::new(members);
        let peers = members.peers();
        let raft_cell = crate::peer::RaftCell::default();
        let peer_set = PeerSet::new(
            tokio::runtime::Handle::current(),
            cluster_id,
            member_id,
            raft_cell.clone(),
            crate::peer::message_limit(cfg.max_request_bytes),
        );
        for (id, urls) in &peers {
            peer_set.set_peer(*id, urls);
        }
        let alarms = Arc::new(Alarms::decode(
            store.meta(crate::alarm::META_KEY)?.as_deref(),
        ));
        let lessor = cairn_lease::Lessor::new(
            cairn_lease::LessorConfig {
                min_ttl: cairn_lease::min_ttl(cfg.heartbeat_interval, cfg.election_timeout),
                checkpoint_interval: cfg.lease_checkpoint_interval,
            },
            Arc::new(cairn_lease::SystemClock),
        );
        let leases = Arc::new(crate::lease::Leases::new(
            lessor,
            member_id,
            cfg.election_timeout,
            metrics.lease.clone(),
        ));
        leases.reload(&store)?;
        let waiters = Arc::new(Waiters::default());
        let (durable_tx, mut durable_rx) = watch::channel(store.applied_index());
        let watch = Arc::new(crate::watch::WatchHub::new(store.current_revision()));
        let applier = crate::apply::Applier {
            watch: watch.clone(),
            store: store.clone(),
            waiters: waiters.clone(),
            alarms: alarms.clone(),
            metrics: metrics.clone(),
            members: members.clone(),
            peers: peer_set.clone(),
            leases: leases.clone(),
            durable_tx,
            last_durable: Instant::now(),
            member_id,
            data_dir: cfg.data_dir.clone(),
        };
        let election_tick = (cfg.election_timeout.as_millis()
            / cfg.heartbeat_interval.as_millis().max(1))
        .max(2) as usize;
        let raft_cfg = RaftConfig {
            id: member_id,
            // A joining member learns the voters from the leader's snapshot.
            voters: if joining {
                vec![]
            } else {
                peers.iter().map(|(id, _)| *id).collect()
            },
            dir: cfg.data_dir.join(RAFT_DIR),
            tick_interval: cfg.heartbeat_interval,
            manual_ticks: false,
            election_tick,
            heartbeat_tick: 1,
            applied: store.applied_index(),
            sync_observer: Some({
                let h = metrics.wal_fsync_duration.clone();
                cairn_raft::SyncObserver(Arc::new(move |d| h.observe(d.as_secs_f64())))
            }),
            // The backend is durable by itself, so etcd's "snapshot" is the durable applied
            // index; every --snapshot-count entries past it the log is compacted, keeping
            // --experimental-snapshot-catchup-entries behind it for slow members.
            log_retain_entries: cfg.snapshot_catchup_entries,
            log_compact_step: cfg.snapshot_count.max(1),
            force_new_cluster: cfg.force_new_cluster,
        };
        let raft = cairn_raft::start(raft_cfg, applier, peer_set.clone())?;
        let applied_rx = raft.applied_index();
        let _ = raft_cell.set(raft.clone());
        {
            // Let the Raft log be purged behind each durable backend commit.
            let raft = raft.clone();
            std::thread::Builder::new()
                .name("cairn-log-purge".into())
                .spawn(move || {
                    while durable_rx.blocking_recv_changed() {
                        raft.set_durable_applied(*durable_rx.borrow_and_update());
                    }
                })?;
        }
        metrics
            .quota_backend_bytes
            .set(cfg.quota_backend_bytes as i64);
        metrics
            .server_version
            .with_label_values(&[crate::config::ETCD_API_VERSION])
            .set(1);
        metrics
            .cluster_version
            .with_label_values(&[crate::config::ETCD_CLUSTER_VERSION])
            .set(1);
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        let member = MemberInfo {
            id: member_id,
            name: cfg.name.clone(),
            peer_urls: cfg.initial_advertise_peer_urls.clone(),
            client_urls: cfg.advertise_client_urls.clone(),
        };
        Ok(Arc::new(Server {
            cfg,
            store,
            reads: crate::read_barrier::ReadBarrier::new(raft.clone()),
            raft,
            member,
            cluster_id,
            waiters,
            alarms,
            members,
            peers: peer_set,
            metrics,
            leases,
            watch,
            applied_rx,
            next_id: AtomicU64::new(seed),
            started,
        }))
    }

    /// Waits until this member knows a leader and has applied what it committed at start.
    pub async fn wait_ready(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            let st = self.raft.status();
            if st.leader_id != 0 && self.applied_index() >= st.commit_index {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        false
    }

    /// The Raft index the store has applied.
    pub fn applied_index(&self) -> u64 {
        *self.applied_rx.borrow()
    }

    /// How long a proposal may wait for its result, as etcd computes it.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(5) + 2 * self.cfg.election_timeout
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

    /// Refuses a request larger than gRPC would accept from etcd (`--max-request-bytes`
    /// plus framing room), with grpc-go's words.
    pub fn check_size<M: Message>(&self, req: M) -> Result<M, tonic::Status> {
        let len = req.encoded_len();
        let max = self.cfg.max_request_bytes as usize + GRPC_OVERHEAD_BYTES;
        if len > max {
            return Err(tonic::Status::resource_exhausted(format!(
                "grpc: received message larger than max ({len} vs. {max})"
            )));
        }
        Ok(req)
    }

    /// Proposes a request through Raft and waits for the applier's answer.
    pub async fn propose(&self, request: Request) -> Result<ApplyResult, EtcdError> {
        let st = self.raft.status();
        if st.commit_index > self.applied_index() + MAX_APPLY_GAP {
            return Err(EtcdError::TooManyRequests);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let data = InternalRequest {
            id,
            request: Some(request),
        }
        .encode_to_vec();
        if data.len() as u64 > self.cfg.max_request_bytes {
            return Err(EtcdError::RequestTooLarge);
        }
        let deadline = Instant::now() + self.request_timeout();
        // As etcd, a proposal waits for a leader for as long as it may wait at all.
        if !self.wait_for_leader(deadline).await {
            self.metrics.proposals_failed.inc();
            return Err(EtcdError::ProposalDeadline);
        }
        let rx = self.waiters.register(id);
        if let Err(e) = self.raft.propose(data) {
            return Err(self.proposal_failed(id, e));
        }
        self.await_applied(id, rx, deadline).await
    }

    /// Waits until some member leads, or `deadline` passes; says whether one does.
    pub async fn wait_for_leader(&self, deadline: Instant) -> bool {
        loop {
            if self.raft.status().leader_id != 0 {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(LEADER_POLL).await;
        }
    }

    fn proposal_failed(&self, id: u64, e: cairn_raft::RaftError) -> EtcdError {
        self.waiters.remove(id);
        self.metrics.proposals_failed.inc();
        match e {
            cairn_raft::RaftError::NoLeader => EtcdError::NoLeader,
            _ => EtcdError::Stopped,
        }
    }

    /// Waits for the applier's answer to proposal `id`, up to `deadline`.
    async fn await_applied(
        &self,
        id: u64,
        rx: tokio::sync::oneshot::Receiver<Result<ApplyResult, EtcdError>>,
        deadline: Instant,
    ) -> Result<ApplyResult, EtcdError> {
        self.metrics.proposals_pending.inc();
        let term_at_start = self.raft.status().term;
        let outcome = tokio::time::timeout_at(deadline.into(), rx).await;
        self.metrics.proposals_pending.dec();
        match outcome {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(EtcdError::Stopped),
            Err(_) => {
                self.waiters.remove(id);
                self.metrics.proposals_failed.inc();
                // The write may or may not have been applied; say why it is unknown, as
                // etcd does: a new term began while it waited, or nothing more is known.
                if self.raft.status().term != term_at_start {
                    Err(EtcdError::TimeoutDueToLeaderFail)
                } else {
                    Err(EtcdError::Timeout)
                }
            }
        }
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
                Err(ReadFailure::Raft(cairn_raft::RaftError::NoLeader))
                    if self.wait_for_leader(deadline).await => {}
                Err(ReadFailure::Raft(cairn_raft::RaftError::NoLeader) | ReadFailure::TimedOut) => {
                    return Err(EtcdError::Timeout)
                }
                Err(ReadFailure::Raft(_)) => return Err(EtcdError::Stopped),
            }
        };
        if self.applied_index() >= index {
            return Ok(());
        }
        let mut rx = self.applied_rx.clone();
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

    /// Proposes a membership change for `member` (add, promote or remove) and waits until it
    /// is applied; returns the members after it.
    pub async fn change_membership(
        &self,
        change: cairn_raft::Change,
        member: cairn_proto::etcdserverpb::Member,
    ) -> Result<Vec<cairn_proto::etcdserverpb::Member>, EtcdError> {
        let waiter = self.next_id.fetch_add(1, Ordering::Relaxed);
        let id = member.id;
        let context = cairn_proto::cairnpb::MemberChange {
            waiter,
            member: Some(member),
        };
        let deadline = Instant::now() + self.request_timeout();
        if !self.wait_for_leader(deadline).await {
            self.metrics.proposals_failed.inc();
            return Err(EtcdError::ProposalDeadline);
        }
        let rx = self.waiters.register(waiter);
        if let Err(e) = self
            .raft
            .propose_membership(change, id, context.encode_to_vec())
        {
            return Err(self.proposal_failed(waiter, e));
        }
        match self.await_applied(waiter, rx, deadline).await? {
            ApplyResult::Members(list) => Ok(list),
            _ => Err(EtcdError::Stopped),
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
        self.raft
            .transfer_leader(target)
            .map_err(|_| EtcdError::Stopped)?;
        let deadline = Instant::now() + self.request_timeout();
        while Instant::now() < deadline {
            if self.raft.status().leader_id == target {
                tracing::info!(
                    from = %format!("{:x}", self.member.id),
                    to = %format!("{target:x}"),
                    "leadership transferred"
                );
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Err(EtcdError::TimeoutLeaderTransfer)
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

    /// Raises the NOSPACE alarm for this member through Raft.
    pub async fn raise_no_space(&self) {
        let req = AlarmRequest {
            action: AlarmAction::Activate as i32,
            member_id: self.member.id,
            alarm: AlarmType::Nospace as i32,
        };
        if let Err(e) = self.propose(Request::Alarm(req)).await {
            tracing::warn!(error = %e, "failed to raise the NOSPACE alarm");
        } else {
            tracing::warn!(
                quota_size_bytes = self.cfg.quota_backend_bytes,
                current_size_bytes = self.store.db_size(),
                "alarm NOSPACE raised: backend quota exceeded"
            );
        }
    }

    /// Checks the backend quota before a write that costs `cost` bytes, raising NOSPACE when
    /// it would be exceeded, as etcd's quota does.
    pub async fn check_quota(&self, cost: u64) -> Result<(), EtcdError> {
        if cost == 0 {
            return Ok(());
        }
        if self.store.db_size() + cost < self.cfg.quota_backend_bytes {
            return Ok(());
        }
        self.raise_no_space().await;
        Err(EtcdError::NoSpace)
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
    }

    /// Stops Raft and the applier.
    pub fn stop(&self) {
        self.raft.stop();
    }

    /// Where the data directory is.
    pub fn data_dir(&self) -> PathBuf {
        self.cfg.data_dir.clone()
    }
}

/// Extension used by the purge thread: blocks until the value changes; false once the
/// sender is gone.
trait BlockingChanged {
    fn blocking_recv_changed(&mut self) -> bool;
}

impl BlockingChanged for watch::Receiver<u64> {
    fn blocking_recv_changed(&mut self) -> bool {
        futures::executor::block_on(self.changed()).is_ok()
    }
}
