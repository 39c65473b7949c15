//! Test certificates: a CA, server certificates for 127.0.0.1 and localhost, client
//! certificates with a given CN, expired ones, and CRLs, written as PEM files into a
//! temporary directory.

use std::path::PathBuf;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevokedCertParams, SanType, SerialNumber,
};

/// The time `days` days from now (before now when negative), in rcgen's date type (a
/// macro, so the tests need not name the `time` crate's type).
macro_rules! days_from_now {
    ($days:expr) => {{
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        let now = rcgen::date_time_ymd(1970, 1, 1) + since;
        let days: i64 = $days;
        let span = std::time::Duration::from_secs(days.unsigned_abs() * 86_400);
        if days >= 0 {
            now + span
        } else {
            now - span
        }
    }};
}

/// A certificate and its key, as files.
#[derive(Debug, Clone)]
pub struct Pair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A CA and the files it issued.
pub struct Pki {
    params: CertificateParams,
    key: KeyPair,
    pub dir: tempfile::TempDir,
}

/// What a certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    /// A server's (and a member's: also a client for peers), with SANs 127.0.0.1 and
    /// localhost.
    Server,
    /// A client's, without SANs.
    Client,
}

impl Pki {
    /// A new CA named `name`, its certificate in `ca.pem`.
    pub fn new(name: &str) -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), cert.pem()).unwrap();
        Pki { params, key, dir }
    }

    /// The CA certificate's file.
    pub fn ca(&self) -> PathBuf {
        self.path("ca.pem")
    }

    /// A file in the directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Issues `<name>.pem` and `<name>.key` (overwriting them) with subject CN `cn` and
    /// serial number `serial`, valid from a year ago until a year from now.
    pub fn issue(&self, name: &str, cn: &str, serial: u64, usage: Use) -> Pair {
        self.issue_valid(name, cn, serial, usage, (-365, 365), None)
    }

    /// Like [`Pki::issue`] with `Use::Server`, with these SANs (IP addresses or DNS names)
    /// instead of 127.0.0.1 and localhost.
    pub fn issue_with_sans(&self, name: &str, cn: &str, serial: u64, sans: &[&str]) -> Pair {
        self.issue_valid(name, cn, serial, Use::Server, (-365, 365), Some(sans))
    }

    /// Like [`Pki::issue`], expired yesterday.
    pub fn issue_expired(&self, name: &str, cn: &str, serial: u64, usage: Use) -> Pair {
        self.issue_valid(name, cn, serial, usage, (-30, -1), None)
    }

    fn issue_valid(
        &self,
        name: &str,
        cn: &str,
        serial: u64,
        usage: Use,
        (from_day, until_day): (i64, i64),
        sans: Option<&[&str]>,
    ) -> Pair {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.serial_number = Some(SerialNumber::from(serial));
        params.not_before = days_from_now!(from_day);
        params.not_after = days_from_now!(until_day);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = match usage {
            Use::Server => vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
            Use::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
        };
        if usage == Use::Server {
            let sans = sans.unwrap_or(&["127.0.0.1", "localhost"]);
            params.subject_alt_names = sans
                .iter()
                .map(|san| match san.parse() {
                    Ok(ip) => SanType::IpAddress(ip),
                    Err(_) => SanType::DnsName((*san).try_into().unwrap()),
                })
                .collect();
        }
        let key = KeyPair::generate().unwrap();
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        let pair = Pair {
            cert: self.path(&format!("{name}.pem")),
            key: self.path(&format!("{name}.key")),
        };
        // Key first: a reader that sees the new certificate then finds its key.
        std::fs::write(&pair.key, key.serialize_pem()).unwrap();
        std::fs::write(&pair.cert, cert.pem()).unwrap();
        pair
    }

    /// Writes `crl.pem`, revoking the certificates with `serials`.
    pub fn crl(&self, serials: &[u64]) -> PathBuf {
        let crl = CertificateRevocationListParams {
            this_update: days_from_now!(-1),
            next_update: days_from_now!(30),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: serials
                .iter()
                .map(|s| RevokedCertParams {
                    serial_number: SerialNumber::from(*s),
                    revocation_time: days_from_now!(-1),
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let issuer = Issuer::from_params(&self.params, &self.key);
        let path = self.path("crl.pem");
        std::fs::write(&path, crl.signed_by(&issuer).unwrap().pem().unwrap()).unwrap();
        path
    }
}
