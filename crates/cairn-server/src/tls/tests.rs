#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevokedCertParams, SanType, SerialNumber,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

/// What the listeners build with by default: ring with `suites`, TLS 1.2 only.
fn proto(suites: &[SupportedCipherSuite]) -> Protocol {
    Protocol {
        provider: provider(suites),
        versions: versions(&[]),
    }
}

/// A CA that issues server and client certificates into a directory.
struct Ca {
    params: CertificateParams,
    key: KeyPair,
    dir: tempfile::TempDir,
}

impl Ca {
    fn new() -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "test ca");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), cert.pem()).unwrap();
        Ca { params, key, dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Issues a certificate with `cn` and `sans`, serial `serial`, written as
    /// `<name>.pem` and `<name>.key`.
    fn issue(&self, name: &str, cn: &str, sans: &[&str], serial: u64) {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        for san in sans {
            params.subject_alt_names.push(match san.parse() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName((*san).try_into().unwrap()),
            });
        }
        params.serial_number = Some(SerialNumber::from(serial));
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().unwrap();
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        std::fs::write(self.path(&format!("{name}.pem")), cert.pem()).unwrap();
        std::fs::write(self.path(&format!("{name}.key")), key.serialize_pem()).unwrap();
    }

    fn revoke(&self, serial: u64) {
        let now = rcgen::date_time_ymd(2024, 1, 1);
        let crl = CertificateRevocationListParams {
            this_update: now,
            next_update: rcgen::date_time_ymd(2100, 1, 1),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: vec![RevokedCertParams {
                serial_number: SerialNumber::from(serial),
                revocation_time: now,
                reason_code: None,
                invalidity_date: None,
            }],
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let issuer = Issuer::from_params(&self.params, &self.key);
        let crl = crl.signed_by(&issuer).unwrap();
        std::fs::write(self.path("crl.pem"), crl.pem().unwrap()).unwrap();
    }

    fn files(&self, ca: bool) -> Files {
        Files {
            cert: self.path("server.pem"),
            key: self.path("server.key"),
            ca: ca.then(|| self.path("ca.pem")),
            crl: None,
            allowed: None,
            self_signed: false,
        }
    }

    /// A client configuration trusting the CA, presenting `<name>` if given.
    fn client(&self, name: Option<&str>) -> rustls::ClientConfig {
        let roots = files::roots(&self.path("ca.pem")).unwrap();
        let b = rustls::ClientConfig::builder_with_provider(provider(&[]))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        match name {
            Some(n) => {
                let chain = files::certs(&self.path(&format!("{n}.pem"))).unwrap();
                let key: PrivateKeyDer<'static> =
                    files::key(&self.path(&format!("{n}.key"))).unwrap();
                b.with_client_auth_cert(chain, key).unwrap()
            }
            None => b.with_no_client_auth(),
        }
    }
}

/// Runs one handshake and a byte each way between `client` and `server`; the server's
/// view of the connection's identity, or why either end failed.
async fn handshake(
    client: rustls::ClientConfig,
    server: &ServerTls,
) -> Result<(crate::identity::ConnIdentity, Vec<CertificateDer<'static>>), String> {
    let (a, b) = tokio::io::duplex(1 << 16);
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let acceptor = server.acceptor();
    let served = tokio::spawn(async move {
        let mut s = acceptor.accept(b).await?;
        let id = identity(s.get_ref().1);
        let mut byte = [0u8; 1];
        s.read_exact(&mut byte).await?;
        s.write_all(&byte).await?;
        s.flush().await?;
        Ok::<_, std::io::Error>(id)
    });
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let client = async {
        let mut c = connector.connect(name, a).await?;
        let seen = c.get_ref().1.peer_certificates().unwrap_or(&[]).to_vec();
        c.write_all(b"x").await?;
        c.flush().await?;
        let mut byte = [0u8; 1];
        c.read_exact(&mut byte).await?;
        Ok::<_, std::io::Error>(seen)
    };
    let seen = client.await.map_err(|e| format!("client: {e}"));
    let id = served.await.unwrap().map_err(|e| format!("server: {e}"))?;
    Ok((id, seen?))
}

fn serial(cert: &CertificateDer<'_>) -> Vec<u8> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).unwrap();
    parsed.raw_serial().to_vec()
}

#[tokio::test]
async fn server_only_tls_takes_any_client_and_proves_no_identity() {
    let ca = Ca::new();
    ca.issue("server", "server", &["127.0.0.1", "localhost"], 10);
    let server = ServerTls::new(ca.files(false), proto(&[])).unwrap();
    let (id, _) = handshake(ca.client(None), &server).await.unwrap();
    assert_eq!(id, crate::identity::ConnIdentity::default());
}

#[tokio::test]
async fn a_trusted_ca_requires_a_client_certificate_as_etcd() {
    let ca = Ca::new();
    ca.issue("server", "server", &["127.0.0.1"], 10);
    ca.issue("alice", "alice", &[], 11);
    let server = ServerTls::new(ca.files(true), proto(&[])).unwrap();
    assert!(handshake(ca.client(None), &server).await.is_err());
    let (id, _) = handshake(ca.client(Some("alice")), &server).await.unwrap();
    assert_eq!(id.cert_common_name.as_deref(), Some("alice"));
    assert!(!id.loopback);
    // A certificate from another CA is refused.
    let other = Ca::new();
    other.issue("mallory", "alice", &[], 11);
    std::fs::copy(other.path("mallory.pem"), ca.path("mallory.pem")).unwrap();
    std::fs::copy(other.path("mallory.key"), ca.path("mallory.key")).unwrap();
    assert!(handshake(ca.client(Some("mallory")), &server)
        .await
        .is_err());
}

#[tokio::test]
async fn allowed_cn_and_hostname_are_checked_at_the_handshake() {
    let ca = Ca::new();
    ca.issue("server", "server", &["127.0.0.1"], 10);
    ca.issue("m1", "member", &["10.0.0.1", "m1.example"], 11);
    ca.issue("other", "other", &["10.0.0.2"], 12);
    for (allowed, good) in [
        (Allowed::CommonName("member".into()), "m1"),
        (Allowed::Hostname("m1.example".into()), "m1"),
        (Allowed::Hostname("10.0.0.1".into()), "m1"),
    ] {
        let mut files = ca.files(true);
        files.allowed = Some(allowed.clone());
        let server = ServerTls::new(files, proto(&[])).unwrap();
        assert!(
            handshake(ca.client(Some(good)), &server).await.is_ok(),
            "{allowed:?}"
        );
        assert!(
            handshake(ca.client(Some("other")), &server).await.is_err(),
            "{allowed:?}"
        );
    }
}

#[tokio::test]
async fn a_revoked_client_certificate_is_refused() {
    let ca = Ca::new();
    ca.issue("server", "server", &["127.0.0.1"], 10);
    ca.issue("good", "good", &[], 11);
    ca.issue("bad", "bad", &[], 12);
    ca.revoke(12);
    let mut files = ca.files(true);
    files.crl = Some(ca.path("crl.pem"));
    let server = ServerTls::new(files, proto(&[])).unwrap();
    assert!(handshake(ca.client(Some("good")), &server).await.is_ok());
    assert!(handshake(ca.client(Some("bad")), &server).await.is_err());
}

#[tokio::test]
async fn a_rotated_certificate_is_served_to_the_next_connection() {
    let ca = Ca::new();
    ca.issue("server", "server", &["127.0.0.1"], 10);
    let mut server = ServerTls::new(ca.files(false), proto(&[])).unwrap();
    server.config.recheck = Duration::ZERO;
    let (_, first) = handshake(ca.client(None), &server).await.unwrap();
    assert_eq!(serial(&first[0]), vec![10]);
    ca.issue("server", "server", &["127.0.0.1"], 20);
    let (_, second) = handshake(ca.client(None), &server).await.unwrap();
    assert_eq!(serial(&second[0]), vec![20]);
    // A half-written rotation (a key that does not match) keeps the certificate in use.
    std::fs::write(ca.path("server.key"), "garbage").unwrap();
    let (_, third) = handshake(ca.client(None), &server).await.unwrap();
    assert_eq!(serial(&third[0]), vec![20]);
}

#[tokio::test]
async fn only_the_configured_cipher_suites_are_offered() {
    let ca = Ca::new();
    ca.issue("server", "server", &["127.0.0.1"], 10);
    let only_chacha = parse_cipher_suites("TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256").unwrap();
    let server = ServerTls::new(ca.files(false), proto(&only_chacha)).unwrap();
    assert!(handshake(ca.client(None), &server).await.is_ok());
    // A client that speaks only AES-GCM finds no suite in common.
    let aes = parse_cipher_suites("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256").unwrap();
    let roots = files::roots(&ca.path("ca.pem")).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(provider(&aes))
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    assert!(handshake(client, &server).await.is_err());
}

#[tokio::test]
async fn the_server_speaks_tls_1_2_only_as_etcd_3_5_unless_the_version_flags_say_otherwise() {
    let ca = Ca::new();
    ca.issue("server", "server", &["127.0.0.1"], 10);
    let server = ServerTls::new(ca.files(false), proto(&[])).unwrap();
    let roots = files::roots(&ca.path("ca.pem")).unwrap();
    let tls13 = rustls::ClientConfig::builder_with_provider(provider(&[]))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots.clone())
        .with_no_client_auth();
    assert!(handshake(tls13.clone(), &server).await.is_err());
    // --tls-max-version=TLS1.3 lets it in; --tls-min-version=TLS1.3 keeps TLS 1.2 out.
    let both = Protocol {
        provider: provider(&[]),
        versions: parse_versions("TLS1.2", "TLS1.3", false).unwrap(),
    };
    let server = ServerTls::new(ca.files(false), both).unwrap();
    assert!(handshake(tls13.clone(), &server).await.is_ok());
    let only13 = Protocol {
        provider: provider(&[]),
        versions: parse_versions("TLS1.3", "", false).unwrap(),
    };
    let server = ServerTls::new(ca.files(false), only13).unwrap();
    assert!(handshake(tls13, &server).await.is_ok());
    let tls12 = rustls::ClientConfig::builder_with_provider(provider(&[]))
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    assert!(handshake(tls12, &server).await.is_err());
}

#[test]
fn start_refuses_what_etcd_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let https = vec!["https://127.0.0.1:2379".to_string()];
    let err = Tls::start(&TlsSettings::default(), dir.path(), &https, &[])
        .err()
        .unwrap();
    assert_eq!(
        err.to_string(),
        "TLS key/cert (--cert-file, --key-file) must be provided for client url https://127.0.0.1:2379 with HTTPS scheme"
    );
    let peer = vec!["https://127.0.0.1:2380".to_string()];
    let err = Tls::start(&TlsSettings::default(), dir.path(), &[], &peer)
        .err()
        .unwrap();
    assert_eq!(
        err.to_string(),
        "cannot listen on TLS for 127.0.0.1:2380: KeyFile and CertFile are not presented"
    );
    let mut settings = TlsSettings::default();
    settings.peer.auto_tls = true;
    settings.peer.allowed_cn = Some("a".into());
    settings.peer.allowed_hostname = Some("b".into());
    settings.self_signed_cert_validity = 1;
    let err = Tls::start(&settings, dir.path(), &[], &peer).err().unwrap();
    assert_eq!(
        err.to_string(),
        "AllowedCN and AllowedHostname are mutually exclusive (cn=\"a\", hostname=\"b\")"
    );
    let mut settings = TlsSettings::default();
    settings.client.cert_file = Some(dir.path().join("nope.pem"));
    settings.client.key_file = Some(dir.path().join("nope.key"));
    let err = Tls::start(&settings, dir.path(), &https, &[])
        .err()
        .unwrap();
    assert_eq!(
        err.to_string(),
        format!(
            "open {}: no such file or directory",
            dir.path().join("nope.pem").display()
        )
    );
}

#[tokio::test]
async fn auto_tls_makes_certificates_in_the_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = TlsSettings::default();
    settings.client.auto_tls = true;
    settings.peer.auto_tls = true;
    settings.self_signed_cert_validity = 1;
    let tls = Tls::start(
        &settings,
        dir.path(),
        &["https://127.0.0.1:2379".into()],
        &["https://127.0.0.1:2380".into()],
    )
    .unwrap();
    assert!(dir.path().join("fixtures/client/cert.pem").exists());
    assert!(dir.path().join("fixtures/peer/key.pem").exists());
    // Members made with peer auto-TLS talk to each other without a CA, as etcd's do.
    let (a, b) = tokio::io::duplex(1 << 16);
    let acceptor = tls.peer.as_ref().unwrap().acceptor();
    let connector = tls.dial.as_ref().unwrap().connector();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let (c, s) = tokio::join!(connector.connect(name, a), acceptor.accept(b));
    c.unwrap();
    s.unwrap();
}
