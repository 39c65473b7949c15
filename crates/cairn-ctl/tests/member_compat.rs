//! cairnctl's `member add|remove|update|promote` and `move-leader` against etcdctl 3.5.1,
//! byte for byte, on one real three-member etcd 3.5.1 cluster.
//!
//! Both tools talk to the same cluster, so IDs, ports and terms agree. A command that
//! changes membership is run by etcdctl, undone through the API, then run by cairnctl
//! from the same state. A member that cairnctl adds gets a new ID and peer URL: those are
//! rewritten to the ones etcdctl's run got, and the add is retried until the new ID sorts
//! among the members where etcdctl's did and has the same varint length, so that member
//! lists and protobuf output can be compared byte for byte.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use cairn_client::{Client, ClientConfig};
use cairn_proto::etcdserverpb::{
    Member, MemberAddRequest, MemberListRequest, MemberRemoveRequest, MemberUpdateRequest,
    MoveLeaderRequest,
};
use cairn_tests::mask::mask;
use cairn_tests::{free_port, leader_among, wait_until, Cluster, Kind};
use common::{ctl_command, replace, replace_id, varint, Report, Run};

const FORMATS: [&str; 5] = ["simple", "json", "fields", "table", "protobuf"];

/// Runs `bin` with `args` against `endpoints` (or the ones an `--endpoints` argument names:
/// with both, etcdctl fails).
fn run(bin: &Path, endpoints: &str, args: &[String]) -> Run {
    let named = args.iter().any(|a| a.starts_with("--endpoints"));
    let mut cmd = ctl_command(bin, (!named).then_some(endpoints));
    cmd.args(args);
    common::run(cmd, b"")
}

/// The cluster seen through the API, for setup and undo steps.
struct Api {
    rt: tokio::runtime::Runtime,
    endpoints: Vec<String>,
    /// The members' URLs and IDs, in the order of `endpoints`.
    urls: Vec<String>,
    ids: Vec<u64>,
}

/// Longest an API call may take: a call to a cluster that lost its quorum would otherwise
/// wait forever (etcd sets no deadline of its own on a linearizable read).
const CALL_TIMEOUT: Duration = Duration::from_secs(20);

/// The deadline of one attempt at a membership change, etcdctl's default command timeout.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// `req` with [`ATTEMPT_TIMEOUT`] as its gRPC deadline, which etcd takes as its own.
fn with_deadline<T>(req: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(req);
    req.set_timeout(ATTEMPT_TIMEOUT);
    req
}

/// Whether a call ended at its deadline rather than with etcd's answer.
fn timed_out(e: &tonic::Status) -> bool {
    e.code() == tonic::Code::DeadlineExceeded
        || e.message().contains("request timed out")
        || e.message().contains("context deadline exceeded")
}

impl Api {
    /// Runs `call` on the test's runtime, failing the test if it takes over
    /// [`CALL_TIMEOUT`].
    fn block_on<T>(&self, what: &str, call: impl std::future::Future<Output = T>) -> T {
        self.rt
            .block_on(async { tokio::time::timeout(CALL_TIMEOUT, call).await })
            .unwrap_or_else(|_| panic!("{what} took over {CALL_TIMEOUT:?}"))
    }

    fn client(&self, endpoint: &str) -> Client {
        self.block_on(
            "connect",
            Client::connect(ClientConfig::new([endpoint.to_string()])),
        )
        .unwrap()
    }

    fn members(&self) -> Vec<Member> {
        let c = self.client(&self.endpoints[0]);
        self.block_on(
            "member list",
            c.cluster()
                .member_list(MemberListRequest { linearizable: true }),
        )
        .unwrap()
        .into_inner()
        .members
    }

    fn find(&self, peer_url: &str) -> Option<u64> {
        self.members()
            .iter()
            .find(|m| m.peer_ur_ls.iter().any(|u| u == peer_url))
            .map(|m| m.id)
    }

    fn id_of(&self, peer_url: &str) -> u64 {
        self.find(peer_url)
            .unwrap_or_else(|| panic!("no member with peer URL {peer_url}"))
    }

    /// Runs a `member add` of `peer_url` with `bin` until the member is listed (at most
    /// 15 s), and returns that run and the member's ID. etcd refuses an add until its peers
    /// have been connected for 5 s ("unhealthy cluster"), and right after a removal, more so
    /// on a loaded machine, may refuse one for a moment ("member not found"); those refusals
    /// are not what the comparison is about.
    fn add_listed(
        &self,
        bin: &Path,
        endpoints: &str,
        args: &[String],
        peer_url: &str,
    ) -> (Run, u64) {
        wait_until(
            Duration::from_secs(15),
            format!("member add {peer_url} to be listed"),
            || {
                let r = run(bin, endpoints, args);
                match self.find(peer_url) {
                    Some(id) => Ok((r, id)),
                    None => Err(String::from_utf8_lossy(&r.stderr).into_owned()),
                }
            },
        )
    }

    /// As [`Self::add_listed`] with `args(peer_url)` for fresh peer URLs until the new
    /// member's ID has all 16 hex digits, and returns the run, the ID and the URL.
    ///
    /// The other tool's member must then be found with an ID of the same widths and place
    /// (tables and protobuf lengths follow them). An ID with a leading zero nibble (1 in 16)
    /// left only 1 in 64 tries comparable, 1 in 1024 with two: 300 tries then failed often
    /// enough to turn CI red ("no comparable member ID in 300 tries").
    fn add_full_width(
        &self,
        bin: &Path,
        endpoints: &str,
        args: impl Fn(&str) -> Vec<String>,
    ) -> (Run, u64, String) {
        for _ in 0..100 {
            let url = url(free_port());
            let (run, id) = self.add_listed(bin, endpoints, &args(&url), &url);
            if format!("{id:x}").len() == 16 {
                return (run, id, url);
            }
            self.remove(id);
        }
        panic!("no member ID with 16 hex digits in 100 adds");
    }

    fn add_learner(&self, peer_url: &str) -> u64 {
        let c = self.client(&self.endpoints[0]);
        let req = MemberAddRequest {
            peer_ur_ls: vec![peer_url.to_string()],
            is_learner: true,
        };
        // Right after a removal etcd may briefly answer "member not found": try again.
        wait_until(
            Duration::from_secs(10),
            "member add to be taken",
            || match self.block_on("member add", c.cluster().member_add(req.clone())) {
                Ok(r) => Ok(r.into_inner().member.unwrap().id),
                Err(e) if e.message() == "etcdserver: member not found" => Err(e),
                Err(e) => panic!("member add: {e:?}"),
            },
        )
    }

    fn remove(&self, id: u64) {
        let c = self.client(&self.endpoints[0]);
        self.conf_change("member remove", || {
            let mut cluster = c.cluster();
            async move {
                match cluster
                    .member_remove(with_deadline(MemberRemoveRequest { id }))
                    .await
                {
                    // An earlier attempt that timed out was applied after all.
                    Err(e) if e.message() == "etcdserver: member not found" => Ok(()),
                    r => r.map(drop),
                }
            }
        });
    }

    fn update(&self, id: u64, peer_url: &str) {
        let c = self.client(&self.endpoints[0]);
        let req = MemberUpdateRequest {
            id,
            peer_ur_ls: vec![peer_url.to_string()],
        };
        self.conf_change("member update", || {
            let (mut cluster, req) = (c.cluster(), req.clone());
            async move { cluster.member_update(with_deadline(req)).await.map(drop) }
        });
    }

    /// Runs a membership change that may be made again (`attempt`, each with
    /// [`ATTEMPT_TIMEOUT`]) until it succeeds, within [`CALL_TIMEOUT`].
    ///
    /// etcd waits for a membership change to be applied for as long as its caller waits
    /// (it sets no deadline of its own), and Raft drops one proposed while the leader has
    /// not yet applied the previous change: on a loaded machine, the change right after
    /// another can wait forever. etcdctl's 5 s command timeout ends it; here it is made
    /// again.
    fn conf_change<F: std::future::Future<Output = Result<(), tonic::Status>>>(
        &self,
        what: &str,
        attempt: impl Fn() -> F,
    ) {
        self.block_on(what, async {
            loop {
                match attempt().await {
                    Ok(()) => return,
                    Err(e) if timed_out(&e) => continue,
                    Err(e) => panic!("{what}: {e:?}"),
                }
            }
        })
    }

    /// The index of the member that leads.
    fn leader(&self) -> usize {
        let all: Vec<usize> = (0..self.urls.len()).collect();
        self.rt.block_on(leader_among(&self.urls, &all, None))
    }

    /// Moves leadership to member `target` (an ID), and waits until every member names it.
    fn move_leader(&self, target: u64) {
        let leader = self.leader();
        if self.ids[leader] != target {
            let c = self.client(&self.endpoints[leader]);
            self.block_on(
                "move leader",
                c.maintenance()
                    .move_leader(MoveLeaderRequest { target_id: target }),
            )
            .unwrap();
        }
        wait_until(CALL_TIMEOUT, format!("{target:x} to lead"), || {
            let now = self.ids[self.leader()];
            if now == target {
                Ok(())
            } else {
                Err(format!("{now:x} leads"))
            }
        });
    }
}

struct Compat {
    etcdctl: PathBuf,
    cairnctl: PathBuf,
    endpoints: String,
    report: Report,
}

impl Compat {
    /// Compares two runs once cairnctl's (`got`) has each ID of `ids` and then each text of
    /// `texts` rewritten from the first of its pair to the second.
    fn compare(
        &mut self,
        args: &[String],
        want: Run,
        got: Run,
        ids: &[(u64, u64)],
        texts: &[(&str, &str)],
    ) {
        let norm = |b: &[u8]| {
            let mut v = b.to_vec();
            for (from, to) in ids {
                v = replace_id(&v, *from, *to);
            }
            for (from, to) in texts {
                v = replace(&v, from.as_bytes(), to.as_bytes());
            }
            v
        };
        let (wo, go) = (mask(&want.stdout), mask(&norm(&got.stdout)));
        let (we, ge) = (mask(&want.stderr), mask(&norm(&got.stderr)));
        let problems = common::differences((&wo, &we, want.code), (&go, &ge, got.code));
        self.report.case(&format!("{args:?}"), problems);
    }

    /// A command that leaves the cluster as it found it (or fails): both tools alike.
    fn same_at(&mut self, endpoints: &str, args: &[&str]) {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let want = run(&self.etcdctl, endpoints, &args);
        let got = run(&self.cairnctl, endpoints, &args);
        self.compare(&args, want, got, &[], &[]);
    }

    fn same(&mut self, args: &[&str]) {
        let eps = self.endpoints.clone();
        self.same_at(&eps, args);
    }
}

fn url(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

/// Where `id` sorts among the other members.
fn rank(members: &[Member], id: u64) -> usize {
    members.iter().filter(|m| m.id < id).count()
}

/// Whether cairnctl's new member `got` stands where etcdctl's `want` stood.
fn comparable(api: &Api, want: (u64, usize), got: u64) -> bool {
    let others: Vec<Member> = api.members().into_iter().filter(|m| m.id != got).collect();
    rank(&others, got) == want.1
        && varint(got).len() == varint(want.0).len()
        && format!("{got:x}").len() == format!("{:x}", want.0).len()
}

/// A learner that both tools' runs start from: added through the API, standing where
/// `want` stood; returns its ID.
fn learner_like(api: &Api, want: Option<(u64, usize)>) -> (u64, String) {
    for _ in 0..300 {
        let u = url(free_port());
        let id = api.add_learner(&u);
        match want {
            Some(w) if !comparable(api, w, id) => api.remove(id),
            _ => return (id, u),
        }
    }
    panic!("no comparable member ID in 300 tries");
}

#[test]
fn member_commands_match_etcdctl() {
    let cluster = Cluster::start_kind(Kind::Etcd35, 3, &[]);
    let api = Api {
        rt: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap(),
        endpoints: cluster.members.iter().map(|m| m.endpoint()).collect(),
        urls: cluster.members.iter().map(|m| m.url()).collect(),
        ids: cluster.members.iter().map(|m| m.ids().member).collect(),
    };
    let mut c = Compat {
        etcdctl: common::etcdctl(),
        cairnctl: common::cairnctl(),
        endpoints: cluster.members[0].endpoint(),
        report: Report::default(),
    };
    let members = api.members();
    let id_hex = |i: usize| {
        let port = cluster.members[i].peer_port;
        format!("{:x}", api.id_of(&url(port)))
    };
    let (m0, m1, m2) = (id_hex(0), id_hex(1), id_hex(2));
    assert_eq!(members.len(), 3);

    // Help and argument errors.
    for cmd in [
        &["member", "add"][..],
        &["member", "remove"],
        &["member", "update"],
        &["member", "promote"],
        &["move-leader"],
    ] {
        let mut args = cmd.to_vec();
        args.push("--help");
        c.same(&args);
    }
    c.same(&["member", "--help"]);
    c.same(&["--help"]);
    for args in [
        &["member", "add"][..],
        &["member", "add", "a", "b", "http://x", "HTTPS://y"],
        &["member", "add", "a"],
        &["member", "add", "a", "--peer-urls="],
        &["member", "add", "a", "--peer-urls=foo"],
        &["member", "add", "a", "--peer-urls=127.0.0.1:2380"],
        &["member", "add", "a", "--peer-urls=localhost:2380"],
        &["member", "add", "a", "--peer-urls=http://127.0.0.1"],
        &["member", "add", "a", "--peer-urls=http://127.0.0.1:1/p"],
        &["member", "add", "a", "--peer-urls=http://[::1"],
        &["member", "add", "a", "--peer-urls=http://h:x"],
        &["member", "add", "a", "--peer-urls=unix://x"],
        &["member", "add", "a", "--peer-urls=,"],
        &[
            "member",
            "add",
            "a",
            "--peer-urls=http://127.0.0.1:1",
            "-w",
            "xml",
        ],
        &["member", "remove"],
        &["member", "remove", "a", "b"],
        &["member", "remove", "zz"],
        &["member", "remove", "+1"],
        &["member", "remove", "0x1"],
        &["member", "remove", "10000000000000000"],
        &["member", "remove", "1234"],
        &["member", "update"],
        &["member", "update", "1234"],
        &["member", "update", "zz", "--peer-urls=x"],
        &["member", "update", "1234", "--peer-urls=x"],
        &["member", "update", "1234", "--peer-urls=http://127.0.0.1:1"],
        &["member", "promote"],
        &["member", "promote", "zz"],
        &["member", "promote", "1234"],
        &["member", "promote", &m1],
        &["move-leader"],
        &["move-leader", "a", "b"],
        &["move-leader", "zz"],
        &["move-leader", "10000000000000000"],
    ] {
        c.same(args);
    }

    // Learners: add, update, promote (refused: never started) and remove, per format.
    for w in FORMATS {
        // member add --learner.
        let args = |u: &str| -> Vec<String> {
            [
                "member",
                "add",
                "l1",
                &format!("--peer-urls={u}"),
                "--learner",
                "-w",
                w,
            ]
            .iter()
            .map(|s| s.to_string())
            .collect()
        };
        let (want, ia, ua) = api.add_full_width(&c.etcdctl, &c.endpoints, args);
        assert!(
            want.stdout.starts_with(b"Member") || w != "simple",
            "{}",
            String::from_utf8_lossy(&want.stderr)
        );
        let want_pos = {
            let others: Vec<Member> = api.members().into_iter().filter(|m| m.id != ia).collect();
            (ia, rank(&others, ia))
        };
        api.remove(ia);
        let mut got = None;
        for _ in 0..300 {
            let ub = url(free_port());
            let (r, ib) = api.add_listed(&c.cairnctl, &c.endpoints, &args(&ub), &ub);
            if comparable(&api, want_pos, ib) {
                got = Some((r, ub, ib));
                break;
            }
            api.remove(ib);
        }
        let (got, ub, ib) = got.expect("no comparable member ID in 300 tries");
        c.compare(&args(&ub), want, got, &[(ib, ia)], &[(&ub, &ua)]);

        // member update of that learner: etcdctl, undo, cairnctl.
        let hex = format!("{ib:x}");
        let moved = url(free_port());
        let peer = format!("--peer-urls={moved}");
        let update = ["member", "update", &hex, &peer, "-w", w];
        let args: Vec<String> = update.iter().map(|s| s.to_string()).collect();
        let want = run(&c.etcdctl, &c.endpoints, &args);
        api.update(ib, &ub);
        let got = run(&c.cairnctl, &c.endpoints, &args);
        c.compare(&args, want, got, &[], &[]);

        c.same(&["member", "promote", &hex, "-w", w]);

        // member remove: etcdctl removes this learner, cairnctl one standing alike.
        let pos = {
            let others: Vec<Member> = api.members().into_iter().filter(|m| m.id != ib).collect();
            (ib, rank(&others, ib))
        };
        let args: Vec<String> = ["member", "remove", &hex, "-w", w]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let want = run(&c.etcdctl, &c.endpoints, &args);
        let (ic, _) = learner_like(&api, Some(pos));
        let hex_c = format!("{ic:x}");
        let args_c: Vec<String> = ["member", "remove", &hex_c, "-w", w]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let got = run(&c.cairnctl, &c.endpoints, &args_c);
        c.compare(&args, want, got, &[(ic, ib)], &[]);
        c.same(&["member", "remove", &hex, "-w", w]);
    }

    // A voting member (never started), then its removal.
    for w in ["simple", "json", "protobuf"] {
        let args = |u: &str| -> Vec<String> {
            ["member", "add", "v1", &format!("--peer-urls={u}"), "-w", w]
                .iter()
                .map(|s| s.to_string())
                .collect()
        };
        let (want, ia, ua) = api.add_full_width(&c.etcdctl, &c.endpoints, args);
        let others: Vec<Member> = api.members().into_iter().filter(|m| m.id != ia).collect();
        let want_pos = (ia, rank(&others, ia));
        api.remove(ia);
        let mut got = None;
        for _ in 0..300 {
            let ub = url(free_port());
            let (r, ib) = api.add_listed(&c.cairnctl, &c.endpoints, &args(&ub), &ub);
            if comparable(&api, want_pos, ib) {
                got = Some((r, ub, ib));
                break;
            }
            api.remove(ib);
        }
        let (got, ub, ib) = got.expect("no comparable member ID in 300 tries");
        c.compare(&args(&ub), want, got, &[(ib, ia)], &[(&ub, &ua)]);
        api.remove(ib);
    }

    // move-leader: from the leader to another member and back, per format.
    let all = cluster.endpoints();
    let ids = [m0.clone(), m1.clone(), m2.clone()];
    let leader = api.ids[api.leader()];
    let target = ids
        .iter()
        .find(|h| u64::from_str_radix(h, 16).unwrap() != leader)
        .unwrap()
        .clone();
    let all_flag = format!("--endpoints={all}");
    for w in FORMATS {
        let args: Vec<String> = ["move-leader", &target, "-w", w, &all_flag]
            .iter()
            .map(|s| s.to_string())
            .collect();
        api.move_leader(leader);
        let want = run(&c.etcdctl, &all, &args);
        api.move_leader(leader);
        let got = run(&c.cairnctl, &all, &args);
        c.compare(&args, want, got, &[], &[]);
    }
    api.move_leader(leader);
    let leader_hex = format!("{leader:x}");
    c.same(&["move-leader", &leader_hex, &all_flag]);
    c.same(&["move-leader", "1234", &all_flag]);
    // etcdctl 3.5.1 reads the environment twice here: a variable is always fatal.
    c.same_at(&all, &["move-leader", &target]);
    let followers: Vec<String> = cluster
        .members
        .iter()
        .zip(&api.ids)
        .filter(|(_, id)| **id != leader)
        .map(|(m, _)| m.endpoint())
        .collect();
    let followers = format!("--endpoints={}", followers.join(","));
    c.same(&["move-leader", &target, &followers]);

    c.report.finish();
}
