//! One optimizer step: forward both towers, the contrastive loss, backward, global-norm clipping,
//! AdamW, then `logit_scale` clamped to ln 100 (OpenCLIP clamps after every step).

use burn::optim::{GradientsAccumulator, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Int, Tensor};
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
    /// Data-parallel devices; empty or one: the model's own device.
    devices: Vec<Device>,
}

impl std::fmt::Debug for Stepper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stepper")
            .field("loss", &self.loss)
            .field("params", &self.params.len())
            .field("clip", &self.clip)
            .field("on_nonfinite", &self.on_nonfinite)
            .field("devices", &self.devices.len())
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
            devices: Vec::new(),
        }
    }

    /// Runs each step data-parallel over `devices` (see [`crate::parallel`]): the batch is split
    /// into one slice per device, every slice's loss sees the negatives of the whole batch, and
    /// the gradients are summed on `devices[0]`, where the model must live. One device (or none)
    /// is the plain single-device step.
    #[must_use]
    pub fn with_devices(mut self, devices: &[Device]) -> Self {
        self.devices = devices.to_vec();
        self
    }

    /// The optimizer, for checkpoints.
    pub fn optimizer(&self) -> &ModuleOptimizer {
        &self.optimizer
    }

    /// Replaces the optimizer (state restored from a checkpoint).
    pub fn set_optimizer(&mut self, optimizer: ModuleOptimizer) {
        self.optimizer = optimizer;
    }

    /// One step at learning rate `lr` on `images` `[b, 3, s, s]` and `tokens` `[b, t]`, split
    /// into `accum` micro-batches of `b / accum` (see [`Self::gradients`]); `step` only names
    /// the step in errors.
    pub fn step(
        &mut self,
        model: ClipModel,
        images: Tensor<4>,
        tokens: Tensor<2, Int>,
        accum: usize,
        lr: f64,
        step: u64,
    ) -> Result<(ClipModel, StepReport), TrainError> {
        let (value, grads) = self.gradients(&model, images, tokens, accum, step)?;
        let Some(mut grads) = grads else {
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
        };
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

    /// The loss on the whole batch and its gradients (`None` when the loss is not finite).
    ///
    /// With `accum > 1` the batch is split into `accum` equal micro-batches, and the gradients
    /// are those of the loss over the whole batch, with every negative, while only one
    /// micro-batch's activations are held at a time (OpenCLIP's feature cache, open_clip_train
    /// 3.3 `train.py`): first every micro-batch's features are computed and detached; then for
    /// each micro-batch `j` its features are recomputed with gradients, put in place of the
    /// cached ones, the full-batch loss taken and back-propagated, and the gradients summed.
    /// Each tower parameter's gradient then is exactly the full-batch one. `logit_scale` (and
    /// `logit_bias`) take part in every pass, so OpenCLIP sums their gradient `accum` times;
    /// duet keeps them live in the first pass only, which gives the full-batch gradient.
    pub fn gradients(
        &self,
        model: &ClipModel,
        images: Tensor<4>,
        tokens: Tensor<2, Int>,
        accum: usize,
        step: u64,
    ) -> Result<(f64, Option<GradientsParams>), TrainError> {
        if self.devices.len() > 1 {
            crate::parallel::check_split(accum, self.devices.len())?;
            return crate::parallel::gradients(
                self.loss,
                model,
                images,
                tokens,
                &self.devices,
                step,
            );
        }
        let bias = model.logit_bias.as_ref().map(|b| b.val());
        let scale = model.logit_scale.val();
        if accum <= 1 {
            let batch =
                ContrastiveBatch::new(model.encode_image(images), model.encode_text(tokens));
            let loss = loss_of(self.loss, batch, scale, bias, step)?;
            let value = f64::from(loss.clone().into_scalar::<f32>());
            if !value.is_finite() {
                return Ok((value, None));
            }
            return Ok((
                value,
                Some(GradientsParams::from_grads(loss.backward(), model)),
            ));
        }
        let [b, ..] = images.dims();
        if b % accum != 0 {
            return Err(TrainError::invalid(
                "train.accum_freq",
                format!("a batch of {b} does not split into {accum} equal micro-batches"),
            ));
        }
        let image_chunks = images.chunk(accum, 0);
        let token_chunks = tokens.chunk(accum, 0);
        let mut cached_images: Vec<Tensor<2>> = Vec::with_capacity(accum);
        let mut cached_texts: Vec<Tensor<2>> = Vec::with_capacity(accum);
        for (im, tok) in image_chunks.iter().zip(&token_chunks) {
            cached_images.push(model.encode_image(im.clone()).detach());
            cached_texts.push(model.encode_text(tok.clone()).detach());
        }
        let mut accumulator = GradientsAccumulator::<ClipModel>::new();
        let mut value = f64::NAN;
        for (j, (im, tok)) in image_chunks.into_iter().zip(token_chunks).enumerate() {
            let live = (model.encode_image(im), model.encode_text(tok));
            let loss = block_loss(
                self.loss,
                cached_images.clone(),
                cached_texts.clone(),
                j,
                live,
                (scale.clone(), bias.clone()),
                step,
            )?;
            if j == 0 {
                value = f64::from(loss.clone().into_scalar::<f32>());
                if !value.is_finite() {
                    return Ok((value, None));
                }
            }
            accumulator.accumulate(model, GradientsParams::from_grads(loss.backward(), model));
        }
        Ok((value, Some(accumulator.grads())))
    }
}

/// The contrastive loss of a whole batch held as blocks of detached features (`images`,
/// `texts`), with block `j`'s replaced by its `live` image and text features, so only that
/// block's encoders get gradients. `logits` (`logit_scale`, `logit_bias`) stay live for block 0
/// only: summed over the blocks, the gradients are then exactly the whole batch's. Gradient
/// accumulation (blocks = micro-batches) and data parallelism (blocks = ranks) both use it.
pub(crate) fn block_loss(
    loss: Loss,
    mut images: Vec<Tensor<2>>,
    mut texts: Vec<Tensor<2>>,
    j: usize,
    live: (Tensor<2>, Tensor<2>),
    logits: (Tensor<1>, Option<Tensor<1>>),
    step: u64,
) -> Result<Tensor<1>, TrainError> {
    (images[j], texts[j]) = live;
    let batch = ContrastiveBatch::new(Tensor::cat(images, 0), Tensor::cat(texts, 0));
    let (scale, bias) = logits;
    let (scale, bias) = if j == 0 {
        (scale, bias)
    } else {
        (scale.detach(), bias.map(Tensor::detach))
    };
    loss_of(loss, batch, scale, bias, step)
}

fn loss_of(
    loss: Loss,
    batch: ContrastiveBatch,
    scale: Tensor<1>,
    bias: Option<Tensor<1>>,
    step: u64,
) -> Result<Tensor<1>, TrainError> {
    loss.compute(batch, scale, bias)
        .map_err(|source| TrainError::Loss { step, source })
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
        let stepper = stepper(&model);
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

    fn stepper(model: &ClipModel) -> Stepper {
        let optimizer = OptimizerConfig {
            lr: 1e-3,
            grad_clip_norm: Some(1.0),
            ..OptimizerConfig::default()
        };
        Stepper::new(Loss::info_nce(), &optimizer, NonFinite::Stop, model)
    }

    #[test]
    fn loss_falls_on_a_fixed_batch() {
        let (mut model, mut stepper, images, tokens) = setup((1.0_f64 / 0.07).ln());
        let mut losses = Vec::new();
        for step in 0..20 {
            let (next, report) = stepper
                .step(model, images.clone(), tokens.clone(), 1, 1e-3, step)
                .expect("steps");
            model = next;
            losses.push(report.loss);
            assert!(report.grad_norm.is_some());
        }
        // Chance level for 4 pairs is ln 4 = 1.386; 20 steps on one batch must get well below.
        assert!(losses[19] < 0.5 * losses[0], "{losses:?}");
    }

    #[test]
    fn accumulated_gradients_equal_the_full_batch_gradients() {
        // 4 pairs in 2 micro-batches of 2: every parameter's summed gradient, logit_scale's
        // included, must be the full batch's (OpenCLIP's method would give 2x on logit_scale).
        let (model, stepper, images, tokens) = setup(2.0);
        let (full_loss, full) = stepper
            .gradients(&model, images.clone(), tokens.clone(), 1, 0)
            .expect("loss");
        let (accum_loss, accum) = stepper
            .gradients(&model, images, tokens, 2, 0)
            .expect("loss");
        let (full, accum) = (full.expect("finite"), accum.expect("finite"));
        assert!(
            (full_loss - accum_loss).abs() < 1e-6,
            "{full_loss} vs {accum_loss}"
        );
        assert_same_gradients(&model, &full, &accum);
        // An odd split is refused.
        let err = stepper
            .gradients(
                &model,
                Tensor::zeros([3, 3, 64, 64], &Device::flex().autodiff()),
                Tensor::zeros([3, 77], &Device::flex().autodiff()),
                2,
                0,
            )
            .expect_err("3 does not split in 2");
        assert!(err.to_string().contains("train.accum_freq"), "{err}");
    }

    #[test]
    fn data_parallel_gradients_equal_the_global_batch_gradients() {
        // 4 pairs over 2 and over 4 ranks (in turn on the one flex device, the only CPU device
        // burn has): the summed per-rank gradients must be the one-device global batch's.
        let (model, single, images, tokens) = setup(2.0);
        let device = Device::flex().autodiff();
        let (full_loss, full) = single
            .gradients(&model, images.clone(), tokens.clone(), 1, 0)
            .expect("loss");
        let full = full.expect("finite");
        for world in [2, 4] {
            let parallel = stepper(&model).with_devices(&vec![device.clone(); world]);
            let (loss, grads) = parallel
                .gradients(&model, images.clone(), tokens.clone(), 1, 0)
                .expect("loss");
            assert!(
                (full_loss - loss).abs() < 1e-6,
                "{world}: {full_loss} vs {loss}"
            );
            assert_same_gradients(&model, &full, &grads.expect("finite"));
        }
        // 4 pairs do not split over 3 devices; accumulation on top is refused.
        let three = stepper(&model).with_devices(&[device.clone(), device.clone(), device.clone()]);
        let err = three
            .gradients(&model, images.clone(), tokens.clone(), 1, 0)
            .expect_err("4 over 3");
        assert!(err.to_string().contains("train.batch_size"), "{err}");
        let err = single
            .with_devices(&[device.clone(), device])
            .gradients(&model, images, tokens, 2, 0)
            .expect_err("accumulation over devices");
        assert!(err.to_string().contains("train.accum_freq"), "{err}");
    }

    /// Every float parameter's gradient in `b` equals the one in `a`, relative to `a`'s largest.
    fn assert_same_gradients(model: &ClipModel, a: &GradientsParams, b: &GradientsParams) {
        let mut compared = 0;
        for p in float_params(model) {
            let (x, y) = match p.rank {
                1 => (grad::<1>(a, p.id), grad::<1>(b, p.id)),
                2 => (grad::<2>(a, p.id), grad::<2>(b, p.id)),
                4 => (grad::<4>(a, p.id), grad::<4>(b, p.id)),
                _ => continue,
            };
            let (x, y) = (x.expect(&p.path), y.expect(&p.path));
            let scale = x.iter().fold(1e-6_f32, |m, v| m.max(v.abs()));
            let worst = x
                .iter()
                .zip(&y)
                .fold(0.0_f32, |m, (u, v)| m.max((u - v).abs()));
            // The floor covers gradients that are zero in exact arithmetic (attention key
            // biases: softmax ignores a shift shared by a row) and only hold rounding noise.
            assert!(
                worst <= 1e-4 * scale + 1e-7,
                "{}: {worst} vs max {scale}",
                p.path
            );
            compared += 1;
        }
        assert_eq!(compared, float_params(model).len());
    }

    fn grad<const D: usize>(
        grads: &GradientsParams,
        id: burn::module::ParamId,
    ) -> Option<Vec<f32>> {
        grads
            .get::<D>(id)
            .map(|g| g.into_data().try_to_vec::<f32>().expect("f32"))
    }

    #[test]
    fn logit_scale_is_clamped_to_ln_100() {
        // Start above the cap: after one step it sits at ln 100 = 4.6052.
        let (model, mut stepper, images, tokens) = setup(5.0);
        let (_, report) = stepper
            .step(model, images, tokens, 1, 1e-3, 0)
            .expect("steps");
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
            .step(model.clone(), nan.clone(), tokens.clone(), 1, 1e-3, 41)
            .expect_err("NaN loss");
        assert!(err.to_string().contains("step 41"), "{err}");
        stepper.on_nonfinite = NonFinite::Skip;
        let (_, report) = stepper
            .step(model, nan, tokens, 1, 1e-3, 42)
            .expect("skips");
        assert!(report.skipped && report.loss.is_nan());
    }
}
