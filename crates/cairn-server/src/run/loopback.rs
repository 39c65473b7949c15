//! The member's client of itself, for the services that run etcd's recipes on a client's
//! behalf (lock, election): an in-process connection served by the same code as a
//! network one (`conn.rs`), so it needs no listener, works whatever the client URLs'
//! schemes, and its requests carry [`ConnIdentity`] with `loopback` set.

use std::io;
use std::sync::{Arc, OnceLock};

use hyper_util::rt::TokioIo;

use super::conn;
use crate::config::ConnectionLimits;
use crate::identity::ConnIdentity;

/// Bytes buffered each way on an in-process connection.
const BUFFER: usize = 256 << 10;

/// Where the router the loopback connections are served by is put once it is built (it
/// holds the loopback client, so it cannot exist first).
pub(super) type RouterSlot = Arc<OnceLock<axum::Router>>;

/// A client of this member whose connections are served in-process by the router put in
/// the returned slot; a request made before the slot is filled fails as a refused dial.
pub(super) fn client(limits: ConnectionLimits) -> (cairn_client::Client, RouterSlot) {
    let slot = RouterSlot::default();
    let router = slot.clone();
    let connector = tower::service_fn(move |_: tonic::transport::Uri| {
        let router = router.get().cloned();
        async move {
            let router = router.ok_or_else(|| {
                io::Error::new(io::ErrorKind::ConnectionRefused, "member not serving yet")
            })?;
            let (ours, theirs) = tokio::io::duplex(BUFFER);
            let identity = ConnIdentity {
                cert_common_name: None,
                loopback: true,
            };
            tokio::spawn(conn::serve_io(theirs, router, limits, identity));
            Ok::<_, io::Error>(TokioIo::new(ours))
        }
    });
    let channel = tonic::transport::Endpoint::from_static("http://cairn.loopback")
        .connect_with_connector_lazy(connector);
    (cairn_client::Client::from_channel(channel), slot)
}
