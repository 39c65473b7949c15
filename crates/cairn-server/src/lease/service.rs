//! [`LeasePeerService`]: the leader's answers to the keep-alives and time-to-live queries
//! its followers forward on the peer URLs.

use cairn_lease::LeaseError;
use cairn_proto::cairnpb::lease_peer_server::LeasePeer;
use cairn_proto::cairnpb::{LeaseRenewRequest, LeaseRenewResponse};
use cairn_proto::etcdserverpb::{LeaseTimeToLiveRequest, LeaseTimeToLiveResponse};

use super::LeaseKeeper;
use crate::cluster::gate::{PeerGate, PeerPath};

/// Answers followers' keep-alives and time-to-live queries on the peer URLs.
pub struct LeasePeerService {
    pub(crate) keeper: LeaseKeeper,
    /// Who may ask: another current member of this cluster, naming itself in the request's
    /// metadata.
    pub(crate) gate: PeerGate,
}

fn not_primary() -> tonic::Status {
    tonic::Status::failed_precondition("not primary")
}

#[tonic::async_trait]
impl LeasePeer for LeasePeerService {
    async fn renew(
        &self,
        r: tonic::Request<LeaseRenewRequest>,
    ) -> Result<tonic::Response<LeaseRenewResponse>, tonic::Status> {
        self.gate.admit_request(PeerPath::Lease, &r)?;
        let id = r.into_inner().id;
        if !self.keeper.check_leadership() {
            return Err(not_primary());
        }
        self.keeper.wait_applied().await?;
        let resp = match self.keeper.renew_local(id).await {
            Ok(ttl) => LeaseRenewResponse { found: true, ttl },
            Err(LeaseError::NotFound) => LeaseRenewResponse {
                found: false,
                ttl: 0,
            },
            Err(_) => return Err(not_primary()),
        };
        Ok(tonic::Response::new(resp))
    }

    async fn time_to_live(
        &self,
        r: tonic::Request<LeaseTimeToLiveRequest>,
    ) -> Result<tonic::Response<LeaseTimeToLiveResponse>, tonic::Status> {
        self.gate.admit_request(PeerPath::Lease, &r)?;
        if !self.keeper.check_leadership() {
            return Err(not_primary());
        }
        self.keeper.wait_applied().await?;
        Ok(tonic::Response::new(
            self.keeper.time_to_live_local(&r.into_inner()),
        ))
    }
}
