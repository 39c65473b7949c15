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
//! # Design: cairn started on an etcd data directory (the join step)
//!
//! What remains is to join this reader with the backend import (etcd's bbolt backend into
//! a cairn backend) in `cairn`'s start-up. Nothing of it is built yet; this is the plan.
//!
//! 1. **Detect.** In `server/data_dir.rs::prepare`, a directory without `cairn.version`
//!    that has `member/snap/db` and [`is_etcd_data_dir`] is imported instead of refused.
//!    (`--wal-dir`: etcd's WAL may live elsewhere; use [`open_dirs`].) [`open`] first:
//!    it refuses a WAL etcd still holds and every unreadable log before anything is
//!    written.
//! 2. **Where things go.** Everything is written under a temporary directory inside the
//!    data directory (removed at start if a crash left it), then `backend.redb`, `raft/`
//!    and last `cairn.version` are moved into place: no marker, no import. etcd's
//!    `member/` is never changed; it stays beside cairn's files, and the marker makes the
//!    directory cairn's from then on. [`EtcdWal::member_id`] and [`EtcdWal::cluster_id`]
//!    go to the backend's meta records `member_id` and `cluster_id`
//!    (`server/start.rs` then takes the "stored ids" path and ignores
//!    `--initial-cluster`, as etcd does on a restart).
//! 3. **The backend** comes from the import at its consistent index `CI` (`meta` bucket).
//!    Refuse if `CI` is below the snapshot's index (etcd commits the backend before it
//!    saves a snapshot, so that cannot come from etcd).
//! 4. **The Raft log.** Do not apply the tail during the import: seed cairn's log with it
//!    and let Raft apply it, so that entries past the commit index are kept and decided by
//!    the cluster as etcd would have, and a 3-member migration elects by the real terms
//!    and indexes (a member with an older commit cannot win against one holding an
//!    acknowledged write). cairn-raft needs one new call beside `EngineStorage::bootstrap`:
//!    write `truncated = (CI, term of CI)` (the entry at `CI` in [`EtcdWal::entries`], or
//!    the snapshot's term when `CI` is its index), the hard state as read, the ConfState
//!    at `CI` (the snapshot's, with the conf changes in `(snapshot, CI]` folded in), and
//!    the entries past `CI`, each converted below, with the same index and term. The
//!    applier's applied index starts at `CI` (the backend's), so cairn applies exactly
//!    the entries etcd would have applied.
//! 5. **Converting an entry** (a pure function of the entry, so every member of a
//!    migrating cluster gets the same bytes for the same index) into cairn's
//!    `cairnpb.InternalRequest` (`cairn-proto/proto/raft_internal.proto`), keeping the
//!    proposal id at 0 (no waiter) and the header's username and auth revision as
//!    `AuthHeader` (the applier re-checks permissions as etcd's does):
//!    - Put, DeleteRange, Txn, Compaction, LeaseGrant, LeaseRevoke, LeaseCheckpoint,
//!      Alarm, Range, AuthEnable/Disable/Status, the user and role requests: the same
//!      `etcdserverpb` message in the variant of the same name.
//!    - UserAdd / UserChangePassword: cairn's entries carry the bcrypt hash as text. From
//!      3.5, base64-decode `hashedPassword`; from 3.4, hash the password with a salt
//!      derived from (cluster id, index) so that every member gets the same hash.
//!    - Authenticate: `InternalAuthenticateRequest { name, simple_token }` (cairn, like
//!      etcd, makes the token `<simple_token>.<index>`).
//!    - ClusterMemberAttrSet and the v2 `MemberAttributes`: `publish` (`MemberAttributes`).
//!    - ClusterVersionSet, DowngradeInfoSet, the v2 `ClusterVersion`, `Sync` and reads:
//!      an empty entry (cairn keeps no cluster version of etcd's; nothing else changes).
//!    - A v2 request on the v2 store's own keys ([`V2Effect::V2Store`]): refuse the import
//!      ("a v2 store with data"), as committed v2 data would otherwise be lost silently.
//!    - Empty entries stay empty.
//!    - Conf changes stay `EntryConfChange` entries (raft-rs's `ConfChange` has etcd's
//!      field numbers) with cairn's context, a `MemberChange { waiter: 0, member }` built
//!      from [`Member`]: AddNode with `is_promote` is a promotion, AddLearnerNode a
//!      learner, RemoveNode needs no member, UpdateNode carries the new peer URLs.
//! 6. **Membership** at `CI` comes with the backend import (etcd keeps members in its
//!    `members` and `members_removed` buckets); names and client URLs that 3.4 kept only
//!    in its v2 store are in the snapshot's data (v2 store JSON, `/0/members/<id>/attributes`)
//!    and in later v2 `MemberAttributes` entries; each member republishes its own at start
//!    anyway.
//! 7. **Log** what was imported (ids, `CI`, the snapshot, the entries handed to Raft, a
//!    torn tail passed over, `.snap` files passed over), and refuse with the reader's
//!    typed error otherwise.
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
