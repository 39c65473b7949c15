//! CRC-32 with the Castagnoli polynomial, as etcd uses it: HashKV and the corruption checks
//! (cairn-mvcc), and the record chain of etcd's WAL and its `.snap` files (cairn-etcdwal).
//!
//! Slicing-by-8 over tables built at compile time; no dependency and no unsafe code. This
//! crate depends on nothing.

const POLY: u32 = 0x82F6_3B78;

const fn make_tables() -> [[u32; 256]; 8] {
    let mut t = [[0u32; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ POLY } else { c >> 1 };
            k += 1;
        }
        t[0][i] = c;
        i += 1;
    }
    let mut i = 0;
    while i < 256 {
        let mut j = 1;
        while j < 8 {
            let prev = t[j - 1][i];
            t[j][i] = (prev >> 8) ^ t[0][(prev & 0xff) as usize];
            j += 1;
        }
        i += 1;
    }
    t
}

static TABLES: [[u32; 256]; 8] = make_tables();

/// A running CRC-32C.
#[derive(Debug, Clone)]
pub struct Crc32c {
    state: u32,
}

impl Default for Crc32c {
    fn default() -> Crc32c {
        Crc32c::new()
    }
}

impl Crc32c {
    /// A checksum of no bytes yet.
    pub fn new() -> Crc32c {
        Crc32c { state: !0 }
    }

    /// A checksum that goes on from `sum`, as if the bytes that gave `sum` had been added:
    /// Go's `crc32.New` seeded with a previous `Sum32`, which etcd's WAL uses to chain one
    /// segment's records to the last one's.
    pub fn resume(sum: u32) -> Crc32c {
        Crc32c { state: !sum }
    }

    /// The checksum of `data` alone.
    pub fn checksum(data: &[u8]) -> u32 {
        let mut c = Crc32c::new();
        c.update(data);
        c.sum()
    }

    /// Adds bytes to the checksum.
    pub fn update(&mut self, data: &[u8]) {
        let t = &TABLES;
        let mut crc = self.state;
        let mut chunks = data.chunks_exact(8);
        for c in &mut chunks {
            let lo = u32::from_le_bytes([c[0], c[1], c[2], c[3]]) ^ crc;
            crc = t[7][(lo & 0xff) as usize]
                ^ t[6][((lo >> 8) & 0xff) as usize]
                ^ t[5][((lo >> 16) & 0xff) as usize]
                ^ t[4][(lo >> 24) as usize]
                ^ t[3][c[4] as usize]
                ^ t[2][c[5] as usize]
                ^ t[1][c[6] as usize]
                ^ t[0][c[7] as usize];
        }
        for &b in chunks.remainder() {
            crc = (crc >> 8) ^ t[0][((crc ^ u32::from(b)) & 0xff) as usize];
        }
        self.state = crc;
    }

    /// The checksum of everything added so far.
    pub fn sum(&self) -> u32 {
        !self.state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vectors() {
        let cases: [(&[u8], u32); 4] = [
            (b"", 0),
            (b"123456789", 0xE306_9283),
            (b"a", 0xC1D0_4330),
            (&[0u8; 32], 0x8A91_36AA),
        ];
        for (input, want) in cases {
            let mut c = Crc32c::new();
            c.update(input);
            assert_eq!(c.sum(), want, "{input:?}");
            let mut split = Crc32c::new();
            let (a, b) = input.split_at(input.len() / 3);
            split.update(a);
            split.update(b);
            assert_eq!(split.sum(), want);
            assert_eq!(Crc32c::checksum(input), want);
        }
    }

    #[test]
    fn resume_goes_on_from_a_sum() {
        let mut first = Crc32c::new();
        first.update(b"1234");
        let mut rest = Crc32c::resume(first.sum());
        rest.update(b"56789");
        assert_eq!(rest.sum(), 0xE306_9283);
        assert_eq!(Crc32c::resume(0).sum(), 0);
    }
}
