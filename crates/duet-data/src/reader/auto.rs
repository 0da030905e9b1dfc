//! A reader that picks each shard's format from its URL, for specs that mix formats.

use super::{
    CsvColumns, CsvReader, FolderReader, ParquetReader, ReadEvent, ShardFormat, ShardReader,
    TarReader,
};
use crate::DataError;
use crate::source::ShardStore;

/// Reads every shard with the format [`ShardFormat::detect`] gives its URL, each with default
/// settings (tar; parquet columns `jpg`/`txt`; `.tsv` tab-, `.csv` comma-separated; folders).
#[derive(Debug)]
pub struct AutoReader {
    tar: TarReader,
    parquet: ParquetReader,
    tsv: CsvReader,
    csv: CsvReader,
    folder: FolderReader,
}

impl AutoReader {
    /// A reader for `urls`; fails naming the first URL whose format cannot be told from its
    /// name, before anything is read.
    pub fn for_urls<'u>(urls: impl IntoIterator<Item = &'u str>) -> Result<Self, DataError> {
        if let Some(url) = urls
            .into_iter()
            .find(|url| ShardFormat::detect(url).is_none())
        {
            return Err(DataError::UnknownShardFormat {
                url: url.to_owned(),
            });
        }
        Ok(Self {
            tar: TarReader,
            parquet: ParquetReader::new(Default::default()),
            tsv: CsvReader::new(CsvColumns::default())?,
            csv: CsvReader::new(CsvColumns {
                separator: ',',
                ..CsvColumns::default()
            })?,
            folder: FolderReader,
        })
    }

    fn reader_for(&self, url: &str) -> Option<&dyn ShardReader> {
        Some(match ShardFormat::detect(url)? {
            ShardFormat::Tar => &self.tar,
            ShardFormat::Parquet(_) => &self.parquet,
            ShardFormat::Csv(columns) if columns.separator == ',' => &self.csv,
            ShardFormat::Csv(_) => &self.tsv,
            ShardFormat::Folder => &self.folder,
        })
    }
}

impl ShardReader for AutoReader {
    fn read<'a>(
        &'a self,
        store: &'a dyn ShardStore,
        url: &'a str,
        skip: u64,
    ) -> Box<dyn Iterator<Item = ReadEvent> + Send + 'a> {
        match self.reader_for(url) {
            Some(reader) => reader.read(store, url, skip),
            None => Box::new(std::iter::once(ReadEvent::ShardFailed {
                reason: crate::SkipReason::ShardCorrupt,
                detail: format!(
                    "{url}: unknown shard format (expected .tar, .parquet, .csv, .tsv or a folder)"
                ),
            })),
        }
    }
}
