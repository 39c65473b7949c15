//! The data directory: cairn's marker in it, and what cairn refuses to touch.

use std::path::Path;

use super::StartError;

/// The first line of the marker file that makes a directory cairn's.
const DATA_DIR_MARKER: &str = "cairn-data-dir";
/// The data directory format this build writes and reads.
const DATA_DIR_FORMAT: u32 = 1;
const MARKER_FILE: &str = "cairn.version";
/// The backend's file in the data directory.
pub(super) const BACKEND_FILE: &str = "backend.redb";
/// The Raft log's directory in the data directory.
pub(super) const RAFT_DIR: &str = "raft";

/// What a Raft snapshot being checked (`peer/snapshot_check.rs`) or restored (`apply/`) is
/// written to in the data directory: a directory whose name starts with it. Nothing else
/// there starts so.
const SNAPSHOT_SCRATCH_PREFIX: &str = "raft-snapshot-";

/// Removes the scratch copies of Raft snapshots a crash left in `dir` (each as large as the
/// backend): nothing uses them before the member starts.
fn remove_scratch(dir: &Path) -> Result<(), StartError> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with(SNAPSHOT_SCRATCH_PREFIX)
            && entry.file_type()?.is_dir()
        {
            tracing::info!(path = %entry.path().display(), "removing a snapshot copy left by a crash");
            std::fs::remove_dir_all(entry.path())?;
        }
    }
    Ok(())
}

/// Checks that `dir` is a cairn data directory, or empty, and makes it one.
///
/// A directory that etcd wrote (it has `member/`), or any other non-empty directory without
/// cairn's marker, is refused and left untouched.
pub(super) fn prepare(dir: &Path) -> Result<(), StartError> {
    let marker = dir.join(MARKER_FILE);
    if marker.exists() {
        let text = std::fs::read_to_string(&marker)?;
        let mut words = text.split_whitespace();
        let (Some(DATA_DIR_MARKER), Some(v)) = (words.next(), words.next()) else {
            return Err(StartError::DataDir(format!(
                "{} is not a cairn data directory marker; refusing to use {}",
                marker.display(),
                dir.display()
            )));
        };
        let version: u32 = v.parse().unwrap_or(u32::MAX);
        if version > DATA_DIR_FORMAT {
            return Err(StartError::DataDir(format!(
                "data directory {} has format {version}, newer than this cairn understands ({DATA_DIR_FORMAT}); refusing to touch it",
                dir.display()
            )));
        }
        remove_scratch(dir)?;
        return Ok(());
    }
    if dir.join("member").exists() {
        return Err(StartError::DataDir(format!(
            "data directory {} was written by etcd (it has member/); cairn does not read etcd data directories and left it untouched",
            dir.display()
        )));
    }
    if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
        return Err(StartError::DataDir(format!(
            "data directory {} is not empty and is not a cairn data directory; refusing to use it",
            dir.display()
        )));
    }
    std::fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    std::fs::write(&marker, format!("{DATA_DIR_MARKER} {DATA_DIR_FORMAT}\n"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn snapshot_copies_left_by_a_crash_are_removed_at_start_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("data");
        prepare(&d).unwrap();
        for name in ["raft-snapshot-abc", "raft-snapshot-check-xyz"] {
            std::fs::create_dir(d.join(name)).unwrap();
            std::fs::write(d.join(name).join("snapshot.redb"), b"left over").unwrap();
        }
        std::fs::create_dir(d.join(RAFT_DIR)).unwrap();
        std::fs::write(d.join(BACKEND_FILE), b"kept").unwrap();
        prepare(&d).unwrap();
        let mut left: Vec<String> = std::fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, [BACKEND_FILE, MARKER_FILE, RAFT_DIR]);
    }
}
