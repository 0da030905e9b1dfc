//! Parquet shards holding image bytes and captions, HF-datasets style: an image column that is
//! either a struct `{bytes: binary, path: string}` (what `datasets.Image()` writes) or plain
//! binary, and a caption column of strings (or binary).
//!
//! The file is read through [`ShardStore::size`] and [`ShardStore::read_range`] only, never
//! whole: one ranged read for the 8-byte footer, one for the metadata, then per row group one
//! read per column chunk of the two projected columns. Memory holds one row group's projected
//! column chunks and its samples. Row groups wholly before `skip` are not fetched.
//!
//! Each row becomes a sample keyed by its row number in the file (also its position), with
//! [`IMAGE_FIELD`] and [`CAPTION_FIELD`]; a null cell
//! leaves its field out, for the pipeline's `FieldSelector` to report as a missing image or
//! caption. A bad footer or magic, a missing column, or a row group that does not decode fails
//! the shard with [`SkipReason::ShardCorrupt`], after the samples of the row groups before it.
//! Compression: snappy (pyarrow's and `datasets`' default) and none; other codecs fail the shard
//! with the `parquet` crate's "disabled feature" message.

use std::collections::VecDeque;
use std::io::Cursor;
use std::sync::Arc;

use bytes::Bytes;
use parquet::errors::ParquetError;
use parquet::file::metadata::page_index::RowGroupPageIndex;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use parquet::file::properties::ReaderProperties;
use parquet::file::reader::{ChunkReader, Length, RowGroupReader};
use parquet::file::serialized_reader::SerializedRowGroupReader;
use parquet::record::Field;
use parquet::schema::types::Type;
use serde::{Deserialize, Serialize};

use crate::reader::{CAPTION_FIELD, IMAGE_FIELD, ReadEvent, ShardReader};
use crate::source::ShardStore;
use crate::{RawSample, SampleRef, SkipReason};

/// Column names of a parquet shard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ParquetColumns {
    /// The image column: a `{bytes, path}` struct or binary.
    pub image: String,
    /// The caption column: string or binary.
    pub caption: String,
}

impl Default for ParquetColumns {
    /// `image` and `caption`.
    fn default() -> Self {
        Self {
            image: "image".into(),
            caption: "caption".into(),
        }
    }
}

/// Reads parquet shards by row group through ranged reads. `skip` counts rows.
#[derive(Debug, Clone)]
pub struct ParquetReader {
    columns: ParquetColumns,
}

impl ParquetReader {
    /// A reader for `columns`.
    pub fn new(columns: ParquetColumns) -> Self {
        Self { columns }
    }
}

impl ShardReader for ParquetReader {
    fn read<'a>(
        &'a self,
        store: &'a dyn ShardStore,
        url: &'a str,
        skip: u64,
    ) -> Box<dyn Iterator<Item = ReadEvent> + Send + 'a> {
        match RowGroups::open(store, url, &self.columns, skip) {
            Ok(groups) => Box::new(groups),
            Err(failed) => Box::new(std::iter::once(failed)),
        }
    }
}

/// The iterator: refills `pending` from the next row group when it runs dry.
struct RowGroups<'a> {
    store: &'a dyn ShardStore,
    shard: Arc<str>,
    len: u64,
    metadata: ParquetMetaData,
    projection: Type,
    /// Leaf column indices of the projected columns.
    leaves: Vec<usize>,
    next_group: usize,
    /// File row number of the next group's first row.
    next_row: u64,
    skip: u64,
    pending: VecDeque<ReadEvent>,
    done: bool,
}

impl<'a> RowGroups<'a> {
    /// Reads the footer and checks the columns.
    fn open(
        store: &'a dyn ShardStore,
        url: &str,
        columns: &ParquetColumns,
        skip: u64,
    ) -> Result<Self, ReadEvent> {
        let failed = |reason, detail: String| ReadEvent::ShardFailed {
            reason,
            detail: format!("{url}: {detail}"),
        };
        let len = store
            .size(url)
            .map_err(|e| failed(SkipReason::ShardUnreachable, e.to_string()))?;
        let footer = StoreRanges { store, url, len };
        let metadata = ParquetMetaDataReader::new()
            .parse_and_finish(&footer)
            .map_err(|e| failed(reason_of(&e), format!("footer: {e}")))?;
        let schema = metadata.file_metadata().schema();
        let mut fields = Vec::new();
        for name in [&columns.image, &columns.caption] {
            let Some(field) = schema
                .get_fields()
                .iter()
                .find(|f| f.name() == name.as_str())
            else {
                let names: Vec<_> = schema.get_fields().iter().map(|f| f.name()).collect();
                return Err(failed(
                    SkipReason::ShardCorrupt,
                    format!("no column {name:?} among {names:?}"),
                ));
            };
            fields.push(Arc::clone(field));
        }
        let projection = Type::group_type_builder(schema.name())
            .with_fields(fields)
            .build()
            .map_err(|e| failed(SkipReason::ShardCorrupt, format!("projection: {e}")))?;
        let leaves = (0..metadata.file_metadata().schema_descr().num_columns())
            .filter(|&i| {
                let root = metadata
                    .file_metadata()
                    .schema_descr()
                    .column(i)
                    .path()
                    .parts()[0]
                    .clone();
                root == columns.image || root == columns.caption
            })
            .collect();
        Ok(Self {
            store,
            shard: url.into(),
            len,
            metadata,
            projection,
            leaves,
            next_group: 0,
            next_row: 0,
            skip,
            pending: VecDeque::new(),
            done: false,
        })
    }

    /// Reads row group `self.next_group` into `pending`, or fails the shard.
    fn fill(&mut self) {
        let index = self.next_group;
        let group = self.metadata.row_group(index);
        let first_row = self.next_row;
        let rows = u64::try_from(group.num_rows()).unwrap_or(0);
        self.next_group += 1;
        self.next_row += rows;
        if first_row + rows <= self.skip {
            return; // wholly before the resume point: not fetched
        }
        if let Err(e) = self.decode(index, first_row) {
            self.pending.push_back(ReadEvent::ShardFailed {
                reason: reason_of(&e),
                detail: format!("{}: row group {index}: {e}", self.shard),
            });
            self.done = true;
        }
    }

    fn decode(&mut self, index: usize, first_row: u64) -> Result<(), ParquetError> {
        let group = self.metadata.row_group(index);
        let mut chunks = Vec::with_capacity(self.leaves.len());
        for &leaf in &self.leaves {
            let (start, length) = group.column(leaf).byte_range();
            let bytes = self
                .store
                .read_range(&self.shard, start..start + length)
                .map_err(|e| ParquetError::External(Box::new(e)))?;
            chunks.push((start, Bytes::from(bytes)));
        }
        let chunks = Arc::new(RowGroupBytes {
            len: self.len,
            chunks,
        });
        let props = Arc::new(ReaderProperties::builder().build());
        let reader = SerializedRowGroupReader::new(
            chunks,
            group,
            RowGroupPageIndex::new(index, None),
            props,
        )?;
        for (row, position) in reader
            .get_row_iter(Some(self.projection.clone()))?
            .zip(first_row..)
        {
            let row = row?;
            if position < self.skip {
                continue;
            }
            let mut fields = std::collections::BTreeMap::new();
            for (name, field) in row.get_column_iter() {
                let target = if *name == self.projection.get_fields()[0].name() {
                    IMAGE_FIELD
                } else {
                    CAPTION_FIELD
                };
                if let Some(bytes) = cell_bytes(field) {
                    fields.insert(target.to_owned(), bytes);
                }
            }
            self.pending.push_back(ReadEvent::Sample(RawSample {
                at: SampleRef {
                    shard: Arc::clone(&self.shard),
                    index: position,
                },
                key: position.to_string(),
                fields,
            }));
        }
        Ok(())
    }
}

impl Iterator for RowGroups<'_> {
    type Item = ReadEvent;

    fn next(&mut self) -> Option<ReadEvent> {
        while self.pending.is_empty()
            && !self.done
            && self.next_group < self.metadata.num_row_groups()
        {
            self.fill();
        }
        self.pending.pop_front()
    }
}

/// The bytes of a cell: binary or string as is, an image struct's `bytes` member; `None` for null.
fn cell_bytes(field: &Field) -> Option<Vec<u8>> {
    match field {
        Field::Bytes(b) => Some(b.data().to_vec()),
        Field::Str(s) => Some(s.as_bytes().to_vec()),
        Field::Group(row) => row
            .get_column_iter()
            .find(|(name, _)| name.as_str() == "bytes")
            .and_then(|(_, f)| cell_bytes(f)),
        _ => None,
    }
}

/// A store failure (wrapped as `External`) is a broken stream; anything else a corrupt file.
fn reason_of(e: &ParquetError) -> SkipReason {
    match e {
        ParquetError::External(_) => SkipReason::ShardTruncated,
        _ => SkipReason::ShardCorrupt,
    }
}

/// The file as ranged reads of a store, for the footer and metadata.
struct StoreRanges<'a> {
    store: &'a dyn ShardStore,
    url: &'a str,
    len: u64,
}

impl Length for StoreRanges<'_> {
    fn len(&self) -> u64 {
        self.len
    }
}

impl ChunkReader for StoreRanges<'_> {
    type T = Cursor<Vec<u8>>;

    /// Reads `start..` to the end of the file: the metadata reader asks this only for the
    /// 8-byte footer.
    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        Ok(Cursor::new(
            self.get_bytes(start, (self.len.saturating_sub(start)) as usize)?
                .to_vec(),
        ))
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        let range = start..start + length as u64;
        let bytes = self
            .store
            .read_range(self.url, range)
            .map_err(|e| ParquetError::External(Box::new(e)))?;
        if bytes.len() != length {
            return Err(ParquetError::EOF(format!(
                "{}: wanted {length} bytes at {start}, got {}",
                self.url,
                bytes.len()
            )));
        }
        Ok(bytes.into())
    }
}

/// One row group's projected column chunks, `(file offset, bytes)`, as a [`ChunkReader`].
struct RowGroupBytes {
    len: u64,
    chunks: Vec<(u64, Bytes)>,
}

impl RowGroupBytes {
    fn slice(&self, start: u64, length: Option<usize>) -> parquet::errors::Result<Bytes> {
        let found = self
            .chunks
            .iter()
            .find(|(offset, b)| (*offset..*offset + b.len() as u64).contains(&start));
        let Some((offset, bytes)) = found else {
            return Err(ParquetError::General(format!(
                "offset {start} is outside the fetched column chunks"
            )));
        };
        let from = (start - offset) as usize;
        let to = length.map_or(bytes.len(), |l| from + l);
        if to > bytes.len() {
            return Err(ParquetError::EOF(format!(
                "{length:?} bytes at {start} run past their column chunk"
            )));
        }
        Ok(bytes.slice(from..to))
    }
}

impl Length for RowGroupBytes {
    fn len(&self) -> u64 {
        self.len
    }
}

impl ChunkReader for RowGroupBytes {
    type T = Cursor<Bytes>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        Ok(Cursor::new(self.slice(start, None)?))
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        self.slice(start, Some(length))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reader::testing::{MapStore, samples, summary};

    /// `scripts/make_bad_corpus.py`'s HF-style file: 6 rows in 2 row groups of 3; row 2's image
    /// bytes and row 3's caption are null.
    const HF: &[u8] = include_bytes!("../../tests/fixtures/bad/hf.parquet");

    #[test]
    fn reads_rows_through_ranged_reads_only() {
        let store = MapStore::with(&[("hf.parquet", HF)]);
        let reader = ParquetReader::new(ParquetColumns::default());
        let samples = samples(&reader, &store, "hf.parquet");
        assert_eq!(samples.len(), 6);
        assert_eq!(&samples[0].fields[IMAGE_FIELD][..2], [0xff, 0xd8]); // JPEG SOI
        assert_eq!(samples[1].fields[IMAGE_FIELD], b"<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head>\n<body>gone</body></html>\n");
        assert_eq!(samples[1].fields[CAPTION_FIELD], b"html as image");
        assert!(!samples[2].fields.contains_key(IMAGE_FIELD));
        assert!(!samples[3].fields.contains_key(CAPTION_FIELD));
        assert_eq!(samples[4].fields[IMAGE_FIELD], b"");
        // Footer (8 bytes) + metadata, then per row group one read per projected leaf column
        // (image.bytes, image.path, caption): 2 + 2 * 3 = 8, none of them the whole file.
        let ranges = store.ranges.lock().expect("poisoned").clone();
        assert_eq!(ranges.len(), 8, "{ranges:?}");
        assert_eq!(ranges[0], HF.len() as u64 - 8..HF.len() as u64);
        assert!(
            ranges.iter().all(|r| r.end - r.start < HF.len() as u64 / 2),
            "{ranges:?}"
        );
    }

    #[test]
    fn skip_passes_whole_row_groups_without_fetching_them() {
        let store = MapStore::with(&[("hf.parquet", HF)]);
        let reader = ParquetReader::new(ParquetColumns::default());
        assert_eq!(summary(&reader, &store, "hf.parquet", 3), ["3", "4", "5"]);
        // Footer + metadata + the second group's 3 column chunks.
        assert_eq!(store.ranges.lock().expect("poisoned").len(), 5);
    }

    #[test]
    fn bad_files_and_columns_fail_the_shard() {
        let mut bad = HF.to_vec();
        let n = bad.len();
        bad[n - 1] = b'X'; // PAR1 -> PARX
        let store = MapStore::with(&[
            ("hf.parquet", HF),
            ("bad.parquet", &bad),
            ("tiny.parquet", b"PAR1"),
        ]);
        let reader = ParquetReader::new(ParquetColumns::default());
        assert_eq!(
            summary(&reader, &store, "bad.parquet", 0),
            ["FAILED shard_corrupt"]
        );
        assert_eq!(
            summary(&reader, &store, "tiny.parquet", 0),
            ["FAILED shard_corrupt"]
        );
        assert_eq!(
            summary(&reader, &store, "gone.parquet", 0),
            ["FAILED shard_unreachable"]
        );
        let other = ParquetReader::new(ParquetColumns {
            image: "img".into(),
            ..ParquetColumns::default()
        });
        let events: Vec<_> = other.read(&store, "hf.parquet", 0).collect();
        let [ReadEvent::ShardFailed { reason, detail }] = events.as_slice() else {
            panic!("{events:?}")
        };
        assert_eq!(*reason, SkipReason::ShardCorrupt);
        assert!(
            detail.contains("\"img\"") && detail.contains("hf.parquet"),
            "{detail}"
        );
    }
}
