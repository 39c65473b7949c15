//! The range watchers' index: which watched ranges `[key, range_end)` contain a given key
//! (a stabbing query), in O(log n + k) expected time for k matches, so a write costs the
//! same with 10 or 100k range watchers that do not match it.
//!
//! A treap (a binary search tree kept balanced by random priorities) ordered by
//! `(key, watcher)`, each node also naming the node of its subtree whose range ends last.
//! A query for `p` skips a subtree whose last end is at or below `p`, and the right subtree
//! of a node whose key is above `p` (every key there is above `p` too). A `range_end` of
//! `[0]` ends after every key, as etcd reads it; an empty `range_end` (one key) is the
//! single-key map's business and never stored here.
//!
//! For example, with `a..c` (watcher 1), `b..\0` (2) and `b..b0` (3) stored, the tree
//! might be
//!
//! ```text
//!            (b, 2) ends \0, last end in subtree: \0
//!           /          \
//!   (a, 1) ends c       (b, 3) ends b0
//! ```
//!
//! and a query for `bz` visits `(b, 2)` (match), `(a, 1)` (`c` > `bz`: match) and
//! `(b, 3)` (`b0` <= `bz`: no match), returning 1 and 2.
//!
//! Nodes live in one vector and point at each other by index; removed slots are reused.
//! Priorities come from the watcher's key mixed with a per-index random seed, so no
//! sequence of creates a client chooses can unbalance the tree.

use std::cmp::Ordering;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::Arc;

/// A node's place in the arena.
type Link = Option<u32>;

struct Node {
    key: Arc<[u8]>,
    /// The exclusive end; `[0]` for no end.
    end: Arc<[u8]>,
    id: u64,
    priority: u64,
    left: Link,
    right: Link,
    /// The node of this subtree whose range ends last.
    last_end: u32,
}

/// Orders two range ends, `[0]` (no end) after every other.
fn cmp_end(a: &[u8], b: &[u8]) -> Ordering {
    match (a, b) {
        ([0], [0]) => Ordering::Equal,
        ([0], _) => Ordering::Greater,
        (_, [0]) => Ordering::Less,
        (a, b) => a.cmp(b),
    }
}

/// Whether a range ending at `end` goes past `p`.
fn ends_after(end: &[u8], p: &[u8]) -> bool {
    matches!(end, [0]) || end > p
}

fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Ranges by their start, answering which contain a key; see the module docs.
pub(super) struct IntervalIndex {
    nodes: Vec<Node>,
    free: Vec<u32>,
    root: Link,
    seed: u64,
    /// Put in a freed node's place, so its key and end are dropped.
    empty: Arc<[u8]>,
}

impl Default for IntervalIndex {
    fn default() -> IntervalIndex {
        IntervalIndex {
            nodes: Vec::new(),
            free: Vec::new(),
            root: None,
            seed: RandomState::new().hash_one(0x5EED_u64),
            empty: Arc::from(&[][..]),
        }
    }
}

impl IntervalIndex {
    /// The number of ranges stored.
    pub(super) fn len(&self) -> usize {
        self.nodes.len() - self.free.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stores `[key, end)` for `id`; `(key, id)` must not be stored already.
    pub(super) fn insert(&mut self, key: Arc<[u8]>, end: Arc<[u8]>, id: u64) {
        let node = Node {
            key,
            end,
            id,
            priority: mix(id ^ self.seed),
            left: None,
            right: None,
            last_end: 0,
        };
        let at = match self.free.pop() {
            Some(at) => {
                self.nodes[at as usize] = node;
                at
            }
            None => {
                // Slots are u32: 4 billion ranges is far beyond what memory holds.
                let at = u32::try_from(self.nodes.len()).unwrap_or(u32::MAX);
                self.nodes.push(node);
                at
            }
        };
        self.nodes[at as usize].last_end = at;
        let key = self.nodes[at as usize].key.clone();
        let (left, right) = self.split(self.root, &key, id);
        let left = self.merge(left, Some(at));
        self.root = self.merge(left, right);
    }

    /// Removes `id`'s range that starts at `key`; returns whether it was stored.
    pub(super) fn remove(&mut self, key: &[u8], id: u64) -> bool {
        let (root, removed) = self.remove_in(self.root, key, id);
        self.root = root;
        if root.is_none() {
            // The last one: give the arena's memory back (it never shrinks otherwise).
            self.nodes = Vec::new();
            self.free = Vec::new();
            return removed.is_some();
        }
        if let Some(at) = removed {
            let n = &mut self.nodes[at as usize];
            n.key = self.empty.clone();
            n.end = self.empty.clone();
            n.left = None;
            n.right = None;
            self.free.push(at);
        }
        removed.is_some()
    }

    /// Appends the ids of every stored range containing `p` to `out`.
    pub(super) fn stab(&self, p: &[u8], out: &mut Vec<u64>) {
        self.stab_in(self.root, p, out);
    }

    fn stab_in(&self, link: Link, p: &[u8], out: &mut Vec<u64>) {
        let Some(at) = link else { return };
        let n = &self.nodes[at as usize];
        if !ends_after(&self.nodes[n.last_end as usize].end, p) {
            return;
        }
        self.stab_in(n.left, p, out);
        if *n.key <= *p {
            if ends_after(&n.end, p) {
                out.push(n.id);
            }
            self.stab_in(n.right, p, out);
        }
    }

    /// Whether node `at` sorts before `(key, id)`.
    fn before(&self, at: u32, key: &[u8], id: u64) -> bool {
        let n = &self.nodes[at as usize];
        (&*n.key, n.id) < (key, id)
    }

    /// Recomputes a node's `last_end` from its own end and its children's.
    fn update(&mut self, at: u32) {
        let n = &self.nodes[at as usize];
        let mut last = at;
        for child in [n.left, n.right].into_iter().flatten() {
            let c = self.nodes[child as usize].last_end;
            let ord = cmp_end(&self.nodes[c as usize].end, &self.nodes[last as usize].end);
            if ord == Ordering::Greater {
                last = c;
            }
        }
        self.nodes[at as usize].last_end = last;
    }

    /// Splits a subtree into the nodes before `(key, id)` and the rest.
    fn split(&mut self, link: Link, key: &[u8], id: u64) -> (Link, Link) {
        let Some(at) = link else {
            return (None, None);
        };
        if self.before(at, key, id) {
            let right = self.nodes[at as usize].right;
            let (mid, rest) = self.split(right, key, id);
            self.nodes[at as usize].right = mid;
            self.update(at);
            (Some(at), rest)
        } else {
            let left = self.nodes[at as usize].left;
            let (first, mid) = self.split(left, key, id);
            self.nodes[at as usize].left = mid;
            self.update(at);
            (first, Some(at))
        }
    }

    /// Joins two subtrees, every node of `a` sorting before every node of `b`.
    fn merge(&mut self, a: Link, b: Link) -> Link {
        let (Some(x), Some(y)) = (a, b) else {
            return a.or(b);
        };
        if self.nodes[x as usize].priority >= self.nodes[y as usize].priority {
            let right = self.nodes[x as usize].right;
            self.nodes[x as usize].right = self.merge(right, Some(y));
            self.update(x);
            Some(x)
        } else {
            let left = self.nodes[y as usize].left;
            self.nodes[y as usize].left = self.merge(Some(x), left);
            self.update(y);
            Some(y)
        }
    }

    /// Removes `(key, id)` from a subtree: its new root and the removed node.
    fn remove_in(&mut self, link: Link, key: &[u8], id: u64) -> (Link, Link) {
        let Some(at) = link else {
            return (None, None);
        };
        let n = &self.nodes[at as usize];
        let (left, right) = (n.left, n.right);
        match (&*n.key, n.id).cmp(&(key, id)) {
            Ordering::Equal => (self.merge(left, right), Some(at)),
            Ordering::Greater => {
                let (sub, removed) = self.remove_in(left, key, id);
                self.nodes[at as usize].left = sub;
                self.update(at);
                (Some(at), removed)
            }
            Ordering::Less => {
                let (sub, removed) = self.remove_in(right, key, id);
                self.nodes[at as usize].right = sub;
                self.update(at);
                (Some(at), removed)
            }
        }
    }

    /// The depth of the tree, for tests.
    #[cfg(test)]
    fn depth(&self) -> usize {
        fn depth_in(ix: &IntervalIndex, link: Link) -> usize {
            link.map_or(0, |at| {
                let n = &ix.nodes[at as usize];
                1 + depth_in(ix, n.left).max(depth_in(ix, n.right))
            })
        }
        depth_in(self, self.root)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// splitmix64, for reproducible random cases.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 = self.0.wrapping_add(1);
            mix(self.0) % n
        }

        /// A short key over a small alphabet, so ranges overlap and share ends often.
        fn key(&mut self) -> Vec<u8> {
            let len = self.below(4) as usize;
            (0..len)
                .map(|_| b"ab\0\xff"[self.below(4) as usize])
                .collect()
        }
    }

    fn contains(key: &[u8], end: &[u8], p: &[u8]) -> bool {
        p >= key && ends_after(end, p)
    }

    #[test]
    fn the_worked_example() {
        let mut ix = IntervalIndex::default();
        ix.insert(b"a"[..].into(), b"c"[..].into(), 1);
        ix.insert(b"b"[..].into(), b"\0"[..].into(), 2);
        ix.insert(b"b"[..].into(), b"b0"[..].into(), 3);
        let stab = |p: &[u8]| {
            let mut out = Vec::new();
            ix.stab(p, &mut out);
            out.sort_unstable();
            out
        };
        assert_eq!(stab(b"bz"), vec![1, 2]);
        assert_eq!(stab(b"b"), vec![1, 2, 3]);
        assert_eq!(stab(b"a"), vec![1]);
        assert_eq!(stab(b""), Vec::<u64>::new());
        assert_eq!(stab(b"\xff\xff"), vec![2]);
    }

    /// Random inserts, removes and queries against a list scanned in full.
    #[test]
    fn agrees_with_a_linear_scan() {
        let mut rng = Rng(7);
        for round in 0..20 {
            let mut ix = IntervalIndex::default();
            let mut model: Vec<(Vec<u8>, Vec<u8>, u64)> = Vec::new();
            let mut next_id = 0;
            for _ in 0..600 {
                match rng.below(10) {
                    0..=4 => {
                        next_id += 1;
                        let key = rng.key();
                        let end = match rng.below(4) {
                            0 => vec![0],
                            1 => {
                                // A prefix range, as `--prefix` asks for.
                                let mut end = key.clone();
                                while end.last() == Some(&0xff) {
                                    end.pop();
                                }
                                match end.last_mut() {
                                    Some(last) => *last += 1,
                                    None => end = vec![0],
                                }
                                end
                            }
                            _ => {
                                let mut end = rng.key();
                                end.push(b'a');
                                end
                            }
                        };
                        ix.insert(key.as_slice().into(), end.as_slice().into(), next_id);
                        model.push((key, end, next_id));
                    }
                    5..=6 if !model.is_empty() => {
                        let (key, _, id) =
                            model.swap_remove(rng.below(model.len() as u64) as usize);
                        assert!(ix.remove(&key, id));
                        assert!(!ix.remove(&key, id), "removed twice");
                    }
                    _ => {
                        let p = rng.key();
                        let mut got = Vec::new();
                        ix.stab(&p, &mut got);
                        got.sort_unstable();
                        let mut want: Vec<u64> = model
                            .iter()
                            .filter(|(k, e, _)| contains(k, e, &p))
                            .map(|(_, _, id)| *id)
                            .collect();
                        want.sort_unstable();
                        assert_eq!(got, want, "round {round}, point {p:?}");
                    }
                }
                assert_eq!(ix.len(), model.len());
            }
        }
    }

    #[test]
    fn stays_shallow_whatever_the_order_of_inserts() {
        let mut ix = IntervalIndex::default();
        let n = 100_000u64;
        for id in 0..n {
            let key: Arc<[u8]> = format!("k/{id:08}").into_bytes().into();
            ix.insert(key, b"\0"[..].into(), id);
        }
        // A balanced tree of 100k is 17 deep; a treap's expected depth is a small multiple.
        assert!(ix.depth() < 80, "depth {}", ix.depth());
        for id in (0..n).step_by(2) {
            assert!(ix.remove(format!("k/{id:08}").as_bytes(), id));
        }
        assert_eq!(ix.len(), n as usize / 2);
        let mut out = Vec::new();
        ix.stab(b"k/00000003", &mut out);
        assert_eq!(
            out.len(),
            2,
            "k/00000001 and k/00000003 start at or before it"
        );
        ix.insert(b"z"[..].into(), b"zz"[..].into(), n);
        assert_eq!(ix.nodes.len(), n as usize, "a freed slot is reused");
        for id in (1..n).step_by(2) {
            assert!(ix.remove(format!("k/{id:08}").as_bytes(), id));
        }
        assert!(ix.remove(b"z", n));
        assert!(ix.is_empty());
        assert_eq!(ix.nodes.capacity(), 0, "the arena is given back once empty");
        ix.insert(b"a"[..].into(), b"\0"[..].into(), 1);
        let mut out = Vec::new();
        ix.stab(b"b", &mut out);
        assert_eq!(out, vec![1]);
    }
}
