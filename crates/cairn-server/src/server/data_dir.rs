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
/// How the temporary directory of a client's Maintenance.Snapshot copy begins.
pub(crate) const SNAPSHOT_COPY_PREFIX: &str = "snapshot-";
/// How the temporary directories of backend copies begin: a client's snapshot stream's,
/// and a Raft snapshot's (made or installed). Each is removed when its copy is done; one
/// left by a crash is removed at start.
const TEMP_COPY_PREFIXES: [&str; 2] = [
    SNAPSHOT_COPY_PREFIX,
    crate::apply::RAFT_SNAPSHOT_COPY_PREFIX,
];

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
        remove_temporary_copies(dir)?;
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

/// Removes the temporary backend copies a crash left in `dir` ([`TEMP_COPY_PREFIXES`]).
fn remove_temporary_copies(dir: &Path) -> Result<(), StartError> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !TEMP_COPY_PREFIXES.iter().any(|p| name.starts_with(p)) || !entry.file_type()?.is_dir() {
            continue;
        }
        std::fs::remove_dir_all(entry.path())?;
        tracing::info!(path = %entry.path().display(), "removed a temporary backend copy left by a crash");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_left_by_a_crash_are_removed_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        prepare(dir.path()).unwrap();
        for left in ["snapshot-abc123", "raft-snapshot-xyz"] {
            std::fs::create_dir(dir.path().join(left)).unwrap();
            std::fs::write(dir.path().join(left).join("snapshot.redb"), b"copy").unwrap();
        }
        std::fs::create_dir(dir.path().join(RAFT_DIR)).unwrap();
        std::fs::write(dir.path().join(BACKEND_FILE), b"backend").unwrap();
        prepare(dir.path()).unwrap();
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, [BACKEND_FILE, MARKER_FILE, RAFT_DIR]);
    }
}
