//! Checkpoints: step-keyed, atomic, versioned, checksummed.
//!
//! ```text
//! checkpoints/step-00000300/
//!   model.safetensors, duet_model.json   the weights, in duet's model layout (`duet export` reads it)
//!   param_ids.json                        parameter path -> burn ParamId
//!   optimizer.bpk                         AdamW state (burn's burnpack record, keyed by ParamId)
//!   state.json                            format version, step, every data slot's loader cursor,
//!                                         resolved config, devices and processes
//!   manifest.json                         size and CRC-32 of every file above
//! checkpoints/latest                      the name of the newest complete checkpoint
//! ```
//!
//! Writing goes to `checkpoints/.tmp-step-N/`, every file is fsynced, the directory is renamed,
//! then `latest` is replaced through a temp file and a rename: a crash leaves either the old
//! `latest` or the new one, never a pointer to a partial checkpoint. Loading verifies the manifest
//! and falls back to the previous checkpoint when the newest is damaged.
//!
//! In a job of several processes, rank 0 alone writes, the whole checkpoint: the model and the
//! optimizer are replicated on every rank, and every rank's data-slot cursors are gathered to
//! rank 0 before it writes. So a checkpoint holds every rank's part exactly when `latest` can
//! name it, and a rank killed during the write leaves nothing `resume` would trust.
//!
//! burn keys optimizer state by `ParamId`, and a model rebuilt from safetensors gets fresh ids;
//! `param_ids.json` gives the rebuilt parameters their old ids back, so the saved AdamW moments
//! apply to the same tensors.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use burn::module::{Module, ModuleMapper, Param, ParamId};
use burn::optim::ModuleOptimizer;
use burn::tensor::{Device, Tensor};
use duet_data::LoaderCursor;
use duet_model::{ClipConfig, ClipModel, ModelFormat, load_weights, read_config, save_duet};
use serde::{Deserialize, Serialize};

pub use crate::config::resolve_model_dir;
use crate::optim::float_params;
use crate::{TrainConfig, TrainError};

/// Version of the checkpoint layout; bumped when a file changes meaning.
pub const CHECKPOINT_FORMAT_VERSION: u32 = 1;

/// `state.json`: everything but tensors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Layout version ([`CHECKPOINT_FORMAT_VERSION`]).
    pub format_version: u32,
    /// Steps completed.
    pub step: u64,
    /// Every data slot's loader cursor after the last batch trained on, in slot order (one per
    /// slot, whichever process read it).
    #[serde(default)]
    pub cursors: Vec<LoaderCursor>,
    /// The one cursor of a checkpoint written before data slots (read, never written).
    #[serde(default, skip_serializing)]
    pub cursor: Option<LoaderCursor>,
    /// The resolved train config.
    pub config: TrainConfig,
    /// Data-parallel devices per process (the global batch is `batch_size × accum_freq ×
    /// devices × processes`); absent in checkpoints written before data parallelism: 1.
    #[serde(default = "crate::config::one")]
    pub devices: usize,
    /// Processes of the job; absent in checkpoints written before multi-process training: 1.
    #[serde(default = "crate::config::one")]
    pub processes: usize,
    /// f16: the dynamic loss scale after the last step (absent otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_scale: Option<crate::scaler::LossScale>,
}

impl TrainState {
    /// Every data slot's cursor, in slot order (an older checkpoint's single cursor is its one
    /// slot's).
    pub fn slot_cursors(&self) -> Vec<LoaderCursor> {
        if self.cursors.is_empty() {
            self.cursor.iter().cloned().collect()
        } else {
            self.cursors.clone()
        }
    }

    /// The global batch of the run that wrote this checkpoint.
    pub fn global_batch(&self) -> usize {
        self.config
            .train
            .global_batch(self.devices * self.processes)
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    files: BTreeMap<String, FileCheck>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct FileCheck {
    size: u64,
    crc32: u32,
}

/// A checkpoint read back from disk.
#[derive(Debug)]
pub struct Restored {
    /// The model, its parameters carrying their saved ids.
    pub model: ClipModel,
    /// The optimizer record, for [`ModuleOptimizer::load_record`].
    pub optimizer: burn::optim::OptimizerRecord,
    /// Step, cursor, config.
    pub state: TrainState,
    /// The model's architecture, from the checkpoint's `duet_model.json`.
    pub clip: ClipConfig,
    /// Where it was read from.
    pub dir: PathBuf,
}

/// An I/O error on a run or checkpoint file, naming the file.
pub(crate) fn io(path: &Path, source: std::io::Error) -> TrainError {
    TrainError::Checkpoint {
        path: path.to_path_buf(),
        message: source.to_string(),
    }
}

/// Any other problem with a run or checkpoint file, naming the file.
pub(crate) fn bad(path: &Path, message: impl Into<String>) -> TrainError {
    TrainError::Checkpoint {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// `step-00000300`.
pub fn checkpoint_name(step: u64) -> String {
    format!("step-{step:08}")
}

fn to_json(value: &impl Serialize, dir: &Path) -> Result<String, TrainError> {
    serde_json::to_string_pretty(value).map_err(|e| bad(dir, e.to_string()))
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    let mut file = File::create(path).map_err(|e| io(path, e))?;
    file.write_all(bytes).map_err(|e| io(path, e))?;
    file.sync_all().map_err(|e| io(path, e))
}

fn sync_dir(dir: &Path) -> Result<(), TrainError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io(dir, e))
}

fn check(path: &Path) -> Result<FileCheck, TrainError> {
    let bytes = std::fs::read(path).map_err(|e| io(path, e))?;
    Ok(FileCheck {
        size: bytes.len() as u64,
        crc32: crc32fast::hash(&bytes),
    })
}

/// Saves a checkpoint of `step` under `checkpoints`, moves `latest` to it, and deletes all but
/// the newest `keep_last`. Returns its directory.
pub fn save(
    checkpoints: &Path,
    model: &ClipModel,
    clip: &ClipConfig,
    optimizer: &ModuleOptimizer,
    state: &TrainState,
    keep_last: usize,
) -> Result<PathBuf, TrainError> {
    let name = checkpoint_name(state.step);
    let tmp = checkpoints.join(format!(".tmp-{name}"));
    let dir = checkpoints.join(&name);
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| io(&tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| io(&tmp, e))?;
    save_duet(model, clip, &tmp).map_err(|e| bad(&tmp, e.to_string()))?;
    let ids: BTreeMap<String, u64> = float_params(model)
        .into_iter()
        .map(|p| (p.path, p.id.val()))
        .collect();
    write_synced(&tmp.join("param_ids.json"), to_json(&ids, &tmp)?.as_bytes())?;
    let optimizer_path = tmp.join("optimizer.bpk");
    optimizer
        .save(&optimizer_path)
        .map_err(|e| bad(&optimizer_path, e.to_string()))?;
    write_synced(&tmp.join("state.json"), to_json(state, &tmp)?.as_bytes())?;
    let mut files = BTreeMap::new();
    for file in [
        "model.safetensors",
        "duet_model.json",
        "param_ids.json",
        "optimizer.bpk",
        "state.json",
    ] {
        let path = tmp.join(file);
        // save_duet and burn's writer do not fsync; do it before the rename makes it visible.
        File::open(&path)
            .and_then(|f| f.sync_all())
            .map_err(|e| io(&path, e))?;
        files.insert(file.to_owned(), check(&path)?);
    }
    write_synced(
        &tmp.join("manifest.json"),
        to_json(&Manifest { files }, &tmp)?.as_bytes(),
    )?;
    sync_dir(&tmp)?;
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| io(&dir, e))?;
    }
    std::fs::rename(&tmp, &dir).map_err(|e| io(&dir, e))?;
    let latest_tmp = checkpoints.join(".latest.tmp");
    write_synced(&latest_tmp, name.as_bytes())?;
    std::fs::rename(&latest_tmp, checkpoints.join("latest"))
        .map_err(|e| io(&checkpoints.join("latest"), e))?;
    sync_dir(checkpoints)?;
    prune(checkpoints, keep_last)?;
    Ok(dir)
}

/// Every complete checkpoint under `checkpoints`, newest first.
pub fn list(checkpoints: &Path) -> Result<Vec<(u64, PathBuf)>, TrainError> {
    let mut found = Vec::new();
    let entries = match std::fs::read_dir(checkpoints) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(found),
        Err(e) => return Err(io(checkpoints, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| io(checkpoints, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(step) = name
            .strip_prefix("step-")
            .and_then(|s| s.parse::<u64>().ok())
        {
            found.push((step, entry.path()));
        }
    }
    found.sort_by_key(|(step, _)| std::cmp::Reverse(*step));
    Ok(found)
}

fn prune(checkpoints: &Path, keep_last: usize) -> Result<(), TrainError> {
    for (_, dir) in list(checkpoints)?.into_iter().skip(keep_last.max(1)) {
        std::fs::remove_dir_all(&dir).map_err(|e| io(&dir, e))?;
    }
    Ok(())
}

/// Checks every file of the checkpoint at `dir` against its manifest.
pub fn verify(dir: &Path) -> Result<(), TrainError> {
    let path = dir.join("manifest.json");
    let text = std::fs::read_to_string(&path).map_err(|e| io(&path, e))?;
    let manifest: Manifest = serde_json::from_str(&text).map_err(|e| bad(&path, e.to_string()))?;
    for (file, want) in &manifest.files {
        let got = check(&dir.join(file))?;
        if got != *want {
            return Err(bad(
                &dir.join(file),
                format!(
                    "damaged: {} bytes, CRC-32 {:08x}; the manifest says {} bytes, {:08x}",
                    got.size, got.crc32, want.size, want.crc32
                ),
            ));
        }
    }
    Ok(())
}

/// Loads the checkpoint at `dir` onto `device` (verified first).
pub fn load(dir: &Path, device: &Device) -> Result<Restored, TrainError> {
    verify(dir)?;
    let state_path = dir.join("state.json");
    let text = std::fs::read_to_string(&state_path).map_err(|e| io(&state_path, e))?;
    let state: TrainState =
        serde_json::from_str(&text).map_err(|e| bad(&state_path, e.to_string()))?;
    if state.format_version != CHECKPOINT_FORMAT_VERSION {
        return Err(bad(
            &state_path,
            format!(
                "format version {} (this duet reads {CHECKPOINT_FORMAT_VERSION})",
                state.format_version
            ),
        ));
    }
    // The checkpoint's own model config, so a run fine-tuned from weights that have since moved
    // still resumes.
    let (clip, _) = read_config(dir).map_err(|e| bad(dir, e.to_string()))?;
    let weights = dir.join("model.safetensors");
    let model = crate::lazy::exclusive(|| load_weights(&clip, ModelFormat::Duet, &weights, device))
        .map_err(|e| bad(dir, e.to_string()))?;
    let ids_path = dir.join("param_ids.json");
    let text = std::fs::read_to_string(&ids_path).map_err(|e| io(&ids_path, e))?;
    let ids: BTreeMap<String, u64> =
        serde_json::from_str(&text).map_err(|e| bad(&ids_path, e.to_string()))?;
    let mut assign = AssignIds {
        stack: Vec::new(),
        ids,
        missing: Vec::new(),
    };
    let model = model.map(&mut assign);
    if !assign.missing.is_empty() {
        return Err(bad(
            &ids_path,
            format!("no id for {}", assign.missing.join(", ")),
        ));
    }
    let optimizer_path = dir.join("optimizer.bpk");
    let optimizer = burn::optim::OptimizerRecord::load(&optimizer_path)
        .map_err(|e| bad(&optimizer_path, e.to_string()))?;
    Ok(Restored {
        model,
        optimizer,
        state,
        clip,
        dir: dir.to_path_buf(),
    })
}

/// Loads the newest good checkpoint under `checkpoints`: the one `latest` names, else (damaged
/// or missing) the next older one that verifies. Returns it and the problems skipped on the way.
pub fn load_latest(
    checkpoints: &Path,
    device: &Device,
) -> Result<(Restored, Vec<String>), TrainError> {
    let mut skipped = Vec::new();
    let latest = std::fs::read_to_string(checkpoints.join("latest")).ok();
    let mut candidates = list(checkpoints)?;
    if let Some(name) = latest.as_deref().map(str::trim) {
        // The pointer first; the rest newest first.
        candidates.sort_by_key(|(_, dir)| dir.file_name().is_none_or(|n| n != name));
    }
    for (_, dir) in candidates {
        match load(&dir, device) {
            Ok(restored) => return Ok((restored, skipped)),
            Err(error) => skipped.push(error.to_string()),
        }
    }
    Err(bad(
        checkpoints,
        if skipped.is_empty() {
            "no checkpoint to resume from".to_owned()
        } else {
            format!("no usable checkpoint: {}", skipped.join("; "))
        },
    ))
}

/// Gives each float parameter the id saved for its path.
struct AssignIds {
    stack: Vec<String>,
    ids: BTreeMap<String, u64>,
    missing: Vec<String>,
}

impl ModuleMapper for AssignIds {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.stack.push(name.to_owned());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.stack.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let path = self.stack.join(".");
        let (id, tensor, mapper) = param.consume();
        let id = match self.ids.get(&path) {
            Some(saved) => ParamId::from(*saved),
            None => {
                self.missing.push(path);
                id
            }
        };
        Param::from_mapped_value(id, tensor, mapper)
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Distribution, Int, TensorData};
    use duet_dist::Solo;
    use duet_loss::Loss;

    use super::*;
    use crate::{NonFinite, OptimizerConfig, Stepper};

    const CONFIG: &str = r#"
[model]
config = "tiny"
[data]
train = "x/{0..1}.tar"
[train]
steps = 10
batch_size = 4
"#;

    #[test]
    fn a_restored_step_equals_the_continued_one() {
        let device = Device::flex().autodiff();
        let config = TrainConfig::parse(CONFIG, "t.toml", &[]).expect("config");
        let clip = config.clip_config().expect("clip");
        let model = clip.init(&device).expect("model");
        let optimizer = OptimizerConfig {
            grad_clip_norm: Some(1.0),
            ..OptimizerConfig::default()
        };
        let mut stepper = Stepper::new(Loss::info_nce(), &optimizer, NonFinite::Stop, &model);
        let images = Tensor::<4>::random([4, 3, 64, 64], Distribution::Normal(0.0, 1.0), &device);
        let mut ids = vec![0_i64; 4 * 77];
        for (i, row) in ids.chunks_mut(77).enumerate() {
            row[..3].copy_from_slice(&[49406, 320 + i as i64, 49407]);
        }
        let tokens = Tensor::<2, Int>::from_data(TensorData::new(ids, [4, 77]), &device);
        let mut model = model;
        for step in 0..2 {
            model = stepper
                .step(model, images.clone(), tokens.clone(), 1, 1e-3, step, &Solo)
                .expect("step")
                .0;
        }
        let dir = tempfile::tempdir().expect("temp");
        let cursor = duet_data::LoaderCursor {
            epoch: 0,
            sequencer: duet_data::pipeline::SequencerState::start(0, 1),
            skip_raw: 0,
            epoch_batches: 0,
            batches: 0,
            processing_skips: Default::default(),
            earlier_skips: Default::default(),
            skipped_in_a_row: 0,
        };
        let state = TrainState {
            format_version: CHECKPOINT_FORMAT_VERSION,
            step: 2,
            cursors: vec![cursor],
            cursor: None,
            config: config.clone(),
            devices: 1,
            processes: 1,
            loss_scale: None,
        };
        let saved = save(dir.path(), &model, &clip, stepper.optimizer(), &state, 2).expect("save");
        let restored = load(&saved, &device).expect("load");
        let mut resumed = Stepper::new(
            Loss::info_nce(),
            &optimizer,
            NonFinite::Stop,
            &restored.model,
        );
        let record = restored.optimizer;
        resumed.set_optimizer(resumed.optimizer().clone().load_record(record));
        let (a, ra) = stepper
            .step(model, images.clone(), tokens.clone(), 1, 1e-3, 2, &Solo)
            .expect("a");
        let (b, rb) = resumed
            .step(restored.model, images, tokens, 1, 1e-3, 2, &Solo)
            .expect("b");
        assert_eq!(ra.loss.to_bits(), rb.loss.to_bits(), "loss before the step");
        assert_eq!(ra.grad_norm, rb.grad_norm, "grad norms");
        let wa = a
            .vision
            .proj
            .as_ref()
            .expect("CLIP projection")
            .weight
            .val()
            .into_data();
        let wb = b
            .vision
            .proj
            .as_ref()
            .expect("CLIP projection")
            .weight
            .val()
            .into_data();
        assert_eq!(wa, wb, "weights after a restored step");
        let ga = a
            .vision
            .ln_pre
            .as_ref()
            .expect("ln_pre")
            .gamma
            .val()
            .into_data();
        let gb = b
            .vision
            .ln_pre
            .as_ref()
            .expect("ln_pre")
            .gamma
            .val()
            .into_data();
        assert_eq!(ga, gb, "no-decay weights after a restored step");
    }
}
