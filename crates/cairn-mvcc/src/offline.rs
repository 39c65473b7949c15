//! Damage done to a closed backend file, for the tests of the corruption checks: what a bad
//! disk or a bug could leave behind, made on purpose so the checks can be seen to find it.
//! Nothing in cairn calls it.

use std::path::Path;

use cairn_proto::mvccpb::KeyValue;
use prost::Message;
use redb::{Database, Durability, ReadableTable};

use crate::backend::KEY_TABLE;
use crate::error::MvccError;

/// Rewrites the value of the newest revision of `key` in the backend file at `path` in
/// place: no new revision, no Raft entry, nothing else changed. Returns false if the file
/// holds no revision of `key`. The file must not be open in a running member.
#[doc(hidden)]
pub fn overwrite_value_in_place(path: &Path, key: &[u8], value: &[u8]) -> Result<bool, MvccError> {
    let db = Database::open(path)?;
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::Immediate)?;
    let found = {
        let mut table = txn.open_table(KEY_TABLE)?;
        let mut newest: Option<(Vec<u8>, KeyValue)> = None;
        for entry in table.iter()? {
            let (k, v) = entry?;
            let kv = KeyValue::decode(v.value())?;
            if kv.key == key {
                newest = Some((k.value().to_vec(), kv));
            }
        }
        match newest {
            Some((rev, mut kv)) => {
                kv.value = value.to_vec();
                table.insert(rev.as_slice(), kv.encode_to_vec().as_slice())?;
                true
            }
            None => false,
        }
    };
    txn.commit()?;
    Ok(found)
}
