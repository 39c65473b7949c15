//! `EngineStorage`: raft-rs's `Storage` over a raft-engine log.
//!
//! Everything lives in raft-engine under one Raft group ([`REGION_ID`]):
//!
//! | what | where |
//! |---|---|
//! | log entries | raft-engine entries of the group (`Entry` protobuf) |
//! | `HardState` | key `hard_state` (protobuf) |
//! | `ConfState` | key `conf_state` (protobuf); its presence marks a bootstrapped log |
//! | last compacted entry | key `truncated`: index then term, 8 bytes each, big-endian |
//! | a received snapshot | key `snapshot` (`Snapshot` protobuf with data), until the state machine has made it durable |
//!
//! A fresh log with voters `[1]` holds only `conf_state = {voters: [1]}`, a default hard
//! state and `truncated = (0, 0)`; raft-rs then sees first index 1 and last index 0.
//! After compacting up to index 100, entries start at 101 and `truncated = (100, term)`,
//! which answers `term(100)` for append matching.
//!
//! Installing a snapshot at index 900 (term 7) compacts every entry away, sets
//! `truncated = (900, 7)`, stores its `ConfState` and keeps the whole snapshot under
//! `snapshot`, all in one synced write: a crash before the state machine has restored it
//! finds it there on restart.
//!
//! The driver is the only writer; raft-rs reads through `&self`. Recent entries are served
//! from an [`EntryCache`] and terms from [`TermRuns`], so the hot path rarely reads files.

use std::path::Path;
use std::sync::Arc;

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, StorageError};
use raft_engine::{Command, Engine, LogBatch, MessageExt, ReadableSize, RecoveryMode};

use crate::entry_cache::EntryCache;
use crate::term_runs::TermRuns;
use crate::RaftError;

/// The raft-engine group that holds this member's log.
pub const REGION_ID: u64 = 1;

const KEY_HARD_STATE: &[u8] = b"hard_state";
const KEY_CONF_STATE: &[u8] = b"conf_state";
const KEY_TRUNCATED: &[u8] = b"truncated";
const KEY_SNAPSHOT: &[u8] = b"snapshot";

/// Byte budget of the in-memory tail of the log.
const ENTRY_CACHE_BYTES: usize = 64 << 20;

/// Lets raft-engine find the index of a raft-rs entry.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EntryExt;

impl MessageExt for EntryExt {
    type Entry = Entry;

    fn index(e: &Entry) -> u64 {
        e.index
    }
}

/// Counters of log writes, read by [`crate::RaftHandle::stats`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WriteCounters {
    pub(crate) writes: u64,
    pub(crate) syncs: u64,
    pub(crate) entries: u64,
    /// Bytes raft-engine wrote for those writes.
    pub(crate) bytes: u64,
}

/// raft-rs `Storage` backed by raft-engine.
pub struct EngineStorage {
    engine: Arc<Engine>,
    hard_state: HardState,
    conf_state: ConfState,
    /// Index and term of the last entry removed by compaction (0, 0 when none).
    truncated: (u64, u64),
    last_index: u64,
    terms: TermRuns,
    cache: EntryCache,
    counters: WriteCounters,
    /// Told how long each synced write took (the WAL fsync metric).
    on_sync: Option<crate::config::SyncObserver>,
    /// etcd's `--unsafe-no-fsync`: writes reach the OS (a killed process loses nothing)
    /// but are never fsynced (a machine that loses power may lose them).
    no_fsync: bool,
    /// The newest snapshot built for lagging peers, served by `Storage::snapshot`.
    snapshot: Option<Snapshot>,
    /// Set by `Storage::snapshot` when it had nothing fresh enough to serve; the driver
    /// takes it and has the apply thread build one.
    snapshot_wanted: std::cell::Cell<bool>,
}

impl std::fmt::Debug for EngineStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineStorage")
            .field("hard_state", &self.hard_state)
            .field("conf_state", &self.conf_state)
            .field("truncated", &self.truncated)
            .field("last_index", &self.last_index)
            .finish_non_exhaustive()
    }
}

fn engine_config(dir: &Path) -> Result<raft_engine::Config, RaftError> {
    let dir = dir
        .to_str()
        .ok_or_else(|| RaftError::InvalidConfig(format!("dir {} is not utf-8", dir.display())))?;
    Ok(raft_engine::Config {
        dir: dir.to_owned(),
        // A write torn by a crash is cut off; everything synced before it stays.
        recovery_mode: RecoveryMode::TolerateTailCorruption,
        target_file_size: ReadableSize::mb(64),
        purge_threshold: ReadableSize::mb(512),
        ..Default::default()
    })
}

fn storage_err(e: impl std::fmt::Display) -> raft::Error {
    raft::Error::Store(StorageError::Other(e.to_string().into()))
}

impl EngineStorage {
    /// Opens (creating if missing) the log in `dir`. Call [`Self::is_bootstrapped`] next.
    pub fn open(dir: &Path) -> Result<Self, RaftError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| RaftError::Storage(format!("create {}: {e}", dir.display())))?;
        let engine = Arc::new(Engine::open(engine_config(dir)?)?);
        let hard_state: HardState = engine
            .get_message(REGION_ID, KEY_HARD_STATE)?
            .unwrap_or_default();
        let conf_state: ConfState = engine
            .get_message(REGION_ID, KEY_CONF_STATE)?
            .unwrap_or_default();
        let truncated = match engine.get(REGION_ID, KEY_TRUNCATED) {
            Some(v) => decode_truncated(&v)?,
            None => (0, 0),
        };
        let mut storage = EngineStorage {
            engine,
            hard_state,
            conf_state,
            truncated,
            last_index: truncated.0,
            terms: TermRuns::default(),
            cache: EntryCache::new(ENTRY_CACHE_BYTES),
            counters: WriteCounters::default(),
            on_sync: None,
            no_fsync: false,
            snapshot: None,
            snapshot_wanted: std::cell::Cell::new(false),
        };
        storage.load_log()?;
        Ok(storage)
    }

    /// Rebuilds the in-memory view of the entries after open or compaction.
    fn load_log(&mut self) -> Result<(), RaftError> {
        let first = self.engine.first_index(REGION_ID);
        let last = self.engine.last_index(REGION_ID);
        self.last_index = match (first, last) {
            (Some(first), Some(last)) => {
                if first > self.truncated.0 + 1 {
                    return Err(RaftError::Storage(format!(
                        "log starts at {first} but only entries up to {} were compacted",
                        self.truncated.0
                    )));
                }
                last
            }
            _ => self.truncated.0,
        };
        let engine = Arc::clone(&self.engine);
        let mut terms =
            TermRuns::build(self.truncated.0 + 1, self.last_index, |i| match engine
                .get_entry::<EntryExt>(REGION_ID, i)?
            {
                Some(e) => Ok(e.term),
                None => Err(RaftError::Storage(format!("entry {i} missing"))),
            })?;
        if self.truncated.0 > 0 && self.last_index == self.truncated.0 {
            terms.push(self.truncated.0 + 1, self.truncated.1);
        }
        self.terms = terms;
        Ok(())
    }

    /// Whether the log was ever bootstrapped: false for a fresh directory.
    pub fn is_bootstrapped(&self) -> bool {
        self.conf_state != ConfState::default()
            || self.engine.get(REGION_ID, KEY_TRUNCATED).is_some()
    }

    /// Writes the initial state of a fresh log: `voters`, and when the state machine already
    /// holds entries up to `applied` (a restored backend), a log that starts after them as
    /// if a snapshot at `applied` with term 1 had been installed.
    pub fn bootstrap(&mut self, voters: &[u64], applied: u64) -> Result<(), RaftError> {
        if self.is_bootstrapped() || self.engine.last_index(REGION_ID).is_some() {
            return Err(RaftError::Storage("bootstrap of a non-empty log".into()));
        }
        let conf_state = ConfState {
            voters: voters.to_vec(),
            ..Default::default()
        };
        let (hard_state, truncated) = if applied == 0 {
            (HardState::default(), (0, 0))
        } else {
            (
                HardState {
                    term: 1,
                    commit: applied,
                    ..Default::default()
                },
                (applied, 1),
            )
        };
        let mut batch = LogBatch::default();
        batch.put_message(REGION_ID, KEY_CONF_STATE.to_vec(), &conf_state)?;
        batch.put_message(REGION_ID, KEY_HARD_STATE.to_vec(), &hard_state)?;
        batch.put(
            REGION_ID,
            KEY_TRUNCATED.to_vec(),
            encode_truncated(truncated),
        )?;
        self.write(&mut batch, true)?;
        self.conf_state = conf_state;
        self.hard_state = hard_state;
        self.truncated = truncated;
        self.load_log()
    }

    /// Writes a fresh log that starts after entry `truncated` (index, term), as if a
    /// snapshot there had been installed, holding `entries` (which must follow it without a
    /// gap), `hard_state` and `conf_state` (the membership as of `truncated`), in one synced
    /// write. For a log carried over from another Raft implementation.
    pub fn seed(
        &mut self,
        truncated: (u64, u64),
        hard_state: &HardState,
        conf_state: &ConfState,
        entries: &[Entry],
    ) -> Result<(), RaftError> {
        if self.is_bootstrapped() || self.engine.last_index(REGION_ID).is_some() {
            return Err(RaftError::Storage("seed of a non-empty log".into()));
        }
        let mut batch = LogBatch::with_capacity(entries.len());
        if !entries.is_empty() {
            batch.add_entries::<EntryExt>(REGION_ID, entries)?;
        }
        batch.put_message(REGION_ID, KEY_CONF_STATE.to_vec(), conf_state)?;
        batch.put_message(REGION_ID, KEY_HARD_STATE.to_vec(), hard_state)?;
        batch.put(
            REGION_ID,
            KEY_TRUNCATED.to_vec(),
            encode_truncated(truncated),
        )?;
        self.write(&mut batch, true)?;
        self.conf_state = conf_state.clone();
        self.hard_state = hard_state.clone();
        self.truncated = truncated;
        self.load_log()
    }

    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    pub fn conf_state(&self) -> &ConfState {
        &self.conf_state
    }

    /// Index of the first entry still in the log.
    pub fn first_index(&self) -> u64 {
        self.truncated.0 + 1
    }

    /// Index of the last entry in the log.
    pub fn last_index(&self) -> u64 {
        self.last_index
    }

    pub(crate) fn counters(&self) -> WriteCounters {
        self.counters
    }

    /// Sets the observer told the duration of every synced write.
    pub fn set_sync_observer(&mut self, observer: Option<crate::config::SyncObserver>) {
        self.on_sync = observer;
    }

    /// Writes without ever waiting for fsync from now on (etcd's `--unsafe-no-fsync`).
    pub fn set_unsafe_no_fsync(&mut self, on: bool) {
        self.no_fsync = on;
    }

    fn write(&mut self, batch: &mut LogBatch, sync: bool) -> Result<(), RaftError> {
        let sync = sync && !self.no_fsync;
        let started = std::time::Instant::now();
        let written = self.engine.write(batch, sync).map_err(|e| {
            // raft-engine reports a full disk in words of its own ("nospace").
            if e.to_string().contains("nospace") {
                RaftError::Storage(format!("No space left on device for the Raft log: {e}"))
            } else {
                e.into()
            }
        })?;
        if let (true, Some(observe)) = (sync, &self.on_sync) {
            (observe.0)(started.elapsed());
        }
        self.counters.writes += 1;
        self.counters.bytes += written as u64;
        if sync {
            self.counters.syncs += 1;
        }
        Ok(())
    }

    /// Appends `entries` (replacing any at or after the first one's index) and stores
    /// `hard_state`, in one raft-engine write; `sync` makes it wait for fdatasync.
    pub fn persist(
        &mut self,
        entries: &[Entry],
        hard_state: Option<&HardState>,
        sync: bool,
    ) -> Result<(), RaftError> {
        if entries.is_empty() && hard_state.is_none() {
            return Ok(());
        }
        if let Some(first) = entries.first() {
            if first.index <= self.truncated.0 || first.index > self.last_index + 1 {
                return Err(RaftError::Storage(format!(
                    "append at {} outside log {}..={}",
                    first.index,
                    self.truncated.0 + 1,
                    self.last_index
                )));
            }
        }
        let mut batch = LogBatch::with_capacity(entries.len());
        batch.add_entries::<EntryExt>(REGION_ID, entries)?;
        if let Some(hs) = hard_state {
            batch.put_message(REGION_ID, KEY_HARD_STATE.to_vec(), hs)?;
        }
        self.write(&mut batch, sync)?;
        if let Some(hs) = hard_state {
            self.hard_state = hs.clone();
        }
        if let Some(last) = entries.last() {
            self.last_index = last.index;
            self.terms.append(entries);
            self.cache.append(entries);
            self.counters.entries += entries.len() as u64;
        }
        Ok(())
    }

    /// Stores a new `ConfState` and syncs it.
    pub fn set_conf_state(&mut self, conf_state: ConfState) -> Result<(), RaftError> {
        let mut batch = LogBatch::default();
        batch.put_message(REGION_ID, KEY_CONF_STATE.to_vec(), &conf_state)?;
        self.write(&mut batch, true)?;
        self.conf_state = conf_state;
        Ok(())
    }

    /// Removes the entries before `index` (it becomes the first index). Does nothing when
    /// they are already gone; refuses to remove the last entry's successor or beyond.
    pub fn compact(&mut self, index: u64) -> Result<(), RaftError> {
        if index <= self.first_index() {
            return Ok(());
        }
        if index > self.last_index + 1 {
            return Err(RaftError::Storage(format!(
                "compact to {index} beyond last index {}",
                self.last_index
            )));
        }
        let term = raft::Storage::term(self, index - 1).map_err(RaftError::from)?;
        let truncated = (index - 1, term);
        let mut batch = LogBatch::default();
        batch.add_command(REGION_ID, Command::Compact { index });
        batch.put(
            REGION_ID,
            KEY_TRUNCATED.to_vec(),
            encode_truncated(truncated),
        )?;
        self.write(&mut batch, false)?;
        self.truncated = truncated;
        self.terms.compact(index);
        self.cache.evict_to(index - 1);
        Ok(())
    }

    /// Makes `snap` (received from the leader) the start of the log: removes every entry,
    /// stores its index, term and `ConfState` as the compacted point, keeps the snapshot
    /// itself until [`Self::release_snapshot`], and stores `hard_state`; one synced write.
    pub fn apply_snapshot(
        &mut self,
        snap: &Snapshot,
        hard_state: &HardState,
    ) -> Result<(), RaftError> {
        let meta = snap.get_metadata();
        let truncated = (meta.index, meta.term);
        let mut batch = LogBatch::default();
        // Compacting past the last entry removes them all.
        let past_all = self.last_index.max(meta.index) + 1;
        batch.add_command(REGION_ID, Command::Compact { index: past_all });
        batch.put(
            REGION_ID,
            KEY_TRUNCATED.to_vec(),
            encode_truncated(truncated),
        )?;
        batch.put_message(REGION_ID, KEY_CONF_STATE.to_vec(), meta.get_conf_state())?;
        batch.put_message(REGION_ID, KEY_HARD_STATE.to_vec(), hard_state)?;
        batch.put_message(REGION_ID, KEY_SNAPSHOT.to_vec(), snap)?;
        self.write(&mut batch, true)?;
        self.truncated = truncated;
        self.last_index = meta.index;
        self.conf_state = meta.get_conf_state().clone();
        self.hard_state = hard_state.clone();
        self.terms = TermRuns::default();
        self.terms.push(meta.index + 1, meta.term);
        self.cache.clear();
        Ok(())
    }

    /// The snapshot stored by [`Self::apply_snapshot`], if it is still kept.
    pub fn stored_snapshot(&self) -> Result<Option<Snapshot>, RaftError> {
        Ok(self.engine.get_message(REGION_ID, KEY_SNAPSHOT)?)
    }

    /// Forgets the stored snapshot once the state machine holds it durably.
    pub fn release_snapshot(&mut self) -> Result<(), RaftError> {
        let mut batch = LogBatch::default();
        batch.delete(REGION_ID, KEY_SNAPSHOT.to_vec());
        self.write(&mut batch, false)
    }

    /// Sets the snapshot served to lagging peers.
    pub(crate) fn set_snapshot(&mut self, snap: Snapshot) {
        self.snapshot = Some(snap);
    }

    /// Whether raft-rs asked for a snapshot it could not get since the last call.
    pub(crate) fn take_snapshot_wanted(&self) -> bool {
        self.snapshot_wanted.replace(false)
    }

    /// Index and term of the last compacted entry (of the installed snapshot).
    pub fn truncated(&self) -> (u64, u64) {
        self.truncated
    }

    /// Lets the in-memory tail drop entries the applier has finished with.
    pub(crate) fn on_applied(&mut self, applied: u64) {
        self.cache.evict_to(applied);
    }

    /// Flushes everything written without sync (nothing under `--unsafe-no-fsync`).
    pub fn sync(&mut self) -> Result<(), RaftError> {
        if self.no_fsync {
            return Ok(());
        }
        self.engine.sync()?;
        self.counters.syncs += 1;
        Ok(())
    }

    /// The engine, shared with the purge thread.
    pub(crate) fn engine(&self) -> Arc<Engine> {
        Arc::clone(&self.engine)
    }
}

fn encode_truncated((index, term): (u64, u64)) -> Vec<u8> {
    let mut v = Vec::with_capacity(16);
    v.extend_from_slice(&index.to_be_bytes());
    v.extend_from_slice(&term.to_be_bytes());
    v
}

fn decode_truncated(v: &[u8]) -> Result<(u64, u64), RaftError> {
    let bad = || RaftError::Storage(format!("bad truncated state of {} bytes", v.len()));
    let index = v.get(..8).and_then(|b| b.try_into().ok()).ok_or_else(bad)?;
    let term = v
        .get(8..16)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(bad)?;
    Ok((u64::from_be_bytes(index), u64::from_be_bytes(term)))
}

impl raft::Storage for EngineStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(
            self.hard_state.clone(),
            self.conf_state.clone(),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let max_size = max_size.into();
        if low <= self.truncated.0 {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.last_index + 1 {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let mut out = Vec::with_capacity((high - low).min(4096) as usize);
        if low >= high {
            return Ok(out);
        }
        let cached_from = self.cache.first_index().unwrap_or(high).max(low);
        if low < cached_from {
            let limit = max_size.map(|m| m.min(usize::MAX as u64) as usize);
            self.engine
                .fetch_entries_to::<EntryExt>(REGION_ID, low, cached_from, limit, &mut out)
                .map_err(storage_err)?;
            if (out.len() as u64) < cached_from - low {
                // Stopped early at the size limit.
                raft::util::limit_size(&mut out, max_size);
                return Ok(out);
            }
        }
        self.cache.fetch(cached_from, high, &mut out);
        raft::util::limit_size(&mut out, max_size);
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx == self.truncated.0 {
            return Ok(self.truncated.1);
        }
        if idx < self.truncated.0 {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if idx > self.last_index {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        self.terms
            .term(idx)
            .ok_or_else(|| storage_err(format!("no term for index {idx}")))
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(EngineStorage::first_index(self))
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last_index)
    }

    /// Serves the last built snapshot if the log still continues right after it (and it
    /// is as new as `request_index`). Otherwise notes that one is wanted and answers
    /// "temporarily unavailable": the apply thread builds one and raft-rs asks again at
    /// its next attempt to reach the peer.
    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        if let Some(snap) = &self.snapshot {
            let meta = snap.get_metadata();
            let cs = meta.get_conf_state();
            // A member added after the cached snapshot was built is not in its ConfState,
            // and raft-rs on that member would refuse it forever: build a newer one.
            let includes_to = cs.voters.contains(&to)
                || cs.learners.contains(&to)
                || cs.voters_outgoing.contains(&to)
                || cs.learners_next.contains(&to);
            if meta.index >= self.truncated.0 && meta.index >= request_index && includes_to {
                return Ok(snap.clone());
            }
        }
        self.snapshot_wanted.set(true);
        Err(raft::Error::Store(
            StorageError::SnapshotTemporarilyUnavailable,
        ))
    }
}

#[cfg(test)]
mod tests {
    use raft::Storage;

    use super::*;

    fn ents(lo: u64, hi: u64, term: u64) -> Vec<Entry> {
        (lo..=hi)
            .map(|i| Entry {
                index: i,
                term,
                data: vec![i as u8; 100].into(),
                ..Default::default()
            })
            .collect()
    }

    fn get(s: &EngineStorage, lo: u64, hi: u64, max: Option<u64>) -> raft::Result<Vec<u64>> {
        let es = s.entries(lo, hi, max, GetEntriesContext::empty(false))?;
        Ok(es.iter().map(|e| e.index).collect())
    }

    #[test]
    fn entries_terms_and_bounds() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = EngineStorage::open(dir.path()).unwrap();
        assert!(!s.is_bootstrapped());
        s.bootstrap(&[1], 0).unwrap();
        assert_eq!((s.first_index(), s.last_index()), (1, 0));
        assert_eq!(s.term(0).unwrap(), 0);
        s.persist(&ents(1, 5, 1), None, true).unwrap();
        s.persist(&ents(6, 10, 2), None, true).unwrap();
        // A follower's log being overwritten by a new leader.
        s.persist(&ents(9, 12, 3), None, true).unwrap();
        assert_eq!(s.last_index(), 12);
        let terms: Vec<u64> = (1..=12).map(|i| s.term(i).unwrap()).collect();
        assert_eq!(terms, vec![1, 1, 1, 1, 1, 2, 2, 2, 3, 3, 3, 3]);
        assert_eq!(get(&s, 3, 13, None).unwrap(), (3..=12).collect::<Vec<_>>());
        // Sizes limit the batch but always return at least one entry.
        assert_eq!(get(&s, 3, 13, Some(1)).unwrap(), vec![3]);
        assert_eq!(get(&s, 3, 13, Some(250)).unwrap(), vec![3, 4]);
        assert!(matches!(
            get(&s, 3, 14, None),
            Err(raft::Error::Store(StorageError::Unavailable))
        ));

        // Half the tail evicted: reads stitch the engine and the cache together.
        s.on_applied(7);
        assert_eq!(s.cache.first_index(), Some(8));
        assert_eq!(get(&s, 2, 13, None).unwrap(), (2..=12).collect::<Vec<_>>());
        assert_eq!(get(&s, 2, 13, Some(250)).unwrap(), vec![2, 3]);

        s.compact(6).unwrap();
        assert_eq!(s.first_index(), 6);
        assert_eq!(s.term(5).unwrap(), 1);
        assert!(matches!(
            s.term(4),
            Err(raft::Error::Store(StorageError::Compacted))
        ));
        assert!(matches!(
            get(&s, 5, 7, None),
            Err(raft::Error::Store(StorageError::Compacted))
        ));
        assert!(s.compact(14).is_err());
        // Appending before the compacted point is refused, not silently accepted.
        assert!(s.persist(&ents(3, 3, 4), None, true).is_err());
        let hs = HardState {
            term: 3,
            vote: 1,
            commit: 12,
            ..Default::default()
        };
        s.persist(&[], Some(&hs), true).unwrap();
        drop(s);

        let s = EngineStorage::open(dir.path()).unwrap();
        assert_eq!((s.first_index(), s.last_index()), (6, 12));
        assert_eq!(s.hard_state(), &hs);
        assert_eq!(s.conf_state().voters, vec![1]);
        let terms: Vec<u64> = (5..=12).map(|i| s.term(i).unwrap()).collect();
        assert_eq!(terms, vec![1, 2, 2, 2, 3, 3, 3, 3]);
        assert_eq!(get(&s, 6, 13, None).unwrap(), (6..=12).collect::<Vec<_>>());
    }

    #[test]
    fn bootstrap_after_restored_state_machine() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = EngineStorage::open(dir.path()).unwrap();
        s.bootstrap(&[3], 500).unwrap();
        assert_eq!((s.first_index(), s.last_index()), (501, 500));
        assert_eq!(s.term(500).unwrap(), 1);
        assert_eq!(s.hard_state().commit, 500);
        assert!(s.bootstrap(&[3], 0).is_err());
        s.persist(&ents(501, 502, 2), None, true).unwrap();
        drop(s);
        let s = EngineStorage::open(dir.path()).unwrap();
        assert_eq!((s.first_index(), s.last_index()), (501, 502));
        assert_eq!(s.term(502).unwrap(), 2);
    }
}
