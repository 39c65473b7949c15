//! cairnctl's `lease`, `lock`, `elect` and `watch` against etcdctl 3.5.1, byte for byte.
//!
//! Two real etcd 3.5.1 servers, A and B, are started alike. Each scenario runs with
//! etcdctl against A, then with cairnctl against B, doing the same writes in the same
//! order, so both servers reach the same revisions. Long-running commands are spawned,
//! waited on until the output a step expects appears (bounded), fed writes, then sent
//! SIGINT or SIGTERM; what they printed and how they ended is compared.
//!
//! Server-chosen values are rewritten from B's to A's: ports, cluster and member IDs, and
//! lease IDs (matched by order of first appearance, in hex, decimal and varint form, also
//! inside lock and election keys and their base64 in JSON).
//!
//! Sessions etcdctl leaves behind are revoked after the lock and election scenarios, so
//! that no lease expires in the middle of a later one.
//!
//! A missing etcd/etcdctl 3.5.1 fails the test (run `scripts/setup`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_proto::etcdserverpb::{
    kv_client::KvClient, lease_client::LeaseClient, LeaseLeasesRequest, LeaseRevokeRequest,
    RangeRequest,
};
use cairn_tests::mask::mask;
use cairn_tests::{block_on, channel, wait_keys, wait_until, Ids, Kind, ServerProc};
use common::{ctl_command, exit_code, rewrite_server, Report, Run};

/// How long a step waits for the output it expects, or for a process to end.
const BOUND: Duration = Duration::from_secs(15);

/// A spawned command whose output is collected as it comes; killed if dropped running.
struct Bg {
    /// The command, for failure messages.
    label: String,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

fn collect(
    mut r: impl Read + Send + 'static,
    into: Arc<Mutex<Vec<u8>>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = r.read(&mut buf) {
            if n == 0 {
                break;
            }
            into.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    })
}

/// What a command printed so far, for failure messages.
fn printed(stdout: &Mutex<Vec<u8>>, stderr: &Mutex<Vec<u8>>) -> String {
    format!(
        "stdout {:?}, stderr {:?}",
        String::from_utf8_lossy(&stdout.lock().unwrap()),
        String::from_utf8_lossy(&stderr.lock().unwrap())
    )
}

fn contains(hay: &[u8], needle: &[u8]) -> usize {
    if needle.is_empty() || hay.len() < needle.len() {
        return 0;
    }
    hay.windows(needle.len()).filter(|w| *w == needle).count()
}

impl Bg {
    /// What the command printed so far, for failure messages.
    fn printed(&self) -> String {
        printed(&self.stdout, &self.stderr)
    }

    /// Waits (up to [`BOUND`]) until stdout satisfies `done`; fails the test if it does not.
    fn wait_stdout(&self, what: &str, done: impl Fn(&[u8]) -> bool) {
        let what = format!("{what} from {}", self.label);
        wait_until(BOUND, what, || {
            if done(&self.stdout.lock().unwrap()) {
                Ok(())
            } else {
                Err(self.printed())
            }
        });
    }

    /// Waits (up to [`BOUND`]) until stdout holds `needle` at least `times` times.
    fn wait_for(&self, needle: &[u8], times: usize) {
        let what = format!("{times} × {:?}", String::from_utf8_lossy(needle));
        self.wait_stdout(&what, |out| contains(out, needle) >= times);
    }

    /// Waits (up to [`BOUND`]) until stdout or stderr has something, and a moment more for
    /// the rest of that first answer.
    fn wait_any(&self) {
        wait_until(BOUND, format!("output from {}", self.label), || {
            let quiet =
                self.stdout.lock().unwrap().is_empty() && self.stderr.lock().unwrap().is_empty();
            if quiet {
                Err(self.printed())
            } else {
                Ok(())
            }
        });
        std::thread::sleep(Duration::from_millis(100));
    }

    fn write(&mut self, line: &str) {
        let input = self.stdin.as_mut().unwrap();
        input.write_all(line.as_bytes()).unwrap();
        input.flush().unwrap();
    }

    fn signal(&self, sig: &str) {
        Command::new("kill")
            .args(["-s", sig, &self.child.id().to_string()])
            .status()
            .unwrap();
    }

    /// Closes stdin and waits (up to [`BOUND`]) for the process to end; fails the test (and
    /// kills the process) if it does not.
    fn finish(mut self) -> Run {
        drop(self.stdin.take());
        let what = format!("{} to end", self.label);
        let status = wait_until(BOUND, what, || match self.child.try_wait().unwrap() {
            Some(status) => Ok(status),
            None => Err(printed(&self.stdout, &self.stderr)),
        });
        let code = exit_code(status);
        for r in self.readers.drain(..) {
            r.join().unwrap();
        }
        let stdout = self.stdout.lock().unwrap().clone();
        let stderr = self.stderr.lock().unwrap().clone();
        Run {
            stdout,
            stderr,
            code,
        }
    }

    /// Sends `sig` and waits for the end.
    fn stop(self, sig: &str) -> Run {
        self.signal(sig);
        self.finish()
    }
}

impl Drop for Bg {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `run` without the Go client's warning for a unary call the signal cancelled. Whether
/// etcdctl has one in flight when the signal lands is a race: an election observer, for
/// one, reads the next leader (a unary Get) just after the leader resigns, and logs
/// "retrying of unary invoker failed ... context canceled" only if the signal arrives
/// during that read. The line says nothing about what the tool did.
fn without_canceled_call(mut run: Run) -> Run {
    let text = String::from_utf8_lossy(&run.stderr).into_owned();
    let kept: String = text
        .split_inclusive('\n')
        .filter(|l| {
            !(l.contains("retrying of unary invoker failed")
                && l.contains("code = Canceled desc = context canceled"))
        })
        .collect();
    run.stderr = kept.into_bytes();
    run
}

/// One side: a tool and the etcd it talks to; records every run of a scenario.
struct Side {
    bin: PathBuf,
    etcd: ServerProc,
    ids: Ids,
    cwd: tempfile::TempDir,
    runs: Vec<(String, Run)>,
}

impl Side {
    fn new(bin: PathBuf, (etcd, ids): (ServerProc, Ids)) -> Side {
        Side {
            bin,
            etcd,
            ids,
            cwd: tempfile::tempdir().unwrap(),
            runs: Vec::new(),
        }
    }

    fn command(&self, env: &[(&str, &str)], args: &[&str]) -> Command {
        let mut cmd = ctl_command(&self.bin, Some(&self.etcd.endpoint()));
        cmd.envs(env.iter().copied())
            .args(args)
            .current_dir(self.cwd.path());
        cmd
    }

    fn spawn_env(&self, env: &[(&str, &str)], args: &[&str]) -> Bg {
        let mut child = self.command(env, args).spawn().unwrap();
        let label = format!("{} {env:?} {args:?}", self.bin.display());
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let readers = vec![
            collect(child.stdout.take().unwrap(), stdout.clone()),
            collect(child.stderr.take().unwrap(), stderr.clone()),
        ];
        Bg {
            label,
            stdin: child.stdin.take(),
            child,
            stdout,
            stderr,
            readers,
        }
    }

    fn spawn(&self, args: &[&str]) -> Bg {
        self.spawn_env(&[], args)
    }

    /// Spawns a command that watches (a watch, an election observer), once no watcher is
    /// left from earlier commands, and waits until the server counts its watcher: from then
    /// on it sees every write.
    fn spawn_watching(&self, args: &[&str]) -> Bg {
        self.etcd.wait_watchers(0);
        let bg = self.spawn(args);
        self.etcd.wait_watchers(1);
        bg
    }

    /// Spawns a lock or election waiter behind the one holder under `prefix`, and waits
    /// until it waits: its key is the second there and it watches the holder's.
    fn spawn_waiter(&self, args: &[&str], prefix: &str) -> Bg {
        self.etcd.wait_watchers(0);
        let bg = self.spawn(args);
        self.wait_keys(prefix, 2);
        self.etcd.wait_watchers(1);
        bg
    }

    /// Waits until `n` keys are under `prefix` (not recorded).
    fn wait_keys(&self, prefix: &str, n: usize) {
        wait_keys(&self.etcd.endpoint(), prefix, n);
    }

    fn record(&mut self, label: String, run: Run) {
        self.runs.push((label, run));
    }

    /// Runs a command to its end (bounded) and records it.
    fn case_env(&mut self, env: &[(&str, &str)], args: &[&str]) -> Run {
        let run = self.spawn_env(env, args).finish();
        self.record(format!("{env:?} {args:?}"), run.clone());
        run
    }

    fn case(&mut self, args: &[&str]) -> Run {
        self.case_env(&[], args)
    }

    /// Records the end of a spawned command.
    fn ended(&mut self, label: &str, bg: Bg, sig: Option<&str>) {
        let run = match sig {
            Some(s) => without_canceled_call(bg.stop(s)),
            None => bg.finish(),
        };
        self.record(label.to_string(), run);
    }

    /// `lease grant <ttl>`, recorded; returns the lease ID in hex.
    fn grant(&mut self, ttl: &str) -> String {
        let run = self.case(&["lease", "grant", ttl]);
        String::from_utf8_lossy(&run.stdout)
            .split_whitespace()
            .nth(1)
            .unwrap_or("0")
            .to_string()
    }

    /// The store's current revision (not recorded).
    fn revision(&self) -> i64 {
        block_on(async {
            let r = KvClient::new(channel(&self.etcd.url()))
                .range(RangeRequest {
                    key: b"x".to_vec(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            r.header.unwrap().revision
        })
    }

    /// Revokes every lease (not recorded), so that sessions etcdctl leaves behind do not
    /// expire, deleting keys, in the middle of a later scenario.
    fn revoke_all(&self) {
        block_on(async {
            let mut lease = LeaseClient::new(channel(&self.etcd.url()));
            let leases = lease
                .lease_leases(LeaseLeasesRequest {})
                .await
                .unwrap()
                .into_inner()
                .leases;
            for l in leases {
                let _ = lease.lease_revoke(LeaseRevokeRequest { id: l.id }).await;
            }
        });
    }

    /// The top 16 bits of the lease IDs this server hands out (its member ID's low bits).
    fn lease_prefix(&self) -> u64 {
        lease_prefix(self.ids)
    }
}

/// The top 16 bits of the lease IDs a server with `ids` hands out (its member ID's low bits).
fn lease_prefix(ids: Ids) -> u64 {
    (ids.member & 0xffff) & 0x7fff
}

const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn b64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes() {
        if c == b'=' {
            break;
        }
        acc = (acc << 6) | B64.iter().position(|&x| x == c)? as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

/// Replaces the base64 of JSON `"key"` values by `b64(<text>)`, so lease IDs inside lock
/// and election keys can be rewritten.
fn decode_json_keys(b: &[u8]) -> Vec<u8> {
    let Ok(s) = std::str::from_utf8(b) else {
        return b.to_vec();
    };
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("\"key\":\"") {
        let start = i + 7;
        out.push_str(&rest[..start]);
        let end = rest[start..].find('"').map_or(rest.len(), |e| start + e);
        match b64_decode(&rest[start..end]) {
            Some(d) => out.push_str(&format!("b64({})", String::from_utf8_lossy(&d))),
            None => out.push_str(&rest[start..end]),
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out.into_bytes()
}

/// The lease IDs in `b`, in order of first appearance: 16-digit hex words and decimal
/// numbers with the server's lease prefix in their top 16 bits.
fn lease_ids(b: &[u8], prefix: u64) -> Vec<u64> {
    let mut ids = Vec::new();
    let s = String::from_utf8_lossy(b);
    let mut push = |v: u64| {
        if v >> 48 == prefix && !ids.contains(&v) {
            ids.push(v);
        }
    };
    let mut word = String::new();
    for ch in s.chars().chain(std::iter::once(' ')) {
        if ch.is_ascii_alphanumeric() {
            word.push(ch);
            continue;
        }
        if word.len() == 16 {
            if let Ok(v) = u64::from_str_radix(&word, 16) {
                push(v);
            }
        }
        if word.bytes().all(|c| c.is_ascii_digit()) {
            if let Ok(v) = word.parse::<u64>() {
                push(v);
            }
        }
        word.clear();
    }
    ids
}

/// In interactive watch output, the lines from the first progress notification on, sorted.
/// Every watcher of the stream answers a progress request, and etcdctl prints each
/// watcher's answer (a `progress notify` line, then the response) from a goroutine of its
/// own, so the answers of two watchers may interleave in any order.
fn progress_tail_sorted(label: &str, out: String) -> String {
    if !label.starts_with("watch -i") {
        return out;
    }
    let Some(at) = out.find("progress notify") else {
        return out;
    };
    let mut tail: Vec<&str> = out[at..].lines().collect();
    tail.sort_unstable();
    format!("{}{}\n", &out[..at], tail.join("\n"))
}

struct Compat {
    a: Side,
    b: Side,
    report: Report,
}

impl Compat {
    /// B's output as if printed against A, B's lease IDs (`leases`) too.
    fn normalize(&self, out: &[u8], leases: &[(u64, u64)]) -> Vec<u8> {
        let (a, b) = (&self.a, &self.b);
        rewrite_server(out, (&b.etcd, b.ids), (&a.etcd, a.ids), leases)
    }

    /// Runs `scenario` with etcdctl on A, then with cairnctl on B, and compares the runs.
    fn scenario(&mut self, name: &str, scenario: impl Fn(&mut Side)) {
        self.a.runs.clear();
        self.b.runs.clear();
        scenario(&mut self.a);
        scenario(&mut self.b);
        let all = |s: &Side| -> Vec<u8> {
            s.runs
                .iter()
                .flat_map(|(_, r)| {
                    let mut v = decode_json_keys(&r.stdout);
                    v.extend_from_slice(&r.stderr);
                    v
                })
                .collect()
        };
        let la = lease_ids(&all(&self.a), self.a.lease_prefix());
        let lb = lease_ids(&all(&self.b), self.b.lease_prefix());
        let leases: Vec<(u64, u64)> = lb.iter().copied().zip(la.iter().copied()).collect();
        if la.len() != lb.len() {
            self.report.problem(format!(
                "{name}: {} lease IDs seen with etcdctl, {} with cairnctl",
                la.len(),
                lb.len()
            ));
        }
        let (ra, rb) = (
            std::mem::take(&mut self.a.runs),
            std::mem::take(&mut self.b.runs),
        );
        if ra.len() != rb.len() {
            self.report
                .problem(format!("{name}: runs differ in number"));
        }
        for ((label, want), (_, got)) in ra.iter().zip(rb.iter()) {
            let (wo, go) = (
                progress_tail_sorted(label, mask(&decode_json_keys(&want.stdout))),
                progress_tail_sorted(
                    label,
                    mask(&self.normalize(&decode_json_keys(&got.stdout), &leases)),
                ),
            );
            let (we, ge) = (
                mask(&want.stderr),
                mask(&self.normalize(&got.stderr, &leases)),
            );
            let problems = common::differences((&wo, &we, want.code), (&go, &ge, got.code));
            self.report.case(&format!("{name}: {label}"), problems);
        }
    }
}

const FORMATS: [&str; 5] = ["simple", "json", "fields", "protobuf", "table"];

/// What stdout holds once a watch has printed a DELETE event, per format.
fn delete_marker(format: &str) -> &'static [u8] {
    match format {
        "json" => b"\"type\":1",
        "fields" => b"\"Type\" : DELETE",
        "protobuf" => b"\x08\x01\x12",
        _ => b"DELETE\n",
    }
}

/// What stdout holds once `value` is printed as a key's value, per format.
fn value_marker(format: &str, value: &str) -> Vec<u8> {
    match format {
        "json" => {
            // The base64 of a value of at most 2 bytes.
            let b = value.as_bytes();
            let n = (u32::from(b[0]) << 16) | (u32::from(*b.get(1).unwrap_or(&0)) << 8);
            let c = |s: u32| B64[((n >> s) & 63) as usize];
            let mut v = vec![c(18), c(12), c(6), b'='];
            if b.len() == 1 {
                v[2] = b'=';
            }
            v
        }
        "fields" => format!("\"{value}\"").into_bytes(),
        _ => value.as_bytes().to_vec(),
    }
}

fn lease_scenario(s: &mut Side) {
    for args in [
        &["lease", "grant", "--help"][..],
        &["lease", "revoke", "--help"],
        &["lease", "timetolive", "--help"],
        &["lease", "list", "--help"],
        &["lease", "keep-alive", "--help"],
        &["lock", "--help"],
        &["elect", "--help"],
        &["watch", "--help"],
        &["lease", "grant"],
        &["lease", "grant", "x"],
        &["lease", "grant", "1", "2"],
        &["lease", "revoke"],
        &["lease", "revoke", "zz"],
        &["lease", "revoke", "0x12"],
        &["lease", "revoke", "8000000000000000"],
        &["lease", "timetolive"],
        &["lease", "timetolive", "zz"],
        &["lease", "keep-alive"],
        &["lease", "keep-alive", "zz"],
        &["lease", "keep-alive", "--once", "1234"],
        &["lease", "revoke", "1234"],
        &["lease", "grant", "99999999999999"],
        // Which check comes first: the output format or the arguments.
        &["-w", "xx", "lease", "timetolive", "zz"],
        &["-w", "xx", "lease", "revoke", "zz"],
        &["-w", "xx", "lease", "keep-alive", "zz"],
        &["-w", "xx", "lease", "grant", "x"],
        &["-w", "xx", "lease", "list"],
        &["-w", "xx", "watch"],
        &["-w", "xx", "watch", "-i"],
        &["-w", "xx", "lock"],
        &["-w", "xx", "elect", "a"],
        &["-w", "xx", "elect"],
    ] {
        s.case(args);
    }
    for w in FORMATS {
        s.case(&["lease", "timetolive", "1234", "-w", w]);
        let id = s.grant("300");
        // One key only: the server lists a lease's keys in no particular order.
        if w == "json" || w == "protobuf" {
            s.case(&["put", "--lease", &id, &format!("lk-{w}"), "v"]);
        } else {
            s.case(&["put", &format!("--lease={id}"), &format!("lk-{w}"), "v"]);
        }
        s.case(&["lease", "timetolive", &id, "-w", w]);
        s.case(&["lease", "timetolive", "--keys", &id, "-w", w]);
        s.case(&["lease", "keep-alive", "--once", &id, "-w", w]);
        s.case(&["lease", "list", "-w", w]);
        s.case(&["lease", "revoke", &id, "-w", w]);
        s.case(&["get", "lk", "--prefix", "-w", w]);
        s.case(&["lease", "revoke", &id]);
        s.case(&["lease", "grant", "100", "-w", w]);
        let ids = String::from_utf8_lossy(&s.case(&["lease", "list"]).stdout).into_owned();
        for id in ids.lines().skip(1) {
            s.case(&["lease", "revoke", id]);
        }
    }
    s.case(&["lease", "list"]);
    // keep-alive until the lease is revoked, in each format that prints the responses.
    for w in ["simple", "json", "fields", "protobuf", "table"] {
        let id = s.grant("6");
        let bg = s.spawn(&["lease", "keep-alive", &id, "-w", w]);
        bg.wait_any();
        s.case(&["lease", "revoke", &id]);
        s.ended(&format!("keep-alive -w {w} until revoked"), bg, None);
    }
    let id = s.grant("60");
    let bg = s.spawn(&["lease", "keep-alive", &id]);
    bg.wait_for(b"keepalived", 1);
    s.ended("keep-alive until SIGINT", bg, Some("INT"));
    s.case(&["lease", "revoke", &id]);
}

fn lock_scenario(s: &mut Side) {
    s.case(&["lock"]);
    s.case(&["lock", "--ttl", "x", "a"]);
    for w in FORMATS {
        let name = format!("lock-{w}");
        let bg = s.spawn(&["lock", &name, "-w", w]);
        bg.wait_any();
        s.case(&["get", &name, "--prefix", "--keys-only"]);
        s.ended(&format!("lock -w {w}, SIGINT"), bg, Some("INT"));
        if w != "table" {
            s.case(&["get", &name, "--prefix", "--keys-only"]);
        }
    }
    let bg = s.spawn(&["lock", "lock-term"]);
    bg.wait_any();
    s.ended("lock, SIGTERM", bg, Some("TERM"));
    s.case(&[
        "lock",
        "lock-exec",
        "--",
        "sh",
        "-c",
        "echo $ETCD_LOCK_KEY $ETCD_LOCK_REV; exit 3",
    ]);
    s.case(&[
        "lock",
        "--ttl",
        "0",
        "lock-exec",
        "--",
        "sh",
        "-c",
        "echo ok",
    ]);
    s.case(&["lock", "lock-exec", "/nonexistent/cmd"]);
    s.case(&["lock", "lock-exec", "no-such-command-anywhere"]);
    s.case(&["lock", "lock-exec", "--", "sh", "-c", "kill -9 $$"]);
    s.case(&["get", "lock-exec", "--prefix", "--keys-only"]);
    // A second lock waits until the first is released; a third gives up on SIGINT.
    let first = s.spawn(&["lock", "lock-wait"]);
    first.wait_any();
    let second = s.spawn(&["lock", "lock-wait"]);
    // The second queues (its key is there) before the third.
    s.wait_keys("lock-wait/", 2);
    let third = s.spawn(&[
        "lock",
        "lock-wait",
        "--",
        "sh",
        "-c",
        "echo third $ETCD_LOCK_REV",
    ]);
    s.wait_keys("lock-wait/", 3);
    s.case(&[
        "get",
        "lock-wait",
        "--prefix",
        "--keys-only",
        "-w",
        "fields",
    ]);
    s.ended("first lock holder, SIGINT", first, Some("INT"));
    second.wait_any();
    s.ended("second lock holder, SIGINT", second, Some("INT"));
    s.ended("third lock runs its command", third, None);
    let holder = s.spawn(&["lock", "lock-cancel"]);
    holder.wait_any();
    let waiter = s.spawn_waiter(&["lock", "lock-cancel"], "lock-cancel/");
    s.ended("lock waiter, SIGINT", waiter, Some("INT"));
    s.ended("lock holder, SIGINT", holder, Some("INT"));
    s.revoke_all();
}

fn elect_scenario(s: &mut Side) {
    s.case(&["elect"]);
    s.case(&["elect", "a"]);
    s.case(&["elect", "-l", "a", "b"]);
    s.case(&["elect", "a", "b", "c"]);
    for w in ["simple", "json", "fields", "protobuf"] {
        let name = format!("elect-{w}");
        let observer = s.spawn_watching(&["elect", "-l", &name, "-w", w]);
        let first = s.spawn(&["elect", &name, "p1", "-w", w]);
        first.wait_any();
        observer.wait_for(&value_marker(w, "p1"), 1);
        let second = s.spawn(&["elect", &name, "p2", "-w", w]);
        // The second campaigns (its key is there) before the first resigns.
        s.wait_keys(&format!("{name}/"), 2);
        s.ended(
            &format!("elect -w {w}: first leader, SIGINT"),
            first,
            Some("INT"),
        );
        second.wait_any();
        observer.wait_for(&value_marker(w, "p2"), 1);
        s.ended(
            &format!("elect -w {w}: second leader, SIGTERM"),
            second,
            Some("TERM"),
        );
        s.ended(&format!("elect -l -w {w}, SIGINT"), observer, Some("INT"));
    }
    let leader = s.spawn(&["elect", "elect-t", "x", "-w", "table"]);
    s.ended("elect -w table", leader, None);
    let holder = s.spawn(&["elect", "elect-c", "one"]);
    holder.wait_any();
    let waiter = s.spawn_waiter(&["elect", "elect-c", "two"], "elect-c/");
    s.ended("elect waiter, SIGINT", waiter, Some("INT"));
    s.case(&["get", "elect-c", "--prefix", "--keys-only"]);
    s.ended("elect holder, SIGINT", holder, Some("INT"));
    s.case(&["get", "elect-c", "--prefix", "--keys-only"]);
    s.revoke_all();
}

fn watch_scenario(s: &mut Side) {
    s.case(&["watch"]);
    s.case(&["watch", "a", "--"]);
    s.case(&["watch", "--prefix", "a", "b"]);
    s.case(&["watch", "--rev", "x", "a"]);
    s.case_env(&[("ETCDCTL_WATCH_RANGE_END", "z")], &["watch"]);
    s.case_env(&[("ETCDCTL_WATCH_KEY", "k")], &["watch", "a"]);
    s.case_env(&[("ETCDCTL_WATCH_KEY", "k")], &["watch", "a", "--", "echo"]);
    // Writes before the watch come as one response from history; then one live event.
    for w in ["simple", "json", "fields", "protobuf"] {
        let key = format!("wk-{w}");
        s.case(&["put", &key, "v0"]);
        let rev = (s.revision() + 1).to_string();
        s.case(&["put", &key, "v1"]);
        s.case(&["del", &key]);
        let bg = s.spawn(&["watch", "--prev-kv", "--rev", &rev, &key, "-w", w]);
        bg.wait_for(delete_marker(w), 1);
        s.case(&["put", &key, "v2"]);
        bg.wait_for(&value_marker(w, "v2"), 1);
        s.ended(&format!("watch --prev-kv -w {w}, SIGINT"), bg, Some("INT"));
    }
    // A watch from now: no revision given.
    let bg = s.spawn_watching(&["watch", "now"]);
    s.case(&["put", "now", "n1"]);
    bg.wait_for(b"n1\n", 1);
    s.ended("watch from now, SIGTERM", bg, Some("TERM"));
    // Prefix and range.
    let rev = (s.revision() + 1).to_string();
    s.case(&["put", "wp1", "x"]);
    s.case(&["put", "rb", "y"]);
    s.case(&["put", "rd", "y"]);
    let bg = s.spawn(&["watch", "--prefix", "--rev", &rev, "wp"]);
    let range = s.spawn(&["watch", "--rev", &rev, "ra", "rc", "-w", "json"]);
    bg.wait_for(b"wp1", 1);
    range.wait_for(b"\"Events\"", 1);
    s.case(&["put", "wpz", "z"]);
    s.case(&["put", "rbb", "z"]);
    bg.wait_for(b"wpz", 1);
    range.wait_for(b"\"Events\"", 2);
    s.ended("watch --prefix", bg, Some("INT"));
    s.ended("watch range -w json", range, Some("INT"));
    // History.
    s.case(&["put", "hist", "h1"]);
    let from = s.revision().to_string();
    s.case(&["put", "hist", "h2"]);
    let bg = s.spawn(&["watch", "--rev", &from, "hist"]);
    bg.wait_for(b"h2\n", 1);
    s.ended("watch --rev from history", bg, Some("INT"));
    let bg = s.spawn(&["watch", "--rev", "1", "hist", "-w", "table"]);
    s.ended("watch -w table", bg, None);
    // Exec mode: a PUT and a DELETE from history (one response), then a live PUT.
    let rev = (s.revision() + 1).to_string();
    s.case(&["put", "ex", "va\"l\\1"]);
    s.case(&["del", "ex"]);
    let bg = s.spawn(&[
        "watch",
        "--rev",
        &rev,
        "ex",
        "--",
        "sh",
        "-c",
        "echo \"$ETCD_WATCH_REVISION $ETCD_WATCH_EVENT_TYPE $ETCD_WATCH_KEY $ETCD_WATCH_VALUE\"",
    ]);
    bg.wait_for(b"\"DELETE\"", 1);
    s.case(&["put", "ex", "live"]);
    bg.wait_for(b"\"live\"", 1);
    s.ended("watch exec", bg, Some("INT"));
    let bg = s.spawn(&["watch", "--rev", &rev, "ex", "--", "false"]);
    s.ended("watch exec failing", bg, None);
    let bg = s.spawn_env(
        &[("ETCDCTL_WATCH_KEY", "ex")],
        &["watch", "--rev", &rev, "--", "echo", "hi"],
    );
    bg.wait_for(b"hi\n", 3);
    s.ended("watch ETCDCTL_WATCH_KEY exec", bg, Some("INT"));
    let bg = s.spawn_env(
        &[
            ("ETCDCTL_WATCH_KEY", "ea"),
            ("ETCDCTL_WATCH_RANGE_END", "ez"),
        ],
        &["watch", "--rev", &rev],
    );
    bg.wait_for(b"DELETE", 1);
    s.ended("watch ETCDCTL_WATCH_KEY/RANGE_END", bg, Some("INT"));
    // Interactive mode.
    for w in ["simple", "json"] {
        let rev = (s.revision() + 1).to_string();
        let mut bg = s.spawn(&["watch", "-i", "-w", w]);
        bg.write(&format!("watch --rev {rev} ia\n"));
        bg.write(&format!("watch --prefix ib --prev-kv --rev {rev}\n"));
        bg.write("\n");
        bg.write("watch\n");
        bg.write("foo bar\n");
        bg.write("watch --prefix a b\n");
        s.case(&["put", "ia", "1"]);
        bg.wait_for(&value_marker(w, "1"), 1);
        s.case(&["put", "ibx", "2"]);
        bg.wait_for(&value_marker(w, "2"), 1);
        bg.write("progress\n");
        // Each of the two watchers answers with a `progress notify` line, in JSON followed
        // by the response.
        let lines = if w == "json" { 4 } else { 2 };
        bg.wait_stdout(
            &format!("{lines} lines from the first progress notify on"),
            |out| {
                let text = String::from_utf8_lossy(out);
                text.find("progress notify")
                    .is_some_and(|at| text[at..].matches('\n').count() >= lines)
            },
        );
        s.ended(&format!("watch -i -w {w}, stdin closed"), bg, None);
    }
    for line in [
        "watch --bad a\n",
        "watch a --\n",
        "watch --rev x a\n",
        "watch -h\n",
    ] {
        let mut bg = s.spawn(&["watch", "-i"]);
        bg.write(line);
        s.ended(&format!("watch -i: {line:?}"), bg, None);
    }
    // A compacted revision cancels the watch.
    let rev = s.revision().to_string();
    s.case(&["compaction", &rev]);
    let bg = s.spawn(&["watch", "--rev", "2", "hist"]);
    s.ended("watch on a compacted revision", bg, None);
    let bg = s.spawn(&["watch", "--rev", "2", "hist", "-w", "json"]);
    s.ended("watch on a compacted revision -w json", bg, None);
}

/// Starts the twin servers, runs `scenario` on both and fails on any difference.
/// A named scenario: what both tools are made to do.
type Scenario = (&'static str, fn(&mut Side));

/// Starts the twin servers with `etcd_args` added to their flags, runs the scenarios in
/// order on both and fails on any difference.
fn check(scenarios: &[Scenario], etcd_args: &[&str]) {
    // Lease IDs with a 16-bit prefix of at least 0x1000 have 16 hex digits and 9-byte
    // varints on both sides.
    let a = common::etcd_where(etcd_args, |a| lease_prefix(a) >= 0x1000);
    // IDs are rewritten from B's to A's, also inside protobuf output and keys, where only
    // IDs of the same varint and hex length keep lengths right.
    let b = common::etcd_where(etcd_args, |b| {
        common::same_id_lengths(a.1, b) && lease_prefix(b) >= 0x1000
    });
    let mut c = Compat {
        a: Side::new(common::etcdctl(), a),
        b: Side::new(common::cairnctl(), b),
        report: Report::default(),
    };
    for (name, scenario) in scenarios {
        let started = Instant::now();
        let (cases, failures) = c.report.counts();
        c.scenario(name, scenario);
        let (cases_now, failures_now) = c.report.counts();
        eprintln!(
            "{name}: {} cases compared in {:?}, {} differ",
            cases_now - cases,
            started.elapsed(),
            failures_now - failures
        );
    }
    c.report.finish();
}

fn progress_scenario(s: &mut Side) {
    s.case(&["put", "pn", "1"]);
    let rev = s.revision().to_string();
    for w in ["simple", "json"] {
        let bg = s.spawn(&["watch", "--progress-notify", "--rev", &rev, "pn", "-w", w]);
        bg.wait_for(b"progress notify", 1);
        s.ended(&format!("watch --progress-notify -w {w}"), bg, Some("INT"));
    }
}

/// All scenarios on one pair of servers (a pair per scenario would hold a dozen etcds
/// at once when tests run in parallel), which send watch progress every second for
/// `--progress-notify`. Leases come first, while no session is left over.
#[test]
fn lease_lock_elect_watch_match_etcdctl() {
    check(
        &[
            ("lease", lease_scenario),
            ("lock", lock_scenario),
            ("elect", elect_scenario),
            ("watch", watch_scenario),
            ("progress", progress_scenario),
        ],
        &["--experimental-watch-progress-notify-interval=1s"],
    );
}

/// Same-server interplay: a lock held by etcdctl keeps cairnctl waiting until released,
/// and an election led by cairnctl is seen by etcdctl's observer.
#[test]
fn cairnctl_and_etcdctl_share_locks_and_elections() {
    let server = ServerProc::start(Kind::Etcd35, &[]);
    let ids = server.ids();
    let mut e = Side::new(common::etcdctl(), (server, ids));
    let c_bin = common::cairnctl();
    let holder = e.spawn(&["lock", "shared"]);
    holder.wait_any();
    e.bin = c_bin.clone();
    // It queues, watches the holder's key, and prints nothing.
    let waiter = e.spawn_waiter(&["lock", "shared"], "shared/");
    assert!(
        waiter.stdout.lock().unwrap().is_empty(),
        "cairnctl took a held lock"
    );
    let held = holder.stop("INT");
    waiter.wait_any();
    let got = waiter.stop("INT");
    assert_eq!(held.code, 0);
    assert_eq!(got.code, 0);
    assert!(got.stdout.starts_with(b"shared/"), "{got:?}");
    assert_ne!(got.stdout, held.stdout);

    e.bin = common::etcdctl();
    let observer = e.spawn_watching(&["elect", "-l", "shared-e"]);
    e.bin = c_bin;
    let leader = e.spawn(&["elect", "shared-e", "from-cairnctl"]);
    leader.wait_any();
    observer.wait_for(b"from-cairnctl\n", 1);
    let led = leader.stop("INT");
    let seen = observer.stop("INT");
    assert_eq!(led.stdout, seen.stdout);
    assert_eq!((led.code, seen.code), (0, 0));
}
