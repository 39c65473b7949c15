//! The deployment cairn is for, end to end, run the same way on real etcd 3.5.1 and on
//! cairn: three members with TLS on the client and peer ports (members verify each other's
//! certificates), a root user, a read-write and a read-only role for a service's key
//! prefix, and client configuration directories (`endpoints`, `user`, `password`,
//! `cacert`) picked by the wrapper `scripts/ctl-profile` through `ETCD_PROFILE` (root when
//! unset), which execs the real etcdctl or cairnctl.
//!
//! The runbook (`endpoint status -w table`, `endpoint health -w table`, `role list`,
//! `get --prefix --keys-only`, a write the read-only role may not make, `snapshot save`)
//! prints the same through the wrapper with etcdctl on etcd and on cairn, and with
//! cairnctl on cairn, once what differs between clusters is masked (member ids, ports,
//! sizes, Raft indexes, durations).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use cairn_tests::certs::{Pki, Use};
use cairn_tests::deployment;
use cairn_tests::mask::{mask, mask_line, mask_measured};
use cairn_tests::{
    free_port, repo_root, run_client, start_together, tool, workspace_bin, Kind, ServerProc,
};

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// Three members of `kind` with TLS on both ports.
fn start_cluster(kind: Kind, pki: &Pki) -> Vec<ServerProc> {
    let member = pki.issue("member", "member", 10, Use::Server);
    let flags = [
        format!("--cert-file={}", s(&member.cert)),
        format!("--key-file={}", s(&member.key)),
        format!("--peer-cert-file={}", s(&member.cert)),
        format!("--peer-key-file={}", s(&member.key)),
        format!("--peer-trusted-ca-file={}", s(&pki.ca())),
        "--peer-client-cert-auth".to_string(),
        "--initial-cluster-token=deployment".to_string(),
    ];
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let mut members: Vec<ServerProc> = (0..3)
        .map(|i| {
            let mut m = ServerProc::new(kind, &format!("m{i}"), free_port(), &flags);
            m.client_scheme = "https";
            m.peer_scheme = "https";
            m
        })
        .collect();
    start_together(&mut members);
    members
}

/// Writes one client configuration directory.
fn profile(dir: &Path, name: &str, endpoints: &[String], user: &str, password: &str, ca: &Path) {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("endpoints"), endpoints.join("\n") + "\n").unwrap();
    std::fs::write(d.join("user"), format!("{user}\n")).unwrap();
    std::fs::write(d.join("password"), format!("{password}\n")).unwrap();
    std::fs::copy(ca, d.join("cacert")).unwrap();
}

/// The users, roles and profiles of the deployment; auth on at the end.
fn provision(members: &[ServerProc], pki: &Pki, profiles: &Path) {
    let urls: Vec<String> = members.iter().map(ServerProc::url).collect();
    let ca = format!("--cacert={}", s(&pki.ca()));
    for args in deployment::provisioning() {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut all = vec![ca.as_str()];
        all.extend(&args);
        let run = run_client(&tool("etcdctl-3.5"), &urls.join(","), &all, None);
        assert_eq!(run.code, 0, "{args:?}: {run:?}");
    }
    let root = deployment::ROOT_PASSWORD;
    profile(profiles, "root", &urls, "root", root, &pki.ca());
    for (user, password) in [deployment::RW_USER, deployment::RO_USER] {
        profile(profiles, user, &urls, user, password, &pki.ca());
    }
    // Snapshots are taken from one member.
    profile(profiles, "root-m0", &urls[..1], "root", root, &pki.ca());
}

/// Runs the wrapper with `ctl` under `profile` (None: the default) and `args`: exit code,
/// standard output, and the last line of standard error (the tool's own message).
fn wrapped(ctl: &Path, profiles: &Path, profile: Option<&str>, args: &[&str]) -> String {
    let mut cmd = Command::new(repo_root().join("scripts/ctl-profile"));
    cmd.args(args)
        .env("ETCD_PROFILES", profiles)
        .env("ETCD_CTL", ctl)
        .env_remove("ETCDCTL_API");
    match profile {
        Some(p) => cmd.env("ETCD_PROFILE", p),
        None => cmd.env_remove("ETCD_PROFILE"),
    };
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    format!(
        "exit {}\n{}{}",
        out.status.code().unwrap_or(-1),
        mask(&out.stdout),
        mask_line(last)
    )
}

/// The runbook through the wrapper with `ctl`; what each step printed, masked for
/// comparison with another cluster's run.
fn runbook(ctl: &Path, members: &[ServerProc], profiles: &Path, snapshot: &Path) -> Vec<String> {
    let ids: Vec<String> = members
        .iter()
        .map(|m| {
            let run = run_client(
                &tool("etcdctl-3.5"),
                &m.url(),
                &[
                    &format!("--cacert={}", s(&profiles.join("root/cacert"))),
                    "--user=root:rootpw",
                    "endpoint",
                    "status",
                    "-w",
                    "json",
                ],
                None,
            );
            let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
            format!(
                "{:x}",
                v[0]["Status"]["header"]["member_id"].as_u64().unwrap()
            )
        })
        .collect();
    let steps: Vec<(Option<&str>, Vec<String>)> = vec![
        (
            None,
            vec![
                "endpoint".into(),
                "status".into(),
                "-w".into(),
                "table".into(),
            ],
        ),
        (
            None,
            vec![
                "endpoint".into(),
                "health".into(),
                "-w".into(),
                "table".into(),
            ],
        ),
        (None, vec!["role".into(), "list".into()]),
        (
            Some("orders-rw"),
            vec!["put".into(), "/orders/1001".into(), "new".into()],
        ),
        (
            Some("orders-rw"),
            vec!["put".into(), "/orders/1002".into(), "paid".into()],
        ),
        (
            Some("orders-ro"),
            vec![
                "get".into(),
                "/orders/".into(),
                "--prefix".into(),
                "--keys-only".into(),
            ],
        ),
        (
            Some("orders-ro"),
            vec!["put".into(), "/orders/1003".into(), "forged".into()],
        ),
        (
            Some("orders-rw"),
            vec!["put".into(), "/billing/1".into(), "escape".into()],
        ),
        (
            None,
            vec![
                "get".into(),
                "".into(),
                "--from-key".into(),
                "--keys-only".into(),
            ],
        ),
        (
            Some("root-m0"),
            vec!["snapshot".into(), "save".into(), s(snapshot)],
        ),
    ];
    steps
        .iter()
        .map(|(profile, args)| {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let out = wrapped(ctl, profiles, *profile, &args);
            let mut out = mask_measured(&out).replace(&s(snapshot), "SNAPSHOT");
            for (i, (m, id)) in members.iter().zip(&ids).enumerate() {
                out = out.replace(&m.client_port.to_string(), &format!("PORT{i}"));
                out = out.replace(id.as_str(), &format!("ID{i}"));
            }
            let line = format!("{} {args:?}\n{}", profile.unwrap_or("root"), out)
                .replace(&s(snapshot), "SNAPSHOT");
            mask_status_table(&line)
        })
        .collect()
}

/// Masks the cells of `endpoint status`'s table that differ between clusters and runs
/// (version, size, which member leads, Raft term and indexes) and their padding; counts
/// the leaders instead.
fn mask_status_table(text: &str) -> String {
    let mut leaders = None;
    let mut lines: Vec<String> = text
        .lines()
        .map(|l| {
            if !l.starts_with("| https") {
                return l.to_string();
            }
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            if cells.get(5) == Some(&"true") {
                *leaders.get_or_insert(0) += 1;
            } else {
                leaders.get_or_insert(0);
            }
            cells
                .iter()
                .enumerate()
                .map(|(i, c)| match i {
                    3..=5 | 7..=9 => "X",
                    _ => c,
                })
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect();
    if text.contains("| HEALTH |") {
        // etcdctl prints the members in the order their answers came.
        let rows: Vec<usize> = (0..lines.len())
            .filter(|&i| lines[i].starts_with("|https"))
            .collect();
        let mut sorted: Vec<String> = rows.iter().map(|&i| lines[i].clone()).collect();
        sorted.sort();
        for (i, row) in rows.into_iter().zip(sorted) {
            lines[i] = row;
        }
        leaders = None;
    }
    if let Some(n) = leaders {
        lines.push(format!("leaders: {n}"));
    }
    lines.join("\n")
}

#[test]
fn the_runbook_runs_unchanged_on_cairn_through_the_client_profiles() {
    let pki = Pki::new("deployment CA");
    let dir = tempfile::tempdir().unwrap();
    let snapshot = |name: &str| -> PathBuf { dir.path().join(name) };

    let etcd = start_cluster(Kind::Etcd35, &pki);
    let etcd_profiles = dir.path().join("etcd-profiles");
    provision(&etcd, &pki, &etcd_profiles);
    let want = runbook(
        &tool("etcdctl-3.5"),
        &etcd,
        &etcd_profiles,
        &snapshot("etcd.db"),
    );
    drop(etcd);

    let cairn = start_cluster(Kind::Cairn, &pki);
    let cairn_profiles = dir.path().join("cairn-profiles");
    provision(&cairn, &pki, &cairn_profiles);
    let with_etcdctl = runbook(
        &tool("etcdctl-3.5"),
        &cairn,
        &cairn_profiles,
        &snapshot("a.db"),
    );
    let with_cairnctl = runbook(
        &workspace_bin("cairnctl"),
        &cairn,
        &cairn_profiles,
        &snapshot("b.db"),
    );

    for ((w, e), c) in want.iter().zip(&with_etcdctl).zip(&with_cairnctl) {
        assert_eq!(e, w, "etcdctl on cairn differs from etcdctl on etcd");
        assert_eq!(c, e, "cairnctl on cairn differs from etcdctl on cairn");
    }
    assert_eq!(with_etcdctl.len(), want.len());

    // What the runbook showed.
    let all = want.join("\n");
    for expected in [
        "|https://127.0.0.1:PORT0|ID0|X|X|X|false|X|X|X||",
        "leaders: 1",
        "|https://127.0.0.1:PORT2|true|X|X|X",
        "orders-ro\norders-rw\n",
        "/orders/1001\n\n/orders/1002",
        "Error: etcdserver: permission denied",
        "Snapshot saved at SNAPSHOT",
    ] {
        assert!(all.contains(expected), "{expected:?} not in:\n{all}");
    }
    for f in ["a.db", "b.db"] {
        assert!(
            std::fs::metadata(snapshot(f)).unwrap().len() > 0,
            "{f} is empty"
        );
    }
}
