//! `--grpc-keepalive-min-time` on the client port: a client that pings more often than the
//! minimum gets GOAWAY ENHANCE_YOUR_CALM "too_many_pings" and its connection is closed, as
//! grpc-go's keepalive enforcement policy does for etcd.
//!
//! hyper's HTTP/2 server answers pings without showing them, so [`PingPolicy`] watches the
//! connection's bytes instead: it follows the frame headers in both directions (nine bytes
//! each, the payloads skipped, nothing copied). As in grpc-go, a PING that comes sooner
//! than the minimum after the one before is a strike, the first PING after the server sent
//! HEADERS or DATA clears the strikes (so a client whose pings follow the data it receives,
//! as grpc-go's flow-control estimator does, is never struck), and the third strike ends
//! the connection. Unlike grpc-go (etcd sets `PermitWithoutStream: false`), a connection
//! with no open stream is held to the same minimum, not to two hours.
//!
//! The GOAWAY is written between two of hyper's frames; in the rare case hyper is in the
//! middle of writing one, the connection is closed without it.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Strikes a connection may have; one more closes it (grpc-go's `maxPingStrikes`).
const MAX_STRIKES: u8 = 2;
const DATA: u8 = 0;
const HEADERS: u8 = 1;
const PING: u8 = 6;
const ACK: u8 = 1;
const GOAWAY: u8 = 7;
const ENHANCE_YOUR_CALM: u32 = 0xb;
const TOO_MANY_PINGS: &[u8] = b"too_many_pings";

/// Where one direction of the connection is in its frames.
#[derive(Debug, Default)]
struct Frames {
    /// Payload bytes of the current frame still to pass (or, at first, the preface's).
    skip: usize,
    head: [u8; 9],
    /// Bytes of `head` received so far.
    filled: usize,
}

impl Frames {
    /// Follows `bytes`, calling `on_frame(type, flags, stream id)` for each frame header.
    fn follow(&mut self, mut bytes: &[u8], mut on_frame: impl FnMut(u8, u8, u32)) {
        while !bytes.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(bytes.len());
                self.skip -= n;
                bytes = &bytes[n..];
                continue;
            }
            let n = (self.head.len() - self.filled).min(bytes.len());
            self.head[self.filled..self.filled + n].copy_from_slice(&bytes[..n]);
            self.filled += n;
            bytes = &bytes[n..];
            if self.filled == self.head.len() {
                let h = self.head;
                self.filled = 0;
                self.skip = u32::from_be_bytes([0, h[0], h[1], h[2]]) as usize;
                let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
                on_frame(h[3], h[4], stream);
            }
        }
    }

    fn between_frames(&self) -> bool {
        self.skip == 0 && self.filled == 0
    }
}

/// What the policy has seen of the client's pings.
#[derive(Debug)]
struct Strikes {
    min_time: Duration,
    last_ping: Option<Instant>,
    strikes: u8,
    /// The server sent HEADERS or DATA since the last ping.
    reset: bool,
}

impl Strikes {
    /// Counts a ping from the client; true when it is one too many.
    fn ping(&mut self, now: Instant) -> bool {
        let last = self.last_ping.replace(now);
        if std::mem::take(&mut self.reset) {
            self.strikes = 0;
            return false;
        }
        if last.is_some_and(|at| now.duration_since(at) < self.min_time) {
            self.strikes += 1;
        }
        self.strikes > MAX_STRIKES
    }
}

/// An HTTP/2 server connection that enforces a minimum time between the client's pings.
pub(super) struct PingPolicy<I> {
    io: I,
    incoming: Frames,
    outgoing: Frames,
    strikes: Strikes,
    /// The highest stream the client opened, for the GOAWAY.
    last_stream: u32,
    /// Set once the client struck out: the GOAWAY bytes still to write.
    closing: Option<Vec<u8>>,
}

impl<I> PingPolicy<I> {
    /// Watches `io`, whose first bytes read are the client's 24-byte preface.
    pub(super) fn new(io: I, min_time: Duration) -> PingPolicy<I> {
        PingPolicy {
            io,
            incoming: Frames {
                skip: 24,
                ..Frames::default()
            },
            outgoing: Frames::default(),
            strikes: Strikes {
                min_time,
                last_ping: None,
                strikes: 0,
                reset: false,
            },
            last_stream: 0,
            closing: None,
        }
    }

    fn goaway(&self) -> Vec<u8> {
        let len = (8 + TOO_MANY_PINGS.len()) as u32;
        let mut frame = len.to_be_bytes()[1..].to_vec();
        frame.extend_from_slice(&[GOAWAY, 0, 0, 0, 0, 0]);
        frame.extend_from_slice(&self.last_stream.to_be_bytes());
        frame.extend_from_slice(&ENHANCE_YOUR_CALM.to_be_bytes());
        frame.extend_from_slice(TOO_MANY_PINGS);
        frame
    }

    /// Notes the frames among `written` bytes the server sent.
    fn sent(&mut self, written: &[u8]) {
        let strikes = &mut self.strikes;
        self.outgoing.follow(written, |kind, _, _| {
            if kind == DATA || kind == HEADERS {
                strikes.reset = true;
            }
        });
    }
}

fn too_many_pings() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "too many pings from the client",
    )
}

impl<I: AsyncRead + AsyncWrite + Unpin> PingPolicy<I> {
    /// Writes what is left of the GOAWAY and flushes it.
    fn poll_goaway(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some(rest) = self.closing.as_mut().filter(|r| !r.is_empty()) {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, rest))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            rest.drain(..n);
        }
        Pin::new(&mut self.io).poll_flush(cx)
    }
}

impl<I: AsyncRead + AsyncWrite + Unpin> AsyncRead for PingPolicy<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.closing.is_some() {
            ready!(this.poll_goaway(cx))?;
            return Poll::Ready(Err(too_many_pings()));
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.io).poll_read(cx, buf))?;
        let (strikes, last_stream) = (&mut this.strikes, &mut this.last_stream);
        let mut out = false;
        this.incoming
            .follow(&buf.filled()[before..], |kind, flags, stream| match kind {
                // The clock is read for pings only, not on every read of the hot path.
                PING if flags & ACK == 0 => out |= strikes.ping(Instant::now()),
                HEADERS => *last_stream = (*last_stream).max(stream),
                _ => {}
            });
        if !out {
            return Poll::Ready(Ok(()));
        }
        tracing::debug!("closing a connection that pings too often");
        if !this.outgoing.between_frames() {
            return Poll::Ready(Err(too_many_pings()));
        }
        this.closing = Some(this.goaway());
        ready!(this.poll_goaway(cx))?;
        Poll::Ready(Err(too_many_pings()))
    }
}

impl<I: AsyncRead + AsyncWrite + Unpin> AsyncWrite for PingPolicy<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.closing.is_some() {
            return Poll::Ready(Err(too_many_pings()));
        }
        let n = ready!(Pin::new(&mut this.io).poll_write(cx, buf))?;
        this.sent(&buf[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.closing.is_some() {
            return Poll::Ready(Err(too_many_pings()));
        }
        let n = ready!(Pin::new(&mut this.io).poll_write_vectored(cx, bufs))?;
        let mut left = n;
        for b in bufs {
            if left == 0 {
                break;
            }
            let take = left.min(b.len());
            this.sent(&b[..take]);
            left -= take;
        }
        Poll::Ready(Ok(n))
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

    #[test]
    fn frame_headers_are_found_across_any_split() {
        // A SETTINGS frame of 6 bytes, then a PING of 8, then a HEADERS of 3 on stream 5.
        let mut bytes = vec![0, 0, 6, 4, 0, 0, 0, 0, 0];
        bytes.extend_from_slice(&[9; 6]);
        bytes.extend_from_slice(&[0, 0, 8, PING, 0, 0, 0, 0, 0]);
        bytes.extend_from_slice(&[6; 8]);
        bytes.extend_from_slice(&[0, 0, 3, HEADERS, 4, 0, 0, 0, 5]);
        bytes.extend_from_slice(&[1, 2, 3]);
        for split in 1..bytes.len() {
            let mut frames = Frames::default();
            let mut seen = Vec::new();
            for chunk in bytes.chunks(split) {
                frames.follow(chunk, |k, f, s| seen.push((k, f, s)));
            }
            assert_eq!(
                seen,
                [(4, 0, 0), (PING, 0, 0), (HEADERS, 4, 5)],
                "split {split}"
            );
            assert!(frames.between_frames());
        }
    }

    #[test]
    fn the_third_early_ping_strikes_out_unless_data_came_between() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut s = Strikes {
            min_time: Duration::from_secs(5),
            last_ping: None,
            strikes: 0,
            reset: false,
        };
        // The first ping is free; then three early ones.
        assert!(!s.ping(ms(0)));
        assert!(!s.ping(ms(10)));
        assert!(!s.ping(ms(20)));
        assert!(s.ping(ms(30)));
        // Data sent before each ping clears the strikes.
        let mut s = Strikes {
            strikes: 0,
            last_ping: None,
            ..s
        };
        for i in 0..10 {
            s.reset = true;
            assert!(!s.ping(ms(i)));
        }
        // Pings at the minimum's pace never strike.
        let mut s = Strikes {
            strikes: 0,
            last_ping: None,
            ..s
        };
        for i in 0..10 {
            assert!(!s.ping(t0 + Duration::from_secs(5 * i)));
        }
    }
}
