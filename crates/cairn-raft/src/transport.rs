//! The seam to other members.

use crate::PeerMessage;

/// Carries Raft messages to peers. Called on the Raft thread, so it must only queue:
/// a real implementation hands messages to its own sender tasks and returns.
///
/// Incoming messages come back through [`crate::RaftHandle::step`].
pub trait Transport: Send + 'static {
    fn send(&mut self, msgs: Vec<PeerMessage>);
}

impl<T: Transport + ?Sized> Transport for Box<T> {
    fn send(&mut self, msgs: Vec<PeerMessage>) {
        (**self).send(msgs)
    }
}

/// The transport of a single-member cluster: there is nobody to talk to.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoPeers;

impl Transport for NoPeers {
    fn send(&mut self, msgs: Vec<PeerMessage>) {
        if !msgs.is_empty() {
            tracing::trace!(count = msgs.len(), "dropping raft messages: no peers");
        }
    }
}
