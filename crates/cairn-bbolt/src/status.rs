//! What etcd's `snapshot status` reports of a bbolt file: a CRC-32C over every top-level
//! bucket's name and its keys and values in order, the main revision of the last key in
//! the `key` bucket, the number of keys in all buckets, and the database size.

use cairn_crc32c::Crc32c;

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
    let mut crc = Crc32c::new();
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
        hash: crc.sum(),
        revision,
        total_key,
        total_size: reader.size(),
    })
}
