//! `member add`, `list`, `promote`, `remove` and `update`.

use cairn_proto::etcdserverpb::{
    Member, MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse,
    MemberPromoteRequest, MemberRemoveRequest, MemberUpdateRequest, ResponseHeader,
};
use prost::Message;

use crate::global::{CtlError, Ctx, Format};
use crate::go::flags::{Kind, Spec};
use crate::go::gofmt;
use crate::output::json::{self, Obj};
use crate::output::printer::{fields, out, protobuf};
use crate::output::table;

/// `member list`'s long description.
pub const LIST_LONG: &str = "When --write-out is set to simple, this command prints out comma-separated member lists for each endpoint.
The items in the lists are ID, Status, Name, Peer Addrs, Client Addrs, Is Learner.
";

fn rows(r: &MemberListResponse) -> Vec<Vec<String>> {
    r.members
        .iter()
        .map(|m| {
            vec![
                format!("{:x}", m.id),
                if m.name.is_empty() {
                    "unstarted"
                } else {
                    "started"
                }
                .to_string(),
                m.name.clone(),
                m.peer_ur_ls.join(","),
                m.client_ur_ls.join(","),
                m.is_learner.to_string(),
            ]
        })
        .collect()
}

fn member_json(m: &Member) -> String {
    Obj::new()
        .num("ID", m.id)
        .str("name", &m.name)
        .list(
            "peerURLs",
            m.peer_ur_ls.iter().map(|u| json::string(u)).collect(),
        )
        .list(
            "clientURLs",
            m.client_ur_ls.iter().map(|u| json::string(u)).collect(),
        )
        .flag("isLearner", m.is_learner)
        .end()
}

/// etcdctl 3.5's hand-built JSON for `member list -w json --hex`.
fn hex_json(r: &MemberListResponse) -> String {
    let h = r.header.unwrap_or_default();
    let mut s = format!(
        "{{\"header\":{{\"cluster_id\":\"{:x}\",\"member_id\":\"{:x}\",\"raft_term\":{}",
        h.cluster_id, h.member_id, h.raft_term
    );
    for (i, m) in r.members.iter().enumerate() {
        if i == 0 {
            s.push_str("},\"members\":[{\"ID\":\"");
        } else {
            s.push_str(",{\"ID\":\"");
        }
        s.push_str(&format!("{:x}", m.id));
        s.push_str(&format!("\",\"name\":\"{}\",\"peerURLs\":", m.name));
        s.push_str(&json::strings(&m.peer_ur_ls));
        s.push_str(",\"clientURLS\":");
        s.push_str(&json::strings(&m.client_ur_ls));
        s.push('}');
        if i == r.members.len() - 1 {
            s.push_str("]}");
        }
    }
    s
}

/// `etcdctl member list`.
pub fn list(ctx: &mut Ctx, _args: &[String]) -> Result<(), CtlError> {
    let client = ctx.client()?;
    let resp = ctx.unary(|| {
        let mut c = client.cluster();
        async move {
            c.member_list(MemberListRequest { linearizable: true })
                .await
        }
    })?;
    match ctx.format()? {
        Format::Simple => {
            let mut s = String::new();
            for row in rows(&resp) {
                s.push_str(&row.join(", "));
                s.push('\n');
            }
            out(s.as_bytes());
        }
        Format::Json if ctx.hex() => out(format!("{}\n", hex_json(&resp)).as_bytes()),
        Format::Json => {
            let s = Obj::new()
                .obj("header", json::header(&resp.header))
                .list("members", resp.members.iter().map(member_json).collect())
                .end();
            out(format!("{s}\n").as_bytes());
        }
        Format::Fields => {
            let mut s = String::new();
            fields::hdr(&mut s, &resp.header);
            for m in &resp.members {
                s.push_str(&format!("\"ID\" : {}\n", m.id));
                s.push_str(&format!("\"Name\" : {}\n", gofmt::quote(m.name.as_bytes())));
                for u in &m.peer_ur_ls {
                    s.push_str(&format!("\"PeerURL\" : {}\n", gofmt::quote(u.as_bytes())));
                }
                for u in &m.client_ur_ls {
                    s.push_str(&format!("\"ClientURL\" : {}\n", gofmt::quote(u.as_bytes())));
                }
                s.push_str(&format!("\"IsLearner\" : {}\n\n", m.is_learner));
            }
            out(s.as_bytes());
        }
        Format::Table => {
            let headers = [
                "ID",
                "STATUS",
                "NAME",
                "PEER ADDRS",
                "CLIENT ADDRS",
                "IS LEARNER",
            ];
            out(table::render(&headers, &rows(&resp)).as_bytes());
        }
        Format::Protobuf => protobuf(&resp),
    }
    Ok(())
}

/// `member add`'s flags.
pub const ADD_FLAGS: &[Spec] = &[
    Spec::new(
        "learner",
        Kind::Bool,
        "false",
        "indicates if the new member is raft learner",
    ),
    Spec::new(
        "peer-urls",
        Kind::Str,
        "",
        "comma separated peer URLs for the new member.",
    ),
];

/// `member update`'s flags.
pub const UPDATE_FLAGS: &[Spec] = &[Spec::new(
    "peer-urls",
    Kind::Str,
    "",
    "comma separated peer URLs for the updated member.",
)];

/// `member promote`'s long description.
pub const PROMOTE_LONG: &str =
    "Promotes a non-voting learner member to a voting one in the cluster.
";

/// Parses a member ID as Go's `strconv.ParseUint(s, 16, 64)` does; the error is Go's.
pub fn parse_hex_id(s: &str) -> Result<u64, String> {
    let fail = |why: &str| {
        format!(
            "strconv.ParseUint: parsing {}: {why}",
            gofmt::quote(s.as_bytes())
        )
    };
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(fail("invalid syntax"));
    }
    u64::from_str_radix(s, 16).map_err(|_| fail("value out of range"))
}

/// The one `<memberID>` argument of remove, update and promote.
fn member_id_arg(args: &[String]) -> Result<u64, CtlError> {
    if args.len() != 1 {
        return Err(CtlError::bad_args("member ID is not provided"));
    }
    parse_hex_id(&args[0])
        .map_err(|e| CtlError::bad_args(format!("bad member ID arg ({e}), expecting ID in Hex")))
}

/// The `--peer-urls` list, checked as the Go client checks it before sending.
fn peer_urls(ctx: &Ctx) -> Vec<String> {
    ctx.flags
        .str("peer-urls")
        .split(',')
        .map(str::to_string)
        .collect()
}

/// A membership change's response: its header and the members after the change.
struct Change<'a, M> {
    resp: &'a M,
    header: &'a Option<ResponseHeader>,
    members: &'a [Member],
}

/// Prints a membership change's response in `format`; `simple` is the simple line.
/// Only simple, json and protobuf print these; the RPC has been made either way.
fn print_change<M: Message>(
    format: Format,
    c: Change<'_, M>,
    simple: String,
    member: Option<&Member>,
) -> Result<(), CtlError> {
    match format {
        Format::Simple => out(simple.as_bytes()),
        Format::Json => {
            let s = Obj::new()
                .obj("header", json::header(c.header))
                .obj("member", member.map(member_json))
                .list("members", c.members.iter().map(member_json).collect())
                .end();
            out(format!("{s}\n").as_bytes());
        }
        Format::Protobuf => protobuf(c.resp),
        Format::Fields | Format::Table => return Err(format.unsupported()),
    }
    Ok(())
}

fn cluster_id(h: &Option<ResponseHeader>) -> u64 {
    h.as_ref().map_or(0, |h| h.cluster_id)
}

/// The lines `member add` prints after the simple line: the new member's settings.
fn add_env(name: &str, given_urls: &str, r: &MemberAddResponse) -> String {
    let new_id = r.member.as_ref().map_or(0, |m| m.id);
    let mut conf = Vec::new();
    for m in &r.members {
        let n = if m.id == new_id { name } else { &m.name };
        for u in &m.peer_ur_ls {
            conf.push(format!("{n}={u}"));
        }
    }
    format!(
        "\nETCD_NAME={}\nETCD_INITIAL_CLUSTER={}\nETCD_INITIAL_ADVERTISE_PEER_URLS={}\nETCD_INITIAL_CLUSTER_STATE=\"existing\"\n",
        gofmt::quote(name.as_bytes()),
        gofmt::quote(conf.join(",").as_bytes()),
        gofmt::quote(given_urls.as_bytes()),
    )
}

/// `etcdctl member add <memberName> --peer-urls=... [--learner]`.
pub fn add(ctx: &mut Ctx, args: &[String]) -> Result<(), CtlError> {
    let Some(name) = args.first() else {
        return Err(CtlError::bad_args("member name not provided"));
    };
    if args.len() > 1 {
        let mut msg = "too many arguments".to_string();
        for a in args {
            if a.to_lowercase().starts_with("http") {
                msg.push_str(&format!(", did you mean --peer-urls={a}"));
            }
        }
        return Err(CtlError::bad_args(msg));
    }
    let given = ctx.flags.str("peer-urls").to_string();
    if given.is_empty() {
        return Err(CtlError::bad_args("member peer urls not provided"));
    }
    let urls = peer_urls(ctx);
    let is_learner = ctx.flags.bool("learner");
    let client = ctx.client()?;
    crate::go::url::check(&urls).map_err(CtlError::error)?;
    let resp = ctx.unary(|| {
        let mut c = client.cluster();
        let req = MemberAddRequest {
            peer_ur_ls: urls.clone(),
            is_learner,
        };
        async move { c.member_add(req).await }
    })?;
    let format = ctx.format()?;
    let id = resp.member.as_ref().map_or(0, |m| m.id);
    let simple = format!(
        "Member {id:16x} added to cluster {:16x}\n",
        cluster_id(&resp.header)
    );
    let change = Change {
        resp: &resp,
        header: &resp.header,
        members: &resp.members,
    };
    print_change(format, change, simple, resp.member.as_ref())?;
    if format == Format::Simple {
        out(add_env(name, &given, &resp).as_bytes());
    }
    Ok(())
}

/// Prints a remove, update or promote response; the simple line is
/// `Member ID <verb> cluster ID`.
fn print_verb<M: Message>(
    ctx: &mut Ctx,
    id: u64,
    verb: &str,
    change: Change<'_, M>,
) -> Result<(), CtlError> {
    let simple = format!(
        "Member {id:16x} {verb} cluster {:16x}\n",
        cluster_id(change.header)
    );
    print_change(ctx.format()?, change, simple, None)
}

/// `etcdctl member remove <memberID>`.
pub fn remove(ctx: &mut Ctx, args: &[String]) -> Result<(), CtlError> {
    let id = member_id_arg(args)?;
    let client = ctx.client()?;
    let resp = ctx.unary(|| {
        let mut c = client.cluster();
        async move { c.member_remove(MemberRemoveRequest { id }).await }
    })?;
    let change = Change {
        resp: &resp,
        header: &resp.header,
        members: &resp.members,
    };
    print_verb(ctx, id, "removed from", change)
}

/// `etcdctl member update <memberID> --peer-urls=...`.
pub fn update(ctx: &mut Ctx, args: &[String]) -> Result<(), CtlError> {
    let id = member_id_arg(args)?;
    if ctx.flags.str("peer-urls").is_empty() {
        return Err(CtlError::bad_args("member peer urls not provided"));
    }
    let urls = peer_urls(ctx);
    let client = ctx.client()?;
    crate::go::url::check(&urls).map_err(CtlError::error)?;
    let resp = ctx.unary(|| {
        let mut c = client.cluster();
        let req = MemberUpdateRequest {
            id,
            peer_ur_ls: urls.clone(),
        };
        async move { c.member_update(req).await }
    })?;
    let change = Change {
        resp: &resp,
        header: &resp.header,
        members: &resp.members,
    };
    print_verb(ctx, id, "updated in", change)
}

/// `etcdctl member promote <memberID>`.
pub fn promote(ctx: &mut Ctx, args: &[String]) -> Result<(), CtlError> {
    let id = member_id_arg(args)?;
    let client = ctx.client()?;
    let resp = ctx.unary(|| {
        let mut c = client.cluster();
        async move { c.member_promote(MemberPromoteRequest { id }).await }
    })?;
    let change = Change {
        resp: &resp,
        header: &resp.header,
        members: &resp.members,
    };
    print_verb(ctx, id, "promoted in", change)
}
