//! transformers `SiglipModel` directories: the config (`model_type = "siglip"`) and the key
//! table between its state dict and [`crate::ClipModel`].
//!
//! | HF key | duet path | transform |
//! |---|---|---|
//! | `text_model.embeddings.token_embedding.weight` | `text.token_embedding.weight` | copy |
//! | `text_model.embeddings.position_embedding.weight` | `text.position_embedding` | copy |
//! | `text_model.encoder.layers.{i}.…` (the CLIP block table) | `text.blocks.{i}.…` | |
//! | `text_model.final_layer_norm.{weight,bias}` | `text.ln_final.{gamma,beta}` | copy |
//! | `text_model.head.weight` `[e, d]`, `.bias` | `text.proj.weight` `[d, e]`, `.bias` | transpose, copy |
//! | `vision_model.embeddings.patch_embedding.{weight,bias}` | `vision.patch_embed.{weight,bias}` | copy |
//! | `vision_model.embeddings.position_embedding.weight` | `vision.position_embedding` | copy |
//! | `vision_model.encoder.layers.{i}.…` | `vision.blocks.{i}.…` | |
//! | `vision_model.post_layernorm.{weight,bias}` | `vision.ln_post.{gamma,beta}` | copy |
//! | `vision_model.head.probe` | `vision.attn_pool.probe` | copy |
//! | `vision_model.head.attention.in_proj_weight` `[3d, d]` | `vision.attn_pool.attn.{q,k,v}.weight` | rows 0/1/2 of 3, transposed |
//! | `vision_model.head.attention.in_proj_bias` `[3d]` | `vision.attn_pool.attn.{q,k,v}.bias` | rows 0/1/2 of 3 |
//! | `vision_model.head.attention.out_proj.{weight,bias}` | `vision.attn_pool.attn.out.{weight,bias}` | transpose, copy |
//! | `vision_model.head.layernorm.{weight,bias}` | `vision.attn_pool.ln.{gamma,beta}` | copy |
//! | `vision_model.head.mlp.{fc1,fc2}.{weight,bias}` | `vision.attn_pool.mlp.{fc1,fc2}.…` | transpose, copy |
//! | `logit_scale` `[1]`, `logit_bias` `[1]` | `logit_scale`, `logit_bias` | copy |

use std::path::Path;

use serde::Deserialize;

use super::config::{activation, activation_name};
use crate::ModelError;
use crate::config::{
    ClipConfig, FileTokenizer, ImageResize, TextConfig, TextPool, TokenizerFiles, TokenizerSpec,
    VisionConfig, VisionPool,
};
use crate::weights::remap::{Mapping, Transform};

use Transform::{Copy, Rows, Transpose};

/// SigLIP's image normalisation: mean = std = 0.5 per channel (`SiglipImageProcessor`).
pub const SIGLIP_MEAN_STD: [f32; 3] = [0.5, 0.5, 0.5];
/// SigLIP's `logit_scale` init: ln 10 (Zhai et al. 2023, sec. 3.1: t' = log 10).
pub const SIGLIP_LOGIT_SCALE_INIT: f64 = std::f64::consts::LN_10;
/// SigLIP's `logit_bias` init: −10.
pub const SIGLIP_LOGIT_BIAS_INIT: f64 = -10.0;

/// transformers `SiglipTextConfig` fields duet reads, with transformers' defaults.
#[derive(Debug, Deserialize)]
struct Text {
    #[serde(default = "d768")]
    hidden_size: usize,
    #[serde(default = "d3072")]
    intermediate_size: usize,
    #[serde(default = "d12")]
    num_attention_heads: usize,
    #[serde(default = "d12")]
    num_hidden_layers: usize,
    #[serde(default = "d64")]
    max_position_embeddings: usize,
    #[serde(default = "d32000")]
    vocab_size: usize,
    #[serde(default = "gelu_tanh")]
    hidden_act: String,
    #[serde(default = "eps")]
    layer_norm_eps: f64,
    projection_size: Option<usize>,
    pad_token_id: Option<u32>,
    eos_token_id: Option<u32>,
}

/// transformers `SiglipVisionConfig` fields duet reads, with transformers' defaults.
#[derive(Debug, Deserialize)]
struct Vision {
    #[serde(default = "d768")]
    hidden_size: usize,
    #[serde(default = "d3072")]
    intermediate_size: usize,
    #[serde(default = "d12")]
    num_attention_heads: usize,
    #[serde(default = "d12")]
    num_hidden_layers: usize,
    /// SigLIP (v1): the square input's side.
    image_size: Option<usize>,
    /// SigLIP 2: learned positions, a square grid (NaFlex resizes it per image).
    num_patches: Option<usize>,
    #[serde(default = "d16")]
    patch_size: usize,
    #[serde(default = "d3")]
    num_channels: usize,
    #[serde(default = "gelu_tanh")]
    hidden_act: String,
    #[serde(default = "eps")]
    layer_norm_eps: f64,
    #[serde(default = "yes")]
    vision_use_head: bool,
}

#[derive(Debug, Deserialize)]
struct Siglip {
    text_config: Text,
    vision_config: Vision,
}

defaults!(
    d3 = 3,
    d12 = 12,
    d16 = 16,
    d64 = 64,
    d768 = 768,
    d3072 = 3072,
    d32000 = 32_000
);
fn yes() -> bool {
    true
}
fn gelu_tanh() -> String {
    "gelu_pytorch_tanh".into()
}
fn eps() -> f64 {
    1e-6
}

/// Parses a transformers `SiglipConfig` (`version` 1) or `Siglip2Config` (2) JSON; `mean_std`
/// from `preprocessor_config.json` (SigLIP's 0.5 / 0.5 without one). SigLIP 2 runs at fixed
/// resolution: its position grid's native square, `sqrt(num_patches)` patches a side.
pub fn parse_siglip_config(
    json: &str,
    path: &Path,
    mean_std: Option<([f32; 3], [f32; 3])>,
    version: u8,
) -> Result<ClipConfig, ModelError> {
    let hf: Siglip = serde_json::from_str(json).map_err(|e| ModelError::ConfigParse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let (t, v) = (&hf.text_config, &hf.vision_config);
    let mut problems = Vec::new();
    if v.num_channels != 3 {
        problems.push(format!(
            "vision_config.num_channels = {}: duet reads RGB images only",
            v.num_channels
        ));
    }
    if !v.vision_use_head {
        problems.push(
            "vision_config.vision_use_head = false: without its attention-pooling head the \
             image tower gives no embedding"
                .to_string(),
        );
    }
    let image_size = if version == 2 {
        let patches = v.num_patches.unwrap_or(256);
        let side = patches.isqrt();
        if side * side != patches {
            problems.push(format!(
                "vision_config.num_patches = {patches} is not a square grid: duet runs SigLIP 2 \
                 at its native square resolution only (NaFlex's other grids are not supported)"
            ));
        }
        side * v.patch_size
    } else {
        v.image_size.unwrap_or(224)
    };
    let embed_dim = v.hidden_size;
    let projection = t.projection_size.unwrap_or(t.hidden_size);
    if projection != embed_dim {
        problems.push(format!(
            "text_config.projection_size = {projection} differs from the image embedding's \
             vision_config.hidden_size = {embed_dim}"
        ));
    }
    if !problems.is_empty() {
        return Err(ModelError::ConfigParse {
            path: path.to_path_buf(),
            message: problems.join("; "),
        });
    }
    let (image_mean, image_std) = mean_std.unwrap_or((SIGLIP_MEAN_STD, SIGLIP_MEAN_STD));
    let config = ClipConfig {
        embed_dim,
        vision: VisionConfig {
            image_size,
            patch_size: v.patch_size,
            width: v.hidden_size,
            layers: v.num_hidden_layers,
            heads: v.num_attention_heads,
            mlp_dim: v.intermediate_size,
            activation: activation(&v.hidden_act, "vision_config.hidden_act")?,
            layer_norm_eps: v.layer_norm_eps,
            image_mean,
            image_std,
            class_token: false,
            patch_bias: true,
            ln_pre: false,
            pool: VisionPool::Map,
            proj: false,
            resize: ImageResize::Squash,
            linear_patches: version == 2,
            timm_model: None,
        },
        text: TextConfig {
            context_length: t.max_position_embeddings,
            vocab_size: t.vocab_size,
            width: t.hidden_size,
            layers: t.num_hidden_layers,
            heads: t.num_attention_heads,
            mlp_dim: t.intermediate_size,
            activation: activation(&t.hidden_act, "text_config.hidden_act")?,
            layer_norm_eps: t.layer_norm_eps,
            // Pooling is at the last position; the id that ends a caption (SigLIP's pad id,
            // SigLIP 2's eos) is kept for export.
            eot_token_id: match version {
                2 => t.eos_token_id.unwrap_or(1),
                _ => t.pad_token_id.unwrap_or(1),
            },
            causal: false,
            pool: TextPool::Last,
            proj_bias: true,
            // The directory's tokenizer files are read by `read_config`
            // (`hf::tokenizer::read_hf_tokenizer`), which also settles the pad id.
            tokenizer: TokenizerSpec::File(FileTokenizer {
                pad_id: t.pad_token_id.unwrap_or(1),
                lowercase: false,
                pad_left: false,
                canonicalize: false,
                hub_name: None,
                files: TokenizerFiles::default(),
            }),
        },
        logit_scale_init: SIGLIP_LOGIT_SCALE_INIT,
        logit_bias_init: Some(SIGLIP_LOGIT_BIAS_INIT),
    };
    config.validate()?;
    Ok(config)
}

const fn qkv(index: usize, transpose: bool) -> Transform {
    Rows {
        index,
        parts: 3,
        transpose,
    }
}

/// SigLIP's own mappings, beside the ones it shares with CLIP (`keys.rs`'s `SHARED`).
const SIGLIP_ONLY: &[(&str, &str, Transform)] = &[
    ("text_model.head.weight", "text.proj.weight", Transpose),
    ("text_model.head.bias", "text.proj.bias", Copy),
    (
        "vision_model.embeddings.patch_embedding.bias",
        "vision.patch_embed.bias",
        Copy,
    ),
    ("vision_model.head.probe", "vision.attn_pool.probe", Copy),
    (
        "vision_model.head.attention.in_proj_weight",
        "vision.attn_pool.attn.q.weight",
        qkv(0, true),
    ),
    (
        "vision_model.head.attention.in_proj_weight",
        "vision.attn_pool.attn.k.weight",
        qkv(1, true),
    ),
    (
        "vision_model.head.attention.in_proj_weight",
        "vision.attn_pool.attn.v.weight",
        qkv(2, true),
    ),
    (
        "vision_model.head.attention.in_proj_bias",
        "vision.attn_pool.attn.q.bias",
        qkv(0, false),
    ),
    (
        "vision_model.head.attention.in_proj_bias",
        "vision.attn_pool.attn.k.bias",
        qkv(1, false),
    ),
    (
        "vision_model.head.attention.in_proj_bias",
        "vision.attn_pool.attn.v.bias",
        qkv(2, false),
    ),
    (
        "vision_model.head.attention.out_proj.weight",
        "vision.attn_pool.attn.out.weight",
        Transpose,
    ),
    (
        "vision_model.head.attention.out_proj.bias",
        "vision.attn_pool.attn.out.bias",
        Copy,
    ),
    (
        "vision_model.head.layernorm.weight",
        "vision.attn_pool.ln.gamma",
        Copy,
    ),
    (
        "vision_model.head.layernorm.bias",
        "vision.attn_pool.ln.beta",
        Copy,
    ),
    (
        "vision_model.head.mlp.fc1.weight",
        "vision.attn_pool.mlp.fc1.weight",
        Transpose,
    ),
    (
        "vision_model.head.mlp.fc1.bias",
        "vision.attn_pool.mlp.fc1.bias",
        Copy,
    ),
    (
        "vision_model.head.mlp.fc2.weight",
        "vision.attn_pool.mlp.fc2.weight",
        Transpose,
    ),
    (
        "vision_model.head.mlp.fc2.bias",
        "vision.attn_pool.mlp.fc2.bias",
        Copy,
    ),
    ("logit_scale", "logit_scale", Copy),
    ("logit_bias", "logit_bias", Copy),
];

/// Every mapping for a SigLIP model of this config, globals first; SigLIP 2's patch
/// embedding is a Linear over flattened patches.
pub fn siglip_table(config: &ClipConfig) -> Vec<Mapping> {
    let mut table = super::keys::with_blocks(SIGLIP_ONLY, config);
    if config.vision.linear_patches {
        for mapping in &mut table {
            if mapping.target == "vision.patch_embed.weight" {
                mapping.transform = Transform::PatchLinear {
                    patch: config.vision.patch_size,
                    channels: 3,
                };
            }
        }
    }
    table
}

/// Whether `config` is exactly the SigLIP layout (every switch SigLIP's), which is what
/// transformers' `SiglipModel` can hold.
pub(crate) fn is_siglip(config: &ClipConfig) -> bool {
    let (v, t) = (&config.vision, &config.text);
    !v.class_token
        && v.patch_bias
        && !v.ln_pre
        && v.pool == VisionPool::Map
        && !v.proj
        && !t.causal
        && t.pool == TextPool::Last
        && t.proj_bias
        && config.logit_bias_init.is_some()
}

/// The `text_config` of a SigLIP (2) `config.json`.
fn siglip_text_config(
    config: &ClipConfig,
    model_type: &str,
    pad_id: u32,
    eos_id: u32,
) -> serde_json::Value {
    let t = &config.text;
    let act = activation_name(t.activation);
    serde_json::json!({
        "model_type": model_type,
        "hidden_size": t.width,
        "intermediate_size": t.mlp_dim,
        "num_attention_heads": t.heads,
        "num_hidden_layers": t.layers,
        "max_position_embeddings": t.context_length,
        "vocab_size": t.vocab_size,
        "hidden_act": act,
        "layer_norm_eps": t.layer_norm_eps,
        "projection_size": config.embed_dim,
        "pad_token_id": pad_id,
        "eos_token_id": eos_id,
        "bos_token_id": null,
        "attention_dropout": 0.0,
    })
}

/// `config.json` for `transformers.SiglipModel.from_pretrained` (`Siglip2Model` for SigLIP 2); refused for a config that is
/// not exactly SigLIP's layout.
pub fn to_siglip_config(config: &ClipConfig) -> Result<serde_json::Value, ModelError> {
    if !is_siglip(config) {
        return Err(ModelError::invalid(
            "vision_cfg.pool",
            "this mix of CLIP and SigLIP switches has no transformers model to export to",
        ));
    }
    let (t, v) = (&config.text, &config.vision);
    let (pad_id, eos_id) = match &t.tokenizer {
        TokenizerSpec::File(file) => (file.pad_id, t.eot_token_id),
        TokenizerSpec::ClipBpe => (t.eot_token_id, t.eot_token_id),
    };
    // SigLIP 2 differs in names and in sizing the image by its position grid.
    let (architecture, kind) = match v.linear_patches {
        true => ("Siglip2Model", "siglip2"),
        false => ("SiglipModel", "siglip"),
    };
    let mut vision = serde_json::json!({
        "model_type": format!("{kind}_vision_model"),
        "hidden_size": v.width,
        "intermediate_size": v.mlp_dim,
        "num_attention_heads": v.heads,
        "num_hidden_layers": v.layers,
        "patch_size": v.patch_size,
        "num_channels": 3,
        "hidden_act": activation_name(v.activation),
        "layer_norm_eps": v.layer_norm_eps,
        "vision_use_head": true,
        "attention_dropout": 0.0,
    });
    if v.linear_patches {
        vision["num_patches"] = v.num_patches().into();
    } else {
        vision["image_size"] = v.image_size.into();
    }
    let text_kind = format!("{kind}_text_model");
    Ok(serde_json::json!({
        "architectures": [architecture],
        "model_type": kind,
        "initializer_factor": 1.0,
        "dtype": "float32",
        "text_config": siglip_text_config(config, &text_kind, pad_id, eos_id),
        "vision_config": vision,
    }))
}

/// `preprocessor_config.json` for `transformers.SiglipImageProcessor`: resize to the square
/// size without a crop, bicubic, rescale, normalise; for SigLIP 2 `Siglip2ImageProcessor`'s,
/// at most the native grid's patches (a square image resizes to exactly that grid).
pub fn to_siglip_preprocessor(config: &ClipConfig) -> serde_json::Value {
    let v = &config.vision;
    let mut pre = serde_json::json!({
        "image_processor_type": "SiglipImageProcessor",
        "do_resize": true,
        "resample": 3,
        "do_rescale": true,
        "rescale_factor": 1.0 / 255.0,
        "do_normalize": true,
        "image_mean": v.image_mean,
        "image_std": v.image_std,
    });
    if v.linear_patches {
        pre["image_processor_type"] = "Siglip2ImageProcessor".into();
        pre["patch_size"] = v.patch_size.into();
        pre["max_num_patches"] = v.num_patches().into();
    } else {
        pre["size"] = serde_json::json!({"height": v.image_size, "width": v.image_size});
    }
    pre
}
