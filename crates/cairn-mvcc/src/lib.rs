//! cairn's revisioned key-value store: etcd's MVCC layer on a redb file.
//!
//! Every write gets a revision; every revision of every key stays readable until a
//! compaction supersedes it. Reads, writes, transactions, compaction and HashKV answer
//! exactly as etcd 3.5's do for the same history, and the "key" table holds the same bytes
//! as etcd's, so HashKV agrees with a real etcd member.
//!
//! The store is synchronous and uses no async runtime. It depends only on `cairn-proto`;
//! leases reach it through the small [`LeaseLookup`] trait it declares. It also keeps the
//! lessor's records (opaque bytes by lease id) in its `lease` table, written through apply
//! batches, so they commit with the entry that changed them and travel in snapshots; the
//! auth store's records likewise ([`RecordTable`]).
//!
//! One applier thread writes through [`ApplyBatch`]es ([`Store::begin_apply`]), each one
//! redb write transaction that also records the Raft applied index. Any number of threads
//! read concurrently ([`Store::range`]) and never see a batch before it commits.
//!
//! # Layout
//!
//! - `revision`: revisions and their byte encoding in the backend.
//! - `key_index`: the in-memory index from keys to their revisions (generations).
//! - `backend`: the redb file, its tables (key, meta, lease) and meta records, and the
//!   open-time checks.
//! - `backend_read`: [`BackendRead`], one consistent read of every table, for exports.
//! - `kv_store`: [`Store`]: open and rebuild, reads, hashes, snapshots, locks.
//! - `defrag`: [`Store::defragment`]: a compact copy of the backend made while the store
//!   serves, and the switch-over to it.
//! - `size`: the backend's size on disk and in use, as Status and the quota see them.
//! - `apply`: [`ApplyBatch`]: puts, deletes, transactions, compaction, commit.
//! - `bulk_load`: [`BulkLoad`]: a whole backend built from imported rows (etcd's backend).
//! - `history`: [`History`]: the events of a run of revisions read back, for watchers.
//! - `range`: revisioned reads and the request-level range (filters, sort, limit).
//! - `txn`: compares, pre-apply checks, running a transaction's branch.
//! - `go_sort`: Go's unstable `sort.Sort`, so sorted ranges tie-break as etcd's do.
//! - `offline`: damage done to a closed backend file, for the corruption checks' tests.

mod apply;
mod backend;
mod backend_read;
mod bulk_load;
mod defrag;
mod error;
mod go_sort;
mod history;
mod key_index;
mod kv_store;
mod offline;
mod range;
mod revision;
mod size;
mod txn;

pub use apply::ApplyBatch;
pub use backend::RecordTable;
pub use backend_read::{BackendRead, Table};
pub use bulk_load::{BulkLoad, BulkLoadSummary};
pub use defrag::DefragReport;
pub use error::MvccError;
pub use history::{History, HistoryLimits};
pub use kv_store::{CompactHash, CompactionObserver, CompactionReport, HashKv, Record, Store};
#[doc(hidden)]
pub use offline::overwrite_value_in_place;

/// Tells the store whether a lease exists, so puts can refuse unknown leases.
pub trait LeaseLookup {
    /// Whether lease `id` exists.
    fn exists(&self, id: i64) -> bool;
}

/// A lease lookup that knows no leases.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoLeases;

impl LeaseLookup for NoLeases {
    fn exists(&self, _: i64) -> bool {
        false
    }
}
