//! `RaftHandle`: the cheap, cloneable way into a running driver.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crossbeam_channel::Sender;
use raft::eraftpb::ConfState;
use tokio::sync::{oneshot, watch};

use crate::msg::Msg;
use crate::shared::Shared;
use crate::{Change, PeerMessage, RaftError};

/// A snapshot of the member's Raft state. Fields are read one by one without a lock, so
/// they may be from slightly different moments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RaftStatus {
    pub id: u64,
    /// The known leader, 0 when there is none.
    pub leader_id: u64,
    pub term: u64,
    pub commit_index: u64,
    /// Index of the last entry the applier has returned from.
    pub applied_index: u64,
    pub last_index: u64,
    pub is_leader: bool,
}

/// Who leads, as this member knows it; handles watch it through
/// [`RaftHandle::leadership`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Leadership {
    /// The known leader, 0 when there is none.
    pub leader_id: u64,
    pub term: u64,
    /// Whether this member leads.
    pub is_leader: bool,
}

/// Counters for metrics and tests. They only grow, except `first_index`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RaftStats {
    /// raft-engine writes (one per handled `Ready` that had something to store).
    pub log_writes: u64,
    /// Writes that waited for fdatasync.
    pub log_syncs: u64,
    /// Entries appended to the log.
    pub entries_appended: u64,
    /// Proposals raft-rs refused (no leader, leadership lost, transfer in progress).
    pub proposals_dropped: u64,
    /// Messages from peers dropped before raft-rs saw them: shapes no correct peer sends
    /// (local message types, empty proposals, commits past the log, rewrites of committed
    /// entries), on which raft-rs would panic.
    pub messages_refused: u64,
    /// Calls to `Applier::apply`.
    pub apply_batches: u64,
    /// First index still in the log (after compaction).
    pub first_index: u64,
    /// Bytes written to the log.
    pub log_bytes: u64,
    /// Times this member saw a new leader (a leader other than the last one it knew).
    pub leader_changes: u64,
    /// Heartbeats this leader sent more than two heartbeat intervals after the previous
    /// one to the same follower.
    pub heartbeat_failures: u64,
    /// ReadIndex rounds that were out when this member saw a new leader (they are asked
    /// again; etcd fails them and counts each).
    pub read_index_failures: u64,
}

/// Sends `Stop` when the last handle goes away without `stop` having been called.
#[derive(Debug)]
struct Inner {
    tx: Sender<Msg>,
    shared: Arc<Shared>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if !self.shared.stopped.swap(true, Ordering::AcqRel) {
            let _ = self.tx.send(Msg::Stop);
        }
    }
}

/// A handle to a running driver. Clones share it; all methods are cheap and non-blocking
/// except `stop`, which waits for the threads.
#[derive(Debug, Clone)]
pub struct RaftHandle {
    inner: Arc<Inner>,
}

impl RaftHandle {
    pub(crate) fn new(tx: Sender<Msg>, shared: Arc<Shared>) -> Self {
        RaftHandle {
            inner: Arc::new(Inner { tx, shared }),
        }
    }

    fn shared(&self) -> &Shared {
        &self.inner.shared
    }

    fn send(&self, msg: Msg) -> Result<(), RaftError> {
        if self.shared().stopped.load(Ordering::Acquire) {
            return Err(RaftError::Stopped);
        }
        self.inner.tx.send(msg).map_err(|_| RaftError::Stopped)
    }

    fn check_leader(&self) -> Result<(), RaftError> {
        if self.shared().leader_id.load(Ordering::Acquire) == 0 {
            return Err(RaftError::NoLeader);
        }
        Ok(())
    }

    /// Queues `data` as a new log entry. Returns once queued, not once committed: the
    /// entry shows up at the applier when committed. A proposal that raft-rs drops later
    /// (leadership lost meanwhile) is never applied; callers time out their waiters.
    pub fn propose(&self, data: Vec<u8>) -> Result<(), RaftError> {
        if self.shared().stopped.load(Ordering::Acquire) {
            return Err(RaftError::Stopped);
        }
        self.check_leader()?;
        self.send(Msg::Propose(data))
    }

    /// Queues a membership change: `change` of member `id`, with `context` for the state
    /// machine. When committed, the driver applies it to Raft and stores the new
    /// membership; the applier then receives it as a [`crate::Payload::Membership`].
    pub fn propose_membership(
        &self,
        change: Change,
        id: u64,
        context: Vec<u8>,
    ) -> Result<(), RaftError> {
        if self.shared().stopped.load(Ordering::Acquire) {
            return Err(RaftError::Stopped);
        }
        self.check_leader()?;
        let cc = crate::apply::conf_change(change, id, context);
        self.send(Msg::ProposeConfChange(cc))
    }

    /// Linearizable-read barrier: resolves with a commit index; a read that waits until
    /// the state machine has applied it sees every write acknowledged before this call.
    /// Fails at once with `NoLeader` when no leader is known.
    pub async fn read_index(&self) -> Result<u64, RaftError> {
        if self.shared().stopped.load(Ordering::Acquire) {
            return Err(RaftError::Stopped);
        }
        self.check_leader()?;
        let (tx, rx) = oneshot::channel();
        let first = {
            let mut waiters = self.shared().read_waiters.lock();
            waiters.push(tx);
            waiters.len() == 1
        };
        if first {
            self.send(Msg::ReadIndex)?;
        } else if self.shared().stopped.load(Ordering::Acquire) {
            // The Raft thread may have dropped the list's senders before this one joined.
            return Err(RaftError::Stopped);
        }
        rx.await.map_err(|_| RaftError::Stopped)?
    }

    /// The state machine's applied index, to wait on: it changes after each applied batch
    /// and each restored snapshot. Let go of what `borrow` and `wait_for` return at once:
    /// the apply thread waits for every such borrow before it announces the next index.
    pub fn applied_index(&self) -> watch::Receiver<u64> {
        self.shared().applied_tx.subscribe()
    }

    /// The leader and term, to wait on: it changes when either does. As with
    /// [`Self::applied_index`], hold no borrow of it: the Raft thread waits for them.
    pub fn leadership(&self) -> watch::Receiver<Leadership> {
        self.shared().leadership_tx.subscribe()
    }

    /// Resolves when the driver has stopped: `Ok` after [`Self::stop`], or the failure that
    /// stopped it (the log could not be written, the state machine failed).
    pub async fn stopped(&self) -> Result<(), RaftError> {
        let mut rx = self.shared().stopped_tx.subscribe();
        let outcome = match rx.wait_for(Option::is_some).await {
            Ok(outcome) => outcome.clone().unwrap_or(Ok(())),
            // The sender lives in `Shared`, which this handle keeps alive.
            Err(_) => Ok(()),
        };
        outcome
    }

    /// Whether the driver has stopped (or is stopping) and takes no more requests.
    pub fn is_stopped(&self) -> bool {
        self.shared().stopped.load(Ordering::Acquire)
    }

    /// The member's current Raft state, from atomics.
    pub fn status(&self) -> RaftStatus {
        let s = self.shared();
        RaftStatus {
            id: s.id,
            leader_id: s.leader_id.load(Ordering::Acquire),
            term: s.term.load(Ordering::Acquire),
            commit_index: s.commit_index.load(Ordering::Acquire),
            applied_index: s.applied_index.load(Ordering::Acquire),
            last_index: s.last_index.load(Ordering::Acquire),
            is_leader: s.is_leader.load(Ordering::Acquire),
        }
    }

    /// The current membership (voters, learners and, during a joint change, the outgoing
    /// voters), as applied by Raft: a conf change counts from when it is committed, which
    /// may be before the applier has seen it.
    pub fn conf_state(&self) -> ConfState {
        self.shared().conf_state.lock().clone()
    }

    /// On the leader, the highest log index known to be replicated on member `id` (etcd
    /// uses it to refuse promoting a learner that has not caught up); `None` on a follower
    /// or for a non-member.
    pub fn matched(&self, id: u64) -> Option<u64> {
        self.shared()
            .matched
            .lock()
            .iter()
            .find(|(m, _)| *m == id)
            .map(|(_, i)| *i)
    }

    /// Counters of log writes, syncs and apply batches.
    pub fn stats(&self) -> RaftStats {
        let s = &self.shared().stats;
        RaftStats {
            log_writes: s.log_writes.load(Ordering::Relaxed),
            log_syncs: s.log_syncs.load(Ordering::Relaxed),
            entries_appended: s.entries_appended.load(Ordering::Relaxed),
            proposals_dropped: s.proposals_dropped.load(Ordering::Relaxed),
            messages_refused: s.messages_refused.load(Ordering::Relaxed),
            apply_batches: s.apply_batches.load(Ordering::Relaxed),
            first_index: s.first_index.load(Ordering::Relaxed),
            log_bytes: s.log_bytes.load(Ordering::Relaxed),
            leader_changes: s.leader_changes.load(Ordering::Relaxed),
            heartbeat_failures: s.heartbeat_failures.load(Ordering::Relaxed),
            read_index_failures: s.read_index_failures.load(Ordering::Relaxed),
        }
    }

    /// Feeds a message from a peer into Raft. Only queues it for the Raft thread.
    pub fn step(&self, msg: PeerMessage) -> Result<(), RaftError> {
        self.send(Msg::Step(msg.into_inner()))
    }

    /// Feeds several messages from peers into Raft with one queue operation; a transport
    /// that receives batches should prefer it over calling [`Self::step`] per message.
    pub fn step_many(&self, msgs: Vec<PeerMessage>) -> Result<(), RaftError> {
        if msgs.is_empty() {
            return Ok(());
        }
        self.send(Msg::StepMany(
            msgs.into_iter().map(PeerMessage::into_inner).collect(),
        ))
    }

    /// Asks the leader to hand leadership to member `to`. Returns once queued; watch
    /// [`Self::status`] for the outcome. raft-rs ignores it when `to` is unknown, is the
    /// leader already, or when no leader is known; the leader gives up after an election
    /// timeout if `to` does not catch up and win.
    pub fn transfer_leader(&self, to: u64) -> Result<(), RaftError> {
        self.check_leader()?;
        self.send(Msg::TransferLeader(to))
    }

    /// Requests queued for the Raft thread that it has not taken yet.
    pub fn queued(&self) -> usize {
        self.inner.tx.len()
    }

    /// Advances the clock by one tick, for a driver started with
    /// [`crate::RaftConfig::manual_ticks`] (ignored as extra ticks otherwise: don't).
    pub fn tick(&self) {
        let _ = self.send(Msg::Tick);
    }

    /// Tells Raft that the last send to `id` failed, so the leader stops streaming to it
    /// and probes instead. For transports that notice broken connections.
    pub fn report_unreachable(&self, id: u64) {
        let _ = self.send(Msg::ReportUnreachable(id));
    }

    /// Tells Raft whether a `MsgSnapshot` to `id` was delivered. A transport must report
    /// a lost snapshot (`false`): until then the leader sends that member nothing else.
    pub fn report_snapshot(&self, id: u64, delivered: bool) {
        let _ = self.send(Msg::ReportSnapshot(id, delivered));
    }

    /// Reports that the state machine's changes up to `index` are durable, so the log
    /// before it may be compacted. The driver keeps `RaftConfig::log_retain_entries`
    /// entries behind it for lagging peers and compacts in steps of
    /// `RaftConfig::log_compact_step`.
    pub fn set_durable_applied(&self, index: u64) {
        // After stop there is nothing left to compact.
        let _ = self.send(Msg::DurableApplied(index));
    }

    /// Stops the driver: the Raft thread syncs the log and exits, the apply thread
    /// applies what was already committed and handed to it, then exits. Waits for both,
    /// unless called from the applier itself. Idempotent.
    pub fn stop(&self) {
        let shared = self.shared();
        shared.stopped.store(true, Ordering::Release);
        let _ = self.inner.tx.send(Msg::Stop);
        let threads = std::mem::take(&mut *shared.threads.lock());
        let me = std::thread::current().id();
        for t in threads {
            if t.thread().id() == me {
                continue;
            }
            if t.join().is_err() {
                tracing::error!("raft driver thread panicked");
            }
        }
    }
}
