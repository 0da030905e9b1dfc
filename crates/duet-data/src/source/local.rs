//! Local files, as plain paths or `file://` URLs.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::ops::Range;
use std::path::Path;

use super::{ShardStore, check_range};
use crate::DataError;

/// Read buffer for sequential shard reads: tar readers issue many small reads.
const BUFFER: usize = 256 << 10;

/// Shards on the local file system. `file://` is stripped; everything else is a path.
#[derive(Debug, Default, Clone, Copy)]
pub struct LocalStore;

impl LocalStore {
    /// The path a URL names.
    pub fn path(url: &str) -> &Path {
        Path::new(url.strip_prefix("file://").unwrap_or(url))
    }

    fn file(url: &str) -> Result<File, DataError> {
        File::open(Self::path(url)).map_err(|e| io_error(url, "open", e))
    }
}

/// Not-found becomes [`DataError::ShardNotFound`], so callers can tell it from other I/O errors.
fn io_error(url: &str, op: &'static str, source: io::Error) -> DataError {
    match source.kind() {
        io::ErrorKind::NotFound => DataError::ShardNotFound {
            url: url.to_owned(),
        },
        _ => DataError::ShardIo {
            url: url.to_owned(),
            op,
            source,
        },
    }
}

impl ShardStore for LocalStore {
    fn open(&self, url: &str) -> Result<Box<dyn Read + Send>, DataError> {
        Ok(Box::new(BufReader::with_capacity(BUFFER, Self::file(url)?)))
    }

    fn size(&self, url: &str) -> Result<u64, DataError> {
        let meta = std::fs::metadata(Self::path(url)).map_err(|e| io_error(url, "stat", e))?;
        Ok(meta.len())
    }

    fn read_range(&self, url: &str, range: Range<u64>) -> Result<Vec<u8>, DataError> {
        let mut file = Self::file(url)?;
        let size = file.metadata().map_err(|e| io_error(url, "stat", e))?.len();
        check_range(url, &range, size)?;
        let len = usize::try_from(range.end - range.start).map_err(|_| {
            let source = io::Error::new(io::ErrorKind::OutOfMemory, "range exceeds address space");
            DataError::ShardIo {
                url: url.to_owned(),
                op: "read range",
                source,
            }
        })?;
        let mut bytes = vec![0; len];
        file.seek(SeekFrom::Start(range.start))
            .and_then(|_| file.read_exact(&mut bytes))
            .map_err(|e| io_error(url, "read range", e))?;
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_file_urls() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("a.tar");
        std::fs::write(&path, b"hello shards").expect("write");
        let plain = path.display().to_string();
        let url = format!("file://{plain}");
        for name in [&plain, &url] {
            let mut text = String::new();
            LocalStore
                .open(name)
                .expect("open")
                .read_to_string(&mut text)
                .expect("read");
            assert_eq!(text, "hello shards");
            assert_eq!(LocalStore.size(name).expect("size"), 12);
            assert_eq!(
                LocalStore.read_range(name, 6..12).expect("range"),
                b"shards"
            );
        }
        let err = LocalStore
            .read_range(&plain, 6..13)
            .expect_err("past the end");
        assert!(
            err.to_string()
                .contains("6..13 is invalid for a shard of 12 bytes"),
            "{err}"
        );
    }

    #[test]
    fn missing_file_names_the_url() {
        let err = LocalStore
            .open("/nonexistent/duet/00000.tar")
            .err()
            .expect("missing");
        assert!(matches!(err, DataError::ShardNotFound { .. }));
        assert_eq!(
            err.to_string(),
            "shard /nonexistent/duet/00000.tar: not found"
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let err = LocalStore
            .read_range(&dir.path().display().to_string(), 0..1)
            .expect_err("dir");
        assert!(matches!(
            err,
            DataError::ShardIo { .. } | DataError::InvalidRange { .. }
        ));
    }
}
