//! A thin async client for the etcd v3 API over tonic, used by cairnctl, tests and
//! benchmarks.
//!
//! It dials the endpoints, authenticates when a user is given (the token then rides on
//! every request as the `token` metadata header, as etcd's clients send it) and hands out
//! the generated tonic clients, so callers use the full API. Load balancing and failover
//! are tonic's `Channel::balance_list` for now.
//!
//! Depends only on `cairn-proto`; nothing in the server.
//!
//! # Layout
//!
//! - `lib.rs`: [`ClientConfig`], [`Client`], [`Error`] and the [`TokenInterceptor`] that
//!   attaches the auth token.
//! - `coalesce.rs`: connections whose writes are gathered into fewer system calls, dialled
//!   by [`Client`] and accepted by the server.
//! - `transport.rs`: what requests travel on: a tonic `Channel`, or one HTTP/2 connection
//!   driven by hyper directly (for load generators).
//! - `concurrency.rs`: sessions, mutexes and elections as etcd's `concurrency` package
//!   builds them from leases, transactions and watches.

pub mod coalesce;
pub mod concurrency;
pub mod transport;

use std::time::Duration;

use cairn_proto::etcdserverpb::{
    auth_client::AuthClient, cluster_client::ClusterClient, kv_client::KvClient,
    lease_client::LeaseClient, maintenance_client::MaintenanceClient, watch_client::WatchClient,
    AuthenticateRequest,
};
use tonic::metadata::AsciiMetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use transport::{Direct, Transport};

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
    /// TLS was asked for; it is not implemented in the client yet.
    #[error("TLS not supported yet")]
    TlsNotSupported,
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
    /// Endpoints as `host:port` or `http://host:port`.
    pub endpoints: Vec<String>,
    /// How long to wait for the first connection.
    pub dial_timeout: Duration,
    /// User name; when set, the client authenticates before anything else.
    pub user: Option<String>,
    /// Password for `user`.
    pub password: Option<String>,
    /// CA bundle for verifying servers (TLS is not supported yet).
    pub cacert: Option<String>,
    /// Client certificate (TLS is not supported yet).
    pub cert: Option<String>,
    /// Client key (TLS is not supported yet).
    pub key: Option<String>,
    /// Skip server certificate verification (TLS is not supported yet).
    pub insecure_skip_tls_verify: bool,
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
            insecure_skip_tls_verify: false,
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

/// Attaches the auth token, when there is one, as the `token` metadata header.
#[derive(Debug, Clone, Default)]
pub struct TokenInterceptor {
    token: Option<AsciiMetadataValue>,
}

impl tonic::service::Interceptor for TokenInterceptor {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(token) = &self.token {
            req.metadata_mut().insert("token", token.clone());
        }
        Ok(req)
    }
}

/// The channel every generated client is built on.
pub type Service = InterceptedService<Transport, TokenInterceptor>;

/// A connected client. Cloning is cheap and shares the connection.
#[derive(Debug, Clone)]
pub struct Client {
    channel: Transport,
    interceptor: TokenInterceptor,
}

/// Turns `host:port` into `http://host:port`; refuses `https://` for now.
fn endpoint_url(endpoint: &str) -> Result<String, Error> {
    if endpoint.starts_with("https://") || endpoint.starts_with("unixs://") {
        return Err(Error::TlsNotSupported);
    }
    if let Some(rest) = endpoint.strip_prefix("http://") {
        return Ok(format!("http://{rest}"));
    }
    Ok(format!("http://{endpoint}"))
}

/// The configured endpoints, checked, with the dial timeout set.
fn endpoints(config: &ClientConfig) -> Result<Vec<Endpoint>, Error> {
    if config.cacert.is_some() || config.cert.is_some() || config.key.is_some() {
        return Err(Error::TlsNotSupported);
    }
    config
        .endpoints
        .iter()
        .map(|ep| {
            let endpoint =
                Endpoint::from_shared(endpoint_url(ep)?).map_err(|e| Error::InvalidEndpoint {
                    endpoint: ep.clone(),
                    reason: e.to_string(),
                })?;
            Ok(endpoint.connect_timeout(config.dial_timeout))
        })
        .collect()
}

impl Client {
    /// Dials the endpoints and, when a user is configured, authenticates.
    pub async fn connect(config: ClientConfig) -> Result<Client, Error> {
        let mut endpoints = endpoints(&config)?;
        let channel = match endpoints.len() {
            0 => return Err(Error::NoEndpoints),
            1 => {
                let ep = endpoints.remove(0);
                let connect = ep.connect_with_connector(tower::service_fn(coalesce::dial));
                tokio::time::timeout(config.dial_timeout, connect)
                    .await
                    .map_err(|_| Error::DialTimeout)??
            }
            _ => Channel::balance_list(endpoints.into_iter()),
        };
        let mut client = Client {
            channel: Transport::Channel(channel),
            interceptor: TokenInterceptor::default(),
        };
        client.authenticate(config.user, config.password).await?;
        Ok(client)
    }

    /// Builds a client without dialing: the connection is made by the first request, as
    /// etcd's Go client does, so an unreachable endpoint shows up as a failed request.
    /// Authentication, when configured, is done here and so does dial.
    pub async fn connect_lazy(config: ClientConfig) -> Result<Client, Error> {
        let mut endpoints = endpoints(&config)?;
        let channel = match endpoints.len() {
            0 => return Err(Error::NoEndpoints),
            1 => endpoints
                .remove(0)
                .connect_with_connector_lazy(tower::service_fn(coalesce::dial)),
            _ => Channel::balance_list(endpoints.into_iter()),
        };
        let mut client = Client {
            channel: Transport::Channel(channel),
            interceptor: TokenInterceptor::default(),
        };
        client.authenticate(config.user, config.password).await?;
        Ok(client)
    }

    /// A client whose requests travel on `channel`, made by the caller (the server's
    /// in-process connection to itself, for instance); no authentication.
    pub fn from_channel(channel: Channel) -> Client {
        Client {
            channel: Transport::Channel(channel),
            interceptor: TokenInterceptor::default(),
        }
    }

    /// Dials the one endpoint of `config` as a single HTTP/2 connection driven by hyper
    /// directly ([`Transport::Direct`]): cheaper per request than a tonic channel, but
    /// never reconnected. For load generators.
    pub async fn connect_direct(config: ClientConfig) -> Result<Client, Error> {
        let endpoints = endpoints(&config)?;
        let [endpoint] = endpoints.as_slice() else {
            return Err(Error::InvalidEndpoint {
                endpoint: config.endpoints.join(","),
                reason: "a direct connection takes exactly one endpoint".to_string(),
            });
        };
        let dial = Direct::connect(endpoint.uri().clone());
        let direct = tokio::time::timeout(config.dial_timeout, dial)
            .await
            .map_err(|_| Error::DialTimeout)?
            .map_err(|e| Error::Dial(e.to_string()))?;
        let mut client = Client {
            channel: Transport::Direct(direct),
            interceptor: TokenInterceptor::default(),
        };
        client.authenticate(config.user, config.password).await?;
        Ok(client)
    }

    async fn authenticate(
        &mut self,
        user: Option<String>,
        password: Option<String>,
    ) -> Result<(), Error> {
        let Some(user) = user else { return Ok(()) };
        let resp = self
            .auth()
            .authenticate(AuthenticateRequest {
                name: user,
                password: password.unwrap_or_default(),
            })
            .await?
            .into_inner();
        let token = AsciiMetadataValue::try_from(resp.token.as_str())
            .map_err(|e| tonic::Status::internal(e.to_string()))?;
        self.interceptor.token = Some(token);
        Ok(())
    }

    /// The auth token obtained at connect time, if any.
    pub fn token(&self) -> Option<&str> {
        self.interceptor
            .token
            .as_ref()
            .and_then(|t| t.to_str().ok())
    }

    fn service(&self) -> Service {
        InterceptedService::new(self.channel.clone(), self.interceptor.clone())
    }

    /// The KV service.
    pub fn kv(&self) -> KvClient<Service> {
        KvClient::new(self.service())
    }

    /// The Watch service.
    pub fn watch(&self) -> WatchClient<Service> {
        WatchClient::new(self.service())
    }

    /// The Lease service.
    pub fn lease(&self) -> LeaseClient<Service> {
        LeaseClient::new(self.service())
    }

    /// The Cluster service.
    pub fn cluster(&self) -> ClusterClient<Service> {
        ClusterClient::new(self.service())
    }

    /// The Maintenance service.
    pub fn maintenance(&self) -> MaintenanceClient<Service> {
        MaintenanceClient::new(self.service())
    }

    /// The Auth service.
    pub fn auth(&self) -> AuthClient<Service> {
        AuthClient::new(self.service())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_urls() {
        assert_eq!(
            endpoint_url("127.0.0.1:2379").unwrap(),
            "http://127.0.0.1:2379"
        );
        assert_eq!(endpoint_url("http://a:1").unwrap(), "http://a:1");
        assert!(matches!(
            endpoint_url("https://a:1"),
            Err(Error::TlsNotSupported)
        ));
    }

    #[tokio::test]
    async fn tls_files_are_refused() {
        let mut cfg = ClientConfig::new(["127.0.0.1:1"]);
        cfg.cacert = Some("ca.pem".into());
        let err = Client::connect(cfg).await.unwrap_err();
        assert_eq!(err.to_string(), "TLS not supported yet");
    }
}
