//! etcd's JWT tokens (`--auth-token jwt,sign-method=...,pub-key=...,priv-key=...,ttl=...`).
//!
//! A token is a JWT with the claims `username`, `revision` (the auth revision when it was
//! signed) and `exp`, signed with the configured method. Any member holding the public key
//! (or the shared secret, for HS*) verifies it; a member with only a public key verifies
//! but cannot sign. Unlike simple tokens, a JWT carries its auth revision: after any change
//! to users, roles or permissions, older tokens are refused ("auth: revision in header is
//! old", as etcd 3.5.1 words it) and clients authenticate again.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::store::AuthInfo;

/// etcd's default lifetime of a JWT.
pub const DEFAULT_JWT_TTL: Duration = Duration::from_secs(300);

/// Why the JWT options or keys were refused, in etcd's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("auth: invalid auth options")]
    InvalidOptions,
    #[error("auth: invalid auth signature method")]
    InvalidMethod,
    /// A method etcd 3.5 signs with that cairn does not.
    #[error("auth: JWT sign-method {0} is not supported by cairn (etcd's ES512, on the P-521 curve, is the one it lacks; use ES384, ES256, an RSA or an HMAC method)")]
    UnsupportedMethod(String),
    #[error("auth: missing key data")]
    MissingKey,
    #[error("auth: public and private keys don't match")]
    KeyMismatch,
    #[error("auth: token signing attempted with verify-only key")]
    VerifyOnly,
    /// A key file that is not a key of the method's kind.
    #[error("auth: invalid key: {0}")]
    BadKey(String),
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    username: String,
    revision: u64,
    exp: u64,
}

/// Signs and verifies this member's JWTs.
pub struct JwtTokens {
    alg: Algorithm,
    signing: Option<EncodingKey>,
    verifying: DecodingKey,
    ttl: Duration,
}

impl std::fmt::Debug for JwtTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtTokens")
            .field("alg", &self.alg)
            .field("signs", &self.signing.is_some())
            .field("ttl", &self.ttl)
            .finish()
    }
}

/// The signing methods etcd 3.5 accepts that cairn signs with: all but ES512 (P-521).
/// (etcd 3.5.1 has no EdDSA.)
fn algorithm(method: &str) -> Option<Algorithm> {
    Some(match method {
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "HS256" => Algorithm::HS256,
        "HS384" => Algorithm::HS384,
        "HS512" => Algorithm::HS512,
        _ => return None,
    })
}

/// The DER inside a PEM block.
fn pem_der(text: &[u8]) -> Result<(String, Vec<u8>), JwtError> {
    let p = pem::parse(text).map_err(|e| JwtError::BadKey(e.to_string()))?;
    Ok((p.tag().to_string(), p.contents().to_vec()))
}

/// The verifying key of an ECDSA private key (PKCS#8 PEM) given without its public key.
fn derived_ec_public(alg: Algorithm, private: &[u8]) -> Result<DecodingKey, JwtError> {
    use ring::signature::ECDSA_P384_SHA384_FIXED_SIGNING;
    use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    let (_, der) = pem_der(private)?;
    let curve = if alg == Algorithm::ES256 {
        &ECDSA_P256_SHA256_FIXED_SIGNING
    } else {
        &ECDSA_P384_SHA384_FIXED_SIGNING
    };
    let rng = ring::rand::SystemRandom::new();
    let pair =
        EcdsaKeyPair::from_pkcs8(curve, &der, &rng).map_err(|e| JwtError::BadKey(e.to_string()))?;
    // ring verifies ECDSA against the uncompressed point, as jsonwebtoken passes it on.
    Ok(DecodingKey::from_ec_der(pair.public_key().as_ref()))
}

/// The verifying key of an RSA private key (PKCS#8 or PKCS#1 PEM) given without its public
/// key.
fn derived_rsa_public(private: &[u8]) -> Result<DecodingKey, JwtError> {
    use ring::signature::{KeyPair, RsaKeyPair};
    let (tag, der) = pem_der(private)?;
    let pair = if tag == "RSA PRIVATE KEY" {
        RsaKeyPair::from_der(&der)
    } else {
        RsaKeyPair::from_pkcs8(&der)
    }
    .map_err(|e| JwtError::BadKey(e.to_string()))?;
    // The RSAPublicKey DER, as jsonwebtoken's RSA verification takes it.
    Ok(DecodingKey::from_rsa_der(pair.public_key().as_ref()))
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl JwtTokens {
    /// Builds the provider from the sign method's name and the key files' contents (PEM for
    /// RS*, PS*, ES*; the secret itself for HS*, from `priv-key`).
    pub fn new(
        method: &str,
        public_pem: Option<&[u8]>,
        private_pem: Option<&[u8]>,
        ttl: Duration,
    ) -> Result<JwtTokens, JwtError> {
        let alg = algorithm(method).ok_or_else(|| match method {
            "ES512" => JwtError::UnsupportedMethod(method.to_string()),
            _ => JwtError::InvalidMethod,
        })?;
        let bad = |e: jsonwebtoken::errors::Error| JwtError::BadKey(e.to_string());
        let (signing, verifying) = match alg {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
                let secret = private_pem.ok_or(JwtError::MissingKey)?;
                if secret.is_empty() {
                    return Err(JwtError::MissingKey);
                }
                (
                    Some(EncodingKey::from_secret(secret)),
                    DecodingKey::from_secret(secret),
                )
            }
            Algorithm::ES256 | Algorithm::ES384 => {
                let signing = private_pem
                    .map(EncodingKey::from_ec_pem)
                    .transpose()
                    .map_err(bad)?;
                let verifying = match (public_pem, private_pem) {
                    (Some(public), _) => DecodingKey::from_ec_pem(public).map_err(bad)?,
                    (None, Some(private)) => derived_ec_public(alg, private)?,
                    (None, None) => return Err(JwtError::MissingKey),
                };
                (signing, verifying)
            }
            _ => {
                let signing = private_pem
                    .map(EncodingKey::from_rsa_pem)
                    .transpose()
                    .map_err(bad)?;
                let verifying = match (public_pem, private_pem) {
                    (Some(public), _) => DecodingKey::from_rsa_pem(public).map_err(bad)?,
                    (None, Some(private)) => derived_rsa_public(private)?,
                    (None, None) => return Err(JwtError::MissingKey),
                };
                (signing, verifying)
            }
        };
        let tokens = JwtTokens {
            alg,
            signing,
            verifying,
            ttl,
        };
        // Both keys given: they must be a pair, as etcd checks.
        if tokens.signing.is_some() {
            let probe = tokens.sign("probe", 1)?;
            if tokens.verify(&probe).is_none() {
                return Err(JwtError::KeyMismatch);
            }
        }
        Ok(tokens)
    }

    /// A token for `user` at auth revision `revision`, valid for the TTL.
    pub fn sign(&self, user: &str, revision: u64) -> Result<String, JwtError> {
        let key = self.signing.as_ref().ok_or(JwtError::VerifyOnly)?;
        let claims = Claims {
            username: user.to_string(),
            revision,
            exp: now_secs() + self.ttl.as_secs(),
        };
        jsonwebtoken::encode(&Header::new(self.alg), &claims, key)
            .map_err(|e| JwtError::BadKey(e.to_string()))
    }

    /// Who a token names and at which revision; `None` for a token not signed by this
    /// method and key, malformed, or expired.
    pub fn verify(&self, token: &str) -> Option<AuthInfo> {
        let mut v = Validation::new(self.alg);
        v.leeway = 0;
        v.required_spec_claims = ["exp".to_string()].into_iter().collect();
        let data = jsonwebtoken::decode::<Claims>(token, &self.verifying, &v).ok()?;
        Some(AuthInfo {
            user: data.claims.username,
            revision: data.claims.revision,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ec_pair(alg: &'static rcgen::SignatureAlgorithm) -> (String, String) {
        let k = rcgen::KeyPair::generate_for(alg).unwrap();
        (k.public_key_pem(), k.serialize_pem())
    }

    /// An RSA key pair: the public key (SPKI PEM), the private key as PKCS#8 and as PKCS#1.
    fn rsa_pair() -> (String, String, String) {
        use rsa::pkcs1::EncodeRsaPrivateKey;
        use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
        let mut rng = rsa::rand_core::OsRng;
        let private = rsa::RsaPrivateKey::new(&mut rng, 2048).unwrap();
        let public = rsa::RsaPublicKey::from(&private);
        (
            public.to_public_key_pem(LineEnding::LF).unwrap(),
            private.to_pkcs8_pem(LineEnding::LF).unwrap().to_string(),
            private.to_pkcs1_pem(LineEnding::LF).unwrap().to_string(),
        )
    }

    fn round_trip(method: &str, public: &str, private: &str) {
        let t = JwtTokens::new(
            method,
            Some(public.as_bytes()),
            Some(private.as_bytes()),
            DEFAULT_JWT_TTL,
        )
        .unwrap();
        let token = t.sign("alice", 7).unwrap();
        assert_eq!(token.split('.').count(), 3, "{token}");
        assert_eq!(
            t.verify(&token),
            Some(AuthInfo {
                user: "alice".into(),
                revision: 7
            }),
            "{method}"
        );
        // A private key alone signs and verifies, its public key derived (as etcd).
        let alone =
            JwtTokens::new(method, None, Some(private.as_bytes()), DEFAULT_JWT_TTL).unwrap();
        let own = alone.sign("carol", 9).unwrap();
        assert_eq!(alone.verify(&own).map(|i| i.user).as_deref(), Some("carol"));
        assert_eq!(
            alone.verify(&token).map(|i| i.revision),
            Some(7),
            "{method}"
        );
        // A member holding only the public key verifies, and cannot sign.
        let verifier =
            JwtTokens::new(method, Some(public.as_bytes()), None, DEFAULT_JWT_TTL).unwrap();
        assert_eq!(
            verifier.verify(&token).map(|i| i.user).as_deref(),
            Some("alice")
        );
        assert_eq!(verifier.sign("bob", 1), Err(JwtError::VerifyOnly));
        assert_eq!(
            verifier.verify(&own).map(|i| i.user).as_deref(),
            Some("carol")
        );
        // Tampered: refused.
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged_claims = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &Claims {
                username: "root".into(),
                revision: 7,
                exp: now_secs() + 60,
            },
            &EncodingKey::from_secret(b"guess"),
        )
        .unwrap();
        let forged: Vec<&str> = forged_claims.split('.').collect();
        parts[1] = forged[1];
        assert_eq!(t.verify(&parts.join(".")), None, "{method}: forged claims");
        assert_eq!(t.verify(&forged_claims), None, "{method}: another method");
        assert_eq!(t.verify("not.a.token"), None);
    }

    #[test]
    fn rsa_and_ecdsa_keys_made_here_sign_and_verify() {
        let (public, pkcs8, pkcs1) = rsa_pair();
        for method in ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"] {
            round_trip(method, &public, &pkcs8);
        }
        round_trip("RS256", &public, &pkcs1);
        let (public, private) = ec_pair(&rcgen::PKCS_ECDSA_P256_SHA256);
        round_trip("ES256", &public, &private);
        let (public, private) = ec_pair(&rcgen::PKCS_ECDSA_P384_SHA384);
        round_trip("ES384", &public, &private);
    }

    #[test]
    fn keys_that_are_not_a_pair_or_missing_are_refused_as_etcd() {
        let (public, _) = ec_pair(&rcgen::PKCS_ECDSA_P256_SHA256);
        let (_, other_private) = ec_pair(&rcgen::PKCS_ECDSA_P256_SHA256);
        let err = JwtTokens::new(
            "ES256",
            Some(public.as_bytes()),
            Some(other_private.as_bytes()),
            DEFAULT_JWT_TTL,
        )
        .unwrap_err();
        assert_eq!(err, JwtError::KeyMismatch);
        assert_eq!(err.to_string(), "auth: public and private keys don't match");
        assert_eq!(
            JwtTokens::new("ES256", None, None, DEFAULT_JWT_TTL).unwrap_err(),
            JwtError::MissingKey
        );
        assert_eq!(
            JwtTokens::new("XS256", None, None, DEFAULT_JWT_TTL).unwrap_err(),
            JwtError::InvalidMethod
        );
        // etcd 3.5.1 has no EdDSA either: the same refusal as etcd's.
        assert_eq!(
            JwtTokens::new("EdDSA", None, None, DEFAULT_JWT_TTL).unwrap_err(),
            JwtError::InvalidMethod
        );
        // etcd signs with ES512; cairn says by name that it does not.
        let es512 = JwtTokens::new("ES512", None, None, DEFAULT_JWT_TTL).unwrap_err();
        assert!(
            es512
                .to_string()
                .starts_with("auth: JWT sign-method ES512 is not supported by cairn"),
            "{es512}"
        );
        assert!(matches!(
            JwtTokens::new("RS256", Some(public.as_bytes()), None, DEFAULT_JWT_TTL),
            Err(JwtError::BadKey(_))
        ));
        let hs = JwtTokens::new("HS256", None, Some(b"secret"), DEFAULT_JWT_TTL).unwrap();
        let token = hs.sign("u", 3).unwrap();
        assert_eq!(hs.verify(&token).map(|i| i.revision), Some(3));
    }

    #[test]
    fn an_expired_token_is_refused() {
        let (public, private) = ec_pair(&rcgen::PKCS_ECDSA_P256_SHA256);
        let t = JwtTokens::new(
            "ES256",
            Some(public.as_bytes()),
            Some(private.as_bytes()),
            DEFAULT_JWT_TTL,
        )
        .unwrap();
        let expired = jsonwebtoken::encode(
            &Header::new(Algorithm::ES256),
            &Claims {
                username: "alice".into(),
                revision: 1,
                exp: now_secs() - 1,
            },
            &EncodingKey::from_ec_pem(private.as_bytes()).unwrap(),
        )
        .unwrap();
        assert_eq!(t.verify(&expired), None);
    }
}
