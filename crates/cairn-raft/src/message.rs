//! [`PeerMessage`]: a Raft message between members, and its wire form.
//!
//! The transport sees messages only through this type, so raft-rs stays inside this crate:
//! a transport asks who a message is for, whether it is a snapshot, and for its bytes.

use bytes::Bytes;
use protobuf::Message as _;
use raft::eraftpb::{Message, MessageType};

/// Why bytes from a peer are not a Raft message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("undecodable raft message: {0}")]
    Undecodable(String),
    #[error("raft message cannot be encoded: {0}")]
    Unencodable(String),
}

/// A Raft message from one member to another: what [`crate::Transport::send`] carries and
/// [`crate::RaftHandle::step`] takes back. On the wire it is raft-rs's `eraftpb.Message`
/// in protobuf encoding.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PeerMessage(pub(crate) Message);

impl PeerMessage {
    /// The sending member.
    pub fn sender(&self) -> u64 {
        self.0.from
    }

    /// The member it is for.
    pub fn recipient(&self) -> u64 {
        self.0.to
    }

    /// raft-rs's name of the message type (`MsgAppend`, `MsgSnapshot`, ...), for logs and
    /// errors.
    pub fn kind(&self) -> &'static str {
        message_type_name(self.0.get_msg_type())
    }

    /// Whether it carries a snapshot of the whole state machine (`MsgSnapshot`).
    pub fn is_snapshot(&self) -> bool {
        self.0.get_msg_type() == MessageType::MsgSnapshot
    }

    /// Whether it is a request a member that does not lead passes on to the leader under
    /// its first sender's name (`MsgPropose`, `MsgReadIndex`, `MsgTransferLeader`), so it
    /// may arrive from a member other than its sender.
    pub fn is_forwarded_request(&self) -> bool {
        matches!(
            self.0.get_msg_type(),
            MessageType::MsgPropose | MessageType::MsgReadIndex | MessageType::MsgTransferLeader
        )
    }

    /// The log index a snapshot message was taken at; 0 for other messages.
    pub fn snapshot_index(&self) -> u64 {
        self.0.get_snapshot().get_metadata().index
    }

    /// The length of a snapshot message's state machine data; 0 for other messages.
    pub fn snapshot_len(&self) -> usize {
        self.0.get_snapshot().get_data().len()
    }

    /// A snapshot message's state machine data; empty for other messages.
    pub fn snapshot_data(&self) -> &[u8] {
        self.0.get_snapshot().get_data()
    }

    /// The members a snapshot message's configuration holds, each with whether it is a
    /// learner, in id order; `None` for a joint configuration (which cairn never enters:
    /// it changes one member at a time).
    pub fn snapshot_members(&self) -> Option<Vec<(u64, bool)>> {
        let cs = self.0.get_snapshot().get_metadata().get_conf_state();
        if !cs.voters_outgoing.is_empty() || !cs.learners_next.is_empty() {
            return None;
        }
        let mut members: Vec<(u64, bool)> = cs
            .voters
            .iter()
            .map(|&id| (id, false))
            .chain(cs.learners.iter().map(|&id| (id, true)))
            .collect();
        members.sort_unstable();
        Some(members)
    }

    /// Takes a snapshot message's state machine data out of it, leaving it empty.
    pub fn take_snapshot_data(&mut self) -> Bytes {
        self.0.mut_snapshot().take_data()
    }

    /// Puts state machine data back into a snapshot message.
    pub fn set_snapshot_data(&mut self, data: Bytes) {
        self.0.mut_snapshot().data = data;
    }

    /// The length of its wire form.
    pub fn encoded_len(&self) -> usize {
        self.0.compute_size() as usize
    }

    /// Appends its wire form to `out`.
    pub fn encode_to(&self, out: &mut Vec<u8>) -> Result<(), WireError> {
        self.0
            .write_to_vec(out)
            .map_err(|e| WireError::Unencodable(e.to_string()))
    }

    /// Its wire form.
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode_to(&mut out)?;
        Ok(out)
    }

    /// Reads a message from its wire form.
    pub fn decode(bytes: &[u8]) -> Result<PeerMessage, WireError> {
        Message::parse_from_bytes(bytes)
            .map(PeerMessage)
            .map_err(|e| WireError::Undecodable(e.to_string()))
    }

    pub(crate) fn into_inner(self) -> Message {
        self.0
    }
}

impl From<Message> for PeerMessage {
    fn from(m: Message) -> Self {
        PeerMessage(m)
    }
}

/// Wraps raft-rs's messages for a transport without copying them.
pub(crate) fn wrap(msgs: Vec<Message>) -> Vec<PeerMessage> {
    msgs.into_iter().map(PeerMessage).collect()
}

fn message_type_name(t: MessageType) -> &'static str {
    use MessageType::*;
    match t {
        MsgHup => "MsgHup",
        MsgBeat => "MsgBeat",
        MsgPropose => "MsgPropose",
        MsgAppend => "MsgAppend",
        MsgAppendResponse => "MsgAppendResponse",
        MsgRequestVote => "MsgRequestVote",
        MsgRequestVoteResponse => "MsgRequestVoteResponse",
        MsgSnapshot => "MsgSnapshot",
        MsgHeartbeat => "MsgHeartbeat",
        MsgHeartbeatResponse => "MsgHeartbeatResponse",
        MsgUnreachable => "MsgUnreachable",
        MsgSnapStatus => "MsgSnapStatus",
        MsgCheckQuorum => "MsgCheckQuorum",
        MsgTransferLeader => "MsgTransferLeader",
        MsgTimeoutNow => "MsgTimeoutNow",
        MsgReadIndex => "MsgReadIndex",
        MsgReadIndexResp => "MsgReadIndexResp",
        MsgRequestPreVote => "MsgRequestPreVote",
        MsgRequestPreVoteResponse => "MsgRequestPreVoteResponse",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_snapshot_round_trips_with_its_data_taken_out_and_put_back() {
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgSnapshot);
        m.from = 1;
        m.to = 2;
        m.mut_snapshot().mut_metadata().index = 42;
        m.mut_snapshot().data = Bytes::from_static(b"state");
        let mut m = PeerMessage(m);
        assert!(m.is_snapshot());
        assert_eq!((m.sender(), m.recipient(), m.kind()), (1, 2, "MsgSnapshot"));
        assert_eq!((m.snapshot_index(), m.snapshot_len()), (42, 5));
        let data = m.take_snapshot_data();
        let header = m.encode().unwrap();
        assert_eq!(header.len(), m.encoded_len());
        let mut back = PeerMessage::decode(&header).unwrap();
        assert_eq!(back.snapshot_len(), 0);
        back.set_snapshot_data(data);
        assert_eq!(back.snapshot_len(), 5);
        assert_eq!(back.snapshot_index(), 42);
    }

    #[test]
    fn garbage_is_refused() {
        assert!(matches!(
            PeerMessage::decode(&[0xff, 0xff, 0xff]),
            Err(WireError::Undecodable(_))
        ));
    }
}
