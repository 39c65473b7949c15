//! The freshly written tail of the log, kept in memory.
//!
//! Entries are appended here right after they are synced, and raft-rs reads them back
//! almost at once to hand them to the applier (and, with peers, to send them). Serving those
//! reads from memory avoids decoding log files on the hot path. Entries leave the cache
//! once applied, or from the front when it grows past its byte budget; a miss falls back to
//! raft-engine.

use std::collections::VecDeque;

use protobuf::Message;
use raft::eraftpb::Entry;

/// A contiguous run of the newest log entries.
#[derive(Debug)]
pub(crate) struct EntryCache {
    entries: VecDeque<Entry>,
    /// Sum of the encoded sizes of `entries`.
    bytes: usize,
    /// Upper bound for `bytes`; the oldest entries are dropped beyond it.
    budget: usize,
}

impl EntryCache {
    pub(crate) fn new(budget: usize) -> Self {
        EntryCache {
            entries: VecDeque::new(),
            bytes: 0,
            budget,
        }
    }

    /// Index of the oldest cached entry, if any.
    pub(crate) fn first_index(&self) -> Option<u64> {
        self.entries.front().map(|e| e.index)
    }

    /// Adds `entries`, which were just written at their indexes and replace later ones.
    pub(crate) fn append(&mut self, entries: &[Entry]) {
        let Some(first) = entries.first() else {
            return;
        };
        match (self.first_index(), self.entries.back().map(|e| e.index)) {
            (Some(lo), Some(hi)) if first.index > lo && first.index <= hi + 1 => {
                let keep = (first.index - lo) as usize;
                for e in self.entries.drain(keep..) {
                    self.bytes -= e.compute_size() as usize;
                }
            }
            (Some(_), Some(hi)) if first.index == hi + 1 => {}
            _ => self.clear(),
        }
        for e in entries {
            self.bytes += e.compute_size() as usize;
            self.entries.push_back(e.clone());
        }
        self.shrink();
    }

    /// Drops entries at or below `index` (already applied).
    pub(crate) fn evict_to(&mut self, index: u64) {
        while self.entries.front().is_some_and(|e| e.index <= index) {
            self.pop_front();
        }
    }

    /// Appends clones of the entries in `lo..hi` to `out`; the caller checked they are cached.
    pub(crate) fn fetch(&self, lo: u64, hi: u64, out: &mut Vec<Entry>) {
        if let Some(first) = self.first_index() {
            let start = lo.saturating_sub(first) as usize;
            let end = (hi.saturating_sub(first) as usize).min(self.entries.len());
            out.extend(self.entries.range(start..end).cloned());
        }
    }

    pub(crate) fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }

    fn shrink(&mut self) {
        while self.bytes > self.budget && self.entries.len() > 1 {
            self.pop_front();
        }
    }

    fn pop_front(&mut self) {
        if let Some(e) = self.entries.pop_front() {
            self.bytes -= e.compute_size() as usize;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ents(lo: u64, hi: u64, term: u64) -> Vec<Entry> {
        (lo..=hi)
            .map(|i| Entry {
                index: i,
                term,
                data: vec![0u8; 10].into(),
                ..Default::default()
            })
            .collect()
    }

    fn indexes(c: &EntryCache, lo: u64, hi: u64) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        c.fetch(lo, hi, &mut out);
        out.iter().map(|e| (e.index, e.term)).collect()
    }

    #[test]
    fn append_overwrite_evict() {
        let mut c = EntryCache::new(1 << 20);
        c.append(&ents(1, 5, 1));
        assert_eq!(c.first_index(), Some(1));
        c.append(&ents(4, 6, 2));
        assert_eq!(
            indexes(&c, 1, 7),
            vec![(1, 1), (2, 1), (3, 1), (4, 2), (5, 2), (6, 2)]
        );
        c.evict_to(2);
        assert_eq!(c.first_index(), Some(3));
        assert_eq!(indexes(&c, 3, 5), vec![(3, 1), (4, 2)]);
        // A gap (e.g. after a snapshot) starts over.
        c.append(&ents(10, 11, 3));
        assert_eq!(indexes(&c, 10, 12), vec![(10, 3), (11, 3)]);
        // Overwriting from before the cached range starts over too.
        c.append(&ents(2, 2, 4));
        assert_eq!(indexes(&c, 2, 3), vec![(2, 4)]);
    }

    #[test]
    fn budget_drops_oldest() {
        let one = ents(1, 1, 1)[0].compute_size() as usize;
        let mut c = EntryCache::new(one * 3);
        c.append(&ents(1, 10, 1));
        assert_eq!(c.first_index(), Some(8));
        assert_eq!(c.bytes, one * 3);
        c.evict_to(100);
        assert_eq!(c.first_index(), None);
        assert_eq!(c.bytes, 0);
    }
}
