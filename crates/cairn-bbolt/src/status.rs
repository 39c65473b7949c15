//! What etcd's `snapshot status` reports of a bbolt file: a CRC-32C over every top-level
//! bucket's name and its keys and values in order, the main revision of the last key in
//! the `key` bucket, the number of keys in all buckets, and the database size.

use crate::{Error, Reader};

/// etcd's snapshot status figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotStatus {
    pub hash: u32,
    pub revision: i64,
    pub total_key: u64,
    pub total_size: u64,
}

/// Walks every bucket of `reader` and computes its [`SnapshotStatus`].
///
/// A nested bucket counts as a key and hashes its name only, as bbolt's `ForEach` hands
/// etcd a nil value for it.
pub fn snapshot_status(reader: &Reader) -> Result<SnapshotStatus, Error> {
    let mut crc = Crc32c::default();
    let mut revision = 0i64;
    let mut total_key = 0u64;
    for bucket in reader.buckets()? {
        crc.update(&bucket.name);
        let is_key = bucket.name == b"key";
        for entry in reader.entries(&bucket) {
            let entry = entry?;
            crc.update(&entry.key);
            if !entry.is_bucket {
                crc.update(&entry.value);
            }
            if is_key {
                let main = entry.key.get(..8).ok_or_else(|| {
                    Error::Corrupt("a key in the key bucket is not a revision".to_string())
                })?;
                let mut b = [0u8; 8];
                b.copy_from_slice(main);
                revision = i64::from_be_bytes(b);
            }
            total_key += 1;
        }
    }
    Ok(SnapshotStatus {
        hash: crc.finish(),
        revision,
        total_key,
        total_size: reader.size(),
    })
}

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), one table lookup per byte.
struct Crc32c(u32);

impl Default for Crc32c {
    fn default() -> Self {
        Crc32c(!0)
    }
}

const TABLE: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0x82F6_3B78
            } else {
                c >> 1
            };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
};

impl Crc32c {
    fn update(&mut self, bytes: &[u8]) {
        let mut c = self.0;
        for b in bytes {
            c = TABLE[((c ^ u32::from(*b)) & 0xff) as usize] ^ (c >> 8);
        }
        self.0 = c;
    }

    fn finish(&self) -> u32 {
        !self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_published_check_value() {
        let mut c = Crc32c::default();
        c.update(b"1234");
        c.update(b"56789");
        assert_eq!(c.finish(), 0xE306_9283);
    }
}
