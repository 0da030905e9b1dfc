//! `metrics.jsonl`: one JSON object per logged step ([`MetricsRow`]) and per evaluation
//! (`{"step", "<set>/<metric>", …}`), written by rank 0 alone.

use std::io::Write;
use std::path::Path;

use serde::Serialize;

use crate::TrainError;
use crate::checkpoint::{bad, io};

/// One `metrics.jsonl` row.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct MetricsRow {
    /// Steps completed (1-based: the row of the first step has `step = 1`).
    pub step: u64,
    /// The step's loss.
    pub loss: f64,
    /// The step's learning rate.
    pub lr: f64,
    /// `logit_scale` after the step.
    pub logit_scale: f64,
    /// Global gradient norm before clipping, when clipping is on.
    pub grad_norm: Option<f64>,
    /// Samples per second over the logging window, over every process (OpenCLIP's
    /// `samples_per_second`).
    pub samples_per_sec: f64,
    /// The same per data-parallel device (OpenCLIP's `samples_per_second_per_gpu`).
    #[serde(default)]
    pub samples_per_sec_per_device: f64,
    /// Several processes: payload bytes this rank handed to collectives per step, over the
    /// logging window (features, gradients, agreement; see `duet_dist::CommStats`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comm_bytes_per_step: Option<f64>,
    /// Several processes: seconds per step spent in collectives, waiting for peers included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comm_seconds_per_step: Option<f64>,
    /// The step's update was skipped: its loss was not finite (`train.on_nonfinite = "skip"`)
    /// or, in f16, its gradients overflowed.
    #[serde(default, skip_serializing_if = "is_false")]
    pub skipped: bool,
    /// f16: the loss scale the step used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_scale: Option<f64>,
    /// f16: steps skipped for overflowing gradients so far in the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped_steps: Option<u64>,
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// Appends `row` as one line.
pub(crate) fn append_metrics(path: &Path, row: &impl Serialize) -> Result<(), TrainError> {
    let line = serde_json::to_string(row).map_err(|e| bad(path, e.to_string()))?;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| io(path, e))?;
    writeln!(file, "{line}").map_err(|e| io(path, e))
}

/// Drops the rows a crashed run logged after the checkpoint it resumes from.
pub(crate) fn truncate_metrics(path: &Path, step: u64) -> Result<(), TrainError> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(());
    };
    let kept: String = text
        .lines()
        .filter(|line| {
            serde_json::from_str::<serde_json::Value>(line)
                .is_ok_and(|row| row["step"].as_u64().is_some_and(|s| s <= step))
        })
        .map(|line| format!("{line}\n"))
        .collect();
    std::fs::write(path, kept).map_err(|e| io(path, e))
}
