//! Who may join, be promoted or leave, and when: etcd's checks on membership changes,
//! strict reconfiguration (`--strict-reconfig-check`) among them.
//!
//! Pure decisions over the member list, this member's id and since when each peer has
//! answered; proposing the change is the caller's.

use std::time::{Duration, Instant};

use cairn_proto::etcdserverpb::Member;
use cairn_proto::EtcdError;

/// How many learners a cluster may have at once, as etcd allows.
const MAX_LEARNERS: usize = 1;

/// How long a peer must have answered to count as connected, as etcd's health interval.
pub const HEALTH_INTERVAL: Duration = Duration::from_secs(5);

/// What a membership decision looks at.
pub struct Reconfiguration<'a, F: Fn(u64) -> Option<Instant>> {
    /// The members as last applied.
    pub members: &'a [Member],
    /// This member's id.
    pub me: u64,
    /// `--strict-reconfig-check`.
    pub strict: bool,
    /// Since when a peer has answered every send; `None` while it does not answer.
    pub active_since: F,
    /// The time the decision is made at.
    pub now: Instant,
}

impl<F: Fn(u64) -> Option<Instant>> Reconfiguration<'_, F> {
    /// Checks that a member with `peer_urls` may be added (as a learner or a voter).
    pub fn check_add(&self, peer_urls: &[String], is_learner: bool) -> Result<(), EtcdError> {
        check_peer_urls(peer_urls)?;
        if urls_taken(self.members, peer_urls, 0) {
            return Err(EtcdError::PeerUrlExist);
        }
        if is_learner {
            if self.members.iter().filter(|m| m.is_learner).count() >= MAX_LEARNERS {
                return Err(EtcdError::TooManyLearners);
            }
        } else if self.strict && !enough_started(self.members, self.voters() + 1, None) {
            return Err(EtcdError::MemberNotEnoughStarted);
        }
        if self.strict && !self.connected_to_all_voters() {
            return Err(EtcdError::Unhealthy);
        }
        Ok(())
    }

    /// Checks that member `id` may be removed, and returns it.
    pub fn check_remove(&self, id: u64) -> Result<Member, EtcdError> {
        let member = self.member(id)?;
        if !member.is_learner && self.strict {
            let after = self.voters().saturating_sub(1);
            if !enough_started(self.members, after, Some(id)) {
                return Err(EtcdError::MemberNotEnoughStarted);
            }
            if !self.quorum_after_removal(id) {
                return Err(EtcdError::Unhealthy);
            }
        }
        Ok(member)
    }

    /// Checks that learner `id` may be promoted, given how far its log (`matched`) and
    /// the leader's match, when this member leads and knows; returns it as a voter.
    pub fn check_promote(&self, id: u64, matched: Option<(u64, u64)>) -> Result<Member, EtcdError> {
        let mut member = self.member(id)?;
        if !member.is_learner {
            return Err(EtcdError::MemberNotLearner);
        }
        if let Some((learner, leader)) = matched {
            if !learner_ready(learner, leader) {
                return Err(EtcdError::LearnerNotReady);
            }
        }
        member.is_learner = false;
        Ok(member)
    }

    /// Checks that member `id` may move to `peer_urls`.
    pub fn check_update(&self, id: u64, peer_urls: &[String]) -> Result<(), EtcdError> {
        check_peer_urls(peer_urls)?;
        self.member(id)?;
        if urls_taken(self.members, peer_urls, id) {
            return Err(EtcdError::PeerUrlExist);
        }
        Ok(())
    }

    fn member(&self, id: u64) -> Result<Member, EtcdError> {
        self.members
            .iter()
            .find(|m| m.id == id)
            .cloned()
            .ok_or(EtcdError::MemberNotFound)
    }

    fn voters(&self) -> usize {
        self.members.iter().filter(|m| !m.is_learner).count()
    }

    /// Whether peer `id` has answered for the whole health interval.
    fn connected(&self, id: u64) -> bool {
        let since = self.now.checked_sub(HEALTH_INTERVAL);
        match ((self.active_since)(id), since) {
            (Some(t), Some(since)) => t <= since,
            _ => false,
        }
    }

    /// Whether this member has been connected to every other voter for the health
    /// interval (etcd asks this before adding a member under strict reconfiguration).
    fn connected_to_all_voters(&self) -> bool {
        self.members
            .iter()
            .filter(|m| !m.is_learner && m.id != self.me)
            .all(|m| self.connected(m.id))
    }

    /// Whether removing voter `id` leaves a quorum of connected voters (etcd's check: a
    /// member that is down may always go; otherwise the members connected for the health
    /// interval, this one included and `id` excluded, must stay a quorum of the voters).
    fn quorum_after_removal(&self, id: u64) -> bool {
        if id != self.me && (self.active_since)(id).is_none() {
            return true;
        }
        let voters: Vec<&Member> = self.members.iter().filter(|m| !m.is_learner).collect();
        let connected = voters
            .iter()
            .filter(|m| m.id == self.me || self.connected(m.id))
            .count();
        connected.saturating_sub(1) > (voters.len() - 1) / 2
    }
}

/// Checks peer URLs as etcd does: http(s) URLs with a host and port, at least one.
fn check_peer_urls(urls: &[String]) -> Result<(), EtcdError> {
    let ok = !urls.is_empty()
        && urls.iter().all(|u| {
            (u.starts_with("http://") || u.starts_with("https://"))
                && crate::config::host_port(u).is_some()
        });
    if ok {
        Ok(())
    } else {
        Err(EtcdError::MemberBadUrls)
    }
}

/// Whether another member than `except` already uses one of `urls`.
fn urls_taken(members: &[Member], urls: &[String], except: u64) -> bool {
    members
        .iter()
        .filter(|m| m.id != except)
        .any(|m| m.peer_ur_ls.iter().any(|u| urls.contains(u)))
}

/// etcd's strict reconfiguration rule: a change must leave at least a quorum of the voters
/// it produces among the members that have started (published their name).
fn enough_started(members: &[Member], voters_after: usize, removing: Option<u64>) -> bool {
    let started = members
        .iter()
        .filter(|m| !m.is_learner && !m.name.is_empty() && Some(m.id) != removing)
        .count();
    started > voters_after / 2
}

/// Whether a learner whose log matches the leader's up to `learner` (of the leader's
/// `leader`) may be promoted: etcd asks for 90%.
fn learner_ready(learner: u64, leader: u64) -> bool {
    learner as f64 >= leader as f64 * 0.9
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(id: u64, name: &str, learner: bool) -> Member {
        Member {
            id,
            name: name.into(),
            peer_ur_ls: vec![format!("http://127.0.0.1:{id}")],
            client_ur_ls: vec![],
            is_learner: learner,
        }
    }

    #[test]
    fn strict_reconfiguration_counts_started_voters() {
        let three = [m(1, "a", false), m(2, "b", false), m(3, "", false)];
        // Adding a 4th voter needs 3 started; only 2 have started.
        assert!(!enough_started(&three, 4, None));
        let started = [m(1, "a", false), m(2, "b", false), m(3, "c", false)];
        assert!(enough_started(&started, 4, None));
        // Removing one of three started voters leaves 2 of 2.
        assert!(enough_started(&started, 2, Some(3)));
        // A learner does not count.
        let with_learner = [m(1, "a", false), m(2, "", false), m(3, "c", true)];
        assert!(!enough_started(&with_learner, 3, None));
    }

    #[test]
    fn learner_readiness_is_ninety_percent_of_the_leader() {
        assert!(learner_ready(90, 100));
        assert!(!learner_ready(89, 100));
        assert!(learner_ready(0, 0));
    }

    #[test]
    fn peer_url_checks() {
        assert_eq!(check_peer_urls(&[]), Err(EtcdError::MemberBadUrls));
        assert_eq!(
            check_peer_urls(&["127.0.0.1:2380".into()]),
            Err(EtcdError::MemberBadUrls)
        );
        assert_eq!(check_peer_urls(&["http://127.0.0.1:2380".into()]), Ok(()));
        let members = [m(1, "a", false)];
        assert!(urls_taken(&members, &["http://127.0.0.1:1".into()], 0));
        assert!(!urls_taken(&members, &["http://127.0.0.1:1".into()], 1));
    }

    /// Three started voters 1, 2, 3 seen from member 1, with peers answering since `since`
    /// (`None`: not answering).
    fn decide(
        members: &[Member],
        since: impl Fn(u64) -> Option<Duration>,
        check: impl FnOnce(
            &Reconfiguration<'_, &dyn Fn(u64) -> Option<Instant>>,
        ) -> Result<(), EtcdError>,
    ) -> Result<(), EtcdError> {
        let now = Instant::now() + Duration::from_secs(60);
        let active = move |id: u64| since(id).map(|ago| now - ago);
        let r = Reconfiguration {
            members,
            me: 1,
            strict: true,
            active_since: &active as &dyn Fn(u64) -> Option<Instant>,
            now,
        };
        check(&r)
    }

    #[test]
    fn strict_reconfiguration_table() {
        let started = [m(1, "a", false), m(2, "b", false), m(3, "c", false)];
        let long = |_| Some(Duration::from_secs(30));
        let just_now = |id| {
            (id != 3)
                .then_some(Duration::from_secs(30))
                .or(Some(Duration::ZERO))
        };
        let down3 = |id| (id != 3).then_some(Duration::from_secs(30));
        let url = vec!["http://127.0.0.1:9".to_string()];
        type Case = (&'static str, Result<(), EtcdError>, Result<(), EtcdError>);
        let cases: Vec<Case> = vec![
            (
                "add with every voter connected long enough",
                decide(&started, long, |r| r.check_add(&url, false)),
                Ok(()),
            ),
            (
                "add while a voter answers only since a moment",
                decide(&started, just_now, |r| r.check_add(&url, false)),
                Err(EtcdError::Unhealthy),
            ),
            (
                "add with a taken URL",
                decide(&started, long, |r| {
                    r.check_add(&["http://127.0.0.1:2".into()], false)
                }),
                Err(EtcdError::PeerUrlExist),
            ),
            (
                "remove a member that is down",
                decide(&started, down3, |r| r.check_remove(3).map(|_| ())),
                Ok(()),
            ),
            (
                "remove a connected voter while another is down",
                decide(&started, down3, |r| r.check_remove(2).map(|_| ())),
                Err(EtcdError::Unhealthy),
            ),
            (
                "remove an unknown member",
                decide(&started, long, |r| r.check_remove(9).map(|_| ())),
                Err(EtcdError::MemberNotFound),
            ),
            (
                "promote a voter",
                decide(&started, long, |r| r.check_promote(2, None).map(|_| ())),
                Err(EtcdError::MemberNotLearner),
            ),
        ];
        for (name, got, want) in cases {
            assert_eq!(got, want, "{name}");
        }
        let with_learner = [m(1, "a", false), m(2, "b", false), m(4, "", true)];
        let promote = |matched| {
            decide(&with_learner, long, |r| {
                r.check_promote(4, matched).map(|p| assert!(!p.is_learner))
            })
        };
        assert_eq!(promote(Some((89, 100))), Err(EtcdError::LearnerNotReady));
        assert_eq!(promote(Some((95, 100))), Ok(()));
        assert_eq!(promote(None), Ok(()));
        let learner_url = vec!["http://127.0.0.1:10".to_string()];
        assert_eq!(
            decide(&with_learner, long, |r| r.check_add(&learner_url, true)),
            Err(EtcdError::TooManyLearners)
        );
    }
}
