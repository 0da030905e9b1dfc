//! 8-bit RGB pixels -> normalised CHW floats (torchvision `ToTensor` + `Normalize`).

use serde::{Deserialize, Serialize};

use crate::DataError;

/// OpenAI CLIP's per-channel mean (RGB), also OpenCLIP's default.
pub const OPENAI_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
/// OpenAI CLIP's per-channel standard deviation (RGB), also OpenCLIP's default.
#[allow(
    clippy::excessive_precision,
    reason = "the digits of open_clip constants.py, greppable; f32 drops the last"
)]
pub const OPENAI_STD: [f32; 3] = [0.268_629_54, 0.261_302_58, 0.275_777_11];

/// Per-channel `(v / 255 - mean) / std`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Normalize {
    /// Mean per RGB channel, on the [0, 1] scale.
    pub mean: [f32; 3],
    /// Standard deviation per RGB channel; must be positive.
    pub std: [f32; 3],
}

impl Default for Normalize {
    /// The OpenAI CLIP statistics.
    fn default() -> Self {
        Self {
            mean: OPENAI_MEAN,
            std: OPENAI_STD,
        }
    }
}

impl Normalize {
    /// Checks that every mean is finite and every std finite and positive.
    pub fn validate(&self) -> Result<(), DataError> {
        if let Some(mean) = self.mean.iter().find(|m| !m.is_finite()) {
            return Err(DataError::InvalidConfig {
                field: "mean",
                value: mean.to_string(),
                reason: "must be finite",
            });
        }
        if let Some(std) = self.std.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
            return Err(DataError::InvalidConfig {
                field: "std",
                value: std.to_string(),
                reason: "must be finite and positive",
            });
        }
        Ok(())
    }
}

/// A `width` x `height` window at (`left`, `top`) of an interleaved RGB8 buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Window {
    pub left: usize,
    pub top: usize,
    pub width: usize,
    pub height: usize,
}

/// Normalises `window` of an interleaved RGB8 buffer whose rows are `stride_px` pixels wide
/// into a planar CHW `Vec` of `3 * window.width * window.height` floats.
///
/// Same float32 arithmetic as torchvision: `v / 255`, then `(x - mean) / std`.
pub(crate) fn rgb8_to_chw(
    pixels: &[u8],
    stride_px: usize,
    window: Window,
    normalize: &Normalize,
) -> Vec<f32> {
    let mut out = vec![0.0_f32; 3 * window.width * window.height];
    rgb8_to_chw_into(pixels, stride_px, window, normalize, &mut out);
    out
}

/// [`rgb8_to_chw`] into `out`, which holds exactly `3 * window.width * window.height` floats.
pub(crate) fn rgb8_to_chw_into(
    pixels: &[u8],
    stride_px: usize,
    window: Window,
    normalize: &Normalize,
    out: &mut [f32],
) {
    let plane = window.width * window.height;
    let (r, rest) = out.split_at_mut(plane);
    let (g, b) = rest.split_at_mut(plane);
    let mut planes = [r, g, b];
    for y in 0..window.height {
        let row_start = ((window.top + y) * stride_px + window.left) * 3;
        let row = &pixels[row_start..row_start + window.width * 3];
        let at = y * window.width;
        for (c, plane) in planes.iter_mut().enumerate() {
            let (mean, std) = (normalize.mean[c], normalize.std[c]);
            let dst = &mut plane[at..at + window.width];
            for (d, rgb) in dst.iter_mut().zip(row.chunks_exact(3)) {
                *d = (f32::from(rgb[c]) / 255.0 - mean) / std;
            }
        }
    }
}

/// Resampled RGB8 pixels and the window of them that becomes the model's image: what a
/// transform leaves for normalisation, which a batch does straight into its buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pixels {
    pub(crate) data: Vec<u8>,
    pub(crate) stride_px: usize,
    pub(crate) window: Window,
}

impl Pixels {
    /// Number of floats [`Self::normalize_into`] writes: `3 * width * height` of the window.
    pub fn output_len(&self) -> usize {
        3 * self.window.width * self.window.height
    }

    /// Writes the window, normalised, as planar CHW floats into `out` (`output_len` long).
    pub fn normalize_into(&self, normalize: &Normalize, out: &mut [f32]) {
        rgb8_to_chw_into(&self.data, self.stride_px, self.window, normalize, out);
    }

    /// The window, normalised, as a new CHW buffer.
    pub fn normalize(&self, normalize: &Normalize) -> Vec<f32> {
        rgb8_to_chw(&self.data, self.stride_px, self.window, normalize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_is_read_in_chw_order() {
        // 3x2 image, pixel (x, y) = (10x + y, 100 + x, 200 + y); identity normalisation (x 255).
        let mut pixels = Vec::new();
        for y in 0..2u8 {
            for x in 0..3u8 {
                pixels.extend([10 * x + y, 100 + x, 200 + y]);
            }
        }
        let unit = Normalize {
            mean: [0.0; 3],
            std: [1.0 / 255.0; 3],
        };
        let window = Window {
            left: 1,
            top: 0,
            width: 2,
            height: 2,
        };
        let chw = rgb8_to_chw(&pixels, 3, window, &unit);
        let expected = [
            10.0, 20.0, 11.0, 21.0, // R of (1,0) (2,0) (1,1) (2,1)
            101.0, 102.0, 101.0, 102.0, // G
            200.0, 200.0, 201.0, 201.0, // B
        ];
        assert_eq!(chw.len(), expected.len());
        for (got, want) in chw.iter().zip(expected) {
            assert!((got - want).abs() < 1e-3, "{got} vs {want}");
        }
    }

    #[test]
    fn openai_statistics_on_black_and_white() {
        // Black: -mean/std; white: (1 - mean)/std. R: -0.48145466/0.26862954 = -1.7922626,
        // (1 - 0.48145466)/0.26862954 = 1.9303361.
        let pixels = [0, 0, 0, 255, 255, 255];
        let window = Window {
            left: 0,
            top: 0,
            width: 2,
            height: 1,
        };
        let chw = rgb8_to_chw(&pixels, 2, window, &Normalize::default());
        assert!((chw[0] + 1.792_262_6).abs() < 1e-5, "{}", chw[0]);
        assert!((chw[1] - 1.930_336_1).abs() < 1e-5, "{}", chw[1]);
    }

    #[test]
    fn non_positive_std_is_rejected() {
        let bad = Normalize {
            mean: OPENAI_MEAN,
            std: [0.2, 0.0, 0.2],
        };
        let err = bad.validate().expect_err("zero std");
        assert!(err.to_string().contains("std"), "{err}");
        assert!(Normalize::default().validate().is_ok());
    }
}
