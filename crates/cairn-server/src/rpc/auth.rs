//! The Auth service: every request but Authenticate's password check goes through Raft
//! and is applied by each member's auth store (`apply/auth.rs`), as etcd 3.5 does.
//!
//! Requests that make a bcrypt hash (UserAdd, UserChangePassword) are checked for the root
//! role before hashing, so a caller who may not make the change cannot make the member
//! hash; the applier checks again.

use std::sync::Arc;

use cairn_auth::AuthInfo;
use cairn_proto::cairnpb::internal_request::Request as Internal;
use cairn_proto::etcdserverpb::{auth_server::Auth, *};
use tonic::{Request, Response, Status};

use crate::proposal::ApplyResult;
use crate::server::Server;

/// The Auth service of one member.
pub struct AuthService {
    pub server: Arc<Server>,
}

fn unexpected() -> Status {
    Status::internal("cairn: the applier answered with an unexpected response type")
}

/// One Auth RPC: resolve the caller, run the body.
macro_rules! rpc {
    ($self:ident, $r:ident, |$who:ident, $req:ident| $body:expr) => {{
        let result: Result<_, Status> = async {
            let $who = super::caller(&$self.server, &$r).await?;
            let $req = $r.into_inner();
            $body
        }
        .await;
        result.map(Response::new)
    }};
}

impl AuthService {
    fn header(&self) -> Option<ResponseHeader> {
        let mut h = None;
        self.server.fill(&mut h);
        h
    }

    async fn apply(&self, who: Option<AuthInfo>, req: Internal) -> Result<ApplyResult, Status> {
        self.server.refuse_on_learner()?;
        Ok(self.server.propose_as(req, who.as_ref()).await?)
    }

    /// Applies a change whose response is only a header.
    async fn change(&self, who: Option<AuthInfo>, req: Internal) -> Result<(), Status> {
        match self.apply(who, req).await? {
            ApplyResult::AuthDone => Ok(()),
            _ => Err(unexpected()),
        }
    }

    async fn names(&self, who: Option<AuthInfo>, req: Internal) -> Result<Vec<String>, Status> {
        match self.apply(who, req).await? {
            ApplyResult::Names(n) => Ok(n),
            _ => Err(unexpected()),
        }
    }

    /// A change whose response is only a header.
    async fn header_only<Q, P: FromHeader>(
        &self,
        r: Request<Q>,
        wrap: fn(Q) -> Internal,
    ) -> Result<Response<P>, Status> {
        rpc!(self, r, |who, req| {
            self.change(who, wrap(req)).await?;
            Ok(P::from_header(self.header()))
        })
    }

    async fn user_add_inner(
        &self,
        who: Option<AuthInfo>,
        mut r: AuthUserAddRequest,
    ) -> Result<AuthUserAddResponse, Status> {
        self.server.auth().check_admin(who.as_ref())?;
        if !r.options.as_ref().is_some_and(|o| o.no_password) {
            let password = std::mem::take(&mut r.password);
            r.hashed_password = self.server.hash_password(password).await?;
        }
        r.password.clear();
        self.change(who, Internal::UserAdd(r)).await?;
        Ok(AuthUserAddResponse {
            header: self.header(),
        })
    }

    async fn change_password_inner(
        &self,
        who: Option<AuthInfo>,
        mut r: AuthUserChangePasswordRequest,
    ) -> Result<AuthUserChangePasswordResponse, Status> {
        self.server.auth().check_admin(who.as_ref())?;
        let password = std::mem::take(&mut r.password);
        r.hashed_password = self.server.hash_password(password).await?;
        self.change(who, Internal::UserChangePassword(r)).await?;
        Ok(AuthUserChangePasswordResponse {
            header: self.header(),
        })
    }
}

/// Responses made of a header alone.
trait FromHeader {
    fn from_header(header: Option<ResponseHeader>) -> Self;
}

macro_rules! from_header {
    ($($t:ty),*) => {
        $(impl FromHeader for $t {
            fn from_header(header: Option<ResponseHeader>) -> Self {
                Self { header }
            }
        })*
    };
}

from_header!(
    AuthEnableResponse,
    AuthDisableResponse,
    AuthUserDeleteResponse,
    AuthUserGrantRoleResponse,
    AuthUserRevokeRoleResponse,
    AuthRoleAddResponse,
    AuthRoleDeleteResponse,
    AuthRoleGrantPermissionResponse,
    AuthRoleRevokePermissionResponse
);

#[tonic::async_trait]
impl Auth for AuthService {
    async fn auth_enable(
        &self,
        r: Request<AuthEnableRequest>,
    ) -> Result<Response<AuthEnableResponse>, Status> {
        self.header_only(r, Internal::AuthEnable).await
    }

    async fn auth_disable(
        &self,
        r: Request<AuthDisableRequest>,
    ) -> Result<Response<AuthDisableResponse>, Status> {
        self.header_only(r, Internal::AuthDisable).await
    }

    async fn user_delete(
        &self,
        r: Request<AuthUserDeleteRequest>,
    ) -> Result<Response<AuthUserDeleteResponse>, Status> {
        self.header_only(r, Internal::UserDelete).await
    }

    async fn user_grant_role(
        &self,
        r: Request<AuthUserGrantRoleRequest>,
    ) -> Result<Response<AuthUserGrantRoleResponse>, Status> {
        self.header_only(r, Internal::UserGrantRole).await
    }

    async fn user_revoke_role(
        &self,
        r: Request<AuthUserRevokeRoleRequest>,
    ) -> Result<Response<AuthUserRevokeRoleResponse>, Status> {
        self.header_only(r, Internal::UserRevokeRole).await
    }

    async fn role_add(
        &self,
        r: Request<AuthRoleAddRequest>,
    ) -> Result<Response<AuthRoleAddResponse>, Status> {
        self.header_only(r, Internal::RoleAdd).await
    }

    async fn role_delete(
        &self,
        r: Request<AuthRoleDeleteRequest>,
    ) -> Result<Response<AuthRoleDeleteResponse>, Status> {
        self.header_only(r, Internal::RoleDelete).await
    }

    async fn role_grant_permission(
        &self,
        r: Request<AuthRoleGrantPermissionRequest>,
    ) -> Result<Response<AuthRoleGrantPermissionResponse>, Status> {
        self.header_only(r, Internal::RoleGrantPermission).await
    }

    async fn role_revoke_permission(
        &self,
        r: Request<AuthRoleRevokePermissionRequest>,
    ) -> Result<Response<AuthRoleRevokePermissionResponse>, Status> {
        self.header_only(r, Internal::RoleRevokePermission).await
    }

    async fn auth_status(
        &self,
        r: Request<AuthStatusRequest>,
    ) -> Result<Response<AuthStatusResponse>, Status> {
        rpc!(self, r, |who, req| {
            match self.apply(who, Internal::AuthStatus(req)).await? {
                ApplyResult::AuthStatus { enabled, revision } => Ok(AuthStatusResponse {
                    header: self.header(),
                    enabled,
                    auth_revision: revision,
                }),
                _ => Err(unexpected()),
            }
        })
    }

    async fn authenticate(
        &self,
        r: Request<AuthenticateRequest>,
    ) -> Result<Response<AuthenticateResponse>, Status> {
        let req = r.into_inner();
        let result: Result<_, Status> = async {
            self.server.refuse_on_learner()?;
            let token = self.server.authenticate(&req.name, &req.password).await?;
            Ok(AuthenticateResponse {
                header: self.header(),
                token,
            })
        }
        .await;
        result.map(Response::new)
    }

    async fn user_add(
        &self,
        r: Request<AuthUserAddRequest>,
    ) -> Result<Response<AuthUserAddResponse>, Status> {
        rpc!(self, r, |who, req| self.user_add_inner(who, req).await)
    }

    async fn user_get(
        &self,
        r: Request<AuthUserGetRequest>,
    ) -> Result<Response<AuthUserGetResponse>, Status> {
        rpc!(self, r, |who, req| {
            let roles = self.names(who, Internal::UserGet(req)).await?;
            Ok(AuthUserGetResponse {
                header: self.header(),
                roles,
            })
        })
    }

    async fn user_list(
        &self,
        r: Request<AuthUserListRequest>,
    ) -> Result<Response<AuthUserListResponse>, Status> {
        rpc!(self, r, |who, req| {
            let users = self.names(who, Internal::UserList(req)).await?;
            Ok(AuthUserListResponse {
                header: self.header(),
                users,
            })
        })
    }

    async fn user_change_password(
        &self,
        r: Request<AuthUserChangePasswordRequest>,
    ) -> Result<Response<AuthUserChangePasswordResponse>, Status> {
        rpc!(self, r, |who, req| self
            .change_password_inner(who, req)
            .await)
    }

    async fn role_get(
        &self,
        r: Request<AuthRoleGetRequest>,
    ) -> Result<Response<AuthRoleGetResponse>, Status> {
        rpc!(self, r, |who, req| {
            match self.apply(who, Internal::RoleGet(req)).await? {
                ApplyResult::Permissions(perm) => Ok(AuthRoleGetResponse {
                    header: self.header(),
                    perm,
                }),
                _ => Err(unexpected()),
            }
        })
    }

    async fn role_list(
        &self,
        r: Request<AuthRoleListRequest>,
    ) -> Result<Response<AuthRoleListResponse>, Status> {
        rpc!(self, r, |who, req| {
            let roles = self.names(who, Internal::RoleList(req)).await?;
            Ok(AuthRoleListResponse {
                header: self.header(),
                roles,
            })
        })
    }
}
