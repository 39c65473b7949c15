//! gRPC plumbing the suites share: channels to a member, its status, a response header with
//! what differs from server to server taken out, and running async calls from synchronous
//! test code.

use std::future::Future;
use std::time::Duration;

use cairn_proto::etcdserverpb::{
    maintenance_client::MaintenanceClient, ResponseHeader, StatusRequest, StatusResponse,
};
use tonic::transport::{Channel, Endpoint};

/// A channel to `url` that connects on first use (so a member that is down fails the call,
/// not the channel) and gives up connecting after 500 ms. Calls carry no deadline of their
/// own: wrap them in `tokio::time::timeout` where a member may not answer. Must be made
/// inside a Tokio runtime.
pub fn channel(url: &str) -> Channel {
    Endpoint::from_shared(url.to_string())
        .unwrap()
        .connect_timeout(Duration::from_millis(500))
        .connect_lazy()
}

/// Member `url`'s status, if it answers within a second.
pub async fn status(url: &str) -> Option<StatusResponse> {
    let mut mc = MaintenanceClient::new(channel(url));
    let r = tokio::time::timeout(Duration::from_secs(1), mc.status(StatusRequest {})).await;
    r.ok()?.ok().map(|r| r.into_inner())
}

/// Zeroes what legitimately differs between two servers in a response header: the cluster
/// id, the member id and the raft term.
pub fn strip_header(h: &mut Option<ResponseHeader>) {
    if let Some(h) = h.as_mut() {
        h.cluster_id = 0;
        h.member_id = 0;
        h.raft_term = 0;
    }
}

/// Runs `f` to its end from synchronous code: on the runtime the caller is in (which must be
/// a multi-thread one), else on a runtime of its own.
pub fn block_on<F: Future>(f: F) -> F::Output {
    match tokio::runtime::Handle::try_current() {
        Ok(rt) => tokio::task::block_in_place(|| rt.block_on(f)),
        Err(_) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f),
    }
}
