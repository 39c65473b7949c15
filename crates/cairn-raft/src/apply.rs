//! The apply thread: hands committed entries to the state machine, in log order, and
//! builds and restores the state machine's snapshots.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};
use raft::eraftpb::{Entry, Snapshot};

use crate::handle::Shared;
use crate::node::Msg;

/// The state machine side of the driver.
pub trait Applier: Send + 'static {
    /// Applies committed entries, in log order, on the dedicated apply thread.
    ///
    /// Gets every committed entry: normal entries with data, the empty entry each new
    /// leader appends (skip entries whose data is empty), and configuration changes (the
    /// driver has already applied those to Raft; the applier records membership). Several
    /// committed batches may arrive merged in one call. When it returns, the entries count
    /// as applied and the driver reports that to raft-rs.
    fn apply(&mut self, entries: Vec<Entry>);

    /// Returns the whole state machine as of everything applied so far, to send to a
    /// member that lags behind the log. Called on the apply thread between `apply` calls,
    /// only on a leader that has a lagging member. The bytes are held in memory while
    /// they are being sent. The default refuses: such a member then never catches up.
    fn snapshot(&mut self) -> Result<Vec<u8>, String> {
        Err("the state machine cannot produce snapshots".into())
    }

    /// Replaces the whole state machine with `data` from another member's
    /// [`Self::snapshot`], taken at log `index` (written in `term`). Afterwards the
    /// applied index is `index`, and the next `apply` continues at `index + 1`. It should
    /// be durable when this returns: the log before `index` is gone. An error stops the
    /// driver. The default refuses.
    fn restore(&mut self, data: &[u8], index: u64, term: u64) -> Result<(), String> {
        let _ = (data, index, term);
        Err("the state machine cannot restore snapshots".into())
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
            None => match rx.recv() {
                Ok(t) => t,
                Err(_) => return,
            },
        };
        let mut entries = match task {
            ApplyTask::Entries(entries) => entries,
            ApplyTask::Restore(snap) => {
                let (index, term) = (snap.get_metadata().index, snap.get_metadata().term);
                let started = std::time::Instant::now();
                if let Err(e) = applier.restore(&snap.data, index, term) {
                    tracing::error!(index, error = %e, "restoring a raft snapshot failed");
                    let _ = raft_tx.send(Msg::ApplyFailed(e));
                    return;
                }
                tracing::info!(index, term, bytes = snap.data.len(), took = ?started.elapsed(), "restored raft snapshot");
                drop(snap);
                shared.applied_index.store(index, Ordering::Release);
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
        applier.apply(entries);
        shared.applied_index.store(last, Ordering::Release);
        shared.stats.apply_batches.fetch_add(1, Ordering::Relaxed);
        // The Raft thread may be gone already during stop; nothing to report then.
        let _ = raft_tx.send(Msg::Applied(last));
    }
}
