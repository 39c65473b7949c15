//! Client libraries other than cairn's own against cairn and real etcd: the same calls give
//! the same answers. etcd's own Go client (clientv3, as Go services link it) and Python's
//! etcd3 (gRPC).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use cairn_tests::goclient::etcd_go;
use cairn_tests::pyclient::etcd3_script;
use cairn_tests::{Kind, ServerProc};

/// What the Go client prints for a short KV script against `server`, one line per call.
fn kv_script(server: &ServerProc) -> Vec<String> {
    let ep = format!("-endpoints={}", server.url());
    let calls: [&[&str]; 6] = [
        &["get", "svc/a"],
        &["put", "svc/a", "1"],
        &["put", "svc/a", "2"],
        &["get", "svc/a"],
        &["del", "svc/a"],
        &["get", "svc/a"],
    ];
    calls
        .iter()
        .map(|call| {
            let mut args = vec![ep.as_str()];
            args.extend_from_slice(call);
            let run = etcd_go(&args);
            assert_eq!(run.code, 0, "etcdgo {call:?} failed: {run:?}");
            run.stdout
        })
        .collect()
}

#[test]
fn etcds_go_client_reads_and_writes_cairn_as_etcd() {
    let etcd = ServerProc::start(Kind::Etcd35, &[]);
    let cairn = ServerProc::start(Kind::Cairn, &[]);
    let want = kv_script(&etcd);
    assert_eq!(
        want,
        ["<none>\n", "OK\n", "OK\n", "2\n", "OK\n", "<none>\n"]
    );
    assert_eq!(kv_script(&cairn), want);

    // Status names the version the server claims; cairn claims etcd's API version.
    let status = etcd_go(&[&format!("-endpoints={}", cairn.url()), "status"]);
    assert_eq!(status.code, 0, "{status:?}");
    assert!(status.stdout.starts_with("3.5."), "{status:?}");
}

#[test]
fn pythons_etcd3_client_runs_the_same_script_on_cairn_as_on_etcd() {
    let etcd = ServerProc::start(Kind::Etcd35, &[]);
    let cairn = ServerProc::start(Kind::Cairn, &[]);
    let want = etcd3_script(&etcd.host, etcd.client_port, &[]);
    assert_eq!(want.code, 0, "the script failed on etcd: {want:?}");
    assert!(
        want.stdout
            .contains("\nwatch [('PutEvent', b'svc/w', b'w1'), ('DeleteEvent', b'svc/w', b'')]\n"),
        "{want:?}"
    );
    let got = etcd3_script(&cairn.host, cairn.client_port, &[]);
    assert_eq!(got.code, 0, "the script failed on cairn: {got:?}");
    assert_eq!(got.stdout, want.stdout);
}
