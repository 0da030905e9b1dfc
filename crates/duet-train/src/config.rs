//! The train config: one TOML file composing model, data, loss, optimizer, schedule, training,
//! checkpoints, evaluation and logging, checked whole before any work.
//!
//! ```toml
//! [model]
//! config = "tiny"                  # a preset in configs/model/, or an OpenCLIP / HF config path
//! [data]
//! train = "datasets/sample/train/{00000..00002}.tar"
//! [train]
//! steps = 300
//! batch_size = 64
//! ```
//!
//! Every section but `model`, `data` and `train` has defaults (OpenCLIP's where it has one).
//! Fine-tuning sets `model.from` (pretrained weights) instead of `model.config`, and may lock
//! towers in `[lock]` ([`LockConfig`]).
//! Unknown keys and wrong types are errors naming the full key (`train.batch_size`);
//! `--set section.key=value` overrides are applied to the TOML before it is read, so they are
//! checked the same way.

use std::path::{Path, PathBuf};

use duet_data::Sampling;
use duet_loss::Loss;
use duet_model::{ClipConfig, config_from_name_or_path, read_config};
use serde::{Deserialize, Serialize};

use crate::TrainError;
use crate::checkpoint::resolve_model_dir;
use crate::lock::{LockConfig, group_count};
use crate::schedule::ScheduleConfig;

/// A whole train config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// The model to build.
    pub model: ModelSection,
    /// Where the samples come from.
    pub data: DataSection,
    /// The contrastive objective.
    #[serde(default = "default_loss")]
    pub loss: Loss,
    /// AdamW settings.
    #[serde(default)]
    pub optimizer: OptimizerConfig,
    /// The learning-rate schedule.
    #[serde(default)]
    pub schedule: ScheduleConfig,
    /// Steps, batch size, seed.
    pub train: TrainSection,
    /// When and how many checkpoints to keep.
    #[serde(default)]
    pub checkpoint: CheckpointConfig,
    /// Logging cadence.
    #[serde(default)]
    pub log: LogConfig,
    /// Locked towers (LiT).
    #[serde(default)]
    pub lock: LockConfig,
    /// Held-out evaluation during and at the end of the run.
    #[serde(default)]
    pub eval: EvalConfig,
}

/// `[eval]`: held-out sets evaluated every `every_steps` steps and at the end of the run.
///
/// ```toml
/// [eval]
/// every_steps = 100
/// [[eval.retrieval]]
/// name = "val"
/// data = "datasets/sample/val/00000.tar"
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalConfig {
    /// Evaluate every this many steps; 0 evaluates only at the end.
    pub every_steps: u64,
    /// Pairs per forward pass.
    pub batch_size: usize,
    /// Image–text retrieval sets (OpenCLIP `--val-data`).
    pub retrieval: Vec<RetrievalSet>,
    /// Zero-shot classification sets (OpenCLIP `--imagenet-val`, generalised).
    pub zero_shot: Vec<ZeroShotSet>,
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self {
            every_steps: 0,
            batch_size: 256,
            retrieval: Vec::new(),
            zero_shot: Vec::new(),
        }
    }
}

/// One `[[eval.zero_shot]]` set: metrics `<name>/top1`, `<name>/top5`, `<name>/mean_per_class`.
///
/// ```toml
/// [[eval.zero_shot]]
/// name = "fmnist"
/// dataset = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"
/// classes = "datasets/fashion-mnist/classes.txt"
/// templates = "cifar"
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZeroShotSet {
    /// Names the metrics; letters, digits, `_` and `-`.
    pub name: String,
    /// An image folder, an IDX images file, or shards with `.cls` (as `duet eval zero-shot`).
    pub dataset: String,
    /// Class names, one per line in label order; a folder's sub-folders when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classes: Option<PathBuf>,
    /// A built-in template list (`openai_imagenet`, `simple_imagenet`, `cifar`, `photo`) or a
    /// file with one `{}` template per line.
    #[serde(default = "default_templates")]
    pub templates: String,
}

fn default_templates() -> String {
    "openai_imagenet".into()
}

/// One `[[eval.retrieval]]` set: its metrics are logged as `<name>/i2t_r1`, ….
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrievalSet {
    /// Names the metrics; letters, digits, `_` and `-`.
    pub name: String,
    /// Shard spec of image–caption pairs (read with `data.image_keys` / `data.text_key`).
    pub data: String,
}

/// The learning rate `duet finetune` uses when the config sets none: 1e-5, a common choice for
/// fine-tuning pretrained CLIP (OpenCLIP's own default, 5e-4, is a from-scratch rate).
pub const FINETUNE_DEFAULT_LR: f64 = 1e-5;

fn default_loss() -> Loss {
    Loss::InfoNce {
        init_logit_scale: (1.0_f64 / 0.07).ln(),
    }
}

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
}

impl TrainSection {
    /// Samples per optimizer step on `devices` data-parallel devices: `batch_size ×
    /// accum_freq × devices`, every one a negative for every other.
    pub fn global_batch(&self, devices: usize) -> usize {
        self.batch_size * self.accum_freq * devices
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

impl TrainConfig {
    /// Reads `path`, applies `overrides` (`section.key=value`), and checks everything.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self, TrainError> {
        let text = std::fs::read_to_string(path).map_err(|source| TrainError::ConfigRead {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string(), overrides)
    }

    /// [`Self::load`] on text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str, overrides: &[String]) -> Result<Self, TrainError> {
        let table = table(text, origin, overrides)?;
        Self::from_table(table, origin)
    }

    /// The config of `duet finetune`: `path` with `overrides`, starting from the weights at
    /// `from` (replacing any `model.config`), at [`FINETUNE_DEFAULT_LR`] unless the file or an
    /// override sets `optimizer.lr`.
    pub fn load_finetune(
        path: &Path,
        from: &Path,
        overrides: &[String],
    ) -> Result<Self, TrainError> {
        let text = std::fs::read_to_string(path).map_err(|source| TrainError::ConfigRead {
            path: path.to_path_buf(),
            source,
        })?;
        let origin = path.display().to_string();
        let mut table = table(&text, &origin, overrides)?;
        let section = |table: &mut toml::Table, name: &str| -> Result<toml::Table, TrainError> {
            match table.remove(name) {
                None => Ok(toml::Table::new()),
                Some(toml::Value::Table(t)) => Ok(t),
                Some(_) => Err(TrainError::ConfigKey {
                    origin: origin.clone(),
                    key: name.to_owned(),
                    message: "must be a section".into(),
                }),
            }
        };
        let mut model = section(&mut table, "model")?;
        model.remove("config");
        model.insert(
            "from".into(),
            toml::Value::String(from.display().to_string()),
        );
        table.insert("model".into(), toml::Value::Table(model));
        let mut optimizer = section(&mut table, "optimizer")?;
        optimizer
            .entry("lr")
            .or_insert(toml::Value::Float(FINETUNE_DEFAULT_LR));
        table.insert("optimizer".into(), toml::Value::Table(optimizer));
        Self::from_table(table, &origin)
    }

    /// A run directory's resolved `config.toml`, for `duet resume`: checked like any config,
    /// except that `model.from` need not exist any more (the checkpoint holds the model); see
    /// [`Self::validate_lock`].
    pub fn load_run(path: &Path) -> Result<Self, TrainError> {
        let text = std::fs::read_to_string(path).map_err(|source| TrainError::ConfigRead {
            path: path.to_path_buf(),
            source,
        })?;
        let origin = path.display().to_string();
        let config = Self::deserialize_table(table(&text, &origin, &[])?, &origin)?;
        config.validate_settings()?;
        if config.model.from.is_none() {
            config.validate()?;
        }
        Ok(config)
    }

    fn from_table(table: toml::Table, origin: &str) -> Result<Self, TrainError> {
        let config = Self::deserialize_table(table, origin)?;
        config.validate()?;
        Ok(config)
    }

    fn deserialize_table(table: toml::Table, origin: &str) -> Result<Self, TrainError> {
        let config: Self =
            serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
                TrainError::ConfigKey {
                    origin: origin.to_owned(),
                    key: e.path().to_string(),
                    message: one_line(&e.inner().to_string()),
                }
            })?;
        Ok(config)
    }

    /// The model config the `[model]` section names (read from the weights' directory for
    /// `model.from`), overrides applied and checked.
    pub fn clip_config(&self) -> Result<ClipConfig, TrainError> {
        let m = &self.model;
        let mut clip = match (&m.config, &m.from) {
            (Some(name), None) => {
                config_from_name_or_path(name).map_err(|source| TrainError::Model {
                    key: "model.config".into(),
                    source,
                })?
            }
            (None, Some(from)) => {
                let dir = resolve_model_dir(from)?;
                let (clip, _) = read_config(&dir).map_err(|source| TrainError::Model {
                    key: "model.from".into(),
                    source,
                })?;
                clip
            }
            (Some(_), Some(_)) => {
                return Err(TrainError::invalid(
                    "model.from",
                    "set either model.config (a fresh model) or model.from (pretrained weights), \
                     not both",
                ));
            }
            (None, None) => {
                return Err(TrainError::invalid(
                    "model",
                    "set model.config (a preset or config path) or model.from (pretrained weights)",
                ));
            }
        };
        if let Some(size) = m.image_size {
            if m.from.is_some() && size != clip.vision.image_size {
                return Err(TrainError::invalid(
                    "model.image_size",
                    format!(
                        "the pretrained model takes {} px images; resizing its position \
                         embeddings to {size} px is not supported",
                        clip.vision.image_size
                    ),
                ));
            }
            clip.vision.image_size = size;
        }
        clip.validate().map_err(|source| TrainError::Model {
            key: if m.image_size.is_some() {
                "model.image_size".into()
            } else if m.from.is_some() {
                "model.from".into()
            } else {
                "model.config".into()
            },
            source,
        })?;
        Ok(clip)
    }

    /// Every value constraint serde cannot express, the model source included; the error names
    /// the key.
    pub fn validate(&self) -> Result<(), TrainError> {
        self.validate_settings()?;
        self.validate_lock(&self.clip_config()?)
    }

    /// [`Self::validate`] but for the model source and `[lock]`.
    fn validate_settings(&self) -> Result<(), TrainError> {
        let positive = [
            ("train.steps", self.train.steps),
            ("train.batch_size", self.train.batch_size as u64),
            ("train.accum_freq", self.train.accum_freq as u64),
            ("checkpoint.every_steps", self.checkpoint.every_steps),
            ("checkpoint.keep_last", self.checkpoint.keep_last as u64),
            ("log.every_steps", self.log.every_steps),
            ("data.readers", self.data.readers as u64),
        ];
        if let Some((key, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(TrainError::invalid(*key, "must be at least 1, got 0"));
        }
        let o = &self.optimizer;
        if !(o.lr.is_finite() && o.lr > 0.0) {
            return Err(TrainError::invalid(
                "optimizer.lr",
                format!("must be positive, got {}", o.lr),
            ));
        }
        for (key, beta) in [("optimizer.beta1", o.beta1), ("optimizer.beta2", o.beta2)] {
            if !(0.0..1.0).contains(&beta) {
                return Err(TrainError::invalid(
                    key,
                    format!("must be in [0, 1), got {beta}"),
                ));
            }
        }
        if !(o.eps.is_finite() && o.eps > 0.0) {
            return Err(TrainError::invalid(
                "optimizer.eps",
                format!("must be positive, got {}", o.eps),
            ));
        }
        if !(o.weight_decay.is_finite() && o.weight_decay >= 0.0) {
            return Err(TrainError::invalid(
                "optimizer.weight_decay",
                format!("must be zero or positive, got {}", o.weight_decay),
            ));
        }
        if let Some(norm) = o.grad_clip_norm
            && !(norm.is_finite() && norm > 0.0)
        {
            return Err(TrainError::invalid(
                "optimizer.grad_clip_norm",
                format!("must be positive, got {norm}"),
            ));
        }
        if self.data.image_keys.is_empty() {
            return Err(TrainError::invalid(
                "data.image_keys",
                "must name at least one field",
            ));
        }
        self.schedule.validate(self.train.steps)?;
        if self.eval.batch_size == 0 {
            return Err(TrainError::invalid(
                "eval.batch_size",
                "must be at least 1, got 0",
            ));
        }
        let names: Vec<(String, &str)> = self
            .eval
            .retrieval
            .iter()
            .enumerate()
            .map(|(i, set)| (format!("eval.retrieval[{i}]"), set.name.as_str()))
            .chain(
                self.eval
                    .zero_shot
                    .iter()
                    .enumerate()
                    .map(|(i, set)| (format!("eval.zero_shot[{i}]"), set.name.as_str())),
            )
            .collect();
        for (i, (key, name)) in names.iter().enumerate() {
            let name_ok = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !name_ok {
                return Err(TrainError::invalid(
                    format!("{key}.name"),
                    format!("{name:?}: use letters, digits, _ and -"),
                ));
            }
            if names[..i].iter().any(|(_, other)| other == name) {
                return Err(TrainError::invalid(
                    format!("{key}.name"),
                    format!("{name:?} is used twice"),
                ));
            }
        }
        for (i, set) in self.eval.retrieval.iter().enumerate() {
            duet_data::parse_spec(&set.data, None).map_err(|e| {
                TrainError::invalid(format!("eval.retrieval[{i}].data"), e.to_string())
            })?;
        }
        for (i, set) in self.eval.zero_shot.iter().enumerate() {
            let key = format!("eval.zero_shot[{i}]");
            duet_eval::load_templates(&set.templates)
                .map_err(|e| TrainError::invalid(format!("{key}.templates"), e.to_string()))?;
            crate::evaluate::load_classes(set).map_err(|e| {
                let field = if set.classes.is_some() {
                    "classes"
                } else {
                    "dataset"
                };
                TrainError::invalid(format!("{key}.{field}"), e.to_string())
            })?;
        }
        duet_data::parse_spec(&self.data.train, self.data.upsampling.as_deref()).map_err(|e| {
            let key = if matches!(e, duet_data::DataError::UpsamplingMismatch { .. }) {
                "data.upsampling"
            } else {
                "data.train"
            };
            TrainError::invalid(key, e.to_string())
        })?;
        Ok(())
    }

    /// `[lock]` against the model's tower depths.
    pub fn validate_lock(&self, clip: &ClipConfig) -> Result<(), TrainError> {
        for (key, locked, unlocked, blocks) in [
            (
                "lock.image_unlocked_groups",
                self.lock.image,
                self.lock.image_unlocked_groups,
                clip.vision.layers,
            ),
            (
                "lock.text_unlocked_layers",
                self.lock.text,
                self.lock.text_unlocked_layers,
                clip.text.layers,
            ),
        ] {
            if unlocked > 0 && !locked {
                return Err(TrainError::invalid(
                    key,
                    "only applies to a locked tower; set lock.image / lock.text = true",
                ));
            }
            if unlocked > group_count(blocks) {
                return Err(TrainError::invalid(
                    key,
                    format!(
                        "the tower has {} groups ({blocks} blocks + embeddings + projection), got \
                         {unlocked}",
                        group_count(blocks)
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// The TOML table of `text` with `overrides` applied.
fn table(text: &str, origin: &str, overrides: &[String]) -> Result<toml::Table, TrainError> {
    let mut table: toml::Table =
        text.parse()
            .map_err(|e: toml::de::Error| TrainError::ConfigSyntax {
                origin: origin.to_owned(),
                message: one_line(&e.to_string()),
            })?;
    for arg in overrides {
        apply_override(&mut table, arg)?;
    }
    Ok(table)
}

/// The first line of a possibly multi-line message, trimmed.
fn one_line(message: &str) -> String {
    let mut lines = message.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.next().unwrap_or_default().to_owned();
    // toml's parse errors put the reason on the last line, after a source excerpt.
    match lines.next_back() {
        Some(last) if first.starts_with("TOML parse error") => format!("{first}: {last}"),
        _ => first,
    }
}

/// Sets `section.key=value` in `table`; `value` is read as TOML (`100`, `true`, `"x"`, `[1, 2]`)
/// and, if that fails, taken as a plain string.
fn apply_override(table: &mut toml::Table, arg: &str) -> Result<(), TrainError> {
    let bad = |reason: &str| TrainError::Override {
        arg: arg.to_owned(),
        reason: reason.to_owned(),
    };
    let (path, raw) = arg
        .split_once('=')
        .ok_or_else(|| bad("expected section.key=value"))?;
    let keys: Vec<&str> = path.trim().split('.').collect();
    if keys.iter().any(|k| k.is_empty()) {
        return Err(bad("empty key"));
    }
    let raw = raw.trim();
    let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()));
    let (last, parents) = keys.split_last().ok_or_else(|| bad("empty key"))?;
    let mut current = table;
    for key in parents {
        let entry = current
            .entry((*key).to_owned())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = entry
            .as_table_mut()
            .ok_or_else(|| bad(&format!("`{key}` is not a section")))?;
    }
    current.insert((*last).to_owned(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[model]
config = "tiny"
[data]
train = "datasets/sample/train/{00000..00002}.tar"
[train]
steps = 100
batch_size = 32
"#;

    fn parse(text: &str, overrides: &[&str]) -> Result<TrainConfig, TrainError> {
        let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
        TrainConfig::parse(text, "test.toml", &overrides)
    }

    fn error(text: &str, overrides: &[&str]) -> String {
        let err = parse(text, overrides).expect_err("invalid");
        let message = err.to_string();
        assert!(!message.contains('\n'), "one line: {message}");
        message
    }

    #[test]
    fn minimal_config_gets_openclip_defaults() {
        let c = parse(MINIMAL, &[]).expect("valid");
        assert_eq!(c.optimizer, OptimizerConfig::default());
        assert_eq!(c.optimizer.lr, 5e-4);
        assert_eq!((c.optimizer.beta2, c.optimizer.eps), (0.98, 1e-6));
        assert_eq!(c.train.seed, 0);
        assert_eq!(c.checkpoint.keep_last, 3);
        assert_eq!(c.data.sampling, Sampling::Exact);
    }

    #[test]
    fn unknown_key_is_named_with_its_section() {
        let message = error(&format!("{MINIMAL}batchsize = 3\n"), &[]);
        assert!(message.contains("train"), "{message}");
        assert!(message.contains("batchsize"), "{message}");
        let message = error(&format!("{MINIMAL}[optimiser]\nlr = 1\n"), &[]);
        assert!(message.contains("optimiser"), "{message}");
    }

    #[test]
    fn bad_type_names_the_key() {
        let message = error(MINIMAL, &["train.batch_size=\"many\""]);
        assert!(message.contains("train.batch_size"), "{message}");
        assert!(message.contains("invalid type"), "{message}");
    }

    #[test]
    fn batch_size_zero_is_rejected() {
        let message = error(MINIMAL, &["train.batch_size=0"]);
        assert!(message.contains("train.batch_size"), "{message}");
    }

    #[test]
    fn image_size_must_divide_by_the_patch() {
        // The tiny preset has 8 px patches: 30 is not a multiple.
        let message = error(MINIMAL, &["model.image_size=30"]);
        assert!(message.contains("model.image_size"), "{message}");
        assert!(message.contains("not divisible"), "{message}");
        parse(MINIMAL, &["model.image_size=32"]).expect("32 is fine");
    }

    #[test]
    fn overrides_set_nested_keys_and_take_toml_values() {
        let c = parse(
            MINIMAL,
            &[
                "train.steps=7",
                "optimizer.grad_clip_norm=1.5",
                "data.sampling=resampled",
            ],
        )
        .expect("valid");
        assert_eq!(c.train.steps, 7);
        assert_eq!(c.optimizer.grad_clip_norm, Some(1.5));
        assert_eq!(c.data.sampling, Sampling::Resampled);
        let message = error(MINIMAL, &["train"]);
        assert!(message.contains("section.key=value"), "{message}");
        let message = error(MINIMAL, &["data.train.x=1"]);
        assert!(message.contains("not a section"), "{message}");
    }

    #[test]
    fn syntax_errors_are_one_line() {
        let message = error("[model\nconfig = 1", &[]);
        assert!(message.starts_with("test.toml"), "{message}");
    }

    #[test]
    fn bad_shard_spec_names_data_train() {
        let message = error(MINIMAL, &["data.train=\"a/{0..2.tar\""]);
        assert!(message.starts_with("data.train"), "{message}");
    }

    #[test]
    fn unknown_preset_names_model_config() {
        let message = error(MINIMAL, &["model.config=\"ViT-Q-99\""]);
        assert!(message.contains("model.config"), "{message}");
    }
}

#[cfg(test)]
mod finetune {
    use super::*;

    fn fixture() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/clip-tiny/hf")
    }

    fn tiny_toml() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/tiny.toml")
    }

    fn set(overrides: &[&str]) -> Vec<String> {
        overrides.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn finetune_replaces_the_model_and_defaults_to_a_small_lr() {
        // tiny.toml sets optimizer.lr = 1e-3, which wins over the fine-tune default.
        let c = TrainConfig::load_finetune(&tiny_toml(), &fixture(), &[]).expect("valid");
        assert_eq!(c.model.config, None);
        assert_eq!(c.model.from.as_deref(), Some(fixture().as_path()));
        assert_eq!(c.optimizer.lr, 1e-3);
        // Without an lr in the file, 1e-5; an override still wins.
        let text = std::fs::read_to_string(tiny_toml()).expect("tiny.toml");
        let dir = tempfile::tempdir().expect("tempdir");
        let no_lr = dir.path().join("no-lr.toml");
        std::fs::write(&no_lr, text.replace("lr = 1e-3\n", "")).expect("write");
        let c = TrainConfig::load_finetune(&no_lr, &fixture(), &[]).expect("valid");
        assert_eq!(c.optimizer.lr, FINETUNE_DEFAULT_LR);
        let c = TrainConfig::load_finetune(&no_lr, &fixture(), &set(&["optimizer.lr=3e-5"]))
            .expect("valid");
        assert_eq!(c.optimizer.lr, 3e-5);
        // The architecture is the weights': the HF fixture has a 32 px, 2-block image tower.
        let clip = c.clip_config().expect("config.json");
        assert_eq!((clip.vision.image_size, clip.vision.layers), (32, 2));
    }

    #[test]
    fn model_needs_exactly_one_source() {
        let from = format!("model.from=\"{}\"", fixture().display());
        let err = TrainConfig::load(&tiny_toml(), &set(&[&from])).expect_err("both");
        assert!(
            err.to_string().starts_with("model.from: set either"),
            "{err}"
        );
        let missing = TrainConfig::load_finetune(&tiny_toml(), Path::new("/no/such/model"), &[])
            .expect_err("missing weights");
        assert!(missing.to_string().starts_with("model.from"), "{missing}");
        let err =
            TrainConfig::load_finetune(&tiny_toml(), &fixture(), &set(&["model.image_size=64"]))
                .expect_err("resize");
        assert!(err.to_string().starts_with("model.image_size"), "{err}");
    }

    #[test]
    fn lock_settings_are_checked_against_the_towers() {
        let err = TrainConfig::load_finetune(
            &tiny_toml(),
            &fixture(),
            &set(&["lock.image_unlocked_groups=1"]),
        )
        .expect_err("not locked");
        assert!(
            err.to_string().starts_with("lock.image_unlocked_groups"),
            "{err}"
        );
        // 2 blocks + embeddings + projection = 4 groups.
        let err = TrainConfig::load_finetune(
            &tiny_toml(),
            &fixture(),
            &set(&["lock.text=true", "lock.text_unlocked_layers=5"]),
        )
        .expect_err("too many");
        assert!(err.to_string().contains("4 groups"), "{err}");
        TrainConfig::load_finetune(
            &tiny_toml(),
            &fixture(),
            &set(&["lock.text=true", "lock.text_unlocked_layers=4"]),
        )
        .expect("all 4 unlocked is allowed");
    }
}

#[cfg(test)]
mod shipped {
    use super::*;

    /// Every train config in `configs/` parses and validates (model presets are tested in
    /// duet-model).
    #[test]
    fn every_shipped_train_config_is_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
        let mut checked = 0;
        for entry in std::fs::read_dir(&dir).expect("configs/ exists") {
            let path = entry.expect("dir entry").path();
            if path.extension().is_some_and(|e| e == "toml") {
                TrainConfig::load(&path, &[]).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                checked += 1;
            }
        }
        assert!(checked >= 1, "no train config found in {}", dir.display());
    }
}
