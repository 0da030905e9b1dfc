//! Shared by the parity tests: reading the reference safetensors written by
//! `scripts/make_clip_fixtures.py`, and comparing tensors with a relative tolerance.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Int, Tensor, TensorData};
use safetensors::{Dtype, SafeTensors};

/// `tests/fixtures/clip-tiny` at the repository root.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/clip-tiny")
}

/// One reference file, kept in memory.
#[derive(Debug)]
pub struct Reference {
    bytes: Vec<u8>,
}

/// `tests/fixtures/siglip-tiny` at the repository root (`scripts/make_siglip_fixtures.py`).
pub fn siglip_fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/siglip-tiny")
}

impl Reference {
    pub fn open(name: &str) -> Self {
        Self::open_at(&fixtures().join(name))
    }

    pub fn open_at(path: &Path) -> Self {
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        Self { bytes }
    }

    fn view(&self, key: &str) -> (Vec<usize>, Dtype, Vec<u8>) {
        let file = SafeTensors::deserialize(&self.bytes).expect("valid safetensors");
        let view = file.tensor(key).unwrap_or_else(|e| panic!("{key}: {e}"));
        (view.shape().to_vec(), view.dtype(), view.data().to_vec())
    }

    /// An f32 tensor as `(shape, values)`.
    pub fn f32(&self, key: &str) -> (Vec<usize>, Vec<f32>) {
        let (shape, dtype, data) = self.view(key);
        assert_eq!(dtype, Dtype::F32, "{key}");
        let values = data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        (shape, values)
    }

    /// An i64 tensor as `(shape, values)`.
    pub fn i64(&self, key: &str) -> (Vec<usize>, Vec<i64>) {
        let (shape, dtype, data) = self.view(key);
        assert_eq!(dtype, Dtype::I64, "{key}");
        let values = data
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect();
        (shape, values)
    }

    pub fn tensor<const D: usize>(&self, key: &str, device: &Device) -> Tensor<D> {
        let (shape, values) = self.f32(key);
        Tensor::from_data(TensorData::new(values, shape), device)
    }

    pub fn ids(&self, device: &Device) -> Tensor<2, Int> {
        let (shape, values) = self.i64("input_ids");
        Tensor::from_data(TensorData::new(values, shape), device)
    }
}

/// Largest `|a - b| / max(|b|, floor)` over all elements, with `floor` guarding near-zero refs.
pub fn max_rel(actual: &[f32], expected: &[f32], floor: f32) -> f32 {
    assert_eq!(actual.len(), expected.len(), "length");
    actual
        .iter()
        .zip(expected)
        .map(|(a, b)| (a - b).abs() / b.abs().max(floor))
        .fold(0.0, f32::max)
}

/// `‖a‖₂`.
pub fn norm(a: &[f32]) -> f64 {
    a.iter().map(|y| f64::from(*y).powi(2)).sum::<f64>().sqrt()
}

/// `‖a − b‖₂ / max(‖b‖₂, floor)`: a whole tensor's relative error, `floor` standing in for a
/// reference that is zero in exact arithmetic (then only f32 noise).
pub fn rel_floored(a: &[f32], b: &[f32], floor: f64) -> f64 {
    assert_eq!(a.len(), b.len());
    let diff: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2))
        .sum();
    diff.sqrt() / norm(b).max(floor)
}

/// `‖a − b‖₂ / ‖b‖₂`.
pub fn rel(a: &[f32], b: &[f32]) -> f64 {
    rel_floored(a, b, 1e-30)
}

/// Asserts `actual` equals the reference within `rel` (relative to max(|ref|, floor)), and returns
/// the error reached so tests can print it.
pub fn assert_close(what: &str, actual: &[f32], expected: &[f32], rel: f32, floor: f32) -> f32 {
    let err = max_rel(actual, expected, floor);
    let scale = expected.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let abs = actual
        .iter()
        .zip(expected)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    println!("{what}: max rel err {err:.3e} (max abs err {abs:.3e}, max |ref| {scale:.3e})");
    assert!(err <= rel, "{what}: max rel err {err:.3e} > {rel:.0e}");
    err
}

pub fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().expect("f32 tensor")
}
