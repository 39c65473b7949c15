//! The data directory: cairn's marker in it, and what cairn refuses to touch.

use std::path::Path;

use super::StartError;

// The directory's files are described in `cairn_migrate::layout`, which restores write.
pub(super) use cairn_migrate::layout::BACKEND_FILE;
use cairn_migrate::layout::{
    DATA_DIR_FORMAT, DATA_DIR_MARKER, MARKER_FILE, RAFT_DIR, WAL_DIR_FILE,
};
/// How the temporary directory of a client's Maintenance.Snapshot copy begins.
pub(crate) const SNAPSHOT_COPY_PREFIX: &str = "snapshot-";
/// How the temporary directories of backend copies begin: a client's snapshot stream's,
/// a Raft snapshot's (made or installed), an etcd import's. Each is removed when its copy
/// is done; one left by a crash is removed at start.
const TEMP_COPY_PREFIXES: [&str; 3] = [
    SNAPSHOT_COPY_PREFIX,
    crate::apply::RAFT_SNAPSHOT_COPY_PREFIX,
    // An etcd import that a crash ended after its marker, before its clean-up.
    super::etcd_import::IMPORT_DIR,
];

/// Checks that `dir` is a cairn data directory, or empty, and makes it one.
///
/// A directory that etcd wrote (it has `member/`; its WAL in `wal_dir` if given) is
/// imported (`server/etcd_import.rs`); any other non-empty directory without cairn's
/// marker is refused and left untouched.
pub(super) fn prepare(dir: &Path, wal_dir: Option<&Path>) -> Result<(), StartError> {
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
    if super::etcd_import::is_etcd_dir(dir) {
        super::etcd_import::import(dir, wal_dir)?;
        return Ok(());
    }
    // `fixtures/` holds the certificates auto-TLS made before the member first started,
    // as etcd keeps them.
    let mut entries = if dir.exists() {
        std::fs::read_dir(dir)?.collect::<Result<Vec<_>, _>>()?
    } else {
        Vec::new()
    };
    entries.retain(|e| e.file_name() != "fixtures");
    if !entries.is_empty() {
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
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    /// Auto-TLS writes `fixtures/` before the member first prepares its data directory;
    /// that directory must not then be taken for a foreign one.
    #[test]
    fn auto_tls_fixtures_do_not_make_a_data_dir_foreign() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        std::fs::create_dir_all(data.join("fixtures/peer")).unwrap();
        prepare(&data, None).unwrap();
        std::fs::write(tmp.path().join("other"), "x").unwrap();
        let foreign = tmp.path().to_path_buf();
        assert!(prepare(&foreign, None).is_err());
    }

    #[test]
    fn a_wal_dir_is_remembered_and_never_silently_dropped_or_changed() {
        let tmp = tempfile::tempdir().unwrap();
        let (data, wal, other) = (
            tmp.path().join("data"),
            tmp.path().join("wal"),
            tmp.path().join("other"),
        );
        prepare(&data, None).unwrap();
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
        prepare(&data, None).unwrap();
        assert_eq!(raft_log_dir(&data, None).unwrap(), data.join(RAFT_DIR));
        std::fs::create_dir_all(data.join(RAFT_DIR)).unwrap();
        std::fs::write(data.join(RAFT_DIR).join("0000000000000001.raftlog"), b"x").unwrap();
        let err = raft_log_dir(&data, Some(&wal)).unwrap_err().to_string();
        assert!(err.contains("empty log"), "{err}");
        assert!(!wal.exists());
        assert_eq!(raft_log_dir(&data, None).unwrap(), data.join(RAFT_DIR));
    }

    #[test]
    fn copies_left_by_a_crash_are_removed_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        prepare(dir.path(), None).unwrap();
        for left in [
            "snapshot-abc123",
            "raft-snapshot-xyz",
            "raft-snapshot-check-xyz",
            ".cairn-import",
        ] {
            std::fs::create_dir(dir.path().join(left)).unwrap();
            std::fs::write(dir.path().join(left).join("snapshot.redb"), b"copy").unwrap();
        }
        std::fs::create_dir(dir.path().join(RAFT_DIR)).unwrap();
        std::fs::write(dir.path().join(BACKEND_FILE), b"backend").unwrap();
        prepare(dir.path(), None).unwrap();
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, [BACKEND_FILE, MARKER_FILE, RAFT_DIR]);
    }
}
