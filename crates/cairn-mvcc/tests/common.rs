//! Helpers shared by the integration tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(dead_code)]

use cairn_mvcc::{ApplyBatch, LeaseLookup, Store};
use cairn_proto::etcdserverpb::{
    DeleteRangeRequest, PutRequest, RangeRequest, RangeResponse, ResponseHeader,
};
use cairn_proto::mvccpb::{Event, KeyValue};

pub struct Leases(pub Vec<i64>);

impl LeaseLookup for Leases {
    fn exists(&self, id: i64) -> bool {
        self.0.contains(&id)
    }
}

pub fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db")).unwrap();
    (dir, store)
}

pub fn reopen(dir: &tempfile::TempDir, store: Store) -> Store {
    drop(store);
    Store::open(&dir.path().join("db")).unwrap()
}

/// Runs `f` in one batch and commits it.
pub fn apply<T>(store: &Store, f: impl FnOnce(&mut ApplyBatch<'_>) -> T) -> (T, Vec<Event>) {
    let mut b = store.begin_apply().unwrap();
    let out = f(&mut b);
    let events = b.commit(false).unwrap();
    (out, events)
}

pub fn put(k: &str, v: &str) -> PutRequest {
    PutRequest {
        key: k.into(),
        value: v.into(),
        ..Default::default()
    }
}

pub fn del(k: &str, end: &str) -> DeleteRangeRequest {
    DeleteRangeRequest {
        key: k.into(),
        range_end: end.into(),
        ..Default::default()
    }
}

pub fn get(k: &str, end: &str) -> RangeRequest {
    RangeRequest {
        key: k.into(),
        range_end: end.into(),
        ..Default::default()
    }
}

pub fn put_now(store: &Store, k: &str, v: &str) -> i64 {
    let (r, _) = apply(store, |b| b.put(&put(k, v), &Leases(vec![])).unwrap());
    r.header.unwrap().revision
}

pub fn kv(k: &str, v: &str, create: i64, modr: i64, version: i64) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: v.into(),
        create_revision: create,
        mod_revision: modr,
        version,
        lease: 0,
    }
}

pub fn header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader {
        revision,
        ..Default::default()
    })
}

pub fn keys(resp: &RangeResponse) -> Vec<String> {
    resp.kvs
        .iter()
        .map(|kv| String::from_utf8(kv.key.clone()).unwrap())
        .collect()
}
