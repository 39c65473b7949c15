//! Apply batches: the writes of one run of the applier, committed as one redb transaction.
//!
//! Each top-level put, delete, transaction or compaction is one etcd operation: if it
//! writes, it takes the next main revision, and its changes take sub revisions 0, 1, ...
//!
//! While a batch is open its changes go into the shared key index at once (readers look up
//! keys at the last committed revision, so they skip them) and into the batch's own list;
//! the backend sees nothing until [`ApplyBatch::commit`] writes the list in one redb write
//! transaction. Reads inside the batch combine the list with a redb snapshot taken when the
//! batch began. Dropping a batch without committing takes its changes back out of the index.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use cairn_proto::etcdserverpb::{
    DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse, RangeRequest, RangeResponse,
    ResponseHeader, TxnRequest, TxnResponse,
};
use cairn_proto::mvccpb::{event::EventType, Event, KeyValue};
use parking_lot::MutexGuard;
use prost::Message;
use redb::{Database, Durability, ReadableDatabase};

use crate::backend::{self, RecordTable, KEY_TABLE, LEASE_TABLE, META_TABLE};
use crate::defrag::{TailOp, TailTable};
use crate::error::MvccError;
use crate::key_index::KeyRange;
use crate::kv_store::{fetch, CompactHash, KvTable, Store};
use crate::range::{execute_range, range_keys, ReadView};
use crate::revision::Revision;
use crate::txn::{apply_txn, check_requests, compare_to_path, TxnOps};
use crate::LeaseLookup;
use cairn_crc32c::Crc32c;

/// One change of the batch.
#[derive(Debug)]
struct Change {
    rev: Revision,
    tombstone: bool,
    /// The record as stored: for a tombstone, only the key.
    kv: KeyValue,
    /// The key's previous record, for the event.
    prev: Option<KeyValue>,
}

/// The writes of one applier run; see the module docs.
pub struct ApplyBatch<'a> {
    store: &'a Store,
    db: Arc<Database>,
    _writer: MutexGuard<'a, ()>,
    /// The committed "key" table as the batch began.
    snapshot: KvTable,
    /// The committed revision when the batch began.
    base_rev: i64,
    /// The revision after the operations applied so far.
    rev: i64,
    /// The compacted revision, including this batch's compactions.
    compact_rev: i64,
    pending_compact: Option<i64>,
    /// In revision order.
    changes: Vec<Change>,
    meta: Vec<(String, Vec<u8>)>,
    /// Lease records to write (`Some`) or delete (`None`), in order.
    leases: Vec<(i64, Option<Vec<u8>>)>,
    /// Records to write (`Some`) or delete (`None`), in order.
    records: Vec<(RecordTable, Vec<u8>, Option<Vec<u8>>)>,
    applied_index: Option<u64>,
    committed: bool,
}

/// A read of the batch's state at `rev`.
struct BatchView<'b, 'a> {
    batch: &'b ApplyBatch<'a>,
    rev: i64,
}

impl ReadView for BatchView<'_, '_> {
    fn rev(&self) -> i64 {
        self.rev
    }

    fn first_rev(&self) -> i64 {
        self.batch.compact_rev
    }

    fn read(
        &self,
        range: KeyRange<'_>,
        at: i64,
        limit: i64,
        count_only: bool,
    ) -> Result<(Vec<KeyValue>, i64), MvccError> {
        let idx = self.batch.store.index.read();
        if count_only {
            return Ok((Vec::new(), idx.tree.count(range, at)));
        }
        let (revs, count) = idx.tree.revisions(range, at, limit);
        drop(idx);
        let kvs = revs
            .into_iter()
            .map(|rev| self.batch.get_kv(rev))
            .collect::<Result<_, _>>()?;
        Ok((kvs, count))
    }
}

/// One operation in progress: the batch and how many changes the operation made.
struct Op<'b, 'a> {
    batch: &'b mut ApplyBatch<'a>,
    writes: i64,
}

impl<'a> ApplyBatch<'a> {
    pub(crate) fn new(
        store: &'a Store,
        writer: MutexGuard<'a, ()>,
        db: Arc<Database>,
    ) -> Result<ApplyBatch<'a>, MvccError> {
        let (base_rev, compact_rev) = {
            let idx = store.index.read();
            (idx.current_rev, idx.compact_rev)
        };
        let snapshot = db.begin_read()?.open_table(KEY_TABLE)?;
        Ok(ApplyBatch {
            store,
            db,
            _writer: writer,
            snapshot,
            base_rev,
            rev: base_rev,
            compact_rev,
            pending_compact: None,
            changes: Vec::new(),
            meta: Vec::new(),
            leases: Vec::new(),
            records: Vec::new(),
            applied_index: None,
            committed: false,
        })
    }

    /// Reads a revision's record from the batch or the snapshot.
    fn get_kv(&self, rev: Revision) -> Result<KeyValue, MvccError> {
        if rev.main > self.base_rev {
            return match self.changes.binary_search_by_key(&rev, |c| c.rev) {
                Ok(i) => Ok(self.changes[i].kv.clone()),
                Err(_) => Err(MvccError::Corrupt(format!(
                    "revision {}_{} missing from batch",
                    rev.main, rev.sub
                ))),
            };
        }
        fetch(&self.snapshot, rev)
    }

    fn op(&mut self) -> Op<'_, 'a> {
        Op {
            batch: self,
            writes: 0,
        }
    }

    /// Ends an operation: keeps its changes if it succeeded, takes them back if not.
    fn finish<T>(
        &mut self,
        start: usize,
        writes: i64,
        result: Result<T, MvccError>,
    ) -> Result<T, MvccError> {
        match result {
            Ok(v) => {
                if writes > 0 {
                    self.rev += 1;
                }
                Ok(v)
            }
            Err(e) => {
                self.rollback_to(start);
                Err(e)
            }
        }
    }

    fn rollback_to(&mut self, start: usize) {
        if self.changes.len() <= start {
            return;
        }
        let mut idx = self.store.index.write();
        for c in self.changes.drain(start..).rev() {
            idx.tree.undo(&c.kv.key, c.tombstone);
        }
    }

    /// Puts a key (etcd's Put): its own revision.
    pub fn put(
        &mut self,
        req: &PutRequest,
        leases: &dyn LeaseLookup,
    ) -> Result<PutResponse, MvccError> {
        if req.lease != 0 && !leases.exists(req.lease) {
            return Err(MvccError::LeaseNotFound);
        }
        let start = self.changes.len();
        let mut op = self.op();
        let result = op.put(req);
        let writes = op.writes;
        self.finish(start, writes, result)
    }

    /// Deletes the live keys in a range (etcd's DeleteRange): one revision if any.
    pub fn delete_range(
        &mut self,
        req: &DeleteRangeRequest,
    ) -> Result<DeleteRangeResponse, MvccError> {
        let start = self.changes.len();
        let mut op = self.op();
        let result = op.delete_range(req);
        let writes = op.writes;
        self.finish(start, writes, result)
    }

    /// Runs a transaction (etcd's Txn): all its writes share one revision.
    pub fn txn(
        &mut self,
        req: &TxnRequest,
        leases: &dyn LeaseLookup,
    ) -> Result<TxnResponse, MvccError> {
        let view = BatchView {
            batch: self,
            rev: self.rev,
        };
        let path = compare_to_path(&view, req);
        check_requests(&view, req, &path, leases)?;
        let start = self.changes.len();
        let mut op = self.op();
        let result = apply_txn(&mut op, req, &path);
        let writes = op.writes;
        let mut resp = self.finish(start, writes, result)?;
        resp.header = Some(ResponseHeader {
            revision: self.rev,
            ..Default::default()
        });
        Ok(resp)
    }

    /// Deletes each of `keys` that is live, all in one revision (a lease revoke's deletes,
    /// as etcd makes them: one delete per key, in the order given).
    pub fn delete_keys(&mut self, keys: &[Vec<u8>]) -> Result<(), MvccError> {
        let start = self.changes.len();
        let mut op = self.op();
        let mut result = Ok(());
        for key in keys {
            let req = DeleteRangeRequest {
                key: key.clone(),
                ..Default::default()
            };
            if let Err(e) = op.delete_range(&req) {
                result = Err(e);
                break;
            }
        }
        let writes = op.writes;
        self.finish(start, writes, result)
    }

    /// The revision after the operations applied so far.
    pub fn revision(&self) -> i64 {
        self.rev
    }

    /// A mark for [`ApplyBatch::key_leases_since`]: the number of changes so far.
    pub fn change_mark(&self) -> usize {
        self.changes.len()
    }

    /// The keys written since `mark`, in revision order, each with the lease it carries now
    /// (0 for a delete or a put without lease).
    pub fn key_leases_since(&self, mark: usize) -> impl Iterator<Item = (&[u8], i64)> + '_ {
        self.changes
            .get(mark..)
            .unwrap_or_default()
            .iter()
            .map(|c| {
                (
                    c.kv.key.as_slice(),
                    if c.tombstone { 0 } else { c.kv.lease },
                )
            })
    }

    /// Records a lease's record (opaque bytes) under its id.
    pub fn put_lease(&mut self, id: i64, record: Vec<u8>) {
        self.leases.push((id, Some(record)));
    }

    /// Removes a lease's record.
    pub fn delete_lease(&mut self, id: i64) {
        self.leases.push((id, None));
    }

    /// Records `value` under `key` in a record table.
    pub fn put_record(&mut self, table: RecordTable, key: &[u8], value: &[u8]) {
        self.records
            .push((table, key.to_vec(), Some(value.to_vec())));
    }

    /// Removes a record.
    pub fn delete_record(&mut self, table: RecordTable, key: &[u8]) {
        self.records.push((table, key.to_vec(), None));
    }

    /// Serves a range request, seeing this batch's writes.
    pub fn range(&mut self, req: &RangeRequest) -> Result<RangeResponse, MvccError> {
        execute_range(
            &BatchView {
                batch: self,
                rev: self.rev,
            },
            req,
        )
    }

    /// Compacts at `rev`: reads before it fail from now on, and history it supersedes is
    /// removed when the batch commits.
    pub fn compact(&mut self, rev: i64) -> Result<(), MvccError> {
        if rev <= self.compact_rev {
            return Err(MvccError::Compacted);
        }
        if rev > self.rev {
            return Err(MvccError::FutureRev);
        }
        self.compact_rev = rev;
        self.pending_compact = Some(rev);
        Ok(())
    }

    /// Records a server meta record, visible through [`Store::meta`] once committed.
    pub fn put_meta(&mut self, key: &str, value: &[u8]) -> Result<(), MvccError> {
        if backend::RESERVED.contains(&key) {
            return Err(MvccError::ReservedMetaKey(key.to_string()));
        }
        self.meta.push((key.to_string(), value.to_vec()));
        Ok(())
    }

    /// Records the Raft index this batch applies up to.
    pub fn set_applied_index(&mut self, index: u64) {
        self.applied_index = Some(index);
    }

    /// Commits the batch and returns its events in revision order. `durable` makes the
    /// commit (and all before it) survive a crash; otherwise a crash may lose it, and the
    /// Raft log replays it.
    ///
    /// If this fails, nothing of the batch is visible and the store is as before it.
    pub fn commit(mut self, durable: bool) -> Result<Vec<Event>, MvccError> {
        let mut txn = self.db.begin_write()?;
        let mut compact_hash = None;
        let mut compaction: Option<crate::CompactionReport> = None;
        // A defragmentation starts and ends only between batches (under the writer lock), so
        // whether one is copying cannot change while this batch commits.
        let mut tail = self.store.tail.lock().is_some().then(Vec::new);
        txn.set_durability(if durable {
            Durability::Immediate
        } else {
            Durability::None
        })?;
        {
            let mut table = txn.open_table(KEY_TABLE)?;
            let mut buf = Vec::new();
            for c in &self.changes {
                buf.clear();
                c.kv.encode(&mut buf)
                    .map_err(|e| MvccError::Corrupt(e.to_string()))?;
                let key = c.rev.to_bytes(c.tombstone);
                table.insert(key.as_slice(), buf.as_slice())?;
                if let Some(tail) = tail.as_mut() {
                    tail.push(TailOp::Put(TailTable::Key, key.to_vec(), buf.clone()));
                }
            }
            let mut meta = txn.open_table(META_TABLE)?;
            if let Some(at) = self.pending_compact {
                let (keep, prev) = {
                    let idx = self.store.index.read();
                    (idx.tree.keep(at), idx.compact_rev)
                };
                let end = Revision::new(at + 1, 0).to_bytes(false);
                // The walk that drops what the compaction supersedes also takes etcd's
                // compaction hash: HashKV at `at` as it was before (see `Store::hash_kv`).
                let mut crc = Crc32c::new();
                crc.update(b"key");
                let walk = std::time::Instant::now();
                let mut removed = 0u64;
                table.retain_in::<&[u8], _>(..end.as_slice(), |k, v| {
                    let Some((r, _)) = Revision::from_bytes(k) else {
                        return false;
                    };
                    if r.main > prev || keep.is_empty() || keep.contains(&r) {
                        crc.update(k);
                        crc.update(v);
                    }
                    let kept = keep.contains(&r);
                    if let (false, Some(tail)) = (kept, tail.as_mut()) {
                        tail.push(TailOp::Delete(TailTable::Key, k.to_vec()));
                    }
                    removed += u64::from(!kept);
                    kept
                })?;
                compaction = Some(crate::CompactionReport {
                    removed,
                    db: walk.elapsed(),
                    index: std::time::Duration::ZERO,
                });
                compact_hash = Some(CompactHash {
                    hash: crc.sum(),
                    compact_revision: prev,
                    revision: at,
                });
                let rev = Revision::new(at, 0).to_bytes(false);
                meta.insert(backend::SCHEDULED_COMPACT_KEY, rev.as_slice())?;
                meta.insert(backend::FINISHED_COMPACT_KEY, rev.as_slice())?;
                if let Some(tail) = tail.as_mut() {
                    for key in [
                        backend::SCHEDULED_COMPACT_KEY,
                        backend::FINISHED_COMPACT_KEY,
                    ] {
                        tail.push(TailOp::Meta(key.to_string(), rev.to_vec()));
                    }
                }
            }
            if let Some(index) = self.applied_index {
                let value = index.to_be_bytes();
                meta.insert(backend::APPLIED_INDEX_KEY, value.as_slice())?;
                if let Some(tail) = tail.as_mut() {
                    tail.push(TailOp::Meta(
                        backend::APPLIED_INDEX_KEY.to_string(),
                        value.to_vec(),
                    ));
                }
            }
            for (k, v) in &self.meta {
                meta.insert(k.as_str(), v.as_slice())?;
                if let Some(tail) = tail.as_mut() {
                    tail.push(TailOp::Meta(k.clone(), v.clone()));
                }
            }
            if !self.leases.is_empty() {
                let mut leases = txn.open_table(LEASE_TABLE)?;
                for (id, record) in &self.leases {
                    let key = id.to_be_bytes();
                    match record {
                        Some(r) => leases.insert(key.as_slice(), r.as_slice())?,
                        None => leases.remove(key.as_slice())?,
                    };
                    if let Some(tail) = tail.as_mut() {
                        tail.push(match record {
                            Some(r) => TailOp::Put(TailTable::Lease, key.to_vec(), r.clone()),
                            None => TailOp::Delete(TailTable::Lease, key.to_vec()),
                        });
                    }
                }
            }
            for (table, key, value) in &self.records {
                let mut t = txn.open_table(table.definition())?;
                match value {
                    Some(v) => t.insert(key.as_slice(), v.as_slice())?,
                    None => t.remove(key.as_slice())?,
                };
                if let Some(tail) = tail.as_mut() {
                    let t = TailTable::Record(*table);
                    tail.push(match value {
                        Some(v) => TailOp::Put(t, key.clone(), v.clone()),
                        None => TailOp::Delete(t, key.clone()),
                    });
                }
            }
        }
        // Readers that pass the compaction check from here on must not begin a snapshot
        // from before the compaction's commit: see the lock notes in kv_store.
        let old_compact = self.pending_compact.map(|at| {
            let mut idx = self.store.index.write();
            std::mem::replace(&mut idx.compact_rev, at)
        });
        let committed = txn.commit();
        self.store.file_size.changed();
        if let Err(e) = committed {
            if let Some(old) = old_compact {
                self.store.index.write().compact_rev = old;
            }
            return Err(e.into());
        }
        {
            let mut idx = self.store.index.write();
            if let Some(at) = self.pending_compact {
                let started = std::time::Instant::now();
                idx.tree.compact(at);
                if let Some(c) = compaction.as_mut() {
                    c.index = started.elapsed();
                }
            }
            idx.current_rev = self.rev;
            self.store.current_rev.store(self.rev, Ordering::Release);
            self.store
                .live_keys
                .store(idx.tree.live_count(), Ordering::Relaxed);
            self.store
                .compact_rev
                .store(idx.compact_rev, Ordering::Release);
        }
        if let Some(index) = self.applied_index {
            self.store.applied_index.store(index, Ordering::Release);
        }
        if let Some(ops) = tail {
            if let Some(t) = self.store.tail.lock().as_mut() {
                t.extend(ops);
            }
        }
        if let Some(h) = compact_hash {
            self.store.record_compact_hash(h);
        }
        if let (Some(c), Some(observe)) = (compaction, self.store.on_compaction.get()) {
            observe(&c);
        }
        if !self.meta.is_empty() {
            let mut cache = self.store.meta.write();
            for (k, v) in self.meta.drain(..) {
                cache.insert(k, v);
            }
        }
        self.committed = true;
        let events = std::mem::take(&mut self.changes)
            .into_iter()
            .map(|c| {
                if c.tombstone {
                    Event {
                        r#type: EventType::Delete as i32,
                        kv: Some(KeyValue {
                            mod_revision: c.rev.main,
                            ..c.kv
                        }),
                        prev_kv: c.prev,
                    }
                } else {
                    Event {
                        r#type: EventType::Put as i32,
                        kv: Some(c.kv),
                        prev_kv: c.prev,
                    }
                }
            })
            .collect();
        Ok(events)
    }
}

impl Drop for ApplyBatch<'_> {
    fn drop(&mut self) {
        if !self.committed {
            self.rollback_to(0);
        }
    }
}

impl Op<'_, '_> {
    /// The revision reads inside this operation see: its own writes included.
    fn read_rev(&self) -> i64 {
        if self.writes > 0 {
            self.batch.rev + 1
        } else {
            self.batch.rev
        }
    }

    fn view(&self) -> BatchView<'_, '_> {
        BatchView {
            batch: self.batch,
            rev: self.read_rev(),
        }
    }

    /// Writes a put at the operation's next sub revision and returns the main revision.
    fn write_put(
        &mut self,
        key: &[u8],
        value: Vec<u8>,
        lease: i64,
        known_prev: Option<Option<KeyValue>>,
    ) -> Result<i64, MvccError> {
        let main = self.batch.rev + 1;
        let rev = Revision::new(main, self.writes);
        let prev_at = {
            let mut idx = self.batch.store.index.write();
            let prev = idx.tree.get(key, main);
            idx.tree.put(key, rev);
            prev
        };
        let (create_revision, version) =
            prev_at.map_or((main, 1), |k| (k.created.main, k.version + 1));
        let kv = KeyValue {
            key: key.to_vec(),
            create_revision,
            mod_revision: main,
            version,
            value,
            lease,
        };
        self.batch.changes.push(Change {
            rev,
            tombstone: false,
            kv,
            prev: None,
        });
        self.writes += 1;
        let prev = match (known_prev, prev_at) {
            (Some(known), _) => known,
            (None, Some(k)) => Some(self.batch.get_kv(k.modified)?),
            (None, None) => None,
        };
        if let Some(c) = self.batch.changes.last_mut() {
            c.prev = prev;
        }
        Ok(main)
    }
}

impl TxnOps for Op<'_, '_> {
    fn range(&mut self, req: &RangeRequest) -> Result<RangeResponse, MvccError> {
        execute_range(&self.view(), req)
    }

    fn put(&mut self, req: &PutRequest) -> Result<PutResponse, MvccError> {
        let needs_prev = req.ignore_value || req.ignore_lease;
        let prev = if needs_prev || req.prev_kv {
            let rr = range_keys(&self.view(), KeyRange::One(&req.key), 0, 0, false)?;
            Some(rr.kvs.into_iter().next())
        } else {
            None
        };
        let existing = prev.as_ref().and_then(|p| p.as_ref());
        let (mut value, mut lease) = (None, req.lease);
        if needs_prev {
            let Some(old) = existing else {
                return Err(MvccError::KeyNotFound);
            };
            if req.ignore_value {
                value = Some(old.value.clone());
            }
            if req.ignore_lease {
                lease = old.lease;
            }
        }
        let value = value.unwrap_or_else(|| req.value.clone());
        let prev_kv = if req.prev_kv { existing.cloned() } else { None };
        let revision = self.write_put(&req.key, value, lease, prev)?;
        Ok(PutResponse {
            header: Some(ResponseHeader {
                revision,
                ..Default::default()
            }),
            prev_kv,
        })
    }

    fn delete_range(&mut self, req: &DeleteRangeRequest) -> Result<DeleteRangeResponse, MvccError> {
        let range = KeyRange::new(&req.key, &req.range_end);
        let at = self.read_rev();
        let main = self.batch.rev + 1;
        let first = self.batch.changes.len();
        let deleted = {
            let mut idx = self.batch.store.index.write();
            let keys = idx.tree.live_keys(range, at);
            for (i, (key, _)) in keys.iter().enumerate() {
                idx.tree
                    .tombstone(key, Revision::new(main, self.writes + i as i64));
            }
            keys
        };
        for (i, (key, _)) in deleted.iter().enumerate() {
            self.batch.changes.push(Change {
                rev: Revision::new(main, self.writes + i as i64),
                tombstone: true,
                kv: KeyValue {
                    key: key.clone(),
                    ..Default::default()
                },
                prev: None,
            });
        }
        self.writes += deleted.len() as i64;
        let mut prev_kvs = Vec::new();
        for (i, (_, modified)) in deleted.iter().enumerate() {
            let prev = self.batch.get_kv(*modified)?;
            if req.prev_kv {
                prev_kvs.push(prev.clone());
            }
            self.batch.changes[first + i].prev = Some(prev);
        }
        let revision = if self.writes > 0 {
            main
        } else {
            self.batch.rev
        };
        Ok(DeleteRangeResponse {
            header: Some(ResponseHeader {
                revision,
                ..Default::default()
            }),
            deleted: deleted.len() as i64,
            prev_kvs,
        })
    }
}
