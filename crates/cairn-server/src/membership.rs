//! The members of the cluster: ids, names, peer and client URLs, kept in the backend's meta
//! records by the applier so every member lists the same set.
//!
//! At bootstrap every member writes the set from `--initial-cluster` (names and peer URLs).
//! Each member then publishes its name and client URLs through Raft, as etcd does.

use cairn_proto::cairnpb::{MemberAttributes, MemberSet};
use cairn_proto::etcdserverpb::Member;
use parking_lot::RwLock;
use prost::Message;

/// The meta key the member set is stored under.
pub const META_KEY: &str = "members";

/// The member set as last applied.
#[derive(Default)]
pub struct Members {
    /// Members in id order. Written only by the applier (and at bootstrap).
    list: RwLock<Vec<Member>>,
}

impl Members {
    /// The set for a new cluster: every member of `--initial-cluster`, with no client URLs
    /// until it publishes them.
    pub fn initial(members: &[(u64, String, Vec<String>)]) -> Members {
        let mut list: Vec<Member> = members
            .iter()
            .map(|(id, name, peer_urls)| Member {
                id: *id,
                name: name.clone(),
                peer_ur_ls: peer_urls.clone(),
                client_ur_ls: vec![],
                is_learner: false,
            })
            .collect();
        list.sort_by_key(|m| m.id);
        Members {
            list: RwLock::new(list),
        }
    }

    /// Loads the set persisted under [`META_KEY`].
    pub fn decode(bytes: Option<&[u8]>) -> Members {
        let list = bytes
            .and_then(|b| MemberSet::decode(b).ok())
            .map(|s| s.members)
            .unwrap_or_default();
        Members {
            list: RwLock::new(list),
        }
    }

    /// Replaces the set with the one persisted in `bytes` (after a snapshot restore).
    pub fn reload(&self, bytes: Option<&[u8]>) {
        *self.list.write() = Members::decode(bytes).list.into_inner();
    }

    /// The bytes to persist.
    pub fn encode(&self) -> Vec<u8> {
        MemberSet {
            members: self.list.read().clone(),
        }
        .encode_to_vec()
    }

    /// Records a member's published name and client URLs; false if it is not a member.
    pub fn publish(&self, attrs: &MemberAttributes) -> bool {
        let mut list = self.list.write();
        match list.iter_mut().find(|m| m.id == attrs.id) {
            Some(m) => {
                m.name = attrs.name.clone();
                m.client_ur_ls = attrs.client_urls.clone();
                true
            }
            None => false,
        }
    }

    /// Every member, in id order.
    pub fn list(&self) -> Vec<Member> {
        self.list.read().clone()
    }

    /// Member ids with their peer URLs.
    pub fn peers(&self) -> Vec<(u64, Vec<String>)> {
        self.list
            .read()
            .iter()
            .map(|m| (m.id, m.peer_ur_ls.clone()))
            .collect()
    }

    /// Whether the set is empty (a store that has never been bootstrapped).
    pub fn is_empty(&self) -> bool {
        self.list.read().is_empty()
    }
}
