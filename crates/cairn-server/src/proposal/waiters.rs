//! Requests waiting for their proposal to be applied, keyed by proposal id.

use std::collections::HashMap;

use cairn_proto::etcdserverpb::{
    AlarmResponse, CompactionResponse, DeleteRangeResponse, LeaseGrantResponse,
    LeaseRevokeResponse, PutResponse, RangeResponse, TxnResponse,
};
use cairn_proto::EtcdError;
use parking_lot::Mutex;
use tokio::sync::oneshot;

/// The response the applier produced for one proposal.
#[derive(Debug)]
pub enum ApplyResult {
    Put(PutResponse),
    Delete(DeleteRangeResponse),
    Txn(TxnResponse),
    Range(RangeResponse),
    Compact(CompactionResponse),
    Alarm(AlarmResponse),
    LeaseGrant(LeaseGrantResponse),
    LeaseRevoke(LeaseRevokeResponse),
    /// Lease checkpoints were recorded.
    LeaseCheckpoint,
    /// A member's attributes were recorded.
    Published,
    /// A membership change was applied; the members after it.
    Members(Vec<cairn_proto::etcdserverpb::Member>),
    /// An auth change was applied.
    AuthDone,
    /// Whether auth is enabled, and the auth revision.
    AuthStatus {
        enabled: bool,
        revision: u64,
    },
    /// The token an Authenticate assigned.
    AuthToken(String),
    /// A user's roles, or the users, or the roles.
    Names(Vec<String>),
    /// A role's permissions.
    Permissions(Vec<cairn_proto::authpb::Permission>),
}

type Sender = oneshot::Sender<Result<ApplyResult, EtcdError>>;

/// Number of independently locked shards, so concurrent proposers rarely contend.
const SHARDS: usize = 16;

/// The table of waiting requests.
pub struct Waiters {
    /// Each shard protects the waiters whose id falls in it. Never held across an await.
    shards: [Mutex<HashMap<u64, Sender>>; SHARDS],
}

impl Default for Waiters {
    fn default() -> Self {
        Waiters {
            shards: std::array::from_fn(|_| Mutex::new(HashMap::new())),
        }
    }
}

impl Waiters {
    fn shard(&self, id: u64) -> &Mutex<HashMap<u64, Sender>> {
        &self.shards[(id as usize) % SHARDS]
    }

    /// Registers a waiter for proposal `id`.
    pub fn register(&self, id: u64) -> oneshot::Receiver<Result<ApplyResult, EtcdError>> {
        let (tx, rx) = oneshot::channel();
        self.shard(id).lock().insert(id, tx);
        rx
    }

    /// Forgets the waiter for `id` (the request gave up).
    pub fn remove(&self, id: u64) {
        self.shard(id).lock().remove(&id);
    }

    /// Hands `result` to the waiter for `id`, if one is still waiting.
    pub fn fire(&self, id: u64, result: Result<ApplyResult, EtcdError>) {
        if let Some(tx) = self.shard(id).lock().remove(&id) {
            let _ = tx.send(result);
        }
    }

    /// Number of requests waiting.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }

    /// Whether no request is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_waiter_gets_its_own_answer_once() {
        let w = Waiters::default();
        let mut a = w.register(1);
        let mut b = w.register(17); // the same shard as 1
        let mut c = w.register(2);
        assert_eq!(w.len(), 3);
        w.fire(17, Ok(ApplyResult::Published));
        w.fire(17, Err(EtcdError::Stopped)); // nobody waits any more: dropped
        w.remove(2); // the request gave up
        w.fire(2, Ok(ApplyResult::Published));
        assert!(matches!(b.try_recv(), Ok(Ok(ApplyResult::Published))));
        assert!(a.try_recv().is_err(), "1 was never fired");
        assert!(c.try_recv().is_err(), "2 was removed before it fired");
        assert_eq!(w.len(), 1);
        w.fire(1, Err(EtcdError::Timeout));
        assert!(matches!(a.try_recv(), Ok(Err(EtcdError::Timeout))));
        assert!(w.is_empty());
    }
}
