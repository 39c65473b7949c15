//! Reading certificates, keys, CA pools and CRLs from PEM files, and telling when any of
//! them changed on disk.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};

use super::TlsError;

/// What a file looked like when it was last read: its length and modification time; `None`
/// when it could not be looked at.
pub(super) type Stamp = Option<(u64, SystemTime)>;

/// The stamps of `paths`, in order.
pub(super) fn stamps(paths: &[PathBuf]) -> Vec<Stamp> {
    paths
        .iter()
        .map(|p| {
            let meta = std::fs::metadata(p).ok()?;
            Some((meta.len(), meta.modified().ok()?))
        })
        .collect()
}

/// Reads a whole file, worded as Go's `open` errors are ("open x.pem: no such file or
/// directory").
fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::Open {
        path: path.display().to_string(),
        why: go_io_error(&e),
    })
}

/// An I/O error as Go's syscall error strings word it.
fn go_io_error(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => {
            let text = e.to_string();
            // "Is a directory (os error 21)" -> "is a directory"
            let text = text.split(" (os error").next().unwrap_or(&text).to_string();
            let mut chars = text.chars();
            match chars.next() {
                Some(first) => first.to_lowercase().chain(chars).collect(),
                None => text,
            }
        }
    }
}

/// The certificate chain in a PEM file, leaf first.
pub(super) fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Pem {
            path: path.display().to_string(),
            why: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.display().to_string(),
            why: "failed to find any PEM data in certificate input".into(),
        });
    }
    Ok(certs)
}

/// The private key in a PEM file (PKCS#8, PKCS#1 or SEC1).
pub(super) fn key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|_| TlsError::Pem {
        path: path.display().to_string(),
        why: "failed to find any PEM data in key input".into(),
    })
}

/// The trusted CAs in a PEM file.
pub(super) fn roots(path: &Path) -> Result<Arc<rustls::RootCertStore>, TlsError> {
    let mut store = rustls::RootCertStore::empty();
    for cert in certs(path)? {
        store.add(cert).map_err(|e| TlsError::Pem {
            path: path.display().to_string(),
            why: e.to_string(),
        })?;
    }
    Ok(Arc::new(store))
}

/// The CRLs in a file, PEM or DER as etcd reads either.
pub(super) fn crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    let bytes = read(path)?;
    if !bytes.starts_with(b"-----BEGIN") {
        return Ok(vec![CertificateRevocationListDer::from(bytes)]);
    }
    CertificateRevocationListDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Pem {
            path: path.display().to_string(),
            why: e.to_string(),
        })
}

/// The subject's CN of a DER certificate, if it has one.
pub fn common_name(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let cn = parsed.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_string)
}

/// Whether a DER certificate is valid for `host` (a DNS name or an IP address), by its
/// SANs, as Go's `VerifyHostname` decides.
pub(super) fn valid_for_host(cert: &CertificateDer<'_>, host: &str) -> bool {
    let Ok(name) = rustls::pki_types::ServerName::try_from(host) else {
        return false;
    };
    webpki::EndEntityCert::try_from(cert)
        .and_then(|ee| ee.verify_is_valid_for_subject_name(&name))
        .is_ok()
}

/// The IP addresses and DNS names in a DER certificate's SANs.
fn sans(cert: &CertificateDer<'_>) -> (Vec<std::net::IpAddr>, Vec<String>) {
    use x509_parser::extensions::GeneralName;
    let (mut ips, mut names) = (Vec::new(), Vec::new());
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(cert.as_ref()) else {
        return (ips, names);
    };
    if let Ok(Some(san)) = parsed.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(n) => names.push(n.to_string()),
                GeneralName::IPAddress(b) => match b.len() {
                    4 => ips.push(std::net::IpAddr::from(
                        <[u8; 4]>::try_from(*b).unwrap_or_default(),
                    )),
                    16 => ips.push(std::net::IpAddr::from(
                        <[u8; 16]>::try_from(*b).unwrap_or_default(),
                    )),
                    _ => {}
                },
                _ => {}
            }
        }
    }
    (ips, names)
}

/// etcd's check of a peer's client certificate against the address it connects from: a
/// certificate with SANs must name that IP, or a DNS name that resolves to it; one
/// without SANs passes. The error is worded as etcd's.
pub async fn check_peer_san(
    cert: &CertificateDer<'_>,
    remote: std::net::IpAddr,
) -> Result<(), String> {
    let (ips, names) = sans(cert);
    if ips.is_empty() && names.is_empty() {
        return Ok(());
    }
    let host = remote.to_string();
    let mut err = String::new();
    if !ips.is_empty() {
        if ips.contains(&remote) {
            return Ok(());
        }
        err = format!(
            "x509: certificate is valid for {}, not {host}",
            ips.iter()
                .map(|ip| ip.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if !names.is_empty() {
        for name in &names {
            if let Ok(addrs) = tokio::net::lookup_host((name.as_str(), 0)).await {
                if addrs.into_iter().any(|a| a.ip() == remote) {
                    return Ok(());
                }
            }
        }
        err = format!("tls: {host:?} does not match any of DNSNames {names:?}");
    }
    Err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_files_are_worded_as_go_does() {
        let err = certs(Path::new("/nonexistent/x.pem")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "open /nonexistent/x.pem: no such file or directory"
        );
    }

    #[test]
    fn a_file_without_pem_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.pem");
        std::fs::write(&p, "not pem").unwrap();
        assert!(certs(&p)
            .unwrap_err()
            .to_string()
            .contains("failed to find any PEM data"));
        assert!(key(&p).is_err());
    }

    #[tokio::test]
    async fn a_peer_certificate_must_name_the_address_it_comes_from() {
        let key = rcgen::KeyPair::generate().unwrap();
        let der = |sans: Vec<&str>| {
            let params = rcgen::CertificateParams::new(
                sans.into_iter().map(String::from).collect::<Vec<_>>(),
            )
            .unwrap();
            params.self_signed(&key).unwrap().der().clone()
        };
        let local: std::net::IpAddr = "127.0.0.1".parse().unwrap();
        assert!(check_peer_san(&der(vec![]), local).await.is_ok());
        assert!(check_peer_san(&der(vec!["127.0.0.1"]), local).await.is_ok());
        assert!(check_peer_san(&der(vec!["localhost"]), local).await.is_ok());
        let err = check_peer_san(&der(vec!["10.0.0.9"]), local)
            .await
            .unwrap_err();
        assert_eq!(
            err,
            "x509: certificate is valid for 10.0.0.9, not 127.0.0.1"
        );
        let err = check_peer_san(&der(vec!["member.invalid"]), local)
            .await
            .unwrap_err();
        assert_eq!(
            err,
            "tls: \"127.0.0.1\" does not match any of DNSNames [\"member.invalid\"]"
        );
    }

    #[test]
    fn stamps_change_with_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.pem");
        let before = stamps(std::slice::from_ref(&p));
        assert_eq!(before, vec![None]);
        std::fs::write(&p, "one").unwrap();
        let one = stamps(std::slice::from_ref(&p));
        std::fs::write(&p, "three").unwrap();
        assert_ne!(one, stamps(std::slice::from_ref(&p)));
    }
}
