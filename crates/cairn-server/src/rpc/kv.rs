//! The KV service: validates each request, proposes writes through Raft, serves reads
//! locally after a ReadIndex barrier (or at once when serializable).

use std::sync::Arc;

use cairn_proto::cairnpb::internal_request::Request;
use cairn_proto::etcdserverpb::{
    kv_server::Kv, CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse,
    PutRequest, PutResponse, RangeRequest, RangeResponse, TxnRequest, TxnResponse,
};
use tonic::{Request as GrpcRequest, Response, Status};

use super::caller;
use crate::proposal::ApplyResult;
use crate::server::Server;
use crate::validate;
use cairn_auth::AuthInfo;

/// The KV service of one member.
pub struct KvService {
    pub server: Arc<Server>,
}

fn unexpected() -> Status {
    Status::internal("cairn: the applier answered with an unexpected response type")
}

impl KvService {
    async fn range_inner(
        &self,
        who: Option<AuthInfo>,
        req: RangeRequest,
    ) -> Result<RangeResponse, Status> {
        if !req.serializable {
            self.server.refuse_on_learner()?;
        }
        validate::range(&req)?;
        if !req.serializable {
            self.server.linearizable_read().await?;
        }
        self.server.auth().check_range(who.as_ref(), &req)?;
        self.server.metrics().range_total.inc();
        self.server.metrics().more.debugging_range_total.inc();
        let mut resp = self
            .server
            .store()
            .range(&req)
            .map_err(super::mvcc_status)?;
        self.still_current(who.as_ref())?;
        self.server.fill(&mut resp.header);
        Ok(resp)
    }

    /// A read served under an auth revision that changed meanwhile is not answered, as
    /// etcd's serialized reads are not.
    fn still_current(&self, who: Option<&AuthInfo>) -> Result<(), Status> {
        match who {
            Some(w) if w.revision != u64::MAX && w.revision != self.server.auth().revision() => {
                Err(cairn_proto::EtcdError::AuthRevisionInHeaderOld.into())
            }
            _ => Ok(()),
        }
    }

    async fn put_inner(
        &self,
        who: Option<AuthInfo>,
        req: PutRequest,
    ) -> Result<PutResponse, Status> {
        self.server.refuse_on_learner()?;
        validate::put(&req)?;
        self.server.auth().check_put(who.as_ref(), &req)?;
        self.server.check_quota(validate::put_cost(&req)).await?;
        match self
            .server
            .propose_as(Request::Put(req), who.as_ref())
            .await?
        {
            ApplyResult::Put(mut r) => {
                self.server.fill(&mut r.header);
                Ok(r)
            }
            _ => Err(unexpected()),
        }
    }

    async fn delete_inner(
        &self,
        who: Option<AuthInfo>,
        req: DeleteRangeRequest,
    ) -> Result<DeleteRangeResponse, Status> {
        self.server.refuse_on_learner()?;
        validate::delete_range(&req)?;
        self.server.auth().check_delete(who.as_ref(), &req)?;
        match self
            .server
            .propose_as(Request::DeleteRange(req), who.as_ref())
            .await?
        {
            ApplyResult::Delete(mut r) => {
                self.server.fill(&mut r.header);
                Ok(r)
            }
            _ => Err(unexpected()),
        }
    }

    async fn txn_inner(
        &self,
        who: Option<AuthInfo>,
        req: TxnRequest,
    ) -> Result<TxnResponse, Status> {
        self.server.refuse_on_learner()?;
        validate::txn(&req, self.server.config().max_txn_ops as usize)?;
        self.server.auth().check_txn(who.as_ref(), &req)?;
        if validate::txn_is_read_only(&req) {
            // etcd serves a txn that writes nothing as a read, without a Raft entry.
            if !validate::txn_is_serializable(&req) {
                self.server.linearizable_read().await?;
            }
            self.server.metrics().txn_total.inc();
            let mut resp = self
                .server
                .store()
                .txn_read_only(&req)
                .map_err(super::mvcc_status)?;
            self.still_current(who.as_ref())?;
            self.server.fill(&mut resp.header);
            return Ok(resp);
        }
        self.server.check_quota(validate::txn_cost(&req)).await?;
        match self
            .server
            .propose_as(Request::Txn(req), who.as_ref())
            .await?
        {
            ApplyResult::Txn(mut r) => {
                self.server.fill(&mut r.header);
                Ok(r)
            }
            _ => Err(unexpected()),
        }
    }

    async fn compact_inner(
        &self,
        who: Option<AuthInfo>,
        req: CompactionRequest,
    ) -> Result<CompactionResponse, Status> {
        self.server.refuse_on_learner()?;
        match self
            .server
            .propose_as(Request::Compaction(req), who.as_ref())
            .await?
        {
            ApplyResult::Compact(mut r) => {
                if let Some(h) = r.header.as_mut() {
                    h.revision = 0;
                }
                self.server.fill(&mut r.header);
                Ok(r)
            }
            _ => Err(unexpected()),
        }
    }
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(&self, r: GrpcRequest<RangeRequest>) -> Result<Response<RangeResponse>, Status> {
        let result = async {
            let who = caller(&self.server, &r).await?;
            self.range_inner(who, r.into_inner()).await
        }
        .await;
        result.map(Response::new)
    }

    async fn put(&self, r: GrpcRequest<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let result = async {
            let who = caller(&self.server, &r).await?;
            self.put_inner(who, r.into_inner()).await
        }
        .await;
        result.map(Response::new)
    }

    async fn delete_range(
        &self,
        r: GrpcRequest<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        let result = async {
            let who = caller(&self.server, &r).await?;
            self.delete_inner(who, r.into_inner()).await
        }
        .await;
        result.map(Response::new)
    }

    async fn txn(&self, r: GrpcRequest<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        let result = async {
            let who = caller(&self.server, &r).await?;
            self.txn_inner(who, r.into_inner()).await
        }
        .await;
        result.map(Response::new)
    }

    async fn compact(
        &self,
        r: GrpcRequest<CompactionRequest>,
    ) -> Result<Response<CompactionResponse>, Status> {
        let result = async {
            let who = caller(&self.server, &r).await?;
            self.compact_inner(who, r.into_inner()).await
        }
        .await;
        result.map(Response::new)
    }
}
