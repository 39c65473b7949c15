//! The leader's corruption check loops: the periodic HashKV comparison
//! (`--experimental-corrupt-check-time`) and the compaction hash check
//! (`--experimental-compact-hash-check-enabled`). Each wakes every interval and checks only
//! while this member leads; the checks themselves are in `server/corrupt.rs`.

use std::sync::Arc;
use std::time::Duration;

use crate::server::Server;

/// Compares hashes with the followers every `every` while this member leads.
pub(super) async fn periodic_check(server: Arc<Server>, every: Duration) {
    tracing::info!(
        local_member_id = %format!("{:x}", server.member().id),
        interval = ?every,
        "enabled corruption checking"
    );
    loop {
        tokio::time::sleep(every).await;
        if !server.is_leader() {
            continue;
        }
        if let Err(e) = server.check_hashes().await {
            tracing::warn!(error = %e, "failed to check hash KV");
        }
    }
}

/// Compares the hashes of compactions with the followers' every `every` while this member
/// leads.
pub(super) async fn compact_hash_check(server: Arc<Server>, every: Duration) {
    tracing::info!(
        local_member_id = %format!("{:x}", server.member().id),
        interval = ?every,
        "enabled compact hash check"
    );
    // The newest compacted revision every follower agreed on; earlier ones are not asked
    // about again.
    let mut latest_checked = 0;
    loop {
        tokio::time::sleep(every).await;
        if server.is_leader() {
            server.check_compact_hashes(&mut latest_checked).await;
        }
    }
}
