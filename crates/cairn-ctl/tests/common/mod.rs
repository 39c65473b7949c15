//! What the suites comparing cairnctl with etcdctl 3.5.1 share on top of the cairn-tests
//! harness (which starts the etcd servers): the two tools, running either of them alike,
//! rewriting one server's ids into another's, and reporting the cases that differ.
//!
//! A missing etcd/etcdctl 3.5.1 fails the test: run `scripts/setup`.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::ffi::OsStr;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use cairn_tests::{Ids, Kind, ServerProc};

/// The real etcdctl 3.5.1.
pub fn etcdctl() -> PathBuf {
    cairn_tests::tool("etcdctl-3.5")
}

/// cairnctl, as built for this test.
pub fn cairnctl() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_cairnctl"))
}

/// A command running `program` without the caller's `ETCDCTL_*` variables, given `endpoints`
/// in `ETCDCTL_ENDPOINTS` (`None`: the arguments name them). Standard streams are piped.
pub fn ctl_command(program: impl AsRef<OsStr>, endpoints: Option<&str>) -> Command {
    let mut cmd = Command::new(program);
    for (k, _) in std::env::vars() {
        if k.starts_with("ETCDCTL_") {
            cmd.env_remove(k);
        }
    }
    if let Some(eps) = endpoints {
        cmd.env("ETCDCTL_ENDPOINTS", eps);
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// What a run printed, byte for byte (protobuf output is binary), and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// The exit code, or 1000 + the signal that ended the process.
    pub code: i32,
}

/// The exit code, or 1000 + the signal that ended the process.
pub fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 1000 + status.signal().unwrap_or(0))
}

/// Runs `cmd` to its end with `stdin` as its input.
pub fn run(mut cmd: Command, stdin: &[u8]) -> Run {
    let mut child = cmd.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin).unwrap();
    drop(input);
    let out = child.wait_with_output().unwrap();
    Run {
        stdout: out.stdout,
        stderr: out.stderr,
        code: exit_code(out.status),
    }
}

/// Starts a real etcd 3.5.1 with `extra` flags, again (at most 30 times in all) until `fits`
/// accepts its ids.
pub fn etcd_where(extra: &[&str], fits: impl Fn(Ids) -> bool) -> (ServerProc, Ids) {
    let mut seen = Vec::new();
    for _ in 0..30 {
        let etcd = ServerProc::start(Kind::Etcd35, extra);
        let ids = etcd.ids();
        if fits(ids) {
            return (etcd, ids);
        }
        seen.push(ids);
    }
    panic!("no etcd with fitting ids in 30 starts: {seen:x?}");
}

/// Whether ids `b` can be rewritten into ids `a` without changing the output's lengths:
/// their protobuf varints and the member ids' hex have the same lengths.
pub fn same_id_lengths(a: Ids, b: Ids) -> bool {
    varint(a.cluster).len() == varint(b.cluster).len()
        && varint(a.member).len() == varint(b.member).len()
        && format!("{:x}", a.member).len() == format!("{:x}", b.member).len()
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

/// `out`, printed by a tool talking to server `from`, as if printed against server `to`: the
/// client and peer addresses and the cluster and member ids of `from` (and then each id
/// pair of `more_ids`) rewritten into `to`'s.
pub fn rewrite_server(
    out: &[u8],
    from: (&ServerProc, Ids),
    to: (&ServerProc, Ids),
    more_ids: &[(u64, u64)],
) -> Vec<u8> {
    let mut v = out.to_vec();
    for (f, t) in [
        (from.0.client_port, to.0.client_port),
        (from.0.peer_port, to.0.peer_port),
    ] {
        v = replace(
            &v,
            format!("127.0.0.1:{f}").as_bytes(),
            format!("127.0.0.1:{t}").as_bytes(),
        );
    }
    let ids = [(from.1.cluster, to.1.cluster), (from.1.member, to.1.member)];
    for (f, t) in ids.iter().chain(more_ids) {
        v = replace_id(&v, *f, *t);
    }
    v
}

/// The protobuf varint encoding of `v` (to find and mask ids in `-w protobuf` output).
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

/// The cases a suite compared and those that differ.
#[derive(Default)]
pub struct Report {
    failures: Vec<String>,
    cases: usize,
}

impl Report {
    /// Counts one case, a failure unless `problems` is empty.
    pub fn case(&mut self, label: &str, problems: Vec<String>) {
        self.cases += 1;
        if !problems.is_empty() {
            self.failures
                .push(format!("{label}\n{}", problems.join("\n")));
        }
    }

    /// A problem that is not one case's.
    pub fn problem(&mut self, text: String) {
        self.failures.push(text);
    }

    /// How many cases were compared and how many problems seen so far.
    pub fn counts(&self) -> (usize, usize) {
        (self.cases, self.failures.len())
    }

    /// Prints every difference and fails the test if there is one.
    pub fn finish(self) {
        let n = self.failures.len();
        for f in &self.failures {
            eprintln!("MISMATCH {f}\n");
        }
        eprintln!("{} cases compared, {n} differ", self.cases);
        assert_eq!(n, 0, "{n} cases differ from etcdctl");
    }
}
