//! The ViT image tower.

use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Initializer, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, FloatDType, Int, Tensor};

use crate::block::{Block, BlockConfig};
use crate::config::VisionConfig;
use crate::precision::{Precision, to};

/// ViT: conv patch embedding, class token, learned positions, pre-LN, pre-norm blocks,
/// post-LN on the class token, projection without bias.
#[derive(Module, Debug)]
pub struct VisionTower {
    /// `[width, 3, patch, patch]`, stride `patch`, no bias.
    pub patch_embed: Conv2d,
    /// `[width]`.
    pub class_embedding: Param<Tensor<1>>,
    /// `[grid * grid + 1, width]`.
    pub position_embedding: Param<Tensor<2>>,
    /// LayerNorm before the blocks (HF's `pre_layrnorm`).
    pub ln_pre: LayerNorm,
    /// The residual blocks.
    pub blocks: Vec<Block>,
    /// LayerNorm on the pooled class token.
    pub ln_post: LayerNorm,
    /// `[width, embed_dim]`, no bias.
    pub proj: Linear,
    #[module(skip)]
    precision: Precision,
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
                .with_bias(false)
                .init(device),
            class_embedding: normal.init([self.width], device),
            position_embedding: normal.init([self.num_positions(), self.width], device),
            ln_pre: ln(),
            blocks: (0..self.layers).map(|_| block.init(device)).collect(),
            ln_post: ln(),
            proj: LinearConfig::new(self.width, embed_dim)
                .with_bias(false)
                .with_initializer(normal.clone())
                .init(device),
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
        let patches = patches.reshape([b, width, gh * gw]).swap_dims(1, 2);
        let class = self
            .class_embedding
            .val()
            .reshape([1, 1, width])
            .expand([b, 1, width]);
        let x = Tensor::cat(vec![class, patches], 1)
            + self.position_embedding.val().unsqueeze_dim::<3>(0);
        let x = match keep {
            Some(keep) => {
                let [_, k] = keep.dims();
                let class = x.clone().narrow(1, 0, 1);
                let patches = x.narrow(1, 1, gh * gw);
                let index = keep.unsqueeze_dim::<3>(2).expand([b, k, width]);
                Tensor::cat(vec![class, patches.gather(1, index)], 1)
            }
            None => x,
        };
        self.ln_pre.forward(x)
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

    /// Projected features of the sequence after the last block: `ln_post` on the class token,
    /// then the projection.
    ///
    /// `hidden`: `[b, n, width]` -> `[b, embed_dim]`.
    pub fn head(&self, hidden: Tensor<3>) -> Tensor<2> {
        let [b, _, width] = hidden.dims();
        let pooled = hidden.narrow(1, 0, 1).reshape([b, width]);
        self.proj.forward(self.ln_post.forward(pooled))
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
