//! One entry of etcd's Raft log, as read by `cairn-etcdwal`, turned into the entry cairn's
//! applier reads at the same index: the start-up import of an etcd data directory seeds
//! cairn's log with the entries past etcd's consistent index ([`super::etcd_import`]).
//!
//! The conversion is a pure function of the entry and the cluster id, so every member of a
//! cluster migrating in place writes the same bytes at the same index. The proposal id is
//! dropped (nobody waits on an imported entry); the proposer's user and auth revision stay,
//! so the applier checks permissions as etcd's did.
//!
//! | etcd entry                                          | cairn entry                     |
//! |-----------------------------------------------------|---------------------------------|
//! | Put, DeleteRange, Txn, Compaction, leases, Alarm, Range, auth and user/role requests | the request of the same name |
//! | UserAdd, UserChangePassword (3.5: `hashedPassword` in base64) | the bcrypt hash as text |
//! | UserAdd, UserChangePassword (3.4: the password)     | hashed at cost 10 with a salt from (cluster id, index) |
//! | Authenticate                                        | `InternalAuthenticateRequest`   |
//! | ClusterMemberAttrSet, v2 `PUT /0/members/<id>/attributes` | `publish`                 |
//! | ClusterVersionSet, DowngradeInfoSet, v2 `/0/version`, SYNC, reads | an empty entry    |
//! | a v2 write to the v2 store's keys                   | refused: cairn keeps no v2 store |
//! | AddNode, AddLearnerNode, RemoveNode conf changes     | the same change, with a `MemberChange` context |
//! | UpdateNode conf change                              | `member_update`                 |

use base64::Engine as _;
use cairn_etcdwal::{ConfChange, ConfChangeKind, Entry, Op, Payload, V2Effect};
use cairn_proto::cairnpb::{
    internal_request::Request, AuthHeader, InternalAuthenticateRequest, InternalRequest,
    MemberAttributes, MemberChange,
};
use cairn_proto::etcdserverpb::{self as api, Member};
use cairn_raft::{Change, SeedPayload};
use prost::Message;
use sha2::{Digest, Sha256};

/// The bcrypt cost etcd 3.4 hashed passwords at (Go's `bcrypt.DefaultCost`).
const ETCD34_BCRYPT_COST: u32 = 10;

/// Why an entry cannot be carried over.
#[derive(Debug, thiserror::Error)]
pub(crate) enum EntryError {
    #[error("raft entry {index} writes to etcd's v2 store ({method} {path}): a v2 store with data cannot be imported, as cairn keeps no v2 store; remove the v2 data (or migrate it to v3 with `etcdctl migrate`) first")]
    V2Store {
        index: u64,
        method: String,
        path: String,
    },
    #[error("raft entry {index}: hashedPassword of user {user:?} is not base64")]
    BadHashedPassword { index: u64, user: String },
    #[error("raft entry {index}: cannot hash the password of user {user:?}: {why}")]
    Hash {
        index: u64,
        user: String,
        why: String,
    },
}

/// The entry cairn's log holds at `e.index` for etcd's `e`, in cluster `cluster_id`.
pub(crate) fn convert(e: &Entry, cluster_id: u64) -> Result<SeedPayload, EntryError> {
    Ok(match &e.payload {
        Payload::Empty => SeedPayload::Empty,
        Payload::ConfChange(cc) => conf_change(cc),
        Payload::V2(v2) => match &v2.effect {
            V2Effect::MemberAttributes {
                member_id,
                name,
                client_urls,
            } => data(
                Request::Publish(MemberAttributes {
                    id: *member_id,
                    name: name.clone(),
                    client_urls: client_urls.clone(),
                }),
                None,
            ),
            V2Effect::ClusterVersion(_) | V2Effect::Sync | V2Effect::Read => SeedPayload::Empty,
            V2Effect::V2Store => {
                return Err(EntryError::V2Store {
                    index: e.index,
                    method: v2.method.clone(),
                    path: v2.path.clone(),
                })
            }
        },
        Payload::Request(r) => {
            let auth = (!r.username.is_empty()).then(|| AuthHeader {
                username: r.username.clone(),
                auth_revision: r.auth_revision,
            });
            let Some(request) = request(&r.op, e.index, cluster_id)? else {
                return Ok(SeedPayload::Empty);
            };
            data(request, auth)
        }
    })
}

fn data(request: Request, auth: Option<AuthHeader>) -> SeedPayload {
    SeedPayload::Data(
        InternalRequest {
            id: 0,
            request: Some(request),
            auth,
        }
        .encode_to_vec(),
    )
}

/// cairn's request for etcd's `op`; `None` for what changes nothing cairn keeps.
fn request(op: &Op, index: u64, cluster_id: u64) -> Result<Option<Request>, EntryError> {
    Ok(Some(match op.clone() {
        Op::Range(r) => Request::Range(r),
        Op::Put(r) => Request::Put(r),
        Op::DeleteRange(r) => Request::DeleteRange(r),
        Op::Txn(r) => Request::Txn(r),
        Op::Compaction(r) => Request::Compaction(r),
        Op::LeaseGrant(r) => Request::LeaseGrant(r),
        Op::LeaseRevoke(r) => Request::LeaseRevoke(r),
        Op::LeaseCheckpoint(r) => Request::LeaseCheckpoint(r),
        Op::Alarm(r) => Request::Alarm(r),
        Op::AuthEnable => Request::AuthEnable(api::AuthEnableRequest {}),
        Op::AuthDisable => Request::AuthDisable(api::AuthDisableRequest {}),
        Op::AuthStatus => Request::AuthStatus(api::AuthStatusRequest {}),
        Op::Authenticate { name, simple_token } => {
            Request::Authenticate(InternalAuthenticateRequest { name, simple_token })
        }
        Op::UserAdd(mut r) => {
            let no_password = r.options.as_ref().is_some_and(|o| o.no_password);
            if !no_password {
                r.hashed_password =
                    bcrypt_text(&r.name, &r.password, &r.hashed_password, index, cluster_id)?;
            }
            r.password.clear();
            Request::UserAdd(r)
        }
        Op::UserChangePassword(mut r) => {
            r.hashed_password =
                bcrypt_text(&r.name, &r.password, &r.hashed_password, index, cluster_id)?;
            r.password.clear();
            Request::UserChangePassword(r)
        }
        Op::UserDelete(r) => Request::UserDelete(r),
        Op::UserGrantRole(r) => Request::UserGrantRole(r),
        Op::UserGet(r) => Request::UserGet(r),
        Op::UserRevokeRole(r) => Request::UserRevokeRole(r),
        Op::RoleAdd(r) => Request::RoleAdd(r),
        Op::RoleGrantPermission(r) => Request::RoleGrantPermission(r),
        Op::RoleGet(r) => Request::RoleGet(r),
        Op::RoleRevokePermission(r) => Request::RoleRevokePermission(r),
        Op::RoleDelete(r) => Request::RoleDelete(r),
        Op::UserList => Request::UserList(api::AuthUserListRequest {}),
        Op::RoleList => Request::RoleList(api::AuthRoleListRequest {}),
        Op::ClusterMemberAttrSet {
            member_id,
            name,
            client_urls,
        } => Request::Publish(MemberAttributes {
            id: member_id,
            name,
            client_urls,
        }),
        Op::ClusterVersionSet { .. } | Op::DowngradeInfoSet { .. } => return Ok(None),
    }))
}

/// The bcrypt hash, as text, of a password etcd put in an entry: 3.5's `hashedPassword`
/// decoded from base64, or 3.4's password hashed with a salt every member derives alike.
fn bcrypt_text(
    user: &str,
    password: &str,
    hashed_base64: &str,
    index: u64,
    cluster_id: u64,
) -> Result<String, EntryError> {
    if !hashed_base64.is_empty() {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(hashed_base64)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| EntryError::BadHashedPassword {
                index,
                user: user.to_string(),
            })?;
        return Ok(raw);
    }
    let mut h = Sha256::new();
    h.update(b"cairn etcd-import salt");
    h.update(cluster_id.to_be_bytes());
    h.update(index.to_be_bytes());
    let digest = h.finalize();
    let mut salt = [0u8; 16];
    salt.copy_from_slice(&digest[..16]);
    cairn_auth::bcrypt::hash_with_salt(password.as_bytes(), ETCD34_BCRYPT_COST, salt).map_err(|e| {
        EntryError::Hash {
            index,
            user: user.to_string(),
            why: e.to_string(),
        }
    })
}

fn conf_change(cc: &ConfChange) -> SeedPayload {
    let member = cc.member.as_ref().map(|m| Member {
        id: if m.id != 0 { m.id } else { cc.node_id },
        name: m.name.clone(),
        peer_ur_ls: m.peer_urls.clone(),
        client_ur_ls: m.client_urls.clone(),
        is_learner: m.is_learner,
    });
    let change = match cc.kind {
        ConfChangeKind::AddNode if cc.member.as_ref().is_some_and(|m| m.is_promote) => {
            Change::Promote
        }
        ConfChangeKind::AddNode => Change::AddVoter,
        ConfChangeKind::AddLearnerNode => Change::AddLearner,
        ConfChangeKind::RemoveNode => Change::Remove,
        ConfChangeKind::UpdateNode => {
            return data(
                Request::MemberUpdate(api::MemberUpdateRequest {
                    id: cc.node_id,
                    peer_ur_ls: member.map(|m| m.peer_ur_ls).unwrap_or_default(),
                }),
                None,
            )
        }
    };
    SeedPayload::Membership {
        change,
        id: cc.node_id,
        context: MemberChange { waiter: 0, member }.encode_to_vec(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use cairn_etcdwal::{Request as EtcdRequest, V2Request};

    fn entry(index: u64, op: Op) -> Entry {
        Entry {
            index,
            term: 2,
            payload: Payload::Request(Box::new(EtcdRequest {
                id: 77,
                username: String::new(),
                auth_revision: 0,
                op,
            })),
        }
    }

    fn decoded(p: SeedPayload) -> InternalRequest {
        match p {
            SeedPayload::Data(d) => InternalRequest::decode(d.as_slice()).unwrap(),
            other => panic!("not a request: {other:?}"),
        }
    }

    fn user_add(password: &str, hashed: &str) -> Op {
        Op::UserAdd(api::AuthUserAddRequest {
            name: "u".into(),
            password: password.into(),
            hashed_password: hashed.into(),
            options: None,
        })
    }

    fn hash_of(r: InternalRequest) -> String {
        match r.request {
            Some(Request::UserAdd(u)) => {
                assert!(u.password.is_empty(), "the password is never kept");
                u.hashed_password
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_34_password_hashes_alike_on_every_member_and_verifies() {
        let a = hash_of(decoded(convert(&entry(9, user_add("pw", "")), 5).unwrap()));
        let b = hash_of(decoded(convert(&entry(9, user_add("pw", "")), 5).unwrap()));
        assert_eq!(a, b);
        assert!(cairn_auth::bcrypt::verify(b"pw", a.as_bytes()));
        assert!(!cairn_auth::bcrypt::verify(b"other", a.as_bytes()));
        let elsewhere = hash_of(decoded(convert(&entry(10, user_add("pw", "")), 5).unwrap()));
        assert_ne!(a, elsewhere, "the salt follows the index");
    }

    #[test]
    fn a_35_hashed_password_is_taken_from_base64() {
        let hash = cairn_auth::bcrypt::hash_with_salt(b"pw", 4, [7; 16]).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(&hash);
        let got = hash_of(decoded(convert(&entry(3, user_add("", &b64)), 5).unwrap()));
        assert_eq!(got, hash);
        let err = convert(&entry(3, user_add("", "not base64!")), 5).unwrap_err();
        assert!(err.to_string().contains("not base64"), "{err}");
    }

    #[test]
    fn requests_keep_the_user_and_lose_the_proposal_id() {
        let mut e = entry(
            4,
            Op::Put(api::PutRequest {
                key: b"k".to_vec(),
                value: b"v".to_vec(),
                ..Default::default()
            }),
        );
        if let Payload::Request(r) = &mut e.payload {
            r.username = "root".into();
            r.auth_revision = 12;
        }
        let r = decoded(convert(&e, 1).unwrap());
        assert_eq!(r.id, 0);
        assert_eq!(
            r.auth,
            Some(AuthHeader {
                username: "root".into(),
                auth_revision: 12
            })
        );
        assert!(matches!(r.request, Some(Request::Put(p)) if p.key == b"k"));
    }

    #[test]
    fn v2_entries_publish_or_vanish_or_refuse() {
        let v2 = |effect, path: &str| Entry {
            index: 6,
            term: 2,
            payload: Payload::V2(V2Request {
                id: 1,
                method: "PUT".into(),
                path: path.into(),
                value: String::new(),
                effect,
            }),
        };
        let attrs = V2Effect::MemberAttributes {
            member_id: 0xab,
            name: "m1".into(),
            client_urls: vec!["http://127.0.0.1:2379".into()],
        };
        let r = decoded(convert(&v2(attrs, "/0/members/ab/attributes"), 1).unwrap());
        assert!(matches!(r.request, Some(Request::Publish(a)) if a.id == 0xab && a.name == "m1"));
        let version = V2Effect::ClusterVersion("3.4.0".into());
        assert_eq!(
            convert(&v2(version, "/0/version"), 1).unwrap(),
            SeedPayload::Empty
        );
        let err = convert(&v2(V2Effect::V2Store, "/1/foo"), 1).unwrap_err();
        assert!(err.to_string().contains("a v2 store with data"), "{err}");
    }

    #[test]
    fn conf_changes_carry_the_member() {
        let cc = |kind, is_promote| Entry {
            index: 8,
            term: 3,
            payload: Payload::ConfChange(ConfChange {
                id: 5,
                kind,
                node_id: 0x42,
                member: Some(cairn_etcdwal::Member {
                    id: 0x42,
                    peer_urls: vec!["http://127.0.0.1:2380".into()],
                    name: "m9".into(),
                    is_promote,
                    ..Default::default()
                }),
            }),
        };
        let SeedPayload::Membership {
            change,
            id,
            context,
        } = convert(&cc(ConfChangeKind::AddNode, false), 1).unwrap()
        else {
            panic!("not a membership change");
        };
        assert_eq!((change, id), (Change::AddVoter, 0x42));
        let m = MemberChange::decode(context.as_slice()).unwrap();
        assert_eq!(m.waiter, 0);
        assert_eq!(m.member.unwrap().name, "m9");
        assert!(matches!(
            convert(&cc(ConfChangeKind::AddNode, true), 1).unwrap(),
            SeedPayload::Membership {
                change: Change::Promote,
                ..
            }
        ));
        let r = decoded(convert(&cc(ConfChangeKind::UpdateNode, false), 1).unwrap());
        assert!(matches!(r.request, Some(Request::MemberUpdate(u)) if u.id == 0x42));
    }
}
