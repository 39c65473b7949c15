//! What `packaging/` ships: the systemd unit passes `systemd-analyze verify`, the samples
//! of /etc/default/cairn and /etc/cairn/cairn.conf.yml name only settings cairn takes and
//! start a member, and `packaging/build-deb` makes a package that installs with dpkg (into
//! a directory tree, not this machine) and runs from there.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use cairn_tests::wait::wait_until;
use cairn_tests::{free_port, http_get, repo_root, workspace_bin};

fn packaging(file: &str) -> PathBuf {
    repo_root().join("packaging").join(file)
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_unit_passes_systemd_analyze_verify() {
    let unit = std::fs::read_to_string(packaging("cairn.service")).unwrap();
    for line in [
        "Type=notify",
        "User=cairn",
        "LimitNOFILE=65536",
        "EnvironmentFile=-/etc/default/cairn",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/cairn",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "ProtectHome=yes",
        "CapabilityBoundingSet=",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
        "SystemCallFilter=@system-service",
    ] {
        assert!(
            unit.lines().any(|l| l == line),
            "{line} missing from the unit"
        );
    }
    // verify checks that ExecStart's binary exists: point it at the built one, the only
    // line changed.
    let dir = tempfile::tempdir().unwrap();
    let bin = workspace_bin("cairn");
    let copy = unit.replace(
        "ExecStart=/usr/bin/cairn ",
        &format!("ExecStart={} ", bin.display()),
    );
    assert_ne!(copy, unit);
    let path = dir.path().join("cairn.service");
    std::fs::write(&path, copy).unwrap();
    let out = run(Command::new("systemd-analyze").arg("verify").arg(&path));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "",
        "systemd-analyze verify warned"
    );
}

/// Every `--flag` (and `ETCD_*` variable) cairn takes, read from its help.
fn help() -> String {
    text(&run(Command::new(workspace_bin("cairn")).arg("--help")))
}

#[test]
fn the_yaml_sample_names_etcd_keys_cairn_takes_and_starts_a_member() {
    let sample = std::fs::read_to_string(packaging("cairn.conf.yml")).unwrap();
    let help = help();
    let doc: serde_yaml::Value = serde_yaml::from_str(&sample).unwrap();
    let mut keys = 0;
    for (k, v) in doc.as_mapping().unwrap() {
        let k = k.as_str().unwrap();
        let flags: Vec<String> = match k {
            "client-transport-security" | "peer-transport-security" => {
                let prefix = if k.starts_with("peer") { "peer-" } else { "" };
                v.as_mapping()
                    .unwrap()
                    .keys()
                    .map(|sk| format!("{prefix}{}", sk.as_str().unwrap()))
                    .collect()
            }
            _ => vec![k.to_string()],
        };
        for f in flags {
            assert!(
                help.contains(&format!("--{f} ")),
                "--{f} is not a cairn flag"
            );
            keys += 1;
        }
    }
    assert!(keys > 20, "{keys}");

    // The sample as it is, but for the data directory and the ports.
    let dir = tempfile::tempdir().unwrap();
    let (client, peer) = (free_port(), free_port());
    let conf = sample
        .replace(
            "/var/lib/cairn/default",
            &dir.path().join("data").display().to_string(),
        )
        .replace("localhost:2379", &format!("127.0.0.1:{client}"))
        .replace("localhost:2380", &format!("127.0.0.1:{peer}"));
    let path = dir.path().join("cairn.conf.yml");
    std::fs::write(&path, conf).unwrap();
    let mut child = Command::new(workspace_bin("cairn"))
        .arg(format!("--config-file={}", path.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert_serves_health(&mut child, client);
}

#[test]
fn the_environment_sample_names_etcd_variables_cairn_reads_and_starts_a_member() {
    let sample = std::fs::read_to_string(packaging("cairn.env")).unwrap();
    let help = help();
    let mut vars = Vec::new();
    for line in sample.lines() {
        let Some((name, value)) = line.trim_start_matches('#').split_once('=') else {
            continue;
        };
        if !name.starts_with("ETCD_") || name.contains(' ') {
            continue;
        }
        assert!(
            help.contains(&format!("[env: {name}=")),
            "{name} is not a variable cairn reads"
        );
        vars.push((name.to_string(), value.to_string()));
    }
    assert!(vars.len() > 20, "{vars:?}");
    // Every variable as the sample gives it, but for the config file, the TLS files (none
    // exist here), the data directory and the ports.
    let dir = tempfile::tempdir().unwrap();
    let (client, peer) = (free_port(), free_port());
    let data = dir.path().join("data").display().to_string();
    let mut cmd = Command::new(workspace_bin("cairn"));
    for (name, value) in &vars {
        if name == "ETCD_CONFIG_FILE" || name.ends_with("_FILE") {
            continue;
        }
        let value = value
            .replace("/var/lib/cairn/default", &data)
            .replace("localhost:2379", &format!("127.0.0.1:{client}"))
            .replace("localhost:2380", &format!("127.0.0.1:{peer}"))
            .replace("localhost:2381", &format!("127.0.0.1:{}", free_port()));
        cmd.env(name, value);
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert_serves_health(&mut child, client);
    // The member used the sample's data directory (rewritten), not a default one.
    assert!(Path::new(&data).join("backend.redb").exists(), "{data}");
}

/// A dpkg database in `root` that knows only the packages cairn depends on, copied from
/// this machine's, so dpkg checks the dependencies against real installed versions.
fn dpkg_root(root: &Path, depends_on: &[&str]) {
    for d in ["var/lib/dpkg/info", "var/lib/dpkg/updates", "etc"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    let status = text(&run(Command::new("dpkg-query").arg("-s").args(depends_on)));
    std::fs::write(root.join("var/lib/dpkg/status"), status).unwrap();
    std::fs::write(root.join("var/lib/dpkg/available"), "").unwrap();
}

#[test]
fn the_debian_package_builds_installs_into_a_root_and_runs() {
    let out = tempfile::tempdir().unwrap();
    let bins = workspace_bin("cairn").parent().unwrap().to_path_buf();
    // dpkg-deb's own setting: an uncompressed data.tar (xz takes most of a minute of CPU
    // on the debug binaries and changes nothing dpkg does with them).
    let built = run(Command::new(packaging("build-deb"))
        .arg(out.path())
        .env("CAIRN_BIN_DIR", &bins)
        .env("DPKG_DEB_COMPRESSOR_TYPE", "none"));
    let deb = PathBuf::from(text(&built).trim());
    assert!(deb.exists(), "{deb:?}");

    let info = text(&run(Command::new("dpkg-deb").arg("-I").arg(&deb)));
    for field in [
        " Package: cairn\n",
        " Architecture: ",
        " Section: database\n",
    ] {
        assert!(info.contains(field), "{field:?} missing:\n{info}");
    }
    let depends = info
        .lines()
        .find_map(|l| l.strip_prefix(" Depends: "))
        .unwrap();
    let mut names: Vec<&str> = depends
        .split(", ")
        .map(|d| d.split(' ').next().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["libc6", "libgcc-s1", "systemd"], "{depends}");
    for script in ["postinst", "prerm", "postrm", "conffiles"] {
        assert!(
            info.contains(&format!(" {script}")),
            "{script} missing:\n{info}"
        );
    }

    let contents = text(&run(Command::new("dpkg-deb").arg("-c").arg(&deb)));
    for (path, mode) in [
        ("./usr/bin/cairn", "-rwxr-xr-x root/root"),
        ("./usr/bin/cairnctl", "-rwxr-xr-x root/root"),
        (
            "./usr/lib/systemd/system/cairn.service",
            "-rw-r--r-- root/root",
        ),
        ("./usr/lib/sysusers.d/cairn.conf", "-rw-r--r-- root/root"),
        ("./usr/lib/tmpfiles.d/cairn.conf", "-rw-r--r-- root/root"),
        ("./etc/default/cairn", "-rw-r--r-- root/root"),
        ("./etc/cairn/cairn.conf.yml", "-rw-r--r-- root/root"),
        ("./usr/share/doc/cairn/copyright", "-rw-r--r-- root/root"),
    ] {
        assert!(
            contents
                .lines()
                .any(|l| l.starts_with(mode) && l.ends_with(&format!(" {path}"))),
            "{path} ({mode}) missing:\n{contents}"
        );
    }

    // dpkg -i into a directory tree: the maintainer scripts run outside a chroot with
    // DPKG_ROOT set, and create the user and the data directory inside the tree.
    let root = tempfile::tempdir().unwrap();
    dpkg_root(root.path(), &["libc6", "libgcc-s1", "systemd"]);
    let dpkg = |args: &[&str]| {
        run(Command::new("dpkg")
            .arg(format!("--root={}", root.path().display()))
            .args(["--force-script-chrootless", "--log=/dev/null"])
            .args(args))
    };
    dpkg(&["-i", deb.to_str().unwrap()]);
    let status = text(&dpkg(&["-s", "cairn"]));
    assert!(status.contains("Status: install ok installed"), "{status}");
    let passwd = std::fs::read_to_string(root.path().join("etc/passwd")).unwrap();
    let user = passwd
        .lines()
        .find(|l| l.starts_with("cairn:"))
        .unwrap_or_else(|| panic!("no cairn user:\n{passwd}"));
    let uid: u32 = user.split(':').nth(2).unwrap().parse().unwrap();
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let data = std::fs::metadata(root.path().join("var/lib/cairn")).unwrap();
    assert_eq!(data.uid(), uid);
    assert_eq!(data.permissions().mode() & 0o777, 0o700);

    let version = text(&run(
        Command::new(root.path().join("usr/bin/cairn")).arg("--version")
    ));
    let built = text(&run(Command::new(workspace_bin("cairn")).arg("--version")));
    assert!(version.starts_with("cairn "), "{version}");
    assert_eq!(version, built);
    let ctl = text(&run(
        Command::new(root.path().join("usr/bin/cairnctl")).arg("version")
    ));
    assert!(ctl.starts_with("etcdctl version: 3.5"), "{ctl}");

    // Purging removes the files but keeps the data directory.
    dpkg(&["-P", "cairn"]);
    assert!(!root.path().join("usr/bin/cairn").exists());
    assert!(!root.path().join("etc/default/cairn").exists());
    assert!(root.path().join("var/lib/cairn").exists());
}

/// Waits (at most 30 s) until the member `child` serves `/health` on `client` as healthy,
/// then stops it.
fn assert_serves_health(child: &mut std::process::Child, client: u16) {
    let served = wait_until(Duration::from_secs(30), "the member to serve", || {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("cairn exited: {status}");
        }
        std::net::TcpStream::connect(("127.0.0.1", client))
            .map(|_| http_get(client, "/health"))
            .map_err(|e| e.to_string())
    });
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        served,
        (200, r#"{"health":"true","reason":""}"#.to_string())
    );
}
