//! Prometheus metrics under etcd's names and labels, so existing dashboards and alerts work.

use prometheus::{
    Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry,
};

mod text;

/// etcd's lease counters. Grants and revokes are counted as each member applies them;
/// renewals and expiries by the leader that saw them.
#[derive(Clone)]
pub struct LeaseMetrics {
    pub granted: IntCounter,
    pub revoked: IntCounter,
    pub renewed: IntCounter,
    pub expired: IntCounter,
    /// The TTL each lease was granted with (after the minimum TTL was applied).
    pub ttl: Histogram,
}

/// Every metric the server exports.
pub struct Metrics {
    registry: Registry,
    pub has_leader: IntGauge,
    pub is_leader: IntGauge,
    pub proposals_committed: IntGauge,
    pub proposals_applied: IntGauge,
    pub proposals_pending: IntGauge,
    pub proposals_failed: IntCounter,
    /// cairn's own: committed entries skipped because they do not decode.
    pub undecodable_entries: IntCounter,
    /// cairn's own: peer traffic turned away, by path (`stream`, `snapshot`, `lease`).
    pub peer_refused: IntCounterVec,
    pub db_total_size: IntGauge,
    pub db_total_size_in_use: IntGauge,
    pub quota_backend_bytes: IntGauge,
    pub wal_fsync_duration: Histogram,
    pub backend_commit_duration: Histogram,
    pub put_total: IntCounter,
    pub range_total: IntCounter,
    pub delete_total: IntCounter,
    pub txn_total: IntCounter,
    pub grpc_started: IntCounterVec,
    pub grpc_handled: IntCounterVec,
    /// Each method's gRPC counters, resolved once: see [`GrpcCall`].
    grpc_calls: std::collections::HashMap<String, std::sync::Arc<GrpcCall>>,
    pub server_version: IntGaugeVec,
    pub cluster_version: IntGaugeVec,
    pub db_open_seconds: Gauge,
    pub watch_streams: IntGauge,
    pub watchers: IntGauge,
    pub slow_watchers: IntGauge,
    /// Events handed to watchers that their streams have not taken yet.
    pub pending_events: IntGauge,
    pub lease: LeaseMetrics,
    /// etcd's server, disk, mvcc, network and process families added for issue 13.
    pub more: MoreMetrics,
}

/// The families beyond the first set: each is measured where the thing happens, or
/// sampled when `/metrics` is scraped.
pub struct MoreMetrics {
    pub leader_changes: IntCounter,
    pub heartbeat_failures: IntCounter,
    pub server_id: IntGaugeVec,
    pub is_learner: IntGauge,
    pub health_success: IntCounter,
    pub health_failures: IntCounter,
    pub read_indexes_failed: IntCounter,
    pub slow_read_indexes: IntCounter,
    pub slow_apply: IntCounter,
    /// By `version` (always `v3`), `op` (the request's name) and `success`.
    pub apply_duration: HistogramVec,
    pub client_requests: IntCounterVec,
    pub grpc_msg_received: IntCounterVec,
    pub grpc_msg_sent: IntCounterVec,
    /// gRPC bytes from and to clients: the length of each message, without gRPC's 5-byte
    /// prefix, as etcd's codec counts them.
    pub client_received_bytes: IntCounter,
    pub client_sent_bytes: IntCounter,
    /// `grpc_server_handling_seconds`, with `--metrics=extensive` only.
    pub grpc_handling: Option<HistogramVec>,
    pub wal_write_bytes: IntGauge,
    pub defrag_duration: Histogram,
    pub defrag_inflight: IntGauge,
    pub snapshot_duration: Histogram,
    pub hash_duration: Histogram,
    pub hash_rev_duration: Histogram,
    pub current_revision: IntGauge,
    pub compact_revision: IntGauge,
    /// Keys live at the current revision, from the store's count.
    pub keys_total: IntGauge,
    /// Backend read transactions open when scraped, from the store's count.
    pub open_read_transactions: IntGauge,
    pub auth_revision: IntGauge,
    /// Promotions of learners that succeeded while this member led.
    pub learner_promotions: IntCounter,
    /// 1 while a snapshot from the leader is being restored into the backend.
    pub snapshot_applying: IntGauge,
    /// Ranges, counted where `etcd_mvcc_range_total` is (etcd keeps both).
    pub debugging_range_total: IntCounter,
    /// Key and value bytes of every applied put.
    pub total_put_size: IntGauge,
    /// Events sent to watchers.
    pub events_total: IntCounter,
    pub compaction: CompactionMetrics,
    /// Snapshots received from the leader, from first chunk to checked.
    pub snapshot_received: Histogram,
    /// Peers with a Raft stream open, by `Local` and `Remote` member id.
    pub active_peers: IntGaugeVec,
    /// Raft stream bytes queued for each peer, by `To`.
    pub peer_sent: IntCounterVec,
    /// Raft stream bytes read from each peer, by `From`.
    pub peer_received: IntCounterVec,
    /// A probe's request and answer to each peer, by `To` (see `server/peer_rtt.rs`).
    pub peer_round_trip: HistogramVec,
    pub process: ProcessMetrics,
    scrapes_in_flight: IntGauge,
    scrapes: IntCounterVec,
}

/// etcd's compaction families, told by the store after each compaction commits.
#[derive(Clone)]
pub struct CompactionMetrics {
    keys: IntCounter,
    last: IntGauge,
    pause: Histogram,
    total: Histogram,
    index_pause: Histogram,
}

impl CompactionMetrics {
    /// Records one compaction. cairn compacts the backend in one write transaction, so
    /// its one pause is the whole walk.
    pub fn observe(&self, c: &cairn_mvcc::CompactionReport) {
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
        self.keys.inc_by(c.removed);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.last.set(now as i64);
        self.pause.observe(ms(c.db));
        self.total.observe(ms(c.db + c.index));
        self.index_pause.observe(ms(c.index));
    }
}

/// `process_*` and etcd's `os_fd_*`, read from `/proc/self` at each scrape.
pub struct ProcessMetrics {
    cpu_seconds: prometheus::Counter,
    open_fds: IntGauge,
    max_fds: IntGauge,
    resident: IntGauge,
    virtual_bytes: IntGauge,
    virtual_max: Gauge,
    start_time: Gauge,
    os_fd_used: IntGauge,
    os_fd_limit: IntGauge,
}

fn disk_buckets() -> Vec<f64> {
    // etcd's: 1ms doubling to about 8s.
    prometheus::exponential_buckets(0.001, 2.0, 14).unwrap_or_default()
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new(extensive: bool) -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let more = MoreMetrics::new(&registry, extensive)?;
        let gauge = |name: &str, help: &str| -> Result<IntGauge, prometheus::Error> {
            let g = IntGauge::new(name, help)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let counter = |name: &str, help: &str| -> Result<IntCounter, prometheus::Error> {
            let c = IntCounter::new(name, help)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let histogram = |name: &str, help: &str| -> Result<Histogram, prometheus::Error> {
            let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(disk_buckets()))?;
            registry.register(Box::new(h.clone()))?;
            Ok(h)
        };
        let grpc_labels = ["grpc_type", "grpc_service", "grpc_method"];
        let grpc_started = IntCounterVec::new(
            Opts::new(
                "grpc_server_started_total",
                "Total number of RPCs started on the server.",
            ),
            &grpc_labels,
        )?;
        registry.register(Box::new(grpc_started.clone()))?;
        let grpc_handled = IntCounterVec::new(
            Opts::new(
                "grpc_server_handled_total",
                "Total number of RPCs completed on the server, regardless of success or failure.",
            ),
            &["grpc_type", "grpc_service", "grpc_method", "grpc_code"],
        )?;
        registry.register(Box::new(grpc_handled.clone()))?;
        // Every method from the start, with every status code, as grpc-go-prometheus
        // lists them.
        for (service, method, ty) in GRPC_METHODS {
            grpc_started.with_label_values(&[ty, service, method]);
            for code in 0..=16 {
                let name = cairn_proto::grpc_code_name(tonic::Code::from_i32(code));
                grpc_handled.with_label_values(&[ty, service, method, name]);
            }
        }
        let peer_refused = IntCounterVec::new(
            Opts::new(
                "cairn_server_peer_refused_total",
                "The total number of raft streams, snapshots, lease requests and hash requests refused on the peer URLs.",
            ),
            &["path"],
        )?;
        registry.register(Box::new(peer_refused.clone()))?;
        let server_version = IntGaugeVec::new(
            Opts::new(
                "etcd_server_version",
                "Which version is running. 1 for 'server_version' label with current version.",
            ),
            &["server_version"],
        )?;
        registry.register(Box::new(server_version.clone()))?;
        let cluster_version = IntGaugeVec::new(
            Opts::new("etcd_cluster_version", "Which version is running. 1 for 'cluster_version' label with current cluster version"),
            &["cluster_version"],
        )?;
        registry.register(Box::new(cluster_version.clone()))?;
        let db_open_seconds = Gauge::new(
            "cairn_server_db_open_seconds",
            "Seconds the backend took to open at start-up.",
        )?;
        registry.register(Box::new(db_open_seconds.clone()))?;
        let lease_ttl = Histogram::with_opts(
            HistogramOpts::new(
                "etcd_debugging_lease_ttl_total",
                "Bucketed histogram of lease TTLs.",
            )
            // etcd's: 1 s doubling to 8388608 s.
            .buckets(prometheus::exponential_buckets(1.0, 2.0, 24).unwrap_or_default()),
        )?;
        registry.register(Box::new(lease_ttl.clone()))?;
        let lease = LeaseMetrics {
            granted: counter(
                "etcd_debugging_lease_granted_total",
                "The total number of granted leases.",
            )?,
            revoked: counter(
                "etcd_debugging_lease_revoked_total",
                "The total number of revoked leases.",
            )?,
            renewed: counter(
                "etcd_debugging_lease_renewed_total",
                "The number of renewed leases seen by the leader.",
            )?,
            expired: counter(
                "etcd_debugging_server_lease_expired_total",
                "The total number of expired leases.",
            )?,
            ttl: lease_ttl,
        };
        let grpc_calls = GRPC_METHODS
            .iter()
            .map(|&(service, method, ty)| {
                let call = GrpcCall::new(service, method, ty, &grpc_started, &grpc_handled, &more);
                (format!("/{service}/{method}"), std::sync::Arc::new(call))
            })
            .collect();
        Ok(Metrics {
            more,
            lease,
            grpc_calls,
            watch_streams: gauge(
                "etcd_debugging_mvcc_watch_stream_total",
                "Total number of watch streams.",
            )?,
            watchers: gauge(
                "etcd_debugging_mvcc_watcher_total",
                "Total number of watchers.",
            )?,
            slow_watchers: gauge(
                "etcd_debugging_mvcc_slow_watcher_total",
                "Total number of unsynced slow watchers.",
            )?,
            pending_events: gauge(
                "etcd_debugging_mvcc_pending_events_total",
                "Total number of pending events to be sent.",
            )?,
            has_leader: gauge(
                "etcd_server_has_leader",
                "Whether or not a leader exists. 1 is existence, 0 is not.",
            )?,
            is_leader: gauge(
                "etcd_server_is_leader",
                "Whether or not this member is a leader. 1 if is, 0 otherwise.",
            )?,
            proposals_committed: gauge(
                "etcd_server_proposals_committed_total",
                "The total number of consensus proposals committed.",
            )?,
            proposals_applied: gauge(
                "etcd_server_proposals_applied_total",
                "The total number of consensus proposals applied.",
            )?,
            proposals_pending: gauge(
                "etcd_server_proposals_pending",
                "The current number of pending proposals to commit.",
            )?,
            proposals_failed: counter(
                "etcd_server_proposals_failed_total",
                "The total number of failed proposals seen.",
            )?,
            peer_refused,
            undecodable_entries: counter(
                "cairn_server_undecodable_entries_total",
                "The total number of committed entries skipped because they do not decode.",
            )?,
            db_total_size: gauge(
                "etcd_mvcc_db_total_size_in_bytes",
                "Total size of the underlying database physically allocated in bytes.",
            )?,
            db_total_size_in_use: gauge(
                "etcd_mvcc_db_total_size_in_use_in_bytes",
                "Total size of the underlying database logically in use in bytes.",
            )?,
            quota_backend_bytes: gauge(
                "etcd_server_quota_backend_bytes",
                "Current backend storage quota size in bytes.",
            )?,
            wal_fsync_duration: histogram(
                "etcd_disk_wal_fsync_duration_seconds",
                "The latency distributions of fsync called by WAL.",
            )?,
            backend_commit_duration: histogram(
                "etcd_disk_backend_commit_duration_seconds",
                "The latency distributions of commit called by backend.",
            )?,
            put_total: counter(
                "etcd_mvcc_put_total",
                "Total number of puts seen by this member.",
            )?,
            range_total: counter(
                "etcd_mvcc_range_total",
                "Total number of ranges seen by this member.",
            )?,
            delete_total: counter(
                "etcd_mvcc_delete_total",
                "Total number of deletes seen by this member.",
            )?,
            txn_total: counter(
                "etcd_mvcc_txn_total",
                "Total number of txns seen by this member.",
            )?,
            grpc_started,
            grpc_handled,
            server_version,
            cluster_version,
            db_open_seconds,
            registry,
        })
    }

    /// The counters of the gRPC method a request path (`/etcdserverpb.KV/Put`) names, if it
    /// is one cairn serves.
    pub fn grpc_call(&self, path: &str) -> Option<std::sync::Arc<GrpcCall>> {
        self.grpc_calls.get(path).cloned()
    }

    /// Renders every metric in Prometheus's text format.
    ///
    /// The scrape counters count earlier scrapes: this one is in flight while it renders.
    pub fn render(&self) -> String {
        self.more.scrapes_in_flight.inc();
        let body = text::encode(&self.registry.gather());
        self.more.scrapes_in_flight.dec();
        self.more.scrapes.with_label_values(&["200"]).inc();
        body
    }
}

/// Registers `c` and hands it back.
fn reg<C: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    c: C,
) -> Result<C, prometheus::Error> {
    registry.register(Box::new(c.clone()))?;
    Ok(c)
}

fn exp_buckets(start: f64, factor: f64, count: usize) -> Vec<f64> {
    prometheus::exponential_buckets(start, factor, count).unwrap_or_default()
}

/// One gRPC method's series in the `grpc_server_*` families, looked up once when the
/// metrics are made, so that counting a call costs atomic adds rather than a hash of its
/// labels per family.
pub struct GrpcCall {
    /// grpc-go-prometheus's `grpc_type`: `unary` or `bidi_stream`/`server_stream`.
    pub ty: &'static str,
    pub started: IntCounter,
    /// `grpc_server_handled_total`, by the status code's number.
    handled: Vec<IntCounter>,
    pub msg_received: IntCounter,
    pub msg_sent: IntCounter,
    /// `grpc_server_handling_seconds`, with `--metrics=extensive`.
    handling: Option<Histogram>,
}

impl GrpcCall {
    fn new(
        service: &'static str,
        method: &'static str,
        ty: &'static str,
        started: &IntCounterVec,
        handled: &IntCounterVec,
        more: &MoreMetrics,
    ) -> GrpcCall {
        let labels = [ty, service, method];
        GrpcCall {
            ty,
            started: started.with_label_values(&labels),
            handled: (0..=16)
                .map(|code| {
                    let name = cairn_proto::grpc_code_name(tonic::Code::from_i32(code));
                    handled.with_label_values(&[ty, service, method, name])
                })
                .collect(),
            msg_received: more.grpc_msg_received.with_label_values(&labels),
            msg_sent: more.grpc_msg_sent.with_label_values(&labels),
            handling: more
                .grpc_handling
                .as_ref()
                .map(|h| h.with_label_values(&labels)),
        }
    }

    /// Counts the call as ended with `code`.
    pub fn handled(&self, code: tonic::Code) {
        if let Some(c) = self.handled.get(code as usize) {
            c.inc();
        }
    }

    /// Records how long a unary call took, under `--metrics=extensive`.
    pub fn handled_in(&self, took: std::time::Duration) {
        if let Some(h) = &self.handling {
            h.observe(took.as_secs_f64());
        }
    }
}

/// The gRPC methods each service serves, with grpc-go-prometheus's `grpc_type`: the
/// `grpc_server_*` families list every method from the start, at zero, as etcd's do.
const GRPC_METHODS: &[(&str, &str, &str)] = &[
    ("etcdserverpb.KV", "Range", "unary"),
    ("etcdserverpb.KV", "Put", "unary"),
    ("etcdserverpb.KV", "DeleteRange", "unary"),
    ("etcdserverpb.KV", "Txn", "unary"),
    ("etcdserverpb.KV", "Compact", "unary"),
    ("etcdserverpb.Watch", "Watch", "bidi_stream"),
    ("etcdserverpb.Lease", "LeaseGrant", "unary"),
    ("etcdserverpb.Lease", "LeaseRevoke", "unary"),
    ("etcdserverpb.Lease", "LeaseKeepAlive", "bidi_stream"),
    ("etcdserverpb.Lease", "LeaseTimeToLive", "unary"),
    ("etcdserverpb.Lease", "LeaseLeases", "unary"),
    ("etcdserverpb.Cluster", "MemberAdd", "unary"),
    ("etcdserverpb.Cluster", "MemberRemove", "unary"),
    ("etcdserverpb.Cluster", "MemberUpdate", "unary"),
    ("etcdserverpb.Cluster", "MemberList", "unary"),
    ("etcdserverpb.Cluster", "MemberPromote", "unary"),
    ("etcdserverpb.Maintenance", "Alarm", "unary"),
    ("etcdserverpb.Maintenance", "Status", "unary"),
    ("etcdserverpb.Maintenance", "Defragment", "unary"),
    ("etcdserverpb.Maintenance", "Hash", "unary"),
    ("etcdserverpb.Maintenance", "HashKV", "unary"),
    ("etcdserverpb.Maintenance", "Snapshot", "server_stream"),
    ("etcdserverpb.Maintenance", "MoveLeader", "unary"),
    ("etcdserverpb.Maintenance", "Downgrade", "unary"),
    ("etcdserverpb.Auth", "AuthEnable", "unary"),
    ("etcdserverpb.Auth", "AuthDisable", "unary"),
    ("etcdserverpb.Auth", "AuthStatus", "unary"),
    ("etcdserverpb.Auth", "Authenticate", "unary"),
    ("etcdserverpb.Auth", "UserAdd", "unary"),
    ("etcdserverpb.Auth", "UserGet", "unary"),
    ("etcdserverpb.Auth", "UserList", "unary"),
    ("etcdserverpb.Auth", "UserDelete", "unary"),
    ("etcdserverpb.Auth", "UserChangePassword", "unary"),
    ("etcdserverpb.Auth", "UserGrantRole", "unary"),
    ("etcdserverpb.Auth", "UserRevokeRole", "unary"),
    ("etcdserverpb.Auth", "RoleAdd", "unary"),
    ("etcdserverpb.Auth", "RoleGet", "unary"),
    ("etcdserverpb.Auth", "RoleList", "unary"),
    ("etcdserverpb.Auth", "RoleDelete", "unary"),
    ("etcdserverpb.Auth", "RoleGrantPermission", "unary"),
    ("etcdserverpb.Auth", "RoleRevokePermission", "unary"),
    ("v3lockpb.Lock", "Lock", "unary"),
    ("v3lockpb.Lock", "Unlock", "unary"),
    ("v3electionpb.Election", "Campaign", "unary"),
    ("v3electionpb.Election", "Proclaim", "unary"),
    ("v3electionpb.Election", "Leader", "unary"),
    ("v3electionpb.Election", "Observe", "server_stream"),
    ("v3electionpb.Election", "Resign", "unary"),
];

impl MoreMetrics {
    fn new(registry: &Registry, extensive: bool) -> Result<MoreMetrics, prometheus::Error> {
        let counter = |name: &str, help: &str| reg(registry, IntCounter::new(name, help)?);
        let gauge = |name: &str, help: &str| reg(registry, IntGauge::new(name, help)?);
        let histogram = |name: &str, help: &str, buckets: Vec<f64>| {
            reg(
                registry,
                Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))?,
            )
        };
        let grpc_labels = ["grpc_type", "grpc_service", "grpc_method"];
        let grpc_msg_received = reg(
            registry,
            IntCounterVec::new(
                Opts::new(
                    "grpc_server_msg_received_total",
                    "Total number of RPC stream messages received on the server.",
                ),
                &grpc_labels,
            )?,
        )?;
        let grpc_msg_sent = reg(
            registry,
            IntCounterVec::new(
                Opts::new(
                    "grpc_server_msg_sent_total",
                    "Total number of gRPC stream messages sent by the server.",
                ),
                &grpc_labels,
            )?,
        )?;
        let grpc_handling = if extensive {
            Some(reg(
                registry,
                HistogramVec::new(
                    HistogramOpts::new(
                        "grpc_server_handling_seconds",
                        "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.",
                    )
                    .buckets(prometheus::DEFAULT_BUCKETS.to_vec()),
                    &grpc_labels,
                )?,
            )?)
        } else {
            None
        };
        for (service, method, ty) in GRPC_METHODS {
            grpc_msg_received.with_label_values(&[ty, service, method]);
            grpc_msg_sent.with_label_values(&[ty, service, method]);
            if let Some(h) = &grpc_handling {
                h.with_label_values(&[ty, service, method]);
            }
        }
        let scrapes = reg(
            registry,
            IntCounterVec::new(
                Opts::new(
                    "promhttp_metric_handler_requests_total",
                    "Total number of scrapes by HTTP status code.",
                ),
                &["code"],
            )?,
        )?;
        for code in ["200", "500", "503"] {
            scrapes.with_label_values(&[code]);
        }
        Ok(MoreMetrics {
            leader_changes: counter(
                "etcd_server_leader_changes_seen_total",
                "The number of leader changes seen.",
            )?,
            heartbeat_failures: counter(
                "etcd_server_heartbeat_send_failures_total",
                "The total number of leader heartbeat send failures (likely overloaded from slow disk).",
            )?,
            server_id: reg(
                registry,
                IntGaugeVec::new(
                    Opts::new(
                        "etcd_server_id",
                        "Server or member ID in hexadecimal format. 1 for 'server_id' label with current ID.",
                    ),
                    &["server_id"],
                )?,
            )?,
            is_learner: gauge(
                "etcd_server_is_learner",
                "Whether or not this member is a learner. 1 if is, 0 otherwise.",
            )?,
            health_success: counter(
                "etcd_server_health_success",
                "The total number of successful health checks",
            )?,
            health_failures: counter(
                "etcd_server_health_failures",
                "The total number of failed health checks",
            )?,
            read_indexes_failed: counter(
                "etcd_server_read_indexes_failed_total",
                "The total number of failed read indexes seen.",
            )?,
            slow_read_indexes: counter(
                "etcd_server_slow_read_indexes_total",
                "The total number of pending read indexes not in sync with leader's or timed out read index requests.",
            )?,
            slow_apply: counter(
                "etcd_server_slow_apply_total",
                "The total number of slow apply requests (likely overloaded from slow disk).",
            )?,
            apply_duration: reg(
                registry,
                HistogramVec::new(
                    HistogramOpts::new(
                        "etcd_server_apply_duration_seconds",
                        "The latency distributions of v2 apply called by backend.",
                    )
                    // etcd's: 100 µs doubling to about 52 s.
                    .buckets(exp_buckets(0.0001, 2.0, 20)),
                    &["version", "op", "success"],
                )?,
            )?,
            client_requests: reg(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "etcd_server_client_requests_total",
                        "The total number of client requests per client version.",
                    ),
                    &["type", "client_api_version"],
                )?,
            )?,
            grpc_msg_received,
            grpc_msg_sent,
            grpc_handling,
            client_received_bytes: counter(
                "etcd_network_client_grpc_received_bytes_total",
                "The total number of bytes received from grpc clients.",
            )?,
            client_sent_bytes: counter(
                "etcd_network_client_grpc_sent_bytes_total",
                "The total number of bytes sent to grpc clients.",
            )?,
            wal_write_bytes: gauge(
                "etcd_disk_wal_write_bytes_total",
                "Total number of bytes written in WAL.",
            )?,
            defrag_duration: histogram(
                "etcd_disk_backend_defrag_duration_seconds",
                "The latency distribution of backend defragmentation.",
                // etcd's: 100 ms doubling to about 410 s.
                exp_buckets(0.1, 2.0, 13),
            )?,
            defrag_inflight: gauge(
                "etcd_disk_defrag_inflight",
                "Whether or not defrag is active on the member. 1 means active, 0 means not.",
            )?,
            snapshot_duration: histogram(
                "etcd_disk_backend_snapshot_duration_seconds",
                "The latency distribution of backend snapshots.",
                // etcd's: 10 ms doubling to about 655 s.
                exp_buckets(0.01, 2.0, 17),
            )?,
            hash_duration: histogram(
                "etcd_mvcc_hash_duration_seconds",
                "The latency distribution of storage hash operation.",
                // etcd's: 10 ms doubling to about 164 s.
                exp_buckets(0.01, 2.0, 15),
            )?,
            hash_rev_duration: histogram(
                "etcd_mvcc_hash_rev_duration_seconds",
                "The latency distribution of storage hash by revision operation.",
                exp_buckets(0.01, 2.0, 15),
            )?,
            current_revision: gauge(
                "etcd_debugging_mvcc_current_revision",
                "The current revision of store.",
            )?,
            compact_revision: gauge(
                "etcd_debugging_mvcc_compact_revision",
                "The revision of the last compaction in store.",
            )?,
            keys_total: gauge(
                "etcd_debugging_mvcc_keys_total",
                "Total number of keys.",
            )?,
            open_read_transactions: gauge(
                "etcd_mvcc_db_open_read_transactions",
                "The number of currently open read transactions",
            )?,
            auth_revision: gauge(
                "etcd_debugging_auth_revision",
                "The current revision of auth store.",
            )?,
            learner_promotions: counter(
                "etcd_server_learner_promote_successes",
                "The total number of successful learner promotions while this member is leader.",
            )?,
            snapshot_applying: gauge(
                "etcd_server_snapshot_apply_in_progress_total",
                "1 if the server is applying the incoming snapshot. 0 if none.",
            )?,
            debugging_range_total: counter(
                "etcd_debugging_mvcc_range_total",
                "Total number of ranges seen by this member.",
            )?,
            total_put_size: gauge(
                "etcd_debugging_mvcc_total_put_size_in_bytes",
                "The total size of put kv pairs seen by this member.",
            )?,
            events_total: counter(
                "etcd_debugging_mvcc_events_total",
                "Total number of events sent by this member.",
            )?,
            snapshot_received: histogram(
                "etcd_snap_db_save_total_duration_seconds",
                "The total latency distributions of v3 snapshot save",
                // etcd's: 100 ms doubling to 51.2 s.
                exp_buckets(0.1, 2.0, 10),
            )?,
            compaction: CompactionMetrics {
                keys: counter(
                    "etcd_debugging_mvcc_db_compaction_keys_total",
                    "Total number of db keys compacted.",
                )?,
                last: gauge(
                    "etcd_debugging_mvcc_db_compaction_last",
                    "The unix time of the last db compaction. Resets to 0 on start.",
                )?,
                pause: histogram(
                    "etcd_debugging_mvcc_db_compaction_pause_duration_milliseconds",
                    "Bucketed histogram of db compaction pause duration.",
                    // etcd's: 1 ms doubling to 4096 ms.
                    exp_buckets(1.0, 2.0, 13),
                )?,
                total: histogram(
                    "etcd_debugging_mvcc_db_compaction_total_duration_milliseconds",
                    "Bucketed histogram of db compaction total duration.",
                    // etcd's: 100 ms doubling to about 819 s.
                    exp_buckets(100.0, 2.0, 14),
                )?,
                index_pause: histogram(
                    "etcd_debugging_mvcc_index_compaction_pause_duration_milliseconds",
                    "Bucketed histogram of index compaction pause duration.",
                    // etcd's: 0.5 ms doubling to 4096 ms.
                    exp_buckets(0.5, 2.0, 14),
                )?,
            },
            active_peers: reg(
                registry,
                IntGaugeVec::new(
                    Opts::new(
                        "etcd_network_active_peers",
                        "The current number of active peer connections.",
                    ),
                    &["Local", "Remote"],
                )?,
            )?,
            peer_sent: reg(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "etcd_network_peer_sent_bytes_total",
                        "The total number of bytes sent to peers.",
                    ),
                    &["To"],
                )?,
            )?,
            peer_received: reg(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "etcd_network_peer_received_bytes_total",
                        "The total number of bytes received from peers.",
                    ),
                    &["From"],
                )?,
            )?,
            peer_round_trip: reg(
                registry,
                HistogramVec::new(
                    HistogramOpts::new(
                        "etcd_network_peer_round_trip_time_seconds",
                        "Round-Trip-Time histogram between peers",
                    )
                    // etcd's: 0.1 ms doubling to about 3.3 s.
                    .buckets(exp_buckets(0.0001, 2.0, 16)),
                    &["To"],
                )?,
            )?,
            process: ProcessMetrics::new(registry)?,
            scrapes_in_flight: gauge(
                "promhttp_metric_handler_requests_in_flight",
                "Current number of scrapes being served.",
            )?,
            scrapes,
        })
    }
}

impl ProcessMetrics {
    fn new(registry: &Registry) -> Result<ProcessMetrics, prometheus::Error> {
        let gauge = |name: &str, help: &str| reg(registry, IntGauge::new(name, help)?);
        let fgauge = |name: &str, help: &str| reg(registry, Gauge::new(name, help)?);
        Ok(ProcessMetrics {
            cpu_seconds: reg(
                registry,
                prometheus::Counter::new(
                    "process_cpu_seconds_total",
                    "Total user and system CPU time spent in seconds.",
                )?,
            )?,
            open_fds: gauge("process_open_fds", "Number of open file descriptors.")?,
            max_fds: gauge(
                "process_max_fds",
                "Maximum number of open file descriptors.",
            )?,
            resident: gauge(
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
            )?,
            virtual_bytes: gauge(
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
            )?,
            virtual_max: fgauge(
                "process_virtual_memory_max_bytes",
                "Maximum amount of virtual memory available in bytes.",
            )?,
            start_time: fgauge(
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
            )?,
            os_fd_used: gauge("os_fd_used", "The number of used file descriptors.")?,
            os_fd_limit: gauge("os_fd_limit", "The file descriptor limit.")?,
        })
    }

    /// Reads this process's figures from `/proc/self`; a figure that cannot be read keeps
    /// its last value.
    fn refresh(&self) {
        let s = crate::process_stats::read();
        if let Some(cpu) = s.cpu_seconds {
            let delta = cpu - self.cpu_seconds.get();
            if delta > 0.0 {
                self.cpu_seconds.inc_by(delta);
            }
        }
        if let Some(n) = s.open_fds {
            self.open_fds.set(n as i64);
            self.os_fd_used.set(n as i64);
        }
        if let Some(n) = s.max_fds {
            self.max_fds.set(n as i64);
            self.os_fd_limit.set(n as i64);
        }
        if let Some(n) = s.resident_bytes {
            self.resident.set(n as i64);
        }
        if let Some(n) = s.virtual_bytes {
            self.virtual_bytes.set(n as i64);
        }
        if let Some(n) = s.virtual_max_bytes {
            self.virtual_max.set(n as f64);
        }
        if let Some(t) = s.start_time_seconds {
            self.start_time.set(t);
        }
    }
}

/// How etcd spells a client's API version when the client sends none.
const UNKNOWN_CLIENT_VERSION: &str = "unknown";

impl Metrics {
    /// Counts one client request (etcd's `etcd_server_client_requests_total`), by the
    /// `client-api-version` the client sent.
    pub fn client_request(&self, stream: bool, client_api_version: Option<&str>) {
        let ty = if stream { "stream" } else { "unary" };
        // A stranger picks the label's value: only a `major.minor` one (one digit, then one
        // or two) becomes a series of its own, so at most 1,100 series can be made this way.
        let version = client_api_version
            .filter(|v| is_api_version(v))
            .unwrap_or(UNKNOWN_CLIENT_VERSION);
        self.more
            .client_requests
            .with_label_values(&[ty, version])
            .inc();
    }

    /// Counts a health check's outcome.
    pub fn health_checked(&self, healthy: bool) {
        if healthy {
            self.more.health_success.inc();
        } else {
            self.more.health_failures.inc();
        }
    }

    /// Records how long applying one request took, by etcd's op name, and counts it as
    /// slow past etcd's 100 ms warning threshold.
    pub fn applied(&self, op: &str, success: bool, took: std::time::Duration) {
        self.more
            .apply_duration
            .with_label_values(&["v3", op, if success { "true" } else { "false" }])
            .observe(took.as_secs_f64());
        if took >= SLOW_APPLY {
            self.more.slow_apply.inc();
        }
    }

    /// Samples what the member's state says: the Raft counters, its id and role, and the
    /// process's figures.
    pub fn sample(&self, member_id: u64, is_learner: bool, raft: &cairn_raft::RaftStats) {
        let m = &self.more;
        let id = format!("{member_id:x}");
        if m.server_id.with_label_values(&[&id]).get() != 1 {
            m.server_id.reset();
            m.server_id.with_label_values(&[&id]).set(1);
        }
        m.is_learner.set(i64::from(is_learner));
        m.wal_write_bytes.set(raft.log_bytes as i64);
        for (counter, now) in [
            (&m.leader_changes, raft.leader_changes),
            (&m.heartbeat_failures, raft.heartbeat_failures),
            (&m.read_indexes_failed, raft.read_index_failures),
        ] {
            let seen = counter.get();
            if now > seen {
                counter.inc_by(now - seen);
            }
        }
        m.process.refresh();
    }
}

/// Whether `v` reads as an API version: `3.5`, `3.10`.
fn is_api_version(v: &str) -> bool {
    let Some((major, minor)) = v.split_once('.') else {
        return false;
    };
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    major.len() == 1 && (1..=2).contains(&minor.len()) && digits(major) && digits(minor)
}

/// etcd's `--experimental-warning-apply-duration` default.
const SLOW_APPLY: std::time::Duration = std::time::Duration::from_millis(100);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_major_minor_versions_become_label_values() {
        for v in ["3.5", "3.4", "3.10", "2.3"] {
            assert!(is_api_version(v), "{v}");
        }
        for v in [
            "",
            "3",
            "3.",
            ".5",
            "3.5.1",
            "35.1",
            "3.123",
            "a.b",
            "3.5 ",
            "\u{661}.5",
        ] {
            assert!(!is_api_version(v), "{v:?}");
        }
    }

    /// A slow apply cannot be made from outside on demand: the apply path hands each
    /// request's measured time to `applied`, and what the scrape shows follows from it.
    #[test]
    fn an_apply_past_100_ms_is_counted_slow_and_every_apply_is_timed() {
        let m = Metrics::new(false).unwrap();
        let ms = std::time::Duration::from_millis;
        m.applied("Put", true, ms(3));
        m.applied("Put", true, ms(99));
        m.applied("Txn", false, ms(100));
        m.applied("Put", true, ms(2500));
        let text = m.render();
        for line in [
            "etcd_server_slow_apply_total 2",
            "etcd_server_apply_duration_seconds_count{op=\"Put\",success=\"true\",version=\"v3\"} 3",
            "etcd_server_apply_duration_seconds_count{op=\"Txn\",success=\"false\",version=\"v3\"} 1",
            "etcd_server_apply_duration_seconds_bucket{op=\"Put\",success=\"true\",version=\"v3\",le=\"+Inf\"} 3",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in {text}");
        }
    }

    #[test]
    fn a_client_without_a_version_is_counted_as_unknown() {
        let m = Metrics::new(false).unwrap();
        m.client_request(false, None);
        m.client_request(true, Some("not-a-version"));
        m.client_request(false, Some("3.5"));
        let text = m.render();
        for line in [
            "etcd_server_client_requests_total{client_api_version=\"unknown\",type=\"unary\"} 1",
            "etcd_server_client_requests_total{client_api_version=\"unknown\",type=\"stream\"} 1",
            "etcd_server_client_requests_total{client_api_version=\"3.5\",type=\"unary\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in {text}");
        }
    }
}
