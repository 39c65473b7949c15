//! Crash safety: every acknowledged write survives `kill -9` at any moment, a torn tail
//! left in the Raft log by an interrupted write does not stop the member from starting, and
//! a member whose disk fills up stops at once (fail-stop) and loses nothing it acknowledged.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use cairn_proto::etcdserverpb::{kv_client::KvClient, PutRequest};
use cairn_tests::acked::{assert_acked_readable, put_load, Acked};
use cairn_tests::{channel, Kind, ServerProc};

/// Writes unique keys (under `r{round}/`) from `writers` tasks for `run_for`, recording
/// each acknowledged write; a writer stops at its first failure (the member was killed).
async fn write_load(url: String, round: usize, writers: usize, acked: Acked, run_for: Duration) {
    let deadline = Instant::now() + run_for;
    put_load(
        &url,
        &format!("r{round}"),
        writers,
        &acked,
        deadline,
        |_| false,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9() {
    kill_9_rounds(ServerProc::start(Kind::Cairn, &[])).await;
}

/// With `--unsafe-no-fsync` (dev and CI clusters run with it) nothing is fsynced, on etcd
/// 3.5.1 as on cairn: the WAL fsync histogram stays at zero. Writes still reach the OS
/// before they are acknowledged, so a killed process loses none of them, as on etcd.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_fsync_nothing_is_synced_and_a_killed_member_loses_nothing() {
    for kind in [Kind::Etcd35, Kind::Cairn] {
        let server = ServerProc::start(kind, &["--unsafe-no-fsync"]);
        // etcd counts the syncs of the WAL directory it made at start; none after them.
        let fsyncs = || {
            let name = "etcd_disk_wal_fsync_duration_seconds_count";
            tokio::task::block_in_place(|| server.metric(name).unwrap())
        };
        let before = fsyncs();
        let acked: Acked = Default::default();
        let deadline = Instant::now() + Duration::from_secs(20);
        let failed = put_load(&server.url(), "n", 4, &acked, deadline, |i| i >= 50).await;
        assert_eq!(failed, Vec::<String>::new(), "{kind:?}");
        assert_eq!(acked.lock().unwrap().len(), 200, "{kind:?}");
        assert_eq!(fsyncs() - before, 0.0, "{kind:?}: 200 puts, no fsync");
        kill_9_rounds(server).await;
    }
}

/// Three rounds of a put load killed in its middle (`kill -9`) and the member started
/// again: every acknowledged write is there each time.
async fn kill_9_rounds(mut cairn: ServerProc) {
    let acked: Acked = Default::default();
    for round in 0..3 {
        let url = cairn.url();
        let load = tokio::spawn(write_load(
            url,
            round,
            16,
            acked.clone(),
            Duration::from_secs(3),
        ));
        // Kill in the middle of the load, at a different moment each round: when is the
        // fault this test varies.
        tokio::time::sleep(Duration::from_millis(400 + 300 * round as u64)).await;
        cairn.kill9();
        load.await.unwrap();
        let n = acked.lock().unwrap().len();
        assert!(n > 0, "no write was acknowledged in round {round}");
        tokio::task::block_in_place(|| cairn.spawn());
        assert_acked_readable(&cairn.url(), b"\0", b"\0", &acked).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torn_log_tail_is_recovered() {
    let mut cairn = ServerProc::start(Kind::Cairn, &[]);
    let acked: Acked = Default::default();
    write_load(cairn.url(), 0, 8, acked.clone(), Duration::from_millis(800)).await;
    cairn.kill9();
    // An interrupted append leaves garbage after the last complete record.
    let raft_dir = cairn.data_dir().join("raft");
    let mut logs: Vec<_> = std::fs::read_dir(&raft_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "raftlog"))
        .collect();
    logs.sort();
    let last = logs.last().expect("a raft log file");
    let mut f = std::fs::OpenOptions::new().append(true).open(last).unwrap();
    use std::io::Write;
    f.write_all(&[0xAB; 1000]).unwrap();
    drop(f);
    tokio::task::block_in_place(|| cairn.spawn());
    assert_acked_readable(&cairn.url(), b"\0", b"\0", &acked).await;
    // And it still takes writes.
    write_load(cairn.url(), 1, 2, acked.clone(), Duration::from_millis(200)).await;
    assert_acked_readable(&cairn.url(), b"\0", b"\0", &acked).await;
}

/// A tmpfs of a few MiB mounted on a directory (tests run as root), unmounted when dropped.
struct SmallDisk {
    dir: std::path::PathBuf,
}

impl SmallDisk {
    fn mount(dir: std::path::PathBuf, mib: u64) -> SmallDisk {
        std::fs::create_dir_all(&dir).unwrap();
        let size = format!("size={mib}m");
        mount(&["-t", "tmpfs", "-o", &size, "tmpfs", dir.to_str().unwrap()]);
        SmallDisk { dir }
    }

    /// Gives the filesystem room again, keeping its files.
    fn grow(&self, mib: u64) {
        let opts = format!("remount,size={mib}m");
        mount(&["-o", &opts, self.dir.to_str().unwrap()]);
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.dir)
            .status();
    }
}

fn mount(args: &[&str]) {
    let out = std::process::Command::new("mount")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "mount {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `len` printable characters that no compressor (raft-engine's lz4) shrinks much, made
/// from `seed`.
fn incompressible(seed: u64, len: usize) -> String {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'!' + (x % 90) as u8)
        })
        .collect()
}

/// Puts 48 KiB values under unique keys until one fails (at most 2000: 96 MiB, more than
/// the small disks hold), recording each acknowledged write.
async fn fill(url: String, acked: &Acked) {
    let mut kv = KvClient::new(channel(&url));
    for i in 0..2000 {
        let key = format!("fill/{i:05}");
        let value = incompressible(i, 48 * 1024);
        let req = PutRequest {
            key: key.clone().into_bytes(),
            value: value.clone().into_bytes(),
            ..Default::default()
        };
        if kv.put(req).await.is_err() {
            return;
        }
        acked.lock().unwrap().insert(key, value);
    }
    panic!("2000 puts of 48 KiB fitted on a disk of a few MiB");
}

/// Fills the disk `disk` of `cairn`'s Raft log or backend: the member must exit non-zero
/// by itself, saying why; once the disk has room again, it starts and has every write it
/// acknowledged.
async fn full_disk_stops_the_member(mut cairn: ServerProc, disk: SmallDisk) {
    let acked: Acked = Default::default();
    fill(cairn.url(), &acked).await;
    let code = tokio::task::block_in_place(|| cairn.wait_exit(Duration::from_secs(10)));
    assert_ne!(code, 0, "exited with {code}; log:\n{}", cairn.log_text());
    let log = cairn.log_text();
    assert!(
        log.contains("No space left on device"),
        "the log does not say why the member stopped:\n{log}"
    );
    assert!(!acked.lock().unwrap().is_empty(), "no write fitted at all");
    disk.grow(256);
    tokio::task::block_in_place(|| cairn.spawn());
    assert_acked_readable(&cairn.url(), b"\0", b"\0", &acked).await;
    // And it takes writes again.
    write_load(cairn.url(), 1, 2, acked.clone(), Duration::from_millis(200)).await;
    assert_acked_readable(&cairn.url(), b"\0", b"\0", &acked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_raft_log_disk_stops_the_member() {
    let wal = tempfile::tempdir().unwrap();
    let disk = SmallDisk::mount(wal.path().join("wal"), 8);
    let wal_dir = format!("--wal-dir={}", disk.dir.display());
    let cairn = ServerProc::start(Kind::Cairn, &[&wal_dir]);
    full_disk_stops_the_member(cairn, disk).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_backend_disk_stops_the_member() {
    let mut cairn = ServerProc::new(Kind::Cairn, "m1", cairn_tests::free_port(), &[]);
    let disk = SmallDisk::mount(cairn.data_dir(), 24);
    tokio::task::block_in_place(|| cairn.spawn());
    full_disk_stops_the_member(cairn, disk).await;
}
