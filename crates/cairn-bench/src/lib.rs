//! cairn-bench: a closed-loop load generator for etcd v3 servers over gRPC, and
//! etcdctl 3.5's `check perf` and `check datascale`.
//!
//! `--clients` concurrent clients, spread over `--conns` HTTP/2 connections, each keep one
//! request in flight until `--total` requests are made or `--max-duration` passes. The
//! report gives what etcd's `benchmark` tool gives (total time, slowest, fastest, average,
//! stddev, requests/sec, a histogram and latency percentiles) and a one-line JSON form.
//! cairnctl offers it as `cairnctl bench put|range|txn`, `cairnctl check perf` and
//! `cairnctl check datascale`; the
//! library speaks only the public etcd v3 API, so it measures real etcd as well as cairn.
//!
//! Depends on `cairn-client` and `cairn-proto` only; nothing in the server.
//!
//! # Layout
//!
//! - [`args`]: the clap command line ([`Args`], one subcommand per workload).
//! - `load`: connections, the closed loop, and the request of each workload.
//! - [`report`]: latency statistics and their text and JSON forms.
//! - `streams`: the watch and lease keep-alive workloads.
//! - `gateway`: `gw-put`, JSON puts through the `/v3/` gateway over HTTP/1.1.
//! - [`check`]: the steps of `check perf` (paced writes, pass/fail verdict) and
//!   `check datascale` (counted writes, memory growth).
//! - [`memory`]: a member's `process_resident_memory_bytes`, read from `/metrics`.

pub mod args;
pub mod check;
mod gateway;
mod load;
pub mod memory;
pub mod report;
mod streams;

pub use args::{Args, Consistency, Workload};
pub use check::{datascale_load, perf_load, DatascaleLoad, PerfLoad};
pub use report::Report;

use clap::Parser;

/// Errors that stop a benchmark before it reports.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The arguments cannot make a run.
    #[error("{0}")]
    Args(String),
    /// Connecting or authenticating failed.
    #[error("{0}")]
    Connect(Box<cairn_client::Error>),
    /// A request outside the measured loop failed.
    #[error("{}", .0.message())]
    Rpc(Box<tonic::Status>),
    /// A request outside the measured loop took too long.
    #[error("timed out {0}")]
    Timeout(String),
    /// Writing the keys a range benchmark reads failed.
    #[error("writing the keys to read failed: {0}")]
    Preload(String),
    /// `check perf` or `check datascale` found keys under its prefix (cairnctl words it
    /// as each etcdctl command does).
    #[error("prefix {0:?} has keys")]
    PrefixHasKeys(String),
    /// The runtime could not be built.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl From<cairn_client::Error> for Error {
    fn from(e: cairn_client::Error) -> Error {
        Error::Connect(Box::new(e))
    }
}

impl From<tonic::Status> for Error {
    fn from(s: tonic::Status) -> Error {
        Error::Rpc(Box::new(s))
    }
}

/// Runs the benchmark `args` describe and returns its report; prints nothing.
pub async fn run(args: Args) -> Result<Report, Error> {
    load::run(&args).await
}

/// `cairnctl bench ...`: parses `argv` (the first item is the program name shown in
/// help), runs on its own runtime, prints the report (or its JSON line) to stdout and
/// returns the exit code: 0, 1 when the run failed or had failed requests, 2 for usage.
pub fn cli_main<I, T>(argv: I) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let args = match Args::try_parse_from(argv) {
        Ok(a) => a,
        Err(e) => {
            let code = e.exit_code();
            let _ = e.print();
            return code;
        }
    };
    let json = args.json;
    // watch-hold prints its report as soon as the watches are open, before holding them.
    let printed_early = matches!(args.workload, Workload::WatchHold(_));
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(Error::from)
        .and_then(|rt| rt.block_on(run(args)));
    match result {
        Ok(report) => {
            if printed_early {
            } else if json {
                println!("{}", report.to_json());
            } else {
                print!("{report}");
            }
            i32::from(report.failed() > 0)
        }
        Err(e) => {
            eprintln!("Error: {e}");
            1
        }
    }
}
