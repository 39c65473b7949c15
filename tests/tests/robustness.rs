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

use std::time::{Duration, Instant};

use cairn_tests::linearizability::{check, check_revisions, Input, Operation, Outcome, Verdict};
use cairn_tests::workload::{
    assert_same_hashkv, check_failures, final_reads, runtime, seed, serves,
    summary_with_unknowns_seen, Clock, Workload, FINAL_READER,
};
use cairn_tests::{leader, Cluster};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

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

/// The robustness workload.
const WORKLOAD: Workload = Workload {
    keys: &KEYS,
    clients: CLIENTS,
    max_ops_per_client: MAX_OPS_PER_CLIENT,
    max_time: MAX_WORKLOAD,
};

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

    /// Waits until member `i` answers a linearizable get (bounded).
    fn wait_serving(&self, c: &Cluster, i: usize) {
        let url = c.members[i].url();
        let ok = self
            .rt
            .block_on(async move { serves(&url, KEYS[0], Duration::from_secs(20)).await });
        assert!(
            ok,
            "member {i} never served again:\n{}",
            c.members[i].log_text()
        );
    }

    /// The schedule: kill -9 the leader and restart it, SIGSTOP/SIGCONT the leader, a
    /// rolling restart with SIGTERM, then a few random kills and pauses.
    ///
    /// Its pauses are the schedule's time, not waits for something to happen: how long a
    /// member stays down or frozen, and how long the clients run between two faults, is what
    /// the schedule (and its random part) varies.
    fn run(&mut self, c: &mut Cluster) {
        let pause = |ms| std::thread::sleep(Duration::from_millis(ms));
        pause(1500);

        let l = leader(&c.members);
        self.note(format!("kill -9 leader {}", c.members[l].name));
        c.members[l].kill9();
        pause(1000);
        self.note(format!("restart {}", c.members[l].name));
        c.members[l].spawn();
        self.wait_serving(c, l);
        self.note(format!("{} serves", c.members[l].name));
        pause(1000);

        let l = leader(&c.members);
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
    let seed = seed("CAIRN_ROBUSTNESS_SEED");
    let started = Instant::now();
    let mut cluster = start_cluster(n);
    let urls: Vec<String> = cluster.members.iter().map(|m| m.url()).collect();
    let rt = runtime();
    let clock = Clock(Instant::now());
    let clients = WORKLOAD.start(&rt, &urls, clock, seed);

    let mut faults = Faults {
        clock,
        rt: rt.handle().clone(),
        rng: StdRng::seed_from_u64(seed),
        log: Vec::new(),
    };
    // The injector runs here while the clients run on the runtime's workers; a panic here
    // drops the cluster, which kills every member.
    faults.run(&mut cluster);

    let mut history: Vec<Operation> = clients.stop(&rt);
    let workload = clock.secs();
    history.extend(rt.block_on(final_reads(&urls, &KEYS, clock, Duration::from_secs(20))));
    rt.block_on(assert_same_hashkv(&urls, Duration::from_secs(20)));

    let check_started = Instant::now();
    let revision_errors = check_revisions(&history);
    let verdicts = check(&history);
    let faults_text = faults.log.join("\n");
    eprintln!(
        "{n} members, seed {seed}: {} in {workload:.1}s; checked in {:.1}s; {:.1}s in all\n{faults_text}",
        summary_with_unknowns_seen(&history),
        check_started.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64(),
    );
    let failures = check_failures(&revision_errors, &verdicts);
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
