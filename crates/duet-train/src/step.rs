//! One optimizer step: forward both towers, the contrastive loss, backward, global-norm clipping,
//! AdamW, then `logit_scale` clamped to ln 100 (OpenCLIP clamps after every step).

use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Int, Tensor};
use duet_loss::{ContrastiveBatch, Loss};
use duet_model::ClipModel;

use crate::optim::{ParamInfo, adamw, clip_global_norm, float_params};
use crate::{NonFinite, OptimizerConfig, TrainError};

/// ln(100): the largest `logit_scale`, i.e. a temperature of at least 0.01 (OpenCLIP
/// `main.py`: `unwrap_model(model).logit_scale.clamp_(0, math.log(100))`).
pub const MAX_LOGIT_SCALE: f64 = 4.605_170_185_988_091;

/// What one step measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepReport {
    /// The loss before the update.
    pub loss: f64,
    /// The global gradient norm before clipping (when clipping is on).
    pub grad_norm: Option<f64>,
    /// `logit_scale` after the update and the clamp.
    pub logit_scale: f64,
    /// True when a non-finite loss was skipped (`train.on_nonfinite = "skip"`).
    pub skipped: bool,
}

/// Runs optimizer steps on a [`ClipModel`] on an autodiff device.
pub struct Stepper {
    loss: Loss,
    optimizer: ModuleOptimizer,
    params: Vec<ParamInfo>,
    clip: Option<f64>,
    on_nonfinite: NonFinite,
}

impl std::fmt::Debug for Stepper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stepper")
            .field("loss", &self.loss)
            .field("params", &self.params.len())
            .field("clip", &self.clip)
            .field("on_nonfinite", &self.on_nonfinite)
            .finish_non_exhaustive()
    }
}

impl Stepper {
    /// A stepper for `model` with AdamW as `optimizer` says.
    pub fn new(
        loss: Loss,
        optimizer: &OptimizerConfig,
        on_nonfinite: NonFinite,
        model: &ClipModel,
    ) -> Self {
        Self {
            loss,
            optimizer: adamw(optimizer, model),
            params: float_params(model),
            clip: optimizer.grad_clip_norm,
            on_nonfinite,
        }
    }

    /// The optimizer, for checkpoints.
    pub fn optimizer(&self) -> &ModuleOptimizer {
        &self.optimizer
    }

    /// Replaces the optimizer (state restored from a checkpoint).
    pub fn set_optimizer(&mut self, optimizer: ModuleOptimizer) {
        self.optimizer = optimizer;
    }

    /// One step at learning rate `lr` on `images` `[b, 3, s, s]` and `tokens` `[b, t]`;
    /// `step` only names the step in errors.
    pub fn step(
        &mut self,
        model: ClipModel,
        images: Tensor<4>,
        tokens: Tensor<2, Int>,
        lr: f64,
        step: u64,
    ) -> Result<(ClipModel, StepReport), TrainError> {
        let batch = ContrastiveBatch::new(model.encode_image(images), model.encode_text(tokens));
        let bias = model.logit_bias.as_ref().map(|b| b.val());
        let loss = self
            .loss
            .compute(batch, model.logit_scale.val(), bias)
            .map_err(|source| TrainError::Loss { step, source })?;
        let value = f64::from(loss.clone().into_scalar::<f32>());
        if !value.is_finite() {
            return match self.on_nonfinite {
                NonFinite::Stop => Err(TrainError::NonFiniteLoss { step, value }),
                NonFinite::Skip => {
                    let logit_scale = scalar(&model.logit_scale.val());
                    Ok((
                        model,
                        StepReport {
                            loss: value,
                            grad_norm: None,
                            logit_scale,
                            skipped: true,
                        },
                    ))
                }
            };
        }
        let mut grads = GradientsParams::from_grads(loss.backward(), &model);
        let grad_norm = self
            .clip
            .map(|max| clip_global_norm(&mut grads, &self.params, max));
        let mut model = self.optimizer.step(lr, model, grads);
        model.logit_scale = model
            .logit_scale
            .map(|t| t.clamp_max(MAX_LOGIT_SCALE).detach().require_grad());
        let logit_scale = scalar(&model.logit_scale.val());
        Ok((
            model,
            StepReport {
                loss: value,
                grad_norm,
                logit_scale,
                skipped: false,
            },
        ))
    }
}

fn scalar(t: &Tensor<1>) -> f64 {
    f64::from(t.clone().into_scalar::<f32>())
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, Distribution};
    use duet_model::preset;

    use super::*;

    fn setup(init_scale: f64) -> (ClipModel, Stepper, Tensor<4>, Tensor<2, Int>) {
        let device = Device::flex().autodiff();
        let mut config = preset("tiny").expect("preset");
        config.logit_scale_init = init_scale;
        let model = config.init(&device).expect("model");
        let optimizer = OptimizerConfig {
            lr: 1e-3,
            grad_clip_norm: Some(1.0),
            ..OptimizerConfig::default()
        };
        let stepper = Stepper::new(Loss::info_nce(), &optimizer, NonFinite::Stop, &model);
        // 4 random images and 4 distinct captions: the loss can only fall by telling them apart.
        let images = Tensor::<4>::random([4, 3, 64, 64], Distribution::Normal(0.0, 1.0), &device);
        let mut ids = vec![0_i64; 4 * 77];
        for (i, row) in ids.chunks_mut(77).enumerate() {
            row[..4].copy_from_slice(&[49406, 320 + i as i64 * 7, 1125, 49407]);
        }
        let tokens =
            Tensor::<2, Int>::from_data(burn::tensor::TensorData::new(ids, [4, 77]), &device);
        (model, stepper, images, tokens)
    }

    #[test]
    fn loss_falls_on_a_fixed_batch() {
        let (mut model, mut stepper, images, tokens) = setup((1.0_f64 / 0.07).ln());
        let mut losses = Vec::new();
        for step in 0..20 {
            let (next, report) = stepper
                .step(model, images.clone(), tokens.clone(), 1e-3, step)
                .expect("steps");
            model = next;
            losses.push(report.loss);
            assert!(report.grad_norm.is_some());
        }
        // Chance level for 4 pairs is ln 4 = 1.386; 20 steps on one batch must get well below.
        assert!(losses[19] < 0.5 * losses[0], "{losses:?}");
    }

    #[test]
    fn logit_scale_is_clamped_to_ln_100() {
        // Start above the cap: after one step it sits at ln 100 = 4.6052.
        let (model, mut stepper, images, tokens) = setup(5.0);
        let (_, report) = stepper.step(model, images, tokens, 1e-3, 0).expect("steps");
        assert!(
            (report.logit_scale - MAX_LOGIT_SCALE).abs() < 1e-5,
            "{report:?}"
        );
    }

    #[test]
    fn nonfinite_loss_stops_or_skips() {
        let (model, mut stepper, images, tokens) = setup(2.0);
        let nan = images.clone().mul_scalar(f32::NAN);
        let err = stepper
            .step(model.clone(), nan.clone(), tokens.clone(), 1e-3, 41)
            .expect_err("NaN loss");
        assert!(err.to_string().contains("step 41"), "{err}");
        stepper.on_nonfinite = NonFinite::Skip;
        let (_, report) = stepper.step(model, nan, tokens, 1e-3, 42).expect("skips");
        assert!(report.skipped && report.loss.is_nan());
    }
}
