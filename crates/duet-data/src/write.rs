//! Writing shards as img2dataset does: `{shard}.tar` (webdataset members `key.jpg`, `key.txt`,
//! `key.json`), `{shard}.parquet` with one row per input row (failed ones included), and
//! `{shard}_stats.json` with the counts.
//!
//! Keys follow img2dataset 1.47 (`writer.py`): the shard id in `max(5, digits(shards))` digits
//! followed by the row's index in its shard in `digits(samples_per_shard - 1)` digits, so the
//! default 10,000 per shard gives the familiar 9-digit `000000000`. Image bytes are copied as
//! they are (no re-encoding); the member extension is the sniffed format's.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use parquet::data_type::{ByteArray, ByteArrayType, Int32Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use serde::Serialize;

use crate::DataError;

/// img2dataset's parquet columns (minus `exif` and hashes, which duet does not compute).
const PARQUET_SCHEMA: &str = "message schema {
    OPTIONAL BYTE_ARRAY url (UTF8);
    REQUIRED BYTE_ARRAY key (UTF8);
    OPTIONAL BYTE_ARRAY caption (UTF8);
    REQUIRED BYTE_ARRAY status (UTF8);
    OPTIONAL BYTE_ARRAY error_message (UTF8);
    OPTIONAL INT32 width;
    OPTIONAL INT32 height;
}";

/// One input row, good or failed.
#[derive(Debug, Clone)]
pub struct Row {
    /// Where the row came from (a path or `file#row`), img2dataset's `url`.
    pub url: Option<String>,
    /// The caption, if readable.
    pub caption: Option<String>,
    /// The image, or why there is none.
    pub image: Result<ImageBytes, RowError>,
}

/// A checked image: its bytes, extension and size.
#[derive(Debug, Clone)]
pub struct ImageBytes {
    /// The encoded image, written as is.
    pub bytes: Vec<u8>,
    /// `jpg`, `png` or `webp`.
    pub extension: &'static str,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

/// Why a row has no image: img2dataset's status and error message.
#[derive(Debug, Clone)]
pub struct RowError {
    /// `failed_to_download` (no image could be read) or `failed_to_resize` (it did not decode).
    pub status: &'static str,
    /// The detail.
    pub message: String,
}

/// Counts of one shard, as img2dataset's `_stats.json` has them.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ShardStats {
    /// Rows.
    pub count: u64,
    /// Rows written to the tar.
    pub successes: u64,
    /// Rows without a readable image.
    pub failed_to_download: u64,
    /// Rows whose image did not decode.
    pub failed_to_resize: u64,
    /// Seconds spent on the shard.
    pub duration: f64,
    /// Unix time the shard was started.
    pub start_time: f64,
    /// Unix time the shard was finished.
    pub end_time: f64,
    /// Rows by status (`success`, `failed_to_download`, `failed_to_resize`).
    pub status_dict: std::collections::BTreeMap<&'static str, u64>,
}

/// Writes rows into shards of `samples_per_shard` rows under a directory.
#[derive(Debug)]
pub struct ShardWriter {
    dir: PathBuf,
    per_shard: u64,
    shard_digits: usize,
    index_digits: usize,
    rows: u64,
    current: Option<OpenShard>,
    finished: Vec<ShardStats>,
}

struct OpenShard {
    id: u64,
    tar: tar::Builder<BufWriter<File>>,
    table: Vec<TableRow>,
    stats: ShardStats,
    started: Instant,
}

impl std::fmt::Debug for OpenShard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenShard")
            .field("id", &self.id)
            .field("rows", &self.table.len())
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct TableRow {
    url: Option<String>,
    key: String,
    caption: Option<String>,
    status: &'static str,
    error_message: Option<String>,
    size: Option<(u32, u32)>,
}

fn digits(mut n: u64) -> usize {
    let mut d = 1;
    while n >= 10 {
        n /= 10;
        d += 1;
    }
    d
}

fn io_error(path: &Path, op: &'static str, source: std::io::Error) -> DataError {
    DataError::ShardIo {
        url: path.display().to_string(),
        op,
        source,
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl ShardWriter {
    /// A writer into `dir` (created if missing) for about `expected_rows` rows in shards of
    /// `samples_per_shard`; the expected count only sets the width of shard names.
    pub fn new(dir: &Path, samples_per_shard: u64, expected_rows: u64) -> Result<Self, DataError> {
        if samples_per_shard == 0 {
            return Err(DataError::InvalidConfig {
                field: "samples_per_shard",
                value: "0".into(),
                reason: "must be at least 1",
            });
        }
        std::fs::create_dir_all(dir).map_err(|e| io_error(dir, "create", e))?;
        let shards = expected_rows.div_ceil(samples_per_shard).max(1);
        Ok(Self {
            dir: dir.to_path_buf(),
            per_shard: samples_per_shard,
            shard_digits: digits(shards - 1).max(5),
            index_digits: digits(samples_per_shard - 1),
            rows: 0,
            current: None,
            finished: Vec::new(),
        })
    }

    fn path(&self, id: u64, suffix: &str) -> PathBuf {
        self.dir
            .join(format!("{id:0width$}{suffix}", width = self.shard_digits))
    }

    /// Adds one row; returns its key.
    pub fn add(&mut self, row: Row) -> Result<String, DataError> {
        let id = self.rows / self.per_shard;
        let index = self.rows % self.per_shard;
        self.rows += 1;
        if self.current.as_ref().is_some_and(|s| s.id != id) {
            self.close_shard()?;
        }
        let tar_path = self.path(id, ".tar");
        let mut shard = match self.current.take() {
            Some(shard) => shard,
            None => {
                let file = File::create(&tar_path).map_err(|e| io_error(&tar_path, "create", e))?;
                OpenShard {
                    id,
                    tar: tar::Builder::new(BufWriter::new(file)),
                    table: Vec::new(),
                    stats: ShardStats {
                        start_time: unix_now(),
                        ..ShardStats::default()
                    },
                    started: Instant::now(),
                }
            }
        };
        let key = format!(
            "{id:0sw$}{index:0iw$}",
            sw = self.shard_digits,
            iw = self.index_digits
        );
        shard.stats.count += 1;
        let mut table = TableRow {
            url: row.url,
            key: key.clone(),
            caption: row.caption,
            status: "success",
            error_message: None,
            size: None,
        };
        match row.image {
            Ok(image) => {
                shard.stats.successes += 1;
                table.size = Some((image.width, image.height));
                let json = serde_json::json!({
                    "url": table.url,
                    "key": key,
                    "caption": table.caption,
                    "status": "success",
                    "error_message": null,
                    "width": image.width,
                    "height": image.height,
                });
                let caption = table.caption.clone().unwrap_or_default();
                let json = json.to_string();
                let members: [(&str, &[u8]); 3] = [
                    (image.extension, &image.bytes),
                    ("txt", caption.as_bytes()),
                    ("json", json.as_bytes()),
                ];
                for (ext, body) in members {
                    let mut header = tar::Header::new_ustar();
                    header.set_size(body.len() as u64);
                    header.set_mode(0o644);
                    header.set_mtime(0);
                    shard
                        .tar
                        .append_data(&mut header, format!("{key}.{ext}"), body)
                        .map_err(|e| io_error(&tar_path, "write", e))?;
                }
            }
            Err(error) => {
                match error.status {
                    "failed_to_resize" => shard.stats.failed_to_resize += 1,
                    _ => shard.stats.failed_to_download += 1,
                }
                table.status = error.status;
                table.error_message = Some(error.message);
            }
        }
        *shard.stats.status_dict.entry(table.status).or_default() += 1;
        shard.table.push(table);
        self.current = Some(shard);
        Ok(key)
    }

    fn close_shard(&mut self) -> Result<(), DataError> {
        let Some(mut shard) = self.current.take() else {
            return Ok(());
        };
        let tar_path = self.path(shard.id, ".tar");
        let file = shard
            .tar
            .into_inner()
            .map_err(|e| io_error(&tar_path, "finish", e))?;
        file.into_inner()
            .map_err(|e| io_error(&tar_path, "flush", e.into_error()))?
            .sync_all()
            .map_err(|e| io_error(&tar_path, "sync", e))?;
        let parquet_path = self.path(shard.id, ".parquet");
        write_table(&parquet_path, &shard.table)?;
        shard.stats.end_time = unix_now();
        shard.stats.duration = shard.started.elapsed().as_secs_f64();
        let stats_path = self.path(shard.id, "_stats.json");
        let json = serde_json::to_string_pretty(&shard.stats).unwrap_or_default();
        std::fs::write(&stats_path, json).map_err(|e| io_error(&stats_path, "write", e))?;
        self.finished.push(shard.stats);
        Ok(())
    }

    /// Closes the last shard and returns every shard's counts, in shard order.
    pub fn finish(mut self) -> Result<Vec<ShardStats>, DataError> {
        self.close_shard()?;
        Ok(self.finished)
    }
}

fn write_table(path: &Path, rows: &[TableRow]) -> Result<(), DataError> {
    let parquet_error = |e: parquet::errors::ParquetError| {
        io_error(path, "write parquet", std::io::Error::other(e))
    };
    let schema = Arc::new(parse_message_type(PARQUET_SCHEMA).map_err(parquet_error)?);
    let file = File::create(path).map_err(|e| io_error(path, "create", e))?;
    let props = Arc::new(WriterProperties::builder().build());
    let mut writer = SerializedFileWriter::new(file, schema, props).map_err(parquet_error)?;
    let mut group = writer.next_row_group().map_err(parquet_error)?;
    let text = |get: &dyn Fn(&TableRow) -> Option<String>| {
        let values: Vec<Option<String>> = rows.iter().map(get).collect();
        let levels: Vec<i16> = values.iter().map(|v| i16::from(v.is_some())).collect();
        let data: Vec<ByteArray> = values
            .into_iter()
            .flatten()
            .map(|s| ByteArray::from(s.into_bytes()))
            .collect();
        (data, levels)
    };
    let number = |get: &dyn Fn(&TableRow) -> Option<i32>| {
        let values: Vec<Option<i32>> = rows.iter().map(get).collect();
        let levels: Vec<i16> = values.iter().map(|v| i16::from(v.is_some())).collect();
        (values.into_iter().flatten().collect::<Vec<_>>(), levels)
    };
    let mut column = 0;
    while let Some(mut writer) = group.next_column().map_err(parquet_error)? {
        match column {
            0..=4 => {
                let (data, levels) = match column {
                    0 => text(&|r| r.url.clone()),
                    1 => text(&|r| Some(r.key.clone())),
                    2 => text(&|r| r.caption.clone()),
                    3 => text(&|r| Some(r.status.to_owned())),
                    _ => text(&|r| r.error_message.clone()),
                };
                // Required columns take no definition levels.
                let levels = matches!(column, 0 | 2 | 4).then_some(levels);
                writer
                    .typed::<ByteArrayType>()
                    .write_batch(&data, levels.as_deref(), None)
                    .map_err(parquet_error)?;
            }
            _ => {
                let (data, levels) = if column == 5 {
                    number(&|r| r.size.map(|s| i32::try_from(s.0).unwrap_or(i32::MAX)))
                } else {
                    number(&|r| r.size.map(|s| i32::try_from(s.1).unwrap_or(i32::MAX)))
                };
                writer
                    .typed::<Int32Type>()
                    .write_batch(&data, Some(&levels), None)
                    .map_err(parquet_error)?;
            }
        }
        writer.close().map_err(parquet_error)?;
        column += 1;
    }
    group.close().map_err(parquet_error)?;
    writer.close().map_err(parquet_error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_widths_follow_img2dataset() {
        // 10,000 per shard: 5 + 4 = 9 digits; 500 per shard: 5 + 3 = 8 (the bundled sample).
        assert_eq!(digits(9_999), 4);
        assert_eq!(digits(499), 3);
        assert_eq!(digits(0), 1);
        assert_eq!(digits(100_000), 6);
    }
}
