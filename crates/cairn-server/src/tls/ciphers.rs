//! `--cipher-suites`: Go's cipher suite names, as etcd takes them, mapped to the suites
//! rustls implements.
//!
//! etcd accepts every name Go's `crypto/tls` knows, insecure ones included, and refuses any
//! other with "unexpected TLS cipher suite". cairn accepts the same names so a unit file
//! that starts etcd starts cairn; rustls implements only the AEAD suites with ECDHE key
//! exchange, so a list naming none of those is refused at start instead of leaving a
//! listener that completes no handshake.

use rustls::crypto::ring::cipher_suite as ring;
use rustls::SupportedCipherSuite;

/// Every name Go's `crypto/tls` (and so etcd 3.5) accepts, with the rustls suite that
/// implements it, if any.
const GO_SUITES: &[(&str, Option<SupportedCipherSuite>)] = &[
    (
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        Some(ring::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256),
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        Some(ring::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384),
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        Some(ring::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256),
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        Some(ring::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384),
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        Some(ring::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256),
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
        Some(ring::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256),
    ),
    (
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        Some(ring::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256),
    ),
    (
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
        Some(ring::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256),
    ),
    // TLS 1.3 suites: Go takes their names, but etcd 3.5's servers speak TLS 1.2 only.
    ("TLS_AES_128_GCM_SHA256", None),
    ("TLS_AES_256_GCM_SHA384", None),
    ("TLS_CHACHA20_POLY1305_SHA256", None),
    // Known to Go, not implemented by rustls (CBC, RSA key exchange, RC4, 3DES).
    ("TLS_RSA_WITH_RC4_128_SHA", None),
    ("TLS_RSA_WITH_3DES_EDE_CBC_SHA", None),
    ("TLS_RSA_WITH_AES_128_CBC_SHA", None),
    ("TLS_RSA_WITH_AES_256_CBC_SHA", None),
    ("TLS_RSA_WITH_AES_128_CBC_SHA256", None),
    ("TLS_RSA_WITH_AES_128_GCM_SHA256", None),
    ("TLS_RSA_WITH_AES_256_GCM_SHA384", None),
    ("TLS_ECDHE_ECDSA_WITH_RC4_128_SHA", None),
    ("TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", None),
    ("TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA", None),
    ("TLS_ECDHE_RSA_WITH_RC4_128_SHA", None),
    ("TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA", None),
    ("TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", None),
    ("TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA", None),
    ("TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256", None),
    ("TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256", None),
];

/// Why `--cipher-suites` cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CipherError {
    /// A name Go does not know; etcd's words.
    #[error("unexpected TLS cipher suite {0:?}")]
    Unknown(String),
    /// Only names rustls does not implement.
    #[error(
        "none of the TLS cipher suites {0:?} is supported by cairn (it serves TLS 1.2 with \
         the ECDHE AES-GCM and ChaCha20-Poly1305 suites only)"
    )]
    NoneSupported(Vec<String>),
}

/// The suites `--cipher-suites` names, in its order, duplicates dropped; an empty list
/// means rustls's defaults. Names are split on commas as etcd's flag does.
pub fn parse(flag: &str) -> Result<Vec<SupportedCipherSuite>, CipherError> {
    let names: Vec<&str> = flag.split(',').filter(|s| !s.is_empty()).collect();
    let mut suites: Vec<SupportedCipherSuite> = Vec::new();
    for name in &names {
        let Some((_, suite)) = GO_SUITES.iter().find(|(n, _)| n == name) else {
            return Err(CipherError::Unknown((*name).to_string()));
        };
        if let Some(s) = suite {
            if !suites.iter().any(|have| have.suite() == s.suite()) {
                suites.push(*s);
            }
        }
    }
    if !names.is_empty() && suites.is_empty() {
        return Err(CipherError::NoneSupported(
            names.iter().map(|s| s.to_string()).collect(),
        ));
    }
    Ok(suites)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_as_etcd_takes_them() {
        assert_eq!(parse("").unwrap(), vec![]);
        let two =
            parse("TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305,TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256")
                .unwrap();
        assert_eq!(two.len(), 2);
        assert_eq!(
            two[0].suite(),
            rustls::CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
        );
        // A known but unimplemented name beside an implemented one is taken.
        assert_eq!(
            parse("TLS_RSA_WITH_RC4_128_SHA,TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256")
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn unknown_and_unimplemented_names_are_refused() {
        assert_eq!(
            parse("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,BOGUS")
                .unwrap_err()
                .to_string(),
            "unexpected TLS cipher suite \"BOGUS\""
        );
        assert!(matches!(
            parse("TLS_RSA_WITH_RC4_128_SHA"),
            Err(CipherError::NoneSupported(_))
        ));
    }
}
