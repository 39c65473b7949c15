//! Member-to-member Raft traffic over gRPC on the peer URLs.
//!
//! Sending: the Raft thread hands messages to [`PeerSet`]'s `send`, which never blocks.
//! Every message but a snapshot goes into the bounded queue of its destination. One task
//! per peer keeps a `RaftPeer.Stream` open to it and drains its queue into batches on that
//! stream (at most [`BATCH_MAX`] messages, ended early past [`BATCH_MAX_BYTES`]), never
//! waiting for an answer. The stream opens with an empty batch that the receiver checks
//! (cluster and addressee) before it answers with its headers; from then on the peer
//! counts as active until the stream breaks. HTTP/2 pings ([`PING_INTERVAL`],
//! [`PING_TIMEOUT`]) tell a paused or cut-off peer; a killed one closes its socket. When
//! the stream breaks, Raft hears that the peer is unreachable, what queued up meanwhile is
//! dropped, and the task reconnects. A peer that does not serve `Stream` (an older cairn)
//! gets a unary `RaftPeer.Send` per batch instead. When a queue is full, messages are
//! dropped; Raft retransmits what matters.
//!
//! Snapshots: a `MsgSnapshot` gets a task of its own, which streams it in chunks over
//! `RaftPeer.SendSnapshot` on a separate connection (`peer_snapshot`) and then tells
//! Raft whether it arrived. Meanwhile the peer's queue keeps carrying heartbeats and
//! appends. At most one snapshot per peer is in flight: one that comes while another is
//! on its way is dropped and reported lost, and Raft sends a newer one later.
//!
//! Receiving: [`PeerService`] checks that a stream, batch or snapshot is for this cluster
//! and member. It steps a batch's messages into Raft as they are, and a snapshot once all
//! its chunks are put back together. It ends a stream that stays silent for
//! [`STREAM_SILENCE`] (idle senders send an empty batch every [`PROBE_IDLE`]).

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use cairn_proto::cairnpb::raft_peer_client::RaftPeerClient;
use cairn_proto::cairnpb::raft_peer_server::RaftPeer;
use cairn_proto::cairnpb::{
    MembersRequest, MembersResponse, RaftBatch, RaftBatchResponse, RaftStreamAck, SnapshotChunk,
    SnapshotResponse,
};
use cairn_raft::eraftpb::{Message, MessageType};
use cairn_raft::RaftHandle;
use parking_lot::RwLock;
use protobuf::Message as _;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

use crate::peer_snapshot::Assembly;

/// Messages queued for one peer before new ones are dropped.
const QUEUE_DEPTH: usize = 8192;
/// Messages sent in one batch at most.
const BATCH_MAX: usize = 512;
/// Encoded bytes that end a batch early; the message that crosses it is the batch's last.
const BATCH_MAX_BYTES: usize = 16 << 20;
/// Pause after a failed send before trying the peer again.
const RETRY_PAUSE: Duration = Duration::from_millis(50);
/// A peer nothing was sent to for this long gets an empty batch, which keeps its end of
/// the stream from taking the stream for abandoned ([`STREAM_SILENCE`]).
const PROBE_IDLE: Duration = Duration::from_secs(1);
/// An HTTP/2 ping goes to a peer the stream's connection has heard nothing from for this
/// long...
const PING_INTERVAL: Duration = Duration::from_secs(1);
/// ...and the connection, with its stream, counts as broken when the ping is not answered
/// this soon: a paused or cut-off peer stops counting as active within about 3 s. (A
/// killed one at once: its socket closes.) Not shorter: a member starved of CPU for a
/// moment must not be taken for gone.
const PING_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest wait for a peer to take a new stream.
const STREAM_OPEN_TIMEOUT: Duration = Duration::from_secs(2);
/// Batches handed to an open stream that gRPC has not written yet, at most; past it the
/// sender waits, and its queue takes the messages.
const STREAM_DEPTH: usize = 64;
/// A stream nothing arrived on for this long (not even an idle probe) is ended by its
/// receiver: its sender is gone without closing it (a cut-off network).
const STREAM_SILENCE: Duration = Duration::from_secs(10);

/// The largest gRPC message members send each other, for a cluster whose
/// `--max-request-bytes` is `max_request_bytes`. A batch stops growing past
/// [`BATCH_MAX_BYTES`], but its last message may be a follower's forwarded proposals (up to
/// cairn-raft's 16 MiB proposal batch plus one request) or an append holding one request.
pub fn message_limit(max_request_bytes: u64) -> usize {
    (64 << 20) + 2 * (max_request_bytes as usize + crate::server::GRPC_OVERHEAD_BYTES)
}

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
    /// See [`message_limit`].
    message_limit: usize,
    /// Each peer's queue and snapshot state. Locked briefly by the Raft thread on every
    /// send and by the applier when membership changes; never held across an await.
    peers: RwLock<HashMap<u64, Peer>>,
    /// Since when each peer has answered every send, for the peers that do.
    active: Arc<RwLock<HashMap<u64, Instant>>>,
}

/// Where messages to one peer go.
struct Peer {
    queue: mpsc::Sender<Message>,
    urls: Arc<[String]>,
    /// Set while a snapshot to this peer is on its way; kept when the peer's URLs change.
    snapshot_in_flight: Arc<AtomicBool>,
}

/// Clears a peer's snapshot-in-flight flag when the sending task ends, however it ends.
struct InFlight(Arc<AtomicBool>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl PeerSet {
    /// An empty set for member `from` of cluster `cluster_id`; sender tasks run on
    /// `runtime` and send gRPC messages of at most `message_limit` bytes.
    pub fn new(
        runtime: tokio::runtime::Handle,
        cluster_id: u64,
        from: u64,
        raft: RaftCell,
        message_limit: usize,
    ) -> PeerSet {
        PeerSet {
            inner: Arc::new(PeerSetInner {
                runtime,
                cluster_id,
                from,
                raft,
                message_limit,
                peers: RwLock::new(HashMap::new()),
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
            message_limit: i.message_limit,
            active: i.active.clone(),
        };
        i.runtime.spawn(sender.run(rx));
        let mut peers = i.peers.write();
        let snapshot_in_flight = peers
            .get(&id)
            .map(|p| p.snapshot_in_flight.clone())
            .unwrap_or_default();
        // The old sender, if any, ends when its queue's last handle drops here.
        peers.insert(
            id,
            Peer {
                queue: tx,
                urls: urls.into(),
                snapshot_in_flight,
            },
        );
    }

    /// Stops sending to member `id`.
    pub fn remove_peer(&self, id: u64) {
        self.inner.peers.write().remove(&id);
        self.inner.active.write().remove(&id);
    }

    /// Since when member `id` has answered every send; `None` while it does not answer.
    pub fn active_since(&self, id: u64) -> Option<Instant> {
        self.inner.active.read().get(&id).copied()
    }
}

impl PeerSetInner {
    /// Starts streaming snapshot message `m` to `peer`, unless one is on its way to it
    /// already; Raft hears whether it was delivered either way.
    fn send_snapshot(&self, peer: &Peer, m: Message) {
        let to = m.to;
        if peer.snapshot_in_flight.swap(true, Ordering::AcqRel) {
            tracing::debug!(remote_peer_id = %format!("{to:x}"), "a snapshot to the peer is in flight; dropping a newer one");
            if let Some(raft) = self.raft.get() {
                raft.report_snapshot(to, false);
            }
            return;
        }
        let in_flight = InFlight(peer.snapshot_in_flight.clone());
        let urls = peer.urls.clone();
        let (raft, cluster_id, from, limit) = (
            self.raft.clone(),
            self.cluster_id,
            self.from,
            self.message_limit,
        );
        self.runtime.spawn(async move {
            let sent = crate::peer_snapshot::send(&urls, limit, cluster_id, from, m).await;
            // Cleared before reporting, so Raft's next attempt is not taken for a duplicate.
            drop(in_flight);
            if let Err(e) = &sent {
                tracing::warn!(remote_peer_id = %format!("{to:x}"), error = %e, "failed to send raft snapshot");
            }
            if let Some(raft) = raft.get() {
                raft.report_snapshot(to, sent.is_ok());
                if sent.is_err() {
                    raft.report_unreachable(to);
                }
            }
        });
    }
}

impl cairn_raft::Transport for PeerSet {
    fn send(&mut self, msgs: Vec<Message>) {
        let peers = self.inner.peers.read();
        for m in msgs {
            let Some(peer) = peers.get(&m.to) else {
                continue;
            };
            if m.get_msg_type() == MessageType::MsgSnapshot {
                self.inner.send_snapshot(peer, m);
            } else {
                // A full queue means the peer is far behind or away; Raft resends.
                let _ = peer.queue.try_send(m);
            }
        }
    }
}

/// A client of the first member in `urls` that answers, sending messages of at most
/// `message_limit` bytes.
pub(crate) async fn connect(
    urls: &[String],
    message_limit: usize,
) -> Option<RaftPeerClient<tonic::transport::Channel>> {
    connect_with(urls, message_limit, |e| {
        e.http2_keep_alive_interval(Duration::from_secs(5))
    })
    .await
}

/// Like [`connect`], for the connection that carries a peer's stream: HTTP/2 pings go out
/// after [`PING_INTERVAL`] without a frame from the peer, and the connection counts as
/// broken when one is not answered within [`PING_TIMEOUT`].
async fn connect_stream(
    urls: &[String],
    message_limit: usize,
) -> Option<RaftPeerClient<tonic::transport::Channel>> {
    connect_with(urls, message_limit, |e| {
        e.http2_keep_alive_interval(PING_INTERVAL)
            .keep_alive_timeout(PING_TIMEOUT)
            .keep_alive_while_idle(true)
    })
    .await
}

async fn connect_with(
    urls: &[String],
    message_limit: usize,
    keep_alive: impl Fn(tonic::transport::Endpoint) -> tonic::transport::Endpoint,
) -> Option<RaftPeerClient<tonic::transport::Channel>> {
    for url in urls {
        let Ok(endpoint) = tonic::transport::Endpoint::from_shared(url.clone()) else {
            continue;
        };
        let endpoint = keep_alive(endpoint.connect_timeout(Duration::from_secs(1)));
        let connector = tower::service_fn(cairn_client::coalesce::dial);
        if let Ok(ch) = endpoint.connect_with_connector(connector).await {
            return Some(RaftPeerClient::new(ch).max_encoding_message_size(message_limit));
        }
    }
    None
}

/// How batches reach one peer.
enum Link {
    /// An open `RaftPeer.Stream`: batches handed to `batches` go out on it; `acks` ends
    /// (or fails) when the stream does.
    Stream {
        batches: mpsc::Sender<RaftBatch>,
        acks: Streaming<RaftStreamAck>,
    },
    /// A peer that does not serve `Stream` (an older cairn): one `RaftPeer.Send` per batch.
    Unary(RaftPeerClient<tonic::transport::Channel>),
}

/// Why a link to a peer stopped carrying batches.
enum LinkEnd {
    /// The peer's queue closed: it was removed or its URLs changed.
    QueueClosed,
    /// The link broke or never opened.
    Broken(String),
}

/// Sends the queued messages for one peer.
struct Sender {
    cluster_id: u64,
    from: u64,
    to: u64,
    urls: Vec<String>,
    raft: RaftCell,
    message_limit: usize,
    active: Arc<RwLock<HashMap<u64, Instant>>>,
}

impl Sender {
    /// Records that the peer answers: its stream is open, or it answered a unary send.
    fn report_delivered(&self) {
        self.active
            .write()
            .entry(self.to)
            .or_insert_with(Instant::now);
    }

    /// Tells Raft that a send failed, so it probes the peer less eagerly.
    fn report_failed(&self) {
        self.active.write().remove(&self.to);
        if let Some(raft) = self.raft.get() {
            raft.report_unreachable(self.to);
        }
    }

    fn batch(&self, messages: Vec<Vec<u8>>) -> RaftBatch {
        RaftBatch {
            cluster_id: self.cluster_id,
            from: self.from,
            to: self.to,
            messages,
        }
    }

    /// Keeps a link to the peer open and sends the queue over it, reopening it after a
    /// pause whenever it breaks, until the queue closes.
    async fn run(self, mut rx: mpsc::Receiver<Message>) {
        let to = self.to;
        let mut reported_down = false;
        loop {
            let end = match self.open().await {
                Ok(mut link) => {
                    if let Link::Stream { .. } = link {
                        self.report_delivered();
                    }
                    if reported_down {
                        tracing::info!(remote_peer_id = %format!("{to:x}"), "peer became active");
                        reported_down = false;
                    }
                    self.pump(&mut link, &mut rx).await
                }
                Err(e) => LinkEnd::Broken(e),
            };
            let LinkEnd::Broken(error) = end else {
                return;
            };
            if !reported_down {
                tracing::warn!(remote_peer_id = %format!("{to:x}"), %error, "failed to send to peer; dropping messages until it answers");
                reported_down = true;
            }
            self.report_failed();
            tokio::time::sleep(RETRY_PAUSE).await;
            // What queued up meanwhile is stale; Raft resends what matters.
            loop {
                match rx.try_recv() {
                    Ok(_) => {}
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => return,
                }
            }
        }
    }

    /// Connects and opens a stream: the receiver has checked the opening batch when its
    /// headers arrive.
    async fn open(&self) -> Result<Link, String> {
        let Some(mut client) = connect_stream(&self.urls, self.message_limit).await else {
            return Err("peer unreachable".to_string());
        };
        let (batches, outgoing) = mpsc::channel(STREAM_DEPTH);
        batches
            .try_send(self.batch(Vec::new()))
            .map_err(|_| "stream queue closed".to_string())?;
        let opened = tokio::time::timeout(
            STREAM_OPEN_TIMEOUT,
            client.stream(tokio_stream::wrappers::ReceiverStream::new(outgoing)),
        )
        .await
        .map_err(|_| "timed out opening the stream".to_string())?;
        match opened {
            Ok(acks) => Ok(Link::Stream {
                batches,
                acks: acks.into_inner(),
            }),
            Err(status) if status.code() == tonic::Code::Unimplemented => Ok(Link::Unary(client)),
            Err(status) => Err(status.message().to_string()),
        }
    }

    /// Sends batches from the queue over `link` until the queue closes or the link breaks.
    /// A peer nothing was sent to for [`PROBE_IDLE`] gets an empty batch.
    async fn pump(&self, link: &mut Link, rx: &mut mpsc::Receiver<Message>) -> LinkEnd {
        loop {
            let next = match link {
                Link::Stream { acks, .. } => tokio::select! {
                    next = tokio::time::timeout(PROBE_IDLE, rx.recv()) => next,
                    ack = acks.message() => match ack {
                        Ok(Some(_)) => continue,
                        Ok(None) => return LinkEnd::Broken("the peer ended the stream".into()),
                        Err(status) => return LinkEnd::Broken(status.message().to_string()),
                    },
                },
                Link::Unary(_) => tokio::time::timeout(PROBE_IDLE, rx.recv()).await,
            };
            let mut pending = match next {
                Ok(Some(first)) => vec![first],
                Ok(None) => return LinkEnd::QueueClosed,
                Err(_) => Vec::new(),
            };
            let mut bytes: usize = pending.iter().map(|m| m.compute_size() as usize).sum();
            while !pending.is_empty() && pending.len() < BATCH_MAX && bytes < BATCH_MAX_BYTES {
                match rx.try_recv() {
                    Ok(m) => {
                        bytes += m.compute_size() as usize;
                        pending.push(m);
                    }
                    Err(_) => break,
                }
            }
            let messages = pending
                .iter()
                .filter_map(|m| m.write_to_bytes().ok())
                .collect();
            let batch = self.batch(messages);
            match link {
                Link::Stream { batches, .. } => {
                    if batches.send(batch).await.is_err() {
                        return LinkEnd::Broken("the stream closed".into());
                    }
                }
                Link::Unary(client) => match client.send(batch).await {
                    Ok(_) => self.report_delivered(),
                    Err(status) => return LinkEnd::Broken(status.message().to_string()),
                },
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
    /// Snapshot data bytes accepted at most.
    pub max_snapshot_bytes: u64,
}

impl PeerService {
    /// Refuses traffic meant for another cluster or member.
    fn check_addressee(&self, cluster_id: u64, to: u64) -> Result<(), Status> {
        check_addressee(self.cluster_id, self.member_id, cluster_id, to)
    }
}

/// Refuses traffic meant for another cluster than `cluster_id` or another member than `me`.
fn check_addressee(cluster_id: u64, me: u64, got_cluster_id: u64, to: u64) -> Result<(), Status> {
    if got_cluster_id != cluster_id {
        return Err(Status::failed_precondition(format!(
            "request cluster ID mismatch (got {got_cluster_id:x} want {cluster_id:x})"
        )));
    }
    if to != me {
        return Err(Status::failed_precondition(format!(
            "request sent to member {to:x}, this is member {me:x}"
        )));
    }
    Ok(())
}

/// Steps the messages of `batch` into Raft.
fn step_batch(raft: &RaftHandle, batch: &RaftBatch) -> Result<(), Status> {
    let msgs = batch
        .messages
        .iter()
        .map(|b| Message::parse_from_bytes(b))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Status::invalid_argument(format!("undecodable raft message: {e}")))?;
    raft.step_many(msgs)
        .map_err(|e| Status::unavailable(format!("raft: {e}")))
}

/// The receiving end of one peer's `RaftPeer.Stream`: yields nothing, or the error that
/// ended it.
type AckStream = Pin<Box<dyn Stream<Item = Result<RaftStreamAck, Status>> + Send>>;

#[tonic::async_trait]
impl RaftPeer for PeerService {
    type StreamStream = AckStream;

    async fn stream(
        &self,
        r: Request<Streaming<RaftBatch>>,
    ) -> Result<Response<AckStream>, Status> {
        let mut batches = r.into_inner();
        let opening = batches
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("raft stream ended before its first batch"))?;
        self.check_addressee(opening.cluster_id, opening.to)?;
        if self.raft.is_stopped() {
            // Refused before the headers, so a member on its way out does not count as
            // active for a moment each time its peers reconnect.
            return Err(Status::unavailable("raft: stopped"));
        }
        step_batch(&self.raft, &opening)?;
        let (end_tx, end_rx) = mpsc::channel(1);
        let (raft, cluster_id, me) = (self.raft.clone(), self.cluster_id, self.member_id);
        tokio::spawn(async move {
            let ended = async {
                loop {
                    let Ok(next) = tokio::time::timeout(STREAM_SILENCE, batches.message()).await
                    else {
                        return Err(Status::deadline_exceeded("no raft batch for too long"));
                    };
                    let Some(batch) = next? else {
                        return Ok(());
                    };
                    check_addressee(cluster_id, me, batch.cluster_id, batch.to)?;
                    step_batch(&raft, &batch)?;
                }
            }
            .await;
            if let Err(status) = ended {
                tracing::debug!(remote_peer_id = %format!("{:x}", opening.from), error = %status.message(), "raft stream from peer ended");
                let _ = end_tx.send(Err(status)).await;
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(end_rx),
        )))
    }

    async fn send(&self, r: Request<RaftBatch>) -> Result<Response<RaftBatchResponse>, Status> {
        let batch = r.into_inner();
        self.check_addressee(batch.cluster_id, batch.to)?;
        step_batch(&self.raft, &batch)?;
        Ok(Response::new(RaftBatchResponse {}))
    }

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
            self.check_addressee(h.cluster_id, h.to)?;
        }
        let refused =
            |e: crate::peer_snapshot::AssemblyError| Status::invalid_argument(e.to_string());
        let mut assembly = Assembly::start(first, self.max_snapshot_bytes).map_err(refused)?;
        while let Some(chunk) = chunks.message().await? {
            assembly.push(chunk).map_err(refused)?;
        }
        let from = assembly.from();
        let msg = assembly.finish().map_err(refused)?;
        let snap = msg.get_snapshot();
        tracing::info!(
            remote_peer_id = %format!("{from:x}"),
            index = snap.get_metadata().index,
            bytes = snap.get_data().len(),
            "received raft snapshot"
        );
        self.raft
            .step(msg)
            .map_err(|e| Status::unavailable(format!("raft: {e}")))?;
        Ok(Response::new(SnapshotResponse {}))
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
