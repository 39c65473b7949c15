//! cairnctl's `lease` commands against etcdctl 3.5.1, byte for byte.
//!
//! As in `etcdctl_compat.rs`: two real etcd 3.5.1 servers A and B; each case runs etcdctl
//! against A, then cairnctl against B. Lease ids are chosen by each server, so each side
//! substitutes its own ids into the commands (`{L0}`, `{L1}`, ...: the n-th lease its
//! grants printed) and its output names them back as `LEASEn`, in hex and decimal. B's
//! member and cluster ids and ports become A's, remaining TTLs (they depend on when a case
//! ran) are masked, and the Go client's log line timestamps and pointers too.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};

use common::{replace, varint, Etcd};

struct Side {
    etcd: Etcd,
    bin: PathBuf,
    /// The real etcdctl, to list the leases a grant made whatever it printed.
    etcdctl: PathBuf,
    ids: (u64, u64),
    leases: Vec<i64>,
}

/// Replaces the digits after each occurrence of `key` with `N`.
fn mask_after(text: &str, key: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find(key) {
        out.push_str(&rest[..i + key.len()]);
        rest = &rest[i + key.len()..];
        let end = rest
            .find(|c: char| !c.is_ascii_digit() && c != '-')
            .unwrap_or(rest.len());
        if end > 0 {
            out.push('N');
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

impl Side {
    fn run(&mut self, args: &[&str]) -> (String, String, i32) {
        let args: Vec<String> = args
            .iter()
            .map(|a| {
                let mut a = a.to_string();
                for (n, id) in self.leases.iter().enumerate() {
                    a = a.replace(&format!("{{L{n}}}"), &format!("{id:x}"));
                }
                a
            })
            .collect();
        let mut cmd = Command::new(&self.bin);
        for (k, _) in std::env::vars() {
            if k.starts_with("ETCDCTL_") {
                cmd.env_remove(k);
            }
        }
        let out = cmd
            .env("ETCDCTL_ENDPOINTS", &self.etcd.endpoint)
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        if args.len() >= 2 && args[0] == "lease" && args[1] == "grant" {
            self.learn_leases();
        }
        (
            self.normalize(&out.stdout),
            self.normalize(&out.stderr),
            out.status.code().unwrap_or(-1),
        )
    }

    /// Adds the leases the server has and this side does not know yet.
    fn learn_leases(&mut self) {
        let out = Command::new(&self.etcdctl)
            .args(["--endpoints", &self.etcd.endpoint, "lease", "list"])
            .output()
            .unwrap();
        let mut new: Vec<i64> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .skip(1)
            .filter_map(|l| i64::from_str_radix(l.trim(), 16).ok())
            .filter(|id| !self.leases.contains(id))
            .collect();
        new.sort();
        self.leases.extend(new);
    }

    /// Names this side's ids and ports as A's (`to`), its leases as `LEASEn`, and masks
    /// what depends on time.
    fn normalize(&self, b: &[u8]) -> String {
        let mut v = b.to_vec();
        for (n, id) in self.leases.iter().enumerate() {
            let name = format!("LEASE{n}");
            v = replace(&v, format!("{id:016x}").as_bytes(), name.as_bytes());
            v = replace(&v, id.to_string().as_bytes(), name.as_bytes());
        }
        v = replace(&v, self.etcd.endpoint.as_bytes(), b"ENDPOINT");
        for (id, name) in [(self.ids.0, "ID0"), (self.ids.1, "ID1")] {
            v = replace(&v, id.to_string().as_bytes(), name.as_bytes());
            v = replace(&v, format!("{id:x}").as_bytes(), name.as_bytes());
            v = replace(&v, &varint(id), name.as_bytes());
        }
        let mut s = String::from_utf8_lossy(&v).into_owned();
        for key in ["remaining(", "\"ttl\":", "\"TTL\" : "] {
            s = mask_after(&s, key);
        }
        let mut lines = Vec::new();
        for line in s.split_inclusive('\n') {
            let mut l = line.to_string();
            if let Some(i) = l.find("\"ts\":\"") {
                let end = l[i + 6..].find('"').map_or(l.len(), |e| i + 6 + e + 1);
                l.replace_range(i..end, "TS");
            }
            while let Some(i) = l.find("0xc0") {
                let end = l[i..]
                    .find(|c: char| !c.is_ascii_hexdigit() && c != 'x')
                    .map_or(l.len(), |e| i + e);
                l.replace_range(i..end, "PTR");
            }
            lines.push(l);
        }
        lines.concat()
    }
}

#[test]
fn cairnctl_lease_commands_match_etcdctl() {
    let (Some(etcd), Some(etcdctl)) = (common::etcd_bin(), common::etcdctl_bin()) else {
        panic!("etcd/etcdctl 3.5.1 not found: run scripts/setup");
    };
    let side = |bin: PathBuf| {
        let e = Etcd::start(&etcd, "t");
        let ids = e.ids();
        Side {
            etcd: e,
            bin,
            etcdctl: etcdctl.clone(),
            ids,
            leases: vec![],
        }
    };
    let mut a = side(etcdctl.clone());
    let mut b = side(PathBuf::from(env!("CARGO_BIN_EXE_cairnctl")));
    let cases: Vec<Vec<&str>> = vec![
        vec!["lease", "--help"],
        vec!["lease"],
        vec!["lease", "grant", "--help"],
        vec!["lease", "revoke", "--help"],
        vec!["lease", "timetolive", "--help"],
        vec!["lease", "list", "--help"],
        vec!["lease", "keep-alive", "--help"],
        vec!["lease", "grant"],
        vec!["lease", "grant", "x"],
        vec!["lease", "grant", "1", "2"],
        vec!["lease", "grant", "9000000001"],
        vec!["lease", "revoke"],
        vec!["lease", "revoke", "zz"],
        vec!["lease", "revoke", "1234"],
        vec!["lease", "timetolive"],
        vec!["lease", "timetolive", "zz"],
        vec!["lease", "timetolive", "--", "-1"],
        vec!["lease", "timetolive", "1234", "--keys=x"],
        vec!["lease", "keep-alive"],
        vec!["lease", "keep-alive", "zz"],
        vec!["lease", "keep-alive", "--once=maybe", "1"],
        vec!["lease", "keep-alive", "--once", "1234"],
        vec!["lease", "keep-alive", "1234"],
        vec!["lease", "keep-alive", "1234", "-w", "json"],
        // L0 .. L5.
        vec!["lease", "grant", "100"],
        vec!["lease", "grant", "200", "-w", "json"],
        vec!["lease", "grant", "300", "-w", "fields"],
        vec!["lease", "grant", "400", "-w", "protobuf"],
        vec!["lease", "grant", "500", "-w", "table"],
        vec!["lease", "grant", "--", "-5"],
        vec!["put", "k1", "v1", "--lease", "{L0}"],
        vec!["put", "k2", "v2", "--lease", "{L1}"],
    ];
    let mut all = cases;
    for w in ["simple", "json", "fields", "table", "protobuf"] {
        all.push(vec!["lease", "timetolive", "{L0}", "--keys", "-w", w]);
        all.push(vec!["lease", "timetolive", "{L1}", "-w", w]);
        all.push(vec!["lease", "timetolive", "abc", "-w", w]);
        all.push(vec!["lease", "list", "-w", w]);
        all.push(vec!["lease", "keep-alive", "--once", "{L0}", "-w", w]);
    }
    all.push(vec!["lease", "revoke", "{L1}"]);
    all.push(vec!["lease", "revoke", "{L2}", "-w", "json"]);
    all.push(vec!["lease", "revoke", "{L3}", "-w", "fields"]);
    all.push(vec!["lease", "revoke", "{L4}", "-w", "protobuf"]);
    all.push(vec!["lease", "revoke", "{L5}", "-w", "table"]);
    all.push(vec!["lease", "revoke", "{L1}"]);
    all.push(vec!["get", "k", "--prefix", "-w", "json"]);
    all.push(vec!["lease", "list"]);

    let mut failures = Vec::new();
    for args in &all {
        let want = a.run(args);
        let got = b.run(args);
        if want != got {
            failures.push(format!(
                "{args:?}\n  etcdctl:  {want:?}\n  cairnctl: {got:?}"
            ));
        }
    }
    for f in &failures {
        eprintln!("MISMATCH {f}\n");
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ",
        failures.len(),
        all.len()
    );
}
