//! The two towers run apart: each tower's forward and backward on a thread of its own, joined
//! only through its features and their gradient.
//!
//! burn keeps an autodiff graph per connected set of tensors and runs each graph's backward as
//! one sequential pass, and flex runs most element-wise ops on one core. The towers share no
//! parameter, so until the loss joins their features they are two separate graphs. The loss is
//! therefore taken on detached copies of the features (new leaves), its backward gives the
//! features' gradients `g` (and `logit_scale`'s), and each tower then back-propagates
//! `sum(features ⊙ g)` on its own thread. By the chain rule every tower parameter gets exactly
//! the gradient of the joint backward: `∂ sum(f ⊙ g) / ∂f = g`.

use burn::optim::GradientsParams;
use burn::tensor::{Int, Tensor};
use duet_loss::{ContrastiveBatch, Loss};
use duet_model::ClipModel;

use crate::TrainError;

/// Both towers' features, `[b, e]` each, each tower on a thread of its own.
pub(crate) fn encode_apart(
    model: &ClipModel,
    images: Tensor<4>,
    tokens: Tensor<2, Int>,
) -> (Tensor<2>, Tensor<2>) {
    // burn draws parameters lazily, at first use, from a process-wide generator: drawn by two
    // threads at once, they would interleave. Draw any still pending here, in module order.
    crate::lazy::materialize(model);
    let replica = model.clone();
    side_by_side(
        move || replica.encode_image(images),
        || model.encode_text(tokens),
    )
}

/// The gradients of every parameter of both towers given their live `features` and the
/// gradients `grads` of those features (inner-backend tensors, as a backward gives them), one
/// tower per thread. A tower with nothing to train (locked) gives none.
pub(crate) fn towers_backward(
    model: &ClipModel,
    features: (Tensor<2>, Tensor<2>),
    grads: (Tensor<2>, Tensor<2>),
) -> Vec<GradientsParams> {
    let (image, text) = features;
    let (d_image, d_text) = grads;
    let replica = model.clone();
    let (image_grads, text_grads) = side_by_side(
        move || tower_gradients(&replica, image, d_image),
        || tower_gradients(model, text, d_text),
    );
    [image_grads, text_grads].into_iter().flatten().collect()
}

/// The gradients a tower's parameters get from its `features` whose gradient is `grad`; `None`
/// for a tower with nothing to train (locked, so its features are not tracked).
fn tower_gradients(
    model: &ClipModel,
    features: Tensor<2>,
    grad: Tensor<2>,
) -> Option<GradientsParams> {
    if !features.is_tracked() {
        return None;
    }
    let surrogate = (features * grad.autodiff()).sum();
    Some(GradientsParams::from_grads(surrogate.backward(), model))
}

/// `(a(), b())`, `a` on a thread of its own; a panic in either is re-raised here.
pub(crate) fn side_by_side<A: Send, B>(
    a: impl FnOnce() -> A + Send,
    b: impl FnOnce() -> B,
) -> (A, B) {
    std::thread::scope(|scope| {
        let handle = scope.spawn(a);
        let b = b();
        let a = handle
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (a, b)
    })
}

/// `loss` of `batch`, its errors naming `step`.
pub(crate) fn loss_of(
    loss: Loss,
    batch: ContrastiveBatch,
    scale: Tensor<1>,
    bias: Option<Tensor<1>>,
    step: u64,
) -> Result<Tensor<1>, TrainError> {
    loss.compute(batch, scale, bias)
        .map_err(|source| TrainError::Loss { step, source })
}
