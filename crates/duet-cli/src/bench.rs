//! `duet bench step`: the time of one training step on a fixed synthetic batch, so that neither
//! the loader nor the disk counts; `scripts/bench/step_time.sh` runs it next to PyTorch.
//! `duet bench loss`: the peak memory of one rank's contrastive loss, global or memory-linear;
//! `scripts/bench/loss_memory.sh` runs the two side by side.

use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
use clap::{Args, Subcommand};
use duet_dist::Solo;
use duet_loss::Loss;
use duet_model::config_from_name_or_path;
use duet_train::{NonFinite, OptimizerConfig, Stepper};

use crate::backend::DeviceArgs;

/// `duet bench …`.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Time training steps (forward, InfoNCE, backward, global-norm clip, AdamW) on a fixed
    /// random batch, with the process's peak RSS (on a GPU backend, host memory only).
    Step(StepArgs),
    /// Peak memory (RSS) and time of one rank's contrastive loss, forward and backward, on
    /// random features: the global `[B, B]` logits, or with `--local-loss` the rank's `B /
    /// world` rows against all `B` columns (`train.local_loss`).
    Loss(LossArgs),
}

/// Arguments of `duet bench loss`.
#[derive(Debug, Args)]
pub struct LossArgs {
    /// Pairs in the global batch, `B`.
    #[arg(long)]
    global_batch: usize,
    /// Ranks sharing it; with `--local-loss` this rank scores `B / world` rows.
    #[arg(long, default_value_t = 8)]
    world: usize,
    /// Width of the features.
    #[arg(long, default_value_t = 512)]
    embed_dim: usize,
    /// The memory-linear loss (each rank's rows against every column).
    #[arg(long)]
    local_loss: bool,
    /// SigLIP's sigmoid loss instead of InfoNCE.
    #[arg(long)]
    sigmoid: bool,
    /// Print one JSON object instead of a line.
    #[arg(long)]
    json: bool,
}

/// Arguments of `duet bench step`.
#[derive(Debug, Args)]
pub struct StepArgs {
    /// A preset (`tiny`, `ViT-B-32`, …) or an OpenCLIP / HF model config file.
    #[arg(long, default_value = "tiny")]
    model: String,
    /// Image size, when not the model's own.
    #[arg(long)]
    image_size: Option<usize>,
    /// Samples per step (per device).
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Untimed steps first (allocation, kernel selection, caches).
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// Timed steps.
    #[arg(long, default_value_t = 20)]
    steps: usize,
    /// Tokens per caption, start and end included.
    #[arg(long, default_value_t = 16)]
    caption_tokens: usize,
    /// Activation checkpointing (`train.grad_checkpointing`).
    #[arg(long)]
    grad_checkpointing: bool,
    /// Patch dropout (`train.patch_dropout`): the fraction of each image's patches dropped.
    #[arg(long, default_value_t = 0.0)]
    patch_dropout: f64,
    /// Compute type (`train.precision`): f32, bf16 or f16 (f16 with the dynamic loss scale).
    #[arg(long, default_value = "f32", value_parser = crate::model_arg::parse_precision)]
    precision: duet_model::Precision,
    #[command(flatten)]
    devices: DeviceArgs,
    /// Print one JSON object instead of a line.
    #[arg(long)]
    json: bool,
}

/// `duet bench …`.
pub fn run(command: BenchCommand) -> Result<()> {
    match command {
        BenchCommand::Step(args) => step(&args),
        BenchCommand::Loss(args) => loss_memory(&args),
    }
}

fn step(args: &StepArgs) -> Result<()> {
    if args.steps == 0 || args.batch_size == 0 {
        bail!("--steps and --batch-size must be at least 1");
    }
    if !(0.0..1.0).contains(&args.patch_dropout) {
        bail!(
            "--patch-dropout must be in [0, 1), got {}",
            args.patch_dropout
        );
    }
    let mut clip =
        config_from_name_or_path(&args.model).with_context(|| format!("model {}", args.model))?;
    if let Some(size) = args.image_size {
        clip.vision.image_size = size;
    }
    clip.validate().context("--image-size")?;
    let devices = args.devices.resolve()?;
    let device = devices.first().context("no device")?;
    device.seed(0);
    if let Err(why) = args.precision.check_on(&devices) {
        bail!("--precision {}: {why}", args.precision);
    }
    let mut model = clip
        .init(device)
        .context("model")?
        .with_precision(args.precision);
    let params = model.num_params();
    // The OpenCLIP training defaults, plus the global-norm clip of configs/tiny.toml.
    let optimizer = OptimizerConfig {
        grad_clip_norm: Some(1.0),
        ..OptimizerConfig::default()
    };
    let mut stepper = Stepper::new(Loss::info_nce(), &optimizer, NonFinite::Stop, &model)
        .with_devices(&devices)
        .with_grad_checkpointing(args.grad_checkpointing)
        .with_loss_scale(Stepper::scaler_for(
            args.precision,
            duet_train::LossScale::INIT_SCALE,
            duet_train::LossScale::GROWTH_INTERVAL,
        ))
        .with_patch_dropout(Some(duet_train::PatchDropout {
            prob: args.patch_dropout,
            seed: 0,
        }));
    let batch = args.batch_size * devices.len();
    let size = clip.vision.image_size;
    let images = Tensor::<4>::random(
        [batch, 3, size, size],
        Distribution::Normal(0.0, 1.0),
        device,
    );
    let tokens = synthetic_tokens(batch, clip.text.context_length, args.caption_tokens, device)?;

    let mut times = Vec::with_capacity(args.steps);
    let mut loss = f64::NAN;
    // GPU backends report what their allocator reserves (it keeps pages for reuse, so the
    // largest after any step is the step's peak as the pool saw it); flex reports nothing.
    let mut device_reserved: Option<u64> = None;
    for i in 0..args.warmup + args.steps {
        let started = Instant::now();
        // The step reads the loss and `logit_scale` back, so the device has finished it here.
        let (next, report) = stepper.step(
            model,
            images.clone(),
            tokens.clone(),
            1,
            1e-4,
            i as u64,
            &Solo,
        )?;
        model = next;
        loss = report.loss;
        for d in &devices {
            if let Some(usage) = d.memory_pool_usage() {
                let held = device_reserved.unwrap_or(0);
                device_reserved = Some(held.max(usage.bytes_reserved));
            }
        }
        if i >= args.warmup {
            times.push(started.elapsed().as_secs_f64());
        }
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "model": args.model, "image_size": size, "batch_size": batch,
                "grad_checkpointing": args.grad_checkpointing,
                "precision": args.precision.name(), "patch_dropout": args.patch_dropout,
                "devices": devices.len(), "steps": args.steps, "params": params,
                "median_ms": median * 1e3, "mean_ms": mean * 1e3,
                "samples_per_sec": batch as f64 / median, "last_loss": loss,
                "peak_rss_mib": peak_rss_bytes()? as f64 / (1024.0 * 1024.0),
                "device_reserved_mib": device_reserved.map(|b| b as f64 / (1024.0 * 1024.0)),
            })
        );
    } else {
        println!(
            "{} @ {size} px in {}{}{}, batch {batch} on {} device(s), {params} parameters: \
             median {:.1} ms per step (mean {:.1}), {:.1} samples/s over {} steps, peak RSS \
             {:.0} MiB",
            args.model,
            args.precision,
            if args.patch_dropout > 0.0 {
                format!(" with patch dropout {}", args.patch_dropout)
            } else {
                String::new()
            },
            if args.grad_checkpointing {
                ", activations checkpointed"
            } else {
                ""
            },
            devices.len(),
            median * 1e3,
            mean * 1e3,
            batch as f64 / median,
            args.steps,
            peak_rss_bytes()? as f64 / (1024.0 * 1024.0)
        );
        if let Some(bytes) = device_reserved {
            println!(
                "device memory reserved by burn's pool (largest after a step, over every \
                 device): {:.0} MiB",
                bytes as f64 / (1024.0 * 1024.0)
            );
        }
    }
    Ok(())
}

fn loss_memory(args: &LossArgs) -> Result<()> {
    let (b, world, e) = (args.global_batch, args.world, args.embed_dim);
    if b == 0 || world == 0 || b % world != 0 {
        bail!("--global-batch {b} must split into --world {world} equal parts");
    }
    let device = Device::flex().autodiff();
    let loss = if args.sigmoid {
        Loss::sigmoid()
    } else {
        Loss::info_nce()
    };
    let image = Tensor::<2>::random([b, e], Distribution::Normal(0.0, 1.0), &device);
    let text = Tensor::<2>::random([b, e], Distribution::Normal(0.0, 1.0), &device);
    let scale = Tensor::<1>::from_data([loss.init_logit_scale() as f32], &device).require_grad();
    let bias = loss
        .init_logit_bias()
        .map(|v| Tensor::<1>::from_data([v as f32], &device).require_grad());
    // The features exist before the loss: only what the loss adds is measured.
    let (image, text) = (image.require_grad(), text.require_grad());
    let before = peak_rss_bytes()?;
    let started = Instant::now();
    let rows = if args.local_loss { b / world } else { b };
    let batch = if args.local_loss {
        duet_loss::ContrastiveBatch::new(
            image.clone().narrow(0, 0, rows),
            text.clone().narrow(0, 0, rows),
        )
        .with_gathered(duet_loss::Gathered {
            image: image.clone(),
            text: text.clone(),
            rank: 0,
        })
    } else {
        duet_loss::ContrastiveBatch::new(image.clone(), text.clone())
    };
    let value = loss.compute(batch, scale, bias)?;
    let grads = value.clone().backward();
    drop((image.grad(&grads), text.grad(&grads)));
    let seconds = started.elapsed().as_secs_f64();
    let peak = peak_rss_bytes()?.saturating_sub(before);
    let logits = (rows * b * std::mem::size_of::<f32>()) as f64;
    let mib = |x: f64| x / (1024.0 * 1024.0);
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "global_batch": b, "world": world, "embed_dim": e, "local_loss": args.local_loss,
                "sigmoid": args.sigmoid, "logits_rows": rows, "logits_mib": mib(logits),
                "peak_added_mib": mib(peak as f64), "seconds": seconds,
                "loss": value.into_scalar::<f32>(),
            })
        );
    } else {
        println!(
            "{} loss, B = {b}, {rows} × {b} logits ({:.1} MiB): peak RSS +{:.1} MiB, {:.2} s",
            if args.local_loss { "local" } else { "global" },
            mib(logits),
            mib(peak as f64),
            seconds
        );
    }
    Ok(())
}

/// This process's peak resident memory so far (Linux `VmHWM`).
fn peak_rss_bytes() -> Result<u64> {
    crate::backend::proc_bytes("/proc/self/status", "VmHWM")
        .context("no readable VmHWM in /proc/self/status")
}

/// `batch` rows of `<start> w… <end>` padded with 0 to `context`, `len` tokens each, the
/// words drawn deterministically from the vocabulary below the special tokens.
fn synthetic_tokens(
    batch: usize,
    context: usize,
    len: usize,
    device: &Device,
) -> Result<Tensor<2, Int>> {
    const START: i64 = 49406;
    const END: i64 = 49407;
    if !(2..=context).contains(&len) {
        bail!("--caption-tokens must be between 2 and the context length {context}");
    }
    let mut ids = vec![0_i64; batch * context];
    for (row, out) in ids.chunks_mut(context).enumerate() {
        out[0] = START;
        for (j, id) in out[1..len - 1].iter_mut().enumerate() {
            *id = ((row * 7919 + j * 104_729) % 49_000) as i64 + 1;
        }
        out[len - 1] = END;
    }
    Ok(Tensor::from_data(
        TensorData::new(ids, [batch, context]),
        device,
    ))
}
