//! The per-request gRPC figures taken where a client's HTTP/2 request enters the gRPC
//! services: grpc-go-prometheus's `grpc_server_started_total` and `..._handled_total` (by
//! the `grpc-status` the response ends with), `etcd_server_client_requests_total` by the
//! `client-api-version` the client sent, the messages of every call and stream and their
//! bytes both ways, and, with `--metrics=extensive`, how long a unary call took.
//!
//! Messages and bytes are counted as etcd counts them: etcd's gRPC codec adds the size of
//! each message it marshals or unmarshals (the protobuf bytes, without gRPC's 5-byte
//! prefix) and grpc-go-prometheus's interceptors count each message a handler receives or
//! sends. Here the body wrappers read gRPC's framing out of the data frames as they pass
//! (without buffering or copying them) and count each message once its last byte has
//! passed: a unary call's request, its response when it succeeds (a failure sends only a
//! status), and each message of a stream. A response dropped before its status was sent
//! (the client went away) is counted as `Canceled`.
//!
//! The member's own client, which runs the lock and election recipes, is not counted:
//! etcd's recipes call its services in-process, past its interceptors and codec, so a
//! `Campaign` is one call there and should be one here.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::{Body, Bytes};
use http_body::Frame;
use prometheus::IntCounter;

use crate::identity::ConnIdentity;
use crate::metrics::GrpcCall;
use crate::server::Server;

/// The metadata key etcd's clients send their API version in.
const CLIENT_API_VERSION: &str = "client-api-version";

/// Counts the call, its request and its messages, then the response's as they are sent
/// and its status when it ends.
pub(super) async fn observe(
    server: Arc<Server>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let Some(call) = server.metrics().grpc_call(req.uri().path()) else {
        return next.run(req).await;
    };
    if req
        .extensions()
        .get::<ConnIdentity>()
        .is_some_and(|c| c.loopback)
    {
        return next.run(req).await;
    }
    let m = server.metrics();
    let version = req
        .headers()
        .get(CLIENT_API_VERSION)
        .and_then(|v| v.to_str().ok());
    m.client_request(call.ty != "unary", version);
    call.started.inc();
    let req = req.map(|b| {
        Body::new(Counted {
            inner: b,
            framing: Framing::default(),
            messages: call.msg_received.clone(),
            bytes: m.more.client_received_bytes.clone(),
            handled: None,
        })
    });
    let started = Instant::now();
    let resp = next.run(req).await;
    if call.ty == "unary" {
        call.handled_in(started.elapsed());
    }
    let messages = call.msg_sent.clone();
    let mut handled = Handled {
        call,
        counted: false,
    };
    // A trailers-only response (an error before any message) has its status here.
    if let Some(code) = status_code(resp.headers()) {
        handled.count(code);
    }
    let sent = m.more.client_sent_bytes.clone();
    resp.map(|b| {
        Body::new(Counted {
            inner: b,
            framing: Framing::default(),
            messages,
            bytes: sent,
            handled: Some(handled),
        })
    })
}

/// The code of a `grpc-status` header or trailer.
fn status_code(headers: &http::HeaderMap) -> Option<tonic::Code> {
    let v = headers.get("grpc-status")?.to_str().ok()?;
    Some(tonic::Code::from_i32(v.parse().ok()?))
}

/// Counts a call in `grpc_server_handled_total` once: with the status its response ends
/// with, or as canceled if the response is dropped first.
struct Handled {
    call: Arc<GrpcCall>,
    counted: bool,
}

impl Handled {
    fn count(&mut self, code: tonic::Code) {
        if !self.counted {
            self.counted = true;
            self.call.handled(code);
        }
    }
}

impl Drop for Handled {
    fn drop(&mut self) {
        self.count(tonic::Code::Cancelled);
    }
}

/// A body that counts the gRPC messages passing through in `messages` and their bytes
/// (without the prefixes) in `bytes`; a response's also counts the call as handled when
/// its trailers pass.
struct Counted {
    inner: Body,
    framing: Framing,
    messages: IntCounter,
    bytes: IntCounter,
    handled: Option<Handled>,
}

/// Where a body is in gRPC's framing: each message is a compressed-flag byte, its length
/// as 4 big-endian bytes, then that many bytes; messages follow one another and may be
/// split across data frames anywhere, prefix included.
///
/// For example, the data frames `[0 0 0 0 3 a]`, `[b c 0 0 0 0 0]` hold a 3-byte message
/// and an empty one: the first frame completes nothing, the second both.
#[derive(Debug, Default)]
struct Framing {
    /// The current message's prefix, as far as it has come.
    prefix: [u8; 5],
    prefix_seen: usize,
    /// The current message's length, once its prefix is whole.
    length: u64,
    /// Bytes of the current message still to come, once its prefix is whole.
    left: u64,
}

impl Framing {
    /// Reads `data`, the next bytes of the body: the messages it completes and their
    /// total length.
    fn feed(&mut self, mut data: &[u8]) -> (u64, u64) {
        let (mut messages, mut bytes) = (0, 0);
        while !data.is_empty() {
            if self.prefix_seen < self.prefix.len() {
                let take = (self.prefix.len() - self.prefix_seen).min(data.len());
                self.prefix[self.prefix_seen..self.prefix_seen + take]
                    .copy_from_slice(&data[..take]);
                self.prefix_seen += take;
                data = &data[take..];
                if self.prefix_seen < self.prefix.len() {
                    break;
                }
                let [_, a, b, c, d] = self.prefix;
                self.length = u64::from(u32::from_be_bytes([a, b, c, d]));
                self.left = self.length;
            } else {
                let take = self.left.min(data.len() as u64);
                self.left -= take;
                // `take` is at most `data.len()`.
                data = &data[take as usize..];
            }
            if self.left == 0 {
                messages += 1;
                bytes += self.length;
                self.prefix_seen = 0;
            }
        }
        (messages, bytes)
    }
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
                let (messages, bytes) = this.framing.feed(data);
                if messages > 0 {
                    this.messages.inc_by(messages);
                    this.bytes.inc_by(bytes);
                }
            } else if let Some(trailers) = frame.trailers_ref() {
                if let (Some(h), Some(code)) = (&mut this.handled, status_code(trailers)) {
                    h.count(code);
                }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_counted_whole_however_the_frames_split_them() {
        // A 3-byte message, an empty one and a 300-byte one.
        let mut body = vec![
            0, 0, 0, 0, 3, b'a', b'b', b'c', 0, 0, 0, 0, 0, 0, 0, 0, 1, 44,
        ];
        body.extend(std::iter::repeat_n(7, 300));
        for split in [1, 2, 3, 5, 7, 8, 13, 64, body.len()] {
            let mut framing = Framing::default();
            let mut seen = Vec::new();
            for chunk in body.chunks(split) {
                seen.push(framing.feed(chunk));
            }
            let total = seen
                .iter()
                .fold((0, 0), |(m, b), (dm, db)| (m + dm, b + db));
            assert_eq!(total, (3, 303), "frames of {split}: {seen:?}");
        }
        // The last message is counted only once its last byte has come.
        let mut framing = Framing::default();
        assert_eq!(framing.feed(&body[..body.len() - 1]), (2, 3));
        assert_eq!(framing.feed(&body[body.len() - 1..]), (1, 300));
    }
}
