//! Transactions: compare evaluation, the pre-apply checks, and running the chosen branch.
//!
//! Every compare of a transaction, nested ones included, is evaluated against the state
//! before the transaction, and the result is kept as a [`TxnPath`]. The chosen branches are
//! then checked (puts' keys and leases, ranges' revisions) before anything is applied, so a
//! transaction that fails a check changes nothing.

use cairn_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use cairn_proto::etcdserverpb::request_op::Request;
use cairn_proto::etcdserverpb::response_op::Response;
use cairn_proto::etcdserverpb::{
    Compare, DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse, RangeRequest,
    RangeResponse, RequestOp, ResponseHeader, ResponseOp, TxnRequest, TxnResponse,
};
use cairn_proto::mvccpb::KeyValue;

use crate::error::MvccError;
use crate::key_index::KeyRange;
use crate::range::{range_keys, ReadView};
use crate::LeaseLookup;

/// Which branch each transaction took: this one's compare result, then one entry per
/// nested transaction of the chosen branch, in order.
#[derive(Debug)]
pub(crate) struct TxnPath {
    pub succeeded: bool,
    pub nested: Vec<TxnPath>,
}

fn branch(req: &TxnRequest, succeeded: bool) -> &[RequestOp] {
    if succeeded {
        &req.success
    } else {
        &req.failure
    }
}

/// Evaluates the compares of `req` and of the nested transactions it would run.
pub(crate) fn compare_to_path(view: &dyn ReadView, req: &TxnRequest) -> TxnPath {
    let succeeded = req.compare.iter().all(|c| apply_compare(view, c));
    let nested = branch(req, succeeded)
        .iter()
        .filter_map(|op| match &op.request {
            Some(Request::RequestTxn(t)) => Some(compare_to_path(view, t)),
            _ => None,
        })
        .collect();
    TxnPath { succeeded, nested }
}

fn apply_compare(view: &dyn ReadView, c: &Compare) -> bool {
    let range = KeyRange::new(&c.key, &c.range_end);
    let Ok(rr) = range_keys(view, range, 0, 0, false) else {
        return false;
    };
    if rr.kvs.is_empty() {
        // A missing key has no value to compare; other targets compare against zero.
        return c.target != CompareTarget::Value as i32 && compare_kv(c, &KeyValue::default());
    }
    rr.kvs.iter().all(|kv| compare_kv(c, kv))
}

fn compare_kv(c: &Compare, kv: &KeyValue) -> bool {
    use std::cmp::Ordering;
    let int = |have: i64, want: Option<i64>| have.cmp(&want.unwrap_or(0));
    let ord = match CompareTarget::try_from(c.target) {
        Ok(CompareTarget::Value) => {
            let want = match &c.target_union {
                Some(TargetUnion::Value(v)) => v.as_slice(),
                _ => &[],
            };
            kv.value.as_slice().cmp(want)
        }
        Ok(CompareTarget::Create) => int(
            kv.create_revision,
            match c.target_union {
                Some(TargetUnion::CreateRevision(r)) => Some(r),
                _ => None,
            },
        ),
        Ok(CompareTarget::Mod) => int(
            kv.mod_revision,
            match c.target_union {
                Some(TargetUnion::ModRevision(r)) => Some(r),
                _ => None,
            },
        ),
        Ok(CompareTarget::Version) => int(
            kv.version,
            match c.target_union {
                Some(TargetUnion::Version(v)) => Some(v),
                _ => None,
            },
        ),
        Ok(CompareTarget::Lease) => int(
            kv.lease,
            match c.target_union {
                Some(TargetUnion::Lease(l)) => Some(l),
                _ => None,
            },
        ),
        Err(_) => Ordering::Equal,
    };
    match CompareResult::try_from(c.result) {
        Ok(CompareResult::Equal) => ord == Ordering::Equal,
        Ok(CompareResult::NotEqual) => ord != Ordering::Equal,
        Ok(CompareResult::Greater) => ord == Ordering::Greater,
        Ok(CompareResult::Less) => ord == Ordering::Less,
        Err(_) => true,
    }
}

/// Whether `req` writes nothing in either branch, at any depth.
pub(crate) fn is_read_only(req: &TxnRequest) -> bool {
    req.success
        .iter()
        .chain(&req.failure)
        .all(|op| match &op.request {
            Some(Request::RequestPut(_)) | Some(Request::RequestDeleteRange(_)) => false,
            Some(Request::RequestTxn(t)) => is_read_only(t),
            _ => true,
        })
}

/// Visits the ops of the branches `path` chose, depth first.
fn for_each_chosen(
    req: &TxnRequest,
    path: &TxnPath,
    f: &mut dyn FnMut(&RequestOp) -> Result<(), MvccError>,
) -> Result<(), MvccError> {
    let mut nested = path.nested.iter();
    for op in branch(req, path.succeeded) {
        match &op.request {
            Some(Request::RequestTxn(t)) => {
                let p = nested.next().ok_or_else(path_mismatch)?;
                for_each_chosen(t, p, f)?;
            }
            _ => f(op)?,
        }
    }
    Ok(())
}

fn path_mismatch() -> MvccError {
    MvccError::Corrupt("transaction path does not match the request".into())
}

/// The checks etcd makes before applying a transaction: first every put (its key must
/// exist for `ignore_value`/`ignore_lease`, its lease must exist), then every range's
/// revision.
pub(crate) fn check_requests(
    view: &dyn ReadView,
    req: &TxnRequest,
    path: &TxnPath,
    leases: &dyn LeaseLookup,
) -> Result<(), MvccError> {
    if !is_read_only(req) {
        for_each_chosen(req, path, &mut |op| {
            let Some(Request::RequestPut(p)) = &op.request else {
                return Ok(());
            };
            if p.ignore_value || p.ignore_lease {
                let rr = range_keys(view, KeyRange::One(&p.key), 0, 0, false)?;
                if rr.kvs.is_empty() {
                    return Err(MvccError::KeyNotFound);
                }
            }
            if p.lease != 0 && !leases.exists(p.lease) {
                return Err(MvccError::LeaseNotFound);
            }
            Ok(())
        })?;
    }
    for_each_chosen(req, path, &mut |op| {
        let Some(Request::RequestRange(r)) = &op.request else {
            return Ok(());
        };
        if r.revision == 0 {
            Ok(())
        } else if r.revision > view.rev() {
            Err(MvccError::FutureRev)
        } else if r.revision < view.first_rev() {
            Err(MvccError::Compacted)
        } else {
            Ok(())
        }
    })
}

/// The operations a transaction's branch runs, against a batch or a read-only view.
pub(crate) trait TxnOps {
    fn range(&mut self, req: &RangeRequest) -> Result<RangeResponse, MvccError>;
    fn put(&mut self, req: &PutRequest) -> Result<PutResponse, MvccError>;
    fn delete_range(&mut self, req: &DeleteRangeRequest) -> Result<DeleteRangeResponse, MvccError>;
}

/// Runs the branch `path` chose. The response's header is left for the caller; nested
/// transactions get an all-zero header, as etcd sends them.
pub(crate) fn apply_txn(
    ops: &mut dyn TxnOps,
    req: &TxnRequest,
    path: &TxnPath,
) -> Result<TxnResponse, MvccError> {
    let reqs = branch(req, path.succeeded);
    let mut nested = path.nested.iter();
    let mut responses = Vec::with_capacity(reqs.len());
    for op in reqs {
        let response = match &op.request {
            Some(Request::RequestRange(r)) => Some(Response::ResponseRange(ops.range(r)?)),
            Some(Request::RequestPut(p)) => Some(Response::ResponsePut(ops.put(p)?)),
            Some(Request::RequestDeleteRange(d)) => {
                Some(Response::ResponseDeleteRange(ops.delete_range(d)?))
            }
            Some(Request::RequestTxn(t)) => {
                let p = nested.next().ok_or_else(path_mismatch)?;
                let mut resp = apply_txn(ops, t, p)?;
                resp.header = Some(ResponseHeader::default());
                Some(Response::ResponseTxn(resp))
            }
            None => None,
        };
        responses.push(ResponseOp { response });
    }
    Ok(TxnResponse {
        header: None,
        succeeded: path.succeeded,
        responses,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmp(target: CompareTarget, result: CompareResult, tu: Option<TargetUnion>) -> Compare {
        Compare {
            result: result as i32,
            target: target as i32,
            key: b"k".to_vec(),
            target_union: tu,
            range_end: Vec::new(),
        }
    }

    #[test]
    fn compare_kv_table() {
        let kv = KeyValue {
            key: b"k".to_vec(),
            create_revision: 2,
            mod_revision: 5,
            version: 3,
            value: b"m".to_vec(),
            lease: 7,
        };
        use CompareResult::*;
        use CompareTarget as T;
        let cases = [
            (cmp(T::Version, Equal, Some(TargetUnion::Version(3))), true),
            (
                cmp(T::Version, Greater, Some(TargetUnion::Version(2))),
                true,
            ),
            (cmp(T::Version, Less, Some(TargetUnion::Version(3))), false),
            (
                cmp(T::Create, NotEqual, Some(TargetUnion::CreateRevision(2))),
                false,
            ),
            (cmp(T::Mod, Less, Some(TargetUnion::ModRevision(6))), true),
            (
                cmp(T::Value, Greater, Some(TargetUnion::Value(b"a".to_vec()))),
                true,
            ),
            (
                cmp(T::Value, Equal, Some(TargetUnion::Value(b"m".to_vec()))),
                true,
            ),
            (cmp(T::Value, Greater, None), true),
            (cmp(T::Lease, Equal, Some(TargetUnion::Lease(7))), true),
            // A union of the wrong kind compares against zero.
            (cmp(T::Mod, Greater, Some(TargetUnion::Version(100))), true),
        ];
        for (c, want) in cases {
            assert_eq!(compare_kv(&c, &kv), want, "{c:?}");
        }
    }
}
