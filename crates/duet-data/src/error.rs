//! The one error type of `duet-data`.

use std::path::PathBuf;

/// Everything that can go wrong between raw bytes / text and model-ready batches.
///
/// `origin` fields name where the data came from: a file path, a shard member or a sample key,
/// so that a bad sample in a million can be found again.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// A tokenizer file could not be read.
    #[error("cannot read tokenizer file {path}: {source}")]
    TokenizerRead {
        /// The file that was asked for.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },

    /// A tokenizer definition could not be parsed or configured.
    #[error("invalid tokenizer definition in {origin}: {source}")]
    TokenizerParse {
        /// The file path, or `bundled CLIP BPE` for the embedded vocabulary.
        origin: String,
        /// The error from the `tokenizers` crate.
        source: tokenizers::Error,
    },

    /// A special token CLIP needs is not in the vocabulary.
    #[error("tokenizer {origin} has no token {token:?} in its vocabulary")]
    MissingSpecialToken {
        /// The file path, or `bundled CLIP BPE`.
        origin: String,
        /// The token that was looked up, e.g. `<|endoftext|>`.
        token: &'static str,
    },

    /// Encoding one text failed.
    #[error("cannot tokenize text #{index} ({text:?}): {source}")]
    Tokenize {
        /// Position of the text in the batch.
        index: usize,
        /// The start of the text (at most 80 characters).
        text: String,
        /// The error from the `tokenizers` crate.
        source: tokenizers::Error,
    },

    /// A configuration value is out of range.
    #[error("invalid {field} = {value}: {reason}")]
    InvalidConfig {
        /// The configuration field, e.g. `context_length`.
        field: &'static str,
        /// The offending value, formatted.
        value: String,
        /// What it must satisfy.
        reason: &'static str,
    },

    /// The bytes are not in an image format we decode (LAION has HTML saved as `.jpg`).
    #[error("{origin}: not a JPEG, PNG or WebP image")]
    UnknownImageFormat {
        /// Path or sample key of the image.
        origin: String,
    },

    /// The image header announces more pixels than allowed (decompression-bomb guard).
    #[error("{origin}: {width}x{height} image exceeds the limit of {max_pixels} pixels")]
    TooManyPixels {
        /// Path or sample key of the image.
        origin: String,
        /// Width from the header.
        width: u32,
        /// Height from the header.
        height: u32,
        /// The configured limit.
        max_pixels: u64,
    },

    /// The image could not be decoded (truncated file, corrupt data, unsupported variant).
    #[error("{origin}: cannot decode image: {source}")]
    ImageDecode {
        /// Path or sample key of the image.
        origin: String,
        /// The error from the `image` crate.
        source: image::ImageError,
    },

    /// A pixel buffer did not fit the image it was meant to hold.
    #[error("pixel buffer for a {width}x{height} image: {source}")]
    PixelBuffer {
        /// Image width.
        width: u32,
        /// Image height.
        height: u32,
        /// The error from `fast_image_resize`.
        source: fast_image_resize::ImageBufferError,
    },

    /// Resampling failed.
    #[error("cannot resize {from:?} to {to:?}: {source}")]
    Resize {
        /// Source (width, height).
        from: (u32, u32),
        /// Destination (width, height).
        to: (u32, u32),
        /// The error from `fast_image_resize`.
        source: fast_image_resize::ResizeError,
    },

    /// A batch item does not have the shape the batch was declared with.
    #[error("batch item #{index} has {actual} values, expected {expected}")]
    BatchShape {
        /// Position of the item in the batch.
        index: usize,
        /// Values the declared shape needs per item.
        expected: usize,
        /// Values the item has.
        actual: usize,
    },

    /// A sample a resume cursor points at could not be read again (its shard changed or vanished).
    #[error(
        "cannot resume exactly: sample {index} of shard {shard} is no longer readable \
         (was the shard changed or removed since the checkpoint?)"
    )]
    ResumeSampleMissing {
        /// The shard URL.
        shard: String,
        /// The sample position within it.
        index: u64,
    },

    /// A worker thread could not be started.
    #[error("cannot start a {what} thread: {source}")]
    Thread {
        /// Which thread.
        what: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
}
