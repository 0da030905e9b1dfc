//! The `--model` argument of `embed`, `eval` and `export`: a model directory of any layout
//! (Hugging Face, OpenCLIP, duet), a checkpoint, or a run directory (its latest checkpoint).

use std::path::Path;

use anyhow::{Context, Result};
use burn::tensor::Device;
use duet_model::{LoadedModel, load_model};
use duet_train::checkpoint::resolve_model_dir;

/// Loads the model `path` names onto `device`.
pub fn load(path: &Path, device: &Device) -> Result<LoadedModel> {
    let dir = resolve_model_dir(path)?;
    load_model(&dir, device).with_context(|| format!("loading --model {}", dir.display()))
}
