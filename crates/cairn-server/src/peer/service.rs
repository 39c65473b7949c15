//! The gRPC side of the peer URLs ([`PeerService`]: snapshots in, the member list and this
//! member's hashes out), and dialling a peer's gRPC.

use std::sync::Arc;
use std::time::Duration;

use cairn_proto::cairnpb::raft_peer_client::RaftPeerClient;
use cairn_proto::cairnpb::raft_peer_server::RaftPeer;
use cairn_proto::cairnpb::{
    MembersRequest, MembersResponse, PeerHashRequest, SnapshotChunk, SnapshotResponse,
};
use cairn_proto::etcdserverpb::{HashKvResponse, ResponseHeader};
use cairn_raft::RaftHandle;
use tonic::{Request, Response, Status, Streaming};

use super::snapshot::{Assembly, AssemblyError};

/// A client of the first member in `urls` that answers, sending messages of at most
/// `message_limit` bytes.
pub(crate) async fn connect(
    urls: &[String],
    message_limit: usize,
) -> Option<RaftPeerClient<tonic::transport::Channel>> {
    for url in urls {
        let Ok(endpoint) = tonic::transport::Endpoint::from_shared(url.clone()) else {
            continue;
        };
        let endpoint = endpoint
            .connect_timeout(Duration::from_secs(1))
            .http2_keep_alive_interval(Duration::from_secs(5));
        let connector = tower::service_fn(cairn_client::coalesce::dial);
        if let Ok(ch) = endpoint.connect_with_connector(connector).await {
            return Some(RaftPeerClient::new(ch).max_encoding_message_size(message_limit));
        }
    }
    None
}

/// The gRPC side of the peer URLs: takes snapshots, and tells a joining member who is in
/// the cluster.
pub struct PeerService {
    pub raft: RaftHandle,
    pub cluster_id: u64,
    pub member_id: u64,
    pub members: Arc<crate::cluster::Members>,
    /// Snapshot data bytes accepted at most.
    pub max_snapshot_bytes: u64,
    /// The store hashed for the corruption checks of other members.
    pub store: Arc<cairn_mvcc::Store>,
    /// One hash at a time: each walks the whole store on a blocking thread, and a caller
    /// only has to name a member to ask for one, so more requests wait rather than take
    /// more cores.
    pub hashing: Arc<tokio::sync::Semaphore>,
}

/// Traffic for another cluster or member than this one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Misaddressed {
    #[error("request cluster ID mismatch (got {got:x} want {want:x})")]
    Cluster { got: u64, want: u64 },
    #[error("request sent to member {to:x}, this is member {me:x}")]
    Member { to: u64, me: u64 },
}

/// Refuses traffic meant for another cluster than `cluster_id` or another member than `me`.
pub(crate) fn check_addressee(
    cluster_id: u64,
    me: u64,
    got_cluster_id: u64,
    to: u64,
) -> Result<(), Misaddressed> {
    if got_cluster_id != cluster_id {
        return Err(Misaddressed::Cluster {
            got: got_cluster_id,
            want: cluster_id,
        });
    }
    if to != me {
        return Err(Misaddressed::Member { to, me });
    }
    Ok(())
}

#[tonic::async_trait]
impl RaftPeer for PeerService {
    async fn send_snapshot(
        &self,
        r: Request<Streaming<SnapshotChunk>>,
    ) -> Result<Response<SnapshotResponse>, Status> {
        let mut chunks = r.into_inner();
        let first = chunks
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("empty snapshot stream"))?;
        if let Some(h) = &first.header {
            check_addressee(self.cluster_id, self.member_id, h.cluster_id, h.to)
                .map_err(|e| Status::failed_precondition(e.to_string()))?;
        }
        let refused = |e: AssemblyError| Status::invalid_argument(e.to_string());
        let mut assembly = Assembly::start(first, self.max_snapshot_bytes).map_err(refused)?;
        while let Some(chunk) = chunks.message().await? {
            assembly.push(chunk).map_err(refused)?;
        }
        let from = assembly.from();
        let msg = assembly.finish().map_err(refused)?;
        tracing::info!(
            remote_peer_id = %format!("{from:x}"),
            index = msg.snapshot_index(),
            bytes = msg.snapshot_len(),
            "received raft snapshot"
        );
        self.raft
            .step(msg)
            .map_err(|e| Status::unavailable(format!("raft: {e}")))?;
        Ok(Response::new(SnapshotResponse {}))
    }

    async fn hash_kv(
        &self,
        r: Request<PeerHashRequest>,
    ) -> Result<Response<HashKvResponse>, Status> {
        let req = r.into_inner();
        check_addressee(self.cluster_id, self.member_id, req.cluster_id, req.to)
            .map_err(|e| Status::failed_precondition(e.to_string()))?;
        // The hash tells what the store holds: only a current member learns it.
        if req.from == self.member_id || self.members.get(req.from).is_none() {
            return Err(Status::permission_denied(format!(
                "{:x} is not a member of this cluster",
                req.from
            )));
        }
        // Held by the hashing thread, so a caller that goes away frees the turn only when
        // its hash is done.
        let turn = self
            .hashing
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        let store = self.store.clone();
        let hashed = tokio::task::spawn_blocking(move || {
            let _turn = turn;
            store.hash_by_rev(req.revision)
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?;
        let h = match hashed {
            Ok(h) => h,
            Err(e) => {
                return Err(match e.etcd() {
                    Some(etcd) => etcd.status(),
                    None => Status::internal(e.to_string()),
                })
            }
        };
        Ok(Response::new(HashKvResponse {
            header: Some(ResponseHeader {
                cluster_id: self.cluster_id,
                member_id: self.member_id,
                revision: h.current_revision,
                raft_term: self.raft.status().term,
            }),
            hash: h.hash,
            compact_revision: h.compact_revision,
            hash_revision: h.hash_revision,
        }))
    }

    async fn members(
        &self,
        _: Request<MembersRequest>,
    ) -> Result<Response<MembersResponse>, Status> {
        Ok(Response::new(MembersResponse {
            cluster_id: self.cluster_id,
            members: self.members.list(),
        }))
    }
}

/// Asks a member at `urls` for its hash at `revision` (see [`RaftPeer::hash_kv`]),
/// waiting at most `timeout`.
pub async fn fetch_hash(
    urls: &[String],
    req: PeerHashRequest,
    timeout: Duration,
) -> Result<HashKvResponse, Status> {
    let ask = async {
        let mut last = Status::unavailable("no peer URL answered");
        for url in urls {
            let Some(mut client) = connect(std::slice::from_ref(url), 1 << 20).await else {
                continue;
            };
            match client.hash_kv(req).await {
                Ok(r) => return Ok(r.into_inner()),
                Err(e) => last = e,
            }
        }
        Err(last)
    };
    tokio::time::timeout(timeout, ask)
        .await
        .unwrap_or_else(|_| Err(Status::deadline_exceeded("peer did not answer in time")))
}

/// Asks the members at `urls` for the cluster's id and member set (a member joining an
/// existing cluster does this before it starts Raft).
pub async fn fetch_members(urls: &[String]) -> Option<MembersResponse> {
    for url in urls {
        // The request is empty; the limit only bounds what this side sends.
        let Some(mut client) = connect(std::slice::from_ref(url), 1 << 20).await else {
            continue;
        };
        if let Ok(r) = client.members(MembersRequest {}).await {
            return Some(r.into_inner());
        }
    }
    None
}
