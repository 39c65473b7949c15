//! `watch [options] [key or prefix] [range_end] [--] [exec-command arg1 arg2 ...]`, and its
//! interactive mode (`-i`: `watch ...` and `progress` lines on stdin), as etcdctl 3.5 runs
//! them over one Watch stream.
//!
//! # Layout
//!
//! - Arguments: [`parse_args`] and [`parse_line`] follow etcdctl's `parseWatchArgs`, which
//!   reads the raw command line to find `--` (cobra drops it) and the
//!   `ETCDCTL_WATCH_KEY`/`ETCDCTL_WATCH_RANGE_END` variables.
//! - The stream: one task owns the gRPC stream, creates watches in order, sends progress
//!   requests, hands each watcher its responses as clientv3 does (created responses kept
//!   back, broadcast progress fanned out, a compaction delivered before the close) and
//!   resumes the watches on a new stream when the cluster is unreachable.
//! - Each watcher prints on its own thread, like etcdctl's `printWatchCh` goroutine, and
//!   runs the exec command per event with the `ETCD_WATCH_*` variables. A watcher that
//!   cannot print or whose exec command fails ends the command: etcdctl exits from that
//!   goroutine; cairnctl prints the error at once, stops every watcher printing, and sends
//!   the exit code to the command's thread, which returns it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};

use cairn_client::Client;
use cairn_proto::etcdserverpb::{
    watch_request, WatchCreateRequest, WatchProgressRequest, WatchRequest, WatchResponse,
};
use cairn_proto::mvccpb::event::EventType;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;

use super::process;
use crate::global::{CtlError, Ctx, ExitCode, Format};
use crate::go::flags::{self, Kind, Spec};
use crate::go::gofmt;
use crate::output::json::{self, Obj};
use crate::output::printer::{fields, out, protobuf, Simple};
use cairn_client::concurrency::prefix_end;

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

const ERR_NUM: &str = "bad number of arguments";
const ERR_CONFLICT_ENV: &str = "bad number of arguments (found conflicting environment key)";
const ERR_SEPARATOR: &str = "bad number of arguments (found separator --, but no commands)";

/// The watch options of one watch.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Options {
    /// `--prefix`.
    pub prefix: bool,
    /// `--rev`.
    pub rev: i64,
    /// `--prev-kv`.
    pub prev_kv: bool,
    /// `--progress-notify`.
    pub progress_notify: bool,
}

impl Options {
    fn from_flags(f: &flags::Values) -> Options {
        Options {
            prefix: f.bool("prefix"),
            rev: f.int("rev"),
            prev_kv: f.bool("prev-kv"),
            progress_notify: f.bool("progress-notify"),
        }
    }
}

/// The `ETCDCTL_WATCH_*` variables.
#[derive(Debug, Clone, Default)]
pub struct Env {
    key: String,
    range_end: String,
}

impl Env {
    fn prepend(&self, args: Vec<String>) -> Vec<String> {
        if self.key.is_empty() {
            return args;
        }
        let mut all = vec![self.key.clone()];
        if !self.range_end.is_empty() {
            all.push(self.range_end.clone());
        }
        all.extend(args);
        all
    }
}

fn position(args: &[String], word: &str) -> Option<usize> {
    args.iter().position(|a| a == word)
}

/// Drops the words that belong to the exec command from `watch_args`: everything from the
/// last occurrence of the command's first word.
fn trim_exec(watch_args: Vec<String>, first_exec: &str) -> Vec<String> {
    match watch_args.iter().rposition(|a| a == first_exec) {
        Some(end) => watch_args[..end].to_vec(),
        None => Vec::new(),
    }
}

/// Splits the command line into the watch's words and the exec command, as etcdctl's
/// `parseWatchArgs` does outside interactive mode. `raw` is the whole command line,
/// `args` what is left after flags are parsed.
pub fn parse_args(
    raw: &[String],
    args: &[String],
    env: &Env,
) -> Result<(Vec<String>, Vec<String>), String> {
    let raw = match position(raw, "watch") {
        Some(i) => &raw[i + 1..],
        None => raw,
    };
    let sep = position(raw, "--");
    if sep == Some(raw.len().wrapping_sub(1)) {
        return Err(ERR_SEPARATOR.into());
    }
    if sep.is_none() && raw.is_empty() && env.key.is_empty() {
        return Err(ERR_NUM.into());
    }
    if let (Some(exec_idx), false) = (sep, env.key.is_empty()) {
        // "ETCDCTL_WATCH_KEY=foo watch foo -- echo 1" names the key twice.
        let mut ridx = raw.len() as isize - 1;
        for w in args.iter().rev() {
            if ridx >= 0 && *w == raw[ridx as usize] {
                ridx -= 1;
                continue;
            }
            if ridx == exec_idx as isize {
                return Err(ERR_CONFLICT_ENV.into());
            }
        }
    }
    if sep.is_none() && !args.is_empty() && !env.key.is_empty() {
        return Err(ERR_CONFLICT_ENV.into());
    }
    let watch_args = env.prepend(args.to_vec());
    let Some(idx) = sep else {
        return Ok((watch_args, Vec::new()));
    };
    let exec = raw[idx + 1..].to_vec();
    Ok((trim_exec(watch_args, &raw[idx + 1]), exec))
}

/// Parses a line's words with a fresh set of `watch` flags; pflag refuses `-h`/`--help`
/// there since no help flag is declared.
fn parse_line_flags(words: &[String]) -> Result<flags::Parsed, String> {
    flags::parse(FLAGS, words).map_err(|e| {
        if e == "unknown flag: --help" || e.starts_with("unknown shorthand flag: 'h' in") {
            "pflag: help requested".to_string()
        } else {
            e
        }
    })
}

/// Splits an interactive `watch ...` line (its words, the first being `watch`) into the
/// watch's words, the exec command and the options, which come from the line alone.
pub fn parse_line(
    line_args: &[String],
    env: &Env,
) -> Result<(Vec<String>, Vec<String>, Options), String> {
    let words = &line_args[1..];
    let sep = position(words, "--");
    if sep.is_some() && sep == Some(words.len().wrapping_sub(1)) {
        return Err(ERR_SEPARATOR.into());
    }
    let parsed = parse_line_flags(words)?;
    if sep.is_none() && env.key.is_empty() && parsed.args.is_empty() {
        return Err(ERR_NUM.into());
    }
    if sep.is_none() && !parsed.args.is_empty() && !env.key.is_empty() {
        return Err(ERR_CONFLICT_ENV.into());
    }
    let opts = Options::from_flags(&parsed.values);
    let watch_args = env.prepend(parsed.args);
    let Some(idx) = sep else {
        return Ok((watch_args, Vec::new(), opts));
    };
    let exec = words[idx + 1..].to_vec();
    Ok((trim_exec(watch_args, &words[idx + 1]), exec, opts))
}

/// The create request for the watch's words, as etcdctl's `getWatchChan` builds it.
pub fn create_request(args: &[String], o: &Options) -> Result<WatchCreateRequest, String> {
    let Some(key) = args.first() else {
        return Err(ERR_NUM.into());
    };
    let mut req = WatchCreateRequest {
        key: key.as_bytes().to_vec(),
        start_revision: o.rev,
        prev_kv: o.prev_kv,
        progress_notify: o.progress_notify,
        ..Default::default()
    };
    if args.len() == 2 {
        if o.prefix {
            return Err("`range_end` and `--prefix` are mutually exclusive".into());
        }
        req.range_end = args[1].as_bytes().to_vec();
    }
    if o.prefix {
        if req.key.is_empty() {
            req.key = vec![0];
            req.range_end = vec![0];
        } else {
            req.range_end = prefix_end(&req.key);
        }
    }
    Ok(req)
}

/// What a watcher gets from the stream.
enum Delivery {
    /// A response to print.
    Resp(WatchResponse),
    /// The stream failed for good: clientv3's closing response with this error.
    Failed(String),
}

/// A request to the stream's task.
enum Request {
    Watch(WatchCreateRequest, std::sync::mpsc::Sender<Delivery>),
    Progress,
}

/// clientv3's `IsProgressNotify`.
fn is_progress(r: &WatchResponse) -> bool {
    r.events.is_empty()
        && !r.canceled
        && !r.created
        && r.compact_revision == 0
        && r.header.as_ref().is_some_and(|h| h.revision != 0)
}

struct Watcher {
    req: WatchCreateRequest,
    tx: std::sync::mpsc::Sender<Delivery>,
}

/// Owns the Watch stream until every request sender is gone.
async fn stream_task(client: Client, mut requests: mpsc::UnboundedReceiver<Request>) {
    let mut pending: VecDeque<Watcher> = VecDeque::new();
    let mut active: HashMap<i64, Watcher> = HashMap::new();
    let mut progress_wanted = false;
    loop {
        // etcd sends the call's headers with its first response: connect only once there
        // is something to ask.
        if pending.is_empty() && active.is_empty() && !progress_wanted {
            match requests.recv().await {
                None => return,
                Some(Request::Watch(req, out)) => pending.push_back(Watcher { req, tx: out }),
                Some(Request::Progress) => progress_wanted = true,
            }
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let mut call = tonic::Request::new(UnboundedReceiverStream::new(rx));
        call.metadata_mut().insert(
            "hasleader",
            tonic::metadata::MetadataValue::from_static("true"),
        );
        // Watches not yet created, then the ones to resume, are (re)created in order.
        let mut resume: Vec<Watcher> = active.drain().map(|(_, w)| w).collect();
        resume.sort_by_key(|w| w.req.start_revision);
        pending.extend(resume);
        for w in &pending {
            let _ = tx.send(create(w.req.clone()));
        }
        if std::mem::take(&mut progress_wanted) {
            let _ = tx.send(progress());
        }
        let mut stream = match client.watch().watch(call).await {
            Ok(s) => s.into_inner(),
            Err(s) if cairn_client::stream_broken(&s) => {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                continue;
            }
            Err(s) => {
                fail_all(
                    &mut pending,
                    &mut active,
                    &crate::global::status_message(&s).msg,
                );
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                continue;
            }
        };
        loop {
            tokio::select! {
                r = requests.recv() => match r {
                    None => return,
                    Some(Request::Watch(req, out)) => {
                        let _ = tx.send(create(req.clone()));
                        pending.push_back(Watcher { req, tx: out });
                    }
                    Some(Request::Progress) => {
                        let _ = tx.send(progress());
                    }
                },
                m = stream.message() => match m {
                    Ok(Some(resp)) => dispatch(resp, &mut pending, &mut active),
                    Ok(None) => break,
                    Err(s) if cairn_client::stream_broken(&s) => break,
                    Err(s) => {
                        fail_all(&mut pending, &mut active, &crate::global::status_message(&s).msg);
                        break;
                    }
                },
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

fn create(req: WatchCreateRequest) -> WatchRequest {
    WatchRequest {
        request_union: Some(watch_request::RequestUnion::CreateRequest(req)),
    }
}

fn progress() -> WatchRequest {
    WatchRequest {
        request_union: Some(watch_request::RequestUnion::ProgressRequest(
            WatchProgressRequest {},
        )),
    }
}

fn fail_all(pending: &mut VecDeque<Watcher>, active: &mut HashMap<i64, Watcher>, msg: &str) {
    for w in pending.drain(..).chain(active.drain().map(|(_, w)| w)) {
        let _ = w.tx.send(Delivery::Failed(msg.to_string()));
    }
}

/// Hands one response to its watcher(s), as clientv3's `dispatchEvent` does.
fn dispatch(
    resp: WatchResponse,
    pending: &mut VecDeque<Watcher>,
    active: &mut HashMap<i64, Watcher>,
) {
    let rev = resp.header.as_ref().map_or(0, |h| h.revision);
    if resp.created {
        let Some(mut w) = pending.pop_front() else {
            return;
        };
        if resp.canceled {
            return;
        }
        if w.req.start_revision == 0 {
            w.req.start_revision = rev + 1;
        }
        active.insert(resp.watch_id, w);
        return;
    }
    if resp.watch_id == -1 && is_progress(&resp) {
        for w in active.values() {
            let _ = w.tx.send(Delivery::Resp(resp.clone()));
        }
        return;
    }
    if resp.canceled {
        // Only a compaction reaches the watcher; either way its channel closes.
        if let Some(w) = active.remove(&resp.watch_id) {
            if resp.compact_revision != 0 {
                let _ = w.tx.send(Delivery::Resp(resp));
            }
        }
        return;
    }
    if let Some(w) = active.get_mut(&resp.watch_id) {
        w.req.start_revision = match resp.events.last().and_then(|e| e.kv.as_ref()) {
            Some(kv) => kv.mod_revision + 1,
            None => rev + 1,
        };
        let _ = w.tx.send(Delivery::Resp(resp));
    }
}

fn event_name(t: i32) -> &'static str {
    if t == EventType::Delete as i32 {
        "DELETE"
    } else {
        "PUT"
    }
}

/// The error clientv3's `WatchResponse.Err` gives for a canceled watch.
fn cancel_error(r: &WatchResponse) -> String {
    if r.compact_revision != 0 {
        return "etcdserver: mvcc: required revision has been compacted".into();
    }
    if r.cancel_reason.is_empty() {
        return "etcdserver: mvcc: required revision is a future revision".into();
    }
    if cairn_proto::EtcdError::from_message(&r.cancel_reason).is_some() {
        r.cancel_reason.clone()
    } else {
        format!(
            "rpc error: code = FailedPrecondition desc = {}",
            r.cancel_reason
        )
    }
}

/// Prints a watch response as etcdctl's `display.Watch`; `events_null` prints JSON's
/// `Events` as null (clientv3's closing response has no slice).
fn display(
    format: Format,
    simple: Simple,
    r: &WatchResponse,
    events_null: bool,
) -> Result<(), CtlError> {
    match format {
        Format::Simple => {
            let mut buf = Vec::new();
            for e in &r.events {
                buf.extend_from_slice(event_name(e.r#type).as_bytes());
                buf.push(b'\n');
                if let Some(p) = &e.prev_kv {
                    simple.kv(&mut buf, p);
                }
                simple.kv(&mut buf, &e.kv.clone().unwrap_or_default());
            }
            if !buf.is_empty() {
                out(&buf);
            }
        }
        Format::Json => {
            let events = if events_null {
                "null".to_string()
            } else {
                let items: Vec<String> = r
                    .events
                    .iter()
                    .map(|e| {
                        Obj::new()
                            .num("type", e.r#type)
                            .obj("kv", e.kv.as_ref().map(json::kv))
                            .obj("prev_kv", e.prev_kv.as_ref().map(json::kv))
                            .end()
                    })
                    .collect();
                format!("[{}]", items.join(","))
            };
            let s = Obj::new()
                .raw(
                    "Header",
                    &json::header(&r.header).unwrap_or_else(|| "{}".into()),
                )
                .raw("Events", &events)
                .num_always("CompactRevision", r.compact_revision)
                .raw("Canceled", &r.canceled.to_string())
                .raw("Created", &r.created.to_string())
                .end();
            out(format!("{s}\n").as_bytes());
        }
        Format::Fields => {
            let mut s = String::new();
            fields::hdr(&mut s, &r.header);
            for e in &r.events {
                s.push_str(&format!("\"Type\" : {}\n", event_name(e.r#type)));
                if let Some(p) = &e.prev_kv {
                    fields::kv(&mut s, "Prev", p);
                }
                fields::kv(&mut s, "", &e.kv.clone().unwrap_or_default());
            }
            out(s.as_bytes());
        }
        Format::Protobuf => protobuf(&WatchResponse {
            header: Some(r.header.unwrap_or_default()),
            watch_id: 0,
            created: r.created,
            canceled: r.canceled,
            compact_revision: r.compact_revision,
            cancel_reason: String::new(),
            fragment: false,
            events: r.events.clone(),
        }),
        Format::Table => return Err(format.unsupported()),
    }
    Ok(())
}

/// Held while a watcher prints, so that the responses of watchers printing at once do
/// not interleave. It guards whether the command has ended: etcdctl's process ends on the
/// spot, cairnctl's error first travels up to [`run`], and no watcher prints meanwhile.
static PRINTING: Mutex<bool> = Mutex::new(false);

fn printing() -> MutexGuard<'static, bool> {
    PRINTING.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Whether the command has ended, for a watcher about to run its exec command.
fn ended() -> bool {
    *printing()
}

/// Runs `print` holding the printing lock; `false` if the command has ended, and nothing
/// is printed. An error from `print` ends the command: it is printed at once, under the
/// lock, and returned as printed.
fn print_locked(print: impl FnOnce() -> Result<(), CtlError>) -> Result<bool, CtlError> {
    let mut ended = printing();
    if *ended {
        return Ok(false);
    }
    print().map(|()| true).map_err(|e| {
        *ended = true;
        e.reported()
    })
}

/// Ends the command for the watchers: none prints after this.
fn end_printing() {
    *printing() = true;
}

/// How a watcher prints.
#[derive(Clone)]
struct Printer {
    format: Format,
    simple: Simple,
    exec: Vec<String>,
}

impl Printer {
    /// Prints every delivery until the watch ends, as etcdctl's `printWatchCh`. A
    /// format that cannot print, or a failing exec command, ends the command (etcdctl
    /// exits from that goroutine): the error is printed at once and returned as printed.
    fn run(&self, rx: std::sync::mpsc::Receiver<Delivery>) -> Result<(), CtlError> {
        for d in rx {
            let (resp, events_null) = match d {
                Delivery::Resp(r) => (r, false),
                Delivery::Failed(msg) => {
                    print_locked(|| {
                        eprintln!("watch was canceled ({msg})");
                        let r = WatchResponse {
                            header: Some(Default::default()),
                            canceled: true,
                            ..Default::default()
                        };
                        display(self.format, self.simple, &r, true)
                    })?;
                    return Ok(());
                }
            };
            // One watcher's progress line and response are printed together.
            let printed = print_locked(|| {
                if resp.canceled {
                    eprintln!("watch was canceled ({})", cancel_error(&resp));
                }
                if is_progress(&resp) {
                    let rev = resp.header.as_ref().map_or(0, |h| h.revision);
                    out(format!("progress notify: {rev}\n").as_bytes());
                }
                display(self.format, self.simple, &resp, events_null)
            })?;
            if !printed {
                return Ok(());
            }
            if self.exec.is_empty() {
                continue;
            }
            let rev = resp.header.as_ref().map_or(0, |h| h.revision);
            for e in &resp.events {
                if ended() {
                    return Ok(());
                }
                let kv = e.kv.clone().unwrap_or_default();
                let env = [
                    ("ETCD_WATCH_REVISION".to_string(), rev.to_string()),
                    (
                        "ETCD_WATCH_EVENT_TYPE".to_string(),
                        format!("\"{}\"", event_name(e.r#type)),
                    ),
                    ("ETCD_WATCH_KEY".to_string(), gofmt::quote(&kv.key)),
                    ("ETCD_WATCH_VALUE".to_string(), gofmt::quote(&kv.value)),
                ];
                if let Err(err) = process::run(&self.exec, &env, false) {
                    print_locked(|| {
                        eprintln!(
                            "command {} error ({})",
                            process::quote_list(&self.exec),
                            err.msg
                        );
                        Err(CtlError::printed(ExitCode::Error))
                    })?;
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}

/// Starts a watch on the stream task and its printer thread, which sends how it ended to
/// `done`.
fn start(
    requests: &mpsc::UnboundedSender<Request>,
    req: WatchCreateRequest,
    printer: Printer,
    done: mpsc::UnboundedSender<Result<(), CtlError>>,
) {
    let (tx, rx) = std::sync::mpsc::channel();
    let _ = requests.send(Request::Watch(req, tx));
    std::thread::spawn(move || {
        let _ = done.send(printer.run(rx));
    });
}

/// `etcdctl watch`.
pub fn run(ctx: &mut Ctx, args: &[String]) -> Result<(), CtlError> {
    let env = Env {
        key: std::env::var("ETCDCTL_WATCH_KEY").unwrap_or_default(),
        range_end: std::env::var("ETCDCTL_WATCH_RANGE_END").unwrap_or_default(),
    };
    if env.key.is_empty() && !env.range_end.is_empty() {
        return Err(CtlError::bad_args(format!(
            "ETCDCTL_WATCH_KEY is empty but got ETCDCTL_WATCH_RANGE_END={}",
            gofmt::quote(env.range_end.as_bytes())
        )));
    }
    if ctx.flags.bool("interactive") {
        let result = interactive(ctx, &env);
        // Interactive mode ends only on an error, after which no watcher prints.
        end_printing();
        return result;
    }
    let (watch_args, exec) = parse_args(&ctx.raw_args, args, &env).map_err(CtlError::bad_args)?;
    let client = ctx.client()?;
    let opts = Options::from_flags(&ctx.flags);
    let req = create_request(&watch_args, &opts).map_err(CtlError::bad_args)?;
    let printer = Printer {
        format: ctx.format()?,
        simple: Simple {
            hex: ctx.hex(),
            value_only: false,
        },
        exec,
    };
    ctx.block_on(async move {
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(stream_task(client, rx));
        let (done_tx, mut done) = mpsc::unbounded_channel();
        start(&tx, req, printer, done_tx);
        // A printer that panicked ends the watch as one whose channel closed.
        done.recv().await.unwrap_or(Ok(()))?;
        drop(tx);
        let _ = task.await;
        Ok(())
    })??;
    Err(CtlError::new(
        ExitCode::Interrupted,
        "watch is canceled by the server",
    ))
}

/// `etcdctl watch -i`: reads `watch ...` and `progress` lines until stdin ends, or a
/// watcher ends the command.
fn interactive(ctx: &mut Ctx, env: &Env) -> Result<(), CtlError> {
    let client = ctx.client()?;
    let printer = Printer {
        format: ctx.format()?,
        simple: Simple {
            hex: ctx.hex(),
            value_only: false,
        },
        exec: Vec::new(),
    };
    let env = env.clone();
    ctx.block_on(async move {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(stream_task(client, rx));
        let (done_tx, mut done) = mpsc::unbounded_channel();
        let (line_tx, mut lines) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            let mut stdin = std::io::stdin().lock();
            loop {
                let line = super::txn::read_line(&mut stdin);
                let end = line.is_err();
                if line_tx.send(line).is_err() || end {
                    return;
                }
            }
        });
        loop {
            // A watcher's error ends the command; a watcher whose watch closed just stops.
            let line = tokio::select! {
                biased;
                Some(watcher) = done.recv() => {
                    watcher?;
                    continue;
                }
                line = lines.recv() => line,
            };
            let line = match line {
                Some(Ok(l)) => l,
                Some(Err(e)) => {
                    return Err(CtlError::new(
                        ExitCode::InvalidInput,
                        format!("error reading watch request line: {}", e.msg),
                    ))
                }
                None => {
                    return Err(CtlError::new(
                        ExitCode::InvalidInput,
                        "error reading watch request line: EOF",
                    ))
                }
            };
            let l = line.strip_suffix('\n').unwrap_or(&line);
            let words = super::txn::argify(l)?;
            match words.first().map(String::as_str) {
                None => eprintln!("Invalid command: {l} (watch and progress supported)"),
                Some("watch") => {
                    if words.len() < 2 && env.key.is_empty() {
                        eprintln!("Invalid command {l} (command type or key is not provided)");
                        continue;
                    }
                    let (watch_args, exec, opts) =
                        parse_line(&words, &env).map_err(CtlError::bad_args)?;
                    match create_request(&watch_args, &opts) {
                        Ok(req) => {
                            let printer = Printer {
                                exec,
                                ..printer.clone()
                            };
                            start(&tx, req, printer, done_tx.clone());
                        }
                        Err(e) => eprintln!("Invalid command {l} ({e})"),
                    }
                }
                Some("progress") => {
                    let _ = tx.send(Request::Progress);
                }
                Some(_) => eprintln!("Invalid command {l} (only support watch)"),
            }
        }
    })?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn splits_exec_commands() {
        let env = Env::default();
        let (w, e) = parse_args(
            &s(&["watch", "foo", "--", "echo", "hi"]),
            &s(&["foo", "echo", "hi"]),
            &env,
        )
        .unwrap();
        assert_eq!((w, e), (s(&["foo"]), s(&["echo", "hi"])));
        assert_eq!(
            parse_args(&s(&["watch", "foo", "--"]), &s(&["foo"]), &env).unwrap_err(),
            ERR_SEPARATOR
        );
        assert_eq!(parse_args(&s(&["watch"]), &[], &env).unwrap_err(), ERR_NUM);
        let env = Env {
            key: "k".into(),
            range_end: String::new(),
        };
        assert_eq!(
            parse_args(&s(&["watch", "foo"]), &s(&["foo"]), &env).unwrap_err(),
            ERR_CONFLICT_ENV
        );
        assert_eq!(
            parse_args(
                &s(&["watch", "foo", "--", "echo"]),
                &s(&["foo", "echo"]),
                &env
            )
            .unwrap_err(),
            ERR_CONFLICT_ENV
        );
        let (w, e) = parse_args(&s(&["watch", "--", "echo"]), &s(&["echo"]), &env).unwrap();
        assert_eq!((w, e), (s(&["k"]), s(&["echo"])));
    }

    #[test]
    fn interactive_lines_carry_their_own_options() {
        let env = Env::default();
        let (w, e, o) = parse_line(&s(&["watch", "--prefix", "a", "--", "echo"]), &env).unwrap();
        assert_eq!((w, e), (s(&["a"]), s(&["echo"])));
        assert!(o.prefix);
        assert_eq!(
            parse_line(&s(&["watch", "--prefix"]), &env).unwrap_err(),
            ERR_NUM
        );
        assert_eq!(
            parse_line(&s(&["watch", "-h"]), &env).unwrap_err(),
            "pflag: help requested"
        );
    }

    /// A watcher that could not print its response (or whose exec command failed) used
    /// to exit the process from its thread. Its error now comes back, printed, with
    /// etcdctl's exit code, and no other watcher prints or runs its command after it.
    #[test]
    fn a_watcher_error_ends_the_command() {
        let resp = WatchResponse {
            header: Some(cairn_proto::etcdserverpb::ResponseHeader {
                revision: 2,
                ..Default::default()
            }),
            events: vec![cairn_proto::mvccpb::Event {
                kv: Some(cairn_proto::mvccpb::KeyValue {
                    key: b"k".to_vec(),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        };
        let deliver = |printer: Printer| {
            let (tx, rx) = std::sync::mpsc::channel();
            tx.send(Delivery::Resp(resp.clone())).unwrap();
            drop(tx);
            printer.run(rx)
        };
        let table = Printer {
            format: Format::Table,
            simple: Simple::default(),
            exec: Vec::new(),
        };
        let e = deliver(table).unwrap_err();
        assert_eq!((e.text().as_str(), e.exit_code()), ("", 4));
        // It would print the event and fail on `false`.
        let exec = Printer {
            format: Format::Simple,
            simple: Simple::default(),
            exec: s(&["false"]),
        };
        assert!(deliver(exec).is_ok());
        // No other test prints watches; this one leaves the printing as it found it.
        *printing() = false;
    }
}
