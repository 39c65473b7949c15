//! etcd v3 wire types and etcd's error table.
//!
//! The `.proto` files under `proto/` are written for cairn from etcd's published API (field
//! numbers and names as etcd 3.5, plus the 3.6 additions to `StatusResponse`,
//! `HashKVResponse` and `SnapshotResponse`). They are compiled at build time by `protox`, so
//! no system `protoc` is needed.
//!
//! This crate depends on nothing else in the workspace; everything else depends on it.
//!
//! # Layout
//!
//! - `etcdserverpb`, `mvccpb`, `authpb`, `v3lockpb`, `v3electionpb`: generated messages,
//!   clients and servers, one module per protobuf package.
//! - `cairnpb`: cairn's Raft log entry (`InternalRequest`).
//! - [`error`]: every etcd error with its gRPC code and exact message text.
//! - [`json`]: how the generated serde impls read bytes and integer fields (as etcd's
//!   gateway reads them; the build script points the impls at it).

#[allow(clippy::all)]
pub mod mvccpb {
    //! Key-value records and events.
    include!(concat!(env!("OUT_DIR"), "/mvccpb.rs"));
    include!(concat!(env!("OUT_DIR"), "/mvccpb.serde.rs"));
}

#[allow(clippy::all)]
pub mod authpb {
    //! Users, roles and permissions.
    include!(concat!(env!("OUT_DIR"), "/authpb.rs"));
    include!(concat!(env!("OUT_DIR"), "/authpb.serde.rs"));
}

#[allow(clippy::all)]
pub mod etcdserverpb {
    //! The etcd v3 gRPC services and their messages.
    include!(concat!(env!("OUT_DIR"), "/etcdserverpb.rs"));
    include!(concat!(env!("OUT_DIR"), "/etcdserverpb.serde.rs"));
}

#[allow(clippy::all)]
pub mod v3lockpb {
    //! The lock service.
    include!(concat!(env!("OUT_DIR"), "/v3lockpb.rs"));
    include!(concat!(env!("OUT_DIR"), "/v3lockpb.serde.rs"));
}

#[allow(clippy::all)]
pub mod v3electionpb {
    //! The election service.
    include!(concat!(env!("OUT_DIR"), "/v3electionpb.rs"));
    include!(concat!(env!("OUT_DIR"), "/v3electionpb.serde.rs"));
}

#[allow(clippy::all)]
pub mod cairnpb {
    //! cairn's Raft log entry.
    include!(concat!(env!("OUT_DIR"), "/cairnpb.rs"));
}

pub mod error;
pub mod json;

pub use error::{grpc_code_name, EtcdError};
