//! Where shard bytes come from: local files, `http(s)://`, `s3://`, `pipe:<command>`, or memory.
//!
//! A [`ShardStore`] opens a shard URL as a stream (tar, CSV: read front to back, never whole
//! into memory) or reads byte ranges of it (parquet: footer first, then row groups).
//!
//! [`Stores`] routes each URL to the store for its scheme; [`MemoryStore`] is the in-memory twin
//! that tests of later stages use.

mod local;
mod memory;
mod object;
mod pipe;
mod stores;

use std::fmt::Debug;
use std::io::Read;
use std::ops::Range;

use crate::DataError;

pub use local::LocalStore;
pub use memory::MemoryStore;
pub use object::{ObjectStores, S3Config};
pub use pipe::PipeStore;
pub use stores::Stores;

/// A source of shard bytes, addressed by URL as it appears in a shard spec.
pub trait ShardStore: Send + Sync + Debug {
    /// Opens `url` for sequential reading.
    fn open(&self, url: &str) -> Result<Box<dyn Read + Send>, DataError>;

    /// The size of `url` in bytes (needed by range readers).
    fn size(&self, url: &str) -> Result<u64, DataError>;

    /// Bytes `range` of `url`.
    fn read_range(&self, url: &str, range: Range<u64>) -> Result<Vec<u8>, DataError>;
}

/// Checks that `range` lies within a shard of `size` bytes.
fn check_range(url: &str, range: &Range<u64>, size: u64) -> Result<(), DataError> {
    if range.start > range.end || range.end > size {
        let (start, end) = (range.start, range.end);
        return Err(DataError::InvalidRange {
            url: url.to_owned(),
            start,
            end,
            size,
        });
    }
    Ok(())
}
