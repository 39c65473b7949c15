//! Leases: the same lease requests against a fresh real etcd 3.5 and a fresh cairn answer
//! alike (field by field, ids the servers chose and header ids and terms masked); the real
//! etcdctl 3.5 and 3.4 print the same for the `lease` commands (and cairnctl on cairn
//! prints what etcdctl prints on etcd); leases expire on time, never
//! early; and in a 3-member cluster keep-alives through a follower, a leader kill and lease
//! checkpoints keep leases alive as etcd does.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use cairn_proto::etcdserverpb::{
    kv_client::KvClient, lease_client::LeaseClient, maintenance_client::MaintenanceClient,
    request_op::Request as Op, DeleteRangeRequest, HashKvRequest, LeaseGrantRequest,
    LeaseKeepAliveRequest, LeaseLeasesRequest, LeaseRevokeRequest, LeaseTimeToLiveRequest,
    PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use cairn_tests::mask::mask_number_after;
use cairn_tests::{
    cairnctl, channel, etcdctl34, etcdctl35, leader, strip_header, Cluster, Kind, Run, ServerProc,
};
use tonic::transport::Channel;

/// A lease in the script: one the script names, or the n-th one a server chose.
#[derive(Debug, Clone, Copy)]
enum L {
    Fixed(i64),
    Chosen(usize),
}

#[derive(Debug, Clone)]
enum Step {
    Grant(i64, L),
    GrantChosen(i64),
    Revoke(L),
    Ttl(L, bool),
    Leases,
    Put(&'static str, L),
    TxnPut(&'static str, L),
    Delete(&'static str),
    Range,
    KeepAlive(L),
    HashKv,
}

struct Clients {
    kv: KvClient<Channel>,
    lease: LeaseClient<Channel>,
    m: MaintenanceClient<Channel>,
    /// The ids this server chose, in order.
    chosen: Vec<i64>,
}

async fn clients(url: String) -> Clients {
    let ch = channel(&url);
    Clients {
        kv: KvClient::new(ch.clone()),
        lease: LeaseClient::new(ch.clone()),
        m: MaintenanceClient::new(ch),
        chosen: vec![],
    }
}

fn err(s: tonic::Status) -> String {
    format!("ERR {:?} {}", s.code(), s.message())
}

impl Clients {
    fn id(&self, l: L) -> i64 {
        match l {
            L::Fixed(id) => id,
            L::Chosen(n) => self.chosen[n],
        }
    }

    /// Replaces the ids this server chose with their place in the script.
    fn mask(&self, text: String) -> String {
        let mut t = text;
        for (n, id) in self.chosen.iter().enumerate() {
            t = t.replace(&id.to_string(), &format!("CHOSEN{n}"));
        }
        t
    }

    async fn run(&mut self, step: &Step) -> String {
        let out = match step.clone() {
            Step::Grant(ttl, l) => {
                let req = LeaseGrantRequest {
                    ttl,
                    id: self.id(l),
                };
                match self.lease.lease_grant(req).await {
                    Ok(r) => {
                        let mut r = r.into_inner();
                        strip_header(&mut r.header);
                        format!("{r:?}")
                    }
                    Err(s) => err(s),
                }
            }
            Step::GrantChosen(ttl) => {
                let req = LeaseGrantRequest { ttl, id: 0 };
                match self.lease.lease_grant(req).await {
                    Ok(r) => {
                        let mut r = r.into_inner();
                        assert!(r.id > 0, "{r:?}");
                        self.chosen.push(r.id);
                        strip_header(&mut r.header);
                        format!("{r:?}")
                    }
                    Err(s) => err(s),
                }
            }
            Step::Revoke(l) => {
                let req = LeaseRevokeRequest { id: self.id(l) };
                match self.lease.lease_revoke(req).await {
                    Ok(r) => {
                        let mut r = r.into_inner();
                        strip_header(&mut r.header);
                        format!("{r:?}")
                    }
                    Err(s) => err(s),
                }
            }
            Step::Ttl(l, keys) => {
                let req = LeaseTimeToLiveRequest {
                    id: self.id(l),
                    keys,
                };
                match self.lease.lease_time_to_live(req).await {
                    Ok(r) => {
                        let mut r = r.into_inner();
                        strip_header(&mut r.header);
                        // etcd lists a lease's keys in map order.
                        r.keys.sort();
                        format!("{r:?}")
                    }
                    Err(s) => err(s),
                }
            }
            Step::Leases => match self.lease.lease_leases(LeaseLeasesRequest {}).await {
                Ok(r) => {
                    let mut r = r.into_inner();
                    strip_header(&mut r.header);
                    let mut ids: Vec<String> = r
                        .leases
                        .iter()
                        .map(|l| self.mask(l.id.to_string()))
                        .collect();
                    ids.sort();
                    r.leases.clear();
                    format!("{r:?} {ids:?}")
                }
                Err(s) => err(s),
            },
            Step::Put(key, l) => {
                let req = PutRequest {
                    key: key.as_bytes().to_vec(),
                    value: b"v".to_vec(),
                    lease: self.id(l),
                    prev_kv: true,
                    ..Default::default()
                };
                match self.kv.put(req).await {
                    Ok(r) => {
                        let mut r = r.into_inner();
                        strip_header(&mut r.header);
                        format!("{r:?}")
                    }
                    Err(s) => err(s),
                }
            }
            Step::TxnPut(key, l) => {
                let req = TxnRequest {
                    success: vec![RequestOp {
                        request: Some(Op::RequestPut(PutRequest {
                            key: key.as_bytes().to_vec(),
                            value: b"t".to_vec(),
                            lease: self.id(l),
                            ..Default::default()
                        })),
                    }],
                    ..Default::default()
                };
                match self.kv.txn(req).await {
                    Ok(r) => {
                        let mut r = r.into_inner();
                        strip_header(&mut r.header);
                        format!("{:?} {:?}", r.header, r.succeeded)
                    }
                    Err(s) => err(s),
                }
            }
            Step::Delete(key) => {
                let req = DeleteRangeRequest {
                    key: key.as_bytes().to_vec(),
                    ..Default::default()
                };
                match self.kv.delete_range(req).await {
                    Ok(r) => {
                        let mut r = r.into_inner();
                        strip_header(&mut r.header);
                        format!("{r:?}")
                    }
                    Err(s) => err(s),
                }
            }
            Step::Range => {
                let req = RangeRequest {
                    key: vec![0],
                    range_end: vec![0],
                    ..Default::default()
                };
                match self.kv.range(req).await {
                    Ok(r) => {
                        let mut r = r.into_inner();
                        strip_header(&mut r.header);
                        format!("{r:?}")
                    }
                    Err(s) => err(s),
                }
            }
            Step::KeepAlive(l) => {
                let req = LeaseKeepAliveRequest { id: self.id(l) };
                let stream = tokio_stream::iter(vec![req]);
                match self.lease.lease_keep_alive(stream).await {
                    Ok(r) => {
                        let mut inbound = r.into_inner();
                        match inbound.message().await {
                            Ok(Some(mut r)) => {
                                strip_header(&mut r.header);
                                format!("{r:?}")
                            }
                            Ok(None) => "END".to_string(),
                            Err(s) => err(s),
                        }
                    }
                    Err(s) => err(s),
                }
            }
            Step::HashKv => match self.m.hash_kv(HashKvRequest { revision: 0 }).await {
                Ok(r) => {
                    let mut r = r.into_inner();
                    strip_header(&mut r.header);
                    r.hash_revision = 0;
                    format!("{r:?}")
                }
                Err(s) => err(s),
            },
        };
        self.mask(out)
    }
}

fn script() -> Vec<Step> {
    use Step::*;
    let f = L::Fixed;
    vec![
        Grant(10, f(100)),
        GrantChosen(20),
        Grant(20, f(106)),
        // Duplicate id, too large, the largest allowed, below the minimum (raised to 2 s with
        // the default election timeout), zero and negative TTLs.
        Grant(10, f(100)),
        Grant(9_000_000_001, f(101)),
        Grant(9_000_000_000, f(102)),
        Grant(1, f(103)),
        Grant(0, f(104)),
        Grant(-5, f(105)),
        Put("a", f(100)),
        Put("b", f(100)),
        Put("c", f(100)),
        Put("d", f(100)),
        // A lease that does not exist, in a put and in a txn.
        Put("x", f(999)),
        TxnPut("x", f(999)),
        TxnPut("e", f(100)),
        // Detached by a put without lease, moved to another lease, detached by a delete.
        Put("b", f(0)),
        Put("c", f(106)),
        Delete("d"),
        Ttl(f(100), true),
        Ttl(f(100), false),
        Ttl(L::Chosen(0), true),
        Ttl(f(106), true),
        Ttl(f(999), true),
        Leases,
        KeepAlive(f(100)),
        KeepAlive(L::Chosen(0)),
        KeepAlive(f(999)),
        Range,
        // Deletes a and e in one revision.
        Revoke(f(100)),
        Revoke(f(100)),
        Revoke(f(999)),
        Ttl(f(100), true),
        Range,
        Put("after", f(0)),
        // A lease with no keys: no revision.
        Revoke(f(102)),
        Revoke(L::Chosen(0)),
        Leases,
        // The ids the servers chose are not in the keys, so the histories hash alike.
        HashKv,
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_lease_responses_as_etcd() {
    let etcd = ServerProc::start(Kind::Etcd35, &[]);
    let cairn = ServerProc::start(Kind::Cairn, &[]);
    let mut e = clients(etcd.url()).await;
    let mut c = clients(cairn.url()).await;
    for (i, step) in script().iter().enumerate() {
        let want = e.run(step).await;
        let got = c.run(step).await;
        assert_eq!(got, want, "step {i} differs: {step:?}");
    }
    // The lease metrics counted the same grants (and their TTLs), renewals and revokes.
    assert_eq!(
        lease_metrics(cairn.client_port),
        lease_metrics(etcd.client_port)
    );
}

/// The lease lines of a server's /metrics (etcd's names, values and buckets) as written.
fn lease_metrics(port: u16) -> Vec<String> {
    let (_, body) = cairn_tests::http_get(port, "/metrics");
    let lines: Vec<String> = body
        .lines()
        .filter(|l| {
            l.starts_with("etcd_debugging_lease_") || l.starts_with("etcd_debugging_server_lease_")
        })
        .map(str::to_string)
        .collect();
    assert!(lines.len() > 20, "lease metrics missing: {lines:?}");
    lines
}

/// Masks the 16-hex-digit lease ids in etcdctl's output, numbering them in order of
/// appearance, and the remaining TTL (it depends on when the command ran).
fn mask_ids(text: &str, ids: &mut Vec<String>) -> String {
    let mut out = String::new();
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String, ids: &mut Vec<String>| {
        if word.len() == 16 && word.chars().all(|c| c.is_ascii_hexdigit()) {
            let n = match ids.iter().position(|w| w == word) {
                Some(n) => n,
                None => {
                    ids.push(word.clone());
                    ids.len() - 1
                }
            };
            out.push_str(&format!("LEASE{n}"));
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    for ch in text.chars() {
        if ch.is_ascii_alphanumeric() {
            word.push(ch);
        } else {
            flush(&mut word, &mut out, ids);
            out.push(ch);
        }
    }
    flush(&mut word, &mut out, ids);
    out
}

/// Sorts the `sep`-separated items between the first `open` and the `close` after it.
fn sort_between(text: &str, open: &str, close: &str, sep: char) -> String {
    let Some(i) = text.find(open) else {
        return text.to_string();
    };
    let start = i + open.len();
    let Some(len) = text[start..].find(close) else {
        return text.to_string();
    };
    let mut items: Vec<&str> = text[start..start + len].split(sep).collect();
    items.sort();
    format!(
        "{}{}{}",
        &text[..start],
        items.join(&sep.to_string()),
        &text[start + len..]
    )
}

/// Runs the `lease` commands with `etcdctl` on `endpoint`; returns what each printed, with
/// lease ids masked and etcdctl's own log lines dropped.
fn lease_session(etcdctl: fn(&str, &[&str]) -> Run, endpoint: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut out = Vec::new();
    let mut record = |args: &[&str], r: Run, ids: &mut Vec<String>| {
        let stderr: Vec<&str> = r
            .stderr
            .lines()
            .filter(|l| !l.starts_with("{\"level\""))
            .collect();
        let mut text = format!(
            "$ {}\n{}{}\nexit {}",
            args.join(" "),
            r.stdout,
            stderr.join("\n"),
            r.code
        );
        // The header's ids go first: a lease id's decimal digits can also occur inside a
        // member or cluster id (a member id once read "member_id=NLEASE2").
        text = mask_json_header(&text);
        // JSON output carries the ids in decimal.
        for (n, hex) in ids.iter().enumerate() {
            if let Ok(dec) = i64::from_str_radix(hex, 16) {
                text = text.replace(&dec.to_string(), &format!("LEASE{n}"));
            }
        }
        text = mask_ids(&text, ids);
        for key in ["remaining(", "\"ttl\":"] {
            text = mask_number_after(&text, key);
        }
        // etcd lists a lease's keys in map order.
        text = sort_between(&text, "attached keys([", "])", ' ');
        text = sort_between(&text, "\"keys\":[", "]", ',');
        out.push(text);
    };
    let grant = etcdctl(endpoint, &["lease", "grant", "100"]);
    let id = grant.stdout.split_whitespace().nth(1).unwrap().to_string();
    record(&["lease", "grant", "100"], grant, &mut ids);
    let grant2 = etcdctl(endpoint, &["lease", "grant", "1"]);
    let id2 = grant2.stdout.split_whitespace().nth(1).unwrap().to_string();
    record(&["lease", "grant", "1"], grant2, &mut ids);
    let commands: Vec<Vec<&str>> = vec![
        vec!["lease", "grant", "9000000001"],
        vec!["lease", "grant", "x"],
        vec!["put", "--lease", &id, "k1", "v1"],
        vec!["put", "--lease", &id, "k2", "v2"],
        vec!["put", "--lease", "1234abcd", "k3", "v3"],
        vec!["get", "k1", "-w", "json"],
        vec!["lease", "timetolive", &id],
        vec!["lease", "timetolive", &id, "--keys"],
        vec!["lease", "timetolive", &id, "--keys", "-w", "json"],
        vec!["lease", "timetolive", "1234abcd"],
        vec!["lease", "keep-alive", "--once", &id],
        vec!["lease", "keep-alive", "--once", "1234abcd"],
        vec!["lease", "revoke", &id2],
        vec!["lease", "list"],
        vec!["lease", "revoke", &id],
        vec!["lease", "revoke", &id],
        vec!["get", "k", "--prefix"],
        vec!["lease", "timetolive", &id],
        vec!["lease", "list"],
        vec!["lease", "list", "-w", "json"],
    ];
    for args in commands {
        let r = etcdctl(endpoint, &args);
        record(&args, r, &mut ids);
    }
    out
}

/// Masks member ids, cluster ids and raft terms in JSON output.
fn mask_json_header(text: &str) -> String {
    let mut out = text.to_string();
    for key in ["\"cluster_id\":", "\"member_id\":", "\"raft_term\":"] {
        out = mask_number_after(&out, key);
    }
    out
}

#[test]
fn etcdctl_lease_commands_print_the_same() {
    let etcd = ServerProc::start(Kind::Etcd35, &[]);
    let cairn = ServerProc::start(Kind::Cairn, &[]);
    for (name, etcdctl) in [
        ("etcdctl-3.5", etcdctl35 as fn(&str, &[&str]) -> Run),
        ("etcdctl-3.4", etcdctl34),
    ] {
        let want = lease_session(etcdctl, &etcd.endpoint());
        let got = lease_session(etcdctl, &cairn.endpoint());
        assert_eq!(want.len(), got.len());
        for (w, g) in want.iter().zip(&got) {
            assert_eq!(mask_json_header(g), mask_json_header(w), "{name}");
        }
    }
    // cairnctl on cairn prints what etcdctl 3.5 prints on etcd.
    let want = lease_session(etcdctl35, &etcd.endpoint());
    let got = lease_session(cairnctl, &cairn.endpoint());
    for (w, g) in want.iter().zip(&got) {
        assert_eq!(mask_json_header(g), mask_json_header(w), "cairnctl");
    }
}

async fn lease_client(url: String) -> (LeaseClient<Channel>, KvClient<Channel>) {
    let ch = channel(&url);
    (LeaseClient::new(ch.clone()), KvClient::new(ch))
}

async fn exists(kv: &mut KvClient<Channel>, key: &str) -> bool {
    let req = RangeRequest {
        key: key.as_bytes().to_vec(),
        ..Default::default()
    };
    match kv.range(req).await {
        Ok(r) => r.into_inner().count == 1,
        Err(_) => true,
    }
}

/// Grants a lease with `ttl` and a key on it; returns the lease id and when the grant was
/// sent.
async fn lease_with_key(
    lease: &mut LeaseClient<Channel>,
    kv: &mut KvClient<Channel>,
    ttl: i64,
    key: &str,
) -> (i64, Instant) {
    let sent = Instant::now();
    let id = lease
        .lease_grant(LeaseGrantRequest { ttl, id: 0 })
        .await
        .unwrap()
        .into_inner()
        .id;
    kv.put(PutRequest {
        key: key.as_bytes().to_vec(),
        value: b"v".to_vec(),
        lease: id,
        ..Default::default()
    })
    .await
    .unwrap();
    (id, sent)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_survive_a_restart_from_their_checkpoint() {
    let mut cairn = ServerProc::start(
        Kind::Cairn,
        &["--experimental-lease-checkpoint-interval=1s"],
    );
    let (mut lease, mut kv) = lease_client(cairn.url()).await;
    let (id, sent) = lease_with_key(&mut lease, &mut kv, 60, "k").await;
    // The lease's time must run: five seconds of it, checkpointed every second.
    tokio::time::sleep(Duration::from_secs(5)).await;
    cairn.kill9();
    let killed = sent.elapsed().as_secs() as i64;
    cairn.spawn();
    let (mut lease, mut kv) = lease_client(cairn.url()).await;
    // Resumed from the last checkpoint (at most 56 s left) plus one election timeout, not
    // from the full 60 s; its key is still attached.
    let resp = lease
        .lease_time_to_live(LeaseTimeToLiveRequest { id, keys: true })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.granted_ttl, 60);
    assert!(resp.ttl <= 57 && resp.ttl >= 60 - killed - 3, "{resp:?}");
    assert_eq!(resp.keys, vec![b"k".to_vec()]);
    lease.lease_revoke(LeaseRevokeRequest { id }).await.unwrap();
    assert!(!exists(&mut kv, "k").await);
}

/// Keeps lease `id` alive through one stream every 500 ms until `until`; panics if an
/// answer says the lease is gone.
async fn keep_alive_for(lease: &mut LeaseClient<Channel>, id: i64, until: Instant) {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut inbound = lease
        .lease_keep_alive(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    while Instant::now() < until {
        tx.send(LeaseKeepAliveRequest { id }).await.unwrap();
        let r = tokio::time::timeout(Duration::from_secs(10), inbound.message())
            .await
            .unwrap_or_else(|_| panic!("no keep-alive answer for lease {id:x} in 10 s"))
            .unwrap()
            .unwrap();
        assert!(r.ttl > 0, "lease {id:x} lost: {r:?}");
        // The cadence of the keep-alives, as a client's.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn ttl_of(lease: &mut LeaseClient<Channel>, id: i64) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let req = LeaseTimeToLiveRequest { id, keys: false };
        match lease.lease_time_to_live(req).await {
            Ok(r) => return r.into_inner().ttl,
            Err(s) => {
                assert!(Instant::now() < deadline, "timetolive keeps failing: {s:?}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_keep_alives_leader_kill_and_checkpoints() {
    let mut c = Cluster::start(3, &["--experimental-lease-checkpoint-interval=2s"]);
    let leader = leader(&c.members);
    let follower = (leader + 1) % 3;
    let other = (leader + 2) % 3;
    let (mut lease, mut kv) = lease_client(c.members[follower].url()).await;

    // Keep-alives through a follower keep a 3 s lease alive well beyond its TTL.
    let (kept, _) = lease_with_key(&mut lease, &mut kv, 3, "kept").await;
    // A 60 s lease nobody renews: it is checkpointed every 2 s.
    let (checkpointed, _) = lease_with_key(&mut lease, &mut kv, 60, "checkpointed").await;
    keep_alive_for(&mut lease, kept, Instant::now() + Duration::from_secs(12)).await;
    assert!(exists(&mut kv, "kept").await);
    let before = ttl_of(&mut lease, checkpointed).await;
    assert!(before <= 49, "{before}");

    // Kill the leader while keep-alives go on through the follower.
    c.members[leader].kill9();
    let killed = Instant::now();
    keep_alive_for(&mut lease, kept, Instant::now() + Duration::from_secs(8)).await;
    assert!(exists(&mut kv, "kept").await);

    // The new leader resumed the checkpointed lease from its last checkpoint (at most 50 s
    // left) plus one election timeout, not from its full 60 s: counted from the kill, what
    // remains is well under 60 s.
    let after = ttl_of(&mut lease, checkpointed).await;
    let since_kill = killed.elapsed().as_secs() as i64;
    assert!(
        after + since_kill <= 54,
        "remaining TTL reset after the leader change: {after} s left {since_kill} s after the kill"
    );
    assert!(exists(&mut kv, "checkpointed").await);

    // Without keep-alives the lease expires on the new leader.
    let (mut lease2, mut kv2) = lease_client(c.members[other].url()).await;
    let deadline = Instant::now() + Duration::from_secs(3 + 2 + 1);
    while exists(&mut kv2, "kept").await {
        assert!(Instant::now() < deadline, "kept-alive lease never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(ttl_of(&mut lease2, kept).await, -1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_caught_up_by_snapshot_has_the_leases_and_their_keys() {
    let mut c = tokio::task::block_in_place(|| {
        Cluster::start(
            3,
            &[
                "--experimental-snapshot-catchup-entries=100",
                "--snapshot-count=100",
            ],
        )
    });
    let leader = leader(&c.members);
    let lagging = (leader + 1) % 3;
    c.members[lagging].kill9();
    let (mut lease, mut kv) = lease_client(c.members[leader].url()).await;
    lease
        .lease_grant(LeaseGrantRequest { ttl: 600, id: 77 })
        .await
        .unwrap();
    for k in ["l/a", "l/b"] {
        kv.put(PutRequest {
            key: k.as_bytes().to_vec(),
            value: b"v".to_vec(),
            lease: 77,
            ..Default::default()
        })
        .await
        .unwrap();
    }
    // Far more entries than the log keeps while the member is away.
    cairn_tests::workload::bulk_put(&kv, "bulk/", 4, 200, |_, _| b"v".to_vec()).await;
    // The leader purges its log only behind a durable backend commit, and the backend makes
    // a commit durable only once half a second has passed since the last one: let that time
    // pass, so that the next write is durable.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    kv.put(PutRequest {
        key: b"last".to_vec(),
        value: b"1".to_vec(),
        ..Default::default()
    })
    .await
    .unwrap();
    tokio::task::block_in_place(|| c.members[lagging].spawn());
    let (mut lagging_lease, mut lagging_kv) = lease_client(c.members[lagging].url()).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !exists(&mut lagging_kv, "last").await {
        assert!(Instant::now() < deadline, "the member never caught up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        c.members[lagging]
            .log_text()
            .contains("applied snapshot from the leader"),
        "caught up without a snapshot"
    );
    let listed = lagging_lease
        .lease_leases(LeaseLeasesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.leases.iter().map(|l| l.id).collect::<Vec<_>>(), [77]);
    // Let it lead, so its own lessor answers, with the keys it rebuilt.
    let target = format!(
        "{:x}",
        tokio::task::block_in_place(|| c.members[lagging].ids().member)
    );
    let r = tokio::task::block_in_place(|| {
        etcdctl35(&c.members[leader].endpoint(), &["move-leader", &target])
    });
    assert_eq!(r.code, 0, "{r:?}");
    let resp = lagging_lease
        .lease_time_to_live(LeaseTimeToLiveRequest { id: 77, keys: true })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        resp.keys,
        vec![b"l/a".to_vec(), b"l/b".to_vec()],
        "{resp:?}"
    );
    lagging_lease
        .lease_revoke(LeaseRevokeRequest { id: 77 })
        .await
        .unwrap();
    assert!(!exists(&mut kv, "l/a").await);
}
