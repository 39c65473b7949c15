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
/// The Raft log's directory in the data directory, unless `--wal-dir` names another.
const RAFT_DIR: &str = "raft";
/// The file in the data directory that names the `--wal-dir` its Raft log is in.
const WAL_DIR_FILE: &str = "wal-dir";

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

/// The Raft log's directory: `wal_dir` if given, else `raft/` in `data_dir`.
///
/// The data directory remembers a `--wal-dir` it was given (in `wal-dir`), so that a restart
/// that drops or changes the flag is refused rather than starting from an empty log; a data
/// directory whose log is already in `raft/` refuses a `--wal-dir` for the same reason.
pub(super) fn raft_log_dir(
    data_dir: &Path,
    wal_dir: Option<&Path>,
) -> Result<std::path::PathBuf, StartError> {
    let note = data_dir.join(WAL_DIR_FILE);
    let recorded = match std::fs::read_to_string(&note) {
        Ok(text) => Some(std::path::PathBuf::from(text.trim_end_matches('\n'))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e.into()),
    };
    let inner = data_dir.join(RAFT_DIR);
    match (recorded, wal_dir) {
        (None, None) => Ok(inner),
        (Some(recorded), wal) if wal != Some(recorded.as_path()) => {
            Err(StartError::DataDir(format!(
                "the Raft log of data directory {} is in --wal-dir {}, but {}; give --wal-dir={} (move the log first to change it)",
                data_dir.display(),
                recorded.display(),
                wal.map_or("--wal-dir is not given".to_string(), |w| format!(
                    "--wal-dir is {}",
                    w.display()
                )),
                recorded.display()
            )))
        }
        (Some(recorded), _) => Ok(recorded),
        (None, Some(wal)) => {
            if inner.exists() && std::fs::read_dir(&inner)?.next().is_some() {
                return Err(StartError::DataDir(format!(
                    "the Raft log of data directory {} is in {}; --wal-dir {} would start this member from an empty log (move the log there first, or drop the flag)",
                    data_dir.display(),
                    inner.display(),
                    wal.display()
                )));
            }
            std::fs::create_dir_all(wal)?;
            std::fs::write(&note, format!("{}\n", wal.display()))?;
            Ok(wal.to_path_buf())
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn a_wal_dir_is_remembered_and_never_silently_dropped_or_changed() {
        let tmp = tempfile::tempdir().unwrap();
        let (data, wal, other) = (
            tmp.path().join("data"),
            tmp.path().join("wal"),
            tmp.path().join("other"),
        );
        prepare(&data).unwrap();
        assert_eq!(raft_log_dir(&data, Some(&wal)).unwrap(), wal);
        assert!(wal.is_dir());
        assert_eq!(raft_log_dir(&data, Some(&wal)).unwrap(), wal);
        let dropped = raft_log_dir(&data, None).unwrap_err().to_string();
        assert!(
            dropped.contains("--wal-dir is not given") && dropped.contains(&*wal.to_string_lossy()),
            "{dropped}"
        );
        let changed = raft_log_dir(&data, Some(&other)).unwrap_err().to_string();
        assert!(changed.contains(&*other.to_string_lossy()), "{changed}");
        assert!(!other.exists());
    }

    #[test]
    fn a_log_in_the_data_dir_refuses_a_new_wal_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let (data, wal) = (tmp.path().join("data"), tmp.path().join("wal"));
        prepare(&data).unwrap();
        assert_eq!(raft_log_dir(&data, None).unwrap(), data.join(RAFT_DIR));
        std::fs::create_dir_all(data.join(RAFT_DIR)).unwrap();
        std::fs::write(data.join(RAFT_DIR).join("0000000000000001.raftlog"), b"x").unwrap();
        let err = raft_log_dir(&data, Some(&wal)).unwrap_err().to_string();
        assert!(err.contains("empty log"), "{err}");
        assert!(!wal.exists());
        assert_eq!(raft_log_dir(&data, None).unwrap(), data.join(RAFT_DIR));
    }

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
