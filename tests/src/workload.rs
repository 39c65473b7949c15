//! The client workload and final checks that the fault suites (robustness, partition) share.
//!
//! Concurrent clients, each pinned to one member, run linearizable gets, puts of unique
//! values and compare-and-set txns on a few keys, and record every operation with its invoke
//! and return times on one clock for [`crate::linearizability`]. After the faults, final
//! reads of every key on every member join the history, and the members must agree on
//! HashKV and hold every acknowledged write.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_proto::etcdserverpb::{
    compare::{CompareResult, CompareTarget, TargetUnion},
    kv_client::KvClient,
    maintenance_client::MaintenanceClient,
    request_op, response_op, Compare, HashKvRequest, PutRequest, RangeRequest, RequestOp,
    TxnRequest,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

use crate::grpc::channel;
use crate::linearizability::{Input, Operation, Outcome, Verdict};

/// How long a client waits for one response before the outcome is unknown.
pub const OP_TIMEOUT: Duration = Duration::from_secs(2);

/// The client number of the final reads on member 0 (member i: this plus i).
pub const FINAL_READER: usize = 1000;

/// One monotonic clock for the whole history.
#[derive(Clone, Copy)]
pub struct Clock(pub Instant);

impl Clock {
    /// Nanoseconds since the clock started.
    pub fn now(self) -> u64 {
        self.0.elapsed().as_nanos() as u64
    }

    /// Seconds since the clock started.
    pub fn secs(self) -> f64 {
        self.0.elapsed().as_secs_f64()
    }
}

/// The seed in the environment variable `var`, or a random one.
pub fn seed(var: &str) -> u64 {
    match std::env::var(var) {
        Ok(s) => s.parse().unwrap_or_else(|_| panic!("{var} is a number")),
        Err(_) => rand::rng().random(),
    }
}

/// The runtime the clients run on: two workers, so the test thread stays free for faults.
pub fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A linearizable range of one key.
pub fn range(key: &str) -> RangeRequest {
    RangeRequest {
        key: key.as_bytes().to_vec(),
        ..Default::default()
    }
}

/// A put of `value` at `key`.
pub fn put(key: &str, value: &str) -> PutRequest {
    PutRequest {
        key: key.as_bytes().to_vec(),
        value: value.as_bytes().to_vec(),
        ..Default::default()
    }
}

/// Puts keys `{prefix}{w}/{i}` for `w` below `writers` and `i` below `per_writer`, one
/// concurrent writer per `w` through clones of `kv`, each key with the value `value(w, i)`;
/// panics on any failure.
pub async fn bulk_put(
    kv: &KvClient<Channel>,
    prefix: &str,
    writers: usize,
    per_writer: usize,
    value: fn(usize, usize) -> Vec<u8>,
) {
    let mut tasks = Vec::with_capacity(writers);
    for w in 0..writers {
        let mut kv = kv.clone();
        let prefix = prefix.to_string();
        tasks.push(tokio::spawn(async move {
            for i in 0..per_writer {
                let req = PutRequest {
                    key: format!("{prefix}{w}/{i}").into_bytes(),
                    value: value(w, i),
                    ..Default::default()
                };
                kv.put(req).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

/// The value and mod_revision in a range response (`None` and 0 for a missing key).
pub fn first_kv(kvs: &[cairn_proto::mvccpb::KeyValue]) -> (Option<String>, i64) {
    match kvs.first() {
        Some(kv) => (
            Some(String::from_utf8(kv.value.clone()).unwrap()),
            kv.mod_revision,
        ),
        None => (None, 0),
    }
}

/// Whether member `url` answers a linearizable get of `key` within `wait`.
pub async fn serves(url: &str, key: &str, wait: Duration) -> bool {
    let mut kv = KvClient::new(channel(url));
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        if let Ok(Ok(_)) = tokio::time::timeout(OP_TIMEOUT, kv.range(range(key))).await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// What one client knows of a key: its last value and that value's mod_revision.
type Seen = HashMap<&'static str, (Option<String>, i64)>;

/// One random operation: a linearizable get (40%), a put of a fresh value (30%) or a
/// compare-and-set (30%) by value or by mod_revision. Returns its input, outcome and revision.
async fn one_op(
    kv: &mut KvClient<Channel>,
    rng: &mut StdRng,
    client: usize,
    seq: usize,
    key: &'static str,
    seen: &mut Seen,
) -> (Input, Outcome, Option<i64>) {
    let roll = rng.random_range(0..100);
    let fresh = format!("c{client}-{seq}");
    if roll < 40 {
        return match tokio::time::timeout(OP_TIMEOUT, kv.range(range(key))).await {
            Ok(Ok(resp)) => {
                let (value, rev) = first_kv(&resp.into_inner().kvs);
                seen.insert(key, (value.clone(), rev));
                (Input::Get, Outcome::Read(value), Some(rev))
            }
            _ => (Input::Get, Outcome::Failed, None),
        };
    }
    if roll < 70 {
        let input = Input::Put {
            value: fresh.clone(),
        };
        return match tokio::time::timeout(OP_TIMEOUT, kv.put(put(key, &fresh))).await {
            Ok(Ok(resp)) => {
                let rev = resp.into_inner().header.map(|h| h.revision);
                seen.insert(key, (Some(fresh), rev.unwrap_or(0)));
                (input, Outcome::Written, rev)
            }
            // A write that errs or times out may still be applied later.
            _ => (input, Outcome::Unknown, None),
        };
    }
    let (expect, expect_rev) = seen.get(key).cloned().unwrap_or((None, 0));
    let compare = if expect.is_some() && rng.random_bool(0.5) {
        Compare {
            result: CompareResult::Equal as i32,
            target: CompareTarget::Value as i32,
            key: key.as_bytes().to_vec(),
            target_union: Some(TargetUnion::Value(
                expect.clone().unwrap_or_default().into_bytes(),
            )),
            ..Default::default()
        }
    } else {
        Compare {
            result: CompareResult::Equal as i32,
            target: CompareTarget::Mod as i32,
            key: key.as_bytes().to_vec(),
            target_union: Some(TargetUnion::ModRevision(expect_rev)),
            ..Default::default()
        }
    };
    let req = TxnRequest {
        compare: vec![compare],
        success: vec![RequestOp {
            request: Some(request_op::Request::RequestPut(put(key, &fresh))),
        }],
        failure: vec![RequestOp {
            request: Some(request_op::Request::RequestRange(range(key))),
        }],
    };
    let input = Input::Cas {
        expect,
        value: fresh.clone(),
    };
    match tokio::time::timeout(OP_TIMEOUT, kv.txn(req)).await {
        Ok(Ok(resp)) => {
            let resp = resp.into_inner();
            let rev = resp.header.map(|h| h.revision).unwrap_or(0);
            if resp.succeeded {
                seen.insert(key, (Some(fresh), rev));
                return (input, Outcome::Swapped, Some(rev));
            }
            let Some(response_op::Response::ResponseRange(r)) =
                resp.responses.into_iter().next().and_then(|r| r.response)
            else {
                panic!("a failed txn without its range response");
            };
            let (current, rev) = first_kv(&r.kvs);
            seen.insert(key, (current.clone(), rev));
            (input, Outcome::NotSwapped { current }, Some(rev))
        }
        _ => (input, Outcome::Unknown, None),
    }
}

/// The shape of a workload: which keys, how many clients and how long they run.
#[derive(Debug, Clone, Copy)]
pub struct Workload {
    /// The keys the clients contend on.
    pub keys: &'static [&'static str],
    /// Concurrent clients, pinned to members round-robin.
    pub clients: usize,
    /// Operations one client may issue at most.
    pub max_ops_per_client: usize,
    /// The workload stops at the latest after this long, faults or not.
    pub max_time: Duration,
}

impl Workload {
    /// Starts the clients on `rt`, client i pinned to `urls[i % urls.len()]`, each with its
    /// own random choices derived from `seed`.
    pub fn start(self, rt: &Runtime, urls: &[String], clock: Clock, seed: u64) -> Clients {
        let stop = Arc::new(AtomicBool::new(false));
        let handles = (0..self.clients)
            .map(|i| {
                rt.spawn(self.client(i, urls[i % urls.len()].clone(), clock, stop.clone(), seed))
            })
            .collect();
        Clients { stop, handles }
    }

    /// One client pinned to `url`: random operations until `stop` or its bounds.
    async fn client(
        self,
        client: usize,
        url: String,
        clock: Clock,
        stop: Arc<AtomicBool>,
        seed: u64,
    ) -> Vec<Operation> {
        let mut kv = KvClient::new(channel(&url));
        let mut rng = StdRng::seed_from_u64(seed ^ (client as u64).wrapping_mul(0x9e37_79b9));
        let mut seen = Seen::new();
        let mut ops = Vec::new();
        let deadline = Instant::now() + self.max_time;
        for seq in 0..self.max_ops_per_client {
            if stop.load(Ordering::Relaxed) || Instant::now() >= deadline {
                break;
            }
            let key = self.keys[rng.random_range(0..self.keys.len())];
            let invoke = clock.now();
            let (input, outcome, revision) =
                one_op(&mut kv, &mut rng, client, seq, key, &mut seen).await;
            let ret = clock.now();
            let failed = matches!(outcome, Outcome::Failed | Outcome::Unknown);
            ops.push(Operation {
                client,
                key: key.to_string(),
                input,
                outcome,
                invoke,
                ret,
                revision,
            });
            if failed {
                // The member is down or unreachable: do not spin on it.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        ops
    }
}

/// The running clients of a [`Workload`].
pub struct Clients {
    stop: Arc<AtomicBool>,
    handles: Vec<JoinHandle<Vec<Operation>>>,
}

impl Clients {
    /// Tells every client to stop and collects their operations, client by client.
    pub fn stop(self, rt: &Runtime) -> Vec<Operation> {
        self.stop.store(true, Ordering::Relaxed);
        let mut history = Vec::new();
        for c in self.handles {
            history.extend(rt.block_on(c).unwrap());
        }
        history
    }
}

/// Linearizable gets of every key in `keys` on every member, recorded as operations of
/// client [`FINAL_READER`] plus the member's index; each read retries for up to `wait`.
pub async fn final_reads(
    urls: &[String],
    keys: &[&str],
    clock: Clock,
    wait: Duration,
) -> Vec<Operation> {
    let mut ops = Vec::new();
    for (m, url) in urls.iter().enumerate() {
        let mut kv = KvClient::new(channel(url));
        for &key in keys {
            let deadline = Instant::now() + wait;
            loop {
                let invoke = clock.now();
                let r = tokio::time::timeout(OP_TIMEOUT, kv.range(range(key))).await;
                if let Ok(Ok(resp)) = r {
                    let (value, rev) = first_kv(&resp.into_inner().kvs);
                    ops.push(Operation {
                        client: FINAL_READER + m,
                        key: key.to_string(),
                        input: Input::Get,
                        outcome: Outcome::Read(value),
                        invoke,
                        ret: clock.now(),
                        revision: Some(rev),
                    });
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "final read of {key} on member {m}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    ops
}

/// Every member reports the same HashKV at the same revision (waits up to `wait`); returns
/// that revision.
pub async fn assert_same_hashkv(urls: &[String], wait: Duration) -> i64 {
    let deadline = Instant::now() + wait;
    loop {
        let mut hashes = Vec::new();
        for url in urls {
            let mut mc = MaintenanceClient::new(channel(url));
            let r =
                tokio::time::timeout(OP_TIMEOUT, mc.hash_kv(HashKvRequest { revision: 0 })).await;
            hashes.push(r.ok().and_then(|r| r.ok()).map(|r| {
                let r = r.into_inner();
                (r.hash, r.header.map(|h| h.revision).unwrap_or(0))
            }));
        }
        if hashes.iter().all(|h| h.is_some()) && hashes.windows(2).all(|w| w[0] == w[1]) {
            return hashes[0].unwrap().1;
        }
        assert!(
            Instant::now() < deadline,
            "members' HashKV never agreed: {hashes:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every acknowledged write is on every member: a serializable get at its revision finds
/// exactly that value with that mod_revision. Returns how many writes were acknowledged.
pub async fn assert_acknowledged_everywhere(urls: &[String], history: &[Operation]) -> usize {
    let acked: Vec<(&str, &str, i64)> = history
        .iter()
        .filter_map(|op| match (&op.input, &op.outcome, op.revision) {
            (Input::Put { value }, Outcome::Written, Some(rev))
            | (Input::Cas { value, .. }, Outcome::Swapped, Some(rev)) => {
                Some((op.key.as_str(), value.as_str(), rev))
            }
            _ => None,
        })
        .collect();
    for (m, url) in urls.iter().enumerate() {
        let mut kv = KvClient::new(channel(url));
        for &(key, value, rev) in &acked {
            let req = RangeRequest {
                revision: rev,
                serializable: true,
                ..range(key)
            };
            let resp = tokio::time::timeout(OP_TIMEOUT, kv.range(req))
                .await
                .expect("serializable get timed out")
                .expect("serializable get failed")
                .into_inner();
            let (got, mod_rev) = first_kv(&resp.kvs);
            assert_eq!(
                (got.as_deref(), mod_rev),
                (Some(value), rev),
                "member {m} lost the acknowledged write {key}={value} at revision {rev}"
            );
        }
    }
    acked.len()
}

/// Counts of each outcome, for the summary line.
fn outcome_counts(ops: &[Operation]) -> HashMap<&'static str, usize> {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for op in ops {
        let name = match op.outcome {
            Outcome::Read(_) => "read",
            Outcome::Written => "written",
            Outcome::Swapped => "swapped",
            Outcome::NotSwapped { .. } => "not-swapped",
            Outcome::Failed => "failed",
            Outcome::Unknown => "unknown",
        };
        *counts.entry(name).or_default() += 1;
    }
    counts
}

/// The summary line for `counts`: the number of operations, then each count by name.
fn format_counts(ops: &[Operation], counts: &HashMap<&str, usize>) -> String {
    let mut parts: Vec<String> = counts.iter().map(|(k, v)| format!("{k}={v}")).collect();
    parts.sort();
    format!("{} ops: {}", ops.len(), parts.join(" "))
}

/// Counts of each outcome, for the summary line.
pub fn summary(ops: &[Operation]) -> String {
    format_counts(ops, &outcome_counts(ops))
}

/// Counts of each outcome and of the unknown writes that a read later showed were applied,
/// for the summary line.
pub fn summary_with_unknowns_seen(ops: &[Operation]) -> String {
    let mut counts = outcome_counts(ops);
    let seen: HashSet<&str> = ops
        .iter()
        .filter_map(|op| match &op.outcome {
            Outcome::Read(Some(v)) | Outcome::NotSwapped { current: Some(v) } => Some(v.as_str()),
            _ => None,
        })
        .collect();
    let applied = ops
        .iter()
        .filter(|op| op.outcome == Outcome::Unknown)
        .filter(|op| match &op.input {
            Input::Put { value } | Input::Cas { value, .. } => seen.contains(value.as_str()),
            Input::Get => false,
        })
        .count();
    counts.insert("unknown-then-seen", applied);
    format_counts(ops, &counts)
}

/// The failure lines for the checker's results: the first ten revision mismatches, then
/// every violation and every key the checker gave up on.
pub fn check_failures(revision_errors: &[String], verdicts: &[Verdict]) -> String {
    let mut failures = String::new();
    for e in revision_errors.iter().take(10) {
        failures.push_str(&format!("revision mismatch: {e}\n"));
    }
    for v in verdicts {
        match v {
            Verdict::Violation(report) => failures.push_str(&format!("{report}\n")),
            Verdict::Inconclusive { key, steps } => failures.push_str(&format!(
                "key {key:?}: the checker gave up after {steps} steps\n"
            )),
            Verdict::Linearizable => {}
        }
    }
    failures
}
