//! cairnctl's KV, transaction, compaction and maintenance commands (and its help and
//! argument errors) against etcdctl 3.5.1, byte for byte.
//!
//! Two real etcd 3.5.1 servers, A and B, are started alike; each case runs `etcdctl`
//! against A and then `cairnctl` against B, so both see the same requests in the same
//! order and reach the same revisions. cairnctl's output is then rewritten from B's
//! identity to A's (ports, cluster and member IDs in decimal, hex and protobuf varint
//! form); timestamps, Go pointers and measured durations are masked on both sides.
//! stdout, stderr and the exit code must then be identical.
//!
//! A missing etcd/etcdctl 3.5.1 fails the test (run `scripts/setup`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};

use cairn_tests::mask::{mask, mask_measured};
use cairn_tests::{Ids, ServerProc};
use common::{ctl_command, rewrite_server, Report};

struct Side {
    etcd: ServerProc,
    ids: Ids,
    cwd: tempfile::TempDir,
}

impl Side {
    fn new((etcd, ids): (ServerProc, Ids)) -> Side {
        Side {
            etcd,
            ids,
            cwd: tempfile::tempdir().unwrap(),
        }
    }

    /// Runs `bin` with `env` and `args` against this side's server, `stdin` as its input.
    fn run(&self, bin: &Path, env: &[(&str, &str)], args: &[&str], stdin: &[u8]) -> common::Run {
        let mut cmd = ctl_command(bin, Some(&self.etcd.endpoint()));
        cmd.envs(env.iter().copied())
            .args(args)
            .current_dir(self.cwd.path());
        common::run(cmd, stdin)
    }
}

/// Masks what differs from run to run: timestamps, Go pointers, what the servers measured.
fn masked(b: &[u8]) -> String {
    mask_measured(&mask(b))
}

struct Compat {
    etcdctl: PathBuf,
    cairnctl: PathBuf,
    a: Side,
    b: Side,
    report: Report,
}

impl Compat {
    /// B's output as if printed against A.
    fn normalize(&self, b: &[u8]) -> Vec<u8> {
        let (a, b_) = (&self.a, &self.b);
        rewrite_server(b, (&b_.etcd, b_.ids), (&a.etcd, a.ids), &[])
    }

    fn case_env(&mut self, env: &[(&str, &str)], args: &[&str], stdin: &[u8]) {
        let want = self.a.run(&self.etcdctl, env, args, stdin);
        let got = self.b.run(&self.cairnctl, env, args, stdin);
        let (wo, go) = (masked(&want.stdout), masked(&self.normalize(&got.stdout)));
        let (we, ge) = (masked(&want.stderr), masked(&self.normalize(&got.stderr)));
        let problems = common::differences((&wo, &we, want.code), (&go, &ge, got.code));
        self.report.case(&format!("{env:?} {args:?}"), problems);
    }

    fn case(&mut self, args: &[&str]) {
        self.case_env(&[], args, b"");
    }

    fn case_in(&mut self, args: &[&str], stdin: &str) {
        self.case_env(&[], args, stdin.as_bytes());
    }
}

const FORMATS: [&str; 5] = ["simple", "json", "fields", "table", "protobuf"];

#[test]
fn cairnctl_matches_etcdctl() {
    let a = Side::new(common::etcd_where(&[], |_| true));
    // IDs are rewritten from B's to A's, also inside protobuf output, where only IDs of
    // the same varint length keep the enclosing lengths right.
    let b = Side::new(common::etcd_where(&[], |b| {
        common::same_id_lengths(a.ids, b)
    }));
    let mut c = Compat {
        etcdctl: common::etcdctl(),
        cairnctl: common::cairnctl(),
        a,
        b,
        report: Report::default(),
    };

    // Help and argument errors.
    c.case(&["--help"]);
    for cmd in [
        "get",
        "put",
        "del",
        "txn",
        "compaction",
        "defrag",
        "version",
        "endpoint",
        "alarm",
        "member",
        "snapshot",
    ] {
        c.case(&[cmd, "--help"]);
    }
    for cmd in [
        ["endpoint", "status"],
        ["endpoint", "health"],
        ["endpoint", "hashkv"],
        ["alarm", "list"],
        ["alarm", "disarm"],
        ["member", "list"],
        ["snapshot", "save"],
    ] {
        c.case(&[cmd[0], cmd[1], "--help"]);
    }
    c.case(&["endpoint"]);
    c.case(&["foo"]);
    c.case(&["gett"]);
    c.case(&["get"]);
    c.case(&["get", "--bogus"]);
    c.case(&["get", "-x", "k"]);
    c.case(&["get", "k", "-w"]);
    c.case(&["get", "k", "--limit=abc"]);
    c.case(&["get", "k", "--prefix=maybe"]);
    c.case(&["get", "k", "--dial-timeout=abc"]);
    c.case(&["get", "k", "--prefix", "--from-key"]);
    c.case(&["get", "k", "z", "--prefix"]);
    c.case(&["get", "k", "-w", "xml"]);
    c.case(&["get", "k", "--consistency=x"]);
    c.case(&["get", "k", "--sort-by=xx"]);
    c.case(&["get", "k", "--order=xx"]);
    c.case(&["put"]);
    c.case(&["put", "k", "v", "--lease=zz"]);
    c.case(&["put", "k", "v", "--ignore-value"]);
    c.case(&["del"]);
    c.case(&["del", "a", "b", "c"]);
    c.case(&["compaction"]);
    c.case(&["compaction", "abc"]);
    c.case(&["snapshot", "save"]);
    c.case(&["txn", "extra"]);
    c.case(&["version"]);

    // Writes and reads in every format.
    c.case(&["put", "foo", "bar"]);
    for w in FORMATS {
        c.case(&["put", "foo", &format!("bar-{w}"), "--prev-kv", "-w", w]);
    }
    c.case_in(&["put", "bin"], "\u{0}\u{1}\u{7f}%d<&>");
    c.case(&["put", "fo1", "a b\tc\"d"]);
    c.case(&["put", "zz", "é☃"]);
    for w in FORMATS {
        for extra in [
            &[][..],
            &["--hex"][..],
            &["--prefix", "f"][..],
            &["--keys-only"][..],
        ] {
            let mut args = vec!["get", "foo", "-w", w];
            if extra.len() == 2 {
                args = vec!["get", "-w", w, extra[0], extra[1]];
            } else {
                args.extend_from_slice(extra);
            }
            c.case(&args);
        }
        c.case(&["get", "bin", "-w", w]);
        c.case(&["get", "zz", "-w", w, "--hex"]);
        c.case(&["get", "", "--from-key", "-w", w]);
        c.case(&["get", "nothing", "-w", w]);
        c.case(&["get", "a", "g", "-w", w, "--count-only"]);
        c.case(&["get", "foo", "-w", w, "--print-value-only"]);
    }
    c.case(&["get", "", "--prefix", "--limit", "2"]);
    c.case(&["get", "", "--prefix", "--sort-by=VALUE", "--order=DESCEND"]);
    c.case(&["get", "", "--prefix", "--sort-by=create", "--order=ascend"]);
    c.case(&["get", "", "--prefix", "--order=DESCEND"]);
    c.case(&["get", "foo", "--rev", "2"]);
    c.case(&["get", "foo", "--rev", "1000"]);
    c.case(&["get", "foo", "--consistency=s"]);
    c.case(&["--write-out=json", "get", "foo"]);
    c.case_env(&[("ETCDCTL_WRITE_OUT", "fields")], &["get", "foo"], b"");
    c.case_env(&[("ETCDCTL_HEX", "true")], &["get", "foo"], b"");
    c.case_env(&[("ETCDCTL_BOGUS", "1")], &["get", "foo"], b"");
    c.case_env(&[("ETCDCTL_DIAL_TIMEOUT", "3s")], &["get", "foo"], b"");

    // Deletes.
    for w in FORMATS {
        c.case(&["del", "nothing", "-w", w]);
    }
    c.case(&["put", "d1", "1"]);
    c.case(&["put", "d2", "2"]);
    c.case(&["del", "d", "--prefix", "--prev-kv", "-w", "json"]);
    c.case(&["put", "d3", "3"]);
    c.case(&["del", "d3", "--prev-kv"]);

    // Transactions.
    let txn =
        "value(\"foo\") = \"bar-protobuf\"\n\nput t1 v1\nget foo\ndel nothing\n\nput t2 v2\n\n";
    for w in FORMATS {
        c.case_in(&["txn", "-w", w], txn);
    }
    c.case_in(&["txn", "-i"], txn);
    c.case_in(&["txn"], "mod(\"foo\") > \"5\"\nver(\"foo\") != \"0\"\ncreate(\"t1\") < \"1000\"\n\nget t --prefix\n\nput t3 x\n\n");
    c.case_in(
        &["txn"],
        "val(\"foo\") = \"no\"\n\n\nput t4 'hello world'\nget t4\n\n",
    );
    c.case_in(&["txn"], "\nput a b\nput a c\n\n\n");
    c.case_in(&["txn"], "bogus\n\n\n\n");
    c.case_in(&["txn"], "ver(\"k\") = \"x\"\n\n\n\n");
    c.case_in(&["txn"], "ver(\"k\") =\n\n\n\n");
    c.case_in(&["txn"], "ver(\"k\")=\"0\"\n\n\n\n");
    c.case_in(&["txn"], "foo(\"k\") = \"1\"\n\n\n\n");
    c.case_in(&["txn"], "\nput a\n\n\n");
    c.case_in(&["txn"], "\nput\n\n\n");
    c.case_in(&["txn"], "\nput a b\n");

    // Compaction.
    c.case(&["compaction", "3"]);
    c.case(&["compaction", "3"]);
    c.case(&["compaction", "2", "--physical"]);
    c.case(&["get", "foo", "--rev", "2"]);

    // Maintenance.
    for w in FORMATS {
        c.case(&["endpoint", "status", "-w", w]);
        c.case(&["endpoint", "health", "-w", w]);
        c.case(&["endpoint", "hashkv", "-w", w]);
        c.case(&["member", "list", "-w", w]);
        c.case(&["alarm", "list", "-w", w]);
    }
    c.case(&["endpoint", "status", "--cluster"]);
    c.case(&["endpoint", "hashkv", "--rev", "5"]);
    c.case(&["member", "list", "-w", "json", "--hex"]);
    c.case(&["alarm", "disarm"]);
    c.case(&["alarm", "disarm", "-w", "json"]);
    c.case(&["defrag"]);
    c.case(&["defrag", "-w", "json"]);
    c.case(&["snapshot", "save", "snap.db"]);
    // A response past gRPC's default 4 MiB: five values of 1 MiB (under the server's
    // 1.5 MiB request limit each), read back at once as etcdctl reads them.
    for i in 0..5u8 {
        let value: String = (0..1 << 20)
            .map(|j| char::from(b'a' + (j % 23) as u8 + i))
            .collect();
        c.case_in(&["put", &format!("big/{i}")], &value);
    }
    c.case(&["get", "big/", "--prefix", "-w", "json"]);
    c.case(&["get", "big/", "--prefix", "--keys-only"]);

    c.report.finish();
}
