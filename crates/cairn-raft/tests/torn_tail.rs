//! A crash can leave the last log write half on disk. raft-engine must drop that torn
//! record on open and keep every write synced before it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test helpers panic on setup failure.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

use cairn_raft::testing::eraftpb::{Entry, HardState};
use cairn_raft::EngineStorage;
use raft::{GetEntriesContext, Storage};

fn entries(lo: u64, hi: u64, term: u64) -> Vec<Entry> {
    (lo..=hi)
        .map(|i| Entry {
            index: i,
            term,
            data: format!("e{i}").into_bytes().into(),
            ..Default::default()
        })
        .collect()
}

fn newest_log_file(dir: &Path) -> PathBuf {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "raftlog"))
        .collect();
    files.sort();
    files.pop().expect("a log file")
}

fn chop(file: &Path, bytes: u64) {
    let f = OpenOptions::new().write(true).open(file).unwrap();
    let len = f.metadata().unwrap().len();
    f.set_len(len - bytes).unwrap();
    f.sync_all().unwrap();
}

#[test]
fn torn_tail_keeps_earlier_synced_entries() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut s = EngineStorage::open(dir.path()).unwrap();
        s.bootstrap(&[1], 0).unwrap();
        let hs = HardState {
            term: 1,
            vote: 1,
            commit: 0,
            ..Default::default()
        };
        s.persist(&entries(1, 10, 1), Some(&hs), true).unwrap();
        s.persist(&entries(11, 12, 1), None, true).unwrap();
        assert_eq!(s.last_index(), 12);
    }
    chop(&newest_log_file(dir.path()), 3);

    let s = EngineStorage::open(dir.path()).unwrap();
    assert!(s.is_bootstrapped());
    assert_eq!(s.last_index(), 10);
    assert_eq!(s.hard_state().vote, 1);
    let got = s
        .entries(1, 11, None, GetEntriesContext::empty(false))
        .unwrap();
    assert_eq!(got, entries(1, 10, 1));
    assert_eq!(s.term(10).unwrap(), 1);
    assert!(s.term(11).is_err());
}

#[test]
fn driver_restarts_after_torn_tail() {
    use cairn_raft::{start, Applier, ApplyError, Committed, NoPeers, RaftConfig};
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Rec(Arc<Mutex<Vec<Vec<u8>>>>);
    impl Applier for Rec {
        fn apply(&mut self, es: Vec<Committed>) -> Result<(), ApplyError> {
            let mut v = self.0.lock().unwrap();
            v.extend(es.iter().filter_map(|e| e.data()).map(|d| d.to_vec()));
            Ok(())
        }
    }
    let wait = |rec: &Rec, n: usize| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while rec.0.lock().unwrap().len() < n {
            assert!(std::time::Instant::now() < deadline);
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let cfg = RaftConfig {
        id: 1,
        voters: vec![1],
        dir: dir.path().into(),
        ..Default::default()
    };
    let rec = Rec::default();
    let h = start(cfg.clone(), rec.clone(), NoPeers).unwrap();
    for i in 0..20u8 {
        h.propose(vec![i + 1]).unwrap();
    }
    wait(&rec, 20);
    h.stop();
    chop(&newest_log_file(dir.path()), 2);

    // The last record (at most the stop-time hard state or the final entries) is gone;
    // the node still starts, leads, and re-delivers a prefix of what it applied before.
    let rec2 = Rec::default();
    let h = start(cfg, rec2.clone(), NoPeers).unwrap();
    assert!(h.status().is_leader);
    h.propose(vec![99]).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while rec2.0.lock().unwrap().last() != Some(&vec![99]) {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let again = rec2.0.lock().unwrap().clone();
    let before = rec.0.lock().unwrap().clone();
    assert!(again.len() > 1);
    assert_eq!(&again[..again.len() - 1], &before[..again.len() - 1]);
    h.stop();
}
