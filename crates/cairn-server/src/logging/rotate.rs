//! `--enable-log-rotation`: the log file is rotated as etcd's (lumberjack's) is. When a line
//! would take the file past `maxsize` MB, the file is renamed to a backup named after the
//! moment (`cairn-2006-01-02T15-04-05.000.log` for `cairn.log`, UTC) and a new one is
//! started; then backups past `maxbackups` (newest kept) and older than `maxage` days go.
//! 0 keeps them all.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// `--log-rotation-config-json`, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRotation {
    /// The most bytes a log file grows to (`maxsize` MB; 0 means 100, as etcd).
    pub max_bytes: u64,
    /// Days a backup is kept (`maxage`; 0: no limit).
    pub max_age_days: u64,
    /// Backups kept (`maxbackups`; 0: no limit).
    pub max_backups: u64,
}

/// The JSON keys etcd reads, as Go matches them (case-insensitively).
const KEYS: [&str; 5] = ["maxsize", "maxage", "maxbackups", "localtime", "compress"];

impl LogRotation {
    /// Reads `--log-rotation-config-json` as etcd 3.5.1 reads it, with its errors. `compress`
    /// is refused (`Err(None)`: not built); `localtime` is read, backups are named in UTC.
    pub fn parse(json: &str) -> Result<LogRotation, Option<String>> {
        cairn_proto::json::go_check_valid(json.as_bytes())
            .map_err(|e| Some(format!("improperly formatted log rotation config: {e}")))?;
        let value: serde_json::Value = serde_json::from_str(json)
            .map_err(|e| Some(format!("improperly formatted log rotation config: {e}")))?;
        let invalid = |what: &str, key: &str, go: &str| {
            Some(format!(
                "invalid log rotation config: json: cannot unmarshal {what} into Go struct field logRotationConfig.{key} of type {go}"
            ))
        };
        let mut numbers = [0u64; 3];
        let mut compress = false;
        let serde_json::Value::Object(fields) = value else {
            return match value {
                serde_json::Value::Null => Ok(LogRotation::from(numbers)),
                other => Err(Some(format!(
                    "invalid log rotation config: json: cannot unmarshal {} into Go value of type embed.logRotationConfig",
                    kind(&other)
                ))),
            };
        };
        for (name, v) in &fields {
            let Some(i) = KEYS.iter().position(|k| k.eq_ignore_ascii_case(name)) else {
                continue;
            };
            let key = KEYS[i];
            if v.is_null() {
                continue;
            }
            if i < 3 {
                match v {
                    serde_json::Value::Number(n) => match (n.as_i64(), n.as_u64()) {
                        (_, Some(n)) => numbers[i] = n,
                        (Some(_), None) => numbers[i] = 0,
                        _ => return Err(invalid(&format!("number {n}"), key, "int")),
                    },
                    other => return Err(invalid(kind(other), key, "int")),
                }
            } else {
                match v {
                    serde_json::Value::Bool(b) if key == "compress" => compress = *b,
                    serde_json::Value::Bool(_) => {}
                    other => return Err(invalid(kind(other), key, "bool")),
                }
            }
        }
        if compress {
            return Err(None);
        }
        Ok(LogRotation::from(numbers))
    }
}

impl From<[u64; 3]> for LogRotation {
    fn from([size, age, backups]: [u64; 3]) -> LogRotation {
        let mb = if size == 0 { 100 } else { size };
        LogRotation {
            max_bytes: mb.saturating_mul(1024 * 1024),
            max_age_days: age,
            max_backups: backups,
        }
    }
}

/// Go's name for a JSON value's kind in its type errors.
fn kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "bool",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}

/// A log file that rotates itself.
pub(super) struct Rotating {
    path: PathBuf,
    file: File,
    size: u64,
    rotation: LogRotation,
}

impl Rotating {
    /// Opens `path` for appending.
    pub(super) fn open(path: &Path, rotation: LogRotation) -> io::Result<Rotating> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(Rotating {
            path: path.to_path_buf(),
            file,
            size,
            rotation,
        })
    }

    /// Writes one whole line, rotating first when it would not fit.
    pub(super) fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        let len = line.len() as u64;
        if len > self.rotation.max_bytes {
            return Err(io::Error::other(format!(
                "write length {len} exceeds maximum file size {}",
                self.rotation.max_bytes
            )));
        }
        if self.size + len > self.rotation.max_bytes {
            self.rotate()?;
        }
        self.file.write_all(line)?;
        self.size += len;
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        let (dir, stem, ext) = parts(&self.path);
        let stamp = crate::logging::format_ts(SystemTime::now())
            .trim_end_matches('Z')
            .replace(':', "-");
        fs::rename(&self.path, dir.join(format!("{stem}-{stamp}{ext}")))?;
        self.file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&self.path)?;
        self.size = 0;
        self.remove_old(&dir, &stem, &ext);
        Ok(())
    }

    /// Removes the backups past `max_backups` (the newest kept) and older than
    /// `max_age_days` (by when they were last written, the moment they were rotated).
    fn remove_old(&self, dir: &Path, stem: &str, ext: &str) {
        let LogRotation {
            max_age_days,
            max_backups,
            ..
        } = self.rotation;
        if max_age_days == 0 && max_backups == 0 {
            return;
        }
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        let prefix = format!("{stem}-");
        let mut backups: Vec<(String, Option<SystemTime>)> = entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let stamp = name.strip_prefix(&prefix)?.strip_suffix(ext)?;
                is_stamp(stamp).then(|| (name, e.metadata().and_then(|m| m.modified()).ok()))
            })
            .collect();
        // The stamps sort as the moments they name: newest first.
        backups.sort_by(|a, b| b.0.cmp(&a.0));
        let too_old =
            SystemTime::now().checked_sub(Duration::from_secs(max_age_days.saturating_mul(86_400)));
        for (i, (name, modified)) in backups.iter().enumerate() {
            let past_count = max_backups > 0 && i as u64 >= max_backups;
            let past_age =
                max_age_days > 0 && matches!((modified, too_old), (Some(m), Some(old)) if *m < old);
            if past_count || past_age {
                let _ = fs::remove_file(dir.join(name));
            }
        }
    }
}

/// `dir`, the name before its extension, and the extension (with its dot) of `path`.
fn parts(path: &Path) -> (PathBuf, String, String) {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match name.rfind('.') {
        Some(i) if i > 0 => (dir, name[..i].to_string(), name[i..].to_string()),
        _ => (dir, name, String::new()),
    }
}

/// Whether `s` is a backup's stamp, `2006-01-02T15-04-05.000`.
fn is_stamp(s: &str) -> bool {
    let shape = b"dddd-dd-ddTdd-dd-dd.ddd";
    s.len() == shape.len()
        && s.bytes().zip(shape.iter()).all(|(c, &want)| match want {
            b'd' => c.is_ascii_digit(),
            other => c == other,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_is_read_as_etcd_reads_it() {
        let default = r#"{"maxsize": 100, "maxage": 0, "maxbackups": 0, "localtime": false, "compress": false}"#;
        assert_eq!(
            LogRotation::parse(default),
            Ok(LogRotation {
                max_bytes: 100 << 20,
                max_age_days: 0,
                max_backups: 0
            })
        );
        assert_eq!(
            LogRotation::parse(r#"{"MaxSize":1,"maxBackups":2,"maxage":3,"other":"x"}"#),
            Ok(LogRotation {
                max_bytes: 1 << 20,
                max_age_days: 3,
                max_backups: 2
            })
        );
        assert_eq!(LogRotation::parse("{}").map(|r| r.max_bytes), Ok(100 << 20));
        // etcd 3.5.1's words, checked by hand.
        assert_eq!(
            LogRotation::parse("{bad"),
            Err(Some("improperly formatted log rotation config: invalid character 'b' looking for beginning of object key string".into()))
        );
        assert_eq!(
            LogRotation::parse(r#"{"maxsize":"x"}"#),
            Err(Some("invalid log rotation config: json: cannot unmarshal string into Go struct field logRotationConfig.maxsize of type int".into()))
        );
        assert_eq!(LogRotation::parse(r#"{"compress":true}"#), Err(None));
    }

    #[test]
    fn a_full_file_is_renamed_and_old_backups_go() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cairn.log");
        let rotation = LogRotation {
            max_bytes: 100,
            max_age_days: 0,
            max_backups: 2,
        };
        let mut log = Rotating::open(&path, rotation).unwrap();
        let line = [b'x'; 40];
        for _ in 0..20 {
            log.write_line(&line).unwrap();
            // Backups are named to the millisecond.
            std::thread::sleep(Duration::from_millis(2));
        }
        assert!(log.write_line(&[b'y'; 101]).is_err());
        let mut names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names.len(), 3, "{names:?}");
        assert_eq!(names[2], "cairn.log");
        for backup in &names[..2] {
            let stamp = backup
                .strip_prefix("cairn-")
                .unwrap()
                .strip_suffix(".log")
                .unwrap();
            assert!(is_stamp(stamp), "{backup}");
            assert_eq!(fs::metadata(dir.path().join(backup)).unwrap().len(), 80);
        }
        // 20 lines of 40 bytes, two to a file: the current file holds the last two.
        assert_eq!(fs::metadata(&path).unwrap().len(), 80);
    }
}
