//! etcdctl 3.5.1's `check perf` and `check datascale`: their workload tables and the
//! steps both commands are made of, which cairnctl runs in etcdctl's order and prints.
//!
//! - The prefix must hold no key ([`ensure_prefix_empty`]).
//! - Puts of random keys under the prefix, each load's clients on their own connections,
//!   fed through one channel: `check perf` paces them at the load's rate (at most one
//!   request of catch-up after a stall) for the load's duration ([`paced_puts`]);
//!   `check datascale` sends its number of keys as fast as the clients take them
//!   ([`counted_puts`]).
//! - The prefix deleted, and if asked compacted at the delete's revision and every
//!   endpoint defragmented ([`clean_up`]), each step printed as etcdctl prints it.
//! - `check perf`'s verdict: the throughput reached 90% of the rate, the slowest request
//!   took at most 500 ms, the latency stddev is at most 100 ms and no request failed
//!   ([`verdict`]); `check datascale`'s: the growth of the member's resident memory
//!   ([`memory_verdict`], read by [`crate::memory`]) unless a request failed.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cairn_client::concurrency::prefix_end;
use cairn_client::Client;
use cairn_proto::etcdserverpb::{
    CompactionRequest, DefragmentRequest, DeleteRangeRequest, RangeRequest,
};
use tokio::sync::{mpsc, Mutex};
use tokio::time::Instant;

use crate::load::{Op, Rng};
use crate::report::Report;
use crate::Error;

/// One of etcdctl's check-perf workload models.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PerfLoad {
    /// Puts per second the pacer issues.
    pub rate: u32,
    /// Concurrent clients (and connections).
    pub clients: usize,
    /// How long the pacer runs.
    pub duration: Duration,
}

/// The model named by `--load` (`s`, `small`, `m`, `medium`, `l`, `large`, `xl`,
/// `xLarge`).
pub fn perf_load(name: &str) -> Option<PerfLoad> {
    let (rate, clients) = match name {
        "s" | "small" => (150, 50),
        "m" | "medium" => (1000, 200),
        "l" | "large" => (8000, 500),
        "xl" | "xLarge" => (15000, 1000),
        _ => return None,
    };
    Some(PerfLoad {
        rate,
        clients,
        duration: Duration::from_secs(60),
    })
}

/// One of etcdctl's check-datascale workload models.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatascaleLoad {
    /// Keys put.
    pub keys: u64,
    /// Bytes per key-value pair as etcdctl announces it (the key and the value are half
    /// of it each).
    pub kv_size: usize,
    /// Concurrent clients (and connections).
    pub clients: usize,
}

/// The datascale model named by `--load` (the same names as [`perf_load`]).
pub fn datascale_load(name: &str) -> Option<DatascaleLoad> {
    let (keys, clients) = match name {
        "s" | "small" => (10_000, 50),
        "m" | "medium" => (100_000, 200),
        "l" | "large" => (1_000_000, 500),
        "xl" | "xLarge" => (3_000_000, 1000),
        _ => return None,
    };
    Some(DatascaleLoad {
        keys,
        kv_size: 1024,
        clients,
    })
}

/// Whether a call failed without reaching a server (its endpoint could not be dialled or
/// the connection broke before an answer). The client then moves to its next endpoint, so
/// the call is made again, as the Go client's balancer would have sent it to a live one.
fn unreached(status: &tonic::Status) -> bool {
    match status.code() {
        tonic::Code::Unavailable => !status.message().starts_with("etcdserver:"),
        tonic::Code::Unknown => status.message() == "transport error",
        tonic::Code::Cancelled => status.message() == "operation was canceled",
        _ => false,
    }
}

/// How many times a put of the load that reached no server is made again.
const PUT_RETRIES: u32 = 4;

/// How long a call outside the load is made again while no endpoint is reached.
const REACH_WITHIN: Duration = Duration::from_secs(30);

/// Makes `call` until it reaches a server or [`REACH_WITHIN`] passes, a tenth of a
/// second apart.
async fn reaching<T, F, Fut>(mut call: F) -> Result<T, tonic::Status>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    let deadline = Instant::now() + REACH_WITHIN;
    loop {
        match call().await {
            Ok(r) => return Ok(r.into_inner()),
            Err(s) if unreached(&s) && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(s) => return Err(s),
        }
    }
}

/// Fails with [`Error::PrefixHasKeys`] when a key exists under `prefix`, within `timeout`
/// if given (etcdctl's `check perf` waits the load's duration, `check datascale` as long
/// as it takes).
pub async fn ensure_prefix_empty(
    first: &Client,
    prefix: &str,
    timeout: Option<Duration>,
) -> Result<(), Error> {
    let key = prefix.as_bytes().to_vec();
    let req = RangeRequest {
        range_end: prefix_end(&key),
        key,
        limit: 1,
        ..RangeRequest::default()
    };
    let range = reaching(|| {
        let (mut kv, req) = (first.kv(), req.clone());
        async move { kv.range(req).await }
    });
    let found = match timeout {
        Some(t) => tokio::time::timeout(t, range)
            .await
            .map_err(|_| Error::Timeout("checking the prefix".to_string()))??,
        None => range.await?,
    };
    if found.kvs.is_empty() {
        Ok(())
    } else {
        Err(Error::PrefixHasKeys(prefix.to_string()))
    }
}

/// The verdict lines for a report made at `rate` requests per second.
pub fn verdict(report: &Report, rate: u32) -> (Vec<String>, bool) {
    let mut lines = Vec::new();
    let mut pass = true;
    if !report.errors.is_empty() {
        lines.push("FAIL: too many errors".to_string());
        for (e, n) in &report.errors {
            lines.push(format!("FAIL: ERROR({e}) -> {n}"));
        }
        pass = false;
    }
    let shown = report.rps as u64 + 1;
    if report.rps / f64::from(rate) <= 0.9 {
        lines.push(format!("FAIL: Throughput too low: {shown} writes/s"));
        pass = false;
    } else {
        lines.push(format!("PASS: Throughput is {shown} writes/s"));
    }
    if report.slowest > 0.5 {
        lines.push(format!(
            "Slowest request took too long: {:.6}s",
            report.slowest
        ));
        pass = false;
    } else {
        lines.push(format!("PASS: Slowest request took {:.6}s", report.slowest));
    }
    if report.stddev > 0.1 {
        lines.push(format!("Stddev too high: {:.6}s", report.stddev));
        pass = false;
    } else {
        lines.push(format!("PASS: Stddev is {:.6}s", report.stddev));
    }
    lines.push(if pass { "PASS" } else { "FAIL" }.to_string());
    (lines, pass)
}

/// `check datascale`'s result line for the resident memory `before` and `after` the puts
/// (in bytes): the growth in MiB with two decimals, as etcdctl prints it.
pub fn memory_verdict(before: f64, after: f64) -> String {
    let mb = (after - before) / (1024.0 * 1024.0);
    format!("PASS: Approximate system memory used : {mb:.2} MB.")
}

/// gRPC-Go's text of a failed call, as etcdctl's `FAIL: ERROR(...)` lines show it:
/// `rpc error: code = Unavailable desc = ...`.
fn go_error_text(status: &tonic::Status) -> String {
    format!(
        "rpc error: code = {} desc = {}",
        cairn_proto::grpc_code_name(status.code()),
        status.message()
    )
}

/// One client's latencies (seconds) and errors by text.
type Tally = (Vec<f64>, BTreeMap<String, u64>);

/// Sends the requests numbered through `rx` until it is closed; each one done adds one to
/// `done`. A request still running at `hard_stop` ends the client.
async fn worker(
    conn: Client,
    op: Arc<Op>,
    rx: Arc<Mutex<mpsc::Receiver<u64>>>,
    seed: u64,
    hard_stop: Option<Instant>,
    done: Arc<AtomicU64>,
) -> Tally {
    let mut kv = conn.kv();
    let mut rng = Rng::new(seed);
    let mut lats = Vec::new();
    let mut errors = BTreeMap::new();
    loop {
        let next = { rx.lock().await.recv().await };
        let Some(n) = next else { break };
        let began = Instant::now();
        let sent = async {
            // A put that reached no server is made again (the client has moved on to its
            // next endpoint), a few times at most.
            let mut tries = 0;
            loop {
                match op.send(&conn, &mut kv, n, &mut rng).await {
                    Err(s) if unreached(&s) && tries < PUT_RETRIES => tries += 1,
                    other => return other,
                }
            }
        };
        let result = match hard_stop {
            Some(at) => tokio::time::timeout_at(at, sent).await,
            None => Ok(sent.await),
        };
        done.fetch_add(1, Ordering::Relaxed);
        match result {
            Ok(Ok(())) => lats.push(began.elapsed().as_secs_f64()),
            Ok(Err(s)) => *errors.entry(go_error_text(&s)).or_insert(0) += 1,
            Err(_) => {
                *errors.entry("request timed out".to_string()).or_insert(0) += 1;
                break;
            }
        }
    }
    (lats, errors)
}

/// The clients of one run: `clients` workers over `conns` (reused round-robin if fewer),
/// reading request numbers from the returned sender.
struct Workers {
    tx: mpsc::Sender<u64>,
    tasks: Vec<tokio::task::JoinHandle<Tally>>,
    start: Instant,
}

impl Workers {
    fn start(
        conns: &[Client],
        clients: usize,
        op: Op,
        hard_stop: Option<Instant>,
        done: &Arc<AtomicU64>,
    ) -> Workers {
        let op = Arc::new(op);
        let (tx, rx) = mpsc::channel::<u64>(clients.max(1));
        let rx = Arc::new(Mutex::new(rx));
        let mut tasks = Vec::with_capacity(clients);
        for i in 0..clients {
            let Some(conn) = conns.get(i % conns.len().max(1)) else {
                break;
            };
            tasks.push(tokio::spawn(worker(
                conn.clone(),
                Arc::clone(&op),
                Arc::clone(&rx),
                i as u64 + 1,
                hard_stop,
                Arc::clone(done),
            )));
        }
        Workers {
            tx,
            tasks,
            start: Instant::now(),
        }
    }

    /// Closes the channel, waits for the clients and reports their requests.
    async fn finish(self, name: &str) -> Report {
        drop(self.tx);
        let mut lats = Vec::new();
        let mut errors: BTreeMap<String, u64> = BTreeMap::new();
        for t in self.tasks {
            match t.await {
                Ok((l, e)) => {
                    lats.extend(l);
                    for (k, v) in e {
                        *errors.entry(k).or_insert(0) += v;
                    }
                }
                Err(e) => {
                    *errors
                        .entry(format!("client task failed: {e}"))
                        .or_insert(0) += 1
                }
            }
        }
        Report::new(name, lats, errors, self.start.elapsed(), false)
    }
}

/// `check perf`'s load: puts of 1 KiB values under 256-byte random keys after `prefix`,
/// paced at the load's rate for its duration. Requests still running 30 s after the
/// pacer stops are abandoned (counted as errors).
pub async fn paced_puts(conns: &[Client], prefix: &str, load: PerfLoad) -> Report {
    let op = Op::PutPrefixed {
        prefix: prefix.as_bytes().to_vec(),
        key_size: 256,
        value: vec![0u8; 1024],
    };
    let start = Instant::now();
    let end = start + load.duration;
    let done = Arc::new(AtomicU64::new(0));
    let workers = Workers::start(
        conns,
        load.clients,
        op,
        Some(end + Duration::from_secs(30)),
        &done,
    );
    let period = Duration::from_secs_f64(1.0 / f64::from(load.rate.max(1)));
    let mut due = start;
    let mut n = 0u64;
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        if due > now {
            tokio::time::sleep_until(due.min(end)).await;
            continue;
        }
        if tokio::time::timeout_at(end, workers.tx.send(n))
            .await
            .is_err()
        {
            break;
        }
        n += 1;
        // At most one request's worth of catch-up after a stall, like a token bucket of one.
        let now = Instant::now();
        due = (due + period).max(now.checked_sub(period).unwrap_or(now));
    }
    workers.finish("check-perf").await
}

/// `check datascale`'s load: the load's number of puts of 512-byte values under 512-byte
/// random keys after `prefix`, as fast as its clients take them; `done` counts the
/// requests answered (the progress bar's count).
pub async fn counted_puts(
    conns: &[Client],
    prefix: &str,
    load: DatascaleLoad,
    done: &Arc<AtomicU64>,
) -> Report {
    let half = load.kv_size / 2;
    let op = Op::PutPrefixed {
        prefix: prefix.as_bytes().to_vec(),
        key_size: half,
        value: vec![0u8; half],
    };
    let workers = Workers::start(conns, load.clients, op, None, done);
    for n in 0..load.keys {
        if workers.tx.send(n).await.is_err() {
            break;
        }
    }
    workers.finish("check-datascale").await
}

/// What both checks do after their load.
#[derive(Debug, Clone, Default)]
pub struct CleanUp {
    /// How long the delete may take (`check perf`: 30 s; `check datascale`: unbounded).
    pub delete_timeout: Option<Duration>,
    /// Compact at the revision of the delete.
    pub auto_compact: bool,
    /// Defragment each of these endpoints (through its own client) in order.
    pub defrag: Vec<(String, Client)>,
}

/// How long etcdctl gives a compaction or one member's defragmentation.
const MAINTENANCE_TIMEOUT: Duration = Duration::from_secs(30);

/// Deletes the keys under `prefix`, then compacts and defragments as `how` says, giving
/// each line etcdctl prints to `print` when it would print it (`Compacting with revision
/// 38985`, `Compacted with revision 38985`, `Defragmenting "127.0.0.1:2379"`,
/// `Defragmented "127.0.0.1:2379"`). `quote` quotes an endpoint as Go's `%q`.
pub async fn clean_up(
    first: &Client,
    prefix: &str,
    how: CleanUp,
    quote: impl Fn(&str) -> String,
    mut print: impl FnMut(String),
) -> Result<(), Error> {
    let key = prefix.as_bytes().to_vec();
    let req = DeleteRangeRequest {
        range_end: prefix_end(&key),
        key,
        ..DeleteRangeRequest::default()
    };
    let delete = reaching(|| {
        let (mut kv, req) = (first.kv(), req.clone());
        async move { kv.delete_range(req).await }
    });
    let deleted = match how.delete_timeout {
        Some(t) => tokio::time::timeout(t, delete)
            .await
            .map_err(|_| Error::Timeout("deleting the prefix".to_string()))??,
        None => delete.await?,
    };
    if how.auto_compact {
        let rev = deleted.header.map(|h| h.revision).unwrap_or(0);
        print(format!("Compacting with revision {rev}"));
        let compact = reaching(|| {
            let mut kv = first.kv();
            async move {
                kv.compact(CompactionRequest {
                    revision: rev,
                    physical: true,
                })
                .await
            }
        });
        tokio::time::timeout(MAINTENANCE_TIMEOUT, compact)
            .await
            .map_err(|_| deadline())??;
        print(format!("Compacted with revision {rev}"));
    }
    for (ep, client) in how.defrag {
        print(format!("Defragmenting {}", quote(&ep)));
        let defrag = reaching(|| {
            let mut maintenance = client.maintenance();
            async move { maintenance.defragment(DefragmentRequest {}).await }
        });
        tokio::time::timeout(MAINTENANCE_TIMEOUT, defrag)
            .await
            .map_err(|_| deadline())??;
        print(format!("Defragmented {}", quote(&ep)));
    }
    Ok(())
}

/// The error of a call cut by its deadline, as the Go client reports it.
fn deadline() -> Error {
    Error::Rpc(Box::new(tonic::Status::deadline_exceeded(
        "context deadline exceeded",
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_and_aliases() {
        assert_eq!(perf_load("s"), perf_load("small"));
        assert_eq!(
            perf_load("xLarge").map(|l| (l.rate, l.clients)),
            Some((15000, 1000))
        );
        assert_eq!(
            perf_load("m").map(|l| l.duration),
            Some(Duration::from_secs(60))
        );
        assert_eq!(perf_load("xlarge"), None);
        assert_eq!(datascale_load("m"), datascale_load("medium"));
        assert_eq!(
            datascale_load("xLarge").map(|l| (l.keys, l.kv_size, l.clients)),
            Some((3_000_000, 1024, 1000))
        );
        assert_eq!(
            datascale_load("s").map(|l| (l.keys, l.clients)),
            Some((10_000, 50))
        );
        assert_eq!(datascale_load("x"), None);
    }

    #[test]
    fn failed_puts_are_counted_under_go_texts() {
        let s = tonic::Status::unavailable("etcdserver: leader changed");
        assert_eq!(
            go_error_text(&s),
            "rpc error: code = Unavailable desc = etcdserver: leader changed"
        );
        assert!(!unreached(&s));
        assert!(unreached(&tonic::Status::unavailable("tcp connect error")));
        assert!(!unreached(&tonic::Status::invalid_argument("x")));
    }

    #[test]
    fn memory_growth_in_mib() {
        let mib = 1024.0 * 1024.0;
        assert_eq!(
            memory_verdict(10.0 * mib, 57.91 * mib),
            "PASS: Approximate system memory used : 47.91 MB."
        );
        assert_eq!(
            memory_verdict(10.0 * mib, 9.5 * mib),
            "PASS: Approximate system memory used : -0.50 MB."
        );
    }

    #[test]
    fn verdicts() {
        let lats = vec![0.01; 100];
        let fast = Report::new(
            "check-perf",
            lats.clone(),
            BTreeMap::new(),
            Duration::from_secs(1),
            false,
        );
        let (lines, pass) = verdict(&fast, 100);
        assert!(pass);
        assert_eq!(lines[0], "PASS: Throughput is 101 writes/s");
        assert_eq!(lines[1], "PASS: Slowest request took 0.010000s");
        assert_eq!(lines.last().map(String::as_str), Some("PASS"));
        let (lines, pass) = verdict(&fast, 150);
        assert!(!pass);
        assert_eq!(lines[0], "FAIL: Throughput too low: 101 writes/s");
        assert_eq!(lines.last().map(String::as_str), Some("FAIL"));
    }
}
