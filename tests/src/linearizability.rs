//! A linearizability checker for client histories of a key-value store, one register per key.
//!
//! Each key is checked on its own: linearizability is compositional (Herlihy and Wing's
//! locality), so a history is linearizable when the sub-history of every key is.
//!
//! The model is a register holding a value or nothing (the key does not exist), with three
//! operations as the robustness workload issues them through the etcd API:
//!
//! - `get`: a linearizable range of the key;
//! - `put` of a value unique in the whole history;
//! - compare-and-set: a txn that compares the key's value (or its mod_revision, translated to
//!   the value read at that revision, see [`check_revisions`]), puts a new unique value on
//!   success and reads the key on failure.
//!
//! Every operation carries its invoke and return times on one monotonic clock and its
//! outcome: a result, failed for sure (it had no effect and is dropped), or unknown (a timeout
//! or a lost connection: a write may take effect at any point after its invoke, or never).
//!
//! # The search
//!
//! The search is Wing and Gong's, with Lowe's memoization as Porcupine uses it. Calls and
//! returns are laid out on one time line, a doubly linked list sorted by time. Walking it from
//! the front, a call may be linearized next when the model accepts the operation's outcome
//! from the current state; it is then taken out of the list (call and return) and pushed on a
//! stack, and the walk restarts from the front. Reaching a return means the operation that
//! returned there had to be linearized already: the last choice is undone and the walk goes on
//! past it. A set of linearized operations together with the model state it led to is
//! recorded once; meeting the same pair again cannot lead anywhere new, which is what keeps
//! the search small.
//!
//! An operation with an unknown outcome returns at the end of time, so it can be linearized
//! anywhere after its invoke. Being linearized after everything else is the same as never
//! having happened, because nothing observes the state afterwards.
//!
//! Example, one key, two clients (time runs right):
//!
//! ```text
//! c0: |--put(a)--|        |--get() -> a--|
//! c1:      |---put(b)---|
//! ```
//!
//! is linearizable as `put(b) put(a) get()`. Had the get returned nothing, it would not be:
//! both puts completed before the get began.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

/// What a client asked for on one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A linearizable read.
    Get,
    /// A put of a value unique in the history.
    Put { value: String },
    /// Puts `value` if the key holds `expect` (`None`: the key does not exist).
    Cas {
        expect: Option<String>,
        value: String,
    },
}

/// How an operation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A get returned this value (`None`: no such key).
    Read(Option<String>),
    /// A put was acknowledged.
    Written,
    /// A compare-and-set matched and its put was applied.
    Swapped,
    /// A compare-and-set did not match; the key held `current` at that point.
    NotSwapped { current: Option<String> },
    /// The operation certainly had no effect.
    Failed,
    /// The client does not know whether the operation took effect (timeout, lost connection).
    Unknown,
}

/// One client operation on one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    /// Which client issued it (for reports only).
    pub client: usize,
    pub key: String,
    pub input: Input,
    pub outcome: Outcome,
    /// When it was invoked, in nanoseconds on the history's monotonic clock.
    pub invoke: u64,
    /// When it returned (ignored when the outcome is unknown).
    pub ret: u64,
    /// The mod_revision of the value the operation read or wrote, when the server said.
    pub revision: Option<i64>,
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = |t: u64| t as f64 / 1e9;
        write!(f, "[client {}] ", self.client)?;
        match &self.input {
            Input::Get => write!(f, "get()")?,
            Input::Put { value } => write!(f, "put({value})")?,
            Input::Cas { expect, value } => write!(f, "cas({expect:?} -> {value})")?,
        }
        match &self.outcome {
            Outcome::Read(v) => write!(f, " -> {v:?}")?,
            Outcome::Written => write!(f, " -> ok")?,
            Outcome::Swapped => write!(f, " -> swapped")?,
            Outcome::NotSwapped { current } => write!(f, " -> not swapped, held {current:?}")?,
            Outcome::Failed => write!(f, " -> failed")?,
            Outcome::Unknown => write!(f, " -> unknown")?,
        }
        if let Some(r) = self.revision {
            write!(f, " (rev {r})")?;
        }
        if self.outcome == Outcome::Unknown {
            write!(f, " @ {:.3}s..", secs(self.invoke))
        } else {
            write!(f, " @ {:.3}s..{:.3}s", secs(self.invoke), secs(self.ret))
        }
    }
}

/// The verdict on one key's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    /// No order explains the history; the report shows where the search got stuck.
    Violation(Report),
    /// The search gave up after its step budget.
    Inconclusive {
        key: String,
        steps: u64,
    },
}

/// Where the search for a linearization of one key got furthest, and what it could not
/// place next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub key: String,
    /// The end of the longest partial linearization found, oldest first.
    pub prefix: Vec<Operation>,
    /// How many operations the longest partial linearization holds in all.
    pub prefix_len: usize,
    /// The register's value after that prefix.
    pub state: Option<String>,
    /// The operations that could come next by their times, none of which fits the model.
    pub stuck: Vec<Operation>,
    /// How many operations the key's history holds (after dropping those without effect).
    pub ops: usize,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "key {:?}: not linearizable ({} ops); the longest linearization found places {} of \
             them, ending with:",
            self.key, self.ops, self.prefix_len
        )?;
        for op in &self.prefix {
            writeln!(f, "    {op}")?;
        }
        writeln!(
            f,
            "  the key then holds {:?}, and none of these can come next:",
            self.state
        )?;
        for op in &self.stuck {
            writeln!(f, "    {op}")?;
        }
        Ok(())
    }
}

/// How many search steps one key may take before the verdict is inconclusive.
const STEP_BUDGET: u64 = 10_000_000;

/// How many operations of the longest linearization a report shows.
const REPORT_PREFIX: usize = 8;

/// Checks every key's sub-history; returns the verdict of each key that is not linearizable.
pub fn check(ops: &[Operation]) -> Vec<Verdict> {
    let mut by_key: BTreeMap<&str, Vec<Operation>> = BTreeMap::new();
    for op in ops {
        by_key.entry(&op.key).or_default().push(op.clone());
    }
    by_key
        .into_values()
        .map(|ops| check_key(&ops))
        .filter(|v| *v != Verdict::Linearizable)
        .collect()
}

/// Checks that the revisions the server reported identify values: on each key, one value has
/// one mod_revision and one mod_revision one value (0 only for a missing key).
///
/// Compare-and-set by mod_revision is checked as compare-and-set by the value read at that
/// revision; this check is what makes the translation sound.
pub fn check_revisions(ops: &[Operation]) -> Vec<String> {
    let mut errors = Vec::new();
    let mut rev_of: HashMap<(&str, Option<&str>), (i64, &Operation)> = HashMap::new();
    let mut value_of: HashMap<(&str, i64), (Option<&str>, &Operation)> = HashMap::new();
    for op in ops {
        let Some(rev) = op.revision else { continue };
        let value = match (&op.input, &op.outcome) {
            (_, Outcome::Read(v)) | (_, Outcome::NotSwapped { current: v }) => v.as_deref(),
            (Input::Put { value }, Outcome::Written) => Some(value.as_str()),
            (Input::Cas { value, .. }, Outcome::Swapped) => Some(value.as_str()),
            _ => continue,
        };
        if (value.is_none()) != (rev == 0) {
            errors.push(format!(
                "key {:?}: value {value:?} at revision {rev}: {op}",
                op.key
            ));
        }
        let (seen_rev, first) = *rev_of.entry((&op.key, value)).or_insert((rev, op));
        if seen_rev != rev {
            errors.push(format!(
                "key {:?}: value {value:?} has two revisions:\n    {first}\n    {op}",
                op.key
            ));
        }
        let (seen_value, first) = *value_of.entry((&op.key, rev)).or_insert((value, op));
        if seen_value != value {
            errors.push(format!(
                "key {:?}: revision {rev} has two values:\n    {first}\n    {op}",
                op.key
            ));
        }
    }
    errors
}

/// The model's input and outcome with values interned (0: no value).
#[derive(Debug, Clone, Copy)]
enum Step {
    Get(u32),
    Put(u32),
    Swapped { expect: u32, value: u32 },
    NotSwapped { expect: u32, current: u32 },
    CasUnknown { expect: u32, value: u32 },
}

impl Step {
    /// The register's state after this operation from `state`, if the model allows it.
    fn apply(self, state: u32) -> Option<u32> {
        match self {
            Step::Get(v) => (v == state).then_some(state),
            Step::Put(v) => Some(v),
            Step::Swapped { expect, value } => (expect == state).then_some(value),
            Step::NotSwapped { expect, current } => {
                (expect != state && current == state).then_some(state)
            }
            Step::CasUnknown { expect, value } => Some(if expect == state { value } else { state }),
        }
    }
}

/// A fixed-size set of operation indexes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Bits(Vec<u64>);

impl Bits {
    fn new(n: usize) -> Bits {
        Bits(vec![0; n.div_ceil(64)])
    }
    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
    fn clear(&mut self, i: usize) {
        self.0[i / 64] &= !(1 << (i % 64));
    }
}

/// Checks one key's history.
pub fn check_key(ops: &[Operation]) -> Verdict {
    let key = ops.first().map(|o| o.key.clone()).unwrap_or_default();
    let ops = relevant(ops);
    let mut values: HashMap<String, u32> = HashMap::new();
    let mut names: Vec<Option<String>> = vec![None];
    let mut intern = |v: Option<&str>| -> u32 {
        let Some(v) = v else { return 0 };
        *values.entry(v.to_string()).or_insert_with(|| {
            names.push(Some(v.to_string()));
            (names.len() - 1) as u32
        })
    };
    let steps: Vec<Step> = ops
        .iter()
        .map(|op| match (&op.input, &op.outcome) {
            (_, Outcome::Read(v)) => Step::Get(intern(v.as_deref())),
            (Input::Put { value }, _) => Step::Put(intern(Some(value))),
            (Input::Cas { expect, value }, Outcome::Swapped) => Step::Swapped {
                expect: intern(expect.as_deref()),
                value: intern(Some(value)),
            },
            (Input::Cas { expect, .. }, Outcome::NotSwapped { current }) => Step::NotSwapped {
                expect: intern(expect.as_deref()),
                current: intern(current.as_deref()),
            },
            (Input::Cas { expect, value }, _) => Step::CasUnknown {
                expect: intern(expect.as_deref()),
                value: intern(Some(value)),
            },
            // A get whose outcome is not a read was dropped by `relevant`.
            (Input::Get, _) => Step::Get(u32::MAX),
        })
        .collect();

    let n = ops.len();
    let returns = effective_returns(&ops);
    // The time line: node 2i is op i's call, 2i+1 its return; node 2n is the list's head.
    let head = 2 * n;
    let time = |node: usize| -> (u64, u8) {
        let op = &ops[node / 2];
        if node.is_multiple_of(2) {
            (op.invoke, 0)
        } else {
            // A return never precedes its own call, even with a clock that stood still.
            (returns[node / 2].max(op.invoke), 1)
        }
    };
    let mut order: Vec<usize> = (0..2 * n).collect();
    // Calls sort before returns at equal times: touching operations count as concurrent.
    order.sort_by_key(|&node| (time(node), node));
    let mut next = vec![head; 2 * n + 1];
    let mut prev = vec![head; 2 * n + 1];
    let mut last = head;
    for &node in &order {
        next[last] = node;
        prev[node] = last;
        last = node;
    }
    next[last] = head;
    prev[head] = last;

    let unlink = |next: &mut Vec<usize>, prev: &mut Vec<usize>, x: usize| {
        next[prev[x]] = next[x];
        prev[next[x]] = prev[x];
    };
    let relink = |next: &mut Vec<usize>, prev: &mut Vec<usize>, x: usize| {
        next[prev[x]] = x;
        prev[next[x]] = x;
    };

    let mut linearized = Bits::new(n);
    let mut seen: HashSet<(Bits, u32)> = HashSet::new();
    let mut stack: Vec<(usize, u32)> = Vec::new();
    let mut best: (Vec<usize>, u32) = (Vec::new(), 0);
    let mut state = 0u32;
    let mut entry = next[head];
    let mut count = 0u64;
    while next[head] != head {
        count += 1;
        if count > STEP_BUDGET {
            return Verdict::Inconclusive { key, steps: count };
        }
        if entry.is_multiple_of(2) {
            let op = entry / 2;
            if let Some(after) = steps[op].apply(state) {
                linearized.set(op);
                if seen.insert((linearized.clone(), after)) {
                    stack.push((entry, state));
                    state = after;
                    unlink(&mut next, &mut prev, entry);
                    unlink(&mut next, &mut prev, entry + 1);
                    if stack.len() > best.0.len() {
                        best = (stack.iter().map(|(e, _)| e / 2).collect(), state);
                    }
                    entry = next[head];
                    continue;
                }
                linearized.clear(op);
            }
            entry = next[entry];
        } else {
            // A return: the operation it ends was not linearized in time. Undo the last
            // choice and try the next candidate after it.
            let Some((call, before)) = stack.pop() else {
                return Verdict::Violation(report(&key, &ops, &best, &names));
            };
            linearized.clear(call / 2);
            state = before;
            relink(&mut next, &mut prev, call + 1);
            relink(&mut next, &mut prev, call);
            entry = next[call];
        }
    }
    Verdict::Linearizable
}

/// The operations that can matter: those that certainly failed, reads without a result, and
/// unknown writes of values nobody observed are left out.
///
/// An unknown write whose value is never read (nor expected by a compare-and-set) can always
/// be taken as never applied: between it and the next write nothing could observe it.
fn relevant(ops: &[Operation]) -> Vec<Operation> {
    let mut observed: HashSet<&str> = HashSet::new();
    for op in ops {
        if let Outcome::Read(Some(v)) | Outcome::NotSwapped { current: Some(v) } = &op.outcome {
            observed.insert(v);
        }
        if let Input::Cas {
            expect: Some(v), ..
        } = &op.input
        {
            observed.insert(v);
        }
    }
    ops.iter()
        .filter(|op| match (&op.input, &op.outcome) {
            (_, Outcome::Failed) => false,
            (Input::Get, outcome) => matches!(outcome, Outcome::Read(_)),
            (Input::Put { value } | Input::Cas { value, .. }, Outcome::Unknown) => {
                observed.contains(value.as_str())
            }
            _ => true,
        })
        .cloned()
        .collect()
}

/// When each operation must have taken effect by: its return, or for an unknown write the
/// earliest return of an operation that observed its value (values are unique, so the write
/// came before that observation), or never (the end of time).
fn effective_returns(ops: &[Operation]) -> Vec<u64> {
    let mut first_seen: HashMap<&str, u64> = HashMap::new();
    for op in ops {
        let seen = match (&op.input, &op.outcome) {
            (_, Outcome::Read(Some(v)) | Outcome::NotSwapped { current: Some(v) }) => v,
            (
                Input::Cas {
                    expect: Some(v), ..
                },
                Outcome::Swapped,
            ) => v,
            _ => continue,
        };
        let t = first_seen.entry(seen).or_insert(u64::MAX);
        *t = (*t).min(op.ret);
    }
    ops.iter()
        .map(|op| match (&op.input, &op.outcome) {
            (Input::Put { value } | Input::Cas { value, .. }, Outcome::Unknown) => {
                first_seen.get(value.as_str()).copied().unwrap_or(u64::MAX)
            }
            _ => op.ret,
        })
        .collect()
}

/// Describes where the search got furthest.
fn report(
    key: &str,
    ops: &[Operation],
    best: &(Vec<usize>, u32),
    names: &[Option<String>],
) -> Report {
    let (placed, state) = best;
    let done: HashSet<usize> = placed.iter().copied().collect();
    let rest: Vec<&Operation> = (0..ops.len())
        .filter(|i| !done.contains(i))
        .map(|i| &ops[i])
        .collect();
    // Whatever was invoked before the first remaining return could have come next.
    let horizon = rest
        .iter()
        .filter(|op| op.outcome != Outcome::Unknown)
        .map(|op| op.ret)
        .min()
        .unwrap_or(u64::MAX);
    let mut stuck: Vec<Operation> = rest
        .into_iter()
        .filter(|op| op.invoke <= horizon)
        .cloned()
        .collect();
    stuck.sort_by_key(|op| op.invoke);
    Report {
        key: key.to_string(),
        prefix: placed
            .iter()
            .skip(placed.len().saturating_sub(REPORT_PREFIX))
            .map(|&i| ops[i].clone())
            .collect(),
        prefix_len: placed.len(),
        state: names.get(*state as usize).cloned().flatten(),
        stuck,
        ops: ops.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds an operation on key "k"; times in milliseconds.
    fn op(client: usize, input: Input, outcome: Outcome, invoke: u64, ret: u64) -> Operation {
        Operation {
            client,
            key: "k".into(),
            input,
            outcome,
            invoke: invoke * 1_000_000,
            ret: ret * 1_000_000,
            revision: None,
        }
    }
    fn get(c: usize, v: Option<&str>, t0: u64, t1: u64) -> Operation {
        op(c, Input::Get, Outcome::Read(v.map(String::from)), t0, t1)
    }
    fn put(c: usize, v: &str, t0: u64, t1: u64) -> Operation {
        op(c, Input::Put { value: v.into() }, Outcome::Written, t0, t1)
    }
    fn put_unknown(c: usize, v: &str, t0: u64) -> Operation {
        op(c, Input::Put { value: v.into() }, Outcome::Unknown, t0, 0)
    }
    fn cas(
        c: usize,
        expect: Option<&str>,
        v: &str,
        outcome: Outcome,
        t0: u64,
        t1: u64,
    ) -> Operation {
        let input = Input::Cas {
            expect: expect.map(String::from),
            value: v.into(),
        };
        op(c, input, outcome, t0, t1)
    }
    fn held(v: Option<&str>) -> Outcome {
        Outcome::NotSwapped {
            current: v.map(String::from),
        }
    }
    fn ok(ops: &[Operation]) -> bool {
        match check_key(ops) {
            Verdict::Linearizable => true,
            Verdict::Violation(r) => {
                eprintln!("{r}");
                false
            }
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn sequential_and_concurrent_histories_that_are_linearizable() {
        let cases: Vec<(&str, Vec<Operation>)> = vec![
            ("empty", vec![]),
            ("read of a missing key", vec![get(0, None, 0, 1)]),
            (
                "put then get",
                vec![put(0, "a", 0, 1), get(1, Some("a"), 2, 3)],
            ),
            (
                "concurrent puts in either order",
                vec![
                    put(0, "a", 0, 10),
                    put(1, "b", 1, 5),
                    get(2, Some("a"), 11, 12),
                    get(2, Some("a"), 13, 14),
                ],
            ),
            (
                "a read concurrent with a put sees the old value",
                vec![
                    put(0, "a", 0, 1),
                    put(0, "b", 2, 10),
                    get(1, Some("a"), 3, 4),
                ],
            ),
            (
                "a read concurrent with a put sees the new value",
                vec![
                    put(0, "a", 0, 1),
                    put(0, "b", 2, 10),
                    get(1, Some("b"), 3, 4),
                ],
            ),
            (
                "touching intervals count as concurrent",
                vec![put(0, "a", 0, 5), get(1, None, 5, 6)],
            ),
            (
                "cas chain",
                vec![
                    cas(0, None, "a", Outcome::Swapped, 0, 1),
                    cas(1, Some("a"), "b", Outcome::Swapped, 2, 3),
                    cas(0, Some("a"), "c", held(Some("b")), 4, 5),
                    get(1, Some("b"), 6, 7),
                ],
            ),
            (
                "concurrent cas: one wins, the other sees the winner",
                vec![
                    put(0, "a", 0, 1),
                    cas(1, Some("a"), "b", held(Some("c")), 2, 10),
                    cas(2, Some("a"), "c", Outcome::Swapped, 3, 9),
                ],
            ),
            (
                "an unknown put that took effect later",
                vec![
                    put(0, "a", 0, 1),
                    put_unknown(1, "b", 2),
                    get(0, Some("a"), 3, 4),
                    get(0, Some("b"), 100, 101),
                ],
            ),
            (
                "an unknown put that never took effect",
                vec![
                    put(0, "a", 0, 1),
                    put_unknown(1, "b", 2),
                    get(0, Some("a"), 100, 101),
                ],
            ),
            (
                "an unknown cas that took effect",
                vec![
                    put(0, "a", 0, 1),
                    cas(1, Some("a"), "b", Outcome::Unknown, 2, 0),
                    get(0, Some("b"), 50, 51),
                ],
            ),
            (
                "failed ops are ignored",
                vec![
                    put(0, "a", 0, 1),
                    op(1, Input::Put { value: "x".into() }, Outcome::Failed, 2, 3),
                    op(1, Input::Get, Outcome::Failed, 4, 5),
                    get(0, Some("a"), 6, 7),
                ],
            ),
        ];
        for (name, ops) in cases {
            assert!(ok(&ops), "{name}");
        }
    }

    #[test]
    fn histories_that_are_not_linearizable() {
        let cases: Vec<(&str, Vec<Operation>)> = vec![
            (
                "stale read: the write completed before the read began",
                vec![
                    put(0, "a", 0, 1),
                    put(0, "b", 2, 3),
                    get(1, Some("a"), 4, 5),
                ],
            ),
            (
                "lost write: an acknowledged put is never seen, the older value is",
                vec![
                    put(0, "a", 0, 1),
                    put(1, "b", 2, 3),
                    get(0, Some("b"), 4, 5),
                    get(0, Some("a"), 6, 7),
                ],
            ),
            (
                "lost write at the end: final reads miss an acknowledged put",
                vec![
                    put(0, "a", 0, 1),
                    put(1, "b", 2, 3),
                    get(2, Some("a"), 10, 11),
                ],
            ),
            (
                "cas saw an old value: it matched a value already overwritten",
                vec![
                    put(0, "a", 0, 1),
                    put(0, "b", 2, 3),
                    cas(1, Some("a"), "c", Outcome::Swapped, 4, 5),
                ],
            ),
            (
                "cas failed though the key held the expected value",
                vec![
                    put(0, "a", 0, 1),
                    cas(1, Some("a"), "c", held(Some("a")), 2, 3),
                ],
            ),
            (
                "cas reported a value that was already overwritten",
                vec![
                    put(0, "a", 0, 1),
                    put(0, "b", 2, 3),
                    cas(1, None, "c", held(Some("a")), 4, 5),
                ],
            ),
            (
                "a value read that was never written",
                vec![put(0, "a", 0, 1), get(1, Some("zz"), 2, 3)],
            ),
            (
                "reads go back in time across clients",
                vec![
                    put(0, "a", 0, 1),
                    put(0, "b", 2, 20),
                    get(1, Some("b"), 3, 4),
                    get(2, Some("a"), 5, 6),
                ],
            ),
            (
                "an unknown put cannot take effect before it was invoked",
                vec![
                    put(0, "a", 0, 1),
                    get(1, Some("b"), 2, 3),
                    put_unknown(2, "b", 4),
                ],
            ),
            (
                "two cas on the same expected value both swapped",
                vec![
                    put(0, "a", 0, 1),
                    cas(1, Some("a"), "b", Outcome::Swapped, 2, 10),
                    cas(2, Some("a"), "c", Outcome::Swapped, 2, 10),
                ],
            ),
        ];
        for (name, ops) in cases {
            assert!(!ok(&ops), "{name}");
        }
    }

    #[test]
    fn report_names_the_key_and_the_ops_around_the_violation() {
        let ops = vec![
            put(0, "a", 0, 1),
            put(1, "b", 2, 3),
            get(2, Some("a"), 4, 5),
            get(2, Some("b"), 6, 7),
        ];
        let Verdict::Violation(r) = check_key(&ops) else {
            panic!("linearizable?")
        };
        assert_eq!(r.key, "k");
        assert_eq!(r.prefix_len, 2);
        assert_eq!(r.state.as_deref(), Some("b"));
        assert_eq!(r.stuck, vec![ops[2].clone()]);
        let text = r.to_string();
        assert!(text.contains("key \"k\""), "{text}");
        assert!(text.contains("get() -> Some(\"a\")"), "{text}");
    }

    #[test]
    fn keys_are_checked_separately() {
        let mut other = put(0, "x", 0, 1);
        other.key = "j".into();
        let mut stale = get(1, None, 2, 3);
        stale.key = "j".into();
        let ops = vec![put(0, "a", 0, 1), get(1, Some("a"), 2, 3), other, stale];
        let bad = check(&ops);
        assert_eq!(bad.len(), 1);
        assert!(matches!(&bad[0], Verdict::Violation(r) if r.key == "j"));
    }

    #[test]
    fn rounds_of_concurrent_unknown_writes_stay_cheap() {
        // Twenty rounds: in each, six clients leave an unknown put and two more writes time
        // out unseen; reads then observe two of the six, one after the other.
        let mut ops = vec![put(0, "v0", 0, 1)];
        let mut last = String::from("v0");
        for round in 0..20u64 {
            let t = 10 + round * 100;
            for c in 0..6usize {
                ops.push(put_unknown(c, &format!("u{round}-{c}"), t + c as u64));
                ops.push(put_unknown(c, &format!("lost{round}-{c}"), t + 10));
            }
            ops.push(get(6, Some(&last), t, t + 1));
            for (i, c) in [4usize, 1].into_iter().enumerate() {
                last = format!("u{round}-{c}");
                ops.push(get(
                    7,
                    Some(&last),
                    t + 50 + 2 * i as u64,
                    t + 51 + 2 * i as u64,
                ));
            }
        }
        assert!(ok(&ops));
        // A read of the first round's value after all that is stale.
        ops.push(get(0, Some("u0-1"), 5000, 5001));
        assert!(!ok(&ops));
    }

    #[test]
    fn an_observed_unknown_put_took_effect_before_its_first_observer_returned() {
        let ops = vec![
            put(0, "a", 0, 1),
            put_unknown(1, "b", 2),
            get(2, Some("b"), 3, 4),
            put(0, "c", 5, 6),
            get(2, Some("c"), 7, 8),
        ];
        assert!(ok(&ops));
        // b cannot come back after c replaced it.
        let mut ops = ops;
        ops.push(get(2, Some("b"), 9, 10));
        assert!(!ok(&ops));
    }

    #[test]
    fn revisions_must_identify_values() {
        let mut a = get(0, Some("a"), 0, 1);
        a.revision = Some(5);
        let mut b = get(1, Some("b"), 2, 3);
        b.revision = Some(5);
        let mut w = put(0, "a", 0, 1);
        w.revision = Some(5);
        assert!(check_revisions(&[a.clone(), w]).is_empty());
        let errors = check_revisions(&[a, b]);
        assert_eq!(errors.len(), 1, "{errors:?}");
        let mut missing = get(0, None, 0, 1);
        missing.revision = Some(3);
        assert_eq!(check_revisions(&[missing]).len(), 1);
    }
}
