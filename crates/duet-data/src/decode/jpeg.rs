//! JPEG -> 8-bit RGB with libjpeg-turbo's decoder, as PIL decodes JPEGs.
//!
//! PIL decodes JPEGs with libjpeg-turbo at libjpeg's defaults (ISLOW integer IDCT, "fancy"
//! triangle-filter chroma upsampling). The `mozjpeg` crate builds MozJPEG, a libjpeg-turbo fork
//! whose decoder is libjpeg-turbo's, from C sources; with its default features off it needs no
//! assembler, only a C compiler (see the workspace `Cargo.toml`). zune-jpeg, the `image`
//! crate's decoder, upsamples and rounds chroma differently and missed PIL by up to 5 levels on
//! 4:2:0 JPEGs (measured on `datasets/`); this decoder's pixels equal PIL's there.
//!
//! libjpeg reports fatal errors by calling back into Rust, which unwinds (the `mozjpeg` crate's
//! design); [`decode`] catches that unwind and returns it as an error. Under `panic = "abort"`
//! a corrupt JPEG would abort the process instead.

use std::io::{self, BufRead, Read};
use std::panic::{self, AssertUnwindSafe};

use image::error::{DecodingError, ImageFormatHint};
use image::{ImageError, ImageFormat, RgbImage};
use mozjpeg::{DctMethod, Decompress};

use super::DecodeConfig;
use crate::DataError;

/// Prefix of the message the `mozjpeg` crate unwinds with when libjpeg gives up.
const LIBJPEG_PANIC_PREFIX: &str = "libjpeg fatal error: ";

/// Whether `bytes` start like a JPEG (SOI marker followed by another marker), the same sniff the
/// `image` crate uses.
pub(super) fn is_jpeg(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0xFF, 0xD8, 0xFF])
}

/// Decodes a JPEG into 8-bit RGB, pixel for pixel as PIL's `Image.open(..).convert("RGB")`.
///
/// The pixel limit is checked from the header before any pixel is decoded. A JPEG whose data
/// ends early (no EOI marker) is an error, as in PIL (`image file is truncated`), although
/// libjpeg itself would fill the missing rows with grey and only warn.
pub(super) fn decode(
    bytes: &[u8],
    origin: &str,
    config: &DecodeConfig,
) -> Result<RgbImage, DataError> {
    match panic::catch_unwind(AssertUnwindSafe(|| decode_unwinding(bytes, origin, config))) {
        Ok(result) => result,
        Err(payload) => match payload.downcast::<String>() {
            Ok(message) if message.starts_with(LIBJPEG_PANIC_PREFIX) => Err(decode_error(
                origin,
                message.trim_start_matches(LIBJPEG_PANIC_PREFIX),
            )),
            // Not libjpeg's error: a bug, not a bad image.
            Ok(message) => panic::resume_unwind(message),
            Err(other) => panic::resume_unwind(other),
        },
    }
}

/// [`decode`], letting libjpeg's fatal errors unwind.
fn decode_unwinding(
    bytes: &[u8],
    origin: &str,
    config: &DecodeConfig,
) -> Result<RgbImage, DataError> {
    let io_error = |error: io::Error| decode_error(origin, &error.to_string());
    let mut source = Source::new(bytes);
    let mut decompress = Decompress::builder()
        .from_reader(&mut source)
        .map_err(io_error)?;

    // JDIMENSION is 32 bits, so header dimensions always fit.
    let width = u32::try_from(decompress.width()).unwrap_or(u32::MAX);
    let height = u32::try_from(decompress.height()).unwrap_or(u32::MAX);
    super::check_pixels(width, height, origin, config)?;
    // libjpeg's defaults, which PIL keeps; set anyway so a changed default cannot move pixels.
    decompress.dct_method(DctMethod::IntegerSlow);
    decompress.do_fancy_upsampling(true);

    // PIL picks the output by component count: 1 -> "L", 3 -> "RGB", 4 -> "CMYK;I"
    // (Pillow 13.0.0 JpegImagePlugin.py). libjpeg converts grey, YCbCr and RGB to RGB itself;
    // grey becomes three equal channels, as PIL's "L" -> "RGB" does.
    let rgb = if decompress.components().len() == 4 {
        let mut started = decompress
            .to_colorspace(mozjpeg::ColorSpace::JCS_CMYK)
            .map_err(io_error)?;
        let cmyk = started.read_scanlines::<[u8; 4]>().map_err(io_error)?;
        started.finish().map_err(io_error)?;
        cmyk.iter()
            .flat_map(|&pixel| inverted_cmyk_to_rgb(pixel))
            .collect()
    } else {
        let mut started = decompress.rgb().map_err(io_error)?;
        let rgb = started.read_scanlines::<u8>().map_err(io_error)?;
        started.finish().map_err(io_error)?;
        rgb
    };
    if source.ran_out {
        return Err(decode_error(origin, "JPEG data ends before the EOI marker"));
    }
    RgbImage::from_raw(width, height, rgb)
        .ok_or_else(|| decode_error(origin, "libjpeg returned fewer rows than the header has"))
}

/// One CMYK pixel as libjpeg returns it from an Adobe (inverted, Photoshop convention) JPEG,
/// converted as PIL does: raw mode `CMYK;I` (`c = 255 - raw`), then `convert("RGB")`'s
/// `r = (255 - k) - c * (255 - k) / 255` with its rounding (Pillow 13.0.0 `Convert.c`
/// `cmyk2rgb`, `MULDIV255`). In raw values `255 - k` is `raw_k`.
fn inverted_cmyk_to_rgb([c, m, y, k]: [u8; 4]) -> [u8; 3] {
    let muldiv255 = |a: u32, b: u32| {
        let t = a * b + 128;
        (t + (t >> 8)) >> 8
    };
    let black = u32::from(k);
    // muldiv255(255 - raw, raw_k) <= raw_k, so the subtraction cannot underflow.
    [c, m, y].map(|v| (black - muldiv255(255 - u32::from(v), black)) as u8)
}

fn decode_error(origin: &str, message: &str) -> DataError {
    DataError::ImageDecode {
        origin: origin.to_owned(),
        source: ImageError::Decoding(DecodingError::new(
            ImageFormatHint::Exact(ImageFormat::Jpeg),
            format!("libjpeg: {message}"),
        )),
    }
}

/// The JPEG bytes as libjpeg's input, remembering whether libjpeg asked for more than there is.
///
/// MozJPEG's source manager answers end of input with a fake EOI marker (libjpeg's convention);
/// this flag is how a truncated file is told apart from a complete one.
#[derive(Debug)]
struct Source<'a> {
    rest: &'a [u8],
    ran_out: bool,
}

impl<'a> Source<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self {
            rest: bytes,
            ran_out: false,
        }
    }
}

impl Read for Source<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.rest.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.ran_out = true;
        }
        Ok(n)
    }
}

impl BufRead for Source<'_> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.rest.is_empty() {
            self.ran_out = true;
        }
        Ok(self.rest)
    }

    fn consume(&mut self, amount: usize) {
        self.rest = &self.rest[amount.min(self.rest.len())..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmyk_conversion_matches_pil_at_the_corners() {
        // raw k = 255 means no black ink (inverted); raw c = 255 means no cyan: white.
        assert_eq!(inverted_cmyk_to_rgb([255, 255, 255, 255]), [255, 255, 255]);
        // raw k = 0: full black whatever the colour.
        assert_eq!(inverted_cmyk_to_rgb([0, 128, 255, 0]), [0, 0, 0]);
        // No black, full cyan (raw 0): r = 255 - 255 * 255 / 255 = 0, g = b = 255.
        assert_eq!(inverted_cmyk_to_rgb([0, 255, 255, 255]), [0, 255, 255]);
        // raw k = 128, c = 255 - 100 = 155: 128 - round(100 * 128 / 255) = 128 - 50 = 78.
        assert_eq!(inverted_cmyk_to_rgb([155, 255, 255, 128]), [78, 128, 128]);
    }

    #[test]
    fn jpeg_sniff_needs_two_markers() {
        assert!(is_jpeg(&[0xFF, 0xD8, 0xFF, 0xE0]));
        assert!(!is_jpeg(&[0xFF, 0xD8]));
        assert!(!is_jpeg(b"<!DOCTYPE html>"));
    }
}
