//! TLS on the client and peer ports, from etcd's flags.
//!
//! - This file: the settings ([`TlsSettings`], filled by `config.rs`), the TLS a member
//!   runs with ([`Tls`]: one [`ServerTls`] per side that has https listeners, and a
//!   [`DialTls`] for dialling other members), and re-reading files that changed.
//! - `files.rs`: PEM certificates, keys, CA pools, CRLs; a certificate's CN and hostnames.
//! - `ciphers.rs`: `--cipher-suites`, Go's names mapped to rustls's suites.
//! - `verify.rs`: `--peer-cert-allowed-cn` and the allowed-hostname flags, checked after
//!   the chain; the verifier peers made with `--peer-auto-tls` use.
//! - `auto.rs`: `--auto-tls` and `--peer-auto-tls`, self-signed certificates.
//! - `dial.rs`: the peer gRPC clients' connector, TLS for https peer URLs.
//!
//! As etcd 3.5 serves them, the listeners speak TLS 1.2 only, and a trusted CA file asks
//! for a client certificate and refuses a connection without a valid one, with or without
//! `--client-cert-auth`. etcd reads the certificate files at every handshake; cairn looks
//! at their length and modification time at most once a second and rebuilds its rustls
//! configuration when any changed, so rotating files on disk needs no restart and an
//! unchanged file costs no read.
//!
//! Depends on nothing else in the crate but [`crate::identity`].

mod auto;
mod ciphers;
pub mod dial;
mod files;
mod verify;

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use rustls::crypto::CryptoProvider;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::SupportedCipherSuite;

pub use ciphers::{parse as parse_cipher_suites, CipherError};
pub use files::{check_peer_san, common_name};

use files::Stamp;
use verify::{Allowed, AllowedClient};

/// How often, at most, the files behind a configuration are looked at again.
const RECHECK: Duration = Duration::from_secs(1);

/// The protocols a client listener offers: gRPC and the HTTP endpoints on one port.
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// One side's TLS flags (`--cert-file` ... or `--peer-cert-file` ...).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SideSettings {
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub trusted_ca_file: Option<PathBuf>,
    pub client_cert_auth: bool,
    pub crl_file: Option<PathBuf>,
    /// `--peer-cert-allowed-cn` (peer side only).
    pub allowed_cn: Option<String>,
    /// `--client-cert-allowed-hostname` or `--peer-cert-allowed-hostname`.
    pub allowed_hostname: Option<String>,
    pub auto_tls: bool,
}

/// Every TLS flag.
#[derive(Debug, Clone, Default)]
pub struct TlsSettings {
    pub client: SideSettings,
    pub peer: SideSettings,
    /// `--cipher-suites`; empty for rustls's defaults.
    pub cipher_suites: Vec<SupportedCipherSuite>,
    /// The TLS versions `--tls-min-version` and `--tls-max-version` allow; empty means
    /// TLS 1.2 only, as etcd 3.5.1.
    pub versions: Vec<&'static rustls::SupportedProtocolVersion>,
    /// `--self-signed-cert-validity`, in years.
    pub self_signed_cert_validity: u64,
    /// `--experimental-peer-skip-client-san-verification`.
    pub skip_peer_san_check: bool,
}

/// Why TLS cannot be set up; worded as etcd's where etcd has the error.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("open {path}: {why}")]
    Open { path: String, why: String },
    #[error("tls: {why} ({path})")]
    Pem { path: String, why: String },
    #[error("TLS key/cert (--cert-file, --key-file) must be provided for client url {0} with HTTPS scheme")]
    ClientUrlNeedsCert(String),
    #[error("cannot listen on TLS for {0}: KeyFile and CertFile are not presented")]
    PeerUrlNeedsCert(String),
    #[error("AllowedCN and AllowedHostname are mutually exclusive (cn={0:?}, hostname={1:?})")]
    CnAndHostname(String, String),
    #[error("{flag} needs {needs}: cairn does not use the system's CA certificates")]
    NeedsCa {
        flag: &'static str,
        needs: &'static str,
    },
    #[error("cannot generate cert: {0}")]
    AutoTls(String),
    #[error("tls: {0}")]
    Rustls(String),
}

fn rustls_error(e: impl std::fmt::Display) -> TlsError {
    TlsError::Rustls(e.to_string())
}

/// Which port a side's TLS serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Client,
    Peer,
}

/// One side's files once `--auto-tls` is resolved.
#[derive(Debug, Clone)]
struct Files {
    cert: PathBuf,
    key: PathBuf,
    /// Clients (or peers) must show a certificate issued by these.
    ca: Option<PathBuf>,
    crl: Option<PathBuf>,
    allowed: Option<Allowed>,
    /// Made by auto-TLS: peers then skip verifying each other, as etcd's do.
    self_signed: bool,
}

impl Files {
    /// Resolves a side's flags; `None` when it has neither files nor auto-TLS.
    fn resolve(
        s: &SideSettings,
        side: Side,
        data_dir: &Path,
        hosts: &[String],
        years: u64,
    ) -> Result<Option<Files>, TlsError> {
        let given = |p: &Option<PathBuf>| p.clone().filter(|p| !p.as_os_str().is_empty());
        let (cert, key, self_signed) = match (given(&s.cert_file), given(&s.key_file)) {
            (Some(c), Some(k)) => (c, k, false),
            _ if s.auto_tls => {
                let dir = data_dir.join("fixtures").join(match side {
                    Side::Client => "client",
                    Side::Peer => "peer",
                });
                let (c, k) = auto::self_cert(&dir, hosts, years, side == Side::Peer)?;
                (c, k, true)
            }
            _ => return Ok(None),
        };
        let ca = given(&s.trusted_ca_file);
        if s.client_cert_auth && ca.is_none() {
            return Err(TlsError::NeedsCa {
                flag: match side {
                    Side::Client => "--client-cert-auth",
                    Side::Peer => "--peer-client-cert-auth",
                },
                needs: match side {
                    Side::Client => "--trusted-ca-file",
                    Side::Peer => "--peer-trusted-ca-file",
                },
            });
        }
        let cn = s.allowed_cn.clone().filter(|c| !c.is_empty());
        let host = s.allowed_hostname.clone().filter(|h| !h.is_empty());
        let allowed = match (cn, host) {
            (Some(cn), Some(host)) => return Err(TlsError::CnAndHostname(cn, host)),
            (Some(cn), None) => Some(Allowed::CommonName(cn)),
            (None, Some(host)) => Some(Allowed::Hostname(host)),
            (None, None) => None,
        };
        Ok(Some(Files {
            cert,
            key,
            ca,
            crl: given(&s.crl_file),
            allowed,
            self_signed,
        }))
    }

    /// The files whose change means a new configuration.
    fn paths(&self) -> Vec<PathBuf> {
        let mut paths = vec![self.cert.clone(), self.key.clone()];
        paths.extend(self.ca.iter().cloned());
        paths.extend(self.crl.iter().cloned());
        paths
    }
}

/// Why `--tls-min-version` or `--tls-max-version` is refused; etcd's words, but for the
/// versions before 1.2, which rustls does not speak.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VersionError {
    #[error("unexpected TLS version {0:?} (must be one of: TLS1.0, TLS1.1, TLS1.2, TLS1.3)")]
    Unknown(String),
    #[error("TLS version {0} is not supported by cairn, which speaks TLS 1.2 and 1.3 only")]
    TooOld(String),
    #[error("min version ({0}) is greater than max version ({1})")]
    MinAboveMax(String, String),
    #[error("cipher suites cannot be configured when only TLS1.3 is enabled")]
    CiphersWithTls13Only,
}

/// The protocol versions from `--tls-min-version` and `--tls-max-version` (etcd's names;
/// an empty maximum is TLS 1.2, what etcd 3.5.1 speaks); `ciphers` says whether
/// `--cipher-suites` was given, which TLS 1.3 alone cannot honour.
pub fn parse_versions(
    min: &str,
    max: &str,
    ciphers: bool,
) -> Result<Vec<&'static rustls::SupportedProtocolVersion>, VersionError> {
    // 0 for "", else 10 to 13.
    let number = |v: &str| -> Result<u8, VersionError> {
        match v {
            "" => Ok(0),
            "TLS1.0" | "TLS1.1" => Err(VersionError::TooOld(v.to_string())),
            "TLS1.2" => Ok(12),
            "TLS1.3" => Ok(13),
            _ => Err(VersionError::Unknown(v.to_string())),
        }
    };
    let (lo, hi) = (number(min)?.max(12), number(max)?);
    if hi != 0 && lo > hi {
        return Err(VersionError::MinAboveMax(min.to_string(), max.to_string()));
    }
    if lo == 13 && ciphers {
        return Err(VersionError::CiphersWithTls13Only);
    }
    let hi = if hi == 0 { lo } else { hi };
    Ok(
        [(12, &rustls::version::TLS12), (13, &rustls::version::TLS13)]
            .into_iter()
            .filter(|(n, _)| (lo..=hi).contains(n))
            .map(|(_, v)| v)
            .collect(),
    )
}

/// The crypto provider and TLS versions every configuration is built with.
#[derive(Clone)]
struct Protocol {
    provider: Arc<CryptoProvider>,
    versions: Vec<&'static rustls::SupportedProtocolVersion>,
}

/// The versions to offer: `settings.versions`, or TLS 1.2 alone.
fn versions(
    settings: &[&'static rustls::SupportedProtocolVersion],
) -> Vec<&'static rustls::SupportedProtocolVersion> {
    if settings.is_empty() {
        vec![&rustls::version::TLS12]
    } else {
        settings.to_vec()
    }
}

/// ring, with `--cipher-suites` when given.
fn provider(suites: &[SupportedCipherSuite]) -> Arc<CryptoProvider> {
    // ring is the chosen provider (aws-lc-rs needs cmake). rustls 0.23.48 deprecates it
    // for lacking post-quantum key exchange, which TLS 1.2, all etcd 3.5 speaks, lacks too.
    #[allow(deprecated)]
    let mut p = rustls::crypto::ring::default_provider();
    if !suites.is_empty() {
        p.cipher_suites = suites.to_vec();
    }
    Arc::new(p)
}

/// A configuration built from files, built again when they change.
struct Reloading<T> {
    paths: Vec<PathBuf>,
    /// [`RECHECK`], shorter in unit tests.
    recheck: Duration,
    build: Box<dyn Fn() -> Result<T, TlsError> + Send + Sync>,
    /// The configuration in use, the stamps of the files it was built from, and when they
    /// were last looked at. Held only to compare stamps and swap the configuration.
    state: parking_lot::Mutex<ReloadState<T>>,
}

struct ReloadState<T> {
    checked: Instant,
    stamps: Vec<Stamp>,
    current: Arc<T>,
}

impl<T> Reloading<T> {
    fn new(
        paths: Vec<PathBuf>,
        build: Box<dyn Fn() -> Result<T, TlsError> + Send + Sync>,
    ) -> Result<Self, TlsError> {
        let stamps = files::stamps(&paths);
        let current = Arc::new(build()?);
        Ok(Reloading {
            paths,
            recheck: RECHECK,
            build,
            state: parking_lot::Mutex::new(ReloadState {
                checked: Instant::now(),
                stamps,
                current,
            }),
        })
    }

    /// The configuration for a new connection: rebuilt first if a file changed since it
    /// was built. A file that does not make a configuration (a rotation half written, a
    /// key that does not match its certificate) keeps the one in use, and is tried again
    /// at the next check.
    fn current(&self) -> Arc<T> {
        let mut state = self.state.lock();
        if state.checked.elapsed() >= self.recheck {
            state.checked = Instant::now();
            let stamps = files::stamps(&self.paths);
            if stamps != state.stamps {
                match (self.build)() {
                    Ok(built) => {
                        state.current = Arc::new(built);
                        state.stamps = stamps;
                        tracing::info!(files = ?self.paths, "reloaded TLS certificates");
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "failed to reload TLS certificates; keeping the ones in use");
                    }
                }
            }
        }
        state.current.clone()
    }
}

/// A rustls server configuration for one side's files.
fn server_config(files: &Files, proto: &Protocol) -> Result<rustls::ServerConfig, TlsError> {
    let provider = &proto.provider;
    let chain = files::certs(&files.cert)?;
    let key = files::key(&files.key)?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&proto.versions)
        .map_err(rustls_error)?;
    let builder = match &files.ca {
        Some(ca) => {
            let mut verifier =
                WebPkiClientVerifier::builder_with_provider(files::roots(ca)?, provider.clone());
            if let Some(crl) = &files.crl {
                verifier = verifier
                    .with_crls(files::crls(crl)?)
                    .only_check_end_entity_revocation()
                    .allow_unknown_revocation_status();
            }
            let inner = verifier.build().map_err(rustls_error)?;
            let verifier: Arc<dyn ClientCertVerifier> = match &files.allowed {
                Some(allowed) => Arc::new(AllowedClient {
                    inner,
                    allowed: allowed.clone(),
                }),
                None => inner,
            };
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(chain, key).map_err(rustls_error)?;
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// A rustls client configuration for dialling other members with one side's files.
fn dial_config(files: &Files, proto: &Protocol) -> Result<rustls::ClientConfig, TlsError> {
    let provider = &proto.provider;
    let chain = files::certs(&files.cert)?;
    let key = files::key(&files.key)?;
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&proto.versions)
        .map_err(rustls_error)?;
    let builder = match (&files.ca, files.self_signed) {
        (_, true) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(
                // Peers made with --peer-auto-tls: self-signed, so not verified, as etcd.
                cairn_client::tls::NoVerification(provider.clone()),
            )),
        (Some(ca), false) => builder.with_root_certificates(files::roots(ca)?),
        (None, false) => {
            return Err(TlsError::NeedsCa {
                flag: "an https peer URL",
                needs: "--peer-trusted-ca-file to verify other members",
            })
        }
    };
    builder
        .with_client_auth_cert(chain, key)
        .map_err(rustls_error)
}

/// The TLS of one side's https listeners.
pub struct ServerTls {
    config: Reloading<rustls::ServerConfig>,
}

impl ServerTls {
    fn new(files: Files, proto: Protocol) -> Result<Self, TlsError> {
        let paths = files.paths();
        let config = Reloading::new(paths, Box::new(move || server_config(&files, &proto)))?;
        Ok(ServerTls { config })
    }

    /// An acceptor for one new connection, with the files as they are now.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.config.current())
    }
}

/// The TLS this member dials other members' https peer URLs with.
pub struct DialTls {
    config: Reloading<rustls::ClientConfig>,
}

impl DialTls {
    fn new(files: Files, proto: Protocol) -> Result<Self, TlsError> {
        let paths = files.paths();
        let config = Reloading::new(paths, Box::new(move || dial_config(&files, &proto)))?;
        Ok(DialTls { config })
    }

    /// A connector for one new connection.
    pub fn connector(&self) -> tokio_rustls::TlsConnector {
        tokio_rustls::TlsConnector::from(self.config.current())
    }

    /// A TLS handshake on `io`, a connection to `host_port` (a peer URL's host and port),
    /// verifying the peer's certificate against that host and presenting this member's.
    pub async fn connect<IO>(
        &self,
        host_port: &str,
        io: IO,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<IO>>
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let host = host_port
            .rsplit_once(':')
            .map_or(host_port, |(h, _)| h)
            .trim_start_matches('[')
            .trim_end_matches(']');
        let name = rustls::pki_types::ServerName::try_from(host.to_string())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        self.connector().connect(name, io).await
    }
}

/// The TLS a member runs with.
#[derive(Default)]
pub struct Tls {
    /// For the https client listeners.
    pub client: Option<Arc<ServerTls>>,
    /// For the https peer listeners.
    pub peer: Option<Arc<ServerTls>>,
    /// For dialling https peer URLs.
    pub dial: Option<Arc<DialTls>>,
}

fn is_https(url: &str) -> bool {
    url.starts_with("https://") || url.starts_with("unixs://")
}

/// The `host:port` of a URL (`config.rs` checked the URLs; this side of the crate does not
/// depend on it).
fn host_port(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1.trim_end_matches('/');
    rest.rsplit_once(':').map(|_| rest)
}

/// The hosts of `urls`, for a self-signed certificate.
fn hosts(urls: &[String]) -> Vec<String> {
    urls.iter()
        .filter_map(|u| host_port(u))
        .filter_map(|hp| hp.rsplit_once(':').map(|(h, _)| h))
        .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_string())
        .collect()
}

impl Tls {
    /// Reads (or, with auto-TLS, makes in `data_dir`) the certificates the listeners on
    /// `client_urls` and `peer_urls` need, and checks they make a configuration.
    pub fn start(
        settings: &TlsSettings,
        data_dir: &Path,
        client_urls: &[String],
        peer_urls: &[String],
    ) -> Result<Tls, TlsError> {
        let provider = Protocol {
            provider: provider(&settings.cipher_suites),
            versions: versions(&settings.versions),
        };
        let years = settings.self_signed_cert_validity;
        let mut tls = Tls::default();
        if let Some(url) = client_urls.iter().find(|u| is_https(u)) {
            let files = Files::resolve(
                &settings.client,
                Side::Client,
                data_dir,
                &hosts(client_urls),
                years,
            )?
            .ok_or_else(|| TlsError::ClientUrlNeedsCert(url.clone()))?;
            tls.client = Some(Arc::new(ServerTls::new(files, provider.clone())?));
        }
        let peer_files = Files::resolve(
            &settings.peer,
            Side::Peer,
            data_dir,
            &hosts(peer_urls),
            years,
        )?;
        if let Some(url) = peer_urls.iter().find(|u| is_https(u)) {
            let files = peer_files.clone().ok_or_else(|| {
                TlsError::PeerUrlNeedsCert(host_port(url).unwrap_or(url).to_string())
            })?;
            tls.peer = Some(Arc::new(ServerTls::new(files, provider.clone())?));
        }
        if let Some(files) = peer_files {
            tls.dial = Some(Arc::new(DialTls::new(files, provider)?));
        }
        Ok(tls)
    }
}

/// The dialler of this process's member, for the peer clients that are not handed one
/// (one member per process; the in-process test harness dials no https URL).
static PEER_DIAL: OnceLock<Arc<DialTls>> = OnceLock::new();

/// Sets the dialler [`peer_dial`] returns; the first call wins.
pub fn set_peer_dial(dial: Arc<DialTls>) {
    let _ = PEER_DIAL.set(dial);
}

/// The dialler for https peer URLs, if this member has peer TLS.
pub fn peer_dial() -> Option<Arc<DialTls>> {
    PEER_DIAL.get().cloned()
}

/// What a TLS connection's verified client certificate says about its client.
pub fn identity(conn: &rustls::ServerConnection) -> crate::identity::ConnIdentity {
    crate::identity::ConnIdentity {
        cert_common_name: conn
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(common_name)
            .map(Into::into),
        loopback: false,
    }
}

#[cfg(test)]
mod tests;
