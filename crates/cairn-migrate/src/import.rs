//! etcd's backend (a bbolt file: a snapshot, or a member's `member/snap/db`) read into a new
//! cairn backend.
//!
//! etcd's buckets and what becomes of each:
//!
//! | bucket            | cairn                                                          |
//! |-------------------|----------------------------------------------------------------|
//! | `key`             | the `key` table, byte for byte (same revisions, same values)  |
//! | `meta`            | the compaction point; the consistent index and term reported  |
//! | `lease`           | the `lease` table (`leasepb.Lease` and `cairnpb.LeaseRecord` share their fields) |
//! | `auth`, `authUsers`, `authRoles` | the record tables of the same names, byte for byte |
//! | `alarm`           | the `alarms` meta record                                       |
//! | `cluster`         | the cluster version, reported                                  |
//! | `members`, `members_removed` | replaced by the membership the caller gives        |
//!
//! Every record is decoded before it is written, so a damaged file is refused here rather
//! than at the member's start; nothing is left at the target then.

use std::path::Path;

use cairn_bbolt::{BucketInfo, Reader};
use cairn_mvcc::{BulkLoad, BulkLoadSummary, RecordTable};
use cairn_proto::authpb::{Role, User};
use cairn_proto::cairnpb::LeaseRecord;
use cairn_proto::etcdserverpb::{AlarmMember, AlarmResponse};
use prost::Message;

use crate::layout::{Membership, ALARMS_KEY};
use crate::ImportError;

/// What the import is told besides the file.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// The member, cluster and members the new backend belongs to (etcd's own members in
    /// the file are not carried over).
    pub membership: Membership,
    /// The Raft index the backend counts as applied in the member's new log.
    pub applied_index: u64,
    /// etcdutl's `--bump-revision` with `--mark-compacted`: the latest revision is raised
    /// by this much and everything before it is compacted.
    pub revision_bump: Option<u64>,
}

/// What an import read and wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportSummary {
    pub backend: BulkLoadSummary,
    pub leases: u64,
    pub users: u64,
    pub roles: u64,
    pub auth_enabled: bool,
    pub alarms: u64,
    /// etcd's `meta` records, if present.
    pub consistent_index: Option<u64>,
    pub term: Option<u64>,
    /// The `cluster` bucket's cluster version, if present.
    pub cluster_version: Option<String>,
    /// Top-level buckets cairn has no use for, by name.
    pub skipped_buckets: Vec<String>,
}

/// The highest revision an import may leave the store at: far beyond any real history,
/// and far enough below `i64::MAX` that writes after it never overflow.
const MAX_REVISION: i64 = 1 << 62;

/// The buckets cairn reads or knowingly replaces.
const KNOWN_BUCKETS: [&str; 10] = [
    "key",
    "meta",
    "lease",
    "auth",
    "authUsers",
    "authRoles",
    "alarm",
    "cluster",
    "members",
    "members_removed",
];

fn malformed(bucket: &str, key: &[u8], why: impl Into<String>) -> ImportError {
    ImportError::Malformed {
        bucket: bucket.to_string(),
        key: String::from_utf8_lossy(key).into_owned(),
        why: why.into(),
    }
}

fn u64_record(bucket: &str, key: &[u8], value: &[u8]) -> Result<u64, ImportError> {
    let b: [u8; 8] = value
        .try_into()
        .map_err(|_| malformed(bucket, key, format!("{} bytes, not 8", value.len())))?;
    Ok(u64::from_be_bytes(b))
}

/// A compaction mark: a revision's bytes, of which the main revision counts.
fn compact_mark(key: &[u8], value: &[u8]) -> Result<i64, ImportError> {
    if value.len() != 17 || value[8] != b'_' {
        return Err(malformed("meta", key, "not a revision"));
    }
    let mut b = [0u8; 8];
    b.copy_from_slice(&value[..8]);
    let main = i64::from_be_bytes(b);
    if !(0..=MAX_REVISION).contains(&main) {
        return Err(malformed(
            "meta",
            key,
            format!("revision {main} out of range"),
        ));
    }
    Ok(main)
}

/// What etcd's backend says of itself, read without importing it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EtcdBackendInfo {
    /// `meta/consistent_index`: the Raft index etcd had applied.
    pub consistent_index: Option<u64>,
    /// `meta/term` (etcd 3.5): the term of that entry.
    pub term: Option<u64>,
    /// `meta/scheduledCompactRev`: the compaction etcd scheduled (finished or not).
    pub scheduled_compact: Option<i64>,
    /// `cluster/clusterVersion`.
    pub cluster_version: Option<String>,
    /// The `members` bucket: each member's id (its key, in hex) and its JSON, as etcd
    /// wrote it (`{"id":..,"peerURLs":[..],"name":..,"clientURLs":[..],"isLearner":..}`).
    pub members: Vec<(u64, Vec<u8>)>,
    /// The `members_removed` bucket: the ids of removed members.
    pub removed_members: Vec<u64>,
}

fn info_of(
    reader: &Reader,
    meta: &BucketInfo,
    cluster: Option<&BucketInfo>,
) -> Result<EtcdBackendInfo, ImportError> {
    let mut info = EtcdBackendInfo::default();
    for entry in reader.entries(meta) {
        let e = entry?;
        match e.key.as_slice() {
            b"scheduledCompactRev" => {
                info.scheduled_compact = Some(compact_mark(&e.key, &e.value)?)
            }
            b"consistent_index" => {
                info.consistent_index = Some(u64_record("meta", &e.key, &e.value)?)
            }
            b"term" => info.term = Some(u64_record("meta", &e.key, &e.value)?),
            _ => {}
        }
    }
    if let Some(b) = cluster {
        for entry in reader.entries(b) {
            let e = entry?;
            if e.key == b"clusterVersion" {
                info.cluster_version = Some(String::from_utf8_lossy(&e.value).into_owned());
            }
        }
    }
    Ok(info)
}

/// Reads the `meta`, `cluster` and member records of the etcd backend at `src` (a member's
/// `member/snap/db` or a snapshot): what a caller needs before an import, such as the
/// index etcd's log is to be replayed from.
pub fn read_backend_info(src: &Path) -> Result<EtcdBackendInfo, ImportError> {
    let reader = Reader::open(src)?;
    let buckets = reader.buckets()?;
    let find = |name: &str| buckets.iter().find(|b| b.name == name.as_bytes());
    let Some(meta) = find("meta") else {
        return Err(ImportError::NotEtcd(
            "no meta bucket: not an etcd backend".into(),
        ));
    };
    let mut info = info_of(&reader, meta, find("cluster"))?;
    for (name, removed) in [("members", false), ("members_removed", true)] {
        let Some(b) = find(name) else { continue };
        for entry in reader.entries(b) {
            let e = entry?;
            let id = std::str::from_utf8(&e.key)
                .ok()
                .and_then(|k| u64::from_str_radix(k, 16).ok())
                .ok_or_else(|| malformed(name, &e.key, "not a member id in hex"))?;
            if removed {
                info.removed_members.push(id);
            } else {
                info.members.push((id, e.value));
            }
        }
    }
    Ok(info)
}

/// Reads the etcd backend at `src` and writes a cairn backend at `dst` (which must not
/// exist); see the module docs. On error nothing is left at `dst`.
pub fn import_backend(
    src: &Path,
    dst: &Path,
    opts: &ImportOptions,
) -> Result<ImportSummary, ImportError> {
    let reader = Reader::open(src)?;
    let buckets = reader.buckets()?;
    let find = |name: &str| buckets.iter().find(|b| b.name == name.as_bytes());
    let (Some(key_bucket), Some(meta_bucket)) = (find("key"), find("meta")) else {
        return Err(ImportError::NotEtcd(
            "no key and meta buckets: not an etcd backend".into(),
        ));
    };
    let mut summary = ImportSummary {
        backend: BulkLoadSummary {
            key_rows: 0,
            key_rows_kept: 0,
            current_revision: 0,
            compact_revision: -1,
        },
        leases: 0,
        users: 0,
        roles: 0,
        auth_enabled: false,
        alarms: 0,
        consistent_index: None,
        term: None,
        cluster_version: None,
        skipped_buckets: buckets
            .iter()
            .filter(|b| !KNOWN_BUCKETS.iter().any(|k| k.as_bytes() == b.name))
            .map(|b| String::from_utf8_lossy(&b.name).into_owned())
            .collect(),
    };

    let info = info_of(&reader, meta_bucket, find("cluster"))?;
    let scheduled = info.scheduled_compact;
    summary.consistent_index = info.consistent_index;
    summary.term = info.term;
    summary.cluster_version = info.cluster_version;

    let mut load = BulkLoad::create(dst)?;
    let mut latest_main = 0i64;
    for entry in reader.entries(key_bucket) {
        let e = entry?;
        if e.is_bucket {
            return Err(malformed("key", &e.key, "a nested bucket"));
        }
        load.put_key_row(&e.key, &e.value)?;
        if let Some(main) = e.key.get(..8) {
            let mut b = [0u8; 8];
            b.copy_from_slice(main);
            latest_main = latest_main.max(i64::from_be_bytes(b));
        }
    }

    if let Some(b) = find("lease") {
        summary.leases = import_leases(&reader, b, &mut load)?;
    }
    for (name, table) in [
        ("auth", RecordTable::Auth),
        ("authUsers", RecordTable::AuthUsers),
        ("authRoles", RecordTable::AuthRoles),
    ] {
        let Some(b) = find(name) else { continue };
        for entry in reader.entries(b) {
            let e = entry?;
            if e.is_bucket {
                return Err(malformed(name, &e.key, "a nested bucket"));
            }
            match table {
                RecordTable::Auth if e.key == b"authEnabled" => {
                    summary.auth_enabled = e.value.first() == Some(&1);
                }
                RecordTable::Auth if e.key == b"authRevision" => {
                    u64_record(name, &e.key, &e.value)?;
                }
                RecordTable::Auth => {}
                RecordTable::AuthUsers => {
                    User::decode(e.value.as_slice())
                        .map_err(|err| malformed(name, &e.key, err.to_string()))?;
                    summary.users += 1;
                }
                RecordTable::AuthRoles => {
                    Role::decode(e.value.as_slice())
                        .map_err(|err| malformed(name, &e.key, err.to_string()))?;
                    summary.roles += 1;
                }
            }
            load.put_record(table, &e.key, &e.value)?;
        }
    }
    if let Some(b) = find("alarm") {
        let mut alarms = Vec::new();
        for entry in reader.entries(b) {
            let e = entry?;
            // etcd keeps each alarm as the key, with an empty value.
            let alarm = AlarmMember::decode(e.key.as_slice())
                .map_err(|err| malformed("alarm", &e.key, err.to_string()))?;
            alarms.push(alarm);
        }
        summary.alarms = alarms.len() as u64;
        if !alarms.is_empty() {
            let record = AlarmResponse {
                header: None,
                alarms,
            };
            load.put_meta(ALARMS_KEY, &record.encode_to_vec())?;
        }
    }
    opts.membership.write_to(&mut load)?;

    // etcd finishes a compaction it had scheduled when it starts, and a bump marks the
    // bumped revision compacted (etcdutl's --mark-compacted).
    let compact_at = match opts.revision_bump {
        Some(bump) => {
            let bumped = i64::try_from(bump)
                .ok()
                .and_then(|b| latest_main.checked_add(b))
                .filter(|r| *r <= MAX_REVISION)
                .ok_or(ImportError::BumpTooLarge {
                    latest: latest_main,
                    bump,
                })?;
            Some(bumped)
        }
        None => scheduled,
    };
    summary.backend = load.finish(compact_at, opts.applied_index)?;
    Ok(summary)
}

fn import_leases(
    reader: &Reader,
    bucket: &BucketInfo,
    load: &mut BulkLoad,
) -> Result<u64, ImportError> {
    let mut n = 0;
    for entry in reader.entries(bucket) {
        let e = entry?;
        let id = u64_record("lease", &e.key, &e.key)? as i64;
        let lease = LeaseRecord::decode(e.value.as_slice())
            .map_err(|err| malformed("lease", &e.key, err.to_string()))?;
        if lease.id != id {
            return Err(malformed(
                "lease",
                &e.key,
                format!("the record names lease {:x}", lease.id),
            ));
        }
        load.put_lease(id, &lease.encode_to_vec())?;
        n += 1;
    }
    Ok(n)
}
