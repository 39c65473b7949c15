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

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

use cairn_raft::{RaftError, RaftHandle};
use parking_lot::Mutex;
use tokio::sync::{oneshot, Notify};

type Reader = oneshot::Sender<Result<u64, RaftError>>;

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
}

impl ReadBarrier {
    pub(crate) fn new(raft: RaftHandle) -> Arc<ReadBarrier> {
        Arc::new(ReadBarrier {
            raft,
            queue: Mutex::new(Vec::new()),
            wake: Arc::new(Notify::new()),
            running: AtomicBool::new(false),
        })
    }

    /// A commit index that a read started now may be served at once the state machine has
    /// applied it: the answer of the next ReadIndex round that starts after this call.
    pub(crate) async fn index(self: &Arc<Self>) -> Result<u64, RaftError> {
        if !self.running.swap(true, Ordering::AcqRel) {
            tokio::spawn(run(Arc::downgrade(self), self.wake.clone()));
        }
        let (tx, rx) = oneshot::channel();
        let first = {
            let mut queue = self.queue.lock();
            queue.push(tx);
            queue.len() == 1
        };
        if first {
            self.wake.notify_one();
        }
        rx.await.map_err(|_| RaftError::Stopped)?
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
            drop(b);
            let index = raft.read_index().await;
            for r in readers {
                // A reader that gave up has dropped its receiver.
                let _ = r.send(index.clone());
            }
        }
    }
}
