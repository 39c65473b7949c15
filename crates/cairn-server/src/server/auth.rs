//! Who is asking, and the slow part of auth: passwords.
//!
//! A request's caller comes from its token (gRPC metadata `token`, or `authorization` as
//! etcd's gateway sends it), else from what its connection proved
//! ([`crate::identity::ConnIdentity`]): the server's own loopback client, or a verified
//! client certificate's CN. With auth disabled nobody is resolved and nothing is checked.
//!
//! Passwords are hashed and checked in [`super::passwords`], off the async workers.

use std::time::Instant;

use cairn_auth::{AuthInfo, AuthStore, ROOT_USER};
use cairn_proto::cairnpb::{internal_request::Request, AuthHeader, InternalAuthenticateRequest};
use cairn_proto::EtcdError;

use super::Server;
use crate::identity::ConnIdentity;
use crate::proposal::ApplyResult;

/// How often Authenticate proposes again when the auth store changed between the password
/// check and the token (etcd retries until it did not).
const AUTHENTICATE_ATTEMPTS: usize = 5;

/// The identity the server's own loopback client acts as: root, at every revision. The
/// lock and election services check the real caller before they use it; while auth is
/// enabled the root user exists and holds the root role (neither can be taken away).
fn loopback() -> AuthInfo {
    AuthInfo {
        user: ROOT_USER.to_string(),
        revision: u64::MAX,
    }
}

/// Who a connection proves its client to be, for a request without a token: the server's
/// own loopback client acts as root; a verified client certificate as its CN, only with
/// `--client-cert-auth` (as etcd); anything else is nobody.
fn conn_caller(
    auth: &AuthStore,
    conn: Option<&ConnIdentity>,
    client_cert_auth: bool,
) -> Option<AuthInfo> {
    match conn {
        Some(c) if c.loopback => Some(loopback()),
        Some(ConnIdentity {
            cert_common_name: Some(cn),
            ..
        }) if client_cert_auth => Some(auth.cert_info(cn)),
        _ => None,
    }
}

/// The token a request carries: gRPC metadata `token`, as etcd's clients send it, or
/// `authorization`, as etcd's JSON gateway passes it on.
pub fn request_token(metadata: &tonic::metadata::MetadataMap) -> Result<Option<String>, EtcdError> {
    match metadata
        .get("token")
        .or_else(|| metadata.get("authorization"))
    {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .map(|t| Some(t.to_string()))
            .map_err(|_| EtcdError::InvalidAuthToken),
    }
}

impl Server {
    /// The auth store.
    pub fn auth(&self) -> &AuthStore {
        &self.auth
    }

    /// Who sent a request: from its token, else its connection. `None` with auth disabled
    /// or when nothing names a caller; "invalid auth token" for a token this member does
    /// not know (unknown, expired, or of a user since deleted). A token assigned at an
    /// index this member has not applied yet is waited for.
    pub async fn caller(
        &self,
        metadata: &tonic::metadata::MetadataMap,
        conn: Option<&ConnIdentity>,
    ) -> Result<Option<AuthInfo>, EtcdError> {
        if !self.auth.is_enabled() {
            return Ok(None);
        }
        let token = request_token(metadata)?;
        if let Some(index) = token.as_deref().and_then(cairn_auth::token_index) {
            if self.applied_index() < index {
                let mut rx = self.raft.applied_index();
                let wait = async move { rx.wait_for(|&a| a >= index).await.is_ok() };
                if !matches!(
                    tokio::time::timeout(self.request_timeout(), wait).await,
                    Ok(true)
                ) {
                    return Err(EtcdError::InvalidAuthToken);
                }
            }
        }
        self.caller_now(token.as_deref(), conn)
    }

    /// As [`Server::caller`], from a token already read, without waiting.
    pub fn caller_now(
        &self,
        token: Option<&str>,
        conn: Option<&ConnIdentity>,
    ) -> Result<Option<AuthInfo>, EtcdError> {
        if !self.auth.is_enabled() {
            return Ok(None);
        }
        if let Some(token) = token {
            return self
                .auth
                .token_info(token, Instant::now())
                .map(Some)
                .ok_or(EtcdError::InvalidAuthToken);
        }
        Ok(conn_caller(
            &self.auth,
            conn,
            self.cfg.auth.client_cert_auth,
        ))
    }

    /// Proposes a request on behalf of `who`, whom the applier checks again.
    pub async fn propose_as(
        &self,
        request: Request,
        who: Option<&AuthInfo>,
    ) -> Result<ApplyResult, EtcdError> {
        let header = who.map(|w| AuthHeader {
            username: w.user.clone(),
            auth_revision: w.revision,
        });
        self.proposer.propose_as(request, header).await
    }

    /// Hashes a new password at `--bcrypt-cost`, off the async workers.
    pub async fn hash_password(&self, password: String) -> Result<String, EtcdError> {
        let cost = self.cfg.auth.bcrypt_cost;
        self.passwords
            .hash(password, cost)
            .await?
            .map_err(|_| EtcdError::AuthFailed)
    }

    /// etcd's Authenticate: the password checked here (off the async workers), then a
    /// token proposed through Raft so every member knows it. Proposed again if the auth
    /// store changed in between, so the token never outlives a change it did not see.
    pub async fn authenticate(&self, name: &str, password: &str) -> Result<String, EtcdError> {
        self.linearizable_read().await?;
        let mut token = String::new();
        for _ in 0..AUTHENTICATE_ATTEMPTS {
            let (hash, checked_at) = self.auth.password_hash(name)?;
            let ok = self.passwords.verify(password.to_string(), hash).await?;
            if !ok {
                return Err(EtcdError::AuthFailed);
            }
            let req = Request::Authenticate(InternalAuthenticateRequest {
                name: name.to_string(),
                simple_token: cairn_auth::new_token_prefix(),
            });
            match self.propose(req).await? {
                ApplyResult::AuthToken(t) => token = t,
                _ => return Err(EtcdError::Stopped),
            }
            if self.auth.revision() == checked_at {
                break;
            }
            tracing::info!("auth revision changed while a password was checked; retrying");
        }
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_names_the_caller_only_with_client_cert_auth() {
        let auth = AuthStore::new(std::time::Duration::from_secs(60));
        let cert = ConnIdentity {
            cert_common_name: Some("alice".into()),
            loopback: false,
        };
        let alice = conn_caller(&auth, Some(&cert), true).map(|w| w.user);
        assert_eq!(alice.as_deref(), Some("alice"));
        assert_eq!(conn_caller(&auth, Some(&cert), false), None);
        let looped = ConnIdentity {
            cert_common_name: None,
            loopback: true,
        };
        assert_eq!(
            conn_caller(&auth, Some(&looped), false),
            Some(AuthInfo {
                user: ROOT_USER.into(),
                revision: u64::MAX
            })
        );
        assert_eq!(
            conn_caller(&auth, Some(&ConnIdentity::default()), true),
            None
        );
        assert_eq!(conn_caller(&auth, None, true), None);
    }
}
