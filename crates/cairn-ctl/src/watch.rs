//! `watch`: etcdctl's argument rules (key and range end from the arguments or
//! `ETCDCTL_WATCH_KEY`/`ETCDCTL_WATCH_RANGE_END`, a command to run per event after `--`,
//! interactive mode), the Go client's handling of the stream (created responses are not
//! shown, fragments are joined, progress notifications are announced, a canceled watch ends
//! the command) and the printers of every `-w` format.

use std::io::BufRead;

use cairn_client::Client;
use cairn_proto::etcdserverpb::{
    watch_request::RequestUnion, WatchCreateRequest, WatchProgressRequest, WatchRequest,
    WatchResponse,
};
use cairn_proto::mvccpb::{event::EventType, Event};
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::flags::{Kind, Spec, Values};
use crate::global::{CtlError, Ctx, ExitCode, Format};
use crate::gofmt;
use crate::json::{self, Obj};
use crate::kv::prefix_end;
use crate::printer::{fields, out};

/// `watch`'s flags.
pub const FLAGS: &[Spec] = &[
    Spec::short("interactive", 'i', Kind::Bool, "false", "Interactive mode"),
    Spec::new(
        "prefix",
        Kind::Bool,
        "false",
        "Watch on a prefix if prefix is set",
    ),
    Spec::new(
        "prev-kv",
        Kind::Bool,
        "false",
        "get the previous key-value pair before the event happens",
    ),
    Spec::new(
        "progress-notify",
        Kind::Bool,
        "false",
        "get periodic watch progress notification from server",
    ),
    Spec::new("rev", Kind::Int, "0", "Revision to start watching"),
];

const BAD_ARGS_NUM: &str = "bad number of arguments";
const BAD_ARGS_CONFLICT_ENV: &str = "bad number of arguments (found conflicting environment key)";
const BAD_ARGS_SEPARATOR: &str = "bad number of arguments (found separator --, but no commands)";

/// The watch options from the flags.
#[derive(Debug, Clone, Copy)]
struct Opts {
    prefix: bool,
    rev: i64,
    prev_kv: bool,
    progress_notify: bool,
}

impl Opts {
    fn from(f: &Values) -> Opts {
        Opts {
            prefix: f.bool("prefix"),
            rev: f.int("rev"),
            prev_kv: f.bool("prev-kv"),
            progress_notify: f.bool("progress-notify"),
        }
    }
}

/// How responses are printed.
#[derive(Debug, Clone, Copy)]
struct Display {
    format: Format,
    hex: bool,
}

/// Runs `watch`.
pub fn run(ctx: &mut Ctx, args: &[String]) -> Result<(), CtlError> {
    let env_key = std::env::var("ETCDCTL_WATCH_KEY").unwrap_or_default();
    let env_range = std::env::var("ETCDCTL_WATCH_RANGE_END").unwrap_or_default();
    if env_key.is_empty() && !env_range.is_empty() {
        return Err(CtlError::bad_args(format!(
            "ETCDCTL_WATCH_KEY is empty but got ETCDCTL_WATCH_RANGE_END={}",
            gofmt::quote(env_range.as_bytes())
        )));
    }
    let opts = Opts::from(&ctx.flags);
    if ctx.flags.bool("interactive") {
        return interactive(ctx, opts, &env_key, &env_range);
    }
    let raw: Vec<String> = std::env::args().collect();
    let (watch_args, exec_args) = parse_args(&raw, args, &env_key, &env_range)?;
    let client = ctx.client()?;
    let display = Display {
        format: ctx.format()?,
        hex: ctx.hex(),
    };
    let req = create_request(opts, &watch_args).map_err(CtlError::bad_args)?;
    ctx.block_on(watch_and_print(client, req, display, exec_args, None))??;
    Err(CtlError::new(
        ExitCode::Interrupted,
        "watch is canceled by the server",
    ))
}

/// Splits the arguments into the key (and range end) and the command after `--`, with
/// etcdctl's checks. `raw` is the whole command line; `args` what flag parsing left.
fn parse_args(
    raw: &[String],
    args: &[String],
    env_key: &str,
    env_range: &str,
) -> Result<(Vec<String>, Vec<String>), CtlError> {
    let raw: Vec<String> = match raw.iter().position(|a| a == "watch") {
        Some(i) => raw[i + 1..].to_vec(),
        None => raw.to_vec(),
    };
    let sep = raw.iter().position(|a| a == "--");
    if sep.is_some_and(|i| i == raw.len() - 1) {
        return Err(CtlError::bad_args(BAD_ARGS_SEPARATOR));
    }
    if sep.is_none() && raw.is_empty() && env_key.is_empty() {
        return Err(CtlError::bad_args(BAD_ARGS_NUM));
    }
    if let (Some(sep), false) = (sep, env_key.is_empty()) {
        // With the key from the environment, an argument before `--` conflicts with it.
        let mut r = raw.len() as isize - 1;
        for w in args.iter().rev() {
            if r >= 0 && *w == raw[r as usize] {
                r -= 1;
                continue;
            }
            if r == sep as isize {
                return Err(CtlError::bad_args(BAD_ARGS_CONFLICT_ENV));
            }
        }
    }
    if sep.is_none() && !args.is_empty() && !env_key.is_empty() {
        return Err(CtlError::bad_args(BAD_ARGS_CONFLICT_ENV));
    }
    let mut watch_args = Vec::new();
    if !env_key.is_empty() {
        watch_args.push(env_key.to_string());
        if !env_range.is_empty() {
            watch_args.push(env_range.to_string());
        }
    }
    watch_args.extend(args.iter().cloned());
    let Some(sep) = sep else {
        return Ok((watch_args, Vec::new()));
    };
    let exec_args = raw[sep + 1..].to_vec();
    // Flag parsing put the command's words among the arguments: cut them off at the
    // command's first word.
    let end = watch_args
        .iter()
        .rposition(|a| *a == exec_args[0])
        .unwrap_or(0);
    watch_args.truncate(end);
    Ok((watch_args, exec_args))
}

/// The create request for `watch <key> [range_end]`, or etcdctl's complaint.
fn create_request(opts: Opts, args: &[String]) -> Result<WatchCreateRequest, String> {
    let Some(key) = args.first() else {
        return Err(BAD_ARGS_NUM.to_string());
    };
    let mut req = WatchCreateRequest {
        key: key.as_bytes().to_vec(),
        start_revision: opts.rev,
        prev_kv: opts.prev_kv,
        progress_notify: opts.progress_notify,
        ..Default::default()
    };
    if args.len() == 2 {
        if opts.prefix {
            return Err("`range_end` and `--prefix` are mutually exclusive".to_string());
        }
        req.range_end = args[1].as_bytes().to_vec();
    }
    if opts.prefix {
        if req.key.is_empty() {
            req.key = vec![0];
            req.range_end = vec![0];
        } else {
            req.range_end = prefix_end(&req.key);
        }
    }
    Ok(req)
}

fn create(req: WatchCreateRequest) -> WatchRequest {
    WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(req)),
    }
}

/// Watches until the server cancels the watch, printing every response as etcdctl does.
/// `progress` (interactive mode) passes on progress requests to the stream.
async fn watch_and_print(
    client: Client,
    mut req: WatchCreateRequest,
    display: Display,
    exec_args: Vec<String>,
    mut progress: Option<tokio::sync::broadcast::Receiver<()>>,
) -> Result<(), CtlError> {
    loop {
        let (tx, rx) = mpsc::channel(4);
        // grpc-go servers send the response headers with the first response, so the
        // create request goes out before the call is awaited.
        let _ = tx.send(create(req.clone())).await;
        let stream = client.watch().watch(ReceiverStream::new(rx)).await;
        let mut stream = match stream {
            Ok(s) => s.into_inner(),
            Err(_) => {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                continue;
            }
        };
        let mut joined: Option<WatchResponse> = None;
        loop {
            let msg = match progress.as_mut() {
                Some(p) => tokio::select! {
                    m = stream.message() => m,
                    _ = p.recv() => {
                        let _ = tx.send(WatchRequest {
                            request_union: Some(RequestUnion::ProgressRequest(
                                WatchProgressRequest {},
                            )),
                        }).await;
                        continue;
                    }
                },
                None => stream.message().await,
            };
            let mut resp = match msg {
                Ok(Some(r)) => r,
                // The Go client resumes a broken stream after the last revision it saw.
                Ok(None) | Err(_) => break,
            };
            if resp.created && !resp.canceled {
                continue;
            }
            if let Some(mut first) = joined.take() {
                first.events.append(&mut resp.events);
                first.fragment = resp.fragment;
                resp = first;
            }
            if resp.fragment {
                joined = Some(resp);
                continue;
            }
            if let Some(last) = resp.events.last().and_then(|e| e.kv.as_ref()) {
                req.start_revision = last.mod_revision + 1;
            }
            if print_response(&resp, display, &exec_args)? {
                return Ok(());
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Prints one response; true when it ends the watch.
fn print_response(
    resp: &WatchResponse,
    display: Display,
    exec_args: &[String],
) -> Result<bool, CtlError> {
    let header = resp.header.unwrap_or_default();
    if resp.canceled {
        let why = if resp.compact_revision != 0 {
            "etcdserver: mvcc: required revision has been compacted".to_string()
        } else if !resp.cancel_reason.is_empty() {
            resp.cancel_reason.clone()
        } else {
            "etcdserver: mvcc: required revision is a future revision".to_string()
        };
        eprintln!("watch was canceled ({why})");
    }
    let progress = resp.events.is_empty()
        && !resp.canceled
        && !resp.created
        && resp.compact_revision == 0
        && header.revision != 0;
    if progress {
        out(format!("progress notify: {}\n", header.revision).as_bytes());
    }
    print_events(resp, display)?;
    for ev in &resp.events {
        run_exec(exec_args, header.revision, ev);
    }
    Ok(resp.canceled)
}

fn type_name(ev: &Event) -> &'static str {
    if ev.r#type == EventType::Delete as i32 {
        "DELETE"
    } else {
        "PUT"
    }
}

fn print_events(resp: &WatchResponse, display: Display) -> Result<(), CtlError> {
    let header = resp.header.unwrap_or_default();
    match display.format {
        Format::Simple => {
            let mut buf = Vec::new();
            let line = |buf: &mut Vec<u8>, b: &[u8]| {
                if display.hex {
                    buf.extend_from_slice(gofmt::hex_prefixed(b).as_bytes());
                } else {
                    buf.extend_from_slice(b);
                }
                buf.push(b'\n');
            };
            for ev in &resp.events {
                // The event type is printed as is, even with --hex.
                buf.extend_from_slice(type_name(ev).as_bytes());
                buf.push(b'\n');
                for kv in ev.prev_kv.iter().chain(ev.kv.iter()) {
                    line(&mut buf, &kv.key);
                    line(&mut buf, &kv.value);
                }
            }
            out(&buf);
        }
        Format::Fields => {
            let mut s = String::new();
            fields::hdr(&mut s, &Some(header));
            for ev in &resp.events {
                s.push_str(&format!("\"Type\" : {}\n", type_name(ev)));
                if let Some(prev) = &ev.prev_kv {
                    fields::kv(&mut s, "Prev", prev);
                }
                fields::kv(&mut s, "", &ev.kv.clone().unwrap_or_default());
            }
            out(s.as_bytes());
        }
        Format::Json => {
            // The Go client makes the event list for every response: `[]`, never `null`.
            let events = {
                let items: Vec<String> = resp
                    .events
                    .iter()
                    .map(|ev| {
                        Obj::new()
                            .num("type", ev.r#type)
                            .obj("kv", ev.kv.as_ref().map(json::kv))
                            .obj("prev_kv", ev.prev_kv.as_ref().map(json::kv))
                            .end()
                    })
                    .collect();
                format!("[{}]", items.join(","))
            };
            let s = Obj::new()
                .raw(
                    "Header",
                    &json::header(&Some(header)).unwrap_or_else(|| "{}".into()),
                )
                .raw("Events", &events)
                .num_always("CompactRevision", resp.compact_revision)
                .raw("Canceled", if resp.canceled { "true" } else { "false" })
                .raw("Created", if resp.created { "true" } else { "false" })
                .end();
            out(format!("{s}\n").as_bytes());
        }
        Format::Protobuf => {
            let pb = WatchResponse {
                header: Some(header),
                events: resp.events.clone(),
                compact_revision: resp.compact_revision,
                canceled: resp.canceled,
                created: resp.created,
                ..Default::default()
            };
            out(&pb.encode_to_vec());
        }
        Format::Table => return Err(display.format.unsupported()),
    }
    Ok(())
}

/// Runs the command given after `--` for one event, with the event in its environment.
fn run_exec(exec_args: &[String], revision: i64, ev: &Event) {
    let Some((prog, rest)) = exec_args.split_first() else {
        return;
    };
    let kv = ev.kv.clone().unwrap_or_default();
    let status = std::process::Command::new(prog)
        .args(rest)
        .env("ETCD_WATCH_REVISION", revision.to_string())
        .env(
            "ETCD_WATCH_EVENT_TYPE",
            gofmt::quote(type_name(ev).as_bytes()),
        )
        .env("ETCD_WATCH_KEY", gofmt::quote(&kv.key))
        .env("ETCD_WATCH_VALUE", gofmt::quote(&kv.value))
        .status();
    let err = match status {
        Ok(s) if s.success() => return,
        Ok(s) => match s.code() {
            Some(code) => format!("exit status {code}"),
            None => "signal: killed".to_string(),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            format!(
                "exec: {}: executable file not found in $PATH",
                gofmt::quote(prog.as_bytes())
            )
        }
        Err(e) => e.to_string(),
    };
    let quoted: Vec<String> = exec_args
        .iter()
        .map(|a| gofmt::quote(a.as_bytes()))
        .collect();
    eprintln!("command [{}] error ({err})", quoted.join(" "));
    std::process::exit(1);
}

/// Splits an interactive line into words as etcdctl's `argify` does: spaces separate,
/// double or single quotes group.
fn argify(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut has = false;
    for c in line.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => cur.push(c),
            None if c == '"' || c == '\'' => {
                quote = Some(c);
                has = true;
            }
            None if c.is_whitespace() => {
                if has || !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                    has = false;
                }
            }
            None => cur.push(c),
        }
    }
    if has || !cur.is_empty() {
        words.push(cur);
    }
    words
}

/// `watch -i`: reads `watch ...` and `progress` lines from stdin.
fn interactive(ctx: &mut Ctx, opts: Opts, env_key: &str, env_range: &str) -> Result<(), CtlError> {
    let client = ctx.client()?;
    let display = Display {
        format: ctx.format()?,
        hex: ctx.hex(),
    };
    let (progress_tx, _) = tokio::sync::broadcast::channel::<()>(16);
    let stdin = std::io::stdin();
    let mut lines = stdin.lock();
    loop {
        let mut l = String::new();
        match lines.read_line(&mut l) {
            Ok(n) if n > 0 && l.ends_with('\n') => {}
            Ok(_) => {
                return Err(CtlError::new(
                    ExitCode::InvalidInput,
                    "error reading watch request line: EOF",
                ))
            }
            Err(e) => {
                return Err(CtlError::new(
                    ExitCode::InvalidInput,
                    format!("error reading watch request line: {e}"),
                ))
            }
        }
        let l = l.trim_end_matches('\n').to_string();
        let args = argify(&l);
        let Some(first) = args.first() else {
            eprintln!("Invalid command: {l} (watch and progress supported)");
            continue;
        };
        match first.as_str() {
            "watch" => {
                if args.len() < 2 && env_key.is_empty() {
                    eprintln!("Invalid command {l} (command type or key is not provided)");
                    continue;
                }
                let Line {
                    opts: line_opts,
                    watch_args,
                    exec_args,
                } = interactive_args(&args, env_key, env_range)?;
                // A line sets prefix, rev and prev-kv; progress notifications follow the
                // command line's flag, as in etcdctl.
                let line_opts = Opts {
                    progress_notify: opts.progress_notify,
                    ..line_opts
                };
                let req = match create_request(line_opts, &watch_args) {
                    Ok(r) => r,
                    Err(why) => {
                        eprintln!("Invalid command {l} ({why})");
                        continue;
                    }
                };
                let client = client.clone();
                let progress = progress_tx.subscribe();
                ctx.block_on(async move {
                    tokio::spawn(async move {
                        let _ =
                            watch_and_print(client, req, display, exec_args, Some(progress)).await;
                    });
                })?;
            }
            "progress" => {
                let _ = progress_tx.send(());
            }
            _ => {
                eprintln!("Invalid command {l} (only support watch)");
            }
        }
    }
}

/// An interactive `watch ...` line, parsed.
struct Line {
    opts: Opts,
    /// The key and range end.
    watch_args: Vec<String>,
    /// The command after `--`.
    exec_args: Vec<String>,
}

/// An interactive `watch ...` line's options, key and command, as etcdctl parses it.
fn interactive_args(args: &[String], env_key: &str, env_range: &str) -> Result<Line, CtlError> {
    let words = &args[1..];
    let sep = words.iter().position(|a| a == "--");
    if sep.is_some_and(|i| i == words.len() - 1) {
        return Err(CtlError::bad_args(BAD_ARGS_SEPARATOR));
    }
    let specs: Vec<Spec> = FLAGS.to_vec();
    let parsed = crate::flags::parse(&specs, words).map_err(CtlError::bad_args)?;
    let positional = parsed.args.clone();
    if sep.is_none() && env_key.is_empty() && positional.is_empty() {
        return Err(CtlError::bad_args(BAD_ARGS_NUM));
    }
    if sep.is_none() && !positional.is_empty() && !env_key.is_empty() {
        return Err(CtlError::bad_args(BAD_ARGS_CONFLICT_ENV));
    }
    let opts = Opts::from(&parsed.values);
    let exec_args = sep.map(|i| words[i + 1..].to_vec()).unwrap_or_default();
    let mut watch_args = Vec::new();
    if !env_key.is_empty() {
        watch_args.push(env_key.to_string());
        if !env_range.is_empty() {
            watch_args.push(env_range.to_string());
        }
    }
    watch_args.extend(positional);
    if let Some(first) = exec_args.first() {
        let end = watch_args.iter().rposition(|a| a == first).unwrap_or(0);
        watch_args.truncate(end);
    }
    Ok(Line {
        opts,
        watch_args,
        exec_args,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn arguments_and_command_split_as_etcdctl() {
        let raw = s(&[
            "etcdctl", "watch", "foo", "--rev", "1", "bar", "--", "echo", "hi",
        ]);
        let args = s(&["foo", "bar", "echo", "hi"]);
        assert_eq!(
            parse_args(&raw, &args, "", "").unwrap(),
            (s(&["foo", "bar"]), s(&["echo", "hi"]))
        );
        let raw = s(&["etcdctl", "watch", "foo", "--"]);
        assert_eq!(
            parse_args(&raw, &s(&["foo"]), "", "").unwrap_err().msg,
            BAD_ARGS_SEPARATOR
        );
        let raw = s(&["etcdctl", "watch", "--", "echo"]);
        assert_eq!(
            parse_args(&raw, &s(&["echo"]), "k", "").unwrap(),
            (s(&["k"]), s(&["echo"]))
        );
        let raw = s(&["etcdctl", "watch", "foo", "--", "echo"]);
        assert_eq!(
            parse_args(&raw, &s(&["foo", "echo"]), "k", "")
                .unwrap_err()
                .msg,
            BAD_ARGS_CONFLICT_ENV
        );
    }

    #[test]
    fn argify_groups_quotes() {
        assert_eq!(
            argify("watch 'a b' \"c\" d"),
            s(&["watch", "a b", "c", "d"])
        );
    }
}
