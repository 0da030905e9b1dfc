//! Symmetric InfoNCE, the CLIP objective (Radford et al. 2021; OpenCLIP `ClipLoss`).

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor};

use crate::ops::{l2_normalize, scalar_param};
use crate::{ContrastiveBatch, LossError};

/// Initial raw `logit_scale` for InfoNCE: `ln(1 / 0.07)`, a softmax temperature of 0.07
/// (CLIP; OpenCLIP `CLIP.__init__` default `init_logit_scale = np.log(1 / 0.07)`).
pub const INFO_NCE_INIT_LOGIT_SCALE: f64 = 2.659_260_036_932_778;

/// Symmetric InfoNCE of a (possibly multi-device) batch; returns the loss, `[1]`.
///
/// With `s = exp(logit_scale)` and rows L2-normalised,
///
/// ```text
/// logits_per_image = s · I_local · T_allᵀ      [b, world * b]
/// logits_per_text  = s · T_local · I_allᵀ      [b, world * b]
/// labels           = arange(b) + rank · b
/// loss = (CE(logits_per_image, labels) + CE(logits_per_text, labels)) / 2
/// ```
///
/// where CE is the mean softmax cross-entropy over the `b` local rows. Without
/// [`Gathered`](crate::Gathered), `I_all = I_local`, `T_all = T_local` and `rank = 0`: plain CLIP.
/// With it, this is OpenCLIP's `ClipLoss(local_loss=True)`: each device scores its own rows
/// against the global batch, so the mean of the per-device losses equals the loss of the global
/// batch on one device.
///
/// - `batch.image`, `batch.text`: `[b, e]`; gathered `[world * b, e]`. Need not be unit-norm.
/// - `logit_scale`: `[1]`, the *raw* learnable log-scale (OpenCLIP's `model.logit_scale`, not
///   `logit_scale.exp()`); it is exponentiated here. Clamping it (OpenCLIP: to `ln 100`, after
///   each optimizer step) is the training loop's job.
///
/// # Errors
///
/// The shape errors of [`ContrastiveBatch::validate`], and [`LossError::NotScalar`] if
/// `logit_scale` is not `[1]`.
pub fn info_nce_loss(
    batch: ContrastiveBatch,
    logit_scale: Tensor<1>,
) -> Result<Tensor<1>, LossError> {
    let dims = batch.validate()?;
    let scale = scalar_param("logit_scale", logit_scale)?.exp(); // [1, 1]
    let ContrastiveBatch {
        image,
        text,
        gathered,
    } = batch;
    let image = l2_normalize(image);
    let text = l2_normalize(text);
    let (all_image, all_text) = match gathered {
        Some(g) => (l2_normalize(g.image), l2_normalize(g.text)),
        None => (image.clone(), text.clone()),
    };

    let device = image.device();
    let logits_per_image = image.matmul(all_text.transpose()) * scale.clone(); // [b, n]
    let logits_per_text = text.matmul(all_image.transpose()) * scale; // [b, n]

    // open_clip_torch 3.3.0 loss.py, ClipLoss.get_ground_truth: with local_loss the positives of
    // rank r sit at columns r * b .. (r + 1) * b of the global logits.
    let start = dims.label_offset() as i64;
    let labels =
        Tensor::<1, Int>::arange(start..start + dims.local as i64, &device).unsqueeze_dim::<2>(1); // [b, 1]

    let loss =
        cross_entropy(logits_per_image, labels.clone()) + cross_entropy(logits_per_text, labels);
    Ok(loss.mul_scalar(0.5))
}

/// Mean softmax cross-entropy of `logits` `[b, n]` against class indices `labels` `[b, 1]`;
/// returns `[1]`.
fn cross_entropy(logits: Tensor<2>, labels: Tensor<2, Int>) -> Tensor<1> {
    log_softmax(logits, 1).gather(1, labels).mean().neg()
}

#[cfg(test)]
mod tests {
    use burn::tensor::{DType, Device, Tensor, TensorData};

    use super::*;
    use crate::Gathered;
    use crate::test_util::{IMAGE, TEXT, assert_close, device, rows, scalar, value};

    fn loss(image: Tensor<2>, text: Tensor<2>, logit_scale: f32) -> f64 {
        let batch = ContrastiveBatch::new(image, text);
        value(info_nce_loss(batch, scalar(logit_scale)).expect("valid batch"))
    }

    #[test]
    fn orthogonal_pairs_at_unit_scale() {
        // I = T = [e1, e2], logit_scale 0 -> s = 1: logits = [[1, 0], [0, 1]] both ways.
        // Each row: -ln(e^1 / (e^1 + e^0)) = ln(1 + e^-1) = 0.313262; the mean of equal rows and
        // of the two equal directions is the same.
        let eye = || rows([[1.0, 0.0], [0.0, 1.0]]);
        assert_close(loss(eye(), eye(), 0.0), 0.313_261_687_518_222_9, 1e-6);
    }

    #[test]
    fn perfect_pairs_at_large_scale_cost_nothing() {
        // Same pairs, logit_scale ln 100 -> s = 100: each row ln(1 + e^-100) ~ 4e-44.
        let eye = || rows([[1.0, 0.0], [0.0, 1.0]]);
        assert_close(loss(eye(), eye(), 100f32.ln()), 0.0, 1e-6);
    }

    #[test]
    fn identical_embeddings_give_ln_b() {
        // All 4 rows equal: every logit in a row is the same, so each row's softmax is uniform
        // and CE = ln 4 = 1.386294 at any scale.
        let same = || rows([[1.0, 2.0, 3.0]; 4]);
        assert_close(loss(same(), same(), 2.0), 4f64.ln(), 1e-5);
    }

    #[test]
    fn swapped_pairs() {
        // Image rows [e1, e2], text rows [e2, e1] (text not normalised: [0, 2] and [7, 0]);
        // after normalisation logits = [[0, 1], [1, 0]] both ways and each positive is the 0:
        // -ln(e^0 / (e^0 + e^1)) = ln(1 + e) = 1.313262.
        let image = rows([[3.0, 0.0], [0.0, 0.5]]);
        let text = rows([[0.0, 2.0], [7.0, 0.0]]);
        assert_close(loss(image, text, 0.0), 1.313_261_687_518_222_8, 1e-6);
    }

    #[test]
    fn directions_differ() {
        // Image rows [e1, e1], text rows [e1, e2], s = 1.
        // logits_per_image = I·Tᵀ = [[1, 0], [1, 0]], labels [0, 1]:
        //   row 0: ln(1 + e^-1) = 0.313262, row 1: ln(1 + e) = 1.313262, mean 0.813262.
        // logits_per_text = T·Iᵀ = [[1, 1], [0, 0]]: both rows uniform, ln 2 = 0.693147.
        // loss = (0.813262 + 0.693147) / 2 = 0.753204.
        let image = rows([[1.0, 0.0], [1.0, 0.0]]);
        let text = rows([[1.0, 0.0], [0.0, 1.0]]);
        assert_close(loss(image, text, 0.0), 0.753_204_434_039_084, 1e-6);
    }

    #[test]
    fn scale_of_the_features_does_not_matter() {
        let base = loss(rows(IMAGE), rows(TEXT), 1.5);
        let scaled = loss(
            rows(IMAGE).mul_scalar(7.0),
            rows(TEXT).mul_scalar(0.01),
            1.5,
        );
        assert_close(scaled, base, 1e-5);
    }

    #[test]
    fn matches_open_clip() {
        // open_clip_torch 3.3.0, float64:
        //   i, t = F.normalize(IMAGE, dim=-1), F.normalize(TEXT, dim=-1)
        //   ClipLoss()(i, t, torch.tensor(1.5).exp())  ->  0.0411981701676364
        assert_close(
            loss(rows(IMAGE), rows(TEXT), 1.5),
            0.041_198_170_167_636_4,
            1e-5,
        );
    }

    #[test]
    fn rank_offsets_the_labels() -> Result<(), LossError> {
        // b = 1, world = 2, rank = 1: local pair (e1, e1), gathered rows [e2, e1] for both
        // towers, s = 1. Both directions have logits [0, 1] with the positive at column 1:
        // ln(1 + e^-1) = 0.313262. (Without the offset the positive would be column 0 and the
        // loss ln(1 + e) = 1.313262.)
        let batch =
            ContrastiveBatch::new(rows([[1.0, 0.0]]), rows([[1.0, 0.0]])).with_gathered(Gathered {
                image: rows([[0.0, 1.0], [1.0, 0.0]]),
                text: rows([[0.0, 1.0], [1.0, 0.0]]),
                rank: 1,
            });
        assert_close(
            value(info_nce_loss(batch, scalar(0.0))?),
            0.313_261_687_518_222_9,
            1e-6,
        );
        Ok(())
    }

    #[test]
    fn world_of_one_is_the_single_device_loss() -> Result<(), LossError> {
        let single = ContrastiveBatch::new(rows(IMAGE), rows(TEXT));
        let gathered = single.clone().with_gathered(Gathered {
            image: rows(IMAGE),
            text: rows(TEXT),
            rank: 0,
        });
        let a = value(info_nce_loss(single, scalar(1.5))?);
        let b = value(info_nce_loss(gathered, scalar(1.5))?);
        assert_close(a, b, 1e-6);
        Ok(())
    }

    #[test]
    fn mean_over_ranks_is_the_global_loss() -> Result<(), LossError> {
        // With local_loss, rank r owns rows r·b .. (r+1)·b of the global [4, 4] logits in each
        // direction (same rows, same labels), and CE is a mean over rows. The mean over 2 ranks
        // of the mean over their 2 rows is the mean over all 4 rows: exact, not approximate.
        let global = value(info_nce_loss(
            ContrastiveBatch::new(rows(IMAGE), rows(TEXT)),
            scalar(1.5),
        )?);
        let mut per_rank = Vec::new();
        for rank in 0..2 {
            let local = |x: [[f32; 3]; 4]| rows(x).narrow(0, rank * 2, 2);
            let batch = ContrastiveBatch::new(local(IMAGE), local(TEXT)).with_gathered(Gathered {
                image: rows(IMAGE),
                text: rows(TEXT),
                rank,
            });
            per_rank.push(value(info_nce_loss(batch, scalar(1.5))?));
        }
        assert_close((per_rank[0] + per_rank[1]) / 2.0, global, 1e-6);
        // And the ranks genuinely differ, so the identity is not trivially true.
        assert!((per_rank[0] - per_rank[1]).abs() > 1e-3, "{per_rank:?}");
        Ok(())
    }

    #[test]
    fn gradient_of_logit_scale() -> Result<(), LossError> {
        // Orthogonal pairs, raw scale t: every row is ln(1 + e^-s) with s = e^t, so
        // dL/dt = dL/ds · ds/dt = -σ(-s) · s; at t = 0: -σ(-1) = -1 / (1 + e) = -0.268941.
        let device = Device::flex().autodiff();
        let eye = || Tensor::<2>::from_data([[1.0, 0.0], [0.0, 1.0]], &device);
        let t = Tensor::<1>::from_data([0.0], &device).require_grad();
        let loss = info_nce_loss(ContrastiveBatch::new(eye(), eye()), t.clone())?;
        let grads = loss.backward();
        let grad = t.grad(&grads).expect("logit_scale requires grad");
        assert_close(value(grad), -0.268_941_421_369_995_1, 1e-6);
        Ok(())
    }

    #[test]
    fn gradient_of_features_matches_finite_differences() -> Result<(), LossError> {
        // Central differences in f64 on the same function, h = 1e-6: error O(h²) + O(ε/h).
        let f64_rows = |x: [[f32; 3]; 4], device: &Device| {
            let data = TensorData::from(x).convert::<f64>();
            Tensor::<2>::from_data(data, (device, DType::F64))
        };
        let f64_scalar = |x: f64, device: &Device| {
            Tensor::<1>::from_data(TensorData::from([x]), (device, DType::F64))
        };
        let eval = |image: Tensor<2>| -> Result<f64, LossError> {
            let plain = device();
            let batch = ContrastiveBatch::new(image, f64_rows(TEXT, &plain));
            Ok(info_nce_loss(batch, f64_scalar(1.5, &plain))?.into_scalar::<f64>())
        };

        let ad = Device::flex().autodiff();
        let image = f64_rows(IMAGE, &ad).require_grad();
        let batch = ContrastiveBatch::new(image.clone(), f64_rows(TEXT, &ad));
        let grads = info_nce_loss(batch, f64_scalar(1.5, &ad))?.backward();
        let analytic = image
            .grad(&grads)
            .expect("image requires grad")
            .into_data()
            .try_to_vec::<f64>()
            .expect("f64 gradient");

        let h = 1e-6;
        let base: Vec<f64> = IMAGE.iter().flatten().map(|&v| f64::from(v)).collect();
        for (k, &g) in analytic.iter().enumerate() {
            let shifted = |delta: f64| {
                let mut x = base.clone();
                x[k] += delta;
                Tensor::<2>::from_data(TensorData::new(x, [4, 3]), (&device(), DType::F64))
            };
            let numeric = (eval(shifted(h))? - eval(shifted(-h))?) / (2.0 * h);
            assert_close(g, numeric, 1e-7);
        }
        Ok(())
    }
}
