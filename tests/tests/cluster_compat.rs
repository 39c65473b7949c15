//! The real etcdctl 3.5 runs the cluster commands (member list/add/update/remove/promote,
//! move-leader, endpoint health/status --cluster) against a 3-member etcd 3.5.1 cluster and a
//! 3-member cairn cluster; what it prints must be the same once member ids, the cluster id,
//! ports and sizes are replaced by names, and lines whose order follows member ids are
//! sorted.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use cairn_tests::{
    block_on, etcdctl35, etcdctl35_membership, free_port, leader, leader_among, wait_until,
    Cluster, Kind, Run, ServerProc,
};

/// Starts three members of `kind` named m0..m2 and waits until all serve.
fn start_cluster(kind: Kind) -> Vec<ServerProc> {
    Cluster::start_kind(kind, 3, &[]).members
}

/// Names for everything that legitimately differs between the two clusters.
struct Names {
    /// (text to replace, name), longest first.
    pairs: Vec<(String, String)>,
}

impl Names {
    fn new() -> Names {
        Names { pairs: Vec::new() }
    }

    fn id(&mut self, id: u64, name: &str) {
        // etcdctl pads ids to 16 columns after "Member " and "cluster ".
        for word in ["Member", "cluster"] {
            self.pairs
                .push((format!("{word} {id:16x}"), format!("{word} ID-{name}")));
        }
        self.pairs.push((format!("{id:x}"), format!("ID-{name}")));
        self.pairs.push((id.to_string(), format!("ID-{name}")));
    }

    fn text(&mut self, from: String, to: &str) {
        self.pairs.push((from, to.to_string()));
    }

    fn apply(&self, t: &str) -> String {
        let mut pairs = self.pairs.clone();
        pairs.sort_by_key(|(from, _)| std::cmp::Reverse(from.len()));
        let mut t = t.to_string();
        for (from, to) in &pairs {
            t = t.replace(from, to);
        }
        t
    }
}

/// Learns the ids of the members and of the cluster from `member list -w json`.
fn learn(members: &[ServerProc], names: &mut Names) -> BTreeMap<String, u64> {
    let r = etcdctl35(&members[0].endpoint(), &["member", "list", "-w", "json"]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    names.id(v["header"]["cluster_id"].as_u64().unwrap(), "CLUSTER");
    let mut ids = BTreeMap::new();
    for m in v["members"].as_array().unwrap() {
        let name = m["name"].as_str().unwrap().to_string();
        let id = m["ID"].as_u64().unwrap();
        names.id(id, &name);
        ids.insert(name, id);
    }
    for m in members {
        names.text(
            format!("127.0.0.1:{}", m.client_port),
            &format!("CLIENT-{}", m.name),
        );
        names.text(
            format!("127.0.0.1:{}", m.peer_port),
            &format!("PEER-{}", m.name),
        );
    }
    ids
}

/// What a run printed, with names in, log lines out, and lines sorted when `sorted`.
fn normal(names: &Names, r: &Run, sorted: bool) -> (String, String, i32) {
    let clean = |t: &str| {
        let mut lines: Vec<String> = t
            .lines()
            .filter(|l| !l.starts_with("{\"level\""))
            .map(|l| names.apply(l))
            .map(|l| match l.find("took = ") {
                Some(i) => l[..i + 7].to_string(),
                None => l,
            })
            // Ids of different lengths pad table cells differently.
            .map(|l| {
                if l.starts_with('|') {
                    l.split_whitespace().collect::<Vec<_>>().join(" ")
                } else if l.starts_with('+') {
                    l.split('-')
                        .filter(|s| !s.is_empty())
                        .collect::<Vec<_>>()
                        .join("-")
                } else {
                    l
                }
            })
            .collect();
        if sorted {
            lines.sort();
        }
        lines.join("\n")
    };
    (clean(&r.stdout), clean(&r.stderr), r.code)
}

/// Waits until `member list` on the first member shows `n` members, all with names.
fn wait_members(members: &[ServerProc], n: usize) {
    wait_until(Duration::from_secs(20), format!("{n} members"), || {
        let r = etcdctl35(&members[0].endpoint(), &["member", "list"]);
        if r.stdout.lines().count() == n {
            Ok(())
        } else {
            Err(r)
        }
    });
}

#[test]
fn etcdctl_sees_a_cairn_cluster_as_an_etcd_cluster() {
    let etcd = start_cluster(Kind::Etcd35);
    let cairn = start_cluster(Kind::Cairn);
    let mut en = Names::new();
    let mut cn = Names::new();
    let eids = learn(&etcd, &mut en);
    let cids = learn(&cairn, &mut cn);
    let compare = |args: &[&str], sorted: bool, en: &Names, cn: &Names| {
        let want = normal(en, &etcd35_at(&etcd, args), sorted);
        let got = normal(cn, &etcd35_at(&cairn, args), sorted);
        assert_eq!(got, want, "etcdctl {args:?} differs");
    };

    compare(&["member", "list"], true, &en, &cn);
    compare(&["member", "list", "-w", "table"], true, &en, &cn);
    compare(&["endpoint", "health", "--cluster"], true, &en, &cn);

    // A learner joins the list (its process is never started).
    let (ep3, cp3) = (free_port(), free_port());
    en.text(format!("127.0.0.1:{ep3}"), "PEER-m3");
    cn.text(format!("127.0.0.1:{cp3}"), "PEER-m3");
    let add = |members: &[ServerProc], port: u16, learner: bool| {
        let url = format!("--peer-urls=http://127.0.0.1:{port}");
        let mut args = vec!["member", "add", "m3", url.as_str()];
        if learner {
            args.push("--learner");
        }
        // The first change waits until the peers have been connected for 5 s.
        let r = etcdctl35_membership(&members[0].endpoint(), &args);
        let id = r
            .stdout
            .lines()
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .map(|h| u64::from_str_radix(h, 16).unwrap())
            .unwrap_or_else(|| panic!("member add failed: {r:?}"));
        (r, id)
    };
    let (er, eid3) = add(&etcd, ep3, true);
    let (cr, cid3) = add(&cairn, cp3, true);
    en.id(eid3, "m3");
    cn.id(cid3, "m3");
    // ETCD_INITIAL_CLUSTER lists members in id order, which differs: compare it sorted.
    let sort_initial = |(out, err, code): (String, String, i32)| {
        let out = out
            .lines()
            .map(|l| match l.strip_prefix("ETCD_INITIAL_CLUSTER=\"") {
                Some(rest) => {
                    let mut parts: Vec<&str> = rest.trim_end_matches('"').split(',').collect();
                    parts.sort();
                    format!("ETCD_INITIAL_CLUSTER=\"{}\"", parts.join(","))
                }
                None => l.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n");
        (out, err, code)
    };
    assert_eq!(
        sort_initial(normal(&cn, &cr, false)),
        sort_initial(normal(&en, &er, false))
    );
    wait_members(&etcd, 4);
    wait_members(&cairn, 4);
    compare(&["member", "list"], true, &en, &cn);

    // The learner never started, so neither promotes it.
    let promote = |members: &[ServerProc], id: u64| {
        let lead = &members[leader(members)];
        etcdctl35(&lead.endpoint(), &["member", "promote", &format!("{id:x}")])
    };
    assert_eq!(
        normal(&cn, &promote(&cairn, cid3), false),
        normal(&en, &promote(&etcd, eid3), false)
    );

    // Remove the learner (twice: the second time it is not a member).
    let remove = |members: &[ServerProc], id: u64| {
        etcdctl35(
            &members[0].endpoint(),
            &["member", "remove", &format!("{id:x}")],
        )
    };
    assert_eq!(
        normal(&cn, &remove(&cairn, cid3), false),
        normal(&en, &remove(&etcd, eid3), false)
    );
    assert_eq!(
        normal(&cn, &remove(&cairn, cid3), false),
        normal(&en, &remove(&etcd, eid3), false)
    );
    wait_members(&etcd, 3);
    wait_members(&cairn, 3);

    // A voter that never starts: add, update its peer URLs, remove. (Not a learner: etcd
    // 3.5.1 lists an updated learner as a voter, which cairn does not copy.)
    let (e4, c4) = (free_port(), free_port());
    en.text(format!("127.0.0.1:{e4}"), "PEER-m4");
    cn.text(format!("127.0.0.1:{c4}"), "PEER-m4");
    let (er, eid4) = add(&etcd, e4, false);
    let (cr, cid4) = add(&cairn, c4, false);
    en.id(eid4, "m4");
    cn.id(cid4, "m4");
    assert_eq!(
        sort_initial(normal(&cn, &cr, false)),
        sort_initial(normal(&en, &er, false))
    );
    wait_members(&etcd, 4);
    wait_members(&cairn, 4);
    let (eu, cu) = (free_port(), free_port());
    en.text(format!("127.0.0.1:{eu}"), "PEER-m4b");
    cn.text(format!("127.0.0.1:{cu}"), "PEER-m4b");
    let update = |members: &[ServerProc], id: u64, port: u16| {
        etcdctl35(
            &members[0].endpoint(),
            &[
                "member",
                "update",
                &format!("{id:x}"),
                &format!("--peer-urls=http://127.0.0.1:{port}"),
            ],
        )
    };
    assert_eq!(
        normal(&cn, &update(&cairn, cid4, cu), false),
        normal(&en, &update(&etcd, eid4, eu), false)
    );
    compare(&["member", "list"], true, &en, &cn);
    assert_eq!(
        normal(&cn, &remove(&cairn, cid4), false),
        normal(&en, &remove(&etcd, eid4), false)
    );
    wait_members(&etcd, 3);
    wait_members(&cairn, 3);
    compare(&["member", "list", "-w", "table"], true, &en, &cn);

    // Move leadership to m2 (or m1 if m2 leads): the message names both members.
    let move_to = |members: &[ServerProc], ids: &BTreeMap<String, u64>, names: &Names| {
        let from = members[leader(members)].name.as_str();
        let to = if from == "m2" { "m1" } else { "m2" };
        let eps: Vec<String> = members.iter().map(|m| m.endpoint()).collect();
        let r = etcdctl35(&eps.join(","), &["move-leader", &format!("{:x}", ids[to])]);
        let (out, err, code) = normal(names, &r, false);
        (
            out.replace(&format!("ID-{from}"), "FROM"),
            err,
            code,
            to.to_string(),
        )
    };
    let want = move_to(&etcd, &eids, &en);
    let got = move_to(&cairn, &cids, &cn);
    assert_eq!(
        (got.0.replace(&format!("ID-{}", got.3), "TO"), got.1, got.2),
        (
            want.0.replace(&format!("ID-{}", want.3), "TO"),
            want.1,
            want.2
        )
    );
}

/// Runs etcdctl 3.5 against every member of a cluster.
fn etcd35_at(members: &[ServerProc], args: &[&str]) -> Run {
    let eps: Vec<String> = members.iter().map(|m| m.endpoint()).collect();
    etcdctl35(&eps.join(","), args)
}

/// What etcdctl shows of a run: stdout, its `Error:` line, the gRPC errors its retry
/// interceptor logged, and the exit code.
fn errors_shown(r: &Run) -> (String, Vec<String>, i32) {
    let logged = r
        .stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["error"].as_str().map(str::to_string))
        .collect();
    let error = r
        .stderr
        .lines()
        .filter(|l| l.starts_with("Error:"))
        .collect::<Vec<_>>()
        .join("\n");
    (format!("{}{error}", r.stdout), logged, r.code)
}

#[test]
fn without_a_leader_requests_wait_and_fail_as_etcd() {
    let mut etcd = start_cluster(Kind::Etcd35);
    let mut cairn = start_cluster(Kind::Cairn);
    for members in [&mut etcd, &mut cairn] {
        let r = etcd35_at(members, &["put", "k", "v"]);
        assert_eq!(r.code, 0, "{r:?}");
        members[1].kill9();
        members[2].kill9();
    }
    // A leader among the dead loses the survivor; a surviving leader steps down
    // (check-quorum): the survivor's status names no leader.
    for members in [&etcd, &cairn] {
        wait_until(
            Duration::from_secs(10),
            format!("{:?} m0 to have no leader", members[0].kind),
            || {
                let r = etcdctl35(&members[0].endpoint(), &["endpoint", "status"]);
                if r.stdout.trim_end().ends_with("etcdserver: no leader") {
                    Ok(())
                } else {
                    Err(r)
                }
            },
        );
    }
    let cases: &[&[&str]] = &[
        // etcdctl gives up first (5 s), while the proposal still waits for a leader.
        &["put", "k", "v2"],
        // The server gives up first: a proposal that never found a leader.
        &["--command-timeout=10s", "put", "k", "v3"],
        // A linearizable read times out on the server and is retried by the client.
        &["--command-timeout=10s", "get", "k"],
        // Serializable reads are local and need no leader.
        &["get", "k", "--consistency=s", "--print-value-only"],
    ];
    let (want, got): (Vec<_>, Vec<_>) = std::thread::scope(|s| {
        let runs: Vec<_> = cases
            .iter()
            .map(|args| {
                let e = etcd[0].endpoint();
                let c = cairn[0].endpoint();
                (
                    s.spawn(move || etcdctl35(&e, args)),
                    s.spawn(move || etcdctl35(&c, args)),
                )
            })
            .collect();
        runs.into_iter()
            .map(|(e, c)| (e.join().unwrap(), c.join().unwrap()))
            .unzip()
    });
    for (i, ((args, want), got)) in cases.iter().zip(&want).zip(&got).enumerate() {
        let (mut want, mut got) = (errors_shown(want), errors_shown(got));
        if i == 0 {
            // The client's 5 s deadline and the server's view of it expire together; etcd
            // answers either way run to run (DeadlineExceeded from the client, or Unknown
            // from the server): both mean the same to the user.
            for shown in [&mut want, &mut got] {
                let unify = |t: &str| {
                    t.replace(
                        "rpc error: code = Unknown desc = context deadline exceeded",
                        "context deadline exceeded",
                    )
                    .replace(
                        "rpc error: code = DeadlineExceeded desc = context deadline exceeded",
                        "context deadline exceeded",
                    )
                };
                shown.0 = unify(&shown.0);
                shown.1 = shown.1.iter().map(|l| unify(l)).collect();
            }
        }
        if i == 2 {
            // The retry after the first timeout races the client's deadline against the
            // server's (etcd's own answer varies run to run): compare the first answer.
            want.0.clear();
            got.0.clear();
            want.1.truncate(1);
            got.1.truncate(1);
        }
        assert_eq!(got, want, "etcdctl {args:?}");
    }
    assert_eq!(want[3].stdout, "v\n");
    // Status answers, and names the missing leader among its errors.
    for members in [&etcd, &cairn] {
        let r = etcdctl35(&members[0].endpoint(), &["endpoint", "status"]);
        assert!(
            r.stdout.trim_end().ends_with("etcdserver: no leader"),
            "{r:?}"
        );
    }
}

#[test]
fn strict_reconfiguration_refuses_changes_while_a_member_is_down() {
    let mut etcd = start_cluster(Kind::Etcd35);
    let mut cairn = start_cluster(Kind::Cairn);
    // Both count a peer as connected only after 5 s of answering, and the refusals below
    // must come from the member that is down, not from a cluster too young. The time must
    // pass: only a membership change would show it from outside, and this test starts from
    // the membership it was started with.
    std::thread::sleep(Duration::from_secs(6));
    let mut en = Names::new();
    let mut cn = Names::new();
    let eids = learn(&etcd, &mut en);
    let cids = learn(&cairn, &mut cn);
    for (members, ids) in [(&mut etcd, &eids), (&mut cairn, &cids)] {
        let from: Vec<usize> = members.iter().map(|m| m.log_len()).collect();
        members[2].kill9();
        // Every survivor stops counting it as connected, and they have a leader (a new one
        // if it led).
        for i in 0..2 {
            members[i].wait_peer_lost(from[i], ids["m2"]);
        }
        let urls: Vec<String> = members.iter().map(|m| m.url()).collect();
        block_on(leader_among(&urls, &[0, 1], None));
    }
    let port = free_port();
    en.text(format!("127.0.0.1:{port}"), "PEER-new");
    cn.text(format!("127.0.0.1:{port}"), "PEER-new");
    let url = format!("--peer-urls=http://127.0.0.1:{port}");
    let (em1, cm1) = (format!("{:x}", eids["m1"]), format!("{:x}", cids["m1"]));
    let (em2, cm2) = (format!("{:x}", eids["m2"]), format!("{:x}", cids["m2"]));
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        // A voter, or a learner, may not join while a voter is unreachable.
        (
            vec!["member", "add", "new", &url],
            vec!["member", "add", "new", &url],
        ),
        (
            vec!["member", "add", "new", &url, "--learner"],
            vec!["member", "add", "new", &url, "--learner"],
        ),
        // Removing a live voter would leave one connected voter of two: refused.
        (
            vec!["member", "remove", &em1],
            vec!["member", "remove", &cm1],
        ),
        // The member that is down may go.
        (
            vec!["member", "remove", &em2],
            vec!["member", "remove", &cm2],
        ),
    ];
    for (eargs, cargs) in cases {
        let want = normal(&en, &etcdctl35(&etcd[0].endpoint(), &eargs), false);
        let got = normal(&cn, &etcdctl35(&cairn[0].endpoint(), &cargs), false);
        assert_eq!(got, want, "etcdctl {eargs:?}");
    }
}
