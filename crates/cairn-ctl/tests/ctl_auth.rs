//! cairnctl's user, role and auth commands, `--user`/`--password` and the TLS flags
//! against etcdctl 3.5.1, byte for byte, on real etcd 3.5.1 servers serving clients over
//! TLS, with authentication turned on by the script itself.
//!
//! The script runs twice, on two fresh etcd servers made alike: etcdctl's run on one,
//! cairnctl's on the other. Both servers advertise the same (never dialled) peer URL, so
//! they get the same member and cluster IDs; each step's output then matches byte for byte
//! once the client port in the Go client's warnings is rewritten, log timestamps and Go
//! pointers masked. Standard input is a pipe, so the password prompts run as they do
//! when a script feeds them: `stty` complains on stderr, and the line is read all the same.
//!
//! The certificates are made here with rcgen: a CA, a server certificate for 127.0.0.1,
//! a client certificate whose CN is `root`, and an unrelated CA.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use cairn_client::{Client, ClientConfig, AUTH_OLD_REVISION, AUTH_OLD_REVISION_AT_APPLY};
use cairn_proto::authpb::Permission;
use cairn_proto::etcdserverpb::{AuthRoleGrantPermissionRequest, PutRequest, RangeRequest};
use cairn_tests::mask::{mask, mask_measured, mask_number_after};
use cairn_tests::{free_port, Kind, ServerProc};
use common::{ctl_command, replace, Report, Run};

const FORMATS: [&str; 5] = ["simple", "json", "fields", "table", "protobuf"];

/// The PEM files a test uses, in a directory removed with it.
struct Certs {
    dir: tempfile::TempDir,
}

impl Certs {
    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// A CA (`ca.pem`), a server certificate for 127.0.0.1 signed by it (`server.pem`,
    /// `server-key.pem`), one for the name localhost only (`server-dns.pem`,
    /// `server-dns-key.pem`), a client certificate with CN `root` (`client.pem`,
    /// `client-key.pem`) and a second, unrelated CA (`other-ca.pem`).
    fn make() -> Certs {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: String| std::fs::write(dir.path().join(name), text).unwrap();
        let ca = |cn: &str| {
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.distinguished_name.push(DnType::CommonName, cn);
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            let key = KeyPair::generate().unwrap();
            let cert = params.self_signed(&key).unwrap();
            (params, key, cert)
        };
        let (ca_params, ca_key, ca_cert) = ca("cairn test CA");
        let (_, _, other) = ca("another CA");
        write("ca.pem", ca_cert.pem());
        write("other-ca.pem", other.pem());
        let issuer = Issuer::from_params(&ca_params, &ca_key);
        let leaf = |sans: Vec<String>, cn: &str, prefix: &str| {
            let mut params = CertificateParams::new(sans).unwrap();
            params.distinguished_name.push(DnType::CommonName, cn);
            let key = KeyPair::generate().unwrap();
            let cert = params.signed_by(&key, &issuer).unwrap();
            write(&format!("{prefix}.pem"), cert.pem());
            write(&format!("{prefix}-key.pem"), key.serialize_pem());
        };
        leaf(
            vec!["127.0.0.1".into(), "localhost".into()],
            "etcd",
            "server",
        );
        leaf(vec![], "root", "client");
        leaf(vec!["localhost".into()], "etcd", "server-dns");
        // An ECDSA key pair for etcd's JWT tokens (ES256).
        let jwt = KeyPair::generate().unwrap();
        write("jwt.pem", jwt.serialize_pem());
        write("jwt.pub", jwt.public_key_pem());
        Certs { dir }
    }
}

/// Starts etcd 3.5.1 serving clients over TLS with `extra` flags. Every server started
/// here advertises the same peer URL, so all get the same IDs.
fn etcd(certs: &Certs, extra: &[&str]) -> ServerProc {
    etcd_with(certs, "server", extra)
}

/// Like [`etcd`], serving the certificate `<cert>.pem` (and its key).
fn etcd_with(certs: &Certs, cert: &str, extra: &[&str]) -> ServerProc {
    let mut p = ServerProc::new(Kind::Etcd35, "m1", free_port(), &[]);
    let url = format!("https://127.0.0.1:{}", p.client_port);
    let mut flags = vec![
        format!("--listen-client-urls={url}"),
        format!("--advertise-client-urls={url}"),
        "--initial-advertise-peer-urls=http://127.0.0.1:1".to_string(),
        "--initial-cluster=m1=http://127.0.0.1:1".to_string(),
        format!("--cert-file={}", certs.path(&format!("{cert}.pem"))),
        format!("--key-file={}", certs.path(&format!("{cert}-key.pem"))),
    ];
    flags.extend(extra.iter().map(|s| s.to_string()));
    p.extra = flags;
    p.spawn();
    p
}

/// Runs `bin` against `endpoint` with `args` (an `--endpoints` among them wins), the
/// environment `env` and `stdin`.
fn run(bin: &Path, endpoint: &str, args: &[String], env: &[(&str, String)], stdin: &str) -> Run {
    let named = args.iter().any(|a| a.starts_with("--endpoints"));
    let mut cmd = ctl_command(bin, (!named).then_some(endpoint));
    cmd.args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    common::run(cmd, stdin.as_bytes())
}

/// One step of a script: arguments and what standard input holds.
struct Step {
    args: Vec<String>,
    stdin: String,
}

fn step(args: &[&str]) -> Step {
    Step {
        args: args.iter().map(|s| s.to_string()).collect(),
        stdin: String::new(),
    }
}

fn step_in(args: &[&str], stdin: &str) -> Step {
    Step {
        stdin: stdin.to_string(),
        ..step(args)
    }
}

/// A run's output as compared: stdout, stderr with `port` written as `PORT` and masked,
/// and the exit code.
fn comparable(r: &Run, port: u16, measured: bool) -> (Vec<u8>, String, i32) {
    let at = format!("127.0.0.1:{port}");
    let stderr = replace(&r.stderr, at.as_bytes(), b"127.0.0.1:PORT");
    let stderr = if measured {
        mask_measured(&mask(&stderr))
    } else {
        mask(&stderr)
    };
    let stderr = closed_connection(&stderr);
    let stdout = if measured {
        let stdout = replace(&r.stdout, at.as_bytes(), b"127.0.0.1:PORT");
        mask_raft_index(&mask_measured(&String::from_utf8_lossy(&stdout))).into_bytes()
    } else {
        r.stdout.clone()
    };
    (stdout, stderr, r.code)
}

/// gRPC-Go reports a TLS server dialled in the clear either as `connection closed` or,
/// when its write races the server's close, as `write tcp A->B: use of closed network
/// connection`; the second is rewritten into the first.
fn closed_connection(text: &str) -> String {
    const FROM: &str = "last connection error: write tcp ";
    const TAIL: &str = ": use of closed network connection";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(FROM) {
        let after = &rest[i + FROM.len()..];
        let Some(j) = after.find(TAIL) else { break };
        out.push_str(&rest[..i]);
        out.push_str("last connection error: connection closed");
        rest = &after[j + TAIL.len()..];
    }
    out.push_str(rest);
    out
}

/// Masks the raft index and applied index in `endpoint status` output, in every format.
/// etcdctl 3.5.1 authenticates again on each connection it dials for one endpoint (and
/// `snapshot save` twice), cairnctl once per command; with simple tokens each
/// `Authenticate` is a Raft entry, so the indexes drift apart by those.
fn mask_raft_index(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let mut l = line.to_string();
        for key in [
            "\"raftIndex\":",
            "\"raftAppliedIndex\":",
            "\"RaftIndex\" : ",
            "\"RaftAppliedIndex\" : ",
        ] {
            l = mask_number_after(&l, key);
        }
        let sep = if l.starts_with("| https://") {
            Some(("|", 8, 9))
        } else if l.starts_with("https://") {
            Some((",", 7, 8))
        } else {
            None
        };
        if let Some((sep, a, b)) = sep {
            let cells: Vec<String> = l
                .split(sep)
                .enumerate()
                .map(|(i, c)| {
                    if i == a || i == b {
                        c.replace(|ch: char| ch.is_ascii_digit(), "N")
                    } else {
                        c.to_string()
                    }
                })
                .collect();
            l = cells.join(sep);
        }
        out.push_str(&l);
    }
    out
}

/// Compares one step run by etcdctl against `want_on` and by cairnctl against `got_on`;
/// in the output of `endpoint` and `snapshot` commands, durations, sizes and raft
/// indexes are masked.
fn compare(report: &mut Report, label: &str, want: (&Run, u16), got: (&Run, u16)) {
    let measured = label.contains("\"endpoint\"") || label.contains("\"snapshot\"");
    let (wo, we, wc) = comparable(want.0, want.1, measured);
    let (go, ge, gc) = comparable(got.0, got.1, measured);
    report.case(
        label,
        common::differences(
            (&String::from_utf8_lossy(&wo), &we, wc),
            (&String::from_utf8_lossy(&go), &ge, gc),
        ),
    );
}

/// The script: users, roles and permissions in every format, auth turned on, the
/// permission checks a user sees, and the prompts. Global flags come first in each step.
///
/// `snapshot` is where `snapshot save` writes; etcdctl's file is moved away before
/// cairnctl's run, so both print the same path.
fn script(snapshot: &str) -> Vec<Step> {
    let root = "--user=root:rootpw";
    let mut s = vec![
        step(&["auth", "status"]),
        // No root user yet: refused, nothing created.
        step(&["auth", "enable"]),
        step(&["role", "list"]),
        step(&["user", "add", "root:rootpw"]),
        step(&["user", "add", "root:again"]),
        step(&["user", "add", ":nameless"]),
        step(&["user", "add"]),
        step(&["user", "add", "nopw", "--no-password"]),
        step(&["user", "add", "flagpw", "--new-user-password=secret"]),
        step_in(&["user", "add", "typed"], "pw1\npw1\n"),
        step_in(&["user", "add", "mismatch"], "pw1\npw2\n"),
        step_in(&["user", "add", "empty"], "\n"),
        step_in(
            &["user", "add", "piped", "--interactive=false"],
            "  pipedpw rest\n",
        ),
        step(&["role", "grant-permission", "nosuchrole", "read", "k"]),
        step(&["role", "grant-permission", "r", "sometimes", "k"]),
        step(&["role", "grant-permission", "r", "read"]),
        step(&[
            "role",
            "grant-permission",
            "r",
            "read",
            "a",
            "b",
            "--prefix",
        ]),
        step(&[
            "role",
            "grant-permission",
            "r",
            "read",
            "a",
            "b",
            "--from-key",
        ]),
        step(&[
            "role",
            "grant-permission",
            "r",
            "read",
            "a",
            "--prefix",
            "--from-key",
        ]),
        step(&["role", "revoke-permission", "r"]),
        step(&["user", "grant-role", "only-one"]),
        step(&["user", "list", "extra"]),
        step(&["auth", "status", "extra"]),
    ];
    for f in FORMATS {
        let w = format!("-w={f}");
        let user = format!("u-{f}");
        let role = format!("r-{f}");
        let app = format!("/app/{f}/");
        let k = format!("/k-{f}");
        let cmds: Vec<Vec<String>> = vec![
            vec!["user".into(), "add".into(), format!("{user}:pw")],
            vec!["role".into(), "add".into(), role.clone()],
            vec![
                "role".into(),
                "grant-permission".into(),
                role.clone(),
                "readwrite".into(),
                app.clone(),
                "--prefix".into(),
            ],
            vec![
                "role".into(),
                "grant-permission".into(),
                role.clone(),
                "read".into(),
                k.clone(),
            ],
            vec![
                "role".into(),
                "grant-permission".into(),
                role.clone(),
                "WRITE".into(),
                "/a".into(),
                "/b".into(),
            ],
            vec![
                "role".into(),
                "grant-permission".into(),
                role.clone(),
                "read".into(),
                "/z".into(),
                "--from-key".into(),
            ],
            vec![
                "role".into(),
                "grant-permission".into(),
                role.clone(),
                "read".into(),
                "".into(),
                "--prefix".into(),
            ],
            vec![
                "user".into(),
                "grant-role".into(),
                user.clone(),
                role.clone(),
            ],
            vec!["user".into(), "get".into(), user.clone()],
            vec!["user".into(), "get".into(), user.clone(), "--detail".into()],
            vec!["role".into(), "get".into(), role.clone()],
            vec!["role".into(), "list".into()],
            vec!["user".into(), "list".into()],
            vec!["user".into(), "get".into(), "nobody".into()],
            vec!["role".into(), "get".into(), "nobody".into()],
            vec![
                "role".into(),
                "revoke-permission".into(),
                role.clone(),
                k.clone(),
            ],
            vec![
                "role".into(),
                "revoke-permission".into(),
                role.clone(),
                "/z".into(),
                "--from-key".into(),
            ],
            vec![
                "role".into(),
                "revoke-permission".into(),
                role.clone(),
                "/a".into(),
                "/b".into(),
            ],
            vec![
                "role".into(),
                "revoke-permission".into(),
                role.clone(),
                k.clone(),
            ],
            vec![
                "user".into(),
                "revoke-role".into(),
                user.clone(),
                role.clone(),
            ],
            vec![
                "user".into(),
                "revoke-role".into(),
                user.clone(),
                role.clone(),
            ],
            vec!["auth".into(), "status".into()],
        ];
        for c in cmds {
            let mut args = vec![w.clone()];
            args.extend(c);
            s.push(Step {
                args,
                stdin: String::new(),
            });
        }
        s.push(Step {
            args: vec![
                w.clone(),
                "user".into(),
                "passwd".into(),
                user.clone(),
                "--interactive=false".into(),
            ],
            stdin: "newpw\n".into(),
        });
        s.push(Step {
            args: vec![w.clone(), "role".into(), "delete".into(), role.clone()],
            stdin: String::new(),
        });
        s.push(Step {
            args: vec![w.clone(), "user".into(), "delete".into(), user.clone()],
            stdin: String::new(),
        });
    }
    let tail_start = s.len();
    s.extend([
        // A read-only and a read-write role on one prefix.
        step(&["role", "add", "app-ro"]),
        step(&[
            "role",
            "grant-permission",
            "app-ro",
            "read",
            "/app/",
            "--prefix",
        ]),
        step(&["role", "add", "app-rw"]),
        step(&[
            "role",
            "grant-permission",
            "app-rw",
            "readwrite",
            "/app/",
            "--prefix",
        ]),
        step(&["user", "add", "ro:ropw"]),
        step(&["user", "grant-role", "ro", "app-ro"]),
        step(&["user", "add", "rw:rwpw"]),
        step(&["user", "grant-role", "rw", "app-rw"]),
        step(&["put", "/app/x", "before"]),
        // The root role is missing: etcdctl adds it, grants it to root and enables.
        step(&["auth", "enable"]),
        step(&["auth", "status"]),
        step(&[root, "auth", "status"]),
        step(&[root, "-w=json", "auth", "status"]),
        step(&[root, "role", "get", "root"]),
        step(&["--user=rw:rwpw", "put", "/app/x", "written"]),
        step(&["--user=ro:ropw", "get", "/app/", "--prefix"]),
        step(&["--user=ro:ropw", "put", "/app/x", "denied"]),
        step(&["--user=ro:ropw", "get", "/other"]),
        step(&["--user=ro:ropw", "user", "list"]),
        step(&["--user=ro:wrong", "get", "/app/x"]),
        step(&["--user=nobody:pw", "get", "/app/x"]),
        step(&["--user=ro", "--password=ropw", "get", "/app/x"]),
        step(&["--user=ro:x", "--password=ropw", "get", "/app/x"]),
        step(&["--user=:ropw", "get", "/app/x"]),
        step(&["--user=ro:", "get", "/app/x"]),
        step_in(&["--user=ro", "get", "/app/x"], "ropw\n"),
        step_in(&["--user=ro", "get", "/app/x"], "wrong\n"),
        step_in(&[root, "user", "passwd", "ro"], "ropw2\nropw2\n"),
        step(&["--user=ro:ropw2", "get", "/app/x"]),
        step(&[root, "snapshot", "save", snapshot]),
        step(&["--user=ro:ropw2", "endpoint", "status"]),
        step(&["--user=ro:ropw2", "snapshot", "save", snapshot]),
        step(&[root, "user", "delete", "root"]),
        step(&[root, "auth", "disable"]),
        step(&["auth", "status"]),
    ]);
    // Maintenance over TLS with auth on, every format, before root is deleted.
    let at = s
        .iter()
        .rposition(|st| st.args.iter().any(|a| a == "delete"))
        .unwrap_or(tail_start);
    let mut maintenance = Vec::new();
    for f in FORMATS {
        for cmd in [
            ["endpoint", "status"],
            ["endpoint", "health"],
            ["endpoint", "hashkv"],
        ] {
            maintenance.push(Step {
                args: vec![
                    root.to_string(),
                    format!("-w={f}"),
                    cmd[0].into(),
                    cmd[1].into(),
                ],
                stdin: String::new(),
            });
        }
    }
    s.splice(at..at, maintenance);
    s
}

/// The script run by etcdctl on one server and by cairnctl on another, step by step.
#[test]
fn user_role_and_auth_commands_match_etcdctl() {
    let certs = Certs::make();
    let a = etcd(&certs, &[]);
    let b = etcd(&certs, &[]);
    let etcdctl = common::etcdctl();
    let cairnctl = common::cairnctl();
    let tls = |p: &ServerProc| {
        vec![
            format!("--endpoints=https://127.0.0.1:{}", p.client_port),
            format!("--cacert={}", certs.path("ca.pem")),
        ]
    };
    let mut report = Report::default();
    let mut seen = Vec::new();
    let snapshots = tempfile::tempdir().unwrap();
    let snapshot = snapshots.path().join("snapshot.db").display().to_string();
    let theirs = format!("{snapshot}.etcdctl");
    for (i, st) in script(&snapshot).iter().enumerate() {
        let with = |p: &ServerProc| {
            let mut args = tls(p);
            args.extend(st.args.iter().cloned());
            args
        };
        let want = run(&etcdctl, "", &with(&a), &[], &st.stdin);
        let saving = st.args.iter().any(|a| a == "snapshot");
        if saving {
            let _ = std::fs::rename(&snapshot, &theirs);
        }
        let got = run(&cairnctl, "", &with(&b), &[], &st.stdin);
        if saving {
            let etcdctl_saved = std::fs::metadata(&theirs).is_ok();
            let cairnctl_saved = std::fs::metadata(&snapshot).is_ok();
            assert_eq!(
                etcdctl_saved, cairnctl_saved,
                "{:?}: snapshot saved",
                st.args
            );
            for f in [&snapshot, &theirs] {
                let _ = std::fs::remove_file(f);
                let _ = std::fs::remove_file(format!("{f}.part"));
            }
        }
        let label = format!("step {i}: {:?} stdin {:?}", st.args, st.stdin);
        compare(
            &mut report,
            &label,
            (&want, a.client_port),
            (&got, b.client_port),
        );
        seen.push((st.args.join(" "), want));
    }
    // The script did what it is for: etcdctl's own run shows each of these.
    let shown = |args: &str, text: &str, code: i32| {
        let found = seen.iter().any(|(a, r)| {
            a == args
                && r.code == code
                && (String::from_utf8_lossy(&r.stdout).contains(text)
                    || String::from_utf8_lossy(&r.stderr).contains(text))
        });
        assert!(
            found,
            "etcdctl's run of {args:?} did not show {text:?} (exit {code})"
        );
    };
    shown("auth enable", "etcdserver: root user does not exist", 1);
    shown("auth enable", "Authentication Enabled", 0);
    shown(
        "--user=ro:ropw put /app/x denied",
        "etcdserver: permission denied",
        1,
    );
    shown("--user=ro:ropw get /app/ --prefix", "written", 0);
    shown("--user=ro:wrong get /app/x", "authentication failed", 2);
    shown("--user=ro get /app/x", "Password: ", 0);
    shown("user add mismatch", "given passwords are different", 128);
    shown("--user=root:rootpw user delete root", "", 1);
    shown(
        "-w=table role list",
        "table not supported as output format",
        4,
    );
    report.finish();
}

/// The TLS flags and their variables, against one server (read-only steps): etcdctl and
/// cairnctl on the same server give the same output.
#[test]
fn tls_flags_match_etcdctl() {
    let certs = Certs::make();
    let server = etcd(&certs, &[]);
    // A server that takes only clients with a certificate from the CA.
    let strict = etcd(
        &certs,
        &[
            "--client-cert-auth",
            &format!("--trusted-ca-file={}", certs.path("ca.pem")),
        ],
    );
    let etcdctl = common::etcdctl();
    let cairnctl = common::cairnctl();
    let ca = certs.path("ca.pem");
    let other = certs.path("other-ca.pem");
    let cert = certs.path("client.pem");
    let key = certs.path("client-key.pem");
    let https = |p: &ServerProc| format!("--endpoints=https://127.0.0.1:{}", p.client_port);
    let bare = |p: &ServerProc| format!("--endpoints=127.0.0.1:{}", p.client_port);
    let http = |p: &ServerProc| format!("--endpoints=http://127.0.0.1:{}", p.client_port);
    let quick = "--command-timeout=1s".to_string();
    type Case = (Vec<String>, Vec<(&'static str, String)>);
    let mut cases: Vec<(&ServerProc, Case)> = vec![
        (
            &server,
            (
                vec![
                    https(&server),
                    format!("--cacert={ca}"),
                    "put".into(),
                    "k".into(),
                    "v".into(),
                ],
                vec![],
            ),
        ),
        (
            &server,
            (
                vec![
                    bare(&server),
                    format!("--cacert={ca}"),
                    "get".into(),
                    "k".into(),
                ],
                vec![],
            ),
        ),
        (
            &server,
            (
                vec![https(&server), "get".into(), "k".into()],
                vec![("ETCDCTL_CACERT", ca.clone())],
            ),
        ),
        (
            &server,
            (
                vec![https(&server), quick.clone(), "get".into(), "k".into()],
                vec![],
            ),
        ),
        (
            &server,
            (
                vec![
                    https(&server),
                    quick.clone(),
                    format!("--cacert={other}"),
                    "get".into(),
                    "k".into(),
                ],
                vec![],
            ),
        ),
        (
            &server,
            (
                vec![
                    http(&server),
                    quick.clone(),
                    format!("--cacert={ca}"),
                    "get".into(),
                    "k".into(),
                ],
                vec![],
            ),
        ),
        (
            &server,
            (
                vec![
                    https(&server),
                    "--insecure-transport=false".into(),
                    "--insecure-skip-tls-verify".into(),
                    "get".into(),
                    "k".into(),
                ],
                vec![],
            ),
        ),
        (
            &server,
            (
                vec![
                    bare(&server),
                    "--insecure-transport=false".into(),
                    "--insecure-skip-tls-verify".into(),
                    "get".into(),
                    "k".into(),
                ],
                vec![],
            ),
        ),
        (
            &server,
            (
                vec![
                    https(&server),
                    quick.clone(),
                    "--insecure-skip-tls-verify".into(),
                    "get".into(),
                    "k".into(),
                ],
                vec![],
            ),
        ),
        (
            &server,
            (
                vec![bare(&server), "get".into(), "k".into()],
                vec![
                    ("ETCDCTL_INSECURE_TRANSPORT", "false".into()),
                    ("ETCDCTL_INSECURE_SKIP_TLS_VERIFY", "true".into()),
                ],
            ),
        ),
        (
            &server,
            (
                vec![https(&server), "--cacert=".into(), "get".into(), "k".into()],
                vec![],
            ),
        ),
        (
            &server,
            (
                vec![
                    https(&server),
                    "--cacert=/nonexistent/ca.pem".into(),
                    "get".into(),
                    "k".into(),
                ],
                vec![],
            ),
        ),
        (
            &server,
            (
                vec![
                    https(&server),
                    format!("--cacert={ca}"),
                    format!("--cert={cert}"),
                    "get".into(),
                    "k".into(),
                ],
                vec![],
            ),
        ),
        (
            &server,
            (
                vec![
                    https(&server),
                    format!("--cacert={ca}"),
                    format!("--key={key}"),
                    "get".into(),
                    "k".into(),
                ],
                vec![],
            ),
        ),
        (
            &server,
            (
                vec![
                    https(&server),
                    format!("--cacert={ca}"),
                    format!("--cert={ca}"),
                    format!("--key={key}"),
                    "get".into(),
                    "k".into(),
                ],
                vec![],
            ),
        ),
        (
            &server,
            (
                vec![
                    https(&server),
                    format!("--cacert={ca}"),
                    format!("--cert={key}"),
                    format!("--key={key}"),
                    "get".into(),
                    "k".into(),
                ],
                vec![],
            ),
        ),
        (
            &strict,
            (
                vec![
                    https(&strict),
                    format!("--cacert={ca}"),
                    format!("--cert={cert}"),
                    format!("--key={key}"),
                    "put".into(),
                    "k".into(),
                    "v".into(),
                ],
                vec![],
            ),
        ),
        (
            &strict,
            (
                vec![https(&strict), "get".into(), "k".into()],
                vec![
                    ("ETCDCTL_CACERT", ca.clone()),
                    ("ETCDCTL_CERT", cert.clone()),
                    ("ETCDCTL_KEY", key.clone()),
                ],
            ),
        ),
        (
            &strict,
            (
                vec![
                    https(&strict),
                    format!("--cert={cert}"),
                    format!("--key={key}"),
                    "--insecure-skip-tls-verify".into(),
                    "get".into(),
                    "k".into(),
                ],
                vec![],
            ),
        ),
    ];
    // A certificate for localhost only: dialled as 127.0.0.1 it is refused, as localhost
    // it is taken.
    let dns_only = etcd_with(&certs, "server-dns", &[]);
    for host in ["127.0.0.1", "localhost"] {
        cases.push((
            &dns_only,
            (
                vec![
                    format!("--endpoints=https://{host}:{}", dns_only.client_port),
                    quick.clone(),
                    format!("--cacert={ca}"),
                    "get".into(),
                    "k".into(),
                ],
                vec![],
            ),
        ));
    }
    // Several endpoints over TLS, the first one dead: the call reaches the live one.
    let dead = free_port();
    for live_first in [false, true] {
        let live = format!("https://127.0.0.1:{}", server.client_port);
        let gone = format!("https://127.0.0.1:{dead}");
        let eps = if live_first {
            format!("--endpoints={live},{gone}")
        } else {
            format!("--endpoints={gone},{live}")
        };
        cases.push((
            &server,
            (
                vec![eps, format!("--cacert={ca}"), "get".into(), "k".into()],
                vec![],
            ),
        ));
    }
    let mut report = Report::default();
    for (i, (on, (args, env))) in cases.drain(..).enumerate() {
        let want = run(&etcdctl, "", &args, &env, "");
        let got = run(&cairnctl, "", &args, &env, "");
        let label = format!("case {i}: {args:?} env {env:?}");
        compare(
            &mut report,
            &label,
            (&want, on.client_port),
            (&got, on.client_port),
        );
    }
    report.finish();
}

/// With client certificates verified and authentication on, a request without a user
/// acts as the user the certificate names (CN `root`), as etcd does; both tools agree.
#[test]
fn certificate_identity_matches_etcdctl() {
    let certs = Certs::make();
    let ca = certs.path("ca.pem");
    let strict = etcd(
        &certs,
        &["--client-cert-auth", &format!("--trusted-ca-file={ca}")],
    );
    let etcdctl = common::etcdctl();
    let cairnctl = common::cairnctl();
    let base = vec![
        format!("--endpoints=https://127.0.0.1:{}", strict.client_port),
        format!("--cacert={ca}"),
        format!("--cert={}", certs.path("client.pem")),
        format!("--key={}", certs.path("client-key.pem")),
    ];
    let setup = [vec!["user", "add", "root:rootpw"], vec!["auth", "enable"]];
    for s in setup {
        let mut args = base.clone();
        args.extend(s.iter().map(|a| a.to_string()));
        let r = run(&etcdctl, "", &args, &[], "");
        assert_eq!(r.code, 0, "{s:?}: {r:?}");
    }
    let mut report = Report::default();
    for s in [
        vec!["user", "list"],
        vec!["put", "/cn", "v"],
        vec!["--user=root:wrong", "get", "/cn"],
        vec!["auth", "status"],
    ] {
        let mut args = base.clone();
        args.extend(s.iter().map(|a| a.to_string()));
        let want = run(&etcdctl, "", &args, &[], "");
        let got = run(&cairnctl, "", &args, &[], "");
        compare(
            &mut report,
            &format!("{s:?}"),
            (&want, strict.client_port),
            (&got, strict.client_port),
        );
    }
    report.finish();
}

/// A token issued before a permission change is refused with "revision of auth store is
/// old"; the client authenticates again and the call goes through, as etcd's clients do.
/// etcd's JWT tokens carry the auth revision they were issued at (its simple tokens are
/// always taken at the current one).
#[test]
fn a_stale_token_is_renewed_once() {
    let certs = Certs::make();
    let jwt = format!(
        "--auth-token=jwt,pub-key={},priv-key={},sign-method=ES256",
        certs.path("jwt.pub"),
        certs.path("jwt.pem")
    );
    let server = etcd(&certs, &[&jwt]);
    let ca = certs.path("ca.pem");
    let endpoint = format!("https://127.0.0.1:{}", server.client_port);
    let etcdctl = common::etcdctl();
    for s in [
        vec!["user", "add", "root:rootpw"],
        vec!["user", "add", "app:apppw"],
        vec!["role", "add", "app"],
        vec![
            "role",
            "grant-permission",
            "app",
            "readwrite",
            "/app/",
            "--prefix",
        ],
        vec!["user", "grant-role", "app", "app"],
        vec!["auth", "enable"],
    ] {
        let mut args = vec![format!("--endpoints={endpoint}"), format!("--cacert={ca}")];
        args.extend(s.iter().map(|a| a.to_string()));
        let r = run(&etcdctl, "", &args, &[], "");
        assert_eq!(r.code, 0, "{s:?}: {r:?}");
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let config = |user: &str, password: &str| {
        let mut c = ClientConfig::new([endpoint.clone()]);
        c.cacert = Some(ca.clone());
        c.user = Some(user.into());
        c.password = Some(password.into());
        c
    };
    rt.block_on(async {
        let limit = Duration::from_secs(20);
        let app = tokio::time::timeout(limit, Client::connect(config("app", "apppw")))
            .await
            .unwrap()
            .unwrap();
        let root = tokio::time::timeout(limit, Client::connect(config("root", "rootpw")))
            .await
            .unwrap()
            .unwrap();
        let token = app.token().unwrap();
        // The auth store changes after `app` authenticated.
        root.auth()
            .role_grant_permission(AuthRoleGrantPermissionRequest {
                name: "app".into(),
                perm: Some(Permission {
                    perm_type: 0,
                    key: b"/shared/".to_vec(),
                    range_end: b"/shared0".to_vec(),
                }),
            })
            .await
            .unwrap();
        let put = || {
            let mut kv = app.kv();
            async move {
                kv.put(PutRequest {
                    key: b"/app/k".to_vec(),
                    value: b"v".to_vec(),
                    ..Default::default()
                })
                .await
            }
        };
        let stale = put().await.unwrap_err();
        // etcd 3.5.1 words it as its auth package does when the write is applied.
        assert!(
            [AUTH_OLD_REVISION, AUTH_OLD_REVISION_AT_APPLY].contains(&stale.message()),
            "{stale:?}"
        );
        assert!(app.should_refresh_token(&stale));
        app.with_reauth(put).await.unwrap();
        assert_ne!(app.token().unwrap(), token, "a new token was not issued");
        // The renewed token carries the new permission too.
        let read = app
            .kv()
            .range(RangeRequest {
                key: b"/shared/x".to_vec(),
                ..Default::default()
            })
            .await;
        assert!(read.is_ok(), "{read:?}");
    });
    drop(server);
}

/// `scripts/ctl-profile`, the wrapper that runs a tool with a client profile (a directory
/// with `endpoints`, `user`, `password`, `cacert`) picked by `ETCD_PROFILE` (default
/// root): etcdctl and cairnctl behind it print the same, a read-only profile's write is
/// refused for both.
#[test]
fn profile_wrapper_runs_either_tool_alike() {
    let certs = Certs::make();
    let server = etcd(&certs, &[]);
    let endpoint = format!("https://127.0.0.1:{}", server.client_port);
    let ca = certs.path("ca.pem");
    let etcdctl = common::etcdctl();
    for s in [
        vec!["user", "add", "root:rootpw"],
        vec!["role", "add", "app-ro"],
        vec![
            "role",
            "grant-permission",
            "app-ro",
            "read",
            "/app/",
            "--prefix",
        ],
        vec!["user", "add", "app-ro:ropw"],
        vec!["user", "grant-role", "app-ro", "app-ro"],
        vec!["put", "/app/a", "1"],
        vec!["put", "/app/b", "2"],
        vec!["auth", "enable"],
    ] {
        let mut args = vec![format!("--endpoints={endpoint}"), format!("--cacert={ca}")];
        args.extend(s.iter().map(|a| a.to_string()));
        let r = run(&etcdctl, "", &args, &[], "");
        assert_eq!(r.code, 0, "{s:?}: {r:?}");
    }
    let profiles = tempfile::tempdir().unwrap();
    for (name, user, password) in [("root", "root", "rootpw"), ("app-ro", "app-ro", "ropw")] {
        let dir = profiles.path().join(name);
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("endpoints"), format!("{endpoint}\n")).unwrap();
        std::fs::write(dir.join("user"), format!("{user}\n")).unwrap();
        std::fs::write(dir.join("password"), format!("{password}\n")).unwrap();
        std::fs::copy(&ca, dir.join("cacert")).unwrap();
    }
    let script = cairn_tests::repo_root().join("scripts/ctl-profile");
    let wrapped = |tool: &Path, profile: Option<&str>, args: &[&str]| {
        let mut cmd = ctl_command("sh", None);
        cmd.arg(&script)
            .args(args)
            .env("ETCD_CTL", tool)
            .env("ETCD_PROFILES", profiles.path())
            .env_remove("ETCD_PROFILE");
        if let Some(p) = profile {
            cmd.env("ETCD_PROFILE", p);
        }
        common::run(cmd, b"")
    };
    let cairnctl = common::cairnctl();
    let mut report = Report::default();
    let cases: [(Option<&str>, Vec<&str>); 6] = [
        (None, vec!["role", "list"]),
        (None, vec!["user", "list", "-w", "json"]),
        (
            Some("app-ro"),
            vec!["get", "/app/", "--prefix", "--keys-only"],
        ),
        (Some("app-ro"), vec!["put", "/app/c", "3"]),
        (Some("app-ro"), vec!["endpoint", "health", "-w", "table"]),
        (Some("nobody"), vec!["get", "/app/a"]),
    ];
    for (profile, args) in cases {
        let want = wrapped(&etcdctl, profile, &args);
        let got = wrapped(&cairnctl, profile, &args);
        compare(
            &mut report,
            &format!("{profile:?} {args:?}"),
            (&want, server.client_port),
            (&got, server.client_port),
        );
        if args[0] == "put" {
            assert!(
                String::from_utf8_lossy(&want.stderr).contains("etcdserver: permission denied"),
                "{want:?}"
            );
        }
    }
    report.finish();
}

/// What a run through a pseudo-terminal showed: stdout, stderr, exit code, and what the
/// terminal echoed back of the typing.
struct PtyRun {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    code: i32,
    echoed: Vec<u8>,
    echo_after: bool,
}

/// Runs `bin` with `args` with standard input on a new pseudo-terminal (stdout and stderr
/// piped), answering each prompt in `answers` once it is on stdout and the terminal's
/// echo is off (the tool has run `stty -echo`): the line is typed into the terminal.
fn through_pty(bin: &Path, args: &[String], answers: &[(&str, &str)]) -> PtyRun {
    use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};
    use rustix::termios::{tcgetattr, LocalModes};
    use std::io::{Read, Write};
    use std::sync::{Arc, Mutex};

    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).unwrap();
    grantpt(&master).unwrap();
    unlockpt(&master).unwrap();
    let name = ptsname(&master, Vec::new()).unwrap();
    let slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(name.to_str().unwrap())
        .unwrap();
    let mut cmd = ctl_command(bin, None);
    cmd.args(args).stdin(slave.try_clone().unwrap());
    let mut child = cmd.spawn().unwrap();
    let stdout = Arc::new(Mutex::new(Vec::new()));
    let mut out_pipe = child.stdout.take().unwrap();
    let out_buf = stdout.clone();
    let out_reader = std::thread::spawn(move || {
        let mut b = [0u8; 256];
        while let Ok(n) = out_pipe.read(&mut b) {
            if n == 0 {
                break;
            }
            out_buf.lock().unwrap().extend_from_slice(&b[..n]);
        }
    });
    let mut err_pipe = child.stderr.take().unwrap();
    let err_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err_pipe.read_to_end(&mut v);
        v
    });
    // What the terminal sends back (echo) is read from the master as it comes.
    let echoed = Arc::new(Mutex::new(Vec::new()));
    let mut master_file = std::fs::File::from(master);
    let mut master_reader = master_file.try_clone().unwrap();
    let echo_buf = echoed.clone();
    std::thread::spawn(move || {
        let mut b = [0u8; 256];
        while let Ok(n) = master_reader.read(&mut b) {
            if n == 0 {
                break;
            }
            echo_buf.lock().unwrap().extend_from_slice(&b[..n]);
        }
    });
    let mut seen = 0;
    for (prompt, line) in answers {
        cairn_tests::wait_until(
            Duration::from_secs(20),
            format!("{prompt:?} on stdout with echo off"),
            || {
                let out = stdout.lock().unwrap();
                let shown = out[seen..]
                    .windows(prompt.len())
                    .position(|w| w == prompt.as_bytes());
                let echo_off = !tcgetattr(&slave)
                    .unwrap()
                    .local_modes
                    .contains(LocalModes::ECHO);
                match shown {
                    Some(at) if echo_off => Ok(seen + at + prompt.len()),
                    _ => Err(String::from_utf8_lossy(&out).into_owned()),
                }
            },
        );
        seen = stdout.lock().unwrap().len();
        master_file
            .write_all(format!("{line}\n").as_bytes())
            .unwrap();
    }
    let status = cairn_tests::wait_until(Duration::from_secs(20), "the tool to exit", || {
        child.try_wait().unwrap().ok_or("running")
    });
    out_reader.join().unwrap();
    let stderr = err_reader.join().unwrap();
    let echo_after = tcgetattr(&slave)
        .unwrap()
        .local_modes
        .contains(LocalModes::ECHO);
    let echoed = echoed.lock().unwrap().clone();
    let stdout = stdout.lock().unwrap().clone();
    PtyRun {
        stdout,
        stderr,
        code: common::exit_code(status),
        echoed,
        echo_after,
    }
}

/// Arguments, prompts with their answers, and what etcdctl's run must show.
type PromptCase = (
    Vec<&'static str>,
    Vec<(&'static str, &'static str)>,
    &'static str,
);

/// The password prompts on a real terminal: `--user name` asks `Password: `, and `user
/// add` asks twice, with the terminal's echo off while the password is typed and back on
/// afterwards; cairnctl and etcdctl show the same and echo nothing of the password.
#[test]
fn prompts_on_a_terminal_match_etcdctl_and_echo_nothing() {
    let certs = Certs::make();
    let server = etcd(&certs, &[]);
    let base = vec![
        format!("--endpoints=https://127.0.0.1:{}", server.client_port),
        format!("--cacert={}", certs.path("ca.pem")),
    ];
    let etcdctl = common::etcdctl();
    let cairnctl = common::cairnctl();
    let mut report = Report::default();
    // Each case: arguments, prompts and answers, and what etcdctl's run must show.
    let cases: Vec<PromptCase> = vec![
        (
            vec!["user", "add", "typed-NAME"],
            vec![
                ("Password of typed-NAME: ", "s3cret"),
                (
                    "Type password of typed-NAME again for confirmation: ",
                    "s3cret",
                ),
            ],
            "User typed-NAME created",
        ),
        (
            vec!["user", "add", "differ-NAME"],
            vec![
                ("Password of differ-NAME: ", "s3cret"),
                (
                    "Type password of differ-NAME again for confirmation: ",
                    "other",
                ),
            ],
            "Error: given passwords are different",
        ),
        (
            vec!["--user=typed-NAME", "user", "get", "typed-NAME"],
            vec![("Password: ", "s3cret")],
            "User: typed-NAME\nRoles:",
        ),
    ];
    for (args, answers, shows) in &cases {
        let mut runs = Vec::new();
        for (tool, bin) in [("etcdctl", &etcdctl), ("cairnctl", &cairnctl)] {
            // Each tool adds its own user, so the names differ by tool; they are
            // compared as NAME.
            let with_name = |s: &str| s.replace("NAME", tool);
            let mut full = base.clone();
            full.extend(args.iter().map(|a| with_name(a)));
            let answers: Vec<(String, String)> = answers
                .iter()
                .map(|(p, l)| (with_name(p), l.to_string()))
                .collect();
            let answers: Vec<(&str, &str)> = answers
                .iter()
                .map(|(p, l)| (p.as_str(), l.as_str()))
                .collect();
            let r = through_pty(bin, &full, &answers);
            assert!(
                !r.echoed.windows(6).any(|w| w == b"s3cret"),
                "{tool} {args:?}: the terminal echoed the password: {:?}",
                String::from_utf8_lossy(&r.echoed)
            );
            assert!(r.echo_after, "{tool} {args:?}: echo left off");
            let named = |b: &[u8]| replace(b, tool.as_bytes(), b"NAME");
            runs.push(Run {
                stdout: named(&r.stdout),
                stderr: named(&r.stderr),
                code: r.code,
            });
        }
        let etcdctl_saw = format!(
            "{}{}",
            String::from_utf8_lossy(&runs[0].stdout),
            String::from_utf8_lossy(&runs[0].stderr)
        );
        assert!(etcdctl_saw.contains(shows), "{args:?}: {etcdctl_saw:?}");
        compare(
            &mut report,
            &format!("{args:?}"),
            (&runs[0], server.client_port),
            (&runs[1], server.client_port),
        );
    }
    report.finish();
}
