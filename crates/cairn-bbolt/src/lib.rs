//! Reads and writes bbolt database files: the on-disk format of etcd's backend, and so of
//! the snapshots `etcdctl snapshot save` writes and `etcdutl snapshot status|restore` read.
//!
//! The reader walks a file page by page (never the whole file in memory): it checks both
//! meta pages (magic, version, FNV-1a checksum), takes the valid one with the higher
//! transaction id, lists the top-level buckets and streams each bucket's key/value pairs
//! in key order. Nested buckets are reported as such ([`BucketInfo::nested`] opens one).
//!
//! The writer makes a fresh, compact file from buckets whose keys arrive in ascending
//! order. It holds at most one page under construction per tree level (a large value is
//! held once, while its leaf is written), so memory does not grow with the file.
//!
//! This crate depends on nothing else in the workspace but `cairn-crc32c`.
//!
//! # Layout
//!
//! - `format`: the page layout byte by byte (page header, meta, elements, bucket header).
//! - `reader`: [`Reader`], [`BucketInfo`], [`Entries`].
//! - `writer`: [`Writer`], [`BucketWriter`].
//! - `status`: [`snapshot_status`], the figures etcd's `snapshot status` prints.
//! - `error`: [`Error`].
//!
//! # The format, in short
//!
//! A file is an array of pages of `page_size` bytes (4096 here). Every page starts with a
//! 16-byte header: `id u64, flags u16, count u16, overflow u32` (little-endian), where
//! `overflow` is the number of further contiguous pages the page spans. Pages 0 and 1 are
//! meta pages; the meta names the root bucket's page, the freelist page and the high-water
//! page id (the file holds exactly that many pages). A bucket is a B+tree: leaf pages hold
//! 16-byte elements `flags u32, pos u32, ksize u32, vsize u32` followed by the keys and
//! values (`pos` counts from the element itself); branch pages hold `pos u32, ksize u32,
//! pgid u64` naming each child by its first key. The root bucket's leaf entries are the
//! top-level buckets (element flag 1), each value a 16-byte bucket header `root u64,
//! sequence u64`, followed, when `root` is 0, by the bucket's whole leaf page inline.
//!
//! For example, a file with one bucket `key` holding two pairs is, as written here:
//! page 0 and 1 meta (txid 0 and 1, root 3, freelist 4, pgid 5), page 2 the leaf of `key`
//! with two elements, page 3 the root leaf with one element (`key` -> root 2), page 4 an
//! empty freelist.

mod error;
mod format;
mod reader;
mod status;
mod writer;

pub use error::Error;
pub use format::{MAX_KEY_SIZE, MAX_VALUE_SIZE, PAGE_SIZE};
pub use reader::{BucketInfo, Entries, Entry, Reader};
pub use status::{snapshot_status, SnapshotStatus};
pub use writer::{BucketWriter, Writer};
