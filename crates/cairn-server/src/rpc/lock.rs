//! The v3lock and v3election services: etcd's lock and election recipes run by the server
//! on behalf of a client, over a client connection to this member itself (as etcd runs them
//! over its in-process client). The recipes are `cairn_client::concurrency`'s.
//!
//! A call the client gives up on (the RPC is dropped) while it waits for a lock or for
//! leadership withdraws its key, as etcd's recipe does when its context is canceled.

use std::pin::Pin;

use std::sync::Arc;

use cairn_auth::Access;
use cairn_client::concurrency::{Election, Error, Mutex};
use cairn_client::Client;
use cairn_proto::etcdserverpb::{DeleteRangeRequest, LeaseGrantRequest};
use cairn_proto::v3electionpb::{
    election_server, CampaignRequest, CampaignResponse, LeaderKey, LeaderRequest, LeaderResponse,
    ProclaimRequest, ProclaimResponse, ResignRequest, ResignResponse,
};
use cairn_proto::v3lockpb::{
    lock_server, LockRequest, LockResponse, UnlockRequest, UnlockResponse,
};
use futures::{Stream, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::server::Server;

/// The TTL of the lease granted for a lock or campaign asked without one (etcd's session
/// default); nothing keeps it alive.
const DEFAULT_SESSION_TTL: i64 = 60;

/// The error etcd's election service gives for a request without its leader key.
const MISSING_LEADER_KEY: &str = "\"leader\" field must be provided";

/// A status from this member's own client, as etcd's services pass such errors on.
fn passed_on(s: Status) -> Status {
    Status::unknown(s.message().to_string())
}

/// The end of the range of keys that start with `prefix`, as etcd's `GetPrefixRangeEnd`.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// Checks that the caller may do what the recipe does on its behalf through the trusted
/// loopback client: `access` on `key` (with `range_end`). A refusal reads as etcd's, whose
/// recipe runs as the caller and passes the store's error on.
async fn may<T>(
    server: &Server,
    r: &Request<T>,
    key: &[u8],
    range_end: &[u8],
    access: &[Access],
) -> Result<(), Status> {
    let who = super::caller(server, r).await.map_err(passed_on)?;
    for a in access {
        server
            .auth()
            .check(who.as_ref(), *a, key, range_end)
            .map_err(|e| passed_on(e.status()))?;
    }
    Ok(())
}

/// Whether the caller may `access` what a lock or an election named `name` uses: the keys
/// under `name/`.
async fn may_use_prefix<T>(
    server: &Server,
    r: &Request<T>,
    name: &[u8],
    access: &[Access],
) -> Result<(), Status> {
    let mut prefix = name.to_vec();
    prefix.push(b'/');
    let end = prefix_end(&prefix);
    may(server, r, &prefix, &end, access).await
}

/// Reading and writing: what holding a lock or campaigning needs.
const READ_WRITE: &[Access] = &[Access::Read, Access::Write];

/// The lease a lock or campaign runs under: the client's, or a new one when it gave none.
async fn session_lease(client: &Client, lease: i64) -> Result<i64, Status> {
    if lease != 0 {
        return Ok(lease);
    }
    let granted = client
        .lease()
        .lease_grant(LeaseGrantRequest {
            ttl: DEFAULT_SESSION_TTL,
            id: 0,
        })
        .await
        .map_err(passed_on)?
        .into_inner();
    Ok(granted.id)
}

/// Runs `acquire` on its own task; when the caller stops waiting before it finishes, or
/// after it finished but the caller is gone, `withdraw` undoes it.
async fn until_acquired<T, F, W>(acquire: F, withdraw: W) -> Result<T, Status>
where
    T: Send + 'static,
    F: std::future::Future<Output = Result<T, Error>> + Send + 'static,
    W: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        let mut tx = tx;
        tokio::select! {
            got = acquire => {
                if let Err(Ok(_)) = tx.send(got) {
                    withdraw.await;
                }
            }
            _ = tx.closed() => withdraw.await,
        }
    });
    rx.await
        .map_err(|_| Status::cancelled("context canceled"))?
        .map_err(Error::into_status)
}

/// The v3lock service of one member.
pub struct LockService {
    pub client: Client,
    /// Whom the caller's permissions are checked by.
    pub server: Arc<Server>,
}

#[tonic::async_trait]
impl lock_server::Lock for LockService {
    async fn lock(&self, r: Request<LockRequest>) -> Result<Response<LockResponse>, Status> {
        may_use_prefix(&self.server, &r, &r.get_ref().name, READ_WRITE).await?;
        let req = r.into_inner();
        let lease = session_lease(&self.client, req.lease).await?;
        let key = [req.name.as_slice(), format!("/{lease:x}").as_bytes()].concat();
        let client = self.client.clone();
        let name = req.name.clone();
        let acquire = async move {
            let mut m = Mutex::new(client, &name);
            m.lock(lease).await?;
            Ok(LockResponse {
                header: m.header().cloned(),
                key: m.key().to_vec(),
            })
        };
        let withdraw = delete(self.client.clone(), key);
        until_acquired(acquire, withdraw).await.map(Response::new)
    }

    async fn unlock(&self, r: Request<UnlockRequest>) -> Result<Response<UnlockResponse>, Status> {
        may(&self.server, &r, &r.get_ref().key, &[], &[Access::Write]).await?;
        let req = r.into_inner();
        let resp = self
            .client
            .kv()
            .delete_range(DeleteRangeRequest {
                key: req.key,
                ..Default::default()
            })
            .await
            .map_err(passed_on)?
            .into_inner();
        Ok(Response::new(UnlockResponse {
            header: resp.header,
        }))
    }
}

async fn delete(client: Client, key: Vec<u8>) {
    let _ = client
        .kv()
        .delete_range(DeleteRangeRequest {
            key,
            ..Default::default()
        })
        .await;
}

/// The v3election service of one member.
pub struct ElectionService {
    pub client: Client,
    /// Whom the caller's permissions are checked by.
    pub server: Arc<Server>,
}

fn resume(client: &Client, leader: Option<LeaderKey>) -> Result<Election, Status> {
    let l = leader.ok_or_else(|| Status::unknown(MISSING_LEADER_KEY))?;
    Ok(Election::resume(
        client.clone(),
        &l.name,
        &l.key,
        l.rev,
        l.lease,
    ))
}

type LeaderStream = Pin<Box<dyn Stream<Item = Result<LeaderResponse, Status>> + Send>>;

#[tonic::async_trait]
impl election_server::Election for ElectionService {
    async fn campaign(
        &self,
        r: Request<CampaignRequest>,
    ) -> Result<Response<CampaignResponse>, Status> {
        may_use_prefix(&self.server, &r, &r.get_ref().name, READ_WRITE).await?;
        let req = r.into_inner();
        let lease = session_lease(&self.client, req.lease).await?;
        let client = self.client.clone();
        let name = req.name.clone();
        let acquire = async move {
            let mut e = Election::new(client, &name);
            e.campaign(lease, &req.value).await?;
            Ok(CampaignResponse {
                header: e.header().cloned(),
                leader: Some(LeaderKey {
                    name,
                    key: e.key().to_vec(),
                    rev: e.rev(),
                    lease,
                }),
            })
        };
        let mut key = req.name.clone();
        key.extend_from_slice(format!("/{lease:x}").as_bytes());
        let withdraw = delete(self.client.clone(), key);
        until_acquired(acquire, withdraw).await.map(Response::new)
    }

    async fn proclaim(
        &self,
        r: Request<ProclaimRequest>,
    ) -> Result<Response<ProclaimResponse>, Status> {
        let key = r.get_ref().leader.as_ref().map(|l| l.key.clone());
        if let Some(key) = key {
            may(&self.server, &r, &key, &[], &[Access::Read, Access::Write]).await?;
        }
        let req = r.into_inner();
        let mut e = resume(&self.client, req.leader)?;
        e.proclaim(&req.value).await.map_err(Error::into_status)?;
        Ok(Response::new(ProclaimResponse {
            header: e.header().cloned(),
        }))
    }

    async fn leader(&self, r: Request<LeaderRequest>) -> Result<Response<LeaderResponse>, Status> {
        may_use_prefix(&self.server, &r, &r.get_ref().name, &[Access::Read]).await?;
        let req = r.into_inner();
        let (header, kv) = Election::new(self.client.clone(), &req.name)
            .leader()
            .await
            .map_err(Error::into_status)?;
        Ok(Response::new(LeaderResponse {
            header: Some(header),
            kv: Some(kv),
        }))
    }

    type ObserveStream = LeaderStream;

    async fn observe(
        &self,
        r: Request<LeaderRequest>,
    ) -> Result<Response<Self::ObserveStream>, Status> {
        may_use_prefix(&self.server, &r, &r.get_ref().name, &[Access::Read]).await?;
        let req = r.into_inner();
        let e = Election::new(self.client.clone(), &req.name);
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move { e.observe(tx).await });
        let stream = ReceiverStream::new(rx).map(|(header, kv)| {
            Ok(LeaderResponse {
                header: Some(header),
                kv: Some(kv),
            })
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn resign(&self, r: Request<ResignRequest>) -> Result<Response<ResignResponse>, Status> {
        let key = r.get_ref().leader.as_ref().map(|l| l.key.clone());
        if let Some(key) = key {
            may(&self.server, &r, &key, &[], &[Access::Write]).await?;
        }
        let req = r.into_inner();
        let mut e = resume(&self.client, req.leader)?;
        e.resign().await.map_err(Error::into_status)?;
        Ok(Response::new(ResignResponse {
            header: e.header().cloned(),
        }))
    }
}
