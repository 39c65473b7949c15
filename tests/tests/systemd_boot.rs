//! cairn's Debian package and systemd unit under a real systemd: PID 1 of a throwaway
//! container made from this machine's own root ([`SystemdContainer`]), so the test runs on
//! a CI runner or sandbox where systemd is not PID 1, and leaves the machine as it was.
//!
//! The package that `packaging/build-deb` makes is installed with a real `dpkg -i`, started
//! with `systemctl enable --now` (Type=notify: the start returns once cairn said
//! `READY=1`), used with cairnctl and etcdctl, its hardening checked on the running
//! process, its journal entries compared with etcd 3.5.1's run the same way, frozen with
//! SIGSTOP until systemd's watchdog kills and restarts it, stopped (`STOPPING=1`, exit 0)
//! and purged.
//!
//! One thing differs in a container here from a real host: this sandbox runs everything
//! without CAP_SYS_RESOURCE and with a hard limit of open files below the unit's
//! `LimitNOFILE=65536`, so systemd gives cairn the closest limit it may (the hard limit);
//! the test expects 65536 wherever the container's systemd may raise the limit.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use cairn_tests::container::{SystemdContainer, SHARE_INSIDE};
use cairn_tests::{tool, wait_until, workspace_bin};
use serde_json::{Map, Value};

type Entry = Map<String, Value>;

/// Builds the package from the workspace's debug binaries into `dir`; its file name.
fn build_deb(dir: &Path) -> String {
    let bins = workspace_bin("cairn").parent().unwrap().to_path_buf();
    let out = Command::new(cairn_tests::repo_root().join("packaging/build-deb"))
        .arg(dir)
        .env("CAIRN_BIN_DIR", &bins)
        // dpkg-deb's own setting: an uncompressed data.tar (xz takes most of a minute of
        // CPU on the debug binaries and changes nothing dpkg -i does with them).
        .env("DPKG_DEB_COMPRESSOR_TYPE", "none")
        .output()
        .unwrap();
    assert!(out.status.success(), "build-deb failed: {out:?}");
    let deb = String::from_utf8(out.stdout).unwrap();
    let deb = Path::new(deb.trim());
    assert_eq!(deb.parent(), Some(dir), "{deb:?}");
    deb.file_name().unwrap().to_str().unwrap().to_string()
}

/// `systemctl show` of `props` for `unit`.
fn show(c: &SystemdContainer, unit: &str, props: &[&str]) -> BTreeMap<String, String> {
    let out = c.sh(&format!("systemctl show -p {} {unit}", props.join(",")));
    out.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn main_pid(c: &SystemdContainer) -> u32 {
    let pid: u32 = show(c, "cairn", &["MainPID"])["MainPID"].parse().unwrap();
    assert_ne!(pid, 0, "cairn is not running");
    pid
}

fn text(e: &Entry, field: &str) -> String {
    match e.get(field) {
        Some(Value::String(s)) => s.clone(),
        other => panic!("{field} is {other:?} in {e:?}"),
    }
}

/// systemd's own journal entries about `unit` (PID 1's, with `UNIT=`).
fn manager_says(c: &SystemdContainer, unit: &str) -> Vec<String> {
    c.journal(&["_PID=1", &format!("UNIT={unit}")])
        .iter()
        .map(|e| text(e, "MESSAGE"))
        .collect()
}

/// Waits (at most 30 s) until systemd has logged a line about `unit` containing `what`.
fn wait_manager_says(c: &SystemdContainer, unit: &str, what: &str) {
    wait_until(
        Duration::from_secs(30),
        format!("systemd to log {what:?} about {unit}"),
        || {
            let said = manager_says(c, unit);
            if said.iter().any(|m| m.contains(what)) {
                Ok(())
            } else {
                Err(said.into_iter().rev().take(5).collect::<Vec<_>>())
            }
        },
    );
}

/// A line of /proc/PID/status: the value after `Name:`.
fn status_field(status: &str, name: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no {name} in\n{status}"))
        .trim()
        .to_string()
}

/// The soft limit of open files from /proc/PID/limits.
fn open_files_limit(limits: &str) -> u64 {
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    line.split_whitespace().nth(3).unwrap().parse().unwrap()
}

#[test]
fn the_debian_package_runs_as_a_notify_service_under_a_real_systemd() {
    let c = SystemdContainer::boot();
    let deb = build_deb(c.share());

    // Installed with a real dpkg: the maintainer scripts make the user and the data
    // directory; the service is neither enabled nor started.
    c.sh(&format!("dpkg -i {SHARE_INSIDE}/{deb}"));
    let installed = show(
        &c,
        "cairn",
        &["LoadState", "UnitFileState", "ActiveState", "Type"],
    );
    assert_eq!(installed["LoadState"], "loaded");
    assert_eq!(installed["UnitFileState"], "disabled");
    assert_eq!(installed["ActiveState"], "inactive");
    assert_eq!(installed["Type"], "notify");
    let uid = c.sh("id -u cairn").trim().to_string();
    assert_eq!(c.sh("stat -c '%U %a' /var/lib/cairn").trim(), "cairn 700");

    // The operator's steps: choose the journal in /etc/default/cairn, then enable and start.
    c.sh(
        "sed -i 's|^#ETCD_LOG_OUTPUTS=default$|ETCD_LOG_OUTPUTS=systemd/journal|' \
         /etc/default/cairn && grep -qx ETCD_LOG_OUTPUTS=systemd/journal /etc/default/cairn",
    );
    // A file in the container's /tmp, which the service's private /tmp must not show.
    c.sh("touch /tmp/outside-the-service");
    // Bounded: a unit that never says READY=1 would keep `systemctl start` waiting
    // (TimeoutStartSec=infinity, as a member may wait for its quorum).
    c.sh("timeout 120 systemctl enable --now cairn");
    let started = show(
        &c,
        "cairn",
        &[
            "ActiveState",
            "SubState",
            "StatusText",
            "MainPID",
            "UnitFileState",
        ],
    );
    assert_eq!(started["ActiveState"], "active", "{started:?}");
    assert_eq!(started["SubState"], "running", "{started:?}");
    assert_eq!(started["UnitFileState"], "enabled", "{started:?}");
    let pid = main_pid(&c);

    // Type=notify: systemd logged the start done only after cairn said it serves clients
    // (a Type=simple unit is "started" as soon as the process is forked).
    let both = c.journal(&["SYSLOG_IDENTIFIER=cairn", "SYSLOG_IDENTIFIER=systemd"]);
    let ready = both
        .iter()
        .position(|e| {
            text(e, "SYSLOG_IDENTIFIER") == "cairn"
                && text(e, "MESSAGE").contains(r#""msg":"ready to serve client requests""#)
        })
        .expect("cairn's ready line in the journal");
    let done = both
        .iter()
        .position(|e| {
            e.get("UNIT") == Some(&Value::from("cairn.service"))
                && e.get("JOB_TYPE") == Some(&Value::from("start"))
                && e.get("JOB_RESULT") == Some(&Value::from("done"))
        })
        .expect("systemd's start job done in the journal");
    assert!(
        ready < done,
        "systemd finished the start before cairn was ready"
    );

    // cairnctl and etcdctl reach it on its default client URL.
    let etcdctl = tool_inside(&c, "etcdctl-3.5");
    for ctl in ["cairnctl", etcdctl.as_str()] {
        let health = c.run(&[ctl, "endpoint", "health"]);
        assert!(
            health.code == 0
                && health
                    .stdout
                    .starts_with("127.0.0.1:2379 is healthy: successfully committed proposal"),
            "{ctl}: {health:?}"
        );
    }
    c.sh(&format!("{etcdctl} put installed yes"));
    assert_eq!(c.sh("cairnctl get installed"), "installed\nyes\n");

    hardening_is_in_force(&c, pid, &uid);
    journal_entries_are_etcds(&c, &uid);
    the_watchdog_restarts_a_frozen_member(&c);
    a_stop_is_clean(&c);
    a_member_waiting_for_its_quorum_is_activating(&c);
    the_purge_removes_the_package(&c);

    // The machine is as it was: no process, mount or cgroup of the container is left.
    let (cgroup, pid1) = (c.cgroup().to_path_buf(), c.pid1());
    let state = c.state_dir().display().to_string();
    drop(c);
    assert!(!cgroup.exists(), "{} is left", cgroup.display());
    let comm = std::fs::read_to_string(format!("/proc/{pid1}/comm")).unwrap_or_default();
    assert_ne!(comm.trim(), "systemd", "the container's PID 1 is left");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&state), "a mount is left:\n{mounts}");
}

/// Every hardening option of the unit, seen on the running service: its credentials,
/// capabilities, seccomp filter, umask and limits in /proc, its view of the file system
/// from inside its mount namespace, and no complaint from systemd about the unit.
fn hardening_is_in_force(c: &SystemdContainer, pid: u32, uid: &str) {
    let status = c.sh(&format!("cat /proc/{pid}/status"));
    let uids = status_field(&status, "Uid");
    assert!(
        uids.split_whitespace().all(|u| u == uid),
        "User=cairn: {uids}"
    );
    // (NoNewPrivs and Seccomp also follow from the other seccomp-based options, e.g.
    // MemoryDenyWriteExecute=; each is shown in effect, not each alone.)
    for (field, want, option) in [
        ("NoNewPrivs", "1", "NoNewPrivileges=yes"),
        ("Seccomp", "2", "SystemCallFilter="),
        ("CapEff", "0000000000000000", "CapabilityBoundingSet="),
        ("CapBnd", "0000000000000000", "CapabilityBoundingSet="),
        ("CapAmb", "0000000000000000", "AmbientCapabilities="),
        ("Umask", "0077", "UMask=0077"),
    ] {
        assert_eq!(status_field(&status, field), want, "{option}");
    }

    // LimitNOFILE=65536, or the closest limit systemd may set when it cannot raise the
    // hard limit (no CAP_SYS_RESOURCE, as in this sandbox).
    let pid1_status = c.sh("cat /proc/1/status");
    let pid1_caps = u64::from_str_radix(&status_field(&pid1_status, "CapEff"), 16).unwrap();
    const CAP_SYS_RESOURCE: u32 = 24;
    let want = if pid1_caps & (1 << CAP_SYS_RESOURCE) != 0 {
        65_536
    } else {
        let pid1_limits = c.sh("cat /proc/1/limits");
        let hard: u64 = pid1_limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .and_then(|l| l.split_whitespace().nth(4))
            .unwrap()
            .parse()
            .unwrap();
        hard.min(65_536)
    };
    let limits = c.sh(&format!("cat /proc/{pid}/limits"));
    assert_eq!(open_files_limit(&limits), want, "LimitNOFILE=65536");

    // The service's own mount namespace.
    let inside = |cmd: &str| c.run(&["sh", "-c", &format!("nsenter -t {pid} -m {cmd}")]);
    let options = |path: &str| {
        let run = inside(&format!("findmnt -no OPTIONS -T {path}"));
        assert_eq!(run.code, 0, "{path}: {run:?}");
        run.stdout.trim().to_string()
    };
    for path in ["/", "/usr", "/etc", "/var/lib"] {
        assert!(
            options(path).split(',').any(|o| o == "ro"),
            "ProtectSystem=strict: {path} is {}",
            options(path)
        );
    }
    assert!(
        options("/var/lib/cairn").split(',').any(|o| o == "rw"),
        "ReadWritePaths=/var/lib/cairn"
    );
    assert!(
        options("/proc")
            .split(',')
            .any(|o| o == "hidepid=invisible"),
        "ProtectProc=invisible: {}",
        options("/proc")
    );
    // Checks that hold in the container itself (run as root there, asserted below) and
    // must not hold in the service's namespace.
    let checks = [
        ("test -e /tmp/outside-the-service", "PrivateTmp=yes"),
        ("test -e /dev/console", "PrivateDevices=yes"),
        (r#"test -n "$(ls -A /root)""#, "ProtectHome=yes"),
        (
            "findmnt -no OPTIONS /sys/fs/cgroup | grep -qw rw",
            "ProtectControlGroups=yes",
        ),
        ("! findmnt /proc/kmsg >/dev/null", "ProtectKernelLogs=yes"),
    ];
    for (check, option) in checks {
        c.sh(check);
        let seen = c.run(&["nsenter", "-t", &pid.to_string(), "-m", "sh", "-c", check]);
        assert_ne!(
            seen.code, 0,
            "{option}: `{check}` holds in the service: {seen:?}"
        );
    }

    // ProtectHostname=yes: a UTS namespace of its own.
    let uts = c.sh(&format!("readlink /proc/1/ns/uts /proc/{pid}/ns/uts"));
    let uts: Vec<&str> = uts.lines().collect();
    assert_ne!(uts[0], uts[1], "ProtectHostname=yes");

    // systemd accepted every option: nothing about the unit at warning or worse.
    let complaints: Vec<String> = c
        .journal(&["_PID=1", "-p", "warning"])
        .iter()
        .map(|e| text(e, "MESSAGE"))
        .filter(|m| m.contains("cairn"))
        .collect();
    assert!(complaints.is_empty(), "{complaints:?}");
}

/// cairn's journal entries (`--log-outputs=systemd/journal` from /etc/default/cairn)
/// carry what etcd 3.5.1's carry when it runs as a unit with the same setting.
fn journal_entries_are_etcds(c: &SystemdContainer, uid: &str) {
    let etcd = tool_inside(c, "etcd-3.5");
    c.sh(&format!(
        "systemd-run --unit=etcd35 -p Type=notify -p StateDirectory=etcd35 {etcd} \
         --data-dir=/var/lib/etcd35/data \
         --listen-client-urls=http://127.0.0.1:2479 --advertise-client-urls=http://127.0.0.1:2479 \
         --listen-peer-urls=http://127.0.0.1:2480 \
         --initial-advertise-peer-urls=http://127.0.0.1:2480 \
         --initial-cluster=default=http://127.0.0.1:2480 --log-outputs=systemd/journal"
    ));
    let props = ["Type", "ActiveState", "SubState", "StatusText"];
    assert_eq!(show(c, "etcd35", &props), show(c, "cairn", &props));

    // Both write an info line and the insecure-port warning once they serve.
    let entries = |ident: &str| {
        wait_until(
            Duration::from_secs(30),
            format!("{ident}'s info and warn entries"),
            || {
                let got = c.journal(&[&format!("SYSLOG_IDENTIFIER={ident}")]);
                let levels: Vec<String> = got.iter().map(level).collect();
                if levels.iter().any(|l| l == "info") && levels.iter().any(|l| l == "warn") {
                    Ok(got)
                } else {
                    Err(levels)
                }
            },
        )
    };
    let etcd_entries = entries("etcd");
    let cairn_entries = entries("cairn");
    c.sh("systemctl stop etcd35");

    let shape = |entries: &[Entry], program: &str| {
        let mut priorities = BTreeMap::new();
        for e in entries {
            let fields: Vec<&str> = e
                .keys()
                .map(String::as_str)
                .filter(|k| !k.starts_with('_'))
                .collect();
            assert_eq!(
                fields,
                ["MESSAGE", "PACKAGE", "PRIORITY", "SYSLOG_IDENTIFIER"],
                "{program}: {e:?}"
            );
            assert_eq!(text(e, "SYSLOG_IDENTIFIER"), program);
            assert_eq!(text(e, "_TRANSPORT"), "journal", "{e:?}");
            let message = text(e, "MESSAGE");
            assert!(message.ends_with("}\n"), "{program}: {message:?}");
            let line: Value = serde_json::from_str(&message).unwrap();
            for key in ["level", "ts", "caller", "msg"] {
                assert!(line.get(key).is_some(), "{program}: {key} in {message}");
            }
            let caller = line["caller"].as_str().unwrap();
            assert_eq!(
                text(e, "PACKAGE"),
                caller.rsplit_once('/').unwrap().0,
                "{program}: PACKAGE is the caller's directory"
            );
            priorities.insert(level(e), text(e, "PRIORITY"));
        }
        priorities
    };
    let etcd_priorities = shape(&etcd_entries, "etcd");
    let cairn_priorities = shape(&cairn_entries, "cairn");
    for (level, priority) in &cairn_priorities {
        if let Some(etcd) = etcd_priorities.get(level) {
            assert_eq!(priority, etcd, "PRIORITY of a {level} entry");
        }
    }
    assert!(cairn_priorities.contains_key("info") && cairn_priorities.contains_key("warn"));
    // The entries are the service's (journald knows them by their sender), and nothing
    // went to stdout or stderr: the journal replaces them, as in etcd.
    assert!(cairn_entries
        .iter()
        .all(|e| text(e, "_SYSTEMD_UNIT") == "cairn.service" && text(e, "_UID") == uid));
    assert_eq!(
        c.journal(&["_SYSTEMD_UNIT=cairn.service", "_TRANSPORT=stdout"]),
        Vec::<Entry>::new()
    );
}

/// The level in an entry's JSON line.
fn level(e: &Entry) -> String {
    let line: Value = serde_json::from_str(&text(e, "MESSAGE")).unwrap();
    line["level"].as_str().unwrap().to_string()
}

/// The watchdog interval the test sets in a drop-in (the unit's 30 s would make a slow
/// test); cairn pings every half of it, so a loaded machine has seconds of slack.
const WATCHDOG_SECS: u64 = 5;

/// With `WatchdogSec=` [`WATCHDOG_SECS`], cairn pings the watchdog; frozen by SIGSTOP, it
/// is killed by systemd with SIGABRT and restarted (`Restart=on-failure`, `RestartSec=5s`),
/// and serves its acknowledged writes again.
fn the_watchdog_restarts_a_frozen_member(c: &SystemdContainer) {
    c.sh(&format!(
        "mkdir -p /etc/systemd/system/cairn.service.d && \
         printf '[Service]\\nWatchdogSec={WATCHDOG_SECS}s\\n' \
           >/etc/systemd/system/cairn.service.d/watchdog.conf && \
         systemctl daemon-reload && timeout 120 systemctl restart cairn"
    ));
    let pid = main_pid(c);
    assert_eq!(
        show(c, "cairn", &["WatchdogUSec"])["WatchdogUSec"],
        format!("{WATCHDOG_SECS}s")
    );
    let environ = c.sh(&format!("tr '\\0' '\\n' </proc/{pid}/environ"));
    for var in [
        format!("WATCHDOG_USEC={}", WATCHDOG_SECS * 1_000_000),
        format!("WATCHDOG_PID={pid}"),
        "NOTIFY_SOCKET=/run/systemd/notify".to_string(),
    ] {
        assert!(environ.lines().any(|l| l == var), "{var} not in\n{environ}");
    }
    // systemd logs each notification at debug level.
    c.sh("systemctl log-level debug");
    let ping = format!("Got notification message from PID {pid} (WATCHDOG=1)");
    wait_until(Duration::from_secs(30), "two watchdog pings", || {
        let n = manager_says(c, "cairn.service")
            .iter()
            .filter(|m| m.contains(&ping))
            .count();
        if n >= 2 {
            Ok(())
        } else {
            Err(n)
        }
    });
    // Back to info: a process systemd forks logs at debug level before it execs, and
    // journald would file the next entries of that pid under systemd's own unit.
    c.sh("systemctl log-level info");

    let etcdctl = tool_inside(c, "etcdctl-3.5");
    c.sh(&format!("{etcdctl} put before-the-freeze acknowledged"));
    c.sh(&format!("kill -STOP {pid}"));
    let restarted = wait_until(
        Duration::from_secs(60),
        "systemd to restart the frozen member",
        || {
            let now = show(c, "cairn", &["NRestarts", "ActiveState", "MainPID"]);
            let new_pid: u32 = now["MainPID"].parse().unwrap();
            if now["NRestarts"] == "1"
                && now["ActiveState"] == "active"
                && new_pid != 0
                && new_pid != pid
            {
                Ok(new_pid)
            } else {
                Err(now)
            }
        },
    );
    let said = manager_says(c, "cairn.service");
    for line in [
        format!("Watchdog timeout (limit {WATCHDOG_SECS}s)!"),
        format!("Killing process {pid} (cairn) with signal SIGABRT."),
        "status=6/ABRT".to_string(),
        "Failed with result 'watchdog'.".to_string(),
    ] {
        assert!(
            said.iter().any(|m| m.contains(&line)),
            "{line:?} not in {said:#?}"
        );
    }
    c.sh(&format!("test ! -e /proc/{pid}"));
    assert_eq!(main_pid(c), restarted);
    assert_eq!(
        c.sh("cairnctl get before-the-freeze"),
        "before-the-freeze\nacknowledged\n"
    );
}

/// `systemctl stop`: cairn says `STOPPING=1` and exits 0.
fn a_stop_is_clean(c: &SystemdContainer) {
    let pid = main_pid(c);
    c.sh("systemctl log-level debug");
    c.sh("systemctl stop cairn");
    let stopped = show(c, "cairn", &["ActiveState", "SubState"]);
    assert_eq!(stopped["ActiveState"], "inactive", "{stopped:?}");
    assert_eq!(stopped["SubState"], "dead", "{stopped:?}");
    wait_manager_says(
        c,
        "cairn.service",
        &format!("Got notification message from PID {pid} (STOPPING=1)"),
    );
    wait_manager_says(
        c,
        "cairn.service",
        "Main process exited, code=exited, status=0/SUCCESS",
    );
    c.sh("systemctl log-level info");
    let said: Vec<String> = c
        .journal(&["SYSLOG_IDENTIFIER=cairn", &format!("_PID={pid}")])
        .iter()
        .map(|e| serde_json::from_str::<Value>(&text(e, "MESSAGE")).unwrap()["msg"].to_string())
        .collect();
    for msg in [
        "\"received signal; shutting down\"",
        "\"stopped serving client traffic\"",
    ] {
        assert!(said.iter().any(|m| m == msg), "{msg} not in {said:?}");
    }
}

/// A member of a two-member cluster whose other member is not up yet stays `activating`
/// (it has not said `READY=1`: no leader, no serving); it becomes `active` once the other
/// member, started as a second unit, makes a quorum.
fn a_member_waiting_for_its_quorum_is_activating(c: &SystemdContainer) {
    let cluster = "m1=http://127.0.0.1:2380,m2=http://127.0.0.1:2480";
    c.sh(&format!(
        "cat >>/etc/default/cairn <<'EOF'
ETCD_NAME=m1
ETCD_DATA_DIR=/var/lib/cairn/m1
ETCD_INITIAL_CLUSTER={cluster}
ETCD_LISTEN_PEER_URLS=http://127.0.0.1:2380
ETCD_INITIAL_ADVERTISE_PEER_URLS=http://127.0.0.1:2380
ETCD_LISTEN_CLIENT_URLS=http://127.0.0.1:2379
ETCD_ADVERTISE_CLIENT_URLS=http://127.0.0.1:2379
EOF"
    ));
    c.sh("systemctl start --no-block cairn");
    let pid = wait_until(Duration::from_secs(30), "m1 to be started", || {
        let now = show(c, "cairn", &["MainPID", "ActiveState"]);
        match now["MainPID"].parse::<u32>() {
            Ok(pid) if pid != 0 => Ok(pid),
            _ => Err(now),
        }
    });
    // It has opened its store and waits for m2 (its peer URL answers nothing yet).
    wait_until(Duration::from_secs(30), "m1 to start its raft node", || {
        let said: Vec<String> = c
            .journal(&["SYSLOG_IDENTIFIER=cairn", &format!("_PID={pid}")])
            .iter()
            .map(|e| text(e, "MESSAGE"))
            .collect();
        if said.iter().any(|m| m.contains("bootstrapped raft log")) {
            Ok(())
        } else {
            Err(said)
        }
    });
    let waiting = show(c, "cairn", &["ActiveState", "SubState"]);
    assert_eq!(
        (
            waiting["ActiveState"].as_str(),
            waiting["SubState"].as_str()
        ),
        ("activating", "start")
    );

    c.sh(&format!(
        "timeout 120 systemd-run --unit=cairn-m2 -p Type=notify -p StateDirectory=cairn-m2 \
         /usr/bin/cairn --name=m2 --data-dir=/var/lib/cairn-m2/data \
         --initial-cluster={cluster} \
         --listen-peer-urls=http://127.0.0.1:2480 \
         --initial-advertise-peer-urls=http://127.0.0.1:2480 \
         --listen-client-urls=http://127.0.0.1:2479 \
         --advertise-client-urls=http://127.0.0.1:2479"
    ));
    wait_until(Duration::from_secs(60), "m1 to become active", || {
        let now = show(c, "cairn", &["ActiveState", "SubState", "MainPID"]);
        if now["ActiveState"] == "active" && now["MainPID"] == pid.to_string() {
            Ok(())
        } else {
            Err(now)
        }
    });
    assert_eq!(
        c.sh("cairnctl member list -w simple | cut -d, -f3 | sort | tr '\\n' ' '"),
        " m1  m2 "
    );
    c.sh("systemctl stop cairn-m2");
}

/// `dpkg --purge` stops and disables the unit and removes the files, and keeps the data.
fn the_purge_removes_the_package(c: &SystemdContainer) {
    // Purged while it runs: the package's prerm stops and disables it.
    assert_eq!(show(c, "cairn", &["ActiveState"])["ActiveState"], "active");
    c.sh("dpkg --purge cairn");
    assert_eq!(
        show(c, "cairn", &["LoadState", "ActiveState"]),
        BTreeMap::from([
            ("ActiveState".to_string(), "inactive".to_string()),
            ("LoadState".to_string(), "not-found".to_string()),
        ])
    );
    for gone in [
        "/usr/bin/cairn",
        "/usr/bin/cairnctl",
        "/usr/lib/systemd/system/cairn.service",
        "/etc/systemd/system/multi-user.target.wants/cairn.service",
        "/etc/default/cairn",
        "/etc/cairn",
    ] {
        c.sh(&format!(
            "test ! -e {gone} || {{ echo {gone} is left; exit 1; }}"
        ));
    }
    // A key-value store's data is not the package's to delete.
    c.sh("test -f /var/lib/cairn/default/backend.redb");
}

/// A reference tool (`.tools/bin/NAME`, a link to the real `etcd` or `etcdctl`) where the
/// container can run it: copied into the shared directory under the real file's name (etcd
/// names itself in the journal after it), since the checkout may be under a path the
/// container does not see, such as `/tmp`, on which it mounts its own tmpfs.
fn tool_inside(c: &SystemdContainer, name: &str) -> String {
    let real = std::fs::canonicalize(tool(name)).unwrap();
    let file = real.file_name().unwrap();
    let outside = c.share().join(file);
    if !outside.exists() {
        std::fs::copy(&real, &outside).unwrap();
    }
    Path::new(SHARE_INSIDE).join(file).display().to_string()
}
