//! Talking to systemd without libsystemd: readiness notifications (`sd_notify`'s datagram
//! protocol on `$NOTIFY_SOCKET`) and journald's native protocol (datagrams on
//! `/run/systemd/journal/socket`).
//!
//! Both are plain Unix datagram sockets; a message is `KEY=value` lines. A name starting
//! with `@` is in the abstract namespace (Linux), as systemd hands it out. Uses nothing else
//! in the crate.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::Path;
use std::time::Duration;

/// Where journald listens for native-protocol datagrams.
pub const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

/// For tests only: a journald socket path used instead of [`JOURNAL_SOCKET`]. Whoever sets
/// a process's environment can already redirect its output, so this opens nothing new.
pub const JOURNAL_SOCKET_ENV: &str = "CAIRN_TEST_JOURNAL_SOCKET";

/// The largest datagram sent to journald. journald reads up to its socket's receive buffer
/// (8 MiB by default) but the kernel refuses datagrams above the sender's `SO_SNDBUF`
/// (208 KiB by default); an entry above this is cut to it (see [`journal_entry`]).
const JOURNAL_MAX_DATAGRAM: usize = 128 * 1024;

/// The socket address for a systemd socket name: a path, or `@name` in the abstract
/// namespace.
fn address(name: &str) -> std::io::Result<SocketAddr> {
    if let Some(abstract_name) = name.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        SocketAddr::from_abstract_name(abstract_name.as_bytes())
    } else {
        SocketAddr::from_pathname(name)
    }
}

/// Sends `state` (`READY=1`, `STOPPING=1`, ...) to the service manager when the process
/// runs under one (`$NOTIFY_SOCKET` set), as `sd_notify` does. Errors are logged and
/// otherwise ignored: a manager that does not listen must not stop the member.
pub fn notify(state: &str) {
    let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let socket = socket.to_string_lossy().into_owned();
    if let Err(e) = send_notify(&socket, state) {
        tracing::warn!(socket = %socket, error = %e, "failed to notify systemd");
    }
}

fn send_notify(socket: &str, state: &str) -> std::io::Result<()> {
    let addr = address(socket)?;
    let sock = UnixDatagram::unbound()?;
    sock.send_to_addr(state.as_bytes(), &addr)?;
    Ok(())
}

/// How often to send `WATCHDOG=1`: half of `$WATCHDOG_USEC`, when it is set for this
/// process (`$WATCHDOG_PID`, when set, names it), as `sd_watchdog_enabled` reads them.
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if usec == 0 {
        return None;
    }
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.parse::<u32>().ok()? != std::process::id() {
            return None;
        }
    }
    Some(Duration::from_micros(usec / 2).max(Duration::from_millis(1)))
}

/// A connected journald socket.
pub struct Journal {
    sock: UnixDatagram,
    /// `SYSLOG_IDENTIFIER`: the program's file name, as journald shows it.
    identifier: String,
}

/// Why journald cannot be written to, worded as etcd words it.
#[derive(Debug, thiserror::Error)]
#[error("can't find journal (dial unixgram {path}: connect: {reason})")]
pub struct JournalError {
    path: String,
    reason: String,
}

impl Journal {
    /// Connects to journald's socket ([`JOURNAL_SOCKET_ENV`] overrides its path for tests).
    pub fn connect() -> Result<Journal, JournalError> {
        let path = std::env::var(JOURNAL_SOCKET_ENV).unwrap_or_else(|_| JOURNAL_SOCKET.into());
        let connect = || -> std::io::Result<UnixDatagram> {
            let sock = UnixDatagram::unbound()?;
            sock.connect(Path::new(&path))?;
            Ok(sock)
        };
        let sock = connect().map_err(|e| JournalError {
            path: path.clone(),
            reason: io_reason(&e),
        })?;
        let identifier = std::env::args_os()
            .next()
            .and_then(|a| {
                Path::new(&a)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
            })
            .unwrap_or_else(|| "cairn".into());
        Ok(Journal { sock, identifier })
    }

    /// Sends one log entry; `Err` when journald did not take it (the caller falls back to
    /// stderr, as etcd does).
    pub fn send(&self, message: &str, priority: u8, package: &str) -> std::io::Result<()> {
        let entry = journal_entry(message, priority, package, &self.identifier);
        self.sock.send(&entry).map(|_| ())
    }
}

/// The text of an I/O error without Rust's " (os error N)" suffix, as Go prints it.
fn io_reason(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error") {
        Some(i) => text[..i].to_lowercase(),
        None => text,
    }
}

/// Appends one field in journald's native format: `KEY=value\n`, or, for a value holding a
/// newline, `KEY\n`, its length as 64-bit little-endian, the value and `\n`.
fn put_field(out: &mut Vec<u8>, key: &str, value: &[u8]) {
    out.extend_from_slice(key.as_bytes());
    if value.contains(&b'\n') {
        out.push(b'\n');
        out.extend_from_slice(&(value.len() as u64).to_le_bytes());
    } else {
        out.push(b'=');
    }
    out.extend_from_slice(value);
    out.push(b'\n');
}

/// One journal entry as etcd's journal writer makes it: `MESSAGE` is the whole JSON log
/// line, `PRIORITY` its level as a syslog priority, `PACKAGE` the directory of its caller
/// and `SYSLOG_IDENTIFIER` the program's name. A message that would not fit in one
/// datagram is cut (at a character boundary) and the entry says so in `CAIRN_TRUNCATED`.
pub fn journal_entry(message: &str, priority: u8, package: &str, identifier: &str) -> Vec<u8> {
    let overhead = 128 + package.len() + identifier.len();
    let room = JOURNAL_MAX_DATAGRAM.saturating_sub(overhead);
    let (message, cut) = if message.len() > room {
        let mut end = room;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        (&message[..end], Some(message.len()))
    } else {
        (message, None)
    };
    let mut out = Vec::with_capacity(message.len() + overhead);
    put_field(&mut out, "MESSAGE", message.as_bytes());
    put_field(&mut out, "PRIORITY", priority.to_string().as_bytes());
    put_field(&mut out, "PACKAGE", package.as_bytes());
    put_field(&mut out, "SYSLOG_IDENTIFIER", identifier.as_bytes());
    if let Some(len) = cut {
        put_field(&mut out, "CAIRN_TRUNCATED", len.to_string().as_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn fields_with_newlines_are_length_prefixed() {
        let mut out = Vec::new();
        put_field(&mut out, "A", b"x=y");
        put_field(&mut out, "B", b"1\n2");
        let mut want = b"A=x=y\nB\n".to_vec();
        want.extend_from_slice(&3u64.to_le_bytes());
        want.extend_from_slice(b"1\n2\n");
        assert_eq!(out, want);
    }

    #[test]
    fn an_entry_too_large_for_a_datagram_is_cut_and_says_so() {
        let big = "é".repeat(JOURNAL_MAX_DATAGRAM);
        let entry = journal_entry(&big, 6, "cairn-server/run", "cairn");
        assert!(entry.len() <= JOURNAL_MAX_DATAGRAM);
        let text = String::from_utf8(entry).unwrap();
        assert!(text.ends_with(&format!("CAIRN_TRUNCATED={}\n", big.len())));
        assert!(text.contains("\nPRIORITY=6\nPACKAGE=cairn-server/run\nSYSLOG_IDENTIFIER=cairn\n"));
    }

    #[test]
    fn notifies_a_datagram_socket_by_path_and_by_abstract_name() {
        let dir = std::env::temp_dir().join(format!("cairn-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        send_notify(path.to_str().unwrap(), "READY=1").unwrap();
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
        std::fs::remove_dir_all(&dir).unwrap();

        use std::os::linux::net::SocketAddrExt;
        let name = format!("cairn-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = UnixDatagram::bind_addr(&addr).unwrap();
        send_notify(&format!("@{name}"), "STOPPING=1").unwrap();
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1");
    }
}
