//! The crate's errors. A restore's read etcdutl's words where etcdutl has them.

use std::path::PathBuf;

/// Why etcd's backend could not be imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file is not a readable bbolt database (its words are bbolt's).
    #[error("{0}")]
    Bbolt(#[from] cairn_bbolt::Error),
    /// The file is a bbolt database but not etcd's.
    #[error("{0}")]
    NotEtcd(String),
    /// A record could not be decoded.
    #[error("etcd backend corrupt: bucket {bucket:?}, key {key:?}: {why}")]
    Malformed {
        bucket: String,
        key: String,
        why: String,
    },
    /// `--bump-revision` would take the revision past what cairn accepts.
    #[error("cannot bump revision {latest} by {bump}: the result is out of range")]
    BumpTooLarge { latest: i64, bump: u64 },
    /// Writing cairn's backend failed, or a key row was refused.
    #[error("{0}")]
    Backend(#[from] cairn_mvcc::MvccError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Why a snapshot could not be restored.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("couldn't find local name {0:?} in the initial cluster configuration")]
    NameNotInCluster(String),
    #[error("data-dir {0:?} not empty or could not be read")]
    DataDirNotEmpty(PathBuf),
    #[error("wal-dir {0:?} exists")]
    WalDirExists(PathBuf),
    /// The snapshot file could not be opened: the path and the cause.
    #[error("open {path}: {}", go_io(.cause))]
    Open { path: String, cause: std::io::Error },
    /// The file is shorter than a hash trailer.
    #[error("seek {0}: invalid argument")]
    Seek(String),
    #[error("snapshot missing hash but --skip-hash-check=false")]
    MissingHash,
    #[error("expected sha256 {expected}, got {got}")]
    HashMismatch { expected: String, got: String },
    /// The temporary directory of another restore into the same place exists.
    #[error("{0:?} exists: another restore into the same data-dir is running or was interrupted; remove it once none runs")]
    InProgress(PathBuf),
    #[error("{0}")]
    Import(#[from] ImportError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// An I/O error as Go's `os` package words it.
fn go_io(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".to_string(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        std::io::ErrorKind::IsADirectory => "is a directory".to_string(),
        _ => e.to_string(),
    }
}
