//! Defragment without stopping the world: a member under a put load is defragmented with
//! `cairnctl defrag` and the real `etcdctl defrag`; no put fails, every acknowledged put is
//! there after, and the file shrinks as etcd's does. A `kill -9` while the copy is made, and
//! just after the switch-over, loses no acknowledged write.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_proto::etcdserverpb::{
    kv_client::KvClient, CompactionRequest, DeleteRangeRequest, PutRequest, StatusResponse,
};
use cairn_tests::acked::{self, assert_acked_readable, Acked};
use cairn_tests::{cairnctl, channel, etcdctl35, status, wait_until_async, Kind, Run, ServerProc};

/// A client command that defragments the member at an endpoint.
type DefragTool = fn(&str) -> Run;

/// Keys written before the defragmentation, and their values' size: about 12 MiB, half of it
/// then deleted and compacted away.
const FILL_KEYS: usize = 1500;
const FILL_VALUE: usize = 8 * 1024;

/// Writes `FILL_KEYS` keys, deletes every other one, and compacts at the current revision.
async fn fill_and_free_half(url: &str) {
    let ch = channel(url);
    let mut tasks = Vec::new();
    for w in 0..8 {
        let mut kv = KvClient::new(ch.clone());
        tasks.push(tokio::spawn(async move {
            for i in (w..FILL_KEYS).step_by(8) {
                let req = PutRequest {
                    key: format!("fill/{i:05}").into_bytes(),
                    value: vec![b'f'; FILL_VALUE],
                    ..Default::default()
                };
                kv.put(req).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut kv = KvClient::new(ch);
    let mut rev = 0;
    for i in (1..FILL_KEYS).step_by(2) {
        let req = DeleteRangeRequest {
            key: format!("fill/{i:05}").into_bytes(),
            ..Default::default()
        };
        rev = kv
            .delete_range(req)
            .await
            .unwrap()
            .into_inner()
            .header
            .unwrap()
            .revision;
    }
    kv.compact(CompactionRequest {
        revision: rev,
        physical: true,
    })
    .await
    .unwrap();
}

/// Puts unique keys under `load/{tag}/` from 8 tasks until `stop` is set (and at least
/// `min_each` each), for at most a minute; records each acknowledged put, and returns the
/// failures.
async fn put_load(
    url: String,
    tag: &'static str,
    acked: Acked,
    stop: Arc<AtomicBool>,
    min_each: usize,
) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let done = move |i| stop.load(Ordering::Acquire) && i >= min_each;
    acked::put_load(&url, &format!("load/{tag}"), 8, &acked, deadline, done).await
}

/// Runs `defrag` (a client command) on `server` while a put load runs; returns the status
/// before and after.
async fn defrag_under_load(
    server: &ServerProc,
    tag: &'static str,
    acked: &Acked,
    defrag: DefragTool,
) -> (StatusResponse, StatusResponse) {
    let before = status(&server.url()).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn(put_load(server.url(), tag, acked.clone(), stop.clone(), 50));
    let endpoint = server.endpoint();
    let run = tokio::task::spawn_blocking(move || defrag(&endpoint))
        .await
        .unwrap();
    stop.store(true, Ordering::Release);
    let failures = load.await.unwrap();
    assert_eq!(
        run.stdout,
        format!(
            "Finished defragmenting etcd member[{}]\n",
            server.endpoint()
        ),
        "{run:?}"
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        failures.is_empty(),
        "puts failed during {tag}: {failures:?}"
    );
    assert_acked_readable(&server.url(), b"load/", b"load0", acked).await;
    let after = status(&server.url()).await.unwrap();
    (before, after)
}

fn cairnctl_defrag(endpoint: &str) -> Run {
    cairnctl(endpoint, &["defrag"])
}

fn etcdctl_defrag(endpoint: &str) -> Run {
    etcdctl35(endpoint, &["defrag"])
}

/// What a defragmentation did to the file: (size before, size after, in use before).
fn sizes(before: &StatusResponse, after: &StatusResponse) -> (i64, i64, i64) {
    (before.db_size, after.db_size, before.db_size_in_use)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn defrag_under_put_load_fails_no_put_and_shrinks_as_etcd() {
    for kind in [Kind::Etcd35, Kind::Cairn] {
        let server = ServerProc::start(kind, &[]);
        fill_and_free_half(&server.url()).await;
        let acked: Acked = Default::default();
        let mut tools: Vec<(&'static str, DefragTool)> = vec![("etcdctl", etcdctl_defrag)];
        if kind == Kind::Cairn {
            tools.push(("cairnctl", cairnctl_defrag));
        }
        for (i, (tag, tool)) in tools.into_iter().enumerate() {
            let (before, after) = defrag_under_load(&server, tag, &acked, tool).await;
            let (size_before, size_after, in_use_before) = sizes(&before, &after);
            eprintln!("{kind:?} {tag}: dbSize {size_before} -> {size_after}, dbSizeInUse before {in_use_before}, after {}", after.db_size_in_use);
            // Both report what is in use, never more than the file.
            assert!(before.db_size_in_use <= size_before, "{kind:?}: {before:?}");
            assert!(after.db_size_in_use <= size_after, "{kind:?}: {after:?}");
            if i == 0 {
                // Half the data was freed: the file gives it back.
                assert!(
                    size_after * 4 < size_before * 3,
                    "{kind:?} {tag}: {size_before} -> {size_after}"
                );
                // What is in use is what is live: the half kept (and the load's puts), not
                // the half freed. cairn measures it in the background, within a second or so.
                let live = (FILL_KEYS / 2 * FILL_VALUE) as i64;
                let url = server.url();
                wait_until_async(
                    Duration::from_secs(10),
                    format!("{kind:?} {tag}: dbSizeInUse to be what is live ({live})"),
                    || async {
                        let s = status(&url).await.unwrap();
                        let in_use = s.db_size_in_use;
                        if in_use >= live && in_use * 4 < size_before * 3 {
                            Ok(())
                        } else {
                            Err(in_use)
                        }
                    },
                )
                .await;
            } else {
                // Nothing more to give back: a second one keeps the size about the same.
                assert!(
                    size_after * 4 < size_before * 5,
                    "{kind:?} {tag}: {size_before} -> {size_after}"
                );
            }
        }
    }
}

/// Polls (every millisecond, bounded by `timeout`) until `check` holds; false at the bound.
fn poll(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    false
}

fn copy_path(server: &ServerProc) -> PathBuf {
    server.data_dir().join("backend.redb.cairn-defrag")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_defrag_loses_no_acknowledged_put() {
    let mut cairn = ServerProc::start(Kind::Cairn, &[]);
    fill_and_free_half(&cairn.url()).await;
    let acked: Acked = Default::default();
    // Round 0 kills while the copy is made (its file exists); round 1 just after the
    // switch-over (its file renamed over the backend).
    for round in 0..2 {
        let tag = ["copying", "switched"][round];
        let stop = Arc::new(AtomicBool::new(false));
        let load = tokio::spawn(put_load(cairn.url(), tag, acked.clone(), stop.clone(), 0));
        let before = acked.lock().unwrap().len();
        let acking = tokio::task::block_in_place(|| {
            poll(Duration::from_secs(30), || {
                acked.lock().unwrap().len() >= before + 100
            })
        });
        assert!(acking, "round {round}: the load acknowledged nothing");
        // A few attempts, since a defragmentation may end between two polls.
        let mut killed = false;
        for _ in 0..5 {
            let endpoint = cairn.endpoint();
            let defrag = tokio::task::spawn_blocking(move || cairnctl_defrag(&endpoint));
            let copy = copy_path(&cairn);
            let seen = tokio::task::block_in_place(|| {
                poll(Duration::from_secs(30), || {
                    copy.exists() || defrag.is_finished()
                }) && copy.exists()
                    && (round == 0 || poll(Duration::from_secs(30), || !copy.exists()))
            });
            if seen {
                cairn.kill9();
                killed = true;
                let _ = defrag.await;
                break;
            }
            let run = defrag.await.unwrap();
            assert_eq!(run.code, 0, "{run:?}");
        }
        assert!(
            killed,
            "round {round}: never caught a defragmentation at work"
        );
        stop.store(true, Ordering::Release);
        let _ = load.await.unwrap();
        assert!(
            !acked.lock().unwrap().is_empty(),
            "round {round}: no put acknowledged"
        );
        tokio::task::block_in_place(|| cairn.spawn());
        assert_acked_readable(&cairn.url(), b"load/", b"load0", &acked).await;
        assert!(
            !copy_path(&cairn).exists(),
            "round {round}: the copy was left"
        );
    }
    // The member defragments and serves as before.
    let (_, after) = defrag_under_load(&cairn, "after", &acked, cairnctl_defrag).await;
    assert!(after.db_size > 0);
}

/// `--experimental-bootstrap-defrag-threshold-megabytes`: a member started again with less
/// free space in its backend than the threshold leaves the backend as it is and says so;
/// with more, the backend is defragmented before the member serves, as etcd 3.5.1 does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_started_past_the_defrag_threshold_defragments_first_as_etcd() {
    for kind in [Kind::Etcd35, Kind::Cairn] {
        let mut server = ServerProc::start(kind, &[]);
        // About 6 MiB freed.
        fill_and_free_half(&server.url()).await;
        let said =
            |log: &[serde_json::Value], msg: &str| log.iter().find(|l| l["msg"] == msg).cloned();

        let log = restart_with_threshold(&mut server, "1000");
        let skipped = said(&log, "Skipping defragmentation")
            .unwrap_or_else(|| panic!("{kind:?} did not say it skips: {log:?}"));
        assert_eq!(
            skipped["experimental-bootstrap-defrag-threshold-bytes"],
            1000 * 1024 * 1024,
            "{kind:?}"
        );
        let (size, in_use) = (
            skipped["current-db-size-bytes"].as_u64().unwrap(),
            skipped["current-db-size-in-use-bytes"].as_u64().unwrap(),
        );
        assert!(size >= in_use + 4 * 1024 * 1024, "{kind:?}: {skipped}");
        assert!(said(&log, "defragmenting").is_none(), "{kind:?}");
        let kept = status(&server.url()).await.unwrap().db_size;

        let log = restart_with_threshold(&mut server, "1");
        assert!(said(&log, "Skipping defragmentation").is_none(), "{kind:?}");
        let done = said(&log, "finished defragmenting directory")
            .unwrap_or_else(|| panic!("{kind:?} did not defragment at start: {log:?}"));
        let shrunk = status(&server.url()).await.unwrap().db_size;
        assert!(
            shrunk + 4 * 1024 * 1024 <= kept,
            "{kind:?}: {kept} bytes before, {shrunk} after: {done}"
        );
        // Every key left is still there.
        let mut kv = KvClient::new(channel(&server.url()));
        let left = kv
            .range(cairn_proto::etcdserverpb::RangeRequest {
                key: b"fill/".to_vec(),
                range_end: b"fill0".to_vec(),
                count_only: true,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .count;
        assert_eq!(left, (FILL_KEYS / 2) as i64, "{kind:?}");
    }
}

/// Stops `server` and starts it again with `--experimental-bootstrap-defrag-threshold-megabytes`
/// at `threshold`; returns the JSON lines it logged until it served clients.
fn restart_with_threshold(server: &mut ServerProc, threshold: &str) -> Vec<serde_json::Value> {
    let from = server.log_len();
    tokio::task::block_in_place(|| {
        server.stop();
        server.extra = vec![format!(
            "--experimental-bootstrap-defrag-threshold-megabytes={threshold}"
        )];
        server.spawn();
    });
    // Read once the member serves: whatever it logged about the backend came before.
    let log = server.log.lock().unwrap()[from..].to_vec();
    log.iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}
