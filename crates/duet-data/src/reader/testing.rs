//! Helpers for the readers' unit tests: the in-memory store with a record of ranged reads.

use std::io::Read;
use std::ops::Range;
use std::sync::Mutex;

use crate::reader::{ReadEvent, ShardReader};
use crate::source::{MemoryStore, ShardStore};
use crate::{DataError, RawSample};

/// The shared [`MemoryStore`], recording ranged reads so tests can check that parquet reads
/// ranges.
#[derive(Debug, Default)]
pub(crate) struct MapStore {
    inner: MemoryStore,
    /// Every `read_range` call, in order.
    pub(crate) ranges: Mutex<Vec<Range<u64>>>,
}

impl MapStore {
    pub(crate) fn with(files: &[(&str, &[u8])]) -> Self {
        let inner = MemoryStore::new();
        for (url, bytes) in files {
            inner.insert(*url, bytes.to_vec());
        }
        Self {
            inner,
            ranges: Mutex::default(),
        }
    }
}

impl ShardStore for MapStore {
    fn open(&self, url: &str) -> Result<Box<dyn Read + Send>, DataError> {
        self.inner.open(url)
    }

    fn size(&self, url: &str) -> Result<u64, DataError> {
        self.inner.size(url)
    }

    fn read_range(&self, url: &str, range: Range<u64>) -> Result<Vec<u8>, DataError> {
        self.ranges.lock().expect("poisoned").push(range.clone());
        self.inner.read_range(url, range)
    }
}

/// A compact view of a reader's events: `key` for a sample, `!reason key` for a skip,
/// `FAILED reason` for a shard failure.
pub(crate) fn summary(
    reader: &dyn ShardReader,
    store: &dyn ShardStore,
    url: &str,
    skip: u64,
) -> Vec<String> {
    reader
        .read(store, url, skip)
        .map(|event| match event {
            ReadEvent::Sample(s) => s.key,
            ReadEvent::Skipped { reason, key, .. } => {
                format!("!{reason} {}", key.unwrap_or_default())
            }
            ReadEvent::ShardFailed { reason, .. } => format!("FAILED {reason}"),
        })
        .collect()
}

/// Every sample of `url`, panicking on any skip or failure (for shards that must read cleanly).
pub(crate) fn samples(
    reader: &dyn ShardReader,
    store: &dyn ShardStore,
    url: &str,
) -> Vec<RawSample> {
    reader
        .read(store, url, 0)
        .map(|event| match event {
            ReadEvent::Sample(s) => s,
            other => panic!("unexpected {other:?}"),
        })
        .collect()
}
