//! `snapshot save` while writes go on: the file (etcd's bbolt format) is one consistent
//! point in the history, a prefix of a sequential writer's keys, at one revision.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cairn_proto::etcdserverpb::{kv_client::KvClient, PutRequest, RangeRequest};
use cairn_proto::mvccpb::KeyValue;
use cairn_tests::{channel, run_client, tool, wait_until_async, Kind, ServerProc};
use prost::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_is_a_consistent_point_while_writes_go_on() {
    let cairn = ServerProc::start(Kind::Cairn, &[]);
    let mut kv = KvClient::new(channel(&cairn.url()));
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU32::new(0));
    let writer = {
        let mut kv = kv.clone();
        let (stop, written) = (stop.clone(), written.clone());
        tokio::spawn(async move {
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) && n < 50_000 {
                let req = PutRequest {
                    key: format!("seq/{n:06}").into_bytes(),
                    value: vec![b'v'; 512],
                    ..Default::default()
                };
                kv.put(req).await.unwrap();
                n += 1;
                written.store(n, Ordering::Relaxed);
            }
            n
        })
    };
    // The writes are under way.
    wait_until_async(Duration::from_secs(10), "100 writes", || async {
        match written.load(Ordering::Relaxed) {
            n if n >= 100 => Ok(()),
            n => Err(n),
        }
    })
    .await;
    let file = cairn.dir.path().join("snap.db");
    let endpoint = cairn.endpoint();
    let file_arg = file.to_str().unwrap().to_string();
    let saved = tokio::task::spawn_blocking(move || {
        run_client(
            &tool("etcdctl-3.5"),
            &endpoint,
            &["snapshot", "save", &file_arg],
            None,
        )
    })
    .await
    .unwrap();
    stop.store(true, Ordering::Relaxed);
    let written = writer.await.unwrap();
    assert_eq!(saved.code, 0, "{saved:?}");

    // Strip the SHA-256 trailer and read the bbolt file's `key` bucket: each put is one
    // revision of its own key.
    let bytes = std::fs::read(&file).unwrap();
    let (body, _sum) = bytes.split_at(bytes.len() - 32);
    let copy = cairn.dir.path().join("copy.db");
    std::fs::write(&copy, body).unwrap();
    let reader = cairn_bbolt::Reader::open(&copy).unwrap();
    let bucket = reader.bucket(b"key").unwrap();
    let mut revisions = Vec::new();
    let mut keys = Vec::new();
    for entry in reader.entries(&bucket) {
        let entry = entry.unwrap();
        revisions.push(i64::from_be_bytes(entry.key[..8].try_into().unwrap()));
        keys.push(KeyValue::decode(entry.value.as_slice()).unwrap().key);
    }
    let n = keys.len();
    assert!(
        n > 0 && (n as u32) < written,
        "snapshot holds {n} of {written} keys"
    );
    for (i, key) in keys.iter().enumerate() {
        assert_eq!(
            *key,
            format!("seq/{i:06}").into_bytes(),
            "gap in the snapshot"
        );
        // Revision 1 is the empty store; each put adds one.
        assert_eq!(revisions[i], i as i64 + 2);
    }

    // The live member still has everything.
    let live = kv
        .range(RangeRequest {
            key: b"seq/".to_vec(),
            range_end: b"seq0".to_vec(),
            count_only: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(live.count, i64::from(written));
}
