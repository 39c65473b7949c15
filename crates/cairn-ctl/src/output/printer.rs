//! Printing of KV responses (get, put, del, txn) in every `-w` format, as etcdctl's
//! simple, fields, json and protobuf printers do. Other command groups print their own
//! responses in their modules with the helpers here.

use std::io::Write;

use cairn_proto::etcdserverpb::{
    response_op, DeleteRangeResponse, PutResponse, RangeResponse, ResponseHeader, TxnResponse,
};
use cairn_proto::mvccpb::KeyValue;
use prost::Message;

use super::json;
use crate::global::{CtlError, Format};
use crate::go::gofmt;

/// Writes bytes to stdout.
pub fn out(bytes: &[u8]) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(bytes);
    let _ = stdout.flush();
}

/// Writes a message's protobuf encoding, with no newline, as etcdctl does.
pub fn protobuf<M: Message>(m: &M) {
    out(&m.encode_to_vec());
}

/// How the simple printer shows keys and values.
#[derive(Debug, Clone, Copy, Default)]
pub struct Simple {
    /// `--hex`.
    pub hex: bool,
    /// `--print-value-only`.
    pub value_only: bool,
}

impl Simple {
    /// A key-value: its key (unless value-only), then its value, a line each.
    pub fn kv(&self, buf: &mut Vec<u8>, kv: &KeyValue) {
        if !self.value_only {
            self.bytes(buf, &kv.key);
        }
        self.bytes(buf, &kv.value);
    }

    fn bytes(&self, buf: &mut Vec<u8>, b: &[u8]) {
        if self.hex {
            buf.extend_from_slice(gofmt::hex_prefixed(b).as_bytes());
        } else {
            buf.extend_from_slice(b);
        }
        buf.push(b'\n');
    }

    fn get(&self, buf: &mut Vec<u8>, r: &RangeResponse) {
        for kv in &r.kvs {
            self.kv(buf, kv);
        }
    }

    fn put(&self, buf: &mut Vec<u8>, r: &PutResponse) {
        buf.extend_from_slice(b"OK\n");
        if let Some(kv) = &r.prev_kv {
            self.kv(buf, kv);
        }
    }

    fn del(&self, buf: &mut Vec<u8>, r: &DeleteRangeResponse) {
        buf.extend_from_slice(format!("{}\n", r.deleted).as_bytes());
        for kv in &r.prev_kvs {
            self.kv(buf, kv);
        }
    }

    fn txn(&self, buf: &mut Vec<u8>, r: &TxnResponse) {
        buf.extend_from_slice(if r.succeeded {
            b"SUCCESS\n"
        } else {
            b"FAILURE\n"
        });
        for op in &r.responses {
            buf.push(b'\n');
            match &op.response {
                Some(response_op::Response::ResponseRange(g)) => self.get(buf, g),
                Some(response_op::Response::ResponsePut(p)) => self.put(buf, p),
                Some(response_op::Response::ResponseDeleteRange(d)) => self.del(buf, d),
                _ => buf.extend_from_slice(b"unexpected response\n"),
            }
        }
    }
}

/// The fields printer's lines.
pub mod fields {
    use super::*;

    /// The four header lines.
    pub fn hdr(s: &mut String, h: &Option<ResponseHeader>) {
        let h = (*h).unwrap_or_default();
        s.push_str(&format!("\"ClusterID\" : {}\n", h.cluster_id));
        s.push_str(&format!("\"MemberID\" : {}\n", h.member_id));
        s.push_str(&format!("\"Revision\" : {}\n", h.revision));
        s.push_str(&format!("\"RaftTerm\" : {}\n", h.raft_term));
    }

    /// A key-value, each field name prefixed by `pfx`.
    pub fn kv(s: &mut String, pfx: &str, kv: &KeyValue) {
        s.push_str(&format!("\"{pfx}Key\" : {}\n", gofmt::quote(&kv.key)));
        s.push_str(&format!(
            "\"{pfx}CreateRevision\" : {}\n",
            kv.create_revision
        ));
        s.push_str(&format!("\"{pfx}ModRevision\" : {}\n", kv.mod_revision));
        s.push_str(&format!("\"{pfx}Version\" : {}\n", kv.version));
        s.push_str(&format!("\"{pfx}Value\" : {}\n", gofmt::quote(&kv.value)));
        s.push_str(&format!("\"{pfx}Lease\" : {}\n", kv.lease));
    }

    /// A range response.
    pub fn get(s: &mut String, r: &RangeResponse) {
        hdr(s, &r.header);
        for k in &r.kvs {
            kv(s, "", k);
        }
        s.push_str(&format!("\"More\" : {}\n", r.more));
        s.push_str(&format!("\"Count\" : {}\n", r.count));
    }

    /// A put response.
    pub fn put(s: &mut String, r: &PutResponse) {
        hdr(s, &r.header);
        if let Some(k) = &r.prev_kv {
            kv(s, "Prev", k);
        }
    }

    /// A delete response.
    pub fn del(s: &mut String, r: &DeleteRangeResponse) {
        hdr(s, &r.header);
        s.push_str(&format!("\"Deleted\" : {}\n", r.deleted));
        for k in &r.prev_kvs {
            kv(s, "Prev", k);
        }
    }

    /// A txn response.
    pub fn txn(s: &mut String, r: &TxnResponse) {
        hdr(s, &r.header);
        s.push_str(&format!("\"Succeeded\" : {}\n", r.succeeded));
        for op in &r.responses {
            match &op.response {
                Some(response_op::Response::ResponseRange(g)) => get(s, g),
                Some(response_op::Response::ResponsePut(p)) => put(s, p),
                Some(response_op::Response::ResponseDeleteRange(d)) => del(s, d),
                _ => s.push_str("\"Unknown\" : \"\"\n"),
            }
        }
    }
}

/// Go's JSON of the KV responses.
pub mod to_json {
    use super::*;
    use crate::output::json::Obj;

    /// A range response.
    pub fn get(r: &RangeResponse) -> String {
        Obj::new()
            .obj("header", json::header(&r.header))
            .list("kvs", r.kvs.iter().map(json::kv).collect())
            .flag("more", r.more)
            .num("count", r.count)
            .end()
    }

    /// A put response.
    pub fn put(r: &PutResponse) -> String {
        Obj::new()
            .obj("header", json::header(&r.header))
            .obj("prev_kv", r.prev_kv.as_ref().map(json::kv))
            .end()
    }

    /// A delete response.
    pub fn del(r: &DeleteRangeResponse) -> String {
        Obj::new()
            .obj("header", json::header(&r.header))
            .num("deleted", r.deleted)
            .list("prev_kvs", r.prev_kvs.iter().map(json::kv).collect())
            .end()
    }

    /// A txn response.
    pub fn txn(r: &TxnResponse) -> String {
        let ops = r
            .responses
            .iter()
            .map(|op| {
                let inner = match &op.response {
                    Some(response_op::Response::ResponseRange(g)) => {
                        format!("{{\"response_range\":{}}}", get(g))
                    }
                    Some(response_op::Response::ResponsePut(p)) => {
                        format!("{{\"response_put\":{}}}", put(p))
                    }
                    Some(response_op::Response::ResponseDeleteRange(d)) => {
                        format!("{{\"response_delete_range\":{}}}", del(d))
                    }
                    Some(response_op::Response::ResponseTxn(t)) => {
                        format!("{{\"response_txn\":{}}}", txn(t))
                    }
                    None => "null".to_string(),
                };
                format!("{{\"Response\":{inner}}}")
            })
            .collect();
        Obj::new()
            .obj("header", json::header(&r.header))
            .flag("succeeded", r.succeeded)
            .list("responses", ops)
            .end()
    }
}

/// A KV response of any kind.
pub enum KvResponse<'a> {
    /// From get.
    Get(&'a RangeResponse),
    /// From put.
    Put(&'a PutResponse),
    /// From del.
    Del(&'a DeleteRangeResponse),
    /// From txn.
    Txn(&'a TxnResponse),
}

/// Prints a KV response in `format`.
pub fn print_kv(format: Format, simple: Simple, r: KvResponse<'_>) -> Result<(), CtlError> {
    match format {
        Format::Simple => {
            let mut buf = Vec::new();
            match r {
                KvResponse::Get(g) => simple.get(&mut buf, g),
                KvResponse::Put(p) => simple.put(&mut buf, p),
                KvResponse::Del(d) => simple.del(&mut buf, d),
                KvResponse::Txn(t) => simple.txn(&mut buf, t),
            }
            out(&buf);
        }
        Format::Fields => {
            let mut s = String::new();
            match r {
                KvResponse::Get(g) => fields::get(&mut s, g),
                KvResponse::Put(p) => fields::put(&mut s, p),
                KvResponse::Del(d) => fields::del(&mut s, d),
                KvResponse::Txn(t) => fields::txn(&mut s, t),
            }
            out(s.as_bytes());
        }
        Format::Json => {
            let s = match r {
                KvResponse::Get(g) => to_json::get(g),
                KvResponse::Put(p) => to_json::put(p),
                KvResponse::Del(d) => to_json::del(d),
                KvResponse::Txn(t) => to_json::txn(t),
            };
            out(format!("{s}\n").as_bytes());
        }
        Format::Protobuf => match r {
            KvResponse::Get(g) => protobuf(g),
            KvResponse::Put(p) => protobuf(p),
            KvResponse::Del(d) => protobuf(d),
            KvResponse::Txn(t) => protobuf(t),
        },
        Format::Table => return Err(format.unsupported()),
    }
    Ok(())
}
