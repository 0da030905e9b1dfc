//! `duet embed --data SPEC --out DIR`: every good sample of a shard spec through the model,
//! written per input shard, resumable (issue 17).
//!
//! For the `i`-th shard of the spec (spec order), `DIR` gets:
//!
//! | file | contents |
//! |---|---|
//! | `{i:05}.images.npy` | `[n, embed_dim]` L2-normalised image embeddings, `<f4` or `<f2` |
//! | `{i:05}.texts.npy` | `[n, embed_dim]` text embeddings, same order |
//! | `{i:05}.json` | the shard's URL, `n`, and the samples skipped by reason |
//! | `{i:05}.jsonl` | one line per row: `key`, `caption`, `width`, `height` (decoded image), `index` (position in the shard) |
//!
//! and `embed.json` names the run (model, spec, dtype, the shard list). Samples go through the
//! same eval transform and tokenizer as `duet embed --image/--text`. Each file is written to a
//! temporary name and renamed; the `.jsonl` is renamed last, so a shard is finished exactly when
//! its `.jsonl` exists. A killed run, started again with the same arguments, skips the finished
//! shards (never rewriting them) and redoes the first unfinished one from its start; a directory
//! holding another run's embeddings is refused.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use burn::tensor::{Device, Tensor};
use duet_data::{DataError, FieldSelector, SkipCounts, TextTokenizer, parse_spec};
use duet_model::{ClipConfig, ClipModel, l2_normalize};
use npyz::WriterBuilder;
use serde::{Deserialize, Serialize};

/// The element type of the written embeddings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum NpyDtype {
    /// float32 (`<f4`).
    F32,
    /// float16 (`<f2`), half the disk.
    F16,
}

/// What identifies a run's output directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Manifest {
    /// The `--model` argument.
    model: String,
    /// The `--data` spec.
    spec: String,
    dtype: NpyDtype,
    embed_dim: usize,
    /// The spec's shards, in order: output `i` belongs to `shards[i]`.
    shards: Vec<String>,
}

/// One row of `{i:05}.jsonl`.
#[derive(Debug, Serialize)]
struct Row<'a> {
    key: &'a str,
    caption: &'a str,
    width: u32,
    height: u32,
    index: u64,
}

/// `{i:05}.json`.
#[derive(Debug, Serialize)]
struct ShardReport<'a> {
    shard: &'a str,
    samples: usize,
    skipped: &'a SkipCounts,
}

/// How `duet embed --data` runs.
pub struct DataRun<'a> {
    pub model_arg: &'a Path,
    pub spec: &'a str,
    pub out: &'a Path,
    pub batch_size: usize,
    pub dtype: NpyDtype,
    pub device: &'a Device,
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("partial");
    let mut file =
        std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
}

fn npy(values: &[f32], rows: usize, dim: usize, dtype: NpyDtype) -> Result<Vec<u8>> {
    let mut out = std::io::Cursor::new(Vec::new());
    let shape = [rows as u64, dim as u64];
    match dtype {
        NpyDtype::F32 => {
            let mut writer = npyz::WriteOptions::<f32>::new()
                .default_dtype()
                .shape(&shape)
                .writer(&mut out)
                .begin_nd()?;
            writer.extend(values.iter().copied())?;
            writer.finish()?;
        }
        NpyDtype::F16 => {
            let mut writer = npyz::WriteOptions::<half::f16>::new()
                .default_dtype()
                .shape(&shape)
                .writer(&mut out)
                .begin_nd()?;
            writer.extend(values.iter().map(|v| half::f16::from_f32(*v)))?;
            writer.finish()?;
        }
    }
    Ok(out.into_inner())
}

fn values(t: Tensor<2>) -> Result<Vec<f32>> {
    t.into_data()
        .try_to_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("reading embeddings back: {e:?}"))
}

/// Reads `embed.json` if `out` has one, refusing another run's directory; writes it otherwise.
fn claim(out: &Path, manifest: &Manifest) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let path = out.join("embed.json");
    if path.is_file() {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let theirs: Manifest = serde_json::from_str(&text)
            .with_context(|| format!("{}: not an embed.json of duet", path.display()))?;
        ensure!(
            theirs == *manifest,
            "{} holds the embeddings of another run (model {}, spec {}, dtype {:?}, {} shards); \
             resume with the same arguments or choose another --out",
            out.display(),
            theirs.model,
            theirs.spec,
            theirs.dtype,
            theirs.shards.len()
        );
        return Ok(());
    }
    write_atomic(
        &path,
        format!("{}\n", serde_json::to_string_pretty(manifest)?).as_bytes(),
    )
}

/// Embeds shard `shard` (the `i`-th) into `out`.
fn embed_shard(
    run: &DataRun<'_>,
    model: &ClipModel,
    clip: &ClipConfig,
    tokenizer: &TextTokenizer,
    i: usize,
    shard: &str,
) -> Result<(usize, SkipCounts)> {
    let mut loader = duet_eval::eval_loader(
        shard,
        FieldSelector::default(),
        run.batch_size,
        clip,
        tokenizer.clone(),
    )?;
    let (mut images, mut texts) = (Vec::new(), Vec::new());
    let mut lines = Vec::new();
    let mut n = 0;
    let mut empty_skips = None;
    for batch in loader.by_ref() {
        let batch = match batch {
            Ok(batch) => batch,
            // A shard of only broken samples (or an unreachable one) is a shard of 0 rows with
            // its skips reported, as training goes past it; the spec's other shards go on.
            Err(DataError::NoSamples { skipped, .. }) => {
                empty_skips = Some(skipped);
                break;
            }
            Err(error) => return Err(error).with_context(|| format!("reading {shard}")),
        };
        images.extend(values(l2_normalize(
            model.encode_image(batch.images_tensor(run.device)),
        ))?);
        texts.extend(values(l2_normalize(
            model.encode_text(batch.tokens_tensor(run.device)),
        ))?);
        for j in 0..batch.len() {
            let row = Row {
                key: &batch.keys[j],
                caption: &batch.captions[j],
                width: batch.sizes[j][0],
                height: batch.sizes[j][1],
                index: batch.samples[j].index,
            };
            serde_json::to_writer(&mut lines, &row)?;
            lines.push(b'\n');
        }
        n += batch.len();
    }
    let skipped = empty_skips.unwrap_or_else(|| loader.skipped().clone());
    let dim = clip.embed_dim;
    let stem = run.out.join(format!("{i:05}"));
    let path = |suffix: &str| PathBuf::from(format!("{}.{suffix}", stem.display()));
    write_atomic(&path("images.npy"), &npy(&images, n, dim, run.dtype)?)?;
    write_atomic(&path("texts.npy"), &npy(&texts, n, dim, run.dtype)?)?;
    let report = ShardReport {
        shard,
        samples: n,
        skipped: &skipped,
    };
    write_atomic(
        &path("json"),
        format!("{}\n", serde_json::to_string(&report)?).as_bytes(),
    )?;
    // The commit point: a shard is finished when its .jsonl exists.
    write_atomic(&path("jsonl"), &lines)?;
    Ok((n, skipped))
}

/// Runs `duet embed --data` with a loaded model.
pub fn run(run: &DataRun<'_>, model: &ClipModel, clip: &ClipConfig) -> Result<()> {
    let spec = parse_spec(run.spec, None).with_context(|| format!("--data {}", run.spec))?;
    let shards: Vec<String> = spec.shards().map(str::to_owned).collect();
    if shards.is_empty() {
        bail!("--data {}: no shards", run.spec);
    }
    // A model that cannot tokenize is refused before any shard; the tokenizer (a Gemma
    // tokenizer.json is 34 MB) is parsed once for every shard.
    let tokenizer = duet_eval::text_tokenizer(clip)?;
    let manifest = Manifest {
        model: run.model_arg.display().to_string(),
        spec: run.spec.to_owned(),
        dtype: run.dtype,
        embed_dim: clip.embed_dim,
        shards: shards.clone(),
    };
    claim(run.out, &manifest)?;
    let (mut done, mut samples, mut skipped) = (0, 0, SkipCounts::default());
    for (i, shard) in shards.iter().enumerate() {
        if run.out.join(format!("{i:05}.jsonl")).is_file() {
            done += 1;
            continue;
        }
        let (n, skips) = embed_shard(run, model, clip, &tokenizer, i, shard)?;
        tracing::info!(shard = %shard, samples = n, skipped = skips.total(), "embedded");
        samples += n;
        skipped.merge(&skips);
    }
    tracing::info!(
        shards = shards.len(),
        already_done = done,
        samples,
        skipped = skipped.total(),
        out = %run.out.display(),
        "embedded the spec"
    );
    Ok(())
}
