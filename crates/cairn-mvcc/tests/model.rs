//! The store against a simple model: every revision's whole state kept in a `BTreeMap`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;

use cairn_mvcc::{MvccError, NoLeases, Store};
use cairn_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use cairn_proto::etcdserverpb::request_op::Request;
use cairn_proto::etcdserverpb::{Compare, RangeRequest, RequestOp, TxnRequest};
use cairn_proto::mvccpb::KeyValue;
use common::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

type State = BTreeMap<Vec<u8>, KeyValue>;

/// `states[r]` is the state after revision `r`.
struct Model {
    states: Vec<State>,
    compact: i64,
}

impl Model {
    fn new() -> Model {
        Model {
            states: vec![State::new(), State::new()],
            compact: 0,
        }
    }

    fn rev(&self) -> i64 {
        self.states.len() as i64 - 1
    }

    fn put(state: &mut State, rev: i64, key: &[u8], value: &[u8]) {
        let (create, version) = state
            .get(key)
            .map_or((rev, 1), |kv| (kv.create_revision, kv.version + 1));
        state.insert(
            key.to_vec(),
            KeyValue {
                key: key.to_vec(),
                create_revision: create,
                mod_revision: rev,
                version,
                value: value.to_vec(),
                lease: 0,
            },
        );
    }

    fn delete(state: &mut State, start: &[u8], end: &[u8]) -> usize {
        let doomed: Vec<_> = state
            .keys()
            .filter(|k| in_range(k, start, end))
            .cloned()
            .collect();
        for k in &doomed {
            state.remove(k);
        }
        doomed.len()
    }
}

fn in_range(k: &[u8], start: &[u8], end: &[u8]) -> bool {
    match end {
        [] => k == start,
        [0] => k >= start,
        end => k >= start && k < end,
    }
}

fn key(rng: &mut StdRng) -> Vec<u8> {
    format!("k{}", rng.random_range(0..8)).into_bytes()
}

fn range_bounds(rng: &mut StdRng) -> (Vec<u8>, Vec<u8>) {
    let start = key(rng);
    let end = match rng.random_range(0..4) {
        0 => Vec::new(),
        1 => vec![0],
        _ => key(rng),
    };
    (start, end)
}

/// Checks a range at `rev` against the model.
fn check_range(store: &Store, model: &Model, rng: &mut StdRng, rev: i64) {
    let (start, end) = range_bounds(rng);
    let limit = rng.random_range(0..4);
    let req = RangeRequest {
        key: start.clone(),
        range_end: end.clone(),
        revision: rev,
        limit,
        ..Default::default()
    };
    let want: Vec<KeyValue> = model.states[rev as usize]
        .values()
        .filter(|kv| in_range(&kv.key, &start, &end))
        .cloned()
        .collect();
    if rev < model.compact {
        assert!(
            matches!(store.range(&req), Err(MvccError::Compacted)),
            "rev {rev}"
        );
        return;
    }
    let got = store.range(&req).unwrap();
    assert_eq!(got.count, want.len() as i64, "count at {rev} of {req:?}");
    let n = if limit > 0 {
        want.len().min(limit as usize)
    } else {
        want.len()
    };
    assert_eq!(got.kvs, want[..n], "kvs at {rev} of {req:?}");
    assert_eq!(got.more, n < want.len());
    assert_eq!(got.header.unwrap().revision, model.rev());
}

fn check_everything(store: &Store, model: &Model, rng: &mut StdRng) {
    assert_eq!(store.current_revision(), model.rev());
    for rev in model.compact.max(1)..=model.rev() {
        let req = RangeRequest {
            key: vec![0],
            range_end: vec![0],
            revision: rev,
            ..Default::default()
        };
        let got = store.range(&req).unwrap();
        let want: Vec<_> = model.states[rev as usize].values().cloned().collect();
        assert_eq!(got.kvs, want, "everything at {rev}");
        check_range(store, model, rng, rev);
    }
}

fn random_batch(store: &Store, model: &mut Model, rng: &mut StdRng) {
    let mut b = store.begin_apply().unwrap();
    for _ in 0..rng.random_range(1..6) {
        let rev = model.rev() + 1;
        let mut next = model.states.last().unwrap().clone();
        match rng.random_range(0..10) {
            0..=4 => {
                let (k, v) = (key(rng), format!("v{}", rng.random_range(0..1000)));
                let r = b.put(&put_raw(&k, v.as_bytes()), &NoLeases).unwrap();
                assert_eq!(r.header.unwrap().revision, rev);
                Model::put(&mut next, rev, &k, v.as_bytes());
                model.states.push(next);
            }
            5 | 6 => {
                let (start, end) = range_bounds(rng);
                let req = cairn_proto::etcdserverpb::DeleteRangeRequest {
                    key: start.clone(),
                    range_end: end.clone(),
                    prev_kv: false,
                };
                let r = b.delete_range(&req).unwrap();
                let n = Model::delete(&mut next, &start, &end);
                assert_eq!(r.deleted, n as i64);
                if n > 0 {
                    model.states.push(next);
                }
            }
            7 | 8 => {
                let ck = key(rng);
                let version = next.get(&ck).map_or(0, |kv| kv.version);
                let guess = if rng.random_bool(0.5) {
                    version
                } else {
                    version + 1
                };
                let (pk, dk) = (key(rng), key(rng));
                let req = TxnRequest {
                    compare: vec![Compare {
                        result: CompareResult::Equal as i32,
                        target: CompareTarget::Version as i32,
                        key: ck,
                        target_union: Some(TargetUnion::Version(guess)),
                        range_end: Vec::new(),
                    }],
                    success: vec![
                        RequestOp {
                            request: Some(Request::RequestPut(put_raw(&pk, b"txn"))),
                        },
                        RequestOp {
                            request: Some(Request::RequestDeleteRange(
                                cairn_proto::etcdserverpb::DeleteRangeRequest {
                                    key: dk.clone(),
                                    ..Default::default()
                                },
                            )),
                        },
                    ],
                    failure: vec![RequestOp {
                        request: Some(Request::RequestRange(RangeRequest {
                            key: pk.clone(),
                            ..Default::default()
                        })),
                    }],
                };
                let r = b.txn(&req, &NoLeases).unwrap();
                assert_eq!(r.succeeded, guess == version);
                if r.succeeded {
                    Model::put(&mut next, rev, &pk, b"txn");
                    Model::delete(&mut next, &dk, &[]);
                    model.states.push(next);
                }
                assert_eq!(r.header.unwrap().revision, model.rev());
            }
            _ => {
                if model.rev() > model.compact && rng.random_bool(0.5) {
                    let at = rng.random_range(model.compact.max(0) + 1..=model.rev());
                    b.compact(at).unwrap();
                    model.compact = at;
                }
            }
        }
    }
    b.commit(rng.random_bool(0.2)).unwrap();
}

fn put_raw(k: &[u8], v: &[u8]) -> cairn_proto::etcdserverpb::PutRequest {
    cairn_proto::etcdserverpb::PutRequest {
        key: k.to_vec(),
        value: v.to_vec(),
        ..Default::default()
    }
}

#[test]
fn random_histories_match_the_model_across_reopens() {
    for seed in 0..6u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let (dir, mut store) = open();
        let mut model = Model::new();
        for round in 0..60 {
            random_batch(&store, &mut model, &mut rng);
            for _ in 0..4 {
                let rev = rng.random_range(1..=model.rev());
                check_range(&store, &model, &mut rng, rev);
            }
            if round % 20 == 19 {
                let hash = store.hash_kv(0).unwrap();
                let full = store.hash().unwrap();
                check_everything(&store, &model, &mut rng);
                store = reopen(&dir, store);
                check_everything(&store, &model, &mut rng);
                assert_eq!(store.hash_kv(0).unwrap(), hash, "seed {seed} round {round}");
                assert_eq!(store.hash().unwrap(), full);
            }
        }
    }
}
