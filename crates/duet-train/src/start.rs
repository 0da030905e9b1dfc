//! The first phase of a run: the model, the optimizer and the data, fresh or from the newest
//! good checkpoint, agreed between the processes of the job.

use std::ops::Range;
use std::path::{Path, PathBuf};

use burn::tensor::Device;
use duet_data::{LoaderCursor, owned_slots};
use duet_dist::Collective;
use duet_model::{ClipConfig, ClipModel};

use crate::dropout::PatchDropout;
use crate::scaler::LossScale;

use crate::checkpoint::{self, bad, io};
use crate::config::resolve_model_dir;
use crate::lazy::materialize;
use crate::memory::MemoryBudget;
use crate::metrics::truncate_metrics;
use crate::sync::{broadcast_model, comm_error, fingerprint};
use crate::{Stepper, TrainConfig, TrainError, lock};

/// How a run starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// From a fresh, seeded initialisation; the run directory must not hold checkpoints.
    Fresh,
    /// From the newest good checkpoint in the run directory.
    Resume,
}

/// How a run's global batch is spread over processes, devices and data slots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Layout {
    /// Processes in the job.
    pub processes: usize,
    /// Devices of each process.
    pub devices: usize,
    /// Data slots (fixed for the life of the run).
    pub slots: usize,
    /// The slots this process reads.
    pub owned: Range<usize>,
    /// Samples per step over every process: `batch_size × accum_freq × devices × processes`.
    pub global_batch: usize,
}

impl Layout {
    /// The layout of `config` on `devices` devices in `comm`'s job with `slots` data slots;
    /// refused, naming the key, when the global batch or the slots do not split.
    pub fn new(
        config: &TrainConfig,
        devices: usize,
        comm: &dyn Collective,
        slots: usize,
    ) -> Result<Self, TrainError> {
        let processes = comm.world();
        let global_batch = config.train.global_batch(devices * processes);
        let owned = owned_slots(slots, processes, comm.rank())
            .map_err(|e| TrainError::invalid("data.slots", e.to_string()))?;
        if !global_batch.is_multiple_of(slots) {
            return Err(TrainError::invalid(
                "data.slots",
                format!(
                    "the global batch of {global_batch} (train.batch_size {} × accum_freq {} × \
                     {devices} device(s) × {processes} process(es)) does not split into {slots} \
                     equal slot batches",
                    config.train.batch_size, config.train.accum_freq
                ),
            ));
        }
        Ok(Self {
            processes,
            devices,
            slots,
            owned,
            global_batch,
        })
    }

    /// Samples each data slot gives a step.
    pub fn per_slot(&self) -> usize {
        self.global_batch / self.slots
    }
}

/// What a run starts from.
pub(crate) struct Started {
    pub clip: ClipConfig,
    pub model: ClipModel,
    pub stepper: Stepper,
    pub layout: Layout,
    /// This process's slots' cursors (resume), in slot order.
    pub cursors: Option<Vec<LoaderCursor>>,
    /// Steps already done.
    pub started_at: u64,
    /// Problems with newer checkpoints that resuming skipped.
    pub skipped_checkpoints: Vec<String>,
}

/// Phase 1 of [`crate::run`]: a fresh model (rank 0's, broadcast) or the newest good
/// checkpoint (the same one on every rank, checked), its optimizer and data cursors.
pub(crate) fn start(
    config: &TrainConfig,
    run_dir: &Path,
    devices: &[Device],
    start: Start,
    comm: &dyn Collective,
    memory_budget: MemoryBudget,
) -> Result<Started, TrainError> {
    let Some(device) = devices.first() else {
        return Err(TrainError::invalid("devices", "no device given"));
    };
    agree_on_config(config, comm)?;
    check_precision(config, devices)?;
    let fits = |clip: &ClipConfig, layout: &Layout| memory_budget.check(config, clip, layout);
    match start {
        Start::Fresh => fresh(config, run_dir, devices, device, comm, &fits),
        Start::Resume => resume(config, run_dir, devices, device, comm, &fits),
    }
}

/// Whether the configured step fits in memory (see [`crate::StepMemory`]).
type Fits<'a> = dyn Fn(&ClipConfig, &Layout) -> Result<(), TrainError> + 'a;

fn fresh(
    config: &TrainConfig,
    run_dir: &Path,
    devices: &[Device],
    device: &Device,
    comm: &dyn Collective,
    fits: &Fits<'_>,
) -> Result<Started, TrainError> {
    let slots = config.data.slots.unwrap_or(comm.world());
    let layout = Layout::new(config, devices.len(), comm, slots)?;
    let clip = config.clip_config()?;
    clip.check_tokenizer().map_err(|source| TrainError::Model {
        key: "model".into(),
        source,
    })?;
    fits(&clip, &layout)?;
    // The resolved config records the slot count: a resume on another process count keeps it.
    let mut resolved = config.clone();
    resolved.data.slots = Some(slots);
    if comm.rank() == 0 {
        let checkpoints = run_dir.join("checkpoints");
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
        write_config(run_dir, &resolved)?;
        let metrics = run_dir.join("metrics.jsonl");
        std::fs::write(&metrics, "").map_err(|e| io(&metrics, e))?;
    }
    let model = match &config.model.from {
        Some(from) => pretrained(from, device)?,
        None => seeded_init(&clip, device, config.train.seed)?,
    };
    let model = lock::apply(model, &config.lock);
    // Every rank drew or loaded the same weights; rank 0's are the job's all the same.
    let model = broadcast_model(comm, model, 0)?.with_precision(config.train.precision);
    let stepper = stepper(config, devices, &model, None);
    Ok(Started {
        clip,
        model,
        stepper,
        layout,
        cursors: None,
        started_at: 0,
        skipped_checkpoints: Vec::new(),
    })
}

fn resume(
    config: &TrainConfig,
    run_dir: &Path,
    devices: &[Device],
    device: &Device,
    comm: &dyn Collective,
    fits: &Fits<'_>,
) -> Result<Started, TrainError> {
    let checkpoints = run_dir.join("checkpoints");
    let (restored, skipped_checkpoints) = checkpoint::load_latest(&checkpoints, device)?;
    let state = &restored.state;
    // Every rank must resume the same checkpoint, with the same weights (the fingerprint reads
    // every weight back: only worth it when there are other ranks).
    if comm.world() > 1 {
        let check = format!("{} {:08x}", state.step, fingerprint(&restored.model));
        agree(comm, "checkpoint", check.as_bytes(), |rank, theirs| {
            format!(
                "rank {rank} resumes from step/weights {theirs}, rank 0 from {check}: every \
                 process must see the same run directory (shared storage)"
            )
        })?;
    }
    let clip = restored.clip;
    clip.check_tokenizer().map_err(|source| TrainError::Model {
        key: "model".into(),
        source,
    })?;
    config.validate_lock(&clip)?;
    let cursors = state.slot_cursors();
    let slots = cursors.len();
    if let Some(configured) = config.data.slots
        && configured != slots
    {
        return Err(bad(
            &restored.dir.join("state.json"),
            format!(
                "holds {slots} data-slot cursor(s), but the run's config says data.slots = {configured}"
            ),
        ));
    }
    let layout = Layout::new(config, devices.len(), comm, slots)?;
    fits(&clip, &layout)?;
    if layout.global_batch != state.global_batch() {
        tracing::warn!(
            "this run trained with a global batch of {} ({} process(es) × {} device(s)) and \
             resumes with {} ({} × {}): the data order is kept, the batches change",
            state.global_batch(),
            state.processes,
            state.devices,
            layout.global_batch,
            layout.processes,
            layout.devices,
        );
    } else if (state.processes, state.devices) != (layout.processes, layout.devices) {
        tracing::info!(
            "resuming on {} process(es) × {} device(s) (trained on {} × {}): same global batch \
             of {}, same data order",
            layout.processes,
            layout.devices,
            state.processes,
            state.devices,
            layout.global_batch
        );
    }
    let model = lock::apply(restored.model, &config.lock).with_precision(config.train.precision);
    let mut stepper = stepper(config, devices, &model, state.loss_scale);
    let optimizer = stepper.optimizer().clone().load_record(restored.optimizer);
    stepper.set_optimizer(optimizer);
    let started_at = state.step;
    if comm.rank() == 0 {
        truncate_metrics(&run_dir.join("metrics.jsonl"), started_at)?;
        // The config the run goes on with (a resume may override `train.accum_freq`, …).
        let mut resolved = config.clone();
        resolved.data.slots = Some(slots);
        write_config(run_dir, &resolved)?;
    }
    Ok(Started {
        clip,
        model,
        stepper,
        cursors: Some(cursors[layout.owned.clone()].to_vec()),
        layout,
        started_at,
        skipped_checkpoints,
    })
}

/// The run directory's `config.toml`: the resolved config the run trains with, replaced
/// through a temporary file so a crash never leaves half a config.
fn write_config(run_dir: &Path, config: &TrainConfig) -> Result<(), TrainError> {
    let path = run_dir.join("config.toml");
    let temp = run_dir.join(".config.toml.tmp");
    let text = toml::to_string(config).map_err(|e| bad(&path, e.to_string()))?;
    std::fs::write(&temp, text).map_err(|e| io(&temp, e))?;
    std::fs::rename(&temp, &path).map_err(|e| io(&path, e))
}

/// The step `config` asks for; in f16, the loss scale goes on from `saved` (a checkpoint's)
/// or starts at `train.loss_scale`.
fn stepper(
    config: &TrainConfig,
    devices: &[Device],
    model: &ClipModel,
    saved: Option<LossScale>,
) -> Stepper {
    let t = &config.train;
    let scaler = Stepper::scaler_for(t.precision, t.loss_scale, t.loss_scale_growth_interval)
        .map(|fresh| saved.unwrap_or(fresh));
    Stepper::new(
        config.loss,
        &config.optimizer,
        config.train.on_nonfinite,
        model,
    )
    .with_devices(devices)
    .with_local_loss(config.train.local_loss)
    .with_grad_checkpointing(config.train.grad_checkpointing)
    .with_loss_scale(scaler)
    .with_patch_dropout(Some(PatchDropout {
        prob: t.patch_dropout,
        seed: t.seed,
    }))
}

/// Refuses, before any work, a precision a device cannot compute in.
fn check_precision(config: &TrainConfig, devices: &[Device]) -> Result<(), TrainError> {
    config.train.precision.check_on(devices).map_err(|why| {
        TrainError::invalid(
            "train.precision",
            format!("{why}: use f32 there, or bf16/f16 on CUDA or the CPU"),
        )
    })
}

/// Every rank runs the same config (the same file and overrides), or none runs.
fn agree_on_config(config: &TrainConfig, comm: &dyn Collective) -> Result<(), TrainError> {
    if comm.world() == 1 {
        return Ok(());
    }
    let text = toml::to_string(config).map_err(|e| TrainError::invalid("config", e.to_string()))?;
    agree(comm, "config", text.as_bytes(), |rank, _| {
        format!("rank {rank} was started with another train config than rank 0 (file or --set)")
    })
}

/// Gathers every rank's `mine` and fails, with `describe(rank, theirs)`, where one differs
/// from rank 0's.
pub(crate) fn agree(
    comm: &dyn Collective,
    what: &'static str,
    mine: &[u8],
    describe: impl Fn(usize, &str) -> String,
) -> Result<(), TrainError> {
    if comm.world() == 1 {
        return Ok(());
    }
    let all = comm
        .all_gather_bytes(mine)
        .map_err(comm_error(comm, what))?;
    match all.iter().position(|theirs| theirs != &all[0]) {
        None => Ok(()),
        Some(rank) => Err(TrainError::RanksDisagree {
            message: describe(rank, &String::from_utf8_lossy(&all[rank])),
        }),
    }
}

fn seeded_init(clip: &ClipConfig, device: &Device, seed: u64) -> Result<ClipModel, TrainError> {
    crate::lazy::exclusive(|| {
        device.seed(seed);
        let model = clip.init(device).map_err(|source| TrainError::Model {
            key: "model.config".into(),
            source,
        })?;
        // burn initialises parameters lazily, at first use: draw them all now, under the lock.
        materialize(&model);
        Ok(model)
    })
}

/// The pretrained model at `from` (a model directory, checkpoint or run directory).
fn pretrained(from: &Path, device: &Device) -> Result<ClipModel, TrainError> {
    let dir: PathBuf = resolve_model_dir(from)?;
    let loaded =
        crate::lazy::exclusive(|| duet_model::load_model(&dir, device)).map_err(|source| {
            TrainError::Model {
                key: "model.from".into(),
                source,
            }
        })?;
    tracing::info!(from = %dir.display(), format = ?loaded.format, "loaded pretrained weights");
    Ok(loaded.model)
}
