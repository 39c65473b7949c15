//! A three-member cairn cluster with client TLS and auth on, as the deployments it is for
//! run it: a root user, and per key prefix a read-write and a read-only role.
//!
//! A rolling restart (each member stopped with SIGTERM and started again, one at a time)
//! while a read-write client writes and a read-only client reads, both through the
//! `etcd-client` crate over TLS with every member as an endpoint: nothing acknowledged is
//! lost, every member ends with the same keys and auth state, the read-only user is never
//! let write, and the read-write user never outside its prefix.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_tests::certs::{Pair, Pki, Use};
use cairn_tests::deployment::{self, RO_USER, RW_USER};
use cairn_tests::{free_port, run_client, start_together, tool, Kind, ServerProc};
use etcd_client::{Certificate, Client, ConnectOptions, GetOptions, TlsOptions};

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// Starts three cairn members serving clients over TLS only.
fn start_cluster(server: &Pair) -> Vec<ServerProc> {
    let flags = [
        format!("--cert-file={}", s(&server.cert)),
        format!("--key-file={}", s(&server.key)),
    ];
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let mut members: Vec<ServerProc> = (0..3)
        .map(|i| {
            let mut m = ServerProc::new(Kind::Cairn, &format!("m{i}"), free_port(), &flags);
            m.client_scheme = "https";
            m
        })
        .collect();
    start_together(&mut members);
    members
}

/// Every member's client URL, comma-separated.
fn urls(members: &[ServerProc]) -> String {
    members
        .iter()
        .map(ServerProc::url)
        .collect::<Vec<_>>()
        .join(",")
}

/// etcdctl 3.5 against every member with the CA; panics unless it succeeds.
fn etcdctl(members: &[ServerProc], ca: &Path, args: &[&str]) -> String {
    let mut all = vec![format!("--cacert={}", s(ca))];
    all.extend(args.iter().map(|a| a.to_string()));
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    let run = run_client(&tool("etcdctl-3.5"), &urls(members), &all, None);
    assert_eq!(run.code, 0, "etcdctl {args:?}: {run:?}");
    run.stdout
}

/// An `etcd-client` connection over TLS to every member, logged in as `user`.
async fn connect(members: &[ServerProc], ca: &Path, user: &str, password: &str) -> Client {
    let tls = TlsOptions::new().ca_certificate(Certificate::from_pem(std::fs::read(ca).unwrap()));
    let opts = ConnectOptions::new()
        .with_tls(tls)
        .with_user(user, password)
        .with_timeout(Duration::from_secs(5))
        .with_connect_timeout(Duration::from_secs(2));
    let endpoints: Vec<String> = members.iter().map(ServerProc::url).collect();
    Client::connect(endpoints, Some(opts)).await.unwrap()
}

/// Whether an error is a refusal on permission (as opposed to a member being away).
fn denied(e: &etcd_client::Error) -> bool {
    e.to_string().contains("permission denied")
}

#[test]
fn a_rolling_restart_with_tls_and_auth_loses_nothing_and_allows_nothing_more() {
    let pki = Pki::new("rolling restart CA");
    let server = pki.issue("server", "server", 1, Use::Server);
    let ca = pki.ca();
    let mut members = start_cluster(&server);

    for args in deployment::provisioning() {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        etcdctl(&members, &ca, &args);
    }
    let auth_state = |members: &[ServerProc]| {
        etcdctl(members, &ca, &["--user=root:rootpw", "role", "list"])
            + &etcdctl(
                members,
                &ca,
                &["--user=root:rootpw", "user", "get", deployment::RO_USER.0],
            )
    };
    let auth_before = auth_state(&members);

    let rt = tokio::runtime::Runtime::new().unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let (writer, reader) = rt.block_on(async {
        (
            connect(&members, &ca, RW_USER.0, RW_USER.1).await,
            connect(&members, &ca, RO_USER.0, RO_USER.1).await,
        )
    });

    // The writer: sequential puts under its prefix, each acknowledged one recorded; now
    // and then a put outside its prefix, which must never succeed.
    let writes = {
        let done = done.clone();
        let mut c = writer.clone();
        rt.spawn(async move {
            let mut acked = Vec::new();
            let (mut escapes, mut refused) = (0u32, 0u32);
            let started = Instant::now();
            for n in 0..20_000u32 {
                if done.load(Ordering::Relaxed) || started.elapsed() > Duration::from_secs(120) {
                    break;
                }
                let key = format!("/orders/{n:06}");
                match c.put(key.clone(), "v", None).await {
                    Ok(_) => acked.push(key),
                    Err(e) if denied(&e) => refused += 1,
                    Err(_) => {}
                }
                if n % 50 == 0 && c.put("/billing/x", "v", None).await.is_ok() {
                    escapes += 1;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            (acked, escapes, refused)
        })
    };
    // The reader: reads of the prefix, and now and then a put, which must never succeed.
    let reads = {
        let done = done.clone();
        let mut c = reader.clone();
        rt.spawn(async move {
            let (mut ok, mut denied_reads, mut writes_let_through) = (0u32, 0u32, 0u32);
            let started = Instant::now();
            for n in 0..20_000u32 {
                if done.load(Ordering::Relaxed) || started.elapsed() > Duration::from_secs(120) {
                    break;
                }
                match c
                    .get(
                        "/orders/",
                        Some(GetOptions::new().with_prefix().with_count_only()),
                    )
                    .await
                {
                    Ok(_) => ok += 1,
                    Err(e) if denied(&e) => denied_reads += 1,
                    Err(_) => {}
                }
                if n % 20 == 0 && c.put("/orders/forged", "v", None).await.is_ok() {
                    writes_let_through += 1;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (ok, denied_reads, writes_let_through)
        })
    };

    // The rolling restart: one member at a time, each back before the next goes.
    std::thread::sleep(Duration::from_millis(500));
    for m in members.iter_mut() {
        m.stop();
        std::thread::sleep(Duration::from_millis(300));
        m.spawn();
        std::thread::sleep(Duration::from_millis(500));
    }
    done.store(true, Ordering::Relaxed);
    let (acked, escapes, refused_writes) = rt.block_on(writes).unwrap();
    let (reads_ok, denied_reads, writes_let_through) = rt.block_on(reads).unwrap();

    assert!(
        acked.len() > 100,
        "too few writes acknowledged: {}",
        acked.len()
    );
    assert!(reads_ok > 50, "too few reads answered: {reads_ok}");
    assert_eq!(escapes, 0, "the writer wrote outside its prefix");
    assert_eq!(writes_let_through, 0, "the reader was let write");
    assert_eq!(denied_reads, 0, "the reader was refused a read it may make");
    assert_eq!(
        refused_writes, 0,
        "the writer was refused a write it may make"
    );

    // Every member holds every acknowledged write, and the same auth state.
    let last = acked.last().unwrap().clone();
    for m in &members {
        let got = rt.block_on(async {
            let mut c = connect(std::slice::from_ref(m), &ca, "root", "rootpw").await;
            cairn_tests::wait_until_async(
                Duration::from_secs(10),
                "the last write everywhere",
                || {
                    let mut c = c.clone();
                    let last = last.clone();
                    async move {
                        let opts = GetOptions::new().with_serializable();
                        match c.get(last, Some(opts)).await {
                            Ok(r) if r.count() == 1 => Ok(()),
                            Ok(r) => Err(format!("count {}", r.count())),
                            Err(e) => Err(e.to_string()),
                        }
                    }
                },
            )
            .await;
            let opts = GetOptions::new()
                .with_prefix()
                .with_keys_only()
                .with_serializable();
            let r = c.get("/orders/", Some(opts)).await.unwrap();
            r.kvs()
                .iter()
                .map(|kv| kv.key_str().unwrap().to_string())
                .collect::<std::collections::BTreeSet<_>>()
        });
        for key in &acked {
            assert!(got.contains(key), "{} lost {key}", m.name);
        }
        assert!(
            !got.contains("/orders/forged"),
            "{} holds the forged key",
            m.name
        );
    }
    assert_eq!(auth_state(&members), auth_before);
}
