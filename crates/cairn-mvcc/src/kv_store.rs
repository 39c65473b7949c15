//! The store: opening and rebuilding, reads, hashes, and maintenance of the backend file.
//!
//! # Locks
//!
//! Taken in this order, never the other way round:
//!
//! 1. `defrag` makes defragmentations one at a time (held for the whole of one).
//! 2. `writer` makes apply batches one at a time; a restore, and the start and the
//!    switch-over of a defragmentation, take it too.
//! 3. `index` protects the key index and the current and compacted revisions that go with
//!    it. It is held only while walking the index, never across backend reads, except that
//!    a reader takes the backend handle and begins its redb read transaction under it: a
//!    compaction raises `compact_rev` under this lock before its redb commit, so a reader
//!    that passed the compaction check always reads a snapshot that still holds what it
//!    looks for; and a defragmentation swaps the handle only between batches, so the handle
//!    a reader takes under this lock holds every revision the index names.
//! 4. `db` holds the handle of the backend file, held only to clone or replace it. A read
//!    keeps its clone to the end, so a defragmentation's switch-over never waits for reads
//!    and reads never wait for it.
//! 5. `tail` holds the writes a defragmentation has yet to replay on its copy.

use std::cell::Cell;
use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use cairn_proto::etcdserverpb::{DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse};
use cairn_proto::etcdserverpb::{
    RangeRequest, RangeResponse, ResponseHeader, TxnRequest, TxnResponse,
};
use cairn_proto::mvccpb::KeyValue;
use parking_lot::{Mutex, RwLock};
use prost::Message;
use redb::{Database, Durability, ReadOnlyTable, ReadableDatabase, ReadableTable};

use crate::apply::ApplyBatch;
use crate::backend::{self, RecordTable, KEY_TABLE, LEASE_TABLE, META_TABLE};
use crate::defrag::Tail;
use crate::error::MvccError;
use crate::key_index::{KeyRange, TreeIndex};
use crate::range::{execute_range, ReadView};
use crate::revision::Revision;
use crate::txn::{apply_txn, check_requests, compare_to_path, is_read_only, TxnOps};
use crate::NoLeases;
use cairn_crc32c::Crc32c;

pub(crate) type KvTable = ReadOnlyTable<&'static [u8], &'static [u8]>;

/// The key index and the revisions it answers for.
#[derive(Debug, Default)]
pub(crate) struct IndexState {
    pub tree: TreeIndex,
    /// The last committed revision.
    pub current_rev: i64,
    /// The latest compaction, committed or about to be; -1 before the first, as etcd.
    pub compact_rev: i64,
}

/// Result of [`Store::hash_kv`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashKv {
    /// CRC-32C of the revisions up to `hash_revision`, as etcd's HashKV computes it.
    pub hash: u32,
    /// The store's current revision.
    pub current_revision: i64,
    /// The store's compacted revision; -1 if it never compacted, as etcd reports it.
    pub compact_revision: i64,
    /// The revision hashed up to.
    pub hash_revision: i64,
}

/// The hash a compaction took of what it kept, as etcd 3.5.5 records it: the HashKV at
/// `revision` as it was just before the compaction, so members that compacted at the same
/// revisions can compare it however far they have moved since.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactHash {
    pub hash: u32,
    /// The compaction before this one (-1 if none), the lower end of what was hashed.
    pub compact_revision: i64,
    /// The revision compacted at.
    pub revision: i64,
}

/// The compaction hashes kept, newest last (etcd keeps 10).
const COMPACT_HASHES_KEPT: usize = 10;

/// The revisioned key-value store. Shared between the applier and readers through an `Arc`.
pub struct Store {
    pub(crate) path: PathBuf,
    pub(crate) defrag: Mutex<()>,
    pub(crate) writer: Mutex<()>,
    pub(crate) db: RwLock<Arc<Database>>,
    /// Set while a defragmentation copies the backend; see `defrag`.
    pub(crate) tail: Mutex<Option<Tail>>,
    pub(crate) index: RwLock<IndexState>,
    /// Copies of `index`'s revisions, for lock-free getters.
    pub(crate) current_rev: AtomicI64,
    pub(crate) compact_rev: AtomicI64,
    pub(crate) applied_index: AtomicU64,
    /// The index's live key count as of the last commit (etcd's `keys_total`).
    pub(crate) live_keys: AtomicI64,
    /// Read transactions open now; see [`Store::open_read_transactions`].
    pub(crate) open_reads: AtomicI64,
    /// Bytes in use as last measured (`size::NOT_MEASURED` before); see `size`.
    pub(crate) size_in_use: AtomicU64,
    /// The backend file's size as of the last commit; see `size`.
    pub(crate) file_size: crate::size::FileSize,
    /// The server's meta records as last committed.
    pub(crate) meta: RwLock<HashMap<String, Vec<u8>>>,
    /// The hashes of the last compactions since the store opened, oldest first. In memory
    /// only, as etcd's.
    pub(crate) compact_hashes: Mutex<std::collections::VecDeque<CompactHash>>,
    /// Told about each compaction once it is committed (the server's metrics).
    pub(crate) on_compaction: std::sync::OnceLock<CompactionObserver>,
}

/// What one compaction did, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactionReport {
    /// Revisions removed from the backend.
    pub removed: u64,
    /// How long the walk over the backend's history took (the writer is held throughout:
    /// the whole walk is one pause).
    pub db: std::time::Duration,
    /// How long compacting the in-memory key index took.
    pub index: std::time::Duration,
}

/// A callback told each [`CompactionReport`].
pub type CompactionObserver = Arc<dyn Fn(&CompactionReport) + Send + Sync>;

/// Reads a revision's record from a "key" table.
pub(crate) fn fetch(table: &KvTable, rev: Revision) -> Result<KeyValue, MvccError> {
    let guard = table
        .get(rev.to_bytes(false).as_slice())?
        .ok_or_else(|| MvccError::Corrupt(format!("revision {}_{} missing", rev.main, rev.sub)))?;
    Ok(KeyValue::decode(guard.value())?)
}

/// A read of the committed state at one revision.
struct SnapshotView<'s> {
    index: &'s RwLock<IndexState>,
    table: KvTable,
    /// The file `table` reads, kept open while the view lives.
    _db: Arc<Database>,
    _open: OpenRead<'s>,
    rev: i64,
    compact_rev: i64,
    /// Set when a compaction newer than the view made the index unable to answer for it;
    /// the read is then retried with a new view.
    raced: Cell<bool>,
}

impl ReadView for SnapshotView<'_> {
    fn rev(&self) -> i64 {
        self.rev
    }

    fn first_rev(&self) -> i64 {
        self.compact_rev
    }

    fn read(
        &self,
        range: KeyRange<'_>,
        at: i64,
        limit: i64,
        count_only: bool,
    ) -> Result<(Vec<KeyValue>, i64), MvccError> {
        let idx = self.index.read();
        if at < idx.compact_rev {
            // A compaction landed after this view began and may have trimmed the index
            // below `at`. The view's snapshot still holds the data, but the index cannot
            // say where.
            self.raced.set(at >= self.compact_rev);
            return Err(MvccError::Compacted);
        }
        if count_only {
            return Ok((Vec::new(), idx.tree.count(range, at)));
        }
        let (revs, count) = idx.tree.revisions(range, at, limit);
        drop(idx);
        let kvs = revs
            .into_iter()
            .map(|rev| fetch(&self.table, rev))
            .collect::<Result<_, _>>()?;
        Ok((kvs, count))
    }
}

/// The operations of a read-only transaction.
struct ReadOnlyOps<'v>(&'v dyn ReadView);

impl TxnOps for ReadOnlyOps<'_> {
    fn range(&mut self, req: &RangeRequest) -> Result<RangeResponse, MvccError> {
        execute_range(self.0, req)
    }

    fn put(&mut self, _: &PutRequest) -> Result<PutResponse, MvccError> {
        Err(MvccError::ReadOnlyTxnWrites)
    }

    fn delete_range(&mut self, _: &DeleteRangeRequest) -> Result<DeleteRangeResponse, MvccError> {
        Err(MvccError::ReadOnlyTxnWrites)
    }
}

/// What a backend file holds, read into memory at open or restore.
struct Loaded {
    index: IndexState,
    applied: u64,
    meta: HashMap<String, Vec<u8>>,
}

impl Loaded {
    /// Scans the backend and rebuilds the key index and the meta records.
    fn read(db: &Database) -> Result<Loaded, MvccError> {
        let mut tree = TreeIndex::default();
        let mut max_main = 0;
        let mut meta = HashMap::new();
        let mut applied = 0;
        // A fresh etcd store is at revision 1 and has compacted nothing (-1).
        let mut compact = -1;
        {
            let txn = db.begin_read()?;
            let keys = txn.open_table(KEY_TABLE)?;
            for entry in keys.iter()? {
                let (k, v) = entry?;
                let (rev, tombstone) = Revision::from_bytes(k.value())
                    .ok_or_else(|| MvccError::Corrupt("malformed revision key".into()))?;
                let kv = KeyValue::decode(v.value())?;
                tree.restore(&kv.key, rev, tombstone, kv.create_revision, kv.version);
                max_main = max_main.max(rev.main);
            }
            let metas = txn.open_table(META_TABLE)?;
            for entry in metas.iter()? {
                let (k, v) = entry?;
                match k.value() {
                    backend::APPLIED_INDEX_KEY => {
                        applied = backend::decode_u64(v.value())
                            .ok_or_else(|| MvccError::Corrupt("malformed applied index".into()))?;
                    }
                    backend::SCHEDULED_COMPACT_KEY => {
                        compact = backend::decode_compact_rev(v.value())
                            .ok_or_else(|| MvccError::Corrupt("malformed compaction".into()))?;
                    }
                    key if backend::RESERVED.contains(&key) => {}
                    key => {
                        meta.insert(key.to_string(), v.value().to_vec());
                    }
                }
            }
        }
        let current = max_main.max(compact).max(1);
        Ok(Loaded {
            index: IndexState {
                tree,
                current_rev: current,
                compact_rev: compact,
            },
            applied,
            meta,
        })
    }
}

impl Store {
    /// Opens the backend at `path`, creating it if missing, and rebuilds the key index.
    pub fn open(path: &Path) -> Result<Store, MvccError> {
        // A defragmentation's copy that a crash left behind: the backend is the truth.
        let stale = backend::defrag_path(path);
        if stale.exists() {
            fs::remove_file(&stale)?;
        }
        let db = backend::open(path)?;
        let loaded = Loaded::read(&db)?;
        Ok(Store {
            path: path.to_path_buf(),
            defrag: Mutex::new(()),
            writer: Mutex::new(()),
            db: RwLock::new(Arc::new(db)),
            tail: Mutex::new(None),
            current_rev: AtomicI64::new(loaded.index.current_rev),
            compact_rev: AtomicI64::new(loaded.index.compact_rev),
            applied_index: AtomicU64::new(loaded.applied),
            live_keys: AtomicI64::new(loaded.index.tree.live_count()),
            open_reads: AtomicI64::new(0),
            index: RwLock::new(loaded.index),
            size_in_use: AtomicU64::new(crate::size::NOT_MEASURED),
            file_size: crate::size::FileSize::default(),
            meta: RwLock::new(loaded.meta),
            compact_hashes: Mutex::new(std::collections::VecDeque::new()),
            on_compaction: std::sync::OnceLock::new(),
        })
    }

    /// Sets the callback told about each compaction (once; later calls are ignored).
    pub fn set_compaction_observer(&self, observer: CompactionObserver) {
        let _ = self.on_compaction.set(observer);
    }

    /// Replaces everything in the store with the contents of the backend file at
    /// `snapshot` (a Raft snapshot from the leader, or a restore), durably, and rebuilds the
    /// key index. Readers see the old state or the new one, never a mix.
    pub fn restore_from(&self, snapshot: &Path) -> Result<(), MvccError> {
        self.restore_keeping(snapshot, &[], None)
    }

    /// As [`Self::restore_from`], and in the same transaction sets the meta records `keep`
    /// (this store's own, such as its member id, over the snapshot's) and the applied index:
    /// a crash leaves the old state or all of the new one.
    pub fn restore_keeping(
        &self,
        snapshot: &Path,
        keep: &[(&str, &[u8])],
        applied_index: Option<u64>,
    ) -> Result<(), MvccError> {
        let src = backend::open(snapshot)?;
        let _writer = self.writer.lock();
        if let Some(tail) = self.tail.lock().as_mut() {
            tail.set_stale();
        }
        let db = self.handle();
        let read = src.begin_read()?;
        let mut txn = db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        txn.delete_table(KEY_TABLE)?;
        txn.delete_table(META_TABLE)?;
        txn.delete_table(LEASE_TABLE)?;
        for t in RecordTable::ALL {
            txn.delete_table(t.definition())?;
        }
        copy_keys(&read, &txn)?;
        copy_all_but_keys(&read, &txn)?;
        {
            let mut meta = txn.open_table(META_TABLE)?;
            for (k, v) in keep {
                meta.insert(*k, *v)?;
            }
            if let Some(index) = applied_index {
                meta.insert(backend::APPLIED_INDEX_KEY, index.to_be_bytes().as_slice())?;
            }
        }
        // Readers begin their snapshots under the index lock: none sees the new data with
        // the old index.
        let mut index = self.index.write();
        let committed = txn.commit();
        self.file_size.changed();
        committed?;
        let loaded = Loaded::read(&db)?;
        self.current_rev
            .store(loaded.index.current_rev, Ordering::Release);
        self.compact_rev
            .store(loaded.index.compact_rev, Ordering::Release);
        self.applied_index.store(loaded.applied, Ordering::Release);
        self.live_keys
            .store(loaded.index.tree.live_count(), Ordering::Relaxed);
        *index = loaded.index;
        *self.meta.write() = loaded.meta;
        // They were taken of the data just replaced.
        self.compact_hashes.lock().clear();
        Ok(())
    }

    /// The handle of the backend file as it is now. To read at the index's revisions, take
    /// it under the `index` lock (see the lock notes).
    pub(crate) fn handle(&self) -> Arc<Database> {
        self.db.read().clone()
    }

    /// Begins a read transaction on the backend file as it is now, holding that file's
    /// handle: a defragment that switches files meanwhile closes the old one only after the
    /// last such read ends (a redb read transaction alone does not keep its file open; its
    /// reads fail once the file's last handle is dropped).
    pub(crate) fn begin_read(&self) -> Result<FileRead<'_>, MvccError> {
        let db = self.handle();
        let txn = db.begin_read()?;
        Ok(FileRead {
            txn,
            db,
            open: OpenRead::new(&self.open_reads),
        })
    }

    /// How many read transactions on the backend are open now: ranges, read-only txns,
    /// hashes, history reads for watchers, snapshot copies, defragment's copy and size
    /// measurements, each from its begin until its last table is let go.
    pub fn open_read_transactions(&self) -> i64 {
        self.open_reads.load(Ordering::Relaxed)
    }

    /// Begins a view of the committed state.
    fn view(&self) -> Result<SnapshotView<'_>, MvccError> {
        let idx = self.index.read();
        let (rev, compact_rev) = (idx.current_rev, idx.compact_rev);
        let read = self.begin_read()?;
        drop(idx);
        let table = read.txn.open_table(KEY_TABLE)?;
        Ok(SnapshotView {
            index: &self.index,
            table,
            _db: read.db,
            _open: read.open,
            rev,
            compact_rev,
            raced: Cell::new(false),
        })
    }

    /// Serves a range request at the latest committed revision (or `req.revision`).
    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse, MvccError> {
        loop {
            let view = self.view()?;
            match execute_range(&view, req) {
                Err(MvccError::Compacted) if view.raced.get() => continue,
                result => return result,
            }
        }
    }

    /// Runs a transaction that writes nothing (etcd serves these without Raft) against the
    /// latest committed revision. Errors with `ReadOnlyTxnWrites` if it has a put or delete.
    pub fn txn_read_only(&self, req: &TxnRequest) -> Result<TxnResponse, MvccError> {
        if !is_read_only(req) {
            return Err(MvccError::ReadOnlyTxnWrites);
        }
        loop {
            let view = self.view()?;
            let path = compare_to_path(&view, req);
            let result = check_requests(&view, req, &path, &NoLeases)
                .and_then(|()| apply_txn(&mut ReadOnlyOps(&view), req, &path));
            if view.raced.get() {
                // A compare may have failed on the race too: start over.
                continue;
            }
            let mut resp = result?;
            resp.header = Some(ResponseHeader {
                revision: view.rev,
                ..Default::default()
            });
            return Ok(resp);
        }
    }

    /// How many keys are live at the last committed revision (deleted keys whose history
    /// waits for compaction are not counted). Read without a lock.
    pub fn keys_total(&self) -> i64 {
        self.live_keys.load(Ordering::Relaxed)
    }

    /// The last committed revision.
    pub fn current_revision(&self) -> i64 {
        self.current_rev.load(Ordering::Acquire)
    }

    /// The latest compaction's revision, 0 if none.
    pub fn compact_revision(&self) -> i64 {
        self.compact_rev.load(Ordering::Acquire).max(0)
    }

    /// The Raft index of the last committed batch.
    pub fn applied_index(&self) -> u64 {
        self.applied_index.load(Ordering::Acquire)
    }

    /// A server meta record as last committed.
    pub fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, MvccError> {
        Ok(self.meta.read().get(key).cloned())
    }

    /// Every record of a record table as last committed, in key order.
    pub fn records(&self, table: RecordTable) -> Result<Vec<Record>, MvccError> {
        let txn = self.begin_read()?;
        let Some(t) = backend::optional_table(&txn, table.definition())? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for entry in t.iter()? {
            let (k, v) = entry?;
            out.push((k.value().to_vec(), v.value().to_vec()));
        }
        Ok(out)
    }

    /// Every lease record as last committed, in id byte order: (id, record).
    pub fn leases(&self) -> Result<Vec<(i64, Vec<u8>)>, MvccError> {
        let txn = self.begin_read()?;
        let Some(table) = backend::lease_table(&txn)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (k, v) = entry?;
            let id = k
                .value()
                .try_into()
                .map(i64::from_be_bytes)
                .map_err(|_| MvccError::Corrupt("malformed lease id".into()))?;
            out.push((id, v.value().to_vec()));
        }
        Ok(out)
    }

    /// Begins the next apply batch; waits while another batch or a defragmentation runs.
    ///
    /// The thread holding a batch must not call [`Store::defragment`] (it would wait for
    /// the batch forever).
    pub fn begin_apply(&self) -> Result<ApplyBatch<'_>, MvccError> {
        let writer = self.writer.lock();
        let db = self.handle();
        ApplyBatch::new(self, writer, db)
    }

    /// CRC-32C over every table: its name, then each key and value in order.
    pub fn hash(&self) -> Result<u32, MvccError> {
        let txn = self.begin_read()?;
        let mut crc = Crc32c::new();
        crc.update(b"key");
        for entry in txn.open_table(KEY_TABLE)?.iter()? {
            let (k, v) = entry?;
            crc.update(k.value());
            crc.update(v.value());
        }
        crc.update(b"meta");
        for entry in txn.open_table(META_TABLE)?.iter()? {
            let (k, v) = entry?;
            crc.update(k.value().as_bytes());
            crc.update(v.value());
        }
        // A backend that predates the lease table hashes as one whose table is empty.
        crc.update(b"lease");
        if let Some(table) = backend::lease_table(&txn)? {
            for entry in table.iter()? {
                let (k, v) = entry?;
                crc.update(k.value());
                crc.update(v.value());
            }
        }
        // Record tables never written hash as nothing at all, so a store without auth
        // records hashes as before they existed.
        for t in RecordTable::ALL {
            if let Some(table) = backend::optional_table(&txn, t.definition())? {
                crc.update(t.name().as_bytes());
                for entry in table.iter()? {
                    let (k, v) = entry?;
                    crc.update(k.value());
                    crc.update(v.value());
                }
            }
        }
        Ok(crc.sum())
    }

    /// etcd's HashKV: a CRC-32C of the "key" table up to `rev` (0 for current), skipping
    /// revisions a compaction has superseded, so members that compacted at different
    /// times agree.
    pub fn hash_kv(&self, rev: i64) -> Result<HashKv, MvccError> {
        let idx = self.index.read();
        let (current, compact) = (idx.current_rev, idx.compact_rev);
        if rev > 0 && rev < compact {
            return Err(MvccError::Compacted);
        }
        if rev > 0 && rev > current {
            return Err(MvccError::FutureRev);
        }
        let rev = if rev == 0 { current } else { rev };
        let keep = idx.tree.keep(rev);
        let txn = self.begin_read()?;
        drop(idx);
        let table = txn.open_table(KEY_TABLE)?;
        let mut crc = Crc32c::new();
        crc.update(b"key");
        let upper = Revision::new(rev.saturating_add(1), 0).to_bytes(false);
        for entry in table.range::<&[u8]>(..upper.as_slice())? {
            let (k, v) = entry?;
            let (r, _) = Revision::from_bytes(k.value())
                .ok_or_else(|| MvccError::Corrupt("malformed revision key".into()))?;
            if r.main <= compact && !keep.is_empty() && !keep.contains(&r) {
                continue;
            }
            crc.update(k.value());
            crc.update(v.value());
        }
        Ok(HashKv {
            hash: crc.sum(),
            current_revision: current,
            compact_revision: compact,
            hash_revision: rev,
        })
    }

    /// The hash a peer compares with its own at `rev`: the one taken by this store's
    /// compaction at `rev` if it made one since it opened, else [`Self::hash_kv`] (etcd
    /// 3.5.5's HashByRev).
    pub fn hash_by_rev(&self, rev: i64) -> Result<HashKv, MvccError> {
        let kept = self
            .compact_hashes
            .lock()
            .iter()
            .find(|h| h.revision == rev && rev > 0)
            .copied();
        match kept {
            Some(h) => Ok(HashKv {
                hash: h.hash,
                current_revision: self.current_revision(),
                compact_revision: h.compact_revision,
                hash_revision: h.revision,
            }),
            None => self.hash_kv(rev),
        }
    }

    /// The hashes of the last compactions made since the store opened, newest first.
    pub fn compact_hashes(&self) -> Vec<CompactHash> {
        self.compact_hashes.lock().iter().rev().copied().collect()
    }

    pub(crate) fn record_compact_hash(&self, h: CompactHash) {
        let mut kept = self.compact_hashes.lock();
        if kept.len() == COMPACT_HASHES_KEPT {
            kept.pop_front();
        }
        kept.push_back(h);
    }

    /// The backend file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes a consistent copy of every table to a new backend file at `path`.
    pub fn snapshot_to(&self, path: &Path) -> Result<(), MvccError> {
        if path.exists() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                format!("{} already exists", path.display()),
            )
            .into());
        }
        let src = self.begin_read()?;
        let out = Database::create(path)?;
        let mut txn = out.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        copy_keys(&src, &txn)?;
        copy_all_but_keys(&src, &txn)?;
        txn.commit()?;
        drop(out);
        backend::sync_parent(path)
    }
}

/// One record of a record table: key and value.
pub type Record = (Vec<u8>, Vec<u8>);

/// Copies the key table of `src` into `txn`.
fn copy_keys(src: &redb::ReadTransaction, txn: &redb::WriteTransaction) -> Result<(), MvccError> {
    let mut keys = txn.open_table(KEY_TABLE)?;
    for entry in src.open_table(KEY_TABLE)?.iter()? {
        let (k, v) = entry?;
        keys.insert(k.value(), v.value())?;
    }
    Ok(())
}

/// Copies every table of `src` but the key table into `txn`: meta, leases (an older backend
/// may have none) and the record tables it has; opens the key table in `txn`, so that it
/// exists even when left empty.
pub(crate) fn copy_all_but_keys(
    src: &redb::ReadTransaction,
    txn: &redb::WriteTransaction,
) -> Result<(), MvccError> {
    txn.open_table(KEY_TABLE)?;
    let mut meta = txn.open_table(META_TABLE)?;
    for entry in src.open_table(META_TABLE)?.iter()? {
        let (k, v) = entry?;
        meta.insert(k.value(), v.value())?;
    }
    let mut leases = txn.open_table(LEASE_TABLE)?;
    if let Some(table) = backend::lease_table(src)? {
        for entry in table.iter()? {
            let (k, v) = entry?;
            leases.insert(k.value(), v.value())?;
        }
    }
    for t in RecordTable::ALL {
        if let Some(table) = backend::optional_table(src, t.definition())? {
            let mut out = txn.open_table(t.definition())?;
            for entry in table.iter()? {
                let (k, v) = entry?;
                out.insert(k.value(), v.value())?;
            }
        }
    }
    Ok(())
}

/// A read transaction and the handle of the file it reads (see [`Store::begin_read`]).
pub(crate) struct FileRead<'s> {
    pub(crate) txn: redb::ReadTransaction,
    pub(crate) db: Arc<Database>,
    pub(crate) open: OpenRead<'s>,
}

/// Counts one read transaction in the store's open reads while it lives.
pub(crate) struct OpenRead<'s>(&'s AtomicI64);

impl<'s> OpenRead<'s> {
    fn new(count: &'s AtomicI64) -> OpenRead<'s> {
        count.fetch_add(1, Ordering::Relaxed);
        OpenRead(count)
    }
}

impl Drop for OpenRead<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl std::ops::Deref for FileRead<'_> {
    type Target = redb::ReadTransaction;

    fn deref(&self) -> &redb::ReadTransaction {
        &self.txn
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use cairn_proto::etcdserverpb::{PutRequest, RangeRequest};

    use super::*;
    use crate::NoLeases;

    #[test]
    fn open_read_transactions_count_reads_while_they_live() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("db")).unwrap();
        let mut b = s.begin_apply().unwrap();
        let put = PutRequest {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            ..Default::default()
        };
        b.put(&put, &NoLeases).unwrap();
        b.commit(false).unwrap();
        assert_eq!(s.open_read_transactions(), 0);
        let read = s.begin_read().unwrap();
        let view = s.view().unwrap();
        assert_eq!(s.open_read_transactions(), 2);
        drop(read);
        assert_eq!(s.open_read_transactions(), 1);
        drop(view);
        assert_eq!(s.open_read_transactions(), 0);
        let all = RangeRequest {
            key: vec![0],
            range_end: vec![0],
            ..Default::default()
        };
        assert_eq!(s.range(&all).unwrap().count, 1);
        s.hash_kv(0).unwrap();
        let limits = crate::HistoryLimits {
            events: 10,
            revs: 10,
            bytes: 1 << 20,
        };
        assert_eq!(s.history(1, limits, true).unwrap().events.len(), 1);
        s.snapshot_to(&dir.path().join("snap")).unwrap();
        s.measure_in_use().unwrap();
        s.defragment().unwrap();
        assert_eq!(
            s.open_read_transactions(),
            0,
            "each read ends with its call"
        );
    }
}
