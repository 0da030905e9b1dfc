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

use duet_loss::Loss;
use duet_model::{ClipConfig, config_from_name_or_path, read_config};
use serde::{Deserialize, Serialize};

use crate::TrainError;
use crate::evaluate::EvalConfig;
use crate::lock::LockConfig;
use crate::schedule::ScheduleConfig;

mod overrides;
mod sections;
#[cfg(test)]
mod tests;
mod validate;

use overrides::{one_line, table};
pub(crate) use sections::one;
pub use sections::{
    CheckpointConfig, DataSection, LogConfig, ModelSection, NonFinite, OptimizerConfig,
    TrainSection,
};

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

/// The learning rate `duet finetune` uses when the config sets none: 1e-5, a common choice for
/// fine-tuning pretrained CLIP (OpenCLIP's own default, 5e-4, is a from-scratch rate).
pub const FINETUNE_DEFAULT_LR: f64 = 1e-5;

fn default_loss() -> Loss {
    Loss::InfoNce {
        init_logit_scale: (1.0_f64 / 0.07).ln(),
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

    /// A run directory's resolved `config.toml`, for `duet resume`, with `overrides` (a
    /// resume on another process count sets `train.accum_freq` to keep the global batch):
    /// checked like any config, except that `model.from` need not exist any more (the
    /// checkpoint holds the model); see [`Self::validate_lock`].
    pub fn load_run(path: &Path, overrides: &[String]) -> Result<Self, TrainError> {
        let text = std::fs::read_to_string(path).map_err(|source| TrainError::ConfigRead {
            path: path.to_path_buf(),
            source,
        })?;
        let origin = path.display().to_string();
        let config = Self::deserialize_table(table(&text, &origin, overrides)?, &origin)?;
        config.validate_settings()?;
        if config.model.from.is_none() {
            config.validate()?;
        }
        Ok(config)
    }

    fn from_table(table: toml::Table, origin: &str) -> Result<Self, TrainError> {
        let loss_given = table.contains_key("loss");
        let mut config = Self::deserialize_table(table, origin)?;
        if !loss_given {
            config.loss = config.default_loss_for_model();
        }
        config.validate()?;
        Ok(config)
    }

    /// The loss a config without `[loss]` trains with: the sigmoid loss (at the model's
    /// `logit_scale` and `logit_bias` inits: ln 10 and -10 for SigLIP) for a model with a
    /// `logit_bias` (a SigLIP preset or SigLIP weights), InfoNCE otherwise. A model config
    /// that cannot be read keeps InfoNCE here; `validate` names what is wrong with it.
    fn default_loss_for_model(&self) -> Loss {
        match self.model_config() {
            Ok(ClipConfig {
                logit_scale_init,
                logit_bias_init: Some(bias),
                ..
            }) => Loss::Sigmoid {
                init_logit_scale: logit_scale_init,
                init_logit_bias: bias,
            },
            _ => default_loss(),
        }
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
    /// `model.from`), overrides applied and checked. A fresh model takes its `logit_scale`
    /// and `logit_bias` inits from the loss, as OpenCLIP's `--siglip` sets them (the sigmoid
    /// loss gives a CLIP preset a bias); pretrained weights must match the loss: a model with
    /// a `logit_bias` (SigLIP) trains with the sigmoid loss, one without with InfoNCE.
    pub fn clip_config(&self) -> Result<ClipConfig, TrainError> {
        let mut clip = self.model_config()?;
        if let Some(dir) = &self.model.tokenizer {
            let duet_model::TokenizerSpec::File(file) = &mut clip.text.tokenizer else {
                return Err(TrainError::invalid(
                    "model.tokenizer",
                    "this model tokenizes with the bundled CLIP BPE; model.tokenizer is for \
                     models of their own tokenizer (SigLIP)",
                ));
            };
            if self.model.from.is_some() {
                return Err(TrainError::invalid(
                    "model.tokenizer",
                    "pretrained weights bring their own tokenizer files; set model.tokenizer \
                     for a fresh model (model.config) only",
                ));
            }
            duet_model::hf::read_hf_tokenizer(dir, file).map_err(|source| TrainError::Model {
                key: "model.tokenizer".into(),
                source,
            })?;
            if file.files.tokenizer_json().is_none() {
                return Err(TrainError::invalid(
                    "model.tokenizer",
                    format!("{} holds no tokenizer.json", dir.display()),
                ));
            }
        }
        let loss_bias = self.loss.init_logit_bias();
        if self.model.from.is_none() {
            clip.logit_scale_init = self.loss.init_logit_scale();
            clip.logit_bias_init = loss_bias;
        } else if clip.logit_bias_init.is_some() != loss_bias.is_some() {
            let (model, wants) = match clip.logit_bias_init {
                Some(_) => ("has a logit_bias (SigLIP)", "\"sigmoid\""),
                None => ("has no logit_bias (CLIP)", "\"info_nce\""),
            };
            return Err(TrainError::invalid(
                "loss.kind",
                format!(
                    "the model at model.from {model}: train it with loss.kind = {wants}, or \
                     leave [loss] out and the model's family chooses"
                ),
            ));
        }
        Ok(clip)
    }

    /// [`Self::clip_config`] before the loss's inits and checks.
    fn model_config(&self) -> Result<ClipConfig, TrainError> {
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
}

/// The model directory `path` stands for: a run directory stands for its latest checkpoint;
/// anything else (a model directory, a checkpoint) for itself.
pub fn resolve_model_dir(path: &Path) -> Result<PathBuf, TrainError> {
    let latest = path.join("checkpoints").join("latest");
    if !latest.is_file() {
        return Ok(path.to_path_buf());
    }
    let name = std::fs::read_to_string(&latest).map_err(|e| TrainError::Checkpoint {
        path: latest.clone(),
        message: e.to_string(),
    })?;
    Ok(path.join("checkpoints").join(name.trim()))
}
