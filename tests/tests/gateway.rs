//! The JSON gateway (`/v3/...`) side by side with etcd 3.5 and 3.4: the same HTTP requests
//! give the same status codes and bodies once what differs between servers (cluster and
//! member ids, terms, tokens, measured sizes) is masked. Requests go through hyper's HTTP/1
//! client, a few through `curl`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use cairn_tests::mask::mask_json_fields;
use cairn_tests::{Kind, ServerProc};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

/// How long one request, or one line of a stream, may take.
const TIMEOUT: Duration = Duration::from_secs(20);

/// What differs between two servers given the same requests.
const MASKED: &[&str] = &["cluster_id", "member_id", "raft_term", "token"];

type Body = BoxBody<Bytes, Infallible>;

/// Sends one HTTP/1.1 request on a new connection with `headers` (a `host` among them
/// replaces the default); the response's head and body.
async fn send(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Body,
) -> hyper::Response<Incoming> {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut req = hyper::Request::builder().method(method).uri(path);
    if !headers.iter().any(|(k, _)| *k == "host") {
        req = req.header("host", format!("127.0.0.1:{port}"));
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    tokio::time::timeout(TIMEOUT, sender.send_request(req.body(body).unwrap()))
        .await
        .expect("response in time")
        .unwrap()
}

/// POSTs `body` to `path`: the status code and the whole body.
async fn post(port: u16, path: &str, body: impl AsRef<[u8]>, token: Option<&str>) -> (u16, String) {
    let full: Body = Full::new(Bytes::copy_from_slice(body.as_ref())).boxed();
    let auth: Vec<(&str, &str)> = token.map(|t| ("authorization", t)).into_iter().collect();
    let resp = send(port, "POST", path, &auth, full).await;
    let code = resp.status().as_u16();
    let bytes = tokio::time::timeout(TIMEOUT, resp.into_body().collect())
        .await
        .expect("body in time")
        .unwrap()
        .to_bytes();
    (code, String::from_utf8_lossy(&bytes).into_owned())
}

/// A streaming call: its lines read as they come.
struct Stream {
    status: u16,
    body: Incoming,
    buf: Vec<u8>,
}

impl Stream {
    /// Opens `path` with `body` as the whole request body.
    async fn open(port: u16, path: &str, body: &str) -> Stream {
        let full: Body = Full::new(Bytes::from(body.to_string())).boxed();
        let resp = send(port, "POST", path, &[], full).await;
        Stream {
            status: resp.status().as_u16(),
            body: resp.into_body(),
            buf: Vec::new(),
        }
    }

    /// The next line of the response, without its newline.
    async fn line(&mut self) -> String {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                return String::from_utf8_lossy(&line[..i]).into_owned();
            }
            let frame = tokio::time::timeout(TIMEOUT, self.body.frame())
                .await
                .expect("a line in time")
                .expect("the stream goes on")
                .unwrap();
            if let Ok(data) = frame.into_data() {
                self.buf.extend_from_slice(&data);
            }
        }
    }
}

/// A request of a scenario and what is compared of its answer.
struct Step {
    path: &'static str,
    body: &'static [u8],
    /// Keys masked in this answer besides [`MASKED`].
    mask: &'static [&'static str],
}

const fn step(path: &'static str, body: &'static str) -> Step {
    step_bytes(path, body.as_bytes())
}

/// A step whose body need not be UTF-8.
const fn step_bytes(path: &'static str, body: &'static [u8]) -> Step {
    Step {
        path,
        body,
        mask: &[],
    }
}

/// Runs `steps` on a fresh server of `kind`: each answer's status and masked body.
async fn run(kind: Kind, steps: &[Step]) -> Vec<String> {
    let server = ServerProc::start(kind, &[]);
    let mut out = Vec::new();
    for s in steps {
        let (code, body) = post(server.client_port, s.path, s.body, None).await;
        let masked = mask_json_fields(&mask_json_fields(&body, MASKED), s.mask);
        let sent = String::from_utf8_lossy(s.body);
        out.push(format!("{} {sent} -> {code} {masked}", s.path));
    }
    out
}

/// Runs `steps` on cairn, etcd 3.5 and etcd 3.4 and requires the same answers, byte for
/// byte against 3.5 and as JSON values against 3.4 (whose errors order their keys
/// otherwise).
async fn same_as_etcd(steps: &[Step]) {
    let cairn = run(Kind::Cairn, steps).await;
    let etcd35 = run(Kind::Etcd35, steps).await;
    for (c, e) in cairn.iter().zip(&etcd35) {
        assert_eq!(c, e, "cairn and etcd 3.5 differ");
    }
    let etcd34 = run(Kind::Etcd34, steps).await;
    for (c, e) in cairn.iter().zip(&etcd34) {
        let (c_head, c_body) = c.split_once(" -> ").unwrap();
        let (e_head, e_body) = e.split_once(" -> ").unwrap();
        assert_eq!(c_head, e_head);
        let (c_code, c_json) = c_body.split_once(' ').unwrap();
        let (e_code, e_json) = e_body.split_once(' ').unwrap();
        // etcd 3.4's grpc-gateway answers FailedPrecondition with 412, 3.5's (and cairn)
        // with 400.
        let e_code = if e_code == "412" && e_json.contains("\"code\":9") {
            "400"
        } else {
            e_code
        };
        assert_eq!(c_code, e_code, "cairn and etcd 3.4 differ at {c_head}");
        // etcd 3.4.23 is built with a later Go, whose `strconv.Quote` writes DEL as `\x7f`
        // where Go 1.16's (etcd 3.5.1's, cairn's) writes `\u007f`.
        let c_json = c_json.replace(r"\\u007f", r"\\x7f");
        let c_val: serde_json::Value =
            serde_json::from_str(&c_json).unwrap_or(serde_json::Value::String(c_json.clone()));
        let e_val: serde_json::Value =
            serde_json::from_str(e_json).unwrap_or(serde_json::Value::String(e_json.into()));
        assert_eq!(c_val, e_val, "cairn and etcd 3.4 differ at {c_head}");
    }
}

// Keys and values in base64: "a" YQ==, "b" Yg==, "c" Yw==, "1" MQ==, "2" Mg==.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_requests_answer_as_etcd() {
    same_as_etcd(&[
        step("/v3/kv/put", r#"{"key":"YQ==","value":"MQ=="}"#),
        step("/v3/kv/put", r#"{"key":"Yg==","value":"Mg==","prev_kv":true}"#),
        step("/v3/kv/put", r#"{"key":"Yg==","value":"MQ==","prev_kv":true}"#),
        step("/v3/kv/range", r#"{"key":"YQ=="}"#),
        step("/v3/kv/range", r#"{"key":"YQ==","range_end":"Yw=="}"#),
        step("/v3/kv/range", r#"{"key":"YQ==","range_end":"Yw==","limit":"1","sort_order":"DESCEND","sort_target":"MOD"}"#),
        step("/v3/kv/range", r#"{"key":"YQ==","range_end":"Yw==","count_only":true}"#),
        step("/v3/kv/range", r#"{"key":"YQ==","range_end":"Yw==","keys_only":true,"serializable":true}"#),
        step("/v3beta/kv/range", r#"{"key":"Yg==","revision":"2"}"#),
        step("/v3/kv/txn", r#"{"compare":[{"key":"YQ==","result":"EQUAL","target":"VALUE","value":"MQ=="}],"success":[{"request_put":{"key":"Yw==","value":"Mg=="}},{"request_range":{"key":"YQ=="}}],"failure":[{"request_delete_range":{"key":"YQ=="}}]}"#),
        step("/v3/kv/txn", r#"{"compare":[{"key":"YQ==","target":"VERSION","result":"GREATER","version":"5"}],"failure":[{"request_range":{"key":"Yw=="}}]}"#),
        step("/v3/kv/deleterange", r#"{"key":"Yw==","prev_kv":true}"#),
        step("/v3/kv/compaction", r#"{"revision":"3","physical":true}"#),
        step("/v3/kv/range", r#"{"key":"YQ==","revision":"2"}"#),
        step("/v3/kv/range", r#"{"key":"YQ==","revision":"99"}"#),
        step("/v3/kv/put", r#"{"key":"","value":"MQ=="}"#),
        step("/v3/kv/range", ""),
        Step {
            path: "/v3/maintenance/hash",
            body: b"",
            mask: &["hash"],
        },
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_answer_as_etcd() {
    // Nested past Go's limit of 10,000; and 200 deep in a field and in an unknown field,
    // past serde's 128.
    let nested = |open: &str, inner: &str, close: &str, n: usize| -> &'static str {
        let text = format!("{}{inner}{}", open.repeat(n), close.repeat(n));
        Box::leak(text.into_boxed_str())
    };
    same_as_etcd(&[
        step("/v3/kv/range", nested("[", "", "]", 10_001)),
        step("/v3/kv/range", nested("[", "", "]", 10_000)),
        step("/v3/kv/range", nested("{\"key\":", "[]", "}", 200)),
        step(
            "/v3/kv/range",
            nested("{\"key\":\"YQ==\",\"x\":", "1", "}", 200),
        ),
        step("/v3/kv/range", r#"{bad"#),
        step("/v3/kv/range", r#"{"key":5}"#),
        step("/v3/kv/range", r#"{"key":"!!"}"#),
        step("/v3/kv/range", r#"[]"#),
        step("/v3/kv/range", r#"{"key":"YQ==","serializable":"true"}"#),
        step("/v3/kv/range", r#"{"key":"YQ==","limit":"1"#),
        step("/v3/kv/range", r#"{"key":"YQ==","unknown_field":1}"#),
        step("/v3/kv/range", r#"{"key":null}"#),
        step("/v3/kv/range", r#"{"key":"YQ==","limit":5} trailing"#),
        // Bytes Go's scanner refuses, quoted as Go 1.16 quotes them; a string's byte that
        // is not UTF-8 is read as U+FFFD (so base64 refuses it).
        step_bytes("/v3/kv/range", b"\x7f"),
        step_bytes("/v3/kv/range", b"\xff"),
        step_bytes("/v3/kv/range", b"\x80"),
        step("/v3/kv/range", "é"),
        step_bytes("/v3/kv/range", b"\x01"),
        step_bytes("/v3/kv/range", b"{\"key\":\x7f}"),
        step_bytes("/v3/kv/range", b"{\"key\":\"a\x01\"}"),
        step_bytes("/v3/kv/range", b"{\"key\":\"\xff\"}"),
        step_bytes("/v3/kv/range", b"{\"key\":\"YQ==\",\"limit\":1.}"),
        step_bytes("/v3/auth/user/get", b"{\"name\":\"\xffroot\"}"),
        step("/v3/kv/nothing", r#"{}"#),
        step("/v3/lease/revoke", r#"{"ID":"12345"}"#),
        step(
            "/v3/auth/authenticate",
            r#"{"name":"nobody","password":"x"}"#,
        ),
    ])
    .await;
}

/// Bytes fields take standard base64 with padding only, as Go's decoder reads them (line
/// breaks skipped), and etcd's error names the input byte where Go's decoder stopped.
/// Before: unpadded and URL-safe base64 were accepted. A field given twice keeps its last
/// value, and a syntax error after a bad field is the answer, as in Go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_fields_are_read_as_etcd_reads_them() {
    same_as_etcd(&[
        step("/v3/kv/put", r#"{"key":"YQ==","value":"MQ=="}"#),
        step("/v3/kv/range", r#"{"key":"YQ"}"#),
        step("/v3/kv/range", r#"{"key":"YQ="}"#),
        step("/v3/kv/range", r#"{"key":"YWJjYQ"}"#),
        step("/v3/kv/range", r#"{"key":"YWJjYQ="}"#),
        step("/v3/kv/range", r#"{"key":"-_-_"}"#),
        step("/v3/kv/range", r#"{"key":"YW-j"}"#),
        step("/v3/kv/range", r#"{"key":"YWJ_"}"#),
        step("/v3/kv/range", r#"{"key":"Y Q=="}"#),
        step("/v3/kv/range", r#"{"key":"YQ== "}"#),
        step("/v3/kv/range", r#"{"key":"Y\tQ=="}"#),
        step("/v3/kv/range", r#"{"key":"="}"#),
        step("/v3/kv/range", r#"{"key":"Y==="}"#),
        step("/v3/kv/range", r#"{"key":"YQ=x"}"#),
        step("/v3/kv/range", r#"{"key":"YQ==YQ=="}"#),
        step("/v3/kv/range", r#"{"key":"YWJjZGVmZ2hp!"}"#),
        step("/v3/kv/range", r#"{"key":"é"}"#),
        step("/v3/kv/range", r#"{"key":""}"#),
        step("/v3/kv/range", r#"{"key":"Y\nQ=="}"#),
        step("/v3/kv/range", r#"{"key":"Y\rQ=\n=\n"}"#),
        step("/v3/kv/range", r#"{"key":"YR=="}"#),
        step("/v3/kv/range", r#"{"key":"YQ==","range_end":"Yw"}"#),
        step("/v3/kv/put", r#"{"key":"Yg==","value":"MQ"}"#),
        step(
            "/v3/kv/txn",
            r#"{"compare":[{"key":"YQ==","target":"VALUE","value":"MQ"}]}"#,
        ),
        step(
            "/v3/kv/put",
            r#"{"key":"YQ==","key":"Yg==","value":"Mg=="}"#,
        ),
        step("/v3/kv/range", r#"{"key":"YQ==","range_end":"Yw=="}"#),
        // An array is read into a bytes field too, each element as Go's uint8.
        step("/v3/kv/range", r#"{"key":[97]}"#),
        step("/v3/kv/range", r#"{"key":[97,null]}"#),
        step("/v3/kv/range", r#"{"key":[]}"#),
        step("/v3/kv/range", r#"{"key":[256]}"#),
        step("/v3/kv/range", r#"{"key":[-1]}"#),
        step("/v3/kv/range", r#"{"key":[1.5]}"#),
        step("/v3/kv/range", r#"{"key":[1e2]}"#),
        step("/v3/kv/range", r#"{"key":["a"]}"#),
        step("/v3/kv/range", r#"{"key":[[97]]}"#),
        step("/v3/kv/range", r#"{"key":[true]}"#),
        step("/v3/kv/range", r#"{"key":[{}]}"#),
    ])
    .await;
}

/// Integer fields take a JSON number or a string holding one, and refuse anything else
/// with Go's words (`json: cannot unmarshal number 1.5 into Go value of type int64`, a
/// syntax error for the text between the quotes). Before: serde's words for a float, a
/// non-number string or an out-of-range number (same code and status); later, `-0.0` read
/// as 0 and `"5\u0035"` refused at the string's start (etcd reads the text as written),
/// and `-0` refused beside a `null` list or bool (such a body was read again from its
/// parsed value, where `-0` had become `-0.0`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integer_fields_are_read_as_etcd_reads_them() {
    same_as_etcd(&[
        step("/v3/kv/put", r#"{"key":"YQ==","value":"MQ=="}"#),
        step("/v3/kv/range", r#"{"key":"YQ==","limit":1.5}"#),
        step("/v3/kv/range", r#"{"key":"YQ==","limit":1e3}"#),
        step("/v3/kv/range", r#"{"key":"YQ==","limit":1.50}"#),
        step("/v3/kv/range", r#"{"key":"YQ==","limit":"1e3"}"#),
        step("/v3/kv/range", r#"{"key":"YQ==","limit":"abc"}"#),
        step(
            "/v3/kv/range",
            r#"{"key":"YQ==","limit":99999999999999999999}"#,
        ),
        step(
            "/v3/kv/range",
            r#"{"key":"YQ==","limit":"9223372036854775808"}"#,
        ),
        step("/v3/kv/range", r#"{"key":"YQ==","limit":true}"#),
        step("/v3/kv/range", r#"{"key":"YQ==","limit":{}}"#),
        step("/v3/kv/range", r#"{"key":"YQ==","limit":[1]}"#),
        step("/v3/kv/range", r#"{"key":"YQ==","limit":""}"#),
        step("/v3/kv/range", r#"{"key":"YQ==","limit":"+5"}"#),
        step("/v3/kv/range", r#"{"key":"YQ==","limit":"05"}"#),
        step("/v3/kv/range", r#"{"key":"YQ==","limit":"1.x"}"#),
        step("/v3/kv/range", r#"{"key":"YQ==","limit":"tru"}"#),
        step("/v3/kv/range", r#"{"key":"YQ==","limit":"\t5"}"#),
        step("/v3/kv/range", r#"{"key":"YQ==","limit":" 1 "}"#),
        step("/v3/kv/range", r#"{"key":"YQ==","limit":"null"}"#),
        step("/v3/kv/range", r#"{"key":"YQ==","limit":-0}"#),
        step("/v3/kv/range", r#"{"key":"YQ==","limit":-0.0}"#),
        step("/v3/kv/range", r#"{"key":"YQ==","limit":-0e0}"#),
        step("/v3/kv/range", r#"{"key":"YQ==","limit":"-0.0"}"#),
        step("/v3/kv/range", r#"{"key":"YQ==","limit":"\u0035"}"#),
        step("/v3/kv/range", r#"{"key":"YQ==","limit":"5\u0035"}"#),
        step("/v3/kv/range", r#"{"key":"YQ==","limit":"x\u0035"}"#),
        step("/v3/kv/range", r#"{"key":"YQ==","limit":"1 \u0035"}"#),
        step(
            "/v3/kv/range",
            r#"{"key":"YQ==","serializable":null,"limit":-0}"#,
        ),
        step(
            "/v3/kv/txn",
            r#"{"compare":null,"success":[{"request_range":{"key":"YQ==","limit":-0}}]}"#,
        ),
        step("/v3/cluster/member/remove", r#"{"ID":-1}"#),
        step("/v3/cluster/member/remove", r#"{"ID":"-1"}"#),
        step("/v3/cluster/member/remove", r#"{"ID":"-0"}"#),
        step(
            "/v3/cluster/member/remove",
            r#"{"ID":"18446744073709551616"}"#,
        ),
        step("/v3/cluster/member/remove", r#"{"ID":"[1,"}"#),
        step(
            "/v3/cluster/member/remove",
            r#"{"ID":18446744073709551615}"#,
        ),
        step("/v3/lease/grant", r#"{"TTL":"1.5"}"#),
        step(
            "/v3/kv/txn",
            r#"{"compare":[{"key":"YQ==","target":"VERSION","version":1.5}]}"#,
        ),
    ])
    .await;
}

/// Enum fields take one of the enum's names exactly as written, or any `int32`, even one
/// the enum lacks (as etcd 3.5 and 3.4 take it). Before: pbjson's reading, which refused
/// an unknown number and worded an unknown name in serde's words.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enum_fields_are_read_as_etcd_reads_them() {
    // One key: etcd sorts nothing, whatever the order's number (a sort target it lacks
    // crashes etcd 3.5.1, so none is sent).
    same_as_etcd(&[
        step("/v3/kv/put", r#"{"key":"YQ==","value":"MQ=="}"#),
        step("/v3/kv/range", r#"{"key":"YQ==","sort_order":"DESCEND"}"#),
        step("/v3/kv/range", r#"{"key":"YQ==","sort_order":2}"#),
        step("/v3/kv/range", r#"{"key":"YQ==","sort_order":7}"#),
        step("/v3/kv/range", r#"{"key":"YQ==","sort_order":-1}"#),
        step("/v3/kv/range", r#"{"key":"YQ==","sort_order":-2147483648}"#),
        step("/v3/kv/range", r#"{"key":"YQ==","sort_order":-0}"#),
        step("/v3/kv/range", r#"{"key":"YQ==","sort_order":null}"#),
        step(
            "/v3/kv/range",
            r#"{"key":"YQ==","sort_target":"MOD","sort_order":"ASCEND"}"#,
        ),
        step(
            "/v3/auth/role/grant",
            r#"{"name":"r","perm":{"permType":9,"key":"YQ=="}}"#,
        ),
    ])
    .await;
    // etcd 3.4 words these otherwise (`unknown value "X" for enum
    // etcdserverpb.RangeRequest_SortOrder`, the Go type for a number): its status and
    // code are compared, 3.5's whole answer.
    let refused = [
        step("/v3/kv/range", r#"{"key":"YQ==","sort_order":"2"}"#),
        step("/v3/kv/range", r#"{"key":"YQ==","sort_order":"descend"}"#),
        step("/v3/kv/range", r#"{"key":"YQ==","sort_order":"X"}"#),
        step("/v3/kv/range", r#"{"key":"YQ==","sort_order":"null"}"#),
        step("/v3/kv/range", r#"{"key":"YQ==","sort_order":""}"#),
        step("/v3/kv/range", r#"{"key":"YQ==","sort_order":" DESCEND"}"#),
        step(
            "/v3/kv/range",
            r#"{"key":"YQ==","sort_order":"DESC\u0045ND"}"#,
        ),
        step("/v3/kv/range", r#"{"key":"YQ==","sort_order":"\"X"}"#),
        step("/v3/kv/range", r#"{"key":"YQ==","sort_order":"é"}"#),
        step("/v3/kv/range", r#"{"key":"YQ==","sort_order":true}"#),
        step("/v3/kv/range", r#"{"key":"YQ==","sort_order":1.5}"#),
        step("/v3/kv/range", r#"{"key":"YQ==","sort_order":1.0}"#),
        step("/v3/kv/range", r#"{"key":"YQ==","sort_order":-0.0}"#),
        step("/v3/kv/range", r#"{"key":"YQ==","sort_order":2147483648}"#),
        step("/v3/kv/range", r#"{"key":"YQ==","sort_order":{}}"#),
        step("/v3/kv/range", r#"{"key":"YQ==","sort_order":[]}"#),
        step("/v3/kv/range", r#"{"key":"YQ==","sort_target":"Y"}"#),
        step(
            "/v3/kv/txn",
            r#"{"compare":[{"key":"YQ==","result":"EQUAL","target":"Z","version":"1"}]}"#,
        ),
        step("/v3/maintenance/alarm", r#"{"action":"GET","alarm":"Q"}"#),
        step(
            "/v3/auth/role/grant",
            r#"{"name":"r","perm":{"permType":"Z","key":"YQ=="}}"#,
        ),
    ];
    let cairn = run(Kind::Cairn, &refused).await;
    let etcd35 = run(Kind::Etcd35, &refused).await;
    for (c, e) in cairn.iter().zip(&etcd35) {
        assert_eq!(c, e, "cairn and etcd 3.5 differ");
    }
    let etcd34 = run(Kind::Etcd34, &refused).await;
    for (c, e) in cairn.iter().zip(&etcd34) {
        let code = |answer: &str| {
            let (head, body) = answer.split_once(" -> ").unwrap();
            let (status, json) = body.split_once(' ').unwrap();
            let json: serde_json::Value = serde_json::from_str(json).unwrap();
            (head.to_string(), status.to_string(), json["code"].clone())
        };
        assert_eq!(code(c), code(e), "cairn and etcd 3.4 differ");
        assert!(c.contains("\"code\":3"), "{c}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_answer_as_etcd() {
    same_as_etcd(&[
        step("/v3/lease/grant", r#"{"TTL":"60","ID":"4660"}"#),
        step(
            "/v3/kv/put",
            r#"{"key":"YQ==","value":"MQ==","lease":"4660"}"#,
        ),
        Step {
            path: "/v3/lease/timetolive",
            body: br#"{"ID":"4660","keys":true}"#,
            mask: &["TTL"],
        },
        step("/v3/lease/leases", ""),
        Step {
            path: "/v3/lease/keepalive",
            body: br#"{"ID":"4660"}"#,
            mask: &["TTL"],
        },
        step("/v3/lease/keepalive", r#"{"ID":"77"}"#),
        step("/v3/lease/revoke", r#"{"ID":"4660"}"#),
        step("/v3/kv/range", r#"{"key":"YQ=="}"#),
        step("/v3/kv/lease/timetolive", r#"{"ID":"4660"}"#),
        step("/v3/lease/revoke", r#"{"ID":"4660"}"#),
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_and_election_answer_as_etcd() {
    // "bG9jaw==" is "lock", "ZWw=" is "el", "djE=" "v1", "djI=" "v2".
    same_as_etcd(&[
        step("/v3/lease/grant", r#"{"TTL":"60","ID":"4660"}"#),
        step("/v3/lock/lock", r#"{"name":"bG9jaw==","lease":"4660"}"#),
        step("/v3/lock/unlock", r#"{"key":"bG9jay8xMjM0"}"#),
        step("/v3/election/leader", r#"{"name":"ZWw="}"#),
        step("/v3/election/campaign", r#"{"name":"ZWw=","lease":"4660","value":"djE="}"#),
        step("/v3/election/proclaim", r#"{"leader":{"name":"ZWw=","key":"ZWwvMTIzNA==","rev":"4","lease":"4660"},"value":"djI="}"#),
        step("/v3/election/leader", r#"{"name":"ZWw="}"#),
        step("/v3/election/resign", r#"{"leader":{"name":"ZWw=","key":"ZWwvMTIzNA==","rev":"4","lease":"4660"}}"#),
        step("/v3/election/leader", r#"{"name":"ZWw="}"#),
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_with_the_token_header_answers_as_etcd() {
    let mut answers = Vec::new();
    for kind in [Kind::Cairn, Kind::Etcd35] {
        let server = ServerProc::start(kind, &[]);
        let port = server.client_port;
        let mut seen = Vec::new();
        for (path, body) in [
            ("/v3/auth/user/add", r#"{"name":"root","password":"pw"}"#),
            ("/v3/auth/user/grant", r#"{"user":"root","role":"root"}"#),
            ("/v3/auth/role/add", r#"{"name":"reader"}"#),
            (
                "/v3/auth/role/grant",
                r#"{"name":"reader","perm":{"permType":"READ","key":"YQ==","range_end":"Yw=="}}"#,
            ),
            ("/v3/auth/user/add", r#"{"name":"ann","password":"pw2"}"#),
            ("/v3/auth/user/grant", r#"{"user":"ann","role":"reader"}"#),
            ("/v3/auth/role/get", r#"{"role":"reader"}"#),
            ("/v3/auth/user/list", ""),
            ("/v3/auth/enable", ""),
            ("/v3/kv/range", r#"{"key":"YQ=="}"#),
            (
                "/v3/auth/authenticate",
                r#"{"name":"root","password":"wrong"}"#,
            ),
        ] {
            seen.push(format!(
                "{path} -> {}",
                answer(port, path, body, None).await
            ));
        }
        let token = login(port, "ann", "pw2").await;
        for (path, body) in [
            ("/v3/kv/range", r#"{"key":"YQ=="}"#),
            ("/v3/kv/put", r#"{"key":"YQ==","value":"MQ=="}"#),
            ("/v3/kv/range", r#"{"key":"eg=="}"#),
        ] {
            let got = answer(port, path, body, Some(&token)).await;
            seen.push(format!("ann {path} -> {got}"));
        }
        let root = login(port, "root", "pw").await;
        let body = r#"{"key":"YQ=="}"#;
        let got = answer(port, "/v3/kv/range", body, Some("not-a-token")).await;
        seen.push(format!("bad token -> {got}"));
        let got = answer(port, "/v3/auth/disable", "", Some(&root)).await;
        seen.push(format!("root disable -> {got}"));
        answers.push(seen);
    }
    assert_same(&answers);
}

/// POSTs `body` to `path`: `"<status> <body>"`, the body masked.
async fn answer(port: u16, path: &str, body: &str, token: Option<&str>) -> String {
    let (code, text) = post(port, path, body, token).await;
    format!("{code} {}", mask_json_fields(&text, MASKED))
}

/// Logs in as `name` through the gateway: the token.
async fn login(port: u16, name: &str, password: &str) -> String {
    let body = serde_json::json!({"name": name, "password": password}).to_string();
    let (code, text) = post(port, "/v3/auth/authenticate", &body, None).await;
    assert_eq!(code, 200, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["token"].as_str().unwrap().to_string()
}

/// Requires the answers of cairn (first) to equal those of etcd 3.5 (second) and, when
/// given, etcd 3.4 (third).
fn assert_same<T: PartialEq + std::fmt::Debug>(answers: &[T]) {
    for (other, name) in answers[1..].iter().zip(["etcd 3.5", "etcd 3.4"]) {
        assert_eq!(&answers[0], other, "cairn and {name} differ");
    }
}

/// Each line masked.
fn masked(lines: &[String]) -> Vec<String> {
    lines.iter().map(|l| mask_json_fields(l, MASKED)).collect()
}

/// Watches as `curl -d` does (the whole request body sent at once; etcd's gateway reads no
/// more of an HTTP/1.1 body once it answers): events of puts and deletes made meanwhile, a
/// create and a cancel in one body, and a watch on a compacted revision.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_streams_events_and_cancels_as_etcd() {
    let mut answers = Vec::new();
    for kind in [Kind::Cairn, Kind::Etcd35, Kind::Etcd34] {
        let server = ServerProc::start(kind, &[]);
        let port = server.client_port;
        let mut w = Stream::open(
            port,
            "/v3/watch",
            r#"{"create_request":{"key":"YQ==","range_end":"Yw==","prev_kv":true}}"#,
        )
        .await;
        let mut seen = vec![format!("status {}", w.status)];
        seen.push(w.line().await);
        post(port, "/v3/kv/put", r#"{"key":"YQ==","value":"MQ=="}"#, None).await;
        seen.push(w.line().await);
        post(port, "/v3/kv/put", r#"{"key":"YQ==","value":"Mg=="}"#, None).await;
        seen.push(w.line().await);
        post(port, "/v3/kv/deleterange", r#"{"key":"YQ=="}"#, None).await;
        seen.push(w.line().await);
        let mut c = Stream::open(
            port,
            "/v3/watch",
            r#"{"create_request":{"key":"Yg=="}} {"cancel_request":{"watch_id":"0"}}"#,
        )
        .await;
        seen.push(c.line().await);
        seen.push(c.line().await);
        post(port, "/v3/kv/compaction", r#"{"revision":"3"}"#, None).await;
        let mut old = Stream::open(
            port,
            "/v3/watch",
            r#"{"create_request":{"key":"YQ==","start_revision":"2"}}"#,
        )
        .await;
        seen.push(old.line().await);
        answers.push(masked(&seen));
    }
    assert_same(&answers);
}

/// A lease kept alive through `/v3/lease/keepalive`, several requests in one body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_answers_each_request_as_etcd() {
    let mut answers = Vec::new();
    for kind in [Kind::Cairn, Kind::Etcd35] {
        let server = ServerProc::start(kind, &[]);
        let port = server.client_port;
        post(port, "/v3/lease/grant", r#"{"TTL":"30","ID":"9"}"#, None).await;
        let mut k = Stream::open(port, "/v3/lease/keepalive", r#"{"ID":"9"}{"ID":"9"}"#).await;
        let seen = vec![
            format!("status {}", k.status),
            mask_json_fields(&k.line().await, MASKED),
            mask_json_fields(&k.line().await, MASKED),
        ];
        answers.push(seen);
    }
    assert_same(&answers);
}

/// Runs `curl -s` with `args`: what it printed, then the status and content type, with the
/// server-specific fields masked.
fn curl(args: &[&str]) -> String {
    mask_json_fields(&curl_unmasked(args), MASKED)
}

/// [`curl`] without the masking.
fn curl_unmasked(args: &[&str]) -> String {
    let out = std::process::Command::new("curl")
        .args(["-s", "-m", "20", "-w", " %{http_code} %{content_type}"])
        .args(args)
        .output()
        .expect("curl runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `curl` as scripts use it: a put and a read, and the answer to a GET and to a path etcd
/// does not serve.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_gets_the_answers_etcd_gives() {
    let mut answers = Vec::new();
    for kind in [Kind::Cairn, Kind::Etcd35] {
        let server = ServerProc::start(kind, &[]);
        let base = server.url();
        answers.push(vec![
            curl(&[
                "-X",
                "POST",
                &format!("{base}/v3/kv/put"),
                "-d",
                r#"{"key":"Zm9v","value":"YmFy"}"#,
            ]),
            curl(&[&format!("{base}/v3/kv/range"), "-d", r#"{"key":"Zm9v"}"#]),
            curl(&[&format!("{base}/v3/kv/range")]),
            curl(&[&format!("{base}/v3/kv/rang"), "-d", "{}"]),
        ]);
    }
    assert_same(&answers);
}

/// A body past `--max-request-bytes` is refused with etcd's error; the store keeps its
/// data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_body_is_refused_as_etcd_refuses_it() {
    let value = "eHh4".repeat(700_000); // 2.1 MB of "x" once decoded.
    let body = format!(r#"{{"key":"YQ==","value":"{value}"}}"#);
    let mut answers = Vec::new();
    for kind in [Kind::Cairn, Kind::Etcd35] {
        let server = ServerProc::start(kind, &[]);
        let (code, text) = post(server.client_port, "/v3/kv/put", &body, None).await;
        let (_, range) = post(
            server.client_port,
            "/v3/kv/range",
            r#"{"key":"YQ=="}"#,
            None,
        )
        .await;
        answers.push((code, text, mask_json_fields(&range, MASKED)));
    }
    assert_same(&answers);
    assert_eq!(answers[0].0, 429);
}

/// Replaces every leaf of a JSON value with its type's name: what two servers must share
/// where the values themselves are theirs (versions, sizes, URLs).
fn shape(v: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), shape(v))).collect()),
        Value::Array(a) => Value::Array(a.iter().map(shape).collect()),
        Value::String(_) => Value::String("string".into()),
        Value::Number(_) => Value::String("number".into()),
        Value::Bool(_) => Value::String("bool".into()),
        Value::Null => Value::Null,
    }
}

/// Maintenance and cluster calls as etcd 3.5 answers them: alarms, and the fields that
/// status and the member list fill.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_and_cluster_answer_as_etcd() {
    let mut answers = Vec::new();
    for kind in [Kind::Cairn, Kind::Etcd35] {
        let server = ServerProc::start(kind, &[]);
        let port = server.client_port;
        let mut seen = Vec::new();
        let (code, text) = post(port, "/v3/maintenance/alarm", r#"{"action":"GET"}"#, None).await;
        seen.push(format!("alarm {code} {}", mask_json_fields(&text, MASKED)));
        for path in ["/v3/maintenance/status", "/v3/cluster/member/list"] {
            let (code, text) = post(port, path, "{}", None).await;
            let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
            // cairn's status carries etcd 3.6's two additions, as its gRPC status does.
            if let Some(m) = v.as_object_mut() {
                m.remove("dbSizeQuota");
                m.remove("storageVersion");
            }
            seen.push(format!("{path} {code} {}", shape(&v)));
        }
        answers.push(seen);
    }
    assert_same(&answers);
}

/// `/v3/maintenance/defragment` answers `{}` as etcd 3.5 and 3.4 do (cairn added a header
/// before), and `/v3/election/observe` streams the leader and each proclamation as etcd's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn defragment_and_observe_answer_as_etcd() {
    same_as_etcd(&[step("/v3/maintenance/defragment", "{}")]).await;
    let mut answers = Vec::new();
    for kind in [Kind::Cairn, Kind::Etcd35, Kind::Etcd34] {
        let server = ServerProc::start(kind, &[]);
        let port = server.client_port;
        post(port, "/v3/lease/grant", r#"{"TTL":"60","ID":"4660"}"#, None).await;
        let campaign = r#"{"name":"ZWw=","lease":"4660","value":"djE="}"#;
        let (_, won) = post(port, "/v3/election/campaign", campaign, None).await;
        let mut observe = Stream::open(port, "/v3/election/observe", r#"{"name":"ZWw="}"#).await;
        let mut seen = vec![format!("status {}", observe.status), observe.line().await];
        let won: serde_json::Value = serde_json::from_str(&won).unwrap();
        let proclaim = serde_json::json!({"leader": won["leader"], "value": "djI="});
        post(port, "/v3/election/proclaim", &proclaim.to_string(), None).await;
        seen.push(observe.line().await);
        answers.push(masked(&seen));
    }
    assert_same(&answers);
    assert!(
        answers[0][2].contains(r#""value":"djI=""#),
        "{:?}",
        answers[0]
    );
}

/// `/v3/maintenance/snapshot` streams the backend as etcd's gateway does: `{"result":...}`
/// lines whose blobs, joined, are a snapshot etcdutl reads (the same revision and count of
/// keys as etcd's, the same revisions in the key bucket), each line's `remaining_bytes` what
/// is left of the file after it, the last blob the SHA-256 of the file. What must differ is not compared: the file's bytes and
/// size, its chunking, and cairn's first message carrying a header and `version` (etcd
/// 3.6's additions; etcd 3.5.1 sends neither).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_streams_a_file_etcdutl_reads_as_etcd() {
    use base64::Engine;
    use sha2::Digest;
    let mut answers = Vec::new();
    for kind in [Kind::Cairn, Kind::Etcd35] {
        let server = ServerProc::start(kind, &[]);
        let port = server.client_port;
        for body in [
            r#"{"key":"YQ==","value":"MQ=="}"#,
            r#"{"key":"Yg==","value":"Mg=="}"#,
            r#"{"key":"YQ==","value":"Mw=="}"#,
        ] {
            post(port, "/v3/kv/put", body, None).await;
        }
        let (code, text) = post(port, "/v3/maintenance/snapshot", "{}", None).await;
        let mut blobs = Vec::new();
        let mut remaining = Vec::new();
        let mut keys = std::collections::BTreeSet::new();
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let result = v["result"].as_object().expect("a result line");
            keys.extend(
                result
                    .keys()
                    .filter(|k| !["header", "version", "remaining_bytes"].contains(&k.as_str()))
                    .cloned(),
            );
            let blob = result["blob"].as_str().expect("a blob");
            blobs.push(
                base64::engine::general_purpose::STANDARD
                    .decode(blob)
                    .unwrap(),
            );
            let left = result.get("remaining_bytes").and_then(|r| r.as_str());
            remaining.push(left.map_or(0, |r| r.parse::<usize>().unwrap()));
        }
        let (sum, file) = blobs.split_last().expect("at least the checksum");
        let file: Vec<u8> = file.concat();
        let mut sent = 0;
        for (blob, left) in blobs.iter().zip(&remaining) {
            sent = (sent + blob.len()).min(file.len());
            assert_eq!(*left, file.len() - sent, "{kind:?}: remaining_bytes");
        }
        assert_eq!(
            sum.as_slice(),
            sha2::Sha256::digest(&file).as_slice(),
            "{kind:?}"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("snap.db");
        std::fs::write(&path, [file.as_slice(), sum.as_slice()].concat()).unwrap();
        let status =
            cairn_tests::etcdutl35(&["snapshot", "status", path.to_str().unwrap(), "-w", "json"]);
        assert_eq!(status.code, 0, "{kind:?}: {}", status.stderr);
        let status: serde_json::Value = serde_json::from_str(status.stdout.trim()).unwrap();
        let body = dir.path().join("body.db");
        std::fs::write(&body, &file).unwrap();
        let reader = cairn_bbolt::Reader::open(&body).unwrap();
        let revisions = reader
            .entries(&reader.bucket(b"key").unwrap())
            .map(|e| e.unwrap().key)
            .collect::<Vec<_>>();
        answers.push(format!(
            "{code} lines with {keys:?}; revision {}; total keys {}; revisions {revisions:?}",
            status["revision"], status["totalKey"]
        ));
    }
    assert_same(&answers);
}

/// A request with the given headers (a `host` among them replaces the default): the
/// status, the `access-control-*` headers, and the body.
async fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Vec<String>, String) {
    let full: Body = Full::new(Bytes::from(body.to_string())).boxed();
    let resp = send(port, method, path, headers, full).await;
    let code = resp.status().as_u16();
    let mut cors: Vec<String> = resp
        .headers()
        .iter()
        .filter(|(k, _)| k.as_str().starts_with("access-control-"))
        .map(|(k, v)| format!("{k}: {}", v.to_str().unwrap()))
        .collect();
    cors.sort();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (code, cors, String::from_utf8_lossy(&bytes).into_owned())
}

/// `--host-whitelist` refuses a plain-HTTP request naming another host with etcd's 421
/// and text, on the gateway and on /version alike; a listed host is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_whitelist_refuses_other_hosts_as_etcd() {
    let mut answers = Vec::new();
    for kind in [Kind::Cairn, Kind::Etcd35] {
        let server = ServerProc::start(kind, &["--host-whitelist=example.com,localhost"]);
        let port = server.client_port;
        let mut seen = Vec::new();
        for (host, path) in [
            ("evil.example:2379", "/v3/kv/range"),
            ("evil.example", "/version"),
            ("example.com:2379", "/v3/kv/range"),
            ("localhost", "/v3/kv/range"),
        ] {
            let (code, _, body) =
                request(port, "POST", path, &[("host", host)], r#"{"key":"YQ=="}"#).await;
            let body = if code == 200 {
                "served".to_string()
            } else {
                body
            };
            seen.push(format!("{host} {path} -> {code} {body}"));
        }
        answers.push(seen);
    }
    assert_same(&answers);
    assert!(answers[0][0].contains(" 421 "), "{:?}", answers[0]);
}

/// `--cors` gives a listed origin etcd's CORS headers, an unlisted one none, and answers
/// a preflight `OPTIONS` with 200; the default (`*`) gives them to every request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_headers_are_etcds() {
    let mut answers = Vec::new();
    for kind in [Kind::Cairn, Kind::Etcd35] {
        let listed = ServerProc::start(
            kind,
            &["--cors=http://a.example:8080,http://b.example:8080"],
        );
        let any = ServerProc::start(kind, &[]);
        let mut seen = Vec::new();
        for (port, method, origin) in [
            (listed.client_port, "POST", "http://a.example:8080"),
            (listed.client_port, "POST", "http://c.example:8080"),
            (listed.client_port, "OPTIONS", "http://b.example:8080"),
            (any.client_port, "POST", "http://c.example:8080"),
        ] {
            let (code, cors, body) = request(
                port,
                method,
                "/v3/kv/range",
                &[("origin", origin)],
                r#"{"key":"YQ=="}"#,
            )
            .await;
            seen.push(format!(
                "{method} {origin} -> {code} {cors:?} {}",
                mask_json_fields(&body, MASKED)
            ));
        }
        answers.push(seen);
    }
    assert_same(&answers);
}

/// Python's etcd3gw client runs its KV, txn, lease, watch and lock calls on cairn with
/// the results it gets from etcd 3.5.
#[test]
fn python_etcd3gw_runs_as_on_etcd() {
    let mut outputs = Vec::new();
    for kind in [Kind::Cairn, Kind::Etcd35] {
        let server = ServerProc::start(kind, &[]);
        let run = cairn_tests::pyclient::etcd3gw_script("127.0.0.1", server.client_port);
        assert_eq!(run.code, 0, "etcd3gw on {kind:?} failed: {}", run.stderr);
        assert!(run.stdout.ends_with("done: True\n"), "{}", run.stdout);
        outputs.push(run.stdout);
    }
    assert_same(&outputs);
}

/// A gateway watch whose HTTP client goes away is closed on the server at once, not at its
/// next event. Before: the gateway noticed the client gone only when it had an event to
/// write, so a quiet watch stayed registered for as long as its key stayed quiet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_whose_client_leaves_is_closed() {
    let server = ServerProc::start(Kind::Cairn, &[]);
    let mut w = Stream::open(
        server.client_port,
        "/v3/watch",
        r#"{"create_request":{"key":"cXVpZXQ="}}"#,
    )
    .await;
    assert!(w.line().await.contains(r#""created":true"#));
    server.wait_watchers(1);
    drop(w);
    server.wait_watchers(0);
}

/// On an `https://` client URL the gateway answers over TLS (curl checking the server's
/// certificate against the CA), and the Host check does not apply there, as in etcd.
#[test]
fn the_gateway_answers_over_tls_as_etcd() {
    use cairn_tests::certs::{Pki, Use};
    let pki = Pki::new("gw");
    let pair = pki.issue("server", "127.0.0.1", 2, Use::Server);
    let cert = format!("--cert-file={}", pair.cert.display());
    let key = format!("--key-file={}", pair.key.display());
    let mut answers = Vec::new();
    for kind in [Kind::Cairn, Kind::Etcd35] {
        let server = ServerProc::start_https(kind, &[&cert, &key, "--host-whitelist=example.com"]);
        let base = server.url();
        let ca = pki.ca().display().to_string();
        answers.push(vec![
            curl(&[
                "--cacert",
                &ca,
                &format!("{base}/v3/kv/put"),
                "-d",
                r#"{"key":"Zm9v","value":"YmFy"}"#,
            ]),
            curl(&[
                "--cacert",
                &ca,
                &format!("{base}/v3/kv/range"),
                "-d",
                r#"{"key":"Zm9v"}"#,
            ]),
        ]);
    }
    assert_same(&answers);
    assert!(
        answers[0][1].ends_with(" 200 application/json"),
        "{:?}",
        answers[0]
    );
}

/// With `--client-cert-auth` and auth enabled, etcd's gateway refuses a request whose
/// client certificate has a CN (400, `CommonName of client sending a request against
/// gateway will be ignored and not used as expected`), with or without a token: the
/// gateway never acts as the certificate's user. A certificate without a CN passes, and
/// the request acts as its token's user, or as nobody without one. Before auth is enabled,
/// and on paths outside the gateway, a CN changes nothing.
#[test]
fn a_client_certificate_cn_is_refused_through_the_gateway_as_etcd() {
    use cairn_tests::certs::{Pki, Use};
    let pki = Pki::new("gwcn");
    let server_pair = pki.issue("server", "127.0.0.1", 2, Use::Server);
    let ann = pki.issue("ann", "ann", 3, Use::Client);
    let no_cn = pki.issue("nocn", "", 4, Use::Client);
    let flags = [
        format!("--cert-file={}", server_pair.cert.display()),
        format!("--key-file={}", server_pair.key.display()),
        format!("--trusted-ca-file={}", pki.ca().display()),
        "--client-cert-auth".to_string(),
    ];
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let ca = pki.ca().display().to_string();
    let mut answers = Vec::new();
    for kind in [Kind::Cairn, Kind::Etcd35] {
        let server = ServerProc::start_https(kind, &flags);
        let base = server.url();
        let call_unmasked =
            |pair: &cairn_tests::certs::Pair, token: &str, path: &str, body: &str| {
                let (cert, key) = (
                    pair.cert.display().to_string(),
                    pair.key.display().to_string(),
                );
                let auth = format!("Authorization: {token}");
                let url = format!("{base}{path}");
                let mut args = vec![
                    "--cacert", &ca, "--cert", &cert, "--key", &key, &url, "-d", body,
                ];
                if !token.is_empty() {
                    args.extend(["-H", &auth]);
                }
                format!("{path} {body} -> {}", curl_unmasked(&args))
            };
        let call = |pair: &cairn_tests::certs::Pair, token: &str, path: &str, body: &str| {
            call_unmasked(pair, token, path, body)
                .split_once(" -> ")
                .map(|(head, out)| format!("{head} -> {}", mask_json_fields(out, MASKED)))
                .unwrap_or_default()
        };
        let mut seen = Vec::new();
        for (path, body) in [
            ("/v3/auth/user/add", r#"{"name":"root","password":"pw"}"#),
            ("/v3/auth/user/grant", r#"{"user":"root","role":"root"}"#),
            ("/v3/auth/user/add", r#"{"name":"ann","password":"pw2"}"#),
            ("/v3/kv/put", r#"{"key":"YQ==","value":"MQ=="}"#),
            ("/v3/kv/range", r#"{"key":"YQ=="}"#),
            ("/v3/auth/enable", ""),
        ] {
            seen.push(call(&ann, "", path, body));
        }
        let login = call_unmasked(
            &no_cn,
            "",
            "/v3/auth/authenticate",
            r#"{"name":"root","password":"pw"}"#,
        );
        let token = login
            .split(r#""token":""#)
            .nth(1)
            .and_then(|t| t.split('"').next())
            .unwrap_or_else(|| panic!("no token in {login}; before: {seen:?}"))
            .to_string();
        for (pair, token, path) in [
            (&ann, "", "/v3/kv/range"),
            (&ann, token.as_str(), "/v3/kv/range"),
            (&ann, "", "/v3beta/kv/range"),
            (&ann, "", "/v3/no/such/path"),
            (&no_cn, "", "/v3/kv/range"),
            (&no_cn, token.as_str(), "/v3/kv/range"),
        ] {
            seen.push(call(pair, token, path, r#"{"key":"YQ=="}"#));
        }
        answers.push(seen);
    }
    assert_same(&answers);
    assert!(
        answers[0][6].ends_with(" 400 text/plain; charset=utf-8"),
        "{:?}",
        answers[0]
    );
}
