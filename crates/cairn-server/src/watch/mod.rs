//! The watch hub: which watchers exist, what each has been sent, and the hand-off of each
//! applied batch's events to the watchers that want them.
//!
//! Depends on nothing else in the server: the applier publishes into it, and the Watch
//! streams (`rpc/watch.rs`) read from it.
//!
//! A watcher is *synced* when every event below its `next_rev` has been handed to its
//! stream and the applier will hand it every later one; otherwise it is *unsynced* and its
//! stream reads the history from `next_rev` on out of the backend (`rpc/watch.rs`), then
//! asks to rejoin.
//!
//! The applier calls [`WatchHub::publish`] after each batch's commit is visible to readers.
//! It never waits for a stream: it appends each matching event to the watcher's small buffer
//! and wakes the stream. A watcher whose buffer would pass [`BUFFER_EVENTS`] events or
//! [`BUFFER_BYTES`] bytes drops that revision's events, becomes unsynced at that revision,
//! and catches up from the backend when its reader is ready for more.
//!
//! No event is lost or sent twice: the applier hands a synced watcher only events at or
//! above its `next_rev` and raises `next_rev` past them; a catch-up read covers
//! `[next_rev, through]` and raises `next_rev` to `through + 1`; a watcher rejoins only
//! when `next_rev` is above every revision published so far (`published`), checked under
//! the same lock the applier publishes under, or when the revisions in between are still in
//! the hub's short list of recent events, which it is handed at once. Otherwise it reads
//! again. (Without the recent events, a steady stream of writes could keep a watcher
//! reading one revision behind for ever.)
//!
//! For example: a watcher on `a` created at revision 10 with start 5 is unsynced with
//! `next_rev` 5. Its stream reads 5..=12 (the store is at 12), sends them, and sets
//! `next_rev` to 13. Meanwhile the applier committed 13 and published it, skipping the
//! watcher; `published` is 13, so the watcher takes revision 13's events on `a` from the
//! recent events, `next_rev` becomes 14, and the applier hands it 14 on.
//!
//! Dispatch looks watchers up by key: single-key watchers in a hash map, so 100k watchers
//! on distinct keys cost one lookup per event; range watchers (prefixes, from-key) in an
//! interval index (`interval.rs`), so an event costs O(log n) plus the watchers it matches
//! however many range watchers there are.
//!
//! # Locks
//!
//! `state` protects every watcher, the indexes, the streams' ready lists and `published`.
//! It is held only for in-memory work, never across a backend read or an await. Work that
//! grows with a stream's watchers (closing it) lets go of it every [`CLOSE_CHUNK`]
//! watchers, so the applier and other streams wait for one chunk at most.

mod interval;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use cairn_proto::mvccpb::{event::EventType, Event};
use parking_lot::{Mutex, MutexGuard};
use tokio::sync::Notify;

use interval::IntervalIndex;

/// The most events a watcher's buffer holds (one revision is always accepted into an
/// empty buffer, however large).
pub const BUFFER_EVENTS: usize = 256;
/// The most key and value bytes a watcher's buffer holds, with the same exception.
pub const BUFFER_BYTES: usize = 1 << 20;

/// The most recent events the hub keeps for watchers rejoining the live stream.
pub const RECENT_EVENTS: usize = 4096;
/// The most key and value bytes of those.
pub const RECENT_BYTES: usize = 4 << 20;

/// The most watchers a stream's close removes, or a progress check looks up, under one
/// hold of the lock.
pub const CLOSE_CHUNK: usize = 1024;

/// A watcher's handle in the hub, unique for the life of the process.
pub type WatcherKey = u64;

/// What a watcher watches; the stream keeps the rest (its watch id, prev_kv, fragment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchSpec {
    pub key: Vec<u8>,
    /// Empty for one key; `[0]` for every key from `key` on; else the exclusive end.
    pub range_end: Vec<u8>,
    pub no_put: bool,
    pub no_delete: bool,
}

/// Whether `k` is in `[key, end)` read as etcd reads a watch's `key` and `range_end`.
fn in_range(key: &[u8], end: &[u8], k: &[u8]) -> bool {
    match end {
        [] => k == key,
        [0] => k >= key,
        end => k >= key && k < end,
    }
}

/// Whether an event passes the NOPUT/NODELETE filters.
fn passes(no_put: bool, no_delete: bool, ev: &Event) -> bool {
    let put = ev.r#type == EventType::Put as i32;
    !(put && no_put || !put && no_delete)
}

impl WatchSpec {
    /// Whether `key` is in the watched range.
    pub fn contains(&self, key: &[u8]) -> bool {
        in_range(&self.key, &self.range_end, key)
    }

    /// Whether the watcher wants `ev`: in range and not filtered out.
    pub fn wants(&self, ev: &Event) -> bool {
        ev.kv
            .as_ref()
            .is_some_and(|kv| passes(self.no_put, self.no_delete, ev) && self.contains(&kv.key))
    }
}

/// One watcher, kept small: there may be hundreds of thousands.
struct Watcher {
    stream: u64,
    /// Its id on its stream.
    watch_id: i64,
    /// Shared with the single-key or the range index.
    key: Arc<[u8]>,
    /// Shared with the range index; empty for a single key.
    range_end: Arc<[u8]>,
    next_rev: i64,
    synced: bool,
    /// On its stream's ready list.
    queued: bool,
    no_put: bool,
    no_delete: bool,
    /// Events handed over and not yet taken by the stream, in order.
    buffer: Option<Box<Buffer>>,
}

#[derive(Default)]
struct Buffer {
    events: Vec<Arc<Event>>,
    /// Their key and value bytes.
    bytes: usize,
}

impl Watcher {
    fn contains(&self, k: &[u8]) -> bool {
        in_range(&self.key, &self.range_end, k)
    }

    fn wants(&self, ev: &Event) -> bool {
        ev.kv
            .as_ref()
            .is_some_and(|kv| passes(self.no_put, self.no_delete, ev) && self.contains(&kv.key))
    }

    fn spec(&self) -> WatchSpec {
        WatchSpec {
            key: self.key.to_vec(),
            range_end: self.range_end.to_vec(),
            no_put: self.no_put,
            no_delete: self.no_delete,
        }
    }

    fn buffered(&self) -> (usize, usize) {
        self.buffer
            .as_ref()
            .map_or((0, 0), |b| (b.events.len(), b.bytes))
    }

    /// Appends events if they fit the buffer's limits (always into an empty buffer),
    /// adding how many to `pending`.
    fn offer(&mut self, events: Vec<&Arc<Event>>, pending: &mut usize) -> bool {
        let bytes: usize = events.iter().map(|ev| event_bytes(ev)).sum();
        let (len, held) = self.buffered();
        let fits =
            len == 0 || (len + events.len() <= BUFFER_EVENTS && held + bytes <= BUFFER_BYTES);
        if fits && !events.is_empty() {
            let b = self.buffer.get_or_insert_with(Box::default);
            *pending += events.len();
            b.events.extend(events.into_iter().cloned());
            b.bytes += bytes;
        }
        fits
    }
}

/// The watchers of one key: nearly always one.
enum Slot {
    One(WatcherKey),
    #[allow(clippy::box_collection)] // Boxed so the common `One` stays two words.
    Many(Box<Vec<WatcherKey>>),
}

impl Slot {
    fn keys(&self) -> &[WatcherKey] {
        match self {
            Slot::One(k) => std::slice::from_ref(k),
            Slot::Many(v) => v,
        }
    }
}

struct StreamEntry {
    notify: Arc<Notify>,
    /// Watchers with buffered events or catch-up work.
    ready: Vec<WatcherKey>,
}

#[derive(Default)]
struct HubState {
    watchers: HashMap<WatcherKey, Watcher>,
    /// Single-key watchers by key.
    exact: HashMap<Arc<[u8]>, Slot>,
    /// Range watchers.
    ranges: IntervalIndex,
    streams: HashMap<u64, StreamEntry>,
    next_key: u64,
    /// Every event up to this revision has been published.
    published: i64,
    /// The latest published events, oldest first: a watcher whose catch-up read ended a
    /// little behind `published` takes the rest from here instead of reading again.
    recent: VecDeque<Arc<Event>>,
    recent_bytes: usize,
    /// Every event from this revision through `published` is in `recent`.
    recent_from: i64,
    /// The range end of every single-key watcher, so they share one allocation.
    no_end: Arc<[u8]>,
    /// How many watchers are unsynced, kept as they change so a metrics scrape does not
    /// walk every watcher under the lock.
    unsynced: usize,
    /// Events in watchers' buffers, not yet taken by their streams; kept likewise.
    pending: usize,
}

/// The watchers of one member; see the module docs.
pub struct WatchHub {
    state: Mutex<HubState>,
}

/// Counts for the metrics.
#[derive(Debug, Clone, Copy)]
pub struct HubStats {
    pub streams: usize,
    pub watchers: usize,
    pub unsynced: usize,
    /// Events handed to watchers that their streams have not taken yet.
    pub pending_events: usize,
}

/// A stream's share of the hub's work, taken by [`WatchHub::take`].
#[derive(Default)]
pub struct Work {
    /// Buffered events of synced or just-overflowed watchers by watch id, in order.
    pub live: Vec<(i64, Vec<Arc<Event>>)>,
    /// Unsynced watchers (key, watch id, what it watches) and where each must read from.
    pub unsynced: Vec<(WatcherKey, i64, WatchSpec, i64)>,
}

fn event_rev(ev: &Event) -> i64 {
    ev.kv.as_ref().map_or(0, |kv| kv.mod_revision)
}

fn event_bytes(ev: &Event) -> usize {
    ev.kv.as_ref().map_or(0, |kv| kv.key.len() + kv.value.len())
        + ev.prev_kv
            .as_ref()
            .map_or(0, |kv| kv.key.len() + kv.value.len())
}

impl HubState {
    fn queue(&mut self, key: WatcherKey) {
        let Some(w) = self.watchers.get_mut(&key) else {
            return;
        };
        if w.queued {
            return;
        }
        w.queued = true;
        if let Some(s) = self.streams.get_mut(&w.stream) {
            s.ready.push(key);
            s.notify.notify_one();
        }
    }

    /// Removes a watcher from the map, its index and the counts.
    fn drop_watcher(&mut self, key: WatcherKey) {
        if let Some(w) = self.watchers.remove(&key) {
            self.unindex(key, &w);
            self.pending -= w.buffered().0;
            if !w.synced {
                self.unsynced -= 1;
            }
        }
    }

    fn unindex(&mut self, key: WatcherKey, w: &Watcher) {
        if !w.range_end.is_empty() {
            self.ranges.remove(&w.key, key);
            return;
        }
        let emptied = match self.exact.get_mut(&w.key) {
            Some(Slot::One(k)) => *k == key,
            Some(Slot::Many(list)) => {
                list.retain(|k| *k != key);
                if let [one] = list.as_slice() {
                    let one = *one;
                    self.exact.insert(w.key.clone(), Slot::One(one));
                }
                false
            }
            None => false,
        };
        if emptied {
            self.exact.remove(&w.key);
        }
    }

    fn index(&mut self, key: WatcherKey, w: &Watcher) {
        if !w.range_end.is_empty() {
            self.ranges.insert(w.key.clone(), w.range_end.clone(), key);
            return;
        }
        match self.exact.get_mut(&w.key) {
            Some(Slot::Many(list)) => list.push(key),
            Some(slot @ Slot::One(_)) => {
                let first = slot.keys()[0];
                *slot = Slot::Many(Box::new(vec![first, key]));
            }
            None => {
                self.exact.insert(w.key.clone(), Slot::One(key));
            }
        }
    }

    /// Hands one revision's events to the watchers that want them.
    fn publish_revision(&mut self, rev: i64, events: &[Arc<Event>]) {
        let mut matches: Vec<(WatcherKey, usize)> = Vec::new();
        let mut in_ranges = Vec::new();
        for (i, ev) in events.iter().enumerate() {
            let Some(kv) = ev.kv.as_ref() else { continue };
            if let Some(slot) = self.exact.get(kv.key.as_slice()) {
                matches.extend(slot.keys().iter().map(|k| (*k, i)));
            }
            if !self.ranges.is_empty() {
                in_ranges.clear();
                self.ranges.stab(&kv.key, &mut in_ranges);
                matches.extend(in_ranges.iter().map(|k| (*k, i)));
            }
        }
        if matches.is_empty() {
            return;
        }
        matches.sort_by_key(|(k, i)| (*k, *i));
        let mut start = 0;
        while start < matches.len() {
            let key = matches[start].0;
            let end = start + matches[start..].partition_point(|(k, _)| *k == key);
            let group = &matches[start..end];
            start = end;
            let Some(w) = self.watchers.get_mut(&key) else {
                continue;
            };
            if !w.synced || rev < w.next_rev {
                continue;
            }
            let wanted: Vec<&Arc<Event>> = group
                .iter()
                .map(|(_, i)| &events[*i])
                .filter(|ev| w.wants(ev))
                .collect();
            w.next_rev = rev + 1;
            if wanted.is_empty() {
                continue;
            }
            if !w.offer(wanted, &mut self.pending) {
                // The reader is behind: it reads this revision and what follows from the
                // backend once it has taken what is buffered.
                w.synced = false;
                w.next_rev = rev;
                self.unsynced += 1;
            }
            self.queue(key);
        }
    }
}

impl WatchHub {
    /// A hub with no watchers, for a store at revision `current`.
    pub fn new(current: i64) -> WatchHub {
        WatchHub {
            state: Mutex::new(HubState {
                published: current,
                recent_from: current + 1,
                no_end: Arc::from(&[][..]),
                ..Default::default()
            }),
        }
    }

    /// The newest revision whose events every synced watcher has been handed.
    pub fn published(&self) -> i64 {
        self.state.lock().published
    }

    /// Hands the events of a committed batch to the watchers; `current` is the store's
    /// revision after the batch. Never waits for a reader.
    pub fn publish(&self, events: Vec<Event>, current: i64) {
        let mut st = self.state.lock();
        if st.watchers.is_empty() {
            st.recent.clear();
            st.recent_bytes = 0;
            st.recent_from = current + 1;
        } else if !events.is_empty() {
            let events: Vec<Arc<Event>> = events.into_iter().map(Arc::new).collect();
            let mut start = 0;
            while start < events.len() {
                let rev = event_rev(&events[start]);
                let end = start + events[start..].partition_point(|ev| event_rev(ev) == rev);
                st.publish_revision(rev, &events[start..end]);
                start = end;
            }
            for ev in events {
                st.recent_bytes += event_bytes(&ev);
                st.recent.push_back(ev);
            }
            while st.recent.len() > RECENT_EVENTS || st.recent_bytes > RECENT_BYTES {
                let Some(old) = st.recent.pop_front() else {
                    break;
                };
                st.recent_bytes -= event_bytes(&old);
                st.recent_from = st.recent_from.max(event_rev(&old) + 1);
            }
        }
        st.published = st.published.max(current);
    }

    /// Replaces what the hub knows after the store was replaced by a snapshot at revision
    /// `current`: every watcher reads the new store from where it stood. (A catch-up read
    /// of the old store that finishes later still counts: both stores hold the same
    /// history, Raft's, up to the older one's revision.)
    pub fn restored(&self, current: i64) {
        let mut st = self.state.lock();
        let published = st.published;
        let keys: Vec<WatcherKey> = st.watchers.keys().copied().collect();
        for key in keys {
            if let Some(w) = st.watchers.get_mut(&key) {
                if w.synced {
                    w.next_rev = w.next_rev.max(published + 1);
                    w.synced = false;
                    st.unsynced += 1;
                }
            }
            st.queue(key);
        }
        st.published = current;
        st.recent.clear();
        st.recent_bytes = 0;
        st.recent_from = current + 1;
    }

    /// Registers a stream; its notify is woken whenever it has work.
    pub fn open_stream(&self) -> (u64, Arc<Notify>) {
        let mut st = self.state.lock();
        st.next_key += 1;
        let id = st.next_key;
        let notify = Arc::new(Notify::new());
        st.streams.insert(
            id,
            StreamEntry {
                notify: notify.clone(),
                ready: Vec::new(),
            },
        );
        (id, notify)
    }

    /// Removes a stream and its watchers, `keys`, [`CLOSE_CHUNK`] at a time, handing the
    /// lock to any thread waiting for it between chunks. (Until its turn, a watcher of the
    /// closed stream may still be handed events; nobody takes them.)
    pub fn close_stream(&self, stream: u64, keys: impl IntoIterator<Item = WatcherKey>) {
        let mut st = self.state.lock();
        st.streams.remove(&stream);
        for (n, key) in keys.into_iter().enumerate() {
            if n > 0 && n % CLOSE_CHUNK == 0 {
                MutexGuard::bump(&mut st);
            }
            st.drop_watcher(key);
        }
    }

    /// Adds watch `watch_id` to `stream`, wanting events from `start` on (0: after the
    /// published revision). Returns its key and the revision its created response reports.
    pub fn add(
        &self,
        stream: u64,
        watch_id: i64,
        spec: WatchSpec,
        start: i64,
    ) -> (WatcherKey, i64) {
        let mut st = self.state.lock();
        st.next_key += 1;
        let key = st.next_key;
        let published = st.published;
        let next_rev = if start <= 0 { published + 1 } else { start };
        let synced = next_rev > published;
        let w = Watcher {
            stream,
            watch_id,
            key: spec.key.into(),
            range_end: if spec.range_end.is_empty() {
                st.no_end.clone()
            } else {
                spec.range_end.into()
            },
            next_rev,
            synced,
            queued: false,
            no_put: spec.no_put,
            no_delete: spec.no_delete,
            buffer: None,
        };
        st.index(key, &w);
        st.watchers.insert(key, w);
        if !synced {
            st.unsynced += 1;
            st.queue(key);
        }
        (key, published)
    }

    /// Removes a watcher.
    pub fn remove(&self, key: WatcherKey) {
        self.state.lock().drop_watcher(key);
    }

    /// Takes a stream's pending work: buffered events and unsynced watchers.
    pub fn take(&self, stream: u64) -> Work {
        let mut guard = self.state.lock();
        let st = &mut *guard;
        let mut work = Work::default();
        let ready = match st.streams.get_mut(&stream) {
            Some(s) => std::mem::take(&mut s.ready),
            None => return work,
        };
        for key in ready {
            let Some(w) = st.watchers.get_mut(&key) else {
                continue;
            };
            w.queued = false;
            if let Some(b) = w.buffer.take() {
                st.pending -= b.events.len();
                work.live.push((w.watch_id, b.events));
            }
            if !w.synced {
                work.unsynced.push((key, w.watch_id, w.spec(), w.next_rev));
            }
        }
        work
    }

    /// Records that an unsynced watcher has been sent every event through `through` and
    /// rejoins it to the live stream if nothing newer has been published, or if what was
    /// published since is still among the recent events (handed to it now); otherwise it
    /// stays queued for another read. Returns whether it is synced.
    pub fn advance(&self, key: WatcherKey, through: i64) -> bool {
        let mut guard = self.state.lock();
        let st = &mut *guard;
        let Some(w) = st.watchers.get_mut(&key) else {
            return false;
        };
        if w.synced {
            return true;
        }
        {
            w.next_rev = w.next_rev.max(through + 1);
            if w.next_rev > st.published {
                w.synced = true;
                st.unsynced -= 1;
                return true;
            }
            if w.next_rev >= st.recent_from {
                let from = w.next_rev;
                let missed: Vec<&Arc<Event>> = st
                    .recent
                    .iter()
                    .filter(|ev| event_rev(ev) >= from && w.wants(ev))
                    .collect();
                if w.offer(missed, &mut st.pending) {
                    w.next_rev = st.published + 1;
                    w.synced = true;
                    st.unsynced -= 1;
                    if w.buffer.is_some() {
                        st.queue(key);
                    }
                    return true;
                }
            }
        }
        st.queue(key);
        false
    }

    /// Which of the given watchers are synced with nothing buffered, and the revision a
    /// progress notification for them reports: the published revision when the check
    /// began. (It looks [`CLOSE_CHUNK`] watchers up per hold of the lock; a watcher found
    /// synced and empty later has been handed every event through that revision too.)
    pub fn synced(&self, keys: &[WatcherKey]) -> (Vec<bool>, i64) {
        let mut st = self.state.lock();
        let published = st.published;
        let mut flags = Vec::with_capacity(keys.len());
        for (n, chunk) in keys.chunks(CLOSE_CHUNK).enumerate() {
            if n > 0 {
                MutexGuard::bump(&mut st);
            }
            flags.extend(chunk.iter().map(|k| {
                st.watchers
                    .get(k)
                    .is_some_and(|w| w.synced && w.buffer.is_none())
            }));
        }
        (flags, published)
    }

    /// The number of watchers, for tests.
    #[cfg(test)]
    pub fn watcher_count(&self) -> usize {
        self.state.lock().watchers.len()
    }

    /// Counts of streams, watchers and unsynced watchers, for metrics.
    pub fn stats(&self) -> HubStats {
        let st = self.state.lock();
        HubStats {
            streams: st.streams.len(),
            watchers: st.watchers.len(),
            unsynced: st.unsynced,
            pending_events: st.pending,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use cairn_proto::mvccpb::KeyValue;

    fn put(key: &str, rev: i64) -> Event {
        Event {
            r#type: EventType::Put as i32,
            kv: Some(KeyValue {
                key: key.into(),
                mod_revision: rev,
                value: vec![b'v'; 10],
                ..Default::default()
            }),
            prev_kv: None,
        }
    }

    fn spec(key: &str, end: &str) -> WatchSpec {
        WatchSpec {
            key: key.into(),
            range_end: end.into(),
            no_put: false,
            no_delete: false,
        }
    }

    /// Checks the kept count of unsynced watchers against a count of them.
    fn check_counts(hub: &WatchHub) {
        let st = hub.state.lock();
        let unsynced = st.watchers.values().filter(|w| !w.synced).count();
        assert_eq!(st.unsynced, unsynced, "the kept count of unsynced watchers");
        let pending: usize = st.watchers.values().map(|w| w.buffered().0).sum();
        assert_eq!(st.pending, pending, "the kept count of pending events");
    }

    #[test]
    fn pending_events_count_what_streams_have_not_taken() {
        let hub = WatchHub::new(1);
        let (s1, _) = hub.open_stream();
        let (s2, _) = hub.open_stream();
        let (a, _) = hub.add(s1, 0, spec("a", ""), 0);
        let (all, _) = hub.add(s1, 1, spec("", "\0"), 0);
        let (gone, _) = hub.add(s2, 0, spec("a", "b"), 0);
        assert_eq!(hub.stats().pending_events, 0);
        hub.publish(vec![put("a", 2), put("b", 2)], 2);
        hub.publish(vec![put("a", 3)], 3);
        // s1: 2 on "a", 3 on everything; s2: 2 on [a, b).
        assert_eq!(hub.stats().pending_events, 7);
        check_counts(&hub);
        assert_eq!(revs(&hub.take(s1)).concat().len(), 5);
        assert_eq!(hub.stats().pending_events, 2);
        hub.remove(gone);
        assert_eq!(hub.stats().pending_events, 0);
        check_counts(&hub);
        // Overflow: what fits is pending; the rest is read from the backend later.
        let many: Vec<Event> = (0..BUFFER_EVENTS as i64 + 10)
            .map(|i| put("a", 4 + i))
            .collect();
        let last = 4 + BUFFER_EVENTS as i64 + 9;
        for ev in many {
            let rev = event_rev(&ev);
            hub.publish(vec![ev], rev);
        }
        assert_eq!(hub.state.lock().published, last);
        assert_eq!(hub.stats().pending_events, 2 * BUFFER_EVENTS);
        check_counts(&hub);
        hub.close_stream(s1, [a, all]);
        assert_eq!(hub.stats().pending_events, 0);
        check_counts(&hub);
    }

    fn revs(work: &Work) -> Vec<Vec<i64>> {
        work.live
            .iter()
            .map(|(_, evs)| evs.iter().map(|e| event_rev(e)).collect())
            .collect()
    }

    #[test]
    fn dispatches_by_key_and_range_from_next_rev() {
        let hub = WatchHub::new(1);
        let (s, _) = hub.open_stream();
        let (a, _) = hub.add(s, 0, spec("a", ""), 0);
        let (p, _) = hub.add(s, 0, spec("p/", "p0"), 3);
        let (all, _) = hub.add(s, 0, spec("", "\0"), 0);
        hub.publish(vec![put("a", 2), put("p/1", 2), put("b", 2)], 2);
        hub.publish(vec![put("p/2", 3), put("a", 3)], 3);
        let work = hub.take(s);
        let mut got: Vec<Vec<i64>> = revs(&work);
        got.sort();
        assert_eq!(got, vec![vec![2, 2, 2, 3, 3], vec![2, 3], vec![3]]);
        let _ = (a, p, all);
        assert!(work.unsynced.is_empty());
        check_counts(&hub);
    }

    #[test]
    fn overflow_unsyncs_at_the_revision_and_rejoins_only_when_caught_up() {
        let hub = WatchHub::new(1);
        let (s, _) = hub.open_stream();
        let (w, _) = hub.add(s, 0, spec("k", ""), 0);
        for rev in 2..(2 + BUFFER_EVENTS as i64 + 5) {
            hub.publish(vec![put("k", rev)], rev);
        }
        let work = hub.take(s);
        assert_eq!(
            revs(&work),
            vec![(2..2 + BUFFER_EVENTS as i64).collect::<Vec<_>>()]
        );
        let next = 2 + BUFFER_EVENTS as i64;
        assert_eq!(work.unsynced, vec![(w, 0, spec("k", ""), next)]);
        check_counts(&hub);
        // A catch-up read that ends before the published revision rejoins with the rest
        // from the recent events.
        let published = hub.published();
        assert!(hub.advance(w, next + 2));
        let work = hub.take(s);
        assert_eq!(
            revs(&work),
            vec![((next + 3)..=published).collect::<Vec<_>>()]
        );
        assert!(work.unsynced.is_empty());
        hub.publish(vec![put("k", published)], published);
        hub.publish(vec![put("k", published + 1)], published + 1);
        assert_eq!(revs(&hub.take(s)), vec![vec![published + 1]]);
        check_counts(&hub);
    }

    #[test]
    fn a_catch_up_behind_the_recent_events_reads_again() {
        let hub = WatchHub::new(3);
        let (s, _) = hub.open_stream();
        let (w, _) = hub.add(s, 0, spec("k", ""), 2);
        let work = hub.take(s);
        assert_eq!(work.unsynced.len(), 1);
        let last = 4 + RECENT_EVENTS as i64 + 10;
        for rev in 4..=last {
            hub.publish(vec![put("other", rev)], rev);
        }
        assert!(!hub.advance(w, 3));
        let work = hub.take(s);
        assert_eq!(work.unsynced[0].3, 4);
        assert!(hub.advance(w, last - 1), "the rest is recent");
        assert!(hub.take(s).live.is_empty(), "no event of k to hand over");
        check_counts(&hub);
    }

    #[test]
    fn a_restore_unsyncs_everyone_and_a_read_begun_before_still_counts() {
        let hub = WatchHub::new(5);
        let (s, _) = hub.open_stream();
        let (w, _) = hub.add(s, 0, spec("k", ""), 2);
        let (live, _) = hub.add(s, 1, spec("k", ""), 0);
        assert_eq!(hub.take(s).unsynced.len(), 1);
        hub.restored(9);
        check_counts(&hub);
        let mut work = hub.take(s);
        work.unsynced.sort_by_key(|u| u.1);
        assert_eq!(work.unsynced[1], (live, 1, spec("k", ""), 6));
        assert!(!hub.advance(w, 5), "6..=9 are not among the recent events");
        assert!(!hub.advance(live, 5));
        let work = hub.take(s);
        assert_eq!(work.unsynced[0].3, 6);
        assert!(hub.advance(w, 9));
        assert!(hub.advance(live, 9));
        check_counts(&hub);
    }

    #[test]
    fn closing_a_stream_removes_its_watchers_from_the_indexes() {
        let hub = WatchHub::new(1);
        let (s, _) = hub.open_stream();
        let (k1, _) = hub.add(s, 0, spec("a", ""), 0);
        let (k2, _) = hub.add(s, 1, spec("a", ""), 0);
        let (k3, _) = hub.add(s, 2, spec("a", "b"), 1);
        assert_eq!(
            hub.stats().unsynced,
            1,
            "k3 starts at the published revision"
        );
        hub.remove(k1);
        assert!(matches!(hub.state.lock().exact.get(&b"a"[..]), Some(Slot::One(k)) if *k == k2));
        hub.close_stream(s, [k2, k3]);
        assert_eq!(hub.watcher_count(), 0);
        check_counts(&hub);
        assert_eq!(hub.stats().unsynced, 0);
        let st = hub.state.lock();
        assert!(st.exact.is_empty() && st.ranges.is_empty());
    }

    #[test]
    fn range_watchers_get_exactly_the_events_in_their_ranges() {
        let hub = WatchHub::new(1);
        let (s, _) = hub.open_stream();
        // Prefixes p/0000/ .. p/0999/, every tenth also as a from-key watch.
        let mut specs = Vec::new();
        for i in 0..1000 {
            specs.push(spec(&format!("p/{i:04}/"), &format!("p/{i:04}0")));
            if i % 10 == 0 {
                specs.push(spec(&format!("p/{i:04}/"), "\0"));
            }
        }
        for (id, sp) in specs.iter().enumerate() {
            hub.add(s, id as i64, sp.clone(), 0);
        }
        let keys = [
            "p/0000/a", "p/0500/x", "p/0999/", "p/0999", "p/1000/a", "a", "q",
        ];
        for (n, key) in keys.iter().enumerate() {
            let rev = 2 + n as i64;
            hub.publish(vec![put(key, rev)], rev);
            let mut got: Vec<i64> = hub.take(s).live.iter().map(|(id, _)| *id).collect();
            got.sort_unstable();
            let want: Vec<i64> = (0..specs.len() as i64)
                .filter(|id| specs[*id as usize].contains(key.as_bytes()))
                .collect();
            assert_eq!(got, want, "{key}");
        }
        check_counts(&hub);
    }

    #[test]
    fn closing_a_stream_of_many_range_watchers_leaves_the_others_served() {
        let hub = WatchHub::new(1);
        let (big, _) = hub.open_stream();
        let (other, _) = hub.open_stream();
        let n = 3 * CLOSE_CHUNK + 7;
        let keys: Vec<WatcherKey> = (0..n)
            .map(|i| hub.add(big, i as i64, spec(&format!("r/{i}"), "\0"), 0).0)
            .collect();
        hub.add(other, 0, spec("r/", "r0"), 0);
        hub.close_stream(big, keys);
        assert_eq!(hub.watcher_count(), 1);
        assert_eq!(hub.state.lock().ranges.len(), 1);
        hub.publish(vec![put("r/5", 2)], 2);
        assert_eq!(revs(&hub.take(other)), vec![vec![2]]);
        assert!(hub.take(big).live.is_empty());
        check_counts(&hub);
    }

    #[test]
    fn progress_checks_every_watcher_across_chunks() {
        let hub = WatchHub::new(4);
        let (s, _) = hub.open_stream();
        let n = 2 * CLOSE_CHUNK + 3;
        let mut keys: Vec<WatcherKey> = (0..n)
            .map(|i| hub.add(s, i as i64, spec(&format!("k/{i}"), ""), 0).0)
            .collect();
        let (late, _) = hub.add(s, n as i64, spec("k/late", ""), 2);
        keys.push(late);
        let (flags, rev) = hub.synced(&keys);
        assert_eq!(rev, 4);
        assert_eq!(flags.iter().filter(|f| !**f).count(), 1);
        assert!(!flags[n], "the watcher from revision 2 is behind");
        hub.publish(vec![put("k/7", 5)], 5);
        let (flags, rev) = hub.synced(&keys);
        assert_eq!(rev, 5);
        assert!(!flags[7], "its event is buffered, not yet taken");
        check_counts(&hub);
    }
}
