//! One accepted connection: on an https listener a TLS handshake, then its first bytes,
//! each within the handshake timeout, then HTTP/1 or HTTP/2 under the listener's
//! [`ConnectionLimits`]. Each request carries the connection's
//! [`ConnIdentity`] in its extensions: the CN of a verified client certificate, or the
//! member's own in-process client ([`serve_io`], used by `run/loopback.rs`).
//!
//! A connection tells its protocol by its first bytes: HTTP/2 (gRPC) opens with the
//! 24-byte client preface, anything else is HTTP/1. Those bytes are read here, under the
//! handshake timeout, and replayed to hyper ([`Replayed`]); a connection that sends
//! nothing, or part of a preface, is closed when the timeout ends instead of holding a
//! task and a socket forever.
//!
//! Then, on HTTP/1, hyper's header-read timeout drops a connection that is slow to send a
//! request's headers; on HTTP/2 the listener's stream limit, keepalive pings and ping
//! policy (`ping_policy.rs`) apply.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use cairn_client::coalesce::CoalescingIo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::ping_policy::PingPolicy;
use crate::config::ConnectionLimits;
use crate::identity::ConnIdentity;
use crate::tls::ServerTls;

/// What every HTTP/2 client sends first.
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Serves one accepted connection with `router` until it ends, fails or times out; with
/// `tls` (an https listener), after a TLS handshake that must end within the handshake
/// timeout.
pub(super) async fn serve(
    tcp: TcpStream,
    router: axum::Router,
    limits: ConnectionLimits,
    tls: Option<Arc<ServerTls>>,
) {
    let io = CoalescingIo::new(tcp);
    let Some(tls) = tls else {
        return serve_io(io, router, limits, ConnIdentity::default()).await;
    };
    let handshake = tls.acceptor().accept(io).into_fallible();
    match tokio::time::timeout(limits.handshake_timeout, handshake).await {
        Ok(Ok(stream)) => {
            let identity = crate::tls::identity(stream.get_ref().1);
            serve_io(stream, router, limits, identity).await;
        }
        Ok(Err((e, mut io))) => {
            tracing::warn!(error = %e, "rejected connection");
            if not_tls(&e) {
                // Closed without a word, as Go's TLS server (etcd's) closes a connection
                // whose first record is no TLS handshake: plain HTTP gets no alert to read
                // as a broken answer (curl: "Empty reply from server").
                return;
            }
            // The alert saying why (a bad certificate, no shared cipher suite) waits in
            // the gathered writes: the client should see it, as etcd's clients do.
            use tokio::io::AsyncWriteExt;
            let _ = tokio::time::timeout(limits.handshake_timeout, io.flush()).await;
        }
        Err(_) => tracing::debug!("connection closed: no TLS handshake in time"),
    }
}

/// Whether a failed handshake's first record was not TLS at all (plain HTTP, an HTTP/2
/// preface, other bytes): an unknown record type or protocol version.
fn not_tls(e: &std::io::Error) -> bool {
    use rustls::InvalidMessage::{InvalidContentType, UnknownProtocolVersion};
    matches!(
        e.get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>()),
        Some(rustls::Error::InvalidMessage(
            InvalidContentType | UnknownProtocolVersion
        ))
    )
}

/// Serves one connection, plain, TLS or in-process, whose client is `identity`: its
/// first bytes within the handshake timeout, then HTTP/1 or HTTP/2. Every request gets
/// `identity` in its extensions.
pub(super) async fn serve_io<I>(
    mut io: I,
    router: axum::Router,
    limits: ConnectionLimits,
    identity: ConnIdentity,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (head, http2) = match tokio::time::timeout(limits.handshake_timeout, sniff(&mut io)).await {
        Ok(Ok(Some(first))) => first,
        Ok(Ok(None)) => return,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "connection failed before its first request");
            return;
        }
        Err(_) => {
            tracing::debug!("connection closed: no HTTP/2 preface or HTTP/1 request in time");
            return;
        }
    };
    let io = Replayed { head, at: 0, io };
    let service = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let mut router = router.clone();
        let mut req = req.map(axum::body::Body::new);
        req.extensions_mut().insert(identity.clone());
        async move {
            use tower::Service;
            router.call(req).await
        }
    });
    let served = if http2 {
        let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            .max_concurrent_streams(limits.max_concurrent_streams);
        if let Some((interval, timeout)) = limits.keepalive {
            builder
                .keep_alive_interval(interval)
                .keep_alive_timeout(timeout);
        }
        match limits.keepalive_min_time {
            Some(min_time) => {
                let io = TokioIo::new(PingPolicy::new(io, min_time));
                builder.serve_connection(io, service).await
            }
            None => builder.serve_connection(TokioIo::new(io), service).await,
        }
    } else {
        hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.handshake_timeout)
            .serve_connection(TokioIo::new(io), service)
            .await
    };
    if let Err(e) = served {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// [`serve_io`] for a connection whose first bytes, `head`, were already read.
pub(super) async fn serve_io_after<I>(
    head: Vec<u8>,
    io: I,
    router: axum::Router,
    limits: ConnectionLimits,
    identity: ConnIdentity,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    serve_io(Replayed { head, at: 0, io }, router, limits, identity).await;
}

/// Reads a connection's first bytes until they are the whole HTTP/2 preface (`true`) or
/// stop matching it (`false`, HTTP/1); `None` when the peer closes first.
async fn sniff<I: AsyncRead + Unpin>(tcp: &mut I) -> io::Result<Option<(Vec<u8>, bool)>> {
    let mut head = Vec::with_capacity(PREFACE.len());
    let mut chunk = [0u8; PREFACE.len()];
    loop {
        let want = PREFACE.len() - head.len();
        let n = tcp.read(&mut chunk[..want]).await?;
        if n == 0 {
            return Ok(None);
        }
        head.extend_from_slice(&chunk[..n]);
        if !PREFACE.starts_with(&head) {
            return Ok(Some((head, false)));
        }
        if head.len() == PREFACE.len() {
            return Ok(Some((head, true)));
        }
    }
}

/// A connection whose first bytes, already read, are read again before the rest.
struct Replayed<I> {
    /// The bytes read before; `head[at..]` are still to be replayed.
    head: Vec<u8>,
    at: usize,
    io: I,
}

impl<I: AsyncRead + Unpin> AsyncRead for Replayed<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(rest) = this.head.get(this.at..).filter(|r| !r.is_empty()) {
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.at += n;
            if this.at == this.head.len() {
                this.head = Vec::new();
                this.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Replayed<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (client.unwrap(), accepted.unwrap().0)
    }

    #[tokio::test]
    async fn first_bytes_tell_http2_from_http1_and_are_replayed() {
        for (sent, http2) in [
            (&PREFACE[..], true),
            (&b"GET /health HTTP/1.1\r\n"[..], false),
            (&b"PRX"[..], false),
        ] {
            let (mut client, mut server) = pair().await;
            client.write_all(sent).await.unwrap();
            client.write_all(b"rest").await.unwrap();
            let (head, is_http2) = sniff(&mut server).await.unwrap().unwrap();
            assert_eq!(is_http2, http2, "{sent:?}");
            let mut replayed = Replayed {
                head,
                at: 0,
                io: server,
            };
            let mut all = vec![0u8; sent.len() + 4];
            replayed.read_exact(&mut all).await.unwrap();
            assert_eq!(&all[..sent.len()], sent);
            assert_eq!(&all[sent.len()..], b"rest");
        }
    }

    #[tokio::test]
    async fn a_peer_that_closes_first_is_none() {
        let (mut client, mut server) = pair().await;
        client.write_all(b"PRI * HT").await.unwrap();
        drop(client);
        assert!(sniff(&mut server).await.unwrap().is_none());
    }
}
