//! The driver's configuration.

use std::path::PathBuf;
use std::time::Duration;

use crate::RaftError;

/// Configuration of one member's Raft driver.
///
/// Filled by the server from etcd's flags: `tick_interval` is `--heartbeat-interval`, and
/// `election_tick` is `--election-timeout` divided by it.
#[derive(Debug, Clone)]
pub struct RaftConfig {
    /// This member's id (the etcd member id). Must not be 0.
    pub id: u64,
    /// Voters written into a fresh log at bootstrap; ignored when the log already exists.
    pub voters: Vec<u64>,
    /// The raft-engine directory; created if missing.
    pub dir: PathBuf,
    /// Length of one logical clock tick.
    pub tick_interval: Duration,
    /// The clock is the caller's: the driver ticks only when [`crate::RaftHandle::tick`]
    /// says so and ignores `tick_interval` (tests with controlled time).
    pub manual_ticks: bool,
    /// Ticks without a leader before a follower campaigns.
    pub election_tick: usize,
    /// Ticks between leader heartbeats.
    pub heartbeat_tick: usize,
    /// The state machine's durable applied index at start: committed entries after it are
    /// delivered to the applier again.
    pub applied: u64,
    /// Told how long each synced log write took, for etcd's WAL fsync histogram.
    pub sync_observer: Option<SyncObserver>,
    /// Never fsync the log (etcd's `--unsafe-no-fsync`): writes still reach the OS before
    /// they count as stored, so a killed process loses none; a power loss may.
    pub unsafe_no_fsync: bool,
    /// On an existing log, make this member the only voter (etcd's `--force-new-cluster`).
    pub force_new_cluster: bool,
    /// Entries kept in the log behind the state machine's durable applied index, so a
    /// peer that lags a little catches up from the log rather than from a snapshot.
    pub log_retain_entries: u64,
    /// Compaction waits until it can remove at least this many entries, to keep it rare.
    pub log_compact_step: u64,
}

/// A callback given the duration of each synced log write.
#[derive(Clone)]
pub struct SyncObserver(pub std::sync::Arc<dyn Fn(std::time::Duration) + Send + Sync>);

impl std::fmt::Debug for SyncObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SyncObserver")
    }
}

impl Default for RaftConfig {
    fn default() -> Self {
        RaftConfig {
            id: 1,
            voters: vec![1],
            dir: PathBuf::new(),
            tick_interval: Duration::from_millis(100),
            manual_ticks: false,
            election_tick: 10,
            heartbeat_tick: 1,
            applied: 0,
            sync_observer: None,
            unsafe_no_fsync: false,
            force_new_cluster: false,
            log_retain_entries: crate::LOG_RETAIN_ENTRIES,
            log_compact_step: crate::COMPACT_STEP,
        }
    }
}

impl RaftConfig {
    /// Checks the fields that raft-rs does not check itself.
    pub fn validate(&self) -> Result<(), RaftError> {
        let invalid = |m: &str| Err(RaftError::InvalidConfig(m.to_owned()));
        if self.id == 0 {
            return invalid("id must not be 0");
        }
        if self.dir.as_os_str().is_empty() {
            return invalid("dir must be set");
        }
        if self.tick_interval.is_zero() {
            return invalid("tick interval must be positive");
        }
        if self.heartbeat_tick == 0 {
            return invalid("heartbeat tick must be positive");
        }
        if self.election_tick <= self.heartbeat_tick {
            return invalid("election tick must be greater than heartbeat tick");
        }
        if self.voters.contains(&0) {
            return invalid("voter ids must not be 0");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_table() {
        let ok = RaftConfig {
            dir: "/tmp/x".into(),
            ..Default::default()
        };
        assert!(ok.validate().is_ok());
        let cases: Vec<(RaftConfig, &str)> = vec![
            (
                RaftConfig {
                    id: 0,
                    ..ok.clone()
                },
                "id",
            ),
            (
                RaftConfig {
                    dir: PathBuf::new(),
                    ..ok.clone()
                },
                "dir",
            ),
            (
                RaftConfig {
                    tick_interval: Duration::ZERO,
                    ..ok.clone()
                },
                "tick interval",
            ),
            (
                RaftConfig {
                    heartbeat_tick: 0,
                    ..ok.clone()
                },
                "heartbeat",
            ),
            (
                RaftConfig {
                    election_tick: 1,
                    ..ok.clone()
                },
                "election",
            ),
            (
                RaftConfig {
                    voters: vec![0],
                    ..ok.clone()
                },
                "voter",
            ),
        ];
        for (cfg, want) in cases {
            let err = cfg
                .validate()
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.contains(want), "{err} should mention {want}");
        }
    }
}
