//! etcd's auth store: users, roles and key permissions, the permission range cache, tokens
//! and password hashing, with etcd 3.5's rules and errors.
//!
//! The state lives in three backend tables named as etcd's buckets, so the snapshot format
//! can map them one to one:
//!
//! - `auth`: `authEnabled` (one byte, 1 when enabled) and `authRevision` (u64, big-endian).
//! - `authUsers`: user name to the protobuf encoding of an `authpb.User` (its bcrypt hash,
//!   its roles sorted, its options).
//! - `authRoles`: role name to the protobuf encoding of an `authpb.Role` (its permissions
//!   sorted by key).
//!
//! Every change arrives as a committed Raft entry and is written through [`AuthBackend`],
//! a trait declared here and implemented by the server on its open apply batch, so auth
//! changes commit in the same backend transaction as the applied index. Each member keeps
//! the whole state in memory too ([`AuthStore`]) and answers permission checks from it.
//!
//! What it must not depend on: the MVCC store, Raft, gRPC, the async runtime. Password
//! hashing is synchronous and slow by design: callers run it off their async workers.
//!
//! # Layout
//!
//! - `store`: [`AuthStore`]: the state, its changes as etcd applies them, the checks.
//! - `perms`: [`UserPerms`], one user's read and write key ranges merged (the range cache).
//! - `requests`: the permissions each KV request needs (range, put, delete, txn).
//! - `simple_token`: [`SimpleTokens`], etcd's simple tokens and their TTL.
//! - `jwt`: [`JwtTokens`], etcd's JWT tokens (claims `username`, `revision`, `exp`).
//! - [`bcrypt`]: bcrypt as Go computes it, several verifications at once in lanes.

pub mod bcrypt;
mod jwt;
mod perms;
mod requests;
mod simple_token;
mod store;

pub use jwt::{JwtError, JwtTokens, DEFAULT_JWT_TTL};
pub use perms::{Access, UserPerms};
pub use simple_token::{new_token_prefix, token_index, SimpleTokens};
pub use store::{AuthInfo, AuthStore, LoadError, ROOT_ROLE, ROOT_USER};

/// The backend tables of the auth store, named as etcd's buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Bucket {
    /// `auth`: the enabled flag and the auth revision.
    Auth,
    /// `authUsers`: users by name.
    Users,
    /// `authRoles`: roles by name.
    Roles,
}

impl Bucket {
    /// The table's name, as etcd's bucket.
    pub fn name(self) -> &'static str {
        match self {
            Bucket::Auth => "auth",
            Bucket::Users => "authUsers",
            Bucket::Roles => "authRoles",
        }
    }

    pub const ALL: [Bucket; 3] = [Bucket::Auth, Bucket::Users, Bucket::Roles];
}

/// Where applied auth changes are written: the open apply batch of the backend.
pub trait AuthBackend {
    fn put(&mut self, bucket: Bucket, key: &[u8], value: &[u8]);
    fn delete(&mut self, bucket: Bucket, key: &[u8]);
}

/// Key of the enabled flag in [`Bucket::Auth`].
pub const ENABLED_KEY: &[u8] = b"authEnabled";
/// Key of the auth revision in [`Bucket::Auth`].
pub const REVISION_KEY: &[u8] = b"authRevision";
