//! The data side of duet: text and image samples in, model-ready tensors out.
//!
//! Stages, in pipeline order:
//! - [`tokenize`]: CLIP byte-level BPE into fixed-length id rows ([`ClipTokenizer`]);
//! - [`decode`]: image bytes into 8-bit RGB as PIL's `convert("RGB")` gives them ([`decode_rgb8`]);
//! - [`transform`]: OpenCLIP's eval transform, resize + center crop ([`EvalTransform`]);
//! - [`normalize`]: mean/std normalisation into CHW floats ([`Normalize`]);
//! - [`batch`]: stacking into burn tensors ([`images_to_tensor`], [`tokens_to_tensor`]).

pub mod batch;
pub mod decode;
mod error;
pub mod normalize;
pub mod pipeline;
pub mod reader;
mod sample;
mod skip;
pub mod source;
pub mod tokenize;
pub mod transform;

pub use batch::{images_to_tensor, tokens_to_tensor};
pub use decode::{DecodeConfig, PIL_MAX_IMAGE_PIXELS, decode_rgb8};
pub use error::DataError;
/// The decoded image type ([`image::RgbImage`]), re-exported so callers need no `image` dependency.
pub use image::RgbImage;
pub use normalize::{Normalize, OPENAI_MEAN, OPENAI_STD};
pub use reader::{ReadEvent, ShardReader};
pub use sample::{FieldSelector, RawSample, SampleRef, TextField};
pub use skip::{SkipCounts, SkipReason};
pub use source::ShardStore;
pub use tokenize::{ClipTokenizer, PadToken, TokenizerConfig};
pub use transform::{EvalTransform, EvalTransformConfig, ResizeMode};
