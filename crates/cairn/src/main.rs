//! The cairn server: parses etcd's flags, sets up logging, runs one member.

use std::process::ExitCode;

use cairn_server::config::{ConfigError, Flags};

fn main() -> ExitCode {
    let cfg = match Flags::load().and_then(Flags::validate) {
        Ok(cfg) => cfg,
        Err(ConfigError::Usage(msg)) => {
            eprintln!("{msg}\nUsage:\n\n  cairn [flags]\n    Start a cairn server.\n\n  See 'cairn --help' for the flags.");
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("cairn: {e}");
            return ExitCode::from(1);
        }
    };
    if let Err(e) =
        cairn_server::logging::init(cfg.log_level, &cfg.log_outputs, cfg.log_rotation.as_ref())
    {
        eprintln!("cairn: {e}");
        return ExitCode::from(1);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cairn: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(cairn_server::run(cfg));
    // What still runs on the runtime (connections, a stopped member's tasks) ends with the
    // process; nothing there holds data that is not already in the Raft log.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            cairn_server::logging::fatal(&e.to_string());
            ExitCode::from(1)
        }
    }
}
