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

        let answered: Vec<(u64, HashKvResponse)> = peers
            .into_iter()
            .filter_map(|p| p.answer.ok().map(|r| (p.id, r)))
            .collect();
        let findings = periodic_findings(self.member.id, &first, &second, &answered);
        for f in &findings {
            f.log();
        }
        tracing::info!(
            number_of_peers_checked = answered.len(),
            "finished peer corruption check"
        );
        // One alarm per round, for the first member found, as etcd raises it.
        if let Some(f) = findings.first() {
            self.raise_corrupt(f.member()).await;
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

/// What the leader's periodic check can find wrong, in the order it looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Finding {
    /// The leader's own hash changed while its revisions did not.
    OwnHashChanged {
        me: u64,
        first: HashKv,
        second: HashKv,
    },
    /// A follower is at a revision the leader has not reached.
    FollowerAhead { id: u64, leader: i64, follower: i64 },
    /// A follower compacted past the leader.
    FollowerCompactedAhead { id: u64, leader: i64, follower: i64 },
    /// A follower with the leader's compaction hashed otherwise.
    HashDiffers {
        id: u64,
        compact_revision: i64,
        leader_hash: u32,
        follower_hash: u32,
    },
}

impl Finding {
    /// The member the CORRUPT alarm names.
    fn member(&self) -> u64 {
        match *self {
            Finding::OwnHashChanged { me, .. } => me,
            Finding::FollowerAhead { id, .. }
            | Finding::FollowerCompactedAhead { id, .. }
            | Finding::HashDiffers { id, .. } => id,
        }
    }

    fn log(&self) {
        match *self {
            Finding::OwnHashChanged { first, second, .. } => tracing::warn!(
                revision_1 = first.current_revision,
                compact_revision_1 = first.compact_revision,
                hash_1 = first.hash,
                revision_2 = second.current_revision,
                compact_revision_2 = second.compact_revision,
                hash_2 = second.hash,
                "found hash mismatch"
            ),
            Finding::FollowerAhead {
                id,
                leader,
                follower,
            } => tracing::warn!(
                leader_revision = leader,
                follower_revision = follower,
                follower_peer_id = %format!("{id:x}"),
                "revision from follower must be less than or equal to leader's"
            ),
            Finding::FollowerCompactedAhead {
                id,
                leader,
                follower,
            } => tracing::warn!(
                leader_compact_revision = leader,
                follower_compact_revision = follower,
                follower_peer_id = %format!("{id:x}"),
                "compact revision from follower must be less than or equal to leader's"
            ),
            Finding::HashDiffers {
                id,
                compact_revision,
                leader_hash,
                follower_hash,
            } => tracing::warn!(
                leader_compact_revision = compact_revision,
                leader_hash,
                follower_compact_revision = compact_revision,
                follower_hash,
                follower_peer_id = %format!("{id:x}"),
                "same compact revision then hashes must match"
            ),
        }
    }
}

/// Judges one round of the leader's periodic check: `first` is the leader's hash the
/// followers were asked at, `second` the leader's hash after a linearizable read, `peers`
/// the followers that answered. A follower behind the leader answers at the leader's
/// revision from its history, so only what cannot happen between correct members is a
/// finding: the leader's hash changing under unchanged revisions, a follower ahead of the
/// leader or compacted past it, and another hash at the same compaction.
fn periodic_findings(
    me: u64,
    first: &HashKv,
    second: &HashKv,
    peers: &[(u64, HashKvResponse)],
) -> Vec<Finding> {
    let mut found = Vec::new();
    if second.hash != first.hash
        && second.current_revision == first.current_revision
        && second.compact_revision == first.compact_revision
    {
        found.push(Finding::OwnHashChanged {
            me,
            first: *first,
            second: *second,
        });
    }
    for (id, r) in peers {
        let id = *id;
        let revision = r.header.map(|h| h.revision).unwrap_or_default();
        if revision > second.current_revision {
            found.push(Finding::FollowerAhead {
                id,
                leader: second.current_revision,
                follower: revision,
            });
        }
        if r.compact_revision > second.compact_revision {
            found.push(Finding::FollowerCompactedAhead {
                id,
                leader: second.compact_revision,
                follower: r.compact_revision,
            });
        }
        if r.compact_revision == first.compact_revision && r.hash != first.hash {
            found.push(Finding::HashDiffers {
                id,
                compact_revision: r.compact_revision,
                leader_hash: first.hash,
                follower_hash: r.hash,
            });
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_proto::etcdserverpb::ResponseHeader;

    fn hash(hash: u32, current_revision: i64, compact_revision: i64) -> HashKv {
        HashKv {
            hash,
            current_revision,
            compact_revision,
            hash_revision: current_revision,
        }
    }

    fn answer(hash: u32, revision: i64, compact_revision: i64) -> HashKvResponse {
        HashKvResponse {
            header: Some(ResponseHeader {
                revision,
                ..Default::default()
            }),
            hash,
            compact_revision,
            hash_revision: 0,
        }
    }

    /// The followers' answers, by member id.
    type Answers = Vec<(u64, HashKvResponse)>;

    #[test]
    fn periodic_check_findings() {
        const ME: u64 = 1;
        // (name, leader's first hash, leader's second hash, followers' answers, the members
        // the findings name, in order)
        let cases: Vec<(&str, HashKv, HashKv, Answers, Vec<u64>)> = vec![
            (
                "all agree",
                hash(7, 10, 3),
                hash(7, 10, 3),
                vec![(2, answer(7, 10, 3)), (3, answer(7, 10, 3))],
                vec![],
            ),
            (
                "a follower ahead of the first hash answers from its history",
                hash(7, 10, 3),
                hash(9, 12, 3),
                vec![(2, answer(7, 12, 3))],
                vec![],
            ),
            (
                "writes between the leader's two hashes",
                hash(7, 10, 3),
                hash(9, 11, 3),
                vec![(2, answer(7, 10, 3))],
                vec![],
            ),
            (
                "a compaction between the leader's two hashes",
                hash(7, 10, 3),
                hash(9, 10, 5),
                vec![(2, answer(8, 10, 5))],
                vec![],
            ),
            (
                "the leader's own hash changed under the same revisions",
                hash(7, 10, 3),
                hash(8, 10, 3),
                vec![(2, answer(7, 10, 3))],
                vec![ME],
            ),
            (
                "a follower with another hash at the same compaction",
                hash(7, 10, 3),
                hash(7, 10, 3),
                vec![(2, answer(7, 10, 3)), (3, answer(6, 10, 3))],
                vec![3],
            ),
            (
                "a follower ahead of the leader",
                hash(7, 10, 3),
                hash(7, 10, 3),
                vec![(2, answer(7, 11, 3))],
                vec![2],
            ),
            (
                "a follower compacted past the leader, its hash not comparable",
                hash(7, 10, 3),
                hash(7, 10, 3),
                vec![(2, answer(5, 10, 4))],
                vec![2],
            ),
            (
                "every finding is listed, the first one is alarmed",
                hash(7, 10, 3),
                hash(8, 10, 3),
                vec![(2, answer(6, 10, 3)), (3, answer(7, 11, 3))],
                vec![ME, 2, 3],
            ),
        ];
        for (name, first, second, peers, want) in cases {
            let got: Vec<u64> = periodic_findings(ME, &first, &second, &peers)
                .iter()
                .map(Finding::member)
                .collect();
            assert_eq!(got, want, "{name}");
        }
    }
}
