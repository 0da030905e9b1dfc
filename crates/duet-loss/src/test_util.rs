//! Helpers for the unit tests: small tensors from literals, and float comparison.

use burn::tensor::{Device, Tensor};

pub(crate) fn device() -> Device {
    Device::flex()
}

/// A `[b, e]` tensor from rows.
pub(crate) fn rows<const B: usize, const E: usize>(x: [[f32; E]; B]) -> Tensor<2> {
    Tensor::from_data(x, &device())
}

/// A `[1]` tensor.
pub(crate) fn scalar(x: f32) -> Tensor<1> {
    Tensor::from_data([x], &device())
}

/// The single value of a `[1]` tensor.
pub(crate) fn value(x: Tensor<1>) -> f64 {
    f64::from(x.into_scalar::<f32>())
}

#[track_caller]
pub(crate) fn assert_close(actual: f64, expected: f64, tol: f64) {
    assert!(
        (actual - expected).abs() <= tol,
        "expected {expected}, got {actual} (tolerance {tol})"
    );
}
