//! The one error type of `duet-train`.

use std::path::PathBuf;

/// Everything that can stop a training run, each naming its file, key or step.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrainError {
    /// The config file could not be read.
    #[error("cannot read config {path}: {source}")]
    ConfigRead {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },

    /// The config is not valid TOML.
    #[error("{origin}: {message}")]
    ConfigSyntax {
        /// The file.
        origin: String,
        /// The parser's message, on one line.
        message: String,
    },

    /// A key is unknown or has the wrong type.
    #[error("{origin}: {key}: {message}")]
    ConfigKey {
        /// The file.
        origin: String,
        /// The full key, e.g. `train.batch_size`.
        key: String,
        /// What is wrong.
        message: String,
    },

    /// A `--set` argument is malformed.
    #[error("--set {arg}: {reason}")]
    Override {
        /// The argument as given.
        arg: String,
        /// What is wrong.
        reason: String,
    },

    /// A value is out of range.
    #[error("{key}: {message}")]
    InvalidValue {
        /// The full key.
        key: String,
        /// The constraint it breaks.
        message: String,
    },

    /// The model config is unusable.
    #[error("{key}: {source}")]
    Model {
        /// The train-config key that led to it.
        key: String,
        /// The model's error.
        source: duet_model::ModelError,
    },

    /// The loss could not be computed (a shape or config problem).
    #[error("step {step}: {source}")]
    Loss {
        /// The step.
        step: u64,
        /// The loss's error.
        source: duet_loss::LossError,
    },

    /// The loss is NaN or infinite and `train.on_nonfinite = "stop"`.
    #[error(
        "step {step}: the loss is {value}; lower optimizer.lr, set optimizer.grad_clip_norm, or set \
         train.on_nonfinite = \"skip\""
    )]
    NonFiniteLoss {
        /// The step.
        step: u64,
        /// The loss value.
        value: f64,
    },

    /// The data pipeline failed (no usable samples, an unreadable spec, …).
    #[error("data: {source}")]
    Data {
        /// The loader's error.
        source: duet_data::DataError,
    },

    /// An evaluation set failed.
    #[error("eval {set}: {source}")]
    Eval {
        /// The set's name.
        set: String,
        /// The evaluator's error.
        source: duet_eval::EvalError,
    },

    /// A collective with the other processes of the job failed (a peer left, timed out, or the
    /// engine failed); `rank` is this process's.
    #[error("rank {rank}: {what}: {source}")]
    Collective {
        /// This process's rank.
        rank: usize,
        /// What the collective was for (`gradients`, `features`, `checkpoint cursors`, …).
        what: &'static str,
        /// The engine's error.
        source: duet_dist::CommError,
    },

    /// The processes of a job disagree (config, checkpoint, data) where they must agree.
    #[error("ranks disagree: {message}")]
    RanksDisagree {
        /// Which ranks, and on what.
        message: String,
    },

    /// A checkpoint could not be written or read.
    #[error("checkpoint {path}: {message}")]
    Checkpoint {
        /// The file or directory.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

impl TrainError {
    pub(crate) fn invalid(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self::InvalidValue {
            key: key.into(),
            message: message.into(),
        }
    }
}
