//! A training run, in four phases: start (the model, the optimizer and the data, fresh or from
//! the newest good checkpoint: [`crate::start`]), steps, after each step its log, evaluation
//! and checkpoint, and the finish.
//!
//! Run directory: `config.toml` (the resolved config), `metrics.jsonl` ([`crate::metrics`]),
//! `checkpoints/` (see [`crate::checkpoint`]). In a job of several processes every process runs
//! this loop on its own data slots, the steps' collectives keep them in lockstep, and rank 0
//! alone writes to the run directory and evaluates.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use burn::tensor::Device;
use duet_data::{
    ImageTransformConfig, LoaderConfig, LoaderCursor, LoaderSource, Normalize, SkipCounts,
    SlotLoader, TrainTransformConfig, parse_spec,
};
use duet_dist::{Collective, Metered};
use duet_model::{ClipConfig, ClipModel};

use crate::checkpoint::{self, CHECKPOINT_FORMAT_VERSION, TrainState};
use crate::evaluate::{EvalResult, evaluate, metrics_row};
use crate::metrics::{MetricsRow, append_metrics};
use crate::start::{Layout, Start, Started, agree};
use crate::sync::{comm_error, fingerprint};
use crate::{StepReport, Stepper, TrainConfig, TrainError};

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
    /// The last evaluation of the run (the end-of-run one when the run completed); rank 0 only.
    pub eval: Vec<EvalResult>,
    /// Training samples skipped so far in the run (broken, or dropped by `[data.filter]`), by
    /// reason, over this process's data slots.
    pub data_skipped: SkipCounts,
}

/// The loader settings of one data slot: `per_slot` samples a step, the train transform for
/// `clip`'s input size and statistics.
pub fn loader_config(config: &TrainConfig, clip: &ClipConfig, per_slot: usize) -> LoaderConfig {
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
        fields: data.fields(),
        filter: data.filter.clone(),
        ..LoaderConfig::train(per_slot, config.train.seed, transform)
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
    /// Samples per second over this step, over every process.
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
    /// In a job of several processes, one rank's flag stops every rank after the same step.
    pub interrupt: Option<Arc<AtomicBool>>,
    /// Called after every step (a progress bar).
    pub progress: Option<ProgressFn>,
    /// The memory this process's step may use (on the CPU, the machine's available memory
    /// shared by its processes; on GPUs, also each GPU's free memory): a configured step whose
    /// [`crate::StepMemory`] estimate exceeds it is refused before any work.
    pub memory_budget: crate::MemoryBudget,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Control")
            .field("stop_before", &self.stop_before)
            .field("interrupt", &self.interrupt)
            .field("progress", &self.progress.is_some())
            .field("memory_budget", &self.memory_budget)
            .finish()
    }
}

/// Runs (or resumes) `config` in `run_dir` on `devices` (autodiff devices), as one process of
/// `comm`'s job: data-parallel over the devices and the processes (see ARCHITECTURE.md, duet-train `parallel`),
/// the model, optimizer and evaluation on the first device.
pub fn run(
    config: &TrainConfig,
    run_dir: &Path,
    devices: &[Device],
    start: Start,
    control: &Control,
    comm: &dyn Collective,
) -> Result<RunSummary, TrainError> {
    let comm = Metered::new(comm);
    let started = crate::start::start(
        config,
        run_dir,
        devices,
        start,
        &comm,
        control.memory_budget,
    )?;
    let mut trainer = Trainer::new(config, run_dir, devices, started, &comm)?;
    for step in trainer.started_at..config.train.steps {
        if control.stop_before == Some(step) {
            break;
        }
        let (report, lr) = trainer.step(step, control)?;
        if trainer.after_step(step + 1, &report, lr, control)? {
            break;
        }
    }
    Ok(trainer.finish())
}

/// A run between its start and its finish.
struct Trainer<'a> {
    config: &'a TrainConfig,
    run_dir: &'a Path,
    devices: &'a [Device],
    comm: &'a Metered<&'a dyn Collective>,
    clip: ClipConfig,
    /// `None` only while a step has it.
    model: Option<ClipModel>,
    stepper: Stepper,
    layout: Layout,
    loader: SlotLoader,
    started_at: u64,
    skipped_checkpoints: Vec<String>,
    /// This process's slots' cursors after the last batch trained on.
    cursors: Vec<LoaderCursor>,
    losses: Vec<f64>,
    /// Start of the logging window, and the samples and steps in it.
    window: (Instant, usize, u64),
    last_checkpoint: Option<PathBuf>,
    eval: Vec<EvalResult>,
    interrupted: bool,
}

impl<'a> Trainer<'a> {
    fn new(
        config: &'a TrainConfig,
        run_dir: &'a Path,
        devices: &'a [Device],
        started: Started,
        comm: &'a Metered<&'a dyn Collective>,
    ) -> Result<Self, TrainError> {
        let Started {
            clip,
            model,
            stepper,
            layout,
            cursors,
            started_at,
            skipped_checkpoints,
        } = started;
        let spec = parse_spec(&config.data.train, config.data.upsampling.as_deref())
            .map_err(data_error)?;
        let source = LoaderSource::from_spec(&spec).map_err(data_error)?;
        let tokenizer = duet_eval::text_tokenizer(&clip)
            .map_err(|e| TrainError::invalid("model.tokenizer", e.to_string()))?;
        let loader = SlotLoader::start(
            &loader_config(config, &clip, layout.per_slot()),
            layout.slots,
            layout.owned.clone(),
            source,
            tokenizer,
            cursors.as_deref(),
        )
        .map_err(data_error)?;
        Ok(Self {
            config,
            run_dir,
            devices,
            comm,
            clip,
            model: Some(model),
            stepper,
            layout,
            loader,
            started_at,
            skipped_checkpoints,
            cursors: cursors.unwrap_or_default(),
            losses: Vec::new(),
            window: (Instant::now(), 0, 0),
            last_checkpoint: None,
            eval: Vec::new(),
            interrupted: false,
        })
    }

    fn device(&self) -> &Device {
        &self.devices[0]
    }

    fn is_root(&self) -> bool {
        self.comm.rank() == 0
    }

    /// Phase 2: one optimizer step on the next batch of this process's slots; its report and
    /// learning rate.
    fn step(&mut self, step: u64, control: &Control) -> Result<(StepReport, f64), TrainError> {
        let batch = self
            .loader
            .next()
            .ok_or_else(|| TrainError::invalid("data.train", "the loader ended early"))?
            .map_err(data_error)?;
        let images = batch.images_tensor(self.device());
        let tokens = batch.tokens_tensor(self.device());
        let samples = batch.len() * self.layout.processes;
        self.cursors.clear();
        for (part, batch) in batch.parts.into_iter().enumerate() {
            self.cursors.push(batch.cursor);
            self.loader.recycle(part, batch.images);
        }
        let config = &self.config;
        let lr = config
            .schedule
            .lr(config.optimizer.lr, step, config.train.steps);
        let started = Instant::now();
        let model = self
            .model
            .take()
            .ok_or_else(|| TrainError::invalid("run", "the model is missing"))?;
        let (model, report) = self.stepper.step(
            model,
            images,
            tokens,
            config.train.accum_freq,
            lr,
            step,
            self.comm,
        )?;
        self.model = Some(model);
        if let Some(progress) = &control.progress {
            progress(&Progress {
                done: step + 1,
                total: config.train.steps,
                loss: report.loss,
                lr,
                samples_per_sec: samples as f64 / started.elapsed().as_secs_f64().max(1e-9),
            });
        }
        self.losses.push(report.loss);
        self.window.1 += samples;
        self.window.2 += 1;
        Ok((report, lr))
    }

    /// Phase 3: after step `done`, its metrics row, evaluation and checkpoint, as configured;
    /// true when the run stops here (interrupted, after its checkpoint).
    fn after_step(
        &mut self,
        done: u64,
        report: &StepReport,
        lr: f64,
        control: &Control,
    ) -> Result<bool, TrainError> {
        let config = self.config;
        let total = config.train.steps;
        if done.is_multiple_of(config.log.every_steps) || done == total {
            self.log(done, report, lr)?;
        }
        let interrupted = self.agree_on_interrupt(control)?;
        // Before the checkpoint of the same step, so a run resumed from that checkpoint has the
        // row; not on an interrupt (preemption wants a quick exit).
        let every = config.eval.every_steps;
        if !interrupted && (done == total || (every > 0 && done.is_multiple_of(every))) {
            self.evaluate(done)?;
        }
        if done.is_multiple_of(config.checkpoint.every_steps) || done == total || interrupted {
            self.checkpoint(done)?;
        }
        self.interrupted = interrupted;
        Ok(interrupted)
    }

    /// One rank's SIGINT/SIGTERM stops every rank after the same step.
    fn agree_on_interrupt(&self, control: &Control) -> Result<bool, TrainError> {
        let mine = control
            .interrupt
            .as_ref()
            .is_some_and(|flag| flag.load(Ordering::SeqCst));
        if self.comm.world() == 1 {
            return Ok(mine);
        }
        let any = self
            .comm
            .all_reduce_max(u64::from(mine))
            .map_err(comm_error(self.comm, "interrupt"))?;
        Ok(any > 0)
    }

    fn log(&mut self, done: u64, report: &StepReport, lr: f64) -> Result<(), TrainError> {
        let (since, samples, steps) = self.window;
        let seconds = since.elapsed().as_secs_f64().max(1e-9);
        let traffic = self.comm.take();
        self.window = (Instant::now(), 0, 0);
        if !self.is_root() {
            return Ok(());
        }
        let per_step = |x: f64| (self.comm.world() > 1).then(|| x / steps.max(1) as f64);
        let ranks = (self.layout.devices * self.layout.processes) as f64;
        append_metrics(
            &self.run_dir.join("metrics.jsonl"),
            &MetricsRow {
                step: done,
                loss: report.loss,
                lr,
                logit_scale: report.logit_scale,
                grad_norm: report.grad_norm,
                samples_per_sec: samples as f64 / seconds,
                samples_per_sec_per_device: samples as f64 / seconds / ranks,
                comm_bytes_per_step: per_step(traffic.bytes as f64),
                comm_seconds_per_step: per_step(traffic.seconds),
                skipped: report.skipped,
                loss_scale: report.loss_scale,
                skipped_steps: self.stepper.loss_scale().map(|s| s.skipped_steps),
            },
        )
    }

    /// Rank 0 evaluates; the others go on to the next step and wait for it there.
    fn evaluate(&mut self, done: u64) -> Result<(), TrainError> {
        if !self.is_root() {
            return Ok(());
        }
        let model = self
            .model
            .as_ref()
            .ok_or_else(|| TrainError::invalid("run", "the model is missing"))?;
        let eval = &self.config.eval;
        self.eval = evaluate(
            model,
            &self.clip,
            eval,
            &self.config.data.fields(),
            self.device(),
        )?;
        if !self.eval.is_empty() {
            append_metrics(
                &self.run_dir.join("metrics.jsonl"),
                &metrics_row(done, &self.eval),
            )?;
            // Evaluation time is not training throughput.
            self.window.0 = Instant::now();
        }
        Ok(())
    }

    /// Every rank's slot cursors (and a fingerprint of its weights) to rank 0, which writes the
    /// checkpoint; then every rank waits until it is on disk.
    fn checkpoint(&mut self, done: u64) -> Result<(), TrainError> {
        let model = self
            .model
            .as_ref()
            .ok_or_else(|| TrainError::invalid("run", "the model is missing"))?;
        let cursors = self.gather_cursors(model, done)?;
        let checkpoints = self.run_dir.join("checkpoints");
        if self.is_root() {
            let state = TrainState {
                format_version: CHECKPOINT_FORMAT_VERSION,
                step: done,
                cursors,
                cursor: None,
                config: self.config.clone(),
                devices: self.layout.devices,
                processes: self.layout.processes,
                loss_scale: self.stepper.loss_scale(),
            };
            checkpoint::save(
                &checkpoints,
                model,
                &self.clip,
                self.stepper.optimizer(),
                &state,
                self.config.checkpoint.keep_last,
            )?;
        }
        self.last_checkpoint = Some(checkpoints.join(checkpoint::checkpoint_name(done)));
        if self.comm.world() > 1 {
            self.comm
                .barrier()
                .map_err(comm_error(self.comm, "checkpoint written"))?;
        }
        Ok(())
    }

    /// All data slots' cursors in slot order (on rank 0; the others get an empty list), after
    /// checking that every rank's weights are still rank 0's.
    fn gather_cursors(
        &self,
        model: &ClipModel,
        done: u64,
    ) -> Result<Vec<LoaderCursor>, TrainError> {
        if self.comm.world() == 1 {
            return Ok(self.cursors.clone());
        }
        let print = fingerprint(model);
        agree(self.comm, "weights", &print.to_le_bytes(), |rank, _| {
            format!(
                "after step {done} the weights of rank {rank} differ from rank 0's: the \
                 replicas diverged (nondeterministic kernels, or mixed hardware)"
            )
        })?;
        let mine = serde_json::to_vec(&(self.layout.owned.start, &self.cursors))
            .map_err(|e| TrainError::invalid("checkpoint", e.to_string()))?;
        let all = self
            .comm
            .all_gather_bytes(&mine)
            .map_err(comm_error(self.comm, "checkpoint cursors"))?;
        let mut slots: Vec<Option<LoaderCursor>> = vec![None; self.layout.slots];
        for (rank, bytes) in all.iter().enumerate() {
            let (first, cursors): (usize, Vec<LoaderCursor>) = serde_json::from_slice(bytes)
                .map_err(|e| TrainError::RanksDisagree {
                    message: format!("rank {rank} sent unreadable cursors: {e}"),
                })?;
            for (i, cursor) in cursors.into_iter().enumerate() {
                if let Some(slot) = slots.get_mut(first + i) {
                    *slot = Some(cursor);
                }
            }
        }
        slots
            .into_iter()
            .enumerate()
            .map(|(slot, cursor)| {
                cursor.ok_or_else(|| TrainError::RanksDisagree {
                    message: format!("no rank sent the cursor of data slot {slot}"),
                })
            })
            .collect()
    }

    /// Phase 4: what the run did.
    fn finish(self) -> RunSummary {
        RunSummary {
            started_at: self.started_at,
            steps: self.started_at + self.losses.len() as u64,
            losses: self.losses,
            skipped_checkpoints: self.skipped_checkpoints,
            last_checkpoint: self.last_checkpoint,
            interrupted: self.interrupted,
            eval: self.eval,
            data_skipped: self
                .cursors
                .iter()
                .fold(SkipCounts::default(), |mut all, c| {
                    all.merge(&c.skipped());
                    all
                }),
        }
    }
}
