//! One consistent read of every backend table, for exports of the whole store (the
//! snapshot in etcd's format). A redb read transaction is an MVCC snapshot: applies go on
//! while it is read, and it never sees a batch that committed after it began.
//!
//! For example, a [`BackendRead`] begun after the batch that applied index 7 and put `a` at
//! revision 5 lists `a`'s revision 5 in [`Table::Key`] and `consistent_index` 7 in
//! [`BackendRead::meta`], whatever batches commit while the caller walks the tables.

use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable};

use crate::backend::{self, RecordTable, KEY_TABLE, LEASE_TABLE, META_TABLE};
use crate::error::MvccError;
use crate::kv_store::Store;

/// A byte-keyed table of the backend, as [`BackendRead::for_each`] walks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// `key`: revision bytes to `mvccpb.KeyValue` (see the crate's `backend` module).
    Key,
    /// `lease`: a lease id as eight big-endian bytes to the lessor's record.
    Lease,
    /// One of the auth store's tables.
    Record(RecordTable),
}

/// The committed state of every table at one point, read by one redb read transaction.
///
/// Holds the backend file's handle while it lives, so a defragment that switches to a new
/// file meanwhile leaves this read on the old one (and does not wait for it).
pub struct BackendRead {
    txn: redb::ReadTransaction,
    _db: Arc<Database>,
}

impl Store {
    /// Begins a consistent read of every table.
    pub fn backend_read(&self) -> Result<BackendRead, MvccError> {
        let db = self.handle();
        let txn = db.begin_read()?;
        Ok(BackendRead { txn, _db: db })
    }
}

impl BackendRead {
    /// Calls `f` with each key and value of `table` in ascending key order (a table never
    /// written is empty), stopping at the first error.
    pub fn for_each<E: From<MvccError>>(
        &self,
        table: Table,
        mut f: impl FnMut(&[u8], &[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        let def = match table {
            Table::Key => KEY_TABLE,
            Table::Lease => LEASE_TABLE,
            Table::Record(t) => t.definition(),
        };
        let Some(t) = backend::optional_table(&self.txn, def)? else {
            return Ok(());
        };
        for entry in t.iter().map_err(MvccError::from)? {
            let (k, v) = entry.map_err(MvccError::from)?;
            f(k.value(), v.value())?;
        }
        Ok(())
    }

    /// Every meta record, the store's own (such as `consistent_index`) and the server's, in
    /// ascending key order.
    pub fn meta(&self) -> Result<Vec<(String, Vec<u8>)>, MvccError> {
        let table = self.txn.open_table(META_TABLE)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (k, v) = entry?;
            out.push((k.value().to_string(), v.value().to_vec()));
        }
        Ok(out)
    }
}
