//! The term of every log index, kept in memory as runs.
//!
//! Terms in a Raft log never decrease, so the whole log is described by the index where each
//! term starts. A log holding indexes 5..=12 with terms `2 2 2 3 3 5 5 5` is stored as
//! `[(5, 2), (8, 3), (10, 5)]`: index 9 falls in the run starting at 8, so its term is 3.
//! raft-rs asks for terms constantly (commit checks, append matching); this answers without
//! touching the disk.

use raft::eraftpb::Entry;

/// Runs of equal terms, ordered by their first index.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct TermRuns {
    /// `(first index of the run, term)`, strictly increasing in both fields.
    runs: Vec<(u64, u64)>,
}

impl TermRuns {
    /// Returns the term at `index`, which the caller has checked lies inside the log.
    pub(crate) fn term(&self, index: u64) -> Option<u64> {
        let pos = self.runs.partition_point(|&(start, _)| start <= index);
        pos.checked_sub(1).map(|p| self.runs[p].1)
    }

    /// Records `entries` (contiguous) written at their indexes, replacing any later ones.
    pub(crate) fn append(&mut self, entries: &[Entry]) {
        let Some(first) = entries.first() else {
            return;
        };
        let keep = self.runs.partition_point(|&(start, _)| start < first.index);
        self.runs.truncate(keep);
        for e in entries {
            self.push(e.index, e.term);
        }
    }

    /// Notes that `index` has `term` and every index up to the next push does too.
    pub(crate) fn push(&mut self, index: u64, term: u64) {
        if self.runs.last().is_none_or(|&(_, t)| t != term) {
            self.runs.push((index, term));
        }
    }

    /// Forgets runs that end before `first_index`.
    pub(crate) fn compact(&mut self, first_index: u64) {
        let drop = self
            .runs
            .partition_point(|&(start, _)| start <= first_index);
        if drop > 1 {
            self.runs.drain(..drop - 1);
        }
    }

    /// Builds the runs of `lo..=hi` from a term lookup, with O(runs * log(len)) lookups.
    ///
    /// Relies on terms never decreasing: equal terms at both ends mean one run between.
    pub(crate) fn build<E>(
        lo: u64,
        hi: u64,
        mut term_at: impl FnMut(u64) -> Result<u64, E>,
    ) -> Result<TermRuns, E> {
        let mut runs = TermRuns::default();
        if lo > hi {
            return Ok(runs);
        }
        let (tlo, thi) = (term_at(lo)?, term_at(hi)?);
        // Explicit stack of (lo, term at lo, hi, term at hi), left halves first.
        let mut stack = vec![(lo, tlo, hi, thi)];
        while let Some((lo, tlo, hi, thi)) = stack.pop() {
            if tlo == thi {
                runs.push(lo, tlo);
            } else if hi - lo <= 1 {
                runs.push(lo, tlo);
                runs.push(hi, thi);
            } else {
                let mid = lo + (hi - lo) / 2;
                let tmid = term_at(mid)?;
                stack.push((mid, tmid, hi, thi));
                stack.push((lo, tlo, mid, tmid));
            }
        }
        Ok(runs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ents(first: u64, terms: &[u64]) -> Vec<Entry> {
        terms
            .iter()
            .enumerate()
            .map(|(i, &t)| Entry {
                index: first + i as u64,
                term: t,
                ..Default::default()
            })
            .collect()
    }

    #[test]
    fn worked_example() {
        let mut r = TermRuns::default();
        r.append(&ents(5, &[2, 2, 2, 3, 3, 5, 5, 5]));
        assert_eq!(r.runs, vec![(5, 2), (8, 3), (10, 5)]);
        let want = [(5, 2), (7, 2), (8, 3), (9, 3), (10, 5), (12, 5)];
        for (i, t) in want {
            assert_eq!(r.term(i), Some(t), "index {i}");
        }
        assert_eq!(r.term(4), None);
    }

    #[test]
    fn append_truncates_conflicting_suffix() {
        let mut r = TermRuns::default();
        r.append(&ents(1, &[1, 1, 2, 2, 2]));
        // A new leader overwrites from index 4 with term 3.
        r.append(&ents(4, &[3, 3]));
        assert_eq!(r.runs, vec![(1, 1), (3, 2), (4, 3)]);
        // Overwrite at the very start of a run.
        r.append(&ents(3, &[4]));
        assert_eq!(r.runs, vec![(1, 1), (3, 4)]);
        // Same term continues the run.
        r.append(&ents(4, &[4, 4]));
        assert_eq!(r.runs, vec![(1, 1), (3, 4)]);
    }

    #[test]
    fn compact_keeps_run_covering_first_index() {
        let mut r = TermRuns::default();
        r.append(&ents(1, &[1, 1, 2, 2, 3]));
        r.compact(4);
        assert_eq!(r.runs, vec![(3, 2), (5, 3)]);
        assert_eq!(r.term(4), Some(2));
        r.compact(5);
        assert_eq!(r.runs, vec![(5, 3)]);
    }

    #[test]
    fn build_matches_append() {
        let terms: Vec<u64> = [
            1u64, 1, 1, 2, 4, 4, 4, 4, 4, 7, 7, 8, 9, 9, 9, 9, 9, 9, 9, 12,
        ]
        .to_vec();
        let es = ents(10, &terms);
        let mut want = TermRuns::default();
        want.append(&es);
        let mut lookups = 0;
        let got = TermRuns::build(10, 29, |i| {
            lookups += 1;
            Ok::<_, ()>(terms[(i - 10) as usize])
        });
        assert_eq!(got, Ok(want));
        assert!(lookups <= terms.len());
        let empty = TermRuns::build(5, 4, |_| Err::<u64, ()>(()));
        assert_eq!(empty, Ok(TermRuns::default()));
    }
}
