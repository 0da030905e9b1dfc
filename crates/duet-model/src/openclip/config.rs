//! OpenCLIP's model-config JSON (`open_clip/model_configs/*.json`, and the `model_cfg` of an
//! `open_clip_config.json` on the hub) to and from [`ClipConfig`].

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ModelError;
use crate::config::{
    Activation, CLIP_EOT_ID, CLIP_LOGIT_SCALE_INIT, ClipConfig, ImageResize, OPENAI_MEAN,
    OPENAI_STD, TextConfig, TextPool, TokenizerSpec, VisionConfig, VisionPool,
};

/// open_clip `CLIPVisionCfg` fields duet reads; defaults as in open_clip model.py (v3.3.0).
#[derive(Debug, Serialize, Deserialize)]
struct OcVision {
    #[serde(default = "default_vision_layers")]
    layers: usize,
    #[serde(default = "default_vision_width")]
    width: usize,
    #[serde(default = "default_head_width")]
    head_width: usize,
    #[serde(default = "default_mlp_ratio")]
    mlp_ratio: f64,
    #[serde(default = "default_patch_size")]
    patch_size: usize,
    #[serde(default = "default_image_size")]
    image_size: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    image_mean: Option<[f32; 3]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    image_std: Option<[f32; 3]>,
    #[serde(flatten)]
    rest: BTreeMap<String, Value>,
}

/// open_clip `CLIPTextCfg` fields duet reads.
#[derive(Debug, Serialize, Deserialize)]
struct OcText {
    #[serde(default = "default_context_length")]
    context_length: usize,
    #[serde(default = "default_vocab_size")]
    vocab_size: usize,
    #[serde(default = "default_text_width")]
    width: usize,
    #[serde(default = "default_text_heads")]
    heads: usize,
    #[serde(default = "default_text_layers")]
    layers: usize,
    #[serde(default = "default_mlp_ratio")]
    mlp_ratio: f64,
    #[serde(flatten)]
    rest: BTreeMap<String, Value>,
}

#[derive(Debug, Serialize, Deserialize)]
struct OcModel {
    embed_dim: usize,
    #[serde(default)]
    quick_gelu: bool,
    vision_cfg: OcVision,
    text_cfg: OcText,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    init_logit_scale: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    init_logit_bias: Option<f64>,
    #[serde(flatten)]
    rest: BTreeMap<String, Value>,
}

fn default_vision_layers() -> usize {
    12
}
fn default_vision_width() -> usize {
    768
}
fn default_head_width() -> usize {
    64
}
fn default_mlp_ratio() -> f64 {
    4.0
}
fn default_patch_size() -> usize {
    16
}
fn default_image_size() -> usize {
    224
}
fn default_context_length() -> usize {
    77
}
fn default_vocab_size() -> usize {
    49_408
}
fn default_text_width() -> usize {
    512
}
fn default_text_heads() -> usize {
    8
}
fn default_text_layers() -> usize {
    12
}

/// Keys that switch on an architecture duet does not implement, with the value that is harmless.
/// A config setting one of them to anything else is rejected rather than silently mis-built.
const UNSUPPORTED: &[(&str, &str)] = &[
    ("vision_cfg.timm_model_name", "null"),
    ("vision_cfg.attentional_pool", "false"),
    ("vision_cfg.ls_init_value", "null"),
    ("vision_cfg.no_ln_pre", "false"),
    ("vision_cfg.final_ln_after_pool", "false"),
    ("vision_cfg.output_tokens", "false"),
    ("vision_cfg.act_kwargs", "null"),
    ("vision_cfg.norm_kwargs", "null"),
    ("text_cfg.hf_model_name", "null"),
    ("text_cfg.ls_init_value", "null"),
    ("text_cfg.embed_cls", "false"),
    ("text_cfg.no_causal_mask", "false"),
    ("text_cfg.proj_bias", "false"),
    ("text_cfg.act_kwargs", "null"),
    ("text_cfg.norm_kwargs", "null"),
    ("text_cfg.output_tokens", "false"),
];

fn check_unsupported(section: &str, rest: &BTreeMap<String, Value>) -> Result<(), ModelError> {
    for (key, value) in rest {
        let dotted = format!("{section}.{key}");
        if let Some((_, harmless)) = UNSUPPORTED.iter().find(|(k, _)| *k == dotted)
            && !value.is_null()
            && *value != serde_json::from_str::<Value>(harmless).unwrap_or(Value::Null)
        {
            return Err(ModelError::invalid(
                dotted,
                format!("= {value} selects an architecture duet does not implement"),
            ));
        }
    }
    let pool_ok = |v: &Value, allowed: &[&str]| v.as_str().is_some_and(|s| allowed.contains(&s));
    match section {
        "vision_cfg" => {
            if let Some(v) = rest.get("pool_type")
                && !pool_ok(v, &["tok"])
            {
                return Err(ModelError::invalid(
                    "vision_cfg.pool_type",
                    format!("= {v}: duet pools the class token (`tok`) only"),
                ));
            }
        }
        _ => {
            if let Some(v) = rest.get("pool_type")
                && !pool_ok(v, &["argmax", "eos"])
            {
                return Err(ModelError::invalid(
                    "text_cfg.pool_type",
                    format!("= {v}: duet pools at the first end-of-text token only"),
                ));
            }
        }
    }
    Ok(())
}

fn mlp_dim(width: usize, ratio: f64, key: &str) -> Result<usize, ModelError> {
    let dim = width as f64 * ratio;
    if !(dim.is_finite() && dim >= 1.0 && dim.fract() == 0.0) {
        return Err(ModelError::invalid(
            key,
            format!("{ratio} times the width {width} is not a whole number of units"),
        ));
    }
    Ok(dim as usize)
}

/// Parses an OpenCLIP model config (either a bare model config, or an `open_clip_config.json`
/// holding it under `model_cfg` with mean/std under `preprocess_cfg`).
pub fn parse_openclip_config(json: &str, path: &Path) -> Result<ClipConfig, ModelError> {
    let parse_err = |e: serde_json::Error| ModelError::ConfigParse {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let value: Value = serde_json::from_str(json).map_err(parse_err)?;
    let (model_value, preprocess) = match value.get("model_cfg") {
        Some(model) => (model.clone(), value.get("preprocess_cfg").cloned()),
        None => (value, None),
    };
    if super::siglip::is_timm(&model_value) {
        return super::siglip::parse(&model_value, preprocess.as_ref(), path);
    }
    let oc: OcModel = serde_json::from_value(model_value).map_err(parse_err)?;
    check_unsupported("vision_cfg", &oc.vision_cfg.rest)?;
    check_unsupported("text_cfg", &oc.text_cfg.rest)?;

    let v = &oc.vision_cfg;
    if v.head_width == 0 || !v.width.is_multiple_of(v.head_width) {
        return Err(ModelError::invalid(
            "vision_cfg.head_width",
            format!("{} does not divide the width {}", v.head_width, v.width),
        ));
    }
    let (mut mean, mut std) = (
        v.image_mean.unwrap_or(OPENAI_MEAN),
        v.image_std.unwrap_or(OPENAI_STD),
    );
    if let Some(pre) = preprocess {
        let triple = |key: &str| -> Result<Option<[f32; 3]>, ModelError> {
            pre.get(key)
                .map(|x| serde_json::from_value::<[f32; 3]>(x.clone()))
                .transpose()
                .map_err(|e| ModelError::ConfigParse {
                    path: path.to_path_buf(),
                    message: format!("preprocess_cfg.{key}: {e}"),
                })
        };
        mean = triple("mean")?.unwrap_or(mean);
        std = triple("std")?.unwrap_or(std);
    }
    let activation = if oc.quick_gelu {
        Activation::QuickGelu
    } else {
        Activation::Gelu
    };
    let t = &oc.text_cfg;
    let config = ClipConfig {
        embed_dim: oc.embed_dim,
        vision: VisionConfig {
            image_size: v.image_size,
            patch_size: v.patch_size,
            width: v.width,
            layers: v.layers,
            heads: v.width / v.head_width,
            mlp_dim: mlp_dim(v.width, v.mlp_ratio, "vision_cfg.mlp_ratio")?,
            activation,
            layer_norm_eps: 1e-5,
            image_mean: mean,
            image_std: std,
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
            context_length: t.context_length,
            vocab_size: t.vocab_size,
            width: t.width,
            layers: t.layers,
            heads: t.heads,
            mlp_dim: mlp_dim(t.width, t.mlp_ratio, "text_cfg.mlp_ratio")?,
            activation,
            layer_norm_eps: 1e-5,
            eot_token_id: CLIP_EOT_ID,
            causal: true,
            pool: TextPool::FirstEot,
            proj_bias: false,
            tokenizer: TokenizerSpec::ClipBpe,
        },
        logit_scale_init: oc.init_logit_scale.unwrap_or(CLIP_LOGIT_SCALE_INIT),
        logit_bias_init: oc.init_logit_bias,
    };
    config.validate()?;
    Ok(config)
}

/// Writes `config` as OpenCLIP's hub `open_clip_config.json` (the inverse of
/// [`parse_openclip_config`]): `model_cfg` as open_clip 3.3's `CLIPVisionCfg`/`CLIPTextCfg` accept
/// it (no normalisation constants there), and `preprocess_cfg` with mean, std, bicubic and
/// shortest-side resizing.
///
/// OpenCLIP has one `quick_gelu` flag for both towers, so a config whose towers differ in
/// activation is rejected.
pub fn to_openclip_json(config: &ClipConfig) -> Result<Value, ModelError> {
    if config.vision.pool == VisionPool::Map {
        return super::siglip::to_json(config);
    }
    if config.vision.activation != config.text.activation {
        return Err(ModelError::invalid(
            "activation",
            "OpenCLIP configs have one activation for both towers; these differ",
        ));
    }
    let v = &config.vision;
    let t = &config.text;
    let oc = OcModel {
        embed_dim: config.embed_dim,
        quick_gelu: v.activation == Activation::QuickGelu,
        vision_cfg: OcVision {
            layers: v.layers,
            width: v.width,
            head_width: v.width / v.heads,
            mlp_ratio: v.mlp_dim as f64 / v.width as f64,
            patch_size: v.patch_size,
            image_size: v.image_size,
            image_mean: None,
            image_std: None,
            rest: BTreeMap::new(),
        },
        text_cfg: OcText {
            context_length: t.context_length,
            vocab_size: t.vocab_size,
            width: t.width,
            heads: t.heads,
            layers: t.layers,
            mlp_ratio: t.mlp_dim as f64 / t.width as f64,
            rest: BTreeMap::new(),
        },
        init_logit_scale: Some(config.logit_scale_init),
        init_logit_bias: config.logit_bias_init,
        rest: BTreeMap::new(),
    };
    let model_cfg =
        serde_json::to_value(oc).map_err(|e| ModelError::invalid("config", e.to_string()))?;
    Ok(serde_json::json!({
        "model_cfg": model_cfg,
        "preprocess_cfg": {
            "mean": v.image_mean,
            "std": v.image_std,
            "interpolation": "bicubic",
            "resize_mode": "shortest",
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const B32: &str = r#"{"embed_dim": 512,
        "vision_cfg": {"image_size": 224, "layers": 12, "width": 768, "patch_size": 32},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 512, "heads": 8, "layers": 12}}"#;

    #[test]
    fn openclip_defaults_fill_heads_and_mlp() {
        let cfg = parse_openclip_config(B32, Path::new("ViT-B-32.json")).expect("valid");
        // 768 / head_width 64 = 12 heads; mlp_ratio 4 -> 3072.
        assert_eq!(cfg.vision.heads, 12);
        assert_eq!(cfg.vision.mlp_dim, 3072);
        assert_eq!(cfg.text.mlp_dim, 2048);
        assert_eq!(cfg.vision.activation, Activation::Gelu);
        assert_eq!(cfg.logit_bias_init, None);
    }

    #[test]
    fn hub_layout_reads_model_cfg_and_preprocess() {
        let json = format!(
            r#"{{"model_cfg": {}, "preprocess_cfg": {{"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}}}}"#,
            B32.replace(
                "\"embed_dim\": 512,",
                "\"embed_dim\": 512, \"quick_gelu\": true,"
            )
        );
        let cfg = parse_openclip_config(&json, Path::new("open_clip_config.json")).expect("valid");
        assert_eq!(cfg.text.activation, Activation::QuickGelu);
        assert_eq!(cfg.vision.image_mean, [0.5; 3]);
    }

    #[test]
    fn unsupported_architecture_is_named() {
        let json = B32.replace(
            "\"patch_size\": 32",
            "\"patch_size\": 32, \"attentional_pool\": true",
        );
        let err = parse_openclip_config(&json, Path::new("x.json"))
            .expect_err("attentional pooling is not implemented")
            .to_string();
        assert!(err.contains("vision_cfg.attentional_pool"), "{err}");
    }

    #[test]
    fn bad_json_names_file_and_line() {
        let err = parse_openclip_config("{\"embed_dim\": 512,\n oops}", Path::new("bad.json"))
            .expect_err("not json")
            .to_string();
        assert!(err.starts_with("bad.json: "), "{err}");
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn round_trips_through_json() {
        let cfg = parse_openclip_config(B32, Path::new("ViT-B-32.json")).expect("valid");
        let json = to_openclip_json(&cfg).expect("same activation").to_string();
        let back = parse_openclip_config(&json, Path::new("again.json")).expect("valid");
        assert_eq!(cfg, back);
    }
}
