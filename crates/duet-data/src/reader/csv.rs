//! OpenCLIP's `--dataset-type csv`: a table with a header, one row per sample, an image-path
//! column and a caption column.
//!
//! Each row becomes a sample keyed by its row number (0-based, header excluded, which is also
//! its position) with two fields: [`IMAGE_FIELD`] (the image file's bytes)
//! and [`CAPTION_FIELD`] (the caption cell, raw bytes; UTF-8 is checked
//! downstream). Image paths are read through the same store as the table: relative paths are
//! resolved against the table's directory, absolute paths and URLs are used as they are.
//! (OpenCLIP's `CsvDataset` opens paths relative to the working directory; resolving against
//! the table keeps a dataset movable.)
//!
//! A row with the wrong number of cells is skipped as [`SkipReason::ShardCorrupt`] with its line
//! number; a row whose image cannot be opened as [`SkipReason::MissingImage`] naming the path.
//! A header without the configured columns, or a stream that breaks, fails the shard.

use std::io::Read;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::reader::{CAPTION_FIELD, IMAGE_FIELD, ReadEvent, ShardReader, resolve_relative};
use crate::source::ShardStore;
use crate::{DataError, RawSample, SampleRef, SkipReason};

/// Column names and separator of a CSV/TSV shard; defaults are OpenCLIP's
/// (`--csv-img-key filepath --csv-caption-key title --csv-separator "\t"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CsvColumns {
    /// The column holding image paths.
    pub image: String,
    /// The column holding captions.
    pub caption: String,
    /// The cell separator; must be ASCII.
    pub separator: char,
}

impl Default for CsvColumns {
    fn default() -> Self {
        Self {
            image: "filepath".into(),
            caption: "title".into(),
            separator: '\t',
        }
    }
}

/// Reads CSV/TSV shards of image paths and captions. `skip` counts data rows; skipped rows'
/// images are not opened.
#[derive(Debug, Clone)]
pub struct CsvReader {
    columns: CsvColumns,
    separator: u8,
}

impl CsvReader {
    /// A reader for `columns`; fails if the separator is not ASCII.
    pub fn new(columns: CsvColumns) -> Result<Self, DataError> {
        let separator = u8::try_from(columns.separator)
            .ok()
            .filter(u8::is_ascii)
            .ok_or_else(|| DataError::InvalidConfig {
                field: "separator",
                value: format!("{:?}", columns.separator),
                reason: "must be one ASCII character",
            })?;
        Ok(Self { columns, separator })
    }
}

impl ShardReader for CsvReader {
    fn read<'a>(
        &'a self,
        store: &'a dyn ShardStore,
        url: &'a str,
        skip: u64,
    ) -> Box<dyn Iterator<Item = ReadEvent> + Send + 'a> {
        let failed = |reason, detail: String| -> Box<dyn Iterator<Item = ReadEvent> + Send + 'a> {
            Box::new(std::iter::once(ReadEvent::ShardFailed { reason, detail }))
        };
        let stream = match store.open(url) {
            Ok(stream) => stream,
            Err(e) => return failed(SkipReason::ShardUnreachable, format!("{url}: {e}")),
        };
        let mut table = csv::ReaderBuilder::new()
            .delimiter(self.separator)
            .from_reader(stream);
        let header = match table.byte_headers() {
            Ok(header) => header.clone(),
            Err(e) => return failed(failure_reason(&e), format!("{url}: header: {e}")),
        };
        let find = |name: &str| header.iter().position(|cell| cell == name.as_bytes());
        let (Some(image), Some(caption)) = (find(&self.columns.image), find(&self.columns.caption))
        else {
            let names: Vec<_> = header.iter().map(String::from_utf8_lossy).collect();
            return failed(
                SkipReason::ShardCorrupt,
                format!(
                    "{url}: header {names:?} lacks column {:?} or {:?}",
                    self.columns.image, self.columns.caption
                ),
            );
        };
        let shard: Arc<str> = url.into();
        let mut done = false;
        let rows = table
            .into_byte_records()
            .zip(0u64..)
            .filter(move |(_, i)| *i >= skip);
        Box::new(rows.map_while(move |(row, index)| {
            if done {
                return None;
            }
            let event = match row {
                Ok(row) => read_row(store, &shard, index, &row, image, caption),
                Err(e) if matches!(e.kind(), csv::ErrorKind::Io(_)) => {
                    done = true;
                    ReadEvent::ShardFailed {
                        reason: SkipReason::ShardTruncated,
                        detail: format!("{shard}: row {index}: {e}"),
                    }
                }
                Err(e) => ReadEvent::Skipped {
                    reason: SkipReason::ShardCorrupt,
                    key: Some(index.to_string()),
                    detail: format!("{shard}: {}: {e}", line(e.position())),
                },
            };
            Some(event)
        }))
    }
}

/// One row: open its image, pair it with its caption.
fn read_row(
    store: &dyn ShardStore,
    shard: &Arc<str>,
    index: u64,
    row: &csv::ByteRecord,
    image: usize,
    caption: usize,
) -> ReadEvent {
    let missing = |detail: String| ReadEvent::Skipped {
        reason: SkipReason::MissingImage,
        key: Some(index.to_string()),
        detail: format!("{shard}: {}: {detail}", line(row.position())),
    };
    let path = match std::str::from_utf8(&row[image]) {
        Ok("") => return missing("empty image path".into()),
        Ok(path) => resolve_relative(shard, path),
        Err(_) => {
            return missing(format!(
                "image path {:?} is not UTF-8",
                row[image].escape_ascii()
            ));
        }
    };
    let mut bytes = Vec::new();
    match store.open(&path) {
        Ok(mut stream) => {
            if let Err(e) = stream.read_to_end(&mut bytes) {
                return missing(format!("image {path}: {e}"));
            }
        }
        Err(e) => return missing(format!("image {path}: {e}")),
    }
    let fields = [
        (IMAGE_FIELD.to_owned(), bytes),
        (CAPTION_FIELD.to_owned(), row[caption].to_vec()),
    ];
    ReadEvent::Sample(RawSample {
        at: SampleRef {
            shard: Arc::clone(shard),
            index,
        },
        key: index.to_string(),
        fields: fields.into_iter().collect(),
    })
}

/// `line N` from a csv position.
fn line(position: Option<&csv::Position>) -> String {
    position.map_or_else(|| "unknown line".into(), |p| format!("line {}", p.line()))
}

/// A broken stream is a truncation; anything else a corrupt table.
fn failure_reason(e: &csv::Error) -> SkipReason {
    match e.kind() {
        csv::ErrorKind::Io(_) => SkipReason::ShardTruncated,
        _ => SkipReason::ShardCorrupt,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reader::testing::{MapStore, summary};

    const TSV: &[u8] = b"filepath\ttitle\textra\n\
        img/a.jpg\ta cat\tx\n\
        /abs/b.jpg\ta dog\tx\n\
        img/gone.jpg\tlost\tx\n\
        img/a.jpg\ttoo\tmany\tcells\n\
        \tno path\tx\n\
        img/a.jpg\tagain\tx\n";

    fn store() -> MapStore {
        MapStore::with(&[
            ("d/t.tsv", TSV),
            ("d/img/a.jpg", b"A"),
            ("/abs/b.jpg", b"B"),
        ])
    }

    #[test]
    fn rows_become_samples_and_bad_rows_are_skipped() {
        let reader = CsvReader::new(CsvColumns::default()).expect("reader");
        // Rows 0..6 on lines 2..7: row 2's image is absent, row 3 has 4 cells, row 4 no path.
        assert_eq!(
            summary(&reader, &store(), "d/t.tsv", 0),
            [
                "0",
                "1",
                "!missing_image 2",
                "!shard_corrupt 3",
                "!missing_image 4",
                "5"
            ]
        );
        assert_eq!(
            summary(&reader, &store(), "d/t.tsv", 4),
            ["!missing_image 4", "5"]
        );
    }

    #[test]
    fn fields_hold_image_bytes_and_caption_and_details_name_lines() {
        let reader = CsvReader::new(CsvColumns::default()).expect("reader");
        let events: Vec<_> = reader.read(&store(), "d/t.tsv", 0).collect();
        let ReadEvent::Sample(first) = &events[1] else {
            panic!("{:?}", events[1])
        };
        assert_eq!(first.fields[IMAGE_FIELD], b"B");
        assert_eq!(first.fields[CAPTION_FIELD], b"a dog");
        assert_eq!(first.at.index, 1);
        let ReadEvent::Skipped { detail, .. } = &events[2] else {
            panic!("{:?}", events[2])
        };
        assert!(
            detail.contains("line 4") && detail.contains("d/img/gone.jpg"),
            "{detail}"
        );
        let ReadEvent::Skipped { detail, .. } = &events[3] else {
            panic!("{:?}", events[3])
        };
        assert!(detail.contains("line 5"), "{detail}");
    }

    #[test]
    fn custom_columns_and_separator() {
        let csv = b"caption,path\n\"a, quoted\",x.png\n";
        let store = MapStore::with(&[("t.csv", csv), ("x.png", b"P")]);
        let columns = CsvColumns {
            image: "path".into(),
            caption: "caption".into(),
            separator: ',',
        };
        let reader = CsvReader::new(columns).expect("reader");
        let events: Vec<_> = reader.read(&store, "t.csv", 0).collect();
        let [ReadEvent::Sample(s)] = events.as_slice() else {
            panic!("{events:?}")
        };
        assert_eq!(s.fields[CAPTION_FIELD], b"a, quoted");
        assert_eq!(s.fields[IMAGE_FIELD], b"P");
    }

    #[test]
    fn missing_columns_fail_the_shard_and_bad_separators_are_refused() {
        let store = MapStore::with(&[("t.tsv", b"path\tcaption\nx\ty\n")]);
        let reader = CsvReader::new(CsvColumns::default()).expect("reader");
        assert_eq!(
            summary(&reader, &store, "t.tsv", 0),
            ["FAILED shard_corrupt"]
        );
        assert_eq!(
            summary(&reader, &store, "gone.tsv", 0),
            ["FAILED shard_unreachable"]
        );
        let columns = CsvColumns {
            separator: '→',
            ..CsvColumns::default()
        };
        assert!(CsvReader::new(columns).is_err());
    }
}
