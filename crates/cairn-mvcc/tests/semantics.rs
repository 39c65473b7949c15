//! Table-driven checks of each etcd semantic the store implements.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use cairn_mvcc::{MvccError, NoLeases};
use cairn_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use cairn_proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use cairn_proto::etcdserverpb::request_op::Request;
use cairn_proto::etcdserverpb::response_op::Response;
use cairn_proto::etcdserverpb::{
    Compare, PutRequest, RangeRequest, RequestOp, ResponseHeader, TxnRequest,
};
use cairn_proto::mvccpb::event::EventType;
use cairn_proto::mvccpb::KeyValue;
use common::*;

#[test]
fn fresh_store_is_at_revision_one() {
    let (_d, s) = open();
    assert_eq!(s.current_revision(), 1);
    assert_eq!(s.compact_revision(), 0);
    assert_eq!(s.applied_index(), 0);
    let r = s.range(&get("a", "")).unwrap();
    assert_eq!((r.header, r.count, r.kvs.len()), (header(1), 0, 0));
}

#[test]
fn puts_count_versions_within_generations() {
    let (_d, s) = open();
    let (resps, events) = apply(&s, |b| {
        let p1 = b.put(&put("a", "1"), &NoLeases).unwrap();
        let p2 = b
            .put(
                &PutRequest {
                    prev_kv: true,
                    ..put("a", "2")
                },
                &NoLeases,
            )
            .unwrap();
        let d = b.delete_range(&del("a", "")).unwrap();
        let p3 = b
            .put(
                &PutRequest {
                    prev_kv: true,
                    ..put("a", "3")
                },
                &NoLeases,
            )
            .unwrap();
        (p1, p2, d, p3)
    });
    let (p1, p2, d, p3) = resps;
    assert_eq!((p1.header, p1.prev_kv), (header(2), None));
    assert_eq!(
        (p2.header, p2.prev_kv),
        (header(3), Some(kv("a", "1", 2, 2, 1)))
    );
    assert_eq!((d.header, d.deleted), (header(4), 1));
    assert_eq!((p3.header, p3.prev_kv), (header(5), None));
    assert_eq!(s.current_revision(), 5);
    let r = s.range(&get("a", "")).unwrap();
    assert_eq!(r.kvs, vec![kv("a", "3", 5, 5, 1)]);
    let old = s
        .range(&RangeRequest {
            revision: 3,
            ..get("a", "")
        })
        .unwrap();
    assert_eq!(
        (old.header, old.kvs.clone()),
        (header(5), vec![kv("a", "2", 2, 3, 2)])
    );
    let gone = s
        .range(&RangeRequest {
            revision: 4,
            ..get("a", "")
        })
        .unwrap();
    assert_eq!(gone.count, 0);

    let types: Vec<i32> = events.iter().map(|e| e.r#type).collect();
    let put_t = EventType::Put as i32;
    let del_t = EventType::Delete as i32;
    assert_eq!(types, vec![put_t, put_t, del_t, put_t]);
    assert_eq!(events[1].prev_kv, Some(kv("a", "1", 2, 2, 1)));
    let tomb = KeyValue {
        key: b"a".to_vec(),
        mod_revision: 4,
        ..Default::default()
    };
    assert_eq!(events[2].kv, Some(tomb));
    assert_eq!(events[2].prev_kv, Some(kv("a", "2", 2, 3, 2)));
    assert_eq!(events[3].prev_kv, None);
}

#[test]
fn put_flags_and_leases() {
    let (_d, s) = open();
    let leases = Leases(vec![7]);
    apply(&s, |b| {
        let ignore = PutRequest {
            ignore_value: true,
            ..put("a", "")
        };
        assert!(matches!(
            b.put(&ignore, &leases),
            Err(MvccError::KeyNotFound)
        ));
        let ignore_lease = PutRequest {
            ignore_lease: true,
            ..put("a", "x")
        };
        assert!(matches!(
            b.put(&ignore_lease, &leases),
            Err(MvccError::KeyNotFound)
        ));
        let bad = PutRequest {
            lease: 8,
            ..put("a", "x")
        };
        assert!(matches!(
            b.put(&bad, &leases),
            Err(MvccError::LeaseNotFound)
        ));
        let ok = b
            .put(
                &PutRequest {
                    lease: 7,
                    ..put("a", "v")
                },
                &leases,
            )
            .unwrap();
        assert_eq!(ok.header, header(2));
        let r = b
            .put(
                &PutRequest {
                    ignore_lease: true,
                    ..put("a", "w")
                },
                &leases,
            )
            .unwrap();
        assert_eq!(r.header, header(3));
        // ignore_value alone takes the request's lease (none), as etcd does.
        b.put(
            &PutRequest {
                ignore_value: true,
                ..put("a", "")
            },
            &leases,
        )
        .unwrap();
    });
    let r = s.range(&get("a", "")).unwrap();
    assert_eq!(r.kvs[0], kv("a", "w", 2, 4, 3));
    let at3 = s
        .range(&RangeRequest {
            revision: 3,
            ..get("a", "")
        })
        .unwrap();
    assert_eq!(
        at3.kvs[0],
        KeyValue {
            lease: 7,
            ..kv("a", "w", 2, 3, 2)
        }
    );
    assert!(MvccError::LeaseNotFound.etcd().is_some());
}

fn fill(s: &cairn_mvcc::Store) {
    // a..e at revisions 2..6, then b and d rewritten at 7 and 8.
    for (k, v) in [("a", "5"), ("b", "4"), ("c", "3"), ("d", "2"), ("e", "1")] {
        put_now(s, k, v);
    }
    put_now(s, "b", "9");
    put_now(s, "d", "0");
}

#[test]
fn range_table() {
    let (_d, s) = open();
    fill(&s);
    struct Case {
        name: &'static str,
        req: RangeRequest,
        keys: &'static [&'static str],
        count: i64,
        more: bool,
    }
    let all = get("a", "\0");
    let cases = [
        Case {
            name: "one",
            req: get("b", ""),
            keys: &["b"],
            count: 1,
            more: false,
        },
        Case {
            name: "missing",
            req: get("bb", ""),
            keys: &[],
            count: 0,
            more: false,
        },
        Case {
            name: "range",
            req: get("b", "d"),
            keys: &["b", "c"],
            count: 2,
            more: false,
        },
        Case {
            name: "from",
            req: get("c", "\0"),
            keys: &["c", "d", "e"],
            count: 3,
            more: false,
        },
        Case {
            name: "end before key",
            req: get("d", "b"),
            keys: &[],
            count: 0,
            more: false,
        },
        Case {
            name: "end equals key",
            req: get("d", "d"),
            keys: &[],
            count: 0,
            more: false,
        },
        Case {
            name: "limit",
            req: RangeRequest {
                limit: 2,
                ..all.clone()
            },
            keys: &["a", "b"],
            count: 5,
            more: true,
        },
        Case {
            name: "limit exact",
            req: RangeRequest {
                limit: 5,
                ..all.clone()
            },
            keys: &["a", "b", "c", "d", "e"],
            count: 5,
            more: false,
        },
        Case {
            name: "count only",
            req: RangeRequest {
                count_only: true,
                ..all.clone()
            },
            keys: &[],
            count: 5,
            more: false,
        },
        Case {
            name: "sort value",
            req: RangeRequest {
                sort_target: SortTarget::Value as i32,
                ..all.clone()
            },
            keys: &["d", "e", "c", "a", "b"],
            count: 5,
            more: false,
        },
        Case {
            name: "sort key desc limit",
            req: RangeRequest {
                sort_order: SortOrder::Descend as i32,
                limit: 2,
                ..all.clone()
            },
            keys: &["e", "d"],
            count: 5,
            more: true,
        },
        Case {
            name: "sort mod desc",
            req: RangeRequest {
                sort_order: SortOrder::Descend as i32,
                sort_target: SortTarget::Mod as i32,
                ..all.clone()
            },
            keys: &["d", "b", "e", "c", "a"],
            count: 5,
            more: false,
        },
        Case {
            name: "sort create asc",
            req: RangeRequest {
                sort_order: SortOrder::Ascend as i32,
                sort_target: SortTarget::Create as i32,
                ..all.clone()
            },
            keys: &["a", "b", "c", "d", "e"],
            count: 5,
            more: false,
        },
        Case {
            name: "sort version desc keeps key order in ties",
            req: RangeRequest {
                sort_order: SortOrder::Descend as i32,
                sort_target: SortTarget::Version as i32,
                ..all.clone()
            },
            keys: &["b", "d", "a", "c", "e"],
            count: 5,
            more: false,
        },
        Case {
            name: "min mod filters after count",
            req: RangeRequest {
                min_mod_revision: 6,
                ..all.clone()
            },
            keys: &["b", "d", "e"],
            count: 5,
            more: false,
        },
        Case {
            name: "max create with limit",
            req: RangeRequest {
                max_create_revision: 4,
                limit: 2,
                ..all.clone()
            },
            keys: &["a", "b"],
            count: 5,
            more: true,
        },
        Case {
            name: "max mod and min create",
            req: RangeRequest {
                max_mod_revision: 6,
                min_create_revision: 3,
                ..all.clone()
            },
            keys: &["c", "e"],
            count: 5,
            more: false,
        },
        Case {
            name: "old revision",
            req: RangeRequest {
                revision: 3,
                ..all.clone()
            },
            keys: &["a", "b"],
            count: 2,
            more: false,
        },
        Case {
            name: "revision one",
            req: RangeRequest {
                revision: 1,
                ..all.clone()
            },
            keys: &[],
            count: 0,
            more: false,
        },
    ];
    for c in cases {
        let r = s.range(&c.req).unwrap();
        assert_eq!(keys(&r), c.keys, "{}", c.name);
        assert_eq!((r.count, r.more), (c.count, c.more), "{}", c.name);
        assert_eq!(r.header, header(8), "{}", c.name);
    }
    let r = s
        .range(&RangeRequest {
            keys_only: true,
            ..get("b", "")
        })
        .unwrap();
    assert_eq!(r.kvs, vec![kv("b", "", 3, 7, 2)]);
    let future = RangeRequest {
        revision: 9,
        ..get("a", "")
    };
    assert!(matches!(s.range(&future), Err(MvccError::FutureRev)));
}

#[test]
fn delete_range_uses_sub_revisions_and_skips_no_ops() {
    let (_d, s) = open();
    fill(&s);
    let (r, events) = apply(&s, |b| {
        let none = b.delete_range(&del("x", "z")).unwrap();
        let some = b.delete_range(&cairn_proto::etcdserverpb::DeleteRangeRequest {
            prev_kv: true,
            ..del("b", "d")
        });
        (none, some.unwrap())
    });
    let (none, some) = r;
    assert_eq!((none.header, none.deleted), (header(8), 0));
    assert_eq!((some.header, some.deleted), (header(9), 2));
    assert_eq!(
        some.prev_kvs,
        vec![kv("b", "9", 3, 7, 2), kv("c", "3", 4, 4, 1)]
    );
    assert_eq!(events.len(), 2);
    assert_eq!(s.current_revision(), 9);
    assert_eq!(keys(&s.range(&get("a", "\0")).unwrap()), ["a", "d", "e"]);
}

fn op_put(k: &str, v: &str) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestPut(put(k, v))),
    }
}

fn op_get(k: &str) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestRange(get(k, ""))),
    }
}

fn op_del(k: &str) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestDeleteRange(del(k, ""))),
    }
}

fn cmp_version(k: &str, end: &str, result: CompareResult, v: i64) -> Compare {
    Compare {
        result: result as i32,
        target: CompareTarget::Version as i32,
        key: k.into(),
        range_end: end.into(),
        target_union: Some(TargetUnion::Version(v)),
    }
}

fn cmp_value(k: &str, result: CompareResult, v: &str) -> Compare {
    Compare {
        result: result as i32,
        target: CompareTarget::Value as i32,
        key: k.into(),
        range_end: Vec::new(),
        target_union: Some(TargetUnion::Value(v.into())),
    }
}

#[test]
fn txn_compares() {
    let (_d, s) = open();
    fill(&s);
    let cases = [
        (vec![cmp_version("a", "", CompareResult::Equal, 1)], true),
        (vec![cmp_version("b", "", CompareResult::Greater, 1)], true),
        (
            vec![cmp_version("a", "\0", CompareResult::Greater, 0)],
            true,
        ),
        (vec![cmp_version("a", "\0", CompareResult::Equal, 1)], false),
        (vec![cmp_version("zz", "", CompareResult::Equal, 0)], true),
        (vec![cmp_version("zz", "\0", CompareResult::Less, 1)], true),
        (vec![cmp_value("zz", CompareResult::NotEqual, "x")], false),
        (vec![cmp_value("zz", CompareResult::Equal, "")], false),
        (vec![cmp_value("a", CompareResult::Equal, "5")], true),
        (vec![cmp_value("a", CompareResult::Less, "6")], true),
        (
            vec![
                cmp_value("a", CompareResult::Equal, "5"),
                cmp_value("b", CompareResult::Equal, "5"),
            ],
            false,
        ),
    ];
    for (compare, want) in cases {
        let req = TxnRequest {
            compare: compare.clone(),
            success: vec![],
            failure: vec![],
        };
        let (r, _) = apply(&s, |b| b.txn(&req, &NoLeases).unwrap());
        assert_eq!(r.succeeded, want, "{compare:?}");
        assert_eq!(r.header, header(8));
        assert_eq!(s.txn_read_only(&req).unwrap().succeeded, want);
    }
    assert_eq!(s.current_revision(), 8);
}

#[test]
fn txn_writes_share_a_revision_and_headers_follow_etcd() {
    let (_d, s) = open();
    fill(&s);
    let nested = TxnRequest {
        compare: vec![cmp_value("a", CompareResult::Equal, "5")],
        success: vec![op_get("a"), op_put("n", "1")],
        failure: vec![],
    };
    let req = TxnRequest {
        compare: vec![cmp_version("a", "", CompareResult::Equal, 1)],
        success: vec![
            op_get("a"),
            op_del("zz"),
            op_put("a", "new"),
            op_get("a"),
            op_del("c"),
            RequestOp {
                request: Some(Request::RequestTxn(nested)),
            },
        ],
        failure: vec![],
    };
    let (r, events) = apply(&s, |b| b.txn(&req, &NoLeases).unwrap());
    assert!(r.succeeded);
    assert_eq!(r.header, header(9));
    let rs: Vec<_> = r
        .responses
        .iter()
        .map(|o| o.response.clone().unwrap())
        .collect();
    let Response::ResponseRange(r0) = &rs[0] else {
        panic!()
    };
    assert_eq!(
        (r0.header, r0.kvs.clone()),
        (header(8), vec![kv("a", "5", 2, 2, 1)])
    );
    let Response::ResponseDeleteRange(d1) = &rs[1] else {
        panic!()
    };
    assert_eq!((d1.header, d1.deleted), (header(8), 0));
    let Response::ResponsePut(p2) = &rs[2] else {
        panic!()
    };
    assert_eq!(p2.header, header(9));
    let Response::ResponseRange(r3) = &rs[3] else {
        panic!()
    };
    assert_eq!(
        (r3.header, r3.kvs.clone()),
        (header(9), vec![kv("a", "new", 2, 9, 2)])
    );
    let Response::ResponseDeleteRange(d4) = &rs[4] else {
        panic!()
    };
    assert_eq!((d4.header, d4.deleted), (header(9), 1));
    let Response::ResponseTxn(t5) = &rs[5] else {
        panic!()
    };
    // The nested compare saw the state before the outer transaction.
    assert!(t5.succeeded);
    assert_eq!(t5.header, Some(ResponseHeader::default()));
    let Some(Response::ResponsePut(np)) = &t5.responses[1].response else {
        panic!()
    };
    assert_eq!(np.header, header(9));
    let Some(Response::ResponseRange(nr)) = &t5.responses[0].response else {
        panic!()
    };
    assert_eq!(nr.kvs[0].value, b"new");

    let revs: Vec<_> = events
        .iter()
        .map(|e| e.kv.as_ref().unwrap().mod_revision)
        .collect();
    assert_eq!(revs, vec![9, 9, 9]);
    assert_eq!(s.current_revision(), 9);
    assert_eq!(
        s.range(&get("n", "")).unwrap().kvs,
        vec![kv("n", "1", 9, 9, 1)]
    );
}

#[test]
fn failing_txn_checks_change_nothing() {
    let (_d, s) = open();
    fill(&s);
    let hash = s.hash_kv(0).unwrap();
    let ignore = RequestOp {
        request: Some(Request::RequestPut(PutRequest {
            ignore_value: true,
            ..put("zz", "")
        })),
    };
    let leased = RequestOp {
        request: Some(Request::RequestPut(PutRequest {
            lease: 5,
            ..put("a", "x")
        })),
    };
    let future = RequestOp {
        request: Some(Request::RequestRange(RangeRequest {
            revision: 99,
            ..get("a", "")
        })),
    };
    let cases = [
        (
            vec![op_put("q", "1"), ignore.clone()],
            MvccError::KeyNotFound,
        ),
        (
            vec![op_put("q", "1"), leased.clone()],
            MvccError::LeaseNotFound,
        ),
        (vec![op_put("q", "1"), future.clone()], MvccError::FutureRev),
        (vec![future, leased], MvccError::LeaseNotFound),
    ];
    for (success, want) in cases {
        let req = TxnRequest {
            compare: vec![],
            success,
            failure: vec![],
        };
        let mut b = s.begin_apply().unwrap();
        let err = b.txn(&req, &NoLeases).unwrap_err();
        assert_eq!(err.etcd(), want.etcd());
        assert!(b.commit(false).unwrap().is_empty());
    }
    // Only the chosen branch is checked.
    let req = TxnRequest {
        compare: vec![cmp_version("a", "", CompareResult::Equal, 7)],
        success: vec![ignore],
        failure: vec![op_put("q", "1")],
    };
    let (r, _) = apply(&s, |b| b.txn(&req, &NoLeases).unwrap());
    assert!(!r.succeeded);
    assert_eq!(r.header, header(9));
    assert_ne!(s.hash_kv(0).unwrap(), hash);
}

#[test]
fn uncommitted_writes_are_invisible_and_dropped_batches_leave_nothing() {
    let (_d, s) = open();
    fill(&s);
    let before = s.range(&get("a", "\0")).unwrap();
    {
        let mut b = s.begin_apply().unwrap();
        b.put(&put("a", "x"), &NoLeases).unwrap();
        b.put(&put("new", "x"), &NoLeases).unwrap();
        b.delete_range(&del("b", "")).unwrap();
        assert_eq!(b.range(&get("a", "\0")).unwrap().count, 5);
        assert_eq!(b.range(&get("a", "")).unwrap().kvs[0].value, b"x");
        assert_eq!(s.range(&get("a", "\0")).unwrap(), before);
        assert_eq!(s.current_revision(), 8);
    }
    assert_eq!(s.range(&get("a", "\0")).unwrap(), before);
    let (r, _) = apply(&s, |b| b.put(&put("a", "y"), &NoLeases).unwrap());
    assert_eq!(r.header, header(9));
    assert_eq!(
        s.range(&get("a", "")).unwrap().kvs,
        vec![kv("a", "y", 2, 9, 2)]
    );
}

#[test]
fn compaction() {
    let (d, s) = open();
    fill(&s); // b: 3, 7; d: 5, 8
    apply(&s, |b| b.delete_range(&del("e", "")).unwrap()); // rev 9
    let at7 = s
        .range(&RangeRequest {
            revision: 7,
            ..get("a", "\0")
        })
        .unwrap();
    apply(&s, |b| {
        assert!(matches!(b.compact(10), Err(MvccError::FutureRev)));
        b.compact(7).unwrap();
        assert!(matches!(b.compact(7), Err(MvccError::Compacted)));
        assert!(matches!(b.compact(3), Err(MvccError::Compacted)));
        let old = RangeRequest {
            revision: 6,
            ..get("a", "")
        };
        assert!(matches!(b.range(&old), Err(MvccError::Compacted)));
    });
    assert_eq!(s.compact_revision(), 7);
    assert_eq!(s.current_revision(), 9);
    let old = RangeRequest {
        revision: 6,
        ..get("a", "\0")
    };
    assert!(matches!(s.range(&old), Err(MvccError::Compacted)));
    assert_eq!(
        s.range(&RangeRequest {
            revision: 7,
            ..get("a", "\0")
        })
        .unwrap(),
        at7
    );
    let s = reopen(&d, s);
    assert_eq!(s.compact_revision(), 7);
    assert_eq!(
        s.range(&RangeRequest {
            revision: 7,
            ..get("a", "\0")
        })
        .unwrap(),
        at7
    );
    assert!(matches!(s.range(&old), Err(MvccError::Compacted)));
    // Compacting past the tombstone drops the deleted key's history entirely.
    apply(&s, |b| b.compact(9).unwrap());
    let s = reopen(&d, s);
    assert_eq!(s.current_revision(), 9);
    let r = s.range(&get("a", "\0")).unwrap();
    assert_eq!(keys(&r), ["a", "b", "c", "d"]);
    assert_eq!(r.kvs[1], kv("b", "9", 3, 7, 2));
}

#[test]
fn compacting_everything_keeps_the_revision() {
    let (d, s) = open();
    put_now(&s, "a", "1");
    apply(&s, |b| b.delete_range(&del("a", "")).unwrap());
    apply(&s, |b| b.compact(3).unwrap());
    let s = reopen(&d, s);
    assert_eq!((s.current_revision(), s.compact_revision()), (3, 3));
    assert_eq!(put_now(&s, "a", "2"), 4);
}

#[test]
fn meta_and_applied_index_survive_reopen() {
    let (d, s) = open();
    apply(&s, |b| {
        b.put_meta("alarm", b"nospace").unwrap();
        assert!(matches!(
            b.put_meta("consistent_index", b"x"),
            Err(MvccError::ReservedMetaKey(_))
        ));
        b.set_applied_index(42);
    });
    assert_eq!(s.applied_index(), 42);
    assert_eq!(s.meta("alarm").unwrap(), Some(b"nospace".to_vec()));
    let s = reopen(&d, s);
    assert_eq!(s.applied_index(), 42);
    assert_eq!(s.meta("alarm").unwrap(), Some(b"nospace".to_vec()));
    assert_eq!(s.meta("other").unwrap(), None);
}

#[test]
fn a_compaction_keeps_the_hash_of_what_it_compacted() {
    // etcd 3.5.5's compaction hash check compares, at a compacted revision, the hash each
    // member took as it compacted: it must be HashKV at that revision just before.
    let (_d, s) = open();
    fill(&s);
    apply(&s, |b| b.put(&put("a", "again"), &NoLeases).unwrap());
    let mut expected = Vec::new();
    for at in [4, 7] {
        let before = s.hash_kv(at).unwrap();
        let prev = before.compact_revision;
        apply(&s, |b| b.compact(at).unwrap());
        expected.insert(
            0,
            cairn_mvcc::CompactHash {
                hash: before.hash,
                compact_revision: prev,
                revision: at,
            },
        );
        assert_eq!(s.compact_hashes(), expected);
        // A peer asking at the compacted revision gets that hash, not today's.
        let asked = s.hash_by_rev(at).unwrap();
        assert_eq!(
            (asked.hash, asked.compact_revision, asked.hash_revision),
            (before.hash, prev, at)
        );
        assert_eq!(asked.current_revision, s.current_revision());
    }
    // Other revisions are hashed as HashKV hashes them.
    assert_eq!(s.hash_by_rev(8).unwrap(), s.hash_kv(8).unwrap());
    assert_eq!(s.hash_by_rev(0).unwrap(), s.hash_kv(0).unwrap());
}

#[test]
fn a_value_overwritten_offline_changes_the_hash_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let s = cairn_mvcc::Store::open(&path).unwrap();
    fill(&s);
    let hash = s.hash_kv(0).unwrap();
    let before = s.range(&get("a", "")).unwrap().kvs;
    drop(s);
    assert!(cairn_mvcc::overwrite_value_in_place(&path, b"a", b"rotten").unwrap());
    assert!(!cairn_mvcc::overwrite_value_in_place(&path, b"none", b"x").unwrap());
    let s = cairn_mvcc::Store::open(&path).unwrap();
    let after = s.range(&get("a", "")).unwrap().kvs;
    assert_eq!(after[0].value, b"rotten");
    assert_eq!(after[0].mod_revision, before[0].mod_revision);
    assert_eq!(s.current_revision(), hash.current_revision);
    assert_ne!(s.hash_kv(0).unwrap().hash, hash.hash);
}
