//! What a [`crate::Client`]'s requests travel on: a tonic `Channel` (balancing, failover,
//! reconnection), or one HTTP/2 connection driven by hyper directly.
//!
//! A `Channel` passes every request through a queue to a worker task and through a stack
//! of layers (origin, user agent, timeout, concurrency limit), each boxing its future. A
//! load generator pays for all of it on every request, on the same cores as the server
//! it measures. [`Transport::Direct`] hands the request straight to hyper's connection:
//! nothing is queued in between, and a broken connection stays broken (no reconnection),
//! which is what a benchmark wants to see.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper::client::conn::http2::SendRequest;
use tonic::body::Body;
use tonic::codegen::http::uri::{Authority, Scheme};
use tonic::codegen::http::{Request, Response, Uri};
use tonic::transport::Channel;

/// Any error of the transport, as tonic takes it.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The connection (or connections) under a client.
#[derive(Debug, Clone)]
pub enum Transport {
    /// tonic's channel: one endpoint or several, reconnecting.
    Channel(Channel),
    /// One HTTP/2 connection, used as it is.
    Direct(Direct),
}

/// One HTTP/2 connection to `authority`.
#[derive(Debug, Clone)]
pub struct Direct {
    send: SendRequest<Body>,
    authority: Authority,
}

impl Direct {
    /// Dials `uri` (gathered writes, see [`crate::coalesce::dial`]) and completes the
    /// HTTP/2 handshake; the connection is driven by a task of the current runtime.
    pub async fn connect(uri: Uri) -> Result<Direct, BoxError> {
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| format!("no host in {uri}"))?;
        let io = crate::coalesce::dial(uri).await?;
        let (send, conn) =
            hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                .handshake(io)
                .await?;
        tokio::spawn(async move {
            // The connection ends when every sender is dropped or the peer closes it;
            // requests in flight see the error.
            let _ = conn.await;
        });
        Ok(Direct { send, authority })
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
        }
    }

    fn call(&mut self, mut req: Request<Body>) -> ResponseFuture {
        match self {
            Transport::Channel(c) => {
                let fut = c.call(req);
                Box::pin(async move { fut.await.map_err(Into::into) })
            }
            Transport::Direct(d) => {
                // tonic gives the path only; HTTP/2 wants the scheme and authority too.
                let mut parts = req.uri().clone().into_parts();
                parts.scheme = Some(Scheme::HTTP);
                parts.authority = Some(d.authority.clone());
                match Uri::from_parts(parts) {
                    Ok(uri) => *req.uri_mut() = uri,
                    Err(e) => return Box::pin(std::future::ready(Err(e.into()))),
                }
                let fut = d.send.send_request(req);
                Box::pin(async move { Ok(fut.await?.map(Body::new)) })
            }
        }
    }
}
