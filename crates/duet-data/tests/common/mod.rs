//! A local-file `ShardStore` for the reader tests (the real stores live in `duet_data::source`).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::ops::Range;
use std::path::PathBuf;

use duet_data::{DataError, ShardStore};

/// Reads plain paths with `std::fs`.
#[derive(Debug, Default)]
pub struct FsStore;

/// There is no store error variant in this branch; `InvalidConfig` carries the I/O error text.
fn error(url: &str, e: std::io::Error) -> DataError {
    DataError::InvalidConfig {
        field: "url",
        value: format!("{url}: {e}"),
        reason: "cannot read",
    }
}

impl ShardStore for FsStore {
    fn open(&self, url: &str) -> Result<Box<dyn Read + Send>, DataError> {
        Ok(Box::new(File::open(url).map_err(|e| error(url, e))?))
    }

    fn size(&self, url: &str) -> Result<u64, DataError> {
        Ok(std::fs::metadata(url).map_err(|e| error(url, e))?.len())
    }

    fn read_range(&self, url: &str, range: Range<u64>) -> Result<Vec<u8>, DataError> {
        let mut file = File::open(url).map_err(|e| error(url, e))?;
        file.seek(SeekFrom::Start(range.start))
            .map_err(|e| error(url, e))?;
        let mut bytes = Vec::new();
        file.take(range.end - range.start)
            .read_to_end(&mut bytes)
            .map_err(|e| error(url, e))?;
        Ok(bytes)
    }
}

/// A path under the workspace root.
pub fn workspace_path(rel: &str) -> String {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel);
    root.to_string_lossy().into_owned()
}
