//! Sessions, mutexes and elections built from leases, transactions and watches, with the
//! semantics of etcd's `concurrency` package, so that cairn's v3lock and v3election
//! services and `cairnctl lock|elect` behave as etcd's do:
//!
//! - A [`Session`] is a lease kept alive in the background; its keys vanish when it ends.
//! - A [`Mutex`] named `n` is the set of keys under `n/`, one per session (`n/<lease hex>`).
//!   The key with the lowest create revision holds the lock; the others wait, each for the
//!   deletion of the key created just before its own, so waiters are served in the order
//!   they asked (fair, no thundering herd).
//! - An [`Election`] named `n` works the same way; the holder is the leader, and the value
//!   of its key is what it proclaims. Observers follow the leader key.

use std::pin::Pin;
use std::time::Duration;

use cairn_proto::etcdserverpb::{
    compare, request_op, response_op, watch_request, Compare, DeleteRangeRequest,
    LeaseGrantRequest, LeaseKeepAliveRequest, LeaseRevokeRequest, PutRequest, RangeRequest,
    RangeResponse, RequestOp, ResponseHeader, TxnRequest, TxnResponse, WatchCreateRequest,
    WatchRequest,
};
use cairn_proto::mvccpb::{event::EventType, KeyValue};
use futures::{Stream, StreamExt};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tonic::Status;

use crate::Client;

/// Why a recipe failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server refused a request.
    #[error("{}", .0.message())]
    Status(#[from] Status),
    /// The lock was granted but the session's key is gone: its lease expired meanwhile.
    #[error("mutex: session is expired")]
    SessionExpired,
    /// The caller is not (or no longer) the leader of the election.
    #[error("election: not leader")]
    NotLeader,
    /// Nobody leads the election.
    #[error("election: no leader")]
    NoLeader,
    /// A watch the recipe relies on ended.
    #[error("{0}")]
    WatchEnded(String),
}

impl Error {
    /// The gRPC status a service running the recipe answers with: code Unknown and the
    /// error's words, as etcd's lock and election services pass on their client's errors
    /// (a missing lease too: "etcdserver: requested lease not found", code Unknown).
    pub fn into_status(self) -> Status {
        Status::unknown(self.to_string())
    }
}

/// The end of the range holding every key that starts with `prefix` (etcd's rule: the
/// prefix with its last byte below 0xff incremented; "\0" meaning all keys when the prefix
/// is only 0xff bytes).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// A lease kept alive by a background task until the session is closed or orphaned.
#[derive(Debug)]
pub struct Session {
    client: Client,
    lease: i64,
    keepalive: Option<JoinHandle<()>>,
    alive: watch::Receiver<bool>,
}

impl Session {
    /// Grants a lease of `ttl` seconds and keeps it alive, renewing at a third of its TTL.
    pub async fn new(client: Client, ttl: i64) -> Result<Session, Error> {
        let granted = client
            .lease()
            .lease_grant(LeaseGrantRequest { ttl, id: 0 })
            .await?
            .into_inner();
        let mut s = Session::with_lease(client, granted.id);
        s.keep_alive(granted.ttl.max(1)).await?;
        Ok(s)
    }

    /// A session over an existing lease that nothing keeps alive (as etcd's lock and
    /// election services use the lease a client gives them).
    pub fn with_lease(client: Client, lease: i64) -> Session {
        let (_, alive) = watch::channel(true);
        Session {
            client,
            lease,
            keepalive: None,
            alive,
        }
    }

    async fn keep_alive(&mut self, ttl: i64) -> Result<(), Error> {
        let (req_tx, req_rx) = mpsc::channel(1);
        let lease = self.lease;
        req_tx
            .send(LeaseKeepAliveRequest { id: lease })
            .await
            .map_err(|_| Error::WatchEnded("keep-alive stream closed".into()))?;
        let mut responses = self
            .client
            .lease()
            .lease_keep_alive(tokio_stream::wrappers::ReceiverStream::new(req_rx))
            .await?
            .into_inner();
        let (alive_tx, alive) = watch::channel(true);
        self.alive = alive;
        let every = Duration::from_millis((ttl as u64 * 1000 / 3).max(500));
        self.keepalive = Some(tokio::spawn(async move {
            loop {
                match responses.message().await {
                    Ok(Some(r)) if r.ttl > 0 => {}
                    _ => break,
                }
                tokio::time::sleep(every).await;
                if req_tx
                    .send(LeaseKeepAliveRequest { id: lease })
                    .await
                    .is_err()
                {
                    break;
                }
            }
            let _ = alive_tx.send(false);
        }));
        Ok(())
    }

    /// The session's lease.
    pub fn lease(&self) -> i64 {
        self.lease
    }

    /// The client the session uses.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Resolves when the lease is no longer kept alive (expired, revoked, or the
    /// connection lost); never for a session without keep-alive.
    pub async fn done(&self) {
        let mut alive = self.alive.clone();
        let _ = alive.wait_for(|a| !*a).await;
        if self.keepalive.is_none() {
            std::future::pending::<()>().await;
        }
    }

    /// Stops keeping the lease alive, leaving it to expire.
    pub fn orphan(&mut self) {
        if let Some(k) = self.keepalive.take() {
            k.abort();
        }
    }

    /// Stops keeping the lease alive and revokes it, deleting the session's keys.
    pub async fn close(mut self) -> Result<(), Error> {
        self.orphan();
        self.client
            .lease()
            .lease_revoke(LeaseRevokeRequest { id: self.lease })
            .await?;
        Ok(())
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.orphan();
    }
}

fn create_revision_is(key: &[u8], rev: i64) -> Compare {
    Compare {
        result: compare::CompareResult::Equal as i32,
        target: compare::CompareTarget::Create as i32,
        key: key.to_vec(),
        range_end: vec![],
        target_union: Some(compare::TargetUnion::CreateRevision(rev)),
    }
}

fn put_op(key: &[u8], value: &[u8], lease: i64) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestPut(PutRequest {
            key: key.to_vec(),
            value: value.to_vec(),
            lease,
            ..Default::default()
        })),
    }
}

fn get_op(req: RangeRequest) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestRange(req)),
    }
}

fn delete_op(key: &[u8]) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestDeleteRange(
            DeleteRangeRequest {
                key: key.to_vec(),
                ..Default::default()
            },
        )),
    }
}

/// The key under `prefix` created first (`ascend`) or last, created at or before
/// `max_create_revision` when that is not 0.
fn first_or_last_created(prefix: &[u8], ascend: bool, max_create_revision: i64) -> RangeRequest {
    use cairn_proto::etcdserverpb::range_request::{SortOrder, SortTarget};
    RangeRequest {
        key: prefix.to_vec(),
        range_end: prefix_end(prefix),
        limit: 1,
        sort_order: if ascend {
            SortOrder::Ascend
        } else {
            SortOrder::Descend
        } as i32,
        sort_target: SortTarget::Create as i32,
        max_create_revision,
        ..Default::default()
    }
}

fn range_of(resp: &TxnResponse, i: usize) -> Option<&RangeResponse> {
    match resp.responses.get(i)?.response.as_ref()? {
        response_op::Response::ResponseRange(r) => Some(r),
        _ => None,
    }
}

/// A stream of the events on `key` (or the range to `range_end`) from revision `from`.
async fn watch_from(
    client: &Client,
    key: &[u8],
    range_end: Vec<u8>,
    from: i64,
) -> Result<
    Pin<Box<dyn Stream<Item = Result<cairn_proto::etcdserverpb::WatchResponse, Status>> + Send>>,
    Error,
> {
    let create = WatchRequest {
        request_union: Some(watch_request::RequestUnion::CreateRequest(
            WatchCreateRequest {
                key: key.to_vec(),
                range_end,
                start_revision: from,
                ..Default::default()
            },
        )),
    };
    // The request stream stays open (pending) for as long as the watch is read.
    let requests = futures::stream::iter([create]).chain(futures::stream::pending());
    let stream = client.watch().watch(requests).await?.into_inner();
    Ok(Box::pin(stream))
}

/// Waits until `key` is deleted, watching from revision `rev`.
async fn wait_delete(client: &Client, key: &[u8], rev: i64) -> Result<(), Error> {
    let mut events = watch_from(client, key, vec![], rev).await?;
    while let Some(resp) = events.next().await {
        let resp = resp?;
        if resp.canceled {
            return Err(Error::WatchEnded(resp.cancel_reason));
        }
        if resp
            .events
            .iter()
            .any(|e| e.r#type == EventType::Delete as i32)
        {
            return Ok(());
        }
    }
    Err(Error::WatchEnded("watch stream ended".into()))
}

/// Waits until no key under `prefix` created at or before `max_create_revision` is left,
/// one deletion at a time, newest first; returns the header of the last check.
async fn wait_deletes(
    client: &Client,
    prefix: &[u8],
    max_create_revision: i64,
) -> Result<ResponseHeader, Error> {
    loop {
        let resp = client
            .kv()
            .range(first_or_last_created(prefix, false, max_create_revision))
            .await?
            .into_inner();
        let Some(kv) = resp.kvs.first() else {
            return Ok(resp.header.unwrap_or_default());
        };
        let rev = resp.header.as_ref().map_or(0, |h| h.revision);
        wait_delete(client, &kv.key, rev).await?;
    }
}

/// A lock shared by every session that uses the same name.
#[derive(Debug)]
pub struct Mutex {
    client: Client,
    prefix: Vec<u8>,
    key: Vec<u8>,
    rev: i64,
    header: Option<ResponseHeader>,
}

impl Mutex {
    /// The lock called `name`.
    pub fn new(client: Client, name: &[u8]) -> Mutex {
        let mut prefix = name.to_vec();
        prefix.push(b'/');
        Mutex {
            client,
            prefix,
            key: vec![],
            rev: -1,
            header: None,
        }
    }

    /// Waits until the session with lease `lease` holds the lock.
    pub async fn lock(&mut self, lease: i64) -> Result<(), Error> {
        self.key = [self.prefix.as_slice(), format!("{lease:x}").as_bytes()].concat();
        let txn = TxnRequest {
            compare: vec![create_revision_is(&self.key, 0)],
            success: vec![
                put_op(&self.key, b"", lease),
                get_op(first_or_last_created(&self.prefix, true, 0)),
            ],
            failure: vec![
                get_op(RangeRequest {
                    key: self.key.clone(),
                    ..Default::default()
                }),
                get_op(first_or_last_created(&self.prefix, true, 0)),
            ],
        };
        let resp = self.client.kv().txn(txn).await?.into_inner();
        self.rev = resp.header.as_ref().map_or(0, |h| h.revision);
        if !resp.succeeded {
            if let Some(kv) = range_of(&resp, 0).and_then(|r| r.kvs.first()) {
                self.rev = kv.create_revision;
            }
        }
        let owner = range_of(&resp, 1).and_then(|r| r.kvs.first());
        if owner.is_none_or(|kv| kv.create_revision == self.rev) {
            self.header = resp.header;
            return Ok(());
        }
        if let Err(e) = wait_deletes(&self.client, &self.prefix, self.rev - 1).await {
            let _ = self.unlock().await;
            return Err(e);
        }
        // The wait is over; the key must still be there (its lease may have expired).
        let got = self
            .client
            .kv()
            .range(RangeRequest {
                key: self.key.clone(),
                ..Default::default()
            })
            .await?
            .into_inner();
        if got.kvs.is_empty() {
            return Err(Error::SessionExpired);
        }
        self.header = got.header;
        Ok(())
    }

    /// Releases the lock (deletes this session's key).
    pub async fn unlock(&mut self) -> Result<Option<ResponseHeader>, Error> {
        let resp = self
            .client
            .kv()
            .delete_range(DeleteRangeRequest {
                key: std::mem::replace(&mut self.key, vec![0]),
                ..Default::default()
            })
            .await?
            .into_inner();
        self.rev = -1;
        Ok(resp.header)
    }

    /// The key that holds (or waits for) the lock.
    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// The key's create revision.
    pub fn rev(&self) -> i64 {
        self.rev
    }

    /// The header of the response that granted the lock.
    pub fn header(&self) -> Option<&ResponseHeader> {
        self.header.as_ref()
    }
}

/// One participant's view of an election.
#[derive(Debug)]
pub struct Election {
    client: Client,
    prefix: Vec<u8>,
    leader_key: Vec<u8>,
    leader_rev: i64,
    /// The lease of the leader key, when this participant leads (or may).
    leader_lease: Option<i64>,
    header: Option<ResponseHeader>,
}

impl Election {
    /// The election called `name`.
    pub fn new(client: Client, name: &[u8]) -> Election {
        let mut prefix = name.to_vec();
        prefix.push(b'/');
        Election {
            client,
            prefix,
            leader_key: vec![],
            leader_rev: 0,
            leader_lease: None,
            header: None,
        }
    }

    /// An election this participant leads with `key`, created at `rev` under `lease`.
    pub fn resume(client: Client, name: &[u8], key: &[u8], rev: i64, lease: i64) -> Election {
        Election {
            client,
            prefix: name.to_vec(),
            leader_key: key.to_vec(),
            leader_rev: rev,
            leader_lease: Some(lease),
            header: None,
        }
    }

    /// Enters the election with `value` under lease `lease` and waits until leading.
    pub async fn campaign(&mut self, lease: i64, value: &[u8]) -> Result<(), Error> {
        let key = [self.prefix.as_slice(), format!("{lease:x}").as_bytes()].concat();
        let txn = TxnRequest {
            compare: vec![create_revision_is(&key, 0)],
            success: vec![put_op(&key, value, lease)],
            failure: vec![get_op(RangeRequest {
                key: key.clone(),
                ..Default::default()
            })],
        };
        let resp = self.client.kv().txn(txn).await?.into_inner();
        self.leader_key = key;
        self.leader_rev = resp.header.as_ref().map_or(0, |h| h.revision);
        self.leader_lease = Some(lease);
        if !resp.succeeded {
            if let Some(kv) = range_of(&resp, 0).and_then(|r| r.kvs.first()) {
                self.leader_rev = kv.create_revision;
                if kv.value != value {
                    if let Err(e) = self.proclaim(value).await {
                        let _ = self.resign().await;
                        return Err(e);
                    }
                }
            }
        }
        if let Err(e) = wait_deletes(&self.client, &self.prefix, self.leader_rev - 1).await {
            self.leader_lease = None;
            return Err(e);
        }
        self.header = resp.header;
        Ok(())
    }

    /// Sets the leader's value, if this participant still leads.
    pub async fn proclaim(&mut self, value: &[u8]) -> Result<(), Error> {
        let Some(lease) = self.leader_lease else {
            return Err(Error::NotLeader);
        };
        let txn = TxnRequest {
            compare: vec![create_revision_is(&self.leader_key, self.leader_rev)],
            success: vec![put_op(&self.leader_key, value, lease)],
            failure: vec![],
        };
        let resp = self.client.kv().txn(txn).await?.into_inner();
        if !resp.succeeded {
            self.leader_key.clear();
            return Err(Error::NotLeader);
        }
        self.header = resp.header;
        Ok(())
    }

    /// Gives up leadership (deletes the leader key if it is still this participant's).
    pub async fn resign(&mut self) -> Result<(), Error> {
        if self.leader_lease.is_none() {
            return Ok(());
        }
        let txn = TxnRequest {
            compare: vec![create_revision_is(&self.leader_key, self.leader_rev)],
            success: vec![delete_op(&self.leader_key)],
            failure: vec![],
        };
        let result = self.client.kv().txn(txn).await;
        self.leader_key.clear();
        self.leader_lease = None;
        self.header = result?.into_inner().header;
        Ok(())
    }

    /// The current leader's key and value.
    pub async fn leader(&self) -> Result<(ResponseHeader, KeyValue), Error> {
        let resp = self
            .client
            .kv()
            .range(first_or_last_created(&self.prefix, true, 0))
            .await?
            .into_inner();
        match resp.kvs.into_iter().next() {
            Some(kv) => Ok((resp.header.unwrap_or_default(), kv)),
            None => Err(Error::NoLeader),
        }
    }

    /// Follows the leader: sends the current leader, then every change of its value, then
    /// the next leader when it goes, until `out` is closed or a watch fails.
    pub async fn observe(&self, out: mpsc::Sender<(ResponseHeader, KeyValue)>) {
        let (tx, mut rx) = mpsc::channel(1);
        let forward = async {
            loop {
                let r = tokio::select! {
                    r = rx.recv() => r,
                    _ = out.closed() => None,
                };
                let Some(RangeResponse { header, kvs, .. }) = r else {
                    break;
                };
                let Some(kv) = kvs.into_iter().next() else {
                    continue;
                };
                if out.send((header.unwrap_or_default(), kv)).await.is_err() {
                    break;
                }
            }
            // Dropping `rx` here ends `observe_ranges` too.
            drop(rx);
        };
        tokio::join!(self.observe_ranges(tx), forward);
    }

    /// [`Election::observe`] as etcd's Go client delivers it: one range response per
    /// leader or value, holding the leader key. A new leader comes in a fresh response
    /// (count 0); a changed value reuses the range response that found the leader, with
    /// its count and more, and the watch response's header.
    pub async fn observe_ranges(&self, out: mpsc::Sender<RangeResponse>) {
        tokio::select! {
            _ = self.observe_inner(&out) => {}
            _ = out.closed() => {}
        }
    }

    async fn observe_inner(&self, out: &mpsc::Sender<RangeResponse>) -> Option<()> {
        loop {
            let mut resp = self
                .client
                .kv()
                .range(first_or_last_created(&self.prefix, true, 0))
                .await
                .ok()?
                .into_inner();
            let (mut header, kv) = match resp.kvs.first() {
                Some(kv) => (resp.header.unwrap_or_default(), kv.clone()),
                None => {
                    // Nobody leads: wait for the first key put under the prefix.
                    let from = resp.header.as_ref().map_or(0, |h| h.revision);
                    let mut events =
                        watch_from(&self.client, &self.prefix, prefix_end(&self.prefix), from)
                            .await
                            .ok()?;
                    loop {
                        let wr = events.next().await?.ok()?;
                        if wr.canceled {
                            return None;
                        }
                        let put = wr.events.into_iter().find_map(|e| {
                            (e.r#type == EventType::Put as i32)
                                .then_some(e.kv)
                                .flatten()
                        });
                        if let Some(kv) = put {
                            let mut header = wr.header.unwrap_or_default();
                            header.revision = kv.mod_revision;
                            break (header, kv);
                        }
                    }
                }
            };
            let key = kv.key.clone();
            let leader = RangeResponse {
                header: Some(header),
                kvs: vec![kv],
                ..Default::default()
            };
            out.send(leader).await.ok()?;
            // Follow the leader key until it is deleted.
            header.revision += 1;
            let mut events = watch_from(&self.client, &key, vec![], header.revision)
                .await
                .ok()?;
            'leader: loop {
                let wr = events.next().await?.ok()?;
                if wr.canceled {
                    return None;
                }
                for e in wr.events {
                    if e.r#type == EventType::Delete as i32 {
                        break 'leader;
                    }
                    if let Some(kv) = e.kv {
                        resp.header = wr.header;
                        resp.kvs = vec![kv];
                        out.send(resp.clone()).await.ok()?;
                    }
                }
            }
        }
    }

    /// The leader key, when this participant leads.
    pub fn key(&self) -> &[u8] {
        &self.leader_key
    }

    /// The leader key's create revision.
    pub fn rev(&self) -> i64 {
        self.leader_rev
    }

    /// The header of the last successful campaign, proclamation or resignation.
    pub fn header(&self) -> Option<&ResponseHeader> {
        self.header.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The election service spawns `observe` on the runtime: its future must be `Send`.
    #[allow(dead_code)]
    fn observe_is_send(e: &Election, tx: mpsc::Sender<(ResponseHeader, KeyValue)>) {
        fn is_send<T: Send>(_: &T) {}
        is_send(&e.observe(tx));
        let (ranges, _) = mpsc::channel(1);
        is_send(&e.observe_ranges(ranges));
    }

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"a/"), b"a0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
        assert_eq!(prefix_end(b""), vec![0]);
    }
}
