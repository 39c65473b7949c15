//! The redb file: its tables, meta records, and the checks made before trusting it.
//!
//! Tables:
//!
//! - `key`: revision bytes (see [`crate::revision`]) to the protobuf encoding of a
//!   `mvccpb::KeyValue`. A tombstone's value is a `KeyValue` with only `key` set, as etcd
//!   writes it, so the table hashes as etcd's does.
//! - `lease`: a lease id as eight big-endian bytes to the lease's record, opaque to the
//!   store (the server's lessor writes a `cairnpb.LeaseRecord`). Backends made before the
//!   table existed lack it until their first write; readers treat it as empty.
//! - `auth`, `authUsers`, `authRoles`: the auth store's records ([`RecordTable`]), opaque
//!   to the store, named as etcd's buckets. Created on their first write.
//! - `meta`: string keys to bytes. The store's own records are listed in [`RESERVED`]; the
//!   server keeps its small records (alarms, cluster and member ids) here too.
//!
//! A new file is built under a temporary name and renamed into place once its format
//! record is durable, so a crash never leaves a half-made backend at the real path.

use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};

use redb::{Database, DatabaseError, Durability, ReadableDatabase, TableDefinition, TableError};

use crate::error::MvccError;
use crate::revision::Revision;

pub(crate) const KEY_TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("key");
pub(crate) const META_TABLE: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
pub(crate) const LEASE_TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("lease");

/// Tables of records the server keeps beside the keys, opaque to the store: written through
/// apply batches, copied in snapshots, hashed by [`crate::Store::hash`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordTable {
    /// etcd's `auth` bucket: the auth store's flag and revision.
    Auth,
    /// etcd's `authUsers` bucket.
    AuthUsers,
    /// etcd's `authRoles` bucket.
    AuthRoles,
}

impl RecordTable {
    pub const ALL: [RecordTable; 3] = [
        RecordTable::Auth,
        RecordTable::AuthUsers,
        RecordTable::AuthRoles,
    ];

    pub fn name(self) -> &'static str {
        match self {
            RecordTable::Auth => "auth",
            RecordTable::AuthUsers => "authUsers",
            RecordTable::AuthRoles => "authRoles",
        }
    }

    pub(crate) fn definition(self) -> TableDefinition<'static, &'static [u8], &'static [u8]> {
        TableDefinition::new(self.name())
    }
}

/// Meta key of the on-disk format version (u64, big-endian).
pub(crate) const FORMAT_KEY: &str = "cairn_format_version";
/// Meta key of the Raft index of the last applied batch (u64, big-endian).
pub(crate) const APPLIED_INDEX_KEY: &str = "consistent_index";
/// Meta key of the latest scheduled compaction (revision bytes, as etcd).
pub(crate) const SCHEDULED_COMPACT_KEY: &str = "scheduledCompactRev";
/// Meta key of the latest finished compaction (revision bytes, as etcd).
pub(crate) const FINISHED_COMPACT_KEY: &str = "finishedCompactRev";
/// Meta keys the server may not write.
pub(crate) const RESERVED: [&str; 4] = [
    FORMAT_KEY,
    APPLIED_INDEX_KEY,
    SCHEDULED_COMPACT_KEY,
    FINISHED_COMPACT_KEY,
];

/// The format this build writes and the newest it reads.
pub(crate) const FORMAT_VERSION: u64 = 1;

const REDB_MAGIC: [u8; 9] = [b'r', b'e', b'd', b'b', 0x1A, 0x0A, 0xA9, 0x0D, 0x0A];

/// Opens the backend at `path`, creating it if missing, after checking it is cairn's.
pub(crate) fn open(path: &Path) -> Result<Database, MvccError> {
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            create(path)?;
            return Ok(Database::open(path)?);
        }
        Err(e) => return Err(e.into()),
    };
    if !meta.is_file() {
        return Err(MvccError::NotCairn("not a regular file".into()));
    }
    let mut magic = [0u8; REDB_MAGIC.len()];
    let mut file = File::open(path)?;
    if file.read_exact(&mut magic).is_err() || magic != REDB_MAGIC {
        return Err(MvccError::NotCairn("not a redb file".into()));
    }
    drop(file);
    // A read-only open changes nothing, so a foreign redb file is refused untouched. A file
    // that was not shut down cleanly (the usual case after a crash) needs redb's repair,
    // which only a read-write open does; it is checked after that instead.
    match redb::Builder::new().open_read_only(path) {
        Ok(db) => {
            check_format(&db)?;
            drop(db);
        }
        Err(DatabaseError::RepairAborted) => {}
        Err(DatabaseError::DatabaseAlreadyOpen) => {
            return Err(DatabaseError::DatabaseAlreadyOpen.into())
        }
        Err(e) => return Err(MvccError::NotCairn(format!("unreadable redb file: {e}"))),
    }
    let db = Database::open(path)?;
    check_format(&db)?;
    Ok(db)
}

/// Refuses a database without cairn's format record, or with a newer one.
fn check_format(db: &impl ReadableDatabase) -> Result<(), MvccError> {
    let txn = db.begin_read()?;
    let table = match txn.open_table(META_TABLE) {
        Ok(t) => t,
        Err(TableError::TableDoesNotExist(_)) => {
            return Err(MvccError::NotCairn("no cairn meta table".into()))
        }
        Err(e) => return Err(e.into()),
    };
    let Some(v) = redb::ReadableTable::get(&table, FORMAT_KEY)? else {
        return Err(MvccError::NotCairn("no cairn format version".into()));
    };
    let version = decode_u64(v.value())
        .ok_or_else(|| MvccError::NotCairn("unreadable cairn format version".into()))?;
    if version > FORMAT_VERSION {
        return Err(MvccError::NewerFormat);
    }
    Ok(())
}

pub(crate) fn temp_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".cairn-new");
    path.with_file_name(name)
}

/// Where a defragmentation builds the new file for the backend at `path`.
pub(crate) fn defrag_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".cairn-defrag");
    path.with_file_name(name)
}

/// Builds an empty backend at `path`.
fn create(path: &Path) -> Result<(), MvccError> {
    let tmp = temp_path(path);
    if tmp.exists() {
        fs::remove_file(&tmp)?;
    }
    {
        let db = Database::create(&tmp)?;
        init_tables(&db)?;
    }
    fs::rename(&tmp, path)?;
    sync_parent(path)
}

/// Creates the tables and writes the format record, durably.
pub(crate) fn init_tables(db: &Database) -> Result<(), MvccError> {
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::Immediate)?;
    {
        txn.open_table(KEY_TABLE)?;
        txn.open_table(LEASE_TABLE)?;
        let mut meta = txn.open_table(META_TABLE)?;
        meta.insert(FORMAT_KEY, FORMAT_VERSION.to_be_bytes().as_slice())?;
    }
    txn.commit()?;
    Ok(())
}

/// Makes a rename in the directory of `path` durable.
pub(crate) fn sync_parent(path: &Path) -> Result<(), MvccError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// A read-only view of a table keyed and valued by bytes.
pub(crate) type BytesTable = redb::ReadOnlyTable<&'static [u8], &'static [u8]>;

/// Opens the lease table of a read transaction; `None` when the backend predates it.
pub(crate) fn lease_table(txn: &redb::ReadTransaction) -> Result<Option<BytesTable>, MvccError> {
    optional_table(txn, LEASE_TABLE)
}

/// Opens a bytes table of a read transaction; `None` when it was never written.
pub(crate) fn optional_table(
    txn: &redb::ReadTransaction,
    def: TableDefinition<&[u8], &[u8]>,
) -> Result<Option<BytesTable>, MvccError> {
    match txn.open_table(def) {
        Ok(t) => Ok(Some(t)),
        Err(TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

pub(crate) fn decode_u64(b: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(b.try_into().ok()?))
}

pub(crate) fn decode_compact_rev(b: &[u8]) -> Option<i64> {
    Revision::from_bytes(b).map(|(r, _)| r.main)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_and_foreign_files_are_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let garbage = dir.path().join("garbage");
        fs::write(&garbage, b"this is not a database at all").unwrap();
        let empty = dir.path().join("empty");
        fs::write(&empty, b"").unwrap();
        let foreign = dir.path().join("foreign");
        {
            let db = Database::create(&foreign).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(KEY_TABLE).unwrap();
            txn.commit().unwrap();
        }
        for path in [&garbage, &empty, &foreign] {
            let before = fs::read(path).unwrap();
            let err = open(path).unwrap_err();
            assert!(matches!(err, MvccError::NotCairn(_)), "{path:?}: {err}");
            assert_eq!(fs::read(path).unwrap(), before, "{path:?} changed");
        }
    }

    #[test]
    fn newer_format_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        drop(open(&path).unwrap());
        {
            let db = Database::open(&path).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(META_TABLE)
                .unwrap()
                .insert(FORMAT_KEY, (FORMAT_VERSION + 1).to_be_bytes().as_slice())
                .unwrap();
            txn.commit().unwrap();
        }
        assert!(matches!(open(&path), Err(MvccError::NewerFormat)));
        assert!(!temp_path(&path).exists());
    }
}
