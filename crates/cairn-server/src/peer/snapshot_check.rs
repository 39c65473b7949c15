//! The check a Raft snapshot from a peer passes before it reaches Raft: [`check`].
//!
//! Once Raft takes a snapshot, the member's log starts after it and its store is replaced
//! by it; a snapshot that then failed to restore would stop the member at every start. So
//! the receiver first opens the snapshot's data as a backend file of its own, reads all of
//! it (every key revision, the meta records, the lease records), and checks that it is what
//! its metadata says: the backend applied exactly up to the snapshot's index, and its
//! member set is the configuration the snapshot carries. Nothing of the member's own state
//! is touched until a snapshot has passed.

use std::path::Path;

use cairn_mvcc::{MvccError, Store};
use cairn_proto::cairnpb::{LeaseRecord, MemberSet};
use prost::Message;

/// Why a snapshot was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SnapshotRefused {
    #[error("snapshot does not open as a backend: {0}")]
    Unreadable(#[from] MvccError),
    #[error("snapshot could not be written for checking: {0}")]
    Io(#[from] std::io::Error),
    #[error("snapshot at index {index} holds a backend applied up to {applied}")]
    AppliedIndex { index: u64, applied: u64 },
    #[error("snapshot holds an undecodable {0}")]
    Undecodable(&'static str),
    #[error("snapshot carries a joint configuration")]
    Joint,
    #[error("snapshot's members {stored:?} are not its configuration's {conf:?}")]
    Members {
        stored: Vec<(u64, bool)>,
        conf: Vec<(u64, bool)>,
    },
}

/// Checks snapshot `data` taken at Raft index `index` with configuration `members` (each
/// member with whether it is a learner, in id order; `None` if joint), using a scratch
/// file in `data_dir`. Reads the whole snapshot: run it off the async workers.
pub(crate) fn check(
    data_dir: &Path,
    data: &[u8],
    index: u64,
    members: Option<Vec<(u64, bool)>>,
) -> Result<(), SnapshotRefused> {
    let conf = members.ok_or(SnapshotRefused::Joint)?;
    // A crash's leftover copy is removed at start (`server/data_dir.rs`).
    let tmp = tempfile::Builder::new()
        .prefix("raft-snapshot-check-")
        .tempdir_in(data_dir)?;
    let path = tmp.path().join("snapshot.redb");
    std::fs::write(&path, data)?;
    // Opening reads every key revision and meta record.
    let store = Store::open(&path)?;
    let applied = store.applied_index();
    if applied != index {
        return Err(SnapshotRefused::AppliedIndex { index, applied });
    }
    for (_, record) in store.leases()? {
        LeaseRecord::decode(record.as_slice())
            .map_err(|_| SnapshotRefused::Undecodable("lease record"))?;
    }
    let stored = store.meta(crate::cluster::META_KEY)?.unwrap_or_default();
    let stored = MemberSet::decode(stored.as_slice())
        .map_err(|_| SnapshotRefused::Undecodable("member set"))?;
    let mut stored: Vec<(u64, bool)> = stored
        .members
        .iter()
        .map(|m| (m.id, m.is_learner))
        .collect();
    stored.sort_unstable();
    if stored != conf {
        return Err(SnapshotRefused::Members { stored, conf });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::cluster::Members;
    use cairn_proto::etcdserverpb::PutRequest;

    /// A snapshot as a leader builds one: a backend applied up to `index` with members 1
    /// and 2 (a voter and a learner) and one key.
    fn snapshot(dir: &Path, index: u64) -> Vec<u8> {
        let store = Store::open(&dir.join("leader.redb")).unwrap();
        let members = Members::initial(&[(1, "a".into(), vec![]), (2, "b".into(), vec![])]);
        let mut learner = members.get(2).unwrap();
        learner.is_learner = true;
        members.remove(2);
        members.add_or_promote(&learner);
        let mut batch = store.begin_apply().unwrap();
        batch
            .put_meta(crate::cluster::META_KEY, &members.encode())
            .unwrap();
        batch
            .put(
                &PutRequest {
                    key: b"k".to_vec(),
                    value: b"v".to_vec(),
                    ..Default::default()
                },
                &cairn_mvcc::NoLeases,
            )
            .unwrap();
        batch.set_applied_index(index);
        batch.commit(true).unwrap();
        let out = dir.join("snapshot.redb");
        store.snapshot_to(&out).unwrap();
        std::fs::read(out).unwrap()
    }

    #[test]
    fn a_snapshot_passes_only_if_it_opens_and_matches_its_metadata() {
        // Before: a forged snapshot was handed to Raft unchecked, which moved the log's start
        // past it; restoring it then failed, and the member stopped at every start.
        let dir = tempfile::tempdir().unwrap();
        let data = snapshot(dir.path(), 42);
        let conf = || Some(vec![(1, false), (2, true)]);
        check(dir.path(), &data, 42, conf()).unwrap();
        let refused = |data: &[u8], index: u64, members: Option<Vec<(u64, bool)>>| {
            check(dir.path(), data, index, members).unwrap_err()
        };
        assert!(matches!(
            refused(&data, 41, conf()),
            SnapshotRefused::AppliedIndex {
                index: 41,
                applied: 42
            }
        ));
        assert!(matches!(
            refused(&data, 42, Some(vec![(1, false), (2, false)])),
            SnapshotRefused::Members { .. }
        ));
        assert!(matches!(
            refused(&data, 42, Some(vec![(1, false)])),
            SnapshotRefused::Members { .. }
        ));
        assert!(matches!(refused(&data, 42, None), SnapshotRefused::Joint));
        for bad in [
            &b""[..],
            &b"not a backend at all"[..],
            &data[..data.len() / 2],
            &data[..100],
        ] {
            assert!(
                matches!(refused(bad, 42, conf()), SnapshotRefused::Unreadable(_)),
                "{} bytes",
                bad.len()
            );
        }
        // Nothing is left behind in the data directory but the test's own files.
        let mut left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["leader.redb", "snapshot.redb"]);
    }
}
