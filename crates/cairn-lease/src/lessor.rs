//! The lessor: every lease of the member, the keys attached to each, and on the leader the
//! queues that say when a lease expires and when its remaining TTL is checkpointed.
//!
//! A worked example, TTLs in seconds, on the leader at time t:
//!
//! ```text
//! t=0   grant(7, ttl 10)        lease 7: ttl 10, expiry 10     expiry queue: (10, 7)
//! t=1   put k1 with lease 7     lease 7 keys {k1}               key index: k1 -> 7
//! t=4   renew(7)                lease 7: expiry 14              queue: (10, 7) (14, 7)
//! t=10  expired()               (10, 7) is stale: 7 now expires at 14; dropped
//! t=14  expired() -> [7]        queue: (17, 7), proposed again at 17 if still there
//! t=14  revoke(7) applied       k1 deleted; lease 7 and its record gone
//! ```
//!
//! The queues are binary heaps of (time, lease id) with lazy removal: an entry whose lease
//! is gone, or whose lease's deadline has moved, is dropped when it reaches the top.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_proto::cairnpb::LeaseRecord;
use cairn_proto::etcdserverpb::LeaseCheckpoint;
use parking_lot::Mutex;
use prost::Message;

use crate::{Clock, LeaseBackend, LeaseError, EXPIRED_RETRY, MAX_LEASE_TTL, REVOKE_RATE};

/// How the lessor behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LessorConfig {
    /// The shortest TTL granted; shorter requests are raised to it ([`crate::min_ttl`]).
    pub min_ttl: i64,
    /// How often the primary checkpoints remaining TTLs; `None` turns checkpoints off.
    pub checkpoint_interval: Option<Duration>,
}

/// A granted lease, as the grant's response reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Granted {
    pub id: i64,
    pub ttl: i64,
}

/// A renewed lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Renewed {
    /// The lease's granted TTL, which a keep-alive reports.
    pub ttl: i64,
    /// A checkpoint is in force and must be cleared through Raft (a checkpoint of 0), so a
    /// later leader does not resume the lease from the old remaining TTL.
    pub clear_checkpoint: bool,
}

/// A lease's time to live, as LeaseTimeToLive reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeToLive {
    /// Whole seconds left (truncated toward zero, negative once past the deadline).
    pub remaining: i64,
    pub granted: i64,
    /// Attached keys in byte order, when asked for.
    pub keys: Vec<Vec<u8>>,
}

#[derive(Debug)]
struct Lease {
    ttl: i64,
    /// The last checkpoint's remaining TTL; 0 when none is in force.
    remaining_ttl: i64,
    /// When the lease expires; `None` while this member is not primary (or beyond what
    /// the clock can represent).
    expiry: Option<Instant>,
    keys: BTreeSet<Vec<u8>>,
    /// A checkpoint clear was proposed and has not been applied yet.
    clearing: bool,
    /// When the primary checkpoints this lease next, if it is queued; queue entries with
    /// another time are stale. Keeps one entry per lease however often it is checkpointed.
    checkpoint_at: Option<Instant>,
}

impl Lease {
    fn new(ttl: i64, remaining_ttl: i64) -> Lease {
        Lease {
            ttl,
            remaining_ttl,
            expiry: None,
            keys: BTreeSet::new(),
            clearing: false,
            checkpoint_at: None,
        }
    }

    /// The TTL a refresh starts from: the checkpointed remainder if there is one.
    fn effective_ttl(&self) -> i64 {
        if self.remaining_ttl > 0 {
            self.remaining_ttl
        } else {
            self.ttl
        }
    }

    fn record(&self, id: i64) -> Vec<u8> {
        LeaseRecord {
            id,
            ttl: self.ttl,
            remaining_ttl: self.remaining_ttl,
        }
        .encode_to_vec()
    }

    fn expired(&self, now: Instant) -> bool {
        self.expiry.is_some_and(|e| e <= now)
    }
}

fn deadline(now: Instant, extend: Duration, ttl: i64) -> Option<Instant> {
    now.checked_add(extend)?
        .checked_add(Duration::from_secs(ttl.max(0) as u64))
}

#[derive(Debug, Default)]
struct State {
    leases: HashMap<i64, Lease>,
    /// The lease each attached key belongs to.
    key_lease: HashMap<Vec<u8>, i64>,
    primary: bool,
    /// (deadline, id) for the primary's leases; see the module docs.
    expiry_queue: BinaryHeap<Reverse<(Instant, i64)>>,
    /// (when to checkpoint, id) for the primary's long leases.
    checkpoint_queue: BinaryHeap<Reverse<(Instant, i64)>>,
}

impl State {
    /// Sets lease `id`'s deadline `extend` after `now` (plus its effective TTL) and queues it.
    fn refresh(&mut self, id: i64, now: Instant, extend: Duration) {
        let Some(lease) = self.leases.get_mut(&id) else {
            return;
        };
        lease.expiry = deadline(now, extend, lease.effective_ttl());
        if let Some(e) = lease.expiry {
            self.expiry_queue.push(Reverse((e, id)));
        }
    }

    /// Queues lease `id`'s next checkpoint if it lives longer than one interval and none
    /// is queued.
    fn schedule_checkpoint(&mut self, id: i64, now: Instant, interval: Option<Duration>) {
        let (Some(interval), Some(lease)) = (interval, self.leases.get_mut(&id)) else {
            return;
        };
        if lease.checkpoint_at.is_some() || lease.effective_ttl() <= interval.as_secs() as i64 {
            return;
        }
        if let Some(at) = now.checked_add(interval) {
            lease.checkpoint_at = Some(at);
            self.checkpoint_queue.push(Reverse((at, id)));
        }
    }
}

/// The leases of one member. Shared by the applier (grant, revoke, checkpoint, keys), the
/// Lease service (renew, time to live, list) and the expiry task.
pub struct Lessor {
    cfg: LessorConfig,
    clock: Arc<dyn Clock>,
    /// Protects every lease and queue. Never held across an await or a Raft proposal; the
    /// applier holds it while it writes a lease's record into its (already open) batch.
    state: Mutex<State>,
}

impl Lessor {
    pub fn new(cfg: LessorConfig, clock: Arc<dyn Clock>) -> Lessor {
        Lessor {
            cfg,
            clock,
            state: Mutex::new(State::default()),
        }
    }

    pub fn config(&self) -> LessorConfig {
        self.cfg
    }

    /// Replaces every lease with the backend's records (at start, or after a snapshot
    /// was installed). No key is attached until [`Lessor::attach_key`] says so.
    pub fn recover(&self, records: &[(i64, Vec<u8>)]) -> Result<(), prost::DecodeError> {
        let mut leases = HashMap::with_capacity(records.len());
        for (id, bytes) in records {
            let r = LeaseRecord::decode(bytes.as_slice())?;
            leases.insert(*id, Lease::new(r.ttl, r.remaining_ttl));
        }
        let mut st = self.state.lock();
        let primary = st.primary;
        *st = State {
            leases,
            primary,
            ..State::default()
        };
        if primary {
            let now = self.clock.now();
            let ids: Vec<i64> = st.leases.keys().copied().collect();
            for id in ids {
                st.refresh(id, now, Duration::ZERO);
                st.schedule_checkpoint(id, now, self.cfg.checkpoint_interval);
            }
        }
        Ok(())
    }

    /// Grants lease `id` (non-zero) with `ttl` seconds, raised to the minimum TTL.
    pub fn grant<B: LeaseBackend>(
        &self,
        id: i64,
        ttl: i64,
        backend: &mut B,
    ) -> Result<Result<Granted, LeaseError>, B::Error> {
        if id == 0 {
            return Ok(Err(LeaseError::NotFound));
        }
        if ttl > MAX_LEASE_TTL {
            return Ok(Err(LeaseError::TtlTooLarge));
        }
        let mut st = self.state.lock();
        if st.leases.contains_key(&id) {
            return Ok(Err(LeaseError::Exists));
        }
        let lease = Lease::new(ttl.max(self.cfg.min_ttl), 0);
        let granted = Granted { id, ttl: lease.ttl };
        backend.put_lease(id, lease.record(id))?;
        st.leases.insert(id, lease);
        if st.primary {
            let now = self.clock.now();
            st.refresh(id, now, Duration::ZERO);
            st.schedule_checkpoint(id, now, self.cfg.checkpoint_interval);
        }
        Ok(Ok(granted))
    }

    /// Revokes lease `id`: deletes its keys (in one revision) and its record.
    pub fn revoke<B: LeaseBackend>(
        &self,
        id: i64,
        backend: &mut B,
    ) -> Result<Result<(), LeaseError>, B::Error> {
        let mut st = self.state.lock();
        let Some(lease) = st.leases.get(&id) else {
            return Ok(Err(LeaseError::NotFound));
        };
        let keys: Vec<Vec<u8>> = lease.keys.iter().cloned().collect();
        backend.delete_keys(&keys)?;
        backend.delete_lease(id)?;
        if let Some(lease) = st.leases.remove(&id) {
            for k in lease.keys {
                st.key_lease.remove(&k);
            }
        }
        Ok(Ok(()))
    }

    /// Records checkpointed remaining TTLs (a remaining TTL of 0 clears a checkpoint).
    pub fn checkpoint<B: LeaseBackend>(
        &self,
        checkpoints: &[LeaseCheckpoint],
        backend: &mut B,
    ) -> Result<(), B::Error> {
        let mut st = self.state.lock();
        let now = self.clock.now();
        for cp in checkpoints {
            let Some(lease) = st.leases.get_mut(&cp.id) else {
                continue;
            };
            lease.remaining_ttl = cp.remaining_ttl;
            if cp.remaining_ttl == 0 {
                lease.clearing = false;
            }
            backend.put_lease(cp.id, lease.record(cp.id))?;
            if st.primary {
                st.schedule_checkpoint(cp.id, now, self.cfg.checkpoint_interval);
            }
        }
        Ok(())
    }

    /// Whether lease `id` exists.
    pub fn exists(&self, id: i64) -> bool {
        self.state.lock().leases.contains_key(&id)
    }

    /// Attaches `key` to `lease` (0: to none), detaching it from the lease it had. A lease
    /// that does not exist attaches nothing.
    pub fn attach_key(&self, key: &[u8], lease: i64) {
        let mut guard = self.state.lock();
        let st = &mut *guard;
        let old = st.key_lease.get(key).copied().unwrap_or(0);
        if old == lease {
            return;
        }
        if old != 0 {
            st.key_lease.remove(key);
            if let Some(l) = st.leases.get_mut(&old) {
                l.keys.remove(key);
            }
        }
        if let Some(l) = st.leases.get_mut(&lease) {
            l.keys.insert(key.to_vec());
            st.key_lease.insert(key.to_vec(), lease);
        }
    }

    /// Renews lease `id` on the primary: its deadline becomes its full TTL from now.
    pub fn renew(&self, id: i64) -> Result<Renewed, LeaseError> {
        let mut st = self.state.lock();
        if !st.primary {
            return Err(LeaseError::NotPrimary);
        }
        let now = self.clock.now();
        let lease = st.leases.get_mut(&id).ok_or(LeaseError::NotFound)?;
        if lease.expired(now) {
            return Err(LeaseError::Expired);
        }
        let clear_checkpoint =
            self.cfg.checkpoint_interval.is_some() && lease.remaining_ttl > 0 && !lease.clearing;
        if clear_checkpoint {
            lease.clearing = true;
        }
        let ttl = lease.ttl;
        lease.expiry = deadline(now, Duration::ZERO, ttl);
        if let Some(e) = lease.expiry {
            st.expiry_queue.push(Reverse((e, id)));
        }
        Ok(Renewed {
            ttl,
            clear_checkpoint,
        })
    }

    /// Lease `id`'s time to live, with its keys if `keys`; `None` if there is no such lease.
    pub fn time_to_live(&self, id: i64, keys: bool) -> Option<TimeToLive> {
        let st = self.state.lock();
        let lease = st.leases.get(&id)?;
        let now = self.clock.now();
        let remaining = match lease.expiry {
            // etcd reports the largest duration for a lease without a deadline.
            None => i64::MAX / 1_000_000_000,
            Some(e) if e >= now => e.duration_since(now).as_secs() as i64,
            Some(e) => -(now.duration_since(e).as_secs() as i64),
        };
        Some(TimeToLive {
            remaining,
            granted: lease.ttl,
            keys: if keys {
                lease.keys.iter().cloned().collect()
            } else {
                Vec::new()
            },
        })
    }

    /// Every lease id, soonest deadline first (ties and leases without one by id).
    pub fn leases(&self) -> Vec<i64> {
        let st = self.state.lock();
        let mut all: Vec<(Option<Instant>, i64)> =
            st.leases.iter().map(|(id, l)| (l.expiry, *id)).collect();
        all.sort_by(|a, b| match (a.0, b.0) {
            (Some(x), Some(y)) => x.cmp(&y).then(a.1.cmp(&b.1)),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => a.1.cmp(&b.1),
        });
        all.into_iter().map(|(_, id)| id).collect()
    }

    /// Whether this member's lessor is primary (it leads).
    pub fn is_primary(&self) -> bool {
        self.state.lock().primary
    }

    /// Makes this lessor primary (its member now leads and has applied its term's first
    /// entry): every lease's deadline becomes its effective TTL (the checkpointed remainder,
    /// or the full TTL) plus `extend` from now. With many leases, deadlines that would pile
    /// up are spread so no second sees more than three quarters of the revoke rate.
    pub fn promote(&self, extend: Duration) {
        let mut st = self.state.lock();
        let now = self.clock.now();
        st.primary = true;
        st.expiry_queue.clear();
        st.checkpoint_queue.clear();
        for lease in st.leases.values_mut() {
            lease.checkpoint_at = None;
        }
        let ids: Vec<i64> = st.leases.keys().copied().collect();
        for &id in &ids {
            st.refresh(id, now, extend);
            st.schedule_checkpoint(id, now, self.cfg.checkpoint_interval);
        }
        if ids.len() < REVOKE_RATE {
            return;
        }
        let mut by_expiry: Vec<(Instant, i64)> = st
            .leases
            .iter()
            .filter_map(|(id, l)| l.expiry.map(|e| (e, *id)))
            .collect();
        by_expiry.sort();
        let Some(&(first, _)) = by_expiry.first() else {
            return;
        };
        let target = (3 * REVOKE_RATE / 4) as f64;
        let mut base = first;
        let mut next_window = base + Duration::from_secs(1);
        let mut expires = 0usize;
        for (expiry, id) in by_expiry {
            if expiry > next_window {
                base = expiry;
                next_window = base + Duration::from_secs(1);
                expires = 1;
                continue;
            }
            expires += 1;
            if expires as f64 <= target {
                continue;
            }
            let delay = Duration::from_secs_f64(expires as f64 / target)
                .saturating_sub(expiry.duration_since(base));
            next_window = base + delay;
            st.refresh(id, now, delay + extend);
        }
    }

    /// Stops being primary: leases keep no deadline until the next promotion.
    pub fn demote(&self) {
        let mut st = self.state.lock();
        st.primary = false;
        for lease in st.leases.values_mut() {
            lease.expiry = None;
            lease.clearing = false;
            lease.checkpoint_at = None;
        }
        st.expiry_queue.clear();
        st.checkpoint_queue.clear();
    }

    /// Up to `limit` leases past their deadline, for the primary to revoke. Each is
    /// returned again after [`EXPIRED_RETRY`] if it is still there.
    pub fn expired(&self, limit: usize) -> Vec<i64> {
        let mut guard = self.state.lock();
        let st = &mut *guard;
        let mut out = Vec::new();
        if !st.primary {
            return out;
        }
        let now = self.clock.now();
        let mut seen = HashSet::new();
        while out.len() < limit {
            let Some(&Reverse((at, id))) = st.expiry_queue.peek() else {
                break;
            };
            if at > now {
                break;
            }
            st.expiry_queue.pop();
            let Some(lease) = st.leases.get(&id) else {
                continue;
            };
            if !lease.expired(now) || !seen.insert(id) {
                // Renewed since (its new deadline has its own entry), or already taken.
                continue;
            }
            out.push(id);
            st.expiry_queue.push(Reverse((now + EXPIRED_RETRY, id)));
        }
        out
    }

    /// Up to `limit` checkpoints that are due: each lease's remaining TTL, rounded up.
    pub fn due_checkpoints(&self, limit: usize) -> Vec<LeaseCheckpoint> {
        let mut guard = self.state.lock();
        let st = &mut *guard;
        let mut out = Vec::new();
        if !st.primary || self.cfg.checkpoint_interval.is_none() {
            return out;
        }
        let now = self.clock.now();
        while out.len() < limit {
            let Some(&Reverse((at, id))) = st.checkpoint_queue.peek() else {
                break;
            };
            if at > now {
                break;
            }
            st.checkpoint_queue.pop();
            let Some(lease) = st.leases.get_mut(&id) else {
                continue;
            };
            if lease.checkpoint_at != Some(at) {
                continue;
            }
            lease.checkpoint_at = None;
            let Some(expiry) = lease.expiry.filter(|e| *e > now) else {
                continue;
            };
            let remaining = expiry.duration_since(now).as_secs_f64().ceil() as i64;
            if remaining >= lease.ttl {
                // Just renewed: nothing to record; look again an interval later.
                st.schedule_checkpoint(id, now, self.cfg.checkpoint_interval);
                continue;
            }
            out.push(LeaseCheckpoint {
                id,
                remaining_ttl: remaining,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DEFAULT_CHECKPOINT_INTERVAL;

    /// A clock the test moves by hand.
    struct ManualClock(Mutex<Instant>);

    impl Clock for ManualClock {
        fn now(&self) -> Instant {
            *self.0.lock()
        }
    }

    impl ManualClock {
        fn advance(&self, d: Duration) {
            *self.0.lock() += d;
        }
    }

    /// A backend that records what the lessor wrote.
    #[derive(Default)]
    struct Recorder {
        deleted: Vec<Vec<Vec<u8>>>,
        records: HashMap<i64, LeaseRecord>,
    }

    impl LeaseBackend for Recorder {
        type Error = std::convert::Infallible;

        fn delete_keys(&mut self, keys: &[Vec<u8>]) -> Result<(), Self::Error> {
            self.deleted.push(keys.to_vec());
            Ok(())
        }

        fn put_lease(&mut self, id: i64, record: Vec<u8>) -> Result<(), Self::Error> {
            let r = LeaseRecord::decode(record.as_slice()).unwrap_or_default();
            self.records.insert(id, r);
            Ok(())
        }

        fn delete_lease(&mut self, id: i64) -> Result<(), Self::Error> {
            self.records.remove(&id);
            Ok(())
        }
    }

    fn setup(interval: Option<Duration>) -> (Lessor, Arc<ManualClock>, Recorder) {
        let clock = Arc::new(ManualClock(Mutex::new(Instant::now())));
        let cfg = LessorConfig {
            min_ttl: 2,
            checkpoint_interval: interval,
        };
        (Lessor::new(cfg, clock.clone()), clock, Recorder::default())
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn grant_checks_id_ttl_and_duplicates() {
        let (l, _, mut b) = setup(None);
        assert_eq!(l.grant(0, 10, &mut b).unwrap(), Err(LeaseError::NotFound));
        assert_eq!(
            l.grant(1, MAX_LEASE_TTL + 1, &mut b).unwrap(),
            Err(LeaseError::TtlTooLarge)
        );
        assert_eq!(
            l.grant(1, 1, &mut b).unwrap(),
            Ok(Granted { id: 1, ttl: 2 }),
            "raised to the minimum"
        );
        assert_eq!(l.grant(1, 10, &mut b).unwrap(), Err(LeaseError::Exists));
        assert_eq!(
            l.grant(2, MAX_LEASE_TTL, &mut b).unwrap(),
            Ok(Granted {
                id: 2,
                ttl: MAX_LEASE_TTL
            })
        );
        assert_eq!(b.records[&1].ttl, 2);
    }

    #[test]
    fn revoke_deletes_sorted_keys_and_record() {
        let (l, _, mut b) = setup(None);
        l.grant(7, 10, &mut b).unwrap().unwrap();
        l.grant(8, 10, &mut b).unwrap().unwrap();
        for k in ["b", "a", "c"] {
            l.attach_key(k.as_bytes(), 7);
        }
        // Moved to another lease, then detached by a put without lease.
        l.attach_key(b"c", 8);
        l.attach_key(b"x", 7);
        l.attach_key(b"x", 0);
        // A lease that does not exist attaches nothing.
        l.attach_key(b"y", 99);
        assert_eq!(
            l.time_to_live(7, true).unwrap().keys,
            vec![b"a".to_vec(), b"b".to_vec()]
        );
        assert_eq!(l.revoke(7, &mut b).unwrap(), Ok(()));
        assert_eq!(b.deleted, vec![vec![b"a".to_vec(), b"b".to_vec()]]);
        assert!(!b.records.contains_key(&7));
        assert_eq!(l.revoke(7, &mut b).unwrap(), Err(LeaseError::NotFound));
        assert!(!l.exists(7));
        // The keys are free: attaching one to lease 8 works and is the only key of 8.
        l.attach_key(b"a", 8);
        assert_eq!(
            l.time_to_live(8, true).unwrap().keys,
            vec![b"a".to_vec(), b"c".to_vec()]
        );
    }

    #[test]
    fn only_the_primary_expires_and_renews() {
        let (l, clock, mut b) = setup(None);
        l.grant(1, 5, &mut b).unwrap().unwrap();
        assert_eq!(l.renew(1), Err(LeaseError::NotPrimary));
        clock.advance(secs(100));
        assert!(l.expired(10).is_empty());
        l.promote(secs(1));
        assert_eq!(l.time_to_live(1, false).unwrap().remaining, 6);
        clock.advance(secs(5));
        assert!(l.expired(10).is_empty(), "not before TTL + extension");
        assert_eq!(l.renew(1).map(|r| r.ttl), Ok(5));
        clock.advance(Duration::from_millis(4900));
        assert!(l.expired(10).is_empty());
        clock.advance(Duration::from_millis(200));
        assert_eq!(l.expired(10), vec![1]);
        assert_eq!(l.renew(1), Err(LeaseError::Expired));
        // Retried only after the retry interval.
        assert!(l.expired(10).is_empty());
        clock.advance(EXPIRED_RETRY);
        assert_eq!(l.expired(10), vec![1]);
        l.demote();
        clock.advance(secs(100));
        assert!(l.expired(10).is_empty());
        assert_eq!(l.renew(1), Err(LeaseError::NotPrimary));
        assert_eq!(l.renew(2), Err(LeaseError::NotPrimary));
    }

    #[test]
    fn grants_on_the_primary_expire_after_their_ttl() {
        let (l, clock, mut b) = setup(None);
        l.promote(secs(1));
        l.grant(1, 3, &mut b).unwrap().unwrap();
        assert_eq!(l.renew(5), Err(LeaseError::NotFound));
        clock.advance(Duration::from_millis(2999));
        assert!(l.expired(10).is_empty());
        assert_eq!(l.time_to_live(1, false).unwrap().remaining, 0);
        clock.advance(Duration::from_millis(1));
        assert_eq!(l.expired(10), vec![1]);
    }

    #[test]
    fn checkpoints_carry_remaining_ttl_across_promotions() {
        let (l, clock, mut b) = setup(Some(DEFAULT_CHECKPOINT_INTERVAL));
        l.promote(Duration::ZERO);
        l.grant(1, 1000, &mut b).unwrap().unwrap();
        // Too short to be worth checkpointing.
        l.grant(2, 100, &mut b).unwrap().unwrap();
        clock.advance(secs(299));
        assert!(l.due_checkpoints(10).is_empty());
        clock.advance(secs(1));
        let cps = l.due_checkpoints(10);
        assert_eq!(
            cps,
            vec![LeaseCheckpoint {
                id: 1,
                remaining_ttl: 700
            }]
        );
        l.checkpoint(&cps, &mut b).unwrap();
        assert_eq!(b.records[&1].remaining_ttl, 700);
        // A new leader resumes from the checkpoint, not from the full TTL.
        l.demote();
        clock.advance(secs(50));
        l.promote(secs(1));
        assert_eq!(l.time_to_live(1, false).unwrap().remaining, 701);
        // A renewal restores the full TTL and asks once to clear the checkpoint.
        let r = l.renew(1).unwrap();
        assert!(r.clear_checkpoint);
        assert!(!l.renew(1).unwrap().clear_checkpoint);
        assert_eq!(l.time_to_live(1, false).unwrap().remaining, 1000);
        l.checkpoint(
            &[LeaseCheckpoint {
                id: 1,
                remaining_ttl: 0,
            }],
            &mut b,
        )
        .unwrap();
        assert_eq!(b.records[&1].remaining_ttl, 0);
    }

    #[test]
    fn each_lease_has_one_checkpoint_queued() {
        let (l, clock, mut b) = setup(Some(secs(10)));
        l.promote(Duration::ZERO);
        l.grant(1, 100, &mut b).unwrap().unwrap();
        // Checkpoints applied, and cleared by renewals, many times over.
        for _ in 0..20 {
            clock.advance(secs(10));
            let cps = l.due_checkpoints(10);
            assert_eq!(cps.len(), 1, "{cps:?}");
            l.checkpoint(&cps, &mut b).unwrap();
            assert!(l.renew(1).unwrap().clear_checkpoint);
            let clear = [LeaseCheckpoint {
                id: 1,
                remaining_ttl: 0,
            }];
            l.checkpoint(&clear, &mut b).unwrap();
        }
        assert_eq!(l.state.lock().checkpoint_queue.len(), 1);
        // A lease renewed just before its checkpoint stays scheduled.
        clock.advance(secs(10));
        l.renew(1).unwrap();
        assert!(l.due_checkpoints(10).is_empty());
        clock.advance(secs(10));
        assert_eq!(l.due_checkpoints(10).len(), 1);
    }

    #[test]
    fn recover_reads_records_and_promote_spreads_pile_ups() {
        let (l, clock, mut b) = setup(None);
        for id in 1..=2000 {
            l.grant(id, 10, &mut b).unwrap().unwrap();
        }
        let records: Vec<(i64, Vec<u8>)> = b
            .records
            .iter()
            .map(|(id, r)| (*id, r.encode_to_vec()))
            .collect();
        let (l2, _, _) = setup(None);
        l2.recover(&records).unwrap();
        assert_eq!(l2.leases().len(), 2000);
        l.promote(Duration::ZERO);
        // At most three quarters of the revoke rate expire in the first second.
        clock.advance(secs(11));
        let first = l.expired(usize::MAX);
        assert!(first.len() <= 3 * REVOKE_RATE / 4, "{}", first.len());
        for id in &first {
            l.revoke(*id, &mut b).unwrap().unwrap();
        }
        clock.advance(secs(2));
        assert_eq!(first.len() + l.expired(usize::MAX).len(), 2000);
    }
}
