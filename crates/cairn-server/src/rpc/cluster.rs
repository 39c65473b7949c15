//! The Cluster service: MemberList, and membership changes through Raft (add a voter or a
//! learner, promote, remove, update peer URLs). The checks are the server's
//! ([`crate::cluster::policy`]).

use std::sync::Arc;

use cairn_proto::etcdserverpb::{
    cluster_server::Cluster, MemberAddRequest, MemberAddResponse, MemberListRequest,
    MemberListResponse, MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest,
    MemberRemoveResponse, MemberUpdateRequest, MemberUpdateResponse,
};
use cairn_proto::EtcdError;
use tonic::{Request, Response, Status};

use crate::server::Server;

/// The Cluster service of one member.
pub struct ClusterService {
    pub server: Arc<Server>,
}

impl ClusterService {
    async fn add(&self, req: MemberAddRequest) -> Result<MemberAddResponse, EtcdError> {
        let s = &self.server;
        let (member, members) = s.add_member(req.peer_ur_ls, req.is_learner).await?;
        Ok(MemberAddResponse {
            header: Some(s.header(0)),
            member: Some(member),
            members,
        })
    }

    async fn remove(&self, req: MemberRemoveRequest) -> Result<MemberRemoveResponse, EtcdError> {
        let s = &self.server;
        let members = s.remove_member(req.id).await?;
        Ok(MemberRemoveResponse {
            header: Some(s.header(0)),
            members,
        })
    }

    async fn promote(&self, req: MemberPromoteRequest) -> Result<MemberPromoteResponse, EtcdError> {
        let s = &self.server;
        let members = s.promote_member(req.id).await?;
        Ok(MemberPromoteResponse {
            header: Some(s.header(0)),
            members,
        })
    }

    async fn update(&self, req: MemberUpdateRequest) -> Result<MemberUpdateResponse, EtcdError> {
        let s = &self.server;
        let members = s.update_member(req).await?;
        Ok(MemberUpdateResponse {
            header: Some(s.header(0)),
            members,
        })
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(
        &self,
        r: Request<MemberAddRequest>,
    ) -> Result<Response<MemberAddResponse>, Status> {
        let result = async {
            super::admin(&self.server, &r).await?;
            self.add(r.into_inner()).await.map_err(Status::from)
        }
        .await;
        result.map(Response::new)
    }

    async fn member_remove(
        &self,
        r: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        let result = async {
            super::admin(&self.server, &r).await?;
            self.remove(r.into_inner()).await.map_err(Status::from)
        }
        .await;
        result.map(Response::new)
    }

    async fn member_update(
        &self,
        r: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        let result = async {
            super::admin(&self.server, &r).await?;
            self.update(r.into_inner()).await.map_err(Status::from)
        }
        .await;
        result.map(Response::new)
    }

    async fn member_list(
        &self,
        _: Request<MemberListRequest>,
    ) -> Result<Response<MemberListResponse>, Status> {
        let s = &self.server;
        let resp = MemberListResponse {
            header: Some(s.header(0)),
            members: s.member_list(),
        };
        Ok(Response::new(resp))
    }

    async fn member_promote(
        &self,
        r: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        let result = async {
            super::admin(&self.server, &r).await?;
            self.promote(r.into_inner()).await.map_err(Status::from)
        }
        .await;
        result.map(Response::new)
    }
}
