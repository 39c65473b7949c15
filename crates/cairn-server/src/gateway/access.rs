//! `--cors` and `--host-whitelist` as etcd applies them to the HTTP requests of a client
//! URL (the gateway, `/health`, `/version`, `/metrics`; gRPC is not checked): a request on
//! plain HTTP whose Host is not listed is refused with 421 (DNS rebinding, CVE-2018-5702);
//! a listed origin (or any, with `*`) gets CORS headers; `OPTIONS` is answered 200 there.
//!
//! With `--client-cert-auth` and auth enabled, a gateway request over TLS whose client
//! certificate has a CN is refused with 400 and etcd's text, as etcd 3.4.10+ and 3.5 refuse
//! it: the gateway does not act as the certificate's user (a gRPC call does), so a client
//! relying on its CN would otherwise act as nobody, or as the token's user, unawares.

use std::collections::HashSet;
use std::sync::Arc;

use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// How much of a refused request's body is read before the refusal is sent.
const DRAINED_BODY_BYTES: usize = 64 * 1024;

/// The two lists, from the flags' comma-separated values (an empty list allows all).
#[derive(Default)]
pub struct Access {
    cors: HashSet<String>,
    hosts: HashSet<String>,
    /// With `--client-cert-auth`: whether auth is enabled now (the CN refusal applies then).
    auth_enabled: Option<Box<dyn Fn() -> bool + Send + Sync>>,
}

impl Access {
    /// The lists `--cors` and `--host-whitelist` give.
    pub fn new(cors: &str, hosts: &str) -> Access {
        let set = |s: &str| {
            s.split(',')
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
                .collect()
        };
        Access {
            cors: set(cors),
            hosts: set(hosts),
            auth_enabled: None,
        }
    }

    /// Refuses gateway requests that carry a client certificate with a CN while
    /// `auth_enabled` says auth is on (`--client-cert-auth`).
    pub fn refuse_gateway_cn(
        mut self,
        auth_enabled: impl Fn() -> bool + Send + Sync + 'static,
    ) -> Access {
        self.auth_enabled = Some(Box::new(auth_enabled));
        self
    }

    fn allows(set: &HashSet<String>, value: &str) -> bool {
        set.is_empty() || set.contains("*") || set.contains(value)
    }
}

/// Applies the checks to one request on a listener (`secure` when it speaks TLS).
pub async fn check(access: Arc<Access>, secure: bool, req: Request, next: Next) -> Response {
    if is_grpc(&req) {
        return next.run(req).await;
    }
    if secure {
        if let Some(auth_enabled) = &access.auth_enabled {
            if is_gateway(&req) && has_cert_cn(&req) && auth_enabled() {
                // The body is read first (up to a bound): over HTTP/2 an answer sent while
                // the client still uploads ends in a stream reset, which curl reports as a
                // failure rather than as this answer.
                let _ = axum::body::to_bytes(req.into_body(), DRAINED_BODY_BYTES).await;
                return (
                    StatusCode::BAD_REQUEST,
                    [
                        ("content-type", "text/plain; charset=utf-8"),
                        ("x-content-type-options", "nosniff"),
                    ],
                    "CommonName of client sending a request against gateway will be ignored \
and not used as expected\n",
                )
                    .into_response();
            }
        }
    } else {
        let host = request_host(&req);
        if !Access::allows(&access.hosts, &host) {
            tracing::warn!(host = %host, "rejecting HTTP request to prevent DNS rebinding attacks");
            return (
                StatusCode::MISDIRECTED_REQUEST,
                [
                    ("content-type", "text/plain; charset=utf-8"),
                    ("x-content-type-options", "nosniff"),
                ],
                rebinding_message(&host),
            )
                .into_response();
        }
    }
    let origin = if Access::allows(&access.cors, "*") {
        Some("*".to_string())
    } else {
        req.headers()
            .get("origin")
            .and_then(|o| o.to_str().ok())
            .filter(|o| Access::allows(&access.cors, o))
            .map(str::to_string)
    };
    let mut resp = if req.method() == Method::OPTIONS {
        StatusCode::OK.into_response()
    } else {
        next.run(req).await
    };
    if let Some(origin) = origin.and_then(|o| HeaderValue::from_str(&o).ok()) {
        let h = resp.headers_mut();
        h.insert(
            "access-control-allow-headers",
            HeaderValue::from_static("accept, content-type, authorization"),
        );
        h.insert(
            "access-control-allow-methods",
            HeaderValue::from_static("POST, GET, OPTIONS, PUT, DELETE"),
        );
        h.insert("access-control-allow-origin", origin);
    }
    resp
}

/// A request for the gateway: under `/v3/`, or `/v3beta/` (which etcd rewrites to `/v3/`
/// before this check).
fn is_gateway(req: &Request) -> bool {
    let path = req.uri().path();
    path.starts_with("/v3/") || path.starts_with("/v3beta/")
}

/// Whether the connection's verified client certificate has a non-empty CN.
fn has_cert_cn(req: &Request) -> bool {
    req.extensions()
        .get::<crate::identity::ConnIdentity>()
        .and_then(|id| id.cert_common_name.as_deref())
        .is_some_and(|cn| !cn.is_empty())
}

fn is_grpc(req: &Request) -> bool {
    req.headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

/// The request's host name, without its port (HTTP/1's Host header, or HTTP/2's
/// authority).
fn request_host(req: &Request) -> String {
    let host = req
        .headers()
        .get("host")
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.as_str().to_string()))
        .unwrap_or_default();
    match host.rsplit_once(':') {
        // A bracketed IPv6 address keeps its brackets off, as Go's SplitHostPort does.
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => {
            h.trim_start_matches('[').trim_end_matches(']').to_string()
        }
        _ => host,
    }
}

/// etcd's answer to a Host it does not serve, word for word (scripts and operators search
/// for it).
fn rebinding_message(host: &str) -> String {
    format!(
        "\netcd received your request, but the Host header was unrecognized.\n\n\
To fix this, choose one of the following options:\n\
- Enable TLS, then any HTTPS request will be allowed.\n\
- Add the hostname you want to use to the whitelist in settings.\n  \
- e.g. etcd --host-whitelist {host:?}\n\n\
This requirement has been added to help prevent \"DNS Rebinding\" attacks (CVE-2018-5702).\n\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host_of(host: &str) -> String {
        let req = Request::builder()
            .header("host", host)
            .body(axum::body::Body::empty())
            .expect("request");
        request_host(&req)
    }

    #[test]
    fn the_host_is_taken_without_its_port() {
        assert_eq!(host_of("example.com:2379"), "example.com");
        assert_eq!(host_of("example.com"), "example.com");
        assert_eq!(host_of("[::1]:2379"), "::1");
    }

    #[test]
    fn empty_lists_and_stars_allow_all() {
        let a = Access::new("", "*");
        assert!(Access::allows(&a.cors, "http://x:1"));
        assert!(Access::allows(&a.hosts, "x"));
        let b = Access::new("http://a:1, http://b:2", "a.example");
        assert!(Access::allows(&b.cors, "http://b:2"));
        assert!(!Access::allows(&b.cors, "http://c:3"));
        assert!(!Access::allows(&b.hosts, "b.example"));
    }
}
