//! The listeners: client, peer and metrics URLs, each connection with TCP_NODELAY and
//! gathered writes; on the peer URLs, raft streams told from HTTP/2 by their first byte.

use cairn_client::coalesce::CoalescingIo;
use tokio::net::TcpListener;

use super::RunError;
use crate::config::host_port;

/// Serves `router` on `listener` until it fails. Every accepted connection gets
/// TCP_NODELAY and gathered writes ([`cairn_client::coalesce`]): a gRPC response is
/// headers, data and trailers, which otherwise often go out in two writes.
pub(super) async fn serve(listener: TcpListener, router: axum::Router, what: &'static str) {
    let listener = CoalescingListener(listener);
    if let Err(e) = axum::serve(listener, router).await {
        tracing::error!(error = %e, listener = what, "listener stopped");
    }
}

/// Serves the peer URL on `listener`: raft streams (`peer::stream`) to `streams`, and
/// HTTP/2 connections to `router` as [`serve`] does. The first byte a connection sends
/// tells which it is.
pub(super) async fn serve_peer(
    mut listener: TcpListener,
    router: axum::Router,
    streams: crate::peer::stream::Receiver,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let Ok(local) = listener.local_addr() else {
        return;
    };
    tokio::spawn(async move {
        let grpc = CoalescingListener(HandedOver { rx, local });
        if let Err(e) = axum::serve(grpc, router).await {
            tracing::error!(error = %e, listener = "peer", "listener stopped");
        }
    });
    loop {
        let (tcp, addr) = axum::serve::Listener::accept(&mut listener).await;
        set_nodelay(&tcp);
        let (tx, streams) = (tx.clone(), streams.clone());
        tokio::spawn(async move {
            let mut first = [0u8; 1];
            match tokio::time::timeout(crate::peer::stream::OPEN_TIMEOUT, tcp.peek(&mut first))
                .await
            {
                Ok(Ok(1)) if first[0] == crate::peer::stream::MAGIC[0] => {
                    crate::peer::stream::receive(tcp, streams).await;
                }
                Ok(Ok(1)) => {
                    let _ = tx.send((tcp, addr)).await;
                }
                // Closed, failed or silent before its first byte.
                _ => {}
            }
        });
    }
}

/// Without it a write that follows an unacknowledged one waits for the peer's delayed ACK
/// (about 40 ms).
fn set_nodelay(tcp: &tokio::net::TcpStream) {
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::warn!(error = %e, "failed to set TCP_NODELAY");
    }
}

/// Connections accepted elsewhere and handed over one by one.
struct HandedOver {
    rx: tokio::sync::mpsc::Receiver<(tokio::net::TcpStream, std::net::SocketAddr)>,
    local: std::net::SocketAddr,
}

impl axum::serve::Listener for HandedOver {
    type Io = tokio::net::TcpStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(conn) => conn,
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        Ok(self.local)
    }
}

/// A TCP listener whose connections have TCP_NODELAY and gathered writes.
struct CoalescingListener<L>(L);

impl<L> axum::serve::Listener for CoalescingListener<L>
where
    L: axum::serve::Listener<Io = tokio::net::TcpStream, Addr = std::net::SocketAddr>,
{
    type Io = CoalescingIo;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (CoalescingIo, std::net::SocketAddr) {
        let (tcp, addr) = self.0.accept().await;
        set_nodelay(&tcp);
        (CoalescingIo::new(tcp), addr)
    }

    fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.0.local_addr()
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
