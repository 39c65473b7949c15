//! The in-memory key index: for every key, the revisions that changed it.
//!
//! Values live in the backend's "key" table, keyed by revision; this index maps a user key
//! to the revisions at which it was written, so a read at revision `r` finds, for each key,
//! the newest revision `<= r` and then reads that one record.
//!
//! A key's history is split into generations. A generation starts with the put that created
//! the key and ends with the tombstone that deleted it; the last generation is the live one
//! (empty while the key is deleted). `ver` counts the puts of a generation, including those
//! that compaction has since dropped from `revs`, so versions stay right after a compaction.
//!
//! Worked example, for key `k` after `put(1.0); put(2.0); tombstone(3.0); put(4.0);
//! tombstone(5.0)`:
//!
//! ```text
//! generations:
//!     {created: 1.0, ver: 3, revs: [1.0, 2.0, 3.0(t)]}
//!     {created: 4.0, ver: 2, revs: [4.0, 5.0(t)]}
//!     {empty}
//! ```
//!
//! - Reading at 2 finds 2.0 in the first generation: version 2, created at 1.
//! - Reading at 3 or at 5 finds nothing: the generation holding the newest revision `<= r`
//!   ends with a tombstone at or before `r`.
//! - Reading at 4 finds 4.0: version 1, created at 4.
//!
//! Compacting at 2 keeps 2.0 (the newest revision `<= 2`) and drops 1.0:
//! `{created: 1.0, ver: 3, revs: [2.0, 3.0(t)]}, ...`. Compacting at 4 then drops the whole
//! first generation (everything `<= 4` in it is superseded or a tombstone) and keeps 4.0:
//! `{created: 4.0, ver: 2, revs: [4.0, 5.0(t)]}, {empty}`. Compacting at 5 leaves only the
//! tombstone `5.0`, which is dropped too, and the key leaves the index.
//!
//! The index may hold revisions newer than the last committed one (an open apply batch adds
//! them as it goes); every lookup takes the revision to read at, so readers never see them.

use std::collections::{BTreeMap, HashSet};
use std::ops::Bound;

use crate::revision::Revision;

/// One lifetime of a key, from its creating put to its tombstone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Generation {
    /// Puts (and the tombstone) in this generation, including compacted ones.
    ver: i64,
    /// Revision of the creating put.
    created: Revision,
    /// Revisions still in the backend, oldest first; a closed generation ends with its
    /// tombstone.
    revs: Vec<Revision>,
}

impl Generation {
    fn is_empty(&self) -> bool {
        self.revs.is_empty()
    }

    /// Index of the newest revision whose main is `<= at`.
    fn newest_at(&self, at: i64) -> Option<usize> {
        self.revs.iter().rposition(|r| r.main <= at)
    }
}

/// The history of one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyIndex {
    /// Never empty; the last one is the live generation.
    generations: Vec<Generation>,
}

/// What the index knows about a key at a revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KeyAt {
    pub modified: Revision,
    pub created: Revision,
    pub version: i64,
}

impl KeyIndex {
    fn new() -> KeyIndex {
        KeyIndex {
            generations: vec![Generation::default()],
        }
    }

    fn is_empty(&self) -> bool {
        self.generations.len() == 1 && self.generations[0].is_empty()
    }

    fn live(&mut self) -> &mut Generation {
        let last = self.generations.len() - 1;
        &mut self.generations[last]
    }

    fn put(&mut self, rev: Revision) {
        let g = self.live();
        if g.revs.is_empty() {
            g.created = rev;
        }
        g.revs.push(rev);
        g.ver += 1;
    }

    /// Ends the live generation; false if the key is not live.
    fn tombstone(&mut self, rev: Revision) -> bool {
        if self.live().is_empty() {
            return false;
        }
        self.put(rev);
        self.generations.push(Generation::default());
        true
    }

    /// The generation that holds the key's state at `at`, if the key is live then.
    fn find_generation(&self, at: i64) -> Option<&Generation> {
        let last = self.generations.len() - 1;
        for (i, g) in self.generations.iter().enumerate().rev() {
            let (Some(first), Some(end)) = (g.revs.first(), g.revs.last()) else {
                continue;
            };
            if i != last && end.main <= at {
                return None;
            }
            if first.main <= at {
                return Some(g);
            }
        }
        None
    }

    pub(crate) fn get(&self, at: i64) -> Option<KeyAt> {
        let g = self.find_generation(at)?;
        let n = g.newest_at(at)?;
        Some(KeyAt {
            modified: g.revs[n],
            created: g.created,
            version: g.ver - (g.revs.len() - n - 1) as i64,
        })
    }

    /// Finds the revision compaction at `at` keeps: returns the generation index and the
    /// position in it (if any), after adding that revision to `keep`.
    fn compaction_point(&self, at: i64, keep: &mut HashSet<Revision>) -> (usize, Option<usize>) {
        let mut gi = 0;
        while gi < self.generations.len() - 1 {
            let g = &self.generations[gi];
            match g.revs.last() {
                Some(end) if end.main > at => break,
                _ => gi += 1,
            }
        }
        let pos = self.generations[gi].newest_at(at);
        if let Some(p) = pos {
            keep.insert(self.generations[gi].revs[p]);
        }
        (gi, pos)
    }

    /// Adds to `keep` the revision compaction at `at` would keep, without changing anything.
    fn keep(&self, at: i64, keep: &mut HashSet<Revision>) {
        let (gi, pos) = self.compaction_point(at, keep);
        let g = &self.generations[gi];
        if let Some(p) = pos {
            if p == g.revs.len() - 1 && gi != self.generations.len() - 1 {
                keep.remove(&g.revs[p]);
            }
        }
    }

    /// Drops the history compaction at `at` supersedes, recording what stays in `keep`.
    fn compact(&mut self, at: i64, keep: &mut HashSet<Revision>) {
        let (mut gi, pos) = self.compaction_point(at, keep);
        let last = self.generations.len() - 1;
        let g = &mut self.generations[gi];
        if !g.is_empty() {
            if let Some(p) = pos {
                g.revs.drain(..p);
            }
            if g.revs.len() == 1 && gi != last {
                keep.remove(&g.revs[0]);
                gi += 1;
            }
        }
        self.generations.drain(..gi);
    }

    /// Reverts the newest put.
    fn undo_put(&mut self) {
        let g = self.live();
        g.revs.pop();
        g.ver -= 1;
        if g.revs.is_empty() {
            *g = Generation::default();
        }
    }

    /// Reverts the newest tombstone.
    fn undo_tombstone(&mut self) {
        self.generations.pop();
        self.undo_put();
    }
}

/// All keys' histories, ordered by key.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct TreeIndex {
    keys: BTreeMap<Vec<u8>, KeyIndex>,
    /// How many keys are live now (their last generation is open), kept as puts,
    /// tombstones and undos change it: deleted keys stay in `keys` until compaction.
    live: i64,
}

/// Which keys a request covers: one key, or `[start, end)` with an open end when `end` is
/// empty (etcd's `range_end = "\0"`).
#[derive(Debug, Clone, Copy)]
pub(crate) enum KeyRange<'a> {
    One(&'a [u8]),
    From { start: &'a [u8], end: &'a [u8] },
}

type KeyBounds<'a> = (Bound<&'a [u8]>, Bound<&'a [u8]>);

impl<'a> KeyRange<'a> {
    /// Reads a request's `key` and `range_end` as etcd does.
    pub(crate) fn new(key: &'a [u8], range_end: &'a [u8]) -> KeyRange<'a> {
        match range_end {
            [] => KeyRange::One(key),
            [0] => KeyRange::From {
                start: key,
                end: &[],
            },
            end => KeyRange::From { start: key, end },
        }
    }

    fn bounds(self) -> Option<KeyBounds<'a>> {
        match self {
            KeyRange::One(k) => Some((Bound::Included(k), Bound::Included(k))),
            KeyRange::From { start, end: [] } => Some((Bound::Included(start), Bound::Unbounded)),
            KeyRange::From { start, end } if end > start => {
                Some((Bound::Included(start), Bound::Excluded(end)))
            }
            KeyRange::From { .. } => None,
        }
    }
}

impl TreeIndex {
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    fn iter_range<'s>(
        &'s self,
        range: KeyRange<'s>,
    ) -> impl Iterator<Item = (&'s Vec<u8>, &'s KeyIndex)> + 's {
        range
            .bounds()
            .map(|b| self.keys.range::<[u8], _>(b))
            .into_iter()
            .flatten()
    }

    pub(crate) fn get(&self, key: &[u8], at: i64) -> Option<KeyAt> {
        self.keys.get(key)?.get(at)
    }

    /// How many keys are live at the newest revision recorded.
    pub(crate) fn live_count(&self) -> i64 {
        self.live
    }

    /// Records a put of `key` at `rev`.
    pub(crate) fn put(&mut self, key: &[u8], rev: Revision) {
        match self.keys.get_mut(key) {
            Some(ki) => {
                if ki.generations.last().is_some_and(Generation::is_empty) {
                    self.live += 1;
                }
                ki.put(rev);
            }
            None => {
                let mut ki = KeyIndex::new();
                ki.put(rev);
                self.keys.insert(key.to_vec(), ki);
                self.live += 1;
            }
        }
    }

    /// Records a delete of `key` at `rev`; false (and nothing changes) if it is not live.
    pub(crate) fn tombstone(&mut self, key: &[u8], rev: Revision) -> bool {
        let ended = self.keys.get_mut(key).is_some_and(|ki| ki.tombstone(rev));
        if ended {
            self.live -= 1;
        }
        ended
    }

    /// Rebuilds a key's history from one "key" table record, in revision order, as the
    /// store does at open: the first record seen of a key starts a generation at the
    /// record's own create revision and version, so compacted history keeps its numbers.
    pub(crate) fn restore(
        &mut self,
        key: &[u8],
        rev: Revision,
        tombstone: bool,
        create_revision: i64,
        version: i64,
    ) {
        match self.keys.get_mut(key) {
            Some(_) if tombstone => {
                self.tombstone(key, rev);
            }
            Some(_) => self.put(key, rev),
            None if tombstone => {}
            None => {
                self.live += 1;
                let g = Generation {
                    ver: version,
                    created: Revision::new(create_revision, 0),
                    revs: vec![rev],
                };
                self.keys.insert(
                    key.to_vec(),
                    KeyIndex {
                        generations: vec![g],
                    },
                );
            }
        }
    }

    /// Revisions of the keys live at `at` in `range`, in key order, at most `limit` of them
    /// (all if `limit <= 0`), and how many keys are live in the range.
    pub(crate) fn revisions(
        &self,
        range: KeyRange<'_>,
        at: i64,
        limit: i64,
    ) -> (Vec<Revision>, i64) {
        let mut revs = Vec::new();
        let mut total = 0;
        for (_, ki) in self.iter_range(range) {
            if let Some(k) = ki.get(at) {
                if limit <= 0 || (revs.len() as i64) < limit {
                    revs.push(k.modified);
                }
                total += 1;
            }
        }
        (revs, total)
    }

    /// How many keys in `range` are live at `at`.
    pub(crate) fn count(&self, range: KeyRange<'_>, at: i64) -> i64 {
        self.iter_range(range)
            .filter(|(_, ki)| ki.get(at).is_some())
            .count() as i64
    }

    /// The keys live at `at` in `range` with their revisions, in key order.
    pub(crate) fn live_keys(&self, range: KeyRange<'_>, at: i64) -> Vec<(Vec<u8>, Revision)> {
        self.iter_range(range)
            .filter_map(|(k, ki)| ki.get(at).map(|a| (k.clone(), a.modified)))
            .collect()
    }

    /// The revisions compaction at `at` keeps, without compacting.
    pub(crate) fn keep(&self, at: i64) -> HashSet<Revision> {
        let mut keep = HashSet::new();
        for ki in self.keys.values() {
            if !ki.is_empty() {
                ki.keep(at, &mut keep);
            }
        }
        keep
    }

    /// Drops history superseded at `at`; returns the revisions `<= at` that stay.
    pub(crate) fn compact(&mut self, at: i64) -> HashSet<Revision> {
        let mut keep = HashSet::new();
        self.keys.retain(|_, ki| {
            if ki.is_empty() {
                return false;
            }
            ki.compact(at, &mut keep);
            !ki.is_empty()
        });
        keep
    }

    /// Reverts the newest change of `key`, which must be the put or tombstone described.
    pub(crate) fn undo(&mut self, key: &[u8], tombstone: bool) {
        if let Some(ki) = self.keys.get_mut(key) {
            if tombstone {
                ki.undo_tombstone();
                self.live += 1;
            } else {
                ki.undo_put();
                if ki.generations.last().is_some_and(Generation::is_empty) {
                    self.live -= 1;
                }
            }
            if ki.is_empty() {
                self.keys.remove(key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(main: i64) -> Revision {
        Revision::new(main, 0)
    }

    /// The module's worked example.
    fn example() -> TreeIndex {
        let mut t = TreeIndex::default();
        t.put(b"k", r(1));
        t.put(b"k", r(2));
        assert!(t.tombstone(b"k", r(3)));
        t.put(b"k", r(4));
        assert!(t.tombstone(b"k", r(5)));
        t
    }

    #[test]
    fn get_follows_generations() {
        let t = example();
        let cases = [
            (0, None),
            (1, Some((1, 1, 1))),
            (2, Some((2, 1, 2))),
            (3, None),
            (4, Some((4, 4, 1))),
            (5, None),
            (9, None),
        ];
        for (at, want) in cases {
            let got = t
                .get(b"k", at)
                .map(|k| (k.modified.main, k.created.main, k.version));
            assert_eq!(got, want, "at {at}");
        }
    }

    #[test]
    fn tombstone_of_missing_key_does_nothing() {
        let mut t = example();
        assert!(!t.tombstone(b"k", r(6)));
        assert!(!t.tombstone(b"other", r(6)));
        assert_eq!(t, example());
    }

    #[test]
    fn compaction_drops_superseded_history() {
        let cases: [(i64, &[i64], usize); 6] = [
            (1, &[1], 1),
            (2, &[2], 1),
            (3, &[], 1),
            (4, &[4], 1),
            (5, &[], 0),
            (6, &[], 0),
        ];
        for (at, kept, keys_left) in cases {
            let mut t = example();
            let keep_preview = t.keep(at);
            let keep = t.compact(at);
            let mut got: Vec<i64> = keep.iter().map(|r| r.main).collect();
            got.sort_unstable();
            assert_eq!(got, kept, "compact at {at}");
            assert_eq!(keep_preview, keep, "keep at {at}");
            assert_eq!(t.len(), keys_left, "at {at}");
            // Reads at or after the compaction point answer as before.
            for read in at..7 {
                assert_eq!(
                    t.get(b"k", read),
                    example().get(b"k", read),
                    "at {at} read {read}"
                );
            }
        }
    }

    #[test]
    fn compaction_keeps_versions() {
        let mut t = TreeIndex::default();
        for main in 1..=4 {
            t.put(b"k", r(main));
        }
        t.compact(3);
        let k = t.get(b"k", 4).unwrap();
        assert_eq!((k.version, k.created.main), (4, 1));
        let k = t.get(b"k", 3).unwrap();
        assert_eq!((k.version, k.created.main), (3, 1));
    }

    #[test]
    fn undo_reverts_in_reverse_order() {
        let mut t = TreeIndex::default();
        t.put(b"k", r(1));
        let before = t.clone();
        t.put(b"k", r(2));
        t.tombstone(b"k", r(3));
        t.put(b"k", r(4));
        t.put(b"n", r(4));
        t.undo(b"n", false);
        t.undo(b"k", false);
        t.undo(b"k", true);
        t.undo(b"k", false);
        assert_eq!(t, before);
        t.undo(b"k", false);
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn live_count_follows_puts_deletes_undos_restores_and_compaction() {
        let mut t = TreeIndex::default();
        assert_eq!(t.live_count(), 0);
        t.put(b"a", r(1));
        t.put(b"a", r(2));
        t.put(b"b", r(3));
        assert_eq!(t.live_count(), 2, "a second put of a live key adds nothing");
        assert!(t.tombstone(b"a", r(4)));
        assert!(!t.tombstone(b"a", r(5)));
        assert_eq!(t.live_count(), 1, "a delete of a deleted key takes nothing");
        t.put(b"a", r(5));
        assert_eq!(t.live_count(), 2, "a new generation counts again");
        t.undo(b"a", false);
        assert_eq!(t.live_count(), 1);
        t.undo(b"a", true);
        assert_eq!(t.live_count(), 2);
        t.undo(b"a", false);
        assert_eq!(
            t.live_count(),
            2,
            "undoing a second put leaves the key live"
        );
        assert!(t.tombstone(b"b", r(6)));
        t.compact(6);
        assert_eq!(
            t.live_count(),
            1,
            "compaction drops dead keys, not the count"
        );

        // Open's rebuild from records in revision order: the first record of a key may be
        // a compacted generation's later put, or a tombstone whose put is compacted away.
        let mut restored = TreeIndex::default();
        restored.restore(b"x", r(7), true, 0, 0);
        restored.restore(b"y", r(8), false, 2, 3);
        restored.restore(b"y", r(9), true, 0, 0);
        restored.restore(b"y", r(10), false, 10, 1);
        restored.restore(b"z", r(11), false, 11, 1);
        assert_eq!(restored.live_count(), 2);
        let everything = KeyRange::new(b"", b"\0");
        assert_eq!(restored.count(everything, i64::MAX), 2);
    }

    #[test]
    fn ranges() {
        let mut t = TreeIndex::default();
        for (i, k) in [b"a", b"b", b"c", b"d"].iter().enumerate() {
            t.put(*k, r(i as i64 + 1));
        }
        t.tombstone(b"c", r(5));
        type Case<'c> = (&'c [u8], &'c [u8], i64, i64, &'c [i64], i64);
        let cases: [Case<'_>; 8] = [
            (b"a", b"", 9, 0, &[1], 1),
            (b"a", b"c", 9, 0, &[1, 2], 2),
            (b"a", b"\0", 9, 0, &[1, 2, 4], 3),
            (b"a", b"\0", 4, 0, &[1, 2, 3, 4], 4),
            (b"a", b"\0", 9, 2, &[1, 2], 3),
            (b"c", b"a", 9, 0, &[], 0),
            (b"b", b"b", 9, 0, &[], 0),
            (b"zz", b"", 9, 0, &[], 0),
        ];
        for (key, end, at, limit, want, total) in cases {
            let range = KeyRange::new(key, end);
            let (revs, n) = t.revisions(range, at, limit);
            let got: Vec<i64> = revs.iter().map(|r| r.main).collect();
            assert_eq!(
                (got.as_slice(), n),
                (want, total),
                "{key:?} {end:?} at {at}"
            );
            assert_eq!(t.count(range, at), total);
        }
    }
}
