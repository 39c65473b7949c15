//! Dialling a peer URL's gRPC (member list, snapshots, HashKV, lease forwarding): plain
//! TCP with gathered writes, or TLS for https URLs with this member's peer TLS.

use super::peer_dial;

/// A connection to a peer's gRPC: gathered writes over TCP, or TLS.
pub trait PeerIo: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> PeerIo for T {}

/// A tonic endpoint for a peer's gRPC at `url`, and whether its connections need TLS.
/// The endpoint's URI is always `http://`: tonic refuses an `https://` one without its own
/// TLS; [`dial`] does the TLS instead.
pub fn endpoint(url: &str) -> Option<(tonic::transport::Endpoint, bool)> {
    let (plain, tls) = match url.strip_prefix("https://") {
        Some(rest) => (format!("http://{rest}"), true),
        None => (url.to_string(), false),
    };
    let endpoint = tonic::transport::Endpoint::from_shared(plain).ok()?;
    Some((endpoint, tls))
}

/// Dials `uri` for a peer gRPC client, over TLS when `tls` (the peer URL was https).
pub async fn dial(
    uri: tonic::transport::Uri,
    tls: bool,
) -> std::io::Result<hyper_util::rt::TokioIo<Box<dyn PeerIo>>> {
    if !tls {
        let io = cairn_client::coalesce::dial(uri).await?.into_inner();
        return Ok(hyper_util::rt::TokioIo::new(Box::new(io)));
    }
    let dial = peer_dial().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "https peer URL but this member has no peer TLS",
        )
    })?;
    let host = uri.host().unwrap_or_default().to_string();
    let port = uri.port_u16().unwrap_or(443);
    let addr = format!("{host}:{port}");
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let tcp = tokio::net::TcpStream::connect((bare, port)).await?;
    tcp.set_nodelay(true)?;
    let stream = dial.connect(&addr, tcp).await?;
    Ok(hyper_util::rt::TokioIo::new(Box::new(stream)))
}
