//! The apply thread: hands committed entries to the state machine, in log order.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};
use raft::eraftpb::Entry;

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
}

/// Caps how many entries one `apply` call receives when merging queued batches.
const MAX_MERGED_ENTRIES: usize = 64 * 1024;

/// Runs until the Raft thread drops its sender, applying everything queued before that.
pub(crate) fn run(
    mut applier: impl Applier,
    rx: Receiver<Vec<Entry>>,
    raft_tx: Sender<Msg>,
    shared: Arc<Shared>,
) {
    while let Ok(mut entries) = rx.recv() {
        while entries.len() < MAX_MERGED_ENTRIES {
            match rx.try_recv() {
                Ok(more) => entries.extend(more),
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
