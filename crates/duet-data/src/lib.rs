//! The data side of duet: text and image samples in, model-ready tensors out.
//!
//! Stages, in pipeline order:
//! - [`spec`]: shard specs (`{00000..00099}.tar::other/*.tar`) to shard URLs ([`parse_spec`]);
//! - [`source`]: shard bytes from files, HTTP, S3, `pipe:` commands or memory ([`Stores`]);
//! - [`tokenize`]: CLIP byte-level BPE, or a model's own `tokenizer.json`, into fixed-length id
//!   rows ([`TextTokenizer`]);
//! - [`decode`]: image bytes into 8-bit RGB as PIL's `convert("RGB")` gives them ([`decode_rgb8`]);
//! - [`transform`]: OpenCLIP's eval transform, resize + center crop ([`EvalTransform`]);
//! - [`normalize`]: mean/std normalisation into CHW floats ([`Normalize`]);
//! - [`batch`]: stacking into burn tensors ([`images_to_tensor`], [`tokens_to_tensor`]);
//! - [`pipeline`]: all of the above on a stream of shards, in parallel, shuffled and exactly
//!   resumable ([`Loader`], [`LoaderCursor`]);
//! - [`mod@write`]: the other direction, shards as img2dataset writes them ([`write::ShardWriter`]);
//! - [`filter`]: curation decisions (DataComp's basic filter, top fraction by score, MetaCLIP
//!   balancing, the language test) and [`dedup`]: near duplicates by embedding (SemDeDup);
//!   [`select`]: exact ranks of scores streamed from disk (the top fraction, quantiles).

pub mod batch;
pub mod decode;
pub mod dedup;
mod error;
pub mod filter;
pub mod normalize;
pub mod pipeline;
pub mod reader;
mod sample;
pub mod select;
mod skip;
pub mod source;
pub mod spec;
pub mod tokenize;
pub mod transform;
pub mod write;

pub use batch::{images_to_tensor, tokens_to_tensor};
pub use decode::{DecodeConfig, PIL_MAX_IMAGE_PIXELS, decode_rgb8, image_extension};
pub use dedup::{InMemory, NearDedup, RowBlocks, near_duplicates, near_duplicates_in_blocks};
pub use error::DataError;
pub use filter::{Balancer, BasicFilter, DropReason, UnknownLanguage, top_fraction};
/// The decoded image type ([`image::RgbImage`]), re-exported so callers need no `image` dependency.
pub use image::RgbImage;
pub use normalize::{Normalize, OPENAI_MEAN, OPENAI_STD, Pixels};
pub use pipeline::{
    Batch, Loader, LoaderConfig, LoaderCursor, LoaderSource, Sampling, SlotBatch, SlotLoader,
    WeightedShard, owned_slots,
};
pub use reader::{AutoReader, ReadEvent, ShardFormat, ShardReader};
pub use sample::{FieldSelector, RawSample, SampleRef, Selected, TextField};
pub use skip::{SkipCounts, SkipReason};
pub use source::{LocalStore, MemoryStore, ObjectStores, PipeStore, S3Config, ShardStore, Stores};
pub use spec::{SampleCounts, ShardSource, ShardSpec, parse_spec, sample_count_hint};
pub use tokenize::{OwnRows, PadToken, TextTokenizer, TokenizerConfig};
pub use transform::{
    EvalTransform, EvalTransformConfig, ImageTransform, ImageTransformConfig, ResizeMode,
    TrainTransform, TrainTransformConfig,
};
