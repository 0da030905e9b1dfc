//! The CLIP dual encoder.

use burn::module::{Module, Param};
use burn::tensor::{Device, Int, Tensor};

use crate::text::TextTower;
use crate::vision::VisionTower;
use crate::{ClipConfig, ModelError};

/// Image tower, text tower, learnable temperature and (SigLIP) bias.
#[derive(Module, Debug)]
pub struct ClipModel {
    /// The ViT.
    pub vision: VisionTower,
    /// The causal text transformer.
    pub text: TextTower,
    /// Log temperature, `[1]`; the logits are scaled by `exp(logit_scale)`.
    pub logit_scale: Param<Tensor<1>>,
    /// Logit bias, `[1]`, for the sigmoid (SigLIP) loss.
    pub logit_bias: Option<Param<Tensor<1>>>,
}

impl ClipConfig {
    /// A randomly initialised model; validates the config first.
    pub fn init(&self, device: &Device) -> Result<ClipModel, ModelError> {
        self.validate()?;
        let scalar =
            |value: f64| Param::from_tensor(Tensor::<1>::from_floats([value as f32], device));
        Ok(ClipModel {
            vision: self.vision.init(self.embed_dim, device),
            text: self.text.init(self.embed_dim, device),
            logit_scale: scalar(self.logit_scale_init),
            logit_bias: self.logit_bias_init.map(scalar),
        })
    }
}

/// Divides each row by its L2 norm (clamped at 1e-12 as torch's `F.normalize`).
///
/// `x`: `[b, e]` -> `[b, e]`.
pub fn l2_normalize(x: Tensor<2>) -> Tensor<2> {
    let norm = x.clone().powi_scalar(2).sum_dim(1).sqrt().clamp_min(1e-12);
    x / norm
}

impl ClipModel {
    /// The model computing in `precision` (see [`crate::Precision`]); its parameters do not
    /// change. Not saved with the weights: set it after every load.
    #[must_use]
    pub fn with_precision(mut self, precision: crate::Precision) -> Self {
        self.vision.set_precision(precision);
        self.text.set_precision(precision);
        self
    }

    /// The precision set by [`Self::with_precision`] (f32 unless set).
    pub fn precision(&self) -> crate::Precision {
        self.vision.precision()
    }

    /// Projected image features, not normalised. `pixels`: `[b, 3, h, w]` -> `[b, e]`.
    pub fn encode_image(&self, pixels: Tensor<4>) -> Tensor<2> {
        self.vision.forward(pixels)
    }

    /// Projected text features, not normalised. `ids`: `[b, t]` -> `[b, e]`.
    pub fn encode_text(&self, ids: Tensor<2, Int>) -> Tensor<2> {
        self.text.forward(ids)
    }

    /// `exp(logit_scale) * image · textᵀ` on L2-normalised embeddings (plus `logit_bias` if any).
    ///
    /// `image`: `[b, e]`, `text`: `[c, e]` -> logits per image `[b, c]`.
    pub fn logits(&self, image: Tensor<2>, text: Tensor<2>) -> Tensor<2> {
        let scale = self.logit_scale.val().exp().unsqueeze_dim::<2>(0);
        let logits = l2_normalize(image).matmul(l2_normalize(text).transpose()) * scale;
        match &self.logit_bias {
            Some(bias) => logits + bias.val().unsqueeze_dim::<2>(0),
            None => logits,
        }
    }
}
