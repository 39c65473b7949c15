//! TLS on the client port, against real etcd 3.5.1 started with the same flags: the real
//! etcdctl 3.5 and 3.4, curl and openssl as clients. Each case runs on both servers and
//! asserts what a user sees: the same output, or the same refusal.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use cairn_tests::certs::{Pair, Pki, Use};
use cairn_tests::wait::wait_until;
use cairn_tests::{run_client, tool, workspace_bin, Kind, Run, ServerProc};

const BOTH: [Kind; 2] = [Kind::Etcd35, Kind::Cairn];

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// The server flags for `pair` as the client listener's certificate, with `more`.
fn server_flags(pair: &Pair, more: &[String]) -> Vec<String> {
    let mut f = vec![
        format!("--cert-file={}", s(&pair.cert)),
        format!("--key-file={}", s(&pair.key)),
    ];
    f.extend(more.iter().cloned());
    f
}

fn start(kind: Kind, flags: &[String]) -> ServerProc {
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    ServerProc::start_https(kind, &flags)
}

/// etcdctl (`etcdctl-3.5` or `etcdctl-3.4`) against `server`'s https URL with the TLS
/// flags `tls`; a refused handshake fails within the short dial timeout.
fn ctl(etcdctl: &str, server: &ServerProc, tls: &[String], args: &[&str]) -> Run {
    let mut all: Vec<&str> = tls.iter().map(String::as_str).collect();
    all.extend(["--dial-timeout=2s", "--command-timeout=4s"]);
    all.extend(args);
    run_client(&tool(etcdctl), &server.url(), &all, None)
}

fn cacert(pki: &Pki) -> Vec<String> {
    vec![format!("--cacert={}", s(&pki.ca()))]
}

fn with_cert(pki: &Pki, pair: &Pair) -> Vec<String> {
    vec![
        format!("--cacert={}", s(&pki.ca())),
        format!("--cert={}", s(&pair.cert)),
        format!("--key={}", s(&pair.key)),
    ]
}

/// `endpoint status -w table` with what legitimately differs between servers masked:
/// member id, version, database size, Raft term and indexes.
fn status_table(text: &str, port: u16) -> String {
    text.lines()
        .map(|l| {
            if !l.starts_with("| https") {
                // Column widths follow the values (a member id has 15 or 16 hex digits):
                // compare the headers' words, not the padding and rules.
                return l
                    .split(['|', '+'])
                    .map(|c| {
                        let c = c.trim();
                        if !c.is_empty() && c.chars().all(|ch| ch == '-') {
                            "-"
                        } else {
                            c
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("|");
            }
            let cells: Vec<&str> = l.split('|').collect();
            let masked: Vec<String> = cells
                .iter()
                .enumerate()
                .map(|(i, c)| match i {
                    1 => c.trim().replace(&port.to_string(), "PORT"),
                    2..=4 | 7..=9 => "X".into(),
                    _ => c.trim().to_string(),
                })
                .collect();
            masked.join("|")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// curl's GET of `path` on `server` over https with `args`: the body, or `None` when the
/// request failed.
fn curl(server: &ServerProc, path: &str, args: &[String]) -> Option<String> {
    let out = Command::new("curl")
        .args(["-sS", "-f", "--max-time", "5"])
        .args(args)
        .arg(format!("{}{path}", server.url()))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    if !out.status.success() {
        eprintln!(
            "curl {path}: {:?} {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `openssl s_client` to `port` with `args`, trusting `ca`: its whole output, and whether
/// a TLS session was established and verified.
fn s_client(port: u16, ca: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("timeout")
        .args(["10", "openssl", "s_client", "-connect"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("-CAfile")
        .arg(ca)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let ok = text.contains("Verification: OK") && !text.contains("Cipher is (NONE)");
    (ok, text)
}

#[test]
fn client_tls_serves_etcdctl_curl_and_openssl_as_etcd() {
    let pki = Pki::new("ca");
    let server = pki.issue("server", "server", 10, Use::Server);
    let mut outputs = Vec::new();
    for kind in BOTH {
        let srv = start(kind, &server_flags(&server, &[]));
        let tls = cacert(&pki);
        let mut seen = Vec::new();
        let put = ctl("etcdctl-3.5", &srv, &tls, &["put", "k", "v"]);
        assert_eq!(
            (put.code, put.stdout.as_str()),
            (0, "OK\n"),
            "{kind:?}: {}",
            put.stderr
        );
        for v in ["etcdctl-3.5", "etcdctl-3.4"] {
            let get = ctl(v, &srv, &tls, &["get", "k"]);
            assert_eq!(get.code, 0, "{kind:?} {v}: {}", get.stderr);
            seen.push(get.stdout);
        }
        let health = ctl("etcdctl-3.5", &srv, &tls, &["endpoint", "health"]);
        assert_eq!(health.code, 0, "{kind:?}: {}", health.stderr);
        assert!(health.stdout.contains("is healthy"), "{}", health.stdout);
        let status = ctl(
            "etcdctl-3.5",
            &srv,
            &tls,
            &["endpoint", "status", "-w", "table"],
        );
        assert_eq!(status.code, 0, "{kind:?}: {}", status.stderr);
        seen.push(status_table(&status.stdout, srv.client_port));
        // The HTTP endpoints share the port, over HTTP/2 and HTTP/1.1.
        let ca = cacert_curl(&pki);
        assert_eq!(
            curl(&srv, "/health", &ca).as_deref(),
            Some("{\"health\":\"true\",\"reason\":\"\"}"),
            "{kind:?}"
        );
        let version = curl(&srv, "/version", &[&ca[..], &["--http1.1".into()]].concat()).unwrap();
        assert!(version.contains("\"etcdcluster\":\"3.5.0\""), "{version}");
        // TLS 1.2 with ALPN h2, as etcd 3.5.1 serves it.
        let (ok, text) = s_client(srv.client_port, &pki.ca(), &["-alpn", "h2"]);
        assert!(ok, "{kind:?}: {text}");
        assert!(text.contains("ALPN protocol: h2"), "{kind:?}: {text}");
        assert!(text.contains("Protocol  : TLSv1.2"), "{kind:?}: {text}");
        let (tls13, _) = s_client(srv.client_port, &pki.ca(), &["-tls1_3"]);
        assert!(!tls13, "{kind:?} took TLS 1.3");
        // A client that does not trust the server's CA is refused by itself.
        let other = Pki::new("other");
        let untrusted = ctl("etcdctl-3.5", &srv, &cacert(&other), &["get", "k"]);
        assert_ne!(untrusted.code, 0, "{kind:?}");
        outputs.push(seen);
    }
    assert_eq!(outputs[1], outputs[0]);
}

#[test]
fn client_cert_auth_and_a_trusted_ca_alone_both_require_a_client_certificate() {
    let pki = Pki::new("ca");
    let server = pki.issue("server", "server", 10, Use::Server);
    let alice = pki.issue("alice", "alice", 11, Use::Client);
    let ca = format!("--trusted-ca-file={}", s(&pki.ca()));
    // etcd 3.5 asks for and verifies a client certificate whenever a trusted CA is given,
    // with or without --client-cert-auth.
    for more in [
        vec![ca.clone(), "--client-cert-auth".into()],
        vec![ca.clone()],
    ] {
        for kind in BOTH {
            let srv = start(kind, &server_flags(&server, &more));
            let without = ctl("etcdctl-3.5", &srv, &cacert(&pki), &["put", "k", "v"]);
            assert_ne!(
                without.code, 0,
                "{kind:?} {more:?} served without a certificate"
            );
            let with = ctl(
                "etcdctl-3.5",
                &srv,
                &with_cert(&pki, &alice),
                &["put", "k", "v"],
            );
            assert_eq!(with.code, 0, "{kind:?} {more:?}: {}", with.stderr);
            assert_eq!(with.stdout, "OK\n");
            // /health too needs the certificate.
            assert!(
                curl(&srv, "/health", &cacert_curl(&pki)).is_none(),
                "{kind:?}"
            );
            let mut args = cacert_curl(&pki);
            args.extend([
                "--cert".into(),
                s(&alice.cert),
                "--key".into(),
                s(&alice.key),
            ]);
            assert!(curl(&srv, "/health", &args).is_some(), "{kind:?}");
        }
    }
}

fn cacert_curl(pki: &Pki) -> Vec<String> {
    vec!["--cacert".into(), s(&pki.ca())]
}

#[test]
fn revoked_expired_and_foreign_client_certificates_are_refused() {
    let pki = Pki::new("ca");
    let server = pki.issue("server", "server", 10, Use::Server);
    let good = pki.issue("good", "good", 11, Use::Client);
    let revoked = pki.issue("revoked", "revoked", 12, Use::Client);
    let expired = pki.issue_expired("expired", "expired", 13, Use::Client);
    let crl = pki.crl(&[12]);
    let other = Pki::new("other");
    let foreign = other.issue("foreign", "good", 11, Use::Client);
    let more = vec![
        format!("--trusted-ca-file={}", s(&pki.ca())),
        "--client-cert-auth".into(),
        format!("--client-crl-file={}", s(&crl)),
    ];
    for kind in BOTH {
        let srv = start(kind, &server_flags(&server, &more));
        let ok = ctl(
            "etcdctl-3.5",
            &srv,
            &with_cert(&pki, &good),
            &["put", "k", "v"],
        );
        assert_eq!(ok.code, 0, "{kind:?}: {}", ok.stderr);
        for (what, pair) in [
            ("revoked", &revoked),
            ("expired", &expired),
            ("foreign", &foreign),
        ] {
            let refused = ctl(
                "etcdctl-3.5",
                &srv,
                &with_cert(&pki, pair),
                &["put", "k", "v"],
            );
            assert_ne!(refused.code, 0, "{kind:?} served a {what} certificate");
        }
    }
}

#[test]
fn an_expired_server_certificate_is_refused_by_clients() {
    let pki = Pki::new("ca");
    let server = pki.issue_expired("server", "server", 10, Use::Server);
    for kind in BOTH {
        let srv = start(kind, &server_flags(&server, &[]));
        let get = ctl("etcdctl-3.5", &srv, &cacert(&pki), &["get", "k"]);
        assert_ne!(get.code, 0, "{kind:?}");
        let (ok, _) = s_client(srv.client_port, &pki.ca(), &[]);
        assert!(!ok, "{kind:?}: openssl verified an expired certificate");
    }
}

#[test]
fn auto_tls_serves_a_self_signed_certificate_from_the_data_dir() {
    for kind in BOTH {
        let srv = start(kind, &["--auto-tls".into()]);
        let insecure = [
            "--insecure-transport=false".to_string(),
            "--insecure-skip-tls-verify".to_string(),
        ];
        let put = ctl("etcdctl-3.5", &srv, &insecure, &["put", "k", "v"]);
        assert_eq!(
            (put.code, put.stdout.as_str()),
            (0, "OK\n"),
            "{kind:?}: {}",
            put.stderr
        );
        let fixtures = srv.data_dir().join("fixtures/client");
        for f in ["cert.pem", "key.pem"] {
            assert!(fixtures.join(f).exists(), "{kind:?} has no {f}");
        }
        // The certificate is the one served, and names the listen host.
        let (ok, text) = s_client(srv.client_port, &fixtures.join("cert.pem"), &[]);
        assert!(ok, "{kind:?}: {text}");
    }
}

#[test]
fn cipher_suites_limit_the_handshake_and_unknown_names_are_refused_at_start() {
    let pki = Pki::new("ca");
    let server = pki.issue("server", "server", 10, Use::Server);
    // (etcd 3.5.1 given only a ChaCha20 suite dies at start: its own gRPC gateway's
    // client then finds no suite in common with it.)
    let only = vec!["--cipher-suites=TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256".to_string()];
    for kind in BOTH {
        let srv = start(kind, &server_flags(&server, &only));
        let (ok, text) = s_client(
            srv.client_port,
            &pki.ca(),
            &["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"],
        );
        assert!(ok, "{kind:?}: {text}");
        let (mismatch, _) = s_client(
            srv.client_port,
            &pki.ca(),
            &["-tls1_2", "-cipher", "ECDHE-ECDSA-CHACHA20-POLY1305"],
        );
        assert!(!mismatch, "{kind:?} took a suite it was not given");
        // etcdctl negotiates the one suite.
        let put = ctl("etcdctl-3.5", &srv, &cacert(&pki), &["put", "k", "v"]);
        assert_eq!(put.code, 0, "{kind:?}: {}", put.stderr);
    }
    for kind in BOTH {
        let mut p = ServerProc::new(kind, "m1", cairn_tests::free_port(), &[]);
        let binary = match kind {
            Kind::Cairn => workspace_bin("cairn"),
            _ => tool("etcd-3.5"),
        };
        p.client_scheme = "https";
        let out = Command::new(binary)
            .args([
                format!("--data-dir={}", s(&p.data_dir())),
                format!("--listen-client-urls={}", p.url()),
                format!("--advertise-client-urls={}", p.url()),
                format!("--listen-peer-urls={}", p.peer_url()),
                "--cipher-suites=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,BOGUS".into(),
            ])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_ne!(out.status.code(), Some(0));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("unexpected TLS cipher suite \\\"BOGUS\\\"")
                || stderr.contains("unexpected TLS cipher suite \"BOGUS\""),
            "{kind:?}: {stderr}"
        );
    }
}

#[test]
fn a_rotated_server_certificate_is_served_without_restart() {
    let pki = Pki::new("ca");
    let server = pki.issue("server", "first-server", 10, Use::Server);
    let srv = start(Kind::Cairn, &server_flags(&server, &[]));
    let (ok, text) = s_client(srv.client_port, &pki.ca(), &[]);
    assert!(ok && text.contains("first-server"), "{text}");
    pki.issue("server", "second-server", 20, Use::Server);
    // The files are looked at again at most once a second: the next connections see the
    // new certificate within a few.
    wait_until(Duration::from_secs(10), "the rotated certificate", || {
        let (ok, text) = s_client(srv.client_port, &pki.ca(), &[]);
        if ok && text.contains("second-server") {
            Ok(())
        } else {
            Err(text
                .lines()
                .find(|l| l.contains("subject="))
                .map(str::to_string))
        }
    });
    let put = ctl("etcdctl-3.5", &srv, &cacert(&pki), &["put", "k", "v"]);
    assert_eq!(put.code, 0, "{}", put.stderr);
}

#[test]
fn https_and_http_client_listeners_mix_on_one_member() {
    let pki = Pki::new("ca");
    let server = pki.issue("server", "server", 10, Use::Server);
    for kind in BOTH {
        let http_port = cairn_tests::free_port();
        let mut p = ServerProc::new(kind, "m1", cairn_tests::free_port(), &[]);
        p.client_scheme = "https";
        let urls = format!(
            "--listen-client-urls={},http://127.0.0.1:{http_port}",
            p.url()
        );
        let metrics_port = cairn_tests::free_port();
        let metrics = format!("--listen-metrics-urls=https://127.0.0.1:{metrics_port}");
        p.extra = server_flags(&server, &[urls, metrics]);
        p.spawn();
        let put = ctl("etcdctl-3.5", &p, &cacert(&pki), &["put", "k", "over-tls"]);
        assert_eq!(put.code, 0, "{kind:?}: {}", put.stderr);
        let plain = run_client(
            &tool("etcdctl-3.5"),
            &format!("http://127.0.0.1:{http_port}"),
            &["get", "k", "--print-value-only"],
            None,
        );
        assert_eq!(plain.stdout, "over-tls\n", "{kind:?}: {}", plain.stderr);
        let (code, body) = cairn_tests::http_get(http_port, "/health");
        assert_eq!(code, 200, "{kind:?}");
        assert!(body.contains("\"health\":\"true\""), "{body}");
        assert!(
            curl(&p, "/health", &cacert_curl(&pki)).is_some(),
            "{kind:?}"
        );
        // An https metrics URL serves with the client listener's certificate.
        let out = Command::new("curl")
            .args(["-sS", "-f", "--max-time", "5", "--cacert"])
            .arg(pki.ca())
            .arg(format!("https://127.0.0.1:{metrics_port}/metrics"))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("etcd_server_has_leader"),
            "{kind:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The lock and election recipes run through the member's in-process client, so they work
/// when every client URL is https.
#[test]
fn lock_and_election_work_with_https_only_client_urls() {
    let pki = Pki::new("ca");
    let server = pki.issue("server", "server", 10, Use::Server);
    let srv = start(Kind::Cairn, &server_flags(&server, &[]));
    let lock = ctl(
        "etcdctl-3.5",
        &srv,
        &cacert(&pki),
        &["lock", "mutex", "--", "echo", "held"],
    );
    assert_eq!(
        (lock.code, lock.stdout.as_str()),
        (0, "held\n"),
        "{}",
        lock.stderr
    );
}

/// `n` members with https peer URLs, member `i` started with `flags(i)`, not started yet.
fn peer_tls_members(n: usize, flags: impl Fn(usize) -> Vec<String>) -> Vec<ServerProc> {
    (0..n)
        .map(|i| {
            let flags = flags(i);
            let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
            let mut m = ServerProc::new(
                Kind::Cairn,
                &format!("m{i}"),
                cairn_tests::free_port(),
                &flags,
            );
            m.peer_scheme = "https";
            m
        })
        .collect()
}

/// Writes through one member and reads the key back from every member (serializable
/// reads answer from each member's own store, so each must have replicated it).
fn replicated(members: &[&ServerProc], key: &str) {
    let put = run_client(
        &tool("etcdctl-3.5"),
        &members[0].url(),
        &["put", key, "v"],
        None,
    );
    assert_eq!(put.stdout, "OK\n", "{}", put.stderr);
    for m in members {
        wait_until(
            Duration::from_secs(10),
            format!("{key} on {}", m.name),
            || {
                let get = run_client(
                    &tool("etcdctl-3.5"),
                    &m.url(),
                    &["get", key, "--print-value-only", "--consistency=s"],
                    None,
                );
                if get.stdout == "v\n" {
                    Ok(())
                } else {
                    Err(get.stderr)
                }
            },
        );
    }
}

#[test]
fn a_peer_tls_cluster_forms_and_a_member_with_a_wrong_cn_is_refused() {
    let pki = Pki::new("ca");
    let pairs: Vec<Pair> = (0..3)
        .map(|i| {
            let cn = if i == 2 { "intruder" } else { "member" };
            pki.issue(&format!("m{i}"), cn, 100 + i as u64, Use::Server)
        })
        .collect();
    let mut members = peer_tls_members(3, |i| {
        vec![
            format!("--peer-cert-file={}", s(&pairs[i].cert)),
            format!("--peer-key-file={}", s(&pairs[i].key)),
            format!("--peer-trusted-ca-file={}", s(&pki.ca())),
            "--peer-client-cert-auth".into(),
            "--peer-cert-allowed-cn=member".into(),
        ]
    });
    let initial: Vec<String> = members
        .iter()
        .map(|m| format!("{}={}", m.name, m.peer_url()))
        .collect();
    for m in members.iter_mut() {
        m.extra
            .push(format!("--initial-cluster={}", initial.join(",")));
    }
    // m0 and m1 have a quorum between them; m2's CN is not the allowed one, so both refuse
    // its connections at the handshake (it still accepts theirs: its own flag allows
    // "member").
    let waits: Vec<_> = members[..2].iter_mut().map(|m| m.spawn_nowait()).collect();
    let _m2_wait = members[2].spawn_nowait();
    for (m, w) in members[..2].iter_mut().zip(waits) {
        m.wait_ready(w);
    }
    replicated(&[&members[0], &members[1]], "k1");
    members[0].wait_logged(
        0,
        Duration::from_secs(10),
        "a refused peer handshake",
        |l| l.contains("rejected peer connection"),
    );
    // The two keep working without the third.
    replicated(&[&members[1], &members[0]], "k2");
}

#[test]
fn a_peer_tls_cluster_replicates_and_a_peer_auto_tls_cluster_forms() {
    let pki = Pki::new("ca");
    let pairs: Vec<Pair> = (0..3)
        .map(|i| pki.issue(&format!("m{i}"), "member", 200 + i as u64, Use::Server))
        .collect();
    let mut members = peer_tls_members(3, |i| {
        vec![
            format!("--peer-cert-file={}", s(&pairs[i].cert)),
            format!("--peer-key-file={}", s(&pairs[i].key)),
            format!("--peer-trusted-ca-file={}", s(&pki.ca())),
            "--peer-client-cert-auth".into(),
        ]
    });
    cairn_tests::start_together(&mut members);
    let all: Vec<&ServerProc> = members.iter().collect();
    replicated(&all, "over-peer-tls");

    let mut auto = peer_tls_members(3, |_| vec!["--peer-auto-tls".into()]);
    cairn_tests::start_together(&mut auto);
    for m in &auto {
        assert!(m.data_dir().join("fixtures/peer/cert.pem").exists());
    }
    let all: Vec<&ServerProc> = auto.iter().collect();
    replicated(&all, "over-peer-auto-tls");
}

/// etcd checks that a member's client certificate names the address it connects from;
/// a member whose certificate is for another address is refused, the other two go on.
#[test]
fn a_peer_whose_certificate_does_not_name_its_address_is_refused() {
    let pki = Pki::new("ca");
    let pairs: Vec<Pair> = (0..3)
        .map(|i| match i {
            2 => pki.issue_with_sans("m2", "member", 302, &["10.0.0.9"]),
            _ => pki.issue(&format!("m{i}"), "member", 300 + i as u64, Use::Server),
        })
        .collect();
    let mut members = peer_tls_members(3, |i| {
        vec![
            format!("--peer-cert-file={}", s(&pairs[i].cert)),
            format!("--peer-key-file={}", s(&pairs[i].key)),
            format!("--peer-trusted-ca-file={}", s(&pki.ca())),
            "--peer-client-cert-auth".into(),
        ]
    });
    let initial: Vec<String> = members
        .iter()
        .map(|m| format!("{}={}", m.name, m.peer_url()))
        .collect();
    for m in members.iter_mut() {
        m.extra
            .push(format!("--initial-cluster={}", initial.join(",")));
    }
    let waits: Vec<_> = members[..2].iter_mut().map(|m| m.spawn_nowait()).collect();
    let _m2_wait = members[2].spawn_nowait();
    for (m, w) in members[..2].iter_mut().zip(waits) {
        m.wait_ready(w);
    }
    replicated(&[&members[0], &members[1]], "k");
    members[0].wait_logged(0, Duration::from_secs(10), "the SAN refusal", |l| {
        l.contains("rejected peer connection")
            && l.contains("x509: certificate is valid for 10.0.0.9, not 127.0.0.1")
    });
}

/// Plain HTTP, or any bytes that are not a TLS handshake, sent to a TLS client port: the
/// connection is closed with nothing written, as etcd closes it (no TLS alert: curl says
/// "Empty reply from server" to both).
#[test]
fn plain_http_to_a_tls_port_is_closed_without_an_answer_as_etcd() {
    use std::io::{Read, Write};
    let pki = Pki::new("ca");
    let server = pki.issue("server", "server", 10, Use::Server);
    let mut seen = Vec::new();
    for kind in BOTH {
        let srv = start(kind, &server_flags(&server, &[]));
        let mut answers = Vec::new();
        for sent in [
            &b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"[..],
            &b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"[..],
            &[0u8; 64][..],
        ] {
            let mut c = std::net::TcpStream::connect(("127.0.0.1", srv.client_port)).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            c.write_all(sent).unwrap();
            let mut got = Vec::new();
            // Closed (EOF) or reset: either way the client reads what came before it.
            let _ = c.read_to_end(&mut got);
            answers.push(got);
        }
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "10"])
            .arg(format!("http://127.0.0.1:{}/health", srv.client_port))
            .output()
            .unwrap();
        answers.push(out.status.code().unwrap_or(-1).to_string().into_bytes());
        seen.push(answers);
    }
    assert_eq!(seen[1], seen[0], "cairn's answers, then etcd's");
    assert_eq!(seen[0][0], Vec::<u8>::new(), "etcd writes nothing");
}
