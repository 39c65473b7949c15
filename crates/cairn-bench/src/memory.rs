//! The resident memory a member reports: `process_resident_memory_bytes` read from its
//! `/metrics` page over HTTP/1.1, as etcdctl 3.5.1's `check datascale` reads it.
//!
//! The URL is built as etcdctl builds it from the endpoint: `https://host:port` stays
//! HTTPS, `http://host:port` stays HTTP, and a bare `host:port` is fetched over plain
//! HTTP. The first line starting with the metric's name gives the value (the `# HELP`
//! and `# TYPE` lines start with `#`). A failure is worded as etcdctl prints it, Go's
//! `http.Get` error behind `fetch error: `.

use bytes::Bytes;
use cairn_client::{HandshakeError, Security};
use http_body_util::{BodyExt, Empty};

/// The metric `check datascale` reads.
pub const RESIDENT_MEMORY: &str = "process_resident_memory_bytes";

/// The `/metrics` URL etcdctl 3.5.1 reads for `endpoint`.
pub fn metrics_url(endpoint: &str) -> String {
    let base = if endpoint.starts_with("https://") || endpoint.starts_with("http://") {
        endpoint.to_string()
    } else {
        format!("http://{endpoint}")
    };
    format!("{base}/metrics")
}

/// The value of [`RESIDENT_MEMORY`] in a metrics page, or the line etcdctl prints when it
/// is missing or not a number.
pub fn resident_memory_in(page: &str) -> Result<f64, String> {
    let Some(rest) = page
        .split('\n')
        .find_map(|l| l.strip_prefix(RESIDENT_MEMORY))
    else {
        return Err(format!("could not find: {RESIDENT_MEMORY}"));
    };
    let text = rest.trim();
    if text.is_empty() {
        return Err(format!("could not find: {RESIDENT_MEMORY}"));
    }
    text.parse::<f64>()
        .ok()
        .ok_or_else(|| format!("parse error: strconv.ParseFloat: parsing {text:?}: invalid syntax"))
}

/// Fetches `endpoint`'s metrics page with `security` (the TLS of the command's gRPC
/// connections, used when the URL is `https://`) and reads [`RESIDENT_MEMORY`]. The error
/// is the line etcdctl prints (`fetch error: Get "http://...": dial tcp ...: connect:
/// connection refused`).
pub async fn resident_memory(endpoint: &str, security: &Security) -> Result<f64, String> {
    let url = metrics_url(endpoint);
    let page = fetch(&url, security).await.map_err(|e| match e {
        Failed::Get(e) => format!("fetch error: Get {url:?}: {e}"),
        Failed::Read(e) => format!("fetch error: reading {url}: {e}"),
    })?;
    resident_memory_in(&page)
}

/// The most of a metrics page read (etcd's is some 100 KiB): a stranger's endpoint
/// cannot make the check hold an endless body in memory.
const MAX_PAGE: usize = 64 << 20;

/// Where a fetch failed, in Go's words: getting the response, or reading its body.
enum Failed {
    Get(String),
    Read(String),
}

/// The body of a GET of `url`.
async fn fetch(url: &str, security: &Security) -> Result<String, Failed> {
    get(url, security)
        .await
        .map_err(Failed::Get)?
        .map_err(Failed::Read)
}

/// Sends the GET; the body (or why it could not be read) once the response came.
async fn get(url: &str, security: &Security) -> Result<Result<String, String>, String> {
    let uri: tonic::transport::Uri = url.parse().map_err(|e| format!("{e}"))?;
    let https = uri.scheme_str() == Some("https");
    let security = if https {
        security.for_http1()
    } else {
        Security::Plain
    };
    let addr = match (uri.host(), uri.port_u16()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => format!("{h}:{}", if https { 443 } else { 80 }),
        _ => return Err("http: no Host in request URL".to_string()),
    };
    let host = uri.authority().map(|a| a.to_string()).unwrap_or_default();
    let io = cairn_client::tls::dial(uri.clone(), security)
        .await
        .map_err(|e| dial_text(&addr, &e))?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| hyper_text(&e))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = hyper::Request::get(uri.path())
        .header(hyper::header::HOST, host)
        .header(hyper::header::USER_AGENT, "Go-http-client/1.1")
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let resp = send.send_request(req).await.map_err(|e| hyper_text(&e))?;
    let body = http_body_util::Limited::new(resp.into_body(), MAX_PAGE)
        .collect()
        .await
        .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
        .map_err(|e| match e.downcast_ref::<hyper::Error>() {
            Some(h) => hyper_text(h),
            None => "http: response body too large".to_string(),
        });
    Ok(body)
}

/// Go's `net` words for a failed dial or handshake.
fn dial_text(addr: &str, e: &std::io::Error) -> String {
    if let Some(h) = e.get_ref().and_then(|i| i.downcast_ref::<HandshakeError>()) {
        return h.go_text.clone();
    }
    let errno = match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
        std::io::ErrorKind::TimedOut => "connection timed out".to_string(),
        std::io::ErrorKind::ConnectionReset => "connection reset by peer".to_string(),
        _ => e.to_string(),
    };
    format!("dial tcp {addr}: connect: {errno}")
}

/// Go's words for a failed exchange: a connection closed early is `EOF`.
fn hyper_text(e: &hyper::Error) -> String {
    if e.is_incomplete_message() || e.is_canceled() {
        "EOF".to_string()
    } else {
        e.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_built_as_etcdctl_builds_them() {
        assert_eq!(
            metrics_url("127.0.0.1:2379"),
            "http://127.0.0.1:2379/metrics"
        );
        assert_eq!(metrics_url("http://a:1"), "http://a:1/metrics");
        assert_eq!(metrics_url("https://a:1"), "https://a:1/metrics");
    }

    #[test]
    fn the_first_line_with_the_name_gives_the_value() {
        let page = "# HELP process_resident_memory_bytes Resident memory size in bytes.\n\
                    # TYPE process_resident_memory_bytes gauge\n\
                    process_resident_memory_bytes 4.5056e+07\n\
                    process_resident_memory_bytes 1\n";
        assert_eq!(resident_memory_in(page), Ok(45_056_000.0));
        assert_eq!(
            resident_memory_in("process_virtual_memory_bytes 1\n"),
            Err("could not find: process_resident_memory_bytes".to_string())
        );
        assert_eq!(
            resident_memory_in("process_resident_memory_bytes x1\n"),
            Err("parse error: strconv.ParseFloat: parsing \"x1\": invalid syntax".to_string())
        );
    }

    #[tokio::test]
    async fn an_endless_page_is_cut() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ep = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                .await;
            let chunk = format!("{:x}\r\n{}\r\n", 1 << 20, "x".repeat(1 << 20));
            // 80 MiB at most; the connection stays open until the client leaves.
            for _ in 0..80 {
                if s.write_all(chunk.as_bytes()).await.is_err() {
                    return;
                }
            }
            let _ = s.read(&mut [0u8; 1]).await;
        });
        let err = resident_memory(&ep, &Security::Plain).await.unwrap_err();
        assert_eq!(
            err,
            format!("fetch error: reading http://{ep}/metrics: http: response body too large")
        );
    }

    #[tokio::test]
    async fn a_refused_connection_is_worded_as_go_words_it() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let ep = format!("127.0.0.1:{port}");
        let err = resident_memory(&ep, &Security::Plain).await.unwrap_err();
        assert_eq!(
            err,
            format!(
                "fetch error: Get \"http://{ep}/metrics\": dial tcp {ep}: connect: connection refused"
            )
        );
    }
}
