//! Test harness: starts cairn and real etcd processes on free loopback ports, runs the real
//! `etcdctl` and `cairnctl` against them, and stops everything when dropped.
//!
//! The binaries come from the workspace's target directory (the test command builds them
//! first) and the reference tools from `.tools/bin` (made by `scripts/setup`). A missing tool
//! is a failure, never a skip.
//!
//! # Layout
//!
//! - `lib.rs`: the processes ([`ServerProc`], [`Cluster`]) and the command-line clients
//!   ([`run_client`], [`etcdctl35`], [`etcdctl34`], [`cairnctl`]).
//! - `wait`: bounded waits for what a test can observe, failing the test at their deadline.
//! - `goclient`: etcd's own Go client ([`goclient::etcd_go`]).
//! - `grpc`: channels, a member's status, [`strip_header`], [`block_on`].
//! - `leader`: which member leads.
//! - `deployment`: the users and roles of the deployment cairn is for.
//! - `pyclient`: Python's etcd3 client ([`pyclient::etcd3_script`]).
//! - `mask`: masks for comparing two outputs byte for byte.
//! - `workload`, `linearizability`: the fault suites' clients and their checker.
//! - `container`: a throwaway container with a real systemd as PID 1 ([`container::SystemdContainer`]).

#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod acked;
pub mod certs;
pub mod container;
pub mod deployment;
pub mod goclient;
pub mod grpc;
pub mod leader;
pub mod linearizability;
pub mod mask;
pub mod pyclient;
pub mod wait;
pub mod workload;

pub use grpc::{block_on, channel, status, strip_header};
pub use leader::{leader, leader_among};
pub use wait::{wait_until, wait_until_async};

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A reference tool from `.tools/bin`, e.g. `tool("etcdctl-3.5")`.
pub fn tool(name: &str) -> PathBuf {
    let p = repo_root().join(".tools/bin").join(name);
    assert!(p.exists(), "{} is missing: run scripts/setup", p.display());
    p
}

/// A binary built from this workspace (`cairn`, `cairnctl`).
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/<test-binary>
    let profile_dir = exe.parent().unwrap().parent().unwrap();
    let p = profile_dir.join(name);
    assert!(
        p.exists(),
        "{} is missing: build it first (cargo build --bins)",
        p.display()
    );
    p
}

/// A TCP port that was free a moment ago on 127.0.0.1.
///
/// Taken below Linux's ephemeral range (32768 and up): a port the kernel hands out for
/// `bind(0)` may be given to some outgoing connection's local end before the server this
/// is for binds it. Each test process starts at its own place in the range (from its
/// pid) and walks on, skipping ports in use.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id().wrapping_mul(7_919) % SPAN;
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (FIRST + (start + n) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {FIRST}..{}", FIRST + SPAN);
}

/// Which server to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Cairn,
    Etcd34,
    Etcd35,
}

/// A running server process, killed when dropped.
pub struct ServerProc {
    pub kind: Kind,
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub name: String,
    pub client_port: u16,
    pub peer_port: u16,
    pub extra: Vec<String>,
    /// Environment variables set for the process.
    pub env: Vec<(String, String)>,
    /// stderr lines the server logged, as they arrive.
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    /// The address the server listens on and advertises (`127.0.0.1` unless changed).
    pub host: String,
    /// A network namespace (`ip netns`) to run the process in, if any.
    pub netns: Option<String>,
    /// The scheme of the client URL: `http` unless a test serves TLS (`https`).
    pub client_scheme: &'static str,
    /// The scheme of the peer URL: `http` unless a test runs peer TLS (`https`).
    pub peer_scheme: &'static str,
}

impl ServerProc {
    /// Starts a server of `kind` with `extra` flags and waits until it serves clients.
    pub fn start(kind: Kind, extra: &[&str]) -> ServerProc {
        ServerProc::start_with_env(kind, extra, &[])
    }

    /// A server of `kind` named `name` with the given peer port, not started yet (call
    /// [`ServerProc::spawn`]).
    pub fn new(kind: Kind, name: &str, peer_port: u16, extra: &[&str]) -> ServerProc {
        ServerProc {
            kind,
            child: None,
            dir: tempfile::tempdir().unwrap(),
            name: name.to_string(),
            client_port: free_port(),
            peer_port,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            env: Vec::new(),
            log: Default::default(),
            host: "127.0.0.1".into(),
            netns: None,
            client_scheme: "http",
            peer_scheme: "http",
        }
    }

    /// Starts a server of `kind` whose client URL is `https://`, with `extra` flags (the
    /// TLS ones), and waits until it serves clients.
    pub fn start_https(kind: Kind, extra: &[&str]) -> ServerProc {
        let mut p = ServerProc::new(kind, "m1", free_port(), extra);
        p.client_scheme = "https";
        p.spawn();
        p
    }

    /// Like [`ServerProc::start`], with environment variables.
    pub fn start_with_env(kind: Kind, extra: &[&str], env: &[(&str, &str)]) -> ServerProc {
        let mut p = ServerProc::new(kind, "m1", free_port(), extra);
        p.env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        p.spawn();
        p
    }

    /// The client endpoint, `HOST:PORT` (host `127.0.0.1` unless changed).
    pub fn endpoint(&self) -> String {
        format!("{}:{}", self.host, self.client_port)
    }

    /// The client URL, `http://HOST:PORT` (`https://` with [`ServerProc::client_scheme`]).
    pub fn url(&self) -> String {
        format!(
            "{}://{}:{}",
            self.client_scheme, self.host, self.client_port
        )
    }

    /// The peer URL, `http://HOST:PEER_PORT` (`https://` with [`ServerProc::peer_scheme`]).
    pub fn peer_url(&self) -> String {
        format!("{}://{}:{}", self.peer_scheme, self.host, self.peer_port)
    }

    /// The data directory the server uses.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn args(&self) -> Vec<String> {
        let peer = self.peer_url();
        let mut a = vec![
            format!("--name={}", self.name),
            format!("--data-dir={}", self.data_dir().display()),
            format!("--listen-client-urls={}", self.url()),
            format!("--advertise-client-urls={}", self.url()),
            format!("--listen-peer-urls={peer}"),
            format!("--initial-advertise-peer-urls={peer}"),
            format!("--initial-cluster={}={peer}", self.name),
        ];
        if self.kind != Kind::Cairn {
            a.push("--logger=zap".into());
        }
        a.extend(self.extra.iter().cloned());
        a
    }

    fn binary(&self) -> PathBuf {
        match self.kind {
            Kind::Cairn => workspace_bin("cairn"),
            Kind::Etcd34 => tool("etcd-3.4"),
            Kind::Etcd35 => tool("etcd-3.5"),
        }
    }

    /// Starts (or restarts) the process and waits until it is ready.
    pub fn spawn(&mut self) {
        let ready = self.spawn_nowait();
        self.wait_ready(ready);
    }

    /// Starts (or restarts) the process; pass the result to [`ServerProc::wait_ready`].
    pub fn spawn_nowait(&mut self) -> mpsc::Receiver<()> {
        let mut cmd = match &self.netns {
            // `ip netns exec` execs the binary, so the child's pid is the server's.
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(self.binary());
                c
            }
            None => Command::new(self.binary()),
        };
        let mut child = cmd
            .args(self.args())
            .envs(self.env.iter().cloned())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (ready_tx, ready_rx) = mpsc::channel();
        let log = self.log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                // etcd 3.5 and cairn log the first; etcd 3.4 only the second.
                let ready = line.contains("ready to serve client requests")
                    || line.contains("serving client traffic insecurely");
                // Log first, so a test woken by readiness finds the line.
                log.lock().unwrap().push(line);
                if ready {
                    let _ = ready_tx.send(());
                }
            }
        });
        self.child = Some(child);
        ready_rx
    }

    /// Waits until the process logged that it serves clients and its port accepts.
    pub fn wait_ready(&mut self, ready_rx: mpsc::Receiver<()>) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if ready_rx.recv_timeout(Duration::from_millis(50)).is_ok() {
                break;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "{:?} exited at start with {status}; log:\n{}",
                    self.kind,
                    self.log_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{:?} not ready in 30s:\n{}",
                self.kind,
                self.log_text()
            );
        }
        // The client listener may follow the log line by a moment.
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect((self.host.as_str(), self.client_port)).is_err() {
            assert!(Instant::now() < deadline, "client port never opened");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Everything the server logged so far.
    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// How many lines the server logged so far: pass it to [`ServerProc::wait_logged`] to
    /// wait for a line logged from now on.
    pub fn log_len(&self) -> usize {
        self.log.lock().unwrap().len()
    }

    /// Waits (up to `timeout`) until a line after the first `from` that the server logged
    /// satisfies `is_it`, and returns that line; `what` names the line for the failure.
    pub fn wait_logged(
        &self,
        from: usize,
        timeout: Duration,
        what: &str,
        is_it: impl Fn(&str) -> bool,
    ) -> String {
        wait_until(timeout, format!("{} to log {what}", self.name), || {
            let log = self.log.lock().unwrap();
            let since = log.get(from..).unwrap_or_default();
            match since.iter().find(|l| is_it(l)) {
                Some(l) => Ok(l.clone()),
                None => Err(since[since.len().saturating_sub(5)..].to_vec()),
            }
        })
    }

    /// Waits (up to 10 s) until the server, after its first `from` log lines, logged that it
    /// lost peer `id` (etcd: "peer became inactive", cairn: "failed to send to peer"): it
    /// logs so as it stops counting the peer as connected.
    pub fn wait_peer_lost(&self, from: usize, id: u64) {
        let quoted = format!("\"{id:x}\"");
        self.wait_logged(
            from,
            Duration::from_secs(10),
            &format!("that it lost peer {id:x}"),
            |l| {
                l.contains(&quoted)
                    && (l.contains("\"peer became inactive")
                        || l.contains("\"failed to send to peer"))
            },
        );
    }

    /// The cluster and member ids in the header of the server's status.
    pub fn ids(&self) -> Ids {
        let r = etcdctl35(&self.endpoint(), &["endpoint", "status", "-w", "json"]);
        let v: serde_json::Value = serde_json::from_str(&r.stdout)
            .unwrap_or_else(|e| panic!("endpoint status of {}: {e}: {r:?}", self.name));
        let h = &v[0]["Status"]["header"];
        Ids {
            cluster: h["cluster_id"].as_u64().unwrap(),
            member: h["member_id"].as_u64().unwrap(),
        }
    }

    /// The value of `name`, a metric without labels, on the server's `/metrics`.
    pub fn metric(&self, name: &str) -> Option<f64> {
        let (_, body) = http_get(self.client_port, "/metrics");
        body.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
    }

    /// Waits (up to 10 s) until the server counts `n` watchers
    /// (`etcd_debugging_mvcc_watcher_total`). A counted watcher sees every later write; one
    /// whose client went away is no longer counted.
    pub fn wait_watchers(&self, n: usize) {
        let name = "etcd_debugging_mvcc_watcher_total";
        wait_until(
            Duration::from_secs(10),
            format!("{} to count {n} watchers", self.name),
            || match self.metric(name) {
                Some(v) if v == n as f64 => Ok(()),
                seen => Err(seen),
            },
        );
    }

    /// The process id while the process runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Sends `signal` (a name such as `STOP` or `CONT`) to the running process.
    pub fn signal(&self, signal: &str) {
        if let Some(pid) = self.pid() {
            let _ = Command::new("kill")
                .arg(format!("-{signal}"))
                .arg(pid.to_string())
                .status();
        }
    }

    /// Waits (up to `timeout`) for a process that is expected to stop by itself, and
    /// returns its exit code (-1 if a signal ended it); fails the test if it runs on.
    pub fn wait_exit(&mut self, timeout: Duration) -> i32 {
        let mut child = self.child.take().expect("the process was not started");
        let name = self.name.clone();
        let status = wait_until(timeout, format!("{name} to exit"), || {
            child.try_wait().unwrap().ok_or("still running")
        });
        status.code().unwrap_or(-1)
    }

    /// Kills the process with SIGKILL and waits for it.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops the process with SIGTERM and waits for it (bounded).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if c.try_wait().unwrap().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A server's cluster and member ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ids {
    pub cluster: u64,
    pub member: u64,
}

/// What a command printed and how it exited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub stdout: String,
    pub stderr: String,
    pub code: i32,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
            code: o.status.code().unwrap_or(-1),
        }
    }
}

/// Runs a client binary against `endpoint` with `args`, feeding `stdin`.
pub fn run_client(bin: &Path, endpoint: &str, args: &[&str], stdin: Option<&str>) -> Run {
    use std::io::Write;
    let mut child = Command::new(bin)
        .arg(format!("--endpoints={endpoint}"))
        .args(args)
        .env_remove("ETCDCTL_API")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    out.into()
}

/// Runs the real etcdctl 3.5 against `endpoint`.
pub fn etcdctl35(endpoint: &str, args: &[&str]) -> Run {
    run_client(&tool("etcdctl-3.5"), endpoint, args, None)
}

/// etcdctl's `--user` flag for the user `root` with the password the suites give it.
pub const ROOT_USER: &str = "--user=root:rootpw";

/// Runs the real etcdctl 3.5 against `endpoint` as `root` ([`ROOT_USER`]).
pub fn etcdctl35_as_root(endpoint: &str, args: &[&str]) -> Run {
    let mut all = vec![ROOT_USER];
    all.extend_from_slice(args);
    etcdctl35(endpoint, &all)
}

/// What a command printed on stdout, once it exited 0 (the run is shown if it did not).
pub fn ok(r: Run) -> String {
    assert_eq!(r.code, 0, "{r:?}");
    r.stdout
}

/// Runs the real etcdutl 3.5 (snapshot status and restore, offline defragment) with `args`.
pub fn etcdutl35(args: &[&str]) -> Run {
    Command::new(tool("etcdutl-3.5"))
        .args(args)
        .output()
        .unwrap()
        .into()
}

/// Runs the real etcdctl 3.4 against `endpoint`.
pub fn etcdctl34(endpoint: &str, args: &[&str]) -> Run {
    run_client(&tool("etcdctl-3.4"), endpoint, args, None)
}

/// Runs etcdctl 3.5's membership change `args` against `endpoints` until the cluster no
/// longer refuses it as unhealthy (at most 15 s), and returns that run. Under strict
/// reconfiguration a cluster takes a change only once its members have been connected to
/// each other for etcd's 5 s health interval.
pub fn etcdctl35_membership(endpoints: &str, args: &[&str]) -> Run {
    wait_until(
        Duration::from_secs(15),
        format!("etcdctl {args:?} not to be refused as an unhealthy cluster"),
        || {
            let r = etcdctl35(endpoints, args);
            if r.stderr.contains("etcdserver: unhealthy cluster") {
                Err(r)
            } else {
                Ok(r)
            }
        },
    )
}

/// Waits (up to 10 s) until `n` keys start with `prefix` on `endpoints` (a lock or election
/// waiter has queued, for instance).
pub fn wait_keys(endpoints: &str, prefix: &str, n: usize) {
    let args = ["get", prefix, "--prefix", "--keys-only"];
    wait_until(
        Duration::from_secs(10),
        format!("{n} keys under {prefix:?}"),
        || {
            let r = etcdctl35(endpoints, &args);
            // Each key, then an empty line.
            let keys = r.stdout.lines().filter(|l| !l.is_empty()).count();
            if r.code == 0 && keys == n {
                Ok(())
            } else {
                Err(r)
            }
        },
    );
}

/// Runs cairnctl against `endpoint`.
pub fn cairnctl(endpoint: &str, args: &[&str]) -> Run {
    run_client(&workspace_bin("cairnctl"), endpoint, args, None)
}

/// A cluster of members on loopback, started together.
pub struct Cluster {
    pub members: Vec<ServerProc>,
}

impl Cluster {
    /// Starts `n` cairn members named m0, m1, ... with `extra` flags and waits until all
    /// serve.
    pub fn start(n: usize, extra: &[&str]) -> Cluster {
        Cluster::start_kind(Kind::Cairn, n, extra)
    }

    /// Like [`Cluster::start`], with members of `kind`.
    pub fn start_kind(kind: Kind, n: usize, extra: &[&str]) -> Cluster {
        let mut members: Vec<ServerProc> = (0..n)
            .map(|i| ServerProc::new(kind, &format!("m{i}"), free_port(), extra))
            .collect();
        start_together(&mut members);
        Cluster { members }
    }

    /// Every member's client endpoint, comma-separated (for `--endpoints`).
    pub fn endpoints(&self) -> String {
        self.members
            .iter()
            .map(|m| m.endpoint())
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Starts `members` as one cluster: each gets an `--initial-cluster` flag naming every
/// member's peer URL, all are spawned at once, and this waits until all serve.
pub fn start_together(members: &mut [ServerProc]) {
    let initial: Vec<String> = members
        .iter()
        .map(|m| format!("{}={}", m.name, m.peer_url()))
        .collect();
    let flag = format!("--initial-cluster={}", initial.join(","));
    for m in members.iter_mut() {
        m.extra.push(flag.clone());
    }
    let waits: Vec<_> = members.iter_mut().map(|m| m.spawn_nowait()).collect();
    for (m, w) in members.iter_mut().zip(waits) {
        m.wait_ready(w);
    }
}

/// A plain HTTP/1.1 GET of `path` on 127.0.0.1:`port`: the status code and the body
/// (de-chunked).
pub fn http_get(port: u16, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let code = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    // Undo chunked encoding when the server used it.
    let body = if text
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = String::new();
        let mut rest = body.as_str();
        while let Some((len, tail)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(len.trim(), 16).unwrap_or(0);
            if n == 0 {
                break;
            }
            out.push_str(&tail[..n]);
            rest = &tail[n + 2..];
        }
        out
    } else {
        body
    };
    (code, body)
}
