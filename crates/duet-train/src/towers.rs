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
//!
//! With activation checkpointing (`train.grad_checkpointing`, OpenCLIP `--grad-checkpointing`)
//! a tower's forward keeps only each block's input ([`Replay`]): the blocks run with untracked
//! parameters, so no graph is built, and the backward recomputes one block at a time from its saved
//! input, back-propagating `sum(output ⊙ g)` into the block's parameters and its input, from
//! the head down to the embeddings. The same chain rule, block by block: the gradients are the
//! plain step's, bit for bit (tested), for one more forward of the blocks.

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Int, Tensor};
use duet_loss::{ContrastiveBatch, Loss};
use duet_model::ClipModel;

use crate::TrainError;

/// One tower's forward, as its backward needs it.
pub(crate) struct TowerPass {
    /// The features, `[b, e]`: their graph spans the tower, or with checkpointing its head only.
    pub features: Tensor<2>,
    /// With checkpointing: what the backward recomputes the blocks from.
    replay: Option<Replay>,
}

impl TowerPass {
    /// The features without their graph (for the gather, or a cached micro-batch).
    pub fn detached(&self) -> Tensor<2> {
        self.features.clone().detach()
    }
}

/// What a checkpointed tower's backward recomputes from.
struct Replay {
    /// The tower's input, to recompute the embeddings.
    input: TowerInput,
    /// Each block's input, `[b, n, width]`, without a graph.
    block_inputs: Vec<Tensor<3>>,
    /// The leaf the head was computed from: the last block's output.
    head_input: Tensor<3>,
}

enum TowerInput {
    /// Pixels, and the patches patch dropout keeps (all without).
    Image(Tensor<4>, Option<Box<Tensor<2, Int>>>),
    Text(Tensor<2, Int>),
}

/// Both towers' forward, each tower on a thread of its own; with `checkpoint`, keeping only
/// each block's input. `keep`: the patches each image keeps (patch dropout), all without.
pub(crate) fn encode_apart(
    model: &ClipModel,
    images: Tensor<4>,
    tokens: Tensor<2, Int>,
    keep: Option<Tensor<2, Int>>,
    checkpoint: bool,
) -> (TowerPass, TowerPass) {
    // burn draws parameters lazily, at first use, from a process-wide generator: drawn by two
    // threads at once, they would interleave. Draw any still pending here, in module order.
    crate::lazy::materialize(model);
    let replica = model.clone();
    side_by_side(
        move || {
            encode(
                &replica,
                TowerInput::Image(images, keep.map(Box::new)),
                checkpoint,
            )
        },
        || encode(model, TowerInput::Text(tokens), checkpoint),
    )
}

fn encode(model: &ClipModel, input: TowerInput, checkpoint: bool) -> TowerPass {
    // A tower with nothing to train (locked) needs no graph at all, let alone a replay.
    let trainable = match &input {
        TowerInput::Image(..) => trains(&model.vision),
        TowerInput::Text(_) => trains(&model.text),
    };
    if !(checkpoint && trainable) {
        let features = match input {
            TowerInput::Image(pixels, keep) => model.vision.head(
                model
                    .vision
                    .forward_hidden_keeping(pixels, keep.map(|k| *k)),
            ),
            TowerInput::Text(ids) => model.encode_text(ids),
        };
        return TowerPass {
            features,
            replay: None,
        };
    }
    // On the autodiff device, as the plain forward (its attention is burn's decomposed one,
    // where the inner backend's is fused and rounds differently), with parameters that require
    // no gradient: nothing is tracked, so no graph is kept (a detached output would not free its
    // graph: burn sweeps orphaned nodes only at a backward).
    let (mut x, blocks, causal) = match &input {
        TowerInput::Image(pixels, keep) => {
            let tower = model.vision.clone().no_grad();
            (
                tower.embed_keeping(pixels.clone(), keep.as_deref().cloned()),
                tower.blocks,
                false,
            )
        }
        TowerInput::Text(ids) => {
            let tower = model.text.clone().no_grad();
            let causal = tower.causal();
            (tower.embed(ids.clone()), tower.blocks, causal)
        }
    };
    let mut block_inputs = Vec::with_capacity(blocks.len());
    for block in &blocks {
        block_inputs.push(x.clone());
        x = block.forward(x, causal);
    }
    let head_input = x.require_grad();
    let features = match &input {
        TowerInput::Image(..) => model.vision.head(head_input.clone()),
        TowerInput::Text(ids) => model
            .text
            .head(head_input.clone(), model.text.pool_index(ids.clone())),
    };
    TowerPass {
        features,
        replay: Some(Replay {
            input,
            block_inputs,
            head_input,
        }),
    }
}

/// The gradients of every parameter of both towers given their `passes` and the gradients
/// `grads` of their features (inner-backend tensors, as a backward gives them), one tower per
/// thread. A tower with nothing to train (locked) gives none.
pub(crate) fn towers_backward(
    model: &ClipModel,
    passes: (TowerPass, TowerPass),
    grads: (Tensor<2>, Tensor<2>),
) -> Vec<GradientsParams> {
    let (image, text) = passes;
    let (d_image, d_text) = grads;
    let replica = model.clone();
    let (image_grads, text_grads) = side_by_side(
        move || tower_gradients(&replica, image, d_image),
        || tower_gradients(model, text, d_text),
    );
    image_grads.into_iter().chain(text_grads).collect()
}

/// The gradients a tower's parameters get from its pass whose features' gradient is `grad`;
/// none for a tower with nothing to train (locked, so its features are not tracked).
fn tower_gradients(model: &ClipModel, pass: TowerPass, grad: Tensor<2>) -> Vec<GradientsParams> {
    if !pass.features.is_tracked() {
        return Vec::new();
    }
    let mut head = (pass.features * grad.autodiff()).sum().backward();
    let Some(replay) = pass.replay else {
        return vec![GradientsParams::from_grads(head, model)];
    };
    let mut all = Vec::with_capacity(replay.block_inputs.len() + 2);
    let mut d_x = replay.head_input.grad_remove(&mut head);
    all.push(GradientsParams::from_grads(head, model));
    let (blocks, causal) = match &replay.input {
        TowerInput::Image(..) => (&model.vision.blocks, false),
        TowerInput::Text(_) => (&model.text.blocks, model.text.causal()),
    };
    for (block, input) in blocks.iter().zip(replay.block_inputs).rev() {
        let Some(d_out) = d_x else {
            return all;
        };
        let leaf = input.require_grad();
        let out = block.forward(leaf.clone(), causal);
        let mut step = (out * d_out.autodiff()).sum().backward();
        d_x = leaf.grad_remove(&mut step);
        all.push(GradientsParams::from_grads(step, model));
    }
    if let Some(d_embedded) = d_x {
        let embedded = match replay.input {
            TowerInput::Image(pixels, keep) => model.vision.embed_keeping(pixels, keep.map(|k| *k)),
            TowerInput::Text(ids) => model.text.embed(ids),
        };
        if embedded.is_tracked() {
            let step = (embedded * d_embedded.autodiff()).sum().backward();
            all.push(GradientsParams::from_grads(step, model));
        }
    }
    all
}

/// Whether any parameter of `module` is trained (requires a gradient).
fn trains<M: Module>(module: &M) -> bool {
    struct Any(bool);
    impl ModuleVisitor for Any {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0 |= param.val().is_require_grad();
        }
    }
    let mut any = Any(false);
    module.visit(&mut any);
    any.0
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
