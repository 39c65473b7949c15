//! Writes a client saw acknowledged, and the check that a member still holds every one of
//! them (after a `kill -9`, a defragment, a restart).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use cairn_proto::etcdserverpb::{kv_client::KvClient, RangeRequest};

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
