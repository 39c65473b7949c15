//! A unary method through the gateway: one JSON request in, one JSON object out.

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use tonic::{Code, Status};

use super::error;
use super::grpc;
use super::Gateway;

/// Decodes the body as `Req` (an empty body is the default request, as in etcd's
/// gateway; what follows the first JSON value is not read), calls the method and writes
/// its response, or its error, as etcd's gateway does.
pub async fn call<Req, Resp>(
    gw: Gateway,
    path: &'static str,
    headers: HeaderMap,
    body: Body,
) -> Response
where
    Req: prost::Message + serde::de::DeserializeOwned + Default,
    Resp: prost::Message + serde::Serialize + Default,
{
    match run::<Req, Resp>(&gw, path, &headers, body).await {
        Ok(r) => r,
        Err(s) => error::status(&s),
    }
}

async fn run<Req, Resp>(
    gw: &Gateway,
    path: &'static str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, Status>
where
    Req: prost::Message + serde::de::DeserializeOwned + Default,
    Resp: prost::Message + serde::Serialize + Default,
{
    let bytes = read_body(body, gw.body_limit).await?;
    let req: Req = decode_json(&bytes)?;
    let resp = grpc::call(&gw.grpc, path, headers, Body::from(grpc::frame(&req))).await;
    if let Some(s) = grpc::header_status(resp.headers()) {
        if s.code() != Code::Ok {
            return Err(s);
        }
    }
    let collected = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| Status::internal(e.to_string()))?;
    if let Some(s) = collected.trailers().and_then(grpc::header_status) {
        if s.code() != Code::Ok {
            return Err(s);
        }
    }
    let mut frames = grpc::Deframer::default();
    frames.push(&collected.to_bytes());
    let msg = frames
        .next_message()
        .ok_or_else(|| Status::internal("no response message"))?;
    let out = Resp::decode(msg).map_err(|e| Status::internal(e.to_string()))?;
    let json = serde_json::to_vec(&out).map_err(|e| Status::internal(e.to_string()))?;
    Ok((
        StatusCode::OK,
        [
            ("content-type", "application/json"),
            ("grpc-metadata-content-type", "application/grpc"),
        ],
        json,
    )
        .into_response())
}

/// Reads the whole body, refusing one past `limit` bytes as an oversized gRPC message is
/// refused.
pub async fn read_body(body: Body, limit: usize) -> Result<bytes::Bytes, Status> {
    axum::body::to_bytes(body, limit).await.map_err(|_| {
        Status::resource_exhausted(format!(
            "grpc: received message larger than max ({} bytes)",
            limit
        ))
    })
}

/// The first JSON value of `bytes` as `Req`; nothing (or only white space) is the
/// default request.
pub fn decode_json<Req>(bytes: &[u8]) -> Result<Req, Status>
where
    Req: serde::de::DeserializeOwned + Default,
{
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Req::default());
    }
    let first = match Req::deserialize(&mut serde_json::Deserializer::from_slice(bytes)) {
        Ok(req) => return Ok(req),
        Err(e) => e,
    };
    // Go's decoder reads the whole first value before any field: a syntax error anywhere
    // in it is the answer, whatever field came before it, in Go's scanner's words.
    cairn_proto::json::go_first_value(bytes).map_err(Status::invalid_argument)?;
    // The value is sound JSON, so a byte that is not UTF-8 is inside a string: Go reads it
    // as U+FFFD where serde refuses the body.
    if std::str::from_utf8(bytes).is_err() {
        let lossy = cairn_proto::json::go_lossy_utf8(bytes);
        return Req::deserialize(&mut serde_json::Deserializer::from_slice(&lossy))
            .map_err(|e| error::bad_json(&e, &lossy));
    }
    Err(error::bad_json(&first, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_proto::etcdserverpb::{PutRequest, RangeRequest};

    #[test]
    fn an_empty_body_is_the_default_request() {
        assert_eq!(
            decode_json::<RangeRequest>(b"").ok(),
            Some(RangeRequest::default())
        );
        assert_eq!(
            decode_json::<RangeRequest>(b" \n").ok(),
            Some(RangeRequest::default())
        );
    }

    #[test]
    fn null_is_the_default_and_unknown_fields_and_trailing_text_are_ignored() {
        let r: PutRequest =
            decode_json(br#"{"key":"YQ==","value":null,"lease":"7","other":[1]} tail"#)
                .expect("decodes");
        assert_eq!(r.key, b"a");
        assert!(r.value.is_empty());
        assert_eq!(r.lease, 7);
    }

    /// A `null` string, bool or list is read at once as the default. Before, such a body
    /// was read again from its parsed value, where an unquoted `-0` had become `-0.0`.
    #[test]
    fn null_lists_and_bools_are_defaults_beside_a_negative_zero() {
        let r: cairn_proto::etcdserverpb::TxnRequest = decode_json(
            br#"{"compare":null,"success":[{"request_range":{"key":"YQ==","limit":-0,"serializable":null}}]}"#,
        )
        .expect("decodes");
        assert!(r.compare.is_empty());
        assert_eq!(r.success.len(), 1);
    }

    #[test]
    fn a_bad_body_is_invalid_argument() {
        let e = decode_json::<RangeRequest>(b"{bad").expect_err("refused");
        assert_eq!(e.code(), Code::InvalidArgument);
    }
}
