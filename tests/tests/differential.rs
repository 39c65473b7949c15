//! Differential test: the same scripted and randomized requests run against a fresh real etcd
//! 3.5 and a fresh cairn; every response (or error code and text) must match, except the
//! cluster id, member id and raft term in headers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use cairn_proto::etcdserverpb::{
    compare::{CompareResult, CompareTarget, TargetUnion},
    kv_client::KvClient,
    maintenance_client::MaintenanceClient,
    range_request::{SortOrder, SortTarget},
    request_op::Request as Op,
    response_op::Response as OpResp,
    CompactionRequest, Compare, DeleteRangeRequest, HashKvRequest, PutRequest, RangeRequest,
    RequestOp, TxnRequest, TxnResponse,
};
use cairn_tests::{channel, strip_header, Kind, ServerProc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tonic::transport::Channel;

/// One request of the scenario.
#[derive(Debug, Clone)]
enum Req {
    Put(PutRequest),
    Range(RangeRequest),
    Delete(DeleteRangeRequest),
    Txn(TxnRequest),
    Compact(CompactionRequest),
    HashKv(i64),
}

fn strip_txn(t: &mut TxnResponse) {
    strip_header(&mut t.header);
    for r in &mut t.responses {
        match &mut r.response {
            Some(OpResp::ResponseRange(x)) => strip_header(&mut x.header),
            Some(OpResp::ResponsePut(x)) => strip_header(&mut x.header),
            Some(OpResp::ResponseDeleteRange(x)) => strip_header(&mut x.header),
            Some(OpResp::ResponseTxn(x)) => strip_txn(x),
            None => {}
        }
    }
}

/// Runs one request and renders the outcome with ids and terms removed.
async fn run(kv: &mut KvClient<Channel>, m: &mut MaintenanceClient<Channel>, req: &Req) -> String {
    fn err(s: tonic::Status) -> String {
        format!("ERR {:?} {}", s.code(), s.message())
    }
    match req.clone() {
        Req::Put(r) => match kv.put(r).await {
            Ok(x) => {
                let mut x = x.into_inner();
                strip_header(&mut x.header);
                format!("{x:?}")
            }
            Err(s) => err(s),
        },
        Req::Range(r) => match kv.range(r).await {
            Ok(x) => {
                let mut x = x.into_inner();
                strip_header(&mut x.header);
                format!("{x:?}")
            }
            Err(s) => err(s),
        },
        Req::Delete(r) => match kv.delete_range(r).await {
            Ok(x) => {
                let mut x = x.into_inner();
                strip_header(&mut x.header);
                format!("{x:?}")
            }
            Err(s) => err(s),
        },
        Req::Txn(r) => match kv.txn(r).await {
            Ok(x) => {
                let mut x = x.into_inner();
                strip_txn(&mut x);
                format!("{x:?}")
            }
            Err(s) => err(s),
        },
        Req::Compact(r) => match kv.compact(r).await {
            Ok(x) => {
                let mut x = x.into_inner();
                strip_header(&mut x.header);
                format!("{x:?}")
            }
            Err(s) => err(s),
        },
        Req::HashKv(rev) => match m.hash_kv(HashKvRequest { revision: rev }).await {
            Ok(x) => {
                let mut x = x.into_inner();
                strip_header(&mut x.header);
                // etcd 3.5.1 does not send hash_revision (a 3.6 field).
                x.hash_revision = 0;
                format!("{x:?}")
            }
            Err(s) => err(s),
        },
    }
}

fn b(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

fn put(k: &str, v: &str) -> Req {
    Req::Put(PutRequest {
        key: b(k),
        value: b(v),
        ..Default::default()
    })
}

fn range(k: &str, end: &str) -> RangeRequest {
    RangeRequest {
        key: b(k),
        range_end: b(end),
        ..Default::default()
    }
}

fn op_put(k: &str, v: &str) -> RequestOp {
    RequestOp {
        request: Some(Op::RequestPut(PutRequest {
            key: b(k),
            value: b(v),
            ..Default::default()
        })),
    }
}

fn op_range(k: &str, end: &str) -> RequestOp {
    RequestOp {
        request: Some(Op::RequestRange(range(k, end))),
    }
}

fn op_del(k: &str, end: &str) -> RequestOp {
    RequestOp {
        request: Some(Op::RequestDeleteRange(DeleteRangeRequest {
            key: b(k),
            range_end: b(end),
            prev_kv: true,
        })),
    }
}

fn cmp(k: &str, target: CompareTarget, result: CompareResult, u: TargetUnion) -> Compare {
    Compare {
        result: result as i32,
        target: target as i32,
        key: b(k),
        range_end: vec![],
        target_union: Some(u),
    }
}

/// Requests that exercise each option and error once.
fn scripted() -> Vec<Req> {
    let mut s = vec![
        put("a", "1"),
        put("b", "2"),
        put("a", "3"),
        Req::Put(PutRequest {
            key: b("a"),
            value: b("4"),
            prev_kv: true,
            ..Default::default()
        }),
        Req::Put(PutRequest {
            key: b("a"),
            ignore_value: true,
            ..Default::default()
        }),
        Req::Put(PutRequest {
            key: b("zz"),
            ignore_value: true,
            ..Default::default()
        }),
        Req::Put(PutRequest {
            key: b("a"),
            value: b("x"),
            ignore_value: true,
            ..Default::default()
        }),
        Req::Put(PutRequest {
            key: b("a"),
            lease: 5,
            ..Default::default()
        }),
        Req::Put(PutRequest {
            key: vec![],
            value: b("x"),
            ..Default::default()
        }),
        put("c/1", "c1"),
        put("c/2", "c2"),
        put("c/3", "c3"),
        Req::Range(range("a", "")),
        Req::Range(range("c/", "c0")),
        Req::Range(RangeRequest {
            limit: 2,
            ..range("c/", "c0")
        }),
        Req::Range(range("\0", "\0")),
        Req::Range(range("b", "\0")),
        Req::Range(RangeRequest {
            revision: 2,
            ..range("a", "")
        }),
        Req::Range(RangeRequest {
            revision: 100,
            ..range("a", "")
        }),
        Req::Range(RangeRequest {
            count_only: true,
            ..range("\0", "\0")
        }),
        Req::Range(RangeRequest {
            keys_only: true,
            ..range("\0", "\0")
        }),
        Req::Range(RangeRequest {
            sort_order: SortOrder::Descend as i32,
            sort_target: SortTarget::Mod as i32,
            limit: 2,
            ..range("\0", "\0")
        }),
        Req::Range(RangeRequest {
            sort_target: SortTarget::Value as i32,
            ..range("\0", "\0")
        }),
        Req::Range(RangeRequest {
            min_mod_revision: 5,
            ..range("\0", "\0")
        }),
        Req::Range(RangeRequest {
            max_create_revision: 3,
            ..range("\0", "\0")
        }),
        Req::Range(RangeRequest {
            sort_order: 9,
            ..range("a", "")
        }),
        Req::Range(range("", "")),
        Req::Delete(DeleteRangeRequest {
            key: b("c/2"),
            range_end: vec![],
            prev_kv: true,
        }),
        Req::Delete(DeleteRangeRequest {
            key: b("nothing"),
            range_end: vec![],
            prev_kv: true,
        }),
        Req::Txn(TxnRequest {
            compare: vec![cmp(
                "a",
                CompareTarget::Value,
                CompareResult::Equal,
                TargetUnion::Value(b("4")),
            )],
            success: vec![
                op_put("t1", "v"),
                op_range("t1", ""),
                op_del("c/", "c0"),
                op_range("\0", "\0"),
            ],
            failure: vec![op_put("t2", "v")],
        }),
        Req::Txn(TxnRequest {
            compare: vec![cmp(
                "missing",
                CompareTarget::Version,
                CompareResult::Equal,
                TargetUnion::Version(0),
            )],
            success: vec![RequestOp {
                request: Some(Op::RequestTxn(TxnRequest {
                    compare: vec![],
                    success: vec![op_put("n1", "x"), op_range("n1", "")],
                    failure: vec![],
                })),
            }],
            failure: vec![],
        }),
        Req::Txn(TxnRequest {
            compare: vec![],
            success: vec![op_put("d", "1"), op_put("d", "2")],
            failure: vec![],
        }),
        Req::Txn(TxnRequest {
            compare: vec![],
            success: vec![op_range("a", "")],
            failure: vec![],
        }),
        Req::Txn(TxnRequest {
            compare: vec![],
            success: vec![
                RequestOp {
                    request: Some(Op::RequestRange(RangeRequest {
                        revision: 999,
                        ..range("a", "")
                    })),
                },
                op_put("e", "1"),
            ],
            failure: vec![],
        }),
        Req::Compact(CompactionRequest {
            revision: 4,
            physical: true,
        }),
        Req::Compact(CompactionRequest {
            revision: 3,
            physical: false,
        }),
        Req::Compact(CompactionRequest {
            revision: 999,
            physical: false,
        }),
        Req::Range(RangeRequest {
            revision: 3,
            ..range("a", "")
        }),
        Req::Range(RangeRequest {
            revision: 4,
            ..range("\0", "\0")
        }),
        Req::HashKv(0),
        Req::HashKv(3),
    ];
    // Between --max-request-bytes and gRPC's limit: etcd's own error; past it: gRPC's.
    s.push(Req::Put(PutRequest {
        key: b("big"),
        value: vec![b'v'; 1_600_000],
        ..Default::default()
    }));
    s.push(Req::Put(PutRequest {
        key: b("big"),
        value: vec![b'v'; 2_500_000],
        ..Default::default()
    }));
    let ops: Vec<RequestOp> = (0..129).map(|i| op_put(&format!("k{i}"), "v")).collect();
    s.push(Req::Txn(TxnRequest {
        compare: vec![],
        success: ops,
        failure: vec![],
    }));
    s
}

const KEYS: &[&str] = &["a", "b", "c/1", "c/2", "c/3", "d", "e", "f/x", "f/y"];

fn key(rng: &mut StdRng) -> String {
    KEYS[rng.random_range(0..KEYS.len())].to_string()
}

/// A range end for `k`: single key, prefix, from-key or an explicit bound.
fn end(rng: &mut StdRng, k: &str) -> String {
    match rng.random_range(0..4) {
        0 => String::new(),
        1 => {
            let mut e = k.as_bytes().to_vec();
            if let Some(l) = e.last_mut() {
                *l += 1;
            }
            String::from_utf8(e).unwrap()
        }
        2 => "\0".into(),
        _ => key(rng),
    }
}

fn random_range(rng: &mut StdRng, rev_hint: i64) -> RangeRequest {
    let k = key(rng);
    let e = end(rng, &k);
    RangeRequest {
        key: b(&k),
        range_end: b(&e),
        limit: if rng.random_bool(0.3) {
            rng.random_range(0..4)
        } else {
            0
        },
        revision: if rng.random_bool(0.2) {
            rng.random_range(0..rev_hint + 3)
        } else {
            0
        },
        sort_order: if rng.random_bool(0.3) {
            rng.random_range(0..3)
        } else {
            0
        },
        sort_target: if rng.random_bool(0.3) {
            rng.random_range(0..5)
        } else {
            0
        },
        serializable: rng.random_bool(0.3),
        keys_only: rng.random_bool(0.2),
        count_only: rng.random_bool(0.1),
        min_mod_revision: if rng.random_bool(0.1) {
            rng.random_range(0..rev_hint + 1)
        } else {
            0
        },
        max_mod_revision: if rng.random_bool(0.1) {
            rng.random_range(0..rev_hint + 1)
        } else {
            0
        },
        min_create_revision: if rng.random_bool(0.1) {
            rng.random_range(0..rev_hint + 1)
        } else {
            0
        },
        max_create_revision: if rng.random_bool(0.1) {
            rng.random_range(0..rev_hint + 1)
        } else {
            0
        },
    }
}

fn random_op(rng: &mut StdRng, rev_hint: i64, depth: u32) -> RequestOp {
    let request = match rng.random_range(0..if depth > 0 { 3 } else { 4 }) {
        0 => Op::RequestPut(PutRequest {
            key: b(&key(rng)),
            value: b(&format!("v{}", rng.random_range(0..100))),
            prev_kv: rng.random_bool(0.5),
            ..Default::default()
        }),
        1 => Op::RequestRange(random_range(rng, rev_hint)),
        2 => {
            let k = key(rng);
            let e = end(rng, &k);
            Op::RequestDeleteRange(DeleteRangeRequest {
                key: b(&k),
                range_end: b(&e),
                prev_kv: rng.random_bool(0.5),
            })
        }
        _ => Op::RequestTxn(random_txn(rng, rev_hint, depth + 1)),
    };
    RequestOp {
        request: Some(request),
    }
}

fn random_txn(rng: &mut StdRng, rev_hint: i64, depth: u32) -> TxnRequest {
    let compares = (0..rng.random_range(0..3))
        .map(|_| {
            let k = key(rng);
            let target = rng.random_range(0..5);
            let union = match target {
                0 => TargetUnion::Version(rng.random_range(0..4)),
                1 => TargetUnion::CreateRevision(rng.random_range(0..rev_hint + 1)),
                2 => TargetUnion::ModRevision(rng.random_range(0..rev_hint + 1)),
                3 => TargetUnion::Value(b(&format!("v{}", rng.random_range(0..100)))),
                _ => TargetUnion::Lease(0),
            };
            Compare {
                result: rng.random_range(0..4),
                target,
                key: b(&k),
                range_end: if rng.random_bool(0.3) {
                    b(&end(rng, &k))
                } else {
                    vec![]
                },
                target_union: Some(union),
            }
        })
        .collect();
    let success = (0..rng.random_range(0..4))
        .map(|_| random_op(rng, rev_hint, depth))
        .collect();
    let failure = (0..rng.random_range(0..3))
        .map(|_| random_op(rng, rev_hint, depth))
        .collect();
    TxnRequest {
        compare: compares,
        success,
        failure,
    }
}

fn random_req(rng: &mut StdRng, rev_hint: i64) -> Req {
    match rng.random_range(0..100) {
        0..=34 => Req::Put(PutRequest {
            key: b(&key(rng)),
            value: b(&format!("v{}", rng.random_range(0..100))),
            prev_kv: rng.random_bool(0.3),
            ignore_value: rng.random_bool(0.05),
            ..Default::default()
        }),
        35..=59 => Req::Range(random_range(rng, rev_hint)),
        60..=71 => {
            let k = key(rng);
            let e = end(rng, &k);
            Req::Delete(DeleteRangeRequest {
                key: b(&k),
                range_end: b(&e),
                prev_kv: rng.random_bool(0.5),
            })
        }
        72..=95 => Req::Txn(random_txn(rng, rev_hint, 0)),
        96..=97 => Req::Compact(CompactionRequest {
            revision: rng.random_range(0..rev_hint + 2),
            physical: rng.random_bool(0.5),
        }),
        _ => Req::HashKv(if rng.random_bool(0.5) {
            0
        } else {
            rng.random_range(0..rev_hint + 2)
        }),
    }
}

async fn clients(url: String) -> (KvClient<Channel>, MaintenanceClient<Channel>) {
    let ch = channel(&url);
    (KvClient::new(ch.clone()), MaintenanceClient::new(ch))
}

async fn current_rev(kv: &mut KvClient<Channel>) -> i64 {
    let r = kv.range(range("a", "")).await.unwrap().into_inner();
    r.header.unwrap().revision
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_responses_as_etcd() {
    let etcd = ServerProc::start(Kind::Etcd35, &[]);
    let cairn = ServerProc::start(Kind::Cairn, &[]);
    let (mut ekv, mut em) = clients(etcd.url()).await;
    let (mut ckv, mut cm) = clients(cairn.url()).await;

    let mut reqs = scripted();
    let mut rng = StdRng::seed_from_u64(0x00ca_1e11);
    // The random part is generated as it runs, so revision hints follow the history.
    for (i, req) in reqs.drain(..).enumerate() {
        let want = run(&mut ekv, &mut em, &req).await;
        let got = run(&mut ckv, &mut cm, &req).await;
        assert_eq!(got, want, "scripted request {i} differs: {req:?}");
    }
    for i in 0..400 {
        let hint = current_rev(&mut ekv).await;
        let req = random_req(&mut rng, hint);
        let want = run(&mut ekv, &mut em, &req).await;
        let got = run(&mut ckv, &mut cm, &req).await;
        assert_eq!(got, want, "random request {i} differs: {req:?}");
    }
    let want = run(&mut ekv, &mut em, &Req::HashKv(0)).await;
    let got = run(&mut ckv, &mut cm, &Req::HashKv(0)).await;
    assert_eq!(got, want, "final HashKV differs");
}
