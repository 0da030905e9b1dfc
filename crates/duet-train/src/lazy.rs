//! burn initialises parameters lazily, at first use, from a process-wide generator: two
//! threads drawing at once would interleave their draws. [`materialize`] draws them all, in
//! module order, before any thread starts; [`exclusive`] keeps two model constructions of one
//! process (a seeded init, a checkpoint being loaded, whose loader draws before it overwrites)
//! from drawing at the same time, so a seeded init is reproducible whatever else the process
//! does (tests run runs side by side).

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Tensor;
use duet_model::ClipModel;

/// Draws every parameter of `model` that burn has not initialised yet, in module order (a
/// no-op for one already drawn).
pub(crate) fn materialize(model: &ClipModel) {
    model.visit(&mut Materialize);
}

struct Materialize;

impl ModuleVisitor for Materialize {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        drop(param.val());
    }
}

/// One model construction at a time in this process.
static INIT: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// `build()` with no other model construction of this process drawing from burn's generator.
pub(crate) fn exclusive<R>(build: impl FnOnce() -> R) -> R {
    let _guard = INIT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    build()
}
