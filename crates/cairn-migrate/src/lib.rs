//! Moving data between etcd and cairn, offline: etcd's backend imported into a cairn one,
//! an etcd snapshot restored into a new cairn data directory, and the layout of that
//! directory, which the server opens.
//!
//! `cairnctl snapshot restore` runs [`Restore`]; the server, started on a directory etcd
//! wrote, runs [`import_backend`] with the membership it read from etcd's log. Neither
//! needs the server: this crate depends on `cairn-bbolt` (etcd's file format),
//! `cairn-mvcc` (cairn's backend) and `cairn-proto` only.
//!
//! # Layout
//!
//! - `layout`: the data directory's files, the identity records in its backend
//!   ([`Membership`]), the marker.
//! - `ids`: member and cluster ids as etcd derives them.
//! - `import`: [`import_backend`], etcd's buckets into cairn's tables; [`read_backend_info`],
//!   what etcd's backend says of itself (consistent index, term, compaction, version).
//! - `restore`: [`Restore`], a snapshot file (its SHA-256 trailer checked) into a data
//!   directory, all or nothing.
//! - `error`: [`ImportError`], [`RestoreError`].

mod error;
pub mod ids;
mod import;
pub mod layout;
mod restore;

pub use error::{ImportError, RestoreError};
pub use import::{
    import_backend, read_backend_info, EtcdBackendInfo, ImportOptions, ImportSummary,
};
pub use layout::Membership;
pub use restore::{check_hash, Restore, RestoreConfig, RestoreReport};
