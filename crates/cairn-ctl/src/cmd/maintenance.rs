//! `compaction`, `alarm list|disarm`, `defrag` and `snapshot save` (with several endpoints:
//! from the cluster's leader among them, where etcdctl refuses).

use std::io::Write;
use std::time::Instant;

use cairn_proto::etcdserverpb::{
    alarm_request::AlarmAction, AlarmMember, AlarmRequest, AlarmResponse, CompactionRequest,
    DefragmentRequest, SnapshotRequest, StatusRequest,
};

use crate::global::{status_message, zap_string, CtlError, Ctx, ExitCode, Format};
use crate::go::flags::{self, Kind, Spec};
use crate::go::gofmt;
use crate::output::json::{self, Obj};
use crate::output::printer::{fields, out, protobuf};

/// `compaction`'s flags.
pub const COMPACTION_FLAGS: &[Spec] = &[Spec::new(
    "physical",
    Kind::Bool,
    "false",
    "'true' to wait for compaction to physically remove all old revisions",
)];

/// `defrag`'s flags.
pub const DEFRAG_FLAGS: &[Spec] = &[
    Spec::new(
        "cluster",
        Kind::Bool,
        "false",
        "use all endpoints from the cluster member list",
    ),
    Spec::new(
        "data-dir",
        Kind::Str,
        "",
        "Optional. If present, defragments a data directory not in use by etcd.",
    ),
];

/// `etcdctl compaction <rev>`.
pub fn compaction(ctx: &mut Ctx, args: &[String]) -> Result<(), CtlError> {
    if args.len() != 1 {
        return Err(CtlError::bad_args("compaction command needs 1 argument"));
    }
    let rev = flags::parse_int_base(&args[0], 10).map_err(CtlError::error)?;
    let physical = ctx.flags.bool("physical");
    let client = ctx.client()?;
    ctx.unary(|| {
        let mut kv = client.kv();
        async move {
            kv.compact(CompactionRequest {
                revision: rev,
                physical,
            })
            .await
        }
    })?;
    out(format!("compacted revision {rev}\n").as_bytes());
    Ok(())
}

fn alarm_name(alarm: i32) -> &'static str {
    match alarm {
        0 => "NONE",
        1 => "NOSPACE",
        2 => "CORRUPT",
        _ => "UNKNOWN",
    }
}

fn print_alarms(format: Format, r: &AlarmResponse) -> Result<(), CtlError> {
    match format {
        Format::Simple => {
            let mut s = String::new();
            for a in &r.alarms {
                // gogo's compact text form of AlarmMember, as `%+v` prints it.
                let mut line = String::new();
                if a.member_id != 0 {
                    line.push_str(&format!("memberID:{} ", a.member_id));
                }
                if a.alarm != 0 {
                    line.push_str(&format!("alarm:{} ", alarm_name(a.alarm)));
                }
                s.push_str(&line);
                s.push('\n');
            }
            out(s.as_bytes());
        }
        Format::Json => {
            let alarms = r
                .alarms
                .iter()
                .map(|a| {
                    Obj::new()
                        .num("memberID", a.member_id)
                        .num("alarm", a.alarm)
                        .end()
                })
                .collect();
            let s = Obj::new()
                .obj("header", json::header(&r.header))
                .list("alarms", alarms)
                .end();
            out(format!("{s}\n").as_bytes());
        }
        Format::Fields => {
            if r.header.is_none() {
                // etcdctl dereferences the missing header of a disarm that found no
                // alarm and dies with Go's nil-pointer panic.
                return Err(CtlError::go_panic(
                    "runtime error: invalid memory address or nil pointer dereference",
                ));
            }
            let mut s = String::new();
            fields::hdr(&mut s, &r.header);
            for a in &r.alarms {
                s.push_str(&format!("\"MemberID\" : {}\n", a.member_id));
                s.push_str(&format!("\"AlarmType\" : {}\n\n", alarm_name(a.alarm)));
            }
            out(s.as_bytes());
        }
        Format::Protobuf => protobuf(r),
        f @ Format::Table => return Err(f.unsupported()),
    }
    Ok(())
}

/// `etcdctl alarm list`.
pub fn alarm_list(ctx: &mut Ctx, _args: &[String]) -> Result<(), CtlError> {
    let client = ctx.client()?;
    let resp = ctx.unary(|| {
        let mut m = client.maintenance();
        async move { m.alarm(AlarmRequest::default()).await }
    })?;
    print_alarms(ctx.format()?, &resp)
}

/// `etcdctl alarm disarm`: lists the alarms and deactivates each, as etcd's client does.
pub fn alarm_disarm(ctx: &mut Ctx, _args: &[String]) -> Result<(), CtlError> {
    let client = ctx.client()?;
    let listed = ctx.unary(|| {
        let mut m = client.maintenance();
        async move { m.alarm(AlarmRequest::default()).await }
    })?;
    let mut ret = AlarmResponse::default();
    for a in listed.alarms {
        let AlarmMember { member_id, alarm } = a;
        let resp = ctx.unary(|| {
            let mut m = client.maintenance();
            async move {
                m.alarm(AlarmRequest {
                    action: AlarmAction::Deactivate as i32,
                    member_id,
                    alarm,
                })
                .await
            }
        })?;
        ret.alarms.extend(resp.alarms);
    }
    print_alarms(ctx.format()?, &ret)
}

/// `etcdctl defrag`.
pub fn defrag(ctx: &mut Ctx, _args: &[String]) -> Result<(), CtlError> {
    if !ctx.flags.str("data-dir").is_empty() {
        return Err(CtlError::error(
            "defrag --data-dir is not supported by cairnctl yet",
        ));
    }
    ctx.client()?;
    let mut failed = false;
    for ep in ctx.endpoints_from_cluster()? {
        let client = ctx.client_for(&ep)?;
        match ctx.unary(|| {
            let mut m = client.maintenance();
            async move { m.defragment(DefragmentRequest {}).await }
        }) {
            Ok(_) => out(format!("Finished defragmenting etcd member[{ep}]\n").as_bytes()),
            Err(e) => {
                failed = true;
                eprintln!("Failed to defragment etcd member[{ep}] ({})", e.msg);
            }
        }
    }
    if failed {
        // The failures are printed above: etcdctl exits 1 without another word.
        return Err(CtlError::printed(ExitCode::Error));
    }
    Ok(())
}

fn log_info(caller: &str, logger: Option<&str>, msg: &str, fields: &[(&str, String)]) {
    log_at("info", caller, logger, msg, fields);
}

fn log_at(level: &str, caller: &str, logger: Option<&str>, msg: &str, fields: &[(&str, String)]) {
    let mut line = format!("{{\"level\":\"{level}\",\"ts\":{}", gofmt::epoch_now());
    if let Some(l) = logger {
        line.push_str(&format!(",\"logger\":{}", zap_string(l)));
    }
    line.push_str(&format!(
        ",\"caller\":{},\"msg\":{}",
        zap_string(caller),
        zap_string(msg)
    ));
    for (k, v) in fields {
        line.push_str(&format!(",{}:{}", zap_string(k), zap_string(v)));
    }
    line.push('}');
    eprintln!("{line}");
}

/// How `snapshot save` failed: the call refused, or its stream broken after it opened.
enum SnapshotError {
    Open(tonic::Status),
    Stream(tonic::Status),
}

impl From<tonic::Status> for SnapshotError {
    fn from(s: tonic::Status) -> Self {
        SnapshotError::Stream(s)
    }
}

/// gRPC-Go's text of a failed call.
fn rpc_error_text(status: &tonic::Status) -> String {
    format!(
        "rpc error: code = {} desc = {}",
        cairn_proto::grpc_code_name(status.code()),
        status.message()
    )
}

/// The endpoint among `endpoints` whose member leads the cluster, that member's id and a
/// client for it alone: the first whose Status names itself as the leader. Endpoints that
/// do not answer are passed over; none leading is an error naming them all.
fn leader_among(
    ctx: &mut Ctx,
    endpoints: &[String],
) -> Result<(String, u64, cairn_client::Client), CtlError> {
    let timeout = ctx.command_timeout();
    for ep in endpoints {
        let Ok(client) = ctx.client_for(ep) else {
            continue;
        };
        let asked = client.clone();
        let status = ctx.block_on(async move {
            let mut m = asked.maintenance();
            tokio::time::timeout(timeout, m.status(StatusRequest {})).await
        })?;
        let Ok(Ok(resp)) = status else { continue };
        let resp = resp.into_inner();
        let member = resp.header.as_ref().map_or(0, |h| h.member_id);
        if member != 0 && resp.leader == member {
            return Ok((ep.clone(), member, client));
        }
    }
    Err(CtlError::error(format!(
        "snapshot must be requested to one selected node, and no leader was found among [{}]",
        endpoints.join(" ")
    )))
}

/// `etcdctl snapshot save <file>`; with several endpoints, from the leader among them.
pub fn snapshot_save(ctx: &mut Ctx, args: &[String]) -> Result<(), CtlError> {
    if args.len() != 1 {
        return Err(CtlError::bad_args("snapshot save expects one argument"));
    }
    let path = args[0].clone();
    let mut client = ctx.client()?;
    let endpoints = ctx.endpoints();
    let ep = if endpoints.len() == 1 {
        endpoints[0].clone()
    } else {
        // Where etcdctl refuses several endpoints, cairnctl saves from the leader.
        let (ep, member, leader) = leader_among(ctx, &endpoints)?;
        log_info(
            "cairnctl/snapshot",
            None,
            "saving the snapshot from the cluster's leader",
            &[
                ("endpoint", ep.clone()),
                ("member-id", format!("{member:x}")),
            ],
        );
        client = leader;
        ep
    };
    let part = format!("{path}.part");
    let _ = std::fs::remove_file(&part);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&part)
        .map_err(|e| CtlError::error(format!("could not open {part} ({e})")))?;
    log_info(
        "snapshot/v3_snapshot.go:68",
        None,
        "created temporary db file",
        &[("path", part.clone())],
    );
    let start = Instant::now();
    let received = ctx.block_on(async {
        let mut m = client.maintenance();
        let mut stream = m
            .snapshot(SnapshotRequest {})
            .await
            .map_err(SnapshotError::Open)?
            .into_inner();
        log_info(
            "v3/maintenance.go:211",
            Some("client"),
            "opened snapshot stream; downloading",
            &[],
        );
        log_info(
            "snapshot/v3_snapshot.go:76",
            None,
            "fetching snapshot",
            &[("endpoint", ep.clone())],
        );
        let mut size = 0u64;
        loop {
            match stream.message().await {
                Ok(Some(chunk)) => {
                    size += chunk.blob.len() as u64;
                    file.write_all(&chunk.blob)
                        .map_err(|e| tonic::Status::internal(e.to_string()))?;
                }
                Ok(None) => break,
                Err(status) => {
                    // The stream broke after it opened (a user without the root role, for
                    // one): the Go client says so, and etcdctl exits as interrupted.
                    log_at(
                        "warn",
                        "v3/maintenance.go:221",
                        Some("client"),
                        "failed to receive from snapshot stream; closing",
                        &[("error", rpc_error_text(&status))],
                    );
                    return Err(SnapshotError::Stream(status));
                }
            }
        }
        log_info(
            "v3/maintenance.go:219",
            Some("client"),
            "completed snapshot read; closing",
            &[],
        );
        Ok::<u64, SnapshotError>(size)
    })?;
    let size = match received {
        Ok(size) => size,
        Err(SnapshotError::Open(status)) => return Err(ctx.status_error(&status)),
        Err(SnapshotError::Stream(status)) => {
            return Err(CtlError::new(
                ExitCode::Interrupted,
                status_message(&status).msg,
            ))
        }
    };
    file.sync_all()
        .map_err(|e| CtlError::error(e.to_string()))?;
    log_info(
        "snapshot/v3_snapshot.go:91",
        None,
        "fetched snapshot",
        &[
            ("endpoint", ep),
            ("size", gofmt::humanize_bytes(size)),
            ("took", gofmt::humanize_ago(start.elapsed())),
        ],
    );
    std::fs::rename(&part, &path)
        .map_err(|e| CtlError::error(format!("could not rename {part} to {path} ({e})")))?;
    log_info(
        "snapshot/v3_snapshot.go:100",
        None,
        "saved",
        &[("path", path.clone())],
    );
    out(format!("Snapshot saved at {path}\n").as_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `alarm disarm -w fields` with no alarm to disarm: etcdctl dies of a nil-pointer
    /// panic, which cairnctl used to print before exiting on the spot.
    #[test]
    fn fields_of_a_headerless_alarm_response_are_go_panic() {
        let e = print_alarms(Format::Fields, &AlarmResponse::default()).unwrap_err();
        assert_eq!(
            (e.text().as_str(), e.exit_code()),
            (
                "panic: runtime error: invalid memory address or nil pointer dereference\n",
                2
            )
        );
    }
}
