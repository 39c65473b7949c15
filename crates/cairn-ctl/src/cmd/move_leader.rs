//! `move-leader`: finds the leader among `--endpoints` with Status and asks it to hand
//! leadership to the given member.

use cairn_proto::etcdserverpb::{MoveLeaderRequest, StatusRequest};

use super::member::parse_hex_id;
use crate::global::{CtlError, Ctx, Format};
use crate::output::json::{self, Obj};
use crate::output::printer::{out, protobuf};

/// `etcdctl move-leader <transferee-member-id>`.
pub fn run(ctx: &mut Ctx, args: &[String]) -> Result<(), CtlError> {
    if args.len() != 1 {
        return Err(CtlError::bad_args("move-leader command needs 1 argument"));
    }
    let target = parse_hex_id(&args[0]).map_err(CtlError::bad_args)?;
    ctx.client()?;
    // etcdctl reads the environment again here, which the first reading makes fatal.
    ctx.apply_env_again(
        "go.etcd.io/etcd/etcdctl/v3/ctlv3/command.transferLeadershipCommandFunc\n\t/tmp/etcd-release-3.5.1/etcd/release/etcd/etcdctl/ctlv3/command/move_leader_command.go:56\n",
    )?;
    let endpoints = ctx.endpoints();
    let mut leader = None;
    for ep in &endpoints {
        let client = ctx.client_for(ep)?;
        ctx.log_against(ep);
        let status = ctx.unary(|| {
            let mut m = client.maintenance();
            async move { m.status(StatusRequest {}).await }
        })?;
        let member_id = status.header.as_ref().map_or(0, |h| h.member_id);
        if member_id == status.leader {
            leader = Some((client, status.leader, ep.clone()));
            break;
        }
    }
    let Some((client, leader_id, leader_ep)) = leader else {
        return Err(CtlError::bad_args(format!(
            "no leader endpoint given at [{}]",
            endpoints.join(" ")
        )));
    };
    ctx.log_against(&leader_ep);
    let resp = ctx.unary(|| {
        let mut m = client.maintenance();
        async move { m.move_leader(MoveLeaderRequest { target_id: target }).await }
    })?;
    match ctx.format()? {
        Format::Simple => {
            out(format!("Leadership transferred from {leader_id:x} to {target:x}\n").as_bytes())
        }
        Format::Json => {
            let s = Obj::new().obj("header", json::header(&resp.header)).end();
            out(format!("{s}\n").as_bytes());
        }
        Format::Protobuf => protobuf(&resp),
        f @ (Format::Fields | Format::Table) => return Err(f.unsupported()),
    }
    Ok(())
}
