//! The per-request gRPC figures taken where a client's HTTP/2 request enters the gRPC
//! services: `etcd_server_client_requests_total` by the `client-api-version` the client
//! sent, the bytes of its messages both ways, and, with `--metrics=extensive`, how long a
//! unary call took. Each is an atomic add; the body wrappers count the data frames as
//! they pass, without buffering or copying them.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::{Body, Bytes};
use http_body::Frame;
use prometheus::IntCounter;

use crate::server::Server;

/// The metadata key etcd's clients send their API version in.
const CLIENT_API_VERSION: &str = "client-api-version";

/// Counts the request and its bytes, then the response's as they are sent.
pub(super) async fn observe(
    server: Arc<Server>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let m = server.metrics();
    let Some((service, method, ty)) = crate::metrics::grpc_method(req.uri().path()) else {
        return next.run(req).await;
    };
    let version = req
        .headers()
        .get(CLIENT_API_VERSION)
        .and_then(|v| v.to_str().ok());
    m.client_request(ty != "unary", version);
    let received = m.more.client_received_bytes.clone();
    let req = req.map(|b| {
        Body::new(Counted {
            inner: b,
            bytes: received,
        })
    });
    let started = Instant::now();
    let resp = next.run(req).await;
    if ty == "unary" {
        m.grpc_handled_in(service, method, started.elapsed());
    }
    let sent = m.more.client_sent_bytes.clone();
    resp.map(|b| {
        Body::new(Counted {
            inner: b,
            bytes: sent,
        })
    })
}

/// A body that adds the length of each data frame passing through to `bytes`.
struct Counted {
    inner: Body,
    bytes: IntCounter,
}

impl http_body::Body for Counted {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                this.bytes.inc_by(data.len() as u64);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
