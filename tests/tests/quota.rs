//! The backend quota as an operator meets it: writes past `--quota-backend-bytes` raise the
//! NOSPACE alarm and fail with etcd's error; reads, deletes, compaction and defragment still
//! work; `alarm disarm` clears it and writes work again. Driven with the real etcdctl.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use cairn_tests::{etcdctl35, run_client, tool, Kind, ServerProc};

const NOSPACE: &str = "etcdserver: mvcc: database space exceeded";

#[test]
fn nospace_alarm_lifecycle() {
    let cairn = ServerProc::start(Kind::Cairn, &["--quota-backend-bytes=2000000"]);
    let ep = cairn.endpoint();
    let value = "x".repeat(64 * 1024);
    let mut last_ok = None;
    let mut refused = None;
    for i in 0..400 {
        let r = etcdctl35(&ep, &["put", &format!("big/{i:04}"), &value]);
        if r.code == 0 {
            last_ok = Some(i);
        } else {
            refused = Some(r);
            break;
        }
    }
    let refused = refused.expect("the quota was never reached");
    assert!(last_ok.is_some(), "not even one write fit");
    assert!(
        refused.stderr.contains(&format!("Error: {NOSPACE}")),
        "{refused:?}"
    );

    // The alarm is listed, shown in status, and reported by /health.
    let alarms = etcdctl35(&ep, &["alarm", "list"]);
    assert!(
        alarms.stdout.starts_with("memberID:") && alarms.stdout.contains("alarm:NOSPACE"),
        "{alarms:?}"
    );
    let status = etcdctl35(&ep, &["endpoint", "status", "-w", "table"]);
    assert!(status.stdout.contains("alarm:NOSPACE"), "{status:?}");
    let health = etcdctl35(&ep, &["endpoint", "health"]);
    assert_ne!(health.code, 0, "{health:?}");

    // While it is active: small writes fail too, reads and deletes work.
    let r = etcdctl35(&ep, &["put", "small", "1"]);
    assert!(r.stderr.contains(NOSPACE), "{r:?}");
    let r = etcdctl35(&ep, &["lease", "grant", "10"]);
    assert!(r.stderr.contains(NOSPACE), "{r:?}");
    let r = etcdctl35(&ep, &["get", "big/0000", "--print-value-only"]);
    assert_eq!(r.stdout.trim_end().len(), value.len(), "{:?}", r.stderr);
    let r = etcdctl35(&ep, &["del", "big/", "--prefix"]);
    assert_eq!(r.code, 0, "{r:?}");
    let r = run_client(&tool("etcdctl-3.5"), &ep, &["txn"], Some("\n\n\n"));
    assert_eq!(
        r.code, 0,
        "an empty txn writes nothing and is served: {r:?}"
    );

    // Recovery as the runbook does it.
    let rev = etcdctl35(&ep, &["endpoint", "status", "-w", "json"]);
    let v: serde_json::Value = serde_json::from_str(&rev.stdout).unwrap();
    let rev = v[0]["Status"]["header"]["revision"].as_i64().unwrap();
    let r = etcdctl35(&ep, &["compaction", &rev.to_string(), "--physical"]);
    assert_eq!(r.code, 0, "{r:?}");
    let r = etcdctl35(&ep, &["defrag"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.contains("Finished defragmenting etcd member"),
        "{r:?}"
    );
    let r = etcdctl35(&ep, &["alarm", "disarm"]);
    assert!(r.stdout.contains("alarm:NOSPACE"), "{r:?}");
    let r = etcdctl35(&ep, &["alarm", "list"]);
    assert_eq!(r.stdout, "", "{r:?}");
    let r = etcdctl35(&ep, &["put", "small", "1"]);
    assert_eq!((r.code, r.stdout.as_str()), (0, "OK\n"), "{r:?}");
    let health = etcdctl35(&ep, &["endpoint", "health"]);
    assert_eq!(health.code, 0, "{health:?}");
}

#[test]
fn alarm_survives_restart() {
    let mut cairn = ServerProc::start(Kind::Cairn, &["--quota-backend-bytes=1000000"]);
    let value = "y".repeat(64 * 1024);
    let mut hit = false;
    for i in 0..400 {
        if etcdctl35(&cairn.endpoint(), &["put", &format!("k{i}"), &value]).code != 0 {
            hit = true;
            break;
        }
    }
    assert!(hit, "the quota was never reached");
    cairn.stop();
    cairn.spawn();
    let r = etcdctl35(&cairn.endpoint(), &["alarm", "list"]);
    assert!(r.stdout.contains("alarm:NOSPACE"), "{r:?}");
    let r = etcdctl35(&cairn.endpoint(), &["put", "k", "v"]);
    assert!(r.stderr.contains(NOSPACE), "{r:?}");
}

/// A burst of writes with none after it still reaches the backend file, so the size Status
/// reports (and the quota checks) shows it without waiting for the next write: cairn makes
/// the burst durable once writes pause (before, its pages stayed in the backend's write
/// buffer until the next write).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_writes_shows_in_the_size_without_another_write() {
    use cairn_proto::etcdserverpb::{kv_client::KvClient, PutRequest};
    let cairn = ServerProc::start(Kind::Cairn, &[]);
    let url = cairn.url();
    let before = cairn_tests::status(&url).await.unwrap().db_size;
    let mut kv = KvClient::new(cairn_tests::channel(&url));
    for i in 0..50 {
        kv.put(PutRequest {
            key: format!("burst/{i:02}").into_bytes(),
            value: vec![b'x'; 10_000],
            ..Default::default()
        })
        .await
        .unwrap();
    }
    cairn_tests::wait_until_async(
        std::time::Duration::from_secs(10),
        "the backend size to show 500 kB of puts",
        || {
            let url = url.clone();
            async move {
                let size = cairn_tests::status(&url).await.unwrap().db_size;
                if size >= before + 400_000 {
                    Ok(())
                } else {
                    Err(format!("{before} -> {size}"))
                }
            }
        },
    )
    .await;
}
