//! An in-memory network for running several members in one process, with faults.
//!
//! Every member gets a [`MemTransport`] from one [`MemNetwork`]; after starting a member,
//! [`MemNetwork::register`] tells the network where its messages go. Each batch a member
//! sends passes through the network's rules, in this order:
//!
//! 1. `isolate`d members neither send nor receive anything;
//! 2. with a `partition`, messages between different groups are dropped (members in no
//!    group are cut off from everyone);
//! 3. `drop_type` drops every message of a type, `drop_rate` a random share of the rest;
//! 4. `delay` holds the surviving messages back before delivering them.
//!
//! A dropped `MsgSnapshot` is reported to its sender as lost, as a real transport reports
//! a failed stream, so the leader retries. Delivery only queues on the receiver
//! ([`RaftHandle::step_many`]), so a sender's Raft thread never blocks on a receiver.
//!
//! Example: cut leader 1 off from 2 and 3, then heal.
//!
//! ```text
//! net.partition(&[&[1], &[2, 3]]);   // 2 and 3 elect a new leader; 1 cannot commit
//! net.heal();                         // 1 hears the higher term and catches up
//! ```

use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
pub use raft::eraftpb;
use raft::eraftpb::MessageType;

use crate::{PeerMessage, RaftHandle, Transport};

/// Every raft-rs message type, for tests that send each one.
pub const ALL_MESSAGE_TYPES: [MessageType; 19] = [
    MessageType::MsgHup,
    MessageType::MsgBeat,
    MessageType::MsgPropose,
    MessageType::MsgAppend,
    MessageType::MsgAppendResponse,
    MessageType::MsgRequestVote,
    MessageType::MsgRequestVoteResponse,
    MessageType::MsgSnapshot,
    MessageType::MsgHeartbeat,
    MessageType::MsgHeartbeatResponse,
    MessageType::MsgUnreachable,
    MessageType::MsgSnapStatus,
    MessageType::MsgCheckQuorum,
    MessageType::MsgTransferLeader,
    MessageType::MsgTimeoutNow,
    MessageType::MsgReadIndex,
    MessageType::MsgReadIndexResp,
    MessageType::MsgRequestPreVote,
    MessageType::MsgRequestPreVoteResponse,
];

/// How often [`MemNetwork::advance`] looks whether a tick's traffic has settled, and how
/// long it waits at most.
const SETTLE_POLL: Duration = Duration::from_micros(200);
const SETTLE_LIMIT: Duration = Duration::from_millis(200);

/// The fault rules; all empty means a perfect network.
#[derive(Debug, Default, Clone)]
struct Rules {
    isolated: HashSet<u64>,
    /// Groups of a partition; `None` when the network is whole.
    groups: Option<Vec<HashSet<u64>>>,
    dropped_types: HashSet<MessageType>,
    /// Share of messages dropped at random, in `[0, 1]`.
    drop_rate: f64,
    delay: Duration,
}

impl Rules {
    fn cut(&self, from: u64, to: u64) -> bool {
        if self.isolated.contains(&from) || self.isolated.contains(&to) {
            return true;
        }
        match &self.groups {
            None => false,
            Some(groups) => !groups.iter().any(|g| g.contains(&from) && g.contains(&to)),
        }
    }
}

/// A batch waiting out its delay; ordered so the heap pops the earliest first.
struct Delayed {
    at: Instant,
    seq: u64,
    to: u64,
    msgs: Vec<PeerMessage>,
}

impl PartialEq for Delayed {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Delayed {}
impl PartialOrd for Delayed {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Delayed {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

#[derive(Default)]
struct State {
    rules: Rules,
    handles: HashMap<u64, RaftHandle>,
    delayed: BinaryHeap<Delayed>,
    next_seq: u64,
    /// xorshift state for `drop_rate`.
    rng: u64,
    /// Set when the network is dropped; ends the delivery thread.
    closed: bool,
    /// Messages delivered and dropped, for tests that check the rules bit.
    delivered: u64,
    dropped: u64,
}

struct Inner {
    /// Protects the rules, the registered handles and the delay queue. Never held while
    /// calling into a handle that could call back into the network.
    state: Mutex<State>,
    /// Wakes the delivery thread when a delayed batch is queued or the network closes.
    wake: Condvar,
}

/// The shared in-memory network. Cloning shares it.
#[derive(Clone)]
pub struct MemNetwork {
    inner: Arc<Inner>,
    /// Closes the network when the last clone goes away.
    _closer: Arc<Closer>,
}

struct Closer(Arc<Inner>);

impl Drop for Closer {
    fn drop(&mut self) {
        let handles = {
            let mut s = self.0.state.lock();
            s.closed = true;
            // The members' transports point back at the network: let go of their handles
            // so that dropping them can stop the members.
            std::mem::take(&mut s.handles)
        };
        self.0.wake.notify_all();
        drop(handles);
    }
}

impl Default for MemNetwork {
    fn default() -> Self {
        Self::new()
    }
}

impl MemNetwork {
    /// A perfect network with a thread that delivers delayed messages.
    pub fn new() -> Self {
        let inner = Arc::new(Inner {
            state: Mutex::new(State {
                rng: 0x9E37_79B9_7F4A_7C15,
                ..Default::default()
            }),
            wake: Condvar::new(),
        });
        let worker = Arc::clone(&inner);
        // The thread ends when the network closes; nothing waits for it.
        let _ = std::thread::Builder::new()
            .name("mem-network".into())
            .spawn(move || deliver_delayed(&worker));
        MemNetwork {
            _closer: Arc::new(Closer(Arc::clone(&inner))),
            inner,
        }
    }

    /// The transport member `id` is started with.
    pub fn transport(&self, id: u64) -> MemTransport {
        MemTransport {
            id,
            net: Arc::clone(&self.inner),
        }
    }

    /// Routes messages for `id` to `handle` (replacing a previous one, e.g. on restart).
    pub fn register(&self, id: u64, handle: RaftHandle) {
        self.inner.state.lock().handles.insert(id, handle);
    }

    /// Stops delivering to `id` (a stopped member).
    pub fn unregister(&self, id: u64) {
        self.inner.state.lock().handles.remove(&id);
    }

    /// Cuts `id` off from every other member.
    pub fn isolate(&self, id: u64) {
        self.inner.state.lock().rules.isolated.insert(id);
    }

    /// Only members within one group can talk to each other.
    pub fn partition(&self, groups: &[&[u64]]) {
        let groups = groups.iter().map(|g| g.iter().copied().collect()).collect();
        self.inner.state.lock().rules.groups = Some(groups);
    }

    /// Drops every message of type `t`.
    pub fn drop_type(&self, t: MessageType) {
        self.inner.state.lock().rules.dropped_types.insert(t);
    }

    /// Drops a random share `rate` (0 to 1) of all messages.
    pub fn set_drop_rate(&self, rate: f64) {
        self.inner.state.lock().rules.drop_rate = rate.clamp(0.0, 1.0);
    }

    /// Advances the clock of every registered member (started with
    /// [`crate::RaftConfig::manual_ticks`]) by `ticks`, one at a time, letting the traffic of
    /// each tick settle before the next: elections and heartbeats then depend on ticks, not
    /// on how fast the machine runs the members' threads.
    pub fn advance(&self, ticks: u64) {
        for _ in 0..ticks {
            let handles: Vec<RaftHandle> =
                self.inner.state.lock().handles.values().cloned().collect();
            for h in &handles {
                h.tick();
            }
            self.settle(&handles);
        }
    }

    /// Waits (briefly, bounded) until no member has requests queued and no delayed batch is
    /// due, twice in a row: the messages of the last tick were handled.
    fn settle(&self, handles: &[RaftHandle]) {
        let give_up = Instant::now() + SETTLE_LIMIT;
        let mut quiet = 0;
        while quiet < 2 && Instant::now() < give_up {
            std::thread::sleep(SETTLE_POLL);
            let delayed_due = {
                let s = self.inner.state.lock();
                s.delayed.peek().is_some_and(|d| d.at <= Instant::now())
            };
            if !delayed_due && handles.iter().all(|h| h.queued() == 0) {
                quiet += 1;
            } else {
                quiet = 0;
            }
        }
    }

    /// Delays every message by `delay`.
    pub fn set_delay(&self, delay: Duration) {
        self.inner.state.lock().rules.delay = delay;
    }

    /// Removes every rule: a perfect network again.
    pub fn heal(&self) {
        self.inner.state.lock().rules = Rules::default();
    }

    /// Whether the rules let `from` reach `to` now and `to` is registered.
    pub fn reachable(&self, from: u64, to: u64) -> bool {
        let s = self.inner.state.lock();
        !s.rules.cut(from, to) && s.handles.contains_key(&to)
    }

    /// Messages delivered and dropped so far.
    pub fn counts(&self) -> (u64, u64) {
        let s = self.inner.state.lock();
        (s.delivered, s.dropped)
    }
}

/// One member's end of a [`MemNetwork`].
pub struct MemTransport {
    id: u64,
    net: Arc<Inner>,
}

impl Transport for MemTransport {
    fn send(&mut self, msgs: Vec<PeerMessage>) {
        let mut by_peer: HashMap<u64, Vec<PeerMessage>> = HashMap::new();
        let mut lost_snapshots = Vec::new();
        let (targets, sender) = {
            let mut s = self.net.state.lock();
            for m in msgs {
                let rules = &s.rules;
                let mut dropped = rules.cut(self.id, m.recipient())
                    || rules.dropped_types.contains(&m.0.get_msg_type());
                if !dropped && rules.drop_rate > 0.0 {
                    dropped = next_f64(&mut s.rng) < s.rules.drop_rate;
                }
                if dropped {
                    s.dropped += 1;
                    if m.is_snapshot() {
                        lost_snapshots.push(m.recipient());
                    }
                } else {
                    s.delivered += 1;
                    by_peer.entry(m.recipient()).or_default().push(m);
                }
            }
            let delay = s.rules.delay;
            if !delay.is_zero() {
                let at = Instant::now() + delay;
                for (to, msgs) in by_peer.drain() {
                    let seq = s.next_seq;
                    s.next_seq += 1;
                    s.delayed.push(Delayed { at, seq, to, msgs });
                }
                self.net.wake.notify_all();
            }
            let targets: Vec<(RaftHandle, Vec<PeerMessage>)> = by_peer
                .drain()
                .filter_map(|(to, msgs)| s.handles.get(&to).map(|h| (h.clone(), msgs)))
                .collect();
            (targets, s.handles.get(&self.id).cloned())
        };
        for (h, msgs) in targets {
            // A stopped member simply does not receive.
            let _ = h.step_many(msgs);
        }
        if let Some(me) = sender {
            for to in lost_snapshots {
                me.report_snapshot(to, false);
            }
        }
    }
}

fn deliver_delayed(inner: &Inner) {
    let mut s = inner.state.lock();
    loop {
        if s.closed {
            return;
        }
        let now = Instant::now();
        match s.delayed.peek().map(|d| d.at) {
            Some(at) if at <= now => {
                if let Some(d) = s.delayed.pop() {
                    let h = s.handles.get(&d.to).cloned();
                    drop(s);
                    if let Some(h) = h {
                        let _ = h.step_many(d.msgs);
                    }
                    s = inner.state.lock();
                }
            }
            Some(at) => {
                let _ = inner.wake.wait_for(&mut s, at - now);
            }
            None => inner.wake.wait(&mut s),
        }
    }
}

/// xorshift64*: enough randomness for dropping messages in tests.
fn next_f64(state: &mut u64) -> f64 {
    let mut x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
}
