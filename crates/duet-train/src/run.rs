//! A training run: the loader feeding the [`Stepper`], metrics to `metrics.jsonl`, checkpoints
//! every `checkpoint.every_steps` and at the end, and resuming from the newest good checkpoint.
//!
//! Run directory: `config.toml` (the resolved config), `metrics.jsonl` (one object per logged
//! step: [`MetricsRow`]s, and evaluation rows `{"step", "<set>/<metric>", …}`), `checkpoints/`
//! (see [`crate::checkpoint`]).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use burn::module::Module;
use burn::tensor::Device;
use duet_data::{
    ClipTokenizer, FieldSelector, ImageTransformConfig, Loader, LoaderConfig, LoaderSource,
    Normalize, TextField, TrainTransformConfig, parse_spec,
};
use duet_model::ClipConfig;
use serde::Serialize;

use crate::checkpoint::resolve_model_dir;
use crate::checkpoint::{self, CHECKPOINT_FORMAT_VERSION, TrainState, bad, io};
use crate::evaluate::{EvalResult, evaluate, metrics_row};
use crate::{Stepper, TrainConfig, TrainError, lock};

/// How a run starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// From a fresh, seeded initialisation; the run directory must not hold checkpoints.
    Fresh,
    /// From the newest good checkpoint in the run directory.
    Resume,
}

/// One `metrics.jsonl` row.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct MetricsRow {
    /// Steps completed (1-based: the row of the first step has `step = 1`).
    pub step: u64,
    /// The step's loss.
    pub loss: f64,
    /// The step's learning rate.
    pub lr: f64,
    /// `logit_scale` after the step.
    pub logit_scale: f64,
    /// Global gradient norm before clipping, when clipping is on.
    pub grad_norm: Option<f64>,
    /// Samples per second over the logging window (OpenCLIP's `samples_per_second`).
    pub samples_per_sec: f64,
    /// The same per data-parallel device (OpenCLIP's `samples_per_second_per_gpu`).
    #[serde(default)]
    pub samples_per_sec_per_device: f64,
}

/// What a run did.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSummary {
    /// The step the run started from (0 when fresh).
    pub started_at: u64,
    /// Steps completed at the end.
    pub steps: u64,
    /// Every step's loss, in order, from `started_at + 1`.
    pub losses: Vec<f64>,
    /// Problems with newer checkpoints that resuming skipped.
    pub skipped_checkpoints: Vec<String>,
    /// The last checkpoint written.
    pub last_checkpoint: Option<PathBuf>,
    /// Whether the run stopped early on [`Control::interrupt`] (after checkpointing).
    pub interrupted: bool,
    /// The last evaluation of the run (the end-of-run one when the run completed).
    pub eval: Vec<EvalResult>,
}

/// The loader settings a train config implies for `clip`'s input size and statistics, on
/// `devices` data-parallel devices.
pub fn loader_config(config: &TrainConfig, clip: &ClipConfig, devices: usize) -> LoaderConfig {
    let data = &config.data;
    let transform = ImageTransformConfig::Train(TrainTransformConfig {
        image_size: clip.vision.image_size as u32,
        normalize: Normalize {
            mean: clip.vision.image_mean,
            std: clip.vision.image_std,
        },
        ..TrainTransformConfig::default()
    });
    let mut loader = LoaderConfig {
        sampling: data.sampling,
        shuffle_buffer: data.shuffle_buffer,
        readers: data.readers,
        fields: FieldSelector {
            image: data.image_keys.clone(),
            text: TextField::Field {
                name: data.text_key.clone(),
            },
        },
        // A step takes `accum_freq` micro-batches of `batch_size` per device (OpenCLIP
        // `--accum-freq`, and `--batch-size` per GPU): the global batch.
        ..LoaderConfig::train(
            config.train.global_batch(devices),
            config.train.seed,
            transform,
        )
    };
    if data.decode_threads > 0 {
        loader.decode_threads = data.decode_threads;
    }
    loader
}

fn data_error(source: duet_data::DataError) -> TrainError {
    TrainError::Data { source }
}

/// A step's progress, for a progress display.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    /// Steps completed.
    pub done: u64,
    /// Steps in the run.
    pub total: u64,
    /// This step's loss.
    pub loss: f64,
    /// This step's learning rate.
    pub lr: f64,
    /// Samples per second over this step.
    pub samples_per_sec: f64,
}

/// Called after every step.
pub type ProgressFn = Arc<dyn Fn(&Progress) + Send + Sync>;

/// Ways to watch and end a run early.
#[derive(Clone, Default)]
pub struct Control {
    /// End before this step without a checkpoint, as a crash would (tests).
    pub stop_before: Option<u64>,
    /// Set (e.g. by a SIGINT/SIGTERM handler) to checkpoint after the current step and return.
    pub interrupt: Option<Arc<AtomicBool>>,
    /// Called after every step (a progress bar).
    pub progress: Option<ProgressFn>,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Control")
            .field("stop_before", &self.stop_before)
            .field("interrupt", &self.interrupt)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

/// Runs (or resumes) `config` in `run_dir` on `devices` (autodiff devices): data-parallel when
/// there are several (see [`crate::parallel`]), the model, optimizer and evaluation on the first.
pub fn run(
    config: &TrainConfig,
    run_dir: &Path,
    devices: &[Device],
    start: Start,
    control: &Control,
) -> Result<RunSummary, TrainError> {
    let Some(device) = devices.first() else {
        return Err(TrainError::invalid("devices", "no device given"));
    };
    let checkpoints = run_dir.join("checkpoints");
    let metrics_path = run_dir.join("metrics.jsonl");
    let clip;
    let mut stepper;
    let mut model;
    let cursor;
    let started_at;
    let mut skipped_checkpoints = Vec::new();
    match start {
        Start::Fresh => {
            if !checkpoint::list(&checkpoints)?.is_empty() {
                return Err(TrainError::invalid(
                    "run_dir",
                    format!(
                        "{} already holds checkpoints; resume it or choose another run directory",
                        run_dir.display()
                    ),
                ));
            }
            std::fs::create_dir_all(run_dir).map_err(|e| io(run_dir, e))?;
            let resolved = toml::to_string(config)
                .map_err(|e| bad(&run_dir.join("config.toml"), e.to_string()))?;
            std::fs::write(run_dir.join("config.toml"), resolved)
                .map_err(|e| io(&run_dir.join("config.toml"), e))?;
            std::fs::write(&metrics_path, "").map_err(|e| io(&metrics_path, e))?;
            clip = config.clip_config()?;
            model = match &config.model.from {
                Some(from) => pretrained(from, device)?,
                None => seeded_init(&clip, device, config.train.seed)?,
            };
            model = lock::apply(model, &config.lock);
            stepper = Stepper::new(
                config.loss,
                &config.optimizer,
                config.train.on_nonfinite,
                &model,
            );
            cursor = None;
            started_at = 0;
        }
        Start::Resume => {
            let (restored, skipped) = checkpoint::load_latest(&checkpoints, device)?;
            skipped_checkpoints = skipped;
            clip = restored.clip;
            config.validate_lock(&clip)?;
            model = lock::apply(restored.model, &config.lock);
            stepper = Stepper::new(
                config.loss,
                &config.optimizer,
                config.train.on_nonfinite,
                &model,
            );
            let optimizer = stepper.optimizer().clone().load_record(restored.optimizer);
            stepper.set_optimizer(optimizer);
            started_at = restored.state.step;
            if restored.state.devices != devices.len() {
                tracing::warn!(
                    "this run trained on {} device(s) and resumes on {}: the global batch \
                     changes from {} to {}",
                    restored.state.devices,
                    devices.len(),
                    config.train.global_batch(restored.state.devices),
                    config.train.global_batch(devices.len()),
                );
            }
            cursor = Some(restored.state.cursor);
            truncate_metrics(&metrics_path, started_at)?;
        }
    }

    let spec =
        parse_spec(&config.data.train, config.data.upsampling.as_deref()).map_err(data_error)?;
    let source = LoaderSource::from_spec(&spec).map_err(data_error)?;
    let tokenizer = ClipTokenizer::for_context(clip.text.context_length).map_err(data_error)?;
    let mut stepper = stepper.with_devices(devices);
    let mut loader = Loader::start(
        &loader_config(config, &clip, devices.len()),
        source,
        tokenizer,
        cursor.as_ref(),
    )
    .map_err(data_error)?;

    let total = config.train.steps;
    let mut losses = Vec::new();
    let mut last_checkpoint = None;
    let mut window = (Instant::now(), 0usize);
    let mut stopped_early = false;
    let mut eval = Vec::new();
    for step in started_at..total {
        if control.stop_before == Some(step) {
            break;
        }
        let batch = loader
            .next()
            .ok_or_else(|| TrainError::invalid("data.train", "the loader ended early"))?
            .map_err(data_error)?;
        let images = batch.images_tensor(device);
        let tokens = batch.tokens_tensor(device);
        let samples = batch.len();
        let batch_cursor = batch.cursor;
        loader.recycle(batch.images);
        let lr = config.schedule.lr(config.optimizer.lr, step, total);
        let step_started = Instant::now();
        let (next, report) =
            stepper.step(model, images, tokens, config.train.accum_freq, lr, step)?;
        if let Some(progress) = &control.progress {
            progress(&Progress {
                done: step + 1,
                total,
                loss: report.loss,
                lr,
                samples_per_sec: samples as f64 / step_started.elapsed().as_secs_f64().max(1e-9),
            });
        }
        model = next;
        losses.push(report.loss);
        window.1 += samples;
        let done = step + 1;
        if done % config.log.every_steps == 0 || done == total {
            let seconds = window.0.elapsed().as_secs_f64().max(1e-9);
            append_metrics(
                &metrics_path,
                &MetricsRow {
                    step: done,
                    loss: report.loss,
                    lr,
                    logit_scale: report.logit_scale,
                    grad_norm: report.grad_norm,
                    samples_per_sec: window.1 as f64 / seconds,
                    samples_per_sec_per_device: window.1 as f64 / seconds / devices.len() as f64,
                },
            )?;
            window = (Instant::now(), 0);
        }
        let interrupted = control
            .interrupt
            .as_ref()
            .is_some_and(|flag| flag.load(Ordering::SeqCst));
        // Before the checkpoint of the same step, so a run resumed from that checkpoint has the
        // row; not on an interrupt (preemption wants a quick exit).
        let every = config.eval.every_steps;
        if !interrupted && (done == total || (every > 0 && done % every == 0)) {
            eval = evaluate(&model, &clip, config, device)?;
            if !eval.is_empty() {
                append_metrics(&metrics_path, &metrics_row(done, &eval))?;
                window = (Instant::now(), 0);
            }
        }
        if done % config.checkpoint.every_steps == 0 || done == total || interrupted {
            let state = TrainState {
                format_version: CHECKPOINT_FORMAT_VERSION,
                step: done,
                cursor: batch_cursor,
                config: config.clone(),
                devices: devices.len(),
            };
            last_checkpoint = Some(checkpoint::save(
                &checkpoints,
                &model,
                &clip,
                stepper.optimizer(),
                &state,
                config.checkpoint.keep_last,
            )?);
        }
        if interrupted {
            stopped_early = true;
            break;
        }
    }
    Ok(RunSummary {
        started_at,
        steps: started_at + losses.len() as u64,
        losses,
        skipped_checkpoints,
        last_checkpoint,
        interrupted: stopped_early,
        eval,
    })
}

/// burn's seed is process-wide on the CPU backend: two runs initialising at once (tests, or a
/// library user) would interleave their draws. Seeding and initialising under one lock keeps a
/// seeded init reproducible.
static INIT: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn seeded_init(
    clip: &ClipConfig,
    device: &Device,
    seed: u64,
) -> Result<duet_model::ClipModel, TrainError> {
    let _guard = INIT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    device.seed(seed);
    let model = clip.init(device).map_err(|source| TrainError::Model {
        key: "model.config".into(),
        source,
    })?;
    // burn initialises parameters lazily, at first use: draw them all now, under the lock.
    materialize(&model);
    Ok(model)
}

/// Draws every parameter of `model` that burn has not initialised yet, in module order (a
/// no-op for one already drawn).
pub(crate) fn materialize(model: &duet_model::ClipModel) {
    model.visit(&mut Materialize);
}

/// The pretrained model at `from` (a model directory, checkpoint or run directory).
fn pretrained(from: &Path, device: &Device) -> Result<duet_model::ClipModel, TrainError> {
    let dir = resolve_model_dir(from)?;
    let loaded = duet_model::load_model(&dir, device).map_err(|source| TrainError::Model {
        key: "model.from".into(),
        source,
    })?;
    tracing::info!(from = %dir.display(), format = ?loaded.format, "loaded pretrained weights");
    Ok(loaded.model)
}

struct Materialize;

impl burn::module::ModuleVisitor for Materialize {
    fn visit_float<const D: usize>(
        &mut self,
        param: &burn::module::Param<burn::tensor::Tensor<D>>,
    ) {
        drop(param.val());
    }
}

fn append_metrics(path: &Path, row: &impl Serialize) -> Result<(), TrainError> {
    let line = serde_json::to_string(row).map_err(|e| bad(path, e.to_string()))?;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| io(path, e))?;
    writeln!(file, "{line}").map_err(|e| io(path, e))
}

/// Drops the rows a crashed run logged after the checkpoint it resumes from.
fn truncate_metrics(path: &Path, step: u64) -> Result<(), TrainError> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(());
    };
    let kept: String = text
        .lines()
        .filter(|line| {
            serde_json::from_str::<serde_json::Value>(line)
                .is_ok_and(|row| row["step"].as_u64().is_some_and(|s| s <= step))
        })
        .map(|line| format!("{line}\n"))
        .collect();
    std::fs::write(path, kept).map_err(|e| io(path, e))
}
