//! The one table from etcd's server errors to gRPC status codes and message texts.
//!
//! Clients match on these strings (etcd's `rpctypes` package turns them back into typed
//! errors), so the texts are etcd's to the letter. Every error cairn returns to a client
//! passes through [`EtcdError::status`].

use tonic::{Code, Status};

macro_rules! etcd_errors {
    ($($name:ident => ($code:ident, $text:literal),)*) => {
        /// An error as etcd reports it on the wire.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum EtcdError {
            $($name,)*
        }

        impl EtcdError {
            /// Every error, for tests that walk the table.
            pub const ALL: &'static [EtcdError] = &[$(EtcdError::$name,)*];

            /// The gRPC status code etcd sends for this error.
            pub fn code(self) -> Code {
                match self {
                    $(EtcdError::$name => Code::$code,)*
                }
            }

            /// The message text etcd sends for this error.
            pub fn message(self) -> &'static str {
                match self {
                    $(EtcdError::$name => $text,)*
                }
            }

            /// Finds the error whose message is `text`, as a client decoding a status does.
            pub fn from_message(text: &str) -> Option<EtcdError> {
                match text {
                    $($text => Some(EtcdError::$name),)*
                    _ => None,
                }
            }
        }
    };
}

etcd_errors! {
    EmptyKey => (InvalidArgument, "etcdserver: key is not provided"),
    KeyNotFound => (InvalidArgument, "etcdserver: key not found"),
    ValueProvided => (InvalidArgument, "etcdserver: value is provided"),
    LeaseProvided => (InvalidArgument, "etcdserver: lease is provided"),
    TooManyOps => (InvalidArgument, "etcdserver: too many operations in txn request"),
    DuplicateKey => (InvalidArgument, "etcdserver: duplicate key given in txn request"),
    InvalidSortOption => (InvalidArgument, "etcdserver: invalid sort option"),
    Compacted => (OutOfRange, "etcdserver: mvcc: required revision has been compacted"),
    FutureRev => (OutOfRange, "etcdserver: mvcc: required revision is a future revision"),
    NoSpace => (ResourceExhausted, "etcdserver: mvcc: database space exceeded"),
    LeaseNotFound => (NotFound, "etcdserver: requested lease not found"),
    LeaseExist => (FailedPrecondition, "etcdserver: lease already exists"),
    LeaseTtlTooLarge => (OutOfRange, "etcdserver: too large lease TTL"),
    WatchCanceled => (Cancelled, "etcdserver: watch canceled"),
    MemberExist => (FailedPrecondition, "etcdserver: member ID already exist"),
    PeerUrlExist => (FailedPrecondition, "etcdserver: Peer URLs already exists"),
    MemberNotEnoughStarted => (
        FailedPrecondition,
        "etcdserver: re-configuration failed due to not enough started members"
    ),
    MemberBadUrls => (InvalidArgument, "etcdserver: given member URLs are invalid"),
    MemberNotFound => (NotFound, "etcdserver: member not found"),
    MemberNotLearner => (FailedPrecondition, "etcdserver: can only promote a learner member"),
    LearnerNotReady => (
        FailedPrecondition,
        "etcdserver: can only promote a learner member which is in sync with leader"
    ),
    TooManyLearners => (FailedPrecondition, "etcdserver: too many learner members in cluster"),
    RequestTooLarge => (InvalidArgument, "etcdserver: request is too large"),
    TooManyRequests => (ResourceExhausted, "etcdserver: too many requests"),
    RootUserNotExist => (FailedPrecondition, "etcdserver: root user does not exist"),
    RootRoleNotExist => (FailedPrecondition, "etcdserver: root user does not have root role"),
    UserAlreadyExist => (FailedPrecondition, "etcdserver: user name already exists"),
    UserEmpty => (InvalidArgument, "etcdserver: user name is empty"),
    UserNotFound => (FailedPrecondition, "etcdserver: user name not found"),
    RoleAlreadyExist => (FailedPrecondition, "etcdserver: role name already exists"),
    RoleNotFound => (FailedPrecondition, "etcdserver: role name not found"),
    RoleEmpty => (InvalidArgument, "etcdserver: role name is empty"),
    AuthFailed => (
        InvalidArgument,
        "etcdserver: authentication failed, invalid user ID or password"
    ),
    PermissionNotGiven => (InvalidArgument, "etcdserver: permission not given"),
    PermissionDenied => (PermissionDenied, "etcdserver: permission denied"),
    RoleNotGranted => (FailedPrecondition, "etcdserver: role is not granted to the user"),
    PermissionNotGranted => (
        FailedPrecondition,
        "etcdserver: permission is not granted to the role"
    ),
    AuthNotEnabled => (FailedPrecondition, "etcdserver: authentication is not enabled"),
    InvalidAuthToken => (Unauthenticated, "etcdserver: invalid auth token"),
    InvalidAuthMgmt => (InvalidArgument, "etcdserver: invalid auth management"),
    AuthOldRevision => (InvalidArgument, "etcdserver: revision of auth store is old"),
    NoLeader => (Unavailable, "etcdserver: no leader"),
    NotLeader => (FailedPrecondition, "etcdserver: not leader"),
    LeaderChanged => (Unavailable, "etcdserver: leader changed"),
    NotCapable => (Unavailable, "etcdserver: not capable"),
    Stopped => (Unavailable, "etcdserver: server stopped"),
    Timeout => (Unavailable, "etcdserver: request timed out"),
    TimeoutDueToLeaderFail => (
        Unavailable,
        "etcdserver: request timed out, possibly due to previous leader failure"
    ),
    TimeoutDueToConnectionLost => (
        Unavailable,
        "etcdserver: request timed out, possibly due to connection lost"
    ),
    TimeoutWaitAppliedIndex => (
        Unavailable,
        "etcdserver: request timed out, waiting for the applied index took too long"
    ),
    TimeoutLeaderTransfer => (
        Unavailable,
        "etcdserver: request timed out, leader transfer took too long"
    ),
    Unhealthy => (Unavailable, "etcdserver: unhealthy cluster"),
    Corrupt => (DataLoss, "etcdserver: corrupt cluster"),
    NotSupportedForLearner => (Unavailable, "etcdserver: rpc not supported for learner"),
    BadLeaderTransferee => (FailedPrecondition, "etcdserver: bad leader transferee"),
    Canceled => (Cancelled, "etcdserver: request canceled"),
    DeadlineExceeded => (DeadlineExceeded, "etcdserver: context deadline exceeded"),
    // Not in etcd's table: what etcd returns, raw, when a proposal waited its whole request
    // timeout for a leader to take it.
    ProposalDeadline => (Unknown, "context deadline exceeded"),
    // Not in etcd's table: etcd 3.5 returns its auth package's error unmapped when a
    // password is given for a user added with --no-password.
    NoPasswordUser => (
        Unknown,
        "auth: authentication failed, password was given for no password user"
    ),
    // Not in etcd's table: what etcd 3.5.1 answers, unmapped, to a request made with a token
    // (or certificate) older than the auth store's last change; its table's
    // AuthOldRevision text is never sent by it.
    AuthRevisionInHeaderOld => (Unknown, "auth: revision in header is old"),
    // Not in etcd's table: Authenticate on a member whose JWT key can only verify.
    JwtVerifyOnly => (Unknown, "auth: token signing attempted with verify-only key"),
}

impl EtcdError {
    /// The text of etcd's auth package for this error, for the requests where etcd returns
    /// it unmapped (the maintenance RPCs' admin check: code Unknown, "auth: ...").
    pub fn auth_package_message(self) -> Option<&'static str> {
        Some(match self {
            EtcdError::UserEmpty => "auth: user name is empty",
            EtcdError::UserNotFound => "auth: user name not found",
            EtcdError::PermissionDenied => "auth: permission denied",
            EtcdError::InvalidAuthToken => "auth: invalid auth token",
            EtcdError::AuthOldRevision | EtcdError::AuthRevisionInHeaderOld => {
                "auth: revision in header is old"
            }
            _ => return None,
        })
    }

    /// The gRPC status a client receives for this error.
    pub fn status(self) -> Status {
        Status::new(self.code(), self.message())
    }
}

impl std::fmt::Display for EtcdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for EtcdError {}

impl From<EtcdError> for Status {
    fn from(e: EtcdError) -> Status {
        e.status()
    }
}

/// grpc-go's name for a status code, as it appears in Go clients' error text
/// ("rpc error: code = Canceled ...") and in grpc-prometheus metric labels.
pub fn grpc_code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_maps_back_to_its_error() {
        for &e in EtcdError::ALL {
            assert_eq!(EtcdError::from_message(e.message()), Some(e));
            // etcd passes a raw context error and one auth package error on; every other
            // text is its own.
            let raw = matches!(
                e,
                EtcdError::ProposalDeadline
                    | EtcdError::NoPasswordUser
                    | EtcdError::JwtVerifyOnly
                    | EtcdError::AuthRevisionInHeaderOld
            );
            assert!(e.message().starts_with("etcdserver: ") || raw, "{e:?}");
        }
    }

    #[test]
    fn status_carries_code_and_text() {
        let s = EtcdError::Compacted.status();
        assert_eq!(s.code(), Code::OutOfRange);
        assert_eq!(
            s.message(),
            "etcdserver: mvcc: required revision has been compacted"
        );
    }
}
