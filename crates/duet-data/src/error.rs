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

    /// The data gives nothing to train on: every shard failed, every sample was skipped, or an
    /// epoch holds fewer good samples than one batch.
    #[error("no usable samples: {reason}; skipped so far: {skipped}")]
    NoSamples {
        /// What was observed.
        reason: String,
        /// Skip counts by reason at that point.
        skipped: crate::SkipCounts,
    },

    /// A batch buffer could not be allocated (a batch far too large for the machine).
    #[error(
        "cannot allocate {what} of {bytes} bytes for a batch of {batch_size}; lower the batch size"
    )]
    OutOfMemory {
        /// Which buffer.
        what: &'static str,
        /// Its size.
        bytes: u128,
        /// The configured batch size.
        batch_size: usize,
    },

    /// The data slots do not fit the shards, the ranks or the cursors.
    #[error("data slots: {reason}")]
    Slots {
        /// What does not fit, with the numbers.
        reason: String,
    },

    /// A shard's format cannot be told from its name.
    #[error(
        "{url}: unknown shard format; name shards .tar, .parquet, .csv or .tsv, or set the format"
    )]
    UnknownShardFormat {
        /// The shard URL.
        url: String,
    },

    /// A worker thread could not be started.
    #[error("cannot start a {what} thread: {source}")]
    Thread {
        /// Which thread.
        what: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// A shard spec is empty: no source, or an empty source between `::` separators.
    #[error("empty shard spec {spec:?}: {reason}")]
    EmptySpec {
        /// The spec as given.
        spec: String,
        /// Which part is empty.
        reason: String,
    },

    /// A shard spec cannot be expanded (unbalanced braces, a range too large, …).
    #[error("invalid shard spec {spec:?}: {reason}")]
    SpecSyntax {
        /// The source pattern that failed.
        spec: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The upsampling factors do not match the `::`-separated sources one to one.
    #[error(
        "shard spec has {sources} source(s) separated by `::` but upsampling factors \
         {factors:?} give {weights} weight(s)"
    )]
    UpsamplingMismatch {
        /// Number of sources in the spec.
        sources: usize,
        /// Number of weights in `factors`.
        weights: usize,
        /// The upsampling string as given.
        factors: String,
    },

    /// An upsampling factor is not a positive finite number.
    #[error("upsampling factor {value:?} in {factors:?} is not a positive finite number")]
    UpsamplingFactor {
        /// The offending factor.
        value: String,
        /// The upsampling string as given.
        factors: String,
    },

    /// A glob pattern is malformed.
    #[error("invalid glob pattern {pattern:?}: {source}")]
    GlobPattern {
        /// The pattern.
        pattern: String,
        /// The error from the `glob` crate.
        source: glob::PatternError,
    },

    /// A path matched by a glob could not be read (e.g. permission denied on a directory).
    #[error("cannot list files for glob pattern {pattern:?}: {source}")]
    GlobRead {
        /// The pattern.
        pattern: String,
        /// The error from the `glob` crate (it names the path).
        source: glob::GlobError,
    },

    /// A glob pattern matched no file: never a silent empty dataset.
    #[error("glob pattern {pattern:?} matches no file")]
    GlobNoMatch {
        /// The pattern.
        pattern: String,
    },

    /// A shard URL is malformed or uses a scheme no store serves.
    #[error("shard URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL.
        url: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The shard does not exist (missing file, HTTP 404, S3 `NoSuchKey`).
    #[error("shard {url}: not found")]
    ShardNotFound {
        /// The URL.
        url: String,
    },

    /// A local or in-memory shard could not be read.
    #[error("shard {url}: cannot {op}: {source}")]
    ShardIo {
        /// The URL.
        url: String,
        /// What was attempted: `open`, `stat`, `read range`, …
        op: &'static str,
        /// The I/O error.
        source: std::io::Error,
    },

    /// A byte range outside the shard, or reversed.
    #[error("shard {url}: byte range {start}..{end} is invalid for a shard of {size} bytes")]
    InvalidRange {
        /// The URL.
        url: String,
        /// Range start.
        start: u64,
        /// Range end (exclusive).
        end: u64,
        /// The shard size.
        size: u64,
    },

    /// An HTTP or S3 request failed; the message carries the HTTP status and the S3 error code.
    #[error("shard {url}: {op} failed: {source}")]
    ObjectStore {
        /// The URL.
        url: String,
        /// What was attempted: `GET`, `HEAD`, `ranged GET`, `read`.
        op: &'static str,
        /// The error from `object_store`.
        source: object_store::Error,
    },

    /// An HTTP or S3 client could not be configured (bad endpoint, bad option, no runtime).
    #[error("cannot set up a client for {target}: {reason}")]
    StoreConfig {
        /// The bucket (`s3://bucket`) or host (`https://host`) the client was for.
        target: String,
        /// What failed.
        reason: String,
    },

    /// The store cannot do this operation on this kind of URL (`pipe:` has no size or ranges).
    #[error("shard {url}: {op} is not supported by the {store} store")]
    Unsupported {
        /// The URL.
        url: String,
        /// The operation: `size`, `read_range`.
        op: &'static str,
        /// The store, e.g. `pipe:`.
        store: &'static str,
    },

    /// The command of a `pipe:` URL could not be started.
    #[error("cannot start `pipe:{command}`: {source}")]
    PipeSpawn {
        /// The command after `pipe:`.
        command: String,
        /// The I/O error from spawning `sh -c`.
        source: std::io::Error,
    },

    /// The command of a `pipe:` URL exited unsuccessfully.
    #[error("`pipe:{command}` failed ({status}); stderr: {stderr_tail:?}")]
    PipeFailed {
        /// The command after `pipe:`.
        command: String,
        /// The exit status, e.g. `exit status: 3` or `signal: 9 (SIGKILL)`.
        status: String,
        /// The last few KiB of its standard error.
        stderr_tail: String,
    },

    /// A `sizes.json` or `*_stats.json` beside the shards is not what OpenCLIP/img2dataset write.
    #[error("sample counts {url}: {reason}")]
    SampleCounts {
        /// The counts file.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
}
