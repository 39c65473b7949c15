//! Range reads: the store's revisioned read (etcd's `rangeKeys`) and the request-level
//! range on top of it (etcd's `executeRange`: limits, revision filters, sorting).

use cairn_proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use cairn_proto::etcdserverpb::{RangeRequest, RangeResponse, ResponseHeader};
use cairn_proto::mvccpb::KeyValue;

use crate::error::MvccError;
use crate::go_sort;
use crate::key_index::KeyRange;

/// A consistent view of the store at one revision, as reads inside an operation see it.
pub(crate) trait ReadView {
    /// The newest revision the view sees.
    fn rev(&self) -> i64;
    /// The compacted revision: reads before it fail.
    fn first_rev(&self) -> i64;
    /// Keys live at `at` in `range`: up to `limit` (all if `<= 0`) of them with their
    /// values unless `count_only`, and how many there are.
    fn read(
        &self,
        range: KeyRange<'_>,
        at: i64,
        limit: i64,
        count_only: bool,
    ) -> Result<(Vec<KeyValue>, i64), MvccError>;
}

/// The result of a revisioned read.
#[derive(Debug, Default)]
pub(crate) struct RangeResult {
    pub kvs: Vec<KeyValue>,
    pub count: i64,
    /// The view's revision (not the revision read at).
    pub rev: i64,
}

/// Reads `range` at `req_rev` (the view's revision if `<= 0`).
pub(crate) fn range_keys(
    view: &dyn ReadView,
    range: KeyRange<'_>,
    req_rev: i64,
    limit: i64,
    count_only: bool,
) -> Result<RangeResult, MvccError> {
    let cur = view.rev();
    let mut rev = req_rev;
    if rev > cur {
        return Err(MvccError::FutureRev);
    }
    if rev <= 0 {
        rev = cur;
    }
    if rev < view.first_rev() {
        return Err(MvccError::Compacted);
    }
    let (kvs, count) = view.read(range, rev, limit, count_only)?;
    Ok(RangeResult {
        kvs,
        count,
        rev: cur,
    })
}

/// Serves a range request from `view`.
pub(crate) fn execute_range(
    view: &dyn ReadView,
    req: &RangeRequest,
) -> Result<RangeResponse, MvccError> {
    let filtered = req.min_mod_revision != 0
        || req.max_mod_revision != 0
        || req.min_create_revision != 0
        || req.max_create_revision != 0;
    let mut limit = req.limit;
    if req.sort_order != SortOrder::None as i32 || filtered {
        limit = 0;
    }
    if limit > 0 {
        limit += 1;
    }
    let range = KeyRange::new(&req.key, &req.range_end);
    let rr = range_keys(view, range, req.revision, limit, req.count_only)?;
    let mut kvs = rr.kvs;
    if filtered {
        kvs.retain(|kv| {
            !(req.max_mod_revision != 0 && kv.mod_revision > req.max_mod_revision
                || req.min_mod_revision != 0 && kv.mod_revision < req.min_mod_revision
                || req.max_create_revision != 0 && kv.create_revision > req.max_create_revision
                || req.min_create_revision != 0 && kv.create_revision < req.min_create_revision)
        });
    }
    sort_kvs(&mut kvs, req.sort_target, req.sort_order);
    let mut more = false;
    if req.limit > 0 && kvs.len() as i64 > req.limit {
        kvs.truncate(req.limit as usize);
        more = true;
    }
    if req.keys_only {
        for kv in &mut kvs {
            kv.value = Vec::new();
        }
    }
    Ok(RangeResponse {
        header: Some(ResponseHeader {
            revision: rr.rev,
            ..Default::default()
        }),
        kvs,
        more,
        count: rr.count,
    })
}

/// Sorts as etcd does: a non-key target without an order sorts ascending; keys are already
/// in ascending order.
fn sort_kvs(kvs: &mut [KeyValue], target: i32, order: i32) {
    let mut order = SortOrder::try_from(order).ok();
    let target = SortTarget::try_from(target).ok();
    if target != Some(SortTarget::Key) && order == Some(SortOrder::None) {
        order = Some(SortOrder::Ascend);
    }
    let descend = match order {
        Some(SortOrder::Ascend) => false,
        Some(SortOrder::Descend) => true,
        _ => return,
    };
    let Some(target) = target else { return };
    if target == SortTarget::Key && !descend {
        return;
    }
    let less = |a: &KeyValue, b: &KeyValue| match target {
        SortTarget::Key => a.key < b.key,
        SortTarget::Version => a.version < b.version,
        SortTarget::Create => a.create_revision < b.create_revision,
        SortTarget::Mod => a.mod_revision < b.mod_revision,
        SortTarget::Value => a.value < b.value,
    };
    // etcd sorts with Go's unstable sort.Sort (and sort.Reverse for descending); ties
    // must land where Go leaves them.
    if descend {
        go_sort::sort(kvs, |a, b| less(b, a));
    } else {
        go_sort::sort(kvs, less);
    }
}
