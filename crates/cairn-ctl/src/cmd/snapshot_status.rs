//! `etcdctl snapshot status FILE`: the hash, revision, key count and size of a snapshot
//! file in etcd's format (a bbolt database, its SHA-256 trailer ignored), printed as
//! etcdctl 3.5 prints them, deprecation notice included.
//!
//! Where etcd dies of a Go panic (a truncated file) or reports a failed write (an empty
//! file), cairnctl says what is wrong with the file.

use std::io::ErrorKind;

use cairn_bbolt::{snapshot_status as compute, Reader, SnapshotStatus};

use crate::global::{CtlError, Ctx, Format};
use crate::go::gofmt;
use crate::output::printer::out;
use crate::output::table;

/// etcdctl 3.5's description of the command (its "Moved to" line names itself).
pub const LONG: &str = "When --write-out is set to simple, this command prints out comma-separated status lists for each endpoint.
The items in the lists are hash, revision, total keys, total size.

Moved to 'etcdctl snapshot status ...'
";

/// `etcdctl snapshot status`.
pub fn snapshot_status(ctx: &mut Ctx, args: &[String]) -> Result<(), CtlError> {
    eprintln!("Deprecated: Use `etcdutl snapshot status` instead.\n");
    if args.len() != 1 {
        return Err(CtlError::bad_args(
            "snapshot status requires exactly one argument",
        ));
    }
    let path = &args[0];
    let format = ctx.format()?;
    if let Err(e) = std::fs::metadata(path) {
        return Err(CtlError::error(format!("stat {path}: {}", go_io(&e))));
    }
    let status = Reader::open(path)
        .and_then(|r| compute(&r))
        .map_err(|e| match e {
            cairn_bbolt::Error::Io(io) => CtlError::error(format!("read {path}: {}", go_io(&io))),
            other => CtlError::error(other.to_string()),
        })?;
    print(format, &status)
}

fn print(format: Format, s: &SnapshotStatus) -> Result<(), CtlError> {
    let text = match format {
        Format::Simple => format!(
            "{:x}, {}, {}, {}\n",
            s.hash,
            s.revision,
            s.total_key,
            gofmt::humanize_bytes(s.total_size)
        ),
        Format::Table => table::render(
            &["HASH", "REVISION", "TOTAL KEYS", "TOTAL SIZE"],
            &[vec![
                format!("{:x}", s.hash),
                s.revision.to_string(),
                s.total_key.to_string(),
                gofmt::humanize_bytes(s.total_size),
            ]],
        ),
        Format::Json => format!(
            "{{\"hash\":{},\"revision\":{},\"totalKey\":{},\"totalSize\":{}}}\n",
            s.hash, s.revision, s.total_key, s.total_size
        ),
        Format::Fields => format!(
            "\"Hash\" : {}\n\"Revision\" : {}\n\"Keys\" : {}\n\"Size\" : {}\n",
            s.hash, s.revision, s.total_key, s.total_size
        ),
        Format::Protobuf => return Err(format.unsupported()),
    };
    out(text.as_bytes());
    Ok(())
}

/// An I/O error as Go's `os` package words it.
fn go_io(e: &std::io::Error) -> String {
    match e.kind() {
        ErrorKind::NotFound => "no such file or directory".to_string(),
        ErrorKind::PermissionDenied => "permission denied".to_string(),
        ErrorKind::IsADirectory => "is a directory".to_string(),
        _ => e.to_string(),
    }
}
