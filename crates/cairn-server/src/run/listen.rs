//! The listeners: client, peer and metrics URLs, each connection with TCP_NODELAY and
//! gathered writes and served under the member's [`ConnectionLimits`] (`conn.rs`), over
//! TLS on https URLs; on the peer URLs, raft streams told from HTTP/2 by their first byte.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

use super::{conn, RunError};
use crate::config::{host_port, ConnectionLimits};
use crate::tls::ServerTls;

/// The longest an accept loop waits after a failed accept (such as EMFILE: out of file
/// descriptors) before it tries again; it starts at 5 ms and doubles, as Go's does.
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// Serves `router` on `listener`, each connection in its own task. Every accepted
/// connection gets TCP_NODELAY and gathered writes ([`cairn_client::coalesce`]): a gRPC
/// response is headers, data and trailers, which otherwise often go out in two writes.
/// With `tls` (an https URL), each connection starts with a TLS handshake.
pub(super) async fn serve(
    listener: TcpListener,
    router: axum::Router,
    limits: ConnectionLimits,
    what: &'static str,
    tls: Option<Arc<ServerTls>>,
) {
    loop {
        let tcp = accept(&listener, what).await;
        tokio::spawn(conn::serve(tcp, router.clone(), limits, tls.clone()));
    }
}

/// Serves the peer URL on `listener`: raft streams (`peer::stream`) to `streams`, and
/// HTTP/2 connections to `router` as [`serve`] does. The first byte a connection sends
/// tells which it is.
///
/// With `tls` (an https peer URL), the TLS handshake comes first, and the first byte read
/// after it tells a stream from HTTP/2; with `check_san`, a peer's client certificate must
/// name the address it connects from, as etcd checks unless
/// `--experimental-peer-skip-client-san-verification`.
pub(super) async fn serve_peer(
    listener: TcpListener,
    router: axum::Router,
    limits: ConnectionLimits,
    streams: crate::peer::stream::Receiver,
    tls: Option<Arc<ServerTls>>,
    check_san: bool,
) {
    loop {
        let tcp = accept(&listener, "peer").await;
        let (router, streams) = (router.clone(), streams.clone());
        if let Some(tls) = &tls {
            tokio::spawn(serve_peer_tls(
                tcp,
                router,
                limits,
                streams,
                tls.clone(),
                check_san,
            ));
            continue;
        }
        tokio::spawn(async move {
            let mut first = [0u8; 1];
            match tokio::time::timeout(crate::peer::stream::OPEN_TIMEOUT, tcp.peek(&mut first))
                .await
            {
                Ok(Ok(1)) if first[0] == crate::peer::stream::MAGIC[0] => {
                    crate::peer::stream::receive(tcp, streams).await;
                }
                Ok(Ok(1)) => conn::serve(tcp, router, limits, None).await,
                // Closed, failed or silent before its first byte.
                _ => {}
            }
        });
    }
}

/// One connection to an https peer URL: TLS (the handshake refuses a peer whose
/// certificate the peer TLS flags do not admit), then a raft stream or HTTP/2.
async fn serve_peer_tls(
    tcp: TcpStream,
    router: axum::Router,
    limits: ConnectionLimits,
    streams: crate::peer::stream::Receiver,
    tls: Arc<ServerTls>,
    check_san: bool,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let open = crate::peer::stream::OPEN_TIMEOUT;
    let accept = tls.acceptor().accept(tcp).into_fallible();
    let mut stream = match tokio::time::timeout(open, accept).await {
        Ok(Ok(stream)) => stream,
        Ok(Err((e, mut tcp))) => {
            tracing::warn!(error = %e, "rejected peer connection");
            let _ = tokio::time::timeout(open, tcp.flush()).await;
            return;
        }
        Err(_) => return,
    };
    if check_san {
        let remote = stream.get_ref().0.peer_addr().map(|a| a.ip());
        let cert = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .cloned();
        if let (Ok(remote), Some(cert)) = (remote, cert) {
            if let Err(e) = crate::tls::check_peer_san(&cert, remote).await {
                tracing::warn!(remote_addr = %remote, error = %e, "rejected peer connection");
                return;
            }
        }
    }
    let identity = crate::tls::identity(stream.get_ref().1);
    let mut first = [0u8; 1];
    match tokio::time::timeout(open, stream.read_exact(&mut first)).await {
        Ok(Ok(_)) if first[0] == crate::peer::stream::MAGIC[0] => {
            crate::peer::stream::receive_tls(stream, first[0], streams).await;
        }
        Ok(Ok(_)) => conn::serve_io_after(first.to_vec(), stream, router, limits, identity).await,
        _ => {}
    }
}

/// Accepts the next connection, with TCP_NODELAY set. A failed accept is retried: at once
/// when only that connection failed, after a growing pause when the process is out of
/// something (file descriptors, memory), so the loop does not spin meanwhile.
async fn accept(listener: &TcpListener, what: &'static str) -> TcpStream {
    let mut backoff = Duration::from_millis(5);
    loop {
        match listener.accept().await {
            Ok((tcp, _)) => {
                set_nodelay(&tcp);
                return tcp;
            }
            Err(e) if connection_error(&e) => {}
            Err(e) => {
                tracing::warn!(error = %e, listener = what, retry_in = ?backoff, "failed to accept a connection");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_ACCEPT_BACKOFF);
            }
        }
    }
}

/// Whether an accept failed for that one connection only.
fn connection_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}

/// Without it a write that follows an unacknowledged one waits for the peer's delayed ACK
/// (about 40 ms).
fn set_nodelay(tcp: &TcpStream) {
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::warn!(error = %e, "failed to set TCP_NODELAY");
    }
}

/// Listens on `url`'s host and port, with SO_REUSEADDR (as Go's listeners have it) and,
/// with `--socket-reuse-port`, SO_REUSEPORT.
pub(super) async fn bind(url: &str, reuse_port: bool) -> Result<TcpListener, RunError> {
    let addr = host_port(url).ok_or_else(|| RunError::BadUrl(url.to_string()))?;
    let addr = addr.replace("localhost", "127.0.0.1");
    let failed = |source| RunError::Listen {
        addr: addr.clone(),
        source,
    };
    let Some(at) = tokio::net::lookup_host(&addr).await.map_err(failed)?.next() else {
        return Err(failed(std::io::ErrorKind::AddrNotAvailable.into()));
    };
    let socket = if at.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .map_err(failed)?;
    socket.set_reuseaddr(true).map_err(failed)?;
    if reuse_port {
        socket.set_reuseport(true).map_err(failed)?;
    }
    socket.bind(at).map_err(failed)?;
    socket.listen(1024).map_err(failed)
}
