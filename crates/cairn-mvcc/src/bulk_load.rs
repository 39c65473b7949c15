//! Building a whole backend file from rows read elsewhere: the import of etcd's backend
//! (a snapshot file or a member's `db`), whose `key` bucket holds the same bytes as the
//! `key` table.
//!
//! A [`BulkLoad`] writes into a new file beside the target path and renames it into place
//! only when [`BulkLoad::finish`] has made everything durable, so a failed or interrupted
//! import leaves nothing at the target. Rows are written in chunks of bounded size, one redb
//! transaction each, so memory does not grow with the backend; the key index it rebuilds on
//! the way (to know what a compaction keeps) holds one entry per key, as a running store's.
//!
//! For example, importing etcd's rows `1_0 put a`, `2_0 put a`, `3_0 tombstone a`,
//! `4_0 put b` with `compact_at = Some(3)` keeps `4_0` only: `a`'s last revision at 3 is
//! its tombstone, which compaction drops with the history before it.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use cairn_proto::mvccpb::KeyValue;
use prost::Message;
use redb::{Database, Durability};

use crate::backend::{self, RecordTable, KEY_TABLE, LEASE_TABLE, META_TABLE};
use crate::error::MvccError;
use crate::key_index::TreeIndex;
use crate::revision::Revision;

/// Rows buffered before they are written, counted by their bytes.
const CHUNK_BYTES: usize = 16 << 20;
/// redb's page cache while building (its default, 1 GiB, would let a large import's
/// written pages fill memory).
const CACHE_BYTES: usize = 64 << 20;

/// One buffered write.
enum Row {
    Key(Vec<u8>, Vec<u8>),
    Lease(i64, Vec<u8>),
    Record(RecordTable, Vec<u8>, Vec<u8>),
    Meta(String, Vec<u8>),
}

/// What a finished [`BulkLoad`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BulkLoadSummary {
    /// Rows of the `key` table given, and kept after the compaction.
    pub key_rows: u64,
    pub key_rows_kept: u64,
    /// The store's current revision once opened.
    pub current_revision: i64,
    /// The compaction recorded (-1 for none).
    pub compact_revision: i64,
}

/// A backend file being built; see the module docs.
pub struct BulkLoad {
    path: PathBuf,
    tmp: PathBuf,
    /// Taken by [`BulkLoad::finish`] to close the file before the rename.
    db: Option<Database>,
    pending: Vec<Row>,
    pending_bytes: usize,
    tree: TreeIndex,
    last_rev: Option<Revision>,
    max_main: i64,
    key_rows: u64,
}

impl BulkLoad {
    /// Starts a backend that will be at `path`, which must not exist.
    pub fn create(path: &Path) -> Result<BulkLoad, MvccError> {
        if path.exists() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                format!("{} already exists", path.display()),
            )
            .into());
        }
        let tmp = backend::temp_path(path);
        if tmp.exists() {
            fs::remove_file(&tmp)?;
        }
        let db = redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create(&tmp)?;
        backend::init_tables(&db)?;
        Ok(BulkLoad {
            path: path.to_path_buf(),
            tmp,
            db: Some(db),
            pending: Vec::new(),
            pending_bytes: 0,
            tree: TreeIndex::default(),
            last_rev: None,
            max_main: 0,
            key_rows: 0,
        })
    }

    /// Adds one row of the `key` table: a revision as etcd encodes it (main revision, `_`,
    /// sub revision, each eight bytes big-endian, then `t` for a tombstone) and a
    /// `mvccpb.KeyValue`. Rows must come in revision order.
    pub fn put_key_row(&mut self, rev: &[u8], value: &[u8]) -> Result<(), MvccError> {
        let printable = || String::from_utf8_lossy(rev).into_owned();
        let (r, tombstone) = Revision::from_bytes(rev).ok_or_else(|| {
            MvccError::Corrupt(format!("malformed revision key {:?}", printable()))
        })?;
        if r.main < 1 || r.sub < 0 {
            return Err(MvccError::Corrupt(format!(
                "revision {}_{} out of range",
                r.main, r.sub
            )));
        }
        if self.last_rev.is_some_and(|last| last >= r) {
            return Err(MvccError::Corrupt(format!(
                "revision {}_{} out of order",
                r.main, r.sub
            )));
        }
        let kv = KeyValue::decode(value).map_err(|e| {
            MvccError::Corrupt(format!(
                "revision {}_{}: undecodable value: {e}",
                r.main, r.sub
            ))
        })?;
        if kv.key.is_empty() {
            return Err(MvccError::Corrupt(format!(
                "revision {}_{} has an empty key",
                r.main, r.sub
            )));
        }
        if !tombstone && (kv.mod_revision != r.main || kv.create_revision < 1 || kv.version < 1) {
            return Err(MvccError::Corrupt(format!(
                "revision {}_{}: value says mod revision {}, create revision {}, version {}",
                r.main, r.sub, kv.mod_revision, kv.create_revision, kv.version
            )));
        }
        self.tree
            .restore(&kv.key, r, tombstone, kv.create_revision, kv.version);
        self.last_rev = Some(r);
        self.max_main = self.max_main.max(r.main);
        self.key_rows += 1;
        self.push(Row::Key(rev.to_vec(), value.to_vec()))
    }

    /// Adds a lease record under its id.
    pub fn put_lease(&mut self, id: i64, record: &[u8]) -> Result<(), MvccError> {
        self.push(Row::Lease(id, record.to_vec()))
    }

    /// Adds a record to a record table.
    pub fn put_record(
        &mut self,
        table: RecordTable,
        key: &[u8],
        value: &[u8],
    ) -> Result<(), MvccError> {
        self.push(Row::Record(table, key.to_vec(), value.to_vec()))
    }

    /// Adds a server meta record (see [`crate::ApplyBatch::put_meta`]).
    pub fn put_meta(&mut self, key: &str, value: &[u8]) -> Result<(), MvccError> {
        if backend::RESERVED.contains(&key) {
            return Err(MvccError::ReservedMetaKey(key.to_string()));
        }
        self.push(Row::Meta(key.to_string(), value.to_vec()))
    }

    fn push(&mut self, row: Row) -> Result<(), MvccError> {
        self.pending_bytes += match &row {
            Row::Key(k, v) | Row::Record(_, k, v) => k.len() + v.len(),
            Row::Lease(_, v) => 8 + v.len(),
            Row::Meta(k, v) => k.len() + v.len(),
        };
        self.pending.push(row);
        if self.pending_bytes >= CHUNK_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes the buffered rows in one transaction (not yet durable).
    fn flush(&mut self) -> Result<(), MvccError> {
        let Some(db) = &self.db else {
            return Ok(());
        };
        let mut txn = db.begin_write()?;
        txn.set_durability(Durability::None)?;
        {
            let mut keys = txn.open_table(KEY_TABLE)?;
            let mut leases = txn.open_table(LEASE_TABLE)?;
            let mut meta = txn.open_table(META_TABLE)?;
            for row in self.pending.drain(..) {
                match row {
                    Row::Key(k, v) => {
                        keys.insert(k.as_slice(), v.as_slice())?;
                    }
                    Row::Lease(id, v) => {
                        leases.insert(id.to_be_bytes().as_slice(), v.as_slice())?;
                    }
                    Row::Record(t, k, v) => {
                        txn.open_table(t.definition())?
                            .insert(k.as_slice(), v.as_slice())?;
                    }
                    Row::Meta(k, v) => {
                        meta.insert(k.as_str(), v.as_slice())?;
                    }
                }
            }
        }
        txn.commit()?;
        self.pending_bytes = 0;
        Ok(())
    }

    /// Writes what remains, compacts at `compact_at` (dropping the history it supersedes,
    /// as a compaction would), records the applied index, makes the file durable and moves
    /// it to its path.
    ///
    /// `compact_at` may lie past the last row (a revision bump): the store then opens at
    /// that revision, with every key at its last revision and nothing older readable.
    pub fn finish(
        mut self,
        compact_at: Option<i64>,
        applied_index: u64,
    ) -> Result<BulkLoadSummary, MvccError> {
        self.flush()?;
        let mut kept = self.key_rows;
        let Some(db) = self.db.take() else {
            return Err(MvccError::Corrupt("bulk load already finished".into()));
        };
        let mut txn = db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        {
            let mut meta = txn.open_table(META_TABLE)?;
            if let Some(at) = compact_at {
                let keep: HashSet<Revision> = self.tree.keep(at);
                let end = Revision::new(at.saturating_add(1), 0).to_bytes(false);
                let mut keys = txn.open_table(KEY_TABLE)?;
                keys.retain_in::<&[u8], _>(..end.as_slice(), |k, _| {
                    let stays = Revision::from_bytes(k).is_some_and(|(r, _)| keep.contains(&r));
                    if !stays {
                        kept -= 1;
                    }
                    stays
                })?;
                let rev = Revision::new(at, 0).to_bytes(false);
                meta.insert(backend::SCHEDULED_COMPACT_KEY, rev.as_slice())?;
                meta.insert(backend::FINISHED_COMPACT_KEY, rev.as_slice())?;
            }
            meta.insert(
                backend::APPLIED_INDEX_KEY,
                applied_index.to_be_bytes().as_slice(),
            )?;
        }
        txn.commit()?;
        drop(db);
        fs::rename(&self.tmp, &self.path)?;
        backend::sync_parent(&self.path)?;
        let compact = compact_at.unwrap_or(-1);
        Ok(BulkLoadSummary {
            key_rows: self.key_rows,
            key_rows_kept: kept,
            current_revision: self.max_main.max(compact).max(1),
            compact_revision: compact,
        })
    }
}

impl Drop for BulkLoad {
    fn drop(&mut self) {
        // An unfinished build leaves nothing behind; a finished one was renamed away.
        let _ = fs::remove_file(&self.tmp);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use cairn_proto::etcdserverpb::RangeRequest;

    use super::*;
    use crate::Store;

    fn put(key: &str, main: i64, create: i64, version: i64, value: &str) -> (Vec<u8>, Vec<u8>) {
        let kv = KeyValue {
            key: key.into(),
            create_revision: create,
            mod_revision: main,
            version,
            value: value.into(),
            lease: 0,
        };
        (Revision::new(main, 0).to_bytes(false), kv.encode_to_vec())
    }

    fn tombstone(key: &str, main: i64) -> (Vec<u8>, Vec<u8>) {
        let kv = KeyValue {
            key: key.into(),
            ..Default::default()
        };
        (Revision::new(main, 0).to_bytes(true), kv.encode_to_vec())
    }

    fn rows() -> Vec<(Vec<u8>, Vec<u8>)> {
        vec![
            put("a", 2, 2, 1, "1"),
            put("a", 3, 2, 2, "2"),
            tombstone("a", 4),
            put("b", 5, 5, 1, "x"),
        ]
    }

    fn get(store: &Store, key: &str, rev: i64) -> Result<Vec<KeyValue>, MvccError> {
        store
            .range(&RangeRequest {
                key: key.into(),
                revision: rev,
                ..Default::default()
            })
            .map(|r| r.kvs)
    }

    #[test]
    fn an_imported_backend_opens_at_the_rows_revision_with_their_history() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let mut load = BulkLoad::create(&path).unwrap();
        for (k, v) in rows() {
            load.put_key_row(&k, &v).unwrap();
        }
        load.put_meta("member_id", &7u64.to_be_bytes()).unwrap();
        let summary = load.finish(None, 1).unwrap();
        assert_eq!(summary.current_revision, 5);
        assert_eq!(summary.key_rows_kept, 4);
        let store = Store::open(&path).unwrap();
        assert_eq!(store.current_revision(), 5);
        assert_eq!(store.applied_index(), 1);
        assert_eq!(
            store.meta("member_id").unwrap().unwrap(),
            7u64.to_be_bytes()
        );
        assert_eq!(get(&store, "a", 3).unwrap()[0].value, b"2");
        assert!(get(&store, "a", 0).unwrap().is_empty());
    }

    #[test]
    fn a_compaction_drops_what_it_supersedes_even_past_the_last_row() {
        for (at, current, kept) in [(3, 5, 3), (4, 5, 1), (1_000, 1_000, 1)] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("db");
            let mut load = BulkLoad::create(&path).unwrap();
            for (k, v) in rows() {
                load.put_key_row(&k, &v).unwrap();
            }
            let summary = load.finish(Some(at), 1).unwrap();
            assert_eq!(
                (summary.current_revision, summary.key_rows_kept),
                (current, kept)
            );
            let store = Store::open(&path).unwrap();
            assert_eq!(store.current_revision(), current, "at {at}");
            assert_eq!(store.compact_revision(), at);
            assert!(matches!(
                get(&store, "a", at - 1),
                Err(MvccError::Compacted)
            ));
            assert_eq!(get(&store, "b", 0).unwrap()[0].value, b"x");
        }
    }

    #[test]
    fn bad_rows_are_refused_and_nothing_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let (r2, v2) = put("a", 2, 2, 1, "1");
        let cases: Vec<(Vec<u8>, Vec<u8>)> = vec![
            (b"short".to_vec(), v2.clone()),
            (r2.clone(), vec![0xff, 0xff, 0xff]),
            (Revision::new(3, 0).to_bytes(false), v2.clone()),
            (r2.clone(), v2.clone()),
            (
                Revision::new(3, 0).to_bytes(false),
                KeyValue::default().encode_to_vec(),
            ),
        ];
        for (k, v) in cases {
            let mut load = BulkLoad::create(&path).unwrap();
            load.put_key_row(&r2, &v2).unwrap();
            assert!(load.put_key_row(&k, &v).is_err(), "{k:?}");
            drop(load);
            assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
        }
    }
}
