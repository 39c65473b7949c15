//! `cairnctl bench`, the load generator `scripts/bench-vs-etcd` runs, against real etcd
//! 3.5.1 and against cairn: every workload makes all its requests without an error on both
//! (its one HTTP/2 connection per `--conns`, driven through h2 directly, carries unary calls
//! and client streams alike), and the put workload writes within its key space; with auth
//! on, `authenticate` logs in as often as asked; `put --defrag-around` defragments the
//! member during the puts and reports it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use cairn_tests::{etcdctl35, workspace_bin, Kind, ServerProc};

/// Runs `cairnctl bench <args> --json` against `endpoint` and returns its JSON summary.
fn bench(endpoint: &str, args: &[&str]) -> serde_json::Value {
    let out = Command::new(workspace_bin("cairnctl"))
        .arg("bench")
        .args(args)
        .args(["--clients=8", "--conns=2", "--json"])
        .arg(format!("--endpoints={endpoint}"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bench {args:?}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("bench {args:?} printed no JSON summary ({e}): {stdout}"))
}

#[test]
fn every_bench_workload_runs_clean_against_etcd_and_cairn() {
    for kind in [Kind::Etcd35, Kind::Cairn] {
        let m = ServerProc::start(kind, &["--bcrypt-cost=4"]);
        let ep = m.endpoint();
        let workloads: [(&[&str], u64); 10] = [
            (&["put", "--total=400", "--key-space-size=50"], 400),
            // JSON through the /v3/kv/put gateway, over HTTP/1.1 (bench-vs-etcd's gw-put).
            (&["gw-put", "--total=400", "--key-space-size=50"], 400),
            // With range watchers held that no put matches (bench-vs-etcd's put-rw).
            (
                &[
                    "put",
                    "--total=400",
                    "--key-space-size=50",
                    "--range-watchers=20000",
                    "--watch-streams=4",
                ],
                400,
            ),
            (&["range", "--total=400", "--consistency=l"], 400),
            (&["range", "--total=400", "--consistency=s"], 400),
            (&["txn", "--total=400"], 400),
            (&["lease-keepalive", "--total=400", "--leases=10"], 400),
            // A new connection for each request.
            (&["connect", "--total=200"], 200),
            // Every watcher sees every put: 200 x 500 deliveries, in many small frames
            // from etcd.
            (&["watch", "--total=500", "--watchers=200"], 100_000),
            // All created, then held: one report for all.
            (
                &[
                    "watch-hold",
                    "--watchers=20000",
                    "--streams=20",
                    "--hold=1s",
                ],
                20_000,
            ),
        ];
        for (args, ok) in workloads {
            let summary = bench(&ep, args);
            assert_eq!(summary["failed"], 0, "{kind:?} {args:?}: {summary}");
            assert_eq!(
                summary["errors"],
                serde_json::json!({}),
                "{kind:?} {args:?}"
            );
            assert_eq!(summary["ok"], ok, "{kind:?} {args:?}: {summary}");
            assert_eq!(summary["cut_short"], false, "{kind:?} {args:?}");
            if args[0] == "put" || args[0] == "gw-put" {
                let count = key_count(&ep);
                assert!((1..=50).contains(&count), "{kind:?}: {count} keys");
            }
        }
        // Logins, with auth on (bcrypt at its lowest cost, so the run is short).
        for args in [
            &["user", "add", "root:rootpw"][..],
            &["user", "grant-role", "root", "root"],
            &["auth", "enable"],
        ] {
            let r = etcdctl35(&ep, args);
            assert_eq!(r.code, 0, "{kind:?} {args:?}: {r:?}");
        }
        let summary = bench(&ep, &["authenticate", "--total=40", "--user=root:rootpw"]);
        assert_eq!(summary["ok"], 40, "{kind:?}: {summary}");
        assert_eq!(summary["failed"], 0, "{kind:?}: {summary}");
    }
}

#[test]
fn put_with_a_defragment_reports_the_defragment_against_etcd_and_cairn() {
    for kind in [Kind::Etcd35, Kind::Cairn] {
        let m = ServerProc::start(kind, &[]);
        let args = [
            "put",
            "--total=200000",
            "--key-space-size=50",
            "--defrag-around=300ms",
            "--max-duration=60s",
        ];
        let summary = bench(&m.endpoint(), &args);
        assert_eq!(summary["failed"], 0, "{kind:?}: {summary}");
        assert_eq!(summary["defrag_error"], serde_json::Value::Null, "{kind:?}");
        assert_eq!(summary["cut_short"], false, "{kind:?}: {summary}");
        // The run ended after the defragment, not at --total.
        let ok = summary["ok"].as_u64().unwrap();
        assert!(ok > 0 && ok < 200_000, "{kind:?}: {summary}");
        let during = summary["defrag_puts"].as_u64().unwrap();
        assert!(during > 0 && during <= ok, "{kind:?}: {summary}");
        let (took, slowest) = (
            summary["defrag_ms"].as_f64().unwrap(),
            summary["defrag_slowest_put_ms"].as_f64().unwrap(),
        );
        assert!(took > 0.0 && slowest > 0.0, "{kind:?}: {summary}");
        assert!(
            slowest <= summary["slowest_ms"].as_f64().unwrap(),
            "{kind:?}: {summary}"
        );
    }
}

/// How many keys the member at `ep` holds, as etcdctl counts them.
fn key_count(ep: &str) -> u64 {
    let r = etcdctl35(
        ep,
        &["get", "", "--from-key", "--count-only", "-w", "fields"],
    );
    r.stdout
        .lines()
        .find_map(|l| l.strip_prefix("\"Count\" : "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no count in {r:?}"))
}
