//! What a [`crate::Client`]'s requests travel on: a tonic `Channel` (balancing, failover,
//! reconnection), several channels used in turn (several endpoints over TLS), or one
//! HTTP/2 connection driven through h2 directly.
//!
//! A `Channel` passes every request through a queue to a worker task and through a stack
//! of layers (origin, user agent, timeout, concurrency limit), each boxing its future, and
//! then through hyper's HTTP/2 client, which hands each request to the connection's task
//! and spawns a task per request to wait for its response. A load generator pays for all
//! of it on every request, on the same cores as the server it measures.
//! [`Transport::Direct`] opens the HTTP/2 stream from the caller's task and awaits the
//! response there: the connection's task only reads and writes the socket. A broken
//! connection stays broken (no reconnection), which is what a benchmark wants to see.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Body as _, Frame};
use tonic::body::Body;
use tonic::codegen::http::uri::{Authority, Scheme};
use tonic::codegen::http::{Request, Response, Uri};
use tonic::transport::Channel;
use tower::Service as _;

/// Flow-control windows and frame limits of a direct connection: hyper's, which tonic's
/// channels use. With h2's own (64 KiB windows) a watch stream's many small frames soon
/// exceed what h2 lets a peer buffer ("too_many_data_frames").
const STREAM_WINDOW: u32 = 2 << 20;
const CONNECTION_WINDOW: u32 = 5 << 20;
const MAX_FRAME_SIZE: u32 = 16 << 10;
const MAX_SEND_BUFFER: usize = 1 << 20;

/// Any error of the transport, as tonic takes it.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The connection (or connections) under a client.
#[derive(Debug, Clone)]
pub enum Transport {
    /// tonic's channel: one endpoint or several, reconnecting.
    Channel(Channel),
    /// One HTTP/2 connection, used as it is.
    Direct(Direct),
    /// Several endpoints' channels, one used at a time.
    Rotate(Rotate),
}

/// Several channels, one per endpoint. Calls go to the current one; a call that cannot
/// reach it (a transport error, not an answer from the server) makes the next one current
/// for the calls after it, so a caller retrying an unreachable endpoint moves on.
#[derive(Debug, Clone)]
pub struct Rotate {
    channels: std::sync::Arc<[Channel]>,
    current: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Rotate {
    /// Rotates over `channels` (at least one), starting with the first.
    pub fn new(channels: Vec<Channel>) -> Rotate {
        Rotate {
            channels: channels.into(),
            current: Default::default(),
        }
    }

    fn call(&self, req: Request<Body>) -> ResponseFuture {
        use std::sync::atomic::Ordering;
        let n = self.channels.len().max(1);
        let at = self.current.load(Ordering::Relaxed) % n;
        let Some(channel) = self.channels.get(at) else {
            return Box::pin(std::future::ready(Err("no endpoints".into())));
        };
        let mut channel = channel.clone();
        let current = self.current.clone();
        Box::pin(async move {
            let sent = async {
                std::future::poll_fn(|cx| channel.poll_ready(cx)).await?;
                channel.call(req).await
            }
            .await;
            if sent.is_err() {
                // Another call may have moved on already; move only from where this one was.
                let _ = current.compare_exchange(
                    at,
                    (at + 1) % n,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
            }
            sent.map_err(Into::into)
        })
    }
}

/// One HTTP/2 connection to `authority`.
#[derive(Debug, Clone)]
pub struct Direct {
    send: h2::client::SendRequest<Bytes>,
    authority: Authority,
}

impl Direct {
    /// Dials `uri` (gathered writes, see [`crate::coalesce::dial`]; TLS when `security`
    /// says so) and completes the HTTP/2 handshake; the connection is driven by a task of the current runtime.
    pub async fn connect(uri: Uri, security: crate::Security) -> Result<Direct, BoxError> {
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| format!("no host in {uri}"))?;
        let io = crate::tls::dial(uri, security).await?.into_inner();
        let (send, conn) = h2::client::Builder::new()
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .max_frame_size(MAX_FRAME_SIZE)
            .max_send_buffer_size(MAX_SEND_BUFFER)
            .enable_push(false)
            .handshake(io)
            .await?;
        tokio::spawn(async move {
            // The connection ends when every sender is dropped or the peer closes it;
            // requests in flight see the error.
            let _ = conn.await;
        });
        Ok(Direct { send, authority })
    }

    /// Opens a stream for `req` and sends its body; the response comes on the caller's
    /// task. A body that is not over at once (a client stream) goes on in a task of its
    /// own.
    fn call(&mut self, req: Request<Body>) -> ResponseFuture {
        let (mut head, body) = req.into_parts();
        // tonic gives the path only; HTTP/2 wants the scheme and authority too.
        let mut uri = head.uri.clone().into_parts();
        uri.scheme = Some(Scheme::HTTP);
        uri.authority = Some(self.authority.clone());
        match Uri::from_parts(uri) {
            Ok(uri) => head.uri = uri,
            Err(e) => return Box::pin(std::future::ready(Err(e.into()))),
        }
        let opened = self.send.send_request(Request::from_parts(head, ()), false);
        Box::pin(async move {
            let (response, stream) = opened?;
            let mut pipe = Box::pin(send_body(body, stream));
            if futures::poll!(pipe.as_mut()).is_pending() {
                tokio::spawn(pipe);
            }
            let response = response.await?;
            Ok(response.map(|recv| {
                Body::new(ResponseBody {
                    recv,
                    data_done: false,
                })
            }))
        })
    }
}

/// Sends `body` on `stream`. Each data frame waits for the next one (or for the body to
/// have nothing more for now), so that the last one carries the end of the stream.
async fn send_body(mut body: Body, mut stream: h2::SendStream<Bytes>) -> Result<(), BoxError> {
    let mut held: Option<Bytes> = None;
    std::future::poll_fn(|cx| loop {
        match Pin::new(&mut body).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                Ok(data) => {
                    if let Some(earlier) = held.replace(data) {
                        stream.send_data(earlier, false)?;
                    }
                }
                Err(frame) => {
                    if let Some(earlier) = held.take() {
                        stream.send_data(earlier, false)?;
                    }
                    let trailers = frame.into_trailers().unwrap_or_default();
                    stream.send_trailers(trailers)?;
                    return Poll::Ready(Ok(()));
                }
            },
            Poll::Ready(Some(Err(e))) => {
                stream.send_reset(h2::Reason::CANCEL);
                return Poll::Ready(Err(e.into()));
            }
            Poll::Ready(None) => {
                stream.send_data(held.take().unwrap_or_default(), true)?;
                return Poll::Ready(Ok(()));
            }
            Poll::Pending => {
                if let Some(earlier) = held.take() {
                    stream.send_data(earlier, false)?;
                }
                return Poll::Pending;
            }
        }
    })
    .await
}

/// A response body read straight from its HTTP/2 stream: data, then trailers.
struct ResponseBody {
    recv: h2::RecvStream,
    data_done: bool,
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = h2::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, h2::Error>>> {
        if !self.data_done {
            match ready!(self.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    // Read means consumed: the peer may send as much again.
                    let _ = self.recv.flow_control().release_capacity(data.len());
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None => self.data_done = true,
            }
        }
        match ready!(self.recv.poll_trailers(cx)) {
            Ok(Some(trailers)) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
            Ok(None) => Poll::Ready(None),
            Err(e) => Poll::Ready(Some(Err(e))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.recv.is_end_stream()
    }
}

type ResponseFuture = Pin<Box<dyn Future<Output = Result<Response<Body>, BoxError>> + Send>>;

impl tower::Service<Request<Body>> for Transport {
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        match self {
            Transport::Channel(c) => c.poll_ready(cx).map_err(Into::into),
            Transport::Direct(d) => d.send.poll_ready(cx).map_err(Into::into),
            Transport::Rotate(_) => Poll::Ready(Ok(())),
        }
    }

    fn call(&mut self, req: Request<Body>) -> ResponseFuture {
        match self {
            Transport::Channel(c) => {
                let fut = c.call(req);
                Box::pin(async move { fut.await.map_err(Into::into) })
            }
            Transport::Direct(d) => d.call(req),
            Transport::Rotate(r) => r.call(req),
        }
    }
}
