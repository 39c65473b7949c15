//! `--auto-tls` and `--peer-auto-tls`: a self-signed certificate made at start, as etcd
//! makes one.
//!
//! etcd writes `cert.pem` and `key.pem` into `<data-dir>/fixtures/client` (or `.../peer`)
//! and reuses them while both files exist. The certificate names the listen URLs' hosts
//! (IP SANs for addresses, DNS SANs for names), has organization "etcd", is valid for
//! `--self-signed-cert-validity` years of 365 days, and serves TLS servers (and, for
//! peers, clients too). etcd uses a P-521 key; ring signs with P-256 and P-384 only, so
//! cairn's key is P-256.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};

use super::TlsError;

/// The certificate and key files for a side, made now unless both already exist.
pub(super) fn self_cert(
    dir: &Path,
    hosts: &[String],
    years: u64,
    peer: bool,
) -> Result<(PathBuf, PathBuf), TlsError> {
    if years == 0 {
        return Err(TlsError::AutoTls(
            "selfSignedCertValidity is invalid,it should be greater than 0".into(),
        ));
    }
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    if cert_path.exists() && key_path.exists() {
        return Ok((cert_path, key_path));
    }
    let failed = |e: &dyn std::fmt::Display| TlsError::AutoTls(e.to_string());
    std::fs::create_dir_all(dir).map_err(|e| failed(&e))?;
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| failed(&e))?;
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "etcd");
    params.distinguished_name = name;
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    params.not_before = epoch + now;
    params.not_after = epoch + now + Duration::from_secs(years.saturating_mul(365 * 24 * 3600));
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::KeyEncipherment,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    if peer {
        params
            .extended_key_usages
            .push(ExtendedKeyUsagePurpose::ClientAuth);
    }
    for host in hosts {
        let san = match host.parse::<std::net::IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(host.clone().try_into().map_err(|e| failed(&e))?),
        };
        if !params.subject_alt_names.contains(&san) {
            params.subject_alt_names.push(san);
        }
    }
    let cert = params.self_signed(&key).map_err(|e| failed(&e))?;
    tracing::warn!(
        certificate_validity_bound_not_after = %params.not_after,
        "automatically generate certificates"
    );
    std::fs::write(&cert_path, cert.pem()).map_err(|e| failed(&e))?;
    tracing::info!(path = %cert_path.display(), "created cert file");
    write_private(&key_path, key.serialize_pem().as_bytes()).map_err(|e| failed(&e))?;
    tracing::info!(path = %key_path.display(), "created key file");
    Ok((cert_path, key_path))
}

/// Writes a file only its owner may read.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn makes_once_and_reuses() {
        let dir = tempfile::tempdir().unwrap();
        let fixtures = dir.path().join("fixtures/client");
        let (cert, key) = self_cert(
            &fixtures,
            &["127.0.0.1".into(), "localhost".into()],
            2,
            false,
        )
        .unwrap();
        let first = std::fs::read(&cert).unwrap();
        let der = super::super::files::certs(&cert).unwrap();
        assert!(super::super::files::valid_for_host(&der[0], "127.0.0.1"));
        assert!(super::super::files::valid_for_host(&der[0], "localhost"));
        assert!(!super::super::files::valid_for_host(&der[0], "10.0.0.1"));
        let (_, parsed) = x509_parser::parse_x509_certificate(der[0].as_ref()).unwrap();
        let days = (parsed.validity().not_after.timestamp()
            - parsed.validity().not_before.timestamp())
            / 86_400;
        assert_eq!(days, 730);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
        self_cert(&fixtures, &["127.0.0.1".into()], 2, false).unwrap();
        assert_eq!(std::fs::read(&cert).unwrap(), first);
    }

    #[test]
    fn zero_years_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(self_cert(dir.path(), &[], 0, true).is_err());
    }
}
