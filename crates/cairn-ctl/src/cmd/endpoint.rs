//! `endpoint status`, `endpoint health` and `endpoint hashkv`: one call per endpoint
//! (or per member with `--cluster`), printed in every format etcdctl supports for them.

use std::time::Instant;

use cairn_proto::etcdserverpb::{
    AlarmRequest, HashKvRequest, HashKvResponse, RangeRequest, StatusRequest, StatusResponse,
};

use crate::global::{rpc_error_text, status_message, CtlError, Ctx, ExitCode, Format};
use crate::go::flags::{Kind, Spec};
use crate::go::gofmt;
use crate::output::json::{self, Obj};
use crate::output::printer::{fields, out};
use crate::output::table;

/// The `endpoint` group's flag, inherited by its subcommands.
pub const CLUSTER_FLAG: &[Spec] = &[Spec::new(
    "cluster",
    Kind::Bool,
    "false",
    "use all endpoints from the cluster member list",
)];

/// `endpoint hashkv`'s flags.
pub const HASHKV_FLAGS: &[Spec] = &[Spec::new(
    "rev",
    Kind::Int,
    "0",
    "maximum revision to hash (default: all revisions)",
)];

/// `endpoint status`'s long description.
pub const STATUS_LONG: &str = "When --write-out is set to simple, this command prints out comma-separated status lists for each endpoint.
The items in the lists are endpoint, ID, version, db size, is leader, is learner, raft term, raft index, raft applied index, errors.
";

fn status_json(r: &StatusResponse) -> String {
    Obj::new()
        .obj("header", json::header(&r.header))
        .str("version", &r.version)
        .num("dbSize", r.db_size)
        .num("leader", r.leader)
        .num("raftIndex", r.raft_index)
        .num("raftTerm", r.raft_term)
        .num("raftAppliedIndex", r.raft_applied_index)
        .list("errors", r.errors.iter().map(|e| json::string(e)).collect())
        .num("dbSizeInUse", r.db_size_in_use)
        .flag("isLearner", r.is_learner)
        .end()
}

fn member_id(r: &StatusResponse) -> u64 {
    r.header.as_ref().map_or(0, |h| h.member_id)
}

fn status_rows(list: &[(String, StatusResponse)]) -> Vec<Vec<String>> {
    list.iter()
        .map(|(ep, r)| {
            vec![
                ep.clone(),
                format!("{:x}", member_id(r)),
                r.version.clone(),
                gofmt::humanize_bytes(r.db_size.max(0) as u64),
                (r.leader == member_id(r)).to_string(),
                r.is_learner.to_string(),
                r.raft_term.to_string(),
                r.raft_index.to_string(),
                r.raft_applied_index.to_string(),
                r.errors.join(", "),
            ]
        })
        .collect()
}

/// `etcdctl endpoint status`.
pub fn status(ctx: &mut Ctx, _args: &[String]) -> Result<(), CtlError> {
    ctx.client()?;
    let mut list = Vec::new();
    let mut failed = false;
    for ep in ctx.endpoints_from_cluster()? {
        let client = ctx.client_for(&ep)?;
        match ctx.unary(|| {
            let mut m = client.maintenance();
            async move { m.status(StatusRequest {}).await }
        }) {
            Ok(resp) => list.push((ep, resp)),
            Err(e) => {
                failed = true;
                eprintln!("Failed to get the status of endpoint {ep} ({})", e.msg);
            }
        }
    }
    match ctx.format()? {
        Format::Simple => {
            let mut s = String::new();
            for row in status_rows(&list) {
                s.push_str(&row.join(", "));
                s.push('\n');
            }
            out(s.as_bytes());
        }
        Format::Json => {
            out(json_per_endpoint(&list, "Status", status_json).as_bytes());
        }
        Format::Fields => {
            let mut s = String::new();
            for (ep, r) in &list {
                fields::hdr(&mut s, &r.header);
                s.push_str(&format!(
                    "\"Version\" : {}\n",
                    gofmt::quote(r.version.as_bytes())
                ));
                s.push_str(&format!("\"DBSize\" : {}\n", r.db_size));
                s.push_str(&format!("\"Leader\" : {}\n", r.leader));
                s.push_str(&format!("\"IsLearner\" : {}\n", r.is_learner));
                s.push_str(&format!("\"RaftIndex\" : {}\n", r.raft_index));
                s.push_str(&format!("\"RaftTerm\" : {}\n", r.raft_term));
                s.push_str(&format!(
                    "\"RaftAppliedIndex\" : {}\n",
                    r.raft_applied_index
                ));
                s.push_str(&format!("\"Errors\" : [{}]\n", r.errors.join(" ")));
                s.push_str(&format!(
                    "\"Endpoint\" : {}\n\n",
                    gofmt::quote(ep.as_bytes())
                ));
            }
            out(s.as_bytes());
        }
        Format::Table => {
            let headers = [
                "ENDPOINT",
                "ID",
                "VERSION",
                "DB SIZE",
                "IS LEADER",
                "IS LEARNER",
                "RAFT TERM",
                "RAFT INDEX",
                "RAFT APPLIED INDEX",
                "ERRORS",
            ];
            out(table::render(&headers, &status_rows(&list)).as_bytes());
        }
        f @ Format::Protobuf => return Err(f.unsupported()),
    }
    if failed {
        // The failures are printed above: etcdctl exits 1 without another word.
        return Err(CtlError::printed(ExitCode::Error));
    }
    Ok(())
}

/// One endpoint's health.
struct Health {
    ep: String,
    health: bool,
    took: String,
    error: String,
}

/// `etcdctl endpoint health`.
pub fn health(ctx: &mut Ctx, _args: &[String]) -> Result<(), CtlError> {
    ctx.client()?;
    let mut list = Vec::new();
    for ep in ctx.endpoints_from_cluster()? {
        let client = ctx.client_for(&ep)?;
        let start = Instant::now();
        let get = ctx.block_on({
            let mut kv = client.kv();
            let timeout = ctx.command_timeout();
            async move {
                let req = RangeRequest {
                    key: b"health".to_vec(),
                    ..RangeRequest::default()
                };
                tokio::time::timeout(timeout, kv.range(req)).await
            }
        })?;
        let took = gofmt::duration(start.elapsed());
        let mut h = Health {
            ep: ep.clone(),
            health: false,
            took,
            error: String::new(),
        };
        if let Ok(Err(s)) = &get {
            ctx.log_against(&ep);
            ctx.log_rpc_failure_by("client", &rpc_error_text(s));
        }
        match get {
            Ok(Ok(_)) => h.health = true,
            Ok(Err(s)) if s.message() == "etcdserver: permission denied" => h.health = true,
            Ok(Err(s)) => h.error = status_message(&s).msg,
            Err(_) => h.error = "context deadline exceeded".to_string(),
        }
        if h.health {
            let alarms = ctx.block_on({
                let mut m = client.maintenance();
                async move { m.alarm(AlarmRequest::default()).await }
            })?;
            match alarms {
                Ok(resp) => {
                    let resp = resp.into_inner();
                    if !resp.alarms.is_empty() {
                        h.health = false;
                        h.error = "Active Alarm(s): ".to_string();
                        for a in &resp.alarms {
                            h.error.push_str(match a.alarm {
                                1 => "NOSPACE ",
                                2 => "CORRUPT ",
                                _ => "UNKNOWN ",
                            });
                        }
                    }
                }
                Err(_) => {
                    h.health = false;
                    h.error = "Unable to fetch the alarm list".to_string();
                }
            }
        }
        list.push(h);
    }
    match ctx.format()? {
        Format::Simple => {
            for h in &list {
                if h.error.is_empty() {
                    out(format!(
                        "{} is healthy: successfully committed proposal: took = {}\n",
                        h.ep, h.took
                    )
                    .as_bytes());
                } else {
                    eprintln!(
                        "{} is unhealthy: failed to commit proposal: {}",
                        h.ep, h.error
                    );
                }
            }
        }
        Format::Json => {
            let items: Vec<String> = list
                .iter()
                .map(|h| {
                    Obj::new()
                        .raw("endpoint", &json::string(&h.ep))
                        .raw("health", if h.health { "true" } else { "false" })
                        .raw("took", &json::string(&h.took))
                        .str("error", &h.error)
                        .end()
                })
                .collect();
            out(format!("[{}]\n", items.join(",")).as_bytes());
        }
        Format::Fields => {
            let mut s = String::new();
            for h in &list {
                s.push_str(&format!(
                    "\"Endpoint\" : {}\n",
                    gofmt::quote(h.ep.as_bytes())
                ));
                s.push_str(&format!("\"Health\" : {}\n", h.health));
                s.push_str(&format!("\"Took\" : {}\n", h.took));
                s.push_str(&format!("\"Error\" : {}\n\n", h.error));
            }
            out(s.as_bytes());
        }
        Format::Table => {
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|h| {
                    vec![
                        h.ep.clone(),
                        h.health.to_string(),
                        h.took.clone(),
                        h.error.clone(),
                    ]
                })
                .collect();
            out(table::render(&["ENDPOINT", "HEALTH", "TOOK", "ERROR"], &rows).as_bytes());
        }
        f @ Format::Protobuf => return Err(f.unsupported()),
    }
    if list.iter().any(|h| !h.error.is_empty()) {
        return Err(CtlError::error("unhealthy cluster"));
    }
    Ok(())
}

fn hashkv_json(r: &HashKvResponse) -> String {
    Obj::new()
        .obj("header", json::header(&r.header))
        .num("hash", r.hash)
        .num("compact_revision", r.compact_revision)
        .end()
}

/// `etcdctl endpoint hashkv`.
pub fn hashkv(ctx: &mut Ctx, _args: &[String]) -> Result<(), CtlError> {
    ctx.client()?;
    let rev = ctx.flags.int("rev");
    let mut list = Vec::new();
    let mut err = None;
    for ep in ctx.endpoints_from_cluster()? {
        let client = ctx.client_for(&ep)?;
        match ctx.unary(|| {
            let mut m = client.maintenance();
            async move { m.hash_kv(HashKvRequest { revision: rev }).await }
        }) {
            Ok(resp) => list.push((ep, resp)),
            Err(e) => {
                eprintln!("Failed to get the hash of endpoint {ep} ({})", e.msg);
                err = Some(e);
            }
        }
    }
    match ctx.format()? {
        Format::Simple => {
            let mut s = String::new();
            for (ep, r) in &list {
                s.push_str(&format!("{ep}, {}\n", r.hash));
            }
            out(s.as_bytes());
        }
        Format::Json => {
            out(json_per_endpoint(&list, "HashKV", hashkv_json).as_bytes());
        }
        Format::Fields => {
            let mut s = String::new();
            for (ep, r) in &list {
                fields::hdr(&mut s, &r.header);
                s.push_str(&format!("\"Endpoint\" : {}\n", gofmt::quote(ep.as_bytes())));
                s.push_str(&format!("\"Hash\" : {}\n\n", r.hash));
            }
            out(s.as_bytes());
        }
        Format::Table => {
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|(ep, r)| vec![ep.clone(), r.hash.to_string()])
                .collect();
            out(table::render(&["ENDPOINT", "HASH"], &rows).as_bytes());
        }
        f @ Format::Protobuf => return Err(f.unsupported()),
    }
    match err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// etcdctl's JSON for a per-endpoint result list: `[{"Endpoint":..,"<key>":..},...]`.
fn json_per_endpoint<R>(list: &[(String, R)], key: &str, render: fn(&R) -> String) -> String {
    let items: Vec<String> = list
        .iter()
        .map(|(ep, r)| {
            Obj::new()
                .raw("Endpoint", &json::string(ep))
                .raw(key, &render(r))
                .end()
        })
        .collect();
    format!("[{}]\n", items.join(","))
}
