//! HTTP endpoints beside gRPC on the client port (and on `--listen-metrics-urls`):
//! `/health`, `/livez`, `/readyz`, `/version` and `/metrics`, shaped as etcd's, and etcd's
//! 404 for any other path.
//!
//! `/health` is etcd 3.5's (JSON, `?serializable=true` skips the leader and the quorum
//! read, `?exclude=ALARM` ignores an alarm). `/livez` and `/readyz` are etcd 3.6's: a list
//! of named checks, `ok` when all pass, `?verbose` lists them as `[+]name ok`, `?exclude=name`
//! skips one, `/readyz/name` runs one, and a failing check answers 503 listing
//! `[-]name failed: reason`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{any, get, MethodRouter};
use axum::Router;

use crate::server::Server;

/// The router for the HTTP endpoints. It has no fallback: whoever serves it ends the chain
/// with [`not_found`] (the client port after its gRPC services, see `run/`).
pub fn router(server: Arc<Server>) -> Router {
    Router::new()
        .route("/health", get_only(get(health)))
        .route("/livez", get_only(get(livez)))
        .route("/livez/{check}", get_only(get(livez_one)))
        .route("/readyz", get_only(get(readyz)))
        .route("/readyz/{check}", get_only(get(readyz_one)))
        .route("/version", get_only(get(version)))
        .route("/metrics", any(metrics))
        .with_state(server)
}

/// The router for `--listen-metrics-urls`: the endpoints and the 404 for anything else.
pub fn metrics_router(server: Arc<Server>) -> Router {
    router(server).fallback(not_found)
}

/// Answers another method than GET as etcd's health handlers do.
fn get_only(route: MethodRouter<Arc<Server>>) -> MethodRouter<Arc<Server>> {
    route.fallback(|| async {
        let mut resp = go_error(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
        resp.headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET"));
        resp
    })
}

/// A plain-text answer as Go's `http.Error` writes it: the text, a newline, and the
/// headers that forbid content sniffing.
fn go_error(status: StatusCode, text: &str) -> axum::response::Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        format!("{text}\n"),
    )
        .into_response()
}

/// What a path no route serves gets: a gRPC call to an unknown method is `Unimplemented`
/// (as tonic and grpc-go answer it); under the JSON gateway's prefixes, the gateway's
/// `Not Found`; anywhere else Go's `404 page not found`, as etcd's HTTP mux answers.
pub async fn not_found(req: Request) -> axum::response::Response {
    let grpc = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"));
    if grpc {
        let (parts, ()) = tonic::Status::unimplemented("")
            .into_http::<()>()
            .into_parts();
        return axum::response::Response::from_parts(parts, axum::body::Body::empty());
    }
    let path = req.uri().path();
    if path.starts_with("/v3/") || path.starts_with("/v3beta/") {
        go_error(StatusCode::NOT_FOUND, "Not Found")
    } else {
        go_error(StatusCode::NOT_FOUND, "404 page not found")
    }
}

/// The values of `key` in a query string (`a=1&a=2`), and whether `key` appears at all.
fn query_values(query: Option<&str>, key: &str) -> (bool, Vec<String>) {
    let mut found = false;
    let mut values = Vec::new();
    for pair in query.unwrap_or("").split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k == key {
            found = true;
            if !v.is_empty() {
                values.push(v.to_string());
            }
        }
    }
    (found, values)
}

fn json(status: StatusCode, body: serde_json::Value) -> axum::response::Response {
    (
        status,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// Reports whether this member can serve, as etcd 3.5's `/health`: no alarm (but those
/// named by `?exclude=`), a known leader and a linearizable read that completes in time;
/// with `?serializable=true`, a local read only (no leader needed). Answers 503 when it
/// cannot.
async fn health(
    State(s): State<Arc<Server>>,
    RawQuery(query): RawQuery,
) -> axum::response::Response {
    let (_, excluded) = query_values(query.as_deref(), "exclude");
    let (_, serializable) = query_values(query.as_deref(), "serializable");
    let serializable = serializable.iter().any(|v| v == "true");
    let alarm = s
        .alarms()
        .names()
        .into_iter()
        .find(|a| !excluded.iter().any(|e| e == a));
    let reason = if let Some(a) = alarm {
        Some(format!("ALARM {a}"))
    } else if serializable {
        serializable_read(&s)
            .await
            .err()
            .map(|e| format!("RANGE ERROR:{e}"))
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

/// A read of one key from the local store, as etcd's serializable health check: it fails
/// only when the member cannot read its own backend.
pub(crate) async fn serializable_read(s: &Arc<Server>) -> Result<(), String> {
    let s = s.clone();
    let read = tokio::task::spawn_blocking(move || {
        s.store().range(&cairn_proto::etcdserverpb::RangeRequest {
            key: vec![0],
            range_end: vec![0],
            limit: 1,
            keys_only: true,
            serializable: true,
            ..Default::default()
        })
    });
    match read.await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// The checks of etcd 3.6's `/livez` and `/readyz`, in the order they are listed.
const LIVEZ_CHECKS: &[Check] = &[Check::SerializableRead];
const READYZ_CHECKS: &[Check] = &[
    Check::DataCorruption,
    Check::SerializableRead,
    Check::LinearizableRead,
];

/// One named health check.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Check {
    /// No CORRUPT alarm is raised.
    DataCorruption,
    /// The local store answers a read.
    SerializableRead,
    /// A linearizable read completes within the request timeout (needs a leader and a
    /// quorum).
    LinearizableRead,
}

impl Check {
    fn name(self) -> &'static str {
        match self {
            Check::DataCorruption => "data_corruption",
            Check::SerializableRead => "serializable_read",
            Check::LinearizableRead => "linearizable_read",
        }
    }

    async fn run(self, s: &Arc<Server>) -> Result<(), String> {
        match self {
            Check::DataCorruption => match s.alarms().names().contains(&"CORRUPT") {
                true => Err("alarm activated: CORRUPT".into()),
                false => Ok(()),
            },
            Check::SerializableRead => serializable_read(s).await,
            Check::LinearizableRead => s.linearizable_read().await.map_err(|e| e.to_string()),
        }
    }
}

/// Runs `checks` but those excluded and answers as etcd 3.6: `ok` (after the list when
/// `verbose`), or 503 with the list when one fails.
async fn run_checks(
    s: &Arc<Server>,
    checks: &[Check],
    query: Option<&str>,
    path: &str,
) -> axum::response::Response {
    let (verbose, _) = query_values(query, "verbose");
    let (_, excluded) = query_values(query, "exclude");
    let mut list = String::new();
    let mut failed = false;
    for check in checks {
        if excluded.iter().any(|e| e == check.name()) {
            continue;
        }
        match check.run(s).await {
            Ok(()) => list.push_str(&format!("[+]{} ok\n", check.name())),
            Err(reason) => {
                failed = true;
                list.push_str(&format!("[-]{} failed: {reason}\n", check.name()));
            }
        }
    }
    if failed {
        tracing::warn!(path, reason = %list, "health check failed");
        return go_error(StatusCode::SERVICE_UNAVAILABLE, &list);
    }
    let body = if verbose {
        format!("{list}ok\n")
    } else {
        "ok\n".into()
    };
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

/// Runs the one check `name` of `checks`; 404 for a name not among them.
async fn run_one(
    s: &Arc<Server>,
    checks: &[Check],
    name: &str,
    path: &str,
) -> axum::response::Response {
    match checks.iter().find(|c| c.name() == name) {
        Some(c) => run_checks(s, std::slice::from_ref(c), None, path).await,
        None => go_error(StatusCode::NOT_FOUND, "404 page not found"),
    }
}

/// Reports whether the process should keep running (etcd 3.6's `/livez`).
async fn livez(State(s): State<Arc<Server>>, RawQuery(q): RawQuery) -> axum::response::Response {
    run_checks(&s, LIVEZ_CHECKS, q.as_deref(), "/livez").await
}

async fn livez_one(
    State(s): State<Arc<Server>>,
    Path(name): Path<String>,
) -> axum::response::Response {
    run_one(&s, LIVEZ_CHECKS, &name, "/livez").await
}

/// Reports whether the member should take client traffic (etcd 3.6's `/readyz`).
async fn readyz(State(s): State<Arc<Server>>, RawQuery(q): RawQuery) -> axum::response::Response {
    run_checks(&s, READYZ_CHECKS, q.as_deref(), "/readyz").await
}

async fn readyz_one(
    State(s): State<Arc<Server>>,
    Path(name): Path<String>,
) -> axum::response::Response {
    run_one(&s, READYZ_CHECKS, &name, "/readyz").await
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_finds_repeated_keys_and_bare_flags() {
        let q = Some("verbose&exclude=a&exclude=b&exclude=");
        assert_eq!(query_values(q, "verbose"), (true, vec![]));
        assert_eq!(
            query_values(q, "exclude"),
            (true, vec!["a".to_string(), "b".to_string()])
        );
        assert_eq!(query_values(q, "serializable"), (false, vec![]));
        assert_eq!(query_values(None, "verbose"), (false, vec![]));
    }
}
