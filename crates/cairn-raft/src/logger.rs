//! Routes raft-rs's slog records into `tracing`.

use std::fmt::{self, Write as _};

use slog::{Drain, Key, OwnedKVList, Record, Serializer, KV};

/// A slog drain that re-emits each record as a `tracing` event with target `raft`.
pub(crate) struct TracingDrain;

/// Collects slog key-values as ` key=value` pairs.
struct Fields(String);

impl Serializer for Fields {
    fn emit_arguments(&mut self, key: Key, val: &fmt::Arguments<'_>) -> slog::Result {
        let _ = write!(self.0, " {key}={val}");
        Ok(())
    }
}

impl Drain for TracingDrain {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &Record<'_>, values: &OwnedKVList) -> Result<(), slog::Never> {
        let mut fields = Fields(String::new());
        let _ = record.kv().serialize(record, &mut fields);
        let _ = values.serialize(record, &mut fields);
        let msg = record.msg();
        let fields = fields.0.trim_start();
        match record.level() {
            slog::Level::Critical | slog::Level::Error => {
                tracing::error!(target: "raft", fields, "{msg}")
            }
            slog::Level::Warning => tracing::warn!(target: "raft", fields, "{msg}"),
            slog::Level::Info => tracing::info!(target: "raft", fields, "{msg}"),
            slog::Level::Debug => tracing::debug!(target: "raft", fields, "{msg}"),
            slog::Level::Trace => tracing::trace!(target: "raft", fields, "{msg}"),
        }
        Ok(())
    }
}

/// The logger handed to raft-rs, tagged with this member's id.
pub(crate) fn raft_logger(id: u64) -> slog::Logger {
    slog::Logger::root(TracingDrain.fuse(), slog::o!("raft_id" => id))
}
