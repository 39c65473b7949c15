//! cairnctl's `lease` commands against etcdctl 3.5.1, byte for byte.
//!
//! As in `kv_maintenance_compat.rs`: two real etcd 3.5.1 servers A and B; each case runs etcdctl
//! against A, then cairnctl against B. Lease ids are chosen by each server, so each side
//! substitutes its own ids into the commands (`{L0}`, `{L1}`, ...: the n-th lease its
//! grants printed) and its output names them back as `LEASEn`, in hex and decimal. B's
//! member and cluster ids and ports become A's, remaining TTLs (they depend on when a case
//! ran) are masked, and the Go client's log line timestamps and pointers too.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;

use cairn_tests::mask::{mask, mask_number_after};
use cairn_tests::{etcdctl35, Ids, Kind, ServerProc};
use common::{ctl_command, replace, varint, Report};

struct Side {
    etcd: ServerProc,
    bin: PathBuf,
    ids: Ids,
    leases: Vec<i64>,
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
        let mut cmd = ctl_command(&self.bin, Some(&self.etcd.endpoint()));
        cmd.args(&args);
        let out = common::run(cmd, b"");
        if args.len() >= 2 && args[0] == "lease" && args[1] == "grant" {
            self.learn_leases();
        }
        (
            self.normalize(&out.stdout),
            self.normalize(&out.stderr),
            out.code,
        )
    }

    /// Adds the leases the server has and this side does not know yet.
    fn learn_leases(&mut self) {
        let out = etcdctl35(&self.etcd.endpoint(), &["lease", "list"]);
        let mut new: Vec<i64> = out
            .stdout
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
        v = replace(&v, self.etcd.endpoint().as_bytes(), b"ENDPOINT");
        for (id, name) in [(self.ids.cluster, "ID0"), (self.ids.member, "ID1")] {
            v = replace(&v, id.to_string().as_bytes(), name.as_bytes());
            v = replace(&v, format!("{id:x}").as_bytes(), name.as_bytes());
            v = replace(&v, &varint(id), name.as_bytes());
        }
        let mut s = mask(&v);
        for key in ["remaining(", "\"ttl\":", "\"TTL\" : "] {
            s = mask_number_after(&s, key);
        }
        s
    }
}

#[test]
fn cairnctl_lease_commands_match_etcdctl() {
    let side = |bin: PathBuf| {
        let etcd = ServerProc::start(Kind::Etcd35, &[]);
        let ids = etcd.ids();
        Side {
            etcd,
            bin,
            ids,
            leases: vec![],
        }
    };
    let mut a = side(common::etcdctl());
    let mut b = side(common::cairnctl());
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

    let mut report = Report::default();
    for args in &all {
        let want = a.run(args);
        let got = b.run(args);
        let problems = common::differences((&want.0, &want.1, want.2), (&got.0, &got.1, got.2));
        report.case(&format!("{args:?}"), problems);
    }
    report.finish();
}
