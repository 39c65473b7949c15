//! Defragmenting the backend with etcd's log lines and metrics: for Maintenance.Defragment,
//! and at start when `--experimental-bootstrap-defrag-threshold-megabytes` says so.

use std::time::Instant;

use cairn_mvcc::{DefragReport, MvccError, Store};

use crate::metrics::MoreMetrics;

/// Rewrites the backend compactly (see [`Store::defragment`]), logging what etcd logs
/// before and after and timing it in `etcd_disk_backend_defrag_duration_seconds`. Reads
/// every page: call it on a blocking thread.
pub(crate) fn defragment(store: &Store, more: &MoreMetrics) -> Result<DefragReport, MvccError> {
    let (size, in_use) = (store.db_size(), store.db_size_in_use());
    tracing::info!(
        path = %store.path().display(),
        current_db_size_bytes = size,
        current_db_size_in_use_bytes = in_use,
        "defragmenting"
    );
    let started = Instant::now();
    more.defrag_inflight.set(1);
    let result = store.defragment();
    more.defrag_inflight.set(0);
    let report = result?;
    more.defrag_duration
        .observe(started.elapsed().as_secs_f64());
    let in_use_after = store
        .measure_in_use()
        .unwrap_or_else(|_| store.db_size_in_use());
    tracing::info!(
        path = %store.path().display(),
        current_db_size_bytes_diff = report.size_after as i64 - size as i64,
        current_db_size_bytes = report.size_after,
        current_db_size_in_use_bytes_diff = in_use_after as i64 - in_use as i64,
        current_db_size_in_use_bytes = in_use_after,
        writes_during_copy = report.tail_ops,
        writes_at_switch_over = report.switch_ops,
        switch_over = ?report.switch,
        took = ?started.elapsed(),
        "finished defragmenting directory"
    );
    Ok(report)
}

/// etcd's `--experimental-bootstrap-defrag-threshold-megabytes`: before the member starts,
/// the backend is defragmented when at least this many megabytes (MiB) of its file are free
/// (its size less the size in use); 0 leaves it alone without looking.
pub(crate) fn defragment_at_start(
    store: &Store,
    threshold_megabytes: u64,
    more: &MoreMetrics,
) -> Result<(), MvccError> {
    if threshold_megabytes == 0 {
        return Ok(());
    }
    let threshold = threshold_megabytes.saturating_mul(1 << 20);
    let size = store.db_size();
    let in_use = store.measure_in_use()?;
    if size.saturating_sub(in_use) < threshold {
        tracing::info!(
            current_db_size_bytes = size,
            current_db_size_in_use_bytes = in_use,
            experimental_bootstrap_defrag_threshold_bytes = threshold,
            "Skipping defragmentation"
        );
        return Ok(());
    }
    defragment(store, more).map(|_| ())
}
