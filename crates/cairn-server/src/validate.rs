//! Checks a request before it is proposed, with etcd's errors: empty keys, sort options,
//! `ignore_value`/`ignore_lease` misuse, too many txn operations and duplicate keys in a txn.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound::{Excluded, Included, Unbounded};

use cairn_proto::etcdserverpb::{
    request_op::Request as Op, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use cairn_proto::EtcdError;

/// Checks a Range request. Like etcd 3.5, an unknown sort order or target is not an error
/// (the range is returned unsorted).
pub fn range(r: &RangeRequest) -> Result<(), EtcdError> {
    if r.key.is_empty() {
        return Err(EtcdError::EmptyKey);
    }
    Ok(())
}

/// Checks a Put request.
pub fn put(r: &PutRequest) -> Result<(), EtcdError> {
    if r.key.is_empty() {
        return Err(EtcdError::EmptyKey);
    }
    if r.ignore_value && !r.value.is_empty() {
        return Err(EtcdError::ValueProvided);
    }
    if r.ignore_lease && r.lease != 0 {
        return Err(EtcdError::LeaseProvided);
    }
    Ok(())
}

/// Checks a DeleteRange request.
pub fn delete_range(r: &DeleteRangeRequest) -> Result<(), EtcdError> {
    if r.key.is_empty() {
        return Err(EtcdError::EmptyKey);
    }
    Ok(())
}

/// Checks a Txn request: operation counts, every operation, then key overlaps per branch.
pub fn txn(r: &TxnRequest, max_txn_ops: usize) -> Result<(), EtcdError> {
    txn_ops(r, max_txn_ops)?;
    intervals(&r.success)?;
    intervals(&r.failure)?;
    Ok(())
}

fn txn_ops(r: &TxnRequest, max_txn_ops: usize) -> Result<(), EtcdError> {
    let widest = r.compare.len().max(r.success.len()).max(r.failure.len());
    if widest > max_txn_ops {
        return Err(EtcdError::TooManyOps);
    }
    if r.compare.iter().any(|c| c.key.is_empty()) {
        return Err(EtcdError::EmptyKey);
    }
    for op in r.success.iter().chain(&r.failure) {
        request_op(op, max_txn_ops - widest)?;
    }
    Ok(())
}

fn request_op(op: &RequestOp, max_txn_ops: usize) -> Result<(), EtcdError> {
    match &op.request {
        Some(Op::RequestRange(r)) => range(r),
        Some(Op::RequestPut(r)) => put(r),
        Some(Op::RequestDeleteRange(r)) => delete_range(r),
        Some(Op::RequestTxn(t)) => txn_ops(t, max_txn_ops),
        None => Err(EtcdError::KeyNotFound),
    }
}

/// The key ranges a branch deletes, merged into disjoint `[begin, end)` intervals (a single
/// deleted key `k` is `[k, k\0)`, the keys from `k` up to its immediate successor), so that
/// asking whether a key is deleted costs one lookup however many ranges there are.
#[derive(Default)]
struct Deleted(BTreeMap<Vec<u8>, Vec<u8>>);

impl Deleted {
    /// Adds `[begin, end)`, or the key `begin` when `end` is empty.
    fn insert(&mut self, begin: &[u8], end: &[u8]) {
        let mut begin = begin.to_vec();
        let mut end = if end.is_empty() {
            let mut next = begin.clone();
            next.push(0);
            next
        } else {
            end.to_vec()
        };
        if end <= begin {
            return;
        }
        // An interval that starts before `begin` and reaches it absorbs the new one.
        if let Some((b, e)) = self
            .0
            .range::<[u8], _>((Unbounded, Included(begin.as_slice())))
            .next_back()
        {
            if *e >= begin {
                begin = b.clone();
                end = end.max(e.clone());
            }
        }
        let inside: Vec<Vec<u8>> = self
            .0
            .range::<[u8], _>((Included(begin.as_slice()), Included(end.as_slice())))
            .map(|(b, _)| b.clone())
            .collect();
        for b in inside {
            if let Some(e) = self.0.remove(&b) {
                end = end.max(e);
            }
        }
        self.0.insert(begin, end);
    }

    fn contains(&self, key: &[u8]) -> bool {
        self.0
            .range::<[u8], _>((Unbounded, Included(key)))
            .next_back()
            .is_some_and(|(_, end)| key < end.as_slice())
    }

    /// Whether any of `keys` is deleted, probing from whichever side is smaller.
    fn covers_any(&self, keys: &BTreeSet<Vec<u8>>) -> bool {
        if keys.len() <= self.0.len() {
            keys.iter().any(|k| self.contains(k))
        } else {
            self.0.iter().any(|(b, e)| {
                keys.range::<[u8], _>((Included(b.as_slice()), Excluded(e.as_slice())))
                    .next()
                    .is_some()
            })
        }
    }

    /// Takes in `other`'s intervals, inserting the smaller set into the larger.
    fn absorb(&mut self, mut other: Deleted) {
        if other.0.len() > self.0.len() {
            std::mem::swap(self, &mut other);
        }
        for (b, e) in other.0 {
            self.insert(&b, &e);
        }
    }
}

/// Whether two key sets share a key, probing the larger with the smaller.
fn intersect(a: &BTreeSet<Vec<u8>>, b: &BTreeSet<Vec<u8>>) -> bool {
    let (small, large) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    small.iter().any(|k| large.contains(k))
}

/// Takes `other`'s keys into `into`, inserting the smaller set into the larger.
fn union(into: &mut BTreeSet<Vec<u8>>, mut other: BTreeSet<Vec<u8>>) {
    if other.len() > into.len() {
        std::mem::swap(into, &mut other);
    }
    into.extend(other);
}

/// Finds a key that one branch writes twice: two puts of the same key, or a put inside a
/// range the branch deletes (at its level or in a nested txn). A nested txn's success and
/// failure branches may put the same key, since only one of them runs. Returns the keys put
/// and the ranges deleted, for the enclosing level.
///
/// etcd's rules, in O(n log² n) for n operations at any depth: sets are merged smaller into
/// larger, and every check probes the larger side with the smaller.
fn intervals(ops: &[RequestOp]) -> Result<(BTreeSet<Vec<u8>>, Deleted), EtcdError> {
    let mut dels = Deleted::default();
    for op in ops {
        if let Some(Op::RequestDeleteRange(d)) = &op.request {
            dels.insert(&d.key, &d.range_end);
        }
    }
    let mut puts = BTreeSet::new();
    for op in ops {
        let Some(Op::RequestTxn(t)) = &op.request else {
            continue;
        };
        let (puts_then, dels_then) = intervals(&t.success)?;
        let (puts_else, dels_else) = intervals(&t.failure)?;
        // Either branch may run: each must fit with what this level has so far (the deletes
        // of this level and of the nested txns before this one), but not with the other.
        for branch in [&puts_then, &puts_else] {
            if intersect(&puts, branch) || dels.covers_any(branch) {
                return Err(EtcdError::DuplicateKey);
            }
        }
        union(&mut puts, puts_then);
        union(&mut puts, puts_else);
        dels.absorb(dels_then);
        dels.absorb(dels_else);
    }
    for op in ops {
        let Some(Op::RequestPut(p)) = &op.request else {
            continue;
        };
        if puts.contains(&p.key) || dels.contains(&p.key) {
            return Err(EtcdError::DuplicateKey);
        }
        puts.insert(p.key.clone());
    }
    Ok((puts, dels))
}

/// Whether any branch of the txn (at any depth) puts a key.
pub fn txn_has_put(t: &TxnRequest) -> bool {
    t.success
        .iter()
        .chain(&t.failure)
        .any(|op| match &op.request {
            Some(Op::RequestPut(_)) => true,
            Some(Op::RequestTxn(inner)) => txn_has_put(inner),
            _ => false,
        })
}

/// Whether the txn writes nothing at any depth, so it can be served without Raft.
pub fn txn_is_read_only(t: &TxnRequest) -> bool {
    t.success
        .iter()
        .chain(&t.failure)
        .all(|op| match &op.request {
            Some(Op::RequestRange(_)) => true,
            Some(Op::RequestTxn(inner)) => txn_is_read_only(inner),
            _ => false,
        })
}

/// Whether every operation of the txn is a serializable range (etcd's rule for serving a
/// read-only txn without a linearizable barrier).
pub fn txn_is_serializable(t: &TxnRequest) -> bool {
    t.success
        .iter()
        .chain(&t.failure)
        .all(|op| matches!(&op.request, Some(Op::RequestRange(r)) if r.serializable))
}

/// Bytes a put adds to the backend, as etcd's quota estimates it.
pub fn put_cost(p: &PutRequest) -> u64 {
    const KV_OVERHEAD: u64 = 256;
    KV_OVERHEAD + p.key.len() as u64 + p.value.len() as u64
}

/// Bytes a txn adds to the backend at most (its larger branch).
pub fn txn_cost(t: &TxnRequest) -> u64 {
    let branch = |ops: &[RequestOp]| -> u64 {
        ops.iter()
            .map(|op| match &op.request {
                Some(Op::RequestPut(p)) => put_cost(p),
                Some(Op::RequestTxn(inner)) => txn_cost(inner),
                _ => 0,
            })
            .sum()
    };
    branch(&t.success).max(branch(&t.failure))
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_proto::etcdserverpb::Compare;

    fn put_op(k: &str) -> RequestOp {
        RequestOp {
            request: Some(Op::RequestPut(PutRequest {
                key: k.into(),
                ..Default::default()
            })),
        }
    }
    fn del_op(k: &str, end: &str) -> RequestOp {
        RequestOp {
            request: Some(Op::RequestDeleteRange(DeleteRangeRequest {
                key: k.into(),
                range_end: end.into(),
                ..Default::default()
            })),
        }
    }
    fn txn_op(success: Vec<RequestOp>, failure: Vec<RequestOp>) -> RequestOp {
        RequestOp {
            request: Some(Op::RequestTxn(TxnRequest {
                compare: vec![],
                success,
                failure,
            })),
        }
    }
    fn check(success: Vec<RequestOp>) -> Result<(), EtcdError> {
        txn(
            &TxnRequest {
                compare: vec![],
                success,
                failure: vec![],
            },
            128,
        )
    }

    #[test]
    fn duplicate_keys_as_etcd_finds_them() {
        let table: Vec<(&str, Vec<RequestOp>, Result<(), EtcdError>)> = vec![
            (
                "two puts",
                vec![put_op("a"), put_op("a")],
                Err(EtcdError::DuplicateKey),
            ),
            ("distinct puts", vec![put_op("a"), put_op("b")], Ok(())),
            (
                "put in deleted range",
                vec![del_op("a", "c"), put_op("b")],
                Err(EtcdError::DuplicateKey),
            ),
            (
                "put past deleted range",
                vec![del_op("a", "c"), put_op("c")],
                Ok(()),
            ),
            (
                "put of deleted key",
                vec![put_op("a"), del_op("a", "")],
                Err(EtcdError::DuplicateKey),
            ),
            (
                "overlapping deletes",
                vec![del_op("a", "c"), del_op("b", "d")],
                Ok(()),
            ),
            (
                "nested then/else may share",
                vec![txn_op(vec![put_op("a")], vec![put_op("a")])],
                Ok(()),
            ),
            (
                "nested put clashes with outer put",
                vec![put_op("a"), txn_op(vec![put_op("a")], vec![])],
                Err(EtcdError::DuplicateKey),
            ),
            (
                "nested delete covers outer put",
                vec![put_op("b"), txn_op(vec![del_op("a", "c")], vec![])],
                Err(EtcdError::DuplicateKey),
            ),
        ];
        for (name, ops, want) in table {
            assert_eq!(check(ops), want, "{name}");
        }
    }

    #[test]
    fn too_many_ops_and_empty_keys() {
        let ops: Vec<RequestOp> = (0..129).map(|i| put_op(&format!("k{i}"))).collect();
        assert_eq!(check(ops), Err(EtcdError::TooManyOps));
        let t = TxnRequest {
            compare: vec![Compare::default()],
            success: vec![],
            failure: vec![],
        };
        assert_eq!(txn(&t, 128), Err(EtcdError::EmptyKey));
        assert_eq!(
            check(vec![RequestOp { request: None }]),
            Err(EtcdError::KeyNotFound)
        );
        assert_eq!(check(vec![put_op("")]), Err(EtcdError::EmptyKey));
    }

    #[test]
    fn put_flag_misuse() {
        let p = PutRequest {
            key: "k".into(),
            value: "v".into(),
            ignore_value: true,
            ..Default::default()
        };
        assert_eq!(put(&p), Err(EtcdError::ValueProvided));
        let p = PutRequest {
            key: "k".into(),
            lease: 5,
            ignore_lease: true,
            ..Default::default()
        };
        assert_eq!(put(&p), Err(EtcdError::LeaseProvided));
        let r = RangeRequest {
            key: "k".into(),
            sort_order: 7,
            ..Default::default()
        };
        assert_eq!(range(&r), Ok(()));
    }

    // The duplicate-key rules as first written, quadratic but plain: the model the fast
    // version is checked against.
    /// A deleted key range (model): `[begin, end)`, or the single key `begin` when `end` is empty.
    struct ModelDeleted {
        begin: Vec<u8>,
        end: Vec<u8>,
    }

    impl ModelDeleted {
        fn contains(&self, key: &[u8]) -> bool {
            if self.end.is_empty() {
                self.begin == key
            } else {
                self.begin.as_slice() <= key && key < self.end.as_slice()
            }
        }
    }

    /// Finds a key that one branch writes twice: two puts of the same key, or a put inside a
    /// range the branch deletes (at its level or in a nested txn). A nested txn's success and
    /// failure branches may put the same key, since only one of them runs. Returns the keys put
    /// and the ranges deleted, for the enclosing level.
    fn model(ops: &[RequestOp]) -> Result<(Vec<Vec<u8>>, Vec<ModelDeleted>), EtcdError> {
        let mut dels: Vec<ModelDeleted> = ops
            .iter()
            .filter_map(|op| match &op.request {
                Some(Op::RequestDeleteRange(d)) => Some(ModelDeleted {
                    begin: d.key.clone(),
                    end: d.range_end.clone(),
                }),
                _ => None,
            })
            .collect();
        let mut puts: Vec<Vec<u8>> = Vec::new();
        for op in ops {
            let Some(Op::RequestTxn(t)) = &op.request else {
                continue;
            };
            let (puts_then, dels_then) = model(&t.success)?;
            let (puts_else, dels_else) = model(&t.failure)?;
            for k in &puts_then {
                if puts.contains(k) || dels.iter().any(|d| d.contains(k)) {
                    return Err(EtcdError::DuplicateKey);
                }
                puts.push(k.clone());
            }
            for k in &puts_else {
                if puts.contains(k) && !puts_then.contains(k) {
                    return Err(EtcdError::DuplicateKey);
                }
                if dels.iter().any(|d| d.contains(k)) {
                    return Err(EtcdError::DuplicateKey);
                }
                if !puts.contains(k) {
                    puts.push(k.clone());
                }
            }
            dels.extend(dels_then);
            dels.extend(dels_else);
        }
        for op in ops {
            let Some(Op::RequestPut(p)) = &op.request else {
                continue;
            };
            if puts.contains(&p.key) || dels.iter().any(|d| d.contains(&p.key)) {
                return Err(EtcdError::DuplicateKey);
            }
            puts.push(p.key.clone());
        }
        Ok((puts, dels))
    }

    /// A random branch of at most `width` operations on keys `a`..`e`, nesting up to
    /// `depth` more levels.
    fn random_ops(rng: &mut u64, width: u64, depth: u32) -> Vec<RequestOp> {
        let mut next = |n: u64| {
            *rng ^= *rng << 13;
            *rng ^= *rng >> 7;
            *rng ^= *rng << 17;
            *rng % n
        };
        let key = |i: u64| ((b'a' + i as u8) as char).to_string();
        let len = next(width + 1);
        let mut ops = Vec::new();
        for _ in 0..len {
            let pick = next(if depth == 0 { 3 } else { 4 });
            ops.push(match pick {
                0 => put_op(&key(next(5))),
                1 => del_op(&key(next(5)), ""),
                2 => {
                    let (a, b) = (next(6), next(6));
                    del_op(&key(a), &key(b))
                }
                _ => {
                    let (w, d) = (next(width) + 1, depth - 1);
                    let mut seed = next(u64::MAX) | 1;
                    let then = random_ops(&mut seed, w, d);
                    let els = random_ops(&mut seed, w, d);
                    txn_op(then, els)
                }
            });
        }
        ops
    }

    #[test]
    fn the_fast_duplicate_check_agrees_with_the_model() {
        let mut rng = 0x2545_F491_4F6C_DD1D_u64;
        let (mut dups, mut oks) = (0, 0);
        for _ in 0..20_000 {
            let ops = random_ops(&mut rng, 4, 2);
            let want = model(&ops).map(|_| ());
            assert_eq!(intervals(&ops).map(|_| ()), want, "{ops:?}");
            if want.is_ok() {
                oks += 1;
            } else {
                dups += 1;
            }
        }
        // Both outcomes are well represented, so the agreement means something.
        assert!(
            dups > 2_000 && oks > 2_000,
            "{dups} duplicates, {oks} accepted"
        );
    }

    #[test]
    fn a_wide_nested_txn_is_checked_whole() {
        // 43 txns of 43 txns of 42 puts, every key distinct: accepted; one repeated key at
        // the bottom, under another branch: refused.
        let build = |repeat: bool| {
            let outer: Vec<RequestOp> = (0..43)
                .map(|i| {
                    let middle: Vec<RequestOp> = (0..43)
                        .map(|j| {
                            let puts = (0..42)
                                .map(|k| {
                                    let k = if repeat && i == 42 && j == 42 && k == 41 {
                                        "0/0/0".to_string()
                                    } else {
                                        format!("{i}/{j}/{k}")
                                    };
                                    put_op(&k)
                                })
                                .collect();
                            txn_op(puts, vec![])
                        })
                        .collect();
                    txn_op(middle, vec![])
                })
                .collect();
            outer
        };
        assert_eq!(check(build(false)), Ok(()));
        assert_eq!(check(build(true)), Err(EtcdError::DuplicateKey));
    }

    /// Flips, cuts and inserts a few random bytes of `b`.
    fn mutate(rng: &mut rand::rngs::StdRng, b: &mut Vec<u8>) {
        use rand::Rng;
        for _ in 0..rng.random_range(1..6) {
            if b.is_empty() {
                return;
            }
            let at = rng.random_range(0..b.len());
            match rng.random_range(0..3) {
                0 => b[at] ^= 1 << rng.random_range(0..8),
                1 => b.truncate(at),
                _ => b.insert(at, rng.random()),
            }
        }
    }

    #[test]
    fn validation_never_panics_and_valid_requests_pass_and_round_trip() {
        const ROUNDS: usize = 10_000;
        // Property test, seeded and bounded in count: requests decoded from random bytes and
        // from valid requests with bytes flipped, cut or inserted are checked without a
        // panic; requests valid by construction pass, and pass again after a trip through
        // their wire form, which gives them back unchanged. The same rounds every run (a
        // bound in time made the count, and the outcomes below, depend on the machine's load).
        use prost::Message;
        use rand::{Rng, RngCore, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x7a1d);
        let mut xorshift = 0x9e37_79b9_7f4a_7c15_u64;
        let (mut passed, mut refused) = (0, 0);
        for round in 0..ROUNDS {
            // Valid by construction: distinct keys, within the op limit (a nested txn's ops
            // count against what its parent leaves).
            let n = rng.random_range(1..=100);
            let valid = TxnRequest {
                compare: vec![Compare {
                    key: b"c".to_vec(),
                    ..Default::default()
                }],
                success: (0..n).map(|i| put_op(&format!("k{i}"))).collect(),
                failure: vec![del_op("a", "b"), txn_op(vec![put_op("x")], vec![])],
            };
            assert_eq!(txn(&valid, 128), Ok(()), "round {round}");
            let back = TxnRequest::decode(valid.encode_to_vec().as_slice()).unwrap();
            assert_eq!(back, valid);
            let p = PutRequest {
                key: vec![rng.random(); rng.random_range(1..64)],
                value: vec![rng.random(); rng.random_range(0..64)],
                lease: rng.random(),
                ..Default::default()
            };
            assert_eq!(put(&p), Ok(()));
            assert_eq!(PutRequest::decode(p.encode_to_vec().as_slice()).unwrap(), p);

            // Nested random txns (many refused for duplicate keys), mutated on the wire.
            let t = TxnRequest {
                success: random_ops(&mut xorshift, 4, 3),
                failure: random_ops(&mut xorshift, 4, 3),
                ..Default::default()
            };
            let mut wire = if rng.random_bool(0.8) {
                t.encode_to_vec()
            } else {
                let mut b = vec![0u8; rng.random_range(0..512)];
                rng.fill_bytes(&mut b);
                b
            };
            mutate(&mut rng, &mut wire);
            if let Ok(t) = TxnRequest::decode(wire.as_slice()) {
                match txn(&t, rng.random_range(0..16)) {
                    Ok(()) => passed += 1,
                    Err(_) => refused += 1,
                }
            }
            if let Ok(r) = RangeRequest::decode(wire.as_slice()) {
                let _ = range(&r);
            }
            if let Ok(p) = PutRequest::decode(wire.as_slice()) {
                let _ = put(&p);
            }
            if let Ok(d) = DeleteRangeRequest::decode(wire.as_slice()) {
                let _ = delete_range(&d);
            }
        }
        // Both outcomes came up, so the mutated inputs reached the checks.
        assert!(
            passed > 50 && refused > 50,
            "{passed} passed, {refused} refused"
        );
    }
}
