//! Several members in one process, each with its own raft-engine log in a tempdir and a
//! `BTreeMap` state machine, over the fault-injecting in-memory network.
//!
//! Time is the test's: members start with `manual_ticks`, and the clock moves only when a
//! test advances the network ([`MemNetwork::advance`], which lets each tick's traffic
//! settle). Waits advance the clock until their condition holds, within a bound in ticks;
//! a test that proves something does *not* happen advances a set number of ticks. So
//! elections and timeouts follow ticks, however slowly the machine runs the threads.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test helpers panic on setup failure.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_raft::testing::MemNetwork;
use cairn_raft::{
    start, Applier, ApplyError, Change, Committed, RaftConfig, RaftError, RaftHandle,
};

/// The most ticks any wait may take before its test fails (an election takes 10 to 20).
const MAX_TICKS: u64 = 20_000;

/// Advances the clock until `cond` holds; fails the test after [`MAX_TICKS`].
fn tick_until(net: &MemNetwork, what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..MAX_TICKS {
        if cond() {
            return;
        }
        net.advance(1);
    }
    assert!(cond(), "not within {MAX_TICKS} ticks: {what}");
}

/// The state machine: every applied entry with data, by index. Two members that applied
/// the same entries in the same order hold equal maps.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Sm {
    entries: BTreeMap<u64, Vec<u8>>,
    applied: u64,
}

#[derive(Clone, Default)]
struct KvApplier {
    sm: Arc<Mutex<Sm>>,
    /// Snapshots built and restored.
    built: Arc<Mutex<u64>>,
    restored: Arc<Mutex<Vec<u64>>>,
    /// Restores left to fail, to stop the driver as a crash would.
    fail_restores: Arc<Mutex<u64>>,
}

/// The state machine as bytes: applied index, then `(index, length, data)` per entry.
fn encode(sm: &Sm) -> Vec<u8> {
    let mut out = sm.applied.to_be_bytes().to_vec();
    for (i, d) in &sm.entries {
        out.extend_from_slice(&i.to_be_bytes());
        out.extend_from_slice(&(d.len() as u64).to_be_bytes());
        out.extend_from_slice(d);
    }
    out
}

fn decode(b: &[u8]) -> Sm {
    let u64_at = |at: usize| u64::from_be_bytes(b[at..at + 8].try_into().unwrap());
    let mut sm = Sm {
        applied: u64_at(0),
        ..Default::default()
    };
    let mut at = 8;
    while at < b.len() {
        let (i, n) = (u64_at(at), u64_at(at + 8) as usize);
        sm.entries.insert(i, b[at + 16..at + 16 + n].to_vec());
        at += 16 + n;
    }
    sm
}

impl Applier for KvApplier {
    fn apply(&mut self, entries: Vec<Committed>) -> Result<(), ApplyError> {
        let mut sm = self.sm.lock().unwrap();
        for e in entries {
            assert!(e.index > sm.applied, "entry {} applied twice", e.index);
            if let Some(data) = e.data() {
                sm.entries.insert(e.index, data.to_vec());
            }
            sm.applied = e.index;
        }
        Ok(())
    }

    fn snapshot(&mut self) -> Result<Vec<u8>, ApplyError> {
        *self.built.lock().unwrap() += 1;
        Ok(encode(&self.sm.lock().unwrap()))
    }

    fn restore(&mut self, data: &[u8], index: u64, _term: u64) -> Result<(), ApplyError> {
        {
            let mut fail = self.fail_restores.lock().unwrap();
            if *fail > 0 {
                *fail -= 1;
                return Err("injected restore failure".into());
            }
        }
        let sm = decode(data);
        assert_eq!(sm.applied, index, "snapshot bytes from another index");
        *self.sm.lock().unwrap() = sm;
        self.restored.lock().unwrap().push(index);
        Ok(())
    }
}

impl KvApplier {
    fn sm(&self) -> Sm {
        self.sm.lock().unwrap().clone()
    }

    fn values(&self) -> Vec<Vec<u8>> {
        self.sm().entries.into_values().collect()
    }
}

struct Member {
    dir: tempfile::TempDir,
    sm: KvApplier,
    handle: Option<RaftHandle>,
}

struct Cluster {
    net: MemNetwork,
    voters: Vec<u64>,
    /// `log_retain_entries` and `log_compact_step` of every member.
    log: (u64, u64),
    members: BTreeMap<u64, Member>,
}

impl Cluster {
    /// Starts members `1..=n`, all voters.
    fn new(n: u64) -> Cluster {
        Self::with_log(
            n,
            (cairn_raft::LOG_RETAIN_ENTRIES, cairn_raft::COMPACT_STEP),
        )
    }

    /// Starts members `1..=n` that keep `log.0` entries behind the durable applied index
    /// and compact in steps of `log.1`.
    fn with_log(n: u64, log: (u64, u64)) -> Cluster {
        let voters: Vec<u64> = (1..=n).collect();
        let mut c = Cluster {
            net: MemNetwork::new(),
            voters: voters.clone(),
            log,
            members: BTreeMap::new(),
        };
        for id in voters {
            c.members.insert(
                id,
                Member {
                    dir: tempfile::tempdir().unwrap(),
                    sm: KvApplier::default(),
                    handle: None,
                },
            );
            c.start(id);
        }
        c
    }

    fn config(&self, id: u64) -> RaftConfig {
        let m = &self.members[&id];
        // A member added later starts with no membership and learns it from the leader.
        let voters = if self.voters.contains(&id) {
            self.voters.clone()
        } else {
            Vec::new()
        };
        RaftConfig {
            id,
            voters,
            dir: m.dir.path().to_path_buf(),
            manual_ticks: true,
            election_tick: 10,
            heartbeat_tick: 2,
            applied: m.sm.sm().applied,
            log_retain_entries: self.log.0,
            log_compact_step: self.log.1,
            ..Default::default()
        }
    }

    /// Starts (or restarts) `id` over its log and its state machine as it is now.
    fn start(&mut self, id: u64) {
        let cfg = self.config(id);
        let m = self.members.get_mut(&id).unwrap();
        let h = start(cfg, m.sm.clone(), self.net.transport(id)).unwrap();
        self.net.register(id, h.clone());
        m.handle = Some(h);
    }

    /// Starts a new, empty member `id` that joins once the leader adds it.
    fn add_member(&mut self, id: u64) {
        self.members.insert(
            id,
            Member {
                dir: tempfile::tempdir().unwrap(),
                sm: KvApplier::default(),
                handle: None,
            },
        );
        self.start(id);
    }

    /// Reports every member's applied index as durable, so their logs compact.
    fn make_durable(&self) {
        for id in self.running() {
            self.h(id).set_durable_applied(self.sm(id).sm().applied);
        }
    }

    /// Waits until the log of `id` starts after `index`.
    fn wait_compacted(&self, id: u64, index: u64) {
        tick_until(
            &self.net,
            &format!("log of {id} compacted past {index}"),
            || {
                self.make_durable();
                self.h(id).stats().first_index > index
            },
        );
    }

    fn stop(&mut self, id: u64) {
        self.net.unregister(id);
        if let Some(h) = self.members.get_mut(&id).unwrap().handle.take() {
            h.stop();
        }
    }

    fn h(&self, id: u64) -> &RaftHandle {
        self.members[&id].handle.as_ref().unwrap()
    }

    fn sm(&self, id: u64) -> &KvApplier {
        &self.members[&id].sm
    }

    fn running(&self) -> Vec<u64> {
        self.members
            .iter()
            .filter(|(_, m)| m.handle.is_some())
            .map(|(&id, _)| id)
            .collect()
    }

    /// Waits until every member of `among` knows the same leader, itself in `among`, and
    /// that leader says it leads. Returns it.
    fn wait_leader(&self, among: &[u64]) -> u64 {
        let mut leader = 0;
        tick_until(&self.net, &format!("a leader among {among:?}"), || {
            let leaders: Vec<u64> = among
                .iter()
                .map(|&id| self.h(id).status().leader_id)
                .collect();
            leader = leaders[0];
            leader != 0
                && among.contains(&leader)
                && leaders.iter().all(|&x| x == leader)
                && self.h(leader).status().is_leader
        });
        leader
    }

    /// Proposes through `id`, retrying while it knows no leader.
    fn propose(&self, id: u64, data: &[u8]) {
        tick_until(
            &self.net,
            &format!("{id} knows a leader to propose to"),
            || match self.h(id).propose(data.to_vec()) {
                Ok(()) => true,
                Err(RaftError::NoLeader) => false,
                Err(e) => panic!("propose on {id}: {e}"),
            },
        );
    }

    /// Waits until `data` is applied on every member of `ids`; returns its index.
    fn wait_value(&self, ids: &[u64], data: &[u8]) -> u64 {
        let mut index = 0;
        for &id in ids {
            let what = format!("{} applied on {id}", String::from_utf8_lossy(data));
            tick_until(&self.net, &what, || {
                let found = self
                    .sm(id)
                    .sm()
                    .entries
                    .iter()
                    .find(|(_, d)| d.as_slice() == data)
                    .map(|(&i, _)| i);
                if let Some(i) = found {
                    index = i;
                }
                found.is_some()
            });
        }
        index
    }

    /// Waits until every member of `ids` has applied up to `index`.
    fn wait_applied(&self, ids: &[u64], index: u64) {
        for &id in ids {
            tick_until(&self.net, &format!("{id} applied {index}"), || {
                self.sm(id).sm().applied >= index
            });
        }
    }

    /// Asserts that the state machines of `ids` are equal once they applied the same
    /// commit index.
    fn assert_same_state(&self, ids: &[u64]) {
        let commit = ids
            .iter()
            .map(|&id| self.h(id).status().commit_index)
            .max()
            .unwrap();
        self.wait_applied(ids, commit);
        let want = self.sm(ids[0]).sm().entries;
        for &id in &ids[1..] {
            let got = self.sm(id).sm().entries;
            assert_eq!(got, want, "state of {id} differs from {}", ids[0]);
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for id in self.running() {
            self.stop(id);
        }
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn elect_one_leader(n: u64) {
    let started = Instant::now();
    let c = Cluster::new(n);
    let all = c.running();
    let l = c.wait_leader(&all);
    let leaders = all.iter().filter(|&&id| c.h(id).status().is_leader).count();
    assert_eq!(leaders, 1);
    let term = c.h(l).status().term;
    assert!(all.iter().all(|&id| c.h(id).status().term == term));
    eprintln!("{n} members elected {l} in {:?}", started.elapsed());
}

#[test]
fn three_members_elect_one_leader() {
    elect_one_leader(3);
}

#[test]
fn five_members_elect_one_leader() {
    elect_one_leader(5);
}

#[test]
fn no_leader_is_reported_at_once() {
    // One member of three alone never learns of a leader: requests fail fast.
    let mut c = Cluster::new(3);
    c.stop(2);
    c.stop(3);
    c.net.advance(40);
    let h = c.h(1);
    assert_eq!(h.status().leader_id, 0);
    let t = Instant::now();
    assert_eq!(h.propose(b"x".to_vec()), Err(RaftError::NoLeader));
    assert_eq!(block_on(h.read_index()), Err(RaftError::NoLeader));
    assert_eq!(h.transfer_leader(2), Err(RaftError::NoLeader));
    assert!(t.elapsed() < Duration::from_millis(100));
}

#[test]
fn proposals_from_every_member_apply_in_one_order() {
    let c = Cluster::new(3);
    let all = c.running();
    c.wait_leader(&all);
    let per_member = 100;
    let threads: Vec<_> = all
        .iter()
        .map(|&id| {
            let h = c.h(id).clone();
            std::thread::spawn(move || {
                for i in 0..per_member {
                    h.propose(format!("{id}/{i}").into_bytes()).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    for &id in &all {
        c.wait_value(&all, format!("{id}/{}", per_member - 1).as_bytes());
    }
    c.assert_same_state(&all);
    // Every proposal exactly once, each member's in the order it proposed them.
    let values = c.sm(1).values();
    assert_eq!(values.len(), all.len() * per_member);
    for &id in &all {
        let mine: Vec<String> = values
            .iter()
            .map(|v| String::from_utf8(v.clone()).unwrap())
            .filter(|v| v.starts_with(&format!("{id}/")))
            .collect();
        let want: Vec<String> = (0..per_member).map(|i| format!("{id}/{i}")).collect();
        assert_eq!(mine, want);
    }
}

#[test]
fn isolated_leader_is_replaced_and_catches_up() {
    let c = Cluster::new(3);
    let all = c.running();
    let old = c.wait_leader(&all);
    c.propose(old, b"before");
    c.wait_value(&all, b"before");

    let rest: Vec<u64> = all.iter().copied().filter(|&id| id != old).collect();
    c.net.isolate(old);
    // The old leader still believes it leads for a moment; what it accepts must never
    // commit.
    let _ = c.h(old).propose(b"lost".to_vec());
    let new = c.wait_leader(&rest);
    assert_ne!(new, old);
    c.propose(rest[0], b"during");
    c.wait_value(&rest, b"during");
    // check-quorum makes the old leader step down.
    tick_until(&c.net, "the isolated leader steps down", || {
        !c.h(old).status().is_leader
    });
    assert!(!c.sm(old).values().contains(&b"during".to_vec()));

    c.net.heal();
    c.wait_value(&all, b"during");
    c.propose(old, b"after");
    c.wait_value(&all, b"after");
    c.assert_same_state(&all);
    assert!(!c.sm(old).values().contains(&b"lost".to_vec()));
}

#[test]
fn five_members_commit_with_two_down_not_three() {
    let mut c = Cluster::new(5);
    let all = c.running();
    let l = c.wait_leader(&all);
    let down: Vec<u64> = all.iter().copied().filter(|&id| id != l).take(2).collect();
    for &id in &down {
        c.stop(id);
    }
    let up = c.running();
    c.propose(l, b"three-of-five");
    c.wait_value(&up, b"three-of-five");

    let third = up.iter().copied().find(|&id| id != l).unwrap();
    c.stop(third);
    let up = c.running();
    let before = c.h(l).status().commit_index;
    let _ = c.h(l).propose(b"two-of-five".to_vec());
    c.net.advance(50);
    for &id in &up {
        assert!(!c.sm(id).values().contains(&b"two-of-five".to_vec()));
    }
    assert_eq!(c.h(up[0]).status().commit_index, before);

    // A member coming back restores the quorum: the pending entry or a retry commits.
    c.start(third);
    let up = c.running();
    let l = c.wait_leader(&up);
    c.propose(l, b"quorum-again");
    c.wait_value(&up, b"quorum-again");
    c.assert_same_state(&up);
}

#[test]
fn read_index_on_follower_covers_acknowledged_writes() {
    let c = Cluster::new(3);
    let all = c.running();
    let l = c.wait_leader(&all);
    let followers: Vec<u64> = all.iter().copied().filter(|&id| id != l).collect();
    for round in 0..20 {
        let data = format!("w{round}").into_bytes();
        c.propose(l, &data);
        // Acknowledged: applied on the member that took the write.
        let acked = c.wait_value(&[l], &data);
        let f = followers[round % followers.len()];
        let idx = block_on(c.h(f).read_index()).unwrap();
        assert!(
            idx >= acked,
            "read index {idx} < acknowledged write {acked}"
        );
        c.wait_applied(&[f], idx);
        assert!(c.sm(f).values().contains(&data));
    }
    // Many concurrent follower reads all resolve.
    let h = c.h(followers[0]).clone();
    let got = block_on(async move {
        let reads: Vec<_> = (0..50)
            .map(|_| {
                let h = h.clone();
                tokio::spawn(async move { h.read_index().await })
            })
            .collect();
        let mut out = Vec::new();
        for r in reads {
            out.push(r.await.unwrap().unwrap());
        }
        out
    });
    assert_eq!(got.len(), 50);
}

/// Starts a read on `h` in a thread of its own; the receiver gets its outcome.
fn read_in_background(h: RaftHandle) -> std::sync::mpsc::Receiver<Result<u64, RaftError>> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(block_on(h.read_index()));
    });
    rx
}

#[test]
fn read_rounds_ask_one_follower_and_go_on_without_it() {
    let c = Cluster::new(3);
    let all = c.running();
    let l = c.wait_leader(&all);
    c.propose(l, b"w");
    c.wait_value(&all, b"w");
    // With the clock standing still, a leader's read is one heartbeat to one follower and
    // its answer: a quorum of three is the leader and one follower.
    for _ in 0..3 {
        let (before, _) = c.net.counts();
        let read = read_in_background(c.h(l).clone());
        let got = read.recv_timeout(Duration::from_secs(10));
        assert!(matches!(got, Ok(Ok(_))), "read without ticks: {got:?}");
        let (after, _) = c.net.counts();
        assert_eq!(after - before, 2, "messages for one read round");
    }
    // Whichever follower a round asks, losing it costs at most a heartbeat interval (two
    // ticks here), not an election timeout (ten): the tick's heartbeats to every peer
    // carry the round's context.
    for f in all.iter().copied().filter(|&id| id != l) {
        c.net.isolate(f);
        for _ in 0..3 {
            let read = read_in_background(c.h(l).clone());
            let mut ticks = 0;
            let got = loop {
                if let Ok(got) = read.recv_timeout(Duration::from_millis(200)) {
                    break got;
                }
                assert!(
                    ticks < 4,
                    "read still waiting after {ticks} ticks without {f:x}"
                );
                c.net.advance(1);
                ticks += 1;
            };
            assert!(got.is_ok(), "{got:?}");
        }
        c.net.heal();
    }
}

#[test]
fn simultaneous_reads_on_every_member_resolve_without_retry() {
    // Regression: read contexts were a per-member counter, so members that issued the
    // same number of reads sent the leader the same context; it dropped all but the
    // first, and the others waited an election timeout for their retry.
    let c = Cluster::new(3);
    let all = c.running();
    let l = c.wait_leader(&all);
    c.propose(l, b"w");
    c.wait_value(&all, b"w");
    for round in 0..5 {
        let handles: Vec<RaftHandle> = all.iter().map(|&id| c.h(id).clone()).collect();
        // The clock stands still: a read that needed a retry (an election timeout) would
        // never resolve.
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            block_on(async move {
                let reads: Vec<_> = handles
                    .into_iter()
                    .map(|h| tokio::spawn(async move { h.read_index().await }))
                    .collect();
                for r in reads {
                    r.await.unwrap().unwrap();
                }
            });
            let _ = done_tx.send(());
        });
        assert!(
            done_rx.recv_timeout(Duration::from_secs(10)).is_ok(),
            "round {round}: reads waited for a retry"
        );
    }
}

#[test]
fn restarted_member_replays_and_catches_up() {
    let mut c = Cluster::new(3);
    let all = c.running();
    let l = c.wait_leader(&all);
    for i in 0..20 {
        c.propose(l, format!("a{i}").as_bytes());
    }
    c.wait_value(&all, b"a19");
    let f = all.iter().copied().find(|&id| id != l).unwrap();
    c.stop(f);
    let up = c.running();
    for i in 0..20 {
        c.propose(up[0], format!("b{i}").as_bytes());
    }
    c.wait_value(&up, b"b19");
    // Restart over the kept state machine: only the missed entries are delivered.
    c.start(f);
    c.wait_value(&all, b"b19");
    c.assert_same_state(&all);

    // Restart over an empty state machine: the whole log is replayed.
    c.stop(f);
    c.members.get_mut(&f).unwrap().sm = KvApplier::default();
    c.start(f);
    c.propose(f, b"c");
    c.wait_value(&all, b"c");
    c.assert_same_state(&all);
    assert_eq!(c.sm(f).values().len(), 41);
}

#[test]
fn lossy_slow_network_still_agrees() {
    let c = Cluster::new(3);
    let all = c.running();
    c.wait_leader(&all);
    c.net.set_drop_rate(0.1);
    c.net.set_delay(Duration::from_millis(3));
    for i in 0..30 {
        c.propose(all[i % all.len()], format!("x{i}").as_bytes());
        c.net.advance(1);
    }
    c.net.heal();
    // Proposals dropped on their way to the leader are lost, as with etcd; the rest must
    // agree everywhere.
    c.propose(all[0], b"end");
    c.wait_value(&all, b"end");
    c.assert_same_state(&all);
    let (_, dropped) = c.net.counts();
    assert!(dropped > 0);
}

/// Writes `n` entries through `via`, waits until all but `lagging` applied them, makes
/// them durable everywhere and waits until the log of `via` is compacted past `past`.
fn write_and_compact(c: &Cluster, via: u64, lagging: u64, prefix: &str, n: usize, past: u64) {
    let up: Vec<u64> = c
        .running()
        .into_iter()
        .filter(|&id| id != lagging)
        .collect();
    for i in 0..n {
        c.propose(via, format!("{prefix}{i}").as_bytes());
    }
    c.wait_value(&up, format!("{prefix}{}", n - 1).as_bytes());
    c.wait_compacted(via, past);
}

#[test]
fn isolated_member_catches_up_by_snapshot() {
    let c = Cluster::with_log(3, (5, 10));
    let all = c.running();
    let l = c.wait_leader(&all);
    c.propose(l, b"first");
    c.wait_value(&all, b"first");
    let f = all.iter().copied().find(|&id| id != l).unwrap();
    c.net.isolate(f);
    let behind = c.h(f).status().last_index;
    write_and_compact(&c, l, f, "s", 100, behind + 1);
    assert!(c.sm(f).restored.lock().unwrap().is_empty());

    c.net.heal();
    c.propose(l, b"after-heal");
    c.wait_value(&all, b"after-heal");
    c.assert_same_state(&all);
    let restored = c.sm(f).restored.lock().unwrap().clone();
    assert!(!restored.is_empty(), "caught up without a snapshot");
    assert!(*c.sm(l).built.lock().unwrap() >= 1);
    let stats = c.h(f).stats();
    assert!(
        stats.first_index > behind,
        "{stats:?} behind {behind} restored {restored:?}"
    );
}

#[test]
fn restarted_member_catches_up_by_snapshot() {
    let mut c = Cluster::with_log(3, (5, 10));
    let all = c.running();
    let l = c.wait_leader(&all);
    c.propose(l, b"first");
    c.wait_value(&all, b"first");
    let f = all.iter().copied().find(|&id| id != l).unwrap();
    c.stop(f);
    let behind = c.sm(f).sm().applied;
    write_and_compact(&c, l, f, "s", 60, behind + 1);
    c.start(f);
    c.propose(f, b"from-restarted");
    c.wait_value(&all, b"from-restarted");
    c.assert_same_state(&all);
    assert_eq!(c.sm(f).restored.lock().unwrap().len(), 1);
    // Once more: the snapshot is in the state machine, the log starts after it.
    c.stop(f);
    c.start(f);
    c.propose(f, b"again");
    c.wait_value(&all, b"again");
    c.assert_same_state(&all);
    assert_eq!(c.sm(f).restored.lock().unwrap().len(), 1);
}

#[test]
fn snapshot_installed_but_not_restored_is_restored_at_restart() {
    // A crash between writing a received snapshot into the log and the state machine
    // restoring it must not leave a log that starts past the state machine.
    let mut c = Cluster::with_log(3, (5, 10));
    let all = c.running();
    let l = c.wait_leader(&all);
    c.propose(l, b"first");
    c.wait_value(&all, b"first");
    let f = all.iter().copied().find(|&id| id != l).unwrap();
    c.net.isolate(f);
    let behind = c.h(f).status().last_index;
    write_and_compact(&c, l, f, "s", 60, behind + 1);
    *c.sm(f).fail_restores.lock().unwrap() = 1;
    c.net.heal();
    // The failed restore stops the member's driver.
    tick_until(&c.net, "the driver stops after a failed restore", || {
        c.h(f).propose(b"x".to_vec()) == Err(RaftError::Stopped)
    });
    c.stop(f);
    assert!(c.sm(f).sm().applied < c.sm(l).sm().applied);
    c.start(f);
    c.propose(l, b"after-restart");
    c.wait_value(&all, b"after-restart");
    c.assert_same_state(&all);
    assert_eq!(c.sm(f).restored.lock().unwrap().len(), 1);
}

#[test]
fn leadership_transfers_to_the_chosen_member() {
    let c = Cluster::new(3);
    let all = c.running();
    let l = c.wait_leader(&all);
    c.propose(l, b"before");
    c.wait_value(&all, b"before");
    let to = all.iter().copied().find(|&id| id != l).unwrap();
    // Asked on a follower: raft-rs forwards it to the leader.
    let via = all.iter().copied().find(|&id| id != l && id != to).unwrap();
    c.h(via).transfer_leader(to).unwrap();
    tick_until(&c.net, "leadership moved", || c.wait_leader(&all) == to);
    c.propose(l, b"after");
    c.wait_value(&all, b"after");
    c.assert_same_state(&all);
}

#[test]
fn learner_joins_by_snapshot_is_promoted_and_a_voter_removed() {
    let mut c = Cluster::with_log(3, (5, 10));
    let all = c.running();
    let l = c.wait_leader(&all);
    // The log no longer starts at 1: the new member can only catch up by snapshot.
    write_and_compact(&c, l, 0, "s", 40, 1);

    c.add_member(4);
    c.h(l)
        .propose_membership(Change::AddLearner, 4, vec![])
        .unwrap();
    tick_until(&c.net, "4 is a learner", || {
        c.h(l).conf_state().learners == vec![4]
    });
    c.propose(l, b"to-learner");
    let four = [1, 2, 3, 4];
    c.wait_value(&four, b"to-learner");
    c.assert_same_state(&four);
    assert_eq!(c.sm(4).restored.lock().unwrap().len(), 1);
    assert_eq!(c.h(4).conf_state().learners, vec![4]);

    let l = c.wait_leader(&all);
    c.h(l)
        .propose_membership(Change::Promote, 4, vec![])
        .unwrap();
    tick_until(&c.net, "4 is a voter everywhere", || {
        four.iter().all(|&id| {
            let cs = c.h(id).conf_state();
            cs.voters.contains(&4) && cs.learners.is_empty()
        })
    });

    // Remove a follower that is not 4; the other three carry on.
    let l = c.wait_leader(&four);
    let gone = all.iter().copied().find(|&id| id != l).unwrap();
    c.h(l)
        .propose_membership(Change::Remove, gone, vec![])
        .unwrap();
    let rest: Vec<u64> = four.iter().copied().filter(|&id| id != gone).collect();
    tick_until(&c.net, "removed everywhere", || {
        rest.iter().all(|&id| {
            c.h(id).conf_state().voters.len() == 3 && !c.h(id).conf_state().voters.contains(&gone)
        })
    });
    c.stop(gone);
    // Three voters, one of which may now fail: two still commit.
    let third = rest.iter().copied().find(|&id| id != l).unwrap();
    c.stop(third);
    let up = c.running();
    let l = c.wait_leader(&up);
    c.propose(l, b"two-of-three");
    c.wait_value(&up, b"two-of-three");
    c.assert_same_state(&up);
}
