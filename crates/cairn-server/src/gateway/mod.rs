//! The JSON gateway: etcd's `/v3/...` (and `/v3beta/...`) HTTP endpoints on every client URL.
//!
//! As etcd's gateway forwards each JSON request to its own gRPC server, this one hands each
//! request to the in-process gRPC router the client port serves, so auth, quota, request
//! checks, metrics and errors are those of the gRPC call. Nothing here knows a method: one
//! table names each path with its gRPC method and message types, and the protos' generated
//! serde impls (`pbjson`) give etcd's JSON mapping (grpc-gateway v1 with proto field names
//! and no defaults emitted: 64-bit integers as strings, bytes as base64, enums by name).
//!
//! # Layout
//!
//! - `mod.rs`: the table of routes and the router.
//! - `grpc.rs`: one in-process gRPC call: request framing, response frames, the status.
//! - `unary.rs`: a unary method: one JSON body in, one JSON object (or error) out.
//! - `stream.rs`: streaming methods (watch, lease keepalive, snapshot, observe): JSON
//!   objects in, one long response of newline-separated `{"result": ...}` objects out.
//! - `error.rs`: errors as etcd's gateway writes them, with grpc-gateway's HTTP statuses.
//! - `access.rs`: `--cors` and `--host-whitelist`, for every HTTP request of a client URL.

mod access;
mod error;
mod grpc;
mod stream;
mod unary;

use std::future::Future;
use std::pin::Pin;

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, MethodRouter};
use axum::Router;
use cairn_proto::etcdserverpb as pb;
use cairn_proto::v3electionpb as el;
use cairn_proto::v3lockpb as lk;

pub use access::{check as check_access, Access};

/// What the handlers share: the gRPC router the client port serves, and the request limit.
#[derive(Clone)]
pub struct Gateway {
    grpc: Router,
    /// The longest JSON body read, in bytes.
    body_limit: usize,
}

type Handler =
    fn(Gateway, &'static str, HeaderMap, Body) -> Pin<Box<dyn Future<Output = Response> + Send>>;

/// One gateway endpoint: its path under `/v3/`, the gRPC method it calls, and the adapter
/// (unary or stream) for the method's message types.
struct Route {
    path: &'static str,
    grpc: &'static str,
    handler: Handler,
}

/// A route to a unary method.
fn unary<Req, Resp>(path: &'static str, grpc: &'static str) -> Route
where
    Req: prost::Message + serde::de::DeserializeOwned + Default + 'static,
    Resp: prost::Message + serde::Serialize + Default + 'static,
{
    Route {
        path,
        grpc,
        handler: |gw, g, h, b| Box::pin(unary::call::<Req, Resp>(gw, g, h, b)),
    }
}

/// A route to a streaming method: `many` when the client streams too (a JSON object after
/// another in the body), else the body holds the one request.
fn stream<Req, Resp>(path: &'static str, grpc: &'static str, many: bool) -> Route
where
    Req: prost::Message + serde::de::DeserializeOwned + Default + Send + 'static,
    Resp: prost::Message + serde::Serialize + Default + Send + 'static,
{
    let handler: Handler = if many {
        |gw, g, h, b| Box::pin(stream::call::<Req, Resp>(gw, g, h, b, true))
    } else {
        |gw, g, h, b| Box::pin(stream::call::<Req, Resp>(gw, g, h, b, false))
    };
    Route {
        path,
        grpc,
        handler,
    }
}

/// Every endpoint etcd's gateway serves, as its `rpc.proto`, `v3lock.proto` and
/// `v3election.proto` annotate them. `/v3/maintenance/hash` is Hash's, as in etcd (HashKV is
/// annotated with the same path, and the first registered answers).
fn routes() -> Vec<Route> {
    vec![
        unary::<pb::RangeRequest, pb::RangeResponse>("kv/range", "/etcdserverpb.KV/Range"),
        unary::<pb::PutRequest, pb::PutResponse>("kv/put", "/etcdserverpb.KV/Put"),
        unary::<pb::DeleteRangeRequest, pb::DeleteRangeResponse>(
            "kv/deleterange",
            "/etcdserverpb.KV/DeleteRange",
        ),
        unary::<pb::TxnRequest, pb::TxnResponse>("kv/txn", "/etcdserverpb.KV/Txn"),
        unary::<pb::CompactionRequest, pb::CompactionResponse>(
            "kv/compaction",
            "/etcdserverpb.KV/Compact",
        ),
        stream::<pb::WatchRequest, pb::WatchResponse>("watch", "/etcdserverpb.Watch/Watch", true),
        unary::<pb::LeaseGrantRequest, pb::LeaseGrantResponse>(
            "lease/grant",
            "/etcdserverpb.Lease/LeaseGrant",
        ),
        unary::<pb::LeaseRevokeRequest, pb::LeaseRevokeResponse>(
            "lease/revoke",
            "/etcdserverpb.Lease/LeaseRevoke",
        ),
        unary::<pb::LeaseRevokeRequest, pb::LeaseRevokeResponse>(
            "kv/lease/revoke",
            "/etcdserverpb.Lease/LeaseRevoke",
        ),
        stream::<pb::LeaseKeepAliveRequest, pb::LeaseKeepAliveResponse>(
            "lease/keepalive",
            "/etcdserverpb.Lease/LeaseKeepAlive",
            true,
        ),
        unary::<pb::LeaseTimeToLiveRequest, pb::LeaseTimeToLiveResponse>(
            "lease/timetolive",
            "/etcdserverpb.Lease/LeaseTimeToLive",
        ),
        unary::<pb::LeaseTimeToLiveRequest, pb::LeaseTimeToLiveResponse>(
            "kv/lease/timetolive",
            "/etcdserverpb.Lease/LeaseTimeToLive",
        ),
        unary::<pb::LeaseLeasesRequest, pb::LeaseLeasesResponse>(
            "lease/leases",
            "/etcdserverpb.Lease/LeaseLeases",
        ),
        unary::<pb::LeaseLeasesRequest, pb::LeaseLeasesResponse>(
            "kv/lease/leases",
            "/etcdserverpb.Lease/LeaseLeases",
        ),
        unary::<pb::MemberAddRequest, pb::MemberAddResponse>(
            "cluster/member/add",
            "/etcdserverpb.Cluster/MemberAdd",
        ),
        unary::<pb::MemberRemoveRequest, pb::MemberRemoveResponse>(
            "cluster/member/remove",
            "/etcdserverpb.Cluster/MemberRemove",
        ),
        unary::<pb::MemberUpdateRequest, pb::MemberUpdateResponse>(
            "cluster/member/update",
            "/etcdserverpb.Cluster/MemberUpdate",
        ),
        unary::<pb::MemberListRequest, pb::MemberListResponse>(
            "cluster/member/list",
            "/etcdserverpb.Cluster/MemberList",
        ),
        unary::<pb::MemberPromoteRequest, pb::MemberPromoteResponse>(
            "cluster/member/promote",
            "/etcdserverpb.Cluster/MemberPromote",
        ),
        unary::<pb::AlarmRequest, pb::AlarmResponse>(
            "maintenance/alarm",
            "/etcdserverpb.Maintenance/Alarm",
        ),
        unary::<pb::StatusRequest, pb::StatusResponse>(
            "maintenance/status",
            "/etcdserverpb.Maintenance/Status",
        ),
        unary::<pb::DefragmentRequest, pb::DefragmentResponse>(
            "maintenance/defragment",
            "/etcdserverpb.Maintenance/Defragment",
        ),
        unary::<pb::HashRequest, pb::HashResponse>(
            "maintenance/hash",
            "/etcdserverpb.Maintenance/Hash",
        ),
        stream::<pb::SnapshotRequest, pb::SnapshotResponse>(
            "maintenance/snapshot",
            "/etcdserverpb.Maintenance/Snapshot",
            false,
        ),
        unary::<pb::MoveLeaderRequest, pb::MoveLeaderResponse>(
            "maintenance/transfer-leadership",
            "/etcdserverpb.Maintenance/MoveLeader",
        ),
        unary::<pb::DowngradeRequest, pb::DowngradeResponse>(
            "maintenance/downgrade",
            "/etcdserverpb.Maintenance/Downgrade",
        ),
        unary::<pb::AuthEnableRequest, pb::AuthEnableResponse>(
            "auth/enable",
            "/etcdserverpb.Auth/AuthEnable",
        ),
        unary::<pb::AuthDisableRequest, pb::AuthDisableResponse>(
            "auth/disable",
            "/etcdserverpb.Auth/AuthDisable",
        ),
        unary::<pb::AuthStatusRequest, pb::AuthStatusResponse>(
            "auth/status",
            "/etcdserverpb.Auth/AuthStatus",
        ),
        unary::<pb::AuthenticateRequest, pb::AuthenticateResponse>(
            "auth/authenticate",
            "/etcdserverpb.Auth/Authenticate",
        ),
        unary::<pb::AuthUserAddRequest, pb::AuthUserAddResponse>(
            "auth/user/add",
            "/etcdserverpb.Auth/UserAdd",
        ),
        unary::<pb::AuthUserGetRequest, pb::AuthUserGetResponse>(
            "auth/user/get",
            "/etcdserverpb.Auth/UserGet",
        ),
        unary::<pb::AuthUserListRequest, pb::AuthUserListResponse>(
            "auth/user/list",
            "/etcdserverpb.Auth/UserList",
        ),
        unary::<pb::AuthUserDeleteRequest, pb::AuthUserDeleteResponse>(
            "auth/user/delete",
            "/etcdserverpb.Auth/UserDelete",
        ),
        unary::<pb::AuthUserChangePasswordRequest, pb::AuthUserChangePasswordResponse>(
            "auth/user/changepw",
            "/etcdserverpb.Auth/UserChangePassword",
        ),
        unary::<pb::AuthUserGrantRoleRequest, pb::AuthUserGrantRoleResponse>(
            "auth/user/grant",
            "/etcdserverpb.Auth/UserGrantRole",
        ),
        unary::<pb::AuthUserRevokeRoleRequest, pb::AuthUserRevokeRoleResponse>(
            "auth/user/revoke",
            "/etcdserverpb.Auth/UserRevokeRole",
        ),
        unary::<pb::AuthRoleAddRequest, pb::AuthRoleAddResponse>(
            "auth/role/add",
            "/etcdserverpb.Auth/RoleAdd",
        ),
        unary::<pb::AuthRoleGetRequest, pb::AuthRoleGetResponse>(
            "auth/role/get",
            "/etcdserverpb.Auth/RoleGet",
        ),
        unary::<pb::AuthRoleListRequest, pb::AuthRoleListResponse>(
            "auth/role/list",
            "/etcdserverpb.Auth/RoleList",
        ),
        unary::<pb::AuthRoleDeleteRequest, pb::AuthRoleDeleteResponse>(
            "auth/role/delete",
            "/etcdserverpb.Auth/RoleDelete",
        ),
        unary::<pb::AuthRoleGrantPermissionRequest, pb::AuthRoleGrantPermissionResponse>(
            "auth/role/grant",
            "/etcdserverpb.Auth/RoleGrantPermission",
        ),
        unary::<pb::AuthRoleRevokePermissionRequest, pb::AuthRoleRevokePermissionResponse>(
            "auth/role/revoke",
            "/etcdserverpb.Auth/RoleRevokePermission",
        ),
        unary::<lk::LockRequest, lk::LockResponse>("lock/lock", "/v3lockpb.Lock/Lock"),
        unary::<lk::UnlockRequest, lk::UnlockResponse>("lock/unlock", "/v3lockpb.Lock/Unlock"),
        unary::<el::CampaignRequest, el::CampaignResponse>(
            "election/campaign",
            "/v3electionpb.Election/Campaign",
        ),
        unary::<el::ProclaimRequest, el::ProclaimResponse>(
            "election/proclaim",
            "/v3electionpb.Election/Proclaim",
        ),
        unary::<el::LeaderRequest, el::LeaderResponse>(
            "election/leader",
            "/v3electionpb.Election/Leader",
        ),
        stream::<el::LeaderRequest, el::LeaderResponse>(
            "election/observe",
            "/v3electionpb.Election/Observe",
            false,
        ),
        unary::<el::ResignRequest, el::ResignResponse>(
            "election/resign",
            "/v3electionpb.Election/Resign",
        ),
    ]
}

/// The gateway's router: every route under `/v3/` and `/v3beta/`, calling `grpc` (the
/// client port's gRPC router) in-process. A JSON body longer than `max_request_bytes`
/// allows once base64 and JSON's quoting are counted is refused without being buffered.
pub fn router(grpc: Router, max_request_bytes: usize) -> Router {
    let gw = Gateway {
        grpc,
        // Base64 makes bytes 4/3 longer; JSON's names and escapes add the rest.
        body_limit: max_request_bytes
            .saturating_add(crate::config::GRPC_OVERHEAD_BYTES)
            .saturating_mul(2),
    };
    let mut r = Router::new();
    for route in routes() {
        for prefix in ["/v3/", "/v3beta/"] {
            r = r.route(
                &format!("{prefix}{}", route.path),
                method(gw.clone(), route.grpc, route.handler),
            );
        }
    }
    // A path under the gateway's prefixes that names no method: grpc-gateway's answer.
    for prefix in ["/v3/", "/v3beta/"] {
        r = r.route(&format!("{prefix}{{*rest}}"), any(not_found));
    }
    r
}

/// POST calls the handler; any other method is refused as grpc-gateway refuses it.
fn method(gw: Gateway, grpc: &'static str, handler: Handler) -> MethodRouter {
    any(move |req: axum::extract::Request| {
        let gw = gw.clone();
        async move {
            if req.method() != axum::http::Method::POST {
                return text(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed\n");
            }
            let (parts, body) = req.into_parts();
            handler(gw, grpc, parts.headers, body).await
        }
    })
}

async fn not_found() -> Response {
    text(StatusCode::NOT_FOUND, "Not Found\n")
}

fn text(status: StatusCode, body: &'static str) -> Response {
    (
        status,
        [
            ("content-type", "text/plain; charset=utf-8"),
            ("x-content-type-options", "nosniff"),
        ],
        body,
    )
        .into_response()
}
