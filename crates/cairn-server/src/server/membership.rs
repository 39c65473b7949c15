//! Membership changes: each is checked against etcd's rules
//! ([`crate::cluster::policy`]) and then proposed through Raft.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use cairn_proto::cairnpb::internal_request::Request;
use cairn_proto::etcdserverpb::{Member, MemberUpdateRequest};
use cairn_proto::EtcdError;
use cairn_raft::Change;

use super::Server;
use crate::cluster::policy::Reconfiguration;
use crate::proposal::ApplyResult;

impl Server {
    /// The members as this member last applied them.
    pub fn member_list(&self) -> Vec<Member> {
        self.members.list()
    }

    /// The policy's view of the cluster now.
    fn reconfiguration<'a>(
        &'a self,
        members: &'a [Member],
    ) -> Reconfiguration<'a, impl Fn(u64) -> Option<Instant> + 'a> {
        Reconfiguration {
            members,
            me: self.member.id,
            strict: self.cfg.strict_reconfig_check,
            active_since: |id| self.peers.active_since(id),
            now: Instant::now(),
        }
    }

    /// Adds a member at `peer_urls` (a learner or a voter); returns it and the members
    /// after the change.
    pub async fn add_member(
        &self,
        peer_urls: Vec<String>,
        is_learner: bool,
    ) -> Result<(Member, Vec<Member>), EtcdError> {
        let members = self.members.list();
        self.reconfiguration(&members)
            .check_add(&peer_urls, is_learner)?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let id = crate::ids::member_id_at(&peer_urls, &self.cfg.initial_cluster_token, now);
        if members.iter().any(|m| m.id == id) {
            return Err(EtcdError::MemberExist);
        }
        let member = Member {
            id,
            name: String::new(),
            peer_ur_ls: peer_urls,
            client_ur_ls: vec![],
            is_learner,
        };
        let change = if is_learner {
            Change::AddLearner
        } else {
            Change::AddVoter
        };
        let list = self
            .proposer
            .change_membership(change, member.clone())
            .await?;
        Ok((member, list))
    }

    /// Removes member `id`; returns the members after the change.
    pub async fn remove_member(&self, id: u64) -> Result<Vec<Member>, EtcdError> {
        let members = self.members.list();
        let member = self.reconfiguration(&members).check_remove(id)?;
        self.proposer
            .change_membership(Change::Remove, member)
            .await
    }

    /// Promotes learner `id` to a voter; returns the members after the change.
    pub async fn promote_member(&self, id: u64) -> Result<Vec<Member>, EtcdError> {
        let members = self.members.list();
        // On the leader, a learner that has not caught up is refused, as etcd does.
        let matched = self.raft.matched(id).zip(self.raft.matched(self.member.id));
        let member = self.reconfiguration(&members).check_promote(id, matched)?;
        let promoted = self
            .proposer
            .change_membership(Change::Promote, member)
            .await?;
        if self.raft.status().is_leader {
            self.metrics.more.learner_promotions.inc();
        }
        Ok(promoted)
    }

    /// Moves member `req.id` to new peer URLs; returns the members after the change.
    pub async fn update_member(&self, req: MemberUpdateRequest) -> Result<Vec<Member>, EtcdError> {
        let members = self.members.list();
        self.reconfiguration(&members)
            .check_update(req.id, &req.peer_ur_ls)?;
        match self.propose(Request::MemberUpdate(req)).await? {
            ApplyResult::Members(list) => Ok(list),
            _ => Err(EtcdError::Stopped),
        }
    }
}
