//! One optimizer step: forward both towers, the contrastive loss, backward, global-norm clipping,
//! AdamW, then `logit_scale` clamped to ln 100 (OpenCLIP clamps after every step).

use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Int, Tensor};
use duet_dist::Collective;
use duet_loss::Loss;
use duet_model::{ClipModel, Precision};

use crate::dropout::PatchDropout;
use crate::optim::{ParamInfo, adamw, clip_to, float_params, global_norm, multiply};
use crate::parallel::Ranks;
use crate::scaler::LossScale;
use crate::{NonFinite, OptimizerConfig, TrainError};

/// ln(100): the largest `logit_scale`, i.e. a temperature of at least 0.01 (OpenCLIP
/// `main.py`: `unwrap_model(model).logit_scale.clamp_(0, math.log(100))`).
pub const MAX_LOGIT_SCALE: f64 = 4.605_170_185_988_091;

/// What one step measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepReport {
    /// The loss before the update.
    pub loss: f64,
    /// The global gradient norm before clipping (when clipping is on, or in f16: the
    /// unscaled gradients' norm, infinite on an overflow).
    pub grad_norm: Option<f64>,
    /// `logit_scale` after the update and the clamp.
    pub logit_scale: f64,
    /// True when the update was skipped: a non-finite loss (`train.on_nonfinite = "skip"`),
    /// or in f16 gradients that overflowed.
    pub skipped: bool,
    /// f16: the loss scale this step used (the next one's is in [`Stepper::loss_scale`]).
    pub loss_scale: Option<f64>,
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
    /// Each block's rows against the whole batch instead of one global logits matrix.
    local_loss: bool,
    /// Recompute each block in the backward instead of keeping its activations.
    grad_checkpointing: bool,
    /// f16's dynamic loss scale.
    scaler: Option<LossScale>,
    /// Patch dropout of the training images.
    patch_dropout: Option<PatchDropout>,
}

impl std::fmt::Debug for Stepper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stepper")
            .field("loss", &self.loss)
            .field("params", &self.params.len())
            .field("clip", &self.clip)
            .field("on_nonfinite", &self.on_nonfinite)
            .field("devices", &self.devices.len())
            .field("local_loss", &self.local_loss)
            .field("grad_checkpointing", &self.grad_checkpointing)
            .field("scaler", &self.scaler)
            .field("patch_dropout", &self.patch_dropout)
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
            local_loss: false,
            grad_checkpointing: false,
            scaler: None,
            patch_dropout: None,
        }
    }

    /// With `dropout`, every training image keeps only some of its patch tokens (see
    /// [`PatchDropout`]); `None` or a probability of 0 keeps them all.
    #[must_use]
    pub fn with_patch_dropout(mut self, dropout: Option<PatchDropout>) -> Self {
        self.patch_dropout = dropout.filter(|d| d.prob > 0.0);
        self
    }

    /// With `scaler`, every step's loss is multiplied by its scale before the backward and the
    /// gradients divided by it after; a step whose gradients are not finite is skipped and the
    /// scale backs off (see [`LossScale`]). For f16 ([`Precision::F16`]); set the model's
    /// precision with [`ClipModel::with_precision`].
    #[must_use]
    pub fn with_loss_scale(mut self, scaler: Option<LossScale>) -> Self {
        self.scaler = scaler;
        self
    }

    /// The loss scale's state (for checkpoints).
    pub fn loss_scale(&self) -> Option<LossScale> {
        self.scaler
    }

    /// The scaler a run in `precision` needs: f16's, starting at `scale`; none otherwise.
    pub fn scaler_for(precision: Precision, scale: f64, growth_interval: u64) -> Option<LossScale> {
        (precision == Precision::F16).then(|| LossScale::new(scale, growth_interval))
    }

    /// Runs each step data-parallel over `devices` (the `parallel` module): the batch is split
    /// into one slice per device, every slice's loss sees the negatives of the whole batch, and
    /// the gradients are summed on `devices[0]`, where the model must live. One device (or none)
    /// is the plain single-device step.
    #[must_use]
    pub fn with_devices(mut self, devices: &[Device]) -> Self {
        self.devices = devices.to_vec();
        self
    }

    /// With `local`, each block (device, micro-batch, process) takes the loss of its own rows
    /// against every column of the global batch, so logits memory is `b × B`, not `B × B`
    /// (OpenCLIP's `--local-loss --gather-with-grad`); the gradients are the same.
    #[must_use]
    pub fn with_local_loss(mut self, local: bool) -> Self {
        self.local_loss = local;
        self
    }

    /// With `on`, each tower's forward keeps only its blocks' inputs and the backward recomputes
    /// one block at a time (OpenCLIP's `--grad-checkpointing`): activation memory of one block
    /// plus a `[b, n, width]` sequence per block, for one more forward; the same gradients.
    #[must_use]
    pub fn with_grad_checkpointing(mut self, on: bool) -> Self {
        self.grad_checkpointing = on;
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

    /// One step at learning rate `lr` on this process's `images` `[n, 3, s, s]` and `tokens`
    /// `[n, t]`, split into `accum` micro-batches per device, the global batch spanning every
    /// process of `comm` (see [`Self::gradients`]); `step` only names the step in errors.
    #[allow(clippy::too_many_arguments)]
    pub fn step(
        &mut self,
        model: ClipModel,
        images: Tensor<4>,
        tokens: Tensor<2, Int>,
        accum: usize,
        lr: f64,
        step: u64,
        comm: &dyn Collective,
    ) -> Result<(ClipModel, StepReport), TrainError> {
        let (value, grads) = self.gradients(&model, images, tokens, accum, step, comm)?;
        let loss_scale = self.scaler.map(|s| s.scale);
        // The update left out: the model as it was, and what the step measured.
        let skip = |model: ClipModel, grad_norm: Option<f64>| {
            let logit_scale = scalar(&model.logit_scale.val());
            let report = StepReport {
                loss: value,
                grad_norm,
                logit_scale,
                skipped: true,
                loss_scale,
            };
            (model, report)
        };
        let Some(mut grads) = grads else {
            return match self.on_nonfinite {
                NonFinite::Stop => Err(TrainError::NonFiniteLoss { step, value }),
                NonFinite::Skip => Ok(skip(model, None)),
            };
        };
        if let Some(scale) = loss_scale {
            multiply(&mut grads, &self.params, 1.0 / scale);
        }
        let grad_norm = (self.clip.is_some() || self.scaler.is_some())
            .then(|| global_norm(&grads, &self.params));
        if let Some(scaler) = &mut self.scaler {
            // Every rank holds the same summed gradients, so every rank agrees on skipping.
            let finite = grad_norm.is_some_and(f64::is_finite);
            scaler.update(finite);
            if !finite {
                return Ok(skip(model, grad_norm));
            }
        }
        if let (Some(max), Some(norm)) = (self.clip, grad_norm) {
            clip_to(&mut grads, &self.params, max, norm);
        }
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
                loss_scale,
            },
        ))
    }

    /// The loss on the global batch and its gradients, summed over every device and process
    /// (`None` when the loss is not finite).
    ///
    /// With `accum > 1` each device's slice is split into `accum` equal micro-batches, and the
    /// gradients are those of the loss over the whole batch, with every negative, while only
    /// one micro-batch's activations are held at a time (OpenCLIP's feature cache,
    /// open_clip_train 3.3 `train.py`): first every micro-batch's features are computed and
    /// detached; the loss of the whole batch gives each micro-batch's features their gradient;
    /// then each micro-batch is recomputed with gradients and back-propagated. Each tower
    /// parameter's gradient then is exactly the full-batch one, and `logit_scale` (and
    /// `logit_bias`) get the full-batch gradient once (OpenCLIP sums theirs `accum` times).
    ///
    /// Data parallelism over devices and processes runs the same way, the blocks spread out
    /// (the `parallel` module); one block on one device runs its two towers on a thread each.
    pub fn gradients(
        &self,
        model: &ClipModel,
        images: Tensor<4>,
        tokens: Tensor<2, Int>,
        accum: usize,
        step: u64,
        comm: &dyn Collective,
    ) -> Result<(f64, Option<GradientsParams>), TrainError> {
        let here = [images.device()];
        let devices = if self.devices.is_empty() {
            &here[..]
        } else {
            &self.devices[..]
        };
        let ranks = Ranks {
            devices,
            comm,
            local_loss: self.local_loss,
            grad_checkpointing: self.grad_checkpointing,
            loss_scale: self.scaler.map_or(1.0, |s| s.scale),
            patch_dropout: self.patch_dropout,
        };
        crate::parallel::gradients(self.loss, model, images, tokens, ranks, accum, step)
    }
}

fn scalar(t: &Tensor<1>) -> f64 {
    f64::from(t.clone().into_scalar::<f32>())
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, Distribution};
    use duet_model::preset;

    use duet_dist::Solo;
    use duet_loss::ContrastiveBatch;

    use super::*;
    use crate::dropout::PatchDropout;
    use crate::towers::loss_of;

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
                .step(model, images.clone(), tokens.clone(), 1, 1e-3, step, &Solo)
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
            .gradients(&model, images.clone(), tokens.clone(), 1, 0, &Solo)
            .expect("loss");
        let (accum_loss, accum) = stepper
            .gradients(&model, images, tokens, 2, 0, &Solo)
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
                &Solo,
            )
            .expect_err("3 does not split in 2");
        assert!(err.to_string().contains("train.accum_freq"), "{err}");
    }

    #[test]
    fn towers_apart_give_the_gradients_of_one_joint_backward() {
        // The step runs each tower's forward and backward on a thread of its own, joined only
        // through the features' gradients; one backward through the whole graph must give the
        // same gradient for every parameter, bit for bit, for both losses (SigLIP adds
        // `logit_bias`), and a locked tower must get none.
        for loss in [Loss::info_nce(), Loss::sigmoid()] {
            let (model, _, images, tokens) = setup(2.0);
            let model = if loss.init_logit_bias().is_some() {
                let mut config = preset("tiny").expect("preset");
                config.logit_bias_init = loss.init_logit_bias();
                config.init(&Device::flex().autodiff()).expect("model")
            } else {
                model
            };
            let stepper = Stepper::new(loss, &OptimizerConfig::default(), NonFinite::Stop, &model);
            let (value, apart) = stepper
                .gradients(&model, images.clone(), tokens.clone(), 1, 0, &Solo)
                .expect("loss");
            let apart = apart.expect("finite");
            let (joint_value, joint) =
                joint_gradients(loss, &model, images.clone(), tokens.clone());
            assert_eq!(value.to_bits(), joint_value.to_bits(), "{loss:?}");
            for p in float_params(&model) {
                let (a, b) = match p.rank {
                    1 => (grad::<1>(&apart, p.id), grad::<1>(&joint, p.id)),
                    2 => (grad::<2>(&apart, p.id), grad::<2>(&joint, p.id)),
                    4 => (grad::<4>(&apart, p.id), grad::<4>(&joint, p.id)),
                    _ => continue,
                };
                assert!(a.is_some(), "{}: no gradient", p.path);
                assert_eq!(a, b, "{loss:?} {}", p.path);
            }
            // The image tower locked: its parameters get nothing, the text side still trains.
            let locked = crate::lock::apply(
                model.clone(),
                &crate::LockConfig {
                    image: true,
                    ..crate::LockConfig::default()
                },
            );
            let (_, grads) = stepper
                .gradients(&locked, images, tokens, 1, 0, &Solo)
                .expect("loss");
            let grads = grads.expect("finite");
            let trained: Vec<String> = float_params(&locked)
                .into_iter()
                .filter(|p| match p.rank {
                    1 => grad::<1>(&grads, p.id).is_some(),
                    2 => grad::<2>(&grads, p.id).is_some(),
                    4 => grad::<4>(&grads, p.id).is_some(),
                    _ => false,
                })
                .map(|p| p.path)
                .collect();
            assert!(
                trained.iter().all(|p| !p.starts_with("vision")),
                "{trained:?}"
            );
            assert!(trained.iter().any(|p| p.starts_with("text")), "{trained:?}");
            assert!(trained.iter().any(|p| p == "logit_scale"), "{trained:?}");
        }
    }

    #[test]
    fn checkpointed_gradients_equal_the_plain_steps_bit_for_bit() {
        // Activation checkpointing recomputes each block from its saved input in the backward:
        // the same ops on the same values, so every gradient must be the plain step's to the
        // bit, for both losses, with accumulation and on two devices, and with a partly locked
        // image tower (LiT with its last 2 groups trainable).
        let device = Device::flex().autodiff();
        for loss in [Loss::info_nce(), Loss::sigmoid()] {
            let (_, _, images, tokens) = setup(2.0);
            let mut config = preset("tiny").expect("preset");
            config.logit_bias_init = loss.init_logit_bias();
            let model = config.init(&device).expect("model");
            let partly_locked = crate::lock::apply(
                model.clone(),
                &crate::LockConfig {
                    image: true,
                    image_unlocked_groups: 2,
                    ..crate::LockConfig::default()
                },
            );
            for (model, accum, devices) in [
                (&model, 1, 1),
                (&model, 2, 1),
                (&model, 1, 2),
                (&partly_locked, 1, 1),
            ] {
                let stepper = |checkpoint: bool| {
                    Stepper::new(loss, &OptimizerConfig::default(), NonFinite::Stop, model)
                        .with_devices(&vec![device.clone(); devices])
                        .with_grad_checkpointing(checkpoint)
                };
                let run = |checkpoint: bool| {
                    stepper(checkpoint)
                        .gradients(model, images.clone(), tokens.clone(), accum, 0, &Solo)
                        .expect("loss")
                };
                let (plain_value, plain) = run(false);
                let (value, checkpointed) = run(true);
                let (plain, checkpointed) = (plain.expect("finite"), checkpointed.expect("finite"));
                assert_eq!(value.to_bits(), plain_value.to_bits());
                let mut compared = 0;
                for p in float_params(model) {
                    let (a, b) = match p.rank {
                        1 => (grad::<1>(&plain, p.id), grad::<1>(&checkpointed, p.id)),
                        2 => (grad::<2>(&plain, p.id), grad::<2>(&checkpointed, p.id)),
                        4 => (grad::<4>(&plain, p.id), grad::<4>(&checkpointed, p.id)),
                        _ => continue,
                    };
                    assert_eq!(a, b, "{loss:?} accum {accum} devices {devices}: {}", p.path);
                    compared += usize::from(a.is_some());
                }
                assert!(compared > 10, "{compared} gradients compared");
            }
        }
    }

    /// The plain way: both towers, the loss and one backward through the joined graph.
    fn joint_gradients(
        loss: Loss,
        model: &ClipModel,
        images: Tensor<4>,
        tokens: Tensor<2, Int>,
    ) -> (f64, GradientsParams) {
        let batch = ContrastiveBatch::new(model.encode_image(images), model.encode_text(tokens));
        let bias = model.logit_bias.as_ref().map(|b| b.val());
        let value = loss_of(loss, batch, model.logit_scale.val(), bias, 0).expect("loss");
        let scalar = f64::from(value.clone().into_scalar::<f32>());
        (scalar, GradientsParams::from_grads(value.backward(), model))
    }

    #[test]
    fn data_parallel_gradients_equal_the_global_batch_gradients() {
        // 4 pairs over 2 and over 4 ranks (in turn on the one flex device, the only CPU device
        // burn has): the summed per-rank gradients must be the one-device global batch's.
        let (model, single, images, tokens) = setup(2.0);
        let device = Device::flex().autodiff();
        let (full_loss, full) = single
            .gradients(&model, images.clone(), tokens.clone(), 1, 0, &Solo)
            .expect("loss");
        let full = full.expect("finite");
        for world in [2, 4] {
            let parallel = stepper(&model).with_devices(&vec![device.clone(); world]);
            let (loss, grads) = parallel
                .gradients(&model, images.clone(), tokens.clone(), 1, 0, &Solo)
                .expect("loss");
            assert!(
                (full_loss - loss).abs() < 1e-6,
                "{world}: {full_loss} vs {loss}"
            );
            assert_same_gradients(&model, &full, &grads.expect("finite"));
        }
        // 2 ranks × 2 micro-batches of 1 pair: blocks (rank 0: pairs 0, 1; rank 1: pairs 2, 3),
        // each back-propagated against the other three; the sum is again the global batch's.
        let two = stepper(&model).with_devices(&[device.clone(), device.clone()]);
        let (loss, grads) = two
            .gradients(&model, images.clone(), tokens.clone(), 2, 0, &Solo)
            .expect("loss");
        assert!((full_loss - loss).abs() < 1e-6, "{full_loss} vs {loss}");
        assert_same_gradients(&model, &full, &grads.expect("finite"));
        // 4 pairs do not split over 3 devices, nor into 2 devices × 4 micro-batches.
        let three = stepper(&model).with_devices(&[device.clone(), device.clone(), device.clone()]);
        let err = three
            .gradients(&model, images.clone(), tokens.clone(), 1, 0, &Solo)
            .expect_err("4 over 3");
        assert!(err.to_string().contains("train.batch_size"), "{err}");
        let err = two
            .gradients(&model, images, tokens, 4, 0, &Solo)
            .expect_err("4 over 2 × 4");
        assert!(err.to_string().contains("train.accum_freq"), "{err}");
        drop((single, device));
    }

    #[test]
    fn patch_dropout_gradients_are_the_kept_patches_and_split_like_the_batch() {
        // The tiny model at 64 px: 8 × 8 = 64 patches; p = 0.5 keeps 32 per image, drawn for
        // step 7 by row. By hand: the image tower on exactly those patches, one joint backward.
        let (model, _, images, tokens) = setup(2.0);
        let device = Device::flex().autodiff();
        let dropout = PatchDropout { prob: 0.5, seed: 4 };
        let keep = dropout.indices(7, 0, 4, 64, &device);
        assert_eq!(keep.dims(), [4, 32]);
        let image = model.vision.head(
            model
                .vision
                .forward_hidden_keeping(images.clone(), Some(keep)),
        );
        let batch = ContrastiveBatch::new(image, model.encode_text(tokens.clone()));
        let value =
            loss_of(Loss::info_nce(), batch, model.logit_scale.val(), None, 7).expect("loss");
        let by_hand_loss = f64::from(value.clone().into_scalar::<f32>());
        let by_hand = GradientsParams::from_grads(value.backward(), &model);
        let (plain_loss, _) = stepper(&model)
            .gradients(&model, images.clone(), tokens.clone(), 1, 7, &Solo)
            .expect("loss");
        assert!(
            (plain_loss - by_hand_loss).abs() > 1e-6,
            "dropout changed nothing"
        );
        // One block; 2 devices × 2 micro-batches (rows drawn by their place in the global
        // batch, so the same patches); and with checkpointing, which recomputes the blocks.
        let one = stepper(&model).with_patch_dropout(Some(dropout));
        let four = stepper(&model)
            .with_patch_dropout(Some(dropout))
            .with_devices(&[device.clone(), device.clone()]);
        let replayed = stepper(&model)
            .with_patch_dropout(Some(dropout))
            .with_grad_checkpointing(true);
        for (what, stepper, accum) in [
            ("one", one, 1),
            ("2 × 2", four, 2),
            ("checkpointed", replayed, 1),
        ] {
            let (loss, grads) = stepper
                .gradients(&model, images.clone(), tokens.clone(), accum, 7, &Solo)
                .expect("loss");
            assert!(
                (loss - by_hand_loss).abs() < 1e-6,
                "{what}: {loss} vs {by_hand_loss}"
            );
            assert_same_gradients(&model, &by_hand, &grads.expect("finite"));
        }
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
            .step(model, images, tokens, 1, 1e-3, 0, &Solo)
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
            .step(
                model.clone(),
                nan.clone(),
                tokens.clone(),
                1,
                1e-3,
                41,
                &Solo,
            )
            .expect_err("NaN loss");
        assert!(err.to_string().contains("step 41"), "{err}");
        stepper.on_nonfinite = NonFinite::Skip;
        let (_, report) = stepper
            .step(model, nan, tokens, 1, 1e-3, 42, &Solo)
            .expect("skips");
        assert!(report.skipped && report.loss.is_nan());
    }
}
