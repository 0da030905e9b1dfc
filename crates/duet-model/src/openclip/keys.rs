//! The key table between an OpenCLIP `CLIP` state dict and [`ClipModel`].
//!
//! | OpenCLIP key | duet path | transform |
//! |---|---|---|
//! | `token_embedding.weight` | `text.token_embedding.weight` | copy |
//! | `positional_embedding` | `text.position_embedding` | copy |
//! | `transformer.resblocks.{i}.…` (block table below) | `text.blocks.{i}.…` | |
//! | `ln_final.{weight,bias}` | `text.ln_final.{gamma,beta}` | copy |
//! | `text_projection` `[d, e]` (used as `x @ P`) | `text.proj.weight` `[d, e]` | copy |
//! | `visual.class_embedding` | `vision.class_embedding` | copy |
//! | `visual.conv1.weight` | `vision.patch_embed.weight` | copy |
//! | `visual.positional_embedding` | `vision.position_embedding` | copy |
//! | `visual.ln_pre.{weight,bias}` | `vision.ln_pre.{gamma,beta}` | copy |
//! | `visual.transformer.resblocks.{i}.…` (block table below) | `vision.blocks.{i}.…` | |
//! | `visual.ln_post.{weight,bias}` | `vision.ln_post.{gamma,beta}` | copy |
//! | `visual.proj` `[d, e]` | `vision.proj.weight` `[d, e]` | copy |
//! | `logit_scale` (0-dim) | `logit_scale` `[1]` | scalar |
//! | `logit_bias` (0-dim, SigLIP-style configs only) | `logit_bias` `[1]` | scalar |
//!
//! Per block: `ln_1`/`ln_2` -> `ln_1`/`ln_2`; the fused `attn.in_proj_weight` `[3d, d]` is split
//! into row blocks q, k, v, each transposed to `attn.{q,k,v}.weight`, and `attn.in_proj_bias`
//! `[3d]` into `attn.{q,k,v}.bias`; `attn.out_proj` -> `attn.out`; `mlp.c_fc` -> `mlp.fc1`,
//! `mlp.c_proj` -> `mlp.fc2` (weights transposed). The causal `attn_mask` buffer, present in some
//! older checkpoints, is ignored ([`OPENCLIP_IGNORABLE`]).

use crate::ClipConfig;
use crate::weights::remap::{Mapping, Transform, expand_blocks};

use Transform::{Copy, Rows, Scalar, Transpose};

/// Buffers an OpenCLIP checkpoint may carry that are not parameters.
pub const OPENCLIP_IGNORABLE: &[&str] = &["attn_mask"];

const fn qkv(index: usize, transpose: bool) -> Transform {
    Rows {
        index,
        parts: 3,
        transpose,
    }
}

pub(super) const BLOCK: &[(&str, &str, Transform)] = &[
    ("ln_1.weight", "ln_1.gamma", Copy),
    ("ln_1.bias", "ln_1.beta", Copy),
    ("attn.in_proj_weight", "attn.q.weight", qkv(0, true)),
    ("attn.in_proj_weight", "attn.k.weight", qkv(1, true)),
    ("attn.in_proj_weight", "attn.v.weight", qkv(2, true)),
    ("attn.in_proj_bias", "attn.q.bias", qkv(0, false)),
    ("attn.in_proj_bias", "attn.k.bias", qkv(1, false)),
    ("attn.in_proj_bias", "attn.v.bias", qkv(2, false)),
    ("attn.out_proj.weight", "attn.out.weight", Transpose),
    ("attn.out_proj.bias", "attn.out.bias", Copy),
    ("ln_2.weight", "ln_2.gamma", Copy),
    ("ln_2.bias", "ln_2.beta", Copy),
    ("mlp.c_fc.weight", "mlp.fc1.weight", Transpose),
    ("mlp.c_fc.bias", "mlp.fc1.bias", Copy),
    ("mlp.c_proj.weight", "mlp.fc2.weight", Transpose),
    ("mlp.c_proj.bias", "mlp.fc2.bias", Copy),
];

const GLOBAL: &[(&str, &str, Transform)] = &[
    (
        "token_embedding.weight",
        "text.token_embedding.weight",
        Copy,
    ),
    ("positional_embedding", "text.position_embedding", Copy),
    ("ln_final.weight", "text.ln_final.gamma", Copy),
    ("ln_final.bias", "text.ln_final.beta", Copy),
    ("text_projection", "text.proj.weight", Copy),
    ("visual.class_embedding", "vision.class_embedding", Copy),
    ("visual.conv1.weight", "vision.patch_embed.weight", Copy),
    (
        "visual.positional_embedding",
        "vision.position_embedding",
        Copy,
    ),
    ("visual.ln_pre.weight", "vision.ln_pre.gamma", Copy),
    ("visual.ln_pre.bias", "vision.ln_pre.beta", Copy),
    ("visual.ln_post.weight", "vision.ln_post.gamma", Copy),
    ("visual.ln_post.bias", "vision.ln_post.beta", Copy),
    ("visual.proj", "vision.proj.weight", Copy),
    ("logit_scale", "logit_scale", Scalar),
];

/// Every mapping for a model of this config, globals first.
pub fn openclip_table(config: &ClipConfig) -> Vec<Mapping> {
    let mut table: Vec<Mapping> = GLOBAL
        .iter()
        .map(|(s, t, tr)| Mapping::new(*s, *t, *tr))
        .collect();
    if config.logit_bias_init.is_some() {
        table.push(Mapping::new("logit_bias", "logit_bias", Scalar));
    }
    expand_blocks(
        &mut table,
        "transformer.resblocks",
        "text.blocks",
        config.text.layers,
        BLOCK,
    );
    expand_blocks(
        &mut table,
        "visual.transformer.resblocks",
        "vision.blocks",
        config.vision.layers,
        BLOCK,
    );
    table
}
