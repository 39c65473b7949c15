//! Member-to-member Raft traffic over gRPC on the peer URLs.
//!
//! Sending: the Raft thread hands messages to [`PeerSet`]'s `send`, which never blocks: each
//! message goes into the bounded queue of its destination. One task per peer drains its
//! queue into batches and sends each batch as one `RaftPeer.Send` call. When a queue is full
//! or a peer is unreachable, messages are dropped; Raft retransmits what matters.
//!
//! Receiving: [`PeerService`] checks the batch is for this cluster and member, decodes each
//! message and steps it into Raft.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use cairn_proto::cairnpb::raft_peer_client::RaftPeerClient;
use cairn_proto::cairnpb::raft_peer_server::RaftPeer;
use cairn_proto::cairnpb::{MembersRequest, MembersResponse, RaftBatch, RaftBatchResponse};
use cairn_raft::eraftpb::{Message, MessageType};
use cairn_raft::RaftHandle;
use parking_lot::RwLock;
use protobuf::Message as _;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status};

/// Messages queued for one peer before new ones are dropped.
const QUEUE_DEPTH: usize = 8192;
/// Messages sent in one batch at most.
const BATCH_MAX: usize = 512;
/// Pause after a failed send before trying the peer again.
const RETRY_PAUSE: Duration = Duration::from_millis(50);
/// A peer nothing was sent to for this long gets an empty batch, so every member knows
/// which peers it can reach (strict reconfiguration asks), not only the leader.
const PROBE_IDLE: Duration = Duration::from_secs(1);

/// The Raft handle, once Raft has started; senders report unreachable peers and snapshot
/// delivery to it.
pub type RaftCell = Arc<OnceLock<RaftHandle>>;

/// The other members Raft sends to, changed as members join and leave. Cloning shares it.
#[derive(Clone)]
pub struct PeerSet {
    inner: Arc<PeerSetInner>,
}

struct PeerSetInner {
    runtime: tokio::runtime::Handle,
    cluster_id: u64,
    from: u64,
    raft: RaftCell,
    /// The send queue of each peer. Locked briefly by the Raft thread on every send and by
    /// the applier when membership changes; never held across an await.
    queues: RwLock<HashMap<u64, mpsc::Sender<Message>>>,
    /// Since when each peer has answered every send, for the peers that do.
    active: Arc<RwLock<HashMap<u64, Instant>>>,
}

impl PeerSet {
    /// An empty set for member `from` of cluster `cluster_id`; sender tasks run on `runtime`.
    pub fn new(
        runtime: tokio::runtime::Handle,
        cluster_id: u64,
        from: u64,
        raft: RaftCell,
    ) -> PeerSet {
        PeerSet {
            inner: Arc::new(PeerSetInner {
                runtime,
                cluster_id,
                from,
                raft,
                queues: RwLock::new(HashMap::new()),
                active: Arc::default(),
            }),
        }
    }

    /// Sends to member `id` at `urls` from now on (replacing its old URLs, if any).
    pub fn set_peer(&self, id: u64, urls: &[String]) {
        let i = &self.inner;
        if id == i.from {
            return;
        }
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let sender = Sender {
            cluster_id: i.cluster_id,
            from: i.from,
            to: id,
            urls: urls.to_vec(),
            raft: i.raft.clone(),
            active: i.active.clone(),
        };
        i.runtime.spawn(sender.run(rx));
        // The old sender, if any, ends when its queue's last handle drops here.
        i.queues.write().insert(id, tx);
    }
}

impl PeerSet {
    /// Stops sending to member `id`.
    pub fn remove_peer(&self, id: u64) {
        self.inner.queues.write().remove(&id);
        self.inner.active.write().remove(&id);
    }

    /// Since when member `id` has answered every send; `None` while it does not answer.
    pub fn active_since(&self, id: u64) -> Option<Instant> {
        self.inner.active.read().get(&id).copied()
    }
}

impl cairn_raft::Transport for PeerSet {
    fn send(&mut self, msgs: Vec<Message>) {
        let queues = self.inner.queues.read();
        for m in msgs {
            if let Some(q) = queues.get(&m.to) {
                // A full queue means the peer is far behind or away; Raft resends.
                let _ = q.try_send(m);
            }
        }
    }
}

async fn connect(urls: &[String]) -> Option<RaftPeerClient<tonic::transport::Channel>> {
    for url in urls {
        let Ok(endpoint) = tonic::transport::Endpoint::from_shared(url.clone()) else {
            continue;
        };
        let endpoint = endpoint
            .connect_timeout(Duration::from_secs(1))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(5));
        if let Ok(ch) = endpoint.connect().await {
            return Some(
                RaftPeerClient::new(ch)
                    .max_decoding_message_size(usize::MAX)
                    .max_encoding_message_size(usize::MAX),
            );
        }
    }
    None
}

/// Sends the queued messages for one peer.
struct Sender {
    cluster_id: u64,
    from: u64,
    to: u64,
    urls: Vec<String>,
    raft: RaftCell,
    active: Arc<RwLock<HashMap<u64, Instant>>>,
}

impl Sender {
    /// Tells Raft how a send went: an unreachable peer is probed less eagerly, and a
    /// snapshot's delivery (or loss) moves the peer out of snapshot state.
    fn report(&self, batch: &[Message], delivered: bool) {
        if delivered {
            self.active
                .write()
                .entry(self.to)
                .or_insert_with(Instant::now);
        } else {
            self.active.write().remove(&self.to);
        }
        let Some(raft) = self.raft.get() else { return };
        if batch
            .iter()
            .any(|m| m.get_msg_type() == MessageType::MsgSnapshot)
        {
            raft.report_snapshot(self.to, delivered);
        }
        if !delivered {
            raft.report_unreachable(self.to);
        }
    }

    async fn run(self, mut rx: mpsc::Receiver<Message>) {
        let to = self.to;
        let mut client = None;
        let mut reported_down = false;
        loop {
            // An idle peer gets an empty batch: a probe of whether it answers.
            let mut batch = match tokio::time::timeout(PROBE_IDLE, rx.recv()).await {
                Ok(Some(first)) => vec![first],
                Ok(None) => break,
                Err(_) => Vec::new(),
            };
            while !batch.is_empty() && batch.len() < BATCH_MAX {
                match rx.try_recv() {
                    Ok(m) => batch.push(m),
                    Err(_) => break,
                }
            }
            if client.is_none() {
                client = connect(&self.urls).await;
            }
            let Some(c) = client.as_mut() else {
                if !reported_down {
                    tracing::warn!(remote_peer_id = %format!("{to:x}"), "peer unreachable; dropping messages until it answers");
                    reported_down = true;
                }
                self.report(&batch, false);
                tokio::time::sleep(RETRY_PAUSE).await;
                continue;
            };
            let messages = batch
                .iter()
                .filter_map(|m| m.write_to_bytes().ok())
                .collect();
            let req = RaftBatch {
                cluster_id: self.cluster_id,
                from: self.from,
                to,
                messages,
            };
            match c.send(req).await {
                Ok(_) => {
                    if reported_down {
                        tracing::info!(remote_peer_id = %format!("{to:x}"), "peer became active");
                        reported_down = false;
                    }
                    self.report(&batch, true);
                }
                Err(status) => {
                    if !reported_down {
                        tracing::warn!(remote_peer_id = %format!("{to:x}"), error = %status.message(), "failed to send to peer");
                        reported_down = true;
                    }
                    self.report(&batch, false);
                    client = None;
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
            }
        }
    }
}

/// Receives Raft messages from the other members, and tells a joining member who is in the
/// cluster.
pub struct PeerService {
    pub raft: RaftHandle,
    pub cluster_id: u64,
    pub member_id: u64,
    pub members: Arc<crate::membership::Members>,
}

#[tonic::async_trait]
impl RaftPeer for PeerService {
    async fn send(&self, r: Request<RaftBatch>) -> Result<Response<RaftBatchResponse>, Status> {
        let batch = r.into_inner();
        if batch.cluster_id != self.cluster_id {
            return Err(Status::failed_precondition(format!(
                "request cluster ID mismatch (got {:x} want {:x})",
                batch.cluster_id, self.cluster_id
            )));
        }
        if batch.to != self.member_id {
            return Err(Status::failed_precondition(format!(
                "request sent to member {:x}, this is member {:x}",
                batch.to, self.member_id
            )));
        }
        let msgs = batch
            .messages
            .iter()
            .map(|b| Message::parse_from_bytes(b))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Status::invalid_argument(format!("undecodable raft message: {e}")))?;
        self.raft
            .step_many(msgs)
            .map_err(|e| Status::unavailable(format!("raft: {e}")))?;
        Ok(Response::new(RaftBatchResponse {}))
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

/// Asks the members at `urls` for the cluster's id and member set (a member joining an
/// existing cluster does this before it starts Raft).
pub async fn fetch_members(urls: &[String]) -> Option<MembersResponse> {
    for url in urls {
        let Some(mut client) = connect(std::slice::from_ref(url)).await else {
            continue;
        };
        if let Ok(r) = client.members(MembersRequest {}).await {
            return Some(r.into_inner());
        }
    }
    None
}
