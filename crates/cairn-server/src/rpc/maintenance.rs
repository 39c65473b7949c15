//! The Maintenance service: Status, Alarm, Defragment, Hash, HashKV and Snapshot.

use std::pin::Pin;
use std::sync::Arc;

use cairn_proto::cairnpb::internal_request::Request as Internal;
use cairn_proto::etcdserverpb::{
    maintenance_server::Maintenance, AlarmRequest, AlarmResponse, DefragmentRequest,
    DefragmentResponse, DowngradeRequest, DowngradeResponse, HashKvRequest, HashKvResponse,
    HashRequest, HashResponse, MoveLeaderRequest, MoveLeaderResponse, SnapshotRequest,
    SnapshotResponse, StatusRequest, StatusResponse,
};
use cairn_proto::EtcdError;
use futures::Stream;
use sha2::{Digest, Sha256};
use tonic::{Request, Response, Status};

use super::mvcc_status;
use crate::proposal::ApplyResult;
use crate::server::Server;

/// Bytes per Snapshot message, as etcd sends them.
const SNAPSHOT_CHUNK: usize = 32 * 1024;

/// Snapshot streams a member serves at once; later ones wait in line for one to end.
/// Each holds its snapshot file (the backend in etcd's format) in the data directory while
/// it streams.
pub const MAX_SNAPSHOT_STREAMS: usize = 4;

/// The Maintenance service of one member.
pub struct MaintenanceService {
    pub server: Arc<Server>,
    /// [`MAX_SNAPSHOT_STREAMS`] permits, shared by the member's client listeners: a
    /// Snapshot call holds one from before its copy is made until its stream ends.
    pub snapshots: Arc<tokio::sync::Semaphore>,
}

/// Runs blocking backend work off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, cairn_mvcc::MvccError> + Send + 'static,
) -> Result<T, Status> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(mvcc_status),
        Err(e) => Err(Status::internal(e.to_string())),
    }
}

impl MaintenanceService {
    fn status_inner(&self) -> StatusResponse {
        let s = &self.server;
        let st = s.raft_status();
        let mut errors = s.alarms().status_errors();
        if st.leader_id == 0 {
            errors.push(EtcdError::NoLeader.message().to_string());
        }
        StatusResponse {
            header: Some(s.header(s.store().current_revision())),
            version: crate::config::ETCD_API_VERSION.to_string(),
            db_size: s.store().db_size() as i64,
            leader: st.leader_id,
            raft_index: st.commit_index,
            raft_term: st.term,
            raft_applied_index: s.applied_index(),
            errors,
            db_size_in_use: s.store().db_size_in_use() as i64,
            is_learner: s.is_learner(),
            storage_version: crate::config::ETCD_CLUSTER_VERSION.to_string(),
            db_size_quota: s.config().quota_backend_bytes as i64,
            downgrade_info: None,
        }
    }

    async fn alarm_inner(
        &self,
        who: Option<cairn_auth::AuthInfo>,
        req: AlarmRequest,
    ) -> Result<AlarmResponse, Status> {
        self.server.refuse_on_learner()?;
        match self
            .server
            .propose_as(Internal::Alarm(req), who.as_ref())
            .await?
        {
            ApplyResult::Alarm(mut r) => {
                r.header = None;
                self.server.fill(&mut r.header);
                Ok(r)
            }
            _ => Err(Status::internal("cairn: unexpected alarm result")),
        }
    }

    async fn hash_kv_inner(&self, req: HashKvRequest) -> Result<HashKvResponse, Status> {
        self.server.refuse_on_learner()?;
        let store = self.server.store().clone();
        let h = blocking(move || store.hash_kv(req.revision)).await?;
        Ok(HashKvResponse {
            header: Some(self.server.header(h.current_revision)),
            hash: h.hash,
            compact_revision: h.compact_revision,
            hash_revision: h.hash_revision,
        })
    }

    /// Writes the member's state as etcd's backend into a fresh file under the data
    /// directory; the directory is removed when the returned guard drops.
    async fn snapshot_file(&self) -> Result<(tempfile::TempDir, std::fs::File, u64), Status> {
        let server = self.server.clone();
        let dir = self.server.config().data_dir.clone();
        let made = tokio::task::spawn_blocking(move || {
            let tmp = tempfile::Builder::new()
                .prefix(crate::server::SNAPSHOT_COPY_PREFIX)
                .tempdir_in(&dir)?;
            let path = tmp.path().join("snapshot.db");
            let out = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)?;
            let started = std::time::Instant::now();
            let len = server.write_etcd_snapshot(out)?;
            server
                .metrics()
                .more
                .snapshot_duration
                .observe(started.elapsed().as_secs_f64());
            let file = std::fs::File::open(&path)?;
            Ok::<_, crate::server::ExportError>((tmp, file, len))
        })
        .await;
        match made {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "failed to write database snapshot");
                Err(Status::internal(e.to_string()))
            }
            Err(e) => Err(Status::internal(e.to_string())),
        }
    }
}

type SnapshotStream = Pin<Box<dyn Stream<Item = Result<SnapshotResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    async fn alarm(&self, r: Request<AlarmRequest>) -> Result<Response<AlarmResponse>, Status> {
        let result = async {
            let who = super::caller(&self.server, &r).await?;
            self.alarm_inner(who, r.into_inner()).await
        }
        .await;
        result.map(Response::new)
    }

    async fn status(&self, _: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        Ok(Response::new(self.status_inner()))
    }

    async fn defragment(
        &self,
        r: Request<DefragmentRequest>,
    ) -> Result<Response<DefragmentResponse>, Status> {
        if let Err(e) = super::maintenance_admin(&self.server, &r).await {
            return Err::<DefragmentResponse, _>(e).map(Response::new);
        }
        tracing::info!("starting defragment");
        let server = self.server.clone();
        let result =
            blocking(move || crate::server::defragment(server.store(), &server.metrics().more))
                .await;
        match &result {
            Ok(_) => tracing::info!("finished defragment"),
            Err(e) => tracing::warn!(cause = %e.message(), "failed to defragment"),
        }
        // etcd 3.4 and 3.5 answer with an empty response, without a header (the gateway
        // shows it: `{}`).
        result
            .map(|_| DefragmentResponse { header: None })
            .map(Response::new)
    }

    async fn hash(&self, r: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        if let Err(e) = super::maintenance_admin(&self.server, &r).await {
            return Err::<HashResponse, _>(e).map(Response::new);
        }
        let store = self.server.store().clone();
        let s = &self.server;
        let started = std::time::Instant::now();
        let hashed = blocking(move || store.hash()).await;
        if hashed.is_ok() {
            s.metrics()
                .more
                .hash_duration
                .observe(started.elapsed().as_secs_f64());
        }
        hashed
            .map(|hash| HashResponse {
                header: Some(s.header(s.store().current_revision())),
                hash,
            })
            .map(Response::new)
    }

    async fn hash_kv(&self, r: Request<HashKvRequest>) -> Result<Response<HashKvResponse>, Status> {
        let result = async {
            super::maintenance_admin(&self.server, &r).await?;
            let started = std::time::Instant::now();
            let hashed = self.hash_kv_inner(r.into_inner()).await?;
            self.server
                .metrics()
                .more
                .hash_rev_duration
                .observe(started.elapsed().as_secs_f64());
            Ok(hashed)
        }
        .await;
        result.map(Response::new)
    }

    type SnapshotStream = SnapshotStream;

    async fn snapshot(
        &self,
        r: Request<SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        super::maintenance_admin(&self.server, &r).await?;
        // Waits in line while MAX_SNAPSHOT_STREAMS streams run (a client that gives up
        // meanwhile leaves the line). The permit goes to the sending thread and is given
        // back when the stream ends, with the copy removed: sent, failed, or the client
        // gone (its next send fails).
        let permit = self
            .snapshots
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        let (tmp_dir, mut file, total) = self.snapshot_file().await?;
        tracing::info!(total_bytes = total, "sending database snapshot to client");
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<SnapshotResponse, Status>>(4);
        let header = self.server.header(self.server.store().current_revision());
        std::thread::Builder::new()
            .name("cairn-snapshot".into())
            .spawn(move || {
                use std::io::Read;
                let _copy = (tmp_dir, permit);
                let mut sha = Sha256::new();
                let mut sent = 0u64;
                let mut buf = vec![0u8; SNAPSHOT_CHUNK];
                let mut first = true;
                while sent < total {
                    let want = SNAPSHOT_CHUNK.min((total - sent) as usize);
                    if let Err(e) = file.read_exact(&mut buf[..want]) {
                        let _ = tx.blocking_send(Err(Status::internal(e.to_string())));
                        return;
                    }
                    sha.update(&buf[..want]);
                    sent += want as u64;
                    let msg = SnapshotResponse {
                        header: first.then_some(header),
                        remaining_bytes: total - sent,
                        blob: buf[..want].to_vec(),
                        version: if first {
                            crate::config::ETCD_API_VERSION.into()
                        } else {
                            String::new()
                        },
                    };
                    first = false;
                    if tx.blocking_send(Ok(msg)).is_err() {
                        return;
                    }
                }
                let digest = SnapshotResponse {
                    header: None,
                    remaining_bytes: 0,
                    blob: sha.finalize().to_vec(),
                    version: String::new(),
                };
                let _ = tx.blocking_send(Ok(digest));
                tracing::info!(total_bytes = total, "sent database snapshot to client");
            })
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn move_leader(
        &self,
        r: Request<MoveLeaderRequest>,
    ) -> Result<Response<MoveLeaderResponse>, Status> {
        let s = &self.server;
        // etcd 3.5.1 checks no permission for MoveLeader (its auth check of maintenance
        // requests skips it), and neither does cairn.
        let result = async {
            s.move_leader(r.into_inner().target_id).await?;
            Ok(MoveLeaderResponse {
                header: Some(s.header(s.store().current_revision())),
            })
        }
        .await;
        result.map(Response::new)
    }

    async fn downgrade(
        &self,
        _: Request<DowngradeRequest>,
    ) -> Result<Response<DowngradeResponse>, Status> {
        Err::<DowngradeResponse, _>(Status::unimplemented("cairn: downgrade is not supported"))
            .map(Response::new)
    }
}
