//! TLS for client connections, set up from a [`crate::ClientConfig`] as etcd's Go client
//! sets it up from etcdctl's flags.
//!
//! Whether the connections use TLS is decided once, from the first endpoint, as the Go
//! client decides it: `http://` never; `https://` always (with the system's root
//! certificates when no CA bundle is given); a bare `host:port` when a certificate, key, CA
//! bundle or server name is given or `insecure_transport` is off. Skipping verification
//! applies only when TLS was set up by one of those. Problems with the files are reported
//! in Go's words (`open ca.pem: no such file or directory`, `tls: private key does not
//! match public key`), which etcdctl prints as they are; so are failed handshakes, as a
//! [`HandshakeError`] in the connection error's source chain.
//!
//! rustls with the ring provider, ALPN `h2`; the TLS stream runs over the same gathered
//! writes as a plain connection ([`crate::coalesce::CoalescingIo`]).

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::{PemObject, SectionKind};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::client::TlsStream;

use crate::coalesce::CoalescingIo;
use crate::{ClientConfig, Error};

/// Where Go looks for the system's root certificates on Linux, in order.
const SYSTEM_ROOTS: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/pki/tls/cacert.pem",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// How a client's connections are made.
#[derive(Clone, Default)]
pub enum Security {
    /// Plain TCP.
    #[default]
    Plain,
    /// TLS with this configuration; the server's certificate is checked against
    /// `server_name` when given, else against the host dialled.
    Tls {
        /// The rustls configuration (roots, client certificate, ALPN).
        config: Arc<rustls::ClientConfig>,
        /// The name to verify instead of the host (etcdctl's discovery domain).
        server_name: Option<String>,
    },
}

impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Security::Plain => f.write_str("Plain"),
            Security::Tls { server_name, .. } => f
                .debug_struct("Tls")
                .field("server_name", server_name)
                .finish_non_exhaustive(),
        }
    }
}

impl Security {
    /// The same security for an HTTP/1.1 request (etcdctl's `/metrics` fetch): the TLS
    /// configuration offers ALPN `http/1.1` instead of `h2`.
    pub fn for_http1(&self) -> Security {
        match self {
            Security::Plain => Security::Plain,
            Security::Tls {
                config,
                server_name,
            } => {
                let mut config = config.as_ref().clone();
                config.alpn_protocols = vec![b"http/1.1".to_vec()];
                Security::Tls {
                    config: Arc::new(config),
                    server_name: server_name.clone(),
                }
            }
        }
    }
}

/// A TLS handshake that failed, worded as Go's `crypto/tls` words it
/// (`x509: certificate signed by unknown authority`, `remote error: tls: bad
/// certificate`, `EOF`).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{go_text}")]
pub struct HandshakeError {
    /// Go's text for the failure.
    pub go_text: String,
}

/// How the connections of `config` are made, with the files read and checked.
pub fn security(config: &ClientConfig) -> Result<Security, Error> {
    let given = config.cert.is_some()
        || config.key.is_some()
        || config.cacert.is_some()
        || config.server_name.is_some();
    let tls = if given {
        Some(build(config, config.insecure_skip_tls_verify)?)
    } else if !config.insecure_transport {
        Some(build(
            &ClientConfig::default(),
            config.insecure_skip_tls_verify,
        )?)
    } else {
        None
    };
    let first = config.endpoints.first().map(String::as_str).unwrap_or("");
    let (scheme, _) = first.split_once("://").unwrap_or(("", first));
    let config_of = |tls: Arc<rustls::ClientConfig>| Security::Tls {
        config: tls,
        server_name: config.server_name.clone(),
    };
    Ok(match scheme {
        "http" | "unix" => Security::Plain,
        "https" | "unixs" => match tls {
            Some(tls) => config_of(tls),
            None => config_of(build(&ClientConfig::default(), false)?),
        },
        _ => tls.map_or(Security::Plain, config_of),
    })
}

/// The rustls configuration for the files of `config`: its client certificate and key
/// (both or neither), its CA bundle or else the system's roots.
fn build(config: &ClientConfig, skip_verify: bool) -> Result<Arc<rustls::ClientConfig>, Error> {
    let pair = match (&config.cert, &config.key) {
        (None, None) => None,
        (Some(cert), Some(key)) => Some(key_pair(cert, key)?),
        (cert, key) => {
            return Err(Error::Tls(format!(
                "KeyFile and CertFile must both be present[key: {}, cert: {}]",
                key.as_deref().unwrap_or(""),
                cert.as_deref().unwrap_or("")
            )))
        }
    };
    let roots = match &config.cacert {
        Some(path) => ca_roots(path)?,
        None => system_roots(),
    };
    let provider = Arc::new(ring_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?;
    let builder = if skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
    } else {
        builder.with_root_certificates(roots)
    };
    let mut tls = match pair {
        Some((certs, key)) => builder
            .with_client_auth_cert(certs, key)
            .map_err(|e| Error::Tls(go_key_error(&e)))?,
        None => builder.with_no_client_auth(),
    };
    tls.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(tls))
}

/// rustls's ring provider. rustls 0.23.48 deprecates it for lacking post-quantum key
/// exchange, which neither etcd 3.5's Go TLS nor the servers it talks to offer; ring is
/// the provider this workspace builds with (aws-lc-rs needs cmake).
#[allow(deprecated)]
fn ring_provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// Reads a file, failing as Go's `os.ReadFile` does.
fn read(path: &str) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|e| Error::Tls(go_io_error(path, &e)))
}

/// Go's text for a failed `os.ReadFile`: `open X: no such file or directory`.
fn go_io_error(path: &str, e: &io::Error) -> String {
    let is_dir = Path::new(path).is_dir();
    let errno = match e.kind() {
        io::ErrorKind::NotFound => "no such file or directory".to_string(),
        io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        _ if is_dir => "is a directory".to_string(),
        _ => e.to_string(),
    };
    let op = if is_dir { "read" } else { "open" };
    format!("{op} {path}: {errno}")
}

/// Every PEM section of `pem`, with its kind.
fn sections(pem: &[u8]) -> Vec<(SectionKind, Vec<u8>)> {
    <(SectionKind, Vec<u8>)>::pem_slice_iter(pem)
        .map_while(Result::ok)
        .collect()
}

fn is_key(kind: SectionKind) -> bool {
    matches!(
        kind,
        SectionKind::PrivateKey | SectionKind::RsaPrivateKey | SectionKind::EcPrivateKey
    )
}

/// A client certificate chain and its key, checked as Go's `tls.X509KeyPair` checks them.
fn key_pair(
    cert_path: &str,
    key_path: &str,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), Error> {
    let cert_pem = read(cert_path)?;
    let key_pem = read(key_path)?;
    let cert_sections = sections(&cert_pem);
    let certs: Vec<CertificateDer<'static>> = cert_sections
        .iter()
        .filter(|(kind, _)| *kind == SectionKind::Certificate)
        .map(|(_, der)| CertificateDer::from(der.clone()))
        .collect();
    if certs.is_empty() {
        let switched = cert_sections.iter().any(|(kind, _)| is_key(*kind));
        return Err(Error::Tls(if switched {
            "tls: failed to find certificate PEM data in certificate input, but did find a private key; PEM inputs may have been switched".to_string()
        } else {
            "tls: failed to find any PEM data in certificate input".to_string()
        }));
    }
    let key_sections = sections(&key_pem);
    let Some((kind, der)) = key_sections.iter().find(|(kind, _)| is_key(*kind)) else {
        let cert_instead = key_sections
            .iter()
            .any(|(kind, _)| *kind == SectionKind::Certificate);
        return Err(Error::Tls(if cert_instead {
            "tls: found a certificate rather than a key in the PEM for the private key".to_string()
        } else {
            "tls: failed to find any PEM data in key input".to_string()
        }));
    };
    let key = match kind {
        SectionKind::RsaPrivateKey => PrivateKeyDer::Pkcs1(der.clone().into()),
        SectionKind::EcPrivateKey => PrivateKeyDer::Sec1(der.clone().into()),
        _ => PrivateKeyDer::Pkcs8(der.clone().into()),
    };
    Ok((certs, key))
}

/// Go's text for a client certificate and key rustls refused.
fn go_key_error(e: &rustls::Error) -> String {
    match e {
        rustls::Error::InconsistentKeys(_) => "tls: private key does not match public key".into(),
        _ => "tls: failed to parse private key".into(),
    }
}

/// The certificates of a CA bundle; every PEM block in it must be one, as Go's
/// `tlsutil.NewCertPool` requires.
fn ca_roots(path: &str) -> Result<RootCertStore, Error> {
    let pem = read(path)?;
    let mut roots = RootCertStore::empty();
    for (kind, der) in sections(&pem) {
        if kind != SectionKind::Certificate {
            return Err(Error::Tls("x509: malformed certificate".into()));
        }
        roots
            .add(CertificateDer::from(der))
            .map_err(|_| Error::Tls("x509: malformed certificate".into()))?;
    }
    Ok(roots)
}

/// The system's root certificates, from `SSL_CERT_FILE` or the first bundle of
/// [`SYSTEM_ROOTS`] that can be read, as Go finds them; none if there is none.
fn system_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    let from_env = std::env::var("SSL_CERT_FILE").ok();
    let candidates = from_env
        .iter()
        .map(String::as_str)
        .chain(SYSTEM_ROOTS.iter().copied());
    for path in candidates {
        if let Ok(pem) = std::fs::read(path) {
            let ders = CertificateDer::pem_slice_iter(&pem).map_while(Result::ok);
            roots.add_parsable_certificates(ders);
            break;
        }
    }
    roots
}

/// Accepts any server certificate (`--insecure-skip-tls-verify`; the server's peers with
/// `--peer-auto-tls`); the handshake's signatures are still checked, so the connection is
/// at least to whoever holds the key it presented.
#[derive(Debug)]
pub struct NoVerification(pub Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Go's text for a failed handshake.
fn go_handshake_text(e: &io::Error) -> String {
    use rustls::{AlertDescription as A, CertificateError as C};
    let Some(tls) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    else {
        return match e.kind() {
            io::ErrorKind::UnexpectedEof => "EOF".into(),
            io::ErrorKind::ConnectionReset => "read: connection reset by peer".into(),
            _ => e.to_string(),
        };
    };
    match tls {
        rustls::Error::InvalidCertificate(C::UnknownIssuer) => {
            "x509: certificate signed by unknown authority".into()
        }
        rustls::Error::InvalidCertificate(C::Expired | C::ExpiredContext { .. })
        | rustls::Error::InvalidCertificate(C::NotValidYet | C::NotValidYetContext { .. }) => {
            "x509: certificate has expired or is not yet valid".into()
        }
        rustls::Error::InvalidCertificate(C::NotValidForNameContext {
            expected,
            presented,
        }) => go_name_mismatch(expected, presented),
        rustls::Error::InvalidCertificate(C::NotValidForName) => {
            "x509: certificate is not valid for the name dialled".into()
        }
        rustls::Error::AlertReceived(alert) => {
            let name = match alert {
                A::BadCertificate => "bad certificate",
                A::UnknownCA => "unknown certificate authority",
                A::HandshakeFailure => "handshake failure",
                A::CertificateRequired => "certificate required",
                A::ProtocolVersion => "protocol version not supported",
                A::CertificateExpired => "expired certificate",
                A::CertificateRevoked => "revoked certificate",
                A::UnsupportedCertificate => "unsupported certificate",
                A::AccessDenied => "access denied",
                A::NoApplicationProtocol => "no application protocol",
                _ => "internal error",
            };
            format!("remote error: tls: {name}")
        }
        other => format!("tls: {other}"),
    }
}

/// Go's `x509.HostnameError` text for a certificate not valid for `expected`, from the
/// names rustls found in it (`DnsName("a")`, `IpAddress(1.2.3.4)`).
fn go_name_mismatch(expected: &ServerName<'_>, presented: &[String]) -> String {
    let host = expected.to_str();
    let names = |prefix: &str, suffix: &str| -> Vec<String> {
        presented
            .iter()
            .filter_map(|p| p.strip_prefix(prefix)?.strip_suffix(suffix))
            .map(str::to_string)
            .collect()
    };
    let valid = if matches!(expected, ServerName::IpAddress(_)) {
        let ips = names("IpAddress(", ")");
        if ips.is_empty() {
            return format!(
                "x509: cannot validate certificate for {host} because it doesn't contain any IP SANs"
            );
        }
        ips
    } else {
        names("DnsName(\"", "\")")
    };
    if valid.is_empty() {
        return format!("x509: certificate is not valid for any names, but wanted to match {host}");
    }
    format!(
        "x509: certificate is valid for {}, not {host}",
        valid.join(", ")
    )
}

/// A connection, in the clear or under TLS.
pub enum Conn {
    /// Plain TCP with gathered writes.
    Plain(CoalescingIo),
    /// TLS over the same.
    Tls(Box<TlsStream<CoalescingIo>>),
}

/// Dials `uri` as `security` says: TCP (see [`crate::coalesce::dial`]), then the TLS
/// handshake when asked for. A failed handshake is an error whose source is a
/// [`HandshakeError`].
pub async fn dial(
    uri: tonic::transport::Uri,
    security: Security,
) -> io::Result<hyper_util::rt::TokioIo<Conn>> {
    let host = uri
        .host()
        .unwrap_or_default()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let io = crate::coalesce::dial(uri).await?.into_inner();
    let conn = match security {
        Security::Plain => Conn::Plain(io),
        Security::Tls {
            config,
            server_name,
        } => {
            let name = server_name.unwrap_or(host);
            let name = ServerName::try_from(name.clone()).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("invalid server name {name}"),
                )
            })?;
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, io)
                .await
                .map_err(|e| {
                    io::Error::other(HandshakeError {
                        go_text: go_handshake_text(&e),
                    })
                })?;
            Conn::Tls(Box::new(tls))
        }
    };
    Ok(hyper_util::rt::TokioIo::new(conn))
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(io) => Pin::new(io).poll_read(cx, buf),
            Conn::Tls(io) => Pin::new(io.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(io) => Pin::new(io).poll_write(cx, data),
            Conn::Tls(io) => Pin::new(io.as_mut()).poll_write(cx, data),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(io) => Pin::new(io).poll_write_vectored(cx, bufs),
            Conn::Tls(io) => Pin::new(io.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Plain(io) => io.is_write_vectored(),
            Conn::Tls(io) => io.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(io) => Pin::new(io).poll_flush(cx),
            Conn::Tls(io) => Pin::new(io.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(io) => Pin::new(io).poll_shutdown(cx),
            Conn::Tls(io) => Pin::new(io.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(endpoint: &str) -> ClientConfig {
        ClientConfig::new([endpoint])
    }

    #[test]
    fn the_first_endpoint_decides_as_the_go_client_does() {
        let plain = |c: &ClientConfig| matches!(security(c).unwrap(), Security::Plain);
        assert!(plain(&cfg("127.0.0.1:2379")));
        assert!(plain(&cfg("http://127.0.0.1:2379")));
        assert!(!plain(&cfg("https://127.0.0.1:2379")));
        let mut strict = cfg("127.0.0.1:2379");
        strict.insecure_transport = false;
        assert!(!plain(&strict));
        // A CA bundle does not make an http:// endpoint secure.
        let dir = std::env::temp_dir().join(format!("cairn-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = dir.join("empty.pem");
        std::fs::write(&ca, b"").unwrap();
        let mut http = cfg("http://127.0.0.1:2379");
        http.cacert = Some(ca.display().to_string());
        assert!(plain(&http));
        let mut bare = cfg("127.0.0.1:2379");
        bare.cacert = Some(ca.display().to_string());
        assert!(!plain(&bare));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn name_mismatches_are_worded_as_go() {
        let ip = ServerName::try_from("127.0.0.2").unwrap();
        let dns = ServerName::try_from("db.example").unwrap();
        let cases = [
            (&ip, vec!["DnsName(\"localhost\")"], "x509: cannot validate certificate for 127.0.0.2 because it doesn't contain any IP SANs"),
            (&ip, vec!["IpAddress(127.0.0.1)", "DnsName(\"localhost\")"], "x509: certificate is valid for 127.0.0.1, not 127.0.0.2"),
            (&dns, vec!["DnsName(\"a.example\")", "DnsName(\"b.example\")"], "x509: certificate is valid for a.example, b.example, not db.example"),
            (&dns, vec!["IpAddress(127.0.0.1)"], "x509: certificate is not valid for any names, but wanted to match db.example"),
        ];
        for (name, presented, want) in cases {
            let presented: Vec<String> = presented.into_iter().map(String::from).collect();
            assert_eq!(go_name_mismatch(name, &presented), want);
        }
    }

    #[test]
    fn file_errors_are_worded_as_go() {
        let err = |c: ClientConfig| security(&c).unwrap_err().to_string();
        let mut c = cfg("https://a:1");
        c.cacert = Some("/nonexistent/ca.pem".into());
        assert_eq!(
            err(c),
            "open /nonexistent/ca.pem: no such file or directory"
        );
        let mut c = cfg("https://a:1");
        c.cert = Some("c.pem".into());
        assert_eq!(
            err(c),
            "KeyFile and CertFile must both be present[key: , cert: c.pem]"
        );
        let dir = std::env::temp_dir().join(format!("cairn-tls-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let junk = dir.join("junk.pem");
        std::fs::write(&junk, b"not pem").unwrap();
        let junk = junk.display().to_string();
        let mut c = cfg("https://a:1");
        c.cert = Some(junk.clone());
        c.key = Some(junk.clone());
        assert_eq!(
            err(c),
            "tls: failed to find any PEM data in certificate input"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
