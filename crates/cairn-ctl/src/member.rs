//! `member list`.

use cairn_proto::etcdserverpb::{Member, MemberListRequest, MemberListResponse};

use crate::global::{CtlError, Ctx, Format};
use crate::json::{self, Obj};
use crate::printer::{fields, out, protobuf};
use crate::{gofmt, table};

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
