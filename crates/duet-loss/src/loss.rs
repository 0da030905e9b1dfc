//! The choice of objective, as configuration.

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::{
    ContrastiveBatch, INFO_NCE_INIT_LOGIT_SCALE, LossError, SIGLIP_INIT_LOGIT_BIAS,
    SIGLIP_INIT_LOGIT_SCALE, info_nce_loss, siglip_loss,
};

/// Which contrastive objective to train with, and the initial values of the learnable scalars it
/// needs (the model owns those parameters and reads their init from here).
///
/// Serialised with a `kind` tag; omitted init values take the published defaults:
///
/// ```text
/// {"kind": "info_nce"}                              init_logit_scale = ln(1/0.07)
/// {"kind": "sigmoid"}                               init_logit_scale = ln 10, init_logit_bias = -10
/// {"kind": "sigmoid", "init_logit_scale": 2.6593}  OpenCLIP's SigLIP configs
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Loss {
    /// Symmetric softmax cross-entropy over the batch (CLIP); see [`info_nce_loss`].
    InfoNce {
        /// Initial raw `logit_scale` (the scale is `exp` of it).
        #[serde(default = "default_info_nce_scale")]
        init_logit_scale: f64,
    },
    /// Pairwise sigmoid loss with a learnable bias (SigLIP); see [`siglip_loss`].
    Sigmoid {
        /// Initial raw `logit_scale` (the scale is `exp` of it).
        #[serde(default = "default_siglip_scale")]
        init_logit_scale: f64,
        /// Initial `logit_bias`.
        #[serde(default = "default_siglip_bias")]
        init_logit_bias: f64,
    },
}

fn default_info_nce_scale() -> f64 {
    INFO_NCE_INIT_LOGIT_SCALE
}

fn default_siglip_scale() -> f64 {
    SIGLIP_INIT_LOGIT_SCALE
}

fn default_siglip_bias() -> f64 {
    SIGLIP_INIT_LOGIT_BIAS
}

impl Default for Loss {
    /// InfoNCE with the CLIP init, `ln(1 / 0.07)`.
    fn default() -> Self {
        Self::info_nce()
    }
}

impl Loss {
    /// InfoNCE with the CLIP init scale `ln(1 / 0.07)`.
    pub fn info_nce() -> Self {
        Self::InfoNce {
            init_logit_scale: INFO_NCE_INIT_LOGIT_SCALE,
        }
    }

    /// The sigmoid loss with the SigLIP paper's init: scale `ln 10`, bias `-10`.
    pub fn sigmoid() -> Self {
        Self::Sigmoid {
            init_logit_scale: SIGLIP_INIT_LOGIT_SCALE,
            init_logit_bias: SIGLIP_INIT_LOGIT_BIAS,
        }
    }

    /// Initial value of the raw `logit_scale` parameter.
    pub fn init_logit_scale(&self) -> f64 {
        match *self {
            Self::InfoNce { init_logit_scale }
            | Self::Sigmoid {
                init_logit_scale, ..
            } => init_logit_scale,
        }
    }

    /// Initial value of the `logit_bias` parameter, or `None` if this loss takes no bias (then
    /// the model should not have one).
    pub fn init_logit_bias(&self) -> Option<f64> {
        match *self {
            Self::InfoNce { .. } => None,
            Self::Sigmoid {
                init_logit_bias, ..
            } => Some(init_logit_bias),
        }
    }

    /// Computes this loss; returns `[1]`.
    ///
    /// - `batch`: local features `[b, e]`, optionally the gathered global batch `[world * b, e]`.
    /// - `logit_scale`: `[1]`, the raw learnable log-scale (exponentiated inside).
    /// - `logit_bias`: `[1]`; required by [`Loss::Sigmoid`], refused by [`Loss::InfoNce`].
    ///
    /// # Errors
    ///
    /// Shape errors (see [`ContrastiveBatch::validate`]), [`LossError::NotScalar`],
    /// [`LossError::MissingBias`] for `Sigmoid` without a bias and [`LossError::UnexpectedBias`]
    /// for `InfoNce` with one.
    pub fn compute(
        &self,
        batch: ContrastiveBatch,
        logit_scale: Tensor<1>,
        logit_bias: Option<Tensor<1>>,
    ) -> Result<Tensor<1>, LossError> {
        match self {
            Self::InfoNce { .. } => match logit_bias {
                Some(_) => Err(LossError::UnexpectedBias),
                None => info_nce_loss(batch, logit_scale),
            },
            Self::Sigmoid { .. } => {
                let bias = logit_bias.ok_or(LossError::MissingBias)?;
                siglip_loss(batch, logit_scale, bias)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{assert_close, rows, scalar, value};

    fn pairs() -> ContrastiveBatch {
        ContrastiveBatch::new(
            rows([[1.0, 0.0], [0.0, 1.0]]),
            rows([[1.0, 0.0], [0.0, 1.0]]),
        )
    }

    #[test]
    fn init_constants() {
        assert_close(INFO_NCE_INIT_LOGIT_SCALE, (1.0f64 / 0.07).ln(), 1e-15);
        assert_close(SIGLIP_INIT_LOGIT_SCALE.exp(), 10.0, 1e-12);
        assert_eq!(Loss::default(), Loss::info_nce());
        assert_eq!(Loss::info_nce().init_logit_bias(), None);
        assert_eq!(Loss::sigmoid().init_logit_bias(), Some(-10.0));
        assert_close(Loss::sigmoid().init_logit_scale(), 10f64.ln(), 1e-15);
    }

    #[test]
    fn serde_tagged_with_defaults() -> Result<(), serde_json::Error> {
        let json = serde_json::to_string(&Loss::sigmoid())?;
        assert!(json.contains(r#""kind":"sigmoid""#), "{json}");
        assert_eq!(serde_json::from_str::<Loss>(&json)?, Loss::sigmoid());

        assert_eq!(
            serde_json::from_str::<Loss>(r#"{"kind":"info_nce"}"#)?,
            Loss::info_nce()
        );
        assert_eq!(
            serde_json::from_str::<Loss>(r#"{"kind":"sigmoid"}"#)?,
            Loss::sigmoid()
        );
        let open_clip_siglip: Loss =
            serde_json::from_str(r#"{"kind":"sigmoid","init_logit_scale":2.6592600369327779}"#)?;
        assert_eq!(open_clip_siglip.init_logit_bias(), Some(-10.0));
        assert_close(
            open_clip_siglip.init_logit_scale(),
            INFO_NCE_INIT_LOGIT_SCALE,
            1e-15,
        );

        assert!(serde_json::from_str::<Loss>(r#"{"kind":"infonce"}"#).is_err());
        assert!(serde_json::from_str::<Loss>(r#"{"kind":"sigmoid","init_bias":-5}"#).is_err());
        Ok(())
    }

    #[test]
    fn compute_dispatches() -> Result<(), LossError> {
        // Values from the orthogonal-pair tests of info_nce.rs and siglip.rs.
        let clip = Loss::info_nce().compute(pairs(), scalar(0.0), None)?;
        assert_close(value(clip), 0.313_261_687_518_222_9, 1e-6);
        let siglip = Loss::sigmoid().compute(pairs(), scalar(0.0), Some(scalar(0.0)))?;
        assert_close(value(siglip), 1.006_408_868_078_168_2, 1e-6);
        Ok(())
    }

    #[test]
    fn bias_must_match_the_loss() {
        let missing = Loss::sigmoid().compute(pairs(), scalar(0.0), None);
        assert!(
            matches!(missing, Err(LossError::MissingBias)),
            "{missing:?}"
        );
        let unexpected = Loss::info_nce().compute(pairs(), scalar(0.0), Some(scalar(0.0)));
        assert!(
            matches!(unexpected, Err(LossError::UnexpectedBias)),
            "{unexpected:?}"
        );
    }
}
