//! HTTP endpoints beside gRPC on the client port (and on `--listen-metrics-urls`):
//! `/health`, `/version` and `/metrics`, shaped as etcd's.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::server::Server;

/// The router for the HTTP endpoints.
pub fn router(server: Arc<Server>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/livez", get(livez))
        .route("/readyz", get(health))
        .route("/version", get(version))
        .route("/metrics", get(metrics))
        .with_state(server)
}

fn json(status: StatusCode, body: serde_json::Value) -> axum::response::Response {
    (
        status,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// Reports whether this member can serve: no alarm, a known leader, and a linearizable read
/// that completes in time. Answers 503 when it cannot, as etcd does.
async fn health(State(s): State<Arc<Server>>) -> axum::response::Response {
    let alarms = s.alarms().names();
    let reason = if !alarms.is_empty() {
        Some(
            alarms
                .iter()
                .map(|a| format!("ALARM {a}"))
                .collect::<Vec<_>>()
                .join(", "),
        )
    } else if s.raft_status().leader_id == 0 {
        Some("RAFT NO LEADER".to_string())
    } else {
        match tokio::time::timeout(Duration::from_secs(1), s.linearizable_read()).await {
            Ok(Ok(())) => None,
            _ => Some("QGET ERROR".to_string()),
        }
    };
    s.metrics().health_checked(reason.is_none());
    match reason {
        None => json(
            StatusCode::OK,
            serde_json::json!({"health": "true", "reason": ""}),
        ),
        Some(r) => {
            tracing::warn!(reason = %r, "serving /health false");
            json(
                StatusCode::SERVICE_UNAVAILABLE,
                serde_json::json!({"health": "false", "reason": r}),
            )
        }
    }
}

/// Reports that the process is up.
async fn livez() -> &'static str {
    "ok"
}

/// Reports the etcd API version cairn implements, and cairn's own.
async fn version() -> axum::response::Response {
    json(
        StatusCode::OK,
        serde_json::json!({
            "etcdserver": crate::config::ETCD_API_VERSION,
            "etcdcluster": crate::config::ETCD_CLUSTER_VERSION,
            "cairn": env!("CARGO_PKG_VERSION"),
        }),
    )
}

async fn metrics(State(s): State<Arc<Server>>) -> axum::response::Response {
    s.refresh_metrics();
    (
        StatusCode::OK,
        [("content-type", "text/plain; version=0.0.4")],
        s.metrics().render(),
    )
        .into_response()
}
