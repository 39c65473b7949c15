//! What the connection a request arrived on proves about who sent it.
//!
//! The listeners (`run/`) put one [`ConnIdentity`] in the extensions of every request they
//! serve; the RPC layer reads it to decide who is asking when a request carries no auth
//! token. A stranger cannot forge it: it comes from the TLS handshake or from the server's
//! own in-process channel, never from a request's headers.

/// Who is on the other end of one connection, as far as the connection itself proves it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnIdentity {
    /// The CN of the client certificate that the TLS handshake verified (with
    /// `--client-cert-auth` or `--trusted-ca-file`); `None` on plain HTTP or without one.
    /// Shared, so putting the identity in each request's extensions allocates nothing.
    pub cert_common_name: Option<std::sync::Arc<str>>,
    /// The server's own in-process client, which runs the lock and election recipes.
    pub loopback: bool,
}
