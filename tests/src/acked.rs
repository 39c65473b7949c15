//! Writes a client saw acknowledged, and the check that a member still holds every one of
//! them (after a `kill -9`, a defragment, a restart).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use cairn_proto::etcdserverpb::{kv_client::KvClient, PutRequest, RangeRequest};

use crate::grpc::channel;

/// Acknowledged writes: key to the value the put that was acknowledged wrote.
pub type Acked = Arc<Mutex<BTreeMap<String, String>>>;

/// Reads `[key, range_end)` at `url` in one range and asserts that every acknowledged write
/// is there with its value, naming a few that are not.
pub async fn assert_acked_readable(url: &str, key: &[u8], range_end: &[u8], acked: &Acked) {
    let mut kv = KvClient::new(channel(url)).max_decoding_message_size(usize::MAX);
    let all = kv
        .range(RangeRequest {
            key: key.to_vec(),
            range_end: range_end.to_vec(),
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
        "acknowledged writes lost (of {}), e.g. {missing:?}",
        acked.len()
    );
}

/// A bounded put load on `url`: `writers` tasks put unique keys `{prefix}/{w}/{i:06}` with
/// values `{prefix}-{w}-{i}`, at most 20,000 each, until `done(i)` (asked before each put
/// with the task's count so far) or `deadline`, recording every acknowledged put in
/// `acked`. A task stops at its first failed put; returns those failures as `key: error`.
pub async fn put_load<F>(
    url: &str,
    prefix: &str,
    writers: usize,
    acked: &Acked,
    deadline: Instant,
    done: F,
) -> Vec<String>
where
    F: Fn(usize) -> bool + Send + Sync + 'static,
{
    let ch = channel(url);
    let done = Arc::new(done);
    let mut tasks = Vec::new();
    for w in 0..writers {
        let mut kv = KvClient::new(ch.clone());
        let (acked, done, prefix) = (acked.clone(), done.clone(), prefix.to_string());
        tasks.push(tokio::spawn(async move {
            for i in 0..20_000 {
                if done(i) || Instant::now() >= deadline {
                    break;
                }
                let key = format!("{prefix}/{w}/{i:06}");
                let value = format!("{prefix}-{w}-{i}");
                let req = PutRequest {
                    key: key.clone().into_bytes(),
                    value: value.clone().into_bytes(),
                    ..Default::default()
                };
                match kv.put(req).await {
                    Ok(_) => {
                        acked.lock().unwrap().insert(key, value);
                    }
                    Err(e) => return Some(format!("{key}: {e}")),
                }
            }
            None
        }));
    }
    let mut failures = Vec::new();
    for t in tasks {
        failures.extend(t.await.unwrap());
    }
    failures
}
