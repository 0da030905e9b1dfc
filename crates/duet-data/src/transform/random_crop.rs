//! OpenCLIP's training transform: RandomResizedCrop (bicubic), then normalise.
//!
//! Reference: `open_clip.image_transform(size, is_train=True)` (open_clip 3.3.0 `transform.py`)
//! is torchvision `RandomResizedCrop(size, scale=(0.9, 1.0), interpolation=BICUBIC)`, then
//! `ToTensor` and `Normalize` (no colour jitter or grayscale by default). The crop parameters follow
//! torchvision 0.29 `RandomResizedCrop.get_params` step for step (10 tries, then a central
//! fallback); the crop is then resized like PIL's `img.crop(box).resize((size, size), BICUBIC)`,
//! which is what torchvision's `resized_crop` does on PIL images. The random numbers come from the
//! caller's generator, so a pipeline can make them a function of the sample's position.

use image::RgbImage;
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::resize_rgb8;
use crate::DataError;
use crate::normalize::{Normalize, Pixels, Window};

/// Configuration of the training transform.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TrainTransformConfig {
    /// Side of the square output, in pixels.
    pub image_size: u32,
    /// Range of the crop's area as a fraction of the image's (OpenCLIP: 0.9 to 1.0).
    pub scale: [f64; 2],
    /// Range of the crop's aspect ratio, width / height (torchvision: 3/4 to 4/3).
    pub ratio: [f64; 2],
    /// Per-channel normalisation after scaling to [0, 1].
    pub normalize: Normalize,
}

impl Default for TrainTransformConfig {
    /// OpenCLIP's defaults at 224 px with the OpenAI statistics.
    fn default() -> Self {
        Self {
            image_size: 224,
            scale: [0.9, 1.0],
            ratio: [3.0 / 4.0, 4.0 / 3.0],
            normalize: Normalize::default(),
        }
    }
}

impl TrainTransformConfig {
    /// Validates the configuration and builds the transform.
    pub fn init(&self) -> Result<TrainTransform, DataError> {
        let invalid = |field, value: String, reason| {
            Err(DataError::InvalidConfig {
                field,
                value,
                reason,
            })
        };
        if self.image_size == 0 {
            return invalid(
                "image_size",
                self.image_size.to_string(),
                "must be positive",
            );
        }
        let [lo, hi] = self.scale;
        if !(lo > 0.0 && lo <= hi && hi <= 1.0) {
            return invalid(
                "scale",
                format!("{:?}", self.scale),
                "need 0 < min <= max <= 1",
            );
        }
        let [lo, hi] = self.ratio;
        if !(lo > 0.0 && lo <= hi && hi.is_finite()) {
            return invalid(
                "ratio",
                format!("{:?}", self.ratio),
                "need 0 < min <= max, finite",
            );
        }
        self.normalize.validate()?;
        Ok(TrainTransform { config: *self })
    }
}

/// A crop box in pixels: `width` x `height` at (`left`, `top`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CropWindow {
    /// Left edge.
    pub left: u32,
    /// Top edge.
    pub top: u32,
    /// Width, at least 1.
    pub width: u32,
    /// Height, at least 1.
    pub height: u32,
}

/// The training transform; see the module docs. Cheap to share between threads.
#[derive(Debug, Clone)]
pub struct TrainTransform {
    config: TrainTransformConfig,
}

impl TrainTransform {
    /// The validated configuration.
    pub fn config(&self) -> &TrainTransformConfig {
        &self.config
    }

    /// The crop torchvision's `RandomResizedCrop.get_params` would pick for a `width` x `height`
    /// image, drawing from `rng`.
    pub fn crop_window(&self, width: u32, height: u32, rng: &mut impl Rng) -> CropWindow {
        let area = f64::from(width) * f64::from(height);
        let [scale_lo, scale_hi] = self.config.scale;
        let [ratio_lo, ratio_hi] = self.config.ratio;
        let (log_lo, log_hi) = (ratio_lo.ln(), ratio_hi.ln());
        for _ in 0..10 {
            let target_area = area * uniform(rng, scale_lo, scale_hi);
            let aspect = uniform(rng, log_lo, log_hi).exp();
            // Python's round() rounds halves to even.
            let w = (target_area * aspect).sqrt().round_ties_even();
            let h = (target_area / aspect).sqrt().round_ties_even();
            if w > 0.0 && w <= f64::from(width) && h > 0.0 && h <= f64::from(height) {
                let (w, h) = (w as u32, h as u32);
                // torch.randint(0, n + 1): inclusive of n.
                let top = rng.random_range(0..=height - h);
                let left = rng.random_range(0..=width - w);
                return CropWindow {
                    left,
                    top,
                    width: w,
                    height: h,
                };
            }
        }
        central_fallback(width, height, ratio_lo, ratio_hi)
    }

    /// Crops, resizes and normalises one image into a planar `[3, image_size, image_size]`
    /// buffer, drawing the crop from `rng`.
    pub fn apply(&self, image: &RgbImage, rng: &mut impl Rng) -> Result<Vec<f32>, DataError> {
        Ok(self.resample(image, rng)?.normalize(&self.config.normalize))
    }

    /// [`Self::apply`] up to normalisation.
    pub fn resample(&self, image: &RgbImage, rng: &mut impl Rng) -> Result<Pixels, DataError> {
        let (width, height) = image.dimensions();
        let window = self.crop_window(width.max(1), height.max(1), rng);
        self.resample_window(image, window)
    }

    /// [`Self::apply`] with a given crop: PIL's `crop(box).resize((size, size), BICUBIC)`.
    pub fn apply_window(
        &self,
        image: &RgbImage,
        window: CropWindow,
    ) -> Result<Vec<f32>, DataError> {
        Ok(self
            .resample_window(image, window)?
            .normalize(&self.config.normalize))
    }

    fn resample_window(&self, image: &RgbImage, window: CropWindow) -> Result<Pixels, DataError> {
        let size = self.config.image_size;
        let cropped =
            image::imageops::crop_imm(image, window.left, window.top, window.width, window.height)
                .to_image();
        let data = if cropped.dimensions() == (size, size) {
            // PIL's `resize` to the same size is a copy: no resampling.
            cropped.into_raw()
        } else {
            resize_rgb8(&cropped, size, size)?
        };
        Ok(Pixels {
            data,
            stride_px: size as usize,
            window: Window {
                left: 0,
                top: 0,
                width: size as usize,
                height: size as usize,
            },
        })
    }
}

/// `torch.empty(1).uniform_(lo, hi)`: a uniform draw in `[lo, hi)` (exactly `lo` when equal).
fn uniform(rng: &mut impl Rng, lo: f64, hi: f64) -> f64 {
    lo + (hi - lo) * rng.random::<f64>()
}

/// torchvision's fallback after 10 failed tries: the largest central crop whose ratio is
/// clamped into `[ratio_lo, ratio_hi]`.
fn central_fallback(width: u32, height: u32, ratio_lo: f64, ratio_hi: f64) -> CropWindow {
    let in_ratio = f64::from(width) / f64::from(height);
    let (w, h) = if in_ratio < ratio_lo {
        let h = (f64::from(width) / ratio_lo).round_ties_even() as u32;
        (width, h.clamp(1, height))
    } else if in_ratio > ratio_hi {
        let w = (f64::from(height) * ratio_hi).round_ties_even() as u32;
        (w.clamp(1, width), height)
    } else {
        (width, height)
    };
    CropWindow {
        left: (width - w) / 2,
        top: (height - h) / 2,
        width: w,
        height: h,
    }
}

#[cfg(test)]
mod tests {
    use image::Rgb;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::transform::{EvalTransformConfig, ResizeMode};

    fn train(image_size: u32) -> TrainTransform {
        TrainTransformConfig {
            image_size,
            ..TrainTransformConfig::default()
        }
        .init()
        .expect("valid config")
    }

    #[test]
    fn crops_respect_scale_and_ratio() {
        // 400x300: area 120,000, so a crop covers 108,000..=120,000 px (scale 0.9..1.0) up to
        // rounding of each side (+-0.5 px on both: within 1 % here).
        let t = train(224);
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for _ in 0..500 {
            let c = t.crop_window(400, 300, &mut rng);
            assert!(c.left + c.width <= 400 && c.top + c.height <= 300, "{c:?}");
            let area = f64::from(c.width * c.height);
            assert!((0.89 * 120_000.0..=120_000.0).contains(&area), "{c:?}");
            let ratio = f64::from(c.width) / f64::from(c.height);
            assert!((0.74..=1.34).contains(&ratio), "{c:?}");
        }
    }

    /// NB: at scale >= 0.9 a 3:2 image (640x427) has no crop with ratio <= 4/3 that fits
    /// (h >= sqrt(0.9 * 640 * 427 / (4/3)) = 429.5 > 427), so torchvision always falls back to
    /// the central crop there; 4:3 leaves room for random crops.
    #[test]
    fn same_seed_same_crops() {
        let t = train(32);
        let draw = |seed| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            (0..20)
                .map(|_| t.crop_window(400, 300, &mut rng))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(1), draw(1));
        assert_ne!(draw(1), draw(2));
    }

    #[test]
    fn very_wide_image_falls_back_to_a_central_crop() {
        // 1000x10 (ratio 100): every try needs h = sqrt(area * scale / r) >= sqrt(9000 / (4/3)) = 82 > 10, so all 10 fail;
        // the fallback clamps the ratio to 4/3: w = round(10 * 4/3) = 13, left = (1000-13)/2.
        let t = train(8);
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let c = t.crop_window(1000, 10, &mut rng);
        assert_eq!(
            c,
            CropWindow {
                left: 493,
                top: 0,
                width: 13,
                height: 10
            }
        );
        // And the tall twin: h = round(10 / (3/4)) = 13.
        assert_eq!(central_fallback(10, 1000, 0.75, 4.0 / 3.0).height, 13);
    }

    #[test]
    fn full_window_equals_the_squash_eval_transform() {
        // Cropping the whole image and resizing to a square is exactly the eval "squash" path.
        let image = RgbImage::from_fn(45, 30, |x, y| Rgb([(x * 5) as u8, (y * 8) as u8, 77]));
        let window = CropWindow {
            left: 0,
            top: 0,
            width: 45,
            height: 30,
        };
        let got = train(16).apply_window(&image, window).expect("applies");
        let squash = EvalTransformConfig {
            image_size: 16,
            resize: ResizeMode::Squash,
            normalize: Normalize::default(),
        }
        .init()
        .expect("valid");
        assert_eq!(got, squash.apply(&image).expect("applies"));
    }

    #[test]
    fn window_at_output_size_is_only_cropped() {
        // A 2x2 window at (1, 1) of a 4x3 ramp, output 2: no resampling; identity normalisation
        // (mean 0, std 1/255) gives the levels back: v(x, y) = 10x + y.
        let image = RgbImage::from_fn(4, 3, |x, y| {
            let v = (10 * x + y) as u8;
            Rgb([v, v, v])
        });
        let t = TrainTransformConfig {
            image_size: 2,
            normalize: Normalize {
                mean: [0.0; 3],
                std: [1.0 / 255.0; 3],
            },
            ..TrainTransformConfig::default()
        }
        .init()
        .expect("valid");
        let window = CropWindow {
            left: 1,
            top: 1,
            width: 2,
            height: 2,
        };
        let out = t.apply_window(&image, window).expect("applies");
        for (got, want) in out[..4].iter().zip([11.0, 21.0, 12.0, 22.0]) {
            assert!((got - want).abs() < 1e-3, "{got} vs {want}");
        }
    }

    #[test]
    fn bad_ranges_are_rejected() {
        for (scale, ratio) in [
            ([0.0, 1.0], [0.75, 1.3]),
            ([0.9, 1.1], [0.75, 1.3]),
            ([0.9, 1.0], [2.0, 1.0]),
        ] {
            let config = TrainTransformConfig {
                scale,
                ratio,
                ..TrainTransformConfig::default()
            };
            assert!(config.init().is_err(), "{scale:?} {ratio:?}");
        }
    }
}
