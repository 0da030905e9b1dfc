//! `duet curate`: embed a shard spec, decide per sample with `duet_data::filter`, and write the
//! kept samples as webdataset tars, with a report (issue 17).
//!
//! Passes, each resumable: (1) `duet embed --data` into `OUT/embeddings/` (finished shards are
//! kept); (2) every good sample's CLIP score (the cosine of its two embeddings, read back from
//! the saved `.npy` files, `saved.rs`), with `--dedup-exact` the SHA-256 of every good sample's
//! image bytes in spec order (the raw shards streamed once more, nothing decoded, `raw.rs`),
//! with `--dedup-near` the SemDeDup search on the saved image embeddings, and the filters'
//! decisions, over the whole spec, so "top fraction" sees every score; (3) per input shard `i`, its raw samples streamed again and the kept ones
//! written to `OUT/shards/{i:05}.tar` — the image bytes as they were (member `key.<ext>` by the
//! sniffed format), the caption as `key.txt` — renamed into place when complete, so a rerun
//! skips the finished tars (`OUT/curate-settings.json` refuses a rerun with other settings).
//! `OUT/curate.json` reports the counts kept and dropped by reason,
//! the skipped samples by reason, and score quantiles; `OUT/scores.png` is the score histogram,
//! kept and dropped pairs stacked. With `--dedup-near`, the image embeddings of the whole spec
//! are held for the search (`n · embed_dim · 4` bytes; `duet_data::dedup` never forms an
//! `n × n` matrix).

mod raw;
mod saved;

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use anyhow::{Context, Result, ensure};
use burn::tensor::Device;
use clap::Args;
use duet_data::dedup::{NearDedup, near_duplicates};
use duet_data::filter::{Balancer, BasicFilter, DropReason, top_fraction};
use duet_data::{SkipCounts, parse_spec};
use serde::Serialize;

use self::raw::{exact_duplicates, write_kept};
use self::saved::Saved;
use crate::backend::DeviceKind;
use crate::embed_data::{DataRun, NpyDtype};

/// Arguments of `duet curate`.
#[derive(Debug, Args)]
pub struct CurateArgs {
    /// The model that scores the pairs (any layout `duet embed` reads).
    #[arg(long)]
    model: PathBuf,
    /// The shard spec to curate.
    #[arg(long, value_name = "SPEC")]
    data: String,
    /// Output directory: `embeddings/`, `shards/`, `curate.json`.
    #[arg(long)]
    out: PathBuf,
    /// Keep pairs whose CLIP score (cosine) is at least this.
    #[arg(long, conflicts_with = "top_fraction")]
    min_score: Option<f32>,
    /// Keep this fraction of the spec's pairs, the highest CLIP scores (ties to the earlier).
    #[arg(long, value_parser = parse_fraction)]
    top_fraction: Option<f64>,
    /// DataComp's basic filter: at least 3 words and 6 characters, English (by whatlang), shorter
    /// side 200 px, aspect ratio 3; the single bounds below override its values.
    #[arg(long)]
    datacomp_basic: bool,
    /// Fewest words in the caption.
    #[arg(long)]
    min_words: Option<usize>,
    /// Fewest characters in the caption.
    #[arg(long)]
    min_chars: Option<usize>,
    /// Smallest shorter image side, pixels.
    #[arg(long)]
    min_side: Option<u32>,
    /// Largest longer-to-shorter side ratio.
    #[arg(long)]
    max_aspect: Option<f64>,
    /// Keep captions of this language (ISO 639-3, as whatlang detects it: eng, deu, …);
    /// repeat for several.
    #[arg(long = "language", value_name = "CODE")]
    languages: Vec<String>,
    /// MetaCLIP balancing: a file of metadata entries, one per line.
    #[arg(long, value_name = "FILE", requires = "balance_threshold")]
    metadata: Option<PathBuf>,
    /// MetaCLIP's `t`: each entry's pairs are kept with probability `min(1, t / count)`.
    #[arg(long, requires = "metadata")]
    balance_threshold: Option<u64>,
    /// Drop a pair whose image bytes (SHA-256) equal an earlier pair's, in spec order.
    #[arg(long)]
    dedup_exact: bool,
    /// Drop a pair whose image embedding has a cosine above this with an earlier pair's of the
    /// same k-means cluster (SemDeDup; e.g. 0.95).
    #[arg(long, value_name = "COSINE")]
    dedup_near: Option<f32>,
    /// k-means clusters of the near-duplicate search; default one per 10,000 pairs. Each pair
    /// is compared with the earlier pairs of its cluster only; 1 compares every pair.
    #[arg(long, requires = "dedup_near", value_parser = clap::value_parser!(u32).range(1..))]
    dedup_clusters: Option<u32>,
    /// Seed of the balancing draws and the k-means seeding.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Pairs per forward pass.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    batch_size: u32,
    /// Where to run the model.
    #[arg(long, value_enum, default_value = "cpu")]
    device: DeviceKind,
}

fn parse_fraction(text: &str) -> Result<f64, String> {
    let f: f64 = text.parse().map_err(|e| format!("{text:?}: {e}"))?;
    if (0.0..=1.0).contains(&f) {
        Ok(f)
    } else {
        Err(format!("{f} is not a fraction in [0, 1]"))
    }
}

/// `curate.json`.
#[derive(Debug, Serialize)]
struct Report {
    spec: String,
    model: String,
    /// Good pairs scored (samples the loader could not use are under `skipped`).
    pairs: usize,
    kept: usize,
    dropped: BTreeMap<DropReason, usize>,
    skipped: SkipCounts,
    /// Score quantiles over every scored pair: min, 10 %, 25 %, 50 %, 75 %, 90 %, max.
    score_quantiles: BTreeMap<&'static str, f32>,
    /// The score the top-fraction filter's last kept pair has, if that filter ran.
    top_fraction_threshold: Option<f32>,
    /// The k-means clusters the near-duplicate search used, if it ran.
    near_duplicate_clusters: Option<usize>,
    balance_counts: Option<BTreeMap<String, u64>>,
}

fn quantile(sorted: &[f32], q: f64) -> f32 {
    if sorted.is_empty() {
        return f32::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// Runs `duet curate`.
pub fn run(args: CurateArgs) -> Result<()> {
    let spec = parse_spec(&args.data, None).with_context(|| format!("--data {}", args.data))?;
    let shards: Vec<String> = spec.shards().map(str::to_owned).collect();
    let mut basic = if args.datacomp_basic {
        BasicFilter::datacomp()
    } else {
        BasicFilter::default()
    };
    basic.min_words = args.min_words.or(basic.min_words);
    basic.min_chars = args.min_chars.or(basic.min_chars);
    basic.min_side = args.min_side.or(basic.min_side);
    basic.max_aspect = args.max_aspect.or(basic.max_aspect);
    if !args.languages.is_empty() {
        basic.languages = Some(args.languages.clone());
    }
    basic.validate().context("--language")?;
    let entries = match &args.metadata {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading --metadata {}", path.display()))?;
            let entries: Vec<String> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect();
            ensure!(
                !entries.is_empty(),
                "--metadata {}: no entries",
                path.display()
            );
            Some(entries)
        }
        None => None,
    };

    // The decisions depend on every setting: a rerun must be the same run.
    let settings = serde_json::json!({
        "model": args.model.display().to_string(),
        "data": args.data,
        "basic": basic,
        "min_score": args.min_score,
        "top_fraction": args.top_fraction,
        "metadata": entries,
        "balance_threshold": args.balance_threshold,
        "seed": args.seed,
        "dedup_exact": args.dedup_exact,
        "dedup_near": args.dedup_near,
        "dedup_clusters": args.dedup_clusters,
    });
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let settings_path = args.out.join("curate-settings.json");
    if settings_path.is_file() {
        let theirs: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(&settings_path)
                .with_context(|| format!("reading {}", settings_path.display()))?,
        )
        .with_context(|| format!("{}", settings_path.display()))?;
        ensure!(
            theirs == settings,
            "{} holds a curation with other settings ({theirs}); rerun with the same ones to \
             resume it, or choose another --out",
            args.out.display()
        );
    } else {
        std::fs::write(&settings_path, format!("{settings:#}\n"))
            .with_context(|| format!("writing {}", settings_path.display()))?;
    }

    // Pass 1: embeddings (resumable; the model is refused before any shard if it cannot run).
    let device: Device = args.device.device()?;
    let embeddings = args.out.join("embeddings");
    let loaded = crate::model_arg::load_in(&args.model, &device, duet_model::Precision::F32)?;
    let run = DataRun {
        model_arg: &args.model,
        spec: &args.data,
        out: &embeddings,
        batch_size: args.batch_size as usize,
        dtype: NpyDtype::F32,
        device: &device,
    };
    crate::embed_data::run(&run, &loaded.model, &loaded.config)?;

    // Pass 2: scores and decisions over the whole spec.
    let Saved {
        rows,
        scores,
        images,
        skipped,
    } = saved::read(
        &embeddings,
        shards.len(),
        loaded.config.embed_dim,
        args.dedup_near.is_some(),
    )?;
    ensure!(
        !rows.is_empty(),
        "--data {}: no usable pairs to curate (skipped: {skipped})",
        args.data
    );
    let top = args.top_fraction.map(|f| top_fraction(&scores, f));
    let top_threshold = top.as_ref().and_then(|kept| {
        kept.iter()
            .zip(&scores)
            .filter(|(k, _)| **k)
            .map(|(_, s)| *s)
            .reduce(f32::min)
    });
    let balancer = entries.as_ref().map(|entries| {
        let captions: Vec<&str> = rows.iter().map(|(_, r)| r.caption.as_str()).collect();
        Balancer::new(
            entries,
            &captions,
            args.balance_threshold.unwrap_or(u64::MAX),
            args.seed,
        )
    });
    let duplicates = if args.dedup_exact {
        let good: HashSet<(usize, u64)> = rows.iter().map(|(i, r)| (*i, r.index)).collect();
        exact_duplicates(&shards, &good)?
    } else {
        HashSet::new()
    };
    let (near, clusters) = match args.dedup_near {
        Some(threshold) => {
            let clusters = args
                .dedup_clusters
                .map_or(rows.len().div_ceil(10_000).max(1), |k| k as usize);
            let config = NearDedup {
                threshold,
                clusters,
                iterations: 20,
                seed: args.seed,
            };
            let dim = loaded.config.embed_dim;
            (near_duplicates(&images, dim, &config), Some(clusters))
        }
        None => (vec![false; rows.len()], None),
    };
    drop(images);
    let mut dropped: BTreeMap<DropReason, usize> = BTreeMap::new();
    let mut keep: HashSet<(usize, u64)> = HashSet::new();
    let mut kept_flags = Vec::with_capacity(rows.len());
    for (ordinal, (i, row)) in rows.iter().enumerate() {
        let reason = duplicates
            .contains(&(*i, row.index))
            .then_some(DropReason::ExactDuplicate)
            .or_else(|| near[ordinal].then_some(DropReason::NearDuplicate))
            .or_else(|| basic.check(&row.caption, row.width, row.height))
            .or_else(|| {
                args.min_score
                    // A NaN score is under any threshold.
                    .is_some_and(|min| scores[ordinal].is_nan() || scores[ordinal] < min)
                    .then_some(DropReason::LowScore)
            })
            .or_else(|| {
                top.as_ref()
                    .is_some_and(|t| !t[ordinal])
                    .then_some(DropReason::NotInTopFraction)
            })
            .or_else(|| {
                balancer
                    .as_ref()
                    .is_some_and(|b| !b.keep(&row.caption, ordinal as u64))
                    .then_some(DropReason::Balanced)
            });
        kept_flags.push(reason.is_none());
        match reason {
            Some(reason) => *dropped.entry(reason).or_default() += 1,
            None => {
                keep.insert((*i, row.index));
            }
        }
    }

    // Pass 3: the kept samples' bytes, per input shard.
    let out_shards = args.out.join("shards");
    std::fs::create_dir_all(&out_shards)
        .with_context(|| format!("creating {}", out_shards.display()))?;
    for (i, shard) in shards.iter().enumerate() {
        let target = out_shards.join(format!("{i:05}.tar"));
        if target.is_file() {
            continue;
        }
        write_kept(shard, i, &keep, &target)?;
    }

    let mut sorted = scores.clone();
    sorted.sort_by(f32::total_cmp);
    let score_quantiles = [
        ("min", 0.0),
        ("p10", 0.1),
        ("p25", 0.25),
        ("p50", 0.5),
        ("p75", 0.75),
        ("p90", 0.9),
        ("max", 1.0),
    ]
    .into_iter()
    .map(|(name, q)| (name, quantile(&sorted, q)))
    .collect();
    let report = Report {
        spec: args.data.clone(),
        model: args.model.display().to_string(),
        pairs: rows.len(),
        kept: keep.len(),
        dropped,
        skipped,
        score_quantiles,
        top_fraction_threshold: top_threshold,
        near_duplicate_clusters: clusters,
        balance_counts: balancer.map(|b| {
            b.counts()
                .into_iter()
                .map(|(e, n)| (e.to_owned(), n))
                .collect()
        }),
    };
    let histogram = args.out.join("scores.png");
    if scores.iter().any(|s| s.is_finite()) {
        crate::histogram::draw(
            &scores,
            &kept_flags,
            args.min_score.or(top_threshold),
            &histogram,
        )
        .with_context(|| format!("drawing {}", histogram.display()))?;
    }
    let path = args.out.join("curate.json");
    std::fs::write(
        &path,
        format!("{}\n", serde_json::to_string_pretty(&report)?),
    )
    .with_context(|| format!("writing {}", path.display()))?;
    tracing::info!(
        pairs = report.pairs,
        kept = report.kept,
        report = %path.display(),
        "curated"
    );
    Ok(())
}
