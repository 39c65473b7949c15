//! The gRPC services, one file each, and what they share: the mapping of store errors to
//! etcd's statuses (their calls are counted where they enter, in `run/grpc_metrics.rs`).
//!
//! Adapters: each decodes a request, calls the [`crate::server::Server`] (or the lease
//! keeper and watch hub it hands out), and encodes the answer. Policy (membership rules,
//! the quota, etcd's request checks in `validate.rs`) lives below; nothing below calls
//! into this module.

pub mod auth;
pub mod cluster;
pub mod kv;
pub mod lease;
pub mod lock;
pub mod maintenance;
pub mod watch;

use tonic::{Code, Status};

/// Who sent a request (see `Server::caller`): from its token, else its connection.
pub async fn caller<T>(
    server: &crate::server::Server,
    r: &tonic::Request<T>,
) -> Result<Option<cairn_auth::AuthInfo>, Status> {
    let conn = r.extensions().get::<crate::identity::ConnIdentity>();
    Ok(server.caller(r.metadata(), conn).await?)
}

/// Refuses a request whose caller does not hold the root role, when auth is enabled (etcd's
/// membership requests).
pub async fn admin<T>(server: &crate::server::Server, r: &tonic::Request<T>) -> Result<(), Status> {
    let who = caller(server, r).await?;
    Ok(server.auth().check_admin(who.as_ref())?)
}

/// As [`admin`], worded as etcd's maintenance service words its refusals: the auth
/// package's own text, code Unknown.
pub async fn maintenance_admin<T>(
    server: &crate::server::Server,
    r: &tonic::Request<T>,
) -> Result<(), Status> {
    let raw = |e: cairn_proto::EtcdError| match e.auth_package_message() {
        Some(text) => Status::unknown(text),
        None => e.status(),
    };
    let who = server
        .caller(
            r.metadata(),
            r.extensions().get::<crate::identity::ConnIdentity>(),
        )
        .await
        .map_err(raw)?;
    server.auth().check_admin(who.as_ref()).map_err(raw)
}

/// Maps a store error to etcd's status; an error etcd has no name for is internal.
pub fn mvcc_status(e: cairn_mvcc::MvccError) -> Status {
    match e.etcd() {
        Some(etcd) => etcd.status(),
        None => Status::internal(e.to_string()),
    }
}

/// What tonic's decoder says when a message's length prefix is past the receive limit.
const TONIC_TOO_LARGE: &str = "Error, decoded message length too large: found ";

/// A message refused for its length, worded as etcd's gRPC server (grpc-go) words it:
/// ResourceExhausted, "grpc: received message larger than max (<length> vs. <limit>)".
/// Any other status is returned as it is.
pub fn receive_limit_status(status: Status) -> Status {
    if status.code() != Code::OutOfRange {
        return status;
    }
    let Some(rest) = status.message().strip_prefix(TONIC_TOO_LARGE) else {
        return status;
    };
    let mut numbers = rest
        .split(|c: char| !c.is_ascii_digit())
        .filter(|n| !n.is_empty());
    match (numbers.next(), numbers.next()) {
        (Some(len), Some(limit)) => Status::resource_exhausted(format!(
            "grpc: received message larger than max ({len} vs. {limit})"
        )),
        _ => status,
    }
}

/// Rewords, in a unary call's trailers-only response, a request refused for its length
/// ([`receive_limit_status`]). A response without an error status is left untouched after
/// one header lookup.
pub fn receive_limit_headers(headers: &mut http::HeaderMap) {
    if headers.get("grpc-status").map(|v| v.as_bytes()) != Some(b"11") {
        return;
    }
    let Some(status) = Status::from_header_map(headers) else {
        return;
    };
    if status.code() != Code::OutOfRange || !status.message().starts_with(TONIC_TOO_LARGE) {
        return;
    }
    let status = receive_limit_status(status);
    headers.remove("grpc-message");
    if let Err(e) = status.add_header(headers) {
        tracing::debug!(error = %e, "failed to reword a size refusal");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tonic_size_refusals_read_as_grpc_go_words_them() {
        let tonic = Status::out_of_range(
            "Error, decoded message length too large: found 2097153 bytes, the limit is: 2097152 bytes",
        );
        let etcd = receive_limit_status(tonic.clone());
        assert_eq!(etcd.code(), Code::ResourceExhausted);
        assert_eq!(
            etcd.message(),
            "grpc: received message larger than max (2097153 vs. 2097152)"
        );
        let mut headers = http::HeaderMap::new();
        tonic.add_header(&mut headers).unwrap();
        receive_limit_headers(&mut headers);
        let reworded = Status::from_header_map(&headers).unwrap();
        assert_eq!(reworded.code(), Code::ResourceExhausted);
        assert_eq!(reworded.message(), etcd.message());
        // etcd's own OutOfRange errors pass as they are.
        let future =
            Status::out_of_range("etcdserver: mvcc: required revision is a future revision");
        assert_eq!(
            receive_limit_status(future.clone()).message(),
            future.message()
        );
        let mut headers = http::HeaderMap::new();
        future.add_header(&mut headers).unwrap();
        receive_limit_headers(&mut headers);
        assert_eq!(
            Status::from_header_map(&headers).unwrap().message(),
            future.message()
        );
    }
}
