//! The auth store: users, roles, the enabled flag and the auth revision, changed as etcd
//! 3.5 applies each Auth request, and the permission checks every request goes through.
//!
//! The auth revision counts changes to users, roles and permissions, and disabling auth
//! (enabling does not count); it starts at 1. A caller's permission is checked against the
//! revision its credentials were resolved at: if the store changed since, the request gets
//! etcd 3.5.1's "auth: revision in header is old" (code Unknown; etcd's table has
//! "etcdserver: revision of auth store is old", which 3.5.1 never sends) and the client
//! authenticates again.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_proto::authpb::{permission::Type, Permission, Role, User};
use cairn_proto::etcdserverpb::{
    AuthRoleGrantPermissionRequest, AuthRoleRevokePermissionRequest, AuthUserAddRequest,
    AuthUserChangePasswordRequest,
};
use cairn_proto::EtcdError;
use parking_lot::RwLock;
use prost::Message;

use crate::jwt::JwtTokens;
use crate::perms::{Access, UserPerms};
use crate::simple_token::SimpleTokens;
use crate::{AuthBackend, Bucket, ENABLED_KEY, REVISION_KEY};

/// The user `auth enable` requires.
pub const ROOT_USER: &str = "root";
/// The role that may do everything.
pub const ROOT_ROLE: &str = "root";

/// Who is asking, and at which auth revision that was established.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuthInfo {
    pub user: String,
    pub revision: u64,
}

/// A backend record that does not decode.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("malformed auth record {bucket}/{key}: {why}")]
    Malformed {
        bucket: &'static str,
        key: String,
        why: String,
    },
}

#[derive(Default)]
struct State {
    enabled: bool,
    revision: u64,
    users: BTreeMap<String, User>,
    roles: BTreeMap<String, Role>,
    /// Each user's merged permissions, rebuilt after every change (the range cache).
    perms: HashMap<String, Arc<UserPerms>>,
}

/// The auth store of one member. See the module docs.
pub struct AuthStore {
    /// Protects the users, roles, flag, revision and range cache. Held for map reads and
    /// the applier's changes, never across hashing or I/O.
    state: RwLock<State>,
    tokens: SimpleTokens,
    /// With `--auth-token jwt,...`: Authenticate signs JWTs, and tokens are verified
    /// instead of looked up.
    jwt: Option<JwtTokens>,
}

fn user_name(u: &User) -> String {
    String::from_utf8_lossy(&u.name).into_owned()
}

fn has_root_role(u: &User) -> bool {
    u.roles.iter().any(|r| r == ROOT_ROLE)
}

/// etcd's rule for a permission's range: a key, and an end after it or `"\0"`.
fn valid_permission_range(key: &[u8], range_end: &[u8]) -> bool {
    !key.is_empty() && (range_end.is_empty() || key < range_end || range_end == [0])
}

impl State {
    fn rebuild_perms(&mut self) {
        let roles = &self.roles;
        self.perms = self
            .users
            .iter()
            .map(|(name, u)| {
                let merged = UserPerms::merge(u.roles.iter().filter_map(|r| roles.get(r)));
                (name.clone(), Arc::new(merged))
            })
            .collect();
    }

    fn commit_revision(&mut self, b: &mut dyn AuthBackend) {
        self.revision += 1;
        b.put(Bucket::Auth, REVISION_KEY, &self.revision.to_be_bytes());
    }

    fn put_user(b: &mut dyn AuthBackend, u: &User) {
        b.put(Bucket::Users, &u.name, &u.encode_to_vec());
    }

    fn put_role(b: &mut dyn AuthBackend, r: &Role) {
        b.put(Bucket::Roles, &r.name, &r.encode_to_vec());
    }
}

impl AuthStore {
    /// An empty store (auth disabled, revision 1) whose simple tokens live `token_ttl`.
    pub fn new(token_ttl: Duration) -> AuthStore {
        AuthStore {
            state: RwLock::new(State {
                revision: 1,
                ..State::default()
            }),
            tokens: SimpleTokens::new(token_ttl),
            jwt: None,
        }
    }

    /// An empty store that issues and accepts JWTs.
    pub fn with_jwt(jwt: JwtTokens) -> AuthStore {
        AuthStore {
            jwt: Some(jwt),
            ..AuthStore::new(Duration::from_secs(300))
        }
    }

    /// Who a token names: a JWT's user and revision, or a simple token's user at the
    /// current revision. `None` for a token this member does not accept.
    pub fn token_info(&self, token: &str, now: Instant) -> Option<AuthInfo> {
        match &self.jwt {
            Some(jwt) => jwt.verify(token),
            None => self.simple_token_info(token, now),
        }
    }

    /// Whether tokens are JWTs.
    pub fn uses_jwt(&self) -> bool {
        self.jwt.is_some()
    }

    /// Replaces the state with the backend's records: `(bucket, key, value)` of all three
    /// tables (at start, and when a Raft snapshot is installed). Simple tokens already
    /// assigned are kept, as etcd keeps them across a snapshot install: a token of a user
    /// the snapshot no longer has is refused by every permission check.
    pub fn load(&self, records: &[(Bucket, Vec<u8>, Vec<u8>)]) -> Result<(), LoadError> {
        let mut s = State {
            revision: 1,
            ..State::default()
        };
        let malformed = |bucket: Bucket, key: &[u8], why: String| LoadError::Malformed {
            bucket: bucket.name(),
            key: String::from_utf8_lossy(key).into_owned(),
            why,
        };
        for (bucket, key, value) in records {
            match bucket {
                Bucket::Auth if key == ENABLED_KEY => s.enabled = value.first() == Some(&1),
                Bucket::Auth if key == REVISION_KEY => {
                    let bytes: [u8; 8] = value
                        .as_slice()
                        .try_into()
                        .map_err(|_| malformed(*bucket, key, "not 8 bytes".into()))?;
                    s.revision = u64::from_be_bytes(bytes);
                }
                Bucket::Auth => {}
                Bucket::Users => {
                    let u = User::decode(value.as_slice())
                        .map_err(|e| malformed(*bucket, key, e.to_string()))?;
                    s.users.insert(user_name(&u), u);
                }
                Bucket::Roles => {
                    let r = Role::decode(value.as_slice())
                        .map_err(|e| malformed(*bucket, key, e.to_string()))?;
                    s.roles
                        .insert(String::from_utf8_lossy(&r.name).into_owned(), r);
                }
            }
        }
        s.rebuild_perms();
        *self.state.write() = s;
        Ok(())
    }

    pub fn is_enabled(&self) -> bool {
        self.state.read().enabled
    }

    /// The current auth revision.
    pub fn revision(&self) -> u64 {
        self.state.read().revision
    }

    /// The simple tokens this member knows.
    pub fn tokens(&self) -> &SimpleTokens {
        &self.tokens
    }

    /// Who a simple token names, with the current revision; `None` for an unknown or
    /// expired token.
    pub fn simple_token_info(&self, token: &str, now: Instant) -> Option<AuthInfo> {
        let user = self.tokens.user(token, now)?;
        Some(AuthInfo {
            user,
            revision: self.revision(),
        })
    }

    /// Who a verified client certificate names: its CN at the current revision.
    pub fn cert_info(&self, common_name: &str) -> AuthInfo {
        AuthInfo {
            user: common_name.to_string(),
            revision: self.revision(),
        }
    }

    /// The stored bcrypt hash of `name`, for a password check, with the revision it was
    /// read at; etcd's errors when auth is off, the user is unknown or has no password.
    pub fn password_hash(&self, name: &str) -> Result<(Vec<u8>, u64), EtcdError> {
        let s = self.state.read();
        if !s.enabled {
            return Err(EtcdError::AuthNotEnabled);
        }
        let u = s.users.get(name).ok_or(EtcdError::AuthFailed)?;
        if u.options.as_ref().is_some_and(|o| o.no_password) {
            return Err(EtcdError::NoPasswordUser);
        }
        Ok((u.password.clone(), s.revision))
    }

    /// etcd's permission check of one key or range (`isOpPermitted`).
    pub fn check(
        &self,
        who: Option<&AuthInfo>,
        access: Access,
        key: &[u8],
        range_end: &[u8],
    ) -> Result<(), EtcdError> {
        let s = self.state.read();
        if !s.enabled {
            return Ok(());
        }
        let who = who.ok_or(EtcdError::UserEmpty)?;
        if who.revision < s.revision {
            return Err(EtcdError::AuthRevisionInHeaderOld);
        }
        let u = s.users.get(&who.user).ok_or(EtcdError::PermissionDenied)?;
        if has_root_role(u) {
            return Ok(());
        }
        match s.perms.get(&who.user) {
            Some(p) if p.allows(access, key, range_end) => Ok(()),
            _ => Err(EtcdError::PermissionDenied),
        }
    }

    /// etcd's check of an admin request (`IsAdminPermitted`): the user must hold the root
    /// role.
    pub fn check_admin(&self, who: Option<&AuthInfo>) -> Result<(), EtcdError> {
        let s = self.state.read();
        if !s.enabled {
            return Ok(());
        }
        let who = who
            .filter(|w| !w.user.is_empty())
            .ok_or(EtcdError::UserEmpty)?;
        let u = s.users.get(&who.user).ok_or(EtcdError::UserNotFound)?;
        if !has_root_role(u) {
            return Err(EtcdError::PermissionDenied);
        }
        Ok(())
    }

    /// Whether `user` holds `role`.
    pub fn has_role(&self, user: &str, role: &str) -> bool {
        self.state
            .read()
            .users
            .get(user)
            .is_some_and(|u| u.roles.iter().any(|r| r == role))
    }
}

/// The changes, as etcd's auth store applies them. Each runs on the apply thread with the
/// batch's backend; an error changes nothing.
impl AuthStore {
    pub fn enable(&self, b: &mut dyn AuthBackend) -> Result<(), EtcdError> {
        let mut s = self.state.write();
        if s.enabled {
            return Ok(());
        }
        let root = s.users.get(ROOT_USER).ok_or(EtcdError::RootUserNotExist)?;
        if !has_root_role(root) {
            return Err(EtcdError::RootRoleNotExist);
        }
        s.enabled = true;
        b.put(Bucket::Auth, ENABLED_KEY, &[1]);
        s.rebuild_perms();
        Ok(())
    }

    /// Disables auth; this counts as a change of the auth revision, as in etcd.
    pub fn disable(&self, b: &mut dyn AuthBackend) {
        let mut s = self.state.write();
        if !s.enabled {
            return;
        }
        s.enabled = false;
        b.put(Bucket::Auth, ENABLED_KEY, &[0]);
        s.commit_revision(b);
        self.tokens.clear();
    }

    /// Assigns the simple token an Authenticate entry carries (or, with JWTs, signs one at
    /// the current revision); etcd's errors if the user cannot log in (any more).
    pub fn authenticate(
        &self,
        name: &str,
        token: String,
        now: Instant,
    ) -> Result<String, EtcdError> {
        let s = self.state.read();
        if !s.enabled {
            return Err(EtcdError::AuthNotEnabled);
        }
        let u = s.users.get(name).ok_or(EtcdError::AuthFailed)?;
        if u.options.as_ref().is_some_and(|o| o.no_password) {
            return Err(EtcdError::AuthFailed);
        }
        if let Some(jwt) = &self.jwt {
            return jwt
                .sign(name, s.revision)
                .map_err(|_| EtcdError::JwtVerifyOnly);
        }
        self.tokens.assign(token.clone(), name, now);
        Ok(token)
    }

    /// Adds a user; the request carries the bcrypt hash made before proposing.
    pub fn user_add(
        &self,
        b: &mut dyn AuthBackend,
        r: &AuthUserAddRequest,
    ) -> Result<(), EtcdError> {
        if r.name.is_empty() {
            return Err(EtcdError::UserEmpty);
        }
        let mut s = self.state.write();
        if s.users.contains_key(&r.name) {
            return Err(EtcdError::UserAlreadyExist);
        }
        let no_password = r.options.as_ref().is_some_and(|o| o.no_password);
        let u = User {
            name: r.name.as_bytes().to_vec(),
            password: if no_password {
                Vec::new()
            } else {
                r.hashed_password.as_bytes().to_vec()
            },
            roles: Vec::new(),
            options: r.options,
        };
        State::put_user(b, &u);
        s.users.insert(r.name.clone(), u);
        s.commit_revision(b);
        s.rebuild_perms();
        Ok(())
    }

    pub fn user_delete(&self, b: &mut dyn AuthBackend, name: &str) -> Result<(), EtcdError> {
        let mut s = self.state.write();
        if s.enabled && name == ROOT_USER {
            return Err(EtcdError::InvalidAuthMgmt);
        }
        if s.users.remove(name).is_none() {
            return Err(EtcdError::UserNotFound);
        }
        b.delete(Bucket::Users, name.as_bytes());
        s.commit_revision(b);
        s.rebuild_perms();
        self.tokens.invalidate_user(name);
        Ok(())
    }

    pub fn user_change_password(
        &self,
        b: &mut dyn AuthBackend,
        r: &AuthUserChangePasswordRequest,
    ) -> Result<(), EtcdError> {
        let mut s = self.state.write();
        let u = s.users.get_mut(&r.name).ok_or(EtcdError::UserNotFound)?;
        u.password = r.hashed_password.as_bytes().to_vec();
        State::put_user(b, u);
        s.commit_revision(b);
        self.tokens.invalidate_user(&r.name);
        Ok(())
    }

    pub fn user_grant_role(
        &self,
        b: &mut dyn AuthBackend,
        user: &str,
        role: &str,
    ) -> Result<(), EtcdError> {
        let mut s = self.state.write();
        if !s.users.contains_key(user) {
            return Err(EtcdError::UserNotFound);
        }
        if role != ROOT_ROLE && !s.roles.contains_key(role) {
            return Err(EtcdError::RoleNotFound);
        }
        let Some(u) = s.users.get_mut(user) else {
            return Err(EtcdError::UserNotFound);
        };
        let at = match u.roles.binary_search_by(|r| r.as_str().cmp(role)) {
            Ok(_) => return Ok(()),
            Err(at) => at,
        };
        u.roles.insert(at, role.to_string());
        State::put_user(b, u);
        s.commit_revision(b);
        s.rebuild_perms();
        Ok(())
    }

    pub fn user_revoke_role(
        &self,
        b: &mut dyn AuthBackend,
        user: &str,
        role: &str,
    ) -> Result<(), EtcdError> {
        let mut s = self.state.write();
        if s.enabled && user == ROOT_USER && role == ROOT_ROLE {
            return Err(EtcdError::InvalidAuthMgmt);
        }
        let u = s.users.get_mut(user).ok_or(EtcdError::UserNotFound)?;
        let before = u.roles.len();
        u.roles.retain(|r| r != role);
        if u.roles.len() == before {
            return Err(EtcdError::RoleNotGranted);
        }
        State::put_user(b, u);
        s.commit_revision(b);
        s.rebuild_perms();
        Ok(())
    }

    /// A user's roles.
    pub fn user_get(&self, name: &str) -> Result<Vec<String>, EtcdError> {
        let s = self.state.read();
        let u = s.users.get(name).ok_or(EtcdError::UserNotFound)?;
        Ok(u.roles.clone())
    }

    /// Every user name, sorted.
    pub fn user_list(&self) -> Vec<String> {
        self.state.read().users.keys().cloned().collect()
    }

    pub fn role_add(&self, b: &mut dyn AuthBackend, name: &str) -> Result<(), EtcdError> {
        if name.is_empty() {
            return Err(EtcdError::RoleEmpty);
        }
        let mut s = self.state.write();
        if s.roles.contains_key(name) {
            return Err(EtcdError::RoleAlreadyExist);
        }
        let r = Role {
            name: name.as_bytes().to_vec(),
            key_permission: Vec::new(),
        };
        State::put_role(b, &r);
        s.roles.insert(name.to_string(), r);
        s.commit_revision(b);
        Ok(())
    }

    /// A role's permissions; the root role's is every key, read and write, as etcd shows it.
    pub fn role_get(&self, name: &str) -> Result<Vec<Permission>, EtcdError> {
        let s = self.state.read();
        let r = s.roles.get(name).ok_or(EtcdError::RoleNotFound)?;
        if name == ROOT_ROLE {
            return Ok(vec![Permission {
                perm_type: Type::Readwrite as i32,
                key: Vec::new(),
                range_end: vec![0],
            }]);
        }
        Ok(r.key_permission.clone())
    }

    /// Every role name, sorted.
    pub fn role_list(&self) -> Vec<String> {
        self.state.read().roles.keys().cloned().collect()
    }

    /// Deletes a role and takes it from every user who holds it.
    pub fn role_delete(&self, b: &mut dyn AuthBackend, name: &str) -> Result<(), EtcdError> {
        let mut s = self.state.write();
        if s.enabled && name == ROOT_ROLE {
            return Err(EtcdError::InvalidAuthMgmt);
        }
        if s.roles.remove(name).is_none() {
            return Err(EtcdError::RoleNotFound);
        }
        b.delete(Bucket::Roles, name.as_bytes());
        for u in s.users.values_mut() {
            let before = u.roles.len();
            u.roles.retain(|r| r != name);
            if u.roles.len() != before {
                State::put_user(b, u);
            }
        }
        s.commit_revision(b);
        s.rebuild_perms();
        Ok(())
    }

    pub fn role_grant_permission(
        &self,
        b: &mut dyn AuthBackend,
        r: &AuthRoleGrantPermissionRequest,
    ) -> Result<(), EtcdError> {
        let perm = r.perm.as_ref().ok_or(EtcdError::PermissionNotGiven)?;
        if !valid_permission_range(&perm.key, &perm.range_end) {
            return Err(EtcdError::InvalidAuthMgmt);
        }
        let mut s = self.state.write();
        let role = s.roles.get_mut(&r.name).ok_or(EtcdError::RoleNotFound)?;
        let at = role
            .key_permission
            .partition_point(|p| p.key.as_slice() < perm.key.as_slice());
        match role.key_permission.get_mut(at) {
            Some(p) if p.key == perm.key && p.range_end == perm.range_end => {
                p.perm_type = perm.perm_type;
            }
            _ => role.key_permission.insert(at, perm.clone()),
        }
        State::put_role(b, role);
        s.commit_revision(b);
        s.rebuild_perms();
        Ok(())
    }

    pub fn role_revoke_permission(
        &self,
        b: &mut dyn AuthBackend,
        r: &AuthRoleRevokePermissionRequest,
    ) -> Result<(), EtcdError> {
        let mut s = self.state.write();
        let role = s.roles.get_mut(&r.role).ok_or(EtcdError::RoleNotFound)?;
        let at = role
            .key_permission
            .iter()
            .position(|p| p.key == r.key && p.range_end == r.range_end)
            .ok_or(EtcdError::PermissionNotGranted)?;
        role.key_permission.remove(at);
        State::put_role(b, role);
        s.commit_revision(b);
        s.rebuild_perms();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_proto::authpb::UserAddOptions;

    type Tables = BTreeMap<(&'static str, Vec<u8>), (Bucket, Vec<u8>)>;

    /// A backend that keeps the tables in maps, as the real one would after commit.
    #[derive(Default)]
    struct Mem {
        tables: Tables,
    }

    impl AuthBackend for Mem {
        fn put(&mut self, bucket: Bucket, key: &[u8], value: &[u8]) {
            self.tables
                .insert((bucket.name(), key.to_vec()), (bucket, value.to_vec()));
        }
        fn delete(&mut self, bucket: Bucket, key: &[u8]) {
            self.tables.remove(&(bucket.name(), key.to_vec()));
        }
    }

    impl Mem {
        fn records(&self) -> Vec<(Bucket, Vec<u8>, Vec<u8>)> {
            self.tables
                .iter()
                .map(|((_, k), (b, v))| (*b, k.clone(), v.clone()))
                .collect()
        }
    }

    fn add_user(a: &AuthStore, b: &mut Mem, name: &str) {
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

    fn grant(a: &AuthStore, b: &mut Mem, role: &str, t: Type, key: &str, end: &[u8]) {
        a.role_grant_permission(
            b,
            &AuthRoleGrantPermissionRequest {
                name: role.into(),
                perm: Some(Permission {
                    perm_type: t as i32,
                    key: key.into(),
                    range_end: end.to_vec(),
                }),
            },
        )
        .unwrap();
    }

    fn info(a: &AuthStore, user: &str) -> AuthInfo {
        AuthInfo {
            user: user.into(),
            revision: a.revision(),
        }
    }

    #[test]
    fn jwts_carry_the_revision_they_were_signed_at() {
        let jwt = JwtTokens::new("HS256", None, Some(b"secret"), Duration::from_secs(60)).unwrap();
        let a = AuthStore::with_jwt(jwt);
        let mut b = Mem::default();
        add_user(&a, &mut b, "root");
        a.user_grant_role(&mut b, "root", "root").unwrap();
        a.enable(&mut b).unwrap();
        let t0 = Instant::now();
        let token = a.authenticate("root", String::new(), t0).unwrap();
        let who = a.token_info(&token, t0).unwrap();
        assert_eq!(who, info(&a, "root"));
        assert_eq!(a.check(Some(&who), Access::Write, b"k", b""), Ok(()));
        add_user(&a, &mut b, "u");
        // Any auth change makes older tokens old.
        let who = a.token_info(&token, t0).unwrap();
        assert_eq!(
            a.check(Some(&who), Access::Write, b"k", b""),
            Err(EtcdError::AuthRevisionInHeaderOld)
        );
        assert!(a.token_info("nope", t0).is_none());
    }

    #[test]
    fn enable_needs_a_root_user_with_the_root_role() {
        let a = AuthStore::new(Duration::from_secs(300));
        let mut b = Mem::default();
        assert_eq!(a.enable(&mut b), Err(EtcdError::RootUserNotExist));
        add_user(&a, &mut b, "root");
        assert_eq!(a.enable(&mut b), Err(EtcdError::RootRoleNotExist));
        // The root role need not exist to be granted.
        a.user_grant_role(&mut b, "root", "root").unwrap();
        let rev = a.revision();
        a.enable(&mut b).unwrap();
        assert!(a.is_enabled());
        assert_eq!(a.revision(), rev, "enabling is no auth change");
        assert_eq!(
            a.user_delete(&mut b, "root"),
            Err(EtcdError::InvalidAuthMgmt)
        );
        assert_eq!(
            a.user_revoke_role(&mut b, "root", "root"),
            Err(EtcdError::InvalidAuthMgmt)
        );
        assert_eq!(
            a.role_delete(&mut b, "root"),
            Err(EtcdError::InvalidAuthMgmt)
        );
    }

    #[test]
    fn changes_count_revisions_and_keep_etcds_errors() {
        let a = AuthStore::new(Duration::from_secs(300));
        let mut b = Mem::default();
        assert_eq!(a.revision(), 1);
        add_user(&a, &mut b, "u");
        assert_eq!(a.revision(), 2);
        assert_eq!(
            a.user_add(
                &mut b,
                &AuthUserAddRequest {
                    name: "u".into(),
                    ..Default::default()
                }
            ),
            Err(EtcdError::UserAlreadyExist)
        );
        assert_eq!(
            a.user_add(&mut b, &AuthUserAddRequest::default()),
            Err(EtcdError::UserEmpty)
        );
        assert_eq!(
            a.user_grant_role(&mut b, "u", "r"),
            Err(EtcdError::RoleNotFound)
        );
        assert_eq!(
            a.user_grant_role(&mut b, "x", "r"),
            Err(EtcdError::UserNotFound)
        );
        a.role_add(&mut b, "r").unwrap();
        assert_eq!(a.role_add(&mut b, "r"), Err(EtcdError::RoleAlreadyExist));
        assert_eq!(a.role_add(&mut b, ""), Err(EtcdError::RoleEmpty));
        a.user_grant_role(&mut b, "u", "r").unwrap();
        let rev = a.revision();
        a.user_grant_role(&mut b, "u", "r").unwrap();
        assert_eq!(a.revision(), rev, "granting a held role changes nothing");
        grant(&a, &mut b, "r", Type::Read, "k", b"");
        grant(&a, &mut b, "r", Type::Write, "a", b"b");
        grant(&a, &mut b, "r", Type::Readwrite, "k", b"");
        let perms = a.role_get("r").unwrap();
        assert_eq!(perms.len(), 2);
        assert_eq!(perms[0].key, b"a");
        assert_eq!(perms[1].perm_type, Type::Readwrite as i32);
        assert_eq!(
            a.role_grant_permission(
                &mut b,
                &AuthRoleGrantPermissionRequest {
                    name: "r".into(),
                    perm: None
                }
            ),
            Err(EtcdError::PermissionNotGiven)
        );
        for (key, end) in [("", &b""[..]), ("b", b"a"), ("b", b"b")] {
            assert_eq!(
                a.role_grant_permission(
                    &mut b,
                    &AuthRoleGrantPermissionRequest {
                        name: "r".into(),
                        perm: Some(Permission {
                            perm_type: 0,
                            key: key.into(),
                            range_end: end.to_vec()
                        })
                    }
                ),
                Err(EtcdError::InvalidAuthMgmt),
                "{key} {end:?}"
            );
        }
        assert_eq!(
            a.role_revoke_permission(
                &mut b,
                &AuthRoleRevokePermissionRequest {
                    role: "r".into(),
                    key: b"zz".to_vec(),
                    range_end: vec![]
                }
            ),
            Err(EtcdError::PermissionNotGranted)
        );
        assert_eq!(
            a.user_revoke_role(&mut b, "u", "other"),
            Err(EtcdError::RoleNotGranted)
        );
        assert_eq!(a.user_get("u").unwrap(), vec!["r".to_string()]);
        a.role_delete(&mut b, "r").unwrap();
        assert!(
            a.user_get("u").unwrap().is_empty(),
            "a deleted role leaves its users"
        );
        assert_eq!(a.user_get("nobody"), Err(EtcdError::UserNotFound));
        assert_eq!(a.role_get("r"), Err(EtcdError::RoleNotFound));
    }

    #[test]
    fn checks_follow_roles_root_and_revisions() {
        let a = AuthStore::new(Duration::from_secs(300));
        let mut b = Mem::default();
        add_user(&a, &mut b, "root");
        a.user_grant_role(&mut b, "root", "root").unwrap();
        add_user(&a, &mut b, "u");
        a.role_add(&mut b, "r").unwrap();
        a.user_grant_role(&mut b, "u", "r").unwrap();
        grant(&a, &mut b, "r", Type::Read, "p/", b"p0");
        // Disabled: everything is allowed, even to nobody.
        assert_eq!(a.check(None, Access::Write, b"x", b""), Ok(()));
        a.enable(&mut b).unwrap();
        let u = info(&a, "u");
        assert_eq!(a.check(Some(&u), Access::Read, b"p/1", b""), Ok(()));
        assert_eq!(a.check(Some(&u), Access::Read, b"p/", b"p0"), Ok(()));
        assert_eq!(
            a.check(Some(&u), Access::Write, b"p/1", b""),
            Err(EtcdError::PermissionDenied)
        );
        assert_eq!(
            a.check(None, Access::Read, b"p/1", b""),
            Err(EtcdError::UserEmpty)
        );
        let root = info(&a, "root");
        assert_eq!(a.check(Some(&root), Access::Write, b"x", b"\0"), Ok(()));
        assert_eq!(a.check_admin(Some(&root)), Ok(()));
        assert_eq!(a.check_admin(Some(&u)), Err(EtcdError::PermissionDenied));
        assert_eq!(a.check_admin(None), Err(EtcdError::UserEmpty));
        assert_eq!(
            a.check_admin(Some(&info(&a, "ghost"))),
            Err(EtcdError::UserNotFound)
        );
        assert_eq!(
            a.check(Some(&info(&a, "ghost")), Access::Read, b"p/1", b""),
            Err(EtcdError::PermissionDenied)
        );
        // A permission revoked after the caller's revision: the old revision is refused.
        a.role_revoke_permission(
            &mut b,
            &AuthRoleRevokePermissionRequest {
                role: "r".into(),
                key: b"p/".to_vec(),
                range_end: b"p0".to_vec(),
            },
        )
        .unwrap();
        assert_eq!(
            a.check(Some(&u), Access::Read, b"p/1", b""),
            Err(EtcdError::AuthRevisionInHeaderOld)
        );
        assert_eq!(
            a.check(Some(&info(&a, "u")), Access::Read, b"p/1", b""),
            Err(EtcdError::PermissionDenied)
        );
    }

    #[test]
    fn state_reloads_from_its_records_and_tokens_follow_users() {
        let t0 = Instant::now();
        let a = AuthStore::new(Duration::from_secs(300));
        let mut b = Mem::default();
        add_user(&a, &mut b, "root");
        a.user_grant_role(&mut b, "root", "root").unwrap();
        a.user_add(
            &mut b,
            &AuthUserAddRequest {
                name: "svc".into(),
                options: Some(UserAddOptions { no_password: true }),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(a.password_hash("root"), Err(EtcdError::AuthNotEnabled));
        a.enable(&mut b).unwrap();
        assert_eq!(a.password_hash("svc"), Err(EtcdError::NoPasswordUser));
        assert_eq!(a.password_hash("nobody"), Err(EtcdError::AuthFailed));
        assert_eq!(a.password_hash("root").unwrap().0, b"h");
        let tok = a.authenticate("root", "abc.7".into(), t0).unwrap();
        assert_eq!(a.simple_token_info(&tok, t0).unwrap().user, "root");
        assert_eq!(
            a.authenticate("svc", "abd.8".into(), t0),
            Err(EtcdError::AuthFailed)
        );

        let c = AuthStore::new(Duration::from_secs(300));
        c.load(&b.records()).unwrap();
        // A store loaded again (a snapshot installed) keeps the tokens it assigned.
        a.load(&b.records()).unwrap();
        assert_eq!(a.simple_token_info(&tok, t0).unwrap().user, "root");
        assert!(c.is_enabled());
        assert_eq!(c.revision(), a.revision());
        assert_eq!(c.user_list(), vec!["root".to_string(), "svc".to_string()]);
        assert_eq!(c.check_admin(Some(&info(&c, "root"))), Ok(()));
        assert!(
            c.simple_token_info(&tok, t0).is_none(),
            "tokens live in memory"
        );

        a.user_change_password(
            &mut b,
            &AuthUserChangePasswordRequest {
                name: "root".into(),
                hashed_password: "h2".into(),
                ..Default::default()
            },
        )
        .unwrap();
        assert!(
            a.simple_token_info(&tok, t0).is_none(),
            "a new password ends old tokens"
        );
        let rev = a.revision();
        a.disable(&mut b);
        assert!(!a.is_enabled());
        assert_eq!(a.revision(), rev + 1, "disabling is an auth change");
        let bad = vec![(Bucket::Users, b"x".to_vec(), vec![0xff, 0xff])];
        assert!(c.load(&bad).is_err());
    }
}
