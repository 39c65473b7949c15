//! The server as an operator starts and watches it: etcd's flags, environment and config
//! file; log lines scripts wait for; HTTP endpoints; refusing data directories that are not
//! cairn's; member and cluster IDs equal to etcd's for the same flags.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use cairn_tests::{etcdctl35, free_port, http_get, tool, workspace_bin, Kind, ServerProc};

/// A snapshot of a directory tree: every path with its size and modification time.
fn tree(dir: &Path) -> Vec<(String, u64, std::time::SystemTime)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            if m.is_dir() {
                stack.push(e.path());
            }
            out.push((
                e.path().display().to_string(),
                m.len(),
                m.modified().unwrap(),
            ));
        }
    }
    out.sort();
    out
}

/// Runs the cairn binary with `args` to completion (it is expected to refuse to start).
fn cairn_fails(args: &[String]) -> (i32, String) {
    let out = Command::new(workspace_bin("cairn"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn logs_milestones_as_etcd_json_lines() {
    let cairn = ServerProc::start(Kind::Cairn, &[]);
    let log = cairn.log_text();
    for milestone in [
        "starting an etcd server",
        "opened backend db",
        "enabled capabilities for version",
        "published local member to cluster through raft",
        "ready to serve client requests",
    ] {
        let line = log
            .lines()
            .find(|l| l.contains(&format!("\"msg\":\"{milestone}\"")))
            .unwrap_or_else(|| panic!("no {milestone:?} line in:\n{log}"));
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        for key in ["level", "ts", "caller", "msg"] {
            assert!(v.get(key).is_some(), "{key} missing in {line}");
        }
        // etcd's key order, so line-oriented scripts see the same prefix.
        assert!(line.starts_with("{\"level\":"), "{line}");
        assert!(v["ts"].as_str().unwrap().ends_with('Z'), "{line}");
    }
}

#[test]
fn http_endpoints() {
    let cairn = ServerProc::start(Kind::Cairn, &[]);
    let (code, body) = http_get(cairn.client_port, "/health");
    assert_eq!(
        (code, body.as_str()),
        (200, r#"{"health":"true","reason":""}"#)
    );
    let (code, body) = http_get(cairn.client_port, "/version");
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["etcdserver"], "3.5.0");
    assert_eq!(v["etcdcluster"], "3.5.0");
    assert!(v["cairn"].is_string());
    etcdctl35(&cairn.endpoint(), &["put", "k", "v"]);
    let (code, body) = http_get(cairn.client_port, "/metrics");
    assert_eq!(code, 200);
    for name in [
        "etcd_server_has_leader 1",
        "etcd_server_is_leader 1",
        "etcd_server_proposals_committed_total",
        "etcd_server_proposals_applied_total",
        "etcd_server_proposals_pending",
        "etcd_server_proposals_failed_total",
        "etcd_mvcc_db_total_size_in_bytes",
        "etcd_mvcc_db_total_size_in_use_in_bytes",
        "etcd_server_quota_backend_bytes 2.147483648e+09",
        "etcd_disk_backend_commit_duration_seconds_bucket",
        "etcd_disk_wal_fsync_duration_seconds_bucket",
        "etcd_mvcc_put_total 1",
        "grpc_server_handled_total{grpc_code=\"OK\",grpc_method=\"Put\",grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"} 1",
    ] {
        assert!(body.contains(name), "{name} missing from /metrics:\n{body}");
    }
}

#[test]
fn metrics_on_listen_metrics_urls() {
    let port = free_port();
    let cairn = ServerProc::start(
        Kind::Cairn,
        &[&format!("--listen-metrics-urls=http://127.0.0.1:{port}")],
    );
    let (code, body) = http_get(port, "/metrics");
    assert_eq!(code, 200);
    assert!(body.contains("etcd_server_has_leader 1"), "{body}");
    let (code, _) = http_get(port, "/health");
    assert_eq!(code, 200);
    drop(cairn);
}

#[test]
fn environment_and_config_file() {
    let cairn = ServerProc::start_with_env(
        Kind::Cairn,
        &[],
        &[("ETCD_QUOTA_BACKEND_BYTES", "123456789")],
    );
    let (_, body) = http_get(cairn.client_port, "/metrics");
    assert!(
        body.contains("etcd_server_quota_backend_bytes 1.23456789e+08"),
        "{body}"
    );
    drop(cairn);

    let dir = tempfile::tempdir().unwrap();
    let (client, peer) = (free_port(), free_port());
    let file = dir.path().join("cairn.yaml");
    std::fs::write(
        &file,
        format!(
            "name: from-file\ndata-dir: {}\nlisten-client-urls: http://127.0.0.1:{client}\n\
             advertise-client-urls: http://127.0.0.1:{client}\n\
             initial-advertise-peer-urls: http://127.0.0.1:{peer}\n\
             initial-cluster: from-file=http://127.0.0.1:{peer}\nquota-backend-bytes: 987654321\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let mut child = Command::new(workspace_bin("cairn"))
        .arg(format!("--config-file={}", file.display()))
        // The file wins over the environment, as in etcd.
        .env("ETCD_NAME", "from-env")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let members = loop {
        let r = etcdctl35(&format!("127.0.0.1:{client}"), &["member", "list"]);
        if r.code == 0 {
            break r.stdout;
        }
        assert!(std::time::Instant::now() < deadline, "not serving: {r:?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(members.contains(", from-file, "), "{members}");
}

#[test]
fn bad_flags_fail_like_etcd() {
    let (code, err) = cairn_fails(&["--no-such-flag".into()]);
    assert_eq!(code, 2);
    assert!(
        err.starts_with("flag provided but not defined: -no-such-flag\n"),
        "{err}"
    );
    let (code, err) = cairn_fails(&["--snapshot-count=abc".into()]);
    assert_eq!(code, 2);
    assert!(
        err.starts_with("invalid value \"abc\" for flag -snapshot-count: parse error"),
        "{err}"
    );
    let (code, err) = cairn_fails(&["--initial-cluster-state=sideways".into()]);
    assert_eq!(code, 1);
    assert!(err.contains("initial-cluster-state"), "{err}");
    // A flag for work not done yet fails clearly instead of being ignored.
    let (code, err) = cairn_fails(&["--experimental-enable-distributed-tracing".into()]);
    assert_eq!(code, 1);
    assert!(
        err.contains("not supported by this version of cairn"),
        "{err}"
    );
}

#[test]
fn refuses_unimportable_and_foreign_data_dirs_untouched() {
    // A directory laid out as etcd's (`member/`) that etcd did not write: no WAL. (Real
    // etcd directories are imported: tests/etcd_dir.rs.)
    let etcdlike = tempfile::tempdir().unwrap();
    let data = etcdlike.path().join("data");
    std::fs::create_dir_all(data.join("member/snap")).unwrap();
    std::fs::write(data.join("member/snap/db"), "not a bbolt file").unwrap();
    let before = tree(&data);
    let port = free_port();
    let (code, err) = cairn_fails(&[
        format!("--data-dir={}", data.display()),
        format!("--listen-client-urls=http://127.0.0.1:{port}"),
    ]);
    assert_ne!(code, 0);
    assert!(
        err.contains("cannot import etcd data directory")
            && err.contains("member/wal is missing")
            && err.contains("nothing was written"),
        "{err}"
    );
    assert_eq!(tree(&data), before, "cairn changed the directory");

    // A directory with something else in it.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "mine").unwrap();
    let before = tree(dir.path());
    let (code, err) = cairn_fails(&[
        format!("--data-dir={}", dir.path().display()),
        format!("--listen-client-urls=http://127.0.0.1:{port}"),
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("not a cairn data directory"), "{err}");
    assert_eq!(tree(dir.path()), before);
}

#[test]
fn member_and_cluster_ids_match_etcd() {
    let peer = format!("http://127.0.0.1:{}", free_port());
    let flags = [
        format!("--initial-advertise-peer-urls={peer}"),
        format!("--listen-peer-urls={peer}"),
        format!("--initial-cluster=m1={peer}"),
        "--initial-cluster-token=tok-42".to_string(),
    ];
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let status = |s: &ServerProc| {
        let r = etcdctl35(&s.endpoint(), &["endpoint", "status", "-w", "json"]);
        let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        let h = v[0]["Status"]["header"].clone();
        (
            h["member_id"].as_u64().unwrap(),
            h["cluster_id"].as_u64().unwrap(),
        )
    };
    let mut etcd = ServerProc::start(Kind::Etcd35, &flags);
    let want = status(&etcd);
    etcd.stop();
    let mut cairn = ServerProc::start(Kind::Cairn, &flags);
    assert_eq!(status(&cairn), want);
    // Stable across a restart.
    cairn.stop();
    cairn.spawn();
    assert_eq!(status(&cairn), want);
}

#[test]
fn periodic_auto_compaction_keeps_the_window() {
    let cairn = ServerProc::start(
        Kind::Cairn,
        &[
            "--auto-compaction-mode=periodic",
            "--auto-compaction-retention=1s",
        ],
    );
    let ep = cairn.endpoint();
    for i in 0..5 {
        assert_eq!(etcdctl35(&ep, &["put", "k", &i.to_string()]).code, 0);
    }
    // Within a few windows, history older than the window is compacted away.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let r = etcdctl35(&ep, &["get", "k", "--rev=2"]);
        if r.stderr.contains("required revision has been compacted") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never compacted: {r:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(cairn.log_text().contains("completed auto compaction"));
    // The latest value is kept.
    let r = etcdctl35(&ep, &["get", "k", "--print-value-only"]);
    assert_eq!(r.stdout, "4\n");
}

/// Every flag real etcd 3.5.1 lists in `--help`, with the default value it shows.
fn etcd_flags_and_defaults() -> Vec<(String, String)> {
    let help = Command::new(tool("etcd-3.5"))
        .arg("--help")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&help.stdout).into_owned() + &String::from_utf8_lossy(&help.stderr);
    let mut flags = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.trim_start().strip_prefix("--") else {
            continue;
        };
        if !line.starts_with("  --") {
            continue;
        }
        let (name, value) = match rest.split_once(' ') {
            Some((name, value)) => (name, value.trim().trim_matches('\'').to_string()),
            None => (rest, String::new()),
        };
        flags.push((name.to_string(), value));
    }
    flags
}

#[test]
fn every_etcd_flag_is_accepted_at_its_default() {
    // Before: 44 of etcd 3.5.1's 90 server flags stopped cairn as unknown
    // (--experimental-initial-corrupt-check, --grpc-keepalive-*, --socket-reuse-port, ...),
    // so unit files and config files written for etcd did not start it.
    let flags = etcd_flags_and_defaults();
    assert!(flags.len() >= 85, "read too few flags: {flags:?}");
    // The harness gives each member its own name, directory and URLs.
    let own = [
        "name",
        "data-dir",
        "listen-client-urls",
        "advertise-client-urls",
        "listen-peer-urls",
        "initial-advertise-peer-urls",
        "initial-cluster",
        "config-file",
        "help",
        "version",
    ];
    let args: Vec<String> = flags
        .iter()
        .filter(|(name, _)| !own.contains(&name.as_str()))
        .map(|(name, value)| {
            // etcd shows this one's default only in the text.
            let value = if name == "experimental-bootstrap-defrag-threshold-megabytes" {
                "0"
            } else {
                value
            };
            format!("--{name}={value}")
        })
        .collect();
    let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let cairn = ServerProc::start(Kind::Cairn, &arg_refs);
    let put = etcdctl35(&cairn.endpoint(), &["put", "k", "v"]);
    assert_eq!(put.stdout, "OK\n", "{put:?}");

    // Each one that needs work cairn lacks names itself when set otherwise.
    for (flag, value) in [
        ("--discovery-srv", "example.com"),
        ("--proxy", "on"),
        ("--experimental-enable-distributed-tracing", "true"),
    ] {
        let (code, err) = cairn_fails(&[format!("{flag}={value}")]);
        assert_eq!(code, 1, "{flag}: {err}");
        assert!(
            err.contains(&format!("{flag} is not supported by this version of cairn")),
            "{flag}: {err}"
        );
    }
    let (code, err) = cairn_fails(&["--grpc-keepalive-timeout=soon".into()]);
    assert_eq!(code, 1);
    assert!(
        err.contains("invalid value \"soon\" for flag -grpc-keepalive-timeout"),
        "{err}"
    );
}

/// Each flag a `--help` text lists, with the heading it is under (`None` above the first).
fn flags_by_heading(help: &str) -> Vec<(String, Option<String>)> {
    let mut heading = None;
    let mut flags = Vec::new();
    for line in help.lines() {
        if !line.starts_with(' ') && line.ends_with(':') {
            heading = Some(line.trim_end_matches(':').to_string());
        } else if let Some(rest) = line.trim_start().strip_prefix("--") {
            let name = rest
                .split([' ', '=', '['])
                .next()
                .unwrap_or_default()
                .to_string();
            flags.push((name, heading.clone()));
        }
    }
    flags
}

fn help_text(bin: &std::path::Path) -> String {
    let out = Command::new(bin).arg("--help").output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

#[test]
fn cairn_help_lists_etcds_flags_under_etcds_headings_in_etcds_order() {
    let etcd = flags_by_heading(&help_text(&tool("etcd-3.5")));
    let cairn = flags_by_heading(&help_text(&workspace_bin("cairn")));
    let etcd_grouped: Vec<_> = etcd.iter().filter(|(_, h)| h.is_some()).collect();
    assert!(etcd_grouped.len() >= 85, "read too few flags: {etcd:?}");
    for (flag, heading) in &etcd_grouped {
        let found = cairn.iter().find(|(f, _)| f == flag);
        assert_eq!(
            found.map(|(_, h)| h),
            Some(heading),
            "--{flag} in cairn --help"
        );
    }
    // etcd's flags come in etcd's order in cairn's help (cairn's extra ones in between).
    let order: Vec<&String> = cairn
        .iter()
        .filter(|(f, _)| etcd_grouped.iter().any(|(e, _)| e == f))
        .map(|(f, _)| f)
        .collect();
    let want: Vec<&String> = etcd_grouped.iter().map(|(f, _)| f).collect();
    assert_eq!(order, want);
}

/// `--enable-log-rotation` is checked as etcd 3.5.1 checks it (the same refusals, in its
/// words), and the log file rotates: past `maxsize` MB it is renamed to a backup named
/// after the moment (`m-2006-01-02T15-04-05.000.log`), a new one started, `maxbackups`
/// kept; no line is torn.
#[test]
fn log_rotation_is_checked_as_etcd_checks_it_and_rotates_the_log_file() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("m.log");
    let one = format!("--log-outputs={}", log.display());
    let two = format!("{one},{}", dir.path().join("n.log").display());
    let on = "--enable-log-rotation".to_string();
    for args in [
        vec![on.clone()],
        vec![on.clone(), two],
        vec![
            on.clone(),
            one.clone(),
            "--log-rotation-config-json={bad".into(),
        ],
        vec![
            on.clone(),
            one.clone(),
            r#"--log-rotation-config-json={"maxsize":"x"}"#.into(),
        ],
    ] {
        let data = dir.path().join("etcd-data");
        let out = Command::new(tool("etcd-3.5"))
            .args(&args)
            .arg(format!("--data-dir={}", data.display()))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let refusal: serde_json::Value = stderr
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .find(|l: &serde_json::Value| l["msg"] == "failed to verify flags")
            .unwrap_or_else(|| panic!("etcd took {args:?}: {stderr}"));
        let want = refusal["error"].as_str().unwrap();
        let (code, err) = cairn_fails(&args);
        assert_eq!(code, 1, "{args:?}: {err}");
        assert_eq!(err.trim_end(), format!("cairn: {want}"), "{args:?}");
    }

    // 1 MB files, one backup: about 2.6 MB of log lines (a malformed HTTP request is one
    // debug line each) make two rotations, the older backup removed.
    let rotation = r#"--log-rotation-config-json={"maxsize":1,"maxbackups":1}"#;
    // Its log goes to the file, not to the stderr a start waits on: wait for /health.
    let mut cairn = ServerProc::new(
        Kind::Cairn,
        "m1",
        free_port(),
        &[&on, &one, rotation, "--log-level=debug"],
    );
    let _ready = cairn.spawn_nowait();
    cairn_tests::wait::wait_until(Duration::from_secs(30), "cairn to serve", || {
        match std::net::TcpStream::connect(("127.0.0.1", cairn.client_port)) {
            Ok(_) => match http_get(cairn.client_port, "/health") {
                (200, _) => Ok(()),
                other => Err(format!("{other:?}")),
            },
            Err(e) => Err(e.to_string()),
        }
    });
    cairn_tests::wait::wait_until(
        Duration::from_secs(10),
        "the start logged to the file",
        || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            match text.contains("ready to serve client requests") {
                true => Ok(()),
                false => Err(text.len()),
            }
        },
    );
    for _ in 0..18_000 {
        use std::io::{Read, Write};
        let mut c = std::net::TcpStream::connect(("127.0.0.1", cairn.client_port)).unwrap();
        c.write_all(b"garbage\r\n\r\n").unwrap();
        // Read to the end: cairn closes first, so its side keeps the TIME_WAIT and the
        // loop leaves no ports of this machine's ephemeral range held.
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = c.read_to_end(&mut Vec::new());
    }
    let files = || -> Vec<(String, u64)> {
        let mut f: Vec<(String, u64)> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.file_type().unwrap().is_file())
            .map(|e| {
                (
                    e.file_name().into_string().unwrap(),
                    e.metadata().unwrap().len(),
                )
            })
            .collect();
        f.sort();
        f
    };
    let seen =
        cairn_tests::wait::wait_until(Duration::from_secs(20), "the log to rotate twice", || {
            let f = files();
            let backups: Vec<_> = f.iter().filter(|(n, _)| n.starts_with("m-")).collect();
            // The first file, with the start's lines, was a backup and is gone.
            let started_gone = f.iter().all(|(n, _)| {
                let text = std::fs::read_to_string(dir.path().join(n)).unwrap_or_default();
                !text.contains("ready to serve client requests")
            });
            let rotated_twice = backups.len() == 1 && started_gone;
            match rotated_twice && std::fs::read_to_string(&log).unwrap().len() < 1 << 20 {
                true => Ok(f),
                false => Err(f),
            }
        });
    drop(cairn);
    let backup = &seen.iter().find(|(n, _)| n.starts_with("m-")).unwrap().0;
    let stamp = backup
        .strip_prefix("m-")
        .unwrap()
        .strip_suffix(".log")
        .unwrap();
    let shape: String = stamp
        .chars()
        .map(|c| if c.is_ascii_digit() { 'd' } else { c })
        .collect();
    assert_eq!(shape, "dddd-dd-ddTdd-dd-dd.ddd", "{backup}");
    for name in [backup.as_str(), "m.log"] {
        let text = std::fs::read_to_string(dir.path().join(name)).unwrap();
        assert!(text.len() as u64 <= 1 << 20, "{name}: {}", text.len());
        for line in text.lines() {
            let parsed: Result<serde_json::Value, _> = serde_json::from_str(line);
            assert!(parsed.is_ok(), "{name}: a torn line {line:?}");
        }
    }
    let backup_len = std::fs::metadata(dir.path().join(backup)).unwrap().len();
    assert!(
        backup_len > (1 << 20) - 1000,
        "{backup}: {backup_len} bytes"
    );
}
