//! Reading back pass 1's output (`embeddings/{i:05}.*`) one input shard at a time: its good
//! pairs' saved rows and embeddings, its skips, and the image embeddings of the whole spec as
//! a stream for the near-duplicate search.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};
use duet_data::{RowBlocks, SkipCounts};
use serde::Deserialize;

/// One saved row of `embeddings/{i:05}.jsonl`.
#[derive(Debug, Deserialize)]
pub(super) struct Row {
    pub caption: String,
    pub width: u32,
    pub height: u32,
    pub index: u64,
}

#[derive(Debug, Deserialize)]
struct ShardReport {
    skipped: SkipCounts,
}

/// One input shard's saved output.
#[derive(Debug)]
pub(super) struct SavedShard {
    /// The good pairs, in the shard's order.
    pub rows: Vec<Row>,
    /// Their image and text embeddings, row-major, unit length.
    pub images: Vec<f32>,
    pub texts: Vec<f32>,
    /// The samples the loader skipped, by reason.
    pub skipped: SkipCounts,
}

impl SavedShard {
    /// Each pair's CLIP score: the cosine of its unit embeddings.
    pub fn scores(&self, dim: usize) -> impl Iterator<Item = f32> + '_ {
        self.images
            .chunks(dim)
            .zip(self.texts.chunks(dim))
            .map(|(a, b)| a.iter().zip(b).map(|(x, y)| x * y).sum())
    }
}

fn file(embeddings: &Path, i: usize, suffix: &str) -> PathBuf {
    embeddings.join(format!("{i:05}.{suffix}"))
}

fn read_npy(path: &Path) -> Result<Vec<f32>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let npy = npyz::NpyFile::new(&bytes[..]).with_context(|| format!("{}", path.display()))?;
    npy.into_vec::<f32>()
        .with_context(|| format!("{}: not float32", path.display()))
}

/// Shard `i`'s saved rows.
pub(super) fn read_rows(embeddings: &Path, i: usize) -> Result<Vec<Row>> {
    let path = file(embeddings, i, "jsonl");
    let lines =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    lines
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()
        .with_context(|| format!("{}", path.display()))
}

/// Shard `i`'s saved rows, embeddings of width `dim`, and skips.
pub(super) fn read_shard(embeddings: &Path, i: usize, dim: usize) -> Result<SavedShard> {
    let images = read_npy(&file(embeddings, i, "images.npy"))?;
    let texts = read_npy(&file(embeddings, i, "texts.npy"))?;
    let report_path = file(embeddings, i, "json");
    let report: ShardReport = serde_json::from_str(
        &std::fs::read_to_string(&report_path)
            .with_context(|| format!("reading {}", report_path.display()))?,
    )
    .with_context(|| format!("{}", report_path.display()))?;
    let rows = read_rows(embeddings, i)?;
    ensure!(
        images.len() == rows.len() * dim && texts.len() == images.len(),
        "{}: embeddings and rows disagree; delete the directory and run again",
        file(embeddings, i, "*").display()
    );
    Ok(SavedShard {
        rows,
        images,
        texts,
        skipped: report.skipped,
    })
}

/// The saved image embeddings of shards `0..shards`, one shard per block.
pub(super) struct SavedImages<'a> {
    pub embeddings: &'a Path,
    pub shards: usize,
    pub dim: usize,
}

impl RowBlocks for SavedImages<'_> {
    fn dim(&self) -> usize {
        self.dim
    }

    fn each_block(&self, f: &mut dyn FnMut(u64, &[f32])) -> std::io::Result<()> {
        let mut first = 0u64;
        for i in 0..self.shards {
            let images = read_npy(&file(self.embeddings, i, "images.npy"))
                .map_err(|e| std::io::Error::other(format!("{e:#}")))?;
            if images.len() % self.dim != 0 {
                return Err(std::io::Error::other(format!(
                    "{}: not rows of {}",
                    file(self.embeddings, i, "images.npy").display(),
                    self.dim
                )));
            }
            f(first, &images);
            first += (images.len() / self.dim) as u64;
        }
        Ok(())
    }
}
