//! `lease grant`, `revoke`, `timetolive`, `list` and `keep-alive`, printed as etcdctl 3.5
//! prints clientv3's lease responses.
//!
//! clientv3 wraps most lease responses in its own structs that embed the response header,
//! which shapes etcdctl's output: their JSON has the header's fields at the top level, and
//! their "protobuf" output is the header's encoding alone (the only `Marshal` the struct
//! has). `lease revoke` returns a struct with no `Marshal` at all, so `-w protobuf` fails.
//! No lease command prints a table.

use std::time::Duration;

use cairn_proto::etcdserverpb::{
    LeaseGrantRequest, LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseLeasesRequest,
    LeaseRevokeRequest, LeaseTimeToLiveRequest, ResponseHeader,
};
use tokio_stream::wrappers::ReceiverStream;

use crate::global::{status_message, CtlError, Ctx, ExitCode, Format};
use crate::go::flags::{self, Kind, Spec};
use crate::go::gofmt::{self, hex016};
use crate::output::json::{self, Obj};
use crate::output::printer::{fields, out, protobuf};

/// `lease timetolive`'s flags.
pub const TIMETOLIVE_FLAGS: &[Spec] = &[Spec::new(
    "keys",
    Kind::Bool,
    "false",
    "Get keys attached to this lease",
)];

/// `lease keep-alive`'s flags.
pub const KEEPALIVE_FLAGS: &[Spec] = &[Spec::new(
    "once",
    Kind::Bool,
    "false",
    "Resets the keep-alive time to its original value and cobrautl.Exits immediately",
)];

/// A lease ID argument: hexadecimal, as etcdctl's `leaseFromArgs` reads it.
pub fn lease_from_arg(arg: &str) -> Result<i64, CtlError> {
    flags::parse_int_base(arg, 16)
        .map_err(|e| CtlError::bad_args(format!("bad lease ID arg ({e}), expecting ID in Hex")))
}

/// The header's fields at the top level of a JSON object, as Go encodes a struct that
/// embeds `*pb.ResponseHeader`.
fn header_fields(o: Obj, h: &Option<ResponseHeader>) -> Obj {
    let h = h.unwrap_or_default();
    o.num("cluster_id", h.cluster_id)
        .num("member_id", h.member_id)
        .num("revision", h.revision)
        .num("raft_term", h.raft_term)
}

/// The "protobuf" output of a clientv3 struct embedding the header: the header alone.
fn header_pb(h: &Option<ResponseHeader>) {
    protobuf(&h.unwrap_or_default());
}

/// The header as gogo's compact text format writes it (`%v` of a header pointer).
fn header_text(h: &Option<ResponseHeader>) -> String {
    let Some(h) = h else {
        return "<nil>".to_string();
    };
    let fields = [
        ("cluster_id", h.cluster_id.to_string(), h.cluster_id == 0),
        ("member_id", h.member_id.to_string(), h.member_id == 0),
        ("revision", h.revision.to_string(), h.revision == 0),
        ("raft_term", h.raft_term.to_string(), h.raft_term == 0),
    ];
    fields
        .iter()
        .filter(|(_, _, zero)| !zero)
        .map(|(name, v, _)| format!("{name}:{v} "))
        .collect()
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
            let mut c = client.lease();
            async move { c.lease_grant(LeaseGrantRequest { ttl, id: 0 }).await }
        })
        .map_err(|e| CtlError::error(format!("failed to grant lease ({})", e.msg)))?;
    match ctx.format()? {
        Format::Simple => out(format!(
            "lease {} granted with TTL({}s)\n",
            hex016(resp.id),
            resp.ttl
        )
        .as_bytes()),
        Format::Json => {
            let s = header_fields(Obj::new(), &resp.header)
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
    let id = lease_from_arg(&args[0])?;
    let client = ctx.client()?;
    let resp = ctx
        .unary(|| {
            let mut c = client.lease();
            async move { c.lease_revoke(LeaseRevokeRequest { id }).await }
        })
        .map_err(|e| CtlError::error(format!("failed to revoke lease ({})", e.msg)))?;
    match ctx.format()? {
        Format::Simple => out(format!("lease {} revoked\n", hex016(id)).as_bytes()),
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
            return Err(CtlError::new(
                ExitCode::BadFeature,
                format!(
                    "marshal unsupported for type clientv3.LeaseRevokeResponse ({{{} {{}} [] 0}})",
                    header_text(&resp.header)
                ),
            ))
        }
        f @ Format::Table => return Err(f.unsupported()),
    }
    Ok(())
}

/// `etcdctl lease timetolive <leaseID> [--keys]`.
pub fn timetolive(ctx: &mut Ctx, args: &[String]) -> Result<(), CtlError> {
    if args.len() != 1 {
        return Err(CtlError::bad_args(
            "lease timetolive command needs lease ID as argument",
        ));
    }
    // etcdctl builds its client (checking the output format) before reading the ID.
    let client = ctx.client()?;
    let id = lease_from_arg(&args[0])?;
    let keys = ctx.flags.bool("keys");
    let resp = ctx
        .unary(|| {
            let mut c = client.lease();
            async move {
                c.lease_time_to_live(LeaseTimeToLiveRequest { id, keys })
                    .await
            }
        })
        .map_err(|e| CtlError::new(ExitCode::BadConnection, e.msg))?;
    match ctx.format()? {
        Format::Simple => {
            if resp.granted_ttl == 0 && resp.ttl == -1 {
                out(format!("lease {} already expired\n", hex016(resp.id)).as_bytes());
                return Ok(());
            }
            let mut s = format!(
                "lease {} granted with TTL({}s), remaining({}s)",
                hex016(resp.id),
                resp.granted_ttl,
                resp.ttl
            );
            if keys {
                let names: Vec<String> = resp
                    .keys
                    .iter()
                    .map(|k| String::from_utf8_lossy(k).into_owned())
                    .collect();
                s.push_str(&format!(", attached keys([{}])", names.join(" ")));
            }
            out(format!("{s}\n").as_bytes());
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
            let s = header_fields(Obj::new(), &resp.header)
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
    let resp = ctx
        .unary(|| {
            let mut c = client.lease();
            async move { c.lease_leases(LeaseLeasesRequest {}).await }
        })
        .map_err(|e| CtlError::new(ExitCode::BadConnection, e.msg))?;
    match ctx.format()? {
        Format::Simple => {
            let mut s = format!("found {} leases\n", resp.leases.len());
            for l in &resp.leases {
                s.push_str(&format!("{}\n", hex016(l.id)));
            }
            out(s.as_bytes());
        }
        Format::Json => {
            let items: Vec<String> = resp
                .leases
                .iter()
                .map(|l| format!("{{\"id\":{}}}", l.id))
                .collect();
            let s = header_fields(Obj::new(), &resp.header)
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

/// Prints one keep-alive response in `format`.
fn print_keep_alive(format: Format, r: &LeaseKeepAliveResponse) -> Result<(), CtlError> {
    match format {
        Format::Simple => {
            out(format!("lease {} keepalived with TTL({})\n", hex016(r.id), r.ttl).as_bytes())
        }
        Format::Json => {
            let s = header_fields(Obj::new(), &r.header)
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
        Format::Table => return Err(format.unsupported()),
    }
    Ok(())
}

/// A keep-alive stream for lease `id` with its first request sent (etcd answers the call
/// only with its first response). Like clientv3, an unreachable cluster is waited for.
async fn open_keep_alive(
    client: &cairn_client::Client,
    id: i64,
) -> Result<
    (
        tokio::sync::mpsc::Sender<LeaseKeepAliveRequest>,
        tonic::Streaming<LeaseKeepAliveResponse>,
    ),
    CtlError,
> {
    loop {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let _ = tx.send(LeaseKeepAliveRequest { id }).await;
        match client
            .lease()
            .lease_keep_alive(ReceiverStream::new(rx))
            .await
        {
            Ok(s) => return Ok((tx, s.into_inner())),
            Err(s) if cairn_client::stream_broken(&s) => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(s) => {
                return Err(CtlError::new(
                    ExitCode::BadConnection,
                    status_message(&s).msg,
                ))
            }
        }
    }
}

/// `etcdctl lease keep-alive [--once] <leaseID>`.
pub fn keep_alive(ctx: &mut Ctx, args: &[String]) -> Result<(), CtlError> {
    if args.len() != 1 {
        return Err(CtlError::bad_args(
            "lease keep-alive command needs lease ID as argument",
        ));
    }
    let id = lease_from_arg(&args[0])?;
    let client = ctx.client()?;
    let format = ctx.format()?;
    if ctx.flags.bool("once") {
        let resp = ctx.block_on(async move {
            let (_tx, mut stream) = open_keep_alive(&client, id).await?;
            match stream.message().await {
                Ok(Some(r)) if r.ttl > 0 => Ok(r),
                Ok(Some(_)) => Err("etcdserver: requested lease not found".to_string()),
                Ok(None) => Err("context canceled".to_string()),
                Err(s) => Err(status_message(&s).msg),
            }
            .map_err(|e| CtlError::new(ExitCode::BadConnection, e))
        })??;
        return print_keep_alive(format, &resp);
    }
    let result: Result<(), CtlError> = ctx.block_on(async move {
        let (mut tx, mut stream) = open_keep_alive(&client, id).await?;
        let mut ttl = 60;
        let mut answered = tokio::time::Instant::now();
        loop {
            // Like clientv3, give up when no answer comes within the lease's TTL, and open
            // the stream again when the connection broke under it (a member restarting).
            let deadline = answered + Duration::from_secs(ttl as u64);
            let resp = match tokio::time::timeout_at(deadline, stream.message()).await {
                Ok(Ok(Some(r))) => Some(r),
                Ok(Err(s)) if cairn_client::stream_broken(&s) => None,
                _ => break,
            };
            if let Some(resp) = resp {
                if resp.ttl <= 0 {
                    break;
                }
                ttl = resp.ttl;
                answered = tokio::time::Instant::now();
                print_keep_alive(format, &resp)?;
                // clientv3 renews a third of the TTL after each answer, checking twice a
                // second.
                tokio::time::sleep(Duration::from_millis(resp.ttl as u64 * 1000 / 3 + 250)).await;
                if tx.send(LeaseKeepAliveRequest { id }).await.is_ok() {
                    continue;
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            let deadline = answered + Duration::from_secs(ttl as u64);
            match tokio::time::timeout_at(deadline, open_keep_alive(&client, id)).await {
                Ok(Ok(opened)) => (tx, stream) = opened,
                _ => break,
            }
        }
        Ok(())
    })?;
    result?;
    if format == Format::Simple {
        out(format!("lease {} expired or revoked.\n", hex016(id)).as_bytes());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_text_is_gogo_compact() {
        let h = Some(ResponseHeader {
            cluster_id: 1,
            member_id: 2,
            revision: 3,
            raft_term: 0,
        });
        assert_eq!(header_text(&h), "cluster_id:1 member_id:2 revision:3 ");
        assert_eq!(header_text(&None), "<nil>");
    }
}
