//! This process's CPU time, memory, file descriptors and start time, read from Linux's
//! `/proc` as Prometheus's `process_*` collector reads them. Read only when `/metrics` is
//! scraped: a handful of small files, no per-request cost.

use std::path::Path;

/// Kernel clock ticks per second in `/proc/<pid>/stat` (`USER_HZ`): fixed at 100 by
/// Linux's user ABI on every architecture cairn builds for.
const TICKS_PER_SECOND: f64 = 100.0;

/// What could be read; `None` where a file was missing or not as expected.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct ProcessStats {
    pub cpu_seconds: Option<f64>,
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
    pub resident_bytes: Option<u64>,
    pub virtual_bytes: Option<u64>,
    /// The address-space limit; `u64::MAX` when unlimited (as Go's collector reports it).
    pub virtual_max_bytes: Option<u64>,
    pub start_time_seconds: Option<f64>,
}

/// Reads this process's figures.
pub fn read() -> ProcessStats {
    let proc = Path::new("/proc");
    let stat = std::fs::read_to_string(proc.join("self/stat")).unwrap_or_default();
    let status = std::fs::read_to_string(proc.join("self/status")).unwrap_or_default();
    let limits = std::fs::read_to_string(proc.join("self/limits")).unwrap_or_default();
    let system = std::fs::read_to_string(proc.join("stat")).unwrap_or_default();
    let fields = stat_fields(&stat);
    let tick = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    // Fields after the command, counted from the state (field 3 of proc(5)) as 0.
    let cpu_seconds = match (tick(11), tick(12)) {
        (Some(user), Some(system)) => Some((user + system) as f64 / TICKS_PER_SECOND),
        _ => None,
    };
    let boot_time = system
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse::<u64>().ok());
    let start_time_seconds = match (boot_time, tick(19)) {
        (Some(boot), Some(start)) => Some(boot as f64 + start as f64 / TICKS_PER_SECOND),
        _ => None,
    };
    let open_fds = std::fs::read_dir(proc.join("self/fd"))
        .ok()
        .map(|d| d.count() as u64);
    ProcessStats {
        cpu_seconds,
        open_fds,
        max_fds: soft_limit(&limits, "Max open files"),
        resident_bytes: status_kib(&status, "VmRSS:"),
        virtual_bytes: status_kib(&status, "VmSize:"),
        virtual_max_bytes: soft_limit(&limits, "Max address space"),
        start_time_seconds,
    }
}

/// The fields of `/proc/<pid>/stat` after the command name, which is in parentheses and
/// may itself hold spaces and parentheses.
fn stat_fields(stat: &str) -> Vec<&str> {
    match stat.rfind(')') {
        Some(end) => stat[end + 1..].split_whitespace().collect(),
        None => Vec::new(),
    }
}

/// A `Name:   1234 kB` line of `/proc/<pid>/status`, in bytes.
fn status_kib(status: &str, name: &str) -> Option<u64> {
    let line = status.lines().find_map(|l| l.strip_prefix(name))?;
    let kib = line.split_whitespace().next()?.parse::<u64>().ok()?;
    Some(kib * 1024)
}

/// The soft limit of a `/proc/<pid>/limits` row; `unlimited` reads as `u64::MAX`.
fn soft_limit(limits: &str, name: &str) -> Option<u64> {
    let rest = limits.lines().find_map(|l| l.strip_prefix(name))?;
    match rest.split_whitespace().next()? {
        "unlimited" => Some(u64::MAX),
        v => v.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_with_spaces_and_parentheses_does_not_shift_the_fields() {
        let stat =
            "42 (a) b (c) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 1234 1000 200";
        let f = stat_fields(stat);
        assert_eq!(f[0], "S");
        assert_eq!(f[11], "250");
        assert_eq!(f[12], "50");
        assert_eq!(f[19], "1234");
    }

    #[test]
    fn limits_rows_read_as_their_soft_limit() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 524288               files\n\
                      Max address space         unlimited            unlimited            bytes\n";
        assert_eq!(soft_limit(limits, "Max open files"), Some(1024));
        assert_eq!(soft_limit(limits, "Max address space"), Some(u64::MAX));
        assert_eq!(soft_limit(limits, "Max processes"), None);
    }

    #[test]
    fn this_process_reads_as_running_with_memory_and_files() {
        let s = read();
        assert!(s.resident_bytes.is_some_and(|b| b > 0));
        assert!(s
            .virtual_bytes
            .is_some_and(|b| b >= s.resident_bytes.unwrap_or(0)));
        assert!(s.open_fds.is_some_and(|n| n >= 3));
        assert!(s.max_fds.is_some_and(|n| n >= s.open_fds.unwrap_or(0)));
        assert!(s.start_time_seconds.is_some_and(|t| t > 1.0e9));
        assert!(s.cpu_seconds.is_some());
    }
}
