//! burn initialises parameters lazily, at first use, from a process-wide generator: two
//! threads drawing at once would interleave their draws. [`materialize`] draws them all, in
//! module order, before any thread starts.

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
