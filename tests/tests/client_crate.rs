//! The third-party `etcd-client` crate drives cairn's KV and Maintenance APIs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use cairn_tests::{Kind, ServerProc};
use etcd_client::{
    Client, Compare, CompareOp, DeleteOptions, GetOptions, PutOptions, SortOrder, SortTarget, Txn,
    TxnOp,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_and_maintenance_through_etcd_client() {
    let cairn = ServerProc::start(Kind::Cairn, &[]);
    let mut c = Client::connect([cairn.url()], None).await.unwrap();

    let r = c.put("svc/a", "1", None).await.unwrap();
    assert_eq!(r.header().unwrap().revision(), 2);
    c.put("svc/b", "2", None).await.unwrap();
    let r = c
        .put("svc/a", "3", Some(PutOptions::new().with_prev_key()))
        .await
        .unwrap();
    assert_eq!(r.prev_key().unwrap().value(), b"1");

    let r = c
        .get("svc/", Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    assert_eq!(r.count(), 2);
    let kv = &r.kvs()[0];
    assert_eq!((kv.key(), kv.value()), (&b"svc/a"[..], &b"3"[..]));
    assert_eq!(
        (kv.create_revision(), kv.mod_revision(), kv.version()),
        (2, 4, 2)
    );

    let r = c
        .get(
            "svc/",
            Some(
                GetOptions::new()
                    .with_prefix()
                    .with_sort(SortTarget::Value, SortOrder::Descend)
                    .with_limit(1),
            ),
        )
        .await
        .unwrap();
    assert_eq!(r.kvs()[0].value(), b"3");
    assert!(r.more());

    let txn = Txn::new()
        .when([Compare::value("svc/a", CompareOp::Equal, "3")])
        .and_then([TxnOp::put("svc/c", "x", None), TxnOp::get("svc/c", None)])
        .or_else([TxnOp::put("svc/d", "y", None)]);
    let r = c.txn(txn).await.unwrap();
    assert!(r.succeeded());
    assert_eq!(r.header().unwrap().revision(), 5);

    let r = c
        .delete(
            "svc/",
            Some(DeleteOptions::new().with_prefix().with_prev_key()),
        )
        .await
        .unwrap();
    assert_eq!(r.deleted(), 3);
    assert_eq!(r.prev_kvs().len(), 3);

    c.compact(4, None).await.unwrap();
    let err = c
        .get("svc/a", Some(GetOptions::new().with_revision(3)))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("required revision has been compacted"),
        "{err}"
    );

    let st = c.status().await.unwrap();
    assert!(st.db_size() > 0);
    assert_eq!(st.leader(), st.header().unwrap().member_id());
    assert!(st.raft_index() >= st.raft_applied_index() || st.raft_applied_index() > 0);

    let h1 = c.hash_kv(0).await.unwrap();
    let h2 = c.hash_kv(0).await.unwrap();
    assert_eq!(h1.hash(), h2.hash());
    assert_eq!(h1.compact_version(), 4);

    c.defragment().await.unwrap();
    let alarms = c
        .alarm(
            etcd_client::AlarmAction::Get,
            etcd_client::AlarmType::None,
            None,
        )
        .await
        .unwrap();
    assert!(alarms.alarms().is_empty());

    let mut snap = c.snapshot().await.unwrap();
    let mut total = 0;
    while let Some(part) = snap.message().await.unwrap() {
        total += part.blob().len();
    }
    assert!(total > 32, "snapshot too small: {total}");
}
