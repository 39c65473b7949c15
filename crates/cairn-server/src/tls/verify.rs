//! Client-certificate checks beyond the chain: `--peer-cert-allowed-cn`,
//! `--peer-cert-allowed-hostname` and `--client-cert-allowed-hostname`.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};

/// What a verified client certificate must also show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Allowed {
    /// Its subject CN is exactly this.
    CommonName(String),
    /// Its SANs cover this DNS name or IP address.
    Hostname(String),
}

impl Allowed {
    pub(super) fn admits(&self, cert: &CertificateDer<'_>) -> bool {
        match self {
            Allowed::CommonName(cn) => super::files::common_name(cert).as_deref() == Some(cn),
            Allowed::Hostname(host) => super::files::valid_for_host(cert, host),
        }
    }
}

/// A client verifier that checks the chain with `inner` and then the leaf against
/// `allowed`; a certificate that fails either ends the handshake.
#[derive(Debug)]
pub(super) struct AllowedClient {
    pub(super) inner: Arc<dyn ClientCertVerifier>,
    pub(super) allowed: Allowed,
}

impl ClientCertVerifier for AllowedClient {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        if !self.allowed.admits(end_entity) {
            tracing::warn!(allowed = ?self.allowed, "rejected connection: client certificate authentication failed");
            return Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ));
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
