//! Connections whose writes are gathered into fewer system calls.
//!
//! hyper's HTTP/2 connection task writes whatever frames are queued each time it runs, and
//! under load it runs on one worker while the request handlers that queue the frames run
//! on another. A gRPC response is three frames (headers, data, trailers) queued one after
//! the other, so it often went out in two `writev`s, each of which costs the whole TCP
//! path on both ends. [`CoalescingIo`] accepts every write into a buffer and, when it is
//! asked to flush, lets the connection task yield: the handlers running meanwhile add their
//! frames, and a later flush sends all of it in one call. It yields again as long as the
//! last yield brought more frames, up to `MAX_YIELDS` times: under load each write
//! carries the responses of many streams (which also spares the peer's reads), and a
//! connection with nothing else coming still yields only once.
//!
//! The client side is the same: a channel's connection task sends what every stream queued
//! since its last flush, so closed-loop clients on one connection share their writes.
//!
//! A connection serving one request at a time sees one extra trip through the scheduler
//! per flush, not an extra system call. Reads pass straight through. The server wraps the
//! connections it accepts; [`crate::Client`] wraps the ones it dials.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Bytes buffered before a write waits for the socket instead of adding to the buffer.
const HIGH_WATER: usize = 256 << 10;
/// Yields one flush may make at most; it stops early after a yield that added nothing.
const MAX_YIELDS: u8 = 4;

/// A TCP stream that buffers writes and yields once before each flush that sends them.
///
/// The buffer holds `buf[sent..]` still to go.
pub struct CoalescingIo {
    tcp: TcpStream,
    buf: Vec<u8>,
    sent: usize,
    /// Times the current flush has let the task yield.
    yields: u8,
    /// The buffer's length at the last yield.
    len_at_yield: usize,
}

impl CoalescingIo {
    /// Wraps a connected stream.
    pub fn new(tcp: TcpStream) -> CoalescingIo {
        CoalescingIo {
            tcp,
            buf: Vec::new(),
            sent: 0,
            yields: 0,
            len_at_yield: 0,
        }
    }

    /// Writes out the whole buffer.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.buf.len() {
            let n = ready!(Pin::new(&mut self.tcp).poll_write(cx, &self.buf[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        if self.buf.capacity() > 2 * HIGH_WATER {
            // A large response passed through; don't keep its buffer.
            self.buf = Vec::new();
        }
        self.buf.clear();
        self.sent = 0;
        Poll::Ready(Ok(()))
    }

    /// Makes room for more before buffering it, past [`HIGH_WATER`].
    fn poll_room(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.buf.len() >= HIGH_WATER {
            ready!(self.poll_drain(cx))?;
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for CoalescingIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for CoalescingIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_room(cx))?;
        self.buf.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_room(cx))?;
        let mut n = 0;
        for b in bufs {
            self.buf.extend_from_slice(b);
            n += b.len();
        }
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let grew = self.buf.len() > self.len_at_yield;
        if self.sent < self.buf.len() && (self.yields == 0 || (grew && self.yields < MAX_YIELDS)) {
            // Tokio runs a task that wakes itself after the others that are ready.
            self.yields += 1;
            self.len_at_yield = self.buf.len();
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        ready!(self.poll_drain(cx))?;
        self.yields = 0;
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

/// Dials one connection for a tonic channel (`Endpoint::connect_with_connector`):
/// TCP_NODELAY, and writes gathered by [`CoalescingIo`], so the requests of the streams
/// sharing the connection leave together.
pub async fn dial(
    uri: tonic::transport::Uri,
) -> std::io::Result<hyper_util::rt::TokioIo<CoalescingIo>> {
    let Some(host) = uri.host() else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("no host in {uri}"),
        ));
    };
    let port = uri.port_u16().unwrap_or(80);
    // A bracketed IPv6 literal is dialled without its brackets.
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let tcp = tokio::net::TcpStream::connect((host, port)).await?;
    tcp.set_nodelay(true)?;
    Ok(hyper_util::rt::TokioIo::new(CoalescingIo::new(tcp)))
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use tokio::net::TcpListener;

    use super::*;

    /// A connected pair: the gathering end and a plain one.
    async fn pair() -> (CoalescingIo, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (plain, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (CoalescingIo::new(accepted.unwrap().0), plain.unwrap())
    }

    #[tokio::test]
    async fn writes_wait_for_a_flush_and_arrive_in_order() {
        let (mut io, mut peer) = pair().await;
        io.write_all(b"headers|").await.unwrap();
        let bufs = [io::IoSlice::new(b"data|"), io::IoSlice::new(b"trailers")];
        let n = io.write_vectored(&bufs).await.unwrap();
        assert_eq!(n, 13);
        // Nothing is sent before the flush.
        let mut probe = [0u8; 1];
        let early =
            tokio::time::timeout(std::time::Duration::from_millis(50), peer.read(&mut probe)).await;
        assert!(early.is_err(), "bytes went out before the flush");
        io.flush().await.unwrap();
        let mut got = vec![0u8; 21];
        peer.read_exact(&mut got).await.unwrap();
        assert_eq!(got, b"headers|data|trailers");
    }

    #[tokio::test]
    async fn large_writes_and_shutdown_send_everything() {
        let (mut io, mut peer) = pair().await;
        let big: Vec<u8> = (0..3 * HIGH_WATER).map(|i| i as u8).collect();
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            peer.read_to_end(&mut got).await.unwrap();
            got
        });
        io.write_all(&big).await.unwrap();
        io.write_all(b"tail").await.unwrap();
        io.shutdown().await.unwrap();
        let got = reader.await.unwrap();
        assert_eq!(got.len(), big.len() + 4);
        assert_eq!(&got[..big.len()], &big[..]);
        assert_eq!(&got[big.len()..], b"tail");
    }
}
