//! [`Stores`]: one [`ShardStore`] for every URL a spec can hold, routed by scheme.

use std::io::Read;
use std::ops::Range;

use super::{LocalStore, ObjectStores, PipeStore, S3Config, ShardStore};
use crate::DataError;

/// Routes each URL by its scheme: `s3://`, `http://`, `https://` to [`ObjectStores`] (clients
/// made lazily per bucket/host and cached), `pipe:` to [`PipeStore`], `file://` and plain paths
/// to [`LocalStore`]. Any other `scheme://` is an error rather than a path that does not exist.
#[derive(Debug)]
pub struct Stores {
    local: LocalStore,
    pipe: PipeStore,
    objects: ObjectStores,
}

impl Stores {
    /// Stores with S3 settings `s3`.
    pub fn new(s3: S3Config) -> Result<Self, DataError> {
        Ok(Self {
            local: LocalStore,
            pipe: PipeStore,
            objects: ObjectStores::new(s3)?,
        })
    }

    /// Stores with S3 settings from the `AWS_*` environment variables ([`S3Config::from_env`]).
    pub fn from_env() -> Result<Self, DataError> {
        Self::new(S3Config::from_env())
    }

    fn route(&self, url: &str) -> Result<&dyn ShardStore, DataError> {
        if url.starts_with("pipe:") {
            return Ok(&self.pipe);
        }
        match url.split_once("://").map(|(scheme, _)| scheme) {
            None | Some("file") => Ok(&self.local),
            Some("s3" | "http" | "https") => Ok(&self.objects),
            Some(scheme) => Err(DataError::InvalidUrl {
                url: url.to_owned(),
                reason: format!(
                    "no store for scheme `{scheme}://`; supported: s3://, http(s)://, file://, \
                     pipe:, plain paths"
                ),
            }),
        }
    }
}

impl ShardStore for Stores {
    fn open(&self, url: &str) -> Result<Box<dyn Read + Send>, DataError> {
        self.route(url)?.open(url)
    }

    fn size(&self, url: &str) -> Result<u64, DataError> {
        self.route(url)?.size(url)
    }

    fn read_range(&self, url: &str, range: Range<u64>) -> Result<Vec<u8>, DataError> {
        self.route(url)?.read_range(url, range)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_by_scheme() {
        let stores = Stores::new(S3Config::new()).expect("runtime starts");
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("a.tar");
        std::fs::write(&path, b"abc").expect("write");
        let plain = path.display().to_string();
        assert_eq!(stores.size(&plain).expect("local"), 3);
        assert_eq!(stores.size(&format!("file://{plain}")).expect("file://"), 3);
        let mut text = String::new();
        let mut reader = stores.open(&format!("pipe:cat '{plain}'")).expect("pipe");
        reader.read_to_string(&mut text).expect("read");
        assert_eq!(text, "abc");
        assert!(matches!(
            stores.size("pipe:true"),
            Err(DataError::Unsupported { .. })
        ));
        let err = stores
            .open("gs://bucket/a.tar")
            .err()
            .expect("unsupported scheme");
        assert!(err.to_string().contains("`gs://`"), "{err}");
    }
}
