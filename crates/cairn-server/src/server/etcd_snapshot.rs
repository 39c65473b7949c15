//! The member's state as etcd 3.5's backend: the bbolt file `Maintenance.Snapshot` streams.
//! etcd's own tools read it (`etcdctl snapshot status`, `etcdutl snapshot restore`), and
//! etcd starts from what they restore.
//!
//! Everything comes from one consistent read of the backend ([`cairn_mvcc::BackendRead`]),
//! written bucket by bucket with [`cairn_bbolt::Writer`] into a file as it is read, so memory
//! stays bounded whatever the backend's size while applies go on.
//!
//! Each etcd bucket and where its records come from:
//!
//! | bucket | key | value | from |
//! |---|---|---|---|
//! | `key` | revision: main (u64 BE), `_`, sub (u64 BE), `t` for a tombstone | `mvccpb.KeyValue` | the `key` table, byte for byte |
//! | `meta` | `consistent_index` | u64 BE | the store's applied index record |
//! | `meta` | `term` | u64 BE | the member's Raft term as the snapshot begins (at least the applied entry's term) |
//! | `meta` | `scheduledCompactRev`, `finishedCompactRev` | revision bytes, sub 0 | the store's records, byte for byte (absent before a compaction) |
//! | `meta` | `confState` | JSON of `raftpb.ConfState`: `voters`, `learners`, `auto_leave` | the member set |
//! | `lease` | lease id (u64 BE) | `leasepb.Lease`: ID, TTL, RemainingTTL | the `lease` table, byte for byte: `cairnpb.LeaseRecord` has the same fields and numbers |
//! | `members` | member id in lowercase hex | JSON: `id`, `peerURLs`, `isLearner`, `name`, `clientURLs` | the `members` meta record (`cairnpb.MemberSet`) |
//! | `members_removed` | | | empty: cairn keeps no list of removed ids |
//! | `cluster` | `clusterVersion` | `3.5.0` | [`crate::config::ETCD_CLUSTER_VERSION`] |
//! | `alarm` | `etcdserverpb.AlarmMember` | empty | the `alarms` meta record |
//! | `auth`, `authUsers`, `authRoles` | as etcd | as etcd | the auth tables, byte for byte |
//!
//! cairn's own meta records (`cairn_format_version`, `member_id`, `cluster_id`) have no
//! place in etcd's backend and stay out: etcd keeps the ids in its WAL, and a restore makes
//! new ones. JSON is written as Go's `encoding/json` writes it (fields in struct order,
//! `<`, `>` and `&` escaped), so the file reads as one etcd wrote.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Seek, Write};

use cairn_bbolt::Writer;
use cairn_mvcc::{BackendRead, MvccError, RecordTable, Store, Table};
use cairn_proto::cairnpb::MemberSet;
use cairn_proto::etcdserverpb::{AlarmResponse, Member};
use prost::Message;
use serde::Serialize;

/// Why the snapshot could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("reading the backend: {0}")]
    Backend(#[from] MvccError),
    #[error("writing the snapshot: {0}")]
    Write(#[from] cairn_bbolt::Error),
    #[error("writing the snapshot: {0}")]
    Io(#[from] std::io::Error),
    #[error("undecodable {record} record: {err}")]
    Record {
        record: &'static str,
        err: prost::DecodeError,
    },
}

/// Meta records of the store that etcd's `meta` bucket holds under the same name and in the
/// same encoding.
const SHARED_META: [&str; 3] = [
    "consistent_index",
    "finishedCompactRev",
    "scheduledCompactRev",
];

/// Writes the store's committed state as etcd's backend to `out` (an empty file) and
/// returns the file's length. `term` goes into `meta` as etcd's `term`.
pub(crate) fn write(store: &Store, term: u64, out: File) -> Result<u64, ExportError> {
    let read = store.backend_read()?;
    let mut w = Writer::new(BufWriter::with_capacity(1 << 20, out))?;
    copy(&read, Table::Key, b"key", &mut w)?;
    copy(&read, Table::Lease, b"lease", &mut w)?;
    for t in RecordTable::ALL {
        if t == RecordTable::Auth {
            copy_auth(&read, &mut w)?;
        } else {
            copy(&read, Table::Record(t), t.name().as_bytes(), &mut w)?;
        }
    }

    let meta: BTreeMap<String, Vec<u8>> = read.meta()?.into_iter().collect();
    drop(read);
    let members = match meta.get(crate::cluster::META_KEY) {
        Some(b) => {
            MemberSet::decode(b.as_slice())
                .map_err(|err| ExportError::Record {
                    record: "member set",
                    err,
                })?
                .members
        }
        None => Vec::new(),
    };
    let alarms = match meta.get(crate::apply::alarm::META_KEY) {
        Some(b) => {
            AlarmResponse::decode(b.as_slice())
                .map_err(|err| ExportError::Record {
                    record: "alarm",
                    err,
                })?
                .alarms
        }
        None => Vec::new(),
    };

    let mut etcd_meta: BTreeMap<&str, Vec<u8>> = SHARED_META
        .iter()
        .filter_map(|k| Some((*k, meta.get(*k)?.clone())))
        .collect();
    etcd_meta.insert("term", term.to_be_bytes().to_vec());
    if !members.is_empty() {
        etcd_meta.insert("confState", conf_state_json(&members).into_bytes());
    }
    put_all(
        &mut w,
        b"meta",
        etcd_meta.iter().map(|(k, v)| (k.as_bytes(), v)),
    )?;

    let by_hex: BTreeMap<String, Vec<u8>> = members
        .iter()
        .map(|m| (format!("{:x}", m.id), member_json(m).into_bytes()))
        .collect();
    put_all(
        &mut w,
        b"members",
        by_hex.iter().map(|(k, v)| (k.as_bytes(), v)),
    )?;
    w.bucket(b"members_removed")?.finish()?;

    let version = crate::config::ETCD_CLUSTER_VERSION.as_bytes().to_vec();
    put_all(&mut w, b"cluster", [(&b"clusterVersion"[..], &version)])?;

    let alarm_keys: std::collections::BTreeSet<Vec<u8>> =
        alarms.iter().map(|a| a.encode_to_vec()).collect();
    let empty = Vec::new();
    put_all(
        &mut w,
        b"alarm",
        alarm_keys.iter().map(|k| (k.as_slice(), &empty)),
    )?;

    let mut out = w.finish()?;
    // Read back by this process only, as it streams: no fsync.
    out.flush()?;
    let len = out.stream_position()?;
    Ok(len)
}

/// Copies a table into a bucket of the same content.
fn copy<W: Write + Seek>(
    read: &BackendRead,
    table: Table,
    name: &[u8],
    w: &mut Writer<W>,
) -> Result<(), ExportError> {
    let mut bucket = w.bucket(name)?;
    read.for_each(table, |k, v| bucket.put(k, v).map_err(ExportError::from))?;
    bucket.finish()?;
    Ok(())
}

/// Copies the `auth` table (two records at most) into etcd's `auth` bucket, with the auth
/// revision etcd writes when its auth store first opens (1) when cairn has not written one:
/// cairn's store counts from 1 without recording it until the first change.
fn copy_auth<W: Write + Seek>(read: &BackendRead, w: &mut Writer<W>) -> Result<(), ExportError> {
    let mut records = BTreeMap::new();
    read.for_each(Table::Record(RecordTable::Auth), |k, v| {
        records.insert(k.to_vec(), v.to_vec());
        Ok::<_, ExportError>(())
    })?;
    records
        .entry(cairn_auth::REVISION_KEY.to_vec())
        .or_insert_with(|| 1u64.to_be_bytes().to_vec());
    put_all(w, b"auth", records.iter().map(|(k, v)| (k.as_slice(), v)))
}

/// Writes a bucket from pairs in ascending key order.
fn put_all<'a, W: Write + Seek>(
    w: &mut Writer<W>,
    name: &[u8],
    pairs: impl IntoIterator<Item = (&'a [u8], &'a Vec<u8>)>,
) -> Result<(), ExportError> {
    let mut bucket = w.bucket(name)?;
    for (k, v) in pairs {
        bucket.put(k, v)?;
    }
    bucket.finish()?;
    Ok(())
}

/// etcd's `membership.Member` as JSON: its raft attributes, then its published ones.
#[derive(Serialize)]
struct EtcdMember<'a> {
    id: u64,
    /// Go writes a nil slice as `null`.
    #[serde(rename = "peerURLs")]
    peer_urls: Option<&'a [String]>,
    #[serde(rename = "isLearner", skip_serializing_if = "is_false")]
    is_learner: bool,
    #[serde(skip_serializing_if = "str::is_empty")]
    name: &'a str,
    #[serde(rename = "clientURLs", skip_serializing_if = "<[String]>::is_empty")]
    client_urls: &'a [String],
}

/// raft's `ConfState` as JSON (no joint configuration: cairn applies changes one by one).
#[derive(Serialize)]
struct ConfState {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    voters: Vec<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    learners: Vec<u64>,
    auto_leave: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn member_json(m: &Member) -> String {
    go_json(&EtcdMember {
        id: m.id,
        peer_urls: (!m.peer_ur_ls.is_empty()).then_some(m.peer_ur_ls.as_slice()),
        is_learner: m.is_learner,
        name: &m.name,
        client_urls: &m.client_ur_ls,
    })
}

fn conf_state_json(members: &[Member]) -> String {
    let mut voters: Vec<u64> = members
        .iter()
        .filter(|m| !m.is_learner)
        .map(|m| m.id)
        .collect();
    let mut learners: Vec<u64> = members
        .iter()
        .filter(|m| m.is_learner)
        .map(|m| m.id)
        .collect();
    voters.sort_unstable();
    learners.sort_unstable();
    go_json(&ConfState {
        voters,
        learners,
        auto_leave: false,
    })
}

/// JSON as Go's `json.Marshal` writes it: serde's output with the characters Go escapes
/// for HTML (`<`, `>`, `&`) and the two JavaScript line separators escaped. Only string
/// contents can hold them, so replacing them anywhere is safe.
fn go_json(value: &impl Serialize) -> String {
    let plain = serde_json::to_string(value).unwrap_or_default();
    let mut out = String::with_capacity(plain.len());
    for c in plain.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_proto::cairnpb::LeaseRecord;

    fn member(id: u64, name: &str, peer: &[&str], client: &[&str], learner: bool) -> Member {
        Member {
            id,
            name: name.into(),
            peer_ur_ls: peer.iter().map(|s| s.to_string()).collect(),
            client_ur_ls: client.iter().map(|s| s.to_string()).collect(),
            is_learner: learner,
        }
    }

    /// The expected strings are what etcd 3.5.1 wrote in its `members` and `meta` buckets.
    #[test]
    fn members_and_conf_state_are_etcds_json() {
        let m = member(
            13668033151171901709,
            "m1",
            &["http://127.0.0.1:23801"],
            &[],
            false,
        );
        assert_eq!(
            member_json(&m),
            r#"{"id":13668033151171901709,"peerURLs":["http://127.0.0.1:23801"],"name":"m1"}"#
        );
        assert_eq!(
            conf_state_json(&[m]),
            r#"{"voters":[13668033151171901709],"auto_leave":false}"#
        );
        let learner = member(5, "", &["http://a"], &["http://b", "http://c"], true);
        let published = member(3, "x<&>", &[], &["http://d"], false);
        assert_eq!(
            member_json(&learner),
            r#"{"id":5,"peerURLs":["http://a"],"isLearner":true,"clientURLs":["http://b","http://c"]}"#
        );
        assert_eq!(
            member_json(&published),
            r#"{"id":3,"peerURLs":null,"name":"x\u003c\u0026\u003e","clientURLs":["http://d"]}"#
        );
        assert_eq!(
            conf_state_json(&[learner, published]),
            r#"{"voters":[3],"learners":[5],"auto_leave":false}"#
        );
    }

    /// A lease record is copied byte for byte: these are the bytes etcd 3.5.1 stored for
    /// lease 0x390da24afdfbec0a granted with a TTL of 600.
    #[test]
    fn lease_records_are_etcds_lease_encoding() {
        let record = LeaseRecord {
            id: 0x390d_a24a_fdfb_ec0a,
            ttl: 600,
            remaining_ttl: 0,
        };
        assert_eq!(
            record.encode_to_vec(),
            [0x08, 0x8a, 0xd8, 0xef, 0xef, 0xaf, 0xc9, 0xe8, 0x86, 0x39, 0x10, 0xd8, 0x04]
        );
    }

    /// A store with two keys, a lease, a learner and an alarm, exported and read back:
    /// every bucket etcd has, cairn's own meta records left out, and no compaction marks
    /// before a compaction.
    #[test]
    fn a_store_is_written_with_etcds_buckets() {
        use cairn_proto::etcdserverpb::{AlarmMember, AlarmType, PutRequest};

        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let members = MemberSet {
            members: vec![
                member(0x20, "b", &["http://b"], &["http://cb"], false),
                member(0x3, "", &["http://l"], &[], true),
            ],
        };
        let alarms = AlarmResponse {
            header: None,
            alarms: vec![AlarmMember {
                member_id: 0x20,
                alarm: AlarmType::Nospace as i32,
            }],
        };
        let mut b = store.begin_apply().unwrap();
        for key in [&b"a"[..], b"b"] {
            let put = PutRequest {
                key: key.to_vec(),
                value: b"v".to_vec(),
                ..Default::default()
            };
            b.put(&put, &cairn_mvcc::NoLeases).unwrap();
        }
        b.put_lease(
            7,
            LeaseRecord {
                id: 7,
                ttl: 60,
                remaining_ttl: 0,
            }
            .encode_to_vec(),
        );
        b.put_meta(crate::cluster::META_KEY, &members.encode_to_vec())
            .unwrap();
        b.put_meta(crate::apply::alarm::META_KEY, &alarms.encode_to_vec())
            .unwrap();
        b.put_meta("member_id", &0x20u64.to_be_bytes()).unwrap();
        b.set_applied_index(9);
        b.commit(true).unwrap();

        let path = dir.path().join("snap.db");
        let len = write(&store, 4, File::create(&path).unwrap()).unwrap();
        assert_eq!(len, std::fs::metadata(&path).unwrap().len());
        let r = cairn_bbolt::Reader::open(&path).unwrap();
        let bucket = |name: &str| -> Vec<(Vec<u8>, Vec<u8>)> {
            let b = r.bucket(name.as_bytes()).unwrap();
            r.entries(&b)
                .map(|e| e.unwrap())
                .map(|e| (e.key, e.value))
                .collect()
        };
        let names: Vec<Vec<u8>> = r.buckets().unwrap().into_iter().map(|b| b.name).collect();
        let want: Vec<&[u8]> = vec![
            b"alarm",
            b"auth",
            b"authRoles",
            b"authUsers",
            b"cluster",
            b"key",
            b"lease",
            b"members",
            b"members_removed",
            b"meta",
        ];
        assert_eq!(names, want);
        assert_eq!(bucket("key").len(), 2);
        assert_eq!(bucket("lease")[0].0, 7u64.to_be_bytes());
        let meta: Vec<(String, Vec<u8>)> = bucket("meta")
            .into_iter()
            .map(|(k, v)| (String::from_utf8(k).unwrap(), v))
            .collect();
        assert_eq!(
            meta,
            vec![
                (
                    "confState".to_string(),
                    br#"{"voters":[32],"learners":[3],"auto_leave":false}"#.to_vec()
                ),
                ("consistent_index".to_string(), 9u64.to_be_bytes().to_vec()),
                ("term".to_string(), 4u64.to_be_bytes().to_vec()),
            ]
        );
        let members = bucket("members");
        let keys: Vec<&[u8]> = members.iter().map(|(k, _)| k.as_slice()).collect();
        assert_eq!(keys, [&b"20"[..], b"3"]);
        assert_eq!(
            bucket("alarm"),
            vec![(vec![0x08, 0x20, 0x10, 0x01], Vec::new())]
        );
        assert_eq!(
            bucket("cluster"),
            vec![(b"clusterVersion".to_vec(), b"3.5.0".to_vec())]
        );
        assert!(bucket("members_removed").is_empty());
        // A store that never changed its auth state holds no revision; etcd writes 1.
        assert_eq!(
            bucket("auth"),
            vec![(b"authRevision".to_vec(), 1u64.to_be_bytes().to_vec())]
        );
    }
}
