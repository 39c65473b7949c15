//! The errors of the MVCC store.

use cairn_proto::EtcdError;

/// An error from the store.
///
/// The first four are etcd's request errors and map to the wire through [`MvccError::etcd`];
/// the rest are backend failures the server treats as fatal or reports at start-up.
#[derive(Debug, thiserror::Error)]
pub enum MvccError {
    /// The requested revision is older than the compacted revision.
    #[error("mvcc: required revision has been compacted")]
    Compacted,
    /// The requested revision is newer than the current revision.
    #[error("mvcc: required revision is a future revision")]
    FutureRev,
    /// A put with `ignore_value` or `ignore_lease` names a key that does not exist.
    #[error("key not found")]
    KeyNotFound,
    /// A put names a lease that does not exist.
    #[error("requested lease not found")]
    LeaseNotFound,
    /// The file exists but is not a cairn backend; it was left untouched.
    #[error("not a cairn backend: {0}")]
    NotCairn(String),
    /// The backend was written by a newer cairn with a format this one does not know.
    #[error("backend format version is newer than this cairn supports")]
    NewerFormat,
    /// The server tried to write one of the store's own meta keys.
    #[error("meta key {0:?} is reserved by the store")]
    ReservedMetaKey(String),
    /// A transaction given as read-only has a put or a delete.
    #[error("read-only transaction has writes")]
    ReadOnlyTxnWrites,
    /// The backend holds something the store did not write.
    #[error("backend corrupt: {0}")]
    Corrupt(String),
    /// A defragmentation gave up; the backend is as before it.
    #[error("defragment abandoned: {0}")]
    DefragAbandoned(String),
    /// redb failed.
    #[error("backend: {0}")]
    Backend(#[from] Box<redb::Error>),
    /// A file operation failed.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

impl MvccError {
    /// The etcd error this maps to on the wire, or `None` for a backend failure.
    pub fn etcd(&self) -> Option<EtcdError> {
        match self {
            MvccError::Compacted => Some(EtcdError::Compacted),
            MvccError::FutureRev => Some(EtcdError::FutureRev),
            MvccError::KeyNotFound => Some(EtcdError::KeyNotFound),
            MvccError::LeaseNotFound => Some(EtcdError::LeaseNotFound),
            _ => None,
        }
    }
}

macro_rules! from_redb {
    ($($ty:ident),*) => {
        $(impl From<redb::$ty> for MvccError {
            fn from(e: redb::$ty) -> Self {
                MvccError::Backend(Box::new(e.into()))
            }
        })*
    };
}

from_redb!(
    Error,
    DatabaseError,
    TransactionError,
    TableError,
    StorageError,
    CommitError,
    CompactionError,
    SetDurabilityError
);

impl From<prost::DecodeError> for MvccError {
    fn from(e: prost::DecodeError) -> Self {
        MvccError::Corrupt(format!("undecodable key value: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_errors_map_to_etcd() {
        let cases = [
            (MvccError::Compacted, Some(EtcdError::Compacted)),
            (MvccError::FutureRev, Some(EtcdError::FutureRev)),
            (MvccError::KeyNotFound, Some(EtcdError::KeyNotFound)),
            (MvccError::LeaseNotFound, Some(EtcdError::LeaseNotFound)),
            (MvccError::NewerFormat, None),
            (MvccError::Corrupt("x".into()), None),
        ];
        for (err, want) in cases {
            assert_eq!(err.etcd(), want, "{err}");
        }
    }
}
