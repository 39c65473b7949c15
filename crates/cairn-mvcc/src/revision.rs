//! Revisions and their on-disk encoding.
//!
//! A revision is a pair `(main, sub)`: `main` counts the writing operations applied to the
//! store, `sub` orders the changes inside one operation (a transaction or a range delete that
//! touches several keys). The "key" table is keyed by the revision written as etcd does,
//! so its byte order is revision order:
//!
//! ```text
//! main (8 bytes, big-endian) | b'_' | sub (8 bytes, big-endian) [ | b't' for a tombstone ]
//! ```

/// One change's place in the history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub(crate) struct Revision {
    pub main: i64,
    pub sub: i64,
}

/// Length of an encoded revision without the tombstone mark.
pub(crate) const REV_LEN: usize = 17;
/// Length of an encoded tombstone revision.
pub(crate) const TOMBSTONE_LEN: usize = 18;
const TOMBSTONE_MARK: u8 = b't';

impl Revision {
    pub(crate) fn new(main: i64, sub: i64) -> Revision {
        Revision { main, sub }
    }

    /// Encodes the revision as a "key" table key, marked as a tombstone if asked.
    pub(crate) fn to_bytes(self, tombstone: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(TOMBSTONE_LEN);
        out.extend_from_slice(&self.main.to_be_bytes());
        out.push(b'_');
        out.extend_from_slice(&self.sub.to_be_bytes());
        if tombstone {
            out.push(TOMBSTONE_MARK);
        }
        out
    }

    /// Decodes a "key" table key into its revision and whether it marks a tombstone.
    pub(crate) fn from_bytes(bytes: &[u8]) -> Option<(Revision, bool)> {
        let tombstone = match bytes.len() {
            REV_LEN => false,
            TOMBSTONE_LEN if bytes[REV_LEN] == TOMBSTONE_MARK => true,
            _ => return None,
        };
        if bytes[8] != b'_' {
            return None;
        }
        let main = i64::from_be_bytes(bytes[..8].try_into().ok()?);
        let sub = i64::from_be_bytes(bytes[9..REV_LEN].try_into().ok()?);
        Some((Revision { main, sub }, tombstone))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_round_trips_and_orders_like_revisions() {
        let revs = [
            Revision::new(1, 0),
            Revision::new(1, 1),
            Revision::new(2, 0),
            Revision::new(256, 3),
        ];
        for pair in revs.windows(2) {
            assert!(pair[0].to_bytes(false) < pair[1].to_bytes(true));
        }
        for rev in revs {
            assert_eq!(
                Revision::from_bytes(&rev.to_bytes(false)),
                Some((rev, false))
            );
            assert_eq!(Revision::from_bytes(&rev.to_bytes(true)), Some((rev, true)));
        }
        let b = Revision::new(2, 1).to_bytes(true);
        assert_eq!(
            b,
            [0, 0, 0, 0, 0, 0, 0, 2, b'_', 0, 0, 0, 0, 0, 0, 0, 1, b't']
        );
        assert_eq!(Revision::from_bytes(b"garbage"), None);
    }
}
