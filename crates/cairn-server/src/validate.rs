//! Checks a request before it is proposed, with etcd's errors: empty keys, sort options,
//! `ignore_value`/`ignore_lease` misuse, too many txn operations and duplicate keys in a txn.

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

/// A deleted key range: `[begin, end)`, or the single key `begin` when `end` is empty.
struct Deleted {
    begin: Vec<u8>,
    end: Vec<u8>,
}

impl Deleted {
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
fn intervals(ops: &[RequestOp]) -> Result<(Vec<Vec<u8>>, Vec<Deleted>), EtcdError> {
    let mut dels: Vec<Deleted> = ops
        .iter()
        .filter_map(|op| match &op.request {
            Some(Op::RequestDeleteRange(d)) => Some(Deleted {
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
        let (puts_then, dels_then) = intervals(&t.success)?;
        let (puts_else, dels_else) = intervals(&t.failure)?;
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
}
