//! The ViT image tower.

use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Initializer, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, FloatDType, Int, Tensor};

use crate::block::{Attention, Block, BlockConfig, Mlp};
use crate::config::{VisionConfig, VisionPool};
use crate::precision::{Precision, to};

/// ViT: conv patch embedding, class token, learned positions, pre-LN, pre-norm blocks,
/// post-LN on the class token, projection without bias (CLIP); or a biased patch embedding, no
/// class token and no pre-LN, post-LN on every token and the attention-pooling head (SigLIP).
#[derive(Module, Debug)]
pub struct VisionTower {
    /// `[width, 3, patch, patch]`, stride `patch`; a bias in SigLIP.
    pub patch_embed: Conv2d,
    /// `[width]`; none in SigLIP.
    pub class_embedding: Option<Param<Tensor<1>>>,
    /// `[positions, width]`: one per patch, plus the class token's first if there is one.
    pub position_embedding: Param<Tensor<2>>,
    /// LayerNorm before the blocks (HF's `pre_layrnorm`); none in SigLIP.
    pub ln_pre: Option<LayerNorm>,
    /// The residual blocks.
    pub blocks: Vec<Block>,
    /// LayerNorm on the pooled class token (CLIP), on every token (SigLIP).
    pub ln_post: LayerNorm,
    /// SigLIP's attention-pooling head.
    pub attn_pool: Option<MapHead>,
    /// `[width, embed_dim]`, no bias; none in SigLIP.
    pub proj: Option<Linear>,
    #[module(skip)]
    precision: Precision,
}

/// SigLIP's multi-head attention pooling (HF `SiglipMultiheadAttentionPoolingHead`, big_vision
/// `MAPHead`): a learned probe attends over the sequence, then `x + mlp(ln(x))`; the probe's
/// output is the image embedding.
#[derive(Module, Debug)]
pub struct MapHead {
    /// `[1, 1, width]`.
    pub probe: Param<Tensor<3>>,
    /// Queries from the probe, keys and values from the sequence (HF's fused `in_proj` split).
    pub attn: Attention,
    /// The LayerNorm before the MLP.
    pub ln: LayerNorm,
    /// The MLP.
    pub mlp: Mlp,
}

impl MapHead {
    /// `hidden`: `[b, n, width]` -> `[b, width]`.
    pub fn forward(&self, hidden: Tensor<3>) -> Tensor<2> {
        let [b, _, width] = hidden.dims();
        let probe = self.probe.val().expand([b, 1, width]);
        let x = self.attn.attend(probe, hidden, false);
        let x = x.clone() + self.mlp.forward(self.ln.forward(x));
        x.reshape([b, width])
    }
}

/// The identity on `x` (`[b, n, width]`), whose gradient leaves the batch-dense (each
/// sample's `n × width` values contiguous, one sample after the next).
///
/// Why: burn-cubecl 0.22.1's `wgrad_im2col` (one of the weight-gradient kernels wgpu and CUDA
/// autotune between) merges a convolution's batch and spatial dimensions as a view after
/// checking only the spatial strides, so it reads a gradient whose batch stride is not dense
/// wrongly. The class token's `cat` hands the patches exactly such a gradient (a slice of the
/// `[b, 1 + n, width]` one, batch stride `(1 + n) × width`). On Mesa's lavapipe this made the
/// tiny config's patch-embedding gradient 15× too large (`tests/wgpu_gradients.rs`).
///
/// How: `[b, n, width] -> [b·n, width] -> [b, n, width]`. Backwards, the first reshape of the
/// sliced gradient cannot be a view (its batch stride is not `n × width`), so every backend
/// copies it into a dense tensor; forwards it costs one copy of the patches (which the `cat`
/// after copies again). On the CPU the values are bitwise unchanged.
fn batch_dense_grad(x: Tensor<3>) -> Tensor<3> {
    let [b, n, width] = x.dims();
    x.reshape([b * n, width]).reshape([b, n, width])
}

impl VisionConfig {
    /// A randomly initialised tower (OpenCLIP's init: embeddings and projection `width^-0.5`).
    pub fn init(&self, embed_dim: usize, device: &Device) -> VisionTower {
        let scale = (self.width as f64).powf(-0.5);
        let normal = Initializer::Normal {
            mean: 0.0,
            std: scale,
        };
        let block = BlockConfig {
            width: self.width,
            heads: self.heads,
            mlp_dim: self.mlp_dim,
            activation: self.activation,
            layer_norm_eps: self.layer_norm_eps,
            depth: self.layers,
        };
        let ln = || {
            LayerNormConfig::new(self.width)
                .with_epsilon(self.layer_norm_eps)
                .init(device)
        };
        VisionTower {
            patch_embed: Conv2dConfig::new([3, self.width], [self.patch_size; 2])
                .with_stride([self.patch_size; 2])
                .with_bias(self.patch_bias)
                .init(device),
            class_embedding: self.class_token.then(|| normal.init([self.width], device)),
            position_embedding: normal.init([self.num_positions(), self.width], device),
            ln_pre: self.ln_pre.then(ln),
            blocks: (0..self.layers).map(|_| block.init(device)).collect(),
            ln_post: ln(),
            attn_pool: (self.pool == VisionPool::Map).then(|| {
                let Block {
                    attn, ln_2, mlp, ..
                } = block.init(device);
                MapHead {
                    probe: normal.init([1, 1, self.width], device),
                    attn,
                    ln: ln_2,
                    mlp,
                }
            }),
            proj: self.proj.then(|| {
                LinearConfig::new(self.width, embed_dim)
                    .with_bias(false)
                    .with_initializer(normal.clone())
                    .init(device)
            }),
            precision: Precision::F32,
        }
    }
}

impl VisionTower {
    /// The tower's compute precision: the patch embedding's and every block's.
    pub fn set_precision(&mut self, precision: Precision) {
        self.precision = precision;
        for block in &mut self.blocks {
            block.set_precision(precision);
        }
        if let Some(head) = &mut self.attn_pool {
            head.attn.set_precision(precision);
            head.mlp.set_precision(precision);
        }
    }

    /// See [`Self::set_precision`].
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// The patch embedding, in the tower's precision; f32 out. `[b, 3, h, w]` ->
    /// `[b, width, h/p, w/p]`.
    fn patchify(&self, pixels: Tensor<4>) -> Tensor<4> {
        let Some(dtype) = self.precision.low() else {
            return self.patch_embed.forward(pixels);
        };
        // Every duet preset's patch embedding is an unpadded, ungrouped, stride-p convolution.
        let conv = &self.patch_embed;
        let options = ConvOptions::new(conv.stride, [0, 0], conv.dilation, conv.groups);
        let out = burn::tensor::module::conv2d(
            to(pixels, dtype),
            to(conv.weight.val(), dtype),
            conv.bias.as_ref().map(|b| to(b.val(), dtype)),
            options,
        );
        to(out, FloatDType::F32)
    }

    /// The token sequence the first block takes: patch embedding, class token, positions,
    /// `ln_pre`.
    ///
    /// `pixels`: `[b, 3, h, w]` normalised images -> `[b, 1 + (h/p)(w/p), width]`, class token
    /// first.
    pub fn embed(&self, pixels: Tensor<4>) -> Tensor<3> {
        self.embed_keeping(pixels, None)
    }

    /// [`Self::embed`] keeping, of the patch tokens, only those `keep` names (FLIP's patch
    /// dropout, OpenCLIP's `PatchDropout`: after the positions are added, before `ln_pre`; the
    /// class token is always kept).
    ///
    /// `keep`: `[b, k]` indices into each image's `(h/p)(w/p)` patches -> `[b, 1 + k, width]`.
    pub fn embed_keeping(&self, pixels: Tensor<4>, keep: Option<Tensor<2, Int>>) -> Tensor<3> {
        let patches = self.patchify(pixels);
        let [b, width, gh, gw] = patches.dims();
        let patches = batch_dense_grad(patches.reshape([b, width, gh * gw]).swap_dims(1, 2));
        let first = usize::from(self.class_embedding.is_some());
        let x = match &self.class_embedding {
            Some(class) => {
                let class = class.val().reshape([1, 1, width]).expand([b, 1, width]);
                Tensor::cat(vec![class, patches], 1)
            }
            None => patches,
        } + self.position_embedding.val().unsqueeze_dim::<3>(0);
        let x = match keep {
            Some(keep) => {
                let [_, k] = keep.dims();
                let index = keep.unsqueeze_dim::<3>(2).expand([b, k, width]);
                let kept = x.clone().narrow(1, first, gh * gw).gather(1, index);
                if first == 1 {
                    Tensor::cat(vec![x.narrow(1, 0, 1), kept], 1)
                } else {
                    kept
                }
            }
            None => x,
        };
        match &self.ln_pre {
            Some(ln) => ln.forward(x),
            None => x,
        }
    }

    /// The token sequence after the last block, before `ln_post`.
    ///
    /// `pixels`: `[b, 3, h, w]` normalised images -> `[b, 1 + (h/p)(w/p), width]`, class token first.
    pub fn forward_hidden(&self, pixels: Tensor<4>) -> Tensor<3> {
        self.forward_hidden_keeping(pixels, None)
    }

    /// [`Self::forward_hidden`] on the tokens [`Self::embed_keeping`] keeps.
    pub fn forward_hidden_keeping(
        &self,
        pixels: Tensor<4>,
        keep: Option<Tensor<2, Int>>,
    ) -> Tensor<3> {
        let mut x = self.embed_keeping(pixels, keep);
        for block in &self.blocks {
            x = block.forward(x, false);
        }
        x
    }

    /// Projected features of the sequence after the last block: `ln_post` on the class token
    /// and the projection (CLIP), or `ln_post` on every token and the attention-pooling head
    /// (SigLIP).
    ///
    /// `hidden`: `[b, n, width]` -> `[b, embed_dim]`.
    pub fn head(&self, hidden: Tensor<3>) -> Tensor<2> {
        let [b, _, width] = hidden.dims();
        let pooled = match &self.attn_pool {
            Some(head) => head.forward(self.ln_post.forward(hidden)),
            None => self
                .ln_post
                .forward(hidden.narrow(1, 0, 1).reshape([b, width])),
        };
        match &self.proj {
            Some(proj) => proj.forward(pooled),
            None => pooled,
        }
    }

    /// Patch tokens per image (the positions less the class token's).
    pub fn num_patches(&self) -> usize {
        // From the shapes alone: reading a lazily drawn parameter would draw it out of order.
        let width = self.ln_post.gamma.lazy_shape().num_elements().max(1);
        let positions = self.position_embedding.lazy_shape().num_elements() / width;
        positions - usize::from(self.class_embedding.is_some())
    }

    /// Projected image features, not normalised.
    ///
    /// `pixels`: `[b, 3, h, w]` -> `[b, embed_dim]`.
    pub fn forward(&self, pixels: Tensor<4>) -> Tensor<2> {
        self.head(self.forward_hidden(pixels))
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Distribution, TensorData};

    use super::*;
    use crate::preset;

    #[test]
    fn keeping_every_patch_is_embed_and_keeping_some_drops_the_rest() {
        // The tiny preset at 64 px, patch 8: 64 patches + the class token.
        let device = Device::flex();
        let tower = preset("tiny")
            .expect("tiny")
            .init(&device)
            .expect("model")
            .vision;
        let pixels = Tensor::<4>::random([2, 3, 64, 64], Distribution::Normal(0.0, 1.0), &device);
        let all = Tensor::<1, Int>::arange(0..64, &device)
            .unsqueeze_dim::<2>(0)
            .expand([2, 64]);
        let full = tower.embed(pixels.clone());
        let kept = tower.embed_keeping(pixels.clone(), Some(all));
        assert_eq!(full.dims(), [2, 65, kept.dims()[2]]);
        assert_eq!(full.clone().into_data(), kept.into_data());
        // Keep patches 3 and 60 of image 0, 0 and 1 of image 1: the class token, then exactly
        // those rows of the full sequence (ln_pre is per token, so the rows are unchanged).
        let keep =
            Tensor::<2, Int>::from_data(TensorData::new(vec![3i64, 60, 0, 1], [2, 2]), &device);
        let some = tower.embed_keeping(pixels, Some(keep));
        let width = full.dims()[2];
        assert_eq!(some.dims(), [2, 3, width]);
        let row = |t: &Tensor<3>, b: usize, i: usize| {
            t.clone().narrow(0, b, 1).narrow(1, i, 1).into_data()
        };
        for (b, picks) in [(0, [4, 61]), (1, [1, 2])] {
            assert_eq!(row(&some, b, 0), row(&full, b, 0), "class token");
            for (slot, i) in picks.iter().enumerate() {
                assert_eq!(row(&some, b, slot + 1), row(&full, b, *i));
            }
        }
    }
}
