//! The gRPC side of the peer URLs ([`PeerService`]: snapshots in, the member list and this
//! member's hashes out), and dialling a peer's gRPC.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cairn_proto::cairnpb::raft_peer_client::RaftPeerClient;
use cairn_proto::cairnpb::raft_peer_server::RaftPeer;
use cairn_proto::cairnpb::{
    MembersRequest, MembersResponse, PeerHashRequest, SnapshotChunk, SnapshotResponse,
};
use cairn_proto::etcdserverpb::{HashKvResponse, ResponseHeader};
use cairn_raft::RaftHandle;
use tokio::sync::Semaphore;
use tonic::{Request, Response, Status, Streaming};

use super::snapshot::{transfer_timeout, Assembly, AssemblyError};
use crate::cluster::gate::{PeerGate, PeerPath};

/// A client of the first member in `urls` that answers, sending messages of at most
/// `message_limit` bytes.
pub(crate) async fn connect(
    urls: &[String],
    message_limit: usize,
) -> Option<RaftPeerClient<tonic::transport::Channel>> {
    for url in urls {
        let Some((endpoint, tls)) = crate::tls::dial::endpoint(url) else {
            continue;
        };
        let endpoint = endpoint
            .connect_timeout(Duration::from_secs(1))
            .http2_keep_alive_interval(Duration::from_secs(5));
        let connector = tower::service_fn(move |uri| crate::tls::dial::dial(uri, tls));
        if let Ok(ch) = endpoint.connect_with_connector(connector).await {
            return Some(RaftPeerClient::new(ch).max_encoding_message_size(message_limit));
        }
    }
    None
}

/// The gRPC side of the peer URLs: takes snapshots, and tells a joining member who is in
/// the cluster.
pub struct PeerService {
    pub(crate) raft: RaftHandle,
    /// Who may send a snapshot: another current member of this cluster.
    pub(crate) gate: PeerGate,
    /// Snapshot data bytes accepted at most.
    pub(crate) max_snapshot_bytes: u64,
    /// Where a snapshot is opened for checking before Raft gets it.
    pub(crate) data_dir: PathBuf,
    /// Snapshots being received: one at a time (a member's only sender is its leader), so
    /// strangers cannot make it hold many.
    pub(crate) receiving: Arc<Semaphore>,
    /// etcd's `etcd_snap_db_save_total_duration_seconds`: from a snapshot's first chunk
    /// until it is whole and checked.
    pub(crate) snapshot_received: prometheus::Histogram,
    /// The store hashed for the corruption checks of other members.
    pub(crate) store: Arc<cairn_mvcc::Store>,
    /// One hash at a time: each walks the whole store on a blocking thread, and a caller
    /// only has to name a member to ask for one, so more requests wait rather than take
    /// more cores.
    pub(crate) hashing: Arc<tokio::sync::Semaphore>,
}

impl PeerService {
    /// Counts and logs a refused snapshot from `from`, and gives the status to answer.
    fn refused(
        &self,
        from: u64,
        why: impl std::fmt::Display,
        status: fn(String) -> Status,
    ) -> Status {
        self.gate.refuse(PeerPath::Snapshot, from, &why);
        status(why.to_string())
    }
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
        let from = first.header.as_ref().map_or(0, |h| h.from);
        if let Some(h) = &first.header {
            self.gate.admit(h.cluster_id, h.from, h.to).map_err(|e| {
                self.gate.refuse(PeerPath::Snapshot, from, &e);
                e.status()
            })?;
        }
        let invalid = |e: AssemblyError| self.refused(from, e, Status::invalid_argument);
        let _receiving = self.receiving.clone().try_acquire_owned().map_err(|_| {
            self.refused(
                from,
                "another snapshot is being received",
                Status::resource_exhausted,
            )
        })?;
        let mut assembly = Assembly::start(first, self.max_snapshot_bytes).map_err(invalid)?;
        // The bytes must keep coming at the rate a sender keeps to (the deadline moves with
        // what has arrived), so a sender that trickles them cannot hold the one snapshot
        // slot for long.
        let started = tokio::time::Instant::now();
        loop {
            let deadline = started + transfer_timeout(assembly.received());
            match tokio::time::timeout_at(deadline, chunks.message()).await {
                Ok(Ok(Some(chunk))) => assembly.push(chunk).map_err(invalid)?,
                Ok(Ok(None)) => break,
                Ok(Err(status)) => return Err(status),
                Err(_) => {
                    let why = format!(
                        "snapshot arrived too slowly: {} of {} bytes in {:?}",
                        assembly.received(),
                        assembly.announced(),
                        started.elapsed()
                    );
                    return Err(self.refused(from, why, Status::deadline_exceeded));
                }
            }
        }
        let msg = assembly.finish().map_err(invalid)?;
        // Checked before Raft sees it: once Raft takes it, the log starts after it.
        let dir = self.data_dir.clone();
        let (checked, msg) = tokio::task::spawn_blocking(move || {
            let checked = super::snapshot_check::check(
                &dir,
                msg.snapshot_data(),
                msg.snapshot_index(),
                msg.snapshot_members(),
            );
            (checked, msg)
        })
        .await
        .map_err(|e| {
            let why = format!("snapshot check failed: {e}");
            self.refused(from, why, Status::invalid_argument)
        })?;
        checked.map_err(|e| self.refused(from, e, Status::invalid_argument))?;
        self.snapshot_received
            .observe(started.elapsed().as_secs_f64());
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
        // The hash tells what the store holds: only another current member learns it.
        self.gate
            .admit(req.cluster_id, req.from, req.to)
            .map_err(|why| {
                self.gate.refuse(PeerPath::Hash, req.from, &why);
                why.status()
            })?;
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
                cluster_id: self.gate.cluster_id,
                member_id: self.gate.member_id,
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
            cluster_id: self.gate.cluster_id,
            members: self.gate.members.list(),
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
