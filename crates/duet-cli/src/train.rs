//! `duet pretrain`, `duet finetune` and `duet resume`: a run directory from a train config (from
//! scratch or from pretrained weights), and its continuation.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use duet_eval::RetrievalMetrics;
use duet_train::{Control, EvalMetrics, Progress, ProgressFn, RunSummary, Start, TrainConfig, run};
use indicatif::{ProgressBar, ProgressStyle};

use crate::backend::DeviceArgs;
use crate::job::Job;

/// Arguments of `duet pretrain`.
#[derive(Debug, Args)]
pub struct PretrainArgs {
    /// The train config (TOML), e.g. `configs/tiny.toml`.
    #[arg(long)]
    config: PathBuf,
    /// Override a config value: `--set train.steps=100` (repeatable).
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
    overrides: Vec<String>,
    /// The run directory; `runs/<config name>` by default.
    #[arg(long)]
    run_dir: Option<PathBuf>,
    /// Compute type (`train.precision`): f32, bf16 or f16 (OpenCLIP's fp32, amp_bf16, amp).
    #[arg(long, value_parser = crate::model_arg::parse_precision)]
    precision: Option<duet_model::Precision>,
    #[command(flatten)]
    devices: DeviceArgs,
}

/// Arguments of `duet finetune`.
#[derive(Debug, Args)]
pub struct FinetuneArgs {
    /// The train config (TOML); its `model.config`, if any, is replaced by `--from`.
    #[arg(long)]
    config: PathBuf,
    /// Pretrained weights: a Hugging Face, OpenCLIP or duet model directory, a duet checkpoint,
    /// or a run directory (its latest checkpoint).
    #[arg(long)]
    from: PathBuf,
    /// Lock the image tower (LiT); `lock.image = true`.
    #[arg(long)]
    lock_image: bool,
    /// With `--lock-image`: leave the last N groups trainable (1 = the projection, 2 = also the
    /// last block and final norm, …, as OpenCLIP counts them).
    #[arg(long, value_name = "N")]
    lock_image_unlocked_groups: Option<usize>,
    /// Lock the text tower; `lock.text = true`.
    #[arg(long)]
    lock_text: bool,
    /// With `--lock-text`: leave the last N groups trainable (counted as for the image tower).
    #[arg(long, value_name = "N")]
    lock_text_unlocked_layers: Option<usize>,
    /// Override a config value: `--set optimizer.lr=3e-5` (repeatable). Without one, and
    /// without `optimizer.lr` in the file, fine-tuning uses lr 1e-5.
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
    overrides: Vec<String>,
    /// The run directory; `runs/<config name>-finetune` by default.
    #[arg(long)]
    run_dir: Option<PathBuf>,
    /// Compute type (`train.precision`): f32, bf16 or f16 (OpenCLIP's fp32, amp_bf16, amp).
    #[arg(long, value_parser = crate::model_arg::parse_precision)]
    precision: Option<duet_model::Precision>,
    #[command(flatten)]
    devices: DeviceArgs,
}

/// Arguments of `duet resume`.
#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// A run directory made by `duet pretrain`.
    run_dir: PathBuf,
    /// Override a value of the run's config: on another process or device count,
    /// `--set train.accum_freq=2` keeps the global batch (and so the exact continuation).
    /// Written back to the run's config.toml.
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
    overrides: Vec<String>,
    #[command(flatten)]
    devices: DeviceArgs,
}

/// `duet pretrain`.
pub fn pretrain(args: &PretrainArgs) -> Result<()> {
    let overrides = with_precision(&args.overrides, args.precision);
    let config = TrainConfig::load(&args.config, &overrides)?;
    let run_dir = args
        .run_dir
        .clone()
        .unwrap_or_else(|| default_run_dir(&args.config, ""));
    start(&config, &run_dir, &args.devices)
}

/// `duet finetune`: the lock flags become `lock.*` overrides, checked like the file.
pub fn finetune(args: &FinetuneArgs) -> Result<()> {
    let mut overrides = with_precision(&args.overrides, args.precision);
    if args.lock_image {
        overrides.push("lock.image=true".into());
    }
    if let Some(n) = args.lock_image_unlocked_groups {
        overrides.push(format!("lock.image_unlocked_groups={n}"));
    }
    if args.lock_text {
        overrides.push("lock.text=true".into());
    }
    if let Some(n) = args.lock_text_unlocked_layers {
        overrides.push(format!("lock.text_unlocked_layers={n}"));
    }
    let config = TrainConfig::load_finetune(&args.config, &args.from, &overrides)?;
    let run_dir = args
        .run_dir
        .clone()
        .unwrap_or_else(|| default_run_dir(&args.config, "-finetune"));
    start(&config, &run_dir, &args.devices)
}

/// `overrides` and, last (so it wins), `train.precision` from `--precision`.
fn with_precision(overrides: &[String], precision: Option<duet_model::Precision>) -> Vec<String> {
    let mut all = overrides.to_vec();
    if let Some(precision) = precision {
        all.push(format!("train.precision=\"{precision}\""));
    }
    all
}

/// `runs/<config stem><suffix>`.
fn default_run_dir(config: &Path, suffix: &str) -> PathBuf {
    let stem = config
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "run".into());
    Path::new("runs").join(format!("{stem}{suffix}"))
}

fn start(config: &TrainConfig, run_dir: &Path, devices: &DeviceArgs) -> Result<()> {
    let job = Job::from_env()?;
    job.run(|| start_in(&job, config, run_dir, devices))
}

fn start_in(job: &Job, config: &TrainConfig, run_dir: &Path, devices: &DeviceArgs) -> Result<()> {
    let devices = devices.resolve_for(job.local_rank())?;
    let model = match (&config.model.from, &config.model.config) {
        (Some(from), _) => format!("from {}", from.display()),
        (None, Some(name)) => name.clone(),
        (None, None) => "?".into(),
    };
    let processes = job.comm().world();
    if job.is_root() {
        tracing::info!(
            "training {model} for {} steps of {} ({} per device × {} device(s) × {} accumulated \
             × {processes} process(es)) in {}",
            config.train.steps,
            config.train.global_batch(devices.len() * processes),
            config.train.batch_size,
            devices.len(),
            config.train.accum_freq,
            run_dir.display()
        );
    }
    let summary = run(
        config,
        run_dir,
        &devices,
        Start::Fresh,
        &control(job, &devices)?,
        job.comm(),
    )
    .with_context(|| format!("run {}", run_dir.display()))?;
    if job.is_root() {
        report(&summary, run_dir);
    }
    Ok(())
}

/// `duet resume`.
pub fn resume(args: &ResumeArgs) -> Result<()> {
    let config_path = args.run_dir.join("config.toml");
    if !config_path.is_file() {
        bail!(
            "{} is not a duet run directory (no config.toml)",
            args.run_dir.display()
        );
    }
    let config = TrainConfig::load_run(&config_path, &args.overrides)?;
    let job = Job::from_env()?;
    job.run(|| {
        let devices = args.devices.resolve_for(job.local_rank())?;
        let summary = run(
            &config,
            &args.run_dir,
            &devices,
            Start::Resume,
            &control(&job, &devices)?,
            job.comm(),
        )
        .with_context(|| format!("resume {}", args.run_dir.display()))?;
        if job.is_root() {
            for problem in &summary.skipped_checkpoints {
                tracing::warn!("skipped a checkpoint: {problem}");
            }
            tracing::info!("resumed from step {}", summary.started_at);
            report(&summary, &args.run_dir);
        }
        Ok(())
    })
}

/// SIGINT (Ctrl-C) and SIGTERM (preemption) finish the current step, checkpoint, and exit
/// cleanly; `duet resume` continues from there. In a job of several processes a signal to any
/// rank stops every rank after the same step; rank 0 alone draws the progress bar.
fn control(job: &Job, devices: &[burn::tensor::Device]) -> Result<Control> {
    let flag = Arc::new(AtomicBool::new(false));
    let handler_flag = flag.clone();
    ctrlc::set_handler(move || {
        handler_flag.store(true, Ordering::SeqCst);
        eprintln!("duet: stopping after this step, saving a checkpoint");
    })
    .context("installing the SIGINT/SIGTERM handler")?;
    Ok(Control {
        stop_before: None,
        interrupt: Some(flag),
        progress: job.is_root().then(progress_bar),
        memory_budget: crate::backend::memory_budget(devices, job.local_size()),
    })
}

/// An `indicatif` bar on stderr: step/total, loss, lr, samples/s, ETA. Hidden when stderr is
/// not a terminal (logs, CI).
fn progress_bar() -> ProgressFn {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} steps  {msg}  eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    Arc::new(move |p: &Progress| {
        bar.set_length(p.total);
        bar.set_position(p.done);
        bar.set_message(format!(
            "loss {:.4}  lr {:.2e}  {:.0} samples/s",
            p.loss, p.lr, p.samples_per_sec
        ));
        if p.done == p.total {
            bar.finish();
        }
    })
}

fn print_retrieval(set: &str, m: &RetrievalMetrics, skipped: u64) {
    println!(
        "held-out retrieval on {set} ({} pairs{}):",
        m.pairs,
        if skipped > 0 {
            format!(", {skipped} samples skipped")
        } else {
            String::new()
        }
    );
    println!(
        "  image->text R@1 {:5.1}%  R@5 {:5.1}%  R@10 {:5.1}%  median rank {}",
        m.i2t_r1, m.i2t_r5, m.i2t_r10, m.i2t_median_rank
    );
    println!(
        "  text->image R@1 {:5.1}%  R@5 {:5.1}%  R@10 {:5.1}%  median rank {}",
        m.t2i_r1, m.t2i_r5, m.t2i_r10, m.t2i_median_rank
    );
    println!(
        "  chance      R@1 {:5.1}%  R@5 {:5.1}%  R@10 {:5.1}%  median rank {}",
        m.chance_recall(1),
        m.chance_recall(5),
        m.chance_recall(10),
        m.pairs.div_ceil(2)
    );
}

fn report(summary: &RunSummary, run_dir: &Path) {
    if summary.interrupted {
        println!(
            "interrupted at step {}; continue with `duet resume {}`",
            summary.steps,
            run_dir.display()
        );
        return;
    }
    let first = summary.losses.first().copied().unwrap_or(f64::NAN);
    let last = summary.losses.last().copied().unwrap_or(f64::NAN);
    println!(
        "trained steps {}..={}: loss {first:.4} -> {last:.4}",
        summary.started_at + 1,
        summary.steps
    );
    if summary.data_skipped.total() > 0 {
        println!(
            "training data: {} samples skipped or filtered ({})",
            summary.data_skipped.total(),
            summary.data_skipped
        );
    }
    for result in &summary.eval {
        match &result.metrics {
            EvalMetrics::Retrieval(m) => print_retrieval(&result.set, m, result.skipped),
            EvalMetrics::ZeroShot(m) => println!(
                "zero-shot on {} ({} images, {} classes): top-1 {:.1}%  top-5 {:.1}%  \
                 (chance top-1 {:.1}%)",
                result.set,
                m.count,
                m.per_class.len(),
                m.top1,
                m.top5,
                100.0 / m.per_class.len().max(1) as f64
            ),
        }
    }
    println!("run directory {}:", run_dir.display());
    println!("  metrics.jsonl   every logged step");
    match crate::plots::plot_run(run_dir) {
        Ok(files) if !files.is_empty() => println!(
            "  plots/          {}",
            files
                .iter()
                .filter_map(|f| f.file_name())
                .map(|n| n.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Ok(_) => {}
        // The run itself succeeded; a chart failure must not turn it into an error.
        Err(error) => tracing::warn!("plots not written: {error:#}"),
    }
    println!(
        "  checkpoints/    {}",
        summary
            .last_checkpoint
            .as_ref()
            .and_then(|c| c.file_name())
            .map_or_else(|| "-".into(), |n| format!("latest {}", n.to_string_lossy()))
    );
}
