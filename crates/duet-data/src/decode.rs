//! Image bytes -> 8-bit RGB, the way OpenCLIP's data pipeline sees them.
//!
//! OpenCLIP reads shards with webdataset's `decode("pilrgb")` (open_clip_train 3.3.0
//! `data.py`; folders via torchvision's `pil_loader` do the same), i.e. PIL
//! `Image.open(..).convert("RGB")` before any transform. So:
//! - grey is replicated to three channels;
//! - alpha is dropped, not composited onto a background (PIL's `convert("RGB")` does that);
//! - palettes are expanded;
//! - EXIF orientation is not applied (PIL's `open` does not either);
//! - CMYK JPEGs are inverted (Adobe convention) and converted with PIL's formula.
//!
//! OpenCLIP's `CsvDataset` instead converts after the resize, where PIL resizes RGBA with
//! premultiplied alpha and palette images with nearest neighbour; we follow the shard path.
//!
//! JPEGs are decoded by libjpeg-turbo's decoder, as in PIL, so their pixels equal PIL's
//! (`decode/jpeg.rs`); PNG and WebP by the `image` crate. Known difference: 16-bit images are
//! scaled to 8 bits by the `image` crate (`v / 257`, rounded), where PIL takes other paths; web
//! caption data is 8-bit.

mod jpeg;

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageReader, Limits, RgbImage};
use serde::{Deserialize, Serialize};

use crate::DataError;

/// PIL's `Image.MAX_IMAGE_PIXELS` (1024 * 1024 * 1024 // 4 // 3), the size at which PIL starts
/// treating an image as a possible decompression bomb.
pub const PIL_MAX_IMAGE_PIXELS: u64 = 89_478_485;

/// Bytes per pixel of the widest decoded layout (RGBA, 16 bits per channel).
const MAX_BYTES_PER_PIXEL: u64 = 8;

/// Limits applied while decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecodeConfig {
    /// Largest `width * height` accepted, checked from the header before decoding.
    pub max_pixels: u64,
}

impl Default for DecodeConfig {
    fn default() -> Self {
        Self {
            max_pixels: PIL_MAX_IMAGE_PIXELS,
        }
    }
}

/// Decodes a JPEG, PNG or WebP image into 8-bit RGB.
///
/// The format is sniffed from the bytes, not taken from a file extension. `origin` (a path or
/// sample key) is only used to name the image in errors.
pub fn decode_rgb8(
    bytes: &[u8],
    origin: &str,
    config: &DecodeConfig,
) -> Result<RgbImage, DataError> {
    if jpeg::is_jpeg(bytes) {
        return jpeg::decode(bytes, origin, config);
    }
    let decode_error = |source| DataError::ImageDecode {
        origin: origin.to_owned(),
        source,
    };
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|io| decode_error(image::ImageError::IoError(io)))?;
    if reader.format().is_none() {
        return Err(DataError::UnknownImageFormat {
            origin: origin.to_owned(),
        });
    }
    let mut limits = Limits::default();
    limits.max_alloc = Some(config.max_pixels.saturating_mul(MAX_BYTES_PER_PIXEL));
    reader.limits(limits);

    let decoder = reader.into_decoder().map_err(decode_error)?;
    let (width, height) = decoder.dimensions();
    check_pixels(width, height, origin, config)?;
    let image = DynamicImage::from_decoder(decoder).map_err(decode_error)?;
    Ok(image.into_rgb8())
}

/// The usual file extension of the image format `bytes` start with (`jpg`, `png`, `webp`), or
/// `None` for anything else (HTML saved as `.jpg`, GIF, …).
pub fn image_extension(bytes: &[u8]) -> Option<&'static str> {
    match image::guess_format(bytes).ok()? {
        image::ImageFormat::Jpeg => Some("jpg"),
        image::ImageFormat::Png => Some("png"),
        image::ImageFormat::WebP => Some("webp"),
        _ => None,
    }
}

/// Refuses an image whose header announces more than `config.max_pixels` pixels.
fn check_pixels(
    width: u32,
    height: u32,
    origin: &str,
    config: &DecodeConfig,
) -> Result<(), DataError> {
    if u64::from(width) * u64::from(height) > config.max_pixels {
        return Err(DataError::TooManyPixels {
            origin: origin.to_owned(),
            width,
            height,
            max_pixels: config.max_pixels,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use image::{ImageFormat, Luma, LumaA, Rgb, Rgba};

    use super::*;

    fn encode(image: impl Into<DynamicImage>, format: ImageFormat) -> Vec<u8> {
        let mut bytes = Cursor::new(Vec::new());
        image
            .into()
            .write_to(&mut bytes, format)
            .expect("encodes in memory");
        bytes.into_inner()
    }

    fn decode(bytes: &[u8]) -> Result<RgbImage, DataError> {
        decode_rgb8(bytes, "sample-000042.png", &DecodeConfig::default())
    }

    #[test]
    fn alpha_is_dropped_not_composited() {
        // (10, 20, 30) at alpha 0 stays (10, 20, 30): no blending onto black or white.
        let rgba = image::RgbaImage::from_fn(2, 1, |x, _| {
            if x == 0 {
                Rgba([10, 20, 30, 0])
            } else {
                Rgba([200, 100, 50, 128])
            }
        });
        let rgb = decode(&encode(rgba, ImageFormat::Png)).expect("decodes");
        assert_eq!(rgb.get_pixel(0, 0), &Rgb([10, 20, 30]));
        assert_eq!(rgb.get_pixel(1, 0), &Rgb([200, 100, 50]));
    }

    #[test]
    fn grey_is_replicated() {
        let grey = image::GrayImage::from_pixel(3, 2, Luma([77]));
        let rgb = decode(&encode(grey, ImageFormat::Png)).expect("decodes");
        assert_eq!(rgb.dimensions(), (3, 2));
        assert!(rgb.pixels().all(|p| *p == Rgb([77, 77, 77])));
    }

    #[test]
    fn grey_alpha_drops_alpha_and_replicates() {
        let grey_alpha = image::GrayAlphaImage::from_pixel(1, 1, LumaA([9, 3]));
        let rgb = decode(&encode(grey_alpha, ImageFormat::Png)).expect("decodes");
        assert_eq!(rgb.get_pixel(0, 0), &Rgb([9, 9, 9]));
    }

    #[test]
    fn jpeg_of_a_flat_colour_decodes_close_to_it() {
        let flat = RgbImage::from_pixel(16, 16, Rgb([120, 60, 200]));
        let rgb = decode(&encode(flat, ImageFormat::Jpeg)).expect("decodes");
        let Rgb([r, g, b]) = *rgb.get_pixel(8, 8);
        // JPEG is lossy; a flat block survives within a few levels.
        assert!(r.abs_diff(120) <= 3 && g.abs_diff(60) <= 3 && b.abs_diff(200) <= 3);
    }

    /// A 4:2:0 JPEG of smooth colour ramps, as the `image` crate encodes RGB.
    fn ramp_jpeg() -> Vec<u8> {
        let ramp = RgbImage::from_fn(48, 32, |x, y| Rgb([(x * 5) as u8, (y * 7) as u8, 90]));
        encode(ramp, ImageFormat::Jpeg)
    }

    #[test]
    fn grey_jpeg_is_replicated() {
        let grey = image::GrayImage::from_fn(16, 8, |x, _| Luma([(x * 16) as u8]));
        let rgb = decode(&encode(grey, ImageFormat::Jpeg)).expect("decodes");
        assert_eq!(rgb.dimensions(), (16, 8));
        assert!(rgb.pixels().all(|Rgb([r, g, b])| r == g && g == b));
    }

    #[test]
    fn jpeg_pixel_limit_is_checked_before_decoding() {
        let config = DecodeConfig {
            max_pixels: 48 * 32 - 1,
        };
        let err = decode_rgb8(&ramp_jpeg(), "000000017.jpg", &config).expect_err("too big");
        assert!(
            matches!(
                err,
                DataError::TooManyPixels {
                    width: 48,
                    height: 32,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn truncated_jpeg_is_a_decode_error_naming_the_sample() {
        // PIL refuses these ("image file is truncated"), also when only the EOI marker is
        // missing; libjpeg alone would fill the rest with grey.
        let bytes = ramp_jpeg();
        for cut in [bytes.len() / 2, bytes.len() - 2] {
            let err = decode(&bytes[..cut]).expect_err("truncated");
            assert!(matches!(err, DataError::ImageDecode { .. }), "{err:?}");
            assert!(err.to_string().contains("sample-000042.png"), "{err}");
        }
    }

    #[test]
    fn corrupt_jpeg_header_is_a_decode_error_not_a_panic() {
        let mut bytes = ramp_jpeg();
        // SOI, then garbage where the first marker segment should be.
        bytes.truncate(4);
        bytes.extend_from_slice(&[0x00; 64]);
        let err = decode(&bytes).expect_err("corrupt");
        assert!(matches!(err, DataError::ImageDecode { .. }), "{err:?}");
        assert!(err.to_string().contains("libjpeg"), "{err}");
    }

    #[test]
    fn bytes_after_the_jpeg_end_are_ignored() {
        // As in PIL: decoding stops at the EOI marker.
        let bytes = ramp_jpeg();
        let mut padded = bytes.clone();
        padded.extend_from_slice(b"trailing junk");
        assert_eq!(
            decode(&padded).expect("decodes"),
            decode(&bytes).expect("decodes")
        );
    }

    #[test]
    fn pixel_limit_is_checked_before_decoding() {
        let bytes = encode(RgbImage::new(30, 20), ImageFormat::Png);
        let config = DecodeConfig { max_pixels: 599 };
        let err = decode_rgb8(&bytes, "shard-00003/000000017.jpg", &config).expect_err("too big");
        assert!(
            matches!(
                err,
                DataError::TooManyPixels {
                    width: 30,
                    height: 20,
                    max_pixels: 599,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(
            err.to_string().contains("shard-00003/000000017.jpg"),
            "{err}"
        );
        let at_limit = DecodeConfig { max_pixels: 600 };
        assert!(decode_rgb8(&bytes, "ok", &at_limit).is_ok());
    }

    #[test]
    fn html_saved_as_jpg_is_an_unknown_format_naming_the_sample() {
        let err =
            decode(b"<!DOCTYPE html><html><body>404</body></html>").expect_err("not an image");
        assert!(
            matches!(err, DataError::UnknownImageFormat { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("sample-000042.png"), "{err}");
    }

    #[test]
    fn truncated_image_is_a_decode_error_naming_the_sample() {
        let bytes = encode(RgbImage::new(64, 64), ImageFormat::Png);
        let err = decode(&bytes[..bytes.len() / 2]).expect_err("truncated");
        assert!(matches!(err, DataError::ImageDecode { .. }), "{err:?}");
        assert!(err.to_string().contains("sample-000042.png"), "{err}");
    }
}
