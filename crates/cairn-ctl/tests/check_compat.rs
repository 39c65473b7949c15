//! `cairnctl check datascale` and `check perf` beside etcdctl 3.5.1's, each tool run against
//! a real etcd 3.5.1 and against cairn (one member).
//!
//! What varies from run to run is masked before the outputs are compared line by line: the
//! progress line (its every step is checked to have pb.v1's shape, ` done / total
//! percent%` with the percentage of the counts, then replaced by one `[progress of N]`
//! line), the memory used, the compaction revision and the server's endpoint. `check
//! perf` is not expected to pass (a loaded machine misses its latency limits): its verdict
//! lines must have etcdctl's form, agree with the numbers they print, and the exit code
//! must agree with the verdict. Both checks must leave no key under their prefix.
//!
//! A missing etcd/etcdctl 3.5.1 fails the test (run `scripts/setup`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Child;
use std::time::{Duration, Instant};

use cairn_tests::certs::{Pki, Use};
use cairn_tests::mask::mask;
use cairn_tests::{free_port, Kind, ServerProc};
use common::{cairnctl, ctl_command, etcdctl, Report};

/// What one tool printed, read as text, and how it exited.
struct Out {
    stdout: String,
    stderr: String,
    code: i32,
}

/// Runs `program` with `args` and `--endpoints` (several: comma-separated).
fn run(program: &std::path::Path, endpoints: &str, args: &[&str]) -> Out {
    let mut cmd = ctl_command(program, None);
    cmd.arg(format!("--endpoints={endpoints}")).args(args);
    let r = common::run(cmd, b"");
    Out {
        stdout: String::from_utf8_lossy(&r.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&r.stderr).into_owned(),
        code: r.code,
    }
}

/// Starts `program` with `args` against `endpoint`, its output piped.
fn spawn(program: &std::path::Path, endpoint: &str, args: &[&str]) -> Child {
    let mut cmd = ctl_command(program, None);
    cmd.arg(format!("--endpoints={endpoint}")).args(args);
    cmd.spawn().unwrap()
}

/// Waits for `child` to exit within `limit` (killed and failing the test if it does not).
fn finish(mut child: Child, limit: Duration, what: &str) -> Out {
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("{what} did not end within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = child.wait_with_output().unwrap();
    Out {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        code: common::exit_code(out.status),
    }
}

/// One step of the progress line: ` done / total  percent%`, then the time left or (when
/// finished) the time spent, then what was printed right after it on the same line.
struct Step<'a> {
    done: u64,
    total: u64,
    time: Option<&'a str>,
    rest: &'a str,
}

/// Reads one step of pb.v1's line, checking the percentage is the counts'.
fn step(seg: &str) -> Result<Step<'_>, String> {
    let bad = || format!("not a progress step: {seg:?}");
    let s = seg.strip_prefix(' ').ok_or_else(bad)?;
    let (done, s) = s.split_once(" / ").ok_or_else(bad)?;
    let (total, s) = s.split_once(' ').ok_or_else(bad)?;
    let done: u64 = done.parse().map_err(|_| bad())?;
    let total: u64 = total.parse().map_err(|_| bad())?;
    let percent = format!(" {:6.2}%", done as f64 * 100.0 / total as f64);
    let s = s.strip_prefix(percent.as_str()).ok_or_else(bad)?;
    let (time, rest) = match s.strip_prefix(' ') {
        Some(t) => {
            let end = t
                .find(|c: char| !(c.is_ascii_digit() || matches!(c, 'h' | 'm' | 's')))
                .unwrap_or(t.len());
            if end == 0 || !t[..end].ends_with('s') {
                return Err(bad());
            }
            (Some(&t[..end]), &t[end..])
        }
        None => (None, s),
    };
    if done > total {
        return Err(bad());
    }
    Ok(Step {
        done,
        total,
        time,
        rest,
    })
}

/// Whether `t` is a whole number of seconds as Go's `time.Duration` prints it (`2s`,
/// `1m0s`).
fn go_seconds(t: &str) -> bool {
    let Some(body) = t.strip_suffix('s') else {
        return false;
    };
    // Go writes no leading zero (`1m0s`, never `01m00s`).
    if body.len() > 1 && body.starts_with('0') {
        return false;
    }
    let body = body.split_once('h').map_or(body, |(h, r)| {
        if h.chars().all(|c| c.is_ascii_digit()) {
            r
        } else {
            "x"
        }
    });
    let body = body.split_once('m').map_or(body, |(m, r)| {
        if m.chars().all(|c| c.is_ascii_digit()) {
            r
        } else {
            "x"
        }
    });
    !body.is_empty() && body.chars().all(|c| c.is_ascii_digit())
}

/// The lines of a check's stdout with what varies masked (see the module's comment). With
/// `finished`, the progress line must end at its total with the time spent and a newline.
fn normalize(stdout: &str, endpoint: &str, finished: bool) -> Result<Vec<String>, String> {
    let mut lines = Vec::new();
    for line in stdout.lines() {
        let Some(steps) = line.strip_prefix('\r') else {
            lines.push(mask_numbers(&line.replace(endpoint, "ENDPOINT")));
            continue;
        };
        let steps: Vec<&str> = steps.split('\r').collect();
        let mut last_done = 0;
        let mut total = None;
        for (i, seg) in steps.iter().enumerate() {
            let s = step(seg)?;
            let is_last = i + 1 == steps.len();
            if s.done < last_done || total.is_some_and(|t| t != s.total) {
                return Err(format!("the progress went back or changed: {line:?}"));
            }
            (last_done, total) = (s.done, Some(s.total));
            if !is_last && !s.rest.is_empty() {
                return Err(format!("text inside the progress line: {line:?}"));
            }
            if is_last && finished {
                let spent = s.time.is_some_and(go_seconds);
                if s.done != s.total || !spent || !s.rest.is_empty() {
                    return Err(format!("the progress line did not finish: {seg:?}"));
                }
            }
            if is_last {
                lines.push(format!("[progress of {}]", s.total));
                if !s.rest.is_empty() {
                    lines.push(mask_numbers(s.rest));
                }
            }
        }
    }
    Ok(lines)
}

/// Masks the numbers of the lines that carry a measurement or a revision; a line that
/// should carry one and has no well-formed number is left as it is (and so differs).
fn mask_numbers(line: &str) -> String {
    let memory = line
        .strip_prefix("PASS: Approximate system memory used : ")
        .and_then(|r| r.strip_suffix(" MB."));
    if let Some(mb) = memory {
        let two_decimals = mb.split_once('.').is_some_and(|(_, d)| d.len() == 2);
        if two_decimals && mb.parse::<f64>().is_ok() {
            return "PASS: Approximate system memory used : X MB.".to_string();
        }
    }
    for head in ["Compacting with revision ", "Compacted with revision "] {
        if let Some(rev) = line.strip_prefix(head) {
            if rev.parse::<u64>().is_ok() {
                return format!("{head}N");
            }
        }
    }
    line.to_string()
}

/// The keys left under `prefix` on the server at `endpoint`.
fn keys_under(endpoint: &str, prefix: &str) -> String {
    let out = run(
        &etcdctl(),
        endpoint,
        &["get", prefix, "--prefix", "--keys-only"],
    );
    assert_eq!(out.code, 0, "get {prefix}: {}", out.stderr);
    out.stdout
}

/// `check datascale --load s` (default prefix), then with `--auto-compact --auto-defrag`:
/// each tool against each server prints what etcdctl prints against etcd, masked, exits 0
/// and leaves no key under the prefix.
#[test]
fn datascale_prints_as_etcdctl_does_on_etcd_and_cairn() {
    let etcd = ServerProc::start(Kind::Etcd35, &[]);
    let cairn = ServerProc::start(Kind::Cairn, &[]);
    let mut report = Report::default();
    let runs: [&[&str]; 2] = [
        &["check", "datascale", "--load", "s"],
        &[
            "check",
            "datascale",
            "--load=small",
            "--auto-compact",
            "--auto-defrag",
        ],
    ];
    for args in runs {
        let mut reference: Option<(Vec<String>, String, i32)> = None;
        for (server, name) in [(&etcd, "etcd"), (&cairn, "cairn")] {
            let ep = server.endpoint();
            for (tool, tool_name) in [(etcdctl(), "etcdctl"), (cairnctl(), "cairnctl")] {
                let label = format!("{tool_name} {} against {name}", args.join(" "));
                let out = run(&tool, &ep, args);
                let lines = match normalize(&out.stdout, &ep, true) {
                    Ok(l) => l,
                    Err(e) => {
                        report.case(&label, vec![e]);
                        continue;
                    }
                };
                let got = (lines, mask(out.stderr.as_bytes()), out.code);
                let left = keys_under(&ep, "/etcdctl-check-datascale/");
                let mut problems = Vec::new();
                if !left.is_empty() {
                    problems.push(format!("keys left under the prefix: {left:?}"));
                }
                match &reference {
                    None => {
                        // etcdctl against etcd: the reference must be a pass.
                        assert_eq!(got.2, 0, "{label}: {}\n{}", out.stdout, out.stderr);
                        reference = Some(got);
                    }
                    Some(want) => {
                        if *want != got {
                            problems.push(format!(
                                "etcdctl against etcd: {want:?}\n  {label}: {got:?}"
                            ));
                        }
                    }
                }
                report.case(&label, problems);
            }
        }
    }
    report.finish();
}

/// The refusals, byte for byte against both servers: an unknown `--load` (both
/// commands), keys already under `--prefix` (each command's own wording), and two
/// endpoints whose first is down (datascale reads `/metrics` from the first only: the
/// fetch error and `FAIL: ...`, exit 1, before any key is written).
#[test]
fn refusals_match_etcdctl() {
    let etcd = ServerProc::start(Kind::Etcd35, &[]);
    let cairn = ServerProc::start(Kind::Cairn, &[]);
    let dead = format!("127.0.0.1:{}", free_port());
    let mut report = Report::default();
    for (server, name) in [(&etcd, "etcd"), (&cairn, "cairn")] {
        let ep = server.endpoint();
        let put = run(&etcdctl(), &ep, &["put", "/busy/k", "v"]);
        assert_eq!(put.code, 0, "{}", put.stderr);
        let two = format!("{dead},{ep}");
        let cases: Vec<(&str, Vec<&str>, i32)> = vec![
            (ep.as_str(), vec!["check", "datascale", "--load", "x"], 4),
            (ep.as_str(), vec!["check", "datascale", "--load=xlarge"], 4),
            (
                ep.as_str(),
                vec!["check", "datascale", "--prefix", "/busy/"],
                3,
            ),
            (ep.as_str(), vec!["check", "datascale", "--prefix=/busy"], 3),
            (
                two.as_str(),
                vec!["check", "datascale", "--prefix", "/two/"],
                1,
            ),
            (ep.as_str(), vec!["check", "perf", "--load", "huge"], 4),
            (ep.as_str(), vec!["check", "perf", "--prefix", "/busy/"], 3),
        ];
        for (eps, args, code) in cases {
            let label = format!("{} against {name} ({eps})", args.join(" "));
            let want = run(&etcdctl(), eps, &args);
            let got = run(&cairnctl(), eps, &args);
            let mut problems = common::differences(
                (&want.stdout, &mask(want.stderr.as_bytes()), want.code),
                (&got.stdout, &mask(got.stderr.as_bytes()), got.code),
            );
            if want.code != code {
                problems.push(format!("etcdctl exited {}, not {code}", want.code));
            }
            report.case(&label, problems);
        }
        // The refused runs wrote nothing.
        for prefix in ["/two/", "/etcdctl-check-datascale/", "/etcdctl-check-perf/"] {
            let left = keys_under(&ep, prefix);
            if !left.is_empty() {
                report.problem(format!("{name}: keys under {prefix}: {left:?}"));
            }
        }
        assert_eq!(keys_under(&ep, "/busy/").trim_end(), "/busy/k");
    }
    report.finish();
}

/// `check datascale` against servers on `https://`: with `--cert`, `--key` and
/// `--insecure-skip-tls-verify` (what etcdctl 3.5.1's `/metrics` fetch needs) both tools
/// print the same against etcd and cairn; cairnctl also passes with `--cacert` alone,
/// where etcdctl refuses for want of a client certificate; a bare `host:port` is fetched
/// over plain HTTP, which etcd's and cairn's TLS ports end (`EOF`) for both tools.
#[test]
fn datascale_reads_metrics_over_https() {
    let pki = Pki::new("check-ca");
    let server = pki.issue("server", "server", 2, Use::Server);
    let client = pki.issue("client", "client", 3, Use::Client);
    let path = |p: &std::path::Path| p.to_str().unwrap().to_string();
    let tls = [
        format!("--cert-file={}", path(&server.cert)),
        format!("--key-file={}", path(&server.key)),
    ];
    let tls: Vec<&str> = tls.iter().map(String::as_str).collect();
    let (cert, key, ca) = (
        format!("--cert={}", path(&client.cert)),
        format!("--key={}", path(&client.key)),
        format!("--cacert={}", path(&pki.ca())),
    );
    let mut report = Report::default();
    for (kind, name) in [(Kind::Etcd35, "etcd"), (Kind::Cairn, "cairn")] {
        let server = ServerProc::start_https(kind, &tls);
        let url = server.url();
        let skip: &[&str] = &[
            &cert,
            &key,
            "--insecure-skip-tls-verify",
            "check",
            "datascale",
        ];
        let mut outs = Vec::new();
        for tool in [etcdctl(), cairnctl()] {
            let out = run(&tool, &url, skip);
            outs.push((
                normalize(&out.stdout, &url, true),
                mask(out.stderr.as_bytes()),
                out.code,
            ));
        }
        let label = format!("check datascale with a client certificate against {name}");
        let mut problems = Vec::new();
        if outs[0] != outs[1] {
            problems.push(format!("etcdctl: {:?}\n  cairnctl: {:?}", outs[0], outs[1]));
        }
        if outs[0].2 != 0 {
            problems.push(format!("etcdctl failed: {:?}", outs[0]));
        }
        report.case(&label, problems);

        let with_ca = run(&cairnctl(), &url, &[&ca, "check", "datascale"]);
        let lines = normalize(&with_ca.stdout, &url, true);
        let passed = lines.as_ref().is_ok_and(|l| {
            l.last().map(String::as_str) == Some("PASS: Approximate system memory used : X MB.")
        });
        let mut problems = Vec::new();
        if with_ca.code != 0 || !passed {
            problems.push(format!("cairnctl --cacert: {lines:?} {}", with_ca.stderr));
        }
        let refused = run(&etcdctl(), &url, &[&ca, "check", "datascale"]);
        if refused.code != 1 || !refused.stdout.starts_with("client certificate error: ") {
            problems.push(format!("etcdctl --cacert: {}", refused.stdout));
        }
        report.case(
            &format!("check datascale --cacert against {name}"),
            problems,
        );

        {
            let args = [ca.as_str(), "check", "datascale"];
            let want = run(&etcdctl(), &server.endpoint(), &args);
            let got = run(&cairnctl(), &server.endpoint(), &args);
            let mut problems = common::differences(
                (&want.stdout, &want.stderr, want.code),
                (&got.stdout, &got.stderr, got.code),
            );
            if !want.stdout.ends_with("/metrics\": EOF\nFAIL: Could not read process_resident_memory_bytes before the put operations.\n") {
                problems.push(format!("etcdctl: {:?}", want.stdout));
            }
            report.case(
                &format!("check datascale over plain HTTP against {name}'s TLS port"),
                problems,
            );
        }
        let prefix = "/etcdctl-check-datascale/";
        let left = run(
            &etcdctl(),
            &url,
            &[&ca, "get", prefix, "--prefix", "--keys-only"],
        );
        if left.code != 0 || !left.stdout.is_empty() {
            report.problem(format!("{name}: keys under {prefix}: {:?}", left.stdout));
        }
    }
    report.finish();
}

/// The verdict lines of `check perf` in etcdctl's form, checked against the numbers they
/// print; whether it passed.
fn perf_verdict(lines: &[String]) -> Result<bool, String> {
    let mut rest: Vec<&str> = lines
        .iter()
        .map(String::as_str)
        .filter(|l| !l.starts_with("[progress of"))
        .collect();
    let bad = |l: &str| format!("not a check perf verdict line: {l:?} in {lines:?}");
    let mut pass = true;
    if rest.first() == Some(&"FAIL: too many errors") {
        pass = false;
        rest.remove(0);
        let n = rest
            .iter()
            .take_while(|l| l.starts_with("FAIL: ERROR(") && l.contains(") -> "))
            .count();
        if n == 0 {
            return Err(bad("no error after FAIL: too many errors"));
        }
        rest.drain(..n);
    }
    let [throughput, slowest, stddev, last] = rest[..] else {
        return Err(format!("expected 4 verdict lines: {lines:?}"));
    };
    let seconds = |t: &str| -> Option<f64> {
        let v = t.strip_suffix('s')?;
        (v.split_once('.')?.1.len() == 6).then_some(())?;
        v.parse().ok()
    };
    if let Some(n) = throughput.strip_prefix("PASS: Throughput is ") {
        let n: u64 = n
            .strip_suffix(" writes/s")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| bad(throughput))?;
        // Passing means more than 90% of 150 writes/s; the line shows the rate plus one.
        if n < 136 {
            return Err(bad(throughput));
        }
    } else if let Some(n) = throughput.strip_prefix("FAIL: Throughput too low: ") {
        let n: u64 = n
            .strip_suffix(" writes/s")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| bad(throughput))?;
        if n > 136 {
            return Err(bad(throughput));
        }
        pass = false;
    } else {
        return Err(bad(throughput));
    }
    for (line, ok_head, fail_head, limit) in [
        (
            slowest,
            "PASS: Slowest request took ",
            "Slowest request took too long: ",
            0.5,
        ),
        (stddev, "PASS: Stddev is ", "Stddev too high: ", 0.1),
    ] {
        if let Some(t) = line.strip_prefix(ok_head) {
            if seconds(t).is_none_or(|v| v > limit) {
                return Err(bad(line));
            }
        } else if let Some(t) = line.strip_prefix(fail_head) {
            if seconds(t).is_none_or(|v| v <= limit) {
                return Err(bad(line));
            }
            pass = false;
        } else {
            return Err(bad(line));
        }
    }
    let said = match last {
        "PASS" => true,
        "FAIL" => false,
        _ => return Err(bad(last)),
    };
    if said != pass {
        return Err(format!(
            "the last line does not follow from the others: {lines:?}"
        ));
    }
    Ok(pass)
}

/// `check perf --load s` by etcdctl and cairnctl at the same time against cairn (each
/// under its own prefix): both complete within a bound, print a progress line of 60 steps
/// and etcdctl's verdict lines, exit 0 after `PASS` and 1 after `FAIL`, and leave no key.
#[test]
fn check_perf_verdicts_have_etcdctls_form_and_exit_code() {
    let cairn = ServerProc::start(Kind::Cairn, &[]);
    let ep = cairn.endpoint();
    let runs = [
        (etcdctl(), "etcdctl", "/perf-etcdctl/"),
        (cairnctl(), "cairnctl", "/perf-cairnctl/"),
    ];
    let children: Vec<(Child, &str, &str)> = runs
        .iter()
        .map(|(tool, name, prefix)| {
            (
                spawn(
                    tool,
                    &ep,
                    &["check", "perf", "--load", "s", "--prefix", prefix],
                ),
                *name,
                *prefix,
            )
        })
        .collect();
    let mut report = Report::default();
    for (child, name, prefix) in children {
        let out = finish(child, Duration::from_secs(200), name);
        let mut problems = Vec::new();
        match normalize(&out.stdout, &ep, false) {
            Err(e) => problems.push(e),
            Ok(lines) => {
                if lines.first().map(String::as_str) != Some("[progress of 60]") {
                    problems.push(format!("no progress line of 60 steps first: {lines:?}"));
                }
                match perf_verdict(&lines) {
                    Err(e) => problems.push(e),
                    Ok(pass) => {
                        let want = if pass { 0 } else { 1 };
                        if out.code != want {
                            problems.push(format!(
                                "exit code {} after {}",
                                out.code,
                                if pass { "PASS" } else { "FAIL" }
                            ));
                        }
                    }
                }
            }
        }
        if !out.stderr.is_empty() {
            problems.push(format!("stderr: {:?}", out.stderr));
        }
        let left = keys_under(&ep, prefix);
        if !left.is_empty() {
            problems.push(format!("keys left under {prefix}"));
        }
        report.case(&format!("{name} check perf against cairn"), problems);
    }
    report.finish();
}

#[test]
fn the_masks_read_pb_lines_and_verdicts() {
    let finished = "Start x.\n\r 0 / 10    0.00%\r 5 / 10   50.00% 00m01s\r 10 / 10  100.00% 1s\nPASS: Approximate system memory used : -0.50 MB.\n";
    assert_eq!(
        normalize(finished, "E", true).unwrap(),
        vec![
            "Start x.",
            "[progress of 10]",
            "PASS: Approximate system memory used : X MB."
        ]
    );
    // Going back, a wrong percentage, or no final step are refused.
    assert!(normalize("\r 5 / 10   50.00%\r 4 / 10   40.00%\n", "E", false).is_err());
    assert!(normalize("\r 5 / 10   51.00%\n", "E", false).is_err());
    assert!(normalize("\r 5 / 10   50.00% 00m01s\n", "E", true).is_err());
    let glued = "\r 59 / 60   98.33%PASS: Throughput is 150 writes/s\nPASS: Slowest request took 0.185735s\nPASS: Stddev is 0.017469s\nPASS\n";
    let lines = normalize(glued, "E", false).unwrap();
    assert_eq!(lines[1], "PASS: Throughput is 150 writes/s");
    assert_eq!(perf_verdict(&lines), Ok(true));
    let failed: Vec<String> = [
        "FAIL: Throughput too low: 120 writes/s",
        "Slowest request took too long: 0.600000s",
        "PASS: Stddev is 0.017469s",
        "FAIL",
    ]
    .map(String::from)
    .to_vec();
    assert_eq!(perf_verdict(&failed), Ok(false));
    let lying: Vec<String> = [
        "PASS: Throughput is 150 writes/s",
        "PASS: Slowest request took 0.600000s",
        "PASS: Stddev is 0.017469s",
        "PASS",
    ]
    .map(String::from)
    .to_vec();
    assert!(perf_verdict(&lying).is_err());
    assert!(go_seconds("1m0s") && go_seconds("2s") && !go_seconds("00m01s") && !go_seconds("s"));
}
