//! The streaming workloads: watch delivery latency, watchers held open (for the server's
//! memory per watcher), and lease keep-alive throughput.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use cairn_client::Client;
use cairn_proto::etcdserverpb::{
    watch_request, LeaseGrantRequest, LeaseKeepAliveRequest, PutRequest, WatchCreateRequest,
    WatchRequest,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::args::{LeaseKeepaliveArgs, WatchArgs, WatchHoldArgs};
use crate::load::{error_text, Bounds, Rng};
use crate::report::Report;
use crate::Error;

/// The prefix the watch workload writes and watches under.
const WATCH_PREFIX: &[u8] = b"bench-watch/";

fn create(key: Vec<u8>, range_end: Vec<u8>) -> WatchRequest {
    WatchRequest {
        request_union: Some(watch_request::RequestUnion::CreateRequest(
            WatchCreateRequest {
                key,
                range_end,
                ..Default::default()
            },
        )),
    }
}

/// A watch stream that starts with `first` (queued before the call: a gRPC server may
/// send its response headers only with its first message) and then takes requests from the
/// returned sender.
async fn open_stream(
    client: &Client,
    first: Vec<WatchRequest>,
) -> Result<
    (
        mpsc::Sender<WatchRequest>,
        tonic::Streaming<cairn_proto::etcdserverpb::WatchResponse>,
    ),
    Error,
> {
    let (tx, rx) = mpsc::channel(first.len().max(16));
    for req in first {
        tx.try_send(req)
            .map_err(|_| Error::Timeout("watch request queue full".into()))?;
    }
    let stream = client
        .watch()
        .watch(ReceiverStream::new(rx))
        .await
        .map_err(|s| Error::Rpc(Box::new(s)))?
        .into_inner();
    Ok((tx, stream))
}

/// Waits for `n` created responses on `stream`.
async fn await_created(
    stream: &mut tonic::Streaming<cairn_proto::etcdserverpb::WatchResponse>,
    n: usize,
) -> Result<(), Error> {
    let mut created = 0;
    while created < n {
        match stream.message().await {
            Ok(Some(r)) if r.created => created += 1,
            Ok(Some(r)) if r.canceled => {
                return Err(Error::Timeout(format!(
                    "watch canceled: {}",
                    r.cancel_reason
                )))
            }
            Ok(Some(_)) => {}
            Ok(None) => return Err(Error::Timeout("watch stream ended".into())),
            Err(s) => return Err(Error::Rpc(Box::new(s))),
        }
    }
    Ok(())
}

/// `bench watch`: every delivery's latency from the start of the put it reports.
pub(crate) async fn watch_latency(
    conns: &[Client],
    w: &WatchArgs,
    bounds: Bounds,
) -> Result<Report, Error> {
    let epoch = Instant::now();
    let mut end = WATCH_PREFIX.to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    // Open every watcher before writing, so each sees every put.
    let mut streams = Vec::with_capacity(w.watchers);
    for i in 0..w.watchers {
        let conn = &conns[i % conns.len()];
        let (tx, mut stream) =
            open_stream(conn, vec![create(WATCH_PREFIX.to_vec(), end.clone())]).await?;
        await_created(&mut stream, 1).await?;
        streams.push((tx, stream));
    }
    let expected = bounds.total;
    let mut watchers = Vec::with_capacity(streams.len());
    for (tx, mut stream) in streams {
        watchers.push(tokio::spawn(async move {
            let _keep_open = tx;
            let mut latencies = Vec::with_capacity(usize::try_from(expected).unwrap_or(0));
            let mut seen = 0u64;
            let deadline = bounds.deadline + Duration::from_secs(5);
            while seen < expected {
                let next = tokio::time::timeout_at(deadline, stream.message()).await;
                let Ok(Ok(Some(r))) = next else { break };
                let now = epoch.elapsed().as_nanos() as u64;
                for e in &r.events {
                    let Some(kv) = &e.kv else { continue };
                    let mut stamp = [0u8; 8];
                    stamp.copy_from_slice(&kv.value[..8]);
                    let sent = u64::from_le_bytes(stamp);
                    latencies.push(now.saturating_sub(sent) as f64 / 1e9);
                    seen += 1;
                }
            }
            latencies
        }));
    }
    // The writers: a closed loop of puts, each value stamped with its start time.
    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let mut writers = Vec::with_capacity(bounds.clients);
    for i in 0..bounds.clients {
        let mut kv = conns[i % conns.len()].kv();
        let next = Arc::clone(&next);
        let mut rng = Rng::new(i as u64 + 1);
        let filler = rng.bytes(w.val_size - 8);
        writers.push(tokio::spawn(async move {
            let mut errors: BTreeMap<String, u64> = BTreeMap::new();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= bounds.total || Instant::now() >= bounds.deadline {
                    break;
                }
                let mut key = WATCH_PREFIX.to_vec();
                key.extend_from_slice(&n.to_be_bytes());
                let mut value = (epoch.elapsed().as_nanos() as u64).to_le_bytes().to_vec();
                value.extend_from_slice(&filler);
                let put = kv.put(PutRequest {
                    key,
                    value,
                    ..Default::default()
                });
                match tokio::time::timeout(bounds.request_timeout, put).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(s)) => *errors.entry(error_text(&s)).or_insert(0) += 1,
                    Err(_) => *errors.entry("request timed out".into()).or_insert(0) += 1,
                }
            }
            errors
        }));
    }
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    for t in writers {
        for (e, n) in t.await.unwrap_or_default() {
            *errors.entry(e).or_insert(0) += n;
        }
    }
    let mut latencies = Vec::new();
    let mut short = 0u64;
    for t in watchers {
        let got = t.await.unwrap_or_default();
        short += expected.saturating_sub(got.len() as u64);
        latencies.extend(got);
    }
    if short > 0 {
        errors.insert("events not delivered".into(), short);
    }
    Ok(Report::new(
        "watch",
        latencies,
        errors,
        started.elapsed(),
        Instant::now() >= bounds.deadline,
    ))
}

/// `bench watch-hold`: opens the watches, reports how long that took (one "request" per
/// watch), holds them, and returns the report (printed before the hold by the caller's
/// `on_ready`).
pub(crate) async fn watch_hold(
    conns: &[Client],
    w: &WatchHoldArgs,
    on_ready: impl FnOnce(&Report),
) -> Result<Report, Error> {
    let started = Instant::now();
    let held = open_watches(conns, w.watchers, w.streams, |i| {
        (format!("bench-hold/{i:08}").into_bytes(), vec![])
    })
    .await?;
    let took = started.elapsed();
    let report = Report::new(
        "watch-hold",
        vec![took.as_secs_f64(); w.watchers],
        BTreeMap::new(),
        took,
        false,
    );
    on_ready(&report);
    tokio::time::sleep(w.hold).await;
    drop(held);
    Ok(report)
}

/// Watch streams held open; dropping it closes them.
pub(crate) struct HeldWatches(
    #[allow(dead_code)] // Held only to keep the streams open.
    Vec<(
        mpsc::Sender<WatchRequest>,
        tonic::Streaming<cairn_proto::etcdserverpb::WatchResponse>,
    )>,
);

/// Opens `--range-watchers` range watches for `bench put`, watch `i` on the prefix
/// `bench-range/{i:08}/` (no key a put writes), and returns them once all are created.
pub(crate) async fn open_range_watches(
    conns: &[Client],
    watchers: usize,
    streams: usize,
) -> Result<HeldWatches, Error> {
    open_watches(conns, watchers, streams, |i| {
        let key = format!("bench-range/{i:08}/").into_bytes();
        let mut end = key.clone();
        if let Some(last) = end.last_mut() {
            *last += 1;
        }
        (key, end)
    })
    .await
}

/// Opens `watchers` watches, watch `i` on `range(i)`, spread over `streams` streams, and
/// waits until every one is created.
async fn open_watches(
    conns: &[Client],
    watchers: usize,
    streams: usize,
    range: fn(usize) -> (Vec<u8>, Vec<u8>),
) -> Result<HeldWatches, Error> {
    let per_stream = watchers.div_ceil(streams.max(1));
    let mut tasks = Vec::with_capacity(streams);
    for s in 0..streams {
        let conn = conns[s % conns.len()].clone();
        let first = s * per_stream;
        let last = ((s + 1) * per_stream).min(watchers);
        tasks.push(tokio::spawn(async move {
            let creates = (first..last)
                .map(|i| {
                    let (key, end) = range(i);
                    create(key, end)
                })
                .collect();
            let (tx, mut stream) = open_stream(&conn, creates).await?;
            await_created(&mut stream, last.saturating_sub(first)).await?;
            Ok::<_, Error>((tx, stream))
        }));
    }
    let mut held = Vec::with_capacity(tasks.len());
    for t in tasks {
        let opened = t
            .await
            .map_err(|e| Error::Timeout(format!("watch task failed: {e}")))??;
        held.push(opened);
    }
    Ok(HeldWatches(held))
}

/// `bench lease-keepalive`: closed-loop keep-alives over `clients` streams.
pub(crate) async fn lease_keepalive(
    conns: &[Client],
    l: &LeaseKeepaliveArgs,
    bounds: Bounds,
) -> Result<Report, Error> {
    let mut leases = Vec::with_capacity(l.leases);
    let mut lease = conns[0].lease();
    for _ in 0..l.leases {
        let r = lease
            .lease_grant(LeaseGrantRequest { ttl: 600, id: 0 })
            .await
            .map_err(|s| Error::Rpc(Box::new(s)))?;
        leases.push(r.into_inner().id);
    }
    let leases = Arc::new(leases);
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(bounds.clients);
    for i in 0..bounds.clients {
        let conn = conns[i % conns.len()].clone();
        let (leases, next) = (Arc::clone(&leases), Arc::clone(&next));
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors: BTreeMap<String, u64> = BTreeMap::new();
            let (tx, rx) = mpsc::channel(1);
            // The first request goes with the call (see `open_stream`).
            let mut n = next.fetch_add(1, Ordering::Relaxed);
            if n >= bounds.total {
                return (latencies, errors);
            }
            let mut began = Instant::now();
            let first = leases[(n % leases.len() as u64) as usize];
            if tx.try_send(LeaseKeepAliveRequest { id: first }).is_err() {
                return (latencies, errors);
            }
            let mut stream = match conn.lease().lease_keep_alive(ReceiverStream::new(rx)).await {
                Ok(s) => s.into_inner(),
                Err(s) => {
                    errors.insert(error_text(&s), 1);
                    return (latencies, errors);
                }
            };
            loop {
                match tokio::time::timeout(bounds.request_timeout, stream.message()).await {
                    Ok(Ok(Some(r))) if r.ttl > 0 => latencies.push(began.elapsed().as_secs_f64()),
                    Ok(Ok(Some(_))) => *errors.entry("lease not found".into()).or_insert(0) += 1,
                    Ok(Ok(None)) => {
                        *errors.entry("keep-alive stream ended".into()).or_insert(0) += 1;
                        break;
                    }
                    Ok(Err(s)) => {
                        *errors.entry(error_text(&s)).or_insert(0) += 1;
                        break;
                    }
                    Err(_) => {
                        *errors.entry("request timed out".into()).or_insert(0) += 1;
                        break;
                    }
                }
                n = next.fetch_add(1, Ordering::Relaxed);
                if n >= bounds.total || Instant::now() >= bounds.deadline {
                    break;
                }
                let id = leases[(n % leases.len() as u64) as usize];
                began = Instant::now();
                if tx.send(LeaseKeepAliveRequest { id }).await.is_err() {
                    *errors.entry("keep-alive stream closed".into()).or_insert(0) += 1;
                    break;
                }
            }
            (latencies, errors)
        }));
    }
    let mut latencies = Vec::new();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    for t in tasks {
        let (l, e) = t.await.unwrap_or_default();
        latencies.extend(l);
        for (k, n) in e {
            *errors.entry(k).or_insert(0) += n;
        }
    }
    Ok(Report::new(
        "lease-keepalive",
        latencies,
        errors,
        started.elapsed(),
        Instant::now() >= bounds.deadline,
    ))
}
