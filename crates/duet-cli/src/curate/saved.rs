//! Reading back pass 1's output (`embeddings/{i:05}.*`): every good pair's saved row and
//! CLIP score, in spec order.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};
use duet_data::SkipCounts;
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

/// Everything pass 2 needs, over the whole spec.
#[derive(Debug)]
pub(super) struct Saved {
    /// `(input shard, row)` of every good pair, in spec order.
    pub rows: Vec<(usize, Row)>,
    /// Each pair's CLIP score: the cosine of its unit embeddings.
    pub scores: Vec<f32>,
    /// The image embeddings, row-major, if asked for (the near-duplicate search).
    pub images: Vec<f32>,
    /// The samples the loader skipped, by reason.
    pub skipped: SkipCounts,
}

fn read_npy(path: &Path) -> Result<Vec<f32>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let npy = npyz::NpyFile::new(&bytes[..]).with_context(|| format!("{}", path.display()))?;
    npy.into_vec::<f32>()
        .with_context(|| format!("{}: not float32", path.display()))
}

/// Reads the `shards` shards' saved embeddings of width `dim` in `embeddings`, keeping the image
/// embeddings when `keep_images`.
pub(super) fn read(
    embeddings: &Path,
    shards: usize,
    dim: usize,
    keep_images: bool,
) -> Result<Saved> {
    let mut rows: Vec<(usize, Row)> = Vec::new();
    let mut scores = Vec::new();
    // The image embeddings, kept for the near-duplicate search only.
    let mut kept_images: Vec<f32> = Vec::new();
    let mut skipped = SkipCounts::default();
    for i in 0..shards {
        let stem = embeddings.join(format!("{i:05}"));
        let path = |suffix: &str| PathBuf::from(format!("{}.{suffix}", stem.display()));
        let images = read_npy(&path("images.npy"))?;
        let texts = read_npy(&path("texts.npy"))?;
        let report: ShardReport = serde_json::from_str(
            &std::fs::read_to_string(path("json"))
                .with_context(|| format!("reading {}", path("json").display()))?,
        )
        .with_context(|| format!("{}", path("json").display()))?;
        skipped.merge(&report.skipped);
        let lines = std::fs::read_to_string(path("jsonl"))
            .with_context(|| format!("reading {}", path("jsonl").display()))?;
        let saved: Vec<Row> = lines
            .lines()
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()
            .with_context(|| format!("{}", path("jsonl").display()))?;
        ensure!(
            images.len() == saved.len() * dim && texts.len() == images.len(),
            "{}: embeddings and rows disagree; delete the directory and run again",
            stem.display()
        );
        if keep_images {
            kept_images.extend_from_slice(&images);
        }
        for (j, row) in saved.into_iter().enumerate() {
            let (a, b) = (
                &images[j * dim..(j + 1) * dim],
                &texts[j * dim..(j + 1) * dim],
            );
            scores.push(a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>());
            rows.push((i, row));
        }
    }
    Ok(Saved {
        rows,
        scores,
        images: kept_images,
        skipped,
    })
}
