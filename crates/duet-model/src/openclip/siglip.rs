//! OpenCLIP's SigLIP models: a `CustomTextCLIP` whose image tower is a timm ViT trunk
//! (`vision_cfg.timm_model_name`, `timm_pool = "map"`, `timm_proj = "none"`) and whose text tower
//! is a bidirectional `TextTransformer` pooled at the last position with a biased Linear
//! projection — the layout of OpenCLIP's `ViT-*-SigLIP*` configs and `timm/ViT-*-SigLIP*` hub
//! checkpoints. Config both ways, and the key table:
//!
//! | OpenCLIP key | duet path | transform |
//! |---|---|---|
//! | `visual.trunk.patch_embed.proj.{weight,bias}` | `vision.patch_embed.{weight,bias}` | copy |
//! | `visual.trunk.pos_embed` `[1, n, d]` | `vision.position_embedding` `[n, d]` | drop the leading 1 |
//! | `visual.trunk.blocks.{i}.…` (timm block table below) | `vision.blocks.{i}.…` | |
//! | `visual.trunk.norm.{weight,bias}` | `vision.ln_post.{gamma,beta}` | copy |
//! | `visual.trunk.attn_pool.latent` `[1, 1, d]` | `vision.attn_pool.probe` | copy |
//! | `visual.trunk.attn_pool.q.{weight,bias}` | `vision.attn_pool.attn.q.…` | transpose, copy |
//! | `visual.trunk.attn_pool.kv.weight` `[2d, d]` | `vision.attn_pool.attn.{k,v}.weight` | rows 0/1 of 2, transposed |
//! | `visual.trunk.attn_pool.kv.bias` `[2d]` | `vision.attn_pool.attn.{k,v}.bias` | rows 0/1 of 2 |
//! | `visual.trunk.attn_pool.proj.{weight,bias}` | `vision.attn_pool.attn.out.…` | transpose, copy |
//! | `visual.trunk.attn_pool.norm.{weight,bias}` | `vision.attn_pool.ln.{gamma,beta}` | copy |
//! | `visual.trunk.attn_pool.mlp.{fc1,fc2}.…` | `vision.attn_pool.mlp.{fc1,fc2}.…` | transpose, copy |
//! | `text.token_embedding.weight` | `text.token_embedding.weight` | copy |
//! | `text.positional_embedding` | `text.position_embedding` | copy |
//! | `text.transformer.resblocks.{i}.…` (OpenCLIP's block table) | `text.blocks.{i}.…` | |
//! | `text.ln_final.{weight,bias}` | `text.ln_final.{gamma,beta}` | copy |
//! | `text.text_projection.weight` `[e, d]`, `.bias` | `text.proj.weight` `[d, e]`, `.bias` | transpose, copy |
//! | `logit_scale`, `logit_bias` (0-dim) | `logit_scale`, `logit_bias` `[1]` | scalar |
//!
//! timm block: `norm1`/`norm2` -> `ln_1`/`ln_2`; the fused `attn.qkv.{weight,bias}` `[3d, d]`
//! split into q, k, v rows; `attn.proj` -> `attn.out`; `mlp.fc1`/`mlp.fc2` (weights transposed).
//!
//! The trunk's shape comes from its timm name ([`TIMM_SIGLIP`], timm 1.0's SigLIP ViTs: width,
//! depth, heads, MLP, patch, input size and activation, some of them `gelu_tanh`, the others
//! exact GELU). A name not in the table is built from `vision_cfg`'s `width`, `layers`,
//! `head_width`, `mlp_ratio`, `patch_size`, `image_size` and `act_kwargs` (fields OpenCLIP
//! itself ignores for timm trunks, and which duet writes on export); weights of another shape are
//! then refused by the loader.

use std::path::Path;

use serde_json::{Value, json};

use super::keys::BLOCK;
use crate::ModelError;
use crate::config::{
    Activation, ClipConfig, FileTokenizer, ImageResize, TextConfig, TextPool, TokenizerFiles,
    TokenizerSpec, VisionConfig, VisionPool,
};
use crate::hf::{SIGLIP_LOGIT_BIAS_INIT, SIGLIP_LOGIT_SCALE_INIT, SIGLIP_MEAN_STD};
use crate::weights::remap::{Mapping, Transform, expand_blocks};

use Transform::{Copy, DropLeadingOne, Rows, Scalar, Transpose};

/// A timm SigLIP ViT trunk's shape. LayerNorm eps is 1e-6 for all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimmTrunk {
    /// timm's model name.
    pub name: &'static str,
    /// Width.
    pub width: usize,
    /// Blocks.
    pub depth: usize,
    /// Attention heads.
    pub heads: usize,
    /// MLP hidden width.
    pub mlp: usize,
    /// Patch side.
    pub patch: usize,
    /// Input side.
    pub image: usize,
    /// `gelu_tanh` (else exact GELU).
    pub gelu_tanh: bool,
}

#[allow(clippy::too_many_arguments)]
const fn trunk(
    name: &'static str,
    width: usize,
    depth: usize,
    heads: usize,
    mlp: usize,
    patch: usize,
    image: usize,
    gelu_tanh: bool,
) -> TimmTrunk {
    TimmTrunk {
        name,
        width,
        depth,
        heads,
        mlp,
        patch,
        image,
        gelu_tanh,
    }
}

/// timm's SigLIP ViT trunks (`timm.list_models("vit_*siglip*")`, attention-pooled ones, timm
/// 1.0.31): name, width, depth, heads, MLP width, patch, input size, `gelu_tanh`.
#[rustfmt::skip]
pub const TIMM_SIGLIP: &[TimmTrunk] = &[
    trunk("vit_base_patch16_siglip_224", 768, 12, 12, 3072, 16, 224, false),
    trunk("vit_base_patch16_siglip_256", 768, 12, 12, 3072, 16, 256, false),
    trunk("vit_base_patch16_siglip_384", 768, 12, 12, 3072, 16, 384, false),
    trunk("vit_base_patch16_siglip_512", 768, 12, 12, 3072, 16, 512, false),
    trunk("vit_base_patch32_siglip_256", 768, 12, 12, 3072, 32, 256, true),
    trunk("vit_giantopt_patch16_siglip_256", 1536, 40, 16, 6144, 16, 256, true),
    trunk("vit_giantopt_patch16_siglip_384", 1536, 40, 16, 6144, 16, 384, true),
    trunk("vit_large_patch16_siglip_256", 1024, 24, 16, 4096, 16, 256, false),
    trunk("vit_large_patch16_siglip_384", 1024, 24, 16, 4096, 16, 384, false),
    trunk("vit_large_patch16_siglip_512", 1024, 24, 16, 4096, 16, 512, true),
    trunk("vit_so400m_patch14_siglip_224", 1152, 27, 16, 4304, 14, 224, false),
    trunk("vit_so400m_patch14_siglip_378", 1152, 27, 16, 4304, 14, 378, false),
    trunk("vit_so400m_patch14_siglip_384", 1152, 27, 16, 4304, 14, 384, false),
    trunk("vit_so400m_patch16_siglip_256", 1152, 27, 16, 4304, 16, 256, true),
    trunk("vit_so400m_patch16_siglip_384", 1152, 27, 16, 4304, 16, 384, true),
    trunk("vit_so400m_patch16_siglip_512", 1152, 27, 16, 4304, 16, 512, true),
];

/// The LayerNorm eps of every timm SigLIP trunk.
const TIMM_EPS: f64 = 1e-6;

const fn rows(index: usize, parts: usize, transpose: bool) -> Transform {
    Rows {
        index,
        parts,
        transpose,
    }
}

const TIMM_BLOCK: &[(&str, &str, Transform)] = &[
    ("norm1.weight", "ln_1.gamma", Copy),
    ("norm1.bias", "ln_1.beta", Copy),
    ("attn.qkv.weight", "attn.q.weight", rows(0, 3, true)),
    ("attn.qkv.weight", "attn.k.weight", rows(1, 3, true)),
    ("attn.qkv.weight", "attn.v.weight", rows(2, 3, true)),
    ("attn.qkv.bias", "attn.q.bias", rows(0, 3, false)),
    ("attn.qkv.bias", "attn.k.bias", rows(1, 3, false)),
    ("attn.qkv.bias", "attn.v.bias", rows(2, 3, false)),
    ("attn.proj.weight", "attn.out.weight", Transpose),
    ("attn.proj.bias", "attn.out.bias", Copy),
    ("norm2.weight", "ln_2.gamma", Copy),
    ("norm2.bias", "ln_2.beta", Copy),
    ("mlp.fc1.weight", "mlp.fc1.weight", Transpose),
    ("mlp.fc1.bias", "mlp.fc1.bias", Copy),
    ("mlp.fc2.weight", "mlp.fc2.weight", Transpose),
    ("mlp.fc2.bias", "mlp.fc2.bias", Copy),
];

const GLOBAL: &[(&str, &str, Transform)] = &[
    (
        "visual.trunk.patch_embed.proj.weight",
        "vision.patch_embed.weight",
        Copy,
    ),
    (
        "visual.trunk.patch_embed.proj.bias",
        "vision.patch_embed.bias",
        Copy,
    ),
    (
        "visual.trunk.pos_embed",
        "vision.position_embedding",
        DropLeadingOne,
    ),
    ("visual.trunk.norm.weight", "vision.ln_post.gamma", Copy),
    ("visual.trunk.norm.bias", "vision.ln_post.beta", Copy),
    (
        "visual.trunk.attn_pool.latent",
        "vision.attn_pool.probe",
        Copy,
    ),
    (
        "visual.trunk.attn_pool.q.weight",
        "vision.attn_pool.attn.q.weight",
        Transpose,
    ),
    (
        "visual.trunk.attn_pool.q.bias",
        "vision.attn_pool.attn.q.bias",
        Copy,
    ),
    (
        "visual.trunk.attn_pool.kv.weight",
        "vision.attn_pool.attn.k.weight",
        rows(0, 2, true),
    ),
    (
        "visual.trunk.attn_pool.kv.weight",
        "vision.attn_pool.attn.v.weight",
        rows(1, 2, true),
    ),
    (
        "visual.trunk.attn_pool.kv.bias",
        "vision.attn_pool.attn.k.bias",
        rows(0, 2, false),
    ),
    (
        "visual.trunk.attn_pool.kv.bias",
        "vision.attn_pool.attn.v.bias",
        rows(1, 2, false),
    ),
    (
        "visual.trunk.attn_pool.proj.weight",
        "vision.attn_pool.attn.out.weight",
        Transpose,
    ),
    (
        "visual.trunk.attn_pool.proj.bias",
        "vision.attn_pool.attn.out.bias",
        Copy,
    ),
    (
        "visual.trunk.attn_pool.norm.weight",
        "vision.attn_pool.ln.gamma",
        Copy,
    ),
    (
        "visual.trunk.attn_pool.norm.bias",
        "vision.attn_pool.ln.beta",
        Copy,
    ),
    (
        "visual.trunk.attn_pool.mlp.fc1.weight",
        "vision.attn_pool.mlp.fc1.weight",
        Transpose,
    ),
    (
        "visual.trunk.attn_pool.mlp.fc1.bias",
        "vision.attn_pool.mlp.fc1.bias",
        Copy,
    ),
    (
        "visual.trunk.attn_pool.mlp.fc2.weight",
        "vision.attn_pool.mlp.fc2.weight",
        Transpose,
    ),
    (
        "visual.trunk.attn_pool.mlp.fc2.bias",
        "vision.attn_pool.mlp.fc2.bias",
        Copy,
    ),
    (
        "text.token_embedding.weight",
        "text.token_embedding.weight",
        Copy,
    ),
    ("text.positional_embedding", "text.position_embedding", Copy),
    ("text.ln_final.weight", "text.ln_final.gamma", Copy),
    ("text.ln_final.bias", "text.ln_final.beta", Copy),
    ("text.text_projection.weight", "text.proj.weight", Transpose),
    ("text.text_projection.bias", "text.proj.bias", Copy),
    ("logit_scale", "logit_scale", Scalar),
    ("logit_bias", "logit_bias", Scalar),
];

/// Every mapping for an OpenCLIP SigLIP model of this config, globals first.
pub fn openclip_siglip_table(config: &ClipConfig) -> Vec<Mapping> {
    let mut table: Vec<Mapping> = GLOBAL
        .iter()
        .map(|(s, t, tr)| Mapping::new(*s, *t, *tr))
        .collect();
    expand_blocks(
        &mut table,
        "visual.trunk.blocks",
        "vision.blocks",
        config.vision.layers,
        TIMM_BLOCK,
    );
    expand_blocks(
        &mut table,
        "text.transformer.resblocks",
        "text.blocks",
        config.text.layers,
        BLOCK,
    );
    table
}

/// Whether an OpenCLIP model config names a timm image trunk.
pub(crate) fn is_timm(model: &Value) -> bool {
    model
        .get("vision_cfg")
        .and_then(|v| v.get("timm_model_name"))
        .is_some_and(|name| !name.is_null())
}

fn activation_of(gelu_tanh: bool) -> Activation {
    if gelu_tanh {
        Activation::GeluTanh
    } else {
        Activation::Gelu
    }
}

fn activation(act_kwargs: Option<&Value>) -> Activation {
    match act_kwargs
        .and_then(|a| a.get("approximate"))
        .and_then(Value::as_str)
    {
        Some("tanh") => Activation::GeluTanh,
        _ => Activation::Gelu,
    }
}

fn usize_of(section: &Value, key: &str, default: usize) -> Result<usize, String> {
    match section.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v
            .as_u64()
            .map(|n| n as usize)
            .ok_or_else(|| format!("{key} = {v} is not a whole number")),
    }
}

fn mlp_of(section: &Value, width: usize, default_ratio: f64) -> Result<usize, String> {
    let ratio = section
        .get("mlp_ratio")
        .and_then(Value::as_f64)
        .unwrap_or(default_ratio);
    let dim = width as f64 * ratio;
    // OpenCLIP and timm take int(width * ratio).
    if !(dim.is_finite() && dim >= 1.0) {
        return Err(format!("mlp_ratio = {ratio} gives no hidden units"));
    }
    Ok(dim as usize)
}

/// Parses an OpenCLIP SigLIP model config (`model`, from `model_cfg` or a bare config file)
/// with the hub's `preprocess_cfg`; every problem is listed.
pub(crate) fn parse(
    model: &Value,
    preprocess: Option<&Value>,
    path: &Path,
) -> Result<ClipConfig, ModelError> {
    let null = Value::Null;
    let v = model.get("vision_cfg").unwrap_or(&null);
    let t = model.get("text_cfg").unwrap_or(&null);
    let mut problems: Vec<String> = Vec::new();
    let text_of =
        |section: &Value, key: &str| section.get(key).and_then(Value::as_str).map(str::to_owned);
    let name = text_of(v, "timm_model_name").unwrap_or_default();
    if text_of(v, "timm_pool").as_deref() != Some("map") {
        problems.push(format!(
            "vision_cfg.timm_pool = {}: duet pools timm trunks with attention (\"map\") only",
            v.get("timm_pool").unwrap_or(&json!("avg (the default)"))
        ));
    }
    if text_of(v, "timm_proj").as_deref() != Some("none") {
        problems.push(format!(
            "vision_cfg.timm_proj = {}: SigLIP's pooled trunk output is the embedding (\"none\")",
            v.get("timm_proj").unwrap_or(&json!("linear (the default)"))
        ));
    }
    if model.get("custom_text") != Some(&Value::Bool(true)) {
        problems.push(
            "custom_text is not true: duet reads timm trunks beside a `text.*` tower only".into(),
        );
    }
    let flag = |key: &str| t.get(key) == Some(&Value::Bool(true));
    if !flag("no_causal_mask") {
        problems.push(
            "text_cfg.no_causal_mask is not true: SigLIP's text tower is bidirectional".into(),
        );
    }
    if text_of(t, "pool_type").as_deref() != Some("last") {
        problems.push("text_cfg.pool_type is not \"last\": SigLIP pools the last position".into());
    }
    if !flag("proj_bias") {
        problems.push("text_cfg.proj_bias is not true: SigLIP's text head has a bias".into());
    }
    for (key, harmless) in [
        ("proj_type", json!("linear")),
        ("hf_model_name", Value::Null),
        ("embed_cls", json!(false)),
        ("ls_init_value", Value::Null),
    ] {
        if let Some(value) = t.get(key)
            && !value.is_null()
            && *value != harmless
        {
            problems.push(format!(
                "text_cfg.{key} = {value} selects an architecture duet does not implement"
            ));
        }
    }
    let clean = t
        .get("tokenizer_kwargs")
        .and_then(|k| k.get("clean"))
        .and_then(Value::as_str)
        .unwrap_or("whitespace");
    let canonicalize = match clean {
        "canonicalize" => true,
        "whitespace" | "none" => false,
        other => {
            problems.push(format!(
                "text_cfg.tokenizer_kwargs.clean = {other:?}: duet knows \"canonicalize\" and \"whitespace\""
            ));
            false
        }
    };
    let dims = match TIMM_SIGLIP.iter().find(|t| t.name == name) {
        Some(known) => {
            let configured = usize_of(v, "image_size", known.image).unwrap_or(known.image);
            if configured != known.image {
                problems.push(format!(
                    "vision_cfg.image_size = {configured}, but the timm trunk {name} takes {} px",
                    known.image
                ));
            }
            Ok((*known, activation_of(known.gelu_tanh)))
        }
        None => (|| {
            let width = usize_of(v, "width", 768)?;
            let head_width = usize_of(v, "head_width", 64)?;
            if head_width == 0 || width % head_width != 0 {
                return Err(format!(
                    "head_width = {head_width} does not divide the width {width}"
                ));
            }
            let unknown = trunk(
                "",
                width,
                usize_of(v, "layers", 12)?,
                width / head_width,
                mlp_of(v, width, 4.0)?,
                usize_of(v, "patch_size", 16)?,
                usize_of(v, "image_size", 224)?,
                false,
            );
            Ok((unknown, activation(v.get("act_kwargs"))))
        })(),
    };
    let text = (|| {
        let width = usize_of(t, "width", 512)?;
        Ok::<_, String>((
            usize_of(t, "context_length", 77)?,
            usize_of(t, "vocab_size", 49_408)?,
            width,
            usize_of(t, "heads", 8)?,
            usize_of(t, "layers", 12)?,
            mlp_of(t, width, 4.0)?,
        ))
    })();
    let (dims, text) = match (dims, text) {
        (Ok(dims), Ok(text)) if problems.is_empty() => (dims, text),
        (dims, text) => {
            problems.extend(dims.err().map(|e| format!("vision_cfg.{e}")));
            problems.extend(text.err().map(|e| format!("text_cfg.{e}")));
            return Err(ModelError::ConfigParse {
                path: path.to_path_buf(),
                message: problems.join("; "),
            });
        }
    };
    let (shape, vision_act) = dims;
    let width = shape.width;
    let (context_length, vocab_size, text_width, text_heads, text_layers, text_mlp) = text;
    let embed_dim = usize_of(model, "embed_dim", width).unwrap_or(width);
    if embed_dim != width {
        return Err(ModelError::ConfigParse {
            path: path.to_path_buf(),
            message: format!(
                "embed_dim = {embed_dim} differs from the trunk's width {width}: with timm_proj \
                 \"none\" the pooled trunk output is the embedding"
            ),
        });
    }
    let triple = |key: &str| -> Result<Option<[f32; 3]>, ModelError> {
        preprocess
            .and_then(|p| p.get(key))
            .map(|x| serde_json::from_value::<[f32; 3]>(x.clone()))
            .transpose()
            .map_err(|e| ModelError::ConfigParse {
                path: path.to_path_buf(),
                message: format!("preprocess_cfg.{key}: {e}"),
            })
    };
    let resize = match preprocess
        .and_then(|p| p.get("resize_mode"))
        .and_then(Value::as_str)
    {
        Some("shortest") => ImageResize::Shortest,
        // OpenCLIP's SigLIP checkpoints squash; so does SigLIP.
        _ => ImageResize::Squash,
    };
    let text_eps = t
        .get("norm_kwargs")
        .and_then(|n| n.get("eps"))
        .and_then(Value::as_f64)
        .unwrap_or(1e-5);
    let pad_id = t
        .get("pad_id")
        .and_then(Value::as_u64)
        .and_then(|id| u32::try_from(id).ok())
        .unwrap_or(1);
    let config = ClipConfig {
        embed_dim,
        vision: VisionConfig {
            image_size: shape.image,
            patch_size: shape.patch,
            width,
            layers: shape.depth,
            heads: shape.heads,
            mlp_dim: shape.mlp,
            activation: vision_act,
            layer_norm_eps: TIMM_EPS,
            image_mean: triple("mean")?.unwrap_or(SIGLIP_MEAN_STD),
            image_std: triple("std")?.unwrap_or(SIGLIP_MEAN_STD),
            class_token: false,
            patch_bias: true,
            ln_pre: false,
            pool: VisionPool::Map,
            proj: false,
            resize,
            linear_patches: false,
            timm_model: Some(name),
        },
        text: TextConfig {
            context_length,
            vocab_size,
            width: text_width,
            layers: text_layers,
            heads: text_heads,
            mlp_dim: text_mlp,
            activation: activation(t.get("act_kwargs")),
            layer_norm_eps: text_eps,
            eot_token_id: pad_id,
            causal: false,
            pool: TextPool::Last,
            proj_bias: true,
            // `read_config` reads the directory's tokenizer files and settles the pad id.
            tokenizer: TokenizerSpec::File(FileTokenizer {
                pad_id,
                lowercase: false,
                pad_left: false,
                canonicalize,
                hub_name: text_of(t, "hf_tokenizer_name"),
                files: TokenizerFiles::default(),
            }),
        },
        logit_scale_init: model
            .get("init_logit_scale")
            .and_then(Value::as_f64)
            .unwrap_or(SIGLIP_LOGIT_SCALE_INIT),
        logit_bias_init: Some(
            model
                .get("init_logit_bias")
                .and_then(Value::as_f64)
                .unwrap_or(SIGLIP_LOGIT_BIAS_INIT),
        ),
    };
    config.validate()?;
    Ok(config)
}

/// OpenCLIP's `open_clip_config.json` for a SigLIP model: the timm trunk it came from, or the
/// timm SigLIP trunk of its exact shape; refused when there is none.
pub(crate) fn to_json(config: &ClipConfig) -> Result<Value, ModelError> {
    let (v, t) = (&config.vision, &config.text);
    if v.linear_patches {
        return Err(ModelError::invalid(
            "format",
            "OpenCLIP holds SigLIP 2 as the SigLIP layout with another tokenizer; a Siglip2Model's \
             patch Linear has no OpenCLIP form in duet yet; use --format hf",
        ));
    }
    let tanh = |a: Activation| a == Activation::GeluTanh;
    let name = match &v.timm_model {
        Some(name) => name.clone(),
        None => {
            let shaped = |t: &TimmTrunk, gelu_tanh: bool| {
                *t == trunk(
                    t.name,
                    v.width,
                    v.layers,
                    v.heads,
                    v.mlp_dim,
                    v.patch_size,
                    v.image_size,
                    gelu_tanh,
                ) && v.layer_norm_eps == TIMM_EPS
            };
            let exact = TIMM_SIGLIP.iter().find(|t| shaped(t, tanh(v.activation)));
            let by_shape = TIMM_SIGLIP.iter().find(|t| shaped(t, t.gelu_tanh));
            match (exact, by_shape) {
                (Some(t), _) => t.name.to_owned(),
                (None, Some(t)) => {
                    // OpenCLIP's own conversions of google/siglip-* do the same: timm's trunk
                    // of that shape, with timm's activation.
                    tracing::warn!(
                        "the image tower uses {:?}, the timm trunk {} of its shape {}: \
                         OpenCLIP will run the exported image tower with timm's activation, \
                         as it runs its own conversions of these checkpoints",
                        v.activation,
                        t.name,
                        if t.gelu_tanh {
                            "gelu_tanh"
                        } else {
                            "exact GELU"
                        }
                    );
                    t.name.to_owned()
                }
                (None, None) => {
                    return Err(ModelError::invalid(
                        "format",
                        format!(
                            "no timm SigLIP trunk has this image tower's shape (width {}, {} \
                             blocks, {} heads, MLP {}, patch {}, {} px, eps {}): OpenCLIP \
                             could not build it; use --format hf",
                            v.width,
                            v.layers,
                            v.heads,
                            v.mlp_dim,
                            v.patch_size,
                            v.image_size,
                            v.layer_norm_eps
                        ),
                    ));
                }
            }
        }
    };
    let act_kwargs = |a: Activation| match a {
        Activation::GeluTanh => Ok(json!({"approximate": "tanh"})),
        Activation::Gelu => Ok(Value::Null),
        Activation::QuickGelu => Err(ModelError::invalid(
            "activation",
            "OpenCLIP's SigLIP towers have no QuickGELU",
        )),
    };
    let (canonicalize, pad_id, hub_name) = match &t.tokenizer {
        TokenizerSpec::File(file) => (file.canonicalize, file.pad_id, file.hub_name.clone()),
        TokenizerSpec::ClipBpe => (false, t.eot_token_id, None),
    };
    let mut text_cfg = json!({
        "context_length": t.context_length,
        "vocab_size": t.vocab_size,
        "width": t.width,
        "heads": t.heads,
        "layers": t.layers,
        "mlp_ratio": t.mlp_dim as f64 / t.width as f64,
        "no_causal_mask": true,
        "proj_bias": true,
        "pool_type": "last",
        "pad_id": pad_id,
        "norm_kwargs": {"eps": t.layer_norm_eps},
        "act_kwargs": act_kwargs(t.activation)?,
    });
    if canonicalize {
        text_cfg["tokenizer_kwargs"] = json!({"clean": "canonicalize"});
    }
    // Any non-empty name makes open_clip use an HF tokenizer; a `local-dir:` load then reads
    // the directory's tokenizer files, which duet writes beside the weights.
    text_cfg["hf_tokenizer_name"] = json!(hub_name.unwrap_or_else(|| "./".into()));
    Ok(json!({
        "model_cfg": {
            "embed_dim": config.embed_dim,
            "init_logit_scale": config.logit_scale_init,
            "init_logit_bias": config.logit_bias_init,
            "custom_text": true,
            "vision_cfg": {
                "image_size": v.image_size,
                "timm_model_name": name,
                "timm_model_pretrained": false,
                "timm_pool": "map",
                "timm_proj": "none",
                // Ignored by OpenCLIP for timm trunks; what duet builds a trunk of an unknown
                // name from.
                "width": v.width,
                "layers": v.layers,
                "head_width": v.width / v.heads,
                "mlp_ratio": v.mlp_dim as f64 / v.width as f64,
                "patch_size": v.patch_size,
                "act_kwargs": act_kwargs(v.activation)?,
            },
            "text_cfg": text_cfg,
        },
        "preprocess_cfg": {
            "mean": v.image_mean,
            "std": v.image_std,
            "interpolation": "bicubic",
            "resize_mode": match v.resize {
                ImageResize::Squash => "squash",
                ImageResize::Shortest => "shortest",
            },
        },
    }))
}
