//! Reading the event history back from the backend, for watchers that start in the past or
//! fell behind the live stream.
//!
//! The "key" table is ordered by revision, so the events of revisions `[from, current]` are
//! one contiguous scan of it. A read takes a redb snapshot after checking the compaction
//! under the index lock (see the lock notes in `kv_store`), so what it returns is never
//! missing a revision a compaction removed meanwhile.
//!
//! For example, after `put(a)=2; put(b)=3; txn{put(c), delete(b)}=4`, a read from 3 with
//! room for one event returns `put b` through revision 3; the next read from 4 returns both
//! events of revision 4 even with room for one, because a revision is never cut in two.
//! Room is counted in events, revisions and bytes (keys and values, `prev_kv`'s too).

use cairn_proto::mvccpb::{event::EventType, Event, KeyValue};
use prost::Message;

use crate::backend::KEY_TABLE;
use crate::error::MvccError;
use crate::kv_store::{fetch, Store};
use crate::revision::Revision;

/// A run of whole revisions read from the backend by [`Store::history`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    /// The events, in revision order.
    pub events: Vec<Event>,
    /// Every revision from the read's start through this one is in `events`.
    pub through: i64,
    /// The store's revision when the read began.
    pub current: i64,
}

/// Where a [`Store::history`] read stops: after the revision that reaches `events` events
/// or `bytes` bytes, or after `revs` revisions, whichever comes first. A read returns at
/// least one whole revision, however large.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryLimits {
    pub events: usize,
    pub revs: usize,
    pub bytes: usize,
}

/// The key and value bytes an event carries, its `prev_kv`'s included.
fn event_bytes(ev: &Event) -> usize {
    let kv_bytes = |kv: &KeyValue| kv.key.len() + kv.value.len();
    ev.kv.as_ref().map_or(0, kv_bytes) + ev.prev_kv.as_ref().map_or(0, kv_bytes)
}

impl Store {
    /// Reads the events of revisions `from..` in order, stopping at the current revision or
    /// after the revision that brings the count to `limits.events` or their key and value
    /// bytes (`prev_kv`'s included) to `limits.bytes`, or after `limits.revs` revisions
    /// with events. Fails with [`MvccError::Compacted`] if `from` is below the latest
    /// compaction.
    ///
    /// With `with_prev`, each event that does not create its key carries the key's record
    /// just before the event (`prev_kv`), if that revision is not compacted.
    pub fn history(
        &self,
        from: i64,
        limits: HistoryLimits,
        with_prev: bool,
    ) -> Result<History, MvccError> {
        let (txn, current, compact) = {
            let idx = self.index.read();
            if from < idx.compact_rev {
                return Err(MvccError::Compacted);
            }
            (self.begin_read()?, idx.current_rev, idx.compact_rev)
        };
        let table = txn.open_table(KEY_TABLE)?;
        let mut out = History {
            events: Vec::new(),
            through: current,
            current,
        };
        if from > current {
            return Ok(out);
        }
        let start = Revision::new(from.max(0), 0).to_bytes(false);
        let end = Revision::new(current.saturating_add(1), 0).to_bytes(false);
        let mut revs = 0usize;
        let mut bytes = 0usize;
        let mut last_main = None;
        for entry in table.range::<&[u8]>(start.as_slice()..end.as_slice())? {
            let (k, v) = entry?;
            let (rev, tombstone) = Revision::from_bytes(k.value())
                .ok_or_else(|| MvccError::Corrupt("malformed revision key".into()))?;
            if last_main != Some(rev.main) {
                if let Some(last) = last_main {
                    if out.events.len() >= limits.events
                        || revs >= limits.revs
                        || bytes >= limits.bytes
                    {
                        out.through = last;
                        break;
                    }
                }
                last_main = Some(rev.main);
                revs += 1;
            }
            let mut kv = KeyValue::decode(v.value())?;
            let mut event = if tombstone {
                kv.mod_revision = rev.main;
                Event {
                    r#type: EventType::Delete as i32,
                    kv: Some(kv),
                    prev_kv: None,
                }
            } else {
                Event {
                    r#type: EventType::Put as i32,
                    kv: Some(kv),
                    prev_kv: None,
                }
            };
            if with_prev {
                event.prev_kv = self.prev_of(&table, &event, compact)?;
            }
            bytes += event_bytes(&event);
            out.events.push(event);
        }
        Ok(out)
    }

    /// The record of an event's key just before the event, as a range at the revision
    /// before it reads it; none for an event that creates its key or when that revision is
    /// compacted.
    fn prev_of(
        &self,
        table: &crate::kv_store::KvTable,
        ev: &Event,
        compact_at_read: i64,
    ) -> Result<Option<KeyValue>, MvccError> {
        let Some(kv) = ev.kv.as_ref() else {
            return Ok(None);
        };
        if ev.r#type == EventType::Put as i32 && kv.version == 1 {
            return Ok(None);
        }
        let at = kv.mod_revision - 1;
        let modified = {
            let idx = self.index.read();
            if at < compact_at_read.max(idx.compact_rev) {
                return Ok(None);
            }
            idx.tree.get(&kv.key, at).map(|k| k.modified)
        };
        modified.map(|rev| fetch(table, rev)).transpose()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::NoLeases;
    use cairn_proto::etcdserverpb::{
        request_op::Request, DeleteRangeRequest, PutRequest, RequestOp, TxnRequest,
    };

    fn put(k: &str, v: &str) -> PutRequest {
        PutRequest {
            key: k.into(),
            value: v.into(),
            ..Default::default()
        }
    }

    fn lim(events: usize, revs: usize) -> HistoryLimits {
        HistoryLimits {
            events,
            revs,
            bytes: usize::MAX,
        }
    }

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("db")).unwrap();
        (dir, s)
    }

    fn summary(h: &History) -> Vec<(i32, String, i64, Option<String>)> {
        h.events
            .iter()
            .map(|e| {
                let kv = e.kv.clone().unwrap();
                (
                    e.r#type,
                    String::from_utf8(kv.key).unwrap(),
                    kv.mod_revision,
                    e.prev_kv
                        .as_ref()
                        .map(|p| String::from_utf8(p.value.clone()).unwrap()),
                )
            })
            .collect()
    }

    #[test]
    fn reads_whole_revisions_with_prev_and_refuses_compacted() {
        let (_d, s) = store();
        let mut b = s.begin_apply().unwrap();
        b.put(&put("a", "1"), &NoLeases).unwrap(); // 2
        b.put(&put("b", "1"), &NoLeases).unwrap(); // 3
        let txn = TxnRequest {
            success: vec![
                RequestOp {
                    request: Some(Request::RequestPut(put("c", "1"))),
                },
                RequestOp {
                    request: Some(Request::RequestDeleteRange(DeleteRangeRequest {
                        key: b"b".to_vec(),
                        ..Default::default()
                    })),
                },
            ],
            ..Default::default()
        };
        b.txn(&txn, &NoLeases).unwrap(); // 4
        b.put(&put("a", "2"), &NoLeases).unwrap(); // 5
        let live = b.commit(false).unwrap();
        let all = s.history(2, lim(100, 100), false).unwrap();
        assert_eq!(
            all.events,
            live.into_iter()
                .map(|mut e| {
                    e.prev_kv = None;
                    e
                })
                .collect::<Vec<_>>()
        );
        assert_eq!((all.through, all.current), (5, 5));

        let h = s.history(3, lim(2, 100), true).unwrap();
        assert_eq!(h.through, 4, "revision 4 is not cut in two");
        assert_eq!(
            summary(&h),
            vec![
                (0, "b".into(), 3, None),
                (0, "c".into(), 4, None),
                (1, "b".into(), 4, Some("1".into())),
            ]
        );
        let h = s.history(5, lim(1, 100), true).unwrap();
        assert_eq!(summary(&h), vec![(0, "a".into(), 5, Some("1".into()))]);
        assert_eq!(s.history(6, lim(1, 100), true).unwrap().events, vec![]);
        let h = s.history(2, lim(100, 2), false).unwrap();
        assert_eq!(h.through, 3);

        let mut b = s.begin_apply().unwrap();
        b.compact(4).unwrap();
        b.commit(false).unwrap();
        assert!(matches!(
            s.history(3, lim(10, 10), false),
            Err(MvccError::Compacted)
        ));
        // As in etcd, the compaction dropped the tombstone at 4 (the key's last record at
        // or below it). The put of a at 5 has its prev at 4, which a range at 4 can read.
        let h = s.history(4, lim(10, 10), true).unwrap();
        assert_eq!(
            summary(&h),
            vec![
                (0, "c".into(), 4, None),
                (0, "a".into(), 5, Some("1".into()))
            ]
        );
    }

    #[test]
    fn stops_after_the_revision_that_reaches_the_byte_limit() {
        let (_d, s) = store();
        let mut b = s.begin_apply().unwrap();
        let big = "v".repeat(1000);
        for k in ["a", "b", "c", "d"] {
            b.put(&put(k, &big), &NoLeases).unwrap(); // 2..=5
        }
        b.commit(false).unwrap();
        let limits = |bytes| HistoryLimits {
            events: 100,
            revs: 100,
            bytes,
        };
        // Each event is 1001 bytes: the second reaches 2000, so the read stops after it.
        let h = s.history(2, limits(2000), false).unwrap();
        assert_eq!((h.events.len(), h.through, h.current), (2, 3, 5));
        let h = s.history(4, limits(1), false).unwrap();
        assert_eq!(
            (h.events.len(), h.through),
            (1, 4),
            "one revision however large"
        );
        // With prev_kv nothing changes here (each key is new); overwrite one and its prev
        // counts too: 1001 + 1001 reaches 2000 at the first event.
        let mut b = s.begin_apply().unwrap();
        b.put(&put("a", &big), &NoLeases).unwrap(); // 6
        b.put(&put("e", "x"), &NoLeases).unwrap(); // 7
        b.commit(false).unwrap();
        let h = s.history(6, limits(2000), true).unwrap();
        assert_eq!((h.events.len(), h.through), (1, 6));
        let h = s.history(6, limits(2000), false).unwrap();
        assert_eq!((h.events.len(), h.through), (2, 7));
    }
}
