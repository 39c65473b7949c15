//! One in-process gRPC call on the client port's router: the request as a gRPC client
//! frames it, the response's length-prefixed messages, and the call's status.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Request};
use axum::response::Response;
use axum::Router;
use bytes::{Buf, Bytes, BytesMut};
use tonic::Status;
use tower::ServiceExt;

/// Frames one message as gRPC does: an uncompressed flag, its length, its bytes.
pub fn frame<M: prost::Message>(m: &M) -> Bytes {
    let len = m.encoded_len();
    let mut buf = BytesMut::with_capacity(5 + len);
    buf.extend_from_slice(&[0]);
    buf.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
    // Encoding into a buffer of the right capacity cannot fail.
    let _ = m.encode(&mut buf);
    buf.freeze()
}

/// Sends `body` (framed messages) to the gRPC method at `path`, with the caller's
/// credentials as etcd's gateway forwards them: the `Authorization` header, and any
/// `Grpc-Metadata-*` header under its own name.
pub async fn call(grpc: &Router, path: &'static str, headers: &HeaderMap, body: Body) -> Response {
    let mut req = Request::post(path);
    if let Some(h) = req.headers_mut() {
        h.insert("content-type", HeaderValue::from_static("application/grpc"));
        h.insert("te", HeaderValue::from_static("trailers"));
        for (name, value) in headers {
            let name = name.as_str();
            if name == "authorization" {
                h.insert("authorization", value.clone());
            } else if let Some(meta) = name.strip_prefix("grpc-metadata-") {
                if let Ok(meta) = axum::http::HeaderName::from_bytes(meta.as_bytes()) {
                    h.insert(meta, value.clone());
                }
            }
        }
    }
    let req = match req.body(body) {
        Ok(r) => r,
        Err(e) => return super::error::status(&Status::internal(e.to_string())),
    };
    match grpc.clone().oneshot(req).await {
        Ok(r) => r,
        Err(never) => match never {},
    }
}

/// The call's status when its response headers carry it (a call that failed before any
/// message: gRPC's trailers-only response).
pub fn header_status(headers: &HeaderMap) -> Option<Status> {
    Status::from_header_map(headers)
}

/// Splits a response body's bytes into gRPC messages.
#[derive(Default)]
pub struct Deframer {
    buf: BytesMut,
}

impl Deframer {
    /// Adds bytes read from the body.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next whole message, if the buffer holds one.
    pub fn next_message(&mut self) -> Option<Bytes> {
        if self.buf.len() < 5 {
            return None;
        }
        let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
        if self.buf.len() < 5 + len {
            return None;
        }
        self.buf.advance(5);
        Some(self.buf.split_to(len).freeze())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_proto::etcdserverpb::PutRequest;
    use prost::Message;

    #[test]
    fn frames_split_back_into_messages_whatever_the_chunks() {
        let a = PutRequest {
            key: b"a".to_vec(),
            ..Default::default()
        };
        let b = PutRequest {
            key: b"bb".to_vec(),
            value: vec![7; 300],
            ..Default::default()
        };
        let mut all = frame(&a).to_vec();
        all.extend_from_slice(&frame(&b));
        let mut d = Deframer::default();
        let mut got = Vec::new();
        for chunk in all.chunks(3) {
            d.push(chunk);
            while let Some(m) = d.next_message() {
                got.push(PutRequest::decode(m).expect("decodes"));
            }
        }
        assert_eq!(got, vec![a, b]);
    }
}
