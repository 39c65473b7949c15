//! The applier's side of auth: the backend adapter for the auth store, the Auth requests
//! applied, and the re-check of every request against the auth state at its apply, as
//! etcd's auth applier does (`apply_auth.go`).
//!
//! The proposing member checked the caller already; checking again here, as the user and
//! at the auth revision the proposal names, enforces a permission revoked between the two
//! (the caller gets etcd 3.5.1's unmapped "auth: revision in header is old").

use std::time::Instant;

use cairn_auth::{Access, AuthBackend, AuthInfo, AuthStore, Bucket, SimpleTokens};
use cairn_mvcc::{ApplyBatch, RecordTable, Store};
use cairn_proto::cairnpb::{internal_request::Request, AuthHeader};
use cairn_proto::EtcdError;

use crate::lease::Leases;
use crate::proposal::ApplyResult;

/// The auth store's tables in the open apply batch.
pub struct AuthBatch<'b, 'a>(pub &'b mut ApplyBatch<'a>);

fn table(b: Bucket) -> RecordTable {
    match b {
        Bucket::Auth => RecordTable::Auth,
        Bucket::Users => RecordTable::AuthUsers,
        Bucket::Roles => RecordTable::AuthRoles,
    }
}

impl AuthBackend for AuthBatch<'_, '_> {
    fn put(&mut self, bucket: Bucket, key: &[u8], value: &[u8]) {
        self.0.put_record(table(bucket), key, value);
    }

    fn delete(&mut self, bucket: Bucket, key: &[u8]) {
        self.0.delete_record(table(bucket), key);
    }
}

/// Why the auth store could not be read from the backend.
#[derive(Debug, thiserror::Error)]
pub enum AuthLoadError {
    #[error(transparent)]
    Backend(#[from] cairn_mvcc::MvccError),
    #[error(transparent)]
    Records(#[from] cairn_auth::LoadError),
}

/// Loads the auth store from the backend's committed records.
pub fn load(auth: &AuthStore, store: &Store) -> Result<(), AuthLoadError> {
    let mut records = Vec::new();
    for bucket in Bucket::ALL {
        for (k, v) in store.records(table(bucket))? {
            records.push((bucket, k, v));
        }
    }
    auth.load(&records)?;
    Ok(())
}

/// The caller a proposal names, if any.
pub fn caller(h: Option<&AuthHeader>) -> Option<AuthInfo> {
    h.filter(|h| !h.username.is_empty()).map(|h| AuthInfo {
        user: h.username.clone(),
        revision: h.auth_revision,
    })
}

/// Whether applying `req` needs the root role, as etcd 3.5.1's `needAdminPermission` (which
/// includes AuthStatus).
fn needs_admin(req: &Request) -> bool {
    matches!(
        req,
        Request::AuthEnable(_)
            | Request::AuthDisable(_)
            | Request::AuthStatus(_)
            | Request::UserAdd(_)
            | Request::UserDelete(_)
            | Request::UserChangePassword(_)
            | Request::UserGrantRole(_)
            | Request::UserRevokeRole(_)
            | Request::RoleAdd(_)
            | Request::RoleGrantPermission(_)
            | Request::RoleRevokePermission(_)
            | Request::RoleDelete(_)
            | Request::UserList(_)
            | Request::RoleList(_)
    )
}

/// The writes a lease's revocation makes: its keys, each needing write permission. A put
/// attaching a key to a lease needs the same, as the lease's keys then go with it.
fn check_lease_keys(
    auth: &AuthStore,
    leases: &Leases,
    who: Option<&AuthInfo>,
    lease: i64,
) -> Result<(), EtcdError> {
    if lease == 0 || !auth.is_enabled() {
        return Ok(());
    }
    let Some(ttl) = leases.lessor.time_to_live(lease, true) else {
        return Ok(());
    };
    for key in &ttl.keys {
        auth.check(who, Access::Write, key, &[])?;
    }
    Ok(())
}

/// Checks a committed request as its caller, before it is applied.
pub fn check(
    auth: &AuthStore,
    leases: &Leases,
    who: Option<&AuthInfo>,
    req: &Request,
) -> Result<(), EtcdError> {
    if !auth.is_enabled() {
        return Ok(());
    }
    if needs_admin(req) {
        return auth.check_admin(who);
    }
    match req {
        Request::Put(p) => {
            auth.check(who, Access::Write, &p.key, &[])?;
            check_lease_keys(auth, leases, who, p.lease)?;
            if p.prev_kv {
                auth.check(who, Access::Read, &p.key, &[])?;
            }
            Ok(())
        }
        Request::DeleteRange(d) => auth.check_delete(who, d),
        Request::Txn(t) => auth.check_txn(who, t),
        Request::Range(r) => auth.check_range(who, r),
        Request::LeaseRevoke(r) => check_lease_keys(auth, leases, who, r.id),
        Request::UserGet(g) => match auth.check_admin(who) {
            Err(e) if who.is_none_or(|w| w.user != g.name) => Err(e),
            _ => Ok(()),
        },
        Request::RoleGet(g) => match auth.check_admin(who) {
            Err(e) if who.is_none_or(|w| !auth.has_role(&w.user, &g.role)) => Err(e),
            _ => Ok(()),
        },
        _ => Ok(()),
    }
}

/// Applies an Auth request; `None` for any other request.
pub fn apply(
    auth: &AuthStore,
    batch: &mut ApplyBatch<'_>,
    req: &Request,
    index: u64,
) -> Option<Result<ApplyResult, EtcdError>> {
    let b = &mut AuthBatch(batch);
    let done = |r: Result<(), EtcdError>| r.map(|()| ApplyResult::AuthDone);
    Some(match req {
        Request::AuthEnable(_) => done(auth.enable(b)),
        Request::AuthDisable(_) => {
            auth.disable(b);
            Ok(ApplyResult::AuthDone)
        }
        Request::AuthStatus(_) => Ok(ApplyResult::AuthStatus {
            enabled: auth.is_enabled(),
            revision: auth.revision(),
        }),
        Request::Authenticate(a) => {
            let token = SimpleTokens::token(&a.simple_token, index);
            auth.authenticate(&a.name, token, Instant::now())
                .map(ApplyResult::AuthToken)
        }
        Request::UserAdd(r) => done(auth.user_add(b, r)),
        Request::UserDelete(r) => done(auth.user_delete(b, &r.name)),
        Request::UserChangePassword(r) => done(auth.user_change_password(b, r)),
        Request::UserGrantRole(r) => done(auth.user_grant_role(b, &r.user, &r.role)),
        Request::UserRevokeRole(r) => done(auth.user_revoke_role(b, &r.name, &r.role)),
        Request::UserGet(r) => auth.user_get(&r.name).map(ApplyResult::Names),
        Request::UserList(_) => Ok(ApplyResult::Names(auth.user_list())),
        Request::RoleAdd(r) => done(auth.role_add(b, &r.name)),
        Request::RoleGet(r) => auth.role_get(&r.role).map(ApplyResult::Permissions),
        Request::RoleList(_) => Ok(ApplyResult::Names(auth.role_list())),
        Request::RoleDelete(r) => done(auth.role_delete(b, &r.role)),
        Request::RoleGrantPermission(r) => done(auth.role_grant_permission(b, r)),
        Request::RoleRevokePermission(r) => done(auth.role_revoke_permission(b, r)),
        _ => return None,
    })
}
