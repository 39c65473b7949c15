//! The Raft message stream from one member to another: a plain TCP connection to the
//! peer URL, which also serves the members' gRPC (snapshots, leases, the member list). The
//! first byte of a connection tells which it is: a stream opens with [`MAGIC`], HTTP/2
//! with its preface ("PRI * HTTP/2.0...").
//!
//! ```text
//! sender   -> "cairn-raft/1" cluster_id from to          (u64 big-endian each)
//! receiver <- "+"                                         (taken), or
//!             "-" len message                             (refused: u32 length, UTF-8)
//! sender   -> len message, len message, ...               (u32 length, eraftpb.Message;
//!                                                          a length of 0 is a probe)
//! receiver <- ".", ".", ...                               (one every ALIVE_INTERVAL)
//! ```
//!
//! Both ends send something every second whatever else they send: the sender a probe,
//! the receiver an alive byte. So each can tell a peer that is paused or cut off (the
//! socket stays open and silent) from one that merely has nothing to say.
//!
//! The sending end of a stream is a [`Link`]. The Raft thread encodes its messages into
//! the link's outbox and writes them to the socket itself, without waking any task;
//! [`run_link`], the link's task, connects, keeps the stream alive, and writes whatever
//! the socket did not take at once. The receiving end is [`receive`], a task that steps
//! each read's messages into Raft together.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use cairn_raft::{PeerMessage, RaftHandle};
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;

use crate::cluster::gate::{PeerGate, PeerPath};

/// What a Raft stream opens with.
pub(crate) const MAGIC: &[u8; 12] = b"cairn-raft/1";
/// The opening: [`MAGIC`], then the cluster, the sender and the addressee.
const HELLO_LEN: usize = MAGIC.len() + 24;
/// The receiver took the stream.
const TAKEN: u8 = b'+';
/// The receiver refused the stream; the reason follows.
const REFUSED: u8 = b'-';
/// What the receiver sends every [`ALIVE_INTERVAL`].
const ALIVE: u8 = b'.';

/// How often each end sends something even when it has nothing to say.
const ALIVE_INTERVAL: Duration = Duration::from_secs(1);
/// A sender that hears nothing from its receiver for this long takes the peer for paused
/// or cut off and reconnects: Raft hears within about 3 s that the peer is unreachable. (A
/// killed peer at once: its socket closes.) Not shorter: a member starved of CPU for a
/// moment must not be taken for gone.
const SENDER_SILENCE: Duration = Duration::from_secs(3);
/// A receiver that gets nothing for this long (not even a probe) ends the stream: its
/// sender is gone without closing it (a cut-off network).
const RECEIVER_SILENCE: Duration = Duration::from_secs(10);
/// Longest wait for a peer to connect and take a stream, or for an accepted connection to
/// say what it is.
pub(crate) const OPEN_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause after a failed stream before trying the peer again.
const RETRY_PAUSE: Duration = Duration::from_millis(50);
/// Bytes queued for a peer whose socket takes no more; messages that come meanwhile are
/// dropped, and Raft resends what matters. (At least one message is always queued, however
/// large.)
const OUTBOX_MAX: usize = 64 << 20;
/// Room a receiver's read buffer grows by at least while a frame is incomplete.
const READ_MIN: usize = 64 << 10;
/// An outbox emptied with more capacity than this gives it back.
const OUTBOX_KEEP: usize = 1 << 20;

/// Why a raft stream could not be opened, or ended.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StreamError {
    #[error("not a raft stream")]
    NotARaftStream,
    #[error("no peer URL")]
    NoUrl,
    #[error("bad peer URL {0}")]
    BadUrl(String),
    #[error("timed out opening a raft stream to {0}")]
    OpenTimedOut(String),
    #[error("dial tcp {addr}: {source}")]
    Dial { addr: String, source: io::Error },
    #[error("https peer URL {0} but this member has no peer TLS")]
    NoPeerTls(String),
    #[error("tls handshake with {addr}: {source}")]
    Tls { addr: String, source: io::Error },
    #[error("raft stream to {addr}: {source}")]
    Opening { addr: String, source: io::Error },
    #[error("raft stream to {addr}: unexpected answer byte {byte:#x}")]
    UnexpectedAnswer { addr: String, byte: u8 },
    /// The receiver refused the stream, with its reason.
    #[error("{0}")]
    Refused(String),
    #[error("raft message of {len} bytes exceeds the limit of {limit}")]
    TooLarge { len: usize, limit: usize },
    #[error(transparent)]
    Wire(#[from] cairn_raft::WireError),
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("the peer closed the stream")]
    Closed,
    #[error("the peer stopped answering")]
    PeerSilent,
    #[error("no raft message for too long")]
    SenderSilent,
    #[error("raft: {0}")]
    Raft(#[from] cairn_raft::RaftError),
    #[error("a {kind} from {sender:x} to {recipient:x} on a raft stream not between them")]
    Forged {
        kind: &'static str,
        sender: u64,
        recipient: u64,
    },
}

/// Who a stream is from and for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Hello {
    pub cluster_id: u64,
    pub from: u64,
    pub to: u64,
}

impl Hello {
    fn encode(&self) -> [u8; HELLO_LEN] {
        let mut out = [0; HELLO_LEN];
        out[..MAGIC.len()].copy_from_slice(MAGIC);
        for (i, v) in [self.cluster_id, self.from, self.to]
            .into_iter()
            .enumerate()
        {
            let at = MAGIC.len() + 8 * i;
            out[at..at + 8].copy_from_slice(&v.to_be_bytes());
        }
        out
    }

    fn decode(b: &[u8; HELLO_LEN]) -> Result<Hello, StreamError> {
        if &b[..MAGIC.len()] != MAGIC {
            return Err(StreamError::NotARaftStream);
        }
        let word = |i: usize| {
            let at = MAGIC.len() + 8 * i;
            let mut w = [0; 8];
            w.copy_from_slice(&b[at..at + 8]);
            u64::from_be_bytes(w)
        };
        Ok(Hello {
            cluster_id: word(0),
            from: word(1),
            to: word(2),
        })
    }
}

/// Appends `m` to `out` as a frame.
fn push_frame(out: &mut Vec<u8>, m: &PeerMessage) {
    let len = m.encoded_len() as u32;
    out.extend_from_slice(&len.to_be_bytes());
    let start = out.len();
    if m.encode_to(out).is_err() {
        // Cannot happen for a message raft-rs made; send nothing rather than half of it.
        out.truncate(start - 4);
    }
}

/// Takes the whole frames at the front of `buf` and decodes their messages (probes carry
/// none).
fn take_frames(
    buf: &mut BytesMut,
    limit: usize,
    out: &mut Vec<PeerMessage>,
) -> Result<(), StreamError> {
    while buf.len() >= 4 {
        let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        if len > limit {
            return Err(StreamError::TooLarge { len, limit });
        }
        if buf.len() < 4 + len {
            // Room for what the length announces, but never more than doubling what has
            // arrived: memory follows the bytes received, not what a frame claims.
            let missing = 4 + len - buf.len();
            buf.reserve(missing.min(buf.len().max(READ_MIN)));
            break;
        }
        buf.advance(4);
        let frame = buf.split_to(len);
        if len > 0 {
            out.push(PeerMessage::decode(&frame)?);
        }
    }
    Ok(())
}

/// Writes what the socket takes of `outbox` without waiting, and removes it from the
/// outbox; true once the outbox is empty.
fn write_some(stream: &TcpStream, outbox: &mut Vec<u8>) -> io::Result<bool> {
    let mut written = 0;
    let result = loop {
        if written == outbox.len() {
            break Ok(true);
        }
        match stream.try_write(&outbox[written..]) {
            Ok(0) => break Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(false),
            Err(e) => break Err(e),
        }
    };
    outbox.drain(..written);
    if outbox.is_empty() && outbox.capacity() > OUTBOX_KEEP {
        *outbox = Vec::new();
    }
    result
}

/// The sending end of the stream to one peer. Shared by the Raft thread, which queues and
/// writes messages, and the link's task ([`run_link`]).
pub(crate) struct Link {
    state: Mutex<LinkState>,
    /// Wakes the task: the outbox needs flushing, or the link was closed.
    wake: Notify,
    /// Bytes queued for the peer (etcd's `etcd_network_peer_sent_bytes_total`); shared by
    /// the links the peer has had.
    sent: Arc<std::sync::atomic::AtomicU64>,
}

#[derive(Default)]
struct LinkState {
    /// The stream, from when the peer took it until it breaks.
    stream: Option<Arc<TcpStream>>,
    /// Set in the pause after a broken stream: messages are dropped, not queued.
    down: bool,
    /// Frames the socket has not taken yet. While a stream is being opened, they wait here
    /// for it.
    outbox: Vec<u8>,
    /// The task is writing the outbox as the socket takes it; the Raft thread only appends.
    flushing: bool,
    /// The peer was removed or its URLs changed: the task ends.
    closed: bool,
    /// The stream is TLS: only the task writes to it; the Raft thread queues and wakes it.
    task_writes: bool,
}

impl Link {
    pub(crate) fn new(sent: Arc<std::sync::atomic::AtomicU64>) -> Arc<Link> {
        Arc::new(Link {
            state: Mutex::new(LinkState::default()),
            wake: Notify::new(),
            sent,
        })
    }

    /// Queues `msgs` and writes what the socket takes now. Never blocks: called on the
    /// Raft thread.
    pub(crate) fn send<'a>(&self, msgs: impl IntoIterator<Item = &'a PeerMessage>) {
        let mut s = self.state.lock();
        if s.down || s.closed {
            return;
        }
        let queued = s.outbox.len();
        for m in msgs {
            if s.outbox.len() >= OUTBOX_MAX {
                break;
            }
            push_frame(&mut s.outbox, m);
        }
        self.sent.fetch_add(
            (s.outbox.len() - queued) as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        if s.flushing {
            return;
        }
        let Some(stream) = s.stream.clone() else {
            if s.task_writes && !s.outbox.is_empty() {
                s.flushing = true;
                drop(s);
                self.wake.notify_one();
            }
            return;
        };
        // An error is the task's to see and report, when it next reads or writes.
        if !matches!(write_some(&stream, &mut s.outbox), Ok(true)) {
            s.flushing = true;
            drop(s);
            self.wake.notify_one();
        }
    }

    /// The bytes queued for the peer so far.
    pub(crate) fn sent_bytes(&self) -> u64 {
        self.sent.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The counter of bytes queued for the peer, for the link that replaces this one.
    pub(crate) fn sent_counter(&self) -> Arc<std::sync::atomic::AtomicU64> {
        self.sent.clone()
    }

    /// Ends the link's task and closes its stream.
    pub(crate) fn close(&self) {
        self.state.lock().closed = true;
        self.wake.notify_one();
    }

    /// Forgets the stream and what was queued for it; until [`Self::reopening`], messages
    /// are dropped.
    fn broken(&self) {
        let mut s = self.state.lock();
        s.stream = None;
        s.outbox = Vec::new();
        s.flushing = false;
        s.task_writes = false;
        s.down = true;
    }

    /// Queues messages again, for the stream about to be opened.
    fn reopening(&self) {
        self.state.lock().down = false;
    }
}

/// What the task of a [`Link`] reports to.
pub(crate) trait LinkEvents: Send + Sync + 'static {
    /// The peer took a stream.
    fn up(&self);
    /// A stream to the peer broke or could not be opened, for `why`.
    fn down(&self, why: &StreamError);
}

/// The task of `link`: opens a stream to the first of `urls` that takes it, keeps it
/// alive and flushes the outbox into it; after a failure, pauses and opens another. Ends
/// when the link is closed.
pub(crate) async fn run_link(
    link: Arc<Link>,
    hello: Hello,
    urls: Arc<[String]>,
    events: impl LinkEvents,
) {
    loop {
        let carried = match open(&urls, hello).await {
            Ok(Opened::Tls(stream)) => {
                {
                    let mut s = link.state.lock();
                    if s.closed {
                        return;
                    }
                    s.task_writes = true;
                    s.flushing = !s.outbox.is_empty();
                }
                events.up();
                carry_tls(&link, *stream).await
            }
            Ok(Opened::Plain(stream)) => {
                let stream = Arc::new(stream);
                {
                    let mut s = link.state.lock();
                    if s.closed {
                        // Closed while it opened: the peer is gone or has a new link.
                        return;
                    }
                    s.stream = Some(stream.clone());
                    s.flushing = !s.outbox.is_empty();
                }
                events.up();
                carry(&link, &stream).await
            }
            Err(e) => Err(e),
        };
        link.broken();
        match carried {
            Ok(()) => return,
            Err(why) => {
                if link.state.lock().closed {
                    return;
                }
                events.down(&why);
            }
        }
        tokio::time::sleep(RETRY_PAUSE).await;
        if link.state.lock().closed {
            return;
        }
        link.reopening();
    }
}

/// An opened stream: plain TCP for http peer URLs, TLS for https ones.
enum Opened {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// Connects to the first of `urls` that answers and has it take a stream.
async fn open(urls: &[String], hello: Hello) -> Result<Opened, StreamError> {
    let mut last = StreamError::NoUrl;
    for url in urls {
        let Some(addr) = crate::config::host_port(url) else {
            last = StreamError::BadUrl(url.clone());
            continue;
        };
        let tls = url.starts_with("https://");
        match tokio::time::timeout(OPEN_TIMEOUT, open_one(addr, tls, hello)).await {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(e)) => last = e,
            Err(_) => last = StreamError::OpenTimedOut(addr.to_string()),
        }
    }
    Err(last)
}

async fn open_one(addr: &str, tls: bool, hello: Hello) -> Result<Opened, StreamError> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|source| StreamError::Dial {
            addr: addr.to_string(),
            source,
        })?;
    let _ = tcp.set_nodelay(true);
    if !tls {
        let mut tcp = tcp;
        ask(&mut tcp, addr, hello).await?;
        return Ok(Opened::Plain(tcp));
    }
    let dial = crate::tls::peer_dial().ok_or_else(|| StreamError::NoPeerTls(addr.to_string()))?;
    let mut stream = dial
        .connect(addr, tcp)
        .await
        .map_err(|source| StreamError::Tls {
            addr: addr.to_string(),
            source,
        })?;
    ask(&mut stream, addr, hello).await?;
    Ok(Opened::Tls(Box::new(stream)))
}

/// Sends the opening on a connection and reads whether the peer takes the stream.
async fn ask<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    addr: &str,
    hello: Hello,
) -> Result<(), StreamError> {
    let failed = |source: io::Error| StreamError::Opening {
        addr: addr.to_string(),
        source,
    };
    stream.write_all(&hello.encode()).await.map_err(failed)?;
    stream.flush().await.map_err(failed)?;
    match stream.read_u8().await.map_err(failed)? {
        TAKEN => Ok(()),
        REFUSED => {
            let len = stream.read_u32().await.map_err(failed)?;
            let mut why = vec![0; len.min(4096) as usize];
            stream.read_exact(&mut why).await.map_err(failed)?;
            Err(StreamError::Refused(
                String::from_utf8_lossy(&why).into_owned(),
            ))
        }
        byte => Err(StreamError::UnexpectedAnswer {
            addr: addr.to_string(),
            byte,
        }),
    }
}

/// [`carry`] on a TLS stream: the task writes the outbox (the Raft thread only queues and
/// wakes it), and reads the receiver's alive bytes in between.
async fn carry_tls<S: AsyncRead + AsyncWrite + Unpin>(
    link: &Link,
    mut stream: S,
) -> Result<(), StreamError> {
    let mut heard = Instant::now();
    let mut probe = tokio::time::interval(ALIVE_INTERVAL);
    let mut scratch = [0u8; 256];
    loop {
        let out = {
            let mut s = link.state.lock();
            if s.closed {
                return Ok(());
            }
            s.flushing = false;
            std::mem::take(&mut s.outbox)
        };
        if !out.is_empty() {
            stream.write_all(&out).await?;
            stream.flush().await?;
            continue;
        }
        tokio::select! {
            biased;
            read = stream.read(&mut scratch) => {
                if read? == 0 {
                    return Err(StreamError::Closed);
                }
                heard = Instant::now();
            }
            _ = link.wake.notified() => {}
            _ = tokio::time::sleep_until((heard + SENDER_SILENCE).into()) => {
                return Err(StreamError::PeerSilent);
            }
            _ = probe.tick() => {
                link.state.lock().outbox.extend_from_slice(&0u32.to_be_bytes());
            }
        }
    }
}

/// Carries the link's outbox on `stream` until the stream breaks (an error) or the link is
/// closed.
async fn carry(link: &Link, stream: &TcpStream) -> Result<(), StreamError> {
    let mut heard = Instant::now();
    let mut probe = tokio::time::interval(ALIVE_INTERVAL);
    let mut scratch = [0u8; 256];
    loop {
        let flushing = {
            let s = link.state.lock();
            if s.closed {
                return Ok(());
            }
            s.flushing
        };
        // Biased, the socket first: a member that was itself paused wakes with its peer's
        // alive bytes waiting and its silence deadline long past; they must count first.
        tokio::select! {
            biased;
            ready = stream.readable() => {
                ready?;
                match stream.try_read(&mut scratch) {
                    Ok(0) => return Err(StreamError::Closed),
                    Ok(_) => heard = Instant::now(),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e.into()),
                }
            }
            ready = stream.writable(), if flushing => {
                ready?;
                let mut s = link.state.lock();
                if write_some(stream, &mut s.outbox)? {
                    s.flushing = false;
                }
            }
            _ = link.wake.notified() => {}
            _ = tokio::time::sleep_until((heard + SENDER_SILENCE).into()) => {
                match stream.try_read(&mut scratch) {
                    Ok(n) if n > 0 => heard = Instant::now(),
                    _ => return Err(StreamError::PeerSilent),
                }
            }
            _ = probe.tick() => {
                let mut s = link.state.lock();
                s.outbox.extend_from_slice(&0u32.to_be_bytes());
                s.flushing = true;
            }
        }
    }
}

/// What the receiving end of streams checks and steps messages into.
#[derive(Clone)]
pub(crate) struct Receiver {
    pub raft: RaftHandle,
    /// Who may open a stream: another current member of this cluster.
    pub gate: PeerGate,
    /// Largest message taken, in bytes.
    pub message_limit: usize,
    /// etcd's `etcd_network_peer_received_bytes_total`, by `From`.
    pub received: prometheus::IntCounterVec,
}

/// Serves a raft stream on `tcp`, an accepted connection whose first byte is
/// [`MAGIC`]'s: checks who it is from and for, then steps its messages into Raft until
/// it ends.
pub(crate) async fn receive(mut tcp: TcpStream, r: Receiver) {
    let Some(from) = take_opening(&mut tcp, &[], &r).await else {
        return;
    };
    report(&r, from, receive_messages(tcp, from, &r).await);
}

/// [`receive`] on a TLS connection, whose first byte, [`MAGIC`]'s, was already read.
pub(crate) async fn receive_tls<S>(mut stream: S, first: u8, r: Receiver)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Some(from) = take_opening(&mut stream, &[first], &r).await else {
        return;
    };
    report(&r, from, receive_messages_io(stream, from, &r).await);
}

/// Reads a stream's opening (after `read`, its first bytes already read) and answers it:
/// the sender, when the stream is taken.
async fn take_opening<S>(io: &mut S, read: &[u8], r: &Receiver) -> Option<u64>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut opening = [0; HELLO_LEN];
    let done = read.len().min(HELLO_LEN);
    opening[..done].copy_from_slice(&read[..done]);
    let Ok(Ok(_)) = tokio::time::timeout(OPEN_TIMEOUT, io.read_exact(&mut opening[done..])).await
    else {
        return None;
    };
    let hello = match Hello::decode(&opening) {
        Ok(h) => h,
        Err(why) => {
            r.gate.refuse(PeerPath::Stream, 0, &why);
            refuse(io, &why.to_string()).await;
            return None;
        }
    };
    if let Err(why) = r.gate.admit(hello.cluster_id, hello.from, hello.to) {
        r.gate.refuse(PeerPath::Stream, hello.from, &why);
        refuse(io, &why.to_string()).await;
        return None;
    }
    if r.raft.is_stopped() {
        // Refused, so a member on its way out does not count as active for a moment each
        // time its peers reconnect.
        refuse(io, "raft: stopped").await;
        return None;
    }
    if io.write_all(&[TAKEN]).await.is_err() || io.flush().await.is_err() {
        return None;
    }
    Some(hello.from)
}

/// Logs how a taken stream from `from` ended.
fn report(r: &Receiver, from: u64, ended: Result<(), StreamError>) {
    match ended {
        Ok(()) => {}
        // What no correct member sends: worth an operator's look.
        Err(
            why
            @ (StreamError::Forged { .. } | StreamError::TooLarge { .. } | StreamError::Wire(_)),
        ) => {
            r.gate.refuse(PeerPath::Stream, from, &why);
        }
        Err(why) => {
            tracing::debug!(remote_peer_id = %format!("{:x}", from), error = %why, "raft stream from peer ended");
        }
    }
}

/// Whether `m` may come on a stream from member `from` to the gate's member: a message
/// between the two, or a request raft-rs forwards with its first sender's name (a proposal,
/// a read or a leadership transfer that reached `from` when it did not lead) from a current
/// member. (One named after this member is the Raft thread's to drop; a stranger cannot
/// close a member's stream to its leader by sending it one.) Never a snapshot.
fn fits_stream(m: &PeerMessage, from: u64, gate: &PeerGate) -> bool {
    let sender_fits =
        m.sender() == from || (m.is_forwarded_request() && gate.members.contains(m.sender()));
    sender_fits && m.recipient() == gate.member_id && !m.is_snapshot()
}

async fn refuse<S: AsyncWrite + Unpin>(io: &mut S, why: &str) {
    let mut answer = vec![REFUSED];
    answer.extend_from_slice(&(why.len() as u32).to_be_bytes());
    answer.extend_from_slice(why.as_bytes());
    let _ = io.write_all(&answer).await;
    let _ = io.flush().await;
}

/// Steps the whole frames in `buf` into Raft, `msgs` being the reusable list they are
/// decoded into.
fn step_frames(
    buf: &mut BytesMut,
    msgs: &mut Vec<PeerMessage>,
    from: u64,
    r: &Receiver,
) -> Result<(), StreamError> {
    take_frames(buf, r.message_limit, msgs)?;
    if let Some(m) = msgs.iter().find(|m| !fits_stream(m, from, &r.gate)) {
        // Snapshots travel on their own connection; anything else names the stream's two
        // ends (or, forwarded, another member and this one). The stream is closed, with
        // everything it brought.
        return Err(StreamError::Forged {
            kind: m.kind(),
            sender: m.sender(),
            recipient: m.recipient(),
        });
    }
    if !msgs.is_empty() {
        r.raft.step_many(std::mem::take(msgs))?;
    }
    Ok(())
}

/// Steps the messages arriving on `tcp` into Raft, and answers with an alive byte every
/// [`ALIVE_INTERVAL`], until the stream ends (`Ok`) or breaks.
async fn receive_messages(tcp: TcpStream, from: u64, r: &Receiver) -> Result<(), StreamError> {
    let received = r.received.with_label_values(&[&format!("{from:x}")]);
    let (mut rd, wr) = tcp.into_split();
    let mut buf = BytesMut::with_capacity(64 << 10);
    let mut msgs = Vec::new();
    let mut heard = Instant::now();
    let mut alive = tokio::time::interval(ALIVE_INTERVAL);
    loop {
        // Biased, the socket first, for the reason `carry` gives.
        tokio::select! {
            biased;
            read = rd.read_buf(&mut buf) => {
                let n = read?;
                if n == 0 {
                    return Ok(());
                }
                received.inc_by(n as u64);
                heard = Instant::now();
                step_frames(&mut buf, &mut msgs, from, r)?;
            }
            _ = alive.tick() => {
                // A sender that reads nothing has a full socket, and will time out.
                match wr.try_write(&[ALIVE]) {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e.into()),
                }
            }
            _ = tokio::time::sleep_until((heard + RECEIVER_SILENCE).into()) => {
                return Err(StreamError::SenderSilent);
            }
        }
    }
}

/// [`receive_messages`] on a TLS stream: the alive bytes are written by this task, so a
/// sender that stops reading holds it until the sender's own silence check gives up.
async fn receive_messages_io<S>(mut io: S, from: u64, r: &Receiver) -> Result<(), StreamError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let received = r.received.with_label_values(&[&format!("{from:x}")]);
    let mut buf = BytesMut::with_capacity(64 << 10);
    let mut msgs = Vec::new();
    let mut heard = Instant::now();
    let mut alive = tokio::time::interval(ALIVE_INTERVAL);
    loop {
        tokio::select! {
            biased;
            read = io.read_buf(&mut buf) => {
                let n = read?;
                if n == 0 {
                    return Ok(());
                }
                received.inc_by(n as u64);
                heard = Instant::now();
                step_frames(&mut buf, &mut msgs, from, r)?;
            }
            _ = alive.tick() => {
                io.write_all(&[ALIVE]).await?;
                io.flush().await?;
            }
            _ = tokio::time::sleep_until((heard + RECEIVER_SILENCE).into()) => {
                return Err(StreamError::SenderSilent);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use cairn_raft::testing::eraftpb::{Entry, Message, MessageType};

    fn message(index: u64, data: usize) -> PeerMessage {
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgAppend);
        m.to = 2;
        m.from = 1;
        m.index = index;
        m.mut_entries().push(Entry {
            data: vec![7u8; data].into(),
            ..Default::default()
        });
        m.into()
    }

    #[test]
    fn hello_round_trips_and_rejects_other_protocols() {
        let h = Hello {
            cluster_id: 0xdead_beef_0102_0304,
            from: 1,
            to: u64::MAX,
        };
        assert_eq!(Hello::decode(&h.encode()).ok(), Some(h));
        let mut http2 = [0u8; HELLO_LEN];
        http2[..MAGIC.len()].copy_from_slice(b"PRI * HTTP/2");
        assert!(matches!(
            Hello::decode(&http2),
            Err(StreamError::NotARaftStream)
        ));
        // The first byte alone tells a stream from HTTP/2.
        assert_ne!(MAGIC[0], b'P');
    }

    #[test]
    fn frames_split_anywhere_come_out_whole_and_in_order() {
        let sent = [message(1, 0), message(2, 300), message(3, 70_000)];
        let mut wire = Vec::new();
        for m in &sent {
            push_frame(&mut wire, m);
        }
        wire.extend_from_slice(&0u32.to_be_bytes()); // a probe
        push_frame(&mut wire, &sent[0]);
        for cut in [1, 3, 4, 5, 100, 70_000, wire.len() - 1] {
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            buf.extend_from_slice(&wire[..cut]);
            take_frames(&mut buf, 1 << 20, &mut got).unwrap();
            buf.extend_from_slice(&wire[cut..]);
            take_frames(&mut buf, 1 << 20, &mut got).unwrap();
            assert!(buf.is_empty(), "cut at {cut}");
            let want = [&sent[0], &sent[1], &sent[2], &sent[0]];
            assert!(got.iter().eq(want), "cut at {cut}");
        }
    }

    /// A Raft message with random fields of every kind raft-rs sends.
    fn random_message(rng: &mut rand::rngs::StdRng) -> PeerMessage {
        use cairn_raft::testing::eraftpb::EntryType;
        use rand::{Rng, RngCore};
        let bytes = |rng: &mut rand::rngs::StdRng, max: usize| {
            let mut b = vec![0u8; rng.random_range(0..=max)];
            rng.fill_bytes(&mut b);
            b
        };
        let mut m = Message::default();
        m.set_msg_type(
            cairn_raft::testing::ALL_MESSAGE_TYPES
                [rng.random_range(0..cairn_raft::testing::ALL_MESSAGE_TYPES.len())],
        );
        (m.from, m.to, m.term) = (rng.random(), rng.random(), rng.random());
        (m.log_term, m.index, m.commit) = (rng.random(), rng.random(), rng.random());
        (m.reject, m.reject_hint) = (rng.random(), rng.random());
        m.context = bytes(rng, 16).into();
        for _ in 0..rng.random_range(0..4) {
            let mut e = Entry {
                index: rng.random(),
                term: rng.random(),
                data: bytes(rng, 300).into(),
                context: bytes(rng, 8).into(),
                ..Default::default()
            };
            if rng.random_bool(0.2) {
                e.set_entry_type(EntryType::EntryConfChangeV2);
            }
            m.mut_entries().push(e);
        }
        if m.get_msg_type() == MessageType::MsgSnapshot {
            let snap = m.mut_snapshot();
            snap.data = bytes(rng, 2000).into();
            let meta = snap.mut_metadata();
            (meta.index, meta.term) = (rng.random(), rng.random());
            meta.mut_conf_state().voters =
                (0..rng.random_range(0..5)).map(|_| rng.random()).collect();
        }
        m.into()
    }

    #[test]
    fn frames_of_random_messages_round_trip_and_no_bytes_make_the_decoder_panic() {
        // Property test, seeded and bounded in count and time: valid frames split at random
        // points come out whole; random bytes, and valid frames with bytes flipped, cut or
        // inserted, give messages or an error, never a panic; and whatever decodes, encoded
        // again, decodes to itself.
        use rand::{Rng, RngCore, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x0010_f4a3);
        let until = Instant::now() + Duration::from_secs(2);
        for round in 0..20_000 {
            if round >= 200 && Instant::now() > until {
                break;
            }
            let sent: Vec<PeerMessage> = (0..rng.random_range(1..5))
                .map(|_| random_message(&mut rng))
                .collect();
            let mut wire = Vec::new();
            for m in &sent {
                push_frame(&mut wire, m);
            }
            let cut = rng.random_range(0..=wire.len());
            let (mut buf, mut got) = (BytesMut::from(&wire[..cut]), Vec::new());
            take_frames(&mut buf, 1 << 20, &mut got).unwrap();
            buf.extend_from_slice(&wire[cut..]);
            take_frames(&mut buf, 1 << 20, &mut got).unwrap();
            assert_eq!(got, sent, "round {round}");
            assert!(buf.is_empty());

            let mut bad = if rng.random_bool(0.5) {
                let mut b = vec![0u8; rng.random_range(0..3000)];
                rng.fill_bytes(&mut b);
                b
            } else {
                wire
            };
            for _ in 0..rng.random_range(1..8) {
                if bad.is_empty() {
                    break;
                }
                let at = rng.random_range(0..bad.len());
                match rng.random_range(0..3) {
                    0 => bad[at] ^= 1 << rng.random_range(0..8),
                    1 => bad.truncate(at),
                    _ => bad.insert(at, rng.random()),
                }
            }
            let (mut buf, mut got) = (BytesMut::from(&bad[..]), Vec::new());
            let _ = take_frames(&mut buf, 1 << 20, &mut got);
            for m in got {
                let again = PeerMessage::decode(&m.encode().unwrap()).unwrap();
                assert_eq!(again, m, "round {round}");
            }
        }
    }

    #[test]
    fn a_frame_over_the_limit_is_refused() {
        let mut wire = Vec::new();
        push_frame(&mut wire, &message(1, 2000));
        let mut buf = BytesMut::from(&wire[..8]);
        let err = take_frames(&mut buf, 1000, &mut Vec::new()).unwrap_err();
        assert!(
            err.to_string().contains("exceeds the limit of 1000"),
            "{err}"
        );
    }

    /// A single-voter Raft (member 7, whose peers' table also lists member 8) and a raft
    /// stream receiver for it on a loopback port.
    async fn receiver() -> (tempfile::TempDir, RaftHandle, std::net::SocketAddr) {
        let dir = tempfile::tempdir().unwrap();
        let cfg = cairn_raft::RaftConfig {
            id: 7,
            voters: vec![7],
            dir: dir.path().to_path_buf(),
            ..Default::default()
        };
        struct Nothing;
        impl cairn_raft::Applier for Nothing {
            fn apply(
                &mut self,
                _: Vec<cairn_raft::Committed>,
            ) -> Result<(), cairn_raft::ApplyError> {
                Ok(())
            }
        }
        let raft = cairn_raft::start(cfg, Nothing, cairn_raft::NoPeers).unwrap();
        let r = Receiver {
            raft: raft.clone(),
            gate: crate::cluster::gate::tests::gate(),
            message_limit: 1 << 20,
            received: prometheus::IntCounterVec::new(
                prometheus::Opts::new("received", "received"),
                &["From"],
            )
            .unwrap(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                tokio::spawn(receive(tcp, r.clone()));
            }
        });
        (dir, raft, addr)
    }

    /// Opens a stream to `addr` as `from`; returns it and the receiver's first answer byte.
    async fn open_as(addr: std::net::SocketAddr, from: u64) -> (TcpStream, u8) {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let hello = Hello {
            cluster_id: 1,
            from,
            to: 7,
        };
        tcp.write_all(&hello.encode()).await.unwrap();
        let answer = tcp.read_u8().await.unwrap();
        (tcp, answer)
    }

    #[test]
    fn a_stream_carries_messages_between_its_ends_and_forwarded_requests_of_members() {
        // Before: a proposal that reached a member which no longer led was passed on to
        // the leader under its first sender's name, and the leader closed the stream.
        let gate = crate::cluster::gate::tests::gate();
        let m = |kind: MessageType, from: u64, to: u64| {
            let mut m = Message::default();
            m.set_msg_type(kind);
            (m.from, m.to) = (from, to);
            PeerMessage::from(m)
        };
        use MessageType::*;
        let cases = [
            (m(MsgAppend, 8, 7), true),
            (m(MsgHeartbeatResponse, 8, 7), true),
            (m(MsgAppend, 9, 7), false),
            (m(MsgAppend, 8, 9), false),
            (m(MsgPropose, 9, 7), true),
            (m(MsgReadIndex, 9, 7), true),
            (m(MsgTransferLeader, 9, 7), true),
            (m(MsgPropose, 10, 7), false),
            (m(MsgPropose, 7, 7), true),
            (m(MsgPropose, 9, 8), false),
            (m(MsgSnapshot, 8, 7), false),
        ];
        for (msg, fits) in cases {
            assert_eq!(fits_stream(&msg, 8, &gate), fits, "{msg:?}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn only_other_members_open_streams_and_a_forged_frame_closes_one() {
        // Before: six bytes on the peer port (an opening naming the member, then an empty
        // MsgPropose) made raft-rs panic and stopped the member's writes for good.
        let (_dir, raft, addr) = receiver().await;
        for stranger in [7, 10] {
            let (_, answer) = open_as(addr, stranger).await;
            assert_eq!(answer, REFUSED, "sender {stranger}");
        }
        let (mut tcp, answer) = open_as(addr, 8).await;
        assert_eq!(answer, TAKEN);
        tcp.write_all(&[0, 0, 0, 2, 0x08, 0x02]).await.unwrap();
        // The receiver closes the stream (after at most an alive byte or two).
        let mut rest = Vec::new();
        let closed =
            tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut rest)).await;
        assert!(matches!(closed, Ok(Ok(_))), "{closed:?}");
        assert!(rest.iter().all(|&b| b == ALIVE), "{rest:?}");
        // And Raft never saw it: the member still commits.
        assert!(!raft.is_stopped());
        let mut applied = raft.applied_index();
        let before = *applied.borrow();
        raft.propose(b"after".to_vec()).unwrap();
        // The borrow `wait_for` returns is let go at once: the apply thread waits for it.
        let reached = tokio::time::timeout(Duration::from_secs(10), async {
            applied.wait_for(|&a| a > before).await.is_ok()
        })
        .await;
        assert_eq!(reached, Ok(true));
        raft.stop();
    }
}
