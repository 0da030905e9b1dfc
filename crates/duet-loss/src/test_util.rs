//! Helpers for the unit tests: small tensors from literals, and float comparison.

use burn::tensor::{Device, Tensor};

/// Four image features in 3-d, not normalised, not orthogonal: the batch both losses' tests and
/// their OpenCLIP parity values use (paired row by row with [`TEXT`]).
pub(crate) const IMAGE: [[f32; 3]; 4] = [
    [0.3, -1.2, 0.8],
    [1.5, 0.2, -0.4],
    [-0.7, 0.9, 1.1],
    [0.05, -0.3, -1.6],
];
/// The text features paired with [`IMAGE`].
pub(crate) const TEXT: [[f32; 3]; 4] = [
    [0.5, -0.9, 1.0],
    [1.1, 0.6, -0.2],
    [-0.4, 1.3, 0.7],
    [0.2, 0.1, -1.2],
];

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
