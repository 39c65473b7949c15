//! Go's `encoding/json` output for etcd's gogo-generated response structs: fields in
//! declaration order, `omitempty` dropping zero values, `[]byte` as base64, strings with
//! Go's HTML-safe escaping.

use cairn_proto::etcdserverpb::ResponseHeader;
use cairn_proto::mvccpb::KeyValue;

use crate::go::gofmt;

/// Go's JSON string encoding.
pub fn string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Builds one JSON object field by field.
#[derive(Default)]
pub struct Obj {
    buf: String,
}

impl Obj {
    /// An empty object.
    pub fn new() -> Obj {
        Obj::default()
    }

    /// Adds a raw JSON value.
    pub fn raw(mut self, key: &str, value: &str) -> Obj {
        if !self.buf.is_empty() {
            self.buf.push(',');
        }
        self.buf.push_str(&string(key));
        self.buf.push(':');
        self.buf.push_str(value);
        self
    }

    /// Adds a number unless zero.
    pub fn num<N: PartialEq + Default + ToString>(self, key: &str, v: N) -> Obj {
        if v == N::default() {
            self
        } else {
            self.raw(key, &v.to_string())
        }
    }

    /// Adds a number always.
    pub fn num_always<N: ToString>(self, key: &str, v: N) -> Obj {
        self.raw(key, &v.to_string())
    }

    /// Adds `true` unless false.
    pub fn flag(self, key: &str, v: bool) -> Obj {
        if v {
            self.raw(key, "true")
        } else {
            self
        }
    }

    /// Adds a string unless empty.
    pub fn str(self, key: &str, v: &str) -> Obj {
        if v.is_empty() {
            self
        } else {
            self.raw(key, &string(v))
        }
    }

    /// Adds bytes as base64 unless empty.
    pub fn bytes(self, key: &str, v: &[u8]) -> Obj {
        if v.is_empty() {
            self
        } else {
            self.raw(key, &format!("\"{}\"", gofmt::base64(v)))
        }
    }

    /// Adds an object unless absent.
    pub fn obj(self, key: &str, v: Option<String>) -> Obj {
        match v {
            Some(v) => self.raw(key, &v),
            None => self,
        }
    }

    /// Adds an array of raw values unless empty.
    pub fn list(self, key: &str, items: Vec<String>) -> Obj {
        if items.is_empty() {
            self
        } else {
            self.raw(key, &format!("[{}]", items.join(",")))
        }
    }

    /// Finishes the object.
    pub fn end(self) -> String {
        format!("{{{}}}", self.buf)
    }
}

/// A response header.
pub fn header(h: &Option<ResponseHeader>) -> Option<String> {
    h.as_ref().map(|h| {
        Obj::new()
            .num("cluster_id", h.cluster_id)
            .num("member_id", h.member_id)
            .num("revision", h.revision)
            .num("raft_term", h.raft_term)
            .end()
    })
}

/// A key-value.
pub fn kv(kv: &KeyValue) -> String {
    Obj::new()
        .bytes("key", &kv.key)
        .num("create_revision", kv.create_revision)
        .num("mod_revision", kv.mod_revision)
        .num("version", kv.version)
        .bytes("value", &kv.value)
        .num("lease", kv.lease)
        .end()
}

/// A list of strings, always printed (Go prints `null` for a nil slice).
pub fn strings(items: &[String]) -> String {
    if items.is_empty() {
        return "null".to_string();
    }
    format!(
        "[{}]",
        items
            .iter()
            .map(|s| string(s))
            .collect::<Vec<_>>()
            .join(",")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_like_go() {
        assert_eq!(string("a<b>&\"\n"), "\"a\\u003cb\\u003e\\u0026\\\"\\n\"");
    }

    #[test]
    fn omits_empty() {
        let o = Obj::new()
            .num("a", 0i64)
            .num("b", 2u64)
            .str("c", "")
            .flag("d", false)
            .end();
        assert_eq!(o, "{\"b\":2}");
    }
}
