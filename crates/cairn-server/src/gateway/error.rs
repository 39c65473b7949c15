//! Errors as etcd's gateway (grpc-gateway v1) writes them.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tonic::{Code, Status};

/// The HTTP status grpc-gateway v1 answers a gRPC code with.
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::Cancelled => StatusCode::REQUEST_TIMEOUT,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
            StatusCode::BAD_REQUEST
        }
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// The body of a failed call's answer, its keys in etcd's order.
#[derive(serde::Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    code: i32,
    message: &'a str,
}

/// A failed call's answer: `{"error": message, "code": code, "message": message}` with the
/// code's HTTP status.
pub fn status(s: &Status) -> Response {
    let body = serde_json::to_string(&ErrorBody {
        error: s.message(),
        code: s.code() as i32,
        message: s.message(),
    })
    .unwrap_or_default();
    (
        http_status(s.code()),
        [("content-type", "application/json")],
        body,
    )
        .into_response()
}

/// A request body that is not the method's JSON message: InvalidArgument, worded as Go's
/// JSON decoder words the usual cases (`body` is what was read, to name the character a
/// syntax error stopped at).
pub fn bad_json(e: &serde_json::Error, body: &[u8]) -> Status {
    Status::invalid_argument(go_json_message(e, body))
}

/// A stream's failure, written as one more line of the response.
pub fn stream_chunk(s: &Status) -> String {
    let http = http_status(s.code());
    let body = serde_json::json!({
        "error": {
            "grpc_code": s.code() as i32,
            "http_code": http.as_u16(),
            "message": s.message(),
            "http_status": http.canonical_reason().unwrap_or(""),
        }
    });
    format!("{body}\n")
}

/// Words a serde_json error as Go's `encoding/json` and jsonpb word the same mistake, where
/// the mistake is recognisable; else serde's own text.
fn go_json_message(e: &serde_json::Error, body: &[u8]) -> String {
    let text = e.to_string();
    let text = match text.find(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text,
    };
    if e.is_eof() {
        return "unexpected EOF".to_string();
    }
    if e.is_syntax() {
        let after = match text.as_str() {
            "key must be a string" => "looking for beginning of object key string",
            "expected `:`" => "after object key",
            "expected `,` or `}`" => "after object key:value pair",
            "expected `,` or `]`" => "after array element",
            _ => "looking for beginning of value",
        };
        return match byte_at(body, e.line(), e.column()) {
            Some(c) => format!(
                "invalid character {} {after}",
                cairn_proto::json::go_quote_char(c)
            ),
            None => text,
        };
    }
    if let Some(rest) = text.strip_prefix("invalid type: ") {
        if let Some((got, want)) = rest.split_once(", expected ") {
            let got = match got.split_whitespace().next().unwrap_or("") {
                "integer" | "floating" => "number",
                "string" => "string",
                "sequence" => "array",
                "map" => "object",
                "boolean" => "bool",
                other => other,
            };
            let want = if want.starts_with("struct ") {
                "map[string]json.RawMessage"
            } else if want.contains("base64") {
                "[]uint8"
            } else if want.contains("boolean") {
                "bool"
            } else if want.contains("string") {
                "string"
            } else if want.contains("sequence") {
                "[]json.RawMessage"
            } else {
                want
            };
            return format!("json: cannot unmarshal {got} into Go value of type {want}");
        }
    }
    text
}

/// The byte at a serde_json error's position (1-based line, 1-based byte column).
fn byte_at(body: &[u8], line: usize, column: usize) -> Option<u8> {
    let l = body.split(|&b| b == b'\n').nth(line.checked_sub(1)?)?;
    l.get(column.checked_sub(1)?).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn go(body: &str) -> String {
        let e = serde_json::from_str::<cairn_proto::etcdserverpb::RangeRequest>(body)
            .expect_err("a bad body");
        go_json_message(&e, body.as_bytes())
    }

    #[test]
    fn json_mistakes_are_worded_as_gos_decoder_words_them() {
        let cases = [
            (
                "{bad",
                "invalid character 'b' looking for beginning of object key string",
            ),
            (r#"{"key" 1}"#, "invalid character '1' after object key"),
            (
                r#"{"key":"YQ==" x}"#,
                "invalid character 'x' after object key:value pair",
            ),
            (
                r#"{"key":5}"#,
                "json: cannot unmarshal number into Go value of type []uint8",
            ),
            (r#"{"key":"!!"}"#, "illegal base64 data at input byte 0"),
            (r#"{"key":"YWJjYQ"}"#, "illegal base64 data at input byte 4"),
            (
                "{\"key\":\"YQ==\",\n \"limit\": 1.50e+3}",
                "json: cannot unmarshal number 1.50e+3 into Go value of type int64",
            ),
            (
                r#"{"limit":99999999999999999999}"#,
                "json: cannot unmarshal number 99999999999999999999 into Go value of type int64",
            ),
            (
                "[]",
                "json: cannot unmarshal array into Go value of type map[string]json.RawMessage",
            ),
            (
                r#"{"serializable":"true"}"#,
                "json: cannot unmarshal string into Go value of type bool",
            ),
            (r#"{"key":"YQ=="#, "unexpected EOF"),
        ];
        for (body, want) in cases {
            assert_eq!(go(body), want, "{body}");
        }
    }

    #[test]
    fn codes_map_to_grpc_gateways_http_statuses() {
        let cases = [
            (Code::InvalidArgument, 400),
            (Code::FailedPrecondition, 400),
            (Code::NotFound, 404),
            (Code::PermissionDenied, 403),
            (Code::Unauthenticated, 401),
            (Code::ResourceExhausted, 429),
            (Code::Unavailable, 503),
            (Code::Unknown, 500),
            (Code::DeadlineExceeded, 504),
        ];
        for (code, want) in cases {
            assert_eq!(http_status(code).as_u16(), want, "{code:?}");
        }
    }
}
