//! `.snap` files: the Raft snapshots etcd saves every `--snapshot-count` entries.
//!
//! A file `<term>-<index>.snap` (16 hex digits each) is one `snappb.Snapshot`: the CRC-32C
//! of `data`, and `data`, an encoded `raftpb.Snapshot` (the snapshot's index, term and
//! ConfState, and etcd's v2 store as JSON). etcd starts from the newest file, in name order,
//! that reads back whole and whose index and term the WAL has a snapshot record for, at or
//! below the last commit; a file that does not read is set aside (etcd renames it
//! `.broken`; this reader only reports it) and the next older one is tried.

use std::path::{Path, PathBuf};

use cairn_crc32c::Crc32c;
use prost::Message;

use crate::pb;

/// A snapshot read from a `.snap` file.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// The file it was read from.
    pub path: PathBuf,
    pub index: u64,
    pub term: u64,
    pub conf_state: ConfState,
    /// The snapshot's data: etcd 3.4 and 3.5 put their v2 store here, as JSON.
    pub data: Vec<u8>,
}

/// The membership a snapshot was taken with (raftpb.ConfState).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfState {
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
    pub voters_outgoing: Vec<u64>,
    pub learners_next: Vec<u64>,
    pub auto_leave: bool,
}

impl From<pb::ConfState> for ConfState {
    fn from(c: pb::ConfState) -> ConfState {
        ConfState {
            voters: c.voters,
            learners: c.learners,
            voters_outgoing: c.voters_outgoing,
            learners_next: c.learners_next,
            auto_leave: c.auto_leave,
        }
    }
}

/// Why a `.snap` file was passed over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapProblem {
    /// It could not be read.
    Unreadable(String),
    /// It is empty, or holds no data or no CRC (etcd's "snap: empty snapshot").
    Empty,
    /// Its data does not match its CRC (etcd's "snap: crc mismatch").
    CrcMismatch,
    /// It does not decode.
    Malformed(String),
}

/// Reads one `.snap` file, checking its CRC.
pub(crate) fn read(path: &Path) -> Result<Snapshot, SnapProblem> {
    let bytes = std::fs::read(path).map_err(|e| SnapProblem::Unreadable(e.to_string()))?;
    if bytes.is_empty() {
        return Err(SnapProblem::Empty);
    }
    let file = pb::SnapFile::decode(bytes.as_slice())
        .map_err(|e| SnapProblem::Malformed(e.to_string()))?;
    if file.data.is_empty() || file.crc == 0 {
        return Err(SnapProblem::Empty);
    }
    if Crc32c::checksum(&file.data) != file.crc {
        return Err(SnapProblem::CrcMismatch);
    }
    let snap = pb::RaftSnapshot::decode(file.data.as_slice())
        .map_err(|e| SnapProblem::Malformed(e.to_string()))?;
    let meta = snap.metadata.unwrap_or_default();
    Ok(Snapshot {
        path: path.to_path_buf(),
        index: meta.index,
        term: meta.term,
        conf_state: meta.conf_state.unwrap_or_default().into(),
        data: snap.data,
    })
}

/// `.snap` files passed over, and why.
pub(crate) type PassedOver = Vec<(PathBuf, SnapProblem)>;

/// The newest `.snap` file of `dir` that reads back and matches one of `wal_snaps`, and the
/// files passed over on the way. No snap directory, or no such file, is no snapshot.
pub(crate) fn newest_available(
    dir: &Path,
    wal_snaps: &[pb::WalSnapshot],
) -> Result<(Option<Snapshot>, PassedOver), crate::Error> {
    let mut passed = Vec::new();
    let names = match std::fs::read_dir(dir) {
        Ok(rd) => {
            let mut names = Vec::new();
            for entry in rd {
                let entry = entry.map_err(|source| crate::Error::Io {
                    path: dir.to_path_buf(),
                    source,
                })?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.ends_with(".snap") {
                    names.push(name);
                }
            }
            names
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(source) => {
            return Err(crate::Error::Io {
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    let mut names = names;
    names.sort();
    for name in names.iter().rev() {
        let path = dir.join(name);
        match read(&path) {
            Ok(s) => {
                if wal_snaps
                    .iter()
                    .any(|w| w.index == s.index && w.term == s.term)
                {
                    return Ok((Some(s), passed));
                }
            }
            Err(problem) => passed.push((path, problem)),
        }
    }
    Ok((None, passed))
}
