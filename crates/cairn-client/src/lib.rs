//! A thin async client for the etcd v3 API over tonic, used by cairnctl, tests and
//! benchmarks.
//!
//! It dials the endpoints (over TLS when asked, see `tls.rs`), authenticates when a user
//! and password are given (the token then rides on every request as the `token` metadata
//! header, as etcd's clients send it, and is renewed when the server no longer takes it)
//! and hands out the generated tonic clients, so callers use the full API. Load balancing
//! and failover are tonic's `Channel::balance_list` in the clear, and moving to the next
//! endpoint after a failed call over TLS.
//!
//! Depends only on `cairn-proto`; nothing in the server.
//!
//! # Layout
//!
//! - `lib.rs`: [`ClientConfig`], [`Client`], [`Error`] and the [`TokenInterceptor`] that
//!   attaches the auth token.
//! - `coalesce.rs`: connections whose writes are gathered into fewer system calls, dialled
//!   by [`Client`] and accepted by the server.
//! - `tls.rs`: whether connections use TLS and with what (rustls), decided from the
//!   configuration as etcd's Go client decides it; the connector tonic dials through.
//! - `transport.rs`: what requests travel on: a tonic `Channel`, several used in turn, or
//!   one HTTP/2 connection driven by hyper directly (for load generators).
//! - `concurrency.rs`: sessions, mutexes and elections as etcd's `concurrency` package
//!   builds them from leases, transactions and watches.

pub mod coalesce;
pub mod concurrency;
pub mod tls;
pub mod transport;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use cairn_proto::etcdserverpb::{
    auth_client::AuthClient, cluster_client::ClusterClient, kv_client::KvClient,
    lease_client::LeaseClient, maintenance_client::MaintenanceClient, watch_client::WatchClient,
    AuthenticateRequest,
};
use tonic::metadata::AsciiMetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use transport::{Direct, Rotate, Transport};

pub use tls::{HandshakeError, Security};

/// Whether a failed stream (a watch, a lease keep-alive) is worth opening again, as the
/// Go client judges it: the server cannot be reached (`Unavailable`), a frame went wrong
/// (`Internal`), or the connection broke under the stream (an error of the transport, not
/// a status the server sent), as when a member restarts.
pub fn stream_broken(status: &tonic::Status) -> bool {
    use std::error::Error;
    matches!(
        status.code(),
        tonic::Code::Unavailable | tonic::Code::Internal
    ) || (status.code() == tonic::Code::Unknown && status.source().is_some())
}

/// The largest response a call takes, as etcd's Go client (`math.MaxInt32`), so a large
/// `get --prefix` reads what etcdctl reads; gRPC's own default would stop at 4 MiB.
pub const MAX_RESPONSE_BYTES: usize = i32::MAX as usize;

/// etcd's answer to a request whose token it does not know (expired, or from another
/// member's simple-token store).
pub const INVALID_AUTH_TOKEN: &str = "etcdserver: invalid auth token";
/// etcd's answer to a request whose token predates a change of users, roles or
/// permissions.
pub const AUTH_OLD_REVISION: &str = "etcdserver: revision of auth store is old";
/// etcd 3.5's answer to a write whose token predates a change of the auth store, found
/// when the write is applied: the auth package's own text, which reaches the client
/// unmapped (clientv3 3.5.1 does not recognise it, and the call fails).
pub const AUTH_OLD_REVISION_AT_APPLY: &str = "auth: revision in header is old";
/// etcd's answer to a request without a user while authentication is on.
pub const USER_EMPTY: &str = "etcdserver: user name is empty";
/// etcd's answer to `Authenticate` while authentication is off.
pub const AUTH_NOT_ENABLED: &str = "etcdserver: authentication is not enabled";

/// Errors from connecting or authenticating.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No endpoint was given.
    #[error("no endpoints given")]
    NoEndpoints,
    /// An endpoint could not be parsed as a URL.
    #[error("invalid endpoint {endpoint}: {reason}")]
    InvalidEndpoint {
        /// The endpoint as given.
        endpoint: String,
        /// Why it was refused.
        reason: String,
    },
    /// The TLS files could not be used; the text is Go's, as etcdctl prints it.
    #[error("{0}")]
    Tls(String),
    /// The connection was not established within the dial timeout.
    #[error("context deadline exceeded")]
    DialTimeout,
    /// The transport failed while connecting.
    #[error("transport error: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// A direct connection could not be made.
    #[error("{0}")]
    Dial(String),
    /// The server refused a request made while connecting (e.g. `Authenticate`).
    #[error("{}", .0.message())]
    Status(#[from] tonic::Status),
}

/// How to reach and authenticate to a cluster.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Endpoints as `host:port`, `http://host:port` or `https://host:port`.
    pub endpoints: Vec<String>,
    /// How long to wait for the first connection.
    pub dial_timeout: Duration,
    /// User name; with a non-empty password, the client authenticates before anything
    /// else and again when the server no longer takes its token.
    pub user: Option<String>,
    /// Password for `user`.
    pub password: Option<String>,
    /// CA bundle (PEM) for verifying servers; without it, the system's roots.
    pub cacert: Option<String>,
    /// Client certificate (PEM), presented to servers that ask for one.
    pub cert: Option<String>,
    /// The client certificate's key (PEM).
    pub key: Option<String>,
    /// The name servers' certificates are checked against instead of the host dialled.
    pub server_name: Option<String>,
    /// Skip server certificate verification (when TLS is set up by the options above or
    /// by `insecure_transport` being off).
    pub insecure_skip_tls_verify: bool,
    /// Whether a bare `host:port` endpoint may be dialled without TLS when no TLS option
    /// is given (etcdctl's `--insecure-transport`, on by default).
    pub insecure_transport: bool,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            endpoints: vec!["127.0.0.1:2379".to_string()],
            dial_timeout: Duration::from_secs(2),
            user: None,
            password: None,
            cacert: None,
            cert: None,
            key: None,
            server_name: None,
            insecure_skip_tls_verify: false,
            insecure_transport: true,
        }
    }
}

impl ClientConfig {
    /// A configuration for the given endpoints with etcdctl's defaults otherwise.
    pub fn new(endpoints: impl IntoIterator<Item = impl Into<String>>) -> Self {
        ClientConfig {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            ..ClientConfig::default()
        }
    }
}

/// The current auth token, shared by every clone of a client and replaced when the client
/// authenticates again.
type SharedToken = Arc<RwLock<Option<AsciiMetadataValue>>>;

/// Attaches the auth token, when there is one, as the `token` metadata header.
///
/// A client without credentials has no token cell, and a call costs nothing more; with
/// credentials, a call reads the cell under its lock and clones the header value (a
/// reference count).
#[derive(Debug, Clone, Default)]
pub struct TokenInterceptor {
    token: Option<SharedToken>,
}

impl tonic::service::Interceptor for TokenInterceptor {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(cell) = &self.token {
            let token = cell.read().ok().and_then(|t| t.clone());
            if let Some(token) = token {
                req.metadata_mut().insert("token", token);
            }
        }
        Ok(req)
    }
}

/// The channel every generated client is built on.
pub type Service = InterceptedService<Transport, TokenInterceptor>;

/// A user name and password, as the Go client keeps them to authenticate again.
#[derive(Clone)]
struct Credentials {
    user: String,
    password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// A connected client. Cloning is cheap and shares the connection and the token.
#[derive(Debug, Clone)]
pub struct Client {
    channel: Transport,
    interceptor: TokenInterceptor,
    credentials: Option<Arc<Credentials>>,
}

/// Turns an endpoint into the `http://host:port` URL tonic is given: the scheme only
/// names the endpoint, and whether the connection uses TLS is [`Security`]'s to say.
fn endpoint_url(endpoint: &str) -> String {
    let rest = endpoint
        .strip_prefix("http://")
        .or_else(|| endpoint.strip_prefix("https://"))
        .unwrap_or(endpoint);
    format!("http://{rest}")
}

/// The configured endpoints, checked, with the dial timeout set.
fn endpoints(config: &ClientConfig) -> Result<Vec<Endpoint>, Error> {
    config
        .endpoints
        .iter()
        .map(|ep| {
            let endpoint =
                Endpoint::from_shared(endpoint_url(ep)).map_err(|e| Error::InvalidEndpoint {
                    endpoint: ep.clone(),
                    reason: e.to_string(),
                })?;
            Ok(endpoint.connect_timeout(config.dial_timeout))
        })
        .collect()
}

/// The credentials the Go client authenticates with: a user and a password, neither
/// empty (with either empty it sends requests without a token).
fn credentials(config: &ClientConfig) -> Option<Arc<Credentials>> {
    match (&config.user, &config.password) {
        (Some(user), Some(password)) if !user.is_empty() && !password.is_empty() => {
            Some(Arc::new(Credentials {
                user: user.clone(),
                password: password.clone(),
            }))
        }
        _ => None,
    }
}

/// A connector for tonic that dials as `security` says.
fn connector(
    security: Security,
) -> impl tower::Service<
    tonic::transport::Uri,
    Response = hyper_util::rt::TokioIo<tls::Conn>,
    Error = std::io::Error,
    Future = impl Send,
> + Clone
       + Send {
    tower::service_fn(move |uri| tls::dial(uri, security.clone()))
}

impl Client {
    fn with_channel(channel: Transport, config: &ClientConfig) -> Client {
        let credentials = credentials(config);
        Client {
            channel,
            interceptor: TokenInterceptor {
                token: credentials.as_ref().map(|_| SharedToken::default()),
            },
            credentials,
        }
    }

    /// Dials the endpoints and, when a user is configured, authenticates.
    pub async fn connect(config: ClientConfig) -> Result<Client, Error> {
        let security = tls::security(&config)?;
        let mut endpoints = endpoints(&config)?;
        let channel = match endpoints.len() {
            0 => return Err(Error::NoEndpoints),
            1 => {
                let ep = endpoints.remove(0);
                let connect = ep.connect_with_connector(connector(security));
                Transport::Channel(
                    tokio::time::timeout(config.dial_timeout, connect)
                        .await
                        .map_err(|_| Error::DialTimeout)??,
                )
            }
            _ => several(endpoints, security),
        };
        let client = Client::with_channel(channel, &config);
        client.authenticate_on_connect().await?;
        Ok(client)
    }

    /// Builds a client without dialing: the connection is made by the first request, as
    /// etcd's Go client does, so an unreachable endpoint shows up as a failed request.
    /// Authentication, when configured, is done here and so does dial.
    pub async fn connect_lazy(config: ClientConfig) -> Result<Client, Error> {
        let client = Client::lazy(&config)?;
        client.authenticate_on_connect().await?;
        Ok(client)
    }

    /// Builds a client without dialing and without authenticating: the caller calls
    /// [`Client::authenticate`] when it wants to. Must be called within a tokio runtime.
    pub fn lazy(config: &ClientConfig) -> Result<Client, Error> {
        let security = tls::security(config)?;
        let mut endpoints = endpoints(config)?;
        let channel = match endpoints.len() {
            0 => return Err(Error::NoEndpoints),
            1 => Transport::Channel(
                endpoints
                    .remove(0)
                    .connect_with_connector_lazy(connector(security)),
            ),
            _ => several(endpoints, security),
        };
        Ok(Client::with_channel(channel, config))
    }

    /// A client whose requests travel on `channel`, made by the caller (the server's
    /// in-process connection to itself, for instance); no authentication.
    pub fn from_channel(channel: Channel) -> Client {
        Client {
            channel: Transport::Channel(channel),
            interceptor: TokenInterceptor::default(),
            credentials: None,
        }
    }

    /// Dials the one endpoint of `config` as a single HTTP/2 connection driven by hyper
    /// directly ([`Transport::Direct`]): cheaper per request than a tonic channel, but
    /// never reconnected. For load generators.
    pub async fn connect_direct(config: ClientConfig) -> Result<Client, Error> {
        let security = tls::security(&config)?;
        let endpoints = endpoints(&config)?;
        let [endpoint] = endpoints.as_slice() else {
            return Err(Error::InvalidEndpoint {
                endpoint: config.endpoints.join(","),
                reason: "a direct connection takes exactly one endpoint".to_string(),
            });
        };
        let dial = Direct::connect(endpoint.uri().clone(), security);
        let direct = tokio::time::timeout(config.dial_timeout, dial)
            .await
            .map_err(|_| Error::DialTimeout)?
            .map_err(|e| Error::Dial(e.to_string()))?;
        let client = Client::with_channel(Transport::Direct(direct), &config);
        client.authenticate_on_connect().await?;
        Ok(client)
    }

    /// Authenticates as a new client does: a server whose authentication is off
    /// ([`AUTH_NOT_ENABLED`]) is used without a token.
    async fn authenticate_on_connect(&self) -> Result<(), Error> {
        match self.authenticate().await {
            Err(status) if status.message() != AUTH_NOT_ENABLED => Err(status.into()),
            _ => Ok(()),
        }
    }

    /// Authenticates with the configured user and password and keeps the token for the
    /// calls that follow, as etcd's Go client does: without credentials (or with an empty
    /// user or password) this does nothing. A server whose authentication is off answers
    /// [`AUTH_NOT_ENABLED`]; the client then sends no token.
    pub async fn authenticate(&self) -> Result<(), tonic::Status> {
        let (Some(creds), Some(cell)) = (&self.credentials, &self.interceptor.token) else {
            return Ok(());
        };
        let resp = AuthClient::new(self.channel.clone())
            .authenticate(AuthenticateRequest {
                name: creds.user.clone(),
                password: creds.password.clone(),
            })
            .await;
        let token = match resp {
            Ok(resp) => Some(
                AsciiMetadataValue::try_from(resp.into_inner().token.as_str())
                    .map_err(|e| tonic::Status::internal(e.to_string()))?,
            ),
            Err(status) if status.message() == AUTH_NOT_ENABLED => {
                if let Ok(mut t) = cell.write() {
                    *t = None;
                }
                return Err(status);
            }
            Err(status) => return Err(status),
        };
        if let Ok(mut t) = cell.write() {
            *t = token;
        }
        Ok(())
    }

    /// Whether a failed call should be made again after authenticating again, as the Go
    /// client decides: the token is unknown or older than the auth store, or the server
    /// saw no user although this client has credentials. A write refused at apply with
    /// [`AUTH_OLD_REVISION_AT_APPLY`] is retried too, which the Go client 3.5.1 does not
    /// do (it fails the call).
    pub fn should_refresh_token(&self, status: &tonic::Status) -> bool {
        self.credentials.is_some()
            && matches!(
                status.message(),
                USER_EMPTY | INVALID_AUTH_TOKEN | AUTH_OLD_REVISION | AUTH_OLD_REVISION_AT_APPLY
            )
    }

    /// Runs a call; when the server no longer takes the token
    /// ([`Client::should_refresh_token`]), authenticates once more and runs it again.
    pub async fn with_reauth<T, F, Fut>(&self, mut call: F) -> Result<T, tonic::Status>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, tonic::Status>>,
    {
        match call().await {
            Err(status) if self.should_refresh_token(&status) => {
                self.authenticate().await?;
                call().await
            }
            other => other,
        }
    }

    /// The auth token in use, if any.
    pub fn token(&self) -> Option<String> {
        let cell = self.interceptor.token.as_ref()?;
        let token = cell.read().ok()?.clone()?;
        token.to_str().ok().map(str::to_string)
    }

    /// The service stack every client below uses.
    fn service(&self) -> Service {
        InterceptedService::new(self.channel.clone(), self.interceptor.clone())
    }

    /// The KV service.
    pub fn kv(&self) -> KvClient<Service> {
        KvClient::new(self.service()).max_decoding_message_size(MAX_RESPONSE_BYTES)
    }

    /// The Watch service.
    pub fn watch(&self) -> WatchClient<Service> {
        WatchClient::new(self.service()).max_decoding_message_size(MAX_RESPONSE_BYTES)
    }

    /// The Lease service.
    pub fn lease(&self) -> LeaseClient<Service> {
        LeaseClient::new(self.service()).max_decoding_message_size(MAX_RESPONSE_BYTES)
    }

    /// The Cluster service.
    pub fn cluster(&self) -> ClusterClient<Service> {
        ClusterClient::new(self.service()).max_decoding_message_size(MAX_RESPONSE_BYTES)
    }

    /// The Maintenance service.
    pub fn maintenance(&self) -> MaintenanceClient<Service> {
        MaintenanceClient::new(self.service()).max_decoding_message_size(MAX_RESPONSE_BYTES)
    }

    /// The Auth service.
    pub fn auth(&self) -> AuthClient<Service> {
        AuthClient::new(self.service()).max_decoding_message_size(MAX_RESPONSE_BYTES)
    }
}

/// The transport for several endpoints: tonic's balanced channel in the clear; over TLS
/// (which tonic's balancer cannot dial through our connector) one lazy channel per
/// endpoint, moving to the next when a call cannot reach the current one.
fn several(endpoints: Vec<Endpoint>, security: Security) -> Transport {
    match security {
        Security::Plain => Transport::Channel(Channel::balance_list(endpoints.into_iter())),
        tls => Transport::Rotate(Rotate::new(
            endpoints
                .into_iter()
                .map(|ep| ep.connect_with_connector_lazy(connector(tls.clone())))
                .collect(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A restarted server used to end a mirror or a watch: the broken connection reaches the watch
    /// as `Unknown` ("h2 protocol error"), which was taken for the server's refusal.
    #[test]
    fn a_broken_connection_is_retried_and_a_refusal_is_not() {
        let from_transport =
            tonic::Status::from_error(Box::new(std::io::Error::other("connection reset")));
        assert_eq!(from_transport.code(), tonic::Code::Unknown);
        assert!(stream_broken(&from_transport));
        assert!(stream_broken(&tonic::Status::unavailable("no leader")));
        assert!(!stream_broken(&tonic::Status::unknown(
            "etcdserver: no space"
        )));
        assert!(!stream_broken(&tonic::Status::permission_denied("denied")));
    }

    #[test]
    fn endpoint_urls() {
        assert_eq!(endpoint_url("127.0.0.1:2379"), "http://127.0.0.1:2379");
        assert_eq!(endpoint_url("http://a:1"), "http://a:1");
        assert_eq!(endpoint_url("https://a:1"), "http://a:1");
    }

    #[test]
    fn credentials_need_a_user_and_a_password() {
        let with = |user: &str, password: &str| {
            let mut cfg = ClientConfig::new(["127.0.0.1:1"]);
            cfg.user = Some(user.into());
            cfg.password = Some(password.into());
            credentials(&cfg).is_some()
        };
        assert!(with("root", "pw"));
        assert!(!with("root", ""));
        assert!(!with("", "pw"));
        assert!(credentials(&ClientConfig::default()).is_none());
    }

    #[tokio::test]
    async fn tls_files_are_read_before_dialing() {
        let mut cfg = ClientConfig::new(["127.0.0.1:1"]);
        cfg.cacert = Some("/nonexistent/ca.pem".into());
        let err = Client::connect(cfg).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "open /nonexistent/ca.pem: no such file or directory"
        );
    }
}
