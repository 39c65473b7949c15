//! The apply thread: hands committed entries to the state machine, in log order, and
//! builds and restores the state machine's snapshots.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender};
use protobuf::Message as _;
use raft::eraftpb::{ConfChange, ConfChangeType, ConfChangeV2, Entry, EntryType, Snapshot};

use crate::msg::Msg;
use crate::shared::Shared;

/// What a state machine may fail with; the driver stops on it (see [`Applier`]).
pub type ApplyError = Box<dyn std::error::Error + Send + Sync>;

/// A state machine that does not build or restore snapshots.
#[derive(Debug, thiserror::Error)]
#[error("the state machine cannot {0} snapshots")]
pub struct SnapshotsUnsupported(&'static str);

/// One committed log entry, decoded for the state machine.
#[derive(Debug, Clone, PartialEq)]
pub struct Committed {
    pub index: u64,
    /// The term the entry was proposed in.
    pub term: u64,
    pub payload: Payload,
}

impl Committed {
    /// The proposed bytes, for an entry that carries some.
    pub fn data(&self) -> Option<&Bytes> {
        match &self.payload {
            Payload::Data(d) => Some(d),
            _ => None,
        }
    }
}

/// What a committed entry carries.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    /// The empty entry each new leader appends.
    Empty,
    /// The bytes given to [`crate::RaftHandle::propose`].
    Data(Bytes),
    /// A membership change from [`crate::RaftHandle::propose_membership`]. Raft has applied
    /// it already when the state machine sees it.
    Membership(MembershipChange),
}

/// A change to who takes part in Raft, as proposed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Add a voter.
    AddVoter,
    /// Add a learner: it receives the log but neither votes nor counts for a quorum.
    AddLearner,
    /// Make a learner a voter. Raft records it as adding a voter, so the state machine
    /// sees it as [`Change::AddVoter`].
    Promote,
    /// Remove a voter or a learner.
    Remove,
}

/// A committed membership change: what changed for which members, and the context the
/// proposer attached.
#[derive(Debug, Clone, PartialEq)]
pub struct MembershipChange {
    /// `(change, member id)`, in the order they take effect. Never [`Change::Promote`].
    pub changes: Vec<(Change, u64)>,
    pub context: Bytes,
}

/// Why a committed entry could not be decoded.
#[derive(Debug, thiserror::Error)]
#[error("undecodable membership change at index {index}: {reason}")]
pub struct UndecodableEntry {
    index: u64,
    reason: String,
}

/// raft-rs's conf change for proposing `change` of member `id`.
pub(crate) fn conf_change(change: Change, id: u64, context: Vec<u8>) -> ConfChangeV2 {
    let mut single = raft::eraftpb::ConfChangeSingle::default();
    single.set_change_type(match change {
        Change::AddVoter | Change::Promote => ConfChangeType::AddNode,
        Change::AddLearner => ConfChangeType::AddLearnerNode,
        Change::Remove => ConfChangeType::RemoveNode,
    });
    single.node_id = id;
    let mut cc = ConfChangeV2::default();
    cc.mut_changes().push(single);
    cc.context = context.into();
    cc
}

fn change_of(t: ConfChangeType) -> Change {
    match t {
        ConfChangeType::AddNode => Change::AddVoter,
        ConfChangeType::AddLearnerNode => Change::AddLearner,
        ConfChangeType::RemoveNode => Change::Remove,
    }
}

/// Decodes a committed entry for the state machine. A membership change that does not
/// decode is the same bytes in every member's log, so every member takes it for an empty
/// entry alike (logged at error level; the Raft thread skips it too), rather than stopping
/// on it, and again at every restart. raft-rs's leader refuses such a proposal, so only a
/// forged append can put one in a log.
fn decode(e: Entry) -> Committed {
    let (index, term) = (e.index, e.term);
    let undecodable = |err: protobuf::ProtobufError| {
        let why = UndecodableEntry {
            index,
            reason: err.to_string(),
        };
        tracing::error!(index, error = %why, "skipped a committed entry that does not decode");
        Payload::Empty
    };
    let payload = match e.get_entry_type() {
        _ if e.data.is_empty() => Payload::Empty,
        EntryType::EntryNormal => Payload::Data(e.data),
        EntryType::EntryConfChangeV2 => match ConfChangeV2::parse_from_bytes(&e.data) {
            Ok(cc) => Payload::Membership(MembershipChange {
                changes: cc
                    .changes
                    .iter()
                    .map(|c| (change_of(c.get_change_type()), c.node_id))
                    .collect(),
                context: cc.context,
            }),
            Err(err) => undecodable(err),
        },
        EntryType::EntryConfChange => match ConfChange::parse_from_bytes(&e.data) {
            Ok(cc) => Payload::Membership(MembershipChange {
                changes: vec![(change_of(cc.get_change_type()), cc.node_id)],
                context: cc.context,
            }),
            Err(err) => undecodable(err),
        },
    };
    Committed {
        index,
        term,
        payload,
    }
}

/// The state machine side of the driver.
///
/// An error from any of its methods stops the driver: the Raft thread syncs the log and
/// exits, nothing more is applied, and [`crate::RaftHandle::stopped`] reports the error.
/// Every committed entry is still in the log, so a restart delivers again what the state
/// machine did not make durable.
pub trait Applier: Send + 'static {
    /// Applies committed entries, in log order, on the dedicated apply thread.
    ///
    /// Gets every committed entry: proposals, the empty entry each new leader appends,
    /// and membership changes (the driver has already applied those to Raft; the state
    /// machine records who the members are). Several committed batches may arrive merged
    /// in one call. When it returns `Ok`, the entries count as applied and the driver
    /// reports that to raft-rs.
    fn apply(&mut self, entries: Vec<Committed>) -> Result<(), ApplyError>;

    /// Returns the whole state machine as of everything applied so far, to send to a
    /// member that lags behind the log. Called on the apply thread between `apply` calls,
    /// only on a leader that has a lagging member. The bytes are held in memory while
    /// they are being sent. An error here does not stop the driver: the member stays
    /// behind, and raft-rs asks again later. The default refuses: such a member then never
    /// catches up.
    fn snapshot(&mut self) -> Result<Vec<u8>, ApplyError> {
        Err(Box::new(SnapshotsUnsupported("build")))
    }

    /// Replaces the whole state machine with `data` from another member's
    /// [`Self::snapshot`], taken at log `index` (written in `term`). Afterwards the
    /// applied index is `index`, and the next `apply` continues at `index + 1`. It should
    /// be durable when this returns: the log before `index` is gone. The default refuses.
    fn restore(&mut self, data: &[u8], index: u64, term: u64) -> Result<(), ApplyError> {
        let _ = (data, index, term);
        Err(Box::new(SnapshotsUnsupported("restore")))
    }

    /// How long the apply thread may wait for more entries before it calls [`Self::idle`]
    /// (`None`: as long as it takes). Asked each time the thread is about to wait.
    fn idle_after(&self) -> Option<std::time::Duration> {
        None
    }

    /// Called on the apply thread when no entries came for [`Self::idle_after`], and once
    /// more when the driver stops after the last entries were applied: for work left to
    /// finish once writes pause (making the last applied batches durable). An error while
    /// running stops the driver, as one from `apply` does; one at stop is logged.
    fn idle(&mut self) -> Result<(), ApplyError> {
        Ok(())
    }
}

/// Work for the apply thread, in log order.
#[derive(Debug)]
pub(crate) enum ApplyTask {
    Entries(Vec<Entry>),
    /// Replace the state machine with a snapshot received from the leader.
    Restore(Snapshot),
    /// Build a snapshot at the current applied index and send it back as
    /// [`Msg::SnapshotBuilt`].
    Build,
}

/// Caps how many entries one `apply` call receives when merging queued batches.
const MAX_MERGED_ENTRIES: usize = 64 * 1024;

/// Runs until the Raft thread drops its sender, applying everything queued before that.
pub(crate) fn run(
    mut applier: impl Applier,
    rx: Receiver<ApplyTask>,
    raft_tx: Sender<Msg>,
    shared: Arc<Shared>,
) {
    let mut next: Option<ApplyTask> = None;
    loop {
        let task = match next.take() {
            Some(t) => t,
            None => {
                let received = match applier.idle_after() {
                    Some(wait) => match rx.recv_timeout(wait) {
                        Ok(t) => Ok(t),
                        Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                            if let Err(e) = applier.idle() {
                                tracing::error!(error = %e, "the state machine failed while idle; stopping raft");
                                let _ = raft_tx.send(Msg::ApplyFailed(e.to_string()));
                                return;
                            }
                            continue;
                        }
                        Err(crossbeam_channel::RecvTimeoutError::Disconnected) => Err(()),
                    },
                    None => rx.recv().map_err(|_| ()),
                };
                match received {
                    Ok(t) => t,
                    Err(()) => {
                        // The driver stops: what was applied is made durable now, so the
                        // member starts again without applying it a second time (etcd
                        // commits its backend as it stops).
                        if let Err(e) = applier.idle() {
                            tracing::warn!(error = %e, "the state machine failed to commit at stop");
                        }
                        return;
                    }
                }
            }
        };
        let mut entries = match task {
            ApplyTask::Entries(entries) => entries,
            ApplyTask::Restore(snap) => {
                let (index, term) = (snap.get_metadata().index, snap.get_metadata().term);
                let started = std::time::Instant::now();
                if let Err(e) = applier.restore(&snap.data, index, term) {
                    tracing::error!(index, error = %e, "restoring a raft snapshot failed");
                    let _ = raft_tx.send(Msg::ApplyFailed(format!(
                        "restoring the snapshot at index {index}: {e}"
                    )));
                    return;
                }
                tracing::info!(index, term, bytes = snap.data.len(), took = ?started.elapsed(), "restored raft snapshot");
                drop(snap);
                shared.set_applied(index);
                let _ = raft_tx.send(Msg::Applied(index));
                continue;
            }
            ApplyTask::Build => {
                let index = shared.applied_index.load(Ordering::Acquire);
                let started = std::time::Instant::now();
                let msg = match applier.snapshot() {
                    Ok(data) => {
                        tracing::info!(index, bytes = data.len(), took = ?started.elapsed(), "built raft snapshot");
                        Msg::SnapshotBuilt { index, data }
                    }
                    Err(e) => {
                        tracing::warn!(index, error = %e, "building a raft snapshot failed");
                        Msg::SnapshotFailed
                    }
                };
                let _ = raft_tx.send(msg);
                continue;
            }
        };
        while entries.len() < MAX_MERGED_ENTRIES {
            match rx.try_recv() {
                Ok(ApplyTask::Entries(more)) => entries.extend(more),
                Ok(other) => {
                    next = Some(other);
                    break;
                }
                Err(_) => break,
            }
        }
        let Some(last) = entries.last().map(|e| e.index) else {
            continue;
        };
        let applied = applier.apply(entries.into_iter().map(decode).collect());
        if let Err(e) = applied {
            tracing::error!(last_index = last, error = %e, "failed to apply committed entries; stopping raft");
            let _ = raft_tx.send(Msg::ApplyFailed(e.to_string()));
            return;
        }
        shared.set_applied(last);
        shared.stats.apply_batches.fetch_add(1, Ordering::Relaxed);
        // The Raft thread may be gone already during stop; nothing to report then.
        let _ = raft_tx.send(Msg::Applied(last));
    }
}
