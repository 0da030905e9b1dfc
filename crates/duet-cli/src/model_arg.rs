//! The `--model` argument of `embed`, `eval` and `export`: a model directory of any layout
//! (Hugging Face, OpenCLIP, duet), a checkpoint, or a run directory (its latest checkpoint).

use std::path::Path;

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use duet_model::{LoadedModel, Precision, load_model};
use duet_train::checkpoint::resolve_model_dir;

/// Loads the model `path` names onto `device`.
pub fn load(path: &Path, device: &Device) -> Result<LoadedModel> {
    let dir = resolve_model_dir(path)?;
    load_model(&dir, device).with_context(|| format!("loading --model {}", dir.display()))
}

/// [`load`], computing in `precision` (`--precision`); a device without that type is refused
/// before the weights are read.
pub fn load_in(path: &Path, device: &Device, precision: Precision) -> Result<LoadedModel> {
    if let Err(why) = precision.check_on(std::slice::from_ref(device)) {
        bail!("--precision {precision}: {why}");
    }
    let mut loaded = load(path, device)?;
    loaded.model = loaded.model.with_precision(precision);
    Ok(loaded)
}

/// clap's parser for `--precision`.
pub fn parse_precision(value: &str) -> Result<Precision, String> {
    value.parse()
}
