//! Member-to-member Raft traffic on the peer URLs.
//!
//! Sending: the Raft thread hands messages to [`PeerSet`]'s `send`, which never blocks.
//! Every message but a snapshot goes to its destination's [`Link`]: a raft stream
//! (`peer_stream`) that the Raft thread writes to directly, and that a task of its own
//! keeps open. When a stream breaks, Raft hears that the peer is unreachable, what was
//! queued for it is dropped, and the task reconnects; Raft resends what matters.
//!
//! Snapshots: a `MsgSnapshot` gets a task of its own, which streams it in chunks over
//! `RaftPeer.SendSnapshot` (gRPC) on a separate connection (`peer_snapshot`) and then
//! tells Raft whether it arrived. Meanwhile the peer's stream keeps carrying heartbeats and
//! appends. At most one snapshot per peer is in flight: one that comes while another is
//! on its way is dropped and reported lost, and Raft sends a newer one later.
//!
//! Receiving: raft streams are served by `stream::receive`; [`PeerService`] serves
//! the gRPC side of the peer URLs: it checks that a snapshot is for this cluster and
//! member and steps it into Raft once all its chunks are put back together, and it tells a
//! joining member who is in the cluster.
//!
//! # Layout
//!
//! - This file: [`PeerSet`], the transport Raft sends through.
//! - `stream.rs`: raft streams, plain TCP on the peer URLs.
//! - `snapshot.rs`: Raft snapshots in chunks over `RaftPeer.SendSnapshot`.
//! - `snapshot_check.rs`: a received snapshot opened and checked before Raft takes it.
//! - `service.rs`: [`PeerService`] (gRPC on the peer URLs), dialling peers, and the member
//!   list a joining member fetches.
//!
//! Who may come in is `cluster::gate`'s to say.
//!
//! Owns the connections between members. Reaches Raft only through its handle, and the
//! member set only to list it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use cairn_raft::{PeerMessage, RaftHandle};
use parking_lot::RwLock;

use stream::{Hello, Link, LinkEvents, StreamError};

mod service;
mod snapshot;
mod snapshot_check;
pub(crate) mod stream;

pub(crate) use service::connect;
pub use service::{fetch_hash, fetch_members, PeerService};

/// The largest message members send each other, for a cluster whose
/// `--max-request-bytes` is `max_request_bytes`: a follower's forwarded proposals (up to
/// cairn-raft's 16 MiB proposal batch plus one request), an append (up to raft-rs's
/// `max_size_per_msg` plus one request), or a snapshot chunk.
pub fn message_limit(max_request_bytes: u64) -> usize {
    (64 << 20) + 2 * (max_request_bytes as usize + crate::config::GRPC_OVERHEAD_BYTES)
}

/// The largest gRPC message the peer URLs' `RaftPeer` service decodes: a snapshot chunk (at
/// most a megabyte of data, or the header with the snapshot's message without its data).
/// tonic reserves room for a message as soon as its length prefix arrives, so this, not
/// the Raft message limit, is what a stranger can make a member set aside per request.
pub const RAFT_PEER_MESSAGE_LIMIT: usize = snapshot::CHUNK_BYTES + (1 << 20);

/// The largest gRPC message the peer URLs' `LeasePeer` service decodes: a lease id, or a
/// time-to-live query.
pub const LEASE_PEER_MESSAGE_LIMIT: usize = 64 << 10;

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
    link: Arc<Link>,
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
        let sent = self
            .inner
            .peers
            .read()
            .get(&id)
            .map(|p| p.link.sent_counter())
            .unwrap_or_default();
        let link = Link::new(sent);
        let urls: Arc<[String]> = urls.into();
        let hello = Hello {
            cluster_id: i.cluster_id,
            from: i.from,
            to: id,
        };
        let events = Events {
            to: id,
            raft: i.raft.clone(),
            active: i.active.clone(),
            reported_down: AtomicBool::new(false),
        };
        i.runtime
            .spawn(stream::run_link(link.clone(), hello, urls.clone(), events));
        let mut peers = i.peers.write();
        let snapshot_in_flight = peers
            .get(&id)
            .map(|p| p.snapshot_in_flight.clone())
            .unwrap_or_default();
        let old = peers.insert(
            id,
            Peer {
                link,
                urls,
                snapshot_in_flight,
            },
        );
        if let Some(old) = old {
            old.link.close();
        }
    }

    /// Stops sending to member `id`.
    pub fn remove_peer(&self, id: u64) {
        if let Some(old) = self.inner.peers.write().remove(&id) {
            old.link.close();
        }
        self.inner.active.write().remove(&id);
    }

    /// Since when member `id` has answered every send; `None` while it does not answer.
    pub fn active_since(&self, id: u64) -> Option<Instant> {
        self.inner.active.read().get(&id).copied()
    }
}

impl crate::cluster::PeerDirectory for PeerSet {
    fn set_peer(&self, id: u64, urls: &[String]) {
        PeerSet::set_peer(self, id, urls)
    }

    fn remove_peer(&self, id: u64) {
        PeerSet::remove_peer(self, id)
    }

    fn active_since(&self, id: u64) -> Option<Instant> {
        PeerSet::active_since(self, id)
    }

    fn sent_bytes(&self) -> Vec<(u64, u64)> {
        self.inner
            .peers
            .read()
            .iter()
            .map(|(id, p)| (*id, p.link.sent_bytes()))
            .collect()
    }
}

impl PeerSetInner {
    /// Starts streaming snapshot message `m` to `peer`, unless one is on its way to it
    /// already; Raft hears whether it was delivered either way.
    fn send_snapshot(&self, peer: &Peer, m: PeerMessage) {
        let to = m.recipient();
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
            let sent = snapshot::send(&urls, limit, cluster_id, from, m).await;
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
    fn send(&mut self, mut msgs: Vec<PeerMessage>) {
        let peers = self.inner.peers.read();
        if msgs.iter().any(PeerMessage::is_snapshot) {
            let (snapshots, rest): (Vec<_>, _) =
                msgs.into_iter().partition(PeerMessage::is_snapshot);
            for m in snapshots {
                if let Some(peer) = peers.get(&m.recipient()) {
                    self.inner.send_snapshot(peer, m);
                }
            }
            msgs = rest;
        }
        for (id, peer) in peers.iter() {
            let mut mine = msgs.iter().filter(|m| m.recipient() == *id).peekable();
            if mine.peek().is_some() {
                peer.link.send(mine);
            }
        }
    }
}

/// Reports what happens to the stream to one peer.
struct Events {
    to: u64,
    raft: RaftCell,
    /// Since when each peer has had an open stream; see [`PeerSet::active_since`].
    active: Arc<RwLock<HashMap<u64, Instant>>>,
    /// A failure was logged, and has not been followed by an open stream.
    reported_down: AtomicBool,
}

impl LinkEvents for Events {
    fn up(&self) {
        self.active
            .write()
            .entry(self.to)
            .or_insert_with(Instant::now);
        if self.reported_down.swap(false, Ordering::Relaxed) {
            tracing::info!(remote_peer_id = %format!("{:x}", self.to), "peer became active");
        }
    }

    fn down(&self, why: &StreamError) {
        if !self.reported_down.swap(true, Ordering::Relaxed) {
            tracing::warn!(remote_peer_id = %format!("{:x}", self.to), error = %why, "failed to send to peer; dropping messages until it answers");
        }
        self.active.write().remove(&self.to);
        // So the leader stops streaming appends to it and probes instead.
        if let Some(raft) = self.raft.get() {
            raft.report_unreachable(self.to);
        }
    }
}
