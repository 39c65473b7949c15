//! `check perf`: etcdctl 3.5's paced-write test, run by [`cairn_bench::check_perf`].
//!
//! As in etcdctl: an unknown `--load` fails before anything is dialled; the load's number
//! of clients each get their own connection (round-robin over `--endpoints`); keys found
//! under `--prefix` refuse the run; the verdict lines go to stdout and a failed check
//! exits 1 after printing `FAIL`.

use cairn_bench::{CheckPerfOptions, Error as BenchError};

use crate::global::{CtlError, Ctx, ExitCode};
use crate::go::flags::{Kind, Spec};

/// `check perf`'s flags.
pub const PERF_FLAGS: &[Spec] = &[
    Spec::new("auto-compact", Kind::Bool, "false", "Compact storage with last revision after test is finished."),
    Spec::new("auto-defrag", Kind::Bool, "false", "Defragment storage after test is finished."),
    Spec::new("load", Kind::Str, "s", "The performance check's workload model. Accepted workloads: s(small), m(medium), l(large), xl(xLarge)"),
    Spec::new("prefix", Kind::Str, "/etcdctl-check-perf/", "The prefix for writing the performance check's keys."),
];

/// `check perf [options]`.
pub fn perf(ctx: &mut Ctx, _args: &[String]) -> Result<(), CtlError> {
    let load_name = ctx.flags.str("load").to_string();
    let Some(load) = cairn_bench::perf_load(&load_name) else {
        return Err(CtlError::new(
            ExitCode::BadFeature,
            format!("unknown load option {load_name}"),
        ));
    };
    ctx.client()?;
    let endpoints = ctx.endpoints();
    let mut conns = Vec::with_capacity(load.clients);
    for i in 0..load.clients {
        if let Some(ep) = endpoints.get(i % endpoints.len().max(1)) {
            conns.push(ctx.client_for(ep)?);
        }
    }
    let opts = CheckPerfOptions {
        load,
        prefix: ctx.flags.str("prefix").to_string(),
        auto_compact: ctx.flags.bool("auto-compact"),
        auto_defrag: ctx.flags.bool("auto-defrag"),
        endpoints,
    };
    let outcome = match ctx.block_on(cairn_bench::check_perf(conns, opts))? {
        Ok(o) => o,
        Err(BenchError::PrefixHasKeys(p)) => {
            return Err(CtlError::new(
                ExitCode::InvalidInput,
                BenchError::PrefixHasKeys(p).to_string(),
            ))
        }
        Err(BenchError::Rpc(status)) => return Err(ctx.status_error(&status)),
        Err(e) => return Err(CtlError::error(e.to_string())),
    };
    let mut text = outcome.lines.join("\n");
    text.push('\n');
    crate::output::printer::out(text.as_bytes());
    if !outcome.pass {
        return Err(CtlError::printed(ExitCode::Error));
    }
    Ok(())
}
