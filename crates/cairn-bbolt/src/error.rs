//! The crate's one error type.

/// Why a file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing the file failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Neither meta page carries bbolt's magic number: not a bbolt file.
    #[error("invalid database")]
    Invalid,
    /// A meta page is bbolt's but of another format version.
    #[error("version mismatch")]
    VersionMismatch,
    /// No meta page has a valid checksum.
    #[error("checksum error")]
    Checksum,
    /// The file is shorter than its meta page says.
    #[error("file size too small: {len} bytes, the database needs {need}")]
    Truncated { len: u64, need: u64 },
    /// A page or element is not what the tree says it should be.
    #[error("corrupt database: {0}")]
    Corrupt(String),
    /// No top-level bucket has this name.
    #[error("bucket not found")]
    BucketNotFound,
    /// A key was empty, too long, or not above the previous one; or a bucket name was
    /// given twice.
    #[error("{0}")]
    BadInput(&'static str),
}
