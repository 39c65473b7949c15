//! [`Msg`]: what handles and the apply thread ask of the Raft thread.

use raft::eraftpb::{ConfChangeV2, Message};

/// Requests to the Raft thread.
#[derive(Debug)]
pub(crate) enum Msg {
    Propose(Vec<u8>),
    ProposeConfChange(ConfChangeV2),
    Step(Message),
    /// Several peer messages at once (one channel send for a whole batch).
    StepMany(Vec<Message>),
    /// Readers are waiting in `Shared::read_waiters`; sent by the reader that found the
    /// list empty, so one wake-up serves every reader that joins before the next round.
    ReadIndex,
    /// The apply thread finished everything up to this index.
    Applied(u64),
    /// The state machine's changes up to this index are durable.
    DurableApplied(u64),
    /// Hand leadership to this member (only acted on by, or forwarded to, the leader).
    TransferLeader(u64),
    /// One clock tick, when the caller keeps the clock.
    Tick,
    /// The transport could not reach this member.
    ReportUnreachable(u64),
    /// A snapshot sent to this member was delivered (`true`) or lost (`false`).
    ReportSnapshot(u64, bool),
    /// The apply thread built a snapshot of the state machine at `index`.
    SnapshotBuilt {
        index: u64,
        data: Vec<u8>,
    },
    /// The apply thread could not build a snapshot.
    SnapshotFailed,
    /// The state machine failed in a way that stops the driver.
    ApplyFailed(String),
    Stop,
}
