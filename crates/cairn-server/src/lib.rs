//! The cairn server: configuration, bootstrap, the apply loop, the gRPC services and the
//! HTTP endpoints of one member.
//!
//! Depends on `cairn-proto`, `cairn-mvcc`, `cairn-lease`, `cairn-auth` and `cairn-raft` (never on raft-rs
//! or protobuf: cairn-raft keeps them); nothing depends on it but the `cairn` binary and
//! tests.
//!
//! # Layout
//!
//! Rooms from the bottom up; each uses only rooms above it in this list, never one below
//! (`tests/layering.rs` checks that no cycle forms and that nothing calls into `rpc`).
//!
//! - [`identity`], [`tls`]: what a connection proves about its client (read by the RPC
//!   layer); the rustls configurations etcd's TLS flags make, rebuilt when their files
//!   change, self-signed certificates for auto-TLS, and dialling peer URLs' gRPC.
//! - [`systemd`]: readiness notifications and journald's native protocol, without
//!   libsystemd (the logger writes through it; `run/` notifies).
//! - [`config`], [`ids`], [`logging`], [`metrics`], `validate`: etcd's flags and config
//!   file; member and cluster ids as etcd derives them; etcd-shaped JSON logs; etcd's
//!   metric names (`process_stats`: the `process_*` figures read from `/proc`); etcd's
//!   checks on client requests and what they cost the quota.
//! - `proposal/`: a request into the Raft log, and its proposer waiting for the applier's
//!   answer (request ids, the waiter table, membership changes with their context).
//! - `cluster/`: the member set as applied, the peer directory trait the transport
//!   implements, and `policy.rs`, etcd's rules for membership changes (strict
//!   reconfiguration).
//! - `watch/`: the watch hub: watchers, their dispatch index, the hand-off of applied
//!   events without blocking the applier.
//! - `lease/`: the lessor as the applier uses it; `keeper.rs`, keep-alives and
//!   time-to-live answered by the leader (forwarded to it over the peer URLs) and the
//!   leader's expiry and checkpoint loop; `service.rs`, the leader's side (LeasePeer).
//! - `peer/`: the peer set Raft sends through, raft streams (TCP, or TLS on https peer
//!   URLs), Raft snapshots in chunks over gRPC, the gRPC side of the peer URLs.
//! - `apply/`: committed entries to MVCC writes, one backend transaction per batch, and
//!   the alarms they raise.
//! - `server/`: one running member: start-up, the data directory, propose and wait,
//!   linearizable reads, headers, the quota, membership changes, leadership transfer.
//! - `rpc/`: the gRPC services (KV, Watch, Lease, Maintenance, Cluster, v3lock,
//!   v3election): decode, call the server, encode.
//! - `http`: `/health`, `/livez`, `/readyz`, `/version`, `/metrics`, and etcd's 404 for
//!   any other path.
//! - `gateway/`: the `/v3/...` JSON gateway, calling the gRPC services in-process.
//! - `run/`: wires it together and serves until SIGTERM or SIGINT, or until Raft stops by
//!   itself; the listeners and automatic compaction.
//! - `testing/` (tests only): members in one process over an in-memory network, on a
//!   clock the test moves, and the multi-member scenarios run on them.

mod apply;
mod cluster;
pub mod config;
mod gateway;
mod http;
pub mod identity;
pub use cairn_migrate::ids;
mod lease;
pub mod logging;
pub mod metrics;
mod peer;
mod process_stats;
mod proposal;
mod rpc;
mod run;
mod server;
pub mod systemd;
#[cfg(test)]
mod testing;
pub mod tls;
mod validate;
mod watch;

pub use run::{run, RunError};
pub use server::{Server, StartError};
