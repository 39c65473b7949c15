//! What cannot be read, and where.
//!
//! Where etcd has a message for the same refusal, the message starts with etcd's words
//! (`wal: crc mismatch`, `wal: snapshot not found`, ...), then says which file and where.

use std::path::PathBuf;

/// A data directory, WAL or snap file that cannot be read as etcd would read it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{dir} is not an etcd data directory: {what} is missing")]
    NotEtcdDir { dir: PathBuf, what: &'static str },

    #[error("wal: file not found: no WAL segment in {dir}")]
    NoSegments { dir: PathBuf },

    #[error("{path} is locked by another process: is etcd still running on this directory?")]
    InUse { path: PathBuf },

    #[error("wal: file not found which matches the snapshot index '{index}' in {dir}")]
    NoSegmentForSnapshot { dir: PathBuf, index: u64 },

    #[error("wal: file sequence numbers do not increase continuously: {after} is followed by {next} (a segment is missing)")]
    SegmentGap { after: String, next: String },

    #[error("wal: crc mismatch in {path} at offset {offset}")]
    CrcMismatch { path: PathBuf, offset: u64 },

    #[error("wal: unexpected end of {path} at offset {offset}: a torn record may only end the last segment, after its first record")]
    TruncatedSegment { path: PathBuf, offset: u64 },

    #[error("wal: record in {path} at offset {offset} does not decode: {source}")]
    BadRecord {
        path: PathBuf,
        offset: u64,
        #[source]
        source: prost::DecodeError,
    },

    #[error("wal: unexpected block type {record_type} in {path} at offset {offset}")]
    UnknownRecordType {
        path: PathBuf,
        offset: u64,
        record_type: i64,
    },

    #[error("wal: conflicting metadata found in {path}")]
    MetadataConflict { path: PathBuf },

    #[error("wal: no metadata record (member and cluster ids) in {dir}")]
    NoMetadata { dir: PathBuf },

    #[error("wal: snapshot mismatch: the snapshot at index {index} has term {snap_term} in the snap file and {wal_term} in the WAL")]
    SnapshotMismatch {
        index: u64,
        snap_term: u64,
        wal_term: u64,
    },

    #[error("wal: snapshot not found: no snapshot record for index {index} term {term} in {dir}")]
    SnapshotNotFound { dir: PathBuf, index: u64, term: u64 },

    #[error("wal: slice bounds out of range: entry {index} follows the snapshot at {snapshot_index} with only {have} entries in between (entries are missing)")]
    EntryGap {
        snapshot_index: u64,
        index: u64,
        have: u64,
    },

    #[error("raft entry {index} does not decode as {what}: {source}")]
    BadEntry {
        index: u64,
        what: &'static str,
        #[source]
        source: prost::DecodeError,
    },

    #[error("raft entry {index} carries no request this reader knows (written by a newer etcd?)")]
    UnknownRequest { index: u64 },

    #[error("raft entry {index} has entry type {entry_type}, which etcd 3.4 and 3.5 never write")]
    UnknownEntryType { index: u64, entry_type: i32 },

    #[error("raft entry {index}: conf change type {change_type} is not one of etcd's")]
    UnknownConfChange { index: u64, change_type: i32 },

    #[error("raft entry {index}: the member in {what} is not etcd's JSON: {source}")]
    BadMemberJson {
        index: u64,
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
}
