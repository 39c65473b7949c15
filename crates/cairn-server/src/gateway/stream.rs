//! Streaming methods through the gateway. The request body holds JSON objects one after
//! another (a watch's create and cancel requests, a lease's keep-alives; for a method the
//! client does not stream, the one request); the response is one long HTTP body of
//! newline-separated `{"result": ...}` objects, and a failure ends it with
//! `{"error": {...}}`, as etcd's gateway writes them.

use std::convert::Infallible;

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use http_body_util::BodyExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status};

use super::error;
use super::grpc;
use super::Gateway;

/// How many messages wait, each way, between the HTTP body and the gRPC stream.
const QUEUE: usize = 16;

/// Runs the streaming method at `path`: `many` when the body may hold several requests.
pub async fn call<Req, Resp>(
    gw: Gateway,
    path: &'static str,
    headers: HeaderMap,
    body: Body,
    many: bool,
) -> Response
where
    Req: prost::Message + serde::de::DeserializeOwned + Default + Send + 'static,
    Resp: prost::Message + serde::Serialize + Default + Send + 'static,
{
    let (req_tx, req_rx) = mpsc::channel::<Bytes>(QUEUE);
    let grpc_body = Body::from_stream(ReceiverStream::new(req_rx).map(Ok::<_, Infallible>));
    if many {
        tokio::spawn(forward_requests::<Req>(body, gw.body_limit, req_tx));
    } else {
        let first = match super::unary::read_body(body, gw.body_limit).await {
            Ok(bytes) => super::unary::decode_json::<Req>(&bytes),
            Err(s) => Err(s),
        };
        match first {
            Ok(req) => {
                let _ = req_tx.send(grpc::frame(&req)).await;
            }
            Err(s) => return first_error(&s),
        }
        drop(req_tx);
    }
    let resp = grpc::call(&gw.grpc, path, &headers, grpc_body).await;
    if let Some(s) = grpc::header_status(resp.headers()) {
        if s.code() != Code::Ok {
            return first_error(&s);
        }
    }
    let (out_tx, mut out_rx) = mpsc::channel::<Line>(QUEUE);
    tokio::spawn(forward_responses::<Resp>(resp.into_body(), out_tx));
    // As etcd's gateway, the response starts with its first line: its status is the
    // error's when the stream fails before any message.
    let first = match out_rx.recv().await {
        Some(Line::Result(line)) => line,
        Some(Line::Error(s)) => return first_error(&s),
        None => Bytes::new(),
    };
    let rest = ReceiverStream::new(out_rx).map(|line| {
        Ok::<_, Infallible>(match line {
            Line::Result(b) => b,
            Line::Error(s) => Bytes::from(error::stream_chunk(&s)),
        })
    });
    (
        StatusCode::OK,
        [
            ("content-type", "application/json"),
            ("grpc-metadata-content-type", "application/grpc"),
        ],
        Body::from_stream(futures::stream::once(async move { Ok(first) }).chain(rest)),
    )
        .into_response()
}

/// One line of a stream's response.
enum Line {
    /// A `{"result": ...}` line.
    Result(Bytes),
    /// The status that ended the stream.
    Error(Status),
}

/// A stream that fails before its first message: the code's HTTP status and the error
/// line.
fn first_error(s: &Status) -> Response {
    (
        error::http_status(s.code()),
        [("content-type", "application/json")],
        error::stream_chunk(s),
    )
        .into_response()
}

/// Reads JSON requests from the HTTP body as they arrive and sends each to the gRPC
/// stream, framed. The stream's sending side closes when the body ends, or at a body
/// that is not JSON of the request type (as etcd's gateway stops reading it there), or
/// when more than `limit` bytes wait without making a whole request.
async fn forward_requests<Req>(mut body: Body, limit: usize, tx: mpsc::Sender<Bytes>)
where
    Req: prost::Message + serde::de::DeserializeOwned + Default,
{
    let mut buf = BytesMut::new();
    loop {
        // Send every whole request the buffer holds.
        loop {
            let start = buf.iter().take_while(|b| b.is_ascii_whitespace()).count();
            let _ = buf.split_to(start);
            if buf.is_empty() {
                break;
            }
            let mut de = serde_json::Deserializer::from_slice(&buf).into_iter::<Req>();
            match de.next() {
                Some(Ok(req)) => {
                    let used = de.byte_offset();
                    let _ = buf.split_to(used);
                    if tx.send(grpc::frame(&req)).await.is_err() {
                        return;
                    }
                }
                Some(Err(e)) if e.is_eof() => break,
                _ => return,
            }
        }
        if buf.len() > limit {
            return;
        }
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    buf.extend_from_slice(&data);
                }
            }
            _ => return,
        }
    }
}

/// Turns the gRPC response stream into the gateway's lines until it ends or the HTTP
/// client goes away (dropping the gRPC body then cancels the call).
async fn forward_responses<Resp>(mut body: Body, tx: mpsc::Sender<Line>)
where
    Resp: prost::Message + serde::Serialize + Default,
{
    let mut frames = grpc::Deframer::default();
    loop {
        // A client gone ends the call at once, not at the stream's next message (a quiet
        // watch may have none for hours).
        let frame = tokio::select! {
            frame = body.frame() => frame,
            () = tx.closed() => return,
        };
        let Some(frame) = frame else {
            return;
        };
        let frame = match frame {
            Ok(f) => f,
            Err(e) => {
                let _ = tx.send(Line::Error(Status::internal(e.to_string()))).await;
                return;
            }
        };
        let frame = match frame.into_data() {
            Ok(data) => {
                frames.push(&data);
                continue_lines::<Resp>(&mut frames, &tx).await;
                if tx.is_closed() {
                    return;
                }
                continue;
            }
            Err(frame) => frame,
        };
        if let Ok(trailers) = frame.into_trailers() {
            if let Some(s) = grpc::header_status(&trailers) {
                if s.code() != Code::Ok {
                    let _ = tx.send(Line::Error(s)).await;
                }
            }
            return;
        }
    }
}

/// Sends a line for each whole message waiting in `frames`.
async fn continue_lines<Resp>(frames: &mut grpc::Deframer, tx: &mpsc::Sender<Line>)
where
    Resp: prost::Message + serde::Serialize + Default,
{
    while let Some(msg) = frames.next_message() {
        let line = match Resp::decode(msg) {
            Ok(m) => match result_line(&m) {
                Ok(line) => Line::Result(line.into()),
                Err(e) => Line::Error(Status::internal(e.to_string())),
            },
            Err(e) => Line::Error(Status::internal(e.to_string())),
        };
        if tx.send(line).await.is_err() {
            return;
        }
    }
}

/// `{"result": <message>}` and a newline.
fn result_line<M: serde::Serialize>(m: &M) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"{\"result\":");
    serde_json::to_writer(&mut out, m)?;
    out.extend_from_slice(b"}\n");
    Ok(out)
}
