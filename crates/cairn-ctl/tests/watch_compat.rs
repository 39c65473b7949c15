//! `cairnctl watch` against `etcdctl watch` 3.5.1, byte for byte.
//!
//! Both run at the same time against one real etcd 3.5.1 (they run until stopped, so each
//! is bounded by `timeout`), while the test writes; stdout, stderr and the exit code must
//! be identical. The cases cover every `-w` format, `--hex`, `--prev-kv`, `--prefix`,
//! `--rev` (also below the compaction), argument errors, a command run per event after
//! `--`, `ETCDCTL_WATCH_KEY`/`ETCDCTL_WATCH_RANGE_END`, and interactive mode.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use cairn_tests::{etcdctl35, wait_until, Kind, ServerProc};

/// The server's count of watchers.
const WATCHERS: &str = "etcd_debugging_mvcc_watcher_total";
/// The server's count of watchers still catching up with history.
const CATCHING_UP: &str = "etcd_debugging_mvcc_slow_watcher_total";

/// One case: watch arguments, environment, interactive input script (shell), whether
/// the test writes while it runs, and whether the tool ends by itself (an argument error,
/// a compacted revision, a command after `--` that fails on the first event).
struct Case {
    args: &'static str,
    env: &'static [(&'static str, &'static str)],
    input: Option<&'static str>,
    writes: bool,
    ends: bool,
}

const fn case(args: &'static str) -> Case {
    Case {
        args,
        env: &[],
        input: None,
        writes: true,
        ends: false,
    }
}

/// A case whose tool ends by itself, before the writes.
const fn ends(args: &'static str) -> Case {
    Case {
        ends: true,
        ..case(args)
    }
}

fn spawn(bin: &Path, endpoint: &str, c: &Case) -> Child {
    let input = c.input.unwrap_or("true");
    // The shell gives `--` and quoted exec commands to the binary exactly as typed.
    let script = format!(
        "({input}) | timeout -s TERM 3 {} --endpoints={endpoint} watch {}",
        bin.display(),
        c.args
    );
    common::ctl_command("sh", None)
        .arg("-c")
        .arg(script)
        .envs(c.env.iter().copied())
        .stdin(Stdio::null())
        .spawn()
        .unwrap()
}

/// Spawns case `c` with `bin` against `etcd` and waits until it has settled: a case that
/// ends has ended; another has ended (and its watcher, if it made one, is gone), or the
/// server counts its watcher and has none left to catch up with history (it has been sent
/// its history, and gets every later write live).
///
/// A tool that ends after its watcher was counted (on a compacted revision, or when the
/// command after `--` fails) cannot be told by the count from one that watches on, and
/// the other tool, spawned next, would count that watcher as already there: such cases
/// are marked to end and are waited for by their exit alone.
fn spawn_settled(etcd: &ServerProc, bin: &Path, c: &Case) -> Child {
    let watchers = || etcd.metric(WATCHERS).unwrap_or(0.0) as usize;
    let before = watchers();
    let mut child = spawn(bin, &etcd.endpoint(), c);
    if c.ends {
        let what = format!("{} watch {} to end", bin.display(), c.args);
        wait_until(Duration::from_secs(10), what, || {
            match child.try_wait().unwrap() {
                Some(_) => Ok(()),
                None => Err("running".to_string()),
            }
        });
        return child;
    }
    let what = format!("{} watch {} to watch or end", bin.display(), c.args);
    wait_until(Duration::from_secs(10), what, || {
        let (now, catching_up) = (watchers(), etcd.metric(CATCHING_UP).unwrap_or(0.0));
        let settled = match child.try_wait().unwrap() {
            Some(_) => now == before,
            None => now > before && catching_up == 0.0,
        };
        if settled {
            Ok(())
        } else {
            Err(format!("{now} watchers, {catching_up} catching up"))
        }
    });
    child
}

/// Runs the real etcdctl against `endpoint`; it must succeed.
fn ctl(endpoint: &str, args: &[&str]) {
    let r = etcdctl35(endpoint, args);
    assert_eq!(r.code, 0, "etcdctl {args:?} failed: {r:?}");
}

fn finish(child: Child) -> (String, String, i32) {
    let out = child.wait_with_output().unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.code().unwrap_or(-1),
    )
}

#[test]
fn cairnctl_watch_prints_what_etcdctl_watch_prints() {
    let etcdctl = common::etcdctl();
    let cairnctl = common::cairnctl();
    let etcd = ServerProc::start(Kind::Etcd35, &[]);
    let ep = etcd.endpoint();
    // Revisions 2..=5, then a compaction at 3.
    for args in [
        &["put", "k", "v1"][..],
        &["put", "k2", "x"],
        &["put", "k", "v2"],
        &["del", "k2"],
        &["compaction", "3"],
    ] {
        ctl(&ep, args);
    }
    let interactive = "echo 'watch k --prev-kv'; sleep 1; echo progress; sleep 0.3; \
                       echo 'bogus cmd'; echo ''; echo watch; echo 'watch --rev 1 k'; \
                       echo 'watch k k3 --prefix'; sleep 1.2";
    let cases = [
        case("--rev=3 --prev-kv k"),
        case("-w json --rev=3 --prev-kv k"),
        case("-w fields --prev-kv --prefix k"),
        case("-w protobuf --rev=3 k"),
        case("-w table k"),
        case("--hex --prefix k"),
        ends("--rev=1 k"),
        ends("-w json --rev=1 k"),
        case("k k3"),
        case("''"),
        case("--prefix ''"),
        ends(""),
        ends("k k3 --prefix"),
        ends("k --"),
        ends("--rev=x k"),
        ends("--help"),
        case("--rev=3 k -- sh -c 'echo \"$ETCD_WATCH_REVISION $ETCD_WATCH_EVENT_TYPE $ETCD_WATCH_KEY $ETCD_WATCH_VALUE\"'"),
        ends("--rev=3 k -- false"),
        ends("--rev=3 k -- no-such-command x"),
        Case {
            env: &[("ETCDCTL_WATCH_KEY", "k")],
            ..case("--rev=3")
        },
        Case {
            env: &[("ETCDCTL_WATCH_KEY", "k")],
            ..ends("--rev=3 k")
        },
        Case {
            env: &[("ETCDCTL_WATCH_KEY", "k")],
            ..case("--rev=3 -- echo event")
        },
        Case {
            env: &[("ETCDCTL_WATCH_KEY", "k")],
            ..case("--rev=3 k -- echo event")
        },
        Case {
            env: &[("ETCDCTL_WATCH_KEY", "k"), ("ETCDCTL_WATCH_RANGE_END", "k3")],
            ..case("--rev=3")
        },
        Case {
            env: &[("ETCDCTL_WATCH_RANGE_END", "k3")],
            ..ends("--rev=3")
        },
        Case {
            input: Some(interactive),
            ..case("-i")
        },
        Case {
            input: Some(interactive),
            ..case("-i -w json")
        },
    ];
    let mut failures = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        // No watch is left from the last case. Then one tool and the other settle before
        // the writes, so that both see the same writes alike.
        etcd.wait_watchers(0);
        let want = spawn_settled(&etcd, &etcdctl, c);
        let got = spawn_settled(&etcd, &cairnctl, c);
        if c.writes {
            ctl(&ep, &["put", "k", &format!("case{i}")]);
            ctl(&ep, &["put", "k2", "y"]);
            ctl(&ep, &["del", "k"]);
        }
        let (want, got) = (finish(want), finish(got));
        // A case marked to end was not stopped by `timeout` (exit 124).
        assert!(
            !c.ends || want.2 != 124,
            "etcdctl watch {} was expected to end by itself: {want:?}",
            c.args
        );
        if want != got {
            failures.push(format!(
                "watch {} (env {:?}):\n etcdctl: {want:?}\n cairnctl: {got:?}",
                c.args, c.env
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A member killed and restarted under a running `watch` and `lease keep-alive`: etcdctl
/// keeps both going (the Go client opens the streams again), and so must cairnctl, where
/// the broken connection used to end the watch ("watch is canceled by the server") and the
/// keep-alive.
#[test]
fn watch_and_keep_alive_outlive_a_member_restart() {
    let mut server = ServerProc::start(Kind::Cairn, &[]);
    let ep = server.endpoint();
    let grant = etcdctl35(&ep, &["lease", "grant", "30"]);
    let lease = grant.stdout.split_whitespace().nth(1).unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let tools = [
        ("etcdctl", common::etcdctl()),
        ("cairnctl", common::cairnctl()),
    ];
    let mut running = Vec::new();
    for (name, bin) in &tools {
        for (what, args) in [
            ("watch", vec!["watch", "foo"]),
            ("keep", vec!["lease", "keep-alive", &lease]),
        ] {
            let path = dir.path().join(format!("{name}-{what}.out"));
            let child = common::ctl_command(bin, Some(&ep))
                .args(&args)
                .stdin(Stdio::null())
                .stdout(std::fs::File::create(&path).unwrap())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            running.push((format!("{name} {what}"), path, child));
        }
    }
    let text = |path: &Path| std::fs::read_to_string(path).unwrap_or_default();
    let keepalived = |path: &Path| text(path).matches("keepalived").count();
    // Whether every watch has printed `value` and every keep-alive renewed `n` times.
    let all_show = |n: usize, value: &str| -> Result<(), String> {
        for (label, path, _) in &running {
            let shown = if label.ends_with("watch") {
                text(path).contains(&format!("foo\n{value}\n"))
            } else {
                keepalived(path) >= n
            };
            if !shown {
                return Err(format!("{label} has not shown it yet: {:?}", text(path)));
            }
        }
        Ok(())
    };
    wait_until(Duration::from_secs(10), "both watchers to start", || {
        let n = server.metric(WATCHERS).unwrap_or(0.0) as usize;
        if n == 2 {
            Ok(())
        } else {
            Err(format!("{n} watchers"))
        }
    });
    ctl(&ep, &["put", "foo", "before"]);
    wait_until(
        Duration::from_secs(10),
        "the first event and renewal",
        || all_show(1, "before"),
    );
    let renewed: Vec<usize> = running.iter().map(|(_, p, _)| keepalived(p)).collect();
    server.kill9();
    server.spawn();
    ctl(&ep, &["put", "foo", "after"]);
    wait_until(
        Duration::from_secs(30),
        "the event and a renewal after the restart",
        || {
            all_show(1, "after")?;
            for ((label, path, _), before) in running.iter().zip(&renewed) {
                if label.ends_with("keep") && keepalived(path) <= *before {
                    return Err(format!("{label} renewed nothing since the restart"));
                }
            }
            Ok(())
        },
    );
    for (label, path, mut child) in running {
        assert_eq!(
            child.try_wait().unwrap(),
            None,
            "{label} ended: {:?}",
            text(&path)
        );
        let _ = child.kill();
        let _ = child.wait();
        if label.ends_with("watch") {
            assert_eq!(
                text(&path),
                "PUT\nfoo\nbefore\nPUT\nfoo\nafter\n",
                "{label}"
            );
        }
    }
}
