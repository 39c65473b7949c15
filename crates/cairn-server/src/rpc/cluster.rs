//! The Cluster service. MemberList reports the members from `--initial-cluster` with the
//! client URLs each published; membership changes are refused clearly until they are built.

use std::sync::Arc;

use cairn_proto::etcdserverpb::{
    cluster_server::Cluster, MemberAddRequest, MemberAddResponse, MemberListRequest,
    MemberListResponse, MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest,
    MemberRemoveResponse, MemberUpdateRequest, MemberUpdateResponse,
};
use tonic::{Request, Response, Status};

use super::Observed;
use crate::server::Server;

/// The Cluster service of one member.
pub struct ClusterService {
    pub server: Arc<Server>,
}

fn not_yet() -> Status {
    Status::unimplemented(
        "cairn: membership changes are not supported yet (single-member clusters only)",
    )
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(
        &self,
        _: Request<MemberAddRequest>,
    ) -> Result<Response<MemberAddResponse>, Status> {
        Err::<MemberAddResponse, _>(not_yet()).observed(
            &self.server.metrics,
            "etcdserverpb.Cluster",
            "MemberAdd",
        )
    }

    async fn member_remove(
        &self,
        _: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        Err::<MemberRemoveResponse, _>(not_yet()).observed(
            &self.server.metrics,
            "etcdserverpb.Cluster",
            "MemberRemove",
        )
    }

    async fn member_update(
        &self,
        _: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        Err::<MemberUpdateResponse, _>(not_yet()).observed(
            &self.server.metrics,
            "etcdserverpb.Cluster",
            "MemberUpdate",
        )
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
        Ok(resp).observed(&s.metrics, "etcdserverpb.Cluster", "MemberList")
    }

    async fn member_promote(
        &self,
        _: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        Err::<MemberPromoteResponse, _>(not_yet()).observed(
            &self.server.metrics,
            "etcdserverpb.Cluster",
            "MemberPromote",
        )
    }
}
