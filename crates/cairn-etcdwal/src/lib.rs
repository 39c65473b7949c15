//! Reads what an etcd 3.4 or 3.5 member keeps besides its backend: the WAL segments under
//! `member/wal` and the Raft snapshots under `member/snap`, as etcd reads them when it
//! restarts. This is the Raft half of starting cairn on a directory etcd wrote: the member
//! and cluster ids, the last snapshot (index, term, membership), the hard state, and every
//! entry past the snapshot decoded into the request it carries.
//!
//! ```no_run
//! let wal = cairn_etcdwal::open("/var/lib/etcd")?;
//! let consistent_index = 1234; // from the backend's meta bucket
//! for e in wal.committed_after(consistent_index) {
//!     println!("{} {:?}", e.index, e.payload);
//! }
//! # Ok::<(), cairn_etcdwal::Error>(())
//! ```
//!
//! Nothing here writes: where etcd would repair (truncate a torn last record, rename a bad
//! `.snap` file to `.broken`), this reader reads as if it had and reports what it passed
//! over ([`EtcdWal::torn_tail`], [`EtcdWal::passed_over`]). What etcd refuses is refused
//! with a typed [`Error`]: a CRC that fails in the middle of the log, a missing segment, an
//! unknown record type, entries missing after the snapshot.
//!
//! Depends on cairn-proto (the request messages) and cairn-crc32c, nothing else of the
//! workspace; nothing in it knows cairn's own formats.
//!
//! # What etcd 3.4 and 3.5 put in their entries
//!
//! Seen in the WAL of real members (`tests/tests/etcdwal.rs`): the first entries (term 1)
//! are AddNode conf changes, one per initial member, with the member's JSON (name, peer
//! URLs); then an empty entry from the first leader; then, both in 3.4 and in 3.5 (whose cluster
//! version is still below 3.5 at that point), two v2 requests: `PUT
//! /0/members/<id>/attributes` (name and client URLs) and `PUT /0/version`. Client
//! requests follow as `InternalRaftRequest`s with a header (proposal id; username and auth
//! revision when auth is on). `Authenticate` is proposed with the token's random part.
//! A user added by etcd 3.4 carries the password itself; by 3.5 only `hashedPassword`, the
//! bcrypt hash in base64. etcd 3.5.1 publishes with the v2 requests on every start, also
//! when its cluster version is already 3.5 (`ClusterMemberAttrSet` and
//! `ClusterVersionSet` are in 3.5's protocol and decoded, but were not seen written); the
//! leader proposes `LeaseRevoke` for expired leases and, with `--experimental-enable-lease-checkpoint`, checkpoints
//! every 5 minutes; `SYNC` comes only when the v2 store has keys with a TTL.
//!
//! # Where it is used: cairn started on an etcd data directory
//!
//! `cairn-server/src/server/etcd_import.rs` joins this reader with the backend import
//! (`cairn-migrate`) when `cairn` starts on a directory with etcd's `member/` and no
//! cairn marker:
//!
//! - [`open`] (or [`open_dirs`] for `--wal-dir`) first: a WAL etcd still holds, or one it
//!   would refuse, is refused before anything is written; so is a v2 store with data
//!   ([`V2Effect::V2Store`] in the log, keys under `/1` in the snapshot's v2 JSON).
//! - The backend's consistent index `CI` must lie between the snapshot's index and the
//!   last entry. The backend is imported at `CI` with [`EtcdWal::member_id`] and
//!   [`EtcdWal::cluster_id`] and the membership of etcd's `members` bucket.
//! - The entries past `CI` are not applied during the import: cairn's Raft log is seeded
//!   with them (`cairn_raft::seed_log`), at the same indexes and terms, with the hard state
//!   as read and the ConfState of the members at `CI`, and Raft commits and applies them as
//!   etcd would have. A 3-member cluster migrating in place thus elects by etcd's terms
//!   and logs, and keeps entries etcd had not committed for the cluster to decide.
//! - Each entry is converted by a pure function of the entry and the cluster id
//!   (`server/etcd_entry.rs`, whose doc has the table), so every member writes the same
//!   bytes at the same index; etcd 3.4's passwords are hashed with a salt derived from the
//!   cluster id and the index for that reason.
//! - Everything is written under a temporary directory in the data directory and moved
//!   into place, the marker last; etcd's `member/` is never written to.
//!
//! # Layout
//!
//! - `record`: the framed records of a run of segments, the CRC chain, torn tails.
//! - `wal`: the segments to read from a snapshot on, and `ReadAll`'s rules for them.
//! - `snap`: `.snap` files, and the newest one etcd would start from.
//! - `entry`: a Raft entry's data decoded ([`Payload`], [`Op`], [`V2Request`], [`ConfChange`]).
//! - `error`: [`Error`].
//! - `pb`: the WAL's protobuf messages (`proto/etcd_wal.proto`), with etcd's field numbers.
//! - `examples/etcdwal_dump.rs`: prints what [`open`] finds in a directory.

mod entry;
mod error;
mod record;
mod snap;
mod wal;

#[allow(clippy::all)]
mod pb {
    //! The messages of etcd's WAL and snap files.
    include!(concat!(env!("OUT_DIR"), "/etcdwalpb.rs"));
}

use std::path::{Path, PathBuf};

pub use entry::{
    ConfChange, ConfChangeKind, Entry, Member, Op, Payload, Request, V2Effect, V2Request,
};
pub use error::Error;
pub use snap::{ConfState, SnapProblem, Snapshot};

/// Raft's persistent state as etcd last saved it (raftpb.HardState).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HardState {
    pub term: u64,
    pub vote: u64,
    pub commit: u64,
}

/// What an etcd member's WAL and snapshots hold, read as etcd reads them on a restart.
#[derive(Debug, Clone)]
pub struct EtcdWal {
    /// The member's id (the WAL metadata's `NodeID`).
    pub member_id: u64,
    pub cluster_id: u64,
    /// The snapshot etcd would start from; `None` when it would start from the first entry.
    pub snapshot: Option<Snapshot>,
    pub hard_state: HardState,
    /// Every entry past the snapshot, in index order, without the ones a later entry at the
    /// same index replaced. Entries past `hard_state.commit` may not be committed.
    pub entries: Vec<Entry>,
    /// The segment and offset where a torn last record starts, if the last segment ends in
    /// one: etcd truncates it away at start; this reader stops before it.
    pub torn_tail: Option<(PathBuf, u64)>,
    /// `.snap` files that did not read back, which etcd would set aside, and why.
    pub passed_over: Vec<(PathBuf, SnapProblem)>,
    /// Files in the WAL directory that are not segments, which etcd ignores.
    pub ignored: Vec<String>,
}

impl EtcdWal {
    /// The committed entries past `index` (the backend's consistent index): those etcd
    /// would apply to the backend when it restarts.
    pub fn committed_after(&self, index: u64) -> impl Iterator<Item = &Entry> {
        let commit = self.hard_state.commit;
        self.entries
            .iter()
            .filter(move |e| e.index > index && e.index <= commit)
    }
}

/// Whether `data_dir` looks like etcd's: `member/wal` holds at least one segment.
pub fn is_etcd_data_dir(data_dir: impl AsRef<Path>) -> bool {
    let wal_dir = data_dir.as_ref().join("member").join("wal");
    wal::list_segments(&wal_dir).is_ok_and(|(segments, _)| !segments.is_empty())
}

/// Reads the WAL and snapshots of the etcd data directory `data_dir` (the one given to
/// etcd's `--data-dir`, which holds `member/`). A WAL that etcd still has open is refused.
pub fn open(data_dir: impl AsRef<Path>) -> Result<EtcdWal, Error> {
    let dir = data_dir.as_ref();
    let member = dir.join("member");
    let wal_dir = member.join("wal");
    if !wal_dir.is_dir() {
        return Err(Error::NotEtcdDir {
            dir: dir.to_path_buf(),
            what: "member/wal",
        });
    }
    open_dirs(&wal_dir, &member.join("snap"))
}

/// [`open`] with the WAL and snap directories given apart (etcd's `--wal-dir`).
pub fn open_dirs(wal_dir: &Path, snap_dir: &Path) -> Result<EtcdWal, Error> {
    let wal_snaps = wal::valid_snapshots(wal_dir)?;
    let (snapshot, passed_over) = snap::newest_available(snap_dir, &wal_snaps)?;
    let (index, term) = snapshot.as_ref().map_or((0, 0), |s| (s.index, s.term));
    let contents = wal::read_from(wal_dir, index, term)?;
    let (_, ignored) = wal::list_segments(wal_dir)?;
    let entries = contents
        .entries
        .into_iter()
        .map(entry::decode)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(EtcdWal {
        member_id: contents.metadata.node_id,
        cluster_id: contents.metadata.cluster_id,
        snapshot,
        hard_state: HardState {
            term: contents.state.term,
            vote: contents.state.vote,
            commit: contents.state.commit,
        },
        entries,
        torn_tail: contents.torn,
        passed_over,
        ignored,
    })
}
