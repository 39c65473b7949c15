//! Log lines shaped like etcd's: one JSON object a line with `level`, `ts`, `caller`, `msg`
//! and the event's fields, so scripts that wait for etcd's milestone messages work unchanged.

use std::fmt;
use std::io::Write;

use serde_json::Value;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// Collects an event's message and fields.
#[derive(Default)]
struct Fields {
    msg: String,
    /// Named fields in the order the event lists them.
    fields: Vec<(String, Value)>,
}

impl Fields {
    fn add(&mut self, field: &Field, value: Value) {
        // etcd's field names use dashes.
        self.fields.push((field.name().replace('_', "-"), value));
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let text = format!("{value:?}");
        if field.name() == "message" {
            self.msg = text;
        } else {
            self.add(field, Value::String(text));
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.msg = value.to_string();
        } else {
            self.add(field, Value::String(value.to_string()));
        }
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.add(field, Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.add(field, Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.add(field, Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.add(field, Value::from(value));
    }
}

mod rotate;

pub use rotate::LogRotation;

/// Where log lines go.
enum Sink {
    Stderr,
    Stdout,
    File(std::sync::Mutex<std::fs::File>),
    /// A file under `--enable-log-rotation`.
    Rotating(std::sync::Mutex<rotate::Rotating>),
    /// journald's native protocol (`--log-outputs=systemd/journal`).
    Journal(crate::systemd::Journal),
}

/// The `--log-outputs` value that sends entries to journald.
pub const JOURNAL_OUTPUT: &str = "systemd/journal";

/// Why the logger could not be set up, worded as etcd words it.
#[derive(Debug, thiserror::Error)]
pub enum LogInitError {
    #[error("multi logoutput for \"default\" is not supported yet")]
    MultiDefault,
    #[error("running with systemd/journal but other '--log-outputs' values ({0}) are configured with 'default'; override 'default' value with something else")]
    MultiJournal(String),
    #[error(transparent)]
    Journal(#[from] crate::systemd::JournalError),
    #[error("cannot open log output: {0}")]
    Open(#[from] std::io::Error),
}

/// journald's priority for a level, as syslog numbers them.
fn journal_priority(l: &Level) -> u8 {
    match *l {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

/// A `tracing` layer that writes etcd-shaped JSON lines.
struct EtcdJsonLayer {
    level: Level,
    sinks: Vec<Sink>,
}

fn level_name(l: &Level) -> &'static str {
    match *l {
        Level::ERROR => "error",
        Level::WARN => "warn",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "debug",
    }
}

/// Formats a Unix time as etcd's `ts`: `2006-01-02T15:04:05.000Z` in UTC.
pub fn format_ts(t: std::time::SystemTime) -> String {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

impl<S: Subscriber> Layer<S> for EtcdJsonLayer {
    fn enabled(&self, metadata: &tracing::Metadata<'_>, _: Context<'_, S>) -> bool {
        *metadata.level() <= self.level
            && (metadata.target().starts_with("cairn") || *metadata.level() <= Level::WARN)
    }

    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let meta = event.metadata();
        let mut fields = Fields::default();
        event.record(&mut fields);
        let file = meta.file().unwrap_or("?");
        let short = file.rsplit("src/").next().unwrap_or(file);
        let module = meta.target().split("::").next().unwrap_or("");
        let caller = format!("{module}/{short}:{}", meta.line().unwrap_or(0));
        let package = match caller.rfind('/') {
            Some(i) => &caller[..i],
            None => ".",
        };
        // etcd's order: level, ts, caller, msg, then the fields.
        let mut line = String::with_capacity(160);
        line.push('{');
        let mut put = |key: &str, value: &Value| {
            if line.len() > 1 {
                line.push(',');
            }
            line.push_str(&Value::from(key).to_string());
            line.push(':');
            line.push_str(&value.to_string());
        };
        put("level", &Value::from(level_name(meta.level())));
        put("ts", &Value::from(format_ts(std::time::SystemTime::now())));
        put("caller", &Value::from(caller.as_str()));
        put("msg", &Value::from(fields.msg));
        for (k, v) in &fields.fields {
            put(k, v);
        }
        line.push_str("}\n");
        for sink in &self.sinks {
            let _ = match sink {
                Sink::Stderr => std::io::stderr().lock().write_all(line.as_bytes()),
                Sink::Stdout => std::io::stdout().lock().write_all(line.as_bytes()),
                Sink::File(f) => match f.lock() {
                    Ok(mut f) => f.write_all(line.as_bytes()),
                    Err(_) => Ok(()),
                },
                Sink::Rotating(f) => match f.lock() {
                    Ok(mut f) => f.write_line(line.as_bytes()),
                    Err(_) => Ok(()),
                },
                // As etcd's journal writer: MESSAGE is the whole line, its newline
                // included, and the line goes to stderr when journald refuses it.
                Sink::Journal(j) => j
                    .send(&line, journal_priority(meta.level()), package)
                    .or_else(|_| std::io::stderr().lock().write_all(line.as_bytes())),
            };
        }
    }
}

/// Refuses the `--log-outputs` combinations etcd refuses: `default` or `systemd/journal`
/// beside any other output.
fn check_outputs(outputs: &[String]) -> Result<(), LogInitError> {
    if outputs.len() > 1 && outputs.iter().any(|o| o == "default") {
        return Err(LogInitError::MultiDefault);
    }
    if outputs.len() > 1 && outputs.iter().any(|o| o == JOURNAL_OUTPUT) {
        // Go's %q of a string list: ["a" "b"].
        let quoted: Vec<String> = outputs.iter().map(|o| format!("{o:?}")).collect();
        return Err(LogInitError::MultiJournal(format!(
            "[{}]",
            quoted.join(" ")
        )));
    }
    Ok(())
}

/// Installs the global logger for `--log-level` and `--log-outputs`; a file output rotates
/// as `rotation` says (`--enable-log-rotation`).
pub fn init(
    level: Level,
    outputs: &[String],
    rotation: Option<&LogRotation>,
) -> Result<(), LogInitError> {
    check_outputs(outputs)?;
    let mut sinks = Vec::new();
    for out in outputs {
        sinks.push(match out.as_str() {
            "default" | "stderr" => Sink::Stderr,
            "stdout" => Sink::Stdout,
            JOURNAL_OUTPUT => Sink::Journal(crate::systemd::Journal::connect()?),
            path => match rotation {
                Some(r) => Sink::Rotating(std::sync::Mutex::new(rotate::Rotating::open(
                    std::path::Path::new(path),
                    r.clone(),
                )?)),
                None => Sink::File(std::sync::Mutex::new(
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path)?,
                )),
            },
        });
    }
    if sinks.is_empty() {
        sinks.push(Sink::Stderr);
    }
    let _ = tracing_subscriber::registry()
        .with(EtcdJsonLayer { level, sinks })
        .try_init();
    Ok(())
}

/// Logs the error that stops the server, as etcd's final `fatal` line.
pub fn fatal(msg: &str) {
    tracing::error!(error = %msg, "cairn stopped with an error");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_iso8601_with_millis() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_764_100_000_123);
        assert_eq!(format_ts(t), "2025-11-25T19:46:40.123Z");
        assert_eq!(format_ts(std::time::UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn journal_beside_another_output_is_refused_as_etcd_refuses_it() {
        let outs = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            check_outputs(&outs(&["stderr", "systemd/journal"])).map_err(|e| e.to_string()),
            Err("running with systemd/journal but other '--log-outputs' values ([\"stderr\" \"systemd/journal\"]) are configured with 'default'; override 'default' value with something else".to_string())
        );
        assert_eq!(
            check_outputs(&outs(&["default", "systemd/journal"])).map_err(|e| e.to_string()),
            Err("multi logoutput for \"default\" is not supported yet".to_string())
        );
        assert!(check_outputs(&outs(&["systemd/journal"])).is_ok());
        assert!(check_outputs(&outs(&["stderr", "/tmp/x.log"])).is_ok());
    }
}
