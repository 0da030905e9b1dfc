//! The in-memory twin of the stores, for tests of readers and the pipeline.

use std::collections::BTreeMap;
use std::io::{Cursor, Read};
use std::ops::Range;
use std::sync::{Arc, PoisonError, RwLock};

use super::{ShardStore, check_range};
use crate::DataError;

/// Shards held in memory, keyed by the exact URL string (any scheme or none).
#[derive(Debug, Default)]
pub struct MemoryStore {
    files: RwLock<BTreeMap<String, Arc<[u8]>>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces the shard at `url`.
    pub fn insert(&self, url: impl Into<String>, bytes: impl Into<Vec<u8>>) {
        let bytes: Arc<[u8]> = bytes.into().into();
        self.files
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(url.into(), bytes);
    }

    /// Removes the shard at `url`; returns whether it was there.
    pub fn remove(&self, url: &str) -> bool {
        self.files
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(url)
            .is_some()
    }

    fn get(&self, url: &str) -> Result<Arc<[u8]>, DataError> {
        let files = self.files.read().unwrap_or_else(PoisonError::into_inner);
        files
            .get(url)
            .cloned()
            .ok_or_else(|| DataError::ShardNotFound {
                url: url.to_owned(),
            })
    }
}

impl ShardStore for MemoryStore {
    fn open(&self, url: &str) -> Result<Box<dyn Read + Send>, DataError> {
        Ok(Box::new(Cursor::new(self.get(url)?)))
    }

    fn size(&self, url: &str) -> Result<u64, DataError> {
        Ok(self.get(url)?.len() as u64)
    }

    fn read_range(&self, url: &str, range: Range<u64>) -> Result<Vec<u8>, DataError> {
        let bytes = self.get(url)?;
        check_range(url, &range, bytes.len() as u64)?;
        // Both bounds are <= bytes.len(), a usize, so the casts are lossless.
        Ok(bytes[range.start as usize..range.end as usize].to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_size_range_and_missing() {
        let store = MemoryStore::new();
        store.insert("mem/a.tar", b"0123456789".to_vec());
        let mut text = String::new();
        store
            .open("mem/a.tar")
            .expect("open")
            .read_to_string(&mut text)
            .expect("read");
        assert_eq!(text, "0123456789");
        assert_eq!(store.size("mem/a.tar").expect("size"), 10);
        assert_eq!(store.read_range("mem/a.tar", 2..5).expect("range"), b"234");
        assert!(matches!(
            store.read_range("mem/a.tar", 5..11),
            Err(DataError::InvalidRange { .. })
        ));
        let err = store.open("mem/b.tar").err().expect("missing");
        assert_eq!(err.to_string(), "shard mem/b.tar: not found");
        assert!(store.remove("mem/a.tar"));
        assert!(store.size("mem/a.tar").is_err());
    }
}
