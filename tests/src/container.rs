//! A throwaway container with a real systemd as its PID 1, for testing cairn's unit and
//! package under the service manager they are written for, on a machine where systemd is
//! not PID 1 (a CI runner, a sandbox) and without changing that machine.
//!
//! [`SystemdContainer::boot`] starts `/lib/systemd/systemd` as the first process of new
//! PID, mount, UTS, IPC, network and cgroup namespaces (`unshare`), on this machine's own
//! root seen through an overlay whose writable layer is a tmpfs (`container_boot.sh` says
//! how each part is set up and why). Commands run inside with `nsenter`
//! ([`SystemdContainer::run`]). Dropping the container kills its PID 1, which ends every
//! process of its PID namespace; the namespaces and their mounts go with them, and the
//! cgroup made for it is removed. Nothing is cached between runs: booting takes about a
//! second.
//!
//! Needs root, `unshare`/`nsenter`/`setpriv` (util-linux), `systemd` installed, and a
//! writable cgroup2 hierarchy (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified` beside
//! cgroup v1).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::wait::wait_until;
use crate::Run;

/// The script that the container's first process runs to set up its root and exec systemd.
const BOOT: &str = include_str!("container_boot.sh");

/// The `PATH` of every command run in the container.
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Where the container sees [`SystemdContainer::share`].
pub const SHARE_INSIDE: &str = "/srv/cairn-test";

/// A running container whose PID 1 is systemd; torn down when dropped.
pub struct SystemdContainer {
    /// `unshare`, the parent of the container's PID 1 (in this machine's PID namespace).
    unshare: Child,
    /// The container's PID 1 as this machine numbers it.
    pid1: u32,
    /// The cgroup made for the container (its cgroup namespace's root).
    cgroup: PathBuf,
    /// A tmpfs is mounted on it inside the container's mount namespace only.
    state: tempfile::TempDir,
    /// Shared with the container at [`SHARE_INSIDE`].
    share: tempfile::TempDir,
    /// `unshare`'s and the boot script's stderr.
    log: PathBuf,
}

impl SystemdContainer {
    /// Boots a container and waits (at most 60 s) until systemd has finished starting its
    /// units; fails the test if any of them failed.
    pub fn boot() -> SystemdContainer {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let home = cgroup2_home();
        remove_stale_cgroups(&home);
        let cgroup = home.join(format!(
            "cairn-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir(&cgroup)
            .unwrap_or_else(|e| panic!("cannot make the cgroup {}: {e}", cgroup.display()));
        let state = tempfile::tempdir().unwrap();
        let share = tempfile::tempdir().unwrap();
        let log = share.path().join(".boot.log");
        let log_file = File::create(&log).unwrap();
        // The shell joins the cgroup, then becomes setpriv (the container dies with this
        // test's thread even if it is killed before the drop), then unshare, whose forked
        // child runs the boot script as the new namespaces' PID 1.
        let spawned = Command::new("sh")
            .arg("-c")
            .arg(r#"echo $$ > "$1/cgroup.procs" && shift && exec "$@""#)
            .arg("sh")
            .arg(&cgroup)
            .args(["setpriv", "--pdeathsig", "KILL"])
            .args(["unshare", "--pid", "--fork", "--kill-child"])
            .args(["--mount", "--uts", "--ipc", "--net", "--cgroup"])
            .args(["sh", "-c", BOOT, "container_boot.sh"])
            .arg(state.path())
            .arg(share.path())
            .env_clear()
            .env("PATH", PATH)
            .env("container", "cairn-test")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn();
        let unshare = match spawned {
            Ok(child) => child,
            Err(e) => {
                let _ = std::fs::remove_dir(&cgroup);
                panic!("cannot start unshare: {e}");
            }
        };
        let mut container = SystemdContainer {
            unshare,
            pid1: 0,
            cgroup,
            state,
            share,
            log,
        };
        container.pid1 = container.wait_for_systemd();
        let state = wait_until(
            Duration::from_secs(60),
            "systemd in the container to finish booting",
            || {
                let run = container.run(&["systemctl", "is-system-running"]);
                match run.stdout.trim() {
                    s @ ("running" | "degraded") => Ok(s.to_string()),
                    _ => Err(run),
                }
            },
        );
        assert_eq!(
            state,
            "running",
            "units failed while booting:\n{}",
            container
                .run(&["systemctl", "--failed", "--no-pager"])
                .stdout
        );
        container
    }

    /// Waits until the container's PID 1 has become systemd (the boot script has set up
    /// the root and exec'd it) and returns its pid.
    fn wait_for_systemd(&mut self) -> u32 {
        let unshare = self.unshare.id();
        wait_until(
            Duration::from_secs(30),
            "the container's PID 1 to become systemd",
            || {
                if let Ok(Some(status)) = self.unshare.try_wait() {
                    panic!(
                        "the container ended while booting ({status}):\n{}",
                        std::fs::read_to_string(&self.log).unwrap_or_default()
                    );
                }
                let children =
                    std::fs::read_to_string(format!("/proc/{unshare}/task/{unshare}/children"))
                        .map_err(|e| e.to_string())?;
                let pid: u32 = children
                    .split_whitespace()
                    .next()
                    .ok_or("no child yet")?
                    .parse()
                    .map_err(|e| format!("{e}"))?;
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .map_err(|e| e.to_string())?;
                if comm.trim() == "systemd" {
                    Ok(pid)
                } else {
                    Err(format!("PID 1 is {}", comm.trim()))
                }
            },
        )
    }

    /// The container's PID 1 as this machine numbers it.
    pub fn pid1(&self) -> u32 {
        self.pid1
    }

    /// The cgroup made for the container.
    pub fn cgroup(&self) -> &Path {
        &self.cgroup
    }

    /// The overlay's directory (a tmpfs is mounted on it inside the container only).
    pub fn state_dir(&self) -> &Path {
        self.state.path()
    }

    /// A directory of this machine that the container sees at [`SHARE_INSIDE`].
    pub fn share(&self) -> &Path {
        self.share.path()
    }

    /// Runs `args` in the container (all its namespaces, its root, as root, with a clean
    /// environment) to its end.
    pub fn run(&self, args: &[&str]) -> Run {
        Command::new("nsenter")
            .args(["-t", &self.pid1.to_string(), "-a", "-r", "-w"])
            .args(["env", "-i", &format!("PATH={PATH}"), "LANG=C.UTF-8"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
            .into()
    }

    /// Runs a shell `script` in the container; what it printed, once it exited 0 (the
    /// run is shown if it did not).
    pub fn sh(&self, script: &str) -> String {
        let run = self.run(&["sh", "-c", script]);
        assert_eq!(run.code, 0, "in the container: {script}\n{run:?}");
        run.stdout
    }

    /// `journalctl -o json` with `args` in the container: one JSON object per entry.
    pub fn journal(&self, args: &[&str]) -> Vec<serde_json::Map<String, serde_json::Value>> {
        let mut all = vec!["journalctl", "--no-pager", "-o", "json"];
        all.extend_from_slice(args);
        let run = self.run(&all);
        assert_eq!(run.code, 0, "{all:?}: {run:?}");
        run.stdout
            .lines()
            .map(|l| match serde_json::from_str(l) {
                Ok(serde_json::Value::Object(entry)) => entry,
                _ => panic!("journalctl printed {l:?}"),
            })
            .collect()
    }

    /// Kills the container's PID 1 (the kernel then kills every process of its PID
    /// namespace, and its mounts go with its mount namespace), waits for everything in its
    /// cgroup to end, and removes the cgroup. Never panics: it runs in `drop`.
    fn tear_down(&mut self) {
        if self.pid1 != 0 {
            let _ = Command::new("kill")
                .args(["-KILL", &self.pid1.to_string()])
                .stderr(Stdio::null())
                .status();
        }
        // unshare reaps its child (the container's PID 1) and exits; killed only if it
        // does not, since a PID 1 it leaves unreaped lingers until this machine's init
        // reaps it.
        let deadline = Instant::now() + Duration::from_secs(30);
        while matches!(self.unshare.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.unshare.kill();
        let _ = self.unshare.wait();
        // Then cgroup.kill (Linux 5.14+) ends whatever is left in the container's cgroup,
        // even when its PID 1 never became known.
        let _ = std::fs::write(self.cgroup.join("cgroup.kill"), "1");
        let events = self.cgroup.join("cgroup.events");
        while std::fs::read_to_string(&events).is_ok_and(|e| !e.contains("populated 0"))
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Err(e) = remove_cgroup_tree(&self.cgroup) {
            eprintln!(
                "could not remove the container's cgroup {}: {e}",
                self.cgroup.display()
            );
        }
    }
}

impl Drop for SystemdContainer {
    fn drop(&mut self) {
        self.tear_down();
    }
}

/// Removes a cgroup and the cgroups systemd made under it, deepest first (a cgroup
/// directory is removed with rmdir, although it lists files).
fn remove_cgroup_tree(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            remove_cgroup_tree(&entry.path())?;
        }
    }
    std::fs::remove_dir(dir)
}

/// Removes the empty cgroups of containers whose test process is gone (killed before its
/// containers' drop ran: their processes died with it, their cgroups stayed).
fn remove_stale_cgroups(home: &Path) {
    let Ok(entries) = std::fs::read_dir(home) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("cairn-test-")
            .and_then(|rest| rest.split('-').next())
        else {
            continue;
        };
        let events = std::fs::read_to_string(entry.path().join("cgroup.events"));
        if !Path::new("/proc").join(pid).exists() && events.is_ok_and(|e| e.contains("populated 0"))
        {
            let _ = remove_cgroup_tree(&entry.path());
        }
    }
}

/// The cgroup2 directory this process is in (containers are made under it): the
/// unified hierarchy's mount point from /proc/self/mounts joined with this process's
/// path in it from /proc/self/cgroup.
fn cgroup2_home() -> PathBuf {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    let mount = mounts
        .lines()
        .map(|l| l.split(' ').collect::<Vec<_>>())
        .find(|f| f.len() > 2 && f[2] == "cgroup2")
        .map(|f| PathBuf::from(f[1]))
        .unwrap_or_else(|| panic!("no cgroup2 hierarchy is mounted:\n{mounts}"));
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let path = own
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .unwrap_or("/");
    mount.join(path.trim_start_matches('/'))
}
