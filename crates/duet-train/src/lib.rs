//! duet's trainer. Today: the train config ([`TrainConfig`], TOML, checked whole before any
//! work) and the learning-rate schedules ([`ScheduleConfig`]); the step loop, optimizer groups
//! and checkpoints build on them (issue 4).

mod config;
mod error;
mod schedule;

pub use config::{
    CheckpointConfig, DataSection, LogConfig, ModelSection, NonFinite, OptimizerConfig,
    TrainConfig, TrainSection,
};
pub use error::TrainError;
pub use schedule::ScheduleConfig;
