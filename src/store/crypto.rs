//! The Matrix end-to-end encryption state of the bridge's device (`cryptokey_value`): written
//! by `crate::e2ee` in synced batches like everything else, read whole at start.

use rocksdb::{Direction, IteratorMode};

use super::{Batch, Cf, Store, StoreError, rocks};

/// A record: key and value.
type Record = (Vec<u8>, Vec<u8>);

impl Store {
    /// Every record of the device's crypto state whose key starts with `prefix`, in key order.
    pub fn crypto_records(&self, prefix: &[u8]) -> Result<Vec<Record>, StoreError> {
        let mut records = Vec::new();
        let mode = IteratorMode::From(prefix, Direction::Forward);
        for item in self.db.iterator_cf(self.cf(Cf::CryptokeyValue)?, mode) {
            let (key, value) = item.map_err(rocks(&self.path))?;
            if !key.starts_with(prefix) {
                break;
            }
            records.push((key.to_vec(), value.to_vec()));
        }
        Ok(records)
    }
}

impl Batch {
    /// Writes (`Some`) or deletes (`None`) one record of the device's crypto state. A delete is a
    /// real RocksDB delete: a spent one-time key or Olm session goes away.
    pub fn crypto(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) {
        self.ops.push((Cf::CryptokeyValue, key, value));
    }
}
