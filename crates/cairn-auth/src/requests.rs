//! Which permissions each KV request needs, as etcd 3.5 decides them.
//!
//! - Range: read on its range.
//! - Put: write on its key; read on the key too when it asks for the previous value.
//! - DeleteRange: write on its range; read too with `prev_kv`.
//! - Txn: read on every compare's key (or range), then every operation of both branches,
//!   nested transactions included, each as above.

use cairn_proto::etcdserverpb::{
    request_op::Request as Op, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use cairn_proto::EtcdError;

use crate::perms::Access;
use crate::store::{AuthInfo, AuthStore};

impl AuthStore {
    pub fn check_range(&self, who: Option<&AuthInfo>, r: &RangeRequest) -> Result<(), EtcdError> {
        self.check(who, Access::Read, &r.key, &r.range_end)
    }

    pub fn check_put(&self, who: Option<&AuthInfo>, r: &PutRequest) -> Result<(), EtcdError> {
        self.check(who, Access::Write, &r.key, &[])?;
        if r.prev_kv {
            self.check(who, Access::Read, &r.key, &[])?;
        }
        Ok(())
    }

    pub fn check_delete(
        &self,
        who: Option<&AuthInfo>,
        r: &DeleteRangeRequest,
    ) -> Result<(), EtcdError> {
        self.check(who, Access::Write, &r.key, &r.range_end)?;
        if r.prev_kv {
            self.check(who, Access::Read, &r.key, &r.range_end)?;
        }
        Ok(())
    }

    pub fn check_txn(&self, who: Option<&AuthInfo>, t: &TxnRequest) -> Result<(), EtcdError> {
        for c in &t.compare {
            self.check(who, Access::Read, &c.key, &c.range_end)?;
        }
        self.check_ops(who, &t.success)?;
        self.check_ops(who, &t.failure)
    }

    fn check_ops(&self, who: Option<&AuthInfo>, ops: &[RequestOp]) -> Result<(), EtcdError> {
        for op in ops {
            match &op.request {
                Some(Op::RequestRange(r)) => self.check_range(who, r)?,
                Some(Op::RequestPut(p)) => self.check(who, Access::Write, &p.key, &[])?,
                Some(Op::RequestDeleteRange(d)) => self.check_delete(who, d)?,
                Some(Op::RequestTxn(t)) => self.check_txn(who, t)?,
                None => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AuthBackend;
    use crate::Bucket;
    use cairn_proto::authpb::{permission::Type, Permission};
    use cairn_proto::etcdserverpb::{AuthRoleGrantPermissionRequest, AuthUserAddRequest, Compare};
    use std::time::Duration;

    struct Nowhere;
    impl AuthBackend for Nowhere {
        fn put(&mut self, _: Bucket, _: &[u8], _: &[u8]) {}
        fn delete(&mut self, _: Bucket, _: &[u8]) {}
    }

    /// A store with auth on, a root user and `u` who may read `r/` and write `w/`.
    fn store() -> AuthStore {
        let a = AuthStore::new(Duration::from_secs(60));
        let b = &mut Nowhere;
        for name in ["root", "u"] {
            a.user_add(
                b,
                &AuthUserAddRequest {
                    name: name.into(),
                    hashed_password: "h".into(),
                    ..Default::default()
                },
            )
            .unwrap();
        }
        a.user_grant_role(b, "root", "root").unwrap();
        a.role_add(b, "ru").unwrap();
        for (t, key, end) in [(Type::Read, "r/", "r0"), (Type::Write, "w/", "w0")] {
            a.role_grant_permission(
                b,
                &AuthRoleGrantPermissionRequest {
                    name: "ru".into(),
                    perm: Some(Permission {
                        perm_type: t as i32,
                        key: key.into(),
                        range_end: end.into(),
                    }),
                },
            )
            .unwrap();
        }
        a.user_grant_role(b, "u", "ru").unwrap();
        a.enable(b).unwrap();
        a
    }

    fn put(key: &str, prev_kv: bool) -> PutRequest {
        PutRequest {
            key: key.into(),
            prev_kv,
            ..Default::default()
        }
    }

    fn op(r: Op) -> RequestOp {
        RequestOp { request: Some(r) }
    }

    #[test]
    fn each_request_needs_what_etcd_checks() {
        let a = store();
        let u = AuthInfo {
            user: "u".into(),
            revision: a.revision(),
        };
        let who = Some(&u);
        let denied = Err(EtcdError::PermissionDenied);
        assert_eq!(a.check_put(who, &put("w/1", false)), Ok(()));
        assert_eq!(a.check_put(who, &put("w/1", true)), denied, "prev_kv reads");
        assert_eq!(a.check_put(who, &put("r/1", false)), denied);
        let del = |key: &str, end: &str, prev_kv| DeleteRangeRequest {
            key: key.into(),
            range_end: end.into(),
            prev_kv,
        };
        assert_eq!(a.check_delete(who, &del("w/", "w0", false)), Ok(()));
        assert_eq!(a.check_delete(who, &del("w/", "w0", true)), denied);
        assert_eq!(a.check_delete(who, &del("w/", "x", false)), denied);
        let range = |key: &str| RangeRequest {
            key: key.into(),
            ..Default::default()
        };
        assert_eq!(a.check_range(who, &range("r/a")), Ok(()));
        assert_eq!(a.check_range(who, &range("w/a")), denied);

        let txn = |compare: &str, success: Vec<RequestOp>, failure: Vec<RequestOp>| TxnRequest {
            compare: vec![Compare {
                key: compare.into(),
                ..Default::default()
            }],
            success,
            failure,
        };
        let ok = txn(
            "r/x",
            vec![op(Op::RequestPut(put("w/1", false)))],
            vec![op(Op::RequestRange(range("r/2")))],
        );
        assert_eq!(a.check_txn(who, &ok), Ok(()));
        assert_eq!(a.check_txn(who, &txn("w/x", vec![], vec![])), denied);
        let bad_failure = txn("r/x", vec![], vec![op(Op::RequestPut(put("r/1", false)))]);
        assert_eq!(a.check_txn(who, &bad_failure), denied, "both branches");
        let nested = txn(
            "r/x",
            vec![op(Op::RequestTxn(txn(
                "r/y",
                vec![op(Op::RequestPut(put("elsewhere", false)))],
                vec![],
            )))],
            vec![],
        );
        assert_eq!(a.check_txn(who, &nested), denied, "nested txns");
        let root = AuthInfo {
            user: "root".into(),
            revision: a.revision(),
        };
        assert_eq!(a.check_txn(Some(&root), &nested), Ok(()));
        assert_eq!(a.check_txn(None, &ok), Err(EtcdError::UserEmpty));
    }
}
