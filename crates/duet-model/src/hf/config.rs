//! Hugging Face `CLIPConfig` (`config.json` of a `CLIPModel` directory) to and from
//! [`ClipConfig`], plus the image mean/std of `preprocessor_config.json`.

use std::path::Path;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::ModelError;
use crate::config::{
    Activation, CLIP_EOT_ID, CLIP_LOGIT_SCALE_INIT, ClipConfig, ImageResize, OPENAI_MEAN,
    OPENAI_STD, TextConfig, TextPool, TokenizerSpec, VisionConfig, VisionPool,
};

/// transformers `CLIPTextConfig` fields duet reads, with transformers' defaults.
#[derive(Debug, Deserialize)]
struct HfText {
    #[serde(default = "d512")]
    hidden_size: usize,
    #[serde(default = "d2048")]
    intermediate_size: usize,
    #[serde(default = "d8")]
    num_attention_heads: usize,
    #[serde(default = "d12")]
    num_hidden_layers: usize,
    #[serde(default = "d77")]
    max_position_embeddings: usize,
    #[serde(default = "d49408")]
    vocab_size: usize,
    #[serde(default = "quick_gelu")]
    hidden_act: String,
    #[serde(default = "eps")]
    layer_norm_eps: f64,
    #[serde(default = "eot")]
    eos_token_id: u32,
}

/// transformers `CLIPVisionConfig` fields duet reads, with transformers' defaults.
#[derive(Debug, Deserialize)]
struct HfVision {
    #[serde(default = "d768")]
    hidden_size: usize,
    #[serde(default = "d3072")]
    intermediate_size: usize,
    #[serde(default = "d12")]
    num_attention_heads: usize,
    #[serde(default = "d12")]
    num_hidden_layers: usize,
    #[serde(default = "d224")]
    image_size: usize,
    #[serde(default = "d32")]
    patch_size: usize,
    #[serde(default = "d3")]
    num_channels: usize,
    #[serde(default = "quick_gelu")]
    hidden_act: String,
    #[serde(default = "eps")]
    layer_norm_eps: f64,
}

#[derive(Debug, Deserialize)]
struct HfClip {
    #[serde(default = "d512")]
    projection_dim: usize,
    #[serde(default = "logit_scale")]
    logit_scale_init_value: f64,
    text_config: HfText,
    vision_config: HfVision,
}

defaults!(
    d3 = 3,
    d8 = 8,
    d12 = 12,
    d32 = 32,
    d77 = 77,
    d224 = 224,
    d512 = 512,
    d768 = 768,
    d2048 = 2048,
    d3072 = 3072,
    d49408 = 49_408
);
fn quick_gelu() -> String {
    "quick_gelu".into()
}
fn eps() -> f64 {
    1e-5
}
fn eot() -> u32 {
    CLIP_EOT_ID
}
fn logit_scale() -> f64 {
    CLIP_LOGIT_SCALE_INIT
}

/// transformers' `hidden_act` names duet runs (CLIP and SigLIP alike).
pub(super) fn activation(name: &str, key: &str) -> Result<Activation, ModelError> {
    match name {
        "quick_gelu" => Ok(Activation::QuickGelu),
        "gelu" => Ok(Activation::Gelu),
        "gelu_pytorch_tanh" => Ok(Activation::GeluTanh),
        other => Err(ModelError::invalid(
            key,
            format!(
                "= {other:?} is not an activation duet knows (expected \"gelu\", \"quick_gelu\" \
                 or \"gelu_pytorch_tanh\")"
            ),
        )),
    }
}

pub(super) fn activation_name(activation: Activation) -> &'static str {
    match activation {
        Activation::Gelu => "gelu",
        Activation::QuickGelu => "quick_gelu",
        Activation::GeluTanh => "gelu_pytorch_tanh",
    }
}

/// Parses a transformers `CLIPConfig` JSON. `mean`/`std` come from `preprocessor_config.json`
/// (see [`parse_hf_preprocessor`]); HF's model config does not carry them.
pub fn parse_hf_config(
    json: &str,
    path: &Path,
    mean_std: Option<([f32; 3], [f32; 3])>,
) -> Result<ClipConfig, ModelError> {
    let hf: HfClip = serde_json::from_str(json).map_err(|e| ModelError::ConfigParse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let (t, v) = (&hf.text_config, &hf.vision_config);
    if v.num_channels != 3 {
        return Err(ModelError::invalid(
            "vision_config.num_channels",
            format!("= {}: duet reads RGB images only", v.num_channels),
        ));
    }
    let (image_mean, image_std) = mean_std.unwrap_or((OPENAI_MEAN, OPENAI_STD));
    let config = ClipConfig {
        embed_dim: hf.projection_dim,
        vision: VisionConfig {
            image_size: v.image_size,
            patch_size: v.patch_size,
            width: v.hidden_size,
            layers: v.num_hidden_layers,
            heads: v.num_attention_heads,
            mlp_dim: v.intermediate_size,
            activation: activation(&v.hidden_act, "vision_config.hidden_act")?,
            layer_norm_eps: v.layer_norm_eps,
            image_mean,
            image_std,
            class_token: true,
            patch_bias: false,
            ln_pre: true,
            pool: VisionPool::ClassToken,
            proj: true,
            resize: ImageResize::Shortest,
            linear_patches: false,
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
            // transformers modeling_clip.py: legacy configs carry eos_token_id == 2 and pool at
            // the argmax id, which in the CLIP vocabulary is the first <|endoftext|> (49407).
            eot_token_id: if t.eos_token_id == 2 {
                CLIP_EOT_ID
            } else {
                t.eos_token_id
            },
            causal: true,
            pool: TextPool::FirstEot,
            proj_bias: false,
            tokenizer: TokenizerSpec::ClipBpe,
        },
        logit_scale_init: hf.logit_scale_init_value,
        logit_bias_init: None,
    };
    config.validate()?;
    Ok(config)
}

#[derive(Debug, Deserialize)]
struct HfPreprocessor {
    image_mean: Option<[f32; 3]>,
    image_std: Option<[f32; 3]>,
}

/// Reads `image_mean`/`image_std` from a `preprocessor_config.json` (OpenAI's where absent).
pub fn parse_hf_preprocessor(json: &str, path: &Path) -> Result<([f32; 3], [f32; 3]), ModelError> {
    let pre: HfPreprocessor = serde_json::from_str(json).map_err(|e| ModelError::ConfigParse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    Ok((
        pre.image_mean.unwrap_or(OPENAI_MEAN),
        pre.image_std.unwrap_or(OPENAI_STD),
    ))
}

/// `config.json` for `transformers.CLIPModel.from_pretrained`, or `SiglipModel`'s for a SigLIP
/// model.
///
/// HF CLIP has no `logit_bias`, so a CLIP config with one is rejected rather than exported
/// lossily.
pub fn to_hf_config(config: &ClipConfig) -> Result<Value, ModelError> {
    if config.vision.pool == crate::VisionPool::Map {
        return super::siglip::to_siglip_config(config);
    }
    if config.logit_bias_init.is_some() {
        return Err(ModelError::invalid(
            "init_logit_bias",
            "transformers' CLIPModel has no logit_bias; this model cannot be exported to HF",
        ));
    }
    let (t, v) = (&config.text, &config.vision);
    Ok(json!({
        "architectures": ["CLIPModel"],
        "model_type": "clip",
        "projection_dim": config.embed_dim,
        "logit_scale_init_value": config.logit_scale_init,
        "initializer_factor": 1.0,
        "torch_dtype": "float32",
        "text_config": {
            "model_type": "clip_text_model",
            "hidden_size": t.width,
            "intermediate_size": t.mlp_dim,
            "num_attention_heads": t.heads,
            "num_hidden_layers": t.layers,
            "max_position_embeddings": t.context_length,
            "vocab_size": t.vocab_size,
            "hidden_act": activation_name(t.activation),
            "layer_norm_eps": t.layer_norm_eps,
            "projection_dim": config.embed_dim,
            "bos_token_id": t.eot_token_id.saturating_sub(1),
            "eos_token_id": t.eot_token_id,
            "pad_token_id": t.eot_token_id,
        },
        "vision_config": {
            "model_type": "clip_vision_model",
            "hidden_size": v.width,
            "intermediate_size": v.mlp_dim,
            "num_attention_heads": v.heads,
            "num_hidden_layers": v.layers,
            "image_size": v.image_size,
            "patch_size": v.patch_size,
            "num_channels": 3,
            "hidden_act": activation_name(v.activation),
            "layer_norm_eps": v.layer_norm_eps,
            "projection_dim": config.embed_dim,
        },
    }))
}

/// `preprocessor_config.json` for `transformers.CLIPImageProcessor`: OpenCLIP's eval transform
/// (`SiglipImageProcessor`'s for a SigLIP model).
pub fn to_hf_preprocessor(config: &ClipConfig) -> Value {
    if config.vision.pool == crate::VisionPool::Map {
        return super::siglip::to_siglip_preprocessor(config);
    }
    let v = &config.vision;
    json!({
        "image_processor_type": "CLIPImageProcessor",
        "do_resize": true,
        "size": {"shortest_edge": v.image_size},
        "resample": 3,
        "do_center_crop": true,
        "crop_size": {"height": v.image_size, "width": v.image_size},
        "do_rescale": true,
        "rescale_factor": 1.0 / 255.0,
        "do_normalize": true,
        "image_mean": v.image_mean,
        "image_std": v.image_std,
        "do_convert_rgb": true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPENAI_B32: &str = r#"{"projection_dim": 512, "logit_scale_init_value": 2.6592,
        "text_config": {"hidden_size": 512, "intermediate_size": 2048, "num_attention_heads": 8,
            "num_hidden_layers": 12, "eos_token_id": 2},
        "vision_config": {"hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12,
            "num_hidden_layers": 12, "patch_size": 32}}"#;

    #[test]
    fn openai_layout_with_legacy_eos() {
        let cfg = parse_hf_config(OPENAI_B32, Path::new("config.json"), None).expect("valid");
        assert_eq!(cfg.text.eot_token_id, CLIP_EOT_ID);
        assert_eq!(cfg.vision.activation, Activation::QuickGelu);
        assert_eq!(cfg.vision.grid_size(), 7);
    }

    #[test]
    fn unknown_activation_is_named() {
        let json = OPENAI_B32.replace(
            "\"patch_size\": 32",
            "\"patch_size\": 32, \"hidden_act\": \"swish\"",
        );
        let err = parse_hf_config(&json, Path::new("config.json"), None)
            .expect_err("swish is not supported")
            .to_string();
        assert!(err.contains("vision_config.hidden_act"), "{err}");
        assert!(err.contains("swish"), "{err}");
    }

    #[test]
    fn export_then_parse_is_identity() {
        let cfg = parse_hf_config(OPENAI_B32, Path::new("config.json"), None).expect("valid");
        let json = to_hf_config(&cfg).expect("no bias").to_string();
        let back = parse_hf_config(&json, Path::new("again.json"), None).expect("valid");
        assert_eq!(cfg, back);
    }
}
