//! Watchers that resume from their last revision across member kills and restarts see
//! exactly the history: in a 3-member cluster, writers put unique values while each member
//! in turn is killed (-9) and restarted; three watchers, one per member at first, follow
//! the prefix from revision 1, and whenever their stream breaks they reconnect to another
//! member and resume from the revision after the last event they saw. At the end every
//! watcher must have seen every revision once, in order, with the same events as a fresh
//! watch of the whole history, and every acknowledged write must be among them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_proto::etcdserverpb::{
    kv_client::KvClient, watch_client::WatchClient, watch_request, PutRequest, RangeRequest,
    WatchCreateRequest, WatchRequest,
};
use cairn_tests::{channel, wait_until, Cluster};
use futures::StreamExt;
use tonic::transport::Channel;

const PREFIX: &[u8] = b"w/";
const PREFIX_END: &[u8] = b"w0";
const WRITERS: usize = 4;
/// Keys one writer writes at most; it stops once the kills and restarts are over.
const MAX_WRITES_PER_WRITER: usize = 5000;
/// Acknowledged writes between two steps of the kill and restart schedule.
const WRITES_PER_PHASE: usize = 40;

/// One event as a watcher saw it: (revision, key, value, is a delete).
type Seen = (i64, Vec<u8>, Vec<u8>, bool);

/// Follows the prefix from revision `from` on `url` until the stream breaks, the watcher
/// has reached `target` (0: unknown yet), or `deadline` passes; appends what it sees.
async fn follow(
    url: &str,
    from: i64,
    seen: &Mutex<Vec<Seen>>,
    target: &Mutex<i64>,
    deadline: Instant,
) -> Result<(), String> {
    let create = WatchRequest {
        request_union: Some(watch_request::RequestUnion::CreateRequest(
            WatchCreateRequest {
                key: PREFIX.to_vec(),
                range_end: PREFIX_END.to_vec(),
                start_revision: from,
                ..Default::default()
            },
        )),
    };
    let requests = futures::stream::iter([create]).chain(futures::stream::pending());
    let mut stream = WatchClient::new(channel(url))
        .watch(requests)
        .await
        .map_err(|e| e.to_string())?
        .into_inner();
    loop {
        let last = seen.lock().unwrap().last().map_or(0, |s| s.0);
        let want = *target.lock().unwrap();
        if want != 0 && last >= want {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!("at revision {last} of {want} when the time was up"));
        }
        let msg = tokio::time::timeout(Duration::from_millis(500), stream.message()).await;
        let Ok(msg) = msg else { continue };
        let r = msg.map_err(|e| e.to_string())?.ok_or("stream ended")?;
        if r.canceled {
            return Err(format!("canceled: {}", r.cancel_reason));
        }
        let mut s = seen.lock().unwrap();
        for e in r.events {
            let kv = e.kv.unwrap_or_default();
            s.push((kv.mod_revision, kv.key, kv.value, e.r#type == 1));
        }
    }
}

/// A watcher that keeps resuming, on the next member each time, until it reached `target`.
async fn resuming_watcher(
    urls: Vec<String>,
    first: usize,
    seen: Arc<Mutex<Vec<Seen>>>,
    target: Arc<Mutex<i64>>,
    deadline: Instant,
) {
    let mut i = first;
    while Instant::now() < deadline {
        let from = seen.lock().unwrap().last().map_or(1, |s| s.0 + 1);
        if follow(&urls[i % urls.len()], from, &seen, &target, deadline)
            .await
            .is_ok()
        {
            return;
        }
        i += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Puts `w/<writer>/<n>` with a unique value, trying each member in turn until one
/// acknowledges, and counts each acknowledgement in `acks`, until `stop`; returns the
/// acknowledged (key, value) pairs and how many keys it tried.
async fn writer(
    urls: Vec<String>,
    id: usize,
    stop: Arc<AtomicBool>,
    acks: Arc<AtomicUsize>,
) -> (Vec<(Vec<u8>, Vec<u8>)>, usize) {
    let mut acked = Vec::new();
    let mut tried = 0;
    let mut i = id;
    let mut client: Option<KvClient<Channel>> = None;
    for n in 0..MAX_WRITES_PER_WRITER {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        tried += 1;
        let key = format!("w/{id}/{n:04}").into_bytes();
        let value = format!("v{id}-{n}").into_bytes();
        let mut attempts = 0;
        while !stop.load(Ordering::Relaxed) && attempts < 100 {
            attempts += 1;
            let c = client.get_or_insert_with(|| KvClient::new(channel(&urls[i % urls.len()])));
            let put = c.put(PutRequest {
                key: key.clone(),
                value: value.clone(),
                ..Default::default()
            });
            match tokio::time::timeout(Duration::from_secs(3), put).await {
                Ok(Ok(_)) => {
                    acked.push((key.clone(), value.clone()));
                    acks.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                // Unknown outcome or refused: try another member (a retry of a write
                // that did apply only adds a later revision with the same value).
                _ => {
                    client = None;
                    i += 1;
                }
            }
        }
    }
    (acked, tried)
}

#[test]
fn resuming_watchers_see_every_revision_once_across_kills_and_restarts() {
    let mut cluster = Cluster::start(3, &[]);
    let urls: Vec<String> = cluster.members.iter().map(|m| m.url()).collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let target = Arc::new(Mutex::new(0i64));
    let stop = Arc::new(AtomicBool::new(false));
    let watchers: Vec<_> = (0..3)
        .map(|i| {
            let seen = Arc::new(Mutex::new(Vec::new()));
            let task = rt.spawn(resuming_watcher(
                urls.clone(),
                i,
                seen.clone(),
                target.clone(),
                deadline,
            ));
            (seen, task)
        })
        .collect();
    let acks = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = (0..WRITERS)
        .map(|id| rt.spawn(writer(urls.clone(), id, stop.clone(), acks.clone())))
        .collect();

    // Kill and restart each member in turn while the writes go on: each member is up for,
    // then down for, another WRITES_PER_PHASE acknowledged writes, and some more come after.
    let more_writes = |what: String| {
        let until = acks.load(Ordering::Relaxed) + WRITES_PER_PHASE;
        wait_until(Duration::from_secs(30), what, || {
            let n = acks.load(Ordering::Relaxed);
            if n >= until {
                Ok(())
            } else {
                Err(format!("{n} writes acknowledged"))
            }
        });
    };
    for i in 0..3 {
        more_writes(format!(
            "{WRITES_PER_PHASE} more writes before m{i} is killed"
        ));
        cluster.members[i].kill9();
        more_writes(format!("{WRITES_PER_PHASE} more writes while m{i} is down"));
        cluster.members[i].spawn();
    }
    more_writes(format!("{WRITES_PER_PHASE} more writes after the restarts"));
    stop.store(true, Ordering::Relaxed);
    let (acked, tried) = rt.block_on(async {
        let (mut all, mut tried) = (Vec::new(), 0);
        for w in writers {
            let (acked, n) = w.await.unwrap();
            all.extend(acked);
            tried += n;
        }
        (all, tried)
    });
    assert!(
        acked.len() * 2 > tried,
        "only {} of {tried} writes acknowledged",
        acked.len()
    );

    // The final revision, read linearizably; every watcher must get to it.
    let final_rev = rt.block_on(async {
        for url in urls.iter().cycle().take(30) {
            let r = KvClient::new(channel(url))
                .range(RangeRequest {
                    key: PREFIX.to_vec(),
                    range_end: PREFIX_END.to_vec(),
                    count_only: true,
                    ..Default::default()
                })
                .await;
            if let Ok(r) = r {
                return r.into_inner().header.unwrap().revision;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("no member answered a range");
    });
    *target.lock().unwrap() = final_rev;
    let seen: Vec<Vec<Seen>> = rt.block_on(async {
        let mut out = Vec::new();
        for (seen, task) in watchers {
            task.await.unwrap();
            out.push(seen.lock().unwrap().clone());
        }
        out
    });

    // The reference: the whole history, watched once from revision 1 on a fresh stream.
    let reference = Arc::new(Mutex::new(Vec::new()));
    let deadline = Instant::now() + Duration::from_secs(60);
    rt.block_on(follow(&urls[0], 1, &reference, &target, deadline))
        .unwrap();
    let reference = reference.lock().unwrap().clone();
    assert_eq!(reference.last().map(|s| s.0), Some(final_rev));

    for (w, events) in seen.iter().enumerate() {
        // In order, each revision once (every write here is one put: one event each).
        for pair in events.windows(2) {
            assert!(
                pair[0].0 < pair[1].0,
                "watcher {w}: revision {} then {}",
                pair[0].0,
                pair[1].0
            );
        }
        let mine: Vec<&Seen> = events.iter().filter(|s| s.0 <= final_rev).collect();
        assert_eq!(
            mine.len(),
            reference.len(),
            "watcher {w} saw {} events, history has {}",
            mine.len(),
            reference.len()
        );
        for (got, want) in mine.iter().zip(&reference) {
            assert_eq!(*got, want, "watcher {w} differs from the history");
        }
    }
    // Every acknowledged write is in the history, and the last value of each key in the
    // history is what the store holds.
    let mut last: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    for (_, k, v, delete) in &reference {
        assert!(!delete);
        last.insert(k.clone(), v.clone());
    }
    for (k, v) in &acked {
        assert!(
            reference.iter().any(|(_, rk, rv, _)| rk == k && rv == v),
            "acknowledged {} not in the history",
            String::from_utf8_lossy(k)
        );
        assert_eq!(last.get(k), Some(v));
    }
}
