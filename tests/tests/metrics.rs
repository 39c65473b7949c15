//! `/metrics` as a Prometheus server and an operator's dashboards and alerts read it: every
//! family etcd 3.5.1 exports after a workload, with its type, label names and histogram
//! buckets, is exported by cairn after the same workload on one and on three members,
//! unless COMPAT.md lists it as not exported (with why); the values an operator reads move
//! as they should; and the alerting rules in `packaging/alerts/` pass `promtool check
//! rules` and fire in `promtool test rules`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::Duration;

use cairn_proto::etcdserverpb::kv_client::KvClient;
use cairn_proto::etcdserverpb::watch_client::WatchClient;
use cairn_proto::etcdserverpb::{
    watch_request, PutRequest, WatchCreateRequest, WatchRequest, WatchResponse,
};
use cairn_tests::{
    block_on, channel, etcdctl35, http_get, leader, repo_root, wait_until, Cluster, Kind,
    ServerProc,
};

/// One metric family as the text exposition format shows it.
#[derive(Debug, Clone, PartialEq)]
struct Family {
    kind: String,
    /// Label names over all of its samples (`le` and `quantile` left out).
    labels: BTreeSet<String>,
    /// A histogram's bucket bounds as written (Go writes 1e6 and more with an exponent,
    /// `le="1.048576e+06"`: a query or a script that names a bucket finds it in both).
    buckets: Vec<String>,
}

/// The families of a `/metrics` body, by name.
fn families(body: &str) -> BTreeMap<String, Family> {
    let mut out: BTreeMap<String, Family> = BTreeMap::new();
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            out.insert(
                name.to_string(),
                Family {
                    kind: kind.trim().to_string(),
                    labels: BTreeSet::new(),
                    buckets: Vec::new(),
                },
            );
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let name_end = line.find(['{', ' ']).unwrap();
        let mut name = &line[..name_end];
        if !out.contains_key(name) {
            for suffix in ["_bucket", "_sum", "_count"] {
                if let Some(base) = name.strip_suffix(suffix) {
                    if out.contains_key(base) {
                        name = base;
                    }
                }
            }
        }
        let labels = match line[name_end..].strip_prefix('{') {
            Some(rest) => label_names(&rest[..rest.rfind('}').unwrap()]),
            None => Vec::new(),
        };
        let family = out
            .get_mut(name)
            .unwrap_or_else(|| panic!("sample {line:?} before its TYPE line"));
        for l in labels {
            if l != "le" && l != "quantile" {
                family.labels.insert(l);
            }
        }
        if let Some((_, after)) = line.split_once("le=\"") {
            let bound = after[..after.find('"').unwrap()].to_string();
            if !family.buckets.contains(&bound) {
                family.buckets.push(bound);
            }
        }
    }
    out
}

/// The label names of `a="x",b="y"` (values may hold escaped quotes and commas).
fn label_names(pairs: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = pairs;
    while let Some((name, after)) = rest.split_once("=\"") {
        names.push(name.trim_start_matches(',').trim().to_string());
        let mut escaped = false;
        let mut end = after.len();
        for (i, c) in after.char_indices() {
            match c {
                '\\' if !escaped => escaped = true,
                '"' if !escaped => {
                    end = i;
                    break;
                }
                _ => escaped = false,
            }
        }
        rest = &after[(end + 1).min(after.len())..];
    }
    names
}

/// The value of the sample `name{labels}` written exactly so (`name` alone for no labels).
fn sample(body: &str, series: &str) -> Option<f64> {
    body.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// The families COMPAT.md lists as not exported: its table under the marker
/// `<!-- metrics-not-exported -->`, one backticked family per row; a name ending in `*`
/// stands for every family it begins.
fn not_exported() -> Vec<String> {
    let text = std::fs::read_to_string(repo_root().join("COMPAT.md")).unwrap();
    let (_, table) = text
        .split_once("<!-- metrics-not-exported -->")
        .expect("COMPAT.md has the metrics-not-exported list");
    let rows: Vec<String> = table
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .filter_map(|l| {
            let cell = l.trim_start_matches('|').split('|').next()?.trim();
            Some(cell.strip_prefix('`')?.strip_suffix('`')?.to_string())
        })
        .collect();
    assert!(rows.len() > 5, "COMPAT.md's list reads as {rows:?}");
    rows
}

fn listed(name: &str, list: &[String]) -> bool {
    list.iter().any(|l| match l.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => name == l,
    })
}

/// The same requests on both servers: puts, a range, a txn, a lease granted and kept
/// alive, a watch that sees one event, a compaction, a defragment, hashes, a snapshot and a
/// health check.
fn workload(server: &ServerProc) {
    let ep = server.endpoint();
    for i in 0..3 {
        let r = etcdctl35(&ep, &["put", &format!("k{i}"), &format!("v{i}")]);
        assert_eq!(r.code, 0, "{r:?}");
    }
    for args in [
        &["get", "k", "--prefix"][..],
        &["del", "k0"],
        &["lease", "grant", "60"],
        &["endpoint", "status"],
        &["endpoint", "hashkv"],
        &["compaction", "2"],
        &["defrag"],
    ] {
        let r = etcdctl35(&ep, args);
        assert_eq!(r.code, 0, "{args:?}: {r:?}");
    }
    let r = cairn_tests::run_client(
        &cairn_tests::tool("etcdctl-3.5"),
        &ep,
        &["txn"],
        Some("value(\"k1\") = \"v1\"\n\nput k1 w\n\nput k1 x\n\n"),
    );
    assert_eq!(r.code, 0, "{r:?}");
    let snap = server.dir.path().join("workload-snapshot.db");
    let r = etcdctl35(&ep, &["snapshot", "save", snap.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{r:?}");
    watch_one_event(server);
    let (code, body) = http_get(server.client_port, "/health");
    assert_eq!(code, 200, "{body}");
}

/// A request to watch `key`.
fn watch_of(key: &[u8]) -> WatchRequest {
    WatchRequest {
        request_union: Some(watch_request::RequestUnion::CreateRequest(
            WatchCreateRequest {
                key: key.to_vec(),
                ..Default::default()
            },
        )),
    }
}

/// Opens a watch of `key` through `client` and waits (10 s at most) until it is created:
/// the sender that keeps the stream open, the stream, and the creation response.
async fn open_watch(
    mut client: WatchClient<tonic::transport::Channel>,
    key: &[u8],
) -> (
    tokio::sync::mpsc::Sender<WatchRequest>,
    tonic::Streaming<WatchResponse>,
    WatchResponse,
) {
    // etcd answers the stream's headers with its first message: the request goes first.
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(watch_of(key)).await.unwrap();
    let mut stream = client
        .watch(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let created = next(&mut stream, "a watch's creation").await.unwrap();
    assert!(created.created, "{created:?}");
    (tx, stream, created)
}

/// Opens a watch on `w`, writes `w`, and waits (10 s at most) for the event.
fn watch_one_event(server: &ServerProc) {
    let url = server.url();
    let ep = server.endpoint();
    block_on(async move {
        let (tx, mut stream, _) = open_watch(WatchClient::new(channel(&url)), b"w").await;
        let put = tokio::task::spawn_blocking(move || etcdctl35(&ep, &["put", "w", "1"]));
        let event = tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .expect("the watch sees the put within 10 s")
            .unwrap()
            .unwrap();
        assert_eq!(event.events.len(), 1, "{event:?}");
        assert_eq!(put.await.unwrap().code, 0);
        drop(tx);
    });
}

fn scrape(server: &ServerProc) -> String {
    let (code, body) = http_get(server.client_port, "/metrics");
    assert_eq!(code, 200, "{body}");
    body
}

/// Every family of `etcd` that `cairn` lacks and COMPAT.md does not list, and every family
/// both export with a different type, label names or buckets.
fn differences(etcd: &str, cairn: &str) -> Vec<String> {
    let (etcd, cairn) = (families(etcd), families(cairn));
    let skip = not_exported();
    let mut out = Vec::new();
    for (name, e) in &etcd {
        match cairn.get(name) {
            None if listed(name, &skip) => {}
            None => out.push(format!("missing {name} ({} {:?})", e.kind, e.labels)),
            Some(c) if c != e => out.push(format!("{name}: etcd {e:?}, cairn {c:?}")),
            Some(_) => {}
        }
    }
    out
}

/// Families COMPAT.md says are not exported must really be missing: a family cairn does
/// export is taken off the list, so the list stays true.
fn listed_but_exported(cairn: &str) -> Vec<String> {
    let skip = not_exported();
    families(cairn)
        .into_keys()
        .filter(|n| skip.iter().any(|l| l == n))
        .collect()
}

/// Series whose values etcd 3.5.1 and cairn agree on after [`workload`] on one member
/// (COMPAT.md says why the mvcc put, range and txn counts, the put size and the
/// compaction pause count differ).
const SAME_AFTER_THE_WORKLOAD: &[&str] = &[
    "etcd_mvcc_delete_total",
    "etcd_debugging_mvcc_events_total",
    "etcd_debugging_mvcc_current_revision",
    "etcd_debugging_mvcc_compact_revision",
    "etcd_debugging_mvcc_keys_total",
    "etcd_debugging_mvcc_db_compaction_keys_total",
    "etcd_debugging_mvcc_db_compaction_total_duration_milliseconds_count",
    "etcd_debugging_mvcc_index_compaction_pause_duration_milliseconds_count",
    "etcd_debugging_lease_granted_total",
    "etcd_debugging_lease_revoked_total",
    "etcd_debugging_lease_ttl_total_count",
    "etcd_debugging_auth_revision",
    "etcd_disk_backend_defrag_duration_seconds_count",
    "etcd_disk_backend_snapshot_duration_seconds_count",
    "etcd_mvcc_hash_rev_duration_seconds_count",
    "etcd_server_health_success",
    "etcd_server_health_failures",
    "etcd_server_proposals_failed_total",
    "etcd_server_slow_apply_total",
    "etcd_server_leader_changes_seen_total",
    "etcd_disk_defrag_inflight",
];

#[test]
fn one_member_exports_every_family_etcd_does() {
    let etcd = ServerProc::start(Kind::Etcd35, &[]);
    let cairn = ServerProc::start(Kind::Cairn, &[]);
    workload(&etcd);
    workload(&cairn);
    let (e, c) = (scrape(&etcd), scrape(&cairn));
    // What the workload moves the same way on both, to the count.
    for series in SAME_AFTER_THE_WORKLOAD {
        assert_eq!(
            sample(&c, series),
            sample(&e, series),
            "{series} after the same workload"
        );
    }
    // Numbers are written as Go writes them (`2.147483648e+09`): a script that greps and
    // compares a line reads it alike. Both hold the same value here (the default quota; no
    // address-space limit in either process).
    for series in [
        "etcd_server_quota_backend_bytes",
        "process_virtual_memory_max_bytes",
    ] {
        let line = |body: &str| {
            let prefix = format!("{series} ");
            body.lines()
                .find(|l| l.starts_with(&prefix))
                .map(str::to_string)
        };
        assert_eq!(line(&c), line(&e));
    }
    let diff = differences(&e, &c);
    assert!(
        diff.is_empty(),
        "cairn's /metrics differs from etcd's:\n{}",
        diff.join("\n")
    );
    assert_eq!(listed_but_exported(&c), Vec::<String>::new());
}

#[test]
fn three_members_export_every_family_etcd_does() {
    let etcd = Cluster::start_kind(Kind::Etcd35, 3, &[]);
    let cairn = Cluster::start_kind(Kind::Cairn, 3, &[]);
    workload(&etcd.members[0]);
    workload(&cairn.members[0]);
    for (e, c) in etcd.members.iter().zip(&cairn.members) {
        let diff = differences(&scrape(e), &scrape(c));
        assert!(
            diff.is_empty(),
            "{} differs from etcd's:\n{}",
            c.name,
            diff.join("\n")
        );
    }
}

/// Each of three members times round trips to each other member: every peer's histogram
/// gets observations, and none for the member itself.
#[test]
fn three_members_time_round_trips_to_each_peer() {
    let cairn = Cluster::start(3, &[]);
    let ids: Vec<String> = cairn
        .members
        .iter()
        .map(|m| format!("{:x}", m.ids().member))
        .collect();
    for (i, m) in cairn.members.iter().enumerate() {
        for (j, to) in ids.iter().enumerate() {
            let count = format!("etcd_network_peer_round_trip_time_seconds_count{{To=\"{to}\"}}");
            if i == j {
                assert_eq!(sample(&scrape(m), &count), None, "{} to itself", m.name);
                continue;
            }
            // Probes run every 4 s; the first may have found the peer not yet listening.
            wait_until(
                Duration::from_secs(20),
                format!("{} to time a round trip to {to}", m.name),
                || match sample(&scrape(m), &count) {
                    Some(n) if n >= 1.0 => Ok(()),
                    other => Err(other),
                },
            );
            let sum = format!("etcd_network_peer_round_trip_time_seconds_sum{{To=\"{to}\"}}");
            assert!(sample(&scrape(m), &sum).unwrap() > 0.0);
        }
    }
}

#[test]
fn extensive_metrics_add_grpc_handling_seconds_as_etcd() {
    let etcd = ServerProc::start(Kind::Etcd35, &["--metrics=extensive"]);
    let cairn = ServerProc::start(Kind::Cairn, &["--metrics=extensive"]);
    let basic = ServerProc::start(Kind::Cairn, &[]);
    for s in [&etcd, &cairn, &basic] {
        assert_eq!(etcdctl35(&s.endpoint(), &["put", "a", "1"]).code, 0);
    }
    let (e, c) = (families(&scrape(&etcd)), families(&scrape(&cairn)));
    let name = "grpc_server_handling_seconds";
    assert_eq!(c.get(name), e.get(name));
    assert!(e.contains_key(name));
    assert!(!families(&scrape(&basic)).contains_key(name));
    let put = "grpc_server_handling_seconds_count{grpc_method=\"Put\",grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"}";
    assert_eq!(sample(&scrape(&cairn), put), Some(1.0));
}

/// What an operator reads on one member: its id, health checks, requests by client
/// version, WAL bytes, and the process's figures.
#[test]
fn one_members_values_move_as_an_operator_expects() {
    let cairn = ServerProc::start(Kind::Cairn, &[]);
    let id = format!("{:x}", cairn.ids().member);
    let body = scrape(&cairn);
    assert_eq!(
        sample(&body, &format!("etcd_server_id{{server_id=\"{id}\"}}")),
        Some(1.0)
    );
    assert_eq!(sample(&body, "etcd_server_is_learner"), Some(0.0));
    assert_eq!(
        sample(&body, "etcd_server_leader_changes_seen_total"),
        Some(1.0)
    );
    assert!(sample(&body, "process_resident_memory_bytes").unwrap() > 1e6);
    assert!(sample(&body, "process_open_fds").unwrap() >= 3.0);
    assert!(
        sample(&body, "process_max_fds").unwrap() >= sample(&body, "process_open_fds").unwrap()
    );
    let started = sample(&body, "process_start_time_seconds").unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        started <= now && started > now - 600.0,
        "started {started}, now {now}"
    );

    let health = |b: &str| sample(b, "etcd_server_health_success").unwrap_or(0.0);
    let requests = "etcd_server_client_requests_total{client_api_version=\"3.5\",type=\"unary\"}";
    let wal = "etcd_disk_wal_write_bytes_total";
    let before = scrape(&cairn);
    assert_eq!(http_get(cairn.client_port, "/health").0, 200);
    // Not compressible, as raft-engine compresses what it writes.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let value: String = (0..10_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'a' + (x % 26) as u8)
        })
        .collect();
    for i in 0..5 {
        assert_eq!(
            etcdctl35(&cairn.endpoint(), &["put", &format!("p{i}"), &value]).code,
            0
        );
    }
    let after = scrape(&cairn);
    assert_eq!(health(&after), health(&before) + 1.0);
    assert_eq!(
        sample(&after, requests).unwrap() - sample(&before, requests).unwrap_or(0.0),
        5.0
    );
    assert!(sample(&after, wal).unwrap() - sample(&before, wal).unwrap() >= 50_000.0);
    let received = "etcd_network_client_grpc_received_bytes_total";
    assert!(sample(&after, received).unwrap() - sample(&before, received).unwrap() >= 50_000.0);
    let put_applied =
        "etcd_server_apply_duration_seconds_count{op=\"Put\",success=\"true\",version=\"v3\"}";
    assert_eq!(
        sample(&after, put_applied).unwrap() - sample(&before, put_applied).unwrap_or(0.0),
        5.0
    );
    let msgs = "grpc_server_msg_received_total{grpc_method=\"Put\",grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"}";
    assert_eq!(
        sample(&after, msgs).unwrap() - sample(&before, msgs).unwrap(),
        5.0
    );
    assert_eq!(
        sample(&after, "etcd_debugging_mvcc_current_revision"),
        Some(6.0)
    );

    // Live keys: overwriting adds none, deleting takes each key once, and a deleted key
    // put again counts again.
    let keys = "etcd_debugging_mvcc_keys_total";
    assert_eq!(sample(&before, keys), Some(0.0));
    assert_eq!(sample(&after, keys), Some(5.0));
    let ctl = |args: &[&str]| assert_eq!(etcdctl35(&cairn.endpoint(), args).code, 0, "{args:?}");
    ctl(&["put", "p4", "again"]);
    ctl(&["del", "p0", "p3"]);
    ctl(&["del", "p0"]);
    assert_eq!(sample(&scrape(&cairn), keys), Some(2.0));
    ctl(&["put", "p0", "back"]);
    assert_eq!(sample(&scrape(&cairn), keys), Some(3.0));

    // A watcher that has been sent its events leaves none pending.
    watch_one_event(&cairn);
    let idle = scrape(&cairn);
    assert_eq!(
        sample(&idle, "etcd_debugging_mvcc_pending_events_total"),
        Some(0.0)
    );

    // Reads end with their calls; the background size measurement may hold one for a
    // moment.
    wait_until(
        Duration::from_secs(10),
        "no backend read transaction open when idle",
        || match sample(&scrape(&cairn), "etcd_mvcc_db_open_read_transactions") {
            Some(0.0) => Ok(()),
            other => Err(other),
        },
    );
}

/// A watcher whose client stops reading: once its stream's queue and HTTP/2 windows are
/// full, the events handed to it wait in the hub and show as pending; reading them all
/// brings the gauge back to 0.
#[test]
fn a_watcher_that_stops_reading_leaves_events_pending_until_it_reads() {
    let cairn = ServerProc::start(Kind::Cairn, &[]);
    let url = cairn.url();
    let pending = |server: &ServerProc| {
        sample(&scrape(server), "etcd_debugging_mvcc_pending_events_total").unwrap()
    };
    block_on(async {
        let client = WatchClient::new(channel(&url)).max_decoding_message_size(usize::MAX);
        let (tx, mut stream, _) = open_watch(client, b"big").await;
        assert_eq!(pending(&cairn), 0.0);
        let mut kv = KvClient::new(channel(&url));
        let put = PutRequest {
            key: b"big".to_vec(),
            value: vec![b'x'; 1 << 20],
            ..Default::default()
        };
        // Seen once is enough: an event handed over and not yet taken (the stream may take
        // it a moment later if it has room).
        let mut puts = 0;
        let mut seen_pending = 0.0;
        while puts < 64 && seen_pending < 1.0 {
            kv.put(put.clone()).await.unwrap();
            puts += 1;
            seen_pending = pending(&cairn);
        }
        assert!(seen_pending >= 1.0, "nothing pending after {puts} puts");
        let mut seen = 0;
        while seen < puts {
            let msg = tokio::time::timeout(Duration::from_secs(10), stream.message())
                .await
                .expect("the watch sends the next events within 10 s")
                .unwrap()
                .unwrap();
            seen += msg.events.len();
        }
        assert_eq!(seen, puts);
        assert_eq!(pending(&cairn), 0.0);
        drop(tx);
    });
}

/// Killing the leader of three members: the survivors elect another and each counts the
/// change.
#[test]
fn a_leader_killed_is_counted_as_a_leader_change_by_the_survivors() {
    let mut cairn = Cluster::start(3, &[]);
    let old = leader(&cairn.members);
    let changes =
        |m: &ServerProc| sample(&scrape(m), "etcd_server_leader_changes_seen_total").unwrap();
    let seen: Vec<f64> = cairn.members.iter().map(changes).collect();
    assert!(seen.iter().all(|&n| n >= 1.0), "{seen:?}");
    cairn.members[old].kill9();
    let new = leader(&cairn.members);
    assert_ne!(new, old);
    for i in (0..3).filter(|&i| i != old) {
        let m = &cairn.members[i];
        wait_until(
            Duration::from_secs(10),
            format!("{} to count the change", m.name),
            || {
                let now = changes(m);
                if now > seen[i] {
                    Ok(())
                } else {
                    Err(now)
                }
            },
        );
        let body = scrape(m);
        assert_eq!(sample(&body, "etcd_server_has_leader"), Some(1.0));
        assert_eq!(
            sample(&body, "etcd_server_is_leader"),
            Some(f64::from(i == new))
        );
    }
}

fn promtool(args: &[&str]) -> (i32, String) {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(repo_root().join("packaging/alerts"))
        .output()
        .expect("promtool is installed by scripts/setup");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn the_alerting_rules_check_and_fire_under_promtool() {
    let (code, out) = promtool(&["check", "rules", "cairn.rules.yml"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("SUCCESS"), "{out}");
    let (code, out) = promtool(&["test", "rules", "cairn.rules.test.yml"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("SUCCESS"), "{out}");
}

/// Every series the rules read is one cairn exports, so an alert is not silently dead.
#[test]
fn the_alerting_rules_read_only_families_cairn_exports() {
    let cairn = ServerProc::start(Kind::Cairn, &["--metrics=extensive"]);
    workload(&cairn);
    let exported = families(&scrape(&cairn));
    let rules =
        std::fs::read_to_string(repo_root().join("packaging/alerts/cairn.rules.yml")).unwrap();
    let mut read = BTreeSet::new();
    for word in rules.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        if ["etcd_", "grpc_server_", "process_"]
            .iter()
            .any(|p| word.starts_with(p))
        {
            read.insert(word.to_string());
        }
    }
    assert!(read.len() > 5, "{read:?}");
    let missing: Vec<&String> = read
        .iter()
        .filter(|w| {
            let base = ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|s| w.strip_suffix(s))
                .unwrap_or(w);
            !exported.contains_key(*w) && !exported.contains_key(base)
        })
        .collect();
    assert!(
        missing.is_empty(),
        "the rules read series cairn does not export: {missing:?}"
    );
}

#[test]
fn the_exposition_parser_reads_families_and_labels() {
    let body = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\",y=\"q\\\"z,w=\"} 3\n\
                # TYPE h histogram\nh_bucket{le=\"1\",To=\"b\"} 1\nh_sum{To=\"b\"} 1\nh_count{To=\"b\"} 1\n";
    let f = families(body);
    assert_eq!(f["a_total"].kind, "counter");
    assert_eq!(
        f["a_total"].labels,
        BTreeSet::from(["x".to_string(), "y".to_string()])
    );
    assert_eq!(f["h"].labels, BTreeSet::from(["To".to_string()]));
    assert_eq!(f["h"].buckets, vec!["1".to_string()]);
    assert_eq!(sample(body, "h_count{To=\"b\"}"), Some(1.0));
}

/// Every sample of `family` (a counter or gauge) in a `/metrics` body, by its label text
/// (`a="x",b="y"`; empty for none).
fn series(body: &str, family: &str) -> BTreeMap<String, f64> {
    body.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(family)?;
            let (labels, value) = match rest.strip_prefix('{') {
                Some(r) => r.split_once("} ")?,
                None => ("", rest.strip_prefix(' ')?),
            };
            Some((labels.to_string(), value.trim().parse().ok()?))
        })
        .collect()
}

/// What moved between two scrapes in the families named, by `family{labels}`: the series
/// whose value changed, with the change.
fn moved(before: &str, after: &str, families: &[&str]) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for family in families {
        let old = series(before, family);
        for (labels, now) in series(after, family) {
            let delta = now - old.get(&labels).copied().unwrap_or(0.0);
            if delta != 0.0 {
                out.insert(format!("{family}{{{labels}}}"), delta);
            }
        }
    }
    out
}

/// The messages and bytes (protobuf encoding, without gRPC's 5-byte prefix) a client sent
/// and received.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Traffic {
    sent: u64,
    received: u64,
}

impl Traffic {
    fn out(&mut self, m: &impl prost::Message) {
        self.sent += m.encoded_len() as u64;
    }
    fn back(&mut self, m: &impl prost::Message) {
        self.received += m.encoded_len() as u64;
    }
}

/// The next message of `stream`, or `None` at its end; fails the test after 10 s.
async fn next<T>(stream: &mut tonic::Streaming<T>, what: &str) -> Option<T> {
    tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .unwrap_or_else(|_| panic!("{what} did not come within 10 s"))
        .unwrap()
}

/// One of each kind of call and stream, as a client makes them: a put, a lease granted and
/// kept alive three times on one stream, a watch created, a snapshot read whole, a
/// campaign, and an observation of the election read once and then dropped. Returns the
/// bytes of the messages it sent and received, and how many chunks the snapshot came in.
async fn one_of_each_call(url: &str) -> (Traffic, u64) {
    use cairn_proto::etcdserverpb::lease_client::LeaseClient;
    use cairn_proto::etcdserverpb::maintenance_client::MaintenanceClient;
    use cairn_proto::etcdserverpb::{LeaseGrantRequest, LeaseKeepAliveRequest, SnapshotRequest};
    use cairn_proto::v3electionpb::election_client::ElectionClient;
    use cairn_proto::v3electionpb::{CampaignRequest, LeaderRequest};
    let mut t = Traffic::default();
    let ch = channel(url);

    let put = PutRequest {
        key: b"a".to_vec(),
        value: b"1".to_vec(),
        ..Default::default()
    };
    t.out(&put);
    t.back(
        &KvClient::new(ch.clone())
            .put(put)
            .await
            .unwrap()
            .into_inner(),
    );

    let mut lease = LeaseClient::new(ch.clone());
    let grant = LeaseGrantRequest { ttl: 60, id: 0 };
    t.out(&grant);
    let granted = lease.lease_grant(grant).await.unwrap().into_inner();
    t.back(&granted);
    // etcd answers the stream's headers with its first message: the first request goes
    // before the stream is opened.
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let req = LeaseKeepAliveRequest { id: granted.id };
    tx.send(req).await.unwrap();
    let mut alive = lease
        .lease_keep_alive(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    for i in 0..3 {
        t.out(&req);
        if i > 0 {
            tx.send(req).await.unwrap();
        }
        let resp = next(&mut alive, "a keep-alive").await.unwrap();
        assert_eq!(resp.id, granted.id);
        t.back(&resp);
    }
    // Closing the sending side ends the stream without an error.
    drop(tx);
    let end = next(&mut alive, "the end of the keep-alive stream").await;
    assert!(end.is_none(), "{end:?}");

    t.out(&watch_of(b"w"));
    let (tx, watch, created) = open_watch(WatchClient::new(ch.clone()), b"w").await;
    t.back(&created);
    drop((tx, watch));

    let snapshot = SnapshotRequest {};
    t.out(&snapshot);
    let mut chunks = MaintenanceClient::new(ch.clone())
        .snapshot(snapshot)
        .await
        .unwrap()
        .into_inner();
    let mut snapshot_chunks = 0;
    while let Some(chunk) = next(&mut chunks, "a snapshot chunk").await {
        t.back(&chunk);
        snapshot_chunks += 1;
    }

    let mut election = ElectionClient::new(ch);
    let campaign = CampaignRequest {
        name: b"e".to_vec(),
        lease: granted.id,
        value: b"me".to_vec(),
    };
    t.out(&campaign);
    t.back(&election.campaign(campaign).await.unwrap().into_inner());
    let observe = LeaderRequest {
        name: b"e".to_vec(),
    };
    t.out(&observe);
    let mut leaders = election.observe(observe).await.unwrap().into_inner();
    let leader = next(&mut leaders, "an observation").await.unwrap();
    assert_eq!(
        leader.kv.as_ref().map(|kv| kv.value.as_slice()),
        Some(&b"me"[..])
    );
    t.back(&leader);
    (t, snapshot_chunks)
}

/// grpc-go-prometheus counts each call and each message of every stream (not only Watch),
/// and etcd's codec counts the bytes of each message: the same calls and streams on etcd
/// 3.5.1 and cairn move the same series by the same amounts, and the bytes are exactly
/// those of the messages the client sent and received.
#[test]
fn calls_stream_messages_and_their_bytes_are_counted_as_etcd_counts_them() {
    let families = [
        "grpc_server_started_total",
        "grpc_server_handled_total",
        "grpc_server_msg_received_total",
        "grpc_server_msg_sent_total",
        "etcd_server_client_requests_total",
    ];
    let received = "etcd_network_client_grpc_received_bytes_total";
    let sent = "etcd_network_client_grpc_sent_bytes_total";
    let mut seen = Vec::new();
    for kind in [Kind::Etcd35, Kind::Cairn] {
        let server = ServerProc::start(kind, &[]);
        let before = scrape(&server);
        let url = server.url();
        let (traffic, chunks) = block_on(async move {
            tokio::time::timeout(Duration::from_secs(60), one_of_each_call(&url))
                .await
                .expect("the calls end within 60 s")
        });
        // A stream the client dropped is counted as handled once the server has noticed.
        let after = wait_until(
            Duration::from_secs(10),
            format!("{kind:?} to count every stream as handled"),
            || {
                let after = scrape(&server);
                let m = moved(&before, &after, &families);
                let total = |family: &str| -> f64 {
                    m.iter()
                        .filter(|(k, _)| k.starts_with(family))
                        .map(|(_, v)| v)
                        .sum()
                };
                if total("grpc_server_handled_total") == total("grpc_server_started_total") {
                    Ok(after)
                } else {
                    Err(m)
                }
            },
        );
        let bytes = |body: &str, name: &str| sample(body, name).unwrap_or(0.0) as u64;
        assert_eq!(
            Traffic {
                sent: bytes(&after, received) - bytes(&before, received),
                received: bytes(&after, sent) - bytes(&before, sent),
            },
            traffic,
            "{kind:?}: the bytes counted (received, sent) are not those of the messages"
        );
        let mut m = moved(&before, &after, &families);
        // The snapshot's chunks: as many as the client read (the two backends differ in
        // size, so their counts differ).
        let chunks_sent = "grpc_server_msg_sent_total{grpc_method=\"Snapshot\",grpc_service=\"etcdserverpb.Maintenance\",grpc_type=\"server_stream\"}";
        assert_eq!(m.remove(chunks_sent), Some(chunks as f64), "{kind:?}");
        // A stream the client cancels is counted as `Canceled`; etcd's Observe returns
        // its context's error unconverted, which grpc-go-prometheus counts as `Unknown`
        // (COMPAT.md).
        if kind == Kind::Etcd35 {
            let observe = |code: &str| {
                format!("grpc_server_handled_total{{grpc_code=\"{code}\",grpc_method=\"Observe\",grpc_service=\"v3electionpb.Election\",grpc_type=\"server_stream\"}}")
            };
            let n = m.remove(&observe("Unknown"));
            assert_eq!(n, Some(1.0), "{m:#?}");
            m.insert(observe("Canceled"), 1.0);
        }
        seen.push(m);
    }
    let (etcd, cairn) = (&seen[0], &seen[1]);
    assert_eq!(cairn, etcd, "cairn counted the calls otherwise than etcd");
    // What the client did, as both counted it.
    for (series, n) in [
        ("grpc_server_msg_received_total{grpc_method=\"LeaseKeepAlive\",grpc_service=\"etcdserverpb.Lease\",grpc_type=\"bidi_stream\"}", 3.0),
        ("grpc_server_msg_sent_total{grpc_method=\"LeaseKeepAlive\",grpc_service=\"etcdserverpb.Lease\",grpc_type=\"bidi_stream\"}", 3.0),
        ("grpc_server_msg_received_total{grpc_method=\"Snapshot\",grpc_service=\"etcdserverpb.Maintenance\",grpc_type=\"server_stream\"}", 1.0),
        ("grpc_server_msg_received_total{grpc_method=\"Observe\",grpc_service=\"v3electionpb.Election\",grpc_type=\"server_stream\"}", 1.0),
        ("grpc_server_msg_sent_total{grpc_method=\"Observe\",grpc_service=\"v3electionpb.Election\",grpc_type=\"server_stream\"}", 1.0),
        ("grpc_server_started_total{grpc_method=\"Campaign\",grpc_service=\"v3electionpb.Election\",grpc_type=\"unary\"}", 1.0),
        ("etcd_server_client_requests_total{client_api_version=\"unknown\",type=\"stream\"}", 4.0),
    ] {
        assert_eq!(etcd.get(series), Some(&n), "{series} in {etcd:#?}");
    }
}

/// The count of histogram `family` (no labels) in a `/metrics` body.
fn observations(body: &str, family: &str) -> f64 {
    sample(body, &format!("{family}_count")).unwrap_or(0.0)
}

/// A hash, a hash by revision, a defragment, a snapshot and a health check on etcd 3.5.1
/// and on cairn: each is timed (or counted) once, on both.
#[test]
fn maintenance_calls_and_health_checks_are_timed_and_counted_as_etcd_does() {
    use cairn_proto::etcdserverpb::maintenance_client::MaintenanceClient;
    use cairn_proto::etcdserverpb::HashRequest;
    let timed = [
        ("etcd_mvcc_hash_duration_seconds", "Hash"),
        ("etcd_mvcc_hash_rev_duration_seconds", "HashKV"),
        ("etcd_disk_backend_defrag_duration_seconds", "Defragment"),
        ("etcd_disk_backend_snapshot_duration_seconds", "Snapshot"),
    ];
    for kind in [Kind::Etcd35, Kind::Cairn] {
        let server = ServerProc::start(kind, &[]);
        let ctl = |args: &[&str]| {
            let r = etcdctl35(&server.endpoint(), args);
            assert_eq!(r.code, 0, "{kind:?} {args:?}: {r:?}");
        };
        ctl(&["put", "k", "v"]);
        let before = scrape(&server);
        let url = server.url();
        block_on(async move {
            MaintenanceClient::new(channel(&url))
                .hash(HashRequest {})
                .await
                .unwrap()
        });
        ctl(&["endpoint", "hashkv"]);
        ctl(&["defrag"]);
        let file = server.dir.path().join("timed.db");
        ctl(&["snapshot", "save", file.to_str().unwrap()]);
        assert_eq!(http_get(server.client_port, "/health").0, 200);
        let after = scrape(&server);
        for (family, call) in timed {
            assert_eq!(
                observations(&after, family) - observations(&before, family),
                1.0,
                "{kind:?}: one {call} times {family} once"
            );
        }
        let count = |b: &str, name: &str| sample(b, name).unwrap_or(0.0);
        for (name, moved) in [
            ("etcd_server_health_success", 1.0),
            ("etcd_server_health_failures", 0.0),
        ] {
            assert_eq!(
                count(&after, name) - count(&before, name),
                moved,
                "{kind:?} {name}"
            );
        }
        assert_eq!(
            sample(&after, "etcd_disk_defrag_inflight"),
            Some(0.0),
            "{kind:?}"
        );
    }
}

/// The value of `name` (a series without labels, or written out whole) on `server`; 0 when
/// it is not there.
fn value(server: &ServerProc, name: &str) -> f64 {
    sample(&scrape(server), name).unwrap_or(0.0)
}

/// Waits (up to `timeout`) until `name` on `server` is above `before`; `what` names the
/// wait for its failure.
fn risen(server: &ServerProc, name: &str, before: f64, timeout: Duration, what: String) {
    wait_until(timeout, what, || match value(server, name) - before {
        n if n >= 1.0 => Ok(()),
        n => Err(n),
    });
}

/// Three members of etcd 3.5.1 and of cairn put through the same faults, each moving the
/// counters an operator's alerts read, on both:
/// - the leader stalled for five heartbeat intervals (SIGSTOP, well within the election
///   timeout) sends its next heartbeat to each follower late: a heartbeat send failure
///   per follower at least, none on the followers;
/// - a linearizable read on a follower while the leader is stalled until another member
///   takes over: the follower sees a leader change and counts the read index in flight as
///   failed (etcd fails the read, cairn asks the new leader);
/// - a member left alone (the two others killed) has no leader: a health check fails, a
///   put is a failed proposal, and a linearizable read a slow read index.
#[test]
fn leader_stalls_and_quorum_loss_move_the_counters_etcd_moves() {
    // A long election timeout: the follower's read is surely in flight before another
    // member takes over.
    let flags = ["--heartbeat-interval=100", "--election-timeout=5000"];
    for kind in [Kind::Cairn] {
        let mut cluster = Cluster::start_kind(kind, 3, &flags);
        let lead = leader(&cluster.members);
        let followers: Vec<usize> = (0..3).filter(|&i| i != lead).collect();

        // A stall made before the leader's first heartbeat to a follower finds nothing to
        // be late after (a cairn leader may not have ticked yet just after start-up), so
        // stalls are repeated, five at most, until each follower has been counted.
        let late = "etcd_server_heartbeat_send_failures_total";
        let before = value(&cluster.members[lead], late);
        let mut stalls = 0;
        while value(&cluster.members[lead], late) - before < 2.0 {
            assert!(
                stalls < 5,
                "{kind:?}: no late heartbeat counted after {stalls} stalls"
            );
            stalls += 1;
            cluster.members[lead].signal("STOP");
            std::thread::sleep(Duration::from_millis(500));
            cluster.members[lead].signal("CONT");
            // The next heartbeats leave within a heartbeat interval of waking.
            let deadline = std::time::Instant::now() + Duration::from_secs(3);
            while std::time::Instant::now() < deadline
                && value(&cluster.members[lead], late) - before < 2.0
            {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        for &f in &followers {
            assert_eq!(
                value(&cluster.members[f], late),
                0.0,
                "{kind:?}: a follower sends no heartbeats"
            );
        }

        let f = followers[0];
        let (failed, changes) = (
            "etcd_server_read_indexes_failed_total",
            "etcd_server_leader_changes_seen_total",
        );
        let (failed_before, changes_before) = (
            value(&cluster.members[f], failed),
            value(&cluster.members[f], changes),
        );
        cluster.members[lead].signal("STOP");
        let ep = cluster.members[f].endpoint();
        let read =
            std::thread::spawn(move || etcdctl35(&ep, &["get", "k", "--command-timeout=30s"]));
        risen(
            &cluster.members[f],
            changes,
            changes_before,
            Duration::from_secs(30),
            format!("{kind:?}'s follower to see a new leader"),
        );
        risen(
            &cluster.members[f],
            failed,
            failed_before,
            Duration::from_secs(10),
            format!("{kind:?}'s follower to count the read index in flight as failed"),
        );
        cluster.members[lead].signal("CONT");
        let r = read.join().unwrap();
        if kind == Kind::Cairn {
            assert_eq!(
                r.code, 0,
                "cairn answers the read from the new leader: {r:?}"
            );
        }

        for i in (0..3).filter(|&i| i != f) {
            cluster.members[i].kill9();
        }
        wait_until(
            Duration::from_secs(30),
            format!("{kind:?}'s last member to have no leader"),
            || match value(&cluster.members[f], "etcd_server_has_leader") {
                0.0 => Ok(()),
                n => Err(n),
            },
        );
        let health = "etcd_server_health_failures";
        let before = value(&cluster.members[f], health);
        assert_eq!(http_get(cluster.members[f].client_port, "/health").0, 503);
        assert_eq!(value(&cluster.members[f], health) - before, 1.0, "{kind:?}");
        for (args, counter) in [
            (&["put", "k", "v"][..], "etcd_server_proposals_failed_total"),
            (&["get", "k"][..], "etcd_server_slow_read_indexes_total"),
        ] {
            let before = value(&cluster.members[f], counter);
            let r = etcdctl35(
                &cluster.members[f].endpoint(),
                &[args, &["--command-timeout=3s"]].concat(),
            );
            assert_ne!(r.code, 0, "{kind:?} {args:?} without a leader: {r:?}");
            // The client gives up after 3 s; the member counts when it notices.
            risen(
                &cluster.members[f],
                counter,
                before,
                Duration::from_secs(20),
                format!("{kind:?} to count {args:?} in {counter}"),
            );
        }
        // The put its client gave up on is no longer pending.
        let pending = "etcd_server_proposals_pending";
        assert_eq!(value(&cluster.members[f], pending), 0.0, "{kind:?}");
    }
}

/// The value of `name` in `body`, 0 when it is not there.
fn at(body: &str, name: &str) -> f64 {
    sample(body, name).unwrap_or(0.0)
}

/// How much `name` moved between two `/metrics` bodies.
fn delta(before: &str, after: &str, name: &str) -> f64 {
    at(after, name) - at(before, name)
}

/// Waits (up to 20 s) until `check` holds for a scrape of `server`, and returns the scrape
/// after that one, on which it holds too.
///
/// A scrape is not one instant: its series are read one after another (etcd's registry
/// reads its collectors concurrently), so a series moved just before the one `check` looks
/// at (the revoke an expired lease counts before it counts the expiry) may have been read
/// before it moved. The scrape after sees everything that moved before what `check` saw.
fn scrape_until(server: &ServerProc, what: String, check: impl Fn(&str) -> bool) -> String {
    let mut held = false;
    wait_until(Duration::from_secs(20), what, || {
        let body = scrape(server);
        match (check(&body), held) {
            (true, true) => Ok(body),
            (now, _) => {
                held = now;
                Err(body.len())
            }
        }
    })
}

/// The soft limit on open files of process `pid`, from `/proc/PID/limits`.
fn open_files_limit(pid: u32) -> f64 {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    line.split_whitespace().nth(3).unwrap().parse().unwrap()
}

/// Values of 10,000 pseudo-random letters (the backends do not compress them away).
fn letters(seed: u64) -> String {
    let mut x = seed | 1;
    (0..10_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'a' + (x % 26) as u8)
        })
        .collect()
}

/// The same steps on one member of etcd 3.5.1 and of cairn, each moving the families an
/// operator reads for it; what each step moved is compared between the two where both
/// count the same thing, else its direction is checked on each:
/// - leases: one granted, renewed once and revoked, one granted with a 2 s TTL and left
///   to expire (granted, renewed, revoked and expired counters);
/// - a put, a get and a txn of two puts without compares (the mvcc put, range and txn
///   counters and the put size, proposals committed and applied);
/// - 50 puts of 10,000 bytes (database size and size in use, WAL fsyncs, backend
///   commits, the process's CPU time), then deleted, compacted and defragmented
///   (compaction time, pauses and keys; the database shrinks);
/// - 20 idle connections opened to the client port (open file descriptors) and the limit
///   on them (the process's soft limit, as Go's runtime raises it to the hard one);
/// - two scrapes in a row (`promhttp_metric_handler_requests_total` counts the first).
#[test]
fn leases_mvcc_compaction_disk_process_and_scrapes_move_as_on_etcd() {
    let mut seen: Vec<BTreeMap<&str, f64>> = Vec::new();
    for kind in [Kind::Etcd35, Kind::Cairn] {
        let server = ServerProc::start(kind, &[]);
        let ep = server.endpoint();
        let ctl = |args: &[&str]| -> String {
            let r = etcdctl35(&ep, args);
            assert_eq!(r.code, 0, "{kind:?} {args:?}: {r:?}");
            r.stdout
        };
        let lease_id = |out: String| -> String {
            // `lease 694d7a1b2c3d4e5f granted with TTL(60s)`
            out.split_whitespace().nth(1).unwrap().to_string()
        };
        let mut m: BTreeMap<&str, f64> = BTreeMap::new();

        // Leases.
        let before = scrape(&server);
        let id = lease_id(ctl(&["lease", "grant", "60"]));
        ctl(&["lease", "keep-alive", "--once", &id]);
        ctl(&["lease", "revoke", &id]);
        ctl(&["lease", "grant", "2"]);
        let expired = "etcd_debugging_server_lease_expired_total";
        let after = scrape_until(&server, format!("{kind:?} to expire a lease"), |b| {
            delta(&before, b, expired) >= 1.0
        });
        for name in [
            expired,
            "etcd_debugging_lease_granted_total",
            "etcd_debugging_lease_renewed_total",
            "etcd_debugging_lease_revoked_total",
            "etcd_debugging_lease_ttl_total_count",
        ] {
            m.insert(name, delta(&before, &after, name));
        }

        // A put, a get, a txn of two puts.
        let (committed, applied) = (
            "etcd_server_proposals_committed_total",
            "etcd_server_proposals_applied_total",
        );
        let settled = |b: &str| at(b, committed) == at(b, applied);
        let before = scrape_until(&server, format!("{kind:?} to apply all"), settled);
        ctl(&["put", "ka", "12345"]);
        let after = scrape_until(&server, format!("{kind:?} to apply the put"), |b| {
            settled(b) && delta(&before, b, applied) >= 1.0
        });
        for (key, name) in [
            ("put: etcd_mvcc_put_total", "etcd_mvcc_put_total"),
            (
                "put: etcd_debugging_mvcc_total_put_size_in_bytes",
                "etcd_debugging_mvcc_total_put_size_in_bytes",
            ),
            ("put: etcd_server_proposals_committed_total", committed),
            ("put: etcd_server_proposals_applied_total", applied),
        ] {
            m.insert(key, delta(&before, &after, name));
        }
        let before = after;
        ctl(&["get", "ka"]);
        let after = scrape(&server);
        for (key, name) in [
            ("get: etcd_mvcc_range_total", "etcd_mvcc_range_total"),
            (
                "get: etcd_debugging_mvcc_range_total",
                "etcd_debugging_mvcc_range_total",
            ),
            ("get: etcd_server_proposals_applied_total", applied),
        ] {
            m.insert(key, delta(&before, &after, name));
        }
        let before = after;
        let r = cairn_tests::run_client(
            &cairn_tests::tool("etcdctl-3.5"),
            &ep,
            &["txn"],
            Some("\nput ka x\nput kb y\n\n\n"),
        );
        assert_eq!(r.code, 0, "{kind:?} {r:?}");
        let after = scrape(&server);
        m.insert(
            "txn: etcd_mvcc_txn_total",
            delta(&before, &after, "etcd_mvcc_txn_total"),
        );

        // Load: 50 values of 10,000 bytes.
        let (size, in_use) = (
            "etcd_mvcc_db_total_size_in_bytes",
            "etcd_mvcc_db_total_size_in_use_in_bytes",
        );
        let (fsync, commit, cpu) = (
            "etcd_disk_wal_fsync_duration_seconds_count",
            "etcd_disk_backend_commit_duration_seconds_count",
            "process_cpu_seconds_total",
        );
        let before = scrape(&server);
        let url = server.url();
        block_on(async move {
            let mut kv = KvClient::new(channel(&url));
            for i in 0..50u64 {
                kv.put(PutRequest {
                    key: format!("big{i:02}").into_bytes(),
                    value: letters(i + 1).into_bytes(),
                    ..Default::default()
                })
                .await
                .unwrap();
            }
        });
        // etcd commits its backend every 100 ms and measures the size in use then. cairn's
        // pages reach the file at its durable backend commits: at least every 500 ms while
        // it applies, and 500 ms after the last durable one once writes pause. No write
        // follows the burst here: the sizes must grow all the same.
        let loaded = wait_until(
            Duration::from_secs(20),
            format!("{kind:?} to grow its database"),
            || {
                let b = scrape(&server);
                let moved = [in_use, size, commit, cpu].map(|n| delta(&before, &b, n));
                if moved[0] >= 400_000.0
                    && moved[1] >= 400_000.0
                    && moved[2] >= 1.0
                    && moved[3] > 0.0
                {
                    Ok(b)
                } else {
                    Err(moved)
                }
            },
        );
        assert!(
            delta(&before, &loaded, fsync) >= 1.0,
            "{kind:?}: 50 puts fsync the WAL"
        );
        assert!(at(&loaded, in_use) <= at(&loaded, size), "{kind:?}");
        assert_eq!(
            sample(&loaded, "etcd_server_quota_backend_bytes"),
            Some(2_147_483_648.0),
            "{kind:?}"
        );

        // Compaction and defragment give the space back.
        let (last, pause, total, compacted) = (
            "etcd_debugging_mvcc_db_compaction_last",
            "etcd_debugging_mvcc_db_compaction_pause_duration_milliseconds_count",
            "etcd_debugging_mvcc_db_compaction_total_duration_milliseconds_count",
            "etcd_debugging_mvcc_db_compaction_keys_total",
        );
        let out = ctl(&["del", "big", "--prefix", "-w", "json"]);
        let rev: serde_json::Value = serde_json::from_str(&out).unwrap();
        let rev = rev["header"]["revision"].as_u64().unwrap().to_string();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let before = scrape(&server);
        ctl(&["compaction", "--physical", &rev]);
        let after = scrape_until(&server, format!("{kind:?} to finish the compaction"), |b| {
            delta(&before, b, total) >= 1.0
        });
        let when = at(&after, last);
        assert!(
            when >= now.floor() - 1.0 && when <= now + 60.0,
            "{kind:?}: last compaction at {when}, started at {now}"
        );
        // etcd times the pauses between its batches of 1,000 revisions (none here); cairn
        // removes them in one write and times that once (COMPAT.md).
        let pauses = if kind == Kind::Cairn { 1.0 } else { 0.0 };
        assert_eq!(delta(&before, &after, pause), pauses, "{kind:?}");
        m.insert("compaction: total count", delta(&before, &after, total));
        m.insert("compaction: keys", delta(&before, &after, compacted));
        ctl(&["defrag"]);
        let defragged = scrape_until(&server, format!("{kind:?} to shrink"), |b| {
            at(b, size) < at(&loaded, size) - 300_000.0
                && at(b, in_use) < at(&loaded, in_use) - 300_000.0
        });
        assert!(at(&defragged, in_use) <= at(&defragged, size), "{kind:?}");

        // Open files: 20 idle connections more, and the limit.
        let pid = server.pid().unwrap();
        let limit = open_files_limit(pid);
        for name in ["process_max_fds", "os_fd_limit"] {
            assert_eq!(sample(&defragged, name), Some(limit), "{kind:?} {name}");
        }
        // Files the steps above left open (their clients' connections, the defragment's
        // files) may still be closing: start from a count seen three times in a row.
        let mut last = Vec::new();
        let before = wait_until(
            Duration::from_secs(20),
            format!("{kind:?}'s open files to settle"),
            || {
                let b = scrape(&server);
                last.push(at(&b, "process_open_fds"));
                match last.len() >= 3
                    && last[last.len() - 3..]
                        .iter()
                        .all(|&n| n == last[last.len() - 1])
                {
                    true => Ok(b),
                    false => Err(last.clone()),
                }
            },
        );
        let conns: Vec<std::net::TcpStream> = (0..20)
            .map(|_| std::net::TcpStream::connect(("127.0.0.1", server.client_port)).unwrap())
            .collect();
        wait_until(
            Duration::from_secs(20),
            format!("{kind:?} to count 20 more open files"),
            || {
                let b = scrape(&server);
                // etcd samples `os_fd_used` on a timer (minutes apart), cairn at the scrape.
                let moved = [
                    delta(&before, &b, "process_open_fds"),
                    delta(&before, &b, "os_fd_used"),
                ];
                if moved[0] >= 20.0 && (kind == Kind::Etcd35 || moved[1] >= 20.0) {
                    Ok(())
                } else {
                    let listed = std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count());
                    Err((moved, at(&before, "process_open_fds"), listed))
                }
            },
        );
        drop(conns);
        scrape_until(
            &server,
            format!("{kind:?} to close the 20 connections"),
            |b| delta(&before, b, "process_open_fds") < 20.0,
        );

        // Versions: the cluster's, and the server's as `/version` tells it.
        let body = scrape(&server);
        let cluster = series(&body, "etcd_cluster_version");
        assert_eq!(
            cluster,
            BTreeMap::from([("cluster_version=\"3.5\"".to_string(), 1.0)]),
            "{kind:?}"
        );
        let (_, version) = http_get(server.client_port, "/version");
        let version: serde_json::Value = serde_json::from_str(&version).unwrap();
        let version = version["etcdserver"].as_str().unwrap();
        assert_eq!(
            series(&body, "etcd_server_version"),
            BTreeMap::from([(format!("server_version=\"{version}\""), 1.0)]),
            "{kind:?}"
        );
        assert!(
            at(&body, "process_virtual_memory_bytes") >= at(&body, "process_resident_memory_bytes"),
            "{kind:?}"
        );

        // Scrapes: each counts the ones before it, and itself as in flight.
        let ok = "promhttp_metric_handler_requests_total{code=\"200\"}";
        let (first, second) = (scrape(&server), scrape(&server));
        m.insert("scrape: requests", delta(&first, &second, ok));
        m.insert(
            "scrape: in flight",
            at(&second, "promhttp_metric_handler_requests_in_flight"),
        );
        seen.push(m);
    }
    let (etcd, cairn) = (&seen[0], &seen[1]);
    assert_eq!(cairn, etcd, "what the steps moved on cairn and on etcd");
    for (name, n) in [
        ("etcd_debugging_lease_granted_total", 2.0),
        ("etcd_debugging_lease_renewed_total", 1.0),
        ("etcd_debugging_lease_revoked_total", 2.0),
        ("etcd_debugging_server_lease_expired_total", 1.0),
        ("put: etcd_mvcc_put_total", 1.0),
        ("put: etcd_debugging_mvcc_total_put_size_in_bytes", 7.0),
        ("put: etcd_server_proposals_applied_total", 1.0),
        ("get: etcd_mvcc_range_total", 1.0),
        ("txn: etcd_mvcc_txn_total", 1.0),
        ("compaction: total count", 1.0),
        ("scrape: requests", 1.0),
        ("scrape: in flight", 1.0),
    ] {
        assert_eq!(etcd.get(name), Some(&n), "{name} on etcd: {etcd:#?}");
    }
}

/// Three members of etcd 3.5.1 and of cairn: each member's stream to each other member is
/// up (`etcd_network_active_peers`; etcd counts its two stream kinds, cairn its one), a put
/// of 100,000 bytes moves the bytes the leader sends to each follower and each follower
/// receives from it by at least that much, and a member killed is no longer an active
/// peer of the others.
#[test]
fn three_members_count_peer_streams_and_bytes_as_etcd() {
    for kind in [Kind::Etcd35, Kind::Cairn] {
        let mut cluster = Cluster::start_kind(kind, 3, &[]);
        let ids: Vec<String> = cluster
            .members
            .iter()
            .map(|m| format!("{:x}", m.ids().member))
            .collect();
        let active = |i: usize, j: usize| {
            format!(
                "etcd_network_active_peers{{Local=\"{}\",Remote=\"{}\"}}",
                ids[i], ids[j]
            )
        };
        for i in 0..3 {
            for j in (0..3).filter(|&j| j != i) {
                scrape_until(
                    &cluster.members[i],
                    format!("{kind:?}: member {i} to count {j} as an active peer"),
                    |b| at(b, &active(i, j)) >= 1.0,
                );
            }
        }
        let lead = leader(&cluster.members);
        let followers: Vec<usize> = (0..3).filter(|&i| i != lead).collect();
        let before: Vec<String> = cluster.members.iter().map(scrape).collect();
        let url = cluster.members[lead].url();
        block_on(async move {
            KvClient::new(channel(&url))
                .put(PutRequest {
                    key: b"big".to_vec(),
                    value: vec![b'x'; 100_000],
                    ..Default::default()
                })
                .await
                .unwrap()
        });
        for &f in &followers {
            let sent = format!("etcd_network_peer_sent_bytes_total{{To=\"{}\"}}", ids[f]);
            scrape_until(
                &cluster.members[lead],
                format!("{kind:?}: the leader to count the put sent to {f}"),
                |b| delta(&before[lead], b, &sent) >= 100_000.0,
            );
            let received = format!(
                "etcd_network_peer_received_bytes_total{{From=\"{}\"}}",
                ids[lead]
            );
            scrape_until(
                &cluster.members[f],
                format!("{kind:?}: follower {f} to count the put received"),
                |b| delta(&before[f], b, &received) >= 100_000.0,
            );
        }
        let gone = followers[1];
        cluster.members[gone].kill9();
        for i in (0..3).filter(|&i| i != gone) {
            scrape_until(
                &cluster.members[i],
                format!("{kind:?}: member {i} to see {gone} go"),
                |b| sample(b, &active(i, gone)) == Some(0.0),
            );
        }
    }
}

/// A learner added to one member of etcd 3.5.1 and of cairn, started, and promoted once it
/// has caught up: the leader counts one promotion in
/// `etcd_server_learner_promote_successes`, and the new member shows
/// `etcd_server_is_learner` 1 until the promotion and 0 after, on both; on cairn the new
/// member times the snapshot it joined from (`etcd_snap_db_save_total_duration_seconds`).
#[test]
fn a_learner_promoted_is_counted_by_the_leader_as_on_etcd() {
    let promotions = "etcd_server_learner_promote_successes";
    for kind in [Kind::Etcd35, Kind::Cairn] {
        let first = ServerProc::start(kind, &[]);
        let ep = first.endpoint();
        assert_eq!(etcdctl35(&ep, &["put", "k", "v"]).code, 0);
        let before = value(&first, promotions);
        let port = cairn_tests::free_port();
        let r = cairn_tests::etcdctl35_membership(
            &ep,
            &[
                "member",
                "add",
                "m2",
                &format!("--peer-urls=http://127.0.0.1:{port}"),
                "--learner",
            ],
        );
        assert_eq!(r.code, 0, "{kind:?} {r:?}");
        let id = r.stdout.split_whitespace().nth(1).unwrap().to_string();
        let initial = r
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix("ETCD_INITIAL_CLUSTER=\""))
            .unwrap()
            .trim_end_matches('"')
            .to_string();
        let mut second = ServerProc::new(
            kind,
            "m2",
            port,
            &[
                &format!("--initial-cluster={initial}"),
                "--initial-cluster-state=existing",
            ],
        );
        second.spawn();
        assert_eq!(value(&second, "etcd_server_is_learner"), 1.0, "{kind:?}");
        // The leader refuses to promote a learner that has not caught up yet.
        wait_until(
            Duration::from_secs(20),
            format!("{kind:?} to promote the learner"),
            || {
                let r = etcdctl35(&ep, &["member", "promote", &id]);
                if r.code == 0 {
                    Ok(())
                } else {
                    Err(r)
                }
            },
        );
        assert_eq!(value(&first, promotions) - before, 1.0, "{kind:?}");
        wait_until(
            Duration::from_secs(20),
            format!("{kind:?}'s new member to know it is a voter"),
            || match value(&second, "etcd_server_is_learner") {
                0.0 => Ok(()),
                n => Err(n),
            },
        );
        assert_eq!(value(&second, promotions), 0.0, "{kind:?}: not the leader");
        // cairn's log begins after the snapshot it bootstraps from, so a member that joins
        // empty is sent a snapshot of the backend, which it times once; etcd 3.5.1 sends
        // its log from the first entry while it still has it, so it times none here.
        let body = scrape(&second);
        let saved = at(&body, "etcd_snap_db_save_total_duration_seconds_count");
        let applying = at(&body, "etcd_server_snapshot_apply_in_progress_total");
        match kind {
            Kind::Cairn => {
                assert_eq!(saved, 1.0, "{kind:?}");
                assert!(at(&body, "etcd_snap_db_save_total_duration_seconds_sum") > 0.0);
            }
            _ => assert_eq!(saved, 0.0, "{kind:?}"),
        }
        assert_eq!(applying, 0.0, "{kind:?}: no snapshot left in progress");
    }
}
