//! `duet curate`: embed a shard spec, decide per sample with `duet_data::filter`, and write the
//! kept samples as webdataset tars, with a report (issue 17).
//!
//! Passes: (1) `duet embed --data` into `OUT/embeddings/` (resumable: finished shards are
//! kept); (2) whole-spec statistics, each streamed through the saved files one input shard at
//! a time into on-disk columns in spec order (`OUT/decide/`, `scratch.rs`): every good pair's
//! CLIP score (the cosine of its saved embeddings, `saved.rs`) and the balancing counts; the
//! top-fraction threshold and the quantiles by exact radix selection over the saved scores
//! (`duet_data::select`, two passes); with `--dedup-exact` the SHA-256 of every good pair's
//! image bytes (the raw shards streamed once more, nothing decoded) into hash buckets searched
//! one at a time (`raw.rs`); with `--dedup-near` the SemDeDup search over the saved image
//! embeddings, a block of clusters at a time (`duet_data::dedup`); (3) per input shard `i`,
//! each pair's decision from its row and its columns, then the shard's raw samples streamed
//! again and the kept ones written to `OUT/shards/{i:05}.tar` — the image bytes as they were
//! (member `key.<ext>` by the sniffed format), the caption as `key.txt` — renamed into place
//! when complete, so a rerun skips the finished tars (`OUT/curate-settings.json` refuses a
//! rerun with other settings). `OUT/curate.json` reports the counts kept and dropped by
//! reason, the skipped samples by reason, and score quantiles; `OUT/scores.png` is the score
//! histogram, kept and dropped pairs stacked.
//!
//! Memory is bounded by the configuration, not the spec: one input shard's saved rows and
//! embeddings; `--block-memory` for the duplicate searches (a single cluster larger than it is
//! still loaded whole); the near search's `2k` centroids and its seeding sample
//! (`max(4096, 16k)` rows); the selection's counters (0.5 MiB per quantile). Disk: 4 bytes
//! per pair, plus 1 per duplicate filter, under `OUT/decide/` until the run ends.

mod raw;
mod saved;
mod scratch;

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use anyhow::{Context, Result, ensure};
use burn::tensor::Device;
use clap::Args;
use duet_data::dedup::{NearDedup, near_duplicates_in_blocks};
use duet_data::filter::{Balancer, BasicFilter, DropReason};
use duet_data::select::{TopFraction, key_score, select_ranks};
use duet_data::{SkipCounts, parse_spec};
use serde::Serialize;

use self::raw::{exact_duplicates, write_kept};
use self::saved::SavedImages;
use self::scratch::{Column, Scratch};
use crate::backend::DeviceKind;
use crate::embed_data::{DataRun, NpyDtype};
use crate::histogram::Bins;

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
    /// Memory the duplicate searches hold at once (bytes; K, M, G suffixes): the exact search's
    /// hash bucket, the near one's block of clusters. The decisions do not depend on it.
    #[arg(long, default_value = "1G", value_parser = parse_bytes)]
    block_memory: u64,
}

fn parse_bytes(text: &str) -> Result<u64, String> {
    let (digits, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((at, _)) => text.split_at(at),
        None => (text, ""),
    };
    let shift = match unit {
        "" => 0,
        "K" | "k" => 10,
        "M" | "m" => 20,
        "G" | "g" => 30,
        _ => return Err(format!("{text:?}: a byte count such as 4096, 64M or 2G")),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?}: a byte count such as 4096, 64M or 2G"))?;
    n.checked_mul(1 << shift)
        .filter(|&b| b > 0)
        .ok_or_else(|| format!("{text:?}: not a positive byte count that fits 64 bits"))
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

/// The report's score quantiles: the score at rank `round((pairs − 1) · q)` of the ascending
/// order (NaN lowest).
const QUANTILES: [(&str, f64); 7] = [
    ("min", 0.0),
    ("p10", 0.1),
    ("p25", 0.25),
    ("p50", 0.5),
    ("p75", 0.75),
    ("p90", 0.9),
    ("max", 1.0),
];

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

    // Pass 2: whole-spec statistics, each a streamed pass with bounded memory.
    let dim = loaded.config.embed_dim;
    let scratch = Scratch::create(args.out.join("decide"))?;
    let mut skipped = SkipCounts::default();
    let mut pairs = 0u64;
    let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
    let mut balancer = entries.as_ref().map(|entries| {
        Balancer::counting(
            entries,
            args.balance_threshold.unwrap_or(u64::MAX),
            args.seed,
        )
    });
    let mut scores_out = scratch.score_writer()?;
    for i in 0..shards.len() {
        let shard = saved::read_shard(&embeddings, i, dim)?;
        skipped.merge(&shard.skipped);
        for (score, row) in shard.scores(dim).zip(&shard.rows) {
            scores_out.push(score)?;
            if score.is_finite() {
                (lo, hi) = (lo.min(score), hi.max(score));
            }
            if let Some(balancer) = &mut balancer {
                balancer.count(&row.caption);
            }
        }
        pairs += shard.rows.len() as u64;
    }
    scores_out.finish()?;
    ensure!(
        pairs > 0,
        "--data {}: no usable pairs to curate (skipped: {skipped})",
        args.data
    );
    let mut each_score = |f: &mut dyn FnMut(f32)| scratch.each_score(f);
    let mut top = args
        .top_fraction
        .map(|f| TopFraction::new(pairs, f, &mut each_score))
        .transpose()?;
    let top_threshold = top.as_ref().and_then(TopFraction::threshold);
    let quantiles = QUANTILES.map(|(_, q)| ((pairs - 1) as f64 * q).round() as u64);
    let quantiles = select_ranks(pairs, &quantiles, &mut each_score)?;
    if args.dedup_exact {
        let flags = scratch.flags("exact.u8", pairs)?;
        let good = |i: usize| -> Result<Vec<u64>> {
            Ok(saved::read_rows(&embeddings, i)?
                .iter()
                .map(|r| r.index)
                .collect())
        };
        exact_duplicates(&shards, &good, pairs, args.block_memory, &scratch, &flags)?;
    }
    let clusters = match args.dedup_near {
        Some(threshold) => {
            let clusters = args
                .dedup_clusters
                .map_or(pairs.div_ceil(10_000).max(1) as usize, |k| k as usize);
            let config = NearDedup {
                threshold,
                clusters,
                iterations: 20,
                seed: args.seed,
            };
            let flags = scratch.flags("near.u8", pairs)?;
            let images = SavedImages {
                embeddings: &embeddings,
                shards: shards.len(),
                dim,
            };
            let mut failed = None;
            let block = usize::try_from(args.block_memory).unwrap_or(usize::MAX);
            let k = near_duplicates_in_blocks(&images, &config, block, &mut |ordinal| {
                if failed.is_none() {
                    failed = flags.set(ordinal).err();
                }
            })?;
            if let Some(e) = failed {
                return Err(e);
            }
            Some(k)
        }
        None => None,
    };

    // Pass 3, per input shard: the decisions, then the kept samples' bytes.
    let out_shards = args.out.join("shards");
    std::fs::create_dir_all(&out_shards)
        .with_context(|| format!("creating {}", out_shards.display()))?;
    let mut scores = scratch.scores()?;
    let open_flags = |name: &str| Column::<1>::open(&scratch.path(name));
    let mut exact = args
        .dedup_exact
        .then(|| open_flags("exact.u8"))
        .transpose()?;
    let mut near = clusters.map(|_| open_flags("near.u8")).transpose()?;
    let mut dropped: BTreeMap<DropReason, usize> = BTreeMap::new();
    let mut kept = 0usize;
    let mut bins = Bins::new(lo, hi);
    let mut ordinal = 0u64;
    for (i, shard) in shards.iter().enumerate() {
        let mut keep: HashSet<u64> = HashSet::new();
        for row in saved::read_rows(&embeddings, i)? {
            let score = f32::from_le_bytes(scores.next_pair()?);
            let flag = |column: &mut Option<Column<1>>| -> Result<bool> {
                Ok(match column {
                    Some(c) => c.next_pair()? == [1],
                    None => false,
                })
            };
            let (is_exact, is_near) = (flag(&mut exact)?, flag(&mut near)?);
            // Every score goes through the top-fraction test in order: it counts the ties.
            let in_top = top.as_mut().map(|t| t.keep(score));
            let reason = is_exact
                .then_some(DropReason::ExactDuplicate)
                .or_else(|| is_near.then_some(DropReason::NearDuplicate))
                .or_else(|| basic.check(&row.caption, row.width, row.height))
                .or_else(|| {
                    args.min_score
                        // A NaN score is under any threshold.
                        .is_some_and(|min| score.is_nan() || score < min)
                        .then_some(DropReason::LowScore)
                })
                .or_else(|| (in_top == Some(false)).then_some(DropReason::NotInTopFraction))
                .or_else(|| {
                    balancer
                        .as_ref()
                        .is_some_and(|b| !b.keep(&row.caption, ordinal))
                        .then_some(DropReason::Balanced)
                });
            bins.add(score, reason.is_none());
            match reason {
                Some(reason) => *dropped.entry(reason).or_default() += 1,
                None => {
                    kept += 1;
                    keep.insert(row.index);
                }
            }
            ordinal += 1;
        }
        let target = out_shards.join(format!("{i:05}.tar"));
        if !target.is_file() {
            write_kept(shard, &keep, &target)?;
        }
    }
    scratch.remove()?;

    let score_quantiles = QUANTILES
        .iter()
        .zip(&quantiles)
        .map(|((name, _), at)| (*name, key_score(at.key)))
        .collect();
    let report = Report {
        spec: args.data.clone(),
        model: args.model.display().to_string(),
        pairs: pairs as usize,
        kept,
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
    if lo.is_finite() {
        crate::histogram::draw(&bins, args.min_score.or(top_threshold), &histogram)
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
