//! `http(s)://` and `s3://` shards through the `object_store` crate.
//!
//! `object_store` is async; [`ObjectStores`] owns a one-worker tokio runtime and bridges to the
//! blocking [`Read`] the readers want: `open` sends one streaming GET and each `read` pulls the
//! next body chunk on demand, so a shard is never held whole in memory. `read_range` is a ranged
//! GET, `size` a HEAD. Clients are created lazily, one per S3 bucket or HTTP host, and cached.
//!
//! Timeouts: connect 10 s, and a stalled body read fails after 120 s. There is deliberately no
//! whole-request timeout: a shard stream lives as long as its reader, which may pause while the
//! pipeline's buffers are full. Failed requests are retried with `object_store`'s defaults.
//! The methods block, so call them from plain threads, not from inside another tokio runtime.

use std::collections::HashMap;
use std::fmt;
use std::io::{self, Read};
use std::ops::Range;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::{Buf, Bytes};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::http::HttpBuilder;
use object_store::path::Path;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt};
use tokio::runtime::Runtime;

use super::ShardStore;
use crate::DataError;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const READ_TIMEOUT: Duration = Duration::from_secs(120);

/// S3 settings: bucket-independent options applied to every bucket's client.
///
/// Option names are `object_store`'s `AmazonS3ConfigKey` names: `aws_access_key_id`,
/// `aws_secret_access_key`, `aws_session_token`, `aws_region`, `aws_endpoint` (also
/// `aws_endpoint_url`), `aws_allow_http`, … An `http://` endpoint on loopback (`127.0.0.1`,
/// `localhost`, `[::1]`) is allowed without `aws_allow_http`; elsewhere plain HTTP must be asked
/// for. Without keys, `object_store` falls back to web identity / instance credentials.
#[derive(Clone, Default)]
pub struct S3Config {
    options: Vec<(AmazonS3ConfigKey, String)>,
}

impl S3Config {
    /// No options: region, endpoint and credentials from `object_store`'s defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every `AWS_*` environment variable that names an option (`AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`, `AWS_ENDPOINT_URL` or
    /// `AWS_ENDPOINT`, `AWS_ALLOW_HTTP`, …), as `AmazonS3Builder::from_env` reads them.
    pub fn from_env() -> Self {
        let options = std::env::vars()
            .filter(|(key, _)| key.starts_with("AWS_"))
            .filter_map(|(key, value)| Some((key.to_ascii_lowercase().parse().ok()?, value)))
            .collect();
        Self { options }
    }

    /// Sets option `key` (see the type docs); an unknown key is an error.
    pub fn with(mut self, key: &str, value: impl Into<String>) -> Result<Self, DataError> {
        let parsed = key
            .parse()
            .map_err(|e: object_store::Error| DataError::StoreConfig {
                target: "s3://".to_owned(),
                reason: format!("unknown S3 option {key:?}: {e}"),
            })?;
        self.options.push((parsed, value.into()));
        Ok(self)
    }

    fn endpoint(&self) -> Option<&str> {
        let endpoint = self
            .options
            .iter()
            .rev()
            .find(|(k, _)| *k == AmazonS3ConfigKey::Endpoint);
        endpoint.map(|(_, v)| v.as_str())
    }

    fn build(&self, bucket: &str) -> Result<Arc<dyn ObjectStore>, object_store::Error> {
        let loopback = self.endpoint().is_some_and(|e| {
            [
                "http://127.",
                "http://localhost:",
                "http://localhost/",
                "http://[::1]",
            ]
            .iter()
            .any(|prefix| e.starts_with(prefix))
        });
        let mut builder = AmazonS3Builder::new().with_client_options(client_options(loopback));
        for (key, value) in &self.options {
            builder = builder.with_config(*key, value);
        }
        Ok(Arc::new(builder.with_bucket_name(bucket).build()?))
    }
}

/// Shows option names only: values may be secrets.
impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys: Vec<&str> = self.options.iter().map(|(k, _)| k.as_ref()).collect();
        f.debug_struct("S3Config")
            .field("options", &keys)
            .field("endpoint", &self.endpoint())
            .finish()
    }
}

fn client_options(allow_http: bool) -> ClientOptions {
    ClientOptions::new()
        .with_allow_http(allow_http)
        .with_timeout_disabled()
        .with_connect_timeout(CONNECT_TIMEOUT)
        .with_read_timeout(READ_TIMEOUT)
}

/// The `http(s)://` and `s3://` store: one runtime, one cached client per bucket or host.
#[derive(Debug)]
pub struct ObjectStores {
    runtime: Arc<Runtime>,
    s3: S3Config,
    clients: Mutex<HashMap<String, Arc<dyn ObjectStore>>>,
}

impl ObjectStores {
    /// A store with S3 settings `s3`; starts its one I/O thread.
    pub fn new(s3: S3Config) -> Result<Self, DataError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("duet-object-io")
            .enable_all()
            .build()
            .map_err(|e| DataError::StoreConfig {
                target: "the object store runtime".to_owned(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            runtime: Arc::new(runtime),
            s3,
            clients: Mutex::default(),
        })
    }

    /// A store with S3 settings from the environment ([`S3Config::from_env`]).
    pub fn from_env() -> Result<Self, DataError> {
        Self::new(S3Config::from_env())
    }

    /// The client for `url`'s bucket or host, and the object path within it.
    fn resolve(&self, url: &str) -> Result<(Arc<dyn ObjectStore>, Path), DataError> {
        let (target, key) = split_url(url)?;
        let invalid = |reason: String| DataError::InvalidUrl {
            url: url.to_owned(),
            reason,
        };
        let path = Path::from_url_path(key).map_err(|e| invalid(e.to_string()))?;
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(client) = clients.get(target) {
            return Ok((Arc::clone(client), path));
        }
        // reqwest wants a runtime context when its client is built.
        let _context = self.runtime.enter();
        let client = match target.strip_prefix("s3://") {
            Some(bucket) => self.s3.build(bucket),
            None => HttpBuilder::new()
                .with_url(target)
                .with_client_options(client_options(true))
                .build()
                .map(|s| Arc::new(s) as Arc<dyn ObjectStore>),
        };
        let client = client.map_err(|e| DataError::StoreConfig {
            target: target.to_owned(),
            reason: e.to_string(),
        })?;
        clients.insert(target.to_owned(), Arc::clone(&client));
        Ok((client, path))
    }
}

/// Splits `s3://bucket/key` or `http(s)://host[:port]/path` into (`scheme://authority`, key).
fn split_url(url: &str) -> Result<(&str, &str), DataError> {
    let invalid = |reason: &str| DataError::InvalidUrl {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| invalid("expected scheme://"))?;
    if !matches!(scheme, "s3" | "http" | "https") {
        return Err(invalid(
            "the object store serves s3://, http:// and https:// only",
        ));
    }
    if rest.contains(['?', '#']) {
        return Err(invalid(
            "query strings are not supported; use `pipe:curl -s URL` instead",
        ));
    }
    match rest.split_once('/') {
        Some((authority, key)) if !authority.is_empty() && !key.is_empty() => {
            Ok((&url[..scheme.len() + 3 + authority.len()], key))
        }
        _ => Err(invalid("expected a bucket or host followed by /key")),
    }
}

/// Not-found (HTTP 404, S3 `NoSuchKey`) becomes [`DataError::ShardNotFound`].
fn store_error(url: &str, op: &'static str, source: object_store::Error) -> DataError {
    match source {
        object_store::Error::NotFound { .. } => DataError::ShardNotFound {
            url: url.to_owned(),
        },
        source => DataError::ObjectStore {
            url: url.to_owned(),
            op,
            source,
        },
    }
}

impl ShardStore for ObjectStores {
    fn open(&self, url: &str) -> Result<Box<dyn Read + Send>, DataError> {
        let (client, path) = self.resolve(url)?;
        let result = self.runtime.block_on(client.get(&path));
        let stream = result
            .map_err(|e| store_error(url, "GET", e))?
            .into_stream();
        let runtime = Arc::clone(&self.runtime);
        Ok(Box::new(ObjectReader {
            runtime,
            stream,
            chunk: Bytes::new(),
            url: url.to_owned(),
        }))
    }

    fn size(&self, url: &str) -> Result<u64, DataError> {
        let (client, path) = self.resolve(url)?;
        let meta = self.runtime.block_on(client.head(&path));
        Ok(meta.map_err(|e| store_error(url, "HEAD", e))?.size)
    }

    fn read_range(&self, url: &str, range: Range<u64>) -> Result<Vec<u8>, DataError> {
        let (client, path) = self.resolve(url)?;
        if range.start > range.end {
            let (start, end) = (range.start, range.end);
            let size = self.size(url)?;
            return Err(DataError::InvalidRange {
                url: url.to_owned(),
                start,
                end,
                size,
            });
        }
        let bytes = self.runtime.block_on(client.get_range(&path, range));
        Ok(bytes
            .map_err(|e| store_error(url, "ranged GET", e))?
            .to_vec())
    }
}

/// A GET body, pulled one chunk at a time on the store's runtime.
struct ObjectReader {
    runtime: Arc<Runtime>,
    stream: BoxStream<'static, object_store::Result<Bytes>>,
    chunk: Bytes,
    url: String,
}

impl Read for ObjectReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        while self.chunk.is_empty() {
            match self.runtime.block_on(self.stream.next()) {
                None => return Ok(0),
                Some(Ok(bytes)) => self.chunk = bytes,
                Some(Err(e)) => return Err(io::Error::other(store_error(&self.url, "read", e))),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk[..n]);
        self.chunk.advance(n);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_client_and_key() {
        let split = |u| split_url(u).expect("valid");
        assert_eq!(
            split("s3://bkt/dir/00000.tar"),
            ("s3://bkt", "dir/00000.tar")
        );
        assert_eq!(
            split("http://127.0.0.1:8/a/b.tar"),
            ("http://127.0.0.1:8", "a/b.tar")
        );
        for bad in ["s3://bkt", "s3:///key", "gs://b/k", "https://h/a.tar?sig=1"] {
            assert!(
                matches!(split_url(bad), Err(DataError::InvalidUrl { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn s3_options_are_checked_and_secrets_hidden() {
        let config = S3Config::new()
            .with("aws_secret_access_key", "hunter2")
            .and_then(|c| c.with("aws_endpoint", "http://127.0.0.1:9000"))
            .expect("known keys");
        let shown = format!("{config:?}");
        assert!(
            !shown.contains("hunter2") && shown.contains("127.0.0.1:9000"),
            "{shown}"
        );
        assert!(S3Config::new().with("aws_no_such_option", "x").is_err());
    }
}
