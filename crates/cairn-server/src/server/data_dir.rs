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
