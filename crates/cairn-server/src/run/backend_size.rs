//! Keeps the backend's in-use size measured (Status's `dbSizeInUse`,
//! `etcd_mvcc_db_total_size_in_use_in_bytes`). Measuring reads every page of the backend
//! (seconds for gigabytes), so it runs here in the background rather than on a request's
//! path: after writes, at most once a second, and resting fifty times as long as the last
//! measurement took, so it costs at most 2% of a core.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::server::Server;

/// The shortest rest between two measurements.
const MIN_REST: Duration = Duration::from_secs(1);

/// How many times as long as a measurement took the next one waits at least.
const REST_FACTOR: u32 = 50;

/// Measures the in-use size whenever the applied index moved since the last measurement.
pub(super) async fn measure_in_use(server: Arc<Server>) {
    let mut measured_at = None;
    let mut rest = Duration::ZERO;
    loop {
        tokio::time::sleep(rest.max(MIN_REST)).await;
        let index = server.applied_index();
        if measured_at == Some(index) {
            continue;
        }
        let store = server.store().clone();
        let started = Instant::now();
        match tokio::task::spawn_blocking(move || store.measure_in_use()).await {
            Ok(Ok(_)) => measured_at = Some(index),
            Ok(Err(e)) => tracing::warn!(error = %e, "failed to measure the backend's size in use"),
            Err(_) => return,
        }
        rest = started.elapsed() * REST_FACTOR;
    }
}
