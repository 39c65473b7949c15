//! Linearizable reads share ReadIndex rounds, and hear the outcome from a task of this
//! runtime.
//!
//! Readers queue here; the first one into an empty queue wakes [`run`], a task that takes
//! the whole queue, asks Raft for one ReadIndex and hands its answer to every reader it
//! took. Readers that come while a round is out wait for the next one, which the task
//! starts as soon as the round ends. Every reader in a round came before the round was
//! asked for, so its index covers every write acknowledged before the reader came.
//!
//! Raft's thread thus wakes one task per round, and the task wakes the readers from a
//! worker of this runtime, which is much cheaper than waking each of them from outside.
//!
//! Each reader brings its deadline, and the round keeps them: it gives up at the earliest
//! deadline among its readers, fails those whose time is up, and takes the others into
//! the next round. So a read arms no timer of its own.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Instant;

use cairn_raft::{RaftError, RaftHandle};
use parking_lot::Mutex;
use tokio::sync::{oneshot, Notify};

/// Why a read got no index.
#[derive(Debug, Clone)]
pub(crate) enum ReadFailure {
    Raft(RaftError),
    /// The reader's deadline passed first.
    TimedOut,
}

/// A reader waiting for a round, and until when it waits.
struct Reader {
    answer: oneshot::Sender<Result<u64, ReadFailure>>,
    deadline: Instant,
}

/// The queue of readers waiting for a ReadIndex round. Shared with [`run`] through a weak
/// reference: the task ends when the barrier is dropped.
pub(crate) struct ReadBarrier {
    raft: RaftHandle,
    /// Readers waiting for the next round, oldest first. Protects only the list; never
    /// held across an await.
    queue: Mutex<Vec<Reader>>,
    /// Wakes [`run`]: a reader found the queue empty, or the barrier is dropped.
    wake: Arc<Notify>,
    /// Whether [`run`] was spawned (on the first read, from inside the runtime).
    running: AtomicBool,
    /// etcd's `slow_read_indexes_total`: a round that outlived a reader's deadline, or
    /// found no leader to ask (etcd counts each half second its round goes unanswered).
    /// Rounds failed by a new leader are counted by Raft (`read_indexes_failed_total`).
    slow: prometheus::IntCounter,
}

impl ReadBarrier {
    pub(crate) fn new(raft: RaftHandle, slow: prometheus::IntCounter) -> Arc<ReadBarrier> {
        Arc::new(ReadBarrier {
            raft,
            slow,
            queue: Mutex::new(Vec::new()),
            wake: Arc::new(Notify::new()),
            running: AtomicBool::new(false),
        })
    }

    /// A commit index that a read started now may be served at once the state machine has
    /// applied it: the answer of the next ReadIndex round that starts after this call, if
    /// one answers by `deadline`.
    pub(crate) async fn index(self: &Arc<Self>, deadline: Instant) -> Result<u64, ReadFailure> {
        if !self.running.swap(true, Ordering::AcqRel) {
            tokio::spawn(run(Arc::downgrade(self), self.wake.clone()));
        }
        let (answer, rx) = oneshot::channel();
        let first = {
            let mut queue = self.queue.lock();
            queue.push(Reader { answer, deadline });
            queue.len() == 1
        };
        if first {
            self.wake.notify_one();
        }
        rx.await
            .map_err(|_| ReadFailure::Raft(RaftError::Stopped))?
    }
}

impl Drop for ReadBarrier {
    fn drop(&mut self) {
        self.wake.notify_one();
    }
}

/// Runs ReadIndex rounds one at a time while readers are queued.
async fn run(barrier: Weak<ReadBarrier>, wake: Arc<Notify>) {
    loop {
        wake.notified().await;
        loop {
            let Some(b) = barrier.upgrade() else {
                return;
            };
            let readers = std::mem::take(&mut *b.queue.lock());
            if readers.is_empty() {
                break;
            }
            let raft = b.raft.clone();
            let slow = b.slow.clone();
            drop(b);
            let Some(until) = readers.iter().map(|r| r.deadline).min() else {
                break;
            };
            let index = match tokio::time::timeout_at(until.into(), raft.read_index()).await {
                Ok(index) => index.map_err(|e| {
                    if matches!(e, RaftError::NoLeader) {
                        slow.inc();
                    }
                    ReadFailure::Raft(e)
                }),
                Err(_) => {
                    slow.inc();
                    let now = Instant::now();
                    let (late, waiting): (Vec<_>, Vec<_>) =
                        readers.into_iter().partition(|r| r.deadline <= now);
                    for r in late {
                        let _ = r.answer.send(Err(ReadFailure::TimedOut));
                    }
                    if let Some(b) = barrier.upgrade() {
                        // Ahead of those that came meanwhile: they are older.
                        b.queue.lock().splice(0..0, waiting);
                    }
                    continue;
                }
            };
            for r in readers {
                // A reader that gave up has dropped its receiver.
                let _ = r.answer.send(index.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::testing::TestCluster;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_reader_past_its_deadline_fails_and_a_cut_off_member_answers_no_read() {
        let c = TestCluster::start(3).await;
        let cut = c.follower();
        // The member still knows its leader (no tick passes), but its ReadIndex request
        // goes nowhere: no round can be answered until the network heals.
        c.isolate(cut);
        let reads = c.server(cut).reads.clone();
        let hasty = reads
            .index(Instant::now() + Duration::from_millis(100))
            .await;
        assert!(matches!(hasty, Err(ReadFailure::TimedOut)), "{hasty:?}");
        // As etcd's read that waits past its retry time, the round counts as slow.
        let slow = &c.server(cut).metrics().more.slow_read_indexes;
        assert_eq!(slow.get(), 1);
        let patient = {
            let reads = reads.clone();
            tokio::spawn(async move { reads.index(Instant::now() + Duration::from_secs(20)).await })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!patient.is_finished(), "a read was answered while cut off");

        c.heal();
        c.tick_until("the patient reader's round is answered", || {
            patient.is_finished()
        });
        let index = patient.await.map_err(|e| e.to_string());
        let leader_commit = c.server(c.leader()).raft_status().commit_index;
        assert!(
            matches!(index, Ok(Ok(i)) if i > 1 && i <= leader_commit),
            "{index:?} (leader commit {leader_commit})"
        );
    }
}
