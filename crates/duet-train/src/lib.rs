//! duet's trainer: the train config ([`TrainConfig`], TOML, checked whole before any work), the
//! learning-rate schedules ([`ScheduleConfig`]), AdamW with OpenCLIP's no-decay group and
//! global-norm clipping ([`optim`]), locked towers ([`lock`]), the step with contrastive
//! gradient accumulation ([`Stepper`]) and data parallelism over devices ([`parallel`]), checkpoints ([`checkpoint`]) and the run loop ([`run`]).

pub mod checkpoint;
mod config;
mod error;
mod evaluate;
pub mod lock;
pub mod optim;
pub mod parallel;
mod run;
mod schedule;
mod step;

pub use config::{
    CheckpointConfig, DataSection, EvalConfig, FINETUNE_DEFAULT_LR, LogConfig, ModelSection,
    NonFinite, OptimizerConfig, RetrievalSet, TrainConfig, TrainSection, ZeroShotSet,
};
pub use error::TrainError;
pub use evaluate::{EvalMetrics, EvalResult, evaluate, metrics_row};
pub use lock::LockConfig;
pub use run::{Control, MetricsRow, Progress, ProgressFn, RunSummary, Start, loader_config, run};
pub use schedule::ScheduleConfig;
pub use step::{MAX_LOGIT_SCALE, StepReport, Stepper};
