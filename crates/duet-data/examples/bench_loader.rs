//! Loader throughput: samples/s to ready training batches (decode + RandomResizedCrop +
//! normalise + tokenize + batch) from webdataset shards, and the peak RSS.
//!
//! `cargo run --release -p duet-data --example bench_loader -- --spec 'DIR/{00000..00002}.tar'
//!  --threads 1` prints one JSON line; `scripts/bench/loader.sh` runs it next to the
//! webdataset + PIL + PyTorch DataLoader reference (`scripts/bench/loader_python.py`).

use std::sync::Arc;
use std::time::Instant;

use duet_data::{
    AutoReader, ImageTransformConfig, Loader, LoaderConfig, LoaderSource, LocalStore,
    TextTokenizer, TokenizerConfig, TrainTransformConfig, WeightedShard, parse_spec,
};

struct Args {
    spec: String,
    threads: usize,
    batch_size: usize,
    image_size: u32,
    epochs: u64,
    warmup_batches: usize,
    shuffle: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        spec: String::new(),
        threads: 1,
        batch_size: 256,
        image_size: 224,
        epochs: 1,
        warmup_batches: 2,
        shuffle: 1000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let number = || value.parse::<usize>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--spec" => args.spec = value.clone(),
            "--threads" => args.threads = number()?,
            "--batch-size" => args.batch_size = number()?,
            "--image-size" => args.image_size = number()? as u32,
            "--epochs" => args.epochs = number()? as u64,
            "--warmup-batches" => args.warmup_batches = number()?,
            "--shuffle" => args.shuffle = number()?,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if args.spec.is_empty() {
        return Err("--spec is required".into());
    }
    Ok(args)
}

/// Peak resident set size of this process in MiB (Linux `VmHWM`).
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    let spec = parse_spec(&args.spec, None)?;
    let source = LoaderSource {
        shards: WeightedShard::from_spec(&spec),
        format: Arc::new(AutoReader::for_urls(spec.shards())?),
        store: Arc::new(LocalStore),
    };
    let transform = ImageTransformConfig::Train(TrainTransformConfig {
        image_size: args.image_size,
        ..TrainTransformConfig::default()
    });
    let config = LoaderConfig {
        decode_threads: args.threads,
        readers: 1,
        shuffle_buffer: args.shuffle,
        epochs: Some(args.epochs),
        ..LoaderConfig::train(args.batch_size, 0, transform)
    };
    let tokenizer = TextTokenizer::bundled(TokenizerConfig::default())?;
    let mut samples = 0usize;
    let mut started = Instant::now();
    let mut loader = Loader::start(&config, source, tokenizer, None)?;
    let mut i = 0;
    while let Some(batch) = loader.next() {
        let batch = batch?;
        if i + 1 == args.warmup_batches {
            started = Instant::now();
        } else if i >= args.warmup_batches {
            samples += batch.len();
        }
        i += 1;
        // As a trainer does once the batch is on the device.
        loader.recycle(batch.images);
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "impl": "duet",
            "threads": args.threads,
            "samples": samples,
            "seconds": seconds,
            "samples_per_sec": samples as f64 / seconds,
            "peak_rss_mib": peak_rss_mib(),
        })
    );
    Ok(())
}
