//! What the long-running commands (`lock`, `elect`, `watch`) share: running a user's
//! command with the error texts of Go's `os/exec`, and waiting for SIGINT or SIGTERM.

use std::io::ErrorKind;
use std::os::unix::process::ExitStatusExt;
use std::process::Command;

use tokio::signal::unix::{signal, Signal, SignalKind};

use crate::go::gofmt;

/// A user's command that failed, as Go's `exec.Cmd.Run` reports it.
#[derive(Debug)]
pub struct ExecError {
    /// Go's error text: `exit status 3`, `signal: killed`, `fork/exec /x: ...`.
    pub msg: String,
    /// The command ran and failed: Go's `ExitError.ExitCode()` (-1 when killed by a
    /// signal); `None` when it could not start.
    pub exit_code: Option<i32>,
}

/// Go's name of a signal, as `syscall.Signal.String()` gives it on Linux.
fn signal_name(sig: i32) -> String {
    let name = match sig {
        1 => "hangup",
        2 => "interrupt",
        3 => "quit",
        4 => "illegal instruction",
        5 => "trace/breakpoint trap",
        6 => "aborted",
        7 => "bus error",
        8 => "floating point exception",
        9 => "killed",
        10 => "user defined signal 1",
        11 => "segmentation fault",
        12 => "user defined signal 2",
        13 => "broken pipe",
        14 => "alarm clock",
        15 => "terminated",
        _ => return format!("signal {sig}"),
    };
    name.to_string()
}

/// Runs `argv` with the process's stdout and stderr and `env` added to its environment;
/// with `keep_existing`, variables already in the environment keep their values (Go's
/// `cmd.Env = append(extra, os.Environ()...)`).
pub fn run(
    argv: &[String],
    env: &[(String, String)],
    keep_existing: bool,
) -> Result<(), ExecError> {
    let Some(name) = argv.first() else {
        return Ok(());
    };
    let mut cmd = Command::new(name);
    cmd.args(&argv[1..]);
    for (k, v) in env {
        if !(keep_existing && std::env::var_os(k).is_some()) {
            cmd.env(k, v);
        }
    }
    let status = match cmd.status() {
        Ok(s) => s,
        Err(e) => {
            let why = match e.kind() {
                ErrorKind::NotFound => "no such file or directory".to_string(),
                ErrorKind::PermissionDenied => "permission denied".to_string(),
                _ => e.to_string(),
            };
            // Go looks a bare name up in $PATH before starting anything.
            let msg = if !name.contains('/') && e.kind() != ErrorKind::Other {
                format!(
                    "exec: {}: executable file not found in $PATH",
                    gofmt::quote(name.as_bytes())
                )
            } else {
                format!("fork/exec {name}: {why}")
            };
            return Err(ExecError {
                msg,
                exit_code: None,
            });
        }
    };
    if status.success() {
        return Ok(());
    }
    if let Some(code) = status.code() {
        return Err(ExecError {
            msg: format!("exit status {code}"),
            exit_code: Some(code),
        });
    }
    let sig = status.signal().unwrap_or(0);
    let core = if status.core_dumped() {
        " (core dumped)"
    } else {
        ""
    };
    Err(ExecError {
        msg: format!("signal: {}{core}", signal_name(sig)),
        exit_code: Some(-1),
    })
}

/// Go's `%q` of a string slice: `["sh" "-c" "echo"]`.
pub fn quote_list(args: &[String]) -> String {
    let items: Vec<String> = args.iter().map(|a| gofmt::quote(a.as_bytes())).collect();
    format!("[{}]", items.join(" "))
}

/// SIGINT and SIGTERM, caught from the moment this is made (as Go's `signal.Notify`), so
/// they no longer end the process.
pub struct Interrupts {
    int: Signal,
    term: Signal,
}

impl Interrupts {
    /// Starts catching SIGINT and SIGTERM; must run inside the runtime.
    pub fn new() -> std::io::Result<Interrupts> {
        Ok(Interrupts {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
        })
    }

    /// Waits for the next SIGINT or SIGTERM.
    pub async fn recv(&mut self) {
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_exec_errors() {
        let sh = |s: &str| vec!["sh".to_string(), "-c".to_string(), s.to_string()];
        assert!(run(&sh("exit 0"), &[], false).is_ok());
        let e = run(&sh("exit 3"), &[], false).unwrap_err();
        assert_eq!((e.msg.as_str(), e.exit_code), ("exit status 3", Some(3)));
        let e = run(&sh("kill -9 $$"), &[], false).unwrap_err();
        assert_eq!((e.msg.as_str(), e.exit_code), ("signal: killed", Some(-1)));
        let e = run(&["/nonexistent/x".to_string()], &[], false).unwrap_err();
        assert_eq!(e.msg, "fork/exec /nonexistent/x: no such file or directory");
        let e = run(&["no-such-cmd-here".to_string()], &[], false).unwrap_err();
        assert_eq!(
            e.msg,
            "exec: \"no-such-cmd-here\": executable file not found in $PATH"
        );
        assert_eq!(quote_list(&sh("a\"b")), "[\"sh\" \"-c\" \"a\\\"b\"]");
    }
}
