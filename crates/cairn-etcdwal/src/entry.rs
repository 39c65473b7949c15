//! Raft entries decoded into what etcd 3.4 and 3.5 put in them.
//!
//! A normal entry's data is tried first as an `InternalRaftRequest` and, if that does not
//! decode, as a v2 `Request`, the order etcd's applier uses. Empty data is the entry a new
//! leader appends. A conf change carries etcd's member as JSON in its context:
//!
//! ```text
//! {"id":10276657743932975437,"peerURLs":["http://127.0.0.1:2380"],"name":"m1",
//!  "clientURLs":["http://127.0.0.1:2379"],"isLearner":true,"isPromote":false}
//! ```
//!
//! (`name` and `clientURLs` are left out when empty, `isLearner` when false; `isPromote`
//! is there when etcd 3.4 or 3.5 proposed the change, not in the first entries of a new
//! cluster.)

use cairn_proto::etcdserverpb as api;
use prost::Message;
use serde::Deserialize;

use crate::error::Error;
use crate::pb;

/// One Raft entry past the snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub index: u64,
    pub term: u64,
    pub payload: Payload,
}

/// What an entry carries.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    /// No data: the entry a new leader appends at the start of its term.
    Empty,
    /// A request of the v3 API or of etcd's own (an `InternalRaftRequest`).
    Request(Box<Request>),
    /// A v2 request, as etcd 3.4 still writes at start (its member attributes, the cluster
    /// version) and the leader's SYNC.
    V2(V2Request),
    /// A membership change.
    ConfChange(ConfChange),
}

/// An `InternalRaftRequest`: who asked, and the request.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The proposal id (the header's, else the top-level one).
    pub id: u64,
    /// The user the proposing member resolved, and the auth revision it checked the
    /// request at; empty when auth was off or etcd proposed it itself.
    pub username: String,
    pub auth_revision: u64,
    pub op: Op,
}

/// The request an `InternalRaftRequest` carries, in the order etcd's applier looks for it.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// A linearizable read of etcd 3.0; changes nothing.
    Range(api::RangeRequest),
    Put(api::PutRequest),
    DeleteRange(api::DeleteRangeRequest),
    Txn(api::TxnRequest),
    Compaction(api::CompactionRequest),
    LeaseGrant(api::LeaseGrantRequest),
    LeaseRevoke(api::LeaseRevokeRequest),
    LeaseCheckpoint(api::LeaseCheckpointRequest),
    Alarm(api::AlarmRequest),
    AuthEnable,
    AuthDisable,
    AuthStatus,
    /// A password the proposing member checked, and the random part of the simple token
    /// every member derives from it.
    Authenticate {
        name: String,
        simple_token: String,
    },
    /// etcd 3.5 carries the bcrypt hash in `hashedPassword`; etcd 3.4 the password itself.
    UserAdd(api::AuthUserAddRequest),
    UserDelete(api::AuthUserDeleteRequest),
    /// etcd 3.5 carries the bcrypt hash in `hashedPassword`; etcd 3.4 the password itself.
    UserChangePassword(api::AuthUserChangePasswordRequest),
    UserGrantRole(api::AuthUserGrantRoleRequest),
    UserGet(api::AuthUserGetRequest),
    UserRevokeRole(api::AuthUserRevokeRoleRequest),
    RoleAdd(api::AuthRoleAddRequest),
    RoleGrantPermission(api::AuthRoleGrantPermissionRequest),
    RoleGet(api::AuthRoleGetRequest),
    RoleRevokePermission(api::AuthRoleRevokePermissionRequest),
    RoleDelete(api::AuthRoleDeleteRequest),
    UserList,
    RoleList,
    /// etcd 3.5: the cluster version the leader decided.
    ClusterVersionSet {
        version: String,
    },
    /// etcd 3.5: a member's name and client URLs, published when it starts.
    ClusterMemberAttrSet {
        member_id: u64,
        name: String,
        client_urls: Vec<String>,
    },
    /// etcd 3.5: a downgrade started or ended.
    DowngradeInfoSet {
        enabled: bool,
        version: String,
    },
}

/// A v2 request, with what it does.
#[derive(Debug, Clone, PartialEq)]
pub struct V2Request {
    pub id: u64,
    pub method: String,
    pub path: String,
    pub value: String,
    pub effect: V2Effect,
}

/// What a v2 request does to what cairn keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum V2Effect {
    /// `PUT /0/members/<id>/attributes`: a member's name and client URLs.
    MemberAttributes {
        member_id: u64,
        name: String,
        client_urls: Vec<String>,
    },
    /// `PUT /0/version`: the cluster version.
    ClusterVersion(String),
    /// `SYNC`: the leader expiring v2 keys with a TTL; nothing outside the v2 store.
    Sync,
    /// `GET`, `QGET`, `HEAD`: a read.
    Read,
    /// Anything else: a change to the v2 store's own keys (the `/1/` key space a v2
    /// client writes, or membership records under `/0/`), which cairn does not keep.
    V2Store,
}

/// A membership change (raftpb.ConfChange) and the member it is about.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfChange {
    /// The proposal id.
    pub id: u64,
    pub kind: ConfChangeKind,
    pub node_id: u64,
    /// The member as etcd sent it; `None` when the context is empty (a removal).
    pub member: Option<Member>,
}

/// The raftpb.ConfChangeType.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfChangeKind {
    AddNode,
    RemoveNode,
    UpdateNode,
    AddLearnerNode,
}

/// etcd's member, as it puts it in a conf change's context (`membership.Member`, or the
/// `ConfigChangeContext` that embeds it with `isPromote`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Member {
    pub id: u64,
    #[serde(rename = "peerURLs", deserialize_with = "null_as_empty")]
    pub peer_urls: Vec<String>,
    pub name: String,
    #[serde(rename = "clientURLs", deserialize_with = "null_as_empty")]
    pub client_urls: Vec<String>,
    #[serde(rename = "isLearner")]
    pub is_learner: bool,
    /// An AddNode that promotes a learner rather than adding a member.
    #[serde(rename = "isPromote")]
    pub is_promote: bool,
}

/// Go writes a nil slice as `null`.
fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

/// A member's attributes as etcd 3.4 puts them in a v2 request's value.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct V2Attributes {
    name: String,
    #[serde(rename = "clientURLs", deserialize_with = "null_as_empty")]
    client_urls: Vec<String>,
}

/// Decodes a raft entry as it was read from the WAL.
pub(crate) fn decode(e: pb::Entry) -> Result<Entry, Error> {
    let index = e.index;
    let payload = match e.r#type {
        0 => normal(index, e.data)?,
        1 => Payload::ConfChange(conf_change(index, &e.data)?),
        other => {
            return Err(Error::UnknownEntryType {
                index,
                entry_type: other,
            })
        }
    };
    Ok(Entry {
        index,
        term: e.term,
        payload,
    })
}

fn normal(index: u64, data: Vec<u8>) -> Result<Payload, Error> {
    if data.is_empty() {
        return Ok(Payload::Empty);
    }
    let r = match pb::InternalRaftRequest::decode(data.as_slice()) {
        Ok(r) => r,
        Err(_) => {
            let v2 = pb::V2Request::decode(data.as_slice()).map_err(|source| Error::BadEntry {
                index,
                what: "an etcd request (v3 or v2)",
                source,
            })?;
            return Ok(Payload::V2(v2_request(index, v2)?));
        }
    };
    if let Some(v2) = r.v2 {
        return Ok(Payload::V2(v2_request(index, v2)?));
    }
    let (id, username, auth_revision) = match &r.header {
        Some(h) => (
            if h.id != 0 { h.id } else { r.id },
            h.username.clone(),
            h.auth_revision,
        ),
        None => (r.id, String::new(), 0),
    };
    let op = op(r).ok_or(Error::UnknownRequest { index })?;
    Ok(Payload::Request(Box::new(Request {
        id,
        username,
        auth_revision,
        op,
    })))
}

/// The request of `r`, looked for in the order etcd's applier does.
fn op(r: pb::InternalRaftRequest) -> Option<Op> {
    Some(if let Some(x) = r.range {
        Op::Range(x)
    } else if let Some(x) = r.put {
        Op::Put(x)
    } else if let Some(x) = r.delete_range {
        Op::DeleteRange(x)
    } else if let Some(x) = r.txn {
        Op::Txn(x)
    } else if let Some(x) = r.compaction {
        Op::Compaction(x)
    } else if let Some(x) = r.lease_grant {
        Op::LeaseGrant(x)
    } else if let Some(x) = r.lease_revoke {
        Op::LeaseRevoke(x)
    } else if let Some(x) = r.lease_checkpoint {
        Op::LeaseCheckpoint(x)
    } else if let Some(x) = r.alarm {
        Op::Alarm(x)
    } else if r.auth_enable.is_some() {
        Op::AuthEnable
    } else if r.auth_disable.is_some() {
        Op::AuthDisable
    } else if r.auth_status.is_some() {
        Op::AuthStatus
    } else if let Some(x) = r.authenticate {
        Op::Authenticate {
            name: x.name,
            simple_token: x.simple_token,
        }
    } else if let Some(x) = r.auth_user_add {
        Op::UserAdd(x)
    } else if let Some(x) = r.auth_user_delete {
        Op::UserDelete(x)
    } else if let Some(x) = r.auth_user_change_password {
        Op::UserChangePassword(x)
    } else if let Some(x) = r.auth_user_grant_role {
        Op::UserGrantRole(x)
    } else if let Some(x) = r.auth_user_get {
        Op::UserGet(x)
    } else if let Some(x) = r.auth_user_revoke_role {
        Op::UserRevokeRole(x)
    } else if let Some(x) = r.auth_role_add {
        Op::RoleAdd(x)
    } else if let Some(x) = r.auth_role_grant_permission {
        Op::RoleGrantPermission(x)
    } else if let Some(x) = r.auth_role_get {
        Op::RoleGet(x)
    } else if let Some(x) = r.auth_role_revoke_permission {
        Op::RoleRevokePermission(x)
    } else if let Some(x) = r.auth_role_delete {
        Op::RoleDelete(x)
    } else if r.auth_user_list.is_some() {
        Op::UserList
    } else if r.auth_role_list.is_some() {
        Op::RoleList
    } else if let Some(x) = r.cluster_version_set {
        Op::ClusterVersionSet { version: x.ver }
    } else if let Some(x) = r.cluster_member_attr_set {
        let a = x.member_attributes.unwrap_or_default();
        Op::ClusterMemberAttrSet {
            member_id: x.member_id,
            name: a.name,
            client_urls: a.client_urls,
        }
    } else if let Some(x) = r.downgrade_info_set {
        Op::DowngradeInfoSet {
            enabled: x.enabled,
            version: x.ver,
        }
    } else {
        return None;
    })
}

fn v2_request(index: u64, r: pb::V2Request) -> Result<V2Request, Error> {
    let effect = match r.method.as_str() {
        "SYNC" => V2Effect::Sync,
        "GET" | "QGET" | "HEAD" => V2Effect::Read,
        "PUT" if r.path == "/0/version" => V2Effect::ClusterVersion(r.val.clone()),
        "PUT" => match member_attributes_path(&r.path) {
            Some(member_id) => {
                let a: V2Attributes =
                    serde_json::from_str(&r.val).map_err(|source| Error::BadMemberJson {
                        index,
                        what: "a v2 attributes request",
                        source,
                    })?;
                V2Effect::MemberAttributes {
                    member_id,
                    name: a.name,
                    client_urls: a.client_urls,
                }
            }
            None => V2Effect::V2Store,
        },
        _ => V2Effect::V2Store,
    };
    Ok(V2Request {
        id: r.id,
        method: r.method,
        path: r.path,
        value: r.val,
        effect,
    })
}

/// The member id of `/0/members/<hex id>/attributes`.
fn member_attributes_path(path: &str) -> Option<u64> {
    let id = path
        .strip_prefix("/0/members/")?
        .strip_suffix("/attributes")?;
    if id.is_empty() || id.len() > 16 {
        return None;
    }
    u64::from_str_radix(id, 16).ok()
}

fn conf_change(index: u64, data: &[u8]) -> Result<ConfChange, Error> {
    let cc = pb::ConfChange::decode(data).map_err(|source| Error::BadEntry {
        index,
        what: "a raftpb.ConfChange",
        source,
    })?;
    let kind = match cc.r#type {
        0 => ConfChangeKind::AddNode,
        1 => ConfChangeKind::RemoveNode,
        2 => ConfChangeKind::UpdateNode,
        3 => ConfChangeKind::AddLearnerNode,
        other => {
            return Err(Error::UnknownConfChange {
                index,
                change_type: other,
            })
        }
    };
    let member = if cc.context.is_empty() {
        None
    } else {
        Some(
            serde_json::from_slice::<Member>(&cc.context).map_err(|source| {
                Error::BadMemberJson {
                    index,
                    what: "a conf change's context",
                    source,
                }
            })?,
        )
    };
    Ok(ConfChange {
        id: cc.id,
        kind,
        node_id: cc.node_id,
        member,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normal_entry(data: Vec<u8>) -> pb::Entry {
        pb::Entry {
            r#type: 0,
            term: 2,
            index: 7,
            data,
        }
    }

    #[test]
    fn a_v3_put_with_its_header() {
        let r = pb::InternalRaftRequest {
            header: Some(pb::RequestHeader {
                id: 42,
                username: "alice".into(),
                auth_revision: 3,
            }),
            put: Some(api::PutRequest {
                key: b"k".to_vec(),
                value: b"v".to_vec(),
                lease: 9,
                ..Default::default()
            }),
            ..Default::default()
        };
        let e = decode(normal_entry(r.encode_to_vec())).unwrap();
        let Payload::Request(req) = e.payload else {
            panic!("{e:?}");
        };
        assert_eq!(
            (req.id, req.username.as_str(), req.auth_revision),
            (42, "alice", 3)
        );
        assert!(matches!(&req.op, Op::Put(p) if p.key == b"k" && p.lease == 9));
    }

    #[test]
    fn requests_real_etcd_writes_only_on_a_timer() {
        // Lease checkpoints come every 5 minutes by default; etcd 3.5's own member
        // requests once the cluster version is 3.5. Neither shows in a short test run.
        let cases = [
            (
                pb::InternalRaftRequest {
                    id: 3,
                    lease_checkpoint: Some(api::LeaseCheckpointRequest {
                        checkpoints: vec![api::LeaseCheckpoint {
                            id: 7,
                            remaining_ttl: 40,
                        }],
                    }),
                    ..Default::default()
                },
                Op::LeaseCheckpoint(api::LeaseCheckpointRequest {
                    checkpoints: vec![api::LeaseCheckpoint {
                        id: 7,
                        remaining_ttl: 40,
                    }],
                }),
            ),
            (
                pb::InternalRaftRequest {
                    id: 3,
                    cluster_member_attr_set: Some(pb::ClusterMemberAttrSetRequest {
                        member_id: 9,
                        member_attributes: Some(pb::Attributes {
                            name: "m1".into(),
                            client_urls: vec!["http://127.0.0.1:2379".into()],
                        }),
                    }),
                    ..Default::default()
                },
                Op::ClusterMemberAttrSet {
                    member_id: 9,
                    name: "m1".into(),
                    client_urls: vec!["http://127.0.0.1:2379".into()],
                },
            ),
            (
                pb::InternalRaftRequest {
                    id: 3,
                    cluster_version_set: Some(pb::ClusterVersionSetRequest {
                        ver: "3.5.0".into(),
                    }),
                    ..Default::default()
                },
                Op::ClusterVersionSet {
                    version: "3.5.0".into(),
                },
            ),
        ];
        for (r, want) in cases {
            let e = decode(normal_entry(r.encode_to_vec())).unwrap();
            let Payload::Request(req) = e.payload else {
                panic!("{e:?}");
            };
            assert_eq!((req.id, req.op), (3, want));
        }
    }

    #[test]
    fn v2_requests_as_etcd_34_writes_them() {
        let attrs = pb::V2Request {
            id: 5,
            method: "PUT".into(),
            path: "/0/members/8e9e05c52164694d/attributes".into(),
            val: r#"{"name":"m1","clientURLs":["http://127.0.0.1:2379"]}"#.into(),
            ..Default::default()
        };
        let e = decode(normal_entry(attrs.encode_to_vec())).unwrap();
        assert_eq!(
            e.payload,
            Payload::V2(V2Request {
                id: 5,
                method: "PUT".into(),
                path: "/0/members/8e9e05c52164694d/attributes".into(),
                value: r#"{"name":"m1","clientURLs":["http://127.0.0.1:2379"]}"#.into(),
                effect: V2Effect::MemberAttributes {
                    member_id: 0x8e9e_05c5_2164_694d,
                    name: "m1".into(),
                    client_urls: vec!["http://127.0.0.1:2379".into()],
                },
            })
        );
        let cases = [
            (
                "PUT",
                "/0/version",
                V2Effect::ClusterVersion("3.4.0".into()),
            ),
            ("SYNC", "", V2Effect::Sync),
            ("QGET", "/1/foo", V2Effect::Read),
            ("PUT", "/1/foo", V2Effect::V2Store),
            ("DELETE", "/1/foo", V2Effect::V2Store),
        ];
        for (method, path, want) in cases {
            let r = pb::V2Request {
                id: 1,
                method: method.into(),
                path: path.into(),
                val: "3.4.0".into(),
                time: 1_700_000_000,
                ..Default::default()
            };
            let Payload::V2(got) = decode(normal_entry(r.encode_to_vec())).unwrap().payload else {
                panic!("{method} {path} did not decode as v2");
            };
            assert_eq!(got.effect, want, "{method} {path}");
        }
    }

    #[test]
    fn conf_change_contexts_as_etcd_writes_them() {
        let cc = pb::ConfChange {
            id: 77,
            r#type: 3,
            node_id: 0x1234,
            context: br#"{"id":4660,"peerURLs":["http://127.0.0.1:2380"],"isLearner":true,"isPromote":false}"#.to_vec(),
        };
        let e = decode(pb::Entry {
            r#type: 1,
            term: 2,
            index: 9,
            data: cc.encode_to_vec(),
        })
        .unwrap();
        assert_eq!(
            e.payload,
            Payload::ConfChange(ConfChange {
                id: 77,
                kind: ConfChangeKind::AddLearnerNode,
                node_id: 0x1234,
                member: Some(Member {
                    id: 0x1234,
                    peer_urls: vec!["http://127.0.0.1:2380".into()],
                    name: String::new(),
                    client_urls: Vec::new(),
                    is_learner: true,
                    is_promote: false,
                }),
            })
        );
        let removal = pb::ConfChange {
            id: 78,
            r#type: 1,
            node_id: 0x1234,
            context: Vec::new(),
        };
        let e = decode(pb::Entry {
            r#type: 1,
            term: 2,
            index: 10,
            data: removal.encode_to_vec(),
        })
        .unwrap();
        assert!(matches!(
            e.payload,
            Payload::ConfChange(ConfChange {
                kind: ConfChangeKind::RemoveNode,
                member: None,
                ..
            })
        ));
    }

    #[test]
    fn what_cannot_be_decoded_is_refused() {
        // Only a field this reader does not know (etcd 3.6's downgrade test request, 9900).
        let unknown = vec![0xE2, 0xEA, 0x04, 0x00];
        assert!(matches!(
            decode(normal_entry(unknown)),
            Err(Error::UnknownRequest { index: 7 })
        ));
        // Bytes that are neither request.
        assert!(matches!(
            decode(normal_entry(vec![0xFF, 0xFF, 0xFF])),
            Err(Error::BadEntry { index: 7, .. })
        ));
        assert!(matches!(
            decode(pb::Entry {
                r#type: 2,
                term: 1,
                index: 3,
                data: Vec::new()
            }),
            Err(Error::UnknownEntryType {
                index: 3,
                entry_type: 2
            })
        ));
        let bad_json = pb::ConfChange {
            id: 1,
            r#type: 0,
            node_id: 2,
            context: b"{not json".to_vec(),
        };
        assert!(matches!(
            decode(pb::Entry {
                r#type: 1,
                term: 1,
                index: 4,
                data: bad_json.encode_to_vec()
            }),
            Err(Error::BadMemberJson { index: 4, .. })
        ));
    }
}
