//! Robustness under faults, the way etcd's robustness suite and Jepsen test: concurrent
//! clients, each pinned to one member, run linearizable gets, puts of unique values and
//! compare-and-set txns on a few keys while a fault injector kills the leader with SIGKILL
//! and restarts it, freezes a member with SIGSTOP, and restarts every member in turn with
//! SIGTERM. The recorded history must be linearizable key by key (which also proves every
//! acknowledged write is found: the final reads on each member are part of it), revisions
//! must identify values, and all members must end with the same HashKV.
//!
//! Every loop is bounded in count and time; the cluster is killed when the test ends. Each
//! run prints its seed; `CAIRN_ROBUSTNESS_SEED=<seed>` replays the same random choices (the
//! timing, and so the history, still differ).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_proto::etcdserverpb::{
    compare::{CompareResult, CompareTarget, TargetUnion},
    kv_client::KvClient,
    maintenance_client::MaintenanceClient,
    request_op, response_op, Compare, HashKvRequest, PutRequest, RangeRequest, RequestOp,
    StatusRequest, TxnRequest,
};
use cairn_tests::linearizability::{check, check_revisions, Input, Operation, Outcome, Verdict};
use cairn_tests::Cluster;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tonic::transport::{Channel, Endpoint};

/// The keys the clients contend on.
const KEYS: [&str; 4] = ["rb/a", "rb/b", "rb/c", "rb/d"];
/// Concurrent clients, pinned to members round-robin.
const CLIENTS: usize = 6;
/// Operations one client may issue at most.
const MAX_OPS_PER_CLIENT: usize = 1500;
/// The workload stops at the latest after this long, faults or not.
const MAX_WORKLOAD: Duration = Duration::from_secs(30);
/// Faults drawn from the seed after the fixed schedule.
const RANDOM_FAULTS: usize = 3;
/// How long a client waits for one response before the outcome is unknown.
const OP_TIMEOUT: Duration = Duration::from_secs(2);

/// The client number of the final reads on member 0 (member i: this plus i).
const FINAL_READER: usize = 1000;

/// One monotonic clock for the whole history.
#[derive(Clone, Copy)]
struct Clock(Instant);

impl Clock {
    fn now(self) -> u64 {
        self.0.elapsed().as_nanos() as u64
    }
    fn secs(self) -> f64 {
        self.0.elapsed().as_secs_f64()
    }
}

fn channel(url: &str) -> Channel {
    Endpoint::from_shared(url.to_string())
        .unwrap()
        .connect_timeout(Duration::from_millis(500))
        .timeout(OP_TIMEOUT)
        .connect_lazy()
}

fn range(key: &str) -> RangeRequest {
    RangeRequest {
        key: key.as_bytes().to_vec(),
        ..Default::default()
    }
}

/// The value and mod_revision in a range response (`None` and 0 for a missing key).
fn first_kv(kvs: &[cairn_proto::mvccpb::KeyValue]) -> (Option<String>, i64) {
    match kvs.first() {
        Some(kv) => (
            Some(String::from_utf8(kv.value.clone()).unwrap()),
            kv.mod_revision,
        ),
        None => (None, 0),
    }
}

/// What one client knows of a key: its last value and that value's mod_revision.
type Seen = HashMap<&'static str, (Option<String>, i64)>;

/// Runs one operation against `kv`; returns its input, outcome and revision.
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
        let r = tokio::time::timeout(OP_TIMEOUT, kv.range(range(key))).await;
        return match r {
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
        let req = PutRequest {
            key: key.as_bytes().to_vec(),
            value: fresh.clone().into_bytes(),
            ..Default::default()
        };
        return match tokio::time::timeout(OP_TIMEOUT, kv.put(req)).await {
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
    let by_value = expect.is_some() && rng.random_bool(0.5);
    let compare = if by_value {
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
            request: Some(request_op::Request::RequestPut(PutRequest {
                key: key.as_bytes().to_vec(),
                value: fresh.clone().into_bytes(),
                ..Default::default()
            })),
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

/// One client pinned to `url`: random operations until `stop` or its bounds.
async fn client(
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
    let deadline = Instant::now() + MAX_WORKLOAD;
    for seq in 0..MAX_OPS_PER_CLIENT {
        if stop.load(Ordering::Relaxed) || Instant::now() >= deadline {
            break;
        }
        let key = KEYS[rng.random_range(0..KEYS.len())];
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

/// The fault injector's view of the cluster and what it did.
struct Faults {
    clock: Clock,
    rt: tokio::runtime::Handle,
    rng: StdRng,
    log: Vec<String>,
}

impl Faults {
    fn note(&mut self, what: String) {
        self.log.push(format!("{:7.3}s {what}", self.clock.secs()));
    }

    /// Index of the member that leads, as the running members report it (bounded wait).
    fn leader(&self, c: &Cluster) -> usize {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mut ids = Vec::new();
            let mut leader = 0;
            for m in &c.members {
                let url = m.url();
                let st = m.pid().and_then(|_| {
                    self.rt.block_on(async move {
                        let mut mc = MaintenanceClient::new(channel(&url));
                        let r = tokio::time::timeout(
                            Duration::from_secs(1),
                            mc.status(StatusRequest {}),
                        )
                        .await;
                        r.ok()?.ok().map(|r| r.into_inner())
                    })
                });
                let id = st
                    .as_ref()
                    .and_then(|s| s.header.as_ref())
                    .map(|h| h.member_id);
                if let Some(s) = &st {
                    leader = leader.max(s.leader);
                }
                ids.push(id);
            }
            if let Some(i) = ids.iter().position(|id| leader != 0 && *id == Some(leader)) {
                return i;
            }
            assert!(Instant::now() < deadline, "no leader in 20s");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until member `i` answers a linearizable get (bounded).
    fn wait_serving(&self, c: &Cluster, i: usize) {
        let url = c.members[i].url();
        let ok = self.rt.block_on(async move {
            let mut kv = KvClient::new(channel(&url));
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Ok(_)) = tokio::time::timeout(OP_TIMEOUT, kv.range(range(KEYS[0]))).await
                {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            false
        });
        assert!(
            ok,
            "member {i} never served again:\n{}",
            c.members[i].log_text()
        );
    }

    /// The schedule: kill -9 the leader and restart it, SIGSTOP/SIGCONT the leader, a
    /// rolling restart with SIGTERM, then a few random kills and pauses.
    fn run(&mut self, c: &mut Cluster) {
        let pause = |ms| std::thread::sleep(Duration::from_millis(ms));
        pause(1500);

        let l = self.leader(c);
        self.note(format!("kill -9 leader {}", c.members[l].name));
        c.members[l].kill9();
        pause(1000);
        self.note(format!("restart {}", c.members[l].name));
        c.members[l].spawn();
        self.wait_serving(c, l);
        self.note(format!("{} serves", c.members[l].name));
        pause(1000);

        let l = self.leader(c);
        self.note(format!("SIGSTOP leader {}", c.members[l].name));
        c.members[l].signal("STOP");
        pause(2500);
        c.members[l].signal("CONT");
        self.note(format!("SIGCONT {}", c.members[l].name));
        self.wait_serving(c, l);
        self.note(format!("{} serves", c.members[l].name));
        pause(1000);

        for i in 0..c.members.len() {
            self.note(format!("SIGTERM {}", c.members[i].name));
            c.members[i].stop();
            c.members[i].spawn();
            self.wait_serving(c, i);
            self.note(format!("{} serves", c.members[i].name));
            pause(300);
        }
        pause(500);

        // Then a few faults drawn from the seed: kill -9 any member, or freeze one for less
        // or more than an election timeout.
        for _ in 0..RANDOM_FAULTS {
            let i = self.rng.random_range(0..c.members.len());
            let name = c.members[i].name.clone();
            if self.rng.random_bool(0.5) {
                self.note(format!("kill -9 {name}"));
                c.members[i].kill9();
                pause(self.rng.random_range(100..1000));
                self.note(format!("restart {name}"));
                c.members[i].spawn();
            } else {
                let ms = self.rng.random_range(300..2500);
                self.note(format!("SIGSTOP {name} for {ms}ms"));
                c.members[i].signal("STOP");
                pause(ms);
                c.members[i].signal("CONT");
            }
            self.wait_serving(c, i);
            self.note(format!("{name} serves"));
            pause(self.rng.random_range(200..800));
        }
        pause(500);
    }
}

/// Linearizable gets of every key on every member after the faults, recorded as operations.
async fn final_reads(urls: &[String], clock: Clock) -> Vec<Operation> {
    let mut ops = Vec::new();
    for (m, url) in urls.iter().enumerate() {
        let mut kv = KvClient::new(channel(url));
        for key in KEYS {
            let deadline = Instant::now() + Duration::from_secs(20);
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

/// Every member reports the same HashKV at the same revision (bounded wait).
async fn assert_same_hashkv(urls: &[String]) {
    let deadline = Instant::now() + Duration::from_secs(20);
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
            return;
        }
        assert!(
            Instant::now() < deadline,
            "members' HashKV never agreed: {hashes:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Counts of each outcome, for the summary line.
fn summary(ops: &[Operation]) -> String {
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
    // Unknown writes that a read later showed were applied.
    let seen: std::collections::HashSet<&str> = ops
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
    let mut parts: Vec<String> = counts.iter().map(|(k, v)| format!("{k}={v}")).collect();
    parts.sort();
    format!("{} ops: {}", ops.len(), parts.join(" "))
}

/// Guards against a vacuous check: the same history with one final read turned into a stale
/// read (an acknowledged value that a later acknowledged write replaced) must fail.
fn assert_checker_sees_a_stale_read(history: &[Operation]) {
    let last = history.len() - 1;
    let fin = &history[last];
    assert!(
        fin.client >= FINAL_READER,
        "the history ends with a final read"
    );
    // The earliest acknowledged put on that key whose value no final read returned: it was
    // overwritten before the first final read.
    let finals: Vec<&Outcome> = history
        .iter()
        .filter(|op| op.client >= FINAL_READER && op.key == fin.key)
        .map(|op| &op.outcome)
        .collect();
    let stale = history
        .iter()
        .find_map(|op| match (&op.input, &op.outcome) {
            (Input::Put { value }, Outcome::Written)
                if op.key == fin.key && !finals.contains(&&Outcome::Read(Some(value.clone()))) =>
            {
                Some(value.clone())
            }
            _ => None,
        });
    let Some(stale) = stale else { return };
    let mut mutated = history.to_vec();
    mutated[last].outcome = Outcome::Read(Some(stale));
    mutated[last].revision = None;
    let verdicts = check(&mutated);
    assert!(
        matches!(verdicts.as_slice(), [Verdict::Violation(r)] if r.key == fin.key),
        "the checker missed a stale final read: {verdicts:?}"
    );
}

/// Starts `n` members, again when one lost its port: the harness picks free ports by binding
/// port 0, so another socket (any outgoing connection) may take the port before the member
/// binds it.
fn start_cluster(n: usize) -> Cluster {
    for attempt in 1.. {
        match std::panic::catch_unwind(|| Cluster::start(n, &[])) {
            Ok(c) => return c,
            Err(e) => {
                let text = e.downcast_ref::<String>().cloned().unwrap_or_default();
                if attempt == 3 || !text.contains("Address already in use") {
                    std::panic::resume_unwind(e);
                }
                eprintln!("a member lost its port at start; starting the cluster again");
            }
        }
    }
    unreachable!()
}

/// Runs the workload against an `n`-member cluster under the fault schedule and checks it.
fn run(n: usize) {
    let seed: u64 = match std::env::var("CAIRN_ROBUSTNESS_SEED") {
        Ok(s) => s.parse().expect("CAIRN_ROBUSTNESS_SEED is a number"),
        Err(_) => rand::rng().random(),
    };
    let started = Instant::now();
    let mut cluster = start_cluster(n);
    let urls: Vec<String> = cluster.members.iter().map(|m| m.url()).collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let clock = Clock(Instant::now());
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| rt.spawn(client(i, urls[i % n].clone(), clock, stop.clone(), seed)))
        .collect();

    let mut faults = Faults {
        clock,
        rt: rt.handle().clone(),
        rng: StdRng::seed_from_u64(seed),
        log: Vec::new(),
    };
    // The injector runs here while the clients run on the runtime's workers; a panic here
    // drops the cluster, which kills every member.
    faults.run(&mut cluster);
    stop.store(true, Ordering::Relaxed);

    let mut history: Vec<Operation> = Vec::new();
    for c in clients {
        history.extend(rt.block_on(c).unwrap());
    }
    let workload = clock.secs();
    history.extend(rt.block_on(final_reads(&urls, clock)));
    rt.block_on(assert_same_hashkv(&urls));

    let check_started = Instant::now();
    let revision_errors = check_revisions(&history);
    let verdicts = check(&history);
    let faults_text = faults.log.join("\n");
    eprintln!(
        "{n} members, seed {seed}: {} in {workload:.1}s; checked in {:.1}s; {:.1}s in all\n{faults_text}",
        summary(&history),
        check_started.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64(),
    );
    let mut failures = String::new();
    for e in revision_errors.iter().take(10) {
        failures.push_str(&format!("revision mismatch: {e}\n"));
    }
    for v in &verdicts {
        match v {
            Verdict::Violation(report) => failures.push_str(&format!("{report}\n")),
            Verdict::Inconclusive { key, steps } => failures.push_str(&format!(
                "key {key:?}: the checker gave up after {steps} steps\n"
            )),
            Verdict::Linearizable => {}
        }
    }
    assert!(
        failures.is_empty(),
        "{n} members, seed {seed}:\n{failures}faults:\n{faults_text}"
    );
    assert_checker_sees_a_stale_read(&history);
    drop(cluster);
}

#[test]
fn three_members_stay_linearizable_under_kills_pauses_and_restarts() {
    run(3);
}

#[test]
fn five_members_stay_linearizable_under_kills_pauses_and_restarts() {
    run(5);
}
