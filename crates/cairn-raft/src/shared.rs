//! [`Shared`]: the state the Raft and apply threads publish for handles to read, and the
//! watch channels that announce it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;

use raft::eraftpb::ConfState;
use tokio::sync::{oneshot, watch};

use crate::{Leadership, RaftError};

#[derive(Debug, Default)]
pub(crate) struct AtomicStats {
    pub(crate) log_writes: AtomicU64,
    pub(crate) log_syncs: AtomicU64,
    pub(crate) entries_appended: AtomicU64,
    pub(crate) proposals_dropped: AtomicU64,
    pub(crate) messages_refused: AtomicU64,
    pub(crate) apply_batches: AtomicU64,
    pub(crate) first_index: AtomicU64,
    pub(crate) log_bytes: AtomicU64,
    pub(crate) leader_changes: AtomicU64,
    pub(crate) heartbeat_failures: AtomicU64,
    pub(crate) read_index_failures: AtomicU64,
}

/// State published by the Raft and apply threads for handles to read.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) id: u64,
    pub(crate) leader_id: AtomicU64,
    pub(crate) term: AtomicU64,
    pub(crate) commit_index: AtomicU64,
    pub(crate) applied_index: AtomicU64,
    pub(crate) last_index: AtomicU64,
    pub(crate) is_leader: AtomicBool,
    /// Set by `stop` or when the Raft thread dies; never cleared.
    pub(crate) stopped: AtomicBool,
    pub(crate) stats: AtomicStats,
    /// The membership in force on the Raft thread: updated when a conf change is applied
    /// or a snapshot installed. Protects only the value.
    pub(crate) conf_state: parking_lot::Mutex<ConfState>,
    /// On a leader, each member's matched log index as last published; empty elsewhere.
    /// Protects only the value.
    pub(crate) matched: parking_lot::Mutex<Vec<(u64, u64)>>,
    /// Readers waiting for the next ReadIndex round, in the order they came; the Raft
    /// thread takes them all when it starts one (at most `node::READS_IN_FLIGHT` rounds
    /// are out). Protects only the list; never held while sending to the Raft thread.
    pub(crate) read_waiters: parking_lot::Mutex<Vec<oneshot::Sender<Result<u64, RaftError>>>>,
    /// The driver's threads, joined by the first `stop`. Protects only the list.
    pub(crate) threads: parking_lot::Mutex<Vec<JoinHandle<()>>>,
    /// The applied index, for handles that wait for it (see `applied_index`).
    pub(crate) applied_tx: watch::Sender<u64>,
    /// Changes of leader or term, sent by the Raft thread when they happen.
    pub(crate) leadership_tx: watch::Sender<Leadership>,
    /// Set once when the Raft thread exits: `Ok` after `stop`, the cause after a failure.
    pub(crate) stopped_tx: watch::Sender<Option<Result<(), RaftError>>>,
}

impl Shared {
    pub(crate) fn new(id: u64, conf_state: ConfState, applied: u64, first_index: u64) -> Shared {
        let shared = Shared {
            id,
            leader_id: AtomicU64::new(0),
            term: AtomicU64::new(0),
            commit_index: AtomicU64::new(0),
            applied_index: AtomicU64::new(applied),
            last_index: AtomicU64::new(0),
            is_leader: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            stats: AtomicStats::default(),
            conf_state: parking_lot::Mutex::new(conf_state),
            matched: parking_lot::Mutex::new(Vec::new()),
            read_waiters: parking_lot::Mutex::new(Vec::new()),
            threads: parking_lot::Mutex::new(Vec::new()),
            applied_tx: watch::channel(applied).0,
            leadership_tx: watch::channel(Leadership::default()).0,
            stopped_tx: watch::channel(None).0,
        };
        shared
            .stats
            .first_index
            .store(first_index, Ordering::Relaxed);
        shared
    }

    /// Records that the state machine has applied everything up to `index`.
    pub(crate) fn set_applied(&self, index: u64) {
        self.applied_index.store(index, Ordering::Release);
        self.applied_tx.send_replace(index);
    }

    /// Publishes the leader and term; wakes watchers only when either changed.
    ///
    /// Called by the Raft thread, the only writer, after every `Ready`: it compares with
    /// the atomics first, so the watch's lock is taken only when something changed.
    pub(crate) fn set_leadership(&self, now: Leadership) {
        let was = Leadership {
            leader_id: self.leader_id.load(Ordering::Acquire),
            term: self.term.load(Ordering::Acquire),
            is_leader: self.is_leader.load(Ordering::Acquire),
        };
        if was == now {
            return;
        }
        if now.leader_id != 0 && now.leader_id != was.leader_id {
            self.stats.leader_changes.fetch_add(1, Ordering::Relaxed);
        }
        self.leader_id.store(now.leader_id, Ordering::Release);
        self.term.store(now.term, Ordering::Release);
        self.is_leader.store(now.is_leader, Ordering::Release);
        self.leadership_tx.send_replace(now);
    }

    /// Records why the Raft thread exited (the first reason counts).
    pub(crate) fn set_stopped(&self, outcome: Result<(), RaftError>) {
        self.stopped.store(true, Ordering::Release);
        self.stopped_tx.send_if_modified(|was| {
            if was.is_some() {
                return false;
            }
            *was = Some(outcome);
            true
        });
    }
}
