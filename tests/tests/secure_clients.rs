//! Client libraries over TLS with auth on, against real etcd 3.5.1 and cairn started with
//! the same flags (`--cert-file`, `--key-file`, `--trusted-ca-file`, `--client-cert-auth`)
//! and the same users: etcd's Go client, Python's etcd3, the `etcd-client` crate and the
//! real etcdctl 3.5 and 3.4. Every call's answer is recorded, and the two servers' records
//! must be equal; spot checks make sure they say what the scenario means.
//!
//! Users: `root` (the root role) and `alice`, whose role may only read `/app/`. With
//! `--client-cert-auth`, a request without a token acts as its certificate's CN, so
//! alice's certificate alone lets her read but not write; a password login as root over
//! alice's certificate writes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use cairn_tests::certs::{Pair, Pki, Use};
use cairn_tests::goclient::etcd_go;
use cairn_tests::pyclient::etcd3_script;
use cairn_tests::{run_client, tool, Kind, ServerProc};

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// The certificates of one run: the CA, the server's, root's and alice's client ones.
struct Certs {
    pki: Pki,
    server: Pair,
    root: Pair,
    alice: Pair,
}

impl Certs {
    fn new() -> Certs {
        let pki = Pki::new("secure clients CA");
        Certs {
            server: pki.issue("server", "server", 1, Use::Server),
            root: pki.issue("root", "root", 2, Use::Client),
            alice: pki.issue("alice", "alice", 3, Use::Client),
            pki,
        }
    }

    /// etcdctl's TLS flags with `pair` as the client certificate.
    fn ctl_flags(&self, pair: &Pair) -> Vec<String> {
        vec![
            format!("--cacert={}", s(&self.pki.ca())),
            format!("--cert={}", s(&pair.cert)),
            format!("--key={}", s(&pair.key)),
        ]
    }

    /// etcdgo's TLS flags with `pair` as the client certificate.
    fn go_flags(&self, pair: &Pair) -> Vec<String> {
        vec![
            format!("-cacert={}", s(&self.pki.ca())),
            format!("-cert={}", s(&pair.cert)),
            format!("-key={}", s(&pair.key)),
        ]
    }
}

/// Starts `kind` serving clients over TLS only, requiring client certificates.
fn start(kind: Kind, certs: &Certs) -> ServerProc {
    let flags = [
        format!("--cert-file={}", s(&certs.server.cert)),
        format!("--key-file={}", s(&certs.server.key)),
        format!("--trusted-ca-file={}", s(&certs.pki.ca())),
        "--client-cert-auth".to_string(),
    ];
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    ServerProc::start_https(kind, &flags)
}

/// Runs etcdctl (`etcdctl-3.5` or `etcdctl-3.4`) against `server` with `tls` flags; the
/// line it printed, or its error.
fn etcdctl(etcdctl: &str, server: &ServerProc, tls: &[String], args: &[&str]) -> String {
    let mut all: Vec<&str> = tls.iter().map(String::as_str).collect();
    all.push("--dial-timeout=3s");
    all.extend(args);
    let run = run_client(&tool(etcdctl), &server.url(), &all, None);
    // The Go client's retry warnings carry timestamps and pointers; the last stderr line
    // is etcdctl's own.
    let err = run.stderr.lines().last().unwrap_or_default();
    format!("{} {}{}", run.code, run.stdout, err)
}

/// Root and alice, alice reading `/app/`, a key to read, then auth on; as root by
/// certificate.
fn set_up(server: &ServerProc, certs: &Certs) {
    let root = certs.ctl_flags(&certs.root);
    for args in [
        &["user", "add", "root:rootpw"][..],
        &["user", "grant-role", "root", "root"],
        &["role", "add", "app-ro"],
        &[
            "role",
            "grant-permission",
            "app-ro",
            "read",
            "--prefix",
            "/app/",
        ],
        &["user", "add", "alice:alicepw"],
        &["user", "grant-role", "alice", "app-ro"],
        &["put", "/app/x", "1"],
        &["auth", "enable"],
    ] {
        let out = etcdctl("etcdctl-3.5", server, &root, args);
        assert!(out.starts_with("0 "), "{:?} {args:?}: {out}", server.kind);
    }
}

/// Every client's answers to the scenario on `server`, one line each, labelled.
fn scenario(server: &ServerProc, certs: &Certs) -> Vec<String> {
    set_up(server, certs);
    let mut seen = Vec::new();
    let mut record = |label: &str, out: String| seen.push(format!("{label}: {}", out.trim_end()));
    let ep = format!("-endpoints={}", server.url());

    // etcd's Go client: alice by certificate reads and may not write; root by password
    // over alice's certificate writes.
    let alice_go = certs.go_flags(&certs.alice);
    let go = |extra: &[String], call: &[&str]| {
        let mut args: Vec<&str> = vec![&ep];
        args.extend(extra.iter().map(String::as_str));
        args.extend(call);
        let run = etcd_go(&args);
        format!("{} {}", run.code, run.stdout)
    };
    record("go alice get", go(&alice_go, &["get", "/app/x"]));
    record("go alice put", go(&alice_go, &["put", "/app/x", "2"]));
    let mut root_go = alice_go.clone();
    root_go.extend(["-user=root".to_string(), "-password=rootpw".to_string()]);
    record("go root put", go(&root_go, &["put", "/app/x", "3"]));
    record("go alice get after", go(&alice_go, &["get", "/app/x"]));
    let mut no_cert = vec![format!("-cacert={}", s(&certs.pki.ca()))];
    no_cert.extend(["-user=root".to_string(), "-password=rootpw".to_string()]);
    no_cert.push("-timeout=2s".to_string());
    let refused = go(&no_cert, &["get", "/app/x"]);
    assert!(
        refused.starts_with("1 error: "),
        "{:?}: {refused}",
        server.kind
    );

    // etcdctl 3.5 and 3.4: alice by certificate, then with the wrong password.
    for ctl in ["etcdctl-3.5", "etcdctl-3.4"] {
        let alice = certs.ctl_flags(&certs.alice);
        record(
            &format!("{ctl} alice get"),
            etcdctl(
                ctl,
                server,
                &alice,
                &["get", "/app/x", "--print-value-only"],
            ),
        );
        record(
            &format!("{ctl} alice put"),
            etcdctl(ctl, server, &alice, &["put", "/app/x", "4"]),
        );
        record(
            &format!("{ctl} wrong password"),
            etcdctl(ctl, server, &alice, &["--user=alice:nope", "get", "/app/x"]),
        );
    }

    // Python's etcd3 as root (password, over root's certificate): its whole script.
    let py = etcd3_script(
        &server.host,
        server.client_port,
        &[
            "--ca-cert",
            &s(&certs.pki.ca()),
            "--cert-cert",
            &s(&certs.root.cert),
            "--cert-key",
            &s(&certs.root.key),
            "--user",
            "root",
            "--password",
            "rootpw",
        ],
    );
    assert_eq!(py.code, 0, "{:?}: {py:?}", server.kind);
    record("python etcd3 script", py.stdout);

    // The etcd-client crate: alice by password over her certificate.
    record("etcd-client", etcd_client_calls(server, certs));
    seen
}

/// The `etcd-client` crate over TLS with alice's certificate, logged in as alice: a read,
/// and a refused write.
fn etcd_client_calls(server: &ServerProc, certs: &Certs) -> String {
    use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let tls = TlsOptions::new()
            .ca_certificate(Certificate::from_pem(
                std::fs::read(certs.pki.ca()).unwrap(),
            ))
            .identity(Identity::from_pem(
                std::fs::read(&certs.alice.cert).unwrap(),
                std::fs::read(&certs.alice.key).unwrap(),
            ));
        let opts = ConnectOptions::new()
            .with_tls(tls)
            .with_user("alice", "alicepw");
        let mut c = Client::connect([server.url()], Some(opts)).await.unwrap();
        let got = c.get("/app/x", None).await.unwrap();
        let value = String::from_utf8_lossy(got.kvs()[0].value()).into_owned();
        let put = match c.put("/app/x", "5", None).await {
            Ok(_) => "written".to_string(),
            Err(e) => e.to_string(),
        };
        format!("get {value}; put {put}")
    })
}

#[test]
fn client_libraries_speak_tls_and_auth_to_cairn_as_to_etcd() {
    let certs = Certs::new();
    let etcd = start(Kind::Etcd35, &certs);
    let want = scenario(&etcd, &certs);
    drop(etcd);
    let cairn = start(Kind::Cairn, &certs);
    let got = scenario(&cairn, &certs);
    assert_eq!(got, want);

    // What the records mean.
    let line = |label: &str| {
        want.iter()
            .find(|l| l.starts_with(&format!("{label}: ")))
            .unwrap_or_else(|| panic!("{label} not recorded"))
            .clone()
    };
    assert_eq!(line("go alice get"), "go alice get: 0 1");
    assert_eq!(
        line("go alice put"),
        "go alice put: 1 error: etcdserver: permission denied"
    );
    assert_eq!(line("go alice get after"), "go alice get after: 0 3");
    assert_eq!(line("etcdctl-3.4 alice get"), "etcdctl-3.4 alice get: 0 3");
    assert!(line("etcdctl-3.5 alice put").ends_with("Error: etcdserver: permission denied"));
    assert!(line("etcdctl-3.5 wrong password")
        .ends_with("authentication failed, invalid user ID or password"));
    assert!(line("python etcd3 script").contains("lock True"));
    assert!(line("etcd-client").contains("get 3; put "));
    assert!(line("etcd-client").contains("permission denied"));
}
