//! The type the towers' matrix products run in (OpenCLIP's `--precision`): parameters,
//! gradients and everything outside the blocks' matrix products stay f32.
//!
//! In `Bf16`/`F16` (torch autocast's `amp_bf16`/`amp`, written out by hand as burn has no
//! autocast): every block `Linear` casts its input and its f32 weight to the low type, the
//! attention scores `q·kᵀ` and `attn·v` run in it with the softmax in f32, the MLP's hidden
//! activations stay in it, and each block casts its attention and MLP outputs back to f32
//! before the residual add; the patch-embedding convolution runs in it too. LayerNorm, the
//! residual stream, the embeddings, the projections, normalisation, logits and loss are f32.
//! burn's cast is differentiable, its backward casting the gradient back to f32, so the
//! optimizer only ever sees f32.

use std::fmt;
use std::str::FromStr;

use burn::tensor::activation::softmax;
use burn::tensor::{Bool, Device, FloatDType, Tensor};
use serde::{Deserialize, Serialize};

/// See the module docs. Not part of a saved model: a module field skipped by burn's records.
/// In configs: `"f32"`, `"bf16"`, `"f16"`, or OpenCLIP's `"fp32"`, `"amp_bf16"`, `"amp"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Everything in f32.
    #[default]
    #[serde(alias = "fp32")]
    F32,
    /// Matrix products in bfloat16 (8 bits of mantissa, f32's range).
    #[serde(alias = "amp_bf16")]
    Bf16,
    /// Matrix products in float16 (11 bits of mantissa, largest value 65504): train it with a
    /// dynamic loss scale.
    #[serde(alias = "amp", alias = "fp16")]
    F16,
}

impl Precision {
    /// The names `--precision` and `train.precision` take (OpenCLIP's names are accepted too).
    pub const NAMES: &'static str = "f32, bf16 or f16 (OpenCLIP's fp32, amp_bf16, amp)";

    /// The low type, `None` for f32.
    pub fn low(self) -> Option<FloatDType> {
        match self {
            Self::F32 => None,
            Self::Bf16 => Some(FloatDType::BF16),
            Self::F16 => Some(FloatDType::F16),
        }
    }

    /// `f32`, `bf16` or `f16`.
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::Bf16 => "bf16",
            Self::F16 => "f16",
        }
    }

    /// Whether `device` can compute in this precision (f32 everywhere; the low types where
    /// the backend says it has arithmetic for them: flex and CUDA for both, wgpu for f16 on
    /// adapters with `shader-f16`).
    pub fn runs_on(self, device: &Device) -> bool {
        self.low().is_none_or(|dtype| device.supports_dtype(dtype))
    }

    /// Every device of `devices` can compute in this precision; else why the first cannot (the
    /// one message `train.precision`, `--precision` and `duet bench` refuse with).
    pub fn check_on(self, devices: &[Device]) -> Result<(), String> {
        match devices.iter().find(|d| !self.runs_on(d)) {
            None => Ok(()),
            Some(device) => Err(format!(
                "{device:?} has no {self} arithmetic (WGSL has no bf16; f16 on wgpu needs an \
                 adapter with shader-f16)"
            )),
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Precision {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "f32" | "fp32" => Ok(Self::F32),
            "bf16" | "amp_bf16" => Ok(Self::Bf16),
            "f16" | "fp16" | "amp" => Ok(Self::F16),
            other => Err(format!("unknown precision {other:?}: use {}", Self::NAMES)),
        }
    }
}

/// `x` in `dtype` (a no-op when it already is).
pub(crate) fn to<const D: usize>(x: Tensor<D>, dtype: FloatDType) -> Tensor<D> {
    if x.dtype() == dtype.into() {
        x
    } else {
        x.cast(dtype)
    }
}

/// `softmax(q·kᵀ / sqrt(head_dim)) · v` with `q`, `k`, `v` (`[b, heads, t, head_dim]`) and the
/// result in `dtype`, the scores' scaling, mask and softmax in f32 (as torch's attention under
/// autocast accumulates its softmax in f32). `causal` masks every key after its query.
pub(crate) fn attention_in(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    causal: bool,
    dtype: FloatDType,
) -> Tensor<4> {
    let [b, heads, t, head_dim] = q.dims();
    let scores =
        to(q.matmul(k.swap_dims(2, 3)), FloatDType::F32).mul_scalar((head_dim as f64).powf(-0.5));
    let scores = if causal {
        // true above the diagonal: key j > query i.
        let mask = Tensor::<2, Bool>::tril_mask([t, t], 0, &scores.device())
            .reshape([1, 1, t, t])
            .expand([b, heads, t, t]);
        scores.mask_fill(mask, f32::NEG_INFINITY)
    } else {
        scores
    };
    to(softmax(scores, 3), dtype).matmul(v)
}
