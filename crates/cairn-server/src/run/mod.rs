//! Wires a member together and serves it until SIGTERM or SIGINT, or until its Raft
//! driver stops by itself.
//!
//! - This file: [`run`], the client router (gRPC services and HTTP endpoints on one port)
//!   and the start-up sequence etcd logs.
//! - `listen.rs`: the accept loops and the peer port's protocol split.
//! - `conn.rs`: one connection: TLS on https listeners, handshake timeout, HTTP/1 or
//!   HTTP/2 with the listener's limits, the connection's identity on every request.
//! - `loopback.rs`: the member's in-process client of itself (lock and election).
//! - `ping_policy.rs`: `--grpc-keepalive-min-time`, enforced on HTTP/2 connections' bytes.
//! - `compaction.rs`: automatic compaction.
//! - `corrupt.rs`: the leader's corruption check loops.
//! - `grpc_metrics.rs`: client requests by API version, gRPC bytes, handling time.
//!
//! The top of the crate: nothing depends on it.

mod backend_size;
mod compaction;
mod conn;
mod corrupt;
mod grpc_metrics;
mod listen;
mod loopback;
mod ping_policy;

use std::sync::Arc;
use std::time::Duration;

use cairn_proto::cairnpb::lease_peer_server::LeasePeerServer;
use cairn_proto::cairnpb::raft_peer_server::RaftPeerServer;
use cairn_proto::etcdserverpb::{
    auth_server::AuthServer, cluster_server::ClusterServer, kv_server::KvServer,
    lease_server::LeaseServer, maintenance_server::MaintenanceServer, watch_server::WatchServer,
};
use cairn_proto::EtcdError;
use tokio::net::TcpListener;

use crate::config::{host_port, Config, ConnectionLimits};
use crate::rpc::lock::{ElectionService, LockService};
use crate::rpc::{
    auth::AuthService, cluster::ClusterService, kv::KvService, lease::LeaseService,
    maintenance::MaintenanceService, watch::WatchService,
};
use crate::server::Server;
use cairn_proto::v3electionpb::election_server::ElectionServer;
use cairn_proto::v3lockpb::lock_server::LockServer;

/// The gRPC metadata key etcd's clients set to require a leader.
const REQUIRE_LEADER_KEY: &str = "hasleader";

/// The router serving gRPC and the HTTP endpoints on one client port.
///
/// Every service decodes messages of at most `--max-request-bytes` plus etcd's 512 KiB
/// of gRPC overhead, as etcd's gRPC server is set: a longer message is refused from its
/// 5-byte length prefix, before any of it is buffered, with grpc-go's error
/// ([`crate::rpc::receive_limit_status`]).
fn client_router(
    server: &Arc<Server>,
    loopback: &cairn_client::Client,
    snapshots: &Arc<tokio::sync::Semaphore>,
    secure: bool,
) -> axum::Router {
    let max = receive_limit(server);
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
            snapshots: snapshots.clone(),
        })
        .max_decoding_message_size(max)
        .max_encoding_message_size(usize::MAX),
    )
    .add_service(
        ClusterServer::new(ClusterService {
            server: server.clone(),
        })
        .max_decoding_message_size(max)
        .max_encoding_message_size(usize::MAX),
    )
    .add_service(
        LockServer::new(LockService {
            client: loopback.clone(),
            server: server.clone(),
        })
        .max_decoding_message_size(max)
        .max_encoding_message_size(usize::MAX),
    )
    .add_service(
        ElectionServer::new(ElectionService {
            client: loopback.clone(),
            server: server.clone(),
        })
        .max_decoding_message_size(max)
        .max_encoding_message_size(usize::MAX),
    )
    .add_service(
        LeaseServer::new(LeaseService {
            server: server.clone(),
        })
        .max_decoding_message_size(max)
        .max_encoding_message_size(usize::MAX),
    )
    .add_service(
        WatchServer::new(WatchService {
            server: server.clone(),
        })
        .max_decoding_message_size(max)
        .max_encoding_message_size(usize::MAX),
    )
    .add_service(
        AuthServer::new(AuthService {
            server: server.clone(),
        })
        .max_decoding_message_size(max)
        .max_encoding_message_size(usize::MAX),
    );
    let leader_check = server.clone();
    let observed = server.clone();
    let grpc = routes
        .into_axum_router()
        .layer(axum::middleware::from_fn(move |req, next| {
            require_leader(leader_check.clone(), req, next)
        }))
        .layer(axum::middleware::from_fn(move |req, next| {
            grpc_metrics::observe(observed.clone(), req, next)
        }));
    let mut access =
        crate::gateway::Access::new(&server.config().cors, &server.config().host_whitelist);
    if server.config().auth.client_cert_auth {
        let auth = server.clone();
        access = access.refuse_gateway_cn(move || auth.auth().is_enabled());
    }
    let access = Arc::new(access);
    grpc.clone()
        .merge(crate::http::router(server.clone()))
        .merge(crate::gateway::router(
            grpc,
            server.config().max_request_bytes as usize,
        ))
        // Replaces tonic's fallback, which answered any unknown path 200 with an empty body.
        .fallback(crate::http::not_found)
        .layer(axum::middleware::from_fn(move |req, next| {
            crate::gateway::check_access(access.clone(), secure, req, next)
        }))
}

/// The largest gRPC message a member decodes from a client: `--max-request-bytes` plus
/// etcd's gRPC overhead.
fn receive_limit(server: &Server) -> usize {
    (server.config().max_request_bytes as usize).saturating_add(crate::config::GRPC_OVERHEAD_BYTES)
}

/// etcd clients mark requests that must not be served without a leader (watches, and any
/// call made `WithRequireLeader`) with the `hasleader` metadata; such a request fails at
/// once with "etcdserver: no leader" while this member knows of none.
///
/// It also words a request refused for its size as etcd does (a unary call's refusal is
/// in the response headers; a stream's is worded by its handler).
async fn require_leader(
    server: Arc<Server>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if req.headers().contains_key(REQUIRE_LEADER_KEY) && server.raft_status().leader_id == 0 {
        return EtcdError::NoLeader.status().into_http();
    }
    let mut resp = next.run(req).await;
    crate::rpc::receive_limit_headers(resp.headers_mut());
    resp
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
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error(transparent)]
    Start(#[from] crate::server::StartError),
    #[error(transparent)]
    Corrupt(#[from] crate::server::CorruptError),
    #[error("{0}")]
    Raft(#[from] cairn_raft::RaftError),
    #[error("start-up task: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
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
    raise_open_file_limit();
    // Bind first, so a port that is taken fails start-up before the data directory changes.
    let mut client_listeners = Vec::new();
    for url in &cfg.listen_client_urls {
        client_listeners.push((url.clone(), listen::bind(url, cfg.socket_reuse_port).await?));
    }
    let mut peer_listeners = Vec::new();
    for url in &cfg.listen_peer_urls {
        peer_listeners.push((url.clone(), listen::bind(url, cfg.socket_reuse_port).await?));
    }
    let mut metrics_listeners = Vec::new();
    for url in &cfg.listen_metrics_urls {
        metrics_listeners.push((url.clone(), listen::bind(url, cfg.socket_reuse_port).await?));
    }

    // Before the member dials its peers; auto-TLS writes into the data directory's
    // `fixtures/`, as etcd does.
    let tls = {
        let cfg = cfg.clone();
        tokio::task::spawn_blocking(move || {
            let client_urls: Vec<String> = cfg
                .listen_client_urls
                .iter()
                .chain(&cfg.listen_metrics_urls)
                .cloned()
                .collect();
            let peer_urls: Vec<String> = cfg
                .listen_peer_urls
                .iter()
                .chain(&cfg.initial_advertise_peer_urls)
                .cloned()
                .collect();
            crate::tls::Tls::start(&cfg.tls, &cfg.data_dir, &client_urls, &peer_urls)
        })
        .await??
    };
    if let Some(dial) = &tls.dial {
        crate::tls::set_peer_dial(dial.clone());
    }
    let server = tokio::task::spawn_blocking(move || Server::start(cfg)).await??;
    tokio::select! {
        served = serve_member(&server, &tls, client_listeners, peer_listeners, metrics_listeners) => served?,
        stopped = server.raft_stopped() => {
            let e = stopped.err().unwrap_or(cairn_raft::RaftError::Stopped);
            tracing::error!(error = %e, "raft stopped; the member stops too");
            return Err(e.into());
        }
    }
    tracing::info!(name = %server.member().name, "received signal; shutting down");
    crate::systemd::notify("STOPPING=1");
    server.transfer_leadership_for_stop().await;
    let stopping = server.clone();
    tokio::task::spawn_blocking(move || stopping.stop()).await?;
    tracing::info!("stopped serving client traffic");
    Ok(())
}

/// The peer and metrics ports' connection settings: etcd gives its gRPC keepalive
/// settings to the client port's server only.
fn without_keepalive(limits: ConnectionLimits) -> ConnectionLimits {
    ConnectionLimits {
        keepalive: None,
        keepalive_min_time: None,
        ..limits
    }
}

/// Raises the soft limit on open files to the hard limit, as Go's runtime does when etcd
/// starts: each client, peer and watch connection is a file descriptor, and the soft
/// limit is often 1024.
fn raise_open_file_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current == limit.maximum {
        return;
    }
    let from = limit.current;
    limit.current = limit.maximum;
    match setrlimit(Resource::Nofile, limit) {
        Ok(()) => tracing::debug!(from = ?from, to = ?limit.maximum, "raised the open-file limit"),
        Err(e) => tracing::warn!(error = %e, "failed to raise the open-file limit"),
    }
}

/// Serves a started member on its listeners until SIGTERM or SIGINT.
async fn serve_member(
    server: &Arc<Server>,
    tls: &crate::tls::Tls,
    client_listeners: Vec<(String, TcpListener)>,
    peer_listeners: Vec<(String, TcpListener)>,
    metrics_listeners: Vec<(String, TcpListener)>,
) -> Result<(), RunError> {
    // As etcd, before the member takes any Raft traffic: peers' messages come only through
    // the peer listeners, served from here on.
    if server.config().initial_corrupt_check {
        server.check_initial_hash().await?;
    }
    for (url, listener) in peer_listeners {
        let endpoints = server.peer_endpoints();
        let router = tonic::service::Routes::new(
            RaftPeerServer::new(endpoints.service)
                .max_decoding_message_size(crate::peer::RAFT_PEER_MESSAGE_LIMIT),
        )
        .add_service(
            LeasePeerServer::new(endpoints.leases)
                .max_decoding_message_size(crate::peer::LEASE_PEER_MESSAGE_LIMIT),
        )
        .into_axum_router()
        .layer(axum::middleware::map_response(
            |mut resp: axum::response::Response| async move {
                crate::rpc::receive_limit_headers(resp.headers_mut());
                resp
            },
        ));
        tokio::spawn(listen::serve_peer(
            listener,
            router,
            without_keepalive(server.config().connections),
            endpoints.streams,
            tls.peer.clone().filter(|_| url.starts_with("https://")),
            !server.config().tls.skip_peer_san_check,
        ));
    }
    // A member of a larger cluster waits here until a quorum of its peers is up.
    while !server.wait_ready(Duration::from_secs(5)).await {
        tracing::warn!(local_member_id = %format!("{:x}", server.member().id), "waiting for a leader");
    }
    tracing::info!(cluster_version = "3.5", "enabled capabilities for version");
    while let Err(e) = server.publish().await {
        tracing::warn!(error = %e, "failed to publish local member to cluster through raft; retrying");
    }
    tracing::info!(
        local_member_id = %format!("{:x}", server.member().id),
        local_member_attributes = %format!(
            "{{Name:{} ClientURLs:[{}]}}",
            server.member().name,
            server.member().client_urls.join(" ")
        ),
        cluster_id = %format!("{:x}", server.cluster_id()),
        "published local member to cluster through raft"
    );

    // The publish entry is of the current term: a leader's lessor can take over now.
    server.leases().promote_if_due();
    let (loopback, loopback_router) = loopback::client(server.config().connections);
    let snapshots = Arc::new(tokio::sync::Semaphore::new(
        crate::rpc::maintenance::MAX_SNAPSHOT_STREAMS,
    ));
    // The in-process client is trusted as a TLS connection is: no Host check.
    let _ = loopback_router.set(client_router(server, &loopback, &snapshots, true));
    // A URL's scheme says whether its listener speaks TLS, as in etcd; TLS files given
    // with http:// URLs are not used by those.
    let https = |url: &str| url.starts_with("https://");
    for (url, listener) in client_listeners {
        let secure = https(&url);
        tokio::spawn(listen::serve(
            listener,
            client_router(server, &loopback, &snapshots, secure),
            server.config().connections,
            "client",
            tls.client.clone().filter(|_| secure),
        ));
        tracing::info!("ready to serve client requests");
        if secure {
            tracing::info!(
                address = %host_port(&url).unwrap_or_default(),
                "serving client traffic securely"
            );
        } else {
            tracing::warn!(
                address = %host_port(&url).unwrap_or_default(),
                "serving insecure client requests on {}, this is strongly discouraged!",
                host_port(&url).unwrap_or_default()
            );
        }
    }
    for (url, listener) in metrics_listeners {
        let secure = https(&url);
        tokio::spawn(listen::serve(
            listener,
            crate::http::metrics_router(server.clone()),
            without_keepalive(server.config().connections),
            "metrics",
            tls.client.clone().filter(|_| secure),
        ));
        tracing::info!(address = %url, "serving metrics");
    }
    tokio::spawn(compaction::auto_compact(server.clone()));
    tokio::spawn(backend_size::measure_in_use(server.clone()));
    tokio::spawn(server.clone().probe_peers());
    if let Some(every) = server.config().corrupt_check_time {
        tokio::spawn(corrupt::periodic_check(server.clone(), every));
    }
    if let Some(every) = server.config().compact_hash_check_time {
        tokio::spawn(corrupt::compact_hash_check(server.clone(), every));
    }
    tokio::spawn(server.leases().clone().run());

    // As etcd (a `Type=notify` unit): the member has joined and serves clients.
    crate::systemd::notify("READY=1");
    if let Some(every) = crate::systemd::watchdog_interval() {
        tokio::spawn(watchdog(server.clone(), every));
    }
    shutdown_signal().await;
    Ok(())
}

/// Pings systemd's watchdog every `every` (half of `WATCHDOG_USEC`) while the member can
/// read its own store in that time: a member whose backend hangs stops pinging and is
/// restarted. A member without a leader still pings; restarting it would not find one.
async fn watchdog(server: Arc<Server>, every: Duration) {
    loop {
        let started = tokio::time::Instant::now();
        let read = tokio::time::timeout(every, crate::http::serializable_read(&server)).await;
        match read {
            Ok(Ok(())) => crate::systemd::notify("WATCHDOG=1"),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "skipped the watchdog ping; the store read failed")
            }
            Err(_) => tracing::warn!("skipped the watchdog ping; the store read timed out"),
        }
        tokio::time::sleep_until(started + every).await;
    }
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
