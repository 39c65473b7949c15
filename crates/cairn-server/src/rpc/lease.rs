//! The Lease service: grants and revokes go through Raft; keep-alives and time-to-live
//! queries are answered by the leader's lessor (forwarded to it from a follower); the list
//! of leases is this member's.

use std::pin::Pin;
use std::sync::Arc;

use cairn_proto::cairnpb::internal_request::Request;
use cairn_proto::etcdserverpb::{
    lease_server::Lease, LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest,
    LeaseKeepAliveResponse, LeaseLeasesRequest, LeaseLeasesResponse, LeaseRevokeRequest,
    LeaseRevokeResponse, LeaseStatus, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
    ResponseHeader,
};
use futures::Stream;
use tokio_stream::StreamExt;
use tonic::{Request as GrpcRequest, Response, Status, Streaming};

use crate::proposal::ApplyResult;
use crate::server::Server;

/// The Lease service of one member.
pub struct LeaseService {
    pub server: Arc<Server>,
}

fn unexpected() -> Status {
    Status::internal("cairn: the applier answered with an unexpected response type")
}

impl LeaseService {
    async fn grant_inner(
        &self,
        who: Option<cairn_auth::AuthInfo>,
        mut req: LeaseGrantRequest,
    ) -> Result<LeaseGrantResponse, Status> {
        self.server.refuse_on_learner()?;
        self.server.check_quota(crate::lease::GRANT_COST).await?;
        if req.id == 0 {
            req.id = self.server.leases().leases().next_id();
        }
        match self
            .server
            .propose_as(Request::LeaseGrant(req), who.as_ref())
            .await?
        {
            ApplyResult::LeaseGrant(mut r) => {
                self.server.fill(&mut r.header);
                Ok(r)
            }
            _ => Err(unexpected()),
        }
    }

    async fn revoke_inner(
        &self,
        who: Option<cairn_auth::AuthInfo>,
        req: LeaseRevokeRequest,
    ) -> Result<LeaseRevokeResponse, Status> {
        self.server.refuse_on_learner()?;
        match self
            .server
            .propose_as(Request::LeaseRevoke(req), who.as_ref())
            .await?
        {
            ApplyResult::LeaseRevoke(mut r) => {
                self.server.fill(&mut r.header);
                Ok(r)
            }
            _ => Err(unexpected()),
        }
    }

    async fn time_to_live_inner(
        &self,
        req: LeaseTimeToLiveRequest,
    ) -> Result<LeaseTimeToLiveResponse, Status> {
        self.server.refuse_on_learner()?;
        // etcd 3.5.1 looks at no token and checks no permission here, even for the keys it
        // lists.
        let mut resp = self.server.leases().time_to_live(req).await?;
        // The header is this member's, as etcd fills it after the leader answered.
        resp.header = Some(ResponseHeader::default());
        self.server.fill(&mut resp.header);
        Ok(resp)
    }

    async fn leases_inner(&self, _: LeaseLeasesRequest) -> Result<LeaseLeasesResponse, Status> {
        self.server.refuse_on_learner()?;
        let leases = self
            .server
            .leases()
            .leases()
            .lessor
            .leases()
            .into_iter()
            .map(|id| LeaseStatus { id })
            .collect();
        let mut resp = LeaseLeasesResponse {
            header: Some(ResponseHeader::default()),
            leases,
        };
        self.server.fill(&mut resp.header);
        Ok(resp)
    }
}

/// Answers one keep-alive: the header is taken before the renewal, so its revision is never
/// newer than the renewal (as etcd does); a lease that does not exist gets TTL 0.
async fn keep_alive_once(
    server: &Arc<Server>,
    req: LeaseKeepAliveRequest,
) -> Result<LeaseKeepAliveResponse, Status> {
    let mut header = Some(ResponseHeader::default());
    server.fill(&mut header);
    let ttl = server.leases().renew(req.id).await?;
    Ok(LeaseKeepAliveResponse {
        header,
        id: req.id,
        ttl,
    })
}

type KeepAliveStream = Pin<Box<dyn Stream<Item = Result<LeaseKeepAliveResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(
        &self,
        r: GrpcRequest<LeaseGrantRequest>,
    ) -> Result<Response<LeaseGrantResponse>, Status> {
        let result = async {
            let who = super::caller(&self.server, &r).await?;
            self.grant_inner(who, r.into_inner()).await
        }
        .await;
        result.map(Response::new)
    }

    async fn lease_revoke(
        &self,
        r: GrpcRequest<LeaseRevokeRequest>,
    ) -> Result<Response<LeaseRevokeResponse>, Status> {
        let result = async {
            let who = super::caller(&self.server, &r).await?;
            self.revoke_inner(who, r.into_inner()).await
        }
        .await;
        result.map(Response::new)
    }

    type LeaseKeepAliveStream = KeepAliveStream;

    async fn lease_keep_alive(
        &self,
        r: GrpcRequest<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        if let Err(e) = self.server.refuse_on_learner() {
            return Err(e.into());
        }
        // Each request is answered in turn as the response stream is polled: no task or
        // channel per stream. A broken or finished inbound stream ends it quietly; a
        // failed keep-alive ends it with the error.
        let state = Some((r.into_inner(), self.server.clone()));
        let out = futures::stream::unfold(state, |state| async move {
            let (mut inbound, server) = state?;
            let resp = match inbound.next().await? {
                Ok(req) => keep_alive_once(&server, req).await,
                // Past the receive limit: etcd's error ends the stream.
                Err(status) => {
                    let status = super::receive_limit_status(status);
                    if status.code() != tonic::Code::ResourceExhausted {
                        return None;
                    }
                    Err(status)
                }
            };
            let rest = resp.is_ok().then_some((inbound, server));
            Some((resp, rest))
        });
        Ok(Response::new(Box::pin(out)))
    }

    async fn lease_time_to_live(
        &self,
        r: GrpcRequest<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        let result = self.time_to_live_inner(r.into_inner()).await;
        result.map(Response::new)
    }

    async fn lease_leases(
        &self,
        r: GrpcRequest<LeaseLeasesRequest>,
    ) -> Result<Response<LeaseLeasesResponse>, Status> {
        self.leases_inner(r.into_inner()).await.map(Response::new)
    }
}
