//! Who may talk to this member on its peer URLs: [`PeerGate`].
//!
//! Without peer TLS a member proves nothing about itself; it names itself. What the gate
//! checks is what can be checked from the names: the traffic is for this cluster and this
//! member, and it names as its sender another current member. etcd without peer TLS checks
//! no more (its cluster-id header and its list of removed members). So a stranger who
//! knows a member's id (every response header carries it) gets past the gate, and what it
//! sends next is checked again: raft streams refuse messages not between the stream's two
//! ends, the Raft thread refuses what no correct peer sends, and a snapshot must open as a
//! backend that matches its metadata before anything of this member's state is touched.
//! Peer TLS with client certificates is what would make the sender's name a proof.
//!
//! Every path in names itself the same way: a raft stream in its opening, a snapshot in its
//! header chunk, and a lease request in gRPC metadata ([`identify`]). Every refusal is
//! counted in `cairn_server_peer_refused_total` by path and logged at warn.

use std::sync::Arc;

use prometheus::IntCounterVec;
use tonic::metadata::MetadataValue;

use super::Members;

/// The gRPC metadata a member's lease requests carry: the cluster, the sender and the
/// addressee, in hexadecimal.
pub(crate) const CLUSTER_ID_KEY: &str = "cairn-cluster-id";
pub(crate) const FROM_KEY: &str = "cairn-from";
pub(crate) const TO_KEY: &str = "cairn-to";

/// The ways into a member on its peer URLs, as the refusal metric labels them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PeerPath {
    Stream,
    Snapshot,
    Lease,
    Hash,
}

impl PeerPath {
    fn label(self) -> &'static str {
        match self {
            PeerPath::Stream => "stream",
            PeerPath::Snapshot => "snapshot",
            PeerPath::Lease => "lease",
            PeerPath::Hash => "hash",
        }
    }
}

/// Why the gate turned traffic away.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refusal {
    #[error("request cluster ID mismatch (got {got:x} want {want:x})")]
    Cluster { got: u64, want: u64 },
    #[error("request sent to member {to:x}, this is member {me:x}")]
    Member { to: u64, me: u64 },
    #[error("sender {0:x} is not another member of this cluster")]
    UnknownSender(u64),
    #[error("request does not name its cluster, sender and addressee")]
    Anonymous,
}

impl Refusal {
    /// The gRPC status a refused request gets.
    pub(crate) fn status(&self) -> tonic::Status {
        match self {
            Refusal::Cluster { .. } | Refusal::Member { .. } => {
                tonic::Status::failed_precondition(self.to_string())
            }
            Refusal::UnknownSender(_) | Refusal::Anonymous => {
                tonic::Status::permission_denied(self.to_string())
            }
        }
    }
}

/// Checks who peer traffic is from and for. Cloning shares it.
#[derive(Clone)]
pub(crate) struct PeerGate {
    pub cluster_id: u64,
    pub member_id: u64,
    /// The members as applied: who may send.
    pub members: Arc<Members>,
    /// Refusals by path.
    pub refused: IntCounterVec,
}

impl PeerGate {
    /// Lets through traffic for cluster `cluster_id` from member `from` to member `to` if
    /// it is for this cluster and member and `from` is another current member.
    pub(crate) fn admit(&self, cluster_id: u64, from: u64, to: u64) -> Result<(), Refusal> {
        if cluster_id != self.cluster_id {
            return Err(Refusal::Cluster {
                got: cluster_id,
                want: self.cluster_id,
            });
        }
        if to != self.member_id {
            return Err(Refusal::Member {
                to,
                me: self.member_id,
            });
        }
        if from == self.member_id || !self.members.contains(from) {
            return Err(Refusal::UnknownSender(from));
        }
        Ok(())
    }

    /// As [`Self::admit`], for a gRPC request that names its ends in metadata
    /// ([`identify`]); returns the sender. A refusal is counted and logged.
    pub(crate) fn admit_request<T>(
        &self,
        path: PeerPath,
        r: &tonic::Request<T>,
    ) -> Result<u64, tonic::Status> {
        let word = |key: &str| {
            r.metadata()
                .get(key)
                .and_then(|v| v.to_str().ok())
                .and_then(|s| u64::from_str_radix(s, 16).ok())
        };
        let checked = match (word(CLUSTER_ID_KEY), word(FROM_KEY), word(TO_KEY)) {
            (Some(cluster_id), Some(from), Some(to)) => {
                self.admit(cluster_id, from, to).map(|()| from)
            }
            _ => Err(Refusal::Anonymous),
        };
        checked.map_err(|why| {
            self.refuse(path, word(FROM_KEY).unwrap_or(0), &why);
            why.status()
        })
    }

    /// Counts and logs a refusal of traffic on `path` that named `from` as its sender.
    pub(crate) fn refuse(&self, path: PeerPath, from: u64, why: &dyn std::fmt::Display) {
        self.refused.with_label_values(&[path.label()]).inc();
        tracing::warn!(
            path = path.label(),
            remote_peer_id = %format!("{from:x}"),
            error = %why,
            "refused peer traffic"
        );
    }
}

/// Names cluster `cluster_id`, sender `from` and addressee `to` in request `r`'s metadata,
/// as [`PeerGate::admit_request`] reads them.
pub(crate) fn identify<T>(r: &mut tonic::Request<T>, cluster_id: u64, from: u64, to: u64) {
    for (key, v) in [(CLUSTER_ID_KEY, cluster_id), (FROM_KEY, from), (TO_KEY, to)] {
        if let Ok(v) = MetadataValue::try_from(format!("{v:x}")) {
            r.metadata_mut().insert(key, v);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    /// A gate of member 7 in cluster 1 whose other members are 8 and 9.
    pub(crate) fn gate() -> PeerGate {
        let members = Members::initial(&[
            (7, "a".into(), vec!["http://127.0.0.1:1".into()]),
            (8, "b".into(), vec!["http://127.0.0.1:2".into()]),
            (9, "c".into(), vec!["http://127.0.0.1:3".into()]),
        ]);
        PeerGate {
            cluster_id: 1,
            member_id: 7,
            members: Arc::new(members),
            refused: IntCounterVec::new(prometheus::Opts::new("refused", "refused"), &["path"])
                .unwrap(),
        }
    }

    #[test]
    fn only_another_current_member_of_this_cluster_gets_in() {
        let g = gate();
        let cases = [
            ((1, 8, 7), Ok(())),
            ((1, 9, 7), Ok(())),
            ((2, 8, 7), Err(Refusal::Cluster { got: 2, want: 1 })),
            ((1, 8, 9), Err(Refusal::Member { to: 9, me: 7 })),
            ((1, 7, 7), Err(Refusal::UnknownSender(7))),
            ((1, 0, 7), Err(Refusal::UnknownSender(0))),
            ((1, 10, 7), Err(Refusal::UnknownSender(10))),
        ];
        for ((cluster, from, to), want) in cases {
            assert_eq!(g.admit(cluster, from, to), want, "{cluster} {from} {to}");
        }
        g.members.remove(9);
        assert_eq!(g.admit(1, 9, 7), Err(Refusal::UnknownSender(9)));
    }

    #[test]
    fn requests_name_their_ends_in_metadata_and_refusals_are_counted() {
        let g = gate();
        let mut ok = tonic::Request::new(());
        identify(&mut ok, 1, 8, 7);
        assert_eq!(g.admit_request(PeerPath::Lease, &ok).unwrap(), 8);
        let anonymous = tonic::Request::new(());
        let s = g.admit_request(PeerPath::Lease, &anonymous).unwrap_err();
        assert_eq!(s.code(), tonic::Code::PermissionDenied);
        let mut stranger = tonic::Request::new(());
        identify(&mut stranger, 1, 10, 7);
        let s = g.admit_request(PeerPath::Lease, &stranger).unwrap_err();
        assert_eq!(
            (s.code(), s.message()),
            (
                tonic::Code::PermissionDenied,
                "sender a is not another member of this cluster"
            )
        );
        let mut garbled = tonic::Request::new(());
        garbled
            .metadata_mut()
            .insert(CLUSTER_ID_KEY, MetadataValue::from_static("zz"));
        assert!(g.admit_request(PeerPath::Lease, &garbled).is_err());
        assert_eq!(g.refused.with_label_values(&["lease"]).get(), 3);
        assert_eq!(g.refused.with_label_values(&["stream"]).get(), 0);
    }
}
