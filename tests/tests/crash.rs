//! Crash safety: every acknowledged write survives `kill -9` at any moment, and a torn tail
//! left in the Raft log by an interrupted write does not stop the member from starting.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_proto::etcdserverpb::{kv_client::KvClient, PutRequest, RangeRequest};
use cairn_tests::{channel, Kind, ServerProc};

type Acked = Arc<Mutex<BTreeMap<String, String>>>;

/// Writes unique keys from `writers` tasks until told to stop or the bound is reached,
/// recording each acknowledged write.
async fn write_load(url: String, round: usize, writers: usize, acked: Acked, run_for: Duration) {
    let ch = channel(&url);
    let deadline = Instant::now() + run_for;
    let mut tasks = Vec::new();
    for w in 0..writers {
        let mut kv = KvClient::new(ch.clone());
        let acked = acked.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..20_000 {
                if Instant::now() >= deadline {
                    break;
                }
                let key = format!("r{round}/w{w}/{i:06}");
                let value = format!("value-{round}-{w}-{i}");
                let req = PutRequest {
                    key: key.clone().into_bytes(),
                    value: value.clone().into_bytes(),
                    ..Default::default()
                };
                match kv.put(req).await {
                    Ok(_) => {
                        acked.lock().unwrap().insert(key, value);
                    }
                    Err(_) => break,
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

/// Checks that every acknowledged write is readable with its value.
async fn check_all(url: String, acked: &Acked) {
    let ch = channel(&url);
    let mut kv = KvClient::new(ch);
    let all = kv
        .range(RangeRequest {
            key: b"\0".to_vec(),
            range_end: b"\0".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let found: BTreeMap<String, String> = all
        .kvs
        .into_iter()
        .map(|kv| {
            (
                String::from_utf8(kv.key).unwrap(),
                String::from_utf8(kv.value).unwrap(),
            )
        })
        .collect();
    let acked = acked.lock().unwrap();
    let missing: Vec<_> = acked
        .iter()
        .filter(|(k, v)| found.get(*k) != Some(*v))
        .take(5)
        .collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged writes lost, e.g. {missing:?}",
        acked.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9() {
    let mut cairn = ServerProc::start(Kind::Cairn, &[]);
    let acked: Acked = Default::default();
    for round in 0..3 {
        let url = cairn.url();
        let load = tokio::spawn(write_load(
            url,
            round,
            16,
            acked.clone(),
            Duration::from_secs(3),
        ));
        // Kill in the middle of the load, at a different moment each round: when is the
        // fault this test varies.
        tokio::time::sleep(Duration::from_millis(400 + 300 * round as u64)).await;
        cairn.kill9();
        load.await.unwrap();
        let n = acked.lock().unwrap().len();
        assert!(n > 0, "no write was acknowledged in round {round}");
        tokio::task::block_in_place(|| cairn.spawn());
        check_all(cairn.url(), &acked).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torn_log_tail_is_recovered() {
    let mut cairn = ServerProc::start(Kind::Cairn, &[]);
    let acked: Acked = Default::default();
    write_load(cairn.url(), 0, 8, acked.clone(), Duration::from_millis(800)).await;
    cairn.kill9();
    // An interrupted append leaves garbage after the last complete record.
    let raft_dir = cairn.data_dir().join("raft");
    let mut logs: Vec<_> = std::fs::read_dir(&raft_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "raftlog"))
        .collect();
    logs.sort();
    let last = logs.last().expect("a raft log file");
    let mut f = std::fs::OpenOptions::new().append(true).open(last).unwrap();
    use std::io::Write;
    f.write_all(&[0xAB; 1000]).unwrap();
    drop(f);
    tokio::task::block_in_place(|| cairn.spawn());
    check_all(cairn.url(), &acked).await;
    // And it still takes writes.
    write_load(cairn.url(), 1, 2, acked.clone(), Duration::from_millis(200)).await;
    check_all(cairn.url(), &acked).await;
}
