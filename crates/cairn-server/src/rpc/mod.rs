//! The gRPC services, one file each, and what they share: the mapping of store errors to
//! etcd's statuses, and per-RPC metrics.
//!
//! Adapters: each decodes a request, calls the [`crate::server::Server`] (or the lease
//! keeper and watch hub it hands out), and encodes the answer. Policy (membership rules,
//! the quota, etcd's request checks in `validate.rs`) lives below; nothing below calls
//! into this module.

pub mod cluster;
pub mod kv;
pub mod lease;
pub mod lock;
pub mod maintenance;
pub mod watch;

use tonic::{Response, Status};

use crate::metrics::Metrics;

/// Maps a store error to etcd's status; an error etcd has no name for is internal.
pub fn mvcc_status(e: cairn_mvcc::MvccError) -> Status {
    match e.etcd() {
        Some(etcd) => etcd.status(),
        None => Status::internal(e.to_string()),
    }
}

/// Wraps a handler's result in a response and counts it in `grpc_server_handled_total`.
pub trait Observed<T> {
    fn observed(self, m: &Metrics, service: &str, method: &str) -> Result<Response<T>, Status>;
}

impl<T> Observed<T> for Result<T, Status> {
    fn observed(self, m: &Metrics, service: &str, method: &str) -> Result<Response<T>, Status> {
        let code = match &self {
            Ok(_) => tonic::Code::Ok,
            Err(s) => s.code(),
        };
        m.grpc_done(service, method, true, code);
        self.map(Response::new)
    }
}
