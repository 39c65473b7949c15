//! Leases in the server.
//!
//! - This file: [`Leases`], a member's lessor and what the applier does with it: lease
//!   entries applied into the open batch, keys attached to leases, the lessor rebuilt from
//!   the store, the leader's promotion once it has applied an entry of its term.
//! - `keeper.rs`: [`LeaseKeeper`], what runs outside the applier: keep-alives and
//!   time-to-live queries answered by the leader's lessor (forwarded to it over the peer
//!   URLs, never through the Raft log), and the leader's loop that expires and checkpoints
//!   leases through Raft.
//! - `service.rs`: [`LeasePeerService`], the leader's side of that forwarding.
//!
//! Owns the lessor. Reaches Raft only through a [`crate::proposal::Proposer`] and a
//! `RaftHandle`, and other members only through their peer URLs.

mod keeper;
mod service;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cairn_lease::{LeaseBackend, LeaseError, Lessor};
use cairn_mvcc::{ApplyBatch, LeaseLookup, MvccError, Store};
use cairn_proto::etcdserverpb::{
    LeaseCheckpointRequest, LeaseGrantRequest, LeaseGrantResponse, LeaseRevokeRequest,
    LeaseRevokeResponse, RangeRequest, ResponseHeader,
};
use cairn_proto::EtcdError;

use crate::metrics::LeaseMetrics;
use crate::proposal::ApplyResult;
pub use keeper::LeaseKeeper;
pub use service::LeasePeerService;

/// Keys read per page when rebuilding attachments.
const REBUILD_PAGE: i64 = 1000;
/// What a lease grant costs against the backend quota (etcd's `leaseOverhead`).
pub const GRANT_COST: u64 = 64;

/// The applier's open batch as the lessor's backend.
struct BatchBackend<'b, 'a>(&'b mut ApplyBatch<'a>);

impl LeaseBackend for BatchBackend<'_, '_> {
    type Error = MvccError;

    fn delete_keys(&mut self, keys: &[Vec<u8>]) -> Result<(), MvccError> {
        self.0.delete_keys(keys)
    }

    fn put_lease(&mut self, id: i64, record: Vec<u8>) -> Result<(), MvccError> {
        self.0.put_lease(id, record);
        Ok(())
    }

    fn delete_lease(&mut self, id: i64) -> Result<(), MvccError> {
        self.0.delete_lease(id);
        Ok(())
    }
}

/// The lessor as the store's lease lookup, so puts refuse unknown leases.
pub struct Lookup<'l>(&'l Lessor);

impl LeaseLookup for Lookup<'_> {
    fn exists(&self, id: i64) -> bool {
        self.0.exists(id)
    }
}

/// etcd's error for a refused lease operation.
pub fn etcd_error(e: LeaseError) -> EtcdError {
    match e {
        LeaseError::NotFound | LeaseError::Expired => EtcdError::LeaseNotFound,
        LeaseError::Exists => EtcdError::LeaseExist,
        LeaseError::TtlTooLarge => EtcdError::LeaseTtlTooLarge,
        LeaseError::NotPrimary => EtcdError::NotLeader,
    }
}

type Outcome = Result<ApplyResult, EtcdError>;

/// etcd's request id generator, used for server-chosen lease ids: the member id's low 16
/// bits, then the start time in milliseconds (40 bits) and a counter (8 bits), counting up;
/// positive.
struct IdGen {
    prefix: u64,
    suffix: AtomicU64,
}

impl IdGen {
    fn new(member_id: u64) -> IdGen {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        IdGen {
            prefix: member_id << 48,
            suffix: AtomicU64::new((ms & ((1 << 40) - 1)) << 8),
        }
    }

    fn next(&self) -> i64 {
        let suffix = self.suffix.fetch_add(1, Ordering::Relaxed) + 1;
        ((self.prefix | (suffix & ((1 << 48) - 1))) & (i64::MAX as u64)) as i64
    }
}

/// A member's leases: the lessor and what the server needs around it.
pub struct Leases {
    pub lessor: Lessor,
    /// Term of the last entry the applier applied; the leader promotes its lessor once it
    /// has applied an entry of its own term (its first, empty entry), so every grant and
    /// revoke of earlier terms is in.
    applied_term: AtomicU64,
    /// The term the lessor was last promoted in.
    promoted_term: AtomicU64,
    /// How far promotion extends every lease: one election timeout, as etcd.
    promote_extend: Duration,
    ids: IdGen,
    pub metrics: LeaseMetrics,
}

impl Leases {
    pub fn new(
        lessor: Lessor,
        member_id: u64,
        promote_extend: Duration,
        metrics: LeaseMetrics,
    ) -> Leases {
        Leases {
            lessor,
            applied_term: AtomicU64::new(0),
            promoted_term: AtomicU64::new(0),
            promote_extend,
            ids: IdGen::new(member_id),
            metrics,
        }
    }

    /// A fresh lease id for a grant that did not choose one.
    pub fn next_id(&self) -> i64 {
        loop {
            let id = self.ids.next();
            if id != 0 {
                return id;
            }
        }
    }

    pub fn lookup(&self) -> Lookup<'_> {
        Lookup(&self.lessor)
    }

    /// Notes the term of an entry being applied.
    pub fn applying(&self, term: u64) {
        self.applied_term.store(term, Ordering::Release);
    }

    /// Attaches each key written in `batch` since `mark` to the lease it carries now.
    pub fn attach_since(&self, batch: &ApplyBatch<'_>, mark: usize) {
        for (key, lease) in batch.key_leases_since(mark) {
            self.lessor.attach_key(key, lease);
        }
    }

    pub fn grant(
        &self,
        batch: &mut ApplyBatch<'_>,
        req: &LeaseGrantRequest,
    ) -> Result<Outcome, MvccError> {
        let granted = self
            .lessor
            .grant(req.id, req.ttl, &mut BatchBackend(batch))?;
        Ok(granted.map_err(etcd_error).map(|g| {
            self.metrics.granted.inc();
            self.metrics.ttl.observe(g.ttl as f64);
            ApplyResult::LeaseGrant(LeaseGrantResponse {
                header: Some(ResponseHeader {
                    revision: batch.revision(),
                    ..Default::default()
                }),
                id: g.id,
                ttl: g.ttl,
                error: String::new(),
            })
        }))
    }

    pub fn revoke(
        &self,
        batch: &mut ApplyBatch<'_>,
        req: &LeaseRevokeRequest,
    ) -> Result<Outcome, MvccError> {
        let revoked = self.lessor.revoke(req.id, &mut BatchBackend(batch))?;
        Ok(revoked.map_err(etcd_error).map(|()| {
            self.metrics.revoked.inc();
            ApplyResult::LeaseRevoke(LeaseRevokeResponse {
                header: Some(ResponseHeader {
                    revision: batch.revision(),
                    ..Default::default()
                }),
            })
        }))
    }

    pub fn checkpoint(
        &self,
        batch: &mut ApplyBatch<'_>,
        req: &LeaseCheckpointRequest,
    ) -> Result<Outcome, MvccError> {
        self.lessor
            .checkpoint(&req.checkpoints, &mut BatchBackend(batch))?;
        Ok(Ok(ApplyResult::LeaseCheckpoint))
    }

    /// Loads every lease from the store and attaches each live key to its lease (at start,
    /// and after a snapshot replaced the store).
    pub fn reload(&self, store: &Store) -> Result<(), MvccError> {
        let records = store.leases()?;
        self.lessor
            .recover(&records)
            .map_err(|e| MvccError::Corrupt(format!("undecodable lease record: {e}")))?;
        if records.is_empty() {
            return Ok(());
        }
        let mut from = vec![0u8];
        loop {
            let resp = store.range(&RangeRequest {
                key: from.clone(),
                range_end: vec![0],
                limit: REBUILD_PAGE,
                ..Default::default()
            })?;
            for kv in &resp.kvs {
                if kv.lease != 0 {
                    self.lessor.attach_key(&kv.key, kv.lease);
                }
            }
            match resp.kvs.last() {
                Some(last) if resp.more => {
                    from = last.key.clone();
                    from.push(0);
                }
                _ => return Ok(()),
            }
        }
    }

    /// Promotes the lessor if this member leads in `status`, has applied an entry of its
    /// term, and has not promoted in this term yet.
    pub fn promote_if_due(&self, status: &cairn_raft::RaftStatus) {
        if !status.is_leader || self.promoted_term.load(Ordering::Acquire) == status.term {
            return;
        }
        if self.applied_term.load(Ordering::Acquire) == status.term {
            self.lessor.promote(self.promote_extend);
            self.promoted_term.store(status.term, Ordering::Release);
            tracing::debug!(term = status.term, "lessor promoted");
        }
    }

    /// Demotes the lessor if this member does not lead in `status`. True if it leads.
    pub fn check_leadership(&self, status: &cairn_raft::RaftStatus) -> bool {
        if !status.is_leader && self.lessor.is_primary() {
            self.lessor.demote();
        }
        status.is_leader
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_etcds_shape() {
        let g = IdGen::new(0x8e9e05c52164694d);
        let a = g.next();
        let b = g.next();
        assert!(a > 0 && b == a + 1);
        assert_eq!((a as u64) >> 48, 0x694d);
    }
}
