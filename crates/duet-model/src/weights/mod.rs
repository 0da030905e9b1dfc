//! Reading and writing model directories: Hugging Face, OpenCLIP and duet's own layout.

pub(crate) mod remap;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::tensor::Device;
use burn_store::ModuleSnapshot;
use serde::{Deserialize, Serialize};

use crate::hf::{
    HF_IGNORABLE, hf_table, parse_hf_config, parse_hf_preprocessor, parse_siglip_config,
    read_hf_tokenizer, read_tokenizer_files, to_hf_config, to_hf_preprocessor,
    write_tokenizer_files,
};
use crate::openclip::{
    OPENCLIP_IGNORABLE, openclip_siglip_table, openclip_table, parse_openclip_config,
    to_openclip_json,
};
use crate::{ClipConfig, ClipModel, ModelError, TokenizerSpec};
use remap::{HostTensor, Mapping, Transform};

pub use remap::{Mapping as KeyMapping, Transform as KeyTransform};

/// Version of duet's own model-directory layout, stored in `duet_model.json`.
pub const DUET_FORMAT_VERSION: u32 = 1;

/// The layouts duet reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelFormat {
    /// `config.json` + `model.safetensors` (+ optional `preprocessor_config.json`).
    HuggingFace,
    /// `open_clip_config.json` + `open_clip_model.safetensors`.
    OpenClip,
    /// `duet_model.json` + `model.safetensors`.
    Duet,
}

impl ModelFormat {
    /// `(config file, weight file)` of the layout.
    pub fn files(self) -> (&'static str, &'static str) {
        match self {
            Self::HuggingFace => ("config.json", "model.safetensors"),
            Self::OpenClip => ("open_clip_config.json", "open_clip_model.safetensors"),
            Self::Duet => ("duet_model.json", "model.safetensors"),
        }
    }

    /// Which layout `dir` holds; duet's own wins over HF when both config files exist.
    pub fn detect(dir: &Path) -> Result<Self, ModelError> {
        if !dir.is_dir() {
            return Err(ModelError::io(
                dir,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such model directory"),
            ));
        }
        [Self::Duet, Self::OpenClip, Self::HuggingFace]
            .into_iter()
            .find(|f| dir.join(f.files().0).is_file())
            .ok_or_else(|| ModelError::UnknownLayout {
                path: dir.to_path_buf(),
            })
    }
}

/// `duet_model.json`.
#[derive(Debug, Serialize, Deserialize)]
struct DuetManifest {
    format_version: u32,
    config: ClipConfig,
}

/// A model read from a directory, with the config it was built from.
#[derive(Debug)]
pub struct LoadedModel {
    /// The weights.
    pub model: ClipModel,
    /// Its shape and preprocessing constants.
    pub config: ClipConfig,
    /// The layout it came from.
    pub format: ModelFormat,
}

fn read_string(path: &Path) -> Result<String, ModelError> {
    std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))
}

/// Reads the config of a model directory of any known layout.
pub fn read_config(dir: &Path) -> Result<(ClipConfig, ModelFormat), ModelError> {
    let format = ModelFormat::detect(dir)?;
    let path = dir.join(format.files().0);
    let json = read_string(&path)?;
    let config = match format {
        ModelFormat::HuggingFace => {
            let pre = dir.join("preprocessor_config.json");
            let mean_std = if pre.is_file() {
                Some(parse_hf_preprocessor(&read_string(&pre)?, &pre)?)
            } else {
                None
            };
            match hf_model_type(&json) {
                Some(kind @ ("siglip" | "siglip2")) => {
                    let version = if kind == "siglip2" { 2 } else { 1 };
                    let mut config = parse_siglip_config(&json, &path, mean_std, version)?;
                    if version == 2 {
                        check_fixed_resolution(&pre, config.vision.num_patches())?;
                    }
                    if let TokenizerSpec::File(tokenizer) = &mut config.text.tokenizer {
                        read_hf_tokenizer(dir, tokenizer)?;
                    }
                    config
                }
                _ => parse_hf_config(&json, &path, mean_std)?,
            }
        }
        ModelFormat::OpenClip => {
            let mut config = parse_openclip_config(&json, &path)?;
            if let TokenizerSpec::File(tokenizer) = &mut config.text.tokenizer {
                read_hf_tokenizer(dir, tokenizer)?;
            }
            config
        }
        ModelFormat::Duet => {
            let manifest: DuetManifest =
                serde_json::from_str(&json).map_err(|e| ModelError::ConfigParse {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
            if manifest.format_version != DUET_FORMAT_VERSION {
                return Err(ModelError::ConfigParse {
                    path,
                    message: format!(
                        "format_version {} is not supported (this duet reads {DUET_FORMAT_VERSION})",
                        manifest.format_version
                    ),
                });
            }
            manifest.config.validate()?;
            let mut config = manifest.config;
            if let TokenizerSpec::File(tokenizer) = &mut config.text.tokenizer {
                tokenizer.files = read_tokenizer_files(dir)?;
            }
            config
        }
    };
    Ok((config, format))
}

/// Refuses a SigLIP 2 `preprocessor_config.json` that asks for another patch budget than the
/// position grid's (NaFlex: images at their own aspect ratio and size), which duet does not run.
fn check_fixed_resolution(pre: &Path, num_patches: usize) -> Result<(), ModelError> {
    if !pre.is_file() {
        return Ok(());
    }
    let value: serde_json::Value =
        serde_json::from_str(&read_string(pre)?).map_err(|e| ModelError::ConfigParse {
            path: pre.to_path_buf(),
            message: e.to_string(),
        })?;
    match value
        .get("max_num_patches")
        .and_then(serde_json::Value::as_u64)
    {
        Some(max) if max as usize != num_patches => Err(ModelError::ConfigParse {
            path: pre.to_path_buf(),
            message: format!(
                "max_num_patches = {max}: this is NaFlex (each image at its own aspect ratio \
                 with up to {max} patches), which duet does not run; duet runs SigLIP 2 at \
                 fixed resolution, the {num_patches} patches of its position grid"
            ),
        }),
        _ => Ok(()),
    }
}

/// The `model_type` of an HF `config.json`, if it says.
fn hf_model_type(json: &str) -> Option<&'static str> {
    let value: serde_json::Value = serde_json::from_str(json).ok()?;
    match value.get("model_type")?.as_str()? {
        "siglip" => Some("siglip"),
        "siglip2" => Some("siglip2"),
        _ => None,
    }
}

/// OpenCLIP's key table for `config`: CLIP's, or SigLIP's timm trunk beside a `text.*` tower.
fn any_openclip_table(config: &ClipConfig) -> Vec<Mapping> {
    if config.vision.pool == crate::VisionPool::Map {
        openclip_siglip_table(config)
    } else {
        openclip_table(config)
    }
}

/// The key table of `format` for `model` (duet's own is the identity on every parameter).
fn table(
    format: ModelFormat,
    config: &ClipConfig,
    model: &ClipModel,
) -> (Vec<Mapping>, &'static [&'static str]) {
    match format {
        ModelFormat::HuggingFace => (hf_table(config), HF_IGNORABLE),
        ModelFormat::OpenClip => (any_openclip_table(config), OPENCLIP_IGNORABLE),
        ModelFormat::Duet => {
            let identity = model
                .collect(None, None, false)
                .into_iter()
                .map(|t| Mapping::new(t.name.clone(), t.name, Transform::Copy))
                .collect();
            (identity, &[])
        }
    }
}

/// Loads weights of `format` from `file` into a freshly built model of `config`.
pub fn load_weights(
    config: &ClipConfig,
    format: ModelFormat,
    file: &Path,
    device: &Device,
) -> Result<ClipModel, ModelError> {
    let model = config.init(device)?;
    let (table, ignorable) = table(format, config, &model);
    let bytes = std::fs::read(file).map_err(|e| ModelError::io(file, e))?;
    let (model, report) = remap::import(model, &table, &bytes, ignorable).map_err(|message| {
        ModelError::Safetensors {
            path: file.to_path_buf(),
            message,
        }
    })?;
    if !report.is_empty() {
        return Err(ModelError::WeightMismatch {
            path: file.to_path_buf(),
            report,
        });
    }
    Ok(model)
}

/// Loads a model directory of any known layout.
pub fn load_model(dir: &Path, device: &Device) -> Result<LoadedModel, ModelError> {
    let (config, format) = read_config(dir)?;
    let model = load_weights(&config, format, &dir.join(format.files().1), device)?;
    Ok(LoadedModel {
        model,
        config,
        format,
    })
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ModelError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(|e| ModelError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| ModelError::io(path, e))
}

fn write_safetensors(
    path: &Path,
    tensors: &BTreeMap<String, HostTensor>,
) -> Result<(), ModelError> {
    let bytes: Vec<(&String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(k, t)| {
            (
                k,
                t.shape.clone(),
                t.values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            )
        })
        .collect();
    let views = bytes
        .iter()
        .map(|(k, shape, data)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), data)
                .map(|view| (k.as_str(), view))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ModelError::Safetensors {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    let mut metadata = std::collections::HashMap::new();
    metadata.insert("format".to_string(), "pt".to_string());
    let serialized =
        safetensors::serialize(views, Some(metadata)).map_err(|e| ModelError::Safetensors {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    write_atomic(path, &serialized)
}

fn write_json(path: &Path, value: &impl Serialize) -> Result<(), ModelError> {
    let text = serde_json::to_string_pretty(value).map_err(|e| ModelError::ConfigParse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    write_atomic(path, format!("{text}\n").as_bytes())
}

fn export_error(dir: &Path, message: String) -> ModelError {
    ModelError::Safetensors {
        path: dir.to_path_buf(),
        message,
    }
}

/// Writes `model` as a Hugging Face `CLIPModel` directory (`config.json`,
/// `preprocessor_config.json`, `model.safetensors`) that `transformers` loads as is.
pub fn save_hf(model: &ClipModel, config: &ClipConfig, dir: &Path) -> Result<(), ModelError> {
    let hf_config = to_hf_config(config)?;
    std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
    let tensors = remap::export(model, &hf_table(config)).map_err(|m| export_error(dir, m))?;
    write_safetensors(&dir.join("model.safetensors"), &tensors)?;
    write_tokenizer_files(&config.text.tokenizer, dir)?;
    write_json(
        &dir.join("preprocessor_config.json"),
        &to_hf_preprocessor(config),
    )?;
    write_json(&dir.join("config.json"), &hf_config)
}

/// Writes `model` as an OpenCLIP hub directory (`open_clip_config.json` with `model_cfg` and
/// `preprocess_cfg`, `open_clip_model.safetensors` with OpenCLIP's keys and fused q/k/v), which
/// `open_clip.create_model_and_transforms("local-dir:DIR")` loads.
pub fn save_openclip(model: &ClipModel, config: &ClipConfig, dir: &Path) -> Result<(), ModelError> {
    let hub = to_openclip_json(config)?;
    std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
    let tensors =
        remap::export(model, &any_openclip_table(config)).map_err(|m| export_error(dir, m))?;
    write_safetensors(&dir.join("open_clip_model.safetensors"), &tensors)?;
    write_tokenizer_files(&config.text.tokenizer, dir)?;
    write_json(&dir.join("open_clip_config.json"), &hub)
}

/// Writes `model` in duet's own layout (`duet_model.json` + `model.safetensors`).
pub fn save_duet(
    model: &ClipModel,
    config: &ClipConfig,
    dir: &Path,
) -> Result<PathBuf, ModelError> {
    std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
    let (table, _) = table(ModelFormat::Duet, config, model);
    let tensors = remap::export(model, &table).map_err(|m| export_error(dir, m))?;
    write_safetensors(&dir.join("model.safetensors"), &tensors)?;
    write_tokenizer_files(&config.text.tokenizer, dir)?;
    let manifest = DuetManifest {
        format_version: DUET_FORMAT_VERSION,
        config: config.clone(),
    };
    write_json(&dir.join("duet_model.json"), &manifest)?;
    Ok(dir.to_path_buf())
}
