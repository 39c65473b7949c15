//! Python's etcd3 client (PyPI `etcd3`, over gRPC), installed by `scripts/setup` in its own
//! environment under `.tools/py`, running the fixed script `tests/py/etcd3_script.py`; and
//! Python's etcd3gw (PyPI `etcd3gw`, over the JSON gateway) running `tests/py/etcd3gw_script.py`.

use std::process::Command;

use crate::{repo_root, Run};

/// Runs the etcd3 script against `host:port`, with `extra` options (TLS files, user and
/// password) as the script takes them.
pub fn etcd3_script(host: &str, port: u16, extra: &[&str]) -> Run {
    python_script("etcd3_script.py", host, port, extra)
}

/// Runs the etcd3gw script (Python's client over the JSON gateway,
/// `tests/py/etcd3gw_script.py`) against `host:port`.
pub fn etcd3gw_script(host: &str, port: u16) -> Run {
    python_script("etcd3gw_script.py", host, port, &[])
}

/// Runs `tests/py/<script>` with the project's Python environment (`.tools/py`) and the
/// arguments `host port extra...`.
fn python_script(script: &str, host: &str, port: u16, extra: &[&str]) -> Run {
    let root = repo_root();
    let python = root.join(".tools/py/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/setup",
        python.display()
    );
    Command::new(python)
        .arg(root.join("tests/py").join(script))
        .arg(host)
        .arg(port.to_string())
        .args(extra)
        .output()
        .unwrap()
        .into()
}
