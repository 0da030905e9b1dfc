//! The key table between transformers' `CLIPModel` state dict and [`ClipModel`].
//!
//! | HF key | duet path | transform |
//! |---|---|---|
//! | `text_model.embeddings.token_embedding.weight` | `text.token_embedding.weight` | copy |
//! | `text_model.embeddings.position_embedding.weight` | `text.position_embedding` | copy |
//! | `text_model.encoder.layers.{i}.…` (block table below) | `text.blocks.{i}.…` | |
//! | `text_model.final_layer_norm.{weight,bias}` | `text.ln_final.{gamma,beta}` | copy |
//! | `text_projection.weight` `[e, d]` | `text.proj.weight` `[d, e]` | transpose |
//! | `vision_model.embeddings.class_embedding` | `vision.class_embedding` | copy |
//! | `vision_model.embeddings.patch_embedding.weight` | `vision.patch_embed.weight` | copy |
//! | `vision_model.embeddings.position_embedding.weight` | `vision.position_embedding` | copy |
//! | `vision_model.pre_layrnorm.{weight,bias}` (sic) | `vision.ln_pre.{gamma,beta}` | copy |
//! | `vision_model.encoder.layers.{i}.…` (block table below) | `vision.blocks.{i}.…` | |
//! | `vision_model.post_layernorm.{weight,bias}` | `vision.ln_post.{gamma,beta}` | copy |
//! | `visual_projection.weight` `[e, d]` | `vision.proj.weight` `[d, e]` | transpose |
//! | `logit_scale` (0-dim) | `logit_scale` `[1]` | scalar |
//!
//! Per block: `layer_norm1` -> `ln_1`, `self_attn.{q,k,v,out}_proj` -> `attn.{q,k,v,out}`,
//! `layer_norm2` -> `ln_2`, `mlp.fc1` -> `mlp.fc1`, `mlp.fc2` -> `mlp.fc2`; LayerNorm
//! `weight`/`bias` are burn's `gamma`/`beta`; linear weights are transposed, biases copied.
//!
//! Older transformers versions also saved the `*.embeddings.position_ids` buffers; they are
//! accepted and ignored ([`HF_IGNORABLE`]).

use crate::ClipConfig;
use crate::weights::remap::{Mapping, Transform, expand_blocks};

use Transform::{Copy, Scalar, Transpose};

/// Buffers an HF checkpoint may carry that are not parameters.
pub const HF_IGNORABLE: &[&str] = &["embeddings.position_ids"];

const BLOCK: &[(&str, &str, Transform)] = &[
    ("layer_norm1.weight", "ln_1.gamma", Copy),
    ("layer_norm1.bias", "ln_1.beta", Copy),
    ("self_attn.q_proj.weight", "attn.q.weight", Transpose),
    ("self_attn.q_proj.bias", "attn.q.bias", Copy),
    ("self_attn.k_proj.weight", "attn.k.weight", Transpose),
    ("self_attn.k_proj.bias", "attn.k.bias", Copy),
    ("self_attn.v_proj.weight", "attn.v.weight", Transpose),
    ("self_attn.v_proj.bias", "attn.v.bias", Copy),
    ("self_attn.out_proj.weight", "attn.out.weight", Transpose),
    ("self_attn.out_proj.bias", "attn.out.bias", Copy),
    ("layer_norm2.weight", "ln_2.gamma", Copy),
    ("layer_norm2.bias", "ln_2.beta", Copy),
    ("mlp.fc1.weight", "mlp.fc1.weight", Transpose),
    ("mlp.fc1.bias", "mlp.fc1.bias", Copy),
    ("mlp.fc2.weight", "mlp.fc2.weight", Transpose),
    ("mlp.fc2.bias", "mlp.fc2.bias", Copy),
];

/// The mappings CLIP and SigLIP share: their text embeddings and final LayerNorm, and the image
/// tower's patch weight, positions and post-LayerNorm.
pub(super) const SHARED: &[(&str, &str, Transform)] = &[
    (
        "text_model.embeddings.token_embedding.weight",
        "text.token_embedding.weight",
        Copy,
    ),
    (
        "text_model.embeddings.position_embedding.weight",
        "text.position_embedding",
        Copy,
    ),
    (
        "text_model.final_layer_norm.weight",
        "text.ln_final.gamma",
        Copy,
    ),
    (
        "text_model.final_layer_norm.bias",
        "text.ln_final.beta",
        Copy,
    ),
    (
        "vision_model.embeddings.patch_embedding.weight",
        "vision.patch_embed.weight",
        Copy,
    ),
    (
        "vision_model.embeddings.position_embedding.weight",
        "vision.position_embedding",
        Copy,
    ),
    (
        "vision_model.post_layernorm.weight",
        "vision.ln_post.gamma",
        Copy,
    ),
    (
        "vision_model.post_layernorm.bias",
        "vision.ln_post.beta",
        Copy,
    ),
];

/// CLIP's own mappings, beside [`SHARED`].
const CLIP_ONLY: &[(&str, &str, Transform)] = &[
    ("text_projection.weight", "text.proj.weight", Transpose),
    (
        "vision_model.embeddings.class_embedding",
        "vision.class_embedding",
        Copy,
    ),
    (
        "vision_model.pre_layrnorm.weight",
        "vision.ln_pre.gamma",
        Copy,
    ),
    ("vision_model.pre_layrnorm.bias", "vision.ln_pre.beta", Copy),
    ("visual_projection.weight", "vision.proj.weight", Transpose),
    ("logit_scale", "logit_scale", Scalar),
];

/// Every mapping for a model of this config, globals first (a SigLIP model's are
/// `hf/siglip.rs`'s `siglip_table`).
pub fn hf_table(config: &ClipConfig) -> Vec<Mapping> {
    if config.vision.pool == crate::VisionPool::Map {
        return super::siglip::siglip_table(config);
    }
    with_blocks(CLIP_ONLY, config)
}

/// [`SHARED`], then `own`, then both towers' blocks (the same block table for CLIP and SigLIP).
pub(super) fn with_blocks(own: &[(&str, &str, Transform)], config: &ClipConfig) -> Vec<Mapping> {
    let mut table: Vec<Mapping> = SHARED
        .iter()
        .chain(own)
        .map(|(s, t, tr)| Mapping::new(*s, *t, *tr))
        .collect();
    expand_blocks(
        &mut table,
        "text_model.encoder.layers",
        "text.blocks",
        config.text.layers,
        BLOCK,
    );
    expand_blocks(
        &mut table,
        "vision_model.encoder.layers",
        "vision.blocks",
        config.vision.layers,
        BLOCK,
    );
    table
}
