//! Sample counts from the files that shard writers leave beside the shards.
//!
//! Precedence, per shard `DIR/NAME.EXT`:
//! 1. `DIR/sizes.json`, OpenCLIP's `{"NAME.EXT": count}` (open_clip `data.py` `get_dataset_size`
//!    reads it first; values may be integers or integer strings, it calls `int()` on them);
//! 2. `DIR/NAME_stats.json`, img2dataset's per-shard stats, field `successes` (the samples that
//!    made it into the shard; `count` also counts failed downloads);
//! 3. none: `Ok(None)`.
//!
//! A missing file falls through to the next; a file that exists but is unreadable or malformed is
//! an error (a wrong count silently skews epoch sizes). `pipe:` URLs have no neighbours.

use std::collections::HashMap;
use std::io::Read;

use serde_json::Value;

use crate::DataError;
use crate::source::ShardStore;

/// Counts files are small; anything larger is not one.
const MAX_COUNTS_FILE: u64 = 64 << 20;

/// `sizes.json` contents per directory, so hinting 10,000 shards reads each file once.
#[derive(Debug, Default)]
pub struct SampleCounts {
    sizes: HashMap<String, Option<HashMap<String, u64>>>,
}

impl SampleCounts {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// The sample count of `shard_url` by the precedence in the module docs.
    pub fn hint(
        &mut self,
        store: &dyn ShardStore,
        shard_url: &str,
    ) -> Result<Option<u64>, DataError> {
        if shard_url.starts_with("pipe:") {
            return Ok(None);
        }
        let (dir, name) = match shard_url.rfind('/') {
            Some(i) => shard_url.split_at(i + 1),
            None => ("", shard_url),
        };
        if !self.sizes.contains_key(dir) {
            let sizes = read_sizes(store, &format!("{dir}sizes.json"))?;
            self.sizes.insert(dir.to_owned(), sizes);
        }
        if let Some(Some(sizes)) = self.sizes.get(dir)
            && let Some(n) = sizes.get(name)
        {
            return Ok(Some(*n));
        }
        let stem = name.split_once('.').map_or(name, |(stem, _)| stem);
        let stats_url = format!("{dir}{stem}_stats.json");
        let Some(stats) = read_json(store, &stats_url)? else {
            return Ok(None);
        };
        match stats.get("successes").and_then(Value::as_u64) {
            Some(n) => Ok(Some(n)),
            None => Err(DataError::SampleCounts {
                url: stats_url,
                reason: "no non-negative integer field `successes`".to_owned(),
            }),
        }
    }
}

/// The sample count of one shard; see the module docs for where it comes from. Use
/// [`SampleCounts`] for many shards of one directory.
pub fn sample_count_hint(
    store: &dyn ShardStore,
    shard_url: &str,
) -> Result<Option<u64>, DataError> {
    SampleCounts::new().hint(store, shard_url)
}

fn read_sizes(
    store: &dyn ShardStore,
    url: &str,
) -> Result<Option<HashMap<String, u64>>, DataError> {
    let Some(json) = read_json(store, url)? else {
        return Ok(None);
    };
    let bad = |reason: String| DataError::SampleCounts {
        url: url.to_owned(),
        reason,
    };
    let Value::Object(map) = json else {
        return Err(bad("expected an object {\"shard name\": count}".to_owned()));
    };
    let mut sizes = HashMap::with_capacity(map.len());
    for (name, value) in map {
        let n = match &value {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        };
        let n = n.ok_or_else(|| bad(format!("count of {name:?} is {value}, not an integer")))?;
        sizes.insert(name, n);
    }
    Ok(Some(sizes))
}

/// The parsed file, or `None` if the store says it does not exist.
fn read_json(store: &dyn ShardStore, url: &str) -> Result<Option<Value>, DataError> {
    let reader = match store.open(url) {
        Ok(reader) => reader,
        Err(DataError::ShardNotFound { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut bytes = Vec::new();
    reader
        .take(MAX_COUNTS_FILE)
        .read_to_end(&mut bytes)
        .map_err(|source| DataError::ShardIo {
            url: url.to_owned(),
            op: "read",
            source,
        })?;
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| DataError::SampleCounts {
            url: url.to_owned(),
            reason: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::MemoryStore;

    #[test]
    fn sizes_json_wins_over_stats() {
        let store = MemoryStore::new();
        store.insert(
            "s3://b/d/sizes.json",
            r#"{"00000.tar": 10, "00001.tar": "7"}"#,
        );
        store.insert(
            "s3://b/d/00000_stats.json",
            r#"{"successes": 99, "count": 120}"#,
        );
        store.insert(
            "s3://b/d/00002_stats.json",
            r#"{"successes": 5, "count": 9}"#,
        );
        let mut counts = SampleCounts::new();
        assert_eq!(
            counts.hint(&store, "s3://b/d/00000.tar").expect("read"),
            Some(10)
        );
        // String counts are accepted as OpenCLIP's int() does.
        assert_eq!(
            counts.hint(&store, "s3://b/d/00001.tar").expect("read"),
            Some(7)
        );
        // Not in sizes.json: falls back to img2dataset's successes.
        assert_eq!(
            counts.hint(&store, "s3://b/d/00002.tar").expect("read"),
            Some(5)
        );
        assert_eq!(
            counts.hint(&store, "s3://b/d/00003.tar").expect("read"),
            None
        );
        assert_eq!(
            sample_count_hint(&store, "pipe:cat s3://b/d/00000.tar").expect("pipe"),
            None
        );
    }

    #[test]
    fn stats_without_sizes_and_relative_names() {
        let store = MemoryStore::new();
        store.insert("00007_stats.json", r#"{"successes": 3}"#);
        assert_eq!(
            sample_count_hint(&store, "00007.tar").expect("read"),
            Some(3)
        );
    }

    #[test]
    fn malformed_files_are_errors() {
        let store = MemoryStore::new();
        store.insert("d/sizes.json", r#"{"a.tar": -1}"#);
        let err = sample_count_hint(&store, "d/a.tar").expect_err("negative count");
        assert!(err.to_string().contains("d/sizes.json"), "{err}");
        store.insert("e/a_stats.json", "not json");
        assert!(matches!(
            sample_count_hint(&store, "e/a.tar"),
            Err(DataError::SampleCounts { .. })
        ));
    }
}
