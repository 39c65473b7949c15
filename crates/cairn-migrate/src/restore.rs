//! A snapshot in etcd's format restored into a new cairn data directory, as `etcdutl
//! snapshot restore` makes an etcd one: the file's SHA-256 trailer checked, the backend
//! imported ([`crate::import`]), the membership taken from the restore's flags.
//!
//! The directory is built under a temporary name beside `--data-dir` and renamed into
//! place once complete, so a refused or failed restore leaves nothing behind (etcdutl
//! leaves a partial `member/snap/db`); only a restore killed midway leaves its temporary
//! directory, which the next restore into the same place names and refuses to guess about. The restored member starts as a new cluster's would:
//! its Raft log begins after index 1, which the backend counts as applied.

use std::fs::{self, File};
use std::io::{ErrorKind, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::import::{import_backend, ImportOptions, ImportSummary};
use crate::layout::{self, Membership};
use crate::{ImportError, RestoreError};

/// What to restore, and where: etcdutl's flags.
#[derive(Debug, Clone)]
pub struct RestoreConfig {
    pub snapshot: PathBuf,
    /// `--name`: this member's name in `initial_cluster`.
    pub name: String,
    pub data_dir: PathBuf,
    pub wal_dir: Option<PathBuf>,
    /// `--initial-cluster`: each member's name and peer URLs.
    pub initial_cluster: Vec<(String, Vec<String>)>,
    pub initial_cluster_token: String,
    pub skip_hash_check: bool,
    /// `--bump-revision` (with `--mark-compacted`).
    pub revision_bump: Option<u64>,
}

/// A restore whose target has been checked: nothing is written until [`Restore::run`].
#[derive(Debug)]
pub struct Restore {
    cfg: RestoreConfig,
    membership: Membership,
}

/// What a finished restore made.
#[derive(Debug, Clone)]
pub struct RestoreReport {
    pub membership: Membership,
    pub import: ImportSummary,
}

/// The SHA-256 digest etcd's snapshot save appends.
const TRAILER: u64 = 32;

impl Restore {
    /// Checks the membership and the target directories, as etcdutl does before it reads
    /// the file: the data directory must be missing or empty, the wal directory missing.
    pub fn plan(cfg: RestoreConfig) -> Result<Restore, RestoreError> {
        let membership = Membership::from_initial_cluster(
            &cfg.name,
            &cfg.initial_cluster,
            &cfg.initial_cluster_token,
        )
        .ok_or_else(|| RestoreError::NameNotInCluster(cfg.name.clone()))?;
        if !dir_missing_or_empty(&cfg.data_dir) {
            return Err(RestoreError::DataDirNotEmpty(cfg.data_dir.clone()));
        }
        if let Some(wal) = &cfg.wal_dir {
            if fs::symlink_metadata(wal).is_ok() {
                return Err(RestoreError::WalDirExists(wal.clone()));
            }
        }
        Ok(Restore { cfg, membership })
    }

    /// The directory the Raft log will be in.
    pub fn raft_dir(&self) -> PathBuf {
        self.cfg
            .wal_dir
            .clone()
            .unwrap_or_else(|| self.cfg.data_dir.join(layout::RAFT_DIR))
    }

    /// The membership the restored member will have.
    pub fn membership(&self) -> &Membership {
        &self.membership
    }

    /// Checks the snapshot's hash and builds the data directory.
    pub fn run(self) -> Result<RestoreReport, RestoreError> {
        let cfg = &self.cfg;
        check_hash(&cfg.snapshot, cfg.skip_hash_check)?;
        let tmp = temp_dir(&cfg.data_dir);
        if let Some(parent) = tmp.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent)?;
        }
        // Made exclusively: a second restore into the same directory at once, or the
        // leftover of one that was killed, is refused rather than pulled from under it.
        if let Err(e) = fs::create_dir(&tmp) {
            return Err(if e.kind() == ErrorKind::AlreadyExists {
                RestoreError::InProgress(tmp)
            } else {
                e.into()
            });
        }
        let built = build(&tmp, cfg, &self.membership);
        let import = match built {
            Ok(s) => s,
            Err(e) => {
                let _ = fs::remove_dir_all(&tmp);
                return Err(e);
            }
        };
        if let Err(e) = fs::rename(&tmp, &cfg.data_dir) {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e.into());
        }
        sync_parent(&cfg.data_dir)?;
        if let Some(wal) = &cfg.wal_dir {
            fs::create_dir_all(wal)?;
        }
        Ok(RestoreReport {
            membership: self.membership,
            import,
        })
    }
}

/// Whether `dir` is missing, or an empty directory (etcd's `DirEmpty`: unreadable counts
/// as not empty).
fn dir_missing_or_empty(dir: &Path) -> bool {
    match fs::read_dir(dir) {
        Ok(mut entries) => entries.next().is_none(),
        Err(e) => e.kind() == ErrorKind::NotFound && fs::symlink_metadata(dir).is_err(),
    }
}

/// `<parent>/.<name>.cairn-restore`, beside the data directory (the same file system, so
/// the final rename is atomic).
fn temp_dir(data_dir: &Path) -> PathBuf {
    let name = data_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "data".into());
    data_dir.with_file_name(format!(".{name}.cairn-restore"))
}

fn build(
    tmp: &Path,
    cfg: &RestoreConfig,
    membership: &Membership,
) -> Result<ImportSummary, RestoreError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(tmp, fs::Permissions::from_mode(0o700))?;
    }
    let summary = import_backend(
        &cfg.snapshot,
        &tmp.join(layout::BACKEND_FILE),
        &ImportOptions {
            membership: membership.clone(),
            applied_index: 1,
            revision_bump: cfg.revision_bump,
        },
    )?;
    if let Some(wal) = &cfg.wal_dir {
        let note = tmp.join(layout::WAL_DIR_FILE);
        fs::write(&note, format!("{}\n", wal.display()))?;
        File::open(&note)?.sync_all()?;
    }
    layout::write_marker(tmp)?;
    File::open(tmp)?.sync_all()?;
    Ok(summary)
}

fn sync_parent(path: &Path) -> std::io::Result<()> {
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => File::open(dir)?.sync_all(),
        None => File::open(".")?.sync_all(),
    }
}

/// Checks the SHA-256 trailer as etcdutl does: a file whose length is 32 past a multiple of
/// 512 has one; without one the restore needs `skip_hash_check`; with it skipped, the
/// trailer (if any) is ignored.
pub fn check_hash(path: &Path, skip: bool) -> Result<(), RestoreError> {
    let shown = path.display().to_string();
    let mut file = File::open(path).map_err(|e| RestoreError::Open {
        path: shown.clone(),
        cause: e,
    })?;
    let len = file
        .metadata()
        .map_err(|e| RestoreError::Open {
            path: shown.clone(),
            cause: e,
        })?
        .len();
    if len < TRAILER {
        return Err(RestoreError::Seek(shown));
    }
    let has_hash = len % 512 == TRAILER;
    if !has_hash {
        return if skip {
            Ok(())
        } else {
            Err(RestoreError::MissingHash)
        };
    }
    if skip {
        return Ok(());
    }
    let mut expected = [0u8; TRAILER as usize];
    file.seek(SeekFrom::Start(len - TRAILER))?;
    file.read_exact(&mut expected)?;
    file.seek(SeekFrom::Start(0))?;
    let mut hasher = Sha256::new();
    let mut left = len - TRAILER;
    let mut buf = vec![0u8; 1 << 20];
    while left > 0 {
        let want = buf.len().min(left as usize);
        let n = file.read(&mut buf[..want])?;
        if n == 0 {
            return Err(RestoreError::Import(ImportError::Io(
                ErrorKind::UnexpectedEof.into(),
            )));
        }
        hasher.update(&buf[..n]);
        left -= n as u64;
    }
    let got: [u8; 32] = hasher.finalize().into();
    if got != expected {
        return Err(RestoreError::HashMismatch {
            expected: go_bytes(&expected),
            got: go_bytes(&got),
        });
    }
    Ok(())
}

/// A byte slice as Go's `%v` prints it: `[1 2 3]`.
fn go_bytes(b: &[u8]) -> String {
    let parts: Vec<String> = b.iter().map(|x| x.to_string()).collect();
    format!("[{}]", parts.join(" "))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::io::{Cursor, Write};

    use cairn_mvcc::Store;
    use cairn_proto::cairnpb::LeaseRecord;
    use cairn_proto::mvccpb::KeyValue;
    use prost::Message;

    use super::*;

    fn rev(main: i64, tombstone: bool) -> Vec<u8> {
        let mut b = main.to_be_bytes().to_vec();
        b.push(b'_');
        b.extend_from_slice(&0i64.to_be_bytes());
        if tombstone {
            b.push(b't');
        }
        b
    }

    /// An etcd-shaped snapshot: keys `a` (put at 2 and 3, then deleted at 4) and `b` (put at
    /// 5 with lease 7), compacted at 3, a lease, auth on; with etcd's SHA-256 trailer.
    fn snapshot(bad_value: bool) -> Vec<u8> {
        snapshot_scheduled(bad_value, 3)
    }

    /// As [`snapshot`], with the compaction etcd had scheduled (finished at 3).
    fn snapshot_scheduled(bad_value: bool, scheduled: i64) -> Vec<u8> {
        let kv = |key: &str, main: i64, create: i64, version: i64, lease: i64| KeyValue {
            key: key.into(),
            create_revision: create,
            mod_revision: main,
            version,
            value: format!("v{main}").into(),
            lease,
        };
        let mut w = cairn_bbolt::Writer::new(Cursor::new(Vec::new())).unwrap();
        let mut b = w.bucket(b"key").unwrap();
        b.put(&rev(3, false), &kv("a", 3, 2, 2, 0).encode_to_vec())
            .unwrap();
        let tomb = KeyValue {
            key: b"a".to_vec(),
            ..Default::default()
        };
        b.put(&rev(4, true), &tomb.encode_to_vec()).unwrap();
        let last = if bad_value {
            vec![0xff; 9]
        } else {
            kv("b", 5, 5, 1, 7).encode_to_vec()
        };
        b.put(&rev(5, false), &last).unwrap();
        b.finish().unwrap();
        let mut b = w.bucket(b"meta").unwrap();
        b.put(b"consistent_index", &9u64.to_be_bytes()).unwrap();
        b.put(b"finishedCompactRev", &rev(3, false)).unwrap();
        b.put(b"scheduledCompactRev", &rev(scheduled, false))
            .unwrap();
        b.finish().unwrap();
        let mut b = w.bucket(b"lease").unwrap();
        let lease = LeaseRecord {
            id: 7,
            ttl: 600,
            remaining_ttl: 0,
        };
        b.put(&7i64.to_be_bytes(), &lease.encode_to_vec()).unwrap();
        b.finish().unwrap();
        let mut b = w.bucket(b"auth").unwrap();
        b.put(b"authEnabled", &[1]).unwrap();
        b.put(b"authRevision", &4u64.to_be_bytes()).unwrap();
        b.finish().unwrap();
        let mut file = w.finish().unwrap().into_inner();
        let digest: [u8; 32] = Sha256::digest(&file).into();
        file.write_all(&digest).unwrap();
        file
    }

    fn config(dir: &Path, file: &[u8]) -> RestoreConfig {
        let snap = dir.join("snap.db");
        fs::write(&snap, file).unwrap();
        RestoreConfig {
            snapshot: snap,
            name: "m1".into(),
            data_dir: dir.join("m1.etcd"),
            wal_dir: None,
            initial_cluster: vec![
                ("m1".into(), vec!["http://127.0.0.1:2380".into()]),
                ("m2".into(), vec!["http://127.0.0.1:2381".into()]),
            ],
            initial_cluster_token: "tok".into(),
            skip_hash_check: false,
            revision_bump: None,
        }
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_snapshot_becomes_a_data_directory_with_its_history_and_the_new_members() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = config(tmp.path(), &snapshot(false));
        let report = Restore::plan(cfg.clone()).unwrap().run().unwrap();
        assert_eq!(report.membership.members.len(), 2);
        assert_eq!(report.import.consistent_index, Some(9));
        let info = crate::read_backend_info(&cfg.snapshot).unwrap();
        assert_eq!(
            (info.consistent_index, info.term, info.scheduled_compact),
            (Some(9), None, Some(3))
        );
        assert!(report.import.auth_enabled);
        assert_eq!(report.import.leases, 1);
        assert_eq!(
            names(&cfg.data_dir),
            [layout::BACKEND_FILE, layout::MARKER_FILE]
        );
        let store = Store::open(&cfg.data_dir.join(layout::BACKEND_FILE)).unwrap();
        assert_eq!(store.current_revision(), 5);
        assert_eq!(store.compact_revision(), 3);
        assert_eq!(store.applied_index(), 1);
        assert_eq!(store.leases().unwrap().len(), 1);
        let id = store.meta(layout::MEMBER_ID_KEY).unwrap().unwrap();
        assert_eq!(id, report.membership.member_id.to_be_bytes());
    }

    #[test]
    fn a_compaction_etcd_had_not_finished_is_finished_into_an_empty_data_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = config(tmp.path(), &snapshot_scheduled(false, 4));
        fs::create_dir(&cfg.data_dir).unwrap();
        let report = Restore::plan(cfg.clone()).unwrap().run().unwrap();
        // `a`'s put at 3 and its tombstone at 4 go; `b` at 5 stays.
        assert_eq!(report.import.backend.key_rows, 3);
        assert_eq!(report.import.backend.key_rows_kept, 1);
        let store = Store::open(&cfg.data_dir.join(layout::BACKEND_FILE)).unwrap();
        assert_eq!(store.compact_revision(), 4);
        assert_eq!(store.current_revision(), 5);
    }

    #[test]
    fn a_bump_moves_the_revision_and_compacts_everything_before_it() {
        let tmp = tempfile::tempdir().unwrap();
        let mut cfg = config(tmp.path(), &snapshot(false));
        cfg.revision_bump = Some(1_000);
        Restore::plan(cfg.clone()).unwrap().run().unwrap();
        let store = Store::open(&cfg.data_dir.join(layout::BACKEND_FILE)).unwrap();
        assert_eq!(store.current_revision(), 1_005);
        assert_eq!(store.compact_revision(), 1_005);
        drop(store);
        // A bump that would take the revision out of range writes nothing.
        cfg.data_dir = tmp.path().join("m2.etcd");
        cfg.revision_bump = Some(u64::MAX);
        let err = Restore::plan(cfg.clone()).unwrap().run().unwrap_err();
        assert!(err.to_string().contains("out of range"), "{err}");
        assert!(!cfg.data_dir.exists());
    }

    #[test]
    fn bad_files_and_used_directories_are_refused_and_nothing_is_written() {
        let tmp = tempfile::tempdir().unwrap();
        let good = snapshot(false);
        let mut flipped = good.clone();
        flipped[5_000] ^= 0xff;
        let truncated = good[..good.len() - 100].to_vec();
        let cases: Vec<(Vec<u8>, bool, &str)> = vec![
            (flipped, false, "expected sha256 ["),
            (
                truncated.clone(),
                false,
                "snapshot missing hash but --skip-hash-check=false",
            ),
            (truncated, true, "file size too small"),
            (b"short".to_vec(), false, "seek "),
            (vec![7u8; 512 + 32], false, "expected sha256"),
            (vec![7u8; 512 + 32], true, "invalid database"),
            (snapshot(true), false, "undecodable value"),
        ];
        for (file, skip, want) in cases {
            let mut cfg = config(tmp.path(), &file);
            cfg.skip_hash_check = skip;
            let err = Restore::plan(cfg).unwrap().run().unwrap_err().to_string();
            assert!(err.contains(want), "{want}: {err}");
            assert_eq!(names(tmp.path()), ["snap.db"], "{want}");
        }
        // The leftover of a restore killed midway is named, not removed.
        let cfg = config(tmp.path(), &good);
        let leftover = tmp.path().join(".m1.etcd.cairn-restore");
        fs::create_dir(&leftover).unwrap();
        let err = Restore::plan(cfg.clone()).unwrap().run().unwrap_err();
        assert!(err.to_string().contains(".m1.etcd.cairn-restore"), "{err}");
        assert!(leftover.exists() && !cfg.data_dir.exists());
        fs::remove_dir(&leftover).unwrap();
        fs::create_dir(&cfg.data_dir).unwrap();
        fs::write(cfg.data_dir.join("x"), b"").unwrap();
        let err = Restore::plan(cfg.clone()).unwrap_err().to_string();
        assert_eq!(
            err,
            format!("data-dir {:?} not empty or could not be read", cfg.data_dir)
        );
        let mut cfg = config(tmp.path(), &good);
        cfg.data_dir = tmp.path().join("other");
        cfg.wal_dir = Some(tmp.path().join("m1.etcd"));
        assert!(Restore::plan(cfg)
            .unwrap_err()
            .to_string()
            .starts_with("wal-dir "));
    }
}
