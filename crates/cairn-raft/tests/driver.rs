//! End-to-end tests of the driver with a single voter on a real raft-engine log.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test helpers panic on setup failure.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_raft::{
    start, Applier, ApplyError, Change, Committed, MembershipChange, NoPeers, Payload, RaftConfig,
    RaftError, RaftHandle,
};

/// `(index, data)` of applied entries that carry data.
type Applied = Vec<(u64, Vec<u8>)>;

/// Records every applied entry with data.
#[derive(Clone, Default)]
struct Recorder {
    applied: Arc<Mutex<Applied>>,
    calls: Arc<Mutex<u64>>,
}

impl Applier for Recorder {
    fn apply(&mut self, entries: Vec<Committed>) -> Result<(), ApplyError> {
        *self.calls.lock().unwrap() += 1;
        let mut applied = self.applied.lock().unwrap();
        for e in entries {
            if let Some(data) = e.data() {
                applied.push((e.index, data.to_vec()));
            }
        }
        Ok(())
    }
}

impl Recorder {
    fn snapshot(&self) -> Applied {
        self.applied.lock().unwrap().clone()
    }

    fn wait_for(&self, n: usize) -> Applied {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let got = self.snapshot();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "only {} of {n} entries applied",
                got.len()
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

fn config(dir: &Path, applied: u64) -> RaftConfig {
    RaftConfig {
        id: 7,
        voters: vec![7],
        dir: dir.to_path_buf(),
        applied,
        ..Default::default()
    }
}

fn run(dir: &Path, applied: u64) -> (RaftHandle, Recorder) {
    let rec = Recorder::default();
    let handle = start(config(dir, applied), rec.clone(), NoPeers).unwrap();
    (handle, rec)
}

/// What the driver stopped with; fails the test if it does not stop within 20 s.
fn wait_stopped(h: &RaftHandle) -> Result<(), RaftError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    runtime
        .block_on(async { tokio::time::timeout(Duration::from_secs(20), h.stopped()).await })
        .expect("the driver did not stop")
}

/// A state machine that fails (`Err` from `apply`, or a panic, as `fail` does) on an entry
/// whose data is `trigger`.
#[derive(Clone)]
struct FailsOn {
    trigger: &'static str,
    fail: fn() -> Result<(), ApplyError>,
}

impl Applier for FailsOn {
    fn apply(&mut self, entries: Vec<Committed>) -> Result<(), ApplyError> {
        if entries
            .iter()
            .any(|e| e.data().is_some_and(|d| d == self.trigger))
        {
            return (self.fail)();
        }
        Ok(())
    }
}

fn wait_applied(h: &RaftHandle, index: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while h.status().applied_index < index {
        assert!(
            Instant::now() < deadline,
            "applied index stuck at {:?}",
            h.status()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn single_voter_elects_itself_and_applies_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let (h, rec) = run(dir.path(), 0);
    let st = h.status();
    assert!(st.is_leader, "{st:?}");
    assert_eq!((st.id, st.leader_id), (7, 7));
    assert!(st.term >= 1);
    assert!(started.elapsed() < Duration::from_secs(2));

    for i in 0..100u32 {
        h.propose(format!("k{i}").into_bytes()).unwrap();
    }
    let got = rec.wait_for(100);
    let data: Vec<Vec<u8>> = got.iter().map(|(_, d)| d.clone()).collect();
    let want: Vec<Vec<u8>> = (0..100u32).map(|i| format!("k{i}").into_bytes()).collect();
    assert_eq!(data, want);
    assert!(
        got.windows(2).all(|w| w[0].0 + 1 == w[1].0),
        "indexes not consecutive"
    );
    let last = got.last().unwrap().0;
    wait_applied(&h, last);
    let st = h.status();
    assert!(st.commit_index >= last && st.last_index >= last, "{st:?}");
    h.stop();
}

#[test]
fn concurrent_proposals_share_fsyncs() {
    const THREADS: usize = 8;
    const PER_THREAD: usize = 1_250;
    const TOTAL: usize = THREADS * PER_THREAD;
    let dir = tempfile::tempdir().unwrap();
    let (h, rec) = run(dir.path(), 0);
    let base = h.stats();
    let started = Instant::now();
    let producers: Vec<_> = (0..THREADS)
        .map(|t| {
            let h = h.clone();
            std::thread::spawn(move || {
                for i in 0..PER_THREAD {
                    h.propose(format!("{t}/{i}").into_bytes()).unwrap();
                }
            })
        })
        .collect();
    for p in producers {
        p.join().unwrap();
    }
    let got = rec.wait_for(TOTAL);
    let elapsed = started.elapsed();
    assert_eq!(got.len(), TOTAL, "an entry was applied twice");

    // Exactly once, and each producer's entries in the order it proposed them.
    let mut next: HashMap<usize, usize> = HashMap::new();
    for (_, data) in &got {
        let s = String::from_utf8(data.clone()).unwrap();
        let (t, i) = s.split_once('/').unwrap();
        let (t, i): (usize, usize) = (t.parse().unwrap(), i.parse().unwrap());
        let want = next.entry(t).or_default();
        assert_eq!(i, *want, "thread {t} out of order");
        *want += 1;
    }
    assert!(got.windows(2).all(|w| w[0].0 < w[1].0));

    let stats = h.stats();
    let syncs = stats.log_syncs - base.log_syncs;
    eprintln!(
        "{TOTAL} proposals in {elapsed:?}: {syncs} fsyncs, {} log writes, {} apply calls",
        stats.log_writes - base.log_writes,
        *rec.calls.lock().unwrap(),
    );
    // One fsync per proposal would be TOTAL; how many share one depends on how the
    // machine schedules the producers, so this asks only that they clearly share.
    assert!(
        syncs * 4 < TOTAL as u64,
        "{syncs} fsyncs for {TOTAL} proposals"
    );
    assert!(stats.entries_appended >= TOTAL as u64);
    h.stop();
}

#[test]
fn restart_redelivers_only_entries_after_applied() {
    let dir = tempfile::tempdir().unwrap();
    let first_run = {
        let (h, rec) = run(dir.path(), 0);
        for i in 0..50u32 {
            h.propose(format!("v{i}").into_bytes()).unwrap();
        }
        let got = rec.wait_for(50);
        wait_applied(&h, got.last().unwrap().0);
        h.stop();
        got
    };
    let applied = first_run[29].0;
    let (h, rec) = run(dir.path(), applied);
    let want: Vec<_> = first_run
        .iter()
        .filter(|(i, _)| *i > applied)
        .cloned()
        .collect();
    let got = rec.wait_for(want.len());
    assert_eq!(got, want);
    // A new term's empty entry is committed after them; nothing else shows up.
    wait_applied(&h, h.status().commit_index);
    assert_eq!(rec.snapshot(), want);
    // New proposals continue the log.
    h.propose(b"after".to_vec()).unwrap();
    let got = rec.wait_for(want.len() + 1);
    assert!(got.last().unwrap().0 > first_run.last().unwrap().0);
    h.stop();

    // Restarting with everything applied re-delivers nothing.
    let last = got.last().unwrap().0;
    let (h, rec) = run(dir.path(), last);
    wait_applied(&h, h.status().commit_index);
    assert!(rec.snapshot().is_empty());
    h.stop();
}

#[test]
fn applied_beyond_stored_commit_is_accepted() {
    // Regression: the hard state's commit index is written with the next log write, so
    // after a crash the state machine can be ahead of it; raft-rs panics if `applied`
    // exceeds the stored commit unless the driver raises it first.
    let dir = tempfile::tempdir().unwrap();
    let (h, rec) = run(dir.path(), 0);
    for i in 0..10u32 {
        h.propose(vec![i as u8 + 1]).unwrap();
    }
    let got = rec.wait_for(10);
    h.stop();
    // Roll the stored commit back to 1 to simulate the lost write.
    {
        let mut s = cairn_raft::EngineStorage::open(dir.path()).unwrap();
        let mut hs = s.hard_state().clone();
        hs.commit = 1;
        s.persist(&[], Some(&hs), true).unwrap();
    }
    let applied = got[5].0;
    let (h, rec) = run(dir.path(), applied);
    let want: Vec<_> = got.iter().filter(|(i, _)| *i > applied).cloned().collect();
    assert_eq!(rec.wait_for(want.len()), want);
    h.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_index_covers_committed_writes() {
    let dir = tempfile::tempdir().unwrap();
    let (h, rec) = run(dir.path(), 0);
    // Right after start the leader's own entry is committed, so a read resolves.
    let first = h.read_index().await.unwrap();
    assert!(first >= 1);
    for i in 0..20u32 {
        h.propose(vec![i as u8]).unwrap();
    }
    let got = tokio::task::spawn_blocking({
        let rec = rec.clone();
        move || rec.wait_for(20)
    })
    .await
    .unwrap();
    let last_committed = h.status().commit_index;
    assert!(last_committed >= got.last().unwrap().0);
    let idx = h.read_index().await.unwrap();
    assert!(
        idx >= last_committed,
        "read index {idx} < commit {last_committed}"
    );

    // Many concurrent reads all resolve.
    let reads: Vec<_> = (0..64)
        .map(|_| {
            let h = h.clone();
            tokio::spawn(async move { h.read_index().await })
        })
        .collect();
    for r in reads {
        assert!(r.await.unwrap().unwrap() >= last_committed);
    }
    h.stop();
    assert_eq!(h.read_index().await, Err(RaftError::Stopped));
}

#[test]
fn stop_is_idempotent_and_refuses_work_after() {
    let dir = tempfile::tempdir().unwrap();
    let (h, _rec) = run(dir.path(), 0);
    let other = h.clone();
    h.stop();
    h.stop();
    other.stop();
    assert_eq!(h.propose(b"x".to_vec()), Err(RaftError::Stopped));
    assert_eq!(other.step(Default::default()), Err(RaftError::Stopped));
    h.set_durable_applied(10);
    assert_eq!(h.status().id, 7);
    // The log is closed: it can be opened again at once.
    let (h2, _rec) = run(dir.path(), 0);
    assert!(h2.status().is_leader);
    h2.stop();
}

#[test]
fn dropping_every_handle_stops_the_driver() {
    let dir = tempfile::tempdir().unwrap();
    let (h, rec) = run(dir.path(), 0);
    h.propose(b"a".to_vec()).unwrap();
    rec.wait_for(1);
    drop(h);
    // The threads exit and release the log; reopening must succeed once they have.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match start(config(dir.path(), 0), Recorder::default(), NoPeers) {
            Ok(h) => {
                h.stop();
                break;
            }
            Err(e) => {
                assert!(Instant::now() < deadline, "log never released: {e}");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

#[test]
fn durable_applied_compacts_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let (h, rec) = run(dir.path(), 0);
    let n = (cairn_raft::LOG_RETAIN_ENTRIES + 2 * cairn_raft::COMPACT_STEP) as usize;
    for i in 0..n {
        h.propose(i.to_be_bytes().to_vec()).unwrap();
    }
    let got = rec.wait_for(n);
    let last = got.last().unwrap().0;
    wait_applied(&h, last);
    assert_eq!(h.stats().first_index, 1);
    h.set_durable_applied(last);
    let deadline = Instant::now() + Duration::from_secs(10);
    while h.stats().first_index == 1 {
        assert!(Instant::now() < deadline, "log never compacted");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(
        h.stats().first_index,
        last - cairn_raft::LOG_RETAIN_ENTRIES + 1
    );
    h.stop();

    // Restart after compaction: entries after `applied` are still there.
    let applied = last - 10;
    let (h, rec) = run(dir.path(), applied);
    let want: Vec<_> = got.iter().filter(|(i, _)| *i > applied).cloned().collect();
    assert_eq!(rec.wait_for(want.len()), want);
    h.stop();

    // Applied before the compacted prefix: the state machine lost data; refuse.
    let err = start(config(dir.path(), 5), Recorder::default(), NoPeers).err();
    assert!(matches!(err, Some(RaftError::Storage(_))), "{err:?}");
}

/// Wakes waiters whenever an apply call finishes.
#[derive(Clone, Default)]
struct Notifying {
    applied: Arc<(Mutex<u64>, std::sync::Condvar)>,
}

impl Applier for Notifying {
    fn apply(&mut self, entries: Vec<Committed>) -> Result<(), ApplyError> {
        let (count, cv) = &*self.applied;
        *count.lock().unwrap() += entries.iter().filter(|e| e.data().is_some()).count() as u64;
        cv.notify_all();
        Ok(())
    }
}

#[test]
fn waiting_clients_are_group_committed() {
    // Clients that each wait for their write before sending the next, like etcd clients
    // waiting for a response: concurrent writes must still share fsyncs.
    const CLIENTS: u64 = 32;
    const PER_CLIENT: u64 = 50;
    let dir = tempfile::tempdir().unwrap();
    let app = Notifying::default();
    let h = start(config(dir.path(), 0), app.clone(), NoPeers).unwrap();
    let base = h.stats();
    let started = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (h, app) = (h.clone(), app.clone());
            std::thread::spawn(move || {
                for i in 0..PER_CLIENT {
                    let (count, cv) = &*app.applied;
                    let before = *count.lock().unwrap();
                    h.propose(format!("{c}/{i}").into_bytes()).unwrap();
                    // Wait until at least one more entry is applied: a loose stand-in for
                    // "mine is applied" that still keeps clients closed-loop.
                    let mut n = count.lock().unwrap();
                    while *n == before {
                        n = cv.wait(n).unwrap();
                    }
                }
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    let total = CLIENTS * PER_CLIENT;
    let (count, cv) = &*app.applied;
    let mut n = count.lock().unwrap();
    while *n < total {
        n = cv.wait_timeout(n, Duration::from_secs(10)).unwrap().0;
    }
    drop(n);
    let syncs = h.stats().log_syncs - base.log_syncs;
    eprintln!(
        "{total} closed-loop writes in {:?}: {syncs} fsyncs",
        started.elapsed()
    );
    assert!(syncs * 4 < total, "{syncs} fsyncs for {total} writes");
    h.stop();
}

#[test]
fn committed_conf_change_is_applied_and_stored() {
    #[derive(Clone, Default)]
    struct Changes(Arc<Mutex<Vec<MembershipChange>>>);
    impl Applier for Changes {
        fn apply(&mut self, entries: Vec<Committed>) -> Result<(), ApplyError> {
            let mut seen = self.0.lock().unwrap();
            for e in entries {
                if let Payload::Membership(m) = e.payload {
                    seen.push(m);
                }
            }
            Ok(())
        }
    }

    let dir = tempfile::tempdir().unwrap();
    let changes = Changes::default();
    let h = start(config(dir.path(), 0), changes.clone(), NoPeers).unwrap();
    h.propose_membership(Change::AddLearner, 9, b"ctx".to_vec())
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while changes.0.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "conf change never applied");
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(
        changes.0.lock().unwrap()[0],
        MembershipChange {
            changes: vec![(Change::AddLearner, 9)],
            context: b"ctx".to_vec().into(),
        }
    );
    h.stop();
    let s = cairn_raft::EngineStorage::open(dir.path()).unwrap();
    assert_eq!(s.conf_state().voters, vec![7]);
    assert_eq!(s.conf_state().learners, vec![9]);
    drop(s);
    // Still the sole voter: after a restart that re-delivers the conf change it leads
    // again as soon as the applier has passed it, without an election timeout.
    let (h, _) = run(dir.path(), 0);
    let deadline = Instant::now() + Duration::from_millis(500);
    while !h.status().is_leader {
        assert!(Instant::now() < deadline, "no leader after restart");
        std::thread::sleep(Duration::from_millis(1));
    }
    h.stop();
    // With the conf change already applied, it is leader when start returns.
    let applied = h.status().commit_index;
    let (h, _) = run(dir.path(), applied);
    assert!(h.status().is_leader);
    h.stop();
}

#[test]
fn fresh_log_under_restored_state_machine_continues_after_applied() {
    let dir = tempfile::tempdir().unwrap();
    let (h, rec) = run(dir.path(), 500);
    assert!(h.status().is_leader);
    h.propose(b"next".to_vec()).unwrap();
    let got = rec.wait_for(1);
    assert!(got[0].0 > 500, "{got:?}");
    h.stop();
}

#[test]
fn a_failing_state_machine_stops_the_driver_and_says_why() {
    // Before: the server's applier ended the process itself (`process::exit`) because
    // `Applier::apply` could not return an error; now the driver stops and reports it.
    let dir = tempfile::tempdir().unwrap();
    let failing = FailsOn {
        trigger: "poison",
        fail: || Err("poison entry".into()),
    };
    let h = start(config(dir.path(), 0), failing, NoPeers).unwrap();
    h.propose(b"fine".to_vec()).unwrap();
    h.propose(b"poison".to_vec()).unwrap();
    let stopped = wait_stopped(&h);
    match stopped {
        Err(RaftError::StateMachine(why)) => assert!(why.contains("poison entry"), "{why}"),
        other => panic!("stopped with {other:?}"),
    }
    assert!(h.is_stopped());
    assert_eq!(h.propose(b"more".to_vec()), Err(RaftError::Stopped));
    h.stop();
}

#[test]
fn applied_index_and_leadership_are_announced() {
    let dir = tempfile::tempdir().unwrap();
    let (h, _rec) = run(dir.path(), 0);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let leadership = *h.leadership().borrow();
    assert_eq!((leadership.leader_id, leadership.is_leader), (7, true));
    assert_eq!(leadership.term, h.status().term);

    let mut applied = h.applied_index();
    let before = *applied.borrow_and_update();
    h.propose(b"x".to_vec()).unwrap();
    let now = runtime
        .block_on(async {
            let reached = applied.wait_for(|&a| a > before);
            tokio::time::timeout(Duration::from_secs(20), reached)
                .await
                .map(|r| r.map(|a| *a))
        })
        .expect("no applied index announced")
        .unwrap();
    assert_eq!(now, h.status().applied_index);

    h.stop();
    let stopped = runtime
        .block_on(async { tokio::time::timeout(Duration::from_secs(5), h.stopped()).await })
        .expect("no stop announced");
    assert_eq!(stopped, Ok(()));
}

/// Messages no correct peer sends, each with what raft-rs 0.7 would do with it: from
/// member 8 to member 7, which has voters 7 and 8.
fn hostile_messages() -> Vec<(&'static str, cairn_raft::testing::eraftpb::Message)> {
    use cairn_raft::testing::eraftpb::{Entry, Message, MessageType};
    let from_peer = |t: MessageType| {
        let mut m = Message::default();
        m.set_msg_type(t);
        m.from = 8;
        m.to = 7;
        m.term = 1;
        m
    };
    // From a leader of a later term: raft-rs steps down to follower first, then meets what
    // it panics on.
    let later = |t: MessageType| {
        let mut m = from_peer(t);
        m.term = 1 << 20;
        m
    };
    let local = |t: MessageType| {
        let mut m = from_peer(t);
        m.term = 0;
        m
    };
    let entry = |index: u64, term: u64| Entry {
        index,
        term,
        ..Default::default()
    };
    let mut heartbeat = later(MessageType::MsgHeartbeat);
    heartbeat.commit = 1 << 40;
    let mut to_other = later(MessageType::MsgAppend);
    to_other.to = 9;
    let mut from_self = later(MessageType::MsgAppend);
    from_self.from = 7;
    let mut past_end = later(MessageType::MsgAppend);
    past_end.index = 1 << 30;
    past_end.commit = 1 << 30;
    // After index 0 (term 0 on an empty log), so raft-rs takes the entries.
    let mut scattered = later(MessageType::MsgAppend);
    scattered.entries = vec![entry(5, 1), entry(1, 1)].into();
    let mut termless_entry = later(MessageType::MsgAppend);
    termless_entry.commit = 1;
    termless_entry.entries = vec![entry(1, 0)].into();
    let snapshot = |index: u64, term: u64, voters: Vec<u64>, learners: Vec<u64>| {
        let mut m = later(MessageType::MsgSnapshot);
        let meta = m.mut_snapshot().mut_metadata();
        meta.index = index;
        meta.term = term;
        meta.mut_conf_state().voters = voters;
        meta.mut_conf_state().learners = learners;
        m
    };
    let mut termless_vote = local(MessageType::MsgRequestVote);
    termless_vote.index = 1 << 30;
    termless_vote.log_term = 1 << 20;
    let mut termless_read = local(MessageType::MsgReadIndexResp);
    termless_read.index = 1 << 30;
    termless_read.entries = vec![Entry::default()].into();
    let mut proposal_with_term = later(MessageType::MsgPropose);
    proposal_with_term.entries = vec![Entry::default()].into();
    let mut ack_past_end = from_peer(MessageType::MsgAppendResponse);
    ack_past_end.index = 1 << 30;
    let mut snapshot_request = from_peer(MessageType::MsgAppendResponse);
    snapshot_request.reject = true;
    snapshot_request.request_snapshot = 5;
    vec![
        (
            "empty proposal: stepped empty MsgProp",
            local(MessageType::MsgPropose),
        ),
        ("local MsgHup", local(MessageType::MsgHup)),
        ("local MsgBeat", local(MessageType::MsgBeat)),
        ("local MsgCheckQuorum", local(MessageType::MsgCheckQuorum)),
        (
            "local MsgUnreachable",
            from_peer(MessageType::MsgUnreachable),
        ),
        ("local MsgSnapStatus", from_peer(MessageType::MsgSnapStatus)),
        ("read without context", local(MessageType::MsgReadIndex)),
        ("heartbeat: commit_to past the end", heartbeat),
        ("addressed to another member", to_other),
        ("from this member", from_self),
        ("append past the end with term 0: commit_to", past_end),
        ("entries out of order: maybe_append underflows", scattered),
        ("entry of term 0: commit_to past the end", termless_entry),
        (
            "snapshot of term 0: commit_to",
            snapshot(1 << 30, 0, vec![7], vec![]),
        ),
        (
            "snapshot without voters: unable to restore config",
            snapshot(1 << 30, 1, vec![], vec![7]),
        ),
        (
            "snapshot listing a voter twice: invalid restore",
            snapshot(1 << 30, 1, vec![7, 7], vec![]),
        ),
        (
            "snapshot with a voter as learner",
            snapshot(1 << 30, 1, vec![7, 8], vec![8]),
        ),
        (
            "snapshot with member 0",
            snapshot(1 << 30, 1, vec![0, 7], vec![]),
        ),
        ("vote without a term: send panics", termless_vote),
        ("read answer without a term: commit_to", termless_read),
        ("heartbeat without a term", local(MessageType::MsgHeartbeat)),
        (
            "proposal with a term: send panics forwarding it",
            proposal_with_term,
        ),
        ("acknowledgement past the end", ack_past_end),
        ("snapshot request", snapshot_request),
    ]
}

#[test]
fn messages_no_correct_peer_sends_never_reach_raft_rs() {
    // Before: an empty MsgPropose from the peer port made raft-rs panic ("stepped empty
    // MsgProp"), the Raft thread died and the member answered "server stopped" to every
    // write until restarted. Each message goes to a member of its own, which has voters 7
    // and 8 and knows no leader (a follower, as most members are).
    for (name, m) in hostile_messages() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = RaftConfig {
            voters: vec![7, 8],
            ..config(dir.path(), 0)
        };
        let h = start(cfg, Recorder::default(), NoPeers).unwrap();
        let term = h.status().term;
        h.step(m.into()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while h.stats().messages_refused == 0 {
            assert!(!h.is_stopped(), "{name}: the driver stopped");
            assert!(Instant::now() < deadline, "{name}: not refused");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(!h.is_stopped(), "{name}: the driver stopped");
        // Every message is of a later term than the member's: had raft-rs seen it, the
        // member would have moved to that term.
        assert_eq!(h.status().term, term, "{name}: raft-rs saw it");
        h.stop();
    }
}

#[test]
fn a_membership_change_that_does_not_decode_is_skipped_not_fatal() {
    // Before: a committed conf-change entry whose bytes did not decode stopped the Raft
    // thread, and again at every restart (the entry is in the log). raft-rs's leader refuses
    // such a proposal, but an append in a leader's name can carry one.
    use cairn_raft::testing::eraftpb::{Entry, EntryType, Message, MessageType};
    let dir = tempfile::tempdir().unwrap();
    let cfg = RaftConfig {
        voters: vec![7, 8],
        ..config(dir.path(), 0)
    };
    let h = start(cfg, Recorder::default(), NoPeers).unwrap();
    let mut append = Message::default();
    append.set_msg_type(MessageType::MsgAppend);
    (append.from, append.to, append.term, append.commit) = (8, 7, 5, 1);
    let mut cc = Entry {
        index: 1,
        term: 5,
        data: vec![0xff; 5].into(),
        ..Default::default()
    };
    cc.set_entry_type(EntryType::EntryConfChangeV2);
    append.entries = vec![cc].into();
    h.step(append.into()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while h.status().applied_index < 1 {
        assert!(!h.is_stopped(), "the driver stopped");
        assert!(Instant::now() < deadline, "not applied");
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(!h.is_stopped());
    assert_eq!(h.stats().messages_refused, 0);
    h.stop();
}

#[test]
fn a_leader_that_was_sent_what_no_peer_sends_still_commits() {
    let dir = tempfile::tempdir().unwrap();
    let (h, rec) = run(dir.path(), 0);
    // Once this member has committed its first entry, an append that rewrites it.
    h.propose(b"first".to_vec()).unwrap();
    rec.wait_for(1);
    let mut rewrite = cairn_raft::testing::eraftpb::Message::default();
    rewrite.set_msg_type(cairn_raft::testing::eraftpb::MessageType::MsgAppend);
    (rewrite.from, rewrite.to, rewrite.term) = (8, 7, 1 << 20);
    rewrite.entries = vec![cairn_raft::testing::eraftpb::Entry {
        index: 1,
        term: 99,
        ..Default::default()
    }]
    .into();
    let mut hostile = hostile_messages();
    hostile.push(("append rewriting a committed entry", rewrite));
    let count = hostile.len() as u64;
    h.step_many(hostile.into_iter().map(|(_, m)| m.into()).collect())
        .unwrap();
    h.propose(b"still here".to_vec()).unwrap();
    assert_eq!(rec.wait_for(2)[1].1, b"still here".to_vec());
    assert_eq!(h.stats().messages_refused, count);
    assert!(!h.is_stopped());
    assert!(h.status().is_leader);
    h.stop();
}

#[test]
fn a_panicking_state_machine_stops_the_driver_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let panicking = FailsOn {
        trigger: "boom",
        fail: || panic!("the state machine broke"),
    };
    let h = start(config(dir.path(), 0), panicking, NoPeers).unwrap();
    h.propose(b"boom".to_vec()).unwrap();
    let stopped = wait_stopped(&h);
    match stopped {
        Err(RaftError::StateMachine(why)) => {
            assert!(why.contains("panicked: the state machine broke"), "{why}")
        }
        other => panic!("stopped with {other:?}"),
    }
    h.stop();
}

/// A log carried over from etcd: the state machine holds up to index 10 (term 3); the log
/// holds 11 (committed) and 12 (not yet), and the sole voter applies both at the same
/// indexes once it leads, then its own proposals after them, in a later term.
#[test]
fn a_seeded_log_resumes_after_the_applied_index_with_its_entries() {
    use cairn_raft::{seed_log, LogSeed, SeedEntry, SeedPayload};
    let dir = tempfile::tempdir().unwrap();
    let entry = |index, data: &str| SeedEntry {
        index,
        term: 3,
        payload: SeedPayload::Data(data.as_bytes().to_vec()),
    };
    let seed = LogSeed {
        applied: (10, 3),
        term: 3,
        vote: 7,
        commit: 11,
        voters: vec![7],
        learners: vec![],
        entries: vec![entry(11, "committed"), entry(12, "appended")],
    };
    // Seeds that do not fit are refused before anything is written.
    for (bad, why) in [
        (
            LogSeed {
                entries: vec![entry(12, "gap")],
                ..seed.clone()
            },
            "does not follow",
        ),
        (
            LogSeed {
                commit: 13,
                ..seed.clone()
            },
            "past the last entry",
        ),
        (
            LogSeed {
                voters: vec![],
                ..seed.clone()
            },
            "no voters",
        ),
    ] {
        let err = seed_log(dir.path(), &bad).unwrap_err().to_string();
        assert!(err.contains(why), "{err}");
        assert!(!dir.path().exists() || std::fs::read_dir(dir.path()).unwrap().next().is_none());
    }
    seed_log(dir.path(), &seed).unwrap();
    assert!(seed_log(dir.path(), &seed).is_err(), "a second seed");
    let (h, rec) = run(dir.path(), 10);
    h.propose(b"mine".to_vec()).unwrap();
    let got = rec.wait_for(3);
    assert_eq!(
        got,
        [
            (11, b"committed".to_vec()),
            (12, b"appended".to_vec()),
            (14, b"mine".to_vec()),
        ]
    );
    assert!(h.status().term > 3);
}
