//! The Watch service: the same scripted watches against a real etcd 3.5 and cairn give the
//! same responses; the real etcdctl's `watch` prints the same; a reader that stops reading
//! blocks nobody and later gets every event in order; a watch resumed after kill -9 sees
//! exactly the rest; a catch-up of large values arrives whole, as etcd sends it; 100k range
//! watchers neither stop writes nor, closed, the member.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use cairn_proto::etcdserverpb::{
    kv_client::KvClient, request_op::Request as Op, watch_client::WatchClient,
    watch_create_request::FilterType, watch_request::RequestUnion, CompactionRequest,
    DeleteRangeRequest, PutRequest, RequestOp, TxnRequest, WatchCancelRequest, WatchCreateRequest,
    WatchProgressRequest, WatchRequest, WatchResponse,
};
use cairn_proto::mvccpb::event::EventType;
use cairn_tests::{channel, tool, Kind, ServerProc};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::Streaming;

/// Small enough that the fragment step splits a revision's events.
const MAX_REQUEST_BYTES: &str = "--max-request-bytes=2048";
const PROGRESS_INTERVAL: &str = "--experimental-watch-progress-notify-interval=1s";

/// One watch stream.
struct Stream {
    tx: mpsc::Sender<WatchRequest>,
    /// The call, until its response stream is needed: etcd (grpc-go) sends the response
    /// headers only with the first response, so the call cannot be awaited before the first
    /// request is sent.
    call: Option<tokio::task::JoinHandle<Streaming<WatchResponse>>>,
    rx: Option<Streaming<WatchResponse>>,
}

impl Stream {
    async fn open(ch: &Channel) -> Stream {
        Stream::open_client(WatchClient::new(ch.clone()))
    }

    /// A stream whose responses may be of any size (tonic refuses over 4 MiB by default).
    async fn open_unlimited(ch: &Channel) -> Stream {
        Stream::open_client(WatchClient::new(ch.clone()).max_decoding_message_size(usize::MAX))
    }

    fn open_client(mut client: WatchClient<Channel>) -> Stream {
        let (tx, rx) = mpsc::channel(16);
        let call = tokio::spawn(async move {
            client
                .watch(ReceiverStream::new(rx))
                .await
                .unwrap()
                .into_inner()
        });
        Stream {
            tx,
            call: Some(call),
            rx: None,
        }
    }

    async fn rx(&mut self) -> &mut Streaming<WatchResponse> {
        if let Some(call) = self.call.take() {
            self.rx = Some(call.await.unwrap());
        }
        self.rx.as_mut().unwrap()
    }

    async fn send(&self, r: RequestUnion) {
        self.tx
            .send(WatchRequest {
                request_union: Some(r),
            })
            .await
            .unwrap();
    }

    async fn create(&self, c: WatchCreateRequest) {
        self.send(RequestUnion::CreateRequest(c)).await;
    }

    /// Creates `n` watches, the `i`th with `create(i)`, sent from a task while the answers
    /// are read (so neither side waits for the other); every answer says created. Returns
    /// the answers, in order.
    async fn create_many(
        &mut self,
        n: usize,
        create: impl Fn(usize) -> WatchCreateRequest + Send + 'static,
    ) -> Vec<WatchResponse> {
        let tx = self.tx.clone();
        let sender = tokio::spawn(async move {
            for i in 0..n {
                let req = WatchRequest {
                    request_union: Some(RequestUnion::CreateRequest(create(i))),
                };
                tx.send(req).await.unwrap();
            }
        });
        let mut created = Vec::with_capacity(n);
        for _ in 0..n {
            let r = self.next().await;
            assert!(r.created);
            created.push(r);
        }
        sender.await.unwrap();
        created
    }

    /// Every response until none arrives for `quiet`.
    async fn collect(&mut self, quiet: Duration) -> Vec<WatchResponse> {
        let mut out = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Ok(r) = tokio::time::timeout_at(
            (Instant::now() + quiet).min(deadline).into(),
            self.rx().await.message(),
        )
        .await
        {
            out.push(r.unwrap().unwrap());
        }
        out
    }

    async fn next(&mut self) -> WatchResponse {
        tokio::time::timeout(Duration::from_secs(20), self.rx().await.message())
            .await
            .expect("no watch response in 20s")
            .unwrap()
            .unwrap()
    }
}

fn kv_text(kv: &cairn_proto::mvccpb::KeyValue) -> String {
    let text = |b: &[u8]| {
        let t = String::from_utf8_lossy(b);
        if t.len() > 12 {
            format!("{}..({} bytes)", &t[..8], t.len())
        } else {
            t.into_owned()
        }
    };
    format!(
        "{}={} c{} m{} v{} l{}",
        text(&kv.key),
        text(&kv.value),
        kv.create_revision,
        kv.mod_revision,
        kv.version,
        kv.lease
    )
}

/// Responses rendered without the member's ids and term, in order per watch id (different
/// watches' responses may interleave differently on the two servers).
fn render(mut rs: Vec<WatchResponse>) -> Vec<String> {
    rs.sort_by_key(|r| r.watch_id);
    rs.into_iter()
        .map(|r| {
            let events: Vec<String> = r
                .events
                .iter()
                .map(|e| {
                    format!(
                        "{} {} prev[{}]",
                        if e.r#type == EventType::Put as i32 {
                            "PUT"
                        } else {
                            "DELETE"
                        },
                        e.kv.as_ref().map(kv_text).unwrap_or_default(),
                        e.prev_kv.as_ref().map(kv_text).unwrap_or_default()
                    )
                })
                .collect();
            format!(
                "rev={} id={} created={} canceled={} compact={} reason={:?} fragment={} \
                 events={events:?} header={}",
                r.header.as_ref().map_or(-1, |h| h.revision),
                r.watch_id,
                r.created,
                r.canceled,
                r.compact_revision,
                r.cancel_reason,
                r.fragment,
                r.header.is_some()
            )
        })
        .collect()
}

fn put(k: &str, v: &str) -> PutRequest {
    PutRequest {
        key: k.into(),
        value: v.into(),
        ..Default::default()
    }
}

fn del(k: &str, end: &str) -> DeleteRangeRequest {
    DeleteRangeRequest {
        key: k.into(),
        range_end: end.into(),
        ..Default::default()
    }
}

fn txn(ops: Vec<Op>) -> TxnRequest {
    TxnRequest {
        success: ops
            .into_iter()
            .map(|o| RequestOp { request: Some(o) })
            .collect(),
        ..Default::default()
    }
}

fn watch(key: &str, end: &str, start: i64) -> WatchCreateRequest {
    WatchCreateRequest {
        key: key.into(),
        range_end: end.into(),
        start_revision: start,
        ..Default::default()
    }
}

/// Runs the scenario against one server and returns its transcript, step by step.
async fn scenario(url: String) -> Vec<(String, Vec<String>)> {
    let ch = channel(&url);
    let mut kv = KvClient::new(ch.clone());
    kv.put(put("a", "1")).await.unwrap(); // 2
    kv.put(put("b", "1")).await.unwrap(); // 3
    kv.put(put("a", "2")).await.unwrap(); // 4
    kv.txn(txn(vec![
        Op::RequestPut(put("c", "1")),
        Op::RequestPut(put("d", "1")),
        Op::RequestDeleteRange(del("b", "")),
    ]))
    .await
    .unwrap(); // 5
    kv.delete_range(del("a", "")).await.unwrap(); // 6
    kv.put(put("foo/x", "1")).await.unwrap(); // 7
    kv.put(put("foo/y", "1")).await.unwrap(); // 8
    kv.put(put("a", "3")).await.unwrap(); // 9
    kv.delete_range(del("foo/", "foo0")).await.unwrap(); // 10
    kv.put(put("zz", "1")).await.unwrap(); // 11
    kv.compact(CompactionRequest {
        revision: 4,
        physical: true,
    })
    .await
    .unwrap();

    let quiet = Duration::from_millis(400);
    let mut out = Vec::new();
    let mut s = Stream::open(&ch).await;
    macro_rules! step {
        ($name:expr, $action:expr) => {{
            eprintln!("step {}", $name);
            $action;
            out.push(($name.to_string(), render(s.collect(quiet).await)));
        }};
    }
    step!("past start, prev_kv, prev compacted", {
        s.create(WatchCreateRequest {
            prev_kv: true,
            ..watch("a", "", 4)
        })
        .await
    });
    step!("compacted start", s.create(watch("foo/", "foo0", 1)).await);
    step!("from key, NODELETE", {
        s.create(WatchCreateRequest {
            filters: vec![FilterType::Nodelete as i32],
            ..watch("c", "\0", 5)
        })
        .await
    });
    step!("all keys, NOPUT, prev_kv", {
        s.create(WatchCreateRequest {
            filters: vec![FilterType::Noput as i32],
            prev_kv: true,
            ..watch("", "\0", 5)
        })
        .await
    });
    step!("client-chosen id", {
        s.create(WatchCreateRequest {
            watch_id: 100,
            ..watch("zz", "", 0)
        })
        .await
    });
    step!("duplicate id", {
        s.create(WatchCreateRequest {
            watch_id: 100,
            ..watch("zz", "", 0)
        })
        .await
    });
    step!("empty range", s.create(watch("b", "a", 0)).await);
    step!("live from now", s.create(watch("a", "", 0)).await);
    step!("future start", s.create(watch("c", "", 13)).await);
    step!(
        "progress request",
        s.send(RequestUnion::ProgressRequest(WatchProgressRequest {}))
            .await
    );
    step!(
        "cancel",
        s.send(RequestUnion::CancelRequest(WatchCancelRequest {
            watch_id: 100
        }))
        .await
    );
    step!(
        "cancel unknown",
        s.send(RequestUnion::CancelRequest(WatchCancelRequest {
            watch_id: 999
        }))
        .await
    );
    step!("put a", kv.put(put("a", "4")).await.unwrap()); // 12
    step!("txn", {
        kv.txn(txn(vec![
            Op::RequestPut(put("c", "2")),
            Op::RequestDeleteRange(del("d", "")),
        ]))
        .await
        .unwrap()
    }); // 13
    step!("put foo/z", kv.put(put("foo/z", "1")).await.unwrap()); // 14
    step!("put zz after cancel", kv.put(put("zz", "2")).await.unwrap()); // 15
    step!(
        "progress request again",
        s.send(RequestUnion::ProgressRequest(WatchProgressRequest {}))
            .await
    );

    // Fragments: a catch-up response past --max-request-bytes plus etcd's 512 KiB of gRPC
    // room is split when the watch asks for it.
    let first = kv.put(put("f/0", "x")).await.unwrap().into_inner();
    let first = first.header.unwrap().revision;
    let big = "y".repeat(1900);
    for i in 1..300 {
        kv.put(put(&format!("f/{i}"), &big)).await.unwrap();
    }
    for fragment in [true, false] {
        let mut f = Stream::open(&ch).await;
        f.create(WatchCreateRequest {
            fragment,
            ..watch("f/", "f0", first)
        })
        .await;
        let rs = f.collect(quiet).await;
        let sizes: Vec<usize> = rs.iter().map(|r| r.events.len()).collect();
        out.push((
            format!("fragment={fragment} sizes"),
            vec![format!("{sizes:?}")],
        ));
        out.push((format!("fragment={fragment}"), render(rs)));
    }

    // Progress notifications on an idle watch.
    let mut p = Stream::open(&ch).await;
    p.create(WatchCreateRequest {
        progress_notify: true,
        ..watch("p", "", 0)
    })
    .await;
    let created = p.next().await;
    let progress = p.next().await;
    out.push(("progress notify".into(), render(vec![created, progress])));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_watch_responses_as_etcd() {
    let flags = [MAX_REQUEST_BYTES, PROGRESS_INTERVAL];
    let etcd = ServerProc::start(Kind::Etcd35, &flags);
    let cairn = ServerProc::start(Kind::Cairn, &flags);
    let (want, got) = tokio::join!(scenario(etcd.url()), scenario(cairn.url()));
    let mut diffs = Vec::new();
    for ((step, w), (_, g)) in want.iter().zip(&got) {
        if g != w {
            diffs.push(format!("step {step:?}:\n etcd:  {w:#?}\n cairn: {g:#?}"));
        }
    }
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
    assert_eq!(want.len(), got.len());
}

/// Runs `etcdctl watch` with `args` against `server` for 3 seconds, and `writes` once it
/// watches.
async fn etcdctl_watch(
    ctl: &str,
    server: &ServerProc,
    args: &[&str],
    kv: &mut KvClient<Channel>,
    writes: &[(&str, &str)],
) -> String {
    // The previous case's watcher is gone.
    tokio::task::block_in_place(|| server.wait_watchers(0));
    let child = std::process::Command::new("timeout")
        .args(["-s", "TERM", "3"])
        .arg(tool(ctl))
        .arg(format!("--endpoints={}", server.endpoint()))
        .arg("watch")
        .args(args)
        .env_remove("ETCDCTL_API")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    tokio::task::block_in_place(|| server.wait_watchers(1));
    for (k, v) in writes {
        if v.is_empty() {
            kv.delete_range(del(k, "")).await.unwrap();
        } else {
            kv.put(put(k, v)).await.unwrap();
        }
    }
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    format!(
        "{}--stderr--\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// etcdctl watch's arguments and the writes (key, value; empty value deletes) made meanwhile.
type WatchCase<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)]);

async fn etcdctl_transcript(proc_: &ServerProc, ctl: &str) -> Vec<String> {
    let ch = channel(&proc_.url());
    let mut kv = KvClient::new(ch);
    for (k, v) in [("k1", "a"), ("k2", "b"), ("k1", "c")] {
        kv.put(put(k, v)).await.unwrap();
    }
    kv.delete_range(del("k2", "")).await.unwrap(); // 5
    let mut out = Vec::new();
    let cases: [WatchCase; 5] = [
        (&["--rev=1", "--prefix", "k"], &[]),
        (&["--rev=2", "--prev-kv", "k1"], &[]),
        (&["k1"], &[("k1", "d"), ("k1", "")]),
        (&["--prefix", "--prev-kv", "k"], &[("k3", "e"), ("k3", "f")]),
        (&["k", "k2"], &[("k1", "g")]),
    ];
    for (args, writes) in cases {
        out.push(etcdctl_watch(ctl, proc_, args, &mut kv, writes).await);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_watch_prints_as_against_etcd() {
    for (server, ctl) in [(Kind::Etcd35, "etcdctl-3.5"), (Kind::Etcd34, "etcdctl-3.4")] {
        let etcd = ServerProc::start(server, &[]);
        let cairn = ServerProc::start(Kind::Cairn, &[]);
        let want = etcdctl_transcript(&etcd, ctl).await;
        let got = etcdctl_transcript(&cairn, ctl).await;
        assert_eq!(got, want, "{ctl}: cairn (left) differs from etcd (right)");
    }
}

/// Checks that `events` are exactly puts of `prefix` keys at revisions `from..=to`.
fn check_contiguous(events: &[(i64, Vec<u8>)], from: i64, to: i64) {
    let revs: Vec<i64> = events.iter().map(|(r, _)| *r).collect();
    let want: Vec<i64> = (from..=to).collect();
    if revs != want {
        let first_bad = revs
            .iter()
            .zip(&want)
            .position(|(a, b)| a != b)
            .unwrap_or(revs.len().min(want.len()));
        panic!(
            "events are not revisions {from}..={to} in order: {} events, first difference at \
             index {first_bad} ({:?} vs {:?})",
            revs.len(),
            revs.get(first_bad),
            want.get(first_bad)
        );
    }
}

/// Reads a stream's events until revision `to`, checking each response is whole.
async fn read_until(s: &mut Stream, to: i64) -> Vec<(i64, Vec<u8>)> {
    let mut events = Vec::new();
    while events.last().map(|(r, _)| *r) != Some(to) {
        let r = s.next().await;
        assert!(!r.canceled, "watch canceled: {r:?}");
        for ev in r.events {
            assert_eq!(ev.r#type, EventType::Put as i32);
            let kv = ev.kv.unwrap();
            events.push((kv.mod_revision, kv.key));
        }
    }
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_stops_reading_blocks_no_one_and_misses_nothing() {
    let cairn = ServerProc::start(Kind::Cairn, &[]);
    let ch = channel(&cairn.url());
    // A separate connection, so HTTP/2 flow control stalls only the slow reader.
    let slow_ch = channel(&cairn.url());
    let mut slow = Stream::open(&slow_ch).await;
    slow.create(watch("s/", "s0", 0)).await;
    let created = slow.next().await;
    let start = created.header.unwrap().revision + 1;
    let mut fast = Stream::open(&ch).await;
    fast.create(watch("s/", "s0", 0)).await;
    fast.next().await;

    const WRITERS: usize = 16;
    const PER_WRITER: usize = 700;
    let value = "v".repeat(200);
    let began = Instant::now();
    let reader = tokio::spawn(async move {
        let to = start + (WRITERS * PER_WRITER) as i64 - 1;
        let events = read_until(&mut fast, to).await;
        check_contiguous(&events, start, to);
        // Kept open: the metrics below count it.
        fast
    });
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let mut kv = KvClient::new(ch.clone());
        let value = value.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..PER_WRITER {
                kv.put(put(&format!("s/{w}/{i}"), &value)).await.unwrap();
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    let wrote = began.elapsed();
    let _fast = tokio::time::timeout(Duration::from_secs(60), reader)
        .await
        .expect("the reading watcher fell behind the writes")
        .unwrap();
    eprintln!(
        "{} writes in {wrote:?} with a stalled watcher",
        WRITERS * PER_WRITER
    );
    // The stalled watcher overflowed its buffer and is waiting to catch up from the backend.
    let (_, metrics) = cairn_tests::http_get(cairn.client_port, "/metrics");
    assert!(
        metrics.contains("etcd_debugging_mvcc_slow_watcher_total 1\n"),
        "the stalled watcher is not counted as slow:\n{metrics}"
    );
    assert!(
        metrics.contains("etcd_debugging_mvcc_watch_stream_total 2\n"),
        "{metrics}"
    );
    assert!(metrics.contains("etcd_debugging_mvcc_watcher_total 2\n"));
    // The dashboards count open watch streams as started minus handled.
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("grpc_server_started_total{")
                && l.contains("grpc_service=\"etcdserverpb.Watch\"")
                && l.contains("grpc_type=\"bidi_stream\"")
                && l.ends_with(" 2")),
        "watch streams are not counted as started:\n{metrics}"
    );
    let to = start + (WRITERS * PER_WRITER) as i64 - 1;
    let events = read_until(&mut slow, to).await;
    check_contiguous(&events, start, to);
    // And it is live again.
    let mut kv = KvClient::new(ch.clone());
    kv.put(put("s/last", "x")).await.unwrap();
    let r = slow.next().await;
    assert_eq!(r.events[0].kv.as_ref().unwrap().mod_revision, to + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_resumed_after_kill_9_sees_exactly_the_rest() {
    let mut cairn = ServerProc::start(Kind::Cairn, &[]);
    let mut seen = Vec::new();
    {
        let ch = channel(&cairn.url());
        let mut kv = KvClient::new(ch.clone());
        let mut s = Stream::open(&ch).await;
        s.create(watch("r/", "r0", 0)).await;
        let start = s.next().await.header.unwrap().revision + 1;
        for i in 0..50 {
            kv.put(put(&format!("r/{i}"), "v")).await.unwrap();
        }
        seen.extend(read_until(&mut s, start + 49).await);
    }
    cairn.kill9();
    // Writes go on after the crash, through the restarted member.
    cairn.spawn();
    let ch = channel(&cairn.url());
    let mut kv = KvClient::new(ch.clone());
    let last = seen.last().unwrap().0;
    for i in 50..80 {
        kv.put(put(&format!("r/{i}"), "v")).await.unwrap();
    }
    let mut s = Stream::open(&ch).await;
    s.create(watch("r/", "r0", last + 1)).await;
    assert!(s.next().await.created);
    for i in 80..100 {
        kv.put(put(&format!("r/{i}"), "v")).await.unwrap();
    }
    seen.extend(read_until(&mut s, last + 50).await);
    check_contiguous(&seen, last - 49, last + 50);
    let keys: Vec<String> = seen
        .iter()
        .map(|(_, k)| String::from_utf8(k.clone()).unwrap())
        .collect();
    let want: Vec<String> = (0..100).map(|i| format!("r/{i}")).collect();
    assert_eq!(keys, want);
    assert!(
        s.collect(Duration::from_millis(300)).await.is_empty(),
        "nothing after the last write"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_thousand_watchers_on_distinct_keys_each_see_only_their_key() {
    // Their memory against etcd's is measured by `scripts/bench-vs-etcd` (watch-mem).
    const N: usize = 50_000;
    let cairn = ServerProc::start(Kind::Cairn, &[]);
    let ch = channel(&cairn.url());
    let mut s = Stream::open(&ch).await;
    let key = |i: usize| format!("/registry/pods/default/pod-{i:06}");
    let ids: Vec<i64> = s
        .create_many(N, move |i| watch(&key(i), "", 0))
        .await
        .iter()
        .map(|r| r.watch_id)
        .collect();
    let mut kv = KvClient::new(ch.clone());
    for i in [0, 777, N / 2, N - 1] {
        kv.put(put(&key(i), "v")).await.unwrap();
        let r = s.next().await;
        assert_eq!(r.watch_id, ids[i], "the event of {} went elsewhere", key(i));
        let keys: Vec<Vec<u8>> = r.events.iter().map(|e| e.kv.clone().unwrap().key).collect();
        assert_eq!(keys, vec![key(i).into_bytes()]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_on_every_member_see_the_same_history_across_a_snapshot_install() {
    // A short log, so a member paused through 300 writes is sent a snapshot of the backend.
    let cluster = cairn_tests::Cluster::start(
        3,
        &[
            "--experimental-snapshot-catchup-entries=20",
            "--snapshot-count=20",
        ],
    );
    let mut streams = Vec::new();
    let mut start = 0;
    for m in &cluster.members {
        let ch = channel(&m.url());
        let mut s = Stream::open(&ch).await;
        s.create(watch("c/", "c0", 0)).await;
        let created = s.next().await;
        assert!(created.created);
        start = start.max(created.header.unwrap().revision + 1);
        streams.push((ch, s));
    }
    // Members in the order: a follower, the others (the leader last).
    let leader = cairn_tests::leader(&cluster.members);
    let mut order: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    order.push(leader);
    let mut writers: Vec<_> = order
        .iter()
        .map(|&i| KvClient::new(channel(&cluster.members[i].url())))
        .collect();
    let mut n = 0;
    for i in 0..60 {
        writers[i % 3]
            .put(put(&format!("c/{i}"), "v"))
            .await
            .unwrap();
        n += 1;
    }
    // The paused follower keeps its client connections; its watcher is behind the leader's
    // log when it wakes, and the member installs a snapshot.
    let paused = &cluster.members[order[0]];
    paused.signal("STOP");
    for i in 0..300 {
        writers[1 + i % 2]
            .put(put(&format!("c/p{i}"), "v"))
            .await
            .unwrap();
        n += 1;
    }
    // The leader purges its log only behind a durable backend commit, and the backend makes
    // a commit durable only once half a second has passed since the last one: let that time
    // pass, so that the next write is durable.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    writers[1].put(put("c/purge", "v")).await.unwrap();
    n += 1;
    paused.signal("CONT");
    // The put goes through the resumed member once it has installed the snapshot. Sooner,
    // the leader may fold the put's entry into the snapshot it sends; the member then
    // never applies that entry itself, and its waiter times out (as etcd's would).
    tokio::task::block_in_place(|| {
        paused.wait_logged(0, Duration::from_secs(20), "a restored snapshot", |l| {
            l.contains("restored raft snapshot")
        })
    });
    if let Err(e) = writers[0].put(put("c/last", "v")).await {
        panic!("put on the resumed member: {e:?}\n{}", paused.log_text());
    }
    n += 1;
    let to = start + n - 1;
    for (i, (_, s)) in streams.iter_mut().enumerate() {
        let events = read_until(s, to).await;
        check_contiguous(&events, start, to);
        eprintln!("member {i}: {} events in order", events.len());
    }
    let log = cluster.members[order[0]].log_text();
    assert!(
        log.contains("applied snapshot from the leader"),
        "the paused member caught up without a snapshot:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_etcd_client_crate_watches_cairn() {
    use etcd_client::{Client, EventType as ClientEventType, WatchOptions};
    let cairn = ServerProc::start(Kind::Cairn, &[]);
    let mut c = Client::connect([cairn.url()], None).await.unwrap();
    c.put("svc/a", "1", None).await.unwrap(); // 2
    let mut stream = c
        .watch(
            "svc/",
            Some(
                WatchOptions::new()
                    .with_prefix()
                    .with_prev_key()
                    .with_start_revision(2),
            ),
        )
        .await
        .unwrap();
    let created = stream.message().await.unwrap().unwrap();
    assert!(created.created());
    let id = created.watch_id();
    c.put("svc/a", "2", None).await.unwrap(); // 3
    c.delete("svc/a", None).await.unwrap(); // 4
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let r = tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .unwrap_or_else(|_| panic!("no watch response in 10 s; seen {seen:?}"))
            .unwrap()
            .unwrap();
        for e in r.events() {
            let kv = e.kv().unwrap();
            seen.push((
                e.event_type() == ClientEventType::Put,
                kv.mod_revision(),
                e.prev_kv().map(|p| p.value().to_vec()),
            ));
        }
    }
    assert_eq!(
        seen,
        vec![
            (true, 2, None),
            (true, 3, Some(b"1".to_vec())),
            (false, 4, Some(b"2".to_vec())),
        ]
    );
    stream.cancel(id).await.unwrap();
    let r = stream.message().await.unwrap().unwrap();
    assert!(r.canceled() && r.watch_id() == id);
}

/// One watch's events as a client sees them, fragments joined: (revision, key, value
/// length, value's first byte, prev_kv's first byte), and whether every fragmented
/// response was followed through to its last fragment.
type Seen = (Vec<(i64, String, usize, u8, Option<u8>)>, bool);

/// Puts 40 values of 1 MiB under `big/` (some keys twice), then watches `big/` from
/// revision 1 with three watches on one stream: plain, with prev_kv, and with prev_kv and
/// fragment. Returns what each saw.
async fn large_catch_up(url: String) -> Vec<Seen> {
    const PUTS: usize = 40;
    const MIB: usize = 1 << 20;
    let ch = channel(&url);
    let mut kv = KvClient::new(ch.clone());
    let mut first = 0;
    for i in 0..PUTS {
        let value = vec![b'a' + (i % 26) as u8; MIB];
        let r = kv
            .put(PutRequest {
                key: format!("big/{:02}", i % 30).into_bytes(),
                value,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        if i == 0 {
            first = r.header.unwrap().revision;
        }
    }
    let mut s = Stream::open_unlimited(&ch).await;
    for (id, prev_kv, fragment) in [(1, false, false), (2, true, false), (3, true, true)] {
        s.create(WatchCreateRequest {
            watch_id: id,
            prev_kv,
            fragment,
            ..watch("big/", "big0", 1)
        })
        .await;
    }
    let mut seen: Vec<Seen> = vec![(Vec::new(), true); 3];
    let mut open_fragment = [false; 3];
    let done = |seen: &[Seen]| seen.iter().all(|(evs, _)| evs.len() == PUTS);
    while !done(&seen) {
        let r = s.next().await;
        assert!(!r.canceled, "watch canceled: {r:?}");
        if r.created {
            continue;
        }
        let w = (r.watch_id - 1) as usize;
        for ev in &r.events {
            let kv = ev.kv.as_ref().unwrap();
            seen[w].0.push((
                kv.mod_revision,
                String::from_utf8(kv.key.clone()).unwrap(),
                kv.value.len(),
                kv.value[0],
                ev.prev_kv.as_ref().map(|p| p.value[0]),
            ));
        }
        open_fragment[w] = r.fragment;
    }
    for (w, open) in open_fragment.iter().enumerate() {
        seen[w].1 = !open;
    }
    let revs: Vec<i64> = seen[0].0.iter().map(|e| e.0).collect();
    assert_eq!(revs, (first..first + PUTS as i64).collect::<Vec<_>>());
    seen
}

/// Regression: a catch-up round read up to 1000 events whatever their size (1000 values
/// of 1.5 MiB is 1.5 GB for one stream); now a round is bounded in bytes, and what the
/// client sees must not change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catch_up_of_large_values_arrives_whole_and_in_order_as_from_etcd() {
    let etcd = ServerProc::start(Kind::Etcd35, &[]);
    let cairn = ServerProc::start(Kind::Cairn, &[]);
    let want = large_catch_up(etcd.url()).await;
    let got = large_catch_up(cairn.url()).await;
    assert_eq!(got.len(), want.len());
    for (w, (g, e)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g, e, "watch {} differs from etcd's", w + 1);
    }
    assert!(
        got[1].0.iter().any(|e| e.4.is_some()),
        "some events overwrite a key and carry its prev_kv"
    );
}

/// Regression: every write checked every range watcher under the hub lock (100k made a
/// put 20-50 times slower), and closing a stream removed each of its range watchers from
/// a list, all under one hold of the lock (with 100k, a put waited 50 s meanwhile).
/// Registers 100k range watchers on one stream (a prefix each, `w/000000/` ..), plus a
/// probe watching `k/` on another; checks that writes by another client complete and
/// reach the right watchers, then closes the big stream and checks the member serves on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_range_watchers_then_a_close_leave_the_member_serving() {
    const N: usize = 100_000;
    let cairn = ServerProc::start(Kind::Cairn, &[]);
    let ch = channel(&cairn.url());
    let prefix = |i: usize| format!("w/{i:06}/");
    let end = |i: usize| format!("w/{i:06}0");
    let mut big = Stream::open(&channel(&cairn.url())).await;
    let created = big
        .create_many(N, move |i| watch(&prefix(i), &end(i), 0))
        .await;
    for r in &created {
        assert!(r.created && !r.canceled, "{r:?}");
    }
    let ids: Vec<i64> = created.iter().map(|r| r.watch_id).collect();
    let mut probe = Stream::open(&ch).await;
    probe.create(watch("k/", "k0", 0)).await;
    let start = probe.next().await.header.unwrap().revision + 1;

    let mut kv = KvClient::new(ch.clone());
    for i in 0..50 {
        kv.put(put(&format!("k/{i}"), "v")).await.unwrap();
    }
    let events = read_until(&mut probe, start + 49).await;
    check_contiguous(&events, start, start + 49);
    for i in [0, 777, N / 2, N - 1] {
        let key = format!("{}x", prefix(i));
        kv.put(put(&key, "v")).await.unwrap();
        let r = big.next().await;
        assert_eq!(r.watch_id, ids[i], "the event of {key} went elsewhere");
        let keys: Vec<Vec<u8>> = r.events.iter().map(|e| e.kv.clone().unwrap().key).collect();
        assert_eq!(keys, vec![key.into_bytes()]);
    }

    // The client goes away; the member removes the watchers and serves on meanwhile.
    drop(big);
    let after = start + 54;
    for i in 0..50 {
        kv.put(put(&format!("k/after/{i}"), "v")).await.unwrap();
    }
    let events = read_until(&mut probe, after + 49).await;
    check_contiguous(&events, after, after + 49);
    cairn_tests::wait::wait_until(
        Duration::from_secs(60),
        "the closed stream's watchers to be removed",
        || {
            let (_, metrics) = cairn_tests::http_get(cairn.client_port, "/metrics");
            let line = metrics
                .lines()
                .find(|l| l.starts_with("etcd_debugging_mvcc_watcher_total "))
                .map(str::to_string);
            match line.as_deref() {
                Some("etcd_debugging_mvcc_watcher_total 1") => Ok(()),
                _ => Err(line),
            }
        },
    );
    let mut fresh = Stream::open(&ch).await;
    fresh.create(watch("k/", "k0", after + 49)).await;
    assert!(fresh.next().await.created);
    let events = read_until(&mut fresh, after + 49).await;
    assert_eq!(events, vec![(after + 49, b"k/after/49".to_vec())]);
    kv.put(put("k/last", "v")).await.unwrap();
    assert_eq!(read_until(&mut probe, after + 50).await.len(), 1);
}

/// Puts 5 values of 1 MiB under `fan/` watched by 50 watchers on one stream, then asks
/// for progress. Returns each watcher's (revision, value's first byte) list, and the
/// progress response's revision minus the first put's.
async fn fan_out(url: String) -> (Vec<Vec<(i64, u8)>>, i64) {
    const WATCHERS: i64 = 50;
    const PUTS: usize = 5;
    let ch = channel(&url);
    let mut s = Stream::open_unlimited(&ch).await;
    for id in 0..WATCHERS {
        s.create(WatchCreateRequest {
            watch_id: id + 1,
            ..watch("fan/", "fan0", 0)
        })
        .await;
    }
    for _ in 0..WATCHERS {
        assert!(s.next().await.created);
    }
    let mut kv = KvClient::new(ch.clone());
    let mut first = 0;
    for i in 0..PUTS {
        let r = kv
            .put(PutRequest {
                key: format!("fan/{i}").into_bytes(),
                value: vec![b'a' + i as u8; 1 << 20],
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        if i == 0 {
            first = r.header.unwrap().revision;
        }
    }
    let mut seen = vec![Vec::new(); WATCHERS as usize];
    let mut total = 0;
    while total < WATCHERS as usize * PUTS {
        let r = s.next().await;
        assert!(!r.canceled && !r.created, "{r:?}");
        for ev in &r.events {
            let kv = ev.kv.as_ref().unwrap();
            seen[(r.watch_id - 1) as usize].push((kv.mod_revision - first, kv.value[0]));
            total += 1;
        }
    }
    s.send(RequestUnion::ProgressRequest(WatchProgressRequest {}))
        .await;
    let r = s.next().await;
    assert_eq!(r.watch_id, -1, "a progress response, nothing else: {r:?}");
    (seen, r.header.unwrap().revision - first)
}

/// Regression: a stream made one copy of an event per watcher of it at once (one put of
/// 1.5 MiB matching 1000 watchers of a stream was 1.5 GB); now the copies are made a few
/// MiB at a time as the client reads, and each watcher must still get every event once,
/// in order, before the progress response, as from etcd.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_events_fanned_out_on_one_stream_arrive_once_each_as_from_etcd() {
    let etcd = ServerProc::start(Kind::Etcd35, &[]);
    let cairn = ServerProc::start(Kind::Cairn, &[]);
    let want = fan_out(etcd.url()).await;
    let got = fan_out(cairn.url()).await;
    let each: Vec<(i64, u8)> = (0..5).map(|i| (i, b'a' + i as u8)).collect();
    assert!(want.0.iter().all(|w| *w == each), "etcd: {:?}", want.0);
    assert_eq!(got, want);
}
