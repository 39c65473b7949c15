//! Prometheus metrics under etcd's names and labels, so existing dashboards and alerts work.

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

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
    pub server_version: IntGaugeVec,
    pub cluster_version: IntGaugeVec,
    pub db_open_seconds: Gauge,
    pub watch_streams: IntGauge,
    pub watchers: IntGauge,
    pub slow_watchers: IntGauge,
    pub lease: LeaseMetrics,
}

fn disk_buckets() -> Vec<f64> {
    // etcd's: 1ms doubling to about 8s.
    prometheus::exponential_buckets(0.001, 2.0, 14).unwrap_or_default()
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
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
            "etcd_db_open_seconds_total",
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
        Ok(Metrics {
            lease,
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

    /// Counts one finished RPC under grpc-go-prometheus's labels.
    pub fn grpc_done(&self, service: &str, method: &str, unary: bool, code: tonic::Code) {
        let ty = if unary { "unary" } else { "bidi_stream" };
        self.grpc_started
            .with_label_values(&[ty, service, method])
            .inc();
        self.grpc_handled
            .with_label_values(&[ty, service, method, cairn_proto::grpc_code_name(code)])
            .inc();
    }

    /// Counts a bidirectional stream as started.
    pub fn grpc_stream_started(&self, service: &str, method: &str) {
        self.grpc_started
            .with_label_values(&["bidi_stream", service, method])
            .inc();
    }

    /// Counts a bidirectional stream as ended with `code`.
    pub fn grpc_stream_handled(&self, service: &str, method: &str, code: tonic::Code) {
        self.grpc_handled
            .with_label_values(&[
                "bidi_stream",
                service,
                method,
                cairn_proto::grpc_code_name(code),
            ])
            .inc();
    }

    /// Renders every metric in Prometheus's text format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}
