//! `cairn --help` in etcd's shape: the flags under etcd 3.5's headings, in etcd's order,
//! each flag's text on the lines below it.

use clap::{Arg, Command};

/// etcd 3.5's `--help` groups, in its order, each with its flags in its order. Flags etcd
/// lists nowhere (later 3.5 releases' and cairn's own experimental ones) go under
/// [`LATER`]; `--config-file` stays above the groups, as in etcd's usage text.
const GROUPS: &[(&str, &[&str])] = &[
    (
        "Member",
        &[
            "name",
            "data-dir",
            "wal-dir",
            "snapshot-count",
            "heartbeat-interval",
            "election-timeout",
            "initial-election-tick-advance",
            "listen-peer-urls",
            "listen-client-urls",
            "max-snapshots",
            "max-wals",
            "quota-backend-bytes",
            "backend-bbolt-freelist-type",
            "backend-batch-interval",
            "backend-batch-limit",
            "max-txn-ops",
            "max-request-bytes",
            // etcd 3.4's, and later 3.5 releases' (3.5.1 lacks it).
            "max-concurrent-streams",
            "grpc-keepalive-min-time",
            "grpc-keepalive-interval",
            "grpc-keepalive-timeout",
            "socket-reuse-port",
            "socket-reuse-address",
        ],
    ),
    (
        "Clustering",
        &[
            "initial-advertise-peer-urls",
            "initial-cluster",
            "initial-cluster-state",
            "initial-cluster-token",
            "advertise-client-urls",
            "discovery",
            "discovery-fallback",
            "discovery-proxy",
            "discovery-srv",
            "discovery-srv-name",
            "strict-reconfig-check",
            "pre-vote",
            "auto-compaction-retention",
            "auto-compaction-mode",
            "enable-v2",
            "v2-deprecation",
        ],
    ),
    (
        "Security",
        &[
            "cert-file",
            "key-file",
            "client-cert-auth",
            "client-crl-file",
            "client-cert-allowed-hostname",
            "trusted-ca-file",
            "auto-tls",
            "peer-cert-file",
            "peer-key-file",
            "peer-client-cert-auth",
            "peer-trusted-ca-file",
            "peer-cert-allowed-cn",
            "peer-cert-allowed-hostname",
            "peer-auto-tls",
            "self-signed-cert-validity",
            "peer-crl-file",
            "cipher-suites",
            // Later 3.5 releases' (3.5.1 lacks them).
            "tls-min-version",
            "tls-max-version",
            "cors",
            "host-whitelist",
        ],
    ),
    ("Auth", &["auth-token", "bcrypt-cost", "auth-token-ttl"]),
    (
        "Profiling and Monitoring",
        &["enable-pprof", "metrics", "listen-metrics-urls"],
    ),
    (
        "Logging",
        &[
            "logger",
            "log-outputs",
            "log-level",
            "enable-log-rotation",
            "log-rotation-config-json",
        ],
    ),
    (
        "Experimental distributed tracing",
        &[
            "experimental-enable-distributed-tracing",
            "experimental-distributed-tracing-address",
            "experimental-distributed-tracing-service-name",
            "experimental-distributed-tracing-instance-id",
        ],
    ),
    (
        "v2 Proxy (to be deprecated in v3.6)",
        &[
            "proxy",
            "proxy-failure-wait",
            "proxy-refresh-interval",
            "proxy-dial-timeout",
            "proxy-write-timeout",
            "proxy-read-timeout",
        ],
    ),
    (
        LATER,
        &[
            "experimental-initial-corrupt-check",
            "experimental-corrupt-check-time",
            "experimental-enable-v2v3",
            "experimental-enable-lease-checkpoint",
            "experimental-compaction-batch-limit",
            "experimental-peer-skip-client-san-verification",
            "experimental-watch-progress-notify-interval",
            "experimental-warning-apply-duration",
            "experimental-txn-mode-write-with-shared-buffer",
            "experimental-bootstrap-defrag-threshold-megabytes",
        ],
    ),
    ("Unsafe feature", &["force-new-cluster", "unsafe-no-fsync"]),
];

/// The heading of etcd's experimental flags, where flags etcd 3.5.1 does not list go too.
const LATER: &str = "Experimental feature";

/// Flags that stay above the groups.
const UNGROUPED: &[&str] = &["config-file"];

/// `cmd` with every flag under its etcd heading, in etcd's order. clap prints headings in
/// the order their first flag was added, so the flags are added again in that order to a
/// command with `cmd`'s text and settings.
pub(super) fn grouped(cmd: Command) -> Command {
    let mut args: Vec<(usize, Arg)> = cmd
        .get_arguments()
        .filter(|a| !matches!(a.get_id().as_str(), "help" | "version"))
        .map(|a| match a.get_long() {
            Some(long) if !UNGROUPED.contains(&long) => {
                let (heading, order) = place(long);
                let arg = a.clone().help_heading(heading).display_order(order + 1);
                (order + 1, arg)
            }
            _ => (0, a.clone().display_order(0)),
        })
        .collect();
    args.sort_by_key(|(order, _)| *order);
    let mut fresh = Command::new("cairn")
        .version(env!("CARGO_PKG_VERSION"))
        .disable_help_subcommand(true)
        .args_override_self(true)
        .next_line_help(true)
        .args(args.into_iter().map(|(_, a)| a));
    if let Some(about) = cmd.get_about() {
        fresh = fresh.about(about.clone());
    }
    fresh
}

/// The heading `long` goes under, and its place in the whole list.
fn place(long: &str) -> (&'static str, usize) {
    let mut order = 0;
    for (heading, flags) in GROUPS {
        if let Some(i) = flags.iter().position(|f| *f == long) {
            return (heading, order + i);
        }
        order += flags.len();
    }
    // Last, after the unsafe flags: clap prints each heading once, where its first flag
    // falls, so these still show under the experimental heading.
    (LATER, order)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_flag_has_one_place() {
        let mut seen = std::collections::HashSet::new();
        for (_, flags) in GROUPS {
            for f in *flags {
                assert!(seen.insert(*f), "--{f} is listed twice");
            }
        }
        assert_eq!(place("wal-dir"), ("Member", 2));
        assert_eq!(place("force-new-cluster").0, "Unsafe feature");
        assert_eq!(place("experimental-no-such-flag").0, LATER);
    }
}
