//! cairn-raft: drives raft-rs's `RawNode` over a durable raft-engine log.
//!
//! [`seed_log`] writes a log carried over from another Raft implementation (etcd's WAL)
//! before the first start. [`start`] opens (or bootstraps) the log and spawns the driver's threads; the returned
//! [`RaftHandle`] proposes entries and membership changes, takes ReadIndex barriers,
//! steps peer messages, reports status and announces the applied index, the leader and
//! the driver's stop on watch channels. Committed entries reach the state machine through
//! the [`Applier`] on a dedicated apply thread, in log order, only after they are durable
//! in the log, decoded as [`Committed`] entries.
//!
//! raft-rs stays inside this crate: callers see [`Committed`], [`Change`],
//! [`PeerMessage`] and [`RaftError`], never raft-rs's or protobuf's types (the `testing`
//! feature re-exports raft-rs's `eraftpb` for tests that build messages by hand).
//!
//! Threads (plain `std::thread`s; nothing here blocks a tokio worker):
//!
//! - `cairn-raft`: owns the `RawNode`, batches every queued request into one `Ready`, so
//!   many proposals share one log write and one fdatasync (group commit).
//! - `cairn-apply`: calls [`Applier::apply`], merging queued committed batches. An error
//!   from the state machine stops the driver; [`RaftHandle::stopped`] says why, and the
//!   program decides how to exit.
//! - `cairn-raft-purge`: deletes log files holding only compacted entries.
//!
//! What it must not depend on: the server, MVCC, gRPC. Peers are reached only through the
//! [`Transport`] trait ([`NoPeers`] for a single member).
//!
//! # Several members
//!
//! `RaftConfig::voters` with several ids bootstraps a log with that membership; members
//! then elect a leader after a randomized election timeout (pre-vote and check-quorum
//! on). Only a sole voter campaigns at once. Proposals and ReadIndex requests made on a
//! follower are forwarded to the leader by raft-rs; both fail at once with
//! [`RaftError::NoLeader`] while no leader is known. Messages leave through
//! [`Transport::send`], a batch per `Ready` stage, and come back through
//! [`RaftHandle::step`] / [`RaftHandle::step_many`], which only queue them. Members join,
//! are promoted and leave through [`RaftHandle::propose_membership`].
//!
//! # Snapshots
//!
//! A member whose next entries were compacted away (or a new one) gets a Raft snapshot:
//! the leader's apply thread asks [`Applier::snapshot`] for the state machine's bytes at
//! its applied index (off the Raft thread), the driver adds that index's term and
//! `ConfState`, keeps it in memory and sends it with raft-rs's next attempt. The receiver
//! writes it into its log as the new start (in one synced write that also keeps the
//! bytes until restored) and its apply thread calls [`Applier::restore`] before any later
//! entry. [`RaftConfig::log_retain_entries`] sets how far behind a member may fall before
//! it needs one.
//!
//! # Layout
//!
//! - `config.rs`: [`RaftConfig`] and its validation.
//! - `error.rs`: [`RaftError`].
//! - `handle.rs`: [`RaftHandle`], [`RaftStatus`], [`Leadership`], [`RaftStats`].
//! - `shared.rs`: the state the Raft and apply threads publish for handles, and its watch
//!   channels; `msg.rs`: the requests the Raft thread takes.
//! - `node.rs`: the Raft thread's loop and `Ready` handling.
//! - `apply.rs`: the [`Applier`] trait, [`Committed`] entries and membership changes as
//!   the state machine sees them, and the apply thread.
//! - `message.rs`: [`PeerMessage`], a Raft message and its wire form.
//! - `storage.rs`: `EngineStorage`, raft-rs `Storage` over raft-engine; on-disk keys.
//! - `entry_cache.rs`, `term_runs.rs`: the in-memory tail of the log and term lookup.
//! - `transport.rs`: [`Transport`] and [`NoPeers`].
//! - `logger.rs`: raft-rs's slog records into `tracing`.
//! - `testing.rs` (feature `testing`): `testing::MemNetwork`, an in-memory transport
//!   with drop, delay, partition and isolate rules for in-process clusters.

mod apply;
mod config;
mod entry_cache;
mod error;
mod handle;
mod logger;
mod message;
mod msg;
mod node;
mod shared;
mod storage;
mod term_runs;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
mod transport;

use std::sync::Arc;

use raft::{eraftpb, RawNode};

pub use apply::{
    Applier, ApplyError, Change, Committed, MembershipChange, Payload, SnapshotsUnsupported,
    UndecodableEntry,
};
pub use config::{RaftConfig, SyncObserver};
pub use error::RaftError;
pub use handle::{Leadership, RaftHandle, RaftStats, RaftStatus};
pub use message::{PeerMessage, WireError};
pub use node::{COMPACT_STEP, LOG_RETAIN_ENTRIES};
#[cfg(any(test, feature = "testing"))]
pub use storage::EngineStorage;
#[cfg(not(any(test, feature = "testing")))]
use storage::EngineStorage;
pub use transport::{NoPeers, Transport};

use msg::Msg;
use node::Node;
use shared::Shared;

/// Upper bound on one append message to a peer.
const MAX_SIZE_PER_MSG: u64 = 1 << 20;
/// Append messages in flight to one peer.
const MAX_INFLIGHT_MSGS: usize = 256;

/// Runs `f`, turning a panic into its message.
fn catch_panic(f: impl FnOnce()) -> Result<(), String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|payload| {
        payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".into())
    })
}

/// A Raft log carried over from another implementation of Raft (etcd's WAL), to be
/// written into a fresh log directory with [`seed_log`] before the first [`start`].
///
/// The state machine holds everything up to `applied` (index, term); the log resumes
/// right after it with `entries`, under the hard state and membership given, so members
/// that carry over their logs keep electing and committing by the same terms and indexes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogSeed {
    /// The last entry the state machine holds: `(index, term)`.
    pub applied: (u64, u64),
    /// The hard state: current term, the vote in it, the commit index.
    pub term: u64,
    pub vote: u64,
    pub commit: u64,
    /// The membership as of `applied`.
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
    /// The entries after `applied`, in index order without a gap, committed or not.
    pub entries: Vec<SeedEntry>,
}

/// One entry of a [`LogSeed`].
#[derive(Debug, Clone, PartialEq)]
pub struct SeedEntry {
    pub index: u64,
    pub term: u64,
    pub payload: SeedPayload,
}

/// What a [`SeedEntry`] carries; the state machine later sees it as the matching
/// [`Payload`].
#[derive(Debug, Clone, PartialEq)]
pub enum SeedPayload {
    Empty,
    Data(Vec<u8>),
    /// A membership change of one member, with the context the state machine reads.
    Membership {
        change: Change,
        id: u64,
        context: Vec<u8>,
    },
}

/// Writes `seed` as a fresh log in `dir` (created if missing; it must hold no log yet), in
/// one synced write. Refuses a seed whose entries do not follow `applied` without a gap,
/// go back in term, or that commits past its last entry, before writing anything.
pub fn seed_log(dir: &std::path::Path, seed: &LogSeed) -> Result<(), RaftError> {
    let bad = |why: String| Err(RaftError::InvalidConfig(format!("log seed: {why}")));
    let (mut index, mut term) = seed.applied;
    let mut entries = Vec::with_capacity(seed.entries.len());
    for e in &seed.entries {
        if e.index != index + 1 || e.term < term {
            return bad(format!(
                "entry {} (term {}) does not follow entry {index} (term {term})",
                e.index, e.term
            ));
        }
        (index, term) = (e.index, e.term);
        let mut entry = eraftpb::Entry {
            index: e.index,
            term: e.term,
            ..Default::default()
        };
        match &e.payload {
            SeedPayload::Empty => {}
            SeedPayload::Data(d) => entry.data = d.clone().into(),
            SeedPayload::Membership {
                change,
                id,
                context,
            } => {
                let mut cc = eraftpb::ConfChange {
                    node_id: *id,
                    context: context.clone().into(),
                    ..Default::default()
                };
                cc.set_change_type(match change {
                    Change::AddVoter | Change::Promote => eraftpb::ConfChangeType::AddNode,
                    Change::AddLearner => eraftpb::ConfChangeType::AddLearnerNode,
                    Change::Remove => eraftpb::ConfChangeType::RemoveNode,
                });
                entry.set_entry_type(eraftpb::EntryType::EntryConfChange);
                entry.data = protobuf::Message::write_to_bytes(&cc)
                    .map_err(|e| RaftError::Storage(format!("encode conf change: {e}")))?
                    .into();
            }
        }
        entries.push(entry);
    }
    if seed.commit > index {
        return bad(format!(
            "commit {} is past the last entry {index}",
            seed.commit
        ));
    }
    if seed.term < term {
        return bad(format!(
            "term {} is below the last entry's {term}",
            seed.term
        ));
    }
    if seed.voters.is_empty() {
        return bad("no voters".into());
    }
    let hard_state = eraftpb::HardState {
        term: seed.term,
        vote: seed.vote,
        commit: seed.commit,
        ..Default::default()
    };
    let conf_state = eraftpb::ConfState {
        voters: seed.voters.clone(),
        learners: seed.learners.clone(),
        ..Default::default()
    };
    let mut storage = EngineStorage::open(dir)?;
    storage.seed(seed.applied, &hard_state, &conf_state, &entries)
}

/// Opens the log in `cfg.dir` (bootstrapping it with `cfg.voters` if fresh; with no
/// voters the member waits to be sent the log or a snapshot by a leader that added it),
/// starts the
/// driver's threads and returns its handle. A sole voter campaigns at once and is leader
/// when this returns, unless re-delivered entries include a conf change: raft-rs lets it
/// campaign only once the applier has passed that entry.
///
/// On restart, committed entries after `cfg.applied` are delivered to `applier` again.
/// If the log's stored commit index lags `cfg.applied` (a crash between the state machine's
/// commit and the next log write), it is raised to `cfg.applied`. A fresh log with
/// `cfg.applied > 0` starts right after `cfg.applied` (a restored state machine).
pub fn start(
    cfg: RaftConfig,
    applier: impl Applier,
    transport: impl Transport,
) -> Result<RaftHandle, RaftError> {
    cfg.validate()?;
    let mut storage = EngineStorage::open(&cfg.dir)?;
    storage.set_sync_observer(cfg.sync_observer.clone());
    storage.set_unsafe_no_fsync(cfg.unsafe_no_fsync);
    if !storage.is_bootstrapped() {
        storage.bootstrap(&cfg.voters, cfg.applied)?;
        tracing::info!(id = cfg.id, voters = ?cfg.voters, applied = cfg.applied, "bootstrapped raft log");
    } else if cfg.force_new_cluster {
        // Disaster recovery: this member alone is the cluster from now on.
        let before = storage.conf_state().clone();
        let alone = eraftpb::ConfState {
            voters: vec![cfg.id],
            ..Default::default()
        };
        storage.set_conf_state(alone)?;
        tracing::warn!(id = cfg.id, voters_before = ?before.voters, "forcing a new one-member cluster");
    }
    // A snapshot installed just before a crash may not have reached the state machine:
    // restore it first.
    let mut restore = None;
    let mut applied = cfg.applied;
    if cfg.applied + 1 < storage.first_index() {
        let truncated = storage.truncated().0;
        match storage.stored_snapshot()? {
            Some(snap) if snap.get_metadata().index == truncated => {
                tracing::info!(
                    index = truncated,
                    applied = cfg.applied,
                    "restoring the state machine from the stored raft snapshot"
                );
                restore = Some(snap);
                applied = truncated;
            }
            _ => {
                return Err(RaftError::Storage(format!(
                    "log compacted to {truncated} past the applied index {}",
                    cfg.applied
                )))
            }
        }
    }
    if applied > storage.hard_state().commit {
        if applied > storage.last_index() {
            return Err(RaftError::Storage(format!(
                "applied index {} is beyond the last log index {}",
                applied,
                storage.last_index()
            )));
        }
        let mut hs = storage.hard_state().clone();
        hs.commit = applied;
        storage.persist(&[], Some(&hs), true)?;
    }

    let raft_cfg = raft::Config {
        id: cfg.id,
        election_tick: cfg.election_tick,
        heartbeat_tick: cfg.heartbeat_tick,
        applied,
        max_size_per_msg: MAX_SIZE_PER_MSG,
        max_inflight_msgs: MAX_INFLIGHT_MSGS,
        check_quorum: true,
        pre_vote: true,
        ..Default::default()
    };
    raft_cfg.validate()?;
    let first_index = storage.first_index();
    let engine = storage.engine();
    let raw = RawNode::new(&raft_cfg, storage, &logger::raft_logger(cfg.id))?;

    let shared = Arc::new(Shared::new(
        cfg.id,
        raw.store().conf_state().clone(),
        cfg.applied,
        first_index,
    ));
    let (tx, rx) = crossbeam_channel::unbounded::<Msg>();
    let (apply_tx, apply_rx) = crossbeam_channel::unbounded();
    if let Some(snap) = restore {
        apply_tx
            .send(apply::ApplyTask::Restore(snap))
            .map_err(|_| RaftError::Stopped)?;
    }
    let (purge_tx, purge_rx) = crossbeam_channel::bounded::<()>(1);
    let mut node = Node::new(
        raw,
        transport,
        rx,
        apply_tx,
        purge_tx,
        Arc::clone(&shared),
        (!cfg.manual_ticks).then_some(cfg.tick_interval),
        cfg.election_tick,
        applied,
        cfg.log_retain_entries,
        cfg.log_compact_step,
    );
    // Hand re-delivered committed entries to the apply thread first (this finds any
    // unapplied conf change), then let a sole voter win at once before anyone proposes.
    node.handle_ready()?;
    node.campaign_if_sole_voter();
    node.handle_ready()?;

    let spawn_err = |e: std::io::Error| RaftError::Storage(format!("spawn thread: {e}"));
    let mut threads = Vec::with_capacity(3);
    let apply_shared = Arc::clone(&shared);
    let apply_raft_tx = tx.clone();
    threads.push(
        std::thread::Builder::new()
            .name("cairn-apply".into())
            .spawn(move || {
                let raft_tx = apply_raft_tx.clone();
                if let Err(why) =
                    catch_panic(|| apply::run(applier, apply_rx, apply_raft_tx, apply_shared))
                {
                    // The Raft thread stops on it, and says why.
                    let _ = raft_tx.send(Msg::ApplyFailed(format!(
                        "the apply thread panicked: {why}"
                    )));
                }
            })
            .map_err(spawn_err)?,
    );
    threads.push(
        std::thread::Builder::new()
            .name("cairn-raft-purge".into())
            .spawn(move || {
                while purge_rx.recv().is_ok() {
                    match engine.purge_expired_files() {
                        Ok(_) => tracing::debug!("purged raft log files"),
                        Err(e) => tracing::warn!(error = %e, "purging raft log files failed"),
                    }
                }
            })
            .map_err(spawn_err)?,
    );
    let raft_shared = Arc::clone(&shared);
    threads.push(
        std::thread::Builder::new()
            .name("cairn-raft".into())
            .spawn(move || {
                if let Err(why) = catch_panic(move || node.run()) {
                    // The node is gone with its log handle; whoever waits on `stopped` learns
                    // why, and takes the member down (fail-stop).
                    raft_shared.set_stopped(Err(RaftError::Panicked(why)));
                }
            })
            .map_err(spawn_err)?,
    );
    *shared.threads.lock() = threads;
    Ok(RaftHandle::new(tx, shared))
}
