//! duet's trainer: the train config ([`TrainConfig`], TOML, checked whole before any work), the
//! learning-rate schedules ([`ScheduleConfig`]), AdamW with OpenCLIP's no-decay group and
//! global-norm clipping ([`optim`]), locked towers ([`lock`]), the step ([`Stepper`]) with
//! contrastive gradient accumulation and data parallelism over devices and processes (through a
//! [`duet_dist::Collective`]), checkpoints ([`checkpoint`]) and the run loop ([`run()`]).
//!
//! Modules and their arrows, one way: `run` → `start`, `step`, `evaluate`, `metrics`,
//! `checkpoint`; `start` → `checkpoint`, `sync`, `step`, `memory`; `step` → `optim`, `scaler`, `dropout`, `parallel` →
//! `towers`, `sync`; `towers`, `sync` → `lazy`; `checkpoint` → `config` → `evaluate` (its sets'
//! types), `lock`, `schedule`.

pub mod checkpoint;
mod config;
mod dropout;
mod error;
mod evaluate;
mod lazy;
pub mod lock;
mod memory;
mod metrics;
pub mod optim;
mod parallel;
mod run;
mod scaler;
mod schedule;
mod start;
mod step;
mod sync;
mod towers;

pub use config::{
    CheckpointConfig, DataSection, FINETUNE_DEFAULT_LR, LogConfig, ModelSection, NonFinite,
    OptimizerConfig, TrainConfig, TrainSection,
};
pub use dropout::PatchDropout;
pub use error::TrainError;
pub use evaluate::{
    EvalConfig, EvalMetrics, EvalResult, RetrievalSet, ZeroShotSet, evaluate, metrics_row,
};
pub use lock::LockConfig;
pub use memory::{MemoryBudget, StepMemory};
pub use metrics::MetricsRow;
pub use run::{Control, Progress, ProgressFn, RunSummary, loader_config, run};
pub use scaler::LossScale;
pub use schedule::ScheduleConfig;
pub use start::Start;
pub use step::{MAX_LOGIT_SCALE, StepReport, Stepper};
