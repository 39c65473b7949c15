//! The Watch service: one task per stream creates and cancels its watchers in the hub
//! (`crate::watch`), turns the events the hub hands it into responses, reads the history
//! for its unsynced watchers, and answers progress requests.
//!
//! The task keeps a small queue of responses ready to send. It takes more work from the
//! hub only when that queue is empty and what it took before is all queued, so a client
//! that does not read holds at most one round of responses here; meanwhile its watchers'
//! hub buffers fill, they fall out of sync, and they catch up from the backend when the
//! client reads again. Live events taken from the hub stay shared (`Arc`) until the
//! queue empties, and are copied into responses about [`CATCHUP_BYTES`] at a time.
//!
//! A catch-up round is bounded in events, revisions and bytes twice over: the history
//! read stops after the revision that reaches [`CATCHUP_EVENTS`] events or
//! [`CATCHUP_BYTES`] bytes, and once the round's responses hold [`CATCHUP_BYTES`] bytes of
//! events the remaining unsynced watchers wait for the next round, unmoved. Each round
//! serves at least one watcher at least one revision, so every watcher catches up.

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::Arc;

use cairn_mvcc::HistoryLimits;
use cairn_proto::etcdserverpb::{
    watch_create_request::FilterType, watch_request::RequestUnion, watch_server::Watch,
    WatchCreateRequest, WatchRequest, WatchResponse,
};
use cairn_proto::mvccpb::Event;
use futures::Stream;
use prost::Message;
use tokio::sync::{mpsc, Notify};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::server::Server;
use crate::watch::{WatchHub, WatchSpec, WatcherKey, Work};

/// Responses buffered between the stream task and gRPC.
const SEND_QUEUE: usize = 16;
/// Requests are read only while fewer responses than this wait in the task's queue, so a
/// client that sends without reading is held back (etcd's control queue is as short).
const QUEUE_FOR_REQUESTS: usize = 16;
/// The most events one catch-up read takes (more when one revision has more).
const CATCHUP_EVENTS: usize = 1000;
/// The most revisions one catch-up response covers, as etcd's.
const CATCHUP_REVS: usize = 1000;
/// The most key and value bytes one catch-up read takes, and the most one round queues
/// (each more by up to one revision, or one watcher's share).
const CATCHUP_BYTES: usize = 4 << 20;

const ERR_DUPLICATE_ID: &str = "mvcc: duplicate watch ID provided on the WatchStream";
const ERR_EMPTY_RANGE: &str = "mvcc: watcher range is empty";

/// The Watch service of one member.
pub struct WatchService {
    pub server: Arc<Server>,
}

type ResponseStream = Pin<Box<dyn Stream<Item = Result<WatchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Watch for WatchService {
    type WatchStream = ResponseStream;

    async fn watch(
        &self,
        req: Request<Streaming<WatchRequest>>,
    ) -> Result<Response<ResponseStream>, Status> {
        if let Err(e) = self.server.refuse_on_learner() {
            return Err(e.status());
        }
        // Who is asking is decided at each create, as etcd does, from what the stream
        // opened with.
        let token = crate::server::request_token(req.metadata());
        let conn = req
            .extensions()
            .get::<crate::identity::ConnIdentity>()
            .cloned();
        let inbound = req.into_inner();
        let (tx, rx) = mpsc::channel(SEND_QUEUE);
        let hub = self.server.watch_hub().clone();
        let (id, notify) = hub.open_stream();
        let task = StreamTask {
            server: self.server.clone(),
            hub,
            id,
            notify,
            watches: HashMap::new(),
            next_id: 0,
            out: VecDeque::new(),
            live: VecDeque::new(),
            unsynced: Vec::new(),
            progress_pending: false,
            token,
            conn,
        };
        tokio::spawn(task.run(inbound, tx));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// What the stream remembers of one of its watches.
struct WatchOpts {
    key: WatcherKey,
    prev_kv: bool,
    fragment: bool,
    progress_notify: bool,
    /// No events were sent since the last progress tick.
    quiet: bool,
}

struct StreamTask {
    server: Arc<Server>,
    hub: Arc<WatchHub>,
    id: u64,
    notify: Arc<Notify>,
    watches: HashMap<i64, WatchOpts>,
    /// The next watch id to try for a create without one (etcd counts from 0 per stream).
    next_id: i64,
    out: VecDeque<WatchResponse>,
    /// Live events taken from the hub and not yet made into responses, by watch id: they
    /// are copied into responses a few MiB at a time, not all at once (one put of 1.5 MiB
    /// matching 1000 watchers of the stream would be 1.5 GB of copies).
    live: VecDeque<(i64, Vec<Arc<Event>>)>,
    /// Unsynced watchers taken from the hub, read for once `live` is empty (a watcher's
    /// live events come before what it reads).
    unsynced: Vec<(WatcherKey, i64, WatchSpec, i64)>,
    /// A progress request waits for every watcher of the stream to be synced.
    progress_pending: bool,
    /// The auth token the stream opened with (or why it could not be read).
    token: Result<Option<String>, cairn_proto::EtcdError>,
    /// What the stream's connection proved about its client.
    conn: Option<crate::identity::ConnIdentity>,
}

impl StreamTask {
    async fn run(
        mut self,
        mut inbound: Streaming<WatchRequest>,
        tx: mpsc::Sender<Result<WatchResponse, Status>>,
    ) {
        let interval = self.server.config().watch_progress_notify_interval;
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut inbound_open = true;
        let events = self.server.metrics().more.events_total.clone();
        // The status that ends the stream, sent once its watchers are gone.
        let mut last = None;
        loop {
            if self.out.is_empty() {
                if let Err(status) = self.fill().await {
                    last = Some(status);
                    break;
                }
            }
            tokio::select! {
                biased;
                msg = inbound.message(), if inbound_open && self.out.len() < QUEUE_FOR_REQUESTS => match msg {
                    Ok(Some(req)) => self.handle(req),
                    // A client that stops sending still gets its events.
                    Ok(None) => inbound_open = false,
                    // A request past the receive limit ends the stream with etcd's
                    // error, as etcd's does; a client gone needs no answer.
                    Err(status) => {
                        let status = super::receive_limit_status(status);
                        if status.code() == tonic::Code::ResourceExhausted {
                            last = Some(status);
                        }
                        break;
                    }
                },
                permit = tx.reserve(), if !self.out.is_empty() => match permit {
                    Ok(permit) => {
                        if let Some(resp) = self.out.pop_front() {
                            events.inc_by(resp.events.len() as u64);
                            permit.send(Ok(resp));
                        }
                    }
                    Err(_) => break,
                },
                () = self.notify.notified(), if self.out.is_empty() => {}
                () = tx.closed() => break,
                _ = ticker.tick() => self.progress_tick(),
            }
        }
        // Off the async workers: a stream may hold 100k watchers.
        let (hub, id) = (self.hub.clone(), self.id);
        let keys: Vec<WatcherKey> = self.watches.values().map(|o| o.key).collect();
        let _ = tokio::task::spawn_blocking(move || hub.close_stream(id, keys)).await;
        // A client that reads no more holds only this task until it goes away.
        if let Some(status) = last {
            let _ = tx.send(Err(status)).await;
        }
    }

    fn handle(&mut self, req: WatchRequest) {
        match req.request_union {
            Some(RequestUnion::CreateRequest(c)) => self.create(c),
            Some(RequestUnion::CancelRequest(c)) => self.cancel(c.watch_id),
            Some(RequestUnion::ProgressRequest(_)) => {
                self.progress_pending = true;
                self.try_progress();
            }
            // etcd ignores a request it does not understand rather than ending the stream.
            None => {}
        }
    }

    fn create(&mut self, c: WatchCreateRequest) {
        let filters = |f: FilterType| c.filters.contains(&(f as i32));
        let spec = WatchSpec {
            no_put: filters(FilterType::Noput),
            no_delete: filters(FilterType::Nodelete),
            key: c.key,
            range_end: c.range_end,
        };
        let refuse = |reason: &str, rev: i64| WatchResponse {
            header: Some(self.server.header(rev)),
            watch_id: -1,
            created: true,
            canceled: true,
            cancel_reason: reason.to_string(),
            ..Default::default()
        };
        if !self.may_watch(&spec.key, &spec.range_end) {
            // etcd words the reason as its gRPC status prints itself.
            let denied = cairn_proto::EtcdError::PermissionDenied;
            let reason = format!(
                "rpc error: code = PermissionDenied desc = {}",
                denied.message()
            );
            let resp = WatchResponse {
                watch_id: c.watch_id,
                ..refuse(&reason, self.hub.published())
            };
            self.out.push_back(resp);
            return;
        }
        let empty_range = !matches!(spec.range_end.as_slice(), [] | [0])
            && spec.key.as_slice() >= spec.range_end.as_slice();
        if empty_range {
            let resp = refuse(ERR_EMPTY_RANGE, self.hub.published());
            self.out.push_back(resp);
            return;
        }
        let watch_id = if c.watch_id == 0 {
            while self.watches.contains_key(&self.next_id) {
                self.next_id += 1;
            }
            self.next_id += 1;
            self.next_id - 1
        } else if self.watches.contains_key(&c.watch_id) {
            let resp = refuse(ERR_DUPLICATE_ID, self.hub.published());
            self.out.push_back(resp);
            return;
        } else {
            c.watch_id
        };
        let (key, rev) = self.hub.add(self.id, watch_id, spec, c.start_revision);
        self.watches.insert(
            watch_id,
            WatchOpts {
                key,
                prev_kv: c.prev_kv,
                fragment: c.fragment,
                progress_notify: c.progress_notify,
                quiet: true,
            },
        );
        self.out.push_back(WatchResponse {
            header: Some(self.server.header(rev)),
            watch_id,
            created: true,
            ..Default::default()
        });
    }

    /// Whether the stream's caller may read the range, as etcd checks a watch at creation.
    fn may_watch(&self, key: &[u8], range_end: &[u8]) -> bool {
        let auth = self.server.auth();
        if !auth.is_enabled() {
            return true;
        }
        let who = match &self.token {
            Ok(token) => self.server.caller_now(token.as_deref(), self.conn.as_ref()),
            Err(e) => Err(*e),
        };
        match who {
            Ok(who) => auth
                .check(who.as_ref(), cairn_auth::Access::Read, key, range_end)
                .is_ok(),
            Err(_) => false,
        }
    }

    fn forget(&mut self, watch_id: i64) -> bool {
        let Some(opts) = self.watches.remove(&watch_id) else {
            return false;
        };
        // Its events not yet made into responses are not sent at all.
        self.live.retain(|(id, _)| *id != watch_id);
        self.hub.remove(opts.key);
        true
    }

    fn cancel(&mut self, watch_id: i64) {
        if !self.forget(watch_id) {
            return;
        }
        // Events not yet sent for it are not sent at all.
        self.out
            .retain(|r| r.watch_id != watch_id || r.created || r.canceled);
        let rev = self.hub.published();
        self.out.push_back(WatchResponse {
            header: Some(self.server.header(rev)),
            watch_id,
            canceled: true,
            ..Default::default()
        });
    }

    /// Sends the stream's progress response once every watcher is synced and everything
    /// taken from the hub is queued.
    fn try_progress(&mut self) {
        if !self.progress_pending || !self.live.is_empty() || !self.unsynced.is_empty() {
            return;
        }
        let keys: Vec<WatcherKey> = self.watches.values().map(|o| o.key).collect();
        let (synced, rev) = self.hub.synced(&keys);
        if synced.iter().all(|s| *s) {
            self.progress_pending = false;
            self.out.push_back(WatchResponse {
                header: Some(self.server.header(rev)),
                watch_id: -1,
                ..Default::default()
            });
        }
    }

    /// Tells each synced watcher that asked for progress notifications and got no events
    /// since the last tick the current revision.
    fn progress_tick(&mut self) {
        if !self.live.is_empty() || !self.unsynced.is_empty() {
            // Events are on their way; the next tick looks again.
            return;
        }
        let mut due = Vec::new();
        for (id, opts) in &mut self.watches {
            if opts.progress_notify {
                if opts.quiet {
                    due.push((*id, opts.key));
                }
                opts.quiet = true;
            }
        }
        if due.is_empty() {
            return;
        }
        let keys: Vec<WatcherKey> = due.iter().map(|(_, k)| *k).collect();
        let (synced, rev) = self.hub.synced(&keys);
        for ((watch_id, _), synced) in due.into_iter().zip(synced) {
            if synced {
                self.out.push_back(WatchResponse {
                    header: Some(self.server.header(rev)),
                    watch_id,
                    ..Default::default()
                });
            }
        }
    }

    /// Queues the next responses: live events taken from the hub, up to
    /// [`CATCHUP_BYTES`] of them (at least one watcher's); once those are all queued, one
    /// catch-up round; once that is done too, what the hub has now. If it queued nothing
    /// and work remains, it wakes the task to come back.
    async fn fill(&mut self) -> Result<(), Status> {
        if self.live.is_empty() && self.unsynced.is_empty() {
            let Work { live, unsynced } = self.hub.take(self.id);
            self.live = live.into();
            self.unsynced = unsynced;
        }
        if !self.live.is_empty() {
            let mut queued = 0usize;
            while queued < CATCHUP_BYTES {
                let Some((watch_id, events)) = self.live.pop_front() else {
                    break;
                };
                queued += events.iter().map(|ev| event_bytes(ev)).sum::<usize>();
                let mut start = 0;
                while start < events.len() {
                    let rev = rev_of(&events[start]);
                    let end = start + events[start..].partition_point(|ev| rev_of(ev) == rev);
                    let evs = events[start..end].iter().map(|ev| (**ev).clone()).collect();
                    self.push_events(watch_id, rev, evs);
                    start = end;
                }
            }
        } else if !self.unsynced.is_empty() {
            let unsynced = std::mem::take(&mut self.unsynced);
            self.catch_up(unsynced).await?;
        }
        self.try_progress();
        if self.out.is_empty() && !(self.live.is_empty() && self.unsynced.is_empty()) {
            self.notify.notify_one();
        }
        Ok(())
    }

    /// Reads one round of history for the unsynced watchers and queues what each wants.
    async fn catch_up(
        &mut self,
        unsynced: Vec<(WatcherKey, i64, WatchSpec, i64)>,
    ) -> Result<(), Status> {
        let from = unsynced.iter().map(|(_, _, _, n)| *n).min().unwrap_or(0);
        let with_prev = unsynced
            .iter()
            .any(|(_, id, _, _)| self.watches.get(id).is_some_and(|o| o.prev_kv));
        let store = self.server.store().clone();
        let limits = HistoryLimits {
            events: CATCHUP_EVENTS,
            revs: CATCHUP_REVS,
            bytes: CATCHUP_BYTES,
        };
        let read = tokio::task::spawn_blocking(move || store.history(from, limits, with_prev))
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        let history = match read {
            Ok(h) => h,
            Err(cairn_mvcc::MvccError::Compacted) => {
                let compacted = self.server.store().compact_revision();
                for (key, watch_id, _, next) in unsynced {
                    if self.watches.get(&watch_id).is_none_or(|o| o.key != key) {
                        continue;
                    }
                    if next < compacted {
                        self.forget(watch_id);
                        self.out.push_back(WatchResponse {
                            header: Some(self.server.header(0)),
                            watch_id,
                            canceled: true,
                            compact_revision: compacted,
                            ..Default::default()
                        });
                    } else {
                        self.hub.advance(key, next - 1);
                    }
                }
                return Ok(());
            }
            Err(e) => return Err(super::mvcc_status(e)),
        };
        let mut queued = 0usize;
        let mut served = Vec::new();
        for (key, watch_id, spec, next) in unsynced {
            if self.watches.get(&watch_id).is_none_or(|o| o.key != key) {
                continue;
            }
            if queued >= CATCHUP_BYTES {
                // The round is full: the watcher stays where it is, queued for the next
                // ahead of those served now.
                self.hub.advance(key, next - 1);
                continue;
            }
            let evs: Vec<Event> = history
                .events
                .iter()
                .filter(|ev| rev_of(ev) >= next && spec.wants(ev))
                .cloned()
                .collect();
            if !evs.is_empty() {
                queued += evs.iter().map(event_bytes).sum::<usize>();
                self.push_events(watch_id, history.current, evs);
            }
            served.push(key);
        }
        for key in served {
            self.hub.advance(key, history.through);
        }
        Ok(())
    }

    /// Queues a response carrying `events` for a watch, split into fragments if the watch
    /// asked for that and the response reaches `--max-request-bytes` plus 512 KiB.
    fn push_events(&mut self, watch_id: i64, rev: i64, mut events: Vec<Event>) {
        let Some(opts) = self.watches.get_mut(&watch_id) else {
            return;
        };
        opts.quiet = false;
        if !opts.prev_kv {
            for ev in &mut events {
                ev.prev_kv = None;
            }
        }
        let fragment = opts.fragment;
        let mut resp = WatchResponse {
            header: Some(self.server.header(rev)),
            watch_id,
            events,
            ..Default::default()
        };
        // As etcd's: the request limit plus gRPC's framing room.
        let max =
            self.server.config().max_request_bytes as usize + crate::config::GRPC_OVERHEAD_BYTES;
        if !fragment || resp.events.len() < 2 || resp.encoded_len() < max {
            self.out.push_back(resp);
            return;
        }
        let events = std::mem::take(&mut resp.events);
        resp.fragment = true;
        let base = resp.encoded_len();
        let mut cur = resp.clone();
        let mut size = base;
        for ev in events {
            let len = prost::encoding::message::encoded_len(11, &ev);
            if !cur.events.is_empty() && size + len >= max {
                let next = WatchResponse {
                    events: Vec::new(),
                    ..resp.clone()
                };
                self.out.push_back(std::mem::replace(&mut cur, next));
                size = base;
            }
            cur.events.push(ev);
            size += len;
        }
        cur.fragment = false;
        self.out.push_back(cur);
    }
}

/// The key and value bytes an event carries, its `prev_kv`'s included.
fn event_bytes(ev: &Event) -> usize {
    let kv_bytes = |kv: &cairn_proto::mvccpb::KeyValue| kv.key.len() + kv.value.len();
    ev.kv.as_ref().map_or(0, kv_bytes) + ev.prev_kv.as_ref().map_or(0, kv_bytes)
}

fn rev_of(ev: &Event) -> i64 {
    ev.kv.as_ref().map_or(0, |kv| kv.mod_revision)
}
