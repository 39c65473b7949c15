//! cairn started on a directory etcd 3.4 or 3.5 wrote (a stopped member's, or what
//! `etcdutl snapshot restore` made): the directory is imported, then opened as cairn's.
//!
//! 1. etcd's WAL and snapshots are read (`cairn-etcdwal`): a WAL etcd still holds, or one
//!    etcd itself would refuse, is refused here before anything is written.
//! 2. etcd's backend (`member/snap/db`) says which entry it holds last: its consistent
//!    index `CI`; its `members` bucket is the membership at `CI`.
//! 3. The backend is imported at `CI` with the WAL's member and cluster ids, and cairn's
//!    Raft log is seeded with etcd's hard state, the membership, and every entry past `CI`
//!    at the same index and term, each converted by [`super::etcd_entry::convert`]. Raft
//!    then commits and applies them as etcd would have: a member of a cluster migrating in
//!    place keeps its entries until the cluster decides them.
//! 4. Everything is written under `.cairn-import/` in the data directory, then moved into
//!    place, the marker last: a crash leaves no marker, and the next start removes
//!    `.cairn-import/` and imports again. With `--wal-dir`, etcd's WAL is read there and
//!    cairn's log is written there too (raft-engine's files beside etcd's segments;
//!    leftovers of an interrupted import are removed first).
//!
//! etcd's `member/` is only read: it stays as it was, beside cairn's files.

use std::fs;
use std::path::Path;

use cairn_etcdwal::EtcdWal;
use cairn_migrate::layout::{self, Membership};
use cairn_migrate::{import_backend, read_backend_info, ImportOptions};
use cairn_proto::etcdserverpb::Member;
use cairn_raft::{LogSeed, SeedEntry};

use super::etcd_entry;
use super::StartError;

/// Where an import builds its files, inside the data directory.
pub(super) const IMPORT_DIR: &str = ".cairn-import";

/// Whether `dir` is an etcd data directory cairn has not imported yet: no marker, and
/// etcd's `member/` in it.
pub(super) fn is_etcd_dir(dir: &Path) -> bool {
    !dir.join(layout::MARKER_FILE).exists() && dir.join("member").exists()
}

fn refuse(dir: &Path, why: impl std::fmt::Display) -> StartError {
    StartError::DataDir(format!(
        "cannot import etcd data directory {}: {why}; nothing was written",
        dir.display()
    ))
}

/// Imports the etcd data directory `dir` (its WAL in `wal_dir` if given), leaving a cairn
/// data directory beside etcd's untouched `member/`.
pub(super) fn import(dir: &Path, wal_dir: Option<&Path>) -> Result<(), StartError> {
    let member = dir.join("member");
    let snap_dir = member.join("snap");
    if wal_dir.is_none() && !member.join("wal").exists() && snap_dir.join("db").exists() {
        return Err(refuse(
            dir,
            "member/wal is missing: if etcd ran with --wal-dir, give cairn the same --wal-dir",
        ));
    }
    let wal = match wal_dir {
        Some(w) => cairn_etcdwal::open_dirs(w, &snap_dir),
        None => cairn_etcdwal::open(dir),
    }
    .map_err(|e| refuse(dir, e))?;
    check_v2_store(&wal).map_err(|e| refuse(dir, e))?;
    let db = snap_dir.join("db");
    let info = read_backend_info(&db).map_err(|e| refuse(dir, format!("{}: {e}", db.display())))?;
    check_version(info.cluster_version.as_deref()).map_err(|e| refuse(dir, e))?;
    // etcd 3.4 saves the consistent index with its first v3 write: none means nothing of
    // the log is in the backend yet.
    let ci = info.consistent_index.unwrap_or(0);
    let snap_index = wal.snapshot.as_ref().map_or(0, |s| s.index);
    if ci < snap_index {
        return Err(refuse(
            dir,
            format!("its backend's consistent index {ci} is below the Raft snapshot's index {snap_index}: the backend is older than the log, which etcd never leaves"),
        ));
    }
    let ci_term = term_at(&wal, ci).ok_or_else(|| {
        refuse(
            dir,
            format!(
                "its backend's consistent index {ci} is past the WAL's last entry {}",
                wal.entries.last().map_or(snap_index, |e| e.index)
            ),
        )
    })?;
    let tail: Vec<SeedEntry> = wal
        .entries
        .iter()
        .filter(|e| e.index > ci)
        .map(|e| {
            Ok(SeedEntry {
                index: e.index,
                term: e.term,
                payload: etcd_entry::convert(e, wal.cluster_id)?,
            })
        })
        .collect::<Result<_, etcd_entry::EntryError>>()
        .map_err(|e| refuse(dir, e))?;
    let last = tail.last().map_or(ci, |e| e.index);
    if wal.hard_state.commit > last {
        return Err(refuse(
            dir,
            format!(
                "the WAL's commit index {} is past its last entry {last}: entries are missing",
                wal.hard_state.commit
            ),
        ));
    }
    let members = members_of(&info.members).map_err(|e| refuse(dir, e))?;
    if members.is_empty() {
        return Err(refuse(dir, "its backend lists no members"));
    }
    check_member(wal.member_id, &members, &info.removed_members).map_err(|e| refuse(dir, e))?;
    let seed = LogSeed {
        applied: (ci, ci_term),
        term: wal
            .hard_state
            .term
            .max(tail.last().map_or(ci_term, |e| e.term)),
        vote: wal.hard_state.vote,
        commit: wal.hard_state.commit,
        voters: members
            .iter()
            .filter(|m| !m.is_learner)
            .map(|m| m.id)
            .collect(),
        learners: members
            .iter()
            .filter(|m| m.is_learner)
            .map(|m| m.id)
            .collect(),
        entries: tail,
    };
    let membership = Membership {
        member_id: wal.member_id,
        cluster_id: wal.cluster_id,
        members,
    };

    let tmp = dir.join(IMPORT_DIR);
    remove_leftovers(dir, wal_dir)?;
    fs::create_dir(&tmp)?;
    let summary = import_backend(
        &db,
        &tmp.join(layout::BACKEND_FILE),
        &ImportOptions {
            membership: membership.clone(),
            applied_index: ci,
            revision_bump: None,
        },
    )
    .map_err(|e| {
        let _ = fs::remove_dir_all(&tmp);
        refuse(dir, format!("{}: {e}", db.display()))
    })?;
    let raft_dir = wal_dir.map_or_else(|| tmp.join(layout::RAFT_DIR), Path::to_path_buf);
    cairn_raft::seed_log(&raft_dir, &seed)?;

    // Into place; the marker last.
    fs::File::open(&tmp)?.sync_all()?;
    fs::rename(
        tmp.join(layout::BACKEND_FILE),
        dir.join(layout::BACKEND_FILE),
    )?;
    match wal_dir {
        None => fs::rename(tmp.join(layout::RAFT_DIR), dir.join(layout::RAFT_DIR))?,
        Some(w) => {
            let note = dir.join(layout::WAL_DIR_FILE);
            fs::write(&note, format!("{}\n", w.display()))?;
            fs::File::open(&note)?.sync_all()?;
        }
    }
    fs::File::open(dir)?.sync_all()?;
    layout::write_marker(dir)?;
    fs::File::open(dir)?.sync_all()?;
    fs::remove_dir_all(&tmp)?;

    tracing::info!(
        data_dir = %dir.display(),
        local_member_id = %format!("{:x}", membership.member_id),
        cluster_id = %format!("{:x}", membership.cluster_id),
        members = membership.members.len(),
        consistent_index = ci,
        snapshot_index = snap_index,
        term = seed.term,
        commit = seed.commit,
        entries_to_apply = seed.entries.len(),
        keys = summary.backend.key_rows_kept,
        current_revision = summary.backend.current_revision,
        compact_revision = summary.backend.compact_revision,
        leases = summary.leases,
        users = summary.users,
        roles = summary.roles,
        auth_enabled = summary.auth_enabled,
        "imported etcd data directory"
    );
    if let Some((path, offset)) = &wal.torn_tail {
        tracing::warn!(path = %path.display(), offset, "passed over a torn record at the end of etcd's WAL, as etcd would at start");
    }
    for (path, why) in &wal.passed_over {
        tracing::warn!(path = %path.display(), reason = ?why, "passed over an unreadable etcd snap file, as etcd would at start");
    }
    Ok(())
}

/// The term of entry `index`: from the WAL's entries, or the snapshot's when it is that
/// index; `None` when the WAL does not reach it.
fn term_at(wal: &EtcdWal, index: u64) -> Option<u64> {
    match &wal.snapshot {
        Some(s) if s.index == index => return Some(s.term),
        None if index == 0 => return Some(0),
        _ => {}
    }
    wal.entries
        .iter()
        .find(|e| e.index == index)
        .map(|e| e.term)
}

/// Refuses a directory whose member is not among `members`: one removed from the cluster
/// (etcd stops such a member for good), or one the backend does not know.
fn check_member(member_id: u64, members: &[Member], removed: &[u64]) -> Result<(), String> {
    if members.iter().any(|m| m.id == member_id) {
        return Ok(());
    }
    Err(if removed.contains(&member_id) {
        format!("its member {member_id:x} was removed from the cluster")
    } else {
        format!("its member {member_id:x} is not among the members its backend lists")
    })
}

/// Refuses a backend whose cluster version (`cluster/clusterVersion`) is not 3.4 or 3.5:
/// other versions keep other records, and their logs other requests.
fn check_version(cluster_version: Option<&str>) -> Result<(), String> {
    match cluster_version {
        None => Ok(()),
        Some(v) if v.starts_with("3.4.") || v.starts_with("3.5.") => Ok(()),
        Some(v) => Err(format!(
            "it was written by etcd with cluster version {v}; cairn imports data directories of etcd 3.4 and 3.5 only (take a snapshot with `etcdctl snapshot save` and restore that with `cairnctl snapshot restore` instead)"
        )),
    }
}

/// Refuses a v2 store with data: keys in the snapshot's v2 store (under `/1`), or a v2
/// write to them in the log.
fn check_v2_store(wal: &EtcdWal) -> Result<(), String> {
    if let Some(s) = &wal.snapshot {
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&s.data) {
            let keys = &v["Root"]["Children"]["1"]["Children"];
            if keys.as_object().is_some_and(|o| !o.is_empty()) {
                return Err(format!(
                    "the snapshot {} holds a v2 store with data (keys under /1): cairn keeps no v2 store; remove the v2 data (or migrate it to v3 with `etcdctl migrate`) first",
                    s.path.display()
                ));
            }
        }
    }
    for e in &wal.entries {
        if let cairn_etcdwal::Payload::V2(v2) = &e.payload {
            if v2.effect == cairn_etcdwal::V2Effect::V2Store {
                return Err(etcd_entry::EntryError::V2Store {
                    index: e.index,
                    method: v2.method.clone(),
                    path: v2.path.clone(),
                }
                .to_string());
            }
        }
    }
    Ok(())
}

/// etcd's member records (`membership.Member` as JSON) as cairn's members.
fn members_of(records: &[(u64, Vec<u8>)]) -> Result<Vec<Member>, String> {
    let mut members = Vec::with_capacity(records.len());
    for (id, json) in records {
        let m: cairn_etcdwal::Member = serde_json::from_slice(json)
            .map_err(|e| format!("member {id:x} in the backend is not etcd's JSON: {e}"))?;
        members.push(Member {
            id: *id,
            name: m.name,
            peer_ur_ls: m.peer_urls,
            client_ur_ls: m.client_urls,
            is_learner: m.is_learner,
        });
    }
    members.sort_by_key(|m| m.id);
    Ok(members)
}

/// Removes what an import interrupted by a crash left: `.cairn-import/`, and in a
/// `--wal-dir` the files of raft-engine (etcd names none of its files so).
fn remove_leftovers(dir: &Path, wal_dir: Option<&Path>) -> Result<(), StartError> {
    let tmp = dir.join(IMPORT_DIR);
    if tmp.exists() {
        fs::remove_dir_all(&tmp)?;
        tracing::info!(path = %tmp.display(), "removed the leftovers of an interrupted etcd import");
    }
    let Some(w) = wal_dir else { return Ok(()) };
    for entry in fs::read_dir(w)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if is_raft_engine_file(&name) && entry.file_type()?.is_file() {
            fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// raft-engine's file names: `<seq>.raftlog`, `<seq>.rewrite` (and their `.reserved`
/// recycled forms), and `LOCK`.
fn is_raft_engine_file(name: &str) -> bool {
    name == "LOCK"
        || [
            ".raftlog",
            ".rewrite",
            ".raftlog.reserved",
            ".rewrite.reserved",
        ]
        .iter()
        .any(|s| name.ends_with(s))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn wal_with_snapshot(data: &str) -> EtcdWal {
        EtcdWal {
            member_id: 1,
            cluster_id: 2,
            snapshot: Some(cairn_etcdwal::Snapshot {
                path: "member/snap/0000000000000002-0000000000000005.snap".into(),
                index: 5,
                term: 2,
                conf_state: Default::default(),
                data: data.as_bytes().to_vec(),
            }),
            hard_state: Default::default(),
            entries: vec![],
            torn_tail: None,
            passed_over: vec![],
            ignored: vec![],
        }
    }

    /// The v2 store in etcd's snapshots: `/0` holds the members and version, `/1` the keys
    /// v2 clients wrote.
    #[test]
    fn a_snapshot_with_v2_keys_is_refused_and_one_without_is_not() {
        let empty = r#"{"Root":{"Path":"/","Children":{"0":{"Path":"/0","Children":{"version":{"Path":"/0/version","Value":"3.4.0"}}},"1":{"Path":"/1","Children":null}}}}"#;
        assert_eq!(check_v2_store(&wal_with_snapshot(empty)), Ok(()));
        let with_keys = r#"{"Root":{"Path":"/","Children":{"0":{"Path":"/0"},"1":{"Path":"/1","Children":{"foo":{"Path":"/1/foo","Value":"bar"}}}}}}"#;
        let err = check_v2_store(&wal_with_snapshot(with_keys)).unwrap_err();
        assert!(err.contains("a v2 store with data"), "{err}");
    }

    #[test]
    fn a_removed_or_unknown_member_is_refused() {
        let members = [Member {
            id: 0xa,
            ..Default::default()
        }];
        assert_eq!(check_member(0xa, &members, &[]), Ok(()));
        let removed = check_member(0xb, &members, &[0xb]).unwrap_err();
        assert!(removed.contains("member b was removed"), "{removed}");
        let unknown = check_member(0xc, &members, &[0xb]).unwrap_err();
        assert!(unknown.contains("member c is not among"), "{unknown}");
    }

    #[test]
    fn only_etcd_34_and_35_directories_are_imported() {
        for ok in [None, Some("3.4.0"), Some("3.5.0")] {
            assert_eq!(check_version(ok), Ok(()), "{ok:?}");
        }
        for other in ["3.3.0", "3.6.0", "4.0.0", ""] {
            let err = check_version(Some(other)).unwrap_err();
            assert!(err.contains("etcd 3.4 and 3.5 only"), "{err}");
        }
    }

    #[test]
    fn only_raft_engines_files_count_as_leftovers_in_a_wal_dir() {
        for name in [
            "0000000000000001.raftlog",
            "0000000000000001.rewrite",
            "LOCK",
        ] {
            assert!(is_raft_engine_file(name), "{name}");
        }
        for name in ["0000000000000000-0000000000000000.wal", "0.tmp", "1.tmp"] {
            assert!(!is_raft_engine_file(name), "{name}");
        }
    }
}
