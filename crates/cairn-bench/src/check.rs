//! `check perf`: etcdctl 3.5's pass/fail write test.
//!
//! A pacer issues puts of 1 KiB values under a prefix at the load's rate (at most one
//! request of catch-up after a stall) for the load's duration; the load's number of
//! clients, each on its own connection, send them. Then the prefix is deleted (and, if
//! asked, compacted and defragmented) and the run passes when the throughput reached 90%
//! of the rate, the slowest request took at most 500 ms, the latency stddev is at most
//! 100 ms and no request failed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use cairn_client::concurrency::prefix_end;
use cairn_client::Client;
use cairn_proto::etcdserverpb::{
    CompactionRequest, DefragmentRequest, DeleteRangeRequest, RangeRequest,
};
use tokio::sync::{mpsc, Mutex};
use tokio::time::Instant;

use crate::load::{error_text, Op, Rng};
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

/// What `check perf` does besides the load.
#[derive(Debug, Clone)]
pub struct CheckPerfOptions {
    /// The workload model.
    pub load: PerfLoad,
    /// Prefix of the keys written; it must be empty at the start.
    pub prefix: String,
    /// Compact at the revision of the final delete.
    pub auto_compact: bool,
    /// Defragment each endpoint afterwards.
    pub auto_defrag: bool,
    /// Endpoints to defragment.
    pub endpoints: Vec<String>,
}

/// The result of `check perf`: lines to print in order, and whether it passed.
#[derive(Debug, Clone)]
pub struct CheckPerfOutcome {
    /// Output lines, without newlines.
    pub lines: Vec<String>,
    /// Whether every check passed.
    pub pass: bool,
    /// The latency report behind the verdict.
    pub report: Report,
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

/// Sends requests numbered by the pacer until it closes the channel.
async fn worker(
    conn: Client,
    op: Arc<Op>,
    rx: Arc<Mutex<mpsc::Receiver<u64>>>,
    seed: u64,
    hard_stop: Instant,
) -> (Vec<f64>, BTreeMap<String, u64>) {
    let mut kv = conn.kv();
    let mut rng = Rng::new(seed);
    let mut lats = Vec::new();
    let mut errors = BTreeMap::new();
    loop {
        let next = { rx.lock().await.recv().await };
        let Some(n) = next else { break };
        let began = Instant::now();
        match tokio::time::timeout_at(hard_stop, op.send(&conn, &mut kv, n, &mut rng)).await {
            Ok(Ok(())) => lats.push(began.elapsed().as_secs_f64()),
            Ok(Err(s)) => *errors.entry(error_text(&s)).or_insert(0) += 1,
            Err(_) => {
                *errors.entry("request timed out".to_string()).or_insert(0) += 1;
                break;
            }
        }
    }
    (lats, errors)
}

/// Runs `check perf` over `conns` (one per client; reused round-robin if fewer).
pub async fn check_perf(
    conns: Vec<Client>,
    opts: CheckPerfOptions,
) -> Result<CheckPerfOutcome, Error> {
    let Some(first) = conns.first().cloned() else {
        return Err(Error::Args("no connections".to_string()));
    };
    let load = opts.load;
    let prefix = opts.prefix.as_bytes().to_vec();
    let range_end = prefix_end(&prefix);
    let existing = tokio::time::timeout(
        load.duration,
        first.kv().range(RangeRequest {
            key: prefix.clone(),
            range_end: range_end.clone(),
            limit: 1,
            ..RangeRequest::default()
        }),
    )
    .await
    .map_err(|_| Error::Timeout("checking the prefix".to_string()))??
    .into_inner();
    if !existing.kvs.is_empty() {
        return Err(Error::PrefixHasKeys(opts.prefix.clone()));
    }

    let op = Arc::new(Op::PutPrefixed {
        prefix: prefix.clone(),
        key_size: 256,
        value: vec![0u8; 1024],
    });
    let (tx, rx) = mpsc::channel::<u64>(load.clients.max(1));
    let rx = Arc::new(Mutex::new(rx));
    let start = Instant::now();
    let end = start + load.duration;
    // Requests still in flight this long after the pacer stops are abandoned.
    let hard_stop = end + Duration::from_secs(30);
    let mut tasks = Vec::with_capacity(load.clients);
    for i in 0..load.clients {
        let Some(conn) = conns.get(i % conns.len()) else {
            break;
        };
        tasks.push(tokio::spawn(worker(
            conn.clone(),
            Arc::clone(&op),
            Arc::clone(&rx),
            i as u64 + 1,
            hard_stop,
        )));
    }
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
        if tokio::time::timeout_at(end, tx.send(n)).await.is_err() {
            break;
        }
        n += 1;
        // At most one request's worth of catch-up after a stall, like a token bucket of one.
        let now = Instant::now();
        due = (due + period).max(now.checked_sub(period).unwrap_or(now));
    }
    drop(tx);
    let mut lats = Vec::new();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    for t in tasks {
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
    let report = Report::new("check-perf", lats, errors, start.elapsed(), false);

    let mut lines = Vec::new();
    let deleted = tokio::time::timeout(
        Duration::from_secs(30),
        first.kv().delete_range(DeleteRangeRequest {
            key: prefix,
            range_end,
            ..DeleteRangeRequest::default()
        }),
    )
    .await
    .map_err(|_| Error::Timeout("deleting the prefix".to_string()))??
    .into_inner();
    if opts.auto_compact {
        let rev = deleted.header.map(|h| h.revision).unwrap_or(0);
        first
            .kv()
            .compact(CompactionRequest {
                revision: rev,
                physical: true,
            })
            .await?;
        lines.push(format!("compacted revision {rev}"));
    }
    if opts.auto_defrag {
        for ep in &opts.endpoints {
            let dial = crate::load::Dial {
                endpoints: std::slice::from_ref(ep),
                dial_timeout: Duration::from_secs(5),
                ..crate::load::Dial::default()
            };
            let c = crate::load::connect(&dial, 1).await?;
            if let Some(c) = c.first() {
                c.maintenance().defragment(DefragmentRequest {}).await?;
                lines.push(format!("Finished defragmenting etcd member[{ep}]"));
            }
        }
    }
    let (verdict_lines, pass) = verdict(&report, load.rate);
    lines.extend(verdict_lines);
    Ok(CheckPerfOutcome {
        lines,
        pass,
        report,
    })
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
