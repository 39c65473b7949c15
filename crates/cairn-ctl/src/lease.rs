//! `lease grant`, `revoke`, `timetolive`, `list` and `keep-alive`, printed as etcdctl 3.5's
//! printers do: the Go client's response types are flat (the header's fields first), so
//! JSON output is too, and the protobuf printer writes only the header.

use std::time::Duration;

use cairn_proto::etcdserverpb::{
    LeaseGrantRequest, LeaseKeepAliveRequest, LeaseLeasesRequest, LeaseRevokeRequest,
    LeaseTimeToLiveRequest, ResponseHeader,
};
use prost::Message;

use crate::flags::{self, Kind, Spec};
use crate::global::{status_message, CtlError, Ctx, ExitCode, Format};
use crate::gofmt;
use crate::json::{self, Obj};
use crate::printer::{fields, out};

/// `lease timetolive`'s flags.
pub const TIME_TO_LIVE_FLAGS: &[Spec] = &[Spec::new(
    "keys",
    Kind::Bool,
    "false",
    "Get keys attached to this lease",
)];

/// `lease keep-alive`'s flags (etcdctl's help text, with its typo).
pub const KEEP_ALIVE_FLAGS: &[Spec] = &[Spec::new(
    "once",
    Kind::Bool,
    "false",
    "Resets the keep-alive time to its original value and cobrautl.Exits immediately",
)];

/// Go's `%016x` of an int64: a negative id keeps its sign inside the width.
fn hex16(id: i64) -> String {
    if id < 0 {
        format!("-{:015x}", id.unsigned_abs())
    } else {
        format!("{id:016x}")
    }
}

/// A lease id argument, as etcdctl's `leaseFromArgs` parses it.
fn lease_arg(arg: &str) -> Result<i64, CtlError> {
    flags::parse_int_base(arg, 16)
        .map_err(|e| CtlError::bad_args(format!("bad lease ID arg ({e}), expecting ID in Hex")))
}

/// The Go client's flat response: the header's fields, then the response's own.
fn flat(h: &Option<ResponseHeader>) -> Obj {
    let h = (*h).unwrap_or_default();
    Obj::new()
        .num("cluster_id", h.cluster_id)
        .num("member_id", h.member_id)
        .num("revision", h.revision)
        .num("raft_term", h.raft_term)
}

/// The protobuf printer's output for a lease response: its header alone.
fn header_pb(h: &Option<ResponseHeader>) {
    out(&(*h).unwrap_or_default().encode_to_vec());
}

/// Runs a unary call; any failure exits with "bad connection", as etcdctl's lease
/// timetolive and list do.
fn unary_bad_connection<T, F, Fut>(ctx: &mut Ctx, call: F) -> Result<T, CtlError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    ctx.unary(call)
        .map_err(|e| CtlError::new(ExitCode::BadConnection, e.msg))
}

/// `etcdctl lease grant <ttl>`.
pub fn grant(ctx: &mut Ctx, args: &[String]) -> Result<(), CtlError> {
    if args.len() != 1 {
        return Err(CtlError::bad_args("lease grant command needs TTL argument"));
    }
    let ttl = flags::parse_int_base(&args[0], 10)
        .map_err(|e| CtlError::bad_args(format!("bad TTL ({e})")))?;
    let client = ctx.client()?;
    let resp = ctx
        .unary(|| {
            let mut l = client.lease();
            async move { l.lease_grant(LeaseGrantRequest { ttl, id: 0 }).await }
        })
        .map_err(|e| CtlError::error(format!("failed to grant lease ({})", e.msg)))?;
    match ctx.format()? {
        Format::Simple => {
            out(format!("lease {} granted with TTL({}s)\n", hex16(resp.id), resp.ttl).as_bytes())
        }
        Format::Json => {
            let s = flat(&resp.header)
                .num_always("ID", resp.id)
                .num_always("TTL", resp.ttl)
                .raw("Error", &json::string(&resp.error))
                .end();
            out(format!("{s}\n").as_bytes());
        }
        Format::Fields => {
            let mut s = String::new();
            fields::hdr(&mut s, &resp.header);
            s.push_str(&format!("\"ID\" : {}\n\"TTL\" : {}\n", resp.id, resp.ttl));
            out(s.as_bytes());
        }
        Format::Protobuf => header_pb(&resp.header),
        f @ Format::Table => return Err(f.unsupported()),
    }
    Ok(())
}

/// `etcdctl lease revoke <leaseID>`.
pub fn revoke(ctx: &mut Ctx, args: &[String]) -> Result<(), CtlError> {
    if args.len() != 1 {
        return Err(CtlError::bad_args("lease revoke command needs 1 argument"));
    }
    let id = lease_arg(&args[0])?;
    let client = ctx.client()?;
    let resp = ctx
        .unary(|| {
            let mut l = client.lease();
            async move { l.lease_revoke(LeaseRevokeRequest { id }).await }
        })
        .map_err(|e| CtlError::error(format!("failed to revoke lease ({})", e.msg)))?;
    match ctx.format()? {
        Format::Simple => out(format!("lease {} revoked\n", hex16(id)).as_bytes()),
        Format::Json => {
            let s = Obj::new().obj("header", json::header(&resp.header)).end();
            out(format!("{s}\n").as_bytes());
        }
        Format::Fields => {
            let mut s = String::new();
            fields::hdr(&mut s, &resp.header);
            out(s.as_bytes());
        }
        Format::Protobuf => {
            // The Go client's revoke response is not a protobuf message; etcdctl says so
            // with Go's %v of it.
            let h = resp.header.unwrap_or_default();
            return Err(CtlError::new(
                ExitCode::BadFeature,
                format!(
                    "marshal unsupported for type clientv3.LeaseRevokeResponse ({{cluster_id:{} member_id:{} revision:{} raft_term:{}  {{}} [] 0}})",
                    h.cluster_id, h.member_id, h.revision, h.raft_term
                ),
            ));
        }
        f @ Format::Table => return Err(f.unsupported()),
    }
    Ok(())
}

/// `etcdctl lease timetolive <leaseID> [--keys]`.
pub fn time_to_live(ctx: &mut Ctx, args: &[String]) -> Result<(), CtlError> {
    if args.len() != 1 {
        return Err(CtlError::bad_args(
            "lease timetolive command needs lease ID as argument",
        ));
    }
    let id = lease_arg(&args[0])?;
    let keys = ctx.flags.bool("keys");
    let client = ctx.client()?;
    let resp = unary_bad_connection(ctx, || {
        let mut l = client.lease();
        async move {
            l.lease_time_to_live(LeaseTimeToLiveRequest { id, keys })
                .await
        }
    })?;
    match ctx.format()? {
        Format::Simple => {
            if resp.granted_ttl == 0 && resp.ttl == -1 {
                out(format!("lease {} already expired\n", hex16(resp.id)).as_bytes());
                return Ok(());
            }
            let mut s = format!(
                "lease {} granted with TTL({}s), remaining({}s)",
                hex16(resp.id),
                resp.granted_ttl,
                resp.ttl
            );
            if keys {
                let ks: Vec<String> = resp
                    .keys
                    .iter()
                    .map(|k| String::from_utf8_lossy(k).into_owned())
                    .collect();
                s.push_str(&format!(", attached keys([{}])", ks.join(" ")));
            }
            s.push('\n');
            out(s.as_bytes());
        }
        Format::Json => {
            let keys = if resp.keys.is_empty() {
                "null".to_string()
            } else {
                let items: Vec<String> = resp
                    .keys
                    .iter()
                    .map(|k| format!("\"{}\"", gofmt::base64(k)))
                    .collect();
                format!("[{}]", items.join(","))
            };
            let s = flat(&resp.header)
                .num_always("id", resp.id)
                .num_always("ttl", resp.ttl)
                .num_always("granted-ttl", resp.granted_ttl)
                .raw("keys", &keys)
                .end();
            out(format!("{s}\n").as_bytes());
        }
        Format::Fields => {
            let mut s = String::new();
            fields::hdr(&mut s, &resp.header);
            s.push_str(&format!(
                "\"ID\" : {}\n\"TTL\" : {}\n\"GrantedTTL\" : {}\n",
                resp.id, resp.ttl, resp.granted_ttl
            ));
            for k in &resp.keys {
                s.push_str(&format!("\"Key\" : {}\n", gofmt::quote(k)));
            }
            out(s.as_bytes());
        }
        Format::Protobuf => header_pb(&resp.header),
        f @ Format::Table => return Err(f.unsupported()),
    }
    Ok(())
}

/// `etcdctl lease list`.
pub fn list(ctx: &mut Ctx, _args: &[String]) -> Result<(), CtlError> {
    let client = ctx.client()?;
    let resp = unary_bad_connection(ctx, || {
        let mut l = client.lease();
        async move { l.lease_leases(LeaseLeasesRequest {}).await }
    })?;
    match ctx.format()? {
        Format::Simple => {
            let mut s = format!("found {} leases\n", resp.leases.len());
            for l in &resp.leases {
                s.push_str(&format!("{}\n", hex16(l.id)));
            }
            out(s.as_bytes());
        }
        Format::Json => {
            let items: Vec<String> = resp
                .leases
                .iter()
                .map(|l| Obj::new().num_always("id", l.id).end())
                .collect();
            let s = flat(&resp.header)
                .raw("leases", &format!("[{}]", items.join(",")))
                .end();
            out(format!("{s}\n").as_bytes());
        }
        Format::Fields => {
            let mut s = String::new();
            fields::hdr(&mut s, &resp.header);
            for l in &resp.leases {
                s.push_str(&format!("\"ID\" : {}\n", l.id));
            }
            out(s.as_bytes());
        }
        Format::Protobuf => header_pb(&resp.header),
        f @ Format::Table => return Err(f.unsupported()),
    }
    Ok(())
}

/// Prints one keep-alive answer.
fn print_keep_alive(
    format: Format,
    r: &cairn_proto::etcdserverpb::LeaseKeepAliveResponse,
) -> Result<(), CtlError> {
    match format {
        Format::Simple => {
            out(format!("lease {} keepalived with TTL({})\n", hex16(r.id), r.ttl).as_bytes())
        }
        Format::Json => {
            let s = flat(&r.header)
                .num_always("ID", r.id)
                .num_always("TTL", r.ttl)
                .end();
            out(format!("{s}\n").as_bytes());
        }
        Format::Fields => {
            let mut s = String::new();
            fields::hdr(&mut s, &r.header);
            s.push_str(&format!("\"ID\" : {}\n\"TTL\" : {}\n", r.id, r.ttl));
            out(s.as_bytes());
        }
        Format::Protobuf => header_pb(&r.header),
        f @ Format::Table => return Err(f.unsupported()),
    }
    Ok(())
}

/// `etcdctl lease keep-alive [--once] <leaseID>`: renews until the lease is gone (the Go
/// client renews every third of the TTL), or once.
pub fn keep_alive(ctx: &mut Ctx, args: &[String]) -> Result<(), CtlError> {
    if args.len() != 1 {
        return Err(CtlError::bad_args(
            "lease keep-alive command needs lease ID as argument",
        ));
    }
    let id = lease_arg(&args[0])?;
    let once = ctx.flags.bool("once");
    let client = ctx.client()?;
    let format = ctx.format()?;
    let timeout = ctx.command_timeout();
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let mut lease = client.lease();
    let result: Result<(), CtlError> = ctx.block_on(async move {
        let not_found = || {
            CtlError::new(
                ExitCode::BadConnection,
                "etcdserver: requested lease not found",
            )
        };
        let start = async {
            let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
            lease.lease_keep_alive(stream).await
        };
        let _ = tx.send(LeaseKeepAliveRequest { id }).await;
        let mut inbound = match tokio::time::timeout(timeout, start).await {
            Ok(Ok(r)) => r.into_inner(),
            Ok(Err(s)) => {
                return Err(CtlError::new(
                    ExitCode::BadConnection,
                    status_message(&s).msg,
                ))
            }
            Err(_) => {
                return Err(CtlError::new(
                    ExitCode::BadConnection,
                    "context deadline exceeded",
                ))
            }
        };
        loop {
            let next = if once {
                match tokio::time::timeout(timeout, inbound.message()).await {
                    Ok(n) => n,
                    Err(_) => {
                        return Err(CtlError::new(
                            ExitCode::BadConnection,
                            "context deadline exceeded",
                        ))
                    }
                }
            } else {
                inbound.message().await
            };
            let resp = match next {
                Ok(Some(r)) => r,
                Ok(None) => return Err(not_found()),
                Err(s) => {
                    return Err(CtlError::new(
                        ExitCode::BadConnection,
                        status_message(&s).msg,
                    ))
                }
            };
            if resp.ttl <= 0 {
                if once {
                    return Err(not_found());
                }
                if format == Format::Simple {
                    out(format!("lease {} expired or revoked.\n", hex16(id)).as_bytes());
                }
                return Ok(());
            }
            print_keep_alive(format, &resp)?;
            if once {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_secs(resp.ttl as u64) / 3).await;
            if tx.send(LeaseKeepAliveRequest { id }).await.is_err() {
                return Ok(());
            }
        }
    })?;
    result
}
