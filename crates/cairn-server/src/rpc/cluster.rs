//! The Cluster service: MemberList, and membership changes through Raft (add a voter or a
//! learner, promote, remove, update peer URLs) with etcd's checks and errors.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_proto::cairnpb::internal_request::Request as Internal;
use cairn_proto::etcdserverpb::{
    cluster_server::Cluster, Member, MemberAddRequest, MemberAddResponse, MemberListRequest,
    MemberListResponse, MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest,
    MemberRemoveResponse, MemberUpdateRequest, MemberUpdateResponse,
};
use cairn_proto::EtcdError;
use cairn_raft::Change;
use tonic::{Request, Response, Status};

use super::Observed;
use crate::server::Server;
use crate::waiters::ApplyResult;

/// The Cluster service of one member.
pub struct ClusterService {
    pub server: Arc<Server>,
}

const SERVICE: &str = "etcdserverpb.Cluster";

/// How many learners a cluster may have at once, as etcd allows.
const MAX_LEARNERS: usize = 1;

/// Checks peer URLs as etcd does: http(s) URLs with a host and port, at least one.
fn check_peer_urls(urls: &[String]) -> Result<(), EtcdError> {
    let ok = !urls.is_empty()
        && urls.iter().all(|u| {
            (u.starts_with("http://") || u.starts_with("https://"))
                && crate::config::host_port(u).is_some()
        });
    if ok {
        Ok(())
    } else {
        Err(EtcdError::MemberBadUrls)
    }
}

/// Whether another member than `except` already uses one of `urls`.
fn urls_taken(members: &[Member], urls: &[String], except: u64) -> bool {
    members
        .iter()
        .filter(|m| m.id != except)
        .any(|m| m.peer_ur_ls.iter().any(|u| urls.contains(u)))
}

/// etcd's strict reconfiguration rule: a change must leave at least a quorum of the voters
/// it produces among the members that have started (published their name).
fn enough_started(members: &[Member], voters_after: usize, removing: Option<u64>) -> bool {
    let started = members
        .iter()
        .filter(|m| !m.is_learner && !m.name.is_empty() && Some(m.id) != removing)
        .count();
    started > voters_after / 2
}

/// How long a peer must have answered to count as connected, as etcd's health interval.
const HEALTH_INTERVAL: Duration = Duration::from_secs(5);

/// Whether this member has been connected to every other voter for the health interval
/// (etcd asks this before adding a member under strict reconfiguration).
fn connected_to_all_voters(s: &Server, members: &[Member]) -> bool {
    let since = Instant::now().checked_sub(HEALTH_INTERVAL);
    members
        .iter()
        .filter(|m| !m.is_learner && m.id != s.member.id)
        .all(|m| connected_since(s, m.id, since))
}

fn connected_since(s: &Server, id: u64, since: Option<Instant>) -> bool {
    match (s.peers.active_since(id), since) {
        (Some(t), Some(since)) => t <= since,
        _ => false,
    }
}

/// Whether removing voter `id` leaves a quorum of connected voters (etcd's check: a member
/// that is down may always go; otherwise the members connected for the health interval,
/// this one included and `id` excluded, must stay a quorum of the voters).
fn quorum_after_removal(s: &Server, members: &[Member], id: u64) -> bool {
    if id != s.member.id && s.peers.active_since(id).is_none() {
        return true;
    }
    let voters: Vec<&Member> = members.iter().filter(|m| !m.is_learner).collect();
    let since = Instant::now().checked_sub(HEALTH_INTERVAL);
    let connected = voters
        .iter()
        .filter(|m| m.id == s.member.id || connected_since(s, m.id, since))
        .count();
    connected.saturating_sub(1) > (voters.len() - 1) / 2
}

/// Whether a learner whose log matches the leader's up to `learner` (of the leader's
/// `leader`) may be promoted: etcd asks for 90%.
fn learner_ready(learner: u64, leader: u64) -> bool {
    learner as f64 >= leader as f64 * 0.9
}

impl ClusterService {
    async fn add(&self, req: MemberAddRequest) -> Result<MemberAddResponse, EtcdError> {
        let s = &self.server;
        check_peer_urls(&req.peer_ur_ls)?;
        let members = s.members.list();
        if urls_taken(&members, &req.peer_ur_ls, 0) {
            return Err(EtcdError::PeerUrlExist);
        }
        if req.is_learner {
            if members.iter().filter(|m| m.is_learner).count() >= MAX_LEARNERS {
                return Err(EtcdError::TooManyLearners);
            }
        } else if s.cfg.strict_reconfig_check {
            let voters = members.iter().filter(|m| !m.is_learner).count();
            if !enough_started(&members, voters + 1, None) {
                return Err(EtcdError::MemberNotEnoughStarted);
            }
        }
        if s.cfg.strict_reconfig_check && !connected_to_all_voters(s, &members) {
            return Err(EtcdError::Unhealthy);
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let id = crate::ids::member_id_at(&req.peer_ur_ls, &s.cfg.initial_cluster_token, now);
        if members.iter().any(|m| m.id == id) {
            return Err(EtcdError::MemberExist);
        }
        let member = Member {
            id,
            name: String::new(),
            peer_ur_ls: req.peer_ur_ls.clone(),
            client_ur_ls: vec![],
            is_learner: req.is_learner,
        };
        let kind = if req.is_learner {
            Change::AddLearner
        } else {
            Change::AddVoter
        };
        let list = s.change_membership(kind, member.clone()).await?;
        Ok(MemberAddResponse {
            header: Some(s.header(0)),
            member: Some(member),
            members: list,
        })
    }

    async fn remove(&self, req: MemberRemoveRequest) -> Result<MemberRemoveResponse, EtcdError> {
        let s = &self.server;
        let members = s.members.list();
        let Some(member) = members.iter().find(|m| m.id == req.id).cloned() else {
            return Err(EtcdError::MemberNotFound);
        };
        if !member.is_learner && s.cfg.strict_reconfig_check {
            let voters = members.iter().filter(|m| !m.is_learner).count();
            if !enough_started(&members, voters.saturating_sub(1), Some(member.id)) {
                return Err(EtcdError::MemberNotEnoughStarted);
            }
            if !quorum_after_removal(s, &members, member.id) {
                return Err(EtcdError::Unhealthy);
            }
        }
        let list = s.change_membership(Change::Remove, member).await?;
        Ok(MemberRemoveResponse {
            header: Some(s.header(0)),
            members: list,
        })
    }

    async fn promote(&self, req: MemberPromoteRequest) -> Result<MemberPromoteResponse, EtcdError> {
        let s = &self.server;
        let Some(mut member) = s.members.get(req.id) else {
            return Err(EtcdError::MemberNotFound);
        };
        if !member.is_learner {
            return Err(EtcdError::MemberNotLearner);
        }
        // On the leader, refuse a learner that has not caught up, as etcd does.
        if let (Some(learner), Some(leader)) =
            (s.raft.matched(member.id), s.raft.matched(s.member.id))
        {
            if !learner_ready(learner, leader) {
                return Err(EtcdError::LearnerNotReady);
            }
        }
        member.is_learner = false;
        let list = s.change_membership(Change::Promote, member).await?;
        Ok(MemberPromoteResponse {
            header: Some(s.header(0)),
            members: list,
        })
    }

    async fn update(&self, req: MemberUpdateRequest) -> Result<MemberUpdateResponse, EtcdError> {
        let s = &self.server;
        check_peer_urls(&req.peer_ur_ls)?;
        let members = s.members.list();
        if !members.iter().any(|m| m.id == req.id) {
            return Err(EtcdError::MemberNotFound);
        }
        if urls_taken(&members, &req.peer_ur_ls, req.id) {
            return Err(EtcdError::PeerUrlExist);
        }
        match s.propose(Internal::MemberUpdate(req)).await? {
            ApplyResult::Members(list) => Ok(MemberUpdateResponse {
                header: Some(s.header(0)),
                members: list,
            }),
            _ => Err(EtcdError::Stopped),
        }
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(
        &self,
        r: Request<MemberAddRequest>,
    ) -> Result<Response<MemberAddResponse>, Status> {
        let result = self.add(r.into_inner()).await.map_err(Status::from);
        result.observed(&self.server.metrics, SERVICE, "MemberAdd")
    }

    async fn member_remove(
        &self,
        r: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        let result = self.remove(r.into_inner()).await.map_err(Status::from);
        result.observed(&self.server.metrics, SERVICE, "MemberRemove")
    }

    async fn member_update(
        &self,
        r: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        let result = self.update(r.into_inner()).await.map_err(Status::from);
        result.observed(&self.server.metrics, SERVICE, "MemberUpdate")
    }

    async fn member_list(
        &self,
        _: Request<MemberListRequest>,
    ) -> Result<Response<MemberListResponse>, Status> {
        let s = &self.server;
        let resp = MemberListResponse {
            header: Some(s.header(0)),
            members: s.members.list(),
        };
        Ok(resp).observed(&s.metrics, SERVICE, "MemberList")
    }

    async fn member_promote(
        &self,
        r: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        let result = self.promote(r.into_inner()).await.map_err(Status::from);
        result.observed(&self.server.metrics, SERVICE, "MemberPromote")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(id: u64, name: &str, learner: bool) -> Member {
        Member {
            id,
            name: name.into(),
            peer_ur_ls: vec![format!("http://127.0.0.1:{id}")],
            client_ur_ls: vec![],
            is_learner: learner,
        }
    }

    #[test]
    fn strict_reconfiguration_counts_started_voters() {
        let three = [m(1, "a", false), m(2, "b", false), m(3, "", false)];
        // Adding a 4th voter needs 3 started; only 2 have started.
        assert!(!enough_started(&three, 4, None));
        let started = [m(1, "a", false), m(2, "b", false), m(3, "c", false)];
        assert!(enough_started(&started, 4, None));
        // Removing one of three started voters leaves 2 of 2.
        assert!(enough_started(&started, 2, Some(3)));
        // A learner does not count.
        let with_learner = [m(1, "a", false), m(2, "", false), m(3, "c", true)];
        assert!(!enough_started(&with_learner, 3, None));
    }

    #[test]
    fn learner_readiness_is_ninety_percent_of_the_leader() {
        assert!(learner_ready(90, 100));
        assert!(!learner_ready(89, 100));
        assert!(learner_ready(0, 0));
    }

    #[test]
    fn peer_url_checks() {
        assert_eq!(check_peer_urls(&[]), Err(EtcdError::MemberBadUrls));
        assert_eq!(
            check_peer_urls(&["127.0.0.1:2380".into()]),
            Err(EtcdError::MemberBadUrls)
        );
        assert_eq!(check_peer_urls(&["http://127.0.0.1:2380".into()]), Ok(()));
        let members = [m(1, "a", false)];
        assert!(urls_taken(&members, &["http://127.0.0.1:1".into()], 0));
        assert!(!urls_taken(&members, &["http://127.0.0.1:1".into()], 1));
    }
}
