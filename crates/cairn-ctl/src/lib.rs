//! cairnctl: etcdctl 3.5's commands, flags, `ETCDCTL_*` variables and output, byte for
//! byte, in every `-w` format, over [`cairn_client`].
//!
//! Depends on `cairn-client` and `cairn-proto` only.
//!
//! # Layout
//!
//! - [`cli`]: the command tree type, cobra-style dispatch and etcdctl's help template;
//!   [`commands`] declares the tree.
//! - [`go`]: the Go behaviour etcdctl's output depends on: pflag's parsing and messages,
//!   Go's tabwriter for help, Go's formatting, and the Go client's peer URL checks.
//! - [`global`]: global flags, the environment, the client, exit codes, error reporting.
//! - [`output`]: etcdctl's printers, in every `-w` format.
//! - One module per command group: [`kv`] (get, put, del), [`txn`], [`endpoint`],
//!   [`maintenance`] (compaction, alarm, defrag, snapshot), [`member`], [`move_leader`],
//!   [`version`], [`lease`], [`lock`], [`elect`], [`watch`]; [`process`] runs user
//!   commands and catches SIGINT/SIGTERM for the long-running commands.

pub mod check;
pub mod cli;
pub mod commands;
pub mod elect;
pub mod endpoint;
pub mod global;
pub mod go;
pub mod kv;
pub mod lease;
pub mod lock;
pub mod maintenance;
pub mod member;
pub mod move_leader;
pub mod output;
pub mod process;
pub mod txn;
pub mod version;
pub mod watch;

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
    cli::run(&commands::root(), args)
}
