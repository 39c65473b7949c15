//! `make-mirror`: copies the keys under a prefix from the cluster of `--endpoints` to another
//! cluster, then keeps applying the source's changes to it until interrupted.
//!
//! The copy has two phases, as etcdctl's mirror syncer runs them:
//!
//! 1. The base: every key under `--prefix` at one revision (the revision of the first page),
//!    read in pages of 1000 keys and written to the destination.
//! 2. The updates: a watch on the prefix from the base revision + 1. The events of one
//!    source revision go to the destination in one txn, split only when it would hold more
//!    than `--max-txn-ops` operations or about 1 MiB of keys and values (a destination's
//!    `--max-txn-ops` and `--max-request-bytes` would otherwise refuse it).
//!
//! Every 30 seconds the number of keys written and deleted so far is printed on its own
//! line. A compacted watch, or a failed write, ends the command with etcd's error.
//!
//! Example: `--prefix /a/ --dest-prefix /b/` writes source key `/a/x` as `/b/x`;
//! `--no-dest-prefix` writes it as `x`; with neither, the key keeps its name.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cairn_client::concurrency::prefix_end;
use cairn_client::{Client, ClientConfig};
use cairn_proto::etcdserverpb::{
    request_op, watch_request, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
    WatchCreateRequest, WatchRequest,
};
use cairn_proto::mvccpb::event::EventType;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;

use crate::global::{rpc_error_text, status_message, CtlError, Ctx};
use crate::go::flags::{Kind, Spec};
use crate::go::prompt;
use crate::output::printer::out;

/// `make-mirror`'s flags: etcdctl 3.5.1's, and `--max-txn-ops` as later etcdctl has it.
pub const FLAGS: &[Spec] = &[
    Spec::new("dest-cacert", Kind::Str, "", "Verify certificates of TLS enabled secure servers using this CA bundle"),
    Spec::new("dest-cert", Kind::Str, "", "Identify secure client using this TLS certificate file for the destination cluster"),
    Spec::new("dest-insecure-transport", Kind::Bool, "true", "Disable transport security for client connections"),
    Spec::new("dest-key", Kind::Str, "", "Identify secure client using this TLS key file"),
    Spec::new("dest-password", Kind::Str, "", "Destination password for authentication (if this option is used, --user option shouldn't include password)"),
    Spec::new("dest-prefix", Kind::Str, "", "destination prefix to mirror a prefix to a different prefix in the destination cluster"),
    Spec::new("dest-user", Kind::Str, "", "Destination username[:password] for authentication (prompt if password is not supplied)"),
    Spec::new("max-txn-ops", Kind::Int, "128", "Maximum number of operations permitted in a transaction during syncing updates."),
    Spec::new("no-dest-prefix", Kind::Bool, "false", "mirror key-values to the root of the destination cluster"),
    Spec::new("prefix", Kind::Str, "", "Key-value prefix to mirror"),
];

/// Keys read from the source per page of the base copy.
const PAGE: i64 = 1000;

/// The most key and value bytes one destination txn carries (below etcd's default 1.5 MiB
/// request limit, leaving room for the encoding).
const TXN_BYTES: usize = 1 << 20;

/// The largest response read from the source: the Go client's default (`math.MaxInt32`),
/// not tonic's 4 MiB, so a page of large values or a watch catching up on them gets
/// through as with etcdctl.
const RECV_LIMIT: usize = i32::MAX as usize;

/// How often the count line is printed.
const COUNT_EVERY: Duration = Duration::from_secs(30);

/// etcd's error for a watch whose start revision was compacted.
const COMPACTED: &str = "etcdserver: mvcc: required revision has been compacted";

/// What ended the mirror: a call to one side (the Go client logs its retry warning for
/// those), or the source's watch.
#[derive(Debug)]
enum Failed {
    /// A read of the base from the source.
    Source(tonic::Status),
    /// A txn on the destination.
    Dest(tonic::Status),
    /// The source's watch.
    Watch(tonic::Status),
}

/// How a source key is renamed at the destination.
#[derive(Debug, Clone)]
struct Rename {
    prefix: Vec<u8>,
    dest: Vec<u8>,
}

impl Rename {
    /// The destination key: the source key with its prefix replaced.
    fn key(&self, key: &[u8]) -> Vec<u8> {
        let rest = key.strip_prefix(self.prefix.as_slice()).unwrap_or(key);
        let mut k = self.dest.clone();
        k.extend_from_slice(rest);
        k
    }
}

/// The destination's operations waiting to be sent in one txn.
struct Batch {
    ops: Vec<RequestOp>,
    bytes: usize,
    max_ops: usize,
}

impl Batch {
    fn new(max_ops: usize) -> Batch {
        Batch {
            ops: Vec::new(),
            bytes: 0,
            max_ops,
        }
    }

    /// Whether `op` of `size` bytes must wait for the next txn.
    fn full_for(&self, size: usize) -> bool {
        !self.ops.is_empty() && (self.ops.len() >= self.max_ops || self.bytes + size > TXN_BYTES)
    }

    fn push(&mut self, op: RequestOp, size: usize) {
        self.ops.push(op);
        self.bytes += size;
    }

    /// Sends the waiting operations as one txn.
    async fn flush(&mut self, dest: &Client) -> Result<(), tonic::Status> {
        if self.ops.is_empty() {
            return Ok(());
        }
        let success = std::mem::take(&mut self.ops);
        self.bytes = 0;
        dest.kv()
            .txn(TxnRequest {
                compare: Vec::new(),
                success,
                failure: Vec::new(),
            })
            .await?;
        Ok(())
    }

    /// Adds `op`, first sending what waits if `op` would not fit.
    async fn add(
        &mut self,
        dest: &Client,
        op: RequestOp,
        size: usize,
    ) -> Result<(), tonic::Status> {
        if self.full_for(size) {
            self.flush(dest).await?;
        }
        self.push(op, size);
        Ok(())
    }
}

fn put_op(key: Vec<u8>, value: Vec<u8>) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestPut(PutRequest {
            key,
            value,
            ..Default::default()
        })),
    }
}

fn delete_op(key: Vec<u8>) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestDeleteRange(
            DeleteRangeRequest {
                key,
                ..Default::default()
            },
        )),
    }
}

/// The destination's credentials as etcdctl reads `--dest-user` and `--dest-password`.
fn dest_auth(ctx: &Ctx) -> (Option<String>, Option<String>) {
    let user = ctx.flags.str("dest-user");
    if user.is_empty() {
        return (None, None);
    }
    let pw = ctx.flags.str("dest-password");
    if !pw.is_empty() {
        return (Some(user.to_string()), Some(pw.to_string()));
    }
    match user.split_once(':') {
        Some((name, p)) => (Some(name.to_string()), Some(p.to_string())),
        None => (
            Some(user.to_string()),
            Some(prompt::ask("Destination Password: ")),
        ),
    }
}

/// `etcdctl make-mirror [options] <destination>`.
pub fn run(ctx: &mut Ctx, args: &[String]) -> Result<(), CtlError> {
    if args.len() != 1 {
        return Err(CtlError::bad_args(
            "make-mirror takes one destination argument",
        ));
    }
    let file = |name: &str| {
        let v = ctx.flags.str(name);
        (!v.is_empty()).then(|| v.to_string())
    };
    let (user, password) = dest_auth(ctx);
    let dest_cfg = ClientConfig {
        endpoints: vec![args[0].clone()],
        dial_timeout: ctx.flags.duration("dial-timeout"),
        user,
        password,
        cacert: file("dest-cacert"),
        cert: file("dest-cert"),
        key: file("dest-key"),
        server_name: None,
        insecure_skip_tls_verify: false,
        insecure_transport: ctx.flags.bool("dest-insecure-transport"),
    };
    // As etcdctl: the destination's client first, then the source's.
    let dest = ctx.client_with(&dest_cfg)?;
    let source = ctx.client()?;
    let max_ops = ctx.flags.int("max-txn-ops");
    if max_ops <= 0 {
        return Err(CtlError::bad_args(format!(
            "--max-txn-ops must be positive, got {max_ops}"
        )));
    }
    let prefix = ctx.flags.str("prefix").as_bytes().to_vec();
    let no_dest_prefix = ctx.flags.bool("no-dest-prefix");
    let dest_prefix = ctx.flags.str("dest-prefix").as_bytes().to_vec();
    if no_dest_prefix && !dest_prefix.is_empty() {
        return Err(CtlError::bad_args(
            "`--dest-prefix` and `--no-dest-prefix` cannot be set at the same time, choose one",
        ));
    }
    let rename = Rename {
        dest: if no_dest_prefix || !dest_prefix.is_empty() {
            dest_prefix
        } else {
            prefix.clone()
        },
        prefix,
    };
    let total = Arc::new(AtomicU64::new(0));
    let result = ctx.block_on(async move {
        let counted = total.clone();
        let ticker = tokio::spawn(async move {
            let mut every =
                tokio::time::interval_at(tokio::time::Instant::now() + COUNT_EVERY, COUNT_EVERY);
            loop {
                every.tick().await;
                out(format!("{}\n", counted.load(Ordering::Relaxed)).as_bytes());
            }
        });
        let result = mirror(&source, &dest, &rename, max_ops as usize, &total).await;
        ticker.abort();
        result
    })?;
    let status = match result {
        Ok(()) => return Err(CtlError::error("<nil>")),
        Err(Failed::Watch(status)) => status,
        Err(Failed::Source(status)) => {
            ctx.log_rpc_failure(0, &rpc_error_text(&status));
            status
        }
        Err(Failed::Dest(status)) => {
            ctx.log_against(&args[0]);
            ctx.log_rpc_failure(0, &rpc_error_text(&status));
            status
        }
    };
    Err(status_message(&status))
}

/// The range of the source's keys to mirror: `[key, end)`.
fn source_range(prefix: &[u8]) -> (Vec<u8>, Vec<u8>) {
    if prefix.is_empty() {
        (vec![0], vec![0])
    } else {
        (prefix.to_vec(), prefix_end(prefix))
    }
}

/// Copies the base, then follows the watch until an error.
async fn mirror(
    source: &Client,
    dest: &Client,
    rename: &Rename,
    max_ops: usize,
    total: &AtomicU64,
) -> Result<(), Failed> {
    let (mut key, end) = source_range(&rename.prefix);
    let mut rev = 0;
    let mut batch = Batch::new(max_ops);
    loop {
        let resp = source
            .kv()
            .max_decoding_message_size(RECV_LIMIT)
            .range(RangeRequest {
                key: key.clone(),
                range_end: end.clone(),
                limit: PAGE,
                revision: rev,
                ..Default::default()
            })
            .await
            .map_err(Failed::Source)?
            .into_inner();
        if rev == 0 {
            rev = resp.header.as_ref().map_or(0, |h| h.revision);
        }
        for kv in &resp.kvs {
            let size = kv.key.len() + kv.value.len();
            batch
                .add(dest, put_op(rename.key(&kv.key), kv.value.clone()), size)
                .await
                .map_err(Failed::Dest)?;
            total.fetch_add(1, Ordering::Relaxed);
        }
        match resp.kvs.last() {
            Some(last) if resp.more => {
                key = last.key.clone();
                key.push(0);
            }
            _ => break,
        }
    }
    batch.flush(dest).await.map_err(Failed::Dest)?;
    follow(source, dest, rename, rev + 1, max_ops, total).await
}

/// Applies the source's changes from revision `from` on, one source revision per txn
/// (split as [`Batch`] allows). A broken stream is reopened from the next revision not yet
/// applied, as the Go client's watch resumes.
async fn follow(
    source: &Client,
    dest: &Client,
    rename: &Rename,
    mut from: i64,
    max_ops: usize,
    total: &AtomicU64,
) -> Result<(), Failed> {
    let (key, end) = source_range(&rename.prefix);
    loop {
        let (tx, rx) = mpsc::unbounded_channel();
        let create = WatchRequest {
            request_union: Some(watch_request::RequestUnion::CreateRequest(
                WatchCreateRequest {
                    key: key.clone(),
                    range_end: end.clone(),
                    start_revision: from,
                    ..Default::default()
                },
            )),
        };
        // The receiver lives in the stream below; a send fails only once it is gone.
        let _ = tx.send(create);
        let mut call = tonic::Request::new(UnboundedReceiverStream::new(rx));
        call.metadata_mut().insert(
            "hasleader",
            tonic::metadata::MetadataValue::from_static("true"),
        );
        let mut watch = source.watch().max_decoding_message_size(RECV_LIMIT);
        let mut stream = match watch.watch(call).await {
            Ok(s) => s.into_inner(),
            Err(s) if cairn_client::stream_broken(&s) => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            Err(s) => return Err(Failed::Watch(s)),
        };
        loop {
            let resp = match stream.message().await {
                Ok(Some(resp)) => resp,
                Ok(None) => break,
                Err(s) if cairn_client::stream_broken(&s) => break,
                Err(s) => return Err(Failed::Watch(s)),
            };
            if resp.compact_revision != 0 {
                return Err(Failed::Watch(tonic::Status::out_of_range(COMPACTED)));
            }
            if resp.canceled {
                return Err(Failed::Watch(tonic::Status::unknown(resp.cancel_reason)));
            }
            apply_events(dest, rename, &resp.events, max_ops, total)
                .await
                .map_err(Failed::Dest)?;
            if let Some(last) = resp.events.iter().rev().find_map(|ev| ev.kv.as_ref()) {
                from = last.mod_revision + 1;
            }
        }
        drop(tx);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Applies one watch response's events: the events of one source revision in one txn,
/// split as [`Batch`] allows.
async fn apply_events(
    dest: &Client,
    rename: &Rename,
    events: &[cairn_proto::mvccpb::Event],
    max_ops: usize,
    total: &AtomicU64,
) -> Result<(), tonic::Status> {
    let mut batch = Batch::new(max_ops);
    let mut last_rev = 0;
    for ev in events {
        let Some(kv) = &ev.kv else { continue };
        if last_rev != 0 && kv.mod_revision > last_rev {
            batch.flush(dest).await?;
        }
        last_rev = kv.mod_revision;
        let key = rename.key(&kv.key);
        if ev.r#type == EventType::Delete as i32 {
            batch.add(dest, delete_op(key), kv.key.len()).await?;
        } else {
            let size = kv.key.len() + kv.value.len();
            batch.add(dest, put_op(key, kv.value.clone()), size).await?;
        }
        total.fetch_add(1, Ordering::Relaxed);
    }
    batch.flush(dest).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_renamed_by_their_prefix_only() {
        let r = |prefix: &str, dest: &str, key: &str| {
            Rename {
                prefix: prefix.as_bytes().to_vec(),
                dest: dest.as_bytes().to_vec(),
            }
            .key(key.as_bytes())
        };
        assert_eq!(r("/a/", "/b/", "/a/x/a/"), b"/b/x/a/".to_vec());
        assert_eq!(r("/a/", "", "/a/x"), b"x".to_vec());
        assert_eq!(r("", "/m/", "k"), b"/m/k".to_vec());
        assert_eq!(r("/a/", "/a/", "/a/k"), b"/a/k".to_vec());
    }

    #[test]
    fn a_batch_splits_at_max_ops_and_at_its_byte_budget() {
        let mut b = Batch::new(2);
        assert!(!b.full_for(TXN_BYTES * 2), "an empty batch takes any op");
        b.push(delete_op(b"a".to_vec()), 1);
        assert!(!b.full_for(1));
        assert!(b.full_for(TXN_BYTES));
        b.push(delete_op(b"b".to_vec()), 1);
        assert!(b.full_for(1));
    }

    #[test]
    fn the_whole_keyspace_is_read_from_the_zero_byte() {
        assert_eq!(source_range(b""), (vec![0], vec![0]));
        assert_eq!(source_range(b"/a"), (b"/a".to_vec(), b"/b".to_vec()));
    }
}
