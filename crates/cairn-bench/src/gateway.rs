//! `gw-put`: the put workload through the JSON gateway. Each of `--clients` clients opens
//! its own HTTP/1.1 keep-alive connection (endpoints round-robin) and keeps one
//! `POST /v3/kv/put` in flight, as a script or a gateway client such as Python's `etcd3gw`
//! does; `--conns` does not apply. A request that fails, or answers other than 200, is
//! counted under its error and the client dials again.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::time::Instant;

use crate::args::{Args, GwPutArgs};
use crate::load::{Bounds, KeyGen, Rng};
use crate::report::Report;
use crate::Error;

/// Bytes in JSON, as the gateway takes them.
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Runs `gw-put` within `bounds` and reports it as the gRPC workloads are reported.
pub(crate) async fn put(
    args: &Args,
    p: &GwPutArgs,
    bounds: Bounds,
    rng: &mut Rng,
) -> Result<Report, Error> {
    let mut addrs = Vec::new();
    for ep in &args.endpoints {
        if ep.starts_with("https://") {
            return Err(Error::Args("gw-put takes http:// endpoints only".into()));
        }
        addrs.push(
            ep.trim_start_matches("http://")
                .trim_end_matches('/')
                .to_string(),
        );
    }
    let value = Arc::new(B64.encode(rng.bytes(p.keys.val_size)));
    let keys = KeyGen::from_args(&p.keys);
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..bounds.clients {
        let addr = addrs[i % addrs.len()].clone();
        let (value, keys, next) = (Arc::clone(&value), keys.clone(), Arc::clone(&next));
        let mut rng = Rng::new(i as u64);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors: BTreeMap<String, u64> = BTreeMap::new();
            let mut cut = false;
            let mut conn: Option<SendRequest<Full<Bytes>>> = None;
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= bounds.total {
                    break;
                }
                if Instant::now() >= bounds.deadline {
                    cut = true;
                    break;
                }
                let key = B64.encode(keys.key(n, &mut rng));
                let body = format!(r#"{{"key":"{key}","value":"{value}"}}"#);
                let began = Instant::now();
                let sent =
                    tokio::time::timeout(bounds.request_timeout, send(&mut conn, &addr, body))
                        .await;
                match sent {
                    Ok(Ok(())) => latencies.push(began.elapsed().as_secs_f64()),
                    Ok(Err(e)) => {
                        conn = None;
                        *errors.entry(e).or_insert(0) += 1;
                    }
                    Err(_) => {
                        conn = None;
                        *errors.entry("request timed out".into()).or_insert(0) += 1;
                    }
                }
            }
            (latencies, errors, cut)
        }));
    }
    let mut latencies = Vec::new();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let mut cut_short = false;
    for t in tasks {
        let (l, e, cut) = t
            .await
            .map_err(|e| Error::Args(format!("a gw-put client failed: {e}")))?;
        latencies.extend(l);
        for (k, v) in e {
            *errors.entry(k).or_insert(0) += v;
        }
        cut_short |= cut;
    }
    Ok(Report::new(
        "gw-put",
        latencies,
        errors,
        start.elapsed(),
        cut_short,
    ))
}

/// Sends one put on the client's connection, dialling it first when there is none.
async fn send(
    conn: &mut Option<SendRequest<Full<Bytes>>>,
    addr: &str,
    body: String,
) -> Result<(), String> {
    if conn.is_none() {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("dial: {e}"))?;
        let _ = stream.set_nodelay(true);
        let (sender, driver) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(driver);
        *conn = Some(sender);
    }
    let Some(sender) = conn.as_mut() else {
        return Err("no connection".into());
    };
    let req = hyper::Request::post("/v3/kv/put")
        .header("host", addr)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("send: {e}"))?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    if status != hyper::StatusCode::OK {
        return Err(format!(
            "HTTP {}: {}",
            status.as_u16(),
            String::from_utf8_lossy(&body)
        ));
    }
    Ok(())
}
