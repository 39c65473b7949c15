//! The command line of `cairnctl bench`: connection and load flags shared by every
//! workload, then one subcommand per workload.

use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use crate::Error;

/// Closed-loop load against an etcd v3 endpoint over gRPC.
#[derive(Debug, Clone, Parser)]
#[command(name = "cairnctl bench", version)]
pub struct Args {
    /// gRPC endpoints (comma-separated); connections are spread over them.
    #[arg(
        long,
        global = true,
        env = "ETCDCTL_ENDPOINTS",
        value_delimiter = ',',
        default_value = "127.0.0.1:2379"
    )]
    pub endpoints: Vec<String>,
    /// Concurrent clients, each with one request in flight.
    #[arg(long, global = true, default_value_t = 1)]
    pub clients: usize,
    /// HTTP/2 connections the clients are spread over.
    #[arg(long, global = true, default_value_t = 1)]
    pub conns: usize,
    /// Requests to make in all.
    #[arg(long, global = true, default_value_t = 10_000)]
    pub total: u64,
    /// Longest the measured run may take (e.g. `90s`, `5m`); it stops early then.
    #[arg(long, global = true, default_value = "5m", value_parser = parse_duration)]
    pub max_duration: Duration,
    /// Longest one request may take before it counts as failed.
    #[arg(long, global = true, default_value = "30s", value_parser = parse_duration)]
    pub request_timeout: Duration,
    /// Dial timeout for each connection.
    #[arg(long, global = true, default_value = "5s", value_parser = parse_duration)]
    pub dial_timeout: Duration,
    /// `name:password` to authenticate as.
    #[arg(long, global = true)]
    pub user: Option<String>,
    /// CA bundle that verifies the servers' certificates (for `https://` endpoints).
    #[arg(long, global = true, env = "ETCDCTL_CACERT")]
    pub cacert: Option<String>,
    /// Print a one-line JSON summary instead of the text report.
    #[arg(long, global = true)]
    pub json: bool,
    /// The workload.
    #[command(subcommand)]
    pub workload: Workload,
}

/// What each request does.
#[derive(Debug, Clone, Subcommand)]
pub enum Workload {
    /// Puts keys.
    Put(PutArgs),
    /// Puts keys as JSON through the `/v3/kv/put` gateway: each client on its own
    /// HTTP/1.1 keep-alive connection (plain `http://` endpoints).
    GwPut(GwPutArgs),
    /// Ranges over keys written first (not measured).
    Range(RangeArgs),
    /// Txns that compare a key's mod revision and put it when the compare holds.
    Txn(TxnArgs),
    /// Watch delivery latency: `--watchers` watch one prefix while `--clients` writers put
    /// `--total` keys under it; each delivery's latency is from its put's start.
    Watch(WatchArgs),
    /// Opens `--watchers` watches on distinct keys over `--streams` streams, prints the
    /// JSON line when all are created, then holds them for `--hold` (to measure the
    /// server's memory per watcher meanwhile).
    WatchHold(WatchHoldArgs),
    /// Lease keep-alive throughput: `--clients` keep-alive streams renew `--leases`
    /// leases round-robin, one request in flight each, `--total` requests in all.
    LeaseKeepalive(LeaseKeepaliveArgs),
    /// Authenticate throughput: `--clients` clients log in as `--user`, one request in
    /// flight each; each request's cost is mostly the server's password hash check.
    Authenticate,
    /// New connections: each request dials a connection of its own (TCP, then TLS for an
    /// `https://` endpoint, then HTTP/2) and asks for the member's status; its latency is
    /// from the dial to that first response.
    Connect,
}

impl Workload {
    /// The workload's name in reports.
    pub fn name(&self) -> &'static str {
        match self {
            Workload::Put(_) => "put",
            Workload::GwPut(_) => "gw-put",
            Workload::Range(r) => match r.consistency {
                Consistency::L => "range-linearizable",
                Consistency::S => "range-serializable",
            },
            Workload::Txn(_) => "txn",
            Workload::Watch(_) => "watch",
            Workload::WatchHold(_) => "watch-hold",
            Workload::LeaseKeepalive(_) => "lease-keepalive",
            Workload::Authenticate => "authenticate",
            Workload::Connect => "connect",
        }
    }
}

/// Keys and values written.
#[derive(Debug, Clone, clap::Args)]
pub struct KeyArgs {
    /// Key size in bytes.
    #[arg(long, default_value_t = 8)]
    pub key_size: usize,
    /// Value size in bytes.
    #[arg(long = "val-size", default_value_t = 8)]
    pub val_size: usize,
    /// How many distinct keys requests pick from.
    #[arg(long, default_value_t = 1)]
    pub key_space_size: u64,
    /// Walk the key space in order instead of picking keys at random.
    #[arg(long)]
    pub sequential_keys: bool,
}

/// `bench put`.
#[derive(Debug, Clone, clap::Args)]
pub struct PutArgs {
    #[command(flatten)]
    pub keys: KeyArgs,
    /// Range watches to open (each on its own prefix, none matching the keys put) and
    /// hold during the run: what a put costs with many range watchers registered.
    #[arg(long, default_value_t = 0)]
    pub range_watchers: usize,
    /// Watch streams the range watches are spread over.
    #[arg(long, default_value_t = 10)]
    pub watch_streams: usize,
    /// Defragment the first endpoint during the run: the puts go on for this long before
    /// the Defragment call and for this long after it returns, then the run ends (if
    /// `--total` or `--max-duration` has not ended it first). The report adds the
    /// defragment's duration and the slowest put that overlapped it.
    #[arg(long, value_parser = parse_duration)]
    pub defrag_around: Option<Duration>,
}

/// `bench gw-put`.
#[derive(Debug, Clone, clap::Args)]
pub struct GwPutArgs {
    #[command(flatten)]
    pub keys: KeyArgs,
}

/// Read consistency of a range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Consistency {
    /// Linearizable: goes through the leader's read index.
    L,
    /// Serializable: served from the member's local state.
    S,
}

/// `bench range`.
#[derive(Debug, Clone, clap::Args)]
pub struct RangeArgs {
    /// Key size in bytes of the keys written first and read.
    #[arg(long, default_value_t = 8)]
    pub key_size: usize,
    /// Value size in bytes of the keys written first.
    #[arg(long = "val-size", default_value_t = 256)]
    pub val_size: usize,
    /// How many keys to write before the run; each request reads one of them.
    #[arg(long, default_value_t = 1000)]
    pub key_space_size: u64,
    /// Read the keys in order instead of at random.
    #[arg(long)]
    pub sequential_keys: bool,
    /// `l` (linearizable) or `s` (serializable).
    #[arg(long, value_enum, default_value = "l")]
    pub consistency: Consistency,
}

/// `bench watch`.
#[derive(Debug, Clone, clap::Args)]
pub struct WatchArgs {
    /// Watches on the prefix, spread over the connections, one stream each.
    #[arg(long, default_value_t = 100)]
    pub watchers: usize,
    /// Value size in bytes of each put (at least 8: it carries the put's start time).
    #[arg(long = "val-size", default_value_t = 64)]
    pub val_size: usize,
}

/// `bench watch-hold`.
#[derive(Debug, Clone, clap::Args)]
pub struct WatchHoldArgs {
    /// Watches to open, each on its own key.
    #[arg(long, default_value_t = 100_000)]
    pub watchers: usize,
    /// Watch streams they are spread over.
    #[arg(long, default_value_t = 100)]
    pub streams: usize,
    /// How long to keep them open after all are created.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub hold: Duration,
}

/// `bench lease-keepalive`.
#[derive(Debug, Clone, clap::Args)]
pub struct LeaseKeepaliveArgs {
    /// Leases granted first (not measured) and renewed round-robin.
    #[arg(long, default_value_t = 1000)]
    pub leases: usize,
}

/// `bench txn`.
#[derive(Debug, Clone, clap::Args)]
pub struct TxnArgs {
    #[command(flatten)]
    pub keys: KeyArgs,
    /// Instead, each request is one txn nested this deep, e.g. `43,43,42`: 43 txns of 43
    /// txns of 42 puts, all on distinct keys of `--key-size` bytes with `--val-size`
    /// values (each request the same, so every put but the first request's rewrites).
    #[arg(long, value_delimiter = ',')]
    pub nested: Vec<usize>,
}

impl Args {
    /// Checks the numbers make a run that can finish.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |m: &str| Err(Error::Args(m.to_string()));
        if self.clients == 0 {
            return bad("--clients must be at least 1");
        }
        if self.conns == 0 {
            return bad("--conns must be at least 1");
        }
        if self.endpoints.is_empty() {
            return bad("--endpoints is empty");
        }
        if self.max_duration.is_zero() {
            return bad("--max-duration must be positive");
        }
        let (key_size, space) = match &self.workload {
            Workload::Put(p) if p.range_watchers > 0 && p.watch_streams == 0 => {
                return bad("--range-watchers needs --watch-streams >= 1");
            }
            Workload::Put(p) => (p.keys.key_size, p.keys.key_space_size),
            Workload::GwPut(p) => (p.keys.key_size, p.keys.key_space_size),
            Workload::Txn(t) => (t.keys.key_size, t.keys.key_space_size),
            Workload::Range(r) => (r.key_size, r.key_space_size),
            Workload::Watch(w) if w.watchers == 0 || w.val_size < 8 => {
                return bad("watch needs --watchers >= 1 and --val-size >= 8");
            }
            Workload::WatchHold(w) if w.watchers == 0 || w.streams == 0 => {
                return bad("watch-hold needs --watchers >= 1 and --streams >= 1");
            }
            Workload::LeaseKeepalive(l) if l.leases == 0 => {
                return bad("--leases must be at least 1");
            }
            Workload::Authenticate
                if self
                    .user
                    .as_deref()
                    .and_then(|u| u.split_once(':'))
                    .is_none() =>
            {
                return bad("authenticate needs --user name:password");
            }
            Workload::Watch(_)
            | Workload::WatchHold(_)
            | Workload::LeaseKeepalive(_)
            | Workload::Authenticate
            | Workload::Connect => {
                return Ok(());
            }
        };
        if key_size == 0 {
            return bad("--key-size must be at least 1");
        }
        if space == 0 {
            return bad("--key-space-size must be at least 1");
        }
        if key_size < 8 && space > 1u64 << (8 * key_size) {
            return bad("--key-space-size has more keys than --key-size bytes can tell apart");
        }
        Ok(())
    }
}

/// Parses `90s`, `1500ms`, `2m`, `1h`, `1m30s` or a plain number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<f64>() {
        return secs_to_duration(secs, s);
    }
    let mut total = 0.0;
    let mut rest = s;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("missing unit in duration {s:?}"))?;
        let (num, tail) = rest.split_at(num_end);
        let unit_end = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_end);
        let n: f64 = num.parse().map_err(|_| format!("invalid duration {s:?}"))?;
        let scale = match unit {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(format!("unknown unit {unit:?} in duration {s:?}")),
        };
        total += n * scale;
        rest = next;
    }
    if s.is_empty() {
        return Err("empty duration".to_string());
    }
    secs_to_duration(total, s)
}

fn secs_to_duration(secs: f64, s: &str) -> Result<Duration, String> {
    Duration::try_from_secs_f64(secs).map_err(|_| format!("invalid duration {s:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let cases = [
            ("90s", 90_000),
            ("1500ms", 1500),
            ("2m", 120_000),
            ("1m30s", 90_000),
            ("1h", 3_600_000),
            ("2.5", 2500),
        ];
        for (s, ms) in cases {
            assert_eq!(parse_duration(s), Ok(Duration::from_millis(ms)), "{s}");
        }
        for bad in ["", "5x", "s", "-1"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn flags_after_the_workload() {
        let a = Args::try_parse_from([
            "bench",
            "put",
            "--clients",
            "256",
            "--conns",
            "16",
            "--val-size",
            "256",
            "--sequential-keys",
            "--key-space-size",
            "100000",
            "--json",
        ])
        .unwrap();
        assert_eq!(a.clients, 256);
        assert!(a.json);
        let Workload::Put(p) = &a.workload else {
            panic!("not put")
        };
        assert_eq!(p.keys.val_size, 256);
        assert!(p.keys.sequential_keys);
        a.validate().unwrap();
        let r = Args::try_parse_from(["bench", "range", "--consistency", "s"]).unwrap();
        assert_eq!(r.workload.name(), "range-serializable");
        let z = Args::try_parse_from(["bench", "--clients", "0", "txn"]).unwrap();
        assert!(z.validate().is_err());
        let a = Args::try_parse_from(["bench", "authenticate", "--user", "root"]).unwrap();
        assert!(a.validate().is_err(), "a password is needed to log in");
        let a = Args::try_parse_from(["bench", "authenticate", "--user", "root:pw"]).unwrap();
        a.validate().unwrap();
    }
}
