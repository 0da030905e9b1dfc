//! duet's trainer. Today: the train config ([`TrainConfig`], TOML, checked whole before any
//! work), the learning-rate schedules ([`ScheduleConfig`]), AdamW with OpenCLIP's no-decay
//! group and global-norm clipping ([`optim`]); the step loop and checkpoints build on them
//! (issue 4, in progress).

pub mod checkpoint;
mod config;
mod error;
pub mod optim;
mod run;
mod schedule;
mod step;

pub use config::{
    CheckpointConfig, DataSection, LogConfig, ModelSection, NonFinite, OptimizerConfig,
    TrainConfig, TrainSection,
};
pub use error::TrainError;
pub use run::{Control, MetricsRow, Progress, ProgressFn, RunSummary, Start, loader_config, run};
pub use schedule::ScheduleConfig;
pub use step::{MAX_LOGIT_SCALE, StepReport, Stepper};
