//! The server as a system service: readiness, watchdog and stop notifications to systemd
//! (a datagram socket in the test plays systemd), log entries in journald's native
//! protocol (a socket in the test plays journald), and the HTTP paths a load balancer or
//! a probe calls, side by side with etcd 3.5 and 3.4.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cairn_tests::wait::wait_until;
use cairn_tests::{free_port, http_get, tool, workspace_bin, Cluster, Kind, ServerProc};

/// A datagram socket bound in a fresh directory, playing systemd or journald.
struct Listener {
    _dir: tempfile::TempDir,
    path: String,
    sock: UnixDatagram,
}

impl Listener {
    fn bind() -> Listener {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sock").display().to_string();
        let sock = UnixDatagram::bind(&path).unwrap();
        Listener {
            _dir: dir,
            path,
            sock,
        }
    }

    /// The next datagram, waiting at most until `deadline`.
    fn recv_by(&self, deadline: Instant, what: &str) -> Vec<u8> {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no datagram in time: waited for {what}");
        self.sock.set_read_timeout(Some(left)).unwrap();
        let mut buf = vec![0u8; 256 * 1024];
        match self.sock.recv(&mut buf) {
            Ok(n) => buf[..n].to_vec(),
            Err(e) => panic!("no datagram in time ({e}): waited for {what}"),
        }
    }

    /// Receives datagrams until one equals `want`; returns those seen before it.
    fn recv_until(&self, want: &str, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let mut before = Vec::new();
        loop {
            let d = String::from_utf8(self.recv_by(deadline, want)).unwrap();
            if d == want {
                return before;
            }
            before.push(d);
        }
    }

    /// Whether a datagram is waiting now.
    fn pending(&self) -> Option<String> {
        self.sock.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 1024];
        let got = self
            .sock
            .recv(&mut buf)
            .ok()
            .map(|n| String::from_utf8_lossy(&buf[..n]).into_owned());
        self.sock.set_nonblocking(false).unwrap();
        got
    }
}

#[test]
fn tells_systemd_when_it_serves_pings_the_watchdog_and_says_when_it_stops() {
    let systemd = Listener::bind();
    let mut cairn = ServerProc::new(Kind::Cairn, "m1", free_port(), &[]);
    cairn.env = vec![
        ("NOTIFY_SOCKET".into(), systemd.path.clone()),
        ("WATCHDOG_USEC".into(), "200000".into()),
    ];
    let _ = cairn.spawn_nowait();
    let before = systemd.recv_until("READY=1", Duration::from_secs(30));
    assert!(before.is_empty(), "sent before READY=1: {before:?}");
    // Ready means serving: the client port answers at once.
    assert_eq!(
        http_get(cairn.client_port, "/health"),
        (200, r#"{"health":"true","reason":""}"#.to_string())
    );
    // Half of WATCHDOG_USEC between pings; two pings show it repeats.
    for _ in 0..2 {
        let other = systemd.recv_until("WATCHDOG=1", Duration::from_secs(10));
        assert!(other.is_empty(), "unexpected notifications: {other:?}");
    }
    cairn.signal("TERM");
    let other = systemd.recv_until("STOPPING=1", Duration::from_secs(10));
    assert!(
        other.iter().all(|d| d == "WATCHDOG=1"),
        "unexpected notifications: {other:?}"
    );
    assert_eq!(cairn.wait_exit(Duration::from_secs(30)), 0);
}

#[test]
fn a_member_is_not_ready_for_systemd_before_its_cluster_has_a_leader() {
    let systemd = Listener::bind();
    let mut members: Vec<ServerProc> = (0..3)
        .map(|i| ServerProc::new(Kind::Cairn, &format!("m{i}"), free_port(), &[]))
        .collect();
    let initial: Vec<String> = members
        .iter()
        .map(|m| format!("{}={}", m.name, m.peer_url()))
        .collect();
    for m in members.iter_mut() {
        m.extra
            .push(format!("--initial-cluster={}", initial.join(",")));
    }
    members[0].env = vec![("NOTIFY_SOCKET".into(), systemd.path.clone())];
    let _ = members[0].spawn_nowait();
    // Alone of three, it waits for a quorum and has told systemd nothing.
    members[0].wait_logged(0, Duration::from_secs(30), "waiting for a leader", |l| {
        l.contains("\"msg\":\"waiting for a leader\"")
    });
    assert_eq!(systemd.pending(), None);
    let waits: Vec<_> = members[1..].iter_mut().map(|m| m.spawn_nowait()).collect();
    for (m, w) in members[1..].iter_mut().zip(waits) {
        m.wait_ready(w);
    }
    let before = systemd.recv_until("READY=1", Duration::from_secs(30));
    assert!(before.is_empty(), "sent before READY=1: {before:?}");
}

/// Splits a native-protocol journal entry into its fields (`KEY=value` lines, or `KEY`,
/// a 64-bit little-endian length and the value).
fn journal_fields(mut d: &[u8]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    while !d.is_empty() {
        let nl = d.iter().position(|&b| b == b'\n').unwrap();
        let line = &d[..nl];
        if let Some(eq) = line.iter().position(|&b| b == b'=') {
            out.push((
                String::from_utf8(line[..eq].to_vec()).unwrap(),
                String::from_utf8(line[eq + 1..].to_vec()).unwrap(),
            ));
            d = &d[nl + 1..];
        } else {
            let key = String::from_utf8(line.to_vec()).unwrap();
            let len = u64::from_le_bytes(d[nl + 1..nl + 9].try_into().unwrap()) as usize;
            let value = String::from_utf8(d[nl + 9..nl + 9 + len].to_vec()).unwrap();
            out.push((key, value));
            d = &d[nl + 9 + len + 1..];
        }
    }
    out
}

#[test]
fn log_outputs_systemd_journal_sends_etcd_shaped_entries_to_journald() {
    let journald = Listener::bind();
    let mut cairn = ServerProc::new(
        Kind::Cairn,
        "m1",
        free_port(),
        &["--log-outputs=systemd/journal"],
    );
    cairn.env = vec![("CAIRN_TEST_JOURNAL_SOCKET".into(), journald.path.clone())];
    let _ = cairn.spawn_nowait();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut entries = Vec::new();
    let ready = loop {
        let fields = journal_fields(&journald.recv_by(deadline, "the ready line"));
        let msg = fields
            .iter()
            .find(|(k, _)| k == "MESSAGE")
            .map(|(_, v)| v.clone())
            .unwrap();
        let line: serde_json::Value = serde_json::from_str(&msg).unwrap();
        entries.push(line.clone());
        if line["msg"] == "ready to serve client requests" {
            break fields;
        }
    };
    // etcd's journal writer: the JSON line as MESSAGE, the level as a syslog priority,
    // the caller's directory as PACKAGE, the program's name as SYSLOG_IDENTIFIER.
    let keys: Vec<&str> = ready.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        ["MESSAGE", "PRIORITY", "PACKAGE", "SYSLOG_IDENTIFIER"]
    );
    assert_eq!(ready[1].1, "6");
    // The line keeps its newline, as etcd's (zap's line ending) does.
    assert!(ready[0].1.ends_with("}\n"), "{:?}", ready[0].1);
    assert_eq!(ready[3].1, "cairn");
    let caller = serde_json::from_str::<serde_json::Value>(&ready[0].1).unwrap()["caller"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(ready[2].1, caller.rsplit_once('/').unwrap().0, "{caller}");
    assert!(entries
        .iter()
        .any(|e| e["msg"] == "starting an etcd server"));
    // The insecure-port warning that follows is an entry of priority 4 (warning).
    let warn = loop {
        let fields = journal_fields(&journald.recv_by(deadline, "the insecure warning"));
        if fields[0]
            .1
            .contains("\"msg\":\"serving insecure client requests")
        {
            break fields;
        }
    };
    assert_eq!(warn[1], ("PRIORITY".to_string(), "4".to_string()));
    // Nothing went to stderr: the journal replaces it, as in etcd.
    assert_eq!(cairn.log_text(), "");

    // With journald gone, entries go to stderr rather than nowhere, as etcd's writer does.
    drop(journald);
    cairn.signal("TERM");
    cairn.wait_logged(0, Duration::from_secs(30), "its stop on stderr", |l| {
        l.contains("\"msg\":\"received signal; shutting down\"")
    });
    assert_eq!(cairn.wait_exit(Duration::from_secs(30)), 0);
}

/// Runs `bin` with `args` to its end (it is expected to refuse to start): its stderr.
fn refused(bin: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(bin)
        .args(args)
        .arg(format!("--data-dir={}", dir.path().join("d").display()))
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "{bin:?} {args:?} started");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn journal_beside_other_outputs_or_without_journald_is_refused_as_etcd_refuses_it() {
    for outputs in ["stderr,systemd/journal", "default,systemd/journal"] {
        let flag = format!("--log-outputs={outputs}");
        let etcd = refused(&tool("etcd-3.5"), &[&flag], &[]);
        let line = etcd
            .lines()
            .find(|l| l.contains("failed to verify flags"))
            .unwrap_or_else(|| panic!("{etcd}"));
        let want = serde_json::from_str::<serde_json::Value>(line).unwrap()["error"]
            .as_str()
            .unwrap()
            .to_string();
        let cairn = refused(&workspace_bin("cairn"), &[&flag], &[]);
        assert!(cairn.contains(&want), "want {want:?} in:\n{cairn}");
    }
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-journal").display().to_string();
    let cairn = refused(
        &workspace_bin("cairn"),
        &["--log-outputs=systemd/journal"],
        &[("CAIRN_TEST_JOURNAL_SOCKET", &missing)],
    );
    assert!(
        cairn.contains(&format!(
            "can't find journal (dial unixgram {missing}: connect: no such file or directory)"
        )),
        "{cairn}"
    );
}

/// One HTTP/1.1 request: the status code, the content type and the body.
fn http(port: u16, method: &str, path: &str) -> (u16, String, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let code = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let ctype = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    (code, ctype, body.to_string())
}

#[test]
fn paths_etcd_does_not_serve_answer_404_as_etcd() {
    let etcd35 = ServerProc::start(Kind::Etcd35, &[]);
    let etcd34 = ServerProc::start(Kind::Etcd34, &[]);
    let cairn = ServerProc::start(Kind::Cairn, &[]);
    let cases = [
        ("GET", "/"),
        ("GET", "/nope"),
        ("GET", "/v2/keys/foo"),
        ("GET", "/v3alpha/kv/range"),
        ("GET", "/v3/no/such/method"),
        ("GET", "/v3beta/no/such/method"),
        ("GET", "/version/"),
        ("GET", "/metricsx"),
        ("POST", "/nope"),
        ("POST", "/health"),
    ];
    for (method, path) in cases {
        let want = http(etcd35.client_port, method, path);
        let got = http(cairn.client_port, method, path);
        assert_eq!(got, want, "{method} {path}: cairn vs etcd 3.5");
        assert_eq!(
            http(etcd34.client_port, method, path),
            want,
            "{method} {path}: etcd 3.4 vs 3.5"
        );
        assert_ne!(got.0, 200, "{method} {path}");
    }
    // gRPC still reaches the services past the HTTP fallback.
    let out = cairn_tests::run_client(
        &workspace_bin("cairnctl"),
        &cairn.endpoint(),
        &["get", "k"],
        None,
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
}

#[test]
fn health_livez_and_readyz_on_a_healthy_member() {
    let etcd = ServerProc::start(Kind::Etcd35, &[]);
    let cairn = ServerProc::start(Kind::Cairn, &[]);
    for path in [
        "/health",
        "/health?serializable=true",
        "/health?exclude=NOSPACE",
    ] {
        assert_eq!(
            http_get(cairn.client_port, path),
            http_get(etcd.client_port, path),
            "{path}"
        );
    }
    let ok = |body: &str| {
        (
            200,
            "text/plain; charset=utf-8".to_string(),
            body.to_string(),
        )
    };
    for (path, want) in [
        ("/livez", "ok\n"),
        ("/livez?verbose", "[+]serializable_read ok\nok\n"),
        ("/readyz", "ok\n"),
        (
            "/readyz?verbose",
            "[+]data_corruption ok\n[+]serializable_read ok\n[+]linearizable_read ok\nok\n",
        ),
        (
            "/readyz?verbose&exclude=linearizable_read&exclude=data_corruption",
            "[+]serializable_read ok\nok\n",
        ),
        ("/readyz/linearizable_read", "ok\n"),
        ("/livez/serializable_read", "ok\n"),
    ] {
        assert_eq!(http(cairn.client_port, "GET", path), ok(want), "{path}");
    }
    assert_eq!(
        http(cairn.client_port, "GET", "/readyz/nope"),
        (
            404,
            "text/plain; charset=utf-8".to_string(),
            "404 page not found\n".to_string()
        )
    );
}

#[test]
fn without_a_leader_readyz_fails_and_livez_and_serializable_health_pass() {
    let mut cluster = Cluster::start(3, &[]);
    cluster.members[1].stop();
    cluster.members[2].stop();
    let port = cluster.members[0].client_port;
    wait_until(Duration::from_secs(30), "/health to see no leader", || {
        let got = http_get(port, "/health");
        match got {
            (503, ref b) if b == r#"{"health":"false","reason":"RAFT NO LEADER"}"# => Ok(()),
            other => Err(other),
        }
    });
    // etcd 3.5.3's serializable health: the member's own store, no leader needed.
    assert_eq!(
        http_get(port, "/health?serializable=true"),
        (200, r#"{"health":"true","reason":""}"#.to_string())
    );
    assert_eq!(http_get(port, "/livez"), (200, "ok\n".to_string()));
    let (code, ctype, body) = http(port, "GET", "/readyz");
    assert_eq!((code, ctype.as_str()), (503, "text/plain; charset=utf-8"));
    assert_eq!(
        body,
        "[+]data_corruption ok\n[+]serializable_read ok\n\
         [-]linearizable_read failed: etcdserver: request timed out\n\n"
    );
    assert_eq!(
        http_get(port, "/readyz?exclude=linearizable_read"),
        (200, "ok\n".to_string())
    );
}
