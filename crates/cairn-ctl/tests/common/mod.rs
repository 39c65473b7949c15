//! Test support: a real etcd, or a real etcd cluster, on free loopback ports, killed when
//! dropped.
//!
//! Reusable by other crates' tests by path (`#[path = ".../common/mod.rs"] mod common;`).
//! The binaries come from `CAIRN_ETCD_BIN` / `CAIRN_ETCDCTL_BIN`, else the etcd 3.5.1 that
//! `scripts/setup` links under `.tools/bin`. A missing binary fails the test: run
//! `scripts/setup`.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn find_binary(var: &str, name: &str) -> Option<PathBuf> {
    if let Ok(p) = std::env::var(var) {
        return Some(PathBuf::from(p));
    }
    let tools = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.tools/bin");
    let linked = tools.join(format!("{name}-3.5"));
    assert!(
        linked.exists(),
        "{} is missing: run scripts/setup",
        linked.display()
    );
    Some(linked)
}

/// The etcd 3.5.1 server binary, if available.
pub fn etcd_bin() -> Option<PathBuf> {
    find_binary("CAIRN_ETCD_BIN", "etcd")
}

/// The etcdctl 3.5.1 binary, if available.
pub fn etcdctl_bin() -> Option<PathBuf> {
    find_binary("CAIRN_ETCDCTL_BIN", "etcdctl")
}

/// A free loopback port, below the kernel's ephemeral range (see the harness).
pub use cairn_tests::free_port;

/// A running single-member etcd; killed and its data removed on drop.
pub struct Etcd {
    child: Child,
    /// Data directory (removed on drop).
    pub dir: tempfile::TempDir,
    /// `127.0.0.1:<client port>`.
    pub endpoint: String,
    /// The client port.
    pub client_port: u16,
    /// The peer port.
    pub peer_port: u16,
}

impl Etcd {
    /// Starts etcd on free ports and waits (at most 30 s) until it answers a read.
    pub fn start(bin: &PathBuf, name: &str) -> Etcd {
        Etcd::start_with_args(bin, name, &[])
    }

    /// Starts etcd with `extra` flags added, like [`Etcd::start`].
    pub fn start_with_args(bin: &PathBuf, name: &str, extra: &[&str]) -> Etcd {
        let (client_port, peer_port) = (free_port(), free_port());
        let initial = format!("{name}=http://127.0.0.1:{peer_port}");
        let etcd = Etcd::spawn(bin, name, client_port, peer_port, &initial, extra);
        etcd.wait_ready();
        etcd
    }

    /// Starts one member of the cluster `initial_cluster` without waiting for it.
    fn spawn(
        bin: &PathBuf,
        name: &str,
        client_port: u16,
        peer_port: u16,
        initial_cluster: &str,
        extra: &[&str],
    ) -> Etcd {
        let dir = tempfile::tempdir().unwrap();
        let client = format!("http://127.0.0.1:{client_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let log = std::fs::File::create(dir.path().join("etcd.log")).unwrap();
        let child = Command::new(bin)
            .args(["--name", name, "--data-dir"])
            .arg(dir.path().join("data"))
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args(["--initial-cluster", initial_cluster])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Etcd {
            child,
            dir,
            endpoint: format!("127.0.0.1:{client_port}"),
            client_port,
            peer_port,
        }
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let cfg = cairn_client::ClientConfig::new([self.endpoint.clone()]);
        while Instant::now() < deadline {
            let ok = rt.block_on(async {
                let Ok(c) = cairn_client::Client::connect(cfg.clone()).await else {
                    return false;
                };
                let req = cairn_proto::etcdserverpb::RangeRequest {
                    key: b"ready".to_vec(),
                    ..Default::default()
                };
                tokio::time::timeout(Duration::from_secs(2), c.kv().range(req))
                    .await
                    .is_ok_and(|r| r.is_ok())
            });
            if ok {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("etcd at {} did not become ready within 30s", self.endpoint);
    }

    /// Cluster and member ID, from `member list`.
    pub fn ids(&self) -> (u64, u64) {
        block_on(async {
            let r = self
                .client()
                .await
                .cluster()
                .member_list(cairn_proto::etcdserverpb::MemberListRequest { linearizable: true })
                .await
                .unwrap()
                .into_inner();
            let h = r.header.unwrap();
            (h.cluster_id, h.member_id)
        })
    }

    /// A cairn-client connected to this etcd.
    pub async fn client(&self) -> cairn_client::Client {
        let cfg = cairn_client::ClientConfig::new([self.endpoint.clone()]);
        cairn_client::Client::connect(cfg).await.unwrap()
    }
}

/// Runs `f` to its end on a runtime of its own, for the tests' synchronous helpers.
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running etcd cluster of named members on loopback; every member is killed on drop.
pub struct Cluster {
    /// The members, in the order of their names.
    pub members: Vec<Etcd>,
    /// The members' names (`m0`, `m1`, ...).
    pub names: Vec<String>,
}

impl Cluster {
    /// Starts `n` members named `m0`.. and waits until each answers a read.
    pub fn start(bin: &PathBuf, n: usize) -> Cluster {
        let names: Vec<String> = (0..n).map(|i| format!("m{i}")).collect();
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let initial = names
            .iter()
            .zip(&ports)
            .map(|(name, (_, peer))| format!("{name}=http://127.0.0.1:{peer}"))
            .collect::<Vec<_>>()
            .join(",");
        let members: Vec<Etcd> = names
            .iter()
            .zip(&ports)
            .map(|(name, (client, peer))| Etcd::spawn(bin, name, *client, *peer, &initial, &[]))
            .collect();
        for m in &members {
            m.wait_ready();
        }
        Cluster { members, names }
    }

    /// Every member's client endpoint, comma-separated.
    pub fn endpoints(&self) -> String {
        self.members
            .iter()
            .map(|m| m.endpoint.clone())
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// `hay` with every `from` replaced by `to` (bytes; an empty `from` changes nothing).
pub fn replace(hay: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hay.len());
    let mut i = 0;
    while i < hay.len() {
        if !from.is_empty() && hay[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(hay[i]);
            i += 1;
        }
    }
    out
}

/// The protobuf varint encoding of `v` (to find and mask ids in `-w protobuf` output).
/// `hay` with the ID `from` replaced by `to` in each form output shows it in: decimal
/// (JSON, fields), hex (simple, table) and a protobuf varint (`-w protobuf`).
pub fn replace_id(hay: &[u8], from: u64, to: u64) -> Vec<u8> {
    let v = replace(hay, from.to_string().as_bytes(), to.to_string().as_bytes());
    let v = replace(
        &v,
        format!("{from:x}").as_bytes(),
        format!("{to:x}").as_bytes(),
    );
    replace(&v, &varint(from), &varint(to))
}

pub fn varint(mut v: u64) -> Vec<u8> {
    let mut b = Vec::new();
    while v >= 0x80 {
        b.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    b.push(v as u8);
    b
}

/// How a cairnctl run (`got`: stdout, stderr, exit code, masked) differs from etcdctl's
/// (`want`), one line group per stream; empty when they agree.
pub fn differences(want: (&str, &str, i32), got: (&str, &str, i32)) -> Vec<String> {
    let mut problems = Vec::new();
    if want.0 != got.0 {
        problems.push(format!(
            "stdout:\n  etcdctl:  {:?}\n  cairnctl: {:?}",
            want.0, got.0
        ));
    }
    if want.1 != got.1 {
        problems.push(format!(
            "stderr:\n  etcdctl:  {:?}\n  cairnctl: {:?}",
            want.1, got.1
        ));
    }
    if want.2 != got.2 {
        problems.push(format!("exit code: etcdctl {} cairnctl {}", want.2, got.2));
    }
    problems
}

/// Masks what differs from run to run in one line of output, whatever the server: log
/// timestamps (`"ts":` up to the next comma) and Go pointers (`0xc0…`).
pub fn mask_line(line: &str) -> String {
    let mut l = line.to_string();
    while let Some(i) = l.find("\"ts\":") {
        let rest = &l[i + 5..];
        let end = rest.find(',').unwrap_or(rest.len());
        l = format!("{}\"TS\":X{}", &l[..i], &rest[end..]);
    }
    while let Some(i) = l.find("0xc0") {
        let rest = &l[i..];
        let end = rest
            .find(|c: char| !c.is_ascii_hexdigit() && c != 'x')
            .unwrap_or(rest.len());
        l = format!("{}PTR{}", &l[..i], &rest[end..]);
    }
    l
}
