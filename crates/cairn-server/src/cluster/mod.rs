//! The members of the cluster: ids, names, peer and client URLs, kept in the backend's meta
//! records by the applier so every member lists the same set.
//!
//! At bootstrap every member writes the set from `--initial-cluster` (names and peer URLs).
//! Each member then publishes its name and client URLs through Raft, as etcd does.
//!
//! `policy.rs` decides which membership changes etcd would allow, and when; `gate.rs`
//! which peer traffic comes from another current member of this cluster.
//!
//! Owns the member set's record. Must not propose anything or reach peers: the server
//! core does both.

pub(crate) mod gate;
pub mod policy;

use std::time::Instant;

use cairn_proto::cairnpb::{MemberAttributes, MemberSet};
use cairn_proto::etcdserverpb::Member;
use parking_lot::RwLock;
use prost::Message;

/// Where members are reached: the transport's view of the member set. The applier keeps
/// it in step with membership changes; the reconfiguration policy asks it who answers.
pub trait PeerDirectory: Send + Sync + 'static {
    /// Sends to member `id` at `urls` from now on (replacing its old URLs, if any).
    fn set_peer(&self, id: u64, urls: &[String]);
    /// Stops sending to member `id`.
    fn remove_peer(&self, id: u64);
    /// Since when member `id` has answered every send; `None` while it does not answer.
    fn active_since(&self, id: u64) -> Option<Instant>;
    /// The bytes sent to each peer so far (none where the transport does not count them).
    fn sent_bytes(&self) -> Vec<(u64, u64)> {
        Vec::new()
    }
}

/// The meta key the member set is stored under.
pub const META_KEY: &str = cairn_migrate::layout::MEMBERS_KEY;

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

    /// Replaces the whole set.
    pub fn replace(&self, mut list: Vec<Member>) {
        list.sort_by_key(|m| m.id);
        *self.list.write() = list;
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

    /// Adds a member, or turns a learner into a voter when `member` is a voter already
    /// listed; false if nothing changed.
    pub fn add_or_promote(&self, member: &Member) -> bool {
        let mut list = self.list.write();
        if let Some(m) = list.iter_mut().find(|m| m.id == member.id) {
            if m.is_learner && !member.is_learner {
                m.is_learner = false;
                return true;
            }
            return false;
        }
        list.push(member.clone());
        list.sort_by_key(|m| m.id);
        true
    }

    /// Removes member `id`; false if it was not a member.
    pub fn remove(&self, id: u64) -> bool {
        let mut list = self.list.write();
        let before = list.len();
        list.retain(|m| m.id != id);
        list.len() != before
    }

    /// Replaces member `id`'s peer URLs; false if it is not a member.
    pub fn update_peer_urls(&self, id: u64, peer_urls: &[String]) -> bool {
        match self.list.write().iter_mut().find(|m| m.id == id) {
            Some(m) => {
                m.peer_ur_ls = peer_urls.to_vec();
                true
            }
            None => false,
        }
    }

    /// Member `id`, if it is one.
    pub fn get(&self, id: u64) -> Option<Member> {
        self.list.read().iter().find(|m| m.id == id).cloned()
    }

    /// Whether `id` is a member; unlike [`Members::get`], copies nothing (the peer gate
    /// asks for each forwarded Raft message and each peer request).
    pub fn contains(&self, id: u64) -> bool {
        self.list.read().iter().any(|m| m.id == id)
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
