//! The data corruption checks of etcd 3.5: members compare their HashKV over the peer URLs
//! (`RaftPeer.HashKV`, etcd's `/members/hashkv`).
//!
//! - At start (`--experimental-initial-corrupt-check`), before the member takes Raft
//!   traffic or serves clients, it compares its hash with each peer's at its own revision
//!   and refuses to start on a mismatch ([`Server::check_initial_hash`]).
//! - On the leader, every `--experimental-corrupt-check-time` ([`Server::check_hashes`]),
//!   and after compactions (`--experimental-compact-hash-check-enabled`,
//!   [`Server::check_compact_hashes`]): a mismatch raises the CORRUPT alarm through Raft,
//!   after which every member refuses writes (see the applier).
//!
//! Hashes are taken on blocking threads: each is a walk over the whole "key" table.

use cairn_mvcc::{HashKv, MvccError};
use cairn_proto::cairnpb::{internal_request::Request, PeerHashRequest};
use cairn_proto::etcdserverpb::{
    alarm_request::AlarmAction, AlarmRequest, AlarmType, HashKvResponse,
};
use cairn_proto::EtcdError;

use super::Server;

/// Why a corruption check could not be made, or why the member must not start.
#[derive(Debug, thiserror::Error)]
pub enum CorruptError {
    #[error("{id:x} found data inconsistency with peers")]
    Inconsistent { id: u64 },
    #[error("{id:x} failed to fetch hash ({cause})")]
    Hash { id: u64, cause: MvccError },
    #[error("{0}")]
    Read(EtcdError),
    #[error("hashing task: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// One peer's answer to a hash request.
struct PeerHash {
    id: u64,
    urls: Vec<String>,
    answer: Result<HashKvResponse, tonic::Status>,
}

impl Server {
    /// This member's hash at `rev` (0: now), as a peer would get it.
    async fn local_hash(&self, rev: i64) -> Result<HashKv, CorruptError> {
        let store = self.store.clone();
        let id = self.member.id;
        tokio::task::spawn_blocking(move || store.hash_by_rev(rev))
            .await?
            .map_err(|cause| CorruptError::Hash { id, cause })
    }

    /// Every other member's hash at `rev`, asked all at once, each within the request
    /// timeout.
    async fn peer_hashes(&self, rev: i64) -> Vec<PeerHash> {
        let timeout = self.request_timeout();
        let asks = self
            .members
            .peers()
            .into_iter()
            .filter(|(id, _)| *id != self.member.id)
            .map(|(id, urls)| async move {
                let req = PeerHashRequest {
                    cluster_id: self.cluster_id,
                    from: self.member.id,
                    to: id,
                    revision: rev,
                };
                let answer = crate::peer::fetch_hash(&urls, req, timeout).await;
                if let Err(e) = &answer {
                    tracing::warn!(
                        remote_peer_id = %format!("{id:x}"),
                        remote_peer_endpoints = %urls.join(","),
                        error = %e.message(),
                        "failed hash kv request"
                    );
                }
                PeerHash { id, urls, answer }
            });
        futures::future::join_all(asks).await
    }

    /// Proposes the CORRUPT alarm for `member_id` through Raft.
    async fn raise_corrupt(&self, member_id: u64) {
        let req = AlarmRequest {
            action: AlarmAction::Activate as i32,
            member_id,
            alarm: AlarmType::Corrupt as i32,
        };
        if let Err(e) = self.propose(Request::Alarm(req)).await {
            tracing::warn!(error = %e, "failed to raise the CORRUPT alarm");
        }
    }

    /// Compares this member's hash with its peers' at this member's revision, as etcd's
    /// `--experimental-initial-corrupt-check` does before the member starts: a peer with
    /// the same compacted revision and another hash means one of the two holds other
    /// data, and this member refuses to start. Peers that cannot answer are logged and
    /// skipped.
    pub async fn check_initial_hash(&self) -> Result<(), CorruptError> {
        let me = self.member.id;
        tracing::info!(
            local_member_id = %format!("{me:x}"),
            timeout = ?self.request_timeout(),
            "starting initial corruption check"
        );
        let local = self.local_hash(0).await?;
        let mut mismatches = 0;
        for p in self.peer_hashes(local.current_revision).await {
            let peer = format!("{:x}", p.id);
            let endpoints = p.urls.join(",");
            match p.answer {
                Ok(r) => {
                    if r.hash == local.hash {
                        continue;
                    }
                    let remote_revision = r.header.map(|h| h.revision).unwrap_or_default();
                    macro_rules! differs {
                        ($msg:literal) => {
                            tracing::warn!(
                                local_member_id = %format!("{me:x}"),
                                local_member_revision = local.current_revision,
                                local_member_compact_revision = local.compact_revision,
                                local_member_hash = local.hash,
                                remote_peer_id = %peer,
                                remote_peer_endpoints = %endpoints,
                                remote_peer_revision = remote_revision,
                                remote_peer_compact_revision = r.compact_revision,
                                remote_peer_hash = r.hash,
                                $msg
                            )
                        };
                    }
                    // Members that compacted at different revisions hash different sets of
                    // revisions: only the same compaction makes the hashes comparable.
                    if r.compact_revision == local.compact_revision {
                        mismatches += 1;
                        differs!("found different hash values from remote peer");
                    } else {
                        differs!("found different compact revision values from remote peer");
                    }
                }
                Err(e) if e.message() == EtcdError::FutureRev.message() => tracing::warn!(
                    local_member_id = %format!("{me:x}"),
                    local_member_revision = local.current_revision,
                    remote_peer_id = %peer,
                    remote_peer_endpoints = %endpoints,
                    error = %e.message(),
                    "cannot fetch hash from slow remote peer"
                ),
                Err(e) if e.message() == EtcdError::Compacted.message() => tracing::warn!(
                    local_member_id = %format!("{me:x}"),
                    local_member_revision = local.current_revision,
                    remote_peer_id = %peer,
                    remote_peer_endpoints = %endpoints,
                    error = %e.message(),
                    "cannot fetch hash from remote peer; local member is behind"
                ),
                Err(_) => {}
            }
        }
        if mismatches > 0 {
            return Err(CorruptError::Inconsistent { id: me });
        }
        tracing::info!(
            local_member_id = %format!("{me:x}"),
            "initial corruption checking passed; no corruption"
        );
        Ok(())
    }

    /// The leader's periodic check (`--experimental-corrupt-check-time`): hashes this
    /// member, asks the followers for theirs at the same revision, makes sure it has
    /// applied everything committed before, and hashes again. Raises CORRUPT for this
    /// member if its own hash changed while the revisions did not, and for a follower
    /// ahead of it, compacted past it, or with another hash at the same compaction.
    pub async fn check_hashes(&self) -> Result<(), CorruptError> {
        let first = self.local_hash(0).await?;
        let peers = self.peer_hashes(first.current_revision).await;
        self.linearizable_read().await.map_err(CorruptError::Read)?;
        let second = self.local_hash(0).await?;

        let mut alarmed = None;
        let mut mismatch = |id: u64| {
            alarmed.get_or_insert(id);
        };
        if second.hash != first.hash
            && second.current_revision == first.current_revision
            && second.compact_revision == first.compact_revision
        {
            tracing::warn!(
                revision_1 = first.current_revision,
                compact_revision_1 = first.compact_revision,
                hash_1 = first.hash,
                revision_2 = second.current_revision,
                compact_revision_2 = second.compact_revision,
                hash_2 = second.hash,
                "found hash mismatch"
            );
            mismatch(self.member.id);
        }
        let mut checked = 0;
        for p in peers {
            let Ok(r) = p.answer else { continue };
            checked += 1;
            let follower = format!("{:x}", p.id);
            let revision = r.header.map(|h| h.revision).unwrap_or_default();
            if revision > second.current_revision {
                tracing::warn!(
                    leader_revision = second.current_revision,
                    follower_revision = revision,
                    follower_peer_id = %follower,
                    "revision from follower must be less than or equal to leader's"
                );
                mismatch(p.id);
            }
            if r.compact_revision > second.compact_revision {
                tracing::warn!(
                    leader_compact_revision = second.compact_revision,
                    follower_compact_revision = r.compact_revision,
                    follower_peer_id = %follower,
                    "compact revision from follower must be less than or equal to leader's"
                );
                mismatch(p.id);
            }
            if r.compact_revision == first.compact_revision && r.hash != first.hash {
                tracing::warn!(
                    leader_compact_revision = second.compact_revision,
                    leader_hash = first.hash,
                    follower_compact_revision = r.compact_revision,
                    follower_hash = r.hash,
                    follower_peer_id = %follower,
                    "same compact revision then hashes must match"
                );
                mismatch(p.id);
            }
        }
        tracing::info!(
            number_of_peers_checked = checked,
            "finished peer corruption check"
        );
        if let Some(id) = alarmed {
            self.raise_corrupt(id).await;
        }
        Ok(())
    }

    /// The leader's compaction hash check (`--experimental-compact-hash-check-enabled`):
    /// for the hashes this member took as it compacted, newest first and only those above
    /// `latest_checked`, asks every follower for its hash at the same revision. A follower
    /// that compacted from the same revision and hashed otherwise gets the CORRUPT alarm.
    /// The first revision every follower could be checked at ends the round and becomes
    /// `latest_checked`.
    pub async fn check_compact_hashes(&self, latest_checked: &mut i64) {
        tracing::info!(
            local_member_id = %format!("{:x}", self.member.id),
            timeout = ?self.request_timeout(),
            "starting compact hash check"
        );
        let hashes: Vec<_> = self
            .store
            .compact_hashes()
            .into_iter()
            .filter(|h| h.revision > *latest_checked)
            .collect();
        for (i, h) in hashes.iter().enumerate() {
            let peers = self.peer_hashes(h.revision).await;
            if peers.is_empty() {
                continue;
            }
            let mut checked = 0;
            for p in &peers {
                let Ok(r) = &p.answer else { continue };
                if r.compact_revision != h.compact_revision {
                    continue;
                }
                if r.hash != h.hash {
                    tracing::error!(
                        revision = h.revision,
                        leader_compact_revision = h.compact_revision,
                        leader_hash = h.hash,
                        follower_compact_revision = r.compact_revision,
                        follower_hash = r.hash,
                        follower_peer_id = %format!("{:x}", p.id),
                        "failed compaction hash check"
                    );
                    self.raise_corrupt(p.id).await;
                    return;
                }
                checked += 1;
                tracing::info!(
                    revision = h.revision,
                    peer_id = %format!("{:x}", p.id),
                    "successfully checked hash on follower"
                );
            }
            if checked == peers.len() {
                tracing::info!(
                    number_of_peers_checked = checked,
                    revision = h.revision,
                    "successfully checked hash on whole cluster"
                );
                *latest_checked = (*latest_checked).max(h.revision);
                tracing::info!(
                    number_of_hashes_checked = i + 1,
                    "finished compaction hash check"
                );
                return;
            }
            tracing::warn!(
                revision = h.revision,
                number_of_peers_checked = checked,
                number_of_peers = peers.len(),
                "skipped revision in compaction hash check; was not able to check all peers"
            );
        }
        tracing::info!(
            number_of_hashes_checked = hashes.len(),
            "finished compaction hash check"
        );
    }

    /// Whether this member leads now.
    pub fn is_leader(&self) -> bool {
        self.raft.status().is_leader
    }
}
