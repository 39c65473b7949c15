//! Network partitions between processes, with Linux network namespaces: each of three
//! members runs in its own namespace (`ip netns exec`) with one veth into a bridge in the
//! root namespace, on a private /24 under 10.231.0.0/16 that exists only on the bridge and
//! in these namespaces (forwarding stays off, so nothing is routed anywhere else). The
//! clients run in the test process, in the root namespace, and reach every member over the
//! bridge.
//!
//! The leader is cut off from its peers (iptables DROP rules inside its namespace, both
//! directions, for the other members' addresses only: clients still reach it) for a few
//! seconds while clients pinned to every member run linearizable gets, puts and
//! compare-and-set txns. While it is isolated: writes through it are not acknowledged, a
//! linearizable read through it never returns the value the majority has since replaced,
//! and the majority elects a new leader and keeps acknowledging writes. After healing the
//! old leader catches up, every acknowledged write is found at its revision on every
//! member, HashKV agrees, and the whole history is linearizable key by key.
//!
//! The namespaces, veths, bridge (and with the namespaces the iptables rules) are removed
//! when the test ends, also on a panic. Needs root, iproute2 and iptables (scripts/setup).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::{Duration, Instant};

use cairn_proto::etcdserverpb::kv_client::KvClient;
use cairn_tests::linearizability::{check, check_revisions, Input, Operation, Outcome, Verdict};
use cairn_tests::workload::{
    assert_acknowledged_everywhere, assert_same_hashkv, check_failures, final_reads, first_kv, put,
    range, runtime, seed, serves, summary, Clock, Workload, FINAL_READER, OP_TIMEOUT,
};
use cairn_tests::{channel, leader_among, start_together, Kind, ServerProc};

const MEMBERS: usize = 3;
const KEYS: [&str; 3] = ["pt/a", "pt/b", "pt/c"];
/// Concurrent clients, pinned to members round-robin.
const CLIENTS: usize = 6;
const MAX_OPS_PER_CLIENT: usize = 2000;
const MAX_WORKLOAD: Duration = Duration::from_secs(30);
/// The partition workload.
const WORKLOAD: Workload = Workload {
    keys: &KEYS,
    clients: CLIENTS,
    max_ops_per_client: MAX_OPS_PER_CLIENT,
    max_time: MAX_WORKLOAD,
};
/// How long the leader stays cut off.
const PARTITION: Duration = Duration::from_secs(5);
/// The client number of the probes.
const PROBE: usize = 2000;

/// Runs a command that must succeed.
fn sh(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs a command whose failure does not matter (cleanup).
fn sh_quiet(args: &[&str]) {
    let _ = Command::new(args[0]).args(&args[1..]).output();
}

/// The bridge, veths and namespaces of one test run, removed when dropped.
struct Net {
    bridge: String,
    subnet: u8,
    namespaces: Vec<String>,
    veths: Vec<String>,
}

impl Net {
    /// The address of member `i`.
    fn addr(&self, i: usize) -> String {
        format!("10.231.{}.{}", self.subnet, i + 1)
    }

    /// Removes what an earlier run left behind when its process died without cleaning up
    /// (its bridge's alias names the owning pid).
    fn remove_stale() {
        let Ok(dir) = std::fs::read_dir("/sys/class/net") else {
            return;
        };
        for entry in dir.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(n) = name
                .strip_prefix("cairnpt")
                .and_then(|n| n.parse::<u8>().ok())
            else {
                continue;
            };
            let alias = std::fs::read_to_string(entry.path().join("ifalias")).unwrap_or_default();
            let Some(pid) = alias.trim().strip_prefix("cairn-partition-test pid=") else {
                continue;
            };
            if std::path::Path::new(&format!("/proc/{pid}")).exists() {
                continue;
            }
            // The dead run's members still run in its namespaces.
            for i in 0..MEMBERS {
                let out = Command::new("ip")
                    .args(["netns", "pids", &format!("{name}-m{i}")])
                    .output();
                for pid in out
                    .map(|o| o.stdout)
                    .unwrap_or_default()
                    .split(|b| *b == b'\n')
                {
                    let pid = String::from_utf8_lossy(pid).trim().to_string();
                    if !pid.is_empty() {
                        sh_quiet(&["kill", "-9", &pid]);
                    }
                }
            }
            Net {
                bridge: name.clone(),
                subnet: n,
                namespaces: (0..MEMBERS).map(|i| format!("{name}-m{i}")).collect(),
                veths: (0..MEMBERS).map(|i| format!("{name}v{i}")).collect(),
            }
            .remove();
        }
    }

    /// Claims a free subnet (creating its bridge fails if another run holds it) and gives
    /// each of `n` members a namespace with one veth into the bridge.
    fn create(n: usize) -> Net {
        Net::remove_stale();
        let mut claimed = None;
        for subnet in 1..=250u8 {
            let bridge = format!("cairnpt{subnet}");
            let ok = Command::new("ip")
                .args(["link", "add", &bridge, "type", "bridge"])
                .output()
                .unwrap()
                .status
                .success();
            if ok {
                claimed = Some((bridge, subnet));
                break;
            }
        }
        let (bridge, subnet) = claimed.expect("no free cairnpt bridge (is the test root?)");
        let mut net = Net {
            bridge,
            subnet,
            namespaces: Vec::new(),
            veths: Vec::new(),
        };
        let br = net.bridge.clone();
        let alias = format!("cairn-partition-test pid={}", std::process::id());
        sh(&["ip", "link", "set", &br, "alias", &alias]);
        sh(&[
            "ip",
            "addr",
            "add",
            &format!("10.231.{subnet}.254/24"),
            "dev",
            &br,
        ]);
        sh(&["ip", "link", "set", &br, "up"]);
        for i in 0..n {
            let ns = format!("{br}-m{i}");
            let veth = format!("{br}v{i}");
            sh(&["ip", "netns", "add", &ns]);
            net.namespaces.push(ns.clone());
            sh(&[
                "ip", "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ]);
            net.veths.push(veth.clone());
            sh(&["ip", "link", "set", &veth, "master", &br, "up"]);
            let addr = format!("{}/24", net.addr(i));
            sh(&["ip", "-n", &ns, "addr", "add", &addr, "dev", "eth0"]);
            sh(&["ip", "-n", &ns, "link", "set", "eth0", "up"]);
            sh(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
        }
        net
    }

    /// Cuts member `i` off from every other member, both directions; clients (the bridge's
    /// address) still reach it.
    fn isolate(&self, i: usize) {
        let ns = &self.namespaces[i];
        for j in 0..self.namespaces.len() {
            if j == i {
                continue;
            }
            let peer = self.addr(j);
            sh(&[
                "ip", "netns", "exec", ns, "iptables", "-A", "INPUT", "-s", &peer, "-j", "DROP",
            ]);
            sh(&[
                "ip", "netns", "exec", ns, "iptables", "-A", "OUTPUT", "-d", &peer, "-j", "DROP",
            ]);
        }
    }

    /// Removes member `i`'s DROP rules.
    fn heal(&self, i: usize) {
        let ns = &self.namespaces[i];
        sh(&["ip", "netns", "exec", ns, "iptables", "-F", "INPUT"]);
        sh(&["ip", "netns", "exec", ns, "iptables", "-F", "OUTPUT"]);
    }

    fn remove(&self) {
        for ns in &self.namespaces {
            sh_quiet(&["ip", "netns", "del", ns]);
        }
        for veth in &self.veths {
            sh_quiet(&["ip", "link", "del", veth]);
        }
        sh_quiet(&["ip", "link", "del", &self.bridge]);
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Records one probe operation.
fn probe_op(key: &str, input: Input, outcome: Outcome, invoke: u64, ret: u64) -> Operation {
    Operation {
        client: PROBE,
        key: key.to_string(),
        input,
        outcome,
        invoke,
        ret,
        revision: None,
    }
}

/// While `isolated` is cut off: a put through it is not acknowledged, the majority
/// acknowledges a put, and a linearizable get through the isolated member does not return
/// the value that put replaced. Returns the probes as operations and notes.
async fn probe_partition(
    urls: &[String],
    isolated: usize,
    majority: usize,
    clock: Clock,
    notes: &mut Vec<String>,
) -> Vec<Operation> {
    let key = "pt/probe";
    let mut ops = Vec::new();
    let mut iso = KvClient::new(channel(&urls[isolated]));
    let mut maj = KvClient::new(channel(&urls[majority]));

    // A write through the isolated member: no acknowledgement.
    let invoke = clock.now();
    let r = tokio::time::timeout(OP_TIMEOUT, iso.put(put(key, "isolated"))).await;
    let ret = clock.now();
    let acked = matches!(r, Ok(Ok(_)));
    notes.push(format!(
        "{:7.3}s put through the isolated member: {}",
        clock.secs(),
        match &r {
            Ok(Ok(_)) => "ACKNOWLEDGED".to_string(),
            Ok(Err(s)) => format!("error {:?}: {}", s.code(), s.message()),
            Err(_) => "timed out".to_string(),
        }
    ));
    assert!(
        !acked,
        "a write through the isolated minority was acknowledged"
    );
    ops.push(probe_op(
        key,
        Input::Put {
            value: "isolated".into(),
        },
        Outcome::Unknown,
        invoke,
        ret,
    ));

    // The majority acknowledges writes: first one value, then another replacing it.
    for value in ["majority-1", "majority-2"] {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let invoke = clock.now();
            let r = tokio::time::timeout(OP_TIMEOUT, maj.put(put(key, value))).await;
            let ret = clock.now();
            let ok = matches!(r, Ok(Ok(_)));
            ops.push(probe_op(
                key,
                Input::Put {
                    value: value.into(),
                },
                if ok {
                    Outcome::Written
                } else {
                    Outcome::Unknown
                },
                invoke,
                ret,
            ));
            if ok {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the majority acknowledged no write in 10s: {r:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    notes.push(format!(
        "{:7.3}s the majority acknowledged two writes",
        clock.secs()
    ));

    // A linearizable read through the isolated member must not return a replaced value.
    let invoke = clock.now();
    let r = tokio::time::timeout(OP_TIMEOUT, iso.range(range(key))).await;
    let ret = clock.now();
    match r {
        Ok(Ok(resp)) => {
            let (value, _) = first_kv(&resp.into_inner().kvs);
            notes.push(format!(
                "{:7.3}s linearizable get through the isolated member returned {value:?}",
                clock.secs()
            ));
            assert_eq!(
                value.as_deref(),
                Some("majority-2"),
                "a stale linearizable read through the isolated member"
            );
            ops.push(probe_op(key, Input::Get, Outcome::Read(value), invoke, ret));
        }
        other => {
            notes.push(format!(
                "{:7.3}s linearizable get through the isolated member: {}",
                clock.secs(),
                match other {
                    Ok(Err(s)) => format!("error {:?}: {}", s.code(), s.message()),
                    _ => "timed out".to_string(),
                }
            ));
            ops.push(probe_op(key, Input::Get, Outcome::Failed, invoke, ret));
        }
    }
    ops
}

/// Waits until member `url` answers a linearizable get (bounded).
async fn wait_serving(url: &str) {
    if !serves(url, KEYS[0], Duration::from_secs(15)).await {
        panic!("{url} never served a linearizable read after healing");
    }
}

/// Guards against a vacuous check: the same history with the isolated member's final read of
/// the probe key turned into the value the majority replaced during the partition must fail.
fn assert_checker_sees_a_stale_read(history: &[Operation], isolated: usize) {
    let mut mutated = history.to_vec();
    let last = mutated
        .iter()
        .position(|op| op.client == FINAL_READER + isolated && op.key == "pt/probe")
        .unwrap();
    mutated[last].outcome = Outcome::Read(Some("majority-1".into()));
    mutated[last].revision = None;
    let verdicts = check(&mutated);
    assert!(
        verdicts
            .iter()
            .any(|v| matches!(v, Verdict::Violation(r) if r.key == "pt/probe")),
        "the checker missed a stale read: {verdicts:?}"
    );
}

#[test]
fn isolated_leader_acknowledges_nothing_and_serves_no_stale_reads() {
    let started = Instant::now();
    let seed = seed("CAIRN_PARTITION_SEED");
    // Declared before the members, so dropped after they are killed.
    let net = Net::create(MEMBERS);
    let mut members: Vec<ServerProc> = (0..MEMBERS)
        .map(|i| {
            let mut m = ServerProc::new(Kind::Cairn, &format!("m{i}"), 2380, &[]);
            m.host = net.addr(i);
            m.client_port = 2379;
            m.netns = Some(net.namespaces[i].clone());
            m
        })
        .collect();
    start_together(&mut members);
    let urls: Vec<String> = members.iter().map(|m| m.url()).collect();

    let rt = runtime();
    let clock = Clock(Instant::now());
    let all: Vec<usize> = (0..MEMBERS).collect();
    let mut notes = Vec::new();
    // The subnet exists and every member answers before the workload starts.
    let old = rt.block_on(leader_among(&urls, &all, None));
    let clients = WORKLOAD.start(&rt, &urls, clock, seed);
    // The history has a stretch without faults: the workload runs for a while first.
    std::thread::sleep(Duration::from_millis(1500));

    let old = {
        let now = rt.block_on(leader_among(&urls, &all, None));
        if now != old {
            notes.push(format!("{:7.3}s leader moved to m{now}", clock.secs()));
        }
        now
    };
    notes.push(format!("{:7.3}s isolate leader m{old}", clock.secs()));
    let isolated_at = Instant::now();
    net.isolate(old);
    let isolated_ns = clock.now();
    let majority: Vec<usize> = all.iter().copied().filter(|&i| i != old).collect();
    let new = rt.block_on(leader_among(&urls, &majority, Some(old)));
    notes.push(format!("{:7.3}s the majority elected m{new}", clock.secs()));
    let mut probes = rt.block_on(probe_partition(&urls, old, new, clock, &mut notes));
    // The partition lasts its time, whatever the probes took of it.
    std::thread::sleep(PARTITION.saturating_sub(isolated_at.elapsed()));
    let healed_ns = clock.now();
    net.heal(old);
    notes.push(format!("{:7.3}s healed m{old}", clock.secs()));
    rt.block_on(wait_serving(&urls[old]));
    notes.push(format!("{:7.3}s m{old} serves again", clock.secs()));
    // And a stretch after healing, with the old leader back among the members.
    std::thread::sleep(Duration::from_millis(1500));
    let mut history: Vec<Operation> = clients.stop(&rt);
    history.append(&mut probes);
    let workload = clock.secs();
    let final_keys: Vec<&str> = KEYS.iter().copied().chain(["pt/probe"]).collect();
    history.extend(rt.block_on(final_reads(
        &urls,
        &final_keys,
        clock,
        Duration::from_secs(15),
    )));
    let revision = rt.block_on(assert_same_hashkv(&urls, Duration::from_secs(15)));
    let acked = rt.block_on(assert_acknowledged_everywhere(&urls, &history));

    let revision_errors = check_revisions(&history);
    let verdicts = check(&history);
    let notes_text = notes.join("\n");
    eprintln!(
        "seed {seed}: {} in {workload:.1}s; {acked} acknowledged writes on all {MEMBERS} \
         members; HashKV agrees at revision {revision}; {:.1}s in all\n{notes_text}",
        summary(&history),
        started.elapsed().as_secs_f64(),
    );
    let mut failures = String::new();
    // The clients pinned to the isolated member got no acknowledgement of a write they
    // issued while it was cut off; the majority's clients kept writing.
    let during = |op: &&Operation| op.invoke > isolated_ns && op.ret < healed_ns;
    let acked_write = |op: &&Operation| matches!(op.outcome, Outcome::Written | Outcome::Swapped);
    let on_isolated: Vec<&Operation> = history
        .iter()
        .filter(|op| op.client < CLIENTS && op.client % MEMBERS == old)
        .filter(during)
        .collect();
    for op in on_isolated.iter().filter(|op| acked_write(op)) {
        failures.push_str(&format!(
            "acknowledged through the isolated member: {op:?}\n"
        ));
    }
    let majority_writes = history
        .iter()
        .filter(|op| op.client < CLIENTS && op.client % MEMBERS != old)
        .filter(during)
        .filter(acked_write)
        .count();
    eprintln!(
        "during the partition: {} ops through the isolated member ({} reads answered), \
         {majority_writes} writes acknowledged through the majority",
        on_isolated.len(),
        on_isolated
            .iter()
            .filter(|op| matches!(op.outcome, Outcome::Read(_)))
            .count()
    );
    if majority_writes == 0 {
        failures.push_str("the majority acknowledged no client write during the partition\n");
    }
    failures.push_str(&check_failures(&revision_errors, &verdicts));
    assert!(
        failures.is_empty(),
        "seed {seed}:\n{failures}notes:\n{notes_text}"
    );
    assert_checker_sees_a_stale_read(&history, old);
    drop(members);
    drop(net);
}
