//! The sigmoid loss of SigLIP (Zhai et al. 2023, arXiv:2303.15343; OpenCLIP `SigLipLoss`).

use burn::tensor::activation::log_sigmoid;
use burn::tensor::{Bool, Tensor};

use crate::ops::{l2_normalize, scalar_param};
use crate::{ContrastiveBatch, LossError};

/// Initial raw `logit_scale` for SigLIP: `ln 10`, so `s = 10` (paper: `t' = log 10`).
///
/// OpenCLIP 3.3.0's SigLIP model configs set only `init_logit_bias` and keep its default scale
/// `ln(1 / 0.07)`; use [`INFO_NCE_INIT_LOGIT_SCALE`](crate::INFO_NCE_INIT_LOGIT_SCALE) in
/// [`Loss::Sigmoid`](crate::Loss::Sigmoid) to match those instead of the paper.
pub const SIGLIP_INIT_LOGIT_SCALE: f64 = std::f64::consts::LN_10;

/// Initial `logit_bias` for SigLIP: `-10` (paper; OpenCLIP SigLIP configs
/// `"init_logit_bias": -10`). It offsets the prior of the `b² - b` negatives against the `b`
/// positives so the first steps are not spent pushing every logit down.
pub const SIGLIP_INIT_LOGIT_BIAS: f64 = -10.0;

/// SigLIP's pairwise sigmoid loss of a (possibly multi-device) batch; returns the loss, `[1]`.
///
/// With `s = exp(logit_scale)`, bias `β` and rows L2-normalised,
///
/// ```text
/// logits = s · I_local · T_allᵀ + β                  [b, world * b]
/// labels = +1 at (i, rank · b + i), −1 elsewhere      [b, world * b]
/// loss   = −Σ log σ(labels ∘ logits) / b
/// ```
///
/// Like OpenCLIP (`SigLipLoss._loss`), the sum is divided by the *local* batch size `b`, not by
/// the number of pairs. Without [`Gathered`](crate::Gathered) this is the single-device loss
/// (`T_all = T_local`, `rank = 0`). With it, it equals OpenCLIP's multi-device loss, which adds
/// to the local loss one negatives-only term per other rank's text chunk, passed round by
/// neighbour exchange; here all chunks are scored at once from the gathered text. Gathered image
/// features are not used, and the local text enters only as its chunk of the gathered text. Summed over ranks, the per-device losses give `world` times the
/// single-device loss of the global batch (which divides by `world · b`).
///
/// - `batch.image`, `batch.text`: `[b, e]`; `batch.gathered` text `[world * b, e]`. Need not be
///   unit-norm.
/// - `logit_scale`: `[1]`, the *raw* learnable log-scale, exponentiated here.
/// - `logit_bias`: `[1]`, the learnable bias, added as is.
///
/// # Errors
///
/// The shape errors of [`ContrastiveBatch::validate`], and [`LossError::NotScalar`] if
/// `logit_scale` or `logit_bias` is not `[1]`.
pub fn siglip_loss(
    batch: ContrastiveBatch,
    logit_scale: Tensor<1>,
    logit_bias: Tensor<1>,
) -> Result<Tensor<1>, LossError> {
    let dims = batch.validate()?;
    let scale = scalar_param("logit_scale", logit_scale)?.exp(); // [1, 1]
    let bias = scalar_param("logit_bias", logit_bias)?; // [1, 1]
    let ContrastiveBatch {
        image,
        text,
        gathered,
    } = batch;
    let image = l2_normalize(image);
    let all_text = match gathered {
        Some(g) => l2_normalize(g.text),
        None => l2_normalize(text),
    };

    let device = image.device();
    let logits = image.matmul(all_text.transpose()) * scale + bias; // [b, n]
    let shape = logits.dims();

    // open_clip_torch 3.3.0 loss.py, SigLipLoss.get_ground_truth: 2·eye − 1 on the local block,
    // −1 on the other ranks' chunks (negative_only=True). `diag_mask` is false exactly on the
    // diagonal shifted right by the offset, i.e. at the positives (i, rank · b + i).
    let off_positive = Tensor::<2, Bool>::diag_mask(shape, dims.label_offset() as i64, &device);
    let labels =
        Tensor::<2>::full(shape, 1.0, (&device, logits.dtype())).mask_fill(off_positive, -1.0);

    let loss = log_sigmoid(labels * logits).sum().neg();
    Ok(loss.div_scalar(dims.local as f64))
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, Tensor};

    use super::*;
    use crate::Gathered;
    use crate::test_util::{IMAGE, TEXT, assert_close, rows, scalar, value};

    fn loss(batch: ContrastiveBatch, logit_scale: f32, logit_bias: f32) -> f64 {
        value(siglip_loss(batch, scalar(logit_scale), scalar(logit_bias)).expect("valid batch"))
    }

    /// Rows `rank * 2 .. rank * 2 + 2` of the 4-pair batch, with the whole batch as gathered.
    fn rank_of_two(rank: usize) -> ContrastiveBatch {
        let local = |x: [[f32; 3]; 4]| rows(x).narrow(0, rank * 2, 2);
        ContrastiveBatch::new(local(IMAGE), local(TEXT)).with_gathered(Gathered {
            image: rows(IMAGE),
            text: rows(TEXT),
            rank,
        })
    }

    #[test]
    fn orthogonal_pairs_unit_scale_no_bias() {
        // I = T = [e1, e2], s = 1, β = 0: logits = [[1, 0], [0, 1]], labels = [[1, -1], [-1, 1]].
        // Diagonal: -ln σ(1) = ln(1 + e^-1) = 0.313262 (twice);
        // off-diagonal: -ln σ(-0) = ln 2 = 0.693147 (twice).
        // Sum 2.012818, divided by b = 2: 1.006409.
        let eye = || rows([[1.0, 0.0], [0.0, 1.0]]);
        let batch = ContrastiveBatch::new(eye(), eye());
        assert_close(loss(batch, 0.0, 0.0), 1.006_408_868_078_168_2, 1e-6);
    }

    #[test]
    fn orthogonal_pairs_at_init() {
        // Same pairs at the init, s = 10, β = -10: logits = [[0, -10], [-10, 0]].
        // Diagonal: -ln σ(0) = ln 2 (twice); off-diagonal: -ln σ(10) = ln(1 + e^-10) = 4.54e-5
        // (twice). Divided by 2: ln 2 + 4.54e-5 = 0.693193.
        let eye = || rows([[1.0, 0.0], [0.0, 1.0]]);
        let batch = ContrastiveBatch::new(eye(), eye());
        let l = loss(
            batch,
            SIGLIP_INIT_LOGIT_SCALE as f32,
            SIGLIP_INIT_LOGIT_BIAS as f32,
        );
        assert_close(l, 0.693_192_579_459_162_1, 1e-6);
    }

    #[test]
    fn scale_of_the_features_does_not_matter() {
        let base = loss(ContrastiveBatch::new(rows(IMAGE), rows(TEXT)), 1.5, -2.0);
        let scaled =
            ContrastiveBatch::new(rows(IMAGE).mul_scalar(7.0), rows(TEXT).mul_scalar(0.01));
        assert_close(loss(scaled, 1.5, -2.0), base, 1e-5);
    }

    #[test]
    fn matches_open_clip() {
        // open_clip_torch 3.3.0, float64:
        //   i, t = F.normalize(IMAGE, dim=-1), F.normalize(TEXT, dim=-1)
        //   SigLipLoss()(i, t, torch.tensor(1.5).exp(), torch.tensor(-2.0))  ->  0.42484252535929123
        let batch = ContrastiveBatch::new(rows(IMAGE), rows(TEXT));
        assert_close(loss(batch, 1.5, -2.0), 0.424_842_525_359_291_2, 1e-5);
    }

    #[test]
    fn gathered_ranks_match_open_clip_chunks() {
        // OpenCLIP's per-rank loss for world 2 (local loss plus the other rank's text chunk with
        // negative_only=True), emulated with SigLipLoss._loss in float64 as above:
        //   rank 0: 0.5561635585120912, rank 1: 0.29352149220649126.
        assert_close(
            loss(rank_of_two(0), 1.5, -2.0),
            0.556_163_558_512_091_2,
            1e-5,
        );
        assert_close(
            loss(rank_of_two(1), 1.5, -2.0),
            0.293_521_492_206_491_3,
            1e-5,
        );
    }

    #[test]
    fn sum_over_ranks_is_world_times_global() {
        // Rank r sums -ln σ over its rows r·b .. (r+1)·b of the global [4, 4] matrix and divides
        // by b; the single-device loss sums all rows and divides by world · b. So
        // Σ_r loss_r = world · loss_global (equivalently: the mean over ranks is the global loss).
        let global = loss(ContrastiveBatch::new(rows(IMAGE), rows(TEXT)), 1.5, -2.0);
        let sum = loss(rank_of_two(0), 1.5, -2.0) + loss(rank_of_two(1), 1.5, -2.0);
        assert_close(sum, 2.0 * global, 1e-5);
    }

    #[test]
    fn rank_offsets_the_positive() {
        // b = 1, world = 2, rank = 1: local image e1, gathered text [e2, e1], s = 1, β = 0.
        // logits [0, 1], labels [-1, +1]: -ln σ(0) - ln σ(1) = ln 2 + ln(1 + e^-1) = 1.006409.
        // (A positive at column 0 would give ln 2 + ln(1 + e) = 2.006409.)
        let batch =
            ContrastiveBatch::new(rows([[1.0, 0.0]]), rows([[1.0, 0.0]])).with_gathered(Gathered {
                image: rows([[0.0, 1.0], [1.0, 0.0]]),
                text: rows([[0.0, 1.0], [1.0, 0.0]]),
                rank: 1,
            });
        assert_close(loss(batch, 0.0, 0.0), 1.006_408_868_078_168_2, 1e-6);
    }

    #[test]
    fn gradients_of_scale_and_bias() -> Result<(), LossError> {
        // Orthogonal pairs, raw scale t (s = e^t), bias β, b = 2:
        //   L = [2·(-ln σ(s + β)) + 2·(-ln σ(-β))] / 2 = -ln σ(s + β) - ln σ(-β)
        //   dL/dt = -σ(-(s + β)) · s        at t = 0, β = 0: -σ(-1)       = -0.268941
        //   dL/dβ = -σ(-(s + β)) + σ(β)      at t = 0, β = 0: 0.5 - σ(-1) =  0.231059
        let device = Device::flex().autodiff();
        let eye = || Tensor::<2>::from_data([[1.0, 0.0], [0.0, 1.0]], &device);
        let t = Tensor::<1>::from_data([0.0], &device).require_grad();
        let bias = Tensor::<1>::from_data([0.0], &device).require_grad();
        let loss = siglip_loss(ContrastiveBatch::new(eye(), eye()), t.clone(), bias.clone())?;
        let grads = loss.backward();
        let dt = value(t.grad(&grads).expect("logit_scale requires grad"));
        let db = value(bias.grad(&grads).expect("logit_bias requires grad"));
        assert_close(dt, -0.268_941_421_369_995_1, 1e-6);
        assert_close(db, 0.231_058_578_630_004_9, 1e-6);
        Ok(())
    }
}
