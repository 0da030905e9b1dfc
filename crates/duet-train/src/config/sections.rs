//! The sections of a train config other than `[loss]`, `[schedule]`, `[lock]` and `[eval]`,
//! which live with what they configure.

use std::path::PathBuf;

use duet_data::{BasicFilter, FieldSelector, Sampling, TextField};
use duet_model::Precision;
use serde::{Deserialize, Serialize};

/// `[model]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// A preset name (`ViT-B-32`, `tiny`, …) or a path to an OpenCLIP model config / HF
    /// `config.json`: a fresh, seeded model. Exactly one of `config` and `from` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
    /// Pretrained weights to start from: a Hugging Face, OpenCLIP or duet model directory, a
    /// duet checkpoint, or a run directory (its latest checkpoint). The architecture is theirs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<PathBuf>,
    /// Overrides the vision tower's input size (OpenCLIP `--force-image-size`); fresh models
    /// only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_size: Option<usize>,
    /// A directory holding the tokenizer files (`tokenizer.json`, `tokenizer_config.json`, …)
    /// a fresh model of its own tokenizer (a SigLIP preset) trains with; they travel into its
    /// checkpoints. Pretrained weights bring theirs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokenizer: Option<PathBuf>,
}

/// `[data]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSection {
    /// The training shard spec (OpenCLIP `--train-data`).
    pub train: String,
    /// Per-source weights, `::`-separated (OpenCLIP `--train-data-upsampling-factors`).
    #[serde(default)]
    pub upsampling: Option<String>,
    /// `exact` passes or `resampled` shards (OpenCLIP `--dataset-resampled`).
    #[serde(default = "default_sampling")]
    pub sampling: Sampling,
    /// Shuffle buffer in samples.
    #[serde(default = "default_shuffle_buffer")]
    pub shuffle_buffer: usize,
    /// Reader threads (OpenCLIP `--workers`).
    #[serde(default = "default_readers")]
    pub readers: usize,
    /// Decode threads; 0 means one per core.
    #[serde(default)]
    pub decode_threads: usize,
    /// Image fields to try, first present wins.
    #[serde(default = "default_image_keys")]
    pub image_keys: Vec<String>,
    /// The caption field.
    #[serde(default = "default_text_key")]
    pub text_key: String,
    /// Data slots: the global batch is this many independent streams (each with its own shards,
    /// readers, shuffle buffer and cursor), dealt out to the processes of the job, so the data
    /// order does not depend on the process count and a run resumes exactly on any process
    /// count that divides it. Unset: the process count at the start of the run (1 without a
    /// launcher: one stream, as ever). Fixed for the life of the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slots: Option<usize>,
    /// `[data.filter]`: curation on the fly — DataComp's basic bounds (`min_words`,
    /// `min_chars`, `languages`, `min_side`, `max_aspect`), each optional; a sample breaking one
    /// is skipped and counted as `filtered_<reason>`, the cursor stays exact.
    #[serde(default, skip_serializing_if = "BasicFilter::is_none")]
    pub filter: BasicFilter,
}

impl DataSection {
    /// The image and caption fields, as the loader selects them.
    pub fn fields(&self) -> FieldSelector {
        FieldSelector {
            image: self.image_keys.clone(),
            text: TextField::Field {
                name: self.text_key.clone(),
            },
        }
    }
}

fn default_sampling() -> Sampling {
    Sampling::Exact
}
fn default_shuffle_buffer() -> usize {
    5000
}
fn default_readers() -> usize {
    2
}
fn default_image_keys() -> Vec<String> {
    ["jpg", "jpeg", "png", "webp", "image"]
        .map(String::from)
        .to_vec()
}
fn default_text_key() -> String {
    "txt".into()
}

/// `[optimizer]`: AdamW, OpenCLIP's defaults for ViTs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimizerConfig {
    /// Peak learning rate.
    pub lr: f64,
    /// First-moment decay.
    pub beta1: f64,
    /// Second-moment decay.
    pub beta2: f64,
    /// Denominator epsilon.
    pub eps: f64,
    /// Decoupled weight decay, on weight matrices only (not gains, biases, embeddings or
    /// `logit_scale`).
    pub weight_decay: f64,
    /// Clip the global gradient norm to this value; none by default (OpenCLIP `--grad-clip-norm`).
    pub grad_clip_norm: Option<f64>,
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        Self {
            lr: 5e-4,
            beta1: 0.9,
            beta2: 0.98,
            eps: 1e-6,
            weight_decay: 0.2,
            grad_clip_norm: None,
        }
    }
}

/// What to do when the loss is NaN or infinite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NonFinite {
    /// Stop with an error naming the step (the default).
    #[default]
    Stop,
    /// Skip the update and count it.
    Skip,
}

/// `[train]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSection {
    /// Optimizer steps to run.
    pub steps: u64,
    /// Samples per micro-batch, per device. A step takes `accum_freq` micro-batches, and every
    /// sample of the step is a negative for every other (OpenCLIP `--batch-size`).
    pub batch_size: usize,
    /// Seed of initialisation, data order and augmentation.
    #[serde(default)]
    pub seed: u64,
    /// Micro-batches per step, gradients accumulated with every negative (OpenCLIP
    /// `--accum-freq`; see [`crate::Stepper::gradients`]).
    #[serde(default = "one")]
    pub accum_freq: usize,
    /// What a NaN/Inf loss does.
    #[serde(default)]
    pub on_nonfinite: NonFinite,
    /// Each block of the global batch (a device's micro-batch on a process) takes the loss of
    /// its own rows against every column, and the gathered features' gradients go back to their
    /// owners: logits memory `b × B` per block instead of `B × B`, the same gradients (OpenCLIP
    /// `--local-loss --gather-with-grad`).
    #[serde(default)]
    pub local_loss: bool,
    /// Activation checkpointing (OpenCLIP `--grad-checkpointing`): each tower keeps only its
    /// blocks' inputs in the forward and recomputes one block at a time in the backward; the
    /// same gradients for less memory and about one more forward of the blocks.
    #[serde(default)]
    pub grad_checkpointing: bool,
    /// The towers' compute type (OpenCLIP `--precision`): `"f32"`, `"bf16"` or `"f16"` (also
    /// `"fp32"`, `"amp_bf16"`, `"amp"`); parameters, gradients and AdamW state stay f32 (see
    /// [`duet_model::Precision`]).
    #[serde(default)]
    pub precision: Precision,
    /// Patch dropout (FLIP; OpenCLIP `vision_cfg.patch_dropout` / `--force-patch-dropout`):
    /// the fraction of each image's patch tokens dropped in training steps, `[0, 1)`; 0 (the
    /// default) keeps them all. Evaluation always sees every patch.
    #[serde(default)]
    pub patch_dropout: f64,
    /// f16 only: the dynamic loss scale's starting value (torch `GradScaler(init_scale)`).
    #[serde(default = "default_loss_scale")]
    pub loss_scale: f64,
    /// f16 only: good steps after which the loss scale doubles (torch `growth_interval`).
    #[serde(default = "default_growth_interval")]
    pub loss_scale_growth_interval: u64,
}

fn default_loss_scale() -> f64 {
    crate::scaler::LossScale::INIT_SCALE
}

fn default_growth_interval() -> u64 {
    crate::scaler::LossScale::GROWTH_INTERVAL
}

impl TrainSection {
    /// Samples per optimizer step on `ranks` data-parallel devices (over every process):
    /// `batch_size × accum_freq × ranks`, every one a negative for every other.
    pub fn global_batch(&self, ranks: usize) -> usize {
        self.batch_size
            .saturating_mul(self.accum_freq)
            .saturating_mul(ranks)
    }
}

pub(crate) fn one() -> usize {
    1
}

/// `[checkpoint]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckpointConfig {
    /// Save every this many steps (and at the end).
    pub every_steps: u64,
    /// Checkpoints kept; older ones are deleted.
    pub keep_last: usize,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        Self {
            every_steps: 1000,
            keep_last: 3,
        }
    }
}

/// `[log]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Write a `metrics.jsonl` row every this many steps.
    pub every_steps: u64,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { every_steps: 10 }
    }
}
