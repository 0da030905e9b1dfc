//! `duet shards build|inspect`: write img2dataset-compatible shards, and look at what a shard
//! spec holds through the same reading and decoding a training run does.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use duet_data::reader::{CsvColumns, ParquetColumns, ShardFormat};
use duet_data::write::{ImageBytes, Row, RowError, ShardWriter};
use duet_data::{
    DataError, DecodeConfig, EvalTransformConfig, FieldSelector, ImageTransformConfig, Loader,
    LoaderConfig, LoaderSource, LocalStore, PIL_MAX_IMAGE_PIXELS, ReadEvent, SampleCounts,
    SkipCounts, TextField, TextTokenizer, TokenizerConfig, decode_rgb8, image_extension,
    parse_spec,
};
use serde::Serialize;

/// `duet shards` subcommands.
#[derive(Debug, Subcommand)]
pub enum ShardsCommand {
    /// Write webdataset shards as img2dataset does (tar + parquet + _stats.json) from an image
    /// folder with .txt captions, a CSV/TSV of image paths and captions, or a parquet file.
    Build(BuildArgs),
    /// Read and decode every sample of a shard spec; print shards, good samples, example
    /// captions and skipped samples by reason.
    Inspect(InspectArgs),
}

/// Arguments of `duet shards build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The input: a folder (images + sidecar .txt), a .csv/.tsv, or a .parquet file.
    #[arg(long)]
    from: String,
    /// Output directory for `00000.tar`, `00000.parquet`, `00000_stats.json`, …
    #[arg(long)]
    out: PathBuf,
    /// Rows per shard (img2dataset's `number_sample_per_shard`).
    #[arg(long, default_value_t = 10_000)]
    samples_per_shard: u64,
    /// CSV/TSV: the image path column (OpenCLIP `--csv-img-key`).
    #[arg(long, default_value = "filepath")]
    csv_image_column: String,
    /// CSV/TSV: the caption column (OpenCLIP `--csv-caption-key`).
    #[arg(long, default_value = "title")]
    csv_caption_column: String,
    /// CSV/TSV: the separator; by default a tab for .tsv and a comma for .csv.
    #[arg(long)]
    csv_separator: Option<char>,
    /// Parquet: the image bytes column.
    #[arg(long, default_value = "image")]
    parquet_image_column: String,
    /// Parquet: the caption column.
    #[arg(long, default_value = "caption")]
    parquet_caption_column: String,
    /// Images with more pixels than this are failed rows.
    #[arg(long, default_value_t = PIL_MAX_IMAGE_PIXELS)]
    max_pixels: u64,
}

/// Arguments of `duet shards inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// A shard spec: `data/{00000..00099}.tar`, `a/*.tar::b/*.parquet`, `s3://…`, `pipe:…`.
    spec: String,
    /// Print one JSON object (`shards`, `samples`, `skipped`, `examples`, `hinted_samples`).
    #[arg(long)]
    json: bool,
    /// Image fields to try, first present wins (default: jpg, jpeg, png, webp, image).
    #[arg(long = "image-key", value_delimiter = ',')]
    image_keys: Vec<String>,
    /// The caption field (default: txt).
    #[arg(long, default_value = "txt")]
    text_key: String,
    /// Take the caption from this key of the `json` member instead of a text field.
    #[arg(long)]
    caption_json_key: Option<String>,
    /// Images with more pixels than this are skipped (decompression bombs).
    #[arg(long, default_value_t = PIL_MAX_IMAGE_PIXELS)]
    max_pixels: u64,
    /// Decode threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// How many example captions to show.
    #[arg(long, default_value_t = 3)]
    examples: usize,
}

/// Runs a `duet shards` subcommand.
pub fn run(command: ShardsCommand) -> Result<()> {
    match command {
        ShardsCommand::Build(args) => build(&args),
        ShardsCommand::Inspect(args) => inspect(&args),
    }
}

/// What `duet shards inspect --json` prints.
#[derive(Debug, Serialize)]
struct Report {
    spec: String,
    shards: usize,
    /// Good samples: read, decoded, tokenized.
    samples: u64,
    skipped: std::collections::BTreeMap<&'static str, u64>,
    /// Samples the `_stats.json`/`sizes.json` files announce, when every shard has one.
    hinted_samples: Option<u64>,
    examples: Vec<Example>,
}

#[derive(Debug, Serialize)]
struct Example {
    key: String,
    caption: String,
}

fn inspect(args: &InspectArgs) -> Result<()> {
    let spec = parse_spec(&args.spec, None)?;
    let source = LoaderSource::from_spec(&spec)?;
    let mut counts = SampleCounts::new();
    let mut hinted = Some(0u64);
    for url in spec.shards() {
        // A malformed count file only loses the announced total; the samples are still read.
        let hint = counts.hint(&*source.store, url).unwrap_or_else(|error| {
            tracing::warn!("ignoring the announced sample count: {error}");
            None
        });
        hinted = hinted.zip(hint).map(|(a, b)| a + b);
    }
    let text = match &args.caption_json_key {
        Some(key) => TextField::Json {
            field: "json".into(),
            key: key.clone(),
        },
        None => TextField::Field {
            name: args.text_key.clone(),
        },
    };
    let mut fields = FieldSelector {
        text,
        ..FieldSelector::default()
    };
    if !args.image_keys.is_empty() {
        fields.image = args.image_keys.clone();
    }
    // Decoding is what counts; a small eval transform keeps the rest cheap.
    let transform = ImageTransformConfig::Eval(EvalTransformConfig {
        image_size: 32,
        ..EvalTransformConfig::default()
    });
    let mut config = LoaderConfig {
        fields,
        decode: DecodeConfig {
            max_pixels: args.max_pixels,
        },
        readers: 2,
        ..LoaderConfig::single_pass(256, transform)
    };
    if let Some(threads) = args.threads {
        config.decode_threads = threads;
    }
    let tokenizer = TextTokenizer::bundled(TokenizerConfig::default())?;
    let mut loader = Loader::start(&config, source, tokenizer, None)?;
    let mut samples = 0u64;
    let mut examples = Vec::new();
    let mut no_data = None;
    for batch in loader.by_ref() {
        match batch {
            Ok(batch) => {
                samples += batch.len() as u64;
                for (key, caption) in batch.keys.iter().zip(&batch.captions) {
                    if examples.len() < args.examples {
                        examples.push(Example {
                            key: key.clone(),
                            caption: caption.clone(),
                        });
                    }
                }
            }
            Err(error @ DataError::NoSamples { .. }) => no_data = Some(error),
            Err(error) => return Err(error).context(format!("inspecting {}", args.spec)),
        }
    }
    let skipped: SkipCounts = loader.skipped();
    let report = Report {
        spec: args.spec.clone(),
        shards: spec.num_shards(),
        samples,
        skipped: skipped.iter().collect(),
        hinted_samples: hinted,
        examples,
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_report(&report);
    }
    if let Some(error) = no_data {
        return Err(error.into());
    }
    Ok(())
}

fn print_report(report: &Report) {
    println!("spec      {}", report.spec);
    println!("shards    {}", report.shards);
    match report.hinted_samples {
        Some(hint) => println!(
            "samples   {} good ({} announced by _stats.json/sizes.json)",
            report.samples, hint
        ),
        None => println!("samples   {} good", report.samples),
    }
    let total: u64 = report.skipped.values().sum();
    println!("skipped   {total}");
    for (reason, n) in &report.skipped {
        println!("  {reason:<22} {n}");
    }
    if !report.examples.is_empty() {
        println!("examples");
        for e in &report.examples {
            let caption: String = e.caption.chars().take(100).collect();
            println!("  {}  {caption:?}", e.key);
        }
    }
}

fn build(args: &BuildArgs) -> Result<()> {
    let detected = ShardFormat::detect(&args.from).with_context(|| {
        format!(
            "{}: cannot tell the input format; give a folder, .csv, .tsv or .parquet",
            args.from
        )
    })?;
    let format = match detected {
        ShardFormat::Csv(columns) => ShardFormat::Csv(CsvColumns {
            image: args.csv_image_column.clone(),
            caption: args.csv_caption_column.clone(),
            separator: args.csv_separator.unwrap_or(columns.separator),
        }),
        ShardFormat::Parquet(_) => ShardFormat::Parquet(ParquetColumns {
            image: args.parquet_image_column.clone(),
            caption: args.parquet_caption_column.clone(),
        }),
        ShardFormat::Tar => bail!("{}: already a tar shard", args.from),
        other => other,
    };
    let reader = format.reader()?;
    let fields = FieldSelector::default();
    let decode = DecodeConfig {
        max_pixels: args.max_pixels,
    };
    let mut writer = ShardWriter::new(&args.out, args.samples_per_shard, 0)?;
    let mut input_failure = None;
    for event in reader.read(&LocalStore, &args.from, 0) {
        let row = match event {
            ReadEvent::Sample(sample) => {
                let url = Some(format!("{}#{}", args.from, sample.key));
                match fields.select(&sample) {
                    Ok(selected) => Row {
                        url,
                        caption: Some(selected.caption),
                        image: check_image(selected.image, &sample.key, &decode),
                    },
                    Err(reason) => Row {
                        url,
                        caption: None,
                        image: Err(RowError {
                            status: "failed_to_download",
                            message: reason.to_string(),
                        }),
                    },
                }
            }
            ReadEvent::Skipped {
                reason,
                key,
                detail,
            } => Row {
                url: key.map(|k| format!("{}#{k}", args.from)),
                caption: None,
                image: Err(RowError {
                    status: "failed_to_download",
                    message: format!("{reason}: {detail}"),
                }),
            },
            ReadEvent::ShardFailed { detail, .. } => {
                input_failure = Some(detail);
                break;
            }
        };
        writer.add(row)?;
    }
    let stats = writer.finish()?;
    let successes: u64 = stats.iter().map(|s| s.successes).sum();
    let count: u64 = stats.iter().map(|s| s.count).sum();
    println!(
        "wrote {} shard(s) to {}: {successes} samples, {} failed rows",
        stats.len(),
        args.out.display(),
        count - successes
    );
    if let Some(detail) = input_failure {
        bail!("the input stopped early: {detail} (the rows before it are written)");
    }
    Ok(())
}

/// The image as img2dataset would keep it, or the failure it would record.
fn check_image(bytes: &[u8], key: &str, decode: &DecodeConfig) -> Result<ImageBytes, RowError> {
    let extension = image_extension(bytes).ok_or_else(|| RowError {
        status: "failed_to_resize",
        message: format!("{key}: not a JPEG, PNG or WebP image"),
    })?;
    let decoded = decode_rgb8(bytes, key, decode).map_err(|error| RowError {
        status: "failed_to_resize",
        message: error.to_string(),
    })?;
    Ok(ImageBytes {
        bytes: bytes.to_vec(),
        extension,
        width: decoded.width(),
        height: decoded.height(),
    })
}
