//! The applier: turns committed Raft entries into MVCC writes and answers the waiting
//! requests.
//!
//! It runs on the Raft driver's apply thread. Each call applies a whole batch of entries in
//! one backend transaction that also records the applied index, so a crash replays from
//! exactly where the last durable commit stopped. Most commits skip the fsync (the Raft log
//! is the durability point); one in every [`DURABLE_EVERY`] is made durable, and only then
//! may the Raft log be purged behind it. When writes pause, the last batches are made
//! durable [`DURABLE_EVERY`] after the last durable commit by an empty durable commit:
//! until then their pages sit in the backend's write buffer, so the file (and the size
//! Status, the metrics and the quota read from it) would not show them.
//!
//! An error that leaves the store unusable is returned to the Raft driver, which stops;
//! nothing here ends the process. A committed entry that does not decode is no such error:
//! it is the same bytes on every member, which all skip it (logged and counted).
//!
//! Owns the order of effects after a commit (watch hub, then waiters). Must not propose
//! anything or wait on the network: it runs on the apply thread, which Raft waits for.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_mvcc::{LeaseLookup, Store};
use cairn_proto::cairnpb::{internal_request::Request, InternalRequest, MemberChange};
use cairn_proto::etcdserverpb::{
    alarm_request::AlarmAction, AlarmMember, AlarmRequest, AlarmResponse, AlarmType,
    CompactionResponse, ResponseHeader,
};
use cairn_proto::EtcdError;
use cairn_raft::{ApplyError, Change, Committed, MembershipChange, Payload};
use prost::Message;
use tokio::sync::watch;

use crate::cluster::{Members, PeerDirectory};
use crate::lease::Leases;
use crate::metrics::Metrics;
use crate::proposal::{ApplyResult, Waiters};
use crate::watch::WatchHub;
use alarm::Alarms;

pub mod alarm;
pub mod auth;

/// How the temporary directory of a Raft snapshot's backend copy (made or installed) in the
/// data directory begins; one left by a crash is removed at start (`server/data_dir.rs`).
pub(crate) const RAFT_SNAPSHOT_COPY_PREFIX: &str = "raft-snapshot-";

/// The longest a non-durable backend commit may stay the newest one.
pub const DURABLE_EVERY: Duration = Duration::from_millis(500);

/// What the applier works on and tells.
pub struct ApplierParts {
    pub store: Arc<Store>,
    /// Where each proposal's result goes.
    pub waiters: Arc<Waiters>,
    pub alarms: Arc<Alarms>,
    pub members: Arc<Members>,
    /// Where Raft messages go; follows membership changes.
    pub peers: Arc<dyn PeerDirectory>,
    /// The lessor: lease entries, the leases puts refer to, keys attached to leases.
    pub leases: Arc<Leases>,
    pub metrics: Arc<Metrics>,
    /// Told of each batch's events once they are committed.
    pub watch: Arc<WatchHub>,
    /// Raised to the applied index of each durable commit; the Raft log may be purged up
    /// to it.
    pub durable_tx: watch::Sender<u64>,
    /// This member's id, kept in the backend across snapshot restores.
    pub member_id: u64,
    /// Where snapshot files are staged.
    pub data_dir: std::path::PathBuf,
    /// Users, roles and tokens: Auth requests change it, every request is checked by it.
    pub auth: Arc<cairn_auth::AuthStore>,
}

/// Applies committed entries to the store.
pub struct Applier {
    store: Arc<Store>,
    waiters: Arc<Waiters>,
    alarms: Arc<Alarms>,
    members: Arc<Members>,
    peers: Arc<dyn PeerDirectory>,
    leases: Arc<Leases>,
    metrics: Arc<Metrics>,
    watch: Arc<WatchHub>,
    durable_tx: watch::Sender<u64>,
    member_id: u64,
    data_dir: std::path::PathBuf,
    auth: Arc<cairn_auth::AuthStore>,
    /// When the last durable backend commit was made.
    last_durable: Instant,
    /// Whether a commit since then was not durable.
    undurable: bool,
}

impl Applier {
    pub fn new(p: ApplierParts) -> Applier {
        Applier {
            store: p.store,
            waiters: p.waiters,
            alarms: p.alarms,
            members: p.members,
            peers: p.peers,
            leases: p.leases,
            metrics: p.metrics,
            watch: p.watch,
            durable_tx: p.durable_tx,
            member_id: p.member_id,
            data_dir: p.data_dir,
            auth: p.auth,
            last_durable: Instant::now(),
            undurable: false,
        }
    }

    /// Records a durable commit (or restore) that made everything up to `index` durable:
    /// the Raft log may be purged up to it.
    fn made_durable(&mut self, index: u64) {
        self.last_durable = Instant::now();
        self.undurable = false;
        self.durable_tx.send_replace(index);
    }
}

/// The name etcd's apply-duration metric gives a request: its field of etcd's
/// `InternalRaftRequest` (`ClusterMemberAttrSet` for a member publishing itself).
fn op_name(req: &Request) -> &'static str {
    match req {
        Request::Put(_) => "Put",
        Request::DeleteRange(_) => "DeleteRange",
        Request::Txn(_) => "Txn",
        Request::Compaction(_) => "Compaction",
        Request::Alarm(_) => "Alarm",
        Request::Range(_) => "Range",
        Request::Publish(_) => "ClusterMemberAttrSet",
        Request::MemberUpdate(_) => "MemberUpdate",
        Request::LeaseGrant(_) => "LeaseGrant",
        Request::LeaseRevoke(_) => "LeaseRevoke",
        Request::LeaseCheckpoint(_) => "LeaseCheckpoint",
        Request::AuthEnable(_) => "AuthEnable",
        Request::AuthDisable(_) => "AuthDisable",
        Request::AuthStatus(_) => "AuthStatus",
        Request::Authenticate(_) => "Authenticate",
        Request::UserAdd(_) => "AuthUserAdd",
        Request::UserDelete(_) => "AuthUserDelete",
        Request::UserChangePassword(_) => "AuthUserChangePassword",
        Request::UserGrantRole(_) => "AuthUserGrantRole",
        Request::UserRevokeRole(_) => "AuthUserRevokeRole",
        Request::UserGet(_) => "AuthUserGet",
        Request::UserList(_) => "AuthUserList",
        Request::RoleAdd(_) => "AuthRoleAdd",
        Request::RoleGet(_) => "AuthRoleGet",
        Request::RoleList(_) => "AuthRoleList",
        Request::RoleDelete(_) => "AuthRoleDelete",
        Request::RoleGrantPermission(_) => "AuthRoleGrantPermission",
        Request::RoleRevokePermission(_) => "AuthRoleRevokePermission",
    }
}

/// What applying one request produced.
type Outcome = Result<ApplyResult, EtcdError>;

impl Applier {
    fn apply_one(
        &self,
        batch: &mut cairn_mvcc::ApplyBatch<'_>,
        req: Request,
        who: Option<&cairn_auth::AuthInfo>,
        index: u64,
        leases: &dyn LeaseLookup,
    ) -> Result<Outcome, cairn_mvcc::MvccError> {
        let mvcc = |r: Result<ApplyResult, cairn_mvcc::MvccError>| -> Result<Outcome, _> {
            match r {
                Ok(v) => Ok(Ok(v)),
                Err(e) => match e.etcd() {
                    Some(etcd) => Ok(Err(etcd)),
                    None => Err(e),
                },
            }
        };
        if self.alarms.corrupt() && refused_when_corrupt(&req) {
            return Ok(Err(EtcdError::Corrupt));
        }
        if let Err(e) = auth::check(&self.auth, &self.leases, who, &req) {
            return Ok(Err(e));
        }
        if let Some(outcome) = auth::apply(&self.auth, batch, &req, index) {
            return Ok(outcome);
        }
        Ok(match req {
            Request::Put(p) => {
                if self.alarms.no_space() {
                    return Ok(Err(EtcdError::NoSpace));
                }
                self.metrics.put_total.inc();
                self.metrics
                    .more
                    .total_put_size
                    .add((p.key.len() + p.value.len()) as i64);
                mvcc(batch.put(&p, leases).map(ApplyResult::Put))?
            }
            Request::DeleteRange(d) => {
                self.metrics.delete_total.inc();
                mvcc(batch.delete_range(&d).map(ApplyResult::Delete))?
            }
            Request::Txn(t) => {
                if self.alarms.no_space() && crate::validate::txn_has_put(&t) {
                    return Ok(Err(EtcdError::NoSpace));
                }
                self.metrics.txn_total.inc();
                mvcc(batch.txn(&t, leases).map(ApplyResult::Txn))?
            }
            Request::Range(r) => {
                self.metrics.range_total.inc();
                self.metrics.more.debugging_range_total.inc();
                mvcc(batch.range(&r).map(ApplyResult::Range))?
            }
            Request::Compaction(c) => mvcc(batch.compact(c.revision).map(|()| {
                ApplyResult::Compact(CompactionResponse {
                    header: Some(ResponseHeader::default()),
                })
            }))?,
            Request::Alarm(a) => Ok(ApplyResult::Alarm(self.apply_alarm(batch, &a)?)),
            Request::MemberUpdate(u) => {
                if self.members.update_peer_urls(u.id, &u.peer_ur_ls) {
                    self.peers.set_peer(u.id, &u.peer_ur_ls);
                    batch.put_meta(crate::cluster::META_KEY, &self.members.encode())?;
                }
                Ok(ApplyResult::Members(self.members.list()))
            }
            Request::LeaseGrant(g) => {
                if self.alarms.no_space() {
                    return Ok(Err(EtcdError::NoSpace));
                }
                self.leases.grant(batch, &g)?
            }
            Request::LeaseRevoke(r) => self.leases.revoke(batch, &r)?,
            Request::LeaseCheckpoint(c) => self.leases.checkpoint(batch, &c)?,
            Request::Publish(attrs) => {
                if self.members.publish(&attrs) {
                    batch.put_meta(crate::cluster::META_KEY, &self.members.encode())?;
                }
                Ok(ApplyResult::Published)
            }
            // Applied by `auth::apply` above.
            Request::AuthEnable(_)
            | Request::AuthDisable(_)
            | Request::AuthStatus(_)
            | Request::Authenticate(_)
            | Request::UserAdd(_)
            | Request::UserDelete(_)
            | Request::UserChangePassword(_)
            | Request::UserGrantRole(_)
            | Request::UserRevokeRole(_)
            | Request::UserGet(_)
            | Request::UserList(_)
            | Request::RoleAdd(_)
            | Request::RoleGet(_)
            | Request::RoleList(_)
            | Request::RoleDelete(_)
            | Request::RoleGrantPermission(_)
            | Request::RoleRevokePermission(_) => Err(EtcdError::Stopped),
        })
    }

    fn apply_alarm(
        &self,
        batch: &mut cairn_mvcc::ApplyBatch<'_>,
        a: &AlarmRequest,
    ) -> Result<AlarmResponse, cairn_mvcc::MvccError> {
        let kind = AlarmType::try_from(a.alarm).unwrap_or(AlarmType::None);
        let mut resp = AlarmResponse {
            header: Some(ResponseHeader::default()),
            alarms: vec![],
        };
        let member = AlarmMember {
            member_id: a.member_id,
            alarm: a.alarm,
        };
        match AlarmAction::try_from(a.action) {
            Ok(AlarmAction::Get) => resp.alarms = self.alarms.get(kind),
            Ok(AlarmAction::Activate) => {
                if kind != AlarmType::None && self.alarms.activate(member) {
                    tracing::warn!(
                        alarm = kind.as_str_name(),
                        from = %format!("{:x}", a.member_id),
                        "alarm raised"
                    );
                    resp.alarms.push(member);
                    batch.put_meta(alarm::META_KEY, &self.alarms.encode())?;
                }
            }
            Ok(AlarmAction::Deactivate) => {
                if self.alarms.deactivate(&member) {
                    tracing::warn!(
                        alarm = kind.as_str_name(),
                        from = %format!("{:x}", a.member_id),
                        "alarm disarmed"
                    );
                    resp.alarms.push(member);
                    batch.put_meta(alarm::META_KEY, &self.alarms.encode())?;
                }
            }
            Err(_) => {}
        }
        Ok(resp)
    }
}

impl Applier {
    /// Records a committed membership change (Raft itself has applied it already) and
    /// returns the answer for the request waiting on it.
    fn apply_membership(
        &self,
        batch: &mut cairn_mvcc::ApplyBatch<'_>,
        index: u64,
        cc: &MembershipChange,
    ) -> Result<Option<(u64, Outcome)>, cairn_mvcc::MvccError> {
        let change = match MemberChange::decode(cc.context.as_ref()) {
            Ok(change) => change,
            Err(e) => {
                self.skip_undecodable(index, &e);
                return Ok(None);
            }
        };
        let mut changed = false;
        for &(kind, id) in &cc.changes {
            match kind {
                Change::AddVoter | Change::AddLearner | Change::Promote => {
                    let Some(member) = change.member.clone() else {
                        continue;
                    };
                    if self.members.add_or_promote(&member) {
                        changed = true;
                        self.peers.set_peer(member.id, &member.peer_ur_ls);
                        tracing::info!(
                            added_member_id = %format!("{:x}", member.id),
                            is_learner = member.is_learner,
                            peer_urls = %member.peer_ur_ls.join(","),
                            "added or promoted member"
                        );
                    }
                }
                Change::Remove => {
                    if self.members.remove(id) {
                        changed = true;
                        self.peers.remove_peer(id);
                        tracing::info!(removed_member_id = %format!("{id:x}"), "removed member");
                        if id == self.member_id {
                            tracing::warn!(
                                "the member has been permanently removed from the cluster"
                            );
                        }
                    }
                }
            }
        }
        if changed {
            batch.put_meta(crate::cluster::META_KEY, &self.members.encode())?;
        }
        Ok((change.waiter != 0)
            .then(|| (change.waiter, Ok(ApplyResult::Members(self.members.list())))))
    }

    /// Skips a committed entry whose request does not decode. The same bytes are in every
    /// member's log, so every member skips it alike, and no input can make the cluster's
    /// members fail on it, again at every restart. cairn's own request path proposes only
    /// requests that decode, so one that does not is a stranger's, or a bug: said loudly.
    fn skip_undecodable(&self, index: u64, why: &dyn std::fmt::Display) {
        self.metrics.undecodable_entries.inc();
        tracing::error!(index, error = %why, "skipped a committed entry that does not decode");
    }

    /// Builds a snapshot's bytes through a scratch copy in the data directory (named
    /// `raft-snapshot-*`, as `restore_bytes`'s; a crash's leftovers are removed at start by
    /// `server/data_dir.rs`).
    fn snapshot_bytes(&self) -> Result<Vec<u8>, cairn_mvcc::MvccError> {
        let tmp = tempfile::Builder::new()
            .prefix(RAFT_SNAPSHOT_COPY_PREFIX)
            .tempdir_in(&self.data_dir)?;
        let path = tmp.path().join("snapshot.redb");
        self.store.snapshot_to(&path)?;
        Ok(std::fs::read(&path)?)
    }

    fn restore_bytes(&self, data: &[u8], index: u64) -> Result<(), cairn_mvcc::MvccError> {
        let tmp = tempfile::Builder::new()
            .prefix(RAFT_SNAPSHOT_COPY_PREFIX)
            .tempdir_in(&self.data_dir)?;
        let path = tmp.path().join("snapshot.redb");
        std::fs::write(&path, data)?;
        // The snapshot carries the sender's records; this member keeps its own id, written
        // in the same transaction, so a crash cannot leave the sender's id in its place.
        let me = self.member_id.to_be_bytes();
        self.store.restore_keeping(
            &path,
            &[(cairn_migrate::layout::MEMBER_ID_KEY, me.as_slice())],
            Some(index),
        )?;
        self.alarms
            .reload(self.store.meta(alarm::META_KEY)?.as_deref());
        self.members
            .reload(self.store.meta(crate::cluster::META_KEY)?.as_deref());
        self.leases.reload(&self.store)?;
        if let Err(e) = auth::load(&self.auth, &self.store) {
            return Err(cairn_mvcc::MvccError::Corrupt(e.to_string()));
        }
        self.watch.restored(self.store.current_revision());
        for (id, urls) in self.members.peers() {
            self.peers.set_peer(id, &urls);
        }
        Ok(())
    }
}

impl cairn_raft::Applier for Applier {
    fn snapshot(&mut self) -> Result<Vec<u8>, ApplyError> {
        let started = Instant::now();
        let data = self.snapshot_bytes()?;
        tracing::info!(
            applied_index = self.store.applied_index(),
            size_bytes = data.len(),
            took = ?started.elapsed(),
            "built a snapshot for a lagging member"
        );
        Ok(data)
    }

    fn idle_after(&self) -> Option<Duration> {
        self.undurable
            .then(|| DURABLE_EVERY.saturating_sub(self.last_durable.elapsed()))
    }

    /// Writes have paused with the last batches not durable: an empty durable commit makes
    /// them so.
    fn idle(&mut self) -> Result<(), ApplyError> {
        if !self.undurable {
            return Ok(());
        }
        let batch = self
            .store
            .begin_apply()
            .map_err(|e| failed("begin a durable commit", e))?;
        batch
            .commit(true)
            .map_err(|e| failed("make the applied batches durable", e))?;
        self.made_durable(self.store.applied_index());
        Ok(())
    }

    fn restore(&mut self, data: &[u8], index: u64, term: u64) -> Result<(), ApplyError> {
        let started = Instant::now();
        let applying = &self.metrics.more.snapshot_applying;
        applying.set(1);
        let restored = self.restore_bytes(data, index);
        applying.set(0);
        restored?;
        self.made_durable(index);
        tracing::info!(
            snapshot_index = index,
            snapshot_term = term,
            size_bytes = data.len(),
            took = ?started.elapsed(),
            "applied snapshot from the leader"
        );
        Ok(())
    }

    fn apply(&mut self, entries: Vec<Committed>) -> Result<(), ApplyError> {
        let Some(last) = entries.last().map(|e| e.index) else {
            return Ok(());
        };
        if last <= self.store.applied_index() {
            return Ok(());
        }
        let started = Instant::now();
        let mut batch = self
            .store
            .begin_apply()
            .map_err(|e| failed("begin a backend transaction", e))?;
        let mut answers: Vec<(u64, Outcome)> = Vec::with_capacity(entries.len());
        let applied_before = self.store.applied_index();
        for entry in entries {
            if entry.index <= applied_before {
                continue;
            }
            self.leases.applying(entry.term);
            let data = match &entry.payload {
                Payload::Empty => continue,
                Payload::Membership(cc) => {
                    let answer = self
                        .apply_membership(&mut batch, entry.index, cc)
                        .map_err(|e| failed("apply a membership change", e))?;
                    answers.extend(answer);
                    continue;
                }
                Payload::Data(data) => data,
            };
            let req = match InternalRequest::decode(data.as_ref()) {
                Ok(req) => req,
                Err(e) => {
                    self.skip_undecodable(entry.index, &e);
                    continue;
                }
            };
            let Some(inner) = req.request else { continue };
            let who = auth::caller(req.auth.as_ref());
            let mark = batch.change_mark();
            let op = op_name(&inner);
            let began = Instant::now();
            let outcome = self
                .apply_one(
                    &mut batch,
                    inner,
                    who.as_ref(),
                    entry.index,
                    &self.leases.lookup(),
                )
                .map_err(|e| failed("apply a committed entry", e))?;
            self.metrics.applied(op, outcome.is_ok(), began.elapsed());
            self.leases.attach_since(&batch, mark);
            if req.id != 0 {
                answers.push((req.id, outcome));
            }
        }
        batch.set_applied_index(last);
        let durable = self.last_durable.elapsed() >= DURABLE_EVERY;
        let events = batch
            .commit(durable)
            .map_err(|e| failed("commit to the backend", e))?;
        // Readers see the batch now; the hub hands its events on without waiting.
        self.watch.publish(events, self.store.current_revision());
        self.metrics
            .backend_commit_duration
            .observe(started.elapsed().as_secs_f64());
        if durable {
            self.made_durable(last);
        } else {
            self.undurable = true;
        }
        self.metrics.proposals_applied.set(last as i64);
        for (id, outcome) in answers {
            self.waiters.fire(id, outcome);
        }
        Ok(())
    }
}

/// Whether a request is refused while a CORRUPT alarm is active: what reads or changes
/// the keys and leases, as etcd 3.5's corrupt applier refuses it. Alarms, membership and
/// lease checkpoints go on, so an operator can disarm the alarm.
fn refused_when_corrupt(req: &Request) -> bool {
    matches!(
        req,
        Request::Put(_)
            | Request::DeleteRange(_)
            | Request::Txn(_)
            | Request::Range(_)
            | Request::Compaction(_)
            | Request::LeaseGrant(_)
            | Request::LeaseRevoke(_)
    )
}

/// An error that leaves the store unusable: the driver stops, and the member with it. The
/// Raft log holds every acknowledged write, so a restart replays what the backend lost.
#[derive(Debug, thiserror::Error)]
#[error("failed to {what}: {cause}")]
pub struct ApplyFailed {
    what: String,
    cause: Box<dyn std::error::Error + Send + Sync>,
}

fn failed(what: &str, cause: impl std::error::Error + Send + Sync + 'static) -> ApplyFailed {
    ApplyFailed {
        what: what.to_string(),
        cause: Box::new(cause),
    }
}
