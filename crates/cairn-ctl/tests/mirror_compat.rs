//! `cairnctl make-mirror` between etcd 3.5.1 and cairn, both ways, and `snapshot save` with
//! several endpoints.
//!
//! The mirrors run under a bounded write load on the source (puts, deletes, and a txn of
//! more operations than the destination's `--max-txn-ops`) and must end with the
//! destination holding exactly the source's keys and values under the (renamed) prefix,
//! and nothing from outside it. What etcdctl prints is compared where it is deterministic:
//! argument errors, a refused destination password and the 30-second count line.
//!
//! A missing etcd/etcdctl 3.5.1 fails the test (run `scripts/setup`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command};
use std::sync::mpsc;
use std::time::Duration;

use cairn_tests::certs::{Pki, Use};
use cairn_tests::mask::mask;
use cairn_tests::wait::wait_until;
use cairn_tests::{Cluster, Kind, ServerProc};
use common::{cairnctl, ctl_command, etcdctl, Report};

/// How a tool reaches one server: its endpoint and the global flags it needs (TLS, user).
#[derive(Clone)]
struct Target {
    endpoint: String,
    flags: Vec<String>,
}

impl Target {
    fn plain(server: &ServerProc) -> Target {
        Target {
            endpoint: server.endpoint(),
            flags: Vec::new(),
        }
    }

    /// Runs etcdctl 3.5.1 against this server with `args`; panics unless it succeeds.
    fn ctl(&self, args: &[&str], stdin: &str) -> String {
        let mut cmd = ctl_command(etcdctl(), Some(&self.endpoint));
        cmd.args(&self.flags).args(args);
        let r = common::run(cmd, stdin.as_bytes());
        assert_eq!(
            r.code,
            0,
            "etcdctl {args:?}: {}",
            String::from_utf8_lossy(&r.stderr)
        );
        String::from_utf8(r.stdout).unwrap()
    }

    /// The keys and values under `prefix`, each key with `prefix` replaced by `to`.
    fn pairs(&self, prefix: &str, to: &str) -> Vec<(String, String)> {
        let out = self.ctl(&["get", prefix, "--prefix"], "");
        let lines: Vec<&str> = out.lines().collect();
        lines
            .chunks(2)
            .map(|kv| {
                let key = kv[0].strip_prefix(prefix).unwrap();
                (format!("{to}{key}"), kv.get(1).unwrap_or(&"").to_string())
            })
            .collect()
    }
}

/// A running mirror, killed when dropped; its stdout lines arrive on `lines`.
struct Mirror {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Mirror {
    fn start(tool: &Path, source: &Target, args: &[String]) -> Mirror {
        let mut cmd: Command = ctl_command(tool, Some(&source.endpoint));
        cmd.args(&source.flags).arg("make-mirror").args(args);
        let mut child = cmd.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Mirror { child, lines }
    }

    /// Fails the test if the mirror has exited (it runs until killed).
    fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            let mut err = String::new();
            if let Some(mut e) = self.child.stderr.take() {
                std::io::Read::read_to_string(&mut e, &mut err).unwrap();
            }
            panic!("make-mirror exited ({status}): {err}");
        }
    }
}

impl Drop for Mirror {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes a bounded load under `/src/` on `source`: 40 txns of puts (new and overwritten
/// keys), 8 deletes, a txn of 200 puts (more than a destination's default 128 operations),
/// and a key outside the prefix.
fn write_load(source: &Target) {
    let mut big = String::from("\n");
    for j in 0..200 {
        big.push_str(&format!("put /src/big/{j:03} b{j}\n"));
    }
    big.push_str("\n\n");
    for i in 0..40 {
        source.ctl(
            &["txn"],
            &format!("\nput /src/k{} v{i}\nput /src/n{i:02} x{i}\n\n\n", i % 10),
        );
        if i % 5 == 4 {
            source.ctl(&["del", &format!("/src/n{:02}", i - 2)], "");
        }
        if i == 20 {
            source.ctl(&["txn"], &big);
        }
    }
    source.ctl(&["put", "/other/x", "outside"], "");
}

/// Puts 30 keys under `/src/` before the mirror starts (its base copy).
fn preload(source: &Target) {
    let mut txn = String::from("\n");
    for j in 0..30 {
        txn.push_str(&format!("put /src/base/{j:02} b{j}\n"));
    }
    txn.push_str("\n\n");
    source.ctl(&["txn"], &txn);
}

/// Waits (up to 60 s) until `dest` holds under `to` exactly what `source` holds under
/// `/src/`, and checks nothing from outside the prefix came along.
fn wait_mirrored(mirror: &mut Mirror, source: &Target, dest: &Target, to: &str) {
    let n = source.pairs("/src/", to).len();
    assert_eq!(n, 30 + 10 + 40 - 8 + 200, "the source's keys");
    wait_equal(mirror, source, dest, to);
}

/// Waits (up to 60 s) until `dest` holds under `to` exactly what `source` holds under
/// `/src/` now, and checks nothing from outside the prefix came along.
fn wait_equal(mirror: &mut Mirror, source: &Target, dest: &Target, to: &str) {
    let want = source.pairs("/src/", to);
    wait_until(
        Duration::from_secs(60),
        format!("the destination to hold the source's keys under {to:?}"),
        || {
            mirror.assert_running();
            let got = dest.pairs(to, to);
            if got == want {
                Ok(())
            } else {
                Err((got.len(), want.len()))
            }
        },
    );
    assert_eq!(dest.ctl(&["get", "/other/", "--prefix"], ""), "");
    mirror.assert_running();
}

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

/// The mirror copies the base and follows a write load from etcd 3.5.1 to cairn and from
/// cairn to etcd 3.5.1, with a destination prefix, without one (`--no-dest-prefix`) and
/// keeping the source's prefix. The sources accept txns of 300 operations; the
/// destinations keep the default 128, so the 200-put txn only goes through split.
#[test]
fn make_mirror_follows_a_write_load_both_ways() {
    let pairs = [(Kind::Etcd35, Kind::Cairn), (Kind::Cairn, Kind::Etcd35)];
    for (src_kind, dst_kind) in pairs {
        let variants: [(&[&str], &str); 3] = [
            (&["--dest-prefix=/dst/"], "/dst/"),
            (&["--no-dest-prefix"], ""),
            (&[], "/src/"),
        ];
        for (flags, to) in variants {
            let src = ServerProc::start(src_kind, &["--max-txn-ops=300"]);
            let dst = ServerProc::start(dst_kind, &[]);
            let (source, dest) = (Target::plain(&src), Target::plain(&dst));
            preload(&source);
            let mut args: Vec<String> = vec!["--prefix=/src/".into()];
            args.extend(flags.iter().map(|f| f.to_string()));
            args.push(dst.endpoint());
            let mut mirror = Mirror::start(&cairnctl(), &source, &args);
            write_load(&source);
            eprintln!("{src_kind:?} -> {dst_kind:?} {flags:?}");
            wait_mirrored(&mut mirror, &source, &dest, to);
        }
    }
}

/// The source restarts while the mirror runs: the mirror waits for it, resumes its watch
/// from the first revision it has not applied, and the writes made after the restart
/// (puts, and deletes of base keys) reach the destination.
#[test]
fn make_mirror_resumes_after_the_source_restarts() {
    for (src_kind, dst_kind) in [(Kind::Cairn, Kind::Etcd35), (Kind::Etcd35, Kind::Cairn)] {
        let mut src = ServerProc::start(src_kind, &["--max-txn-ops=300"]);
        let dst = ServerProc::start(dst_kind, &[]);
        let (source, dest) = (Target::plain(&src), Target::plain(&dst));
        preload(&source);
        let args = vec![
            "--prefix=/src/".to_string(),
            "--dest-prefix=/r/".to_string(),
            dst.endpoint(),
        ];
        let mut mirror = Mirror::start(&cairnctl(), &source, &args);
        write_load(&source);
        wait_mirrored(&mut mirror, &source, &dest, "/r/");
        src.stop();
        src.spawn();
        for i in 0..20 {
            source.ctl(
                &["put", &format!("/src/after/{i:02}"), &format!("a{i}")],
                "",
            );
        }
        source.ctl(&["del", "/src/base/1", "--prefix"], "");
        eprintln!("{src_kind:?} -> {dst_kind:?} across a restart of the source");
        wait_equal(&mut mirror, &source, &dest, "/r/");
        assert_eq!(dest.pairs("/r/after/", "").len(), 20);
        assert_eq!(dest.pairs("/r/base/1", "").len(), 0);
    }
}

/// Values of 1 MiB: the base's page of them (6 MiB) and a watch catching up on as many are
/// larger than gRPC's default 4 MiB message limit, which etcdctl's client lifts; each put
/// reaches the destination in a txn of its own, within its 1.5 MiB request limit.
#[test]
fn make_mirror_copies_large_values_both_ways() {
    let big = |i: usize| format!("{i}{}", "x".repeat((1 << 20) - 8));
    for (src_kind, dst_kind) in [(Kind::Etcd35, Kind::Cairn), (Kind::Cairn, Kind::Etcd35)] {
        let src = ServerProc::start(src_kind, &[]);
        let dst = ServerProc::start(dst_kind, &[]);
        let (source, dest) = (Target::plain(&src), Target::plain(&dst));
        for i in 0..6 {
            source.ctl(&["put", &format!("/src/base/{i}")], &big(i));
        }
        let args = vec!["--prefix=/src/".to_string(), dst.endpoint()];
        let mut mirror = Mirror::start(&cairnctl(), &source, &args);
        for i in 0..6 {
            source.ctl(&["put", &format!("/src/live/{i}")], &big(i + 10));
        }
        eprintln!("{src_kind:?} -> {dst_kind:?} with 1 MiB values");
        wait_equal(&mut mirror, &source, &dest, "/src/");
        assert_eq!(dest.pairs("/src/", "").len(), 12);
    }
}

/// A source with auth on, read by a user who may read only the mirrored prefix: cairnctl
/// mirrors it (etcdctl 3.5.1's syncer first reads the key `foo` for its revision, which
/// this user may not, and fails: a documented difference).
#[test]
fn make_mirror_reads_a_source_as_a_user_allowed_only_the_prefix() {
    for (src_kind, dst_kind) in [(Kind::Cairn, Kind::Etcd35), (Kind::Etcd35, Kind::Cairn)] {
        let src = ServerProc::start(src_kind, &["--max-txn-ops=300"]);
        let dst = ServerProc::start(dst_kind, &[]);
        let (mut source, dest) = (Target::plain(&src), Target::plain(&dst));
        for step in [
            vec!["user", "add", "root:rootpw"],
            vec!["user", "add", "reader:readerpw"],
            vec!["role", "add", "src-reader"],
            vec![
                "role",
                "grant-permission",
                "src-reader",
                "read",
                "/src/",
                "--prefix",
            ],
            vec!["user", "grant-role", "reader", "src-reader"],
            vec!["auth", "enable"],
        ] {
            source.ctl(&step, "");
        }
        source.flags.push("--user=root:rootpw".into());
        preload(&source);
        let reader = Target {
            endpoint: source.endpoint.clone(),
            flags: vec!["--user=reader:readerpw".into()],
        };
        let args = vec!["--prefix=/src/".to_string(), dst.endpoint()];
        let mut theirs = Mirror::start(&etcdctl(), &reader, &args);
        let status = wait_until(Duration::from_secs(20), "etcdctl to fail", || {
            theirs.child.try_wait().unwrap().ok_or("running")
        });
        let mut err = String::new();
        std::io::Read::read_to_string(&mut theirs.child.stderr.take().unwrap(), &mut err).unwrap();
        assert!(
            err.ends_with("Error: etcdserver: permission denied\n") && status.code() == Some(1),
            "etcdctl's syncer reads `foo`: {status} {err}"
        );
        let mut mirror = Mirror::start(&cairnctl(), &reader, &args);
        write_load(&source);
        eprintln!("{src_kind:?} -> {dst_kind:?} read by a prefix-only user");
        wait_mirrored(&mut mirror, &source, &dest, "/src/");
    }
}

/// A destination serving TLS only, with client certificates required and auth on: the
/// mirror reaches it with `--dest-cacert`, `--dest-cert`, `--dest-key` and
/// `--dest-insecure-transport=false`, as root given by `--dest-user name:password` and by
/// `--dest-user name --dest-password`.
#[test]
fn make_mirror_writes_to_a_tls_destination_with_auth() {
    let pki = Pki::new("mirror-ca");
    let server = pki.issue("server", "server", 2, Use::Server);
    let client = pki.issue("client", "client", 3, Use::Client);
    let tls = [
        format!("--cert-file={}", s(&server.cert)),
        format!("--key-file={}", s(&server.key)),
        format!("--trusted-ca-file={}", s(&pki.ca())),
        "--client-cert-auth".to_string(),
    ];
    let tls: Vec<&str> = tls.iter().map(String::as_str).collect();
    let dest_files = [
        format!("--dest-cacert={}", s(&pki.ca())),
        format!("--dest-cert={}", s(&client.cert)),
        format!("--dest-key={}", s(&client.key)),
        "--dest-insecure-transport=false".to_string(),
    ];
    for (src_kind, dst_kind, user) in [
        (Kind::Etcd35, Kind::Cairn, vec!["--dest-user=root:rootpw"]),
        (
            Kind::Cairn,
            Kind::Etcd35,
            vec!["--dest-user=root", "--dest-password=rootpw"],
        ),
    ] {
        let src = ServerProc::start(src_kind, &["--max-txn-ops=300"]);
        let dst = ServerProc::start_https(dst_kind, &tls);
        let source = Target::plain(&src);
        let mut dest = Target {
            endpoint: dst.url(),
            flags: vec![
                format!("--cacert={}", s(&pki.ca())),
                format!("--cert={}", s(&client.cert)),
                format!("--key={}", s(&client.key)),
            ],
        };
        dest.ctl(&["user", "add", "root:rootpw"], "");
        dest.ctl(&["auth", "enable"], "");
        dest.flags.push("--user=root:rootpw".into());
        preload(&source);
        let mut args = vec![
            "--prefix=/src/".to_string(),
            "--dest-prefix=/m/".to_string(),
        ];
        args.extend(dest_files.iter().cloned());
        args.extend(user.iter().map(|u| u.to_string()));
        args.push(dst.url());
        let mut mirror = Mirror::start(&cairnctl(), &source, &args);
        write_load(&source);
        eprintln!("{src_kind:?} -> {dst_kind:?} over TLS with auth");
        wait_mirrored(&mut mirror, &source, &dest, "/m/");
    }
}

/// Runs `tool` with `args` against `source` to its end; stdout, stderr (masked) and exit
/// code.
fn run_to_end(tool: &Path, source: &Target, args: &[String]) -> (String, String, i32) {
    run_fed(tool, source, args, b"")
}

/// [`run_to_end`] with `stdin` as the input.
fn run_fed(tool: &Path, source: &Target, args: &[String], stdin: &[u8]) -> (String, String, i32) {
    let mut cmd = ctl_command(tool, Some(&source.endpoint));
    cmd.args(&source.flags).args(args);
    let r = common::run(cmd, stdin);
    (mask(&r.stdout), mask(&r.stderr), r.code)
}

/// What etcdctl 3.5.1 and cairnctl print and exit with for make-mirror's argument errors,
/// a destination that refuses the password (given, or answered to the
/// `Destination Password: ` prompt) and one that refuses the first write, on the same
/// servers.
#[test]
fn make_mirror_errors_match_etcdctl() {
    let src = ServerProc::start(Kind::Etcd35, &[]);
    let dst = ServerProc::start(Kind::Etcd35, &[]);
    let (source, dest) = (Target::plain(&src), Target::plain(&dst));
    dest.ctl(&["user", "add", "root:rootpw"], "");
    dest.ctl(&["user", "add", "norole:norolepw"], "");
    dest.ctl(&["auth", "enable"], "");
    source.ctl(&["put", "k", "v"], "");
    let d = dst.endpoint();
    let cases: Vec<Vec<String>> = vec![
        vec!["make-mirror".into()],
        vec!["make-mirror".into(), d.clone(), d.clone()],
        vec![
            "make-mirror".into(),
            "--prefix=/a".into(),
            "--dest-prefix=/b".into(),
            "--no-dest-prefix".into(),
            "--dest-user=root:rootpw".into(),
            d.clone(),
        ],
        vec![
            "make-mirror".into(),
            "--dest-user=root:wrong".into(),
            d.clone(),
        ],
        // A destination user who may not write: the first write fails.
        vec![
            "make-mirror".into(),
            "--dest-user=norole:norolepw".into(),
            d.clone(),
        ],
        vec![
            "make-mirror".into(),
            "--dest-user=nobody".into(),
            "--dest-password=x".into(),
            d.clone(),
        ],
    ];
    // `--dest-user` without a password asks for it on the terminal (here a pipe).
    let prompted = vec![
        "make-mirror".to_string(),
        "--dest-user=root".to_string(),
        d.clone(),
    ];
    let mut report = Report::default();
    let fed: [&[u8]; 1] = [b"wrong\n"];
    for (args, stdin) in cases
        .iter()
        .map(|a| (a, &b""[..]))
        .chain(fed.iter().map(|f| (&prompted, *f)))
    {
        let want = run_fed(&etcdctl(), &source, args, stdin);
        let got = run_fed(&cairnctl(), &source, args, stdin);
        let problems = common::differences((&want.0, &want.1, want.2), (&got.0, &got.1, got.2));
        report.case(&format!("{args:?}"), problems);
    }
    report.finish();
}

/// After 30 seconds both tools print how many keys they have mirrored, on a line of its
/// own: the 25 keys of the base, as nothing is written meanwhile.
#[test]
fn make_mirror_count_line_matches_etcdctl() {
    let src = ServerProc::start(Kind::Cairn, &[]);
    let dst = ServerProc::start(Kind::Etcd35, &[]);
    let source = Target::plain(&src);
    let mut txn = String::from("\n");
    for j in 0..25 {
        txn.push_str(&format!("put /c/{j:02} v{j}\n"));
    }
    txn.push_str("\n\n");
    source.ctl(&["txn"], &txn);
    source.ctl(&["put", "/d/outside", "x"], "");
    let args = |to: &str| {
        vec![
            "--prefix=/c/".to_string(),
            format!("--dest-prefix={to}"),
            dst.endpoint(),
        ]
    };
    let mut theirs = Mirror::start(&etcdctl(), &source, &args("/e/"));
    let mut ours = Mirror::start(&cairnctl(), &source, &args("/k/"));
    let first_line = |m: &mut Mirror| {
        let line = m.lines.recv_timeout(Duration::from_secs(60));
        m.assert_running();
        line.expect("a count line within 60 s")
    };
    assert_eq!(first_line(&mut theirs), "25");
    assert_eq!(first_line(&mut ours), "25");
}

/// With every member of a 3-member cairn cluster in `--endpoints`, `snapshot save` (which
/// etcdctl refuses) saves from the leader and names it on stderr; the file is a whole
/// snapshot (`snapshot save` from that member alone gives a file of the same kind).
#[test]
fn snapshot_save_with_several_endpoints_saves_from_the_leader() {
    let cluster = Cluster::start(3, &[]);
    let all = cluster.endpoints();
    let any = Target {
        endpoint: all.clone(),
        flags: Vec::new(),
    };
    any.ctl(&["put", "k", "v"], "");
    let leader = cairn_tests::leader::leader(&cluster.members);
    let leader_ep = cluster.members[leader].endpoint();
    let leader_id = cluster.members[leader].ids().member;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("snap.db");

    let theirs = run_to_end(
        &etcdctl(),
        &any,
        &["snapshot".into(), "save".into(), s(&file)],
    );
    assert_eq!(
        (theirs.1.as_str(), theirs.2),
        (
            format!(
                "Error: snapshot must be requested to one selected node, not multiple [{}]\n",
                all.replace(',', " ")
            )
            .as_str(),
            5
        ),
        "etcdctl refuses several endpoints"
    );

    let ours = run_to_end(
        &cairnctl(),
        &any,
        &["snapshot".into(), "save".into(), s(&file)],
    );
    assert_eq!(ours.2, 0, "{}", ours.1);
    assert_eq!(ours.0, format!("Snapshot saved at {}\n", s(&file)));
    let chosen = format!(
        "\"msg\":\"saving the snapshot from the cluster's leader\",\"endpoint\":\"{leader_ep}\",\"member-id\":\"{leader_id:x}\"}}"
    );
    assert!(ours.1.contains(&chosen), "stderr: {}", ours.1);
    let fetched = format!("\"msg\":\"fetching snapshot\",\"endpoint\":\"{leader_ep}\"}}");
    assert!(ours.1.contains(&fetched), "stderr: {}", ours.1);
    let size = std::fs::metadata(&file).unwrap().len();
    assert!(size > 32, "a snapshot of {size} bytes");
    assert!(!dir.path().join("snap.db.part").exists());

    // An endpoint nothing listens on, first in the list, is passed over.
    let dead = format!("127.0.0.1:{}", cairn_tests::free_port());
    let with_dead = Target {
        endpoint: format!("{dead},{all}"),
        flags: Vec::new(),
    };
    let again = dir.path().join("again.db");
    let ours = run_to_end(
        &cairnctl(),
        &with_dead,
        &["snapshot".into(), "save".into(), s(&again)],
    );
    assert_eq!(ours.2, 0, "{}", ours.1);
    assert!(ours.1.contains(&chosen), "stderr: {}", ours.1);
    assert!(std::fs::metadata(&again).unwrap().len() > 32);

    // No endpoint of the list leads: refused, naming them, and no file written.
    let followers: Vec<String> = (0..3)
        .filter(|&i| i != leader)
        .map(|i| cluster.members[i].endpoint())
        .collect();
    let only_followers = Target {
        endpoint: followers.join(","),
        flags: Vec::new(),
    };
    let none = dir.path().join("none.db");
    let ours = run_to_end(
        &cairnctl(),
        &only_followers,
        &["snapshot".into(), "save".into(), s(&none)],
    );
    assert_eq!(
        (ours.1.as_str(), ours.2),
        (
            format!(
                "Error: snapshot must be requested to one selected node, and no leader was found among [{}]\n",
                followers.join(" ")
            )
            .as_str(),
            1
        )
    );
    assert!(!none.exists() && !dir.path().join("none.db.part").exists());
}
