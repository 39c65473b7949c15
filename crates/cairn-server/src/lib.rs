//! The cairn server: configuration, bootstrap, the apply loop, the gRPC services and the
//! HTTP endpoints of one member.
//!
//! Depends on `cairn-proto`, `cairn-mvcc` and `cairn-raft`; nothing depends on it but the
//! `cairn` binary and tests.
//!
//! # Layout
//!
//! - [`config`]: etcd's flags, `ETCD_*` variables and YAML config file, validated.
//! - [`ids`]: member and cluster IDs as etcd derives them.
//! - `server`: opens the data directory, starts Raft and the applier; propose-and-wait,
//!   the linearizable read barrier, response headers, the backend quota; `read_barrier`:
//!   linearizable reads sharing ReadIndex rounds.
//! - `apply`: committed entries to MVCC writes, one backend transaction per batch.
//! - `lease`: the lessor's writes into apply batches, lease entries, the leader's expiry
//!   and checkpoint loop, keep-alives and time-to-live forwarded to the leader (LeasePeer).
//! - `waiters`, `alarm`, `membership`: requests waiting for their entry; active alarms;
//!   the member set.
//! - `peer`: the peer set Raft sends to, and the gRPC side of the peer URLs;
//!   `peer_stream`: Raft messages between members on raft streams (plain TCP on the peer
//!   URLs); `peer_snapshot`: Raft snapshots streamed between them in chunks over gRPC.
//! - `watch`: the watch hub: watchers, their dispatch index, and the hand-off of applied
//!   events without blocking the applier.
//! - `rpc`: the gRPC services (KV, Watch, Lease, Maintenance, Cluster, v3lock, v3election)
//!   and request validation.
//! - `http`: `/health`, `/version`, `/metrics`.
//! - [`logging`]: etcd-shaped JSON log lines.
//! - `run`: wires it together and serves until SIGTERM or SIGINT, on listeners whose
//!   connections gather their writes (`cairn_client::coalesce`).

mod alarm;
mod apply;
pub mod config;
mod http;
pub mod ids;
mod lease;
pub mod logging;
mod membership;
pub mod metrics;
mod peer;
mod peer_snapshot;
mod peer_stream;
mod read_barrier;
mod rpc;
mod run;
mod server;
mod waiters;
mod watch;

pub use run::{run, RunError};
pub use server::{Server, StartError};
