//! Raft snapshots between members, streamed in chunks over `RaftPeer.SendSnapshot`.
//!
//! Sending: [`chunks`] turns a raft-rs `MsgSnapshot` into a header chunk (the message
//! encoded without the snapshot's data, and the data's length) followed by pieces of at
//! most [`CHUNK_BYTES`] of data. The pieces are slices of the snapshot's own `Bytes`, so
//! the snapshot is never held twice. [`send`] streams them on a connection of its own.
//!
//! Receiving: an [`Assembly`] takes the chunks in order, refuses a stream that is
//! malformed, announces more than the receiver accepts, or carries more or less data than
//! announced, and gives back the message with its data in place.
//!
//! For a 2.5 MiB snapshot the stream is
//!
//! ```text
//! {header: {cluster_id, from, to, message: MsgSnapshot without data, data_len: 2621440}}
//! {data: [0, 1 MiB)}  {data: [1 MiB, 2 MiB)}  {data: [2 MiB, 2.5 MiB)}
//! ```

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use cairn_proto::cairnpb::{SnapshotChunk, SnapshotHeader};
use cairn_raft::{PeerMessage, WireError};

/// Data bytes in one chunk at most.
pub const CHUNK_BYTES: usize = 1 << 20;

/// Time any snapshot may take to send, on top of [`SEND_MIN_RATE`].
const SEND_TIMEOUT_BASE: Duration = Duration::from_secs(30);
/// Bytes per second a snapshot must at least move at before its send is given up.
const SEND_MIN_RATE: u64 = 1 << 20;

/// How long a snapshot of `len` bytes may take to arrive. The sender gives up after it; the
/// receiver gives up on a stream whose first `len` bytes took longer.
pub(crate) fn transfer_timeout(len: u64) -> Duration {
    SEND_TIMEOUT_BASE + Duration::from_secs(len / SEND_MIN_RATE)
}

/// Why a snapshot stream was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AssemblyError {
    #[error("snapshot stream does not start with a header")]
    MissingHeader,
    #[error("snapshot stream has a second header")]
    SecondHeader,
    #[error("{0}")]
    Undecodable(WireError),
    #[error("snapshot stream carries a {0}, not a MsgSnapshot")]
    NotASnapshot(&'static str),
    #[error("snapshot message from {from:x} to {to:x} does not match its header")]
    Mismatched { from: u64, to: u64 },
    #[error("snapshot of {len} bytes exceeds the limit of {limit} bytes")]
    TooLarge { len: u64, limit: u64 },
    #[error("snapshot stream carries more than the {want} bytes announced")]
    TooLong { want: u64 },
    #[error("snapshot stream ended after {got} of {want} bytes")]
    TooShort { got: u64, want: u64 },
}

/// Why a snapshot did not reach its member.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("peer unreachable")]
    Unreachable,
    #[error("encode raft message: {0}")]
    Encode(#[from] WireError),
    #[error("{0}")]
    Refused(String),
    #[error("not delivered within {0:?}")]
    TimedOut(Duration),
}

/// Splits snapshot message `msg` from member `from` to member `to` of cluster `cluster_id`
/// into a header chunk and data chunks of at most `chunk_bytes`.
pub fn chunks(
    cluster_id: u64,
    from: u64,
    to: u64,
    mut msg: PeerMessage,
    chunk_bytes: usize,
) -> Result<impl Iterator<Item = SnapshotChunk> + Send + 'static, WireError> {
    let data = msg.take_snapshot_data();
    let header = SnapshotChunk {
        header: Some(SnapshotHeader {
            cluster_id,
            from,
            to,
            message: msg.encode()?,
            data_len: data.len() as u64,
        }),
        data: Bytes::new(),
    };
    let chunk_bytes = chunk_bytes.max(1);
    let pieces = (0..data.len()).step_by(chunk_bytes).map(move |start| {
        let end = (start + chunk_bytes).min(data.len());
        SnapshotChunk {
            header: None,
            data: data.slice(start..end),
        }
    });
    Ok(std::iter::once(header).chain(pieces))
}

/// Streams snapshot message `msg` to the member at `urls` on a new connection, and returns
/// once the receiver has handed it to its Raft (or the send failed).
pub async fn send(
    urls: &[String],
    message_limit: usize,
    cluster_id: u64,
    from: u64,
    msg: PeerMessage,
) -> Result<(), SendError> {
    let to = msg.recipient();
    let len = msg.snapshot_len() as u64;
    let index = msg.snapshot_index();
    let started = Instant::now();
    let mut client = super::service::connect(urls, message_limit)
        .await
        .ok_or(SendError::Unreachable)?;
    let stream = chunks(cluster_id, from, to, msg, CHUNK_BYTES)?;
    let timeout = transfer_timeout(len);
    match tokio::time::timeout(timeout, client.send_snapshot(futures::stream::iter(stream))).await {
        Ok(Ok(_)) => {
            tracing::info!(
                remote_peer_id = %format!("{to:x}"),
                index,
                bytes = len,
                took = ?started.elapsed(),
                "sent raft snapshot"
            );
            Ok(())
        }
        Ok(Err(status)) => Err(SendError::Refused(status.message().to_string())),
        Err(_) => Err(SendError::TimedOut(timeout)),
    }
}

/// A snapshot message being put back together from its chunks.
#[derive(Debug)]
pub struct Assembly {
    msg: PeerMessage,
    data: BytesMut,
    want: u64,
}

impl Assembly {
    /// Starts from the stream's first chunk, accepting at most `limit` bytes of data.
    pub fn start(first: SnapshotChunk, limit: u64) -> Result<Assembly, AssemblyError> {
        let header = first.header.ok_or(AssemblyError::MissingHeader)?;
        let msg = PeerMessage::decode(&header.message).map_err(AssemblyError::Undecodable)?;
        if !msg.is_snapshot() {
            return Err(AssemblyError::NotASnapshot(msg.kind()));
        }
        if (msg.sender(), msg.recipient()) != (header.from, header.to) {
            return Err(AssemblyError::Mismatched {
                from: msg.sender(),
                to: msg.recipient(),
            });
        }
        let want = header.data_len;
        if want > limit {
            return Err(AssemblyError::TooLarge { len: want, limit });
        }
        let mut a = Assembly {
            msg,
            // Grown as chunks arrive, never to what the header claims: a sender that
            // announces a large snapshot and stops costs only what it sent.
            data: BytesMut::new(),
            want,
        };
        a.append(&first.data)?;
        Ok(a)
    }

    /// The data bytes the header announced.
    pub fn announced(&self) -> u64 {
        self.want
    }

    /// The data bytes that have arrived.
    pub fn received(&self) -> u64 {
        self.data.len() as u64
    }

    /// Adds the next chunk.
    pub fn push(&mut self, chunk: SnapshotChunk) -> Result<(), AssemblyError> {
        if chunk.header.is_some() {
            return Err(AssemblyError::SecondHeader);
        }
        self.append(&chunk.data)
    }

    fn append(&mut self, data: &[u8]) -> Result<(), AssemblyError> {
        if (self.data.len() + data.len()) as u64 > self.want {
            return Err(AssemblyError::TooLong { want: self.want });
        }
        self.data.extend_from_slice(data);
        Ok(())
    }

    /// The message with its snapshot's data, once all of it has arrived.
    pub fn finish(mut self) -> Result<PeerMessage, AssemblyError> {
        let got = self.data.len() as u64;
        if got != self.want {
            return Err(AssemblyError::TooShort {
                got,
                want: self.want,
            });
        }
        self.msg.set_snapshot_data(self.data.freeze());
        Ok(self.msg)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use cairn_raft::testing::eraftpb::{Message, MessageType};

    fn snapshot_msg(len: usize) -> PeerMessage {
        snapshot_raw(len).into()
    }

    fn snapshot_raw(len: usize) -> Message {
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgSnapshot);
        m.from = 1;
        m.to = 2;
        m.term = 7;
        let snap = m.mut_snapshot();
        snap.mut_metadata().index = 42;
        snap.mut_metadata().term = 6;
        snap.mut_metadata().mut_conf_state().voters = vec![1, 2, 3];
        snap.data = (0..len).map(|i| (i % 251) as u8).collect::<Vec<_>>().into();
        m
    }

    fn assemble(chunks: Vec<SnapshotChunk>, limit: u64) -> Result<PeerMessage, AssemblyError> {
        let mut it = chunks.into_iter();
        let mut a = Assembly::start(it.next().unwrap(), limit)?;
        for c in it {
            a.push(c)?;
        }
        a.finish()
    }

    #[test]
    fn chunks_reassemble_into_the_same_message() {
        for (len, chunk, pieces) in [(0, 4, 0), (1, 4, 1), (8, 4, 2), (9, 4, 3), (1000, 1000, 1)] {
            let msg = snapshot_msg(len);
            let cs: Vec<_> = chunks(9, 1, 2, msg.clone(), chunk).unwrap().collect();
            assert_eq!(cs.len(), 1 + pieces, "len {len} chunk {chunk}");
            let h = cs[0].header.as_ref().unwrap();
            assert_eq!(
                (h.cluster_id, h.from, h.to, h.data_len),
                (9, 1, 2, len as u64)
            );
            assert!(cs[0].data.is_empty());
            assert!(cs[1..]
                .iter()
                .all(|c| c.header.is_none() && c.data.len() <= chunk));
            assert_eq!(assemble(cs, len as u64).unwrap(), msg);
        }
    }

    #[test]
    fn data_chunks_share_the_snapshot_buffer() {
        let msg = snapshot_raw(10);
        let start = msg.get_snapshot().data.as_ptr();
        let msg = PeerMessage::from(msg);
        let cs: Vec<_> = chunks(9, 1, 2, msg, 4).unwrap().collect();
        assert_eq!(cs[1].data.as_ptr(), start);
        assert_eq!(cs[2].data.as_ptr(), start.wrapping_add(4));
    }

    #[test]
    fn malformed_streams_are_refused() {
        let good = || {
            chunks(9, 1, 2, snapshot_msg(10), 4)
                .unwrap()
                .collect::<Vec<_>>()
        };
        let mut not_snapshot = snapshot_raw(0);
        not_snapshot.set_msg_type(MessageType::MsgAppend);
        let not_snapshot = PeerMessage::from(not_snapshot);
        let cases: Vec<(&str, Vec<SnapshotChunk>, AssemblyError)> = vec![
            (
                "no header",
                good()[1..].to_vec(),
                AssemblyError::MissingHeader,
            ),
            (
                "second header",
                [good(), good()].concat(),
                AssemblyError::SecondHeader,
            ),
            (
                "undecodable message",
                {
                    let mut cs = good();
                    cs[0].header.as_mut().unwrap().message = vec![0xff; 3];
                    cs
                },
                AssemblyError::Undecodable(WireError::Undecodable(String::new())),
            ),
            (
                "not a snapshot",
                chunks(9, 1, 2, not_snapshot, 4).unwrap().collect(),
                AssemblyError::NotASnapshot("MsgAppend"),
            ),
            (
                "message not between the header's members",
                {
                    let mut cs = good();
                    cs[0].header.as_mut().unwrap().from = 3;
                    cs
                },
                AssemblyError::Mismatched { from: 1, to: 2 },
            ),
            (
                "over the limit",
                chunks(9, 1, 2, snapshot_msg(11), 4).unwrap().collect(),
                AssemblyError::TooLarge { len: 11, limit: 10 },
            ),
            (
                "more data than announced",
                {
                    let mut cs = good();
                    cs[0].header.as_mut().unwrap().data_len = 9;
                    cs
                },
                AssemblyError::TooLong { want: 9 },
            ),
            (
                "less data than announced",
                good()[..3].to_vec(),
                AssemblyError::TooShort { got: 8, want: 10 },
            ),
        ];
        for (name, cs, want) in cases {
            let got = assemble(cs, 10).unwrap_err();
            match want {
                // The decoder's wording is its own.
                AssemblyError::Undecodable(_) => {
                    assert!(
                        matches!(got, AssemblyError::Undecodable(_)),
                        "{name}: {got}"
                    )
                }
                want => assert_eq!(got, want, "{name}"),
            }
        }
    }
}
