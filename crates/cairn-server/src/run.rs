//! Wires a member together and serves it until SIGTERM or SIGINT.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_client::coalesce::CoalescingIo;
use cairn_proto::cairnpb::internal_request::Request;
use cairn_proto::cairnpb::lease_peer_server::LeasePeerServer;
use cairn_proto::cairnpb::raft_peer_server::RaftPeerServer;
use cairn_proto::etcdserverpb::{
    cluster_server::ClusterServer, kv_server::KvServer, lease_server::LeaseServer,
    maintenance_server::MaintenanceServer, watch_server::WatchServer, CompactionRequest,
};
use cairn_proto::EtcdError;
use tokio::net::TcpListener;

use crate::config::{host_port, AutoCompaction, Config};
use crate::peer::PeerService;
use crate::rpc::lock::{ElectionService, LockService};
use crate::rpc::{
    cluster::ClusterService, kv::KvService, lease::LeaseService, maintenance::MaintenanceService,
    watch::WatchService,
};
use crate::server::Server;
use cairn_proto::v3electionpb::election_server::ElectionServer;
use cairn_proto::v3lockpb::lock_server::LockServer;

/// The largest message gRPC decodes at all; [`Server::check_size`] applies etcd's limit
/// below it with etcd's error text.
const DECODE_CAP_BYTES: usize = 64 * 1024 * 1024;
/// The gRPC metadata key etcd's clients set to require a leader.
const REQUIRE_LEADER_KEY: &str = "hasleader";

/// The router serving gRPC and the HTTP endpoints on one client port.
fn client_router(server: &Arc<Server>, loopback: &cairn_client::Client) -> axum::Router {
    let max = (2 * (server.cfg.max_request_bytes as usize + crate::server::GRPC_OVERHEAD_BYTES))
        .max(DECODE_CAP_BYTES);
    let routes = tonic::service::Routes::new(
        KvServer::new(KvService {
            server: server.clone(),
        })
        .max_decoding_message_size(max)
        .max_encoding_message_size(usize::MAX),
    )
    .add_service(
        MaintenanceServer::new(MaintenanceService {
            server: server.clone(),
        })
        .max_decoding_message_size(max)
        .max_encoding_message_size(usize::MAX),
    )
    .add_service(ClusterServer::new(ClusterService {
        server: server.clone(),
    }))
    .add_service(LockServer::new(LockService {
        client: loopback.clone(),
    }))
    .add_service(ElectionServer::new(ElectionService {
        client: loopback.clone(),
    }))
    .add_service(LeaseServer::new(LeaseService {
        server: server.clone(),
    }))
    .add_service(
        WatchServer::new(WatchService {
            server: server.clone(),
        })
        .max_decoding_message_size(max)
        .max_encoding_message_size(usize::MAX),
    );
    let leader_check = server.clone();
    routes
        .into_axum_router()
        .layer(axum::middleware::from_fn(move |req, next| {
            require_leader(leader_check.clone(), req, next)
        }))
        .merge(crate::http::router(server.clone()))
}

/// etcd clients mark requests that must not be served without a leader (watches, and any
/// call made `WithRequireLeader`) with the `hasleader` metadata; such a request fails at
/// once with "etcdserver: no leader" while this member knows of none.
async fn require_leader(
    server: Arc<Server>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if req.headers().contains_key(REQUIRE_LEADER_KEY) && server.raft.status().leader_id == 0 {
        return EtcdError::NoLeader.status().into_http();
    }
    next.run(req).await
}

/// Serves `router` on `listener` until it fails. Every accepted connection gets
/// TCP_NODELAY and gathered writes ([`cairn_client::coalesce`]): a gRPC response is
/// headers, data and trailers, which otherwise often go out in two writes.
async fn serve(listener: TcpListener, router: axum::Router, what: &'static str) {
    let listener = CoalescingListener(listener);
    if let Err(e) = axum::serve(listener, router).await {
        tracing::error!(error = %e, listener = what, "listener stopped");
    }
}

/// Serves the peer URL on `listener`: raft streams (`peer_stream`) to `streams`, and
/// HTTP/2 connections to `router` as [`serve`] does. The first byte a connection sends
/// tells which it is.
async fn serve_peer(
    mut listener: TcpListener,
    router: axum::Router,
    streams: crate::peer_stream::Receiver,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let Ok(local) = listener.local_addr() else {
        return;
    };
    tokio::spawn(async move {
        let grpc = CoalescingListener(HandedOver { rx, local });
        if let Err(e) = axum::serve(grpc, router).await {
            tracing::error!(error = %e, listener = "peer", "listener stopped");
        }
    });
    loop {
        let (tcp, addr) = axum::serve::Listener::accept(&mut listener).await;
        set_nodelay(&tcp);
        let (tx, streams) = (tx.clone(), streams.clone());
        tokio::spawn(async move {
            let mut first = [0u8; 1];
            match tokio::time::timeout(crate::peer_stream::OPEN_TIMEOUT, tcp.peek(&mut first)).await
            {
                Ok(Ok(1)) if first[0] == crate::peer_stream::MAGIC[0] => {
                    crate::peer_stream::receive(tcp, streams).await;
                }
                Ok(Ok(1)) => {
                    let _ = tx.send((tcp, addr)).await;
                }
                // Closed, failed or silent before its first byte.
                _ => {}
            }
        });
    }
}

/// Without it a write that follows an unacknowledged one waits for the peer's delayed ACK
/// (about 40 ms).
fn set_nodelay(tcp: &tokio::net::TcpStream) {
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::warn!(error = %e, "failed to set TCP_NODELAY");
    }
}

/// Connections accepted elsewhere and handed over one by one.
struct HandedOver {
    rx: tokio::sync::mpsc::Receiver<(tokio::net::TcpStream, std::net::SocketAddr)>,
    local: std::net::SocketAddr,
}

impl axum::serve::Listener for HandedOver {
    type Io = tokio::net::TcpStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(conn) => conn,
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        Ok(self.local)
    }
}

/// A TCP listener whose connections have TCP_NODELAY and gathered writes.
struct CoalescingListener<L>(L);

impl<L> axum::serve::Listener for CoalescingListener<L>
where
    L: axum::serve::Listener<Io = tokio::net::TcpStream, Addr = std::net::SocketAddr>,
{
    type Io = CoalescingIo;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (CoalescingIo, std::net::SocketAddr) {
        let (tcp, addr) = self.0.accept().await;
        set_nodelay(&tcp);
        (CoalescingIo::new(tcp), addr)
    }

    fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.0.local_addr()
    }
}

/// Why a member stopped serving other than by a signal, or could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("bad URL {0}")]
    BadUrl(String),
    #[error("listen tcp {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("no client URL to listen on")]
    NoClientUrl,
    #[error("client of this member: {0}")]
    Loopback(String),
    #[error(transparent)]
    Start(#[from] crate::server::StartError),
    #[error("{0}")]
    Raft(#[from] cairn_raft::RaftError),
    #[error("start-up task: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

/// A client of this member itself, through its first client listener, for the services
/// that run etcd's recipes on a client's behalf (lock, election).
async fn loopback_client(
    listeners: &[(String, TcpListener)],
) -> Result<cairn_client::Client, RunError> {
    let (_, listener) = listeners.first().ok_or(RunError::NoClientUrl)?;
    let mut addr = listener.local_addr()?;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let config = cairn_client::ClientConfig::new([addr.to_string()]);
    cairn_client::Client::connect_lazy(config)
        .await
        .map_err(|e| RunError::Loopback(e.to_string()))
}

async fn bind(url: &str) -> Result<TcpListener, RunError> {
    let addr = host_port(url).ok_or_else(|| RunError::BadUrl(url.to_string()))?;
    let addr = addr.replace("localhost", "127.0.0.1");
    TcpListener::bind(&addr)
        .await
        .map_err(|source| RunError::Listen { addr, source })
}

/// Starts the member described by `cfg` and serves it until a signal stops it (`Ok`), or
/// until its Raft driver stops by itself: its log or its state machine failed, and the
/// member must not go on answering (the error says why).
pub async fn run(cfg: Config) -> Result<(), RunError> {
    tracing::info!(
        name = %cfg.name,
        data_dir = %cfg.data_dir.display(),
        advertise_client_urls = %cfg.advertise_client_urls.join(","),
        listen_client_urls = %cfg.listen_client_urls.join(","),
        initial_advertise_peer_urls = %cfg.initial_advertise_peer_urls.join(","),
        quota_backend_bytes = cfg.quota_backend_bytes,
        max_request_bytes = cfg.max_request_bytes,
        max_txn_ops = cfg.max_txn_ops,
        cairn_version = env!("CARGO_PKG_VERSION"),
        "starting an etcd server"
    );
    // Bind first, so a port that is taken fails start-up before the data directory changes.
    let mut client_listeners = Vec::new();
    for url in &cfg.listen_client_urls {
        client_listeners.push((url.clone(), bind(url).await?));
    }
    let mut peer_listeners = Vec::new();
    for url in &cfg.listen_peer_urls {
        peer_listeners.push(bind(url).await?);
    }
    let mut metrics_listeners = Vec::new();
    for url in &cfg.listen_metrics_urls {
        metrics_listeners.push((url.clone(), bind(url).await?));
    }

    let server = tokio::task::spawn_blocking(move || Server::start(cfg)).await??;
    let raft = server.raft.clone();
    tokio::select! {
        served = serve_member(&server, client_listeners, peer_listeners, metrics_listeners) => served?,
        stopped = raft.stopped() => {
            let e = stopped.err().unwrap_or(cairn_raft::RaftError::Stopped);
            tracing::error!(error = %e, "raft stopped; the member stops too");
            return Err(e.into());
        }
    }
    tracing::info!(name = %server.member.name, "received signal; shutting down");
    server.transfer_leadership_for_stop().await;
    let stopping = server.clone();
    tokio::task::spawn_blocking(move || stopping.stop()).await?;
    tracing::info!("stopped serving client traffic");
    Ok(())
}

/// Serves a started member on its listeners until SIGTERM or SIGINT.
async fn serve_member(
    server: &Arc<Server>,
    client_listeners: Vec<(String, TcpListener)>,
    peer_listeners: Vec<TcpListener>,
    metrics_listeners: Vec<(String, TcpListener)>,
) -> Result<(), RunError> {
    for listener in peer_listeners {
        let peer = PeerService {
            raft: server.raft.clone(),
            cluster_id: server.cluster_id,
            member_id: server.member.id,
            members: server.members.clone(),
            // A snapshot is the backend file, which writes stop growing at the quota;
            // twice that (and at least 1 GiB) leaves room for what deletes and compactions
            // add above it, and for a leader with a larger quota.
            max_snapshot_bytes: server
                .cfg
                .quota_backend_bytes
                .saturating_mul(2)
                .max(1 << 30),
        };
        let router =
            tonic::service::Routes::new(RaftPeerServer::new(peer).max_decoding_message_size(
                crate::peer::message_limit(server.cfg.max_request_bytes),
            ))
            .add_service(LeasePeerServer::new(crate::lease::LeasePeerService {
                server: server.clone(),
            }))
            .into_axum_router();
        let streams = crate::peer_stream::Receiver {
            raft: server.raft.clone(),
            cluster_id: server.cluster_id,
            member_id: server.member.id,
            message_limit: crate::peer::message_limit(server.cfg.max_request_bytes),
        };
        tokio::spawn(serve_peer(listener, router, streams));
    }
    // A member of a larger cluster waits here until a quorum of its peers is up.
    while !server.wait_ready(Duration::from_secs(5)).await {
        tracing::warn!(local_member_id = %format!("{:x}", server.member.id), "waiting for a leader");
    }
    tracing::info!(cluster_version = "3.5", "enabled capabilities for version");
    while let Err(e) = server.publish().await {
        tracing::warn!(error = %e, "failed to publish local member to cluster through raft; retrying");
    }
    tracing::info!(
        local_member_id = %format!("{:x}", server.member.id),
        local_member_attributes = %format!(
            "{{Name:{} ClientURLs:[{}]}}",
            server.member.name,
            server.member.client_urls.join(" ")
        ),
        cluster_id = %format!("{:x}", server.cluster_id),
        "published local member to cluster through raft"
    );

    // The publish entry is of the current term: a leader's lessor can take over now.
    crate::lease::promote_if_due(server);
    let loopback = loopback_client(&client_listeners).await?;
    for (url, listener) in client_listeners {
        tokio::spawn(serve(listener, client_router(server, &loopback), "client"));
        tracing::info!("ready to serve client requests");
        tracing::warn!(
            address = %host_port(&url).unwrap_or_default(),
            "serving insecure client requests on {}, this is strongly discouraged!",
            host_port(&url).unwrap_or_default()
        );
    }
    for (url, listener) in metrics_listeners {
        tokio::spawn(serve(
            listener,
            crate::http::router(server.clone()),
            "metrics",
        ));
        tracing::info!(address = %url, "serving metrics");
    }
    tokio::spawn(auto_compact(server.clone()));
    tokio::spawn(crate::lease::run(server.clone()));

    shutdown_signal().await;
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Compacts history automatically per `--auto-compaction-mode` and
/// `--auto-compaction-retention`, as etcd's compactors do: periodic keeps the history of the
/// retention window (checked every tenth of it when it is an hour or more, else every
/// window); revision keeps the newest `retention` revisions (checked every five minutes).
async fn auto_compact(server: Arc<Server>) {
    let (check_every, mode) = match server.cfg.auto_compaction.clone() {
        AutoCompaction::Off => return,
        AutoCompaction::Periodic(window) => {
            let every = if window >= Duration::from_secs(3600) {
                window / 10
            } else {
                window
            };
            (every, AutoCompaction::Periodic(window))
        }
        AutoCompaction::Revision(n) => (Duration::from_secs(300), AutoCompaction::Revision(n)),
    };
    // Revisions seen at each check, oldest first, for the periodic window.
    let mut seen: VecDeque<(Instant, i64)> = VecDeque::new();
    let mut last_compacted = 0;
    loop {
        let now = Instant::now();
        let current = server.store.current_revision();
        seen.push_back((now, current));
        let target = match mode {
            AutoCompaction::Periodic(window) => {
                let mut target = None;
                while let Some(&(t, rev)) = seen.front() {
                    if now.duration_since(t) >= window {
                        target = Some(rev);
                        seen.pop_front();
                    } else {
                        break;
                    }
                }
                target
            }
            AutoCompaction::Revision(n) => Some(current - n),
            AutoCompaction::Off => None,
        };
        if let Some(rev) = target {
            if rev > last_compacted && rev > server.store.compact_revision() {
                let req = CompactionRequest {
                    revision: rev,
                    physical: false,
                };
                match server.propose(Request::Compaction(req)).await {
                    Ok(_) => {
                        last_compacted = rev;
                        tracing::info!(revision = rev, "completed auto compaction");
                    }
                    Err(e) => tracing::warn!(revision = rev, error = %e, "failed auto compaction"),
                }
            }
        }
        tokio::time::sleep(check_every.min(Duration::from_secs(3600))).await;
    }
}
