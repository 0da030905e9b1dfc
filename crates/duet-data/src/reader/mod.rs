//! Shard formats: each turns one shard's bytes into [`RawSample`]s, in shard order.
//!
//! One module per format, each a [`ShardReader`]:
//! - [`tar`]: webdataset tars as img2dataset writes them ([`TarReader`]);
//! - [`parquet`]: image bytes + caption columns, read by row group through ranged reads
//!   ([`ParquetReader`]);
//! - [`csv`]: OpenCLIP's `--dataset-type csv` tables of image paths and captions ([`CsvReader`]);
//! - [`folder`]: a directory of images with sidecar `.txt` captions ([`FolderReader`]).
//!
//! [`ShardFormat`] names a format in a config and picks one from a URL.
//!
//! Field names: tar and folder samples are keyed by extension (`jpg`, `txt`, `json`), as
//! webdataset does; table formats (parquet, CSV) put the image bytes in [`IMAGE_FIELD`] and the
//! caption in [`CAPTION_FIELD`], whatever their column names.

mod auto;
pub mod csv;
pub mod folder;
pub mod parquet;
pub mod tar;
#[cfg(test)]
pub(crate) mod testing;

use serde::{Deserialize, Serialize};

use crate::source::ShardStore;
use crate::{DataError, RawSample, SkipReason};

pub use self::auto::AutoReader;
pub use self::csv::{CsvColumns, CsvReader};
pub use self::folder::FolderReader;
pub use self::parquet::{ParquetColumns, ParquetReader};
pub use self::tar::TarReader;

/// The field that holds image bytes in samples of table formats (parquet, CSV).
pub const IMAGE_FIELD: &str = "image";
/// The field that holds the caption in samples of table formats (parquet, CSV) and folders.
pub const CAPTION_FIELD: &str = "txt";

/// One item a reader yields: a sample, or a problem it recovered from.
#[derive(Debug)]
pub enum ReadEvent {
    /// A sample, fields still raw.
    Sample(RawSample),
    /// A sample dropped while reading (e.g. a duplicate key); the shard goes on.
    Skipped {
        /// Why.
        reason: SkipReason,
        /// The sample key, if known.
        key: Option<String>,
        /// Detail for the rate-limited log.
        detail: String,
    },
    /// The shard cannot be read further (unreachable, truncated, corrupt); this is the last event.
    ShardFailed {
        /// Why.
        reason: SkipReason,
        /// Detail for the log: the URL and the underlying error.
        detail: String,
    },
}

/// A shard format.
pub trait ShardReader: Send + Sync + std::fmt::Debug {
    /// Streams the samples of `url`, starting at sample position `skip` (positions count every
    /// sample the shard holds, good or bad, so a cursor can point into the shard). Never fails:
    /// problems are events.
    fn read<'a>(
        &'a self,
        store: &'a dyn ShardStore,
        url: &'a str,
        skip: u64,
    ) -> Box<dyn Iterator<Item = ReadEvent> + Send + 'a>;
}

/// A shard format and its settings, as a config names it (`{"format": "tar"}`,
/// `{"format": "csv", "image": "filepath", "caption": "title", "separator": "\t"}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "format", rename_all = "snake_case")]
pub enum ShardFormat {
    /// A webdataset tar.
    Tar,
    /// A parquet file with image bytes and captions.
    Parquet(ParquetColumns),
    /// A CSV/TSV of image paths and captions.
    Csv(CsvColumns),
    /// A directory of images with sidecar captions.
    Folder,
}

impl ShardFormat {
    /// The reader for this format; fails only on invalid settings (a non-ASCII CSV separator).
    pub fn reader(&self) -> Result<Box<dyn ShardReader>, DataError> {
        Ok(match self {
            Self::Tar => Box::new(TarReader),
            Self::Parquet(columns) => Box::new(ParquetReader::new(columns.clone())),
            Self::Csv(columns) => Box::new(CsvReader::new(columns.clone())?),
            Self::Folder => Box::new(FolderReader),
        })
    }

    /// Guesses the format of `url` from its extension (`.tar`, `.parquet`, `.csv`, `.tsv`,
    /// case-insensitive), with default settings; a trailing `/` or a local directory is a
    /// folder. `.tsv` gets a tab separator, `.csv` a comma (OpenCLIP's `--csv-separator`
    /// default is a tab whatever the name; set it explicitly when a `.csv` holds tabs).
    pub fn detect(url: &str) -> Option<ShardFormat> {
        if url.ends_with('/') || std::path::Path::new(url).is_dir() {
            return Some(Self::Folder);
        }
        let name = url.rsplit('/').next().unwrap_or(url).to_ascii_lowercase();
        let ext = name.rsplit_once('.').map(|(_, ext)| ext)?;
        match ext {
            "tar" => Some(Self::Tar),
            "parquet" => Some(Self::Parquet(ParquetColumns::default())),
            "tsv" => Some(Self::Csv(CsvColumns::default())),
            "csv" => Some(Self::Csv(CsvColumns {
                separator: ',',
                ..CsvColumns::default()
            })),
            _ => None,
        }
    }
}

/// Joins `path` onto the directory of `base` (both URLs or local paths); absolute paths and URLs
/// with a scheme are returned as they are.
pub(crate) fn resolve_relative(base: &str, path: &str) -> String {
    if path.starts_with('/') || path.contains("://") || path.starts_with("pipe:") {
        return path.to_owned();
    }
    match base.rfind('/') {
        Some(i) => format!("{}/{path}", &base[..i]),
        None => path.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detect_by_extension() {
        assert_eq!(
            ShardFormat::detect("s3://b/train/00042.tar"),
            Some(ShardFormat::Tar)
        );
        assert_eq!(ShardFormat::detect("x/DATA.TAR"), Some(ShardFormat::Tar));
        assert_eq!(
            ShardFormat::detect("https://h/d/train-00000-of-00002.parquet"),
            Some(ShardFormat::Parquet(ParquetColumns::default()))
        );
        let Some(ShardFormat::Csv(tsv)) = ShardFormat::detect("cc3m_train.tsv") else {
            panic!("tsv not detected as csv");
        };
        assert_eq!(tsv.separator, '\t');
        let Some(ShardFormat::Csv(csv)) = ShardFormat::detect("a/b.csv") else {
            panic!("csv not detected");
        };
        assert_eq!(csv.separator, ',');
        assert_eq!(ShardFormat::detect("images/"), Some(ShardFormat::Folder));
        assert_eq!(ShardFormat::detect("src"), Some(ShardFormat::Folder)); // the crate's own src/
        assert_eq!(ShardFormat::detect("a/b.tar.gz"), None);
        assert_eq!(ShardFormat::detect("noext"), None);
    }

    #[test]
    fn format_serde_is_tagged() {
        let tar: ShardFormat = serde_json::from_str(r#"{"format":"tar"}"#).expect("tar");
        assert_eq!(tar, ShardFormat::Tar);
        let csv: ShardFormat =
            serde_json::from_str(r#"{"format":"csv","image":"path","caption":"text"}"#)
                .expect("csv");
        assert_eq!(
            csv,
            ShardFormat::Csv(CsvColumns {
                image: "path".into(),
                caption: "text".into(),
                separator: '\t'
            })
        );
    }

    #[test]
    fn relative_paths_resolve_against_the_shard_directory() {
        assert_eq!(
            resolve_relative("data/train.csv", "img/a.jpg"),
            "data/img/a.jpg"
        );
        assert_eq!(resolve_relative("train.csv", "a.jpg"), "a.jpg");
        assert_eq!(
            resolve_relative("s3://b/x/t.tsv", "a.jpg"),
            "s3://b/x/a.jpg"
        );
        assert_eq!(resolve_relative("data/t.csv", "/abs/a.jpg"), "/abs/a.jpg");
        assert_eq!(
            resolve_relative("data/t.csv", "http://h/a.jpg"),
            "http://h/a.jpg"
        );
    }
}
