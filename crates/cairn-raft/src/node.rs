//! The Raft thread: owns the `RawNode`, batches requests, and works through each `Ready`.
//!
//! One loop iteration:
//!
//! 1. Wait for a request, at most until the next tick is due.
//! 2. Drain every queued request (up to [`MAX_DRAIN`] requests or [`MAX_BATCH_BYTES`] of
//!    proposals); proposals are collected into one
//!    `MsgPropose`, so everything that queued up during the previous fsync is appended,
//!    written and synced together (group commit).
//! 3. Tick if due; issue the waiting reads as one ReadIndex round, unless
//!    [`READS_IN_FLIGHT`] rounds are out already. On the leader, followers' forwarded
//!    reads join its next round rather than starting rounds of their own in raft-rs, and
//!    are answered with that round's index.
//! 4. Handle the `Ready` in raft-rs's order: send messages, (install snapshot), resolve
//!    read states, hand committed entries to the apply thread, write entries and hard state
//!    in one raft-engine batch (synced when raft-rs requires it), send persisted messages,
//!    `advance_append`, then the `LightReady`: commit index, messages, committed entries.
//! 5. Compact the log if the state machine's durable index allows it; ask the apply
//!    thread for a snapshot if raft-rs wanted one for a lagging peer.
//!
//! Snapshots: when raft-rs needs one for a peer whose entries were compacted away, the
//! storage answers "temporarily unavailable" and flags it; the apply thread then calls
//! [`crate::Applier::snapshot`] at its applied index and sends the bytes back
//! ([`Msg::SnapshotBuilt`]); this thread adds the term and the `ConfState` as of that
//! index and keeps it in the storage, which serves it at raft-rs's next attempt. A
//! snapshot received from the leader is written to the log as its new start, then
//! queued to the apply thread ahead of any later committed entries.
//!
//! Applying is asynchronous: the apply thread reports each finished batch with
//! [`Msg::Applied`], and the loop passes it to raft-rs with `advance_apply_to`.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use protobuf::Message as _;
use raft::eraftpb::{
    ConfChange, ConfChangeV2, ConfState, Entry, EntryType, Message, MessageType, Snapshot,
};
use raft::{RawNode, StateRole};
use tokio::sync::oneshot;

use crate::apply::ApplyTask;
use crate::msg::Msg;
use crate::shared::Shared;
use crate::storage::EngineStorage;
use crate::{RaftError, Transport};

/// Most requests handled before the queued proposals are flushed into a `Ready`, so a
/// steady stream of requests cannot postpone the log write indefinitely.
pub(crate) const MAX_DRAIN: usize = 16 * 1024;
/// How long a driver whose clock the caller keeps sleeps when nothing arrives.
const MANUAL_CLOCK_WAIT: Duration = Duration::from_secs(3600);

/// Proposal bytes that end a drain early, bounding one log write.
pub(crate) const MAX_BATCH_BYTES: usize = 16 << 20;

/// ReadIndex rounds this member has in flight at most. Readers that arrive while they are
/// all out wait and share the next round, so a steady stream of reads costs one round
/// (a heartbeat to every peer, and on a follower a forward to the leader) per round trip
/// instead of one per loop iteration.
pub(crate) const READS_IN_FLIGHT: usize = 1;

/// Default of [`crate::RaftConfig::log_retain_entries`].
pub const LOG_RETAIN_ENTRIES: u64 = 10_000;

/// Default of [`crate::RaftConfig::log_compact_step`].
pub const COMPACT_STEP: u64 = 1_000;

/// Readers waiting on one ReadIndex request.
#[derive(Debug)]
struct PendingRead {
    waiters: Vec<oneshot::Sender<Result<u64, RaftError>>>,
    /// On the leader, followers' forwarded `MsgReadIndex` requests that joined the round;
    /// each gets a `MsgReadIndexResp` with the round's index.
    remote: Vec<Message>,
    /// Tick count when it was last handed to raft-rs.
    issued_at: u64,
}

pub(crate) struct Node<T: Transport> {
    pub(crate) raw: RawNode<EngineStorage>,
    pub(crate) transport: T,
    pub(crate) rx: Receiver<Msg>,
    /// Committed entries to the apply thread; dropped on exit so that thread ends.
    pub(crate) apply_tx: Option<Sender<ApplyTask>>,
    /// Nudges the purge thread after a compaction.
    pub(crate) purge_tx: Option<Sender<()>>,
    pub(crate) shared: Arc<Shared>,
    /// `None` when ticks come only as `Msg::Tick`.
    pub(crate) tick_interval: Option<Duration>,
    pub(crate) election_tick: u64,
    pub(crate) next_tick: Instant,
    pub(crate) ticks: u64,
    /// Proposals drained in this iteration, stepped as one `MsgPropose`.
    pub(crate) proposals: Vec<Entry>,
    /// Data bytes in `proposals`.
    proposal_bytes: usize,
    pub(crate) conf_change_proposals: Vec<ConfChangeV2>,
    pending_reads: HashMap<u64, PendingRead>,
    /// On the leader, followers' `MsgReadIndex` requests waiting for the next round.
    remote_reads: Vec<Message>,
    /// Tick count since which drained proposals have been held for want of a leader.
    held_since: Option<u64>,
    /// On the leader, when each peer last answered an append or a heartbeat: a read
    /// round's heartbeats go to the peers that answered last (see [`Self::trim_read_heartbeats`]).
    last_heard: HashMap<u64, Instant>,
    /// When this leader last sent each follower a heartbeat; cleared when leadership
    /// changes. A heartbeat sent more than two heartbeat intervals after the previous one
    /// counts as a heartbeat send failure (etcd's: the leader is likely held up by a slow
    /// disk).
    last_heartbeat: HashMap<u64, Instant>,
    next_read_ctx: u64,
    /// Committed conf-change entries to apply to raft-rs after the current `Ready`.
    conf_changes: Vec<Entry>,
    /// Index of the last conf-change entry handed to the apply thread.
    last_conf_change: u64,
    pub(crate) applied: u64,
    pub(crate) durable_applied: u64,
    /// Entries kept behind the durable applied index, and the least compaction.
    retain_entries: u64,
    compact_step: u64,
    /// `(index, ConfState in force from that index on)`, oldest first; the first one
    /// covers every index the apply thread may still build a snapshot at.
    conf_history: Vec<(u64, ConfState)>,
    /// A snapshot build was asked of the apply thread and has not come back.
    snapshot_building: bool,
    /// Index of a received snapshot still kept in the log until the applier restored it.
    stored_snapshot: Option<u64>,
    /// Why the state machine stopped the driver.
    failed: Option<String>,
}

impl<T: Transport> Node<T> {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        raw: RawNode<EngineStorage>,
        transport: T,
        rx: Receiver<Msg>,
        apply_tx: Sender<ApplyTask>,
        purge_tx: Sender<()>,
        shared: Arc<Shared>,
        tick_interval: Option<Duration>,
        election_tick: usize,
        applied: u64,
        retain_entries: u64,
        compact_step: u64,
    ) -> Self {
        let conf_history = vec![(0, raw.store().conf_state().clone())];
        let stored_snapshot = raw
            .store()
            .stored_snapshot()
            .ok()
            .flatten()
            .map(|s| s.get_metadata().index);
        Node {
            raw,
            transport,
            rx,
            apply_tx: Some(apply_tx),
            purge_tx: Some(purge_tx),
            shared,
            tick_interval,
            election_tick: election_tick as u64,
            next_tick: Instant::now() + tick_interval.unwrap_or(MANUAL_CLOCK_WAIT),
            ticks: 0,
            proposals: Vec::new(),
            proposal_bytes: 0,
            conf_change_proposals: Vec::new(),
            pending_reads: HashMap::new(),
            remote_reads: Vec::new(),
            last_heard: HashMap::new(),
            last_heartbeat: HashMap::new(),
            held_since: None,
            next_read_ctx: 1,
            conf_changes: Vec::new(),
            last_conf_change: 0,
            applied,
            durable_applied: 0,
            retain_entries,
            compact_step: compact_step.max(1),
            conf_history,
            snapshot_building: false,
            stored_snapshot,
            failed: None,
        }
    }

    /// Runs until stopped or until the log fails.
    pub(crate) fn run(mut self) {
        loop {
            let timeout = self.next_tick.saturating_duration_since(Instant::now());
            let mut stop = match self.rx.recv_timeout(timeout) {
                Ok(msg) => self.on_msg(msg),
                Err(RecvTimeoutError::Timeout) => false,
                Err(RecvTimeoutError::Disconnected) => true,
            };
            let mut drained = 1;
            while !stop && drained < MAX_DRAIN && self.proposal_bytes < MAX_BATCH_BYTES {
                match self.rx.try_recv() {
                    Ok(msg) => stop = self.on_msg(msg),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => stop = true,
                }
                drained += 1;
            }
            if let Err(e) = self.step_round() {
                tracing::error!(error = %e, "raft loop failed; stopping");
                self.shutdown(Err(e));
                return;
            }
            if stop {
                break;
            }
        }
        self.shutdown(Ok(()));
    }

    /// Everything after draining: proposals, tick, reads, `Ready`, compaction.
    pub(crate) fn step_round(&mut self) -> Result<(), RaftError> {
        if let Some(e) = self.failed.take() {
            return Err(RaftError::StateMachine(e));
        }
        self.flush_proposals();
        let now = Instant::now();
        if now >= self.next_tick {
            match self.tick_interval {
                Some(interval) => {
                    self.tick();
                    self.next_tick += interval;
                    if self.next_tick <= now {
                        self.next_tick = now + interval;
                    }
                }
                None => self.next_tick = now + MANUAL_CLOCK_WAIT,
            }
        }
        self.issue_reads();
        self.handle_ready()?;
        if self.pending_reads.len() < READS_IN_FLIGHT
            && (!self.remote_reads.is_empty() || !self.shared.read_waiters.lock().is_empty())
        {
            // This Ready may have committed the leader's first entry of its term or
            // answered a round in flight, either of which held the reads back; issue them
            // now rather than on the next wake-up.
            self.issue_reads();
            self.handle_ready()?;
        }
        self.maybe_build_snapshot()?;
        self.maybe_compact()
    }

    fn tick(&mut self) {
        self.raw.tick();
        self.ticks += 1;
    }

    /// Handles one request; returns true on `Stop`.
    fn on_msg(&mut self, msg: Msg) -> bool {
        match msg {
            Msg::Propose(data) => {
                self.proposal_bytes += data.len();
                self.proposals.push(Entry {
                    data: data.into(),
                    ..Default::default()
                });
            }
            Msg::ProposeConfChange(cc) => self.conf_change_proposals.push(cc),
            Msg::Step(m) => self.step(m),
            Msg::StepMany(ms) => ms.into_iter().for_each(|m| self.step(m)),
            // The waiters are taken from the shared list when a round can start.
            Msg::ReadIndex => {}
            Msg::Applied(index) => {
                if index > self.applied {
                    self.applied = index;
                    self.raw.advance_apply_to(index);
                    self.raw.mut_store().on_applied(index);
                    self.campaign_if_sole_voter();
                    let keep = self.conf_history.partition_point(|&(i, _)| i <= index);
                    if keep > 1 {
                        self.conf_history.drain(..keep - 1);
                    }
                }
            }
            Msg::SnapshotBuilt { index, data } => {
                self.snapshot_building = false;
                self.on_snapshot_built(index, data);
            }
            Msg::SnapshotFailed => self.snapshot_building = false,
            Msg::ApplyFailed(e) => {
                self.failed = Some(e);
                return true;
            }
            Msg::DurableApplied(index) => self.durable_applied = self.durable_applied.max(index),
            Msg::TransferLeader(to) => self.raw.transfer_leader(to),
            Msg::Tick => self.tick(),
            Msg::ReportUnreachable(id) => self.raw.report_unreachable(id),
            Msg::ReportSnapshot(id, delivered) => {
                let status = if delivered {
                    raft::SnapshotStatus::Finish
                } else {
                    raft::SnapshotStatus::Failure
                };
                self.raw.report_snapshot(id, status);
            }
            Msg::Stop => return true,
        }
        false
    }

    /// Why a message from a peer must not reach raft-rs, if it must not: raft-rs panics or
    /// asserts on these (a panic would take the member down), and no correct peer sends
    /// them. Each rule names the raft-rs 0.7 site it keeps peers away from; ARCHITECTURE.md
    /// ("Between members") lists the sites no peer input reaches for other reasons.
    fn refusal(&self, m: &Message) -> Option<&'static str> {
        use MessageType::*;
        let raft = &self.raw.raft;
        let log = &raft.raft_log;
        if m.to != raft.id {
            return Some("addressed to another member");
        }
        if m.from == raft::INVALID_ID || m.from == raft.id {
            return Some("from no member, or from this one");
        }
        let kind = m.get_msg_type();
        // raft-rs forwards proposals and reads to the leader through `send`, which panics
        // on one with a term ("term should not be set"); every other message carries its
        // sender's term, and one without is taken for a local message: a vote granted to
        // it panics in `send` ("term should be set"), a read answer commits wherever it
        // says (`commit_to` past the log's end), a candidate asserts on it.
        match (kind, m.term) {
            (MsgPropose | MsgReadIndex, 0) => {}
            (MsgPropose | MsgReadIndex, _) => return Some("a forwarded request with a term"),
            (_, 0) => return Some("a message without a term"),
            _ => {}
        }
        match kind {
            MsgHup | MsgBeat | MsgUnreachable | MsgSnapStatus | MsgCheckQuorum => {
                Some("a message only a member sends itself")
            }
            // `step_leader`: "stepped empty MsgProp".
            MsgPropose if m.entries.is_empty() => Some("a proposal without entries"),
            // `handle_ready_read_index` indexes the first entry.
            MsgReadIndex | MsgReadIndexResp if m.entries.len() != 1 => {
                Some("a read without its one context")
            }
            // `handle_heartbeat`: `commit_to` past the log's end.
            MsgHeartbeat if m.commit > log.last_index() => Some("a commit past the log's end"),
            MsgAppend => append_refusal(m, log),
            // A follower acknowledges only what this leader sent it, which is in its log;
            // an acknowledgement past its end would make this leader send appends that no
            // follower could take (and a wrong `matched` count towards commits).
            MsgAppendResponse if !m.reject && m.index > log.last_index() => {
                Some("an acknowledgement past the log's end")
            }
            // cairn never asks for a snapshot: a request would have the leader build one
            // snapshot after another, none of them ever new enough.
            MsgAppendResponse if m.request_snapshot != 0 => Some("a snapshot request"),
            MsgSnapshot => snapshot_refusal(m),
            _ => None,
        }
    }

    fn step(&mut self, m: Message) {
        if let Some(why) = self.refusal(&m) {
            self.shared
                .stats
                .messages_refused
                .fetch_add(1, Ordering::Relaxed);
            tracing::debug!(
                from = m.from,
                to = m.to,
                msg_type = ?m.get_msg_type(),
                reason = why,
                "dropped a raft message no correct peer sends"
            );
            return;
        }
        if matches!(
            m.get_msg_type(),
            MessageType::MsgHeartbeatResponse | MessageType::MsgAppendResponse
        ) {
            self.last_heard.insert(m.from, Instant::now());
        }
        let raft = &self.raw.raft;
        if m.get_msg_type() == MessageType::MsgReadIndex
            && raft.state == StateRole::Leader
            && m.from != 0
            && m.from != raft.id
            && m.entries.len() == 1
        {
            // A follower's read joins this leader's next round instead of starting one of
            // its own in raft-rs, so one heartbeat round serves the readers of every member.
            self.remote_reads.push(m);
            return;
        }
        if let Err(e) = self.raw.step(m) {
            tracing::debug!(error = %e, "dropped raft message");
        }
    }

    /// A sole voter needs nobody's vote, so it campaigns as soon as it may instead of
    /// waiting out an election timeout. raft-rs refuses while committed conf changes are
    /// unapplied (a restart with `applied` before one), so this is retried as the apply
    /// thread catches up past the last conf change handed to it.
    pub(crate) fn campaign_if_sole_voter(&mut self) {
        let raft = &self.raw.raft;
        if raft.state == StateRole::Leader || self.last_conf_change > self.applied {
            return;
        }
        let cs = self.raw.store().conf_state();
        if cs.voters == [raft.id] && cs.voters_outgoing.is_empty() {
            if let Err(e) = self.raw.campaign() {
                tracing::warn!(error = %e, "campaign failed");
            }
        }
    }

    fn flush_proposals(&mut self) {
        if !self.proposals.is_empty() && self.hold_proposals() {
            return self.flush_conf_changes();
        }
        self.held_since = None;
        if !self.proposals.is_empty() {
            let entries = std::mem::take(&mut self.proposals);
            self.proposal_bytes = 0;
            let count = entries.len() as u64;
            let mut m = Message::default();
            m.set_msg_type(MessageType::MsgPropose);
            m.from = self.raw.raft.id;
            m.set_entries(entries.into());
            if let Err(e) = self.raw.raft.step(m) {
                tracing::debug!(error = %e, count, "proposals dropped");
                self.shared
                    .stats
                    .proposals_dropped
                    .fetch_add(count, Ordering::Relaxed);
            }
        }
        self.flush_conf_changes();
    }

    /// Whether to keep the drained proposals for a leader instead of stepping them now.
    ///
    /// A member that knows no leader for a moment (a pre-vote when it wakes from a pause, an
    /// election) would have raft-rs drop them, and their writers would wait out the request
    /// timeout for nothing. They are held instead, for two election timeouts at most and
    /// below [`MAX_BATCH_BYTES`], and go out as soon as a leader is known. Nothing held was
    /// ever appended anywhere, so nothing can be applied twice.
    fn hold_proposals(&mut self) -> bool {
        let raft = &self.raw.raft;
        if raft.state == StateRole::Leader || raft.leader_id != raft::INVALID_ID {
            return false;
        }
        let since = *self.held_since.get_or_insert(self.ticks);
        self.ticks.saturating_sub(since) < 2 * self.election_tick
            && self.proposal_bytes < MAX_BATCH_BYTES
    }

    fn flush_conf_changes(&mut self) {
        for cc in std::mem::take(&mut self.conf_change_proposals) {
            if let Err(e) = self.raw.propose_conf_change(Vec::new(), cc) {
                tracing::warn!(error = %e, "conf change proposal dropped");
                self.shared
                    .stats
                    .proposals_dropped
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Hands queued reads to raft-rs once it can answer them, as one round when fewer
    /// than [`READS_IN_FLIGHT`] are out, and re-issues rounds that went unanswered for an
    /// election timeout (lost messages, leader changes).
    fn issue_reads(&mut self) {
        let raft = &self.raw.raft;
        let ready = match raft.state {
            StateRole::Leader => raft.commit_to_current_term(),
            _ => raft.leader_id != 0,
        };
        if !ready {
            return;
        }
        if raft.state != StateRole::Leader {
            // Followers' reads that came while this member led; theirs to retry.
            self.remote_reads.clear();
        }
        let (waiters, remote) = if self.pending_reads.len() < READS_IN_FLIGHT {
            (
                std::mem::take(&mut *self.shared.read_waiters.lock()),
                std::mem::take(&mut self.remote_reads),
            )
        } else {
            (Vec::new(), Vec::new())
        };
        if !waiters.is_empty() || !remote.is_empty() {
            let ctx = self.next_read_ctx;
            self.next_read_ctx += 1;
            self.pending_reads.insert(
                ctx,
                PendingRead {
                    waiters,
                    remote,
                    issued_at: self.ticks,
                },
            );
            let sent = self.raw.raft.msgs.len();
            self.raw.read_index(self.read_ctx(ctx));
            self.trim_read_heartbeats(sent);
        }
        let stale: Vec<u64> = self
            .pending_reads
            .iter()
            .filter(|(_, p)| self.ticks.saturating_sub(p.issued_at) >= self.election_tick)
            .map(|(&ctx, _)| ctx)
            .collect();
        for ctx in stale {
            if let Some(p) = self.pending_reads.get_mut(&ctx) {
                p.issued_at = self.ticks;
            }
            self.raw.read_index(self.read_ctx(ctx));
        }
    }

    /// Keeps a new read round's heartbeats (those queued from `from` on) only for the
    /// fewest peers that make a quorum with this leader, those that answered last.
    ///
    /// A round needs acknowledgements from a quorum only, so in a 3-member cluster it asks
    /// one follower instead of two: half the messages per round. Dropping a message is
    /// always safe in Raft. Nor does a skipped peer lose touch: the heartbeats of ticks
    /// still go to every peer, and they carry the latest pending read's context, so a
    /// round whose chosen peer does not answer is acknowledged by the others within one
    /// heartbeat interval (and re-issued to everyone after an election timeout).
    fn trim_read_heartbeats(&mut self, from: usize) {
        let raft = &mut self.raw.raft;
        if raft.state != StateRole::Leader || raft.msgs.len() <= from {
            return;
        }
        let me = raft.id;
        let mut peers: Vec<u64> = raft
            .prs()
            .iter()
            .map(|(&id, _)| id)
            .filter(|&id| id != me)
            .collect();
        // Most recently heard first; never heard last.
        peers.sort_by_key(|id| std::cmp::Reverse(self.last_heard.get(id).copied()));
        // raft-rs's own hasher, inferred from `has_quorum`.
        let mut asked: HashSet<u64, _> = HashSet::default();
        asked.insert(me);
        for id in peers {
            if raft.prs().has_quorum(&asked) {
                break;
            }
            asked.insert(id);
        }
        if !raft.prs().has_quorum(&asked) {
            return;
        }
        let mut i = from;
        while i < raft.msgs.len() {
            let m = &raft.msgs[i];
            if m.get_msg_type() == MessageType::MsgHeartbeat && !asked.contains(&m.to) {
                raft.msgs.remove(i);
            } else {
                i += 1;
            }
        }
    }

    /// Counts the heartbeats among `msgs` that leave late (see `last_heartbeat`).
    fn observe_heartbeats(&mut self, msgs: &[Message]) {
        let Some(tick) = self.tick_interval else {
            return;
        };
        let late_after = tick * (2 * self.raw.raft.heartbeat_timeout() as u32);
        let now = Instant::now();
        for m in msgs {
            if m.get_msg_type() != MessageType::MsgHeartbeat {
                continue;
            }
            if let Some(prev) = self.last_heartbeat.insert(m.to, now) {
                if now.duration_since(prev) > late_after {
                    self.shared
                        .stats
                        .heartbeat_failures
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// The context of read request `ctx`: this member's id, then `ctx`, so that requests
    /// of different members never share one (the leader ignores a duplicate context).
    fn read_ctx(&self, ctx: u64) -> Vec<u8> {
        let mut v = Vec::with_capacity(16);
        v.extend_from_slice(&self.raw.raft.id.to_be_bytes());
        v.extend_from_slice(&ctx.to_be_bytes());
        v
    }

    fn resolve_reads(&mut self, states: Vec<raft::ReadState>) {
        for rs in states {
            let ctx = rs.request_ctx.as_slice();
            if ctx.len() != 16 || ctx[..8] != self.raw.raft.id.to_be_bytes() {
                continue;
            }
            let Ok(ctx) = <[u8; 8]>::try_from(&ctx[8..]) else {
                continue;
            };
            if let Some(p) = self.pending_reads.remove(&u64::from_be_bytes(ctx)) {
                for w in p.waiters {
                    let _ = w.send(Ok(rs.index));
                }
                self.answer_remote_reads(p.remote, rs.index);
            }
        }
    }

    /// Answers followers' reads that joined a round this leader completed with `index`,
    /// as raft-rs answers them itself: the index (a commit index of this term, taken after
    /// the request arrived) and the request's context, in a `MsgReadIndexResp` of this term.
    fn answer_remote_reads(&mut self, requests: Vec<Message>, index: u64) {
        if requests.is_empty() {
            return;
        }
        let raft = &self.raw.raft;
        if raft.state != StateRole::Leader {
            return;
        }
        let answers = requests
            .into_iter()
            .map(|mut req| {
                let mut m = Message::default();
                m.set_msg_type(MessageType::MsgReadIndexResp);
                m.from = raft.id;
                m.to = req.from;
                m.term = raft.term;
                m.index = index;
                m.set_entries(req.take_entries());
                m
            })
            .collect();
        self.transport.send(crate::message::wrap(answers));
    }

    /// Hands committed entries to the apply thread and remembers conf changes among them.
    fn dispatch(&mut self, entries: Vec<Entry>) -> Result<(), RaftError> {
        if entries.is_empty() {
            return Ok(());
        }
        self.conf_changes.extend(
            entries
                .iter()
                .filter(|e| {
                    matches!(
                        e.get_entry_type(),
                        EntryType::EntryConfChange | EntryType::EntryConfChangeV2
                    )
                })
                .cloned(),
        );
        if let Some(e) = self.conf_changes.last() {
            self.last_conf_change = e.index;
        }
        self.to_apply(ApplyTask::Entries(entries))
    }

    fn to_apply(&self, task: ApplyTask) -> Result<(), RaftError> {
        let tx = self.apply_tx.as_ref().ok_or(RaftError::Stopped)?;
        tx.send(task).map_err(|_| RaftError::Stopped)
    }

    /// Asks the apply thread for a snapshot when raft-rs wanted one and none is underway.
    fn maybe_build_snapshot(&mut self) -> Result<(), RaftError> {
        if self.raw.store().take_snapshot_wanted() && !self.snapshot_building {
            self.snapshot_building = true;
            self.to_apply(ApplyTask::Build)?;
        }
        Ok(())
    }

    /// Completes the state machine's bytes into a raft snapshot and keeps it to serve.
    fn on_snapshot_built(&mut self, index: u64, data: Vec<u8>) {
        let store = self.raw.store();
        if index == 0 || index < store.truncated().0 {
            // Nothing applied yet, or already compacted past: raft-rs will ask again.
            return;
        }
        let Ok(term) = self.raw.raft.raft_log.term(index) else {
            return;
        };
        let pos = self.conf_history.partition_point(|&(i, _)| i <= index);
        let Some((_, cs)) = self.conf_history.get(pos.saturating_sub(1)) else {
            return;
        };
        let mut snap = Snapshot {
            data: data.into(),
            ..Default::default()
        };
        let meta = snap.mut_metadata();
        meta.index = index;
        meta.term = term;
        meta.set_conf_state(cs.clone());
        self.raw.mut_store().set_snapshot(snap);
    }

    /// Installs a snapshot from the leader: the log starts after it, and the apply thread
    /// restores the state machine from it before any later entry.
    fn install_snapshot(&mut self, snap: Snapshot) -> Result<(), RaftError> {
        let (index, term) = (snap.get_metadata().index, snap.get_metadata().term);
        let hs = self.raw.raft.hard_state();
        self.raw.mut_store().apply_snapshot(&snap, &hs)?;
        tracing::info!(
            index,
            term,
            bytes = snap.data.len(),
            "installed raft snapshot in the log"
        );
        let cs = snap.get_metadata().get_conf_state();
        self.conf_history = vec![(index, cs.clone())];
        *self.shared.conf_state.lock() = cs.clone();
        self.stored_snapshot = Some(index);
        self.to_apply(ApplyTask::Restore(snap))
    }

    /// Applies committed conf changes to raft-rs and stores the resulting `ConfState`.
    fn apply_conf_changes(&mut self) -> Result<(), RaftError> {
        for e in std::mem::take(&mut self.conf_changes) {
            // One that does not decode is skipped, as the apply thread skips it: the same
            // bytes are in every member's log (see `apply::decode`).
            let cs = if e.get_entry_type() == EntryType::EntryConfChange {
                match ConfChange::parse_from_bytes(&e.data) {
                    Ok(cc) => self.raw.apply_conf_change(&cc),
                    Err(_) => continue,
                }
            } else {
                match ConfChangeV2::parse_from_bytes(&e.data) {
                    Ok(cc) => self.raw.apply_conf_change(&cc),
                    Err(_) => continue,
                }
            };
            match cs {
                Ok(cs) => {
                    tracing::info!(index = e.index, conf_state = ?cs, "applied conf change");
                    self.conf_history.push((e.index, cs.clone()));
                    *self.shared.conf_state.lock() = cs.clone();
                    self.raw.mut_store().set_conf_state(cs)?;
                }
                Err(err) => tracing::warn!(index = e.index, error = %err, "rejected conf change"),
            }
        }
        Ok(())
    }

    /// Works through every pending `Ready`.
    pub(crate) fn handle_ready(&mut self) -> Result<(), RaftError> {
        // A LightReady can leave more work (e.g. a commit unblocking a conf change); a
        // few rounds settle it, and the next loop iteration picks up anything left.
        for _ in 0..4 {
            if !self.raw.has_ready() {
                break;
            }
            let mut rd = self.raw.ready();
            if let Some(ss) = rd.ss() {
                // A new leader (not none, and not the one last published) while rounds
                // are out: etcd fails each such round and counts it.
                let published = self.shared.leader_id.load(Ordering::Acquire);
                if ss.leader_id != 0 && ss.leader_id != published && !self.pending_reads.is_empty()
                {
                    self.shared
                        .stats
                        .read_index_failures
                        .fetch_add(self.pending_reads.len() as u64, Ordering::Relaxed);
                }
                // Leadership changed: reads in flight may have been dropped. Followers'
                // reads are theirs to retry (with the new leader).
                for p in self.pending_reads.values_mut() {
                    p.issued_at = 0;
                    p.remote.clear();
                }
                self.remote_reads.clear();
                self.last_heartbeat.clear();
            }
            let msgs = rd.take_messages();
            if !msgs.is_empty() {
                self.observe_heartbeats(&msgs);
                self.transport.send(crate::message::wrap(msgs));
            }
            if !rd.snapshot().is_empty() {
                self.install_snapshot(rd.snapshot().clone())?;
            }
            self.resolve_reads(rd.take_read_states());
            self.dispatch(rd.take_committed_entries())?;

            let entries = rd.take_entries();
            let hs = self.raw.raft.hard_state();
            let store = self.raw.mut_store();
            let hs = (hs != *store.hard_state()).then_some(hs);
            let sync = rd.must_sync() || !entries.is_empty();
            store.persist(&entries, hs.as_ref(), sync)?;

            let persisted = rd.take_persisted_messages();
            if !persisted.is_empty() {
                self.transport.send(crate::message::wrap(persisted));
            }
            let mut light = self.raw.advance_append(rd);
            let msgs = light.take_messages();
            if !msgs.is_empty() {
                self.observe_heartbeats(&msgs);
                self.transport.send(crate::message::wrap(msgs));
            }
            self.dispatch(light.take_committed_entries())?;
            self.apply_conf_changes()?;
        }
        self.publish();
        Ok(())
    }

    /// Copies the state handles read into the shared atomics.
    pub(crate) fn publish(&self) {
        let raft = &self.raw.raft;
        let s = &self.shared;
        let is_leader = raft.state == StateRole::Leader;
        s.set_leadership(crate::Leadership {
            leader_id: raft.leader_id,
            term: raft.term,
            is_leader,
        });
        s.commit_index
            .store(raft.raft_log.committed, Ordering::Release);
        s.last_index
            .store(raft.raft_log.last_index(), Ordering::Release);
        {
            let mut matched = s.matched.lock();
            matched.clear();
            if is_leader {
                matched.extend(raft.prs().iter().map(|(id, pr)| (*id, pr.matched)));
            }
        }
        let store = self.raw.store();
        let c = store.counters();
        s.stats.log_writes.store(c.writes, Ordering::Relaxed);
        s.stats.log_syncs.store(c.syncs, Ordering::Relaxed);
        s.stats.entries_appended.store(c.entries, Ordering::Relaxed);
        s.stats.log_bytes.store(c.bytes, Ordering::Relaxed);
        s.stats
            .first_index
            .store(store.first_index(), Ordering::Relaxed);
    }

    /// Compacts the log up to `retain_entries` before the durable applied index, and
    /// drops a received snapshot the applier has restored.
    fn maybe_compact(&mut self) -> Result<(), RaftError> {
        if let Some(index) = self.stored_snapshot {
            if self.applied >= index {
                self.raw.mut_store().release_snapshot()?;
                self.stored_snapshot = None;
            }
        }
        let safe = self.durable_applied.min(self.applied);
        let target = safe.saturating_sub(self.retain_entries);
        let first = self.raw.store().first_index();
        if target < first + self.compact_step {
            return Ok(());
        }
        self.raw.mut_store().compact(target + 1)?;
        tracing::info!(compact_index = target, "compacted Raft logs");
        if let Some(tx) = &self.purge_tx {
            let _ = tx.try_send(());
        }
        self.publish();
        Ok(())
    }

    /// Syncs the log and lets go of everything waiting; `outcome` is why it stops.
    fn shutdown(mut self, outcome: Result<(), RaftError>) {
        self.shared.stopped.store(true, Ordering::Release);
        let mut hs = self.raw.raft.hard_state();
        let store = self.raw.mut_store();
        // Messages stepped since the last `Ready` may have raised the commit index over
        // entries that were never written; raft-rs refuses such a hard state at restart.
        hs.commit = hs
            .commit
            .min(store.last_index())
            .max(store.hard_state().commit);
        let hs = (hs != *store.hard_state()).then_some(hs);
        let flushed = match hs {
            Some(hs) => store.persist(&[], Some(&hs), true),
            None => store.sync(),
        };
        if let Err(e) = flushed {
            tracing::error!(error = %e, "raft log sync at stop failed");
        }
        // Readers still waiting see their sender dropped and get `Stopped`.
        self.pending_reads.clear();
        // After `stopped` is set: a reader that queues later sees it and gives up.
        self.shared.read_waiters.lock().clear();
        self.apply_tx = None;
        self.purge_tx = None;
        self.publish();
        self.shared.set_stopped(outcome);
    }
}

/// Why an append from a peer must not reach raft-rs, if it must not (see `Node::refusal`).
///
/// raft-rs's `maybe_append` takes the entries for consecutive indexes after `m.index`
/// (else its slice arithmetic underflows), panics on one that differs from a committed
/// entry, and commits up to the last index the message names; and `term` answers 0 for an
/// index past the log's end, so an append there whose previous term is 0, or an entry of
/// term 0, would be taken as matching and commit past the log's end.
fn append_refusal(m: &Message, log: &raft::RaftLog<EngineStorage>) -> Option<&'static str> {
    if m.log_term == 0 && m.index > log.last_index() {
        return Some("an append past the log's end without its previous term");
    }
    let consecutive = m
        .entries
        .iter()
        .enumerate()
        .all(|(i, e)| m.index.checked_add(i as u64 + 1) == Some(e.index));
    if !consecutive {
        return Some("entries at other indexes than the ones after the append's");
    }
    if m.entries.iter().any(|e| e.term == 0 || e.term > m.term) {
        return Some("entries of no term, or of a later term than the append's");
    }
    // A leader's entries at committed indexes are the committed ones (the log matching
    // property); different ones would make raft-rs rewrite committed state ("entry
    // conflict with committed entry").
    if m.entries
        .iter()
        .take_while(|e| e.index <= log.committed)
        .any(|e| log.term(e.index).ok() != Some(e.term))
    {
        return Some("entries that differ from committed ones");
    }
    None
}

/// Why a snapshot from a peer must not reach raft-rs, if it must not (see `Node::refusal`).
///
/// raft-rs fast-forwards its commit index to a snapshot whose index and term match its log
/// (with term 0, any index past the log's end "matches": `commit_to` panics), and rebuilds
/// its configuration from the snapshot's, panicking if that fails ("unable to restore
/// config": no voters, a member listed twice) or differs ("invalid restore"). cairn never
/// enters a joint configuration, so a joint one is not a cairn leader's either.
fn snapshot_refusal(m: &Message) -> Option<&'static str> {
    let meta = m.get_snapshot().get_metadata();
    if meta.index == 0 || meta.term == 0 || meta.term > m.term {
        return Some("a snapshot without its index and term");
    }
    let cs = meta.get_conf_state();
    if cs.voters.is_empty() || !cs.voters_outgoing.is_empty() || !cs.learners_next.is_empty() {
        return Some("a snapshot whose configuration has no voters, or is joint");
    }
    let mut ids: Vec<u64> = cs.voters.iter().chain(&cs.learners).copied().collect();
    ids.sort_unstable();
    let len = ids.len();
    ids.dedup();
    if ids.len() != len || ids.first() == Some(&raft::INVALID_ID) {
        return Some("a snapshot whose configuration lists a member twice, or member 0");
    }
    None
}
