//! cairn's lessor: etcd's leases, the keys attached to them, their expiry and checkpoints.
//!
//! A lease is granted with a TTL in seconds; keys put with the lease are attached to it and
//! are deleted, all in one revision, when it is revoked. Only the leader (the *primary*
//! lessor) tracks expiry: it finds expired leases and proposes their revocation through
//! Raft, and keep-alives renew its in-memory deadlines without a Raft entry. Every other
//! member keeps leases without a deadline. Grants, revokes and checkpoints arrive as
//! committed Raft entries and change every member's lessor the same way.
//!
//! Checkpoints (etcd's `--experimental-enable-lease-checkpoint`): the primary periodically
//! proposes the remaining TTL of long leases, so a new leader (or a restarted cluster)
//! resumes them from there instead of granting each its full TTL again.
//!
//! What it must not depend on: the MVCC store, Raft, gRPC, the async runtime. The store is
//! reached through [`LeaseBackend`], a trait declared here and implemented by the server on
//! its open apply batch; time through [`Clock`].
//!
//! # Layout
//!
//! - `lessor`: [`Lessor`] and its state: leases, the key index, the expiry and checkpoint
//!   queues; grant, revoke, checkpoint, renew, promote and demote.

mod lessor;

use std::time::{Duration, Instant};

pub use lessor::{Granted, Lessor, LessorConfig, Renewed, TimeToLive};

/// The largest TTL a lease may be granted (etcd's `MaxLeaseTTL`), in seconds.
pub const MAX_LEASE_TTL: i64 = 9_000_000_000;

/// Expired leases revoked per second at most (etcd's `leaseRevokeRate`).
pub const REVOKE_RATE: usize = 1000;

/// Checkpoints proposed per second at most (etcd's `leaseCheckpointRate`).
pub const CHECKPOINT_RATE: usize = 1000;

/// Checkpoints in one Raft entry at most.
pub const MAX_CHECKPOINT_BATCH: usize = 1000;

/// How long after proposing an expired lease's revocation it is proposed again if it is
/// still there.
pub const EXPIRED_RETRY: Duration = Duration::from_secs(3);

/// etcd's default checkpoint interval.
pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(300);

/// Why a lease operation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LeaseError {
    #[error("lease not found")]
    NotFound,
    #[error("lease already exists")]
    Exists,
    #[error("too large lease TTL")]
    TtlTooLarge,
    /// This member does not lead; ask the leader.
    #[error("not a primary lessor")]
    NotPrimary,
    /// The lease's deadline has passed and its revocation is on its way.
    #[error("lease expired")]
    Expired,
}

/// The store as the lessor changes it: the applier's open backend transaction, so a
/// lease's record and the keys it deletes commit together with the entry that did it.
pub trait LeaseBackend {
    type Error;

    /// Deletes `keys` (sorted, distinct), all in one revision.
    fn delete_keys(&mut self, keys: &[Vec<u8>]) -> Result<(), Self::Error>;

    /// Writes lease `id`'s record.
    fn put_lease(&mut self, id: i64, record: Vec<u8>) -> Result<(), Self::Error>;

    /// Removes lease `id`'s record.
    fn delete_lease(&mut self, id: i64) -> Result<(), Self::Error>;
}

/// Where the lessor reads the time.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Instant;
}

/// The system's monotonic clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// etcd's shortest lease TTL for a member's timing: one and a half election timeouts,
/// counted in whole heartbeat ticks, rounded up to whole seconds.
pub fn min_ttl(heartbeat: Duration, election: Duration) -> i64 {
    let tick = heartbeat.as_millis().max(1);
    let ticks = election.as_millis() / tick;
    let ms = (3 * ticks / 2) * tick;
    ms.div_ceil(1000) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_ttl_is_etcds() {
        let ms = Duration::from_millis;
        // etcd's defaults: 10 ticks of 100 ms -> 1.5 s -> 2 s.
        assert_eq!(min_ttl(ms(100), ms(1000)), 2);
        assert_eq!(min_ttl(ms(100), ms(2000)), 3);
        assert_eq!(min_ttl(ms(50), ms(250)), 1);
        // 7 ticks of 150 ms: 3*7/2 = 10 ticks = 1.5 s.
        assert_eq!(min_ttl(ms(150), ms(1100)), 2);
        assert_eq!(min_ttl(ms(1000), ms(5000)), 7);
    }
}
