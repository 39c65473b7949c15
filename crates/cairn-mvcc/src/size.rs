//! How big the backend is, as Status, the metrics and the quota see it.
//!
//! - [`Store::db_size`] is what the backend file holds on disk. redb grows its file ahead of
//!   need, doubling it until it is 4 GiB, by extending it sparsely: a backend holding 1.1
//!   GiB has a 2.2 GiB long file of which 1.1 GiB was ever written. etcd's `dbSize` is
//!   bbolt's high-water mark, the pages it has written so far; the file's allocated blocks
//!   are the same measure. Taking the length instead trips a 2 GiB quota with half of
//!   what etcd holds in it (and shows the size doubling in one step). Pages reach the file
//!   at durable commits, which the server makes at least every 500 ms while it applies, so
//!   the size trails the writes by that much, as etcd's trails by its batch interval.
//!   The file only changes at a commit, so the size is read from the file system once
//!   after each commit (the first caller after it pays one `stat`), not once per request:
//!   the quota check asks for it before every write.
//! - [`Store::db_size_in_use`] is the pages the tables' trees occupy, as last measured by
//!   [`Store::measure_in_use`]. Measuring walks every page of every table (seconds for
//!   gigabytes, on a read transaction: writes go on), so it is never done on a request's
//!   path: the server measures in the background and after a defragment.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use redb::ReadableTableMetadata;

use crate::error::MvccError;
use crate::kv_store::Store;

/// `size_in_use` before the first measurement.
pub(crate) const NOT_MEASURED: u64 = u64::MAX;

/// The backend file's size as of a commit, so that asking for it costs a `stat` only once
/// per commit.
#[derive(Debug, Default)]
pub(crate) struct FileSize {
    /// Bumped after each commit and file switch (once the new pages are in the file).
    commits: AtomicU64,
    /// `(commits when read, bytes)`; `None` until first read.
    last: Mutex<Option<(u64, u64)>>,
}

impl FileSize {
    /// Tells that the file has changed: the next read takes its size again.
    pub(crate) fn changed(&self) {
        self.commits.fetch_add(1, Ordering::Release);
    }
}

impl Store {
    /// Bytes the backend file occupies on disk: its allocated blocks, never more than its
    /// length (a file system that does not keep sparse files allocates it all).
    pub fn db_size(&self) -> u64 {
        // Read the count before the file: a commit that ends during the `stat` bumps it
        // past what is recorded here, so the next caller reads the file again.
        let commits = self.file_size.commits.load(Ordering::Acquire);
        if let Some((at, bytes)) = *self.file_size.last.lock() {
            if at == commits {
                return bytes;
            }
        }
        let bytes = fs::metadata(&self.path)
            .map(|m| m.len().min(m.blocks().saturating_mul(512)))
            .unwrap_or(0);
        let mut last = self.file_size.last.lock();
        if last.is_none_or(|(at, _)| at <= commits) {
            *last = Some((commits, bytes));
        }
        bytes
    }

    /// Bytes of the backend the tables occupy, as last measured; [`Self::db_size`] until the
    /// first measurement.
    pub fn db_size_in_use(&self) -> u64 {
        match self.size_in_use.load(Ordering::Relaxed) {
            NOT_MEASURED => self.db_size(),
            bytes => bytes.min(self.db_size()),
        }
    }

    /// Measures the bytes the tables occupy (their leaf and branch pages, whole: a page
    /// holding a large value spans several) on a read transaction, records it for
    /// [`Self::db_size_in_use`] and returns it. Reads every page: run it on a blocking thread.
    pub fn measure_in_use(&self) -> Result<u64, MvccError> {
        let txn = self.begin_read()?;
        let mut bytes = 0;
        for table in txn.list_tables()? {
            let stats = txn.open_untyped_table(table)?.stats()?;
            bytes += stats.stored_bytes() + stats.metadata_bytes() + stats.fragmented_bytes();
        }
        self.size_in_use.store(bytes, Ordering::Relaxed);
        Ok(bytes)
    }
}
