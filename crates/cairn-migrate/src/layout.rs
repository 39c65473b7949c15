//! A cairn data directory, file by file, and the records in its backend that say whose it
//! is. The server opens what this describes; a restore or an import writes it.
//!
//! ```text
//! <data-dir>/cairn.version   "cairn-data-dir 1\n": the marker that makes the directory cairn's
//! <data-dir>/backend.redb    the backend (cairn-mvcc), with the member's identity in `meta`
//! <data-dir>/raft/           the Raft log, unless --wal-dir names another directory ...
//! <data-dir>/wal-dir         ... which this file then names, so it is never silently dropped
//! ```
//!
//! The backend's `meta` table holds, beside the store's own records:
//!
//! | key          | value                                                   |
//! |--------------|---------------------------------------------------------|
//! | `member_id`  | this member's id, u64 big-endian                        |
//! | `cluster_id` | the cluster's id, u64 big-endian                        |
//! | `members`    | `cairnpb.MemberSet`: every member, in id order          |
//! | `alarms`     | `etcdserverpb.AlarmResponse`: the active alarms         |

use std::path::Path;

use cairn_mvcc::{BulkLoad, MvccError};
use cairn_proto::cairnpb::MemberSet;
use cairn_proto::etcdserverpb::Member;
use prost::Message;

/// The first word of the marker file.
pub const DATA_DIR_MARKER: &str = "cairn-data-dir";
/// The data directory format this build writes and reads.
pub const DATA_DIR_FORMAT: u32 = 1;
/// The marker file's name.
pub const MARKER_FILE: &str = "cairn.version";
/// The backend's file name.
pub const BACKEND_FILE: &str = "backend.redb";
/// The Raft log's directory, unless `--wal-dir` names another.
pub const RAFT_DIR: &str = "raft";
/// The file that names the `--wal-dir` the Raft log is in.
pub const WAL_DIR_FILE: &str = "wal-dir";

/// Meta key of this member's id.
pub const MEMBER_ID_KEY: &str = "member_id";
/// Meta key of the cluster's id.
pub const CLUSTER_ID_KEY: &str = "cluster_id";
/// Meta key of the member set.
pub const MEMBERS_KEY: &str = "members";
/// Meta key of the active alarms.
pub const ALARMS_KEY: &str = "alarms";

/// Who a data directory belongs to: this member, its cluster and every member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub member_id: u64,
    pub cluster_id: u64,
    /// Every member; written in id order.
    pub members: Vec<Member>,
}

impl Membership {
    /// A new cluster's membership from `--initial-cluster` (name and peer URLs of each
    /// member) and `--initial-cluster-token`, with the ids etcd derives from them; `None`
    /// if `name` is not in the cluster.
    pub fn from_initial_cluster(
        name: &str,
        initial_cluster: &[(String, Vec<String>)],
        token: &str,
    ) -> Option<Membership> {
        let mut members: Vec<Member> = initial_cluster
            .iter()
            .map(|(n, urls)| Member {
                id: crate::ids::member_id(urls, token),
                name: n.clone(),
                peer_ur_ls: urls.clone(),
                client_ur_ls: vec![],
                is_learner: false,
            })
            .collect();
        members.sort_by_key(|m| m.id);
        let member_id = members.iter().find(|m| m.name == name)?.id;
        let ids: Vec<u64> = members.iter().map(|m| m.id).collect();
        Some(Membership {
            member_id,
            cluster_id: crate::ids::cluster_id(&ids),
            members,
        })
    }

    /// Writes the three identity records into a backend being built.
    pub fn write_to(&self, load: &mut BulkLoad) -> Result<(), MvccError> {
        let mut members = self.members.clone();
        members.sort_by_key(|m| m.id);
        load.put_meta(MEMBER_ID_KEY, &self.member_id.to_be_bytes())?;
        load.put_meta(CLUSTER_ID_KEY, &self.cluster_id.to_be_bytes())?;
        load.put_meta(MEMBERS_KEY, &MemberSet { members }.encode_to_vec())
    }
}

/// Writes the marker that makes `dir` a cairn data directory.
pub fn write_marker(dir: &Path) -> std::io::Result<()> {
    let path = dir.join(MARKER_FILE);
    std::fs::write(&path, format!("{DATA_DIR_MARKER} {DATA_DIR_FORMAT}\n"))?;
    std::fs::File::open(&path)?.sync_all()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn a_new_clusters_ids_are_etcds() {
        // etcd started with no flags reports member 8e9e05c52164694d in cluster
        // cdf818194e3a8c32.
        let cluster = vec![(
            "default".to_string(),
            vec!["http://localhost:2380".to_string()],
        )];
        let m = Membership::from_initial_cluster("default", &cluster, "etcd-cluster").unwrap();
        assert_eq!(format!("{:x}", m.member_id), "8e9e05c52164694d");
        assert_eq!(format!("{:x}", m.cluster_id), "cdf818194e3a8c32");
        assert_eq!(m.members.len(), 1);
        assert!(Membership::from_initial_cluster("other", &cluster, "etcd-cluster").is_none());
    }
}
