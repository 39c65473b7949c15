//! `check perf` and `check datascale`: etcdctl 3.5.1's paced-write test and memory test,
//! made of [`cairn_bench::check`]'s steps and printed as etcdctl prints them.
//!
//! Both, as in etcdctl: an unknown `--load` fails (exit 4) before anything is dialled; the
//! load's number of clients each get their own connections (to all of `--endpoints`);
//! keys found under `--prefix` refuse the run (exit 3, each command with its own
//! wording); a progress line ([`crate::output::progress`]) runs during the load;
//! afterwards the prefix is deleted, compacted with `--auto-compact` and every endpoint
//! defragmented with `--auto-defrag`, each step printed.
//!
//! `check perf` prints its verdict lines and exits 1 after `FAIL`. `check datascale`
//! reads `process_resident_memory_bytes` from the first endpoint's `/metrics` before and
//! after its puts ([`cairn_bench::memory`]; other endpoints only take requests): a fetch
//! that fails prints why and `FAIL: Could not read ...`, exit 1; failed puts print
//! `FAIL: too many errors` and each error, exit 1; else the memory growth, exit 0.

use std::time::Duration;

use cairn_bench::check::{self, CleanUp};
use cairn_bench::Error as BenchError;
use cairn_client::Client;

use crate::global::{CtlError, Ctx, ExitCode};
use crate::go::flags::{Kind, Spec};
use crate::go::gofmt;
use crate::output::printer;
use crate::output::progress::Progress;

/// `check perf`'s flags.
pub const PERF_FLAGS: &[Spec] = &[
    Spec::new("auto-compact", Kind::Bool, "false", "Compact storage with last revision after test is finished."),
    Spec::new("auto-defrag", Kind::Bool, "false", "Defragment storage after test is finished."),
    Spec::new("load", Kind::Str, "s", "The performance check's workload model. Accepted workloads: s(small), m(medium), l(large), xl(xLarge)"),
    Spec::new("prefix", Kind::Str, "/etcdctl-check-perf/", "The prefix for writing the performance check's keys."),
];

/// `check datascale`'s flags.
pub const DATASCALE_FLAGS: &[Spec] = &[
    Spec::new("auto-compact", Kind::Bool, "false", "Compact storage with last revision after test is finished."),
    Spec::new("auto-defrag", Kind::Bool, "false", "Defragment storage after test is finished."),
    Spec::new("load", Kind::Str, "s", "The datascale check's workload model. Accepted workloads: s(small), m(medium), l(large), xl(xLarge)"),
    Spec::new("prefix", Kind::Str, "/etcdctl-check-datascale/", "The prefix for writing the datascale check's keys."),
];

/// `check datascale`'s long help.
pub const DATASCALE_LONG: &str = "If no endpoint is provided, localhost will be used. If multiple endpoints are provided, first endpoint will be used.";

/// Prints `line` and a newline on stdout.
fn print_line(line: &str) {
    printer::out(format!("{line}\n").as_bytes());
}

/// The unknown-load refusal both commands share.
fn unknown_load(ctx: &Ctx) -> CtlError {
    CtlError::new(
        ExitCode::BadFeature,
        format!("unknown load option {}", ctx.flags.str("load")),
    )
}

/// One client per load client, each over all the endpoints on connections of its own;
/// the first is the command's client.
fn clients(ctx: &mut Ctx, n: usize) -> Result<Vec<Client>, CtlError> {
    let mut conns = Vec::with_capacity(n);
    conns.push(ctx.client()?);
    for _ in 1..n {
        conns.push(ctx.another_client()?);
    }
    Ok(conns)
}

/// What `--auto-compact` and `--auto-defrag` ask for, with a client per endpoint to
/// defragment.
fn clean_up_plan(ctx: &mut Ctx, delete_timeout: Option<Duration>) -> Result<CleanUp, CtlError> {
    let mut defrag = Vec::new();
    if ctx.flags.bool("auto-defrag") {
        for ep in ctx.endpoints() {
            let c = ctx.client_for(&ep)?;
            defrag.push((ep, c));
        }
    }
    Ok(CleanUp {
        delete_timeout,
        auto_compact: ctx.flags.bool("auto-compact"),
        defrag,
    })
}

/// etcdctl's error for a step that failed; `has_keys` words the prefix refusal.
fn step_error(ctx: &Ctx, e: BenchError, has_keys: impl Fn(&str) -> String) -> CtlError {
    match e {
        BenchError::PrefixHasKeys(p) => CtlError::new(ExitCode::InvalidInput, has_keys(&p)),
        BenchError::Rpc(status)
            if status.code() == tonic::Code::DeadlineExceeded
                && status.message() == "context deadline exceeded" =>
        {
            CtlError::error(status.message())
        }
        BenchError::Rpc(status) => ctx.status_error(&status),
        e => CtlError::error(e.to_string()),
    }
}

/// Deletes the prefix and runs the clean-up steps, printing each as it goes.
fn clean_up(ctx: &mut Ctx, first: &Client, prefix: &str, plan: CleanUp) -> Result<(), CtlError> {
    let quote = |ep: &str| gofmt::quote(ep.as_bytes());
    let done = ctx.block_on(check::clean_up(first, prefix, plan, quote, |l| {
        print_line(&l)
    }))?;
    done.map_err(|e| step_error(ctx, e, |p| p.to_string()))
}

/// `check perf [options]`.
pub fn perf(ctx: &mut Ctx, _args: &[String]) -> Result<(), CtlError> {
    let Some(load) = cairn_bench::perf_load(ctx.flags.str("load")) else {
        return Err(unknown_load(ctx));
    };
    let conns = clients(ctx, load.clients)?;
    let Some(first) = conns.first().cloned() else {
        return Err(CtlError::error("no endpoints"));
    };
    let prefix = ctx.flags.str("prefix").to_string();
    let perf_has_keys = |p: &str| {
        format!(
            "prefix {} has keys. Delete with 'etcdctl del --prefix {p}' first",
            gofmt::quote(p.as_bytes())
        )
    };
    let empty = ctx.block_on(check::ensure_prefix_empty(
        &first,
        &prefix,
        Some(load.duration),
    ))?;
    empty.map_err(|e| step_error(ctx, e, perf_has_keys))?;
    let plan = clean_up_plan(ctx, Some(Duration::from_secs(30)))?;

    let bar = Progress::seconds(load.duration.as_secs());
    let report = ctx.block_on(check::paced_puts(&conns, &prefix, load))?;
    bar.stop();
    clean_up(ctx, &first, &prefix, plan)?;

    let (lines, pass) = check::verdict(&report, load.rate);
    for line in &lines {
        print_line(line);
    }
    if !pass {
        return Err(CtlError::printed(ExitCode::Error));
    }
    Ok(())
}

/// Reads the first endpoint's resident memory; `when` is `before` or `after` the puts.
/// A failure prints etcdctl's lines and ends the command.
fn resident_memory(
    ctx: &mut Ctx,
    endpoint: &str,
    security: &cairn_client::Security,
    when: &str,
) -> Result<f64, CtlError> {
    let read = ctx.block_on(cairn_bench::memory::resident_memory(endpoint, security))?;
    let bytes = read.unwrap_or_else(|why| {
        print_line(&why);
        0.0
    });
    if bytes == 0.0 {
        print_line(&format!(
            "FAIL: Could not read process_resident_memory_bytes {when} the put operations."
        ));
        return Err(CtlError::printed(ExitCode::Error));
    }
    Ok(bytes)
}

/// `check datascale [options]`.
pub fn datascale(ctx: &mut Ctx, _args: &[String]) -> Result<(), CtlError> {
    let Some(load) = cairn_bench::datascale_load(ctx.flags.str("load")) else {
        return Err(unknown_load(ctx));
    };
    let conns = clients(ctx, load.clients)?;
    let (Some(first), Some(endpoint)) = (conns.first().cloned(), ctx.endpoints().first().cloned())
    else {
        return Err(CtlError::error("no endpoints"));
    };
    let security = ctx.security()?;
    let prefix = ctx.flags.str("prefix").to_string();
    let has_keys = |p: &str| {
        format!(
            "prefix {} has keys. Delete with etcdctl del --prefix {p} first",
            gofmt::quote(p.as_bytes())
        )
    };
    let empty = ctx.block_on(check::ensure_prefix_empty(&first, &prefix, None))?;
    empty.map_err(|e| step_error(ctx, e, has_keys))?;
    let plan = clean_up_plan(ctx, None)?;

    let before = resident_memory(ctx, &endpoint, &security, "before")?;
    print_line(&format!(
        "Start data scale check for work load [{} key-value pairs, {} bytes per key-value, {} concurrent clients].",
        load.keys, load.kv_size, load.clients
    ));
    let bar = Progress::start(load.keys);
    let report = ctx.block_on(check::counted_puts(&conns, &prefix, load, &bar.done))?;
    bar.finish();
    let after = resident_memory(ctx, &endpoint, &security, "after")?;
    clean_up(ctx, &first, &prefix, plan)?;

    if !report.errors.is_empty() {
        print_line("FAIL: too many errors");
        for (e, n) in &report.errors {
            print_line(&format!("FAIL: ERROR({e}) -> {n}"));
        }
        return Err(CtlError::printed(ExitCode::Error));
    }
    print_line(&check::memory_verdict(before, after));
    Ok(())
}
