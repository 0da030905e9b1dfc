//! The bad-input corpus (`tests/fixtures/bad/`, made by `scripts/make_bad_corpus.py`) and its
//! `MANIFEST.json`, shared by the reader tests (`bad_input.rs`) and the pipeline tests
//! (`loader.rs`).

use std::collections::BTreeMap;

use duet_data::reader::{CsvColumns, ParquetColumns, ShardFormat};
use serde::Deserialize;

use crate::common::workspace_path;

/// A problem only field selection or decoding can see.
#[derive(Debug, Deserialize)]
#[allow(dead_code, reason = "only the pipeline tests count these")]
pub struct Later {
    /// The skip reason the pipeline must count.
    pub reason: String,
}

/// One shard of the corpus and what reading it must give.
#[derive(Debug, Deserialize)]
#[allow(
    dead_code,
    reason = "each test binary reads its own part of the manifest"
)]
pub struct Entry {
    /// `tar`, `parquet`, `csv` or `folder`.
    pub format: String,
    /// Every sample key the reader yields, in order.
    pub samples: Vec<String>,
    /// The samples that survive the whole pipeline, in order.
    pub good: Vec<String>,
    /// Key -> the problem selection or decoding finds.
    pub later: BTreeMap<String, Later>,
    /// Key -> the reason the reader skips it.
    pub skipped: BTreeMap<String, String>,
    /// The reason the shard fails, if it does.
    pub shard_failed: Option<String>,
}

/// The corpus directory.
pub fn dir() -> String {
    workspace_path("crates/duet-data/tests/fixtures/bad")
}

/// Shard name -> expectations.
pub fn manifest() -> BTreeMap<String, Entry> {
    let text = std::fs::read_to_string(format!("{}/MANIFEST.json", dir())).expect("manifest");
    serde_json::from_str(&text).expect("manifest json")
}

/// The format settings a manifest entry implies.
pub fn format_of(name: &str, format: &str) -> ShardFormat {
    match (name, format) {
        ("binary.parquet", _) => ShardFormat::Parquet(ParquetColumns {
            image: "jpg".into(),
            caption: "text".into(),
        }),
        (_, "tar") => ShardFormat::Tar,
        (_, "parquet") => ShardFormat::Parquet(ParquetColumns::default()),
        (_, "csv") => ShardFormat::Csv(CsvColumns::default()),
        (_, "folder") => ShardFormat::Folder,
        other => panic!("unknown format {other:?}"),
    }
}
