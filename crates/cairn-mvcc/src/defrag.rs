//! Defragmentation while the store keeps serving.
//!
//! [`Store::defragment`] rewrites the backend into a new, compact file beside it, in three
//! steps:
//!
//! 1. Under the writer lock, between two apply batches, it begins a redb read transaction
//!    on the live file (the copy's starting point) and starts a [`Tail`]: from then on each
//!    batch that commits also records what it changed there, as table operations in the
//!    order it made them.
//! 2. Holding no lock, it copies every table of that read transaction into
//!    `<backend>.cairn-defrag` in durable transactions of about [`COPY_CHUNK_BYTES`] (so
//!    the disk flushes it a chunk at a time), resting after each as long as it took, then
//!    replays the tail recorded meanwhile, in durable rounds, until a round is short.
//! 3. Under the writer lock again, it replays the rest of the tail, commits durably, renames
//!    the new file over the backend, makes the rename durable and swaps the store's handle.
//!
//! Writes wait only for step 3, whose work is the last round's tail whatever the backend's
//! size. Reads never wait: one begun on the old file finishes on it (its handle keeps the
//! old file open), and the next one begins on the new file.
//!
//! Until the rename the old file is the truth: a crash leaves it as it was and the next
//! open deletes the half-made copy; a failure abandons the copy and the store goes on with
//! the old file. A Raft snapshot restored meanwhile ([`Store::restore_keeping`]) makes the
//! tail stale and the copy starts over.
//!
//! For example, with keys `a@2`, `b@3` committed when the copy begins, and a batch putting
//! `c@4` and compacting at 4 while it runs, the tail reads
//! `[Put(key, 4_0, c), Delete(key, 2_0) .., Meta(scheduledCompactRev, 4), ..]`; replaying
//! it on the copy of `a@2`, `b@3` makes the same tables as the live file.

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redb::{Database, Durability, ReadTransaction, ReadableTable};

use crate::backend::{self, RecordTable, KEY_TABLE, LEASE_TABLE, META_TABLE};
use crate::error::MvccError;
use crate::kv_store::Store;

/// Bytes of keys and values copied per write transaction of the new file.
pub(crate) const COPY_CHUNK_BYTES: usize = 8 << 20;

/// A catch-up round this short (in operations) is the last before the switch-over.
const SHORT_ROUND: usize = 256;

/// Catch-up rounds before the switch-over at most.
const MAX_ROUNDS: usize = 8;

/// How many times a copy made stale by a restore is started over.
const MAX_ATTEMPTS: usize = 3;

/// The tail may hold this many bytes; past that the defragmentation gives up rather than
/// hold more of the writes in memory.
const TAIL_LIMIT_BYTES: usize = 1 << 30;

/// How long the defragmentation waits for the last reads on the old file to end, so the
/// old file is closed on its thread rather than a reader's.
const OLD_READERS_WAIT: Duration = Duration::from_secs(2);

/// A table of the backend, as the tail names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TailTable {
    Key,
    Lease,
    Record(RecordTable),
}

/// One change a batch made to the backend.
#[derive(Debug)]
pub(crate) enum TailOp {
    Put(TailTable, Vec<u8>, Vec<u8>),
    Delete(TailTable, Vec<u8>),
    Meta(String, Vec<u8>),
}

impl TailOp {
    fn bytes(&self) -> usize {
        match self {
            TailOp::Put(_, k, v) => k.len() + v.len(),
            TailOp::Delete(_, k) => k.len(),
            TailOp::Meta(k, v) => k.len() + v.len(),
        }
    }
}

/// The changes committed since a defragmentation's copy began, not yet replayed on the copy.
#[derive(Debug, Default)]
pub(crate) struct Tail {
    ops: Vec<TailOp>,
    bytes: usize,
    /// Set when the backend was replaced wholesale: the copy is of data that is gone.
    stale: bool,
    /// Set when the tail outgrew [`TAIL_LIMIT_BYTES`]; `ops` was dropped.
    overflowed: bool,
}

impl Tail {
    /// Appends one batch's changes.
    pub(crate) fn extend(&mut self, ops: Vec<TailOp>) {
        if self.overflowed {
            return;
        }
        self.bytes += ops.iter().map(TailOp::bytes).sum::<usize>();
        if self.bytes > TAIL_LIMIT_BYTES {
            self.overflowed = true;
            self.ops = Vec::new();
            return;
        }
        self.ops.extend(ops);
    }

    /// Marks the tail stale: the backend was replaced.
    pub(crate) fn set_stale(&mut self) {
        self.stale = true;
    }
}

/// The points of a defragmentation a test can act at (or fail at), in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    /// The starting point is taken and the tail started; no lock held.
    Started,
    /// The copy is made and durable; no lock held.
    Copied,
    /// The catch-up rounds are done; no lock held.
    CaughtUp,
    /// The whole tail is replayed and durable, the rename not made; the writer lock held.
    Switching,
}

/// What one defragmentation did, for the server's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DefragReport {
    /// Size of the backend file before.
    pub size_before: u64,
    /// Size of the backend file after.
    pub size_after: u64,
    /// Operations replayed from the tail (writes made during the copy).
    pub tail_ops: usize,
    /// Operations replayed under the writer lock.
    pub switch_ops: usize,
    /// How long writes waited for the switch-over.
    pub switch: Duration,
}

/// Clears the tail and removes the half-made copy, unless disarmed by a finished switch.
struct Abandon<'s> {
    store: &'s Store,
    path: &'s Path,
    armed: bool,
}

impl Drop for Abandon<'_> {
    fn drop(&mut self) {
        if self.armed {
            *self.store.tail.lock() = None;
            let _ = fs::remove_file(self.path);
        }
    }
}

enum Attempt {
    Done(DefragReport),
    Stale,
}

impl Store {
    /// Rewrites the backend file compactly while the store keeps serving (see the module
    /// docs of `defrag`): reads never wait, writes wait only for the short switch-over at
    /// the end. One defragmentation runs at a time; a second waits for the first.
    pub fn defragment(&self) -> Result<DefragReport, MvccError> {
        self.defragment_with(&mut |_| Ok(()))
    }

    /// [`Self::defragment`], calling `at` at each [`Stage`]; an error from it abandons the
    /// defragmentation.
    pub(crate) fn defragment_with(
        &self,
        at: &mut dyn FnMut(Stage) -> Result<(), MvccError>,
    ) -> Result<DefragReport, MvccError> {
        let _one = self.defrag.lock();
        for _ in 0..MAX_ATTEMPTS {
            if let Attempt::Done(report) = self.defragment_once(at)? {
                return Ok(report);
            }
        }
        Err(MvccError::DefragAbandoned(
            "the backend was replaced by a snapshot during each attempt".into(),
        ))
    }

    fn defragment_once(
        &self,
        at: &mut dyn FnMut(Stage) -> Result<(), MvccError>,
    ) -> Result<Attempt, MvccError> {
        let path = backend::defrag_path(&self.path);
        remove_if_present(&path)?;
        let size_before = self.db_size();
        let mut abandon = Abandon {
            store: self,
            path: &path,
            armed: true,
        };
        let snapshot = {
            let _writer = self.writer.lock();
            let txn = self.begin_read()?;
            *self.tail.lock() = Some(Tail::default());
            txn
        };
        at(Stage::Started)?;
        let new = Database::create(&path)?;
        copy_tables(&snapshot, &new)?;
        drop(snapshot);
        at(Stage::Copied)?;
        let mut tail_ops = 0;
        for _ in 0..MAX_ROUNDS {
            let Some(ops) = self.take_tail()? else {
                return Ok(Attempt::Stale);
            };
            let n = ops.len();
            tail_ops += n;
            replay(&new, &ops)?;
            if n < SHORT_ROUND {
                break;
            }
        }
        at(Stage::CaughtUp)?;
        let writer = self.writer.lock();
        let started = Instant::now();
        let Some(ops) = self.take_tail()? else {
            return Ok(Attempt::Stale);
        };
        let switch_ops = ops.len();
        replay(&new, &ops)?;
        at(Stage::Switching)?;
        fs::rename(&path, &self.path)?;
        self.file_size.changed();
        // The new file is the backend from here on, whatever happens next.
        abandon.armed = false;
        *self.tail.lock() = None;
        let old = std::mem::replace(&mut *self.db.write(), Arc::new(new));
        let synced = backend::sync_parent(&self.path);
        drop(writer);
        let switch = started.elapsed();
        close_when_unused(old);
        synced?;
        Ok(Attempt::Done(DefragReport {
            size_before,
            size_after: self.db_size(),
            tail_ops: tail_ops + switch_ops,
            switch_ops,
            switch,
        }))
    }

    /// Takes the tail's operations; `None` if it went stale.
    fn take_tail(&self) -> Result<Option<Vec<TailOp>>, MvccError> {
        let mut guard = self.tail.lock();
        let Some(tail) = guard.as_mut() else {
            return Err(MvccError::DefragAbandoned("the tail is gone".into()));
        };
        if tail.stale {
            return Ok(None);
        }
        if tail.overflowed {
            return Err(MvccError::DefragAbandoned(format!(
                "more than {TAIL_LIMIT_BYTES} bytes written during the copy"
            )));
        }
        tail.bytes = 0;
        Ok(Some(std::mem::take(&mut tail.ops)))
    }
}

fn remove_if_present(path: &Path) -> Result<(), MvccError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    }
}

/// Waits (bounded) for the reads still on the old file to end, then closes it here.
fn close_when_unused(mut old: Arc<Database>) {
    let deadline = Instant::now() + OLD_READERS_WAIT;
    loop {
        match Arc::try_unwrap(old) {
            Ok(db) => {
                drop(db);
                return;
            }
            Err(still) if Instant::now() < deadline => {
                old = still;
                std::thread::sleep(Duration::from_millis(1));
            }
            // The last reader closes it.
            Err(_) => return,
        }
    }
}

/// Copies every table of `src` into the empty database `dst`, durably.
fn copy_tables(src: &ReadTransaction, dst: &Database) -> Result<(), MvccError> {
    let mut txn = dst.begin_write()?;
    txn.set_durability(Durability::None)?;
    crate::kv_store::copy_all_but_keys(src, &txn)?;
    txn.commit()?;
    let keys = src.open_table(KEY_TABLE)?;
    let mut entries = keys.iter()?;
    loop {
        let chunk_began = Instant::now();
        let mut txn = dst.begin_write()?;
        let mut more = false;
        {
            let mut out = txn.open_table(KEY_TABLE)?;
            let mut chunk = 0;
            for entry in entries.by_ref() {
                let (k, v) = entry?;
                out.insert(k.value(), v.value())?;
                chunk += k.value().len() + v.value().len();
                if chunk >= COPY_CHUNK_BYTES {
                    more = true;
                    break;
                }
            }
        }
        // Each chunk is made durable on its own, so the disk writes the copy in chunk-sized
        // flushes rather than in one at the end that would queue the Raft log's fsyncs (the
        // puts' latency) behind the whole file.
        txn.set_durability(Durability::Immediate)?;
        txn.commit()?;
        if !more {
            return Ok(());
        }
        // The copy takes at most half of one core and of the disk: it rests as long as its
        // last chunk took, leaving the rest to the requests it runs beside.
        std::thread::sleep(chunk_began.elapsed());
    }
}

/// Replays tail operations on `db` in one durable transaction.
fn replay(db: &Database, ops: &[TailOp]) -> Result<(), MvccError> {
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::Immediate)?;
    for op in ops {
        match op {
            TailOp::Put(t, k, v) => {
                open_bytes(&txn, *t)?.insert(k.as_slice(), v.as_slice())?;
            }
            TailOp::Delete(t, k) => {
                open_bytes(&txn, *t)?.remove(k.as_slice())?;
            }
            TailOp::Meta(k, v) => {
                txn.open_table(META_TABLE)?
                    .insert(k.as_str(), v.as_slice())?;
            }
        }
    }
    txn.commit()?;
    Ok(())
}

fn open_bytes<'t>(
    txn: &'t redb::WriteTransaction,
    t: TailTable,
) -> Result<redb::Table<'t, &'static [u8], &'static [u8]>, MvccError> {
    let def = match t {
        TailTable::Key => KEY_TABLE,
        TailTable::Lease => LEASE_TABLE,
        TailTable::Record(r) => r.definition(),
    };
    Ok(txn.open_table(def)?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::atomic::{AtomicBool, AtomicI64};

    use cairn_proto::etcdserverpb::{DeleteRangeRequest, PutRequest, RangeRequest};

    use super::*;
    use crate::{ApplyBatch, NoLeases};

    fn open(dir: &tempfile::TempDir, name: &str) -> Store {
        Store::open(&dir.path().join(name)).unwrap()
    }

    fn apply(s: &Store, f: impl FnOnce(&mut ApplyBatch<'_>)) {
        let mut b = s.begin_apply().unwrap();
        f(&mut b);
        b.commit(false).unwrap();
    }

    fn put(b: &mut ApplyBatch<'_>, k: &str, v: &[u8]) {
        let req = PutRequest {
            key: k.into(),
            value: v.to_vec(),
            ..Default::default()
        };
        b.put(&req, &NoLeases).unwrap();
    }

    fn del(b: &mut ApplyBatch<'_>, k: &str, end: &str) {
        let req = DeleteRangeRequest {
            key: k.into(),
            range_end: end.into(),
            ..Default::default()
        };
        b.delete_range(&req).unwrap();
    }

    fn everything() -> RangeRequest {
        RangeRequest {
            key: vec![0],
            range_end: vec![0],
            ..Default::default()
        }
    }

    /// Everything a user or a peer can see of a store.
    #[derive(Debug, PartialEq)]
    struct Seen {
        hash: u32,
        hash_kv: crate::HashKv,
        kvs: Vec<cairn_proto::mvccpb::KeyValue>,
        applied: u64,
        leases: Vec<(i64, Vec<u8>)>,
        users: Vec<crate::Record>,
        meta: Option<Vec<u8>>,
    }

    fn seen(s: &Store) -> Seen {
        Seen {
            hash: s.hash().unwrap(),
            hash_kv: s.hash_kv(0).unwrap(),
            kvs: s.range(&everything()).unwrap().kvs,
            applied: s.applied_index(),
            leases: s.leases().unwrap(),
            users: s.records(RecordTable::AuthUsers).unwrap(),
            meta: s.meta("m").unwrap(),
        }
    }

    /// A history with every kind of record, and half of its space freed: 400 keys of 1 KiB,
    /// the odd ones deleted, compacted.
    fn fill(s: &Store) {
        for i in 0..400 {
            apply(s, |b| put(b, &format!("k{i:03}"), &[b'x'; 1024]));
        }
        apply(s, |b| {
            for i in (1..400).step_by(2) {
                del(b, &format!("k{i:03}"), "");
            }
            b.put_lease(7, b"lease-7".to_vec());
            b.put_lease(8, b"lease-8".to_vec());
            b.put_record(RecordTable::AuthUsers, b"alice", b"user-record");
            b.put_meta("m", b"before").unwrap();
            b.set_applied_index(100);
        });
        let rev = s.current_revision();
        apply(s, |b| b.compact(rev).unwrap());
    }

    /// The writes made at `stage` (the same on the store defragmented and its twin).
    fn writes_at(s: &Store, stage: Stage) {
        let n = stage as u64;
        apply(s, |b| {
            put(b, &format!("during-{n}"), b"v");
            put(b, "k000", format!("overwritten-{n}").as_bytes());
            del(b, &format!("k{:03}", 2 * n + 2), "");
            b.put_lease(9 + n as i64, b"new".to_vec());
            b.delete_lease(7);
            b.put_record(RecordTable::AuthUsers, format!("u{n}").as_bytes(), b"r");
            b.delete_record(RecordTable::AuthUsers, b"alice");
            b.put_meta("m", format!("stage-{n}").as_bytes()).unwrap();
            b.set_applied_index(200 + n);
        });
        if stage == Stage::Copied {
            let rev = s.current_revision() - 1;
            apply(s, |b| b.compact(rev).unwrap());
        }
    }

    #[test]
    fn writes_during_the_copy_all_survive_and_the_content_is_equal() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(&dir, "db");
        let twin = open(&dir, "twin");
        fill(&s);
        fill(&twin);
        // Durable, so the pages are on the file (the server commits durably every 500 ms).
        s.begin_apply().unwrap().commit(true).unwrap();
        let size_before = s.db_size();
        let in_use_before = s.measure_in_use().unwrap();
        let mut stages = Vec::new();
        let report = s
            .defragment_with(&mut |stage| {
                stages.push(stage);
                if stage != Stage::Switching {
                    writes_at(&s, stage);
                    writes_at(&twin, stage);
                }
                Ok(())
            })
            .unwrap();
        assert_eq!(
            stages,
            [
                Stage::Started,
                Stage::Copied,
                Stage::CaughtUp,
                Stage::Switching
            ]
        );
        assert!(report.tail_ops > 0, "{report:?}");
        assert_eq!(seen(&s), seen(&twin));
        assert_eq!(s.meta("m").unwrap(), Some(b"stage-2".to_vec()));
        assert!(
            s.db_size() < size_before,
            "{} !< {size_before}",
            s.db_size()
        );
        assert!(s.measure_in_use().unwrap() <= in_use_before);
        assert!(!backend::defrag_path(&dir.path().join("db")).exists());

        // Writes go on to the new file, and it is the one found at the next open.
        writes_at(&s, Stage::Switching);
        writes_at(&twin, Stage::Switching);
        let want = seen(&twin);
        drop(s);
        let s = open(&dir, "db");
        assert_eq!(seen(&s), want);
    }

    #[test]
    fn reads_do_not_wait_for_the_switch_over() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(&dir, "db");
        fill(&s);
        let before = seen(&s);
        // At `Switching` the writer lock is held: reads on this same thread would deadlock
        // if they needed it, or the backend handle's lock.
        s.defragment_with(&mut |stage| {
            if stage == Stage::Switching {
                assert_eq!(seen(&s), before);
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(seen(&s), before);
    }

    #[test]
    fn a_read_begun_before_the_switch_over_finishes_on_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(&dir, "db");
        fill(&s);
        let read = s.begin_read().unwrap();
        let table = read.open_table(KEY_TABLE).unwrap();
        let rows = table.iter().unwrap().count();
        s.defragment().unwrap();
        writes_at(&s, Stage::Copied);
        // Without the file's handle in the read, the switch-over closed the old file under
        // it and this failed with DatabaseClosed (seen as a failed range in a client's read).
        assert_eq!(table.iter().unwrap().count(), rows);
        drop(table);
        drop(read);
        assert!(s.range(&everything()).unwrap().count > 0);
    }

    #[test]
    fn an_export_begun_before_a_defragmentation_keeps_its_point_in_time() {
        use crate::{BackendRead, Table};
        fn rows(read: &BackendRead) -> Vec<(Vec<u8>, Vec<u8>)> {
            let mut out = Vec::new();
            read.for_each::<MvccError>(Table::Key, |k, v| {
                out.push((k.to_vec(), v.to_vec()));
                Ok(())
            })
            .unwrap();
            out
        }
        let dir = tempfile::tempdir().unwrap();
        let s = open(&dir, "db");
        fill(&s);
        let read = s.backend_read().unwrap();
        let before = rows(&read);
        // The export holds the old file's handle on this very thread: a switch-over that
        // waited for it would never end.
        s.defragment_with(&mut |stage| {
            if stage == Stage::Copied {
                writes_at(&s, stage);
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(rows(&read), before);
        let after = rows(&s.backend_read().unwrap());
        assert_ne!(
            after, before,
            "the writes during the copy are in the new file"
        );
    }

    #[test]
    fn a_failure_at_any_stage_leaves_the_old_file_working() {
        for fail_at in [
            Stage::Started,
            Stage::Copied,
            Stage::CaughtUp,
            Stage::Switching,
        ] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("db");
            let s = open(&dir, "db");
            fill(&s);
            let err = s
                .defragment_with(&mut |stage| {
                    if stage != Stage::Switching {
                        writes_at(&s, stage);
                    }
                    if stage == fail_at {
                        return Err(MvccError::Io(std::io::Error::other("disk full")));
                    }
                    Ok(())
                })
                .unwrap_err();
            assert!(err.to_string().contains("disk full"), "{fail_at:?}: {err}");
            assert!(!backend::defrag_path(&path).exists(), "{fail_at:?}");
            assert!(s.tail.lock().is_none(), "{fail_at:?}");
            // Still serving, and writes go on to the old file.
            apply(&s, |b| put(b, "after", b"failure"));
            let want = seen(&s);
            drop(s);
            let s = open(&dir, "db");
            assert_eq!(seen(&s), want, "{fail_at:?}");
            // A later defragmentation succeeds.
            s.defragment().unwrap();
            assert_eq!(seen(&s), want, "{fail_at:?}");
        }
    }

    #[test]
    fn a_copy_left_by_a_crash_is_removed_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(&dir, "db");
        fill(&s);
        let want = seen(&s);
        drop(s);
        let copy = backend::defrag_path(&dir.path().join("db"));
        fs::write(&copy, b"half a copy").unwrap();
        let s = open(&dir, "db");
        assert!(!copy.exists());
        assert_eq!(seen(&s), want);
    }

    #[test]
    fn a_restore_during_the_copy_starts_it_over() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(&dir, "db");
        fill(&s);
        let other = open(&dir, "other");
        apply(&other, |b| {
            put(b, "restored", b"yes");
            b.set_applied_index(500);
        });
        let snap = dir.path().join("snap");
        other.snapshot_to(&snap).unwrap();
        let mut starts = 0;
        s.defragment_with(&mut |stage| {
            if stage == Stage::Started {
                starts += 1;
                if starts == 1 {
                    s.restore_from(&snap).unwrap();
                }
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(starts, 2);
        assert_eq!(seen(&s), seen(&other));
    }

    #[test]
    fn a_writer_and_readers_run_through_a_defragmentation() {
        let dir = tempfile::tempdir().unwrap();
        let s = Arc::new(open(&dir, "db"));
        fill(&s);
        let done = Arc::new(AtomicBool::new(false));
        let written = Arc::new(AtomicI64::new(0));
        let writer = {
            let (s, done, written) = (s.clone(), done.clone(), written.clone());
            std::thread::spawn(move || {
                // Bounded: at most 20 000 puts, and it stops once the defragmentation ends.
                for i in 0..20_000 {
                    if done.load(std::sync::atomic::Ordering::Acquire) && i > 100 {
                        break;
                    }
                    apply(&s, |b| put(b, &format!("w{i:05}"), &[b'y'; 100]));
                    written.store(i + 1, std::sync::atomic::Ordering::Release);
                }
            })
        };
        let reader = {
            let (s, done) = (s.clone(), done.clone());
            std::thread::spawn(move || {
                let mut reads = 0u64;
                while !done.load(std::sync::atomic::Ordering::Acquire) && reads < 1_000_000 {
                    let r = s.range(&everything()).unwrap();
                    assert!(r.count >= 200);
                    reads += 1;
                }
            })
        };
        // Let some writes land before the copy begins, so some fall in the tail.
        while written.load(std::sync::atomic::Ordering::Acquire) < 50 {
            std::thread::yield_now();
        }
        s.defragment().unwrap();
        done.store(true, std::sync::atomic::Ordering::Release);
        writer.join().unwrap();
        reader.join().unwrap();
        let n = written.load(std::sync::atomic::Ordering::Acquire);
        let count = |s: &Store| {
            s.range(&RangeRequest {
                key: b"w".to_vec(),
                range_end: b"x".to_vec(),
                count_only: true,
                ..Default::default()
            })
            .unwrap()
            .count
        };
        assert_eq!(count(&s), n);
        let want = seen(&s);
        drop(Arc::try_unwrap(s).ok().unwrap());
        let s = open(&dir, "db");
        assert_eq!(count(&s), n);
        assert_eq!(seen(&s), want);
    }
}
