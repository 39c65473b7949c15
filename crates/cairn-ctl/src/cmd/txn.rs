//! `txn`: reads compares, success ops and failure ops from stdin (each block ends with a
//! blank line) in etcdctl's grammar, e.g. `mod("k") > "5"`, `value("k") = "v"`,
//! `put k v --prev-kv`, `get k --prefix`, `del k`.

use std::io::BufRead;

use cairn_proto::etcdserverpb::{
    compare::{CompareResult, CompareTarget, TargetUnion},
    request_op, Compare, RequestOp, TxnRequest,
};

use super::kv;
use crate::global::{CtlError, Ctx, ExitCode};
use crate::go::flags::{self, Kind, Spec};
use crate::output::printer::{print_kv, KvResponse, Simple};

/// `txn`'s flags.
pub const FLAGS: &[Spec] = &[Spec::short(
    "interactive",
    'i',
    Kind::Bool,
    "false",
    "Input transaction in interactive mode",
)];

fn invalid(msg: String) -> CtlError {
    CtlError::new(ExitCode::InvalidInput, msg)
}

/// Reads one line as Go's `ReadString('\n')` does: a line without its newline at the
/// end of input is an `EOF` error.
pub(crate) fn read_line(r: &mut dyn BufRead) -> Result<String, CtlError> {
    let mut buf = Vec::new();
    match r.read_until(b'\n', &mut buf) {
        Ok(_) if buf.last() == Some(&b'\n') => Ok(String::from_utf8_lossy(&buf).into_owned()),
        Ok(_) => Err(invalid("EOF".into())),
        Err(e) => Err(invalid(e.to_string())),
    }
}

/// Reads a Go quoted string (`"..."` with escapes or a raw `` `...` ``) at the start of
/// `s`; returns it and the rest.
fn scan_quoted(s: &str) -> Option<(String, &str)> {
    let s = s.trim_start();
    let mut chars = s.char_indices();
    let (_, open) = chars.next()?;
    if open == '`' {
        let end = s[1..].find('`')? + 1;
        return Some((s[1..end].to_string(), &s[end + 1..]));
    }
    if open != '"' {
        return None;
    }
    let mut out = String::new();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, &s[i + 1..])),
            '\\' => {
                let (_, e) = chars.next()?;
                match e {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'r' => out.push('\r'),
                    'a' => out.push('\u{7}'),
                    'b' => out.push('\u{8}'),
                    'f' => out.push('\u{c}'),
                    'v' => out.push('\u{b}'),
                    '\\' => out.push('\\'),
                    '"' => out.push('"'),
                    '\'' => out.push('\''),
                    'x' | 'u' | 'U' => {
                        let n = match e {
                            'x' => 2,
                            'u' => 4,
                            _ => 8,
                        };
                        let mut hex = String::new();
                        for _ in 0..n {
                            hex.push(chars.next()?.1);
                        }
                        let v = u32::from_str_radix(&hex, 16).ok()?;
                        out.push(char::from_u32(v)?);
                    }
                    _ => return None,
                }
            }
            '\n' => return None,
            c => out.push(c),
        }
    }
    None
}

/// A format space in Go's `Sscanf`: one or more spaces, or the end of input.
fn scan_space(s: &str) -> Option<&str> {
    let t = s.trim_start_matches([' ', '\t', '\r']);
    if t.len() < s.len() || s.is_empty() {
        Some(t)
    } else {
        None
    }
}

/// Go's `fmt.Sscanf(s, "%q) %s %q", &key, &op, &val)`: the values and how many were
/// scanned.
fn scan_compare(s: &str) -> (String, String, String, usize) {
    let (mut key, mut op, mut val) = (String::new(), String::new(), String::new());
    let Some((k, rest)) = scan_quoted(s) else {
        return (key, op, val, 0);
    };
    key = k;
    let Some(rest) = rest.strip_prefix(')') else {
        return (key, op, val, 1);
    };
    let Some(rest) = scan_space(rest) else {
        return (key, op, val, 1);
    };
    let rest = rest.trim_start();
    let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
    if end == 0 {
        return (key, op, val, 1);
    }
    op = rest[..end].to_string();
    let rest = &rest[end..];
    let Some(rest) = scan_space(rest) else {
        return (key, op, val, 2);
    };
    let Some((v, _)) = scan_quoted(rest) else {
        return (key, op, val, 2);
    };
    val = v;
    (key, op, val, 3)
}

/// Parses one comparison line as etcdctl's `ParseCompare`.
pub fn parse_compare(line: &str) -> Result<Compare, CtlError> {
    let Some((target, rest)) = line.split_once('(') else {
        return Err(invalid(format!("malformed comparison: {line}")));
    };
    let (key, op, val, n) = scan_compare(rest);
    if n != 3 {
        return Err(invalid(format!(
            "malformed comparison: {line}; got {target}({}) {op} {}",
            crate::go::gofmt::quote(key.as_bytes()),
            crate::go::gofmt::quote(val.as_bytes())
        )));
    }
    let bad_number = || invalid(format!("invalid txn compare request: {line}"));
    let mut cmp = Compare {
        key: key.into_bytes(),
        ..Compare::default()
    };
    match target {
        "ver" | "version" => {
            cmp.target = CompareTarget::Version as i32;
            let v = flags::parse_int_base(&val, 10).map_err(|_| bad_number())?;
            cmp.target_union = Some(TargetUnion::Version(v));
        }
        "c" | "create" => {
            cmp.target = CompareTarget::Create as i32;
            let v = flags::parse_int_base(&val, 10).map_err(|_| bad_number())?;
            cmp.target_union = Some(TargetUnion::CreateRevision(v));
        }
        "m" | "mod" => {
            cmp.target = CompareTarget::Mod as i32;
            let v = flags::parse_int_base(&val, 10).map_err(|_| bad_number())?;
            cmp.target_union = Some(TargetUnion::ModRevision(v));
        }
        "val" | "value" => {
            cmp.target = CompareTarget::Value as i32;
            cmp.target_union = Some(TargetUnion::Value(val.into_bytes()));
        }
        "lease" => {
            cmp.target = CompareTarget::Lease as i32;
            let v = flags::parse_int_base(&val, 16).map_err(|_| bad_number())?;
            cmp.target_union = Some(TargetUnion::Lease(v));
        }
        other => {
            return Err(invalid(format!(
                "malformed comparison: {line} (unknown target {other})"
            )))
        }
    }
    cmp.result = match op.as_str() {
        "=" => CompareResult::Equal,
        "!=" => CompareResult::NotEqual,
        ">" => CompareResult::Greater,
        "<" => CompareResult::Less,
        // etcd's client panics here; Go's report goes on with a blank line and the
        // goroutine trace.
        _ => return Err(CtlError::go_panic("Unknown result op\n")),
    } as i32;
    Ok(cmp)
}

/// etcdctl's `Argify`: splits a line into words, honouring quotes. Single-quoted words
/// keep etcdctl's slicing by the number of words, so they read as etcdctl reads them.
pub fn argify(line: &str) -> Result<Vec<String>, CtlError> {
    let b = line.as_bytes();
    let mut raw: Vec<&str> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'"' {
            let mut j = i + 1;
            let mut closed = None;
            while j < b.len() {
                match b[j] {
                    b'\\' if j + 1 < b.len() => j += 2,
                    b'"' => {
                        closed = Some(j);
                        break;
                    }
                    _ => j += 1,
                }
            }
            if let Some(end) = closed {
                raw.push(&line[i..=end]);
                i = end + 1;
                continue;
            }
            i += 1;
            continue;
        }
        if c == b'\'' {
            if let Some(end) = line[i + 1..].find('\'') {
                raw.push(&line[i..i + 1 + end + 1]);
                i = i + end + 2;
                continue;
            }
            i += 1;
            continue;
        }
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let end = line[i..]
            .find(|ch: char| ch.is_whitespace())
            .map_or(b.len(), |e| i + e);
        raw.push(&line[i..end]);
        i = end;
    }
    let n = raw.len();
    let mut args = Vec::with_capacity(n);
    for word in &raw {
        if word.starts_with('\'') {
            // etcdctl slices the word up to the number of words less one, as Go reports
            // when that is out of range (its report goes on with a blank line and the
            // goroutine trace).
            let end = n.saturating_sub(1);
            if end > word.len() {
                return Err(CtlError::go_panic(format!(
                    "runtime error: slice bounds out of range [:{end}] with length {}\n",
                    word.len()
                )));
            }
            if end < 1 {
                return Err(CtlError::go_panic(format!(
                    "runtime error: slice bounds out of range [1:{end}]\n"
                )));
            }
            args.push(String::from_utf8_lossy(&word.as_bytes()[1..end]).into_owned());
        } else if word.starts_with('"') {
            match scan_quoted(word) {
                Some((s, _)) => args.push(s),
                None => return Err(invalid("unexpected EOF".into())),
            }
        } else {
            args.push(word.to_string());
        }
    }
    Ok(args)
}

/// Parses one request line (`get`, `put` or `del` with their flags).
fn parse_op(line: &str) -> Result<RequestOp, CtlError> {
    let args = argify(line)?;
    if args.len() < 2 {
        return Err(invalid(format!("invalid txn compare request: {line}")));
    }
    let bad = || invalid(format!("invalid txn request: {line}"));
    let (specs, which): (&[Spec], &str) = match args[0].as_str() {
        "get" => (kv::GET_FLAGS, "get"),
        "put" => (kv::PUT_FLAGS, "put"),
        "del" => (kv::DEL_FLAGS, "del"),
        _ => return Err(bad()),
    };
    let mut all: Vec<Spec> = specs.to_vec();
    all.push(Spec::short("help", 'h', Kind::Bool, "false", ""));
    let parsed = flags::parse(&all, &args[1..]).map_err(|_| bad())?;
    let request = match which {
        "get" => request_op::Request::RequestRange(kv::get_op(&parsed.values, &parsed.args)?),
        "put" => request_op::Request::RequestPut(kv::put_op(
            &parsed.values,
            &parsed.args,
            &mut std::io::empty(),
        )?),
        _ => request_op::Request::RequestDeleteRange(kv::del_op(&parsed.values, &parsed.args)?),
    };
    Ok(RequestOp {
        request: Some(request),
    })
}

fn read_compares(r: &mut dyn BufRead) -> Result<Vec<Compare>, CtlError> {
    let mut cmps = Vec::new();
    loop {
        let line = read_line(r)?;
        let line = line.trim();
        if line.is_empty() {
            return Ok(cmps);
        }
        cmps.push(parse_compare(line)?);
    }
}

fn read_ops(r: &mut dyn BufRead) -> Result<Vec<RequestOp>, CtlError> {
    let mut ops = Vec::new();
    loop {
        let line = read_line(r)?;
        let line = line.trim();
        if line.is_empty() {
            return Ok(ops);
        }
        ops.push(parse_op(line)?);
    }
}

/// `etcdctl txn`.
pub fn run(ctx: &mut Ctx, args: &[String]) -> Result<(), CtlError> {
    if !args.is_empty() {
        return Err(CtlError::bad_args("txn command does not accept argument"));
    }
    let client = ctx.client()?;
    let interactive = ctx.flags.bool("interactive");
    let prompt = |s: &str| {
        if interactive {
            crate::output::printer::out(format!("{s}\n").as_bytes());
        }
    };
    let stdin = std::io::stdin();
    let mut reader = stdin.lock();
    prompt("compares:");
    let compare = read_compares(&mut reader)?;
    prompt("success requests (get, put, del):");
    let success = read_ops(&mut reader)?;
    prompt("failure requests (get, put, del):");
    let failure = read_ops(&mut reader)?;
    let req = TxnRequest {
        compare,
        success,
        failure,
    };
    let resp = ctx.unary(|| {
        let mut kv = client.kv();
        let req = req.clone();
        async move { kv.txn(req).await }
    })?;
    let simple = Simple {
        hex: ctx.hex(),
        value_only: false,
    };
    print_kv(ctx.format()?, simple, KvResponse::Txn(&resp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares() {
        let c = parse_compare("mod(\"k2\") > \"5\"").unwrap();
        assert_eq!(c.key, b"k2");
        assert_eq!(c.result, CompareResult::Greater as i32);
        assert_eq!(c.target_union, Some(TargetUnion::ModRevision(5)));
        let e = parse_compare("ver(\"k\")=\"0\"").unwrap_err();
        assert_eq!(
            e.msg,
            "malformed comparison: ver(\"k\")=\"0\"; got ver(\"k\")  \"\""
        );
        let e = parse_compare("ver(\"k\") =").unwrap_err();
        assert_eq!(
            e.msg,
            "malformed comparison: ver(\"k\") =; got ver(\"k\") = \"\""
        );
        let e = parse_compare("bogus").unwrap_err();
        assert_eq!(e.msg, "malformed comparison: bogus");
    }

    /// etcdctl dies of a Go panic on a comparison operator it does not know and on a
    /// single-quoted word it slices out of bounds. cairnctl used to print the panic and
    /// exit from inside the parser; the panic now comes back as its error.
    #[test]
    fn go_panics_are_errors() {
        let e = parse_compare("mod(\"k\") >= \"5\"").unwrap_err();
        assert_eq!(
            (e.text().as_str(), e.exit_code()),
            ("panic: Unknown result op\n\n", 2)
        );
        let e = argify("'a b'").unwrap_err();
        assert_eq!(
            (e.text().as_str(), e.exit_code()),
            (
                "panic: runtime error: slice bounds out of range [1:0]\n\n",
                2
            )
        );
        // As etcdctl 3.5.1 prints for `put 'abc' b c d e f g` in a txn.
        let e = argify("put 'abc' b c d e f g").unwrap_err();
        assert_eq!(
            e.text(),
            "panic: runtime error: slice bounds out of range [:7] with length 5\n\n"
        );
    }

    #[test]
    fn argify_words() {
        assert_eq!(
            argify("put a \"x y\\\"z\"").unwrap(),
            vec!["put", "a", "x y\"z"]
        );
        assert_eq!(
            argify("put a 'hello world'").unwrap(),
            vec!["put", "a", "h"]
        );
    }
}
