//! cairnctl: etcdctl 3.5's commands, flags, `ETCDCTL_*` variables and output, byte for
//! byte, in every `-w` format, over [`cairn_client`].
//!
//! Depends on `cairn-client` and `cairn-proto`, and on `cairn-bench` for `cairnctl bench`
//! and `check perf`. Its only public item is [`run`], which the binary calls.
//!
//! # Layout
//!
//! Three folders and a file, each using only those listed above it:
//!
//! - `go/`: the Go behaviour etcdctl's output and errors depend on: `flags.rs` (pflag),
//!   `tabwriter.rs` (help), `gofmt.rs` (quoting, durations, sizes, times), `url.rs` (the
//!   Go client's peer URL checks), `prompt.rs` (passwords read as speakeasy and
//!   `fmt.Scanf` read them).
//! - `global.rs`: what every command shares: global flags, `ETCDCTL_*` variables, the
//!   client (TLS files, user and password, re-authentication on a stale token), exit
//!   codes and error reporting.
//! - `output/`: etcdctl's printers: `printer.rs` (KV responses in every `-w` format, and
//!   the helpers the other commands print with), `json.rs` (Go's `encoding/json`),
//!   `table.rs` (`-w table`).
//! - `cmd/`: the command tree (`mod.rs`), `command.rs` (cobra's dispatch and etcdctl's
//!   help template), one file per command group, and `process.rs` (user commands and
//!   signals for `lock`, `elect` and `watch`).

mod cmd;
mod global;
mod go;
mod output;

/// Runs cairnctl with the process arguments (without the program name); returns the
/// exit code.
pub fn run(args: &[String]) -> i32 {
    // `bench` is cairnctl's own (etcdctl has none): clap parses its flags, and it stays out
    // of the command tree so etcdctl's help output is unchanged.
    if args.first().map(String::as_str) == Some("bench") {
        let argv =
            std::iter::once("cairnctl bench".to_string()).chain(args.iter().skip(1).cloned());
        return cairn_bench::cli_main(argv);
    }
    cmd::command::run(&cmd::root(), args)
}
