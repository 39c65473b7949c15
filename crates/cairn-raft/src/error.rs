//! The crate's error type.

/// Errors returned by the Raft driver.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RaftError {
    /// The driver has been stopped (or its thread died); nothing more is accepted.
    #[error("raft: stopped")]
    Stopped,
    /// No leader is known, so a proposal or read cannot be served now.
    #[error("raft: no leader")]
    NoLeader,
    /// The configuration is unusable; the message says which field.
    #[error("raft: invalid config: {0}")]
    InvalidConfig(String),
    /// The durable log failed or holds something this driver cannot use.
    #[error("raft: storage: {0}")]
    Storage(String),
    /// The state machine failed to apply or restore what was committed; the message says
    /// what and why.
    #[error("raft: state machine failed: {0}")]
    StateMachine(String),
    /// The Raft or apply thread panicked (raft-rs asserts on what it considers impossible
    /// input); the driver is gone.
    #[error("raft: the raft thread panicked: {0}")]
    Panicked(String),
    /// raft-rs refused an operation.
    #[error("raft: {0}")]
    Raft(String),
}

impl From<raft_engine::Error> for RaftError {
    fn from(e: raft_engine::Error) -> Self {
        RaftError::Storage(e.to_string())
    }
}

impl From<raft::Error> for RaftError {
    fn from(e: raft::Error) -> Self {
        match e {
            raft::Error::Store(s) => RaftError::Storage(s.to_string()),
            other => RaftError::Raft(other.to_string()),
        }
    }
}
