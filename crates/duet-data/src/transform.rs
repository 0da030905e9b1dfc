//! OpenCLIP's eval image transform: bicubic resize, center crop, normalise -> CHW `f32`.
//!
//! Reference: `open_clip.image_transform(size, is_train=False)` (open_clip 3.3.0
//! `transform.py`), i.e. torchvision `Resize(size, BICUBIC)` + `CenterCrop(size)` on a PIL image,
//! then `ToTensor` + `Normalize`. PIL's bicubic is a convolution with the Catmull-Rom kernel
//! (a = -0.5) widened by the scale factor on downscale (antialiasing); `fast_image_resize`'s
//! `CatmullRom` convolution implements that same filter. The training transform,
//! RandomResizedCrop, is [`TrainTransform`] (`transform/random_crop.rs`); [`ImageTransform`]
//! picks one of the two from a config.

mod random_crop;

use std::borrow::Cow;

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::RgbImage;
use serde::{Deserialize, Serialize};

use crate::DataError;
use crate::normalize::{Normalize, Pixels, Window};

pub use random_crop::{CropWindow, TrainTransform, TrainTransformConfig};

/// How the image is brought to `image_size` x `image_size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResizeMode {
    /// Shortest side to `image_size` keeping the aspect ratio, then center crop
    /// (OpenCLIP `resize_mode="shortest"`, the default).
    #[default]
    Shortest,
    /// Both sides to `image_size`, distorting the aspect ratio (OpenCLIP `"squash"`).
    Squash,
}

/// Configuration of the deterministic (evaluation) image transform.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EvalTransformConfig {
    /// Side of the square output, in pixels (224 for ViT-B/32; 32 for the tiny test model).
    pub image_size: u32,
    /// How the image is resized to the square.
    pub resize: ResizeMode,
    /// Per-channel normalisation after scaling to [0, 1].
    pub normalize: Normalize,
}

impl Default for EvalTransformConfig {
    fn default() -> Self {
        Self {
            image_size: 224,
            resize: ResizeMode::Shortest,
            normalize: Normalize::default(),
        }
    }
}

impl EvalTransformConfig {
    /// Validates the configuration and builds the transform.
    pub fn init(&self) -> Result<EvalTransform, DataError> {
        if self.image_size == 0 {
            return Err(DataError::InvalidConfig {
                field: "image_size",
                value: self.image_size.to_string(),
                reason: "must be positive",
            });
        }
        self.normalize.validate()?;
        Ok(EvalTransform { config: *self })
    }
}

/// The evaluation transform; see the module docs. Cheap to share between threads.
#[derive(Debug, Clone)]
pub struct EvalTransform {
    config: EvalTransformConfig,
}

impl EvalTransform {
    /// The validated configuration.
    pub fn config(&self) -> &EvalTransformConfig {
        &self.config
    }

    /// Number of `f32`s [`Self::apply`] returns: `3 * image_size * image_size`.
    pub fn output_len(&self) -> usize {
        let side = self.config.image_size as usize;
        3 * side * side
    }

    /// Resizes, crops and normalises one image into a planar `[3, image_size, image_size]`
    /// buffer (channel-major, then rows).
    pub fn apply(&self, image: &RgbImage) -> Result<Vec<f32>, DataError> {
        Ok(self.resample(image)?.normalize(&self.config.normalize))
    }

    /// [`Self::apply`] up to normalisation: the resized image and its crop window.
    pub fn resample(&self, image: &RgbImage) -> Result<Pixels, DataError> {
        let size = self.config.image_size;
        let (width, height) = image.dimensions();
        let (new_width, new_height) = match self.config.resize {
            ResizeMode::Shortest => shortest_side_size(width, height, size),
            ResizeMode::Squash => (size, size),
        };
        let data = if (new_width, new_height) == (width, height) {
            // PIL's `resize` returns a copy when the size is unchanged; no resampling.
            image.as_raw().clone()
        } else {
            resize_rgb8(image, new_width, new_height)?
        };
        let window = Window {
            left: center_crop_offset(new_width, size) as usize,
            top: center_crop_offset(new_height, size) as usize,
            width: size as usize,
            height: size as usize,
        };
        Ok(Pixels {
            data,
            stride_px: new_width as usize,
            window,
        })
    }
}

/// Which image transform a pipeline applies, as a config names it
/// (`{"kind": "train", "image_size": 224, ...}`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ImageTransformConfig {
    /// RandomResizedCrop: training.
    Train(TrainTransformConfig),
    /// Resize + center crop: evaluation, inspection, embedding.
    Eval(EvalTransformConfig),
}

impl ImageTransformConfig {
    /// Validates the configuration and builds the transform.
    pub fn init(&self) -> Result<ImageTransform, DataError> {
        Ok(match self {
            Self::Train(config) => ImageTransform::Train(config.init()?),
            Self::Eval(config) => ImageTransform::Eval(config.init()?),
        })
    }

    /// Side of the square output, in pixels.
    pub fn image_size(&self) -> u32 {
        match self {
            Self::Train(config) => config.image_size,
            Self::Eval(config) => config.image_size,
        }
    }
}

/// A built [`ImageTransformConfig`].
#[derive(Debug, Clone)]
pub enum ImageTransform {
    /// See [`TrainTransform`].
    Train(TrainTransform),
    /// See [`EvalTransform`].
    Eval(EvalTransform),
}

impl ImageTransform {
    /// Transforms one image into a planar `[3, image_size, image_size]` buffer; only the train
    /// transform draws from `rng`.
    pub fn apply(&self, image: &RgbImage, rng: &mut impl rand::Rng) -> Result<Vec<f32>, DataError> {
        Ok(self.resample(image, rng)?.normalize(self.normalize()))
    }

    /// [`Self::apply`] up to normalisation.
    pub fn resample(
        &self,
        image: &RgbImage,
        rng: &mut impl rand::Rng,
    ) -> Result<Pixels, DataError> {
        match self {
            Self::Train(t) => t.resample(image, rng),
            Self::Eval(t) => t.resample(image),
        }
    }

    /// The normalisation that follows [`Self::resample`].
    pub fn normalize(&self) -> &Normalize {
        match self {
            Self::Train(t) => &t.config().normalize,
            Self::Eval(t) => &t.config().normalize,
        }
    }
}

/// torchvision `Resize(size)` with an int `size`: the shorter side becomes `size`, the longer
/// `int(size * long / short)` (truncated).
pub(crate) fn shortest_side_size(width: u32, height: u32, size: u32) -> (u32, u32) {
    let scale = |long: u32, short: u32| {
        // Exact in integers; equals Python's int(true division) for any realistic image size.
        (u64::from(size) * u64::from(long) / u64::from(short.max(1))) as u32
    };
    if width <= height {
        (size, scale(height, width))
    } else {
        (scale(width, height), size)
    }
}

/// torchvision `CenterCrop` offset: `int(round((len - target) / 2.0))`, where Python's `round`
/// rounds halves to even (so a slack of 1 gives 0, of 3 gives 2, of 5 gives 2).
pub(crate) fn center_crop_offset(len: u32, target: u32) -> u32 {
    let slack = len.saturating_sub(target);
    let half = slack / 2;
    if slack % 2 == 1 && half % 2 == 1 {
        half + 1
    } else {
        half
    }
}

/// Bicubic (PIL-equivalent) resize of an RGB8 image into a raw interleaved buffer.
///
/// PIL resamples horizontally first, then vertically, rounding and clipping to 8 bits in between
/// (Pillow `Resample.c`, `ImagingResampleInner`); `fast_image_resize` runs the vertical pass first
/// for 8-bit images. Bicubic overshoot is clipped in between, so at hard edges the order moves
/// results by several levels (up to 0.15 after normalisation on a black/white silhouette). Two
/// single-axis passes reproduce PIL's order.
pub(crate) fn resize_rgb8(image: &RgbImage, width: u32, height: u32) -> Result<Vec<u8>, DataError> {
    let (src_width, src_height) = image.dimensions();
    let mut pixels = Cow::Borrowed(image.as_raw().as_slice());
    if width != src_width {
        pixels = Cow::Owned(resize_pass(
            &pixels,
            (src_width, src_height),
            (width, src_height),
        )?);
    }
    if height != src_height {
        pixels = Cow::Owned(resize_pass(&pixels, (width, src_height), (width, height))?);
    }
    Ok(pixels.into_owned())
}

/// One `fast_image_resize` bicubic convolution of an RGB8 buffer from `from` to `to` (w, h).
fn resize_pass(pixels: &[u8], from: (u32, u32), to: (u32, u32)) -> Result<Vec<u8>, DataError> {
    let src = ImageRef::new(from.0, from.1, pixels, PixelType::U8x3).map_err(|source| {
        DataError::PixelBuffer {
            width: from.0,
            height: from.1,
            source,
        }
    })?;
    let mut dst = Image::new(to.0, to.1, PixelType::U8x3);
    let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::CatmullRom));
    Resizer::new()
        .resize(&src, &mut dst, &options)
        .map_err(|source| DataError::Resize { from, to, source })?;
    Ok(dst.into_vec())
}

#[cfg(test)]
mod tests {
    use image::Rgb;

    use super::*;
    use crate::normalize::{OPENAI_MEAN, OPENAI_STD};

    fn transform_with(image_size: u32, resize: ResizeMode, normalize: Normalize) -> EvalTransform {
        EvalTransformConfig {
            image_size,
            resize,
            normalize,
        }
        .init()
        .expect("valid config")
    }

    fn transform(image_size: u32, resize: ResizeMode) -> EvalTransform {
        transform_with(image_size, resize, Normalize::default())
    }

    /// Outputs in 8-bit levels: mean 0, std 1/255, so `(v / 255 - 0) / (1 / 255) = v`.
    fn levels(image_size: u32, resize: ResizeMode) -> EvalTransform {
        let unit = Normalize {
            mean: [0.0; 3],
            std: [1.0 / 255.0; 3],
        };
        transform_with(image_size, resize, unit)
    }

    #[test]
    fn shortest_side_follows_torchvision_truncation() {
        assert_eq!(shortest_side_size(4, 2, 2), (4, 2)); // already there
        assert_eq!(shortest_side_size(451, 300, 224), (336, 224)); // 224 * 451 / 300 = 336.75
        assert_eq!(shortest_side_size(427, 640, 224), (224, 335)); // 224 * 640 / 427 = 335.7
        assert_eq!(shortest_side_size(512, 512, 32), (32, 32));
        assert_eq!(shortest_side_size(3, 7, 2), (2, 4)); // 2 * 7 / 3 = 4.67
    }

    #[test]
    fn crop_offsets_round_half_to_even() {
        assert_eq!(center_crop_offset(224, 224), 0);
        assert_eq!(center_crop_offset(225, 224), 0); // round(0.5) = 0
        assert_eq!(center_crop_offset(226, 224), 1);
        assert_eq!(center_crop_offset(227, 224), 2); // round(1.5) = 2
        assert_eq!(center_crop_offset(229, 224), 2); // round(2.5) = 2
        assert_eq!(center_crop_offset(231, 224), 4); // round(3.5) = 4
        assert_eq!(center_crop_offset(336, 224), 56);
    }

    #[test]
    fn constant_image_normalises_to_closed_form() {
        // Any bicubic resize of a flat image is flat (the weights sum to 1), so every value is
        // (c / 255 - mean) / std; for c = (200, 100, 50) and OpenAI stats, R = 1.12742...
        let flat = RgbImage::from_pixel(45, 30, Rgb([200, 100, 50]));
        for mode in [ResizeMode::Shortest, ResizeMode::Squash] {
            let out = transform(16, mode).apply(&flat).expect("transforms");
            assert_eq!(out.len(), 3 * 16 * 16);
            for (c, value) in [200.0_f32, 100.0, 50.0].into_iter().enumerate() {
                let want = (value / 255.0 - OPENAI_MEAN[c]) / OPENAI_STD[c];
                let plane = &out[c * 256..(c + 1) * 256];
                assert!(plane.iter().all(|v| (v - want).abs() < 1e-6), "channel {c}");
            }
        }
        let r = (200.0_f32 / 255.0 - OPENAI_MEAN[0]) / OPENAI_STD[0];
        assert!((r - 1.127_423).abs() < 1e-5, "{r}");
    }

    #[test]
    fn same_size_image_is_only_cropped_and_normalised() {
        // 3x2 image, target 2: no resize (shortest side is 2), crop x offset round(0.5) = 0.
        let image = RgbImage::from_fn(3, 2, |x, y| {
            let v = (10 * x + y) as u8;
            Rgb([v, v, v])
        });
        let out = levels(2, ResizeMode::Shortest)
            .apply(&image)
            .expect("applies");
        let want = [0.0, 10.0, 1.0, 11.0];
        for (got, want) in out[..4].iter().zip(want) {
            assert!((got - want).abs() < 1e-3, "{got} vs {want}");
        }
    }

    #[test]
    fn downscale_of_a_vertical_edge_stays_monotone_and_symmetric() {
        // Left half black, right half white, 8x4 -> 4x2 (Squash): the edge straddles the middle,
        // columns mirror each other: v(x) + v(3 - x) = 255 within a level.
        let image = RgbImage::from_fn(8, 4, |x, _| if x < 4 { Rgb([0; 3]) } else { Rgb([255; 3]) });
        let out = levels(4, ResizeMode::Squash)
            .apply(&image)
            .expect("applies");
        let row: Vec<f32> = out[..4].to_vec();
        assert!(row.windows(2).all(|w| w[0] <= w[1]), "{row:?}");
        assert!((row[0] + row[3] - 255.0).abs() <= 1.0, "{row:?}");
        assert!((row[1] + row[2] - 255.0).abs() <= 1.0, "{row:?}");
    }

    #[test]
    fn zero_image_size_is_rejected() {
        let config = EvalTransformConfig {
            image_size: 0,
            ..EvalTransformConfig::default()
        };
        let err = config.init().expect_err("invalid");
        assert!(err.to_string().contains("image_size"), "{err}");
    }
}
