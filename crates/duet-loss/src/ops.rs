//! Tensor steps shared by both losses.

use burn::tensor::Tensor;

use crate::LossError;

/// Floor on the row norm, as in `torch.nn.functional.normalize` (`eps = 1e-12`), so an all-zero
/// row gives a zero vector instead of NaN in the forward pass.
const NORM_EPS: f64 = 1e-12;

/// Divides every row of `x` `[n, e]` by its L2 norm; returns `[n, e]`.
///
/// Idempotent on unit rows in value and in gradient: the Jacobian of `x / |x|` at `|x| = 1` is
/// the projection `I - x xᵀ`, and a projection applied twice is the same projection.
pub(crate) fn l2_normalize(x: Tensor<2>) -> Tensor<2> {
    let norm = x.clone().square().sum_dim(1).sqrt().clamp_min(NORM_EPS); // [n, 1]
    x / norm
}

/// Checks that a learnable scalar (`logit_scale`, `logit_bias`) is `[1]` and returns it as
/// `[1, 1]`, ready to broadcast over `[b, n]` logits.
pub(crate) fn scalar_param(name: &'static str, x: Tensor<1>) -> Result<Tensor<2>, LossError> {
    let [len] = x.dims();
    if len != 1 {
        return Err(LossError::NotScalar {
            name,
            shape: vec![len],
        });
    }
    Ok(x.unsqueeze_dim(0))
}
