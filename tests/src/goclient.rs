//! etcd's own Go client (`tests/go/etcdgo`, built against Debian's golang-etcd-server-dev),
//! for checking that what Go services use works against cairn as against etcd.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use crate::{repo_root, Run};

/// Where Debian's golang-etcd-server-dev puts etcd's Go sources.
const GOPATH: &str = "/usr/share/gocode";

/// The `etcdgo` binary, built on first use (once per test process; concurrent builds
/// from other test processes each write their own file and rename it into place).
pub fn etcd_go_client() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let root = repo_root();
        let out_dir = root.join("target/etcdgo");
        std::fs::create_dir_all(&out_dir).unwrap();
        let bin = out_dir.join("etcdgo");
        let partial = out_dir.join(format!("etcdgo.{}", std::process::id()));
        let built = Command::new("go")
            .args(["build", "-o"])
            .arg(&partial)
            .arg(root.join("tests/go/etcdgo/main.go"))
            .env("GO111MODULE", "off")
            .env("GOPATH", GOPATH)
            .env("GOCACHE", out_dir.join("cache"))
            .env("GOFLAGS", "")
            .output()
            .expect("go is missing: run scripts/setup");
        assert!(
            built.status.success(),
            "building etcdgo failed:\n{}",
            String::from_utf8_lossy(&built.stderr)
        );
        std::fs::rename(&partial, &bin).unwrap();
        bin
    })
    .clone()
}

/// Runs etcd's Go client with `args` (its flags, then a command such as `put k v`).
pub fn etcd_go(args: &[&str]) -> Run {
    Command::new(etcd_go_client())
        .args(args)
        .output()
        .unwrap()
        .into()
}
