//! `duet-model`: the CLIP dual encoder in burn — a ViT image tower, a causal text tower,
//! projections and a learnable temperature — and its weights in the Hugging Face, OpenCLIP
//! and duet layouts.
//!
//! `ClipConfig` -> [`ClipConfig::init`] -> [`ClipModel`] -> `encode_image` / `encode_text`.
//! No I/O beyond weight and config files.

mod block;
mod clip;
mod config;
mod error;
pub mod hf;
pub mod openclip;
mod precision;
mod presets;
mod text;
mod vision;
mod weights;

pub use block::{Attention, Block, BlockConfig, Mlp};
pub use clip::{ClipModel, l2_normalize};
pub use config::{
    Activation, CLIP_EOT_ID, CLIP_LOGIT_SCALE_INIT, ClipConfig, FileTokenizer, ImageResize,
    OPENAI_MEAN, OPENAI_STD, TOKENIZER_FILES, TextConfig, TextPool, TokenizerFiles, TokenizerSpec,
    VisionConfig, VisionPool,
};
pub use error::{ModelError, WeightReport};
pub use precision::Precision;
pub use presets::{PRESETS, config_from_name_or_path, preset};
pub use text::TextTower;
pub use vision::VisionTower;
pub use weights::{
    DUET_FORMAT_VERSION, KeyMapping, KeyTransform, LoadedModel, ModelFormat, load_model,
    load_weights, read_config, save_duet, save_hf, save_openclip,
};
