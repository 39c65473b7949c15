//! bbolt's page layout, byte by byte. All integers are little-endian.
//!
//! ```text
//! page header (16):  id u64 | flags u16 | count u16 | overflow u32
//! meta (64, at 16):  magic u32 | version u32 | page_size u32 | flags u32
//!                    | root u64 | sequence u64 | freelist u64 | pgid u64 | txid u64
//!                    | checksum u64   (FNV-1a 64 of the 56 bytes before it)
//! leaf element (16): flags u32 | pos u32 | ksize u32 | vsize u32
//! branch element(16): pos u32 | ksize u32 | pgid u64
//! freelist:          count free page ids u64 (count 0xFFFF: the first u64 is the count)
//! bucket value:      root u64 | sequence u64 [| inline leaf page when root is 0]
//! ```

/// The page size this crate writes.
pub const PAGE_SIZE: usize = 4096;
/// bbolt's largest key.
pub const MAX_KEY_SIZE: usize = 32768;
/// bbolt's largest value.
pub const MAX_VALUE_SIZE: usize = (1 << 31) - 2;

pub(crate) const MAGIC: u32 = 0xED0C_DAED;
pub(crate) const VERSION: u32 = 2;

pub(crate) const PAGE_HEADER_SIZE: usize = 16;
pub(crate) const ELEMENT_SIZE: usize = 16;
pub(crate) const BUCKET_HEADER_SIZE: usize = 16;
pub(crate) const META_SIZE: usize = 64;

pub(crate) const BRANCH_PAGE: u16 = 0x01;
pub(crate) const LEAF_PAGE: u16 = 0x02;
pub(crate) const META_PAGE: u16 = 0x04;
pub(crate) const FREELIST_PAGE: u16 = 0x10;

/// A leaf element whose value is a bucket header.
pub(crate) const BUCKET_LEAF_FLAG: u32 = 0x01;

pub(crate) fn u16_at(b: &[u8], at: usize) -> u16 {
    let mut a = [0u8; 2];
    a.copy_from_slice(&b[at..at + 2]);
    u16::from_le_bytes(a)
}

pub(crate) fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

pub(crate) fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// FNV-1a, 64 bits: bbolt's meta checksum.
pub(crate) fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// A page header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PageHeader {
    pub id: u64,
    pub flags: u16,
    pub count: u16,
    pub overflow: u32,
}

impl PageHeader {
    pub fn decode(b: &[u8]) -> PageHeader {
        PageHeader {
            id: u64_at(b, 0),
            flags: u16_at(b, 8),
            count: u16_at(b, 10),
            overflow: u32_at(b, 12),
        }
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.id.to_le_bytes());
        out.extend_from_slice(&self.flags.to_le_bytes());
        out.extend_from_slice(&self.count.to_le_bytes());
        out.extend_from_slice(&self.overflow.to_le_bytes());
    }
}

/// A meta page's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Meta {
    pub page_size: u32,
    pub flags: u32,
    pub root: u64,
    pub sequence: u64,
    pub freelist: u64,
    pub pgid: u64,
    pub txid: u64,
}

impl Meta {
    /// Decodes and checks the meta in `b` (the 64 bytes after a page header).
    pub fn decode(b: &[u8]) -> Result<Meta, crate::Error> {
        if u32_at(b, 0) != MAGIC {
            return Err(crate::Error::Invalid);
        }
        if u32_at(b, 4) != VERSION {
            return Err(crate::Error::VersionMismatch);
        }
        if fnv1a64(&b[..56]) != u64_at(b, 56) {
            return Err(crate::Error::Checksum);
        }
        Ok(Meta {
            page_size: u32_at(b, 8),
            flags: u32_at(b, 12),
            root: u64_at(b, 16),
            sequence: u64_at(b, 24),
            freelist: u64_at(b, 32),
            pgid: u64_at(b, 40),
            txid: u64_at(b, 48),
        })
    }

    /// The 64 meta bytes, checksum included.
    pub fn encode(&self) -> [u8; META_SIZE] {
        let mut b = [0u8; META_SIZE];
        b[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        b[4..8].copy_from_slice(&VERSION.to_le_bytes());
        b[8..12].copy_from_slice(&self.page_size.to_le_bytes());
        b[12..16].copy_from_slice(&self.flags.to_le_bytes());
        b[16..24].copy_from_slice(&self.root.to_le_bytes());
        b[24..32].copy_from_slice(&self.sequence.to_le_bytes());
        b[32..40].copy_from_slice(&self.freelist.to_le_bytes());
        b[40..48].copy_from_slice(&self.pgid.to_le_bytes());
        b[48..56].copy_from_slice(&self.txid.to_le_bytes());
        let sum = fnv1a64(&b[..56]);
        b[56..64].copy_from_slice(&sum.to_le_bytes());
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a64_matches_the_published_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn meta_round_trips_and_a_flipped_bit_fails_the_checksum() {
        let m = Meta {
            page_size: 4096,
            flags: 0,
            root: 3,
            sequence: 0,
            freelist: 4,
            pgid: 5,
            txid: 1,
        };
        let mut b = m.encode();
        assert_eq!(Meta::decode(&b).ok(), Some(m));
        b[20] ^= 1;
        assert!(matches!(Meta::decode(&b), Err(crate::Error::Checksum)));
    }
}
