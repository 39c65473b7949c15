//! Automatic compaction (`--auto-compaction-mode`, `--auto-compaction-retention`), as
//! etcd's compactors do it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_proto::cairnpb::internal_request::Request;
use cairn_proto::etcdserverpb::CompactionRequest;

use crate::config::AutoCompaction;
use crate::server::Server;

/// Compacts history automatically per `--auto-compaction-mode` and
/// `--auto-compaction-retention`, as etcd's compactors do: periodic keeps the history of the
/// retention window (checked every tenth of it when it is an hour or more, else every
/// window); revision keeps the newest `retention` revisions (checked every five minutes).
pub(super) async fn auto_compact(server: Arc<Server>) {
    let (check_every, mode) = match server.config().auto_compaction.clone() {
        AutoCompaction::Off => return,
        AutoCompaction::Periodic(window) => {
            let every = if window >= Duration::from_secs(3600) {
                window / 10
            } else {
                window
            };
            (every, AutoCompaction::Periodic(window))
        }
        AutoCompaction::Revision(n) => (Duration::from_secs(300), AutoCompaction::Revision(n)),
    };
    // Revisions seen at each check, oldest first, for the periodic window.
    let mut seen: VecDeque<(Instant, i64)> = VecDeque::new();
    let mut last_compacted = 0;
    loop {
        let now = Instant::now();
        let current = server.store().current_revision();
        seen.push_back((now, current));
        let target = match mode {
            AutoCompaction::Periodic(window) => {
                let mut target = None;
                while let Some(&(t, rev)) = seen.front() {
                    if now.duration_since(t) >= window {
                        target = Some(rev);
                        seen.pop_front();
                    } else {
                        break;
                    }
                }
                target
            }
            AutoCompaction::Revision(n) => Some(current - n),
            AutoCompaction::Off => None,
        };
        if let Some(rev) = target {
            if rev > last_compacted && rev > server.store().compact_revision() {
                let req = CompactionRequest {
                    revision: rev,
                    physical: false,
                };
                match server.propose(Request::Compaction(req)).await {
                    Ok(_) => {
                        last_compacted = rev;
                        tracing::info!(revision = rev, "completed auto compaction");
                    }
                    Err(e) => tracing::warn!(revision = rev, error = %e, "failed auto compaction"),
                }
            }
        }
        tokio::time::sleep(check_every.min(Duration::from_secs(3600))).await;
    }
}
