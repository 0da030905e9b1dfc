//! An in-memory [`ShardStore`] for the readers' unit tests, so they need no store
//! implementation (those live in `source/`).

use std::collections::BTreeMap;
use std::io::{Cursor, Read};
use std::ops::Range;
use std::sync::Mutex;

use crate::DataError;
use crate::reader::{ReadEvent, ShardReader};
use crate::source::ShardStore;

/// URL -> bytes; counts ranged reads so tests can check that parquet reads ranges.
#[derive(Debug, Default)]
pub(crate) struct MapStore {
    files: BTreeMap<String, Vec<u8>>,
    /// Every `read_range` call, in order.
    pub(crate) ranges: Mutex<Vec<Range<u64>>>,
}

impl MapStore {
    pub(crate) fn with(files: &[(&str, &[u8])]) -> Self {
        let files = files
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_vec()))
            .collect();
        Self {
            files,
            ranges: Mutex::default(),
        }
    }

    fn get(&self, url: &str) -> Result<&Vec<u8>, DataError> {
        // No store error variant exists in this branch yet; InvalidConfig stands in for "not found".
        self.files.get(url).ok_or_else(|| DataError::InvalidConfig {
            field: "url",
            value: url.to_owned(),
            reason: "no such file in the test store",
        })
    }
}

impl ShardStore for MapStore {
    fn open(&self, url: &str) -> Result<Box<dyn Read + Send>, DataError> {
        Ok(Box::new(Cursor::new(self.get(url)?.clone())))
    }

    fn size(&self, url: &str) -> Result<u64, DataError> {
        Ok(self.get(url)?.len() as u64)
    }

    fn read_range(&self, url: &str, range: Range<u64>) -> Result<Vec<u8>, DataError> {
        let bytes = self.get(url)?;
        self.ranges.lock().expect("poisoned").push(range.clone());
        let end = (range.end as usize).min(bytes.len());
        let start = (range.start as usize).min(end);
        Ok(bytes[start..end].to_vec())
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
